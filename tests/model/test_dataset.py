"""Training windows: arrays on disk, the val/holdout split, zero padding, strand flips (atacdenoise.model.dataset)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from atacdenoise import cli
from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import write_bigwig
from atacdenoise.io.genome import Region, parse_region
from atacdenoise.model.dataset import (
    allowed_starts,
    chrom_arrays,
    fixed_tiles,
    open_dataset,
    read_window,
    sample_windows,
    start_table,
    write_dataset,
)

SIZES = {"chrA": 5000, "chrB": 3000}
SIDECAR = {
    "smooth_bp": 200,
    "shift_plus": 4,
    "shift_minus": -5,
    "min_mapq": 30,
    "keep_duplicates": False,
    "cpm": False,
    "source": "x.bam",
    "kind": "bam",
    "n_cut_sites": {},
}


def _track(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    return np.round(rng.gamma(0.5, scale, n)).astype(np.float32)


@pytest.fixture
def inputs(tmp_path: Path) -> dict:
    """Noisy/clean bigWigs with sidecars, a 3-peak narrowPeak, a gzipped blacklist, a sizes file."""
    rng = np.random.default_rng(1)
    noisy = {c: _track(rng, n, 2.0) for c, n in SIZES.items()}
    clean = {c: _track(rng, n, 30.0) for c, n in SIZES.items()}
    write_bigwig(tmp_path / "noisy.bw", SIZES, noisy)
    write_bigwig(tmp_path / "clean.bw", SIZES, clean)
    for name in ("noisy", "clean"):
        (tmp_path / f"{name}.bw.json").write_text(json.dumps(SIDECAR))
    (tmp_path / "peaks.narrowPeak").write_text(
        "chrA\t100\t300\tp1\t10\t.\t5\t4\t3\t50\nchrA\t4900\t5000\tp2\t10\t.\t5\t4\t3\t50\nchrB\t0\t10\tp3\t10\t.\t5\t4\t3\t5\n"
    )
    with gzip.open(tmp_path / "blacklist.bed.gz", "wt") as fh:
        fh.write("chrA\t1000\t1500\nchrB\t2990\t3000\nchrZ\t0\t100\n")
    (tmp_path / "genome.sizes").write_text("".join(f"{c}\t{n}\n" for c, n in SIZES.items()))
    return {"dir": tmp_path, "noisy": noisy, "clean": clean}


def _argv(d: Path, out: Path, **over) -> list[str]:
    opts = {
        "--noisy": d / "noisy.bw",
        "--clean": d / "clean.bw",
        "--labels": d / "peaks.narrowPeak",
        "--sizes": d / "genome.sizes",
        "--blacklist": d / "blacklist.bed.gz",
        "--out": out,
        "--sample": "S1",
        "--cell-type": "HSC",
        "--depth": "30000",
        "--rep": "1",
        **over,
    }
    argv = ["dataset"]
    for k, v in opts.items():
        if v is not None:
            argv += [k, str(v)]
    return argv


def _run_dataset(argv: list[str]) -> None:
    cli.run_command(argv)


def test_dataset_arrays_equal_bigwig_values_labels_and_blacklist(inputs):
    d, out = inputs["dir"], inputs["dir"] / "ds"
    assert cli.main(_argv(d, out)) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["chroms"] == SIZES
    assert meta["preprocessing"] == {
        k: SIDECAR[k] for k in ("smooth_bp", "shift_plus", "shift_minus", "min_mapq", "keep_duplicates", "cpm")
    }
    assert (meta["sample"], meta["cell_type"], meta["depth"], meta["rep"]) == ("S1", "HSC", "30000", "1")
    for chrom in SIZES:
        noisy = np.load(out / f"{chrom}.noisy.npy", mmap_mode="r")
        assert noisy.dtype == np.float32 and np.array_equal(noisy, inputs["noisy"][chrom])
        assert np.array_equal(np.load(out / f"{chrom}.clean.npy"), inputs["clean"][chrom])
    labels_a = np.load(out / "chrA.labels.npy")
    assert labels_a.dtype == np.uint8
    assert np.flatnonzero(labels_a).tolist() == list(range(100, 300)) + list(range(4900, 5000))
    assert np.flatnonzero(np.load(out / "chrB.labels.npy")).tolist() == list(range(10))
    mask_a, mask_b = np.load(out / "chrA.mask.npy"), np.load(out / "chrB.mask.npy")
    assert np.flatnonzero(mask_a == 0).tolist() == list(range(1000, 1500))
    assert np.flatnonzero(mask_b == 0).tolist() == list(range(2990, 3000))
    assert not list(d.glob(".ds.tmp-*"))


def test_dataset_refuses_pair_made_with_different_smoothing(inputs):
    d = inputs["dir"]
    (d / "clean.bw.json").write_text(json.dumps({**SIDECAR, "smooth_bp": 100}))
    with pytest.raises(InputError, match="smooth_bp"):
        _run_dataset(_argv(d, d / "ds"))
    assert not (d / "ds").exists()


def test_dataset_without_sidecars_warns_and_records_assumed_defaults(inputs, caplog):
    d = inputs["dir"]
    (d / "noisy.bw.json").unlink()
    (d / "clean.bw.json").unlink()
    _run_dataset(_argv(d, d / "ds", **{"--blacklist": None}))
    meta = json.loads((d / "ds" / "meta.json").read_text())
    assert meta["preprocessing_source"] == "assumed defaults" and meta["preprocessing"]["smooth_bp"] == 200
    assert "no sidecar" in caplog.text
    assert np.load(d / "ds" / "chrA.mask.npy").all()


def test_dataset_with_bigwig_missing_a_chromosome_of_the_sizes_file_is_input_error(inputs):
    d = inputs["dir"]
    write_bigwig(d / "noisy.bw", {"chrA": 5000}, {"chrA": inputs["noisy"]["chrA"]})
    with pytest.raises(InputError, match="chrB"):
        _run_dataset(_argv(d, d / "ds"))
    assert cli.main(_argv(d, d / "ds")) == 2


def test_dataset_chroms_option_restricts_the_chromosomes(inputs):
    d = inputs["dir"]
    _run_dataset([*_argv(d, d / "ds"), "--chroms", "chrB"])
    assert json.loads((d / "ds" / "meta.json").read_text())["chroms"] == {"chrB": 3000}
    assert not (d / "ds" / "chrA.noisy.npy").exists()


def test_write_dataset_leaves_nothing_behind_on_error(tmp_path):
    def chroms():
        yield "chrA", chrom_arrays(np.ones(10, np.float32), np.ones(10, np.float32), (np.array([2]), np.array([4])))
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_dataset(tmp_path / "ds", {}, chroms())
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- windows
def _toy_dataset(tmp_path: Path, sizes: dict[str, int], name: str = "ds") -> Path:
    """Arrays whose value is the 0-based position (noisy), position + 0.5 (clean), position % 2 (labels)."""

    def chroms():
        for chrom, n in sizes.items():
            pos = np.arange(n, dtype=np.float32)
            bl = (np.array([10]), np.array([20]))
            yield chrom, chrom_arrays(pos + 1, pos + 0.5, (np.arange(0, n, 2), np.arange(1, n + 1, 2)), bl)

    write_dataset(tmp_path / name, {"sample": "T", "depth": "1", "rep": "1", "preprocessing": {}}, chroms())
    return tmp_path / name


def test_allowed_starts_keep_whole_windows_clear_of_excluded_regions():
    # chromosome 1000 bp, interval 100, pad 10: centre starts 0..900; region [400, 500) forbids s in (290, 510)
    lo, hi = allowed_starts(1000, 100, 10, [(400, 500)])
    assert lo.tolist() == [0, 510] and hi.tolist() == [291, 901]
    # a chromosome shorter than the interval: one window at 0 (zero-padded)
    lo, hi = allowed_starts(50, 100, 10, [])
    assert lo.tolist() == [0] and hi.tolist() == [1]


def test_training_windows_never_touch_val_or_holdout_regions(tmp_path):
    sizes = {"chr1": 20_000, "chr2": 20_000}
    pair = open_dataset(_toy_dataset(tmp_path, sizes))
    val, holdout = (
        [parse_region("chr2:0-5000", sizes)],
        [parse_region("chr2:5000-10000", sizes), parse_region("chr1:9000-9500", sizes)],
    )
    interval, pad = 1000, 200
    table = start_table([pair], interval, pad, val + holdout)
    w = sample_windows(table, 5000, interval, np.random.default_rng(0))
    chroms = np.array(list(sizes))[w["chrom"]]
    lo, hi = w["start"] - pad, w["start"] + interval + pad
    for r in val + holdout:
        assert not np.any((chroms == r.chrom) & (lo < r.end) & (hi > r.start)), r
    # windows come right up to the regions' context margins, and from both chromosomes
    on2 = chroms == "chr2"
    assert on2.any() and (~on2).any()
    assert lo[on2].min() >= 10_000 and w["start"][on2].max() <= 19_000
    chr2_ranges = [(int(a), int(b)) for a, b, c in zip(table.lo, table.hi, table.chrom) if c == 1]
    assert chr2_ranges == [(10_200, 19_001)]
    assert ((w["start"] >= 0) & (w["start"] <= 19_000)).all()
    assert 0.3 < w["flip"].mean() < 0.7


def test_windows_are_drawn_in_proportion_to_usable_length(tmp_path):
    p1 = open_dataset(_toy_dataset(tmp_path, {"chr1": 41_000}, "a"))
    p2 = open_dataset(_toy_dataset(tmp_path, {"chr1": 11_000}, "b"))
    table = start_table([p1, p2], 1000, 100, [])
    assert table.total == 40_001 + 10_001
    w = sample_windows(table, 20_000, 1000, np.random.default_rng(3))
    assert abs((w["pair"] == 0).mean() - 0.8) < 0.02


def test_no_training_window_left_is_input_error(tmp_path):
    pair = open_dataset(_toy_dataset(tmp_path, {"chr1": 5000}))
    with pytest.raises(InputError, match="no training windows"):
        start_table([pair], 1000, 100, [Region("chr1", 0, 5000)])


def test_window_past_chromosome_ends_is_zero_padded_with_mask_zero(tmp_path):
    pair = open_dataset(_toy_dataset(tmp_path, {"chr1": 500}))
    w = read_window(pair, "chr1", start=0, stop=400, interval=400, pad=50, flip=False)
    assert w["noisy"].shape == (500,)
    assert (w["noisy"][:50] == 0).all() and (w["mask"][:50] == 0).all()
    assert np.array_equal(w["noisy"][50:500], np.arange(450, dtype=np.float32) + 1)
    w = read_window(pair, "chr1", start=400, stop=800, interval=400, pad=50, flip=False)
    assert np.array_equal(w["noisy"][:150], np.arange(350, 500, dtype=np.float32) + 1)
    assert (w["noisy"][150:] == 0).all() and (w["clean"][150:] == 0).all()
    # loss zone: centre bases inside the chromosome and off the blacklist only
    assert np.flatnonzero(w["mask"]).tolist() == list(range(50, 150))


def test_blacklisted_bases_have_mask_zero_in_windows(tmp_path):
    pair = open_dataset(_toy_dataset(tmp_path, {"chr1": 500}))
    w = read_window(pair, "chr1", start=0, stop=100, interval=100, pad=0, flip=False)
    assert np.flatnonzero(w["mask"] == 0).tolist() == list(range(10, 20))


def test_strand_flip_reverses_every_array_consistently(tmp_path):
    pair = open_dataset(_toy_dataset(tmp_path, {"chr1": 3000}))
    a = read_window(pair, "chr1", start=1000, stop=1500, interval=500, pad=100, flip=False)
    b = read_window(pair, "chr1", start=1000, stop=1500, interval=500, pad=100, flip=True)
    for name in ("noisy", "clean", "labels", "mask"):
        assert np.array_equal(b[name], a[name][::-1]), name
    # the pairing of values survives the flip: clean = noisy - 0.5, label = position parity
    pos = b["noisy"] - 1
    assert np.array_equal(b["clean"], pos + 0.5)
    assert np.array_equal(b["labels"], (pos % 2 == 0).astype(np.float32))


def test_validation_tiles_cover_each_region_base_once(tmp_path):
    sizes = {"chr1": 10_000, "chr2": 7_000}
    pair = open_dataset(_toy_dataset(tmp_path, sizes))
    regions = [parse_region("chr2", sizes), parse_region("chr1:2500-5100", sizes)]
    tiles = fixed_tiles([pair], regions, 1000)
    assert not tiles["flip"].any()
    covered = {c: np.zeros(n, int) for c, n in sizes.items()}
    names = list(sizes)
    for t in tiles:
        covered[names[t["chrom"]]][t["start"] : t["stop"]] += 1
    assert np.flatnonzero(covered["chr2"] != 1).size == 0
    assert np.flatnonzero(covered["chr1"]).tolist() == list(range(2500, 5100))
    assert covered["chr1"].max() == 1
    # the last chr1 tile's loss zone stops at the region end
    last = read_window(pair, "chr1", int(tiles[-1]["start"]), int(tiles[-1]["stop"]), 1000, 100, False)
    assert int(tiles[-1]["start"]) == 4500 and int(last["mask"].sum()) == 600


def test_open_dataset_rejects_other_assembly(tmp_path):
    path = _toy_dataset(tmp_path, {"chr1": 500})
    with pytest.raises(InputError, match="another assembly"):
        open_dataset(path, {"chr1": 600})
    with pytest.raises(InputError, match=r"meta\.json"):
        open_dataset(tmp_path)


def test_dataset_of_a_chromosome_without_peaks_has_all_zero_labels(inputs, caplog):
    d = inputs["dir"]
    (d / "peaks.narrowPeak").write_text("chrA\t100\t300\tp1\t10\t.\t5\t4\t3\t50\n")
    _run_dataset([*_argv(d, d / "ds"), "--chroms", "chrB"])
    assert not np.load(d / "ds" / "chrB.labels.npy").any()
    assert "no peaks" in caplog.text


def test_windows_with_target_regions_overlap_a_region_and_skip_excluded_ones():
    """Target regions: every drawn window's centre overlaps one; the regions' stored offset is respected."""
    from atacdenoise.io.genome import Region
    from atacdenoise.model.dataset import PairData, keep_overlapping, sample_windows, start_table

    lo, hi = keep_overlapping(np.array([0]), np.array([1001]), 100, [(200, 300), (250, 400), (900, 950)])
    assert lo.tolist() == [101, 801] and hi.tolist() == [400, 950]
    # a dataset storing chr1:10,000-12,000 (offset 10,000) with target regions 10,100-10,500 and 11,500-12,000
    meta = {"chroms": {"chr1": 2000}, "offsets": {"chr1": 10_000}, "regions": {"chr1": [[100, 500], [1500, 2000]]}}
    pair = PairData(Path("unused"), meta)
    table = start_table([pair], 100, 10, [Region("chr1", 11_400, 11_700)])  # excluded in genome coordinates
    w = sample_windows(table, 2000, 100, np.random.default_rng(0))
    centre_lo, centre_hi = w["start"], w["start"] + 100
    in_first = (centre_hi > 100) & (centre_lo < 500)
    in_second = (centre_hi > 1500) & (centre_lo < 2000)
    assert (in_first | in_second).all()
    # nothing within reach (window + context) of the excluded 1,400-1,700 (stored coordinates)
    assert not ((w["start"] - 10 < 1700) & (w["start"] + 110 > 1400)).any()
