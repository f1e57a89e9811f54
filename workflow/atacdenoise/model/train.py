"""Training loop: random windows -> loss -> Adam step -> validation tiles -> checkpoint, once per epoch.

Loss (on the central ``interval`` bases of each window, where mask == 1)::

    w_mse * MSE(track, clean) + w_pearson * (1 - r(track, clean)) + w_bce * BCE(logits, labels)

``r`` is one Pearson correlation over all loss bases of the batch (``pearson:
"batch"``, the reference's choice) or the mean of per-window correlations
(``pearson: "window"``). The BCE may weight peak bases (``pos_weight``: a
number, or ``"auto"`` for the training labels' negative/positive ratio). The
learning rate is constant or follows a cosine from ``lr`` down to ``lr / 20``
over ``epochs`` (``lr_schedule: "cosine"``, a pure function of the epoch, so a
resumed run follows the same curve). With ``lr_batch`` set, ``lr`` is the rate for
that batch and follows the run's global batch (``batch_size`` x processes) by
``lr_scaling`` (square root or linear: :func:`base_lr`). The best epoch is the one with the highest
validation AUPRC (per-base peak probabilities vs labels); when the validation
regions hold no peak it is the one with the lowest validation loss.

Peak threshold: ``threshold: "val_f1"`` (the default) stores in model.pt the
probability cut that maximises the best epoch's per-base F1 on the validation
regions; a number fixes it. Both the chosen cut's F1 and the F1 at 0.5 are in
``history.tsv``.

Calibration (``calibrate: true``, the default): after the last epoch the best
epoch's peak logits on the validation regions fit a temperature ``T``
(:mod:`atacdenoise.model.calibration`), stored in model.pt's ``calibration``
with the validation ECE before and after; inference computes
``sigmoid(logit / T)``, and the ``val_f1`` threshold is chosen on these
calibrated probabilities (the cut moves toward 0.5; the F1 it gives is the
same, as the map is monotone). ``history.tsv`` keeps the uncalibrated values.

Resumable: after every epoch the full state (model, optimizer, scaler, RNG,
history, best model so far, settings hash) goes atomically to
``<out_dir>/checkpoints/last.pt``, the one before moving to ``previous.pt``;
no workflow rule declares them, so they survive Snakemake's clean-up of a
failed job's outputs, and a rerun continues after the last finished epoch (from
``previous.pt`` when ``last.pt`` is unreadable). The settings hash covers the
datasets' content (meta.json and each array's checksum), so a dataset re-made
with other content starts a new run. When model.pt is written the state becomes
``checkpoints/finished.pt``, which no run resumes: a finished run never continues
into a new one. Windows are drawn from a generator seeded by ``(seed, epoch)``,
so an interrupted and resumed run repeats the uninterrupted one. A lock file,
``checkpoints/train.lock`` (host and pid of its holder), keeps a second training
(an orphan of a killed workflow, say) from writing into the same directory.

Multi-GPU: run under ``torchrun`` (``WORLD_SIZE > 1`` in the environment); each
rank trains on its share of the epoch's windows inside DistributedDataParallel,
rank 0 validates and writes every file.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import json
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atacdenoise.atomic import atomic_output, host_name, pid_alive
from atacdenoise.cpus import usable_cores
from atacdenoise.errors import InputError
from atacdenoise.io.genome import Region
from atacdenoise.log import progress
from atacdenoise.model.blend import fit_blend, pair_sums
from atacdenoise.model.calibration import calibrate_temperature, peak_probability
from atacdenoise.model.dataset import (
    PairData,
    WindowSet,
    check_same_preprocessing,
    dataset_content_id,
    decode_batch,
    fixed_tiles,
    sample_windows,
    start_table,
)
from atacdenoise.model.device import autocast_dtype, gpu_conv_requested, gpu_kernels_work, select_device
from atacdenoise.model.fitness import PROFILE_KEY, training_profile
from atacdenoise.model.network import (
    DEFAULT_PRESET,
    MODEL_KEYS,
    PRESET_TRAINING,
    build_model,
    depth_scale,
    resolve_hparams,
    save_model,
    transform_input,
)

log = logging.getLogger(__name__)

STATE_FORMAT = "atacdenoise-train-state/1"

#: training settings and their defaults (model settings: model.MODEL_KEYS, e.g. "preset")
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 25,
    "batch_size": 16,
    "lr": 2e-4,
    "windows_per_epoch": None,  # None: usable bases / interval (one pass over the training chromosomes)
    "interval": 50_000,
    "pad": 5_000,
    "w_mse": 5e-4,
    "w_pearson": 1.0,
    "w_bce": 1.0,
    "pearson": "batch",  # "batch" (one r per batch, reference) | "window" (mean of per-window r)
    "seed": 0,
    "amp": "auto",  # "auto" (bf16 on GPUs that support it, else fp16; off on CPU) | "bf16" | "fp16" | "off"
    # DataLoader worker processes: a number, or "auto" (on a GPU every CPU the job was given but the training
    # process's own, per process; 0 on the CPU, where the cores run the model: resolve_workers)
    "num_workers": "auto",
    "patience": None,  # stop after this many epochs without a better validation score; None: never
    "val_batch_size": None,  # None: batch_size
    "flip": True,  # random strand flips of training windows
    "input_transform": {"kind": "depth"},  # scale every track to one reference depth ({"kind": "none"}: as stored)
    # peak-probability threshold stored in model.pt: a number, or "val_f1" (max F1 on validation)
    "threshold": "val_f1",
    "prior_init": True,  # start the peak logits at the label base rate (not at p = 0.5)
    # BCE weight of peak bases: None (1), a number, or "auto" (negatives / positives of the training labels)
    "pos_weight": None,
    "lr_schedule": "constant",  # "constant" | "cosine" (lr -> lr / 20 over the epochs)
    # the batch `lr` is meant for: another (global) batch scales it by lr_scaling, so a GPU run may take larger
    # batches without re-tuning lr (issue 23); None: lr as given for every batch
    "lr_batch": None,
    "lr_scaling": "sqrt",  # "sqrt" | "linear": lr x (batch / lr_batch) ** (1/2 | 1)
    "calibrate": True,  # fit a temperature for the peak logits on the validation regions (model/calibration.py)
    # fit, per training depth, the weight of the network's track against its input on the validation regions
    # (model/blend.py; with input_transform depth only)
    "blend": True,
}
#: F1 of thresholded validation probabilities is computed at this fixed cut too, for comparison
FIXED_THRESHOLD = 0.5
#: the cosine schedule ends at lr / LR_FLOOR_DIVISOR
LR_FLOOR_DIVISOR = 20.0
#: how the learning rate follows the batch size (lr_batch): the exponent of batch / lr_batch
LR_SCALING = {"sqrt": 0.5, "linear": 1.0}
#: settings that may change between an interrupted run and its resumption
RESUMABLE_CHANGES = ("epochs", "patience", "num_workers", "val_batch_size", "threshold", "calibrate", "blend")

#: checkpoint files in ``<out_dir>/checkpoints``
LAST_STATE, PREVIOUS_STATE, FINISHED_STATE, LOCK_FILE = "last.pt", "previous.pt", "finished.pt", "train.lock"
#: the lock holder refreshes the lock file's time this often; a lock of another host this old is stale
LOCK_HEARTBEAT_S = 15.0
LOCK_STALE_S = 120.0

#: networks of at least this many parameters get a warning when trained on a CPU (light: ~10 k, reference: ~220 k)
CPU_WARN_PARAMETERS = 100_000
HISTORY_COLUMNS = [
    "epoch",
    "train_loss",
    "train_mse",
    "train_pearson_loss",
    "train_bce",
    "val_loss",
    "val_mse",
    "val_pearson_loss",
    "val_bce",
    "val_pearson",
    "val_auroc",
    "val_auprc",
    "val_f1_at_0.5",
    "val_best_f1",
    "val_best_threshold",
    "lr",
    "best",
    "seconds",
    "train_bases_per_s",
    "gpu_seconds",
    "gpu_peak_mem_gib",
]


# --------------------------------------------------------------------------- settings
def load_settings(text: str | os.PathLike | dict | None) -> dict:
    """Load settings from a JSON string, a .json/.yaml file path, or a dict (None: all defaults)."""
    if text is None:
        return {}
    if isinstance(text, dict):
        return dict(text)
    text = str(text)
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            raw = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InputError(f"--settings: not valid JSON ({exc}): {stripped[:200]}") from exc
    else:
        path = Path(text)
        if not path.exists():
            raise InputError(f"--settings {text!r}: neither a JSON object nor an existing .json/.yaml file")
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                raw = yaml.safe_load(path.read_text())
            else:
                raw = json.loads(path.read_text())
        except Exception as exc:
            raise InputError(f"{path}: unreadable settings file ({exc})") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InputError(f"--settings: expected a JSON/YAML object (key: value), found {type(raw).__name__}")
    return raw


def resolve_settings(raw: dict) -> tuple[dict, dict]:
    """Split and complete settings: (model hparams for DenoiseResNet, training settings)."""
    raw = dict(raw)
    model_raw = {k: raw.pop(k) for k in list(raw) if k in MODEL_KEYS}
    unknown = sorted(set(raw) - set(TRAIN_DEFAULTS))
    if unknown:
        raise InputError(
            f"settings {unknown} are unknown; model settings are {list(MODEL_KEYS)}, "
            f"training settings {list(TRAIN_DEFAULTS)}"
        )
    hparams = resolve_hparams(model_raw)
    preset = model_raw.get("preset") or DEFAULT_PRESET
    s = {**copy.deepcopy(TRAIN_DEFAULTS), **copy.deepcopy(PRESET_TRAINING.get(preset, {})), **raw}
    _check_settings(s)
    return hparams, s


def _check_settings(s: dict) -> None:
    def positive_int(key: str, allow_none: bool = False) -> None:
        v = s[key]
        if v is None and allow_none:
            return
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"setting {key}={v!r}: expected a positive integer")

    for key in ("epochs", "batch_size", "interval"):
        positive_int(key)
    for key in ("windows_per_epoch", "patience", "val_batch_size", "lr_batch"):
        positive_int(key, allow_none=True)
    for key in ("pad", "seed", "num_workers"):
        if key == "num_workers" and s[key] == "auto":
            continue
        if isinstance(s[key], bool) or not isinstance(s[key], int) or s[key] < 0:
            raise InputError(
                f"setting {key}={s[key]!r}: expected an integer >= 0" + (" or 'auto'" if key == "num_workers" else "")
            )
    for key in ("lr", "w_mse", "w_pearson", "w_bce"):
        if isinstance(s[key], bool) or not isinstance(s[key], (int, float)) or s[key] < 0:
            raise InputError(f"setting {key}={s[key]!r}: expected a number >= 0")
    t = s["threshold"]
    if t != "val_f1" and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < 1):
        raise InputError(f"setting threshold={t!r}: expected 'val_f1' or a probability between 0 and 1")
    w = s["pos_weight"]
    if w is not None and w != "auto" and (isinstance(w, bool) or not isinstance(w, (int, float)) or w <= 0):
        raise InputError(f"setting pos_weight={w!r}: expected null, 'auto' or a number > 0")
    for key in ("calibrate", "blend"):
        if not isinstance(s[key], bool):
            raise InputError(f"setting {key}={s[key]!r}: expected true or false")
    if s["lr_schedule"] not in ("constant", "cosine"):
        raise InputError(f"setting lr_schedule={s['lr_schedule']!r}: expected 'constant' or 'cosine'")
    if s["lr_scaling"] not in LR_SCALING:
        raise InputError(f"setting lr_scaling={s['lr_scaling']!r}: expected one of {', '.join(LR_SCALING)}")
    if s["pearson"] not in ("batch", "window"):
        raise InputError(f"setting pearson={s['pearson']!r}: expected 'batch' or 'window'")
    if s["amp"] not in ("auto", "bf16", "fp16", "off"):
        raise InputError(f"setting amp={s['amp']!r}: expected 'auto', 'bf16', 'fp16' or 'off'")
    if not isinstance(s["input_transform"], dict):
        raise InputError(
            f'setting input_transform={s["input_transform"]!r}: expected an object such as {{"kind": "none"}}'
        )
    transform_input(np.zeros(1, np.float32), s["input_transform"])  # raises for an unknown kind


def _unused(settings: dict) -> tuple[str, ...]:
    """Name the settings without effect on this run, left out of its hash (older checkpoints then resume)."""
    return ("lr_batch", "lr_scaling") if settings.get("lr_batch") is None else ()


def settings_hash(
    hparams: dict, settings: dict, pairs: list[PairData], val: list[Region], holdout: list[Region]
) -> str:
    """Hash of everything that makes a checkpoint's state meaningful for this run.

    Datasets count by content (:func:`~atacdenoise.model.dataset.dataset_content_id`: meta.json and
    each array file's size and checksum), not by path: one re-made at the same path with other
    content gives another hash, one moved or re-made identically the same.
    """
    left_out = {*RESUMABLE_CHANGES, *_unused(settings)}
    key = {
        "hparams": hparams,
        "settings": {k: v for k, v in settings.items() if k not in left_out},
        "datasets": [dataset_content_id(p) for p in pairs],
        "val": [str(r) for r in val],
        "holdout": [str(r) for r in holdout],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


# --------------------------------------------------------------------------- depth normalisation
def normalise_depths(pairs: list[PairData], input_transform: dict) -> dict:
    """Set each pair's window scale factors for ``{"kind": "depth"}`` and return the transform to store in model.pt.

    Every noisy track is brought to the reference total R and so is its clean track: the network
    sees inputs of one nominal depth whatever the pair's depth, and learns one mapping instead of
    guessing the depth from local coverage. R is the setting's ``reference`` or else the mean total of
    the distinct clean tracks; the denoised track comes out at that depth (inference scales each input
    by R / its own total). Other kinds leave the pairs as stored.
    """
    if input_transform.get("kind") != "depth":
        return dict(input_transform)

    def clean_key(p: PairData) -> str:
        return str(p.meta.get("clean", p.path))

    clean_totals: dict[str, float] = {}
    for p in pairs:  # one pass over each distinct clean track (pairs of several depths share one)
        if clean_key(p) not in clean_totals:
            clean_totals[clean_key(p)] = p.total("clean")
    reference = float(input_transform.get("reference") or np.mean(list(clean_totals.values())))
    resolved = {"kind": "depth", "reference": reference}
    for p in pairs:
        p.scale = {
            "noisy": depth_scale(resolved, p.total("noisy"), f"{p.path} (noisy)"),
            "clean": depth_scale(resolved, clean_totals[clean_key(p)], f"{p.path} (clean)"),
        }
        log.info(
            "depth normalisation: %s noisy x %.4g, clean x %.4g (reference total %.6g)",
            p.name,
            p.scale["noisy"],
            p.scale["clean"],
            reference,
        )
    return resolved


def label_fraction(pairs: list[PairData]) -> float:
    """Fraction of peak bases over every chromosome of the datasets."""
    n_peak = sum(int(np.count_nonzero(p.arrays(c)["labels"])) for p in pairs for c in p.chroms)
    n_all = sum(int(length) for p in pairs for length in p.chroms.values())
    return n_peak / max(n_all, 1)


def resolve_pos_weight(setting: float | str | None, pairs: list[PairData]) -> float | None:
    """Return the BCE weight of peak bases: None (unweighted), the number given, or for "auto" negatives / positives."""
    if setting != "auto":
        return None if setting is None else float(setting)
    frac = min(max(label_fraction(pairs), 1e-4), 0.5)
    weight = (1.0 - frac) / frac
    log.info("pos_weight auto: peak bases weighted %.3g (label base rate %.4f)", weight, frac)
    return weight


def base_lr(s: dict, world: int = 1) -> float:
    """Learning rate for this run's batch: ``lr``, scaled when ``lr_batch`` names the batch it was set for.

    The batch is the global one, ``batch_size`` x ``world`` (DDP averages the processes' gradients). Square-root
    scaling keeps the gradient noise per step; linear scaling keeps the step per window (issue 23: a GPU
    trains faster on larger batches; benchmarks/ACCURACY.md measures both on the demo).
    """
    lr = float(s["lr"])
    if s.get("lr_batch") is None:
        return lr
    return lr * (s["batch_size"] * world / s["lr_batch"]) ** LR_SCALING[s.get("lr_scaling", "sqrt")]


def lr_at(epoch: int, s: dict, world: int = 1) -> float:
    """Learning rate of ``epoch`` (1-based): constant, or a cosine from :func:`base_lr` to 1/LR_FLOOR_DIVISOR of it."""
    lr = base_lr(s, world)
    if s["lr_schedule"] == "constant" or s["epochs"] <= 1:
        return lr
    floor = lr / LR_FLOOR_DIVISOR
    return float(floor + 0.5 * (lr - floor) * (1.0 + math.cos(math.pi * (epoch - 1) / (s["epochs"] - 1))))


def init_peak_prior(model: nn.Module, pairs: list[PairData]) -> float:
    """Set the peak head's bias to the logit of the fraction of peak bases in the training data.

    Peaks cover a few per cent of the genome: started at p = 0.5 the classifier spends its first
    thousands of steps learning only the base rate (the BCE of a constant at the prior is far below
    log 2), which a short run never finishes. Returns the prior.
    """
    prior = min(max(label_fraction(pairs), 1e-4), 0.5)
    with torch.no_grad():
        model.cls_out.bias.fill_(math.log(prior / (1.0 - prior)))
    log.info("peak head starts at the label base rate %.4f (logit %.3f)", prior, math.log(prior / (1.0 - prior)))
    return prior


# --------------------------------------------------------------------------- device and precision
# --------------------------------------------------------------------------- loss
def masked_pearson(x: Tensor, y: Tensor, mask: Tensor, per_window: bool = False, eps: float = 1e-8) -> Tensor:
    """Pearson r of ``x`` and ``y`` (float[B, L]) over bases where ``mask`` (float[B, L], 0/1) is 1.

    ``per_window``: the mean of each window's r (windows with < 2 bases skipped); else one r over the batch.
    Returns 0 (no gradient) when there is nothing to correlate.
    """
    if not per_window:
        x, y, mask = x.reshape(1, -1), y.reshape(1, -1), mask.reshape(1, -1)
    n = mask.sum(dim=1)
    ok = n >= 2
    # no branch on the values (a GPU would have to finish the step to answer it): windows of < 2 bases get
    # r = 0 and no weight, and with none left the result is 0 (the mean of the others is the same, bit for bit)
    n = n.clamp_min(1.0)
    dx = (x - (x * mask).sum(dim=1, keepdim=True) / n[:, None]) * mask
    dy = (y - (y * mask).sum(dim=1, keepdim=True) / n[:, None]) * mask
    r = (dx * dy).sum(dim=1) / torch.sqrt((dx * dx).sum(dim=1) * (dy * dy).sum(dim=1) + eps)
    return torch.where(ok, r, 0.0).sum() / ok.sum().clamp_min(1).to(r.dtype)


def loss_terms(
    track: Tensor, logits: Tensor, clean: Tensor, labels: Tensor, mask: Tensor, s: dict
) -> dict[str, Tensor]:
    """Compute the three loss terms and their weighted sum, over bases where ``mask`` is 1 (all float32[B, L])."""
    n = mask.sum().clamp_min(1.0)
    mse = ((track - clean) ** 2 * mask).sum() / n
    pearson_loss = 1.0 - masked_pearson(track, clean, mask, per_window=s["pearson"] == "window")
    pos_weight = s.get("_pos_weight")
    pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, labels, weight=mask, pos_weight=pw, reduction="sum") / n
    total = s["w_mse"] * mse + s["w_pearson"] * pearson_loss + s["w_bce"] * bce
    return {"loss": total, "mse": mse, "pearson_loss": pearson_loss, "bce": bce}


def _centre(batch: dict[str, Tensor], pad: int, interval: int) -> dict[str, Tensor]:
    return {k: v[:, pad : pad + interval] for k, v in batch.items()}


def forward_batch(model: nn.Module, batch: dict[str, Tensor], s: dict, device: torch.device, dtype: torch.dtype | None):
    """Forward one batch; returns (track, logits, central targets), all float32, central ``interval`` bases.

    The batch comes as stored (:func:`~atacdenoise.model.dataset.read_window_stored`) and is decoded to float32
    after the copy, on the device: 4-5 bytes a base through the copy instead of 16.
    """
    batch = decode_batch({k: v.to(device, non_blocking=True) for k, v in batch.items()})
    x = transform_input(batch["noisy"], s["input_transform"])
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        track, logits = model(x)
    pad, interval = s["pad"], s["interval"]
    track = track[:, pad : pad + interval].float()
    logits = logits[:, pad : pad + interval].float()
    return track, logits, _centre(batch, pad, interval)


# --------------------------------------------------------------------------- validation
def pearson_from_sums(n: float, sx: float, sy: float, sxx: float, syy: float, sxy: float) -> float:
    """Pearson r from running sums (float64)."""
    if n < 2:
        return float("nan")
    cov = sxy - sx * sy / n
    vx, vy = sxx - sx * sx / n, syy - sy * sy / n
    return float(cov / math.sqrt(vx * vy)) if vx > 0 and vy > 0 else float("nan")


def score_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (thresholds, true positives, false positives) at every distinct score, highest first.

    One sort serves AUROC, AUPRC and the F1 curve (:func:`atacdenoise.evaluate.metrics.curve_counts`).
    """
    from atacdenoise.evaluate.metrics import CountTable, curve_counts

    table = CountTable()
    table.add(scores, labels > 0)
    return curve_counts(table)


def ranking_metrics(scores: np.ndarray, labels: np.ndarray, curve=None) -> tuple[float, float]:
    """(AUROC, AUPRC) of per-base scores vs 0/1 labels; NaN when only one class is present."""
    from atacdenoise.evaluate.metrics import auprc_from_counts, auroc_from_counts

    if labels.size == 0 or labels.min() == labels.max():
        return float("nan"), float("nan")
    _, tps, fps = curve if curve is not None else score_curve(scores, labels)
    return auroc_from_counts(tps, fps), auprc_from_counts(tps, fps)


@torch.no_grad()
def evaluate(
    model: nn.Module, loader, s: dict, device: torch.device, dtype: torch.dtype | None, desc: str = "validate"
) -> dict[str, float]:
    """Loss terms (base-weighted means), Pearson r of track vs clean, AUROC and AUPRC of peak probabilities."""
    model.eval()
    terms = {"loss": 0.0, "mse": 0.0, "pearson_loss": 0.0, "bce": 0.0}
    sums = np.zeros(6)  # n, sx, sy, sxx, syy, sxy
    probs, labels = [], []
    for batch in progress(loader, total=len(loader), desc=desc, unit="batch"):
        track, logits, tgt = forward_batch(model, batch, s, device, dtype)
        keep = tgt["mask"] > 0
        n = int(keep.sum())
        if n == 0:
            continue
        for k, v in loss_terms(track, logits, tgt["clean"], tgt["labels"], tgt["mask"], s).items():
            terms[k] += float(v) * n
        t, c = track[keep].double(), tgt["clean"][keep].double()
        sums += np.array(
            [n, float(t.sum()), float(c.sum()), float((t * t).sum()), float((c * c).sum()), float((t * c).sum())]
        )
        probs.append(torch.sigmoid(logits[keep]).cpu().numpy())
        labels.append(tgt["labels"][keep].to(torch.uint8).cpu().numpy())
    n_bases = sums[0]
    out = {f"val_{k}": (float(v / n_bases) if n_bases else float("nan")) for k, v in terms.items()}
    out["val_pearson"] = pearson_from_sums(*sums)
    p = np.concatenate(probs) if probs else np.zeros(0, np.float32)
    y = np.concatenate(labels) if labels else np.zeros(0, np.uint8)
    curve = score_curve(p, y) if p.size else None
    out["val_auroc"], out["val_auprc"] = ranking_metrics(p, y, curve)
    out["val_f1_at_0.5"], out["val_best_f1"], out["val_best_threshold"] = f1_metrics(p, y, FIXED_THRESHOLD, curve)
    return out


@torch.no_grad()
def validation_logits(
    model: nn.Module, loader, s: dict, device: torch.device, dtype: torch.dtype | None
) -> tuple[np.ndarray, np.ndarray]:
    """Peak logits (float32[n]) and labels (bool[n]) of every scored validation base (mask 1)."""
    model.eval()
    logits_all, labels_all = [], []
    for batch in progress(loader, total=len(loader), desc="calibrate", unit="batch"):
        _, logits, tgt = forward_batch(model, batch, s, device, dtype)
        keep = tgt["mask"] > 0
        logits_all.append(logits[keep].cpu().numpy())
        labels_all.append((tgt["labels"][keep] > 0).cpu().numpy())
    if not logits_all:
        return np.zeros(0, np.float32), np.zeros(0, bool)
    return np.concatenate(logits_all), np.concatenate(labels_all)


def calibrate_best(
    model: nn.Module, loader, s: dict, device: torch.device, dtype: torch.dtype | None
) -> tuple[dict | None, dict]:
    """Fit the temperature of the best model on the validation bases (:mod:`atacdenoise.model.calibration`).

    Returns ``(calibration entry of model.pt or None, validation metrics of the calibrated probabilities)``;
    None (warned) when the validation bases hold one class only. The metrics are ``val_f1_at_0.5``,
    ``val_best_f1`` and ``val_best_threshold`` (the max-F1 cut on the calibrated probabilities) and
    ``val_auprc`` (equal to the uncalibrated one: the map is monotone).
    """
    logits, labels = validation_logits(model.to(device), loader, s, device, dtype)
    n_pos = int(labels.sum())
    if n_pos in (0, labels.size):
        log.warning(
            "no calibration: the validation regions hold %s; the peak probability is the network's sigmoid (T = 1)",
            "no peak base" if n_pos == 0 else "only peak bases",
        )
        return None, {}
    calibration = calibrate_temperature(logits, labels)
    probs = peak_probability(torch.from_numpy(logits), calibration["T"]).numpy()
    curve = score_curve(probs, labels)
    metrics: dict[str, float] = {}
    metrics["val_f1_at_0.5"], metrics["val_best_f1"], metrics["val_best_threshold"] = f1_metrics(
        probs, labels, FIXED_THRESHOLD, curve
    )
    metrics["val_auprc"] = ranking_metrics(probs, labels, curve)[1]
    calibration.update({k: float(v) for k, v in metrics.items()})
    log.info(
        "calibration: temperature T = %.4f on %s validation bases; ECE %.4f -> %.4f, NLL %.4f -> %.4f; "
        "F1 at 0.5 %.4f, max-F1 cut %.4f",
        calibration["T"],
        f"{labels.size:,}",
        calibration["val_ece_before"],
        calibration["val_ece_after"],
        calibration["val_nll_before"],
        calibration["val_nll_after"],
        metrics["val_f1_at_0.5"],
        metrics["val_best_threshold"],
    )
    return calibration, metrics


def fit_pairs_blend(
    model: nn.Module,
    pairs: list[PairData],
    val: list[Region],
    s: dict,
    device: torch.device,
    dtype: torch.dtype | None,
    workers: int,
    profile: dict,
) -> dict | None:
    """Fit the track blend of :mod:`atacdenoise.model.blend` on each pair's validation tiles (None when not fitted).

    The input enters as the network sees it, so the blend needs ``input_transform: depth`` (track and input
    at one reference depth); with another transform the track stays the network's.
    """
    if s["input_transform"].get("kind") != "depth":
        log.info("blend: input_transform %s is not 'depth': the track is the network's alone", s["input_transform"])
        return None
    interval, pad = s["interval"], s["pad"]
    tiles = fixed_tiles(pairs, val, interval)
    model = model.to(device)

    def forward(m: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        track, _, tgt = forward_batch(m, batch, s, device, dtype)
        x = transform_input(tgt["noisy"], s["input_transform"])
        return track, x, tgt

    depths = [row.get("cut_sites_per_mb") for row in profile.get("pairs", [])]
    per_pair = []
    for i, p in enumerate(pairs):
        own = tiles[tiles["pair"] == i]
        if own.size == 0:
            continue
        loader = _loader(WindowSet(pairs, own, interval, pad), s["val_batch_size"] or s["batch_size"], workers, device)
        depth = depths[i] if i < len(depths) else None
        per_pair.append({"name": p.name, "cut_sites_per_mb": depth, "sums": pair_sums(model, loader, forward, device)})
    return fit_blend(per_pair)


def f1_metrics(probs: np.ndarray, labels: np.ndarray, fixed: float, curve=None) -> tuple[float, float, float]:
    """(F1 at ``fixed``, the best F1 over every cut, the cut giving it) of per-base probabilities vs 0/1 labels.

    Calling bases with ``prob >= cut``; the best cut is the smallest of the tied best ones, kept within
    (0, 1) so that it can serve as a peak threshold. NaN when there is no positive label.
    """
    cuts, tps, fps = curve if curve is not None else score_curve(probs, labels)
    n_pos = int(tps[-1]) if tps.size else 0
    if n_pos == 0:
        return float("nan"), float("nan"), float("nan")
    f1 = 2.0 * tps / (tps + fps + n_pos)  # cuts descend, so tps + fps = bases called at each cut
    n_at_fixed = int(np.count_nonzero(cuts >= np.float32(fixed)))  # distinct cuts >= fixed
    f1_fixed = float(f1[n_at_fixed - 1]) if n_at_fixed else 0.0
    k = f1.size - 1 - int(np.argmax(f1[::-1]))  # the lowest of the tied best cuts
    return f1_fixed, float(f1[k]), float(min(max(cuts[k], 1e-6), 1 - 1e-6))


def noisy_baseline(loader, s: dict) -> dict[str, float]:
    """Pearson r and AUPRC of the (untransformed) noisy input itself on the validation tiles, for the log."""
    sums = np.zeros(6)
    scores, labels = [], []
    for batch in loader:
        b = _centre(decode_batch(batch), s["pad"], s["interval"])
        keep = b["mask"] > 0
        x, c = b["noisy"][keep].double(), b["clean"][keep].double()
        sums += np.array(
            [
                x.numel(),
                float(x.sum()),
                float(c.sum()),
                float((x * x).sum()),
                float((c * c).sum()),
                float((x * c).sum()),
            ]
        )
        scores.append(b["noisy"][keep].numpy())
        labels.append(b["labels"][keep].to(torch.uint8).numpy())
    y = np.concatenate(labels) if labels else np.zeros(0, np.uint8)
    auroc, auprc = ranking_metrics(np.concatenate(scores) if scores else np.zeros(0, np.float32), y)
    return {
        "pearson": pearson_from_sums(*sums),
        "auroc": auroc,
        "auprc": auprc,
        "n_bases": int(y.size),
        "n_peak_bases": int(y.sum()),
    }


# --------------------------------------------------------------------------- checkpoints
class Checkpoints:
    """The resumable state of one output directory: ``last.pt`` and the one before it, ``previous.pt``.

    ``save`` writes the new state under a temporary name, moves ``last.pt`` to ``previous.pt`` and
    renames the new one to ``last.pt``; a kill at any point leaves at least one complete state (between
    the two renames only ``previous.pt``, which ``load`` then uses). ``finish`` turns the state into
    ``finished.pt`` once model.pt is written: ``load`` never resumes it, so a rerun trains anew.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.last = self.directory / LAST_STATE
        self.previous = self.directory / PREVIOUS_STATE
        self.finished = self.directory / FINISHED_STATE
        #: False while last.pt is a file this run could not read: save() overwrites it instead of keeping it
        self._last_good = True

    def _read(self, path: Path, expected_hash: str, map_location: torch.device) -> tuple[dict | None, str]:
        """Return (state, "") or (None, why it cannot be resumed)."""
        if not path.exists():
            return None, "absent"
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
            if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
                raise ValueError(f"format {state.get('format') if isinstance(state, dict) else type(state).__name__!r}")
        except Exception as exc:
            return None, f"unreadable checkpoint ({type(exc).__name__}: {str(exc)[:200]})"
        if state.get("settings_hash") != expected_hash:
            return None, "checkpoint was made with other settings, datasets or regions"
        return state, ""

    def load(self, expected_hash: str, map_location: torch.device) -> tuple[dict | None, Path | None]:
        """Return the state to resume and its file, or (None, None) to start at epoch 1.

        ``last.pt`` first, else ``previous.pt``; a fresh start after an unreadable checkpoint or one made
        for other settings comes with a warning that names both files.
        """
        last, why_last = self._read(self.last, expected_hash, map_location)
        if last is not None:
            return last, self.last
        self._last_good = why_last == "absent" or not why_last.startswith("unreadable")
        previous, why_previous = self._read(self.previous, expected_hash, map_location)
        if previous is not None:
            if why_last == "absent":  # killed between the two renames of save(): the normal state
                log.info("%s absent: resuming from %s", self.last, self.previous)
            else:
                log.warning(
                    "%s: %s; resuming from the checkpoint before it, %s (epoch %d)",
                    self.last,
                    why_last,
                    self.previous,
                    previous["epoch"],
                )
            return previous, self.previous
        if why_last == why_previous == "absent":
            if self.finished.exists():
                log.info(
                    "%s holds a finished run (its model.pt was written): training starts from scratch at epoch 1",
                    self.finished,
                )
            return None, None
        msg = (
            f"no usable checkpoint: {self.last}: {why_last}; {self.previous}: {why_previous}; "
            "starting training from scratch at epoch 1"
        )
        log.warning(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=4)
        return None, None

    def save(self, state: dict) -> None:
        """Write ``state`` as ``last.pt``, keeping the former ``last.pt`` as ``previous.pt``."""
        with atomic_output(self.last) as tmp:
            torch.save(state, tmp)
            if self._last_good and self.last.exists():
                os.replace(self.last, self.previous)
        self._last_good = True

    def finish(self) -> None:
        """Retire the state once model.pt is written: ``last.pt`` becomes ``finished.pt``, ``previous.pt`` goes."""
        self.previous.unlink(missing_ok=True)  # first: a kill in between leaves last.pt, the finished state
        if self.last.exists():
            os.replace(self.last, self.finished)
            log.info("training finished: %s kept as %s (a rerun starts from scratch)", self.last, self.finished)


# --------------------------------------------------------------------------- one trainer per output directory
def _flock(fd: int) -> bool:
    """Take an exclusive flock on ``fd``: True, or False when the file system has no file locks.

    Raises BlockingIOError when another process holds it.
    """
    try:
        import fcntl
    except ImportError:  # not on POSIX
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise BlockingIOError(exc.errno, str(exc)) from exc
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL, errno.EIO):
            log.warning("no file locks here (%s): relying on the host name and pid in the lock file", exc)
            return False
        raise
    return True


def _read_holder(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        holder = json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _held_error(path: Path, holder: dict, detail: str) -> InputError:
    host, pid = holder.get("host", "?"), holder.get("pid", "?")
    return InputError(
        f"{path}: another training is writing to {path.parent.parent}: host {host}, pid {pid} "
        f"(started {holder.get('started', '?')}{detail}); wait for it to finish or stop it (on {host}: kill {pid}), "
        f"then run again; if it no longer runs, delete {path}"
    )


@contextlib.contextmanager
def train_lock(directory: str | os.PathLike) -> Iterator[Path]:
    """Hold ``directory/train.lock`` for the duration of a training run; raise InputError when another holds it.

    The lock is an exclusive ``flock`` on a file that names its holder (host, pid, start time) and whose
    time the holder refreshes every :data:`LOCK_HEARTBEAT_S` seconds. A second training on the same
    directory (an orphan of a killed workflow still running, say) is refused with the holder's host and
    pid. The file of a killed holder stays behind: on the same host it is taken over at once (the
    kernel released the flock; without flock support, the pid no longer runs); a holder on another
    host counts as gone once the file's time is :data:`LOCK_STALE_S` seconds old, since some shared
    file systems keep flocks per node and a live holder there would not block the flock here.
    """
    path = Path(directory) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    host, me = host_name(), os.getpid()
    for _attempt in range(10):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                flocked = _flock(fd)
            except BlockingIOError:
                raise _held_error(path, _read_holder(fd), "") from None
            st = os.fstat(fd)
            try:
                now_st = os.stat(path)
            except FileNotFoundError:
                now_st = None
            if now_st is None or (now_st.st_ino, now_st.st_dev) != (st.st_ino, st.st_dev):
                os.close(fd)  # the holder released and removed the file meanwhile: take the new one
                continue
            holder = _read_holder(fd)
            if holder and (holder.get("host"), holder.get("pid")) != (host, me):
                if holder.get("host") == host:
                    pid = holder.get("pid")
                    if not flocked and isinstance(pid, int) and pid_alive(pid):
                        raise _held_error(path, holder, "; still running")
                    log.info("%s: taking over the lock of pid %s on this host, which no longer runs", path, pid)
                else:
                    age = time.time() - st.st_mtime
                    if age < LOCK_STALE_S:
                        raise _held_error(path, holder, f"; last sign of life {age:.0f} s ago")
                    log.warning(
                        "%s: taking over the lock of host %s, pid %s: no sign of life for %.0f s",
                        path,
                        holder.get("host"),
                        holder.get("pid"),
                        age,
                    )
            text = json.dumps({"host": host, "pid": me, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, text.encode(), 0)
            os.fsync(fd)
            break
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
    else:
        raise InputError(f"{path}: could not take the lock (the file keeps being replaced); run again")

    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(LOCK_HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(fd)

    beat = threading.Thread(target=heartbeat, name="train-lock-heartbeat", daemon=True)
    beat.start()
    try:
        yield path
    finally:
        stop.set()
        beat.join()
        with contextlib.suppress(OSError):
            st = os.fstat(fd)
            now_st = os.stat(path)
            if (now_st.st_ino, now_st.st_dev) == (st.st_ino, st.st_dev):
                path.unlink()  # while still holding the lock: a waiter then sees the file gone and retries
        os.close(fd)


def _write_history(path: Path, history: list[dict]) -> None:
    df = pd.DataFrame(history, columns=HISTORY_COLUMNS)
    with atomic_output(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.6g", na_rep="NA")


# --------------------------------------------------------------------------- distributed
@dataclass
class Dist:
    """Where this process stands among the ``torchrun`` processes: its global rank, their number, its local rank."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Tell whether this is rank 0, the process that validates, logs and writes the outputs."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Tell whether training is distributed (more than one process)."""
        return self.world > 1


def dist_from_env() -> Dist:
    """Rank layout set by ``torchrun`` (a single process when WORLD_SIZE is unset or 1)."""
    return Dist(
        int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    )


def _init_dist(dist_info: Dist, device: torch.device) -> torch.device:
    import datetime

    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # rank 0 validates alone while the others wait: allow a long barrier
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=4))
    return device


def _all_sum(values: list[float], dist_info: Dist, device: torch.device) -> list[float]:
    if not dist_info.active:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _broadcast_flag(flag: bool, dist_info: Dist, device: torch.device) -> bool:
    if not dist_info.active:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


def _choose_weight_grad(model: nn.Module, s: dict, dtype: torch.dtype | None, dist_info: Dist, dev) -> dict:
    """Time both weight-gradient forms on a batch of this run's shape (rank 0's choice for every rank); log it."""
    from atacdenoise.model import gpuconv

    info = gpuconv.choose_weight_grad(model, s["batch_size"], s["interval"] + 2 * s["pad"], dtype)
    form = "block" if _broadcast_flag(info["form"] == "block", dist_info, dev) else "taps"
    gpuconv.use_weight_grad(form)
    if info["how"] == "timed":
        log.info(
            "weight gradient: taps form %.1f ms, block form %.1f ms a step of %d windows (median of 3): the %s form "
            '(ATACDENOISE_TRITON_CONFIG=\'{"wgrad": "taps"}\' or "block" fixes it)',
            info["taps_ms"],
            info["block_ms"],
            info["batch"],
            form,
        )
    else:
        log.info("weight gradient: the %s form (%s)", form, info["how"])
    return {**info, "form": form}


# --------------------------------------------------------------------------- the loop
@dataclass
class TrainResult:
    """What :func:`train` returns: the model, its optimizer, the per-epoch history and the best epoch (on rank 0)."""

    model: nn.Module  # the model after the last epoch (not unwrapped from DDP)
    optimizer: torch.optim.Optimizer
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_metrics: dict = field(default_factory=dict)
    best_state: dict | None = None
    #: what the run chose on its GPU (e.g. ``weight_gradient``: the form and the timings it was chosen by)
    gpu_choices: dict = field(default_factory=dict)


def _loader(windows: WindowSet, batch_size: int, num_workers: int, device: torch.device):
    return torch.utils.data.DataLoader(
        windows,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


def _score(metrics: dict, by_auprc: bool) -> float:
    """Higher is better: val AUPRC, or minus the val loss when validation has no peaks."""
    v = metrics["val_auprc"] if by_auprc else -metrics["val_loss"]
    return -math.inf if v is None or math.isnan(v) else float(v)


def resolve_workers(setting: int | str, device: torch.device, world: int = 1) -> int:
    """Return the DataLoader workers per training process (``setting``, or what ``"auto"`` means here).

    ``"auto"``: on a GPU the CPUs this process may use (its affinity: a SLURM job's ``cpus_per_task``)
    shared by the ``world`` processes of the node, less one for the training process itself; on the
    CPU 0 (the cores run the model there).

    ``benchmarks/genome.py`` (loader stage) measures how many workers keep one GPU fed; the SLURM profile's
    ``GPU_JOB_CPUS`` gives the train job that many plus one.
    """
    if setting != "auto":
        return int(setting)
    if device.type != "cuda":
        return 0
    return max(0, usable_cores() // max(1, world) - 1)


def train(
    pairs: list[PairData],
    val: list[Region],
    holdout: list[Region],
    raw_settings: dict,
    out_dir: str | Path,
    device: str = "auto",
) -> TrainResult:
    """Train (or resume training) and write ``out_dir/model.pt`` (best epoch) and ``out_dir/history.tsv``.

    Parameters
    ----------
    pairs : opened dataset directories (several pairs feed one model)
    val : validation regions (fixed tiles; select the best epoch)
    holdout : regions kept away from training and validation (benchmark)
    raw_settings : model and training settings (see ``TRAIN_DEFAULTS`` and ``model.MODEL_KEYS``)
    out_dir : output directory; resumable state in ``out_dir/checkpoints/last.pt`` (and ``previous.pt``)
    device : "auto" | "cpu" | "cuda"

    The process that writes (rank 0) holds ``out_dir/checkpoints/train.lock`` throughout (:func:`train_lock`).
    """
    out_dir = Path(out_dir)
    lock = train_lock(out_dir / "checkpoints") if dist_from_env().main else contextlib.nullcontext()
    with lock:
        return _train(pairs, val, holdout, raw_settings, out_dir, device)


def _train(
    pairs: list[PairData],
    val: list[Region],
    holdout: list[Region],
    raw_settings: dict,
    out_dir: Path,
    device: str,
) -> TrainResult:
    """Train as :func:`train` says, the lock held."""
    hparams, s = resolve_settings(raw_settings)
    if not val:
        raise InputError("no validation region given: set split.val_chroms (a chromosome or chrom:start-end)")
    _check_disjoint(val, holdout)
    preprocessing = check_same_preprocessing(pairs)
    input_transform = normalise_depths(pairs, s["input_transform"])
    interval, pad = s["interval"], s["pad"]

    dist_info = dist_from_env()
    dev = select_device(device)
    if dist_info.active:
        dev = _init_dist(dist_info, dev)
    dtype = autocast_dtype(s["amp"], dev, training=True)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(dev)
        log.info(
            "device: %s (%s), autocast %s, %d process(es)", dev, torch.cuda.get_device_name(dev), dtype, dist_info.world
        )
    else:
        log.info("device: cpu (%d threads), float32, %d process(es)", torch.get_num_threads(), dist_info.world)

    workers = resolve_workers(s["num_workers"], dev, dist_info.world)
    if s["num_workers"] == "auto":
        log.info("num_workers auto: %d DataLoader worker process(es) per training process", workers)
    table = start_table(pairs, interval, pad, [*val, *holdout])
    n_windows = s["windows_per_epoch"] or max(1, round(table.total / interval))
    val_tiles = fixed_tiles(pairs, val, interval)
    if val_tiles.size == 0:
        raise InputError(
            f"validation regions {[str(r) for r in val]} are on no chromosome of the datasets "
            f"{[str(p.path) for p in pairs]}"
        )
    val_set = WindowSet(pairs, val_tiles, interval, pad)
    val_loader = _loader(val_set, s["val_batch_size"] or s["batch_size"], workers, dev)
    log.info(
        "%d dataset(s) %s; %s bases of allowed training-window starts; %d windows of %d + 2 x %d bases per epoch; "
        "%d validation tiles",
        len(pairs),
        [p.name for p in pairs],
        f"{table.total:,}",
        n_windows,
        interval,
        pad,
        val_tiles.size,
    )

    by_auprc = True
    if dist_info.main:
        base = noisy_baseline(val_loader, s)
        log.info(
            "validation: %s bases, %s in peaks; noisy input alone: Pearson %.4f, AUROC %.4f, AUPRC %.4f",
            f"{base['n_bases']:,}",
            f"{base['n_peak_bases']:,}",
            base["pearson"],
            base["auroc"],
            base["auprc"],
        )
        if base["n_peak_bases"] == 0:
            by_auprc = False
            msg = (
                "validation regions hold no peak base: AUPRC is undefined, "
                "so the best epoch is chosen by the lowest validation loss"
            )
            log.warning(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)

    s["_pos_weight"] = resolve_pos_weight(s["pos_weight"], pairs)  # runtime value, not a setting
    torch.manual_seed(s["seed"])
    model = build_model(hparams)
    if s["prior_init"]:
        init_peak_prior(model, pairs)
    if dev.type == "cpu" and model.n_parameters >= CPU_WARN_PARAMETERS:
        log.warning(
            "training a %s-parameter network (preset %s) on the CPU: the reference shape runs at ~57 k bases/s "
            "forward on 2 cores, hours per epoch at genome scale; train on a GPU node (profiles/slurm-gpu) or set "
            "model.preset: light for a CPU-sized model",
            f"{model.n_parameters:,}",
            (raw_settings or {}).get("preset", DEFAULT_PRESET),
        )
    model = model.to(dev)
    gpu_choices: dict = {}
    if dev.type == "cuda" and gpu_conv_requested(dev):
        model.conv_impl = "triton"

        def probe() -> None:  # forward and backward once on a tiny input: compiles every kernel training uses
            with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                track, logits = model(torch.arange(4096.0, device=dev).remainder(7)[None])  # no RNG draw
            (track.float().sum() + logits.float().sum()).backward()
            model.zero_grad(set_to_none=True)

        if gpu_kernels_work(probe, "training"):
            log.info("the convolutions on the Triton kernel, forward and backward (ATACDENOISE_GPU_CONV=torch: cuDNN)")
            gpu_choices["weight_gradient"] = _choose_weight_grad(model, s, dtype, dist_info, dev)
        else:
            model.conv_impl = "torch"
    # fused: one kernel for the whole step on a GPU (issue 23); the CPU keeps the default implementation
    lr = base_lr(s, dist_info.world)
    if s["lr_batch"] is not None:
        log.info(
            "learning rate %.3g: lr %g was set for batch %d, this run's is %d (%s scaling)",
            lr,
            s["lr"],
            s["lr_batch"],
            s["batch_size"] * dist_info.world,
            s["lr_scaling"],
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=dev.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    log.info(
        "model: %s parameters, receptive field %d bp (track) / %d bp (peaks); %s",
        f"{model.n_parameters:,}",
        model.track_receptive_field,
        model.receptive_field,
        hparams,
    )

    run_hash = settings_hash(hparams, s, pairs, val, holdout)
    checkpoints = Checkpoints(out_dir / "checkpoints")
    state, state_path = checkpoints.load(run_hash, dev)
    history: list[dict] = []
    best: dict = {"epoch": None, "score": -math.inf, "metrics": {}, "state_dict": None}
    start_epoch, stopped = 1, False
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:  # a checkpoint of a GPU run resumed on a CPU, or the other way
            group["fused"] = dev.type == "cuda"
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if dev.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), dev)
        history, best, stopped = list(state["history"]), dict(state["best"]), bool(state.get("stopped", False))
        start_epoch = int(state["epoch"]) + 1
        log.info("resuming from %s after epoch %d (best so far: epoch %s)", state_path, state["epoch"], best["epoch"])

    net: nn.Module = model
    if dist_info.active:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    gpu_total = 0.0
    for epoch in range(start_epoch, s["epochs"] + 1):
        if stopped:
            break
        t0 = time.perf_counter()
        if dev.type == "cuda":
            ev_start, ev_end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            ev_start.record()
        windows = sample_windows(table, n_windows, interval, np.random.default_rng([s["seed"], epoch]), flip=s["flip"])
        if dist_info.active:  # equal shares, like DistributedSampler: pad by wrapping around
            per_rank = math.ceil(n_windows / dist_info.world)
            windows = np.resize(windows, per_rank * dist_info.world)[dist_info.rank :: dist_info.world]
        loader = _loader(WindowSet(pairs, windows, interval, pad), s["batch_size"], workers, dev)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, s, dist_info.world)

        net.train()
        # the loss terms summed on the device (float64, in step order): reading them each step would make the
        # host wait for every step's kernels before it queues the next (issue 23)
        acc = torch.zeros(4, dtype=torch.float64, device=dev)  # loss, mse, pearson_loss, bce
        steps = 0
        for batch in progress(loader, total=len(loader), desc=f"epoch {epoch}", unit="batch"):
            track, logits, tgt = forward_batch(net, batch, s, dev, dtype)
            terms = loss_terms(track, logits, tgt["clean"], tgt["labels"], tgt["mask"], s)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(terms["loss"]).backward()
            scaler.step(optimizer)
            scaler.update()
            acc += torch.stack([terms[k].detach() for k in ("loss", "mse", "pearson_loss", "bce")]).double()
            steps += 1
        sums = _all_sum([*acc.tolist(), float(steps)], dist_info, dev)
        train_seconds = time.perf_counter() - t0
        row: dict[str, Any] = {"epoch": epoch, "lr": lr_at(epoch, s, dist_info.world)}
        for i, k in enumerate(("loss", "mse", "pearson_loss", "bce")):
            row[f"train_{k}"] = sums[i] / max(sums[4], 1)

        stop = False
        if dist_info.main:
            row.update(evaluate(model, val_loader, s, dev, dtype, desc=f"validate {epoch}"))
            score = _score(row, by_auprc)
            row["best"] = score > best["score"] or best["epoch"] is None
            if row["best"]:
                best = {
                    "epoch": epoch,
                    "score": score,
                    "metrics": _metrics(row),
                    "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                }
            row["seconds"] = time.perf_counter() - t0
            row["train_bases_per_s"] = n_windows * (interval + 2 * pad) / train_seconds
            if dev.type == "cuda":
                ev_end.record()
                torch.cuda.synchronize(dev)
                row["gpu_seconds"] = ev_start.elapsed_time(ev_end) / 1000
                row["gpu_peak_mem_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
                gpu_total += row["gpu_seconds"]
            history.append(_plain(row))
            stop = s["patience"] is not None and epoch - best["epoch"] >= s["patience"]
            log.info(
                "epoch %d/%d: train loss %.4f (mse %.4g, 1-r %.4f, bce %.4f) | "
                "val loss %.4f, Pearson %.4f, AUROC %.4f, AUPRC %.4f, "
                "F1 %.4f at 0.5 / %.4f at %.3f%s | %.1f s, %s bases/s%s",
                epoch,
                s["epochs"],
                row["train_loss"],
                row["train_mse"],
                row["train_pearson_loss"],
                row["train_bce"],
                row["val_loss"],
                row["val_pearson"],
                row["val_auroc"],
                row["val_auprc"],
                row["val_f1_at_0.5"],
                row["val_best_f1"],
                row["val_best_threshold"],
                " (best)" if row["best"] else "",
                row["seconds"],
                f"{row['train_bases_per_s']:,.0f}",
                f" | GPU {row['gpu_seconds']:.1f} s, peak {row['gpu_peak_mem_gib']:.2f} GiB"
                if dev.type == "cuda"
                else "",
            )
            if stop:
                log.info(
                    "early stop: no better validation score for %d epochs (best epoch %d)", s["patience"], best["epoch"]
                )
            checkpoints.save(
                {
                    "format": STATE_FORMAT,
                    "settings_hash": run_hash,
                    "epoch": epoch,
                    "stopped": stop,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                    "rng": {
                        "torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
                    },
                    "history": history,
                    "best": best,
                },
            )
            _write_history(out_dir / "history.tsv", history)
        stopped = _broadcast_flag(stop, dist_info, dev)

    if dist_info.main:
        if best["state_dict"] is None:
            raise InputError(f"{out_dir}: no finished epoch to select a model from (epochs={s['epochs']})")
        best_model = build_model(hparams)
        best_model.load_state_dict(best["state_dict"])
        calibration, calibrated = (
            calibrate_best(best_model, val_loader, s, dev, dtype) if s["calibrate"] else (None, {})
        )
        # the val_f1 cut is chosen on the probabilities inference will write: the calibrated ones when calibrated
        threshold = chosen_threshold(s["threshold"], calibrated or best["metrics"])
        profile = training_profile(pairs)  # what inference compares a sample with (model/fitness.py)
        blend = fit_pairs_blend(best_model, pairs, val, s, dev, dtype, workers, profile) if s["blend"] else None
        save_model(
            out_dir / "model.pt",
            best_model,
            preprocessing=preprocessing,
            window={"interval": interval, "pad": pad},
            input_transform=input_transform,
            threshold=threshold,
            extra={
                "epoch": best["epoch"],
                "val_metrics": best["metrics"],
                "selected_by": "val_auprc" if by_auprc else "val_loss",
                "settings": {**hparams, **{k: v for k, v in s.items() if not k.startswith("_")}},
                "threshold_source": "val_f1" if s["threshold"] == "val_f1" else "setting",
                **({"calibration": calibration} if calibration else {}),
                **({"blend": blend} if blend else {}),
                "datasets": [
                    {"path": str(p.path), **{k: p.meta.get(k) for k in ("sample", "cell_type", "depth", "rep")}}
                    for p in pairs
                ],
                "trained_samples": sorted({str(p.meta["sample"]) for p in pairs if p.meta.get("sample")}),
                "trained_cell_types": sorted({str(p.meta["cell_type"]) for p in pairs if p.meta.get("cell_type")}),
                "val_regions": [str(r) for r in val],
                "holdout_regions": [str(r) for r in holdout],
                PROFILE_KEY: profile,
            },
        )
        _write_history(out_dir / "history.tsv", history)
        checkpoints.finish()
        log.info(
            "best epoch %s (%s %.4f), peak threshold %.4f (%s): wrote %s",
            best["epoch"],
            "val AUPRC" if by_auprc else "-val loss",
            best["score"],
            threshold,
            ("max validation F1" if s["threshold"] == "val_f1" else "setting")
            + (f", on probabilities calibrated with T = {calibration['T']:.4f}" if calibration else ""),
            out_dir / "model.pt",
        )
        if dev.type == "cuda":
            log.info(
                "GPU %s: %.1f s of GPU time in this run, peak memory %.2f GiB",
                torch.cuda.get_device_name(dev),
                gpu_total,
                torch.cuda.max_memory_allocated(dev) / 2**30,
            )
    if dist_info.active:
        import torch.distributed as dist

        dist.barrier()
    return TrainResult(net, optimizer, history, best["epoch"], best["metrics"], best["state_dict"], gpu_choices)


def chosen_threshold(setting: float | str, best_metrics: dict) -> float:
    """Return the peak threshold to store.

    That is the setting, or the best epoch's max-F1 validation cut (0.5 when undefined).
    """
    if setting != "val_f1":
        return float(setting)
    cut = best_metrics.get("val_best_threshold", float("nan"))
    if cut is None or math.isnan(cut):
        log.warning("no validation peak base to choose a threshold on: using %.2f", FIXED_THRESHOLD)
        return FIXED_THRESHOLD
    return float(cut)


def _plain(row: dict) -> dict:
    """Python scalars only (numpy scalars would make the checkpoint unloadable with weights_only=True)."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}


def _metrics(row: dict) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if k.startswith(("val_", "train_")) and isinstance(v, (int, float))}


def _check_disjoint(val: list[Region], holdout: list[Region]) -> None:
    for a in val:
        for b in holdout:
            if a.chrom == b.chrom and a.start < b.end and b.start < a.end:
                raise InputError(
                    f"validation region {a} overlaps holdout region {b}: the holdout must stay unseen; "
                    "fix split.val_chroms / split.holdout_chroms"
                )
