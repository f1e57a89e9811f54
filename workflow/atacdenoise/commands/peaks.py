"""MACS3 bdgcmp/bdgpeakcall peaks and -log10 p track from a coverage bigWig.

Per chromosome: the coverage is written as a bedGraph, ``macs3 bdgcmp -m
ppois`` scores each base against a flat λ (-log10 Poisson p of the count),
and ``macs3 bdgpeakcall -c CUTOFF -l MIN_LENGTH -g MAX_GAP`` calls the peaks
(AtacWorks' clean-label route). λ is the chromosome's mean coverage times
``--lambda-scale``, unless fixed with ``--lambda chr=value`` or a
``--lambda-table`` (the output of ``atacdenoise fit-lambda``). Writes the
narrowPeak (``signal``: maximum coverage in the peak; ``pval``: maximum -log10 p;
``score``: int(10 × that), as MACS3; ``summit``: MACS3's) and the per-base
-log10 p bigWig, both atomically.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import BigWigWriter, check_bigwig, read_bigwig
from atacdenoise.io.genome import DEFAULT_EXCLUDE, read_chrom_sizes, select_chroms
from atacdenoise.io.intervals import NARROWPEAK_COLUMNS, write_narrowpeak
from atacdenoise.log import progress
from atacdenoise.peaks import macs3 as pk
from atacdenoise.peaks.threshold import segment_max

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--track", required=True, type=Path, help="coverage bigWig (integer counts per base)")
    parser.add_argument("--sizes", required=True, type=Path, help="chromosome sizes file (chrom<TAB>length)")
    parser.add_argument("--out-peaks", required=True, type=Path, help="output narrowPeak")
    parser.add_argument("--out-pval", required=True, type=Path, help="output bigWig of the per-base -log10 p")
    parser.add_argument("--chroms", nargs="+", default=None, help="only these chromosomes (None: all in --sizes)")
    parser.add_argument("--exclude", default=DEFAULT_EXCLUDE, help="regex of chromosomes to leave out ('' keeps all)")
    parser.add_argument(
        "--lambda",
        dest="lambdas",
        nargs="+",
        default=[],
        metavar="CHR=VALUE",
        help="fixed flat lambda for these chromosomes (others: mean coverage x --lambda-scale)",
    )
    parser.add_argument(
        "--lambda-table", type=Path, default=None, help="TSV with columns chrom, lambda (fit-lambda output)"
    )
    parser.add_argument(
        "--lambda-scale", type=float, default=1.0, help="lambda = scale x the chromosome's mean coverage"
    )
    parser.add_argument("--cutoff", type=float, default=3.0, help="bdgpeakcall -c: minimum -log10 p of a peak base")
    parser.add_argument("--min-length", type=int, default=200, help="bdgpeakcall -l: minimum peak length (bp)")
    parser.add_argument("--max-gap", type=int, default=30, help="bdgpeakcall -g: merge peaks this close (bp)")
    parser.add_argument("--name", default=None, help="peak name prefix (None: the output file name)")
    parser.add_argument("--tmpdir", type=Path, default=None, help="scratch directory for bedGraphs (None: $TMPDIR)")
    parser.add_argument("--threads", type=int, default=1, help="chromosomes run through MACS3 at once")


def parse_lambdas(items: list[str], table: Path | None, sizes: dict[str, int]) -> dict[str, float]:
    """Fixed λ per chromosome from ``--lambda-table`` then ``CHR=VALUE`` items (these win)."""
    fixed: dict[str, float] = {}
    if table is not None:
        if not table.exists():
            raise InputError(f"{table}: lambda table not found")
        df = pd.read_csv(table, sep="\t", dtype={"chrom": str})
        if not {"chrom", "lambda"} <= set(df.columns):
            raise InputError(
                f"{table}: expected a TSV with columns chrom and lambda (atacdenoise fit-lambda --out), found {list(df.columns)}"
            )
        df = df[df["chrom"].isin(list(sizes))]
        fixed.update({c: float(v) for c, v in zip(df["chrom"], df["lambda"])})
    for item in items:
        chrom, sep, value = item.partition("=")
        try:
            lam = float(value)
        except ValueError:
            lam = float("nan")
        if not sep or not lam > 0:
            raise InputError(f"--lambda {item!r}: expected CHR=VALUE with a positive number, e.g. chr1=7.35")
        if chrom not in sizes:
            raise InputError(
                f"--lambda {item!r}: {chrom} is not among the selected chromosomes ({', '.join(list(sizes)[:5])} ...)"
            )
        fixed[chrom] = lam
    return fixed


def _check_args(args: argparse.Namespace) -> None:
    if args.min_length < 1:
        raise InputError(f"--min-length {args.min_length}: expected >= 1")
    if args.max_gap < 0:
        raise InputError(f"--max-gap {args.max_gap}: expected >= 0")
    if not args.lambda_scale > 0:
        raise InputError(f"--lambda-scale {args.lambda_scale}: expected > 0")
    if args.threads < 1:
        raise InputError(f"--threads {args.threads}: expected >= 1")


def call_chrom(args: argparse.Namespace, chrom: str, fixed: float | None, workdir: Path) -> pk.ChromPeaks:
    """Read one chromosome of the track, run the MACS3 route, fill signal (max coverage) and pval (max -log10 p)."""
    track = read_bigwig(args.track, chrom)
    if np.any(track != np.floor(track)):
        log.warning(
            "%s %s: non-integer coverage; MACS3 ppois truncates each value to an integer count", args.track, chrom
        )
    lam = pk.flat_lambda(track, fixed, args.lambda_scale)
    result = pk.bdgpeakcall_chrom(chrom, track, lam, workdir, args.cutoff, args.min_length, args.max_gap)
    df = result.peaks
    if len(df):
        starts, ends = df["start"].to_numpy(np.int64), df["end"].to_numpy(np.int64)
        df["signal"] = segment_max(track, starts, ends).astype(np.float64)
        rs, re_, rv = result.pval
        # peaks are unions of whole runs of the p track: the runs from the one at each start to the one before each end
        first, stop = np.searchsorted(re_, starts, side="right"), np.searchsorted(rs, ends, side="left")
        df["pval"] = segment_max(rv, first, stop).astype(np.float64)
        df["qval"] = -1.0
    mean = pk.mean_coverage(track)
    log.info(
        "%s: mean coverage %.4g, lambda %.6g (%s), %d peaks, %s bp",
        chrom,
        mean,
        lam,
        "fixed" if fixed is not None else f"{args.lambda_scale:g} x mean",
        len(df),
        f"{int((df['end'] - df['start']).sum()) if len(df) else 0:,}",
    )
    return result


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    check_writable(args.out_peaks)
    check_writable(args.out_pval)
    header = read_chrom_sizes(args.sizes)
    sizes = select_chroms(header, include=args.chroms, exclude_regex=args.exclude or None)
    check_bigwig(args.track, sizes)
    fixed = parse_lambdas(args.lambdas, args.lambda_table, sizes)
    name = args.name or args.out_peaks.name.split(".narrowPeak")[0]
    pk.macs3_executable()
    if args.tmpdir is not None:
        args.tmpdir.mkdir(parents=True, exist_ok=True)
    tables = []
    with tempfile.TemporaryDirectory(prefix="atacdenoise-peaks-", dir=args.tmpdir) as work:
        with BigWigWriter(args.out_pval, header) as writer, ThreadPoolExecutor(args.threads) as pool:
            jobs = pool.map(lambda c: call_chrom(args, c, fixed.get(c), Path(work)), sizes)
            for result in progress(jobs, total=len(sizes), desc="peaks", unit="chrom"):
                pk.write_runs(writer, result.chrom, sizes[result.chrom], result.pval)
                tables.append(result.peaks)
    peaks = (
        pd.concat([t for t in tables if len(t)], ignore_index=True)
        if any(len(t) for t in tables)
        else pd.DataFrame(columns=NARROWPEAK_COLUMNS)
    )
    peaks["name"] = [f"{name}_peak_{i}" for i in range(1, len(peaks) + 1)]
    write_narrowpeak(peaks, args.out_peaks)
    log.info(
        "%s: %d peaks on %d chromosome(s) -> %s, %s", args.track, len(peaks), len(sizes), args.out_peaks, args.out_pval
    )
    return 0
