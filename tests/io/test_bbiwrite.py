"""The native bigWig writer: read back by two independent readers (libBigWig via pyBigWig, UCSC's library via pybbi)."""

from __future__ import annotations

import struct

import bbi
import numpy as np
import pyBigWig
import pytest

from atacdenoise.io import bbiwrite
from atacdenoise.io.bbiwrite import BigWigFileWriter


def read_bigwig(path, chrom: str) -> np.ndarray:
    """Values read back by libBigWig (independent of our reader), missing bases as 0."""
    with pyBigWig.open(str(path)) as bw:
        return np.nan_to_num(np.asarray(bw.values(chrom, 0, bw.chroms(chrom), numpy=True), dtype=np.float32), nan=0.0)


SIZES = {"chr2": 300_000, "chr1": 123_457, "chrX": 5_000, "chrY": 40_000}


def make_tracks(seed: int = 0) -> dict[str, np.ndarray]:
    """Per-base tracks of every kind the writer meets: dense floats with zeros, long zero gaps, step-like, empty."""
    rng = np.random.default_rng(seed)
    out = {}
    v = rng.random(SIZES["chr2"]).astype(np.float32)
    v[rng.random(v.size) < 0.3] = 0
    v[10_000:14_000] = 0  # a gap long enough to be left out
    v[:50] = 0
    out["chr2"] = v
    out["chr1"] = np.repeat(rng.integers(0, 4, SIZES["chr1"] // 50 + 1), 50)[: SIZES["chr1"]].astype(np.float32)
    out["chrX"] = (rng.random(SIZES["chrX"]) * 1e3).astype(np.float32)
    out["chrY"] = np.zeros(SIZES["chrY"], np.float32)
    return out


def write(path, tracks, chunk: int = 77_777, **kw) -> None:
    with BigWigFileWriter(path, SIZES, **kw) as w:
        for c, v in tracks.items():
            for a in range(0, v.size, chunk):
                w.add(c, a, v[a : a + chunk])


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    tracks = make_tracks()
    path = tmp_path_factory.mktemp("bbi") / "t.bw"
    write(path, tracks, threads=2)
    return path, tracks


def test_values_identical_in_both_readers(written):
    path, tracks = written
    for c, v in tracks.items():
        assert np.array_equal(read_bigwig(path, c), v), c
        kent = bbi.fetch(str(path), c, 0, SIZES[c], missing=0.0)
        assert np.array_equal(kent.astype(np.float32), v), c
    with pyBigWig.open(str(path)) as bw:
        assert bw.chroms() == SIZES
        # skipped zeros are missing, written ones are present
        assert bw.intervals("chr2", 10_000, 14_000) is None
        assert bw.intervals("chrY") is None


def test_header_summary_and_zoom_levels(written):
    path, tracks = written
    with pyBigWig.open(str(path)) as bw:
        head = bw.header()
    covered = sum(
        int(sum(b - a for a, b in bbiwrite.dense_segments(v))) if c != "chr1" else int(np.count_nonzero(v))
        for c, v in tracks.items()
    )
    allv = np.concatenate(
        [v[a:b] for c, v in tracks.items() if c != "chr1" for a, b in bbiwrite.dense_segments(v)]
        + [tracks["chr1"][tracks["chr1"] != 0]]
    )
    assert head["nBasesCovered"] == covered == allv.size
    total = float(allv.astype(np.float64).sum())
    assert head["sumData"] == pytest.approx(total, abs=1)  # pyBigWig reports it as an integer
    assert head["maxVal"] == pytest.approx(float(allv.max()), abs=1)
    # zoom levels 128, 512, ..., none coarser than the longest chromosome (300 kb): six
    levels = [bbiwrite.FIRST_ZOOM * bbiwrite.ZOOM_FACTOR**k for k in range(10)]
    assert head["nLevels"] == len([r for r in levels if r <= max(SIZES.values())]) == 6
    info = bbi.info(str(path))
    assert info["zoomLevels"] == 6
    assert info["summary"]["basesCovered"] == covered
    assert info["summary"]["sum"] == pytest.approx(total, rel=1e-9)
    assert info["summary"]["max"] == pytest.approx(float(allv.max()))
    assert info["summary"]["min"] == 0.0


def test_zoom_summaries_match_exact(written):
    """Whole-chromosome and bin-aligned summaries from the zoom levels equal the exact ones (both readers)."""
    path, _tracks = written
    with pyBigWig.open(str(path)) as bw:
        for c in ("chr2", "chr1", "chrX"):
            for stat in ("mean", "max", "min", "coverage"):
                exact = bw.stats(c, 0, SIZES[c], type=stat, exact=True)[0]
                zoomed = bw.stats(c, 0, SIZES[c], type=stat)[0]
                assert zoomed == pytest.approx(exact, rel=1e-6), (c, stat)
        # 2,048-bp bins on chr2: covered by whole zoom records of the 512-bp level
        exact = np.array(bw.stats("chr2", 0, 2048 * 100, nBins=100, exact=True), dtype=float)
        zoomed = np.array(bw.stats("chr2", 0, 2048 * 100, nBins=100), dtype=float)
        np.testing.assert_allclose(zoomed, exact, rtol=1e-5)
    kent = bbi.fetch(str(path), "chr2", 0, 2048 * 100, bins=100, summary="mean")
    kent_exact = bbi.fetch(str(path), "chr2", 0, 2048 * 100, bins=100, summary="mean", exact=True)
    np.testing.assert_allclose(kent, kent_exact, rtol=1e-5)


def test_same_file_for_any_thread_count_and_chunking(tmp_path, written):
    path, tracks = written
    write(tmp_path / "one.bw", tracks, threads=1)
    assert (tmp_path / "one.bw").read_bytes() == path.read_bytes()
    write(tmp_path / "small.bw", tracks, chunk=9_999, threads=3)
    for c, v in tracks.items():
        assert np.array_equal(read_bigwig(tmp_path / "small.bw", c), v)
    # which zeros are written depends on the chunking (runs of zeros at a chunk's edges are left out), the values do not
    with pyBigWig.open(str(tmp_path / "small.bw")) as a, pyBigWig.open(str(path)) as b:
        assert a.stats("chrX", 0, SIZES["chrX"], nBins=37) == pytest.approx(
            b.stats("chrX", 0, SIZES["chrX"], nBins=37), rel=1e-6
        )


def test_deep_trees_many_chromosomes_and_blocks(tmp_path):
    """600 chromosomes (a two-level chromosome tree) and > 256 data blocks (a two-level R-tree)."""
    sizes = {f"scaffold_{i}": 1000 + 37 * i for i in range(600)}
    sizes["chrBig"] = 3_000_000
    rng = np.random.default_rng(1)
    tracks = {c: (rng.random(n) + 0.5).astype(np.float32) for c, n in sizes.items()}
    path = tmp_path / "deep.bw"
    with BigWigFileWriter(path, sizes, threads=2) as w:
        for c, v in tracks.items():
            w.add(c, 0, v)
    with pyBigWig.open(str(path)) as bw:
        assert bw.chroms() == sizes
        for c in ("scaffold_0", "scaffold_333", "scaffold_599", "chrBig"):
            assert np.array_equal(np.array(bw.values(c, 0, sizes[c]), np.float32), tracks[c])
        assert bw.stats("chrBig", 1_234_567, 2_345_678, exact=True) == pytest.approx(
            [float(tracks["chrBig"][1_234_567:2_345_678].astype(np.float64).mean())]
        )
    assert len(bbi.chromsizes(str(path))) == 601
    got = bbi.fetch(str(path), "chrBig", 2_990_000, 3_000_000)
    assert np.array_equal(got.astype(np.float32), tracks["chrBig"][2_990_000:])
    # the data R-tree really has two levels: its root is not a leaf
    raw = path.read_bytes()
    index_offset = struct.unpack_from("<Q", raw, 24)[0]
    assert struct.unpack_from("<I", raw, index_offset)[0] == bbiwrite.RTREE_MAGIC
    assert raw[index_offset + 48] == 0


def test_empty_track_is_readable(tmp_path):
    path = tmp_path / "empty.bw"
    with BigWigFileWriter(path, {"chrA": 1000, "chrB": 50}):
        pass
    with pyBigWig.open(str(path)) as bw:
        assert bw.chroms() == {"chrA": 1000, "chrB": 50}
        assert bw.header()["nBasesCovered"] == 0
        assert bw.intervals("chrA") is None
    assert np.array_equal(read_bigwig(path, "chrA"), np.zeros(1000, np.float32))
    assert np.all(bbi.fetch(str(path), "chrA", 0, 1000, missing=0.0) == 0)


def test_bad_calls_are_refused(tmp_path):
    with BigWigFileWriter(tmp_path / "x.bw", {"chrA": 100, "chrB": 100}) as w:
        w.add("chrB", 0, np.ones(10, np.float32))
        with pytest.raises(ValueError, match="out of order"):
            w.add("chrA", 0, np.ones(10, np.float32))
        with pytest.raises(ValueError, match="past the end"):
            w.add("chrB", 95, np.ones(10, np.float32))
        with pytest.raises(ValueError, match="not in this bigWig"):
            w.add("chrC", 0, np.ones(10, np.float32))


def test_zoom_records_of_runs_and_dense_agree():
    """The same values summarised as runs or as per-base data give the same zoom records."""
    rng = np.random.default_rng(4)
    v = np.repeat(rng.integers(1, 5, 40), rng.integers(1, 90, 40)).astype(np.float32)
    pos = 1000 + 7
    dense = bbiwrite.zoom_from_dense(0, pos, v, 32)
    assert dense["count"].sum() == v.size and dense["start"][1] % 32 == 0
    s = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
    e = np.r_[s[1:], v.size]
    runs = bbiwrite.zoom_from_runs(0, s + pos, e + pos, v[s], 32)
    for name in ("start", "end", "count", "min", "max"):
        assert np.array_equal(dense[name], runs[name]), name
    np.testing.assert_allclose(dense["sum"], runs["sum"])
    np.testing.assert_allclose(dense["sumsq"], runs["sumsq"])


def test_zoom_records_of_a_chunk_match_brute_force():
    """Per-bin count, min, max, sums and extent of the written bases, for random chunks, starts, gaps and bin sizes."""
    rng = np.random.default_rng(5)
    for _ in range(100):
        n, start, reduction = int(rng.integers(1, 3000)), int(rng.integers(0, 1000)), int(rng.choice([4, 32, 128]))
        values = (rng.random(n) - 0.3).astype(np.float32)
        written = np.ones(n, bool) if rng.random() < 0.3 else rng.random(n) < 0.7
        values[~written] = 0  # the writer leaves out only zeros
        rec = bbiwrite.zoom_from_mask(0, start, values, written, reduction)
        pos, vals = start + np.flatnonzero(written), values[written]
        bins = pos // reduction
        assert rec.size == np.unique(bins).size
        for r, b in zip(rec, np.unique(bins)):
            m = bins == b
            assert (r["start"], r["end"], r["count"]) == (pos[m][0], pos[m][-1] + 1, m.sum())
            assert (r["min"], r["max"]) == (vals[m].min(), vals[m].max())
            assert r["sum"] == pytest.approx(vals[m].astype(np.float64).sum(), abs=1e-5)
            assert r["sumsq"] == pytest.approx((vals[m].astype(np.float64) ** 2).sum(), abs=1e-5)


def test_fast_deflate_reads_back_the_same_values(tmp_path, written):
    """ISA-L (inference's tracks): other bytes, the same values, header and zoom summaries."""
    path, tracks = written
    fast = tmp_path / "fast.bw"
    write(fast, tracks, threads=2, fast=True)
    for c, v in tracks.items():
        assert np.array_equal(read_bigwig(fast, c), v)
        assert np.array_equal(bbi.fetch(str(fast), c, 0, SIZES[c], missing=0.0).astype(np.float32), v)
    with pyBigWig.open(str(fast)) as a, pyBigWig.open(str(path)) as b:
        assert a.header() == b.header()
        assert a.stats("chr2", 0, SIZES["chr2"], nBins=50) == b.stats("chr2", 0, SIZES["chr2"], nBins=50)


def test_same_bytes_in_fresh_processes(tmp_path):
    """The default (zlib) writer gives the same file from run to run, not only within one process."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from atacdenoise.io.bbiwrite import BigWigFileWriter\n"
        "rng = np.random.default_rng(0); sizes = {f's{i}': 1000 + i for i in range(200)}; sizes['big'] = 600_000\n"
        "with BigWigFileWriter(sys.argv[1], sizes, threads=2) as w:\n"
        "    for c, n in sizes.items():\n"
        "        v = rng.random(n).astype(np.float32); v[v < 0.2] = 0; w.add(c, 0, v)\n"
    )
    for name in ("a.bw", "b.bw"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], check=True)
    assert (tmp_path / "a.bw").read_bytes() == (tmp_path / "b.bw").read_bytes()


def rounded_tracks() -> dict[str, np.ndarray]:
    """Tracks like compact model outputs: a smooth signal with noise, to 8 significant bits (runs of a few bases)."""
    from atacdenoise.model.infer import round_significant_bits

    rng = np.random.default_rng(3)
    out = {}
    for c, n in SIZES.items():
        x = np.arange(n)
        v = 5 + 4 * np.sin(x / 300.0) + 0.05 * rng.standard_normal(n)
        out[c] = round_significant_bits(v.astype(np.float32), 8)
    out["chrY"][:] = 0
    return out


@pytest.mark.parametrize("libdeflate", [True, False])
def test_smallest_deflates_deeper_same_values_same_bytes(tmp_path, monkeypatch, libdeflate):
    """Compact outputs (``smallest``): libdeflate at SMALL_LEVEL, or zlib at it without libdeflate.

    The same values in both readers, the same bytes for any thread count, smaller than the level-1 streams.
    """
    assert bbiwrite._libdeflate is not None  # a dependency: installed by `make test`
    if not libdeflate:
        monkeypatch.setattr(bbiwrite, "_libdeflate", None)
    tracks = rounded_tracks()
    small, again, level1 = tmp_path / "small.bw", tmp_path / "again.bw", tmp_path / "level1.bw"
    write(small, tracks, threads=2, smallest=True, fast=True)
    write(again, tracks, threads=1, smallest=True)
    write(level1, tracks, threads=2, fast=True)
    for c, v in tracks.items():
        assert np.array_equal(read_bigwig(small, c), v), c
        assert np.array_equal(bbi.fetch(str(small), c, 0, SIZES[c], missing=0.0).astype(np.float32), v), c
    assert small.read_bytes() == again.read_bytes()
    # deeper match search: smaller (on model outputs 15-20 %, tests/model/test_precision.py; here 8-14 %)
    assert small.stat().st_size < 0.95 * level1.stat().st_size, (small.stat().st_size, level1.stat().st_size)
    with pyBigWig.open(str(small)) as a, pyBigWig.open(str(level1)) as b:
        assert a.header() == b.header()
        assert a.stats("chr2", 0, SIZES["chr2"], nBins=50) == b.stats("chr2", 0, SIZES["chr2"], nBins=50)


def test_smallest_writes_short_runs_as_fixed_step_values_without_trying_items(monkeypatch):
    """Step-like chunks of short runs (compact outputs): fixed-step values, not deflated twice; long runs: both."""
    rng = np.random.default_rng(4)
    short = np.repeat(rng.random(20_000).astype(np.float32) + 1, 10)  # runs of 10: step-like, short
    long_runs = np.repeat(rng.random(500).astype(np.float32) + 1, 400)  # runs of 400: bedGraph items win
    tried = []
    real_runs = bbiwrite.encode_runs
    monkeypatch.setattr(bbiwrite, "encode_runs", lambda *a: tried.append(a[2].size) or real_runs(*a))
    blocks, _ = bbiwrite.encode_chunk(0, 0, short, 4096, True, True)
    assert tried == [] and len(blocks.payloads) > 0
    dense, _ = bbiwrite.encode_dense(0, 0, short, 4096, True, True)
    assert blocks.payloads == dense.payloads
    items, _ = bbiwrite.encode_chunk(0, 0, long_runs, 4096, True, True)
    assert tried == [long_runs.size]
    assert sum(map(len, items.payloads)) < sum(
        map(len, bbiwrite.encode_dense(0, 0, long_runs, 4096, True, True)[0].payloads)
    )
    bbiwrite.encode_chunk(0, 0, short, 4096, True, False)  # without smallest: items, as before
    assert tried == [long_runs.size, short.size]
