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
For an ensemble's outputs add ``--spread PREFIX.spread.bw``: the score column is then each peak's
confidence, as inference writes it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.intervals import write_narrowpeak
from atacdenoise.peaks.threshold import MAX_GAP, MIN_LENGTH, threshold_bigwig

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise threshold``."""
    parser.add_argument(
        "--prob", required=True, type=Path, help="peak-probability bigWig (PREFIX.peakprob.bw of infer)"
    )
    parser.add_argument("--threshold", required=True, type=float, help="call bases with probability >= this (0-1)")
    parser.add_argument("--out", required=True, type=Path, help="output narrowPeak")
    parser.add_argument(
        "--track", type=Path, default=None, help="denoised bigWig (PREFIX.track.bw): summits at its maximum, as infer"
    )
    parser.add_argument(
        "--spread",
        type=Path,
        default=None,
        help="an ensemble's PREFIX.spread.bw: the score column is each peak's confidence, as infer writes it",
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


def run(args: argparse.Namespace) -> int:
    """Call peaks on the probability bigWig at the threshold."""
    _check_args(args)
    check_writable(args.out)
    peaks = threshold_bigwig(
        args.prob,
        args.threshold,
        args.track,
        args.chroms,
        args.min_length,
        args.max_gap,
        threads=args.threads,
        spread_path=args.spread,
    )
    write_narrowpeak(peaks, args.out)
    log.info("%s: %d peaks at probability >= %g -> %s", args.prob, len(peaks), args.threshold, args.out)
    return 0
