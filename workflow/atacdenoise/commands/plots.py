"""Figures for the report: ``atacdenoise plots {pr,reliability,depth,tracks,heatmap} ...``.

- ``pr``: precision-recall curves per method from the ``--pr-curves`` NPZ files
  of ``atacdenoise metrics`` (one panel per sample and depth).
- ``reliability``: reliability diagram of the model's peak probability (binned
  mean prediction vs fraction of bases in clean peaks, with the bases per bin
  and the ECE) from the same NPZ files.
- ``depth``: metrics vs input depth from a metrics.tsv (and optionally the
  effective-depth table of ``atacdenoise summary``).
- ``tracks``: noisy / denoised / clean coverage and peak calls at the loci where
  the model gains and loses most against the depth-scaled noisy track.
- ``heatmap``: deepTools ``computeMatrix reference-point`` + ``plotHeatmap`` of
  noisy, denoised and clean coverage around the clean-peak summits.

The output format follows the suffix of ``--out`` (.png or .svg).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from atacdenoise.errors import InputError, require_file
from atacdenoise.evaluate.benchmark import read_metrics, read_pr_curves
from atacdenoise.evaluate.heatmap import summit_heatmap
from atacdenoise.evaluate.plots import (
    depth_label,
    plot_metric_vs_depth,
    plot_pr_curves,
    plot_reliability,
    plot_track_snapshots,
)
from atacdenoise.evaluate.snapshots import snapshot_loci
from atacdenoise.io.genome import read_chrom_sizes
from atacdenoise.io.regions import regions_in_target

log = logging.getLogger(__name__)

KINDS = {
    "pr": "precision-recall curves per method from the NPZ files of 'atacdenoise metrics --pr-curves'",
    "reliability": "reliability diagram of the peak probability from the NPZ files of 'atacdenoise metrics'",
    "depth": "metrics vs input depth from a metrics.tsv",
    "tracks": "coverage snapshots (noisy, denoised, clean, peak calls) at the loci of largest gain and loss",
    "heatmap": "deepTools heatmap of noisy, denoised and clean coverage around clean-peak summits",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise plots``."""
    sub = p.add_subparsers(dest="kind", metavar="<kind>", required=True)
    for kind, text in KINDS.items():
        k = sub.add_parser(kind, help=text, description=text, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        # -v/-q also after the kind; SUPPRESS keeps the values given before it
        k.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more detail (debug)")
        k.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="warnings and errors only")
        k.add_argument("--out", required=True, type=Path, help="figure to write (.png or .svg)")
        k.add_argument("--title", default="", help="figure title (default: says what is shown)")
        globals()[f"_add_{kind}"](k)


def _add_pr(k: argparse.ArgumentParser) -> None:
    k.add_argument(
        "--curves", required=True, nargs="+", type=Path, help="NPZ files from 'atacdenoise metrics --pr-curves'"
    )


def _add_reliability(k: argparse.ArgumentParser) -> None:
    _add_pr(k)


def _add_depth(k: argparse.ArgumentParser) -> None:
    k.add_argument(
        "--metrics",
        required=True,
        type=Path,
        help="metrics.tsv (long format); the one of 'atacdenoise summary', with two or more cell types, "
        "draws one line per cell type, seen (trained on) solid and unseen dashed",
    )
    k.add_argument(
        "--effective-depth", type=Path, help="effective-depth TSV from 'atacdenoise summary' (annotates the panels)"
    )
    k.add_argument(
        "--metric-names",
        nargs="+",
        default=["pearson", "spearman", "auprc", "auroc", "f1", "peak_recall"],
        help="metrics to draw",
    )
    k.add_argument(
        "--region", default="all", choices=["all", "peaks", "nonpeaks"], help="bases the metrics were computed on"
    )
    k.add_argument(
        "--blacklist-masked", action="store_true", help="the metrics were computed with a blacklist (said in the title)"
    )


def _add_inputs(k: argparse.ArgumentParser) -> None:
    k.add_argument("--clean", required=True, type=Path, help="clean coverage bigWig")
    k.add_argument("--noisy", required=True, type=Path, help="noisy coverage bigWig")
    k.add_argument("--denoised-prefix", required=True, type=Path, help="model outputs P.track.bw, P.peaks.narrowPeak")
    k.add_argument("--labels", required=True, type=Path, help="clean peaks (narrowPeak)")
    k.add_argument("--sizes", required=True, type=Path, help="chromosome sizes")
    k.add_argument("--regions", required=True, nargs="+", help="regions to draw from: 'chr10' or 'chr10:0-5000000'")
    k.add_argument("--blacklist", type=Path, help="BED(.gz) of bases to avoid")
    k.add_argument("--target-regions", type=Path, default=None, help="BED: draw only from the parts of --regions in it")
    k.add_argument("--sample", default="", help="sample name for the default title")
    k.add_argument("--depth", default="", help="depth label for the default title (number of fragments, 'given')")


def _add_tracks(k: argparse.ArgumentParser) -> None:
    _add_inputs(k)
    k.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="NAME=PEAKS[,PVAL]",
        help="peak calls to draw too (repeatable; a PVAL bigWig is accepted and ignored)",
    )
    k.add_argument("--n-loci", type=int, default=4, help="loci to show: half of largest gain, half of largest loss")
    k.add_argument("--width", type=int, default=20_000, help="width of each locus (bp)")
    k.add_argument(
        "--depth-scale", type=float, help="noisy x scale is compared with the model (default: clean/noisy totals)"
    )
    k.add_argument("--window-bp", type=int, default=4_000_000, help="bases read at a time while scanning")


def _add_heatmap(k: argparse.ArgumentParser) -> None:
    _add_inputs(k)
    k.add_argument("--flank", type=int, default=2000, help="bp shown on each side of a summit")
    k.add_argument("--bin-size", type=int, default=20, help="bp per heatmap column")
    k.add_argument("--max-summits", type=int, default=10_000, help="strongest summits kept (by p-value column)")
    k.add_argument("--matrix", type=Path, help="also keep deepTools' matrix (.gz)")
    k.add_argument("--threads", type=int, default=1, help="computeMatrix processes")


def run(args: argparse.Namespace) -> int:
    """Draw the figure of the chosen kind."""
    return globals()[f"_run_{args.kind}"](args)


def _what(args: argparse.Namespace) -> str:
    """Return 'HSC, 30,000 fragments: ' from --sample/--depth, or ''."""
    parts = [p for p in (args.sample, depth_label(args.depth) if args.depth else "") if p]
    return ", ".join(parts) + ": " if parts else ""


def _run_pr(args: argparse.Namespace) -> int:
    plot_pr_curves(read_pr_curves(args.curves), args.out, args.title)
    return 0


def _run_reliability(args: argparse.Namespace) -> int:
    curves = read_pr_curves(args.curves)
    if not any(k.startswith("calib_count__") for c in curves for k in c):
        raise InputError(
            f"{', '.join(map(str, args.curves))}: no calibration bins (no model peak probability was scored, "
            "or the files predate them): re-run 'atacdenoise metrics' with --denoised-prefix"
        )
    plot_reliability(curves, args.out, args.title)
    return 0


def _run_depth(args: argparse.Namespace) -> int:
    metrics = read_metrics(args.metrics)
    effective = None
    if args.effective_depth:
        effective = pd.read_csv(
            require_file(args.effective_depth, "effective-depth table"), sep="\t", dtype={"depth": str}
        )
    plot_metric_vs_depth(
        metrics, args.out, args.metric_names, args.region, effective, args.title, args.blacklist_masked
    )
    return 0


def _run_tracks(args: argparse.Namespace) -> int:
    baselines = {}
    for text in args.baseline:
        name, sep, files = text.partition("=")
        if not sep or not files:
            raise InputError(f"--baseline {text!r}: expected NAME=PEAKS[,PVAL]")
        baselines[name] = Path(files.split(",")[0])
    loci, scale = snapshot_loci(
        args.clean,
        args.noisy,
        args.denoised_prefix,
        args.labels,
        read_chrom_sizes(args.sizes),
        regions_in_target(args.regions, args.target_regions, read_chrom_sizes(args.sizes), "the holdout regions"),
        blacklist=args.blacklist,
        baselines=baselines,
        n_loci=args.n_loci,
        width=args.width,
        depth_scale=args.depth_scale,
        window_bp=args.window_bp,
    )
    text = f"{_what(args)}coverage at the loci where the model gains and loses most (vs noisy x {scale:.3g})"
    plot_track_snapshots(loci, args.out, args.title or text[:1].upper() + text[1:])
    return 0


def _run_heatmap(args: argparse.Namespace) -> int:
    n = summit_heatmap(
        args.clean,
        args.noisy,
        args.denoised_prefix,
        args.labels,
        read_chrom_sizes(args.sizes),
        regions_in_target(args.regions, args.target_regions, read_chrom_sizes(args.sizes), "the holdout regions"),
        args.out,
        blacklist=args.blacklist,
        flank=args.flank,
        bin_size=args.bin_size,
        max_summits=args.max_summits,
        threads=args.threads,
        what=_what(args),
        title=args.title,
        matrix_out=args.matrix,
    )
    log.info("wrote %s (%d summits)", args.out, n)
    return 0
