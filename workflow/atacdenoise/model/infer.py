"""Inference: tile a chromosome, run the model batch by batch, stitch the outputs, call peaks as it streams.

A chromosome of ``length`` bases is cut into output tiles of ``interval`` bases
(the last one may be shorter); each tile is run with ``pad`` bases of context on
both sides, zeros beyond the chromosome ends, and only its central ``interval``
bases are kept. With ``pad`` at least half the model's receptive field, the
stitched result equals one forward pass over the whole chromosome (padded with
zeros), so tiling leaves no seams and every base, the tail included, is denoised.

Memory stays bounded whatever the genome size: the input is read one chunk of
``batch_size`` tiles at a time (the next chunk is read and windowed in a
background thread while the current one computes), outputs are handed on chunk by
chunk, and peak calling (:class:`PeakStream`) keeps only the bases since the last
point where no peak can straddle (a run of more than ``max_gap`` sub-threshold
bases), so it holds about one chunk plus the longest peak region.

Tiling and the model run are array code (:class:`TileRunner`); :func:`denoise_bigwig` is the
file-to-file route of ``atacdenoise infer``, :func:`denoise_array` the in-memory one.

Output precision (``--precision``, config ``model.output_precision``; default ``compact``): ``compact`` stores
the peak probability with :data:`PROB_BITS` significant bits of ``min(p, 1 - p)``, :data:`PROB_LOW_BITS` where
that is below :data:`PROB_LOW_BELOW` (:func:`round_probability_bits`: 0, 0.5 and 1 exact, monotone in ``p``,
error <= 2**-8 · min(p, 1 - p) from 1/128 to 127/128 and 2**-6 · min(p, 1 - p) nearer an end: relative precision
in both tails, coarser on the background, whose order below 1/128 is set by float32 round-off) and the denoised
track to :data:`TRACK_BITS` significant bits
(:func:`round_significant_bits`; 0 stays 0, relative error <= 1/256; with a depth-normalised model, in
:data:`TRACK_BIN`-base bins whose values all lie below the model's mean coverage the nonzero bases hold the
bin's nonzero mean, :func:`bin_track`), so equal neighbours merge: each chunk is
written as runs (bedGraph items) or as fixed-step values, whichever deflates smaller (runs of a few equal
values deflate to a few bytes), with a first zoom level of :data:`COMPACT_FIRST_ZOOM` bases. The probability
is then stored as the rounded means of :data:`PROB_BIN`-base bins (:func:`bin_probability`), except in bins
whose bases straddle the model's threshold or 0.5, and every stored value is kept on the model's side of both
(:func:`keep_sides`), so the stored values give the model's own per-base calls at both cuts; peaks are called
on the stored values, so they are what ``macs3 bdgpeakcall`` (and ``atacdenoise threshold``) find on the
written file at the threshold. ``float32`` stores the model's outputs unchanged (files 6-12x larger). Why
compact is the default: on the demo it leaves every thresholded and peak-level metric as float32's and moves
the others about as much as computing the same model in bf16 does (the GPU route's default autocast), for
0.1-0.2 bytes a base instead of 1.2-2.1; ``benchmarks/precision.py``,
``benchmarks/README.md`` and README, Outputs. Each chunk is rounded and binned by :func:`compact_chunk`: in one
native pass (:mod:`atacdenoise.model.compact_native`, the same values, ~7x faster) when it builds, else by these
NumPy functions (the reference). Each bigWig gets a sidecar ``X.bw.json`` recording its precision.

Ensembles (``--model A B C``, config ``model.ensemble``): :class:`EnsembleRunner` runs every member's
:class:`TileRunner` (its own calibration and input scale) on the same windows, read once, and
:func:`ensemble_stats` combines one chunk at a time into the mean track, the mean probability and the
spread (population sd of the members' probabilities), written to ``PREFIX.spread.bw``; the peaks'
score column becomes their confidence (:func:`atacdenoise.peaks.threshold.peak_confidence`).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from atacdenoise.atomic import commit, remove_stale_temps, temp_path_for
from atacdenoise.cpus import usable_cores
from atacdenoise.errors import InputError
from atacdenoise.io.bbiwrite import FIRST_ZOOM
from atacdenoise.io.bigwig import bigwig_total, check_bigwig, open_bigwig
from atacdenoise.io.genome import read_chrom_sizes, select_chroms
from atacdenoise.io.intervals import NARROWPEAK_COLUMNS, write_narrowpeak
from atacdenoise.io.regions import TargetRegions, read_target_regions, restrict_sizes
from atacdenoise.io.sidecar import read_sidecar, sidecar_path, write_json
from atacdenoise.io.trackwriter import HANDOFF_ENV, TrackWriterProcess
from atacdenoise.log import progress
from atacdenoise.model import compact_native
from atacdenoise.model.blend import blend_weight
from atacdenoise.model.calibration import peak_probability
from atacdenoise.model.device import autocast_dtype, gpu_conv_requested, gpu_kernels_work, select_device
from atacdenoise.model.fitness import assess_track, fitness_path, write_fitness
from atacdenoise.peaks.threshold import MAX_GAP, MIN_LENGTH, PeakStream

log = logging.getLogger(__name__)

#: preprocessing keys that must agree between a coverage track's sidecar and the model
PREPROCESSING_KEYS = ("smooth_bp", "shift_plus", "shift_minus", "cpm")

#: a reader returns float32 coverage of bases [start, end) of the chromosome being denoised
Reader = Callable[[int, int], np.ndarray]

#: tiles per forward pass on a CPU. A chunk of ``batch_size`` tiles is read at once but run through
#: the model a few tiles at a time: activations of 4 tiles of 60 kb x 15 channels are ~14 MB instead of
#: ~58 MB for 16, so peak memory no longer grows with --batch-size (measured on 2 cores: 19 % less RSS at
#: the same speed; one tile at a time was 20 % slower; benchmarks/README.md, CPU inference).
CPU_FORWARD_BATCH = 4

#: output precisions of ``atacdenoise infer --precision`` (config ``model.output_precision``)
PRECISIONS = ("compact", "float32")
#: compact peak probabilities keep PROB_BITS significant bits of q = min(p, 1 - p) (error <= 2**-8 · q), and
#: PROB_LOW_BITS where q < PROB_LOW_BELOW (error <= 2**-6 · q): the background (p < 1/128 holds ~4/5 of the demo's
#: bases) is ordered by round-off there - even 16 bits move the demo's AUROC by 6e-4 - so its bits buy bytes,
#: not ranking (with a first zoom of 4 kb, 0.22 bytes a base on the demo instead of 0.32 for 9 bits everywhere;
#: benchmarks/README.md)
PROB_BITS = 8
PROB_LOW_BITS = 6
#: a power of two, on every rounding grid, so the two bands join monotonically
PROB_LOW_BELOW = 2.0**-7
#: the compact probability's rounding, in words (``--help``, the sidecars)
COMPACT_PROB_ROUNDING = (
    f"{PROB_BITS} significant bits of min(p, 1 - p), {PROB_LOW_BITS} where it is below 1/{round(1 / PROB_LOW_BELOW)}"
)
#: compact probabilities are stored as the means of PROB_BIN-base bins (aligned to multiples of PROB_BIN on the
#: chromosome, rounded as above), except in a bin whose bases fall on both sides of the model's threshold or of
#: 0.5: there every base keeps its own rounded value. A value the rounding would carry across either cut is
#: kept on the model's side (the cut itself, or the float32 just below it: :func:`keep_sides`), so the stored
#: probability gives the model's own per-base calls at both cuts exactly. The model's probability has base-level
#: structure (a comb around every cut site) that neither the labels nor the calls resolve; the means halve the
#: file (demo: 0.11-0.17 bytes a base instead of 0.17-0.37) and move AUPRC and AUROC no more than the per-base
#: rounding does (benchmarks/README.md, Compact denoised outputs)
PROB_BIN = 8
#: the cuts whose calls the bins keep besides the model's threshold
PROB_BIN_CUTS = (0.5,)
#: how the compact probability is stored, in words (``--help``, the sidecars, the log)
COMPACT_PROB_STORAGE = (
    f"means of {PROB_BIN}-bp bins rounded to {COMPACT_PROB_ROUNDING}; bases keep their own rounded values in "
    "bins that straddle the threshold or 0.5, and every value stays on the model's side of both"
)
#: compact denoised tracks keep this many significant bits (relative error <= 2**-8)
TRACK_BITS = 8
#: compact tracks are also binned where the signal is low: in a TRACK_BIN-base bin (aligned to multiples of
#: TRACK_BIN on the chromosome) whose every value lies below the floor, the nonzero bases hold the mean of the
#: bin's nonzero values (zeros stay zero: the background's many exact zeros keep their ties, which rank metrics
#: count). The floor is TRACK_FLOOR times the model's mean coverage, the depth-normalisation reference total over
#: the genome's length: the scale the track comes out at, whatever the data's depth or units (models without
#: ``input_transform: depth`` have no such scale: their track stays per base). Low-signal stretches carry the
#: same comb around every cut site as the probability; binning them brings the demo's densest track (60,000
#: reads) from 0.24 to 0.19 bytes a base and moves no track metric beyond what bf16 does on the same input
#: (benchmarks/README.md, Compact denoised outputs)
TRACK_BIN = 8
TRACK_FLOOR = 1.0
#: how the compact track is stored, in words (``--help``, the sidecars, the log)
COMPACT_TRACK_STORAGE = (
    f"{TRACK_BITS} significant bits; in {TRACK_BIN}-bp bins whose values all lie below the model's mean coverage "
    "(input_transform depth), the nonzero bases hold the mean of the bin's nonzero values"
)
#: bases per record of the first zoom level of compact outputs (float32 ones: bbiwrite's FIRST_ZOOM, 128).
#: A dense track has a zoom record (32 bytes) in every bin: ~0.08 bytes a base compressed at 128 bp, ~0.025
#: at 512 bp, ~0.005 at 4,096 bp; browser views under ~4 Mb then read the data blocks instead (~0.2 bytes a
#: base: under 1 MB for a 4-Mb view)
COMPACT_FIRST_ZOOM = 4096
#: at most this many threads round the compact outputs (:func:`round_threads`)
ROUND_THREADS_MAX = 6


# --------------------------------------------------------------------------- output precision


def round_significant_bits(values: np.ndarray, bits: int | np.ndarray) -> np.ndarray:
    """Round float32 values to ``bits`` significant binary digits (nearest, ties to even), as float32.

    ``bits`` is one count or one per value (an integer array that broadcasts against ``values``), so a banded
    rounding is one pass. 0, NaN and inf are unchanged; the relative error is at most ``2**-bits``; the
    rounding is idempotent and monotone non-decreasing for one ``bits``. Done exactly in integers on the float32
    bit pattern (add half a unit of the last kept bit, less one, plus that bit for ties to even, then clear the
    dropped bits; a carry moves into the exponent as it should): ~60x faster than the float64 route, which
    subnormals still take (they keep ``bits`` bits relative to their own size there). A finite value that would
    round past the float32 range (only values within a relative ``2**-(bits + 1)`` of its maximum, 3.4e38) gets
    the largest such float32 instead of inf (there the relative error is below ``2**(1 - bits)``).
    """
    nbits = np.asarray(bits)
    if nbits.dtype.kind not in "iu" or (nbits.size and (nbits.min() < 1 or nbits.max() > 24)):
        raise ValueError(f"bits must be integers between 1 and 24 (a float32 has 24 significant bits), got {bits}")
    x = np.asarray(values, dtype=np.float32)
    shape = np.broadcast_shapes(x.shape, nbits.shape)
    flat = np.ascontiguousarray(np.broadcast_to(x, shape)).reshape(-1)
    # uint32 throughout: a finite value plus at most 2**22 stays below 2**32; inf/NaN are put back below
    drop = np.uint32(24) - (nbits.astype(np.uint32) if nbits.ndim == 0 else np.broadcast_to(nbits, shape).reshape(-1))
    drop = drop.astype(np.uint32)  # mantissa bits cleared, 0..23 (one count, or one per value)
    u = flat.view(np.uint32)
    dropped = (np.uint32(1) << drop) - np.uint32(1)
    r = (u + (dropped >> np.uint32(1)) + ((u >> drop) & np.uint32(1) & (drop > 0))) & ~dropped
    exponent = (u >> np.uint32(23)) & np.uint32(0xFF)
    special = exponent == 0xFF  # inf and NaN: unchanged
    if special.any():
        r[special] = u[special]
    over = ((r >> np.uint32(23)) & np.uint32(0xFF) == 0xFF) & ~special  # rounded past the largest finite float32
    if over.any():  # the largest float32 with `bits` bits, same sign
        d = np.broadcast_to(drop, u.shape)[over]
        r[over] = (u[over] & np.uint32(0x80000000)) | (np.uint32(0x7F800000) - (np.uint32(1) << d))
    out = r.view(np.float32)
    sub = (exponent == 0) & (u & np.uint32(0x7FFFFF) != 0)  # subnormals: relative bits, in float64
    if sub.any():
        out[sub] = _round_bits_float64(flat[sub], 24 - np.broadcast_to(drop, u.shape)[sub].astype(np.int64))
    return out.reshape(shape)


def _round_bits_float64(x: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """:func:`round_significant_bits` of finite float32 ``x`` in float64 (``np.frexp``/``np.ldexp``, exact)."""
    mantissa, exponent = np.frexp(x.astype(np.float64))  # x = mantissa · 2**exponent, 0.5 <= |mantissa| < 1
    scaled = np.rint(np.ldexp(mantissa, bits))  # at most `bits` bits (2**bits: carried into the exponent)
    return np.ldexp(scaled, exponent - bits).astype(np.float32)  # exact, representable in float32


def round_probability_bits(
    prob: np.ndarray, bits: int = PROB_BITS, low_bits: int | None = PROB_LOW_BITS, low_below: float = PROB_LOW_BELOW
) -> np.ndarray:
    """Round probabilities to ``bits`` significant bits of ``d = min(p, 1 - p)``, ``low_bits`` where ``d < low_below``.

    ``r``, ``d`` rounded to ``bits`` significant bits (``low_bits`` where ``d < low_below``), is stored as ``r``
    where ``p <= 0.5`` and ``1 - r`` elsewhere (float32): 0, 0.5 and 1 stay exact and the error is at most
    ``2**-bits · d`` (``2**-low_bits · d`` below ``low_below``): relative precision in both tails. The result is
    monotone non-decreasing in ``p``: each band's rounding is, ``low_below`` (a power of two, on both grids)
    separates their results, and the two mirrored halves meet at 0.5, which is on the grid. ``low_bits=None``:
    ``bits`` everywhere. For float32 ``p`` in [0.5, 1], ``1 - p`` and ``1 - r`` are exact (multiples of 2**-24
    in [0, 1]).
    """
    if not 0 < low_below <= 0.5 or np.frexp(low_below)[0] != 0.5:
        raise ValueError(f"low_below must be a power of two in (0, 0.5], got {low_below}")
    p = np.asarray(prob, dtype=np.float32)
    low = p <= 0.5
    d = np.where(low, p, np.float32(1) - p)
    band = bits if low_bits is None else np.where(d < low_below, np.int32(low_bits), np.int32(bits))
    r = round_significant_bits(d, band)  # one pass: per-element bits
    return np.where(low, r, np.float32(1) - r).astype(np.float32)


def keep_sides(rounded: np.ndarray, prob: np.ndarray, cuts: tuple[float, ...]) -> np.ndarray:
    """Return ``rounded`` with every value on the side of every cut that ``prob`` is on (a new array).

    A value the rounding carried across a cut (``prob`` within the rounding error of it) becomes the cut itself
    (``prob >= cut``) or the float32 just below it (``prob < cut``): both lie between ``prob`` and its rounded
    value, so the error bound and the order in ``prob`` hold, and ``stored >= cut`` equals ``prob >= cut``
    (compared as float32, as the peak caller, the metrics and MACS3 compare) at every base, for every cut.
    """
    out = np.array(rounded, dtype=np.float32, copy=True)
    p = np.asarray(prob, dtype=np.float32)
    for cut in map(np.float32, cuts):
        above = p >= cut
        out[above & (out < cut)] = cut
        out[~above & (out >= cut)] = np.nextafter(cut, np.float32(0))
    return out


def bin_probability(
    rounded: np.ndarray, prob: np.ndarray, start: int, cuts: tuple[float, ...], width: int = PROB_BIN
) -> np.ndarray:
    """Return the compact probability as stored: each ``width``-base bin holds its rounded mean.

    ``prob`` is the model's probability from position ``start`` of a chromosome, ``rounded`` its per-base
    compact rounding (:func:`round_probability_bits`); every value stored is first kept on ``prob``'s side of
    each of ``cuts`` (:func:`keep_sides`). Bins are aligned to multiples of ``width`` on the chromosome (the
    first and last may be cut short by the chunk); a bin whose bases fall on both sides of any cut keeps its
    bases' values. Every other bin's value is its mean of ``prob``, rounded and kept on the mean's side, which
    is all its bases' side: so ``stored >= cut`` equals ``prob >= cut`` at every base, for every cut, and the
    file gives the model's own calls there.
    """
    sided = keep_sides(rounded, prob, cuts)
    out = np.empty(prob.size, np.float32)
    for lo, hi, size in aligned_pieces(start, prob.size, width):
        out[lo:hi] = _bin_rows(sided[lo:hi].reshape(-1, size), prob[lo:hi].reshape(-1, size), cuts)
    return out


def aligned_pieces(start: int, n: int, width: int) -> list[tuple[int, int, int]]:
    """Split ``n`` bases from chromosome position ``start`` into bins aligned on multiples of ``width``.

    Returns the non-empty pieces as ``(lo, hi, bin size)``: the bases before the first boundary (one short bin),
    the whole bins, the bases after the last boundary (one short bin); each piece reshapes to ``(bins, size)``.
    """
    head = min(n, -start % width)
    body = (n - head) // width * width
    pieces = ((0, head, head), (head, head + body, width), (head + body, n, n - head - body))
    return [(lo, hi, size) for lo, hi, size in pieces if hi > lo]


def _bin_rows(sided: np.ndarray, prob: np.ndarray, cuts: tuple[float, ...]) -> np.ndarray:
    """:func:`bin_probability` of bins given as rows, flattened (``sided``: the rounded values, kept on side)."""
    mean = (_row_sum(prob) / prob.shape[1]).astype(np.float32)
    stored = np.repeat(keep_sides(round_probability_bits(mean), mean, cuts), prob.shape[1])
    split = np.zeros(prob.shape[0], bool)
    for cut in cuts:
        above = sided >= np.float32(cut)
        split |= above.any(axis=1) & ~above.all(axis=1)
    keep = np.repeat(split, prob.shape[1])
    stored[keep] = sided.reshape(-1)[keep]
    return stored


def bin_track(track: np.ndarray, start: int, floor: float, width: int = TRACK_BIN) -> np.ndarray:
    """Return the compact track as stored: :data:`TRACK_BITS` significant bits, low-signal bins as one value.

    ``track`` starts at position ``start`` of a chromosome. Bins are aligned to multiples of ``width`` on the
    chromosome (the first and last may be cut short by the chunk); in a bin whose every ``|value|`` is below
    ``floor`` the nonzero bases take the mean of the bin's nonzero values and zeros stay zero. Then every
    value is rounded (:func:`round_significant_bits`). ``floor <= 0``: the per-base rounding alone.
    """
    x = np.asarray(track, dtype=np.float32)
    if floor <= 0:
        return round_significant_bits(x, TRACK_BITS)
    out = np.empty(x.size, np.float32)
    for lo, hi, size in aligned_pieces(start, x.size, width):
        out[lo:hi] = _track_rows(x[lo:hi].reshape(-1, size), floor)
    return round_significant_bits(out, TRACK_BITS)


def _track_rows(rows: np.ndarray, floor: float) -> np.ndarray:
    """:func:`bin_track` of bins given as rows, before the rounding, flattened."""
    top = _fold(np.maximum, np.abs(rows))
    pick = np.flatnonzero((top < floor) & (top > 0))  # low bins with a nonzero value (all-zero bins stay)
    out = rows.copy()
    low = rows[pick]
    nonzero = low != 0
    mean = _row_sum(low) / _fold(np.add, nonzero.astype(np.int32))
    out[pick] = np.where(nonzero, mean.astype(np.float32)[:, None], np.float32(0))
    return out.reshape(-1)


def _row_sum(rows: np.ndarray) -> np.ndarray:
    """Return each row's sum in float64, left to right: one defined order, the native kernel's (bit for bit)."""
    total = rows[:, 0].astype(np.float64)
    for j in range(1, rows.shape[1]):
        total += rows[:, j]
    return total


def _fold(ufunc: np.ufunc, rows: np.ndarray) -> np.ndarray:
    """Return ``ufunc`` reduced over each row, by halving the rows while their width is even.

    2x faster than ``ufunc.reduce(rows, axis=1)`` on 8-wide rows, whose per-row loops are short.
    """
    while rows.shape[1] > 1 and rows.shape[1] % 2 == 0:
        half = rows.shape[1] // 2
        rows = ufunc(rows[:, :half], rows[:, half:])
    return ufunc.reduce(rows, axis=1)


def track_floor(metas: list[dict], genome_bp: int) -> float:
    """Return the compact track's bin floor: :data:`TRACK_FLOOR` x the models' mean coverage (0: no bins).

    The mean coverage is the depth-normalisation reference total over ``genome_bp`` (the genome selection's
    bases, over which inference scales the input to that total), averaged over an ensemble's members; a
    member without ``input_transform: depth`` has no known output scale, and then nothing is binned.
    """
    refs = [(m.get("input_transform") or {}).get("reference") for m in metas]
    kinds = [(m.get("input_transform") or {}).get("kind") for m in metas]
    if genome_bp <= 0 or any(k != "depth" for k in kinds) or not all(r and r > 0 for r in refs):
        return 0.0
    return TRACK_FLOOR * float(np.mean(refs)) / genome_bp


def round_threads(cores: int | None = None) -> int:
    """Threads that round the compact outputs' chunks in parallel: half the cores, 1 to :data:`ROUND_THREADS_MAX`.

    The cores this process may use (a SLURM job's, not the node's). In NumPy the rounding (~50 ms per M bases a
    thread) would bound a GPU's output rate from one thread (~20 M bases/s); the native pass
    (:mod:`atacdenoise.model.compact_native`, ~7 ms) releases the GIL, so the threads still add up. On a
    laptop's few cores one thread keeps up with the model, and more would only take cores from it.
    """
    return max(1, min(ROUND_THREADS_MAX, (cores or usable_cores()) // 2))


def compact_chunk(
    track: np.ndarray, prob: np.ndarray, start: int, floor: float, cuts: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Return one chunk's compact ``(track, probability)`` as stored, from chromosome position ``start``.

    :func:`bin_track` with ``floor`` and :func:`bin_probability` of :func:`round_probability_bits` kept on the
    model's side of ``cuts``: in one native pass (:mod:`atacdenoise.model.compact_native`, the same values) when
    it is built, else with these NumPy functions.
    """
    kernels = compact_native.load()
    if kernels is None:
        return bin_track(track, start, floor), bin_probability(round_probability_bits(prob), prob, start, cuts)
    bands = (PROB_BITS, PROB_LOW_BITS, PROB_LOW_BELOW)
    return (
        compact_native.compact_track(kernels, track, start, floor, TRACK_BIN, TRACK_BITS),
        compact_native.compact_probability(kernels, prob, start, cuts, PROB_BIN, *bands),
    )


def compact_spread(spread: np.ndarray) -> np.ndarray:
    """Return an ensemble's spread as stored by compact outputs: :func:`round_probability_bits` (native if built)."""
    kernels = compact_native.load()
    if kernels is None:
        return round_probability_bits(spread)
    return compact_native.round_probability(kernels, spread, PROB_BITS, PROB_LOW_BITS, PROB_LOW_BELOW)


def precision_sidecars(precision: str, ensemble: bool = False, floor: float = 0.0) -> dict[str, dict]:
    """Return what the sidecars of the bigWigs record about their values, per output key (with ``ensemble``: three).

    ``floor``: the compact track's bin floor (:func:`track_floor`; 0: not binned).
    """
    compact = precision == "compact"
    binned = compact and floor > 0
    no_rounding = "none (the model's float32 output)"
    track_rounding = COMPACT_TRACK_STORAGE if binned else f"{TRACK_BITS} significant bits"
    out = {
        "track": {
            "content": "denoised coverage",
            "precision": precision,
            "rounding": track_rounding if compact else no_rounding,
            "max_relative_error": 2.0**-TRACK_BITS if compact else 0.0,
            "relative_to": "the value (in a binned bin: the mean of its nonzero values)" if binned else "the value",
            "bin_bp": TRACK_BIN if binned else 1,
            "bin_floor": floor if binned else 0.0,
            "first_zoom_bp": COMPACT_FIRST_ZOOM if compact else FIRST_ZOOM,
        },
        "peakprob": {
            "content": "peak probability",
            "precision": precision,
            "rounding": COMPACT_PROB_STORAGE if compact else no_rounding,
            "max_relative_error": 2.0**-PROB_LOW_BITS if compact else 0.0,
            "relative_to": f"min(p, 1 - p) of the {PROB_BIN}-bp mean or of the base" if compact else "min(p, 1 - p)",
            "bin_bp": PROB_BIN if compact else 1,
            "first_zoom_bp": COMPACT_FIRST_ZOOM if compact else FIRST_ZOOM,
        },
    }
    if ensemble:
        out["track"]["content"] = "denoised coverage, mean of the ensemble's members"
        out["peakprob"]["content"] = "peak probability, mean of the ensemble's members' calibrated probabilities"
        out["spread"] = {
            **out["peakprob"],
            "content": "spread: standard deviation (ddof 0) of the ensemble's members' calibrated peak probabilities",
            "rounding": COMPACT_PROB_ROUNDING if compact else no_rounding,
            "relative_to": "min(p, 1 - p)",
            "bin_bp": 1,
        }
    return out


# --------------------------------------------------------------------------- tiling


def plan_tiles(length: int, interval: int, pad: int) -> np.ndarray:
    """Start of every output tile of a chromosome.

    Parameters
    ----------
    length : chromosome length (bases, > 0).
    interval : bases of output per tile (> 0).
    pad : bases of context on each side of a tile (>= 0); checked here, used by
        :func:`tile_windows`.

    Returns
    -------
    starts : int64[n_tiles], ``0, interval, 2·interval, ...`` with
        ``n_tiles = ceil(length / interval)``: tile ``i`` covers
        ``[starts[i], min(starts[i] + interval, length))``, so together the tiles
        cover every base once, the last partial tile (the chromosome tail) included.
    """
    if length <= 0:
        raise ValueError(f"chromosome length must be positive, got {length}")
    if interval <= 0 or pad < 0:
        raise ValueError(f"need interval > 0 and pad >= 0, got interval={interval}, pad={pad}")
    return np.arange(0, length, interval, dtype=np.int64)


def plan_chunks(length: int, interval: int, tiles_per_chunk: int) -> list[tuple[int, int]]:
    """Output ranges ``(start, end)`` of consecutive chunks of ``tiles_per_chunk`` tiles covering ``[0, length)``."""
    if tiles_per_chunk <= 0:
        raise ValueError(f"tiles_per_chunk must be positive, got {tiles_per_chunk}")
    step = interval * tiles_per_chunk
    starts = np.arange(0, length, step, dtype=np.int64)
    ends = np.minimum(starts + step, length)
    return list(zip(starts.tolist(), ends.tolist()))


def read_range(start: int, end: int, length: int, pad: int) -> tuple[int, int]:
    """Bases ``[max(0, start - pad), min(length, end + pad))`` that a chunk's windows need from the input."""
    return max(0, start - pad), min(length, end + pad)


def tile_windows(
    values: np.ndarray, start: int, end: int, length: int, interval: int, pad: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Input windows of the tiles of one chunk.

    Parameters
    ----------
    values : float32[m], input coverage of the bases given by :func:`read_range`
        ``(start, end, length, pad)``.
    start, end : output range of the chunk; ``start`` a multiple of ``interval``.
    length : chromosome length; bases outside ``[0, length)`` read as zero.
    out : optional float32[n_tiles, interval + 2·pad] to fill (e.g. pinned memory).

    Returns
    -------
    windows : float32[n_tiles, interval + 2·pad]; row ``i`` holds bases
        ``start + i·interval - pad .. start + (i+1)·interval + pad``.
    """
    n_tiles = -(-(end - start) // interval)
    width = interval + 2 * pad
    lo, hi = read_range(start, end, length, pad)
    if values.shape != (hi - lo,):
        raise ValueError(f"expected {hi - lo} input values for [{lo}, {hi}), got shape {values.shape}")
    if lo == start - pad and values.size == n_tiles * interval + 2 * pad:  # inside the chromosome: no zeros to add
        buf = np.asarray(values, dtype=np.float32)  # no copy of float32 values
    else:
        buf = np.zeros(n_tiles * interval + 2 * pad, dtype=np.float32)
        offset = lo - (start - pad)
        buf[offset : offset + values.size] = values
    view = np.lib.stride_tricks.sliding_window_view(buf, width)[::interval][:n_tiles]
    if out is None:
        return view.copy()
    out[:n_tiles] = view
    return out[:n_tiles]


def stitch(outputs: np.ndarray, interval: int, pad: int, n_bases: int) -> np.ndarray:
    """Central ``interval`` bases of each tile's output, concatenated: ``float32[n_bases]`` of one chunk.

    ``outputs`` is ``[n_tiles, interval + 2·pad]`` (or already cropped to
    ``[n_tiles, interval]`` when ``pad`` is 0); the last tile is cut at ``n_bases``.
    """
    central = outputs[:, pad : pad + interval]
    return np.ascontiguousarray(central).reshape(-1)[:n_bases]


# --------------------------------------------------------------------------- settings checks


def check_preprocessing(track: dict, model: dict, source: str) -> None:
    """Raise when a coverage track was made with other settings than the model's training data.

    ``track`` is the track's sidecar (``X.bw.json``), ``model`` the checkpoint's
    ``preprocessing``; keys of :data:`PREPROCESSING_KEYS` missing from either are
    not compared.
    """
    for key in PREPROCESSING_KEYS:
        if key in track and key in model and track[key] != model[key]:
            raise InputError(
                f"{source}: preprocessing setting {key} is {track[key]!r} for this coverage track but the model was "
                f"trained on tracks made with {key}={model[key]!r}; re-make the coverage with the model's settings "
                f"({key}={model[key]!r}) or train a new model on tracks like this one"
            )


def check_context(receptive_field: int, pad: int) -> None:
    """Warn when the context ``pad`` is less than half the receptive field (tiles would then show seams)."""
    if pad < receptive_field // 2:
        log.warning(
            "the model's receptive field (%d bp) is wider than the tile context allows (pad %d bp < %d): "
            "outputs near tile edges will differ slightly from a single pass",
            receptive_field,
            pad,
            receptive_field // 2,
        )


# --------------------------------------------------------------------------- device


# --------------------------------------------------------------------------- running the model


@dataclass
class RunStats:
    """What a run did: tiles, bases, seconds of model time (GPU time measured with CUDA events)."""

    tiles: int = 0
    bases: int = 0
    chunks: int = 0
    compute_s: float = 0.0
    gpu_events: list = field(default_factory=list)
    #: where the rest of the wall time went: the model waiting for its input, and for the outputs to drain;
    #: the output stage's own seconds (rounding summed over its threads, the writers' queues, the peak calls)
    input_wait_s: float = 0.0
    output_wait_s: float = 0.0
    round_s: float = 0.0
    round_threads: int = 1
    write_s: float = 0.0
    peaks_s: float = 0.0
    #: the prefetch thread's seconds reading and tiling the input; each writer process's CPU seconds and threads
    input_s: float = 0.0
    writer_cpu_s: dict = field(default_factory=dict)
    write_threads: int = 1

    def stages(self) -> str:
        """One line for the log: where the time went besides the model, to tell a run's bottleneck."""
        return (
            f"model {self.compute_s:.1f} s; waited {self.input_wait_s:.1f} s for the input and "
            f"{self.output_wait_s:.1f} s for the outputs (rounding {self.round_s:.1f} s on {self.round_threads} "
            f"thread(s), bigWig writers' queues {self.write_s:.1f} s, peak calls {self.peaks_s:.1f} s)"
        )

    def busy(self, model_s: float | None = None) -> dict[str, float]:
        """Seconds each stage of the stream was busy, spread over its own threads (``model_s``: the GPU's time).

        Where the stages overlap, the run takes about as long as the largest (issue 23). ``writer thread``: handing
        chunks to the writer processes and calling peaks; a writer process: its CPU seconds over its threads.
        """
        out = {
            "model": self.compute_s if model_s is None else model_s,
            "input": self.input_s,
            "rounding": self.round_s / max(self.round_threads, 1),
            "writer thread": self.write_s + self.peaks_s,
        }
        for key, cpu in self.writer_cpu_s.items():
            out[f"{key} writer"] = cpu / max(self.write_threads, 1)
        return out

    def busy_line(self, wall: float, model_s: float | None = None) -> str:
        """One line for the log: each stage's busy seconds and the slowest of them, against the wall time."""
        busy = self.busy(model_s)
        slowest = max(busy, key=busy.get)
        parts = [f"{k} {v:.1f}" for k, v in busy.items()]
        return (
            f"{'; '.join(parts)} (s, each over its own threads: rounding {self.round_threads}, writers "
            f"{self.write_threads}); the slowest: {slowest}, {busy[slowest]:.1f} s of the {wall:.1f} s"
        )

    def gpu_seconds(self) -> float:
        """Sum of the GPU time between recorded event pairs (synchronises)."""
        if not self.gpu_events:
            return 0.0
        torch.cuda.synchronize()
        return sum(a.elapsed_time(b) for a, b in self.gpu_events) / 1000.0


class Launched:
    """One chunk's outputs on their way to the host: :meth:`result` waits for them (a GPU's copies are async).

    ``arrays`` are host tensors (pinned on CUDA, filled by a copy on the runner's download stream), ``done``
    the CUDA event recorded after that copy (None when they are already there, as on a CPU); ``stats`` gets the
    seconds :meth:`result` waits as model time.
    """

    def __init__(self, arrays: tuple[torch.Tensor, ...], done: Any = None, stats: RunStats | None = None):
        self.arrays, self.done, self.stats = arrays, done, stats

    def result(self) -> tuple[np.ndarray, ...]:
        """Return the outputs as float32 arrays, once the device has copied them back."""
        if self.done is not None:
            t0 = time.perf_counter()
            self.done.synchronize()
            if self.stats is not None:
                self.stats.compute_s += time.perf_counter() - t0
            self.done = None
        return tuple(a.numpy() for a in self.arrays)


class Combined:
    """An ensemble's chunk: its members' launched chunks, combined by :func:`ensemble_stats` when they are back."""

    def __init__(self, parts: list[Launched]):
        self.parts = parts

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (mean track, mean probability, spread) of the members' outputs."""
        outs = [p.result() for p in self.parts]
        return ensemble_stats(np.stack([t for t, _ in outs]), np.stack([p for _, p in outs]))


#: host buffers of windows per runner: one being filled by the prefetch thread, one being uploaded and run, one
#: whose chunk is still on the device while the next is launched (TileRunner.run_stretches)
INPUT_BUFFERS = 3


class TileRunner:
    """Runs the model on batches of tile windows and returns the stitched outputs.

    Parameters
    ----------
    model : a module mapping float32[B, L] to (track float32[B, L], peak logits float32[B, L]).
    device : where to run it.
    interval, pad : tile geometry (bases).
    batch_size : tiles per forward pass (and per input read).
    transform : applied to each input batch (a tensor on ``device``) before the model,
        e.g. :func:`atacdenoise.model.network.transform_input` with the checkpoint's settings.
    amp : autocast dtype (``torch.bfloat16``) or None for fp32.
    forward_batch : tiles per forward pass (a chunk of ``batch_size`` tiles is run in slices of this
        many); default :data:`CPU_FORWARD_BATCH` on a CPU, ``batch_size`` on a GPU. Outputs do not
        depend on it (tiles are independent).
    native_conv : on a CPU in fp32, run the convolutions on :mod:`atacdenoise.model.cpuconv`'s compiled kernels
        (FFT or direct, ReLU and residual fused; ~8x oneDNN for the reference shape; falls back to
        PyTorch when they cannot be built).
    blend : the network's weight in the written track, the rest being the transformed input
        (:mod:`atacdenoise.model.blend`; 1 = the network alone).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        interval: int,
        pad: int,
        batch_size: int = 16,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        amp: torch.dtype | None = None,
        forward_batch: int | None = None,
        native_conv: bool = True,
        blend: float = 1.0,
    ):
        if batch_size <= 0:
            raise InputError(f"--batch-size {batch_size}: expected a positive number of tiles")
        if forward_batch is None:
            forward_batch = min(batch_size, CPU_FORWARD_BATCH) if device.type == "cpu" else batch_size
        self.forward_batch = max(1, int(forward_batch))
        self.model = model.to(device).eval()
        self.temperature = float(getattr(model, "peak_temperature", 1.0))  # model.pt's calibration (load_model)
        self.native_convs = 0
        if device.type == "cpu" and amp is None and native_conv:
            from atacdenoise.model.cpuconv import with_native_convs

            self.model, self.native_convs = with_native_convs(self.model)
            if self.native_convs:
                log.info(
                    "CPU inference: %d convolutions on the native kernel (atacdenoise.model.cpuconv)", self.native_convs
                )
        if device.type == "cuda" and gpu_conv_requested(device):
            from atacdenoise.model.gpuconv import TritonDenoiser

            kernels = TritonDenoiser(self.model, dtype=amp or torch.float32)
            if gpu_kernels_work(lambda: kernels(torch.zeros(1, 4096, device=device)), "GPU inference"):
                self.model = kernels
                log.info("GPU inference: the convolutions on the Triton kernel (ATACDENOISE_GPU_CONV=torch: cuDNN's)")
        self.device = device
        self.interval = interval
        self.pad = pad
        self.batch_size = batch_size
        self.transform = transform
        self.blend = float(blend)
        self.amp = amp
        self.width = interval + 2 * pad
        self.stats = RunStats()
        #: on CUDA, the windows go up on one stream and the outputs come down on another, beside the model's
        #: (issue 23: the copies of one chunk overlap the model on the next)
        self.upload_stream = self.download_stream = None
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            self.upload_stream, self.download_stream = torch.cuda.Stream(device), torch.cuda.Stream(device)

    @property
    def stream_stats(self) -> RunStats:
        """Where the chunk stream's own figures go (the waits, the output stage): this runner's."""
        return self.stats

    def new_buffer(self) -> torch.Tensor:
        """Allocate a host buffer for one batch of windows (pinned on CUDA so the copy is asynchronous)."""
        return torch.zeros((self.batch_size, self.width), dtype=torch.float32, pin_memory=self.device.type == "cuda")

    def prepare(self, read: Reader, start: int, end: int, length: int, buffer: torch.Tensor) -> torch.Tensor:
        """Read and window one chunk into ``buffer``; returns the filled rows (runs in the prefetch thread)."""
        t0 = time.perf_counter()
        lo, hi = read_range(start, end, length, self.pad)
        values = np.asarray(read(lo, hi), dtype=np.float32)
        windows = tile_windows(values, start, end, length, self.interval, self.pad, out=buffer.numpy())
        self.stats.input_s += time.perf_counter() - t0
        return buffer[: windows.shape[0]]

    def forward(self, windows: torch.Tensor, n_bases: int) -> tuple[np.ndarray, np.ndarray]:
        """Denoised track and peak probability, float32[n_bases] each, of one chunk's windows."""
        return self.launch(windows, n_bases).result()

    def upload(self, windows: torch.Tensor) -> torch.Tensor:
        """Return ``windows`` on the device, copied on the upload stream; the current stream waits for the copy.

        On a CPU they are returned as they are. On CUDA ``windows`` should be pinned (:meth:`new_buffer`) and
        left unchanged until the chunk's :meth:`Launched.result` has returned.
        """
        if self.upload_stream is None or windows.device.type == "cuda":
            return windows.to(self.device)
        with torch.cuda.stream(self.upload_stream):
            x = windows.to(self.device, non_blocking=True)
        compute = torch.cuda.current_stream(self.device)
        compute.wait_stream(self.upload_stream)
        x.record_stream(compute)  # its memory is not reused by the upload stream while the model reads it
        return x

    def download(self, *outputs: torch.Tensor) -> Launched:
        """Copy ``outputs`` (on the device) into pinned host memory on the download stream, without waiting."""
        if self.download_stream is None:
            return Launched(tuple(t.cpu() for t in outputs))
        self.download_stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.download_stream):
            hosts = tuple(torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in outputs)
            for host, t in zip(hosts, outputs):
                host.copy_(t, non_blocking=True)
                t.record_stream(self.download_stream)
            done = torch.cuda.Event()
            done.record(self.download_stream)
        return Launched(hosts, done, self.stats)

    def launch(self, windows: torch.Tensor, n_bases: int) -> Launched:
        """Start the model on one chunk's windows: the track and peak probability, float32[n_bases] each, to come.

        On a CPU the work is done when this returns; on CUDA it is queued (upload, model, download on three
        streams) and :meth:`Launched.result` waits for it, so the host can prepare and hand on other chunks
        meanwhile. ``windows`` may already be on the device (:meth:`upload`; an ensemble uploads once).
        """
        t0 = time.perf_counter()
        cuda = self.device.type == "cuda"
        x = self.upload(windows)
        if cuda:
            begin, finish = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
        # crop on the device: only the central bases travel back
        sl = slice(self.pad, self.pad + self.interval)
        tracks, probs = [], []
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=self.amp or torch.bfloat16, enabled=self.amp is not None),
        ):
            if self.transform is not None:
                x = self.transform(x)
            for i in range(0, x.shape[0], self.forward_batch):
                track, logits = self.model(x[i : i + self.forward_batch])
                track = track[:, sl].float()
                if self.blend < 1.0:  # model/blend.py: part of the (transformed) input where it is already good
                    track = self.blend * track + (1.0 - self.blend) * x[i : i + self.forward_batch, sl].float()
                tracks.append(track)
                probs.append(peak_probability(logits[:, sl].float(), self.temperature))
        track = (tracks[0] if len(tracks) == 1 else torch.cat(tracks)).reshape(-1)[:n_bases]
        prob = (probs[0] if len(probs) == 1 else torch.cat(probs)).reshape(-1)[:n_bases]
        if cuda:
            finish.record()
            self.stats.gpu_events.append((begin, finish))
        launched = self.download(track, prob)
        self.stats.compute_s += time.perf_counter() - t0
        self.stats.tiles += windows.shape[0]
        self.stats.bases += n_bases
        self.stats.chunks += 1
        return launched

    def run_chromosome(
        self, read: Reader, length: int, launch: Callable[[torch.Tensor, int], Launched | Combined] | None = None
    ) -> Iterator[tuple]:
        """Denoise one chromosome chunk by chunk, in order.

        ``read(lo, hi)`` is called once per chunk, for at most
        ``batch_size·interval + 2·pad`` bases, in a background thread one chunk
        ahead of the model. Yields ``(start, track float32[n], prob float32[n])``
        for consecutive chunks that together cover ``[0, length)``; with ``launch``
        (``(windows, n_bases) -> Launched``, e.g. :meth:`EnsembleRunner.launch`) instead of
        :meth:`launch`, ``(start, *outputs)``.
        """
        for _, start, *outputs in self.run_stretches([(None, read, length)], launch):
            yield start, *outputs

    def run_stretches(
        self,
        stretches: Iterable[tuple[Any, Reader, int]],
        launch: Callable[[torch.Tensor, int], Launched | Combined] | None = None,
    ) -> Iterator[tuple]:
        """Denoise ``(key, read, length)`` stretches one after another as one stream of chunks.

        As :meth:`run_chromosome` for each stretch, yielding ``(key, start, *outputs)``, but the prefetch thread
        reads the next stretch's first chunk while the model runs the last one of this stretch: a chromosome
        boundary does not drain the pipeline (issue 23: on a GPU, a whole genome is ~25 of them). Each chunk is
        launched before the previous one's outputs are yielded, so a GPU runs it while the caller hands those
        on (on a CPU the order of the work is the same as without: the model runs in this thread).
        """
        launch = launch or self.launch

        def jobs() -> Iterator[tuple[Any, Reader, int, int, int]]:
            for key, read, length in stretches:
                for start, end in plan_chunks(length, self.interval, self.batch_size):
                    yield key, read, length, start, end

        buffers = [self.new_buffer() for _ in range(INPUT_BUFFERS)]
        queue = jobs()
        job = next(queue, None)
        if job is None:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:

            def submit(job: tuple[Any, Reader, int, int, int], buffer: Any) -> Future:
                _, read, length, start, end = job
                return pool.submit(self.prepare, read, start, end, length, buffer)

            pending = submit(job, buffers[0])
            previous: tuple[Any, int, Launched | Combined] | None = None
            for i in itertools.count():
                key, _, _, start, end = job
                t0 = time.perf_counter()
                windows = pending.result()
                self.stats.input_wait_s += time.perf_counter() - t0
                job = next(queue, None)
                if job is not None:
                    # buffer i + 1 last held chunk i - 2, whose outputs were yielded (so awaited) last round:
                    # its upload, which the model waited for, is long done
                    pending = submit(job, buffers[(i + 1) % INPUT_BUFFERS])
                launched = launch(windows, end - start)
                if previous is not None:
                    yield previous[0], previous[1], *previous[2].result()
                previous = (key, start, launched)
                if job is None:
                    yield key, start, *launched.result()
                    return


def ensemble_stats(tracks: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combine K members' outputs of the same bases: (mean track, mean probability, spread), float32[n] each.

    ``tracks``, ``probs``: float[K, n], one row per member (``probs`` calibrated, in [0, 1]). The spread is
    the population standard deviation (ddof 0) of the members' probabilities, so it lies in [0, 0.5] for any
    K (0.5: half the members say 0, half say 1); computed in float64, returned as float32.
    """
    tracks = np.asarray(tracks, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    if tracks.ndim != 2 or tracks.shape != probs.shape:
        raise ValueError(f"expected tracks and probs of one shape [K, n], got {tracks.shape} and {probs.shape}")
    mean = (tracks.mean(axis=0), probs.mean(axis=0), probs.std(axis=0))
    return mean[0].astype(np.float32), mean[1].astype(np.float32), mean[2].astype(np.float32)


class EnsembleRunner:
    """Runs K members (one :class:`TileRunner` each) on the same tiles and averages them chunk by chunk.

    Every member reads the same windows (read once, by the first runner's prefetch thread) through its own
    input transform and calibration; only one chunk of K members' outputs is held at a time
    (:func:`ensemble_stats`). The members must share the tile geometry (``interval``, ``pad``,
    ``batch_size``).
    """

    def __init__(self, runners: list[TileRunner]):
        if not runners:
            raise ValueError("an ensemble needs at least one member")
        first = runners[0]
        for r in runners[1:]:
            if (r.interval, r.pad, r.batch_size) != (first.interval, first.pad, first.batch_size):
                raise ValueError("ensemble members must share interval, pad and batch_size")
        self.runners = runners
        self.interval, self.pad, self.batch_size = first.interval, first.pad, first.batch_size

    @property
    def stream_stats(self) -> RunStats:
        """Where the chunk stream's own figures go (the waits, the output stage): the first member's."""
        return self.runners[0].stats

    @property
    def stats(self) -> RunStats:
        """The members' run statistics: the stream's (bases, tiles, waits) with the model time of all members."""
        return replace(
            self.stream_stats,
            compute_s=sum(r.stats.compute_s for r in self.runners),
            gpu_events=[e for r in self.runners for e in r.stats.gpu_events],
        )

    def forward(self, windows: torch.Tensor, n_bases: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean track, mean probability, spread), float32[n_bases] each, of one chunk's windows."""
        return self.launch(windows, n_bases).result()

    def launch(self, windows: torch.Tensor, n_bases: int) -> Combined:
        """Start every member on one chunk's windows (uploaded once); the result is :meth:`forward`'s."""
        x = self.runners[0].upload(windows)
        return Combined([r.launch(x, n_bases) for r in self.runners])

    def run_chromosome(self, read: Reader, length: int) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """As :meth:`TileRunner.run_chromosome`, yielding ``(start, track, prob, spread)``."""
        return self.runners[0].run_chromosome(read, length, launch=self.launch)

    def run_stretches(self, stretches: Iterable[tuple[Any, Reader, int]]) -> Iterator[tuple]:
        """As :meth:`TileRunner.run_stretches`, yielding ``(key, start, track, prob, spread)``."""
        return self.runners[0].run_stretches(stretches, launch=self.launch)


def output_paths(prefix: str, ensemble: bool = False) -> dict[str, Path]:
    """Return the paths of the outputs of ``--out-prefix``: three, four with an ensemble (``PREFIX.spread.bw``)."""
    paths = {
        "track": Path(f"{prefix}.track.bw"),
        "peakprob": Path(f"{prefix}.peakprob.bw"),
        "peaks": Path(f"{prefix}.peaks.narrowPeak"),
    }
    if ensemble:
        paths["spread"] = Path(f"{prefix}.spread.bw")
    return paths


def read_values(bw, chrom: str, lo: int, hi: int) -> np.ndarray:
    """Read float32[hi - lo] of an open bigWig (:func:`atacdenoise.io.bigwig.open_bigwig`).

    Bases without data, or NaN, read as 0 (infinities as the largest float32).
    """
    values = bw.values(chrom, lo, hi, fill=0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        total = np.sum(values, dtype=np.float32)
    if not np.isfinite(total):  # one pass, no mask: a NaN or an infinity makes the sum so
        np.nan_to_num(values, copy=False)
    return values


def denoise_genome(
    runner: TileRunner | EnsembleRunner,
    input_path: Path,
    sizes: dict[str, int],
    paths: dict[str, Path],
    threshold: float,
    target: TargetRegions | None = None,
    precision: str = "compact",
    floor: float = 0.0,
) -> int:
    """Stream every chromosome through the model into the three outputs; returns the number of peaks.

    Chromosomes go in ``sizes`` order (the bigWig order), as one stream of chunks: the input is read one
    chunk ahead in a thread, across chromosome boundaries (:meth:`TileRunner.run_stretches`); each bigWig is
    written by its own child process (:class:`TrackWriterProcess`, which deflates
    blocks on a thread pool and streams zoom levels to disk, so memory stays
    bounded for any genome); peaks are called in a thread while
    the model computes the next chunk. With ``target`` regions only they are
    denoised (each as its own stretch; the outputs are empty elsewhere). Both
    tracks are stored at ``precision`` (:func:`compact_chunk`, chunks rounded in parallel on
    :func:`round_threads` threads, then written in order by the writer thread; ``floor``: the compact track's,
    :func:`track_floor`) and peaks are called on the stored values. With an
    :class:`EnsembleRunner` (``paths`` has ``spread``) the spread is written too (at the probability's
    precision) and each peak's score column is its confidence (:func:`atacdenoise.peaks.threshold.peak_table`).
    The files appear together at the end, renamed from temporary names; on any error
    none is left behind.
    """
    bw = open_bigwig(input_path)
    tmp = {key: temp_path_for(path) for key, path in paths.items()}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    first_zoom = COMPACT_FIRST_ZOOM if precision == "compact" else FIRST_ZOOM
    compact = precision == "compact"
    writers = {
        key: TrackWriterProcess(tmp[key], sizes, first_zoom=first_zoom, smallest=compact)
        for key in ("track", "peakprob", "spread")
        if key in paths
    }
    log.info(
        "bigWig writers: %d processes of %d deflate thread(s), their chunks through %s",
        len(writers),
        writers["track"].threads,
        "shared memory" if all(w.shared for w in writers.values()) else f"a pipe ({HANDOFF_ENV}, or no memfd)",
    )
    tables: list[pd.DataFrame] = []
    rounders = round_threads() if compact else 1
    stats = runner.stream_stats
    stats.round_threads = rounders
    lock = threading.Lock()
    try:
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer") as pool,
            ThreadPoolExecutor(max_workers=rounders, thread_name_prefix="round") as rounding,
        ):
            pending: list[Future] = []

            def stored_values(
                pos: int, track: np.ndarray, prob: np.ndarray, spread: np.ndarray | None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
                """Return one chunk's values as stored (chunks in parallel: the rounding is pure)."""
                t0 = time.perf_counter()
                if compact:
                    track, prob = compact_chunk(track, prob, pos, floor, (threshold, *PROB_BIN_CUTS))
                    if spread is not None:
                        spread = compact_spread(spread)  # the probability's scale
                with lock:
                    stats.round_s += time.perf_counter() - t0
                return track, prob, spread

            def hand_on(chrom: str, offset: int, start: int, ready: Future, peaks: PeakStream) -> None:
                """Write one chunk's stored values and call peaks on them, in chunk order (the writer thread)."""
                track, stored, spread = ready.result()
                t0 = time.perf_counter()
                writers["track"].add(chrom, offset + start, track)
                writers["peakprob"].add(chrom, offset + start, stored)
                if spread is not None:
                    writers["spread"].add(chrom, offset + start, spread)
                t1 = time.perf_counter()
                peaks.add(start, stored, track, spread)  # the model's own calls (bin_probability)
                stats.write_s += t1 - t0
                stats.peaks_s += time.perf_counter() - t1

            # every chromosome (or target region) as one stream of chunks: no drain at a boundary
            plan = [
                (chrom, offset, end)
                for chrom, length in sizes.items()
                for _, offset, end in ([(chrom, 0, length)] if target is None else target_stretches(target, chrom))
            ]

            def reader(chrom: str, offset: int) -> Reader:
                return lambda lo, hi: read_values(bw, chrom, offset + lo, offset + hi)

            def finish(k: int, peaks: PeakStream) -> pd.DataFrame:
                chrom, offset, end = plan[k]
                table = peaks.finish()
                if offset and len(table):
                    table = table.assign(start=table["start"] + offset, end=table["end"] + offset)
                log.debug(
                    "%s:%d-%d: %d peaks (peak caller held at most %s bases)",
                    chrom,
                    offset,
                    end,
                    len(table),
                    f"{peaks.max_buffered:,}",
                )
                return table

            stretches = ((k, reader(chrom, offset), end - offset) for k, (chrom, offset, end) in enumerate(plan))
            finished: list[Future] = []
            current: tuple[int, PeakStream] | None = None
            for k, start, track, prob, *spread in runner.run_stretches(
                progress(stretches, total=len(plan), desc="denoise", unit="region" if target else "chrom")
            ):
                if current is None or current[0] != k:
                    if current is not None:  # on the writer thread, after the stretch's last chunk
                        finished.append(pool.submit(finish, *current))
                    current = (k, PeakStream(plan[k][0], threshold, min_length=MIN_LENGTH, max_gap=MAX_GAP))
                chrom, offset, _ = plan[k]
                ready = rounding.submit(stored_values, offset + start, track, prob, spread[0] if spread else None)
                pending.append(pool.submit(hand_on, chrom, offset, start, ready, current[1]))
                t0 = time.perf_counter()
                while len(pending) > rounders + 1:
                    pending.pop(0).result()
                stats.output_wait_s += time.perf_counter() - t0
            if current is not None:
                finished.append(pool.submit(finish, *current))
            while pending:
                pending.pop(0).result()
            tables = [f.result() for f in finished]
        for writer in writers.values():
            writer.close()
        stats.writer_cpu_s = {key: w.cpu_s for key, w in writers.items()}
        stats.write_threads = writers["track"].threads
        peaks_df = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=NARROWPEAK_COLUMNS)
        write_narrowpeak(peaks_df, tmp["peaks"])
        for key, path in paths.items():
            commit(tmp[key], path)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        for path in tmp.values():
            path.unlink(missing_ok=True)
        raise
    finally:
        bw.close()
    return len(peaks_df)


def target_stretches(target: TargetRegions, chrom: str) -> list[tuple[str, int, int]]:
    """Return the target regions of ``chrom`` as ``(chrom, start, end)``, in order (nothing when it has none)."""
    if chrom not in target.starts:
        return []
    return [(chrom, int(a), int(b)) for a, b in zip(target.starts[chrom], target.ends[chrom])]


def log_device(device: torch.device, amp: torch.dtype | None, threads: int) -> None:
    """Log where and in which precision the model runs (and reset the GPU's peak-memory counter)."""
    precision = "bf16 autocast" if amp is not None else "fp32"
    if device.type == "cuda":
        log.info("device: cuda (%s), %s", torch.cuda.get_device_name(device), precision)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        log.info("device: cpu, %d threads, %s", threads, precision)


def log_summary(runner: TileRunner, device: torch.device, wall: float, n_peaks: int, paths: dict[str, Path]) -> None:
    """Log what a run did: bases, tiles, speed, GPU time and memory, peak RSS, outputs."""
    s = runner.stats
    log.info(
        "denoised %s bp in %d tiles (%d batches) in %.1f s: %s bp/s overall, model time %.1f s",
        f"{s.bases:,}",
        s.tiles,
        s.chunks,
        wall,
        f"{s.bases / max(wall, 1e-9):,.0f}",
        s.compute_s,
    )
    log.info("where the time went: %s", s.stages())
    gpu_s = s.gpu_seconds() if device.type == "cuda" else None
    log.info("busy per stage: %s", s.busy_line(wall, gpu_s))
    if device.type == "cuda":
        log.info(
            "GPU %s: %.2f s of GPU time, peak GPU memory %.2f GiB",
            torch.cuda.get_device_name(device),
            gpu_s,
            torch.cuda.max_memory_allocated(device) / 2**30,
        )
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    log.info("peak memory (RSS) of the main process: %.2f GiB", rss)
    log.info("%d peaks; wrote %s", n_peaks, ", ".join(str(p) for p in paths.values()))


# --------------------------------------------------------------------------- files in, files out


def denoise_bigwig(
    model_path: str | Path | list[str | Path],
    input_path: str | Path,
    sizes_path: str | Path,
    out_prefix: str | Path,
    chroms: list[str] | None = None,
    batch_size: int = 16,
    device: str = "auto",
    threads: int | None = None,
    threshold: float | None = None,
    amp: str = "auto",
    interval: int | None = None,
    target_regions: str | Path | None = None,
    precision: str = "compact",
) -> dict[str, Path]:
    """Denoise a coverage bigWig with a model file into ``PREFIX.{track.bw,peakprob.bw,peaks.narrowPeak,fitness.tsv}``.

    Every base of every selected chromosome (``chroms``, default: the sizes
    file's without chrM and unplaced contigs) is denoised. The input's sidecar
    (``X.bw.json``) must show the model's preprocessing; without one a warning
    is logged. ``threshold`` defaults to the model's (chosen on validation);
    ``interval`` to the model's tile size (outputs do not depend on it). With
    ``target_regions`` (a BED) only those regions are denoised. ``precision``: ``compact``
    (probability: :data:`COMPACT_PROB_STORAGE`; track: :data:`COMPACT_TRACK_STORAGE`) or ``float32`` (the model's
    outputs unchanged); see the module docstring. The three files
    appear together, atomically, then each bigWig's sidecar ``X.bw.json`` (its precision);
    then ``PREFIX.fitness.tsv``, the input compared with the
    model's training data (:mod:`atacdenoise.model.fitness`, a warning per metric outside what the
    model saw). Returns the paths of the three (the table is at :func:`atacdenoise.model.fitness.fitness_path`).

    ``model_path`` may be a list of K model files trained alike (an ensemble, config ``model.ensemble``):
    with K > 1 the track and probability are the members' means, ``PREFIX.spread.bw`` is the standard
    deviation of their calibrated probabilities (:func:`ensemble_stats`), the narrowPeak's score column is
    each peak's confidence, the default threshold is the mean of the members' thresholds, and the fitness
    is that of the first member (all share the training data). A list of one is the single-model route.
    """
    from atacdenoise.model.network import depth_scale, load_model, transform_input

    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    model_paths = list(model_path) if isinstance(model_path, list | tuple) else [model_path]
    if not model_paths:
        raise InputError("--model: give at least one model file")
    ensemble = len(model_paths) > 1
    input_path = Path(input_path)
    header = read_chrom_sizes(sizes_path)
    genome = select_chroms(header)
    sizes = select_chroms(header, include=chroms)
    target = read_target_regions(target_regions, sizes)
    sizes = restrict_sizes(sizes, target)
    in_input = check_bigwig(input_path, sizes)  # the bigWig's chromosomes and lengths
    dev = select_device(device)
    members = [load_model(path, map_location="cpu") for path in model_paths]
    check_members(model_paths, [meta for _, meta in members])
    model, meta = members[0]
    sidecar = read_sidecar(input_path)
    if sidecar is None:
        log.warning(
            "%s: no preprocessing sidecar (%s.json): cannot check it was made like the model's training data",
            input_path,
            input_path.name,
        )
    else:
        check_preprocessing(sidecar, meta.get("preprocessing", {}), str(input_path))
    fitness = assess_track(meta, input_path, sidecar, genome)  # is the model fit for this sample? (logged)
    interval, pad = int(interval or meta["window"]["interval"]), int(meta["window"]["pad"])
    if threshold is None:
        threshold = float(np.mean([float(m.get("threshold", 0.5)) for _, m in members]))
    threshold = float(threshold)
    check_context(model.receptive_field, pad)
    dtype = autocast_dtype(amp, dev)
    threads = threads or usable_cores()
    if dev.type == "cpu":
        torch.set_num_threads(threads)
    total = None
    runners, alphas = [], []
    for (member, member_meta), path in zip(members, model_paths):
        input_transform = member_meta.get("input_transform", {"kind": "none"})
        scale = 1.0
        if input_transform.get("kind") == "depth":
            # the total over every chromosome of the genome selection (not only `chroms`), as in training
            total = bigwig_total(input_path, genome) if total is None else total
            scale = depth_scale(input_transform, total, str(input_path))
            log.info(
                "depth normalisation (%s): %s has total signal %.6g; input x %.4g to the model's reference %.6g",
                path,
                input_path,
                total,
                scale,
                input_transform["reference"],
            )
        alphas.append(input_blend(member_meta, fitness, input_transform))
        runners.append(
            TileRunner(
                member,
                dev,
                interval,
                pad,
                batch_size,
                transform=lambda x, t=input_transform, c=scale: transform_input(x, t, c),
                amp=dtype,
                blend=alphas[-1],
            )
        )
    runner = EnsembleRunner(runners) if ensemble else runners[0]
    log_device(dev, dtype, threads)
    log.info(
        "%s: %d chromosomes, %s bp%s; tiles of %d bp with %d bp context, %d per batch; peaks at probability >= %g",
        input_path,
        len(sizes),
        f"{sum(sizes.values()) if target is None else target.bp(list(sizes)):,}",
        "" if target is None else f" in the target regions {target.path}",
        interval,
        pad,
        batch_size,
        threshold,
    )
    if ensemble:
        log.info(
            "ensemble of %d models (%s): mean track and probability, spread = sd of the members' probabilities",
            len(model_paths),
            ", ".join(map(str, model_paths)),
        )
    # the track's scale: the input is brought to the reference total over the genome's chromosomes it has
    genome_bp = sum(n for c, n in genome.items() if c in in_input)
    floor = track_floor([m for _, m in members], genome_bp)
    log.info("output precision: %s", describe_precision(precision, floor))
    paths = output_paths(out_prefix, ensemble=ensemble)
    t0 = time.perf_counter()
    n_peaks = denoise_genome(runner, input_path, sizes, paths, threshold, target, precision, floor)
    alpha = float(np.mean(alphas))
    for key, info in precision_sidecars(precision, ensemble=ensemble, floor=floor).items():
        record = {**info, "model": str(model_paths[0]), "input": str(input_path)}
        if key == "track":
            record["blend_weight"] = alpha
        if ensemble:
            record["ensemble"] = {"members": [str(p) for p in model_paths], "threshold": threshold}
        write_json(sidecar_path(paths[key]), record)
    write_fitness(fitness, fitness_path(out_prefix))
    log_summary(runner, dev, time.perf_counter() - t0, n_peaks, paths)
    return paths


def input_blend(meta: dict, fitness: pd.DataFrame, input_transform: dict) -> float:
    """Return the network's weight in the track for this input (:mod:`atacdenoise.model.blend`), logged."""
    blend = meta.get("blend") if input_transform.get("kind") == "depth" else None
    if not blend:
        return 1.0
    row = fitness[fitness["metric"] == "cut_sites_per_mb"]
    depth = row["sample"].iloc[0] if len(row) else None
    depth = float(depth) if depth is not None and pd.notna(depth) else None
    alpha = blend_weight(blend, depth)
    if depth is None:
        log.info("blend: the input's depth is unknown: the track is the network's alone")
    else:
        log.info(
            "blend: input at %.4g cut sites per Mb: track = %.2f x network + %.2f x input (fitted on validation at "
            "%s cut sites per Mb)",
            depth,
            alpha,
            1 - alpha,
            ", ".join(f"{10**x:.3g}" for x in blend["log10_cut_sites_per_mb"]),
        )
    return alpha


#: what the members of an ensemble must share (the first member's values are used for all)
MEMBER_KEYS = ("preprocessing", "window", "input_transform")


def check_members(paths: list, metas: list[dict]) -> None:
    """Raise when ensemble members differ in preprocessing, tile window or input transform (model.pt keys).

    Members differ in their seed only; those settings decide how the input is read and tiled, which all
    members share.
    """
    for path, meta in zip(paths[1:], metas[1:]):
        for key in MEMBER_KEYS:
            a, b = metas[0].get(key), meta.get(key)
            if key == "input_transform":  # the reference depth is a float computed from the same data
                a, b = (a or {}).get("kind", "none"), (b or {}).get("kind", "none")
            if a != b:
                raise InputError(
                    f"{path}: ensemble member differs from {paths[0]} in {key} ({b!r} vs {a!r}); "
                    "members must be trained with the same settings but the seed (config model.ensemble)"
                )


def describe_precision(precision: str, floor: float = 0.0) -> str:
    """Return one line for the log: how the two tracks are stored (``floor``: the track's, :func:`track_floor`)."""
    if precision == "compact":
        track = (
            f"{COMPACT_TRACK_STORAGE} ({floor:.4g})"
            if floor > 0
            else f"{TRACK_BITS} significant bits (per base: the model has no depth normalisation)"
        )
        return (
            f"compact (peak probability as {COMPACT_PROB_STORAGE}; denoised track: {track}; "
            "--precision float32 keeps the model's values)"
        )
    return "float32 (the model's values, unrounded)"


def denoise_array(
    model: torch.nn.Module,
    values: np.ndarray,
    interval: int,
    pad: int,
    batch_size: int = 16,
    device: str = "auto",
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Denoise one chromosome's coverage held in memory: float32[n] in, (track, peak probability) float32[n] out.

    The notebook route: the same tiling as :func:`denoise_bigwig` (zeros
    beyond the ends, every base included). ``transform`` prepares the input as
    the model was trained (:func:`atacdenoise.model.network.transform_input`);
    with a depth-normalised model, scale the input to its reference depth first.
    """
    values = np.asarray(values, dtype=np.float32)
    runner = TileRunner(model, select_device(device), interval, pad, batch_size, transform=transform)
    track, prob = np.zeros_like(values), np.zeros_like(values)
    for start, t, p in runner.run_chromosome(lambda lo, hi: values[lo:hi], values.size):
        track[start : start + t.size], prob[start : start + p.size] = t, p
    return track, prob
