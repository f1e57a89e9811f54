"""Report figures: locus choice by hand, and every ``atacdenoise plots`` kind writes a real figure."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from atacdenoise.cli import main
from atacdenoise.evaluate.snapshots import choose_loci, tile_gains
from atacdenoise.io.bigwig import write_bigwig
from atacdenoise.io.intervals import write_narrowpeak
from builders import write_sample_sheet
from conftest import have

SIZES = {"chr1": 100_000, "chr2": 40_000}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GAIN_TILE = (40_000, 45_000)  # the model is perfect where the noisy track is worst
LOSS_TILE = (70_000, 75_000)  # the model overshoots a peak


def _is_png(path) -> bool:
    return path.exists() and path.stat().st_size > 5000 and path.read_bytes()[:8] == PNG_MAGIC


def test_tile_gains_by_hand():
    clean = np.array([1, 1, 4, 4], dtype=np.float32)
    noisy = np.array([0, 1, 1, 1], dtype=np.float32)
    model = np.array([1, 1, 4, 0], dtype=np.float32)
    # tile 0: (0-1)^2 + (2-1)^2 - 0 = 2; tile 1: (2-4)^2*2 - (0-4)^2 = 8 - 16 = -8
    np.testing.assert_allclose(tile_gains(clean, noisy, model, width=2, scale=2.0), [2.0, -8.0])


def test_choose_loci_takes_largest_gains_then_largest_losses_among_eligible():
    gains = np.array([5.0, -3.0, 9.0, -7.0, 1.0, 100.0, np.nan])
    eligible = np.array([True, True, True, True, True, False, True])
    idx, is_gain = choose_loci(gains, eligible, 4)
    assert idx.tolist() == [2, 0, 3, 1] and is_gain.tolist() == [True, True, False, False]
    idx, is_gain = choose_loci(gains, eligible, 3)
    assert idx.tolist() == [2, 0, 3]
    idx, _ = choose_loci(gains, np.zeros(7, bool), 4)
    assert idx.size == 0
    idx, _ = choose_loci(gains[:2], eligible[:2], 4)  # fewer tiles than asked: each used once
    assert sorted(idx.tolist()) == [0, 1]


def _np_df(peaks):
    return pd.DataFrame(
        [(c, s, e, f"p{i}", 100, ".", 2.0, 10.0 - i * 0.1, 5.0, (e - s) // 2) for i, (c, s, e) in enumerate(peaks)],
        columns=["chrom", "start", "end", "name", "score", "strand", "signal", "pval", "qval", "summit"],
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("plots")
    rng = np.random.default_rng(7)
    (d / "g.sizes").write_text("".join(f"{c}\t{n}\n" for c, n in SIZES.items()))
    peaks = [("chr1", s, s + 400) for s in range(2_000, 100_000, 8_000)] + [
        ("chr2", s, s + 300) for s in (5_000, 20_000)
    ]
    peaks.append(("chr1", 41_000, 41_600))  # in the gain tile
    peaks.append(("chr1", 71_000, 71_500))  # in the loss tile
    tr = {k: {} for k in ("clean", "noisy", "model", "prob", "pval")}
    for c, n in SIZES.items():
        rate = np.ones(n)
        for pc, s, e in peaks:
            if pc == c:
                rate[s:e] = 20
        if c == "chr1":
            rate[41_000:41_600] = 200
        clean = rng.poisson(rate).astype(np.float32)
        noisy = rng.binomial(clean.astype(int), 0.1).astype(np.float32)
        model = clean.copy() + rng.normal(0, 0.5, n).astype(np.float32).clip(0)
        if c == "chr1":
            noisy[41_000:41_600] = 0  # the noisy sample missed the strongest peak
            model[71_000:71_500] += 80  # the model overshoots
        tr["clean"][c], tr["noisy"][c], tr["model"][c] = clean, noisy, model
        tr["prob"][c] = (rate > 1).astype(np.float32) * 0.9
        tr["pval"][c] = noisy
    write_bigwig(d / "clean.bw", SIZES, tr["clean"])
    write_bigwig(d / "noisy.bw", SIZES, tr["noisy"])
    write_bigwig(d / "den.track.bw", SIZES, tr["model"])
    write_bigwig(d / "den.peakprob.bw", SIZES, tr["prob"])
    write_bigwig(d / "pval.bw", SIZES, tr["pval"])
    write_narrowpeak(_np_df(peaks), d / "clean.narrowPeak")
    write_narrowpeak(_np_df([p for p in peaks if p[1] != 41_000]), d / "den.peaks.narrowPeak")
    write_narrowpeak(_np_df(peaks[::3]), d / "macs.narrowPeak")
    (d / "bl.bed").write_text("chr1\t10000\t11000\n")
    return d


def _common(d):
    return [
        "--clean",
        str(d / "clean.bw"),
        "--noisy",
        str(d / "noisy.bw"),
        "--denoised-prefix",
        str(d / "den"),
        "--labels",
        str(d / "clean.narrowPeak"),
        "--sizes",
        str(d / "g.sizes"),
        "--blacklist",
        str(d / "bl.bed"),
    ]


def _metrics(d, tmp_path, depth, rep):
    out = tmp_path / f"m.{depth}.{rep}.tsv"
    argv = [
        "metrics",
        *_common(d),
        "--baseline",
        f"macs3_callpeak={d / 'macs.narrowPeak'},{d / 'pval.bw'}",
        "--regions",
        "chr1",
        "chr2",
        "--model",
        "m",
        "--sample",
        "HSC",
        "--depth",
        depth,
        "--rep",
        rep,
        "--out",
        str(out),
        "--pr-curves",
        str(out.with_suffix(".npz")),
    ]
    assert main(argv) == 0
    return out


def test_plots_pr_writes_png_from_metrics_npz(data, tmp_path):
    npz = [_metrics(data, tmp_path, "5000", r).with_suffix(".npz") for r in ("1", "2")]
    out = tmp_path / "pr.png"
    assert main(["plots", "pr", "--curves", *map(str, npz), "--out", str(out)]) == 0
    assert _is_png(out)


def test_plots_pr_rejects_a_file_that_is_not_an_npz(tmp_path, capsys):
    bad = tmp_path / "x.npz"
    bad.write_text("hello")
    assert main(["plots", "pr", "--curves", str(bad), "--out", str(tmp_path / "pr.png")]) == 2
    assert "not an NPZ" in capsys.readouterr().err and not (tmp_path / "pr.png").exists()


def test_plots_depth_writes_png_and_svg_with_effective_depth(tmp_path):
    rows = []
    for depth, base in (("1000", 0.2), ("10000", 0.4), ("100000", 0.6), ("given", 0.5)):
        for rep in ("1", "2"):
            for method, bonus in (("noisy", 0.0), ("macs3_callpeak", 0.05), ("model", 0.2)):
                for metric in ("pearson", "auprc"):
                    if method == "macs3_callpeak" and metric == "pearson":
                        continue
                    rows.append(("m", "HSC", depth, rep, method, metric, "all", base + bonus + 0.01 * int(rep)))
    metrics = pd.DataFrame(rows, columns=["model", "sample", "depth", "rep", "method", "metric", "region", "value"])
    metrics.to_csv(tmp_path / "metrics.tsv", sep="\t", index=False)
    assert (
        main(
            [
                "summary",
                "--metrics",
                str(tmp_path / "metrics.tsv"),
                "--samples",
                str(write_sample_sheet(tmp_path / "samples.tsv", {"HSC": ("HSC", "train")})),
                "--out-metrics",
                str(tmp_path / "all.tsv"),
                "--out-summary",
                str(tmp_path / "s.tsv"),
                "--out-effective-depth",
                str(tmp_path / "eff.tsv"),
            ]
        )
        == 0
    )
    out = tmp_path / "depth.png"
    argv = [
        "plots",
        "depth",
        "--metrics",
        str(tmp_path / "all.tsv"),
        "--effective-depth",
        str(tmp_path / "eff.tsv"),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert _is_png(out)
    svg = tmp_path / "depth.svg"
    assert main(["plots", "depth", "-v", "--metrics", str(tmp_path / "all.tsv"), "--out", str(svg)]) == 0
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()


def test_plots_tracks_picks_the_planted_gain_and_loss_loci(data, tmp_path, capsys):
    out = tmp_path / "tracks.png"
    argv = [
        "plots",
        "tracks",
        *_common(data),
        "--regions",
        "chr1",
        "chr2",
        "--baseline",
        f"macs3_callpeak={data / 'macs.narrowPeak'}",
        "--n-loci",
        "2",
        "--width",
        "5000",
        "--window-bp",
        "12000",
        "--sample",
        "HSC",
        "--depth",
        "5000",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"locus chr1:{GAIN_TILE[0]}-{GAIN_TILE[1]} (gain" in err
    assert f"locus chr1:{LOSS_TILE[0]}-{LOSS_TILE[1]} (loss" in err
    assert _is_png(out)


@pytest.mark.skipif(not have("computeMatrix"), reason="deepTools not installed")
def test_plots_heatmap_runs_deeptools_around_clean_summits(data, tmp_path):
    out, matrix = tmp_path / "heat.png", tmp_path / "matrix.gz"
    argv = [
        "plots",
        "heatmap",
        *_common(data),
        "--regions",
        "chr1:0-60000",
        "--flank",
        "1000",
        "--bin-size",
        "50",
        "--matrix",
        str(matrix),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert _is_png(out)
    with gzip.open(matrix, "rt") as fh:
        header = json.loads(fh.readline().lstrip("@"))
        rows = fh.readlines()
    # clean peaks on chr1 below 60 kb (summits), the one at 10,000-10,400 is blacklisted
    expected = sum(1 for s in [*list(range(2000, 60000, 8000)), 41000] if not 10_000 <= s + 200 < 11_000)
    assert header["group_boundaries"] == [0, expected] and len(rows) == expected
    assert header["sample_labels"] == ["noisy input", "denoised (model)", "clean (deep)"]


def test_pr_title_names_the_blacklist_only_when_one_was_masked(data, tmp_path):
    from atacdenoise.evaluate.benchmark import read_pr_curves
    from atacdenoise.evaluate.plots import plot_pr_curves

    curves = read_pr_curves([_metrics(data, tmp_path, "5000", "1").with_suffix(".npz")])
    assert str(curves[0]["blacklist"]).endswith("bl.bed")  # recorded by `atacdenoise metrics --blacklist`
    masked = plot_pr_curves(curves, tmp_path / "a.png")
    assert masked == "Per-base precision-recall against the clean peaks (holdout, blacklist masked)"
    unmasked = [{k: v for k, v in c.items() if k != "blacklist"} for c in curves]
    assert plot_pr_curves(unmasked, tmp_path / "b.png") == "Per-base precision-recall against the clean peaks (holdout)"


def test_depth_title_names_the_blacklist_only_when_one_was_masked(tmp_path):
    from atacdenoise.evaluate.plots import plot_metric_vs_depth

    rows = [
        ("m", "S", depth, "1", method, "pearson", "all", value)
        for depth, value in (("1000", 0.3), ("10000", 0.6))
        for method in ("noisy", "model")
    ]
    cols = ["model", "sample", "depth", "rep", "method", "metric", "region", "value"]
    metrics = pd.DataFrame(rows, columns=cols)
    title = plot_metric_vs_depth(metrics, tmp_path / "d.png", ["pearson"])
    assert title == "Quality vs input depth (holdout; bars: min-max over replicates)"
    title = plot_metric_vs_depth(metrics, tmp_path / "d.png", ["pearson"], blacklist_masked=True)
    assert title == "Quality vs input depth (holdout, blacklist masked; bars: min-max over replicates)"
