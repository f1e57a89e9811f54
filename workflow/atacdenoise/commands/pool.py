"""Pool several libraries (replicates, donors) of one cell state into one deep reference input.

BAMs are merged by ``samtools merge`` (and indexed); fragments files are merged
and sorted into one bgzipped, tabix-indexed file. The sidecar ``OUT.json``
lists the libraries and what each brought. The work is
:mod:`atacdenoise.reads.pool`'s.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.checks import check_writable
from atacdenoise.io.genome import DEFAULT_EXCLUDE, read_chrom_sizes, select_chroms
from atacdenoise.reads.pool import pool_inputs

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the pool command's options."""
    parser.add_argument("--inputs", required=True, nargs="+", type=Path, help="the libraries to pool (one kind)")
    parser.add_argument("--kind", required=True, choices=["bam", "fragments"], help="input type")
    parser.add_argument("--sizes", required=True, type=Path, help="genome sizes: fragments elsewhere are left out")
    parser.add_argument("--exclude", default=DEFAULT_EXCLUDE, help="regex of chromosomes to leave out ('' keeps all)")
    parser.add_argument("--out", required=True, type=Path, help="pooled .bam, or .tsv.gz for fragments")
    parser.add_argument("--threads", type=int, default=1, help="htslib threads (BAM)")


def run(args: argparse.Namespace) -> int:
    """Pool the inputs and write the pooled file, its index and ``OUT.json``."""
    check_writable(args.out)
    chroms = select_chroms(read_chrom_sizes(args.sizes), exclude_regex=args.exclude or None)
    meta = pool_inputs(args.inputs, args.kind, args.out, chroms, args.threads)
    log.info("pooled %d libraries (%s %s) -> %s", len(args.inputs), f"{meta['total']:,}", meta["unit"], args.out)
    return 0
