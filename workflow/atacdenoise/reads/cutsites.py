"""Tn5 cut sites and their smoothed coverage: per-chromosome array code.

Coordinates are 0-based. Tn5 inserts with a 9-bp stagger, so the cut site of
a read is its 5' end shifted towards the centre of the insertion:

* a ``+`` strand read's 5' base is ``reference_start``; its cut site is
  ``reference_start + shift_plus`` (default ``+4``);
* a ``-`` strand read's 5' base is ``reference_end - 1`` (``reference_end`` is
  exclusive); its cut site is ``reference_end - 1 + shift_minus`` (default ``-5``).

A 10x-style fragments file already holds shifted ends: its ``start`` and
``end - 1`` are the two cut sites of the fragment.

Coverage is the number of cut sites within a centred box of ``smooth_bp + 1``
bases (default 201 bp: ``cut - 100 .. cut + 100``, clipped at the chromosome
ends), the AtacWorks convention; integer counts, optionally scaled to counts per
million cut sites (CPM).

Only the walk over a BAM's reads is Python (pysam gives no bulk access); it
just copies four integers per read into arrays, and everything else (filters,
shifts, counting, smoothing) is NumPy on whole chromosomes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from atacdenoise.errors import InputError
from atacdenoise.io.bam import (
    DUPLICATE,
    MIN_MAPQ,
    PAIRED,
    PROPER_PAIR,
    QCFAIL,
    REVERSE,
    SECONDARY,
    SUPPLEMENTARY,
    UNMAPPED,
)

log = logging.getLogger(__name__)

#: defaults of the coverage command (the MAPQ filter and the SAM flag bits live in :mod:`atacdenoise.io.bam`;
#: ``MIN_MAPQ`` is imported here too, for the commands that read it as ``cutsites.MIN_MAPQ``)
SHIFT_PLUS = 4
SHIFT_MINUS = -5
SMOOTH_BP = 200

#: read filters in the order they are applied; a read dropped by several is
#: counted under the first. ``improper_pair`` drops paired reads without the
#: proper-pair flag (single-end reads pass it); ``low_mapq`` drops MAPQ < min_mapq
#: (255, "not available", counts as high, as in samtools ``-q``).
FILTERS = ("unmapped", "secondary", "supplementary", "qcfail", "duplicate", "improper_pair", "low_mapq")

#: reads copied from pysam per batch (bounds the Python lists)
BATCH = 1 << 18
#: bases per window when smoothing a chromosome piecewise (bounds memory: ~3 x 4 bytes per base)
WINDOW = 8_000_000


@dataclass
class FilterCounts:
    """Reads seen, dropped per filter (first failing filter), kept, and cut sites off the chromosome ends."""

    seen: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILTERS, 0))
    kept: int = 0
    off_chrom: int = 0

    def __iadd__(self, other: FilterCounts) -> FilterCounts:
        self.seen += other.seen
        self.kept += other.kept
        self.off_chrom += other.off_chrom
        for k, v in other.dropped.items():
            self.dropped[k] += v
        return self

    def as_dict(self) -> dict:
        """Return the counts as a flat dict (``dropped_<filter>`` keys), for a JSON sidecar."""
        return {
            "seen": self.seen,
            **{f"dropped_{k}": v for k, v in self.dropped.items()},
            "kept": self.kept,
            "cut_off_chrom": self.off_chrom,
        }

    def summary(self) -> str:
        """Return the counts as one log line."""
        drops = ", ".join(f"{k} {v:,}" for k, v in self.dropped.items())
        return f"{self.seen:,} reads seen; dropped: {drops}; kept {self.kept:,}"


def read_filter(
    flag: np.ndarray, mapq: np.ndarray, min_mapq: int = MIN_MAPQ, keep_duplicates: bool = False
) -> tuple[np.ndarray, dict[str, int]]:
    """Which reads give cut sites, and how many each filter dropped.

    Parameters
    ----------
    flag, mapq : int[n_reads]
        SAM flags and mapping qualities.
    min_mapq : int
        Minimum mapping quality kept.
    keep_duplicates : bool
        Keep reads flagged as duplicates (0x400).

    Returns
    -------
    keep : bool[n_reads]
    dropped : dict
        Filter name (see ``FILTERS``) -> reads it dropped that no earlier filter had.
    """
    flag = np.asarray(flag)
    fails = {
        "unmapped": (flag & UNMAPPED) != 0,
        "secondary": (flag & SECONDARY) != 0,
        "supplementary": (flag & SUPPLEMENTARY) != 0,
        "qcfail": (flag & QCFAIL) != 0,
        "duplicate": ((flag & DUPLICATE) != 0) & (not keep_duplicates),
        "improper_pair": ((flag & PAIRED) != 0) & ((flag & PROPER_PAIR) == 0),
        "low_mapq": np.asarray(mapq) < min_mapq,
    }
    keep = np.ones(flag.shape, dtype=bool)
    dropped = {}
    for name in FILTERS:
        hit = keep & fails[name]
        dropped[name] = int(hit.sum())
        keep &= ~hit
    return keep, dropped


def read_cut_sites(
    start: np.ndarray,
    end: np.ndarray,
    reverse: np.ndarray,
    shift_plus: int = SHIFT_PLUS,
    shift_minus: int = SHIFT_MINUS,
) -> np.ndarray:
    """Cut site of each read (0-based).

    Parameters
    ----------
    start, end : int[n_reads]
        ``reference_start`` and (exclusive) ``reference_end`` of each read.
    reverse : bool[n_reads]
        True for ``-`` strand reads.

    Returns
    -------
    int64[n_reads]: ``start + shift_plus`` for ``+`` reads, ``end - 1 + shift_minus`` for ``-`` reads.
    """
    start = np.asarray(start, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    return np.where(np.asarray(reverse, dtype=bool), end - 1 + shift_minus, start + shift_plus)


def fragment_cut_sites(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Both cut sites of each fragment, ``start`` and ``end - 1`` (already shifted): int64[2 * n_fragments]."""
    return np.concatenate([np.asarray(start, dtype=np.int64), np.asarray(end, dtype=np.int64) - 1])


def on_chrom(pos: np.ndarray, length: int) -> np.ndarray:
    """Bool mask of positions inside ``[0, length)``."""
    return (pos >= 0) & (pos < length)


def cut_counts(pos: np.ndarray, length: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Cut sites per base: int32[length]. Positions must lie in ``[0, length)``."""
    counts = np.bincount(np.asarray(pos, dtype=np.int64), weights=weights, minlength=length)
    return counts.astype(np.int32, copy=False)


def smooth(counts: np.ndarray, smooth_bp: int = SMOOTH_BP) -> np.ndarray:
    """Widen every cut site to a box of ``smooth_bp + 1`` bases, by a cumulative sum.

    ``out[i]`` is the number of cut sites in ``[i - right, i + left]`` with
    ``left = smooth_bp // 2`` and ``right = smooth_bp - left`` (a cut at ``c``
    covers ``c - left .. c + right``; centred when ``smooth_bp`` is even), the
    window clipped at the chromosome ends (no wrap, no reflection).

    Parameters
    ----------
    counts : int32[n_bases]
        Cut sites per base.
    smooth_bp : int
        Box width minus one; 0 returns the counts unchanged.

    Returns
    -------
    int32[n_bases]
    """
    counts = np.asarray(counts)
    if smooth_bp < 0:
        raise ValueError(f"smooth_bp must be >= 0, got {smooth_bp}")
    n = counts.size
    left = smooth_bp // 2
    right = smooth_bp - left
    total = int(counts.sum(dtype=np.int64))
    dtype = np.int32 if total < 2**31 else np.int64
    # csp[j] = cumulative count of bases < clip(j - right, 0, n); then
    # out[i] = cum[min(i + left + 1, n)] - cum[max(i - right, 0)] = csp[i + smooth_bp + 1] - csp[i]
    csp = np.zeros(n + 1 + smooth_bp, dtype=dtype)
    np.cumsum(counts, dtype=dtype, out=csp[right + 1 : right + 1 + n])
    csp[right + 1 + n :] = total
    out = csp[smooth_bp + 1 : smooth_bp + 1 + n] - csp[:n]
    return out.astype(np.int32, copy=False)


def smoothed_windows(
    pos: np.ndarray, length: int, smooth_bp: int = SMOOTH_BP, window: int = WINDOW
) -> Iterator[tuple[int, np.ndarray]]:
    """``smooth(cut_counts(pos, length), smooth_bp)`` in consecutive windows, with memory bounded by ``window``.

    Each window ``[a, b)`` is computed from the cut sites in ``[a - right, b + left)``
    (every cut site whose box reaches the window), so the concatenated
    windows equal the whole-chromosome result exactly.

    Parameters
    ----------
    pos : int[n_cut_sites]
        Cut sites in ``[0, length)``, any order.
    length : int
        Chromosome length (bases).
    window : int
        Bases per yielded array.

    Yields
    ------
    start : int
        0-based start of the window.
    values : int32[min(window, length - start)]
    """
    pos = np.sort(np.asarray(pos, dtype=np.int64))
    left = smooth_bp // 2
    right = smooth_bp - left
    for a in range(0, length, window):
        b = min(a + window, length)
        lo, hi = max(a - right, 0), min(b + left, length)
        i, j = np.searchsorted(pos, [lo, hi])
        counts = cut_counts(pos[i:j] - lo, hi - lo)
        yield a, smooth(counts, smooth_bp)[a - lo : b - lo]


def cpm_factor(n_cut_sites: int) -> float:
    """Scale turning cut-site counts into counts per million cut sites."""
    return 1e6 / n_cut_sites if n_cut_sites else 0.0


def _bam_read_arrays(bam, chrom: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read flag (uint16), mapq (uint8), start and end (int64; end 0 when unmapped) of one chromosome's reads."""
    flags, mapqs, starts, ends = [], [], [], []
    it = bam.fetch(chrom, multiple_iterators=False)
    while True:
        flag, mapq, start, end = [], [], [], []
        for r in islice(it, BATCH):
            flag.append(r.flag)
            mapq.append(r.mapping_quality)
            start.append(r.reference_start)
            end.append(r.reference_end or 0)
        if not flag:
            break
        flags.append(np.array(flag, dtype=np.uint16))
        mapqs.append(np.array(mapq, dtype=np.uint8))
        starts.append(np.array(start, dtype=np.int64))
        ends.append(np.array(end, dtype=np.int64))
    if not flags:
        return np.zeros(0, np.uint16), np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(flags), np.concatenate(mapqs), np.concatenate(starts), np.concatenate(ends)


def bam_cut_sites(
    bam,
    chrom: str,
    length: int,
    min_mapq: int = MIN_MAPQ,
    keep_duplicates: bool = False,
    shift_plus: int = SHIFT_PLUS,
    shift_minus: int = SHIFT_MINUS,
    source: str | Path = "BAM",
) -> tuple[np.ndarray, FilterCounts]:
    """Cut sites of the reads of one chromosome of an indexed BAM that pass the filters.

    Both reads of a proper pair give a cut site each; single-end reads give
    one. Cut sites that fall off the chromosome (reads within a few bases of
    its ends) are dropped and counted in ``FilterCounts.off_chrom``.

    Parameters
    ----------
    bam : pysam.AlignmentFile
        Open, indexed BAM (``threads=`` on it speeds up decompression).
    chrom, length : str, int
        Chromosome and its length in bases.
    source : str or Path
        The BAM's path, for error messages.

    Returns
    -------
    pos : int64[n_cut_sites]
        Cut-site positions, sorted as the reads are (not strictly).
    counts : FilterCounts
    """
    flag, mapq, start, end = _bam_read_arrays(bam, chrom)
    stats = FilterCounts(seen=int(flag.size))
    if flag.size > 1:
        back = np.flatnonzero(np.diff(start) < 0)
        if back.size:
            i = int(back[0]) + 1
            raise InputError(
                f"{source}: not coordinate-sorted: on {chrom} a read at {start[i]:,} follows one at {start[i - 1]:,}; "
                "sort it (samtools sort -o sorted.bam in.bam, or pysam.sort) and index it again"
            )
    keep, dropped = read_filter(flag, mapq, min_mapq, keep_duplicates)
    stats.dropped = dropped
    pos = read_cut_sites(start[keep], end[keep], (flag[keep] & REVERSE) != 0, shift_plus, shift_minus)
    inside = on_chrom(pos, length)
    stats.off_chrom = int(pos.size - inside.sum())
    stats.kept = int(keep.sum())
    return pos[inside], stats
