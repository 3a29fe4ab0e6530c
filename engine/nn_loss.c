/* nn_loss.c - softmax, log_softmax, cross_entropy and mse_loss, forward and
 * backward side by side.
 *
 * softmax / log_softmax work along one dim of any tensor, viewed as
 * (outer, D, inner); each of the outer*inner rows of D values is shifted by
 * its maximum before exp, so large logits never overflow.
 * cross_entropy = mean over rows of (logsumexp(row) - row[target]), the
 * same stable log-softmax; its backward is (softmax - onehot) / N.
 * Sums run in double. */
#include "fmd_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* contiguous copy without recording a graph node */
static fmd_tensor *plain_contiguous(fmd_tensor *t) {
    if (fmd_is_contiguous(t)) return fmd_retain(t);
    fmd_tensor *c = fmd_empty(t->ndim, t->shape);
    if (c && fmd_copy_(c, t)) { fmd_release(c); return NULL; }
    return c;
}

static void run_rows(fmd_task_fn fn, void *job, int64_t numel) {
    if (numel >= (1 << 15)) fmd_parallel(fn, job);
    else fn(job, 0, 1);
}

/* ------------------------------------------------------ softmax, log_softmax */
typedef struct {
    int64_t rows, D, inner;   /* rows = outer * inner */
    int log;
    const float *x, *gy;      /* forward input, or backward upstream gradient */
    const float *y;           /* backward: the forward output */
    float *out;
} sm_job;

/* element k of row r sits at base(r) + k * inner */
static inline int64_t row_base(const sm_job *j, int64_t r) {
    return (r / j->inner) * j->D * j->inner + r % j->inner;
}

static void sm_fwd_task(void *p, int ith, int nth) {
    sm_job *j = p;
    int64_t r0, r1, D = j->D, st = j->inner;
    fmd_split(j->rows, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + row_base(j, r);
        float *o = j->out + row_base(j, r);
        float m = -INFINITY;
        for (int64_t k = 0; k < D; k++) if (x[k * st] > m) m = x[k * st];
        if (m == -INFINITY) m = 0;   /* all -inf: keep exp finite (gives nan like PyTorch) */
        double s = 0;
        if (j->log) {
            for (int64_t k = 0; k < D; k++) s += exp((double)x[k * st] - m);
            float lse = (float)(m + log(s));
            for (int64_t k = 0; k < D; k++) o[k * st] = x[k * st] - lse;
        } else {
            for (int64_t k = 0; k < D; k++) { float e = expf(x[k * st] - m); o[k * st] = e; s += e; }
            float inv = (float)(1.0 / s);
            for (int64_t k = 0; k < D; k++) o[k * st] *= inv;
        }
    }
}

/* softmax:     gx = y (gy - sum(gy y))
 * log_softmax: gx = gy - exp(y) sum(gy) */
static void sm_bwd_task(void *p, int ith, int nth) {
    sm_job *j = p;
    int64_t r0, r1, D = j->D, st = j->inner;
    fmd_split(j->rows, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t b = row_base(j, r);
        const float *y = j->y + b, *g = j->gy + b;
        float *o = j->out + b;
        double s = 0;
        if (j->log) {
            for (int64_t k = 0; k < D; k++) s += g[k * st];
            float sf = (float)s;
            for (int64_t k = 0; k < D; k++) o[k * st] = g[k * st] - expf(y[k * st]) * sf;
        } else {
            for (int64_t k = 0; k < D; k++) s += (double)g[k * st] * y[k * st];
            float sf = (float)s;
            for (int64_t k = 0; k < D; k++) o[k * st] = y[k * st] * (g[k * st] - sf);
        }
    }
}

static void sm_geometry(const fmd_tensor *t, int dim, sm_job *j) {
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < dim; d++) outer *= t->shape[d];
    for (int d = dim + 1; d < t->ndim; d++) inner *= t->shape[d];
    j->D = t->ndim ? t->shape[dim] : 1;
    j->inner = inner;
    j->rows = outer * inner;
}

static int sm_backward(fmd_node *n, fmd_tensor *gy) {
    fmd_tensor *y = n->saved[0];   /* contiguous: made by the forward */
    fmd_tensor *gc = plain_contiguous(gy), *gx = gc ? fmd_empty(y->ndim, y->shape) : NULL;
    int rc = -1;
    if (gx) {
        sm_job j = {0};
        sm_geometry(y, (int)n->iarg[0], &j);
        j.log = (int)n->iarg[1];
        j.y = fmd_data(y); j.gy = fmd_data(gc); j.out = fmd_data(gx);
        if (j.inner > 0) run_rows(sm_bwd_task, &j, fmd_numel(gx));
        rc = fmd_accumulate_grad(n->inputs[0], gx);
    }
    fmd_release(gc); fmd_release(gx);
    return rc;
}

// x is any shape; dim is 0-based (negative counts from the end)
static fmd_tensor *softmax_impl(fmd_tensor *x, int dim, int log) {
    const char *name = log ? "log_softmax" : "softmax";
    int nd = x->ndim ? x->ndim : 1;   /* a 0-dim tensor accepts dim 0 / -1 like PyTorch */
    if (dim < -nd || dim >= nd) {
        char a[128];
        return fmd_fail_null("%s: dim %d out of range for input %s (0..%d or -%d..-1)", name, dim,
                             fmd_shape_str(a, sizeof a, x->ndim, x->shape), nd - 1, nd);
    }
    if (dim < 0) dim += nd;
    if (x->ndim == 0) dim = 0;
    fmd_tensor *xc = plain_contiguous(x), *y = xc ? fmd_empty(x->ndim, x->shape) : NULL;
    if (!y) { fmd_release(xc); return NULL; }
    sm_job j = {0};
    sm_geometry(x, dim, &j);
    j.log = log;
    j.x = fmd_data(xc); j.out = fmd_data(y);
    if (j.inner > 0) run_rows(sm_fwd_task, &j, fmd_numel(y));
    fmd_release(xc);
    if (fmd_needs_grad(1, &x)) {
        fmd_node *n = fmd_node_new(name, sm_backward, 1, &x);
        if (!n) { fmd_release(y); return NULL; }
        n->iarg[0] = dim;
        n->iarg[1] = log;
        n->saved[0] = fmd_alias(y);
        fmd_node_attach(y, n);
    }
    return y;
}

fmd_tensor *fmd_softmax(fmd_tensor *x, int dim) { return softmax_impl(x, dim, 0); }
fmd_tensor *fmd_log_softmax(fmd_tensor *x, int dim) { return softmax_impl(x, dim, 1); }

/* ------------------------------------------------------------ cross_entropy */
typedef struct {
    int64_t N, C;
    const float *x;
    const int64_t *t;
    float *p;        /* (N,C) softmax, kept for backward */
    double *loss;    /* (N) per-row losses */
} ce_job;

static void ce_fwd_task(void *v, int ith, int nth) {
    ce_job *j = v;
    int64_t r0, r1, C = j->C;
    fmd_split(j->N, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * C;
        float *p = j->p + r * C;
        float m = -INFINITY;
        for (int64_t k = 0; k < C; k++) if (x[k] > m) m = x[k];
        if (m == -INFINITY) m = 0;
        double s = 0;
        for (int64_t k = 0; k < C; k++) { double e = exp((double)x[k] - m); p[k] = (float)e; s += e; }
        for (int64_t k = 0; k < C; k++) p[k] = (float)(p[k] / s);
        j->loss[r] = m + log(s) - x[j->t[r]];
    }
}

typedef struct { int64_t N; int64_t t[]; } ce_ctx;   /* class ids */

/* gx (N,C) = g (softmax - onehot(target)) / N */
static int ce_backward(fmd_node *n, fmd_tensor *g) {
    ce_ctx *c = n->ctx;
    fmd_tensor *p = n->saved[0];
    int64_t N = p->shape[0], C = p->shape[1];
    fmd_tensor *gx = fmd_empty(2, p->shape);
    if (!gx) return -1;
    float k = fmd_data(g)[0] / (float)N;
    const float *pd = fmd_data(p);
    float *o = fmd_data(gx);
    for (int64_t i = 0; i < N * C; i++) o[i] = pd[i] * k;
    for (int64_t r = 0; r < N; r++) o[r * C + c->t[r]] -= k;
    int rc = fmd_accumulate_grad(n->inputs[0], gx);
    fmd_release(gx);
    return rc;
}

// logits is (N,C), target is (N) of class ids 0..C-1 stored as floats -> 0-dim mean loss
fmd_tensor *fmd_cross_entropy(fmd_tensor *logits, fmd_tensor *target) {
    char a[128], b[128];
    if (!logits || !target) return fmd_fail_null("cross_entropy: logits and target are required");
    if (logits->ndim != 2)
        return fmd_fail_null("cross_entropy: logits must be 2-D (N,C), got %s",
                             fmd_shape_str(a, sizeof a, logits->ndim, logits->shape));
    int64_t N = logits->shape[0], C = logits->shape[1];
    if (target->ndim != 1 || target->shape[0] != N)
        return fmd_fail_null("cross_entropy: target %s should be [%lld] (one class id per row of logits %s)",
                             fmd_shape_str(a, sizeof a, target->ndim, target->shape), (long long)N,
                             fmd_shape_str(b, sizeof b, logits->ndim, logits->shape));
    if (N == 0 || C == 0)
        return fmd_fail_null("cross_entropy: logits %s are empty", fmd_shape_str(a, sizeof a, 2, logits->shape));
    ce_ctx *c = malloc(sizeof *c + (size_t)N * sizeof(int64_t));
    if (!c) return fmd_fail_null("cross_entropy: out of memory");
    c->N = N;
    /* positions in messages are 1-based, as the Lua user indexes target */
    for (int64_t i = 0; i < N; i++) {
        float v = fmd_data(target)[i * target->stride[0]];
        if (!(v == floorf(v))) {
            free(c);
            return fmd_fail_null("cross_entropy: target %g at position %lld is not an integer class id "
                                 "(expected 0..%lld for %lld classes)",
                                 v, (long long)i + 1, (long long)C - 1, (long long)C);
        }
        if (v < 0 || v >= (float)C) {
            free(c);
            return fmd_fail_null("cross_entropy: target %g at position %lld is out of range 0..%lld for %lld classes",
                                 v, (long long)i + 1, (long long)C - 1, (long long)C);
        }
        c->t[i] = (int64_t)v;
    }
    fmd_tensor *xc = plain_contiguous(logits), *probs = xc ? fmd_empty(2, logits->shape) : NULL;
    fmd_tensor *loss = probs ? fmd_empty(0, NULL) : NULL;
    double *rows = loss ? malloc((size_t)N * sizeof *rows) : NULL;
    if (!rows) {
        if (loss) fmd_fail("cross_entropy: out of memory");
        fmd_release(xc); fmd_release(probs); fmd_release(loss); free(c);
        return NULL;
    }
    ce_job j = {N, C, fmd_data(xc), c->t, fmd_data(probs), rows};
    run_rows(ce_fwd_task, &j, N * C);
    double s = 0;
    for (int64_t i = 0; i < N; i++) s += rows[i];
    fmd_data(loss)[0] = (float)(s / (double)N);
    free(rows);
    fmd_release(xc);
    if (fmd_needs_grad(1, &logits)) {
        fmd_node *n = fmd_node_new("cross_entropy", ce_backward, 1, &logits);
        if (!n) { fmd_release(probs); fmd_release(loss); free(c); return NULL; }
        n->ctx = c;
        n->saved[0] = probs;   /* owned: the softmax, not a view of anything */
        fmd_node_attach(loss, n);
    } else {
        fmd_release(probs);
        free(c);
    }
    return loss;
}

/* ----------------------------------------------------------------- mse_loss */
/* g_input = g 2 (input - target) / n, g_target = -g_input */
static int mse_backward(fmd_node *n, fmd_tensor *g) {
    fmd_tensor *x = n->inputs[0], *t = n->inputs[1];
    fmd_tensor *xc = plain_contiguous(n->saved[0]), *tc = plain_contiguous(n->saved[1]);
    fmd_tensor *gx = NULL, *gt = NULL;
    int rc = -1;
    if (!xc || !tc || !(gx = fmd_empty(xc->ndim, xc->shape))) goto done;
    int64_t cnt = fmd_numel(xc);
    float k = 2.0f * fmd_data(g)[0] / (float)cnt;
    const float *xd = fmd_data(xc), *td = fmd_data(tc);
    float *o = fmd_data(gx);
    for (int64_t i = 0; i < cnt; i++) o[i] = k * (xd[i] - td[i]);
    if (fmd_accumulate_grad(x, gx)) goto done;
    if (t->requires_grad) {
        if (!(gt = fmd_empty(xc->ndim, xc->shape))) goto done;
        float *q = fmd_data(gt);
        for (int64_t i = 0; i < cnt; i++) q[i] = -o[i];
        if (fmd_accumulate_grad(t, gt)) goto done;
    }
    rc = 0;
done:
    fmd_release(xc); fmd_release(tc); fmd_release(gx); fmd_release(gt);
    return rc;
}

// input and target have the same shape -> 0-dim mean of (input - target)^2
fmd_tensor *fmd_mse_loss(fmd_tensor *input, fmd_tensor *target) {
    char a[128], b[128];
    if (!input || !target) return fmd_fail_null("mse_loss: input and target are required");
    if (!fmd_same_shape(input, target))
        return fmd_fail_null("mse_loss: input %s and target %s must have the same shape",
                             fmd_shape_str(a, sizeof a, input->ndim, input->shape),
                             fmd_shape_str(b, sizeof b, target->ndim, target->shape));
    int64_t cnt = fmd_numel(input);
    if (cnt == 0) return fmd_fail_null("mse_loss: input %s is empty", fmd_shape_str(a, sizeof a, input->ndim, input->shape));
    fmd_tensor *xc = plain_contiguous(input), *tc = plain_contiguous(target);
    fmd_tensor *loss = (xc && tc) ? fmd_empty(0, NULL) : NULL;
    if (!loss) { fmd_release(xc); fmd_release(tc); return NULL; }
    const float *xd = fmd_data(xc), *td = fmd_data(tc);
    double s = 0;
    for (int64_t i = 0; i < cnt; i++) { double d = (double)xd[i] - td[i]; s += d * d; }
    fmd_data(loss)[0] = (float)(s / (double)cnt);
    fmd_release(xc); fmd_release(tc);
    fmd_tensor *ins[2] = {input, target};
    if (fmd_needs_grad(2, ins)) {
        fmd_node *n = fmd_node_new("mse_loss", mse_backward, 2, ins);
        if (!n) { fmd_release(loss); return NULL; }
        n->saved[0] = fmd_alias(input);
        n->saved[1] = fmd_alias(target);
        fmd_node_attach(loss, n);
    }
    return loss;
}
