// RaftTestKit: see DESIGN.md
