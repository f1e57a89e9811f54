"""A direct dilated 1-D convolution for CPU inference, compiled for the machine it runs on.

Why: PyTorch runs the model's convolutions (15 channels, 51 taps 8 bases apart)
through oneDNN at 25-35 % of the machine's fp32 matrix-product rate: 15
channels leave its GEMM-like blocking with little reuse. The kernel below
keeps a block of 5 output channels x 24 positions in 15 vector accumulators
and, for every input channel and tap, loads 3 input vectors and broadcasts 5
weights: ~3x oneDNN on the reference shape, about the matrix-product rate
(``benchmarks/infer_cpu.py``).

How: the C source is compiled once per machine with the system C compiler
(``cc -O3 -march=native``; ``$CC`` overrides) into a cache directory
(``$ATACDENOISE_CACHE`` or ``~/.cache/atacdenoise``), keyed by the source, the
compiler and the CPU's feature flags, so nodes with other CPUs sharing a home
directory build their own; it is loaded with ctypes (calls release the GIL,
so ``threads`` Python threads use ``threads`` cores). Without a compiler, or
with ``ATACDENOISE_NATIVE_CONV=0``, inference uses PyTorch's convolutions
(a log line says which). Sums run in another order than oneDNN's: outputs
agree to ~1e-6 relative, not bit for bit.
"""

from __future__ import annotations

import copy
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

#: output channels per register block (weights are padded to a multiple), vector width, vectors per block
COB, VW = 5, 8


def _default_r() -> int:
    """Vectors of positions per block: 3 where AVX-512 gives 32 vector registers (15 accumulators fit), else 2 (16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return 2
    return 3 if " avx512f" in flags else 2


R = int(os.environ.get("ATACDENOISE_CONV_R", 0)) or _default_r()
#: positions per cache chunk (a multiple of VW * R): 15 channels x (2,400 + context) floats stay in L2
PCH = int(os.environ.get("ATACDENOISE_CONV_PCH", 2400))

SOURCE = r"""
#include <stddef.h>
#define COB %(cob)d
#define VW %(vw)d
#define R %(r)d
#define PCH %(pch)d
typedef float vf __attribute__((vector_size(VW * 4), aligned(4)));

static inline vf bcast(float a) { vf v; for (int i = 0; i < VW; i++) v[i] = a; return v; }

/* y[co][p] = bias[co] + sum_ci sum_t w[co][ci][t] * x[ci][p + t*dil] for p in [p_lo, p_hi); x is zero-padded by the
   caller. wt holds the weights as [cout / COB][cin][k][COB]; cout is a multiple of COB. */
void dilconv1d(const float *x, ptrdiff_t xs, int cin, const float *wt, const float *bias, int cout, int k, int dil,
               float *y, ptrdiff_t ys, int p_lo, int p_hi, int relu) {
    int nb = cout / COB;
    int pv_end = p_lo + ((p_hi - p_lo) / (VW * R)) * (VW * R);
    /* positions in chunks whose inputs stay in L2 while every output-channel block uses them */
    for (int p0 = p_lo; p0 < pv_end; p0 += PCH) {
    int p1 = p0 + PCH < pv_end ? p0 + PCH : pv_end;
    for (int b = 0; b < nb; b++) {
        const float *wb = wt + (size_t)b * cin * k * COB;
        for (int p = p0; p < p1; p += VW * R) {
            vf acc[COB][R];
            _Pragma("GCC unroll 16") for (int c = 0; c < COB; c++)
                _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) acc[c][r] = bcast(bias[b * COB + c]);
            for (int ci = 0; ci < cin; ci++) {
                const float *xp = x + ci * xs + p;
                const float *wp = wb + (size_t)ci * k * COB;
                for (int t = 0; t < k; t++) {
                    vf xin[R];
                    _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) xin[r] = *(const vf *)(xp + t * dil + r * VW);
                    _Pragma("GCC unroll 16") for (int c = 0; c < COB; c++) {
                        vf wv = bcast(wp[t * COB + c]);
                        _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) acc[c][r] += xin[r] * wv;
                    }
                }
            }
            _Pragma("GCC unroll 16") for (int c = 0; c < COB; c++)
                _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) {
                    vf v = acc[c][r];
                    if (relu) for (int i = 0; i < VW; i++) v[i] = v[i] > 0 ? v[i] : 0;
                    *(vf *)(y + (b * COB + c) * ys + p + r * VW) = v;
                }
        }
    }
    }
    for (int b = 0; b < nb; b++) {
        const float *wb = wt + (size_t)b * cin * k * COB;
        for (int p = pv_end; p < p_hi; p++) {
            for (int c = 0; c < COB; c++) {
                float s = bias[b * COB + c];
                for (int ci = 0; ci < cin; ci++)
                    for (int t = 0; t < k; t++) s += wb[((size_t)ci * k + t) * COB + c] * x[ci * xs + p + t * dil];
                y[(b * COB + c) * ys + p] = relu && s < 0 ? 0 : s;
            }
        }
    }
}
""" % {"cob": COB, "vw": VW, "r": R, "pch": PCH}

_lib = None
_tried = False


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_dir() -> Path:
    base = os.environ.get("ATACDENOISE_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "atacdenoise")
    return Path(base)


def load_kernel():
    """The compiled kernel (a ctypes function), building it on first use; None when it cannot be built or is turned off."""
    global _lib, _tried
    if _tried:
        return _lib
    _tried = True
    if os.environ.get("ATACDENOISE_NATIVE_CONV", "1").strip().lower() in ("0", "off", "false", "no"):
        log.info("native CPU convolution off (ATACDENOISE_NATIVE_CONV); using PyTorch's")
        return None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        log.info("no C compiler found (cc, gcc, clang or $CC): CPU inference uses PyTorch's convolutions (~3x slower)")
        return None
    flags = ["-O3", "-march=native", "-shared", "-fPIC"]
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    key = hashlib.sha256("\0".join([SOURCE, cc, version, " ".join(flags), platform.machine(), _cpu_flags()]).encode()).hexdigest()[:16]
    path = _cache_dir() / f"dilconv1d-{key}.so"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                src = Path(tmp) / "dilconv1d.c"
                src.write_text(SOURCE)
                out = Path(tmp) / path.name
                res = subprocess.run([cc, *flags, "-o", str(out), str(src)], capture_output=True, text=True, timeout=300)
                if res.returncode != 0:
                    log.warning("could not compile the native CPU convolution with %s (%s); using PyTorch's",
                                cc, (res.stderr or res.stdout).strip().splitlines()[-1:])  # fmt: skip
                    return None
                os.replace(out, path)  # atomic: concurrent jobs on a shared cache each see a whole file
            log.info("compiled the native CPU convolution: %s", path)
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("native CPU convolution unavailable (%s); using PyTorch's", exc)
        return None
    fn = lib.dilconv1d
    P, I, S = ctypes.c_void_p, ctypes.c_int, ctypes.c_ssize_t
    fn.argtypes = [P, S, I, P, P, I, I, I, P, S, I, I, I]
    fn.restype = None
    _lib = fn
    return fn


def eligible(conv: nn.Module) -> bool:
    """A Conv1d the kernel computes exactly: stride 1, no groups, 'same' zero padding of an odd kernel > 1 tap."""
    if not isinstance(conv, nn.Conv1d):
        return False
    k, d = conv.kernel_size[0], conv.dilation[0]
    pad = conv.padding if isinstance(conv.padding, str) else conv.padding[0]
    same = pad == "same" or pad == (k - 1) * d // 2
    return k > 1 and k % 2 == 1 and conv.stride[0] == 1 and conv.groups == 1 and conv.padding_mode == "zeros" and same


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or x.device.type != "cpu" or x.dim() != 3 or x.shape[1] != self.cin:
            raise ValueError(f"NativeConv1d expects float32 CPU input [B, {self.cin}, L], got {tuple(x.shape)} {x.dtype}")
        batch, _, length = x.shape
        xp = torch.nn.functional.pad(x, (self.pad, self.pad)).contiguous().numpy()
        y = np.empty((batch, self.padded, length), np.float32)
        # work items: (tile, position range); ranges are multiples of the kernel's 24-position block
        step = max(VW * R, -(-length * batch // self.threads // (VW * R)) * (VW * R))
        items = [(b, lo, min(length, lo + step)) for b in range(batch) for lo in range(0, length, step)]

        def run(item: tuple[int, int, int]) -> None:
            b, lo, hi = item
            self.kernel(xp[b].ctypes.data, xp.shape[2], self.cin, self.wt.ctypes.data, self.bias.ctypes.data, self.padded,
                        self.k, self.dil, y[b].ctypes.data, length, lo, hi, 0)  # fmt: skip

        if self._pool is None or len(items) == 1:
            for item in items:
                run(item)
        else:
            list(self._pool.map(run, items))
        out = torch.from_numpy(y)
        return out if self.padded == self.cout else out[:, : self.cout]


def with_native_convs(model: nn.Module, threads: int | None = None) -> tuple[nn.Module, int]:
    """A copy of ``model`` whose eligible convolutions run on the native kernel, and how many were replaced.

    Returns ``(model, 0)`` unchanged when the kernel is unavailable. For
    inference only (no gradients), float32 on the CPU.
    """
    kernel = load_kernel()
    if kernel is None:
        return model, 0
    threads = threads or torch.get_num_threads()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="conv") if threads > 1 else None  # shared by every layer
    fast = copy.deepcopy(model)
    replaced = 0
    for module in list(fast.modules()):
        for child_name, child in list(module.named_children()):
            if eligible(child):
                setattr(module, child_name, NativeConv1d(child, kernel, threads, pool))
                replaced += 1
    return fast, replaced
