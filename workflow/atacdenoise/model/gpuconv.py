"""The model's dilated convolutions on a GPU's tensor cores (Triton), for inference.

Why: cuDNN runs the reference shape's convs (15 channels, 51 taps 8 bases
apart) at ~35-40 TFLOP/s on an H200, ~4-5 % of its dense bf16 rate
(``shared/GPU.md``): the time is per layer, not per FLOP (32 channels cost
only 1.23x 15), and channel padding, cuDNN autotuning and ``torch.compile``
barely move it.

How: each conv is an implicit GEMM. Activations are kept channels-last,
``[B, L, C]`` with ``C`` padded to a power of two >= 16 (zero weights, so the
outputs are unchanged). A program computes ``BLOCK_L`` positions x all output
channels of one window: for each tap, the ``BLOCK_L x C`` tile of the input
shifted by the tap's offset (zeros beyond the window's ends: 'same' padding)
times the tap's ``C x C`` weights, accumulated in float32 by ``tl.dot`` (the
tensor cores). A conv with one input channel (each branch's first) takes the
taps as its reduction instead: ``BLOCK_L x 64`` gathered inputs times ``64 x
C``. The store adds the bias, the block's skip path (identity or 1x1
projection, from the block's input) and applies the ReLU, so a residual block
is three passes over memory, as in :mod:`atacdenoise.model.cpuconv`. The 1x1
output heads run in PyTorch.

:class:`TritonDenoiser` wraps a loaded :class:`~atacdenoise.model.network.DenoiseResNet`
with the same ``forward`` (``[B, L]`` -> track, logits), in bf16 (activations
stored in bf16, as autocast does) or float32 (``tl.dot`` in IEEE float32, for
checking).

Training (:func:`train_forward`, reached through ``model.conv_impl =
"triton"``): each conv with its ReLU (and the block's skip, added in the store)
is an autograd function on the same kernel; its input gradient is the same
convolution with the taps reversed and the weights transposed, its weight
gradient one ``16 x 16`` product per tap summed over every position
(``_wgrad_kernel``, partial sums per chunk added in a fixed order: the same
gradients every run), or the gradients of the block form's matrices
(``_block_wgrad_kernel``: one ``S*C x S*C`` product per offset, each tile read
once per offset instead of once per tap) summed back onto the taps
(:func:`block_toeplitz_adjoint`). Which of the two: ``wgrad`` in the
configuration, by default the faster on the card (:func:`choose_weight_grad`,
timed at the start of training). The 1x1 projections and heads run in PyTorch.

Both are the default on cards with bf16 tensor cores (compute capability >= 8.0;
``ATACDENOISE_GPU_CONV=torch`` keeps cuDNN's): on an H100 the block form ran
the reference shape at 169 TFLOP/s, 5.5x cuDNN (``benchmarks/gpu.py``, issue
23). The tests run the kernels under Triton's interpreter
(``TRITON_INTERPRET=1``) on the CPU against PyTorch's convolutions and
autograd, compile them for sm_90/sm_80 without a GPU and check their
instructions, and on a GPU (marked ``gpu``) compare them with the float32
model.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from types import SimpleNamespace

import torch
from torch import nn

from atacdenoise.errors import InputError
from atacdenoise.model.network import DenoiseResNet, ResBlock

log = logging.getLogger(__name__)

#: positions per program, warps, pipeline stages, and the cache of each tap's input tile: ".ca" keeps it in L1,
#: where the next taps (8 bases further) find most of it; Triton's own choice for 16-byte copies is L2 only
#: (".cg"). benchmarks/gpu_levers.py sweeps them on a GPU; tests/model/test_gpuconv.py checks the PTX here.
#: ``kernel``: "taps" (one 16-channel product per tap, ``BLOCK_L`` positions a program) or "block" (the
#: block-Toeplitz form: ``S`` same-phase positions x 16 channels a row, ``BLOCK_Q`` x dilation rows a program, one
#: ``16 S x 16 S`` product per offset: ~3.6x less data moved per product at S = 4, for ~1.2x the products).
#: The default is the sweep's fastest on an H100 (2026-12-05, reference shape, batch 64-128, bf16): the block
#: form at S = 8, 8 warps, 2 stages, 168.8 TFLOP/s (320 M output bp/s; taps at best 102, cuDNN 31)
DEFAULT_CONFIG = {
    "BLOCK_L": 128,
    "num_warps": 8,
    "num_stages": 2,
    "cache": ".ca",
    "kernel": "block",
    "S": 8,
    "BLOCK_Q": 8,
    # training's weight gradient: "taps" (16 x 16 products per tap), "block" (one S*C x S*C product per offset of
    # the block form, ~5x fewer bytes read) or "auto": the faster of the two, timed on the card at the start of
    # training on a batch of the run's own shape (:func:`choose_weight_grad`; until then "taps")
    "wgrad": "auto",
}

#: the weight-gradient forms :data:`DEFAULT_CONFIG` may name
WGRAD_FORMS = ("taps", "block", "auto")
#: "auto" takes the block form only when it is this much faster (a near tie keeps one form from run to run)
WGRAD_MARGIN = 0.9


def config_from_env(raw: str | None = None) -> dict:
    """Return the kernel configuration: :data:`DEFAULT_CONFIG` updated by ``ATACDENOISE_TRITON_CONFIG`` (JSON).

    How ``benchmarks/gpu.py`` hands the fastest configuration of its sweep to the commands it runs.
    """
    raw = os.environ.get("ATACDENOISE_TRITON_CONFIG", "") if raw is None else raw
    if not raw.strip():
        return dict(DEFAULT_CONFIG)
    try:
        cfg = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"ATACDENOISE_TRITON_CONFIG={raw!r}: not JSON ({exc})") from exc
    unknown = sorted(set(cfg) - set(DEFAULT_CONFIG)) if isinstance(cfg, dict) else ["(not an object)"]
    if unknown:
        raise InputError(
            f"ATACDENOISE_TRITON_CONFIG: unknown keys {unknown}; expected some of {sorted(DEFAULT_CONFIG)}"
        )
    if cfg.get("wgrad", "auto") not in WGRAD_FORMS:
        raise InputError(f"ATACDENOISE_TRITON_CONFIG: wgrad {cfg['wgrad']!r}; expected one of {list(WGRAD_FORMS)}")
    return {**DEFAULT_CONFIG, **cfg}


_SKIP_NONE, _SKIP_IDENTITY, _SKIP_PROJECT, _SKIP_ONE = 0, 1, 2, 3

try:  # Triton ships with CUDA builds of PyTorch; CPU-only installs may lack it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None


def available() -> bool:
    """Tell whether Triton is importable (the kernels also need a CUDA device, or ``TRITON_INTERPRET=1``)."""
    return triton is not None


def padded(channels: int) -> int:
    """Channels as stored: the next power of two >= 16 (``tl.dot`` needs >= 16, ``tl.arange`` a power of two)."""
    return max(16, 1 << (int(channels) - 1).bit_length())


if triton is not None:

    @triton.jit
    def _mma(acc, a, w, IEEE: tl.constexpr, UPCAST: tl.constexpr):
        """Return acc + a @ w on the tensor cores (IEEE: exact float32 products; UPCAST: float32 operands)."""
        if UPCAST:
            return acc + tl.dot(a.to(tl.float32), w.to(tl.float32), input_precision="ieee")
        if IEEE:
            return acc + tl.dot(a, w, input_precision="ieee")
        return acc + tl.dot(a, w)

    @triton.jit
    def _conv_kernel(
        x_ptr,
        w_ptr,
        b_ptr,
        s_ptr,
        sw_ptr,
        sb_ptr,
        y_ptr,
        L,
        x_batch,
        s_batch,
        y_batch,
        CIN: tl.constexpr,
        COUT: tl.constexpr,
        TAPS: tl.constexpr,
        KPAD: tl.constexpr,
        DIL: tl.constexpr,
        SKIP: tl.constexpr,
        SC: tl.constexpr,
        RELU: tl.constexpr,
        IEEE: tl.constexpr,
        UPCAST: tl.constexpr,
        CACHE: tl.constexpr,
        BLOCK_L: tl.constexpr,
    ):
        """y[b, l, :] = relu?(bias + sum_t x[b, l + (t - TAPS // 2) * DIL, :] @ w[t] + skip), channels-last."""
        pid = tl.program_id(0)
        b = tl.program_id(1).to(tl.int64)
        offs = pid * BLOCK_L + tl.arange(0, BLOCK_L)
        co = tl.arange(0, COUT)
        inside = offs < L
        half = (TAPS - 1) // 2
        xb = x_ptr + b * x_batch
        acc = tl.zeros((BLOCK_L, COUT), dtype=tl.float32)
        if CIN == 1:  # one input channel: the taps are the reduction
            k = tl.arange(0, KPAD)
            pos = offs[:, None] + (k[None, :] - half) * DIL
            a = tl.load(xb + pos, mask=(k[None, :] < TAPS) & (pos >= 0) & (pos < L), other=0.0)
            w = tl.load(w_ptr + k[:, None] * COUT + co[None, :])
            acc = _mma(acc, a, w, IEEE, UPCAST)
        else:
            ci = tl.arange(0, CIN)
            for t in range(TAPS):
                pos = offs + (t - half) * DIL
                a = tl.load(
                    xb + pos[:, None] * CIN + ci[None, :],
                    mask=((pos >= 0) & (pos < L))[:, None],
                    other=0.0,
                    cache_modifier=CACHE,
                )
                w = tl.load(w_ptr + t * CIN * COUT + ci[:, None] * COUT + co[None, :])
                acc = _mma(acc, a, w, IEEE, UPCAST)
        acc += tl.load(b_ptr + co)[None, :]
        if SKIP != 0:
            sb = s_ptr + b * s_batch
            if SKIP == 1:  # identity: the block's input has the output's channels
                r = tl.load(sb + offs[:, None] * COUT + co[None, :], mask=inside[:, None], other=0.0)
                acc += r.to(tl.float32)
            elif SKIP == 2:  # 1x1 projection of SC channels
                sc = tl.arange(0, SC)
                r = tl.load(sb + offs[:, None] * SC + sc[None, :], mask=inside[:, None], other=0.0)
                sw = tl.load(sw_ptr + sc[:, None] * COUT + co[None, :])
                acc = _mma(acc, r, sw, IEEE, UPCAST)
                acc += tl.load(sb_ptr + co)[None, :]
            else:  # 1x1 projection of one channel: an outer product
                r = tl.load(sb + offs, mask=inside, other=0.0).to(tl.float32)
                acc += r[:, None] * tl.load(sw_ptr + co)[None, :] + tl.load(sb_ptr + co)[None, :]
        if RELU:
            acc = tl.maximum(acc, 0.0)
        out = y_ptr + b * y_batch + offs[:, None] * COUT + co[None, :]
        tl.store(out, acc.to(y_ptr.dtype.element_ty), mask=inside[:, None])

    @triton.jit
    def _wgrad_kernel(
        x_ptr,
        g_ptr,
        out_ptr,
        db_ptr,
        L,
        tiles_per_row,
        n_tiles,
        x_batch,
        g_batch,
        C: tl.constexpr,
        TAPS: tl.constexpr,
        DIL: tl.constexpr,
        TILES: tl.constexpr,
        IEEE: tl.constexpr,
        UPCAST: tl.constexpr,
        BLOCK_L: tl.constexpr,
    ):
        """out[chunk, t] = sum over the chunk's positions p of x[p + (t - TAPS // 2) * DIL, :]^T @ g[p, :].

        The bias gradient comes with it: db[chunk] = sum of g over the chunk's positions, summed and stored by
        tap 0's programs only (a branch on the program id, uniform within a program), so that g is not read once
        more for it and the other taps' programs do no reduction for nothing.
        """
        t = tl.program_id(0)
        chunk = tl.program_id(1)
        c = tl.arange(0, C)
        half = (TAPS - 1) // 2
        acc = tl.zeros((C, C), dtype=tl.float32)
        db = tl.zeros((C,), dtype=tl.float32)
        for i in range(TILES):  # TILES tiles of BLOCK_L positions, along the windows of the batch one after another
            tile = chunk * TILES + i
            b = (tile // tiles_per_row).to(tl.int64)
            offs = (tile % tiles_per_row) * BLOCK_L + tl.arange(0, BLOCK_L)
            live = (offs < L) & ((offs * 0 + tile) < n_tiles)
            pos = offs + (t - half) * DIL
            shifted = (live & (pos >= 0) & (pos < L))[:, None]
            xt = tl.load(x_ptr + b * x_batch + pos[:, None] * C + c[None, :], mask=shifted, other=0.0)
            gt = tl.load(g_ptr + b * g_batch + offs[:, None] * C + c[None, :], mask=live[:, None], other=0.0)
            acc = _mma(acc, tl.trans(xt), gt, IEEE, UPCAST)
            if t == 0:  # the same for the whole program: only tap 0's programs sum the bias gradient
                db += tl.sum(gt.to(tl.float32), axis=0)
        tl.store(out_ptr + (chunk * TAPS + t) * C * C + c[:, None] * C + c[None, :], acc)
        if t == 0:
            tl.store(db_ptr + chunk * C + c, db)

    @triton.jit
    def _block_kernel(
        x_ptr,
        m_ptr,
        b_ptr,
        s_ptr,
        y_ptr,
        L,
        x_batch,
        s_batch,
        y_batch,
        C: tl.constexpr,
        S: tl.constexpr,
        ND: tl.constexpr,
        D0: tl.constexpr,
        DIL: tl.constexpr,
        SKIP: tl.constexpr,
        RELU: tl.constexpr,
        IEEE: tl.constexpr,
        UPCAST: tl.constexpr,
        CACHE: tl.constexpr,
        BLOCK_Q: tl.constexpr,
    ):
        """Run the conv as a block-Toeplitz product: rows of S same-phase positions x C channels, ND offsets.

        A row ``m`` of the tile holds positions ``p0 + DIL * (S * (m // DIL) + s) + m % DIL`` for ``s < S``;
        offset ``d`` reads the rows ``DIL * S * d`` positions further and multiplies them by ``m[d]``
        (``S*C x S*C``), which holds every tap that links an input row to an output row.
        """
        pid = tl.program_id(0)
        b = tl.program_id(1).to(tl.int64)
        F: tl.constexpr = S * C
        m = tl.arange(0, BLOCK_Q * DIL)
        f = tl.arange(0, F)
        c = f % C
        pos = pid * (DIL * S * BLOCK_Q) + DIL * (S * (m // DIL)[:, None] + (f // C)[None, :]) + (m % DIL)[:, None]
        xb = x_ptr + b * x_batch
        acc = tl.zeros((BLOCK_Q * DIL, F), dtype=tl.float32)
        for i in range(ND):
            src = pos + DIL * S * (D0 + i)
            a = tl.load(xb + src * C + c[None, :], mask=(src >= 0) & (src < L), other=0.0, cache_modifier=CACHE)
            w = tl.load(m_ptr + i * F * F + f[:, None] * F + f[None, :])
            acc = _mma(acc, a, w, IEEE, UPCAST)
        acc += tl.load(b_ptr + c)[None, :]
        inside = pos < L
        if SKIP != 0:
            r = tl.load(s_ptr + b * s_batch + pos * C + c[None, :], mask=inside, other=0.0)
            acc += r.to(tl.float32)
        if RELU:
            acc = tl.maximum(acc, 0.0)
        tl.store(y_ptr + b * y_batch + pos * C + c[None, :], acc.to(y_ptr.dtype.element_ty), mask=inside)

    @triton.jit
    def _block_wgrad_kernel(
        x_ptr,
        g_ptr,
        out_ptr,
        db_ptr,
        L,
        tiles_per_row,
        n_tiles,
        x_batch,
        g_batch,
        C: tl.constexpr,
        S: tl.constexpr,
        ND: tl.constexpr,
        D0: tl.constexpr,
        DIL: tl.constexpr,
        TILES: tl.constexpr,
        IEEE: tl.constexpr,
        UPCAST: tl.constexpr,
        BLOCK_Q: tl.constexpr,
    ):
        """out[chunk, i] = sum over the chunk's rows of x[rows + DIL S (D0 + i)]^T @ g[rows] (``_block_kernel``'s rows).

        The gradient of :func:`block_toeplitz`'s matrix ``i`` (``S*C x S*C``); its taps' gradients are summed
        from it by :func:`block_toeplitz_adjoint`. The bias gradient comes with it: db[chunk] = sum of g over the
        chunk's positions, summed and stored by offset 0's programs only.
        """
        i = tl.program_id(0)
        chunk = tl.program_id(1)
        F: tl.constexpr = S * C
        m = tl.arange(0, BLOCK_Q * DIL)
        f = tl.arange(0, F)
        c = f % C
        rows = DIL * (S * (m // DIL)[:, None] + (f // C)[None, :]) + (m % DIL)[:, None]
        acc = tl.zeros((F, F), dtype=tl.float32)
        db = tl.zeros((F,), dtype=tl.float32)
        for k in range(TILES):  # TILES tiles of BLOCK_Q x DIL rows, along the windows of the batch
            tile = chunk * TILES + k
            b = (tile // tiles_per_row).to(tl.int64)
            pos = (tile % tiles_per_row) * (DIL * S * BLOCK_Q) + rows
            real = (pos * 0 + tile) < n_tiles  # the last program's tiles past the batch's end: none
            gt = tl.load(g_ptr + b * g_batch + pos * C + c[None, :], mask=real & (pos < L), other=0.0)
            src = pos + DIL * S * (D0 + i)  # an input element's mask is its own position's, not its row's output
            at = tl.load(x_ptr + b * x_batch + src * C + c[None, :], mask=real & (src >= 0) & (src < L), other=0.0)
            acc = _mma(acc, tl.trans(at), gt, IEEE, UPCAST)
            if i == 0:  # the same for the whole program: only offset 0's programs sum the bias gradient
                db += tl.sum(gt.to(tl.float32), axis=0)
        tl.store(out_ptr + (chunk * ND + i) * F * F + f[:, None] * F + f[None, :], acc)
        if i == 0:
            tl.store(db_ptr + chunk * C + tl.arange(0, C), tl.sum(tl.reshape(db, (S, C)), axis=0))


@functools.cache
def _toeplitz_index(taps: int, S: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """Tap of each (offset, s_in, s_out) block of :func:`block_toeplitz` (``taps``: no tap, a zero block), ``dmax``.

    Made once per shape and device (every conv of every training step asks for it); the tensor is read only.
    """
    half = (taps - 1) // 2
    dmax = (half + S - 1) // S
    d = torch.arange(-dmax, dmax + 1, device=device)
    si = torch.arange(S, device=device)
    t = S * d[:, None, None] + si[None, :, None] - si[None, None, :] + half  # [ND, s_in, s_out]
    return torch.where((t >= 0) & (t < taps), t, taps), dmax


def block_toeplitz_adjoint(dm: torch.Tensor, taps: int, C: int) -> torch.Tensor:
    """Gradients ``[ND, S*C, S*C]`` of :func:`block_toeplitz`'s matrices -> the taps' ``[taps, C, C]``.

    The adjoint of its gather: each tap's gradient is the sum of every block the tap fills.
    """
    nd, F, _ = dm.shape
    S = F // C
    index, _ = _toeplitz_index(taps, S, dm.device)
    blocks = dm.reshape(nd, S, C, S, C).permute(0, 1, 3, 2, 4).reshape(-1, C, C)  # [ND * s_in * s_out, c_in, c_out]
    out = dm.new_zeros(taps + 1, C, C)
    out.index_add_(0, index.reshape(-1), blocks)
    return out[:taps]


def block_toeplitz(w: torch.Tensor, S: int) -> tuple[torch.Tensor, int]:
    """Conv weights ``[taps, C, C]`` -> (``[ND, S*C, S*C]`` block-Toeplitz matrices, first offset ``D0``).

    Matrix ``d`` (offset ``D0 + d``) links input position ``s_in`` of a row to output position ``s_out`` of the
    row ``d`` rows earlier through tap ``S * (D0 + d) + s_in - s_out + taps // 2`` (zeros where that is no tap).
    Differentiable in ``w`` (a gather).
    """
    taps, C, _ = w.shape
    index, dmax = _toeplitz_index(taps, S, w.device)
    g = torch.cat([w, w.new_zeros(1, C, C)])[index]  # [ND, s_in, s_out, c_in, c_out]
    return g.permute(0, 1, 3, 2, 4).reshape(index.shape[0], S * C, S * C).contiguous(), -dmax


def block_eligible(channels: int, dil: int, cfg: dict) -> bool:
    """Tell whether the block-Toeplitz kernel can run a ``channels -> channels`` conv of dilation ``dil``."""
    rows = cfg["BLOCK_Q"] * dil
    return cfg["kernel"] == "block" and channels >= 16 and dil & (dil - 1) == 0 and rows >= 16 and rows <= 512


def _block_conv(
    x: torch.Tensor,
    mats: torch.Tensor,
    d0: int,
    bias: torch.Tensor,
    dil: int,
    relu: bool,
    skip: torch.Tensor | None,
    ieee: bool,
    cfg: dict,
) -> torch.Tensor:
    """``[B, L, C]`` -> ``[B, L, C]`` by :func:`block_toeplitz`'s matrices ``mats``, plus ``skip``, ReLU."""
    B, L, C = x.shape
    S = mats.shape[1] // C
    y = torch.empty_like(x)
    src = skip if skip is not None else x
    _block_kernel[(triton.cdiv(L, dil * S * cfg["BLOCK_Q"]), B)](
        x,
        mats,
        bias,
        src,
        y,
        L,
        x.stride(0),
        src.stride(0),
        y.stride(0),
        C=C,
        S=S,
        ND=mats.shape[0],
        D0=d0,
        DIL=dil,
        SKIP=1 if skip is not None else 0,
        RELU=relu,
        IEEE=ieee,
        UPCAST=_interpreted(),
        CACHE=cfg["cache"],
        BLOCK_Q=cfg["BLOCK_Q"],
        num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"],
    )
    return y


class _Conv:
    """One conv's weights as the kernel reads them: ``[taps, cin, cout]`` (``[KPAD, cout]`` for one input channel)."""

    def __init__(self, conv: nn.Conv1d, dtype: torch.dtype, device: torch.device):
        if conv.stride[0] != 1 or conv.groups != 1 or conv.kernel_size[0] % 2 == 0:
            raise ValueError(f"{conv}: only stride-1, ungrouped, odd-sized convolutions are supported")
        w = conv.weight.detach().float()  # [cout, cin, taps]
        cout, cin, taps = w.shape
        self.cin, self.cout, self.taps, self.dil = cin, padded(cout), taps, conv.dilation[0]
        bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros(cout, device=w.device)
        self.bias = torch.zeros(self.cout, dtype=torch.float32, device=device)
        self.bias[:cout] = bias
        if cin == 1:
            self.kpad = padded(taps)
            self.w = torch.zeros(self.kpad, self.cout, dtype=dtype, device=device)
            self.w[:taps, :cout] = w[:, 0, :].t()
        else:
            self.cin, self.kpad = padded(cin), 16
            self.w = torch.zeros(taps, self.cin, self.cout, dtype=dtype, device=device)
            self.w[:, :cin, :cout] = w.permute(2, 1, 0)
        self._mats: dict[int, tuple[torch.Tensor, int]] = {}

    def mats(self, S: int) -> tuple[torch.Tensor, int]:
        """Return the conv's :func:`block_toeplitz` matrices for rows of ``S`` positions (made once)."""
        if S not in self._mats:
            self._mats[S] = block_toeplitz(self.w, S)
        return self._mats[S]


class _Skip:
    """A block's 1x1 skip projection as the kernel reads it (``[sc, cout]``), or the identity."""

    def __init__(self, skip: nn.Module, cin: int, cout: int, dtype: torch.dtype, device: torch.device):
        self.mode, self.sc = _SKIP_IDENTITY, cout
        self.w = self.b = None
        if isinstance(skip, nn.Conv1d):
            w = skip.weight.detach().float()[:, :, 0]  # [cout, cin]
            self.mode = _SKIP_ONE if cin == 1 else _SKIP_PROJECT
            self.sc = 1 if cin == 1 else padded(cin)
            self.w = torch.zeros(self.sc, cout, dtype=dtype if cin > 1 else torch.float32, device=device)
            self.w[: w.shape[1], : w.shape[0]] = w.t()
            self.b = torch.zeros(cout, dtype=torch.float32, device=device)
            self.b[: w.shape[0]] = skip.bias.detach().float()


def conv_cl(
    x: torch.Tensor,
    conv: _Conv | SimpleNamespace,
    relu: bool,
    skip: _Skip | SimpleNamespace | None = None,
    skip_src: torch.Tensor | None = None,
    ieee: bool = False,
    config: dict | None = None,
) -> torch.Tensor:
    """One conv on channels-last ``x`` (``[B, L, cin]``, or ``[B, L]`` for one channel) -> ``[B, L, cout]``."""
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    B, L = x.shape[0], x.shape[1]
    y = torch.empty((B, L, conv.cout), dtype=x.dtype, device=x.device)
    mode = _SKIP_NONE if skip is None else skip.mode
    src = skip_src if skip_src is not None else x
    dummy = conv.bias
    grid = (triton.cdiv(L, cfg["BLOCK_L"]), B)
    _conv_kernel[grid](
        x,
        conv.w,
        conv.bias,
        src,
        skip.w if skip is not None and skip.w is not None else dummy,
        skip.b if skip is not None and skip.b is not None else dummy,
        y,
        L,
        x.stride(0),
        src.stride(0),
        y.stride(0),
        CIN=conv.cin,
        COUT=conv.cout,
        TAPS=conv.taps,
        KPAD=conv.kpad,
        DIL=conv.dil,
        SKIP=mode,
        SC=skip.sc if skip is not None else 1,
        RELU=relu,
        IEEE=ieee,
        UPCAST=_interpreted(),
        CACHE=cfg["cache"],
        BLOCK_L=cfg["BLOCK_L"],
        num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"],
    )
    return y


class _Block:
    """A :class:`ResBlock` on the kernel: ReLU after every conv, the skip added in the last one's store."""

    def __init__(self, block: ResBlock, dtype: torch.dtype, device: torch.device):
        self.convs = [_Conv(c, dtype, device) for c in block.convs]
        first = block.convs[0]
        self.skip = _Skip(block.skip, first.in_channels, self.convs[-1].cout, dtype, device)

    def __call__(self, x: torch.Tensor, ieee: bool, config: dict | None) -> torch.Tensor:
        cfg = {**DEFAULT_CONFIG, **(config or {})}
        y, last = x, len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            skip = self.skip if i == last else None
            if conv.cin == conv.cout and block_eligible(conv.cin, conv.dil, cfg):
                residual = self.skip_tensor(x, y.dtype) if i == last else None
                mats, d0 = conv.mats(cfg["S"])
                y = _block_conv(y, mats, d0, conv.bias, conv.dil, True, residual, ieee, cfg)
            else:
                y = conv_cl(y, conv, relu=True, skip=skip, skip_src=x if i == last else None, ieee=ieee, config=cfg)
        return y

    def skip_tensor(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Return the skip path as a tensor ``[B, L, cout]`` (the block kernel adds one; the taps kernel projects)."""
        if self.skip.mode == _SKIP_IDENTITY:
            return x
        if self.skip.mode == _SKIP_ONE:  # x: [B, L]
            return (x.float()[..., None] * self.skip.w[0] + self.skip.b).to(dtype).contiguous()
        return (x.float() @ self.skip.w.float() + self.skip.b).to(dtype).contiguous()


class TritonDenoiser(nn.Module):
    """A :class:`DenoiseResNet` whose residual blocks run on the Triton kernel (inference only).

    ``dtype``: ``torch.bfloat16`` (activations and weights in bf16, sums in float32: what bf16 autocast does)
    or ``torch.float32`` (IEEE float32 products: equal to the model to ~1e-5, for checking). ``forward`` takes
    and returns what the model's does; the outputs are float32.
    """

    def __init__(self, model: DenoiseResNet, dtype: torch.dtype = torch.bfloat16, config: dict | None = None):
        super().__init__()
        if triton is None:
            raise RuntimeError("Triton is not installed: the GPU convolution kernel needs it (a CUDA build of torch)")
        device = next(model.parameters()).device
        self.dtype, self.ieee = dtype, dtype == torch.float32
        self.config = {**config_from_env(), **(config or {})}
        self.hparams = dict(model.hparams)
        self.filters = model.hparams["filters"]
        self.peak_temperature = getattr(model, "peak_temperature", 1.0)
        self.reg = [_Block(b, dtype, device) for b in model.reg_blocks]
        self.cls = [_Block(b, dtype, device) for b in model.cls_blocks]
        self.reg_out = _head(model.reg_out, device)
        self.cls_out = _head(model.cls_out, device)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: float[B, L] -> (track float32[B, L] >= 0, peak logits float32[B, L])."""
        h = x.to(self.dtype).contiguous()
        for block in self.reg:
            h = block(h, self.ieee, self.config)
        w, b = self.reg_out
        r = torch.matmul(h[..., : self.filters].float(), w) + b
        track = torch.relu(r + x.float() if self.hparams["input_skip"] else r)
        if self.hparams["cls_sees_features"]:
            c = torch.cat([track.unsqueeze(-1).to(self.dtype), h[..., : self.filters]], dim=-1)
            c = nn.functional.pad(c, (0, padded(c.shape[-1]) - c.shape[-1])).contiguous()
        else:
            c = track.to(self.dtype).contiguous()
        for block in self.cls:
            c = block(c, self.ieee, self.config)
        w, b = self.cls_out
        logits = torch.matmul(c[..., : self.filters].float(), w) + b
        return track, logits


def _head(conv: nn.Conv1d, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Return a 1x1 conv to one channel as (weights float32[cin], bias) for a channels-last matmul."""
    return conv.weight.detach().float()[0, :, 0].to(device), conv.bias.detach().float()[0].to(device)


# --------------------------------------------------------------------------- training (forward and backward)

#: the taps-form weight gradient's tiles (positions, tiles per program, warps); ``block_tiles``: row tiles per
#: program of the block form's (:func:`_block_weight_grad`). These are the fewest tiles a program takes: on a card,
#: :func:`wgrad_tiles` gives a program more (up to ``max_tiles``) while every SM keeps ``programs_per_sm`` of
#: them, since each program writes a float32 partial sum of its own (at batch 128 and 16 tiles, the taps form's
#: partials were ~0.4 GB a conv, written and read again: ~5 ms a step on an H100)
WGRAD_CONFIG = {"BLOCK_L": 64, "tiles": 16, "num_warps": 4, "block_tiles": 32, "max_tiles": 128, "programs_per_sm": 8}


def _sm_count(device: torch.device) -> int | None:
    """Return the card's streaming multiprocessors (None off a card: Triton's interpreter)."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else None


def wgrad_tiles(n_tiles: int, per_chunk: int, least: int, sms: int | None) -> int:
    """Return the tiles per program of a weight-gradient kernel: ``least``, doubled while the card stays busy.

    ``n_tiles`` tiles in all, ``per_chunk`` programs per chunk of tiles (taps or offsets), ``sms`` the card's
    SMs. Fewer, larger programs write fewer partial sums; the card needs ``programs_per_sm`` per SM to hide its
    latencies. Without ``sms`` (off a card), ``least``.
    """
    cfg = WGRAD_CONFIG
    if not sms:
        return least
    want = cfg["programs_per_sm"] * sms
    tiles = least
    while tiles * 2 <= cfg["max_tiles"] and -(-n_tiles // (tiles * 2)) * per_chunk >= want:
        tiles *= 2
    return tiles


@functools.cache
def _train_config() -> dict:
    return config_from_env()


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _square_conv(
    x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, dil: int, relu: bool, skip: torch.Tensor | None, ieee: bool
) -> torch.Tensor:
    """``[B, L, C]`` -> ``[B, L, C]``: the kernel with ``w`` ``[taps, C, C]``, plus ``skip`` (same shape), ReLU."""
    cfg = _train_config()
    C = x.shape[-1]
    if block_eligible(C, dil, cfg):
        mats, d0 = block_toeplitz(w, cfg["S"])
        return _block_conv(x, mats, d0, bias, dil, relu, skip, ieee, cfg)
    weights = SimpleNamespace(w=w, bias=bias, cin=C, cout=C, taps=w.shape[0], kpad=16, dil=dil)  # as a _Conv
    identity = SimpleNamespace(mode=_SKIP_IDENTITY, sc=C, w=None, b=None)  # as a _Skip
    return conv_cl(x, weights, relu, identity if skip is not None else None, skip, ieee, cfg)


def _weight_grad(
    x: torch.Tensor, g: torch.Tensor, taps: int, dil: int, ieee: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the weight gradient ``[taps, C, C]`` and the bias gradient ``[C]`` (float32) from the same reads.

    For each tap, the shifted input's channels against the output gradient's; the bias's is the sum of ``g``.
    The block form (:func:`weight_grad_form`, where it runs the conv): through the block form's matrices
    (:func:`_block_weight_grad`); else one ``C x C`` product per tap.
    """
    train = _train_config()
    if weight_grad_form(train) == "block" and block_eligible(x.shape[-1], dil, train):
        return _block_weight_grad(x, g, taps, dil, ieee, train)
    cfg = WGRAD_CONFIG
    B, L, C = x.shape
    per_row = triton.cdiv(L, cfg["BLOCK_L"])
    tiles = wgrad_tiles(B * per_row, taps, cfg["tiles"], _sm_count(x.device))
    chunks = triton.cdiv(B * per_row, tiles)
    partial = torch.empty((chunks, taps, C, C), dtype=torch.float32, device=x.device)
    db = torch.empty((chunks, C), dtype=torch.float32, device=x.device)
    _wgrad_kernel[(taps, chunks)](
        x,
        g,
        partial,
        db,
        L,
        per_row,
        B * per_row,
        x.stride(0),
        g.stride(0),
        C=C,
        TAPS=taps,
        DIL=dil,
        TILES=tiles,
        IEEE=ieee,
        UPCAST=_interpreted(),
        BLOCK_L=cfg["BLOCK_L"],
        num_warps=cfg["num_warps"],
    )
    return partial.sum(0), db.sum(0)  # a fixed order: the same gradients every run (no atomics)


def _block_weight_grad(
    x: torch.Tensor, g: torch.Tensor, taps: int, dil: int, ieee: bool, cfg: dict
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_weight_grad` as the gradients of :func:`block_toeplitz`'s matrices (``_block_wgrad_kernel``) summed.

    One ``S*C x S*C`` product per offset and row tile (9 offsets at S = 8 for the reference shape's 51 taps)
    instead of 51 ``C x C`` products: each tile of the input and the gradient is read once per offset.
    """
    B, L, C = x.shape
    S, q = cfg["S"], cfg["BLOCK_Q"]
    index, dmax = _toeplitz_index(taps, S, x.device)
    nd = index.shape[0]
    per_row = triton.cdiv(L, dil * S * q)
    tiles = wgrad_tiles(B * per_row, nd, WGRAD_CONFIG["block_tiles"], _sm_count(x.device))
    chunks = triton.cdiv(B * per_row, tiles)
    partial = torch.empty((chunks, nd, S * C, S * C), dtype=torch.float32, device=x.device)
    db = torch.empty((chunks, C), dtype=torch.float32, device=x.device)
    _block_wgrad_kernel[(nd, chunks)](
        x,
        g,
        partial,
        db,
        L,
        per_row,
        B * per_row,
        x.stride(0),
        g.stride(0),
        C=C,
        S=S,
        ND=nd,
        D0=-dmax,
        DIL=dil,
        TILES=tiles,
        IEEE=ieee,
        UPCAST=_interpreted(),
        BLOCK_Q=q,
        num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"],
    )
    return block_toeplitz_adjoint(partial.sum(0), taps, C), db.sum(0)  # a fixed order: the same every run


#: the form "auto" stands for in this process (:func:`choose_weight_grad`); "taps" until it has chosen
_chosen = {"wgrad": "taps"}


def use_weight_grad(form: str) -> None:
    """Make "auto" stand for ``form`` ("taps" or "block") in this process (e.g. rank 0's choice, broadcast)."""
    if form not in ("taps", "block"):
        raise ValueError(form)
    _chosen["wgrad"] = form


def weight_grad_form(cfg: dict) -> str:
    """Return the weight-gradient form training runs with ``cfg``: as configured, or what "auto" chose."""
    form = cfg.get("wgrad", "auto")
    return _chosen["wgrad"] if form == "auto" else form


def _train_step_ms(model: DenoiseResNet, x: torch.Tensor, dtype: torch.dtype | None) -> float:
    """Run one forward and backward of ``model`` on ``x`` (gradients left in place); return its milliseconds.

    On a GPU the card's time between two events, on a CPU (Triton's interpreter, in tests) the wall time.
    """
    model.zero_grad(set_to_none=True)
    cuda = x.device.type == "cuda"
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
    t0 = time.perf_counter()
    with torch.autocast(x.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        track, logits = model(x)
    (track.float().mean() + logits.float().mean()).backward()
    if cuda:
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    return (time.perf_counter() - t0) * 1e3


def choose_weight_grad(model: DenoiseResNet, batch: int, width: int, dtype: torch.dtype | None, reps: int = 3) -> dict:
    """Time a training step with each weight-gradient form on the card; make "auto" mean the faster (issue 23).

    A step (forward, backward) of ``batch`` windows of ``width`` bases, as training runs them, ``reps`` times a form
    after one untimed step that compiles its kernels for these shapes. The block form is taken only when it is
    faster by :data:`WGRAD_MARGIN` and its gradients agree with the taps form's (else the taps form, warned).
    Draws from its own generator, not the run's. Returns what it measured (logged by the caller); with the form
    fixed in ``ATACDENOISE_TRITON_CONFIG``, or no conv the block form can run, nothing is timed.
    """
    cfg = _train_config()
    if cfg.get("wgrad", "auto") != "auto":
        return {"form": cfg["wgrad"], "how": "configured"}
    hp = model.hparams
    C = padded(hp["filters"] + 1 if hp["cls_sees_features"] else hp["filters"])
    dils = {conv.dilation[0] for blk in [*model.reg_blocks, *model.cls_blocks] for conv in blk.convs}
    if not any(block_eligible(C, d, cfg) for d in dils):
        _chosen["wgrad"] = "taps"
        return {"form": "taps", "how": "no conv the block form runs"}
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.poisson(torch.full((batch, width), 2.0, device=device), generator=gen)
    params = [p for p in model.parameters() if p.requires_grad]
    timed, grads = {}, {}
    for form in ("taps", "block"):
        _chosen["wgrad"] = form
        try:
            first = _train_step_ms(model, x, dtype)  # compiles this form's kernels for these shapes
        except Exception as exc:  # the block form only: the taps form already ran in the start-up probe
            if form == "taps":
                raise
            _chosen["wgrad"] = "taps"
            model.zero_grad(set_to_none=True)
            log.warning(
                "the block form's weight gradient failed on this card (%s: %s): taps form used",
                type(exc).__name__,
                str(exc)[:300],
            )
            return {"form": "taps", "how": f"block form failed ({type(exc).__name__})"}
        grads[form] = [torch.zeros_like(p) if p.grad is None else p.grad.detach().float().clone() for p in params]
        timed[form] = sorted(_train_step_ms(model, x, dtype) for _ in range(reps))[reps // 2]
        log.debug("weight gradient, %s form: first step %.1f ms, then %.1f ms", form, first, timed[form])
    model.zero_grad(set_to_none=True)
    worst = max(
        float((a - b).abs().max() / a.abs().max().clamp_min(1e-12)) for a, b in zip(grads["taps"], grads["block"])
    )
    agree = worst <= 5e-2  # bf16 operands, float32 sums in another order: ~1e-3 apart
    faster = timed["block"] <= WGRAD_MARGIN * timed["taps"]
    _chosen["wgrad"] = "block" if faster and agree else "taps"
    if not agree:
        log.warning(
            "the block form's weight gradients differ from the taps form's by %.3g (relative): taps form used; "
            'please report it (ATACDENOISE_TRITON_CONFIG=\'{"wgrad": "taps"}\' skips the check)',
            worst,
        )
    return {
        "form": _chosen["wgrad"],
        "how": "timed",
        "taps_ms": timed["taps"],
        "block_ms": timed["block"],
        "batch": batch,
        "grad_difference": worst,
    }


class _ConvReLU(torch.autograd.Function):
    """``relu(conv(x) + bias [+ skip])`` on the kernel, channels-last, and its gradients on the kernel too.

    The input gradient is the same convolution with the taps reversed and the weights transposed (skipped where
    the input needs none: the network's first conv); the weight and bias gradients come from one more kernel
    over the input and the gradient (:func:`_weight_grad`).
    """

    @staticmethod
    def forward(ctx, x, w, bias, skip, dil: int, ieee: bool):
        y = _square_conv(x, w, bias, dil, True, skip, ieee)
        ctx.save_for_backward(x, w, y)
        ctx.dil, ctx.ieee, ctx.skip = dil, ieee, skip is not None
        return y

    @staticmethod
    def backward(ctx, grad):
        x, w, y = ctx.saved_tensors
        # through the ReLU in one pass (ReLU's own backward: no mask written and read back)
        g = torch.ops.aten.threshold_backward(grad, y, 0).to(x.dtype).contiguous()
        dx = None
        if ctx.needs_input_grad[0]:  # not for the network's first conv: its input is the data
            reverse = w.flip(0).transpose(1, 2).contiguous()
            zero = torch.zeros(w.shape[2], dtype=torch.float32, device=w.device)
            dx = _square_conv(g, reverse, zero, ctx.dil, False, None, ctx.ieee)
        dw, db = _weight_grad(x, g, w.shape[0], ctx.dil, ctx.ieee)  # db: float32 sums of g, from the same reads
        return dx, dw.to(w.dtype), db, (g if ctx.skip else None), None, None


def _pad_last(t: torch.Tensor, size: int) -> torch.Tensor:
    return nn.functional.pad(t, (0, size - t.shape[-1]))


def _block(block: ResBlock, h: torch.Tensor, dtype: torch.dtype, ieee: bool) -> torch.Tensor:
    """Run a residual block on ``h`` ``[B, L, C]`` (channels padded with zeros) -> ``[B, L, C]``, differentiably."""
    C = h.shape[-1]
    if isinstance(block.skip, nn.Conv1d):  # the 1x1 projection in PyTorch, added by the last conv's store
        w = block.skip.weight[:, :, 0].t()  # [cin, cout]
        proj = nn.functional.pad(w, (0, C - w.shape[1], 0, C - w.shape[0]))  # [C, C], zero padded
        bias = _pad_last(block.skip.bias.float(), C)
        if dtype == torch.float32:
            skip = (h @ proj + bias).contiguous()
        else:  # one GEMM with its bias in the activations' type, as autocast runs a 1x1 conv: float32 sums, and
            # no float32 copies of the activations going in and out (~12 activations' bytes forward, ~13 backward)
            skip = torch.addmm(bias.to(dtype), h.reshape(-1, C), proj.to(dtype)).reshape(h.shape)
    else:
        skip = h
    y, last = h, len(block.convs) - 1
    for i, conv in enumerate(block.convs):
        w = conv.weight.permute(2, 1, 0)  # [taps, cin, cout]
        w = nn.functional.pad(w, (0, C - w.shape[2], 0, C - w.shape[1])).to(dtype).contiguous()
        b = _pad_last(conv.bias.float(), C)
        y = _ConvReLU.apply(y, w, b, skip if i == last else None, conv.dilation[0], ieee)
    return y


def train_forward(model: DenoiseResNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``model(x)`` with its convolutions on the kernel, forward and backward (training).

    The precision is the autocast's (bf16 or fp16 activations and weights, float32 sums), else float32 with IEEE
    products. Every channel count is padded to one power of two >= 16 (zero weights; their gradients are dropped
    by the padding's backward), the network's input and the track to it as well. Differentiable with respect to
    the model's own parameters, so the optimizer, checkpoints and DistributedDataParallel see the model as always.
    """
    kind = x.device.type
    dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else torch.float32
    ieee = dtype == torch.float32
    hp = model.hparams
    f = hp["filters"]
    C = padded(f + 1 if hp["cls_sees_features"] else f)
    with torch.autocast(kind, enabled=False):  # the heads and projections in float32, as the kernel's sums
        xf = x.float()
        h = _pad_last(xf.unsqueeze(-1).to(dtype), C).contiguous()  # cast, then pad: 1 channel cast, not 16
        for block in model.reg_blocks:
            h = _block(block, h, dtype, ieee)
        r = h[..., :f].float() @ model.reg_out.weight[0, :, 0] + model.reg_out.bias[0]
        track = torch.relu(r + xf if hp["input_skip"] else r)
        c = track.unsqueeze(-1).to(dtype)
        if hp["cls_sees_features"]:
            c = torch.cat([c, h[..., :f]], dim=-1)
        c = _pad_last(c, C).contiguous()
        for block in model.cls_blocks:
            c = _block(block, c, dtype, ieee)
        logits = c[..., :f].float() @ model.cls_out.weight[0, :, 0] + model.cls_out.bias[0]
    return track, logits
