"""evals layer of larsight (see DESIGN.md)."""
