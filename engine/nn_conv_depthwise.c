/* nn_conv_depthwise.c - conv2d's depthwise kernels (C/groups == 1: each
 * output channel reads one input channel), forward and backward.
 *
 * Direct loops over kernel taps, each a vectorisable axpy (stride 1: one
 * long axpy per tap over a zero-padded copy of the plane; otherwise one per
 * output row; 3x3 with padding 1, Xception's, sums all nine taps in
 * registers); im2col+GEMM would be ~10x slower because the GEMM has
 * K = KH*KW. The stride-1 kernels read x as max(x, 0) when asked (relu_in:
 * conv2d_fused's input ReLU) as they pad a plane. Forward splits (sample,
 * channel) planes over the pool, backward input channels, so every thread
 * owns the weight-gradient rows it writes. nn_conv.c picks this kernel;
 * nn_conv_separable.c runs its planes a sample at a time. */
#include "fmd_impl.h"

#include <stdlib.h>
#include <string.h>

/* keep GCC from turning short copy loops back into libc calls */
#if defined(__GNUC__) && !defined(__clang__)
#define FMD_INLINE_COPIES __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define FMD_INLINE_COPIES
#endif

/* ------------------------------------------------------------ depthwise */
/* y (OH,OW) = bias + x (H,W) correlated with the kernel k (KH,KW) */
FMD_SIMD_CLONES
static void dw_plane_fwd(const fmd_conv_geom *g, const float *restrict x, const float *restrict k, float bias,
                         float *restrict y) {
    const int64_t OW = g->OW, W = g->W, KW = g->KW;
    int64_t lo[64], hi[64], off[64];
    for (int64_t kw = 0; kw < KW; kw++) {
        off[kw] = kw * g->dw - g->pw;
        fmd_conv_valid_range(off[kw], g->sw, W, OW, &lo[kw], &hi[kw]);
    }
    for (int64_t i = 0; i < g->OHW; i++) y[i] = bias;
    for (int64_t oy = 0; oy < g->OH; oy++) {
        float *restrict yr = y + oy * OW;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            int64_t iy = oy * g->sh - g->ph + kh * g->dh;
            if (iy < 0 || iy >= g->H) continue;
            const float *restrict xr = x + iy * W;
            const float *kr = k + kh * KW;
            if (g->sw == 1) {
                for (int64_t kw = 0; kw < KW; kw++) {
                    const float wv = kr[kw], *restrict xs = xr + off[kw];
                    for (int64_t ox = lo[kw]; ox < hi[kw]; ox++) yr[ox] += wv * xs[ox];
                }
            } else {
                const int s = g->sw;
                for (int64_t kw = 0; kw < KW; kw++) {
                    const float wv = kr[kw], *restrict xs = xr + off[kw];
                    for (int64_t ox = lo[kw]; ox < hi[kw]; ox++) yr[ox] += wv * xs[ox * s];
                }
            }
        }
    }
}

/* adjoint of dw_plane_fwd for one plane: gx (H,W) += k^T gy (when gx), and
 * acc (KH*KW, OW) += per-tap products gy * x (when acc), summed over rows
 * later so that every inner loop is an elementwise, vectorisable update */
FMD_SIMD_CLONES
static void dw_plane_bwd(const fmd_conv_geom *g, const float *restrict gy, const float *restrict x,
                         const float *restrict k, float *restrict gx, float *restrict acc) {
    const int64_t OW = g->OW, W = g->W, KW = g->KW;
    const int s = g->sw;
    int64_t lo[64], hi[64], off[64];
    for (int64_t kw = 0; kw < KW; kw++) {
        off[kw] = kw * g->dw - g->pw;
        fmd_conv_valid_range(off[kw], s, W, OW, &lo[kw], &hi[kw]);
    }
    for (int64_t oy = 0; oy < g->OH; oy++) {
        const float *restrict gr = gy + oy * OW;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            int64_t iy = oy * g->sh - g->ph + kh * g->dh;
            if (iy < 0 || iy >= g->H) continue;
            for (int64_t kw = 0; kw < KW; kw++) {
                if (gx) {
                    const float wv = k[kh * KW + kw];
                    float *restrict xs = gx + iy * W + off[kw];
                    if (s == 1) for (int64_t ox = lo[kw]; ox < hi[kw]; ox++) xs[ox] += wv * gr[ox];
                    else for (int64_t ox = lo[kw]; ox < hi[kw]; ox++) xs[ox * s] += wv * gr[ox];
                }
                if (acc) {
                    const float *restrict xs = x + iy * W + off[kw];
                    float *restrict a = acc + (kh * KW + kw) * OW;
                    if (s == 1) for (int64_t ox = lo[kw]; ox < hi[kw]; ox++) a[ox] += gr[ox] * xs[ox];
                    else for (int64_t ox = lo[kw]; ox < hi[kw]; ox++) a[ox] += gr[ox] * xs[ox * s];
                }
            }
        }
    }
}

/* Stride 1 (the separable convs of Xception): on a zero-padded copy of the
 * plane, laid out at the padded width Wp, output pixel i = oy*Wp + ox reads
 * tap (kh, kw) at i + kh*dh*Wp + kw*dw, so each tap is one long axpy over
 * the whole plane instead of a short one per row (columns ox >= OW of the
 * Wp-wide layout are junk and never copied out). */
static int64_t dw1_span(const fmd_conv_geom *g) { return (g->OH - 1) * (g->W + 2 * g->pw) + g->OW; }

/* pad (Hp,Wp) = x (H,W) (max(x, 0) when relu: a ReLU before the conv, fused)
 * with a zero border. Plain loops, not memcpy: the rows are short (16 floats
 * in Xception's middle flow) and inlined into the AVX2 clones they
 * vectorise, where a libc call per row cost ~15%. */
FMD_INLINE_COPIES static inline void dw1_pad(const fmd_conv_geom *g, const float *restrict x, float *restrict pad,
                                             int relu) {
    const int64_t Wp = g->W + 2 * g->pw, Hp = g->H + 2 * g->ph, W = g->W, pw = g->pw;
    for (int64_t i = 0; i < g->ph * Wp; i++) pad[i] = 0;
    for (int64_t i = (g->ph + g->H) * Wp; i < Hp * Wp; i++) pad[i] = 0;
    for (int64_t iy = 0; iy < g->H; iy++) {
        float *restrict r = pad + (iy + g->ph) * Wp;
        const float *restrict s = x + iy * W;
        for (int64_t i = 0; i < pw; i++) r[i] = 0;
        if (relu) for (int64_t i = 0; i < W; i++) r[pw + i] = s[i] > 0 ? s[i] : 0;
        else for (int64_t i = 0; i < W; i++) r[pw + i] = s[i];
        for (int64_t i = pw + W; i < Wp; i++) r[i] = 0;
    }
}

/* 16 partial sums so that the reduction vectorises without -ffast-math */
static inline float dot16(const float *restrict a, const float *restrict b, int64_t n) {
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) acc[k] += a[i + k] * b[i + k];
    float s = 0;
    for (; i < n; i++) s += a[i] * b[i];
    for (int k = 0; k < 16; k++) s += acc[k];
    return s;
}

// x plane (H,W) -> y plane (OH,OW); scratch: pad (Hp*Wp), acc (span)
FMD_SIMD_CLONES FMD_INLINE_COPIES
static void dw1_plane_fwd(const fmd_conv_geom *g, const float *restrict x, const float *restrict k, float bias,
                          float *restrict y, float *restrict pad, float *restrict acc, int relu_in) {
    const int64_t Wp = g->W + 2 * g->pw, n = dw1_span(g), dw = g->dw;
    dw1_pad(g, x, pad, relu_in);
    for (int64_t i = 0; i < n; i++) acc[i] = bias;
    for (int64_t kh = 0; kh < g->KH; kh++) {
        const float *restrict src = pad + kh * g->dh * Wp;
        const float *kr = k + kh * g->KW;
        if (g->KW == 3) {   /* the common case: one pass per kernel row */
            const float w0 = kr[0], w1 = kr[1], w2 = kr[2];
            for (int64_t i = 0; i < n; i++) acc[i] += w0 * src[i] + w1 * src[i + dw] + w2 * src[i + 2 * dw];
        } else {
            for (int64_t kw = 0; kw < g->KW; kw++) {
                const float wv = kr[kw], *restrict s = src + kw * dw;
                for (int64_t i = 0; i < n; i++) acc[i] += wv * s[i];
            }
        }
    }
    for (int64_t oy = 0; oy < g->OH; oy++)
        for (int64_t i = 0; i < g->OW; i++) y[oy * g->OW + i] = acc[oy * Wp + i];
}

// gy plane (OH,OW) -> gx plane (H,W) += k^T gy (when gx; = when gx_set);
// gk[tap] += gy . x shifted (when gk). scratch: pad, gpad (Hp*Wp each), gyp (span)
FMD_SIMD_CLONES FMD_INLINE_COPIES
static void dw1_plane_bwd(const fmd_conv_geom *g, const float *restrict gy, const float *restrict x,
                          const float *restrict k, float *restrict gx, int gx_set, float *restrict gk,
                          float *restrict pad, float *restrict gpad, float *restrict gyp) {
    const int64_t Wp = g->W + 2 * g->pw, Hp = g->H + 2 * g->ph, n = dw1_span(g), dw = g->dw;
    /* gy at the padded width, junk columns zero so they contribute nothing */
    for (int64_t oy = 0; oy < g->OH; oy++) {
        float *restrict d = gyp + oy * Wp;
        const float *restrict s = gy + oy * g->OW;
        for (int64_t i = 0; i < g->OW; i++) d[i] = s[i];
        if (oy + 1 < g->OH) for (int64_t i = g->OW; i < Wp; i++) d[i] = 0;
    }
    if (gk) {
        dw1_pad(g, x, pad, 0);
        for (int64_t kh = 0; kh < g->KH; kh++)
            for (int64_t kw = 0; kw < g->KW; kw++)
                gk[kh * g->KW + kw] += dot16(gyp, pad + kh * g->dh * Wp + kw * dw, n);
    }
    if (gx) {
        for (int64_t i = 0; i < Hp * Wp; i++) gpad[i] = 0;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            float *restrict dst = gpad + kh * g->dh * Wp;
            const float *kr = k + kh * g->KW;
            if (g->KW == 3 && dw == 1 && n >= 2) {   /* gather form: each gpad element once per kernel row */
                const float w0 = kr[0], w1 = kr[1], w2 = kr[2];
                dst[0] += w0 * gyp[0];
                dst[1] += w0 * gyp[1] + w1 * gyp[0];
                for (int64_t i = 2; i < n; i++) dst[i] += w0 * gyp[i] + w1 * gyp[i - 1] + w2 * gyp[i - 2];
                dst[n] += w1 * gyp[n - 1] + w2 * gyp[n - 2];
                dst[n + 1] += w2 * gyp[n - 1];
            } else {
                for (int64_t kw = 0; kw < g->KW; kw++) {
                    const float wv = kr[kw];
                    float *restrict d = dst + kw * dw;
                    for (int64_t i = 0; i < n; i++) d[i] += wv * gyp[i];
                }
            }
        }
        for (int64_t iy = 0; iy < g->H; iy++) {
            const float *restrict r = gpad + (iy + g->ph) * Wp + g->pw;
            float *restrict o = gx + iy * g->W;
            if (gx_set) for (int64_t ix = 0; ix < g->W; ix++) o[ix] = r[ix];
            else for (int64_t ix = 0; ix < g->W; ix++) o[ix] += r[ix];
        }
    }
}

/* 3x3, stride 1, padding 1, dilation 1: every separable conv of Xception.
 * All nine taps of an output are summed in registers and stored once; the
 * general stride-1 form above passes over an accumulator once per kernel
 * row. Planes of >= 32 columns are made row by row straight into y;
 * narrower ones (Xception's 16x16 middle flow) as one span at the padded
 * width, then copied out, since a loop per 16-float row costs more than the
 * copy. The input gradient is the same correlation with the kernel flipped,
 * over a padded copy of gy; the nine weight-gradient taps are summed in one
 * pass with an accumulator vector each (measured in docs/performance.md,
 * change 7). */
static int dw3_same(const fmd_conv_geom *g) {
    return g->KH == 3 && g->KW == 3 && g->sh == 1 && g->sw == 1 && g->ph == 1 && g->pw == 1 && g->dh == 1 &&
           g->dw == 1;
}

enum { DW3_ROWS_MIN_W = 32 };

/* eight floats, loadable from any float address (how immintrin.h spells
 * _mm256_loadu_ps); the default clone lowers it to SSE pairs */
typedef float dw3_v8 __attribute__((vector_size(32), aligned(4)));

#define DW3_INLINE static inline __attribute__((always_inline))   /* into the SIMD clones below */

// the 3x3 correlation at pixel i of three consecutive rows of a padded plane; c: row-major taps
DW3_INLINE float dw3_at(const float *restrict r0, const float *restrict r1, const float *restrict r2, int64_t i,
                        const float *restrict c) {
    return c[0] * r0[i] + c[1] * r0[i + 1] + c[2] * r0[i + 2] + c[3] * r1[i] + c[4] * r1[i + 1] + c[5] * r1[i + 2] +
           c[6] * r2[i] + c[7] * r2[i + 1] + c[8] * r2[i + 2];
}

// pad (H+2,W+2) -> y (H,W) = bias + 3x3 correlation with c; add: y += instead
DW3_INLINE void dw3_rows(const float *restrict pad, int64_t H, int64_t W, const float *restrict c, float bias,
                         int add, float *restrict y) {
    const int64_t Wp = W + 2;
    for (int64_t oy = 0; oy < H; oy++) {
        const float *restrict r0 = pad + oy * Wp, *restrict r1 = r0 + Wp, *restrict r2 = r1 + Wp;
        float *restrict yr = y + oy * W;
        if (add) for (int64_t ox = 0; ox < W; ox++) yr[ox] += dw3_at(r0, r1, r2, ox, c);
        else for (int64_t ox = 0; ox < W; ox++) yr[ox] = bias + dw3_at(r0, r1, r2, ox, c);
    }
}

// the same through acc, one span at the padded width (pixel oy*Wp + ox), copied out
DW3_INLINE void dw3_span(const float *restrict pad, int64_t H, int64_t W, const float *restrict c, float bias,
                         int add, float *restrict acc, float *restrict y) {
    const int64_t Wp = W + 2, n = (H - 1) * Wp + W;
    for (int64_t i = 0; i < n; i++) acc[i] = bias + dw3_at(pad, pad + Wp, pad + 2 * Wp, i, c);
    for (int64_t oy = 0; oy < H; oy++) {
        float *restrict d = y + oy * W;
        const float *restrict a = acc + oy * Wp;
        if (add) for (int64_t i = 0; i < W; i++) d[i] += a[i];
        else for (int64_t i = 0; i < W; i++) d[i] = a[i];
    }
}

// gk[kh*3+kw] += sum over pixels of gy[oy,ox] * x[oy+kh-1, ox+kw-1]; gpad, pad (H+2,W+2)
FMD_SIMD_CLONES
static void dw3_taps(const float *restrict gpad, const float *restrict pad, int64_t H, int64_t W, float *gk) {
    const int64_t Wp = W + 2, n = (H - 1) * Wp + W;   /* pixel i = oy*Wp + ox; the junk columns of gy are pad zeros */
    const float *restrict g = gpad + Wp + 1;
    const int64_t off[9] = {0, 1, 2, Wp, Wp + 1, Wp + 2, 2 * Wp, 2 * Wp + 1, 2 * Wp + 2};
    dw3_v8 acc[9] = {{0}};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const dw3_v8 gv = *(const dw3_v8 *)(g + i);
        for (int t = 0; t < 9; t++) acc[t] += gv * *(const dw3_v8 *)(pad + i + off[t]);
    }
    for (int t = 0; t < 9; t++) {
        float s = 0;
        for (int64_t r = i; r < n; r++) s += g[r] * pad[r + off[t]];
        for (int l = 0; l < 8; l++) s += acc[t][l];
        gk[t] += s;
    }
}

// x plane (H,W) -> y plane (H,W); scratch: pad (H+2)*(W+2), then acc (span)
FMD_SIMD_CLONES FMD_INLINE_COPIES
static void dw3_plane_fwd(const fmd_conv_geom *g, const float *x, const float *k, float bias, float *y, float *pad,
                          int relu_in) {
    dw1_pad(g, x, pad, relu_in);
    float *acc = pad + (g->H + 2) * (g->W + 2);
    if (g->W < DW3_ROWS_MIN_W) dw3_span(pad, g->H, g->W, k, bias, 0, acc, y);
    else dw3_rows(pad, g->H, g->W, k, bias, 0, y);
}

// gy plane (H,W) -> gx plane (H,W) = (gx_set) or += k^T gy (when gx), gk += taps (when gk);
// scratch: pad, gpad ((H+2)*(W+2) each), then acc (span)
FMD_SIMD_CLONES FMD_INLINE_COPIES
static void dw3_plane_bwd(const fmd_conv_geom *g, const float *gy, const float *x, const float *k, float *gx,
                          int gx_set, float *gk, float *pad, float *gpad) {
    dw1_pad(g, gy, gpad, 0);   /* gy has the input's shape: same padding */
    if (gk) {
        dw1_pad(g, x, pad, 0);
        dw3_taps(gpad, pad, g->H, g->W, gk);
    }
    if (gx) {
        float flip[9];
        for (int t = 0; t < 9; t++) flip[t] = k[8 - t];
        float *acc = gpad + (g->H + 2) * (g->W + 2);
        if (g->W < DW3_ROWS_MIN_W) dw3_span(gpad, g->H, g->W, flip, 0.0f, !gx_set, acc, gx);
        else dw3_rows(gpad, g->H, g->W, flip, 0.0f, !gx_set, gx);
    }
}

// floats of a stride-1 plane backward's scratch: pad and gpad (Hp*Wp each), then gy at the padded width
int64_t fmd_conv_dw_bwd_floats(const fmd_conv_geom *g) {
    return 2 * (g->H + 2 * g->ph) * (g->W + 2 * g->pw) + dw1_span(g);
}

// a stride-1 depthwise plane's backward (dw3_plane_bwd or dw1_plane_bwd);
// buf: scratch of fmd_conv_dw_bwd_floats(g) = 2 * padn + dw1_span floats
void fmd_conv_dw_s1_plane_bwd(const fmd_conv_geom *g, const float *gy, const float *x, const float *k, float *gx,
                              int gx_set, float *gk, float *buf) {
    const int64_t padn = (g->H + 2 * g->ph) * (g->W + 2 * g->pw);
    if (dw3_same(g)) dw3_plane_bwd(g, gy, x, k, gx, gx_set, gk, buf, buf + padn);
    else dw1_plane_bwd(g, gy, x, k, gx, gx_set, gk, buf, buf + padn, buf + 2 * padn);
}

// planes [b, e) of the output (N*O, OH, OW), written one after another to y
void fmd_conv_dw_planes(fmd_conv_job *j, int64_t b, int64_t e, float *y) {
    const fmd_conv_geom *g = &j->g;
    int64_t padn = (g->H + 2 * g->ph) * (g->W + 2 * g->pw);
    int s1 = g->sh == 1 && g->sw == 1, same3 = dw3_same(g);
    float *buf = NULL;
    if (s1 && b < e && !(buf = fmd_conv_scratch(0, (size_t)(padn + dw1_span(g))))) { j->failed = 1; return; }
    for (int64_t pl = b; pl < e; pl++, y += g->OHW) {
        int64_t n = pl / g->O, o = pl % g->O, c = o / g->Og;
        const float *x = j->x + (n * g->C + c) * g->HW;
        float bias = j->b ? j->b[o] : 0.0f;
        if (same3) dw3_plane_fwd(g, x, j->w + o * g->Kc, bias, y, buf, j->relu_in);
        else if (s1) dw1_plane_fwd(g, x, j->w + o * g->Kc, bias, y, buf, buf + padn, j->relu_in);
        else dw_plane_fwd(g, x, j->w + o * g->Kc, bias, y);
    }
}

static void dw_fwd_task(void *p, int ith, int nth) {   /* planes (n, o) */
    fmd_conv_job *j = p;
    int64_t b, e;
    fmd_split(j->g.N * j->g.O, ith, nth, &b, &e);
    fmd_conv_dw_planes(j, b, e, j->y + b * j->g.OHW);
}

/* input channels c are split over threads: a thread owns gx[:, c] and the
 * weight/bias gradients of the Og output channels reading c. Stride 1 walks
 * sample by sample, so that the thread's planes of a sample follow each other
 * in memory (channel by channel, each plane is a jump of C planes that the
 * prefetcher does not follow: measured 1.6x slower at 16x16); each output
 * channel's taps still sum the samples in order. */
static void dw_bwd_task(void *p, int ith, int nth) {
    fmd_conv_job *j = p;
    const fmd_conv_geom *g = &j->g;
    int64_t b, e, ntap = g->KH * g->KW;
    fmd_split(g->C, ith, nth, &b, &e);
    if (b >= e) return;
    int s1 = g->sh == 1 && g->sw == 1;
    float *buf = NULL;
    size_t need = s1 ? (size_t)fmd_conv_dw_bwd_floats(g) : (size_t)(ntap * g->OW);
    if ((s1 || j->gw) && !(buf = fmd_conv_scratch(0, need))) { j->failed = 1; return; }
    if (s1) {
        const int64_t no = (e - b) * g->Og;   /* this thread's output channels, from o = b * Og */
        float *gks = j->gw ? calloc((size_t)(no * ntap), sizeof *gks) : NULL;
        float *bsum = j->gb ? calloc((size_t)no, sizeof *bsum) : NULL;
        if ((j->gw && !gks) || (j->gb && !bsum)) { free(gks); free(bsum); j->failed = 1; return; }
        for (int64_t n = 0; n < g->N; n++)
            for (int64_t c = b; c < e; c++)
                for (int64_t m = 0; m < g->Og; m++) {
                    int64_t o = c * g->Og + m, r = o - b * g->Og;
                    const float *gy = j->gy + (n * g->O + o) * g->OHW;
                    const float *x = j->x ? j->x + (n * g->C + c) * g->HW : NULL;
                    float *gx = j->gx ? j->gx + (n * g->C + c) * g->HW : NULL, *k = gks ? gks + r * ntap : NULL;
                    fmd_conv_dw_s1_plane_bwd(g, gy, x, j->w + o * ntap, gx, m == 0, k, buf);
                    if (bsum) {
                        float s = bsum[r];
                        for (int64_t i = 0; i < g->OHW; i++) s += gy[i];
                        bsum[r] = s;
                    }
                }
        if (gks) memcpy(j->gw + b * g->Og * ntap, gks, (size_t)(no * ntap) * sizeof *gks);
        if (bsum) memcpy(j->gb + b * g->Og, bsum, (size_t)no * sizeof *bsum);
        free(gks); free(bsum);
        return;
    }
    for (int64_t c = b; c < e; c++)
        for (int64_t m = 0; m < g->Og; m++) {
            int64_t o = c * g->Og + m;
            float *acc = j->gw ? buf : NULL;
            if (acc) memset(acc, 0, (size_t)(ntap * g->OW) * sizeof *acc);
            float bsum = 0;
            for (int64_t n = 0; n < g->N; n++) {
                const float *gy = j->gy + (n * g->O + o) * g->OHW, *x = j->x ? j->x + (n * g->C + c) * g->HW : NULL;
                float *gx = j->gx ? j->gx + (n * g->C + c) * g->HW : NULL;
                dw_plane_bwd(g, gy, x, j->w + o * ntap, gx, acc);
                if (j->gb) for (int64_t i = 0; i < g->OHW; i++) bsum += gy[i];
            }
            if (j->gw) {
                for (int64_t t = 0; t < ntap; t++) {
                    float s = 0;
                    for (int64_t ox = 0; ox < g->OW; ox++) s += acc[t * g->OW + ox];
                    j->gw[o * ntap + t] = s;
                }
            }
            if (j->gb) j->gb[o] = bsum;
        }
}

// x (N,C,H,W) -> y (N,O,OH,OW), (sample, channel) planes split over the pool
void fmd_conv_dw_forward(fmd_conv_job *j) { fmd_parallel(dw_fwd_task, j); }

// gy (N,O,OH,OW) -> gx, gw, gb (each when not NULL), input channels split over the pool
void fmd_conv_dw_backward(fmd_conv_job *j) { fmd_parallel(dw_bwd_task, j); }
