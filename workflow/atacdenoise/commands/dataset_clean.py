"""A sample's clean training arrays, stored once and shared by every noisy input of the sample.

Writes DIR/{chrom}.clean.npy (the deep coverage, in the narrowest exact type) and
DIR/{chrom}.flags.npy (clean-peak labels and the usable mask as bits) with DIR/meta.json
for every chromosome; ``atacdenoise dataset --clean-dataset DIR`` then adds each noisy input.
The directory appears only when complete.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.checks import check_writable
from atacdenoise.io.genome import read_chrom_sizes, select_chroms
from atacdenoise.io.regions import read_target_regions
from atacdenoise.model.dataset import build_clean_dataset

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise dataset-clean``."""
    parser.add_argument(
        "--clean", required=True, type=Path, help="coverage bigWig of the deep sample (regression target)"
    )
    parser.add_argument(
        "--labels", required=True, type=Path, help="clean peaks (narrowPeak or BED): classification target"
    )
    parser.add_argument("--sizes", required=True, type=Path, help="genome chromosome sizes file")
    parser.add_argument(
        "--chroms", nargs="+", default=None, help="chromosomes to keep (default: all but chrM and unplaced contigs)"
    )
    parser.add_argument(
        "--blacklist", type=Path, default=None, help="BED(.gz) of blacklisted regions, masked out of the loss"
    )
    parser.add_argument(
        "--target-regions",
        type=Path,
        default=None,
        help="BED: store only the span of these regions per chromosome and mask the loss outside them",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory (the sample's clean part)")
    parser.add_argument("--sample", required=True, help="sample name (recorded in meta.json)")
    parser.add_argument(
        "--cell-type",
        default="",
        help="cell type of the sample (recorded in meta.json; a model trained on it lists it as trained_cell_types)",
    )


def run(args: argparse.Namespace) -> int:
    """Write the clean part of one sample."""
    check_writable(args.out / "meta.json")
    genome = read_chrom_sizes(args.sizes)
    sizes = select_chroms(genome, include=args.chroms)
    target = read_target_regions(args.target_regions, sizes)
    build_clean_dataset(
        args.clean,
        args.labels,
        genome,
        sizes,
        args.out,
        blacklist=args.blacklist,
        sample=args.sample,
        target=target,
        cell_type=args.cell_type,
    )
    log.info("wrote %s (%d chromosomes)", args.out, len(sizes))
    return 0
