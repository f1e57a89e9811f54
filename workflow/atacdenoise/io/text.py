"""Text inputs that may be gzip- or bgzip-compressed.

One opener serves every reader of BED, barcode and fragments files. A
damaged compressed file raises one of :data:`READ_ERRORS` while it is read
(readers turn them into an ``InputError`` naming the file); a bgzip file cut
at a block boundary, which gzip readers take for a whole file, is refused
when it is opened (:func:`check_bgzf_complete`).
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path

from atacdenoise.errors import InputError

#: what reading a damaged or truncated (b)gzip text file raises (gzip.BadGzipFile is an OSError)
READ_ERRORS = (OSError, EOFError, UnicodeDecodeError, zlib.error)
#: the empty block that ends every BGZF file (SAM/BAM specification, section 4.1.2)
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def is_gzip(path: str | Path) -> bool:
    """Whether the file starts with the gzip magic bytes (gzip and bgzip alike)."""
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def is_bgzf(path: str | Path) -> bool:
    """Whether the file starts with a BGZF block header (gzip with the ``BC`` extra field: bgzip, BAM, tabix)."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    return len(head) == 18 and head[:4] == b"\x1f\x8b\x08\x04" and head[12:14] == b"BC"


def bgzf_ends_whole(path: str | Path) -> bool:
    """Whether a BGZF file ends with the end-of-file block (False for a cut one; True for any other file)."""
    if not is_bgzf(path):
        return True
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - len(BGZF_EOF)))
        return fh.read() == BGZF_EOF


def check_bgzf_complete(path: str | Path, what: str = "file") -> None:
    """Raise ``InputError`` when a bgzip file lacks the end-of-file block that every complete one ends with.

    A bgzip file is a series of gzip members: one cut after a member reads
    as a whole, shorter file with any gzip reader. Plain gzip and plain text
    pass (they have no such marker to check).
    """
    if not bgzf_ends_whole(path):
        raise InputError(
            f"{path}: the bgzip-compressed {what} does not end with bgzip's end-of-file block, so it is truncated "
            "(an interrupted copy or download); copy it again or re-create it"
        )


def open_text(path: str | Path) -> io.TextIOBase:
    """Open a plain, gzip or bgzip text file for reading, chosen by its first bytes (not by its name).

    A truncated bgzip file is an ``InputError`` (:func:`check_bgzf_complete`).
    """
    if is_gzip(path):
        check_bgzf_complete(path)
        return gzip.open(path, "rt")
    return open(path)
