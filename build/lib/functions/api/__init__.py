"""The HTTP API (Chalice blueprint)."""
