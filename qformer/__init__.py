"""qformer layer of larsight (see DESIGN.md)."""
