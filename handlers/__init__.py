"""Thin entry points: the FastAPI app, its routes and the command line."""
