"""Benchmark metrics: equal to scikit-learn / SciPy, streamable, edge cases.

Also the metrics CLI end to end, effective depth and the summary table.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    jaccard_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from atacdenoise.cli import main
from atacdenoise.evaluate import metrics as M
from atacdenoise.evaluate.effective_depth import depth_reaching, effective_depths
from atacdenoise.io.bigwig import write_bigwig
from atacdenoise.io.intervals import write_narrowpeak
from atacdenoise.peaks.threshold import call_peaks
from builders import write_sample_sheet

RNG_SEEDS = range(12)


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores with many ties (integers, float32) or none (float64), labels, a second track."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 4000))
    if seed % 3 == 0:
        scores = rng.integers(0, int(rng.integers(2, 30)), n).astype(np.float32)
    elif seed % 3 == 1:
        scores = rng.random(n).astype(np.float32).round(2)
    else:
        scores = rng.normal(size=n)
    labels = rng.random(n) < (0.05 + 0.5 * rng.random()) * (1 + (scores > np.median(scores)))
    other = scores + rng.integers(0, 5, n)
    return scores, labels, other


# --------------------------------------------------------------------------- equal to sklearn / scipy


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_auroc_and_auprc_equal_sklearn_including_ties(seed):
    scores, labels, _ = _random_case(seed)
    assert M.auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
    assert M.auprc(scores, labels) == pytest.approx(average_precision_score(labels, scores), abs=1e-9)


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_auroc_and_auprc_streamed_in_chunks_equal_whole_array(seed):
    scores, labels, _ = _random_case(seed)
    table = M.CountTable()
    for part in np.array_split(np.arange(scores.size), 7):
        table.add(scores[part], labels[part])
    _, tps, fps = M.curve_counts(table)
    assert M.auroc_from_counts(tps, fps) == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
    assert M.auprc_from_counts(tps, fps) == pytest.approx(average_precision_score(labels, scores), abs=1e-9)


def test_count_table_compaction_keeps_exact_counts(monkeypatch):
    monkeypatch.setattr(M, "_COMPACT_MIN", 5)  # force many merges
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 40, 5000).astype(np.float32)
    labels = rng.random(5000) < 0.3
    table = M.CountTable()
    for part in np.array_split(np.arange(5000), 50):
        table.add(scores[part], labels[part])
    values, total, pos = table.table()
    np.testing.assert_array_equal(values, np.unique(scores))
    np.testing.assert_array_equal(total, np.bincount(scores.astype(int))[values.astype(int)])
    np.testing.assert_array_equal(pos, np.bincount(scores[labels].astype(int), minlength=40)[values.astype(int)])


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_pearson_spearman_mse_equal_scipy(seed):
    x, _, y = _random_case(seed)
    assert M.pearson(x, y) == pytest.approx(pearsonr(x, y)[0], abs=1e-9)
    assert M.spearman(x, y) == pytest.approx(spearmanr(x, y)[0], abs=1e-9)
    xd, yd = x.astype(np.float64), y.astype(np.float64)
    assert M.mse(x, y) == pytest.approx(np.mean((xd - yd) ** 2), rel=1e-9)
    assert M.mse(x, y, scale=2.5) == pytest.approx(np.mean((2.5 * xd - yd) ** 2), rel=1e-9)


def test_moments_merge_is_exact_for_large_offsets():
    rng = np.random.default_rng(1)
    x = 1e6 + rng.normal(size=20000)
    y = 0.5 * x + rng.normal(size=20000)
    m = M.Moments()
    for part in np.array_split(np.arange(x.size), 13):
        m.add(x[part], y[part])
    assert m.pearson() == pytest.approx(pearsonr(x, y)[0], abs=1e-9)
    assert m.mse() == pytest.approx(np.mean((x - y) ** 2), rel=1e-9)


@pytest.mark.parametrize("seed", RNG_SEEDS[:6])
def test_track_comparison_matches_scipy_per_region_over_two_passes(seed):
    x, in_peak, y = _random_case(seed)
    tc = M.TrackComparison("model")
    parts = np.array_split(np.arange(x.size), 5)
    for p in parts:
        tc.add(x[p], y[p], in_peak[p])
    for p in parts[::-1]:  # pass 2 in another order
        tc.add_ranks(x[p], y[p], in_peak[p])
    got = {(metric, region): v for metric, region, v in tc.results({"mse_scaled": 3.0})}
    for region, sel in (("all", np.ones_like(in_peak)), ("peaks", in_peak), ("nonpeaks", ~in_peak)):
        xs, ys = x[sel].astype(np.float64), y[sel].astype(np.float64)
        assert got["pearson", region] == pytest.approx(pearsonr(xs, ys)[0], abs=1e-9)
        assert got["spearman", region] == pytest.approx(spearmanr(xs, ys)[0], abs=1e-9)
        assert got["mse", region] == pytest.approx(np.mean((xs - ys) ** 2), rel=1e-9)
        assert got["mse_scaled", region] == pytest.approx(np.mean((3 * xs - ys) ** 2), rel=1e-9)


@pytest.mark.parametrize("seed", RNG_SEEDS[:6])
def test_binary_call_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(3000) < 0.2
    calls = np.where(rng.random(3000) < 0.7, labels, rng.random(3000) < 0.3)
    c = M.Confusion()
    for p in np.array_split(np.arange(3000), 4):
        c.add(calls[p], labels[p])
    got = dict(c.results())
    assert got["precision"] == pytest.approx(precision_score(labels, calls), abs=1e-12)
    assert got["recall"] == pytest.approx(recall_score(labels, calls), abs=1e-12)
    assert got["f1"] == pytest.approx(f1_score(labels, calls), abs=1e-12)
    assert got["specificity"] == pytest.approx(recall_score(~labels, ~calls), abs=1e-12)
    assert got["jaccard"] == pytest.approx(jaccard_score(labels, calls), abs=1e-12)


# --------------------------------------------------------------------------- edge cases


def test_all_negative_labels_give_nan_with_warning_not_crash(caplog):
    scores = np.array([0.1, 0.5, 0.5, 0.9])
    labels = np.zeros(4, dtype=bool)
    with caplog.at_level(logging.WARNING):
        assert np.isnan(M.auroc(scores, labels))
        assert np.isnan(M.auprc(scores, labels))
        res = dict(M.Confusion(tp=0, fp=2, fn=0, tn=2).results())
    assert np.isnan(res["recall"]) and res["precision"] == 0.0 and res["specificity"] == 0.5
    assert "undefined" in caplog.text and "no positive" in caplog.text
    with pytest.warns(UserWarning):  # sklearn 1.9 agrees: undefined, NaN with a warning
        assert np.isnan(roc_auc_score(labels, scores))


def test_all_positive_labels_give_nan_auroc_and_auprc_one(caplog):
    with caplog.at_level(logging.WARNING):
        assert np.isnan(M.auroc(np.array([1.0, 2.0]), np.array([True, True])))
    assert M.auprc(np.array([1.0, 2.0]), np.array([True, True])) == 1.0
    assert "no negative" in caplog.text


def test_constant_track_gives_nan_correlations_with_warning(caplog):
    x = np.zeros(100, dtype=np.float32)
    y = np.arange(100, dtype=np.float32)
    with caplog.at_level(logging.WARNING):
        assert np.isnan(M.pearson(x, y))
        assert np.isnan(M.spearman(x, y))
    assert "constant" in caplog.text
    assert M.mse(x, y) == pytest.approx(np.mean(y.astype(float) ** 2))


def test_constant_scores_give_sklearn_values_chance_auroc_and_prevalence_auprc():
    scores = np.ones(10)
    labels = np.array([1, 0, 0, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    assert M.auroc(scores, labels) == roc_auc_score(labels, scores) == 0.5
    assert M.auprc(scores, labels) == pytest.approx(average_precision_score(labels, scores)) == pytest.approx(0.2)


def test_no_calls_give_nan_precision_and_no_bases_give_nan(caplog):
    with caplog.at_level(logging.WARNING):
        res = dict(M.Confusion(tp=0, fp=0, fn=3, tn=7).results())
        assert np.isnan(M.Moments().mse())
        assert np.isnan(M.auroc(np.zeros(0), np.zeros(0, dtype=bool)))
    assert np.isnan(res["precision"]) and res["recall"] == 0.0 and res["f1"] == 0.0


def test_pr_curve_points_start_at_recall_zero_and_integrate_to_auprc():
    rng = np.random.default_rng(5)
    scores = rng.random(5000)
    labels = rng.random(5000) < 0.1 + 0.5 * scores
    t = M.CountTable()
    t.add(scores, labels)
    _, tps, fps = M.curve_counts(t)
    r, p = M.pr_curve_points(tps, fps, max_points=10_000)
    assert r[0] == 0 and p[0] == 1 and r[-1] == 1
    assert np.sum(np.diff(r) * p[1:]) == pytest.approx(average_precision_score(labels, scores), abs=1e-9)
    r2, _p2 = M.pr_curve_points(tps, fps, max_points=100)
    assert r2.size <= 102 and r2[-1] == 1 and np.all(np.diff(r2) >= 0)


# --------------------------------------------------------------------------- intervals, peak level


def test_ece_by_hand_over_fifteen_equal_width_bins():
    probs = np.array([0.05, 0.1, 0.5, 0.55, 0.95, 1.0])
    labels = np.array([0, 1, 1, 0, 1, 1], dtype=bool)
    # bins of width 1/15: 0.05 -> 0, 0.1 -> 1, 0.5 -> 7, 0.55 -> 8, 0.95 and 1.0 -> 14 (the last bin holds 1.0)
    count, total, pos = M.calibration_bins(probs, labels)
    assert np.flatnonzero(count).tolist() == [0, 1, 7, 8, 14] and count[14] == 2 and pos.sum() == 4
    assert total[14] == pytest.approx(1.95) and total[7] == 0.5
    # |mean prob - fraction positive| per bin, weighted by its bases: (0.05 + 0.9 + 0.5 + 0.55 + 2 x 0.025) / 6
    assert M.expected_calibration_error(probs, labels) == pytest.approx(2.05 / 6, abs=1e-12)
    assert M.expected_calibration_error(np.array([0.25, 0.25, 0.25, 0.25]), np.array([1, 0, 0, 0], bool)) == 0.0


def test_reliability_streamed_in_chunks_equals_whole_array_and_a_loop_over_bins(caplog):
    rng = np.random.default_rng(11)
    probs = rng.random(20_000).astype(np.float32) ** 2
    labels = rng.random(20_000) < probs * 0.8
    rel = M.Reliability()
    for chunk in np.array_split(np.arange(probs.size), 7):
        rel.add(probs[chunk], labels[chunk])
    expected = 0.0
    p64 = probs.astype(np.float64)
    for k in range(15):  # an independent loop over the 15 bins
        sel = (p64 >= k / 15) & ((p64 < (k + 1) / 15) if k < 14 else (p64 <= 1.0))
        if sel.any():
            expected += sel.sum() / probs.size * abs(p64[sel].mean() - labels[sel].mean())
    assert rel.ece() == pytest.approx(expected, abs=1e-12)
    assert rel.ece() == pytest.approx(M.expected_calibration_error(probs, labels), abs=1e-12)
    d = rel.diagram()
    assert d["count"].sum() == probs.size and d["edges"].tolist() == pytest.approx(np.linspace(0, 1, 16).tolist())
    with caplog.at_level(logging.WARNING):
        assert np.isnan(M.Reliability().ece())
    assert "no bases" in caplog.text


def test_merge_and_subtract_intervals_by_hand():
    s, e = M.merge_intervals(np.array([10, 0, 5, 30, 40]), np.array([20, 5, 8, 35, 40]))
    assert s.tolist() == [0, 10, 30] and e.tolist() == [8, 20, 35]  # touching [0,5)+[5,8) merged; empty dropped
    s, e = M.subtract_intervals(
        np.array([0, 100]), np.array([50, 200]), np.array([10, 40, 90]), np.array([20, 120, 95])
    )
    assert s.tolist() == [0, 20, 120] and e.tolist() == [10, 40, 200]


def test_overlaps_any_needs_one_shared_base():
    hit = M.overlaps_any(np.array([0, 10, 20, 50]), np.array([10, 11, 30, 60]), np.array([10, 29]), np.array([11, 35]))
    assert hit.tolist() == [False, True, True, False]  # [0,10) only touches [10,11)


def test_peak_level_recall_and_precision_on_hand_made_peaks():
    clean = {"chr1": (np.array([100, 300, 500, 900]), np.array([200, 400, 600, 1000]))}
    called = {"chr1": (np.array([150, 390, 700, 950]), np.array([160, 450, 800, 960]))}
    # evaluated: [0, 920): the clean peak at 900-1000 still counts (bases 900-919), the called one at 950 does not
    evaluated = {"chr1": (np.array([0]), np.array([920]))}
    got = dict(M.peak_level(clean, called, evaluated))
    assert got["peak_recall"] == pytest.approx(2 / 4)  # 100-200 and 300-400 hit
    assert got["peak_precision"] == pytest.approx(2 / 3)  # 150-160, 390-450 hit; 700-800 misses


def test_paint_window_clips_intervals_to_the_window():
    iv = (np.array([0, 50, 95]), np.array([20, 60, 200]))
    m = M.paint_window(iv, 10, 100)
    assert m.size == 90 and m.sum() == 10 + 10 + 5 and m[0] and not m[10] and m[-1]


# --------------------------------------------------------------------------- the CLI end to end

SIZES = {"chr1": 120_000, "chr2": 90_000, "chr3": 50_000}


def _peaks_df(chrom_peaks: dict[str, list[tuple[int, int]]], pval: float = 5.0) -> pd.DataFrame:
    rows = [
        (c, s, e, f"p{i}", 100, ".", 2.0, pval, pval, (e - s) // 2)
        for c, ivs in chrom_peaks.items()
        for i, (s, e) in enumerate(ivs)
    ]
    return pd.DataFrame(
        rows, columns=["chrom", "start", "end", "name", "score", "strand", "signal", "pval", "qval", "summit"]
    )


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Clean/noisy/denoised bigWigs and peaks on a 3-chromosome genome, plus the arrays they hold."""
    d = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(42)
    sizes_path = d / "genome.sizes"
    sizes_path.write_text("".join(f"{c}\t{n}\n" for c, n in SIZES.items()))
    clean_peaks = {
        c: [
            (s, s + int(rng.integers(200, 800)))
            for s in sorted(rng.choice(np.arange(0, n - 1000, 1000), 12, replace=False))
        ]
        for c, n in SIZES.items()
    }
    arrays: dict[str, dict[str, np.ndarray]] = {k: {} for k in ("clean", "noisy", "track", "prob", "pval_a", "pval_b")}
    for c, n in SIZES.items():
        truth = np.zeros(n, dtype=bool)
        for s, e in clean_peaks[c]:
            truth[s:e] = True
        rate = np.where(truth, 20.0, 1.0)
        clean = rng.poisson(rate).astype(np.float32)
        noisy = rng.binomial(clean.astype(int), 0.1).astype(np.float32)
        arrays["clean"][c] = clean
        arrays["noisy"][c] = noisy
        arrays["track"][c] = (clean + rng.normal(0, 3, n)).clip(0).astype(np.float32)
        arrays["prob"][c] = (1 / (1 + np.exp(-(truth * 3.0 + rng.normal(0, 1.5, n) - 1.5)))).astype(np.float32)
        arrays["pval_a"][c] = (noisy * 0.7).astype(np.float32)
        arrays["pval_b"][c] = np.where(truth & (rng.random(n) < 0.5), 4.0, 0.0).astype(np.float32)
    files = {"sizes": sizes_path}
    for k in ("clean", "noisy"):
        files[k] = d / f"{k}.bw"
        write_bigwig(files[k], SIZES, arrays[k])
    files["prefix"] = d / "den"
    write_bigwig(d / "den.track.bw", SIZES, arrays["track"])
    write_bigwig(d / "den.peakprob.bw", SIZES, arrays["prob"])
    for k in ("pval_a", "pval_b"):
        files[k] = d / f"{k}.bw"
        write_bigwig(files[k], SIZES, arrays[k])
    called = {
        "model": {
            c: [(s + 50, e + 100) for s, e in ivs[:9]] + [(n - 600, n - 300)]
            for (c, ivs), n in zip(clean_peaks.items(), SIZES.values())
        },
        "a": {c: [(s, e) for s, e in ivs[::2]] for c, ivs in clean_peaks.items()},
        "b": {c: [(s + 10, s + 60) for s, _ in ivs[1:5]] for c, ivs in clean_peaks.items()},
    }
    files["labels"] = d / "clean.narrowPeak"
    write_narrowpeak(_peaks_df(clean_peaks), files["labels"])
    files["model_peaks"] = d / "den.peaks.narrowPeak"
    write_narrowpeak(_peaks_df(called["model"]), files["model_peaks"])
    for k in ("a", "b"):
        files[f"peaks_{k}"] = d / f"{k}.narrowPeak"
        write_narrowpeak(_peaks_df(called[k]), files[f"peaks_{k}"])
    files["blacklist"] = d / "blacklist.bed"
    files["blacklist"].write_text("chr1\t5000\t9000\nchr2\t60000\t61000\nchr3\t0\t50000\n")
    return {"files": files, "arrays": arrays, "clean_peaks": clean_peaks, "called": called, "dir": d}


def _run_metrics(synthetic, out, extra=()):
    f = synthetic["files"]
    argv = [
        "metrics",
        "--clean",
        str(f["clean"]),
        "--noisy",
        str(f["noisy"]),
        "--labels",
        str(f["labels"]),
        "--denoised-prefix",
        str(f["prefix"]),
        "--baseline",
        f"macs3_bdgpeakcall={f['peaks_a']},{f['pval_a']}",
        "--baseline",
        f"macs3_callpeak={f['peaks_b']},{f['pval_b']}",
        "--sizes",
        str(f["sizes"]),
        "--regions",
        "chr1:0-100000",
        "chr2",
        "chr1:90000-110000",
        "--blacklist",
        str(f["blacklist"]),
        "--window-bp",
        "17000",
        "--model",
        "m1",
        "--sample",
        "S",
        "--depth",
        "5000",
        "--rep",
        "1",
        "--out",
        str(out),
        "--pr-curves",
        str(out.with_suffix(".npz")),
        *extra,
    ]
    assert main(argv) == 0
    return pd.read_csv(out, sep="\t", dtype={"depth": str, "rep": str})


def _expected_arrays(synthetic):
    """Concatenated evaluated bases: chr1 [0,110000) and chr2, blacklist removed."""
    a = synthetic["arrays"]
    keep = {"chr1": np.zeros(SIZES["chr1"], bool), "chr2": np.ones(SIZES["chr2"], bool)}
    keep["chr1"][:110_000] = True
    keep["chr1"][5000:9000] = False
    keep["chr2"][60000:61000] = False

    def cat(k):
        return np.concatenate([a[k][c][keep[c]] for c in ("chr1", "chr2")]).astype(
            np.float64
        )  # scipy sums float32 in float32

    def paint(peaks):
        out = []
        for c in ("chr1", "chr2"):
            m = np.zeros(SIZES[c], bool)
            for s, e in peaks[c]:
                m[s:e] = True
            out.append(m[keep[c]])
        return np.concatenate(out)

    return cat, paint


def test_metrics_cli_writes_long_format_equal_to_sklearn_on_the_concatenated_holdout(synthetic, tmp_path):
    df = _run_metrics(synthetic, tmp_path / "m.tsv")
    assert list(df.columns) == ["model", "sample", "depth", "rep", "method", "metric", "region", "value"]
    assert df["method"].unique().tolist() == ["noisy", "macs3_bdgpeakcall", "macs3_callpeak", "model", "model_t0.5"]
    assert set(df["region"]) == {"all", "peaks", "nonpeaks"}
    assert (df[["model", "sample", "depth", "rep"]].drop_duplicates().values.tolist()) == [["m1", "S", "5000", "1"]]
    assert not df.duplicated(["method", "metric", "region"]).any()
    got = df.set_index(["method", "metric", "region"])["value"]
    metrics_of = {m: set(df[df.method == m].metric) for m in df.method.unique()}
    assert metrics_of["noisy"] == {"pearson", "spearman", "mse", "mse_scaled", "auroc", "auprc"}
    assert metrics_of["macs3_callpeak"] == {
        "auroc",
        "auprc",
        "precision",
        "recall",
        "f1",
        "specificity",
        "jaccard",
        "peak_recall",
        "peak_precision",
    }
    # ece: the model's scores are the one probability; the others have none (no row, not NaN)
    assert metrics_of["model"] == metrics_of["noisy"] - {"mse_scaled"} | metrics_of["macs3_callpeak"] | {"ece"}
    assert df.loc[df.metric == "ece", ["method", "region"]].values.tolist() == [["model", "all"]]
    assert metrics_of["model_t0.5"] == metrics_of["macs3_callpeak"] - {"auroc", "auprc"}

    cat, paint = _expected_arrays(synthetic)
    clean, labels = cat("clean"), paint(synthetic["clean_peaks"])
    noisy, track = cat("noisy"), cat("track")
    for method, x in (("noisy", noisy), ("model", track)):
        for region, sel in (("all", slice(None)), ("peaks", labels), ("nonpeaks", ~labels)):
            assert got[method, "pearson", region] == pytest.approx(pearsonr(x[sel], clean[sel])[0], abs=1e-8)
            assert got[method, "spearman", region] == pytest.approx(spearmanr(x[sel], clean[sel])[0], abs=1e-8)
            assert got[method, "mse", region] == pytest.approx(
                np.mean((x[sel].astype(float) - clean[sel]) ** 2), rel=1e-8
            )
    scale = clean.sum(dtype=float) / noisy.sum(dtype=float)
    assert got["noisy", "mse_scaled", "all"] == pytest.approx(
        np.mean((scale * noisy - clean.astype(float)) ** 2), rel=1e-8
    )
    for method, s in (
        ("noisy", noisy),
        ("model", cat("prob")),
        ("macs3_bdgpeakcall", cat("pval_a")),
        ("macs3_callpeak", cat("pval_b")),
    ):
        assert got[method, "auroc", "all"] == pytest.approx(roc_auc_score(labels, s), abs=1e-9)
        assert got[method, "auprc", "all"] == pytest.approx(average_precision_score(labels, s), abs=1e-9)
    prob = cat("prob")
    ece = sum(
        sel.mean() * abs(prob[sel].mean() - labels[sel].mean())
        for k in range(15)
        if (sel := (np.minimum(np.floor(prob * 15), 14) == k)).any()
    )
    assert got["model", "ece", "all"] == pytest.approx(ece, abs=1e-9) and ece > 0.01
    for method, key in (("model", "model"), ("macs3_bdgpeakcall", "a"), ("macs3_callpeak", "b")):
        calls = paint(synthetic["called"][key])
        assert got[method, "precision", "all"] == pytest.approx(precision_score(labels, calls))
        assert got[method, "f1", "all"] == pytest.approx(f1_score(labels, calls))
        assert got[method, "jaccard", "all"] == pytest.approx(jaccard_score(labels, calls))
        assert got[method, "specificity", "all"] == pytest.approx(recall_score(~labels, ~calls))
    # model_t0.5: the infer peak caller at 0.5 on the probability of each merged region (chr1:0-110000, chr2)
    fixed = {}
    for c, (r0, r1) in (("chr1", (0, 110_000)), ("chr2", (0, SIZES["chr2"]))):
        st, en = call_peaks(synthetic["arrays"]["prob"][c][r0:r1], 0.5, min_length=200, max_gap=30)
        fixed[c] = list(zip(st + r0, en + r0))
    assert got["model_t0.5", "f1", "all"] == pytest.approx(f1_score(labels, paint(fixed)))
    assert got["model_t0.5", "precision", "all"] == pytest.approx(precision_score(labels, paint(fixed)))
    # macs3_bdgpeakcall called every other clean peak exactly: half of them found, all calls true
    n_clean = sum(1 for c in ("chr1", "chr2") for s, e in synthetic["clean_peaks"][c] if c == "chr2" or s < 110_000)
    assert got["macs3_bdgpeakcall", "peak_precision", "all"] == 1.0
    assert got["macs3_bdgpeakcall", "peak_recall", "all"] == pytest.approx(
        sum(1 for c in ("chr1", "chr2") for s, e in synthetic["clean_peaks"][c][::2] if c == "chr2" or s < 110_000)
        / n_clean
    )

    npz = np.load(tmp_path / "m.npz")
    assert str(npz["sample"]) == "S" and str(npz["depth"]) == "5000"
    assert set(npz["methods"]) == {"noisy", "macs3_bdgpeakcall", "macs3_callpeak", "model"}
    assert float(npz["auprc__model"]) == pytest.approx(got["model", "auprc", "all"])
    assert npz["point__model"].tolist() == pytest.approx(
        [got["model", "recall", "all"], got["model", "precision", "all"]]
    )
    assert float(npz["prevalence"]) == pytest.approx(labels.mean())
    assert float(npz["ece__model"]) == pytest.approx(got["model", "ece", "all"])
    assert npz["calib_count__model"].sum() == labels.size and "calib_count__noisy" not in npz
    assert np.nansum(npz["calib_frac_pos__model"] * npz["calib_count__model"]) == pytest.approx(labels.sum())
    # the reliability diagram of the report, from the same file
    assert main(["plots", "reliability", "--curves", str(tmp_path / "m.npz"), "--out", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_cli_without_model_and_with_given_depth_scale(synthetic, tmp_path):
    f = synthetic["files"]
    out = tmp_path / "m.tsv"
    argv = [
        "metrics",
        "--clean",
        str(f["clean"]),
        "--noisy",
        str(f["noisy"]),
        "--labels",
        str(f["labels"]),
        "--sizes",
        str(f["sizes"]),
        "--regions",
        "chr2",
        "--depth-scale",
        "10",
        "--model",
        "m1",
        "--sample",
        "S",
        "--depth",
        "given",
        "--rep",
        "1",
        "--out",
        str(out),
        "--pr-curves",
        str(tmp_path / "m.npz"),
    ]
    assert main(argv) == 0
    df = pd.read_csv(out, sep="\t")
    assert df["method"].unique().tolist() == ["noisy"] and "ece" not in set(df["metric"])
    # no probability scored: the reliability diagram says so instead of drawing an empty figure
    assert main(["plots", "reliability", "--curves", str(tmp_path / "m.npz"), "--out", str(tmp_path / "r.png")]) == 2
    a = synthetic["arrays"]
    expect = np.mean((10.0 * a["noisy"]["chr2"] - a["clean"]["chr2"]) ** 2)
    assert df.set_index(["metric", "region"]).loc[("mse_scaled", "all"), "value"] == pytest.approx(expect, rel=1e-8)


def test_metrics_cli_entirely_blacklisted_region_writes_nan_not_crash(synthetic, tmp_path, capsys):
    f = synthetic["files"]
    out = tmp_path / "m.tsv"
    argv = [
        "metrics",
        "--clean",
        str(f["clean"]),
        "--noisy",
        str(f["noisy"]),
        "--labels",
        str(f["labels"]),
        "--sizes",
        str(f["sizes"]),
        "--regions",
        "chr3",
        "--blacklist",
        str(f["blacklist"]),
        "--model",
        "m1",
        "--sample",
        "S",
        "--depth",
        "1",
        "--rep",
        "1",
        "--out",
        str(out),
    ]
    assert main(argv) == 0  # the CLI logs to stderr (its own handler)
    df = pd.read_csv(out, sep="\t")
    assert df["value"].isna().all() and "NaN" in out.read_text()
    assert "entirely blacklisted" in capsys.readouterr().err


def test_metrics_cli_bad_inputs_exit_2_with_a_message(synthetic, tmp_path, capsys):
    f = synthetic["files"]
    base = [
        "metrics",
        "--clean",
        str(f["clean"]),
        "--noisy",
        str(f["noisy"]),
        "--labels",
        str(f["labels"]),
        "--sizes",
        str(f["sizes"]),
        "--model",
        "m",
        "--sample",
        "S",
        "--depth",
        "1",
        "--rep",
        "1",
        "--out",
        str(tmp_path / "x.tsv"),
    ]
    assert main([*base, "--regions", "chrX"]) == 2
    assert main([*base, "--regions", "chr1", "--baseline", "noisy=a,b"]) == 2
    assert main([*base, "--regions", "chr1", "--denoised-prefix", str(tmp_path / "missing")]) == 2
    assert "missing.track.bw: denoised track not found" in capsys.readouterr().err
    assert not (tmp_path / "x.tsv").exists()


# --------------------------------------------------------------------------- effective depth


def test_depth_reaching_interpolates_on_log_depth():
    depths = np.array([1e6, 1e4, 1e5])
    values = np.array([0.8, 0.4, 0.6])
    d, q = depth_reaching(depths, values, 0.5)
    assert q == "=" and d == pytest.approx(10**4.5)
    assert depth_reaching(depths, values, 0.7) == (pytest.approx(10**5.5), "=")
    assert depth_reaching(depths, values, 0.9) == (1e6, ">")  # beyond every measured depth: a lower bound
    assert depth_reaching(depths, values, 0.3) == (1e4, "<=")
    assert depth_reaching(depths, np.array([0.8, np.nan, 0.6]), 0.7) == (pytest.approx(10**5.5), "=")


def test_effective_depths_table_from_long_metrics():
    rows = []
    for depth, noisy, model, macs in (("10000", 0.2, 0.5, 0.3), ("100000", 0.5, 0.8, 0.6), ("1000000", 0.7, 0.9, 0.8)):
        for rep, jitter in (("1", -0.01), ("2", 0.01)):
            rows += [
                ("m", "S", depth, rep, "noisy", "pearson", "all", noisy + jitter),
                ("m", "S", depth, rep, "model", "pearson", "all", model + jitter),
                ("m", "S", depth, rep, "macs3_callpeak", "auprc", "all", macs + jitter),
                ("m", "S", depth, rep, "model", "auprc", "all", model + jitter),
            ]
    rows.append(("m", "S", "given", "1", "model", "pearson", "all", 0.99))  # not a number: ignored
    df = pd.DataFrame(rows, columns=["model", "sample", "depth", "rep", "method", "metric", "region", "value"])
    table = effective_depths(df)
    assert list(table.columns) == [
        "model",
        "sample",
        "depth",
        "metric",
        "baseline",
        "model_value",
        "effective_depth",
        "qualifier",
        "fold",
    ]
    eff = table.set_index(["depth", "metric", "baseline"])
    r = eff.loc[("10000", "pearson", "noisy")]
    assert r["qualifier"] == "=" and r["effective_depth"] == pytest.approx(1e5) and r["fold"] == pytest.approx(10)
    r = eff.loc[("100000", "auprc", "macs3_callpeak")]  # 0.8 reached exactly at 1e6
    assert r["effective_depth"] == pytest.approx(1e6) and r["fold"] == pytest.approx(10)
    r = eff.loc[("1000000", "pearson", "noisy")]
    assert r["qualifier"] == ">" and r["effective_depth"] == 1e6 and r["fold"] == pytest.approx(1)
    assert ("given", "pearson", "noisy") not in eff.index


# --------------------------------------------------------------------------- summary


def test_summary_concatenates_and_writes_one_headline_line_per_sample_depth(synthetic, tmp_path):
    a = _run_metrics(synthetic, tmp_path / "a.tsv")
    b = a.copy()
    b["depth"] = "50000"
    b.loc[(b.method == "model") & (b.metric == "pearson"), "value"] = 0.999
    b.to_csv(tmp_path / "b.tsv", sep="\t", index=False)
    out_all, out_sum, out_eff = tmp_path / "all.tsv", tmp_path / "summary.tsv", tmp_path / "eff.tsv"
    argv = [
        "summary",
        "--metrics",
        str(tmp_path / "a.tsv"),
        str(tmp_path / "b.tsv"),
        "--samples",
        str(write_sample_sheet(tmp_path / "samples.tsv", {"S": ("HSC", "train")})),
        "--out-metrics",
        str(out_all),
        "--out-summary",
        str(out_sum),
        "--out-effective-depth",
        str(out_eff),
    ]
    assert main(argv) == 0
    allm = pd.read_csv(out_all, sep="\t", dtype={"depth": str})
    assert len(allm) == 2 * len(a) and allm["depth"].tolist()[0] == "5000"
    assert allm[["cell_type", "seen"]].drop_duplicates().values.tolist() == [["HSC", "yes"]]
    s = pd.read_csv(out_sum, sep="\t", dtype={"depth": str})
    assert s[["model", "sample", "depth"]].values.tolist() == [["m1", "S", "5000"], ["m1", "S", "50000"]]
    assert list(s.columns[:5]) == ["model", "sample", "cell_type", "seen", "depth"]
    assert s["n_reps"].tolist() == [1, 1]
    row = a.set_index(["method", "metric", "region"])["value"]
    assert s.loc[0, "model_auprc"] == pytest.approx(row["model", "auprc", "all"])
    assert s.loc[0, "noisy_pearson"] == pytest.approx(row["noisy", "pearson", "all"])
    assert s.loc[1, "model_pearson"] == pytest.approx(0.999)
    assert {"macs3_callpeak_auprc", "macs3_bdgpeakcall_f1", "model_peak_recall", "noisy_mse_scaled"} <= set(s.columns)
    eff = pd.read_csv(out_eff, sep="\t", dtype={"depth": str})
    assert set(eff["metric"]) == {"pearson", "auprc"}
    # model pearson at 5000 exceeds noisy's at both depths: a lower bound
    r = eff[(eff.depth == "5000") & (eff.metric == "pearson") & (eff.baseline == "noisy")].iloc[0]
    assert r["qualifier"] == ">" and r["effective_depth"] == 50000
    assert "pearson_fold_vs_noisy" in s.columns


def test_summary_rejects_a_table_with_wrong_columns(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n1\t2\n")
    assert (
        main(
            [
                "summary",
                "--metrics",
                str(bad),
                "--samples",
                str(write_sample_sheet(tmp_path / "samples.tsv", {"S": ("HSC", "train")})),
                "--out-metrics",
                str(tmp_path / "o.tsv"),
                "--out-summary",
                str(tmp_path / "s.tsv"),
            ]
        )
        == 2
    )


def test_effective_cells_for_few_cell_profiles_are_not_mixed_with_fragment_depths():
    """'c10'/'c100' are numbers of cells: MACS3 needs 100 cells where the model has 10.

    Fragment depths are a separate curve.
    """
    rows = []
    for depth, model, macs in (("c10", 0.5, 0.2), ("c100", 0.7, 0.5), ("10", 0.9, 0.9), ("100", 0.95, 0.95)):
        rows.append(("m", "S", depth, "1", "model", "auprc", "all", model))
        rows.append(("m", "S", depth, "1", "macs3_callpeak", "auprc", "all", macs))
    df = pd.DataFrame(rows, columns=["model", "sample", "depth", "rep", "method", "metric", "region", "value"])
    table = effective_depths(df, targets=(("auprc", ("macs3_callpeak",)),))
    r = table.set_index("depth").loc["c10"]
    assert r["qualifier"] == "=" and r["effective_depth"] == pytest.approx(100) and r["fold"] == pytest.approx(10)
    assert table.set_index("depth").loc["c100", "qualifier"] == ">"
    # the fragment depths only see each other: at 10 fragments MACS3 already matches (<=), never 'c' points
    assert table.set_index("depth").loc["10", "effective_depth"] == 10
