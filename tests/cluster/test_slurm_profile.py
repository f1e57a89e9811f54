"""The slurm-gpu profile: its plan (dry run) and real runs on a private single-node SLURM cluster.

The dry-run tests need only Snakemake. The cluster tests start munged, slurmctld and slurmd
(tests/cluster/slurm_up.sh: partitions `cpu` and `gpu`, one gres GPU backed by /dev/null),
installing Debian's slurm-wlm and munge with apt when missing; they skip, with the reason in
pytest's -ra summary, where that is impossible (not root, no apt or a failed apt-get, a machine with
its own SLURM, ATACDENOISE_SKIP_CLUSTER set). In CI (ATACDENOISE_CI, set by .ci/run) any such skip
fails the run (tests/conftest.py): there the cluster tests must run.
Jobs are submitted through profiles/slurm-gpu merged with tests/cluster/overlay (squeue for job
status, no account, memory/CPUs scaled to the node), and what SLURM did is read back from its own
records (scontrol) and from the environment the jobs saw.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import slurm_cluster as sc
import yaml
from slurm_cluster import PROFILE, REPO

GPU_RULES = {"train", "infer"}

#: the demo config shrunk so that the whole workflow runs in about a minute on 2 CPU cores:
#: only the given 5M sample (no subsampled depths), a 1 Mb validation region, a ~2,400-parameter
#: model, one short epoch, inference on chr2 only. The same overrides feed the local and the SLURM run.
SMALL_DEMO = {
    "depths": [],
    "split": {"val_chroms": ["chr2:0-1000000"], "holdout_chroms": ["chr2:5000000-10000000"]},
    "model": {
        "name": "slurm",
        "preset": "light",
        "architecture": {"filters": 6, "kernel_size": 15, "dilation": 4, "reg_blocks": 1, "cls_blocks": 1},
        "training": {"epochs": 1, "batch_size": 4, "windows_per_epoch": 8, "interval": 20000, "pad": 1000, "lr": 0.002},
        "infer_chroms": ["chr2"],
        "threads": 2,
    },
    "threads": 1,
}


# --- helpers ---------------------------------------------------------------------------------------


def snakemake(
    workdir: Path, *args: str, env: dict | None = None, snakefile: Path = REPO / "Snakefile", timeout: int = 900
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir), *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env, timeout=timeout)


def demo_workdir(workdir: Path, overrides: dict | None = None) -> list[str]:
    """Set up a working directory for the repository's Snakefile with the demo config; return the --configfile args."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config").mkdir(exist_ok=True)
    if not (workdir / "resources").exists():
        (workdir / "resources").symlink_to(REPO / "resources")
    for name in ("config.yaml", "samples.tsv"):
        (workdir / "config" / name).write_text((REPO / "config" / name).read_text())
    files = [str(workdir / "config" / "config.yaml")]
    if overrides:
        (workdir / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        files.append(str(workdir / "overrides.yaml"))
    return ["--configfile", *files]


def planned_jobs(dry_run_output: str) -> dict[str, list[dict[str, str]]]:
    """Rule name -> the resources of each planned job, parsed from `snakemake -n` output."""
    jobs: dict[str, list[dict[str, str]]] = {}
    rule = None
    for line in dry_run_output.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            rule = m.group(1)
            continue
        if rule and line.strip().startswith("resources:"):
            pairs = line.strip().removeprefix("resources:").split(", ")
            jobs.setdefault(rule, []).append(dict(p.strip().split("=", 1) for p in pairs if "=" in p))
            rule = None
    return jobs


def failure_report(res: subprocess.CompletedProcess, workdir: Path, cluster: sc.Cluster | None = None) -> str:
    logs = "\n".join(
        f"== {p}\n{p.read_text(errors='replace')[-2500:]}"
        for p in sorted(workdir.glob(".snakemake/slurm_logs/**/*.log")) + sorted(workdir.glob("results/logs/**/*.log"))
    )
    return (
        f"snakemake exited {res.returncode}\n{res.stderr[-5000:]}\n{logs[-10000:]}\n{cluster.logs() if cluster else ''}"
    )


# --- the plan: no cluster needed ----------------------------------------------------------------


def test_dry_run_of_default_config_requests_gpus_only_for_train_and_infer(tmp_path):
    res = snakemake(tmp_path, *demo_workdir(tmp_path), "--profile", str(PROFILE), "-n", "--forceall")
    assert res.returncode == 0, res.stderr[-4000:]
    jobs = planned_jobs(res.stdout + res.stderr)
    assert jobs.keys() >= GPU_RULES, f"train/infer not in the plan: {sorted(jobs)}"
    assert len(jobs) > 3, f"expected CPU rules besides train/infer: {sorted(jobs)}"
    for rule, resource_sets in jobs.items():
        for res_ in resource_sets:
            if rule in GPU_RULES:
                assert int(res_.get("gpu", 0)) >= 1, f"{rule} requests no GPU: {res_}"
                assert res_["slurm_partition"] == "gpu", (rule, res_)
            else:
                assert "gpu" not in res_ and "gpu_model" not in res_, f"CPU rule {rule} requests a GPU: {res_}"
                assert res_["slurm_partition"] == "cpu", (rule, res_)


def test_edit_once_keys_set_partitions_account_gpu_model_and_cpus(tmp_path):
    text = (PROFILE / "config.yaml").read_text()
    edits = {
        'CPU_PARTITION = "cpu"': 'CPU_PARTITION = "short"',
        'GPU_PARTITION = "gpu"': 'GPU_PARTITION = "a100q"',
        'ACCOUNT = ""': 'ACCOUNT = "lab42"',
        'GPU_MODEL = ""': 'GPU_MODEL = "a100"',
        "GPU_JOB_CPUS = 8": "GPU_JOB_CPUS = 6",
        "GPU_JOB_MEM_MB = 32000": "GPU_JOB_MEM_MB = 24000",
    }
    for old, new in edits.items():
        assert old in text, f"profile no longer defines {old!r}"
        text = text.replace(old, new)
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(text)
    # --cores: a dry run otherwise caps every rule's threads (and so cpus_per_task) at 1
    res = snakemake(
        tmp_path, *demo_workdir(tmp_path), "--profile", str(tmp_path / "profile"), "-n", "--forceall", "--cores", "64"
    )
    assert res.returncode == 0, res.stderr[-4000:]
    jobs = planned_jobs(res.stdout + res.stderr)
    assert jobs.keys() >= GPU_RULES
    for rule, resource_sets in jobs.items():
        for res_ in resource_sets:
            assert res_["slurm_account"] == "lab42", (rule, res_)
            if rule in GPU_RULES:
                assert (res_["slurm_partition"], res_["gpu_model"], res_["cpus_per_task"], res_["mem_mb"]) == (
                    "a100q",
                    "a100",
                    "6",
                    "24000",
                )
            else:
                assert res_["slurm_partition"] == "short" and "gpu_model" not in res_, (rule, res_)


def test_overlay_changes_only_what_the_test_cluster_needs():
    merged = sc.merge_overlay(sc.load_profile(), yaml.safe_load(sc.OVERLAY.read_text()))
    profile = sc.load_profile()
    for rule in GPU_RULES:  # partitions and GPU settings still come from the user-facing profile
        assert merged["set-resources"][rule]["slurm_partition"] == profile["set-resources"][rule]["slurm_partition"]
        assert merged["set-resources"][rule]["mem_mb"] <= 4000
    assert merged["default-resources"]["slurm_partition"] == profile["default-resources"]["slurm_partition"]
    assert merged["executor"] == "slurm" and merged["slurm-status-command"] == "squeue"
    assert "slurm-status-command" not in profile  # users keep the plugin's choice (sacct where it exists)


# --- real runs on the private cluster ------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = sc.unavailable_reason()
    if reason:
        pytest.skip(f"SLURM cluster test skipped: {reason}")
    state = tmp_path_factory.mktemp("slurm")
    try:
        c = sc.start(state)
    except RuntimeError as err:
        if getattr(err, "returncode", None) == sc.EXIT_INSTALL_FAILED:
            pytest.skip(f"SLURM cluster test skipped: apt-get could not install slurm-wlm/munge: {str(err)[-500:]}")
        raise
    yield c
    sc.stop(c)


TINY_SNAKEFILE = """
# Three one-line jobs that record what SLURM gave them. train and infer are the profile's GPU rules.
SEEN = "env | grep -E '^(SLURM_JOB_PARTITION|SLURM_JOB_ID|CUDA_VISIBLE_DEVICES)=' | sort > {output}"

rule all:
    input: "train.env", "infer.env", "prep.env"

rule train:
    output: "train.env"
    threads: 1
    resources: gpu=1, mem_mb=500, runtime=5
    shell: SEEN

rule infer:
    output: "infer.env"
    threads: 1
    resources: gpu=1, mem_mb=500, runtime=5
    shell: SEEN

rule prep:
    output: "prep.env"
    threads: 1
    resources: mem_mb=500, runtime=5
    shell: SEEN
"""


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@pytest.mark.slow
def test_gpu_rules_get_gpu_partition_and_a_gpu_cpu_rules_do_not(cluster, tmp_path):
    work = tmp_path / "tiny"
    work.mkdir()
    (work / "Snakefile").write_text(TINY_SNAKEFILE)
    profile = sc.write_test_profile(tmp_path / "profile")
    res = snakemake(work, "--profile", str(profile), snakefile=work / "Snakefile", env=cluster.env(), timeout=600)
    assert res.returncode == 0, failure_report(res, work, cluster)

    # what the jobs saw
    for rule in ("train", "infer"):
        seen = _env_file(work / f"{rule}.env")
        assert seen["SLURM_JOB_PARTITION"] == "gpu", seen
        assert seen.get("CUDA_VISIBLE_DEVICES") == "0", f"{rule}: no GPU allocated: {seen}"
    seen = _env_file(work / "prep.env")
    assert seen["SLURM_JOB_PARTITION"] == "cpu" and "CUDA_VISIBLE_DEVICES" not in seen, seen

    # SLURM's records of the same jobs
    records = {r["rule"]: r for r in sc.job_records(cluster, work)}
    assert records.keys() == {"train", "infer", "prep"}, records.keys()
    for rule in ("train", "infer"):
        assert records[rule]["Partition"] == "gpu" and sc.has_gpu(records[rule]), records[rule]
        assert records[rule]["NumCPUs"] == "2", "set-threads of the overlay should reach --cpus-per-task"
        assert records[rule]["JobState"] == "COMPLETED"
    assert records["prep"]["Partition"] == "cpu" and not sc.has_gpu(records["prep"]), records["prep"]
    assert records["prep"]["NumCPUs"] == "1"
    assert records["prep"]["MinMemoryNode"] == "500M"  # the rule's own mem_mb, not the profile default


@pytest.fixture(scope="module")
def local_demo(tmp_path_factory):
    """Run the small demo locally (the reference the SLURM run must reproduce)."""
    work = tmp_path_factory.mktemp("demo_local")
    res = snakemake(
        work, *demo_workdir(work, SMALL_DEMO), "--profile", str(REPO / "profiles" / "local"), "--cores", "2"
    )
    if res.returncode != 0:
        pytest.fail(failure_report(res, work))
    return work


@pytest.mark.slow
def test_demo_workflow_on_slurm_uses_gpu_partition_for_gpu_rules_and_matches_local_run(cluster, local_demo, tmp_path):
    work = tmp_path / "demo_slurm"
    profile = sc.write_test_profile(tmp_path / "profile")
    res = snakemake(work, *demo_workdir(work, SMALL_DEMO), "--profile", str(profile), env=cluster.env(), timeout=1200)
    assert res.returncode == 0, failure_report(res, work, cluster)

    records = sc.job_records(cluster, work)
    rules = {r["rule"] for r in records}
    assert rules >= GPU_RULES and len(rules) > 2, f"jobs seen by SLURM: {sorted(rules)}"
    for rec in records:
        assert rec["JobState"] == "COMPLETED", rec
        if rec["rule"] in GPU_RULES:
            assert rec["Partition"] == "gpu" and sc.has_gpu(rec), f"{rec['rule']}: {rec}"
        else:
            assert rec["Partition"] == "cpu" and not sc.has_gpu(rec), f"{rec['rule']}: {rec}"

    # no CUDA device on the test node: the GPU rules said so and ran on the CPU
    (infer_log,) = (work / "results" / "logs" / "infer").rglob("*.log")
    assert "no CUDA device" in infer_log.read_text()
    assert "device: cpu" in (work / "results" / "logs" / "train" / "slurm.log").read_text()

    diffs = sc.differences(local_demo / "results", work / "results")
    assert not diffs, "SLURM run differs from the local run:\n" + "\n".join(diffs)
    assert (work / "results" / "models" / "slurm" / "model.pt").exists()


def test_result_comparison_catches_a_changed_value_and_ignores_timings(tmp_path):
    import numpy as np
    import pyBigWig

    def tree(root: Path, value: float, seconds: float) -> Path:
        (root / "denoised").mkdir(parents=True)
        bw = pyBigWig.open(str(root / "denoised" / "x.track.bw"), "w")
        bw.addHeader([("chr1", 100)])
        bw.addEntries("chr1", 0, values=[1.0, value, 3.0], span=10, step=10)
        bw.close()
        np.save(root / "denoised" / "a.npy", np.arange(5))
        (root / "denoised" / "h.tsv").write_text(f"epoch\tval_auprc\tseconds\n1\t0.5\t{seconds}\n")
        (root / "logs").mkdir()
        (root / "logs" / "x.log").write_text(f"took {seconds} s\n")
        return root

    a = tree(tmp_path / "a", 2.0, 1.0)
    assert sc.differences(a, tree(tmp_path / "b", 2.0, 9.0)) == []  # timings and logs may differ
    diffs = sc.differences(a, tree(tmp_path / "c", 2.5, 1.0))
    assert len(diffs) == 1 and diffs[0].startswith("denoised/x.track.bw")
    (tmp_path / "c" / "denoised" / "extra.narrowPeak").write_text("chr1\t0\t10\n")
    assert any("only in" in d and "extra.narrowPeak" in d for d in sc.differences(a, tmp_path / "c"))


def test_cluster_tests_say_why_they_cannot_run_without_root(monkeypatch):
    monkeypatch.delenv("ATACDENOISE_SKIP_CLUSTER", raising=False)
    monkeypatch.setattr(sc.os, "geteuid", lambda: 1000)
    assert "needs root" in sc.unavailable_reason()
