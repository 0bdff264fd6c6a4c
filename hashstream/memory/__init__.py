"""hashstream.memory layer (see DESIGN.md)."""
