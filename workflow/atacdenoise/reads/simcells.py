"""A single-cell test fixture made from a real bulk ATAC-seq profile.

No public single-cell ATAC data ship with this project, so the few-cell path
is exercised on *simulated cells built from real cut sites*:

1. **Cut sites.** The Tn5 cut sites of a real bulk library (a BAM; ``+``
   read ``reference_start + 4``, ``-`` read ``reference_end - 1 - 5``).
2. **Fragments.** Per chromosome the sorted cut sites are paired with their
   neighbour, ``(s0, s1), (s2, s3), ...``, within runs where neighbours are at
   most ``max_fragment`` bp apart; a run of odd length leaves its last cut
   site unpaired (dropped and counted). A fragment ``(a, b)`` is written as
   ``start = a``, ``end = b + 1``, so its two cut sites are exactly ``a`` and
   ``b``: every cut site of the fixture is a real cut site of the bulk
   library. Only the pairing is synthetic, so fragment *lengths* are not
   realistic (in dense peaks most are a few bp); nothing downstream uses
   them (coverage and the MACS3 baseline use cut sites).
3. **Cells.** Each cell gets a depth weight from a log-normal distribution
   (``sdlog``; single-cell libraries vary several-fold in depth) and every
   fragment is given to a cell with probability proportional to the weights.
   A fragment that would repeat an identical fragment (same chrom, start, end)
   already in its cell is moved to another cell, so every line of the file
   is one fragment and the pseudobulk of all cells holds every paired cut site.
4. **Cell types.** The cells are split at random into the requested types
   (equal sizes, give or take one). All types come from one bulk profile:
   they are the *same biology*, disjoint halves (thirds, ...) of one library,
   which is what a cross-cell-type test on this fixture can honestly claim.

Everything is drawn from one seeded NumPy generator: same inputs and seed,
same file, byte for byte.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.atomic import atomic_output
from atacdenoise.io.fragments import write_fragments

log = logging.getLogger(__name__)

#: 10x barcodes: 16 nucleotides and a GEM-well suffix
BARCODE_LEN = 16
BARCODE_SUFFIX = "-1"
#: collision-resolution passes before giving up (each pass moves the repeats it finds)
MAX_PASSES = 50


def pair_cut_sites(pos: np.ndarray, max_fragment: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Pair sorted cut sites into fragments with their neighbours.

    Parameters
    ----------
    pos : int[n_cut_sites]
        Cut sites of one chromosome (any order; sorted here).
    max_fragment : int
        Largest allowed distance ``b - a`` between the two cut sites of a
        fragment; neighbours further apart start a new run.

    Returns
    -------
    start, end : int64[n_fragments]
        ``start = a``, ``end = b + 1`` (half-open; ``end - 1`` is the second cut site).
    unpaired : int
        Cut sites left without a partner (at most one per run).
    """
    s = np.sort(np.asarray(pos, dtype=np.int64))
    if s.size < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), int(s.size)
    new_run = np.concatenate(([True], np.diff(s) > max_fragment))
    run_start = np.flatnonzero(new_run)
    run_id = np.cumsum(new_run) - 1
    rank = np.arange(s.size) - run_start[run_id]  # position within its run
    run_len = np.diff(np.append(run_start, s.size))[run_id]
    first = (rank % 2 == 0) & (rank + 1 < run_len)  # first cut site of a pair
    i = np.flatnonzero(first)
    return s[i], s[i + 1] + 1, int(s.size - 2 * i.size)


def make_barcodes(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct random 10x-style barcodes (16 nt + ``-1``), sorted: str[n]."""
    codes = np.zeros(0, dtype=np.int64)
    while codes.size < n:
        codes = np.unique(np.concatenate([codes, rng.integers(0, 4**BARCODE_LEN, size=2 * n, dtype=np.int64)]))
    codes = rng.choice(codes, size=n, replace=False)
    digits = (codes[:, None] >> (2 * np.arange(BARCODE_LEN - 1, -1, -1))) & 3
    letters = np.array(list("ACGT"))[digits]
    return np.sort(np.array(["".join(row) + BARCODE_SUFFIX for row in letters]))


def cell_weights(n_cells: int, sdlog: float, rng: np.random.Generator) -> np.ndarray:
    """Relative depth of each cell, log-normal with ``sdlog`` (natural log), summing to 1: float64[n_cells]."""
    w = rng.lognormal(mean=0.0, sigma=sdlog, size=n_cells) if sdlog > 0 else np.ones(n_cells)
    return w / w.sum()


def assign_cells(n_fragments: int, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cell index of each fragment, drawn with probability ``weights``: int64[n_fragments]."""
    return rng.choice(weights.size, size=n_fragments, p=weights).astype(np.int64)


def repeated_in_cell(start: np.ndarray, end: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """bool[n]: True for every fragment after the first with the same (start, end, cell)."""
    order = np.lexsort((cell, end, start))
    same = np.zeros(start.size, dtype=bool)
    if start.size > 1:
        s, e, c = start[order], end[order], cell[order]
        same[order[1:]] = (s[1:] == s[:-1]) & (e[1:] == e[:-1]) & (c[1:] == c[:-1])
    return same


def spread_repeats(
    start: np.ndarray, end: np.ndarray, cell: np.ndarray, weights: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Move identical fragments that landed in one cell to other cells (drawn with ``weights``).

    Returns the new cell indices (int64[n]); raises ``RuntimeError`` when a
    fragment is repeated more times than there are cells.
    """
    cell = cell.copy()
    for _ in range(MAX_PASSES):
        rep = repeated_in_cell(start, end, cell)
        if not rep.any():
            return cell
        cell[rep] = assign_cells(int(rep.sum()), weights, rng)
    raise RuntimeError(
        f"{int(rep.sum())} fragments still repeated within a cell after {MAX_PASSES} passes: too few cells"
    )


def split_cell_types(n_cells: int, types: list[str], rng: np.random.Generator) -> np.ndarray:
    """Cell type of each cell: a random split into ``len(types)`` groups of equal size (+-1): str[n_cells]."""
    labels = np.array(types, dtype=object)[np.arange(n_cells) % len(types)]
    return labels[rng.permutation(n_cells)].astype(str)


def simulate_chrom(
    pos: np.ndarray, weights: np.ndarray, rng: np.random.Generator, max_fragment: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Fragments of one chromosome, given to cells; sorted by start, end, cell.

    Parameters
    ----------
    pos : int[n_cut_sites]
        The bulk library's cut sites on this chromosome.
    weights : float64[n_cells]
        Relative cell depths (sum 1).

    Returns
    -------
    start, end, cell : int64[n_fragments]
    unpaired : int
        Cut sites dropped for want of a partner.
    """
    start, end, unpaired = pair_cut_sites(pos, max_fragment)
    cell = spread_repeats(start, end, assign_cells(start.size, weights, rng), weights, rng)
    order = np.lexsort((cell, end, start))
    return start[order], end[order], cell[order], unpaired


def simulate_fragments(
    positions: dict[str, np.ndarray],
    out_fragments: str | Path,
    out_barcodes: str | Path,
    n_cells: int,
    cell_types: list[str],
    sdlog: float,
    max_fragment: int,
    seed: int,
    source: str | Path = "bulk BAM",
) -> dict[str, int]:
    """Write the fixture: a bgzipped, tabix-indexed fragments file and a barcode -> cell-type table.

    ``positions`` are the bulk library's cut sites per chromosome (in the
    order they are simulated). Seeded and deterministic. Returns the totals
    ``cut_sites``, ``unpaired`` and ``fragments`` (also logged, with the
    fragments per cell).
    """
    rng = np.random.default_rng(seed)
    barcodes = make_barcodes(n_cells, rng)
    types = split_cell_types(n_cells, list(cell_types), rng)
    weights = cell_weights(n_cells, sdlog, rng)
    per_cell = np.zeros(n_cells, dtype=np.int64)
    totals = {"cut_sites": 0, "unpaired": 0, "fragments": 0}

    def chunks() -> Iterator[pd.DataFrame]:
        for chrom, pos in positions.items():
            start, end, cell, unpaired = simulate_chrom(pos, weights, rng, max_fragment)
            totals["cut_sites"] += int(pos.size)
            totals["unpaired"] += unpaired
            totals["fragments"] += int(start.size)
            np.add.at(per_cell, cell, 1)
            yield pd.DataFrame({"chrom": chrom, "start": start, "end": end, "barcode": barcodes[cell], "count": 1})

    header = (
        f"# atacdenoise simulate-cells: {n_cells} cells ({', '.join(cell_types)}) from the cut sites of "
        f"{Path(source).name}, seed {seed}, sdlog {sdlog}, max fragment {max_fragment}; fragment lengths are not real\n"
    )
    write_fragments(chunks(), out_fragments, header=header, source=source)
    with atomic_output(out_barcodes) as tmp:
        pd.DataFrame({"barcode": barcodes, "cell_type": types}).to_csv(tmp, sep="\t", index=False)
    counts = pd.Series(types).value_counts().sort_index()
    log.info(
        "%s cut sites -> %s fragments (%s cut sites left unpaired, %.2f%%) in %s cells (fragments per cell: median %s, "
        "5-95%% %s-%s); cell types %s -> %s, %s",
        f"{totals['cut_sites']:,}",
        f"{totals['fragments']:,}",
        f"{totals['unpaired']:,}",
        100 * totals["unpaired"] / max(totals["cut_sites"], 1),
        f"{n_cells:,}",
        f"{int(np.median(per_cell)):,}",
        f"{int(np.percentile(per_cell, 5)):,}",
        f"{int(np.percentile(per_cell, 95)):,}",
        ", ".join(f"{t} ({n:,})" for t, n in counts.items()),
        out_fragments,
        out_barcodes,
    )
    return totals
