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

import numpy as np

from atacdenoise.atomic import atomic_output
from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.fragments import CHUNK_ROWS, iter_fragments, write_fragments
from atacdenoise.reads.cells import (
    BARCODE_COL,
    PseudobulkStats,
    barcodes_of_type,
    check_pseudobulk,
    pseudobulk_chunks,
    read_barcode_table,
    select_barcodes,
)

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
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


def _header(args: argparse.Namespace, n_chosen: int, n_type: int) -> str:
    how = f"{n_chosen} of {n_type} cells, seed {args.seed}" if args.n_cells is not None else f"all {n_type} cells"
    return (
        f"# atacdenoise cells: cell type {args.cell_type}, {how}, from {args.fragments.name} and {args.barcodes.name}\n"
    )


def write_barcode_list(path: Path, barcodes: np.ndarray) -> None:
    """One barcode per line, atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text("".join(f"{b}\n" for b in barcodes))


def run(args: argparse.Namespace) -> int:
    if not str(args.out).endswith(".gz"):
        raise InputError(
            f"--out {args.out}: the pseudobulk is written bgzipped; give a name ending in .gz (e.g. X.tsv.gz)"
        )
    for out in (args.out, args.out_barcodes):
        if out is not None:
            check_writable(out)
    table = read_barcode_table(args.barcodes)
    of_type = barcodes_of_type(table, args.cell_type, args.barcodes)
    chosen = select_barcodes(of_type, args.n_cells, args.seed, args.cell_type, args.barcodes)
    log.info(
        "%s: %s cells in %s types; cell type %r has %s; using %s",
        args.barcodes,
        f"{len(table):,}",
        table["cell_type"].nunique(),
        args.cell_type,
        f"{of_type.size:,}",
        f"{chosen.size:,} drawn with seed {args.seed}" if args.n_cells is not None else "all of them",
    )
    stats = PseudobulkStats(selected=chosen)

    def chunks():
        yield from pseudobulk_chunks(
            iter_fragments(args.fragments, args.chunk_rows, barcodes=True), chosen, table[BARCODE_COL].to_numpy(), stats
        )
        # checked before write_fragments puts the file in place, so a bad table leaves no output
        check_pseudobulk(stats, args.fragments, args.barcodes, args.cell_type, args.allow_missing)

    written = write_fragments(
        chunks(), args.out, header=_header(args, chosen.size, of_type.size), source=args.fragments
    )
    log.info("%s: %s", args.fragments, stats.summary())
    if args.out_barcodes is not None:
        write_barcode_list(args.out_barcodes, chosen)
    log.info(
        "wrote %s fragments of %s cells of type %r to %s", f"{written:,}", f"{chosen.size:,}", args.cell_type, args.out
    )
    return 0
