/* The compact output precision of atacdenoise infer in one pass per chunk: atacdenoise.model.compact_native.
 *
 * The same values, bit for bit, as the NumPy functions of atacdenoise.model.infer (round_significant_bits,
 * round_probability_bits, keep_sides, bin_probability, bin_track), which stay the reference and the fallback;
 * tests/model/test_compact_native.py compares them. Those take ~10 passes over memory per chunk; this takes one.
 * Compiled on first use by atacdenoise.native with this define, set by compact_native.NATIVE_SOURCES:
 *
 *   MAX_CUTS  the most cuts (peak threshold, 0.5) a probability is kept on the model's side of
 *
 * Float arithmetic is IEEE single and double as NumPy's (no fast-math; nothing here can be contracted to an FMA):
 * 1 - p in float32, bin sums in float64 from left to right, divided by the bin's size (or count), then rounded to
 * float32.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifndef MAX_CUTS
#error "define MAX_CUTS, the most cuts of a probability (e.g. -DMAX_CUTS=8)"
#endif
#if MAX_CUTS < 1 || MAX_CUTS > 32
#error "MAX_CUTS must be between 1 and 32 (one bit of a mask per cut)"
#endif

static inline uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float float_of(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* The bit pattern u rounded to 24 - drop significant bits, nearest, ties to even (infer.round_significant_bits):
   add half a unit of the last kept bit, less one, plus that bit for ties to even, then clear the dropped bits (a
   carry moves into the exponent); inf and NaN unchanged; past the float32 range: the largest float32 of those
   bits. Right for every value but subnormals (round_bits). Branch-free, so loops of it vectorise. */
static inline uint32_t round_pattern(uint32_t u, uint32_t drop) {
    uint32_t dropped = (1u << drop) - 1u;
    uint32_t r = (u + (dropped >> 1) + ((u >> drop) & 1u & (drop > 0))) & ~dropped;
    uint32_t over = ((r >> 23) & 0xFFu) == 0xFFu;
    r = over ? (u & 0x80000000u) | (0x7F800000u - (1u << drop)) : r;
    return ((u >> 23) & 0xFFu) == 0xFFu ? u : r;
}

static inline int subnormal(uint32_t u) { return ((u >> 23) & 0xFFu) == 0 && (u & 0x7FFFFFu); }

/* A subnormal x to `bits` significant bits relative to its own size, in double as NumPy does (frexp/rint/ldexp). */
static float round_subnormal(float x, int bits) {
    int e;
    double m = frexp((double)x, &e);
    return (float)ldexp(rint(ldexp(m, bits)), e - bits);
}

/* x to `bits` (1..24) significant bits, as infer.round_significant_bits */
static inline float round_bits(float x, int bits) {
    uint32_t u = bits_of(x);
    if (subnormal(u)) return round_subnormal(x, bits);
    return float_of(round_pattern(u, 24u - (uint32_t)bits));
}

/* out[i] = round_bits(x[i], bits) for i < n: one vectorised pass, then the (rare) subnormals */
static void round_all(const float *x, float *out, ptrdiff_t n, int bits) {
    uint32_t drop = 24u - (uint32_t)bits;
    for (ptrdiff_t i = 0; i < n; i++) out[i] = float_of(round_pattern(bits_of(x[i]), drop));
    for (ptrdiff_t i = 0; i < n; i++)
        if (subnormal(bits_of(x[i]))) out[i] = round_subnormal(x[i], bits);
}

/* infer.round_probability_bits: `bits` significant bits of d = min(p, 1 - p), `low_bits` where d < low_below */
static inline float round_prob(float p, int bits, int low_bits, float low_below) {
    int low = p <= 0.5f;
    float d = low ? p : 1.0f - p;
    float r = round_bits(d, d < low_below ? low_bits : bits);
    return low ? r : 1.0f - r;
}

/* infer.keep_sides of one value: `r` (p rounded) on p's side of every cut, the cuts taken in order */
static inline float keep_side(float r, float p, const float *cuts, int ncuts) {
    for (int c = 0; c < ncuts; c++) {
        float cut = cuts[c];
        if (p >= cut) {
            if (r < cut) r = cut;
        } else if (r >= cut) {
            r = nextafterf(cut, 0.0f);
        }
    }
    return r;
}

/* The end of the bin that holds position `pos` of the chromosome, as an index of the chunk that starts at `start`
   and has n values (bins are aligned on multiples of width; the chunk's first and last may be short). */
static inline ptrdiff_t bin_end(long long start, ptrdiff_t i, ptrdiff_t n, int width) {
    long long pos = start + (long long)i;
    ptrdiff_t end = (ptrdiff_t)((pos / width + 1) * width - start);
    return end < n ? end : n;
}

/* out[i] = round_probability_bits(p[i]) for i < n */
void round_probability(const float *p, float *out, ptrdiff_t n, int bits, int low_bits, float low_below) {
    for (ptrdiff_t i = 0; i < n; i++) out[i] = round_prob(p[i], bits, low_bits, low_below);
}

/* out = infer.bin_probability(round_probability_bits(p), p, start, cuts, width): each bin holds its mean's rounding
   (kept on the mean's side of every cut), unless its bases fall on both sides of a cut: then each keeps its own
   rounding, kept on its side. A kept value is on the side of every cut that its base is on (keep_sides), so the
   bases decide the split from p itself, and only split bins (a few near peak edges) round base by base.
   Returns -1 when ncuts or width is out of range, else 0. */
int compact_probability(const float *p, float *out, ptrdiff_t n, long long start, const float *cuts, int ncuts,
                        int width, int bits, int low_bits, float low_below) {
    if (ncuts < 0 || ncuts > MAX_CUTS || width < 1) return -1;
    for (ptrdiff_t lo = 0; lo < n;) {
        ptrdiff_t hi = bin_end(start, lo, n, width);
        double sum = p[lo];
        float lowest = p[lo], highest = p[lo];
        int nan = p[lo] != p[lo];
        for (ptrdiff_t i = lo + 1; i < hi; i++) {
            float v = p[i];
            sum += v;
            lowest = v < lowest ? v : lowest;
            highest = v > highest ? v : highest;
            nan |= v != v;
        }
        int split = 0;
        if (nan) { /* NaN is below every cut (p >= cut is false), and is not in lowest/highest: look base by base */
            for (int c = 0; c < ncuts; c++) {
                int any_above = 0;
                for (ptrdiff_t i = lo; i < hi; i++) any_above |= p[i] >= cuts[c];
                split |= any_above;
            }
        } else {
            for (int c = 0; c < ncuts; c++) split |= (highest >= cuts[c]) & (lowest < cuts[c]);
        }
        if (split) {
            for (ptrdiff_t i = lo; i < hi; i++)
                out[i] = keep_side(round_prob(p[i], bits, low_bits, low_below), p[i], cuts, ncuts);
        } else {
            float mean = (float)(sum / (double)(hi - lo));
            float m = keep_side(round_prob(mean, bits, low_bits, low_below), mean, cuts, ncuts);
            for (ptrdiff_t i = lo; i < hi; i++) out[i] = m;
        }
        lo = hi;
    }
    return 0;
}

/* out = infer.bin_track(t, start, floor, width) at `bits` significant bits: in a bin whose every |value| is below
   floor and one is not 0, the nonzero values take their mean (zeros stay 0); then every value is rounded.
   floor <= 0: the rounding alone. */
void compact_track(const float *t, float *out, ptrdiff_t n, long long start, float floor, int width, int bits) {
    round_all(t, out, n, bits);
    if (!(floor > 0.0f) || width < 1) return;
    for (ptrdiff_t lo = 0; lo < n;) {
        ptrdiff_t hi = bin_end(start, lo, n, width);
        int low = 1, count = 0;
        for (ptrdiff_t i = lo; i < hi; i++) {
            low &= fabsf(t[i]) < floor; /* NaN too: the bin keeps its values */
            count += t[i] != 0.0f;
        }
        if (low && count) {
            double sum = t[lo];
            for (ptrdiff_t i = lo + 1; i < hi; i++) sum += t[i];
            float mean = round_bits((float)(sum / (double)count), bits);
            for (ptrdiff_t i = lo; i < hi; i++) out[i] = t[i] != 0.0f ? mean : 0.0f;
        }
        lo = hi;
    }
}
