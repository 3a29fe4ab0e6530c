/* ops_elementwise.c - broadcasting binary ops, scalar ops, unary maths,
 * clamp and comparisons; each forward with its backward below it. */
#include "fmd_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ iteration */
/* out[i] = f(a[i], b[i]) over same-shaped strided views (b may be NULL) */
typedef float (*bin_fn)(float, float, float);   /* third arg: a parameter */

typedef struct {
    int64_t n;
    float *o; const float *a, *b;
    float (*f)(float, float, float);
    float p;
} flat_job;

static float f_add(float a, float b, float p);
static float f_mul(float a, float b, float p);
static float f_adds(float a, float b, float p);
static float f_muls(float a, float b, float p);
static float f_relu(float a, float b, float p);

/* the ops a network runs on every activation get loops without a call per
 * element, which the compiler vectorises */
FMD_SIMD_CLONES
static void flat_range(const flat_job *j, int64_t b, int64_t e) {
    float *restrict o = j->o;
    const float *restrict a = j->a, *restrict y = j->b;
    const float p = j->p;
    if (j->f == f_relu) for (int64_t i = b; i < e; i++) o[i] = a[i] > 0 ? a[i] : 0;
    else if (j->f == f_add && y) for (int64_t i = b; i < e; i++) o[i] = a[i] + y[i];
    else if (j->f == f_mul && y) for (int64_t i = b; i < e; i++) o[i] = a[i] * y[i];
    else if (j->f == f_adds) for (int64_t i = b; i < e; i++) o[i] = a[i] + p;
    else if (j->f == f_muls) for (int64_t i = b; i < e; i++) o[i] = a[i] * p;
    else if (y) for (int64_t i = b; i < e; i++) o[i] = j->f(a[i], y[i], p);
    else for (int64_t i = b; i < e; i++) o[i] = j->f(a[i], 0, p);
}

static void flat_task(void *ctx, int ith, int nth) {
    flat_job *j = ctx;
    int64_t b, e;
    fmd_split(j->n, ith, nth, &b, &e);
    flat_range(j, b, e);
}

static void strided_apply(float *o, const int64_t *os, const float *a, const int64_t *as, const float *b,
                          const int64_t *bs, const int64_t *shape, int ndim, bin_fn f, float p) {
    if (ndim == 0) { *o = f(*a, b ? *b : 0, p); return; }
    if (ndim == 1) {
        for (int64_t i = 0; i < shape[0]; i++) o[i * os[0]] = f(a[i * as[0]], b ? b[i * bs[0]] : 0, p);
        return;
    }
    for (int64_t i = 0; i < shape[0]; i++)
        strided_apply(o + i * os[0], os + 1, a + i * as[0], as + 1, b ? b + i * bs[0] : NULL, bs + 1, shape + 1,
                      ndim - 1, f, p);
}

/* out (contiguous, shape of a) = f(a, b); a and b already same shape */
static void apply(fmd_tensor *out, const fmd_tensor *a, const fmd_tensor *b, bin_fn f, float p) {
    int64_t n = fmd_numel(out);
    if (fmd_is_contiguous(a) && (!b || fmd_is_contiguous(b))) {
        flat_job j = {n, fmd_data(out), fmd_data(a), b ? fmd_data(b) : NULL, f, p};
        if (n >= 1 << 16) fmd_parallel(flat_task, &j);
        else flat_task(&j, 0, 1);
        return;
    }
    strided_apply(fmd_data(out), out->stride, fmd_data(a), a->stride, b ? fmd_data(b) : NULL, b ? b->stride : NULL,
                  out->shape, out->ndim, f, p);
}

static int broadcast_shape(const char *op, const fmd_tensor *a, const fmd_tensor *b, int *ndim, int64_t *shape) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < nd; i++) {
        int ia = a->ndim - nd + i, ib = b->ndim - nd + i;
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char x[128], y[128];
            return fmd_fail("%s: shapes %s and %s do not broadcast (dim %d: %lld vs %lld)", op,
                            fmd_shape_str(x, sizeof x, a->ndim, a->shape), fmd_shape_str(y, sizeof y, b->ndim, b->shape),
                            i + 1, (long long)sa, (long long)sb);
        }
        shape[i] = sa == 1 ? sb : sa;
    }
    *ndim = nd;
    return 0;
}

/* ---------------------------------------------------------------- binary */
static float f_add(float a, float b, float p) { return a + b; }
static float f_sub(float a, float b, float p) { return a - b; }
static float f_mul(float a, float b, float p) { return a * b; }
static float f_div(float a, float b, float p) { return a / b; }
static float f_pow(float a, float b, float p) { return powf(a, b); }
static float f_max(float a, float b, float p) { return a >= b || isnan(a) ? a : b; }
static float f_min(float a, float b, float p) { return a <= b || isnan(a) ? a : b; }
static const bin_fn bin_fns[] = {f_add, f_sub, f_mul, f_div, f_pow, f_max, f_min};
static const char *bin_names[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum"};

static fmd_tensor *binary_raw(fmd_binop op, fmd_tensor *a, fmd_tensor *b) {
    int nd;
    int64_t shape[FMD_MAX_DIMS];
    if (broadcast_shape(bin_names[op], a, b, &nd, shape)) return NULL;
    fmd_tensor *ea = fmd_expand(a, nd, shape), *eb = fmd_expand(b, nd, shape);
    fmd_tensor *out = (ea && eb) ? fmd_empty(nd, shape) : NULL;
    if (out) apply(out, ea, eb, bin_fns[op], 0);
    fmd_release(ea); fmd_release(eb);
    return out;
}

static float f_ge_mask(float a, float b, float p) { return a >= b || isnan(a) ? 1.0f : 0.0f; }
static float f_le_mask(float a, float b, float p) { return a <= b || isnan(a) ? 1.0f : 0.0f; }

static int binary_backward(fmd_node *n, fmd_tensor *g) {
    fmd_tensor *a = n->inputs[0], *b = n->inputs[1], *av = n->saved[0], *bv = n->saved[1];
    fmd_tensor *ga = NULL, *gb = NULL, *t1 = NULL, *t2 = NULL;
    int rc = -1;
    switch ((fmd_binop)n->iarg[0]) {
    case FMD_ADD: ga = fmd_retain(g); gb = fmd_retain(g); break;
    case FMD_SUB: ga = fmd_retain(g); gb = fmd_unary(FMD_NEG, g); break;
    case FMD_MUL:
        if (a->requires_grad) ga = fmd_mul(g, bv);
        if (b->requires_grad) gb = fmd_mul(g, av);
        break;
    case FMD_DIV:
        if (a->requires_grad) ga = fmd_div(g, bv);
        if (b->requires_grad) {   /* -g a / b^2 */
            t1 = fmd_mul(g, av); t2 = fmd_mul(bv, bv);
            fmd_tensor *q = (t1 && t2) ? fmd_div(t1, t2) : NULL;
            gb = q ? fmd_unary(FMD_NEG, q) : NULL;
            fmd_release(q);
        }
        break;
    case FMD_POW_T: {
        fmd_tensor *out = n->saved[2];   /* a^b */
        if (a->requires_grad) {          /* g b a^(b-1) = g b out / a */
            t1 = fmd_mul(g, bv);
            fmd_tensor *q = t1 ? fmd_mul(t1, out) : NULL;
            ga = q ? fmd_div(q, av) : NULL;
            fmd_release(q);
        }
        if (b->requires_grad) {          /* g out log(a) */
            t2 = fmd_unary(FMD_LOG, av);
            fmd_tensor *q = t2 ? fmd_mul(g, out) : NULL;
            gb = q ? fmd_mul(q, t2) : NULL;
            fmd_release(q);
        }
        break;
    }
    case FMD_MAXIMUM: case FMD_MINIMUM: {
        int is_max = n->iarg[0] == FMD_MAXIMUM;
        fmd_tensor *ea, *eb;
        int nd; int64_t shape[FMD_MAX_DIMS];
        if (broadcast_shape("maximum", av, bv, &nd, shape)) break;
        ea = fmd_expand(av, nd, shape); eb = fmd_expand(bv, nd, shape);
        t1 = fmd_empty(nd, shape);
        if (!ea || !eb || !t1) { fmd_release(ea); fmd_release(eb); break; }
        apply(t1, ea, eb, is_max ? f_ge_mask : f_le_mask, 0);   /* 1 where a wins */
        fmd_release(ea); fmd_release(eb);
        ga = fmd_mul(g, t1);
        t2 = fmd_rsub_scalar(t1, 1.0f);
        gb = t2 ? fmd_mul(g, t2) : NULL;
        break;
    }
    }
    if ((a->requires_grad && !ga) || (b->requires_grad && !gb)) goto done;
    rc = 0;
    if (ga) rc = fmd_accumulate_grad_reduced(a, ga);
    if (rc == 0 && gb) rc = fmd_accumulate_grad_reduced(b, gb);
done:
    fmd_release(ga); fmd_release(gb); fmd_release(t1); fmd_release(t2);
    return rc;
}

fmd_tensor *fmd_binary(fmd_binop op, fmd_tensor *a, fmd_tensor *b) {
    fmd_tensor *out = binary_raw(op, a, b);
    fmd_tensor *in[2] = {a, b};
    if (out && fmd_needs_grad(2, in)) {
        fmd_node *n = fmd_node_new(bin_names[op], binary_backward, 2, in);
        if (!n) { fmd_release(out); return NULL; }
        n->iarg[0] = op;
        if (op != FMD_ADD && op != FMD_SUB) { n->saved[0] = fmd_alias(a); n->saved[1] = fmd_alias(b); }
        if (op == FMD_POW_T) n->saved[2] = fmd_alias(out);
        fmd_node_attach(out, n);
    }
    return out;
}

fmd_tensor *fmd_add(fmd_tensor *a, fmd_tensor *b) { return fmd_binary(FMD_ADD, a, b); }
fmd_tensor *fmd_mul(fmd_tensor *a, fmd_tensor *b) { return fmd_binary(FMD_MUL, a, b); }
fmd_tensor *fmd_div(fmd_tensor *a, fmd_tensor *b) { return fmd_binary(FMD_DIV, a, b); }

/* ------------------------------------------------------- scalar and unary */
/* one kind enum covers scalar ops and unary maths so that they share the
 * node layout: iarg[0] = kind, farg[0] = scalar */
enum { K_ADDS = 100, K_MULS, K_RSUBS, K_RDIVS, K_POWS, K_CLAMP };

static float f_adds(float a, float b, float p) { return a + p; }
static float f_muls(float a, float b, float p) { return a * p; }
static float f_rsubs(float a, float b, float p) { return p - a; }
static float f_rdivs(float a, float b, float p) { return p / a; }
static float f_pows(float a, float b, float p) { return p == 2.0f ? a * a : powf(a, p); }
static float f_neg(float a, float b, float p) { return -a; }
static float f_exp(float a, float b, float p) { return expf(a); }
static float f_log(float a, float b, float p) { return logf(a); }
static float f_sqrt(float a, float b, float p) { return sqrtf(a); }
static float f_abs(float a, float b, float p) { return fabsf(a); }
static float f_relu(float a, float b, float p) { return a > 0 ? a : 0; }
static float f_sigmoid(float a, float b, float p) { return 1.0f / (1.0f + expf(-a)); }
static float f_tanh(float a, float b, float p) { return tanhf(a); }
static const bin_fn un_fns[] = {f_neg, f_exp, f_log, f_sqrt, f_abs, f_relu, f_sigmoid, f_tanh};
static const char *un_names[] = {"neg", "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh"};

/* local derivative d(out)/d(a) given a and out (and the scalar p) */
static float d_adds(float a, float o, float p) { return 1; }
static float d_muls(float a, float o, float p) { return p; }
static float d_rsubs(float a, float o, float p) { return -1; }
static float d_rdivs(float a, float o, float p) { return -o / a; }
static float d_pows(float a, float o, float p) { return p == 2.0f ? 2 * a : p * powf(a, p - 1); }
static float d_neg(float a, float o, float p) { return -1; }
static float d_exp(float a, float o, float p) { return o; }
static float d_log(float a, float o, float p) { return 1 / a; }
static float d_sqrt(float a, float o, float p) { return 0.5f / o; }
static float d_abs(float a, float o, float p) { return a > 0 ? 1.0f : a < 0 ? -1.0f : 0.0f; }
static float d_relu(float a, float o, float p) { return a > 0 ? 1.0f : 0.0f; }
static float d_sigmoid(float a, float o, float p) { return o * (1 - o); }
static float d_tanh(float a, float o, float p) { return 1 - o * o; }
static const bin_fn un_d[] = {d_neg, d_exp, d_log, d_sqrt, d_abs, d_relu, d_sigmoid, d_tanh};

typedef struct { bin_fn f, d; const char *name; } elem_kind;

static elem_kind kind_of(int k) {
    switch (k) {
    case K_ADDS: return (elem_kind){f_adds, d_adds, "add"};
    case K_MULS: return (elem_kind){f_muls, d_muls, "mul"};
    case K_RSUBS: return (elem_kind){f_rsubs, d_rsubs, "rsub"};
    case K_RDIVS: return (elem_kind){f_rdivs, d_rdivs, "rdiv"};
    case K_POWS: return (elem_kind){f_pows, d_pows, "pow"};
    default: return (elem_kind){un_fns[k], un_d[k], un_names[k]};
    }
}

typedef struct {
    int64_t n; float *gi; const float *g, *a, *o; bin_fn d; float p, lo, hi; int clamp;
} grad_job;

FMD_SIMD_CLONES
static void grad_range(const grad_job *j, int64_t b, int64_t e) {
    float *restrict gi = j->gi;
    const float *restrict g = j->g, *restrict a = j->a, *restrict o = j->o;
    if (j->clamp)
        for (int64_t i = b; i < e; i++) gi[i] = (a[i] >= j->lo && a[i] <= j->hi) ? g[i] : 0;
    else if (j->d == d_relu)
        for (int64_t i = b; i < e; i++) gi[i] = a[i] > 0 ? g[i] : 0;
    else if (j->d == d_adds)
        for (int64_t i = b; i < e; i++) gi[i] = g[i];
    else if (j->d == d_muls)
        for (int64_t i = b; i < e; i++) gi[i] = g[i] * j->p;
    else
        for (int64_t i = b; i < e; i++) gi[i] = g[i] * j->d(a[i], o ? o[i] : 0, j->p);
}

static void grad_task(void *ctx, int ith, int nth) {
    grad_job *j = ctx;
    int64_t b, e;
    fmd_split(j->n, ith, nth, &b, &e);
    grad_range(j, b, e);
}

static int elem_backward(fmd_node *n, fmd_tensor *g) {
    int k = (int)n->iarg[0];
    fmd_tensor *gc = fmd_contiguous(g), *ac = fmd_contiguous(n->saved[0]);
    fmd_tensor *oc = n->saved[1] ? fmd_contiguous(n->saved[1]) : NULL;
    fmd_tensor *gi = gc ? fmd_empty_like(gc) : NULL;
    int rc = -1;
    if (gc && ac && gi && (!n->saved[1] || oc)) {
        grad_job j = {fmd_numel(gc), fmd_data(gi), fmd_data(gc), fmd_data(ac), oc ? fmd_data(oc) : NULL,
                      k == K_CLAMP ? NULL : kind_of(k).d, n->farg[0], n->farg[1], n->farg[2], k == K_CLAMP};
        if (j.n >= 1 << 16) fmd_parallel(grad_task, &j);
        else grad_task(&j, 0, 1);
        rc = fmd_accumulate_grad(n->inputs[0], gi);
    }
    fmd_release(gc); fmd_release(ac); fmd_release(oc); fmd_release(gi);
    return rc;
}

static float f_clamp(float a, float lo, float hi) { return a < lo ? lo : a > hi ? hi : a; }

static fmd_tensor *elementwise(int k, fmd_tensor *a, float p) {
    fmd_tensor *out = fmd_empty(a->ndim, a->shape);
    if (!out) return NULL;
    elem_kind ek = kind_of(k);
    apply(out, a, NULL, ek.f, p);
    if (fmd_needs_grad(1, &a)) {
        fmd_node *n = fmd_node_new(ek.name, elem_backward, 1, &a);
        if (!n) { fmd_release(out); return NULL; }
        n->iarg[0] = k;
        n->farg[0] = p;
        /* relu keeps its output, not its input: out > 0 exactly where
         * a > 0 (NaN gives 0 in both), and the output is usually kept by
         * the next layer anyway, so the input (often a BatchNorm output
         * nothing else needs) can be freed */
        n->saved[0] = fmd_alias(k == FMD_RELU ? out : a);
        /* ops whose derivative is cheapest from the output keep it */
        if (k == FMD_EXP || k == FMD_SQRT || k == FMD_SIGMOID || k == FMD_TANH || k == K_RDIVS)
            n->saved[1] = fmd_alias(out);
        fmd_node_attach(out, n);
    }
    return out;
}

fmd_tensor *fmd_unary(fmd_unop op, fmd_tensor *a) {
    if ((unsigned)op > FMD_TANH) return fmd_fail_null("unary: unknown op %d", (int)op);
    return elementwise(op, a, 0);
}
/* ------------------------------------------------------------- in place */
/* PyTorch's relu_ and add_, only where no graph is recorded (what
 * nn.ReLU(true) and Xception's skip sum run under fmd.no_grad): one stream
 * over t and no new buffer. */
typedef struct { float *d; const float *s; int64_t n; } inplace_job;   /* d += s, or relu(d) when s is NULL */

FMD_SIMD_CLONES
static void inplace_range(const inplace_job *j, int64_t b, int64_t e) {
    float *d = j->d;
    const float *s = j->s;
    if (s) for (int64_t i = b; i < e; i++) d[i] += s[i];   /* s may be d (x:add_(x)): same index */
    else for (int64_t i = b; i < e; i++) d[i] = d[i] > 0 ? d[i] : 0;
}

static void inplace_task(void *ctx, int ith, int nth) {
    const inplace_job *j = ctx;
    int64_t b, e;
    fmd_split(j->n, ith, nth, &b, &e);
    inplace_range(j, b, e);
}

// contiguous d (n) += s (n), or d = relu(d) when s is NULL
static void inplace_flat(float *d, const float *s, int64_t n) {
    inplace_job j = {d, s, n};
    if (n >= 1 << 16) fmd_parallel(inplace_task, &j);
    else inplace_task(&j, 0, 1);
}

int fmd_relu_(fmd_tensor *t) {
    if (fmd_needs_grad(1, &t))
        return fmd_fail("relu_: the tensor requires grad and an in-place op would lose its graph (use relu)");
    if (fmd_is_contiguous(t)) inplace_flat(fmd_data(t), NULL, fmd_numel(t));
    else apply(t, t, NULL, f_relu, 0);   /* strided: reads each value before writing it */
    return 0;
}

int fmd_add_(fmd_tensor *t, fmd_tensor *other) {
    fmd_tensor *both[2] = {t, other};
    if (fmd_needs_grad(2, both))
        return fmd_fail("add_: a tensor requires grad and an in-place op would lose its graph (use add)");
    int nd;
    int64_t shape[FMD_MAX_DIMS];
    if (broadcast_shape("add_", t, other, &nd, shape)) return -1;
    if (nd != t->ndim || memcmp(shape, t->shape, (size_t)nd * sizeof *shape)) {
        char a[128], b[128];
        return fmd_fail("add_: other %s does not broadcast to the shape of the tensor %s, which an in-place add keeps",
                        fmd_shape_str(a, sizeof a, other->ndim, other->shape), fmd_shape_str(b, sizeof b, t->ndim, t->shape));
    }
    if (fmd_is_contiguous(t) && fmd_is_contiguous(other) && fmd_numel(other) == fmd_numel(t)) {
        inplace_flat(fmd_data(t), fmd_data(other), fmd_numel(t));
        return 0;
    }
    fmd_tensor *e = fmd_expand(other, t->ndim, t->shape);
    if (!e) return -1;
    strided_apply(fmd_data(t), t->stride, fmd_data(t), t->stride, fmd_data(e), e->stride, t->shape, t->ndim, f_add, 0);
    fmd_release(e);
    return 0;
}

fmd_tensor *fmd_add_scalar(fmd_tensor *a, float s) { return elementwise(K_ADDS, a, s); }
fmd_tensor *fmd_mul_scalar(fmd_tensor *a, float s) { return elementwise(K_MULS, a, s); }
fmd_tensor *fmd_rsub_scalar(fmd_tensor *a, float s) { return elementwise(K_RSUBS, a, s); }
fmd_tensor *fmd_rdiv_scalar(fmd_tensor *a, float s) { return elementwise(K_RDIVS, a, s); }
fmd_tensor *fmd_pow_scalar(fmd_tensor *a, float p) { return elementwise(K_POWS, a, p); }

fmd_tensor *fmd_clamp(fmd_tensor *a, float lo, float hi) {
    if (lo > hi) return fmd_fail_null("clamp: min %g is greater than max %g", lo, hi);
    fmd_tensor *ac = fmd_contiguous(a);
    fmd_tensor *out = ac ? fmd_empty(a->ndim, a->shape) : NULL;
    if (!out) { fmd_release(ac); return NULL; }
    const float *s = fmd_data(ac);
    float *d = fmd_data(out);
    for (int64_t i = 0, n = fmd_numel(out); i < n; i++) d[i] = f_clamp(s[i], lo, hi);
    fmd_release(ac);
    if (fmd_needs_grad(1, &a)) {
        fmd_node *n = fmd_node_new("clamp", elem_backward, 1, &a);
        if (!n) { fmd_release(out); return NULL; }
        n->iarg[0] = K_CLAMP;
        n->farg[1] = lo; n->farg[2] = hi;
        n->saved[0] = fmd_alias(a);
        fmd_node_attach(out, n);
    }
    return out;
}

/* ----------------------------------------------------------- comparisons */
static float f_eq(float a, float b, float p) { return a == b; }
static float f_ne(float a, float b, float p) { return a != b; }
static float f_lt(float a, float b, float p) { return a < b; }
static float f_le(float a, float b, float p) { return a <= b; }
static float f_gt(float a, float b, float p) { return a > b; }
static float f_ge(float a, float b, float p) { return a >= b; }

fmd_tensor *fmd_compare(fmd_cmpop op, fmd_tensor *a, fmd_tensor *b) {
    static const bin_fn fns[] = {f_eq, f_ne, f_lt, f_le, f_gt, f_ge};
    if ((unsigned)op > FMD_GE) return fmd_fail_null("compare: unknown op %d", (int)op);
    int nd;
    int64_t shape[FMD_MAX_DIMS];
    if (broadcast_shape("compare", a, b, &nd, shape)) return NULL;
    fmd_tensor *ea = fmd_expand(a, nd, shape), *eb = fmd_expand(b, nd, shape);
    fmd_tensor *out = (ea && eb) ? fmd_empty(nd, shape) : NULL;
    if (out) apply(out, ea, eb, fns[op], 0);
    fmd_release(ea); fmd_release(eb);
    return out;
}
