/* Dilated 1-D convolution by FFT for CPU inference: atacdenoise.model.cpuconv.FFTConv1d (the 15 -> 15 convs).
 *
 * Overlap-save over blocks of n = 2^logn bases; the channels are the CP lanes of one vector; two blocks go through
 * one complex FFT (radix 2, in place) as its real and imaginary parts; the channel mixing is a complex cin x cout
 * product per frequency. Compiled on first use by atacdenoise.native (cc -O3 -march=native) with these defines, set
 * by cpuconv.NATIVE_SOURCES:
 *
 *   NP   block pairs transformed per pass over a layer's spectra (2 x NP accumulators stay in registers)
 *   CP   lanes per vector: channels in and out must be <= CP
 *   L1N  FFT stages below this many points run on one L1-resident sub-block at a time (a power of two)
 *
 * A file of its own: it shares no code with the direct kernel (cpuconv_direct.c), only the calling module.
 */
#include <stddef.h>
#include <string.h>

#ifndef NP
#error "define NP, the block pairs per pass (e.g. -DNP=4)"
#endif
#ifndef CP
#error "define CP, the lanes per vector (e.g. -DCP=16)"
#endif
#ifndef L1N
#error "define L1N, the points of an L1-resident FFT sub-block (e.g. -DL1N=256)"
#endif
#if L1N < 2 || (L1N & (L1N - 1)) != 0
#error "L1N must be a power of two >= 2"
#endif

typedef float v16 __attribute__((vector_size(CP * 4), aligned(4)));

/* one radix-2 decimation-in-frequency stage of span len over n points (natural order in) */
static inline void dif_stage(v16 *restrict re, v16 *restrict im, int n, int len, const float *twr, const float *twi) {
    int h = len >> 1;
    for (int s = 0; s < n; s += len)
        for (int j = 0; j < h; j++) {
            float wr = twr[h + j], wi = twi[h + j];
            v16 ar = re[s + j], ai = im[s + j], br = re[s + j + h], bi = im[s + j + h];
            re[s + j] = ar + br;
            im[s + j] = ai + bi;
            v16 dr = ar - br, di = ai - bi;
            re[s + j + h] = dr * wr - di * wi;
            im[s + j + h] = dr * wi + di * wr;
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
            re[s + j] = ar + tr;
            im[s + j] = ai + ti;
            re[s + j + h] = ar - tr;
            im[s + j + h] = ai - ti;
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
        if (ro && relu)
            for (int t = 0; t < m; t++) {
                float v = src[t * CP + o] + bo + ro[t];
                yo[t] = v > 0 ? v : 0;
            }
        else if (ro)
            for (int t = 0; t < m; t++) yo[t] = src[t * CP + o] + bo + ro[t];
        else if (relu)
            for (int t = 0; t < m; t++) {
                float v = src[t * CP + o] + bo;
                yo[t] = v > 0 ? v : 0;
            }
        else
            for (int t = 0; t < m; t++) yo[t] = src[t * CP + o] + bo;
    }
}

/* h: [n][cin][2] lane-vectors (spectrum of the correlation kernel, bit-reversed bin order, scaled by 1/n) */
static void pointwise(v16 *ws, int np, int n, int cin, const v16 *h) {
    for (int i = 0; i < n; i++) {
        const v16 *hk = h + (size_t)i * cin * 2;
        v16 ar[NP], ai[NP];
        for (int p = 0; p < NP; p++) {
            ar[p] = (v16){};
            ai[p] = (v16){};
        }
        for (int c = 0; c < cin; c++) {
            v16 hr = hk[2 * c], hi = hk[2 * c + 1];
            _Pragma("GCC unroll 16") for (int p = 0; p < NP; p++) {
                if (p < np) {
                    float zr = ((const float *)(ws + (size_t)p * 2 * n + i))[c];
                    float zi = ((const float *)(ws + (size_t)p * 2 * n + n + i))[c];
                    ar[p] += hr * zr - hi * zi;
                    ai[p] += hr * zi + hi * zr;
                }
            }
        }
        for (int p = 0; p < np; p++) {
            ws[(size_t)p * 2 * n + i] = ar[p];
            ws[(size_t)p * 2 * n + n + i] = ai[p];
        }
    }
}

/* y = act(conv(x) + bias + res), x [B][cin][len] -> y [B][cout][len], for block pairs [q_lo, q_hi) of the B x
   ceil(nblk / 2) pairs (see gather; a pair never spans two tiles, so a tile's outputs do not depend on the batch it
   is in nor on how pairs are split between threads); h: the conv's spectra (see pointwise); work: 2 * NP * n
   lane-vectors. */
void fftconv1d(const float *x, ptrdiff_t len, int cin, const float *h, const float *bias, int cout, int logn, int hop,
               int pad, float *y, int nblk, int q_lo, int q_hi, int relu, const float *res, const float *twr,
               const float *twi, const float *twi_inv, float *work) {
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
