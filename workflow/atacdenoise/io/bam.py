"""Opening and validating BAM files; counting usable fragments with htslib (samtools through pysam).

Every check raises ``InputError`` naming the file and the fix, before any
output is written: a missing index, a file not sorted by coordinate, no
reads, chromosome names or lengths that do not match the genome's sizes file.
A damaged or truncated BAM or index is an ``InputError`` too: the index's
records are checked before htslib loads it (:func:`check_index`, for tabix
indexes too: htslib aborts the process on some cut indexes), and what pysam
raises while reading a damaged file is turned into one (:func:`bam_errors`).

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
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
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
#: what pysam raises on a damaged BAM or index: htslib's read errors (OSError), a record or index it cannot
#: decode (ValueError), a block that is not BGZF (NotImplementedError: "seek not implemented")
PYSAM_ERRORS = (OSError, ValueError, NotImplementedError)


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


@contextmanager
def bam_errors(path: str | Path, errors: tuple[type[Exception], ...] = PYSAM_ERRORS) -> Iterator[None]:
    """Turn what pysam raises on a damaged or truncated BAM (``errors``) into an ``InputError`` naming ``path``.

    Wrap code that only reads the BAM with the default; wrap a stage's loop,
    which also computes, with ``errors=(OSError,)`` (htslib's read errors) so
    that a bug of ours is not reported as a damaged file.
    """
    try:
        yield
    except InputError:
        raise
    except errors as exc:
        raise bam_damaged(path, exc) from None


def close_bam(bam: pysam.AlignmentFile) -> None:
    """Close a BAM opened for reading; htslib's complaint on closing after a read error is logged, not raised.

    (It reports the read error again, as "Closing failed", and would hide the ``InputError`` that named it.)
    """
    try:
        bam.close()
    except OSError as exc:
        log.debug("%s: %s", bam.filename, exc)


def check_index_files(path: str | Path) -> None:
    """Check the records of every index beside a BAM (X.bam.bai, X.bai, X.bam.csi) before htslib loads one."""
    path = Path(path)
    for cand in _index_candidates(path):
        if cand.is_file():
            check_index(cand, path, f"samtools index {path}")


def open_bam(path: str | Path, threads: int = 1) -> pysam.AlignmentFile:
    """Open an indexed, coordinate-sorted BAM for reading; raise ``InputError`` otherwise (damaged files too)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: BAM file not found")
    check_index_files(path)
    try:
        bam = pysam.AlignmentFile(str(path), "rb", threads=max(1, threads))
    except PYSAM_ERRORS as exc:
        raise _unreadable(path, exc) from None
    try:
        with bam_errors(path):
            _check_format(bam, path)
            so = bam.header.to_dict().get("HD", {}).get("SO")
            if so is not None and so != "coordinate":
                raise InputError(
                    f"{path}: header says it is sorted by {so!r}, expected 'coordinate'; "
                    f"sort it (samtools sort -o sorted.bam {path}) and {_index_hint(Path('sorted.bam'))}"
                )
            if not bam.has_index():
                raise InputError(f"{path}: BAM has no index (.bai/.csi beside it); {_index_hint(path)}")
            check_index_fresh(path)
            check_sorted_sample(path)
    except InputError:
        close_bam(bam)
        raise
    return bam


def _index_candidates(path: Path) -> tuple[Path, Path, Path]:
    """Return the index names htslib looks for beside a BAM, in its order: X.bam.bai, X.bai, X.bam.csi."""
    return Path(f"{path}.bai"), path.with_suffix(".bai"), Path(f"{path}.csi")


def index_path(path: str | Path) -> Path | None:
    """Find the index file htslib would use for ``path`` (X.bam.bai, X.bai, X.bam.csi), or None."""
    return next((cand for cand in _index_candidates(Path(path)) if cand.exists()), None)


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
    try:
        bam = pysam.AlignmentFile(str(path), "rb")
    except PYSAM_ERRORS as exc:
        raise _unreadable(Path(path), exc) from None
    try:
        with bam_errors(path):
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
    finally:
        close_bam(bam)
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
    with bam_errors(bam.filename.decode()):
        return {s.contig: int(s.mapped) for s in bam.get_index_statistics()}


def is_paired(bam: pysam.AlignmentFile, n: int = SNIFF_READS) -> bool:
    """Tell whether any of the first ``n`` reads is paired (flag 0x1)."""
    with bam_errors(bam.filename.decode()):
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
    check_index_files(path)
    try:
        bam = pysam.AlignmentFile(str(path), "rb", check_sq=False)
    except PYSAM_ERRORS as exc:
        raise _unreadable(path, exc) from None
    try:
        _check_format(bam, path)
    finally:
        close_bam(bam)


def _unreadable(path: Path, exc: Exception) -> InputError:
    return InputError(f"{path}: not a readable BAM file ({exc}); check the path and the file (samtools quickcheck)")


def bam_damaged(path: str | Path, exc: Exception) -> InputError:
    """Return the error for a BAM (or its index) on which htslib failed with ``exc``: name it and the fixes."""
    return InputError(
        f"{path}: the BAM or its index is damaged or truncated (htslib: {type(exc).__name__}: {exc}); check it "
        f"(samtools quickcheck {path}), copy it again or re-create it, and {_index_hint(Path(path))}"
    )


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


# --------------------------------------------------------------------------- index files (.bai, .csi, .tbi)
# Why: htslib (1.21, in pysam 0.24) aborts the whole process ("double free detected") when a .bai ends in the
# middle of a bin's record, e.g. an index cut short in a copy: the workflow's start-up checks, run inside
# Snakemake, would die without a message. Walking the index's records here, every count checked against the
# bytes left, turns such a file into an InputError that names it and says how to re-index; htslib then only
# sees indexes whose records are all present. Layouts (SAM/BAM specification section 5.2, the tabix and CSI
# specifications): BAI is uncompressed, TBI and CSI are BGZF-compressed. Per reference: bins (each a bin
# number, [CSI: a virtual offset,] a chunk count and 16-byte chunks), then [BAI, TBI:] a linear index (a count
# and 8-byte offsets); an optional 8-byte count of unplaced reads may end the file.

#: most bytes an index may inflate to (a whole-genome BAM's index is a few MB)
MAX_INDEX_BYTES = 1 << 30


class _Cut(Exception):
    """The records run past the end of the index's bytes."""


def _inflate_bgzf(raw: bytes) -> bytes:
    """Inflate every member of a BGZF/gzip file (bounded by :data:`MAX_INDEX_BYTES`); raise zlib.error or _Cut."""
    out, total = [], 0
    while raw:
        d = zlib.decompressobj(wbits=31)
        part = d.decompress(raw, MAX_INDEX_BYTES - total + 1)
        if not d.eof:
            if len(part) + total > MAX_INDEX_BYTES:
                raise zlib.error("inflates past 1 GiB")
            raise _Cut()
        out.append(part)
        total += len(part)
        raw = d.unused_data
    return b"".join(out)


class _Reader:
    """Little-endian fields read from a bytes object; running past its end raises :class:`_Cut`."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def int32(self) -> int:
        if self.at + 4 > len(self.data):
            raise _Cut()
        (value,) = struct.unpack_from("<i", self.data, self.at)
        self.at += 4
        return value

    def skip(self, n: int) -> None:
        if n < 0 or self.at + n > len(self.data):
            raise _Cut()
        self.at += n


def _walk(data: bytes, kind: str) -> None:
    """Walk the records of an inflated index of ``kind`` (BAI, TBI, CSI); raise ValueError or _Cut when damaged."""
    r = _Reader(data)
    if data[:4] != f"{kind}\1".encode():
        raise ValueError(f"not a {kind} index (starts with {data[:4]!r})")
    r.skip(4)
    if kind == "CSI":
        r.skip(8)  # min_shift, depth
        r.skip(r.int32())  # auxiliary data (tabix's column layout and names)
    n_ref = r.int32()
    if kind == "TBI":
        r.skip(24)  # format, col_seq, col_beg, col_end, meta, skip
        r.skip(r.int32())  # names
    if n_ref < 0:
        raise ValueError(f"negative number of references ({n_ref})")
    for _ in range(n_ref):
        n_bin = r.int32()
        if n_bin < 0:
            raise ValueError(f"negative number of bins ({n_bin})")
        for _ in range(n_bin):
            r.skip(4 if kind != "CSI" else 12)  # bin [, loffset]
            n_chunk = r.int32()
            if n_chunk < 0:
                raise ValueError(f"negative number of chunks ({n_chunk})")
            r.skip(16 * n_chunk)
        if kind != "CSI":
            n_intv = r.int32()
            if n_intv < 0:
                raise ValueError(f"negative linear index size ({n_intv})")
            r.skip(8 * n_intv)
    if len(data) - r.at not in (0, 8):  # the optional count of unplaced reads
        raise ValueError(f"{len(data) - r.at} bytes after the last reference's records")


def check_index(index: str | Path, data: str | Path, fix: str) -> None:
    """Raise ``InputError`` unless ``index`` (.bai, .csi or .tbi of ``data``) holds all its records.

    ``fix`` is the command that re-makes it, quoted in the message. Reads the
    whole index: a few MB for a whole-genome BAM, parsed in well under a second.
    """
    index = Path(index)
    raw = index.read_bytes()
    try:
        if raw[:4] == b"BAI\1":
            kind, inflated = "BAI", raw
        else:
            inflated = _inflate_bgzf(raw) if raw[:2] == b"\x1f\x8b" else raw
            kind = inflated[:3].decode("ascii", "replace")
            if kind not in ("TBI", "CSI"):
                raise ValueError("not a BAM or tabix index")
        _walk(inflated, kind)
    except _Cut:
        problem = "it ends in the middle of its records (cut short)"
    except (ValueError, zlib.error) as exc:
        problem = f"it is damaged ({exc})"
    else:
        return
    raise InputError(f"{index}: the index of {data} cannot be used: {problem}; re-create it ({fix})")
