"""bigWig reading and atomic, streamed writing.

The native reader and writer are :mod:`atacdenoise.io.bbiread` and :mod:`atacdenoise.io.bbiwrite`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from atacdenoise.atomic import commit, remove_stale_temps, temp_path_for
from atacdenoise.errors import InputError
from atacdenoise.io.bbiread import BigWigFileReader
from atacdenoise.io.bbiwrite import FIRST_ZOOM, BigWigFileWriter
from atacdenoise.io.genome import check_chrom_lengths, check_chrom_names

log = logging.getLogger(__name__)


def open_bigwig(path: str | Path, threads: int = 1) -> BigWigFileReader:
    """Open a bigWig for reading (the native reader), with a clear error when it is missing or not a bigWig.

    ``threads``: workers that inflate data blocks (1: the calling thread). A file that is not a bigWig, or
    is damaged, raises :class:`~atacdenoise.io.bbiread.BigWigReadError` (an ``InputError`` naming it),
    here or when its data are read.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: bigWig not found")
    try:
        return BigWigFileReader(path, threads=threads)
    except OSError as exc:
        raise InputError(f"{path}: not a readable bigWig file ({exc}); check the file and its permissions") from None


def bigwig_chrom_sizes(path: str | Path) -> dict[str, int]:
    """Chromosome lengths stored in a bigWig's header."""
    bw = open_bigwig(path)
    try:
        return dict(bw.chroms())
    finally:
        bw.close()


def check_bigwig(path: str | Path, sizes: dict[str, int]) -> dict[str, int]:
    """Raise when the bigWig lacks a chromosome of ``sizes`` or has a different length for one; else its chroms."""
    found = bigwig_chrom_sizes(path)
    check_chrom_names(found, sizes, path)
    check_chrom_lengths(found, sizes, path)
    missing = [c for c in sizes if c not in found]
    if missing:
        raise InputError(
            f"{path}: chromosomes {missing[:5]} of the genome sizes file are missing from this bigWig; "
            "re-create it over the whole genome or restrict genome.chroms in the config"
        )
    return found


def bigwig_total(path: str | Path, chroms: dict[str, int] | None = None) -> float:
    """Sum of a bigWig's values over its chromosomes (those also in ``chroms`` when given), exact.

    Used for depth normalisation: the same total as summing the per-base arrays of a dataset.
    """
    bw = open_bigwig(path)
    try:
        total = 0.0
        for chrom, length in bw.chroms().items():
            if chroms is not None and chrom not in chroms:
                continue
            value = bw.stats(chrom, 0, length, type="sum", exact=True)[0]
            total += float(value or 0.0)
        return total
    finally:
        bw.close()


def read_bigwig(path: str | Path, chrom: str, start: int = 0, end: int | None = None, bw=None) -> np.ndarray:
    """float32[end - start] of per-base values; bases with no data read as 0."""
    own = bw is None
    bw = open_bigwig(path) if own else bw
    try:
        if bw.chroms(chrom) is None:
            raise InputError(f"{path}: chromosome {chrom} not in this bigWig")
        return bw.values(chrom, start, end, fill=0.0)
    finally:
        if own:
            bw.close()


class BigWigWriter:
    """Stream per-base arrays into a bigWig, atomically (the native writer, :mod:`atacdenoise.io.bbiwrite`).

    Chromosomes must be added in the order of ``sizes`` (a bigWig requirement).
    Step-like chunks (smoothed integer coverage) are stored as runs of equal
    values with zero runs left out; chunks with a new value at most bases
    (model outputs, p-values) as per-base values, leaving out only long runs of
    zeros. A missing base reads as 0. Values are stored as float32, exactly.
    Zoom levels (``max_zooms``, 0 for none) are built as the data streams in,
    in bounded memory; ``threads`` deflate blocks in parallel; ``fast`` uses
    ISA-L (values identical, bytes not reproducible run to run; the default,
    zlib, gives the same bytes every run); ``first_zoom``: bases per record of the
    first zoom level; ``smallest``: step-like chunks encoded both ways, the smaller kept. The file appears
    under its final name only when the ``with`` block ends without an error.
    ``in_place``: write straight to ``path`` (for a caller that already chose a
    temporary name and renames it itself); it is still deleted on an error.
    """

    def __init__(
        self,
        path: str | Path,
        sizes: dict[str, int],
        max_zooms: int = 10,
        in_place: bool = False,
        threads: int = 1,
        fast: bool = False,
        first_zoom: int = FIRST_ZOOM,
        smallest: bool = False,
    ):
        self.path = Path(path)
        self.sizes = dict(sizes)
        self.first_zoom = first_zoom
        self.smallest = smallest
        self.max_zooms = max_zooms
        self.in_place = in_place
        self.threads = threads
        self.fast = fast
        self.tmp = self.path if in_place else temp_path_for(self.path)

    def __enter__(self) -> BigWigWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.in_place:
            remove_stale_temps(self.path)
        self.writer = BigWigFileWriter(
            self.tmp,
            self.sizes,
            zoom_levels=self.max_zooms,
            threads=self.threads,
            fast=self.fast,
            first_zoom=self.first_zoom,
            smallest=self.smallest,
        )
        return self

    def add(self, chrom: str, start: int, values: np.ndarray) -> None:
        """Write ``values`` (per base) at ``chrom:start``; calls must move forward along the genome."""
        self.writer.add(chrom, start, values)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.writer.close()
            except BaseException:
                self.tmp.unlink(missing_ok=True)
                raise
            if not self.in_place:
                commit(self.tmp, self.path)
        else:
            self.writer.abort()
            self.tmp.unlink(missing_ok=True)


def write_bigwig(path: str | Path, sizes: dict[str, int], tracks: dict[str, np.ndarray]) -> None:
    """Write whole-chromosome arrays (``tracks[chrom]``, in sizes order; absent chromosomes stay empty)."""
    with BigWigWriter(path, sizes) as w:
        for chrom in sizes:
            if chrom in tracks:
                w.add(chrom, 0, tracks[chrom])


class BigWigTracks(Mapping):
    """chrom -> float32[n_bases] of a bigWig, read on access: one chromosome in memory at a time."""

    def __init__(self, path: str | Path, chroms: list[str]):
        self.path, self.chroms = Path(path), list(chroms)

    def __getitem__(self, chrom: str) -> np.ndarray:
        if chrom not in self.chroms:
            raise KeyError(chrom)
        return read_bigwig(self.path, chrom)

    def __iter__(self) -> Iterator[str]:
        return iter(self.chroms)

    def __len__(self) -> int:
        return len(self.chroms)


class BigWigSource:
    """A bigWig read window by window (missing data and NaN read as 0)."""

    def __init__(self, path: Path, sizes: dict[str, int], chroms: list[str]):
        self.path = Path(path)
        self.bw = open_bigwig(self.path)
        found = self.bw.chroms()
        for chrom in chroms:
            if chrom not in found:
                raise InputError(
                    f"{self.path}: chromosome {chrom} of the evaluated regions is not in this bigWig "
                    f"(it has {', '.join(list(found)[:5])}); use a bigWig made over the whole genome"
                )
            if found[chrom] != sizes[chrom]:
                raise InputError(
                    f"{self.path}: {chrom} is {found[chrom]:,} bp here but {sizes[chrom]:,} bp in the sizes file; "
                    "the bigWig was made on another assembly"
                )

    def read(self, chrom: str, start: int, end: int) -> np.ndarray:
        """Return float32[end - start] of ``chrom``, missing data and NaN as 0."""
        values = self.bw.values(chrom, start, end, fill=0.0)
        return np.nan_to_num(values, copy=False, nan=0.0, posinf=0.0, neginf=0.0)

    def close(self) -> None:
        """Close the bigWig."""
        self.bw.close()
