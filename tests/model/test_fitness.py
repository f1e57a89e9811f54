"""Model fitness (atacdenoise.model.fitness): is a sample like the model's training data.

Unit tests of the numbers and the thresholds, then a tiny model trained on a window of the real HSC
data and applied to a sample like its training data (every metric ok) and to unlike ones (outside,
with a warning naming the file, the value and the training range).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from atacdenoise.io.genome import Region
from atacdenoise.io.intervals import mask_from_intervals
from atacdenoise.io.sidecar import read_sidecar, sidecar_path, write_json
from atacdenoise.model.dataset import build_dataset, open_dataset
from atacdenoise.model.fitness import (
    COLUMNS,
    DEPTH_HIGH_FACTOR,
    DEPTH_LOW_FACTOR,
    FRAGMENT_DISTANCE_OUTSIDE,
    MIN_FRAGMENTS,
    PEAK_FRACTION_LOW_FACTOR,
    PROFILE_KEY,
    assess_track,
    compare,
    cut_sites_per_mb,
    fitness_path,
    fold_histogram,
    fragment_distance,
    signal_in_intervals,
    track_profile,
    training_profile,
    value_range,
)
from atacdenoise.model.infer import denoise_bigwig
from atacdenoise.model.network import load_model
from atacdenoise.model.train import train
from atacdenoise.reads.coverage import bam_cut_sites_by_chrom, write_coverage
from builders import PRE, TINY_TRAINING, make_training_dataset


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


# --------------------------------------------------------------------------- the numbers
def test_signal_in_intervals_equals_a_direct_sum_across_chunk_boundaries():
    rng = np.random.default_rng(0)
    values = rng.poisson(2.0, 1000).astype(np.float32)
    starts = np.array([0, 36, 100, 500, 990])
    ends = np.array([10, 80, 101, 737, 1000])  # one ends at the chromosome end, several cross chunks of 37
    inside, total = signal_in_intervals(lambda lo, hi: values[lo:hi], values.size, starts, ends, chunk=37)
    assert inside == pytest.approx(values[mask_from_intervals(starts, ends, values.size)].sum(dtype=np.float64))
    assert total == pytest.approx(values.sum(dtype=np.float64))
    assert signal_in_intervals(lambda lo, hi: values[lo:hi], 1000, np.zeros(0), np.zeros(0))[0] == 0.0


def test_depth_counts_cut_sites_per_mb_of_regions_or_chromosomes_and_estimates_them_without_counts():
    side = {**PRE, "n_cut_sites": {"chr1": 300, "chr2": 100, "chrX": 50}}
    lengths = {"chr1": 2_000_000, "chr2": 1_000_000}
    assert cut_sites_per_mb(side, lengths) == (
        pytest.approx(400 / 3),
        "counted cut sites over the chromosomes",
    )  # chrX not counted
    # target regions restrict the coverage: all its cut sites over the regions' bases
    assert cut_sites_per_mb({**side, "regions_bp": 500_000}, lengths)[0] == pytest.approx(450 / 0.5)
    # a user's bigWig (declared, no counts): every cut site is a box of smooth_bp + 1 ones
    declared = {**PRE, "declared": True, "n_cut_sites": None}
    depth, basis = cut_sites_per_mb(declared, lengths, total_signal=201 * 600.0)
    assert depth == pytest.approx(200.0) and basis == "estimated: total signal / 201 per cut site"
    assert cut_sites_per_mb({**declared, "cpm": True}, lengths, total_signal=1e6)[0] is None
    assert cut_sites_per_mb(None, lengths)[0] is None


def test_fragment_histograms_fold_their_tail_and_compare_by_total_variation():
    a = np.array([1.0, 1, 0, 0, 5])  # index = length; the last bin holds 4 bp and longer
    np.testing.assert_array_equal(fold_histogram(a, 3, bin_bp=1), [1, 1, 5])
    np.testing.assert_array_equal(fold_histogram(a, 5, bin_bp=2), [2, 0, 5])
    assert fragment_distance(np.array([1.0, 1, 0, 0]), np.array([0.0, 1, 1, 0]), bin_bp=1) == pytest.approx(0.5)
    assert fragment_distance(np.array([2.0, 2]), np.array([1.0, 1]), bin_bp=1) == 0.0  # normalised
    assert fragment_distance(np.array([1.0, 0]), np.array([0.0, 1]), bin_bp=1) == 1.0


# --------------------------------------------------------------------------- thresholds
def _training(depths=(1000.0, 2000.0, 3000.0), fractions=(0.2, 0.3, 0.4)) -> dict:
    pooled = np.zeros(20)
    pooled[5], pooled[15] = 0.5, 0.5  # half of the fragments in the first 10-bp bin, half in the second
    return {
        "pairs": [],
        "peaks_total": 10,
        "fragment_lengths": pooled.tolist(),
        "summary": {
            "cut_sites_per_mb": value_range(list(depths)),
            "fraction_in_training_peaks": value_range(list(fractions)),
            "fragment_length_distance": value_range([0.05, 0.1]),
        },
    }


def _sample(depth=2000.0, fraction=0.3, first_bin=0.5, n_fragments=10_000) -> dict:
    h = np.zeros(20)
    h[5], h[15] = round(first_bin * n_fragments), n_fragments - round(first_bin * n_fragments)
    return {
        "cut_sites_per_mb": depth,
        "depth_basis": "counted cut sites over the chromosomes",
        "fraction_in_training_peaks": fraction,
        "shared_chroms": True,
        "fragment_lengths": h.tolist(),
        "preprocessing": PRE,
    }


def _status(table: pd.DataFrame) -> dict[str, str]:
    return dict(zip(table["metric"], table["status"]))


@pytest.mark.parametrize(
    ("depth", "status"),
    [
        (DEPTH_LOW_FACTOR * 1000 * 0.99, "outside"),
        (DEPTH_LOW_FACTOR * 1000 * 1.01, "ok"),
        (DEPTH_HIGH_FACTOR * 3000 * 0.99, "ok"),
        (DEPTH_HIGH_FACTOR * 3000 * 1.01, "outside"),
    ],
)
def test_depth_is_outside_below_half_the_lowest_or_above_twice_the_highest_trained_depth(depth, status):
    table = compare(_training(), _sample(depth=depth))
    assert list(table.columns) == COLUMNS
    row = table.set_index("metric").loc["cut_sites_per_mb"]
    assert row["status"] == status
    assert (row["training_min"], row["training_median"], row["training_max"]) == (1000.0, 2000.0, 3000.0)
    assert _status(table)["fraction_in_training_peaks"] == "ok"


@pytest.mark.parametrize(("factor", "status"), [(0.99, "outside"), (1.01, "ok")])
def test_fraction_in_training_peaks_is_outside_below_half_the_lowest_trained_fraction(factor, status):
    table = compare(_training(), _sample(fraction=PEAK_FRACTION_LOW_FACTOR * 0.2 * factor))
    assert _status(table)["fraction_in_training_peaks"] == status
    assert _status(table)["cut_sites_per_mb"] == "ok"


@pytest.mark.parametrize(("first_bin", "status"), [(0.5, "ok"), (0.89, "ok"), (0.91, "outside")])
def test_fragment_length_distance_is_outside_above_the_threshold(first_bin, status):
    table = compare(_training(), _sample(first_bin=first_bin)).set_index("metric")
    row = table.loc["fragment_length_distance"]
    assert row["sample"] == pytest.approx(abs(first_bin - 0.5))  # total-variation distance from the pooled 50/50
    assert row["status"] == status


def test_missing_numbers_are_unknown_with_the_reason():
    few = compare(_training(), _sample(n_fragments=MIN_FRAGMENTS - 1)).set_index("metric")
    assert (
        few.loc["fragment_length_distance", "status"] == "unknown"
        and "too few" in few.loc["fragment_length_distance", "note"]
    )
    no_sidecar = {**_sample(), "preprocessing": None, "fragment_lengths": None, "cut_sites_per_mb": None}
    no_sidecar["depth_basis"] = "no cut-site counts (sidecar) and no way to estimate them"
    t = compare(_training(), no_sidecar).set_index("metric")
    assert t.loc["preprocessing", "status"] == t.loc["cut_sites_per_mb", "status"] == "unknown"
    assert t.loc["fragment_length_distance", "status"] == "unknown"
    assert t.loc["fraction_in_training_peaks", "status"] == "ok"
    other_genome = {**_sample(), "fraction_in_training_peaks": None, "shared_chroms": False}
    row = compare(_training(), other_genome).set_index("metric").loc["fraction_in_training_peaks"]
    assert row["status"] == "unknown" and "no chromosome in common" in row["note"]
    old_model = compare(None, _sample(), PRE)
    assert _status(old_model) == {
        "preprocessing": "ok",
        "cut_sites_per_mb": "unknown",
        "fraction_in_training_peaks": "unknown",
        "fragment_length_distance": "unknown",
    }
    old = old_model.set_index("metric")
    assert "re-train" in old.loc["cut_sites_per_mb", "note"]
    assert (
        old.loc["preprocessing", "sample"]
        == old.loc["preprocessing", "training_median"]
        == ("smooth_bp=200 shift_plus=4 shift_minus=-5 cpm=False")
    )


def test_training_profile_of_a_dataset_without_sidecars(tmp_path):
    pair = open_dataset(make_training_dataset(tmp_path / "ds"))
    prof = training_profile([pair])
    chr1 = prof["peaks"]["chr1"]
    assert chr1["starts"] == list(range(500, 29_500, 2000)) and chr1["ends"] == [s + 300 for s in chr1["starts"]]
    assert prof["peaks_total"] == sum(len(v["starts"]) for v in prof["peaks"].values())
    noisy = {c: pair.arrays(c)["noisy"].astype(np.float64) for c in pair.chroms}
    labels = {c: pair.arrays(c)["labels"] for c in pair.chroms}
    frip = sum((noisy[c] * labels[c]).sum() for c in noisy) / sum(noisy[c].sum() for c in noisy)
    row = prof["pairs"][0]
    assert row["fraction_in_training_peaks"] == pytest.approx(frip)
    # no sidecar: the depth is estimated from the signal, each cut site a box of 201 ones
    assert row["cut_sites_per_mb"] == pytest.approx(pair.total("noisy") / 201 / 0.042, rel=1e-6)
    assert row["fragment_length_distance"] is None and prof["fragment_lengths"] is None
    assert prof["summary"]["cut_sites_per_mb"]["min"] == row["cut_sites_per_mb"]


# --------------------------------------------------------------------------- a model trained on real data
#: a 1-Mb window of each chromosome of the HSC demo (chr1 and chr2, 1-2 Mb), as a small genome
WINDOW = (1_000_000, 2_000_000)
GENOME = {"chr1": WINDOW[1] - WINDOW[0], "chr2": WINDOW[1] - WINDOW[0]}


def _window_cut_sites(bam: Path, shift: int = 0) -> dict[str, np.ndarray]:
    """Cut sites of a real BAM inside WINDOW, as positions of the small genome (moved by ``shift``, wrapping)."""
    positions, _ = bam_cut_sites_by_chrom(bam, {"chr1": 10_000_000, "chr2": 10_000_000})
    out = {}
    for chrom, pos in positions.items():
        pos = pos[(pos >= WINDOW[0]) & (pos < WINDOW[1])] - WINDOW[0]
        out[chrom] = np.sort((pos + shift) % GENOME[chrom])
    return out


def _fragment_lengths(path: Path, min_length: int = 0, n: int = 1000) -> list[int]:
    """Length histogram of a real fragments file (index = length, the last bin n - 1 bp and longer)."""
    df = pd.read_csv(path, sep="\t", header=None, usecols=[1, 2], comment="#")
    length = (df[2] - df[1]).to_numpy()
    return np.bincount(np.minimum(length[length >= min_length], n - 1), minlength=n).tolist()


def _track(path: Path, positions: dict[str, np.ndarray], fragment_lengths: list[int] | None = None) -> Path:
    """Smoothed coverage of cut sites with the sidecar the coverage stage writes (plus fragment lengths)."""
    n_cut = write_coverage(path, GENOME, GENOME, {c: p.copy() for c, p in positions.items()})
    side = {**PRE, "source": "test", "kind": "bam", "chroms": list(GENOME), "n_cut_sites": n_cut}
    if fragment_lengths is not None:
        side["fragment_lengths"] = fragment_lengths
    write_json(sidecar_path(path), side)
    return path


def _subsample(positions: dict[str, np.ndarray], fraction: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c: p[rng.random(p.size) < fraction] for c, p in positions.items()}


@pytest.fixture(scope="module")
def hsc(shared_data, tmp_path_factory) -> dict:
    """Train a tiny model on the 5M/80M pair of the window; the noisy sidecar records a real fragment profile."""
    d = tmp_path_factory.mktemp("hsc")
    hsc, immune = shared_data / "hsc", shared_data / "immune"
    deep = _window_cut_sites(hsc / "HSC_80M.chr1_chr2.bam")
    noisy = _track(
        d / "noisy.bw",
        _window_cut_sites(hsc / "HSC_5M.chr1_chr2.bam"),
        _fragment_lengths(immune / "TCD8EM_S_1001_a.fragments.tsv.gz"),
    )
    clean = _track(d / "clean.bw", deep)
    peaks = pd.read_csv(hsc / "HSC_80M.macs2_peaks.chr1_chr2.bed", sep="\t", header=None, usecols=[0, 1, 2])
    peaks = peaks[(peaks[1] >= WINDOW[0]) & (peaks[2] <= WINDOW[1])]
    labels = d / "labels.bed"
    pd.DataFrame({0: peaks[0], 1: peaks[1] - WINDOW[0], 2: peaks[2] - WINDOW[0]}).to_csv(
        labels, sep="\t", header=False, index=False
    )
    build_dataset(noisy, clean, labels, GENOME, GENOME, d / "ds")
    val, holdout = [Region("chr2", 0, 200_000)], [Region("chr2", 200_000, 400_000)]
    train([open_dataset(d / "ds")], val, holdout, {**TINY_TRAINING, "epochs": 1}, d / "model")
    sizes = d / "genome.sizes"
    sizes.write_text("".join(f"{c}\t{n}\n" for c, n in GENOME.items()))
    return {
        "dir": d,
        "deep": deep,
        "model": d / "model" / "model.pt",
        "sizes": sizes,
        "immune": immune,
        "n_peaks": len(peaks),
    }


def test_model_file_holds_the_training_profile(hsc):
    _, meta = load_model(hsc["model"])  # weights_only: the profile is plain Python values
    prof = meta[PROFILE_KEY]
    assert prof["peaks_total"] == hsc["n_peaks"] > 50
    row = prof["pairs"][0]
    n_cut = read_sidecar(hsc["dir"] / "noisy.bw")["n_cut_sites"]
    assert row["cut_sites_per_mb"] == pytest.approx(sum(n_cut.values()) / 2.0)  # over the 2 Mb of the genome
    assert 0.1 < row["fraction_in_training_peaks"] < 0.9
    assert len(prof["fragment_lengths"]) == 1000 and prof["summary"]["fragment_length_distance"]["max"] == 0.0


def _infer(hsc: dict, bw: Path, prefix: Path) -> pd.DataFrame:
    denoise_bigwig(hsc["model"], bw, hsc["sizes"], prefix, device="cpu", threads=1, batch_size=8)
    return pd.read_csv(fitness_path(prefix), sep="\t")


def test_a_sample_like_the_training_data_is_fit_on_every_metric(hsc, tmp_path, caplog):
    # another 1/16 draw of the deep library (the 5M training input is one too) and the technical replicate's lengths
    bw = _track(
        tmp_path / "like.bw",
        _subsample(hsc["deep"], 1 / 16, seed=11),
        _fragment_lengths(hsc["immune"] / "TCD8EM_S_1001_b.fragments.tsv.gz"),
    )
    caplog.set_level(logging.INFO, logger="atacdenoise")
    table = _infer(hsc, bw, tmp_path / "out" / "like")
    assert list(table.columns) == COLUMNS
    assert _status(table) == dict.fromkeys(
        ["preprocessing", "cut_sites_per_mb", "fraction_in_training_peaks", "fragment_length_distance"], "ok"
    )
    t = table.set_index("metric")
    depth = float(t.loc["cut_sites_per_mb", "sample"])
    assert 0.7 < depth / float(t.loc["cut_sites_per_mb", "training_median"]) < 1.4
    assert "model fitness of" in caplog.text and "4 ok, 0 outside" in caplog.text
    assert "outside what the model saw" not in caplog.text
    assert (tmp_path / "out" / "like.track.bw").exists()


def test_a_shallow_unlike_sample_is_outside_with_a_warning_in_the_log(hsc, tmp_path):
    # 1/400 of the deep library (~25x shallower than training) from a size-selected, nucleosomal-only library
    bw = _track(
        tmp_path / "shallow.bw",
        _subsample(hsc["deep"], 1 / 400, seed=12),
        _fragment_lengths(hsc["immune"] / "TCD8EM_S_1002_a.fragments.tsv.gz", min_length=150),
    )
    prefix = tmp_path / "out" / "shallow"
    args = ["--model", hsc["model"], "--input", bw, "--sizes", hsc["sizes"], "--out-prefix", prefix]
    res = subprocess.run(
        [sys.executable, "-m", "atacdenoise.cli", "infer", *map(str, args), "--device", "cpu", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    t = pd.read_csv(fitness_path(prefix), sep="\t").set_index("metric")
    assert (
        t.loc["cut_sites_per_mb", "status"] == "outside" and "lowest trained depth" in t.loc["cut_sites_per_mb", "note"]
    )
    assert float(t.loc["cut_sites_per_mb", "sample"]) < DEPTH_LOW_FACTOR * float(
        t.loc["cut_sites_per_mb", "training_min"]
    )
    assert t.loc["fragment_length_distance", "status"] == "outside"
    assert float(t.loc["fragment_length_distance", "sample"]) > FRAGMENT_DISTANCE_OUTSIDE
    warnings = [line for line in res.stderr.splitlines() if "WARNING" in line and "outside what the model saw" in line]
    assert len(warnings) == 2, res.stderr
    assert all(str(bw) in w and "train a model on data like this sample" in w for w in warnings)
    depth_warning = next(w for w in warnings if "cut_sites_per_mb" in w)
    assert f"{float(t.loc['cut_sites_per_mb', 'training_min']):.4g}" in depth_warning  # the training range


def test_coverage_moved_off_the_training_peaks_has_a_low_fraction_in_them(hsc, tmp_path):
    shifted = {c: np.sort((p + 50_000) % GENOME[c]) for c, p in _subsample(hsc["deep"], 1 / 16, seed=13).items()}
    bw = _track(tmp_path / "shifted.bw", shifted)
    _, meta = load_model(hsc["model"])
    table = assess_track(meta, bw, read_sidecar(bw), GENOME).set_index("metric")
    assert table.loc["fraction_in_training_peaks", "status"] == "outside"
    assert table.loc["cut_sites_per_mb", "status"] == "ok"  # same depth: only the peaks are unlike
    assert table.loc["fragment_length_distance", "status"] == "unknown"  # this sidecar records none
    # an old model file without a profile still works: every comparison unknown
    old = {k: v for k, v in meta.items() if k != PROFILE_KEY}
    assert set(assess_track(old, bw, read_sidecar(bw), GENOME)["status"]) == {"ok", "unknown"}
    profile = track_profile(bw, read_sidecar(bw), GENOME, meta[PROFILE_KEY])
    assert profile["fraction_in_training_peaks"] < 0.5 * meta[PROFILE_KEY]["pairs"][0]["fraction_in_training_peaks"]


def test_training_peaks_are_in_genome_coordinates_for_datasets_of_target_regions(tmp_path):
    """A dataset made with genome.regions stores a span from an offset: its peaks are stored shifted back."""
    from atacdenoise.model.dataset import open_dataset, write_dataset
    from atacdenoise.model.fitness import training_profile

    n = 1000
    noisy = np.ones(n, dtype=np.float32)
    labels = np.zeros(n, dtype=np.uint8)
    labels[100:200] = 1
    arrays = {"noisy": noisy, "clean": noisy, "labels": labels, "mask": np.ones(n, dtype=np.uint8)}
    meta = {"sample": "S", "depth": "d", "rep": "1", "offsets": {"chr1": 5000}, "chrom_sizes": {"chr1": 10_000}}
    write_dataset(tmp_path / "ds", meta, [("chr1", arrays)])
    profile = training_profile([open_dataset(tmp_path / "ds")])
    assert list(profile["peaks"]["chr1"]["starts"]) == [5100] and list(profile["peaks"]["chr1"]["ends"]) == [5200]
    assert profile["pairs"][0]["fraction_in_training_peaks"] == pytest.approx(0.1)
