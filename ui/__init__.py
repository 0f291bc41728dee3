"""ui layer of larsight: the Gradio chat app and the `larsight` command line (docs/architecture.md)."""
