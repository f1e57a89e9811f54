"""Determinism: the same inputs, settings and seed give the same outputs.

Byte-identical subsampled BAMs, coverage and datasets, and the same training
metrics on CPU.

Runs the real commands twice on the bundled real demo data (HSC 80M reads,
first 10 Mb of chr1/chr2; only chr2 is used for coverage and the dataset).

Tolerance for training: on CPU with the same thread count the runs are
expected to be bit-identical; the test allows a relative difference of 1e-6 in
every metric of history.tsv (floating-point summation order is the only thing
that could differ) and requires identical model weights.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from atacdenoise.model.dataset import open_dataset
from conftest import REPO

BIN = Path(sys.executable).parent
DEMO = REPO / "resources" / "demo"
BAM = DEMO / "HSC_80M.chr1_chr2.bam"
SIZES = DEMO / "hg19_first10mb.chr1_chr2.sizes"
PEAKS = DEMO / "HSC_80M.macs2_peaks.chr1_chr2.bed"
TRAIN = dict(
    filters=4,
    kernel_size=5,
    dilation=4,
    reg_blocks=1,
    cls_blocks=1,
    convs_per_block=2,
    interval=10_000,
    pad=1000,
    windows_per_epoch=16,
    batch_size=4,
    lr=1e-3,
    seed=3,
    epochs=2,
)
METRICS = [
    "train_loss",
    "train_mse",
    "train_pearson_loss",
    "train_bce",
    "val_loss",
    "val_pearson",
    "val_auroc",
    "val_auprc",
]


def atacdenoise(*argv) -> None:
    res = subprocess.run([str(BIN / "atacdenoise"), *map(str, argv)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


def pipeline(run_dir: Path) -> Path:
    """Subsample -> noisy and clean coverage (chr2) -> dataset -> train, all outputs under ``run_dir``."""
    atacdenoise(
        "subsample",
        "--input",
        BAM,
        "--fragments",
        20_000,
        "--seed",
        1001,
        "--sizes",
        SIZES,
        "--out",
        run_dir / "noisy.bam",
    )
    for name, reads in (("noisy", run_dir / "noisy.bam"), ("clean", BAM)):
        atacdenoise(
            "coverage",
            "--input",
            reads,
            "--kind",
            "bam",
            "--sizes",
            SIZES,
            "--chroms",
            "chr2",
            "--out",
            run_dir / f"{name}.bw",
        )
    atacdenoise(
        "dataset",
        "--noisy",
        run_dir / "noisy.bw",
        "--clean",
        run_dir / "clean.bw",
        "--labels",
        PEAKS,
        "--sizes",
        SIZES,
        "--chroms",
        "chr2",
        "--out",
        run_dir / "ds",
        "--sample",
        "HSC",
        "--depth",
        "20000",
        "--rep",
        "1",
    )
    atacdenoise(
        "train",
        "--datasets",
        run_dir / "ds",
        "--sizes",
        SIZES,
        "--val",
        "chr2:0-1000000",
        "--holdout",
        "chr2:1000000-2000000",
        "--settings",
        json.dumps(TRAIN),
        "--out-dir",
        run_dir / "model",
        "--device",
        "cpu",
        "--threads",
        1,
    )
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    if not BAM.exists():
        pytest.skip(f"{BAM}: the bundled demo data are missing from this checkout")
    return pipeline(tmp_path_factory.mktemp("run1")), pipeline(tmp_path_factory.mktemp("run2"))


def _same_bytes(a: Path, b: Path) -> None:
    assert a.read_bytes() == b.read_bytes(), f"{a} and {b} differ"


def test_subsampled_bam_and_index_are_byte_identical(runs):
    a, b = runs
    _same_bytes(a / "noisy.bam", b / "noisy.bam")
    _same_bytes(a / "noisy.bam.bai", b / "noisy.bam.bai")
    meta_a, meta_b = (json.loads((r / "noisy.bam.json").read_text()) for r in runs)
    assert meta_a["achieved"] == meta_b["achieved"] > 0
    assert meta_a == meta_b


def test_coverage_bigwigs_are_byte_identical(runs):
    a, b = runs
    for name in ("noisy", "clean"):
        _same_bytes(a / f"{name}.bw", b / f"{name}.bw")
        side_a, side_b = (json.loads((r / f"{name}.bw.json").read_text()) for r in runs)
        side_a.pop("source"), side_b.pop("source")  # the input path, which differs between the two run directories
        assert side_a == side_b and sum(side_a["n_cut_sites"].values()) > 0


def test_dataset_arrays_are_byte_identical(runs):
    a, b = runs
    files = sorted(str(p.relative_to(a / "ds")) for p in (a / "ds").rglob("*"))
    assert files == sorted(str(p.relative_to(b / "ds")) for p in (b / "ds").rglob("*"))
    assert {"chr2.noisy.npy", "clean/chr2.clean.npy", "clean/chr2.flags.npy"} <= set(files)
    for name in files:
        if name.endswith(".npy"):
            _same_bytes(a / "ds" / name, b / "ds" / name)
    labels = open_dataset(a / "ds").arrays("chr2")["labels"]
    assert 0 < labels.sum() < labels.size  # real peaks, not an empty label track


def test_training_twice_with_the_same_seed_gives_the_same_metrics_and_weights(runs):
    a, b = runs
    ha, hb = (pd.read_csv(r / "model" / "history.tsv", sep="\t") for r in runs)
    assert ha["epoch"].tolist() == hb["epoch"].tolist() == [1, 2]
    for col in METRICS:
        np.testing.assert_allclose(ha[col].to_numpy(float), hb[col].to_numpy(float), rtol=1e-6, atol=0, err_msg=col)
    wa = torch.load(a / "model" / "model.pt", weights_only=True)["state_dict"]
    wb = torch.load(b / "model" / "model.pt", weights_only=True)["state_dict"]
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
