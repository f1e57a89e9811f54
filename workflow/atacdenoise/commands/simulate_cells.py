"""Simulate a single-cell fragments file from a real bulk ATAC-seq BAM (a test fixture).

Every cut site of the output is a real cut site of the bulk library (read
filters and Tn5 shift as in ``coverage``). Neighbouring cut sites are paired
into fragments (at most --max-fragment bp apart; lengths are therefore not
realistic, and nothing downstream uses them), fragments are given to --cells
cells with log-normal depths (--sdlog), no cell holding the same fragment
twice, and the cells are split at random into --cell-types of equal size.
All types share one bulk profile: same biology, disjoint sets of cells.
Writes a bgzipped, tabix-indexed 10x-style fragments file (count 1 per line)
and a barcode -> cell-type table with a header. Seeded and deterministic.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.bam import MIN_MAPQ
from atacdenoise.io.genome import DEFAULT_EXCLUDE, read_chrom_sizes, select_chroms
from atacdenoise.reads.coverage import bam_cut_sites_by_chrom
from atacdenoise.reads.simcells import simulate_fragments

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise simulate-cells``."""
    parser.add_argument("--bam", required=True, type=Path, help="bulk ATAC-seq BAM (indexed, coordinate-sorted)")
    parser.add_argument("--sizes", required=True, type=Path, help="chromosome sizes file (chrom<TAB>length)")
    parser.add_argument("--cells", required=True, type=int, help="number of cells")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random draw")
    parser.add_argument(
        "--out-fragments", required=True, type=Path, help="output fragments .tsv.gz (bgzipped; .tbi beside it)"
    )
    parser.add_argument(
        "--out-barcodes", required=True, type=Path, help="output barcode -> cell type table (TSV with header)"
    )
    parser.add_argument(
        "--cell-types", nargs="+", default=["A"], help="names of the cell types the cells are split into"
    )
    parser.add_argument("--sdlog", type=float, default=0.5, help="standard deviation of log cell depth (log-normal)")
    parser.add_argument(
        "--max-fragment", type=int, default=1000, help="largest distance (bp) between a fragment's two cut sites"
    )
    parser.add_argument("--chroms", nargs="+", default=None, help="only these chromosomes (None: all in --sizes)")
    parser.add_argument("--exclude", default=DEFAULT_EXCLUDE, help="regex of chromosomes to leave out ('' keeps all)")
    parser.add_argument("--min-mapq", type=int, default=MIN_MAPQ, help="minimum MAPQ of a read")
    parser.add_argument("--threads", type=int, default=1, help="htslib decompression threads")


def _check_args(args: argparse.Namespace) -> None:
    if args.cells < 1:
        raise InputError(f"--cells {args.cells}: expected at least 1 cell")
    if len(set(args.cell_types)) != len(args.cell_types):
        raise InputError(f"--cell-types {' '.join(args.cell_types)}: names must be distinct")
    if args.cells < len(args.cell_types):
        raise InputError(f"--cells {args.cells}: fewer cells than cell types ({len(args.cell_types)})")
    if any(not t or "\t" in t for t in args.cell_types):
        raise InputError("--cell-types: names must be non-empty and contain no tab")
    if args.sdlog < 0:
        raise InputError(f"--sdlog {args.sdlog}: expected >= 0")
    if args.max_fragment < 0:
        raise InputError(f"--max-fragment {args.max_fragment}: expected >= 0")
    if not str(args.out_fragments).endswith(".gz"):
        raise InputError(f"--out-fragments {args.out_fragments}: written bgzipped; give a name ending in .gz")


def run(args: argparse.Namespace) -> int:
    """Simulate the fixture from the bulk BAM's cut sites."""
    _check_args(args)
    check_writable(args.out_fragments)
    check_writable(args.out_barcodes)
    sizes = select_chroms(read_chrom_sizes(args.sizes), include=args.chroms, exclude_regex=args.exclude or None)
    positions, _ = bam_cut_sites_by_chrom(args.bam, sizes, min_mapq=args.min_mapq, threads=args.threads)
    simulate_fragments(
        positions,
        args.out_fragments,
        args.out_barcodes,
        n_cells=args.cells,
        cell_types=list(args.cell_types),
        sdlog=args.sdlog,
        max_fragment=args.max_fragment,
        seed=args.seed,
        source=args.bam,
    )
    return 0
