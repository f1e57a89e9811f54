"""From reads to coverage.

Tn5 cut sites and smoothing, subsampling, cells and pseudobulks, the simulated-cells fixture.
"""
