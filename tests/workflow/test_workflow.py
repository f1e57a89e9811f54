"""End to end: the whole workflow on the bundled real demo data, in a temporary directory."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pyBigWig
import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow

#: a fast variant of the demo config: one extra depth, a tiny model, few windows
FAST = {
    "depths": [15000],
    "model": {
        "name": "e2e",
        "preset": "light",
        "training": {"epochs": 2, "batch_size": 4, "windows_per_epoch": 8},
        "threads": 2,
    },
}


def run_workflow(
    workdir: Path, overlay: dict, *targets: str, extra: list[str] | None = None
) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in ``workdir`` with the demo config plus ``overlay``."""
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    if not (workdir / "resources").exists():
        (workdir / "resources").symlink_to(REPO / "resources")
    (workdir / "config" / "config.yaml").write_text((REPO / "config" / "config.yaml").read_text())
    (workdir / "config" / "samples.tsv").write_text((REPO / "config" / "samples.tsv").read_text())
    (workdir / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    cmd = [
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--profile",
        str(REPO / "profiles" / "local"),
        "--cores",
        "2",
        "--configfile",
        str(workdir / "config" / "config.yaml"),
        str(workdir / "overlay.yaml"),
        *(extra or []),
        *targets,
    ]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)


def _assert_bigwig(path: Path, chroms: set[str]) -> None:
    bw = pyBigWig.open(str(path))
    try:
        assert bw.isBigWig() and set(bw.chroms()) == chroms
    finally:
        bw.close()


def _assert_narrowpeak(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", header=None)
    assert df.shape[1] == 10 and len(df) > 0
    assert (df[2] > df[1]).all() and set(df[0]) <= {"chr1", "chr2"}
    return df


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    res = run_workflow(workdir, FAST)
    if res.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in (workdir / "results" / "logs").rglob("*.log"))
        pytest.fail(f"snakemake failed:\n{res.stderr[-6000:]}\n{logs[-12000:]}")
    return workdir


def test_demo_produces_the_output_contract(demo_run):
    r = demo_run / "results"
    chroms = {"chr1", "chr2"}
    assert (r / "subsample/HSC/15000.rep1.bam").exists() and (r / "subsample/HSC/15000.rep1.bam.bai").exists()
    for depth in ("full", "given", "15000"):
        _assert_bigwig(r / f"coverage/HSC/{depth}.rep1.bw", chroms)
    for depth in ("given", "15000"):
        for caller in ("bdgpeakcall", "callpeak"):
            _assert_narrowpeak(r / f"peaks/HSC/{depth}.rep1.{caller}.narrowPeak")
            _assert_bigwig(r / f"peaks/HSC/{depth}.rep1.{caller}.pval.bw", chroms)
        _assert_bigwig(r / f"denoised/e2e/HSC/{depth}.rep1.track.bw", chroms)
        _assert_bigwig(r / f"denoised/e2e/HSC/{depth}.rep1.peakprob.bw", chroms)
        (r / f"denoised/e2e/HSC/{depth}.rep1.peaks.narrowPeak").stat()
    assert (r / "models/e2e/model.pt").stat().st_size > 0
    history = pd.read_csv(r / "models/e2e/history.tsv", sep="\t")
    assert len(history) == 2


def test_demo_benchmark_table_has_every_method(demo_run):
    metrics = pd.read_csv(demo_run / "results/benchmark/e2e/metrics.tsv", sep="\t")
    cols = ["model", "sample", "cell_type", "seen", "depth", "rep", "method", "metric", "region", "value"]
    assert list(metrics.columns) == cols
    assert set(zip(metrics["cell_type"], metrics["seen"])) == {("HSC", "yes")}  # the demo: one cell type, trained on
    assert {"noisy", "macs3_bdgpeakcall", "macs3_callpeak", "model"} <= set(metrics["method"])
    assert {"pearson", "auprc", "auroc", "peak_recall", "jaccard"} <= set(metrics["metric"])
    assert set(metrics["depth"].astype(str)) == {"given", "15000"}


def test_rerun_is_a_no_op(demo_run):
    res = run_workflow(demo_run, FAST, extra=["-n"])
    assert res.returncode == 0
    assert "Nothing to be done" in res.stdout + res.stderr


def test_report_builds(demo_run):
    res = run_workflow(demo_run, FAST, extra=["--report", str(demo_run / "results" / "report.html")])
    assert res.returncode == 0, res.stderr[-4000:]
    html = (demo_run / "results" / "report.html").read_text(errors="replace")
    assert "metrics.tsv" in html


def test_pretrained_model_denoises_new_samples_without_training(demo_run, tmp_path):
    """model.pretrained + role apply: only coverage and inference run (the rerun-one-rule use case)."""
    sheet = tmp_path / "apply.tsv"
    sheet.write_text(
        "sample\tcell_type\tkind\tpath\tnoisy\tpeaks\tbarcodes\trole\n"
        f"NEW\tHSC\tbam\t{REPO / 'resources/demo/HSC_5M.chr1_chr2.bam'}\t\t\t\tapply\n"
    )
    model = demo_run / "results/models/e2e/model.pt"
    overlay = {
        **FAST,
        "samples": str(sheet),
        "model": {**FAST["model"], "name": "applied", "pretrained": str(model), "infer_chroms": ["chr2"]},
    }
    res = run_workflow(demo_run, overlay, extra=["-n", "--quiet", "rules"])
    assert res.returncode == 0, res.stderr[-3000:]
    planned = res.stdout + res.stderr
    assert "infer" in planned and "train" not in planned and "dataset" not in planned and "metrics" not in planned
    res = run_workflow(demo_run, overlay)
    assert res.returncode == 0, res.stderr[-4000:]
    out = demo_run / "results/denoised/applied/NEW/given.rep1"
    _assert_bigwig(Path(f"{out}.track.bw"), {"chr2"})
    assert len(_assert_narrowpeak(Path(f"{out}.peaks.narrowPeak"))) > 0
