"""The headline tables: all per-track metrics in one table, one summary line per (model, sample, depth).

:func:`gather_metrics` concatenates the per-track tables of
:mod:`atacdenoise.evaluate.benchmark` (each (sample, depth, rep) once);
:func:`summarise` averages the headline metrics (region ``all``) over
replicates into columns ``{method}_{metric}``, plus ``{metric}_fold_vs_{baseline}``
(the model's effective depth / its depth, :mod:`atacdenoise.evaluate.effective_depth`)
and its qualifier column ``..._q`` ("=" interpolated, ">" lower bound, "<=" upper bound)
where several numeric depths allow it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from atacdenoise.errors import InputError
from atacdenoise.evaluate.benchmark import read_metrics
from atacdenoise.evaluate.effective_depth import numeric_depth

METHOD_ORDER = ["noisy", "macs3_bdgpeakcall", "macs3_callpeak", "model"]


HEADLINE = ["pearson", "spearman", "mse", "mse_scaled", "auroc", "auprc", "f1", "peak_recall", "peak_precision"]


def depth_sort_key(depth: pd.Series) -> pd.Series:
    """Numeric depths ascending, then the labels ('given', 'full') alphabetically."""
    n = numeric_depth(depth)
    return n.fillna(float("inf"))


def summarise(metrics: pd.DataFrame, effective: pd.DataFrame | None = None) -> pd.DataFrame:
    """Build the headline table from the long metrics table (and the effective-depth table)."""
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


def gather_metrics(paths: list[Path]) -> pd.DataFrame:
    """Concatenate per-track metrics tables; a row given twice (same track, method, metric, region) is an error."""
    metrics = pd.concat([read_metrics(p) for p in paths], ignore_index=True)
    dup = metrics.duplicated(["model", "sample", "depth", "rep", "method", "metric", "region"])
    if dup.any():
        r = metrics[dup].iloc[0]
        raise InputError(
            f"--metrics: the row {r['model']}/{r['sample']}/depth {r['depth']}/rep {r['rep']}/{r['method']}/"
            f"{r['metric']}/{r['region']} appears in more than one input; give each (sample, depth, rep) once"
        )
    return metrics
