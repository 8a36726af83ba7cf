// RaftRuntime: see DESIGN.md
