"""Coverage stage: golden HSC track, real paired-end and single-end ENCODE BAMs, and bad inputs."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pysam
import pytest
from test_coverage_reference import EDGE, PE_REGION, SE_REGION, box, deeptools_cut_counts, needs_deeptools

from atacdenoise.cli import main, run_command
from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import read_bigwig
from atacdenoise.reads import cutsites as cs
from builders import READS, make_bam, write_sizes
from conftest import SHARED_DATA

DATA = SHARED_DATA
HSC_5M = DATA / "hsc" / "HSC_5M.chr1_chr2.bam"
HSC_PUBLISHED = DATA / "hsc" / "HSC_5M.published_coverage.chr1_chr2.bw"
HSC_SIZES = DATA / "hsc" / "hg19_first10mb.chr1_chr2.sizes"
PE_BAM = DATA / "encode" / "ENCSR356KRQ_pe_1in400.chr19_chrM.dupmarked.bam"
SE_BAM = DATA / "encode" / "ENCSR889WQX_se_1in400.chr19_chrM.nodup.bam"
HG38 = DATA / "genomes" / "hg38.chrom.sizes"
MM10 = DATA / "genomes" / "mm10_chr19_chrM.chrom.sizes"

#: the HSC_5M BAM fixture holds no cut sites in the last 16,000 bp of each chromosome
#: (the published track does: 4 on chr1, 17 on chr2); see test_hsc_bam_fixture_lacks_the_last_16kb
HSC_TAIL = 16_000

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} (real data beside the checkout) not found")


def run_coverage(*argv: str) -> int:
    """Run the coverage command in-process without resetting logging (so caplog sees the records)."""
    return run_command(["coverage", *argv])


@needs_data
def test_hsc_5m_coverage_reproduces_published_track_base_for_base(tmp_path: Path) -> None:
    """Default settings (MAPQ 30, +4/-5, 201 bp box) on the HSC 5M cut-site BAM give the fixture's track.

    The BAM's reads are single-end, MAPQ 60, flags 0/16: the default filters keep them all. Every base is
    compared; the last 16,100 bp of each chromosome (16,000 bp with no reads in the BAM, plus the box's
    100-bp reach) may only be lower than published, by the missing cut sites.
    """
    out = tmp_path / "hsc5m.bw"
    assert (
        main(["coverage", "--input", str(HSC_5M), "--kind", "bam", "--sizes", str(HSC_SIZES), "--out", str(out)]) == 0
    )
    for chrom in ("chr1", "chr2"):
        ours, published = read_bigwig(out, chrom), read_bigwig(HSC_PUBLISHED, chrom)
        assert ours.size == published.size == 10_000_000
        edge = ours.size - HSC_TAIL - 100
        assert published[:edge].sum() > 1e6
        np.testing.assert_array_equal(ours[:edge], published[:edge])
        assert np.all(ours[edge:] <= published[edge:])
    meta = json.loads(Path(str(out) + ".json").read_text())
    assert meta["n_cut_sites"] == {"chr1": 13_384, "chr2": 17_215}
    assert meta["filters"]["kept"] == 30_599 and meta["filters"]["paired"] is False


@needs_data
def test_hsc_bam_fixture_lacks_the_last_16kb(tmp_path: Path) -> None:
    """Why the golden comparison stops 16,100 bp before each end: a gap in the BAM, not in the code."""
    bam = pysam.AlignmentFile(str(HSC_5M))
    for chrom in ("chr1", "chr2"):
        pos, _ = cs.bam_cut_sites(bam, chrom, 10_000_000)
        assert pos.max() < 10_000_000 - HSC_TAIL
        assert read_bigwig(HSC_PUBLISHED, chrom, 10_000_000 - HSC_TAIL + 100, 10_000_000).any()
    reads = [r for r in bam.fetch() if r.mapping_quality >= 30 and not r.flag & ~0x10]
    assert len(reads) == bam.mapped == 30_599  # all single-end, MAPQ >= 30, no filter flags


def assert_equals_deeptools_in_a_box(out: Path, bam: Path, region: tuple[str, int, int], paired: bool) -> None:
    """Check the default track == deepTools' +4/-5 cut sites (test_coverage_reference) in a 201-bp box, per base."""
    chrom, lo, hi = region
    reference = box(deeptools_cut_counts(bam, region, paired))
    inner = slice(EDGE + 100, -EDGE - 100)
    np.testing.assert_array_equal(read_bigwig(out, chrom, lo, hi)[inner], reference[inner])
    assert reference[inner].max() >= 2


@needs_data
@needs_deeptools
def test_paired_end_encode_bam_logs_filter_counts_and_excludes_chrM(tmp_path: Path, caplog) -> None:
    """Real PE reads: multimappers (low MAPQ) dropped, chrM left out, counts logged; chr19 equals deepTools per base."""
    out = tmp_path / "pe.bw"
    with caplog.at_level(logging.INFO):
        assert run_coverage("--input", str(PE_BAM), "--kind", "bam", "--sizes", str(HG38), "--out", str(out)) == 0
    low_mapq = int(re.search(r"low_mapq ([\d,]+)", caplog.text).group(1).replace(",", ""))
    other = int(re.search(r"([\d,]+) mapped reads on chromosomes not used", caplog.text).group(1).replace(",", ""))
    assert low_mapq > 1000  # bowtie2 -k 4 multimappers
    assert other == pysam.AlignmentFile(str(PE_BAM)).count("chrM")  # every chrM read left out
    assert "duplicate 0" in caplog.text  # this 'dupmarked' file carries no duplicate flags (checked below)
    meta = json.loads(Path(str(out) + ".json").read_text())
    assert "chrM" not in meta["chroms"] and meta["filters"]["paired"] is True
    assert meta["n_cut_sites"]["chr19"] == meta["filters"]["kept"] > 10_000
    assert not read_bigwig(out, "chrM").any()
    assert_equals_deeptools_in_a_box(out, PE_BAM, PE_REGION, paired=True)


@needs_data
@needs_deeptools
def test_duplicates_marked_by_samtools_markdup_are_counted_and_dropped(tmp_path: Path, caplog) -> None:
    """The shipped PE BAM has no 0x400 flags; mark duplicates with samtools (via pysam) and check they are dropped."""
    assert pysam.view("-c", "-f", "1024", str(PE_BAM)).strip() == "0"
    pysam.sort("-n", "-o", str(tmp_path / "n.bam"), str(PE_BAM))
    pysam.fixmate("-m", str(tmp_path / "n.bam"), str(tmp_path / "fm.bam"))
    pysam.sort("-o", str(tmp_path / "s.bam"), str(tmp_path / "fm.bam"))
    marked = tmp_path / "md.bam"
    pysam.markdup(str(tmp_path / "s.bam"), str(marked))
    pysam.index(str(marked))
    n_dup = int(pysam.view("-c", "-f", "1024", "-q", "0", str(marked), "chr19"))
    assert n_dup > 0
    out = tmp_path / "md.bw"
    with caplog.at_level(logging.INFO):
        run_coverage("--input", str(marked), "--kind", "bam", "--sizes", str(HG38), "--out", str(out))
    dropped = int(re.search(r"duplicate ([\d,]+)", caplog.text).group(1).replace(",", ""))
    assert 0 < dropped <= n_dup
    meta = json.loads(Path(str(out) + ".json").read_text())
    assert meta["filters"]["dropped_duplicate"] == dropped and meta["filters"]["dropped_low_mapq"] > 0
    # which reads were dropped: deepTools with --samFlagExclude 0x400 (among its filters) agrees at every base
    assert_equals_deeptools_in_a_box(out, marked, PE_REGION, paired=True)


@needs_data
@needs_deeptools
def test_single_end_encode_bam_excludes_chrM_and_equals_deeptools(tmp_path: Path, caplog) -> None:
    """Real SE reads: low MAPQ dropped, chrM left out; chr19 equals deepTools' cut sites in a 201-bp box per base."""
    out = tmp_path / "se.bw"
    with caplog.at_level(logging.INFO):
        assert run_coverage("--input", str(SE_BAM), "--kind", "bam", "--sizes", str(MM10), "--out", str(out)) == 0
    assert re.search(r"low_mapq [1-9]", caplog.text)
    meta = json.loads(Path(str(out) + ".json").read_text())
    assert meta["chroms"] == ["chr19"] and meta["filters"]["paired"] is False
    assert meta["n_cut_sites"]["chr19"] == meta["filters"]["kept"] > 1000
    assert not read_bigwig(out, "chrM").any()
    assert_equals_deeptools_in_a_box(out, SE_BAM, SE_REGION, paired=False)


@needs_data
def test_bigwig_input_is_checked_and_copied_with_declared_settings(tmp_path: Path) -> None:
    out = tmp_path / "given.bw"
    assert (
        main(
            [
                "coverage",
                "--input",
                str(HSC_PUBLISHED),
                "--kind",
                "bigwig",
                "--sizes",
                str(HSC_SIZES),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_bytes() == HSC_PUBLISHED.read_bytes()
    meta = json.loads(Path(str(out) + ".json").read_text())
    assert meta["kind"] == "bigwig" and meta["smooth_bp"] == 200 and meta["declared"] is True
    # a bigWig of another genome is refused
    assert (
        main(
            [
                "coverage",
                "--input",
                str(HSC_PUBLISHED),
                "--kind",
                "bigwig",
                "--sizes",
                str(MM10),
                "--out",
                str(tmp_path / "bad.bw"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "bad.bw").exists()


# ---------------------------------------------------------------- bad inputs


def _cov(tmp_path: Path, bam: Path, sizes: Path) -> None:
    run_coverage("--input", str(bam), "--kind", "bam", "--sizes", str(sizes), "--out", str(tmp_path / "x.bw"))


def test_chromosome_names_without_chr_prefix_are_refused_with_a_hint(tmp_path: Path) -> None:
    sizes = {"1": 1000, "2": 500}
    reads = [dict(name="a", flag=0, chrom="1", pos=10)]
    bam = make_bam(tmp_path / "ensembl.bam", reads, sizes=sizes)
    with pytest.raises(InputError, match=r"ensembl\.bam.*'chr' prefix"):
        _cov(tmp_path, bam, write_sizes(tmp_path / "ucsc.sizes", {"chr1": 1000, "chr2": 500}))


def test_chromosome_lengths_of_another_assembly_are_refused(tmp_path: Path) -> None:
    bam = make_bam(tmp_path / "a.bam", READS)
    with pytest.raises(InputError, match=r"a\.bam: chromosome chr1 is 1,000 bp long there but 2,000"):
        _cov(tmp_path, bam, write_sizes(tmp_path / "g.sizes", {"chr1": 2000, "chr2": 500}))


def test_bam_without_index_is_refused_with_samtools_index_hint(tmp_path: Path) -> None:
    bam = make_bam(tmp_path / "noidx.bam", READS, index=False)
    with pytest.raises(InputError, match=r"noidx\.bam: BAM has no index.*samtools index"):
        _cov(tmp_path, bam, write_sizes(tmp_path / "g.sizes"))


def test_unsorted_bam_is_refused(tmp_path: Path) -> None:
    bam = make_bam(tmp_path / "unsorted.bam", READS[::-1], sort=False)
    with pytest.raises(InputError, match=r"unsorted\.bam: header says it is sorted by 'unsorted'.*samtools sort"):
        _cov(tmp_path, bam, write_sizes(tmp_path / "g.sizes"))


def test_empty_bam_is_refused(tmp_path: Path) -> None:
    bam = make_bam(tmp_path / "empty.bam", [])
    with pytest.raises(InputError, match=r"empty\.bam: no mapped reads"):
        _cov(tmp_path, bam, write_sizes(tmp_path / "g.sizes"))


def test_bam_whose_reads_all_fail_the_filters_is_refused(tmp_path: Path) -> None:
    bam = make_bam(tmp_path / "lowq.bam", [dict(name="a", flag=0, chrom="chr1", pos=10, mapq=3)])
    with pytest.raises(InputError, match=r"lowq\.bam: no reads passed the filters.*low_mapq 1"):
        _cov(tmp_path, bam, write_sizes(tmp_path / "g.sizes"))


def test_cli_exits_2_and_leaves_no_output_on_bad_input(tmp_path: Path, capsys) -> None:
    bam = make_bam(tmp_path / "noidx.bam", READS, index=False)
    out = tmp_path / "out" / "cov.bw"
    rc = main(
        [
            "coverage",
            "--input",
            str(bam),
            "--kind",
            "bam",
            "--sizes",
            str(write_sizes(tmp_path / "g.sizes")),
            "--out",
            str(out),
        ]
    )
    assert rc == 2
    assert "noidx.bam" in capsys.readouterr().err
    assert not out.exists() and not Path(str(out) + ".json").exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_chroms_and_exclude_options_choose_the_chromosomes_with_data(tmp_path: Path) -> None:
    bam = make_bam(tmp_path / "tiny.bam", READS)
    sizes = write_sizes(tmp_path / "g.sizes")
    only2 = tmp_path / "only2.bw"
    run_coverage("--input", str(bam), "--kind", "bam", "--sizes", str(sizes), "--out", str(only2), "--chroms", "chr2")
    assert not read_bigwig(only2, "chr1").any() and read_bigwig(only2, "chr2").sum() == (4 + 101) + (
        14 + 101
    )  # boxes of cuts 4 and 14 clipped at 0
    keep_m = tmp_path / "with_chrM.bw"
    run_coverage("--input", str(bam), "--kind", "bam", "--sizes", str(sizes), "--out", str(keep_m), "--exclude", "")
    assert read_bigwig(keep_m, "chrM").any() and read_bigwig(keep_m, "chrUn_gl000220").any()
    assert json.loads(Path(str(keep_m) + ".json").read_text())["n_cut_sites"]["chrM"] == 1


def test_target_regions_keep_only_their_cut_sites(shared_data, tmp_path):
    """Coverage --target-regions: the cut sites inside the regions, counted independently from the file."""
    import json

    import pandas as pd

    frags = shared_data / "immune" / "TeffNaive_U_1004_a.fragments.tsv.gz"
    regions = tmp_path / "r.bed"
    regions.write_text("chr12\t6000000\t7000000\nchr21\t26000000\t27000000\n")
    out = tmp_path / "c.bw"
    argv = [
        "coverage",
        "--input",
        str(frags),
        "--kind",
        "fragments",
        "--sizes",
        str(shared_data / "genomes/hg38.chrom.sizes"),
    ]
    assert run_command([*argv, "--target-regions", str(regions), "--out", str(out)]) == 0
    df = pd.read_csv(frags, sep="\t", header=None, comment="#")
    cuts = pd.concat([df[[0, 1]].rename(columns={1: "pos"}), df[[0, 2]].assign(pos=df[2] - 1)[[0, "pos"]]])
    expected = {}
    for chrom, lo, hi in (("chr12", 6_000_000, 7_000_000), ("chr21", 26_000_000, 27_000_000)):
        expected[chrom] = int(((cuts[0] == chrom) & (cuts["pos"] >= lo) & (cuts["pos"] < hi)).sum())
    side = json.loads((tmp_path / "c.bw.json").read_text())
    assert side["n_cut_sites"] == expected and side["regions_bp"] == 2_000_000
    assert sum(side["fragment_lengths"]) > 0
    import pyBigWig

    bw = pyBigWig.open(str(out))
    try:
        assert set(bw.chroms()) >= {"chr1", "chr12", "chr21"}
        assert bw.intervals("chr1") is None and bw.intervals("chr12", 0, 5_999_000) is None
        # a 201-bp box per kept cut site, every box inside this query: the track sums to 201 per cut site
        total = sum((e - s) * v for s, e, v in bw.intervals("chr12", 5_999_000, 7_001_000))
        assert total == 201 * expected["chr12"]
    finally:
        bw.close()


@pytest.mark.parametrize("cpm", [False, True])
def test_streamed_coverage_equals_holding_every_cut_site(shared_data, tmp_path, cpm):
    """Issue 19.4: cut sites spilled per chunk and read back per chromosome give the bigWig of the all-at-once route.

    The real fragments file comes in chunks of 10,000 lines (every chromosome spans several), in file order
    (chr1, chr12, chr21, chr7), and the bigWig's order is the opposite one, so each chromosome is read back
    from the spill out of arrival order; with ``cpm`` the scale needs the total of all of them.
    """
    import pyBigWig

    from atacdenoise.io.fragments import fragment_cut_sites_by_chrom, iter_fragment_cut_sites
    from atacdenoise.reads.coverage import write_coverage, write_coverage_streamed

    frags = shared_data / "immune" / "TeffNaive_U_1004_a.fragments.tsv.gz"
    sizes = {"chr7": 159_345_973, "chr21": 46_709_983, "chr12": 133_275_309, "chr1": 248_956_422}
    positions, _ = fragment_cut_sites_by_chrom(frags, sizes)
    expected_n = {c: int(p.size) for c, p in positions.items()}
    ref, out = tmp_path / "held.bw", tmp_path / "streamed.bw"
    write_coverage(ref, sizes, sizes, positions, cpm=cpm)
    n_cut, outside = write_coverage_streamed(
        out, sizes, sizes, iter_fragment_cut_sites(frags, sizes, chunk_rows=10_000), cpm=cpm
    )
    assert n_cut == expected_n and outside == 0 and sum(n_cut.values()) == 2 * (38735 + 36685 + 67699 + 17858)
    a, b = pyBigWig.open(str(ref)), pyBigWig.open(str(out))
    try:
        for chrom in sizes:
            assert a.intervals(chrom) == b.intervals(chrom), chrom
    finally:
        a.close()
        b.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["held.bw", "streamed.bw"]  # the spill folder is gone


def test_streamed_coverage_leaves_nothing_when_the_input_fails_midway(shared_data, tmp_path):
    """An error while the cut sites are read (a damaged file, a bad line) leaves neither output nor spill behind."""
    from atacdenoise.io.fragments import iter_fragment_cut_sites
    from atacdenoise.reads.coverage import write_coverage_streamed

    frags = shared_data / "immune" / "TeffNaive_U_1004_a.fragments.tsv.gz"
    sizes = {"chr1": 248_956_422, "chr12": 133_275_309, "chr21": 46_709_983, "chr7": 159_345_973}

    def failing():
        for k, part in enumerate(iter_fragment_cut_sites(frags, sizes, chunk_rows=10_000)):
            if k == 5:
                raise InputError(f"{frags}: damaged")
            yield part

    with pytest.raises(InputError, match="damaged"):
        write_coverage_streamed(tmp_path / "c.bw", sizes, sizes, failing())
    assert list(tmp_path.iterdir()) == []
