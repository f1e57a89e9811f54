"""Does the ensemble's spread predict its error? The most / least uncertain tenth of bases (SpreadDeciles)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atacdenoise.evaluate.metrics import SPREAD_METRICS, Benchmark, Method, SpreadDeciles, tail_weights
from atacdenoise.evaluate.summary import SPREAD_COLUMNS, summarise


def test_tail_weights_take_whole_bins_then_a_share_of_the_tied_boundary_bin():
    count = np.array([4, 0, 3, 3])  # 10 bases; a tenth is one base
    np.testing.assert_allclose(tail_weights(count, 0.1, top=True), [0, 0, 0, 1 / 3])
    np.testing.assert_allclose(tail_weights(count, 0.1, top=False), [0.25, 0, 0, 0])
    np.testing.assert_allclose(tail_weights(count, 0.5, top=True), [0, 0, 2 / 3, 1])


def test_spread_deciles_equal_a_hand_computation():
    # 20 bases with distinct spreads 0, 0.02, ..., 0.38: the top tenth is the last two, the bottom tenth the first two
    spread = np.arange(20) * 0.02
    clean = np.zeros(20)
    track = np.arange(20, dtype=np.float64)  # |error| = the index
    labels = np.zeros(20, dtype=bool)
    calls = np.zeros(20, dtype=bool)
    calls[[0, 18, 19]] = True  # wrong at bases 0, 18 and 19
    acc = SpreadDeciles()
    acc.add(spread[:7], track[:7], clean[:7], calls[:7], labels[:7])  # window by window
    acc.add(spread[7:], track[7:], clean[7:], calls[7:], labels[7:])
    got = dict(acc.results())
    assert list(got) == list(SPREAD_METRICS)
    assert got["abs_error"] == pytest.approx(np.arange(20).mean())
    assert got["abs_error_top10"] == pytest.approx((18 + 19) / 2)
    assert got["abs_error_bottom10"] == pytest.approx((0 + 1) / 2)
    assert got["call_error"] == pytest.approx(3 / 20)
    assert got["call_error_top10"] == pytest.approx(1.0)
    assert got["call_error_bottom10"] == pytest.approx(0.5)


def test_tied_spreads_share_the_decile_evenly():
    # every base has spread 0 (members agree everywhere): both tails are the whole's mean
    acc = SpreadDeciles()
    err = np.array([0.0, 1.0, 2.0, 5.0])
    acc.add(np.zeros(4), err, np.zeros(4), np.array([1, 0, 0, 0], bool), np.zeros(4, bool))
    got = dict(acc.results())
    assert got["abs_error_top10"] == pytest.approx(2.0) == got["abs_error_bottom10"]
    assert got["call_error_top10"] == pytest.approx(0.25)


def test_benchmark_reports_spread_metrics_for_the_model_only_with_a_spread():
    methods = [Method("noisy", track=True, scores=True), Method("model", track=True, scores=True, calls=True)]
    rng = np.random.default_rng(0)
    n = 1000
    clean, labels = rng.random(n), rng.random(n) < 0.2
    window = {
        "clean": clean,
        "labels": labels,
        "tracks": {"noisy": clean + rng.normal(0, 0.5, n), "model": clean + rng.normal(0, 0.1, n)},
        "scores": {"noisy": clean, "model": labels * 0.6 + rng.random(n) * 0.4},
        "calls": {"model": labels},
    }
    single = Benchmark(methods)
    single.add(**window)
    assert not set(single.results()["metric"]) & set(SPREAD_METRICS)
    ens = Benchmark(methods, spread=True)
    ens.add(**window, spread=rng.random(n) * 0.5)
    table = ens.results()
    rows = table[table["metric"].isin(SPREAD_METRICS)]
    assert set(rows["method"]) == {"model"} and len(rows) == len(SPREAD_METRICS)
    with pytest.raises(ValueError, match="needs the spread"):
        ens.add(**window)


def test_summary_has_the_spread_columns_empty_for_a_single_model():
    rows = []
    for sample, ensemble in (("S1", False), ("S2", True)):
        for method, metric in (("noisy", "pearson"), ("model", "pearson"), ("model", "auprc")):
            rows.append(("m", sample, "1000", "1", method, metric, "all", 0.5))
        if ensemble:
            rows += [("m", sample, "1000", "1", "model", m, "all", 0.25) for m in SPREAD_METRICS]
    metrics = pd.DataFrame(rows, columns=["model", "sample", "depth", "rep", "method", "metric", "region", "value"])
    s = summarise(metrics).set_index("sample")
    assert [f"model_{m}" for m in SPREAD_METRICS] == SPREAD_COLUMNS
    assert s.loc["S1", SPREAD_COLUMNS].isna().all()
    assert (s.loc["S2", SPREAD_COLUMNS] == 0.25).all()
    only_single = summarise(metrics[metrics["sample"] == "S1"])
    assert set(SPREAD_COLUMNS) <= set(only_single.columns) and only_single[SPREAD_COLUMNS].isna().all().all()
