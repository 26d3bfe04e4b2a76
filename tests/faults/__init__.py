"""The fault campaign of docs/reliability.md: a seeded simulation that drives the real evaluator,
sender and on-call tools through thousands of conversion changes while injecting faults at every
call site, and checks every delivery against the invariant. `python -m tests.faults --help`."""
