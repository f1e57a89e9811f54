"""Pseudobulk fragments of one cell type: all its cells, or N cells drawn with a seed.

Reads a 10x-style fragments file (chrom, start, end, barcode, count; plain,
gzip or bgzip; ``start`` and ``end - 1`` are the already Tn5-shifted cut
sites) and a barcode -> cell-type table (TSV: ``barcode<TAB>cell_type``, or a
header naming ``barcode`` and ``cell_type`` columns). Writes the fragments of
the chosen cells, in file order, bgzipped and tabix-indexed (``OUT.tbi``), and
optionally the chosen barcodes (one per line, sorted).

Draws are exact (exactly N distinct cells) and nested: with one seed the
cells of a smaller N are a subset of those of a larger N. Asking for more
cells than the type has, a cell type absent from the table, a malformed table
or fragments line, and chosen cells without any fragment (a barcode spelling
mismatch) are errors that give the numbers.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.fragments import CHUNK_ROWS
from atacdenoise.reads.cells import write_pseudobulk

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise cells``."""
    parser.add_argument(
        "--fragments", required=True, type=Path, help="fragments file (chrom, start, end, barcode, count)"
    )
    parser.add_argument("--barcodes", required=True, type=Path, help="barcode -> cell type table (TSV)")
    parser.add_argument("--cell-type", required=True, help="cell type whose cells make the pseudobulk")
    parser.add_argument("--n-cells", type=int, default=None, help="draw this many cells (None: all cells of the type)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the cell draw (ignored without --n-cells)")
    parser.add_argument(
        "--out", required=True, type=Path, help="output fragments .tsv.gz (bgzipped; OUT.tbi beside it)"
    )
    parser.add_argument(
        "--out-barcodes",
        type=Path,
        default=None,
        help="also write the chosen barcodes here, one per line (None: do not)",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="warn instead of failing when some chosen cells have no fragment (never when none has)",
    )
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Write the pseudobulk of one cell type."""
    if not str(args.out).endswith(".gz"):
        raise InputError(
            f"--out {args.out}: the pseudobulk is written bgzipped; give a name ending in .gz (e.g. X.tsv.gz)"
        )
    for out in (args.out, args.out_barcodes):
        if out is not None:
            check_writable(out)
    write_pseudobulk(
        args.fragments,
        args.barcodes,
        args.cell_type,
        args.out,
        out_barcodes=args.out_barcodes,
        n_cells=args.n_cells,
        seed=args.seed,
        allow_missing=args.allow_missing,
        chunk_rows=args.chunk_rows,
    )
    return 0
