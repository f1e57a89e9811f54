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
    dataset_content_id,
    fixed_tiles,
    narrowest,
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
    clean["chrB"][7] = 300  # one chromosome needs uint16
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
    assert meta["chroms"] == SIZES and meta["clean_dataset"] == "clean"
    assert meta["preprocessing"] == {
        k: SIDECAR[k] for k in ("smooth_bp", "shift_plus", "shift_minus", "min_mapq", "keep_duplicates", "cpm")
    }
    pair = open_dataset(out)
    assert (pair.meta["sample"], pair.meta["cell_type"], pair.meta["depth"], pair.meta["rep"]) == (
        "S1",
        "HSC",
        "30000",
        "1",
    )
    for chrom in SIZES:
        # whole-number coverage is stored in the narrowest exact type, read back equal to the bigWig's values
        noisy = np.load(out / f"{chrom}.noisy.npy", mmap_mode="r")
        clean = np.load(out / "clean" / f"{chrom}.clean.npy", mmap_mode="r")
        for stored, values in ((noisy, inputs["noisy"][chrom]), (clean, inputs["clean"][chrom])):
            assert stored.dtype == (np.uint8 if values.max() <= 255 else np.uint16)
        assert np.array_equal(noisy.astype(np.float32), inputs["noisy"][chrom])
        assert np.array_equal(clean.astype(np.float32), inputs["clean"][chrom])
        assert sorted(p.name for p in (out / "clean").iterdir()) == sorted(
            [f"{c}.{n}.npy" for c in SIZES for n in ("clean", "flags")] + ["meta.json"]
        )
    labels_a = pair.arrays("chrA")["labels"]
    assert labels_a.dtype == np.uint8
    assert np.flatnonzero(labels_a).tolist() == list(range(100, 300)) + list(range(4900, 5000))
    assert np.flatnonzero(pair.arrays("chrB")["labels"]).tolist() == list(range(10))
    mask_a, mask_b = pair.arrays("chrA")["mask"], pair.arrays("chrB")["mask"]
    assert np.flatnonzero(mask_a == 0).tolist() == list(range(1000, 1500))
    assert np.flatnonzero(mask_b == 0).tolist() == list(range(2990, 3000))
    assert not list(d.glob(".ds.tmp-*"))


def test_clean_part_once_per_sample_gives_the_same_windows_as_one_step(inputs):
    """dataset-clean + dataset --clean-dataset (the workflow's way) == one-step dataset, window by window."""
    d = inputs["dir"]
    assert cli.main(_argv(d, d / "one")) == 0
    clean_argv = ["dataset-clean", "--clean", str(d / "clean.bw"), "--labels", str(d / "peaks.narrowPeak")]
    clean_argv += ["--sizes", str(d / "genome.sizes"), "--blacklist", str(d / "blacklist.bed.gz")]
    assert cli.main([*clean_argv, "--sample", "S1", "--cell-type", "HSC", "--out", str(d / "S1" / "clean")]) == 0
    pair_argv = ["dataset", "--noisy", str(d / "noisy.bw"), "--clean-dataset", str(d / "S1" / "clean")]
    pair_argv += ["--sizes", str(d / "genome.sizes"), "--depth", "30000", "--rep", "1"]
    assert cli.main([*pair_argv, "--out", str(d / "S1" / "30000.rep1")]) == 0
    # the pair holds only its noisy track; the clean part is shared
    assert sorted(p.name for p in (d / "S1" / "30000.rep1").iterdir()) == sorted(
        [f"{c}.noisy.npy" for c in SIZES] + ["meta.json"]
    )
    one, two = open_dataset(d / "one"), open_dataset(d / "S1" / "30000.rep1")
    assert json.loads((d / "S1" / "30000.rep1" / "meta.json").read_text())["clean_dataset"] == "../clean"
    for key in ("sample", "cell_type", "depth", "rep", "preprocessing", "chroms"):
        assert one.meta[key] == two.meta[key]
    for chrom, n in SIZES.items():
        for start in (-50, 0, 950, n - 100):
            a = read_window(one, chrom, start, start + 100, 100, 60, flip=False)
            b = read_window(two, chrom, start, start + 100, 100, 60, flip=True)
            for name in a:
                assert np.array_equal(a[name], b[name][::-1]), (chrom, start, name)
    # a second pair with the same clean part: only its own noisy track is new
    assert cli.main([*pair_argv, "--out", str(d / "S1" / "30000.rep2")]) == 0
    assert dataset_content_id(open_dataset(d / "S1" / "30000.rep2"))["files"] == dataset_content_id(two)["files"]


def test_narrowest_type_is_exact():
    assert narrowest(np.array([0, 3, 255], np.float32)).dtype == np.uint8
    assert narrowest(np.array([0, 256], np.float32)).dtype == np.uint16
    assert narrowest(np.array([0, 70000], np.float32)).dtype == np.uint32
    for values in ([0.5, 1], [-1, 2], [np.nan, 1], [0, 5e9], [1e-3]):
        out = narrowest(np.array(values, np.float32))
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, np.array(values, np.float32))
    assert narrowest(np.zeros(0, np.float32)).size == 0


def test_dataset_options_and_clean_part_errors_name_the_fix(inputs):
    d = inputs["dir"]
    with pytest.raises(InputError, match="--clean-dataset DIR"):
        _run_dataset(_argv(d, d / "ds", **{"--labels": None}))
    with pytest.raises(InputError, match="--labels cannot go with --clean-dataset"):
        _run_dataset([*_argv(d, d / "ds", **{"--clean": None, "--blacklist": None}), "--clean-dataset", str(d)])
    with pytest.raises(InputError, match=r"no meta\.json"):
        no_clean = {"--clean": None, "--labels": None, "--blacklist": None, "--sample": None}
        _run_dataset([*_argv(d, d / "ds", **no_clean), "--clean-dataset", str(d)])
    _run_dataset(_argv(d, d / "ds"))
    # a pair whose clean part is gone, or was re-made with other chromosomes
    meta = json.loads((d / "ds" / "meta.json").read_text())
    (d / "ds" / "meta.json").write_text(json.dumps({**meta, "clean_dataset": "../elsewhere"}))
    with pytest.raises(InputError, match=r"clean part .* is missing"):
        open_dataset(d / "ds")
    clean_meta = json.loads((d / "ds" / "clean" / "meta.json").read_text())
    (d / "ds" / "meta.json").write_text(json.dumps(meta))
    (d / "ds" / "clean" / "meta.json").write_text(json.dumps({**clean_meta, "chroms": {"chrA": 5000}}))
    with pytest.raises(InputError, match="differ from those of its clean part"):
        open_dataset(d / "ds")
    # a dataset made by an older version (float32 copies in every pair) is refused with the fix
    (d / "ds" / "meta.json").write_text(json.dumps({**meta, "format": "atacdenoise-dataset/1"}))
    with pytest.raises(InputError, match=r"older atacdenoise.*re-make"):
        open_dataset(d / "ds")


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
    assert open_dataset(d / "ds").arrays("chrA")["mask"].all()


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
    assert not open_dataset(d / "ds").arrays("chrB")["labels"].any()
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
