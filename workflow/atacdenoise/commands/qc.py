"""Input QC of one BAM, fragments file or bigWig: one row of numbers and its fragment-length histogram.

The row (``--out``): reads and fragments used, duplicate and low-MAPQ
fractions, FRiP against ``--peaks``, TSS enrichment around ``--tss``, cut
sites per Mb of each region of ``--regions`` (else of each chromosome) and a
summary of the fragment lengths; ``NA`` where the input cannot say (a bigWig
has no reads; a single-end BAM no fragment lengths) or an option is not given.
The histogram (``--out-fraglen``): ``length<TAB>count`` for 0..1000 bp, the
last line counting 1000 bp and longer; the header alone when the input has no
fragment lengths. Definitions: :mod:`atacdenoise.evaluate.qc`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.evaluate.qc import input_qc, write_qc
from atacdenoise.io.genome import DEFAULT_EXCLUDE, read_chrom_sizes, select_chroms
from atacdenoise.io.intervals import read_bed, read_narrowpeak
from atacdenoise.reads import cutsites as cs
from atacdenoise.reads.fraglen import MAX_FRAGMENTS, write_fraglen

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise qc``."""
    parser.add_argument(
        "--input", required=True, type=Path, help="BAM (indexed, coordinate-sorted), fragments file, or bigWig"
    )
    parser.add_argument("--kind", required=True, choices=["bam", "fragments", "bigwig"], help="input type")
    parser.add_argument("--sizes", required=True, type=Path, help="chromosome sizes file (chrom<TAB>length)")
    parser.add_argument("--chroms", nargs="+", default=None, help="only these chromosomes (default: all in --sizes)")
    parser.add_argument("--exclude", default=DEFAULT_EXCLUDE, help="regex of chromosomes to leave out ('' keeps all)")
    parser.add_argument(
        "--peaks", type=Path, help="peaks (narrowPeak or BED) for FRiP, e.g. the clean peaks; NA without"
    )
    parser.add_argument(
        "--target-regions", type=Path, help="BED of target regions: QC inside them only, cut sites per Mb per region"
    )
    parser.add_argument(
        "--tss", type=Path, help="BED of transcription start sites (strand in column 6) for TSS enrichment"
    )
    parser.add_argument("--min-mapq", type=int, default=cs.MIN_MAPQ, help="minimum MAPQ of a read (BAM)")
    parser.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="keep reads flagged as duplicates (BAM); weight fragments by their count column (fragments file)",
    )
    parser.add_argument(
        "--max-fragments", type=int, default=MAX_FRAGMENTS, help="fragments profiled for the length histogram"
    )
    parser.add_argument("--sample", required=True, help="sample name (a column of the row)")
    parser.add_argument("--depth", required=True, help="depth label (a column of the row)")
    parser.add_argument("--rep", required=True, help="replicate (a column of the row)")
    parser.add_argument("--out", required=True, type=Path, help="QC row (TSV: header and one line)")
    parser.add_argument("--out-fraglen", required=True, type=Path, help="fragment-length histogram (TSV)")
    parser.add_argument("--threads", type=int, default=1, help="htslib decompression threads")


def _check_args(args: argparse.Namespace) -> None:
    if args.min_mapq < 0:
        raise InputError(f"--min-mapq {args.min_mapq}: expected >= 0")
    if args.max_fragments < 1:
        raise InputError(f"--max-fragments {args.max_fragments}: expected >= 1")


def run(args: argparse.Namespace) -> int:
    """Compute the QC row and the fragment-length histogram of one input."""
    _check_args(args)
    for out in (args.out, args.out_fraglen):
        check_writable(out)
    header = read_chrom_sizes(args.sizes)
    sizes = select_chroms(header, include=args.chroms, exclude_regex=args.exclude or None)
    peaks = read_narrowpeak(args.peaks, sizes) if args.peaks else None
    regions = read_bed(args.target_regions, sizes) if args.target_regions else None
    tss = read_bed(args.tss, sizes) if args.tss else None
    row, hist = input_qc(
        args.input,
        args.kind,
        sizes,
        peaks=peaks,
        regions=regions,
        tss=tss,
        min_mapq=args.min_mapq,
        keep_duplicates=bool(args.keep_duplicates),
        max_fragments=args.max_fragments,
        threads=args.threads,
    )
    write_fraglen(args.out_fraglen, hist)
    write_qc({"sample": args.sample, "depth": args.depth, "rep": args.rep, **row}, args.out)
    log.info(
        "%s: FRiP %.3g, TSS enrichment %.3g, %.4g cut sites per Mb -> %s",
        args.input,
        row["frip"],
        row["tss_enrichment"],
        row["cut_sites_per_mb"],
        args.out,
    )
    return 0
