"""The composition root: settings, wiring, the FastAPI app and the command line."""
