"""Subsampling to a depth: samtools' reads, byte-identical outputs, counts per kind, fragments files, damaged inputs.

Mates stay together, smaller fractions keep subsets, reruns and thread counts give the same bytes, usable
fragments are counted per kind as a read-by-read count and ``samtools view -c`` count them, counts made once
are reused, and a damaged BAM is an error naming it.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pysam
import pytest

from atacdenoise.cli import main
from atacdenoise.errors import InputError
from atacdenoise.io.bam import count_usable_by_kind, count_usable_fragments
from atacdenoise.reads.subsample import (
    TOLERANCE_SD,
    count_bam,
    draw_per_chunk,
    fraction_for,
    is_bam,
    subsample_bam,
    subsample_bam_to_depth,
    subsample_fragments,
    usable_chroms,
)
from builders import FRAGMENT_SIZES, READS, fragment_table, lines_of, make_bam, write_plain, write_sizes
from conftest import SHARED_DATA

DATA = SHARED_DATA
PE_BAM = DATA / "encode" / "ENCSR356KRQ_pe_1in400.chr19_chrM.dupmarked.bam"  # paired-end, duplicates marked
SE_BAM = DATA / "encode" / "ENCSR889WQX_se_1in400.chr19_chrM.nodup.bam"  # single-end
HSC_BAM = DATA / "hsc" / "HSC_80M.chr1_chr2.bam"  # 488 k single-end reads over two chromosomes
HG38 = DATA / "genomes" / "hg38.chrom.sizes"

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} (real data beside the checkout) not found")


def run_subsample(*argv: str) -> int:
    return main(["subsample", *argv])


def run_count(*argv: str) -> int:
    return main(["count", *argv])


def names(bam: Path) -> Counter:
    with pysam.AlignmentFile(str(bam)) as fh:
        return Counter(r.query_name for r in fh.fetch(until_eof=True))


def usable_by_python(bam: Path, chroms: list[str], min_mapq: int = 30, keep_duplicates: bool = False) -> dict:
    """Usable fragments per kind, read by read in Python (independent of htslib's -c and of our flag arguments)."""
    drop = 0x4 | 0x100 | 0x200 | 0x800 | (0 if keep_duplicates else 0x400)
    n = {"paired_end": 0, "single_end": 0}
    with pysam.AlignmentFile(str(bam)) as fh:
        for chrom in chroms:
            for r in fh.fetch(chrom):
                if r.flag & drop or r.mapping_quality < min_mapq:
                    continue
                if not r.is_paired:
                    n["single_end"] += 1
                elif r.is_proper_pair and r.is_read1 and not r.mate_is_unmapped:
                    n["paired_end"] += 1
    return n


def samtools_subsample(src: Path, out: Path, fraction: float, seed: int) -> None:
    """Run the reference: samtools view --subsample itself, called directly through pysam."""
    args = ["-b", "--no-PG", "--subsample", repr(fraction), "--subsample-seed", str(seed), "-o", str(out), str(src)]
    pysam.view(*args, catch_stdout=False)


def sam_text(bam: Path) -> tuple[str, str]:
    """(header, records) as SAM text; --no-PG: the view that prints them adds no @PG line of its own."""
    return pysam.view("-H", "--no-PG", str(bam)), pysam.view("--no-PG", str(bam))


def glibc_rand_after_srand(seed: int) -> int:
    """Return glibc's first ``rand()`` after ``srand(seed)`` (its TYPE_3 additive generator), in Python.

    samtools passes a non-zero ``--subsample-seed`` through ``srand(seed); seed = rand()`` first.
    """
    word = seed - (1 << 32) if seed >= 1 << 31 else seed  # the unsigned seed as glibc's int32_t state
    word = word or 1  # glibc: seed 0 acts as 1
    state = [word]
    for _ in range(30):  # Park-Miller 16807 with C's truncating division (Schrage's method, as glibc)
        hi = -(-word // 127773) if word < 0 else word // 127773
        word = 16807 * (word - hi * 127773) - 2836 * hi
        word += 2147483647 if word < 0 else 0
        state.append(word)
    r = [x & 0xFFFFFFFF for x in state + state[:3]]  # r[31..33] = r[0..2]
    for i in range(34, 345):  # 310 outputs discarded, then the first rand()
        r.append((r[i - 31] + r[i - 3]) & 0xFFFFFFFF)
    return r[344] >> 1


def kept_by_name_hash(names: list[str], fraction: float, seed: int) -> np.ndarray:
    """Which reads ``samtools view --subsample FRACTION --subsample-seed SEED`` keeps, re-implemented in NumPy.

    The rule of DESIGN.md §2.1 as samtools 1.24 writes it (``sam_view.c``, ``khash.h``): a read is kept when
    ``(WangHash(X31Hash(name) ^ s) & 0xFFFFFF) / 2**24 < fraction``, with ``s = seed`` for seed 0 and
    ``srand(seed); s = rand()`` otherwise. Independent of htslib and of our code: an independent reference.
    """
    raw = np.array([n.encode("ascii") for n in names])  # ascii: khash's signed char equals the byte
    width = raw.dtype.itemsize
    chars = np.frombuffer(raw.tobytes(), dtype=np.uint8).reshape(len(names), width).astype(np.uint32)
    h = np.zeros(len(names), dtype=np.uint32)
    for j in range(width):  # X31: h = h * 31 + c over the name's bytes (NUL padding stops it)
        c = chars[:, j]
        h = np.where(c != 0, h * np.uint32(31) + c, h)
    s = np.uint32(glibc_rand_after_srand(seed & 0xFFFFFFFF) if seed else 0)
    k = h ^ s
    k += ~(k << np.uint32(15))
    k ^= k >> np.uint32(10)
    k += k << np.uint32(3)
    k ^= k >> np.uint32(6)
    k += ~(k << np.uint32(11))
    k ^= k >> np.uint32(16)
    return (k & np.uint32(0xFFFFFF)).astype(np.float64) / 0x1000000 < fraction


# ------------------------------------------------------------------------------------------- the reads samtools keeps


@needs_data
@pytest.mark.parametrize("src", [PE_BAM, SE_BAM, HSC_BAM], ids=["pe", "se", "hsc"])
@pytest.mark.parametrize("fraction,seed", [(0.1, 0), (0.123456789, 7), (0.5, -3), (1.0, 42)])
def test_same_reads_and_header_as_samtools_subsample(tmp_path: Path, src: Path, fraction: float, seed: int) -> None:
    ours, theirs = tmp_path / "ours.bam", tmp_path / "theirs.bam"
    subsample_bam(src, ours, fraction, seed, threads=2)
    samtools_subsample(src, theirs, fraction, seed)
    header, records = sam_text(ours)
    assert (header, records) == sam_text(theirs)  # records byte for byte, header with samtools' @CO line
    assert f"@CO\tSub-sampled fraction={fraction:g}" in header or fraction == 1.0
    assert "PN:samtools" not in header.replace(sam_text(src)[0], "")  # no @PG line of ours
    assert 0 < records.count("\n") <= sam_text(src)[1].count("\n")


@needs_data
@pytest.mark.parametrize("src", [PE_BAM, SE_BAM, HSC_BAM], ids=["pe", "se", "hsc"])
@pytest.mark.parametrize("fraction,seed", [(0.25, 0), (0.123456789, 7), (0.5, -3)])
def test_kept_reads_are_those_of_an_independent_name_hash(
    tmp_path: Path, src: Path, fraction: float, seed: int
) -> None:
    """Ours against the rule re-implemented in NumPy (not samtools against samtools): the same records, in order."""
    ours = tmp_path / "ours.bam"
    subsample_bam(src, ours, fraction, seed, threads=2)
    records = sam_text(src)[1].splitlines()
    keep = kept_by_name_hash([r.split("\t", 1)[0] for r in records], fraction, seed)
    expected = [r for r, k in zip(records, keep) if k]
    assert sam_text(ours)[1].splitlines() == expected
    assert abs(len(expected) - fraction * len(records)) < 5 * math.sqrt(len(records) * fraction * (1 - fraction))


def test_the_name_hash_reference_matches_glibc_and_hand_values() -> None:
    # glibc: srand(1); rand() is 1804289383 (the classic first value), srand(42) -> 71876166
    assert glibc_rand_after_srand(1) == 1804289383 and glibc_rand_after_srand(42) == 71876166
    # X31("a") = 97; Wang(97) by hand in 32-bit arithmetic; seed 0 leaves the hash as it is
    k = 97
    for op in ("+~<<15", "^>>10", "+<<3", "^>>6", "+~<<11", "^>>16"):
        n = int(op.lstrip("+^~<>"))
        v = (~(k << n) if "~" in op else k << n if "<<" in op else k >> n) & 0xFFFFFFFF
        k = (k + v if op[0] == "+" else k ^ v) & 0xFFFFFFFF
    expected = (k & 0xFFFFFF) / 0x1000000
    got = kept_by_name_hash(["a", "a"], expected, 0), kept_by_name_hash(["a"], np.nextafter(expected, 1), 0)
    assert not got[0].any() and got[1].all()  # kept exactly when the hash is below the fraction


@needs_data
def test_subsampling_keeps_both_mates_of_every_pair(tmp_path: Path) -> None:
    before = names(PE_BAM)
    assert set(before.values()) == {2}  # every name in the input has its two mates
    out = tmp_path / "sub.bam"
    assert run_subsample("--input", str(PE_BAM), "--fraction", "0.3", "--seed", "7", "--out", str(out)) == 0
    after = names(out)
    assert 0.25 * len(before) < len(after) < 0.35 * len(before)
    assert set(after.values()) == {2}
    with pysam.AlignmentFile(str(out)) as fh:
        firsts = Counter(r.query_name for r in fh.fetch(until_eof=True) if r.is_read1)
    assert set(firsts) == set(after) and set(firsts.values()) == {1}
    assert Path(str(out) + ".bai").exists()


@needs_data
def test_same_seed_gives_identical_bam_and_another_seed_other_reads(tmp_path: Path) -> None:
    outs = {}
    for label, seed in (("a", 11), ("b", 11), ("c", 12)):
        outs[label] = tmp_path / f"{label}.bam"
        args = ("--input", str(PE_BAM), "--fraction", "0.2", "--seed", str(seed), "--out", str(outs[label]))
        assert run_subsample(*args) == 0
    assert outs["a"].read_bytes() == outs["b"].read_bytes()
    assert Path(f"{outs['a']}.bai").read_bytes() == Path(f"{outs['b']}.bai").read_bytes()
    assert set(names(outs["a"])) != set(names(outs["c"]))


@needs_data
def test_output_bytes_do_not_depend_on_the_thread_count(tmp_path: Path) -> None:
    outs = []
    for threads in (1, 2, 4):
        out = tmp_path / f"t{threads}.bam"
        subsample_bam(PE_BAM, out, 0.4, 5, threads=threads)
        outs.append((out.read_bytes(), Path(f"{out}.bai").read_bytes()))
    assert outs[0] == outs[1] == outs[2]
    assert pysam.quickcheck(str(tmp_path / "t2.bam")) == ""
    records = sam_text(PE_BAM)[1].splitlines()  # and the reads are those of the independent name-hash rule
    keep = kept_by_name_hash([r.split("\t", 1)[0] for r in records], 0.4, 5)
    assert sam_text(tmp_path / "t4.bam")[1].splitlines() == [r for r, k in zip(records, keep) if k]


@needs_data
def test_smaller_fraction_keeps_a_subset_for_the_same_seed(tmp_path: Path) -> None:
    kept = {}
    for fraction in ("0.1", "0.4", "0.7"):
        out = tmp_path / f"{fraction}.bam"
        run_subsample("--input", str(PE_BAM), "--fraction", fraction, "--seed", "3", "--out", str(out))
        kept[fraction] = set(names(out))
    assert kept["0.1"] < kept["0.4"] < kept["0.7"]


def test_fraction_one_keeps_every_read(tmp_path: Path) -> None:
    bam = make_bam(tmp_path / "tiny.bam", READS)
    out = tmp_path / "all.bam"
    assert run_subsample("--input", str(bam), "--fraction", "1", "--seed", "0", "--out", str(out)) == 0
    assert names(out) == names(bam)


# ---------------------------------------------------------------------------------------- usable fragments per kind


@needs_data
@pytest.mark.parametrize(
    "chroms,min_mapq,keep_duplicates",
    [(["chr19"], 30, False), (["chr19", "chrM"], 0, False), (["chrM"], 30, True), (["chr19"], 255, True)],
)
def test_counts_per_kind_equal_a_read_by_read_count(chroms: list[str], min_mapq: int, keep_duplicates: bool) -> None:
    for src in (PE_BAM, SE_BAM):
        got = count_usable_by_kind(src, chroms, min_mapq, keep_duplicates, threads=2)
        assert got == usable_by_python(src, chroms, min_mapq, keep_duplicates)
    pe, se = count_usable_by_kind(PE_BAM, ["chr19"], 30), count_usable_by_kind(SE_BAM, ["chr19"], 30)
    assert pe["paired_end"] > 0 == pe["single_end"] and se["single_end"] > 0 == se["paired_end"]
    assert count_usable_by_kind(PE_BAM, ["chr19"], 0)["paired_end"] > pe["paired_end"]


@needs_data
def test_counts_equal_samtools_view_c_with_the_documented_flags() -> None:
    # proper pair + first read (0x1|0x2|0x40 = 67), none of unmapped/mate unmapped/secondary/QC fail/duplicate/
    # supplementary (0x4|0x8|0x100|0x200|0x400|0x800 = 3852); single-end: not paired (0x1) nor those but 0x8 (3845)
    for src in (PE_BAM, SE_BAM):
        pe = int(pysam.view("-c", "-f", "67", "-F", "3852", "-q", "30", str(src), "chr19"))
        se = int(pysam.view("-c", "-F", "3845", "-q", "30", str(src), "chr19"))
        assert count_usable_by_kind(src, ["chr19"], 30) == {"paired_end": pe, "single_end": se}
        assert count_usable_fragments(src, ["chr19"]) == pe + se > 0


@pytest.mark.parametrize("min_mapq,keep_duplicates", [(30, False), (30, True), (0, False), (11, True)])
def test_counts_per_kind_on_every_kind_of_flag(tmp_path: Path, min_mapq: int, keep_duplicates: bool) -> None:
    extra = [
        dict(name="mu", flag=0x1 | 0x2 | 0x8 | 0x40, chrom="chr1", pos=900),  # mate unmapped
        dict(name="pp2", flag=0x1 | 0x2 | 0x40 | 0x400, chrom="chr2", pos=100, mate_pos=200),  # duplicate pair
        dict(name="pp2", flag=0x1 | 0x2 | 0x80 | 0x400 | 0x10, chrom="chr2", pos=200, mate_pos=100),
    ]
    bam = make_bam(tmp_path / "flags.bam", READS + extra)
    for chroms in (["chr1"], ["chr1", "chr2"], ["chrM", "chr2"]):
        got = count_usable_by_kind(bam, chroms, min_mapq, keep_duplicates)
        assert got == usable_by_python(bam, chroms, min_mapq, keep_duplicates), chroms
    # chr1 with the defaults: plus, minus, minus_del, plus_softclip, mapq255 and the proper pair pp
    assert count_usable_by_kind(bam, ["chr1"]) == {"paired_end": 1, "single_end": 5}
    assert count_usable_by_kind(bam, ["chr1"], keep_duplicates=True) == {"paired_end": 1, "single_end": 6}  # + dup
    assert count_usable_by_kind(bam, ["chr2"], keep_duplicates=True)["paired_end"] == 1  # the duplicate pair pp2
    assert count_usable_by_kind(bam, []) == {"paired_end": 0, "single_end": 0}


def test_a_kind_left_out_is_not_counted(tmp_path: Path) -> None:
    bam = make_bam(tmp_path / "tiny.bam", READS)
    assert count_usable_by_kind(bam, ["chr1"], kinds=("paired_end",)) == {"paired_end": 1, "single_end": 0}
    assert count_usable_by_kind(bam, ["chr1"], kinds=("single_end",)) == {"paired_end": 0, "single_end": 5}


# ------------------------------------------------------------------------------------------------ target depths


@needs_data
def test_target_depth_is_hit_within_binomial_tolerance_and_recorded(tmp_path: Path) -> None:
    available = usable_by_python(PE_BAM, ["chr19"])["paired_end"]
    assert count_usable_fragments(PE_BAM, ["chr19"]) == available
    target = 3000
    sd = math.sqrt(available * (target / available) * (1 - target / available))
    for rep in range(3):  # replicates = seed + rep
        out = tmp_path / f"3000.rep{rep}.bam"
        args = ("--input", str(PE_BAM), "--fragments", str(target), "--seed", str(42 + rep), "--sizes", str(HG38))
        assert run_subsample(*args, "--out", str(out)) == 0
        meta = json.loads(Path(str(out) + ".json").read_text())
        assert meta["target"] == target and meta["seed"] == 42 + rep and meta["available"] == available
        assert meta["fraction"] == pytest.approx(target / available) and meta["paired"] is True
        assert meta["achieved"] == usable_by_python(out, ["chr19"])["paired_end"]
        assert abs(meta["achieved"] - target) <= TOLERANCE_SD * sd


@needs_data
def test_single_end_bam_counts_one_read_as_one_fragment(tmp_path: Path) -> None:
    available = usable_by_python(SE_BAM, ["chr19"])["single_end"]
    out = tmp_path / "se.bam"
    assert run_subsample("--input", str(SE_BAM), "--fragments", "1000", "--seed", "1", "--out", str(out)) == 0
    meta = json.loads(Path(str(out) + ".json").read_text())
    assert meta["available"] == available and meta["paired"] is False
    assert meta["achieved"] == usable_by_python(out, ["chr19"])["single_end"]
    assert abs(meta["achieved"] - 1000) <= TOLERANCE_SD * math.sqrt(1000 * (1 - 1000 / available))


@needs_data
def test_asking_for_more_fragments_than_exist_names_both_numbers(tmp_path: Path) -> None:
    available = count_usable_fragments(PE_BAM, ["chr19"])
    out = tmp_path / "too_deep.bam"
    with pytest.raises(
        InputError, match=rf"dupmarked\.bam: asked for 1,000,000 fragments but only {available:,} usable"
    ):
        subsample_bam_to_depth(PE_BAM, out, 1, fragments=1_000_000)
    assert not out.exists() and list(tmp_path.iterdir()) == []


@needs_data
def test_cli_too_deep_exits_2_and_leaves_no_output(tmp_path: Path, capsys) -> None:
    out = tmp_path / "res" / "sub.bam"
    assert main(["subsample", "--input", str(PE_BAM), "--fragments", "99999999", "--seed", "1", "--out", str(out)]) == 2
    assert "99,999,999" in capsys.readouterr().err
    assert not out.exists() and not Path(str(out) + ".bai").exists() and not Path(str(out) + ".json").exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


@pytest.mark.parametrize("fraction", ["0", "-0.5", "1.5", "nan"])
def test_fraction_outside_zero_one_is_refused(tmp_path: Path, fraction: str, capsys) -> None:
    bam = make_bam(tmp_path / "tiny.bam", READS)
    out = tmp_path / "o.bam"
    assert run_subsample("--input", str(bam), "--fraction", fraction, "--seed", "0", "--out", str(out)) == 2
    assert re.search(r"--fraction .*\(0, 1\]", capsys.readouterr().err)
    assert not out.exists()
    with pytest.raises(InputError, match=r"--fraction .*\(0, 1\]"):
        subsample_bam(bam, out, float(fraction), 0)


def test_subsampling_an_empty_bam_is_refused(tmp_path: Path) -> None:
    bam = make_bam(tmp_path / "empty.bam", [])
    with pytest.raises(InputError, match=r"empty\.bam: no mapped reads"):
        subsample_bam_to_depth(bam, tmp_path / "o.bam", 0, fragments=10, sizes_path=write_sizes(tmp_path / "g.sizes"))


def test_subsampling_a_bam_without_index_is_refused(tmp_path: Path) -> None:
    bam = make_bam(tmp_path / "noidx.bam", READS, index=False)
    with pytest.raises(InputError, match=r"noidx\.bam: BAM has no index"):
        subsample_bam_to_depth(bam, tmp_path / "o.bam", 0, fragments=1)


def test_fraction_for_target_divides_by_available() -> None:
    assert fraction_for(250, 1000, "x.bam") == 0.25
    with pytest.raises(InputError, match=r"x\.bam: asked for 1,001 fragments but only 1,000"):
        fraction_for(1001, 1000, "x.bam")


def test_usable_chroms_prefer_the_sizes_file_and_drop_chrm_and_unplaced(tmp_path: Path) -> None:
    sizes = write_sizes(tmp_path / "g.sizes")  # chr1, chr2, chrM, chrUn_gl000220
    assert usable_chroms(sizes, {"chr9": 10}) == {"chr1": 1000, "chr2": 500}
    assert usable_chroms(None, {"chr9": 10, "chrM": 5}) == {"chr9": 10}
    assert usable_chroms(None, None) is None


def test_is_bam_reads_the_magic_not_the_name(tmp_path: Path) -> None:
    bam = make_bam(tmp_path / "tiny.bam", READS)
    renamed = tmp_path / "reads.tsv.gz"
    shutil.copy(bam, renamed)
    gz = tmp_path / "frags.bam"
    gz.write_bytes(gzip.compress(b"chr1\t1\t2\tA\t1\n"))
    text = tmp_path / "text.bam"
    text.write_text("@HD\tVN:1.6\n")
    assert is_bam(bam) and is_bam(renamed)
    assert not is_bam(gz) and not is_bam(text)


# ------------------------------------------------------------------------------------------- counts made once


@needs_data
def test_counts_made_once_are_reused_and_give_the_same_subsample(tmp_path: Path, caplog) -> None:
    counts = tmp_path / "usable.json"
    rec = count_bam(PE_BAM, counts, HG38)
    assert rec == json.loads(counts.read_text())
    assert rec["paired_end"] == usable_by_python(PE_BAM, ["chr19"])["paired_end"] == rec["available"]
    assert rec["single_end"] == 0
    assert rec["chroms"] == ["chr19"] and rec["min_mapq"] == 30 and rec["source"]["bytes"] == PE_BAM.stat().st_size
    depth = {"seed": 7, "fragments": 3000, "sizes_path": HG38}
    fresh = subsample_bam_to_depth(PE_BAM, tmp_path / "fresh.bam", **depth)
    caplog.clear()
    with caplog.at_level("INFO"):
        reused = subsample_bam_to_depth(PE_BAM, tmp_path / "reused.bam", **depth, counts_path=counts)
    assert "fragment counts reused" in caplog.text
    assert fresh == reused == json.loads((tmp_path / "reused.bam.json").read_text())
    assert (tmp_path / "fresh.bam").read_bytes() == (tmp_path / "reused.bam").read_bytes()


@needs_data
def test_count_cli_writes_the_counts_per_kind(tmp_path: Path) -> None:
    for src, kind in ((PE_BAM, "paired_end"), (SE_BAM, "single_end")):
        out = tmp_path / f"{src.stem}.json"
        assert run_count("--input", str(src), "--threads", "2", "--out", str(out)) == 0
        rec = json.loads(out.read_text())
        assert rec["chroms"] == ["chr19"]  # the BAM's own chromosomes without chrM
        want = usable_by_python(src, ["chr19"])
        assert {k: rec[k] for k in want} == want and rec["available"] == want[kind] > 0


@needs_data
def test_counts_for_other_settings_are_not_reused(tmp_path: Path, caplog) -> None:
    counts = tmp_path / "usable.json"
    assert count_bam(PE_BAM, counts, HG38, min_mapq=10)["min_mapq"] == 10
    depth = {"seed": 7, "fragments": 3000, "sizes_path": HG38, "counts_path": counts}
    with caplog.at_level("WARNING"):
        meta = subsample_bam_to_depth(PE_BAM, tmp_path / "x.bam", **depth)
    assert "made for another min_mapq" in caplog.text
    assert meta["available"] == usable_by_python(PE_BAM, ["chr19"])["paired_end"]
    counts.write_text("{not json")
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert subsample_bam_to_depth(PE_BAM, tmp_path / "y.bam", **depth)["available"] == meta["available"]
    assert "unreadable fragment counts" in caplog.text


# -------------------------------------------------------------------------------------------- damaged inputs


def damaged_copies(src: Path, where: Path) -> dict[str, Path]:
    """Broken copies of ``src``, each beside a copy of the good index (so only the data are wrong)."""
    raw = src.read_bytes()
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF  # one byte inside a block: the inflate (or the CRC) fails
    cases = {
        "truncated.bam": raw[: len(raw) // 2],  # cut inside a block
        "no_eof.bam": raw[:-28],  # cut at a block boundary: samtools alone reads it with a warning only
        "plain_gzip.bam": gzip.compress(b"BAM\x01" + os.urandom(1000)),  # gzip but not BGZF
        "sam_text.bam": b"@HD\tVN:1.6\n" * 100,  # samtools view would read it as SAM
        "flipped.bam": bytes(flipped),
    }
    paths = {}
    for name, content in cases.items():
        path = where / name
        path.write_bytes(content)
        shutil.copy(f"{src}.bai", f"{path}.bai")
        paths[name] = path
    return paths


@needs_data
def test_damaged_bams_fail_with_the_file_name_and_leave_no_output(tmp_path: Path, capsys) -> None:
    for name, path in damaged_copies(PE_BAM, tmp_path).items():
        out = tmp_path / "out" / f"sub.{name}"
        with pytest.raises(InputError, match=name):
            subsample_bam(path, out, 0.3, 1, threads=2)
        with pytest.raises(InputError, match=name):
            count_usable_by_kind(path, ["chr19", "chrM"], threads=2)
        assert run_subsample("--input", str(path), "--fraction", "0.3", "--seed", "1", "--out", str(out)) == 2
        assert name in capsys.readouterr().err
        assert run_count("--input", str(path), "--out", str(tmp_path / "out" / f"{name}.json")) == 2
        assert name in capsys.readouterr().err
        assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


# ------------------------------------------------------------------------------------------- fragments files


def test_fragments_subsample_keeps_exactly_n_input_lines_deterministically(tmp_path: Path) -> None:
    df = fragment_table(300)
    src = write_plain(tmp_path / "f.tsv", df)
    all_lines = set(df.to_csv(sep="\t", header=False, index=False).splitlines())
    got = {}
    for label, seed in (("a", 5), ("b", 5), ("c", 6)):
        out = tmp_path / f"{label}.tsv.gz"
        assert subsample_fragments(src, out, 100, seed, chunk_rows=64) == 100
        got[label] = lines_of(out)
        assert Path(str(out) + ".tbi").exists()
    assert len(got["a"]) == 100 and set(got["a"]) <= all_lines
    assert got["a"] == got["b"] and got["a"] != got["c"]


def test_fragments_subsample_restricted_to_selected_chromosomes(tmp_path: Path) -> None:
    src = write_plain(tmp_path / "f.tsv", fragment_table(300))
    out = tmp_path / "chr2.tsv.gz"
    subsample_fragments(src, out, 150, 1, chroms={"chr2": FRAGMENT_SIZES["chr2"]})
    lines = lines_of(out)
    assert len(lines) == 150 and all(line.startswith("chr2\t") for line in lines)  # all 150 chr2 fragments


def test_sequential_chunk_draws_are_uniform_and_exact() -> None:
    """Over many seeds every row is kept with probability n / m, and each draw keeps exactly n rows."""
    m, n, chunk, trials = 20, 5, 7, 4000
    kept = np.zeros(m)
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        pool, todo, rows = m, n, []
        for first in range(0, m, chunk):
            size = min(chunk, m - first)
            pick = draw_per_chunk(rng, size, pool, todo)
            rows.extend(first + pick)
            pool, todo = pool - size, todo - pick.size
        assert len(rows) == n
        kept[rows] += 1
    freq = kept / trials
    sd = np.sqrt(0.25 * 0.75 / trials)
    assert np.all(np.abs(freq - n / m) < 5 * sd)


def test_subsample_cli_on_fragments_writes_tbi_and_sidecar(tmp_path: Path) -> None:
    src = write_plain(tmp_path / "f.tsv", fragment_table(300))
    sizes = write_sizes(tmp_path / "g.sizes", {**FRAGMENT_SIZES, "chrM": 16_569})
    out = tmp_path / "sub.tsv.gz"
    args = ("--input", str(src), "--fragments", "120", "--seed", "9", "--out", str(out), "--sizes", str(sizes))
    assert run_subsample(*args) == 0
    meta = json.loads(Path(str(out) + ".json").read_text())
    assert meta == {
        "target": 120,
        "fraction": 120 / 450,
        "achieved": 120,
        "seed": 9,
        "available": 450,
        "source": str(src),
        "regions": None,
    }
    assert len(lines_of(out)) == 120 and Path(str(out) + ".tbi").exists()
    # --fraction rounds to a whole number of fragments
    out2 = tmp_path / "half.tsv.gz"
    assert run_subsample("--input", str(src), "--fraction", "0.5", "--seed", "9", "--out", str(out2)) == 0
    assert len(lines_of(out2)) == 225


def test_subsample_cli_too_many_fragments_exits_2_naming_both_numbers(tmp_path: Path, capsys) -> None:
    src = write_plain(tmp_path / "f.tsv", fragment_table(300))
    out = tmp_path / "res" / "sub.tsv.gz"
    assert run_subsample("--input", str(src), "--fragments", "5000", "--seed", "1", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "f.tsv" in err and "5,000" in err and "450" in err
    assert not out.exists() and not Path(str(out) + ".tbi").exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_fragments_subsample_counts_and_draws_inside_the_target_regions(shared_data, tmp_path):
    """Subsample --target-regions on a fragments file: exactly N fragments, all starting inside the regions."""
    import json

    import pandas as pd

    from atacdenoise.cli import run_command

    frags = shared_data / "immune" / "TCD8EM_U_1004_b.fragments.tsv.gz"
    regions = tmp_path / "r.bed"
    regions.write_text("chr1\t24000000\t25000000\nchr21\t28000000\t29000000\n")
    out = tmp_path / "s.tsv.gz"
    sizes = shared_data / "genomes/hg38.chrom.sizes"
    argv = ["subsample", "--input", str(frags), "--fragments", "3000", "--seed", "7", "--sizes", str(sizes)]
    assert run_command([*argv, "--target-regions", str(regions), "--out", str(out)]) == 0
    df = pd.read_csv(frags, sep="\t", header=None, comment="#")
    inside = ((df[0] == "chr1") & df[1].between(24_000_000, 24_999_999)) | (
        (df[0] == "chr21") & df[1].between(28_000_000, 28_999_999)
    )
    got = pd.read_csv(out, sep="\t", header=None, comment="#")
    meta = json.loads((tmp_path / "s.tsv.gz.json").read_text())
    assert len(got) == meta["achieved"] == 3000 and meta["available"] == int(inside.sum())
    key = [0, 1, 2]
    merged = got[key].merge(df.loc[inside, key], how="left", indicator=True)
    assert (merged["_merge"] == "both").all()  # every drawn fragment is one of the file's inside the regions
