"""Tn5 cut sites from hand-made BAMs and fragments files, and box smoothing, against hand-computed values."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from atacdenoise.cli import main
from atacdenoise.io.bam import open_bam
from atacdenoise.io.bigwig import read_bigwig
from atacdenoise.io.fragments import fragment_cut_sites_by_chrom
from atacdenoise.reads import cutsites as cs
from builders import READS, SIZES, make_bam, write_sizes

EXPECTED = {"chr1": [104, 214, 264, 319, 404, 504, 614], "chr2": [4, 14]}


@pytest.fixture
def tiny_bam(tmp_path: Path) -> Path:
    return make_bam(tmp_path / "tiny.bam", READS)


def test_bam_cut_sites_match_hand_computed_positions(tiny_bam: Path) -> None:
    bam = open_bam(tiny_bam)
    pos1, st1 = cs.bam_cut_sites(bam, "chr1", SIZES["chr1"])
    pos2, st2 = cs.bam_cut_sites(bam, "chr2", SIZES["chr2"])
    assert sorted(pos1.tolist()) == EXPECTED["chr1"]
    assert sorted(pos2.tolist()) == EXPECTED["chr2"]
    assert st1.dropped == {
        "unmapped": 1,
        "secondary": 1,
        "supplementary": 1,
        "qcfail": 1,
        "duplicate": 1,
        "improper_pair": 2,
        "low_mapq": 1,
    }
    assert (st1.seen, st1.kept, st1.off_chrom) == (15, 7, 0)
    assert (st2.seen, st2.kept, st2.off_chrom) == (4, 4, 2)


def test_keep_duplicates_and_mapq_threshold_change_what_is_kept(tiny_bam: Path) -> None:
    bam = open_bam(tiny_bam)
    pos, st = cs.bam_cut_sites(bam, "chr1", SIZES["chr1"], min_mapq=0, keep_duplicates=True)
    assert sorted(pos.tolist()) == sorted(EXPECTED["chr1"] + [154, 254])
    assert st.dropped["duplicate"] == 0 and st.dropped["low_mapq"] == 0


def test_custom_shifts_apply_to_each_strand(tiny_bam: Path) -> None:
    bam = open_bam(tiny_bam)
    pos, _ = cs.bam_cut_sites(bam, "chr2", SIZES["chr2"], shift_plus=0, shift_minus=0)
    # + read at 0 -> 0; - reads end at 20 and 5 -> 19 and 4; + read at 497 -> 497
    assert sorted(pos.tolist()) == [0, 4, 19, 497]


def test_minus_strand_cut_is_five_prime_end_minus_five() -> None:
    pos = cs.read_cut_sites(np.array([10, 10]), np.array([60, 60]), np.array([False, True]))
    assert pos.tolist() == [14, 54]


def test_read_filter_counts_each_read_under_its_first_failing_filter() -> None:
    flag = np.array([0, 4 | 256, 1024, 1 | 64, 1 | 2 | 64, 0])
    mapq = np.array([60, 0, 5, 60, 60, 29])
    keep, dropped = cs.read_filter(flag, mapq, min_mapq=30)
    assert keep.tolist() == [True, False, False, False, True, False]
    assert dropped == {
        "unmapped": 1,
        "secondary": 0,
        "supplementary": 0,
        "qcfail": 0,
        "duplicate": 1,
        "improper_pair": 1,
        "low_mapq": 1,
    }


def test_coverage_cli_on_tiny_bam_writes_cut_counts_and_excludes_chrM(tiny_bam: Path, tmp_path: Path) -> None:
    out = tmp_path / "cov.bw"
    sizes = write_sizes(tmp_path / "g.sizes")
    rc = main(
        [
            "coverage",
            "--input",
            str(tiny_bam),
            "--kind",
            "bam",
            "--sizes",
            str(sizes),
            "--out",
            str(out),
            "--smooth-bp",
            "0",
        ]
    )
    assert rc == 0
    for chrom in ("chr1", "chr2"):
        track = read_bigwig(out, chrom)
        assert np.flatnonzero(track).tolist() == EXPECTED[chrom]
        assert track[EXPECTED[chrom]].tolist() == [1.0] * len(EXPECTED[chrom])
    assert not read_bigwig(out, "chrM").any() and not read_bigwig(out, "chrUn_gl000220").any()
    meta = json.loads(Path(str(out) + ".json").read_text())
    assert meta["n_cut_sites"] == {"chr1": 7, "chr2": 2}
    assert meta["chroms"] == ["chr1", "chr2"]
    assert (meta["smooth_bp"], meta["shift_plus"], meta["shift_minus"], meta["min_mapq"]) == (0, 4, -5, 30)
    assert meta["kind"] == "bam" and meta["keep_duplicates"] is False and meta["cpm"] is False


def test_coverage_cli_cpm_scales_to_counts_per_million(tiny_bam: Path, tmp_path: Path) -> None:
    out = tmp_path / "cpm.bw"
    sizes = write_sizes(tmp_path / "g.sizes")
    assert (
        main(
            [
                "coverage",
                "--input",
                str(tiny_bam),
                "--kind",
                "bam",
                "--sizes",
                str(sizes),
                "--out",
                str(out),
                "--smooth-bp",
                "0",
                "--cpm",
            ]
        )
        == 0
    )
    track = read_bigwig(out, "chr1")
    np.testing.assert_allclose(track[104], 1e6 / 9, rtol=1e-6)  # 9 cut sites on chr1 + chr2


# ---------------------------------------------------------------- smoothing


def test_smooth_box_is_smooth_bp_plus_one_wide_and_centred() -> None:
    counts = np.zeros(11, dtype=np.int32)
    counts[5] = 1
    assert cs.smooth(counts, 2).tolist() == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    assert cs.smooth(counts, 4).tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0]
    # odd smooth_bp: left = 1, right = 2 -> the cut at 5 covers 4..7
    assert cs.smooth(counts, 3).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0]


def test_smooth_clips_at_chromosome_edges() -> None:
    counts = np.zeros(8, dtype=np.int32)
    counts[0] = 2
    counts[7] = 1
    assert cs.smooth(counts, 4).tolist() == [2, 2, 2, 0, 0, 1, 1, 1]
    # a box wider than the chromosome sums everything everywhere
    assert cs.smooth(counts, 100).tolist() == [3] * 8


def test_smooth_of_zero_width_is_identity_and_overlaps_add() -> None:
    counts = np.array([0, 1, 0, 3, 0, 0, 2], dtype=np.int32)
    assert cs.smooth(counts, 0).tolist() == counts.tolist()
    assert cs.smooth(counts, 2).tolist() == [1, 1, 4, 3, 3, 2, 2]
    assert cs.smooth(counts, 2).dtype == np.int32


def test_smooth_matches_a_direct_window_sum_on_random_counts() -> None:
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.05, size=3000).astype(np.int32)
    for smooth_bp in (200, 7):
        left, right = smooth_bp // 2, smooth_bp - smooth_bp // 2
        expected = [counts[max(0, i - right) : i + left + 1].sum() for i in range(counts.size)]
        assert cs.smooth(counts, smooth_bp).tolist() == expected


def test_cut_counts_bincounts_positions() -> None:
    assert cs.cut_counts(np.array([1, 1, 4]), 6).tolist() == [0, 2, 0, 0, 1, 0]


# ---------------------------------------------------------------- fragments files


def write_fragment_lines(path: Path, lines: list[str], compress: bool = True) -> Path:
    text = "".join(line + "\n" for line in lines)
    if compress:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


FRAG_LINES = [
    "# id=test",
    "# comment lines are skipped",
    "chr1\t100\t150\tAAAC-1\t1",  # cuts 100, 149
    "chr1\t120\t300\tAAAG-1\t3",  # cuts 120, 299 (count 3)
    "chr2\t0\t10\tAAAC-1\t1",  # cuts 0, 9
    "chrM\t5\t50\tAAAC-1\t7",  # excluded chromosome
]


def test_fragment_cut_sites_are_start_and_end_minus_one(tmp_path: Path) -> None:
    path = write_fragment_lines(tmp_path / "f.tsv.gz", FRAG_LINES)
    pos, stats = fragment_cut_sites_by_chrom(path, {"chr1": 1000, "chr2": 500})
    assert sorted(pos["chr1"].tolist()) == [100, 120, 149, 299]
    assert sorted(pos["chr2"].tolist()) == [0, 9]
    assert (stats.lines, stats.other_chroms, stats.used, stats.reads) == (4, 1, 3, 5)


def test_fragment_cut_sites_take_four_bytes_each_so_a_whole_genome_fits(tmp_path: Path) -> None:
    """Every cut site of the file is held at once (for CPM): int32 halves it (issue 19.4); int64 past 2^31 bases."""
    path = write_fragment_lines(tmp_path / "f.tsv.gz", FRAG_LINES)
    pos, _ = fragment_cut_sites_by_chrom(path, {"chr1": 248_956_422, "chr2": 500})
    assert pos["chr1"].dtype == np.int32 and pos["chr2"].dtype == np.int32
    assert sorted(pos["chr1"].tolist()) == [100, 120, 149, 299]
    big, _ = fragment_cut_sites_by_chrom(path, {"chr1": 2**31 + 10, "chr2": 500})
    assert big["chr1"].dtype == np.int64 and sorted(big["chr1"].tolist()) == [100, 120, 149, 299]


def test_fragment_count_column_weights_cut_sites_only_when_duplicates_are_kept(tmp_path: Path) -> None:
    path = write_fragment_lines(tmp_path / "f.tsv", FRAG_LINES, compress=False)
    pos, _ = fragment_cut_sites_by_chrom(path, {"chr1": 1000, "chr2": 500}, use_count=True)
    assert sorted(pos["chr1"].tolist()) == [100, 120, 120, 120, 149, 299, 299, 299]


def test_coverage_cli_on_fragments_file_smooths_cut_sites(tmp_path: Path) -> None:
    frag = write_fragment_lines(tmp_path / "f.tsv.gz", FRAG_LINES)
    sizes = write_sizes(tmp_path / "g.sizes")
    out = tmp_path / "frag.bw"
    assert (
        main(
            [
                "coverage",
                "--input",
                str(frag),
                "--kind",
                "fragments",
                "--sizes",
                str(sizes),
                "--out",
                str(out),
                "--smooth-bp",
                "2",
            ]
        )
        == 0
    )
    counts = np.zeros(500, dtype=np.int32)
    counts[[0, 9]] = 1
    assert read_bigwig(out, "chr2").tolist() == cs.smooth(counts, 2).astype(np.float32).tolist()
    chr1 = read_bigwig(out, "chr1")
    assert chr1[99:102].tolist() == [1, 1, 1] and chr1[298:301].tolist() == [1, 1, 1] and chr1.sum() == 12
    meta = json.loads(Path(str(out) + ".json").read_text())
    assert meta["kind"] == "fragments" and meta["n_cut_sites"] == {"chr1": 4, "chr2": 2}


@pytest.mark.parametrize("smooth_bp, window", [(200, 37), (200, 1000), (7, 5), (0, 64), (200, 100_000)])
def test_smoothed_windows_join_to_the_whole_chromosome_result(smooth_bp: int, window: int) -> None:
    rng = np.random.default_rng(1)
    length = 2_345
    pos = np.concatenate([rng.integers(0, length, size=300), [0, 0, length - 1]])
    whole = cs.smooth(cs.cut_counts(pos, length), smooth_bp)
    parts = list(cs.smoothed_windows(pos, length, smooth_bp, window))
    assert [start for start, _ in parts] == list(range(0, length, window))
    assert np.concatenate([values for _, values in parts]).tolist() == whole.tolist()
