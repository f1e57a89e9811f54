"""Subsample a BAM (pair-aware, seeded, by htslib) or a fragments file to a target depth.

BAM input -> BAM output (+ .bai): each read is kept when a hash of its name
and the seed falls below the fraction (``samtools view --subsample``), so mates
stay together; the fraction is ``--fragments`` divided by the usable fragments
(proper pairs whose first read passes the coverage filters, or single-end
reads) on the genome's chromosomes, and the achieved count is binomial around
the target. Fragments-file input (.tsv / .tsv.gz) -> bgzipped, tabix-indexed
fragments file with exactly the target number of lines. A JSON sidecar
``OUT.json`` records target, fraction, achieved and seed. Replicates: use
different seeds (the workflow passes seed + replicate).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.bam import bam_chrom_sizes, check_bam, count_usable_by_kind, open_bam
from atacdenoise.io.text import is_gzip
from atacdenoise.io.genome import read_chrom_sizes, select_chroms
from atacdenoise.reads import cutsites as cs
from atacdenoise.reads.subsample import (
    binomial_sd,
    check_fraction,
    fraction_for,
    report_depth,
    reusable_counts,
    sidecar_path,
    subsample_bam,
    write_json,
)

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
        "--min-mapq", type=int, default=cs.MIN_MAPQ, help="MAPQ filter used to count usable fragments (BAM)"
    )
    parser.add_argument("--threads", type=int, default=1, help="htslib threads")
    parser.add_argument(
        "--counts",
        type=Path,
        default=None,
        help="usable-fragment counts of the BAM input made by `atacdenoise count` (reused when they match the "
        "file and settings, so one count serves every depth and replicate; else counted again)",
    )


def _is_bam(path: Path) -> bool:
    """BAM files are BGZF whose payload starts with 'BAM\\1'."""
    if not is_gzip(path):
        return False
    import gzip

    with gzip.open(path, "rb") as fh:
        return fh.read(4) == b"BAM\x01"


def _chroms(args: argparse.Namespace, found: dict[str, int] | None) -> dict[str, int] | None:
    """Chromosomes whose fragments count: the sizes file's (minus chrM/unplaced), else the input's own."""
    if args.sizes is not None:
        return select_chroms(read_chrom_sizes(args.sizes))
    return select_chroms(found) if found else None


def run_bam(args: argparse.Namespace) -> dict:
    bam = open_bam(args.input, threads=args.threads)
    try:
        sizes = _chroms(args, bam_chrom_sizes(bam))
        info = check_bam(bam, sizes, args.input)
    finally:
        bam.close()
    counts = reusable_counts(args.counts, args.input, info.chroms, args.min_mapq) if args.counts else None
    if counts is None:
        counts = count_usable_by_kind(args.input, info.chroms, args.min_mapq, threads=args.threads)
    else:
        log.info("%s: fragment counts reused from %s", args.input, args.counts)
    available = sum(counts.values())
    log.info(
        "%s: %s usable fragments (%s, MAPQ >= %d) on %d chromosome(s)",
        args.input,
        f"{available:,}",
        "proper pairs" if info.paired else "single-end reads",
        args.min_mapq,
        len(info.chroms),
    )
    if args.fragments is not None:
        fraction = fraction_for(args.fragments, available, args.input)
        target = float(args.fragments)
    else:
        fraction = check_fraction(args.fraction)
        if available == 0:
            fraction_for(1, 0, args.input)  # raises the no-usable-fragments error
        target = fraction * available
    kept = subsample_bam(
        args.input, args.out, fraction, args.seed, args.threads, chroms=info.chroms, min_mapq=args.min_mapq
    )
    if kept is None:  # samtools did the subsampling: count its output (a kind the input lacks is not counted)
        present = tuple(kind for kind, n in counts.items() if n > 0)
        kept = count_usable_by_kind(args.out, info.chroms, args.min_mapq, threads=args.threads, kinds=present)
    achieved = sum(kept.values())
    z = report_depth(target, achieved, available, fraction, args.out)
    return {
        "target": args.fragments if args.fragments is not None else round(target),
        "fraction": fraction,
        "achieved": achieved,
        "seed": args.seed,
        "available": available,
        "binomial_sd": binomial_sd(available, fraction),
        "z": z,
        "paired": info.paired,
        "min_mapq": args.min_mapq,
        "source": str(args.input),
    }


def run_fragments(args: argparse.Namespace) -> dict:
    from atacdenoise.io.fragments import (
        count_fragments,
        subsample_fragments,
    )  # pandas: imported only for fragments files

    chroms = _chroms(args, None)
    stats = count_fragments(args.input, chroms)
    available = stats.used
    if available == 0:
        raise InputError(f"{args.input}: no fragments on the selected chromosomes")
    if args.fragments is not None:
        fraction_for(args.fragments, available, args.input)  # checks target <= available
        n = args.fragments
    else:
        n = round(check_fraction(args.fraction) * available)
        if n == 0:
            raise InputError(
                f"--fraction {args.fraction} of {available:,} fragments in {args.input} keeps none; use a larger fraction"
            )
    subsample_fragments(args.input, args.out, n, args.seed, chroms, available=available)
    log.info(
        "%s: wrote %s of %s fragments (seed %d) to %s", args.input, f"{n:,}", f"{available:,}", args.seed, args.out
    )
    return {
        "target": n,
        "fraction": n / available,
        "achieved": n,
        "seed": args.seed,
        "available": available,
        "source": str(args.input),
    }


def run(args: argparse.Namespace) -> int:
    if not args.input.exists():
        raise InputError(f"{args.input}: input file not found")
    check_writable(args.out)
    if args.fragments is not None and args.fragments <= 0:
        raise InputError(f"--fragments {args.fragments}: expected a positive number of fragments")
    if args.fraction is not None:
        check_fraction(args.fraction)
    is_bam = _is_bam(args.input)
    if is_bam and args.out.suffix != ".bam":
        raise InputError(f"--out {args.out}: a BAM input gives a BAM output; name it *.bam")
    if not is_bam and not str(args.out).endswith(".gz"):
        raise InputError(f"--out {args.out}: a fragments input gives a bgzipped fragments file; name it *.tsv.gz")
    meta = run_bam(args) if is_bam else run_fragments(args)
    outputs = [args.out, Path(str(args.out) + (".bai" if is_bam else ".tbi"))]
    try:
        write_json(sidecar_path(args.out), meta)
    except BaseException:
        for p in outputs:
            p.unlink(missing_ok=True)
        raise
    return 0
