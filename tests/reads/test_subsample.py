"""BAM subsampling: mates together, seeded determinism, depth within binomial tolerance, errors."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pysam
import pytest

from atacdenoise.cli import build_parser, main
from atacdenoise.commands import subsample as subsample_cmd
from atacdenoise.errors import InputError
from atacdenoise.io.bam import count_usable_fragments
from atacdenoise.reads.subsample import TOLERANCE_SD, fraction_for
from builders import READS, make_bam, write_sizes
from conftest import SHARED_DATA

DATA = SHARED_DATA
PE_BAM = DATA / "encode" / "ENCSR356KRQ_pe_1in400.chr19_chrM.dupmarked.bam"
SE_BAM = DATA / "encode" / "ENCSR889WQX_se_1in400.chr19_chrM.nodup.bam"
HG38 = DATA / "genomes" / "hg38.chrom.sizes"

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} (real data beside the checkout) not found")


def run_subsample(*argv: str) -> int:
    args = build_parser(only="subsample").parse_args(["subsample", *argv])
    return subsample_cmd.run(args)


def names(bam: Path) -> Counter:
    with pysam.AlignmentFile(str(bam)) as fh:
        return Counter(r.query_name for r in fh.fetch(until_eof=True))


def usable_by_python(bam: Path, chrom: str, min_mapq: int = 30) -> int:
    """Usable fragments counted read by read: proper-pair first reads passing every filter (independent of htslib -c)."""
    n = 0
    with pysam.AlignmentFile(str(bam)) as fh:
        for r in fh.fetch(chrom):
            if r.flag & (0x4 | 0x8 | 0x100 | 0x200 | 0x400 | 0x800) or r.mapping_quality < min_mapq:
                continue
            if (r.is_paired and r.is_proper_pair and r.is_read1) or not r.is_paired:
                n += 1
    return n


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
        assert (
            run_subsample("--input", str(PE_BAM), "--fraction", "0.2", "--seed", str(seed), "--out", str(outs[label]))
            == 0
        )
    assert outs["a"].read_bytes() == outs["b"].read_bytes()
    assert set(names(outs["a"])) != set(names(outs["c"]))


@needs_data
def test_smaller_fraction_keeps_a_subset_for_the_same_seed(tmp_path: Path) -> None:
    small, large = tmp_path / "s.bam", tmp_path / "l.bam"
    run_subsample("--input", str(PE_BAM), "--fraction", "0.1", "--seed", "3", "--out", str(small))
    run_subsample("--input", str(PE_BAM), "--fraction", "0.4", "--seed", "3", "--out", str(large))
    assert set(names(small)) < set(names(large))


@needs_data
def test_target_depth_is_hit_within_binomial_tolerance_and_recorded(tmp_path: Path) -> None:
    available = usable_by_python(PE_BAM, "chr19")
    assert count_usable_fragments(PE_BAM, ["chr19"]) == available
    target = 3000
    sd = math.sqrt(available * (target / available) * (1 - target / available))
    for rep in range(3):  # replicates = seed + rep
        out = tmp_path / f"3000.rep{rep}.bam"
        assert (
            run_subsample(
                "--input",
                str(PE_BAM),
                "--fragments",
                str(target),
                "--seed",
                str(42 + rep),
                "--out",
                str(out),
                "--sizes",
                str(HG38),
            )
            == 0
        )
        meta = json.loads(Path(str(out) + ".json").read_text())
        assert meta["target"] == target and meta["seed"] == 42 + rep and meta["available"] == available
        assert meta["fraction"] == pytest.approx(target / available)
        assert meta["achieved"] == usable_by_python(out, "chr19")
        assert abs(meta["achieved"] - target) <= TOLERANCE_SD * sd


@needs_data
def test_single_end_bam_counts_one_read_as_one_fragment(tmp_path: Path) -> None:
    available = usable_by_python(SE_BAM, "chr19")
    out = tmp_path / "se.bam"
    assert run_subsample("--input", str(SE_BAM), "--fragments", "1000", "--seed", "1", "--out", str(out)) == 0
    meta = json.loads(Path(str(out) + ".json").read_text())
    assert meta["available"] == available and meta["paired"] is False
    assert meta["achieved"] == usable_by_python(out, "chr19")
    assert abs(meta["achieved"] - 1000) <= TOLERANCE_SD * math.sqrt(1000 * (1 - 1000 / available))


@needs_data
def test_asking_for_more_fragments_than_exist_names_both_numbers(tmp_path: Path) -> None:
    available = count_usable_fragments(PE_BAM, ["chr19"])
    out = tmp_path / "too_deep.bam"
    with pytest.raises(
        InputError, match=rf"dupmarked\.bam: asked for 1,000,000 fragments but only {available:,} usable"
    ):
        run_subsample("--input", str(PE_BAM), "--fragments", "1000000", "--seed", "1", "--out", str(out))
    assert not out.exists()


@needs_data
def test_cli_too_deep_exits_2_and_leaves_no_output(tmp_path: Path, capsys) -> None:
    out = tmp_path / "res" / "sub.bam"
    assert main(["subsample", "--input", str(PE_BAM), "--fragments", "99999999", "--seed", "1", "--out", str(out)]) == 2
    assert "99,999,999" in capsys.readouterr().err
    assert not out.exists() and not Path(str(out) + ".bai").exists() and not Path(str(out) + ".json").exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_fraction_one_keeps_every_read(tmp_path: Path) -> None:
    bam = make_bam(tmp_path / "tiny.bam", READS)
    out = tmp_path / "all.bam"
    assert run_subsample("--input", str(bam), "--fraction", "1", "--seed", "0", "--out", str(out)) == 0
    assert names(out) == names(bam)


@pytest.mark.parametrize("fraction", ["0", "-0.5", "1.5", "nan"])
def test_fraction_outside_zero_one_is_refused(tmp_path: Path, fraction: str) -> None:
    bam = make_bam(tmp_path / "tiny.bam", READS)
    with pytest.raises(InputError, match=r"--fraction .*\(0, 1\]"):
        run_subsample("--input", str(bam), "--fraction", fraction, "--seed", "0", "--out", str(tmp_path / "o.bam"))


def test_subsampling_an_empty_bam_is_refused(tmp_path: Path) -> None:
    bam = make_bam(tmp_path / "empty.bam", [])
    with pytest.raises(InputError, match=r"empty\.bam: no mapped reads"):
        run_subsample(
            "--input",
            str(bam),
            "--fragments",
            "10",
            "--seed",
            "0",
            "--out",
            str(tmp_path / "o.bam"),
            "--sizes",
            str(write_sizes(tmp_path / "g.sizes")),
        )


def test_subsampling_a_bam_without_index_is_refused(tmp_path: Path) -> None:
    bam = make_bam(tmp_path / "noidx.bam", READS, index=False)
    with pytest.raises(InputError, match=r"noidx\.bam: BAM has no index"):
        run_subsample("--input", str(bam), "--fragments", "1", "--seed", "0", "--out", str(tmp_path / "o.bam"))


def test_fraction_for_target_divides_by_available() -> None:
    assert fraction_for(250, 1000, "x.bam") == 0.25
    with pytest.raises(InputError, match=r"x\.bam: asked for 1,001 fragments but only 1,000"):
        fraction_for(1001, 1000, "x.bam")


def run_count(*argv: str) -> int:
    args = build_parser(only="count").parse_args(["count", *argv])
    from atacdenoise.commands import count as count_cmd

    return count_cmd.run(args)


@needs_data
def test_counts_made_once_are_reused_and_give_the_same_subsample(tmp_path: Path, caplog) -> None:
    counts = tmp_path / "usable.json"
    assert run_count("--input", str(PE_BAM), "--sizes", str(HG38), "--out", str(counts)) == 0
    rec = json.loads(counts.read_text())
    assert rec["paired_end"] == usable_by_python(PE_BAM, "chr19") == rec["available"] and rec["single_end"] == 0
    assert rec["chroms"] == ["chr19"] and rec["min_mapq"] == 30 and rec["source"]["bytes"] == PE_BAM.stat().st_size
    common = ("--input", str(PE_BAM), "--fragments", "3000", "--seed", "7", "--sizes", str(HG38))
    assert run_subsample(*common, "--out", str(tmp_path / "fresh.bam")) == 0
    caplog.clear()
    with caplog.at_level("INFO"):
        assert run_subsample(*common, "--counts", str(counts), "--out", str(tmp_path / "reused.bam")) == 0
    assert "fragment counts reused" in caplog.text
    fresh = json.loads((tmp_path / "fresh.bam.json").read_text())
    reused = json.loads((tmp_path / "reused.bam.json").read_text())
    assert fresh == reused  # same fraction, reads, achieved count (its single-end pass skipped: the input has none)
    assert (tmp_path / "fresh.bam").read_bytes() == (tmp_path / "reused.bam").read_bytes()


@needs_data
def test_counts_for_other_settings_are_not_reused(tmp_path: Path, caplog) -> None:
    counts = tmp_path / "usable.json"
    assert run_count("--input", str(PE_BAM), "--sizes", str(HG38), "--min-mapq", "10", "--out", str(counts)) == 0
    with caplog.at_level("WARNING"):
        assert (
            run_subsample(
                "--input",
                str(PE_BAM),
                "--fragments",
                "3000",
                "--seed",
                "7",
                "--sizes",
                str(HG38),
                "--counts",
                str(counts),
                "--out",
                str(tmp_path / "x.bam"),
            )
            == 0
        )
    assert "made for another min_mapq" in caplog.text
    assert json.loads((tmp_path / "x.bam.json").read_text())["available"] == usable_by_python(PE_BAM, "chr19")
    counts.write_text("{not json")
    with caplog.at_level("WARNING"):
        assert (
            run_subsample(
                "--input",
                str(PE_BAM),
                "--fragments",
                "3000",
                "--seed",
                "7",
                "--sizes",
                str(HG38),
                "--counts",
                str(counts),
                "--out",
                str(tmp_path / "y.bam"),
            )
            == 0
        )
    assert "unreadable fragment counts" in caplog.text
