"""Report figures: PR curves, reliability diagrams, metric vs depth, track snapshots (matplotlib, Agg backend).

Each ``plot_*`` function takes arrays or DataFrames, writes one PNG or SVG
(format from the file suffix) atomically and returns nothing. Axes carry units,
panels say which sample and depth they show, and colours are fixed per method
so figures can be compared side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from atacdenoise.atomic import atomic_output
from atacdenoise.evaluate.effective_depth import depth_unit, numeric_depth

log = logging.getLogger(__name__)

#: fixed colours and legend names per method
COLORS = {
    "clean": "#000000",
    "noisy": "#7f7f7f",
    "macs3_bdgpeakcall": "#1f77b4",
    "macs3_callpeak": "#ff7f0e",
    "model": "#d62728",
    "model_t0.5": "#f08080",
}
LABELS = {
    "clean": "clean (deep)",
    "noisy": "noisy input",
    "macs3_bdgpeakcall": "MACS3 bdgpeakcall",
    "macs3_callpeak": "MACS3 callpeak",
    "model": "denoised (model)",
    "model_t0.5": "model, peaks at p >= 0.5",
}
METRIC_LABELS = {
    "pearson": "Pearson r (per base)",
    "spearman": "Spearman rho (per base)",
    "mse": "MSE (per base, cut sites²)",
    "mse_scaled": "MSE, depth-scaled (cut sites²)",
    "auroc": "AUROC (per base)",
    "auprc": "AUPRC (per base)",
    "ece": "expected calibration error (per base)",
    "precision": "precision (per base)",
    "recall": "recall (per base)",
    "f1": "F1 (per base)",
    "specificity": "specificity (per base)",
    "jaccard": "Jaccard (per base)",
    "peak_recall": "clean peaks found (fraction)",
    "peak_precision": "called peaks in clean peaks (fraction)",
}


def _color(name: str) -> str:
    if name in COLORS:
        return COLORS[name]
    palette = plt.get_cmap("tab10").colors
    return matplotlib.colors.to_hex(palette[(sum(map(ord, name)) % 7) + 3])


def _label(name: str) -> str:
    return LABELS.get(name, name)


def depth_label(depth: str) -> str:
    """'30000' -> '30,000 fragments', 'c50' -> '50 cells'; labels such as 'given' stay as they are."""
    n = numeric_depth(pd.Series([str(depth)])).iloc[0]
    if pd.isna(n):
        return f"depth {depth}"
    return f"{int(n):,} cells" if str(depth).startswith("c") else f"{int(n):,} fragments"


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 150) -> None:
    """Save ``fig`` atomically (format from the suffix: .png, .svg, .pdf) and close it."""
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    log.info("wrote %s", path)


def _depth_order(depths: Sequence[str]) -> list[str]:
    s = pd.Series(sorted(set(depths)))
    key = numeric_depth(s).fillna(np.inf)
    return s.iloc[np.lexsort((s.to_numpy(), key.to_numpy()))].tolist()


# --------------------------------------------------------------------------- PR curves


def _evaluated(masked: bool) -> str:
    """Say which bases the metrics cover, for figure titles (the blacklist only when one was set)."""
    return "holdout, blacklist masked" if masked else "holdout"


def plot_pr_curves(curves: list[dict], out: str | Path, title: str = "") -> str:
    """Precision-recall curves per method, one panel per (sample, depth), replicates overlaid.

    Parameters
    ----------
    curves : list of dict
        Contents of the ``--pr-curves`` NPZ files of ``atacdenoise metrics``: keys
        ``sample, depth, rep, methods, prevalence, recall__M, precision__M, auprc__M``
        and optionally ``point__M`` (recall, precision of M's binary calls) and
        ``blacklist`` (the masked file, empty when none).

    Returns the figure's title (it names the blacklist only when one was used).
    """
    if not curves:
        raise ValueError("plot_pr_curves: no curves given")
    samples = list(dict.fromkeys(str(c["sample"]) for c in curves))
    depths = _depth_order([str(c["depth"]) for c in curves])
    fig, axes = plt.subplots(len(samples), len(depths), figsize=(4.2 * len(depths), 4.0 * len(samples)), squeeze=False)
    for i, sample in enumerate(samples):
        for j, depth in enumerate(depths):
            ax = axes[i, j]
            mine = [c for c in curves if str(c["sample"]) == sample and str(c["depth"]) == depth]
            if not mine:
                ax.set_axis_off()
                continue
            methods = list(dict.fromkeys(str(m) for c in mine for m in np.atleast_1d(c["methods"])))
            for method in methods:
                auprcs = [float(c[f"auprc__{method}"]) for c in mine if f"auprc__{method}" in c]
                for k, c in enumerate(mine):
                    if f"recall__{method}" not in c or np.size(c[f"recall__{method}"]) == 0:
                        continue
                    label = f"{_label(method)} (AUPRC {np.nanmean(auprcs):.3f})" if k == 0 else None
                    ax.plot(
                        c[f"recall__{method}"],
                        c[f"precision__{method}"],
                        drawstyle="steps-pre",
                        color=_color(method),
                        lw=1.5 if k == 0 else 0.8,
                        alpha=1.0 if k == 0 else 0.5,
                        label=label,
                    )
                    if f"point__{method}" in c:
                        r, p = np.asarray(c[f"point__{method}"], dtype=float)
                        ax.plot(
                            [r],
                            [p],
                            marker="o",
                            ms=6,
                            color=_color(method),
                            mec="white",
                            label="binary calls" if (k == 0 and method == methods[-1]) else None,
                        )
            prev = np.nanmean([float(c["prevalence"]) for c in mine])
            if np.isfinite(prev):
                ax.axhline(prev, ls=":", color="0.5", lw=1, label=f"chance ({prev:.3f})")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("recall (fraction of clean-peak bases)")
            ax.set_ylabel("precision (fraction of bases in clean peaks)")
            reps = f", {len(mine)} replicates" if len(mine) > 1 else ""
            ax.set_title(f"{sample}, {depth_label(depth)}{reps}", fontsize=10)
            ax.legend(fontsize=7, loc="upper right")
            ax.grid(alpha=0.3)
    masked = any(str(c.get("blacklist", "")) not in ("", "None") for c in curves)
    title = title or f"Per-base precision-recall against the clean peaks ({_evaluated(masked)})"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, out)
    return title


# --------------------------------------------------------------------------- reliability diagram


def plot_reliability(curves: list[dict], out: str | Path, title: str = "") -> str:
    """Reliability diagram of the model's peak probability, one panel per (sample, depth), replicates overlaid.

    Parameters
    ----------
    curves : list of dict
        Contents of the ``--pr-curves`` NPZ files of ``atacdenoise metrics``: keys ``sample, depth`` and,
        per method M whose scores are probabilities, ``calib_count__M``, ``calib_mean_prob__M``,
        ``calib_frac_pos__M`` (per equal-width probability bin) and ``ece__M``.

    Each bin's mean predicted probability is drawn against the fraction of its bases inside clean peaks
    (a calibrated probability lies on the diagonal); bars below give the bases per bin (log scale).
    Returns the figure's title.
    """
    if not curves:
        raise ValueError("plot_reliability: no curves given")
    methods = list(dict.fromkeys(k.split("__", 1)[1] for c in curves for k in c if k.startswith("calib_count__")))
    if not methods:
        raise ValueError("plot_reliability: the curve files hold no calibration bins (no model probability scored)")
    samples = list(dict.fromkeys(str(c["sample"]) for c in curves))
    depths = _depth_order([str(c["depth"]) for c in curves])
    fig, axes = plt.subplots(
        2 * len(samples),
        len(depths),
        figsize=(4.2 * len(depths), 5.2 * len(samples)),
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 1] * len(samples)},
    )
    for i, sample in enumerate(samples):
        for j, depth in enumerate(depths):
            ax, ax_n = axes[2 * i, j], axes[2 * i + 1, j]
            mine = [c for c in curves if str(c["sample"]) == sample and str(c["depth"]) == depth]
            if not mine:
                ax.set_axis_off()
                ax_n.set_axis_off()
                continue
            ax.plot([0, 1], [0, 1], ls=":", color="0.5", lw=1, label="perfect calibration")
            for method in methods:
                have = [c for c in mine if f"calib_count__{method}" in c]
                ece = np.nanmean([float(x[f"ece__{method}"]) for x in have]) if have else np.nan
                for k, c in enumerate(have):
                    count = np.asarray(c[f"calib_count__{method}"], dtype=float)
                    edges = np.linspace(0.0, 1.0, count.size + 1)
                    used = count > 0
                    label = f"{_label(method)} (ECE {ece:.3f})" if k == 0 else None
                    ax.plot(
                        np.asarray(c[f"calib_mean_prob__{method}"])[used],
                        np.asarray(c[f"calib_frac_pos__{method}"])[used],
                        marker="o",
                        ms=4,
                        color=_color(method),
                        lw=1.5 if k == 0 else 0.8,
                        alpha=1.0 if k == 0 else 0.5,
                        label=label,
                    )
                    ax_n.bar(
                        edges[:-1],
                        count,
                        width=np.diff(edges),
                        align="edge",
                        color=_color(method),
                        alpha=0.6 if k == 0 else 0.3,
                        edgecolor="white",
                    )
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("mean predicted peak probability (per bin)")
            ax.set_ylabel("fraction of bases in clean peaks")
            reps = f", {len(mine)} replicates" if len(mine) > 1 else ""
            ax.set_title(f"{sample}, {depth_label(depth)}{reps}", fontsize=10)
            ax.legend(fontsize=7, loc="upper left")
            ax.grid(alpha=0.3)
            ax_n.set_xlim(0, 1)
            ax_n.set_yscale("log")
            ax_n.set_xlabel("predicted peak probability")
            ax_n.set_ylabel("bases")
    masked = any(str(c.get("blacklist", "")) not in ("", "None") for c in curves)
    title = title or f"Calibration of the peak probability against the clean peaks ({_evaluated(masked)})"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, out)
    return title


# --------------------------------------------------------------------------- metric vs depth


def plot_metric_vs_depth(
    metrics: pd.DataFrame,
    out: str | Path,
    metric_names: Sequence[str] = ("pearson", "spearman", "auprc", "auroc", "f1", "peak_recall"),
    region: str = "all",
    effective: pd.DataFrame | None = None,
    title: str = "",
    blacklist_masked: bool = False,
) -> str:
    """Metric vs sequencing depth per method: mean over replicates, bars from min to max.

    ``metrics`` is the long metrics table; only numeric depths (fragments) are
    drawn, on a log axis. One row of panels per sample, one column per metric.
    With ``effective`` (effective-depth table), the model's fold for Pearson /
    AUPRC against the noisy track is written into the panel. When ``metrics``
    has ``cell_type`` and ``seen`` columns (the metrics.tsv of ``atacdenoise
    summary``) and two or more cell types, the figure compares cell types
    instead (:func:`plot_metric_vs_depth_by_cell_type`; ``effective`` is not
    drawn there). Returns the figure's title (``blacklist_masked``: the
    metrics were computed with one).
    """
    df = metrics[(metrics["region"] == region) & metrics["metric"].isin(metric_names)].copy()
    df["depth_n"] = numeric_depth(df["depth"])
    skipped = sorted(set(df.loc[df["depth_n"].isna(), "depth"]))
    if skipped:
        log.info("metric vs depth: depth labels %s are not numbers of fragments or cells and are not drawn", skipped)
    df = df[df["depth_n"] > 0]
    if "cell_type" in df.columns and df["cell_type"].nunique() > 1:
        if effective is not None:
            log.info("metric vs depth by cell type: effective depths are not drawn (see summary_by_cell_type.tsv)")
        return plot_metric_vs_depth_by_cell_type(df, out, metric_names, title, blacklist_masked)
    # one row of panels per (sample, unit): fragments for bulk depths, cells for few-cell profiles ('c50')
    df["sample"] = df["sample"].where(depth_unit(df["depth"]) != "cells", df["sample"] + " (cells)")
    metric_names = [m for m in metric_names if m in set(df["metric"])]
    samples = list(dict.fromkeys(df["sample"]))
    if not samples or not metric_names:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, "no numeric depths to plot", ha="center", va="center")
        ax.set_axis_off()
        save_figure(fig, out)
        return
    stats = (
        df.groupby(["sample", "method", "metric", "depth_n"])["value"]
        .agg(["mean", "min", "max", "count"])
        .reset_index()
    )
    fig, axes = plt.subplots(
        len(samples), len(metric_names), figsize=(3.6 * len(metric_names), 3.3 * len(samples)), squeeze=False
    )
    for i, sample in enumerate(samples):
        for j, metric in enumerate(metric_names):
            ax = axes[i, j]
            sub = stats[(stats["sample"] == sample) & (stats["metric"] == metric)]
            for method in dict.fromkeys(list(COLORS) + list(sub["method"].unique())):
                s = sub[sub["method"] == method].sort_values("depth_n")
                if s.empty:
                    continue
                ax.errorbar(
                    s["depth_n"],
                    s["mean"],
                    yerr=[s["mean"] - s["min"], s["max"] - s["mean"]],
                    marker="o",
                    ms=4,
                    capsize=2,
                    color=_color(method),
                    label=_label(method),
                )
            ax.set_xscale("log")
            cells = sample.endswith(" (cells)")
            ax.set_xlabel("cells in the profile (log scale)" if cells else "input depth (fragments, log scale)")
            ax.set_ylabel(METRIC_LABELS.get(metric, metric))
            ax.set_title(f"{sample}: {metric}", fontsize=10)
            ax.grid(alpha=0.3, which="both")
            if effective is not None and metric in ("pearson", "auprc"):
                name = sample.removesuffix(" (cells)")
                e = effective[(effective["sample"] == name) & (effective["metric"] == metric)]
                e = e[(depth_unit(e["depth"]) == "cells") == cells]
                if cells:  # the few-cell figure: how many cells MACS3 needs to match the model
                    e = e[e["baseline"] == ("macs3_callpeak" if (e["baseline"] == "macs3_callpeak").any() else "noisy")]
                    head = f"cells {_label(e['baseline'].iloc[0]) if len(e) else ''} needs to match the model:"
                    lines = [
                        f"{depth_label(r.depth)}: {'' if r.qualifier == '=' else r.qualifier}{r.effective_depth:,.0f}"
                        for r in e.itertuples()
                    ]
                else:
                    e = e[e["baseline"] == "noisy"]
                    head = "model worth (vs noisy):"
                    lines = [
                        f"{depth_label(r.depth)}: {'' if r.qualifier == '=' else r.qualifier}{r.fold:.2g}x"
                        for r in e.itertuples()
                    ]
                if lines:
                    ax.text(
                        0.02,
                        0.98,
                        head + "\n" + "\n".join(lines),
                        transform=ax.transAxes,
                        va="top",
                        fontsize=6,
                        bbox={"facecolor": "white", "alpha": 0.7, "lw": 0},
                    )
            if i == 0 and j == len(metric_names) - 1:
                ax.legend(fontsize=7, loc="lower right")
    if not title:
        title = f"Quality vs input depth ({_evaluated(blacklist_masked)}; bars: min-max over replicates)"
        if "seen" in df.columns and df["cell_type"].nunique() == 1:
            seen = "seen" if (df["seen"] == "yes").all() else "unseen"
            title += f"\ncell type {df['cell_type'].iloc[0]}: {seen} (seen = trained on)"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, out)
    return title


#: order of the rows of panels of :func:`plot_metric_vs_depth_by_cell_type`: the model first
_ROW_ORDER = ["model", "noisy", "macs3_bdgpeakcall", "macs3_callpeak", "model_t0.5"]


def plot_metric_vs_depth_by_cell_type(
    metrics: pd.DataFrame,
    out: str | Path,
    metric_names: Sequence[str] = ("pearson", "auprc", "f1", "peak_recall"),
    title: str = "",
    blacklist_masked: bool = False,
) -> str:
    """Metric vs depth per cell type: seen cell types (trained on) solid, unseen ones dashed with open markers.

    ``metrics``: long metrics rows of one region with ``cell_type`` and ``seen`` (yes | no) columns; numeric
    depths only are drawn (log axis). One row of panels per method (the model first; few-cell depths, 'c50',
    in a row of their own), one column per metric; one line per cell type, the mean over every replicate of
    every sample of that cell type, bars from min to max. Returns the figure's title.
    """
    df = metrics.assign(depth_n=numeric_depth(metrics["depth"]))
    df = df[df["depth_n"] > 0]
    df["row"] = df["method"].where(depth_unit(df["depth"]) != "cells", df["method"] + " (cells)")
    metric_names = [m for m in metric_names if m in set(df["metric"])]
    methods = list(dict.fromkeys([m for m in _ROW_ORDER if m in set(df["method"])] + list(df["method"].unique())))
    rows = [r for m in methods for r in (m, f"{m} (cells)") if r in set(df["row"])]
    # seen cell types first, each in a fixed colour of the palette
    types = df[["cell_type", "seen"]].drop_duplicates().sort_values(["seen", "cell_type"], ascending=[False, True])
    palette = plt.get_cmap("tab10").colors
    color = {ct: matplotlib.colors.to_hex(palette[i % len(palette)]) for i, ct in enumerate(types["cell_type"])}
    stats = (
        df.groupby(["row", "cell_type", "seen", "metric", "depth_n"])["value"].agg(["mean", "min", "max"]).reset_index()
    )
    fig, axes = plt.subplots(
        max(len(rows), 1),
        max(len(metric_names), 1),
        figsize=(3.6 * max(len(metric_names), 1), 3.3 * max(len(rows), 1)),
        squeeze=False,
    )
    legend_drawn = False
    for i, row in enumerate(rows):
        cells = row.endswith(" (cells)")
        for j, metric in enumerate(metric_names):
            ax = axes[i, j]
            sub = stats[(stats["row"] == row) & (stats["metric"] == metric)]
            if sub.empty:
                ax.set_axis_off()
                continue
            for ct, seen in types.itertuples(index=False):
                s = sub[sub["cell_type"] == ct].sort_values("depth_n")
                if s.empty:
                    continue
                yes = seen == "yes"
                ax.errorbar(
                    s["depth_n"],
                    s["mean"],
                    yerr=[s["mean"] - s["min"], s["max"] - s["mean"]],
                    color=color[ct],
                    ls="-" if yes else "--",
                    marker="o",
                    ms=4,
                    mfc=color[ct] if yes else "white",
                    capsize=2,
                    label=f"{ct} ({'seen' if yes else 'unseen'})",
                )
            ax.set_xscale("log")
            ax.set_xlabel("cells in the profile (log scale)" if cells else "input depth (fragments, log scale)")
            ax.set_ylabel(METRIC_LABELS.get(metric, metric))
            ax.set_title(f"{_label(row.removesuffix(' (cells)'))}{' (cells)' if cells else ''}: {metric}", fontsize=10)
            ax.grid(alpha=0.3, which="both")
            if not legend_drawn:  # one legend: the cell types and which are seen
                ax.legend(fontsize=7, loc="lower right")
                legend_drawn = True
    if not rows or not metric_names:
        axes[0, 0].text(0.5, 0.5, "no numeric depths to plot", ha="center", va="center")
        axes[0, 0].set_axis_off()
    title = title or (
        f"Quality vs input depth by cell type ({_evaluated(blacklist_masked)}; bars: min-max over samples and "
        "replicates)\nseen = trained on (solid lines, filled markers); unseen: dashed lines, open markers"
    )
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, out)
    return title


# --------------------------------------------------------------------------- track snapshots


def plot_track_snapshots(
    loci: list[dict],
    out: str | Path,
    title: str = "",
) -> None:
    """IGV-style snapshots: noisy, denoised and clean coverage and the peak calls at a few loci.

    Parameters
    ----------
    loci : list of dict
        One per column: ``chrom, start, end, caption`` (str), ``tracks`` ({name: float[end - start]},
        drawn top to bottom, e.g. noisy / model / clean) and ``peaks`` ({name: (starts, ends)} in
        chromosome coordinates, drawn as bars in the last row).
    """
    if not loci:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, "no locus to show (no clean or called peak in the regions)", ha="center", va="center")
        ax.set_axis_off()
        save_figure(fig, out)
        return
    track_names = list(dict.fromkeys(k for loc in loci for k in loc["tracks"]))
    peak_names = list(dict.fromkeys(k for loc in loci for k in loc["peaks"]))
    n_rows = len(track_names) + 1
    fig, axes = plt.subplots(
        n_rows,
        len(loci),
        figsize=(4.2 * len(loci), 1.3 * n_rows + 1.0),
        squeeze=False,
        gridspec_kw={"height_ratios": [2] * len(track_names) + [0.35 * max(len(peak_names), 1) + 0.3]},
    )
    for j, loc in enumerate(loci):
        x = np.arange(loc["start"], loc["end"]) / 1e6
        for i, name in enumerate(track_names):
            ax = axes[i, j]
            y = loc["tracks"].get(name)
            if y is not None:
                ax.fill_between(x, 0, y, step="post", color=_color(name), lw=0)
                ax.set_ylim(0, max(float(np.max(y)) * 1.1, 1e-6))
            ax.set_xlim(x[0], x[-1] + 1e-6)
            ax.tick_params(labelbottom=False)
            if j == 0:
                ax.set_ylabel(f"{_label(name)}\n(cut sites within ±100 bp)", fontsize=7)
            if i == 0:
                ax.set_title(f"{loc['caption']}\n{loc['chrom']}:{loc['start']:,}-{loc['end']:,}", fontsize=9)
        ax = axes[-1, j]
        for k, name in enumerate(peak_names):
            s, e = loc["peaks"].get(name, (np.zeros(0), np.zeros(0)))
            s, e = np.clip(s, loc["start"], loc["end"]), np.clip(e, loc["start"], loc["end"])
            keep = e > s
            ax.broken_barh(
                list(zip(s[keep] / 1e6, (e[keep] - s[keep]) / 1e6)),
                (len(peak_names) - k - 0.8, 0.6),
                color=_color(name),
            )
        ax.set_yticks(np.arange(len(peak_names)) + 0.5, [f"{_label(n)} peaks" for n in peak_names[::-1]], fontsize=7)
        ax.set_ylim(0, max(len(peak_names), 1))
        ax.set_xlim(x[0], x[-1] + 1e-6)
        ax.set_xlabel(f"{loc['chrom']} position (Mb)")
    fig.suptitle(title or "Coverage snapshots at the loci of largest gain and loss", fontsize=11)
    fig.tight_layout()
    save_figure(fig, out)


# --------------------------------------------------------------------------- input QC


def _input_label(sample: str, depth: str, rep: str) -> str:
    return f"{sample} {depth} rep{rep}"


def _empty_figure(text: str, out: str | Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    save_figure(fig, out)


def plot_fragment_lengths(qc: pd.DataFrame, hists: Sequence[np.ndarray], out: str | Path, title: str = "") -> str:
    """Normalised fragment-length histograms, one panel per sample and one line per input.

    ``qc`` holds sample, depth and rep of each input (rows of the QC table) and
    ``hists`` its histogram (int64[MAX_FRAGMENT + 1], the last bin "longer"; empty
    for inputs without fragment lengths, which are not drawn). Each line is the
    fraction of the input's fragments per bp of length, lengths up to the last
    bin. Returns the figure's title.
    """
    title = title or "Fragment lengths of the inputs (nucleosome-free peak, then one and two nucleosomes)"
    drawn = [(r, h) for r, h in zip(qc.itertuples(), hists) if len(h) and h.sum() > 0]
    if not drawn:
        _empty_figure("no fragment lengths: single-end BAMs or bigWigs only", out)
        return title
    samples = list(dict.fromkeys(r.sample for r, _ in drawn))
    fig, axes = plt.subplots(len(samples), 1, figsize=(8, 3 * len(samples)), squeeze=False)
    for ax, sample in zip(axes[:, 0], samples):
        lines = [(r, h) for r, h in drawn if r.sample == sample]
        for k, (r, h) in enumerate(lines):
            frac = h[:-1] / h.sum()
            color = plt.get_cmap("tab10" if len(lines) <= 10 else "tab20")(k % 20)
            ax.plot(np.arange(frac.size), frac, lw=1, color=color, label=_input_label(r.sample, r.depth, r.rep))
        ax.set_xlim(0, len(drawn[0][1]) - 1)
        ax.set_xlabel("fragment length (bp)")
        ax.set_ylabel("fraction of fragments per bp")
        ax.set_title(sample, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right", ncol=1 + len(lines) // 12)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, out)
    return title


def plot_cut_site_density(qc: pd.DataFrame, out: str | Path, prefix: str = "cut_sites_per_mb:", title: str = "") -> str:
    """Cut sites per Mb of each region (the QC table's ``{prefix}<region>`` columns), one row of dots per input.

    Log scale (inputs of several depths differ by orders of magnitude); inputs
    without cut-site counts (bigWigs) are left out. Returns the figure's title.
    """
    title = title or "Cut sites per Mb of each region, per input"
    cols = [c for c in qc.columns if c.startswith(prefix)]
    values = qc[cols].apply(pd.to_numeric, errors="coerce") if cols else pd.DataFrame()
    keep = values.notna().any(axis=1) if cols else pd.Series(False, index=qc.index)
    if not keep.any():
        _empty_figure("no cut-site counts (bigWig inputs only)", out)
        return title
    qc, values = qc[keep], values[keep]
    regions = [c.removeprefix(prefix) for c in cols]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(regions) + 3), 4.5))
    x = np.arange(len(regions))
    for k, (r, v) in enumerate(zip(qc.itertuples(), values.to_numpy())):
        color = plt.get_cmap("tab10" if len(qc) <= 10 else "tab20")(k % 20)
        ax.plot(x, v, marker="o", ms=4, lw=0.6, color=color, label=_input_label(r.sample, r.depth, r.rep))
    ax.set_yscale("log")
    ax.set_xticks(x, regions, rotation=90 if len(regions) > 6 else 0, fontsize=7)
    ax.set_xlabel("region")
    ax.set_ylabel("cut sites per Mb (log scale; 0 not drawn)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), ncol=1 + len(qc) // 25)
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, out)
    return title
