"""Fragment-length histograms: a real paired-end ENCODE BAM and a real fragments file, against pysam / pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pysam
import pytest

from atacdenoise.errors import InputError
from atacdenoise.io.genome import read_chrom_sizes, select_chroms
from atacdenoise.reads.fraglen import (
    MAX_FRAGMENT,
    fragment_lengths,
    median_length,
    read_fraglen,
    starts_in_regions,
    write_fraglen,
)
from builders import READS, make_bam, write_sizes
from conftest import SHARED_DATA

PE_BAM = SHARED_DATA / "encode" / "ENCSR356KRQ_pe_1in400.chr19_chrM.dupmarked.bam"
SE_BAM = SHARED_DATA / "encode" / "ENCSR889WQX_se_1in400.chr19_chrM.nodup.bam"
HG38 = SHARED_DATA / "genomes" / "hg38.chrom.sizes"
MM10 = SHARED_DATA / "genomes" / "mm10_chr19_chrM.chrom.sizes"
FRAGMENTS = SHARED_DATA / "immune" / "TCD8EM_S_1001_a.fragments.tsv.gz"

needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} (real data) not found")


def pysam_histogram(path, chroms, min_mapq=30, keep_duplicates=False, start_in=None) -> np.ndarray:
    """|TLEN| of read 1 of proper pairs passing the coverage filters, read by read with pysam."""
    hist = np.zeros(MAX_FRAGMENT + 1, dtype=np.int64)
    with pysam.AlignmentFile(str(path)) as bam:
        for chrom in chroms:
            for r in bam.fetch(chrom):
                if not (r.is_paired and r.is_proper_pair and r.is_read1) or r.is_unmapped:
                    continue
                if r.is_secondary or r.is_supplementary or r.is_qcfail or r.mapping_quality < min_mapq:
                    continue
                if r.is_duplicate and not keep_duplicates:
                    continue
                if start_in is not None and not start_in(min(r.reference_start, r.next_reference_start)):
                    continue
                hist[min(abs(r.template_length), MAX_FRAGMENT)] += 1
    return hist


@pytest.fixture(scope="module")
def hg38() -> dict[str, int]:
    return select_chroms(read_chrom_sizes(HG38))


@needs_data
def test_paired_end_bam_histogram_equals_pysam_read_by_read(hg38) -> None:
    hist = fragment_lengths(PE_BAM, "bam", hg38)
    expected = pysam_histogram(PE_BAM, ["chr19"])
    assert hist.dtype == np.int64 and hist.shape == (MAX_FRAGMENT + 1,)
    np.testing.assert_array_equal(hist, expected)
    assert 7000 < hist.sum() < 8000  # chrM (excluded) and the multimappers (MAPQ < 30) are not counted
    # no MAPQ filter and chrM kept: the same comparison on other filters
    sizes = {**hg38, "chrM": 16569}
    np.testing.assert_array_equal(
        fragment_lengths(PE_BAM, "bam", sizes, min_mapq=0), pysam_histogram(PE_BAM, ["chr19", "chrM"], min_mapq=0)
    )


@needs_data
def test_paired_end_bam_regions_keep_fragments_starting_inside(hg38) -> None:
    starts, ends = np.array([10_000_000, 30_000_000]), np.array([20_000_000, 40_000_000])
    hist = fragment_lengths(PE_BAM, "bam", hg38, regions={"chr19": (starts, ends)})
    expected = pysam_histogram(
        PE_BAM, ["chr19"], start_in=lambda s: bool(starts_in_regions(np.array([s]), starts, ends)[0])
    )
    np.testing.assert_array_equal(hist, expected)
    assert 0 < hist.sum() < fragment_lengths(PE_BAM, "bam", hg38).sum()
    assert fragment_lengths(PE_BAM, "bam", hg38, regions={"chr1": (starts, ends)}).sum() == 0


@needs_data
def test_max_fragments_stops_early_with_the_first_fragments(hg38) -> None:
    full = fragment_lengths(PE_BAM, "bam", hg38, max_fragments=None)
    first = fragment_lengths(PE_BAM, "bam", hg38, max_fragments=500)
    assert first.sum() == 500 and np.all(first <= full)


@needs_data
def test_fragments_file_histogram_equals_pandas_and_shows_the_nucleosome_ladder(hg38) -> None:
    df = pd.read_csv(FRAGMENTS, sep="\t", header=None, names=["chrom", "start", "end", "barcode", "count"])
    lengths = np.minimum(df["end"] - df["start"], MAX_FRAGMENT)
    expected = np.bincount(lengths, minlength=MAX_FRAGMENT + 1)
    hist = fragment_lengths(FRAGMENTS, "fragments", hg38)
    np.testing.assert_array_equal(hist, expected)
    assert hist.sum() == len(df) == 194_453 and hist[-1] == (df["end"] - df["start"] >= MAX_FRAGMENT).sum()
    # the ladder: nucleosome-free peak below 150 bp, a trough, then the mono-nucleosome bump at 180-250 bp
    smooth = np.convolve(hist, np.ones(11) / 11, mode="same")
    assert smooth[20:150].argmax() + 20 < 100
    trough = smooth[120:180].min()
    assert smooth[180:250].max() > 1.3 * trough
    assert 180 <= 180 + smooth[180:250].argmax() <= 240
    assert 100 < median_length(hist) < 200
    # one chromosome, and a region on it
    chr21 = df[df["chrom"] == "chr21"]
    np.testing.assert_array_equal(
        fragment_lengths(FRAGMENTS, "fragments", {"chr21": hg38["chr21"]}),
        np.bincount(np.minimum(chr21["end"] - chr21["start"], MAX_FRAGMENT), minlength=MAX_FRAGMENT + 1),
    )
    region = {"chr21": (np.array([20_000_000]), np.array([25_000_000]))}
    inside = chr21[(chr21["start"] >= 20_000_000) & (chr21["start"] < 25_000_000)]
    assert fragment_lengths(FRAGMENTS, "fragments", hg38, regions=region).sum() == len(inside) > 0


@needs_data
def test_single_end_bam_and_bigwig_have_no_lengths() -> None:
    assert fragment_lengths(SE_BAM, "bam", {"chr19": read_chrom_sizes(MM10)["chr19"]}) is None
    assert fragment_lengths("any.bw", "bigwig", {"chr1": 10}) is None


def test_fragments_count_column_weights_with_keep_duplicates(tmp_path) -> None:
    path = tmp_path / "f.tsv"
    path.write_text("chr1\t10\t60\tA\t3\nchr1\t100\t1300\tB\t1\nchr2\t5\t25\tC\t2\nchrX\t0\t40\tD\t1\n")
    sizes = {"chr1": 2000, "chr2": 2000}
    hist = fragment_lengths(path, "fragments", sizes)
    assert hist[50] == 1 and hist[MAX_FRAGMENT] == 1 and hist[20] == 1 and hist.sum() == 3  # chrX not selected
    dup = fragment_lengths(path, "fragments", sizes, keep_duplicates=True)
    assert dup[50] == 3 and dup[20] == 2 and dup.sum() == 6
    with pytest.raises(InputError, match="none of its chromosomes"):
        fragment_lengths(path, "fragments", {"1": 2000})


def test_tiny_bam_counts_only_read1_of_proper_pairs_passing_filters(tmp_path) -> None:
    reads = [
        *READS,
        dict(name="dup_pp", flag=99 | 1024, chrom="chr1", pos=700, mate_pos=750),
        dict(name="dup_pp", flag=147 | 1024, chrom="chr1", pos=750, mate_pos=700),
        dict(name="lowq_pp", flag=99, chrom="chr1", pos=800, mate_pos=900, mapq=5),
        dict(name="lowq_pp", flag=147, chrom="chr1", pos=900, mate_pos=800),
    ]
    bam = make_bam(tmp_path / "t.bam", reads)
    for r in pysam.AlignmentFile(str(bam)):  # make_bam writes no TLEN: read them back to know them
        assert r.template_length == 0
    sizes = read_chrom_sizes(write_sizes(tmp_path / "g.sizes"))
    hist = fragment_lengths(bam, "bam", select_chroms(sizes))
    assert hist.sum() == 1 and hist[0] == 1  # only 'pp' read 1 (TLEN 0 as written)
    assert fragment_lengths(bam, "bam", select_chroms(sizes), keep_duplicates=True).sum() == 2
    assert fragment_lengths(bam, "bam", select_chroms(sizes), keep_duplicates=True, min_mapq=0).sum() == 3


def test_fraglen_table_round_trips_and_bad_tables_are_refused(tmp_path) -> None:
    hist = np.arange(MAX_FRAGMENT + 1, dtype=np.int64)
    write_fraglen(tmp_path / "h.tsv", hist)
    assert (tmp_path / "h.tsv").read_text().startswith("length\tcount\n0\t0\n1\t1\n")
    np.testing.assert_array_equal(read_fraglen(tmp_path / "h.tsv"), hist)
    write_fraglen(tmp_path / "none.tsv", None)
    assert read_fraglen(tmp_path / "none.tsv").size == 0
    (tmp_path / "bad.tsv").write_text("length\tcount\n0\t1\n2\t1\n")
    with pytest.raises(InputError, match=r"bad\.tsv: lengths are not 0\.\.1000"):
        read_fraglen(tmp_path / "bad.tsv")
    (tmp_path / "text.tsv").write_text("a\tb\nx\ty\n")
    with pytest.raises(InputError, match=r"text\.tsv: not a fragment-length table"):
        read_fraglen(tmp_path / "text.tsv")
