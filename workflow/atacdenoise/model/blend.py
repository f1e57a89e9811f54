"""Never worse than the input: blend the denoised track with its (depth-normalised) input, by depth.

Where the input is already deep, the network's track can be less faithful than the input itself
(the demo at 60,000 reads: Pearson r 0.9855 against the input's 0.9883; issue 20). The written track
is therefore ``a * track + (1 - a) * input``, the input as the network sees it (scaled to the
model's reference depth, ``input_transform: depth``), with one weight ``a`` in [0, 1] per input.

``a`` is fitted after training on the validation regions, per training pair: the weight on a grid of
:data:`GRID_STEPS` + 1 values that maximises the Pearson r of the blend with the clean track (from ten
running sums, so every weight is scored in one pass; ``a = 1`` is the network alone, ``a = 0`` the input,
so on validation the blend is never below either). The weights are then made non-increasing in depth
(pool-adjacent-violators over the pairs sorted by cut sites per Mb: deeper input, more of it kept) and
stored in ``model.pt`` (``blend``). Inference reads the input's cut sites per Mb (the fitness check's
figure) and interpolates ``a`` linearly in log depth between the training pairs, holding the end values
beyond them. Inputs deeper than every training pair keep the deepest pair's weight; a model without
``blend`` (older files, ``blend: false``, other input transforms) writes the network's track (``a = 1``).
The peak probability is the network's: the blend is for the track only.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import nn

from atacdenoise.log import progress

log = logging.getLogger(__name__)

#: weights scored between 0 and 1
GRID_STEPS = 20
#: running sums of one pair: n, t, x, y, tt, xx, yy, tx, ty, xy (t track, x input, y clean)
N_SUMS = 10


def blend_sums(t: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Return the :data:`N_SUMS` float64 sums of track ``t``, input ``x`` and clean ``y`` (masked bases)."""
    t, x, y = t.double(), x.double(), y.double()
    return np.array(
        [
            t.numel(),
            float(t.sum()),
            float(x.sum()),
            float(y.sum()),
            float((t * t).sum()),
            float((x * x).sum()),
            float((y * y).sum()),
            float((t * x).sum()),
            float((t * y).sum()),
            float((x * y).sum()),
        ]
    )


def blend_pearson(sums: np.ndarray, a: float) -> float:
    """Pearson r of ``a * t + (1 - a) * x`` with ``y``, from :func:`blend_sums` (nan when undefined)."""
    n, st, sx, sy, stt, sxx, syy, stx, sty, sxy = (float(v) for v in sums)
    if n < 2:
        return float("nan")
    b = 1.0 - a
    sz = a * st + b * sx
    szz = a * a * stt + 2 * a * b * stx + b * b * sxx
    szy = a * sty + b * sxy
    cov = szy - sz * sy / n
    vz, vy = szz - sz * sz / n, syy - sy * sy / n
    return float(cov / math.sqrt(vz * vy)) if vz > 0 and vy > 0 else float("nan")


def best_weight(sums: np.ndarray) -> dict[str, float]:
    """Return the grid weight with the highest blend Pearson r, and the r of the network, the input and the blend."""
    grid = np.linspace(0.0, 1.0, GRID_STEPS + 1)
    scores = np.array([blend_pearson(sums, float(a)) for a in grid])
    if not np.isfinite(scores).any():
        return {
            "alpha": 1.0,
            "pearson_model": float("nan"),
            "pearson_input": float("nan"),
            "pearson_blend": float("nan"),
        }
    i = int(np.nanargmax(np.where(np.isfinite(scores), scores, -np.inf)))
    return {
        "alpha": float(grid[i]),
        "pearson_model": float(scores[-1]),
        "pearson_input": float(scores[0]),
        "pearson_blend": float(scores[i]),
    }


def non_increasing(values: list[float], weights: list[float] | None = None) -> list[float]:
    """Return the least-squares non-increasing sequence closest to ``values`` (pool-adjacent-violators)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v, w in zip(values, weights or [1.0] * len(values)):
        blocks.append([float(v), float(w), 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return [b[0] for b in blocks for _ in range(b[2])]


@torch.no_grad()
def pair_sums(model: nn.Module, loader, forward, device: torch.device) -> np.ndarray:
    """Blend sums over one pair's validation tiles; ``forward(model, batch)`` gives (track, input, targets)."""
    model.eval()
    sums = np.zeros(N_SUMS)
    for batch in progress(loader, total=len(loader), desc="blend", unit="batch"):
        track, x, tgt = forward(model, batch)
        keep = tgt["mask"] > 0
        if bool(keep.any()):
            sums += blend_sums(track[keep], x[keep], tgt["clean"][keep])
    return sums


def fit_blend(per_pair: list[dict]) -> dict | None:
    """Return the ``blend`` entry of model.pt from each training pair's ``name``, ``cut_sites_per_mb`` and ``sums``.

    Pairs without a depth or without defined sums are left out; None when none is left.
    """
    rows = []
    for p in per_pair:
        depth = p.get("cut_sites_per_mb")
        fit = best_weight(p["sums"])
        if depth is None or not depth > 0 or not math.isfinite(fit["pearson_blend"]):
            log.info("blend: %s left out (depth %s, validation r %s)", p["name"], depth, fit["pearson_blend"])
            continue
        rows.append({"name": p["name"], "cut_sites_per_mb": float(depth), "bases": int(p["sums"][0]), **fit})
    if not rows:
        log.warning("blend: no training pair has a depth and validation bases: the track is the network's alone")
        return None
    rows.sort(key=lambda r: r["cut_sites_per_mb"])
    alphas = non_increasing([r["alpha"] for r in rows], [float(r["bases"]) for r in rows])
    for r, a in zip(rows, alphas):
        r["alpha_monotone"] = float(a)
        log.info(
            "blend: %s (%.4g cut sites per Mb): weight of the network %.2f (monotone in depth: %.2f); validation "
            "Pearson r network %.4f, input %.4f, blend %.4f",
            r["name"],
            r["cut_sites_per_mb"],
            r["alpha"],
            a,
            r["pearson_model"],
            r["pearson_input"],
            r["pearson_blend"],
        )
    return {
        "log10_cut_sites_per_mb": [math.log10(r["cut_sites_per_mb"]) for r in rows],
        "alpha": alphas,
        "pairs": rows,
    }


def blend_weight(blend: dict | None, cut_sites_per_mb: float | None) -> float:
    """Return the network's weight for an input of ``cut_sites_per_mb``: 1 without a fitted blend or a known depth."""
    if not blend or cut_sites_per_mb is None or not cut_sites_per_mb > 0:
        return 1.0
    xs, ys = blend["log10_cut_sites_per_mb"], blend["alpha"]
    return float(np.clip(np.interp(math.log10(cut_sites_per_mb), xs, ys), 0.0, 1.0))
