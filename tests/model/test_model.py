"""The denoising ResNet: shape, size, receptive field, model files, and that it learns (atacdenoise.model.network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from atacdenoise import cli
from atacdenoise.errors import InputError
from atacdenoise.io.genome import Region
from atacdenoise.io.intervals import mask_from_intervals
from atacdenoise.model.dataset import chrom_arrays, open_dataset, write_dataset
from atacdenoise.model.network import (
    FORMAT,
    DenoiseResNet,
    build_model,
    depth_scale,
    load_model,
    save_model,
    transform_input,
)
from atacdenoise.model.train import ranking_metrics, train

TINY = dict(filters=4, kernel_size=3, dilation=2, reg_blocks=2, cls_blocks=1, convs_per_block=2)


def test_reference_preset_parameter_count_and_receptive_fields():
    model = build_model({"preset": "atacworks"})
    # 2 x (first block: 1->15 conv + two 15->15 convs + 1x1 skip projection) + 4 + 1 further blocks of 3 convs,
    # two 1x1 output convs; the reference reports 219,706 (256 fewer; see the report)
    per_conv = 15 * 15 * 51 + 15
    first_block = (15 * 51 + 15) + 2 * per_conv + (15 + 15)
    expected = (first_block + 4 * 3 * per_conv + 16) + (first_block + 1 * 3 * per_conv + 16)
    assert model.n_parameters == expected == 219_962
    assert model.track_receptive_field == 6_001  # 1 + 15 convs x 50 taps x dilation 8
    assert model.receptive_field == 8_401  # + 6 convs of the classification branch


def test_light_preset_is_small_and_sees_two_kb():
    model = build_model({"preset": "light"})
    assert model.n_parameters == 9_866
    assert (model.track_receptive_field, model.receptive_field) == (1_921, 2_881)


def test_cls_sees_features_widens_the_classifier_input_only():
    plain = build_model({"preset": "light"})
    wide = build_model({"preset": "light", "cls_sees_features": True})
    # the first classification conv and its skip projection take 8 more input channels
    assert wide.n_parameters - plain.n_parameters == 8 * 8 * 21 + 8 * 8
    assert wide.receptive_field == plain.receptive_field
    track, logits = wide(torch.rand(2, 333))
    assert track.shape == logits.shape == (2, 333)


@pytest.mark.parametrize("length", [1, 50, 1001])
def test_output_length_equals_input_length_and_track_is_nonnegative(length):
    torch.manual_seed(0)
    model = DenoiseResNet(**TINY)
    with torch.no_grad():
        for p in model.reg_out.parameters():  # push the regression output negative: the ReLU must clip it
            p.fill_(-1.0)
        track, logits = model(torch.rand(3, length) * 5)
    assert track.shape == logits.shape == (3, length)
    assert track.dtype == logits.dtype == torch.float32
    assert (track >= 0).all()
    assert (logits < 0).any() or (logits > 0).any()


def _changed_offsets(model: DenoiseResNet, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets from the centre of the outputs that change when the centre input base changes."""
    torch.manual_seed(1)
    x = torch.rand(1, length, dtype=torch.float64) + 1.0
    y = x.clone()
    y[0, length // 2] += 10.0
    model = model.double()
    with torch.no_grad():
        (t0, l0), (t1, l1) = model(x), model(y)
    centre = length // 2
    return np.flatnonzero((t0 != t1)[0].numpy()) - centre, np.flatnonzero((l0 != l1)[0].numpy()) - centre


def test_receptive_field_is_the_span_of_outputs_a_base_changes():
    torch.manual_seed(0)
    model = DenoiseResNet(**{**TINY, "filters": 6})
    assert (model.track_receptive_field, model.receptive_field) == (1 + 2 * 2 * 2 * 2, 1 + 3 * 2 * 2 * 2)
    track, logits = _changed_offsets(model, 101)
    assert track.min() == -(model.track_receptive_field // 2) and track.max() == model.track_receptive_field // 2
    assert logits.min() == -(model.receptive_field // 2) and logits.max() == model.receptive_field // 2


def test_reference_receptive_field_by_perturbation():
    # positive weights, zero biases and a zero input: every path is open and the response to one base is exactly
    # non-zero where it reaches (random weights lose the outermost paths' 1e-30 share to rounding)
    model = build_model({"preset": "atacworks"}).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.fill_(0.02 if name.endswith("weight") else 0.0)
        x = torch.zeros(1, 9_001, dtype=torch.float64)
        x[0, 4_500] = 1.0
        track_out, logits_out = model(x)
    track, logits = np.flatnonzero(track_out[0].numpy()) - 4_500, np.flatnonzero(logits_out[0].numpy()) - 4_500
    assert (track.min(), track.max()) == (-3_000, 3_000)  # 6,001 bp
    assert (logits.min(), logits.max()) == (-4_200, 4_200)  # 8,401 bp
    assert track.size == 751 and (track % 8 == 0).all()  # dilation 8: a single base reaches every 8th output
    assert (track.min(), track.max()) == (-3_000, 3_000)
    assert (logits.min(), logits.max()) == (-4_200, 4_200)


def test_bad_hyperparameters_are_input_errors():
    with pytest.raises(InputError, match="odd"):
        build_model({"kernel_size": 50})
    with pytest.raises(InputError, match="preset"):
        build_model({"preset": "huge"})
    with pytest.raises(InputError, match="unknown"):
        build_model({"n_filters": 3})
    with pytest.raises(InputError, match="filters"):
        build_model({"filters": 0})


def test_transform_input_identity_and_log1p():
    x = np.array([0.0, 1.0, 9.0], dtype=np.float32)
    assert transform_input(x, {"kind": "none"}) is x
    assert np.allclose(transform_input(x, {"kind": "log1p"}), np.log1p(x))
    assert torch.allclose(transform_input(torch.from_numpy(x), {"kind": "log1p"}), torch.log1p(torch.from_numpy(x)))
    with pytest.raises(InputError):
        transform_input(x, {"kind": "sqrt"})


def test_save_and_load_model_round_trip(tmp_path: Path):
    torch.manual_seed(0)
    model = DenoiseResNet(**TINY, cls_sees_features=True)
    pre = {"smooth_bp": 200, "shift_plus": 4, "shift_minus": -5, "min_mapq": 30, "keep_duplicates": False, "cpm": False}
    save_model(
        tmp_path / "model.pt",
        model,
        preprocessing=pre,
        window={"interval": 1000, "pad": 100},
        input_transform={"kind": "none"},
        threshold=0.4,
        extra={"epoch": 3, "val_metrics": {"val_auprc": 0.5}},
    )
    loaded, meta = load_model(tmp_path / "model.pt")
    assert meta["format"] == FORMAT and meta["hparams"] == model.hparams
    assert meta["preprocessing"] == pre and meta["window"] == {"interval": 1000, "pad": 100}
    assert meta["threshold"] == 0.4 and meta["epoch"] == 3 and meta["val_metrics"] == {"val_auprc": 0.5}
    assert "state_dict" not in meta and not loaded.training
    x = torch.rand(2, 77)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x)):
            assert torch.equal(a, b)
    assert not list(tmp_path.glob(".*tmp*"))


def test_load_model_rejects_missing_corrupt_and_foreign_files(tmp_path: Path):
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match="not a readable"):
        load_model(tmp_path / "bad.pt")
    torch.save({"model_state": {}}, tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="not an atacdenoise model"):
        load_model(tmp_path / "foreign.pt")


def test_model_info_reports_parameters_and_receptive_fields(capsys):
    assert cli.main(["model-info", "-q", "--settings", '{"preset": "light", "dilation": 8}']) == 0
    rows = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert (
        rows["parameters"] == "9866"
        and rows["receptive_field_track_bp"] == "961"
        and rows["receptive_field_peaks_bp"] == "1441"
    )


# --------------------------------------------------------------------------- it learns
def _smooth(cuts: np.ndarray, half: int = 100) -> np.ndarray:
    """Each cut widened to 2 * half + 1 bases (the coverage stage's box), via a cumulative sum."""
    n = cuts.size
    cs = np.concatenate(([0], np.cumsum(cuts)))
    i = np.arange(n)
    return (cs[np.clip(i + half + 1, 0, n)] - cs[np.clip(i - half, 0, n)]).astype(np.float32)


def planted_peaks(rng: np.random.Generator, n: int, thin: float = 1 / 16):
    """Make a clean track with planted peaks and its thinned (~1/16 depth) noisy copy, both smoothed to 201 bp.

    Returns (noisy float32[n], clean float32[n], (peak starts, peak ends)).
    """
    k = n // 4000
    starts = np.sort(rng.choice(np.arange(0, n - 1000, 500), size=k, replace=False)) + rng.integers(0, 400, k)
    ends = np.minimum(starts + rng.integers(200, 600, k), n)
    in_peak = mask_from_intervals(starts, ends, n)
    cuts = rng.poisson(np.where(in_peak, 0.25, 0.01))
    return _smooth(rng.binomial(cuts, thin)), _smooth(cuts), (starts, ends)


def test_model_learns_to_beat_the_noisy_input_on_planted_peaks(tmp_path: Path):
    rng = np.random.default_rng(1)
    n = 200_000
    data = {c: planted_peaks(rng, n) for c in ("chr1", "chr2")}
    write_dataset(
        tmp_path / "ds",
        {"sample": "syn", "depth": "16x", "rep": "1", "preprocessing": {"smooth_bp": 200}},
        ((c, chrom_arrays(*data[c])) for c in data),
    )
    settings = dict(
        filters=8,
        kernel_size=9,
        dilation=8,
        reg_blocks=2,
        cls_blocks=1,
        convs_per_block=2,
        interval=2000,
        pad=500,
        windows_per_epoch=320,
        batch_size=8,
        epochs=8,
        lr=2e-3,
        seed=1,
    )  # 320 Adam steps
    torch.set_num_threads(1)
    train(
        [open_dataset(tmp_path / "ds")],
        [Region("chr2", 0, 100_000)],
        [Region("chr2", 100_000, n)],
        settings,
        tmp_path / "m",
    )
    model, meta = load_model(tmp_path / "m" / "model.pt")
    noisy, clean, (starts, ends) = data["chr2"]
    held = slice(100_000, n)
    # the input at the model's reference depth, as inference does (total over the whole "genome")
    scale = depth_scale(meta["input_transform"], float(sum(d[0].sum(dtype=np.float64) for d in data.values())))
    with torch.no_grad():
        x = transform_input(torch.from_numpy(noisy[held])[None], meta["input_transform"], scale)
        track, logits = (t[0].numpy() for t in model(x))
    labels = mask_from_intervals(starts, ends, n).astype(np.uint8)
    r_noisy, r_model = np.corrcoef(noisy[held], clean[held])[0, 1], np.corrcoef(track, clean[held])[0, 1]
    ap_noisy, ap_model = ranking_metrics(noisy[held], labels[held])[1], ranking_metrics(logits, labels[held])[1]
    assert r_model > r_noisy + 0.03, (r_noisy, r_model)
    assert ap_model > ap_noisy + 0.03, (ap_noisy, ap_model)


def test_input_skip_starts_the_track_from_the_input():
    """With input_skip and a zeroed regression output the track is ReLU(input): a correction of the input."""
    model = build_model({"preset": "light", "input_skip": True})
    assert model.hparams["input_skip"] is True and build_model({"preset": "light"}).hparams["input_skip"] is False
    with torch.no_grad():
        model.reg_out.weight.zero_()
        model.reg_out.bias.zero_()
        x = torch.rand(2, 3000) * 10
        track, _ = model(x)
    assert torch.equal(track, x)
