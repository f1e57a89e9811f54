"""Cut-site coverage of a whole input: cut sites per chromosome from a BAM or fragments file, smoothed into a bigWig.

The per-chromosome array code lives in :mod:`atacdenoise.reads.cutsites`; this
module walks a whole file with it. Three commands share the walk: ``coverage``
(cut sites -> smoothed bigWig), ``callpeak`` (cut sites -> BED for MACS3) and
``simulate-cells`` (cut sites -> simulated fragments), so the read filters and
the Tn5 shifts are the same in all three.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from atacdenoise.atomic import atomic_output
from atacdenoise.errors import InputError
from atacdenoise.io.bam import bam_damaged, check_bam, close_bam, open_bam
from atacdenoise.io.bigwig import BigWigWriter, check_bigwig
from atacdenoise.io.fragments import fragment_cut_sites_by_chrom
from atacdenoise.io.regions import TargetRegions
from atacdenoise.io.sidecar import sidecar_path, write_json
from atacdenoise.log import progress
from atacdenoise.reads import cutsites as cs
from atacdenoise.reads.fraglen import fragment_lengths

log = logging.getLogger(__name__)


def iter_bam_cut_sites(
    path: str | Path,
    sizes: dict[str, int],
    min_mapq: int = cs.MIN_MAPQ,
    keep_duplicates: bool = False,
    shift_plus: int = cs.SHIFT_PLUS,
    shift_minus: int = cs.SHIFT_MINUS,
    threads: int = 1,
    report: dict | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(chrom, int64[n] cut sites)`` of the filtered reads of a BAM, one chromosome at a time.

    Chromosomes of ``sizes`` that the BAM lacks are skipped with a warning. Once
    exhausted, ``report`` (when given) holds the filter counts
    (:meth:`FilterCounts.as_dict`), ``other_chroms`` (mapped reads on chromosomes
    not used), ``no_coordinate`` and ``paired``, which are also logged. Raises
    :class:`InputError` when no read passes the filters.
    """
    path = Path(path)
    bam = open_bam(path, threads=threads)
    try:
        info = check_bam(bam, sizes, path)
        absent = [c for c in sizes if c not in info.chrom_sizes]
        if absent:
            log.warning(
                "%s: %d selected chromosome(s) not in the BAM header (e.g. %s): left empty",
                path,
                len(absent),
                absent[0],
            )
        total = cs.FilterCounts()
        for chrom in progress(info.chroms, total=len(info.chroms), desc="cut sites", unit="chrom"):
            pos, stats = cs.bam_cut_sites(
                bam, chrom, sizes[chrom], min_mapq, keep_duplicates, shift_plus, shift_minus, source=path
            )
            total += stats
            log.debug("%s %s: %s", path, chrom, stats.summary())
            yield chrom, pos
        other = sum(n for c, n in info.mapped.items() if c not in sizes)
        log.info(
            "%s: %s (filters: MAPQ >= %d%s); %s cut sites fell off chromosome ends; %s mapped reads on chromosomes "
            "not used (excluded or absent from the sizes file); %s reads without a position",
            path,
            total.summary(),
            min_mapq,
            ", duplicates kept" if keep_duplicates else "",
            f"{total.off_chrom:,}",
            f"{other:,}",
            f"{bam.nocoordinate:,}",
        )
        if total.kept == 0:
            raise InputError(
                f"{path}: no reads passed the filters on the selected chromosomes ({total.summary()}); "
                "check the input, or lower --min-mapq / use --keep-duplicates if that is what removed them"
            )
        if report is not None:
            report.update(total.as_dict(), other_chroms=other, no_coordinate=int(bam.nocoordinate), paired=info.paired)
    except OSError as exc:  # htslib's read error on a damaged block
        raise bam_damaged(path, exc) from None
    finally:
        close_bam(bam)


def bam_cut_sites_by_chrom(path: str | Path, sizes: dict[str, int], **filters) -> tuple[dict[str, np.ndarray], dict]:
    """Cut sites of every chromosome of a BAM at once, and the filter report of :func:`iter_bam_cut_sites`."""
    report: dict = {}
    positions = dict(iter_bam_cut_sites(path, sizes, report=report, **filters))
    return positions, report


def fragments_cut_sites_by_chrom(
    path: str | Path, sizes: dict[str, int], keep_duplicates: bool = False
) -> tuple[dict[str, np.ndarray], dict]:
    """Both cut sites of every fragment on the selected chromosomes, and a report of the lines used (logged).

    ``keep_duplicates`` weights each fragment by its count column (the reads
    that made it); otherwise every line is one fragment.
    """
    positions, st = fragment_cut_sites_by_chrom(path, sizes, use_count=keep_duplicates)
    log.info(
        "%s: %s fragment lines; %s on chromosomes not used; %s used (%s read pairs by the count column%s)",
        path,
        f"{st.lines:,}",
        f"{st.other_chroms:,}",
        f"{st.used:,}",
        f"{st.reads:,}",
        ", all kept" if keep_duplicates else "; duplicates collapsed, one fragment per line",
    )
    if st.used == 0:
        raise InputError(f"{path}: no fragments on the selected chromosomes ({', '.join(list(sizes)[:5])})")
    return positions, {"lines": st.lines, "other_chroms": st.other_chroms, "used": st.used, "reads": st.reads}


def keep_in_regions(positions: dict[str, np.ndarray], target: TargetRegions | None) -> dict[str, int]:
    """Drop the cut sites outside the target regions (in place); return how many each chromosome lost."""
    if target is None:
        return {}
    dropped = {}
    for chrom, pos in positions.items():
        inside = target.contains(chrom, pos)
        dropped[chrom] = int(inside.size - inside.sum())
        positions[chrom] = pos[inside]
    return dropped


def write_coverage(
    out: str | Path,
    header: dict[str, int],
    sizes: dict[str, int],
    positions: dict[str, np.ndarray],
    smooth_bp: int = cs.SMOOTH_BP,
    cpm: bool = False,
) -> dict[str, int]:
    """Smooth cut sites per chromosome and stream them into the bigWig ``out``; return the cut sites per chromosome.

    ``header`` lists every chromosome of the genome (the bigWig's header);
    ``sizes`` those that get data. ``positions`` is consumed (each chromosome's
    array is dropped once written, to bound memory).
    """
    n_cut = {c: int(positions[c].size) if c in positions else 0 for c in sizes}
    scale = np.float32(cs.cpm_factor(sum(n_cut.values()))) if cpm else None
    with BigWigWriter(out, header) as writer:
        for chrom in progress(list(sizes), total=len(sizes), desc="coverage", unit="chrom"):
            if not n_cut[chrom]:
                continue
            for start, values in cs.smoothed_windows(positions.pop(chrom), sizes[chrom], smooth_bp):
                part = values.astype(np.float32)
                writer.add(chrom, start, part if scale is None else part * scale)
    return n_cut


def make_coverage(
    source: str | Path,
    kind: str,
    out: str | Path,
    header: dict[str, int],
    sizes: dict[str, int],
    settings: dict,
    threads: int = 1,
    target: TargetRegions | None = None,
) -> dict:
    """Write the coverage bigWig of a BAM or fragments file and its JSON sidecar; return the sidecar's content.

    ``settings`` holds the preprocessing (``smooth_bp``, ``shift_plus``,
    ``shift_minus``, ``min_mapq``, ``keep_duplicates``, ``cpm``), recorded in the
    sidecar ``OUT.json`` with the cut sites per chromosome and the filter report,
    so that later stages can check that their inputs were made alike. With
    ``target`` regions only their cut sites are kept, and the sidecar records the
    regions and their length (``regions_bp``: the denominator of depths per Mb).
    On any error neither file is left behind.
    """
    out = Path(out)
    if kind == "bam":
        positions, filters = bam_cut_sites_by_chrom(
            source,
            sizes,
            min_mapq=settings["min_mapq"],
            keep_duplicates=settings["keep_duplicates"],
            shift_plus=settings["shift_plus"],
            shift_minus=settings["shift_minus"],
            threads=threads,
        )
    elif kind == "fragments":
        positions, filters = fragments_cut_sites_by_chrom(source, sizes, settings["keep_duplicates"])
    else:
        raise ValueError(f"kind {kind!r}: expected bam or fragments")
    dropped = keep_in_regions(positions, target)
    if target is not None:
        log.info(
            "%s: %s cut sites outside the target regions %s left out",
            source,
            f"{sum(dropped.values()):,}",
            target.path,
        )
        filters["outside_regions"] = sum(dropped.values())
    try:
        n_cut = write_coverage(out, header, sizes, positions, settings["smooth_bp"], settings["cpm"])
        meta = {**settings, "source": str(source), "kind": kind, "chroms": list(sizes), "n_cut_sites": n_cut}
        meta["regions"] = target.path if target is not None else None
        meta["regions_bp"] = target.bp(list(sizes)) if target is not None else sum(sizes.values())
        # the fragment-length profile (fragments files, paired-end BAMs): a model records its training data's,
        # and inference compares a sample's with it (model/fitness.py)
        hist = fragment_lengths(
            source,
            kind,
            sizes,
            {c: (target.starts[c], target.ends[c]) for c in target.chroms} if target is not None else None,
            min_mapq=settings["min_mapq"],
            keep_duplicates=settings["keep_duplicates"],
        )
        meta["fragment_lengths"] = hist.tolist() if hist is not None else None
        write_json(sidecar_path(out), {**meta, "filters": filters})
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return meta


def adopt_bigwig(source: str | Path, out: str | Path, sizes: dict[str, int], settings: dict) -> None:
    """Validate a user's coverage bigWig and copy it to ``out`` with a sidecar of the settings it is declared to have.

    A bigWig given as input skips the coverage stage; its sidecar marks the
    settings as ``declared`` (not measured), so later checks can say so.
    """
    check_bigwig(source, sizes)
    with atomic_output(out) as tmp:
        shutil.copyfile(source, tmp)
    meta = {
        **settings,
        "source": str(source),
        "kind": "bigwig",
        "declared": True,
        "chroms": list(sizes),
        "n_cut_sites": None,
    }
    write_json(sidecar_path(out), meta)
