"""The one exception type for problems a user can fix in their inputs or settings, and its commonest check."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """A bad input file or setting.

    The CLI prints the message (no traceback) and exits with status 2, so the
    message must stand alone: name the file, say what was found, what was
    expected, and how to fix it.
    """


def require_file(path: str | Path, what: str) -> Path:
    """Return ``path`` as a Path if the file exists; else raise :class:`InputError` naming it and ``what`` it is."""
    if not Path(path).exists():
        raise InputError(f"{path}: {what} not found")
    return Path(path)
