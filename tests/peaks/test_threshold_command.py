"""``atacdenoise threshold``: peaks from an existing probability bigWig.

They equal inference's and the per-base caller's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atacdenoise import cli
from atacdenoise.io.bigwig import write_bigwig
from atacdenoise.io.intervals import read_narrowpeak
from atacdenoise.peaks.threshold import call_peaks, peak_table

SIZES = {"chr1": 400_000, "chr2": 150_000, "chr3": 5_000}


def probability(n: int, rng: np.random.Generator, smooth: bool) -> np.ndarray:
    """Islands of high probability over a low background; per-base noise unless ``smooth`` (runs of ~25 bp)."""
    if smooth:  # runs of ~25 bp: low in the background, mostly high in islands
        lengths = rng.geometric(1 / 25, n // 10)
        ends = np.cumsum(lengths)
        island = (ends // 2000) % 3 == 0
        vals = np.where(island, 0.45 + 0.55 * rng.random(lengths.size), 0.6 * rng.random(lengths.size) ** 3)
        vals = np.round(vals * 64) / 64  # few levels: tied maxima
        return np.pad(np.repeat(vals.astype(np.float32), lengths)[:n], (0, max(0, n - lengths.sum())))
    p = rng.random(n).astype(np.float32) * 0.4
    for a in rng.integers(0, n, n // 2000):
        p[a : a + int(rng.integers(50, 1500))] += 0.5
    return np.minimum(p, 1)


@pytest.fixture(scope="module", params=["smooth", "per-base"])
def tracks(request, tmp_path_factory):
    rng = np.random.default_rng(3)
    d = tmp_path_factory.mktemp(f"threshold-{request.param}")
    prob = {c: probability(n, rng, request.param == "smooth") for c, n in SIZES.items() if c != "chr3"}
    prob["chr3"] = np.zeros(SIZES["chr3"], np.float32)  # no peak at all
    track = {c: (10 * v + rng.random(v.size)).astype(np.float32) for c, v in prob.items()}
    write_bigwig(d / "s.peakprob.bw", SIZES, prob)
    write_bigwig(d / "s.track.bw", SIZES, track)
    return {"dir": d, "prob": prob, "track": track}


def expected(
    prob: dict, cutoff: float, track: dict | None = None, min_length: int = 200, max_gap: int = 30
) -> pd.DataFrame:
    rows = []
    for c in SIZES:
        s, e = call_peaks(prob[c], cutoff, min_length, max_gap)
        rows.append(peak_table(c, s, e, prob[c], track=None if track is None else track[c], name_prefix=f"{c}_peak"))
    return pd.concat(rows, ignore_index=True)


def run(d, *args) -> pd.DataFrame:
    out = d / "out.narrowPeak"
    assert cli.main(["threshold", "--prob", str(d / "s.peakprob.bw"), "--out", str(out), *map(str, args)]) == 0
    return read_narrowpeak(out)


def same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert len(got) == len(want) and len(want) > 20
    for col in ("chrom", "start", "end", "name", "score", "summit"):
        assert got[col].tolist() == want[col].tolist(), col
    np.testing.assert_allclose(got["signal"], want["signal"], rtol=1e-4)


@pytest.mark.parametrize("cutoff", [0.5, 0.8])
def test_equals_per_base_caller(tracks, cutoff):
    same(run(tracks["dir"], "--threshold", cutoff), expected(tracks["prob"], cutoff))


def test_summits_on_the_denoised_track_and_options(tracks):
    d = tracks["dir"]
    same(
        run(d, "--threshold", 0.5, "--track", d / "s.track.bw", "--threads", 2),
        expected(tracks["prob"], 0.5, tracks["track"]),
    )
    got = run(d, "--threshold", 0.6, "--min-length", 50, "--max-gap", 0, "--chroms", "chr2")
    want = expected(tracks["prob"], 0.6, min_length=50, max_gap=0)
    same(got, want[want.chrom == "chr2"].reset_index(drop=True))


def test_bad_arguments(tracks, tmp_path):
    d = tracks["dir"]
    assert (
        cli.main(["threshold", "--prob", str(d / "s.peakprob.bw"), "--out", str(tmp_path / "x"), "--threshold", "1.5"])
        == 2
    )
    assert (
        cli.main(
            [
                "threshold",
                "--prob",
                str(d / "s.peakprob.bw"),
                "--out",
                str(tmp_path / "x"),
                "--threshold",
                "0.5",
                "--chroms",
                "chrZ",
            ]
        )
        == 2
    )
    assert (
        cli.main(["threshold", "--prob", str(tmp_path / "none.bw"), "--out", str(tmp_path / "x"), "--threshold", "0.5"])
        == 2
    )
    assert not (tmp_path / "x").exists()


def test_windows_give_the_same_peaks(tracks, monkeypatch):
    """Per-base chromosomes are read in windows (bounded memory): peaks across window edges come out whole."""
    from atacdenoise.peaks import threshold

    monkeypatch.setattr(threshold, "WINDOW", 7_777)
    d = tracks["dir"]
    same(run(d, "--threshold", 0.5, "--track", d / "s.track.bw"), expected(tracks["prob"], 0.5, tracks["track"]))
    same(run(d, "--threshold", 0.5), expected(tracks["prob"], 0.5))


def test_too_many_runs_above_the_threshold_are_called_per_base(tracks, monkeypatch):
    """More runs (or bases) above the threshold than MAX_RUNS: the chromosome is called per base.

    The peaks are the same.
    """
    from atacdenoise.peaks import threshold

    monkeypatch.setattr(threshold, "MAX_RUNS", 10)
    monkeypatch.setattr(threshold, "WINDOW", 50_000)
    same(run(tracks["dir"], "--threshold", 0.5), expected(tracks["prob"], 0.5))
