"""MACS3 callpeak baseline on Tn5 cut sites (ENCODE ATAC settings) and its -log10 p track.

The cut sites of a BAM (reads filtered as by ``atacdenoise coverage``: MAPQ,
duplicates, secondary, supplementary, QC-fail, improper pairs; ``+`` read:
start + 4, ``-`` read: end - 1 - 5) or of a fragments file (``start`` and
``end - 1``) are written as 1-bp BED reads and given to ``macs3 callpeak -f BED
--nomodel --shift -75 --extsize 150 --keep-dup all -p 0.01 --call-summits -B``
(BAMPE mode would ignore the shift and pile up whole fragments). The per-base
-log10 p track is ``macs3 bdgcmp -m ppois`` of callpeak's treatment pileup
against its local λ. Writes callpeak's narrowPeak (clipped to the chromosomes,
sorted in sizes order) and the p bigWig, both atomically.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.bam import MIN_MAPQ
from atacdenoise.io.genome import DEFAULT_EXCLUDE, read_chrom_sizes, select_chroms
from atacdenoise.io.regions import read_target_regions, restrict_sizes
from atacdenoise.peaks.callpeak import callpeak_baseline, parse_genome_size

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise callpeak``."""
    parser.add_argument("--input", required=True, type=Path, help="BAM (indexed, coordinate-sorted) or fragments file")
    parser.add_argument("--kind", required=True, choices=["bam", "fragments"], help="input type")
    parser.add_argument("--sizes", required=True, type=Path, help="chromosome sizes file (chrom<TAB>length)")
    parser.add_argument("--out-peaks", required=True, type=Path, help="output narrowPeak")
    parser.add_argument("--out-pval", required=True, type=Path, help="output bigWig of the per-base -log10 p")
    parser.add_argument("--chroms", nargs="+", default=None, help="only these chromosomes (None: all in --sizes)")
    parser.add_argument(
        "--target-regions",
        type=Path,
        default=None,
        help="BED: use only the cut sites inside these regions; the genome size becomes their length",
    )
    parser.add_argument("--exclude", default=DEFAULT_EXCLUDE, help="regex of chromosomes to leave out ('' keeps all)")
    parser.add_argument(
        "--genome-size",
        default=None,
        help="macs3 -g: effective genome size, a number or hs/mm/ce/dm "
        "(None: total length of the selected chromosomes)",
    )
    parser.add_argument("--pvalue", type=float, default=0.01, help="macs3 -p: p-value cutoff")
    parser.add_argument("--shift", type=int, default=-75, help="macs3 --shift (bp)")
    parser.add_argument("--extsize", type=int, default=150, help="macs3 --extsize (bp)")
    parser.add_argument("--min-mapq", type=int, default=MIN_MAPQ, help="minimum MAPQ of a read (BAM)")
    parser.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="keep reads flagged as duplicates (BAM); weight fragments by their count column (fragments file)",
    )
    parser.add_argument("--name", default="callpeak", help="macs3 -n: prefix of the peak names")
    parser.add_argument("--tmpdir", type=Path, default=None, help="scratch directory for MACS3's files (None: $TMPDIR)")
    parser.add_argument("--threads", type=int, default=1, help="htslib decompression threads (BAM)")


def _check_args(args: argparse.Namespace) -> None:
    if not 0 < args.pvalue < 1:
        raise InputError(f"--pvalue {args.pvalue}: expected 0 < p < 1")
    if args.extsize < 1:
        raise InputError(f"--extsize {args.extsize}: expected >= 1")
    if args.min_mapq < 0:
        raise InputError(f"--min-mapq {args.min_mapq}: expected >= 0")
    if not args.name or any(ch in args.name for ch in "/ \t"):
        raise InputError(f"--name {args.name!r}: expected a non-empty name without slashes or spaces")


def run(args: argparse.Namespace) -> int:
    """Call the callpeak baseline on a BAM or fragments file."""
    _check_args(args)
    check_writable(args.out_peaks)
    check_writable(args.out_pval)
    header = read_chrom_sizes(args.sizes)
    sizes = select_chroms(header, include=args.chroms, exclude_regex=args.exclude or None)
    target = read_target_regions(args.target_regions, sizes)
    sizes = restrict_sizes(sizes, target)
    peaks = callpeak_baseline(
        args.input,
        args.kind,
        header,
        sizes,
        args.out_peaks,
        args.out_pval,
        genome_size=parse_genome_size(args.genome_size, sizes),
        name=args.name,
        pvalue=args.pvalue,
        shift=args.shift,
        extsize=args.extsize,
        min_mapq=args.min_mapq,
        keep_duplicates=args.keep_duplicates,
        threads=args.threads,
        tmpdir=args.tmpdir,
        target=target,
    )
    per_chrom = peaks.groupby("chrom").size().to_dict() if len(peaks) else {}
    for chrom in sizes:
        log.info("%s: %d peaks", chrom, per_chrom.get(chrom, 0))
    log.info("%s: %d peaks -> %s, %s", args.input, len(peaks), args.out_peaks, args.out_pval)
    return 0
