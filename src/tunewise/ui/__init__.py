"""``tunewise ui``: a local web app over one or more projects (server-rendered pages, no build step)."""
