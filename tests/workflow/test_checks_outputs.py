"""The output checks of the end-to-end tests fail on bad outputs.

Each is run on a small good file (passes) and on bad variants of it (an all-NaN table, an empty
narrowPeak, a peak past the chromosome end, a probability above 1, an all-zero track, ...), which must
raise ``AssertionError`` naming the problem.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import checks_outputs as co
import numpy as np
import pandas as pd
import pyBigWig
import pytest

from builders import make_bam

SIZES = {"chr1": 1000, "chr2": 500}
HOLDOUT = [("chr1", 0, 1000)]
#: label peaks: chr1 [100, 300) and [600, 700) (the first twice, overlapping): 300 of chr1's 1000 bases
LABELS = "chr1\t100\t200\nchr1\t150\t300\nchr1\t600\t700\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------ prevalence


def test_prevalence_counts_overlapping_peaks_once_and_leaves_out_the_blacklist(tmp_path: Path) -> None:
    labels = write(tmp_path / "labels.bed", LABELS)
    assert co.label_prevalence(labels, HOLDOUT) == pytest.approx(300 / 1000)
    assert co.label_prevalence(labels, [("chr1", 150, 350)]) == pytest.approx(150 / 200)
    blacklist = write(tmp_path / "black.bed", "chr1\t0\t500\n")
    assert co.label_prevalence(labels, HOLDOUT, blacklist) == pytest.approx(100 / 500)


def test_prevalence_without_any_label_base_fails(tmp_path: Path) -> None:
    labels = write(tmp_path / "labels.bed", LABELS)
    with pytest.raises(AssertionError, match="no clean-peak base"):
        co.label_prevalence(labels, [("chr2", 0, 500)])


# ---------------------------------------------------------------------------------------------------- narrowPeak

GOOD_PEAKS = [
    "chr1\t100\t300\tp1\t50\t.\t2.5\t6.1\t-1\t120",
    "chr1\t100\t300\tp2\t1200\t.\t4.0\t9.0\t3.2\t40",  # a second summit of the same peak (callpeak --call-summits)
    "chr1\t600\t1000\tp3\t0\t.\t1.0\t3.0\t-1\t-1",  # ends at the chromosome's end
    "chr2\t0\t200\tp4\t7\t.\t1.0\t3.0\t-1\t199",
]


def peaks_file(tmp_path: Path, lines: list[str]) -> Path:
    return write(tmp_path / "x.narrowPeak", "".join(f"{ln}\n" for ln in lines))


def test_good_narrowpeak_passes_and_is_returned(tmp_path: Path) -> None:
    df = co.check_narrowpeak(peaks_file(tmp_path, GOOD_PEAKS), SIZES)
    assert df["end"].tolist() == [300, 300, 1000, 200] and df["summit"].tolist() == [120, 40, -1, 199]


def replaced(i: int, column: int, value: str) -> list[str]:
    lines = [ln.split("\t") for ln in GOOD_PEAKS]
    lines[i][column] = value
    return ["\t".join(x) for x in lines]


@pytest.mark.parametrize(
    "lines,kw,message",
    [
        ([], {}, r"0 peak\(s\), expected at least 1"),
        (replaced(2, 2, "1001"), {}, "outside their chromosome"),  # a peak past chr1's end
        (replaced(3, 1, "-5"), {}, "outside their chromosome"),
        (replaced(0, 2, "100"), {}, "start >= end"),
        (replaced(0, 0, "chr3"), {}, r"chromosomes \['chr3'\]"),
        (GOOD_PEAKS, {"chroms": ["chr1"]}, r"chromosomes \['chr2'\]"),
        (replaced(0, 9, "200"), {}, "summit offset outside the peak"),
        (replaced(3, 9, "-2"), {}, "summit offset outside the peak"),
        (replaced(0, 4, "-1"), {}, "negative score"),
        (GOOD_PEAKS, {"max_score": 1000}, "score above 1000"),
        (replaced(0, 6, "nan"), {}, "'signal' is not a finite number"),
        (replaced(1, 7, "inf"), {}, "'p' is not a finite number"),
        (replaced(0, 8, "-3"), {}, "'q' must be -1 or >= 0"),
        (replaced(0, 1, "100.5"), {}, "'start' holds non-integers"),
        ([GOOD_PEAKS[0], GOOD_PEAKS[2], GOOD_PEAKS[1]], {}, "starts decrease"),
        ([GOOD_PEAKS[0], GOOD_PEAKS[3], GOOD_PEAKS[2]], {}, "not in one block"),
        ([ln.rsplit("\t", 1)[0] for ln in GOOD_PEAKS], {}, r"\[9\] tab-separated columns"),
    ],
    ids=[
        "empty",
        "past-chrom-end",
        "negative-start",
        "start-not-below-end",
        "unknown-chrom",
        "chrom-not-allowed",
        "summit-past-end",
        "summit-negative",
        "negative-score",
        "score-above-max",
        "nan-signal",
        "inf-pvalue",
        "bad-qvalue",
        "fractional-start",
        "unsorted-starts",
        "chrom-blocks-interleaved",
        "nine-columns",
    ],
)
def test_bad_narrowpeak_fails(tmp_path: Path, lines: list[str], kw: dict, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        co.check_narrowpeak(peaks_file(tmp_path, lines), SIZES, **kw)


def test_missing_narrowpeak_fails(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="narrowPeak not found"):
        co.check_narrowpeak(tmp_path / "none.narrowPeak", SIZES)


# -------------------------------------------------------------------------------------------------------- bigWig


def bigwig(path: Path, tracks: dict[str, np.ndarray], sizes: dict[str, int] = SIZES) -> Path:
    """Write per-base values with pyBigWig (NaN: no data there, or a stored NaN when the name has nan_stored)."""
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(list(sizes.items()), maxZooms=0)
    for chrom in sizes:
        if chrom not in tracks:
            continue
        v = np.asarray(tracks[chrom], dtype=np.float64)
        starts = np.arange(v.size) if "nan_stored" in path.name else np.flatnonzero(~np.isnan(v))
        if starts.size:
            bw.addEntries([chrom] * starts.size, starts.tolist(), ends=(starts + 1).tolist(), values=v[starts].tolist())
    bw.close()
    return path


def prob_track() -> np.ndarray:
    """Return a probability that is high in the label peaks of LABELS and low elsewhere."""
    v = np.full(1000, 0.05)
    v[100:300] = 0.9
    v[600:700] = 0.7
    return v


def test_good_probability_bigwig_passes(tmp_path: Path) -> None:
    path = bigwig(tmp_path / "p.bw", {"chr1": prob_track(), "chr2": np.full(500, 0.1)})
    labels = write(tmp_path / "labels.bed", LABELS)
    values = co.check_probability_bigwig(path, SIZES, HOLDOUT, labels=labels)
    assert values.size == 1000 and values.max() == pytest.approx(0.9)


@pytest.mark.parametrize(
    "name,edit,message",
    [
        ("above_one.bw", lambda v: v.__setitem__(150, 1.25), "maximum 1.25 above 1.0"),
        ("negative.bw", lambda v: v.__setitem__(5, -0.01), "minimum -0.01 below 0.0"),
        (
            "gap.bw",
            lambda v: v.__setitem__(slice(400, 410), np.nan),
            r"10 base\(s\) of chr1:0-1000 NaN or without data",
        ),
        ("nan_stored.bw", lambda v: v.__setitem__(7, np.nan), r"1 base\(s\) of chr1:0-1000 NaN"),
        ("inf.bw", lambda v: v.__setitem__(7, np.inf), "inf value"),
        ("constant.bw", lambda v: v.__setitem__(slice(None), 0.3), "constant probability"),
        ("inverted.bw", lambda v: v.__setitem__(slice(None), 1 - v), "is not above"),
        ("zero.bw", lambda v: v.__setitem__(slice(None), 0.0), "all zero"),
    ],
)
def test_bad_probability_bigwig_fails(tmp_path: Path, name: str, edit, message: str) -> None:
    v = prob_track()
    edit(v)
    path = bigwig(tmp_path / name, {"chr1": v, "chr2": np.full(500, 0.1)})
    labels = write(tmp_path / "labels.bed", LABELS)
    with pytest.raises(AssertionError, match=message):
        co.check_probability_bigwig(path, SIZES, HOLDOUT, labels=labels)


def counts() -> np.ndarray:
    v = np.zeros(1000)
    v[100:301] = 2.0
    v[500:701] += 1.0
    return v


def test_coverage_with_gaps_passes_when_gaps_are_allowed(tmp_path: Path) -> None:
    v = counts()
    path = bigwig(tmp_path / "cov.bw", {"chr1": np.where(v == 0, np.nan, v)})  # zeros left out, as writers do
    got = co.check_bigwig_values(path, SIZES, HOLDOUT, lo=0, complete=False, integer=True)
    assert np.array_equal(got, v)
    with pytest.raises(AssertionError, match="NaN or without data"):
        co.check_bigwig_values(path, SIZES, HOLDOUT, complete=True)


@pytest.mark.parametrize(
    "name,tracks,sizes,kw,message",
    [
        ("zero.bw", {"chr1": np.zeros(1000)}, SIZES, {}, "all zero over"),
        ("empty.bw", {}, SIZES, {"complete": False}, "all zero over"),
        ("frac.bw", {"chr1": counts() + 0.5}, SIZES, {"integer": True}, "non-integer count"),
        (
            "nan_stored.bw",
            {"chr1": np.where(counts() == 2, np.nan, counts())},
            SIZES,
            {"complete": False},
            "NaN stored",
        ),
        ("inf.bw", {"chr1": np.where(counts() == 2, np.inf, counts())}, SIZES, {"complete": False}, "inf value"),
        ("neg.bw", {"chr1": counts() - 1}, SIZES, {"lo": 0}, "below 0"),
        ("len.bw", {"chr1": counts()}, {"chr1": 1000, "chr2": 400}, {}, "lengths"),
        ("chroms.bw", {"chr1": counts()}, {"chr1": 1000}, {"chroms": SIZES}, "chromosomes"),
        ("other.bw", {"chr1": counts()}, {"chr1": 1000, "chrX": 50}, {}, r"\['chrX'\] not in the sizes file"),
    ],
)
def test_bad_track_fails(tmp_path: Path, name: str, tracks: dict, sizes: dict, kw: dict, message: str) -> None:
    path = bigwig(tmp_path / name, tracks, sizes)
    with pytest.raises(AssertionError, match=message):
        co.check_bigwig_values(path, SIZES, HOLDOUT, **kw)


def test_a_file_that_is_not_a_bigwig_fails(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="empty file"):
        co.check_bigwig_values(write(tmp_path / "e.bw", ""), SIZES, HOLDOUT)
    with pytest.raises((AssertionError, RuntimeError)):
        co.check_bigwig_values(write(tmp_path / "t.bw", "chr1\t0\t10\t1\n"), SIZES, HOLDOUT)


# ------------------------------------------------------------------------------------------------ metrics.tsv


def metrics_rows(sample: str = "S", depth: str = "100", auprc: float = 0.6) -> list[dict]:
    """Return the rows of a complete track of metrics.tsv: noisy, one MACS3 baseline, model and model_t0.5."""
    rows = []
    required = {"noisy": "noisy", "macs3_bdgpeakcall": "macs3", "model": "model", "model_t0.5": "model_t"}
    for method, kind in required.items():
        for metric in co.REQUIRED_METRICS[kind]:
            value = auprc if metric == "auprc" else 0.5
            rows.append(dict(method=method, metric=metric, region="all", value=value))
        if kind in ("noisy", "model"):
            rows += [dict(method=method, metric="pearson", region=r, value=0.4) for r in ("peaks", "nonpeaks")]
    base = dict(model="m", sample=sample, cell_type="T", seen="yes", depth=depth, rep="1")
    return [base | r for r in rows]


METHODS = ["noisy", "macs3_bdgpeakcall", "model", "model_t0.5"]


def metrics_file(tmp_path: Path, rows: list[dict], columns: list[str] = co.METRICS_COLUMNS) -> Path:
    path = tmp_path / "metrics.tsv"
    pd.DataFrame(rows, columns=columns).to_csv(path, sep="\t", index=False, na_rep="NaN")
    return path


def test_good_metrics_table_passes(tmp_path: Path) -> None:
    rows = metrics_rows() + metrics_rows(depth="given")
    df = co.check_metrics_table(metrics_file(tmp_path, rows), METHODS, samples=["S"], depths=["100", "given"])
    assert len(df) == len(rows) and df["value"].dtype == float


def with_value(rows: list[dict], metric: str, value: float, method: str = "model") -> list[dict]:
    return [r | {"value": value} if (r["metric"], r["method"]) == (metric, method) else r for r in rows]


@pytest.mark.parametrize(
    "rows,message",
    [
        ([r | {"value": np.nan} for r in metrics_rows()], r"\d+ value\(s\) NaN"),  # the all-NaN table
        (with_value(metrics_rows(), "pearson", np.nan), r"NaN, inf"),
        (with_value(metrics_rows(), "mse", np.inf), r"NaN, inf"),
        ([r | {"value": "n/a"} if r["metric"] == "f1" else r for r in metrics_rows()], "not a number"),
        (with_value(metrics_rows(), "auprc", 1.2), "outside their metric's range"),
        (with_value(metrics_rows(), "pearson", -1.5, "noisy"), "outside their metric's range"),
        (with_value(metrics_rows(), "mse", -3.0), "outside their metric's range"),
        ([r for r in metrics_rows() if (r["method"], r["metric"]) != ("model", "jaccard")], r"lacks \['jaccard'\]"),
        ([r for r in metrics_rows() if r["method"] != "macs3_bdgpeakcall"], "'macs3_bdgpeakcall' lacks"),
        (metrics_rows() + metrics_rows()[:1], "duplicated rows"),
        ([], "no rows"),
        ([r | {"metric": "pearsn"} if r["metric"] == "pearson" else r for r in metrics_rows()], "unknown metrics"),
        ([r | {"seen": "maybe"} for r in metrics_rows()], "seen values"),
    ],
    ids=[
        "all-nan",
        "one-nan",
        "inf",
        "text",
        "auprc-above-1",
        "pearson-below-minus-1",
        "negative-mse",
        "missing-metric",
        "missing-method",
        "duplicate",
        "header-only",
        "unknown-metric",
        "bad-seen",
    ],
)
def test_bad_metrics_table_fails(tmp_path: Path, rows: list[dict], message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        co.check_metrics_table(metrics_file(tmp_path, rows), METHODS)


def test_metrics_table_with_other_columns_or_depths_fails(tmp_path: Path) -> None:
    path = metrics_file(tmp_path, metrics_rows(), [c for c in co.METRICS_COLUMNS if c != "seen"])
    with pytest.raises(AssertionError, match="columns"):
        co.check_metrics_table(path, METHODS)
    with pytest.raises(AssertionError, match="depths"):
        co.check_metrics_table(metrics_file(tmp_path, metrics_rows()), METHODS, depths=["100", "given"])
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(AssertionError, match="empty file"):
        co.check_metrics_table(tmp_path / "empty.tsv", METHODS)


def test_auprc_must_beat_the_peak_prevalence(tmp_path: Path) -> None:
    rows = metrics_rows(auprc=0.31)
    df = co.check_metrics_table(metrics_file(tmp_path, rows), METHODS)
    got = co.check_auprc_above_prevalence(df, {"S": 0.3}, ["noisy", "macs3_bdgpeakcall", "model"])
    assert len(got) == 3
    with pytest.raises(AssertionError, match="not above the peak prevalence"):
        co.check_auprc_above_prevalence(df, {"S": 0.31}, ["model"])  # a score without skill: AUPRC = prevalence
    with pytest.raises(AssertionError, match="no prevalence"):
        co.check_auprc_above_prevalence(df, {"other": 0.1}, ["model"])
    with pytest.raises(AssertionError, match="expected an AUPRC"):
        co.check_auprc_above_prevalence(df, {"S": 0.1}, ["model", "macs3_callpeak"])


# ------------------------------------------------------------------------------------------------ summary tables


def summary_rows() -> list[dict]:
    base = dict(model="m", sample="S", cell_type="T", seen="yes", n_reps=1)
    metrics = {"noisy_pearson": 0.9, "noisy_mse_scaled": 12.0, "macs3_callpeak_auprc": 0.3, "model_auprc": 0.8}
    metrics |= {"model_t0.5_f1": 0.7, "macs3_bdgpeakcall_peak_recall": 0.6}
    return [
        base | {"depth": "100", **metrics, "auprc_fold_vs_noisy": 2.5, "auprc_fold_vs_noisy_q": "="},
        base | {"depth": "given", **metrics, "auprc_fold_vs_noisy": np.nan, "auprc_fold_vs_noisy_q": np.nan},
    ]


def summary_file(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "summary.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False, na_rep="NaN")
    return path


def test_good_summary_passes(tmp_path: Path) -> None:
    df = co.check_summary_table(summary_file(tmp_path, summary_rows()), ["sample", "depth"], rows=2)
    assert df["depth"].tolist() == ["100", "given"]


@pytest.mark.parametrize(
    "edit,message",
    [
        ({"model_auprc": np.nan}, "'model_auprc' is NaN or inf"),
        ({"noisy_pearson": np.inf}, "'noisy_pearson' is NaN or inf"),
        ({"macs3_callpeak_auprc": 1.5}, r"outside \[0.0, 1.0\]"),
        ({"noisy_mse_scaled": -1.0}, "outside"),
        ({"macs3_bdgpeakcall_peak_recall": -0.1}, "'macs3_bdgpeakcall_peak_recall' outside"),
        ({"auprc_fold_vs_noisy": -2.0}, "NaN or a positive number"),
        ({"auprc_fold_vs_noisy_q": "?"}, "qualifier"),
        ({"n_reps": 0}, "'n_reps' below 1"),
    ],
)
def test_bad_summary_fails(tmp_path: Path, edit: dict, message: str) -> None:
    rows = summary_rows()
    rows[0] |= edit
    with pytest.raises(AssertionError, match=message):
        co.check_summary_table(summary_file(tmp_path, rows), ["sample", "depth"])


def test_summary_gap_rows_may_be_negative_but_not_nan(tmp_path: Path) -> None:
    rows = [r | {"cell_type": co.GAP_CELL_TYPE, "model_auprc": -0.2} for r in summary_rows()]
    co.check_summary_table(summary_file(tmp_path, rows), ["cell_type", "depth"])
    rows[0]["model_auprc"] = np.nan
    with pytest.raises(AssertionError, match="NaN or inf"):
        co.check_summary_table(summary_file(tmp_path, rows), ["cell_type", "depth"])


def test_summary_without_rows_or_model_columns_fails(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="no rows"):
        co.check_summary_table(write(tmp_path / "s.tsv", "model\tsample\tdepth\tmodel_auprc\n"), ["sample"])
    with pytest.raises(AssertionError, match="no header"):
        co.check_summary_table(write(tmp_path / "s.tsv", "\n"), ["sample"])
    rows = [{k: v for k, v in r.items() if not k.startswith("model_")} for r in summary_rows()]
    with pytest.raises(AssertionError, match="no model_"):
        co.check_summary_table(summary_file(tmp_path, rows), ["sample", "depth"])
    with pytest.raises(AssertionError, match="duplicated"):
        co.check_summary_table(summary_file(tmp_path, summary_rows() * 2), ["sample", "depth"])


def test_effective_depth_table(tmp_path: Path) -> None:
    head = "\t".join(co.EFFECTIVE_DEPTH_COLUMNS)
    good = f"{head}\nm\tS\tT\tyes\t100\tauprc\tnoisy\t0.8\t350\t=\t3.5\n"
    co.check_effective_depth(write(tmp_path / "e.tsv", good))
    with pytest.raises(AssertionError, match="'fold' is NaN"):
        co.check_effective_depth(write(tmp_path / "e.tsv", good.replace("3.5\n", "NaN\n")))
    with pytest.raises(AssertionError, match="qualifiers"):
        co.check_effective_depth(write(tmp_path / "e.tsv", good.replace("\t=\t", "\t~\t")))
    with pytest.raises(AssertionError, match="outside their metric's range"):
        co.check_effective_depth(write(tmp_path / "e.tsv", good.replace("0.8", "1.8")))
    with pytest.raises(AssertionError, match="columns"):
        co.check_effective_depth(write(tmp_path / "e.tsv", good), by_cell_type=True)


def test_references_table(tmp_path: Path) -> None:
    head = "\t".join(co.REFERENCES_COLUMNS)
    good = f"{head}\nS\tT\ttrain\t2\ta.tsv.gz; b.tsv.gz\tn.tsv.gz\n"
    co.check_references(write(tmp_path / "r.tsv", good), ["S"])
    with pytest.raises(AssertionError, match="n_reference_files"):
        co.check_references(write(tmp_path / "r.tsv", good.replace("\t2\t", "\t3\t")), ["S"])
    with pytest.raises(AssertionError, match="samples"):
        co.check_references(write(tmp_path / "r.tsv", good), ["S", "U"])


# ------------------------------------------------------------------------------------------------------ QC


def qc_rows() -> list[dict]:
    row = dict(kind="bam", input="x.bam", paired=True, reads_used=1000, fragments_used=500, cut_sites=2000)
    row |= dict(duplicate_fraction=0.1, low_mapq_fraction=0.05, frip=0.4, tss_enrichment=8.0)
    row |= dict(fraglen_fragments=500, fraglen_median=120, fraglen_nfr_fraction=0.6, fraglen_mono_fraction=0.3)
    row |= {"region_mb": 2.0, "cut_sites_per_mb": 1000.0, "cut_sites_per_mb:chr1": 1000.0}
    return [dict(sample="S", depth="full", rep="1") | row, dict(sample="A", depth="given", rep="1") | row]


EXPECTED_QC = [("S", "full", "1"), ("A", "given", "1")]


def qc_file(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "qc.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False, na_rep="NA")
    return path


def test_good_qc_table_passes(tmp_path: Path) -> None:
    rows = qc_rows()
    rows[1]["frip"] = np.nan  # an apply sample: no clean peaks
    assert len(co.check_qc_table(qc_file(tmp_path, rows), EXPECTED_QC, frip=["S"])) == 2


@pytest.mark.parametrize(
    "edit,message",
    [
        ({"frip": 1.5}, r"'frip' outside \[0, 1\]"),
        ({"frip": np.nan}, "'frip' is NaN"),
        ({"duplicate_fraction": -0.1}, "'duplicate_fraction' outside"),
        ({"cut_sites": 0, "cut_sites_per_mb": 0.0}, "no reads or cut sites"),
        ({"cut_sites_per_mb": 7.0}, "cut_sites_per_mb != cut_sites / region_mb"),
        ({"reads_used": np.nan}, "'reads_used' is NaN"),
        ({"sample": "T"}, "rows"),
        ({"extra": 1}, "unexpected columns"),
    ],
)
def test_bad_qc_table_fails(tmp_path: Path, edit: dict, message: str) -> None:
    rows = qc_rows()
    rows[0] |= edit
    with pytest.raises(AssertionError, match=message):
        co.check_qc_table(qc_file(tmp_path, rows), EXPECTED_QC, frip=["S"])


def test_qc_table_without_a_column_fails(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "tss_enrichment"} for r in qc_rows()]
    with pytest.raises(AssertionError, match=r"\['tss_enrichment'\] missing"):
        co.check_qc_table(qc_file(tmp_path, rows), EXPECTED_QC)


def test_fragment_length_histogram(tmp_path: Path) -> None:
    table = pd.DataFrame({"length": range(1001), "count": 0})
    table.loc[150, "count"] = 7
    path = tmp_path / "f.tsv"
    table.to_csv(path, sep="\t", index=False)
    co.check_fraglen(path, paired=True)
    with pytest.raises(AssertionError, match="without pairs"):
        co.check_fraglen(path, paired=False)
    table.loc[150, "count"] = 0
    table.to_csv(path, sep="\t", index=False)
    with pytest.raises(AssertionError, match="no fragment"):
        co.check_fraglen(path, paired=True)
    table.loc[3, "count"] = -1
    table.to_csv(path, sep="\t", index=False)
    with pytest.raises(AssertionError, match="non-negative integers"):
        co.check_fraglen(path, paired=True)


# ------------------------------------------------------------------------------- history, fitness, figures, report


def history_file(tmp_path: Path, **edit) -> Path:
    df = pd.DataFrame(
        {
            "epoch": [1, 2],
            "train_loss": [0.3, 0.2],
            "val_loss": [0.5, 0.4],
            "val_pearson": [0.9, 0.92],
            "val_auroc": [0.9, 0.95],
            "val_auprc": [0.7, 0.8],
            "lr": [1e-3, 1e-3],
            "best": [True, True],
            "seconds": [4.0, 4.1],
        }
    )
    for k, v in edit.items():
        df.loc[0, k] = v
    path = tmp_path / "history.tsv"
    df.to_csv(path, sep="\t", index=False, na_rep="NA")
    return path


def test_training_history(tmp_path: Path) -> None:
    co.check_history(history_file(tmp_path), epochs=2)
    with pytest.raises(AssertionError, match=r"expected 1\.\.3"):
        co.check_history(history_file(tmp_path), epochs=3)
    with pytest.raises(AssertionError, match="'train_loss' is NaN"):
        co.check_history(history_file(tmp_path, train_loss=np.nan), epochs=2)
    with pytest.raises(AssertionError, match="'val_auprc' outside"):
        co.check_history(history_file(tmp_path, val_auprc=1.3), epochs=2)


def test_fitness_table(tmp_path: Path) -> None:
    head = "\t".join(co.FITNESS_COLUMNS)
    good = (
        f"{head}\npreprocessing\ts=1\ts=1\ts=1\ts=1\tok\tagree\ncut_sites_per_mb\t1500\t700\t1100\t1500\tok\tx\n"
        "fraction_in_training_peaks\t0.6\t0.6\t0.6\t0.6\tok\tx\nfragment_length_distance\tNA\tNA\tNA\tNA\tunknown\tx\n"
    )
    co.check_fitness(write(tmp_path / "f.tsv", good))
    with pytest.raises(AssertionError, match="statuses"):
        co.check_fitness(write(tmp_path / "f.tsv", good.replace("\tunknown\t", "\tbroken\t")))
    with pytest.raises(AssertionError, match="expected a positive number"):
        co.check_fitness(write(tmp_path / "f.tsv", good.replace("\t1500\t700", "\tnan\t700")))


def png_bytes(width: int, height: int) -> bytes:
    """Return a valid grey PNG of width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_png_figures(tmp_path: Path) -> None:
    path = tmp_path / "f.png"
    path.write_bytes(png_bytes(320, 240))
    assert co.check_png(path) == (320, 240)
    path.write_bytes(png_bytes(10, 10))
    with pytest.raises(AssertionError, match="10 x 10"):
        co.check_png(path)
    with pytest.raises(AssertionError, match="not a PNG"):
        co.check_png(write(tmp_path / "t.png", "<svg/>" * 10))
    with pytest.raises(AssertionError, match="empty file"):
        co.check_png(write(tmp_path / "e.png", ""))


def test_html_report(tmp_path: Path) -> None:
    body = "<!DOCTYPE html><html><body>" + "x" * 20_000 + "metrics.tsv</body></html>"
    co.check_html_report(write(tmp_path / "r.html", body), mentions=["metrics.tsv"])
    with pytest.raises(AssertionError, match="empty file"):
        co.check_html_report(write(tmp_path / "r.html", ""))
    with pytest.raises(AssertionError, match="bytes, expected at least"):
        co.check_html_report(write(tmp_path / "r.html", "<html></html>"))
    with pytest.raises(AssertionError, match="not an HTML document"):
        co.check_html_report(write(tmp_path / "r.html", "x" * 20_000))
    with pytest.raises(AssertionError, match=r"does not mention \['summary.tsv'\]"):
        co.check_html_report(write(tmp_path / "r.html", body), mentions=["summary.tsv"])


# ------------------------------------------------------------------------------------------------- regions


def test_parse_region_and_sizes(tmp_path: Path) -> None:
    sizes = co.read_sizes(write(tmp_path / "s.sizes", "chr1\t1000\nchr2\t500\n"))
    assert sizes == SIZES
    assert co.parse_region("chr2", sizes) == ("chr2", 0, 500)
    assert co.parse_region("chr1:100-200", sizes) == ("chr1", 100, 200)
    for bad in ("chr3", "chr1:100-2000", "chr1:200-100"):
        with pytest.raises(ValueError):
            co.parse_region(bad, sizes)


# ------------------------------------------------------------------------------------------ BAM, coverage, model


def single_end_bam(tmp_path: Path, n: int, meta: dict) -> Path:
    """Write ``n`` usable single-end reads on chr1 as an indexed BAM with a subsample sidecar ``meta``."""
    reads = [dict(name=f"r{i}", flag=0, chrom="chr1", pos=10 * i) for i in range(n)]
    reads.append(dict(name="lowq", flag=0, chrom="chr1", pos=5, mapq=3))  # not usable: below min_mapq
    path = make_bam(tmp_path / "sub.bam", reads)
    Path(f"{path}.json").write_text(json.dumps(meta))
    return path


def subsample_meta(achieved: int, target: int = 50, available: int = 500) -> dict:
    return dict(target=target, fraction=target / available, achieved=achieved, available=available, min_mapq=30)


def test_subsampled_bam_is_checked_against_its_sidecar(tmp_path: Path) -> None:
    assert co.check_subsample_bam(single_end_bam(tmp_path, 50, subsample_meta(50)))["achieved"] == 50
    with pytest.raises(AssertionError, match="50 usable fragments in the BAM, sidecar says achieved 51"):
        co.check_subsample_bam(single_end_bam(tmp_path, 50, subsample_meta(51)))
    with pytest.raises(AssertionError, match="for a target of 500"):
        co.check_subsample_bam(single_end_bam(tmp_path, 50, subsample_meta(50, target=500, available=5000)))
    path = single_end_bam(tmp_path, 50, subsample_meta(50))
    Path(f"{path}.bai").unlink()
    with pytest.raises(AssertionError, match=r"no \.bai index"):
        co.check_subsample_bam(path)


def coverage_bigwig(tmp_path: Path, cut_sites: int, recorded: int) -> Path:
    """Write ``cut_sites`` boxes of 201 bases on chr1 and a sidecar that records ``recorded`` cut sites."""
    v = np.zeros(1000)
    for c in np.linspace(150, 850, cut_sites).astype(int):
        v[c - 100 : c + 101] += 1
    path = bigwig(tmp_path / "cov.bw", {"chr1": np.where(v == 0, np.nan, v)})
    meta = dict(smooth_bp=200, cpm=False, n_cut_sites={"chr1": recorded, "chr2": 0})
    Path(f"{path}.json").write_text(json.dumps(meta))
    return path


def test_coverage_sums_to_a_box_per_cut_site(tmp_path: Path) -> None:
    co.check_coverage_total(coverage_bigwig(tmp_path, 3, 3))
    with pytest.raises(AssertionError, match=r"chr1: coverage sums to 603.0, expected 201 x 4"):
        co.check_coverage_total(coverage_bigwig(tmp_path, 3, 4))
    with pytest.raises(AssertionError, match="expected 201 x 2"):
        co.check_coverage_total(coverage_bigwig(tmp_path, 3, 2))


def test_model_file(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    ckpt = {"format": "atacdenoise-model/1", "hparams": {"filters": 2}, "threshold": 0.4}
    ckpt["state_dict"] = {"w": torch.ones(3), "b": torch.zeros(1), "steps": torch.tensor(5)}
    path = tmp_path / "model.pt"
    torch.save(ckpt, path)
    assert co.check_model_file(path)["threshold"] == 0.4
    for edit, message in [
        ({"state_dict": {"w": torch.tensor([1.0, float("nan")])}}, r"non-finite weights in \['w'\]"),
        ({"state_dict": {"w": torch.zeros(3)}}, "all weights zero"),
        ({"threshold": 1.0}, "threshold"),
        ({"format": "other"}, "not an atacdenoise model"),
    ]:
        torch.save(ckpt | edit, path)
        with pytest.raises(AssertionError, match=message):
            co.check_model_file(path)


def test_narrowpeak_minimum_length(tmp_path: Path) -> None:
    path = peaks_file(tmp_path, GOOD_PEAKS)
    co.check_narrowpeak(path, SIZES, min_length=200)
    with pytest.raises(AssertionError, match=r"3 peak\(s\) shorter than 201 bp"):
        co.check_narrowpeak(path, SIZES, min_length=201)
