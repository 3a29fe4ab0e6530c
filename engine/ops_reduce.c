/* ops_reduce.c - sum, mean, max, min, argmax over all elements or one dim;
 * and matmul. Each forward with its backward below it. */
#include "fmd_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* a contiguous tensor viewed as (outer, n, inner) around dim */
static void split3(const fmd_tensor *t, int dim, int64_t *outer, int64_t *n, int64_t *inner) {
    *outer = 1; *inner = 1;
    for (int i = 0; i < dim; i++) *outer *= t->shape[i];
    for (int i = dim + 1; i < t->ndim; i++) *inner *= t->shape[i];
    *n = t->shape[dim];
}

static int reduced_shape(const fmd_tensor *t, int dim, int keepdim, int64_t *shape) {
    int nd = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (i == dim) { if (keepdim) shape[nd++] = 1; }
        else shape[nd++] = t->shape[i];
    }
    return nd;
}

static int check_dim(const char *op, const fmd_tensor *t, int dim) {
    char a[128];
    if (dim < -1 || dim >= t->ndim || (dim >= 0 && t->ndim == 0))
        return fmd_fail("%s: dim %d out of range for %s", op, dim + 1, fmd_shape_str(a, sizeof a, t->ndim, t->shape));
    return 0;
}

/* ------------------------------------------------------------- sum, mean */
/* g (reduced shape) expanded back to the input shape, times scale */
static int sum_backward(fmd_node *n, fmd_tensor *g) {
    fmd_tensor *in = n->inputs[0];
    int dim = (int)n->iarg[0], keepdim = (int)n->iarg[1];
    float scale = n->farg[0];
    fmd_tensor *gv = NULL;
    if (dim >= 0 && !keepdim) {   /* put the reduced dim back as size 1 */
        int64_t shape[FMD_MAX_DIMS];
        reduced_shape(in, dim, 1, shape);
        fmd_tensor *gc = fmd_contiguous(g);
        gv = gc ? fmd_view(gc, in->ndim, shape) : NULL;
        fmd_release(gc);
    } else if (dim < 0) {
        int64_t ones[FMD_MAX_DIMS];
        for (int i = 0; i < in->ndim; i++) ones[i] = 1;
        fmd_tensor *gc = fmd_contiguous(g);
        gv = gc ? fmd_view(gc, in->ndim, ones) : NULL;
        fmd_release(gc);
    } else gv = fmd_retain(g);
    if (!gv) return -1;
    fmd_tensor *full = fmd_empty(in->ndim, in->shape);
    int rc = full ? fmd_copy_(full, gv) : -1;
    if (rc == 0 && scale != 1.0f) {
        float *d = fmd_data(full);
        for (int64_t i = 0, k = fmd_numel(full); i < k; i++) d[i] *= scale;
    }
    if (rc == 0) rc = fmd_accumulate_grad(in, full);
    fmd_release(gv); fmd_release(full);
    return rc;
}

static fmd_tensor *sum_impl(const char *op, fmd_tensor *a, int dim, int keepdim, int mean) {
    if (check_dim(op, a, dim)) return NULL;
    fmd_tensor *ac = fmd_contiguous(a);
    if (!ac) return NULL;
    fmd_tensor *out;
    int64_t count;
    if (dim < 0) {
        out = fmd_empty(0, NULL);
        count = fmd_numel(a);
        if (out) {
            double s = 0;
            const float *d = fmd_data(ac);
            for (int64_t i = 0; i < count; i++) s += d[i];
            fmd_data(out)[0] = (float)(mean ? (count ? s / (double)count : NAN) : s);
        }
    } else {
        int64_t shape[FMD_MAX_DIMS], outer, n, inner;
        int nd = reduced_shape(a, dim, keepdim, shape);
        split3(a, dim, &outer, &n, &inner);
        count = n;
        out = fmd_empty(nd, shape);
        if (out) {
            const float *d = fmd_data(ac);
            float *o = fmd_data(out);
            double *acc = calloc((size_t)(inner ? inner : 1), sizeof(double));
            if (!acc) { fmd_release(out); fmd_release(ac); return fmd_fail_null("%s: out of memory", op); }
            for (int64_t i = 0; i < outer; i++) {
                memset(acc, 0, (size_t)inner * sizeof(double));
                for (int64_t j = 0; j < n; j++) {
                    const float *row = d + (i * n + j) * inner;
                    for (int64_t k = 0; k < inner; k++) acc[k] += row[k];
                }
                for (int64_t k = 0; k < inner; k++)
                    o[i * inner + k] = (float)(mean ? (n ? acc[k] / (double)n : NAN) : acc[k]);
            }
            free(acc);
        }
    }
    fmd_release(ac);
    if (out && fmd_needs_grad(1, &a)) {
        fmd_node *nd = fmd_node_new(op, sum_backward, 1, &a);
        if (!nd) { fmd_release(out); return NULL; }
        nd->iarg[0] = dim; nd->iarg[1] = keepdim;
        nd->farg[0] = mean ? 1.0f / (float)(count ? count : 1) : 1.0f;
        fmd_node_attach(out, nd);
    }
    return out;
}

fmd_tensor *fmd_sum(fmd_tensor *a, int dim, int keepdim) { return sum_impl("sum", a, dim, keepdim, 0); }
fmd_tensor *fmd_mean(fmd_tensor *a, int dim, int keepdim) { return sum_impl("mean", a, dim, keepdim, 1); }

/* -------------------------------------------------------------- max, min */
/* gradient flows to the chosen element of each slice (saved[0] = indices) */
static int extreme_backward(fmd_node *n, fmd_tensor *g) {
    fmd_tensor *in = n->inputs[0], *idx = n->saved[0];
    int dim = (int)n->iarg[0];
    fmd_tensor *gi = fmd_zeros(in->ndim, in->shape), *gc = fmd_contiguous(g);
    if (!gi || !gc) { fmd_release(gi); fmd_release(gc); return -1; }
    float *d = fmd_data(gi);
    const float *gs = fmd_data(gc), *is = fmd_data(idx);
    if (dim < 0) d[(int64_t)is[0]] += gs[0];
    else {
        int64_t outer, nn, inner;
        split3(in, dim, &outer, &nn, &inner);
        for (int64_t i = 0; i < outer; i++)
            for (int64_t k = 0; k < inner; k++)
                d[(i * nn + (int64_t)is[i * inner + k]) * inner + k] += gs[i * inner + k];
    }
    int rc = fmd_accumulate_grad(in, gi);
    fmd_release(gi); fmd_release(gc);
    return rc;
}

static fmd_tensor *extreme(const char *op, fmd_tensor *a, int dim, int keepdim, int is_max, fmd_tensor **indices) {
    char s[128];
    if (indices) *indices = NULL;
    if (check_dim(op, a, dim)) return NULL;
    if (fmd_numel(a) == 0 || (dim >= 0 && a->shape[dim] == 0))
        return fmd_fail_null("%s: cannot reduce an empty tensor %s", op, fmd_shape_str(s, sizeof s, a->ndim, a->shape));
    fmd_tensor *ac = fmd_contiguous(a);
    if (!ac) return NULL;
    int64_t shape[FMD_MAX_DIMS], outer, n, inner;
    int nd = 0;
    if (dim < 0) { outer = 1; n = fmd_numel(a); inner = 1; }
    else { nd = reduced_shape(a, dim, keepdim, shape); split3(a, dim, &outer, &n, &inner); }
    fmd_tensor *out = fmd_empty(nd, shape), *idx = fmd_empty(nd, shape);
    if (!out || !idx) { fmd_release(out); fmd_release(idx); fmd_release(ac); return NULL; }
    const float *d = fmd_data(ac);
    float *o = fmd_data(out), *ix = fmd_data(idx);
    for (int64_t i = 0; i < outer; i++)
        for (int64_t k = 0; k < inner; k++) {
            const float *p = d + i * n * inner + k;
            float best = p[0];
            int64_t bi = 0;
            for (int64_t j = 1; j < n; j++) {
                float v = p[j * inner];
                if (isnan(best)) break;   /* NaN propagates, like torch */
                if (isnan(v) || (is_max ? v > best : v < best)) { best = v; bi = j; }
            }
            o[i * inner + k] = best;
            ix[i * inner + k] = (float)bi;
        }
    fmd_release(ac);
    if (fmd_needs_grad(1, &a)) {
        fmd_node *nn_ = fmd_node_new(op, extreme_backward, 1, &a);
        if (!nn_) { fmd_release(out); fmd_release(idx); return NULL; }
        nn_->iarg[0] = dim;
        nn_->saved[0] = fmd_retain(idx);
        fmd_node_attach(out, nn_);
    }
    if (indices) *indices = idx;
    else fmd_release(idx);
    return out;
}

fmd_tensor *fmd_max(fmd_tensor *a, int dim, int keepdim, fmd_tensor **indices) {
    return extreme("max", a, dim, keepdim, 1, indices);
}
fmd_tensor *fmd_min(fmd_tensor *a, int dim, int keepdim, fmd_tensor **indices) {
    return extreme("min", a, dim, keepdim, 0, indices);
}

fmd_tensor *fmd_argmax(fmd_tensor *a, int dim, int keepdim) {
    int prev = fmd_set_grad_enabled(0);
    fmd_tensor *idx = NULL, *v = extreme("argmax", a, dim, keepdim, 1, &idx);
    fmd_set_grad_enabled(prev);
    fmd_release(v);
    return v ? idx : NULL;
}

/* ---------------------------------------------------------------- matmul */
/* 2-D a (M,K) @ b (K,N) or batched (B,M,K) @ (B,N,K); both contiguous */
static fmd_tensor *mm_raw(fmd_tensor *a, fmd_tensor *b) {
    int batched = a->ndim == 3;
    int64_t B = batched ? a->shape[0] : 1;
    int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1], N = b->shape[b->ndim - 1];
    int64_t shape[3] = {B, M, N};
    fmd_tensor *out = batched ? fmd_empty(3, shape) : fmd_empty(2, shape + 1);
    if (!out) return NULL;
    for (int64_t i = 0; i < B; i++)
        fmd_sgemm(0, 0, M, N, K, 1.0f, fmd_data(a) + i * M * K, K, fmd_data(b) + i * K * N, N, 0.0f,
                  fmd_data(out) + i * M * N, N);
    return out;
}

static int matmul_backward(fmd_node *n, fmd_tensor *g) {
    fmd_tensor *a = n->inputs[0], *b = n->inputs[1];
    fmd_tensor *av = n->saved[0], *bv = n->saved[1];   /* as matrices */
    int d = av->ndim;
    int64_t gshape[3];
    for (int i = 0; i < d - 1; i++) gshape[i] = av->shape[i];
    gshape[d - 1] = bv->shape[d - 1];
    fmd_tensor *g2 = fmd_reshape(g, d, gshape);
    int rc = g2 ? 0 : -1;
    if (rc == 0 && a->requires_grad) {   /* g @ b^T */
        fmd_tensor *bt = fmd_transpose(bv, d - 2, d - 1);
        fmd_tensor *ga = bt ? fmd_matmul(g2, bt) : NULL;
        fmd_tensor *gr = ga ? fmd_reshape(ga, a->ndim, a->shape) : NULL;
        rc = gr ? fmd_accumulate_grad(a, gr) : -1;
        fmd_release(bt); fmd_release(ga); fmd_release(gr);
    }
    if (rc == 0 && b->requires_grad) {   /* a^T @ g */
        fmd_tensor *at = fmd_transpose(av, d - 2, d - 1);
        fmd_tensor *gb = at ? fmd_matmul(at, g2) : NULL;
        fmd_tensor *gr = gb ? fmd_reshape(gb, b->ndim, b->shape) : NULL;
        rc = gr ? fmd_accumulate_grad(b, gr) : -1;
        fmd_release(at); fmd_release(gb); fmd_release(gr);
    }
    fmd_release(g2);
    return rc;
}

/* an alias of t shaped as a matrix: vectors become (1,K) or (K,1) */
static fmd_tensor *as_matrix(fmd_tensor *t, int row) {
    fmd_tensor *al = fmd_alias(t);
    if (!al || t->ndim != 1) return al;
    int64_t s[2] = {row ? 1 : t->shape[0], row ? t->shape[0] : 1};
    fmd_tensor *v = fmd_reshape(al, 2, s);
    fmd_release(al);
    return v;
}

fmd_tensor *fmd_matmul(fmd_tensor *a, fmd_tensor *b) {
    char x[128], y[128];
    if (a->ndim < 1 || a->ndim > 3 || b->ndim < 1 || b->ndim > 3 || (a->ndim == 3) != (b->ndim == 3))
        return fmd_fail_null("matmul: supports 1-D and 2-D operands or two 3-D batches, got %s and %s",
                             fmd_shape_str(x, sizeof x, a->ndim, a->shape), fmd_shape_str(y, sizeof y, b->ndim, b->shape));
    int64_t ka = a->shape[a->ndim - 1], kb = b->shape[b->ndim == 1 ? 0 : b->ndim - 2];
    if (ka != kb || (a->ndim == 3 && a->shape[0] != b->shape[0]))
        return fmd_fail_null("matmul: %s and %s do not match (%lld ~= %lld)",
                             fmd_shape_str(x, sizeof x, a->ndim, a->shape), fmd_shape_str(y, sizeof y, b->ndim, b->shape),
                             (long long)ka, (long long)kb);
    /* promote vectors to matrices, compute, then drop the added dims */
    int prev = fmd_set_grad_enabled(0);
    int64_t sa[3] = {1, a->shape[0], 1}, sb[3] = {b->shape[0], 1, 1};
    fmd_tensor *ac = fmd_contiguous(a), *bc = fmd_contiguous(b);
    fmd_tensor *a2 = NULL, *b2 = NULL, *o = NULL, *out = NULL;
    if (ac && bc) {
        a2 = a->ndim == 1 ? fmd_view(ac, 2, sa) : fmd_retain(ac);
        b2 = b->ndim == 1 ? fmd_view(bc, 2, sb) : fmd_retain(bc);
        o = (a2 && b2) ? mm_raw(a2, b2) : NULL;
    }
    if (o) {
        int64_t shape[3];
        int nd = 0;
        if (a->ndim == 3) shape[nd++] = a->shape[0];
        if (a->ndim >= 2) shape[nd++] = a->shape[a->ndim - 2];
        if (b->ndim >= 2) shape[nd++] = b->shape[b->ndim - 1];
        out = fmd_view(o, nd, shape);
    }
    fmd_release(ac); fmd_release(bc); fmd_release(a2); fmd_release(b2); fmd_release(o);
    fmd_set_grad_enabled(prev);
    fmd_tensor *in[2] = {a, b};
    if (out && fmd_needs_grad(2, in)) {
        fmd_node *n = fmd_node_new("matmul", matmul_backward, 2, in);
        if (!n) { fmd_release(out); return NULL; }
        /* saved operands as matrices so backward is plain mm */
        n->saved[0] = as_matrix(a, 1);
        n->saved[1] = as_matrix(b, 0);
        fmd_node_attach(out, n);
    }
    return out;
}
