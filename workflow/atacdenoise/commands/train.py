"""Train the denoising ResNet on one or more datasets; resumes from OUT_DIR/checkpoints/last.pt.

Writes OUT_DIR/model.pt (the best epoch by validation AUPRC, or by validation
loss when the validation regions hold no peak) and OUT_DIR/history.tsv. An
interrupted run resumes from OUT_DIR/checkpoints/last.pt (or previous.pt when
that is unreadable) if settings and the datasets' content are unchanged; a
finished run's state is kept as finished.pt and never resumed. While it runs
the command holds OUT_DIR/checkpoints/train.lock, so a second training on the
same directory stops with an error. With --gpus N > 1 the command re-launches
itself under torchrun (one process per GPU, DistributedDataParallel).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

import torch

from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.genome import parse_region, read_chrom_sizes
from atacdenoise.model.dataset import open_dataset
from atacdenoise.model.network import MODEL_KEYS
from atacdenoise.model.train import TRAIN_DEFAULTS, load_settings, train

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise train``."""
    parser.add_argument(
        "--datasets", nargs="+", required=True, type=Path, help="dataset directories made by 'atacdenoise dataset'"
    )
    parser.add_argument("--sizes", required=True, type=Path, help="genome chromosome sizes file")
    parser.add_argument(
        "--val", nargs="+", required=True, help="validation regions: chrom or chrom:start-end (0-based, half-open)"
    )
    parser.add_argument("--holdout", nargs="*", default=[], help="holdout regions (never trained or validated on)")
    parser.add_argument(
        "--settings",
        default=None,
        help="model and training settings: a JSON object, or a .json/.yaml file. Model keys: "
        + ", ".join(MODEL_KEYS)
        + "; training keys (default): "
        + ", ".join(f"{k} ({v})" for k, v in TRAIN_DEFAULTS.items()),
    )
    parser.add_argument(
        "--out-dir", required=True, type=Path, help="output directory (model.pt, history.tsv, checkpoints/)"
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto: CUDA if present, else CPU; on a GPU with bf16 tensor cores the convolutions run on the "
        "project's Triton kernels (ATACDENOISE_GPU_CONV=torch: PyTorch's)",
    )
    parser.add_argument(
        "--gpus",
        type=int,
        default=1,
        help="GPUs (processes) to train on; > 1 re-launches under torchrun with DDP "
        "(with --device cpu: that many CPU processes, gloo)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch; unset: torch's own choice")


def _torchrun_command(args: argparse.Namespace) -> list[str]:
    """Build the same command under ``torchrun --standalone --nproc_per_node N``."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={args.gpus}",
        "-m",
        "atacdenoise.cli",
        "train",
        "--datasets",
        *map(str, args.datasets),
        "--sizes",
        str(args.sizes),
        "--val",
        *args.val,
        "--out-dir",
        str(args.out_dir),
        "--device",
        args.device,
        "--gpus",
        str(args.gpus),
    ]
    if args.holdout:
        cmd += ["--holdout", *args.holdout]
    if args.settings is not None:
        cmd += ["--settings", args.settings]
    if args.threads:
        cmd += ["--threads", str(max(1, args.threads // args.gpus))]
    cmd += ["-q"] if args.quiet else ["-v"] * args.verbose
    return cmd


def run(args: argparse.Namespace) -> int:
    """Train the model, re-launching under ``torchrun`` first when ``--gpus`` > 1."""
    if args.gpus < 1:
        raise InputError(f"--gpus {args.gpus}: expected at least 1")
    check_writable(args.out_dir / "model.pt")
    if args.gpus > 1 and "LOCAL_RANK" not in os.environ:
        if args.device != "cpu" and torch.cuda.device_count() < args.gpus:
            raise InputError(
                f"--gpus {args.gpus}: only {torch.cuda.device_count()} CUDA GPU(s) visible; "
                "ask the scheduler for more or lower --gpus"
            )
        cmd = _torchrun_command(args)
        log.info("launching %d processes: %s", args.gpus, " ".join(cmd))
        return subprocess.call(cmd)
    if int(os.environ.get("RANK", 0)) > 0:  # under torchrun only rank 0 reports
        logging.getLogger().setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = read_chrom_sizes(args.sizes)
    pairs = [open_dataset(d, sizes) for d in args.datasets]
    val = [parse_region(r, sizes) for r in args.val]
    holdout = [parse_region(r, sizes) for r in args.holdout]
    try:
        train(pairs, val, holdout, load_settings(args.settings), args.out_dir, device=args.device)
    finally:
        if "LOCAL_RANK" in os.environ:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    return 0
