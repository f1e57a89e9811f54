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

import pandas as pd

from atacdenoise.atomic import atomic_output
from atacdenoise.commands.metrics import read_metrics, write_metrics
from atacdenoise.errors import InputError
from atacdenoise.evaluate.effective_depth import effective_depths, numeric_depth

log = logging.getLogger(__name__)

METHOD_ORDER = ["noisy", "macs3_bdgpeakcall", "macs3_callpeak", "model"]
HEADLINE = ["pearson", "spearman", "mse", "mse_scaled", "auroc", "auprc", "f1", "peak_recall", "peak_precision"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", required=True, nargs="+", type=Path, help="metrics TSVs from 'atacdenoise metrics'")
    p.add_argument("--out-metrics", required=True, type=Path, help="all rows, concatenated (the model's metrics.tsv)")
    p.add_argument(
        "--out-summary", required=True, type=Path, help="headline table, one line per (model, sample, depth)"
    )
    p.add_argument("--out-effective-depth", type=Path, help="effective depth of the model vs each baseline")


def depth_sort_key(depth: pd.Series) -> pd.Series:
    """Numeric depths ascending, then the labels ('given', 'full') alphabetically."""
    n = numeric_depth(depth)
    return n.fillna(float("inf"))


def summarise(metrics: pd.DataFrame, effective: pd.DataFrame | None = None) -> pd.DataFrame:
    """The headline table from the long metrics table (and the effective-depth table)."""
    keys = ["model", "sample", "depth"]
    all_region = metrics[(metrics["region"] == "all") & metrics["metric"].isin(HEADLINE)]
    means = all_region.groupby([*keys, "method", "metric"], sort=False)["value"].mean().reset_index()
    means["column"] = means["method"] + "_" + means["metric"]
    wide = means.pivot(index=keys, columns="column", values="value")
    methods = list(dict.fromkeys(METHOD_ORDER + list(metrics["method"].unique())))
    order = [f"{m}_{k}" for m in methods for k in HEADLINE if f"{m}_{k}" in wide.columns]
    wide = wide[order]
    n_reps = metrics.groupby(keys, sort=False)["rep"].nunique().rename("n_reps")
    out = pd.concat([n_reps, wide], axis=1).reset_index()
    if effective is not None and len(effective):
        eff = effective.assign(column=effective["metric"] + "_fold_vs_" + effective["baseline"])
        folds = eff.pivot(index=keys, columns="column", values="fold")
        quals = eff.pivot(index=keys, columns="column", values="qualifier").add_suffix("_q")
        cols = [c for pair in zip(folds.columns, quals.columns) for c in pair]
        out = out.merge(pd.concat([folds, quals], axis=1)[cols].reset_index(), on=keys, how="left")
    out = out.assign(_k=depth_sort_key(out["depth"])).sort_values(["model", "sample", "_k", "depth"], kind="stable")
    return out.drop(columns="_k").reset_index(drop=True)


def run(args: argparse.Namespace) -> int:
    tables = [read_metrics(p) for p in args.metrics]
    metrics = pd.concat(tables, ignore_index=True)
    dup = metrics.duplicated(["model", "sample", "depth", "rep", "method", "metric", "region"])
    if dup.any():
        r = metrics[dup].iloc[0]
        raise InputError(
            f"--metrics: the row {r['model']}/{r['sample']}/depth {r['depth']}/rep {r['rep']}/{r['method']}/{r['metric']}/{r['region']} "
            "appears in more than one input; give each (sample, depth, rep) once"
        )
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
