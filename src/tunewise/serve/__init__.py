"""`tunewise serve`: saved rungs behind an OpenAI-compatible API (see app.py)."""
