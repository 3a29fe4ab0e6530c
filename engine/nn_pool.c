/* nn_pool.c - max_pool2d, avg_pool2d and adaptive_avg_pool2d, each forward
 * with its backward below it. All work on x (N,C,H,W), one (H,W) plane at a
 * time, planes split over the pool; PyTorch semantics (floor mode, padding
 * counts as -inf for max and as zeros in the divisor for avg, like
 * count_include_pad=True). */
#include "fmd_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t NC, H, W, OH, OW;
    int kh, kw, sh, sw, ph, pw;
    const float *x; float *y;     /* forward */
    const float *gy; float *gx;   /* backward */
    int32_t *idx;                 /* max: flat argmax within the plane, per output */
    int failed;                   /* a task ran out of memory */
} pool_job;

/* planes of small tensors are not worth waking the pool for */
static void run_planes(fmd_task_fn fn, pool_job *j) {
    if (j->NC * (j->H * j->W + j->OH * j->OW) >= (1 << 15)) fmd_parallel(fn, j);
    else fn(j, 0, 1);
}

static int check_4d(const char *op, const fmd_tensor *x) {
    char a[128];
    if (x->ndim != 4)
        return fmd_fail("%s: input must be 4-D (N,C,H,W), got %s", op, fmd_shape_str(a, sizeof a, x->ndim, x->shape));
    if (x->shape[2] * x->shape[3] > INT32_MAX)
        return fmd_fail("%s: input plane %s is too large", op, fmd_shape_str(a, sizeof a, x->ndim, x->shape));
    return 0;
}

/* kernel/stride/padding checks and the floor-mode output size */
static int window_geometry(const char *op, const fmd_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw,
                           pool_job *j) {
    char a[128];
    if (check_4d(op, x)) return -1;
    if (kh < 1 || kw < 1) return fmd_fail("%s: kernel size (%d, %d) must be positive", op, kh, kw);
    if (sh < 1 || sw < 1) return fmd_fail("%s: stride (%d, %d) must be positive", op, sh, sw);
    if (ph < 0 || pw < 0) return fmd_fail("%s: padding (%d, %d) must not be negative", op, ph, pw);
    if (2 * ph > kh || 2 * pw > kw)   /* same rule as PyTorch */
        return fmd_fail("%s: padding (%d, %d) should be at most half of the kernel size (%d, %d)", op, ph, pw, kh, kw);
    j->NC = x->shape[0] * x->shape[1]; j->H = x->shape[2]; j->W = x->shape[3];
    if (j->H + 2 * (int64_t)ph < kh || j->W + 2 * (int64_t)pw < kw)
        return fmd_fail("%s: input %s padded by (%d, %d) is smaller than the kernel (%d x %d)", op,
                        fmd_shape_str(a, sizeof a, x->ndim, x->shape), ph, pw, kh, kw);
    j->OH = (j->H + 2 * (int64_t)ph - kh) / sh + 1;
    j->OW = (j->W + 2 * (int64_t)pw - kw) / sw + 1;
    j->kh = kh; j->kw = kw; j->sh = sh; j->sw = sw; j->ph = ph; j->pw = pw;
    return 0;
}

static fmd_tensor *contiguous_nograd(fmd_tensor *t) {
    int prev = fmd_set_grad_enabled(0);
    fmd_tensor *c = fmd_contiguous(t);
    fmd_set_grad_enabled(prev);
    return c;
}

static void geometry_to_node(fmd_node *n, const pool_job *j) {
    int64_t a[6] = {j->kh, j->kw, j->sh, j->sw, j->ph, j->pw};
    memcpy(n->iarg, a, sizeof a);
}

static void geometry_from_node(const fmd_node *n, const fmd_tensor *x, const fmd_tensor *g, pool_job *j) {
    j->kh = (int)n->iarg[0]; j->kw = (int)n->iarg[1]; j->sh = (int)n->iarg[2];
    j->sw = (int)n->iarg[3]; j->ph = (int)n->iarg[4]; j->pw = (int)n->iarg[5];
    j->NC = x->shape[0] * x->shape[1]; j->H = x->shape[2]; j->W = x->shape[3];
    j->OH = g->shape[2]; j->OW = g->shape[3];
}

/* gx like x, filled by task over planes (each zeroes its planes first),
 * then accumulated into x */
static int pool_backward_run(fmd_node *n, fmd_tensor *gout, fmd_task_fn task) {
    fmd_tensor *x = n->inputs[0];
    pool_job j = {0};
    /* each task zeroes its own planes just before adding into them: one
     * cache-warm pass instead of a separate memset over all of gx */
    fmd_tensor *gy = fmd_contiguous(gout), *gx = gy ? fmd_empty(x->ndim, x->shape) : NULL;
    int rc = -1;
    if (gx) {
        geometry_from_node(n, x, gy, &j);
        j.gy = fmd_data(gy); j.gx = fmd_data(gx); j.idx = n->ctx;
        run_planes(task, &j);
        rc = j.failed ? fmd_fail("%s backward: out of memory", n->name) : fmd_accumulate_grad(x, gx);
    }
    fmd_release(gy); fmd_release(gx);
    return rc;
}

/* ------------------------------------------------------------- max pool */
/* output positions o in [0, out) whose input index o*s + off lies in [0, in) */
static void valid_range(int64_t off, int s, int64_t in, int64_t out, int64_t *lo, int64_t *hi) {
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t last = in - 1 - off;
    int64_t h = last < 0 ? 0 : last / s + 1;
    if (h > out) h = out;
    if (l > h) l = h;
    *lo = l; *hi = h;
}

/* Row at a time: each kernel tap updates a whole output row with a
 * branch-free select (vectorisable; a per-window branch mispredicts on
 * real data and cost ~5x). Each output still sees its window in PyTorch's
 * order (rows, then columns) with a strict >, so the first maximum wins
 * and NaN propagates, as in PyTorch. With stride s > 1 each input row is
 * first split into s phases (phase p holds columns p, p+s, ...), so that a
 * tap reads one phase contiguously instead of every s-th float. */
// x plane (H,W) -> y plane (OH,OW) and, when idx is not NULL, the flat
// argmax of each window; split holds s * ceil(W/s) floats, taps what
// max_taps computed
FMD_SIMD_CLONES
static void max_plane(const pool_job *j, const float *restrict x, float *restrict y, int32_t *restrict idx,
                      float *restrict split, const int64_t *restrict taps) {
    const int64_t W = j->W, OW = j->OW;
    const int s = j->sw;
    const int64_t plen = (W + s - 1) / s;   /* length of a phase */
    for (int64_t oy = 0; oy < j->OH; oy++) {
        int64_t hs = oy * j->sh - j->ph, he = hs + j->kh;
        if (hs < 0) hs = 0;
        if (he > j->H) he = j->H;
        float *restrict m = y + oy * OW;
        int32_t *restrict mi = idx ? idx + oy * OW : NULL;
        for (int64_t ox = 0; ox < OW; ox++) m[ox] = -INFINITY;
        if (mi)
            for (int64_t ox = 0; ox < OW; ox++) {
                int64_t ws = ox * s - j->pw;
                mi[ox] = (int32_t)(hs * W + (ws < 0 ? 0 : ws));
            }
        for (int64_t iy = hs; iy < he; iy++) {
            const float *restrict row = x + iy * W;
            if (s == 2) {   /* both phases in one pass the compiler vectorises */
                float *restrict even = split, *restrict odd = split + plen;
                for (int64_t i = 0; i < W / 2; i++) {
                    even[i] = row[2 * i];
                    odd[i] = row[2 * i + 1];
                }
                if (W % 2) even[W / 2] = row[W - 1];
            }
            else if (s > 2)
                for (int p = 0; p < s; p++)
                    for (int64_t i = 0; p + i * s < W; i++) split[p * plen + i] = row[p + i * s];
            for (int64_t kx = 0; kx < j->kw; kx++) {
                const int64_t off = kx - j->pw, lo = taps[4 * kx], hi = taps[4 * kx + 1];
                const float *restrict ph = s > 1 ? split + taps[4 * kx + 2] * plen + taps[4 * kx + 3] : row + off;
                if (mi) {
                    const int32_t base = (int32_t)(iy * W + off);
                    for (int64_t ox = lo; ox < hi; ox++) {
                        float v = ph[ox];
                        int take = (v > m[ox]) | (v != v);
                        m[ox] = take ? v : m[ox];
                        mi[ox] = take ? base + (int32_t)(ox * s) : mi[ox];
                    }
                } else {
                    for (int64_t ox = lo; ox < hi; ox++) {
                        float v = ph[ox];
                        m[ox] = ((v > m[ox]) | (v != v)) ? v : m[ox];
                    }
                }
            }
        }
    }
}

/* per kernel column kx: the outputs [lo, hi) whose input column lies in
 * the row, and the phase p and shift q that hold input column ox*s + off
 * (element ox + q of phase p); divisions done once, not per row */
static void max_taps(const pool_job *j, int64_t *taps) {
    const int s = j->sw;
    for (int64_t kx = 0; kx < j->kw; kx++) {
        const int64_t off = kx - j->pw, p = ((off % s) + s) % s;
        valid_range(off, s, j->W, j->OW, &taps[4 * kx], &taps[4 * kx + 1]);
        taps[4 * kx + 2] = p;
        taps[4 * kx + 3] = (off - p) / s;
    }
}

static void max_fwd_task(void *p, int ith, int nth) {
    pool_job *j = p;
    int64_t b, e;
    fmd_split(j->NC, ith, nth, &b, &e);
    if (b >= e) return;
    const int64_t on = j->OH * j->OW, plen = (j->W + j->sw - 1) / j->sw;
    float *split = malloc((size_t)(j->sw * plen) * sizeof *split);
    int64_t *taps = malloc((size_t)(4 * j->kw) * sizeof *taps);
    if (split && taps) {
        max_taps(j, taps);
        for (int64_t pl = b; pl < e; pl++)
            max_plane(j, j->x + pl * j->H * j->W, j->y + pl * on, j->idx ? j->idx + pl * on : NULL, split, taps);
    } else {
        j->failed = 1;
    }
    free(split); free(taps);
}

// gy plane (OH,OW) routed to the argmax positions of gx plane (H,W)
static void max_bwd_task(void *p, int ith, int nth) {
    pool_job *j = p;
    int64_t b, e, on = j->OH * j->OW;
    fmd_split(j->NC, ith, nth, &b, &e);
    for (int64_t pl = b; pl < e; pl++) {
        const float *gy = j->gy + pl * on;
        const int32_t *idx = j->idx + pl * on;
        float *gx = j->gx + pl * j->H * j->W;
        memset(gx, 0, (size_t)(j->H * j->W) * sizeof *gx);
        for (int64_t i = 0; i < on; i++) gx[idx[i]] += gy[i];
    }
}

static int max_pool_backward(fmd_node *n, fmd_tensor *g) { return pool_backward_run(n, g, max_bwd_task); }

// x is (N,C,H,W) -> (N,C,OH,OW)
fmd_tensor *fmd_max_pool2d(fmd_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw) {
    pool_job j = {0};
    if (window_geometry("max_pool2d", x, kh, kw, sh, sw, ph, pw, &j)) return NULL;
    int64_t shape[4] = {x->shape[0], x->shape[1], j.OH, j.OW};
    fmd_tensor *xc = contiguous_nograd(x), *y = xc ? fmd_empty(4, shape) : NULL;
    const int grad = fmd_needs_grad(1, &x);   /* the argmax is kept only for a backward */
    int32_t *idx = y && grad ? malloc((size_t)(j.NC * j.OH * j.OW) * sizeof *idx + 1) : NULL;
    if (!y || (grad && !idx)) {
        if (y) fmd_fail("max_pool2d: out of memory for the argmax indices");
        fmd_release(xc); fmd_release(y);
        return NULL;
    }
    j.x = fmd_data(xc); j.y = fmd_data(y); j.idx = idx;
    run_planes(max_fwd_task, &j);
    fmd_release(xc);
    if (j.failed) { free(idx); fmd_release(y); return fmd_fail_null("max_pool2d: out of memory for a row buffer"); }
    if (!grad) return y;
    fmd_node *n = fmd_node_new("max_pool2d", max_pool_backward, 1, &x);
    if (!n) { free(idx); fmd_release(y); return NULL; }
    geometry_to_node(n, &j);
    n->ctx = idx;   /* freed with the node */
    fmd_node_attach(y, n);
    return y;
}

/* ------------------------------------------------------------- avg pool */
/* window of output o along one axis, clipped to the input, and PyTorch's
 * count_include_pad divisor (window clipped to the padded input only) */
static void avg_window(int64_t o, int s, int p, int k, int64_t in, int64_t *st, int64_t *en, int64_t *cnt) {
    int64_t a = o * s - p, b = a + k;
    if (b > in + p) b = in + p;
    *cnt = b - a;
    if (a < 0) a = 0;
    if (b > in) b = in;
    *st = a; *en = b;
}

/* row at a time like max_plane; per output the window is summed in
 * PyTorch's order (rows, then columns) */
// x plane (H,W) -> y plane (OH,OW): window sums / padded window size
FMD_SIMD_CLONES
static void avg_plane_fwd(const pool_job *j, const float *restrict x, float *restrict y) {
    const int64_t W = j->W, OW = j->OW;
    const int s = j->sw;
    for (int64_t oy = 0; oy < j->OH; oy++) {
        int64_t hs, he, hc;
        avg_window(oy, j->sh, j->ph, j->kh, j->H, &hs, &he, &hc);
        float *restrict yr = y + oy * OW;
        for (int64_t ox = 0; ox < OW; ox++) yr[ox] = 0;
        for (int64_t iy = hs; iy < he; iy++) {
            const float *restrict row = x + iy * W;
            for (int64_t kx = 0; kx < j->kw; kx++) {
                int64_t off = kx - j->pw, lo, hi;
                valid_range(off, s, W, OW, &lo, &hi);
                for (int64_t ox = lo; ox < hi; ox++) yr[ox] += row[ox * s + off];
            }
        }
        for (int64_t ox = 0; ox < OW; ox++) {
            int64_t ws, we, wc;
            avg_window(ox, s, j->pw, j->kw, W, &ws, &we, &wc);
            yr[ox] = (hs < he && ws < we) ? yr[ox] / (float)(hc * wc) : 0.0f;
        }
    }
}

static void avg_fwd_task(void *p, int ith, int nth) {
    pool_job *j = p;
    int64_t b, e;
    fmd_split(j->NC, ith, nth, &b, &e);
    for (int64_t pl = b; pl < e; pl++) avg_plane_fwd(j, j->x + pl * j->H * j->W, j->y + pl * j->OH * j->OW);
}

// gy plane (OH,OW) spread evenly over each window of gx plane (H,W); v is
// OW floats of scratch
FMD_SIMD_CLONES
static void avg_plane_bwd(const pool_job *j, const float *restrict gy, float *restrict gx, float *restrict v) {
    const int64_t W = j->W, OW = j->OW;
    const int s = j->sw;
    for (int64_t oy = 0; oy < j->OH; oy++) {
        int64_t hs, he, hc;
        avg_window(oy, j->sh, j->ph, j->kh, j->H, &hs, &he, &hc);
        for (int64_t ox = 0; ox < OW; ox++) {
            int64_t ws, we, wc;
            avg_window(ox, s, j->pw, j->kw, W, &ws, &we, &wc);
            v[ox] = gy[oy * OW + ox] / (float)(hc * wc);
        }
        for (int64_t iy = hs; iy < he; iy++) {
            float *restrict row = gx + iy * W;
            for (int64_t kx = 0; kx < j->kw; kx++) {
                int64_t off = kx - j->pw, lo, hi;
                valid_range(off, s, W, OW, &lo, &hi);
                for (int64_t ox = lo; ox < hi; ox++) row[ox * s + off] += v[ox];
            }
        }
    }
}

static void avg_bwd_task(void *p, int ith, int nth) {
    pool_job *j = p;
    int64_t b, e;
    fmd_split(j->NC, ith, nth, &b, &e);
    float *v = b < e ? malloc((size_t)j->OW * sizeof *v) : NULL;
    if (!v) { j->failed = b < e; return; }
    for (int64_t pl = b; pl < e; pl++) {
        memset(j->gx + pl * j->H * j->W, 0, (size_t)(j->H * j->W) * sizeof(float));
        avg_plane_bwd(j, j->gy + pl * j->OH * j->OW, j->gx + pl * j->H * j->W, v);
    }
    free(v);
}

static int avg_pool_backward(fmd_node *n, fmd_tensor *g) { return pool_backward_run(n, g, avg_bwd_task); }

// x is (N,C,H,W) -> (N,C,OH,OW)
fmd_tensor *fmd_avg_pool2d(fmd_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw) {
    pool_job j = {0};
    if (window_geometry("avg_pool2d", x, kh, kw, sh, sw, ph, pw, &j)) return NULL;
    int64_t shape[4] = {x->shape[0], x->shape[1], j.OH, j.OW};
    fmd_tensor *xc = contiguous_nograd(x), *y = xc ? fmd_empty(4, shape) : NULL;
    if (!y) { fmd_release(xc); return NULL; }
    j.x = fmd_data(xc); j.y = fmd_data(y);
    run_planes(avg_fwd_task, &j);
    fmd_release(xc);
    if (!fmd_needs_grad(1, &x)) return y;
    fmd_node *n = fmd_node_new("avg_pool2d", avg_pool_backward, 1, &x);
    if (!n) { fmd_release(y); return NULL; }
    geometry_to_node(n, &j);
    fmd_node_attach(y, n);
    return y;
}

/* ---------------------------------------------------- adaptive avg pool */
/* PyTorch's bins: output o of out covers [floor(o*in/out), ceil((o+1)*in/out)) */
static int64_t ad_start(int64_t o, int64_t out, int64_t in) { return o * in / out; }
static int64_t ad_end(int64_t o, int64_t out, int64_t in) { return ((o + 1) * in + out - 1) / out; }

// x plane (H,W) -> y plane (OH,OW) of bin means
static void adaptive_fwd_task(void *p, int ith, int nth) {
    pool_job *j = p;
    int64_t b, e;
    fmd_split(j->NC, ith, nth, &b, &e);
    for (int64_t pl = b; pl < e; pl++) {
        const float *x = j->x + pl * j->H * j->W;
        float *y = j->y + pl * j->OH * j->OW;
        for (int64_t oy = 0; oy < j->OH; oy++) {
            int64_t hs = ad_start(oy, j->OH, j->H), he = ad_end(oy, j->OH, j->H);
            for (int64_t ox = 0; ox < j->OW; ox++) {
                int64_t ws = ad_start(ox, j->OW, j->W), we = ad_end(ox, j->OW, j->W);
                float s = 0;
                for (int64_t iy = hs; iy < he; iy++)
                    for (int64_t ix = ws; ix < we; ix++) s += x[iy * j->W + ix];
                y[oy * j->OW + ox] = s / (float)((he - hs) * (we - ws));
            }
        }
    }
}

// gy plane (OH,OW) spread evenly over each bin of gx plane (H,W)
static void adaptive_bwd_task(void *p, int ith, int nth) {
    pool_job *j = p;
    int64_t b, e;
    fmd_split(j->NC, ith, nth, &b, &e);
    for (int64_t pl = b; pl < e; pl++) {
        const float *gy = j->gy + pl * j->OH * j->OW;
        float *gx = j->gx + pl * j->H * j->W;
        memset(gx, 0, (size_t)(j->H * j->W) * sizeof *gx);
        for (int64_t oy = 0; oy < j->OH; oy++) {
            int64_t hs = ad_start(oy, j->OH, j->H), he = ad_end(oy, j->OH, j->H);
            for (int64_t ox = 0; ox < j->OW; ox++) {
                int64_t ws = ad_start(ox, j->OW, j->W), we = ad_end(ox, j->OW, j->W);
                float v = gy[oy * j->OW + ox] / (float)((he - hs) * (we - ws));
                for (int64_t iy = hs; iy < he; iy++)
                    for (int64_t ix = ws; ix < we; ix++) gx[iy * j->W + ix] += v;
            }
        }
    }
}

static int adaptive_backward(fmd_node *n, fmd_tensor *g) { return pool_backward_run(n, g, adaptive_bwd_task); }

// x is (N,C,H,W) -> (N,C,oh,ow)
fmd_tensor *fmd_adaptive_avg_pool2d(fmd_tensor *x, int oh, int ow) {
    char a[128];
    pool_job j = {0};
    if (check_4d("adaptive_avg_pool2d", x)) return NULL;
    if (oh < 1 || ow < 1) return fmd_fail_null("adaptive_avg_pool2d: output size (%d, %d) must be positive", oh, ow);
    if (x->shape[2] < 1 || x->shape[3] < 1)
        return fmd_fail_null("adaptive_avg_pool2d: input %s has an empty plane",
                             fmd_shape_str(a, sizeof a, x->ndim, x->shape));
    j.NC = x->shape[0] * x->shape[1]; j.H = x->shape[2]; j.W = x->shape[3]; j.OH = oh; j.OW = ow;
    int64_t shape[4] = {x->shape[0], x->shape[1], oh, ow};
    fmd_tensor *xc = contiguous_nograd(x), *y = xc ? fmd_empty(4, shape) : NULL;
    if (!y) { fmd_release(xc); return NULL; }
    j.x = fmd_data(xc); j.y = fmd_data(y);
    run_planes(adaptive_fwd_task, &j);
    fmd_release(xc);
    if (!fmd_needs_grad(1, &x)) return y;
    fmd_node *n = fmd_node_new("adaptive_avg_pool2d", adaptive_backward, 1, &x);
    if (!n) { fmd_release(y); return NULL; }
    fmd_node_attach(y, n);
    return y;
}
