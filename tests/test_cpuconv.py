"""The native CPU convolution: the same outputs as PyTorch's Conv1d and as the whole model, on shapes the presets use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atacdenoise import cpuconv
from atacdenoise.model import build_model

kernel = cpuconv.load_kernel()
needs_kernel = pytest.mark.skipif(kernel is None, reason="no C compiler: the native convolution is not built here")


@needs_kernel
@pytest.mark.parametrize("cin,cout,k,dil,length,batch,threads", [
    (15, 15, 51, 8, 6_000, 2, 2),    # the reference shape
    (1, 15, 51, 8, 4_321, 1, 2),     # first conv of a branch (one input channel), length not a multiple of 24
    (8, 8, 21, 16, 5_000, 3, 1),     # the light preset (8 filters: padded to 10 output channels)
    (15, 7, 3, 1, 50, 1, 2),         # short input: mostly the scalar tail
    (2, 3, 5, 2, 23, 2, 2),          # shorter than one vector block
])  # fmt: skip
def test_equals_torch_conv1d(cin, cout, k, dil, length, batch, threads):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(cin, cout, k, dilation=dil, padding=(k - 1) * dil // 2)
    x = torch.randn(batch, cin, length)
    native = cpuconv.NativeConv1d(conv, kernel, threads, cpuconv.ThreadPoolExecutor(threads) if threads > 1 else None)
    with torch.inference_mode():
        want = conv(x)
        got = native(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_eligible_only_same_padded_odd_kernels():
    assert cpuconv.eligible(torch.nn.Conv1d(4, 4, 51, dilation=8, padding=200))
    assert cpuconv.eligible(torch.nn.Conv1d(4, 4, 3, padding="same"))
    assert not cpuconv.eligible(torch.nn.Conv1d(4, 4, 1))  # 1x1: PyTorch is as good
    assert not cpuconv.eligible(torch.nn.Conv1d(4, 4, 3, padding=0))
    assert not cpuconv.eligible(torch.nn.Conv1d(4, 4, 3, padding=1, stride=2))
    assert not cpuconv.eligible(torch.nn.Conv1d(4, 4, 4, padding="same"))
    assert not cpuconv.eligible(torch.nn.Conv1d(4, 4, 3, padding=1, padding_mode="reflect"))


@needs_kernel
@pytest.mark.parametrize("preset", ["light", "standard"])
def test_whole_model_outputs(preset):
    torch.manual_seed(1)
    model = build_model({"preset": preset}).eval()
    fast, n = cpuconv.with_native_convs(model, threads=2)
    assert n == sum(1 for m in model.modules() if cpuconv.eligible(m)) and n > 0
    x = torch.rand(2, 3_000) * 4
    with torch.inference_mode():
        (t0, l0), (t1, l1) = model(x), fast(x)
    torch.testing.assert_close(t1, t0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.sigmoid(l1), torch.sigmoid(l0), rtol=1e-4, atol=1e-6)
    assert any(isinstance(m, torch.nn.Conv1d) and m.kernel_size[0] > 1 for m in model.modules())  # the original is untouched


def test_turned_off_or_without_compiler(monkeypatch, tmp_path):
    monkeypatch.setattr(cpuconv, "_tried", False)
    monkeypatch.setattr(cpuconv, "_lib", None)
    monkeypatch.setenv("ATACDENOISE_NATIVE_CONV", "0")
    model = build_model({"preset": "light"})
    assert cpuconv.with_native_convs(model) == (model, 0)
    monkeypatch.setattr(cpuconv, "_tried", False)
    monkeypatch.setenv("ATACDENOISE_NATIVE_CONV", "1")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("ATACDENOISE_CACHE", str(tmp_path / "cache"))
    assert cpuconv.load_kernel() is None  # a failed build falls back, with a log line
    monkeypatch.setattr(cpuconv, "_tried", False)
    monkeypatch.setattr(cpuconv, "_lib", kernel)
