"""Benchmark one denoised (sample, depth, rep) against its clean data: ``atacdenoise metrics``.

Writes the track's rows of ``metrics.tsv`` (long format ``model sample depth rep
method metric region value``) for the methods ``noisy``, each MACS3 baseline
(``--baseline NAME=PEAKS,PVAL``) and ``model`` (``--denoised-prefix``), on the
holdout regions with the blacklist (if any) masked. The metrics and their
definitions: :mod:`atacdenoise.evaluate.benchmark`. ``--pr-curves`` saves thinned
PR curves for ``atacdenoise plots pr``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.evaluate.benchmark import COLUMNS, benchmark_track, parse_baseline, write_metrics, write_pr_curves
from atacdenoise.io.genome import read_chrom_sizes
from atacdenoise.io.regions import regions_in_target

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise metrics``."""
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
    g.add_argument("--target-regions", type=Path, default=None, help="BED: score only the parts of --regions inside it")
    s = p.add_argument_group("settings")
    s.add_argument(
        "--depth-scale",
        type=float,
        help="factor applied to the noisy track for mse_scaled "
        "(default: total clean / total noisy signal over the regions)",
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


def run(args: argparse.Namespace) -> int:
    """Score one noisy track and write its metrics (and PR curves)."""
    labels = {"model": args.model, "sample": args.sample, "depth": args.depth, "rep": args.rep}
    table, curves, scored = benchmark_track(
        args.clean,
        args.labels,
        args.noisy,
        read_chrom_sizes(args.sizes),
        regions_in_target(args.regions, args.target_regions, read_chrom_sizes(args.sizes), "the holdout regions"),
        denoised_prefix=args.denoised_prefix,
        baselines=[parse_baseline(b) for b in args.baseline],
        blacklist=args.blacklist,
        depth_scale=args.depth_scale,
        fixed_threshold=args.fixed_threshold,
        window_bp=args.window_bp,
        pr_points=args.pr_points,
    )
    for col, value in labels.items():
        table.insert(COLUMNS.index(col), col, str(value))
    write_metrics(table, args.out)
    log.info("wrote %d metrics to %s", len(table), args.out)
    if args.pr_curves:
        write_pr_curves(args.pr_curves, curves, scored, {**labels, "blacklist": args.blacklist or ""})
        log.info("wrote PR curves to %s", args.pr_curves)
    return 0
