"""Benchmark scripts: each prints a table and is run as ``python -m benchmarks.NAME``."""
