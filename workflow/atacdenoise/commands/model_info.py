"""Parameter count and receptive fields of a model configuration (a report: written to stdout)."""

from __future__ import annotations

import argparse
import logging
import sys

from atacdenoise.model.network import build_model
from atacdenoise.model.train import load_settings, resolve_settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise model-info``."""
    parser.add_argument(
        "--settings",
        default=None,
        help="model (and training) settings: a JSON object or a .json/.yaml file; "
        "e.g. '{\"preset\": \"light\"}' (default: the reference 'atacworks' shape)",
    )


def run(args: argparse.Namespace) -> int:
    """Report the settings, parameter count and receptive fields of the model (tab-separated on stdout)."""
    hparams, _ = resolve_settings(load_settings(args.settings))
    model = build_model(hparams)
    rows = {
        **{k: v for k, v in hparams.items()},
        "parameters": model.n_parameters,
        "receptive_field_track_bp": model.track_receptive_field,
        "receptive_field_peaks_bp": model.receptive_field,
    }
    for key, value in rows.items():
        log.info("%s: %s", key, value)
    sys.stdout.write("".join(f"{k}\t{v}\n" for k, v in rows.items()))
    return 0
