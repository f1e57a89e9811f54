"""Damaged binary inputs (issue 17, items 5 and 6a) end in one clear InputError, never a hang, a crash or a traceback.

bigWig: index trees that loop, blocks that inflate past the header's size, chromosome names that are not
UTF-8, blocks past the end of the file, a big-endian file. BAM: an index cut in the middle of its records
(htslib aborts the process on it), damaged BGZF blocks met by the start-up checks and by the stages.
Fragments: a bgzip file cut at a block boundary (gzip readers take it for a whole file), damaged gzip, a
damaged tabix index; and a full disk while writing a fragments file, which was reported as "not sorted".
The files are real data from ``../shared/data`` (or written by the project's writers), damaged here.
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pysam
import pytest

from atacdenoise.checks import (
    PROBE_BP,
    PROBES,
    check_bam_file,
    check_bigwig_file,
    check_fragments_head,
    probe_counts,
)
from atacdenoise.errors import InputError
from atacdenoise.io import bbiread
from atacdenoise.io.bigwig import BigWigSource, open_bigwig, write_bigwig
from atacdenoise.io.fragments import count_fragments, iter_fragments, write_fragments
from atacdenoise.reads.coverage import bam_cut_sites_by_chrom
from atacdenoise.reads.pool import pool_inputs

REPO = Path(__file__).resolve().parents[2]
SIZES = {"chr1": 300_000, "chr2": 200_000}
HSC_SIZES = {"chr1": 10_000_000, "chr2": 10_000_000}
FRAG_SIZES = {"chr1": 249_250_621, "chr2": 243_199_373}


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail (TimeoutError) instead of hanging when the code inside runs longer than ``seconds``."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------- bigWig
def bigwig(tmp_path: Path) -> tuple[Path, bytearray]:
    """Write real coverage (the published HSC track's first bases) with our writer; return the file and its bytes."""
    published = REPO.parent / "shared" / "data" / "hsc" / "HSC_5M.published_coverage.chr1_chr2.bw"
    if not published.is_file():
        pytest.skip(f"{published} not found: the real test data live beside the checkout")
    with open_bigwig(published) as bw:
        tracks = {c: bw.values(c, 0, n, fill=0.0) for c, n in SIZES.items()}
    path = tmp_path / "ok.bw"
    write_bigwig(path, SIZES, tracks)
    return path, bytearray(path.read_bytes())


def layout(raw: bytes) -> dict[str, int]:
    """Byte offsets of a bigWig's structures (header fields, the two trees' root nodes)."""
    chrom_tree, _, index = struct.unpack_from("<QQQ", raw, 8)
    key_size = struct.unpack_from("<I", raw, chrom_tree + 8)[0]
    return {
        "chrom_root": chrom_tree + 32,
        "chrom_items": chrom_tree + 36,
        "key_size": key_size,
        "rtree_root": index + 48,
        "rtree_items": index + 52,
        "uncompress_buf_size": 52,
    }


def damaged(tmp_path: Path, raw: bytearray, name: str = "bad.bw") -> Path:
    path = tmp_path / name
    path.write_bytes(bytes(raw))
    return path


def test_bigwig_chrom_tree_pointing_back_at_itself_is_an_error_not_a_hang(tmp_path):
    _, raw = bigwig(tmp_path)
    at = layout(raw)
    # the root leaf becomes an inner node whose first child is the root itself
    struct.pack_into("<BBH", raw, at["chrom_root"], 0, 0, 1)
    struct.pack_into("<Q", raw, at["chrom_items"] + at["key_size"], at["chrom_root"])
    bad = damaged(tmp_path, raw)
    with time_limit(20), pytest.raises(InputError, match="chromosome tree loops back on itself") as err:
        check_bigwig_file(bad, SIZES)  # the workflow's start-up check
    assert str(bad) in str(err.value) and "re-create it" in str(err.value)


def test_bigwig_data_index_pointing_back_at_itself_is_an_error_not_a_hang(tmp_path):
    _, raw = bigwig(tmp_path)
    at = layout(raw)
    # the R-tree's root leaf becomes an inner node whose only child (same offset field) is the root itself
    struct.pack_into("<BBH", raw, at["rtree_root"], 0, 0, 1)
    struct.pack_into("<Q", raw, at["rtree_items"] + 16, at["rtree_root"])
    bad = damaged(tmp_path, raw)
    check_bigwig_file(bad, SIZES)  # header and chromosomes are intact
    with time_limit(20), open_bigwig(bad) as bw, pytest.raises(InputError, match="data index loops back"):
        bw.values("chr1")


def test_bigwig_block_inflating_past_the_header_block_size_is_refused(tmp_path):
    _, raw = bigwig(tmp_path)
    struct.pack_into("<I", raw, layout(raw)["uncompress_buf_size"], 32)  # a block with two items is larger
    bad = damaged(tmp_path, raw)
    for threads in (1, 2):
        with open_bigwig(bad, threads=threads) as bw, pytest.raises(InputError, match="inflates past the header"):
            bw.values("chr2")


def test_bigwig_inflate_is_bounded_by_the_block_size():
    block = bbiread._inflate_mod.compress(b"\0" * 100_000)  # a 100 kB block from a few hundred bytes
    assert len(bbiread._inflate_one(memoryview(block), 100_000)) == 100_000
    with pytest.raises(bbiread._TooLarge):
        bbiread._inflate_one(memoryview(block), 32_768)


def test_bigwig_chromosome_name_not_utf8_is_an_input_error(tmp_path):
    _, raw = bigwig(tmp_path)
    at = layout(raw)
    raw[at["chrom_items"] + 1] = 0xFF  # "chr1" -> "c\xffr1"
    with pytest.raises(InputError, match=r"chromosome name b'c\\xffr1' is not UTF-8"):
        check_bigwig_file(damaged(tmp_path, raw), SIZES)


@pytest.mark.parametrize("field", ["offset", "size"])
def test_bigwig_block_past_the_end_of_the_file_is_an_input_error(tmp_path, field):
    _, raw = bigwig(tmp_path)
    at = layout(raw)
    struct.pack_into("<Q", raw, at["rtree_items"] + (16 if field == "offset" else 24), 1 << 44)
    with open_bigwig(damaged(tmp_path, raw)) as bw, pytest.raises(InputError, match="past the end of the file"):
        bw.values("chr1")


def test_bigwig_tree_node_cut_or_key_size_damaged(tmp_path):
    _, raw = bigwig(tmp_path)
    at = layout(raw)
    big_keys = bytearray(raw)
    struct.pack_into("<I", big_keys, at["chrom_root"] - 32 + 8, 1 << 30)  # key size 1 GiB
    with pytest.raises(InputError, match="chromosome tree header damaged"):
        check_bigwig_file(damaged(tmp_path, big_keys), SIZES)
    many = bytearray(raw)
    struct.pack_into("<BBH", many, at["rtree_root"], 1, 0, 65535)  # more items than a node holds
    with open_bigwig(damaged(tmp_path, many)) as bw, pytest.raises(InputError, match="not a tree node"):
        bw.values("chr1")


def test_bigwig_cut_in_its_zoom_levels_is_refused(tmp_path):
    """The zoom levels come last and are not read: a cut there went unnoticed (every bigWig ends with its magic)."""
    _, raw = bigwig(tmp_path)
    assert struct.unpack_from("<I", raw, len(raw) - 4)[0] == bbiread.BIGWIG_MAGIC
    with pytest.raises(InputError, match="does not end with the bigWig magic number, so it is cut short"):
        check_bigwig_file(damaged(tmp_path, raw[: len(raw) - 100]), SIZES)


def test_big_endian_bigwig_is_refused_clearly(tmp_path):
    _, raw = bigwig(tmp_path)
    raw[:4] = struct.pack(">I", bbiread.BIGWIG_MAGIC)
    with pytest.raises(InputError, match="big-endian bigWig; convert it"):
        check_bigwig_file(damaged(tmp_path, raw), SIZES)


def test_damaged_bigwig_block_met_by_a_stage_is_an_input_error(tmp_path):
    """Reading windows (evaluation, peaks): the damage is found only there, and is an InputError too."""
    path, raw = bigwig(tmp_path)
    with open_bigwig(path) as bw:
        leaf = bw._leaves(bw._chrom_ids["chr2"])[0]
    mid = int(leaf["offset"]) + int(leaf["size"]) // 2
    raw[mid : mid + 4] = b"\xff\x00\xff\x00"
    bad = damaged(tmp_path, raw)
    check_bigwig_file(bad, SIZES)  # the header, trees and chromosomes are intact
    src = BigWigSource(bad, SIZES, list(SIZES))
    try:
        with pytest.raises(InputError, match="does not inflate"):
            src.read("chr2", 0, SIZES["chr2"])
    finally:
        src.close()


# --------------------------------------------------------------------------- BAM
@pytest.fixture
def hsc_bam(shared_data, tmp_path) -> Path:
    """Copy the real HSC 5M BAM and its index (each test damages them)."""
    for suffix in ("", ".bai"):
        shutil.copy(shared_data / "hsc" / f"HSC_5M.chr1_chr2.bam{suffix}", tmp_path / f"hsc.bam{suffix}")
    return tmp_path / "hsc.bam"


def bgzf_blocks(raw: bytes) -> list[int]:
    out, at = [], 0
    while at + 18 <= len(raw):
        out.append(at)
        at += struct.unpack_from("<H", raw, at + 16)[0] + 1
    return out


def fresh_index(bam: Path, index: Path) -> None:
    """Give the index the BAM's time (a damaged BAM rewritten here must not trip the stale-index check)."""
    st = bam.stat()
    os.utime(index, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_bam_index_cut_mid_record_is_an_input_error_not_an_abort(hsc_bam, tmp_path):
    """Htslib aborts the process ("double free") on a .bai cut in the middle of a bin: checked before it loads."""
    bai = Path(f"{hsc_bam}.bai")
    raw = bai.read_bytes()
    bai.write_bytes(raw[: len(raw) // 2 + 2])  # most cut points fall inside a bin's records
    fresh_index(hsc_bam, bai)
    code = (
        "import sys\n"
        "from atacdenoise.checks import check_bam_file\n"
        "from atacdenoise.errors import InputError\n"
        "try:\n"
        f"    check_bam_file({str(hsc_bam)!r}, {HSC_SIZES!r})\n"
        "except InputError as exc:\n"
        "    print('InputError:', exc)\n"
        "    sys.exit(2)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2, f"status {res.returncode}\n{res.stdout}\n{res.stderr[-2000:]}"
    assert "hsc.bam.bai: the index of" in res.stdout and "cut short" in res.stdout, res.stdout
    assert "samtools index" in res.stdout


def test_bam_index_truncated_at_every_point_is_refused(hsc_bam):
    """Every cut of the index is refused before htslib sees it (the optional 8-byte count excepted)."""
    from atacdenoise.io.bam import check_index

    bai = Path(f"{hsc_bam}.bai")
    raw = bai.read_bytes()
    cut = bai.with_name("cut.bai")
    points = [*range(0, len(raw), 97), *range(len(raw) - 40, len(raw))]  # the end: linear index, unplaced count
    refused = 0
    for n in points:
        cut.write_bytes(raw[:n])
        try:
            check_index(cut, hsc_bam, "samtools index")
        except InputError:
            refused += 1
        else:
            assert n == len(raw) - 8, n  # only the optional count of unplaced reads may be missing
    assert refused >= len(points) - 1


def test_damaged_first_bam_block_is_an_input_error_at_start_up(hsc_bam):
    raw = bytearray(hsc_bam.read_bytes())
    second = bgzf_blocks(bytes(raw))[1]
    raw[second + 40 : second + 48] = b"\xff" * 8  # the reads' first block: fails its CRC
    hsc_bam.write_bytes(bytes(raw))
    fresh_index(hsc_bam, Path(f"{hsc_bam}.bai"))
    with pytest.raises(InputError, match="damaged or truncated") as err:
        check_bam_file(hsc_bam, HSC_SIZES)
    assert "hsc.bam" in str(err.value) and "samtools quickcheck" in str(err.value)


def test_damaged_late_bam_block_is_an_input_error_in_the_stage_and_probes(hsc_bam):
    """Past the reads the start-up check samples: the coverage stage and the coverage probes meet it."""
    # the block holding the reads of a chr2 probe window (chr2 starts after the 10,000 reads the checks sample)
    with pysam.AlignmentFile(str(hsc_bam), "rb") as bam:
        for i in range(PROBES // 2, PROBES):  # the first probe window with reads past the middle of chr2
            centre = int((i + 0.5) * HSC_SIZES["chr2"] / PROBES)
            if next(bam.fetch("chr2", centre - PROBE_BP // 2, centre + PROBE_BP // 2), None) is not None:
                break
        block = bam.tell() >> 16
    raw = bytearray(hsc_bam.read_bytes())
    assert block in bgzf_blocks(bytes(raw))
    raw[block + 60 : block + 68] = b"\x00" * 8  # inside its deflate data: fails its CRC
    hsc_bam.write_bytes(bytes(raw))
    fresh_index(hsc_bam, Path(f"{hsc_bam}.bai"))
    check_bam_file(hsc_bam, HSC_SIZES)  # passes: the reads it samples are intact
    with pytest.raises(InputError, match=r"hsc\.bam: the BAM or its index is damaged"):
        bam_cut_sites_by_chrom(hsc_bam, HSC_SIZES)
    with pytest.raises(InputError, match=r"hsc\.bam: index queries fail .*samtools index"):
        probe_counts(hsc_bam, "bam", HSC_SIZES)


# --------------------------------------------------------------------------- fragments
@pytest.fixture
def fragments(shared_data, tmp_path) -> Path:
    """Write the first 20,000 fragments of the real PBMC file, bgzipped (several BGZF blocks) and tabix-indexed."""
    chunk = next(iter_fragments(shared_data / "pbmc_sc" / "pbmc_C2C5.fragments.tsv.gz", 20_000, barcodes=True))
    out = tmp_path / "frag.tsv.gz"
    write_fragments([chunk], out)
    return out


def test_bgzip_fragments_cut_at_a_block_boundary_is_refused(fragments, tmp_path):
    raw = fragments.read_bytes()
    blocks = bgzf_blocks(raw)
    assert len(blocks) > 3
    cut = tmp_path / "cut.tsv.gz"
    cut.write_bytes(raw[: blocks[len(blocks) // 2]])  # whole gzip members: gzip reads it as a shorter file
    with gzip.open(cut, "rt") as fh:
        assert sum(1 for _ in fh) < 20_000  # what the readers used to take for the whole file
    for read in (lambda p: check_fragments_head(p, FRAG_SIZES), lambda p: count_fragments(p, FRAG_SIZES)):
        with pytest.raises(InputError, match="end-of-file block, so it is truncated"):
            read(cut)


def test_damaged_gzip_fragments_are_an_input_error(fragments, tmp_path):
    text = pysam.BGZFile(str(fragments), "rb").read()
    plain = gzip.compress(text, mtime=0)
    bad = bytearray(plain)
    for at in range(len(bad) // 3, len(bad) // 3 + 4000, 400):  # inside the deflate stream
        bad[at : at + 4] = b"\x13\x37\x13\x37"
    (tmp_path / "bad.tsv.gz").write_bytes(bytes(bad))
    # the garbage decoded before the damage is seen may fail the line checks first: either is an InputError
    with pytest.raises(InputError, match=r"bad\.tsv\.gz"):
        check_fragments_head(tmp_path / "bad.tsv.gz", FRAG_SIZES, n=10**9)
    with pytest.raises(InputError, match=r"bad\.tsv\.gz"):
        count_fragments(tmp_path / "bad.tsv.gz", FRAG_SIZES)
    (tmp_path / "cut.tsv.gz").write_bytes(plain[: len(plain) // 50])  # ends inside pandas' first read
    with pytest.raises(InputError, match="truncated or damaged"):
        count_fragments(tmp_path / "cut.tsv.gz", FRAG_SIZES)


def test_damaged_tabix_index_is_an_input_error(fragments):
    tbi = Path(f"{fragments}.tbi")
    raw = tbi.read_bytes()
    tbi.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=r"frag\.tsv\.gz\.tbi: the index of .* cannot be used"):
        probe_counts(fragments, "fragments", FRAG_SIZES)
    inflated = bytearray(gzip.decompress(raw))
    struct.pack_into("<i", inflated, 4, 1000)  # 1,000 references in a 2-reference index
    with pysam.BGZFile(str(tbi), "wb") as fh:
        fh.write(bytes(inflated))
    with pytest.raises(InputError, match="tabix -p bed"):
        probe_counts(fragments, "fragments", FRAG_SIZES)


# --------------------------------------------------------------------------- writing fragments: full disk vs order
@contextmanager
def small_disk(where: Path, size_kb: int) -> Iterator[bool]:
    """Mount a ``size_kb`` tmpfs at ``where`` (root only); yield whether it is mounted (else a plain folder)."""
    where.mkdir()
    mounted = False
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount"):
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)], capture_output=True, text=True
        )
        mounted = res.returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            # lazily: htslib leaves the files whose writing failed open (deleted) until the process ends
            subprocess.run(["umount", "-l", str(where)], check=True)


def fill_to(where: Path, free_bytes: int) -> None:
    """Write a filler file so that about ``free_bytes`` stay free on the file system of ``where``."""
    free = shutil.disk_usage(where).free
    with open(where / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - free_bytes))


def test_full_disk_while_indexing_fragments_is_not_reported_as_unsorted(fragments, tmp_path, monkeypatch):
    """The data fit, the index does not: the message says the disk is full, not that the input is unsorted."""
    chunk = next(iter_fragments(fragments, 20_000, barcodes=True))
    data_bytes = fragments.stat().st_size
    page = 4096
    with small_disk(tmp_path / "disk", 256) as mounted:
        out = tmp_path / "disk" / "out.tsv.gz"
        if mounted:  # real: room for the data file's pages only, none for its .tbi
            fill_to(out.parent, -(-data_bytes // page) * page)
        else:  # no tmpfs without root: tabix fails as it does on a full disk (pysam's OSError, no errno)

            def full(*args, **kwargs):
                raise OSError(f"building of index for {args[0]} failed")

            monkeypatch.setattr(pysam, "tabix_index", full)
        with pytest.raises(InputError) as err:
            write_fragments([chunk], out, source="in.tsv.gz")
        msg = str(err.value)
        assert "not sorted" not in msg, msg
        assert "cannot write the fragments file or its tabix index" in msg and "is full" in msg, msg
        assert "building of index" in msg, msg  # the indexing step failed (the data were written)
        assert sorted(p.name for p in out.parent.iterdir() if p.name != "filler") == []  # nothing left behind
        if mounted:  # the data themselves do not fit either: the same message, not a traceback
            fill_to(out.parent, page)
            with pytest.raises(InputError, match="cannot write the fragments file or its tabix index"):
                write_fragments([chunk], out)
            with pytest.raises(InputError, match="is full"):  # the pooling stage writes through the same code
                pool_inputs([fragments], "fragments", out, FRAG_SIZES)
            assert sorted(p.name for p in out.parent.iterdir() if p.name != "filler") == []


def test_unsorted_fragments_are_reported_with_the_first_row_out_of_order(fragments, tmp_path):
    chunk = next(iter_fragments(fragments, 500, barcodes=True))
    backwards = chunk.iloc[[0, 2, 1, *range(3, len(chunk))]]
    with pytest.raises(InputError, match=r"not sorted by chromosome and start \(chr1:[\d,]+ follows chr1:[\d,]+\)"):
        write_fragments([backwards], tmp_path / "a.tsv.gz", source="in.tsv.gz")
    chr2 = chunk.assign(chrom="chr2")
    with pytest.raises(InputError, match=r"chr1 appears again after chr2"):
        write_fragments([chunk.iloc[:10], chr2.iloc[:10], chunk.iloc[10:20]], tmp_path / "b.tsv.gz")
    # split across chunks: the order is followed from one chunk to the next
    with pytest.raises(InputError, match="follows"):
        write_fragments([chunk.iloc[10:20], chunk.iloc[:10]], tmp_path / "c.tsv.gz")
    assert not list(tmp_path.glob("[abc].tsv.gz*"))
    assert write_fragments([chunk.iloc[:10], chunk.iloc[10:], chr2], tmp_path / "d.tsv.gz") == 2 * len(chunk)
    assert np.array_equal(
        pd_concat_starts(tmp_path / "d.tsv.gz"), np.concatenate([chunk["start"], chr2["start"]]).astype(np.int64)
    )


def pd_concat_starts(path: Path) -> np.ndarray:
    return np.concatenate([c["start"].to_numpy() for c in iter_fragments(path)])


def _damaged_gzip(path: Path, text: str) -> Path:
    """Write ``text`` gzipped to ``path`` and flip bytes in the middle of its deflate stream."""
    raw = bytearray(gzip.compress(text.encode()))
    mid = len(raw) // 2
    raw[mid : mid + 8] = bytes(b ^ 0xFF for b in raw[mid : mid + 8])
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("kind", ["bed", "barcodes"])
def test_damaged_gzip_bed_and_barcode_table_end_in_an_input_error(tmp_path, kind):
    """A damaged gzip BED or barcode table raised zlib.error (not an OSError): a traceback, not a message."""
    from atacdenoise.io.intervals import read_bed
    from atacdenoise.reads.cells import read_barcode_table

    rng = np.random.default_rng(7)
    if kind == "bed":
        starts = np.sort(rng.integers(0, 1_000_000, 3000))
        text = "".join(f"chr1\t{s}\t{s + 100}\n" for s in starts)
        with pytest.raises(InputError, match="truncated or damaged"):
            read_bed(_damaged_gzip(tmp_path / "r.bed.gz", text))
    else:
        text = "".join(f"AAAC{i:08d}-1\tT{i % 3}\n" for i in range(3000))
        with pytest.raises(InputError, match="cannot read the barcode table"):
            read_barcode_table(_damaged_gzip(tmp_path / "b.tsv.gz", text))
