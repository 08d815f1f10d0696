"""Benchmarks (``python -m tests.bench.<name>``); their results are in docs/benchmarks.md."""
