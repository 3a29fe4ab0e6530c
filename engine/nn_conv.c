/* nn_conv.c - conv2d forward and backward.
 *
 * x is (N,C,H,W), w is (O, C/groups, KH, KW), b is (O) or NULL; the output
 * is (N,O,OH,OW) with OH = (H + 2ph - dh*(KH-1) - 1) / sh + 1 (same for W).
 *
 * Four kernels:
 *  - general: per sample, group and tile of output pixels, im2col into a
 *    per-thread scratch buffer (rows = (c, kh, kw), columns = pixels of the
 *    tile) and one GEMM (O/g x C/g*KH*KW) @ (C/g*KH*KW x tile) straight into
 *    the output.
 *  - pointwise (1x1, stride 1, pad 0): the input plane already is the column
 *    matrix, so the GEMM reads x directly; on planes of <= 128 pixels the
 *    batch is regrouped into one (C, N*HW) matrix and one GEMM.
 *  - depthwise (C/groups == 1: each output channel reads one input channel):
 *    direct loops over kernel taps, each a vectorisable axpy (stride 1: one
 *    long axpy per tap over a zero-padded copy of the plane; otherwise one
 *    per output row; 3x3 with padding 1, Xception's, sums all nine taps in
 *    registers); im2col+GEMM would be ~10x slower because the GEMM has
 *    K = KH*KW.
 *  - direct (nn_conv_direct.c; stride 1, pad 0, groups 1, not 1x1, O <= 64,
 *    output rows >= 16 pixels: SimpleNet's convs and Xception's second):
 *    register tiles of output channels x pixels, no im2col. It makes the
 *    output, the input gradient when C <= 64 too, and the weight gradient
 *    when O <= 32 (beyond that im2col+GEMM was faster).
 * fmd_conv2d_fused adds, without a graph, a ReLU of the input (read as
 * max(x, 0) by the stride-1 depthwise kernels as they pad a plane) and an
 * epilogue, an eval-mode BatchNorm (and ReLU) applied to each sample's output
 * right after its GEMM (a pass of its own after the direct, batched 1x1 and
 * depthwise kernels).
 * fmd_sepconv2d_fused runs a depthwise then a pointwise conv a sample at a
 * time, the sample's depthwise output in a per-thread buffer; fmd_sepconv2d
 * does the same with a graph, its backward a sample at a time too.
 * Parallelism: samples are split over the pool, each thread running
 * single-threaded BLAS on its own scratch. With fewer samples than that
 * pays for (batch 1 for saliency/Grad-CAM), samples run in turn and
 * fmd_sgemm splits each GEMM while im2col/col2im split channels. Depthwise
 * splits (sample, channel) planes forward and input channels backward, so
 * every thread owns the weight-gradient rows it writes. */
#include "fmd_impl.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* keep GCC from turning short copy loops back into libc calls */
#if defined(__GNUC__) && !defined(__clang__)
#define FMD_INLINE_COPIES __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define FMD_INLINE_COPIES
#endif

typedef struct {
    int64_t N, C, H, W, O, KH, KW, OH, OW;
    int64_t Cg, Og, Kc, HW, OHW;   /* channels per group, K of the GEMM, plane sizes */
    int sh, sw, ph, pw, dh, dw, groups;
    int pointwise, depthwise;
} conv_geom;

/* ------------------------------------------------------ per-thread scratch */
/* Grown on demand and kept: pool threads live for the whole process, so
 * every conv call after the first reuses the same buffers. */
static _Thread_local struct { float *p; size_t n; } scratch_buf[3];

static float *scratch(int slot, size_t n) {
    if (scratch_buf[slot].n < n) {
        free(scratch_buf[slot].p);
        scratch_buf[slot].p = malloc(n * sizeof(float));
        scratch_buf[slot].n = scratch_buf[slot].p ? n : 0;
    }
    return scratch_buf[slot].p;
}

/* ------------------------------------------------------------- geometry */
/* output positions o in [0, out) whose input index o*s + off lies in [0, in) */
static void valid_range(int64_t off, int s, int64_t in, int64_t out, int64_t *lo, int64_t *hi) {
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t last = in - 1 - off;   /* o*s <= last */
    int64_t h = last < 0 ? 0 : last / s + 1;
    if (h > out) h = out;
    if (l > h) l = h;
    *lo = l; *hi = h;
}

static int conv_geometry(const fmd_tensor *x, const fmd_tensor *w, const fmd_tensor *b, int sh, int sw,
                         int ph, int pw, int dh, int dw, int groups, conv_geom *g) {
    char a[128], c[128];
    if (x->ndim != 4)
        return fmd_fail("conv2d: input must be 4-D (N,C,H,W), got %s", fmd_shape_str(a, sizeof a, x->ndim, x->shape));
    if (w->ndim != 4)
        return fmd_fail("conv2d: weight must be 4-D (O,C/groups,KH,KW), got %s",
                        fmd_shape_str(a, sizeof a, w->ndim, w->shape));
    fmd_shape_str(a, sizeof a, x->ndim, x->shape);
    fmd_shape_str(c, sizeof c, w->ndim, w->shape);
    if (sh < 1 || sw < 1) return fmd_fail("conv2d: stride (%d, %d) must be positive", sh, sw);
    if (dh < 1 || dw < 1) return fmd_fail("conv2d: dilation (%d, %d) must be positive", dh, dw);
    if (ph < 0 || pw < 0) return fmd_fail("conv2d: padding (%d, %d) must not be negative", ph, pw);
    if (groups < 1) return fmd_fail("conv2d: groups %d must be positive", groups);
    if (w->shape[0] % groups)
        return fmd_fail("conv2d: weight %s has %lld output channels, not divisible by groups %d", c,
                        (long long)w->shape[0], groups);
    if (x->shape[1] != w->shape[1] * groups)
        return fmd_fail("conv2d: input %s has %lld channels, weight %s expects %lld (x groups %d)", a,
                        (long long)x->shape[1], c, (long long)w->shape[1], groups);
    if (w->shape[2] < 1 || w->shape[3] < 1 || w->shape[0] < 1)
        return fmd_fail("conv2d: weight %s must have a non-empty kernel and output channels", c);
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0])) {
        char d[128];
        return fmd_fail("conv2d: bias %s should be [%lld] (one per output channel of weight %s)",
                        fmd_shape_str(d, sizeof d, b->ndim, b->shape), (long long)w->shape[0], c);
    }
    g->N = x->shape[0]; g->C = x->shape[1]; g->H = x->shape[2]; g->W = x->shape[3];
    g->O = w->shape[0]; g->KH = w->shape[2]; g->KW = w->shape[3];
    int64_t eh = (int64_t)dh * (g->KH - 1) + 1, ew = (int64_t)dw * (g->KW - 1) + 1;
    if (g->H + 2 * (int64_t)ph < eh || g->W + 2 * (int64_t)pw < ew)
        return fmd_fail("conv2d: input %s padded by (%d, %d) is smaller than the dilated kernel (%lld x %lld)", a,
                        ph, pw, (long long)eh, (long long)ew);
    g->OH = (g->H + 2 * (int64_t)ph - eh) / sh + 1;
    g->OW = (g->W + 2 * (int64_t)pw - ew) / sw + 1;
    g->sh = sh; g->sw = sw; g->ph = ph; g->pw = pw; g->dh = dh; g->dw = dw; g->groups = groups;
    g->Cg = g->C / groups; g->Og = g->O / groups;
    g->Kc = g->Cg * g->KH * g->KW;
    g->HW = g->H * g->W; g->OHW = g->OH * g->OW;
    g->pointwise = g->KH == 1 && g->KW == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0;
    g->depthwise = g->Cg == 1 && !g->pointwise && g->KH <= 64 && g->KW <= 64;
    if (g->OHW > INT_MAX || g->Kc > INT_MAX || g->O > INT_MAX)
        return fmd_fail("conv2d: input %s with weight %s is too large for a BLAS call", a, c);
    return 0;
}

/* ------------------------------------------------------- im2col, col2im */
/* The column matrix of a sample is built one tile of output pixels
 * [p0, p1) at a time: col is (Cg*KH*KW, p1-p0), small enough to stay in L2
 * while the GEMM reads it (a whole 7x7 conv1 column matrix of a 256x256
 * image is 37 MB). */
#define TILE_FLOATS (96 * 1024)   /* ~384 KB of columns per tile */

static int64_t tile_pixels(const conv_geom *g) {
    int64_t nb = TILE_FLOATS / g->Kc;
    if (nb < 256) nb = 256;
    if (nb >= g->OHW) return g->OHW;
    return nb;
}

/* x is (Cg,H,W) of one sample and group; fills rows of channels [c0, c1) of
 * col (Cg*KH*KW, p1-p0) for output pixels [p0, p1); zeros where the kernel
 * reads padding. adjoint: x += col scattered back instead (col2im). */
static void im2col(const conv_geom *g, float *x, float *col, int64_t c0, int64_t c1, int64_t p0, int64_t p1,
                   int adjoint) {
    const int64_t W = g->W, OW = g->OW, ld = p1 - p0, oy0 = p0 / OW, oy1 = (p1 - 1) / OW;
    const int s = g->sw;
    for (int64_t c = c0; c < c1; c++)
        for (int64_t kh = 0; kh < g->KH; kh++)
            for (int64_t kw = 0; kw < g->KW; kw++) {
                float *dst = col + ((c * g->KH + kh) * g->KW + kw) * ld - p0;   /* indexed by pixel */
                float *plane = x + c * g->HW;
                int64_t xoff = kw * g->dw - g->pw, lo, hi;
                valid_range(xoff, s, W, OW, &lo, &hi);
                for (int64_t oy = oy0; oy <= oy1; oy++) {
                    int64_t a = oy == oy0 ? p0 - oy * OW : 0, b = oy == oy1 ? p1 - oy * OW : OW;
                    int64_t va = lo > a ? lo : a, vb = hi < b ? hi : b;
                    int64_t iy = oy * g->sh - g->ph + kh * g->dh;
                    float *d = dst + oy * OW, *row = plane + iy * W;
                    if (iy < 0 || iy >= g->H || va >= vb) {
                        if (!adjoint) memset(d + a, 0, (size_t)(b - a) * sizeof *d);
                        continue;
                    }
                    if (adjoint) {
                        if (s == 1) for (int64_t ox = va; ox < vb; ox++) row[ox + xoff] += d[ox];
                        else for (int64_t ox = va; ox < vb; ox++) row[ox * s + xoff] += d[ox];
                        continue;
                    }
                    if (va > a) memset(d + a, 0, (size_t)(va - a) * sizeof *d);
                    if (s == 1) memcpy(d + va, row + va + xoff, (size_t)(vb - va) * sizeof *d);
                    else for (int64_t ox = va; ox < vb; ox++) d[ox] = row[ox * s + xoff];
                    if (b > vb) memset(d + vb, 0, (size_t)(b - vb) * sizeof *d);
                }
            }
}

typedef struct { const conv_geom *g; float *x, *col; int64_t p0, p1; int adjoint; } cols_job;

static void cols_task(void *p, int ith, int nth) {
    cols_job *j = p;
    int64_t b, e;
    fmd_split(j->g->Cg, ith, nth, &b, &e);
    im2col(j->g, j->x, j->col, b, e, j->p0, j->p1, j->adjoint);
}

/* im2col / col2im of one tile, split over channels when asked */
static void cols(const conv_geom *g, const float *x, float *col, int64_t p0, int64_t p1, int adjoint, int par) {
    cols_job j = {g, (float *)x, col, p0, p1, adjoint};
    if (par && g->Cg > 1 && g->Kc * (p1 - p0) >= (1 << 16)) fmd_parallel(cols_task, &j);
    else cols_task(&j, 0, 1);
}

/* ------------------------------------------------------ general forward */
typedef struct {
    conv_geom g;
    const float *x, *w, *b;   /* x (N,C,H,W), w (O,Kc), b (O) or NULL */
    float *y;                  /* (N,O,OH,OW) */
    const float *ea, *eb;      /* epilogue y = y * ea[o] + eb[o] (then max(y, 0) if erelu), or NULL */
    int erelu;
    int relu_in;               /* x is read as max(x, 0) (the stride-1 depthwise kernels) */
    /* backward */
    const float *gy;           /* (N,O,OH,OW) */
    float *gx;                 /* (N,C,H,W) zeroed, or NULL */
    float *gw, *gb;            /* per-thread partials: nparts x (O*Kc) and x O, or NULL */
    int nparts;
    int failed;
} conv_job;

/* ---------------------------------------------------------- epilogue */
/* An eval-mode BatchNorm (and ReLU) after a conv, applied to each sample's
 * output right after its GEMM, while it is still in cache, by batch_norm's
 * own plane loop (fmd_plane_affine): the same numbers, without another pass
 * over memory. */
// planes [p0, p1) of y (N*O, OHW), in place
static void epilogue(const conv_job *j, int64_t p0, int64_t p1) {
    for (int64_t pl = p0; pl < p1; pl++) {
        int64_t o = pl % j->g.O;
        float *y = j->y + pl * j->g.OHW;
        fmd_plane_affine(y, y, j->g.OHW, j->ea[o], j->eb[o], j->erelu);
    }
}

static void epilogue_task(void *p, int ith, int nth) {
    const conv_job *j = p;
    int64_t b, e;
    fmd_split(j->g.N * j->g.O, ith, nth, &b, &e);
    epilogue(j, b, e);
}

/* y[n] = w * xn (+ b), then the epilogue; xn is sample n's input (C,H,W),
 * j->x's or another's (sepconv_fused); par: this is the only sample being
 * worked on */
static void fwd_sample_from(conv_job *j, int64_t n, const float *xn, int par) {
    const conv_geom *g = &j->g;
    const int64_t nb = tile_pixels(g);
    float *col = NULL;
    if (!g->pointwise && !(col = scratch(0, (size_t)(g->Kc * nb)))) { j->failed = 1; return; }
    for (int gi = 0; gi < g->groups; gi++) {
        const float *xg = xn + gi * g->Cg * g->HW;
        const float *wg = j->w + gi * g->Og * g->Kc;
        float *yg = j->y + (n * g->O + gi * g->Og) * g->OHW;
        float beta = 0;
        if (j->b) {   /* start from the bias, then accumulate the GEMM */
            for (int64_t o = 0; o < g->Og; o++) {
                float bv = j->b[gi * g->Og + o], *r = yg + o * g->OHW;
                for (int64_t i = 0; i < g->OHW; i++) r[i] = bv;
            }
            beta = 1;
        }
        if (g->pointwise) {
            fmd_sgemm(0, 0, g->Og, g->OHW, g->Kc, 1.0f, wg, g->Kc, xg, g->OHW, beta, yg, g->OHW);
            continue;
        }
        for (int64_t p0 = 0; p0 < g->OHW; p0 += nb) {   /* y[:, tile] = w_g @ col(tile) */
            int64_t p1 = p0 + nb < g->OHW ? p0 + nb : g->OHW;
            cols(g, xg, col, p0, p1, 0, par);
            fmd_sgemm(0, 0, g->Og, p1 - p0, g->Kc, 1.0f, wg, g->Kc, col, p1 - p0, beta, yg + p0, g->OHW);
        }
    }
    if (j->ea) epilogue(j, n * g->O, (n + 1) * g->O);
}

static void fwd_sample(conv_job *j, int64_t n, int par) { fwd_sample_from(j, n, j->x + n * j->g.C * j->g.HW, par); }

static void fwd_task(void *p, int ith, int nth) {
    conv_job *j = p;
    int64_t b, e;
    fmd_split(j->g.N, ith, nth, &b, &e);
    for (int64_t n = b; n < e && !j->failed; n++) fwd_sample(j, n, 0);
}

/* split samples over the pool only when that balances: otherwise samples run
 * in turn and each GEMM is split instead */
static int batch_parallel(int64_t N) {
    int nth = fmd_in_parallel() ? 1 : fmd_get_num_threads();
    return nth > 1 && (N % nth == 0 || N >= 4 * nth);
}

/* ------------------------------------------------------ general backward */
static void bwd_sample(conv_job *j, int64_t n, int part, int par) {
    const conv_geom *g = &j->g;
    const int64_t nb = tile_pixels(g);
    float *col = NULL, *dcol = NULL;
    if (!g->pointwise) {
        if (j->gw && !(col = scratch(0, (size_t)(g->Kc * nb)))) { j->failed = 1; return; }
        if (j->gx && !(dcol = scratch(1, (size_t)(g->Kc * nb)))) { j->failed = 1; return; }
    }
    for (int gi = 0; gi < g->groups; gi++) {
        const float *xg = j->x ? j->x + (n * g->C + gi * g->Cg) * g->HW : NULL;   /* NULL: no weight gradient */
        const float *wg = j->w + gi * g->Og * g->Kc;
        const float *gyg = j->gy + (n * g->O + gi * g->Og) * g->OHW;
        float *gw = j->gw ? j->gw + (size_t)part * g->O * g->Kc + gi * g->Og * g->Kc : NULL;
        float *gxg = j->gx ? j->gx + (n * g->C + gi * g->Cg) * g->HW : NULL;
        if (g->pointwise) {
            /* gw_g (Og,Cg) += gy_g (Og,HW) @ x_g^T; gx_g (Cg,HW) = w_g^T @ gy_g */
            if (gw) fmd_sgemm(0, 1, g->Og, g->Kc, g->OHW, 1.0f, gyg, g->OHW, xg, g->OHW, 1.0f, gw, g->Kc);
            if (gxg) fmd_sgemm(1, 0, g->Kc, g->OHW, g->Og, 1.0f, wg, g->Kc, gyg, g->OHW, 0.0f, gxg, g->OHW);
        } else {
            for (int64_t p0 = 0; p0 < g->OHW; p0 += nb) {
                int64_t p1 = p0 + nb < g->OHW ? p0 + nb : g->OHW, m = p1 - p0;
                if (gw) {   /* gw_g (Og,Kc) += gy_g[:, tile] @ col(tile)^T */
                    cols(g, xg, col, p0, p1, 0, par);
                    fmd_sgemm(0, 1, g->Og, g->Kc, m, 1.0f, gyg + p0, g->OHW, col, m, 1.0f, gw, g->Kc);
                }
                if (gxg) {  /* dcol (Kc,tile) = w_g^T @ gy_g[:, tile], scattered back into gx */
                    fmd_sgemm(1, 0, g->Kc, m, g->Og, 1.0f, wg, g->Kc, gyg + p0, g->OHW, 0.0f, dcol, m);
                    cols(g, gxg, dcol, p0, p1, 1, par);
                }
            }
        }
        if (j->gb) {
            float *gb = j->gb + (size_t)part * g->O + gi * g->Og;
            for (int64_t o = 0; o < g->Og; o++) {
                const float *r = gyg + o * g->OHW;
                float s = 0;
                for (int64_t i = 0; i < g->OHW; i++) s += r[i];
                gb[o] += s;
            }
        }
    }
}

static void bwd_task(void *p, int ith, int nth) {
    conv_job *j = p;
    int64_t b, e;
    fmd_split(j->g.N, ith, nth, &b, &e);
    for (int64_t n = b; n < e && !j->failed; n++) bwd_sample(j, n, ith, 0);
}

/* ------------------------------------------------------------ depthwise */
/* y (OH,OW) = bias + x (H,W) correlated with the kernel k (KH,KW) */
FMD_SIMD_CLONES
static void dw_plane_fwd(const conv_geom *g, const float *restrict x, const float *restrict k, float bias,
                         float *restrict y) {
    const int64_t OW = g->OW, W = g->W, KW = g->KW;
    int64_t lo[64], hi[64], off[64];
    for (int64_t kw = 0; kw < KW; kw++) {
        off[kw] = kw * g->dw - g->pw;
        valid_range(off[kw], g->sw, W, OW, &lo[kw], &hi[kw]);
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
static void dw_plane_bwd(const conv_geom *g, const float *restrict gy, const float *restrict x,
                         const float *restrict k, float *restrict gx, float *restrict acc) {
    const int64_t OW = g->OW, W = g->W, KW = g->KW;
    const int s = g->sw;
    int64_t lo[64], hi[64], off[64];
    for (int64_t kw = 0; kw < KW; kw++) {
        off[kw] = kw * g->dw - g->pw;
        valid_range(off[kw], s, W, OW, &lo[kw], &hi[kw]);
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
static int64_t dw1_span(const conv_geom *g) { return (g->OH - 1) * (g->W + 2 * g->pw) + g->OW; }

/* pad (Hp,Wp) = x (H,W) (max(x, 0) when relu: a ReLU before the conv, fused)
 * with a zero border. Plain loops, not memcpy: the rows are short (16 floats
 * in Xception's middle flow) and inlined into the AVX2 clones they
 * vectorise, where a libc call per row cost ~15%. */
FMD_INLINE_COPIES static inline void dw1_pad(const conv_geom *g, const float *restrict x, float *restrict pad,
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
static void dw1_plane_fwd(const conv_geom *g, const float *restrict x, const float *restrict k, float bias,
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
static void dw1_plane_bwd(const conv_geom *g, const float *restrict gy, const float *restrict x,
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
static int dw3_same(const conv_geom *g) {
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
static void dw3_plane_fwd(const conv_geom *g, const float *x, const float *k, float bias, float *y, float *pad,
                          int relu_in) {
    dw1_pad(g, x, pad, relu_in);
    float *acc = pad + (g->H + 2) * (g->W + 2);
    if (g->W < DW3_ROWS_MIN_W) dw3_span(pad, g->H, g->W, k, bias, 0, acc, y);
    else dw3_rows(pad, g->H, g->W, k, bias, 0, y);
}

// gy plane (H,W) -> gx plane (H,W) = (gx_set) or += k^T gy (when gx), gk += taps (when gk);
// scratch: pad, gpad ((H+2)*(W+2) each), then acc (span)
FMD_SIMD_CLONES FMD_INLINE_COPIES
static void dw3_plane_bwd(const conv_geom *g, const float *gy, const float *x, const float *k, float *gx, int gx_set,
                          float *gk, float *pad, float *gpad) {
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

// a stride-1 depthwise plane's backward (dw3_plane_bwd or dw1_plane_bwd);
// buf: scratch of 2 * padn + dw1_span floats
static void dw_s1_plane_bwd(const conv_geom *g, const float *gy, const float *x, const float *k, float *gx,
                            int gx_set, float *gk, float *buf) {
    const int64_t padn = (g->H + 2 * g->ph) * (g->W + 2 * g->pw);
    if (dw3_same(g)) dw3_plane_bwd(g, gy, x, k, gx, gx_set, gk, buf, buf + padn);
    else dw1_plane_bwd(g, gy, x, k, gx, gx_set, gk, buf, buf + padn, buf + 2 * padn);
}

// planes [b, e) of the output (N*O, OH, OW), written one after another to y
static void dw_fwd_planes(conv_job *j, int64_t b, int64_t e, float *y) {
    const conv_geom *g = &j->g;
    int64_t padn = (g->H + 2 * g->ph) * (g->W + 2 * g->pw);
    int s1 = g->sh == 1 && g->sw == 1, same3 = dw3_same(g);
    float *buf = NULL;
    if (s1 && b < e && !(buf = scratch(0, (size_t)(padn + dw1_span(g))))) { j->failed = 1; return; }
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
    conv_job *j = p;
    int64_t b, e;
    fmd_split(j->g.N * j->g.O, ith, nth, &b, &e);
    dw_fwd_planes(j, b, e, j->y + b * j->g.OHW);
}

/* input channels c are split over threads: a thread owns gx[:, c] and the
 * weight/bias gradients of the Og output channels reading c. Stride 1 walks
 * sample by sample, so that the thread's planes of a sample follow each other
 * in memory (channel by channel, each plane is a jump of C planes that the
 * prefetcher does not follow: measured 1.6x slower at 16x16); each output
 * channel's taps still sum the samples in order. */
static void dw_bwd_task(void *p, int ith, int nth) {
    conv_job *j = p;
    const conv_geom *g = &j->g;
    int64_t b, e, ntap = g->KH * g->KW, padn = (g->H + 2 * g->ph) * (g->W + 2 * g->pw);
    fmd_split(g->C, ith, nth, &b, &e);
    if (b >= e) return;
    int s1 = g->sh == 1 && g->sw == 1;
    float *buf = NULL;
    size_t need = s1 ? (size_t)(2 * padn + dw1_span(g)) : (size_t)(ntap * g->OW);
    if ((s1 || j->gw) && !(buf = scratch(0, need))) { j->failed = 1; return; }
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
                    dw_s1_plane_bwd(g, gy, x, j->w + o * ntap, gx, m == 0, k, buf);
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

/* ------------------------------------------- pointwise on small planes */
/* A 1x1 conv on an 8x8 plane (Xception's exit flow) gives each sample's GEMM
 * only 64 columns, too few for BLAS to run near its peak. There the batch is
 * regrouped into one (C, N*HW) matrix and each product is a single GEMM
 * split over the pool; the regrouping copies are small next to it. */
enum { PW_BATCH_MAX_HW = 128 };

static int pw_batched(const conv_geom *g) { return g->pointwise && g->groups == 1 && g->N > 1 && g->OHW <= PW_BATCH_MAX_HW; }

typedef struct { const float *src; float *dst; int64_t A, B, S; } swap_job;

static void swap_task(void *p, int ith, int nth) {   /* rows of dst split over threads */
    const swap_job *j = p;
    int64_t b, e;
    fmd_split(j->A * j->B, ith, nth, &b, &e);
    for (int64_t r = b; r < e; r++) {   /* dst row r = (b_, a_) reads src row (a_, b_) */
        const int64_t bi = r / j->A, ai = r % j->A;
        memcpy(j->dst + r * j->S, j->src + (ai * j->B + bi) * j->S, (size_t)j->S * sizeof(float));
    }
}

// src (A,B,S) -> dst (B,A,S)
static void swap01(const float *src, float *dst, int64_t A, int64_t B, int64_t S) {
    swap_job j = {src, dst, A, B, S};
    if (A * B * S >= (1 << 15)) fmd_parallel(swap_task, &j);
    else swap_task(&j, 0, 1);
}

// x (N,C,HW), w (O,C), b (O) or NULL -> y (N,O,HW); -1 when out of memory
static int pw_batched_fwd(const conv_geom *g, const float *x, const float *w, const float *b, float *y) {
    const int64_t N = g->N, C = g->C, O = g->O, S = g->OHW, NS = N * S;
    float *xt = malloc((size_t)(C * NS) * sizeof *xt), *yt = malloc((size_t)(O * NS) * sizeof *yt);
    if (!xt || !yt) { free(xt); free(yt); return fmd_fail("conv2d: out of memory regrouping a 1x1 conv's batch"); }
    swap01(x, xt, N, C, S);   /* (C, N*HW) */
    if (b)
        for (int64_t o = 0; o < O; o++)
            for (int64_t i = 0; i < NS; i++) yt[o * NS + i] = b[o];
    fmd_sgemm(0, 0, O, NS, C, 1.0f, w, C, xt, NS, b ? 1.0f : 0.0f, yt, NS);
    swap01(yt, y, O, N, S);
    free(xt); free(yt);
    return 0;
}

// gy (N,O,HW), x (N,C,HW) or NULL, w (O,C) -> gx (N,C,HW), gw (O,C), gb (O),
// each written whole when not NULL; -1 when out of memory
static int pw_batched_bwd(const conv_geom *g, const float *gy, const float *x, const float *w, float *gx, float *gw,
                          float *gb) {
    const int64_t N = g->N, C = g->C, O = g->O, S = g->OHW, NS = N * S;
    float *gyt = malloc((size_t)(O * NS) * sizeof *gyt);
    float *t = (gx || gw) ? malloc((size_t)(C * NS) * sizeof *t) : NULL;   /* x^T, then gx^T */
    if (!gyt || ((gx || gw) && !t)) {
        free(gyt); free(t);
        return fmd_fail("conv2d backward: out of memory regrouping a 1x1 conv's batch");
    }
    swap01(gy, gyt, N, O, S);   /* (O, N*HW) */
    if (gw) {                   /* gw (O,C) = gy^T (O,NS) @ x^T (C,NS)^T */
        swap01(x, t, N, C, S);
        fmd_sgemm(0, 1, O, C, NS, 1.0f, gyt, NS, t, NS, 0.0f, gw, C);
    }
    if (gx) {                   /* gx^T (C,NS) = w^T @ gy^T */
        fmd_sgemm(1, 0, C, NS, O, 1.0f, w, C, gyt, NS, 0.0f, t, NS);
        swap01(t, gx, C, N, S);
    }
    if (gb)
        for (int64_t o = 0; o < O; o++) {
            double s = 0;
            for (int64_t i = 0; i < NS; i++) s += gyt[o * NS + i];
            gb[o] = (float)s;
        }
    free(gyt); free(t);
    return 0;
}

/* the direct kernel (nn_conv_direct.c) suits this conv */
static int direct_ok(const conv_geom *g) {
    int unit = g->groups == 1 && !g->pointwise && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 &&
               g->dh == 1 && g->dw == 1;
    return fmd_conv_direct_ok(g->O, g->W, g->KW, unit);
}

/* the stride-1 depthwise kernels read x as max(x, 0) themselves (relu_in);
 * the others need it rectified first (a depthwise conv of one channel may go
 * to the direct kernel) */
static int reads_relu_in(const conv_geom *g) { return g->depthwise && g->sh == 1 && g->sw == 1 && !direct_ok(g); }

/* -------------------------------------------------------------- autograd */
// sum of nparts per-thread partials of n floats each -> dst
static void sum_parts(const float *parts, int nparts, int64_t n, float *dst) {
    for (int64_t i = 0; i < n; i++) dst[i] = 0;
    for (int p = 0; p < nparts; p++)
        for (int64_t i = 0; i < n; i++) dst[i] += parts[(size_t)p * n + i];
}

static fmd_tensor *contiguous_nograd(fmd_tensor *t) {
    int prev = fmd_set_grad_enabled(0);
    fmd_tensor *c = fmd_contiguous(t);
    fmd_set_grad_enabled(prev);
    return c;
}

/* The input of a convolution whose producer is a bias-free depthwise
 * convolution (Xception's SeparableConv: depthwise then pointwise) is not
 * saved: backward recomputes it from the producer's saved input and weight,
 * still held because the producer's node runs after this one. The
 * depthwise pass is cheap (KH*KW multiply-adds per value, against C for
 * the pointwise one) and that activation is a fifth of Xception's saved
 * memory. iarg[7] = 1 marks a bias-free depthwise node, iarg[8] = 1 a node
 * whose input is to be recomputed. */
static int conv_backward(fmd_node *nd, fmd_tensor *gout);

static int recomputable(const fmd_tensor *x) {
    const fmd_node *p = x->grad_fn;
    return p && p->backward == conv_backward && p->iarg[7] == 1 && p->saved[0] && p->saved[1] &&
           fmd_is_contiguous(x) && x->offset == 0;
}

static fmd_tensor *recompute_input(fmd_node *nd) {
    fmd_tensor *in = nd->inputs[0];
    fmd_node *p = in->grad_fn;
    if (!p || p->backward != conv_backward || !p->saved[0] || !p->saved[1])
        return fmd_fail_null("trying to backward through the graph a second time (this conv2d's input is "
                             "recomputed from a depthwise conv2d whose graph an earlier backward freed)");
    int prev = fmd_set_grad_enabled(0);
    fmd_tensor *x = fmd_conv2d(p->saved[0], p->saved[1], NULL, (int)p->iarg[0], (int)p->iarg[1], (int)p->iarg[2],
                               (int)p->iarg[3], (int)p->iarg[4], (int)p->iarg[5], (int)p->iarg[6]);
    fmd_set_grad_enabled(prev);
    return x;
}

static int conv_backward(fmd_node *nd, fmd_tensor *gout) {
    fmd_tensor *x = nd->inputs[0], *w = nd->inputs[1], *b = nd->inputs[2];
    fmd_tensor *ws = nd->saved[1], *xs = NULL;
    conv_job j = {0};
    /* the shape from the input's header (data is only in saved[0]) */
    if (conv_geometry(x, ws, NULL, (int)nd->iarg[0], (int)nd->iarg[1], (int)nd->iarg[2], (int)nd->iarg[3],
                      (int)nd->iarg[4], (int)nd->iarg[5], (int)nd->iarg[6], &j.g))
        return -1;
    if (w->requires_grad) {   /* x is needed only for the weight gradient */
        xs = nd->saved[0] ? fmd_retain(nd->saved[0]) : nd->iarg[8] ? recompute_input(nd) : NULL;
        if (!xs) return nd->saved[0] || nd->iarg[8] ? -1 : fmd_fail("conv2d backward: input was not saved");
    }
    const conv_geom *g = &j.g;
    int need_x = x->requires_grad, need_w = w->requires_grad, need_b = b && b->requires_grad;
    fmd_tensor *gy = fmd_contiguous(gout), *gx = NULL, *gw = NULL, *gb = NULL;
    float *parts = NULL;
    int rc = -1;
    if (!gy) { fmd_release(xs); return -1; }
    int64_t wshape[4] = {g->O, g->Cg, g->KH, g->KW};
    /* stride-1 depthwise sets every gx element before adding to it, and a
       pointwise conv's GEMM (beta 0) writes all of gx: no zero-fill first */
    int direct_gx = need_x && direct_ok(g) && fmd_conv_direct_ok(g->C, g->OW + 2 * (g->KW - 1), g->KW, 1);
    /* the weight-gradient tile beats im2col+GEMM only up to 32 output channels (measured) */
    int direct_gw = need_w && direct_ok(g) && g->O <= 32;   /* writes gw (and gb) whole */
    int gx_set = (g->depthwise && g->sh == 1 && g->sw == 1) || g->pointwise || direct_gx;
    if (need_x && !(gx = gx_set ? fmd_empty(4, x->shape) : fmd_zeros(4, x->shape))) goto done;
    if (need_w && !(gw = direct_gw ? fmd_empty(4, wshape) : fmd_zeros(4, wshape))) goto done;
    if (need_b && !(gb = fmd_zeros(1, &g->O))) goto done;
    j.x = xs ? fmd_data(xs) : NULL; j.w = fmd_data(ws); j.gy = fmd_data(gy);
    j.gx = gx ? fmd_data(gx) : NULL;
    if (g->depthwise) {
        j.gw = gw ? fmd_data(gw) : NULL;
        j.gb = gb ? fmd_data(gb) : NULL;
        fmd_parallel(dw_bwd_task, &j);
    } else if (pw_batched(g)) {
        if (pw_batched_bwd(g, j.gy, j.x, j.w, gx ? fmd_data(gx) : NULL, gw ? fmd_data(gw) : NULL,
                           gb ? fmd_data(gb) : NULL))
            goto done;
    } else {
        /* what the direct kernels make, the GEMM pass below skips */
        if (direct_gx) {
            if (fmd_conv_direct_input_grad(g->N, g->C, g->O, g->OH, g->OW, g->KH, g->KW, j.gy, j.w, j.gx)) goto done;
            j.gx = NULL;
        }
        if (direct_gw) {
            if (fmd_conv_direct_weight_grad(g->N, g->C, g->H, g->W, g->O, g->KH, g->KW, j.x, j.gy, fmd_data(gw),
                                            gb ? fmd_data(gb) : NULL))
                goto done;
        }
        fmd_tensor *ggw = direct_gw ? NULL : gw, *ggb = direct_gw ? NULL : gb;   /* left to GEMM */
        int bp = batch_parallel(g->N);
        j.nparts = bp ? fmd_get_num_threads() : 1;
        if ((ggw || ggb) && j.nparts > 1) {   /* per-thread partial sums, reduced below */
            parts = calloc((size_t)j.nparts * (size_t)(g->O * g->Kc + g->O), sizeof *parts);
            if (!parts) { fmd_fail("conv2d backward: out of memory for weight-gradient partials"); goto done; }
            j.gw = ggw ? parts : NULL;
            j.gb = ggb ? parts + (size_t)j.nparts * g->O * g->Kc : NULL;
        } else {
            j.gw = ggw ? fmd_data(ggw) : NULL;
            j.gb = ggb ? fmd_data(ggb) : NULL;
        }
        if (j.gx || j.gw || j.gb) {
            if (bp) fmd_parallel(bwd_task, &j);
            else for (int64_t n = 0; n < g->N && !j.failed; n++) bwd_sample(&j, n, 0, 1);
        }
        if (parts) {
            if (ggw) sum_parts(parts, j.nparts, g->O * g->Kc, fmd_data(ggw));
            if (ggb) sum_parts(j.gb, j.nparts, g->O, fmd_data(ggb));
        }
    }
    if (j.failed) { fmd_fail("conv2d backward: out of memory for the column buffer"); goto done; }
    rc = 0;
    if (gx) rc = fmd_accumulate_grad(x, gx);
    if (rc == 0 && gw) rc = fmd_accumulate_grad(w, gw);
    if (rc == 0 && gb) rc = fmd_accumulate_grad(b, gb);
done:
    free(parts);
    fmd_release(gy); fmd_release(gx); fmd_release(gw); fmd_release(gb); fmd_release(xs);
    return rc;
}

// x is (N,C,H,W), w is (O,C/groups,KH,KW), b is (O) or NULL -> (N,O,OH,OW);
// ea, eb (O) or NULL: the epilogue; relu_in: convolve max(x, 0) (no graph
// with either, see fmd_conv2d_fused)
static fmd_tensor *conv_forward(fmd_tensor *x, fmd_tensor *w, fmd_tensor *b, int sh, int sw, int ph, int pw, int dh,
                                int dw, int groups, int relu_in, const float *ea, const float *eb, int erelu) {
    conv_job j = {0};
    if (conv_geometry(x, w, b, sh, sw, ph, pw, dh, dw, groups, &j.g)) return NULL;
    const conv_geom *g = &j.g;
    j.ea = ea; j.eb = eb; j.erelu = erelu;
    fmd_tensor *xc;
    if (relu_in && !reads_relu_in(g)) {
        int prev = fmd_set_grad_enabled(0);
        xc = fmd_unary(FMD_RELU, x);
        fmd_set_grad_enabled(prev);
    } else {
        j.relu_in = relu_in;
        xc = contiguous_nograd(x);
    }
    fmd_tensor *wc = xc ? contiguous_nograd(w) : NULL;
    fmd_tensor *bc = (wc && b) ? contiguous_nograd(b) : NULL;
    int64_t shape[4] = {g->N, g->O, g->OH, g->OW};
    fmd_tensor *y = (wc && (bc || !b)) ? fmd_empty(4, shape) : NULL;
    if (!y) goto fail;
    j.x = fmd_data(xc); j.w = fmd_data(wc); j.b = bc ? fmd_data(bc) : NULL; j.y = fmd_data(y);
    if (g->N > 0) {
        int whole = 1;   /* a kernel that makes the whole output at once, not through fwd_sample */
        if (direct_ok(g)) {
            fmd_conv_direct d = {g->N, g->C, g->H, g->W, g->O, g->KH, g->KW, j.x, j.w, j.b, j.y};
            fmd_conv_direct_run(&d);
        } else if (pw_batched(g)) {
            if (pw_batched_fwd(g, j.x, j.w, j.b, j.y)) goto fail;
        } else if (g->depthwise) fmd_parallel(dw_fwd_task, &j);
        else {
            whole = 0;
            if (batch_parallel(g->N)) fmd_parallel(fwd_task, &j);
            else for (int64_t n = 0; n < g->N && !j.failed; n++) fwd_sample(&j, n, 1);
        }
        if (ea && whole && !j.failed) {   /* then the epilogue is a pass of its own */
            if (g->N * g->O * g->OHW >= (1 << 15)) fmd_parallel(epilogue_task, &j);
            else epilogue_task(&j, 0, 1);
        }
    }
    if (j.failed) { fmd_fail("conv2d: out of memory for the column buffer"); goto fail; }
    fmd_tensor *in[3] = {x, w, b};
    if (!ea && !relu_in && fmd_needs_grad(3, in)) {
        fmd_node *n = fmd_node_new("conv2d", conv_backward, 3, in);
        if (!n) goto fail;
        /* x is needed only for the weight gradient (and then perhaps
         * recomputed, see recomputable), w only for the input's */
        int save_x = w->requires_grad && !recomputable(x);
        int64_t args[9] = {sh, sw, ph, pw, dh, dw, groups, g->depthwise && !b, w->requires_grad && !save_x};
        memcpy(n->iarg, args, sizeof args);
        n->saved[0] = save_x ? fmd_alias(xc) : NULL;
        n->saved[1] = fmd_alias(wc);
        fmd_node_attach(y, n);
        if ((save_x && !n->saved[0]) || !n->saved[1]) goto fail;
    }
    fmd_release(xc); fmd_release(wc); fmd_release(bc);
    return y;
fail:
    fmd_release(xc); fmd_release(wc); fmd_release(bc); fmd_release(y);
    return NULL;
}

fmd_tensor *fmd_conv2d(fmd_tensor *x, fmd_tensor *w, fmd_tensor *b, int sh, int sw, int ph, int pw, int dh, int dw,
                       int groups) {
    return conv_forward(x, w, b, sh, sw, ph, pw, dh, dw, groups, 0, NULL, NULL, 0);
}

/* the epilogue of an eval-mode BatchNorm (from its running stats, when given)
 * and/or a ReLU over O output channels: *coef gets a (O) then b (O), to be
 * freed, or stays NULL when there is neither; -1 on an error */
static int epilogue_coef(int64_t O, fmd_tensor *bn_weight, fmd_tensor *bn_bias, fmd_tensor *running_mean,
                         fmd_tensor *running_var, float eps, int relu, float **coef) {
    *coef = NULL;
    int bn = running_mean || running_var || bn_weight || bn_bias;
    if (!bn && !relu) return 0;
    float *c = malloc(2 * (size_t)(O > 0 ? O : 1) * sizeof *c);
    if (!c) return fmd_fail("conv2d_fused: out of memory");
    if (!bn) {   /* ReLU alone: y * 1 + 0 is y */
        for (int64_t o = 0; o < O; o++) { c[o] = 1.0f; c[O + o] = 0.0f; }
    } else if (fmd_batch_norm_eval_coef(bn_weight, bn_bias, running_mean, running_var, O, eps, c, c + O)) {
        free(c);
        return -1;
    }
    *coef = c;
    return 0;
}

// relu_in: conv2d of max(x, 0); then, with running stats, an eval-mode
// batch_norm of the output channels (O); then, when relu, max(., 0); no graph
fmd_tensor *fmd_conv2d_fused(fmd_tensor *x, fmd_tensor *w, fmd_tensor *b, int sh, int sw, int ph, int pw, int dh,
                             int dw, int groups, int relu_in, fmd_tensor *bn_weight, fmd_tensor *bn_bias,
                             fmd_tensor *running_mean, fmd_tensor *running_var, float eps, int relu) {
    fmd_tensor *in[5] = {x, w, b, bn_weight, bn_bias};
    if (fmd_needs_grad(5, in))
        return fmd_fail_null("conv2d_fused: records no graph, so no input may require grad while grad mode is on "
                             "(use conv2d, batch_norm and relu)");
    if (w->ndim != 4)   /* conv_forward checks the rest; O sizes the coefficients */
        return fmd_fail_null("conv2d: weight must be 4-D (O,C/groups,KH,KW), got %dD", w->ndim);
    float *coef;
    if (epilogue_coef(w->shape[0], bn_weight, bn_bias, running_mean, running_var, eps, relu, &coef)) return NULL;
    fmd_tensor *y = conv_forward(x, w, b, sh, sw, ph, pw, dh, dw, groups, relu_in, coef,
                                 coef ? coef + w->shape[0] : NULL, relu);
    free(coef);
    return y;
}

/* ------------------------------------- separable conv, a sample at a time */
/* A SeparableConv2d without a graph: each thread takes whole samples, makes a
 * sample's depthwise output (C,OH,OW) in its own buffer and runs the
 * pointwise GEMM (and epilogue) on it while it is still in cache, instead of
 * writing the whole batch's depthwise output (256 MB at Xception's first
 * block) and reading it back. The same plane kernels and GEMM calls as the
 * two convs in turn, so the same numbers. */
typedef struct { conv_job dw, pw; } sep_job;

static void sep_task(void *p, int ith, int nth) {
    sep_job *s = p;
    int64_t b, e, O = s->dw.g.O;
    fmd_split(s->dw.g.N, ith, nth, &b, &e);
    if (b >= e) return;
    float *mid = scratch(1, (size_t)(O * s->dw.g.OHW));
    if (!mid) { s->dw.failed = 1; return; }
    for (int64_t n = b; n < e && !s->dw.failed && !s->pw.failed; n++) {
        dw_fwd_planes(&s->dw, n * O, (n + 1) * O, mid);
        if (!s->dw.failed) fwd_sample_from(&s->pw, n, mid, 0);
    }
}

// s->dw.g, s->pw.g: the conv by wd (bias bd) of x with a = {sh, sw, ph, pw,
// dh, dw, groups}, then the 1x1 conv by wp (bias bp) of its output; -1 when
// either fails
static int sep_geometry(fmd_tensor *x, fmd_tensor *wd, fmd_tensor *bd, fmd_tensor *wp, fmd_tensor *bp,
                        const int64_t *a, sep_job *s) {
    if (conv_geometry(x, wd, bd, (int)a[0], (int)a[1], (int)a[2], (int)a[3], (int)a[4], (int)a[5], (int)a[6],
                      &s->dw.g))
        return -1;
    const conv_geom *g = &s->dw.g;
    fmd_tensor mid = {.ndim = 4, .shape = {g->N, g->O, g->OH, g->OW}};
    return conv_geometry(&mid, wp, bp, 1, 1, 0, 0, 1, 1, 1, &s->pw.g);
}

/* The sample-at-a-time path needs a depthwise conv that the plane kernels
 * make and a pointwise conv that fwd_sample makes, over a batch the threads
 * share well (batch_parallel): 1 when s's geometries (sep_geometry) allow
 * it. A geometry that fails here fails again, with its message, in the convs
 * in turn. */
static int sep_one(fmd_tensor *x, fmd_tensor *wd, fmd_tensor *bd, fmd_tensor *wp, fmd_tensor *bp, const int64_t *a,
                   sep_job *s) {
    const conv_geom *g = &s->dw.g;
    return !sep_geometry(x, wd, bd, wp, bp, a, s) && g->depthwise && !direct_ok(g) && g->N > 0 &&
           batch_parallel(g->N) && !pw_batched(&s->pw.g);
}

// x (N,C,H,W), wd (C,1,KH,KW) with groups C, wp (O,C,1,1): the conv by wp of
// the conv by wd of x (or of max(x, 0)), then the epilogue as in
// fmd_conv2d_fused; a sample at a time when the kernels allow, else the two
// convs in turn; no graph
fmd_tensor *fmd_sepconv2d_fused(fmd_tensor *x, fmd_tensor *wd, fmd_tensor *bd, int sh, int sw, int ph, int pw,
                                int dh, int dw, int groups, int relu_in, fmd_tensor *wp, fmd_tensor *bp,
                                fmd_tensor *bn_weight, fmd_tensor *bn_bias, fmd_tensor *running_mean,
                                fmd_tensor *running_var, float eps, int relu) {
    fmd_tensor *in[7] = {x, wd, bd, wp, bp, bn_weight, bn_bias};
    if (fmd_needs_grad(7, in))
        return fmd_fail_null("sepconv2d_fused: records no graph, so no input may require grad while grad mode is on "
                             "(use conv2d, batch_norm and relu)");
    if (wp->ndim != 4)
        return fmd_fail_null("conv2d: weight must be 4-D (O,C/groups,KH,KW), got %dD", wp->ndim);
    float *coef;
    if (epilogue_coef(wp->shape[0], bn_weight, bn_bias, running_mean, running_var, eps, relu, &coef)) return NULL;
    sep_job s = {0};
    const conv_geom *g = &s.dw.g;
    int64_t a[7] = {sh, sw, ph, pw, dh, dw, groups};
    /* with the input ReLU, read by the depthwise kernels themselves */
    int one = sep_one(x, wd, bd, wp, bp, a, &s) && (!relu_in || reads_relu_in(g));
    fmd_tensor *y = NULL;
    if (!one) {
        fmd_tensor *m = conv_forward(x, wd, bd, sh, sw, ph, pw, dh, dw, groups, relu_in, NULL, NULL, 0);
        y = m ? conv_forward(m, wp, bp, 1, 1, 0, 0, 1, 1, 1, 0, coef, coef ? coef + wp->shape[0] : NULL, relu) : NULL;
        fmd_release(m);
        free(coef);
        return y;
    }
    fmd_tensor *xc = contiguous_nograd(x), *wdc = xc ? contiguous_nograd(wd) : NULL;
    fmd_tensor *bdc = wdc && bd ? contiguous_nograd(bd) : NULL, *wpc = wdc ? contiguous_nograd(wp) : NULL;
    fmd_tensor *bpc = wpc && bp ? contiguous_nograd(bp) : NULL;
    int64_t shape[4] = {g->N, s.pw.g.O, g->OH, g->OW};
    if (wpc && (bdc || !bd) && (bpc || !bp)) y = fmd_empty(4, shape);
    if (y) {
        s.dw.x = fmd_data(xc); s.dw.w = fmd_data(wdc); s.dw.b = bdc ? fmd_data(bdc) : NULL; s.dw.relu_in = relu_in;
        s.pw.w = fmd_data(wpc); s.pw.b = bpc ? fmd_data(bpc) : NULL; s.pw.y = fmd_data(y);
        s.pw.ea = coef; s.pw.eb = coef ? coef + s.pw.g.O : NULL; s.pw.erelu = relu;
        fmd_parallel(sep_task, &s);
        if (s.dw.failed || s.pw.failed) {
            fmd_fail("sepconv2d_fused: out of memory for the depthwise buffer");
            fmd_release(y);
            y = NULL;
        }
    }
    fmd_release(xc); fmd_release(wdc); fmd_release(bdc); fmd_release(wpc); fmd_release(bpc);
    free(coef);
    return y;
}

/* The same with a graph (training): one node for the depthwise then the
 * pointwise conv, no biases. Its backward also takes a sample at a time: it
 * remakes the sample's depthwise output for the pointwise weight gradient,
 * makes that output's gradient by the pointwise input-gradient GEMM and runs
 * the depthwise backward on it, all in per-thread buffers. Neither the batch's
 * depthwise output nor its gradient is ever in memory; the node keeps x and
 * the two weights, as the two conv nodes did (their pointwise one recomputed
 * its input, see recomputable). */
typedef struct {
    sep_job s;               /* s.dw: x (NULL when no weight needs grad), wd; s.pw: wp */
    const float *gy;         /* (N,O,OH,OW) */
    float *gx;               /* (N,C,H,W), or NULL */
    float *gwd, *gwp;        /* per-thread partial sums (nparts x wd's, x wp's numel), or NULL */
} sep_bwd_job;           /* failures set s.dw.failed */

static void sep_bwd_task(void *p, int ith, int nth) {
    sep_bwd_job *j = p;
    conv_job *dj = &j->s.dw;
    const conv_geom *g = &dj->g, *pg = &j->s.pw.g;
    int64_t b, e;
    fmd_split(g->N, ith, nth, &b, &e);
    if (b >= e) return;
    const int64_t ntap = g->KH * g->KW, padn = (g->H + 2 * g->ph) * (g->W + 2 * g->pw), S = g->OHW;
    /* slot 0 first at its largest: dw_fwd_planes asks it for less */
    float *buf = scratch(0, (size_t)(2 * padn + dw1_span(g)));
    float *mid = j->gwp ? scratch(1, (size_t)(g->O * S)) : NULL;
    float *gmid = (j->gx || j->gwd) ? scratch(2, (size_t)(g->O * S)) : NULL;
    if (!buf || (j->gwp && !mid) || ((j->gx || j->gwd) && !gmid)) { dj->failed = 1; return; }
    float *gwd = j->gwd ? j->gwd + (size_t)ith * g->O * ntap : NULL;
    float *gwp = j->gwp ? j->gwp + (size_t)ith * pg->O * pg->C : NULL;
    for (int64_t n = b; n < e; n++) {
        const float *gyn = j->gy + n * pg->O * S;
        if (mid) {   /* gwp (O2,O) += gy_n (O2,S) @ mid_n^T */
            dw_fwd_planes(dj, n * g->O, (n + 1) * g->O, mid);
            if (dj->failed) return;
            fmd_sgemm(0, 1, pg->O, pg->C, S, 1.0f, gyn, S, mid, S, 1.0f, gwp, pg->C);
        }
        if (!gmid) continue;
        /* gmid (O,S) = wp^T @ gy_n, then the depthwise backward of sample n */
        fmd_sgemm(1, 0, pg->C, S, pg->O, 1.0f, j->s.pw.w, pg->C, gyn, S, 0.0f, gmid, S);
        for (int64_t c = 0; c < g->C; c++)
            for (int64_t m = 0; m < g->Og; m++) {
                const int64_t o = c * g->Og + m;
                const float *xp = dj->x ? dj->x + (n * g->C + c) * g->HW : NULL;
                float *gxp = j->gx ? j->gx + (n * g->C + c) * g->HW : NULL, *gk = gwd ? gwd + o * ntap : NULL;
                dw_s1_plane_bwd(g, gmid + o * S, xp, dj->w + o * ntap, gxp, m == 0, gk, buf);
            }
    }
}

static int sep_backward(fmd_node *nd, fmd_tensor *gout) {
    fmd_tensor *x = nd->inputs[0], *wd = nd->inputs[1], *wp = nd->inputs[2];
    sep_bwd_job j = {0};
    if (sep_geometry(x, nd->saved[1], NULL, nd->saved[2], NULL, nd->iarg, &j.s)) return -1;
    const conv_geom *g = &j.s.dw.g, *pg = &j.s.pw.g;
    int need_x = x->requires_grad, need_wd = wd->requires_grad, need_wp = wp->requires_grad;
    if ((need_wd || need_wp) && !nd->saved[0]) return fmd_fail("sepconv2d backward: input was not saved");
    const int nparts = fmd_get_num_threads();
    const int64_t nwd = g->O * g->KH * g->KW, nwp = pg->O * pg->C;
    int64_t wdshape[4] = {g->O, 1, g->KH, g->KW}, wpshape[4] = {pg->O, pg->C, 1, 1};
    fmd_tensor *gy = fmd_contiguous(gout), *gx = NULL, *gwd = NULL, *gwp = NULL;
    float *parts = NULL;
    int rc = -1;
    if (!gy) return -1;
    if (need_x && !(gx = fmd_empty(4, x->shape))) goto done;
    if (need_wd && !(gwd = fmd_empty(4, wdshape))) goto done;
    if (need_wp && !(gwp = fmd_empty(4, wpshape))) goto done;
    if ((need_wd || need_wp) &&
        !(parts = calloc((size_t)nparts * (size_t)((need_wd ? nwd : 0) + (need_wp ? nwp : 0)), sizeof *parts))) {
        fmd_fail("sepconv2d backward: out of memory for weight-gradient partials");
        goto done;
    }
    j.s.dw.x = need_wd || need_wp ? fmd_data(nd->saved[0]) : NULL;
    j.s.dw.w = fmd_data(nd->saved[1]);
    j.s.pw.w = fmd_data(nd->saved[2]);
    j.gy = fmd_data(gy);
    j.gx = gx ? fmd_data(gx) : NULL;
    j.gwd = need_wd ? parts : NULL;
    j.gwp = need_wp ? parts + (need_wd ? (size_t)nparts * nwd : 0) : NULL;
    if (g->N > 0) fmd_parallel_n(sep_bwd_task, &j, nparts);
    if (j.s.dw.failed) { fmd_fail("sepconv2d backward: out of memory for the per-sample buffers"); goto done; }
    if (gwd) sum_parts(j.gwd, nparts, nwd, fmd_data(gwd));
    if (gwp) sum_parts(j.gwp, nparts, nwp, fmd_data(gwp));
    rc = 0;
    if (gx) rc = fmd_accumulate_grad(x, gx);
    if (rc == 0 && gwd) rc = fmd_accumulate_grad(wd, gwd);
    if (rc == 0 && gwp) rc = fmd_accumulate_grad(wp, gwp);
done:
    free(parts);
    fmd_release(gy); fmd_release(gx); fmd_release(gwd); fmd_release(gwp);
    return rc;
}

// x (N,C,H,W), wd (C*m,1,KH,KW) with groups C, wp (O,C*m,1,1), no biases:
// the conv by wp of the conv by wd of x, recording one node when an input
// needs grad; a sample at a time forward and backward when the kernels
// allow (stride 1), else the two convs (two nodes) in turn
fmd_tensor *fmd_sepconv2d(fmd_tensor *x, fmd_tensor *wd, fmd_tensor *wp, int sh, int sw, int ph, int pw, int dh,
                          int dw, int groups) {
    sep_job s = {0};
    const conv_geom *g = &s.dw.g;
    int64_t a[7] = {sh, sw, ph, pw, dh, dw, groups};
    if (wp->ndim != 4 || wp->shape[2] != 1 || wp->shape[3] != 1) {
        char sb[96];
        return fmd_fail_null("sepconv2d: pointwise weight must be (O,C,1,1), got %s",
                             fmd_shape_str(sb, sizeof sb, wp->ndim, wp->shape));
    }
    /* stride 1 for the backward's plane kernels */
    int one = sep_one(x, wd, NULL, wp, NULL, a, &s) && g->sh == 1 && g->sw == 1;
    if (!one) {
        fmd_tensor *m = fmd_conv2d(x, wd, NULL, sh, sw, ph, pw, dh, dw, groups);
        fmd_tensor *y = m ? fmd_conv2d(m, wp, NULL, 1, 1, 0, 0, 1, 1, 1) : NULL;
        fmd_release(m);
        return y;
    }
    fmd_tensor *xc = contiguous_nograd(x), *wdc = xc ? contiguous_nograd(wd) : NULL;
    fmd_tensor *wpc = wdc ? contiguous_nograd(wp) : NULL, *y = NULL;
    int64_t shape[4] = {g->N, s.pw.g.O, g->OH, g->OW};
    if (!wpc || !(y = fmd_empty(4, shape))) goto fail;
    s.dw.x = fmd_data(xc); s.dw.w = fmd_data(wdc);
    s.pw.w = fmd_data(wpc); s.pw.y = fmd_data(y);
    fmd_parallel(sep_task, &s);
    if (s.dw.failed || s.pw.failed) { fmd_fail("sepconv2d: out of memory for the depthwise buffer"); goto fail; }
    fmd_tensor *in[3] = {x, wd, wp};
    if (fmd_needs_grad(3, in)) {
        fmd_node *n = fmd_node_new("sepconv2d", sep_backward, 3, in);
        if (!n) goto fail;
        memcpy(n->iarg, a, sizeof a);
        int save_x = wd->requires_grad || wp->requires_grad;
        n->saved[0] = save_x ? fmd_alias(xc) : NULL;
        n->saved[1] = fmd_alias(wdc);
        n->saved[2] = fmd_alias(wpc);
        fmd_node_attach(y, n);
        if ((save_x && !n->saved[0]) || !n->saved[1] || !n->saved[2]) goto fail;
    }
    fmd_release(xc); fmd_release(wdc); fmd_release(wpc);
    return y;
fail:
    fmd_release(xc); fmd_release(wdc); fmd_release(wpc); fmd_release(y);
    return NULL;
}
