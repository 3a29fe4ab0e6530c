/* nn_conv_direct.c - direct (im2col-free) conv2d for few channels.
 *
 * SimpleNet's 7x7 convs have 3, 6 or 16 input and 6, 16 or 24 output
 * channels. Through im2col each input value is copied KH*KW = 49 times
 * into the column matrix (37 MB per image for conv1) and the GEMM that
 * reads it has only O = 6..24 rows, so both are memory-bound. Here each
 * output tile (OB channels x 16*U pixels of one row) is held in vector
 * registers while the loop runs over input channels and kernel taps: one
 * load of input per tap, reused for OB channels, one store per tile.
 *
 * Forward is a correlation of x with w; the input gradient is the
 * correlation of gy, zero-padded by KH-1 / KW-1, with w flipped and
 * transposed (O and C swapped), so the same kernel serves both. The weight
 * gradient has its own tile (bottom of the file): lane-wise sums of gy * x
 * per (output channel, tap), reduced once per chunk of rows.
 *
 * Stride 1, dilation 1, groups 1, output rows of at least 16 pixels only
 * (fmd_conv_direct_ok); the last tile of a row is shifted left to end at
 * the row's end (it overlaps the one before and writes the same values), so
 * no load or store leaves the row. Vectors are GCC vector extensions of 16
 * floats: AVX-512 registers in the x86-64-v4 clone (two per tile row, U =
 * 2), pairs of AVX2 registers in the v3 clone (U = 1). */
#include "fmd_impl.h"

#include <stdlib.h>
#include <string.h>

/* the vector helpers below are always inlined, never called across an ABI */
#pragma GCC diagnostic ignored "-Wpsabi"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

typedef float v16 __attribute__((vector_size(64)));
enum { OBMAX = 6 };   /* output channels per tile: 12 accumulators at U = 2 */

ALWAYS_INLINE v16 load16(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
ALWAYS_INLINE void store16(float *p, const v16 *v) { memcpy(p, v, sizeof *v); }

/* y[ob][0..16U) = bias[ob] + sum_c,kh,kw w[ob][c][kh][kw] * x[c][kh][kw + 0..16U)
 * x points at (0, row, col) of a (C,H,W) plane stack with row stride W and
 * plane stride HW; w at output channel o0 of (O, C*KH*KW); y at (o0, row,
 * col) of (O, OH, OW) with plane stride OHW */
ALWAYS_INLINE void direct_tile(const float *x, int64_t C, int64_t W, int64_t HW, const float *w, int64_t Kc,
                               int64_t KH, int64_t KW, const float *bias, float *y, int64_t OHW, const int OB,
                               const int U) {
    v16 acc[OBMAX][2];
    for (int ob = 0; ob < OB; ob++)
        for (int u = 0; u < U; u++) acc[ob][u] = (v16){0} + (bias ? bias[ob] : 0.0f);
    for (int64_t c = 0; c < C; c++)
        for (int64_t kh = 0; kh < KH; kh++) {
            const float *row = x + c * HW + kh * W;
            const float *wk = w + (c * KH + kh) * KW;
            for (int64_t kw = 0; kw < KW; kw++) {
                v16 in[2];
                for (int u = 0; u < U; u++) in[u] = load16(row + kw + 16 * u);
                for (int ob = 0; ob < OB; ob++) {
                    const float wv = wk[ob * Kc + kw];
                    for (int u = 0; u < U; u++) acc[ob][u] += wv * in[u];
                }
            }
        }
    for (int ob = 0; ob < OB; ob++)
        for (int u = 0; u < U; u++) store16(y + ob * OHW + 16 * u, &acc[ob][u]);
}

#define TILE_CASES(U)                                                                                           \
    switch (ob) {                                                                                               \
    case 6: direct_tile(xr, C, W, HW, wo, Kc, KH, KW, bo, yr, OHW, 6, U); break;                                \
    case 5: direct_tile(xr, C, W, HW, wo, Kc, KH, KW, bo, yr, OHW, 5, U); break;                                \
    case 4: direct_tile(xr, C, W, HW, wo, Kc, KH, KW, bo, yr, OHW, 4, U); break;                                \
    case 3: direct_tile(xr, C, W, HW, wo, Kc, KH, KW, bo, yr, OHW, 3, U); break;                                \
    case 2: direct_tile(xr, C, W, HW, wo, Kc, KH, KW, bo, yr, OHW, 2, U); break;                                \
    default: direct_tile(xr, C, W, HW, wo, Kc, KH, KW, bo, yr, OHW, 1, U); break;                               \
    }

/* output rows [r0, r1) of the flattened (N, OH) rows */
FMD_SIMD_CLONES_V4
static void direct_rows(const fmd_conv_direct *d, int64_t r0, int64_t r1, int wide) {
    const int64_t C = d->C, H = d->H, W = d->W, O = d->O, KH = d->KH, KW = d->KW;
    const int64_t OH = H - KH + 1, OW = W - KW + 1, HW = H * W, OHW = OH * OW, Kc = C * KH * KW;
    const int64_t step = wide ? 32 : 16;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t n = r / OH, oy = r % OH;
        for (int64_t o0 = 0; o0 < O; o0 += OBMAX) {
            const int ob = (int)(O - o0 < OBMAX ? O - o0 : OBMAX);
            const float *wo = d->w + o0 * Kc, *bo = d->b ? d->b + o0 : NULL;
            int64_t ox = 0;
            for (; ox + step <= OW; ox += step) {
                const float *xr = d->x + n * C * HW + oy * W + ox;
                float *yr = d->y + (n * O + o0) * OHW + oy * OW + ox;
                if (wide) { TILE_CASES(2) } else { TILE_CASES(1) }
            }
            for (; ox < OW; ox += 16) {   /* the rest, 16 at a time; the last ends at OW */
                const int64_t at = ox + 16 <= OW ? ox : OW - 16;
                const float *xr = d->x + n * C * HW + oy * W + at;
                float *yr = d->y + (n * O + o0) * OHW + oy * OW + at;
                TILE_CASES(1)
            }
        }
    }
}

static void direct_task(void *p, int ith, int nth) {
    const fmd_conv_direct *d = p;
    int64_t b, e;
    fmd_split(d->N * (d->H - d->KH + 1), ith, nth, &b, &e);
    if (b < e) direct_rows(d, b, e, fmd_cpu_avx512());
}

int fmd_conv_direct_ok(int64_t O, int64_t W, int64_t KW, int unit_geometry) {
    return unit_geometry && O <= 64 && W - KW + 1 >= 16;
}

// x (N,C,H,W), w (O,C,KH,KW), b (O) or NULL -> y (N,O,H-KH+1,W-KW+1)
void fmd_conv_direct_run(const fmd_conv_direct *d) {
    fmd_parallel(direct_task, (void *)d);
}

typedef struct { const float *src; float *dst; int64_t planes, OH, OW, ph, pw; } pad_job;

static void pad_task(void *p, int ith, int nth) {   /* planes split over threads */
    const pad_job *j = p;
    const int64_t Hp = j->OH + 2 * j->ph, Wp = j->OW + 2 * j->pw;
    int64_t b, e;
    fmd_split(j->planes, ith, nth, &b, &e);
    for (int64_t pl = b; pl < e; pl++) {
        float *d = j->dst + pl * Hp * Wp;
        const float *s = j->src + pl * j->OH * j->OW;
        memset(d, 0, (size_t)(j->ph * Wp) * sizeof *d);
        for (int64_t y = 0; y < j->OH; y++) {
            float *r = d + (j->ph + y) * Wp;
            memset(r, 0, (size_t)j->pw * sizeof *r);
            memcpy(r + j->pw, s + y * j->OW, (size_t)j->OW * sizeof *r);
            memset(r + j->pw + j->OW, 0, (size_t)j->pw * sizeof *r);
        }
        memset(d + (j->ph + j->OH) * Wp, 0, (size_t)(j->ph * Wp) * sizeof *d);
    }
}

// gy (N,O,OH,OW), w (O,C,KH,KW) -> gx (N,C,OH+KH-1,OW+KW-1) written whole:
// gx = gy zero-padded by (KH-1, KW-1) correlated with w flipped, O and C swapped
int fmd_conv_direct_input_grad(int64_t N, int64_t C, int64_t O, int64_t OH, int64_t OW, int64_t KH, int64_t KW,
                               const float *gy, const float *w, float *gx) {
    const int64_t Hp = OH + 2 * (KH - 1), Wp = OW + 2 * (KW - 1);
    float *pad = malloc((size_t)(N * O * Hp * Wp) * sizeof *pad);
    float *wt = malloc((size_t)(C * O * KH * KW) * sizeof *wt);
    if (!pad || !wt) {
        free(pad); free(wt);
        return fmd_fail("conv2d backward: out of memory for the padded output gradient");
    }
    for (int64_t o = 0; o < O; o++)   /* wt[c][o][kh][kw] = w[o][c][KH-1-kh][KW-1-kw] */
        for (int64_t c = 0; c < C; c++)
            for (int64_t k = 0; k < KH * KW; k++)
                wt[(c * O + o) * KH * KW + k] = w[(o * C + c) * KH * KW + (KH * KW - 1 - k)];
    pad_job pj = {gy, pad, N * O, OH, OW, KH - 1, KW - 1};
    fmd_parallel(pad_task, &pj);
    fmd_conv_direct d = {N, O, Hp, Wp, C, KH, KW, pad, wt, NULL, gx};
    fmd_conv_direct_run(&d);
    free(pad); free(wt);
    return 0;
}

/* ------------------------------------------------------ weight gradient */
/* gw[o][c][kh][kw] = sum over n, oy, ox of gy[n][o][oy][ox] * x[n][c][oy+kh][ox+kw].
 * A tile holds OB output channels x KB taps (kw0..kw0+KB) as lane-wise sums
 * in vector registers while it runs along the rows of a chunk; one gy load
 * serves KB taps and one x load OB channels. The last 16 pixels of a row
 * start at OW-16 with the lanes already counted masked to zero. */
enum { GOBMAX = 4, GKBMAX = 7 };   /* 28 accumulators of the 32 AVX-512 registers */

ALWAYS_INLINE float hsum16(const v16 *v) {
    float s = 0.0f;
    for (int i = 0; i < 16; i++) s += (*v)[i];
    return s;
}

/* rows rows of gy (at channel o0, row stride OW, plane stride OHW) against x
 * (at channel c, row kh, tap kw0; row stride W); sums added to gw at (o0, c,
 * kh, kw0) with channel stride Kc */
ALWAYS_INLINE void wgrad_tile(const float *gy, int64_t OW, int64_t OHW, const float *x, int64_t W, int64_t rows,
                              const v16 *tail_mask, float *gw, int64_t Kc, const int OB, const int KB) {
    const v16 mask = *tail_mask;
    v16 acc[GOBMAX][GKBMAX];
    for (int ob = 0; ob < OB; ob++)
        for (int k = 0; k < KB; k++) acc[ob][k] = (v16){0};
    for (int64_t r = 0; r < rows; r++) {
        const float *gr = gy + r * OW, *xr = x + r * W;
        for (int64_t ox = 0; ox < OW; ox += 16) {
            const int tail = ox + 16 > OW;
            const int64_t at = tail ? OW - 16 : ox;
            v16 g[GOBMAX];
            for (int ob = 0; ob < OB; ob++) {
                g[ob] = load16(gr + ob * OHW + at);
                if (tail) g[ob] *= mask;
            }
            for (int k = 0; k < KB; k++) {
                const v16 in = load16(xr + at + k);
                for (int ob = 0; ob < OB; ob++) acc[ob][k] += g[ob] * in;
            }
        }
    }
    for (int ob = 0; ob < OB; ob++)
        for (int k = 0; k < KB; k++) gw[ob * Kc + k] += hsum16(&acc[ob][k]);
}

#define WGRAD_KB(OB)                                                                                            \
    switch (kb) {                                                                                               \
    case 7: wgrad_tile(gyo, OW, OHW, xk, W, rows, &mask, gwk, Kc, OB, 7); break;                                 \
    case 5: wgrad_tile(gyo, OW, OHW, xk, W, rows, &mask, gwk, Kc, OB, 5); break;                                 \
    case 3: wgrad_tile(gyo, OW, OHW, xk, W, rows, &mask, gwk, Kc, OB, 3); break;                                 \
    default: wgrad_tile(gyo, OW, OHW, xk, W, rows, &mask, gwk, Kc, OB, 1); break;                                \
    }

typedef struct {
    const fmd_conv_direct *d;   /* x, w unused: y is gy */
    float *parts;               /* nth x (O*Kc + O): partial gw then gb per thread */
} wgrad_job;

FMD_SIMD_CLONES_V4
static void wgrad_rows(const fmd_conv_direct *d, int64_t r0, int64_t r1, float *gw, float *gb) {
    const int64_t C = d->C, H = d->H, W = d->W, O = d->O, KH = d->KH, KW = d->KW;
    const int64_t OH = H - KH + 1, OW = W - KW + 1, HW = H * W, OHW = OH * OW, Kc = C * KH * KW;
    const int obmax = fmd_cpu_avx512() ? GOBMAX : 1;   /* AVX2 has 16 registers, not 32 */
    v16 mask;
    for (int i = 0; i < 16; i++) mask[i] = i >= 16 - OW % 16 ? 1.0f : 0.0f;
    /* rows per chunk: its gy and x rows stay in L2 (about 512 KB) while every tile reads them */
    const int64_t row_bytes = (O * OW + C * W) * (int64_t)sizeof(float);
    const int64_t chunk = 512 * 1024 / row_bytes > 1 ? 512 * 1024 / row_bytes : 1;
    for (int64_t r = r0; r < r1;) {
        const int64_t n = r / OH, oy = r % OH;
        int64_t rows = OH - oy < r1 - r ? OH - oy : r1 - r;
        if (rows > chunk) rows = chunk;
        const float *gyr = d->y + n * O * OHW + oy * OW;   /* y carries gy here */
        const float *xr = d->x + n * C * HW + oy * W;
        for (int64_t c = 0; c < C; c++)
            for (int64_t kh = 0; kh < KH; kh++)
                for (int64_t o0 = 0; o0 < O; o0 += obmax) {
                    const int ob = (int)(O - o0 < obmax ? O - o0 : obmax);
                    const float *gyo = gyr + o0 * OHW;
                    for (int64_t kw0 = 0; kw0 < KW;) {
                        const int64_t left = KW - kw0;
                        const int kb = left >= 7 ? 7 : left >= 5 ? 5 : left >= 3 ? 3 : 1;
                        const float *xk = xr + c * HW + kh * W + kw0;
                        float *gwk = gw + o0 * Kc + (c * KH + kh) * KW + kw0;
                        switch (ob) {
                        case 4: WGRAD_KB(4) break;
                        case 3: WGRAD_KB(3) break;
                        case 2: WGRAD_KB(2) break;
                        default: WGRAD_KB(1) break;
                        }
                        kw0 += kb;
                    }
                }
        if (gb)
            for (int64_t o = 0; o < O; o++) {
                v16 s = {0};
                for (int64_t i = 0; i < rows; i++) {
                    const float *g = gyr + o * OHW + i * OW;
                    for (int64_t ox = 0; ox < OW; ox += 16)
                        s += ox + 16 > OW ? load16(g + OW - 16) * mask : load16(g + ox);
                }
                gb[o] += hsum16(&s);
            }
        r += rows;
    }
}

static void wgrad_task(void *p, int ith, int nth) {
    const wgrad_job *j = p;
    const fmd_conv_direct *d = j->d;
    const int64_t size = d->O * d->C * d->KH * d->KW + d->O;
    float *part = j->parts + ith * size;
    int64_t b, e;
    fmd_split(d->N * (d->H - d->KH + 1), ith, nth, &b, &e);
    if (b < e) wgrad_rows(d, b, e, part, part + size - d->O);
}

// x (N,C,H,W), gy (N,O,H-KH+1,W-KW+1) -> gw (O,C,KH,KW) and gb (O) or NULL,
// both written whole; -1 when out of memory
int fmd_conv_direct_weight_grad(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t KH, int64_t KW,
                                const float *x, const float *gy, float *gw, float *gb) {
    const int nth = fmd_get_num_threads();
    const int64_t wsize = O * C * KH * KW, size = wsize + O;
    float *parts = calloc((size_t)(nth * size), sizeof *parts);   /* a part no thread ran stays zero */
    if (!parts) return fmd_fail("conv2d backward: out of memory for the weight gradient's partial sums");
    fmd_conv_direct d = {N, C, H, W, O, KH, KW, x, NULL, NULL, (float *)gy};
    wgrad_job j = {&d, parts};
    fmd_parallel_n(wgrad_task, &j, nth);
    for (int64_t i = 0; i < wsize; i++) {   /* sum the threads' parts in a fixed order */
        float s = 0.0f;
        for (int t = 0; t < nth; t++) s += parts[t * size + i];
        gw[i] = s;
    }
    if (gb)
        for (int64_t o = 0; o < O; o++) {
            float s = 0.0f;
            for (int t = 0; t < nth; t++) s += parts[t * size + wsize + o];
            gb[o] = s;
        }
    free(parts);
    return 0;
}
