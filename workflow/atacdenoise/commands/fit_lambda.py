"""Fit the flat per-chromosome λ that makes the bdgpeakcall route reproduce a published peak set.

Published label sets (AtacWorks' among them) took λ from whole chromosomes;
on a slice of one, or on another build of the track, the mean coverage gives
another λ and other peaks. With a flat λ the route calls exactly the runs where
the count reaches a threshold, so every threshold for λ between ``--span``
× the mean is tried in-process (no MACS3) and the base-level Jaccard with the
published peaks decides. Writes a TSV, one row per chromosome plus a row
``all`` (Jaccard over all chromosomes): chrom, length, mean, lambda,
lambda_low, lambda_high (any λ in (low, high] gives the same peaks), ratio
(λ / mean), min_count_mean, min_count_fit, jaccard_mean, jaccard_fit. Give it
to ``atacdenoise peaks --lambda-table`` and check the figures with the real route.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.atomic import atomic_output
from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import check_bigwig
from atacdenoise.io.genome import DEFAULT_EXCLUDE, read_chrom_sizes, select_chroms
from atacdenoise.io.intervals import read_bed
from atacdenoise.peaks.bdgpeakcall import lambda_fit_table

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise fit-lambda``."""
    parser.add_argument("--track", required=True, type=Path, help="coverage bigWig the peaks were called on")
    parser.add_argument("--peaks", required=True, type=Path, help="published peaks (BED or narrowPeak)")
    parser.add_argument("--sizes", required=True, type=Path, help="chromosome sizes file (chrom<TAB>length)")
    parser.add_argument("--out", required=True, type=Path, help="output TSV")
    parser.add_argument("--chroms", nargs="+", default=None, help="only these chromosomes (None: all in --sizes)")
    parser.add_argument("--exclude", default=DEFAULT_EXCLUDE, help="regex of chromosomes to leave out ('' keeps all)")
    parser.add_argument("--cutoff", type=float, default=3.0, help="bdgpeakcall -c of the route")
    parser.add_argument("--min-length", type=int, default=200, help="bdgpeakcall -l of the route")
    parser.add_argument("--max-gap", type=int, default=30, help="bdgpeakcall -g of the route")
    parser.add_argument(
        "--mode",
        choices=["chrom", "scale"],
        default="chrom",
        help="chrom: one lambda per chromosome; scale: one factor times every chromosome's mean",
    )
    parser.add_argument(
        "--span", nargs=2, type=float, default=[0.25, 4.0], metavar=("LOW", "HIGH"), help="lambda / mean searched"
    )


def run(args: argparse.Namespace) -> int:
    """Fit λ per chromosome and write the table."""
    if not 0 < args.span[0] < args.span[1]:
        raise InputError(f"--span {args.span[0]} {args.span[1]}: expected 0 < LOW < HIGH")
    header = read_chrom_sizes(args.sizes)
    sizes = select_chroms(header, include=args.chroms, exclude_regex=args.exclude or None)
    check_bigwig(args.track, sizes)
    published = read_bed(args.peaks, sizes)
    if published.empty:
        raise InputError(
            f"{args.peaks}: no peaks on the selected chromosomes ({', '.join(list(sizes)[:5])}); nothing to fit"
        )
    table = lambda_fit_table(
        args.track,
        published,
        sizes,
        args.cutoff,
        args.min_length,
        args.max_gap,
        args.mode,
        tuple(args.span),
        source=args.peaks,
    )
    with atomic_output(args.out) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g", na_rep="NA")
    return 0
