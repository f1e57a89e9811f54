"""Input QC (atacdenoise qc, qc-summary) on real data, against independent pysam / pandas computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest

from atacdenoise.cli import run_command
from atacdenoise.errors import InputError
from atacdenoise.evaluate.qc import (
    TSS_EDGE,
    TSS_FLANK,
    TSS_SMOOTH,
    bam_filter_fractions,
    fragments_duplicate_fraction,
    read_qc,
    tss_enrichment,
    tss_profile,
)
from atacdenoise.reads.fraglen import MAX_FRAGMENT, fragment_lengths, read_fraglen
from conftest import REPO, SHARED_DATA

DEMO = REPO / "resources" / "demo"
HSC_BAM = DEMO / "HSC_80M.chr1_chr2.bam"
HSC_PEAKS = DEMO / "HSC_80M.macs2_peaks.chr1_chr2.bed"
HSC_SIZES = DEMO / "hg19_first10mb.chr1_chr2.sizes"
HSC_5M_BAM = SHARED_DATA / "hsc" / "HSC_5M.chr1_chr2.bam"
HSC_5M_BW = SHARED_DATA / "hsc" / "HSC_5M.published_coverage.chr1_chr2.bw"
PE_BAM = SHARED_DATA / "encode" / "ENCSR356KRQ_pe_1in400.chr19_chrM.dupmarked.bam"
HG38 = SHARED_DATA / "genomes" / "hg38.chrom.sizes"
FRAGMENTS = SHARED_DATA / "immune" / "TCD8EM_S_1001_a.fragments.tsv.gz"
WINDOWS = SHARED_DATA / "immune" / "windows.hg38.bed"

needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} (real data) not found")


def qc(tmp_path: Path, name: str, *argv: str) -> tuple[pd.Series, Path]:
    """Run ``atacdenoise qc`` in-process; return its row and the fragment-length table's path."""
    out, fraglen = tmp_path / f"{name}.tsv", tmp_path / f"{name}.fraglen.tsv"
    argv = ("--sample", name, "--depth", "full", "--rep", "1", *argv)
    assert run_command(["qc", *argv, "--out", str(out), "--out-fraglen", str(fraglen)]) == 0
    table = read_qc(out)
    assert len(table) == 1
    return table.iloc[0], fraglen


def pysam_cut_sites(path: Path, chrom: str) -> np.ndarray:
    """Cut sites of the single-end demo BAM read by read (+4 / -5, every read passes the filters)."""
    with pysam.AlignmentFile(str(path)) as bam:
        return np.array(
            [r.reference_end - 1 - 5 if r.is_reverse else r.reference_start + 4 for r in bam.fetch(chrom)],
            dtype=np.int64,
        )


def bed_mask(path: Path, chrom: str, length: int) -> np.ndarray:
    mask = np.zeros(length, dtype=bool)
    bed = pd.read_csv(path, sep="\t", header=None, usecols=[0, 1, 2], names=["chrom", "start", "end"])
    for start, end in bed.loc[bed["chrom"] == chrom, ["start", "end"]].itertuples(index=False):
        mask[start:end] = True
    return mask


def brute_tss_enrichment(cuts: dict[str, np.ndarray], tss: list[tuple[str, int, bool]]) -> float:
    """Compute the ENCODE definition one TSS at a time: aggregate, divide by the 100-bp ends, running mean, maximum."""
    profile = np.zeros(2 * TSS_FLANK + 1)
    for chrom, t, minus in tss:
        c = cuts[chrom]
        offsets = c[(c >= t - TSS_FLANK) & (c <= t + TSS_FLANK)] - t
        for o in -offsets if minus else offsets:
            profile[o + TSS_FLANK] += 1
    background = (profile[:TSS_EDGE].sum() + profile[-TSS_EDGE:].sum()) / (2 * TSS_EDGE)
    return float(pd.Series(profile / background).rolling(TSS_SMOOTH, center=True).mean().max())


@needs_data
def test_single_end_demo_bam_frip_density_and_tss_against_pysam(tmp_path: Path) -> None:
    """HSC 80M demo BAM, its own peaks: FRiP, cut sites per Mb per chromosome and TSS enrichment.

    No TSS annotation ships with the data, so the peaks' centres stand in for TSSs (half on each strand): an
    enrichment well above 1 whose value a read-by-read computation must reproduce.
    """
    peaks = pd.read_csv(HSC_PEAKS, sep="\t", header=None, usecols=[0, 1, 2], names=["chrom", "start", "end"])
    centre = (peaks["start"] + peaks["end"]) // 2
    strand = np.where(np.arange(len(peaks)) % 2, "-", "+")
    tss_bed = tmp_path / "tss.bed"
    pd.DataFrame(
        {"chrom": peaks["chrom"], "s": centre, "e": centre + 1, "n": ".", "score": 0, "strand": strand}
    ).to_csv(tss_bed, sep="\t", header=False, index=False)
    row, fraglen = qc(
        tmp_path, "hsc", "--input", str(HSC_BAM), "--kind", "bam", "--sizes", str(HSC_SIZES),
        "--peaks", str(HSC_PEAKS), "--tss", str(tss_bed), "--min-mapq", "30",
    )  # fmt: skip
    cuts = {c: pysam_cut_sites(HSC_BAM, c) for c in ("chr1", "chr2")}
    inside = sum(int(bed_mask(HSC_PEAKS, c, 10_000_000)[p].sum()) for c, p in cuts.items())
    total = sum(p.size for p in cuts.values())
    assert row["cut_sites"] == row["reads_used"] == total == 487_831
    assert row["frip"] == pytest.approx(inside / total, abs=1e-6)
    assert 0.5 < row["frip"] < 0.8  # a deep library against its own peaks
    for c in ("chr1", "chr2"):
        assert row[f"cut_sites_per_mb:{c}"] == pytest.approx(cuts[c].size / 10.0, rel=1e-5)
    assert row["region_mb"] == 20 and row["cut_sites_per_mb"] == pytest.approx(total / 20, rel=1e-5)
    tss = [(c, int(m), s == "-") for c, m, s in zip(peaks["chrom"], centre, strand)]
    tss = [t for t in tss if TSS_FLANK <= t[1] < 10_000_000 - TSS_FLANK]
    assert row["tss_enrichment"] == pytest.approx(brute_tss_enrichment(cuts, tss), rel=1e-4)
    assert row["tss_enrichment"] > 3
    # single-end: no fragment lengths; nothing flagged duplicate or below MAPQ 30 in this BAM
    assert row["paired"] == False  # noqa: E712 (read back from the TSV as a bool)
    assert np.isnan(row["fraglen_median"]) and read_fraglen(fraglen).size == 0
    assert row["duplicate_fraction"] == 0 and row["low_mapq_fraction"] == 0
    assert np.isnan(row["fragments_used"])


@needs_data
def test_paired_end_bam_duplicate_and_low_mapq_fractions_against_pysam(tmp_path: Path) -> None:
    """ENCODE PE BAM, duplicates marked with samtools markdup (the shipped file has no 0x400 flags)."""
    pysam.sort("-n", "-o", str(tmp_path / "n.bam"), str(PE_BAM))
    pysam.fixmate("-m", str(tmp_path / "n.bam"), str(tmp_path / "fm.bam"))
    pysam.sort("-o", str(tmp_path / "s.bam"), str(tmp_path / "fm.bam"))
    marked = tmp_path / "md.bam"
    pysam.markdup(str(tmp_path / "s.bam"), str(marked))
    pysam.index(str(marked))
    row, fraglen = qc(tmp_path, "pe", "--input", str(marked), "--kind", "bam", "--sizes", str(HG38))
    with pysam.AlignmentFile(str(marked)) as bam:
        reads = list(bam.fetch("chr19"))
    primary = [r for r in reads if not (r.is_unmapped or r.is_secondary or r.is_supplementary or r.is_qcfail)]
    dup = sum(r.is_duplicate for r in primary)
    rest = [r for r in primary if not r.is_duplicate and r.is_proper_pair]
    low = sum(r.mapping_quality < 30 for r in rest)
    assert dup > 0 and low > 1000
    assert row["duplicate_fraction"] == pytest.approx(dup / len(primary), rel=1e-5)
    assert row["low_mapq_fraction"] == pytest.approx(low / len(rest), rel=1e-5)
    assert row["reads_used"] == row["cut_sites"] == len(rest) - low
    assert row["paired"] == True  # noqa: E712
    hist = read_fraglen(fraglen)
    np.testing.assert_array_equal(hist, fragment_lengths(marked, "bam", {"chr19": 58_617_616}))
    assert row["fraglen_fragments"] == hist.sum() and row["fraglen_median"] < 150  # short: NFR dominated
    assert row["cut_sites_per_mb:chr1"] == 0 and row["cut_sites_per_mb:chr19"] > 0  # chrM excluded, chr1 absent
    assert "cut_sites_per_mb:chrM" not in row.index and np.isnan(row["frip"]) and np.isnan(row["tss_enrichment"])


@needs_data
def test_fragments_file_in_target_regions_against_pandas(tmp_path: Path) -> None:
    """Immune fragments (counts all 1: duplicate fraction NA), QC restricted to the four windows with data."""
    peaks = tmp_path / "peaks.bed"  # the first 20 kb of every 100 kb of each window: a stand-in peak set
    win = pd.read_csv(WINDOWS, sep="\t", header=None, names=["chrom", "start", "end"])
    rows = [(c, s, s + 20_000) for c, a, b in win.itertuples(index=False) for s in range(a, b, 100_000)]
    pd.DataFrame(rows).to_csv(peaks, sep="\t", header=False, index=False)
    argv = ["--input", str(FRAGMENTS), "--kind", "fragments", "--sizes", str(HG38), "--target-regions", str(WINDOWS)]
    row, fraglen = qc(tmp_path, "imm", *argv, "--peaks", str(peaks))
    df = pd.read_csv(FRAGMENTS, sep="\t", header=None, names=["chrom", "start", "end", "barcode", "count"])
    assert row["fragments_used"] == row["reads_used"] == len(df) and row["cut_sites"] == 2 * len(df)
    assert np.isnan(row["duplicate_fraction"]) and np.isnan(row["low_mapq_fraction"])
    cuts = pd.concat([df[["chrom", "start"]], df.assign(start=df["end"] - 1)[["chrom", "start"]]])
    for c, a, b in win.itertuples(index=False):
        n = ((cuts["chrom"] == c) & (cuts["start"] >= a) & (cuts["start"] < b)).sum()
        assert row[f"cut_sites_per_mb:{c}:{a}-{b}"] == pytest.approx(n / (b - a) * 1e6, rel=1e-5)
    assert row["region_mb"] == pytest.approx((win["end"] - win["start"]).sum() / 1e6)
    in_win = np.zeros(len(cuts), dtype=bool)
    in_peak = np.zeros(len(cuts), dtype=bool)
    for c, a, b in win.itertuples(index=False):
        in_win |= ((cuts["chrom"] == c) & (cuts["start"] >= a) & (cuts["start"] < b)).to_numpy()
    for c, a, b in rows:
        in_peak |= ((cuts["chrom"] == c) & (cuts["start"] >= a) & (cuts["start"] < b)).to_numpy()
    assert row["frip"] == pytest.approx(in_peak.sum() / in_win.sum(), abs=1e-6)
    # fragment lengths: those starting in the windows (every fragment here), the nucleosome-free fraction
    hist = read_fraglen(fraglen)
    assert hist.sum() == row["fraglen_fragments"] == len(df)
    length = np.minimum(df["end"] - df["start"], MAX_FRAGMENT)
    assert row["fraglen_nfr_fraction"] == pytest.approx((length < 150).mean(), abs=1e-6)
    assert row["fraglen_mono_fraction"] == pytest.approx(((length >= 150) & (length < 300)).mean(), abs=1e-6)


@needs_data
def test_bigwig_input_gives_signal_frip_and_na_counts(tmp_path: Path) -> None:
    """The published HSC 5M track: FRiP from its signal is close to the FRiP of the BAM's cut sites."""
    common = ["--sizes", str(HSC_SIZES), "--peaks", str(HSC_PEAKS)]
    bw, fraglen = qc(tmp_path, "bw", "--input", str(HSC_5M_BW), "--kind", "bigwig", *common)
    bam, _ = qc(tmp_path, "bam", "--input", str(HSC_5M_BAM), "--kind", "bam", *common)
    assert 0.5 < bam["frip"] < 0.8 and bw["frip"] == pytest.approx(bam["frip"], abs=0.01)
    for col in ("reads_used", "cut_sites", "duplicate_fraction", "cut_sites_per_mb", "fraglen_median", "paired"):
        assert pd.isna(bw[col]), col
    assert read_fraglen(fraglen).size == 0


def test_tss_profile_is_strand_aware_and_enrichment_is_normalised_by_the_ends() -> None:
    tss, minus = np.array([5000, 8000]), np.array([False, True])
    cuts = np.array([5100, 7900, 8000 + TSS_FLANK, 2000])  # 100 bp downstream of both; the - TSS's far upstream end
    profile = tss_profile(cuts, tss, minus)
    assert profile[TSS_FLANK + 100] == 2 and profile[0] == 1 and profile.sum() == 3
    flat = np.ones(2 * TSS_FLANK + 1)
    flat[TSS_FLANK - 30 : TSS_FLANK + 31] = 11.0  # 61 bases at 11x the background
    score, smoothed = tss_enrichment(flat)
    assert score == pytest.approx(11.0) and smoothed[0] != smoothed[0]  # NaN where the running mean is partial
    assert np.isnan(tss_enrichment(np.zeros(2 * TSS_FLANK + 1))[0])


def test_filter_fractions_follow_the_filter_order() -> None:
    filters = {"seen": 100, "kept": 45, "dropped_low_mapq": 15, "dropped_duplicate": 18, "dropped_improper_pair": 2}
    filters |= {"dropped_unmapped": 5, "dropped_secondary": 10, "dropped_supplementary": 3, "dropped_qcfail": 2}
    dup, low = bam_filter_fractions(filters)
    assert dup == pytest.approx(18 / 80) and low == pytest.approx(15 / 60)
    assert np.isnan(bam_filter_fractions(filters, keep_duplicates=True)[0])
    assert fragments_duplicate_fraction(80, 100) == pytest.approx(0.2) and np.isnan(fragments_duplicate_fraction(5, 5))


@needs_data
def test_qc_summary_gathers_rows_and_draws_both_figures(tmp_path: Path) -> None:
    _, hsc_fl = qc(tmp_path, "hsc", "--input", str(HSC_5M_BAM), "--kind", "bam", "--sizes", str(HSC_SIZES))
    imm, imm_fl = qc(
        tmp_path, "imm", "--input", str(FRAGMENTS), "--kind", "fragments", "--sizes", str(HG38), "--chroms", "chr21",
        "--max-fragments", "5000",
    )  # fmt: skip
    assert imm["fraglen_fragments"] == 5000
    out = tmp_path / "qc"
    argv = ["qc-summary", "--qc", str(tmp_path / "hsc.tsv"), str(tmp_path / "imm.tsv")]
    argv += ["--fraglen", str(hsc_fl), str(imm_fl), "--out-table", str(out / "qc.tsv")]
    argv += ["--out-plot", str(out / "fragment_lengths.png"), "--out-depth-plot", str(out / "cut_sites_per_mb.png")]
    assert run_command(argv) == 0
    table = read_qc(out / "qc.tsv")
    assert table["sample"].tolist() == ["hsc", "imm"]
    assert {"cut_sites_per_mb:chr1", "cut_sites_per_mb:chr21"} <= set(table.columns)
    assert np.isnan(table.loc[0, "cut_sites_per_mb:chr21"]) and np.isnan(table.loc[1, "cut_sites_per_mb:chr1"])
    for png in ("fragment_lengths.png", "cut_sites_per_mb.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / png).stat().st_size > 10_000
    with pytest.raises(InputError, match="one fragment-length table per QC row"):
        run_command([*argv[:4], "--fraglen", str(hsc_fl), *argv[7:]])


@needs_data
def test_cut_site_counts_and_density_agree_inside_target_regions(tmp_path: Path) -> None:
    """With regions that leave cut sites out, ``cut_sites`` counts the regions only: density = cut_sites / region_mb."""
    win = pd.read_csv(WINDOWS, sep="\t", header=None, names=["chrom", "start", "end"])
    half = win.assign(end=win["start"] + (win["end"] - win["start"]) // 2)  # the first half of every window
    regions = tmp_path / "half.bed"
    half.to_csv(regions, sep="\t", header=False, index=False)
    argv = ["--input", str(FRAGMENTS), "--kind", "fragments", "--sizes", str(HG38), "--target-regions", str(regions)]
    row, _ = qc(tmp_path, "half", *argv)
    df = pd.read_csv(FRAGMENTS, sep="\t", header=None, names=["chrom", "start", "end", "barcode", "count"])
    cuts = pd.concat([df[["chrom", "start"]], df.assign(start=df["end"] - 1)[["chrom", "start"]]])
    inside = sum(
        int(((cuts["chrom"] == c) & (cuts["start"] >= a) & (cuts["start"] < b)).sum())
        for c, a, b in half.itertuples(index=False)
    )
    assert 0 < inside < len(cuts)  # the regions leave cut sites out
    assert row["cut_sites"] == inside
    assert row["cut_sites_per_mb"] == pytest.approx(row["cut_sites"] / row["region_mb"], rel=1e-5)
    assert row["fragments_used"] == len(df)  # the input's own count (its depth), as documented
