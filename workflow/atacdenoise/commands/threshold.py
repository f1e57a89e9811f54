"""Peaks from an existing peak-probability bigWig at another threshold, without running the model again.

``atacdenoise infer`` writes ``PREFIX.peakprob.bw`` and calls peaks at the
model's threshold. To try another threshold (a stricter set for a figure, a
looser one for IDR), this reads the probability track and calls
``>= threshold`` regions with the same rules (gaps of at most ``--max-gap``
bases merged, peaks shorter than ``--min-length`` dropped; the intervals
``macs3 bdgpeakcall -c T -l L -g G`` reports) and writes the same narrowPeak
columns. With ``--track PREFIX.track.bw`` the summits sit at the denoised
track's maximum, so at the model's threshold the output equals inference's
``PREFIX.peaks.narrowPeak``; without it, at the probability's maximum.
Without ``--track``, peaks are called from the runs (or bases) at or above the threshold,
selected as the blocks are decoded; with it, or past MAX_RUNS of those, per base in windows.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import open_bigwig
from atacdenoise.io.intervals import NARROWPEAK_COLUMNS, write_narrowpeak
from atacdenoise.log import progress
from atacdenoise.peaks.threshold import MAX_GAP, MIN_LENGTH, PeakStream, peaks_of_runs

log = logging.getLogger(__name__)

#: bases read at a time when a chromosome is called per base (two float32 tracks of this many bases in memory)
WINDOW = 8_000_000
#: runs (or bases) at or above the threshold held at most (~20 bytes each) before a chromosome is called per base instead
MAX_RUNS = 5_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prob", required=True, type=Path, help="peak-probability bigWig (PREFIX.peakprob.bw of infer)"
    )
    parser.add_argument("--threshold", required=True, type=float, help="call bases with probability >= this (0-1)")
    parser.add_argument("--out", required=True, type=Path, help="output narrowPeak")
    parser.add_argument(
        "--track", type=Path, default=None, help="denoised bigWig (PREFIX.track.bw): summits at its maximum, as infer"
    )
    parser.add_argument("--min-length", type=int, default=MIN_LENGTH, help="drop peaks shorter than this (bp)")
    parser.add_argument("--max-gap", type=int, default=MAX_GAP, help="merge peaks separated by at most this many bases")
    parser.add_argument("--chroms", nargs="+", default=None, help="only these chromosomes (default: all in the bigWig)")
    parser.add_argument("--threads", type=int, default=1, help="threads that inflate the bigWig's blocks")


def _check_args(args: argparse.Namespace) -> None:
    if not 0.0 < args.threshold < 1.0:
        raise InputError(f"--threshold {args.threshold}: expected a probability between 0 and 1 (exclusive)")
    if args.min_length < 1:
        raise InputError(f"--min-length {args.min_length}: expected >= 1")
    if args.max_gap < 0:
        raise InputError(f"--max-gap {args.max_gap}: expected >= 0")
    if args.threads < 1:
        raise InputError(f"--threads {args.threads}: expected >= 1")


def call_chrom(args: argparse.Namespace, prob, track, chrom: str, length: int) -> pd.DataFrame:
    """Peaks of one chromosome: from the runs at or above the threshold (without a summit track, and unless there
    are more than :data:`MAX_RUNS`), else window by window through :class:`atacdenoise.peaks.threshold.PeakStream`
    (bounded memory); the same rows either way.
    """
    if track is None:
        # only the runs (or bases) at or above the threshold matter (it is > 0), selected as the blocks are decoded
        data = prob.runs_at_least(chrom, args.threshold, max_runs=MAX_RUNS)
        if data is not None:
            log.debug("%s: called on %s runs", chrom, f"{data[0].size:,}")
            return peaks_of_runs(
                chrom, data, length, args.threshold, args.min_length, args.max_gap, name_prefix=f"{chrom}_peak"
            )
    stream = PeakStream(chrom, args.threshold, min_length=args.min_length, max_gap=args.max_gap)
    for lo in range(0, length, WINDOW):
        hi = min(length, lo + WINDOW)
        p = np.nan_to_num(prob.values(chrom, lo, hi, fill=0.0), copy=False)
        stream.add(lo, p, p if track is None else np.nan_to_num(track.values(chrom, lo, hi, fill=0.0), copy=False))
    return stream.finish()


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    check_writable(args.out)
    prob = open_bigwig(args.prob, threads=args.threads)
    track = open_bigwig(args.track, threads=args.threads) if args.track is not None else None
    try:
        sizes = prob.chroms()
        if args.chroms is not None:
            missing = [c for c in args.chroms if c not in sizes]
            if missing:
                raise InputError(
                    f"{args.prob}: chromosomes {missing[:5]} are not in this bigWig (it has {', '.join(list(sizes)[:5])} ...)"
                )
            sizes = {c: sizes[c] for c in args.chroms}
        if track is not None:
            other = track.chroms()
            wrong = [c for c in sizes if other.get(c) != sizes[c]]
            if wrong:
                raise InputError(
                    f"{args.track}: {wrong[0]} is missing or has another length than in {args.prob}; "
                    "give the track written by the same infer run"
                )
        tables = [
            call_chrom(args, prob, track, chrom, length)
            for chrom, length in progress(sizes.items(), total=len(sizes), desc="peaks", unit="chrom")
        ]
    finally:
        prob.close()
        if track is not None:
            track.close()
    peaks = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=NARROWPEAK_COLUMNS)
    write_narrowpeak(peaks, args.out)
    log.info(
        "%s: %d peaks at probability >= %g on %d chromosome(s) -> %s",
        args.prob,
        len(peaks),
        args.threshold,
        len(sizes),
        args.out,
    )
    return 0
