"""Count the usable fragments of a BAM once, for all its subsamples (``atacdenoise subsample --counts``).

Usable fragments are those ``subsample`` counts (proper pairs whose first read
passes the coverage filters, and single-end reads) on the genome's
chromosomes. The JSON records the counts per kind and what they depend on
(the file's path, size and modification time, the chromosomes, the MAPQ
filter); ``subsample`` reuses them only when all of these still match.
Counting takes one htslib pass over the BAM per kind (``samtools view -c``),
about as long as the subsampling itself, so the workflow counts each input
once instead of once per depth and replicate. The work is
:func:`atacdenoise.reads.subsample.count_bam`'s.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.bam import MIN_MAPQ
from atacdenoise.reads.subsample import count_bam

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the count command's options."""
    parser.add_argument("--input", required=True, type=Path, help="indexed coordinate-sorted BAM")
    parser.add_argument("--out", required=True, type=Path, help="counts (.json)")
    parser.add_argument(
        "--sizes", type=Path, default=None, help="genome sizes: count fragments on its chromosomes only"
    )
    parser.add_argument("--min-mapq", type=int, default=MIN_MAPQ, help="MAPQ filter of usable fragments")
    parser.add_argument("--threads", type=int, default=1, help="htslib threads")
    parser.add_argument(
        "--target-regions",
        type=Path,
        default=None,
        help="BED of target regions (needs --sizes): depths count only the fragments inside them",
    )


def run(args: argparse.Namespace) -> int:
    """Count the input's usable fragments per kind and write them as JSON."""
    if not args.input.exists():
        raise InputError(f"{args.input}: input file not found")
    check_writable(args.out)
    rec = count_bam(args.input, args.out, args.sizes, args.min_mapq, args.threads, args.target_regions)
    log.info(
        "%s: %s proper pairs and %s single-end reads usable (MAPQ >= %d) on %d chromosome(s) -> %s",
        args.input,
        f"{rec['paired_end']:,}",
        f"{rec['single_end']:,}",
        args.min_mapq,
        len(rec["chroms"]),
        args.out,
    )
    return 0
