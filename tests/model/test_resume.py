"""Interruptions: a SIGKILLed training resumes from its last checkpoint.

A SIGKILLed inference leaves no final-named output. Both run the real
``atacdenoise`` command in its own process group, killed with SIGKILL (no
clean-up code can run), then run the same command again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyBigWig
import torch

from atacdenoise.io.bigwig import write_bigwig
from atacdenoise.model.network import build_model, save_model
from builders import PRE, TINY_TRAINING, make_training_dataset

BIN = Path(sys.executable).parent
#: about a second per epoch on one CPU thread, so a kill lands between the first checkpoint and the end
SETTINGS = {**TINY_TRAINING, "windows_per_epoch": 320, "epochs": 5}


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:
        return subprocess.Popen(
            [str(BIN / "atacdenoise"), *map(str, argv)], stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the command and every process it started (its own process group)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not condition():
        assert proc.poll() is None, "the command finished before it could be interrupted"
        assert time.monotonic() - t0 < timeout, "timed out waiting for the command"
        time.sleep(0.02)


def test_training_killed_after_a_checkpoint_resumes_and_records_every_epoch_once(tmp_path):
    ds = make_training_dataset(tmp_path / "ds")
    sizes = tmp_path / "g.sizes"
    sizes.write_text("chr1\t30000\nchr2\t12000\n")
    out = tmp_path / "model"
    argv = [
        "train",
        "--datasets",
        ds,
        "--sizes",
        sizes,
        "--val",
        "chr2:0-6000",
        "--holdout",
        "chr2:6000-12000",
        "--settings",
        json.dumps(SETTINGS),
        "--out-dir",
        out,
        "--device",
        "cpu",
        "--threads",
        1,
    ]
    state = out / "checkpoints" / "last.pt"

    proc = _start(argv, tmp_path / "first.log")
    _wait_for(state.exists, proc)
    _kill(proc)
    done = torch.load(state, weights_only=True)["epoch"]
    assert 1 <= done < SETTINGS["epochs"], f"killed after epoch {done}: too late to test a resumption"
    assert not (out / "model.pt").exists()

    res = subprocess.run([str(BIN / "atacdenoise"), *map(str, argv)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"resuming from {state} after epoch {done}" in res.stderr
    assert f"epoch {done}/{SETTINGS['epochs']}:" not in res.stderr  # finished epochs are not trained again
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert history["epoch"].tolist() == list(range(1, SETTINGS["epochs"] + 1))

    # the interrupted-and-resumed run equals an uninterrupted one (windows seeded by (seed, epoch))
    ref = tmp_path / "ref"
    argv_ref = [str(a) if a != out else str(ref) for a in argv]
    res = subprocess.run([str(BIN / "atacdenoise"), *argv_ref], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    ref_history = pd.read_csv(ref / "history.tsv", sep="\t")
    for col in ("train_loss", "val_loss", "val_pearson", "val_auprc"):
        np.testing.assert_allclose(history[col], ref_history[col], rtol=1e-5, err_msg=col)


def test_inference_killed_midway_leaves_no_final_output_and_a_rerun_succeeds(tmp_path):
    # large enough that the run cannot finish between the first bytes written and the kill (~2 s of work)
    sizes = {"chr1": 6_000_000, "chr2": 2_000_000}
    sizes_file = tmp_path / "g.sizes"
    sizes_file.write_text("".join(f"{c}\t{n}\n" for c, n in sizes.items()))
    rng = np.random.default_rng(0)
    bw = tmp_path / "noisy.bw"
    write_bigwig(bw, sizes, {c: rng.poisson(2, n).astype(np.float32) for c, n in sizes.items()})
    Path(f"{bw}.json").write_text(json.dumps(PRE))
    model = tmp_path / "m.pt"
    net = build_model(dict(filters=4, kernel_size=5, dilation=2, reg_blocks=1, cls_blocks=1, convs_per_block=2))
    save_model(
        model,
        net,
        preprocessing=PRE,
        window={"interval": 10_000, "pad": 100},
        input_transform={"kind": "none"},
        threshold=0.5,
    )
    out = tmp_path / "out"
    argv = [
        "infer",
        "--model",
        model,
        "--input",
        bw,
        "--sizes",
        sizes_file,
        "--out-prefix",
        out / "S",
        "--threads",
        1,
        "--device",
        "cpu",
        "--batch-size",
        4,
    ]
    # the fitness table is written last, after the three outputs are renamed into place
    finals = [out / "S.track.bw", out / "S.peakprob.bw", out / "S.peaks.narrowPeak", out / "S.fitness.tsv"]

    proc = _start(argv, tmp_path / "first.log")
    _wait_for(lambda: out.is_dir() and any(p.stat().st_size > 0 for p in out.iterdir()), proc)  # writing has begun
    _kill(proc)
    assert not any(p.exists() for p in finals), sorted(out.iterdir())
    leftovers = sorted(p.name for p in out.iterdir())
    assert leftovers and all(name.startswith(".") and ".tmp-" in name for name in leftovers), (
        leftovers
    )  # hidden temp names only

    assert all(name.count(".tmp-") == 1 for name in leftovers), leftovers  # one temporary name each, no temp of a temp

    res = subprocess.run([str(BIN / "atacdenoise"), *map(str, argv)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert all(p.exists() for p in finals)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in finals
    )  # the killed run's temporaries are gone
    assert "a temporary file left by a killed run" in res.stderr
    for path in finals[:2]:
        with pyBigWig.open(str(path)) as bwf:
            assert bwf.chroms() == sizes
    with pyBigWig.open(str(finals[1])) as prob:  # a sigmoid is never 0, so every base of a complete file has a value
        assert np.isfinite(prob.values("chr2", sizes["chr2"] - 1000, sizes["chr2"], numpy=True)).all()
