"""The native CPU convolutions (direct and FFT): the same outputs as PyTorch's Conv1d and as the whole model."""

from __future__ import annotations

import pytest
import torch

from atacdenoise import native
from atacdenoise.errors import InputError
from atacdenoise.model import cpuconv
from atacdenoise.model.network import build_model

kernel = cpuconv.load_kernel()
lib = cpuconv.load_library()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Skip without a C compiler; fail (with the compiler's lines) when there is one and the kernels did not build."""
    if native.compiler() is None:
        pytest.skip("no C compiler on PATH: the native convolution is not built here")
    if native.off("ATACDENOISE_NATIVE_CONV"):
        pytest.skip("the native convolution is turned off (ATACDENOISE_NATIVE_CONV)")
    if lib is None:
        errors = []
        for name, (source, defines) in cpuconv.NATIVE_SOURCES.items():
            try:
                native.compile_library(native.compiler(), source, defines, tmp_path_factory.mktemp(name) / "lib.so")
            except native.BuildError as exc:
                errors.append(str(exc))
        pytest.fail("a C compiler is here but the native convolution did not build: " + ("\n".join(errors) or "?"))


needs_kernel = pytest.mark.usefixtures("built")  # a kernel that does not build is a failure, not a skip


@needs_kernel
@pytest.mark.parametrize(
    "cin,cout,k,dil,length,batch,threads",
    [
        (15, 15, 51, 8, 6_000, 2, 2),  # the reference shape
        (1, 15, 51, 8, 4_321, 1, 2),  # first conv of a branch (one input channel), length not a multiple of 24
        (8, 8, 21, 16, 5_000, 3, 1),  # the light preset (8 filters: padded to 10 output channels)
        (15, 7, 3, 1, 50, 1, 2),  # short input: mostly the scalar tail
        (2, 3, 5, 2, 23, 2, 2),  # shorter than one vector block
    ],
)
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
@pytest.mark.parametrize("algo", ["auto", "fft", "direct"])
@pytest.mark.parametrize("preset", ["light", "standard"])
def test_whole_model_outputs(preset, algo, monkeypatch):
    monkeypatch.setenv(cpuconv.ALGO_ENV, algo)
    torch.manual_seed(1)
    model = build_model({"preset": preset}).eval()
    fast, n = cpuconv.with_native_convs(model, threads=2)
    assert n == sum(1 for m in model.modules() if cpuconv.eligible(m)) and n > 0
    kinds = {type(m).__name__ for m in fast.modules()}
    assert "NativeResBlock" in kinds and "PointwiseConv1d" in kinds and ("FFTConv1d" in kinds) == (algo != "direct")
    x = torch.rand(2, 13_000) * 4
    with torch.inference_mode():
        (t0, l0), (t1, l1) = model(x), fast(x)
        h0, h1 = model.reg_blocks(x.unsqueeze(1)), fast.reg_blocks(x.unsqueeze(1))  # hidden features: never all zero
    assert h0.abs().max() > 0
    torch.testing.assert_close(h1, h0, rtol=1e-4, atol=1e-5 * float(h0.abs().max()))
    torch.testing.assert_close(t1, t0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.sigmoid(l1), torch.sigmoid(l0), rtol=1e-4, atol=1e-6)
    assert any(
        isinstance(m, torch.nn.Conv1d) and m.kernel_size[0] > 1 for m in model.modules()
    )  # the original is untouched


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
    monkeypatch.setattr(cpuconv, "_lib", lib)


@needs_kernel
@pytest.mark.parametrize(
    "cin,cout,k,dil,length,batch,threads",
    [
        (15, 15, 51, 8, 60_000, 4, 2),  # the reference shape on a default tile: 17 blocks per tile (the last alone)
        (15, 15, 51, 8, 3_000, 3, 2),  # shorter than one block: one lone block per tile
        (15, 15, 51, 8, 3_696, 1, 1),  # exactly one block's output
        (1, 15, 51, 8, 4_321, 1, 2),  # one input channel
        (8, 8, 21, 16, 5_000, 3, 2),  # the light preset
        (16, 16, 3, 1, 50, 2, 2),  # all 16 lanes, a tiny span (1,024-point blocks), a short input
        (15, 7, 5, 2, 2_049, 2, 1),  # fewer outputs than inputs
        (15, 15, 51, 8, 0, 2, 2),  # empty
    ],
)
@pytest.mark.parametrize("fused", [False, True])
def test_fft_equals_torch_conv1d(cin, cout, k, dil, length, batch, threads, fused):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(cin, cout, k, dilation=dil, padding=(k - 1) * dil // 2)
    assert cpuconv.fft_eligible(conv)
    x = torch.randn(batch, cin, length)
    res = torch.randn(batch, cout, length) if fused else None
    fft = cpuconv.FFTConv1d(conv, lib, threads, cpuconv.ThreadPoolExecutor(threads) if threads > 1 else None)
    with torch.inference_mode():
        ref = conv(x) if length else torch.zeros(batch, cout, 0)  # PyTorch refuses an input shorter than the kernel
        want = torch.relu(ref + res) if fused else ref
        got = fft(x, residual=res, relu=fused)
        again = fft(x, residual=res, relu=fused)
    assert got.shape == want.shape and got.dtype == torch.float32
    scale = float(want.abs().max()) if want.numel() else 1.0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-6 * scale)
    assert torch.equal(got, again)  # the same input gives the same bits (the blocks do not depend on the threads)


@needs_kernel
def test_fft_same_bits_for_any_thread_count_and_batch():
    torch.manual_seed(3)
    conv = torch.nn.Conv1d(15, 15, 51, dilation=8, padding=200)
    x = torch.randn(3, 15, 20_000)  # 6 blocks a tile
    outs = []
    for threads in (1, 2, 3):
        fft = cpuconv.FFTConv1d(conv, lib, threads, cpuconv.ThreadPoolExecutor(threads) if threads > 1 else None)
        with torch.inference_mode():
            outs.append(fft(x))
            alone = [fft(x[i : i + 1]) for i in range(3)]
        assert torch.equal(torch.cat(alone), outs[0])  # a tile's outputs do not depend on the batch it is in
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    x = torch.randn(3, 15, 18_000)  # 5 blocks a tile: the last one of each is transformed alone
    fft = cpuconv.FFTConv1d(conv, lib, 2, cpuconv.ThreadPoolExecutor(2))
    with torch.inference_mode():
        assert torch.equal(torch.cat([fft(x[i : i + 1]) for i in range(3)]), fft(x))


@needs_kernel
def test_direct_kernel_fuses_residual_and_relu():
    torch.manual_seed(2)
    conv = torch.nn.Conv1d(8, 7, 5, dilation=3, padding=6)
    x, res = torch.randn(2, 8, 1_001), torch.randn(2, 7, 1_001)
    native = cpuconv.NativeConv1d(conv, kernel, 2, cpuconv.ThreadPoolExecutor(2))
    with torch.inference_mode():
        torch.testing.assert_close(native(x, residual=res, relu=True), torch.relu(conv(x) + res), rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="residual"):
            native(x, residual=res[:, :3])


def test_pointwise_conv_equals_torch():
    torch.manual_seed(4)
    for cin, cout in ((1, 15), (15, 1), (15, 15)):
        conv = torch.nn.Conv1d(cin, cout, 1)
        assert cpuconv.pointwise_eligible(conv)
        x = torch.randn(3, cin, 777)
        with torch.inference_mode():
            torch.testing.assert_close(cpuconv.PointwiseConv1d(conv)(x), conv(x), rtol=1e-5, atol=1e-6)
    assert not cpuconv.pointwise_eligible(torch.nn.Conv1d(2, 2, 3, padding=1))
    assert not cpuconv.pointwise_eligible(torch.nn.Conv1d(2, 2, 1, stride=2))


def test_fft_size_and_choice(monkeypatch):
    assert cpuconv.fft_size(400) == 4096 and cpuconv.fft_size(2) == cpuconv.FFT_MIN_N
    assert (
        cpuconv.fft_size(cpuconv.FFT_MAX_N // 2) == cpuconv.FFT_MAX_N
        and cpuconv.fft_size(cpuconv.FFT_MAX_N // 2 + 1) is None
    )
    ref = torch.nn.Conv1d(15, 15, 51, dilation=8, padding=200)
    first = torch.nn.Conv1d(1, 15, 51, dilation=8, padding=200)  # 765 multiply-adds a position: cheaper directly
    wide = torch.nn.Conv1d(32, 32, 51, dilation=8, padding=200)  # more channels than vector lanes
    long_span = torch.nn.Conv1d(4, 4, 3, dilation=5_000, padding=5_000)
    monkeypatch.delenv(cpuconv.ALGO_ENV, raising=False)
    assert [cpuconv.choose(c) for c in (ref, first, wide, long_span)] == ["fft", "direct", "direct", "direct"]
    assert cpuconv.choose(torch.nn.Conv1d(4, 4, 1)) is None
    monkeypatch.setenv(cpuconv.ALGO_ENV, "fft")
    assert [cpuconv.choose(c) for c in (ref, first, wide)] == ["fft", "fft", "direct"]
    monkeypatch.setenv(cpuconv.ALGO_ENV, "direct")
    assert cpuconv.choose(ref) == "direct"
    monkeypatch.setenv(cpuconv.ALGO_ENV, "fast")
    with pytest.raises(InputError, match="ATACDENOISE_CONV_ALGO"):
        cpuconv.choose(ref)
