// Actuators: see DESIGN.md
