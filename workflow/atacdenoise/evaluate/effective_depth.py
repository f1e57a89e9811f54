"""Effective depth: how deep the input would have to be for a baseline to match the model.

As the AtacWorks paper reports it ("the denoised track is worth 2.6x the reads
by Pearson r, 4.2x by AUPRC"): for a model's score at depth ``d``, the depth at
which a baseline (the noisy track, a MACS3 caller) reaches the same score,
interpolated linearly in ``log(depth)`` between measured depths, and the fold
``effective_depth / d``. Scores are averaged over replicates first; only
numeric depths take part: numbers of fragments (``30000``) or, for few-cell
profiles, numbers of cells (``c50``; the effective depth is then the number of
cells a baseline needs to match the model). The two units are never mixed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: (metric, baselines) pairs reported by default: Pearson against the noisy track,
#: AUPRC against the noisy track and each MACS3 caller
DEFAULT_TARGETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pearson", ("noisy",)),
    ("auprc", ("noisy", "macs3_bdgpeakcall", "macs3_callpeak")),
)

COLUMNS = ["model", "sample", "depth", "metric", "baseline", "model_value", "effective_depth", "qualifier", "fold"]


def depth_reaching(depths: np.ndarray, values: np.ndarray, target: float) -> tuple[float, str]:
    """Depth at which a baseline first reaches ``target``, interpolated in log(depth).

    Parameters
    ----------
    depths : float[k]
        Measured depths (any order, > 0).
    values : float[k]
        The baseline's score at each depth (higher is better); NaN entries are ignored.
    target : float
        The score to reach (the model's).

    Returns
    -------
    depth : float
        Interpolated depth; NaN when no finite baseline score.
    qualifier : str
        ``"="`` reached within the measured range; ``"<="`` already reached at the
        smallest depth (``depth`` is that depth: an upper bound); ``">"`` not
        reached even at the largest depth (``depth`` is the largest: a lower bound).
    """
    d = np.asarray(depths, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v) & (d > 0)
    d, v = d[ok], v[ok]
    if d.size == 0 or not np.isfinite(target):
        return float("nan"), ""
    order = np.argsort(d)
    d, v = d[order], v[order]
    if v[0] >= target:
        return float(d[0]), "<="
    reached = np.flatnonzero(v >= target)
    if reached.size == 0:
        return float(d[-1]), ">"
    j = int(reached[0])
    frac = (target - v[j - 1]) / (v[j] - v[j - 1])
    x0, x1 = np.log(d[j - 1]), np.log(d[j])
    return float(np.exp(x0 + frac * (x1 - x0))), "="


def numeric_depth(depth: pd.Series) -> pd.Series:
    """Depth labels as numbers: fragments ('30000') or cells ('c50' -> 50); NaN for 'given', 'full' and others."""
    s = pd.Series(depth).astype(str)
    cells = s.str.fullmatch(r"c\d+")
    out = pd.to_numeric(s.where(~cells, s.str[1:]), errors="coerce")
    return out.set_axis(pd.Series(depth).index)


def depth_unit(depth: pd.Series) -> pd.Series:
    """'cells' for few-cell labels ('c50'), 'fragments' for numbers, '' for 'given', 'full' and others."""
    s = pd.Series(depth).astype(str)
    unit = np.where(
        s.str.fullmatch(r"c\d+"), "cells", np.where(pd.to_numeric(s, errors="coerce").notna(), "fragments", "")
    )
    return pd.Series(unit, index=pd.Series(depth).index)


def effective_depths(
    metrics: pd.DataFrame, targets: tuple[tuple[str, tuple[str, ...]], ...] = DEFAULT_TARGETS, region: str = "all"
) -> pd.DataFrame:
    """Effective depth of the model at each measured depth, per (model, sample, metric, baseline).

    ``metrics``: the long table of metrics.tsv. Returns the :data:`COLUMNS` table
    (``depth`` as its original label), empty when no numeric depth has model scores.
    """
    df = metrics[metrics["region"] == region].copy()
    df["depth_n"] = numeric_depth(df["depth"])
    df["unit"] = depth_unit(df["depth"])
    df = df[df["depth_n"] > 0]
    means = df.groupby(["model", "sample", "unit", "depth", "depth_n", "method", "metric"], as_index=False)[
        "value"
    ].mean()
    rows = []
    for (model, sample, _unit), g in means.groupby(["model", "sample", "unit"], sort=False):
        for metric, baselines in targets:
            mine = g[(g["method"] == "model") & (g["metric"] == metric)].sort_values("depth_n")
            for baseline in baselines:
                base = g[(g["method"] == baseline) & (g["metric"] == metric)]
                if base.empty:
                    continue
                for _, r in mine.iterrows():
                    eff, qual = depth_reaching(base["depth_n"].to_numpy(), base["value"].to_numpy(), r["value"])
                    rows.append(
                        (model, sample, r["depth"], metric, baseline, r["value"], eff, qual, eff / r["depth_n"])
                    )
    return pd.DataFrame(rows, columns=COLUMNS)


def equivalent_cells(n_cells: np.ndarray, baseline: np.ndarray, target: float) -> tuple[float, str]:
    """Cells a baseline needs to reach a target score: the "cells needed by MACS3 to match the model" figure.

    The baseline's score is interpolated linearly in ``log(n_cells)`` between
    the measured numbers of cells, and the first crossing of ``target`` is
    returned.

    Parameters
    ----------
    n_cells : int[k]
        Numbers of cells measured (any order).
    baseline : float[k]
        The baseline's score at each (e.g. MACS3 AUPRC; higher is better).
    target : float
        The score to reach (e.g. the model's AUPRC at 10 cells).

    Returns
    -------
    cells : float
        Interpolated number of cells.
    qualifier : str
        ``"="`` when reached within the measured range; ``"<="`` when the
        smallest number already reaches it (``cells`` is that number); ``">"``
        when even the largest does not (``cells`` is the largest).
    """
    # the same log interpolation as effective depth (cells = 'c50' depths)
    b = np.asarray(baseline, dtype=np.float64)
    if not np.isfinite(b).any():
        raise ValueError("equivalent_cells: no finite baseline score")
    return depth_reaching(np.asarray(n_cells, dtype=np.float64), b, target)
