"""Training (atacdenoise.model.train).

Loss, resume after an interruption, checkpoints tied to the datasets' content, selection without
peaks, the train command.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from atacdenoise import cli
from atacdenoise.errors import InputError
from atacdenoise.io.genome import Region
from atacdenoise.model.dataset import ARRAYS, dataset_content_id, file_checksum, open_dataset, write_dataset
from atacdenoise.model.network import load_model
from atacdenoise.model.train import (
    HISTORY_COLUMNS,
    base_lr,
    f1_metrics,
    load_settings,
    loss_terms,
    lr_at,
    masked_pearson,
    resolve_settings,
    settings_hash,
    train,
)
from builders import PRE, TINY_TRAINING, make_training_dataset
from builders import TRAIN_SIZES as SIZES

SETTINGS = TINY_TRAINING


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    return make_training_dataset(tmp_path_factory.mktemp("data") / "ds")


VAL, HOLDOUT = [Region("chr2", 0, 6000)], [Region("chr2", 6000, 12_000)]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _run(ds: Path, out: Path, **over):
    return train([open_dataset(ds)], VAL, HOLDOUT, {**SETTINGS, **over}, out)


def _as_interrupted(out: Path) -> int:
    """Turn a finished run's state back into the checkpoint a run killed after that epoch leaves; return the epoch.

    A finished run's last state is kept as checkpoints/finished.pt, which no run resumes; the state itself is
    what an interrupted longer run would have left as last.pt (the settings hash leaves out ``epochs``).
    """
    ck = out / "checkpoints"
    (ck / "finished.pt").rename(ck / "last.pt")
    return int(torch.load(ck / "last.pt", weights_only=True)["epoch"])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path)[0].state_dict()


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _regenerate_with_same_statistics(ds: Path, keep_checksums: bool = True) -> None:
    """Re-make the dataset at the same path: the same meta, lengths, totals and labels, other content.

    Every chromosome's noisy and clean tracks are reversed (and the labels and mask with them), so each
    array's sum, its number of peak bases and the dataset's meta.json text apart from the checksums stay
    the same, as with a dataset re-made from a re-sequenced library of the same depth.
    """
    pair = open_dataset(ds)
    meta = {k: v for k, v in pair.meta.items() if k not in ("format", "chroms", "checksums")}
    arrays = {c: {name: np.array(pair.arrays(c)[name][::-1]) for name in ARRAYS} for c in pair.chroms}
    del pair
    write_dataset(ds, meta, arrays.items())
    if not keep_checksums:
        _strip_checksums(ds)


def _strip_checksums(ds: Path) -> None:
    """Make the dataset (the pair and its clean part) look like one whose meta.json records no array checksums."""
    for d in (ds, ds / "clean"):
        meta = json.loads((d / "meta.json").read_text())
        meta.pop("checksums")
        (d / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


# --------------------------------------------------------------------------- loss
def test_loss_ignores_masked_bases():
    torch.manual_seed(0)
    track, logits, clean = torch.rand(2, 50) * 5, torch.randn(2, 50), torch.rand(2, 50) * 5
    labels = (torch.rand(2, 50) > 0.7).float()
    mask = torch.ones(2, 50)
    mask[:, :10] = 0
    _, s = resolve_settings({})
    a = loss_terms(track, logits, clean, labels, mask, s)
    track2, logits2 = track.clone(), logits.clone()
    track2[:, :10], logits2[:, :10] = 1e3, -1e3
    b = loss_terms(track2, logits2, clean, labels, mask, s)
    for k in a:
        assert torch.allclose(a[k], b[k]), k
    keep = mask > 0
    assert torch.allclose(a["mse"], ((track - clean)[keep] ** 2).mean())
    r = np.corrcoef(track[keep].numpy(), clean[keep].numpy())[0, 1]
    assert a["pearson_loss"].item() == pytest.approx(1 - r, abs=1e-5)
    expected = 5e-4 * a["mse"] + a["pearson_loss"] + a["bce"]
    assert torch.allclose(a["loss"], expected)


def test_pearson_per_window_averages_window_correlations():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [11.0, 12.0, 13.0, 14.0]])
    y = torch.tensor([[4.0, 3.0, 2.0, 1.0], [14.0, 13.0, 12.0, 11.0]])
    mask = torch.ones_like(x)
    assert masked_pearson(x, y, mask, per_window=True).item() == pytest.approx(
        -1.0, abs=1e-6
    )  # each window anti-correlated
    batch_r = np.corrcoef(x.flatten().numpy(), y.flatten().numpy())[0, 1]  # the windows' offsets dominate
    assert batch_r > 0.9
    assert masked_pearson(x, y, mask, per_window=False).item() == pytest.approx(batch_r, abs=1e-5)
    assert masked_pearson(x, y, torch.zeros_like(x)).item() == 0.0
    half = mask.clone()
    half[1] = 0  # only the first window counts
    assert masked_pearson(x, y, half, per_window=False).item() == pytest.approx(-1.0, abs=1e-6)


def _pearson_with_a_branch(x, y, mask, per_window, eps=1e-8):
    """Return masked_pearson as it was: windows of < 2 bases dropped by indexing, a branch when none is left."""
    if not per_window:
        x, y, mask = x.reshape(1, -1), y.reshape(1, -1), mask.reshape(1, -1)
    n = mask.sum(dim=1)
    ok = n >= 2
    if not bool(ok.any()):
        return x.sum() * 0.0
    x, y, mask, n = x[ok], y[ok], mask[ok], n[ok]
    dx = (x - (x * mask).sum(dim=1, keepdim=True) / n[:, None]) * mask
    dy = (y - (y * mask).sum(dim=1, keepdim=True) / n[:, None]) * mask
    return ((dx * dy).sum(dim=1) / torch.sqrt((dx * dx).sum(dim=1) * (dy * dy).sum(dim=1) + eps)).mean()


@pytest.mark.parametrize("per_window", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_pearson_without_a_branch_equals_the_branching_one_bit_for_bit_with_its_gradient(per_window, seed):
    """No host sync per training step (issue 23), and the same loss and gradient as before on the CPU."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(5, 300, generator=g), torch.randn(5, 300, generator=g)
    mask = (torch.rand(5, 300, generator=g) < 0.9).float()
    mask[seed % 5, :] = 0  # a window with nothing to correlate
    mask[(seed + 1) % 5, 1:] = 0  # one with a single base
    if seed == 5:
        mask[:] = 0
    got_x, want_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    got, want = masked_pearson(got_x, y, mask, per_window), _pearson_with_a_branch(want_x, y, mask, per_window)
    got.backward()
    want.backward()
    assert got.item() == want.item()
    assert torch.equal(got_x.grad, want_x.grad)


# --------------------------------------------------------------------------- training and resume
def test_resume_after_epoch_one_continues_like_an_uninterrupted_run(ds, tmp_path, caplog):
    whole = _run(ds, tmp_path / "whole", epochs=2)
    _run(ds, tmp_path / "cut", epochs=1)
    assert _as_interrupted(tmp_path / "cut") == 1  # the "interrupted" run: stopped after epoch 1
    caplog.clear()
    caplog.set_level(logging.INFO, logger="atacdenoise")
    resumed = _run(ds, tmp_path / "cut", epochs=2)
    assert "resuming" in caplog.text and "after epoch 1" in caplog.text

    hist = pd.read_csv(tmp_path / "cut" / "history.tsv", sep="\t")
    assert hist["epoch"].tolist() == [1, 2] and list(hist.columns) == HISTORY_COLUMNS
    ref = pd.read_csv(tmp_path / "whole" / "history.tsv", sep="\t")
    cols = ["train_loss", "val_loss", "val_pearson", "val_auprc"]
    assert np.allclose(hist[cols].to_numpy(float), ref[cols].to_numpy(float), rtol=1e-5)
    # the resumed optimizer continued from epoch 1's state (a fresh Adam would differ in step and moments)
    opt_w, opt_r = whole.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert opt_w.keys() == opt_r.keys()
    for k in opt_w:
        assert float(opt_r[k]["step"]) == float(opt_w[k]["step"]) == 2 * 3  # 12 windows / batch 4, two epochs
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.allclose(opt_w[k][name], opt_r[k][name], rtol=1e-5, atol=1e-8)
    for (k, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), k
    best_w, meta_w = load_model(tmp_path / "whole" / "model.pt")
    best_r, meta_r = load_model(tmp_path / "cut" / "model.pt")
    assert meta_w["epoch"] == meta_r["epoch"]
    for a, b in zip(best_w.state_dict().values(), best_r.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_best_epoch_is_the_highest_validation_auprc_and_model_file_follows_the_contract(ds, tmp_path):
    result = _run(ds, tmp_path / "m", epochs=3)
    hist = pd.read_csv(tmp_path / "m" / "history.tsv", sep="\t")
    best = int(hist.loc[hist["val_auprc"].idxmax(), "epoch"])
    model, meta = load_model(tmp_path / "m" / "model.pt")
    assert result.best_epoch == meta["epoch"] == best and meta["selected_by"] == "val_auprc"
    assert meta["val_metrics"]["val_auprc"] == pytest.approx(hist["val_auprc"].max(), rel=1e-5)
    assert meta["preprocessing"] == PRE
    assert meta["window"] == {"interval": 1000, "pad": 100}
    assert meta["input_transform"]["kind"] == "depth" and meta["input_transform"]["reference"] > 0  # the default
    # default threshold: the best epoch's max-F1 cut on validation, and its F1 is at least the F1 at 0.5
    assert meta["threshold_source"] == "val_f1"
    assert meta["trained_samples"] == ["T"] and meta["trained_cell_types"] == ["TC"]  # seen vs unseen in summary
    # (chosen on the calibrated probabilities: model.calibration, tests/model/test_calibration.py)
    assert meta["threshold"] == pytest.approx(meta["calibration"]["val_best_threshold"]) and 0 < meta["threshold"] < 1
    assert meta["val_metrics"]["val_best_f1"] >= meta["val_metrics"]["val_f1_at_0.5"] - 1e-9
    assert meta["hparams"]["filters"] == 4 and meta["hparams"]["cls_sees_features"] is False
    assert meta["holdout_regions"] == ["chr2:6000-12000"]
    for a, b in zip(model.state_dict().values(), result.best_state.values()):
        assert torch.equal(a, b)


def test_validation_without_peaks_warns_and_selects_by_loss(tmp_path):
    ds = make_training_dataset(tmp_path / "ds", peaks_on_chr2=False)
    with pytest.warns(RuntimeWarning, match="no peak"):
        train([open_dataset(ds)], VAL, HOLDOUT, {**SETTINGS, "epochs": 3}, tmp_path / "m")
    hist = pd.read_csv(tmp_path / "m" / "history.tsv", sep="\t")
    assert hist["val_auprc"].isna().all()
    _, meta = load_model(tmp_path / "m" / "model.pt")
    assert meta["selected_by"] == "val_loss"
    assert meta["epoch"] == int(hist.loc[hist["val_loss"].idxmin(), "epoch"])


def test_corrupt_checkpoint_without_a_previous_one_warns_naming_both_and_training_starts_fresh(ds, tmp_path, caplog):
    ck = tmp_path / "m" / "checkpoints" / "last.pt"
    ck.parent.mkdir(parents=True)
    ck.write_bytes(b"PK\x03\x04 truncated")
    with pytest.warns(RuntimeWarning, match="no usable checkpoint"):
        _run(ds, tmp_path / "m", epochs=1)
    assert f"{ck}: unreadable checkpoint" in caplog.text and f"{ck.with_name('previous.pt')}: absent" in caplog.text
    assert "starting training from scratch at epoch 1" in caplog.text
    assert torch.load(ck.with_name("finished.pt"), weights_only=True)["epoch"] == 1
    assert pd.read_csv(tmp_path / "m" / "history.tsv", sep="\t")["epoch"].tolist() == [1]


def test_changed_settings_start_fresh_and_a_finished_run_is_never_resumed(ds, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="atacdenoise")
    _run(ds, tmp_path / "m", epochs=1)
    _as_interrupted(tmp_path / "m")
    _run(ds, tmp_path / "m", epochs=1, lr=5e-4)
    assert "other settings" in caplog.text and "resuming" not in caplog.text
    state = torch.load(tmp_path / "m" / "checkpoints" / "finished.pt", weights_only=True)
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert sorted(p.name for p in (tmp_path / "m" / "checkpoints").iterdir()) == ["finished.pt"]  # no lock left
    # a finished run (model.pt written) does not continue into a longer one: the longer one starts at epoch 1
    caplog.clear()
    _run(ds, tmp_path / "m", epochs=2, lr=5e-4)
    assert "resuming" not in caplog.text and "holds a finished run" in caplog.text
    assert pd.read_csv(tmp_path / "m" / "history.tsv", sep="\t")["epoch"].tolist() == [1, 2]


# --------------------------------------------------------------------------- checkpoints follow the data's content
def test_dataset_records_checksums_of_the_bytes_written_and_fingerprints_follow_content(tmp_path):
    ds = make_training_dataset(tmp_path / "ds")
    stored = {ds: ("noisy",), ds / "clean": ("clean", "flags")}  # the pair, and its clean part inside
    for d, names in stored.items():
        meta = json.loads((d / "meta.json").read_text())
        files = meta["checksums"]["files"]
        assert meta["checksums"]["algorithm"] == "blake2b-128"
        assert sorted(files) == sorted(f"{c}.{n}.npy" for c in SIZES for n in names)
        for name, entry in files.items():
            assert entry["bytes"] == (d / name).stat().st_size and entry["digest"] == file_checksum(d / name), name
    first = dataset_content_id(open_dataset(ds))
    make_training_dataset(ds)  # re-made with identical content (new files, new times): the same fingerprint
    assert dataset_content_id(open_dataset(ds)) == first
    _regenerate_with_same_statistics(ds)
    remade = dataset_content_id(open_dataset(ds))
    assert remade["files"] != first["files"]  # meta.json text is the same apart from its checksums
    # a dataset made before checksums were recorded: its files are hashed, to the checksums write_dataset records
    _strip_checksums(ds)
    assert dataset_content_id(open_dataset(ds))["files"] == remade["files"]
    # an array truncated after the dataset was made is refused, naming it
    _regenerate_with_same_statistics(ds)
    victim = ds / "chr1.noisy.npy"
    victim.write_bytes(victim.read_bytes()[:-4])
    with pytest.raises(InputError, match=r"chr1\.noisy\.npy: .* re-make the dataset"):
        dataset_content_id(open_dataset(ds))


def test_retraining_after_the_dataset_is_remade_with_new_content_starts_from_scratch(tmp_path, caplog):
    """The issue's reproduction: a finished run, then a dataset re-made at the same path with the same statistics."""
    caplog.set_level(logging.INFO, logger="atacdenoise")
    ds = make_training_dataset(tmp_path / "ds")
    _run(ds, tmp_path / "m", epochs=2)
    old = _weights(tmp_path / "m" / "model.pt")
    before = open_dataset(ds)
    totals = {n: before.total(n) for n in ("noisy", "clean")}
    _regenerate_with_same_statistics(ds)
    after = open_dataset(ds)
    assert {n: after.total(n) for n in ("noisy", "clean")} == pytest.approx(totals, rel=1e-6)
    caplog.clear()
    _run(ds, tmp_path / "m", epochs=2)
    assert "resuming" not in caplog.text
    assert pd.read_csv(tmp_path / "m" / "history.tsv", sep="\t")["epoch"].tolist() == [1, 2]
    new = _weights(tmp_path / "m" / "model.pt")
    assert not _same_weights(old, new)
    _run(ds, tmp_path / "fresh", epochs=2)  # and it is the model a first training on the new data gives
    assert _same_weights(new, _weights(tmp_path / "fresh" / "model.pt"))


@pytest.mark.parametrize("keep_checksums", [True, False], ids=["checksums-in-meta", "older-dataset-hashed"])
def test_an_interrupted_run_does_not_resume_on_a_dataset_remade_with_new_content(tmp_path, caplog, keep_checksums):
    caplog.set_level(logging.INFO, logger="atacdenoise")
    ds = make_training_dataset(tmp_path / "ds")
    if not keep_checksums:
        _strip_checksums(ds)
    _run(ds, tmp_path / "m", epochs=1)
    _as_interrupted(tmp_path / "m")  # killed after epoch 1 of 2
    _regenerate_with_same_statistics(ds, keep_checksums=keep_checksums)
    caplog.clear()
    _run(ds, tmp_path / "m", epochs=2)
    assert "resuming" not in caplog.text
    assert "checkpoint was made with other settings, datasets or regions" in caplog.text
    assert pd.read_csv(tmp_path / "m" / "history.tsv", sep="\t")["epoch"].tolist() == [1, 2]
    _run(ds, tmp_path / "fresh", epochs=2)
    assert _same_weights(_weights(tmp_path / "m" / "model.pt"), _weights(tmp_path / "fresh" / "model.pt"))


def test_preset_atacworks_brings_the_reference_recipe_and_user_keys_still_win():
    hparams, s = resolve_settings({"preset": "atacworks"})
    assert hparams["filters"] == 15 and hparams["kernel_size"] == 51
    assert s["input_transform"] == {"kind": "none"} and s["prior_init"] is False and s["threshold"] == 0.5
    assert (s["lr"], s["batch_size"], s["epochs"], s["pearson"]) == (2e-4, 64, 25, "batch")
    _, s = resolve_settings({"preset": "atacworks", "batch_size": 4, "threshold": "val_f1"})
    assert s["batch_size"] == 4 and s["threshold"] == "val_f1" and s["prior_init"] is False
    std_h, std = resolve_settings({})  # the default preset: the same shape, this project's recipe
    assert (
        std_h == hparams
        and std["input_transform"] == {"kind": "depth"}
        and std["prior_init"]
        and std["threshold"] == "val_f1"
    )


def test_fixed_threshold_setting_is_stored_as_given(ds, tmp_path):
    _run(ds, tmp_path / "m", epochs=1, threshold=0.3)
    _, meta = load_model(tmp_path / "m" / "model.pt")
    assert meta["threshold"] == 0.3 and meta["threshold_source"] == "setting"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_f1_metrics_equal_brute_force_over_every_cut(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(500) < 0.2).astype(np.uint8)
    p = np.round(np.clip(rng.random(500) * 0.6 + 0.4 * y, 0, 1), 2).astype(np.float32)  # ties on purpose

    def f1(cut):
        called = p >= cut
        return 2 * np.sum(called & (y == 1)) / (called.sum() + y.sum())

    at_half, best, cut = f1_metrics(p, y, 0.5)
    assert at_half == pytest.approx(f1(np.float32(0.5)))
    brute = max(f1(c) for c in np.unique(p))
    assert best == pytest.approx(brute) and f1(np.float32(cut)) == pytest.approx(brute)
    assert all(np.isnan(v) for v in f1_metrics(p, np.zeros_like(y), 0.5))


def test_cosine_lr_runs_from_lr_to_a_twentieth_and_constant_stays():
    s = {"lr": 1e-3, "epochs": 5, "lr_schedule": "cosine"}
    lrs = [lr_at(e, s) for e in range(1, 6)]
    assert (
        lrs[0] == pytest.approx(1e-3)
        and lrs[-1] == pytest.approx(1e-3 / 20)
        and lrs[2] == pytest.approx((1e-3 + 5e-5) / 2)
    )
    assert all(a > b for a, b in itertools.pairwise(lrs))
    assert {lr_at(e, {**s, "lr_schedule": "constant"}) for e in range(1, 6)} == {1e-3}


def test_lr_follows_the_global_batch_from_lr_batch_by_its_rule():
    s = {"lr": 1e-3, "epochs": 5, "lr_schedule": "constant", "batch_size": 16, "lr_batch": 4, "lr_scaling": "sqrt"}
    assert base_lr(s) == pytest.approx(2e-3) and lr_at(3, s) == pytest.approx(2e-3)
    assert base_lr({**s, "lr_scaling": "linear"}) == pytest.approx(4e-3)
    assert base_lr(s, world=4) == pytest.approx(4e-3)  # DDP: 4 processes of 16 windows make a batch of 64
    assert base_lr({**s, "lr_batch": None}, world=4) == 1e-3  # no lr_batch: lr as given
    cosine = {**s, "lr_schedule": "cosine"}
    assert lr_at(1, cosine) == pytest.approx(2e-3) and lr_at(5, cosine) == pytest.approx(2e-3 / 20)
    for bad, key in (({"lr_batch": 0}, "lr_batch"), ({"lr_batch": 4, "lr_scaling": "log"}, "lr_scaling")):
        with pytest.raises(InputError, match=key):
            resolve_settings(bad)


def test_scaled_lr_trains_logs_and_keeps_old_checkpoints_hash(ds, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="atacdenoise")
    result = _run(ds, tmp_path / "m", epochs=1, batch_size=4, lr_batch=1, lr_scaling="linear")
    assert [row["lr"] for row in result.history] == pytest.approx([4 * SETTINGS["lr"]])
    assert "was set for batch 1, this run's is 4 (linear scaling)" in caplog.text
    pairs, hp = [open_dataset(ds)], resolve_settings({})[0]
    _, plain = resolve_settings({})
    same = settings_hash(hp, plain, pairs, VAL, HOLDOUT)
    without = {k: v for k, v in plain.items() if k not in ("lr_batch", "lr_scaling")}  # as an older version had
    assert settings_hash(hp, without, pairs, VAL, HOLDOUT) == same
    assert settings_hash(hp, {**plain, "lr_batch": 16}, pairs, VAL, HOLDOUT) != same


def test_cosine_schedule_and_auto_pos_weight_train_and_log(ds, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="atacdenoise")
    result = _run(ds, tmp_path / "m", epochs=2, lr_schedule="cosine", pos_weight="auto")
    assert [row["lr"] for row in result.history] == pytest.approx([SETTINGS["lr"], SETTINGS["lr"] / 20])
    assert "pos_weight auto: peak bases weighted" in caplog.text
    _, meta = load_model(tmp_path / "m" / "model.pt")
    assert meta["settings"]["pos_weight"] == "auto" and "_pos_weight" not in meta["settings"]


def test_pos_weight_scales_the_bce_of_peak_bases():
    logits = torch.tensor([[0.3, -1.0, 2.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    mask = torch.ones_like(labels)
    track = clean = torch.zeros_like(labels)
    base = {"w_mse": 0.0, "w_pearson": 0.0, "w_bce": 1.0, "pearson": "batch"}
    plain = loss_terms(track, logits, clean, labels, mask, base)["bce"]
    weighted = loss_terms(track, logits, clean, labels, mask, {**base, "_pos_weight": 3.0})["bce"]
    per_base = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")[0]
    assert float(plain) == pytest.approx(float(per_base.mean()), rel=1e-6)
    assert float(weighted) == pytest.approx(float((3 * per_base[0] + per_base[1] + 3 * per_base[2]) / 3), rel=1e-6)


def test_early_stopping_with_patience(ds, tmp_path):
    result = _run(ds, tmp_path / "m", epochs=6, lr=0.0, patience=1)  # lr 0: nothing improves after epoch 1
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert result.best_epoch == 1


def test_datasets_with_different_smoothing_cannot_train_one_model(ds, tmp_path):
    other = make_training_dataset(tmp_path / "other", preprocessing={**PRE, "smooth_bp": 100})
    with pytest.raises(InputError, match="smooth_bp"):
        train([open_dataset(ds), open_dataset(other)], VAL, HOLDOUT, SETTINGS, tmp_path / "m")


def test_validation_overlapping_holdout_is_input_error(ds, tmp_path):
    with pytest.raises(InputError, match="overlaps holdout"):
        train([open_dataset(ds)], [Region("chr2", 0, 7000)], HOLDOUT, SETTINGS, tmp_path / "m")


# --------------------------------------------------------------------------- settings and command line
def test_settings_from_json_string_yaml_file_and_errors(tmp_path):
    assert load_settings('{"preset": "light", "epochs": 3}') == {"preset": "light", "epochs": 3}
    (tmp_path / "s.yaml").write_text("preset: light\nbatch_size: 2\n")
    hparams, s = resolve_settings(load_settings(tmp_path / "s.yaml"))
    assert hparams["filters"] == 8 and s["batch_size"] == 2 and s["lr"] == 2e-4 and s["w_mse"] == 5e-4
    with pytest.raises(InputError, match="unknown"):
        resolve_settings({"epoch": 3})
    with pytest.raises(InputError, match="amp"):
        resolve_settings({"amp": "fp8"})
    for bad, key in (
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": "max"}, "threshold"),
        ({"pos_weight": 0}, "pos_weight"),
        ({"pos_weight": "balanced"}, "pos_weight"),
        ({"lr_schedule": "step"}, "lr_schedule"),
    ):
        with pytest.raises(InputError, match=key):
            resolve_settings(bad)
    with pytest.raises(InputError, match="JSON"):
        load_settings("{not json")


def test_train_command_writes_model_and_history(ds, tmp_path):
    sizes = tmp_path / "g.sizes"
    sizes.write_text("".join(f"{c}\t{n}\n" for c, n in SIZES.items()))
    settings = json.dumps({**SETTINGS, "epochs": 1})
    argv = [
        "train",
        "-q",
        "--datasets",
        str(ds),
        "--sizes",
        str(sizes),
        "--val",
        "chr2:0-6000",
        "--holdout",
        "chr2:6000-12000",
        "--settings",
        settings,
        "--out-dir",
        str(tmp_path / "m"),
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    assert cli.main(argv) == 0
    assert (tmp_path / "m" / "model.pt").exists() and (tmp_path / "m" / "history.tsv").exists()
    bad = list(argv)
    bad[bad.index("chr2:0-6000")] = "chr9"
    assert cli.main(bad) == 2  # a validation region on an unknown chromosome


@pytest.mark.slow
def test_two_process_ddp_training_on_cpu(ds, tmp_path):
    """--gpus 2 with --device cpu runs the DDP code path under torchrun with the gloo backend."""
    sizes = tmp_path / "g.sizes"
    sizes.write_text("".join(f"{c}\t{n}\n" for c, n in SIZES.items()))
    settings = json.dumps({**SETTINGS, "epochs": 2})
    cmd = [
        sys.executable,
        "-m",
        "atacdenoise.cli",
        "train",
        "--datasets",
        str(ds),
        "--sizes",
        str(sizes),
        "--val",
        "chr2:0-6000",
        "--holdout",
        "chr2:6000-12000",
        "--settings",
        settings,
        "--out-dir",
        str(tmp_path / "m"),
        "--device",
        "cpu",
        "--gpus",
        "2",
        "--threads",
        "2",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "launching 2 processes" in proc.stderr and "2 process(es)" in proc.stderr
    hist = pd.read_csv(tmp_path / "m" / "history.tsv", sep="\t")
    assert hist["epoch"].tolist() == [1, 2]
    state = torch.load(tmp_path / "m" / "checkpoints" / "finished.pt", weights_only=True)
    # 12 windows split over 2 ranks: 6 each, batch 4 -> 2 steps per epoch
    assert all(float(v["step"]) == 4 for v in state["optimizer"]["state"].values())
    load_model(tmp_path / "m" / "model.pt")


def test_training_a_large_network_on_the_cpu_warns_with_the_way_out(ds, tmp_path, caplog, monkeypatch):
    from atacdenoise.model import train as train_module

    with caplog.at_level(logging.WARNING):
        train([open_dataset(ds)], VAL, HOLDOUT, {**SETTINGS, "epochs": 1}, tmp_path / "small")
    assert "on the CPU" not in caplog.text  # the test's tiny network: no warning
    monkeypatch.setattr(train_module, "CPU_WARN_PARAMETERS", 10)  # the same network counts as large
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        train([open_dataset(ds)], VAL, HOLDOUT, {**SETTINGS, "epochs": 1}, tmp_path / "large", device="cpu")
    assert "-parameter network (preset standard) on the CPU" in caplog.text
    assert "train on a GPU node (profiles/slurm-gpu) or set model.preset: light" in caplog.text


def test_auto_workers_use_the_jobs_cpus_on_a_gpu_and_none_on_the_cpu():
    from atacdenoise.model.train import resolve_workers

    cpus = len(os.sched_getaffinity(0))
    assert resolve_workers("auto", torch.device("cpu")) == 0
    assert resolve_workers("auto", torch.device("cuda")) == cpus - 1
    assert resolve_workers("auto", torch.device("cuda"), world=cpus) == 0
    assert resolve_workers(3, torch.device("cpu")) == 3
    with pytest.raises(InputError, match=r"num_workers='many'.*or 'auto'"):
        resolve_settings({"num_workers": "many"})
