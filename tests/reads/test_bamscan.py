"""The native BAM record scan and BGZF I/O: samtools' reads and header, htslib's counts, same bytes, clear errors."""

from __future__ import annotations

import gzip
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pysam
import pytest

from atacdenoise.errors import InputError
from atacdenoise.io import bgzf
from atacdenoise.io.bam import usable_filter_args
from atacdenoise.reads import bamscan
from atacdenoise.reads.subsample import subsample_bam
from conftest import SHARED_DATA

DATA = SHARED_DATA
PE_BAM = DATA / "encode" / "ENCSR356KRQ_pe_1in400.chr19_chrM.dupmarked.bam"  # paired-end
SE_BAM = DATA / "encode" / "ENCSR889WQX_se_1in400.chr19_chrM.nodup.bam"  # single-end
HSC_BAM = DATA / "hsc" / "HSC_80M.chr1_chr2.bam"  # 488 k single-end reads over two chromosomes

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} (real data beside the checkout) not found")
needs_scan = pytest.mark.skipif(not bamscan.available(), reason="no C compiler: the native scan is not built here")


def samtools_subsample(src: Path, out: Path, fraction: float, seed: int) -> None:
    pysam.view(
        "-b",
        "--no-PG",
        "--subsample",
        repr(fraction),
        "--subsample-seed",
        str(seed),
        "-o",
        str(out),
        str(src),
        catch_stdout=False,
    )


def sam_text(bam: Path) -> tuple[str, str]:
    """(header without @PG lines, records) as SAM text."""
    return pysam.view("-H", "--no-PG", str(bam)), pysam.view("--no-PG", str(bam))


def htslib_counts(bam: Path, chroms: list[str], min_mapq: int, keep_duplicates: bool) -> dict[str, int]:
    if not Path(str(bam) + ".bai").exists():
        pysam.index(str(bam))
    pe, se = usable_filter_args(min_mapq, keep_duplicates)
    return {
        kind: int(pysam.view("-c", *args, str(bam), *chroms).strip())
        for kind, args in (("paired_end", pe), ("single_end", se))
    }


@needs_data
@needs_scan
@pytest.mark.parametrize("src", [PE_BAM, SE_BAM, HSC_BAM], ids=["pe", "se", "hsc"])
@pytest.mark.parametrize("fraction,seed", [(0.1, 0), (0.1, 42), (0.123456789, 7), (0.5, -3), (1.0, 42)])
def test_same_reads_and_header_as_samtools(tmp_path, src, fraction, seed):
    ours, theirs = tmp_path / "ours.bam", tmp_path / "theirs.bam"
    with pysam.AlignmentFile(str(src)) as fh:
        chroms = list(fh.references)
    counts = bamscan.scan_bam(src, chroms, threads=2, fraction=fraction, seed=seed, out=ours)
    samtools_subsample(src, theirs, fraction, seed)
    assert sam_text(ours) == sam_text(theirs)  # records byte for byte, header with samtools' @CO line
    assert counts == htslib_counts(theirs, chroms, 30, False)


@needs_data
@needs_scan
@pytest.mark.parametrize(
    "chroms,min_mapq,keep_duplicates",
    [
        (["chr19"], 30, False),
        (["chr19", "chrM"], 0, False),
        (["chrM"], 30, True),
        (["chr19"], 255, True),
    ],
)
def test_counts_equal_htslib_for_any_filter(chroms, min_mapq, keep_duplicates):
    for src in (PE_BAM, SE_BAM):
        got = bamscan.scan_bam(src, chroms, min_mapq, keep_duplicates, threads=2)
        assert got == htslib_counts(src, chroms, min_mapq, keep_duplicates)
    assert (
        bamscan.scan_bam(PE_BAM, ["chr19"], 0)["paired_end"] > bamscan.scan_bam(PE_BAM, ["chr19"], 30)["paired_end"] > 0
    )


@needs_data
@needs_scan
def test_output_bytes_do_not_depend_on_threads_or_chunking(tmp_path, monkeypatch):
    outs = []
    # small chunks: many records span two; no head room: the carried record is copied in front of the chunk
    for threads, chunk, room in (
        (1, bgzf.CHUNK_BYTES, bamscan.HEAD_ROOM),
        (2, bgzf.CHUNK_BYTES, bamscan.HEAD_ROOM),
        (3, 100_000, bamscan.HEAD_ROOM),
        (2, 70_000, 0),
    ):
        monkeypatch.setattr(bgzf, "CHUNK_BYTES", chunk)
        monkeypatch.setattr(bamscan, "HEAD_ROOM", room)
        out = tmp_path / f"t{len(outs)}.bam"
        subsample_bam(PE_BAM, out, 0.4, 5, threads=threads)
        outs.append(out.read_bytes())
        assert Path(str(out) + ".bai").exists()
    assert outs[0] == outs[1] == outs[2] == outs[3]
    assert pysam.quickcheck(str(tmp_path / "t1.bam")) == ""
    samtools_subsample(PE_BAM, tmp_path / "theirs.bam", 0.4, 5)
    assert sam_text(tmp_path / "t3.bam") == sam_text(tmp_path / "theirs.bam")


@needs_data
def test_samtools_fallback_gives_the_same_reads(tmp_path, monkeypatch):
    native = tmp_path / "native.bam"
    got = subsample_bam(SE_BAM, native, 0.3, 9, threads=2, chroms=["chr19"])
    monkeypatch.setattr(bamscan, "_scan", None)
    monkeypatch.setattr(bamscan, "_scan_tried", True)  # as without a compiler
    fallback = tmp_path / "fallback.bam"
    assert subsample_bam(SE_BAM, fallback, 0.3, 9, threads=2, chroms=["chr19"]) is None  # the caller counts
    assert sam_text(native) == sam_text(fallback)
    if bamscan._load_scan() is None and got is None:
        return
    assert got == htslib_counts(fallback, ["chr19"], 30, False)


def test_hash_seed_matches_samtools_rule():
    assert bamscan.hash_seed(0) == 0
    assert bamscan.hash_seed(42) == bamscan.hash_seed(42) != bamscan.hash_seed(43)


@needs_data
@needs_scan
def test_damaged_inputs_fail_with_the_file_name(tmp_path):
    raw = PE_BAM.read_bytes()
    cases = {
        "truncated.bam": raw[: len(raw) // 2],
        "plain.bam": gzip.compress(b"BAM\x01" + os.urandom(1000)),  # gzip but not BGZF
        "text.bam": b"@HD\tVN:1.6\n" * 100,
    }
    damaged = bytearray(raw)
    damaged[len(raw) // 3] ^= 0xFF  # one flipped byte inside a block: the CRC (or the inflate) catches it
    cases["damaged.bam"] = bytes(damaged)
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(InputError, match=name):
            bamscan.scan_bam(path, None, threads=2)


def test_bgzf_round_trip_and_gzip_compatible(tmp_path):
    rng = random.Random(1)
    pieces = [
        bytes(rng.getrandbits(8) for _ in range(n)) for n in (0, 1, 1000, bgzf.BLOCK_DATA, 3 * bgzf.BLOCK_DATA + 17)
    ]
    pieces.append(b"ACGT" * 200_000)  # compressible, many blocks
    path = tmp_path / "x.gz"
    with ThreadPoolExecutor(2) as pool:
        with open(path, "wb") as fh:
            writer = bgzf.BgzfWriter(fh, pool, max_pending=2)
            for p in pieces:
                writer.write(p)
            writer.flush()
            writer.write(b"tail")
            writer.close()
        data = b"".join(pieces) + b"tail"
        got = b"".join(
            buf[start:end].tobytes()
            for buf, start, end in bgzf.read_chunks(path, pool, chunk_bytes=50_000, head_room=7)
        )
        assert got == data
    assert gzip.decompress(path.read_bytes()) == data  # every block is a gzip member
    assert path.read_bytes().endswith(bgzf.EOF_BLOCK)


@needs_scan
@pytest.mark.parametrize("min_mapq,keep_duplicates", [(30, False), (30, True), (0, False), (11, True)])
def test_counts_equal_htslib_on_every_kind_of_flag(tmp_path, min_mapq, keep_duplicates):
    from builders import READS, make_bam

    extra = [
        dict(name="mu", flag=0x1 | 0x2 | 0x8 | 0x40, chrom="chr1", pos=900),  # mate unmapped
        dict(name="pp2", flag=0x1 | 0x2 | 0x40 | 0x400, chrom="chr2", pos=100, mate_pos=200),  # duplicate pair
        dict(name="pp2", flag=0x1 | 0x2 | 0x80 | 0x400 | 0x10, chrom="chr2", pos=200, mate_pos=100),
    ]
    bam = make_bam(tmp_path / "flags.bam", READS + extra)
    for chroms in (["chr1"], ["chr1", "chr2"], ["chrM", "chr2"]):
        got = bamscan.scan_bam(bam, chroms, min_mapq, keep_duplicates)
        assert got == htslib_counts(bam, chroms, min_mapq, keep_duplicates), chroms


@needs_data
@needs_scan
def test_impossible_record_size_is_a_clear_error(tmp_path):
    data = bytearray(gzip.decompress(SE_BAM.read_bytes()))  # BGZF is a series of gzip members
    size, _ = bamscan._bam_header(bytes(data), SE_BAM)
    second = size + 4 + int.from_bytes(data[size : size + 4], "little")
    data[second : second + 4] = (1 << 30).to_bytes(4, "little")  # the second record claims 1 GiB
    path = tmp_path / "bad_record.bam"
    with ThreadPoolExecutor(2) as pool, open(path, "wb") as fh:
        writer = bgzf.BgzfWriter(fh, pool)
        writer.write(bytes(data))
        writer.close()
    with pytest.raises(InputError, match="bad_record.bam: malformed BAM record"):
        bamscan.scan_bam(path, None)
