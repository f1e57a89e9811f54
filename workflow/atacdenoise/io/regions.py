"""Target regions (``genome.regions``): the parts of the genome a cohort's data cover.

Partial data (the four windows of ``immune/``, a capture panel, a test run) are
empty outside a few regions, and "empty" there means "not measured", not "closed
chromatin". Every stage that sees the genome is restricted to the target regions:
depths count fragments inside them, coverage keeps only their cut sites, MACS3's
λ and genome size are taken over them, training and validation windows, inference
and the benchmark stay inside them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atacdenoise.errors import InputError
from atacdenoise.io.genome import Region, check_chrom_names, parse_region
from atacdenoise.io.intervals import merge_intervals, read_bed, starts_in_regions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetRegions:
    """Merged, sorted target regions per chromosome (0-based, half-open), read from ``path``."""

    path: str
    starts: dict[str, np.ndarray]
    ends: dict[str, np.ndarray]

    @property
    def chroms(self) -> list[str]:
        """Return the chromosomes with at least one region, in the genome's order."""
        return list(self.starts)

    def bp(self, chroms: list[str] | None = None) -> int:
        """Return the bases covered (on ``chroms``, all when None)."""
        names = self.chroms if chroms is None else [c for c in chroms if c in self.starts]
        return int(sum((self.ends[c] - self.starts[c]).sum() for c in names))

    def regions(self, chroms: list[str] | None = None) -> list[Region]:
        """Return the regions as :class:`Region` objects (on ``chroms``, all when None)."""
        names = self.chroms if chroms is None else [c for c in chroms if c in self.starts]
        return [Region(c, int(a), int(b)) for c in names for a, b in zip(self.starts[c], self.ends[c])]

    def contains(self, chrom: str, positions: np.ndarray) -> np.ndarray:
        """bool[n]: which 0-based ``positions`` on ``chrom`` lie inside a region."""
        if chrom not in self.starts:
            return np.zeros(np.shape(positions), dtype=bool)
        return starts_in_regions(positions, self.starts[chrom], self.ends[chrom])

    def span(self, chrom: str) -> tuple[int, int]:
        """``(first start, last end)`` of the regions on ``chrom``; ``(0, 0)`` when it has none."""
        if chrom not in self.starts:
            return 0, 0
        return int(self.starts[chrom][0]), int(self.ends[chrom][-1])

    def intersect(self, regions: list[Region]) -> list[Region]:
        """Return the parts of ``regions`` inside the target regions (e.g. the holdout regions restricted to them)."""
        out = []
        for r in regions:
            if r.chrom not in self.starts:
                continue
            a, b = self.starts[r.chrom], self.ends[r.chrom]
            lo, hi = np.maximum(a, r.start), np.minimum(b, r.end)
            keep = lo < hi
            out += [Region(r.chrom, int(x), int(y)) for x, y in zip(lo[keep], hi[keep])]
        return out


def read_target_regions(path: str | Path | None, sizes: dict[str, int]) -> TargetRegions | None:
    """Read ``genome.regions`` (BED, plain or gzip) against the selected chromosomes; None when no file is given.

    Overlapping regions are merged. Regions on chromosomes not selected are left
    out (the chromosome selection wins); a file with no region on them is an error.
    """
    if path is None or str(path) == "":
        return None
    df = read_bed(path)
    if len(df):
        check_chrom_names(df["chrom"].unique(), sizes, path)  # none on the selected chromosomes: `1` vs `chr1`?
    outside = ~df["chrom"].isin(list(sizes))
    if outside.any():  # on chromosomes not selected (genome.chroms, --chroms, genome.exclude): not an error
        log.debug("%s: %d region(s) on chromosomes not selected, left out", path, int(outside.sum()))
    df = df[~outside]
    if len(df) == 0:
        raise InputError(
            f"{path}: no target region on the selected chromosomes ({', '.join(list(sizes)[:5])}); "
            "check genome.regions against genome.sizes / genome.chroms (chromosome names must match)"
        )
    past = df[df["end"] > df["chrom"].map(sizes)]
    if len(past):
        r = past.iloc[0]
        raise InputError(
            f"{path}: region {r.chrom}:{r.start}-{r.end} runs past the end of {r.chrom} ({sizes[r.chrom]:,} bp); "
            "the BED is for another assembly than genome.sizes"
        )
    starts, ends = {}, {}
    for chrom in (c for c in sizes if c in set(df["chrom"])):
        sub = df[df["chrom"] == chrom]
        starts[chrom], ends[chrom] = merge_intervals(sub["start"].to_numpy(), sub["end"].to_numpy())
    target = TargetRegions(str(path), starts, ends)
    log.info(
        "target regions %s: %d region(s), %.2f Mb on %d chromosome(s)",
        path,
        sum(s.size for s in starts.values()),
        target.bp() / 1e6,
        len(starts),
    )
    return target


def restrict_sizes(sizes: dict[str, int], target: TargetRegions | None) -> dict[str, int]:
    """Return the chromosomes of ``sizes`` that hold a target region (all of them when there are no target regions)."""
    if target is None:
        return sizes
    return {c: n for c, n in sizes.items() if c in target.starts}


def regions_in_target(texts: list[str], path: str | Path | None, sizes: dict[str, int], what: str) -> list[str]:
    """Cut region strings (``chr`` or ``chr:start-end``, e.g. the holdout) to the target regions of ``path``.

    Without target regions the strings come back unchanged. ``what`` names the regions in the error
    raised when none of them overlaps a target region.
    """
    if path is None:
        return list(texts)
    target = read_target_regions(path, sizes)
    assert target is not None
    cut = target.intersect([parse_region(t, sizes) for t in texts])
    if not cut:
        raise InputError(
            f"{what} ({', '.join(texts[:3])}) do not overlap the target regions {path}: nothing to score there; "
            "put them inside genome.regions"
        )
    return [str(r) for r in cut]
