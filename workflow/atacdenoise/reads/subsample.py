"""Pair-aware, seeded BAM subsampling: the reads ``samtools view --subsample`` keeps (native scan, or htslib).

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

The number of fragments kept is binomial: ``Binomial(available, fraction)``
(the hash behaves as a uniform draw per read name), so with
``fraction = target / available`` the achieved count is ``target`` on average
with standard deviation ``sqrt(target * (1 - fraction))``, e.g. ±173 for
30,000 of 1,000,000 fragments. We log the achieved count and its distance in
standard deviations, and warn beyond ``TOLERANCE_SD``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import pysam

from atacdenoise.atomic import atomic_output, temp_path_for
from atacdenoise.errors import InputError
from atacdenoise.reads import bamscan
from atacdenoise.reads.cutsites import MIN_MAPQ

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
    """Standard deviation of a Binomial(n, p) count."""
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


def subsample_bam(
    src: str | Path,
    dst: str | Path,
    fraction: float,
    seed: int,
    threads: int = 1,
    chroms: list[str] | None = None,
    min_mapq: int = MIN_MAPQ,
    keep_duplicates: bool = False,
) -> dict[str, int] | None:
    """Write the reads of ``src`` whose names hash below ``fraction`` (see module docstring) to ``dst``, indexed.

    The same reads as ``samtools view --subsample fraction --subsample-seed
    seed``, found by the native record scan (one pass; inflating and
    deflating on ``threads`` threads) where it can be built, else by samtools
    through pysam. Returns the kept usable fragments per kind on ``chroms``
    (all of the BAM's references when None) with ``min_mapq``, as
    :func:`atacdenoise.io.bam.count_usable_by_kind` counts them, when the native
    scan ran; None otherwise (the caller counts).

    ``dst`` and ``dst.bai`` appear atomically (index first, BAM last). The
    output has no new @PG line and its blocks do not depend on the thread
    count, so the same input, fraction and seed give a byte-identical file.
    """
    dst = Path(dst)
    check_fraction(fraction)
    tmp = temp_path_for(dst)
    tmp_bai = Path(str(tmp) + ".bai")
    dst.parent.mkdir(parents=True, exist_ok=True)
    counts = None
    try:
        if bamscan.available():
            counts = bamscan.scan_bam(
                src, chroms, min_mapq, keep_duplicates, threads, fraction=fraction, seed=seed, out=tmp
            )
        else:
            pysam.view(
                "-b",
                "--no-PG",
                "-@",
                str(max(0, threads - 1)),
                "--subsample",
                repr(float(fraction)),
                "--subsample-seed",
                str(int(seed)),
                "-o",
                str(tmp),
                str(src),
                catch_stdout=False,
            )
        pysam.index("-@", str(max(0, threads - 1)), str(tmp), str(tmp_bai))
        os.replace(tmp_bai, Path(str(dst) + ".bai"))
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_bai.unlink(missing_ok=True)
    return counts


def input_identity(path: str | Path) -> dict:
    """What identifies an input file's contents cheaply: resolved path, size, modification time."""
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def counts_record(path: str | Path, chroms: list[str], min_mapq: int, counts: dict[str, int]) -> dict:
    """JSON record of a BAM's usable-fragment counts, with what they depend on (see :func:`reusable_counts`)."""
    return {
        "source": input_identity(path),
        "chroms": list(chroms),
        "min_mapq": int(min_mapq),
        **counts,
        "available": int(sum(counts.values())),
    }


def reusable_counts(
    record_path: str | Path, path: str | Path, chroms: list[str], min_mapq: int
) -> dict[str, int] | None:
    """The counts stored in ``record_path`` if they were made from this very file with these settings, else None (logged)."""
    try:
        rec = json.loads(Path(record_path).read_text())
        stale = [
            k
            for k, want in (("source", input_identity(path)), ("chroms", list(chroms)), ("min_mapq", int(min_mapq)))
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


def sidecar_path(out: str | Path) -> Path:
    """``out.json`` beside an output file."""
    return Path(str(out) + ".json")


def write_json(path: str | Path, data: dict) -> None:
    """Write a JSON document atomically (indented, keys in insertion order)."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2) + "\n")
