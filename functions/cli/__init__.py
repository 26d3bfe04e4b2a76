"""On-call command line tools (python -m functions.cli)."""
