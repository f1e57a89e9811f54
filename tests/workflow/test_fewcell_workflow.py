"""End to end: the few-cell (fragments + barcodes) path of the workflow on a small simulated fixture.

The fixture is made by the workflow itself (rule simulate_cells) from the real
HSC 80M cut sites: 400 cells split into types A (train) and B (test, held out
of training); noisy profiles of 10 and 50 cells; a tiny model.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import checks_outputs as co
import pandas as pd
import pytest
import yaml

from conftest import REPO, local_snakemake

pytestmark = pytest.mark.slow

FAST = {
    "cells": [10, 50],
    "replicates": 1,
    "simulate_cells": {
        "bam": "resources/demo/HSC_80M.chr1_chr2.bam",
        "cells": 400,
        "cell_types": ["A", "B"],
        "seed": 2,
    },
    # a short validation region and denoising of chr2 only (the holdout is on chr2) keep the CPU time down
    "split": {"val_chroms": ["chr2:4000000-5000000"], "holdout_chroms": ["chr2:5000000-10000000"]},
    "model": {
        "name": "fewcell_e2e",
        "preset": "light",
        "training": {"epochs": 2, "batch_size": 4, "windows_per_epoch": 8},
        "threads": 2,
        "infer_chroms": ["chr2"],
    },
}
MODEL = FAST["model"]["name"]
SIZES = co.read_sizes(REPO / "resources/demo/hg19_first10mb.chr1_chr2.sizes")
HOLDOUT = [co.parse_region(r, SIZES) for r in FAST["split"]["holdout_chroms"]]
SAMPLES = ("HSC_A", "HSC_B")
DEPTHS = ("c10", "c50")
METHODS = ["noisy", "macs3_bdgpeakcall", "macs3_callpeak", "model", "model_t0.5"]


def labels(results: Path, sample: str) -> Path:
    """Return the clean labels of a sample: bdgpeakcall on its pseudobulk of all cells (no peak file in the sheet)."""
    return results / f"peaks/{sample}/full.rep1.bdgpeakcall.narrowPeak"


#: besides `all`: the clean profile of the held-out type B (its benchmark needs it; asked for explicitly
#: so that the test does not depend on how the benchmark stage is wired)
TARGETS = ["all", "results/coverage/HSC_B/full.rep1.bw", "results/cells/HSC_B/full.barcodes.txt"]


def run_workflow(workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    (workdir / "config" / "fewcell-sim").mkdir(parents=True, exist_ok=True)
    if not (workdir / "resources").exists():
        (workdir / "resources").symlink_to(REPO / "resources")
    for name in ("config.yaml", "samples.tsv"):
        (workdir / "config" / "fewcell-sim" / name).write_text((REPO / "config" / "fewcell-sim" / name).read_text())
    (workdir / "overlay.yaml").write_text(yaml.safe_dump(FAST))
    configs = [workdir / "config" / "fewcell-sim" / "config.yaml", workdir / "overlay.yaml"]
    cmd = local_snakemake(workdir, configs, *TARGETS, *extra)
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)


@pytest.fixture(scope="module")
def fewcell_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fewcell")
    res = run_workflow(workdir)
    if res.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in (workdir / "results" / "logs").rglob("*.log"))
        pytest.fail(f"snakemake failed:\n{res.stderr[-6000:]}\n{logs[-12000:]}")
    return workdir / "results"


def _lines(path: Path) -> list[str]:
    return path.read_text().split()


def _cut_sites(bw: Path) -> int:
    return sum(json.loads(Path(f"{bw}.json").read_text())["n_cut_sites"].values())


def _fragment_lines(path: Path) -> int:
    return len(pd.read_csv(path, sep="\t", header=None, comment="#"))


def test_fixture_and_pseudobulks_partition_the_cells(fewcell_run):
    r = fewcell_run
    table = pd.read_csv(r / "fixture/cells.barcodes.tsv", sep="\t")
    assert table["cell_type"].value_counts().to_dict() == {"A": 200, "B": 200}
    for sample, ctype in (("HSC_A", "A"), ("HSC_B", "B")):
        assert _lines(r / f"cells/{sample}/full.barcodes.txt") == sorted(
            table.loc[table["cell_type"] == ctype, "barcode"]
        )
    # all cells of A plus all cells of B hold every fragment of the fixture: cut sites add up
    total = 2 * _fragment_lines(r / "fixture/cells.fragments.tsv.gz")
    assert _cut_sites(r / "coverage/HSC_A/full.rep1.bw") + _cut_sites(r / "coverage/HSC_B/full.rep1.bw") == total
    assert 487_831 - 100 < total <= 487_831  # the real HSC 80M cut sites, less a few unpaired ones


def test_few_cell_draws_are_exact_nested_and_of_the_right_type(fewcell_run):
    r = fewcell_run
    for sample in ("HSC_A", "HSC_B"):
        everyone = set(_lines(r / f"cells/{sample}/full.barcodes.txt"))
        c10 = set(_lines(r / f"subsample/{sample}/c10.rep1.barcodes.txt"))
        c50 = set(_lines(r / f"subsample/{sample}/c50.rep1.barcodes.txt"))
        assert len(c10) == 10 and len(c50) == 50 and c10 < c50 < everyone
        frags = pd.read_csv(r / f"subsample/{sample}/c50.rep1.tsv.gz", sep="\t", header=None, comment="#")
        assert set(frags[3]) == c50
        assert _cut_sites(r / f"coverage/{sample}/c50.rep1.bw") == 2 * len(frags)


def test_model_trains_on_type_a_only_and_denoises_both_types(fewcell_run):
    r = fewcell_run
    assert (r / f"models/{MODEL}/model.pt").stat().st_size > 0
    assert (r / "dataset/HSC_A/c10.rep1").is_dir() and not (r / "dataset/HSC_B").exists()
    model = co.check_model_file(r / f"models/{MODEL}/model.pt")
    assert model["trained_cell_types"] == ["A"]
    co.check_history(r / f"models/{MODEL}/history.tsv", epochs=2)
    for sample in SAMPLES:
        for depth in DEPTHS:
            out = r / f"denoised/{MODEL}/{sample}/{depth}.rep1"
            # infer_chroms: chr2 only (its whole length, tails included)
            regions = [*HOLDOUT, ("chr2", SIZES["chr2"] - 100_000, SIZES["chr2"])]
            co.check_bigwig_values(f"{out}.track.bw", SIZES, regions, chroms={"chr2"}, lo=0.0, complete=False)
            co.check_probability_bigwig(f"{out}.peakprob.bw", SIZES, regions, labels=labels(r, sample), chroms={"chr2"})
            peaks = co.check_narrowpeak(
                f"{out}.peaks.narrowPeak", SIZES, max_score=1000, chroms={"chr2"}, min_length=200
            )
            assert peaks["signal"].between(0, 1).all()
            co.check_fitness(f"{out}.fitness.tsv")


def test_coverage_and_macs3_outputs_hold_sane_values(fewcell_run):
    r = fewcell_run
    for sample in SAMPLES:
        co.check_narrowpeak(labels(r, sample), SIZES, min_peaks=100)
        for depth in ("full", *DEPTHS):
            cov = r / f"coverage/{sample}/{depth}.rep1.bw"
            co.check_bigwig_values(cov, SIZES, HOLDOUT, lo=0, complete=False, integer=True)
            co.check_coverage_total(cov)
        for depth in DEPTHS:
            for caller in ("bdgpeakcall", "callpeak"):
                prefix = r / f"peaks/{sample}/{depth}.rep1.{caller}"
                co.check_narrowpeak(f"{prefix}.narrowPeak", SIZES)
                co.check_bigwig_values(f"{prefix}.pval.bw", SIZES, HOLDOUT, lo=0, complete=False)
    rows = [(s, d, "1") for s in SAMPLES for d in ("full", *DEPTHS)]
    qc = co.check_qc_table(r / "qc/qc.tsv", rows, frip=SAMPLES)
    assert (qc["paired"].astype(str) == "True").all()  # fragments: fragment lengths known
    for sample, depth, _ in rows:
        co.check_fraglen(r / f"qc/{sample}/{depth}.rep1.fraglen.tsv", paired=True)


def test_benchmark_reports_each_cell_type_and_number_of_cells(fewcell_run):
    metrics_path = fewcell_run / f"benchmark/{MODEL}/metrics.tsv"
    assert metrics_path.exists(), f"the workflow's benchmark stage (wired in the Snakefile) made no {metrics_path}"
    m = pd.read_csv(metrics_path, sep="\t", dtype={"depth": str})
    for sample in ("HSC_A", "HSC_B"):
        got = m[m["sample"] == sample]
        assert {"c10", "c50"} <= set(got["depth"])
        assert {"noisy", "model"} <= set(got["method"]) and any(x.startswith("macs3") for x in got["method"])
    metrics = co.check_metrics_table(metrics_path, METHODS, samples=SAMPLES, depths=DEPTHS)
    seen = dict(zip(metrics["sample"], metrics["seen"]))
    assert seen == {"HSC_A": "yes", "HSC_B": "no"}  # B was held out of training
    prevalence = {s: co.label_prevalence(labels(fewcell_run, s), HOLDOUT) for s in SAMPLES}
    co.check_auprc_above_prevalence(metrics, prevalence, ["noisy", "macs3_bdgpeakcall", "macs3_callpeak", "model"])
    b = metrics_path.parent
    co.check_summary_table(b / "summary.tsv", ["sample", "depth"], rows=len(SAMPLES) * len(DEPTHS))
    by_type = co.check_summary_table(b / "summary_by_cell_type.tsv", ["cell_type", "depth"])
    assert set(by_type["cell_type"]) == {"A", "B", co.GAP_CELL_TYPE}
    co.check_effective_depth(b / "effective_depth.tsv")
    co.check_effective_depth(b / "effective_depth_by_cell_type.tsv", by_cell_type=True)
    co.check_references(b / "references.tsv", SAMPLES)
    for png in ["plots/depth.png"] + [f"plots/pr/{s}.png" for s in SAMPLES]:
        co.check_png(b / png)


def test_rerun_is_a_no_op(fewcell_run):
    res = run_workflow(fewcell_run.parent, "-n")
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr
