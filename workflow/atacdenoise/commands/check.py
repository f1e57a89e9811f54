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

import pandas as pd
import yaml

from atacdenoise.checks import check_inputs
from atacdenoise.errors import InputError

log = logging.getLogger(__name__)

#: the workflow's schemas, found from the package's location in the repository
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"), help="workflow config (YAML)")
    parser.add_argument(
        "--samples", type=Path, default=None, help="sample sheet (TSV); default: the config's `samples`"
    )
    parser.add_argument("--schemas", type=Path, default=SCHEMAS, help=argparse.SUPPRESS)


def _load_yaml(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the syntax") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of config keys, found {type(data).__name__}")
    return data


def _key_path(parts) -> str:
    return ".".join(str(p) for p in parts) or "the top level"


def schema_problems(data: dict, schema: dict, source: str) -> list[str]:
    """One line per schema violation: the file, the key path and what is wrong (unknown keys named)."""
    from jsonschema import Draft202012Validator

    problems = []
    validator = Draft202012Validator(schema)
    for err in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        where = _key_path(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = sorted((err.schema.get("properties") or {}).keys())
            for key in sorted(set(err.instance) - set(allowed)):
                full = _key_path([*err.absolute_path, key])
                problems.append(
                    f"{source}: unknown key {full!r} (allowed at {where}: {', '.join(allowed)}); fix the spelling or remove it"
                )
        else:
            problems.append(f"{source}: key {where}: {err.message}")
    return problems


def apply_defaults(data: dict, schema: dict) -> dict:
    """Fill the schema's defaults into ``data`` (recursively into objects), as the workflow's validation does."""
    for key, sub in (schema.get("properties") or {}).items():
        if key not in data and "default" in sub:
            data[key] = yaml.safe_load(yaml.safe_dump(sub["default"]))
        if isinstance(data.get(key), dict) and sub.get("type") in ("object", ["object", "null"]):
            apply_defaults(data[key], sub)
    return data


def read_sheet(path: Path) -> pd.DataFrame:
    """The sample sheet as strings, empty cells as ''."""
    if not path.is_file():
        raise InputError(f"{path}: sample sheet not found; fix `samples` in the config or --samples")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, comment="#").fillna("")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable tab-separated sample sheet ({str(exc).strip()[:200]})") from None
    df.columns = df.columns.str.strip()
    return df


def sheet_problems(df: pd.DataFrame, schema: dict, source: str) -> list[str]:
    """Schema violations of each row (empty cells count as absent), naming the row and the column."""
    problems = []
    for i, row in enumerate(df.to_dict(orient="records")):
        values = {k: v for k, v in row.items() if v != ""}
        for line in schema_problems(values, schema, f"{source}, row {i + 2} (sample {row.get('sample', '?')!r})"):
            if ("key sample:" in line and "does not match" in line) or "key kind:" in line:
                continue  # reported, with the fix, by check_inputs
            problems.append(line)
    return problems


def run(args: argparse.Namespace) -> int:
    config_schema = yaml.safe_load((args.schemas / "config.schema.yaml").read_text())
    sample_schema = yaml.safe_load((args.schemas / "samples.schema.yaml").read_text())
    config = _load_yaml(args.config, "config file")
    problems = schema_problems(config, config_schema, str(args.config))
    if problems:
        raise InputError(f"{len(problems)} problem(s) in the config:\n" + "\n".join(f"  - {p}" for p in problems))
    config = apply_defaults(config, config_schema)
    sheet = args.samples or Path(config.get("samples", "config/samples.tsv"))
    config["samples"] = str(sheet)
    df = read_sheet(sheet)
    problems = sheet_problems(df, sample_schema, str(sheet))
    try:
        check_inputs(df, config)
    except InputError as exc:
        lines = str(exc).splitlines()
        problems += [line.removeprefix("  - ") for line in lines[1:]] or lines
    if problems:
        raise InputError(
            f"{len(problems)} problem(s) with the inputs of {sheet}:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    log.info("%s and %s (%d samples): all inputs look fine", args.config, sheet, len(df))
    return 0
