/* nn_dropout.c - dropout, forward and backward.
 *
 * Training with 0 < p < 1: each element is kept with probability 1 - p and
 * scaled by 1 / (1 - p) (PyTorch's inverted dropout), so y = x * mask with
 * mask in {0, 1/(1-p)}; backward is gx = gy * mask. The mask is drawn from
 * the global generator serially, element by element in row-major order and
 * before any parallel work, so a fmd.manual_seed gives the same mask for any
 * thread count. p = 1 zeroes everything; eval or p = 0 is the identity (the
 * input itself is returned, like PyTorch). */
#include "fmd_impl.h"

#include <math.h>
#include <stdlib.h>

typedef struct { int64_t n; const float *a, *m; float *o; } mul_job;

static void mul_task(void *p, int ith, int nth) {
    mul_job *j = p;
    int64_t b, e;
    fmd_split(j->n, ith, nth, &b, &e);
    for (int64_t i = b; i < e; i++) j->o[i] = j->a[i] * j->m[i];
}

/* out = a * m elementwise; all contiguous, same numel */
static void mul_into(float *out, const float *a, const float *m, int64_t n) {
    mul_job j = {n, a, m, out};
    if (n >= (1 << 16)) fmd_parallel(mul_task, &j);
    else mul_task(&j, 0, 1);
}

static int dropout_backward(fmd_node *nd, fmd_tensor *gy) {
    fmd_tensor *mask = nd->saved[0];
    fmd_tensor *gc = fmd_is_contiguous(gy) ? fmd_retain(gy) : fmd_empty(gy->ndim, gy->shape);
    if (gc && gc != gy && fmd_copy_(gc, gy)) { fmd_release(gc); return -1; }
    fmd_tensor *gx = gc ? fmd_empty(mask->ndim, mask->shape) : NULL;
    int rc = -1;
    if (gx) {
        mul_into(fmd_data(gx), fmd_data(gc), fmd_data(mask), fmd_numel(gx));
        rc = fmd_accumulate_grad(nd->inputs[0], gx);
    }
    fmd_release(gc); fmd_release(gx);
    return rc;
}

// x is any shape -> same shape
fmd_tensor *fmd_dropout(fmd_tensor *x, float p, int training) {
    if (!x) return fmd_fail_null("dropout: input is required");
    if (!(p >= 0 && p <= 1)) return fmd_fail_null("dropout: probability p must be in [0, 1], got %g", p);
    if (!training || p == 0) return fmd_retain(x);
    fmd_tensor *mask = fmd_empty(x->ndim, x->shape), *y = mask ? fmd_empty(x->ndim, x->shape) : NULL;
    fmd_tensor *xc = NULL;
    if (!y) goto fail;
    if (fmd_is_contiguous(x)) xc = fmd_retain(x);
    else if (!(xc = fmd_empty(x->ndim, x->shape)) || fmd_copy_(xc, x)) goto fail;
    int64_t n = fmd_numel(x);
    float *m = fmd_data(mask);
    if (p == 1) {
        for (int64_t i = 0; i < n; i++) m[i] = 0;
    } else {
        double keep = 1.0 - (double)p;
        float scale = (float)(1.0 / keep);
        for (int64_t i = 0; i < n; i++) m[i] = fmd_rng_uniform() < keep ? scale : 0.0f;
    }
    mul_into(fmd_data(y), fmd_data(xc), m, n);
    fmd_release(xc);
    if (fmd_needs_grad(1, &x)) {
        fmd_node *nd = fmd_node_new("dropout", dropout_backward, 1, &x);
        if (!nd) { fmd_release(mask); fmd_release(y); return NULL; }
        nd->saved[0] = mask;   /* owned */
        fmd_node_attach(y, nd);
    } else {
        fmd_release(mask);
    }
    return y;
fail:
    fmd_release(mask); fmd_release(y); fmd_release(xc);
    return NULL;
}
