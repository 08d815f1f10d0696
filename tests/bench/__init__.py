"""Benchmarks: code that measures, prints percentiles, and whose results live in docs/benchmarks.md."""
