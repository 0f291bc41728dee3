"""tools layer of larsight (see DESIGN.md)."""
