"""hashstream.service layer (see DESIGN.md)."""
