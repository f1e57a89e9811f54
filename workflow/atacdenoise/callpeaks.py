"""Fast threshold peak calling on a per-base score track (what ``macs3 bdgpeakcall`` does, vectorised).

``macs3 bdgpeakcall -c C -l L -g G`` (MACS3 3.0.4, ``bedGraphTrackI.call_peaks``)
reads a bedGraph into float32 values and then, per chromosome:

1. keeps the bases whose value is ``>= C`` (the cutoff is inclusive; both
   sides are compared as float32);
2. merges runs of kept bases when the gap between them, ``next_start -
   previous_end``, is ``<= G`` (a gap of exactly G bases is merged; adjacent
   runs with different values always merge);
3. drops merged peaks shorter than L: a peak is kept when ``end - start >= L``.
   The length test comes *after* merging, so short runs joined by small gaps
   can form a kept peak.

:func:`call_peaks` reproduces these intervals exactly from a per-base array
(``tests/test_callpeaks.py`` compares it with the real ``macs3 bdgpeakcall``),
without writing or parsing a bedGraph. :func:`peak_table` turns the intervals
into narrowPeak rows. Inference uses both, chromosome by chromosome.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .intervals import NARROWPEAK_COLUMNS


def call_peaks(
    score: np.ndarray, cutoff: float, min_length: int = 200, max_gap: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of one chromosome: the intervals ``macs3 bdgpeakcall -c cutoff -l min_length -g max_gap`` reports.

    Parameters
    ----------
    score : float[n_bases]
        Per-base score (peak probability, -log10 p, coverage ...) of one whole
        chromosome, base 0 first. Compared as float32, as MACS3 stores values.
    cutoff : float
        Bases with ``score >= cutoff`` are peak bases (inclusive, as MACS3).
    min_length : int
        Merged peaks with ``end - start < min_length`` are dropped (bp).
    max_gap : int
        Runs of peak bases separated by ``<= max_gap`` bases are merged (bp).

    Returns
    -------
    starts, ends : int64[n_peaks]
        Half-open 0-based peak intervals, sorted and non-overlapping.
    """
    score = np.asarray(score)
    if score.ndim != 1:
        raise ValueError(f"score must be 1-D (one chromosome), found shape {score.shape}")
    empty = np.zeros(0, dtype=np.int64)
    if score.size == 0:
        return empty, empty.copy()
    above = score.astype(np.float32, copy=False) >= np.float32(cutoff)
    # boundaries of runs of equal `above`; runs alternate, the first has value above[0]
    change = np.flatnonzero(above[1:] != above[:-1]) + 1
    bounds = np.concatenate(([0], change, [score.size])).astype(np.int64)
    first = 0 if above[0] else 1
    starts, ends = bounds[first:-1:2], bounds[first + 1 :: 2]
    if starts.size == 0:
        return empty, empty.copy()
    # a new peak begins where the gap to the previous run is too wide to merge
    opens = np.concatenate(([True], starts[1:] - ends[:-1] > max_gap))
    closes = np.concatenate((opens[1:], [True]))
    starts, ends = starts[opens], ends[closes]
    keep = ends - starts >= min_length
    return starts[keep], ends[keep]


def peak_summits(starts: np.ndarray, ends: np.ndarray, track: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Summit position and maximum of ``track`` within each peak.

    Parameters
    ----------
    starts, ends : int[n_peaks]
        Sorted, non-overlapping, non-empty half-open intervals.
    track : float[n_bases]
        The signal whose maximum marks the summit (e.g. the denoised track).

    Returns
    -------
    summits : int64[n_peaks]
        Absolute position of the summit. When several bases tie for the
        maximum, the middle one of them (index ``count // 2``), which for one
        plateau is MACS3's ``(start + end) // 2`` of that plateau.
    maxima : float[n_peaks]
        The maximum of ``track`` in each peak.
    """
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    if starts.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.asarray(track).dtype)
    maxima = segment_max(track, starts, ends)
    lengths = ends - starts
    # every base of every peak (peaks cover a small part of a chromosome)
    offsets = np.cumsum(lengths) - lengths
    pos = np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))
    peak_id = np.repeat(np.arange(starts.size), lengths)
    tied = np.flatnonzero(track[pos] == maxima[peak_id])
    counts = np.bincount(peak_id[tied], minlength=starts.size)
    first = np.cumsum(counts) - counts
    return pos[tied[first + counts // 2]], maxima


def segment_max(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Maximum of ``values[start:end]`` for each sorted, non-overlapping, non-empty interval."""
    idx = np.empty(2 * starts.size, dtype=np.int64)
    idx[0::2], idx[1::2] = starts, ends
    if idx[-1] >= values.size:  # reduceat indices must be valid positions; the last segment runs to the end
        idx = idx[:-1]
    return np.maximum.reduceat(values, idx)[0::2]


def peak_table(
    chrom: str,
    starts: np.ndarray,
    ends: np.ndarray,
    score: np.ndarray,
    track: np.ndarray | None = None,
    name_prefix: str = "peak",
    first_number: int = 1,
    score_scale: float = 1000.0,
) -> pd.DataFrame:
    """narrowPeak rows for the peaks of one chromosome.

    Parameters
    ----------
    chrom : str
        Chromosome name written in the first column.
    starts, ends : int[n_peaks]
        Peaks from :func:`call_peaks`.
    score : float[n_bases]
        The thresholded score (the peak probability at inference).
    track : float[n_bases], optional
        Signal that places the summit (the denoised track); ``score`` if None.
    name_prefix, first_number : str, int
        Peaks are named ``{name_prefix}_{n}`` counting from ``first_number``
        (pass the running total when streaming chromosome by chromosome).
    score_scale : float
        The integer ``score`` column is ``min(1000, round(score_scale * max score
        in the peak))``: 0-1000 for a probability, as browsers shade it.

    Returns
    -------
    DataFrame
        The 10 narrowPeak columns. ``signal`` is the maximum of ``score`` in
        the peak (the peak probability at inference); ``pval`` is
        ``-log10(1 - that maximum)`` capped at 10 when ``score`` lies in
        [0, 1] (a posterior error, so tools that rank by the p-value column,
        e.g. IDR, rank as by probability), else -1; ``qval`` is -1 (not
        computed); ``summit`` is the offset from ``start`` of the maximum of
        ``track`` (middle of ties).
    """
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    score = np.asarray(score)
    track = score if track is None else np.asarray(track)
    if track.shape != score.shape:
        raise ValueError(f"track and score differ in length: {track.shape} vs {score.shape}")
    summits, _ = peak_summits(starts, ends, track)
    best = segment_max(score, starts, ends).astype(np.float64) if starts.size else np.zeros(0)
    best = np.nan_to_num(best)
    if best.size and (best.min() < 0 or best.max() > 1):
        pval = np.full(best.size, -1.0)
    else:
        pval = np.minimum(10.0, -np.log10(np.maximum(1.0 - best, 1e-10)))
    return pd.DataFrame(
        {
            "chrom": chrom,
            "start": starts,
            "end": ends,
            "name": [f"{name_prefix}_{i}" for i in range(first_number, first_number + starts.size)],
            "score": np.clip(np.round(score_scale * best), 0, 1000).astype(np.int64),
            "strand": ".",
            "signal": best,
            "pval": pval + 0.0,
            "qval": -1.0,
            "summit": summits - starts,
        },
        columns=NARROWPEAK_COLUMNS,
    )
