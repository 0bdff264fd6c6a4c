"""hashstream.api layer (see DESIGN.md)."""
