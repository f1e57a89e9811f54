"""Text inputs that may be gzip- or bgzip-compressed.

One opener serves every reader of BED, barcode and fragments files.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path


def is_gzip(path: str | Path) -> bool:
    """Whether the file starts with the gzip magic bytes (gzip and bgzip alike)."""
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def open_text(path: str | Path) -> io.TextIOBase:
    """Open a plain, gzip or bgzip text file for reading, chosen by its first bytes (not by its name)."""
    return gzip.open(path, "rt") if is_gzip(path) else open(path)
