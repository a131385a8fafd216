"""The OpenAI-compatible API (/v1): wire types, serving on the engine, and its routes."""
