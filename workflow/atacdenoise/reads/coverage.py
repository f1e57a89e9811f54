"""Cut-site coverage of a whole input: cut sites per chromosome from a BAM or fragments file, smoothed into a bigWig.

The per-chromosome array code lives in :mod:`atacdenoise.reads.cutsites`; this
module walks a whole file with it. Three commands share the walk: ``coverage``
(cut sites -> smoothed bigWig), ``callpeak`` (cut sites -> BED for MACS3) and
``simulate-cells`` (cut sites -> simulated fragments), so the read filters and
the Tn5 shifts are the same in all three.

Memory (issue 19.4): ``coverage`` never holds the whole file's cut sites. They
arrive per chromosome (BAM) or per chunk (fragments file, in file order), are
spilled to a temporary folder beside the output (:class:`CutSiteSpill`, 4 bytes
a cut site) and read back one chromosome at a time, in the bigWig's order, once
the total that ``cpm`` needs is known. Peak memory is one chromosome's cut sites
and its smoothed windows: set by the largest chromosome, flat in the genome size
and the depth of the rest.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from atacdenoise.atomic import atomic_output
from atacdenoise.errors import InputError
from atacdenoise.io.bam import bam_damaged, check_bam, close_bam, open_bam
from atacdenoise.io.bigwig import BigWigWriter, check_bigwig
from atacdenoise.io.fragments import (
    FragmentStats,
    fragment_cut_sites_by_chrom,
    iter_fragment_cut_sites,
    position_dtype,
)
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


def _fragments_report(path: str | Path, sizes: dict[str, int], st: FragmentStats, keep_duplicates: bool) -> dict:
    """Log a fragments file's pass (:class:`FragmentStats`) and return it as the sidecar's filter report."""
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
    return {"lines": st.lines, "other_chroms": st.other_chroms, "used": st.used, "reads": st.reads}


def fragments_cut_sites_by_chrom(
    path: str | Path, sizes: dict[str, int], keep_duplicates: bool = False
) -> tuple[dict[str, np.ndarray], dict]:
    """Both cut sites of every fragment on the selected chromosomes, and a report of the lines used (logged).

    ``keep_duplicates`` weights each fragment by its count column (the reads
    that made it); otherwise every line is one fragment.
    """
    positions, st = fragment_cut_sites_by_chrom(path, sizes, use_count=keep_duplicates)
    return positions, _fragments_report(path, sizes, st, keep_duplicates)


class CutSiteSpill:
    """Cut sites per chromosome appended to raw files in ``folder`` and read back one chromosome at a time.

    Parts of a chromosome may come in any order and several times (a fragments file's chunks); each is
    appended to ``folder/<n>.cuts`` with :meth:`add` (int32, or int64 when a chromosome of ``sizes`` needs
    it), so memory holds one part at a time. :meth:`take`
    returns a chromosome's cut sites (in arrival order) and deletes its file. The caller owns ``folder``
    (a temporary directory: :func:`write_coverage_streamed` removes it, on errors too).
    """

    def __init__(self, folder: str | Path, sizes: dict[str, int]):
        self.folder = Path(folder)
        self.dtype = np.dtype(position_dtype(sizes))
        self.files: dict[str, Path] = {}
        self.counts: dict[str, int] = {}

    def add(self, chrom: str, positions: np.ndarray) -> None:
        """Append ``positions`` to ``chrom``'s file (in :attr:`dtype`)."""
        if positions.size == 0:
            return
        path = self.files.setdefault(chrom, self.folder / f"{len(self.files)}.cuts")
        with open(path, "ab") as fh:
            np.ascontiguousarray(positions, dtype=self.dtype).tofile(fh)
        self.counts[chrom] = self.counts.get(chrom, 0) + int(positions.size)

    def take(self, chrom: str) -> np.ndarray:
        """Return every cut site added for ``chrom`` (empty if none) and delete its file."""
        path = self.files.pop(chrom, None)
        if path is None:
            return np.zeros(0, dtype=self.dtype)
        pos = np.fromfile(path, dtype=self.dtype)
        path.unlink()
        return pos


def iter_cut_site_parts(
    source: str | Path,
    kind: str,
    sizes: dict[str, int],
    report: dict,
    min_mapq: int = cs.MIN_MAPQ,
    keep_duplicates: bool = False,
    shift_plus: int = cs.SHIFT_PLUS,
    shift_minus: int = cs.SHIFT_MINUS,
    threads: int = 1,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(chrom, cut sites)`` parts of a BAM (one per chromosome) or fragments file (per chunk and chromosome).

    The read filters and shifts are those of :func:`iter_bam_cut_sites` (a fragments file uses only
    ``keep_duplicates``: its cut sites are shifted already). ``report`` is filled, once the input is read,
    with the filter counts the sidecar records (as :func:`bam_cut_sites_by_chrom` and
    :func:`fragments_cut_sites_by_chrom` return them), and the same lines are logged; an input with nothing
    on the selected chromosomes raises :class:`InputError`.
    """
    if kind == "bam":
        yield from iter_bam_cut_sites(
            source, sizes, min_mapq, keep_duplicates, shift_plus, shift_minus, threads=threads, report=report
        )
    elif kind == "fragments":
        st = FragmentStats()
        yield from iter_fragment_cut_sites(source, sizes, use_count=keep_duplicates, stats=st)
        report.update(_fragments_report(source, sizes, st, keep_duplicates))
    else:
        raise ValueError(f"kind {kind!r}: expected bam or fragments")


def _write_smoothed(
    out: str | Path,
    header: dict[str, int],
    sizes: dict[str, int],
    n_cut: dict[str, int],
    take: Callable[[str], np.ndarray],
    smooth_bp: int,
    cpm: bool,
) -> None:
    """Write the smoothed coverage of every chromosome of ``sizes``, in order, fetching its cut sites with ``take``."""
    scale = np.float32(cs.cpm_factor(sum(n_cut.values()))) if cpm else None
    with BigWigWriter(out, header) as writer:
        for chrom in progress(list(sizes), total=len(sizes), desc="coverage", unit="chrom"):
            if not n_cut.get(chrom):
                continue
            for start, values in cs.smoothed_windows(take(chrom), sizes[chrom], smooth_bp):
                part = values.astype(np.float32)
                writer.add(chrom, start, part if scale is None else part * scale)


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
    _write_smoothed(out, header, sizes, n_cut, positions.pop, smooth_bp, cpm)
    return n_cut


def write_coverage_streamed(
    out: str | Path,
    header: dict[str, int],
    sizes: dict[str, int],
    parts: Iterable[tuple[str, np.ndarray]],
    smooth_bp: int = cs.SMOOTH_BP,
    cpm: bool = False,
    target: TargetRegions | None = None,
) -> tuple[dict[str, int], int]:
    """:func:`write_coverage` from ``(chrom, cut sites)`` parts in any order, in memory flat in the input's size.

    The parts (kept to the ``target`` regions when given) are spilled to a temporary folder beside
    ``out`` (:class:`CutSiteSpill`), then each chromosome is read back, smoothed and written in the
    order of ``sizes``, with the ``cpm`` scale from the total. Returns the cut sites per chromosome and
    how many fell outside the target regions. The folder is removed in every case.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    outside = 0
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.cutsites-") as folder:
        spill = CutSiteSpill(folder, sizes)
        for chrom, pos in parts:
            if target is not None:
                inside = target.contains(chrom, pos)
                outside += int(inside.size - inside.sum())
                pos = pos[inside]
            spill.add(chrom, pos)
        n_cut = {c: spill.counts.get(c, 0) for c in sizes}
        _write_smoothed(out, header, sizes, n_cut, spill.take, smooth_bp, cpm)
    return n_cut, outside


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
    filters: dict = {}
    try:
        read = {k: settings[k] for k in ("min_mapq", "keep_duplicates", "shift_plus", "shift_minus")}
        parts = iter_cut_site_parts(source, kind, sizes, filters, threads=threads, **read)
        n_cut, outside = write_coverage_streamed(
            out, header, sizes, parts, settings["smooth_bp"], settings["cpm"], target
        )
        if target is not None:
            log.info("%s: %s cut sites outside the target regions %s left out", source, f"{outside:,}", target.path)
            filters["outside_regions"] = outside
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
