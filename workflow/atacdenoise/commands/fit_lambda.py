"""Fit the flat per-chromosome λ that makes the bdgpeakcall route reproduce a published peak set.

Published label sets (AtacWorks' among them) took λ from whole chromosomes;
on a slice of one, or on another build of the track, the mean coverage gives
another λ and other peaks. With a flat λ the route calls exactly the runs where
the count reaches a threshold, so every threshold for λ between ``--span``
× the mean is tried in-process (no MACS3) and the base-level Jaccard with the
published peaks decides. Writes a TSV, one row per chromosome plus a row
``all`` (Jaccard over all chromosomes): chrom, length, mean, lambda,
lambda_low, lambda_high (any λ in (low, high] gives the same peaks), ratio
(λ / mean), min_count_mean, min_count_fit, jaccard_mean, jaccard_fit. Give it
to ``atacdenoise peaks --lambda-table`` and check the figures with the real route.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.atomic import atomic_output
from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import check_bigwig, read_bigwig
from atacdenoise.io.genome import DEFAULT_EXCLUDE, read_chrom_sizes, select_chroms
from atacdenoise.io.intervals import read_bed
from atacdenoise.peaks import macs3 as pk

log = logging.getLogger(__name__)


class BigWigTracks(Mapping):
    """chrom -> float32[n_bases] read from a bigWig on access (one chromosome in memory at a time)."""

    def __init__(self, path: Path, chroms: list[str]):
        self.path, self.chroms = path, list(chroms)

    def __getitem__(self, chrom: str) -> np.ndarray:
        if chrom not in self.chroms:
            raise KeyError(chrom)
        return read_bigwig(self.path, chrom)

    def __iter__(self) -> Iterator[str]:
        return iter(self.chroms)

    def __len__(self) -> int:
        return len(self.chroms)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--track", required=True, type=Path, help="coverage bigWig the peaks were called on")
    parser.add_argument("--peaks", required=True, type=Path, help="published peaks (BED or narrowPeak)")
    parser.add_argument("--sizes", required=True, type=Path, help="chromosome sizes file (chrom<TAB>length)")
    parser.add_argument("--out", required=True, type=Path, help="output TSV")
    parser.add_argument("--chroms", nargs="+", default=None, help="only these chromosomes (None: all in --sizes)")
    parser.add_argument("--exclude", default=DEFAULT_EXCLUDE, help="regex of chromosomes to leave out ('' keeps all)")
    parser.add_argument("--cutoff", type=float, default=3.0, help="bdgpeakcall -c of the route")
    parser.add_argument("--min-length", type=int, default=200, help="bdgpeakcall -l of the route")
    parser.add_argument("--max-gap", type=int, default=30, help="bdgpeakcall -g of the route")
    parser.add_argument(
        "--mode",
        choices=["chrom", "scale"],
        default="chrom",
        help="chrom: one lambda per chromosome; scale: one factor times every chromosome's mean",
    )
    parser.add_argument(
        "--span", nargs=2, type=float, default=[0.25, 4.0], metavar=("LOW", "HIGH"), help="lambda / mean searched"
    )


def run(args: argparse.Namespace) -> int:
    if not 0 < args.span[0] < args.span[1]:
        raise InputError(f"--span {args.span[0]} {args.span[1]}: expected 0 < LOW < HIGH")
    header = read_chrom_sizes(args.sizes)
    sizes = select_chroms(header, include=args.chroms, exclude_regex=args.exclude or None)
    check_bigwig(args.track, sizes)
    published = read_bed(args.peaks, sizes)
    if published.empty:
        raise InputError(
            f"{args.peaks}: no peaks on the selected chromosomes ({', '.join(list(sizes)[:5])}); nothing to fit"
        )
    chroms = [c for c in sizes if c in set(published["chrom"])]
    skipped = [c for c in sizes if c not in chroms]
    if skipped:
        log.warning(
            "%s: no published peaks on %d chromosome(s) (e.g. %s): left out of the fit",
            args.peaks,
            len(skipped),
            skipped[0],
        )
    table, overall = pk.fit_lambda(
        BigWigTracks(args.track, chroms),
        published,
        args.cutoff,
        args.min_length,
        args.max_gap,
        args.mode,
        tuple(args.span),
    )
    for row in table.to_dict("records"):
        log.info(
            "%s: mean %.4g, lambda %.6g (%.4g x mean; any in (%.6g, %.6g]), Jaccard %.4f at the mean, %.4f fitted",
            row["chrom"],
            row["mean"],
            row["lambda"],
            row["ratio"],
            row["lambda_low"],
            row["lambda_high"],
            row["jaccard_mean"],
            row["jaccard_fit"],
        )
    log.info(
        "all chromosomes: Jaccard %.4f at the mean, %.4f fitted (mode %s)",
        overall["jaccard_mean"],
        overall["jaccard_fit"],
        args.mode,
    )
    total = {
        "chrom": "all",
        "length": int(table["length"].sum()),
        "jaccard_mean": overall["jaccard_mean"],
        "jaccard_fit": overall["jaccard_fit"],
    }
    if args.mode == "scale":
        total["ratio"] = overall["scale"]
    out = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    with atomic_output(args.out) as tmp:
        out.to_csv(tmp, sep="\t", index=False, float_format="%.6g", na_rep="NA")
    return 0
