"""ui layer of larsight (see DESIGN.md)."""
