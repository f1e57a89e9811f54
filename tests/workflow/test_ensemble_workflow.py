"""model.ensemble end to end on the bundled real demo data: two members trained, denoised with their ensemble, scored.

Kept to a few minutes on 2 cores: the light preset, 2 short epochs of a few windows, the real 5M sample as the
only noisy track (no subsampling), inference on chr2 only, and only the targets that show the option
(the members, the ensemble's outputs and the benchmark of one track).
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from atacdenoise.evaluate.benchmark import read_metrics
from atacdenoise.evaluate.metrics import SPREAD_METRICS
from atacdenoise.io.bigwig import read_bigwig
from atacdenoise.model.network import load_model
from conftest import REPO, have, local_snakemake

pytestmark = pytest.mark.slow

DEMO = REPO / "resources" / "demo"
MODEL = "ens"
OVERLAY = {
    "samples": "samples.tsv",
    "depths": [],
    "split": {"val_chroms": ["chr2:3000000-3400000"], "holdout_chroms": ["chr2:5000000-10000000"]},
    "model": {
        "name": MODEL,
        "preset": "light",
        "ensemble": 2,
        "training": {"epochs": 2, "batch_size": 4, "windows_per_epoch": 4, "interval": 10000, "pad": 1000},
        "infer_chroms": ["chr2"],
        "threads": 2,
    },
}
PREFIX = f"results/denoised/{MODEL}/HSC/given.rep1"
TARGETS = [f"{PREFIX}.spread.bw", f"results/benchmark/{MODEL}/per_track/HSC/given.rep1.tsv"]


def test_ensemble_of_two_trains_both_members_denoises_with_their_mean_and_scores_the_spread(tmp_path):
    if not have("macs3"):
        pytest.skip("macs3 CLI not installed (the benchmark's baselines)")
    work = tmp_path
    (work / "config").mkdir()
    (work / "resources").symlink_to(REPO / "resources")
    (work / "config" / "config.yaml").write_text((REPO / "config" / "config.yaml").read_text())
    (work / "samples.tsv").write_text(
        "sample\tcell_type\tkind\tpath\tnoisy\tpeaks\tbarcodes\trole\n"
        f"HSC\tHSC\tbam\t{DEMO / 'HSC_80M.chr1_chr2.bam'}\t{DEMO / 'HSC_5M.chr1_chr2.bam'}"
        f"\t{DEMO / 'HSC_80M.macs2_peaks.chr1_chr2.bed'}\t\ttrain\n"
    )
    (work / "overlay.yaml").write_text(yaml.safe_dump(OVERLAY))
    cmd = local_snakemake(work, [work / "config" / "config.yaml", work / "overlay.yaml"], *TARGETS)
    res = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=1200)
    if res.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in (work / "results" / "logs").rglob("*.log"))
        pytest.fail(f"snakemake failed:\n{res.stderr[-6000:]}\n{logs[-8000:]}")

    # the two members: model.pt (seed 1, the single model) and members/2 (seed 1 x 1000 + 2), each with its log
    models = work / "results" / "models" / MODEL
    one, two = load_model(models / "model.pt")[0], load_model(models / "members" / "2" / "model.pt")[0]
    assert not torch.equal(one.reg_out.weight, two.reg_out.weight)
    assert '"seed": 1002' in res.stderr and (work / "results" / "logs" / "train" / f"{MODEL}.member2.log").exists()
    assert (work / "results" / "benchmarks" / "train" / f"{MODEL}.member2.tsv").exists()

    # the ensemble's outputs: one inference over both members, a spread in [0, 0.5], a valid 10-column narrowPeak
    assert f"--model results/models/{MODEL}/model.pt results/models/{MODEL}/members/2/model.pt" in res.stderr
    spread = read_bigwig(work / f"{PREFIX}.spread.bw", "chr2")
    assert spread.size == 10_000_000 and spread.min() >= 0 and spread.max() <= 0.5 and spread.max() > 0
    side = json.loads((work / f"{PREFIX}.spread.bw.json").read_text())
    assert len(side["ensemble"]["members"]) == 2
    peaks = pd.read_csv(work / f"{PREFIX}.peaks.narrowPeak", sep="\t", header=None)
    assert peaks.shape[1] == 10 and len(peaks) > 10 and peaks[4].between(0, 1000).all()
    first = peaks.iloc[0]
    conf = round(1000 * (1 - 2 * float(spread[first[1] : first[2]].astype(np.float64).mean())))
    assert first[4] == conf

    # the benchmark: the spread-vs-error rows of the model
    metrics = read_metrics(work / TARGETS[1])
    rows = metrics[metrics["metric"].isin(SPREAD_METRICS)].set_index("metric")["value"]
    assert set(rows.index) == set(SPREAD_METRICS) and rows.notna().all()
    assert rows["abs_error_bottom10"] <= rows["abs_error"] * 10  # sane magnitudes, all finite
    assert 0 <= rows["call_error_bottom10"] <= 1 and 0 <= rows["call_error_top10"] <= 1
