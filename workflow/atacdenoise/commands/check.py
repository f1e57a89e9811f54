"""Validate the config, the sample sheet and every input file before a run.

Checks the YAML config against ``workflow/schemas/config.schema.yaml`` and each
row of the sample sheet against ``workflow/schemas/samples.schema.yaml``
(JSON Schema draft 2020-12: unknown keys, wrong types, unsafe sample names),
then the inputs themselves (``atacdenoise.checks.check_inputs``): BAM sorted
and indexed, index not stale, chromosome names and lengths against the genome
sizes file, bigWig chromosomes, peak and fragments files, barcode tables,
depths and cell counts against what the inputs hold. All problems are listed
at once; exit status 2 when there is any. Relative paths are read from the
current directory (run it where you run snakemake).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atacdenoise.checks import SCHEMAS, check_config_and_inputs

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``atacdenoise check``."""
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"), help="workflow config (YAML)")
    parser.add_argument(
        "--samples", type=Path, default=None, help="sample sheet (TSV); default: the config's `samples`"
    )
    parser.add_argument("--schemas", type=Path, default=SCHEMAS, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Validate everything; log one line when all is fine."""
    config, n_rows, n_warnings = check_config_and_inputs(args.config, args.samples, args.schemas)
    note = f" ({n_warnings} warning(s) above)" if n_warnings else ""
    log.info("%s and %s (%d samples): all inputs look fine%s", args.config, config["samples"], n_rows, note)
    return 0
