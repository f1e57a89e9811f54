"""10x-style fragments files: reading with validation, counting, bgzip + tabix writing.

Seeded subsampling of a fragments file is :mod:`atacdenoise.reads.subsample`'s.

A fragments file has five tab-separated columns, one fragment per line::

    chrom  start  end  barcode  count

0-based half-open; ``start`` and ``end - 1`` are the fragment's two Tn5 cut
sites, already shifted (Cell Ranger ATAC convention). ``count`` is how many
read pairs (PCR duplicates) supported the fragment. Lines starting with ``#``
(Cell Ranger's header) and blank lines are skipped. Plain text, gzip and bgzip
are all read (detected from the file's first bytes, not its name).

Files are read in chunks of rows with pandas' C parser, so memory stays
bounded whatever the file size.
"""

from __future__ import annotations

import io
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pysam

from atacdenoise.atomic import commit, remove_stale_temps, temp_path_for
from atacdenoise.errors import InputError
from atacdenoise.io.text import READ_ERRORS, bgzf_ends_whole, check_bgzf_complete, is_gzip, open_text

log = logging.getLogger(__name__)

COLUMNS = ("chrom", "start", "end", "barcode", "count")
#: rows parsed per chunk (about 100-200 MB of pandas memory with barcodes)
CHUNK_ROWS = 2_000_000
_NAMES = [*list(COLUMNS), "_extra"]


def _locate_row(path: Path, row: int) -> tuple[int, str]:
    """1-based line number and text of the ``row``-th (0-based) data line; only used to word an error."""
    seen = -1
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip() or line.startswith("#"):
                continue
            seen += 1
            if seen == row:
                return lineno, line.rstrip("\n")
    return -1, ""


def _first_wrong_width(path: Path) -> tuple[int, str]:
    """1-based line number and text of the first data line without exactly 5 fields; (-1, '') if none."""
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip() and not line.startswith("#") and line.rstrip("\n").count("\t") != len(COLUMNS) - 1:
                return lineno, line.rstrip("\n")
    return -1, ""


def _bad_row(path: Path, row: int, what: str) -> InputError:
    lineno, text = _locate_row(path, row)
    return _bad_line(path, lineno, text, what)


def _read_failed(path: Path, exc: BaseException) -> InputError:
    """Return the error for a fragments file that cannot be read to its end (damaged or truncated compression)."""
    return InputError(
        f"{path}: cannot read ({type(exc).__name__}: {exc}); the file is truncated or damaged, or not a fragments "
        "file: copy it again or re-create it (gzip -t tests a gzip file)"
    )


def _bad_line(path: Path, lineno: int, text: str, what: str) -> InputError:
    shown = text.replace("\t", "<TAB>")
    if len(shown) > 120:
        shown = shown[:120] + "..."
    return InputError(
        f"{path}, line {lineno}: {what}; found {shown!r}. Expected a 10x-style fragments file with 5 tab-separated "
        "columns: chrom, start, end, barcode, count (0-based, start < end); fix or regenerate the file"
    )


def _check_chunk(chunk: pd.DataFrame, path: Path, first_row: int) -> pd.DataFrame:
    """Validate one parsed chunk; return it with integer start/end/count."""
    n_fields_bad = chunk["count"].isna().to_numpy() | chunk["_extra"].notna().to_numpy()
    if n_fields_bad.any():
        i = int(np.flatnonzero(n_fields_bad)[0])
        raise _bad_row(path, first_row + i, "wrong number of columns")
    for col in ("start", "end", "count"):
        values = pd.to_numeric(chunk[col], errors="coerce")
        bad = values.isna().to_numpy() | (values.to_numpy(dtype=np.float64) % 1 != 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _bad_row(path, first_row + i, f"column {col!r} is not an integer")
        chunk[col] = values.astype(np.int64)
    start, end = chunk["start"].to_numpy(), chunk["end"].to_numpy()
    bad = (start < 0) | (end <= start)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _bad_row(path, first_row + i, "expected 0 <= start < end")
    return chunk.drop(columns="_extra")


def iter_fragments(path: str | Path, chunk_rows: int = CHUNK_ROWS, barcodes: bool = False) -> Iterator[pd.DataFrame]:
    """Read a fragments file in validated chunks.

    Parameters
    ----------
    path : str or Path
        Plain, gzip or bgzip fragments file.
    chunk_rows : int
        Rows per chunk.
    barcodes : bool
        Also return the barcode column (costs memory; not needed for cut sites).

    Yields
    ------
    DataFrame with columns chrom (str), start, end, count (int64) and, with
    ``barcodes``, barcode (str), in file order.

    Raises
    ------
    InputError
        File missing, empty, or a line with the wrong number of columns,
        non-integer coordinates or ``start >= end`` (the message gives the line number).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: fragments file not found")
    check_bgzf_complete(path, "fragments file")
    first_row = 0
    try:
        # no usecols: with it pandas rejects files whose lines all have fewer fields than names
        reader = pd.read_csv(
            path,
            sep="\t",
            header=None,
            names=_NAMES,
            # no comment="#": pandas would cut lines at any '#', and real barcodes hold one
            # (ArchR's `Sample#BARCODE-1`); comment lines are those that start with '#', dropped below
            dtype={"chrom": str, "barcode": str, "_extra": str},
            compression="gzip" if is_gzip(path) else None,
            chunksize=chunk_rows,
            engine="c",
        )
        for chunk in reader:
            comment = chunk["chrom"].str.startswith("#", na=False).to_numpy()
            if comment.any():
                chunk = chunk[~comment].reset_index(drop=True)
            n = len(chunk)
            if n == 0:
                continue
            chunk = _check_chunk(chunk, path, first_row)
            yield chunk if barcodes else chunk.drop(columns="barcode")
            first_row += n
    except pd.errors.ParserError as exc:
        try:
            lineno, text = _first_wrong_width(path)
        except READ_ERRORS as read_exc:
            raise _read_failed(path, read_exc) from None
        if lineno > 0:
            raise _bad_line(path, lineno, text, "wrong number of columns") from None
        raise InputError(
            f"{path}: cannot parse as a 5-column fragments file ({exc}); fix or regenerate the file"
        ) from None
    except READ_ERRORS as exc:
        raise _read_failed(path, exc) from None
    if first_row == 0:
        raise InputError(
            f"{path}: no fragments (only comments or blank lines); expected chrom, start, end, barcode, count lines"
        )


@dataclass
class FragmentStats:
    """Counts from one pass over a fragments file."""

    lines: int = 0  #: fragment lines read
    other_chroms: int = 0  #: lines on chromosomes not selected
    used: int = 0  #: fragments on the selected chromosomes
    reads: int = 0  #: sum of the count column over used fragments
    chroms_seen: set[str] = field(default_factory=set)


def _chrom_groups(chrom: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """(chrom, row indices) for each chromosome of a chunk, in order of first appearance."""
    codes, names = pd.factorize(chrom)
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(codes, minlength=len(names)))))
    for k, name in enumerate(names):
        yield str(name), order[bounds[k] : bounds[k + 1]]


def _check_ends(path: Path, chrom: str, end: np.ndarray, length: int) -> None:
    if end.size and int(end.max()) > length:
        raise InputError(
            f"{path}: a fragment on {chrom} ends at {int(end.max()):,}, past the chromosome's length {length:,} "
            "in the genome sizes file; the file was made on another assembly: use the matching genome.sizes"
        )


def position_dtype(sizes: dict[str, int]) -> type:
    """Integer type of cut-site positions on these chromosomes: int32 (4 bytes), int64 from 2^31 bases."""
    return np.int32 if max(sizes.values(), default=0) < np.iinfo(np.int32).max else np.int64


def iter_fragment_cut_sites(
    path: str | Path,
    sizes: dict[str, int],
    use_count: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    stats: FragmentStats | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(chrom, cut sites)`` parts, one per chromosome of each chunk read, for the chromosomes of ``sizes``.

    A part holds both cut sites (``start`` and ``end - 1``) of its fragments, as int32 (int64 for a
    chromosome of 2^31 bases or more); a chromosome may come in several parts, in any order (a file sorted
    by position gives them one chromosome after another). ``use_count`` weights each fragment by its count
    column (keeps PCR duplicates, like ``--keep-duplicates`` for a BAM); otherwise each line is one
    fragment. ``stats`` (when given) is filled with the counts of the pass; once the file is read,
    chromosome names are checked against ``sizes`` (:func:`atacdenoise.io.genome.check_chrom_names`).
    Memory: one chunk, whatever the file size.
    """
    path = Path(path)
    dtype = position_dtype(sizes)
    stats = stats if stats is not None else FragmentStats()
    for chunk in iter_fragments(path, chunk_rows):
        stats.lines += len(chunk)
        chrom = chunk["chrom"].to_numpy()
        for name, rows in _chrom_groups(chrom):
            stats.chroms_seen.add(name)
            if name not in sizes:
                stats.other_chroms += rows.size
                continue
            start = chunk["start"].to_numpy()[rows]
            end = chunk["end"].to_numpy()[rows]
            count = chunk["count"].to_numpy()[rows]
            _check_ends(path, name, end, sizes[name])
            stats.used += rows.size
            stats.reads += int(count.sum())
            if use_count:
                start, end = np.repeat(start, count), np.repeat(end, count)
            yield name, np.concatenate([start.astype(dtype), (end - 1).astype(dtype)])
    from atacdenoise.io.genome import check_chrom_names

    check_chrom_names(stats.chroms_seen, sizes, path)


def fragment_cut_sites_by_chrom(
    path: str | Path, sizes: dict[str, int], use_count: bool = False, chunk_rows: int = CHUNK_ROWS
) -> tuple[dict[str, np.ndarray], FragmentStats]:
    """Cut sites of every fragment on the chromosomes of ``sizes``, all held at once (:func:`iter_fragment_cut_sites`).

    Returns ``positions`` (chrom -> int32 cut sites, int64 for a chromosome of 2^31 bases or more) and the
    pass's :class:`FragmentStats`. For the commands that need every chromosome together; the coverage
    stage streams instead (:class:`atacdenoise.reads.coverage.CutSiteSpill`: memory set by the largest
    chromosome, not the file).
    """
    parts: dict[str, list[np.ndarray]] = {}
    stats = FragmentStats()
    for name, part in iter_fragment_cut_sites(path, sizes, use_count, chunk_rows, stats):
        parts.setdefault(name, []).append(part)
    return {c: np.concatenate(parts.pop(c)) for c in sizes if c in parts}, stats


def count_fragments(
    path: str | Path, chroms: dict[str, int] | None = None, chunk_rows: int = CHUNK_ROWS
) -> FragmentStats:
    """Count fragment lines, in all (``chroms`` None) or on the chromosomes of ``chroms`` (validating ends)."""
    path = Path(path)
    stats = FragmentStats()
    for chunk in iter_fragments(path, chunk_rows):
        stats.lines += len(chunk)
        for name, rows in _chrom_groups(chunk["chrom"].to_numpy()):
            stats.chroms_seen.add(name)
            if chroms is not None and name not in chroms:
                stats.other_chroms += rows.size
                continue
            if chroms is not None:
                _check_ends(path, name, chunk["end"].to_numpy()[rows], chroms[name])
            stats.used += rows.size
            stats.reads += int(chunk["count"].to_numpy()[rows].sum())
    if chroms is not None:
        from atacdenoise.io.genome import check_chrom_names

        check_chrom_names(stats.chroms_seen, chroms, path)
    return stats


class SortOrder:
    """Follow rows chunk by chunk and tell where they stop being sorted as tabix needs.

    Sorted: each chromosome's rows in one stretch (any order of chromosomes),
    starts non-decreasing within it.
    """

    def __init__(self) -> None:
        self.done: set[str] = set()
        self.chrom: str | None = None
        self.start = -1

    def disorder(self, chrom: np.ndarray, start: np.ndarray) -> str | None:
        """Take the next rows (``chrom`` names, ``start`` int64); return where they break the order, or None."""
        if not chrom.size:
            return None
        cuts = np.flatnonzero(chrom[1:] != chrom[:-1]) + 1
        for a, b in zip(np.concatenate(([0], cuts)).tolist(), np.concatenate((cuts, [chrom.size])).tolist()):
            name = str(chrom[a])
            if name != self.chrom:
                if name in self.done:
                    return f"{name} appears again after {self.chrom}"
                if self.chrom is not None:
                    self.done.add(self.chrom)
                self.chrom, self.start = name, -1
            starts = start[a:b]
            back = np.flatnonzero(np.diff(starts) < 0)
            if starts[0] < self.start or back.size:
                i = 0 if starts[0] < self.start else int(back[0]) + 1
                before = self.start if i == 0 else int(starts[i - 1])
                return f"{name}:{int(starts[i]):,} follows {name}:{before:,}"
            self.start = int(starts[-1])
        return None


def _write_failed(out: Path, exc: OSError) -> InputError:
    """Return the error for an output that could not be written (a full disk, a quota, a failing file system)."""
    try:
        free = f"{shutil.disk_usage(out.parent).free / 1e6:,.1f} MB free there now"
    except OSError:
        free = "free space unknown"
    return InputError(
        f"{out}: cannot write the fragments file or its tabix index ({exc}; {free}): the disk or quota of "
        f"{out.parent} is full, or the file system failed (or a position is past tabix's 512 Mb limit); free some "
        "space, or choose another results folder, and run again"
    )


def write_fragments(chunks, out: str | Path, header: str = "", source: str | Path | None = None) -> int:
    """Write fragment chunks (DataFrames with the 5 columns) bgzipped, then tabix-index them; atomic.

    The data file appears under its final name last, after its ``.tbi``.
    Raises ``InputError`` when the rows are not sorted by chromosome and start
    (tabix needs that; checked here as the rows are written), naming ``source``
    and the first row out of order; and, worded apart, when the file or its
    index cannot be written (a full disk: any ``OSError`` of the writing).

    Returns
    -------
    int: fragments written.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)  # a killed attempt's file and index (this host's only)
    tmp = temp_path_for(out)
    if tmp.suffix != ".gz":
        tmp = tmp.with_name(tmp.name + ".gz")
    tbi = Path(str(tmp) + ".tbi")
    n = 0
    order = SortOrder()
    try:
        with pysam.BGZFile(str(tmp), "wb") as fh:
            if header:
                fh.write(header.encode())
            for chunk in chunks:
                problem = order.disorder(chunk["chrom"].to_numpy(), chunk["start"].to_numpy())
                if problem:
                    raise InputError(
                        f"{source or out}: fragments are not sorted by chromosome and start ({problem}), so the "
                        "output cannot be tabix-indexed; sort the input (e.g. sort -k1,1 -k2,2n) and bgzip it"
                    )
                buf = io.StringIO()
                chunk.loc[:, list(COLUMNS)].to_csv(buf, sep="\t", header=False, index=False)
                fh.write(buf.getvalue().encode())
                n += len(chunk)
        if not bgzf_ends_whole(tmp):  # htslib may only log a failed last write (a full disk)
            raise OSError("the compressed data were not all written")
        pysam.tabix_index(str(tmp), preset="bed", force=True, keep_original=True)
        commit(tbi, Path(str(out) + ".tbi"))
        commit(tmp, out)
    except OSError as exc:  # the rows are in order (checked above): writing or indexing the file failed
        raise _write_failed(out, exc) from None
    finally:
        tmp.unlink(missing_ok=True)
        tbi.unlink(missing_ok=True)
    return n
