"""The ``atacdenoise`` command line: one entry point, one subcommand per workflow step.

Each subcommand lives in ``atacdenoise/commands/<name>.py`` with a module
docstring (its help), ``add_arguments(parser)`` and ``run(args)``; modules are
imported only when their subcommand runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from atacdenoise import __version__
from atacdenoise.errors import InputError

#: subcommand -> (module under atacdenoise.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "count": ("count", "count a BAM's usable fragments once, for all its subsamples (subsample --counts)"),
    "pool": ("pool", "pool several libraries (replicates, donors) into one deep reference (BAM or fragments)"),
    "subsample": ("subsample", "subsample a BAM (pair-aware, seeded) or a fragments file to a target depth"),
    "cells": ("cells", "pseudobulk fragments of one cell type, optionally N cells drawn with a seed"),
    "simulate-cells": (
        "simulate_cells",
        "test fixture: single-cell fragments and barcodes simulated from a real bulk BAM's cut sites",
    ),
    "coverage": ("coverage", "Tn5 cut-site coverage bigWig from a BAM or fragments file"),
    "peaks": ("peaks", "MACS3 bdgcmp/bdgpeakcall peaks and -log10 p track from a coverage bigWig"),
    "callpeak": ("callpeak", "MACS3 callpeak baseline on Tn5 cut sites (ATAC settings)"),
    "fit-lambda": ("fit_lambda", "fit the flat per-chromosome lambda that reproduces a published peak set"),
    "dataset-clean": ("dataset_clean", "a sample's clean training arrays (deep track, peak labels, mask), stored once"),
    "dataset": ("dataset", "a noisy input's training arrays, beside its sample's clean part (or with its own)"),
    "model-info": ("model_info", "parameter count and receptive field of a model configuration"),
    "train": ("train", "train the denoising ResNet (GPU if present, else CPU); resumes from checkpoints"),
    "infer": ("infer", "denoise a coverage bigWig: track, peak-probability bigWig and narrowPeak"),
    "threshold": ("threshold", "peaks from a peak-probability bigWig at another threshold (no model run)"),
    "metrics": ("metrics", "benchmark metrics of model, noisy input and MACS3 against the clean data"),
    "plots": ("plots", "figures for the report: PR curves, metric vs depth, track snapshots"),
    "summary": ("summary", "headline table (summary.tsv) from metrics.tsv files"),
    "qc": ("qc", "input QC of a BAM, fragments file or bigWig: FRiP, TSS enrichment, duplicates, fragment lengths"),
    "qc-summary": ("qc_summary", "gather the input-QC rows into one table; fragment-length and depth figures"),
    "check": ("check", "validate the config, the sample sheet and every input file before a run"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the parser of every subcommand; only ``only``'s options are loaded (``--help`` stays fast)."""
    parser = argparse.ArgumentParser(prog="atacdenoise", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"atacdenoise {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(
            name, help=help_text, description=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        g = p.add_argument_group("logging")
        g.add_argument("-v", "--verbose", action="count", default=0, help="more detail (debug)")
        g.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
        if name == only:
            importlib.import_module(f"atacdenoise.commands.{module}").add_arguments(p)
        else:
            p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _native_conv_possible() -> bool:
    """Tell whether the native convolution of CPU inference can be built (checked without importing torch)."""
    from atacdenoise import native

    return not native.off("ATACDENOISE_NATIVE_CONV") and native.compiler() is not None


def run_command(argv: list[str]) -> int:
    """Parse ``argv`` (``[subcommand, options...]``) and run it in this process; return its exit status.

    Logging is left as it is and :class:`InputError` propagates: what tests and
    notebooks want. :func:`main` is this plus logging set-up and error reporting.
    """
    return _run(_parse(argv))


def _parse(argv: list[str]) -> argparse.Namespace:
    chosen = next((a for a in argv if a in COMMANDS), None)
    return build_parser(only=chosen).parse_args(argv)


def _run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"atacdenoise.commands.{COMMANDS[args.command][0]}")
    return int(module.run(args) or 0)


def main(argv: list[str] | None = None) -> int:
    """Run the ``atacdenoise`` command line: exit status 0 on success, 2 on a bad input (one ERROR line)."""
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if a in COMMANDS), None)
    if chosen == "infer" and _native_conv_possible():
        # PyTorch's OpenMP threads otherwise spin after each of its small ops (ReLU, adds, 1x1 convs) and take the
        # cores the native convolution's threads need next: 5-10 % of CPU inference (it costs PyTorch's own
        # convolutions as much, hence only when the native one can run). Read once, when torch loads.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = _parse(argv)
    from atacdenoise.log import setup_logging

    setup_logging(-1 if args.quiet else args.verbose)
    try:
        return _run(args)
    except InputError as exc:
        logging.getLogger("atacdenoise").error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
