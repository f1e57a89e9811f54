"""Gather per-target metrics into one metrics.tsv and write the headline table.

``--out-metrics``: the concatenated long table (model sample depth rep method
metric region value). ``--out-summary``: one line per (model, sample, depth)
with the number of replicates and, averaged over them, the headline numbers
``{method}_{metric}`` (region ``all``), plus ``{metric}_fold_vs_{baseline}``
(the model's effective depth / its depth) and its qualifier column
``..._q`` ("=" interpolated, ">" lower bound, "<=" upper bound) where several
numeric depths allow it. ``--out-effective-depth``: the full effective-depth
table.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.atomic import atomic_output
from atacdenoise.evaluate.benchmark import write_metrics
from atacdenoise.evaluate.effective_depth import effective_depths
from atacdenoise.evaluate.summary import gather_metrics, summarise

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise summary``."""
    p.add_argument("--metrics", required=True, nargs="+", type=Path, help="metrics TSVs from 'atacdenoise metrics'")
    p.add_argument("--out-metrics", required=True, type=Path, help="all rows, concatenated (the model's metrics.tsv)")
    p.add_argument(
        "--out-summary", required=True, type=Path, help="headline table, one line per (model, sample, depth)"
    )
    p.add_argument("--out-effective-depth", type=Path, help="effective depth of the model vs each baseline")


def run(args: argparse.Namespace) -> int:
    """Write metrics.tsv, summary.tsv and the effective-depth table."""
    metrics = gather_metrics(args.metrics)
    write_metrics(metrics, args.out_metrics)
    effective = effective_depths(metrics)
    if args.out_effective_depth:
        with atomic_output(args.out_effective_depth) as tmp:
            effective.to_csv(tmp, sep="\t", index=False, na_rep="NaN", float_format="%.6g")
    summary = summarise(metrics, effective)
    with atomic_output(args.out_summary) as tmp:
        summary.to_csv(tmp, sep="\t", index=False, na_rep="NaN", float_format="%.6g")
    log.info(
        "wrote %d metric rows to %s and %d summary lines to %s",
        len(metrics),
        args.out_metrics,
        len(summary),
        args.out_summary,
    )
    return 0
