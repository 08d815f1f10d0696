"""Benchmarks (``python -m tests.bench`` and ``python -m tests.bench.<name>``): code that measures, prints
percentiles, and whose results live in docs/benchmarks.md."""
