"""Benchmarks: `python -m bench` (see README). Not tests: nothing here fails on throughput."""
