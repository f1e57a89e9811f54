"""Subsample a BAM (pair-aware, seeded, by htslib) or a fragments file to a target depth.

BAM input -> BAM output (+ .bai): each read is kept when a hash of its name
and the seed falls below the fraction (``samtools view --subsample``), so mates
stay together; the fraction is ``--fragments`` divided by the usable fragments
(proper pairs whose first read passes the coverage filters, or single-end
reads) on the genome's chromosomes, and the achieved count is binomial around
the target. Fragments-file input (.tsv / .tsv.gz) -> bgzipped, tabix-indexed
fragments file with exactly the target number of lines. A JSON sidecar
``OUT.json`` records target, fraction, achieved and seed. Replicates: use
different seeds (the workflow passes seed + replicate). The work is
:mod:`atacdenoise.reads.subsample`'s.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.bam import MIN_MAPQ
from atacdenoise.reads.subsample import (
    check_fraction,
    is_bam,
    subsample_bam_to_depth,
    subsample_fragments_to_depth,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the subsample command's options."""
    parser.add_argument(
        "--input", required=True, type=Path, help="indexed coordinate-sorted BAM, or fragments file (.tsv/.tsv.gz)"
    )
    depth = parser.add_mutually_exclusive_group(required=True)
    depth.add_argument(
        "--fragments", type=int, help="target number of usable fragments (read pairs; reads if single-end)"
    )
    depth.add_argument("--fraction", type=float, help="fraction of fragments to keep, in (0, 1]")
    parser.add_argument("--seed", type=int, required=True, help="seed; replicates use different seeds")
    parser.add_argument("--out", required=True, type=Path, help="output .bam, or .tsv.gz for a fragments input")
    parser.add_argument(
        "--sizes", type=Path, default=None, help="genome sizes: count fragments on its chromosomes only"
    )
    parser.add_argument(
        "--min-mapq", type=int, default=MIN_MAPQ, help="MAPQ filter used to count usable fragments (BAM)"
    )
    parser.add_argument("--threads", type=int, default=1, help="htslib threads")
    parser.add_argument(
        "--target-regions",
        type=Path,
        default=None,
        help="BED of target regions (needs --sizes): depths count only the fragments inside them",
    )
    parser.add_argument(
        "--counts",
        type=Path,
        default=None,
        help="usable-fragment counts of the BAM input made by `atacdenoise count` (reused when they match the "
        "file and settings, so one count serves every depth and replicate; else counted again)",
    )


def _check_args(args: argparse.Namespace) -> bool:
    """Check the arguments before any work; return whether the input is a BAM (else a fragments file)."""
    if not args.input.exists():
        raise InputError(f"{args.input}: input file not found")
    check_writable(args.out)
    if args.fragments is not None and args.fragments <= 0:
        raise InputError(f"--fragments {args.fragments}: expected a positive number of fragments")
    if args.fraction is not None:
        check_fraction(args.fraction)
    if args.target_regions is not None and args.sizes is None:
        raise InputError("--target-regions needs --sizes (the regions are checked against the genome)")
    bam = is_bam(args.input)
    if not bam and args.input.suffix == ".bam":
        raise InputError(
            f"{args.input}: named .bam but not a BAM file (no BGZF header with BAM\\1 in it); "
            f"check the file (samtools quickcheck {args.input}) or re-create it"
        )
    if bam and args.out.suffix != ".bam":
        raise InputError(f"--out {args.out}: a BAM input gives a BAM output; name it *.bam")
    if not bam and not str(args.out).endswith(".gz"):
        raise InputError(f"--out {args.out}: a fragments input gives a bgzipped fragments file; name it *.tsv.gz")
    return bam


def run(args: argparse.Namespace) -> int:
    """Subsample the input to the target depth; write the output, its index and ``OUT.json``."""
    depth = {"seed": args.seed, "fragments": args.fragments, "fraction": args.fraction, "sizes_path": args.sizes}
    input_is_bam = _check_args(args)
    if input_is_bam:
        subsample_bam_to_depth(
            args.input,
            args.out,
            **depth,
            min_mapq=args.min_mapq,
            threads=args.threads,
            counts_path=args.counts,
            regions_bed=args.target_regions,
        )
    else:
        subsample_fragments_to_depth(args.input, args.out, **depth, regions_bed=args.target_regions)
    return 0
