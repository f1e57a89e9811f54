"""call_peaks / peak_table: hand-computed cases and exact agreement with ``macs3 bdgpeakcall``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from atacdenoise.io.intervals import NARROWPEAK_COLUMNS, run_lengths
from atacdenoise.peaks.macs3 import write_bedgraph
from atacdenoise.peaks.threshold import call_peaks, call_peaks_runs, peak_summits, peak_table, peak_table_runs

MACS3 = shutil.which("macs3") or shutil.which("macs3", path=str(Path(sys.executable).parent))
needs_macs3 = pytest.mark.skipif(MACS3 is None, reason="macs3 not installed")


def track_from_runs(runs: list[tuple[int, float]]) -> np.ndarray:
    """Per-base float32 track from (length, value) runs."""
    return np.concatenate([np.full(n, v, dtype=np.float32) for n, v in runs])


#: the behaviour experiment that settled bdgpeakcall's semantics (MACS3 3.0.4), -c 3 -g 30:
#: [100,150) = 3 (== cutoff) + gap 30 + [180,260) = 3.5 merge; gap 31 to [291,400) does not;
#: [400,1000) = 2.99999 is below; [1000,1100) and [1131,1200) are 31 apart.
SEMANTICS = [
    (100, 0),
    (50, 3),
    (30, 0),
    (80, 3.5),
    (31, 0),
    (109, 5),
    (600, 2.99999),
    (100, 3),
    (31, 0),
    (69, 3),
    (800, 0),
]


def test_cutoff_is_inclusive_and_gap_of_max_gap_merges():
    s, e = call_peaks(track_from_runs(SEMANTICS), cutoff=3, min_length=60, max_gap=30)
    assert s.tolist() == [100, 291, 1000, 1131]
    assert e.tolist() == [260, 400, 1100, 1200]


def test_min_length_applies_after_merging_and_is_inclusive():
    track = track_from_runs(SEMANTICS)
    # [100,150) alone is 50 bp but the merged peak [100,260) is 160 bp: kept at -l 160, dropped at -l 161
    assert call_peaks(track, 3, min_length=160, max_gap=30)[0].tolist() == [100]
    assert call_peaks(track, 3, min_length=161, max_gap=30)[0].tolist() == []
    # with -g 29 the 30-bp gap splits it: the 50-bp half is dropped at -l 60, the 80-bp half kept
    assert call_peaks(track, 3, min_length=60, max_gap=29)[0].tolist() == [180, 291, 1000, 1131]


def test_peaks_touching_both_chromosome_ends_and_edge_cases():
    track = track_from_runs([(250, 1.0), (500, 0.0), (300, 0.9)])
    s, e = call_peaks(track, 0.5)
    assert s.tolist() == [0, 750] and e.tolist() == [250, 1050]
    assert call_peaks(np.zeros(0, np.float32), 0.5)[0].size == 0
    assert call_peaks(np.zeros(1000, np.float32), 0.5)[0].size == 0
    s, e = call_peaks(np.ones(1000, np.float32), 0.5)
    assert s.tolist() == [0] and e.tolist() == [1000]
    # NaN is never a peak base
    nan_track = np.ones(600, np.float32)
    nan_track[100:400] = np.nan
    assert call_peaks(nan_track, 0.5, min_length=50)[0].tolist() == [0, 400]


def test_score_compared_as_float32_like_macs3():
    # 0.1 as float64 is below float32(0.1): MACS3 stores float32, so the base is a peak base
    track = np.full(300, 0.1, dtype=np.float64)
    assert call_peaks(track, np.float32(0.1), min_length=200)[0].tolist() == [0]


def peaky_probability(length: int, seed: int) -> np.ndarray:
    """Probability track: islands of many lengths, levels and gaps (around the -l/-g limits), per-base noise."""
    rng = np.random.default_rng(seed)
    prob = rng.uniform(0.0, 0.5, size=length).astype(np.float32)
    prob[rng.random(length) < 0.001] = 0.5  # isolated bases exactly at the cutoff
    pos = int(rng.integers(0, 50))
    while pos < length:
        n = int(rng.choice([rng.integers(1, 60), rng.integers(150, 260), rng.integers(300, 3000)]))
        m = min(n, length - pos)
        prob[pos : pos + m] = np.clip(rng.uniform(0.45, 1.0) + rng.normal(0, 0.03, size=m), 0, 1)
        pos += n + int(rng.choice([rng.integers(1, 40), rng.integers(25, 36), rng.integers(100, 5000)]))
    return prob


def macs3_bdgpeakcall(
    tmp: Path, tracks: dict[str, np.ndarray], cutoff: float, min_length: int, max_gap: int
) -> pd.DataFrame:
    bdg = tmp / "score.bdg"
    with open(bdg, "w") as fh:
        for chrom, values in tracks.items():
            write_bedgraph(fh, chrom, values)
    args = [
        MACS3,
        "bdgpeakcall",
        "-i",
        str(bdg),
        "-c",
        str(cutoff),
        "-l",
        str(min_length),
        "-g",
        str(max_gap),
        "--no-trackline",
        "--outdir",
        str(tmp),
        "-o",
        "out.narrowPeak",
    ]
    subprocess.run(args, check=True, capture_output=True)
    out = tmp / "out.narrowPeak"
    if out.stat().st_size == 0:
        return pd.DataFrame(columns=[0, 1, 2])
    return pd.read_csv(out, sep="\t", header=None)


@needs_macs3
@pytest.mark.parametrize("cutoff,min_length,max_gap", [(0.5, 200, 30), (0.7, 50, 0), (0.5, 1, 100)])
def test_intervals_equal_macs3_bdgpeakcall_on_probability_track(tmp_path, cutoff, min_length, max_gap):
    tracks = {"chrA": peaky_probability(400_000, 1), "chrB": peaky_probability(150_000, 2)}
    macs = macs3_bdgpeakcall(tmp_path, tracks, cutoff, min_length, max_gap)
    total = 0
    for chrom, prob in tracks.items():
        s, e = call_peaks(prob, cutoff, min_length, max_gap)
        sub = macs[macs[0] == chrom]
        assert s.tolist() == sub[1].tolist()
        assert e.tolist() == sub[2].tolist()
        total += s.size
    assert total > 100  # the comparison covered many peaks


def test_summit_is_the_track_maximum_middle_of_ties():
    track = np.zeros(1000, np.float32)
    track[120] = 5.0  # peak 1: one maximum
    track[610:614] = 7.0  # peak 2: a 4-base plateau -> base 612 ((610 + 614) // 2, as MACS3)
    track[700] = 7.0  # ... and a later tie outside the plateau: ties are bases 610..613 and 700 -> middle is 612
    summits, maxima = peak_summits(np.array([100, 600]), np.array([300, 800]), track)
    assert summits.tolist() == [120, 612]
    assert maxima.tolist() == [5.0, 7.0]


def test_peak_table_columns_score_and_summit_offsets():
    prob = np.zeros(2000, np.float32)
    prob[100:400] = 0.6
    prob[250] = 0.95
    prob[1000:1300] = 1.0
    track = np.zeros(2000, np.float32)
    track[330] = 9.0  # the summit follows the track, not the probability
    track[1100] = 4.0
    s, e = call_peaks(prob, 0.5)
    df = peak_table("chr9", s, e, prob, track=track, name_prefix="x", first_number=7)
    assert list(df.columns) == NARROWPEAK_COLUMNS
    assert df["name"].tolist() == ["x_7", "x_8"]
    assert df["start"].tolist() == [100, 1000] and df["end"].tolist() == [400, 1300]
    assert df["summit"].tolist() == [230, 100]
    assert df["score"].tolist() == [950, 1000]  # round(1000 * max probability), capped at 1000
    np.testing.assert_allclose(df["signal"], [0.95, 1.0], rtol=1e-6)
    np.testing.assert_allclose(df["pval"], [-np.log10(0.05), 10.0], rtol=1e-5)
    # without a track the summit is at the probability's maximum
    assert peak_table("chr9", s, e, prob)["summit"].tolist()[0] == 150


def test_peak_table_of_no_peaks_is_empty_with_narrowpeak_columns():
    df = peak_table("chr1", np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(100, np.float32))
    assert df.empty and list(df.columns) == NARROWPEAK_COLUMNS


# --- the run-length path (smooth tracks read from a bigWig as runs) gives what the per-base path gives ---------------


def smooth_probability(length: int, seed: int, with_gaps: bool, negative: bool = False) -> np.ndarray:
    """Make a track of runs of equal values (~25 bp), plateaus of tied maxima and runs exactly at the cutoff.

    Zero stretches are optional (``with_gaps``).
    """
    rng = np.random.default_rng(seed)
    lengths = rng.geometric(1 / 25, length // 10)
    vals = np.round(rng.uniform(-0.3 if negative else 0.0, 1.0, lengths.size) * 8) / 8  # few levels: many ties
    track = np.repeat(vals.astype(np.float32), lengths)[:length]
    track = np.pad(track, (0, max(0, length - track.size)))
    if with_gaps:
        for a in rng.integers(0, length, 40):
            track[a : a + int(rng.integers(1, 400))] = 0
    return track


def as_runs(track: np.ndarray, drop_zeros: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the track as runs of equal values (zero runs left out when ``drop_zeros``, as a bigWig writer does)."""
    starts, ends, values = run_lengths(track)
    keep = values != 0 if drop_zeros else np.ones(values.size, bool)
    return starts[keep], ends[keep], values[keep]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "cutoff,min_length,max_gap", [(0.5, 200, 30), (0.75, 50, 0), (0.25, 1, 100), (0.0, 100, 10), (-0.1, 50, 5)]
)
def test_runs_path_equals_per_base_path(seed, cutoff, min_length, max_gap):
    track = smooth_probability(200_000, seed, with_gaps=seed % 2 == 0, negative=seed >= 4)
    want_s, want_e = call_peaks(track, cutoff, min_length, max_gap)
    want = peak_table("chrA", want_s, want_e, track, name_prefix="p", first_number=7)
    for drop_zeros in (True, False):
        rs, re_, rv = as_runs(track, drop_zeros)
        s, e = call_peaks_runs(rs, re_, rv, track.size, cutoff, min_length, max_gap)
        assert s.tolist() == want_s.tolist() and e.tolist() == want_e.tolist()
        for given in (None, cutoff):
            got = peak_table_runs("chrA", s, e, rs, re_, rv, name_prefix="p", first_number=7, cutoff=given)
            pd.testing.assert_frame_equal(got, want)
    assert want_s.size > 5 or cutoff <= 0


def test_runs_path_nan_reads_as_zero_and_no_runs():
    track = np.zeros(1000, np.float32)
    track[100:400] = 0.9
    rs, re_, rv = np.array([100, 400]), np.array([400, 500]), np.array([0.9, np.nan], np.float32)
    s, e = call_peaks_runs(rs, re_, rv, 1000, 0.5)
    assert (s.tolist(), e.tolist()) == ([100], [400])
    table = peak_table_runs("c", s, e, rs, re_, rv)
    assert table["summit"].tolist() == [150] and table["signal"].tolist() == pytest.approx([0.9])
    empty = np.zeros(0, np.int64)
    s, e = call_peaks_runs(empty, empty, np.zeros(0, np.float32), 1000, 0.5)
    assert s.size == e.size == 0
    assert list(peak_table_runs("c", s, e, empty, empty, np.zeros(0)).columns) == NARROWPEAK_COLUMNS


def test_narrowpeak_text_equals_pandas_to_csv(tmp_path):
    """The fast narrowPeak writer writes what pandas' to_csv(float_format='%.5g') wrote before it."""
    from atacdenoise.io.intervals import format_narrowpeak, write_narrowpeak

    rng = np.random.default_rng(0)
    n = 500
    df = pd.DataFrame(
        {
            "chrom": rng.choice(["chr1", "chr2", "chrUn_gl000220"], n),
            "start": rng.integers(0, 10**9, n),
            "end": rng.integers(0, 10**9, n),
            "name": [f"p_{i}" for i in range(n)],
            "score": rng.integers(0, 1001, n),
            "strand": ".",
            "signal": rng.random(n) * 10.0 ** rng.integers(-6, 6, n),
            "pval": rng.random(n).astype(np.float32),
            "qval": -1.0,
            "summit": rng.integers(-1, 500, n),
        }
    )
    df.loc[3, "signal"] = np.nan
    mixed = df.astype({"pval": object})  # floats inside an object column (after concatenating an empty frame)
    for frame in (df, mixed, df.iloc[:0]):
        want = frame[NARROWPEAK_COLUMNS].to_csv(sep="\t", header=False, index=False, float_format="%.5g")
        if frame is mixed:  # pandas leaves floats of object columns unformatted; we format them as the float columns
            want = df[NARROWPEAK_COLUMNS].to_csv(sep="\t", header=False, index=False, float_format="%.5g")
        assert format_narrowpeak(frame) == want
    write_narrowpeak(df, tmp_path / "x.narrowPeak")
    assert (tmp_path / "x.narrowPeak").read_text() == format_narrowpeak(df)


def _last_cut_by_windows(prob: np.ndarray, threshold: float, quiet: int) -> int:
    """Return the definition's cut: the end of the last window of ``quiet`` bases all below the threshold (0: none)."""
    below = prob < threshold
    if below.size < quiet:
        return 0
    c = np.concatenate(([0], np.cumsum(below, dtype=np.int64)))
    full = np.flatnonzero(c[quiet:] - c[:-quiet] == quiet)
    return int(full[-1] + quiet) if full.size else 0


@pytest.mark.parametrize("seed", range(40))
def test_stream_cut_is_the_end_of_the_last_quiet_run_nan_neither_below_nor_above(seed):
    from atacdenoise.peaks.threshold import PeakStream

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 400))
    prob = np.where(rng.random(n) < rng.uniform(0.0, 0.2), 0.9, 0.1).astype(np.float32)
    prob[rng.random(n) < 0.02] = np.nan
    if seed % 5 == 0:
        prob[:] = 0.1  # all below: the cut is the end
    if seed % 7 == 0 and n:
        prob[-1] = 0.5  # at the threshold: not below
    stream = PeakStream("chrT", 0.5, min_length=20, max_gap=int(rng.integers(0, 40)))
    assert stream._last_cut(prob) == _last_cut_by_windows(prob, 0.5, stream.quiet)
