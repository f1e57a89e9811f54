"""Benchmark: metrics against the clean data, effective depth, report figures."""
