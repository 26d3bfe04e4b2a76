"""Benchmarks of the postbacks service (`python -m bench.run`, `make bench`).

Every figure is measured, never asserted in tests: the machines are shared and noisy, so the
benchmarks report ratios measured side by side in one run and medians over several runs.
"""
