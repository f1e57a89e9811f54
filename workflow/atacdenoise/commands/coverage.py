"""Tn5 cut-site coverage bigWig from a BAM or a fragments file (or adopt a given bigWig).

Each cut site (``+`` read: start + 4; ``-`` read: end - 1 - 5; fragments file:
start and end - 1) is widened to a centred box of ``smooth_bp + 1`` bases and
the boxes are summed: integer counts per base, no normalisation unless
``--cpm``. Reads are filtered (MAPQ, duplicates, secondary, supplementary,
QC-fail, unmapped, improper pairs) and only chromosomes of the sizes file are
used (chrM and unplaced contigs excluded by default). The bigWig's header lists
every chromosome of the sizes file; excluded ones carry no data. A JSON
sidecar ``OUT.json`` records the settings and the cut sites per chromosome.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import numpy as np

from atacdenoise.atomic import atomic_output
from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.bam import check_bam, open_bam
from atacdenoise.io.bigwig import BigWigWriter, check_bigwig
from atacdenoise.io.fragments import fragment_cut_sites_by_chrom
from atacdenoise.io.genome import DEFAULT_EXCLUDE, read_chrom_sizes, select_chroms
from atacdenoise.log import progress
from atacdenoise.reads import cutsites as cs
from atacdenoise.reads.subsample import sidecar_path, write_json

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input", required=True, type=Path, help="BAM (indexed, coordinate-sorted), fragments file, or bigWig"
    )
    parser.add_argument("--kind", required=True, choices=["bam", "fragments", "bigwig"], help="input type")
    parser.add_argument("--sizes", required=True, type=Path, help="chromosome sizes file (chrom<TAB>length)")
    parser.add_argument("--out", required=True, type=Path, help="output bigWig (OUT.json sidecar written beside it)")
    parser.add_argument("--chroms", nargs="+", default=None, help="only these chromosomes (default: all in --sizes)")
    parser.add_argument("--exclude", default=DEFAULT_EXCLUDE, help="regex of chromosomes to leave out ('' keeps all)")
    parser.add_argument(
        "--smooth-bp", type=int, default=cs.SMOOTH_BP, help="each cut site covers smooth_bp + 1 bases, centred"
    )
    parser.add_argument("--shift-plus", type=int, default=cs.SHIFT_PLUS, help="shift of + strand 5' ends (bp)")
    parser.add_argument("--shift-minus", type=int, default=cs.SHIFT_MINUS, help="shift of - strand 5' ends (bp)")
    parser.add_argument("--min-mapq", type=int, default=cs.MIN_MAPQ, help="minimum MAPQ of a read (BAM)")
    parser.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="keep reads flagged as duplicates (BAM); weight fragments by their count column (fragments file)",
    )
    parser.add_argument("--cpm", action="store_true", help="scale to counts per million cut sites")
    parser.add_argument("--threads", type=int, default=1, help="htslib decompression threads")


def _settings(args: argparse.Namespace) -> dict:
    return {
        "smooth_bp": args.smooth_bp,
        "shift_plus": args.shift_plus,
        "shift_minus": args.shift_minus,
        "min_mapq": args.min_mapq,
        "keep_duplicates": bool(args.keep_duplicates),
        "cpm": bool(args.cpm),
        "source": str(args.input),
        "kind": args.kind,
    }


def _check_args(args: argparse.Namespace) -> None:
    if args.smooth_bp < 0:
        raise InputError(f"--smooth-bp {args.smooth_bp}: expected >= 0")
    if args.min_mapq < 0:
        raise InputError(f"--min-mapq {args.min_mapq}: expected >= 0")


def bam_cut_sites(args: argparse.Namespace, sizes: dict[str, int]) -> tuple[dict[str, np.ndarray], dict]:
    """Cut sites per selected chromosome of a BAM, with the filter counts logged and returned."""
    path = args.input
    bam = open_bam(path, threads=args.threads)
    try:
        info = check_bam(bam, sizes, path)
        absent = [c for c in sizes if c not in info.chrom_sizes]
        if absent:
            log.warning(
                "%s: %d selected chromosome(s) not in the BAM header (e.g. %s): left empty",
                path,
                len(absent),
                absent[0],
            )
        total = cs.FilterCounts()
        positions: dict[str, np.ndarray] = {}
        for chrom in progress(info.chroms, total=len(info.chroms), desc="cut sites", unit="chrom"):
            pos, stats = cs.bam_cut_sites(
                bam, chrom, sizes[chrom], args.min_mapq, args.keep_duplicates, args.shift_plus, args.shift_minus, path
            )
            positions[chrom] = pos
            total += stats
            log.debug("%s %s: %s", path, chrom, stats.summary())
        other = sum(n for c, n in info.mapped.items() if c not in sizes)
        log.info(
            "%s: %s (filters: MAPQ >= %d%s); %s cut sites fell off chromosome ends; "
            "%s mapped reads on chromosomes not used (excluded or absent from the sizes file); %s reads without a position",
            path,
            total.summary(),
            args.min_mapq,
            ", duplicates kept" if args.keep_duplicates else "",
            f"{total.off_chrom:,}",
            f"{other:,}",
            f"{bam.nocoordinate:,}",
        )
        if total.kept == 0:
            raise InputError(
                f"{path}: no reads passed the filters on the selected chromosomes ({total.summary()}); "
                "check the input, or lower --min-mapq / use --keep-duplicates if that is what removed them"
            )
        filters = {
            **total.as_dict(),
            "other_chroms": other,
            "no_coordinate": int(bam.nocoordinate),
            "paired": info.paired,
        }
        return positions, filters
    finally:
        bam.close()


def fragments_cut_sites(args: argparse.Namespace, sizes: dict[str, int]) -> tuple[dict[str, np.ndarray], dict]:
    """Cut sites per selected chromosome of a fragments file, counts logged and returned."""
    positions, st = fragment_cut_sites_by_chrom(args.input, sizes, use_count=args.keep_duplicates)
    log.info(
        "%s: %s fragment lines; %s on chromosomes not used; %s used (%s read pairs by the count column%s)",
        args.input,
        f"{st.lines:,}",
        f"{st.other_chroms:,}",
        f"{st.used:,}",
        f"{st.reads:,}",
        ", all kept" if args.keep_duplicates else "; duplicates collapsed, one fragment per line",
    )
    if st.used == 0:
        raise InputError(f"{args.input}: no fragments on the selected chromosomes ({', '.join(list(sizes)[:5])})")
    return positions, {"lines": st.lines, "other_chroms": st.other_chroms, "used": st.used, "reads": st.reads}


def write_coverage(
    out: Path,
    header: dict[str, int],
    sizes: dict[str, int],
    positions: dict[str, np.ndarray],
    smooth_bp: int,
    cpm: bool,
) -> dict[str, int]:
    """Smooth cut sites per chromosome and stream them into ``out``; return cut sites per chromosome."""
    n_cut = {c: int(positions[c].size) if c in positions else 0 for c in sizes}
    scale = cs.cpm_factor(sum(n_cut.values())) if cpm else 1.0
    with BigWigWriter(out, header) as writer:
        for chrom in progress(list(sizes), total=len(sizes), desc="coverage", unit="chrom"):
            if not n_cut[chrom]:
                continue
            for start, values in cs.smoothed_windows(positions.pop(chrom), sizes[chrom], smooth_bp):
                part = values.astype(np.float32)
                writer.add(chrom, start, part * np.float32(scale) if cpm else part)
    return n_cut


def adopt_bigwig(args: argparse.Namespace, sizes: dict[str, int]) -> None:
    """Validate a user's coverage bigWig and copy it to ``--out`` with a sidecar of the declared settings."""
    check_bigwig(args.input, sizes)
    with atomic_output(args.out) as tmp:
        shutil.copyfile(args.input, tmp)
    meta = {**_settings(args), "declared": True, "chroms": list(sizes), "n_cut_sites": None}
    write_json(sidecar_path(args.out), meta)
    log.info(
        "%s: bigWig checked against %d chromosome(s) and copied to %s (settings as declared)",
        args.input,
        len(sizes),
        args.out,
    )


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    check_writable(args.out)
    header = read_chrom_sizes(args.sizes)
    sizes = select_chroms(header, include=args.chroms, exclude_regex=args.exclude or None)
    if args.kind == "bigwig":
        adopt_bigwig(args, sizes)
        return 0
    if args.kind == "bam":
        positions, filters = bam_cut_sites(args, sizes)
    else:
        positions, filters = fragments_cut_sites(args, sizes)
    sidecar = sidecar_path(args.out)
    try:
        n_cut = write_coverage(args.out, header, sizes, positions, args.smooth_bp, args.cpm)
        meta = {**_settings(args), "chroms": list(sizes), "n_cut_sites": n_cut, "filters": filters}
        write_json(sidecar, meta)
    except BaseException:
        args.out.unlink(missing_ok=True)
        raise
    log.info("%s: %s cut sites on %d chromosome(s) -> %s", args.input, f"{sum(n_cut.values()):,}", len(sizes), args.out)
    return 0
