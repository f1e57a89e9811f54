"""Atomic outputs: write to a temporary file beside the target, rename on success.

A crash or a kill never leaves a truncated file under the final name, so
Snakemake (and a user) never mistakes a partial output for a finished one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


def temp_path_for(path: str | os.PathLike) -> Path:
    """A unique temporary name in the target's directory that keeps its suffix (tools sniff it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on normal exit rename it onto ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK):
        from .errors import InputError

        raise InputError(f"{path.parent}: output directory is not writable; fix its permissions or choose another results directory")
    tmp = temp_path_for(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
