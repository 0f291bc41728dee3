"""agent layer of larsight (see DESIGN.md)."""
