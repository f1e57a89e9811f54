# Stage 8: benchmark of model vs noisy input vs MACS3 against the clean data (filled in below).


def benchmark_targets():
    return []
