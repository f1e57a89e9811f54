"""Interruptions: a SIGKILLed training resumes from its last checkpoint.

An unreadable last checkpoint falls back to the one before it; a second
training on the same output directory (an orphan of a killed workflow) is
refused while the first runs and takes over once it is dead. A SIGKILLed
inference leaves no final-named output. All run the real ``atacdenoise``
command in its own process group, killed with SIGKILL (no clean-up code can
run), then run the same command again.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyBigWig
import pytest
import torch

from atacdenoise.atomic import host_name
from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import write_bigwig
from atacdenoise.io.genome import Region
from atacdenoise.model import train as train_module
from atacdenoise.model.dataset import open_dataset
from atacdenoise.model.network import build_model, load_model, save_model
from atacdenoise.model.train import LOCK_STALE_S, train, train_lock
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


def _train_argv(ds: Path, sizes: Path, out: Path, settings: dict = SETTINGS) -> list:
    return [
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
        json.dumps(settings),
        "--out-dir",
        out,
        "--device",
        "cpu",
        "--threads",
        1,
    ]


def _rerun(argv: list) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "atacdenoise"), *map(str, argv)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """Make a training dataset and its sizes file."""
    d = tmp_path_factory.mktemp("inputs")
    sizes = d / "g.sizes"
    sizes.write_text("chr1\t30000\nchr2\t12000\n")
    return make_training_dataset(d / "ds"), sizes


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> Path:
    """Run :data:`SETTINGS` uninterrupted; return its output directory."""
    out = tmp_path_factory.mktemp("reference") / "model"
    res = _rerun(_train_argv(*inputs, out))
    assert res.returncode == 0, res.stderr
    return out


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path)[0].state_dict()


def _assert_same_model(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_training_killed_after_a_checkpoint_resumes_and_records_every_epoch_once(inputs, reference, tmp_path):
    out = tmp_path / "model"
    argv = _train_argv(*inputs, out)
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
    ref_history = pd.read_csv(reference / "history.tsv", sep="\t")
    for col in ("train_loss", "val_loss", "val_pearson", "val_auprc"):
        np.testing.assert_allclose(history[col], ref_history[col], rtol=1e-5, err_msg=col)
    _assert_same_model(out / "model.pt", reference / "model.pt")
    # the finished state is retired: a rerun would train anew, never continue this run
    assert sorted(p.name for p in state.parent.iterdir()) == ["finished.pt"]


# --------------------------------------------------------------------------- last and previous checkpoint
def test_unreadable_last_checkpoint_falls_back_to_the_previous_one_and_ends_like_an_uninterrupted_run(
    inputs, reference, tmp_path
):
    out = tmp_path / "model"
    argv = _train_argv(*inputs, out)
    last, previous = out / "checkpoints" / "last.pt", out / "checkpoints" / "previous.pt"

    proc = _start(argv, tmp_path / "first.log")
    _wait_for(lambda: previous.exists() and last.exists(), proc)  # two epochs done
    _kill(proc)
    kept = torch.load(previous, weights_only=True)["epoch"]
    if last.exists():  # (unless the kill fell between save()'s two renames, which leaves previous.pt alone)
        assert torch.load(last, weights_only=True)["epoch"] == kept + 1  # rotated: the one before is kept
    assert 1 <= kept < SETTINGS["epochs"] - 1 and not (out / "model.pt").exists()
    last.write_bytes(b"PK\x03\x04" + os.urandom(64))  # damaged in place, e.g. by a full disk or a bad transfer

    res = _rerun(argv)
    assert res.returncode == 0, res.stderr
    assert f"{last}: unreadable checkpoint" in res.stderr
    assert f"resuming from the checkpoint before it, {previous} (epoch {kept})" in res.stderr
    assert f"resuming from {previous} after epoch {kept}" in res.stderr
    assert "starting training from scratch" not in res.stderr
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert history["epoch"].tolist() == list(range(1, SETTINGS["epochs"] + 1))
    _assert_same_model(out / "model.pt", reference / "model.pt")


def test_both_checkpoints_unreadable_warn_naming_both_files_and_training_starts_from_scratch(inputs, tmp_path):
    out = tmp_path / "model"
    ck = out / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "last.pt").write_bytes(b"")
    (ck / "previous.pt").write_bytes(b"PK\x03\x04 truncated")
    res = _rerun(_train_argv(*inputs, out, {**SETTINGS, "epochs": 2}))
    assert res.returncode == 0, res.stderr
    warning = next(line for line in res.stderr.splitlines() if "no usable checkpoint" in line)
    assert f"{ck / 'last.pt'}: unreadable checkpoint" in warning
    assert f"{ck / 'previous.pt'}: unreadable checkpoint" in warning
    assert "starting training from scratch at epoch 1" in warning and "WARNING" in warning
    assert pd.read_csv(out / "history.tsv", sep="\t")["epoch"].tolist() == [1, 2]


# --------------------------------------------------------------------------- one trainer per output directory
def _lock_holder(lock: Path) -> dict:
    try:
        return json.loads(lock.read_text() or "{}")
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_a_second_trainer_on_the_same_directory_is_refused_and_takes_over_once_the_first_is_dead(inputs, tmp_path):
    """An orphaned training (its workflow killed) and the rerun's new one must not write one directory together."""
    out = tmp_path / "model"
    argv = _train_argv(*inputs, out, {**SETTINGS, "epochs": 60})  # runs for a minute: plenty of time to collide
    lock = out / "checkpoints" / "train.lock"
    host = host_name()

    first = _start(argv, tmp_path / "first.log")
    try:
        _wait_for(lambda: _lock_holder(lock).get("pid") == first.pid, first)
        second = _rerun(argv)
        assert second.returncode == 2, second.stderr
        assert f"{lock}: another training is writing to {out}: host {host}, pid {first.pid}" in second.stderr
        assert f"if it no longer runs, delete {lock}" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None and _lock_holder(lock)["pid"] == first.pid  # the first runs on, still the holder
        _wait_for(lambda: (out / "checkpoints" / "last.pt").exists(), first)
    finally:
        _kill(first)
    assert _lock_holder(lock)["pid"] == first.pid  # a SIGKILL leaves the lock file behind

    done = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["epoch"]
    res = _rerun(_train_argv(*inputs, out, {**SETTINGS, "epochs": done + 1}))  # fewer epochs: resumable
    assert res.returncode == 0, res.stderr
    assert f"{lock}: taking over the lock of pid {first.pid} on this host, which no longer runs" in res.stderr
    assert f"after epoch {done}" in res.stderr
    assert not lock.exists()  # released when the run ends


def test_lock_of_another_host_is_refused_until_it_shows_no_sign_of_life(tmp_path, caplog, monkeypatch):
    lock = tmp_path / "train.lock"
    holder = {"host": "node-b.cluster", "pid": 4242, "started": "2026-01-01T00:00:00+0000"}
    lock.write_text(json.dumps(holder))
    with (
        pytest.raises(InputError, match=r"host node-b\.cluster, pid 4242 .*last sign of life \d+ s ago"),
        train_lock(tmp_path),
    ):
        pass
    old = time.time() - LOCK_STALE_S - 5
    os.utime(lock, (old, old))
    monkeypatch.setattr(train_module, "LOCK_HEARTBEAT_S", 0.05)
    with caplog.at_level(logging.WARNING), train_lock(tmp_path) as path:
        assert "taking over the lock of host node-b.cluster, pid 4242" in caplog.text
        assert _lock_holder(path) == {**_lock_holder(path), "host": host_name(), "pid": os.getpid()}
        time.sleep(0.5)
        assert time.time() - path.stat().st_mtime < 0.4  # the holder's heartbeat keeps the file's time fresh
    assert not lock.exists()


def test_without_file_locks_a_live_same_host_holder_is_refused_and_a_dead_one_taken_over(tmp_path, monkeypatch):
    """File systems without flock (ENOLCK): the host name and pid in the lock file decide."""
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    lock = tmp_path / "train.lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"host": host_name(), "pid": sleeper.pid}))
        with (
            pytest.raises(InputError, match=rf"pid {sleeper.pid} .*still running.*delete {lock}"),
            train_lock(tmp_path),
        ):
            pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with train_lock(tmp_path) as path:  # the holder is dead now
        assert _lock_holder(path)["pid"] == os.getpid()


def test_training_holds_the_lock_while_it_runs(inputs, tmp_path):
    ds, _ = inputs
    out = tmp_path / "m"
    with train_lock(out / "checkpoints"), pytest.raises(InputError, match=f"pid {os.getpid()}"):
        train([open_dataset(ds)], [Region("chr2", 0, 6000)], [], {**SETTINGS, "epochs": 1}, out)
    assert not (out / "model.pt").exists()


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
    sidecars = ["S.track.bw.json", "S.peakprob.bw.json"]  # each bigWig's precision record
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [p.name for p in finals] + sidecars
    )  # the killed run's temporaries are gone
    assert "a temporary file left by a killed run" in res.stderr
    for path in finals[:2]:
        with pyBigWig.open(str(path)) as bwf:
            assert bwf.chroms() == sizes
    with pyBigWig.open(str(finals[1])) as prob:  # a sigmoid is never 0, so every base of a complete file has a value
        assert np.isfinite(prob.values("chr2", sizes["chr2"] - 1000, sizes["chr2"], numpy=True)).all()
