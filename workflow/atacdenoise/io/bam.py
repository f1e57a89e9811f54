"""Opening and validating BAM files; counting usable fragments with htslib (samtools through pysam).

Every check raises ``InputError`` naming the file and the fix, before any
output is written: a missing index, a file not sorted by coordinate, no
reads, chromosome names or lengths that do not match the genome's sizes file.

A *usable fragment* is what the coverage step turns into cut sites, counted
once per fragment: for paired-end reads a proper pair whose first read
(flag 0x40) passes the filters; for single-end reads one read. The filters are
those of ``cutsites.read_filter``: mapped, primary, not QC-fail, not duplicate
(unless kept), MAPQ >= ``min_mapq``, on the selected chromosomes. Counting is
``samtools view -c`` (pysam's htslib, on threads), one pass per kind of fragment.

This module also holds the SAM flag bits and the default MAPQ filter that the
read filters of :mod:`atacdenoise.reads.cutsites` share with the counts here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pysam

from atacdenoise.errors import InputError
from atacdenoise.io.genome import check_chrom_lengths, check_chrom_names

log = logging.getLogger(__name__)

#: default MAPQ filter of a read (coverage, subsample, count, peak calling)
MIN_MAPQ = 30

# SAM flag bits
PAIRED = 0x1
PROPER_PAIR = 0x2
UNMAPPED = 0x4
MATE_UNMAPPED = 0x8
REVERSE = 0x10
READ1 = 0x40
SECONDARY = 0x100
QCFAIL = 0x200
DUPLICATE = 0x400
SUPPLEMENTARY = 0x800

#: reads looked at to decide whether a BAM is paired-end
SNIFF_READS = 10_000


@dataclass
class BamInfo:
    """What the checks learnt about a BAM."""

    path: Path
    chrom_sizes: dict[str, int]  #: @SQ lengths, header order
    mapped: dict[str, int]  #: mapped reads per chromosome (index statistics)
    chroms: list[str]  #: chromosomes shared with the genome (sizes order)
    paired: bool  #: first mapped reads include paired ones


def _index_hint(path: Path) -> str:
    return f"index it with `samtools index {path}` (or python -c \"import pysam; pysam.index('{path}')\")"


def open_bam(path: str | Path, threads: int = 1) -> pysam.AlignmentFile:
    """Open an indexed, coordinate-sorted BAM for reading; raise ``InputError`` otherwise."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: BAM file not found")
    try:
        bam = pysam.AlignmentFile(str(path), "rb", threads=max(1, threads))
    except (ValueError, OSError) as exc:
        raise _unreadable(path, exc) from None
    try:
        _check_format(bam, path)
    except InputError:
        bam.close()
        raise
    so = bam.header.to_dict().get("HD", {}).get("SO")
    if so is not None and so != "coordinate":
        bam.close()
        raise InputError(
            f"{path}: header says it is sorted by {so!r}, expected 'coordinate'; "
            f"sort it (samtools sort -o sorted.bam {path}) and {_index_hint(Path('sorted.bam'))}"
        )
    if not bam.has_index():
        bam.close()
        raise InputError(f"{path}: BAM has no index (.bai/.csi beside it); {_index_hint(path)}")
    try:
        check_index_fresh(path)
        check_sorted_sample(path)
    except InputError:
        bam.close()
        raise
    return bam


def index_path(path: str | Path) -> Path | None:
    """Find the index file htslib would use for ``path`` (X.bam.bai, X.bai, X.bam.csi), or None."""
    path = Path(path)
    for cand in (Path(f"{path}.bai"), path.with_suffix(".bai"), Path(f"{path}.csi")):
        if cand.exists():
            return cand
    return None


def check_index_fresh(path: str | Path) -> None:
    """Raise when the BAM's index is older than the BAM (whole seconds, as htslib compares them).

    A stale index (the BAM was re-made or replaced after indexing) makes
    region queries return wrong or missing reads without any error.
    """
    path = Path(path)
    idx = index_path(path)
    if idx is not None and int(idx.stat().st_mtime) < int(path.stat().st_mtime):
        raise InputError(
            f"{path}: its index {idx.name} is older than the BAM (the BAM changed after it was indexed), so region "
            f"queries may return wrong reads; {_index_hint(path)} again"
        )


def sniff_reads(path: str | Path, n: int = SNIFF_READS) -> tuple[int, int, int, str | None]:
    """Look at the first ``n`` records: (mapped, paired, proper pairs, first out-of-order position or None)."""
    mapped = paired = proper = 0
    last = (-1, -1)
    disorder = None
    with pysam.AlignmentFile(str(path), "rb") as bam:
        for i, read in enumerate(bam.fetch(until_eof=True)):
            if i >= n:
                break
            if read.is_unmapped:
                continue
            mapped += 1
            paired += read.is_paired
            proper += read.is_proper_pair
            key = (read.reference_id, read.reference_start)
            if disorder is None and key < last:
                disorder = (
                    f"{read.reference_name}:{read.reference_start + 1:,} (read {read.query_name}) "
                    "follows a read at a later position"
                )
            last = max(last, key)
    return mapped, paired, proper, disorder


def check_sorted_sample(path: str | Path, n: int = 1000) -> None:
    """Raise when the first ``n`` records are not in coordinate order (a header without SO, or a wrong one)."""
    disorder = sniff_reads(path, n)[3]
    if disorder is not None:
        raise InputError(
            f"{path}: reads are not sorted by coordinate ({disorder}); "
            f"sort it (samtools sort -o sorted.bam {path}) and {_index_hint(Path('sorted.bam'))}"
        )


def bam_chrom_sizes(bam: pysam.AlignmentFile) -> dict[str, int]:
    """@SQ names and lengths, header order."""
    return dict(zip(bam.references, bam.lengths))


def mapped_per_chrom(bam: pysam.AlignmentFile) -> dict[str, int]:
    """Count the mapped reads per chromosome from the index (samtools idxstats), no decompression."""
    return {s.contig: int(s.mapped) for s in bam.get_index_statistics()}


def is_paired(bam: pysam.AlignmentFile, n: int = SNIFF_READS) -> bool:
    """Tell whether any of the first ``n`` reads is paired (flag 0x1)."""
    for i, read in enumerate(bam.fetch(until_eof=True)):
        if read.is_paired:
            return True
        if i >= n:
            break
    return False


def check_bam(bam: pysam.AlignmentFile, sizes: dict[str, int], path: str | Path) -> BamInfo:
    """Validate an open BAM against the genome's (selected) chromosome sizes.

    Raises ``InputError`` when no chromosome name matches (with a ``1`` vs
    ``chr1`` hint), when a shared chromosome has another length (another
    assembly), or when no read is mapped to the shared chromosomes.
    """
    path = Path(path)
    found = bam_chrom_sizes(bam)
    if not found:
        raise InputError(f"{path}: BAM header lists no chromosomes (@SQ lines); it is not an aligned BAM")
    chroms = check_chrom_names(found, sizes, path)
    check_chrom_lengths(found, sizes, path)
    mapped = mapped_per_chrom(bam)
    if sum(mapped.get(c, 0) for c in chroms) == 0:
        raise InputError(
            f"{path}: no mapped reads on the genome's chromosomes ({', '.join(chroms[:5])}"
            f"{', ...' if len(chroms) > 5 else ''}); the BAM is empty or holds only other contigs: check the input"
        )
    _, n_paired, n_proper, _ = sniff_reads(path)
    if n_paired and not n_proper:
        raise InputError(
            f"{path}: reads are flagged paired-end but none of the first {SNIFF_READS:,} mapped reads is in a "
            "proper pair (flag 0x2), and only proper pairs give cut sites; fix the mate information "
            "(samtools fixmate -m after sorting by name) or re-align the reads as pairs"
        )
    return BamInfo(path=path, chrom_sizes=found, mapped=mapped, chroms=chroms, paired=is_paired(bam))


def usable_filter_args(min_mapq: int = MIN_MAPQ, keep_duplicates: bool = False) -> tuple[list[str], list[str]]:
    """``samtools view`` flag arguments selecting usable fragments: (paired-end, single-end).

    Paired-end: paired, proper pair, first read, and none of unmapped, mate
    unmapped, secondary, QC-fail, supplementary (and duplicate). Single-end: not
    paired and none of those. Both with ``-q min_mapq``.
    """
    off = UNMAPPED | SECONDARY | QCFAIL | SUPPLEMENTARY | (0 if keep_duplicates else DUPLICATE)
    q = ["-q", str(min_mapq)]
    pe = ["-f", str(PAIRED | PROPER_PAIR | READ1), "-F", str(off | MATE_UNMAPPED), *q]
    se = ["-F", str(off | PAIRED), *q]
    return pe, se


def check_readable(path: str | Path) -> None:
    """Raise ``InputError`` unless ``path`` opens as a whole BAM: a BAM header and BGZF's end-of-file block.

    ``samtools view`` reads a file cut at a block boundary to its end with only
    a warning (htslib's missing-EOF-marker check), and a SAM text file as SAM;
    opening it with pysam first turns both into an error naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: BAM file not found")
    try:
        with pysam.AlignmentFile(str(path), "rb", check_sq=False) as bam:
            _check_format(bam, path)
    except (ValueError, OSError) as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: Exception) -> InputError:
    return InputError(f"{path}: not a readable BAM file ({exc}); check the path and the file (samtools quickcheck)")


def _check_format(bam: pysam.AlignmentFile, path: Path) -> None:
    """Raise unless htslib read ``path`` as BAM (it opens SAM text and CRAM through the same call)."""
    if not bam.is_bam:
        raise InputError(
            f"{path}: not a BAM file (htslib reads it as {bam.format}); convert it (samtools view -b) and index it"
        )


def run_samtools(command: str, path: str | Path, *args: str, catch_stdout: bool = True) -> str | None:
    """Run ``samtools COMMAND ARGS`` in-process (pysam's htslib); its failure is an ``InputError`` naming ``path``.

    Parameters
    ----------
    command : str
        A samtools command pysam wraps (``view``, ``index``).
    path : str or Path
        The BAM the command reads, named in the error.
    *args : str
        The command's arguments.
    catch_stdout : bool
        Return what the command prints (``view -c``); False when it writes a file (``-o``).

    Returns
    -------
    str or None
        The command's standard output, when caught.
    """
    try:
        return getattr(pysam, command)(*args, catch_stdout=catch_stdout)
    except pysam.utils.SamtoolsError as exc:
        said = str(getattr(exc, "value", exc)).partition("stderr=")[2] or str(exc)
        detail = "; ".join(line.strip() for line in said.splitlines() if line.strip())
        raise InputError(
            f"{path}: samtools {command} failed ({detail or 'no message'}); the BAM is damaged or truncated, or its "
            f"output could not be written: check it (samtools quickcheck {path}) and the free disk space"
        ) from None


#: the kinds of usable fragment, in the order of :func:`usable_filter_args`
KINDS = ("paired_end", "single_end")


def count_usable_by_kind(
    path: str | Path,
    chroms: list[str],
    min_mapq: int = MIN_MAPQ,
    keep_duplicates: bool = False,
    threads: int = 1,
    kinds: tuple[str, ...] = KINDS,
    regions_bed: str | Path | None = None,
) -> dict[str, int]:
    """Count the usable fragments on ``chroms`` of an indexed BAM, per kind: proper pairs, single-end reads.

    One ``samtools view -c`` pass (``threads`` threads in all) per kind in
    ``kinds``, with the flags of :func:`usable_filter_args`. A kind left out
    of ``kinds`` is reported as 0 without a pass: leave out only a kind that
    cannot be there (a subsample holds a subset of its input's records, so it
    has no kind its input lacks). No chromosome: nothing to count (zeros).
    ``regions_bed``: count only reads overlapping these target regions (``samtools view -L``).

    Raises
    ------
    InputError
        The file is missing, not a BAM, truncated or damaged, or has no index.
    """
    counts = dict.fromkeys(KINDS, 0)
    if not chroms:
        return counts
    check_readable(path)
    target = ["-L", str(regions_bed)] if regions_bed else []
    for kind, args in zip(KINDS, usable_filter_args(min_mapq, keep_duplicates)):
        if kind in kinds:
            out = run_samtools("view", path, "-c", "-@", str(max(0, threads - 1)), *args, *target, str(path), *chroms)
            counts[kind] = int(out.strip() or 0)
    return counts


def count_usable_fragments(
    path: str | Path, chroms: list[str], min_mapq: int = MIN_MAPQ, keep_duplicates: bool = False, threads: int = 1
) -> int:
    """Count the usable fragments (see the module docstring) on ``chroms`` of an indexed BAM, both kinds together."""
    return sum(count_usable_by_kind(path, chroms, min_mapq, keep_duplicates, threads).values())
