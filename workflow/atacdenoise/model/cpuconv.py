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

How: the C source is compiled once per machine with the system C compiler
(``cc -O3 -march=native``; ``$CC`` overrides) into a cache directory
(``$ATACDENOISE_CACHE`` or ``~/.cache/atacdenoise``), keyed by the source, the
compiler and the CPU's feature flags, so nodes with other CPUs sharing a home
directory build their own; it is loaded with ctypes (calls release the GIL,
so ``threads`` Python threads use ``threads`` cores). Without a compiler, or
with ``ATACDENOISE_NATIVE_CONV=0``, inference uses PyTorch's convolutions
(a log line says which); ``ATACDENOISE_CONV_ALGO=direct`` (or ``fft``) forces
one kernel. Sums run in another order than oneDNN's: outputs agree to ~1e-6
relative, not bit for bit; a tile's outputs do not depend on the batch it is
in nor on the thread count.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import logging
import os
from concurrent.futures import ThreadPoolExecutor

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

SOURCE = r"""
#include <stddef.h>
#define COB %(cob)d
#define VW %(vw)d
#define R %(r)d
#define PCH %(pch)d
typedef float vf __attribute__((vector_size(VW * 4), aligned(4)));

static inline vf bcast(float a) { vf v; for (int i = 0; i < VW; i++) v[i] = a; return v; }

/* y[co][p] = act(bias[co] + sum_ci sum_t w[co][ci][t] * x[ci][p + t*dil] + res[co][p]) for p in [p_lo, p_hi); x is
   zero-padded by the caller; res (rows of ys floats, res_ch of them; NULL for none) is added to the first res_ch
   channels; act is ReLU when relu, else the identity. wt holds the weights as [cout / COB][cin][k][COB]; cout is a
   multiple of COB. */
void dilconv1d(const float *x, ptrdiff_t xs, int cin, const float *wt, const float *bias, int cout, int k, int dil,
               float *y, ptrdiff_t ys, int p_lo, int p_hi, int relu, const float *res, int res_ch) {
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
                    if (res && b * COB + c < res_ch) v += *(const vf *)(res + (b * COB + c) * ys + p + r * VW);
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
                if (res && b * COB + c < res_ch) s += res[(b * COB + c) * ys + p];
                y[(b * COB + c) * ys + p] = relu && s < 0 ? 0 : s;
            }
        }
    }
}
""" % {"cob": COB, "vw": VW, "r": R, "pch": PCH}

#: block pairs transformed per pass over a layer's spectra (their accumulators stay in registers: 2 x NP vectors)
NP = 4 if _default_r() == 3 else 2
#: FFT stages below this many points run on one L1-resident sub-block at a time
L1N = 256
#: lanes per vector of the FFT convolution: channels are the SIMD lanes, so cin and cout must be <= CP
CP = 16

FFT_SOURCE = r"""
#include <string.h>
#define NP %(np)d
#define CP %(cp)d
#define L1N %(l1n)d
typedef float v16 __attribute__((vector_size(CP * 4), aligned(4)));

/* one radix-2 decimation-in-frequency stage of span len over n points (natural order in) */
static inline void dif_stage(v16 *restrict re, v16 *restrict im, int n, int len, const float *twr, const float *twi) {
    int h = len >> 1;
    for (int s = 0; s < n; s += len)
        for (int j = 0; j < h; j++) {
            float wr = twr[h + j], wi = twi[h + j];
            v16 ar = re[s + j], ai = im[s + j], br = re[s + j + h], bi = im[s + j + h];
            re[s + j] = ar + br; im[s + j] = ai + bi;
            v16 dr = ar - br, di = ai - bi;
            re[s + j + h] = dr * wr - di * wi; im[s + j + h] = dr * wi + di * wr;
        }
}
/* one radix-2 decimation-in-time stage (bit-reversed order in), twiddles conjugated by the caller's table */
static inline void dit_stage(v16 *restrict re, v16 *restrict im, int n, int len, const float *twr, const float *twi) {
    int h = len >> 1;
    for (int s = 0; s < n; s += len)
        for (int j = 0; j < h; j++) {
            float wr = twr[h + j], wi = twi[h + j];
            v16 ar = re[s + j], ai = im[s + j], br = re[s + j + h], bi = im[s + j + h];
            v16 tr = br * wr - bi * wi, ti = br * wi + bi * wr;
            re[s + j] = ar + tr; im[s + j] = ai + ti;
            re[s + j + h] = ar - tr; im[s + j + h] = ai - ti;
        }
}
static void fft_fwd(v16 *re, v16 *im, int n, const float *twr, const float *twi) {
    int len = n;
    for (; len > L1N; len >>= 1) dif_stage(re, im, n, len, twr, twi);
    for (int s = 0; s < n; s += len)
        for (int l = len; l >= 2; l >>= 1) dif_stage(re + s, im + s, len, l, twr, twi);
}
static void fft_inv(v16 *re, v16 *im, int n, const float *twr, const float *twi) {
    int len = n < L1N ? n : L1N;
    for (int s = 0; s < n; s += len)
        for (int l = 2; l <= len; l <<= 1) dit_stage(re + s, im + s, len, l, twr, twi);
    for (len <<= 1; len <= n; len <<= 1) dit_stage(re, im, n, len, twr, twi);
}

/* x: [B][cin][len] input; block g (g = b * nblk + j) holds x[b][c][j*hop - pad + t] for t in [0, n), zero outside
   [0, len) (the conv's 'same' padding); lane c of dst[t] = channel c. g < 0: an all-zero block. */
static void gather(const float *x, ptrdiff_t len, int cin, int nblk, int hop, int pad, int n, int g, float *dst) {
    memset(dst, 0, sizeof(float) * CP * n);
    if (g < 0) return;
    const float *xb = x + (size_t)(g / nblk) * cin * len;
    ptrdiff_t base = (ptrdiff_t)(g - g / nblk * nblk) * hop - pad;
    int t0 = base < 0 ? (int)-base : 0;
    int t1 = len - base < n ? (int)(len - base) : n;
    for (int c = 0; c < cin; c++) {
        const float *xc = xb + c * len + base;
        for (int t = t0; t < t1; t++) dst[t * CP + c] = xc[t];
    }
}
/* y[b][o][j*hop + t] = act(src[t] lane o + bias[o] + res[b][o][j*hop + t]) for the block's first hop positions */
static void scatter(const float *src, float *y, ptrdiff_t len, int cout, int nblk, int hop, int g, const float *bias,
                    int relu, const float *res) {
    size_t off = (size_t)(g / nblk) * cout * len;
    ptrdiff_t base = (ptrdiff_t)(g - g / nblk * nblk) * hop;
    int m = len - base < hop ? (int)(len - base) : hop;
    for (int o = 0; o < cout; o++) {
        float *yo = y + off + o * len + base;
        const float *ro = res ? res + off + o * len + base : 0;
        float bo = bias[o];
        if (ro && relu) for (int t = 0; t < m; t++) { float v = src[t * CP + o] + bo + ro[t]; yo[t] = v > 0 ? v : 0; }
        else if (ro) for (int t = 0; t < m; t++) yo[t] = src[t * CP + o] + bo + ro[t];
        else if (relu) for (int t = 0; t < m; t++) { float v = src[t * CP + o] + bo; yo[t] = v > 0 ? v : 0; }
        else for (int t = 0; t < m; t++) yo[t] = src[t * CP + o] + bo;
    }
}

/* h: [n][cin][2] lane-vectors (spectrum of the correlation kernel, bit-reversed bin order, scaled by 1/n) */
static void pointwise(v16 *ws, int np, int n, int cin, const v16 *h) {
    for (int i = 0; i < n; i++) {
        const v16 *hk = h + (size_t)i * cin * 2;
        v16 ar[NP], ai[NP];
        for (int p = 0; p < NP; p++) { ar[p] = (v16){}; ai[p] = (v16){}; }
        for (int c = 0; c < cin; c++) {
            v16 hr = hk[2 * c], hi = hk[2 * c + 1];
            _Pragma("GCC unroll 16") for (int p = 0; p < NP; p++) {
                if (p < np) {
                    float zr = ((const float *)(ws + (size_t)p * 2 * n + i))[c];
                    float zi = ((const float *)(ws + (size_t)p * 2 * n + n + i))[c];
                    ar[p] += hr * zr - hi * zi; ai[p] += hr * zi + hi * zr;
                }
            }
        }
        for (int p = 0; p < np; p++) { ws[(size_t)p * 2 * n + i] = ar[p]; ws[(size_t)p * 2 * n + n + i] = ai[p]; }
    }
}

/* y = act(conv(x) + bias + res), x [B][cin][len] -> y [B][cout][len], for block pairs [q_lo, q_hi) of the B x
   ceil(nblk / 2) pairs (see gather; a pair never spans two tiles, so a tile's outputs do not depend on the batch it
   is in nor on how pairs are split between threads); h: the conv's spectra (see pointwise); work: 2 * NP * n
   lane-vectors. */
void fftconv1d(const float *x, ptrdiff_t len, int cin, const float *h, const float *bias, int cout, int logn, int hop,
               int pad, float *y, int nblk, int q_lo, int q_hi, int relu, const float *res,
               const float *twr, const float *twi, const float *twi_inv, float *work) {
    int n = 1 << logn;
    v16 *ws = (v16 *)work;
    int ppt = (nblk + 1) / 2; /* pairs per tile: blocks 2i and 2i + 1 of one tile (the last alone if nblk is odd) */
    for (int q0 = q_lo; q0 < q_hi; q0 += NP) {
        int np = q_hi - q0 < NP ? q_hi - q0 : NP;
        for (int p = 0; p < np; p++) {
            v16 *re = ws + (size_t)p * 2 * n, *im = re + n;
            int b = (q0 + p) / ppt, j = 2 * (q0 + p - b * ppt);
            int ga = b * nblk + j, gb = j + 1 < nblk ? ga + 1 : -1;
            gather(x, len, cin, nblk, hop, pad, n, ga, (float *)re);
            gather(x, len, cin, nblk, hop, pad, n, gb, (float *)im);
            fft_fwd(re, im, n, twr, twi);
        }
        pointwise(ws, np, n, cin, (const v16 *)h);
        for (int p = 0; p < np; p++) {
            v16 *re = ws + (size_t)p * 2 * n, *im = re + n;
            int b = (q0 + p) / ppt, j = 2 * (q0 + p - b * ppt);
            int ga = b * nblk + j, gb = ga + 1;
            fft_inv(re, im, n, twr, twi_inv);
            scatter((const float *)re, y, len, cout, nblk, hop, ga, bias, relu, res);
            if (j + 1 < nblk) scatter((const float *)im, y, len, cout, nblk, hop, gb, bias, relu, res);
        }
    }
}
""" % {"np": NP, "cp": CP, "l1n": L1N}

_lib = None
_tried = False


def load_library():
    """The compiled library (ctypes, both kernels), building it on first use; None when it cannot be built or is turned off."""
    global _lib, _tried
    if _tried:
        return _lib
    _tried = True
    if native.off("ATACDENOISE_NATIVE_CONV"):
        log.info("native CPU convolution off (ATACDENOISE_NATIVE_CONV); using PyTorch's")
        return None
    lib = native.build("dilconv1d", SOURCE + FFT_SOURCE, "native CPU convolution (PyTorch's are 3-10x slower)")
    if lib is None:
        return None
    P, I, S = ctypes.c_void_p, ctypes.c_int, ctypes.c_ssize_t
    lib.dilconv1d.argtypes = [P, S, I, P, P, I, I, I, P, S, I, I, I, P, I]
    lib.dilconv1d.restype = None
    lib.fftconv1d.argtypes = [P, S, I, P, P, I, I, I, I, P, I, I, I, I, P, P, P, P, P]
    lib.fftconv1d.restype = None
    _lib = lib
    return lib


def load_kernel():
    """The direct convolution kernel (a ctypes function), or None (see :func:`load_library`)."""
    lib = load_library()
    return None if lib is None else lib.dilconv1d


def eligible(conv: nn.Module) -> bool:
    """A Conv1d the kernel computes exactly: stride 1, no groups, 'same' zero padding of an odd kernel > 1 tap."""
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
    """An eligible conv (:func:`eligible`) the FFT kernel can run: <= CP channels in and out, span within one block."""
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
    """Twiddles (stage h at [h, 2h): exp(-i pi j / h)), their conjugates' imaginary parts, and the bit-reversal of 0..n-1."""
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
    """Inference-only stand-in for a 1-tap ``nn.Conv1d``: one batched matrix product (oneDNN takes ~10x longer on
    the model's 1 -> 15 and 15 -> 1 channel maps).
    """

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        self.w = conv.weight.detach().float()[:, :, 0].clone()
        b = conv.bias.detach().float() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.b = b.clone().view(1, -1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.b, self.w.expand(x.shape[0], -1, -1), x)


def pointwise_eligible(conv: nn.Module) -> bool:
    """A plain 1-tap Conv1d: stride 1, no padding, no groups."""
    return (
        isinstance(conv, nn.Conv1d)
        and conv.kernel_size[0] == 1
        and conv.stride[0] == 1
        and conv.groups == 1
        and conv.padding in ((0,), "valid")
    )


class NativeResBlock(nn.Module):
    """A :class:`atacdenoise.model.network.ResBlock` whose convs are native: each conv applies its ReLU, and the last one
    adds the skip path, in its output pass (the same arithmetic, two fewer passes over memory per conv).
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        self.convs, self.skip = block.convs, block.skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, last = x, len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            y = conv(y, residual=self.skip(x) if i == last else None, relu=True)
        return y


def with_native_convs(model: nn.Module, threads: int | None = None) -> tuple[nn.Module, int]:
    """A copy of ``model`` whose eligible convolutions run on the native kernels, and how many were replaced.

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
