"""Native dilated 1-D convolutions for CPU inference, compiled for the machine they run on.

Why: PyTorch runs the model's convolutions (15 channels, 51 taps 8 bases apart)
through oneDNN at 25-35 % of the machine's fp32 matrix-product rate: 15
channels leave its GEMM-like blocking with little reuse.

Two kernels, chosen per layer by :func:`choose`:

* **FFT** (:class:`FFTConv1d`, the reference shape's 15 -> 15 convs):
  overlap-save over 4,096-base blocks, the 15 channels in the lanes of one
  16-float vector, two blocks per complex FFT, the channel mixing a 15 x 15
  complex product per frequency: ~15x fewer operations than the direct sum,
  ~4x faster than the direct kernel below and ~10x oneDNN.
* **direct** (:class:`NativeConv1d`, thin convs such as a branch's first, 1 ->
  15): a block of 5 output channels x 24 positions in 15 vector accumulators;
  for every input channel and tap, 3 input vectors are loaded and 5 weights
  broadcast: about the matrix-product rate.

Both add a residual and apply the ReLU in their output pass, so a residual
block of the model (:class:`NativeResBlock`) makes one pass over memory per
conv; 1-tap convs become one batched matrix product (:class:`PointwiseConv1d`).
Timings: ``benchmarks/infer_cpu.py``.

Where the C lives: ``cpuconv_direct.c`` and ``cpuconv_fft.c`` beside this
module, two files because the kernels share no code (each has its own vector
type and parameters). Each is plain C whose parameters come as ``-D`` defines,
declared here in :data:`NATIVE_SOURCES` (``COB``, ``VW``, ``R``, ``PCH`` for
the direct kernel; ``NP``, ``CP``, ``L1N`` for the FFT one); a file stops at
an ``#error`` when one is missing. ``tests/test_native.py`` compiles both
with ``-Wall -Wextra -Werror`` and these defines, and runs them under the
undefined-behaviour and address sanitizers.

How: :mod:`atacdenoise.native` compiles each file on first use, once per
machine type (``cc -O3 -march=native``; ``$CC`` overrides), into a cache
directory (``$ATACDENOISE_CACHE`` or ``~/.cache/atacdenoise``, mode 0700),
keyed by the file, the defines, the compiler and the CPU's feature flags, so
nodes with other CPUs sharing a home directory build their own (first use, not
install time: ``-march=native`` must match the node that runs it). A cached
library is loaded only if it and its directory are the user's own and
writable by nobody else; otherwise a private copy is built (see
:mod:`atacdenoise.native`). Libraries are loaded with ctypes (calls release
the GIL, so ``threads`` Python threads use ``threads`` cores). Without a
compiler, or with ``ATACDENOISE_NATIVE_CONV=0``, inference uses PyTorch's
convolutions (a log line says which); a compiler that fails on the kernels is
logged as an error (a bug) and inference falls back the same way.
``ATACDENOISE_CONV_ALGO=direct`` (or ``fft``) forces one kernel. Sums run in
another order than oneDNN's: outputs agree to ~1e-6 relative, not bit for bit;
a tile's outputs do not depend on the batch it is in nor on the thread count.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from atacdenoise import native
from atacdenoise.errors import InputError
from atacdenoise.model.network import ResBlock

log = logging.getLogger(__name__)

#: output channels per register block (weights are padded to a multiple), vector width, vectors per block
COB, VW = 5, 8


def _default_r() -> int:
    """Vectors of positions per block: 3 where AVX-512 gives 32 vector registers (15 accumulators fit), else 2 (16)."""
    return 3 if "avx512f" in native.cpu_flags().split() else 2


R = int(os.environ.get("ATACDENOISE_CONV_R", 0)) or _default_r()
#: positions per cache chunk (a multiple of VW * R): 15 channels x (2,400 + context) floats stay in L2
PCH = int(os.environ.get("ATACDENOISE_CONV_PCH", 2400))

#: block pairs transformed per pass over a layer's spectra (their accumulators stay in registers: 2 x NP vectors)
NP = 4 if _default_r() == 3 else 2
#: FFT stages below this many points run on one L1-resident sub-block at a time
L1N = 256
#: lanes per vector of the FFT convolution: channels are the SIMD lanes, so cin and cout must be <= CP
CP = 16

#: the kernels' C files (beside this module) and the ``-D`` defines each is compiled with, by library name
NATIVE_SOURCES: dict[str, tuple[Path, dict[str, int]]] = {
    "cpuconv_direct": (Path(__file__).with_name("cpuconv_direct.c"), {"COB": COB, "VW": VW, "R": R, "PCH": PCH}),
    "cpuconv_fft": (Path(__file__).with_name("cpuconv_fft.c"), {"NP": NP, "CP": CP, "L1N": L1N}),
}
_P, _I, _S = ctypes.c_void_p, ctypes.c_int, ctypes.c_ssize_t
#: each library's function and its argument types
_FUNCTIONS = {
    "cpuconv_direct": ("dilconv1d", [_P, _S, _I, _P, _P, _I, _I, _I, _P, _S, _I, _I, _I, _P, _I]),
    "cpuconv_fft": ("fftconv1d", [_P, _S, _I, _P, _P, _I, _I, _I, _I, _P, _I, _I, _I, _I, _P, _P, _P, _P, _P]),
}


@dataclass(frozen=True)
class Kernels:
    """The two compiled kernels (ctypes functions, each from its own library; calls release the GIL)."""

    dilconv1d: Callable[..., None]
    fftconv1d: Callable[..., None]


def bind(libraries: Mapping[str, ctypes.CDLL]) -> Kernels:
    """Return the kernels of the loaded libraries (keyed as :data:`NATIVE_SOURCES`), their argument types set."""
    functions = {}
    for name, (function, argtypes) in _FUNCTIONS.items():
        fn = getattr(libraries[name], function)
        fn.argtypes, fn.restype = argtypes, None
        functions[function] = fn
    return Kernels(**functions)


_lib: Kernels | None = None
_tried = False


def load_library() -> Kernels | None:
    """Return both kernels, building them on first use; None when one cannot be built or they are turned off."""
    global _lib, _tried
    if _tried:
        return _lib
    _tried = True
    if native.off("ATACDENOISE_NATIVE_CONV"):
        log.info("native CPU convolution off (ATACDENOISE_NATIVE_CONV); using PyTorch's")
        return None
    libraries = {}
    for name, (source, defines) in NATIVE_SOURCES.items():
        lib = native.build(name, source, defines, f"native CPU convolution ({name}.c; PyTorch's are 3-10x slower)")
        if lib is None:
            return None
        libraries[name] = lib
    _lib = bind(libraries)
    return _lib


def load_kernel() -> Callable[..., None] | None:
    """Return the direct convolution kernel (a ctypes function), or None (see :func:`load_library`)."""
    lib = load_library()
    return None if lib is None else lib.dilconv1d


def eligible(conv: nn.Module) -> bool:
    """Tell whether the kernels compute this Conv1d: stride 1, no groups, 'same' zero padding, an odd kernel > 1 tap."""
    if not isinstance(conv, nn.Conv1d):
        return False
    k, d = conv.kernel_size[0], conv.dilation[0]
    pad = conv.padding if isinstance(conv.padding, str) else conv.padding[0]
    same = pad == "same" or pad == (k - 1) * d // 2
    return k > 1 and k % 2 == 1 and conv.stride[0] == 1 and conv.groups == 1 and conv.padding_mode == "zeros" and same


def _run_all(pool: ThreadPoolExecutor | None, run, items: list) -> None:
    """``run(item)`` for every item: on ``pool`` when there is one and more than one item, else here."""
    if pool is None or len(items) == 1:
        for item in items:
            run(item)
    else:
        list(pool.map(run, items))


def _check_input(conv: nn.Module, x: torch.Tensor, residual: torch.Tensor | None) -> None:
    if x.dtype != torch.float32 or x.device.type != "cpu" or x.dim() != 3 or x.shape[1] != conv.cin:
        raise ValueError(
            f"{type(conv).__name__} expects float32 CPU input [B, {conv.cin}, L], got {tuple(x.shape)} {x.dtype}"
        )
    want = (x.shape[0], conv.cout, x.shape[2])
    if residual is not None and (
        residual.dtype != torch.float32 or residual.device.type != "cpu" or tuple(residual.shape) != want
    ):
        raise ValueError(
            f"{type(conv).__name__}: residual must be float32 CPU {want}, got {tuple(residual.shape)} {residual.dtype}"
        )


class NativeConv1d(nn.Module):
    """Inference-only stand-in for an eligible ``nn.Conv1d`` (float32, CPU), computed by the native kernel."""

    def __init__(self, conv: nn.Conv1d, kernel, threads: int, pool: ThreadPoolExecutor | None = None):
        super().__init__()
        w = conv.weight.detach().float().cpu().numpy()
        cout, cin, k = w.shape
        padded = -(-cout // COB) * COB
        wp = np.zeros((padded, cin, k), np.float32)
        wp[:cout] = w
        self.wt = np.ascontiguousarray(wp.reshape(padded // COB, COB, cin, k).transpose(0, 2, 3, 1))
        bias = np.zeros(padded, np.float32)
        if conv.bias is not None:
            bias[:cout] = conv.bias.detach().float().cpu().numpy()
        self.bias = bias
        self.cin, self.cout, self.padded, self.k = cin, cout, padded, k
        self.dil = conv.dilation[0]
        self.pad = (k - 1) * self.dil // 2
        self.kernel = kernel
        self.threads = max(1, int(threads))
        self._pool = pool if self.threads > 1 else None

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None, relu: bool = False) -> torch.Tensor:
        """conv(x), plus ``residual`` ([B, cout, L]) if given, then ReLU if ``relu``: one pass over the output."""
        _check_input(self, x, residual)
        batch, _, length = x.shape
        xp = torch.nn.functional.pad(x, (self.pad, self.pad)).contiguous().numpy()
        res = None if residual is None else residual.contiguous().numpy()
        y = np.empty((batch, self.padded, length), np.float32)
        # work items: (tile, position range); ranges are multiples of the kernel's 24-position block
        step = max(VW * R, -(-length * batch // self.threads // (VW * R)) * (VW * R))
        items = [(b, lo, min(length, lo + step)) for b in range(batch) for lo in range(0, length, step)]

        def run(item: tuple[int, int, int]) -> None:
            b, lo, hi = item
            self.kernel(
                xp[b].ctypes.data,
                xp.shape[2],
                self.cin,
                self.wt.ctypes.data,
                self.bias.ctypes.data,
                self.padded,
                self.k,
                self.dil,
                y[b].ctypes.data,
                length,
                lo,
                hi,
                int(relu),
                None if res is None else res[b].ctypes.data,
                self.cout,
            )

        _run_all(self._pool, run, items)
        out = torch.from_numpy(y)
        return out if self.padded == self.cout else out[:, : self.cout]


#: smallest and largest FFT block; a block is the smallest power of two >= FFT_SPAN_FACTOR x the kernel's span
FFT_MIN_N, FFT_MAX_N, FFT_SPAN_FACTOR = 1024, 16384, 8
#: "auto" (FFT where it is cheaper, see :func:`choose`), "fft" or "direct" (``$ATACDENOISE_CONV_ALGO``)
ALGO_ENV = "ATACDENOISE_CONV_ALGO"
#: in "auto", a conv runs by FFT when it has at least this many multiply-adds per position (cin x cout x taps)
FFT_MIN_MACS = 1000


def fft_size(span: int) -> int | None:
    """FFT block length for a kernel spanning ``span + 1`` bases, or None when the span is too long for one block."""
    n = FFT_MIN_N
    while n < FFT_SPAN_FACTOR * span and n < FFT_MAX_N:
        n *= 2
    return n if n - span >= n // 2 else None


def fft_eligible(conv: nn.Module) -> bool:
    """Tell whether the FFT kernel runs this :func:`eligible` conv: <= CP channels in and out, span within one block."""
    return (
        eligible(conv)
        and conv.in_channels <= CP
        and conv.out_channels <= CP
        and fft_size((conv.kernel_size[0] - 1) * conv.dilation[0]) is not None
    )


def choose(conv: nn.Module) -> str | None:
    """Which native kernel runs ``conv``: "fft", "direct", or None (PyTorch's)."""
    if not eligible(conv):
        return None
    algo = os.environ.get(ALGO_ENV, "auto").strip().lower()
    if algo not in ("auto", "fft", "direct"):
        raise InputError(f"environment variable {ALGO_ENV}={algo!r}: expected auto, fft or direct (or unset it)")
    if algo == "direct" or not fft_eligible(conv):
        return "direct"
    macs = conv.in_channels * conv.out_channels * conv.kernel_size[0]
    return "fft" if algo == "fft" or macs >= FFT_MIN_MACS else "direct"


@functools.lru_cache(maxsize=8)
def _fft_tables(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the twiddles (stage h at [h, 2h): exp(-i pi j / h)), their conjugates' imaginary parts, the bit-reversal.

    The bit-reversal permutes 0..n-1.
    """
    twr, twi = np.zeros(n, np.float32), np.zeros(n, np.float32)
    h = 1
    while h < n:
        ang = -np.pi * np.arange(h) / h
        twr[h : 2 * h], twi[h : 2 * h] = np.cos(ang), np.sin(ang)
        h *= 2
    bits = n.bit_length() - 1
    rev = np.zeros(n, np.int64)
    for b in range(bits):
        rev |= ((np.arange(n) >> b) & 1) << (bits - 1 - b)
    return twr, twi, -twi, rev


class FFTConv1d(nn.Module):
    """Inference-only stand-in for an ``nn.Conv1d`` (:func:`fft_eligible`, float32, CPU), computed by FFT.

    Overlap-save: the padded input is cut into blocks of ``n`` bases that
    overlap by the kernel's span; each block's ``n - span`` first outputs are
    exact. Channels are the vector lanes; two blocks go through one complex FFT
    as its real and imaginary parts (the kernel is real, so the two results
    come back apart); the channel mixing is a complex 15 x 15 product per
    frequency. ~15x fewer operations than the direct sum for the reference
    shape; outputs agree with it to ~1e-6 relative (float32 rounding).
    """

    def __init__(
        self,
        conv: nn.Conv1d,
        lib,
        threads: int,
        pool: ThreadPoolExecutor | None = None,
        workspaces: list[np.ndarray] | None = None,
    ):
        super().__init__()
        w = conv.weight.detach().double().cpu().numpy()
        cout, cin, k = w.shape
        self.cin, self.cout, self.k, self.dil = cin, cout, k, conv.dilation[0]
        self.span = (k - 1) * self.dil
        self.pad = self.span // 2
        self.n = fft_size(self.span)
        self.logn = self.n.bit_length() - 1
        self.hop = self.n - self.span
        self.twr, self.twi, self.twi_inv, rev = _fft_tables(self.n)
        # correlation with the dilated kernel = product with the conjugate spectrum; 1/n folded in; bins in the
        # bit-reversed order the decimation-in-frequency FFT leaves them
        g = np.zeros((cout, cin, self.n))
        g[:, :, : self.span + 1 : self.dil] = w
        spec = np.conj(np.fft.fft(g, axis=-1))[:, :, rev] / self.n
        h = np.zeros((self.n, cin, 2, CP), np.float32)
        h[:, :, 0, :cout] = spec.real.transpose(2, 1, 0)
        h[:, :, 1, :cout] = spec.imag.transpose(2, 1, 0)
        self.h = h
        self.bias = np.zeros(CP, np.float32)
        if conv.bias is not None:
            self.bias[:cout] = conv.bias.detach().float().cpu().numpy()
        self.fn = lib.fftconv1d
        self.threads = max(1, int(threads))
        self._pool = pool if self.threads > 1 else None
        self._workspaces = workspaces if workspaces is not None else []

    def _workspace(self, i: int) -> np.ndarray:
        size = NP * 2 * self.n * CP
        while len(self._workspaces) <= i:
            self._workspaces.append(np.empty(0, np.float32))
        if self._workspaces[i].size < size:
            self._workspaces[i] = np.empty(size, np.float32)
        return self._workspaces[i]

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None, relu: bool = False) -> torch.Tensor:
        """conv(x), plus ``residual`` ([B, cout, L]) if given, then ReLU if ``relu``: one pass over the output."""
        _check_input(self, x, residual)
        batch, _, length = x.shape
        xc = x.contiguous().numpy()
        res = None if residual is None else residual.contiguous().numpy()
        y = np.empty((batch, self.cout, length), np.float32)
        nblk = -(-length // self.hop)
        pairs = batch * -(-nblk // 2)  # blocks are transformed in pairs, within a tile
        per = max(1, -(-pairs // self.threads))
        items = [(i, lo, min(pairs, lo + per)) for i, lo in enumerate(range(0, pairs, per))]
        works = [self._workspace(i) for i, _, _ in items]

        def run(item: tuple[int, int, int]) -> None:
            i, lo, hi = item
            self.fn(
                xc.ctypes.data,
                length,
                self.cin,
                self.h.ctypes.data,
                self.bias.ctypes.data,
                self.cout,
                self.logn,
                self.hop,
                self.pad,
                y.ctypes.data,
                nblk,
                lo,
                hi,
                int(relu),
                None if res is None else res.ctypes.data,
                self.twr.ctypes.data,
                self.twi.ctypes.data,
                self.twi_inv.ctypes.data,
                works[i].ctypes.data,
            )

        _run_all(self._pool, run, items)
        return torch.from_numpy(y)


class PointwiseConv1d(nn.Module):
    """Inference-only stand-in for a 1-tap ``nn.Conv1d``: one batched matrix product.

    oneDNN takes ~10x longer on the model's 1 -> 15 and 15 -> 1 channel maps.
    """

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        self.w = conv.weight.detach().float()[:, :, 0].clone()
        b = conv.bias.detach().float() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.b = b.clone().view(1, -1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return conv(x) for ``x`` [B, cin, L]."""
        return torch.baddbmm(self.b, self.w.expand(x.shape[0], -1, -1), x)


def pointwise_eligible(conv: nn.Module) -> bool:
    """Tell whether ``conv`` is a plain 1-tap Conv1d: stride 1, no padding, no groups."""
    return (
        isinstance(conv, nn.Conv1d)
        and conv.kernel_size[0] == 1
        and conv.stride[0] == 1
        and conv.groups == 1
        and conv.padding in ((0,), "valid")
    )


class NativeResBlock(nn.Module):
    """A :class:`atacdenoise.model.network.ResBlock` whose convs are native.

    Each conv applies its ReLU, and the last one adds the skip path, in its
    output pass (the same arithmetic, two fewer passes over memory per conv).
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        self.convs, self.skip = block.convs, block.skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the block's output for ``x``, as the ResBlock it stands for."""
        y, last = x, len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            y = conv(y, residual=self.skip(x) if i == last else None, relu=True)
        return y


def with_native_convs(model: nn.Module, threads: int | None = None) -> tuple[nn.Module, int]:
    """Return a copy of ``model`` whose eligible convolutions run on the native kernels, and how many were replaced.

    Each conv runs by FFT or by the direct kernel as :func:`choose` says.
    Returns ``(model, 0)`` unchanged when the library is unavailable. For
    inference only (no gradients), float32 on the CPU.
    """
    lib = load_library()
    if lib is None:
        return model, 0
    threads = threads or torch.get_num_threads()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="conv") if threads > 1 else None  # shared by every layer
    workspaces: list[np.ndarray] = []  # per thread, shared by every FFT layer (they run one after another)
    fast = copy.deepcopy(model)
    replaced = {"fft": 0, "direct": 0}
    for module in list(fast.modules()):
        for child_name, child in list(module.named_children()):
            algo = choose(child)
            if algo == "fft":
                setattr(module, child_name, FFTConv1d(child, lib, threads, pool, workspaces))
            elif algo == "direct":
                setattr(module, child_name, NativeConv1d(child, lib.dilconv1d, threads, pool))
            elif pointwise_eligible(child):
                setattr(module, child_name, PointwiseConv1d(child))
            if algo:
                replaced[algo] += 1
    for module in list(fast.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, ResBlock) and all(isinstance(c, (FFTConv1d, NativeConv1d)) for c in child.convs):
                setattr(module, child_name, NativeResBlock(child))
    if replaced["fft"] or replaced["direct"]:
        log.debug("native convolutions: %d by FFT, %d direct", replaced["fft"], replaced["direct"])
    return fast, replaced["fft"] + replaced["direct"]
