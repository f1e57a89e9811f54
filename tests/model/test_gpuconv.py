"""The Triton convolution kernel (model/gpuconv.py) against the model's own PyTorch convolutions.

On the CPU the kernel runs under Triton's interpreter (``TRITON_INTERPRET=1``, set before Triton is imported, so in
a child process): the same kernel source, every tile and mask, executed with NumPy. On a GPU (tests marked ``gpu``)
it is compiled for the card and compared with the float32 model on the reference shape.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from atacdenoise.errors import InputError
from atacdenoise.model import gpuconv
from atacdenoise.model.device import gpu_conv_requested
from atacdenoise.model.network import build_model

ROOT = Path(__file__).resolve().parents[2]

#: the interpreter's check, run in a child process: prints one line per case, "case max|d track| max|d logit| ..."
INTERPRETED = textwrap.dedent(
    """
    import os, sys
    os.environ["TRITON_INTERPRET"] = "1"
    import torch
    from atacdenoise.model.network import build_model
    from atacdenoise.model.gpuconv import TritonDenoiser

    cases = {
        "light": dict(preset="light"),
        "features_skip": dict(preset="light", cls_sees_features=True, input_skip=True),
        "reference_convs": dict(preset="standard", reg_blocks=1, cls_blocks=1),
        "wide": dict(preset="light", filters=17, kernel_size=5, dilation=3, convs_per_block=2),
    }
    for name, hp in cases.items():
        torch.manual_seed(len(name))
        model = build_model(hp).eval()
        for p in model.parameters():  # weights away from initialisation, biases too
            p.data += 0.05 * torch.randn_like(p)
        x = torch.rand(2, int(sys.argv[1])) * 4
        with torch.no_grad():
            track, logits = model(x)
            t32, l32 = TritonDenoiser(model, torch.float32, {"BLOCK_L": 128})(x)
            t16, l16 = TritonDenoiser(model, torch.bfloat16, {"BLOCK_L": 64})(x)
            S = {"light": 2, "reference_convs": 8}.get(name, 4)  # 8: the default's (DEFAULT_CONFIG)
            block = {"kernel": "block", "S": S, "BLOCK_Q": 2}  # "wide": dilation 3, taps
            tb, lb = TritonDenoiser(model, torch.float32, block)(x)
        scale = float(track.abs().max())
        print(
            name,
            float((t32 - track).abs().max()) / scale,
            float((l32 - logits).abs().max()),
            float(torch.corrcoef(torch.stack([t16.flatten().float(), track.flatten()]))[0, 1]),
            float((torch.sigmoid(l16.float()) - torch.sigmoid(logits)).abs().max()),
            t32.dtype, tuple(t32.shape), tuple(l32.shape),
            float((tb - track).abs().max()) / scale,
            float((lb - logits).abs().max()),
        )
    """
)


def test_interpreted_kernel_equals_the_model_in_float32_and_is_close_in_bf16():
    pytest.importorskip("triton", reason="Triton is part of the test install (pyproject: test extra)")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "TRITON_INTERPRET": "1"}
    length = 400  # not a multiple of any tile: the last tile is partial
    res = subprocess.run(
        [sys.executable, "-c", INTERPRETED, str(length)], env=env, capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [line.split() for line in res.stdout.strip().splitlines()]
    assert [r[0] for r in rows] == ["light", "features_skip", "reference_convs", "wide"]
    for name, d_track, d_logit, r16, d_prob16, dtype, shape_t, shape_l, d_block, d_block_logit in (
        (r[0], *map(float, r[1:5]), r[5], r[6] + r[7], r[8] + r[9], float(r[10]), float(r[11])) for r in rows
    ):
        assert d_track < 1e-5, (name, d_track)  # IEEE float32 products: the model's outputs to rounding
        assert d_logit < 1e-4, (name, d_logit)
        assert d_block < 1e-5 and d_block_logit < 1e-4, (name, d_block, d_block_logit)  # the block-Toeplitz form
        assert r16 > 0.999, (name, r16)  # bf16 activations, float32 sums: as autocast
        assert d_prob16 < 0.05, (name, d_prob16)
        assert dtype == "torch.float32" and shape_t == shape_l == f"(2,{length})", (name, dtype, shape_t)


#: gradients through ``model.conv_impl = "triton"`` (forward and backward on the kernel) against PyTorch's autograd
TRAINING = textwrap.dedent(
    """
    import os, sys
    os.environ["TRITON_INTERPRET"] = "1"
    import torch
    import torch.nn.functional as F
    from atacdenoise.model import gpuconv
    from atacdenoise.model.network import build_model

    def loss(model, x):
        track, logits = model(x)
        return (track.float() ** 2).mean() + F.binary_cross_entropy_with_logits(logits.float(), (x > 2).float())

    cases = {
        "light": dict(preset="light"),
        "wide_features_skip": dict(
            preset="light", filters=16, kernel_size=5, convs_per_block=2, cls_sees_features=True, input_skip=True
        ),
        "light_block_wgrad": dict(preset="light"),
        "light_big_tiles": dict(preset="light"),  # as on a card: programs of more tiles (wgrad_tiles), both forms
    }
    # the default's block form (S = 8), the taps form (where the block form cannot run), and the block form's
    # weight gradient (wgrad: block)
    configs = {
        "light": '{"BLOCK_Q": 2}',
        "wide_features_skip": '{"kernel": "taps"}',
        "light_block_wgrad": '{"BLOCK_Q": 2, "wgrad": "block"}',
        "light_big_tiles": '{"BLOCK_Q": 2, "wgrad": "block"}',
    }
    for name, hp in cases.items():
        torch.manual_seed(len(name))
        model = build_model(hp)
        for p in model.parameters():
            p.data += 0.05 * torch.randn_like(p)
        params = list(model.parameters())
        x = torch.rand(2, int(sys.argv[1])) * 4
        ref = torch.autograd.grad(loss(model, x), params)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = torch.autograd.grad(loss(model, x), params)
        os.environ["ATACDENOISE_TRITON_CONFIG"] = configs[name]
        gpuconv._train_config.cache_clear()
        if name == "light_big_tiles":  # a one-SM "card" wanting one program an SM: every program takes 4x the tiles
            gpuconv.WGRAD_CONFIG.update(tiles=2, block_tiles=2, max_tiles=8, programs_per_sm=1)
            gpuconv._sm_count = lambda device: 1
            assert gpuconv.wgrad_tiles(16, 5, 2, 1) == 8
        model.conv_impl = "triton"
        got = torch.autograd.grad(loss(model, x), params)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got16 = torch.autograd.grad(loss(model, x), params)

        def rel(grads):
            # a parameter whose gradient is exactly zero (a ReLU closed on every base) compares as 0, not 0 / 0
            return max(float((a.float() - b).abs().max() / b.abs().max().clamp_min(1e-30)) for a, b in zip(grads, ref))

        print(name, rel(got), rel(got16), rel(auto), len(params))
    """
)


def test_interpreted_training_gradients_equal_autograd_in_float32_and_match_autocast_in_bf16():
    pytest.importorskip("triton", reason="Triton is part of the test install (pyproject: test extra)")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "TRITON_INTERPRET": "1"}
    res = subprocess.run([sys.executable, "-c", TRAINING, "200"], env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [line.split() for line in res.stdout.strip().splitlines()]
    assert [r[0] for r in rows] == ["light", "wide_features_skip", "light_block_wgrad", "light_big_tiles"]
    for name, fp32, bf16, autocast, n_params in rows:
        assert float(fp32) < 1e-5, (name, fp32)  # every parameter's gradient, input and weight paths both
        assert float(bf16) < max(0.1, 2 * float(autocast)), (name, bf16, autocast)
        assert int(n_params) > 10


#: "auto" weight gradient (gpuconv.choose_weight_grad) under the interpreter: timed for real, then with set timings
CHOOSE = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TRITON_INTERPRET"] = "1"
    os.environ["ATACDENOISE_TRITON_CONFIG"] = '{"BLOCK_Q": 2}'
    import torch
    from atacdenoise.model import gpuconv
    from atacdenoise.model.network import build_model

    width = int(sys.argv[1])
    torch.manual_seed(3)
    model = build_model(dict(preset="light", reg_blocks=1, cls_blocks=1, convs_per_block=2))
    model.conv_impl = "triton"
    rng = torch.get_rng_state()
    out = {"timed": gpuconv.choose_weight_grad(model, 2, width, None, reps=1)}
    out["rng_untouched"] = bool(torch.equal(rng, torch.get_rng_state()))
    out["form_now"] = gpuconv.weight_grad_form(gpuconv._train_config())
    out["grads_cleared"] = all(p.grad is None for p in model.parameters())
    step = gpuconv._train_step_ms

    def timings(*ms, run=()):  # steps that take the given milliseconds; those in ``run`` also compute gradients
        calls = iter(enumerate(ms))

        def fake(m, x, d):
            i, t = next(calls)
            if i in run:
                step(m, x, d)
            return t

        return fake

    for name, ms in {"tie": (100, 100, 95, 95), "faster": (100, 100, 50, 50)}.items():
        gpuconv._train_step_ms = timings(*ms)  # no gradients: both forms' agree (zeros)
        out[name] = gpuconv.choose_weight_grad(model, 2, width, None, reps=1)
    adjoint = gpuconv.block_toeplitz_adjoint
    gpuconv.block_toeplitz_adjoint = lambda dm, taps, C: adjoint(dm, taps, C) * 3  # a wrong block form
    gpuconv._train_step_ms = timings(100, 100, 50, 50, run=(0, 2))  # each form's first step: its gradients
    out["wrong"] = gpuconv.choose_weight_grad(model, 2, width, None, reps=1)
    def broken(*args, **kwargs):
        raise RuntimeError("no such instruction on this card")

    gpuconv._block_weight_grad, block_grad = broken, gpuconv._block_weight_grad  # a block form that cannot run
    gpuconv._train_step_ms = step
    out["failed"] = gpuconv.choose_weight_grad(model, 2, width, None, reps=1)
    out["failed_form_now"] = gpuconv.weight_grad_form(gpuconv._train_config())
    gpuconv._block_weight_grad = block_grad
    os.environ["ATACDENOISE_TRITON_CONFIG"] = '{"BLOCK_Q": 2, "wgrad": "taps"}'
    gpuconv._train_config.cache_clear()
    out["configured"] = gpuconv.choose_weight_grad(model, 2, width, None, reps=1)
    print(json.dumps(out))
    """
)


def test_auto_weight_gradient_takes_the_faster_form_only_when_its_gradients_agree():
    """Issue 23: "auto" times both forms on the run's batch; the block form must be 10 % faster and agree."""
    pytest.importorskip("triton", reason="Triton is part of the test install (pyproject: test extra)")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "TRITON_INTERPRET": "1"}
    res = subprocess.run([sys.executable, "-c", CHOOSE, "64"], env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    timed = out["timed"]
    assert timed["how"] == "timed" and timed["batch"] == 2 and timed["taps_ms"] > 0 and timed["block_ms"] > 0
    assert timed["grad_difference"] < 1e-5  # float32 under the interpreter: the two forms agree to rounding
    assert out["form_now"] == timed["form"] in ("taps", "block")
    assert out["rng_untouched"] and out["grads_cleared"]  # the run's random stream and gradients as before
    assert out["tie"]["form"] == "taps" and out["faster"]["form"] == "block"  # 5 % faster: not enough; 2x: taken
    assert out["wrong"]["form"] == "taps" and out["wrong"]["grad_difference"] > 0.5
    assert "differ from the taps form's" in res.stderr
    assert out["failed"] == {"form": "taps", "how": "block form failed (RuntimeError)"}
    assert out["failed_form_now"] == "taps" and "failed on this card" in res.stderr
    assert out["configured"] == {"form": "taps", "how": "configured"}


def test_weight_gradient_programs_grow_while_every_sm_keeps_eight():
    """Fewer partial sums on a card (issue 23), but never fewer than 8 programs an SM; off a card, as configured."""
    cfg = gpuconv.WGRAD_CONFIG
    # batch 128 of 60,000-base windows on an H100 (132 SMs): taps form 938 tiles a window x 51 taps, block 118 x 9
    assert gpuconv.wgrad_tiles(128 * 938, 51, cfg["tiles"], 132) == cfg["max_tiles"] == 128
    assert gpuconv.wgrad_tiles(128 * 118, 9, cfg["block_tiles"], 132) == 128  # 118 chunks x 9 = 1,062 programs
    assert gpuconv.wgrad_tiles(32 * 118, 9, cfg["block_tiles"], 132) == 32  # batch 32: as before (1,062)
    for n, per, least in ((128 * 938, 51, 16), (32 * 118, 9, 32), (7, 9, 32), (4 * 118, 9, 32)):
        t = gpuconv.wgrad_tiles(n, per, least, 132)
        assert t == least or -(-n // t) * per >= 8 * 132, (n, per, t)
        assert gpuconv.wgrad_tiles(n, per, least, None) == least


def test_weight_gradient_setting_is_checked():
    assert gpuconv.config_from_env("")["wgrad"] == "auto"
    assert gpuconv.config_from_env('{"wgrad": "block"}')["wgrad"] == "block"
    with pytest.raises(InputError, match="wgrad 'fast'"):
        gpuconv.config_from_env('{"wgrad": "fast"}')
    gpuconv.use_weight_grad("taps")
    assert (
        gpuconv.weight_grad_form({"wgrad": "auto"}) == "taps"
        and gpuconv.weight_grad_form({"wgrad": "block"}) == "block"
    )
    with pytest.raises(ValueError):
        gpuconv.use_weight_grad("auto")


def _compile_for(arch: int, cin: int, skip: int, config: dict) -> str:
    """PTX of the kernel for a ``sm_<arch>`` card, compiled here without one (as a launch specialises it)."""
    triton = pytest.importorskip("triton", reason="Triton is part of the test install (pyproject: test extra)")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    pointers = {"x_ptr": "*bf16", "w_ptr": "*bf16", "b_ptr": "*fp32", "s_ptr": "*bf16", "sw_ptr": "*bf16"}
    sig = {**pointers, "sb_ptr": "*fp32", "y_ptr": "*bf16", "L": "i32", "x_batch": "i32", "s_batch": "i32"}
    sig["y_batch"] = "i32"
    const = dict(CIN=cin, COUT=16, TAPS=51, KPAD=64 if cin == 1 else 16, DIL=8, SKIP=skip, SC=cin, RELU=True)
    const.update(IEEE=False, UPCAST=False, CACHE=config["cache"], BLOCK_L=config["BLOCK_L"])
    names = [*sig, *const]
    sig.update(dict.fromkeys(const, "constexpr"))
    # a launch marks pointers and integers divisible by 16 as such: 60,000-base windows, 16 channels
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in names[:11]}
    kernel = triton.compile(
        ASTSource(fn=gpuconv._conv_kernel, signature=sig, constexprs=const, attrs=attrs),
        target=GPUTarget("cuda", arch, 32),
        options={"num_warps": config["num_warps"], "num_stages": config["num_stages"]},
    )
    return kernel.asm["ptx"]


def _compile_block_for(arch: int, S: int = 4, BLOCK_Q: int = 8, num_warps: int = 4, num_stages: int = 3) -> str:
    """PTX of the block-Toeplitz kernel (51 taps, dilation 8: 2 ceil(25 / S) + 1 offsets) for a ``sm_<arch>`` card."""
    triton = pytest.importorskip("triton", reason="Triton is part of the test install (pyproject: test extra)")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig = {"x_ptr": "*bf16", "m_ptr": "*bf16", "b_ptr": "*fp32", "s_ptr": "*bf16", "y_ptr": "*bf16", "L": "i32"}
    sig.update({"x_batch": "i32", "s_batch": "i32", "y_batch": "i32"})
    d = -(-25 // S)
    const = dict(C=16, S=S, ND=2 * d + 1, D0=-d, DIL=8, SKIP=1, RELU=True, IEEE=False, UPCAST=False, CACHE=".ca")
    const["BLOCK_Q"] = BLOCK_Q
    names = [*sig, *const]
    sig.update(dict.fromkeys(const, "constexpr"))
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in names[:9]}
    kernel = triton.compile(
        ASTSource(fn=gpuconv._block_kernel, signature=sig, constexprs=const, attrs=attrs),
        target=GPUTarget("cuda", arch, 32),
        options={"num_warps": num_warps, "num_stages": num_stages},
    )
    return kernel.asm["ptx"]


#: both weight-gradient kernels' arguments before their constants, and those a launch marks 16-aligned
WGRAD_SIGNATURE = {"x_ptr": "*bf16", "g_ptr": "*bf16", "out_ptr": "*fp32", "db_ptr": "*fp32", "L": "i32"}
WGRAD_SIGNATURE.update({"tiles_per_row": "i32", "n_tiles": "i32", "x_batch": "i32", "g_batch": "i32"})
WGRAD_ALIGNED = ("x_ptr", "g_ptr", "out_ptr", "db_ptr", "x_batch", "g_batch")


def _compile_weight_grad_for(arch: int) -> str:
    """PTX of the weight-gradient kernel (training) for a ``sm_<arch>`` card, as :func:`_compile_for`."""
    triton = pytest.importorskip("triton", reason="Triton is part of the test install (pyproject: test extra)")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig = dict(WGRAD_SIGNATURE)
    cfg = gpuconv.WGRAD_CONFIG
    const = dict(C=16, TAPS=51, DIL=8, TILES=cfg["tiles"], IEEE=False, UPCAST=False, BLOCK_L=cfg["BLOCK_L"])
    names = [*sig, *const]
    sig.update(dict.fromkeys(const, "constexpr"))
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in WGRAD_ALIGNED}
    kernel = triton.compile(
        ASTSource(fn=gpuconv._wgrad_kernel, signature=sig, constexprs=const, attrs=attrs),
        target=GPUTarget("cuda", arch, 32),
        options={"num_warps": cfg["num_warps"]},
    )
    return kernel.asm["ptx"]


def _compile_block_weight_grad_for(arch: int) -> str:
    """PTX of the block form's weight gradient (training, ``wgrad: block``) at the default's S = 8, as above."""
    triton = pytest.importorskip("triton", reason="Triton is part of the test install (pyproject: test extra)")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    cfg = gpuconv.DEFAULT_CONFIG
    sig = dict(WGRAD_SIGNATURE)
    d = -(-25 // cfg["S"])
    const = dict(C=16, S=cfg["S"], ND=2 * d + 1, D0=-d, DIL=8, TILES=gpuconv.WGRAD_CONFIG["block_tiles"])
    const.update(IEEE=False, UPCAST=False, BLOCK_Q=cfg["BLOCK_Q"])
    names = [*sig, *const]
    sig.update(dict.fromkeys(const, "constexpr"))
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in WGRAD_ALIGNED}
    kernel = triton.compile(
        ASTSource(fn=gpuconv._block_wgrad_kernel, signature=sig, constexprs=const, attrs=attrs),
        target=GPUTarget("cuda", arch, 32),
        options={"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]},
    )
    return kernel.asm["ptx"]


@pytest.mark.parametrize("arch, mma", [(90, "wgmma.mma_async"), (80, "mma.sync.aligned")])
def test_kernel_compiles_to_tensor_core_products_with_pipelined_l1_loads(arch, mma, monkeypatch):
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")
    taps = {**gpuconv.DEFAULT_CONFIG, "num_warps": 4, "num_stages": 3}  # the taps form's best in the GPU sweep
    for cin, skip in ((16, 1), (16, 0), (1, 3), (16, 2)):
        ptx = _compile_for(arch, cin, skip, taps)
        assert f"{mma}" in ptx and ".bf16" in ptx, (arch, cin, skip)  # bf16 operands on the tensor cores
        if cin == 16:  # each tap's input tile: asynchronous 16-byte copies that stay in L1 (the next taps reuse it)
            assert "cp.async.ca.shared.global" in ptx and "cp.async.cg" not in ptx, (arch, cin, skip)
            assert "ld.global.b16" not in ptx  # no scalar 2-byte loads
    ptx = _compile_block_for(arch)  # the block-Toeplitz form: 64 x 64 products (S = 4)
    assert ("wgmma.mma_async.sync.aligned.m64n64k16" if arch == 90 else mma) in ptx and ".bf16" in ptx
    assert "cp.async.ca.shared.global" in ptx and "ld.global.b16" not in ptx
    cfg = gpuconv.DEFAULT_CONFIG  # the default, the fastest measured: S = 8, 128 x 128 products on two warp groups
    ptx = _compile_block_for(arch, cfg["S"], cfg["BLOCK_Q"], cfg["num_warps"], cfg["num_stages"])
    assert ("wgmma.mma_async.sync.aligned.m64n64k16" if arch == 90 else mma) in ptx and ".bf16" in ptx
    ptx = _compile_weight_grad_for(arch)  # training's weight gradient: 16 x 16 products summed over positions
    assert "mma.sync.aligned.m16n8k16" in ptx and ".bf16" in ptx  # tensor cores (M = 16: below wgmma's 64 rows)
    ptx = _compile_block_weight_grad_for(arch)  # the block form's: 128 x 128 products of 64-row tiles
    assert ("wgmma.mma_async.sync.aligned.m64n128k16" if arch == 90 else mma) in ptx and ".bf16" in ptx
    assert "cp.async" in ptx and "ld.global.b16" not in ptx


def _ptxas_resources(ptx: str, tmp_path: Path) -> tuple[int, int]:
    """Return the registers per thread and spilled bytes of ``ptx`` for sm_90a, from the ptxas Triton ships.

    Triton emits PTX of its own CUDA's version; of the assemblers it ships, the first that takes it answers.
    """
    import triton

    src = tmp_path / "kernel.ptx"
    src.write_text(ptx)
    tried = []
    for ptxas in sorted((Path(triton.__file__).parent / "backends" / "nvidia" / "bin").glob("ptxas*"), reverse=True):
        res = subprocess.run(
            [str(ptxas), "-arch=sm_90a", "-v", str(src), "-o", os.devnull], capture_output=True, text=True
        )
        if res.returncode == 0:
            text = res.stdout + res.stderr
            regs = int(re.search(r"Used (\d+) registers", text).group(1))
            spills = sum(int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", text))
            return regs, spills
        tried.append(f"{ptxas.name}: {res.stderr.strip()[-200:]}")
    raise AssertionError(f"no ptxas shipped with Triton assembles the PTX: {tried}")


def test_training_and_inference_kernels_fit_the_registers_of_an_h100(monkeypatch, tmp_path):
    """Assembled for sm_90a here (no card needed): no spills to local memory, room for 2+ programs per SM.

    A configuration that spills would run at a fraction of the measured rate (issue 23): caught before a GPU run.
    """
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")
    cfg = gpuconv.DEFAULT_CONFIG
    kernels = {
        "forward, block form (the default)": (
            _compile_block_for(90, cfg["S"], cfg["BLOCK_Q"], cfg["num_warps"], cfg["num_stages"]),
            cfg["num_warps"],
        ),
        "weight gradient, taps form": (_compile_weight_grad_for(90), gpuconv.WGRAD_CONFIG["num_warps"]),
        "weight gradient, block form": (_compile_block_weight_grad_for(90), cfg["num_warps"]),
    }
    for name, (ptx, warps) in kernels.items():
        regs, spills = _ptxas_resources(ptx, tmp_path)
        assert spills == 0, (name, regs, spills)
        assert regs * warps * 32 * 2 <= 65536, (name, regs, warps)  # two programs' registers fit one SM's 64 K


def test_block_toeplitz_matrices_are_the_convolution():
    """Rows of S same-phase positions times the offsets' matrices: the dilated conv, in plain PyTorch."""
    torch.manual_seed(2)
    taps, C, dil, L = 7, 16, 4, 203
    w = torch.randn(taps, C, C, dtype=torch.float64)
    x = torch.randn(L, C, dtype=torch.float64)
    ref = torch.nn.functional.conv1d(x.t()[None], w.permute(2, 1, 0), padding=(taps // 2) * dil, dilation=dil)[
        0
    ].t()  # [L, C]
    for S in (1, 2, 4):
        mats, d0 = gpuconv.block_toeplitz(w, S)
        assert mats.shape == (2 * ((taps // 2 + S - 1) // S) + 1, S * C, S * C) and d0 == -((taps // 2 + S - 1) // S)
        span = dil * S
        n = -(-L // span) * span
        xp = torch.zeros(n, C, dtype=torch.float64)
        xp[:L] = x
        rows = xp.reshape(-1, S, dil, C).permute(0, 2, 1, 3).reshape(-1, dil, S * C)  # [blocks, phase, S*C]
        out = torch.zeros_like(rows)
        for i, m in enumerate(mats):
            d = d0 + i
            shifted = torch.zeros_like(rows)
            lo, hi = max(0, -d), min(rows.shape[0], rows.shape[0] - d)
            shifted[lo:hi] = rows[lo + d : hi + d]
            out += shifted @ m
        y = out.reshape(-1, dil, S, C).permute(0, 2, 1, 3).reshape(n, C)[:L]
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)


def test_block_toeplitz_adjoint_is_the_adjoint_of_the_gather():
    """<block_toeplitz(w), dM> = <w, adjoint(dM)>: the block form's weight gradient sums the right blocks."""
    torch.manual_seed(4)
    for taps, C, S in ((51, 16, 8), (51, 16, 4), (7, 16, 2), (21, 16, 8)):
        w = torch.randn(taps, C, C, dtype=torch.float64)
        mats, _ = gpuconv.block_toeplitz(w, S)
        dm = torch.randn_like(mats)
        back = gpuconv.block_toeplitz_adjoint(dm, taps, C)
        assert back.shape == w.shape
        torch.testing.assert_close((mats * dm).sum(), (w * back).sum(), rtol=1e-12, atol=1e-9)
        wr = w.clone().requires_grad_(True)  # and it is autograd's gradient of the gather
        grad = torch.autograd.grad((gpuconv.block_toeplitz(wr, S)[0] * dm).sum(), wr)[0]
        torch.testing.assert_close(grad, back, rtol=1e-12, atol=1e-12)


def test_kernel_configuration_from_the_environment_is_checked():
    assert gpuconv.config_from_env("") == gpuconv.DEFAULT_CONFIG
    cfg = gpuconv.config_from_env('{"kernel": "block", "S": 8}')
    assert cfg["kernel"] == "block" and cfg["S"] == 8 and cfg["BLOCK_L"] == gpuconv.DEFAULT_CONFIG["BLOCK_L"]
    with pytest.raises(InputError, match="unknown keys"):
        gpuconv.config_from_env('{"BLOCK": 64}')
    with pytest.raises(InputError, match="not JSON"):
        gpuconv.config_from_env("kernel=block")


def test_padded_channels_are_powers_of_two_from_16():
    assert [gpuconv.padded(c) for c in (1, 8, 15, 16, 17, 32, 33)] == [16, 16, 16, 16, 32, 32, 64]


def test_kernels_that_fail_fall_back_to_pytorch_unless_asked_for_by_name(monkeypatch, caplog):
    from atacdenoise.model.device import gpu_kernels_work

    def broken() -> None:
        raise RuntimeError("ptxas: no such card")

    monkeypatch.delenv("ATACDENOISE_GPU_CONV", raising=False)  # auto: a warning, then PyTorch's convolutions
    with caplog.at_level("WARNING"):
        assert not gpu_kernels_work(broken, "GPU inference")
    assert "GPU inference: the Triton kernels failed" in caplog.text and "ptxas: no such card" in caplog.text
    assert gpu_kernels_work(lambda: None, "GPU inference")
    monkeypatch.setenv("ATACDENOISE_GPU_CONV", "triton")  # asked for: the error is the user's to see
    with pytest.raises(RuntimeError, match="no such card"):
        gpu_kernels_work(broken, "training")


def test_kernel_choice_is_triton_on_tensor_core_cards_unless_asked_otherwise(monkeypatch):
    monkeypatch.delenv("ATACDENOISE_GPU_CONV", raising=False)
    assert not gpu_conv_requested(torch.device("cpu")) and not gpu_conv_requested()  # auto: a GPU's choice
    monkeypatch.setenv("ATACDENOISE_GPU_CONV", "Triton ")
    assert gpu_conv_requested()
    monkeypatch.setenv("ATACDENOISE_GPU_CONV", "torch")
    assert not gpu_conv_requested(torch.device("cuda"))  # not asked: no CUDA call on this machine
    monkeypatch.setenv("ATACDENOISE_GPU_CONV", "cudnn")
    with pytest.raises(InputError, match="expected auto, torch or triton"):
        gpu_conv_requested()


# --------------------------------------------------------------------------- GPU (skipped without CUDA)

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
#: the kernels' two forms (model/gpuconv.py: DEFAULT_CONFIG["kernel"])
KERNELS = [{"kernel": "taps"}, {"kernel": "block"}]


@pytest.mark.gpu
@gpu
def test_gpu_auto_picks_the_kernel_on_a_tensor_core_card(monkeypatch):
    monkeypatch.delenv("ATACDENOISE_GPU_CONV", raising=False)
    card = torch.device("cuda")
    assert gpu_conv_requested(card) == (torch.cuda.get_device_capability(card) >= (8, 0))


def _reference_model(**overrides) -> torch.nn.Module:
    torch.manual_seed(3)
    model = build_model({"preset": "standard", **overrides}).eval().cuda()
    for p in model.parameters():
        p.data += 0.02 * torch.randn_like(p)
    model.reg_out.bias.data.fill_(1.0)  # a live track: from the initial weights it is ~all zero (ReLU)
    return model


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("overrides", [{}, {"cls_sees_features": True, "input_skip": True}])
def test_gpu_kernel_matches_the_float32_model_on_the_reference_shape(overrides, kernel, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    model = _reference_model(**overrides)
    x = torch.rand(4, 20_011, device="cuda") * 3
    with torch.no_grad():
        track, logits = model(x)
        t32, l32 = gpuconv.TritonDenoiser(model, torch.float32, kernel)(x)
        t16, l16 = gpuconv.TritonDenoiser(model, torch.bfloat16, kernel)(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            ta, la = model(x)
    assert float((track > 0).float().mean()) > 0.1  # the comparison below is not of zeros
    scale = float(track.abs().max())
    assert float((t32 - track).abs().max()) / scale < 1e-5
    assert float((torch.sigmoid(l32) - torch.sigmoid(logits)).abs().max()) < 1e-5
    # bf16: no further from float32 than PyTorch's own bf16 autocast is (the GPU route's tolerance, test_infer.py)
    prob, prob16, proba = torch.sigmoid(logits), torch.sigmoid(l16.float()), torch.sigmoid(la.float())
    assert float((prob16 - prob).abs().max()) < max(0.05, 2 * float((proba - prob).abs().max()))
    r16 = np.corrcoef(t16.float().flatten().cpu().numpy(), track.flatten().cpu().numpy())[0, 1]
    assert r16 > 0.99, (r16, ta.dtype)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("kernel", [{**k, "wgrad": "taps"} for k in KERNELS] + [{"kernel": "block", "wgrad": "block"}])
def test_gpu_training_gradients_on_the_kernel_match_cudnn_on_the_reference_shape(kernel, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setenv("ATACDENOISE_TRITON_CONFIG", json.dumps(kernel))
    gpuconv._train_config.cache_clear()
    model = _reference_model(cls_sees_features=True)
    params = list(model.parameters())
    x = torch.rand(2, 20_011, device="cuda") * 3
    labels = (x > 2).float()

    def grads() -> list[torch.Tensor]:
        track, logits = model(x)
        loss = (track.float() ** 2).mean() + torch.nn.functional.binary_cross_entropy_with_logits(
            logits.float(), labels
        )
        return torch.autograd.grad(loss, params)

    ref = grads()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        auto = grads()
    model.conv_impl = "triton"
    got = grads()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got16 = grads()
    model.conv_impl = "torch"

    def rel(g: list[torch.Tensor]) -> float:
        return max(float((a.float() - b).abs().max() / b.abs().max()) for a, b in zip(g, ref))

    gpuconv._train_config.cache_clear()
    assert rel(got) < 1e-4
    assert rel(got16) < max(0.1, 2 * rel(auto)), (rel(got16), rel(auto))


@pytest.mark.gpu
@gpu
def test_gpu_auto_weight_gradient_times_both_forms_on_the_card(monkeypatch):
    """Issue 23: training's start-up choice on a card, on windows of the standard preset's width (both agree)."""
    monkeypatch.delenv("ATACDENOISE_TRITON_CONFIG", raising=False)
    gpuconv._train_config.cache_clear()
    model = _reference_model().train()
    model.conv_impl = "triton"
    info = gpuconv.choose_weight_grad(model, 4, 60_000, torch.bfloat16)
    print(info)  # the two forms' milliseconds on this card, in the session's pytest log
    assert info["how"] == "timed" and info["taps_ms"] > 0 and info["block_ms"] > 0
    assert info["grad_difference"] < 5e-2 and info["form"] == gpuconv.weight_grad_form(gpuconv._train_config())
    gpuconv.use_weight_grad("taps")


@pytest.mark.gpu
@gpu
def test_gpu_tile_runner_on_the_kernel_matches_the_torch_route(monkeypatch):
    from atacdenoise.model.infer import TileRunner

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    model = _reference_model()
    x = torch.rand(3, 70_000) * 2
    monkeypatch.setenv("ATACDENOISE_GPU_CONV", "torch")
    ref = TileRunner(model, torch.device("cuda"), 50_000, 5_000, 2, amp=None)
    monkeypatch.setenv("ATACDENOISE_GPU_CONV", "triton")
    fast = TileRunner(model, torch.device("cuda"), 50_000, 5_000, 2, amp=None)
    assert isinstance(fast.model, gpuconv.TritonDenoiser) and not isinstance(ref.model, gpuconv.TritonDenoiser)
    windows = x[:, :60_000].contiguous()
    t_ref, p_ref = ref.forward(windows.clone(), 100_000)
    t_fast, p_fast = fast.forward(windows.clone(), 100_000)
    np.testing.assert_allclose(t_fast, t_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(p_fast, p_ref, rtol=1e-4, atol=1e-4)
