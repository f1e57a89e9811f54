"""Gather the input-QC rows of ``atacdenoise qc`` into one table and draw its two figures.

``--out-table``: the rows concatenated (every region's ``cut_sites_per_mb:<region>``
column, NA where an input lacks it). ``--out-plot``: fragment-length
histograms, normalised, one line per input (``--fraglen``, in the order of
``--qc``). ``--out-depth-plot``: cut sites per Mb of each region, per input.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.atomic import atomic_output
from atacdenoise.errors import InputError
from atacdenoise.evaluate.plots import plot_cut_site_density, plot_fragment_lengths
from atacdenoise.evaluate.qc import REGION_PREFIX, gather_qc
from atacdenoise.reads.fraglen import read_fraglen

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise qc-summary``."""
    p.add_argument("--qc", required=True, nargs="+", type=Path, help="QC rows from 'atacdenoise qc --out'")
    p.add_argument(
        "--fraglen",
        required=True,
        nargs="+",
        type=Path,
        help="fragment-length tables from 'atacdenoise qc --out-fraglen', in the order of --qc",
    )
    p.add_argument("--out-table", required=True, type=Path, help="all rows, one per input (TSV)")
    p.add_argument("--out-plot", required=True, type=Path, help="fragment-length figure (.png or .svg)")
    p.add_argument("--out-depth-plot", required=True, type=Path, help="cut sites per Mb figure (.png or .svg)")


def _check_args(args: argparse.Namespace) -> None:
    if len(args.qc) != len(args.fraglen):
        raise InputError(
            f"--qc has {len(args.qc)} file(s) but --fraglen {len(args.fraglen)}: give one fragment-length table per "
            "QC row, in the same order"
        )


def run(args: argparse.Namespace) -> int:
    """Write the QC table and the two figures."""
    _check_args(args)
    table = gather_qc(args.qc)
    hists = [read_fraglen(p) for p in args.fraglen]
    with atomic_output(args.out_table) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="NA", float_format="%.6g")
    plot_fragment_lengths(table, hists, args.out_plot)
    plot_cut_site_density(table, args.out_depth_plot, prefix=REGION_PREFIX)
    log.info("wrote %d QC rows to %s", len(table), args.out_table)
    return 0
