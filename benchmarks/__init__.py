"""Benchmarks, run by hand (python -m benchmarks.NAME); their latest results are committed beside them."""
