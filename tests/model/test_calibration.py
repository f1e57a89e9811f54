"""Calibration of the peak probability (atacdenoise.model.calibration) and where it is applied.

Temperature fit on synthetic logits with a known temperature; rankings unchanged; model.pt with and
without a calibration entry at inference; the calibration fitted at the end of training and the
threshold chosen on the calibrated probabilities; ``model-info --model``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from sklearn.metrics import average_precision_score, roc_auc_score

from atacdenoise import cli
from atacdenoise.errors import InputError
from atacdenoise.evaluate.metrics import expected_calibration_error
from atacdenoise.io.genome import Region
from atacdenoise.model.calibration import (
    calibrate_temperature,
    fit_temperature,
    nll,
    peak_probability,
    temperature_of,
)
from atacdenoise.model.dataset import open_dataset
from atacdenoise.model.infer import TileRunner, denoise_array
from atacdenoise.model.network import load_model
from atacdenoise.model.train import resolve_settings, train
from builders import TINY_TRAINING, make_training_dataset, write_model_file

VAL, HOLDOUT = [Region("chr2", 0, 6000)], [Region("chr2", 6000, 12_000)]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _synthetic(t0: float, n: int = 200_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits z and labels drawn from sigmoid(z / t0): the temperature that calibrates z is t0."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-2.0, 3.0, n)  # mostly negatives, as peaks are
    y = rng.random(n) < 1.0 / (1.0 + np.exp(-z / t0))
    return z.astype(np.float32), y


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@pytest.mark.parametrize("t0", [0.5, 1.0, 2.5])
def test_fitted_temperature_recovers_the_generating_one_and_reduces_ece(t0):
    z, y = _synthetic(t0)
    t = fit_temperature(z, y)
    assert t == pytest.approx(t0, rel=0.05)
    # the minimum of the NLL, found independently by a bounded scalar search over log T
    ref = minimize_scalar(lambda u: nll(z, y, float(np.exp(u))), bounds=(np.log(0.05), np.log(20)), method="bounded")
    assert t == pytest.approx(float(np.exp(ref.x)), rel=1e-3)
    assert nll(z, y, t) <= nll(z, y, 1.0) + 1e-12
    cal = calibrate_temperature(z, y)
    assert cal["method"] == "temperature" and cal["T"] == pytest.approx(t)
    assert cal["val_ece_after"] < 0.01  # 200 k bases: what is left is sampling noise
    if t0 != 1.0:
        assert cal["val_ece_before"] > 3 * cal["val_ece_after"]
    assert cal["val_ece_after"] == pytest.approx(expected_calibration_error(_sigmoid(z.astype(np.float64) / t), y))
    assert cal["n_bases"] == z.size and cal["n_positive"] == int(y.sum())


def test_temperature_scaling_leaves_auroc_and_auprc_unchanged():
    z, y = _synthetic(2.5, n=50_000, seed=3)
    t = fit_temperature(z, y)
    z64 = z.astype(np.float64)
    raw = _sigmoid(z64)
    cal = _sigmoid(z64 / t)
    assert np.array_equal(np.argsort(raw, kind="stable"), np.argsort(cal, kind="stable"))  # same order
    assert average_precision_score(y, cal) == pytest.approx(average_precision_score(y, raw), abs=1e-12)
    assert roc_auc_score(y, cal) == pytest.approx(roc_auc_score(y, raw), abs=1e-12)
    # the float32 probabilities inference writes: equal up to ties made by rounding
    cal32 = peak_probability(torch.from_numpy(z), t).numpy()
    assert average_precision_score(y, cal32) == pytest.approx(average_precision_score(y, raw), abs=1e-5)


def test_temperature_at_the_bounds_and_one_class_is_an_error():
    z = np.linspace(-5, 5, 1000)
    assert fit_temperature(z, z > 0) == 0.05  # separable: as sharp as allowed
    assert fit_temperature(z, np.arange(1000) % 2 == 0) == 20.0  # labels unrelated to z: as flat as allowed
    with pytest.raises(ValueError, match="both classes"):
        fit_temperature(z, np.zeros(1000, bool))


def test_temperature_of_a_model_file_entry():
    assert temperature_of({}) == 1.0 and temperature_of({"calibration": None}) == 1.0
    assert temperature_of({"calibration": {"method": "temperature", "T": 1.7}}) == 1.7
    for bad in ({"method": "temperature", "T": 0.0}, {"method": "temperature", "T": float("nan")}, {"method": "x"}):
        with pytest.raises(InputError):
            temperature_of({"calibration": bad})


# --------------------------------------------------------------------------- inference


def _runner_probs(model, windows: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """(TileRunner's probabilities, float32[4000], the network's peak logits of the same central bases, [4, 1000])."""
    runner = TileRunner(model, torch.device("cpu"), 1000, 100, batch_size=4, native_conv=False)
    _, prob = runner.forward(windows, 4 * 1000)
    with torch.inference_mode():
        _, logits = model(windows)
    return prob, logits[:, 100:1100].float()


def test_a_calibrated_model_file_applies_sigmoid_of_logit_over_t_and_an_old_one_is_unchanged(tmp_path):
    torch.manual_seed(0)
    old = write_model_file(tmp_path / "old.pt")
    torch.manual_seed(0)  # the same weights
    new = write_model_file(tmp_path / "new.pt", calibration={"method": "temperature", "T": 2.5})
    m_old, meta_old = load_model(old)
    m_new, _ = load_model(new)
    assert "calibration" not in meta_old and m_old.peak_temperature == 1.0 and m_new.peak_temperature == 2.5
    with torch.no_grad():  # a peak head with logits well away from 0, so T shows
        for m in (m_old, m_new):
            m.cls_out.weight.mul_(5.0)
    windows = torch.from_numpy(np.random.default_rng(1).gamma(1.0, 3.0, (4, 1200)).astype(np.float32))
    p_old, z = _runner_probs(m_old, windows)
    p_new, z_new = _runner_probs(m_new, windows)
    assert torch.equal(z, z_new)  # same weights
    assert np.array_equal(p_old, torch.sigmoid(z).reshape(-1).numpy())  # bit for bit as before
    assert np.allclose(p_new, torch.sigmoid(z / 2.5).reshape(-1).numpy(), rtol=0, atol=1e-7)
    assert np.abs(p_new - p_old).max() > 0.05
    # the notebook route (load_model + denoise_array) applies it too, the native CPU kernels included
    x = np.random.default_rng(2).gamma(1.0, 3.0, 5500).astype(np.float32)
    _, q_old = denoise_array(m_old, x, 1000, 100, device="cpu")
    _, q_new = denoise_array(m_new, x, 1000, 100, device="cpu")
    logit = np.log(q_old.astype(np.float64)) - np.log1p(-q_old.astype(np.float64))
    ok = (q_old > 1e-5) & (q_old < 1 - 1e-5)  # where the logit can be read back from the probability
    assert ok.mean() > 0.5
    assert np.allclose(q_new[ok], _sigmoid(logit[ok] / 2.5), atol=1e-5)


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_training_dataset(tmp_path_factory.mktemp("data") / "ds")


def test_training_stores_the_calibration_and_chooses_the_threshold_on_calibrated_probabilities(ds, tmp_path, capsys):
    train([open_dataset(ds)], VAL, HOLDOUT, {**TINY_TRAINING, "epochs": 2}, tmp_path / "m")
    _, meta = load_model(tmp_path / "m" / "model.pt")
    cal = meta["calibration"]
    assert cal["method"] == "temperature" and 0.05 <= cal["T"] <= 20
    assert cal["val_ece_after"] <= cal["val_ece_before"] + 1e-9
    assert cal["val_nll_after"] <= cal["val_nll_before"] + 1e-9
    # the stored cut is the max-F1 cut of the calibrated probabilities: the raw cut mapped through sigmoid(logit / T)
    raw_cut = meta["val_metrics"]["val_best_threshold"]
    assert meta["threshold"] == pytest.approx(cal["val_best_threshold"])
    mapped = _sigmoid((np.log(raw_cut) - np.log1p(-raw_cut)) / cal["T"])
    assert meta["threshold"] == pytest.approx(float(mapped), abs=1e-4)
    assert cal["val_best_f1"] == pytest.approx(meta["val_metrics"]["val_best_f1"], abs=1e-6)  # a monotone map
    assert cal["val_auprc"] == pytest.approx(meta["val_metrics"]["val_auprc"], abs=1e-5)

    assert cli.main(["model-info", "-q", "--model", str(tmp_path / "m" / "model.pt")]) == 0
    rows = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert rows["calibration"] == "temperature"
    assert float(rows["calibration_T"]) == pytest.approx(cal["T"])
    assert float(rows["calibration_val_ece_after"]) == pytest.approx(cal["val_ece_after"])
    assert float(rows["threshold"]) == pytest.approx(meta["threshold"])

    train([open_dataset(ds)], VAL, HOLDOUT, {**TINY_TRAINING, "epochs": 2, "calibrate": False}, tmp_path / "off")
    _, off = load_model(tmp_path / "off" / "model.pt")
    assert "calibration" not in off and off["threshold"] == pytest.approx(off["val_metrics"]["val_best_threshold"])
    assert cli.main(["model-info", "-q", "--model", str(tmp_path / "off" / "model.pt")]) == 0
    assert "calibration\tnone" in capsys.readouterr().out


def test_calibrate_setting_is_checked_and_off_in_the_reference_recipe():
    assert resolve_settings({})[1]["calibrate"] is True
    assert resolve_settings({"preset": "atacworks"})[1]["calibrate"] is False
    with pytest.raises(InputError, match="calibrate"):
        resolve_settings({"calibrate": "yes"})
