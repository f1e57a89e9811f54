"""Denoise a coverage bigWig with a trained model: denoised track, peak-probability track and peaks.

Every base of every selected chromosome is denoised (tails included): tiles of
the model's ``interval`` with ``pad`` bases of context, zeros beyond the ends.
The input is streamed chunk by chunk (``--batch-size`` tiles), so memory does not
grow with the genome. Writes, each atomically:

* ``PREFIX.track.bw``: denoised coverage, float32 (not rounded);
* ``PREFIX.peakprob.bw``: per-base peak probability (sigmoid of the logits);
* ``PREFIX.peaks.narrowPeak``: regions of probability >= threshold, gaps of at
  most 30 bp merged, at least 200 bp long (as ``macs3 bdgpeakcall -c T -l 200 -g 30``
  on the peakprob track), summit at the denoised track's maximum, score from the
  probability.

The coverage must be made with the model's preprocessing (smoothing, Tn5 shifts,
CPM): its sidecar ``X.bw.json`` is checked against the model and a mismatch is an
error (a bigWig without a sidecar is accepted with a warning).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from atacdenoise.atomic import remove_stale_temps, temp_path_for
from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import bigwig_total, check_bigwig, open_bigwig
from atacdenoise.io.genome import read_chrom_sizes, select_chroms
from atacdenoise.io.intervals import NARROWPEAK_COLUMNS, write_narrowpeak
from atacdenoise.io.trackwriter import TrackWriterProcess
from atacdenoise.log import progress
from atacdenoise.model.infer import (
    PeakStream,
    TileRunner,
    check_context,
    check_preprocessing,
    select_amp,
    select_device,
)
from atacdenoise.peaks.threshold import (
    MAX_GAP,
    MIN_LENGTH,
)  # the peak rules of the output contract, shared with `threshold`

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="trained model file (model.pt)")
    parser.add_argument("--input", required=True, type=Path, help="noisy coverage bigWig (with its X.bw.json sidecar)")
    parser.add_argument("--sizes", required=True, type=Path, help="chromosome sizes of the genome")
    parser.add_argument(
        "--chroms",
        nargs="+",
        default=None,
        help="chromosomes to denoise (default: all of the sizes file but chrM and unplaced contigs)",
    )
    parser.add_argument(
        "--out-prefix", required=True, help="writes PREFIX.track.bw, PREFIX.peakprob.bw, PREFIX.peaks.narrowPeak"
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="tiles per forward pass (and per input read); larger on a GPU"
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA if present, else CPU"
    )
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="CPU threads for the model on CPU"
    )
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


def output_paths(prefix: str) -> dict[str, Path]:
    """The three outputs of ``--out-prefix``."""
    return {
        "track": Path(f"{prefix}.track.bw"),
        "peakprob": Path(f"{prefix}.peakprob.bw"),
        "peaks": Path(f"{prefix}.peaks.narrowPeak"),
    }


def read_sidecar(path: Path) -> dict | None:
    """The preprocessing sidecar ``X.bw.json`` of a coverage bigWig, or None when there is none."""
    sidecar = path.with_name(path.name + ".json")
    if not sidecar.exists():
        return None
    try:
        data = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(
            f"{sidecar}: unreadable preprocessing sidecar ({exc}); re-make the coverage or delete the sidecar"
        ) from exc
    if not isinstance(data, dict):
        raise InputError(f"{sidecar}: expected a JSON object of preprocessing settings, found {type(data).__name__}")
    return data


def _check_args(args: argparse.Namespace) -> None:
    if args.threads < 1:
        raise InputError(f"--threads {args.threads}: expected at least 1")
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise InputError(f"--threshold {args.threshold}: expected a probability between 0 and 1")
    if args.interval is not None and args.interval < 1:
        raise InputError(f"--interval {args.interval}: expected a positive number of bases per tile")


def run(args: argparse.Namespace) -> int:
    from atacdenoise.model.network import depth_scale, load_model, transform_input

    _check_args(args)
    for out in output_paths(args.out_prefix).values():
        check_writable(out)
    sizes = select_chroms(read_chrom_sizes(args.sizes), include=args.chroms)
    check_bigwig(args.input, sizes)
    device = select_device(args.device)
    model, meta = load_model(args.model, map_location="cpu")
    sidecar = read_sidecar(args.input)
    if sidecar is None:
        log.warning(
            "%s: no preprocessing sidecar (%s.json): cannot check it was made like the model's training data",
            args.input,
            args.input.name,
        )
    else:
        check_preprocessing(sidecar, meta.get("preprocessing", {}), str(args.input))
    interval, pad = int(args.interval or meta["window"]["interval"]), int(meta["window"]["pad"])
    threshold = float(meta.get("threshold", 0.5)) if args.threshold is None else args.threshold
    check_context(model.receptive_field, pad)
    amp = select_amp(args.amp, device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    input_transform = meta.get("input_transform", {"kind": "none"})
    scale = 1.0
    if input_transform.get("kind") == "depth":
        # the total over every chromosome of the genome selection (not only --chroms), as in training
        total = bigwig_total(args.input, select_chroms(read_chrom_sizes(args.sizes)))
        scale = depth_scale(input_transform, total, str(args.input))
        log.info(
            "depth normalisation: %s has total signal %.6g; input x %.4g to the model's reference %.6g",
            args.input,
            total,
            scale,
            input_transform["reference"],
        )
    runner = TileRunner(
        model,
        device,
        interval,
        pad,
        args.batch_size,
        transform=lambda x: transform_input(x, input_transform, scale),
        amp=amp,
    )
    _log_device(device, amp, args.threads)
    log.info(
        "%s: %d chromosomes, %s bp; tiles of %d bp with %d bp context, %d per batch; peaks at probability >= %g",
        args.input,
        len(sizes),
        f"{sum(sizes.values()):,}",
        interval,
        pad,
        args.batch_size,
        threshold,
    )

    paths = output_paths(args.out_prefix)
    t0 = time.perf_counter()
    n_peaks = denoise_genome(runner, args.input, sizes, paths, threshold)
    wall = time.perf_counter() - t0
    _log_summary(runner, device, wall, n_peaks, paths)
    return 0


def read_values(bw, chrom: str, lo: int, hi: int) -> np.ndarray:
    """float32[hi - lo] of an open bigWig (:func:`atacdenoise.io.bigwig.open_bigwig`), bases without data or NaN as 0."""
    return np.nan_to_num(bw.values(chrom, lo, hi, fill=0.0), copy=False)


def denoise_genome(
    runner: TileRunner, input_path: Path, sizes: dict[str, int], paths: dict[str, Path], threshold: float
) -> int:
    """Stream every chromosome through the model into the three outputs; returns the number of peaks.

    Chromosomes go in ``sizes`` order (the bigWig order). The input is read one
    chunk ahead in a thread (:meth:`TileRunner.run_chromosome`); each bigWig is
    written by its own child process (:class:`TrackWriterProcess`, which deflates
    blocks on a thread pool and streams zoom levels to disk, so memory stays
    bounded for any genome); peaks are called in a thread while
    the model computes the next chunk. The three files appear together at the end,
    renamed from temporary names; on any error none is left behind.
    """
    bw = open_bigwig(input_path)
    tmp = {key: temp_path_for(path) for key, path in paths.items()}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
    writers = {key: TrackWriterProcess(tmp[key], sizes) for key in ("track", "peakprob")}
    tables: list[pd.DataFrame] = []
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer") as pool:
            pending: list[Future] = []

            def hand_on(chrom: str, start: int, track: np.ndarray, prob: np.ndarray, peaks: PeakStream) -> None:
                writers["track"].add(chrom, start, track)
                writers["peakprob"].add(chrom, start, prob)
                peaks.add(start, prob, track)

            for chrom, length in progress(sizes.items(), total=len(sizes), desc="denoise", unit="chrom"):
                peaks = PeakStream(chrom, threshold, min_length=MIN_LENGTH, max_gap=MAX_GAP)

                def read(lo: int, hi: int, chrom: str = chrom) -> np.ndarray:
                    return read_values(bw, chrom, lo, hi)

                for start, track, prob in runner.run_chromosome(read, length):
                    pending.append(pool.submit(hand_on, chrom, start, track, prob, peaks))
                    while len(pending) > 2:
                        pending.pop(0).result()
                while pending:
                    pending.pop(0).result()
                table = peaks.finish()
                log.debug(
                    "%s: %d peaks (peak caller held at most %s bases)", chrom, len(table), f"{peaks.max_buffered:,}"
                )
                tables.append(table)
        for writer in writers.values():
            writer.close()
        peaks_df = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=NARROWPEAK_COLUMNS)
        write_narrowpeak(peaks_df, tmp["peaks"])
        for key, path in paths.items():
            os.replace(tmp[key], path)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        for path in tmp.values():
            path.unlink(missing_ok=True)
        raise
    finally:
        bw.close()
    return len(peaks_df)


def _log_device(device: torch.device, amp: torch.dtype | None, threads: int) -> None:
    precision = "bf16 autocast" if amp is not None else "fp32"
    if device.type == "cuda":
        log.info("device: cuda (%s), %s", torch.cuda.get_device_name(device), precision)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        log.info("device: cpu, %d threads, %s", threads, precision)


def _log_summary(runner: TileRunner, device: torch.device, wall: float, n_peaks: int, paths: dict[str, Path]) -> None:
    s = runner.stats
    log.info(
        "denoised %s bp in %d tiles (%d batches) in %.1f s: %s bp/s overall, model time %.1f s",
        f"{s.bases:,}",
        s.tiles,
        s.chunks,
        wall,
        f"{s.bases / max(wall, 1e-9):,.0f}",
        s.compute_s,
    )
    if device.type == "cuda":
        log.info(
            "GPU %s: %.2f s of GPU time, peak GPU memory %.2f GiB",
            torch.cuda.get_device_name(device),
            s.gpu_seconds(),
            torch.cuda.max_memory_allocated(device) / 2**30,
        )
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    log.info("peak memory (RSS) of the main process: %.2f GiB", rss)
    log.info("%d peaks; wrote %s", n_peaks, ", ".join(str(p) for p in paths.values()))
