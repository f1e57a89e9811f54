"""``atacdenoise threshold`` (the run-length path) against the real ``macs3 bdgpeakcall`` on smooth tracks.

The command reads a probability bigWig as runs (``BigWigFileReader.runs_at_least``)
and calls peaks from them (:func:`call_peaks_runs`, :func:`peak_table_runs`),
never painting bases. Here the same track goes to MACS3 as a bedGraph, with
the same cutoff, ``-l`` and ``-g``; the peak intervals must be identical.

Summits: MACS3 takes the midpoint of every run that ties the peak's maximum
and reports the middle one of those midpoints (``bedGraphTrackI.__close_peak``);
ours is the middle base of all tied bases together. With one maximal run both
are ``start + length // 2`` and must be equal; with several they may differ
(on the real track below, 196-334 of 775-1532 peaks): then MACS3's must follow
its rule above and ours must sit on a base holding the peak's maximum.

Tracks: a real smooth track (the AtacWorks fixture's 5M HSC coverage, 201-bp
boxes, turned into a probability ``1 - exp(-coverage / 2)``) and synthetic
smooth tracks with ties, zero gaps and runs exactly at the cutoff. The bigWig
is written with pyBigWig and the bedGraph by this test, not by our writers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyBigWig
import pytest

from atacdenoise import cli
from atacdenoise.io.bigwig import read_bigwig
from conftest import SHARED_DATA

MACS3 = shutil.which("macs3") or shutil.which("macs3", path=str(Path(sys.executable).parent))
HSC_TRACK = SHARED_DATA / "hsc" / "HSC_5M.published_coverage.chr1_chr2.bw"
needs_macs3_and_data = pytest.mark.skipif(
    MACS3 is None or not HSC_TRACK.is_file(), reason=f"macs3 or {HSC_TRACK} not found"
)


def runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of equal values: starts, ends (int64), values (float32)."""
    values = np.asarray(values, dtype=np.float32)
    bounds = np.concatenate(([0], np.flatnonzero(values[1:] != values[:-1]) + 1, [values.size]))
    return bounds[:-1], bounds[1:], values[bounds[:-1]]


def write_tracks(tmp: Path, tracks: dict[str, np.ndarray], drop_zeros: bool) -> tuple[Path, Path]:
    """Write the tracks as a pyBigWig bigWig (zero runs left out when ``drop_zeros``) and as a full bedGraph."""
    bw_path, bdg_path = tmp / "prob.bw", tmp / "prob.bdg"
    bw = pyBigWig.open(str(bw_path), "w")
    bw.addHeader([(c, int(v.size)) for c, v in tracks.items()], maxZooms=0)
    lines = []
    for chrom, values in tracks.items():
        s, e, v = runs(values)
        keep = v != 0 if drop_zeros else np.ones(v.size, bool)
        bw.addEntries([chrom] * int(keep.sum()), s[keep].tolist(), ends=e[keep].tolist(), values=v[keep].tolist())
        # repr of each float32 as a double: MACS3 parses it back to the same float32
        lines += [f"{chrom}\t{a}\t{b}\t{float(x)!r}\n" for a, b, x in zip(s, e, v, strict=True)]
    bw.close()
    bdg_path.write_text("".join(lines))
    return bw_path, bdg_path


def macs3_bdgpeakcall(tmp: Path, bdg: Path, cutoff: float, min_length: int, max_gap: int) -> pd.DataFrame:
    """Run ``macs3 bdgpeakcall``; returns chrom, start, end, summit (absolute)."""
    out = tmp / "macs3.narrowPeak"
    args = [MACS3, "bdgpeakcall", "-i", str(bdg), "-c", repr(cutoff), "-l", str(min_length), "-g", str(max_gap)]
    subprocess.run([*args, "--no-trackline", "--outdir", str(tmp), "-o", out.name], check=True, capture_output=True)
    cols = ["chrom", "start", "end", "summit"]
    if out.stat().st_size == 0:
        return pd.DataFrame(columns=cols)
    df = pd.read_csv(out, sep="\t", header=None)
    return pd.DataFrame({"chrom": df[0], "start": df[1], "end": df[2], "summit": df[1] + df[9]})


def ours(tmp: Path, bw: Path, cutoff: float, min_length: int, max_gap: int) -> pd.DataFrame:
    """Run ``atacdenoise threshold`` (no --track: the run-length path); returns chrom, start, end, summit."""
    out = tmp / "ours.narrowPeak"
    argv = ["threshold", "--prob", str(bw), "--threshold", repr(cutoff), "--out", str(out)]
    assert cli.main([*argv, "--min-length", str(min_length), "--max-gap", str(max_gap)]) == 0
    if out.stat().st_size == 0:
        return pd.DataFrame(columns=["chrom", "start", "end", "summit"])
    df = pd.read_csv(out, sep="\t", header=None)
    return pd.DataFrame({"chrom": df[0], "start": df[1], "end": df[2], "summit": df[1] + df[9]})


def compare(tmp: Path, tracks: dict[str, np.ndarray], cutoff: float, min_length: int, max_gap: int) -> dict[str, int]:
    """Assert identical intervals and explained summits for both bigWig layouts; return what was compared."""
    seen = {}
    for drop_zeros in (True, False):
        bw, bdg = write_tracks(tmp, tracks, drop_zeros)
        want = macs3_bdgpeakcall(tmp, bdg, cutoff, min_length, max_gap)
        got = ours(tmp, bw, cutoff, min_length, max_gap)
        # MACS3 sorts chromosomes by name; ours follows the bigWig's order
        want = want.sort_values(["chrom", "start"], ignore_index=True)
        got = got.sort_values(["chrom", "start"], ignore_index=True)
        pd.testing.assert_frame_equal(got[["chrom", "start", "end"]], want[["chrom", "start", "end"]])
        same_summit = got["summit"].to_numpy() == want["summit"].to_numpy()
        single = np.zeros(len(got), dtype=bool)
        for i, (chrom, s, e) in enumerate(got[["chrom", "start", "end"]].itertuples(index=False)):
            values = tracks[chrom][s:e]
            rs, re_, rv = runs(values)
            tied = rv == values.max()
            single[i] = tied.sum() == 1
            mids = (rs[tied] + re_[tied]) // 2  # MACS3: the middle one of the tied runs' midpoints
            assert want["summit"][i] - s == mids[(mids.size + 1) // 2 - 1]
            assert values[got["summit"][i] - s] == values.max(), f"{chrom}:{s}-{e}: our summit is not on a maximum"
        assert same_summit[single].all(), got[single & ~same_summit]
        seen = {"peaks": len(got), "single_max_run": int(single.sum()), "summit_differs": int((~same_summit).sum())}
    return seen


@pytest.fixture(scope="module")
def hsc_probability() -> dict[str, np.ndarray]:
    """Read the real smooth coverage (chr1, chr2 of the 5M HSC track) as a probability, float32."""
    out = {}
    for chrom in ("chr1", "chr2"):
        cov = read_bigwig(HSC_TRACK, chrom).astype(np.float64)
        out[chrom] = (1.0 - np.exp(-cov / 2.0)).astype(np.float32)
    return out


@needs_macs3_and_data
@pytest.mark.parametrize(
    "cutoff,min_length,max_gap",
    [(0.7768698, 200, 30), (0.7768698, 50, 0), (0.9, 1, 100), (0.5, 300, 250)],  # 0.7768698 == 1 - exp(-3 / 2)
)
def test_threshold_command_equals_macs3_on_real_smooth_track(tmp_path, hsc_probability, cutoff, min_length, max_gap):
    seen = compare(tmp_path, hsc_probability, cutoff, min_length, max_gap)
    print(f"HSC 5M -c {cutoff} -l {min_length} -g {max_gap}: {seen}")
    assert seen["peaks"] > 100 and seen["single_max_run"] > 50


def synthetic_smooth(length: int, seed: int) -> np.ndarray:
    """Make runs of ~25 bp on few levels (many tied maxima), zero gaps, runs exactly at the cutoffs 0.5 and 0.75."""
    rng = np.random.default_rng(seed)
    lengths = rng.geometric(1 / 25, length // 10)
    vals = np.round(rng.uniform(0.0, 1.0, lengths.size) * 8) / 8
    track = np.repeat(vals.astype(np.float32), lengths)[:length]
    track = np.pad(track, (0, max(0, length - track.size)))
    for a in rng.integers(0, length, 40):
        track[a : a + int(rng.integers(1, 400))] = 0
    return track


@needs_macs3_and_data
@pytest.mark.parametrize("cutoff,min_length,max_gap", [(0.5, 200, 30), (0.75, 50, 0), (0.25, 1, 100)])
def test_threshold_command_equals_macs3_on_synthetic_smooth_tracks_with_ties(tmp_path, cutoff, min_length, max_gap):
    tracks = {"chrA": synthetic_smooth(300_000, 1), "chrB": synthetic_smooth(120_000, 2)}
    seen = compare(tmp_path, tracks, cutoff, min_length, max_gap)
    print(f"synthetic -c {cutoff} -l {min_length} -g {max_gap}: {seen}")
    assert seen["peaks"] > 20
