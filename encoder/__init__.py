"""encoder layer of larsight (see DESIGN.md)."""
