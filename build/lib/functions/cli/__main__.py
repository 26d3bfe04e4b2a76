"""Entry point: `python -m functions.cli --help`."""

from functions.cli.app import main

raise SystemExit(main())
