"""Value checks of the workflow's outputs, shared by the end-to-end tests (tests/workflow/test_*workflow.py).

Each ``check_*`` function reads one output, checks what its contract promises (finite numbers in their
ranges, peaks inside the chromosomes, probabilities in [0, 1], tracks that are not all zero, ...) and
returns what it parsed, so that a test can go on asserting on it. A failed check raises ``AssertionError``
naming the file and what was wrong (this module is not a test module: pytest does not rewrite its asserts,
so the messages are written out). The helpers read files with pandas, NumPy and pyBigWig only, never with
the package under test, so that a bug there cannot hide itself; ``tests/workflow/test_checks_outputs.py``
shows each of them failing on a small bad file.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyBigWig
import pysam

#: a region: (chrom, start, end), 0-based half-open
Region = tuple[str, int, int]

#: columns of the cohort's metrics.tsv (docs/ARCHITECTURE.md, "Metrics")
METRICS_COLUMNS = ["model", "sample", "cell_type", "seen", "depth", "rep", "method", "metric", "region", "value"]
#: the metrics each kind of method must have under region ``all`` (DESIGN.md §3 and evaluate/benchmark.py)
_TRACK = ("pearson", "spearman", "mse")
_SCORES = ("auroc", "auprc")
_CALLS = ("precision", "recall", "f1", "specificity", "jaccard", "peak_recall", "peak_precision")
REQUIRED_METRICS = {
    "noisy": (*_TRACK, "mse_scaled", *_SCORES),
    "macs3": (*_SCORES, *_CALLS),
    "model": (*_TRACK, *_SCORES, "ece", *_CALLS),
    "model_t": _CALLS,
}
#: the range of each metric (closed); anything outside, NaN or inf fails
METRIC_RANGES = {
    "pearson": (-1.0, 1.0),
    "spearman": (-1.0, 1.0),
    "mse": (0.0, math.inf),
    "mse_scaled": (0.0, math.inf),
    **{m: (0.0, 1.0) for m in (*_SCORES, "ece", *_CALLS)},
}
#: columns every row of results/qc/qc.tsv has (docs/ARCHITECTURE.md, "Input QC"), then cut_sites_per_mb:<region>
QC_COLUMNS = [
    "sample",
    "depth",
    "rep",
    "kind",
    "input",
    "paired",
    "reads_used",
    "fragments_used",
    "cut_sites",
    "duplicate_fraction",
    "low_mapq_fraction",
    "frip",
    "tss_enrichment",
    "fraglen_fragments",
    "fraglen_median",
    "fraglen_nfr_fraction",
    "fraglen_mono_fraction",
    "region_mb",
    "cut_sites_per_mb",
]
EFFECTIVE_DEPTH_COLUMNS = ["model", "sample", "cell_type", "seen", "depth", "metric", "baseline"]
EFFECTIVE_DEPTH_COLUMNS += ["model_value", "effective_depth", "qualifier", "fold"]
FITNESS_COLUMNS = ["metric", "sample", "training_min", "training_median", "training_max", "status", "note"]
REFERENCES_COLUMNS = ["sample", "cell_type", "role", "n_reference_files", "reference", "noisy"]
#: qualifiers of an effective depth: reached within the range, already at the smallest depth, not by the largest
QUALIFIERS = {"=", "<=", ">"}
#: the `seen - unseen` rows of summary_by_cell_type.tsv
GAP_CELL_TYPE = "seen - unseen"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _fail(path: Path | str, message: str) -> None:
    raise AssertionError(f"{path}: {message}")


def _expect(ok: bool, path: Path | str, message: str) -> None:
    if not ok:
        _fail(path, message)


def _nonempty_file(path: Path | str, what: str) -> Path:
    path = Path(path)
    _expect(path.is_file(), path, f"{what} not found")
    _expect(path.stat().st_size > 0, path, f"{what} is an empty file")
    return path


def _rows(df: pd.DataFrame, mask: pd.Series | np.ndarray, limit: int = 5) -> str:
    return df[np.asarray(mask)].head(limit).to_string(index=False)


# ------------------------------------------------------------------------------------------------ genome, regions


def read_sizes(path: Path | str) -> dict[str, int]:
    """Read a chromosome sizes file (``chrom<TAB>length``) into ``{chrom: length}``."""
    path = _nonempty_file(path, "chromosome sizes file")
    df = _read_tsv(path, header=None, usecols=[0, 1], names=["chrom", "length"], comment="#")
    return dict(zip(df["chrom"].astype(str), df["length"].astype(int)))


def parse_region(text: str, sizes: dict[str, int]) -> Region:
    """Turn ``chr2`` or ``chr2:5000000-10000000`` into (chrom, start, end), checked against ``sizes``."""
    m = re.fullmatch(r"([^:\s]+)(?::(\d+)-(\d+))?", text.replace(",", ""))
    if not m or m.group(1) not in sizes:
        raise ValueError(f"region {text!r}: expected CHROM or CHROM:START-END with CHROM in the sizes file")
    chrom = m.group(1)
    start, end = (int(m.group(2)), int(m.group(3))) if m.group(2) else (0, sizes[chrom])
    if not 0 <= start < end <= sizes[chrom]:
        raise ValueError(f"region {text!r}: outside {chrom} (length {sizes[chrom]}) or empty")
    return chrom, start, end


def read_intervals(path: Path | str) -> pd.DataFrame:
    """Read the first three columns (chrom, start, end) of a BED or narrowPeak file; track/browser/# lines skipped."""
    path = Path(path)
    _expect(path.is_file(), path, "interval file not found")
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith(("#", "track", "browser"))]
    fields = [ln.split("\t")[:3] for ln in lines]
    df = (
        pd.DataFrame(fields, columns=["chrom", "start", "end"])
        if fields
        else pd.DataFrame(columns=["chrom", "start", "end"])
    )
    df["start"] = pd.to_numeric(df["start"], errors="coerce")
    df["end"] = pd.to_numeric(df["end"], errors="coerce")
    _expect(bool(df[["start", "end"]].notna().all().all()), path, "non-numeric start or end")
    return df.astype({"chrom": str, "start": np.int64, "end": np.int64})


def _paint(intervals: pd.DataFrame, region: Region) -> np.ndarray:
    """Boolean mask of the bases of ``region`` covered by ``intervals`` (clipped to the region)."""
    chrom, start, end = region
    mask = np.zeros(end - start, dtype=bool)
    sub = intervals[(intervals["chrom"] == chrom) & (intervals["end"] > start) & (intervals["start"] < end)]
    for s, e in zip(
        np.clip(sub["start"].to_numpy() - start, 0, None), np.clip(sub["end"].to_numpy() - start, None, end - start)
    ):
        mask[s:e] = True
    return mask


def label_prevalence(labels: Path | str, regions: Iterable[Region], blacklist: Path | str | None = None) -> float:
    """Return the fraction of evaluated bases inside the clean peaks: what a score without skill reaches as AUPRC.

    The evaluated bases are those of ``regions`` (the holdout) outside the ``blacklist``; overlapping label
    peaks count once.
    """
    regions = list(regions)
    peaks = read_intervals(labels)
    masked = read_intervals(blacklist) if blacklist else peaks.iloc[:0]
    positive = total = 0
    for region in regions:
        keep = ~_paint(masked, region)
        positive += int((_paint(peaks, region) & keep).sum())
        total += int(keep.sum())
    _expect(total > 0, labels, f"no evaluated base in {list(regions)}")
    _expect(positive > 0, labels, f"no clean-peak base in {list(regions)}: every AUPRC would be undefined")
    return positive / total


# ---------------------------------------------------------------------------------------------------- narrowPeak


def check_narrowpeak(
    path: Path | str,
    sizes: dict[str, int],
    min_peaks: int = 1,
    max_score: int | None = None,
    chroms: Iterable[str] | None = None,
    min_length: int = 1,
) -> pd.DataFrame:
    """Check a narrowPeak file and return it (columns chrom start end name score strand signal p q summit).

    Checks: 10 tab-separated columns, at least ``min_peaks`` peaks, chromosomes of ``sizes`` (of ``chroms``
    when given), ``0 <= start < end <= chromosome length``, an integer ``score >= 0`` (at most ``max_score``
    when given: MACS3 writes int(10 * score), over 1000 for strong peaks), finite signal/p/q values (p and q
    are -1 or >= 0), a summit offset of -1 or inside the peak, peaks of at least ``min_length`` bases, and
    peaks sorted: each chromosome in one block, starts non-decreasing within it.
    """
    path = Path(path)
    _expect(path.is_file(), path, "narrowPeak not found")
    names = ["chrom", "start", "end", "name", "score", "strand", "signal", "p", "q", "summit"]
    text = path.read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("#", "track", "browser"))]
    _expect(len(lines) >= min_peaks, path, f"{len(lines)} peak(s), expected at least {min_peaks}")
    if not lines:
        return pd.DataFrame(columns=names)
    widths = {len(ln.split("\t")) for ln in lines}
    _expect(widths == {10}, path, f"lines with {sorted(widths)} tab-separated columns, expected 10")
    df = pd.DataFrame([ln.split("\t") for ln in lines], columns=names)
    for c in ("start", "end", "score", "signal", "p", "q", "summit"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
        bad = df[c].isna() | ~np.isfinite(df[c])
        _expect(
            not bad.any(), path, f"column {c!r} is not a finite number in {int(bad.sum())} line(s):\n{_rows(df, bad)}"
        )
    allowed = set(chroms) if chroms is not None else set(sizes)
    unknown = sorted(set(df["chrom"]) - allowed)
    _expect(not unknown, path, f"chromosomes {unknown} are not in {sorted(allowed)}")
    for c in ("start", "end", "score", "summit"):
        frac = df[c] % 1 != 0
        _expect(not frac.any(), path, f"column {c!r} holds non-integers:\n{_rows(df, frac)}")
    length = df["chrom"].map(sizes)
    outside = (df["start"] < 0) | (df["end"] > length)
    _expect(not outside.any(), path, f"{int(outside.sum())} peak(s) outside their chromosome:\n{_rows(df, outside)}")
    empty = df["start"] >= df["end"]
    _expect(not empty.any(), path, f"{int(empty.sum())} peak(s) with start >= end:\n{_rows(df, empty)}")
    short = df["end"] - df["start"] < min_length
    _expect(not short.any(), path, f"{int(short.sum())} peak(s) shorter than {min_length} bp:\n{_rows(df, short)}")
    _expect(bool((df["score"] >= 0).all()), path, "negative score")
    if max_score is not None:
        high = df["score"] > max_score
        _expect(not high.any(), path, f"score above {max_score}:\n{_rows(df, high)}")
    for c in ("p", "q"):
        bad = (df[c] < 0) & (df[c] != -1)
        _expect(not bad.any(), path, f"column {c!r} must be -1 or >= 0:\n{_rows(df, bad)}")
    summit_bad = (df["summit"] != -1) & ((df["summit"] < 0) | (df["summit"] >= df["end"] - df["start"]))
    _expect(not summit_bad.any(), path, f"summit offset outside the peak:\n{_rows(df, summit_bad)}")
    blocks = df["chrom"].ne(df["chrom"].shift()).cumsum()
    _expect(blocks.max() == df["chrom"].nunique(), path, "a chromosome's peaks are not in one block (not sorted)")
    back = (df["chrom"] == df["chrom"].shift()) & (df["start"] < df["start"].shift())
    _expect(not back.any(), path, f"starts decrease within a chromosome (not sorted):\n{_rows(df, back)}")
    return df.astype({"start": np.int64, "end": np.int64, "score": np.int64, "summit": np.int64})


# -------------------------------------------------------------------------------------------------------- bigWig


def check_bigwig_values(
    path: Path | str,
    sizes: dict[str, int],
    regions: Iterable[Region],
    chroms: Iterable[str] | None = None,
    lo: float | None = None,
    hi: float | None = None,
    complete: bool = True,
    not_all_zero: bool = True,
    integer: bool = False,
) -> np.ndarray:
    """Check a bigWig's header and its values over ``regions``; return those values (concatenated).

    Checks: a bigWig whose chromosomes are ``chroms`` (when given; else any of ``sizes``) with the lengths
    of ``sizes``; over ``regions``, every base has a value (``complete``; else a base
    without data counts as 0), no NaN or inf, values in [``lo``, ``hi``], not all zero (``not_all_zero``)
    and integers (``integer``: counts).
    """
    path = _nonempty_file(path, "bigWig")
    regions = list(regions)
    bw = pyBigWig.open(str(path))
    _expect(bw is not None, path, "pyBigWig cannot open it")
    try:
        _expect(bw.isBigWig(), path, "not a bigWig")
        found = bw.chroms()
        if chroms is not None:
            _expect(set(found) == set(chroms), path, f"chromosomes {sorted(found)}, expected {sorted(chroms)}")
        unknown = sorted(set(found) - set(sizes))
        _expect(
            bool(found) and not unknown, path, f"chromosomes {sorted(found)}: none, or {unknown} not in the sizes file"
        )
        wrong = {c: n for c, n in found.items() if n != sizes.get(c)}
        _expect(not wrong, path, f"chromosome lengths {wrong} differ from the sizes file's")
        # (no bw.header(): pyBigWig 0.3 crashes on the non-finite summaries of a file holding NaN or inf)
        parts = []
        for chrom, start, end in regions:
            _expect(chrom in found, path, f"region {chrom}:{start}-{end} is on a chromosome the file lacks")
            v = np.asarray(bw.values(chrom, start, end, numpy=True), dtype=np.float64)
            if v.size == 0:  # pyBigWig's answer for a file without any data
                v = np.full(end - start, np.nan)
            inf = np.isinf(v)
            _expect(not inf.any(), path, f"{int(inf.sum())} inf value(s) in {chrom}:{start}-{end}")
            nan = np.isnan(v)
            if complete:
                where = np.flatnonzero(nan)[:5] + start
                _expect(
                    not nan.any(),
                    path,
                    f"{int(nan.sum())} base(s) of {chrom}:{start}-{end} NaN or without data, e.g. {where.tolist()}",
                )
            else:  # a base without data reads as NaN too: the stored values tell a NaN from a gap
                stored = np.array([x[2] for x in bw.intervals(chrom, start, end) or ()], dtype=np.float64)
                _expect(bool(np.isfinite(stored).all()), path, f"NaN stored in {chrom}:{start}-{end}")
            parts.append(np.where(nan, 0.0, v))
    finally:
        bw.close()
    values = np.concatenate(parts) if parts else np.zeros(0)
    _expect(values.size > 0, path, "no region to check")
    if lo is not None:
        _expect(values.min() >= lo, path, f"minimum {values.min():.6g} below {lo}")
    if hi is not None:
        _expect(values.max() <= hi, path, f"maximum {values.max():.6g} above {hi}")
    if not_all_zero:
        _expect(bool(np.any(values != 0)), path, f"all zero over {list(regions)}")
    if integer:
        frac = values % 1 != 0
        _expect(not frac.any(), path, f"{int(frac.sum())} non-integer count(s), e.g. {values[frac][:5].tolist()}")
    return values


def check_probability_bigwig(
    path: Path | str, sizes: dict[str, int], regions: Iterable[Region], labels: Path | str | None = None, **kw
) -> np.ndarray:
    """Check a per-base peak probability: complete, in [0, 1], not constant; higher in the ``labels`` peaks.

    With ``labels`` (the clean peaks), the mean probability inside them must exceed the mean outside: a
    probability that does not tell peaks from background is not one.
    """
    regions = list(regions)
    values = check_bigwig_values(path, sizes, regions, lo=0.0, hi=1.0, complete=True, **kw)
    _expect(values.max() > values.min(), path, f"constant probability {values.min()} over {regions}")
    if labels is not None:
        peaks = read_intervals(labels)
        inside = np.concatenate([_paint(peaks, r) for r in regions])
        _expect(0 < inside.sum() < inside.size, labels, f"the clean peaks cover none or all of {regions}")
        a, b = values[inside].mean(), values[~inside].mean()
        _expect(a > b, path, f"mean probability {a:.4g} in the clean peaks is not above {b:.4g} outside them")
    return values


# ------------------------------------------------------------------------------------------------------- tables


def _read_tsv(path: Path, **kw) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep="\t", **kw)
    except pd.errors.EmptyDataError:
        _fail(path, "no header line: not a table")


def _numbers(df: pd.DataFrame, column: str, path: Path) -> pd.Series:
    values = pd.to_numeric(df[column], errors="coerce")
    text = df[column].notna() & values.isna()
    _expect(not text.any(), path, f"column {column!r} holds text where a number belongs:\n{_rows(df, text)}")
    return values


def _finite(df: pd.DataFrame, columns: Iterable[str], path: Path, where: pd.Series | None = None) -> None:
    for c in columns:
        values = _numbers(df, c, path)
        bad = ~np.isfinite(values.to_numpy(dtype=float))
        if where is not None:
            bad &= where.to_numpy()
        _expect(not bad.any(), path, f"column {c!r} is NaN or inf in {int(bad.sum())} row(s):\n{_rows(df, bad)}")


def _required_for(method: str) -> tuple[str, ...]:
    if method.startswith("macs3"):
        return REQUIRED_METRICS["macs3"]
    if method.startswith("model_t"):
        return REQUIRED_METRICS["model_t"]
    return REQUIRED_METRICS.get(method, ())


def check_metrics_table(
    path: Path | str,
    methods: Iterable[str],
    samples: Iterable[str] | None = None,
    depths: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Check the cohort's long-format ``metrics.tsv`` and return it (depth and rep as text, value as float).

    Checks: the contract's columns, at least one row, every value finite and within its metric's range
    (:data:`METRIC_RANGES`), no duplicated row, and every track (sample, depth, rep) scored by each of
    ``methods`` with all the metrics that method must have under region ``all`` (:data:`REQUIRED_METRICS`).
    ``samples`` and ``depths``, when given, are the exact sets expected.
    """
    path = _nonempty_file(path, "metrics table")
    df = _read_tsv(path, dtype=str, keep_default_na=False)
    _expect(list(df.columns) == METRICS_COLUMNS, path, f"columns {list(df.columns)}, expected {METRICS_COLUMNS}")
    _expect(len(df) > 0, path, "no rows")
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    bad = ~np.isfinite(df["value"].to_numpy(dtype=float))
    _expect(not bad.any(), path, f"{int(bad.sum())} value(s) NaN, inf or not a number:\n{_rows(df, bad)}")
    unknown = sorted(set(df["metric"]) - set(METRIC_RANGES))
    _expect(not unknown, path, f"unknown metrics {unknown}")
    lo = df["metric"].map(lambda m: METRIC_RANGES[m][0])
    hi = df["metric"].map(lambda m: METRIC_RANGES[m][1])
    out = (df["value"] < lo) | (df["value"] > hi)
    _expect(not out.any(), path, f"values outside their metric's range:\n{_rows(df, out)}")
    _expect(set(df["region"]) <= {"all", "peaks", "nonpeaks"}, path, f"regions {sorted(set(df['region']))}")
    _expect(set(df["seen"]) <= {"yes", "no"}, path, f"seen values {sorted(set(df['seen']))}, expected yes/no")
    key = ["sample", "depth", "rep", "method", "metric", "region"]
    dup = df.duplicated(key, keep=False)
    _expect(not dup.any(), path, f"duplicated rows:\n{_rows(df, dup)}")
    if samples is not None:
        _expect(
            set(df["sample"]) == set(samples), path, f"samples {sorted(set(df['sample']))}, expected {sorted(samples)}"
        )
    if depths is not None:
        _expect(set(df["depth"]) == set(depths), path, f"depths {sorted(set(df['depth']))}, expected {sorted(depths)}")
    methods = list(methods)
    have = set(zip(df["sample"], df["depth"], df["rep"], df["method"], df["metric"], df["region"]))
    for sample, depth, rep in sorted(set(zip(df["sample"], df["depth"], df["rep"]))):
        for method in methods:
            missing = [m for m in _required_for(method) if (sample, depth, rep, method, m, "all") not in have]
            _expect(not missing, path, f"{sample} {depth} rep{rep}: method {method!r} lacks {missing}")
    return df


def check_auprc_above_prevalence(
    metrics: pd.DataFrame, prevalence: dict[str, float], methods: Iterable[str], path: Path | str = "metrics.tsv"
) -> pd.DataFrame:
    """Check that every track's per-base AUPRC of each of ``methods`` is above its sample's peak prevalence.

    ``prevalence`` maps a sample to its fraction of holdout bases in clean peaks (:func:`label_prevalence`):
    the AUPRC of a score that cannot tell peaks from background. Returns the AUPRC rows with the prevalence.
    """
    methods = list(methods)
    rows = metrics[(metrics["metric"] == "auprc") & (metrics["region"] == "all") & metrics["method"].isin(methods)]
    rows = rows.assign(prevalence=rows["sample"].map(prevalence))
    _expect(rows["prevalence"].notna().all(), path, f"no prevalence for samples {sorted(set(rows['sample']))}")
    tracks = set(zip(metrics["sample"], metrics["depth"], metrics["rep"]))
    _expect(
        len(rows) == len(tracks) * len(methods),
        path,
        f"expected an AUPRC of {methods} for each of {len(tracks)} track(s)",
    )
    low = rows["value"] <= rows["prevalence"]
    _expect(not low.any(), path, f"AUPRC not above the peak prevalence:\n{_rows(rows, low, 20)}")
    return rows


def check_summary_table(path: Path | str, keys: Iterable[str], rows: int | None = None) -> pd.DataFrame:
    """Check ``summary.tsv`` / ``summary_by_cell_type.tsv`` and return it (keys as text).

    Checks: the ``keys`` columns and metric columns ``{method}_{metric}`` present, every metric and count
    column finite (the ``seen - unseen`` rows hold differences, checked for finiteness only; the others
    must be in the metric's range), fold columns NaN or > 0 with a known qualifier, and ``rows`` rows.
    """
    path = _nonempty_file(path, "summary table")
    keys = list(keys)
    df = _read_tsv(path, dtype={k: str for k in keys}, keep_default_na=False, na_values=["NaN", "NA", ""])
    missing = [k for k in keys if k not in df.columns]
    _expect(not missing, path, f"columns {missing} missing")
    _expect(len(df) > 0, path, "no rows")
    if rows is not None:
        _expect(len(df) == rows, path, f"{len(df)} rows, expected {rows}")
    dup = df.duplicated(keys, keep=False)
    _expect(not dup.any(), path, f"duplicated rows:\n{_rows(df, dup)}")
    metric_re = re.compile(r"^(noisy|macs3_\w+?|model|model_t[\d.]+)_(" + "|".join(METRIC_RANGES) + r")$")
    metric_cols = [c for c in df.columns if metric_re.match(c) and "_fold_vs_" not in c]
    _expect(any(c.startswith("model_") for c in metric_cols), path, "no model_* metric column")
    counts = [c for c in df.columns if c.startswith("n_")]
    _finite(df, metric_cols + counts, path)
    gap = df["cell_type"] == GAP_CELL_TYPE if "cell_type" in df.columns else pd.Series(False, index=df.index)
    for c in metric_cols:
        lo, hi = METRIC_RANGES[metric_re.match(c).group(2)]
        out = ~gap & ((df[c] < lo) | (df[c] > hi))
        _expect(not out.any(), path, f"column {c!r} outside [{lo}, {hi}]:\n{_rows(df, out)}")
    for c in counts:
        _expect(bool((df.loc[~gap, c] >= 1).all()), path, f"column {c!r} below 1")
    for c in (c for c in df.columns if "_fold_vs_" in c and not c.endswith("_q")):
        fold = _numbers(df, c, path)
        bad = fold.notna() & ~(np.isfinite(fold) & (fold > 0))
        _expect(not bad.any(), path, f"fold column {c!r} must be NaN or a positive number:\n{_rows(df, bad)}")
        if f"{c}_q" in df.columns:
            q = df[f"{c}_q"]
            bad = fold.notna() & ~q.isin(QUALIFIERS) | fold.isna() & q.notna()
            _expect(
                not bad.any(), path, f"qualifier {c}_q not in {sorted(QUALIFIERS)} beside its fold:\n{_rows(df, bad)}"
            )
    return df


def check_effective_depth(path: Path | str, by_cell_type: bool = False) -> pd.DataFrame:
    """Check ``effective_depth.tsv`` (or ``..._by_cell_type.tsv``): finite values, positive depths, qualifiers."""
    path = _nonempty_file(path, "effective depth table")
    df = _read_tsv(path, dtype={"depth": str}, keep_default_na=False, na_values=["NaN", "NA", ""])
    expected = [c for c in EFFECTIVE_DEPTH_COLUMNS if not (by_cell_type and c == "sample")]
    _expect(list(df.columns) == expected, path, f"columns {list(df.columns)}, expected {expected}")
    _expect(len(df) > 0, path, "no rows")
    _finite(df, ["model_value", "effective_depth", "fold"], path)
    _expect(bool((df["effective_depth"] > 0).all() and (df["fold"] > 0).all()), path, "non-positive depth or fold")
    _expect(set(df["qualifier"]) <= QUALIFIERS, path, f"qualifiers {sorted(set(df['qualifier']))}")
    lo = df["metric"].map(lambda m: METRIC_RANGES[m][0])
    hi = df["metric"].map(lambda m: METRIC_RANGES[m][1])
    out = (df["model_value"] < lo) | (df["model_value"] > hi)
    _expect(not out.any(), path, f"model values outside their metric's range:\n{_rows(df, out)}")
    return df


def check_references(path: Path | str, samples: Iterable[str]) -> pd.DataFrame:
    """Check ``references.tsv``: one row per sample; ``n_reference_files`` counts the files of ``reference``."""
    path = _nonempty_file(path, "references table")
    df = _read_tsv(path, dtype=str, keep_default_na=False)
    _expect(list(df.columns) == REFERENCES_COLUMNS, path, f"columns {list(df.columns)}, expected {REFERENCES_COLUMNS}")
    _expect(
        sorted(df["sample"]) == sorted(samples), path, f"samples {sorted(df['sample'])}, expected {sorted(samples)}"
    )
    n = df["reference"].str.split("; ").map(len)
    _expect(
        bool((n == pd.to_numeric(df["n_reference_files"])).all()),
        path,
        "n_reference_files differs from the files listed",
    )
    _expect(bool((df["reference"].str.len() > 0).all()), path, "a sample without a reference")
    return df


def check_qc_table(
    path: Path | str,
    expected: Iterable[tuple[str, str, str]],
    frip: Iterable[str] = (),
) -> pd.DataFrame:
    """Check ``results/qc/qc.tsv`` and return it.

    Checks: the contract's columns, exactly the ``expected`` (sample, depth, rep) rows, numbers in their
    ranges; ``frip`` names the samples whose rows must have a FRiP (those with clean peaks). The cut sites
    per Mb are the cut sites over ``region_mb``, with target regions too (both count the regions only).
    """
    path = _nonempty_file(path, "QC table")
    df = _read_tsv(path, dtype={"sample": str, "depth": str, "rep": str}, na_values=["NA"])
    missing = [c for c in QC_COLUMNS if c not in df.columns]
    _expect(not missing, path, f"columns {missing} missing")
    extra = [c for c in df.columns if c not in QC_COLUMNS and not c.startswith("cut_sites_per_mb:")]
    _expect(not extra, path, f"unexpected columns {extra}")
    got = sorted(zip(df["sample"], df["depth"], df["rep"]))
    _expect(got == sorted(expected), path, f"rows {got}, expected {sorted(expected)}")
    _finite(df, ["reads_used", "cut_sites", "region_mb", "cut_sites_per_mb"], path)
    _expect(
        bool((df["reads_used"] > 0).all() and (df["cut_sites"] > 0).all()), path, "an input with no reads or cut sites"
    )
    _expect(
        bool((df["region_mb"] > 0).all() and (df["cut_sites_per_mb"] > 0).all()),
        path,
        "non-positive region_mb or cut sites per Mb",
    )
    per_mb = df["cut_sites"] / df["region_mb"]
    off = ~np.isclose(per_mb, df["cut_sites_per_mb"], rtol=1e-3)
    _expect(not off.any(), path, f"cut_sites_per_mb != cut_sites / region_mb:\n{_rows(df, off)}")
    for c in ("duplicate_fraction", "low_mapq_fraction", "frip", "fraglen_nfr_fraction", "fraglen_mono_fraction"):
        v = _numbers(df, c, path)
        out = v.notna() & ((v < 0) | (v > 1))
        _expect(not out.any(), path, f"column {c!r} outside [0, 1]:\n{_rows(df, out)}")
    need = df["sample"].isin(list(frip))
    _finite(df, ["frip"], path, where=need)
    _expect(bool((df.loc[need, "frip"] > 0).all()), path, "FRiP of 0 against the clean peaks")
    for c in (c for c in df.columns if c.startswith("cut_sites_per_mb:")):
        v = _numbers(df, c, path)
        _expect(bool((v.dropna() >= 0).all()), path, f"negative {c}")
    return df


def check_fraglen(path: Path | str, paired: bool) -> pd.DataFrame:
    """Check a fragment-length histogram (``length count``, 0..1000 bp) and return it.

    Counts are non-negative integers, some fragments when the input is ``paired`` (none otherwise).
    """
    path = _nonempty_file(path, "fragment-length table")
    df = _read_tsv(path)
    _expect(list(df.columns) == ["length", "count"], path, f"columns {list(df.columns)}, expected ['length', 'count']")
    if not paired:
        _expect(int(pd.to_numeric(df["count"]).sum()) == 0, path, "fragment lengths of an input without pairs")
        return df
    _expect(df["length"].tolist() == list(range(1001)), path, "lengths are not 0..1000")
    counts = _numbers(df, "count", path)
    _expect(bool((counts >= 0).all() and (counts % 1 == 0).all()), path, "counts must be non-negative integers")
    _expect(counts.sum() > 0, path, "no fragment in the histogram")
    return df


def check_history(path: Path | str, epochs: int) -> pd.DataFrame:
    """Check a training ``history.tsv``: ``epochs`` rows numbered 1.., finite losses, validation scores in range."""
    path = _nonempty_file(path, "training history")
    df = _read_tsv(path, na_values=["NA"])
    _expect(
        df["epoch"].tolist() == list(range(1, epochs + 1)), path, f"epochs {df['epoch'].tolist()}, expected 1..{epochs}"
    )
    losses = [c for c in df.columns if c.endswith(("_loss", "_mse", "_bce"))]
    _expect({"train_loss", "val_loss"} <= set(losses), path, "train_loss / val_loss columns missing")
    _finite(df, [*losses, "val_auprc", "val_auroc", "val_pearson", "lr", "seconds"], path)
    _expect(bool((df[losses] >= 0).all().all()), path, "a negative loss")
    for c in ("val_auprc", "val_auroc", "val_f1_at_0.5", "val_best_f1", "val_best_threshold"):
        if c in df.columns:
            v = _numbers(df, c, path)
            _expect(bool(v.between(0, 1).all()), path, f"column {c!r} outside [0, 1]")
    _expect(bool(df["val_pearson"].between(-1, 1).all()), path, "val_pearson outside [-1, 1]")
    _expect(df["best"].astype(str).eq("True").any(), path, "no epoch marked best")
    return df


def check_fitness(path: Path | str) -> pd.DataFrame:
    """Check a ``fitness.tsv``: its columns, the four metrics, known statuses, and the settings agreeing."""
    path = _nonempty_file(path, "fitness table")
    df = _read_tsv(path, dtype=str, keep_default_na=False)
    _expect(list(df.columns) == FITNESS_COLUMNS, path, f"columns {list(df.columns)}, expected {FITNESS_COLUMNS}")
    metrics = ["preprocessing", "cut_sites_per_mb", "fraction_in_training_peaks", "fragment_length_distance"]
    _expect(df["metric"].tolist() == metrics, path, f"metrics {df['metric'].tolist()}, expected {metrics}")
    _expect(set(df["status"]) <= {"ok", "outside", "unknown"}, path, f"statuses {sorted(set(df['status']))}")
    _expect(
        df.loc[df["metric"] == "preprocessing", "status"].eq("ok").all(), path, "preprocessing differs from the model's"
    )
    row = df.set_index("metric").loc["cut_sites_per_mb"]
    for c in ("sample", "training_min", "training_median", "training_max"):
        v = pd.to_numeric(row[c], errors="coerce")
        _expect(bool(np.isfinite(v) and v > 0), path, f"cut_sites_per_mb {c} = {row[c]!r}, expected a positive number")
    return df


def check_png(path: Path | str, min_pixels: int = 100) -> tuple[int, int]:
    """Check a PNG file: its signature and an image header of at least ``min_pixels`` on each side; return the size."""
    path = _nonempty_file(path, "PNG figure")
    head = path.read_bytes()[:24]
    _expect(head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR", path, "not a PNG file")
    width, height = struct.unpack(">II", head[16:24])
    _expect(width >= min_pixels and height >= min_pixels, path, f"image of {width} x {height} pixels")
    return width, height


def check_html_report(path: Path | str, mentions: Iterable[str] = (), min_bytes: int = 10_000) -> str:
    """Check an HTML report: at least ``min_bytes``, an ``<html`` document, every string of ``mentions`` in it."""
    path = _nonempty_file(path, "HTML report")
    _expect(path.stat().st_size >= min_bytes, path, f"{path.stat().st_size} bytes, expected at least {min_bytes}")
    html = path.read_text(errors="replace")
    _expect("<html" in html[:5000].lower(), path, "no <html> element near the start: not an HTML document")
    missing = [m for m in mentions if m not in html]
    _expect(not missing, path, f"does not mention {missing}")
    return html


# ------------------------------------------------------------------------------------------ BAM, coverage, model


def check_subsample_bam(path: Path | str, tolerance_sd: float = 5.0) -> dict:
    """Check a subsampled BAM against its sidecar ``X.bam.json``; return the sidecar.

    Checks: an indexed BAM whose usable fragments (counted here read by read: proper-pair first reads, or
    single-end reads, MAPQ >= the sidecar's ``min_mapq``, no unmapped/secondary/QC-fail/duplicate/
    supplementary) are the sidecar's ``achieved``, within ``tolerance_sd`` binomial SDs of ``target``, and
    ``fraction`` = target / available.
    """
    path = _nonempty_file(path, "subsampled BAM")
    _expect(Path(f"{path}.bai").is_file(), path, "no .bai index beside it")
    meta = json.loads(_nonempty_file(f"{path}.json", "subsample sidecar").read_text())
    drop = 0x4 | 0x100 | 0x200 | 0x400 | 0x800
    n = 0
    with pysam.AlignmentFile(str(path)) as fh:
        _expect(fh.has_index(), path, "pysam finds no usable index")
        mapped = sum(s.mapped for s in fh.get_index_statistics())
        records = 0
        for r in fh.fetch(until_eof=True):
            records += not r.is_unmapped
            if r.flag & drop or r.mapping_quality < meta["min_mapq"]:
                continue
            n += (r.is_proper_pair and r.is_read1) if r.is_paired else 1
    _expect(mapped == records, path, f"the index counts {mapped} mapped reads, the file holds {records}")
    _expect(
        n == meta["achieved"] > 0, path, f"{n} usable fragments in the BAM, sidecar says achieved {meta['achieved']}"
    )
    sd = math.sqrt(meta["target"] * (1 - meta["target"] / meta["available"]))
    _expect(
        abs(n - meta["target"]) <= tolerance_sd * sd,
        path,
        f"{n} fragments for a target of {meta['target']} (SD {sd:.1f})",
    )
    _expect(
        math.isclose(meta["fraction"], meta["target"] / meta["available"], rel_tol=1e-9),
        path,
        "fraction != target / available",
    )
    return meta


def check_coverage_total(path: Path | str, min_ratio: float = 0.99) -> dict:
    """Check that a coverage bigWig holds ``smooth_bp + 1`` bases of count per cut site of its sidecar.

    Each cut site is a box of ``smooth_bp + 1`` bases of height 1 (no CPM), so the track's sum over a
    chromosome is ``(smooth_bp + 1) * n_cut_sites`` less the box parts clipped at chromosome (or target
    region) edges: between ``min_ratio`` and 1 times that. Returns the sidecar.
    """
    path = _nonempty_file(path, "coverage bigWig")
    meta = json.loads(_nonempty_file(f"{path}.json", "coverage sidecar").read_text())
    _expect(not meta["cpm"], path, "a CPM track: the box count does not apply")
    box = meta["smooth_bp"] + 1
    bw = pyBigWig.open(str(path))
    try:
        for chrom, n in meta["n_cut_sites"].items():
            total = (bw.stats(chrom, type="sum", exact=True)[0] or 0.0) if n else 0.0
            _expect(math.isfinite(total), path, f"{chrom}: sum {total}")
            expected = box * n
            ok = expected * min_ratio <= total <= expected if n else total == 0
            _expect(ok, path, f"{chrom}: coverage sums to {total}, expected {box} x {n} cut sites = {expected}")
    finally:
        bw.close()
    _expect(sum(meta["n_cut_sites"].values()) > 0, path, "no cut sites")
    return meta


def check_model_file(path: Path | str) -> dict:
    """Check a ``model.pt``: the model format, hyper-parameters, finite weights, a threshold in (0, 1); return it."""
    import torch

    path = _nonempty_file(path, "model file")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    _expect(isinstance(ckpt, dict) and ckpt.get("format") == "atacdenoise-model/1", path, "not an atacdenoise model")
    _expect(bool(ckpt.get("hparams")), path, "no hyper-parameters")
    state = ckpt["state_dict"]
    _expect(len(state) > 0, path, "no weights")
    bad = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    _expect(not bad, path, f"non-finite weights in {bad[:5]}")
    _expect(any(bool(t.abs().sum() > 0) for t in state.values() if t.is_floating_point()), path, "all weights zero")
    _expect(0.0 < float(ckpt["threshold"]) < 1.0, path, f"peak threshold {ckpt['threshold']} not in (0, 1)")
    return ckpt
