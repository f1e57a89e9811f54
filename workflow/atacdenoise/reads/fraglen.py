"""Fragment-length histograms of a fragments file or a paired-end BAM (input QC).

A fragment's length is ``end - start`` in a 10x-style fragments file and the
absolute ``template_length`` (TLEN) of read 1 of a proper pair in a BAM. Good
ATAC-seq libraries show the nucleosome ladder: a nucleosome-free peak below
~150 bp and bumps at one (~180-250 bp) and two nucleosomes.

A BAM fragment is counted once, through its first read (flag 0x40), with the
read filters of the coverage stage (:func:`atacdenoise.reads.cutsites.read_filter`:
mapped, primary, not QC-fail, not duplicate unless kept, proper pair,
MAPQ >= ``min_mapq``), as :mod:`atacdenoise.io.bam` counts usable fragments.
Single-end BAMs and bigWigs hold no fragment lengths.

The histogram is a profile, not a census: counting stops after
``max_fragments`` fragments (in file order).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.atomic import atomic_output
from atacdenoise.errors import InputError
from atacdenoise.io.bam import MIN_MAPQ, READ1, bam_damaged, check_bam, close_bam, open_bam
from atacdenoise.io.fragments import CHUNK_ROWS, iter_fragments
from atacdenoise.io.genome import check_chrom_names
from atacdenoise.io.intervals import starts_in_regions
from atacdenoise.reads.cutsites import BATCH, read_filter

log = logging.getLogger(__name__)

#: longest length with its own bin; the last bin (index MAX_FRAGMENT) holds this length and longer
MAX_FRAGMENT = 1000
#: fragments counted by default (a profile)
MAX_FRAGMENTS = 1_000_000

Regions = dict[str, tuple[np.ndarray, np.ndarray]]


def length_histogram(lengths: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Histogram of fragment lengths: int64[MAX_FRAGMENT + 1], index = length in bp, last bin = that or longer."""
    lengths = np.clip(np.asarray(lengths, dtype=np.int64), 0, MAX_FRAGMENT)
    hist = np.bincount(lengths, weights=weights, minlength=MAX_FRAGMENT + 1)
    return hist.astype(np.int64)


def _keep_rows(chrom: np.ndarray, start: np.ndarray, sizes: dict[str, int], regions: Regions | None) -> np.ndarray:
    """bool[n]: rows on a chromosome of ``sizes`` (and, with ``regions``, starting in one of them)."""
    codes, names = pd.factorize(chrom)
    if regions is None:
        return np.isin(codes, [k for k, name in enumerate(names) if name in sizes])
    keep = np.zeros(codes.size, dtype=bool)
    for k, name in enumerate(names):
        if name in sizes and name in regions:
            rows = np.flatnonzero(codes == k)
            keep[rows] = starts_in_regions(start[rows], *regions[name])
    return keep


def _fragments_file_lengths(
    path: Path,
    sizes: dict[str, int],
    regions: Regions | None,
    keep_duplicates: bool,
    max_fragments: int | None,
) -> np.ndarray:
    hist = np.zeros(MAX_FRAGMENT + 1, dtype=np.int64)
    seen: set[str] = set()
    chunk_rows = CHUNK_ROWS if max_fragments is None else int(np.clip(max_fragments, 1 << 16, CHUNK_ROWS))
    for chunk in iter_fragments(path, chunk_rows):
        chrom = chunk["chrom"].to_numpy()
        start = chunk["start"].to_numpy()
        seen.update(pd.unique(chrom).tolist())
        keep = _keep_rows(chrom, start, sizes, regions)
        lengths = chunk["end"].to_numpy()[keep] - start[keep]
        if keep_duplicates:  # one fragment per read pair, as the coverage of a fragments file with duplicates kept
            lengths = np.repeat(lengths, chunk["count"].to_numpy()[keep])
        if max_fragments is not None:
            lengths = lengths[: max_fragments - int(hist.sum())]
        hist += length_histogram(lengths)
        if max_fragments is not None and hist.sum() >= max_fragments:
            break
    if not hist.any():
        check_chrom_names(seen, sizes, path)
    return hist


def _bam_read1_arrays(bam, chrom: str) -> Iterator[tuple[np.ndarray, ...]]:
    """Batches of (flag, mapq, start, mate start, template length), int64 arrays, of one chromosome's first reads."""
    it = bam.fetch(chrom, multiple_iterators=False)
    while True:
        n = 0
        rows = []
        for r in islice(it, BATCH):
            n += 1
            if r.flag & READ1:
                rows.append((r.flag, r.mapping_quality, r.reference_start, r.next_reference_start, r.template_length))
        if n == 0:
            return
        a = np.array(rows, dtype=np.int64).reshape(-1, 5)
        yield a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4]


def _bam_lengths(
    path: Path,
    sizes: dict[str, int],
    regions: Regions | None,
    min_mapq: int,
    keep_duplicates: bool,
    max_fragments: int | None,
) -> np.ndarray | None:
    bam = open_bam(path)
    try:
        info = check_bam(bam, sizes, path)
        if not info.paired:
            log.info("%s: single-end reads, no fragment lengths", path)
            return None
        hist = np.zeros(MAX_FRAGMENT + 1, dtype=np.int64)
        for chrom in info.chroms:
            if regions is not None and chrom not in regions:
                continue
            for flag, mapq, start, mate_start, tlen in _bam_read1_arrays(bam, chrom):
                keep, _ = read_filter(flag, mapq, min_mapq, keep_duplicates)
                if regions is not None:
                    keep &= starts_in_regions(np.minimum(start, mate_start), *regions[chrom])
                lengths = np.abs(tlen[keep])
                if max_fragments is not None:
                    lengths = lengths[: max_fragments - int(hist.sum())]
                hist += length_histogram(lengths)
                if max_fragments is not None and hist.sum() >= max_fragments:
                    return hist
        return hist
    except OSError as exc:  # htslib's read error on a damaged block
        raise bam_damaged(path, exc) from None
    finally:
        close_bam(bam)


def fragment_lengths(
    path: str | Path,
    kind: str,
    sizes: dict[str, int],
    regions: Regions | None = None,
    min_mapq: int = MIN_MAPQ,
    keep_duplicates: bool = False,
    max_fragments: int | None = MAX_FRAGMENTS,
) -> np.ndarray | None:
    """Fragment-length histogram of a fragments file or a paired-end BAM.

    Parameters
    ----------
    path : str or Path
        Fragments file (plain, gzip or bgzip) or indexed, coordinate-sorted BAM.
    kind : str
        ``fragments``, ``bam`` or ``bigwig``.
    sizes : dict
        Selected chromosomes and their lengths; fragments elsewhere are left out.
    regions : dict, optional
        ``{chrom: (starts, ends)}``, sorted non-overlapping 0-based half-open
        intervals: only fragments whose start (leftmost base) lies in one are
        counted, and chromosomes without regions are skipped.
    min_mapq, keep_duplicates : int, bool
        Read filters of a BAM (as in the coverage stage). For a fragments file
        ``keep_duplicates`` counts each fragment as many times as its count
        column says; otherwise once per line.
    max_fragments : int or None
        Stop after this many fragments (in file order); None reads everything.

    Returns
    -------
    int64[MAX_FRAGMENT + 1] or None
        Fragments per length in bp (the last bin: MAX_FRAGMENT bp or longer);
        None for a single-end BAM or a bigWig.

    Raises
    ------
    InputError
        Unreadable input, or one sharing no chromosome with ``sizes``.
    """
    path = Path(path)
    if kind == "bigwig":
        return None
    if kind == "fragments":
        hist = _fragments_file_lengths(path, sizes, regions, keep_duplicates, max_fragments)
    elif kind == "bam":
        hist = _bam_lengths(path, sizes, regions, min_mapq, keep_duplicates, max_fragments)
    else:
        raise ValueError(f"kind {kind!r}: expected bam, fragments or bigwig")
    if hist is not None:
        n = int(hist.sum())
        if n == 0:
            where = " in the regions" if regions is not None else ""
            log.warning("%s: no fragment passed the filters%s: empty length histogram", path, where)
        else:
            log.info(
                "%s: lengths of %s fragments%s (median %d bp)",
                path,
                f"{n:,}",
                " (the first ones: a profile)" if max_fragments is not None and n >= max_fragments else "",
                median_length(hist),
            )
    return hist


def median_length(hist: np.ndarray) -> int:
    """Median fragment length (bp) of a histogram; -1 when it is empty."""
    hist = np.asarray(hist)
    total = int(hist.sum())
    if total == 0:
        return -1
    return int(np.searchsorted(np.cumsum(hist), total / 2))


def write_fraglen(path: str | Path, hist: np.ndarray | None) -> None:
    """Write a histogram as a TSV ``length<TAB>count``, one line per bin; None (no lengths) writes the header only."""
    lines = ["length\tcount"]
    if hist is not None:
        lines += [f"{i}\t{int(c)}" for i, c in enumerate(np.asarray(hist))]
    with atomic_output(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


def read_fraglen(path: str | Path) -> np.ndarray:
    """Read a histogram written by :func:`write_fraglen`: int64[MAX_FRAGMENT + 1], or an empty array (no lengths)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: fragment-length table not found")
    try:
        df = pd.read_csv(path, sep="\t", dtype=np.int64)
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(
            f"{path}: not a fragment-length table ({exc}); expected 'length<TAB>count' integer lines "
            "(written by atacdenoise qc --out-fraglen): make it again"
        ) from None
    if list(df.columns) != ["length", "count"]:
        raise InputError(
            f"{path}: header {list(df.columns)}, expected length<TAB>count; make it again with atacdenoise qc"
        )
    if len(df) and not np.array_equal(df["length"].to_numpy(), np.arange(MAX_FRAGMENT + 1)):
        raise InputError(f"{path}: lengths are not 0..{MAX_FRAGMENT} in order; make it again with atacdenoise qc")
    return df["count"].to_numpy(np.int64)
