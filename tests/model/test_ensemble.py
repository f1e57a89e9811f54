"""Ensemble inference (config model.ensemble): averaging, spread, per-peak confidence, the CLI with several models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_infer import PREPROCESSING, SIZES, TRANSFORM, WINDOW, calibrated_model, coverage, single_pass

from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import read_bigwig, write_bigwig
from atacdenoise.io.intervals import NARROWPEAK_COLUMNS, read_narrowpeak
from atacdenoise.model.infer import EnsembleRunner, TileRunner, check_members, ensemble_stats
from atacdenoise.model.network import save_model
from atacdenoise.peaks.threshold import PeakStream, call_peaks, peak_confidence, peak_table, segment_mean

# --------------------------------------------------------------------------- averaging and spread


def test_ensemble_stats_equal_a_hand_computation():
    tracks = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]], dtype=np.float32)
    probs = np.array([[0.0, 0.5], [1.0, 0.5], [0.5, 0.2]], dtype=np.float32)
    track, prob, spread = ensemble_stats(tracks, probs)
    np.testing.assert_allclose(track, [3.0, 5.0])
    np.testing.assert_allclose(prob, [0.5, 0.4], rtol=1e-6)
    # population sd: column 0 {0, 1, 0.5}: var (0.25 + 0.25 + 0) / 3; column 1 {0.5, 0.5, 0.2}: (0.01 + 0.01 + 0.04) / 3
    np.testing.assert_allclose(spread, [np.sqrt(1 / 6), np.sqrt(0.02)], rtol=1e-6)
    assert track.dtype == prob.dtype == spread.dtype == np.float32


def test_spread_is_zero_when_members_agree_and_at_most_one_half():
    _, _, agree = ensemble_stats(np.ones((4, 3)), np.full((4, 3), 0.3))
    np.testing.assert_array_equal(agree, 0.0)
    _, prob, split = ensemble_stats(np.zeros((4, 1)), np.array([[0.0], [1.0], [0.0], [1.0]]))
    assert prob[0] == 0.5 and split[0] == 0.5  # half the members at 0, half at 1: the largest possible sd


def test_ensemble_stats_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        ensemble_stats(np.zeros((2, 3)), np.zeros((3, 3)))


# --------------------------------------------------------------------------- per-peak confidence


def test_peak_confidence_is_one_minus_twice_the_mean_spread_over_the_peak():
    spread = np.array([0.1] * 4 + [0.0] * 4 + [0.0, 0.5, 0.0, 0.5] + [0.5] * 2, dtype=np.float32)
    starts, ends = np.array([0, 4, 8, 12]), np.array([4, 8, 12, 14])
    np.testing.assert_allclose(segment_mean(spread, starts, ends), [0.1, 0.0, 0.25, 0.5], rtol=1e-6)
    np.testing.assert_array_equal(peak_confidence(starts, ends, spread), [800, 1000, 500, 0])


def test_narrowpeak_score_is_the_confidence_with_a_spread_and_the_probability_without():
    prob = np.zeros(1000, dtype=np.float32)
    prob[100:400] = 0.9
    prob[600:900] = 0.7
    spread = np.zeros(1000, dtype=np.float32)
    spread[100:400] = 0.05
    spread[600:900] = np.linspace(0.0, 0.4, 300)
    starts, ends = call_peaks(prob, 0.5)
    single = peak_table("chr1", starts, ends, prob)
    ensemble = peak_table("chr1", starts, ends, prob, spread=spread)
    assert list(ensemble.columns) == NARROWPEAK_COLUMNS  # still 10 columns
    assert single["score"].tolist() == [900, 700]  # today: 1000 x the peak's maximum probability
    expected = [round(1000 * (1 - 2 * 0.05)), round(1000 * (1 - 2 * float(spread[600:900].astype(np.float64).mean())))]
    assert ensemble["score"].tolist() == expected
    assert ensemble.drop(columns="score").equals(single.drop(columns="score"))  # the rest is unchanged


def test_streamed_confidence_equals_whole_chromosome_calls():
    rng = np.random.default_rng(3)
    prob = np.repeat(rng.random(100) ** 2, 300).astype(np.float32)  # 30 kb of 300-bp steps, ~30 % above 0.5
    spread = (rng.random(prob.size) * 0.3).astype(np.float32)
    track = rng.random(prob.size).astype(np.float32)
    starts, ends = call_peaks(prob, 0.5)
    whole = peak_table("chr1", starts, ends, prob, track=track, name_prefix="chr1_peak", spread=spread)
    stream = PeakStream("chr1", 0.5)
    for lo in range(0, prob.size, 3001):
        stream.add(lo, prob[lo : lo + 3001], track[lo : lo + 3001], spread[lo : lo + 3001])
    streamed = stream.finish()
    assert len(whole) > 3
    pd.testing.assert_frame_equal(streamed, whole)


def test_peak_stream_refuses_a_spread_on_some_chunks_only():
    stream = PeakStream("chr1", 0.5)
    stream.add(0, np.zeros(10, np.float32), np.zeros(10, np.float32), np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="every chunk needs a spread"):
        stream.add(10, np.zeros(10, np.float32), np.zeros(10, np.float32))


# --------------------------------------------------------------------------- the runner


def member(seed: int, x: np.ndarray) -> torch.nn.Module:
    """Return the calibrated tiny model with its heads' biases moved by the seed (members disagree a little)."""
    model = calibrated_model(x)
    with torch.no_grad():
        model.cls_out.bias += 0.4 * (seed - 2)
        model.reg_out.bias += 0.5 * seed
    return model


def test_ensemble_runner_averages_its_members_chunk_by_chunk():
    x = coverage(5_432, seed=4)
    nets = [member(k, x) for k in (1, 2, 3)]
    from atacdenoise.model.network import transform_input

    runners = [
        TileRunner(net, torch.device("cpu"), 1000, WINDOW["pad"], 2, transform=lambda t: transform_input(t, TRANSFORM))
        for net in nets
    ]
    chunks = list(EnsembleRunner(runners).run_chromosome(lambda lo, hi: x[lo:hi], x.size))
    assert [c[0] for c in chunks] == [0, 2000, 4000]  # one chunk of K members at a time
    track, prob, spread = (np.concatenate([c[i] for c in chunks]) for i in (1, 2, 3))
    refs = [single_pass(net, x, WINDOW["pad"], TRANSFORM) for net in nets]
    ref_tracks, ref_probs = np.stack([r[0] for r in refs]), np.stack([r[1] for r in refs])
    np.testing.assert_allclose(track, ref_tracks.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(prob, ref_probs.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(spread, ref_probs.std(0), rtol=1e-4, atol=1e-6)
    assert spread.max() > 0.05  # the members do disagree


def test_members_trained_otherwise_are_refused():
    meta = {"preprocessing": PREPROCESSING, "window": WINDOW, "input_transform": TRANSFORM}
    check_members(["a", "b"], [meta, {**meta, "input_transform": {**TRANSFORM, "reference": 2.0}}])
    with pytest.raises(InputError, match="b: ensemble member differs from a in window"):
        check_members(["a", "b"], [meta, {**meta, "window": {"interval": 500, "pad": 30}}])


# --------------------------------------------------------------------------- the command


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "atacdenoise.cli", "infer", *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("ensemble")
    sizes = d / "genome.sizes"
    sizes.write_text("".join(f"{c}\t{n}\n" for c, n in SIZES.items()))
    xs = {c: coverage(n, seed=20 + i) for i, (c, n) in enumerate(SIZES.items())}
    noisy = d / "noisy.bw"
    write_bigwig(noisy, SIZES, xs)
    Path(f"{noisy}.json").write_text(json.dumps({**PREPROCESSING, "source": "noisy.bam", "kind": "bam"}))
    nets, paths = [], []
    for k, threshold in zip((1, 2, 3), (0.4, 0.5, 0.6)):
        nets.append(member(k, xs["chr1"]))
        paths.append(d / f"m{k}.pt")
        save_model(
            paths[-1],
            nets[-1],
            preprocessing=PREPROCESSING,
            window=WINDOW,
            input_transform=TRANSFORM,
            threshold=threshold,
        )
    common = ["--input", noisy, "--sizes", sizes, "--batch-size", "2", "--threads", "1", "--device", "cpu"]
    res = run_cli("--model", *paths, *common, "--out-prefix", d / "ens", "--precision", "float32")
    assert res.returncode == 0, res.stderr
    single = run_cli("--model", paths[0], *common, "--out-prefix", d / "one", "--precision", "float32")
    assert single.returncode == 0, single.stderr
    return {"dir": d, "x": xs, "nets": nets, "paths": paths, "common": common, "stderr": res.stderr}


def test_cli_ensemble_writes_mean_tracks_spread_and_confidence(ensemble):
    prefix = ensemble["dir"] / "ens"
    assert "ensemble of 3 models" in ensemble["stderr"]
    for chrom, x in ensemble["x"].items():
        refs = [single_pass(net, x, WINDOW["pad"], TRANSFORM) for net in ensemble["nets"]]
        probs = np.stack([r[1] for r in refs])
        np.testing.assert_allclose(
            read_bigwig(f"{prefix}.track.bw", chrom), np.mean([r[0] for r in refs], 0), rtol=1e-5, atol=1e-5
        )
        np.testing.assert_allclose(read_bigwig(f"{prefix}.peakprob.bw", chrom), probs.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(read_bigwig(f"{prefix}.spread.bw", chrom), probs.std(0), rtol=1e-4, atol=1e-6)
    side = json.loads(Path(f"{prefix}.spread.bw.json").read_text())
    assert "standard deviation" in side["content"] and side["precision"] == "float32"
    assert side["ensemble"]["members"] == [str(p) for p in ensemble["paths"]]
    assert side["ensemble"]["threshold"] == pytest.approx(0.5)  # the mean of the members' thresholds
    # the narrowPeak: 10 columns, the score is the confidence from the written spread
    peaks = read_narrowpeak(Path(f"{prefix}.peaks.narrowPeak"), SIZES)
    raw = pd.read_csv(f"{prefix}.peaks.narrowPeak", sep="\t", header=None)
    assert raw.shape[1] == 10 and len(peaks) > 3
    spread = read_bigwig(f"{prefix}.spread.bw", "chr1")
    rows = peaks[peaks["chrom"] == "chr1"]
    mean = np.array([spread[s:e].astype(np.float64).mean() for s, e in zip(rows["start"], rows["end"])])
    assert raw[4].between(0, 1000).all()
    np.testing.assert_array_equal(rows["score"].to_numpy(), np.round(1000 * (1 - 2 * mean)).astype(int))


def test_cli_one_model_writes_no_spread_and_keeps_the_probability_score(ensemble):
    prefix = ensemble["dir"] / "one"
    assert not Path(f"{prefix}.spread.bw").exists()
    assert "ensemble" not in json.loads(Path(f"{prefix}.peakprob.bw.json").read_text())
    peaks = pd.read_csv(f"{prefix}.peaks.narrowPeak", sep="\t", header=None)
    np.testing.assert_array_equal(peaks[4], np.clip(np.round(1000 * peaks[6]), 0, 1000).astype(int))


def test_cli_refuses_the_same_model_twice(ensemble, tmp_path):
    path = ensemble["paths"][0]
    res = run_cli("--model", path, path, *ensemble["common"], "--out-prefix", tmp_path / "x")
    assert res.returncode == 2
    assert "names a file twice" in res.stderr
    assert not list(tmp_path.iterdir())


def test_threshold_command_with_the_spread_reproduces_the_ensemble_peaks(ensemble, tmp_path):
    prefix = ensemble["dir"] / "ens"
    out = tmp_path / "again.narrowPeak"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "atacdenoise.cli",
            "threshold",
            "--prob",
            f"{prefix}.peakprob.bw",
            "--track",
            f"{prefix}.track.bw",
            "--spread",
            f"{prefix}.spread.bw",
            "--threshold",
            "0.5",  # the members' mean threshold
            "--out",
            out,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert out.read_text() == Path(f"{prefix}.peaks.narrowPeak").read_text()
