"""Parameter count and receptive fields of a model configuration or a trained model.pt (a report on stdout).

With ``--model model.pt`` it also says how the file was trained: its peak threshold and the
calibration of its peak probability (temperature ``T`` and the validation ECE before and after,
:mod:`atacdenoise.model.calibration`), ``none`` for a model without one.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from atacdenoise.model.network import build_model, load_model
from atacdenoise.model.train import load_settings, resolve_settings

log = logging.getLogger(__name__)

#: keys of model.pt's ``calibration`` entry reported, in this order
CALIBRATION_KEYS = ("T", "val_ece_before", "val_ece_after", "val_nll_before", "val_nll_after", "n_bases")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise model-info``."""
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--settings",
        default=None,
        help="model (and training) settings: a JSON object or a .json/.yaml file; "
        "e.g. '{\"preset\": \"light\"}' (default: the reference 'atacworks' shape)",
    )
    what.add_argument(
        "--model", type=Path, default=None, help="a trained model.pt: its shape, threshold and calibration"
    )


def _model_file_rows(meta: dict) -> dict:
    """Rows about a trained model file: epoch, threshold and its source, calibration, the track blend by depth."""
    rows = {
        "epoch": meta.get("epoch"),
        "threshold": meta.get("threshold"),
        "threshold_source": meta.get("threshold_source", "unknown"),
    }
    calibration = meta.get("calibration")
    if not calibration:
        rows["calibration"] = "none (peak probability = sigmoid of the logits, T = 1)"
    else:
        rows["calibration"] = calibration.get("method")
        for key in CALIBRATION_KEYS:
            if key in calibration:
                rows[f"calibration_{key}"] = calibration[key]
    blend = meta.get("blend")
    rows["blend"] = (
        "none (the track is the network's)"
        if not blend
        else "; ".join(
            f"{p['name']}: {p['cut_sites_per_mb']:.4g} cut sites/Mb -> network weight {p['alpha_monotone']:.2f}"
            for p in blend["pairs"]
        )
    )
    return rows


def run(args: argparse.Namespace) -> int:
    """Report the settings, parameter count and receptive fields of the model (tab-separated on stdout)."""
    if args.model is not None:
        model, meta = load_model(args.model)
        hparams, extra = dict(meta["hparams"]), _model_file_rows(meta)
    else:
        hparams, _ = resolve_settings(load_settings(args.settings))
        model, extra = build_model(hparams), {}
    rows = {
        **{k: v for k, v in hparams.items()},
        "parameters": model.n_parameters,
        "receptive_field_track_bp": model.track_receptive_field,
        "receptive_field_peaks_bp": model.receptive_field,
        **extra,
    }
    for key, value in rows.items():
        log.info("%s: %s", key, value)
    sys.stdout.write("".join(f"{k}\t{v}\n" for k, v in rows.items()))
    return 0
