"""Gather per-target metrics into one metrics.tsv and write the headline tables, per sample and per cell type.

``--out-metrics``: the concatenated long table (model sample cell_type seen depth
rep method metric region value). ``--out-summary``: one line per (model, sample,
depth) with the sample's cell type, whether the model was trained on it
(``seen``: yes | no), the number of replicates and, averaged over them, the
headline numbers ``{method}_{metric}`` (region ``all``), plus
``{metric}_fold_vs_{baseline}`` (the model's effective depth / its depth) and its
qualifier column ``..._q`` ("=" interpolated, ">" lower bound, "<=" upper bound)
where several numeric depths allow it. ``--out-effective-depth``: the full
effective-depth table. The ``..._by_cell_type`` outputs are the same per cell type
(every replicate of every sample of the cell type pooled), and the summary's
``seen - unseen`` lines give, per depth, the mean over seen cell types minus the
mean over unseen ones.

Which cell types are seen: the ``trained_cell_types`` recorded in ``--model``;
for a model without them (or without ``--model``), the cell types with a
``train`` row in ``--samples``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from atacdenoise.atomic import atomic_output
from atacdenoise.checks import read_sheet
from atacdenoise.evaluate.benchmark import write_metrics
from atacdenoise.evaluate.effective_depth import effective_depths
from atacdenoise.evaluate.summary import (
    cell_type_effective_depths,
    gather_metrics,
    label_by_sample,
    reference_table,
    sample_labels,
    seen_cell_types,
    sheet_cell_types,
    summarise,
    summarise_cell_types,
)

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise summary``."""
    p.add_argument("--metrics", required=True, nargs="+", type=Path, help="metrics TSVs from 'atacdenoise metrics'")
    p.add_argument(
        "--samples", required=True, type=Path, help="the sample sheet (TSV with sample, cell_type, role) of the run"
    )
    p.add_argument(
        "--model",
        type=Path,
        help="the model.pt that was benchmarked: its trained_cell_types say which cell types are seen "
        "(default, and for a model that does not record them: the cell types with a role-train row in --samples)",
    )
    p.add_argument("--out-metrics", required=True, type=Path, help="all rows, concatenated (the model's metrics.tsv)")
    p.add_argument(
        "--out-summary", required=True, type=Path, help="headline table, one line per (model, sample, depth)"
    )
    p.add_argument("--out-effective-depth", type=Path, help="effective depth of the model vs each baseline")
    p.add_argument(
        "--out-summary-by-cell-type",
        type=Path,
        help="headline table per (model, cell type, depth), then the seen - unseen gap per depth",
    )
    p.add_argument("--out-effective-depth-by-cell-type", type=Path, help="effective depth per cell type")
    p.add_argument(
        "--out-references", type=Path, help="the files that made each sample's clean reference (pooled libraries)"
    )


def _trained_cell_types(path: Path) -> list[str] | None:
    """Return the ``trained_cell_types`` of a model.pt (None when it records none); imports torch, so only here."""
    from atacdenoise.model.network import load_model

    _, meta = load_model(path)
    types = meta.get("trained_cell_types")
    return [str(t) for t in types] if types else None


def _write_table(table: pd.DataFrame, path: Path) -> None:
    with atomic_output(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="NaN", float_format="%.6g")


def run(args: argparse.Namespace) -> int:
    """Write metrics.tsv, the summary tables and the effective-depth tables."""
    metrics = gather_metrics(args.metrics)
    raw_sheet = read_sheet(args.samples)
    sheet = sheet_cell_types(raw_sheet, str(args.samples))
    trained = _trained_cell_types(args.model) if args.model else None
    seen, source = seen_cell_types(sheet, trained)
    if source == "model":
        log.info("seen cell types (trained_cell_types of %s): %s", args.model, sorted(seen))
    else:
        log.log(
            logging.WARNING if args.model else logging.INFO,
            "seen cell types (those with a role-train row in %s%s): %s",
            args.samples,
            f"; {args.model} records no trained_cell_types, so for a model trained elsewhere this may be wrong"
            if args.model
            else "",
            sorted(seen),
        )
    labels = sample_labels(sheet, seen)
    metrics = label_by_sample(metrics, labels, str(args.samples))
    write_metrics(metrics, args.out_metrics)
    effective = label_by_sample(effective_depths(metrics), labels, str(args.samples))
    if args.out_effective_depth:
        _write_table(effective, args.out_effective_depth)
    summary = summarise(metrics, effective)
    _write_table(summary, args.out_summary)
    effective_ct = cell_type_effective_depths(metrics)
    if args.out_effective_depth_by_cell_type:
        _write_table(effective_ct, args.out_effective_depth_by_cell_type)
    if args.out_summary_by_cell_type:
        _write_table(summarise_cell_types(metrics, effective_ct), args.out_summary_by_cell_type)
    if args.out_references:
        _write_table(reference_table(raw_sheet, metrics), args.out_references)
    counts = metrics.drop_duplicates("sample")["seen"].value_counts()
    log.info(
        "wrote %d metric rows to %s and %d summary lines to %s (%d samples of seen cell types, %d of unseen)",
        len(metrics),
        args.out_metrics,
        len(summary),
        args.out_summary,
        counts.get("yes", 0),
        counts.get("no", 0),
    )
    return 0
