"""The headline tables: all per-track metrics in one table, one summary line per (model, sample, depth).

:func:`gather_metrics` concatenates the per-track tables of
:mod:`atacdenoise.evaluate.benchmark` (each (sample, depth, rep) once);
:func:`label_by_sample` adds each sample's ``cell_type`` and ``seen`` (``yes`` when
the model was trained on that cell type; :func:`seen_cell_types`);
:func:`summarise` averages the headline metrics (region ``all``) over
replicates into columns ``{method}_{metric}``, plus ``{metric}_fold_vs_{baseline}``
(the model's effective depth / its depth, :mod:`atacdenoise.evaluate.effective_depth`)
and its qualifier column ``..._q`` ("=" interpolated, ">" lower bound, "<=" upper bound)
where several numeric depths allow it. :func:`summarise_cell_types` does the same per
cell type (pooling its samples and replicates) and adds the seen-vs-unseen gap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.errors import InputError
from atacdenoise.evaluate.benchmark import read_metrics
from atacdenoise.evaluate.effective_depth import effective_depths, numeric_depth
from atacdenoise.evaluate.metrics import SPREAD_METRICS

log = logging.getLogger(__name__)

METHOD_ORDER = ["noisy", "macs3_bdgpeakcall", "macs3_callpeak", "model"]


HEADLINE = [
    "pearson",
    "spearman",
    "mse",
    "mse_scaled",
    "auroc",
    "auprc",
    "ece",
    "f1",
    "peak_recall",
    "peak_precision",
    *SPREAD_METRICS,
]
#: columns of the model's error in the most / least uncertain tenth of bases: always present when the model is
#: scored, empty (NaN) unless it is an ensemble (model.ensemble > 1)
SPREAD_COLUMNS = [f"model_{m}" for m in SPREAD_METRICS]

#: the ``cell_type`` and ``seen`` labels of the gap rows of :func:`summarise_cell_types`
GAP_CELL_TYPE, GAP_SEEN = "seen - unseen", "gap"


def depth_sort_key(depth: pd.Series) -> pd.Series:
    """Numeric depths ascending, then the labels ('given', 'full') alphabetically."""
    n = numeric_depth(depth)
    return n.fillna(float("inf"))


def summarise(metrics: pd.DataFrame, effective: pd.DataFrame | None = None, by: str = "sample") -> pd.DataFrame:
    """Build the headline table from the long metrics table (and the effective-depth table).

    Parameters
    ----------
    metrics : the long table of metrics.tsv; its ``cell_type`` and ``seen`` columns, when present, are kept
        as labels of each line
    effective : effective depths of the same unit as ``by`` (``effective_depths`` per sample,
        :func:`cell_type_effective_depths` per cell type)
    by : ``"sample"``: one line per (model, sample, depth), means over replicates, with ``n_reps``;
        ``"cell_type"``: one line per (model, cell type, depth), means over every replicate of every sample
        of the cell type, with ``n_samples`` and ``n_tracks`` (needs the ``cell_type`` column)
    """
    labels = [c for c in ("cell_type", "seen") if c in metrics.columns]
    if by == "sample":
        keys = ["model", "sample", *labels, "depth"]
    elif by == "cell_type" and labels:
        keys = ["model", *labels, "depth"]
    else:
        raise ValueError(f"summarise: by={by!r} needs 'sample' or 'cell_type' (and a cell_type column)")
    all_region = metrics[(metrics["region"] == "all") & metrics["metric"].isin(HEADLINE)]
    means = all_region.groupby([*keys, "method", "metric"], sort=False)["value"].mean().reset_index()
    means["column"] = means["method"] + "_" + means["metric"]
    wide = means.pivot(index=keys, columns="column", values="value")
    methods = list(dict.fromkeys(METHOD_ORDER + list(metrics["method"].unique())))
    if "model_pearson" in wide.columns or "model_auprc" in wide.columns:
        wide = wide.reindex(columns=[*wide.columns, *(c for c in SPREAD_COLUMNS if c not in wide.columns)])
    order = [f"{m}_{k}" for m in methods for k in HEADLINE if f"{m}_{k}" in wide.columns]
    wide = wide[order]
    if by == "sample":
        counts = metrics.groupby(keys, sort=False)["rep"].nunique().rename("n_reps").to_frame()
    else:
        tracks = metrics[[*keys, "sample", "rep"]].drop_duplicates()
        counts = tracks.groupby(keys, sort=False).agg(n_samples=("sample", "nunique"), n_tracks=("rep", "size"))
    out = pd.concat([counts, wide], axis=1).reset_index()
    if effective is not None and len(effective):
        on = [k for k in keys if k in effective.columns]
        eff = effective.assign(column=effective["metric"] + "_fold_vs_" + effective["baseline"])
        folds = eff.pivot(index=on, columns="column", values="fold")
        quals = eff.pivot(index=on, columns="column", values="qualifier").add_suffix("_q")
        cols = [c for pair in zip(folds.columns, quals.columns) for c in pair]
        out = out.merge(pd.concat([folds, quals], axis=1)[cols].reset_index(), on=on, how="left")
    unit = "sample" if by == "sample" else "cell_type"
    lead = ["model", *(["seen"] if by == "cell_type" else []), unit]
    out = out.assign(_k=depth_sort_key(out["depth"]))
    out = out.sort_values([*lead, "_k", "depth"], ascending=[c != "seen" for c in lead] + [True, True], kind="stable")
    return out.drop(columns="_k").reset_index(drop=True)


# --------------------------------------------------------------------------- cell types, seen and unseen


def sheet_cell_types(sheet: pd.DataFrame, source: str = "sample sheet") -> pd.DataFrame:
    """``sample``, ``cell_type`` and ``role`` of each row of a sample sheet (an empty role is ``train``).

    ``sheet``: the sample sheet as strings (``atacdenoise.checks.read_sheet``); ``source`` names it in errors.
    """
    missing = [c for c in ("sample", "cell_type") if c not in sheet.columns]
    if missing:
        raise InputError(f"{source}: no column {missing}; expected a sample sheet with sample, cell_type (and role)")
    out = pd.DataFrame(
        {
            "sample": sheet["sample"].astype(str).str.strip(),
            "cell_type": sheet["cell_type"].astype(str).str.strip(),
            "role": sheet["role"].astype(str).str.strip() if "role" in sheet.columns else "",
        }
    )
    out["role"] = out["role"].replace("", "train")
    bad = out.loc[out["cell_type"].isin(["", "nan"]), "sample"].tolist()
    if bad:
        raise InputError(f"{source}: samples {bad} have no cell_type; every row needs one")
    dup = out.loc[out["sample"].duplicated(), "sample"].unique().tolist()
    if dup:
        raise InputError(f"{source}: duplicate sample names {dup}; every row needs a unique `sample`")
    return out


def reference_table(sheet: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Which files made each benchmarked sample's clean reference, and which noisy files were scored against it.

    One row per sample of ``metrics``: ``sample``, ``cell_type``, ``role``, ``n_reference_files``,
    ``reference`` (the sheet's ``path`` files, pooled when several; ``;``-separated), ``noisy`` (its real
    low-depth files). ``sheet``: the sample sheet as strings. A pooled reference must not hold a library
    scored against it (the sheet check refuses that); the table lets a reader see it.
    """
    rows = []
    sheet = sheet.set_index(sheet["sample"].astype(str).str.strip())
    for sample in metrics["sample"].drop_duplicates():
        row = sheet.loc[sample]
        files = [f.strip() for f in str(row.get("path", "")).split(";") if f.strip()]
        noisy = [f.strip() for f in str(row.get("noisy", "")).split(";") if f.strip() and f.strip() != "nan"]
        if str(row.get("barcodes", "")).strip() not in ("", "nan"):
            files = [f"{files[0]} (all cells of cell type {row['cell_type']})"] if files else files
        rows.append(
            {
                "sample": sample,
                "cell_type": str(row["cell_type"]).strip(),
                "role": str(row.get("role", "") or "train").strip().replace("nan", "train") or "train",
                "n_reference_files": len(files),
                "reference": "; ".join(files),
                "noisy": "; ".join(noisy),
            }
        )
    return pd.DataFrame(rows, columns=["sample", "cell_type", "role", "n_reference_files", "reference", "noisy"])


def seen_cell_types(sheet: pd.DataFrame, trained: Iterable[str] | None = None) -> tuple[set[str], str]:
    """Return the cell types the model was trained on, and where that came from.

    Parameters
    ----------
    sheet : :func:`sheet_cell_types` of the cohort
    trained : the model's ``trained_cell_types`` (model.pt metadata); None or empty when it does not record
        them: then the cell types with a ``train`` row in the sheet (right for a model this workflow trained,
        not for one pretrained elsewhere)

    Returns
    -------
    seen : the cell types counted as seen
    source : ``"model"`` or ``"sheet"``
    """
    if trained:
        seen, source = {str(t) for t in trained}, "model"
        if not seen & set(sheet["cell_type"]):
            log.warning(
                "none of the sheet's cell types %s is among the model's trained cell types %s (spelled differently?): "
                "every sample counts as unseen",
                sorted(set(sheet["cell_type"])),
                sorted(seen),
            )
    else:
        seen, source = set(sheet.loc[sheet["role"] == "train", "cell_type"]), "sheet"
    return seen, source


def sample_labels(sheet: pd.DataFrame, seen: set[str]) -> pd.DataFrame:
    """``cell_type`` and ``seen`` (``yes`` | ``no``) of each sample, indexed by sample name."""
    labels = sheet.set_index("sample")[["cell_type"]]
    return labels.assign(seen=np.where(labels["cell_type"].isin(list(seen)), "yes", "no"))


def label_by_sample(table: pd.DataFrame, labels: pd.DataFrame, source: str = "sample sheet") -> pd.DataFrame:
    """Put each sample's ``cell_type`` and ``seen`` (from :func:`sample_labels`) right after ``sample``.

    Labels already in ``table`` are replaced; a sample missing from ``labels`` is an error.
    """
    unknown = sorted(set(table["sample"]) - set(labels.index))
    if unknown:
        raise InputError(f"{source}: no row for samples {unknown} of the metrics; give the sample sheet of this run")
    out = table.drop(columns=["cell_type", "seen"], errors="ignore")
    at = out.columns.get_loc("sample") + 1
    for i, col in enumerate(("cell_type", "seen")):
        out.insert(at + i, col, out["sample"].map(labels[col]).to_numpy())
    return out


def cell_type_effective_depths(metrics: pd.DataFrame) -> pd.DataFrame:
    """Effective depth per cell type: ``model cell_type seen depth metric baseline ...`` (as per sample).

    Each method's score at a depth is the mean over every replicate of every sample of the cell type, then
    the model's effective depth is interpolated on those means exactly as for one sample. ``metrics``
    needs ``cell_type`` and ``seen`` (:func:`label_by_sample`).
    """
    eff = effective_depths(metrics.assign(sample=metrics["cell_type"])).rename(columns={"sample": "cell_type"})
    seen = metrics.drop_duplicates("cell_type").set_index("cell_type")["seen"]
    eff.insert(eff.columns.get_loc("cell_type") + 1, "seen", eff["cell_type"].map(seen).to_numpy())
    return eff


def seen_gap(by_cell_type: pd.DataFrame) -> pd.DataFrame:
    """Seen minus unseen: per (model, depth) and metric, the mean over seen cell types minus that over unseen.

    ``by_cell_type``: :func:`summarise` ``by="cell_type"``. Each cell type weighs the same. Returns one row
    per (model, depth) that has both seen and unseen cell types, with ``cell_type`` :data:`GAP_CELL_TYPE`,
    ``seen`` :data:`GAP_SEEN`, the counts summed over both groups and the ``{method}_{metric}`` columns
    (fold columns are left out: a difference of folds means little).
    """
    value_cols = [
        c for c in by_cell_type.columns if any(c.endswith(f"_{k}") for k in HEADLINE) and "_fold_vs_" not in c
    ]
    ct = by_cell_type[by_cell_type["seen"].isin(["yes", "no"])]
    means = ct.groupby(["model", "depth", "seen"], sort=False)[value_cols].mean()
    if not {"yes", "no"} <= set(ct["seen"]):
        return pd.DataFrame(columns=["model", "cell_type", "seen", "depth", "n_cell_types", "n_samples", "n_tracks"])
    yes, no = means.xs("yes", level="seen"), means.xs("no", level="seen")
    both = yes.index.intersection(no.index, sort=False)
    gap = yes.loc[both] - no.loc[both]
    counts = (
        ct.groupby(["model", "depth"], sort=False)
        .agg(n_cell_types=("cell_type", "nunique"), n_samples=("n_samples", "sum"), n_tracks=("n_tracks", "sum"))
        .loc[both]
    )
    out = pd.concat([counts, gap], axis=1).reset_index()
    out.insert(1, "cell_type", GAP_CELL_TYPE)
    out.insert(2, "seen", GAP_SEEN)
    out = out.assign(_k=depth_sort_key(out["depth"])).sort_values(["model", "_k", "depth"], kind="stable")
    return out.drop(columns="_k").reset_index(drop=True)


def summarise_cell_types(metrics: pd.DataFrame, effective: pd.DataFrame | None = None) -> pd.DataFrame:
    """Build the per-cell-type headline table: cell-type lines (seen first), then the seen-vs-unseen gaps.

    Columns: ``model cell_type seen depth n_cell_types n_samples n_tracks``, the ``{method}_{metric}``
    means and, from ``effective`` (:func:`cell_type_effective_depths`), the ``{metric}_fold_vs_{baseline}``
    columns with their qualifiers (cell-type lines only). See :func:`summarise` and :func:`seen_gap`.
    """
    table = summarise(metrics, effective, by="cell_type")
    table.insert(table.columns.get_loc("depth") + 1, "n_cell_types", 1)
    gap = seen_gap(table)
    return pd.concat([table, gap], ignore_index=True)[table.columns] if len(gap) else table


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
