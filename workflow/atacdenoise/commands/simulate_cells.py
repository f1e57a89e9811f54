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

import numpy as np
import pandas as pd

from atacdenoise.atomic import atomic_output
from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.bam import check_bam, open_bam
from atacdenoise.io.fragments import write_fragments
from atacdenoise.io.genome import DEFAULT_EXCLUDE, read_chrom_sizes, select_chroms
from atacdenoise.log import progress
from atacdenoise.reads import cutsites as cs
from atacdenoise.reads.simcells import cell_weights, make_barcodes, simulate_chrom, split_cell_types

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--min-mapq", type=int, default=cs.MIN_MAPQ, help="minimum MAPQ of a read")
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


def bulk_cut_sites(args: argparse.Namespace, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """Filtered, shifted cut sites per chromosome of the bulk BAM."""
    bam = open_bam(args.bam, threads=args.threads)
    try:
        info = check_bam(bam, sizes, args.bam)
        total = cs.FilterCounts()
        out = {}
        for chrom in progress(info.chroms, total=len(info.chroms), desc="cut sites", unit="chrom"):
            out[chrom], stats = cs.bam_cut_sites(bam, chrom, sizes[chrom], args.min_mapq, source=args.bam)
            total += stats
        log.info("%s: %s", args.bam, total.summary())
        if total.kept == 0:
            raise InputError(f"{args.bam}: no reads passed the filters on the selected chromosomes ({total.summary()})")
        return out
    finally:
        bam.close()


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    check_writable(args.out_fragments)
    check_writable(args.out_barcodes)
    sizes = select_chroms(read_chrom_sizes(args.sizes), include=args.chroms, exclude_regex=args.exclude or None)
    positions = bulk_cut_sites(args, sizes)
    rng = np.random.default_rng(args.seed)
    barcodes = make_barcodes(args.cells, rng)
    types = split_cell_types(args.cells, list(args.cell_types), rng)
    weights = cell_weights(args.cells, args.sdlog, rng)
    per_cell = np.zeros(args.cells, dtype=np.int64)
    totals = {"cut_sites": 0, "unpaired": 0, "fragments": 0}

    def chunks():
        for chrom, pos in positions.items():
            start, end, cell, unpaired = simulate_chrom(pos, weights, rng, args.max_fragment)
            totals["cut_sites"] += int(pos.size)
            totals["unpaired"] += unpaired
            totals["fragments"] += int(start.size)
            np.add.at(per_cell, cell, 1)
            yield pd.DataFrame({"chrom": chrom, "start": start, "end": end, "barcode": barcodes[cell], "count": 1})

    header = (
        f"# atacdenoise simulate-cells: {args.cells} cells ({', '.join(args.cell_types)}) from the cut sites of {args.bam.name}, "
        f"seed {args.seed}, sdlog {args.sdlog}, max fragment {args.max_fragment}; fragment lengths are not real\n"
    )
    write_fragments(chunks(), args.out_fragments, header=header, source=args.bam)
    with atomic_output(args.out_barcodes) as tmp:
        pd.DataFrame({"barcode": barcodes, "cell_type": types}).to_csv(tmp, sep="\t", index=False)
    counts = pd.Series(types).value_counts().sort_index()
    log.info(
        "%s cut sites -> %s fragments (%s cut sites left unpaired, %.2f%%) in %s cells (fragments per cell: median %s, "
        "5-95%% %s-%s); cell types %s -> %s, %s",
        f"{totals['cut_sites']:,}",
        f"{totals['fragments']:,}",
        f"{totals['unpaired']:,}",
        100 * totals["unpaired"] / max(totals["cut_sites"], 1),
        f"{args.cells:,}",
        f"{int(np.median(per_cell)):,}",
        f"{int(np.percentile(per_cell, 5)):,}",
        f"{int(np.percentile(per_cell, 95)):,}",
        ", ".join(f"{t} ({n:,})" for t, n in counts.items()),
        args.out_fragments,
        args.out_barcodes,
    )
    return 0
