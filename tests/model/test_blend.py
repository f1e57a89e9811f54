"""Never worse than the input (atacdenoise.model.blend): the blend of track and input, fitted by depth.

The Pearson r of any blend from running sums against a direct computation; the weight search and its
end points; the non-increasing fit; interpolation in log depth; the blend where inference applies it;
and a training whose second pair's input is its clean track (a perfect input: weight 0 there).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from atacdenoise import cli
from atacdenoise.io.genome import Region
from atacdenoise.model.blend import (
    GRID_STEPS,
    best_weight,
    blend_pearson,
    blend_sums,
    blend_weight,
    fit_blend,
    non_increasing,
)
from atacdenoise.model.dataset import chrom_arrays, open_dataset, write_dataset
from atacdenoise.model.infer import TileRunner, input_blend
from atacdenoise.model.network import build_model, load_model
from atacdenoise.model.train import resolve_settings, train
from builders import PRE, TINY_MODEL, TINY_TRAINING, TRAIN_SIZES, make_training_dataset

VAL, HOLDOUT = [Region("chr2", 0, 6000)], [Region("chr2", 6000, 12_000)]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _tensors(seed: int = 0, n: int = 5000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    y = rng.gamma(1.0, 5.0, n)
    t = y + rng.normal(0, 2.0, n)  # a denoised track: close to y
    x = y + rng.normal(0, 4.0, n)  # the input: noisier
    return (torch.from_numpy(v) for v in (t, x, y))


@pytest.mark.parametrize("a", [0.0, 0.3, 0.55, 1.0])
def test_blend_pearson_from_sums_equals_a_direct_computation(a):
    t, x, y = _tensors()
    direct = np.corrcoef((a * t + (1 - a) * x).numpy(), y.numpy())[0, 1]
    assert blend_pearson(blend_sums(t, x, y), a) == pytest.approx(direct, abs=1e-10)


def test_best_weight_is_the_grid_maximum_and_reaches_both_ends():
    t, x, y = _tensors(1)
    fit = best_weight(blend_sums(t, x, y))
    grid = np.linspace(0, 1, GRID_STEPS + 1)
    direct = [np.corrcoef((a * t + (1 - a) * x).numpy(), y.numpy())[0, 1] for a in grid]
    assert fit["alpha"] == pytest.approx(grid[int(np.argmax(direct))])
    assert fit["pearson_blend"] == pytest.approx(max(direct)) and fit["pearson_blend"] >= fit["pearson_model"]
    assert 0 < fit["alpha"] < 1  # two noisy estimates: a mixture beats both
    assert best_weight(blend_sums(t, y, y))["alpha"] == 0.0  # a perfect input: all of it
    assert best_weight(blend_sums(y, x, y))["alpha"] == 1.0  # a perfect track: none of the input
    empty = best_weight(np.zeros(10))
    assert empty["alpha"] == 1.0 and np.isnan(empty["pearson_blend"])


def test_non_increasing_pools_adjacent_violators():
    assert non_increasing([0.9, 0.5, 0.1]) == [0.9, 0.5, 0.1]
    assert non_increasing([0.2, 0.6, 0.1]) == pytest.approx([0.4, 0.4, 0.1])
    assert non_increasing([0.2, 0.6, 0.1], [3.0, 1.0, 1.0]) == pytest.approx([0.3, 0.3, 0.1])
    assert non_increasing([0.0, 0.5, 1.0]) == pytest.approx([0.5, 0.5, 0.5])


def test_weight_interpolates_in_log_depth_and_holds_beyond_the_trained_depths():
    blend = {"log10_cut_sites_per_mb": [3.0, 4.0], "alpha": [1.0, 0.4]}
    assert blend_weight(blend, 1e3) == pytest.approx(1.0)
    assert blend_weight(blend, 10**3.5) == pytest.approx(0.7)
    assert blend_weight(blend, 1e4) == pytest.approx(0.4) and blend_weight(blend, 1e7) == pytest.approx(0.4)
    assert blend_weight(blend, 10.0) == pytest.approx(1.0)
    assert blend_weight(blend, None) == 1.0 and blend_weight(None, 1e4) == 1.0 and blend_weight(blend, 0.0) == 1.0
    # inference reads the depth from the fitness table, and only blends a depth-normalised model
    fitness = pd.DataFrame({"metric": ["preprocessing", "cut_sites_per_mb"], "sample": [None, 10**3.5]})
    meta = {"blend": blend}
    assert input_blend(meta, fitness, {"kind": "depth", "reference": 1.0}) == pytest.approx(0.7)
    assert input_blend(meta, fitness, {"kind": "none"}) == 1.0
    assert input_blend({}, fitness, {"kind": "depth", "reference": 1.0}) == 1.0
    unknown = pd.DataFrame({"metric": ["cut_sites_per_mb"], "sample": [np.nan]})
    assert input_blend(meta, unknown, {"kind": "depth", "reference": 1.0}) == 1.0


def test_fit_blend_leaves_out_pairs_without_depth_and_orders_by_depth():
    t, x, y = _tensors(2)
    rows = [
        {"name": "deep", "cut_sites_per_mb": 1e5, "sums": blend_sums(t, y, y)},  # perfect input
        {"name": "shallow", "cut_sites_per_mb": 1e3, "sums": blend_sums(y, x, y)},  # perfect track
        {"name": "unknown", "cut_sites_per_mb": None, "sums": blend_sums(t, x, y)},
    ]
    blend = fit_blend(rows)
    assert [p["name"] for p in blend["pairs"]] == ["shallow", "deep"]
    assert blend["alpha"] == [1.0, 0.0] and blend["log10_cut_sites_per_mb"] == pytest.approx([3.0, 5.0])
    assert fit_blend(rows[2:]) is None


def test_tile_runner_writes_the_blend_of_track_and_transformed_input():
    torch.manual_seed(0)
    model = build_model(TINY_MODEL).eval()
    windows = torch.from_numpy(np.random.default_rng(3).gamma(1.0, 3.0, (4, 1200)).astype(np.float32))
    plain = TileRunner(model, torch.device("cpu"), 1000, 100, batch_size=4, native_conv=False)
    mixed = TileRunner(model, torch.device("cpu"), 1000, 100, batch_size=4, native_conv=False, blend=0.25)
    track, prob = plain.forward(windows, 4000)
    blended, prob_b = mixed.forward(windows, 4000)
    centre = windows[:, 100:1100].reshape(-1).numpy()
    np.testing.assert_allclose(blended, 0.25 * track + 0.75 * centre, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(prob, prob_b)  # the peak probability is the network's


def _perfect_input_dataset(path):
    """Write a second sample whose noisy track is its clean track: an input nothing can improve on."""
    rng = np.random.default_rng(5)

    def chroms():
        for chrom, n in TRAIN_SIZES.items():
            starts = np.arange(700, n - 500, 2000)
            clean = rng.gamma(1.0, 2.0, n).astype(np.float32)
            for s in starts:
                clean[s : s + 300] += 30
            yield chrom, chrom_arrays(clean, clean, (starts, starts + 300))

    write_dataset(path, {"sample": "P", "depth": "deep", "rep": "1", "preprocessing": PRE}, chroms())
    return path


def test_training_fits_the_blend_per_pair_and_stores_it(tmp_path, capsys):
    pairs = [open_dataset(make_training_dataset(tmp_path / "a")), open_dataset(_perfect_input_dataset(tmp_path / "b"))]
    train(pairs, VAL, HOLDOUT, {**TINY_TRAINING, "epochs": 2}, tmp_path / "m")
    _, meta = load_model(tmp_path / "m" / "model.pt")
    rows = {p["name"]: p for p in meta["blend"]["pairs"]}
    perfect = rows["P/deep.rep1"]
    assert perfect["alpha"] == 0.0 and perfect["pearson_input"] == pytest.approx(1.0)
    assert perfect["cut_sites_per_mb"] > rows["T/8x.rep1"]["cut_sites_per_mb"]  # the clean track is deeper
    assert meta["blend"]["alpha"] == sorted(meta["blend"]["alpha"], reverse=True)
    assert cli.main(["model-info", "-q", "--model", str(tmp_path / "m" / "model.pt")]) == 0
    shown = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())["blend"]
    assert "P/deep.rep1" in shown and "network weight 0.00" in shown
    for row in rows.values():
        assert row["pearson_blend"] >= max(row["pearson_model"], row["pearson_input"]) - 1e-12
    # off: no blend stored; the reference recipe leaves it off
    train(pairs[:1], VAL, HOLDOUT, {**TINY_TRAINING, "epochs": 1, "blend": False}, tmp_path / "off")
    assert "blend" not in load_model(tmp_path / "off" / "model.pt")[1]
    assert resolve_settings({})[1]["blend"] is True and resolve_settings({"preset": "atacworks"})[1]["blend"] is False
