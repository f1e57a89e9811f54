"""Tn5 cut-site coverage bigWig from a BAM or a fragments file (or adopt a given bigWig).

Each cut site (``+`` read: start + 4; ``-`` read: end - 1 - 5; fragments file:
start and end - 1) is widened to a centred box of ``smooth_bp + 1`` bases and
the boxes are summed: integer counts per base, no normalisation unless
``--cpm``. Reads are filtered (MAPQ, duplicates, secondary, supplementary,
QC-fail, unmapped, improper pairs) and only chromosomes of the sizes file are
used (chrM and unplaced contigs excluded by default). The bigWig's header lists
every chromosome of the sizes file; excluded ones carry no data. A JSON
sidecar ``OUT.json`` records the settings and the cut sites per chromosome.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.genome import DEFAULT_EXCLUDE, read_chrom_sizes, select_chroms
from atacdenoise.io.regions import read_target_regions, restrict_sizes
from atacdenoise.reads import cutsites as cs
from atacdenoise.reads.coverage import adopt_bigwig, make_coverage

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise coverage``."""
    parser.add_argument(
        "--input", required=True, type=Path, help="BAM (indexed, coordinate-sorted), fragments file, or bigWig"
    )
    parser.add_argument("--kind", required=True, choices=["bam", "fragments", "bigwig"], help="input type")
    parser.add_argument("--sizes", required=True, type=Path, help="chromosome sizes file (chrom<TAB>length)")
    parser.add_argument("--out", required=True, type=Path, help="output bigWig (OUT.json sidecar written beside it)")
    parser.add_argument("--chroms", nargs="+", default=None, help="only these chromosomes (default: all in --sizes)")
    parser.add_argument("--exclude", default=DEFAULT_EXCLUDE, help="regex of chromosomes to leave out ('' keeps all)")
    parser.add_argument(
        "--smooth-bp", type=int, default=cs.SMOOTH_BP, help="each cut site covers smooth_bp + 1 bases, centred"
    )
    parser.add_argument("--shift-plus", type=int, default=cs.SHIFT_PLUS, help="shift of + strand 5' ends (bp)")
    parser.add_argument("--shift-minus", type=int, default=cs.SHIFT_MINUS, help="shift of - strand 5' ends (bp)")
    parser.add_argument("--min-mapq", type=int, default=cs.MIN_MAPQ, help="minimum MAPQ of a read (BAM)")
    parser.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="keep reads flagged as duplicates (BAM); weight fragments by their count column (fragments file)",
    )
    parser.add_argument("--cpm", action="store_true", help="scale to counts per million cut sites")
    parser.add_argument(
        "--target-regions", type=Path, default=None, help="BED: keep only the cut sites inside these regions"
    )
    parser.add_argument("--threads", type=int, default=1, help="htslib decompression threads")


def _check_args(args: argparse.Namespace) -> None:
    if args.smooth_bp < 0:
        raise InputError(f"--smooth-bp {args.smooth_bp}: expected >= 0")
    if args.min_mapq < 0:
        raise InputError(f"--min-mapq {args.min_mapq}: expected >= 0")


def run(args: argparse.Namespace) -> int:
    """Make (or adopt) the coverage bigWig and its sidecar."""
    _check_args(args)
    check_writable(args.out)
    header = read_chrom_sizes(args.sizes)
    sizes = select_chroms(header, include=args.chroms, exclude_regex=args.exclude or None)
    target = read_target_regions(args.target_regions, sizes)
    sizes = restrict_sizes(sizes, target)
    settings = {
        "smooth_bp": args.smooth_bp,
        "shift_plus": args.shift_plus,
        "shift_minus": args.shift_minus,
        "min_mapq": args.min_mapq,
        "keep_duplicates": bool(args.keep_duplicates),
        "cpm": bool(args.cpm),
    }
    if args.kind == "bigwig":
        adopt_bigwig(args.input, args.out, sizes, settings)
        log.info(
            "%s: bigWig checked against %d chromosome(s) and copied to %s (settings as declared)",
            args.input,
            len(sizes),
            args.out,
        )
        return 0
    meta = make_coverage(args.input, args.kind, args.out, header, sizes, settings, threads=args.threads, target=target)
    n_cut = sum(meta["n_cut_sites"].values())
    log.info("%s: %s cut sites on %d chromosome(s) -> %s", args.input, f"{n_cut:,}", len(sizes), args.out)
    return 0
