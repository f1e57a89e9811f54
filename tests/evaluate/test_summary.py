"""Seen vs unseen cell types in the benchmark tables and the depth figure (atacdenoise summary, plots depth)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from atacdenoise.cli import main
from atacdenoise.evaluate.benchmark import COHORT_COLUMNS, COLUMNS, read_metrics
from builders import write_model_file, write_sample_sheet

#: cell type of each sample and its sheet role: A and C trained on, B held out
SHEET = {"A1": ("A", "train"), "A2": ("A", "train"), "C1": ("C", "train"), "B1": ("B", "test")}
#: per cell type and method: the score at depths 1000 and 10000 (pearson; auprc is 0.1 lower)
BASE = {
    "A": {"noisy": (0.30, 0.60), "model": (0.70, 0.80)},
    "C": {"noisy": (0.35, 0.65), "model": (0.75, 0.85)},
    "B": {"noisy": (0.20, 0.60), "model": (0.40, 0.70)},
}
OFFSET = {"A1": 0.03, "A2": 0.0, "C1": 0.0, "B1": 0.0}  # A's two samples differ
JITTER = {"1": -0.01, "2": 0.02}  # replicates differ too


def _rows() -> pd.DataFrame:
    rows = []
    for sample, (depth_i, depth), rep, method, metric in itertools.product(
        SHEET, enumerate(("1000", "10000")), JITTER, ("noisy", "model"), ("pearson", "auprc")
    ):
        value = BASE[SHEET[sample][0]][method][depth_i] - (0.1 if metric == "auprc" else 0) + OFFSET[sample]
        value += JITTER[rep]
        rows.append(("m", sample, depth, rep, method, metric, "all", value))
        rows.append(("m", sample, depth, rep, method, metric, "peaks", 9.0))  # another region: never averaged in
    return pd.DataFrame(rows, columns=COLUMNS)


def _summary(tmp_path, metrics: pd.DataFrame, *extra: str) -> dict[str, pd.DataFrame]:
    metrics.to_csv(tmp_path / "in.tsv", sep="\t", index=False)
    out = {
        name: tmp_path / f"{name}.tsv"
        for name in ("metrics", "summary", "summary_by_cell_type", "effective_depth", "effective_depth_by_cell_type")
    }
    argv = ["summary", "--metrics", str(tmp_path / "in.tsv")]
    argv += ["--samples", str(write_sample_sheet(tmp_path / "samples.tsv", SHEET)), *extra]
    argv += ["--out-metrics", str(out["metrics"]), "--out-summary", str(out["summary"])]
    argv += ["--out-summary-by-cell-type", str(out["summary_by_cell_type"])]
    argv += ["--out-effective-depth", str(out["effective_depth"])]
    argv += ["--out-effective-depth-by-cell-type", str(out["effective_depth_by_cell_type"])]
    assert main(argv) == 0
    return {k: pd.read_csv(p, sep="\t", dtype={"depth": str}, keep_default_na=False) for k, p in out.items()}


def _by_hand(metrics: pd.DataFrame, cell_types: list[str], method: str, metric: str, depth: str) -> float:
    """Mean of every region-all value of the samples of ``cell_types`` (plain Python, no pandas grouping)."""
    samples = [s for s, (ct, _) in SHEET.items() if ct in cell_types]
    values = [
        r.value
        for r in metrics.itertuples()
        if r.sample in samples and r.method == method and r.metric == metric and r.depth == depth and r.region == "all"
    ]
    return sum(values) / len(values)


def test_cell_type_lines_and_the_seen_minus_unseen_gap(tmp_path, capsys):
    metrics = _rows()
    out = _summary(tmp_path, metrics)
    assert "role-train row" in capsys.readouterr().err  # no --model: the sheet says what is seen

    m = out["metrics"]
    assert list(m.columns) == COHORT_COLUMNS
    assert dict(zip(m["sample"], m["seen"])) == {"A1": "yes", "A2": "yes", "C1": "yes", "B1": "no"}
    assert list(read_metrics(tmp_path / "metrics.tsv").columns) == COHORT_COLUMNS  # plots and the API read it

    s = out["summary"]
    assert list(s.columns[:6]) == ["model", "sample", "cell_type", "seen", "depth", "n_reps"]
    assert len(s) == 4 * 2 and set(zip(s["sample"], s["cell_type"])) == {(k, v[0]) for k, v in SHEET.items()}

    ct = out["summary_by_cell_type"]
    lead = ["model", "cell_type", "seen", "depth", "n_cell_types", "n_samples", "n_tracks"]
    assert list(ct.columns[: len(lead)]) == lead
    assert ct[["cell_type", "seen", "depth"]].values.tolist() == [
        ["A", "yes", "1000"],
        ["A", "yes", "10000"],
        ["C", "yes", "1000"],
        ["C", "yes", "10000"],
        ["B", "no", "1000"],
        ["B", "no", "10000"],
        ["seen - unseen", "gap", "1000"],
        ["seen - unseen", "gap", "10000"],
    ]
    lines = ct.set_index(["cell_type", "depth"])
    assert lines.loc[("A", "1000"), ["n_cell_types", "n_samples", "n_tracks"]].tolist() == [1, 2, 4]
    assert lines.loc[("seen - unseen", "1000"), ["n_cell_types", "n_samples", "n_tracks"]].tolist() == [3, 4, 8]
    for (cell_type, depth), method, metric in itertools.product(
        [("A", "1000"), ("B", "10000"), ("C", "10000")], ("noisy", "model"), ("pearson", "auprc")
    ):
        expected = _by_hand(metrics, [cell_type], method, metric, depth)
        assert float(lines.loc[(cell_type, depth), f"{method}_{metric}"]) == pytest.approx(expected)
    # A pools its two samples: 0.70 + (0.03 + 0) / 2 + (-0.01 + 0.02) / 2
    assert float(lines.loc[("A", "1000"), "model_pearson"]) == pytest.approx(0.72)
    for depth, method, metric in itertools.product(("1000", "10000"), ("noisy", "model"), ("pearson", "auprc")):
        seen = (_by_hand(metrics, ["A"], method, metric, depth) + _by_hand(metrics, ["C"], method, metric, depth)) / 2
        gap = seen - _by_hand(metrics, ["B"], method, metric, depth)
        assert float(lines.loc[("seen - unseen", depth), f"{method}_{metric}"]) == pytest.approx(gap)
    # at 1000: seen model Pearson (0.72 + 0.755) / 2, unseen 0.405
    assert float(lines.loc[("seen - unseen", "1000"), "model_pearson"]) == pytest.approx(0.3325)

    # effective depth per cell type: B's model (0.405 at 1000) between its noisy 0.205 (1000) and 0.605 (10000)
    e = out["effective_depth_by_cell_type"]
    assert list(e.columns[:4]) == ["model", "cell_type", "seen", "depth"]
    r = e[(e.cell_type == "B") & (e.depth == "1000") & (e.metric == "pearson") & (e.baseline == "noisy")].iloc[0]
    assert r["seen"] == "no" and r["qualifier"] == "="
    assert float(r["effective_depth"]) == pytest.approx(10**3.5) and float(r["fold"]) == pytest.approx(10**0.5)
    assert float(lines.loc[("B", "1000"), "pearson_fold_vs_noisy"]) == pytest.approx(10**0.5)
    assert lines.loc[("B", "1000"), "pearson_fold_vs_noisy_q"] == "="
    per_sample = out["effective_depth"]
    assert list(per_sample.columns[:4]) == ["model", "sample", "cell_type", "seen"]
    assert set(per_sample.loc[per_sample["sample"] == "B1", "seen"]) == {"no"}


def test_seen_comes_from_the_model_trained_cell_types_over_the_sheet(tmp_path, capsys):
    """The model says it was trained on B only (pretrained elsewhere): the sheet's roles do not count."""
    model = write_model_file(tmp_path / "model.pt", trained_cell_types=["B"], trained_samples=["B_other_lab"])
    out = _summary(tmp_path, _rows(), "--model", str(model))
    assert "trained_cell_types of" in capsys.readouterr().err
    assert dict(zip(out["summary"]["sample"], out["summary"]["seen"])) == {
        "A1": "no",
        "A2": "no",
        "C1": "no",
        "B1": "yes",
    }
    ct = out["summary_by_cell_type"]
    assert ct["cell_type"].tolist()[:2] == ["B", "B"]  # seen first
    gap = ct.set_index(["cell_type", "depth"]).loc[("seen - unseen", "1000"), "model_pearson"]
    assert float(gap) == pytest.approx(0.405 - (0.72 + 0.755) / 2)


def test_a_model_without_trained_cell_types_falls_back_to_the_sheet_with_a_warning(tmp_path, capsys):
    model = write_model_file(tmp_path / "model.pt")  # as models trained before cell types were recorded
    out = _summary(tmp_path, _rows(), "--model", str(model))
    err = capsys.readouterr().err
    assert "WARNING" in err and "records no trained_cell_types" in err
    assert dict(zip(out["summary"]["sample"], out["summary"]["seen"]))["B1"] == "no"
    assert set(out["summary"].loc[out["summary"]["cell_type"] == "A", "seen"]) == {"yes"}


def test_one_seen_cell_type_gives_no_gap_lines(tmp_path):
    metrics = _rows()
    out = _summary(tmp_path, metrics[metrics["sample"].isin(["A1", "A2"])])
    ct = out["summary_by_cell_type"]
    assert ct[["cell_type", "seen"]].drop_duplicates().values.tolist() == [["A", "yes"]]
    assert np.isfinite(ct["pearson_fold_vs_noisy"]).all()


def test_a_sample_missing_from_the_sheet_is_an_error(tmp_path, capsys):
    metrics = _rows()
    metrics.loc[metrics["sample"] == "B1", "sample"] = "X9"
    metrics.to_csv(tmp_path / "in.tsv", sep="\t", index=False)
    argv = ["summary", "--metrics", str(tmp_path / "in.tsv"), "--samples"]
    argv += [str(write_sample_sheet(tmp_path / "samples.tsv", SHEET)), "--out-metrics", str(tmp_path / "m.tsv")]
    assert main([*argv, "--out-summary", str(tmp_path / "s.tsv")]) == 2
    assert "no row for samples ['X9']" in capsys.readouterr().err and not (tmp_path / "s.tsv").exists()


def test_plots_depth_draws_seen_and_unseen_cell_types(tmp_path):
    from atacdenoise.evaluate.plots import plot_metric_vs_depth

    _summary(tmp_path, _rows())
    out = tmp_path / "depth.png"
    argv = ["plots", "depth", "--metrics", str(tmp_path / "metrics.tsv"), "--out", str(out)]
    argv += ["--effective-depth", str(tmp_path / "effective_depth.tsv")]
    assert main(argv) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    title = plot_metric_vs_depth(read_metrics(tmp_path / "metrics.tsv"), tmp_path / "d.png", ["pearson"])
    assert "by cell type" in title and "seen = trained on" in title and "dashed" in title
    # one cell type: the per-sample figure, its title saying whether the model was trained on it
    one = read_metrics(tmp_path / "metrics.tsv")
    one = one[one["cell_type"] == "B"]
    title = plot_metric_vs_depth(one, tmp_path / "one.png", ["pearson"])
    assert title.startswith("Quality vs input depth (holdout;") and "cell type B: unseen (seen = trained on)" in title


def test_reference_table_names_the_pooled_libraries_and_the_noisy_ones():
    """The benchmark states which libraries made each reference and which were scored against it."""
    from atacdenoise.evaluate.summary import reference_table

    sheet = pd.DataFrame(
        {
            "sample": ["A", "B", "C"],
            "cell_type": ["t1", "t2", "t3"],
            "path": ["a1.tsv.gz;a2.tsv.gz; a3.tsv.gz", "b.bam", "cells.tsv.gz"],
            "noisy": ["a4.tsv.gz", "", ""],
            "barcodes": ["", "", "bc.tsv"],
            "role": ["train", "", "test"],
        }
    )
    metrics = pd.DataFrame({"sample": ["A", "A", "C", "B"]})
    t = reference_table(sheet, metrics).set_index("sample")
    assert list(t.index) == ["A", "C", "B"]
    assert t.loc["A", "reference"] == "a1.tsv.gz; a2.tsv.gz; a3.tsv.gz" and t.loc["A", "n_reference_files"] == 3
    assert t.loc["A", "noisy"] == "a4.tsv.gz" and t.loc["B", "role"] == "train" and t.loc["B", "noisy"] == ""
    assert t.loc["C", "reference"] == "cells.tsv.gz (all cells of cell type t3)"
