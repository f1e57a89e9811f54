"""The users' rerun pattern, end to end on the bundled real demo data.

Run the workflow; replace an input file by one of the same name and other content (the noisy BAM: another
subsample of the same library) and change a config key (``peaks.callpeak.pvalue``); rerun. Exactly the jobs
downstream of the two changes run again (Snakemake 9 reruns on input modification times, params, the set of
inputs, code and software environment: the ``--rerun-triggers`` defaults), the model is trained anew from
epoch 1 rather than "resumed" after the previous run's last epoch, and its outputs differ. Then the training
job is killed (SIGKILL to the whole workflow) after its first checkpoint; the rerun resumes from it and ends
with the weights of the uninterrupted run.

Kept to a few minutes on 2 cores: the light preset, 3 short epochs, and only the targets that show the
dependencies (coverage, datasets, model, inference, one peak caller).
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import signal
import subprocess
import time
import zlib
from pathlib import Path

import pandas as pd
import pysam
import pytest
import torch
import yaml

from atacdenoise.model.network import load_model
from conftest import REPO, local_snakemake

pytestmark = pytest.mark.slow

DEMO = REPO / "resources" / "demo"
MODEL = "rr"
#: small windows, a short validation region and inference on chr2 only: seconds per job on an idle machine
OVERLAY = {
    "samples": "samples.tsv",
    "depths": [15000],
    "split": {"val_chroms": ["chr2:3000000-3400000"], "holdout_chroms": ["chr2:5000000-10000000"]},
    "model": {
        "name": MODEL,
        "preset": "light",
        "training": {"epochs": 3, "batch_size": 4, "windows_per_epoch": 4, "interval": 10000, "pad": 1000},
        "infer_chroms": ["chr2"],
        "threads": 2,
    },
}
#: the denoised 15000-read track (depends on the model only) and a MACS3 peak set (depends on its p-value)
TARGETS = [f"results/denoised/{MODEL}/HSC/15000.rep1.track.bw", "results/peaks/HSC/15000.rep1.callpeak.narrowPeak"]
NOISY = Path("inputs/HSC_noisy.bam")
JOB = re.compile(r"^(?:local)?rule (\w+):$")


def _write_noisy(dest: Path, keep_percent: int) -> None:
    """Write a subsample of the demo's noisy BAM (whole read pairs, chosen by a hash of the name) and its index."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    with (
        pysam.AlignmentFile(str(DEMO / "HSC_5M.chr1_chr2.bam")) as src,
        pysam.AlignmentFile(str(tmp), "wb", template=src) as out,
    ):
        for read in src:
            if zlib.crc32(read.query_name.encode()) % 100 < keep_percent:
                out.write(read)
    pysam.index(str(tmp), str(dest) + ".bai")
    os.replace(tmp, dest)


def _configs(workdir: Path) -> list[Path]:
    return [workdir / "config" / "config.yaml", workdir / "overlay.yaml"]


def _run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = local_snakemake(workdir, _configs(workdir), *args)
    res = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=1200)
    if res.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in (workdir / "results" / "logs").rglob("*.log"))
        pytest.fail(f"snakemake {' '.join(args)} failed:\n{res.stderr[-6000:]}\n{logs[-8000:]}")
    return res


def _jobs(res: subprocess.CompletedProcess) -> set[tuple[str, str]]:
    """Return the jobs a snakemake run executed: (rule, wildcards) from its log."""
    jobs, rule = set(), None
    for line in res.stderr.splitlines():
        m = JOB.match(line)
        if m:
            if rule is not None:
                jobs.add((rule, ""))
            rule = m.group(1)
        elif rule is not None and line.startswith("    wildcards: "):
            jobs.add((rule, line.removeprefix("    wildcards: ")))
            rule = None
    if rule is not None:
        jobs.add((rule, ""))
    return jobs


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path)[0].state_dict()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _affected(job: tuple[str, str]) -> bool:
    """Whether a job must re-run after the noisy BAM ("given" depth) and peaks.callpeak.pvalue changed."""
    rule, wildcards = job
    if rule in ("train", "infer"):  # a dataset changed, so the model and what it denoises (of any depth)
        return True
    if rule == "peaks_callpeak":  # its pvalue param changed (every depth)
        return True
    return rule in ("coverage", "dataset") and "depth=given" in wildcards  # made from the noisy BAM


def test_rerun_after_an_input_and_a_config_change_then_after_a_killed_training(tmp_path):
    work = tmp_path
    (work / "config").mkdir()
    (work / "resources").symlink_to(REPO / "resources")
    (work / "config" / "config.yaml").write_text((REPO / "config" / "config.yaml").read_text())
    (work / "samples.tsv").write_text(
        "sample\tcell_type\tkind\tpath\tnoisy\tpeaks\tbarcodes\trole\n"
        f"HSC\tHSC\tbam\t{DEMO / 'HSC_80M.chr1_chr2.bam'}\t{NOISY}\t{DEMO / 'HSC_80M.macs2_peaks.chr1_chr2.bed'}"
        "\t\ttrain\n"
    )
    (work / "overlay.yaml").write_text(yaml.safe_dump(OVERLAY))
    _write_noisy(work / NOISY, keep_percent=100)
    results = work / "results"
    model_dir = results / "models" / MODEL
    train_log = results / "logs" / "train" / f"{MODEL}.log"

    # ---- 1. the first run
    first = _jobs(_run(work, *TARGETS))
    assert {rule for rule, _ in first} == {
        "count_fragments",
        "subsample_bam",
        "coverage",
        "dataset_clean",
        "dataset",
        "train",
        "infer",
        "peaks_callpeak",
    }, first
    old_model = _weights(model_dir / "model.pt")
    saved = tmp_path / "first"
    saved.mkdir()
    track = results / f"denoised/{MODEL}/HSC/15000.rep1.track.bw"
    shutil.copy(track, saved / track.name)
    assert (model_dir / "checkpoints" / "finished.pt").exists()

    # ---- 2. same file name, new content (70% of the read pairs), and a changed config key
    time.sleep(1.1)  # file systems with 1-s modification times: the new BAM must be newer than the outputs
    _write_noisy(work / NOISY, keep_percent=70)
    (work / "overlay.yaml").write_text(yaml.safe_dump({**OVERLAY, "peaks": {"callpeak": {"pvalue": 0.02}}}))
    second = _jobs(_run(work, *TARGETS))
    expected = {job for job in first if _affected(job)}
    assert second == expected, f"re-ran {sorted(second)}, expected exactly {sorted(expected)}"
    assert {job for job in first if not _affected(job)} == {
        ("count_fragments", "sample=HSC"),
        ("subsample_bam", "sample=HSC, depth=15000, rep=1"),
        ("coverage", "sample=HSC, depth=full, rep=1"),
        ("coverage", "sample=HSC, depth=15000, rep=1"),
        ("dataset_clean", "sample=HSC"),  # the sample's clean part: made once, kept
        ("dataset", "sample=HSC, depth=15000, rep=1"),
    }
    # the model was trained anew from epoch 1, not "resumed" after the finished run's last epoch
    log = train_log.read_text()
    assert "resuming" not in log and "holds a finished run" in log, log[-3000:]
    history = pd.read_csv(model_dir / "history.tsv", sep="\t")
    assert history["epoch"].tolist() == [1, 2, 3]
    new_model = _weights(model_dir / "model.pt")
    assert not _same(old_model, new_model)
    assert not filecmp.cmp(track, saved / track.name, shallow=False)  # the new model denoises differently

    # ---- 3. the training job killed after its first checkpoint, then the workflow rerun
    last = model_dir / "checkpoints" / "last.pt"
    lock = model_dir / "checkpoints" / "train.lock"
    cmd = local_snakemake(work, _configs(work), f"results/models/{MODEL}/model.pt", "--forcerun", "train")
    with open(tmp_path / "killed.log", "w") as fh:
        proc = subprocess.Popen(cmd, cwd=work, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.monotonic()
    while not last.exists():
        assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-4000:]
        assert time.monotonic() - t0 < 600, "timed out waiting for the first checkpoint"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the workflow and every job it started: no clean-up code runs
    proc.wait(timeout=60)
    done = torch.load(last, weights_only=True)["epoch"]
    assert 1 <= done < 3 and not (model_dir / "model.pt").exists(), f"killed after epoch {done}: too late"
    assert lock.exists()  # a SIGKILLed training cannot remove its lock

    _run(work, "--unlock")  # Snakemake's own lock of a killed run
    # the model is requested as the default target (rule all) requests it: with only the denoised files as
    # targets, Snakemake may find them present and plan nothing although their model.pt is gone
    rerun = _run(work, f"results/models/{MODEL}/model.pt", *TARGETS)
    resumed = _jobs(rerun)
    assert ("train", f"model={MODEL}") in resumed, rerun.stderr[-4000:]
    log = train_log.read_text()
    assert f"resuming from {Path('results/models') / MODEL / 'checkpoints' / 'last.pt'} after epoch {done}" in log
    assert "taking over the lock" in log  # the killed job's lock file, left behind, was recognised as stale
    assert pd.read_csv(model_dir / "history.tsv", sep="\t")["epoch"].tolist() == [1, 2, 3]
    assert _same(_weights(model_dir / "model.pt"), new_model)  # equal to the uninterrupted run
