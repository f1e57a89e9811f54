"""benchmarks/train_bytes.py: a training step's bytes outside the Triton kernels, counted on the CPU (issue 23)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_quick_count_sees_every_conv_and_both_weight_gradient_forms(tmp_path):
    out = tmp_path / "train-bytes.json"
    cmd = [sys.executable, str(REPO / "benchmarks/train_bytes.py"), "--quick", "--json", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    act = data["activation_bytes"]
    for form in ("taps", "block"):
        count = data["counts"][form]
        assert count["convs"] == 21  # the reference shape: 7 blocks of 3 convolutions
        # ReLU's gradient: one pass a conv that reads the gradient and the output and writes one activation
        relu = [r for r in count["ops"] if r["op"] == "threshold_backward" and r["shapes"].count(", 16]") == 3]
        assert sum(r["calls"] for r in relu) == 21 and sum(r["bytes"] for r in relu) == 21 * 3 * act
        kernels: dict[str, int] = {}
        for r in count["kernels"]:
            kernels[r["kernel"]] = kernels.get(r["kernel"], 0) + r["calls"]
        wgrad = "_wgrad_kernel" if form == "taps" else "_block_wgrad_kernel"
        # every conv forward, its input gradient (not the first conv's: its input is the data), its weight gradient
        assert kernels == {"_block_kernel": 21 + 20, wgrad: 21}
        assert all(r["phase"] in ("forward", "backward", "optimizer") for r in count["ops"])
        assert data["totals_bytes"][form] > 100 * act  # the losses, heads, casts, gradient sums, Adam
        kernel_bytes = sum(r["bytes"] for r in count["kernels"])
        assert data["least_traffic_bytes"][form] == data["totals_bytes"][form] + kernel_bytes
    assert "| **all operators outside the kernels**" in res.stdout
