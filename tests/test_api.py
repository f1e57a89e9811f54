"""The notebook API of ``import atacdenoise``: lazy, and the same numbers as the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import atacdenoise as ad
from atacdenoise.io.bigwig import read_bigwig, write_bigwig
from atacdenoise.model.network import build_model, save_model
from builders import PRE

SIZES = {"chr1": 23_456, "chr2": 7_001}
WINDOW = {"interval": 5_000, "pad": 400}


def test_importing_the_package_loads_neither_torch_nor_pandas():
    code = "import sys, atacdenoise; print('torch' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'denoise'"):
        ad.denoise  # noqa: B018


@pytest.fixture(scope="module")
def model_and_input(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("api")
    torch.manual_seed(0)  # an untrained net; some random draws give an all-zero track (ReLU), which the test refuses
    net = build_model(dict(filters=4, kernel_size=5, dilation=2, reg_blocks=1, cls_blocks=1, convs_per_block=2))
    model = d / "m.pt"
    save_model(model, net, preprocessing=PRE, window=WINDOW, input_transform={"kind": "none"}, threshold=0.5)
    rng = np.random.default_rng(3)
    values = {c: rng.poisson(3, n).astype(np.float32) for c, n in SIZES.items()}
    bw = d / "noisy.bw"
    write_bigwig(bw, SIZES, values)
    Path(f"{bw}.json").write_text(json.dumps(PRE))
    sizes = d / "g.sizes"
    sizes.write_text("".join(f"{c}\t{n}\n" for c, n in SIZES.items()))
    return {"dir": d, "model": model, "bw": bw, "sizes": sizes, "values": values}


def test_denoise_array_equals_denoise_bigwig_base_for_base(model_and_input):
    m = model_and_input
    out = m["dir"] / "out" / "S"
    paths = ad.denoise_bigwig(m["model"], m["bw"], m["sizes"], out, device="cpu", threads=1, precision="float32")
    assert sorted(p.name for p in paths.values()) == ["S.peakprob.bw", "S.peaks.narrowPeak", "S.track.bw"]
    model, meta = ad.load_model(m["model"])
    assert meta["window"] == WINDOW and meta["threshold"] == 0.5
    for chrom, x in m["values"].items():
        track, prob = ad.denoise_array(model, x, WINDOW["interval"], WINDOW["pad"], device="cpu")
        assert track.shape == prob.shape == x.shape
        assert np.all((prob >= 0) & (prob <= 1)) and np.any(track != 0)
        np.testing.assert_allclose(read_bigwig(paths["track"], chrom), track, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(read_bigwig(paths["peakprob"], chrom), prob, rtol=1e-6, atol=1e-7)


def test_read_metrics_gives_the_long_table(tmp_path):
    path = tmp_path / "metrics.tsv"
    rows = [["demo", "HSC", "15000", "1", "model", "pearson", "all", "0.9"]]
    rows.append(["demo", "HSC", "15000", "1", "noisy", "auprc", "all", "NaN"])
    cols = ["model", "sample", "depth", "rep", "method", "metric", "region", "value"]
    pd.DataFrame(rows, columns=cols).to_csv(path, sep="\t", index=False)
    df = ad.read_metrics(path)
    assert list(df.columns) == cols
    assert df["depth"].tolist() == ["15000", "15000"]  # labels stay strings
    assert df["value"].iloc[0] == pytest.approx(0.9) and np.isnan(df["value"].iloc[1])
