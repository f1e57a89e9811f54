"""JSON sidecars: ``X.json`` beside an output, recording how it was made (settings, counts, sources).

Later stages read them to refuse inputs made differently (a coverage track
smoothed otherwise than the model's training data) and to reuse counts.
"""

from __future__ import annotations

import json
from pathlib import Path

from atacdenoise.atomic import atomic_output
from atacdenoise.errors import InputError


def sidecar_path(out: str | Path) -> Path:
    """Return the sidecar's path, ``out.json`` beside ``out``."""
    return Path(f"{out}.json")


def write_json(path: str | Path, data: dict) -> None:
    """Write a JSON document atomically (indented, keys in insertion order)."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2) + "\n")


def read_sidecar(out: str | Path) -> dict | None:
    """Read the sidecar of ``out`` (a JSON object), or None when there is none.

    A sidecar that exists but cannot be read is an :class:`InputError`: it
    would otherwise silently disable the checks it exists for.
    """
    path = sidecar_path(out)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable sidecar ({exc}); re-make {Path(out).name} or delete the sidecar") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object of settings, found {type(data).__name__}")
    return data
