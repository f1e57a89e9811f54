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

from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import open_bigwig
from atacdenoise.io.intervals import NARROWPEAK_COLUMNS
from atacdenoise.log import progress

#: inference's peak rules (as ``macs3 bdgpeakcall -l 200 -g 30``): minimum length and largest merged gap, bp
MIN_LENGTH = 200
MAX_GAP = 30


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
    spread: np.ndarray | None = None,
) -> pd.DataFrame:
    """NarrowPeak rows for the peaks of one chromosome.

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
    spread : float[n_bases], optional
        An ensemble's per-base spread (sd of its members' probabilities, in [0, 0.5]). When given, the
        ``score`` column is the peak's confidence instead, :func:`peak_confidence`:
        ``round(1000 · (1 - 2 · mean spread over the peak))``, 1000 when the members agree everywhere.

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
    table = narrowpeak_frame(chrom, starts, ends, best, summits, name_prefix, first_number, score_scale)
    if spread is not None:
        spread = np.asarray(spread)
        if spread.shape != score.shape:
            raise ValueError(f"spread and score differ in length: {spread.shape} vs {score.shape}")
        table["score"] = peak_confidence(starts, ends, spread)
    return table


def segment_mean(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Mean of ``values[start:end]`` for each sorted, non-overlapping, non-empty interval (float64)."""
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    if starts.size == 0:
        return np.zeros(0)
    c = np.concatenate(([0.0], np.cumsum(np.asarray(values, dtype=np.float64))))
    return (c[ends] - c[starts]) / (ends - starts)


def peak_confidence(starts: np.ndarray, ends: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Per-peak confidence of an ensemble, as the narrowPeak ``score`` (int64, 0-1000).

    ``round(1000 · (1 - 2 · m))`` with ``m`` the mean spread (sd of the members' probabilities, at most 0.5)
    over the peak's bases: 1000 when every member gives every base the same probability, 0 when they
    disagree as much as probabilities can (half the members at 0, half at 1).
    """
    m = np.nan_to_num(segment_mean(spread, starts, ends))
    return np.clip(np.round(1000.0 * (1.0 - 2.0 * m)), 0, 1000).astype(np.int64)


def narrowpeak_frame(
    chrom: str,
    starts: np.ndarray,
    ends: np.ndarray,
    best: np.ndarray,
    summits: np.ndarray,
    name_prefix: str = "peak",
    first_number: int = 1,
    score_scale: float = 1000.0,
) -> pd.DataFrame:
    """Build the narrowPeak rows of :func:`peak_table` from each peak's maximum score and absolute summit."""
    best = np.nan_to_num(np.asarray(best, dtype=np.float64))
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
            "summit": np.asarray(summits, dtype=np.int64) - starts,
        },
        columns=NARROWPEAK_COLUMNS,
    )


# --- the same on a run-length track (a bigWig's bedGraph items), without painting it base by base ----------------


def fill_gaps(starts: np.ndarray, ends: np.ndarray, values: np.ndarray, length: int, fill: float = 0.0):
    """Return runs covering ``[0, length)``: the given sorted, non-overlapping runs plus ``fill`` runs between them."""
    bounds_lo = np.concatenate(([0], ends))
    bounds_hi = np.concatenate((starts, [length]))
    n = starts.size
    s = np.empty(2 * n + 1, dtype=np.int64)
    e = np.empty(2 * n + 1, dtype=np.int64)
    v = np.empty(2 * n + 1, dtype=np.float32)
    s[0::2], e[0::2], v[0::2] = bounds_lo, bounds_hi, fill
    s[1::2], e[1::2], v[1::2] = starts, ends, values
    keep = e > s
    return s[keep], e[keep], v[keep]


def call_peaks_runs(
    starts: np.ndarray,
    ends: np.ndarray,
    values: np.ndarray,
    length: int,
    cutoff: float,
    min_length: int = 200,
    max_gap: int = 30,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`call_peaks` on a track given as runs (bases outside every run read as 0; NaN as 0).

    Returns the intervals ``call_peaks`` returns on the painted per-base track,
    in time proportional to the number of runs, not of bases.
    """
    values = np.asarray(values, dtype=np.float32)
    cut = np.float32(cutoff)
    if np.float32(0) >= cut:  # missing bases and NaN (0) pass the cutoff too
        starts, ends, values = fill_gaps(
            np.asarray(starts, np.int64), np.asarray(ends, np.int64), np.nan_to_num(values), length, 0.0
        )
    above = values >= cut  # NaN is not
    if above.all():  # e.g. runs already selected at this cutoff (BigWigFileReader.runs_at_least): no copies
        s, e = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    else:  # positions may come as stored (uint32): select first, then widen only the selected runs
        s, e = np.asarray(starts)[above].astype(np.int64), np.asarray(ends)[above].astype(np.int64)
    empty = np.zeros(0, dtype=np.int64)
    if not s.size:
        return empty, empty.copy()
    opens = np.concatenate(([True], s[1:] - e[:-1] > max_gap))
    closes = np.concatenate((opens[1:], [True]))
    s, e = s[opens], e[closes]
    keep = e - s >= min_length
    return s[keep], e[keep]


def peak_table_runs(
    chrom: str,
    peak_starts: np.ndarray,
    peak_ends: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    values: np.ndarray,
    name_prefix: str = "peak",
    first_number: int = 1,
    score_scale: float = 1000.0,
    cutoff: float | None = None,
) -> pd.DataFrame:
    """:func:`peak_table` (summit on the score itself) for peaks of :func:`call_peaks_runs` on the same runs.

    Peaks begin and end at run boundaries, so every run lies wholly inside a
    peak or outside all; the summit is the middle base of the tied maxima, as
    :func:`peak_summits`. ``cutoff`` (the one the peaks were called with)
    lets only the runs that pass it be looked at: a peak's maximum always does.
    """
    ps = np.asarray(peak_starts, dtype=np.int64)
    pe = np.asarray(peak_ends, dtype=np.int64)
    if not ps.size:
        return narrowpeak_frame(chrom, ps, pe, np.zeros(0), ps, name_prefix, first_number, score_scale)
    values = np.asarray(values, dtype=np.float32)
    if cutoff is not None and np.float32(cutoff) > 0:
        above = values >= np.float32(cutoff)
        if above.all():  # already selected at this cutoff: no copies
            starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
        else:
            starts, ends, values = (
                np.asarray(starts)[above].astype(np.int64),
                np.asarray(ends)[above].astype(np.int64),
                values[above],
            )
    else:
        starts = np.asarray(starts, dtype=np.int64)
        ends = np.asarray(ends, dtype=np.int64)
        values = np.nan_to_num(values)
        if values.size and values.min() <= 0:  # missing bases (0) could then be, or tie with, a peak's maximum
            starts, ends, values = fill_gaps(starts, ends, values, int(pe[-1]), 0.0)
    idx = np.searchsorted(pe, starts, side="right")
    inside = idx < ps.size
    inside[inside] &= starts[inside] >= ps[idx[inside]]
    pid, s, e, v = idx[inside], starts[inside], ends[inside], values[inside]
    best = np.maximum.reduceat(v, np.searchsorted(pid, np.arange(ps.size)))
    tied = v == best[pid]
    tp, ts, tl = pid[tied], s[tied], (e - s)[tied]
    cum = np.cumsum(tl)
    before = (cum - tl)[np.searchsorted(tp, np.arange(ps.size))]
    count = np.bincount(tp, weights=tl, minlength=ps.size).astype(np.int64)
    target = before + count // 2
    j = np.searchsorted(cum, target, side="right")
    summits = ts[j] + (target - (cum[j] - tl[j]))
    return narrowpeak_frame(chrom, ps, pe, best.astype(np.float64), summits, name_prefix, first_number, score_scale)


def peaks_of_runs(
    chrom: str,
    runs: tuple[np.ndarray, np.ndarray, np.ndarray],
    length: int,
    cutoff: float,
    min_length: int = 200,
    max_gap: int = 30,
    name_prefix: str = "peak",
    first_number: int = 1,
) -> pd.DataFrame:
    """Call the narrowPeak rows of one chromosome's score given as runs.

    The runs are ``starts, ends, values``, e.g. a smooth bigWig's items:
    :func:`call_peaks_runs` + :func:`peak_table_runs`, never painting the runs base by base.
    """
    starts, ends, values = runs
    ps, pe = call_peaks_runs(starts, ends, values, length, cutoff, min_length, max_gap)
    return peak_table_runs(chrom, ps, pe, starts, ends, values, name_prefix, first_number, cutoff=cutoff)


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """One array of the buffered pieces (no copy when there is one)."""
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


class PeakStream:
    """Call peaks on one chromosome from chunks that arrive in order, holding few bases.

    Peaks are called by :func:`atacdenoise.peaks.threshold.call_peaks` on the peak
    probability (``>= threshold`` regions, gaps of at most ``max_gap`` bases merged,
    shorter than ``min_length`` dropped) and described by
    :func:`atacdenoise.peaks.threshold.peak_table` (summit at the denoised track's
    maximum, score from the probability). The buffer is cut after every run of
    ``max_gap + 2`` bases below the threshold: no peak, merged or not, can
    straddle such a run, so calling the pieces separately gives exactly the peaks
    of the whole chromosome. Memory: the bases since the last cut, i.e. at most
    one chunk plus the longest stretch without such a run (8 bytes per base; 12 with
    an ensemble's spread, which makes the score column each peak's confidence:
    :func:`peak_confidence`). Either every chunk comes with a spread or none does.
    """

    def __init__(self, chrom: str, threshold: float, min_length: int = 200, max_gap: int = 30):
        self.chrom = chrom
        self.threshold = float(threshold)
        self.min_length = int(min_length)
        self.max_gap = int(max_gap)
        self.quiet = self.max_gap + 2
        self._start = 0
        self._prob: list[np.ndarray] = []
        self._track: list[np.ndarray] = []
        self._spread: list[np.ndarray] | None = None  # a list once the first chunk brings a spread
        self._tables: list[pd.DataFrame] = []
        self.max_buffered = 0

    def add(self, start: int, prob: np.ndarray, track: np.ndarray, spread: np.ndarray | None = None) -> None:
        """Append the next chunk (``start`` must follow the previous chunk) and call the peaks that are final."""
        buffered = sum(p.size for p in self._prob)
        if start != self._start + buffered:
            raise ValueError(
                f"{self.chrom}: chunk at {start} does not follow the previous one (expected {self._start + buffered})"
            )
        if (spread is None) != (self._spread is None) and (self._prob or self._tables):
            raise ValueError(f"{self.chrom}: every chunk needs a spread, or none")
        self._prob.append(np.asarray(prob, dtype=np.float32))
        self._track.append(np.asarray(track, dtype=np.float32))
        if spread is not None:
            self._spread = [*(self._spread or []), np.asarray(spread, dtype=np.float32)]
        prob_all = _joined(self._prob)
        self.max_buffered = max(self.max_buffered, prob_all.size)
        cut = self._last_cut(prob_all)
        track_all = _joined(self._track)
        spread_all = None if self._spread is None else _joined(self._spread)
        if cut > 0:
            self._call(prob_all[:cut], track_all[:cut], None if spread_all is None else spread_all[:cut])
            self._prob, self._track = [prob_all[cut:].copy()], [track_all[cut:].copy()]
            if spread_all is not None:
                self._spread = [spread_all[cut:].copy()]
            self._start += cut
        else:
            self._prob, self._track = [prob_all], [track_all]
            if spread_all is not None:
                self._spread = [spread_all]

    def _last_cut(self, prob: np.ndarray) -> int:
        """End of the last run of at least ``quiet`` bases below the threshold, 0 when there is none."""
        if prob.size < self.quiet:
            return 0
        # the runs below lie between the bases that are not (NaN is neither below nor above): from the
        # positions of those few bases, not a cumulative sum over every base (5x less time per chunk)
        edges = np.flatnonzero(~(prob < self.threshold))
        bounds = np.concatenate(([-1], edges, [prob.size]))
        long_runs = np.flatnonzero(np.diff(bounds) > self.quiet)  # the run before bounds[i + 1] has >= quiet bases
        return int(bounds[long_runs[-1] + 1]) if long_runs.size else 0

    def _call(self, prob: np.ndarray, track: np.ndarray, spread: np.ndarray | None = None) -> None:
        starts, ends = call_peaks(prob, self.threshold, min_length=self.min_length, max_gap=self.max_gap)
        if len(starts):
            # positions are relative to the buffer; names count on from the pieces already called
            first = 1 + sum(len(t) for t in self._tables)
            table = peak_table(
                self.chrom,
                starts,
                ends,
                prob,
                track=track,
                name_prefix=f"{self.chrom}_peak",
                first_number=first,
                spread=spread,
            )
            table["start"] += self._start
            table["end"] += self._start
            self._tables.append(table)

    def finish(self) -> pd.DataFrame:
        """Call the peaks left in the buffer; returns all peaks of the chromosome in narrowPeak columns."""
        if self._prob and self._prob[0].size:
            self._call(self._prob[0], self._track[0], None if self._spread is None else self._spread[0])
        self._prob, self._track = [], []
        self._spread = None if self._spread is None else []
        if not self._tables:
            empty = np.zeros(0, dtype=np.int64)
            return peak_table(self.chrom, empty, empty, np.zeros(0, dtype=np.float32))
        return pd.concat(self._tables, ignore_index=True)


# --------------------------------------------------------------------------- from bigWig files

#: bases read at a time when a chromosome is called per base (two float32 tracks of this many bases in memory)
WINDOW = 8_000_000
#: runs (or bases) at or above the threshold held at most (~20 bytes each) before a chromosome is called per base
MAX_RUNS = 5_000_000


def call_bigwig_chrom(
    prob,
    track,
    chrom: str,
    length: int,
    threshold: float,
    min_length: int = MIN_LENGTH,
    max_gap: int = MAX_GAP,
    spread=None,
) -> pd.DataFrame:
    """Peaks of one chromosome of an open probability bigWig (``track``: an open summit bigWig, or None).

    Without a summit track or a spread (an open ensemble spread bigWig: scores are confidences), and unless
    there are more than :data:`MAX_RUNS`, the peaks come from the runs at or above the threshold alone,
    selected as the blocks are decoded; otherwise window by window through
    :class:`PeakStream` (bounded memory). The rows are the same either way.
    """
    if track is None and spread is None:
        # only the runs (or bases) at or above the threshold matter (it is > 0), selected as the blocks are decoded
        data = prob.runs_at_least(chrom, threshold, max_runs=MAX_RUNS)
        if data is not None:
            return peaks_of_runs(chrom, data, length, threshold, min_length, max_gap, name_prefix=f"{chrom}_peak")
    stream = PeakStream(chrom, threshold, min_length=min_length, max_gap=max_gap)
    for lo in range(0, length, WINDOW):
        hi = min(length, lo + WINDOW)
        p = np.nan_to_num(prob.values(chrom, lo, hi, fill=0.0), copy=False)
        t = p if track is None else np.nan_to_num(track.values(chrom, lo, hi, fill=0.0), copy=False)
        s = None if spread is None else np.nan_to_num(spread.values(chrom, lo, hi, fill=0.0), copy=False)
        stream.add(lo, p, t, s)
    return stream.finish()


def threshold_bigwig(
    prob_path: str | Path,
    threshold: float,
    track_path: str | Path | None = None,
    chroms: list[str] | None = None,
    min_length: int = MIN_LENGTH,
    max_gap: int = MAX_GAP,
    threads: int = 1,
    spread_path: str | Path | None = None,
) -> pd.DataFrame:
    """Peaks of a peak-probability bigWig at ``threshold``, summits at ``track_path``'s maximum when given.

    ``chroms`` (default: all of the bigWig) must be in the bigWig; the summit
    track (and an ensemble's ``spread_path``, which makes the score column each peak's confidence)
    must hold the same chromosomes with the same lengths (the files of the same ``infer`` run).
    Returns narrowPeak rows.
    """
    prob = open_bigwig(prob_path, threads=threads)
    track = open_bigwig(track_path, threads=threads) if track_path is not None else None
    spread = open_bigwig(spread_path, threads=threads) if spread_path is not None else None
    try:
        sizes = prob.chroms()
        if chroms is not None:
            missing = [c for c in chroms if c not in sizes]
            if missing:
                raise InputError(
                    f"{prob_path}: chromosomes {missing[:5]} are not in this bigWig "
                    f"(it has {', '.join(list(sizes)[:5])} ...)"
                )
            sizes = {c: sizes[c] for c in chroms}
        for other_bw, other_path in ((track, track_path), (spread, spread_path)):
            if other_bw is None:
                continue
            other = other_bw.chroms()
            wrong = [c for c in sizes if other.get(c) != sizes[c]]
            if wrong:
                raise InputError(
                    f"{other_path}: {wrong[0]} is missing or has another length than in {prob_path}; "
                    "give the file written by the same infer run"
                )
        tables = [
            call_bigwig_chrom(prob, track, chrom, length, threshold, min_length, max_gap, spread=spread)
            for chrom, length in progress(sizes.items(), total=len(sizes), desc="peaks", unit="chrom")
        ]
    finally:
        prob.close()
        for other_bw in (track, spread):
            if other_bw is not None:
                other_bw.close()
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=NARROWPEAK_COLUMNS)
