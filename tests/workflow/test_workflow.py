"""End to end: the whole workflow on the bundled real demo data, in a temporary directory."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import checks_outputs as co
import numpy as np
import pandas as pd
import pyBigWig
import pytest
import yaml

from conftest import REPO, local_snakemake

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
    configs = [workdir / "config" / "config.yaml", workdir / "overlay.yaml"]
    cmd = local_snakemake(workdir, configs, *(extra or []), *targets)
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)


SIZES = co.read_sizes(REPO / "resources/demo/hg19_first10mb.chr1_chr2.sizes")
CHROMS = set(SIZES)
#: the demo's clean labels (the published peaks) and holdout (config/config.yaml)
LABELS = REPO / "resources/demo/HSC_80M.macs2_peaks.chr1_chr2.bed"
HOLDOUT = [co.parse_region("chr2:5000000-10000000", SIZES)]
#: the holdout and the last 100 kb of every chromosome (inference must cover the tails)
TAILS = HOLDOUT + [(c, n - 100_000, n) for c, n in SIZES.items()]
DEPTHS = ("given", "15000")
METHODS = ["noisy", "macs3_bdgpeakcall", "macs3_callpeak", "model", "model_t0.5"]


def check_denoised(prefix: Path, chroms: set[str], regions: list, labels: Path | None = LABELS) -> pd.DataFrame:
    """Check inference's ``prefix`` + .track.bw, .peakprob.bw and .peaks.narrowPeak; return the peaks."""
    co.check_bigwig_values(f"{prefix}.track.bw", SIZES, regions, chroms=chroms, lo=0.0, complete=False)
    co.check_probability_bigwig(f"{prefix}.peakprob.bw", SIZES, regions, labels=labels, chroms=chroms)
    peaks = co.check_narrowpeak(f"{prefix}.peaks.narrowPeak", SIZES, max_score=1000, chroms=chroms, min_length=200)
    assert peaks["signal"].between(0, 1).all()  # the peak's maximum probability
    return peaks


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
    co.check_subsample_bam(r / "subsample/HSC/15000.rep1.bam")
    for depth in ("full", *DEPTHS):
        cov = r / f"coverage/HSC/{depth}.rep1.bw"
        co.check_bigwig_values(cov, SIZES, HOLDOUT, lo=0, complete=False, integer=True)
        co.check_coverage_total(cov)
    for depth in DEPTHS:
        for caller in ("bdgpeakcall", "callpeak"):
            co.check_narrowpeak(r / f"peaks/HSC/{depth}.rep1.{caller}.narrowPeak", SIZES)
            co.check_bigwig_values(r / f"peaks/HSC/{depth}.rep1.{caller}.pval.bw", SIZES, HOLDOUT, lo=0, complete=False)
        check_denoised(r / f"denoised/e2e/HSC/{depth}.rep1", CHROMS, TAILS)
        co.check_fitness(r / f"denoised/e2e/HSC/{depth}.rep1.fitness.tsv")
    model = co.check_model_file(r / "models/e2e/model.pt")
    assert model["trained_cell_types"] == ["HSC"]
    co.check_history(r / "models/e2e/history.tsv", epochs=2)


#: issue 19.2's storage target for each denoised bigWig, in bytes per base of the genome
COMPACT_BYTES_PER_BASE = 0.2


def test_demo_denoised_bigwigs_take_under_a_fifth_of_a_byte_per_base(demo_run):
    """The workflow's own outputs on the real demo, from a model trained on it, at the default precision.

    This run's model (2 epochs) writes 0.09-0.12 bytes a base; the demo config's model 0.11 (probability) and
    0.135 (track) on the 5M library, and up to 0.19 at 60,000 reads (benchmarks/README.md); float32 ~1.2-1.6.
    """
    genome_bp = sum(SIZES.values())
    for depth in DEPTHS:
        for kind, content in (("track", "denoised coverage"), ("peakprob", "peak probability")):
            path = demo_run / f"results/denoised/e2e/HSC/{depth}.rep1.{kind}.bw"
            side = json.loads(Path(f"{path}.json").read_text())
            assert side["precision"] == "compact" and side["content"] == content, side
            assert side["bin_bp"] == 8 and side.get("bin_floor", 1) > 0, side  # the track's bins are on too
            per_base = path.stat().st_size / genome_bp
            assert per_base <= COMPACT_BYTES_PER_BASE, (path, per_base)


def test_demo_benchmark_table_has_every_method(demo_run):
    b = demo_run / "results/benchmark/e2e"
    metrics = co.check_metrics_table(b / "metrics.tsv", METHODS, samples=["HSC"], depths=DEPTHS)
    assert set(zip(metrics["cell_type"], metrics["seen"])) == {("HSC", "yes")}  # the demo: one cell type, trained on
    assert {"pearson", "auprc", "auroc", "peak_recall", "jaccard"} <= set(metrics["metric"])
    # every per-base score beats a score without skill: the fraction of holdout bases in the clean peaks
    prevalence = co.label_prevalence(LABELS, HOLDOUT)
    co.check_auprc_above_prevalence(
        metrics, {"HSC": prevalence}, ["noisy", "macs3_bdgpeakcall", "macs3_callpeak", "model"]
    )
    summary = co.check_summary_table(b / "summary.tsv", ["sample", "depth"], rows=len(DEPTHS))
    assert set(summary["depth"]) == set(DEPTHS)
    co.check_summary_table(b / "summary_by_cell_type.tsv", ["cell_type", "depth"], rows=len(DEPTHS))
    effective = co.check_effective_depth(b / "effective_depth.tsv")
    assert set(effective["depth"]) == {"15000"}  # a subsampled depth (given has no number of reads to compare)
    co.check_effective_depth(b / "effective_depth_by_cell_type.tsv", by_cell_type=True)
    refs = co.check_references(b / "references.tsv", ["HSC"])
    assert refs.loc[0, "noisy"] == "resources/demo/HSC_5M.chr1_chr2.bam"
    for png in ["plots/depth.png", "plots/pr/HSC.png", "plots/reliability/HSC.png"] + [
        f"plots/{k}/HSC/{d}.rep1.png" for k in ("tracks", "heatmap") for d in DEPTHS
    ]:
        co.check_png(b / png)


def test_demo_input_qc(demo_run):
    r = demo_run / "results/qc"
    rows = [("HSC", d, "1") for d in ("full", *DEPTHS)]
    qc = co.check_qc_table(r / "qc.tsv", rows, frip=["HSC"]).set_index("depth")
    assert (qc["paired"].astype(str) == "False").all()  # the demo BAMs are single-end
    assert (
        qc.loc["15000", "reads_used"]
        == co.check_subsample_bam(demo_run / "results/subsample/HSC/15000.rep1.bam")["achieved"]
    )
    for _, depth, _ in rows:
        co.check_fraglen(r / f"HSC/{depth}.rep1.fraglen.tsv", paired=False)
    co.check_png(r / "fragment_lengths.png")
    co.check_png(r / "cut_sites_per_mb.png")


def test_rerun_is_a_no_op(demo_run):
    res = run_workflow(demo_run, FAST, extra=["-n"])
    assert res.returncode == 0
    assert "Nothing to be done" in res.stdout + res.stderr


def test_report_builds(demo_run):
    res = run_workflow(demo_run, FAST, extra=["--report", str(demo_run / "results" / "report.html")])
    assert res.returncode == 0, res.stderr[-4000:]
    added = set(re.findall(r"^Adding (\S+) \(", res.stderr, re.M))
    tables = {"metrics.tsv", "summary.tsv", "summary_by_cell_type.tsv", "references.tsv", "qc.tsv", "history.tsv"}
    figures = {
        "depth.png",
        "HSC.png",
        "given.rep1.png",
        "15000.rep1.png",
        "fragment_lengths.png",
        "cut_sites_per_mb.png",
    }
    assert tables | figures <= added, sorted(tables | figures - added)
    co.check_html_report(demo_run / "results" / "report.html", mentions=sorted(tables | figures), min_bytes=100_000)


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
    peaks = check_denoised(out, {"chr2"}, [HOLDOUT[0], ("chr2", 9_900_000, 10_000_000)])
    # NEW is the HSC sample's own noisy BAM and the model the one trained above: chr2 comes out the same
    trained = demo_run / "results/denoised/e2e/HSC/given.rep1"
    for suffix in ("track.bw", "peakprob.bw"):
        with pyBigWig.open(f"{out}.{suffix}") as a, pyBigWig.open(f"{trained}.{suffix}") as b:
            x, y = (np.nan_to_num(f.values("chr2", 0, SIZES["chr2"], numpy=True)) for f in (a, b))
        assert np.allclose(x, y, rtol=1e-5, atol=1e-6), suffix
    before = co.check_narrowpeak(f"{trained}.peaks.narrowPeak", SIZES)
    cols = ["chrom", "start", "end", "score", "signal", "p", "summit"]
    assert peaks[cols].equals(before.loc[before["chrom"] == "chr2", cols].reset_index(drop=True))
    co.check_fitness(f"{out}.fitness.tsv")
    # the QC of this run: the apply sample only, without clean peaks (no FRiP)
    qc = co.check_qc_table(demo_run / "results/qc/qc.tsv", [("NEW", "given", "1")])
    assert qc["frip"].isna().all() and qc.loc[0, "reads_used"] > 0
