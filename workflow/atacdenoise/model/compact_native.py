"""The compact output precision in one native pass per chunk (``compact_native.c``), or None.

Why: ``infer`` rounds and bins every base of both tracks it stores (:func:`atacdenoise.model.infer.bin_track`,
:func:`~atacdenoise.model.infer.bin_probability`). In NumPy that is ~10 passes over memory, ~50 ms per M bases
on one core: ~150 core-seconds for a whole genome, the CPU work that bounds GPU inference beside the writers
(``benchmarks/rounding.py`` measures both routes and the whole command). The C gives the same values bit for bit
(``tests/model/test_compact_native.py``); the NumPy functions stay the reference and the fallback
(``ATACDENOISE_NATIVE_COMPACT=0``, or no C compiler). Calls release the GIL, so the rounding threads run in
parallel.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atacdenoise import native

log = logging.getLogger(__name__)

#: the most cuts a probability is kept on the model's side of (a bit mask per bin in the C)
MAX_CUTS = 8
#: the C file and its defines (tests/test_native.py builds every declared file with warnings as errors)
NATIVE_SOURCES = {"compact_native": (Path(__file__).with_name("compact_native.c"), {"MAX_CUTS": MAX_CUTS})}
#: set to 0/off/false/no to use the NumPy functions
ENV = "ATACDENOISE_NATIVE_COMPACT"

_P, _I, _S, _L, _F = ctypes.c_void_p, ctypes.c_int, ctypes.c_ssize_t, ctypes.c_longlong, ctypes.c_float


@dataclass(frozen=True)
class RoundingKernels:
    """The compiled functions (ctypes; argument types set)."""

    round_probability: Callable[..., Any]
    compact_probability: Callable[..., Any]
    compact_track: Callable[..., Any]


def bind_rounding(lib: ctypes.CDLL) -> RoundingKernels:
    """Return ``lib``'s functions with their argument and result types."""
    types = {
        "round_probability": ([_P, _P, _S, _I, _I, _F], None),
        "compact_probability": ([_P, _P, _S, _L, _P, _I, _I, _I, _I, _F], _I),
        "compact_track": ([_P, _P, _S, _L, _F, _I, _I], None),
    }
    out = {}
    for name, (argtypes, restype) in types.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, restype
        out[name] = fn
    return RoundingKernels(**out)


_kernels: RoundingKernels | None = None
_tried = False


def load() -> RoundingKernels | None:
    """Return the kernels, built on first use; None when turned off (:data:`ENV`) or not buildable (logged)."""
    global _kernels, _tried
    if not _tried:
        _tried = True
        if native.off(ENV):
            log.info("native compact rounding off (%s); using NumPy's", ENV)
        else:
            source, defines = NATIVE_SOURCES["compact_native"]
            lib = native.build("compact_native", source, defines, "native compact rounding (compact_native.c)")
            _kernels = None if lib is None else bind_rounding(lib)
    return _kernels


def _float32(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float32)


def round_probability(
    kernels: RoundingKernels, prob: np.ndarray, bits: int, low_bits: int | None, low_below: float
) -> np.ndarray:
    """:func:`~atacdenoise.model.infer.round_probability_bits` of float32[n] ``prob`` (``low_bits`` None: ``bits``)."""
    p = _float32(prob)
    out = np.empty_like(p)
    kernels.round_probability(p.ctypes.data, out.ctypes.data, p.size, bits, low_bits or bits, low_below)
    return out


def compact_probability(
    kernels: RoundingKernels,
    prob: np.ndarray,
    start: int,
    cuts: Sequence[float],
    width: int,
    bits: int,
    low_bits: int | None,
    low_below: float,
) -> np.ndarray:
    """:func:`~atacdenoise.model.infer.bin_probability` of the probability's own rounding, from ``prob`` alone."""
    if len(cuts) > MAX_CUTS:
        raise ValueError(f"at most {MAX_CUTS} cuts, got {len(cuts)}")
    p = _float32(prob)
    c = np.asarray(cuts, dtype=np.float32)
    out = np.empty_like(p)
    rc = kernels.compact_probability(
        p.ctypes.data, out.ctypes.data, p.size, start, c.ctypes.data, c.size, width, bits, low_bits or bits, low_below
    )
    if rc != 0:
        raise ValueError(f"compact_probability: bad arguments (cuts {list(cuts)}, width {width})")
    return out


def compact_track(
    kernels: RoundingKernels, track: np.ndarray, start: int, floor: float, width: int, bits: int
) -> np.ndarray:
    """:func:`~atacdenoise.model.infer.bin_track` of float32[n] ``track`` at ``bits`` significant bits."""
    t = _float32(track)
    out = np.empty_like(t)
    kernels.compact_track(t.ctypes.data, out.ctypes.data, t.size, start, floor, width, bits)
    return out
