/* nn_norm.c - batch normalisation, forward and backward.
 *
 * x is (N,C) or (N,C,*) (normally (N,C,H,W)); weight, bias, running_mean and
 * running_var are (C) or NULL. Per channel c, over its M = N * (H*W) values:
 *   training: mean, var = batch mean and biased variance; running stats are
 *             updated in place like PyTorch:
 *               running_mean = (1 - momentum) running_mean + momentum mean
 *               running_var  = (1 - momentum) running_var  + momentum var * M/(M-1)
 *   eval:     mean, var = running_mean, running_var
 *   y = (x - mean) / sqrt(var + eps) * weight + bias
 * Backward (xhat = (x - mean) * invstd, w = weight or 1):
 *   gbias = sum gy, gweight = sum gy xhat
 *   training: gx = w invstd (gy - gbias/M - xhat gweight/M)
 *   eval:     gx = w invstd gy   (the statistics are constants)
 * fmd_batch_norm_relu is max(y, 0) in the same call: the forward rectifies
 * as it writes, and the backward masks gy by y > 0 (the output it saved),
 * one channel at a time into a per-thread scratch that both backward passes
 * read, instead of a ReLU node with a pass and a tensor of its own each way;
 * the numbers are those of batch_norm then relu.
 * Channels are independent, so both passes split channels over the pool and
 * every thread writes only its own channels (output, stats, gradients).
 * Sums run in double, and the variance is a second pass over (x - mean)^2,
 * so large planes and large means do not lose precision. */
#include "fmd_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t N, C, S;     /* x viewed as (N, C, S) */
    int training;
    int relu;            /* y = max(batch_norm(x), 0) */
    float *mean, *invstd;   /* (C): the statistics the forward used */
} bn_ctx;

static float vec_at(const fmd_tensor *t, int64_t i) { return fmd_data(t)[i * t->stride[0]]; }

/* contiguous copy without recording a graph node */
static fmd_tensor *plain_contiguous(fmd_tensor *t) {
    if (fmd_is_contiguous(t)) return fmd_retain(t);
    fmd_tensor *c = fmd_empty(t->ndim, t->shape);
    if (c && fmd_copy_(c, t)) { fmd_release(c); return NULL; }
    return c;
}

/* Per-plane sums in 16 float lanes (two vectors of 8, also in AVX2), each
 * plane's total then added in double: a plane has at most a few 10^4 values,
 * so the lanes stay accurate while the channel total over N planes does not
 * drift. Written with vector types: GCC's own vectorisation of a 16-lane
 * array loop shuffled lanes and ran 2x slower (measured, batch_norm
 * backward). */
typedef float bn_v8 __attribute__((vector_size(32), aligned(4)));   /* loadable from any float address */

static inline double lanes_sum(double s, bn_v8 lo, bn_v8 hi) {
    for (int k = 0; k < 8; k++) s += lo[k];
    for (int k = 0; k < 8; k++) s += hi[k];
    return s;
}

FMD_SIMD_CLONES
static double plane_sum(const float *restrict x, int64_t n) {
    bn_v8 lo = {0}, hi = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) { lo += *(const bn_v8 *)(x + i); hi += *(const bn_v8 *)(x + i + 8); }
    double s = 0;
    for (; i < n; i++) s += x[i];
    return lanes_sum(s, lo, hi);
}

// sum of (x - mean)^2 over a plane
FMD_SIMD_CLONES
static double plane_sqdev(const float *restrict x, int64_t n, float mean) {
    bn_v8 lo = {0}, hi = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        bn_v8 d0 = *(const bn_v8 *)(x + i) - mean, d1 = *(const bn_v8 *)(x + i + 8) - mean;
        lo += d0 * d0; hi += d1 * d1;
    }
    double s = 0;
    for (; i < n; i++) { double d = x[i] - mean; s += d * d; }
    return lanes_sum(s, lo, hi);
}

// *sg += sum gy, *sgx += sum gy * (x - mean) over a plane
FMD_SIMD_CLONES
static void plane_gsums(const float *restrict gy, const float *restrict x, int64_t n, float mean, double *sg,
                        double *sgx) {
    bn_v8 a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        bn_v8 g0 = *(const bn_v8 *)(gy + i), g1 = *(const bn_v8 *)(gy + i + 8);
        a0 += g0; a1 += g1;
        b0 += g0 * (*(const bn_v8 *)(x + i) - mean); b1 += g1 * (*(const bn_v8 *)(x + i + 8) - mean);
    }
    double s = 0, t = 0;
    for (; i < n; i++) { s += gy[i]; t += (double)gy[i] * (x[i] - mean); }
    *sg += lanes_sum(s, a0, a1); *sgx += lanes_sum(t, b0, b1);
}

// g = gy where the fused ReLU's output y is > 0, else 0: the gradient a
// ReLU node would have passed on, into a scratch buffer, so that the sums
// below are batch_norm's own, bit for bit
FMD_SIMD_CLONES
static void plane_mask(const float *restrict gy, const float *restrict y, float *restrict g, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = y[i] > 0 ? gy[i] : 0;
}

// y = x * a + b over a plane, then max(y, 0) when relu; y may be x (no
// restrict: GCC's overlap check lets the same pointer take the vector loop)
FMD_SIMD_CLONES
void fmd_plane_affine(const float *x, float *y, int64_t n, float a, float b, int relu) {
    if (relu)
        for (int64_t i = 0; i < n; i++) { float v = x[i] * a + b; y[i] = v > 0 ? v : 0; }
    else
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * a + b;
}

/* eval: the statistics are the running ones */
static void eval_stats(const fmd_tensor *rmean, const fmd_tensor *rvar, int64_t c, float eps, double *mean,
                       double *invstd) {
    *mean = vec_at(rmean, c);
    *invstd = 1.0 / sqrt((double)vec_at(rvar, c) + eps);
}

/* y = x * a + shift with a = invstd * w, shift = b - mean * a */
static void affine_coef(const fmd_tensor *weight, const fmd_tensor *bias, int64_t c, double mean, double invstd,
                        float *a, float *shift) {
    double ad = invstd * (weight ? vec_at(weight, c) : 1.0f);
    *a = (float)ad;
    *shift = (float)((bias ? vec_at(bias, c) : 0.0f) - mean * ad);
}

/* ----------------------------------------------------------------- forward */
typedef struct {
    const bn_ctx *g;
    const float *x;
    float *y;
    fmd_tensor *weight, *bias, *rmean, *rvar;
    float momentum, eps;
} bn_fwd_job;

static void bn_fwd_task(void *p, int ith, int nth) {
    bn_fwd_job *j = p;
    const bn_ctx *g = j->g;
    int64_t c0, c1, N = g->N, C = g->C, S = g->S, M = N * S;
    fmd_split(C, ith, nth, &c0, &c1);
    for (int64_t c = c0; c < c1; c++) {
        double mean, invstd;
        if (g->training) {
            double s = 0, ss = 0;
            for (int64_t n = 0; n < N; n++) s += plane_sum(j->x + (n * C + c) * S, S);
            mean = s / (double)M;
            for (int64_t n = 0; n < N; n++) ss += plane_sqdev(j->x + (n * C + c) * S, S, (float)mean);
            double var = ss / (double)M;
            invstd = 1.0 / sqrt(var + j->eps);
            if (j->rmean) {
                float *rm = fmd_data(j->rmean) + c * j->rmean->stride[0];
                *rm = (float)((1.0 - j->momentum) * *rm + j->momentum * mean);
            }
            if (j->rvar) {
                float *rv = fmd_data(j->rvar) + c * j->rvar->stride[0];
                *rv = (float)((1.0 - j->momentum) * *rv + j->momentum * ss / (double)(M - 1));
            }
        } else {
            eval_stats(j->rmean, j->rvar, c, j->eps, &mean, &invstd);
        }
        g->mean[c] = (float)mean;
        g->invstd[c] = (float)invstd;
        float af, shift;
        affine_coef(j->weight, j->bias, c, mean, invstd, &af, &shift);
        for (int64_t n = 0; n < N; n++)
            fmd_plane_affine(j->x + (n * C + c) * S, j->y + (n * C + c) * S, S, af, shift, g->relu);
    }
}

/* ---------------------------------------------------------------- backward */
typedef struct {
    const bn_ctx *g;
    const float *x, *gy;
    const float *y;        /* the fused ReLU's output (masks gy), or NULL */
    fmd_tensor *weight;
    float *gx, *gw, *gb;   /* any may be NULL */
    int failed;            /* out of memory for a thread's scratch plane */
} bn_bwd_job;

// gx = k (gy - mg - (x - mean) cx) over a plane
FMD_SIMD_CLONES
static void plane_gx(const float *restrict gy, const float *restrict x, float *restrict gx, int64_t n, float k,
                     float mg, float mean, float cx) {
    for (int64_t i = 0; i < n; i++) gx[i] = k * (gy[i] - mg - (x[i] - mean) * cx);
}

static void bn_bwd_task(void *p, int ith, int nth) {
    bn_bwd_job *j = p;
    const bn_ctx *g = j->g;
    int64_t c0, c1, N = g->N, C = g->C, S = g->S, M = N * S;
    fmd_split(C, ith, nth, &c0, &c1);
    /* with the fused ReLU, a channel's N planes of gy are masked once into
     * gm and both passes below read them from there */
    float *gm = NULL;
    if (j->y && c0 < c1 && !(gm = malloc((size_t)(M > 0 ? M : 1) * sizeof *gm))) { j->failed = 1; return; }
    for (int64_t c = c0; c < c1; c++) {
        float mean = g->mean[c], invstd = g->invstd[c];
        if (gm)
            for (int64_t n = 0; n < N; n++) plane_mask(j->gy + (n * C + c) * S, j->y + (n * C + c) * S, gm + n * S, S);
        /* gy's plane of sample n is at gyc + n * gs */
        const float *gyc = gm ? gm : j->gy + c * S;
        const int64_t gs = gm ? S : C * S;
        double sg = 0, sgx = 0;   /* sum gy, sum gy * (x - mean) */
        for (int64_t n = 0; n < N; n++) plane_gsums(gyc + n * gs, j->x + (n * C + c) * S, S, mean, &sg, &sgx);
        if (j->gb) j->gb[c] = (float)sg;
        if (j->gw) j->gw[c] = (float)(sgx * invstd);
        if (!j->gx) continue;
        float w = j->weight ? vec_at(j->weight, c) : 1.0f;
        float k = w * invstd;
        if (g->training) {
            /* gx = k (gy - sg/M - (x - mean) invstd^2 sgx/M) */
            float mg = (float)(sg / (double)M), cx = (float)(sgx / (double)M * invstd * invstd);
            for (int64_t n = 0; n < N; n++)
                plane_gx(gyc + n * gs, j->x + (n * C + c) * S, j->gx + (n * C + c) * S, S, k, mg, mean, cx);
        } else {
            for (int64_t n = 0; n < N; n++) fmd_plane_affine(gyc + n * gs, j->gx + (n * C + c) * S, S, k, 0.0f, 0);
        }
    }
    free(gm);
}

static void run_channels(fmd_task_fn fn, void *job, int64_t numel) {
    if (numel >= (1 << 15)) fmd_parallel(fn, job);
    else fn(job, 0, 1);
}

static int bn_backward(fmd_node *nd, fmd_tensor *gy) {
    bn_ctx *g = nd->ctx;
    fmd_tensor *x = nd->inputs[0], *w = nd->inputs[1], *b = nd->inputs[2];
    int want_x = x->requires_grad, want_w = w && w->requires_grad, want_b = b && b->requires_grad;
    fmd_tensor *gc = plain_contiguous(gy), *xc = plain_contiguous(nd->saved[0]);
    fmd_tensor *yc = g->relu ? plain_contiguous(nd->saved[2]) : NULL;   /* the fused ReLU's output */
    fmd_tensor *gx = NULL, *gw = NULL, *gb = NULL;
    int rc = -1;
    if (!gc || !xc || (g->relu && !yc)) goto done;
    if (want_x && !(gx = fmd_empty(x->ndim, x->shape))) goto done;
    if (want_w && !(gw = fmd_empty(1, &g->C))) goto done;
    if (want_b && !(gb = fmd_empty(1, &g->C))) goto done;
    bn_bwd_job j = {g, fmd_data(xc), fmd_data(gc), yc ? fmd_data(yc) : NULL, nd->saved[1],
                    gx ? fmd_data(gx) : NULL, gw ? fmd_data(gw) : NULL, gb ? fmd_data(gb) : NULL, 0};
    run_channels(bn_bwd_task, &j, fmd_numel(xc));
    if (j.failed) { fmd_fail("batch_norm backward: out of memory"); goto done; }
    if (gx && fmd_accumulate_grad(x, gx)) goto done;
    if (gw && fmd_accumulate_grad(w, gw)) goto done;
    if (gb && fmd_accumulate_grad(b, gb)) goto done;
    rc = 0;
done:
    fmd_release(gc); fmd_release(xc); fmd_release(yc); fmd_release(gx); fmd_release(gw); fmd_release(gb);
    return rc;
}

// t is (C) or NULL; x (N,C,*) names the input in the message
static int check_vec(const char *what, const fmd_tensor *t, const fmd_tensor *x) {
    if (!t || (t->ndim == 1 && t->shape[0] == x->shape[1])) return 0;
    char a[128], b[128];
    return fmd_fail("batch_norm: %s %s should be [%lld] (one per channel of input %s)", what,
                    fmd_shape_str(a, sizeof a, t->ndim, t->shape), (long long)x->shape[1],
                    fmd_shape_str(b, sizeof b, x->ndim, x->shape));
}

// weight, bias (C) or NULL, running_* (C) -> scale, shift (C floats each)
int fmd_batch_norm_eval_coef(fmd_tensor *weight, fmd_tensor *bias, fmd_tensor *running_mean,
                             fmd_tensor *running_var, int64_t C, float eps, float *scale, float *shift) {
    if (!running_mean || !running_var)
        return fmd_fail("batch_norm: eval mode (training = false) needs running_mean and running_var");
    if (!(eps >= 0) || !isfinite(eps)) return fmd_fail("batch_norm: eps %g must be a finite number >= 0", eps);
    const char *names[4] = {"weight", "bias", "running_mean", "running_var"};
    fmd_tensor *vecs[4] = {weight, bias, running_mean, running_var};
    for (int i = 0; i < 4; i++)
        if (vecs[i] && !(vecs[i]->ndim == 1 && vecs[i]->shape[0] == C)) {
            char a[128];
            return fmd_fail("batch_norm: %s %s should be [%lld] (one per channel of the conv output)", names[i],
                            fmd_shape_str(a, sizeof a, vecs[i]->ndim, vecs[i]->shape), (long long)C);
        }
    for (int64_t c = 0; c < C; c++) {
        double mean, invstd;
        eval_stats(running_mean, running_var, c, eps, &mean, &invstd);
        affine_coef(weight, bias, c, mean, invstd, scale + c, shift + c);
    }
    return 0;
}

// x is (N,C) or (N,C,H,W) (any (N,C,*)); weight, bias, running_* are (C) or
// NULL; relu: max(., 0) of the result in the same node
static fmd_tensor *batch_norm(fmd_tensor *x, fmd_tensor *weight, fmd_tensor *bias, fmd_tensor *running_mean,
                              fmd_tensor *running_var, int training, float momentum, float eps, int relu) {
    char a[128];
    if (!x) return fmd_fail_null("batch_norm: input is required");
    if (x->ndim < 2)
        return fmd_fail_null("batch_norm: input must be (N,C) or (N,C,H,W), got %s",
                             fmd_shape_str(a, sizeof a, x->ndim, x->shape));
    if (check_vec("weight", weight, x) || check_vec("bias", bias, x) || check_vec("running_mean", running_mean, x) ||
        check_vec("running_var", running_var, x))
        return NULL;
    if (!running_mean != !running_var)
        return fmd_fail_null("batch_norm: running_mean and running_var must be given together");
    if (!(eps >= 0) || !isfinite(eps)) return fmd_fail_null("batch_norm: eps %g must be a finite number >= 0", eps);
    if (!isfinite(momentum)) return fmd_fail_null("batch_norm: momentum %g must be finite", momentum);
    if (!training && !running_mean)
        return fmd_fail_null("batch_norm: eval mode (training = false) needs running_mean and running_var");
    int64_t N = x->shape[0], C = x->shape[1], S = 1;
    for (int d = 2; d < x->ndim; d++) S *= x->shape[d];
    if (training && N * S <= 1)
        return fmd_fail_null("batch_norm: expected more than 1 value per channel when training, got input %s",
                             fmd_shape_str(a, sizeof a, x->ndim, x->shape));
    bn_ctx *g = malloc(sizeof *g + 2 * (size_t)(C > 0 ? C : 1) * sizeof(float));
    if (!g) return fmd_fail_null("batch_norm: out of memory");
    g->N = N; g->C = C; g->S = S; g->training = training ? 1 : 0; g->relu = relu;
    g->mean = (float *)(g + 1);
    g->invstd = g->mean + C;
    fmd_tensor *xc = plain_contiguous(x), *y = xc ? fmd_empty(x->ndim, x->shape) : NULL;
    if (!y) { fmd_release(xc); free(g); return NULL; }
    bn_fwd_job j = {g, fmd_data(xc), fmd_data(y), weight, bias, running_mean, running_var, momentum, eps};
    run_channels(bn_fwd_task, &j, fmd_numel(xc));
    fmd_release(xc);
    fmd_tensor *ins[3] = {x, weight, bias};
    if (fmd_needs_grad(3, ins)) {
        fmd_node *n = fmd_node_new(relu ? "batch_norm_relu" : "batch_norm", bn_backward, 3, ins);
        if (!n) { fmd_release(y); free(g); return NULL; }
        n->ctx = g;
        n->saved[0] = fmd_alias(x);
        n->saved[1] = weight ? fmd_alias(weight) : NULL;
        /* the output, for the ReLU's mask (the next layer keeps it anyway) */
        n->saved[2] = relu ? fmd_alias(y) : NULL;
        fmd_node_attach(y, n);
        if (relu && !n->saved[2]) { fmd_release(y); return NULL; }
    } else {
        free(g);
    }
    return y;
}

fmd_tensor *fmd_batch_norm(fmd_tensor *x, fmd_tensor *weight, fmd_tensor *bias, fmd_tensor *running_mean,
                           fmd_tensor *running_var, int training, float momentum, float eps) {
    return batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps, 0);
}

fmd_tensor *fmd_batch_norm_relu(fmd_tensor *x, fmd_tensor *weight, fmd_tensor *bias, fmd_tensor *running_mean,
                                fmd_tensor *running_var, int training, float momentum, float eps) {
    return batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps, 1);
}
