/* nn_conv.c - conv2d forward and backward, and conv2d_fused.
 *
 * x is (N,C,H,W), w is (O, C/groups, KH, KW), b is (O) or NULL; the output
 * is (N,O,OH,OW) with OH = (H + 2ph - dh*(KH-1) - 1) / sh + 1 (same for W).
 *
 * Four kernels; this file picks one per conv (fmd_conv_forward,
 * conv_backward) and holds the first two:
 *  - general: per sample, group and tile of output pixels, im2col into a
 *    per-thread scratch buffer (rows = (c, kh, kw), columns = pixels of the
 *    tile) and one GEMM (O/g x C/g*KH*KW) @ (C/g*KH*KW x tile) straight into
 *    the output.
 *  - pointwise (1x1, stride 1, pad 0): the input plane already is the column
 *    matrix, so the GEMM reads x directly; on planes of <= 128 pixels the
 *    batch is regrouped into one (C, N*HW) matrix and one GEMM.
 *  - depthwise (nn_conv_depthwise.c; C/groups == 1): direct loops over
 *    kernel taps.
 *  - direct (nn_conv_direct.c; stride 1, pad 0, groups 1, not 1x1, O <= 64,
 *    output rows >= 16 pixels: SimpleNet's convs and Xception's second):
 *    register tiles of output channels x pixels, no im2col. It makes the
 *    output, the input gradient when C <= 64 too, and the weight gradient
 *    when O <= 32 (beyond that im2col+GEMM was faster).
 * fmd_conv2d_fused adds, without a graph, a ReLU of the input (read as
 * max(x, 0) by the stride-1 depthwise kernels as they pad a plane) and an
 * epilogue, an eval-mode BatchNorm (and ReLU) applied to each sample's output
 * right after its GEMM (a pass of its own after the direct, batched 1x1 and
 * depthwise kernels). The separable convs (depthwise then pointwise, a
 * sample at a time) are in nn_conv_separable.c; what the conv files share
 * is declared in fmd_impl.h.
 * Parallelism: samples are split over the pool, each thread running
 * single-threaded BLAS on its own scratch. With fewer samples than that
 * pays for (batch 1 for saliency/Grad-CAM), samples run in turn and
 * fmd_sgemm splits each GEMM while im2col/col2im split channels. */
#include "fmd_impl.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ per-thread scratch */
/* Grown on demand and kept: pool threads live for the whole process, so
 * every conv call after the first reuses the same buffers. */
static _Thread_local struct { float *p; size_t n; } scratch_buf[3];

float *fmd_conv_scratch(int slot, size_t n) {
    if (scratch_buf[slot].n < n) {
        free(scratch_buf[slot].p);
        scratch_buf[slot].p = malloc(n * sizeof(float));
        scratch_buf[slot].n = scratch_buf[slot].p ? n : 0;
    }
    return scratch_buf[slot].p;
}

/* ------------------------------------------------------------- geometry */
int fmd_conv_geometry(const fmd_tensor *x, const fmd_tensor *w, const fmd_tensor *b, int sh, int sw, int ph, int pw,
                      int dh, int dw, int groups, fmd_conv_geom *g) {
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

static int64_t tile_pixels(const fmd_conv_geom *g) {
    int64_t nb = TILE_FLOATS / g->Kc;
    if (nb < 256) nb = 256;
    if (nb >= g->OHW) return g->OHW;
    return nb;
}

/* x is (Cg,H,W) of one sample and group; fills rows of channels [c0, c1) of
 * col (Cg*KH*KW, p1-p0) for output pixels [p0, p1); zeros where the kernel
 * reads padding. adjoint: x += col scattered back instead (col2im). */
static void im2col(const fmd_conv_geom *g, float *x, float *col, int64_t c0, int64_t c1, int64_t p0, int64_t p1,
                   int adjoint) {
    const int64_t W = g->W, OW = g->OW, ld = p1 - p0, oy0 = p0 / OW, oy1 = (p1 - 1) / OW;
    const int s = g->sw;
    for (int64_t c = c0; c < c1; c++)
        for (int64_t kh = 0; kh < g->KH; kh++)
            for (int64_t kw = 0; kw < g->KW; kw++) {
                float *dst = col + ((c * g->KH + kh) * g->KW + kw) * ld - p0;   /* indexed by pixel */
                float *plane = x + c * g->HW;
                int64_t xoff = kw * g->dw - g->pw, lo, hi;
                fmd_conv_valid_range(xoff, s, W, OW, &lo, &hi);
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

typedef struct { const fmd_conv_geom *g; float *x, *col; int64_t p0, p1; int adjoint; } cols_job;

static void cols_task(void *p, int ith, int nth) {
    cols_job *j = p;
    int64_t b, e;
    fmd_split(j->g->Cg, ith, nth, &b, &e);
    im2col(j->g, j->x, j->col, b, e, j->p0, j->p1, j->adjoint);
}

/* im2col / col2im of one tile, split over channels when asked */
static void cols(const fmd_conv_geom *g, const float *x, float *col, int64_t p0, int64_t p1, int adjoint, int par) {
    cols_job j = {g, (float *)x, col, p0, p1, adjoint};
    if (par && g->Cg > 1 && g->Kc * (p1 - p0) >= (1 << 16)) fmd_parallel(cols_task, &j);
    else cols_task(&j, 0, 1);
}

/* ---------------------------------------------------------- epilogue */
/* An eval-mode BatchNorm (and ReLU) after a conv, applied to each sample's
 * output right after its GEMM, while it is still in cache, by batch_norm's
 * own plane loop (fmd_plane_affine): the same numbers, without another pass
 * over memory. */
// planes [p0, p1) of y (N*O, OHW), in place
static void epilogue(const fmd_conv_job *j, int64_t p0, int64_t p1) {
    for (int64_t pl = p0; pl < p1; pl++) {
        int64_t o = pl % j->g.O;
        float *y = j->y + pl * j->g.OHW;
        fmd_plane_affine(y, y, j->g.OHW, j->ea[o], j->eb[o], j->erelu);
    }
}

static void epilogue_task(void *p, int ith, int nth) {
    const fmd_conv_job *j = p;
    int64_t b, e;
    fmd_split(j->g.N * j->g.O, ith, nth, &b, &e);
    epilogue(j, b, e);
}

/* ------------------------------------------------------ general forward */
/* y[n] = w * xn (+ b), then the epilogue; xn is sample n's input (C,H,W),
 * j->x's or another's (nn_conv_separable.c); par: this is the only sample being
 * worked on */
void fmd_conv_fwd_sample(fmd_conv_job *j, int64_t n, const float *xn, int par) {
    const fmd_conv_geom *g = &j->g;
    const int64_t nb = tile_pixels(g);
    float *col = NULL;
    if (!g->pointwise && !(col = fmd_conv_scratch(0, (size_t)(g->Kc * nb)))) { j->failed = 1; return; }
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

static void fwd_sample(fmd_conv_job *j, int64_t n, int par) {
    fmd_conv_fwd_sample(j, n, j->x + n * j->g.C * j->g.HW, par);
}

static void fwd_task(void *p, int ith, int nth) {
    fmd_conv_job *j = p;
    int64_t b, e;
    fmd_split(j->g.N, ith, nth, &b, &e);
    for (int64_t n = b; n < e && !j->failed; n++) fwd_sample(j, n, 0);
}

/* split samples over the pool only when that balances: otherwise samples run
 * in turn and each GEMM is split instead */
int fmd_conv_batch_parallel(int64_t N) {
    int nth = fmd_in_parallel() ? 1 : fmd_get_num_threads();
    return nth > 1 && (N % nth == 0 || N >= 4 * nth);
}

/* ------------------------------------------------------ general backward */
static void bwd_sample(fmd_conv_job *j, int64_t n, int part, int par) {
    const fmd_conv_geom *g = &j->g;
    const int64_t nb = tile_pixels(g);
    float *col = NULL, *dcol = NULL;
    if (!g->pointwise) {
        if (j->gw && !(col = fmd_conv_scratch(0, (size_t)(g->Kc * nb)))) { j->failed = 1; return; }
        if (j->gx && !(dcol = fmd_conv_scratch(1, (size_t)(g->Kc * nb)))) { j->failed = 1; return; }
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
    fmd_conv_job *j = p;
    int64_t b, e;
    fmd_split(j->g.N, ith, nth, &b, &e);
    for (int64_t n = b; n < e && !j->failed; n++) bwd_sample(j, n, ith, 0);
}

/* ------------------------------------------- pointwise on small planes */
/* A 1x1 conv on an 8x8 plane (Xception's exit flow) gives each sample's GEMM
 * only 64 columns, too few for BLAS to run near its peak. There the batch is
 * regrouped into one (C, N*HW) matrix and each product is a single GEMM
 * split over the pool; the regrouping copies are small next to it. */
enum { PW_BATCH_MAX_HW = 128 };

int fmd_conv_pw_batched(const fmd_conv_geom *g) {
    return g->pointwise && g->groups == 1 && g->N > 1 && g->OHW <= PW_BATCH_MAX_HW;
}

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
static int pw_batched_fwd(const fmd_conv_geom *g, const float *x, const float *w, const float *b, float *y) {
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
static int pw_batched_bwd(const fmd_conv_geom *g, const float *gy, const float *x, const float *w, float *gx, float *gw,
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
int fmd_conv_uses_direct(const fmd_conv_geom *g) {
    int unit = g->groups == 1 && !g->pointwise && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 &&
               g->dh == 1 && g->dw == 1;
    return fmd_conv_direct_ok(g->O, g->W, g->KW, unit);
}

/* the stride-1 depthwise kernels read x as max(x, 0) themselves (relu_in);
 * the others need it rectified first (a depthwise conv of one channel may go
 * to the direct kernel) */
int fmd_conv_reads_relu_in(const fmd_conv_geom *g) {
    return g->depthwise && g->sh == 1 && g->sw == 1 && !fmd_conv_uses_direct(g);
}

/* -------------------------------------------------------------- autograd */
// sum of nparts per-thread partials of n floats each -> dst
void fmd_conv_sum_parts(const float *parts, int nparts, int64_t n, float *dst) {
    for (int64_t i = 0; i < n; i++) dst[i] = 0;
    for (int p = 0; p < nparts; p++)
        for (int64_t i = 0; i < n; i++) dst[i] += parts[(size_t)p * n + i];
}

fmd_tensor *fmd_conv_contiguous_nograd(fmd_tensor *t) {
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
    fmd_conv_job j = {0};
    /* the shape from the input's header (data is only in saved[0]) */
    if (fmd_conv_geometry(x, ws, NULL, (int)nd->iarg[0], (int)nd->iarg[1], (int)nd->iarg[2], (int)nd->iarg[3],
                          (int)nd->iarg[4], (int)nd->iarg[5], (int)nd->iarg[6], &j.g))
        return -1;
    if (w->requires_grad) {   /* x is needed only for the weight gradient */
        xs = nd->saved[0] ? fmd_retain(nd->saved[0]) : nd->iarg[8] ? recompute_input(nd) : NULL;
        if (!xs) return nd->saved[0] || nd->iarg[8] ? -1 : fmd_fail("conv2d backward: input was not saved");
    }
    const fmd_conv_geom *g = &j.g;
    int need_x = x->requires_grad, need_w = w->requires_grad, need_b = b && b->requires_grad;
    fmd_tensor *gy = fmd_contiguous(gout), *gx = NULL, *gw = NULL, *gb = NULL;
    float *parts = NULL;
    int rc = -1;
    if (!gy) { fmd_release(xs); return -1; }
    int64_t wshape[4] = {g->O, g->Cg, g->KH, g->KW};
    /* stride-1 depthwise sets every gx element before adding to it, and a
       pointwise conv's GEMM (beta 0) writes all of gx: no zero-fill first */
    int direct_gx = need_x && fmd_conv_uses_direct(g) && fmd_conv_direct_ok(g->C, g->OW + 2 * (g->KW - 1), g->KW, 1);
    /* the weight-gradient tile beats im2col+GEMM only up to 32 output channels (measured) */
    int direct_gw = need_w && fmd_conv_uses_direct(g) && g->O <= 32;   /* writes gw (and gb) whole */
    int gx_set = (g->depthwise && g->sh == 1 && g->sw == 1) || g->pointwise || direct_gx;
    if (need_x && !(gx = gx_set ? fmd_empty(4, x->shape) : fmd_zeros(4, x->shape))) goto done;
    if (need_w && !(gw = direct_gw ? fmd_empty(4, wshape) : fmd_zeros(4, wshape))) goto done;
    if (need_b && !(gb = fmd_zeros(1, &g->O))) goto done;
    j.x = xs ? fmd_data(xs) : NULL; j.w = fmd_data(ws); j.gy = fmd_data(gy);
    j.gx = gx ? fmd_data(gx) : NULL;
    if (g->depthwise) {
        j.gw = gw ? fmd_data(gw) : NULL;
        j.gb = gb ? fmd_data(gb) : NULL;
        fmd_conv_dw_backward(&j);
    } else if (fmd_conv_pw_batched(g)) {
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
        int bp = fmd_conv_batch_parallel(g->N);
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
            if (ggw) fmd_conv_sum_parts(parts, j.nparts, g->O * g->Kc, fmd_data(ggw));
            if (ggb) fmd_conv_sum_parts(j.gb, j.nparts, g->O, fmd_data(ggb));
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
fmd_tensor *fmd_conv_forward(fmd_tensor *x, fmd_tensor *w, fmd_tensor *b, int sh, int sw, int ph, int pw, int dh,
                             int dw, int groups, int relu_in, const float *ea, const float *eb, int erelu) {
    fmd_conv_job j = {0};
    if (fmd_conv_geometry(x, w, b, sh, sw, ph, pw, dh, dw, groups, &j.g)) return NULL;
    const fmd_conv_geom *g = &j.g;
    j.ea = ea; j.eb = eb; j.erelu = erelu;
    fmd_tensor *xc;
    if (relu_in && !fmd_conv_reads_relu_in(g)) {
        int prev = fmd_set_grad_enabled(0);
        xc = fmd_unary(FMD_RELU, x);
        fmd_set_grad_enabled(prev);
    } else {
        j.relu_in = relu_in;
        xc = fmd_conv_contiguous_nograd(x);
    }
    fmd_tensor *wc = xc ? fmd_conv_contiguous_nograd(w) : NULL;
    fmd_tensor *bc = (wc && b) ? fmd_conv_contiguous_nograd(b) : NULL;
    int64_t shape[4] = {g->N, g->O, g->OH, g->OW};
    fmd_tensor *y = (wc && (bc || !b)) ? fmd_empty(4, shape) : NULL;
    if (!y) goto fail;
    j.x = fmd_data(xc); j.w = fmd_data(wc); j.b = bc ? fmd_data(bc) : NULL; j.y = fmd_data(y);
    if (g->N > 0) {
        int whole = 1;   /* a kernel that makes the whole output at once, not through fwd_sample */
        if (fmd_conv_uses_direct(g)) {
            fmd_conv_direct d = {g->N, g->C, g->H, g->W, g->O, g->KH, g->KW, j.x, j.w, j.b, j.y};
            fmd_conv_direct_run(&d);
        } else if (fmd_conv_pw_batched(g)) {
            if (pw_batched_fwd(g, j.x, j.w, j.b, j.y)) goto fail;
        } else if (g->depthwise) fmd_conv_dw_forward(&j);
        else {
            whole = 0;
            if (fmd_conv_batch_parallel(g->N)) fmd_parallel(fwd_task, &j);
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
    return fmd_conv_forward(x, w, b, sh, sw, ph, pw, dh, dw, groups, 0, NULL, NULL, 0);
}

/* the epilogue of an eval-mode BatchNorm (from its running stats, when given)
 * and/or a ReLU over O output channels: *coef gets a (O) then b (O), to be
 * freed, or stays NULL when there is neither; -1 on an error */
int fmd_conv_epilogue_coef(int64_t O, fmd_tensor *bn_weight, fmd_tensor *bn_bias, fmd_tensor *running_mean,
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
    if (w->ndim != 4)   /* fmd_conv_forward checks the rest; O sizes the coefficients */
        return fmd_fail_null("conv2d: weight must be 4-D (O,C/groups,KH,KW), got %dD", w->ndim);
    float *coef;
    if (fmd_conv_epilogue_coef(w->shape[0], bn_weight, bn_bias, running_mean, running_var, eps, relu, &coef))
        return NULL;
    fmd_tensor *y = fmd_conv_forward(x, w, b, sh, sw, ph, pw, dh, dw, groups, relu_in, coef,
                                     coef ? coef + w->shape[0] : NULL, relu);
    free(coef);
    return y;
}
