"""Pooled references: several libraries (replicates, donors) of one cell state merged into one deep input.

A cohort's deep reference is rarely one library: it is the pool of a cell
state's replicates and donors. The pool is an ordinary input of the same kind
(a coordinate-sorted, indexed BAM by ``samtools merge``; a bgzipped,
tabix-indexed fragments file, sorted by chromosome and start), so every later
stage treats it like any other clean input. Its JSON sidecar ``OUT.json`` lists
the libraries that made it and how much each brought: the benchmark states
which libraries made each reference, and a low-depth library scored against it
must not be one of them (checked on the sample sheet, :mod:`atacdenoise.checks`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.atomic import commit, remove_stale_temps, temp_path_for
from atacdenoise.errors import InputError
from atacdenoise.io.bam import check_readable, run_samtools
from atacdenoise.io.sidecar import sidecar_path, write_json
from atacdenoise.log import progress

log = logging.getLogger(__name__)


def pool_fragments(sources: list[Path], out: Path, chroms: dict[str, int]) -> dict[str, int]:
    """Merge fragments files into one sorted, bgzipped, tabix-indexed file; return the lines each source gave.

    Lines on chromosomes outside ``chroms`` are left out. The barcode column is
    kept as it is (10x barcodes, or the library name in per-library files), so
    the pool still tells which library each fragment came from. Memory holds
    the pool's fragments once (about 40 bytes each).
    """
    from atacdenoise.io.fragments import iter_fragments, write_fragments

    per_chrom: dict[str, list[pd.DataFrame]] = {}
    counts: dict[str, int] = {}
    for src in progress(sources, total=len(sources), desc="pool", unit="file"):
        n = 0
        for chunk in iter_fragments(src, barcodes=True):
            chunk = chunk[chunk["chrom"].isin(list(chroms))]
            n += len(chunk)
            for chrom, part in chunk.groupby("chrom", sort=False):
                per_chrom.setdefault(str(chrom), []).append(part)
        counts[str(src)] = n
        if n == 0:
            log.warning("%s: no fragments on the selected chromosomes: it adds nothing to the pool", src)

    def ordered():
        for chrom in chroms:
            parts = per_chrom.pop(chrom, None)
            if parts:
                df = pd.concat(parts, ignore_index=True)
                order = np.lexsort((df["end"].to_numpy(), df["start"].to_numpy()))
                yield df.iloc[order]

    header = "# atacdenoise pool of " + ", ".join(Path(s).name for s in sources) + "\n"
    written = write_fragments(ordered(), out, header=header, source=", ".join(map(str, sources)))
    if written == 0:
        raise InputError(f"{', '.join(map(str, sources))}: no fragments on the selected chromosomes; nothing to pool")
    return counts


def pool_bams(sources: list[Path], out: Path, threads: int = 1) -> dict[str, int]:
    """Merge coordinate-sorted BAMs with ``samtools merge`` and index the result; return the mapped reads of each."""
    counts = {}
    for src in sources:
        check_readable(src)
        stats = run_samtools("idxstats", src, str(src)) or ""
        counts[str(src)] = sum(int(line.split("\t")[2]) for line in stats.splitlines() if line.count("\t") >= 3)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)  # a killed attempt's BAM and index (this host's only)
    tmp = temp_path_for(out)
    tmp_bai = Path(str(tmp) + ".bai")
    try:
        run_samtools(
            "merge",
            sources[0],
            "-f",
            "-@",
            str(max(0, threads - 1)),
            "-o",
            str(tmp),
            *map(str, sources),
            catch_stdout=False,
        )
        run_samtools("index", tmp, "-@", str(max(0, threads - 1)), str(tmp), str(tmp_bai))
        commit(tmp_bai, Path(str(out) + ".bai"))
        commit(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_bai.unlink(missing_ok=True)
    return counts


def pool_inputs(sources: list[Path], kind: str, out: Path, chroms: dict[str, int], threads: int = 1) -> dict:
    """Pool the libraries ``sources`` of one kind into ``out``; write and return the sidecar that lists them."""
    if len(set(map(str, sources))) != len(sources):
        raise InputError(f"{', '.join(map(str, sources))}: a file is listed twice in the pool")
    for src in sources:
        if not Path(src).is_file():
            raise InputError(f"{src}: file to pool not found")
    if kind == "fragments":
        counts = pool_fragments(sources, out, chroms)
        unit = "fragments"
    elif kind == "bam":
        counts = pool_bams(sources, out, threads)
        unit = "mapped reads"
    else:
        raise InputError(f"kind {kind!r} cannot be pooled: pool BAM or fragments files")
    total = sum(counts.values())
    for src, n in counts.items():
        log.info("%s: %s %s (%.1f%% of the pool)", src, f"{n:,}", unit, 100 * n / total if total else 0.0)
    meta = {"kind": kind, "unit": unit, "sources": counts, "total": total}
    try:
        write_json(sidecar_path(out), meta)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return meta
