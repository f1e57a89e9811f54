"""Calibration of the peak probability: temperature scaling fitted on the validation regions.

The network's peak head is trained with a BCE that early stopping, class imbalance and a short
schedule leave over- or under-confident, so its ``sigmoid(logit)`` is a score rather than a
probability. Temperature scaling (Guo et al. 2017) divides every logit by one scalar ``T > 0``
before the sigmoid, with ``T`` chosen to minimise the negative log-likelihood of the validation
labels. It is monotone, so every ranking metric (AUROC, AUPRC, the PR curve) is unchanged; only the
values move, toward probabilities that mean what they say, so that 0.5 becomes a sensible cut.

Training stores the result in ``model.pt`` as ``calibration: {"method": "temperature", "T": ...,
"val_ece_before": ..., "val_ece_after": ..., ...}``; :func:`temperature_of` reads it (1.0 for a model
without one, which therefore behaves as before) and inference computes
:func:`peak_probability` ``= sigmoid(logit / T)``.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from atacdenoise.errors import InputError
from atacdenoise.evaluate.metrics import expected_calibration_error

log = logging.getLogger(__name__)

#: temperatures searched by :func:`fit_temperature`
T_BOUNDS = (0.05, 20.0)
#: Newton steps at most (the NLL is convex in 1/T: a handful suffice)
MAX_STEPS = 60


def peak_probability(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Return ``sigmoid(logits / temperature)``; ``temperature`` 1 gives exactly ``sigmoid(logits)``."""
    if temperature == 1.0:
        return torch.sigmoid(logits)
    return torch.sigmoid(logits / temperature)


def temperature_of(meta: dict) -> float:
    """Return the temperature stored in a model file's metadata (1.0 when it has no calibration entry)."""
    calibration = meta.get("calibration")
    if not calibration:
        return 1.0
    if calibration.get("method") != "temperature":
        raise InputError(
            f"model calibration method {calibration.get('method')!r} is unknown (expected 'temperature'); "
            "the model file was written by a newer atacdenoise: upgrade, or re-train the model"
        )
    t = calibration.get("T")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
        raise InputError(f"model calibration temperature T={t!r}: expected a positive number; re-train the model")
    return float(t)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (BCE) of ``labels`` under ``sigmoid(logits / temperature)``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(labels, dtype=bool)
    return float(np.mean(np.logaddexp(0.0, z) - np.where(y, z, 0.0)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = T_BOUNDS) -> float:
    """Return the temperature ``T`` in ``bounds`` minimising the NLL of ``sigmoid(logits / T)`` against ``labels``.

    ``logits: float[n]``, ``labels: bool[n]`` with both classes present. With ``a = 1 / T`` the NLL
    ``mean(softplus(a z) - y a z)`` is a one-feature logistic regression without intercept, convex in
    ``a``: its derivative ``mean((sigmoid(a z) - y) z)`` increases, so Newton steps safeguarded by
    bisection on the bracket ``[1 / T_max, 1 / T_min]`` find its root (or the bound it lies beyond).
    Each step is one vectorised pass over the bases.
    """
    z = np.asarray(logits, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel().astype(np.float64)
    if z.size != y.size:
        raise ValueError(f"fit_temperature: {z.size} logits but {y.size} labels")
    n_pos = int(y.sum())
    if n_pos in (0, y.size):
        raise ValueError("fit_temperature: the labels must hold both classes")
    keep = np.isfinite(z)
    z, y = z[keep], y[keep]

    def grad(a: float) -> tuple[float, float]:
        p = _sigmoid(a * z)
        return float(np.mean((p - y) * z)), float(np.mean(p * (1.0 - p) * z * z))

    lo, hi = 1.0 / bounds[1], 1.0 / bounds[0]
    g_lo, _ = grad(lo)
    if g_lo >= 0:  # the NLL increases from the smallest a: T at its upper bound
        return float(bounds[1])
    g_hi, _ = grad(hi)
    if g_hi <= 0:
        return float(bounds[0])
    a = 1.0  # T = 1, the uncalibrated model
    for _ in range(MAX_STEPS):
        g, h = grad(a)
        if g > 0:
            hi = a
        else:
            lo = a
        step = a - g / h if h > 0 else math.nan
        a_new = step if lo < step < hi else 0.5 * (lo + hi)  # Newton inside the bracket, else bisection
        if abs(a_new - a) <= 1e-10 * a or hi - lo <= 1e-12 * hi:
            a = a_new
            break
        a = a_new
    return float(1.0 / a)


def calibrate_temperature(logits: np.ndarray, labels: np.ndarray) -> dict:
    """Fit :func:`fit_temperature` and return the ``calibration`` entry of model.pt.

    ``{"method": "temperature", "T", "val_ece_before", "val_ece_after", "val_nll_before",
    "val_nll_after", "n_bases", "n_positive"}``: ECE (:func:`atacdenoise.evaluate.metrics.expected_calibration_error`)
    and NLL of the validation bases at T = 1 and at the fitted T.
    """
    z = np.asarray(logits, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    t = fit_temperature(z, y)
    return {
        "method": "temperature",
        "T": t,
        "val_ece_before": expected_calibration_error(_sigmoid(z), y),
        "val_ece_after": expected_calibration_error(_sigmoid(z / t), y),
        "val_nll_before": nll(z, y),
        "val_nll_after": nll(z, y, t),
        "n_bases": int(y.size),
        "n_positive": int(y.sum()),
    }
