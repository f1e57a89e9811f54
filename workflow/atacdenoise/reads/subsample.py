"""Subsampling to a target depth: a BAM by ``samtools view --subsample`` (pair-aware, seeded), a fragments file exactly.

BAM input -> BAM output (+ .bai), by samtools itself (pysam's htslib, on threads).
How samtools decides (samtools 1.24, ``sam_view.c``, as wrapped by pysam):
a read is kept when ``(WangHash(X31Hash(read_name) ^ s) & 0xFFFFFF) / 2**24 < fraction``.
The decision depends only on the read *name*, so both mates of a pair (and
their secondary/supplementary records) are kept or dropped together. For a
given seed the kept sets are nested: a smaller fraction keeps a subset of
what a larger one keeps. ``s`` is the seed itself when it is 0; any other
seed is first passed through the C library's ``srand(seed); s = rand()`` (to
spread small seeds), so seeds other than 0 give the same reads on every
machine with the same C library (glibc on Linux) but may differ on another
(e.g. macOS). ``samtools view -s 42.1`` is the same as
``--subsample 0.1 --subsample-seed 42``; we pass the two long options, which
avoid packing a seed and a fraction into one number (``-s`` cannot express
a fraction of 1, nor a seed with a fraction of more digits than a float keeps).
The fraction is resolved to 1/2**24.

The fraction for a target depth is the target divided by the input's usable
fragments (:mod:`atacdenoise.io.bam`; counted once per input by ``atacdenoise
count`` and reused). The number of fragments kept is binomial:
``Binomial(available, fraction)`` (the hash behaves as a uniform draw per read
name), so with ``fraction = target / available`` the achieved count is
``target`` on average with standard deviation ``sqrt(target * (1 - fraction))``,
e.g. ±173 for 30,000 of 1,000,000 fragments. We log the achieved count and its
distance in standard deviations, and warn beyond ``TOLERANCE_SD``.

Fragments-file input (.tsv / .tsv.gz) -> bgzipped, tabix-indexed fragments
file with exactly the target number of lines, drawn uniformly without
replacement (seeded), chunk by chunk. Either output gets a JSON sidecar
``OUT.json`` recording target, fraction, achieved and seed.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from atacdenoise.atomic import commit, remove_stale_temps, temp_path_for
from atacdenoise.errors import InputError
from atacdenoise.io.bam import (
    MIN_MAPQ,
    BamInfo,
    bam_chrom_sizes,
    check_bam,
    check_readable,
    close_bam,
    count_usable_by_kind,
    open_bam,
    run_samtools,
)
from atacdenoise.io.genome import read_chrom_sizes, select_chroms
from atacdenoise.io.regions import TargetRegions, read_target_regions
from atacdenoise.io.sidecar import sidecar_path, write_json
from atacdenoise.io.text import READ_ERRORS, is_gzip

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: achieved depth farther than this many binomial SDs from the target is warned about
TOLERANCE_SD = 4.0


def check_fraction(fraction: float) -> float:
    """Raise ``InputError`` unless ``0 < fraction <= 1``."""
    if not (0.0 < fraction <= 1.0) or math.isnan(fraction):
        raise InputError(f"--fraction {fraction}: expected a number in (0, 1], e.g. 0.1 for a tenth of the fragments")
    return float(fraction)


def fraction_for(target: int, available: int, source: str | Path) -> float:
    """Fraction of fragments to keep so that ``target`` of ``available`` remain on average.

    Raises ``InputError`` naming both numbers when the target exceeds what the input holds.
    """
    if target <= 0:
        raise InputError(f"--fragments {target}: expected a positive number of fragments")
    if available <= 0:
        raise InputError(
            f"{source}: no usable fragments (after the MAPQ/flag filters, on the selected chromosomes); "
            "check the input or lower --min-mapq"
        )
    if target > available:
        raise InputError(
            f"{source}: asked for {target:,} fragments but only {available:,} usable fragments are available "
            "(after the MAPQ/flag filters, on the selected chromosomes); lower the target depth or use a deeper input"
        )
    return target / available


def binomial_sd(n: int, p: float) -> float:
    """Return the standard deviation of a Binomial(n, p) count."""
    return math.sqrt(n * p * (1.0 - p))


def report_depth(target: float, achieved: int, available: int, fraction: float, source: str | Path) -> float:
    """Log the achieved count against the target; return its distance in binomial SDs."""
    sd = binomial_sd(available, fraction)
    z = (achieved - target) / sd if sd > 0 else 0.0
    msg = (
        f"{source}: kept {achieved:,} usable fragments for a target of {target:,.0f} "
        f"(fraction {fraction:.6g} of {available:,}; binomial SD {sd:,.1f}, {z:+.2f} SD)"
    )
    if abs(z) > TOLERANCE_SD:
        log.warning("%s: more than %g SD off", msg, TOLERANCE_SD)
    else:
        log.info("%s", msg)
    return z


def is_bam(path: str | Path) -> bool:
    """Tell whether a file is a BAM: BGZF (gzip) whose payload starts with the BAM magic bytes."""
    if not is_gzip(path):
        return False
    with gzip.open(path, "rb") as fh:
        try:
            return fh.read(4) == b"BAM\x01"
        except READ_ERRORS:
            return False


def usable_chroms(sizes_path: str | Path | None, found: dict[str, int] | None) -> dict[str, int] | None:
    """Select the chromosomes whose fragments count: the sizes file's (minus chrM/unplaced), else the input's own.

    Parameters
    ----------
    sizes_path : str, Path or None
        Genome sizes file; None to use ``found``.
    found : dict or None
        The input's own chromosomes and lengths (a BAM's @SQ lines), when known.

    Returns
    -------
    dict or None
        Chromosome -> length, in order; None when neither is given (every chromosome counts).
    """
    if sizes_path is not None:
        return select_chroms(read_chrom_sizes(sizes_path))
    return select_chroms(found) if found else None


def check_bam_input(path: str | Path, sizes_path: str | Path | None = None, threads: int = 1) -> BamInfo:
    """Open and check a BAM to subsample or count (index, order, reads, names and lengths against the genome).

    The chromosomes checked and counted are :func:`usable_chroms` of
    ``sizes_path`` and the BAM's header. Raises ``InputError`` naming the file.
    """
    bam = open_bam(path, threads=threads)
    try:
        return check_bam(bam, usable_chroms(sizes_path, bam_chrom_sizes(bam)), path)
    finally:
        close_bam(bam)


def subsample_bam(src: str | Path, dst: str | Path, fraction: float, seed: int, threads: int = 1) -> None:
    """Write the reads of ``src`` whose names hash below ``fraction`` (see module docstring) to ``dst``, indexed.

    ``samtools view --subsample fraction --subsample-seed seed --no-PG`` and
    ``samtools index`` through pysam, on ``threads`` threads in all. ``dst``
    and ``dst.bai`` appear atomically (index first, BAM last). The output has
    no new @PG line (samtools adds its ``@CO Sub-sampled ...`` line) and its
    blocks do not depend on the thread count, so the same input, fraction and
    seed give a byte-identical file.

    Raises
    ------
    InputError
        ``src`` is missing, not a whole BAM (truncated, damaged, SAM text), or samtools fails on it.
    """
    src, dst = Path(src), Path(dst)
    check_fraction(fraction)
    check_readable(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dst)  # a killed attempt's BAM and index (this host's only)
    tmp = temp_path_for(dst)
    tmp_bai = Path(str(tmp) + ".bai")
    helpers = str(max(0, threads - 1))
    try:
        run_samtools(
            "view",
            src,
            "-b",
            "--no-PG",
            "-@",
            helpers,
            "--subsample",
            repr(float(fraction)),
            "--subsample-seed",
            str(int(seed)),
            "-o",
            str(tmp),
            str(src),
            catch_stdout=False,
        )
        run_samtools("index", src, "-@", helpers, str(tmp), str(tmp_bai))
        commit(tmp_bai, Path(str(dst) + ".bai"))
        commit(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_bai.unlink(missing_ok=True)


def count_bam(
    path: str | Path,
    out: str | Path,
    sizes_path: str | Path | None = None,
    min_mapq: int = MIN_MAPQ,
    threads: int = 1,
    regions_bed: str | Path | None = None,
) -> dict:
    """Count a BAM's usable fragments per kind once, for all its subsamples, and write them as JSON.

    Parameters
    ----------
    path : str or Path
        Indexed, coordinate-sorted BAM (checked as for subsampling).
    out : str or Path
        JSON record (:func:`counts_record`), written atomically; :func:`reusable_counts` reads it back.
    sizes_path : str, Path or None
        Genome sizes: count on its chromosomes (:func:`usable_chroms`); None: the BAM's own.
    min_mapq : int
        MAPQ filter of a usable fragment.
    threads : int
        htslib threads.
    regions_bed : str, Path or None
        Target regions: count only the fragments inside them (``genome.regions``).

    Returns
    -------
    dict
        The record written: source identity, chromosomes, ``min_mapq``, ``paired_end``, ``single_end``, ``available``.
    """
    info = check_bam_input(path, sizes_path, threads)
    counts = count_usable_by_kind(path, info.chroms, min_mapq, threads=threads, regions_bed=regions_bed)
    record = counts_record(path, info.chroms, min_mapq, counts, regions_bed)
    write_json(out, record)
    return record


def subsample_bam_to_depth(
    src: str | Path,
    out: str | Path,
    seed: int,
    fragments: int | None = None,
    fraction: float | None = None,
    sizes_path: str | Path | None = None,
    min_mapq: int = MIN_MAPQ,
    threads: int = 1,
    counts_path: str | Path | None = None,
    regions_bed: str | Path | None = None,
) -> dict:
    """Subsample a BAM to ``fragments`` usable fragments on average (or to ``fraction`` of them); write ``out.json``.

    Parameters
    ----------
    src, out : str or Path
        Indexed, coordinate-sorted input BAM; output BAM (with ``out.bai`` and the sidecar ``out.json``).
    seed : int
        ``samtools view --subsample-seed``; replicates use different seeds.
    fragments, fraction : int or float
        Exactly one: the target in usable fragments (the fraction is it divided by those available), or the fraction.
    sizes_path : str, Path or None
        Genome sizes: usable fragments are counted on its chromosomes (:func:`usable_chroms`).
    min_mapq : int
        MAPQ filter of a usable fragment.
    threads : int
        htslib threads.
    counts_path : str, Path or None
        The input's counts made by :func:`count_bam`, reused when they match the file and settings (else counted).
    regions_bed : str, Path or None
        Target regions: the depth counts the fragments inside them (reads elsewhere are kept at the same rate,
        and left out by the coverage stage).

    Returns
    -------
    dict
        The sidecar's record: target, fraction, achieved, seed, available, binomial SD, z, paired, min_mapq, source.
    """
    if (fragments is None) == (fraction is None):
        raise ValueError("give exactly one of fragments and fraction")
    info = check_bam_input(src, sizes_path, threads)
    counts = reusable_counts(counts_path, src, info.chroms, min_mapq, regions_bed) if counts_path else None
    if counts is None:
        counts = count_usable_by_kind(src, info.chroms, min_mapq, threads=threads, regions_bed=regions_bed)
    else:
        log.info("%s: fragment counts reused from %s", src, counts_path)
    available = sum(counts.values())
    log.info(
        "%s: %s usable fragments (%s, MAPQ >= %d) on %d chromosome(s)",
        src,
        f"{available:,}",
        "proper pairs" if info.paired else "single-end reads",
        min_mapq,
        len(info.chroms),
    )
    if fragments is not None:
        fraction = fraction_for(fragments, available, src)
        target = float(fragments)
    else:
        fraction = check_fraction(fraction)
        if available == 0:
            fraction_for(1, 0, src)  # raises the no-usable-fragments error
        target = fraction * available
    subsample_bam(src, out, fraction, seed, threads)
    # the output's records are a subset of the input's, so a kind the input lacks is not counted (provably 0)
    present = tuple(kind for kind, n in counts.items() if n > 0)
    kept = count_usable_by_kind(out, info.chroms, min_mapq, threads=threads, kinds=present, regions_bed=regions_bed)
    achieved = sum(kept.values())
    z = report_depth(target, achieved, available, fraction, out)
    meta = {
        "target": fragments if fragments is not None else round(target),
        "fraction": fraction,
        "achieved": achieved,
        "seed": seed,
        "available": available,
        "binomial_sd": binomial_sd(available, fraction),
        "z": z,
        "paired": info.paired,
        "min_mapq": min_mapq,
        "source": str(src),
        "regions": str(regions_bed) if regions_bed else None,
    }
    _write_sidecar(out, Path(str(out) + ".bai"), meta)
    return meta


def subsample_fragments_to_depth(
    src: str | Path,
    out: str | Path,
    seed: int,
    fragments: int | None = None,
    fraction: float | None = None,
    sizes_path: str | Path | None = None,
    regions_bed: str | Path | None = None,
) -> dict:
    """Subsample a fragments file to exactly ``fragments`` lines (or ``fraction`` of them, rounded); write ``out.json``.

    Parameters
    ----------
    src, out : str or Path
        Fragments file (plain, gzip or bgzip); bgzipped output (with ``out.tbi`` and the sidecar ``out.json``).
    seed : int
        Seed of NumPy's default generator.
    fragments, fraction : int or float
        Exactly one: the number of fragments to keep, or the fraction of those available.
    sizes_path : str, Path or None
        Genome sizes: only fragments on its chromosomes (:func:`usable_chroms`) are eligible and written.
    regions_bed : str, Path or None
        Target regions (needs ``sizes_path``): only fragments starting inside them are eligible and written.

    Returns
    -------
    dict
        The sidecar's record: target, fraction, achieved, seed, available, source.
    """
    if (fragments is None) == (fraction is None):
        raise ValueError("give exactly one of fragments and fraction")
    chroms = usable_chroms(sizes_path, None)
    if regions_bed and chroms is None:
        raise ValueError("target regions need the genome sizes")
    target = read_target_regions(regions_bed, chroms) if regions_bed else None
    available = count_eligible_fragments(src, chroms, target)
    if available == 0:
        raise InputError(
            f"{src}: no fragments on the selected chromosomes"
            + (f" inside the target regions {regions_bed}" if target is not None else "")
        )
    if fragments is not None:
        fraction_for(fragments, available, src)  # checks target <= available
        n = fragments
    else:
        n = round(check_fraction(fraction) * available)
        if n == 0:
            raise InputError(
                f"--fraction {fraction} of {available:,} fragments in {src} keeps none; use a larger fraction"
            )
    subsample_fragments(src, out, n, seed, chroms, available=available, target=target)
    log.info("%s: wrote %s of %s fragments (seed %d) to %s", src, f"{n:,}", f"{available:,}", seed, out)
    meta = {
        "target": n,
        "fraction": n / available,
        "achieved": n,
        "seed": seed,
        "available": available,
        "source": str(src),
        "regions": str(regions_bed) if regions_bed else None,
    }
    _write_sidecar(out, Path(str(out) + ".tbi"), meta)
    return meta


def _write_sidecar(out: str | Path, index: Path, meta: dict) -> None:
    """Write ``out.json``; if that fails, remove ``out`` and its index too (no output without its record)."""
    try:
        write_json(sidecar_path(out), meta)
    except BaseException:
        for p in (Path(out), index):
            p.unlink(missing_ok=True)
        raise


def draw_per_chunk(rng: np.random.Generator, n_chunk: int, remaining_pool: int, remaining_draw: int) -> np.ndarray:
    """Pick the rows (sorted indices) to keep from a chunk of ``n_chunk`` in sequential sampling without replacement.

    The number kept is hypergeometric (``remaining_draw`` drawn from
    ``remaining_pool`` rows, ``n_chunk`` of which are in this chunk), so over
    all chunks exactly ``remaining_draw`` rows are kept, each set of rows equally
    likely, with memory bounded by the chunk.
    """
    if remaining_draw == 0 or n_chunk == 0:
        return np.zeros(0, dtype=np.int64)
    k = (
        int(rng.hypergeometric(n_chunk, remaining_pool - n_chunk, remaining_draw))
        if remaining_pool > n_chunk
        else remaining_draw
    )
    return np.sort(rng.choice(n_chunk, size=k, replace=False))


def subsample_fragments(
    path: str | Path,
    out: str | Path,
    n: int,
    seed: int,
    chroms: dict[str, int] | None = None,
    available: int | None = None,
    chunk_rows: int | None = None,
    target: TargetRegions | None = None,
) -> int:
    """Write exactly ``n`` fragments drawn uniformly without replacement (seeded) to a bgzipped, tabix-indexed file.

    Parameters
    ----------
    path, out : str or Path
        Input fragments file; output ``.tsv.gz`` (written atomically, with ``out.tbi``).
    n : int
        Fragments to keep (lines; a line's count column stays as it is).
    seed : int
        Seed of NumPy's default generator; the same seed and input give the same lines.
    chroms : dict or None
        Only fragments on these chromosomes are eligible and written (None: all).
    available : int or None
        Eligible fragments, when already counted (``count_fragments(...).used``).
    chunk_rows : int or None
        Rows read per chunk (None: the reader's default).
    target : TargetRegions or None
        Only fragments starting inside these regions are eligible and written.

    Returns
    -------
    int
        Fragments written (``n``).
    """
    from atacdenoise.io.fragments import CHUNK_ROWS, iter_fragments, write_fragments

    path = Path(path)
    chunk_rows = chunk_rows or CHUNK_ROWS
    if available is None:
        available = count_eligible_fragments(path, chroms, target, chunk_rows)
    if n > available:
        raise InputError(
            f"{path}: asked for {n:,} fragments but only {available:,} are available"
            + (" on the selected chromosomes" if chroms is not None else "")
            + "; lower the target depth (config 'depths') or use a deeper input"
        )
    rng = np.random.default_rng(seed)

    def chunks() -> Iterator[pd.DataFrame]:
        pool, todo = available, n
        for chunk in iter_fragments(path, chunk_rows, barcodes=True):
            chunk = eligible_fragments(chunk, chroms, target)
            keep = draw_per_chunk(rng, len(chunk), pool, todo)
            pool -= len(chunk)
            todo -= keep.size
            if keep.size:
                yield chunk.iloc[keep]

    header = f"# atacdenoise subsample: {n} of {available} fragments of {path.name}, seed {seed}\n"
    written = write_fragments(chunks(), out, header=header, source=path)
    if written != n:  # cannot happen unless the file changed between the passes
        raise InputError(
            f"{path}: the file changed while being read ({written:,} fragments written, {n:,} expected); run again"
        )
    return written


def eligible_fragments(
    chunk: pd.DataFrame, chroms: dict[str, int] | None, target: TargetRegions | None
) -> pd.DataFrame:
    """Return the rows of a fragments chunk on ``chroms`` (all when None) that start inside ``target`` (when given)."""
    if chroms is not None:
        chunk = chunk[chunk["chrom"].isin(list(chroms))]
    if target is None or len(chunk) == 0:
        return chunk
    keep = np.zeros(len(chunk), dtype=bool)
    names = chunk["chrom"].to_numpy()
    starts = chunk["start"].to_numpy()
    for chrom in np.unique(names):
        rows = names == chrom
        keep[rows] = target.contains(str(chrom), starts[rows])
    return chunk[keep]


def count_eligible_fragments(
    path: str | Path,
    chroms: dict[str, int] | None,
    target: TargetRegions | None = None,
    chunk_rows: int | None = None,
) -> int:
    """Fragments of a file that :func:`subsample_fragments` may draw (see :func:`eligible_fragments`)."""
    from atacdenoise.io.fragments import CHUNK_ROWS, count_fragments, iter_fragments

    if target is None:
        return count_fragments(path, chroms, chunk_rows or CHUNK_ROWS).used
    return sum(len(eligible_fragments(c, chroms, target)) for c in iter_fragments(path, chunk_rows or CHUNK_ROWS))


def input_identity(path: str | Path) -> dict:
    """Identify an input file's contents cheaply: resolved path, size, modification time."""
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def counts_record(
    path: str | Path, chroms: list[str], min_mapq: int, counts: dict[str, int], regions_bed: str | Path | None = None
) -> dict:
    """JSON record of a BAM's usable-fragment counts, with what they depend on (see :func:`reusable_counts`)."""
    return {
        "source": input_identity(path),
        "chroms": list(chroms),
        "min_mapq": int(min_mapq),
        "regions": input_identity(regions_bed) if regions_bed else None,
        **counts,
        "available": int(sum(counts.values())),
    }


def reusable_counts(
    record_path: str | Path, path: str | Path, chroms: list[str], min_mapq: int, regions_bed: str | Path | None = None
) -> dict[str, int] | None:
    """Return the counts in ``record_path`` if made from this very file with these settings, else None (logged)."""
    try:
        rec = json.loads(Path(record_path).read_text())
        stale = [
            k
            for k, want in (
                ("source", input_identity(path)),
                ("chroms", list(chroms)),
                ("min_mapq", int(min_mapq)),
                ("regions", input_identity(regions_bed) if regions_bed else None),
            )
            if rec.get(k) != want
        ]
        counts = {"paired_end": int(rec["paired_end"]), "single_end": int(rec["single_end"])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable fragment counts (%s); counting %s again", record_path, exc, path)
        return None
    if stale:
        log.warning("%s: made for another %s than %s now has; counting again", record_path, "/".join(stale), path)
        return None
    return counts
