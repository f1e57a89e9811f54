/* Direct dilated 1-D convolution for CPU inference: atacdenoise.model.cpuconv.NativeConv1d (thin convs, 1 -> 15).
 *
 * A block of COB output channels x R vectors of positions lives in COB x R vector accumulators; for every input
 * channel and tap, R input vectors are loaded and COB weights broadcast. Compiled on first use by
 * atacdenoise.native (cc -O3 -march=native) with these defines, set by cpuconv.NATIVE_SOURCES:
 *
 *   COB  output channels per register block (the caller pads the weights to a multiple of it)
 *   VW   floats per vector
 *   R    vectors of positions per block (COB x R accumulators must fit in the vector registers)
 *   PCH  positions per cache chunk, a multiple of VW * R (the chunk's inputs stay in L2)
 */
#include <stddef.h>

#ifndef COB
#error "define COB, the output channels per register block (e.g. -DCOB=5)"
#endif
#ifndef VW
#error "define VW, the floats per vector (e.g. -DVW=8)"
#endif
#ifndef R
#error "define R, the vectors of positions per block (e.g. -DR=3)"
#endif
#ifndef PCH
#error "define PCH, the positions per cache chunk (e.g. -DPCH=2400)"
#endif
#if PCH % (VW * R) != 0
#error "PCH must be a multiple of VW * R"
#endif

typedef float vf __attribute__((vector_size(VW * 4), aligned(4)));

/* *v = a in every lane (through a pointer: a vector returned by value changes the ABI without AVX, -Wpsabi) */
static inline void bcast(vf *v, float a) { for (int i = 0; i < VW; i++) (*v)[i] = a; }

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
                    _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) bcast(&acc[c][r], bias[b * COB + c]);
                for (int ci = 0; ci < cin; ci++) {
                    const float *xp = x + ci * xs + p;
                    const float *wp = wb + (size_t)ci * k * COB;
                    for (int t = 0; t < k; t++) {
                        vf xin[R];
                        _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) xin[r] = *(const vf *)(xp + t * dil + r * VW);
                        _Pragma("GCC unroll 16") for (int c = 0; c < COB; c++) {
                            vf wv;
                            bcast(&wv, wp[t * COB + c]);
                            _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) acc[c][r] += xin[r] * wv;
                        }
                    }
                }
                _Pragma("GCC unroll 16") for (int c = 0; c < COB; c++)
                    _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) {
                        vf v = acc[c][r];
                        if (res && b * COB + c < res_ch) v += *(const vf *)(res + (b * COB + c) * ys + p + r * VW);
                        if (relu)
                            for (int i = 0; i < VW; i++) v[i] = v[i] > 0 ? v[i] : 0;
                        *(vf *)(y + (b * COB + c) * ys + p + r * VW) = v;
                    }
            }
        }
    }
    /* the last positions (fewer than VW * R), one at a time */
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
