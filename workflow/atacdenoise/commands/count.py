"""Count the usable fragments of a BAM once, for all its subsamples (``atacdenoise subsample --counts``).

Usable fragments are those ``subsample`` counts (proper pairs whose first read
passes the coverage filters, and single-end reads) on the genome's
chromosomes. The JSON records the counts per kind and what they depend on
(the file's path, size and modification time, the chromosomes, the MAPQ
filter); ``subsample`` reuses them only when all of these still match.
Counting takes one htslib pass over the BAM per kind, as long as the
subsampling itself, so the workflow counts each input once instead of once per
depth and replicate.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.checks import check_writable
from atacdenoise.commands.subsample import _chroms
from atacdenoise.errors import InputError
from atacdenoise.io.bam import bam_chrom_sizes, check_bam, count_usable_by_kind, open_bam
from atacdenoise.reads import cutsites as cs
from atacdenoise.reads.subsample import counts_record, write_json

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, type=Path, help="indexed coordinate-sorted BAM")
    parser.add_argument("--out", required=True, type=Path, help="counts (.json)")
    parser.add_argument(
        "--sizes", type=Path, default=None, help="genome sizes: count fragments on its chromosomes only"
    )
    parser.add_argument("--min-mapq", type=int, default=cs.MIN_MAPQ, help="MAPQ filter of usable fragments")
    parser.add_argument("--threads", type=int, default=1, help="htslib threads")


def run(args: argparse.Namespace) -> int:
    if not args.input.exists():
        raise InputError(f"{args.input}: input file not found")
    check_writable(args.out)
    bam = open_bam(args.input, threads=args.threads)
    try:
        info = check_bam(bam, _chroms(args, bam_chrom_sizes(bam)), args.input)
    finally:
        bam.close()
    counts = count_usable_by_kind(args.input, info.chroms, args.min_mapq, threads=args.threads)
    write_json(args.out, counts_record(args.input, info.chroms, args.min_mapq, counts))
    log.info(
        "%s: %s proper pairs and %s single-end reads usable (MAPQ >= %d) on %d chromosome(s) -> %s",
        args.input,
        f"{counts['paired_end']:,}",
        f"{counts['single_end']:,}",
        args.min_mapq,
        len(info.chroms),
        args.out,
    )
    return 0
