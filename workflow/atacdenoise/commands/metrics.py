"""Benchmark one denoised (sample, depth, rep) against its clean data.

On the holdout regions, blacklisted bases removed, for the methods ``noisy``
(the input coverage), each MACS3 baseline (``--baseline NAME=PEAKS,PVAL``) and
``model`` (``--denoised-prefix``), writes metrics.tsv rows in the long format
``model sample depth rep method metric region value``:

- track metrics (noisy and model, vs the clean coverage): ``pearson``,
  ``spearman``, ``mse`` over ``all`` / ``peaks`` (clean-peak bases) /
  ``nonpeaks`` bases; noisy also ``mse_scaled``, the MSE of the noisy track
  multiplied by the depth scale (``--depth-scale``; by default total clean
  signal / total noisy signal over the evaluated bases);
- ``auroc``, ``auprc`` of per-base scores against the clean peaks over every
  threshold (noisy: its coverage; MACS3: its -log10 p track; model: its peak
  probability);
- ``precision``, ``recall``, ``f1``, ``specificity``, ``jaccard`` of the binary
  calls (MACS3 and model narrowPeaks painted per base) and the peak-level
  ``peak_recall`` / ``peak_precision``. The model's narrowPeaks use the threshold
  stored in model.pt (by default the cut of maximum F1 on the validation
  regions); for comparison the method ``model_t0.5`` holds the calls of the same
  peak caller on the peak probability at the fixed cut ``--fixed-threshold``
  (0.5), made here over the evaluated regions.

Classification metrics are under region ``all``. ``--pr-curves`` saves thinned
PR curves for ``atacdenoise plots pr``.
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.atomic import atomic_output
from atacdenoise.errors import InputError
from atacdenoise.evaluate.metrics import (
    Benchmark,
    Method,
    evaluated_intervals,
    intervals_by_chrom,
    merge_regions,
    paint_window,
    peak_level,
    region_windows,
)
from atacdenoise.io.bigwig import open_bigwig
from atacdenoise.io.genome import Region, parse_region, read_chrom_sizes
from atacdenoise.io.intervals import read_bed, read_narrowpeak
from atacdenoise.log import progress

log = logging.getLogger(__name__)

COLUMNS = ["model", "sample", "depth", "rep", "method", "metric", "region", "value"]
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inputs")
    g.add_argument("--clean", required=True, type=Path, help="clean (deep) coverage bigWig: the reference track")
    g.add_argument("--labels", required=True, type=Path, help="clean peaks (narrowPeak/BED): the per-base truth")
    g.add_argument("--noisy", required=True, type=Path, help="noisy (shallow) coverage bigWig: method 'noisy'")
    g.add_argument(
        "--denoised-prefix",
        type=Path,
        help="model outputs P.track.bw, P.peakprob.bw, P.peaks.narrowPeak: method 'model'",
    )
    g.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="NAME=PEAKS,PVAL",
        help="a peak-caller baseline: its narrowPeak and its per-base -log10 p bigWig (repeatable), "
        "e.g. macs3_callpeak=x.callpeak.narrowPeak,x.callpeak.pval.bw",
    )
    g.add_argument("--sizes", required=True, type=Path, help="chromosome sizes of the genome")
    g.add_argument(
        "--regions", required=True, nargs="+", help="holdout regions: 'chr10' or 'chr10:0-5000000' (0-based)"
    )
    g.add_argument("--blacklist", type=Path, help="BED(.gz) of bases to exclude from every metric")
    s = p.add_argument_group("settings")
    s.add_argument(
        "--depth-scale",
        type=float,
        help="factor applied to the noisy track for mse_scaled (default: total clean / total noisy signal over the regions)",
    )
    s.add_argument(
        "--fixed-threshold",
        type=float,
        default=0.5,
        help="peak-probability cut of the comparison method model_t<cut> (default 0.5)",
    )
    s.add_argument("--window-bp", type=int, default=4_000_000, help="bases read at a time (memory bound)")
    s.add_argument("--pr-points", type=int, default=1000, help="points kept per PR curve in --pr-curves")
    m = p.add_argument_group("labels of the output rows")
    m.add_argument("--model", required=True, help="model name (column 'model')")
    m.add_argument("--sample", required=True, help="sample name")
    m.add_argument("--depth", required=True, help="depth label (number of fragments, 'given' or 'full')")
    m.add_argument("--rep", required=True, help="replicate label")
    o = p.add_argument_group("outputs")
    o.add_argument("--out", required=True, type=Path, help="metrics TSV (long format)")
    o.add_argument(
        "--pr-curves", type=Path, help="NPZ of thinned PR curves and binary-call points, for 'atacdenoise plots pr'"
    )


# --------------------------------------------------------------------------- inputs


class BigWigSource:
    """A bigWig read window by window (missing data and NaN read as 0)."""

    def __init__(self, path: Path, sizes: dict[str, int], chroms: list[str]):
        self.path = Path(path)
        self.bw = open_bigwig(self.path)
        found = self.bw.chroms()
        for chrom in chroms:
            if chrom not in found:
                raise InputError(
                    f"{self.path}: chromosome {chrom} of the evaluated regions is not in this bigWig "
                    f"(it has {', '.join(list(found)[:5])}); use a bigWig made over the whole genome"
                )
            if found[chrom] != sizes[chrom]:
                raise InputError(
                    f"{self.path}: {chrom} is {found[chrom]:,} bp here but {sizes[chrom]:,} bp in the sizes file; "
                    "the bigWig was made on another assembly"
                )

    def read(self, chrom: str, start: int, end: int) -> np.ndarray:
        """float32[end - start]."""
        values = self.bw.values(chrom, start, end, fill=0.0)
        return np.nan_to_num(values, copy=False, nan=0.0, posinf=0.0, neginf=0.0)

    def close(self) -> None:
        self.bw.close()


@dataclass
class Baseline:
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


def _need(path: Path, what: str) -> Path:
    if not Path(path).exists():
        raise InputError(f"{path}: {what} not found")
    return Path(path)


# --------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    sizes = read_chrom_sizes(args.sizes)
    regions = merge_regions([parse_region(r, sizes) for r in args.regions], list(sizes))
    chroms = list(dict.fromkeys(r.chrom for r in regions))
    if args.window_bp < 1:
        raise InputError(f"--window-bp {args.window_bp}: expected a positive number of bases")
    baselines = [parse_baseline(b) for b in args.baseline]
    if len({b.name for b in baselines}) != len(baselines):
        raise InputError(f"--baseline: names {[b.name for b in baselines]} must be unique")

    clean_peaks = intervals_by_chrom(read_narrowpeak(_need(args.labels, "clean peak file"), sizes))
    blacklist = intervals_by_chrom(read_bed(_need(args.blacklist, "blacklist"), sizes) if args.blacklist else None)
    sources = {"clean": BigWigSource(_need(args.clean, "clean bigWig"), sizes, chroms)}
    sources["noisy"] = BigWigSource(_need(args.noisy, "noisy bigWig"), sizes, chroms)
    if not 0.0 < args.fixed_threshold < 1.0:
        raise InputError(f"--fixed-threshold {args.fixed_threshold}: expected a probability between 0 and 1")
    methods = [Method("noisy", track=True, scores=True)]
    called: dict[str, dict] = {}
    for b in baselines:
        sources[f"{b.name}.pval"] = BigWigSource(_need(b.pval, f"-log10 p bigWig of {b.name}"), sizes, chroms)
        called[b.name] = intervals_by_chrom(read_narrowpeak(_need(b.peaks, f"peaks of {b.name}"), sizes))
        methods.append(Method(b.name, scores=True, calls=True))
    if args.denoised_prefix is not None:
        prefix = str(args.denoised_prefix)
        sources["model.track"] = BigWigSource(_need(Path(prefix + ".track.bw"), "denoised track"), sizes, chroms)
        sources["model.prob"] = BigWigSource(
            _need(Path(prefix + ".peakprob.bw"), "peak probability bigWig"), sizes, chroms
        )
        called["model"] = intervals_by_chrom(
            read_narrowpeak(_need(Path(prefix + ".peaks.narrowPeak"), "denoised peaks"), sizes)
        )
        methods.append(Method("model", track=True, scores=True, calls=True))
        fixed = f"model_t{args.fixed_threshold:g}"
        called[fixed] = calls_at(
            sources["model.prob"], sources["model.track"], regions, args.fixed_threshold, args.window_bp
        )
        methods.append(Method(fixed, calls=True))

    bench = Benchmark(methods)
    windows = region_windows(regions, args.window_bp)
    log.info(
        "evaluating %s on %d bp in %d window(s)", [m.name for m in methods], sum(len(r) for r in regions), len(windows)
    )
    try:
        for w in progress(windows, total=len(windows), desc="metrics", unit="window"):
            bench.add(**_window(w, sources, clean_peaks, blacklist, called, with_scores=True))
        for w in progress(windows, total=len(windows), desc="ranks", unit="window"):
            arrays = _window(w, sources, clean_peaks, blacklist, called, with_scores=False)
            bench.add_ranks(arrays["clean"], arrays["labels"], arrays["tracks"])
    finally:
        for s in sources.values():
            s.close()

    if bench.n_bases == 0:
        log.warning("no base left to evaluate: the regions %s are entirely blacklisted", [str(r) for r in regions])
    scale = args.depth_scale if args.depth_scale is not None else bench.depth_scale("noisy")
    log.info(
        "depth scale of the noisy track for mse_scaled: %.6g (%s)",
        scale,
        "given" if args.depth_scale is not None else "clean/noisy totals",
    )
    table = bench.results({"noisy": {"mse_scaled": scale}})
    evaluated = evaluated_intervals(regions, blacklist)
    extra = [
        (name, metric, "all", v)
        for name, peaks in called.items()
        for metric, v in peak_level(clean_peaks, peaks, evaluated, name)
    ]
    table = pd.concat([table, pd.DataFrame(extra, columns=table.columns)], ignore_index=True)
    table = _order(table, [m.name for m in methods])
    for col, value in (("model", args.model), ("sample", args.sample), ("depth", args.depth), ("rep", args.rep)):
        table.insert(COLUMNS.index(col), col, str(value))
    write_metrics(table, args.out)
    log.info(
        "wrote %d metrics to %s (%d evaluated bases, %.3g%% in clean peaks)",
        len(table),
        args.out,
        bench.n_bases,
        100 * bench.n_positive / max(bench.n_bases, 1),
    )
    if args.pr_curves:
        curves = bench.pr_curves(args.pr_points)
        meta = {k: np.array(str(getattr(args, k))) for k in ("model", "sample", "depth", "rep")}
        meta["methods"] = np.array([m.name for m in methods if m.scores])
        with atomic_output(args.pr_curves) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **curves, **meta)
        log.info("wrote PR curves to %s", args.pr_curves)
    return 0


def calls_at(prob: BigWigSource, track: BigWigSource, regions: list[Region], threshold: float, window_bp: int) -> dict:
    """Peaks called on ``prob`` >= ``threshold`` over each region (read in ``window_bp`` chunks), by chromosome.

    The same caller as ``atacdenoise infer`` (min length, gap merging), run on the evaluated regions only,
    so a peak crossing a region's edge is cut there: those bases are outside the evaluation anyway.
    """
    from atacdenoise.peaks.threshold import MAX_GAP, MIN_LENGTH, PeakStream

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
    return out


_METRIC_ORDER = [
    "pearson",
    "spearman",
    "mse",
    "mse_scaled",
    "auroc",
    "auprc",
    "precision",
    "recall",
    "f1",
    "specificity",
    "jaccard",
    "peak_recall",
    "peak_precision",
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
    """Write a long-format metrics table atomically (NaN written as 'NaN')."""
    with atomic_output(path) as tmp:
        table[COLUMNS].to_csv(tmp, sep="\t", index=False, na_rep="NaN", float_format="%.10g")


def read_metrics(path: Path) -> pd.DataFrame:
    """Read a long-format metrics TSV (labels kept as strings), checking its columns."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: metrics table not found")
    df = pd.read_csv(
        path, sep="\t", dtype={c: str for c in COLUMNS[:-1]}, keep_default_na=False, na_values=["NaN", "nan", ""]
    )
    if list(df.columns) != COLUMNS:
        raise InputError(
            f"{path}: columns {list(df.columns)}; expected {COLUMNS} (a file written by 'atacdenoise metrics')"
        )
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df
