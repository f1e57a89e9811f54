"""Depth normalisation (input_transform kind "depth"): one model for inputs of any sequencing depth.

Training scales every noisy track (and its clean track) to one reference total; inference scales each
input by the reference over its own total. So a track and the same track at twice the depth must give
the same denoised output, and the training windows must carry the factors.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import bigwig_total, read_bigwig, write_bigwig
from atacdenoise.model.dataset import open_dataset, read_window, write_dataset
from atacdenoise.model.network import DenoiseResNet, depth_scale, save_model, transform_input
from atacdenoise.model.train import normalise_depths

SIZES = {"chr1": 30_000, "chr2": 12_345}
TINY = dict(filters=3, kernel_size=5, dilation=2, reg_blocks=2, cls_blocks=1, convs_per_block=2)
PRE = {"smooth_bp": 200, "shift_plus": 4, "shift_minus": -5, "min_mapq": 30, "keep_duplicates": False, "cpm": False}


def track(length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.convolve(rng.poisson(0.02, length), np.ones(201), mode="same").astype(np.float32)


def test_depth_scale_is_reference_over_total_and_identity_for_other_kinds():
    assert depth_scale({"kind": "depth", "reference": 1000.0}, 250.0) == 4.0
    assert depth_scale({"kind": "none"}, 250.0) == 1.0 and depth_scale(None, 0.0) == 1.0
    x = torch.ones(2, 3)
    assert torch.equal(transform_input(x, {"kind": "depth", "reference": 10.0}, 4.0), 4 * x)
    with pytest.raises(InputError, match="empty"):
        depth_scale({"kind": "depth", "reference": 1000.0}, 0.0, "x.bw")
    with pytest.raises(InputError, match="reference"):
        depth_scale({"kind": "depth"}, 10.0, "model.pt")


def test_bigwig_total_is_the_sum_of_the_values(tmp_path):
    xs = {c: track(n, i) for i, (c, n) in enumerate(SIZES.items())}
    write_bigwig(tmp_path / "t.bw", SIZES, xs)
    assert bigwig_total(tmp_path / "t.bw") == pytest.approx(
        sum(float(x.sum(dtype=np.float64)) for x in xs.values()), rel=1e-9
    )
    assert bigwig_total(tmp_path / "t.bw", {"chr2": SIZES["chr2"]}) == pytest.approx(
        float(xs["chr2"].sum(dtype=np.float64)), rel=1e-9
    )


def _dataset(path: Path, noisy_factor: float) -> None:
    def chroms():
        for i, (c, n) in enumerate(SIZES.items()):
            clean = track(n, 10 + i) * 20
            yield (
                c,
                {
                    "noisy": track(n, 20 + i) * noisy_factor,
                    "clean": clean,
                    "labels": (clean > np.quantile(clean, 0.9)).astype(np.uint8),
                    "mask": np.ones(n, np.uint8),
                },
            )

    meta = {
        "format": "atacdenoise-dataset/1",
        "sample": "S",
        "depth": str(noisy_factor),
        "rep": "1",
        "preprocessing": PRE,
        "clean": "clean.bw",
        "chroms": dict(SIZES),
    }
    write_dataset(path, meta, chroms())


def test_training_windows_of_every_depth_reach_the_reference(tmp_path):
    _dataset(tmp_path / "a", 1.0)
    _dataset(tmp_path / "b", 3.0)
    pairs = [open_dataset(tmp_path / "a"), open_dataset(tmp_path / "b")]
    stored = normalise_depths(pairs, {"kind": "depth"})
    assert stored["kind"] == "depth" and stored["reference"] == pytest.approx(pairs[0].total("clean"))
    wa = read_window(pairs[0], "chr1", 1000, 2000, 1000, 100, False)
    wb = read_window(pairs[1], "chr1", 1000, 2000, 1000, 100, False)
    np.testing.assert_allclose(wa["noisy"], wb["noisy"], rtol=1e-5)  # 3x deeper input, same network input
    np.testing.assert_allclose(
        wa["noisy"].sum() / wa["clean"].sum(),
        pairs[0].scale["noisy"]
        * pairs[0].arrays("chr1")["noisy"][900:2100].sum()
        / pairs[0].arrays("chr1")["clean"][900:2100].sum(),
        rtol=1e-5,
    )
    assert pairs[0].scale["clean"] == pytest.approx(1.0)
    # other kinds leave the windows as stored
    assert normalise_depths([open_dataset(tmp_path / "a")], {"kind": "none"}) == {"kind": "none"}


def test_inference_output_does_not_depend_on_the_input_depth(tmp_path):
    xs = {c: track(n, 30 + i) for i, (c, n) in enumerate(SIZES.items())}
    write_bigwig(tmp_path / "x1.bw", SIZES, xs)
    write_bigwig(tmp_path / "x2.bw", SIZES, {c: 2 * x for c, x in xs.items()})
    sizes = tmp_path / "g.sizes"
    sizes.write_text("".join(f"{c}\t{n}\n" for c, n in SIZES.items()))
    torch.manual_seed(1)
    model = DenoiseResNet(**TINY).eval()
    reference = 5.0 * bigwig_total(tmp_path / "x1.bw")
    save_model(
        tmp_path / "m.pt",
        model,
        preprocessing=PRE,
        window={"interval": 5000, "pad": 100},
        input_transform={"kind": "depth", "reference": reference},
        threshold=0.5,
    )
    outs = []
    for name in ("x1", "x2"):
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "atacdenoise.cli",
                "infer",
                "--model",
                tmp_path / "m.pt",
                "--input",
                tmp_path / f"{name}.bw",
                "--sizes",
                sizes,
                "--chroms",
                "chr2",
                "--device",
                "cpu",
                "--threads",
                "1",
                "--out-prefix",
                tmp_path / f"out_{name}",
                "--precision",
                "float32",  # compared with the model's values to 1e-4
            ],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr
        assert "depth normalisation" in res.stderr
        outs.append(read_bigwig(tmp_path / f"out_{name}.track.bw", "chr2"))
    assert outs[0].max() > 0
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-4)
    # and it equals the model on the input scaled to the reference total (computed over the whole genome, not --chroms)
    with torch.inference_mode():
        x = torch.from_numpy(np.pad(xs["chr2"], 100) * np.float32(5.0))[None]
        ref = model(x)[0][0, 100:-100].numpy()
    np.testing.assert_allclose(outs[0], ref, rtol=1e-4, atol=1e-3)
