"""End to end on a reduced REAL cohort (../shared/data/immune).

Pooled references, target regions, seen vs unseen cell types, and a new cell type added later by
rerunning only its jobs.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import checks_outputs as co
import pandas as pd
import pyBigWig
import pytest
import yaml

from conftest import SHARED_DATA, local_snakemake

pytestmark = pytest.mark.slow

IMMUNE = SHARED_DATA / "immune"
HG38 = SHARED_DATA / "genomes" / "hg38.chrom.sizes"
#: two of the data's windows, cut short to keep the run small: train on chr12, validate and benchmark on chr21
REGIONS = [("chr12", 5_198_000, 8_401_000), ("chr21", 25_000_000, 28_000_000)]
CONFIG = {
    "samples": "samples.tsv",
    "genome": {"sizes": str(HG38), "regions": "regions.bed"},
    "depths": [20000],
    "seed": 1,
    "split": {"val_chroms": ["chr21:25000000-26000000"], "holdout_chroms": ["chr21:26000000-28000000"]},
    "model": {
        "name": "cohort",
        "preset": "light",
        "training": {"epochs": 2, "batch_size": 4, "windows_per_epoch": 8},
        "threads": 2,
    },
    "threads": 2,
}
HEADER = "sample\tcell_type\tkind\tpath\tnoisy\tpeaks\tbarcodes\trole\n"
SIZES = co.read_sizes(HG38) if HG38.is_file() else {}
HOLDOUT = [co.parse_region(r, SIZES) for r in CONFIG["split"]["holdout_chroms"]] if SIZES else []
DEPTHS = ("20000", "given")
METHODS = ["noisy", "macs3_bdgpeakcall", "macs3_callpeak", "model", "model_t0.5"]
SCORED = ["noisy", "macs3_bdgpeakcall", "macs3_callpeak", "model"]


def labels(workdir: Path, sample: str) -> Path:
    """Return the clean labels of a sample: bdgpeakcall on its pooled reference (no peak file in the sheet)."""
    return workdir / f"results/peaks/{sample}/full.rep1.bdgpeakcall.narrowPeak"


def check_sample_outputs(workdir: Path, sample: str) -> None:
    """Check the values of one sample's coverage, MACS3 and denoised outputs (inside the target regions)."""
    r = workdir / "results"
    chroms = {c for c, _, _ in REGIONS}
    co.check_narrowpeak(labels(workdir, sample), SIZES, chroms=chroms, min_peaks=20)
    for depth in ("full", *DEPTHS):
        cov = r / f"coverage/{sample}/{depth}.rep1.bw"
        co.check_bigwig_values(cov, SIZES, REGIONS, lo=0, complete=False, integer=True)
        co.check_coverage_total(cov)
    for depth in DEPTHS:
        for caller in ("bdgpeakcall", "callpeak"):
            prefix = r / f"peaks/{sample}/{depth}.rep1.{caller}"
            co.check_narrowpeak(f"{prefix}.narrowPeak", SIZES)
            co.check_bigwig_values(f"{prefix}.pval.bw", SIZES, HOLDOUT, lo=0, complete=False)
        out = r / f"denoised/cohort/{sample}/{depth}.rep1"
        co.check_bigwig_values(f"{out}.track.bw", SIZES, REGIONS, chroms=chroms, lo=0.0, complete=False)
        co.check_probability_bigwig(f"{out}.peakprob.bw", SIZES, REGIONS, labels=labels(workdir, sample), chroms=chroms)
        peaks = co.check_narrowpeak(f"{out}.peaks.narrowPeak", SIZES, max_score=1000, chroms=chroms, min_length=200)
        assert peaks["signal"].between(0, 1).all()
        co.check_fitness(f"{out}.fitness.tsv")


def check_benchmark(workdir: Path, samples: list[str]) -> pd.DataFrame:
    """Check the benchmark's tables of ``samples``: finite metrics, AUPRC above each sample's peak prevalence."""
    b = workdir / "results/benchmark/cohort"
    metrics = co.check_metrics_table(b / "metrics.tsv", METHODS, samples=samples, depths=DEPTHS)
    prevalence = {s: co.label_prevalence(labels(workdir, s), HOLDOUT) for s in samples}
    co.check_auprc_above_prevalence(metrics, prevalence, SCORED)
    co.check_summary_table(b / "summary.tsv", ["sample", "depth"], rows=len(samples) * len(DEPTHS))
    co.check_summary_table(b / "summary_by_cell_type.tsv", ["cell_type", "depth"])
    co.check_effective_depth(b / "effective_depth.tsv")
    co.check_effective_depth(b / "effective_depth_by_cell_type.tsv", by_cell_type=True)
    co.check_references(b / "references.tsv", samples)
    rows = [(s, d, "1") for s in samples for d in ("full", *DEPTHS)]
    co.check_qc_table(workdir / "results/qc/qc.tsv", rows, frip=samples)
    for s, d, _ in rows:
        co.check_fraglen(workdir / f"results/qc/{s}/{d}.rep1.fraglen.tsv", paired=True)
    return metrics


def library(group: str, donor: int, rep: str) -> Path:
    return IMMUNE / f"{group}_{donor}_{rep}.fragments.tsv.gz"


def pool_of(group: str) -> list[Path]:
    """Return the deep reference of a cell state: donors 1001 and 1002, both technical replicates."""
    return [library(group, d, r) for d in (1001, 1002) for r in "ab"]


def row(group: str, role: str) -> str:
    """Return a sheet row: the pool as `path`, donor 1004's library a (never in the pool) as the real noisy input."""
    pool = ";".join(map(str, pool_of(group)))
    return f"{group}\t{group.split('_')[0]}\tfragments\t{pool}\t{library(group, 1004, 'a')}\t\t\t{role}\n"


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = local_snakemake(workdir, [workdir / "config.yaml"], *args)
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)


def write_config(workdir: Path, config: dict, rows: list[str]) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    (workdir / "samples.tsv").write_text(HEADER + "".join(rows))
    (workdir / "regions.bed").write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in REGIONS))


def planned_jobs(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job of a dry run's output."""
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", output):
        m = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if not m:
            continue
        w = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        wildcards = dict(kv.split("=", 1) for kv in w.group(1).split(", ")) if w else {}
        jobs.append((m.group(1), wildcards))
    return jobs


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    if not IMMUNE.is_dir():
        pytest.fail(f"{IMMUNE} not found: the real cohort data live beside the checkout")
    workdir = tmp_path_factory.mktemp("cohort")
    write_config(workdir, CONFIG, [row("TCD8naive_U", "train"), row("TeffNaive_U", "test")])
    res = snakemake(workdir)
    if res.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-2000:]}" for p in (workdir / "results/logs").rglob("*.log"))
        pytest.fail(f"snakemake failed:\n{res.stderr[-5000:]}\n{logs[-10000:]}")
    return workdir


def test_pooled_reference_lists_its_libraries_and_leaves_the_noisy_one_out(cohort):
    meta = json.loads((cohort / "results/pool/TeffNaive_U/full.tsv.gz.json").read_text())
    assert sorted(meta["sources"]) == sorted(map(str, pool_of("TeffNaive_U")))
    assert str(library("TeffNaive_U", 1004, "a")) not in meta["sources"]
    assert meta["total"] == sum(meta["sources"].values()) > 0
    refs = pd.read_csv(cohort / "results/benchmark/cohort/references.tsv", sep="\t").set_index("sample")
    assert refs.loc["TeffNaive_U", "reference"].split("; ") == [str(p) for p in pool_of("TeffNaive_U")]
    assert refs.loc["TeffNaive_U", "noisy"] == str(library("TeffNaive_U", 1004, "a"))
    co.check_references(cohort / "results/benchmark/cohort/references.tsv", ["TCD8naive_U", "TeffNaive_U"])


def test_every_stage_stays_inside_the_target_regions(cohort):
    side = json.loads((cohort / "results/coverage/TeffNaive_U/full.rep1.bw.json").read_text())
    assert side["regions_bp"] == sum(e - s for _, s, e in REGIONS) and side["chroms"] == ["chr12", "chr21"]
    sub = json.loads((cohort / "results/subsample/TeffNaive_U/20000.rep1.tsv.gz.json").read_text())
    frags = pd.read_csv(cohort / "results/subsample/TeffNaive_U/20000.rep1.tsv.gz", sep="\t", comment="#", header=None)
    assert sub["achieved"] == len(frags) == 20000
    inside = pd.Series(False, index=frags.index)
    for c, s, e in REGIONS:
        inside |= (frags[0] == c) & (frags[1] >= s) & (frags[1] < e)
    assert inside.all()  # depths count (and draw) fragments inside the regions only
    with pyBigWig.open(str(cohort / "results/denoised/cohort/TeffNaive_U/20000.rep1.track.bw")) as bw:
        assert "chr1" not in bw.chroms()  # no target region there: not denoised
        assert bw.intervals("chr12", 0, REGIONS[0][1]) is None and bw.intervals("chr12", REGIONS[0][2]) is None
        assert bw.intervals("chr12", REGIONS[0][1], REGIONS[0][2])
    peaks = pd.read_csv(
        cohort / "results/denoised/cohort/TeffNaive_U/20000.rep1.peaks.narrowPeak", sep="\t", header=None
    )
    ok = pd.Series(False, index=peaks.index)
    for c, s, e in REGIONS:
        ok |= (peaks[0] == c) & (peaks[1] >= s) & (peaks[2] <= e)
    assert len(peaks) and ok.all()
    dataset = json.loads((cohort / "results/dataset/TCD8naive_U/20000.rep1/meta.json").read_text())
    assert dataset["offsets"] == {"chr12": REGIONS[0][1], "chr21": REGIONS[1][1]}
    assert dataset["chroms"] == {"chr12": REGIONS[0][2] - REGIONS[0][1], "chr21": REGIONS[1][2] - REGIONS[1][1]}
    for sample in ("TCD8naive_U", "TeffNaive_U"):
        check_sample_outputs(cohort, sample)
    model = co.check_model_file(cohort / "results/models/cohort/model.pt")
    assert model["trained_cell_types"] == ["TCD8naive"]
    co.check_history(cohort / "results/models/cohort/history.tsv", epochs=2)


def test_benchmark_marks_seen_and_unseen_cell_types(cohort):
    metrics = pd.read_csv(cohort / "results/benchmark/cohort/metrics.tsv", sep="\t")
    seen = metrics.drop_duplicates("sample").set_index("sample")[["cell_type", "seen"]].to_dict("index")
    assert seen == {
        "TCD8naive_U": {"cell_type": "TCD8naive", "seen": "yes"},
        "TeffNaive_U": {"cell_type": "TeffNaive", "seen": "no"},
    }
    assert set(metrics["depth"]) == {"20000", "given"} or set(metrics["depth"].astype(str)) == {"20000", "given"}
    by_type = pd.read_csv(cohort / "results/benchmark/cohort/summary_by_cell_type.tsv", sep="\t")
    assert {"TCD8naive", "TeffNaive", "seen - unseen"} <= set(by_type["cell_type"])
    check_benchmark(cohort, ["TCD8naive_U", "TeffNaive_U"])
    assert set(by_type["depth"].astype(str)) == set(DEPTHS)


def test_new_cell_type_reruns_only_its_own_jobs(cohort):
    """Adding a cell type later (role test): no retraining, nothing of the existing samples is redone."""
    rows = [row("TCD8naive_U", "train"), row("TeffNaive_U", "test"), row("TCD8EM_U", "test")]
    write_config(cohort, CONFIG, rows)
    res = snakemake(cohort, "-n")
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = planned_jobs(res.stdout + res.stderr)
    rules = {r for r, _ in jobs}
    assert not rules & {"train", "dataset", "dataset_clean"} and {"pool", "coverage", "infer", "metrics"} <= rules
    others = [(r, w) for r, w in jobs if w.get("sample", "TCD8EM_U") != "TCD8EM_U"]
    assert not others, f"jobs of existing samples planned: {others}"
    aggregates = {r for r, w in jobs if "sample" not in w}
    assert aggregates <= {"benchmark_summary", "plot_depth", "qc_summary", "all"}, aggregates
    res = snakemake(cohort)
    assert res.returncode == 0, res.stderr[-4000:]
    check_sample_outputs(cohort, "TCD8EM_U")
    metrics = check_benchmark(cohort, ["TCD8naive_U", "TeffNaive_U", "TCD8EM_U"])
    new = metrics[metrics["sample"] == "TCD8EM_U"]
    assert len(new) and set(new["seen"]) == {"no"} and set(new["cell_type"]) == {"TCD8EM"}


def test_applying_a_pretrained_model_needs_no_split(cohort, tmp_path):
    """Role apply alone with model.pretrained: no split.* keys, only coverage and inference run."""
    config = {k: v for k, v in CONFIG.items() if k not in ("split", "depths")}
    config["genome"] = {**CONFIG["genome"], "regions": str(cohort / "regions.bed")}
    config["model"] = {
        **CONFIG["model"],
        "name": "applied",
        "pretrained": str(cohort / "results/models/cohort/model.pt"),
    }
    write_config(tmp_path, config, [f"NEW\tTeffNaive\tfragments\t{library('TeffNaive_U', 1004, 'b')}\t\t\t\tapply\n"])
    res = snakemake(tmp_path, "-n")
    assert res.returncode == 0, res.stderr[-3000:]
    rules = {r for r, _ in planned_jobs(res.stdout + res.stderr)}
    assert "infer" in rules and not rules & {"train", "dataset", "dataset_clean", "metrics", "pool"}
