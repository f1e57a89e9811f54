"""MACS3 bdgcmp/bdgpeakcall peaks and -log10 p track from a coverage bigWig.

Per chromosome: the coverage is written as a bedGraph, ``macs3 bdgcmp -m
ppois`` scores each base against a flat λ (-log10 Poisson p of the count),
and ``macs3 bdgpeakcall -c CUTOFF -l MIN_LENGTH -g MAX_GAP`` calls the peaks
(AtacWorks' clean-label route). λ is the chromosome's mean coverage times
``--lambda-scale``, unless fixed with ``--lambda chr=value`` or a
``--lambda-table`` (the output of ``atacdenoise fit-lambda``). Writes the
narrowPeak (``signal``: maximum coverage in the peak; ``pval``: maximum -log10 p;
``score``: int(10 × that), as MACS3; ``summit``: MACS3's) and the per-base
-log10 p bigWig, both atomically.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import check_bigwig
from atacdenoise.io.genome import DEFAULT_EXCLUDE, read_chrom_sizes, select_chroms
from atacdenoise.io.regions import read_target_regions, restrict_sizes
from atacdenoise.peaks.bdgpeakcall import call_track_peaks, parse_lambdas

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise peaks``."""
    parser.add_argument("--track", required=True, type=Path, help="coverage bigWig (integer counts per base)")
    parser.add_argument("--sizes", required=True, type=Path, help="chromosome sizes file (chrom<TAB>length)")
    parser.add_argument("--out-peaks", required=True, type=Path, help="output narrowPeak")
    parser.add_argument("--out-pval", required=True, type=Path, help="output bigWig of the per-base -log10 p")
    parser.add_argument("--chroms", nargs="+", default=None, help="only these chromosomes (None: all in --sizes)")
    parser.add_argument("--exclude", default=DEFAULT_EXCLUDE, help="regex of chromosomes to leave out ('' keeps all)")
    parser.add_argument(
        "--lambda",
        dest="lambdas",
        nargs="+",
        default=[],
        metavar="CHR=VALUE",
        help="fixed flat lambda for these chromosomes (others: mean coverage x --lambda-scale)",
    )
    parser.add_argument(
        "--lambda-table", type=Path, default=None, help="TSV with columns chrom, lambda (fit-lambda output)"
    )
    parser.add_argument(
        "--lambda-scale", type=float, default=1.0, help="lambda = scale x the chromosome's mean coverage"
    )
    parser.add_argument("--cutoff", type=float, default=3.0, help="bdgpeakcall -c: minimum -log10 p of a peak base")
    parser.add_argument("--min-length", type=int, default=200, help="bdgpeakcall -l: minimum peak length (bp)")
    parser.add_argument("--max-gap", type=int, default=30, help="bdgpeakcall -g: merge peaks this close (bp)")
    parser.add_argument("--name", default=None, help="peak name prefix (None: the output file name)")
    parser.add_argument("--tmpdir", type=Path, default=None, help="scratch directory for bedGraphs (None: $TMPDIR)")
    parser.add_argument(
        "--target-regions", type=Path, default=None, help="BED: call only there, with lambda taken over these regions"
    )
    parser.add_argument("--threads", type=int, default=1, help="chromosomes run through MACS3 at once")


def _check_args(args: argparse.Namespace) -> None:
    if args.min_length < 1:
        raise InputError(f"--min-length {args.min_length}: expected >= 1")
    if args.max_gap < 0:
        raise InputError(f"--max-gap {args.max_gap}: expected >= 0")
    if not args.lambda_scale > 0:
        raise InputError(f"--lambda-scale {args.lambda_scale}: expected > 0")
    if args.threads < 1:
        raise InputError(f"--threads {args.threads}: expected >= 1")


def run(args: argparse.Namespace) -> int:
    """Call the bdgpeakcall route on a coverage bigWig."""
    _check_args(args)
    check_writable(args.out_peaks)
    check_writable(args.out_pval)
    header = read_chrom_sizes(args.sizes)
    sizes = select_chroms(header, include=args.chroms, exclude_regex=args.exclude or None)
    target = read_target_regions(args.target_regions, sizes)
    sizes = restrict_sizes(sizes, target)
    check_bigwig(args.track, sizes)
    fixed = parse_lambdas(args.lambdas, args.lambda_table, sizes)
    name = args.name or args.out_peaks.name.split(".narrowPeak")[0]
    peaks = call_track_peaks(
        args.track,
        header,
        sizes,
        args.out_peaks,
        args.out_pval,
        fixed=fixed,
        lambda_scale=args.lambda_scale,
        cutoff=args.cutoff,
        min_length=args.min_length,
        max_gap=args.max_gap,
        name=name,
        tmpdir=args.tmpdir,
        threads=args.threads,
        target=target,
    )
    log.info(
        "%s: %d peaks on %d chromosome(s) -> %s, %s", args.track, len(peaks), len(sizes), args.out_peaks, args.out_pval
    )
    return 0
