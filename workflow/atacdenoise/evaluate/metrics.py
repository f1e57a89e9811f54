"""Benchmark metrics: exact, streamable per-base and peak-level scores against the clean data.

Every per-base metric is kept as an accumulator that takes one window of a
chromosome at a time and merges windows exactly, so a whole holdout genome is
scored in bounded memory and gives the same numbers as scikit-learn / SciPy on
the concatenated arrays:

- :class:`Moments` — Pearson r and MSE (Chan et al.'s pairwise merge of means,
  variances and co-moment; the MSE of a rescaled track ``s * x`` comes from the
  same moments, so the depth scale can be chosen after the pass).
- :class:`CountTable` — the exact multiset of values (distinct values with
  counts, and positive-label counts). From it come AUROC (trapezoids over tied
  thresholds, as ``sklearn.metrics.roc_auc_score``), AUPRC (step-wise average
  precision, as ``sklearn.metrics.average_precision_score``), the PR curve, and
  the average ranks behind Spearman's rho (ties averaged, as
  ``scipy.stats.spearmanr``).
- :class:`Confusion` — precision, recall, F1, specificity and Jaccard of binary
  calls.
- :class:`Reliability` — the calibration of a per-base probability: counts, summed
  probabilities and positive labels in :data:`CALIBRATION_BINS` equal-width bins over
  [0, 1]; from them the expected calibration error (ECE) and the reliability diagram.
- :class:`TrackComparison` — Pearson, Spearman and MSE over all / in-peak /
  out-of-peak bases; Spearman needs global ranks, hence a second pass
  (:meth:`TrackComparison.add_ranks`) over the same windows.

Memory bound: the windows (a few arrays of ``window_bp`` bases) plus the count
tables, which hold one entry per *distinct* value: a few kB for integer
coverage, but up to one entry (12-20 bytes) per evaluated base for a continuous
score such as a model's float32 output. Measured on 20 Mb of continuous model
track and probability (plus noisy, clean, one MACS3 baseline): 1.3 GB peak
resident memory, 45 s CPU; so about 65 bytes per evaluated base at worst
(9 GB for a 135-Mb holdout chromosome), a few hundred MB when every track is
integer-valued.

Undefined metrics (no positive or no negative base, a constant track, no calls)
are NaN with a logged warning, never an exception.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from atacdenoise.io.genome import Region
from atacdenoise.io.intervals import merge_intervals

log = logging.getLogger(__name__)

#: the ``region`` column of metrics.tsv: all evaluated bases, clean-peak bases, the rest
REGIONS = ("all", "peaks", "nonpeaks")

#: a pending count table is merged into the running one once it holds this many more entries
_COMPACT_MIN = 1 << 22


def _undefined(what: str, why: str) -> float:
    log.warning("%s is undefined (%s); reported as NaN", what, why)
    return float("nan")


# --------------------------------------------------------------------------- Pearson, MSE


@dataclass
class Moments:
    """Running count, means, centred second moments and co-moment of paired values.

    ``m2x = sum((x - mean_x)**2)``, ``m2y`` likewise, ``cxy = sum((x - mean_x) * (y - mean_y))``;
    chunks are merged with Chan et al.'s pairwise update, which stays accurate over
    10^8 bases where raw sums of squares would cancel.
    """

    n: int = 0
    mean_x: float = 0.0
    mean_y: float = 0.0
    m2x: float = 0.0
    m2y: float = 0.0
    cxy: float = 0.0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        """Add paired values ``x, y: float[n]``."""
        x = np.asarray(x, dtype=np.float64).ravel()
        y = np.asarray(y, dtype=np.float64).ravel()
        if x.size == 0:
            return
        mx, my = float(x.mean()), float(y.mean())
        dx, dy = x - mx, y - my
        self.merge(Moments(x.size, mx, my, float(dx @ dx), float(dy @ dy), float(dx @ dy)))

    def merge(self, other: Moments) -> None:
        """Fold ``other`` (moments of disjoint bases) into this one."""
        if other.n == 0:
            return
        n = self.n + other.n
        dmx, dmy = other.mean_x - self.mean_x, other.mean_y - self.mean_y
        f = self.n * other.n / n
        self.m2x += other.m2x + dmx * dmx * f
        self.m2y += other.m2y + dmy * dmy * f
        self.cxy += other.cxy + dmx * dmy * f
        self.mean_x += dmx * other.n / n
        self.mean_y += dmy * other.n / n
        self.n = n

    def pearson(self, what: str = "Pearson r") -> float:
        """Pearson correlation of x and y; NaN (warned) with < 2 bases or a constant side."""
        if self.n < 2:
            return _undefined(what, f"{self.n} base(s)")
        if self.m2x <= 0 or self.m2y <= 0:
            return _undefined(what, "one of the tracks is constant over these bases")
        return float(np.clip(self.cxy / math.sqrt(self.m2x * self.m2y), -1.0, 1.0))

    def mse(self, scale: float = 1.0, what: str = "MSE") -> float:
        """Mean of ``(scale * x - y)**2``; NaN (warned) with no bases."""
        if self.n == 0:
            return _undefined(what, "no bases")
        d = scale * self.mean_x - self.mean_y
        sse = self.n * d * d + scale * scale * self.m2x - 2.0 * scale * self.cxy + self.m2y
        return max(0.0, sse) / self.n


# --------------------------------------------------------------------------- count tables


class CountTable:
    """Exact multiset of values: distinct values (ascending), total and positive counts.

    Values are kept in their own dtype (float32 tracks stay float32), so ties are
    exactly those of the input. Per-chunk tables are merged lazily (when the
    pending ones outgrow the merged one), which keeps the total sorting work
    O(n log n).
    """

    def __init__(self, with_positives: bool = True) -> None:
        self.with_positives = with_positives
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending = 0
        self._merged = 0

    def add(self, values: np.ndarray, positives: np.ndarray | None = None) -> None:
        """Add ``values: float[n]`` (finite) with labels ``positives: bool[n]`` (all False when None).

        A table made with ``with_positives=False`` (ranks only) ignores labels and
        stores no positive counts, saving memory.
        """
        values = np.asarray(values).ravel()
        if values.size == 0:
            return
        uniq, inv = np.unique(values, return_inverse=True)
        total = np.bincount(inv, minlength=uniq.size).astype(np.int64)
        if not self.with_positives:
            pos = np.zeros(0, dtype=np.int64)
        elif positives is None:
            pos = np.zeros(uniq.size, dtype=np.int64)
        else:
            pos = np.bincount(inv[np.asarray(positives, dtype=bool).ravel()], minlength=uniq.size).astype(np.int64)
        self._parts.append((uniq, total, pos))
        self._pending += uniq.size
        if self._pending > max(self._merged, _COMPACT_MIN):
            self._compact()

    def _compact(self) -> None:
        if len(self._parts) > 1:
            self._parts = [_merge_tables(self._parts)]
        self._merged = self._parts[0][0].size if self._parts else 0
        self._pending = 0

    def table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(values, total, positives)``: distinct values ascending and their int64 counts."""
        self._compact()
        if not self._parts:
            return np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return self._parts[0]

    @classmethod
    def union(cls, *tables: CountTable) -> CountTable:
        """Merge ``tables`` (counts of disjoint sets of bases) into one table of all their values."""
        out = cls(with_positives=all(t.with_positives for t in tables))
        out._parts = [t.table() for t in tables if t.table()[0].size]
        out._compact()
        return out


def _sum_by(inv: np.ndarray, counts: list[np.ndarray], size: int) -> np.ndarray:
    # float64 weights are exact for counts below 2**53
    return np.rint(np.bincount(inv, weights=np.concatenate(counts), minlength=size)).astype(np.int64)


def _merge_tables(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    uniq, inv = np.unique(np.concatenate([p[0] for p in parts]), return_inverse=True)
    total = _sum_by(inv, [p[1] for p in parts], uniq.size)
    with_pos = all(p[2].size == p[0].size for p in parts)
    pos = _sum_by(inv, [p[2] for p in parts], uniq.size) if with_pos else np.zeros(0, dtype=np.int64)
    return uniq, total, pos


def curve_counts(table: CountTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true / false positives at every distinct threshold, highest first.

    Returns ``(thresholds, tps, fps)``: calling every base with score >= thresholds[k]
    positive gives tps[k] true and fps[k] false positives (sklearn's ``_binary_clf_curve``).
    """
    values, total, pos = table.table()
    tps = np.cumsum(pos[::-1])
    fps = np.cumsum((total - pos)[::-1])
    return values[::-1], tps, fps


def auroc_from_counts(tps: np.ndarray, fps: np.ndarray, what: str = "AUROC") -> float:
    """Area under the ROC curve, trapezoids between distinct thresholds (ties score 1/2)."""
    if tps.size == 0:
        return _undefined(what, "no bases")
    n_pos, n_neg = float(tps[-1]), float(fps[-1])
    if n_pos == 0 or n_neg == 0:
        return _undefined(what, "no positive bases" if n_pos == 0 else "no negative bases")
    tp = np.concatenate(([0.0], tps.astype(np.float64)))
    fp = np.concatenate(([0.0], fps.astype(np.float64)))
    return float(np.sum(np.diff(fp) * (tp[1:] + tp[:-1])) / (2.0 * n_pos * n_neg))


def auprc_from_counts(tps: np.ndarray, fps: np.ndarray, what: str = "AUPRC") -> float:
    """Average precision: sum over distinct thresholds of (recall step) x precision, no interpolation."""
    if tps.size == 0 or tps[-1] == 0:
        return _undefined(what, "no positive bases")
    tp = tps.astype(np.float64)
    precision = tp / (tp + fps)
    recall_step = np.diff(np.concatenate(([0.0], tp))) / tp[-1]
    return float(np.sum(recall_step * precision))


def pr_curve_points(tps: np.ndarray, fps: np.ndarray, max_points: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision (increasing recall, starting at recall 0, precision 1), thinned for plotting.

    Thinning keeps the first threshold reaching each of ``max_points`` evenly
    spaced recall levels and the last point; draw with ``drawstyle="steps-pre"``.
    """
    if tps.size == 0 or tps[-1] == 0:
        return np.zeros(0), np.zeros(0)
    tp = tps.astype(np.float64)
    recall = tp / tp[-1]
    precision = tp / (tp + fps)
    if recall.size > max_points:
        keep = np.unique(np.concatenate((np.searchsorted(recall, np.linspace(0, 1, max_points)), [recall.size - 1])))
        keep = keep[keep < recall.size]
        recall, precision = recall[keep], precision[keep]
    return np.concatenate(([0.0], recall)), np.concatenate(([1.0], precision))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of ``scores: float[n]`` against ``labels: bool[n]`` (equals sklearn's roc_auc_score)."""
    t = CountTable()
    t.add(scores, labels)
    return auroc_from_counts(*curve_counts(t)[1:])


def auprc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision (equals sklearn's average_precision_score; NaN when no positives)."""
    t = CountTable()
    t.add(scores, labels)
    return auprc_from_counts(*curve_counts(t)[1:])


# --------------------------------------------------------------------------- ranks, Spearman


class Ranker:
    """Average 1-based ranks (ties share the mean rank) within the union of complete :class:`CountTable` s.

    The tables hold disjoint sets of bases (e.g. in-peak and out-of-peak), so the
    rank of ``v`` over their union is the number of values below ``v`` in every
    table plus the mean position among the values equal to ``v``; no merged
    table is built. Memory: 12 bytes per distinct value per table.
    """

    def __init__(self, *tables: CountTable):
        self.tables: list[tuple[np.ndarray, np.ndarray]] = []
        for t in tables:
            values, total, _ = t.table()
            cum = np.zeros(values.size + 1, dtype=np.float64)  # exact below 2**53 bases
            np.cumsum(total, out=cum[1:])
            self.tables.append((values, cum))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """float64 ranks of ``values`` (each must be in one of the tables)."""
        values = np.asarray(values).ravel()
        below = np.zeros(values.size, dtype=np.float64)
        equal = np.zeros(values.size, dtype=np.float64)
        for table_values, cum in self.tables:
            idx = np.searchsorted(table_values, values, side="left")
            below += cum[idx]
            hit = idx < table_values.size
            hit[hit] = table_values[idx[hit]] == values[hit]
            equal[hit] += cum[idx[hit] + 1] - cum[idx[hit]]
        return below + (equal + 1.0) / 2.0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r of two float arrays (equals scipy.stats.pearsonr; NaN when one is constant)."""
    m = Moments()
    m.add(x, y)
    return m.pearson()


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rho (ties averaged; equals scipy.stats.spearmanr; NaN when one is constant)."""
    tx, ty = CountTable(), CountTable()
    tx.add(x)
    ty.add(y)
    m = Moments()
    m.add(Ranker(tx)(x), Ranker(ty)(y))
    return m.pearson("Spearman rho")


def mse(x: np.ndarray, y: np.ndarray, scale: float = 1.0) -> float:
    """Mean squared error of ``scale * x`` against ``y``."""
    m = Moments()
    m.add(x, y)
    return m.mse(scale)


class TrackComparison:
    """Pearson, Spearman and MSE of a method's track ``x`` against the clean track ``y``.

    Over all evaluated bases, the clean-peak bases (``peaks``) and the rest
    (``nonpeaks``). Pass 1: :meth:`add` every window. Pass 2 (Spearman, which
    needs the ranks over the whole holdout): :meth:`add_ranks` the same windows.
    """

    def __init__(self, name: str = "track"):
        self.name = name
        self.moments = {r: Moments() for r in ("peaks", "nonpeaks")}
        self.rank_moments = {r: Moments() for r in REGIONS}
        self._tables = {(side, r): CountTable(with_positives=False) for side in "xy" for r in ("peaks", "nonpeaks")}
        self._rankers: dict[tuple[str, str], Ranker] | None = None

    def add(self, x: np.ndarray, y: np.ndarray, in_peak: np.ndarray) -> None:
        """Pass 1: ``x, y: float[n]`` of evaluated bases, ``in_peak: bool[n]``."""
        for region, sel in (("peaks", in_peak), ("nonpeaks", ~in_peak)):
            xs, ys = x[sel], y[sel]
            self.moments[region].add(xs, ys)
            self._tables["x", region].add(xs)
            self._tables["y", region].add(ys)

    def _build_rankers(self) -> dict[tuple[str, str], Ranker]:
        rankers: dict[tuple[str, str], Ranker] = {}
        for side in "xy":
            for region in ("peaks", "nonpeaks"):
                rankers[side, region] = Ranker(self._tables.pop((side, region)))  # free each table once ranked
            rankers[side, "all"] = Ranker()
            rankers[side, "all"].tables = rankers[side, "peaks"].tables + rankers[side, "nonpeaks"].tables
        return rankers

    def add_ranks(self, x: np.ndarray, y: np.ndarray, in_peak: np.ndarray) -> None:
        """Pass 2: the same windows, in any order, after every :meth:`add`."""
        if self._rankers is None:
            self._rankers = self._build_rankers()
        rk = self._rankers
        self.rank_moments["all"].add(rk["x", "all"](x), rk["y", "all"](y))
        for region, sel in (("peaks", in_peak), ("nonpeaks", ~in_peak)):
            self.rank_moments[region].add(rk["x", region](x[sel]), rk["y", region](y[sel]))

    def overall(self) -> Moments:
        """Moments over all evaluated bases."""
        m = Moments()
        m.merge(self.moments["peaks"])
        m.merge(self.moments["nonpeaks"])
        return m

    def results(self, mse_scales: dict[str, float] | None = None) -> list[tuple[str, str, float]]:
        """``(metric, region, value)`` rows; ``mse_scales`` adds e.g. ``{"mse_scaled": s}``: MSE of ``s * x``."""
        ranked = self._rankers is not None
        self._rankers = None  # the rank moments are complete: free the tables
        rows = []
        for region in REGIONS:
            m = self.overall() if region == "all" else self.moments[region]
            label = f"{self.name}, {region} bases"
            rows.append(("pearson", region, m.pearson(f"Pearson r ({label})")))
            if ranked:
                rows.append(("spearman", region, self.rank_moments[region].pearson(f"Spearman rho ({label})")))
            rows.append(("mse", region, m.mse(1.0, f"MSE ({label})")))
            for metric, scale in (mse_scales or {}).items():
                rows.append((metric, region, m.mse(scale, f"{metric} ({label})")))
        return rows


# --------------------------------------------------------------------------- binary calls


@dataclass
class Confusion:
    """Base counts of binary calls against labels."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, calls: np.ndarray, labels: np.ndarray) -> None:
        """Add ``calls, labels: bool[n]``."""
        calls, labels = np.asarray(calls, dtype=bool), np.asarray(labels, dtype=bool)
        tp = int(np.count_nonzero(calls & labels))
        n_call, n_true = int(np.count_nonzero(calls)), int(np.count_nonzero(labels))
        self.tp += tp
        self.fp += n_call - tp
        self.fn += n_true - tp
        self.tn += calls.size - n_call - n_true + tp

    @staticmethod
    def _ratio(num: int, den: int, what: str, why: str) -> float:
        return num / den if den else _undefined(what, why)

    def results(self, name: str = "calls") -> list[tuple[str, float]]:
        """``(metric, value)``: precision, recall, f1, specificity, jaccard (base-level)."""
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        return [
            ("precision", self._ratio(tp, tp + fp, f"precision of {name}", "no base called")),
            ("recall", self._ratio(tp, tp + fn, f"recall of {name}", "no positive base")),
            ("f1", self._ratio(2 * tp, 2 * tp + fp + fn, f"F1 of {name}", "no base called and no positive base")),
            ("specificity", self._ratio(tn, tn + fp, f"specificity of {name}", "no negative base")),
            ("jaccard", self._ratio(tp, tp + fp + fn, f"Jaccard of {name}", "no base called and no positive base")),
        ]


# --------------------------------------------------------------------------- ensemble spread vs error

#: bins of the spread (sd of an ensemble's probabilities, in [0, 0.5]) when ranking bases by it: bases in one
#: bin (0.5 / 65536 ~ 7.6e-6 wide) count as tied
SPREAD_BINS = 1 << 16
#: share of the bases in the "most" and "least uncertain" tails of :class:`SpreadDeciles`
UNCERTAIN_FRACTION = 0.1
#: the metrics of :class:`SpreadDeciles` (method ``model``, region ``all``; only for ensembles)
SPREAD_METRICS = (
    "abs_error",
    "abs_error_top10",
    "abs_error_bottom10",
    "call_error",
    "call_error_top10",
    "call_error_bottom10",
)


def tail_weights(count: np.ndarray, fraction: float, top: bool) -> np.ndarray:
    """Weight in [0, 1] of each bin in the tail holding ``fraction`` of the bases (by bin order).

    ``count: int[n_bins]`` bases per bin, bins ordered by increasing value; ``top`` takes the tail of the
    highest bins. Bins wholly inside the tail weigh 1, the bin that crosses the boundary the share of its
    bases needed to reach ``fraction`` (its bases are ties), the others 0.
    """
    count = np.asarray(count, dtype=np.float64)
    order = count[::-1] if top else count
    need = fraction * count.sum()
    before = np.cumsum(order) - order  # bases in the bins ahead of each bin
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(order > 0, np.clip((need - before) / order, 0.0, 1.0), 0.0)
    return w[::-1] if top else w


@dataclass
class SpreadDeciles:
    """Does the ensemble's spread predict its error? Errors in the most and least uncertain tenth of the bases.

    The bases are ranked by the spread (``PREFIX.spread.bw``, binned into :data:`SPREAD_BINS` over [0, 0.5]);
    the top tenth (most uncertain) and the bottom tenth (least uncertain) are compared with the whole by
    ``abs_error``, the mean |denoised track - clean track|, and ``call_error``, the share of bases whose
    peak call (the narrowPeak, painted) differs from the clean label. Accumulated window by window in
    three histograms, so the holdout is never held whole.
    """

    n_bins: int = SPREAD_BINS
    count: np.ndarray = field(init=False)
    abs_error: np.ndarray = field(init=False)
    call_error: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.count = np.zeros(self.n_bins, dtype=np.int64)
        self.abs_error = np.zeros(self.n_bins)
        self.call_error = np.zeros(self.n_bins)

    def add(
        self, spread: np.ndarray, track: np.ndarray, clean: np.ndarray, calls: np.ndarray, labels: np.ndarray
    ) -> None:
        """Add ``n`` evaluated bases: ``spread, track, clean: float[n]``, ``calls, labels: bool[n]``."""
        s = np.nan_to_num(np.asarray(spread, dtype=np.float64))
        b = np.clip((s * (2 * self.n_bins)).astype(np.int64), 0, self.n_bins - 1)
        err = np.abs(np.asarray(track, dtype=np.float64) - np.asarray(clean, dtype=np.float64))
        wrong = (np.asarray(calls, dtype=bool) != np.asarray(labels, dtype=bool)).astype(np.float64)
        self.count += np.bincount(b, minlength=self.n_bins)
        self.abs_error += np.bincount(b, weights=err, minlength=self.n_bins)
        self.call_error += np.bincount(b, weights=wrong, minlength=self.n_bins)

    def results(self, fraction: float = UNCERTAIN_FRACTION) -> list[tuple[str, float]]:
        """``(metric, value)`` for :data:`SPREAD_METRICS` (NaN, with a warning, when no base was added)."""
        n = int(self.count.sum())
        if n == 0:
            return [(m, _undefined(f"{m} by spread", "no base evaluated")) for m in SPREAD_METRICS]
        rows = [("abs_error", self.abs_error.sum() / n)]
        tails = {f"top{round(100 * fraction)}": True, f"bottom{round(100 * fraction)}": False}
        for name, top in tails.items():
            w = tail_weights(self.count, fraction, top)
            rows.append((f"abs_error_{name}", float((w * self.abs_error).sum() / (w * self.count).sum())))
        rows.append(("call_error", self.call_error.sum() / n))
        for name, top in tails.items():
            w = tail_weights(self.count, fraction, top)
            rows.append((f"call_error_{name}", float((w * self.call_error).sum() / (w * self.count).sum())))
        return rows


# --------------------------------------------------------------------------- calibration

#: equal-width probability bins over [0, 1] of the expected calibration error and the reliability diagram
CALIBRATION_BINS = 15


def calibration_bins(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = CALIBRATION_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin base counts, summed probabilities and positive labels, int64/float64/int64[n_bins].

    Bin ``k`` holds the probabilities in ``[k / n_bins, (k + 1) / n_bins)``, the last one also 1.0.
    """
    p = np.asarray(probs, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    k = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    count = np.bincount(k, minlength=n_bins).astype(np.int64)
    total = np.bincount(k, weights=p, minlength=n_bins)
    pos = np.bincount(k[y], minlength=n_bins).astype(np.int64)
    return count, total, pos


def ece_from_bins(count: np.ndarray, total: np.ndarray, pos: np.ndarray, what: str = "ECE") -> float:
    """Compute the expected calibration error from the bins of :func:`calibration_bins`.

    The sum over bins of (bases in the bin / all bases) x |mean probability - fraction positive|;
    NaN (warned) with no bases.
    """
    n = int(np.sum(count))
    if n == 0:
        return _undefined(what, "no bases")
    used = count > 0
    gap = np.abs(total[used] - pos[used]) / count[used]  # |mean prob - fraction positive| per bin
    return float(np.sum(count[used] * gap) / n)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = CALIBRATION_BINS) -> float:
    """ECE of per-base probabilities ``probs: float[n]`` against ``labels: bool[n]`` (:func:`ece_from_bins`)."""
    return ece_from_bins(*calibration_bins(probs, labels, n_bins))


@dataclass
class Reliability:
    """Streamed calibration bins of a per-base probability (:func:`calibration_bins`), merged by summing."""

    n_bins: int = CALIBRATION_BINS
    count: np.ndarray = field(init=False)
    total: np.ndarray = field(init=False)
    pos: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.count = np.zeros(self.n_bins, dtype=np.int64)
        self.total = np.zeros(self.n_bins, dtype=np.float64)
        self.pos = np.zeros(self.n_bins, dtype=np.int64)

    def add(self, probs: np.ndarray, labels: np.ndarray) -> None:
        """Add ``probs: float[n]`` in [0, 1] with ``labels: bool[n]``."""
        count, total, pos = calibration_bins(probs, labels, self.n_bins)
        self.count += count
        self.total += total
        self.pos += pos

    def ece(self, what: str = "ECE") -> float:
        """Return the expected calibration error over every base added."""
        return ece_from_bins(self.count, self.total, self.pos, what)

    def diagram(self) -> dict[str, np.ndarray]:
        """Return the reliability diagram: ``count``, ``mean_prob``, ``frac_pos`` by bin (NaN if empty), ``edges``."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_prob = np.where(self.count > 0, self.total / self.count, np.nan)
            frac_pos = np.where(self.count > 0, self.pos / self.count, np.nan)
        return {
            "count": self.count.copy(),
            "mean_prob": mean_prob,
            "frac_pos": frac_pos,
            "edges": np.linspace(0.0, 1.0, self.n_bins + 1),
        }


# --------------------------------------------------------------------------- intervals and regions


def overlaps_any(starts: np.ndarray, ends: np.ndarray, other_starts: np.ndarray, other_ends: np.ndarray) -> np.ndarray:
    """Tell, as bool[n], whether interval i shares at least one base with any of the ``other`` intervals."""
    starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    os_, oe = merge_intervals(other_starts, other_ends)
    if os_.size == 0:
        return np.zeros(starts.size, dtype=bool)
    idx = np.searchsorted(oe, starts, side="right")  # first merged interval ending after our start
    found = idx < os_.size
    hit = np.zeros(starts.size, dtype=bool)
    hit[found] = os_[idx[found]] < ends[found]
    return hit & (ends > starts)


def subtract_intervals(
    starts: np.ndarray, ends: np.ndarray, cut_starts: np.ndarray, cut_ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bases of ``[starts, ends)`` not in ``[cut_starts, cut_ends)``, as merged intervals."""
    a_s, a_e = merge_intervals(starts, ends)
    b_s, b_e = merge_intervals(cut_starts, cut_ends)
    # sweep over breakpoints: inside A (depth 1) and outside B (depth 0)
    points = np.concatenate((a_s, a_e, b_s, b_e))
    delta_a = np.concatenate((np.ones(a_s.size), -np.ones(a_e.size), np.zeros(b_s.size + b_e.size)))
    delta_b = np.concatenate((np.zeros(a_s.size + a_e.size), np.ones(b_s.size), -np.ones(b_e.size)))
    uniq, inv = np.unique(points, return_inverse=True)
    da, db = np.zeros(uniq.size), np.zeros(uniq.size)
    np.add.at(da, inv, delta_a)
    np.add.at(db, inv, delta_b)
    inside = (np.cumsum(da) > 0) & (np.cumsum(db) == 0)  # state on [uniq[k], uniq[k+1])
    k = np.flatnonzero(inside[:-1]) if uniq.size else np.zeros(0, dtype=np.int64)
    return merge_intervals(uniq[k], uniq[k + 1])


def intervals_by_chrom(df: pd.DataFrame | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{chrom: (starts, ends)}`` sorted by start, from a DataFrame with chrom/start/end."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if df is None or len(df) == 0:
        return out
    for chrom, sub in df.groupby("chrom", sort=False):
        s, e = sub["start"].to_numpy(np.int64), sub["end"].to_numpy(np.int64)
        order = np.argsort(s, kind="stable")
        out[str(chrom)] = (s[order], e[order])
    return out


def paint_window(intervals: tuple[np.ndarray, np.ndarray] | None, start: int, end: int) -> np.ndarray:
    """bool[end - start]: bases of ``[start, end)`` covered by the (start-sorted) ``intervals``."""
    if intervals is None or intervals[0].size == 0:
        return np.zeros(end - start, dtype=bool)
    s, e = intervals
    n = int(np.searchsorted(s, end, side="left"))
    s, e = s[:n], e[:n]
    sel = e > start
    from atacdenoise.io.intervals import mask_from_intervals

    return mask_from_intervals(s[sel] - start, e[sel] - start, end - start)


def merge_regions(regions: list[Region], order: list[str]) -> list[Region]:
    """Union of ``regions``, sorted by chromosome (in ``order``, e.g. the sizes file) then position."""
    out = []
    for chrom in order:
        mine = [r for r in regions if r.chrom == chrom]
        if mine:
            s, e = merge_intervals(np.array([r.start for r in mine]), np.array([r.end for r in mine]))
            out.extend(Region(chrom, int(a), int(b)) for a, b in zip(s, e))
    return out


def region_windows(regions: list[Region], window_bp: int) -> list[Region]:
    """Tile each region into consecutive windows of at most ``window_bp`` bases."""
    out = []
    for r in regions:
        for s in range(r.start, r.end, window_bp):
            out.append(Region(r.chrom, s, min(s + window_bp, r.end)))
    return out


def evaluated_intervals(
    regions: list[Region], blacklist: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{chrom: (starts, ends)}`` of the evaluated bases: the regions minus the blacklist."""
    out = {}
    for chrom in dict.fromkeys(r.chrom for r in regions):
        mine = [r for r in regions if r.chrom == chrom]
        bl = blacklist.get(chrom, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
        out[chrom] = subtract_intervals(np.array([r.start for r in mine]), np.array([r.end for r in mine]), *bl)
    return out


# --------------------------------------------------------------------------- peak level


def peak_level(
    clean: dict[str, tuple[np.ndarray, np.ndarray]],
    called: dict[str, tuple[np.ndarray, np.ndarray]],
    evaluated: dict[str, tuple[np.ndarray, np.ndarray]],
    name: str = "calls",
) -> list[tuple[str, float]]:
    """Peak-level recall and precision.

    Only peaks with at least one evaluated base count. ``peak_recall``: fraction of
    clean peaks overlapped (>= 1 bp) by a called peak; ``peak_precision``: fraction
    of called peaks overlapping a clean peak.
    """
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    hit_clean = n_clean = hit_called = n_called = 0
    for chrom, ev in evaluated.items():
        c = clean.get(chrom, empty)
        k = called.get(chrom, empty)
        c_in = overlaps_any(*c, *ev)
        k_in = overlaps_any(*k, *ev)
        cs, ce = c[0][c_in], c[1][c_in]
        ks, ke = k[0][k_in], k[1][k_in]
        n_clean += cs.size
        n_called += ks.size
        hit_clean += int(overlaps_any(cs, ce, ks, ke).sum())
        hit_called += int(overlaps_any(ks, ke, cs, ce).sum())
    return [
        (
            "peak_recall",
            hit_clean / n_clean if n_clean else _undefined(f"peak recall of {name}", "no clean peak in the regions"),
        ),
        (
            "peak_precision",
            hit_called / n_called
            if n_called
            else _undefined(f"peak precision of {name}", "no called peak in the regions"),
        ),
    ]


# --------------------------------------------------------------------------- one benchmark


@dataclass
class Method:
    """What a method offers for scoring: a track (vs clean), per-base scores (vs labels), binary calls.

    ``probability``: its scores are probabilities in [0, 1] (the model's peak probability), so their
    calibration is scored too (``ece``); other scores (coverage, -log10 p) are not probabilities.
    """

    name: str
    track: bool = False
    scores: bool = False
    calls: bool = False
    probability: bool = False


@dataclass
class Benchmark:
    """All per-base accumulators of one (sample, depth, rep), fed window by window.

    Call :meth:`add` with each window's evaluated bases (blacklist already
    removed), then, if :attr:`needs_ranks`, :meth:`add_ranks` with the same
    windows, then :meth:`results`.
    """

    methods: list[Method]
    tracks: dict[str, TrackComparison] = field(init=False)
    scores: dict[str, CountTable] = field(init=False)
    calls: dict[str, Confusion] = field(init=False)
    reliability: dict[str, Reliability] = field(init=False)
    #: an ensemble's spread vs the error of method ``model`` (set ``spread=True``; needs its track and calls)
    spread: bool = False
    deciles: SpreadDeciles | None = field(init=False)
    n_bases: int = 0
    n_positive: int = 0

    def __post_init__(self) -> None:
        self.tracks = {m.name: TrackComparison(m.name) for m in self.methods if m.track}
        self.scores = {m.name: CountTable() for m in self.methods if m.scores}
        self.calls = {m.name: Confusion() for m in self.methods if m.calls}
        self.reliability = {m.name: Reliability() for m in self.methods if m.scores and m.probability}
        self.deciles = SpreadDeciles() if self.spread else None

    @property
    def needs_ranks(self) -> bool:
        """Tell whether a second pass, :meth:`add_ranks`, is needed (for the Spearman correlation of the tracks)."""
        return bool(self.tracks)

    def add(
        self,
        clean: np.ndarray,
        labels: np.ndarray,
        tracks: dict[str, np.ndarray],
        scores: dict[str, np.ndarray],
        calls: dict[str, np.ndarray],
        spread: np.ndarray | None = None,
    ) -> None:
        """Pass 1. ``clean: float[n]``, ``labels: bool[n]``; dicts keyed by method name, arrays of n bases.

        ``spread: float[n]`` is the ensemble's spread (needed when built with ``spread=True``).
        """
        self.n_bases += labels.size
        self.n_positive += int(np.count_nonzero(labels))
        for name, acc in self.tracks.items():
            acc.add(tracks[name], clean, labels)
        for name, acc in self.scores.items():
            acc.add(scores[name], labels)
        for name, acc in self.calls.items():
            acc.add(calls[name], labels)
        for name, acc in self.reliability.items():
            acc.add(scores[name], labels)
        if self.deciles is not None:
            if spread is None:
                raise ValueError("Benchmark(spread=True) needs the spread of every window")
            self.deciles.add(spread, tracks["model"], clean, calls["model"], labels)

    def add_ranks(self, clean: np.ndarray, labels: np.ndarray, tracks: dict[str, np.ndarray]) -> None:
        """Pass 2 (Spearman): the same windows as :meth:`add`."""
        for name, acc in self.tracks.items():
            acc.add_ranks(tracks[name], clean, labels)

    def depth_scale(self, method: str = "noisy") -> float:
        """Total clean signal / total signal of ``method``'s track over the evaluated bases."""
        m = self.tracks[method].overall()
        if m.mean_x <= 0:
            return _undefined(f"depth scale of {method}", "its track sums to zero over the regions")
        return m.mean_y / m.mean_x

    def results(self, mse_scales: dict[str, dict[str, float]] | None = None) -> pd.DataFrame:
        """Long table ``method, metric, region, value`` (classification metrics under region ``all``)."""
        if self.n_bases and self.n_positive in (0, self.n_bases):
            log.warning(
                "the clean labels are all %s over the evaluated bases",
                "negative" if self.n_positive == 0 else "positive",
            )
        rows = []
        for m in self.methods:
            if m.name in self.tracks:
                scales = (mse_scales or {}).get(m.name)
                rows += [(m.name, metric, region, v) for metric, region, v in self.tracks[m.name].results(scales)]
            if m.name in self.scores:
                _, tps, fps = curve_counts(self.scores[m.name])
                rows.append((m.name, "auroc", "all", auroc_from_counts(tps, fps, f"AUROC of {m.name}")))
                rows.append((m.name, "auprc", "all", auprc_from_counts(tps, fps, f"AUPRC of {m.name}")))
            if m.name in self.reliability:
                rows.append((m.name, "ece", "all", self.reliability[m.name].ece(f"ECE of {m.name}")))
            if m.name in self.calls:
                rows += [(m.name, metric, "all", v) for metric, v in self.calls[m.name].results(m.name)]
            if m.name == "model" and self.deciles is not None:
                rows += [(m.name, metric, "all", v) for metric, v in self.deciles.results()]
        return pd.DataFrame(rows, columns=["method", "metric", "region", "value"])

    def pr_curves(self, max_points: int = 1000) -> dict[str, np.ndarray]:
        """Return the arrays for the PR plot.

        They are ``recall__M``, ``precision__M``, ``auprc__M`` per scored method,
        ``point__M`` = (recall, precision) of the binary calls, and ``prevalence``; for a method whose
        scores are probabilities, its reliability diagram ``calib_count__M``, ``calib_mean_prob__M``,
        ``calib_frac_pos__M`` (per bin of :data:`CALIBRATION_BINS`) and ``ece__M``.
        """
        out: dict[str, np.ndarray] = {
            "prevalence": np.array(self.n_positive / self.n_bases if self.n_bases else np.nan)
        }
        for name, table in self.scores.items():
            _, tps, fps = curve_counts(table)
            out[f"recall__{name}"], out[f"precision__{name}"] = pr_curve_points(tps, fps, max_points)
            out[f"auprc__{name}"] = np.array(auprc_from_counts(tps, fps, f"AUPRC of {name}"))
        for name, conf in self.calls.items():
            r = dict(conf.results(name))
            out[f"point__{name}"] = np.array([r["recall"], r["precision"]])
        for name, rel in self.reliability.items():
            d = rel.diagram()
            for key in ("count", "mean_prob", "frac_pos"):
                out[f"calib_{key}__{name}"] = d[key]
            out[f"ece__{name}"] = np.array(rel.ece(f"ECE of {name}"))
        return out
