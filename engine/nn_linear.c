/* nn_linear.c - linear (fully connected) layer, forward and backward.
 *
 * y = x @ w^T + b with x (N,in), w (out,in), b (out) or NULL; y is (N,out).
 * Every product is one fmd_sgemm call that reads the operands where they are
 * (a 2-D view whose rows or columns are unit-stride goes to BLAS with a
 * leading dimension and a transpose flag), so w^T is never materialised:
 *   forward  y  = x  @ w^T   (N x in) (in x out)
 *   backward gx = gy @ w     (N x out) (out x in)
 *            gw = gy^T @ x   (out x N) (N x in)
 *            gb = sum over N of gy
 * fmd_sgemm splits the larger side of each product over the thread pool. */
#include "fmd_impl.h"

#include <stdlib.h>
#include <string.h>

/* a 2-D view as a BLAS operand: data, leading dimension and whether BLAS
 * must read it transposed. Views with neither unit-stride rows nor columns
 * are copied to a contiguous tensor first (*hold keeps that copy alive). */
typedef struct { const float *p; int64_t ld; int trans; } blas_mat;

static int as_blas(fmd_tensor *t, blas_mat *m, fmd_tensor **hold) {
    int64_t r = t->shape[0], c = t->shape[1], s0 = t->stride[0], s1 = t->stride[1];
    if (r <= 1) s0 = c > 1 ? c : 1;   /* the stride of a size-1 dim is never used */
    if (c <= 1) s1 = 1;
    *hold = NULL;
    if (s1 == 1 && s0 >= (c > 1 ? c : 1)) {          /* row-major with ld s0 */
        m->p = fmd_data(t); m->ld = s0; m->trans = 0;
    } else if (s0 == 1 && s1 >= (r > 1 ? r : 1)) {   /* a transposed view: column-major */
        m->p = fmd_data(t); m->ld = s1; m->trans = 1;
    } else {
        /* plain copy: fmd_clone would record a graph node */
        *hold = fmd_empty(2, t->shape);
        if (!*hold || fmd_copy_(*hold, t)) { fmd_release(*hold); *hold = NULL; return -1; }
        m->p = fmd_data(*hold); m->ld = c > 1 ? c : 1; m->trans = 0;
    }
    return 0;
}

static int linear_check(const fmd_tensor *x, const fmd_tensor *w, const fmd_tensor *b) {
    char a[128], c[128];
    if (x->ndim != 2)
        return fmd_fail("linear: input must be 2-D (N,in), got %s (flatten it first)",
                        fmd_shape_str(a, sizeof a, x->ndim, x->shape));
    if (w->ndim != 2)
        return fmd_fail("linear: weight must be 2-D (out,in), got %s", fmd_shape_str(a, sizeof a, w->ndim, w->shape));
    if (x->shape[1] != w->shape[1])
        return fmd_fail("linear: input %s has %lld features, weight %s expects %lld",
                        fmd_shape_str(a, sizeof a, x->ndim, x->shape), (long long)x->shape[1],
                        fmd_shape_str(c, sizeof c, w->ndim, w->shape), (long long)w->shape[1]);
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return fmd_fail("linear: bias %s should be [%lld] (one per output of weight %s)",
                        fmd_shape_str(a, sizeof a, b->ndim, b->shape), (long long)w->shape[0],
                        fmd_shape_str(c, sizeof c, w->ndim, w->shape));
    return 0;
}

/* dst (M x N, contiguous) = op(A) op(B) + beta * dst */
static void gemm(const blas_mat *A, int tA, const blas_mat *B, int tB, int64_t M, int64_t N, int64_t K, float beta,
                 float *dst) {
    fmd_sgemm(A->trans ^ tA, B->trans ^ tB, M, N, K, 1.0f, A->p, A->ld, B->p, B->ld, beta, dst, N);
}

/* gy is (N,out); x (N,in), w (out,in) are the saved aliases */
static int linear_backward(fmd_node *n, fmd_tensor *gy) {
    fmd_tensor *x = n->inputs[0], *w = n->inputs[1], *b = n->inputs[2];
    fmd_tensor *xs = n->saved[0], *ws = n->saved[1];
    int64_t N = xs->shape[0], in = xs->shape[1], out = ws->shape[0];
    fmd_tensor *gc = fmd_contiguous(gy), *hx = NULL, *hw = NULL, *gx = NULL, *gw = NULL, *gb = NULL;
    blas_mat G, X, W;
    int rc = -1;
    if (!gc) return -1;
    G = (blas_mat){fmd_data(gc), out > 0 ? out : 1, 0};
    if (x && x->requires_grad) {           /* gx (N,in) = gy (N,out) @ w (out,in) */
        if (as_blas(ws, &W, &hw) || !(gx = fmd_empty(2, xs->shape))) goto done;
        gemm(&G, 0, &W, 0, N, in, out, 0.0f, fmd_data(gx));
        if (fmd_accumulate_grad(x, gx)) goto done;
    }
    if (w->requires_grad) {                /* gw (out,in) = gy^T (out,N) @ x (N,in) */
        if (as_blas(xs, &X, &hx)) goto done;
        fmd_tensor *acc = w->grad;
        if (acc && fmd_is_contiguous(acc) && fmd_same_shape(acc, w)) {
            /* accumulate straight into the existing .grad (beta = 1): for a
             * big layer this saves a weight-sized temporary and a pass */
            gemm(&G, 1, &X, 0, out, in, N, 1.0f, fmd_data(acc));
        } else {
            if (!(gw = fmd_empty(2, ws->shape))) goto done;
            gemm(&G, 1, &X, 0, out, in, N, 0.0f, fmd_data(gw));
            if (fmd_accumulate_grad(w, gw)) goto done;   /* keeps gw itself when .grad is empty */
        }
    }
    if (b && b->requires_grad) {           /* gb (out) = column sums of gy, in double */
        if (!(gb = fmd_empty(1, &out))) goto done;
        double *s = calloc((size_t)(out > 0 ? out : 1), sizeof *s);
        if (!s) { fmd_fail("linear: out of memory in backward"); goto done; }
        const float *g = fmd_data(gc);
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < out; j++) s[j] += g[i * out + j];
        float *d = fmd_data(gb);
        for (int64_t j = 0; j < out; j++) d[j] = (float)s[j];
        free(s);
        if (fmd_accumulate_grad(b, gb)) goto done;
    }
    rc = 0;
done:
    fmd_release(gc); fmd_release(hx); fmd_release(hw); fmd_release(gx); fmd_release(gw); fmd_release(gb);
    return rc;
}

// x is (N,in), w is (out,in), b is (out) or NULL -> (N,out)
fmd_tensor *fmd_linear(fmd_tensor *x, fmd_tensor *w, fmd_tensor *b) {
    if (!x || !w) return fmd_fail_null("linear: input and weight are required");
    if (linear_check(x, w, b)) return NULL;
    int64_t N = x->shape[0], in = x->shape[1], out = w->shape[0];
    int64_t shape[2] = {N, out};
    fmd_tensor *y = fmd_empty(2, shape), *hx = NULL, *hw = NULL;
    blas_mat X, W;
    if (!y || as_blas(x, &X, &hx) || as_blas(w, &W, &hw)) goto fail;
    float *yd = fmd_data(y);
    float beta = 0.0f;
    if (b && N > 0) {   /* start from the bias rows and let the GEMM add onto them */
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < out; j++) yd[i * out + j] = fmd_data(b)[j * b->stride[0]];
        beta = 1.0f;
    }
    gemm(&X, 0, &W, 1, N, out, in, beta, yd);
    fmd_release(hx); fmd_release(hw);
    fmd_tensor *ins[3] = {x, w, b};
    if (fmd_needs_grad(3, ins)) {
        fmd_node *n = fmd_node_new("linear", linear_backward, 3, ins);
        if (!n) { fmd_release(y); return NULL; }
        n->saved[0] = fmd_alias(x);
        n->saved[1] = fmd_alias(w);
        fmd_node_attach(y, n);
    }
    return y;
fail:
    fmd_release(y); fmd_release(hx); fmd_release(hw);
    return NULL;
}
