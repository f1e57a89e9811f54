"""Denoise a coverage bigWig with a trained model: denoised track, peak-probability track and peaks.

Every base of every selected chromosome is denoised (tails included): tiles of
the model's ``interval`` with ``pad`` bases of context, zeros beyond the ends.
The input is streamed chunk by chunk (``--batch-size`` tiles), so memory does not
grow with the genome. Writes, each atomically:

* ``PREFIX.track.bw``: denoised coverage to 8 significant bits (``--precision compact``, the
  default: relative error at most 1/256; with a depth-normalised model, in 8-bp bins whose values all lie
  below the model's mean coverage the nonzero bases hold the bin's nonzero mean) or the model's float32
  values (``--precision float32``);
* ``PREFIX.peakprob.bw``: per-base peak probability (sigmoid of the logits), (compact)
  8 significant bits of min(p, 1 - p), 6 where it is below 1/128 (0, 0.5 and 1 exact, error at most
  2**-8 · min(p, 1 - p), 2**-6 nearer an end, monotone in p, so the tails keep their order) or float32;
  each bigWig has a sidecar ``X.bw.json`` recording its precision. Compact tracks merge equal
  neighbours into one record: several times smaller files (see README, outputs);
* ``PREFIX.peaks.narrowPeak``: regions of probability >= threshold, gaps of at
  most 30 bp merged, at least 200 bp long (as ``macs3 bdgpeakcall -c T -l 200 -g 30``
  on the peakprob track as written, i.e. on the rounded values when compact), summit at
  the denoised track's maximum, score from the probability;
* ``PREFIX.fitness.tsv``: the input compared with the model's training data (depth,
  share of signal in the training peaks, fragment lengths; ``ok``, ``outside`` or
  ``unknown`` per metric, a warning in the log for each ``outside``).

With several ``--model`` files (an ensemble of K models trained alike with other seeds, config
``model.ensemble``) the track and the probability are the members' means, and two things are added:

* ``PREFIX.spread.bw``: per base, the standard deviation (ddof 0, so within [0, 0.5]) of the K
  members' calibrated peak probabilities, at the probability's precision, with its sidecar;
* the narrowPeak's ``score`` column (0-1000) becomes each peak's confidence,
  ``round(1000 · (1 - 2 · mean spread over the peak))``, instead of 1000 x its maximum probability
  (which stays in the ``signal`` column).

The coverage must be made with the model's preprocessing (smoothing, Tn5 shifts,
CPM): its sidecar ``X.bw.json`` is checked against the model and a mismatch is an
error (a bigWig without a sidecar is accepted with a warning).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.checks import check_writable
from atacdenoise.cpus import usable_cores
from atacdenoise.errors import InputError
from atacdenoise.model.fitness import fitness_path
from atacdenoise.model.infer import (
    COMPACT_PROB_STORAGE,
    COMPACT_TRACK_STORAGE,
    PRECISIONS,
    denoise_bigwig,
    output_paths,
)

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise infer``."""
    parser.add_argument(
        "--model",
        required=True,
        type=Path,
        nargs="+",
        action="extend",
        help="trained model file (model.pt); several (--model A B C, or --model repeated) denoise with their ensemble: "
        "mean track and probability, PREFIX.spread.bw and a per-peak confidence as the narrowPeak score",
    )
    parser.add_argument("--input", required=True, type=Path, help="noisy coverage bigWig (with its X.bw.json sidecar)")
    parser.add_argument("--sizes", required=True, type=Path, help="chromosome sizes of the genome")
    parser.add_argument(
        "--chroms",
        nargs="+",
        default=None,
        help="chromosomes to denoise (default: all of the sizes file but chrM and unplaced contigs)",
    )
    parser.add_argument(
        "--out-prefix",
        required=True,
        help="writes PREFIX.track.bw, PREFIX.peakprob.bw, PREFIX.peaks.narrowPeak and PREFIX.fitness.tsv",
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="tiles per forward pass (and per input read); larger on a GPU"
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: CUDA if present, else CPU; on a GPU with bf16 tensor cores the convolutions run on the "
        "project's Triton kernels (ATACDENOISE_GPU_CONV=torch: PyTorch's)",
    )
    parser.add_argument("--threads", type=int, default=usable_cores(), help="CPU threads for the model on CPU")
    parser.add_argument(
        "--threshold", type=float, default=None, help="peak-probability threshold (default: the model's, normally 0.5)"
    )
    parser.add_argument(
        "--amp", choices=("auto", "bf16", "off"), default="auto", help="bf16 autocast; auto: bf16 on a GPU, fp32 on CPU"
    )
    parser.add_argument(
        "--interval",
        type=int,
        default=None,
        help="output bases per tile (default: the model's). Each tile also computes the model's context on both sides, "
        "so larger tiles waste less (e.g. 100000 on a CPU: ~15%% faster, more memory); outputs do not depend on it",
    )
    parser.add_argument(
        "--target-regions",
        type=Path,
        default=None,
        help="BED: denoise only these regions (outputs empty elsewhere)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="compact",
        help=f"compact (default): peak probability as {COMPACT_PROB_STORAGE}; denoised track to "
        f"{COMPACT_TRACK_STORAGE} (files 6-12x smaller); float32: the model's values unrounded",
    )


def _check_args(args: argparse.Namespace) -> None:
    if args.threads < 1:
        raise InputError(f"--threads {args.threads}: expected at least 1")
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise InputError(f"--threshold {args.threshold}: expected a probability between 0 and 1")
    if args.interval is not None and args.interval < 1:
        raise InputError(f"--interval {args.interval}: expected a positive number of bases per tile")


def run(args: argparse.Namespace) -> int:
    """Denoise the input bigWig into the three outputs and compare it with the model's training data."""
    _check_args(args)
    if len(set(args.model)) != len(args.model):
        names = [str(m) for m in args.model]
        raise InputError(f"--model: {names} names a file twice; an ensemble needs distinct models")
    for out in [*output_paths(args.out_prefix, ensemble=len(args.model) > 1).values(), fitness_path(args.out_prefix)]:
        check_writable(out)
    denoise_bigwig(
        args.model if len(args.model) > 1 else args.model[0],
        args.input,
        args.sizes,
        args.out_prefix,
        chroms=args.chroms,
        batch_size=args.batch_size,
        device=args.device,
        threads=args.threads,
        threshold=args.threshold,
        amp=args.amp,
        interval=args.interval,
        target_regions=args.target_regions,
        precision=args.precision,
    )
    return 0
