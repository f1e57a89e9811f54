"""atac-denoise: denoise low-depth ATAC-seq coverage and call peaks with a 1-D ResNet.

The few names a notebook needs, loaded on first use (so ``atacdenoise --help``
does not import torch)::

    import atacdenoise as ad

    model, meta = ad.load_model("results/models/demo/model.pt")
    ad.denoise_bigwig("results/models/demo/model.pt", "noisy.bw", "genome.sizes", "out/sample")
    track, prob = ad.denoise_array(model, coverage, meta["window"]["interval"], meta["window"]["pad"])
    metrics = ad.read_metrics("results/benchmark/demo/metrics.tsv")

Everything else lives in the stage subpackages: :mod:`atacdenoise.io`,
:mod:`atacdenoise.reads`, :mod:`atacdenoise.peaks`, :mod:`atacdenoise.model`,
:mod:`atacdenoise.evaluate` (``docs/ARCHITECTURE.md``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it
_API = {
    "load_model": "atacdenoise.model.network",
    "denoise_bigwig": "atacdenoise.model.infer",
    "denoise_array": "atacdenoise.model.infer",
    "read_metrics": "atacdenoise.evaluate.benchmark",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first access (PEP 562)."""
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'atacdenoise' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
