"""The benchmark of one noisy track: model, noisy input and MACS3 baselines against the clean data.

On the holdout regions, blacklisted bases removed, for the methods ``noisy``
(the input coverage), each MACS3 baseline (its narrowPeak and per-base -log10 p
track) and ``model`` (the denoised outputs), :func:`benchmark_track` computes
the rows of ``metrics.tsv`` in the long format ``model sample depth rep method
metric region value`` (the metric definitions are in
:mod:`atacdenoise.evaluate.metrics`):

- track metrics (noisy and model, vs the clean coverage): ``pearson``,
  ``spearman``, ``mse`` over ``all`` / ``peaks`` (clean-peak bases) /
  ``nonpeaks`` bases; noisy also ``mse_scaled``, the MSE of the noisy track
  multiplied by the depth scale (by default total clean signal / total noisy
  signal over the evaluated bases);
- ``auroc``, ``auprc`` of per-base scores against the clean peaks over every
  threshold (noisy: its coverage; MACS3: its -log10 p track; model: its peak
  probability);
- ``ece`` (model only: the one method whose scores are probabilities), the
  expected calibration error of the peak probability against the clean peaks
  (15 equal-width bins over [0, 1], each weighted by its share of the bases);
- ``precision``, ``recall``, ``f1``, ``specificity``, ``jaccard`` of the binary
  calls (MACS3 and model narrowPeaks painted per base) and the peak-level
  ``peak_recall`` / ``peak_precision``. The model's narrowPeaks use the threshold
  stored in model.pt (by default the cut of maximum F1 on the validation
  regions); for comparison the method ``model_t0.5`` holds the calls of the same
  peak caller on the peak probability at a fixed cut (0.5), made here over the
  evaluated regions.

- for an ensemble (the peakprob sidecar lists its ``ensemble`` members, and
  ``PREFIX.spread.bw`` holds the per-base spread), method ``model`` also gets
  the error in the most and least uncertain tenth of the bases by spread
  (:class:`atacdenoise.evaluate.metrics.SpreadDeciles`): ``abs_error`` (mean
  |denoised track - clean|) and ``call_error`` (share of bases whose peak call
  differs from the clean label) over all bases, and with suffixes ``_top10``
  (most uncertain) and ``_bottom10`` (least uncertain). A single model has none.

Classification metrics are under region ``all``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.atomic import atomic_output
from atacdenoise.errors import InputError, require_file
from atacdenoise.evaluate.metrics import (
    SPREAD_METRICS,
    Benchmark,
    Method,
    evaluated_intervals,
    intervals_by_chrom,
    merge_regions,
    paint_window,
    peak_level,
    region_windows,
)
from atacdenoise.io.bigwig import BigWigSource
from atacdenoise.io.genome import Region, parse_region
from atacdenoise.io.intervals import read_bed, read_narrowpeak
from atacdenoise.io.sidecar import read_sidecar
from atacdenoise.log import progress
from atacdenoise.peaks.threshold import MAX_GAP, MIN_LENGTH, PeakStream

log = logging.getLogger(__name__)

#: columns of one track's table (``atacdenoise metrics``)
COLUMNS = ["model", "sample", "depth", "rep", "method", "metric", "region", "value"]
#: columns of the cohort's metrics.tsv (``atacdenoise summary``): each sample's cell type and whether the model
#: was trained on it (``seen``: yes | no) follow ``sample``
COHORT_COLUMNS = [*COLUMNS[:2], "cell_type", "seen", *COLUMNS[2:]]


_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass
class Baseline:
    """A peak-caller baseline (``--baseline NAME=PEAKS,PVAL``): its narrowPeak calls and its -log10 p bigWig."""

    name: str
    peaks: Path
    pval: Path


def parse_baseline(text: str) -> Baseline:
    """``NAME=PEAKS.narrowPeak,PVAL.bw`` -> Baseline."""
    name, sep, rest = text.partition("=")
    files = rest.split(",")
    if not sep or len(files) != 2 or not all(files):
        raise InputError(f"--baseline {text!r}: expected NAME=PEAKS.narrowPeak,PVAL.bw")
    if not _NAME.match(name) or name in ("noisy", "model"):
        raise InputError(f"--baseline {text!r}: NAME must match [A-Za-z0-9._-]+ and not be 'noisy' or 'model'")
    return Baseline(name, Path(files[0]), Path(files[1]))


def calls_at(prob: BigWigSource, track: BigWigSource, regions: list[Region], threshold: float, window_bp: int) -> dict:
    """Peaks called on ``prob`` >= ``threshold`` over each region (read in ``window_bp`` chunks), by chromosome.

    The same caller as ``atacdenoise infer`` (min length, gap merging), run on the evaluated regions only,
    so a peak crossing a region's edge is cut there: those bases are outside the evaluation anyway.
    """
    tables = []
    for r in regions:
        stream = PeakStream(r.chrom, threshold, min_length=MIN_LENGTH, max_gap=MAX_GAP)
        for w in region_windows([r], window_bp):
            stream.add(w.start - r.start, prob.read(w.chrom, w.start, w.end), track.read(w.chrom, w.start, w.end))
        t = stream.finish()
        t["start"] += r.start
        t["end"] += r.start
        tables.append(t)
    return intervals_by_chrom(pd.concat(tables, ignore_index=True) if tables else None)


def _window(
    w: Region,
    sources: dict[str, BigWigSource],
    clean_peaks: dict,
    blacklist: dict,
    called: dict[str, dict],
    with_scores: bool,
) -> dict:
    """Arrays of the evaluated (non-blacklisted) bases of window ``w`` for :class:`Benchmark`."""
    keep = ~paint_window(blacklist.get(w.chrom), w.start, w.end)
    labels = paint_window(clean_peaks.get(w.chrom), w.start, w.end)[keep]
    read = {
        k: s.read(w.chrom, w.start, w.end)[keep]
        for k, s in sources.items()
        if with_scores or k in ("clean", "noisy", "model.track")
    }
    spread = read.pop("model.spread", None)
    tracks = {"noisy": read["noisy"]}
    if "model.track" in read:
        tracks["model"] = read["model.track"]
    out = {"clean": read["clean"], "labels": labels, "tracks": tracks}
    if with_scores:
        out["scores"] = {"noisy": read["noisy"]} | {
            k.removesuffix(".pval"): v for k, v in read.items() if k.endswith(".pval")
        }
        if "model.prob" in read:
            out["scores"]["model"] = read["model.prob"]
        out["calls"] = {name: paint_window(peaks.get(w.chrom), w.start, w.end)[keep] for name, peaks in called.items()}
        if spread is not None:
            out["spread"] = spread
    return out


def is_ensemble(prob_bw: Path) -> bool:
    """Tell whether a denoised probability bigWig was written by an ensemble (its sidecar lists the members)."""
    sidecar = read_sidecar(prob_bw)
    return bool(sidecar and len((sidecar.get("ensemble") or {}).get("members", [])) > 1)


_METRIC_ORDER = [
    "pearson",
    "spearman",
    "mse",
    "mse_scaled",
    "auroc",
    "auprc",
    "ece",
    "precision",
    "recall",
    "f1",
    "specificity",
    "jaccard",
    "peak_recall",
    "peak_precision",
    *SPREAD_METRICS,
]


def _order(table: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    key = pd.DataFrame(
        {
            "m": table["method"].map({m: i for i, m in enumerate(methods)}),
            "k": table["metric"].map({m: i for i, m in enumerate(_METRIC_ORDER)}).fillna(len(_METRIC_ORDER)),
            "r": table["region"].map({"all": 0, "peaks": 1, "nonpeaks": 2}),
        }
    )
    return table.loc[key.sort_values(["m", "k", "r"], kind="stable").index].reset_index(drop=True)


def write_metrics(table: pd.DataFrame, path: Path) -> None:
    """Write a long-format metrics table atomically (NaN written as 'NaN').

    The columns are :data:`COHORT_COLUMNS` when ``table`` has ``cell_type`` (the cohort's metrics.tsv), else
    :data:`COLUMNS` (one track's table).
    """
    columns = COHORT_COLUMNS if "cell_type" in table.columns else COLUMNS
    with atomic_output(path) as tmp:
        table[columns].to_csv(tmp, sep="\t", index=False, na_rep="NaN", float_format="%.10g")


def read_metrics(path: Path) -> pd.DataFrame:
    """Read a long-format metrics TSV (labels kept as strings), checking its columns.

    Either one track's table (:data:`COLUMNS`, from ``atacdenoise metrics``) or the cohort's metrics.tsv
    (:data:`COHORT_COLUMNS`, from ``atacdenoise summary``: with ``cell_type`` and ``seen``).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: metrics table not found")
    df = pd.read_csv(
        path,
        sep="\t",
        dtype={c: str for c in COHORT_COLUMNS[:-1]},
        keep_default_na=False,
        na_values=["NaN", "nan", ""],
    )
    if list(df.columns) not in (COLUMNS, COHORT_COLUMNS):
        raise InputError(
            f"{path}: columns {list(df.columns)}; expected {COLUMNS} (a file written by 'atacdenoise metrics') "
            f"or {COHORT_COLUMNS} (the metrics.tsv of 'atacdenoise summary')"
        )
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df


def benchmark_track(
    clean: Path,
    labels: Path,
    noisy: Path,
    sizes: dict[str, int],
    regions: list[str],
    denoised_prefix: Path | None = None,
    baselines: list[Baseline] = (),
    blacklist: Path | None = None,
    depth_scale: float | None = None,
    fixed_threshold: float = 0.5,
    window_bp: int = 4_000_000,
    pr_points: int = 1000,
) -> tuple[pd.DataFrame, dict[str, np.ndarray], list[str]]:
    """Score one noisy track (see the module docstring); return the metric rows, the PR curves and the methods.

    The rows have the columns ``method metric region value``, in a stable
    order; the caller adds the labels of the track (model, sample, depth,
    rep). Regions are strings such as ``chr10`` or ``chr10:0-5000000``. The
    bigWigs are read ``window_bp`` bases at a time (memory bound); ranks take a
    second pass. ``curves`` holds ``pr_points`` points per PR curve.
    """
    regions = merge_regions([parse_region(r, sizes) for r in regions], list(sizes))
    chroms = list(dict.fromkeys(r.chrom for r in regions))
    if window_bp < 1:
        raise InputError(f"--window-bp {window_bp}: expected a positive number of bases")
    if len({b.name for b in baselines}) != len(baselines):
        raise InputError(f"--baseline: names {[b.name for b in baselines]} must be unique")
    if not 0.0 < fixed_threshold < 1.0:
        raise InputError(f"--fixed-threshold {fixed_threshold}: expected a probability between 0 and 1")

    clean_peaks = intervals_by_chrom(read_narrowpeak(require_file(labels, "clean peak file"), sizes))
    masked = intervals_by_chrom(read_bed(require_file(blacklist, "blacklist"), sizes) if blacklist else None)
    sources = {"clean": BigWigSource(require_file(clean, "clean bigWig"), sizes, chroms)}
    sources["noisy"] = BigWigSource(require_file(noisy, "noisy bigWig"), sizes, chroms)
    methods = [Method("noisy", track=True, scores=True)]
    called: dict[str, dict] = {}
    for b in baselines:
        sources[f"{b.name}.pval"] = BigWigSource(require_file(b.pval, f"-log10 p bigWig of {b.name}"), sizes, chroms)
        called[b.name] = intervals_by_chrom(read_narrowpeak(require_file(b.peaks, f"peaks of {b.name}"), sizes))
        methods.append(Method(b.name, scores=True, calls=True))
    if denoised_prefix is not None:
        prefix = str(denoised_prefix)
        track_bw = require_file(Path(prefix + ".track.bw"), "denoised track")
        sources["model.track"] = BigWigSource(track_bw, sizes, chroms)
        prob_bw = require_file(Path(prefix + ".peakprob.bw"), "peak probability bigWig")
        sources["model.prob"] = BigWigSource(prob_bw, sizes, chroms)
        model_peaks = require_file(Path(prefix + ".peaks.narrowPeak"), "denoised peaks")
        called["model"] = intervals_by_chrom(read_narrowpeak(model_peaks, sizes))
        methods.append(Method("model", track=True, scores=True, calls=True, probability=True))
        fixed = f"model_t{fixed_threshold:g}"
        called[fixed] = calls_at(sources["model.prob"], sources["model.track"], regions, fixed_threshold, window_bp)
        methods.append(Method(fixed, calls=True))
        if is_ensemble(prob_bw):
            spread_bw = require_file(Path(prefix + ".spread.bw"), "ensemble spread bigWig (atacdenoise infer)")
            sources["model.spread"] = BigWigSource(spread_bw, sizes, chroms)

    bench = Benchmark(methods, spread="model.spread" in sources)
    windows = region_windows(regions, window_bp)
    log.info(
        "evaluating %s on %d bp in %d window(s)", [m.name for m in methods], sum(len(r) for r in regions), len(windows)
    )
    try:
        for w in progress(windows, total=len(windows), desc="metrics", unit="window"):
            bench.add(**_window(w, sources, clean_peaks, masked, called, with_scores=True))
        for w in progress(windows, total=len(windows), desc="ranks", unit="window"):
            arrays = _window(w, sources, clean_peaks, masked, called, with_scores=False)
            bench.add_ranks(arrays["clean"], arrays["labels"], arrays["tracks"])
    finally:
        for src in sources.values():
            src.close()

    if bench.n_bases == 0:
        log.warning("no base left to evaluate: the regions %s are entirely blacklisted", [str(r) for r in regions])
    scale = depth_scale if depth_scale is not None else bench.depth_scale("noisy")
    log.info(
        "depth scale of the noisy track for mse_scaled: %.6g (%s)",
        scale,
        "given" if depth_scale is not None else "clean/noisy totals",
    )
    table = bench.results({"noisy": {"mse_scaled": scale}})
    evaluated = evaluated_intervals(regions, masked)
    extra = [
        (name, metric, "all", v)
        for name, peaks in called.items()
        for metric, v in peak_level(clean_peaks, peaks, evaluated, name)
    ]
    table = pd.concat([table, pd.DataFrame(extra, columns=table.columns)], ignore_index=True)
    table = _order(table, [m.name for m in methods])
    log.info(
        "%d metrics over %d evaluated bases, %.3g%% in clean peaks",
        len(table),
        bench.n_bases,
        100 * bench.n_positive / max(bench.n_bases, 1),
    )
    return table, bench.pr_curves(pr_points), [m.name for m in methods if m.scores]


def write_pr_curves(path: Path, curves: dict[str, np.ndarray], methods: list[str], labels: dict[str, str]) -> None:
    """Save the thinned PR curves with the track's labels (model, sample, depth, rep) as NPZ, atomically."""
    meta = {k: np.array(str(v)) for k, v in labels.items()}
    meta["methods"] = np.array(methods)
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **curves, **meta)


def read_pr_curves(paths: list[Path]) -> list[dict[str, np.ndarray]]:
    """Load NPZ files of :func:`write_pr_curves`, checking that each is one."""
    curves = []
    for path in paths:
        require_file(path, "PR-curve file")
        try:
            with np.load(path, allow_pickle=False) as z:
                curves.append({k: z[k] for k in z.files})
        except (ValueError, OSError) as exc:
            raise InputError(f"{path}: not an NPZ written by 'atacdenoise metrics --pr-curves' ({exc})") from exc
        if not {"sample", "depth", "methods"} <= set(curves[-1]):
            raise InputError(f"{path}: lacks sample/depth/methods: not written by 'atacdenoise metrics --pr-curves'")
    return curves
