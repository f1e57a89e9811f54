"""Per-chromosome training arrays of one noisy input, beside its sample's clean part.

With ``--clean-dataset DIR`` (the workflow's way) writes OUT/{chrom}.noisy.npy and OUT/meta.json
naming DIR, the sample's clean part made once by ``atacdenoise dataset-clean``. With ``--clean``
and ``--labels`` instead, makes the pair with its own clean part inside (OUT/clean), in one step.
The validation/holdout split is applied at training time; the directory appears only when complete.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.genome import read_chrom_sizes, select_chroms
from atacdenoise.io.regions import read_target_regions
from atacdenoise.model.dataset import build_dataset, build_pair_dataset

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise dataset``."""
    parser.add_argument(
        "--noisy", required=True, type=Path, help="coverage bigWig of the low-depth sample (network input)"
    )
    parser.add_argument(
        "--clean-dataset",
        type=Path,
        default=None,
        help="the sample's clean part (from 'atacdenoise dataset-clean'): chromosomes, spans and targets come from it",
    )
    parser.add_argument(
        "--clean", type=Path, default=None, help="without --clean-dataset: coverage bigWig of the deep sample"
    )
    parser.add_argument(
        "--labels", type=Path, default=None, help="without --clean-dataset: clean peaks (narrowPeak or BED)"
    )
    parser.add_argument("--sizes", required=True, type=Path, help="genome chromosome sizes file")
    parser.add_argument(
        "--chroms",
        nargs="+",
        default=None,
        help="without --clean-dataset: chromosomes to keep (default: all but chrM and unplaced contigs)",
    )
    parser.add_argument(
        "--blacklist", type=Path, default=None, help="without --clean-dataset: BED(.gz) of blacklisted regions"
    )
    parser.add_argument("--out", required=True, type=Path, help="output dataset directory")
    parser.add_argument("--sample", default="", help="without --clean-dataset: sample name (recorded in meta.json)")
    parser.add_argument("--cell-type", default="", help="without --clean-dataset: cell type of the sample")
    parser.add_argument("--depth", required=True, help="depth label of the noisy input (recorded in meta.json)")
    parser.add_argument("--rep", required=True, help="replicate of the noisy input (recorded in meta.json)")
    parser.add_argument(
        "--target-regions",
        type=Path,
        default=None,
        help="without --clean-dataset: BED, store only the span of these regions per chromosome",
    )


def _check_args(args: argparse.Namespace) -> None:
    if args.clean_dataset is not None:
        given = [f"--{k.replace('_', '-')}" for k in ("clean", "labels", "chroms", "blacklist", "target_regions")]
        given = [g for g in given if getattr(args, g[2:].replace("-", "_")) is not None]
        if given:
            raise InputError(
                f"atacdenoise dataset: {', '.join(given)} cannot go with --clean-dataset (the clean part "
                f"{args.clean_dataset} already fixes them); drop them, or re-make the clean part with them"
            )
        if args.clean_dataset.resolve() == args.out.resolve():
            raise InputError(f"atacdenoise dataset: --out {args.out} is the clean part itself; give another folder")
    elif args.clean is None or args.labels is None or not args.sample:
        raise InputError(
            "atacdenoise dataset: give --clean-dataset DIR (made by 'atacdenoise dataset-clean'), or --clean, "
            "--labels and --sample to make the pair with its own clean part"
        )


def run(args: argparse.Namespace) -> int:
    """Write the dataset directory of one pair."""
    _check_args(args)
    check_writable(args.out / "meta.json")
    genome = read_chrom_sizes(args.sizes)
    if args.clean_dataset is not None:
        build_pair_dataset(args.noisy, args.clean_dataset, genome, args.out, depth=args.depth, rep=args.rep)
        log.info("wrote %s (beside the clean part %s)", args.out, args.clean_dataset)
        return 0
    sizes = select_chroms(genome, include=args.chroms)
    target = read_target_regions(args.target_regions, sizes)
    build_dataset(
        args.noisy,
        args.clean,
        args.labels,
        genome,
        sizes,
        args.out,
        blacklist=args.blacklist,
        sample=args.sample,
        depth=args.depth,
        rep=args.rep,
        target=target,
        cell_type=args.cell_type,
    )
    log.info("wrote %s (%d chromosomes, with its own clean part)", args.out, len(sizes))
    return 0
