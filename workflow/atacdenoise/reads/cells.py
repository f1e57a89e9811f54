"""Cells of single-cell ATAC data: the barcode -> cell-type table, seeded cell draws, pseudobulk filtering.

A *pseudobulk* profile of a cell type is the union of the fragments of its
cells. The clean profile of a cell type is all of its cells; a few-cell noisy
profile is ``N`` of them drawn with a seed.

Barcode table (TSV, plain or gzip)
    Either exactly two columns ``barcode<TAB>cell_type`` per line, or a header
    line naming a ``barcode`` and a ``cell_type`` column (any order, extra
    columns ignored: e.g. a metadata table exported from ArchR or Signac).
    Lines starting with ``#`` and blank lines are skipped. Every barcode must
    appear once; barcodes must be spelt exactly as in the fragments file
    (10x's ``-1`` suffix and ArchR's ``sample#`` prefix included).

Cell draws are nested: the cells are put in a seeded random order and the
first ``N`` are taken, so with one seed the 10 cells are among the 50, which
are among the 100 (curves of quality vs number of cells then differ only by
the cells added, not by a fresh draw at every point).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.atomic import atomic_output
from atacdenoise.errors import InputError
from atacdenoise.io.fragments import CHUNK_ROWS, iter_fragments, write_fragments
from atacdenoise.io.text import READ_ERRORS, open_text

log = logging.getLogger(__name__)

#: barcode table columns (header names, case-insensitive)
BARCODE_COL = "barcode"
TYPE_COL = "cell_type"
#: examples quoted in error messages
SHOW = 3


def _lines_preview(linenos: list[int]) -> str:
    shown = ", ".join(str(n) for n in linenos[:SHOW])
    return shown + (", ..." if len(linenos) > SHOW else "")


def parse_barcode_lines(lines: Iterable[str], source: str | Path = "barcode table") -> pd.DataFrame:
    """Parse and validate the lines of a barcode -> cell-type table.

    Parameters
    ----------
    lines : iterable of str
        The file's lines (with or without trailing newlines).
    source : str or Path
        Name used in error messages.

    Returns
    -------
    DataFrame with columns ``barcode``, ``cell_type`` (str) and ``line``
    (1-based line number in the file), in file order.

    Raises
    ------
    InputError
        No data lines; lines with the wrong number of columns or an empty
        field (count and first line numbers); a barcode listed more than once
        (count and an example).
    """
    rows: list[tuple[str, str, int]] = []
    bad_fields: list[int] = []
    empty: list[int] = []
    columns: tuple[int, int] | None = None
    n_fields = 2
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split("\t")]
        if columns is None:
            lower = [f.lower() for f in fields]
            if BARCODE_COL in lower and TYPE_COL in lower:  # header line
                columns = (lower.index(BARCODE_COL), lower.index(TYPE_COL))
                n_fields = len(fields)
                continue
            columns = (0, 1)
        if len(fields) != n_fields:
            bad_fields.append(lineno)
            continue
        barcode, cell_type = fields[columns[0]], fields[columns[1]]
        if not barcode or not cell_type:
            empty.append(lineno)
            continue
        rows.append((barcode, cell_type, lineno))
    if bad_fields:
        raise InputError(
            f"{source}: {len(bad_fields):,} line(s) do not have {n_fields} tab-separated columns "
            f"(lines {_lines_preview(bad_fields)}). "
            "Expected `barcode<TAB>cell_type` per line, or a header naming `barcode` and `cell_type` columns; "
            "fix the table (tabs, not spaces, between columns)"
        )
    if empty:
        raise InputError(
            f"{source}: {len(empty):,} line(s) have an empty barcode or cell type (lines {_lines_preview(empty)}); "
            "give every barcode a cell type or drop the line"
        )
    if not rows:
        raise InputError(
            f"{source}: no barcodes (only comments, blank lines or a header); expected `barcode<TAB>cell_type` lines"
        )
    table = pd.DataFrame(rows, columns=[BARCODE_COL, TYPE_COL, "line"])
    dup = table[BARCODE_COL].duplicated(keep=False)
    if dup.any():
        n_dup = int(table.loc[dup, BARCODE_COL].nunique())
        first = table.loc[dup, BARCODE_COL].iloc[0]
        where = table.loc[table[BARCODE_COL] == first]
        detail = ", ".join(f"line {r.line} ({r.cell_type})" for r in where.itertuples())
        raise InputError(
            f"{source}: {n_dup:,} barcode(s) are listed more than once, e.g. {first!r} on {detail}; "
            "every barcode must belong to exactly one cell type: remove the duplicates"
        )
    return table


def read_barcode_table(path: str | Path) -> pd.DataFrame:
    """Read and validate a barcode -> cell-type table (see the module docstring); plain or gzip.

    Returns
    -------
    DataFrame with columns ``barcode``, ``cell_type``, ``line`` (see :func:`parse_barcode_lines`).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: barcode table not found; give a TSV of barcode<TAB>cell_type")
    try:
        with open_text(path) as fh:
            return parse_barcode_lines(fh, source=path)
    except READ_ERRORS as exc:
        raise InputError(f"{path}: cannot read the barcode table ({exc}); expected a plain or gzipped TSV") from None


def cell_type_counts(table: pd.DataFrame) -> pd.Series:
    """Cells per cell type, largest first (ties by name): int Series indexed by cell type."""
    counts = table[TYPE_COL].value_counts()
    return counts.sort_index().sort_values(ascending=False, kind="stable")


def _describe_counts(counts: pd.Series, k: int = 8) -> str:
    items = [f"{t} ({n:,})" for t, n in counts.items()]
    return ", ".join(items[:k]) + (f", ... ({len(items)} types)" if len(items) > k else "")


def barcodes_of_type(table: pd.DataFrame, cell_type: str, source: str | Path = "barcode table") -> np.ndarray:
    """Return the barcodes of one cell type, sorted: str[n_cells].

    Sorting makes a draw depend only on the set of barcodes and the seed,
    not on the order of the table's lines.

    Raises
    ------
    InputError
        The cell type is absent from the table (the message lists the types
        present with their numbers of cells).
    """
    sel = table.loc[table[TYPE_COL] == cell_type, BARCODE_COL].to_numpy(dtype=str)
    if sel.size == 0:
        raise InputError(
            f"{source}: no cell of type {cell_type!r}; the table has {_describe_counts(cell_type_counts(table))}. "
            "Use one of these names (case matters) in the sample sheet's cell_type column"
        )
    return np.sort(sel)


def cell_order(barcodes: np.ndarray, seed: int) -> np.ndarray:
    """Return a seeded random order of the sorted barcodes: str[n_cells]. Same seed and barcodes -> same order."""
    barcodes = np.sort(np.asarray(barcodes, dtype=str))
    return barcodes[np.random.default_rng(seed).permutation(barcodes.size)]


def select_barcodes(
    barcodes: np.ndarray,
    n_cells: int | None,
    seed: int,
    cell_type: str = "",
    source: str | Path = "barcode table",
) -> np.ndarray:
    """Exactly ``n_cells`` distinct barcodes drawn with a seed, sorted: str[n_cells].

    Parameters
    ----------
    barcodes : str[n]
        The candidate cells (one cell type); duplicates are not allowed.
    n_cells : int or None
        Cells to draw; None takes them all.
    seed : int
        Seed of NumPy's default generator. Draws are nested: for one seed the
        ``n`` cells drawn are the first ``n`` of :func:`cell_order`, so a smaller
        draw is a subset of a larger one.

    Raises
    ------
    InputError
        ``n_cells`` < 1 or larger than the number of cells (both numbers named).
    """
    barcodes = np.asarray(barcodes, dtype=str)
    if np.unique(barcodes).size != barcodes.size:
        raise ValueError("select_barcodes: duplicate barcodes among the candidates")
    if n_cells is None:
        return np.sort(barcodes)
    if n_cells < 1:
        raise InputError(f"asked for {n_cells} cells of type {cell_type!r}; the number of cells must be at least 1")
    if n_cells > barcodes.size:
        raise InputError(
            f"{source}: asked for {n_cells:,} cells of type {cell_type!r} but the table has only {barcodes.size:,}; "
            "lower the number of cells (config `cells`) or drop this cell type from the few-cell samples"
        )
    return np.sort(cell_order(barcodes, seed)[:n_cells])


def barcode_codes(fragment_barcodes: np.ndarray, barcodes: np.ndarray | pd.Index) -> np.ndarray:
    """Index of each fragment's barcode in ``barcodes``, -1 when absent: int64[n_fragments] (hash lookup)."""
    index = barcodes if isinstance(barcodes, pd.Index) else pd.Index(np.asarray(barcodes, dtype=str))
    return index.get_indexer(np.asarray(fragment_barcodes, dtype=object)).astype(np.int64, copy=False)


@dataclass
class PseudobulkStats:
    """What one pass of :func:`pseudobulk_chunks` saw."""

    selected: np.ndarray  #: str[n_cells], the pseudobulk's cells (sorted)
    per_cell: np.ndarray | None = None  #: int64[n_cells] fragments per selected cell (zeros to start)
    fragments_seen: int = 0  #: fragment lines read
    kept: int = 0  #: fragments of the selected cells
    other_cells: int = 0  #: fragments of cells of the table that were not selected
    unknown: int = 0  #: fragments whose barcode is not in the table (e.g. non-cell barcodes)
    example_unknown: str = ""  #: one such barcode, for error messages

    def __post_init__(self) -> None:
        if self.per_cell is None:
            self.per_cell = np.zeros(len(self.selected), dtype=np.int64)

    @property
    def empty_cells(self) -> np.ndarray:
        """Selected barcodes without a single fragment: str[k]."""
        return self.selected[self.per_cell == 0]

    def summary(self) -> str:
        """Describe the pass in one line: fragments kept, cells and their median, and what was left out."""
        per = self.per_cell
        med = int(np.median(per)) if per.size else 0
        return (
            f"{self.kept:,} fragments of {len(self.selected):,} cells (median {med:,} per cell) "
            f"out of {self.fragments_seen:,}; "
            f"{self.other_cells:,} of other cells of the table, {self.unknown:,} of barcodes not in the table"
        )


def pseudobulk_chunks(
    chunks: Iterable[pd.DataFrame],
    selected: np.ndarray,
    table_barcodes: np.ndarray,
    stats: PseudobulkStats | None = None,
) -> Iterator[pd.DataFrame]:
    """Keep the fragments of the selected cells, chunk by chunk, counting what is dropped.

    Parameters
    ----------
    chunks : iterable of DataFrame
        Fragment chunks with a ``barcode`` column (``fragments.iter_fragments(..., barcodes=True)``).
    selected : str[n_cells]
        Barcodes of the pseudobulk's cells.
    table_barcodes : str[n_table]
        Every barcode of the barcode table (to tell other cells from non-cell barcodes).
    stats : PseudobulkStats, optional
        Filled in as the chunks are consumed (pass one to read the counts afterwards).

    Yields
    ------
    DataFrame: the rows of each chunk whose barcode is selected, in file order.
    """
    stats = stats if stats is not None else PseudobulkStats(selected=np.asarray(selected, dtype=str))
    sel_index = pd.Index(np.asarray(selected, dtype=str))
    table_index = pd.Index(np.asarray(table_barcodes, dtype=str))
    n = len(sel_index)
    for chunk in chunks:
        bc = chunk["barcode"].to_numpy()
        code = barcode_codes(bc, sel_index)
        keep = code >= 0
        stats.fragments_seen += len(chunk)
        stats.kept += int(keep.sum())
        stats.per_cell += np.bincount(code[keep], minlength=n)
        rest = ~keep
        if rest.any():
            known = barcode_codes(bc[rest], table_index) >= 0
            stats.other_cells += int(known.sum())
            stats.unknown += int((~known).sum())
            if not stats.example_unknown and (~known).any():
                stats.example_unknown = str(bc[rest][~known][0])
        if keep.any():
            yield chunk.loc[keep]


def check_pseudobulk(
    stats: PseudobulkStats, fragments: str | Path, table: str | Path, cell_type: str, allow_missing: bool = False
) -> None:
    """Raise ``InputError`` when selected cells have no fragments (a barcode spelling mismatch, usually).

    With ``allow_missing`` a partial miss is only a warning; no fragment at
    all for the selected cells is always an error.
    """
    missing = stats.empty_cells
    if missing.size == 0:
        return
    example_frag = f" (e.g. the fragments file has {stats.example_unknown!r})" if stats.example_unknown else ""
    msg = (
        f"{fragments}: {missing.size:,} of the {len(stats.selected):,} selected cells of type {cell_type!r} in {table} "
        f"have no fragment, e.g. {', '.join(repr(str(b)) for b in missing[:SHOW])}{example_frag}. "
    )
    if missing.size == len(stats.selected):
        raise InputError(
            msg + "No selected barcode occurs in the fragments file: "
            "the table and the file must spell barcodes the same way "
            "(10x '-1' suffix, ArchR 'sample#' prefix) and come from the same library"
        )
    if not allow_missing:
        raise InputError(
            msg + "Check that the table belongs to this fragments file, or drop these barcodes from the table "
            "(or pass --allow-missing to keep going without them)"
        )
    log.warning("%s Going on without them (--allow-missing).", msg)


def write_barcode_list(path: str | Path, barcodes: np.ndarray) -> None:
    """Write one barcode per line, atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text("".join(f"{b}\n" for b in barcodes))


def write_pseudobulk(
    fragments: str | Path,
    barcodes: str | Path,
    cell_type: str,
    out: str | Path,
    out_barcodes: str | Path | None = None,
    n_cells: int | None = None,
    seed: int = 1,
    allow_missing: bool = False,
    chunk_rows: int = CHUNK_ROWS,
) -> int:
    """Write the fragments of a cell type's cells (all, or ``n_cells`` drawn with ``seed``), bgzipped and indexed.

    The fragments keep their file order; ``out_barcodes`` (optional) receives
    the chosen barcodes. The table is checked against the fragments before the
    output is put in place (:func:`check_pseudobulk`), so a bad table leaves no
    file behind. Returns the number of fragments written.
    """
    fragments, barcodes = Path(fragments), Path(barcodes)
    table = read_barcode_table(barcodes)
    of_type = barcodes_of_type(table, cell_type, barcodes)
    chosen = select_barcodes(of_type, n_cells, seed, cell_type, barcodes)
    log.info(
        "%s: %s cells in %s types; cell type %r has %s; using %s",
        barcodes,
        f"{len(table):,}",
        table["cell_type"].nunique(),
        cell_type,
        f"{of_type.size:,}",
        f"{chosen.size:,} drawn with seed {seed}" if n_cells is not None else "all of them",
    )
    stats = PseudobulkStats(selected=chosen)

    def chunks() -> Iterator[pd.DataFrame]:
        yield from pseudobulk_chunks(
            iter_fragments(fragments, chunk_rows, barcodes=True), chosen, table[BARCODE_COL].to_numpy(), stats
        )
        # checked before write_fragments puts the file in place, so a bad table leaves no output
        check_pseudobulk(stats, fragments, barcodes, cell_type, allow_missing)

    how = f"{chosen.size} of {of_type.size} cells, seed {seed}" if n_cells is not None else f"all {of_type.size} cells"
    header = f"# atacdenoise cells: cell type {cell_type}, {how}, from {fragments.name} and {barcodes.name}\n"
    written = write_fragments(chunks(), out, header=header, source=fragments)
    log.info("%s: %s", fragments, stats.summary())
    if out_barcodes is not None:
        write_barcode_list(out_barcodes, chosen)
    log.info("wrote %s fragments of %s cells of type %r to %s", f"{written:,}", f"{chosen.size:,}", cell_type, out)
    return written
