"""The native bigWig reader against pyBigWig (libBigWig).

On files written by UCSC-style tools, libBigWig and our writer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyBigWig
import pytest

from atacdenoise.io import bbiread
from atacdenoise.io.bbiread import BigWigFileReader, BigWigReadError
from atacdenoise.io.bigwig import write_bigwig
from conftest import SHARED_DATA

SHARED = SHARED_DATA
PUBLISHED = SHARED / "hsc" / "HSC_5M.published_coverage.chr1_chr2.bw"
SIZES = {"chr1": 300_000, "chr2": 123_457, "chrM": 16_569}


def reference(path: Path, chrom: str, start: int, end: int) -> np.ndarray:
    if start == end:  # pyBigWig refuses empty ranges
        return np.zeros(0, dtype=np.float32)
    bw = pyBigWig.open(str(path))
    try:
        return np.asarray(bw.values(chrom, start, end, numpy=True), dtype=np.float32)
    finally:
        bw.close()


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == np.float32 and a.shape == b.shape
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_array_equal(a[~np.isnan(a)], b[~np.isnan(b)])


def queries(length: int, rng: np.random.Generator, n: int = 25) -> list[tuple[int, int]]:
    out = [(0, length), (0, 1), (length - 1, length), (length // 3, length // 3)]
    for _ in range(n):
        a = int(rng.integers(0, length))
        out.append((a, int(rng.integers(a, min(length, a + int(rng.choice([10, 1_000, 50_000])))) + 1)))
    return out


def check_file(path: Path, sizes: dict[str, int], threads: int = 1, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with BigWigFileReader(path, threads=threads) as r:
        assert r.chroms() == pyBigWig.open(str(path)).chroms()
        for chrom, length in sizes.items():
            assert r.chroms(chrom) == length
            for a, b in queries(length, rng):
                want = reference(path, chrom, a, b)
                assert_same(r.values(chrom, a, b), want)
                filled = r.values(chrom, a, b, fill=0.0)
                np.testing.assert_array_equal(filled, np.nan_to_num(want, nan=0.0))
                # runs paint the same values
                s, e, v = r.runs(chrom, a, b)
                assert np.all(s < e) and np.all(s[1:] >= e[:-1]) and (not s.size or (s[0] >= a and e[-1] <= b))
                painted = np.full(b - a, np.nan, dtype=np.float32)
                painted[np.repeat(s - a - (np.cumsum(e - s) - (e - s)), e - s) + np.arange(int((e - s).sum()))] = (
                    np.repeat(v, e - s)
                )
                assert_same(painted, want)
                # the runs at or above a cutoff are those runs, selected
                for cut in (0.5, np.float32(v.max()) if v.size else 1.0):
                    keep = v >= np.float32(cut)
                    got = r.runs_at_least(chrom, cut, a, b)
                    for x, y in zip(got, (s[keep], e[keep], v[keep])):
                        np.testing.assert_array_equal(x, y)
                assert r.runs_at_least(chrom, -1.0, a, b, max_runs=-1) is None or not s.size
            ref = pyBigWig.open(str(path))
            want_sum = ref.stats(chrom, 0, length, type="sum", exact=True)[0]
            ref.close()
            got = r.stats(chrom, 0, length, type="sum", exact=True)[0]
            assert (got is None) == (want_sum is None)
            if (
                got is not None
            ):  # libBigWig's sum is rounded a little differently; ours is the float64 sum of the values
                assert got == pytest.approx(want_sum, rel=1e-7)
                assert got == pytest.approx(np.nansum(reference(path, chrom, 0, length).astype(np.float64)), rel=1e-12)


def mixed_tracks(sizes: dict[str, int], seed: int = 1) -> dict[str, np.ndarray]:
    """Per-base noise, smooth runs and long zero stretches in one track (both block kinds of our writer)."""
    rng = np.random.default_rng(seed)
    tracks = {}
    for chrom, n in sizes.items():
        t = np.repeat(rng.integers(0, 6, n // 20 + 1).astype(np.float32), 20)[:n]
        t[n // 4 : n // 2] = rng.random(n // 2 - n // 4).astype(np.float32)  # per-base stretch
        t[n // 2 : n // 2 + 5000] = 0  # a long zero run (left out of the file)
        tracks[chrom] = t
    return tracks


def test_our_writer_mixed_blocks(tmp_path):
    path = tmp_path / "mixed.bw"
    write_bigwig(path, SIZES, mixed_tracks(SIZES))
    check_file(path, SIZES)
    check_file(path, SIZES, threads=2, seed=5)


def test_small_batches_and_empty_chromosome(tmp_path, monkeypatch):
    """Queries spanning many decode batches, and a chromosome with no data at all."""
    path = tmp_path / "batches.bw"
    tracks = mixed_tracks(SIZES)
    del tracks["chr2"]
    write_bigwig(path, SIZES, tracks)
    monkeypatch.setattr(bbiread, "BATCH_BYTES", 40_000)
    check_file(path, SIZES, seed=3)
    with BigWigFileReader(path) as r:
        assert np.isnan(r.values("chr2")).all()
        s, e, v = r.runs("chr2")
        assert s.size == e.size == v.size == 0
        assert r.stats("chr2")[0] is None


def write_libbigwig(path: Path, sizes: dict[str, int], kind: str, rng: np.random.Generator) -> None:
    """Files in each of the three section types, written by libBigWig (pyBigWig)."""
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(list(sizes.items()), maxZooms=2)
    for chrom, n in sizes.items():
        if kind == "bedgraph":
            bounds = np.unique(rng.integers(0, n, 4000))
            starts, ends = bounds[:-1:2], bounds[1::2]
            bw.addEntries(
                [chrom] * starts.size, starts.tolist(), ends=ends.tolist(), values=rng.random(starts.size).tolist()
            )
        elif kind == "varstep":
            starts = np.unique(rng.integers(0, n - 7, 3000))
            starts = starts[np.concatenate(([True], np.diff(starts) >= 7))]
            bw.addEntries(chrom, starts.tolist(), values=rng.random(starts.size).tolist(), span=7)
        elif kind == "fixedstep-gapped":  # span 5 every 9 bases: gaps between items
            m = (n - 100) // 9
            bw.addEntries(chrom, 100, values=rng.random(m).tolist(), span=5, step=9)
        elif kind == "fixedstep-span":  # span == step == 3: contiguous, each value over 3 bases
            m = (n - 10) // 3
            bw.addEntries(chrom, 10, values=rng.random(m).tolist(), span=3, step=3)
        else:  # per base
            bw.addEntries(chrom, 0, values=rng.random(n).tolist(), span=1, step=1)
    bw.close()


@pytest.mark.parametrize("kind", ["bedgraph", "varstep", "fixedstep-gapped", "fixedstep-span", "perbase"])
def test_libbigwig_files(tmp_path, kind):
    sizes = {"chr1": 60_000, "chr2": 20_011}
    path = tmp_path / f"{kind}.bw"
    write_libbigwig(path, sizes, kind, np.random.default_rng(7))
    check_file(path, sizes)


@pytest.mark.skipif(not PUBLISHED.exists(), reason="needs ../shared/data")
def test_published_ucsc_bigwig():
    """A real bigWig from another pipeline (the AtacWorks fixture's 5M coverage, hg19 chr1/chr2 10 Mb)."""
    sizes = pyBigWig.open(str(PUBLISHED)).chroms()
    check_file(PUBLISHED, sizes, seed=11)
    with BigWigFileReader(PUBLISHED, threads=2) as r:
        for chrom, n in sizes.items():
            assert_same(r.values(chrom), reference(PUBLISHED, chrom, 0, n))


def test_errors(tmp_path):
    text = tmp_path / "peaks.bed"
    text.write_text("chr1\t1\t2\n" * 40)
    with pytest.raises(BigWigReadError, match="not a bigWig"):
        BigWigFileReader(text)
    short = tmp_path / "short.bw"
    short.write_bytes(b"\x26\xfc\x8f\x88")
    with pytest.raises(BigWigReadError, match="too short"):
        BigWigFileReader(short)
    path = tmp_path / "ok.bw"
    write_bigwig(path, SIZES, mixed_tracks(SIZES))
    truncated = tmp_path / "truncated.bw"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(BigWigReadError):
        r = BigWigFileReader(truncated)
        r.values("chr1")
    with BigWigFileReader(path) as r:
        with pytest.raises(KeyError, match="chr9"):
            r.values("chr9", 0, 10)
        with pytest.raises(ValueError, match="invalid range"):
            r.values("chr1", 10, SIZES["chr1"] + 1)


@pytest.mark.parametrize("threads", [1, 2])
def test_damaged_block_is_a_clear_error(tmp_path, threads):
    path = tmp_path / "ok.bw"
    write_bigwig(path, SIZES, mixed_tracks(SIZES))
    with BigWigFileReader(path) as r:
        leaves = r._leaves(r._chrom_ids["chr1"])
    raw = bytearray(path.read_bytes())
    for leaf in leaves[: min(16, leaves.size)]:  # overwrite the middle of several compressed blocks
        mid = int(leaf["offset"]) + int(leaf["size"]) // 2
        raw[mid : mid + 8] = b"\xff" * 8
    bad = tmp_path / "bad.bw"
    bad.write_bytes(bytes(raw))
    with BigWigFileReader(bad, threads=threads) as r, pytest.raises(BigWigReadError, match="damaged"):
        r.values("chr1")


@pytest.mark.parametrize("fill", [np.nan, 0.0])
def test_painting_runs_fills_the_gaps_in_one_pass_only_where_nothing_was_painted(fill):
    """The fast route (gaps take the fill) equals putting the gaps' bases back, wherever it is allowed to run."""
    rng = np.random.default_rng(4)
    bounds = np.unique(rng.integers(0, 5_000, 800))
    runs = bbiread._Decoded(bounds[:-1:2] + 1_000, bounds[1::2] + 1_000, rng.random(bounds.size // 2, np.float32))
    slow = np.full(8_000, fill, np.float32)
    fast = slow.copy()
    assert bbiread._paint_runs(slow, 500, runs, fill, None) == bbiread._paint_runs(fast, 500, runs, fill, 0)
    assert_same(fast, slow)
    # bases painted before, between these runs: kept when the caller says they are not clean
    before = np.full(8_000, fill, np.float32)
    before[::3] = 7.0
    kept = before.copy()
    clean = bbiread._paint_runs(kept, 500, runs, fill, clean=8_000)
    assert clean == 8_000
    inside = np.zeros(8_000, bool)
    for s, e in zip(runs.starts - 500, runs.ends - 500):
        inside[s:e] = True
    assert_same(kept[~inside], before[~inside])
    assert_same(kept[inside], fast[inside])
