/* autograd.c - graph nodes, gradient accumulation and the backward pass. */
#include "fmd_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local int grad_disabled;

int fmd_is_grad_enabled(void) { return !grad_disabled; }

int fmd_set_grad_enabled(int enabled) {
    int prev = !grad_disabled;
    grad_disabled = !enabled;
    return prev;
}

const char *fmd_grad_fn_name(const fmd_tensor *t) { return t->grad_fn ? t->grad_fn->name : NULL; }

int fmd_needs_grad(int n, fmd_tensor *const *ts) {
    if (grad_disabled) return 0;
    for (int i = 0; i < n; i++)
        if (ts[i] && ts[i]->requires_grad) return 1;
    return 0;
}

/* Graph edges without the data. A node needs its inputs only for their
 * shape and to route gradients, yet a reference to an input tensor keeps
 * the input's storage alive: every activation of a forward pass would live
 * until backward even when no backward function reads it (a ReLU's input
 * after the ReLU saved its output, a BatchNorm's output that only a ReLU
 * or an add consumed). So a node holds, for a non-leaf input, a *shadow*:
 * a header with the input's shape, strides and grad_fn but no storage,
 * one per producing node, shared by all its consumers. Gradients
 * accumulate in the shadow's .grad; the storage lives only as long as the
 * user's tensor or a saved alias (data a backward function does read).
 * Leaves and tensors that asked for retain_grad are held as they are.
 *
 * The node keeps weak pointers to its shadow and to the tensor it is
 * attached to; each is cleared in fmd_node_release when that tensor is
 * being freed (fmd_release drops the header's refcount to 0, then releases
 * its grad_fn, then frees it), so neither ever dangles. */
typedef struct {
    fmd_node n;            /* first: a node_ext * is an fmd_node * */
    fmd_tensor *shadow;    /* weak: stand-in for `output` held by consumers */
    fmd_tensor *output;    /* weak: the tensor this node is attached to */
    int shared;            /* attached to more than one tensor: no shadow */
} node_ext;

static node_ext *ext(fmd_node *n) { return (node_ext *)n; }

static int is_shadow(const fmd_tensor *t) { return t->grad_fn && ext(t->grad_fn)->shadow == t; }

/* the reference a node keeps to input t (NULL stays NULL) */
static fmd_tensor *edge_ref(fmd_tensor *t) {
    if (!t || !t->grad_fn || t->retains_grad || is_shadow(t)) return t ? fmd_retain(t) : NULL;
    node_ext *e = ext(t->grad_fn);
    if (e->output != t) return fmd_retain(t);
    if (e->shadow) return fmd_retain(e->shadow);
    fmd_tensor *s = calloc(1, sizeof *s);
    if (!s) return fmd_retain(t);   /* no memory for the shadow: keep the tensor itself */
    s->offset = t->offset;
    s->ndim = t->ndim;
    memcpy(s->shape, t->shape, sizeof s->shape);
    memcpy(s->stride, t->stride, sizeof s->stride);
    s->refcount = 1;
    s->requires_grad = 1;
    __atomic_add_fetch(&t->grad_fn->refcount, 1, __ATOMIC_ACQ_REL);
    s->grad_fn = t->grad_fn;
    e->shadow = s;
    return s;
}

fmd_node *fmd_node_new(const char *name, fmd_backward_fn bw, int ninputs, fmd_tensor *const *inputs) {
    node_ext *e = calloc(1, sizeof *e);
    if (!e) return fmd_fail_null("%s: out of memory recording the graph", name);
    fmd_node *n = &e->n;
    n->name = name;
    n->backward = bw;
    n->ninputs = ninputs;
    n->refcount = 1;
    for (int i = 0; i < ninputs; i++) n->inputs[i] = edge_ref(inputs[i]);
    return n;
}

void fmd_node_release(fmd_node *n) {
    if (!n) return;
    node_ext *e = ext(n);
    /* a weak pointer whose tensor is being freed right now */
    if (e->shadow && e->shadow->refcount == 0) e->shadow = NULL;
    if (e->output && e->output->refcount == 0) e->output = NULL;
    if (__atomic_sub_fetch(&n->refcount, 1, __ATOMIC_ACQ_REL)) return;
    for (int i = 0; i < n->ninputs; i++) fmd_release(n->inputs[i]);
    for (int i = 0; i < FMD_NODE_MAX_SAVED; i++) fmd_release(n->saved[i]);
    free(n->ctx);
    free(e);
}

void fmd_node_attach(fmd_tensor *out, fmd_node *n) {
    fmd_node *old = out->grad_fn;
    if (old && ext(old)->output == out) ext(old)->output = NULL;
    fmd_node_release(old);
    out->grad_fn = n;
    out->requires_grad = 1;
    /* a node attached to a second tensor gets no shadow (shapes may differ) */
    node_ext *e = ext(n);
    if (e->output || e->shared) { e->output = NULL; e->shared = 1; }
    else e->output = out;
}

int fmd_set_requires_grad(fmd_tensor *t, int flag) {
    if (t->grad_fn && !flag)
        return fmd_fail("requires_grad: cannot turn off on a non-leaf tensor (use detach())");
    t->requires_grad = flag ? 1 : 0;
    return 0;
}

int fmd_accumulate_grad(fmd_tensor *t, fmd_tensor *g) {
    if (!t || !t->requires_grad) return 0;
    if (!fmd_same_shape(t, g)) {
        char a[128], b[128];
        return fmd_fail("backward: gradient %s does not match tensor %s",
                        fmd_shape_str(a, sizeof a, g->ndim, g->shape), fmd_shape_str(b, sizeof b, t->ndim, t->shape));
    }
    if (!t->grad) {
        /* a fresh gradient nobody else holds is kept as it is (no copy) */
        if (g->refcount == 1 && g->storage->refcount == 1 && !g->grad_fn && !g->requires_grad &&
            fmd_is_contiguous(g)) {
            t->grad = fmd_retain(g);
            return 0;
        }
        fmd_tensor *c = fmd_empty(t->ndim, t->shape);
        if (!c || fmd_copy_(c, g)) { fmd_release(c); return -1; }
        t->grad = c;
        return 0;
    }
    /* in place += (grad is always our own contiguous tensor) */
    fmd_tensor *gc = fmd_contiguous(g);
    if (!gc) return -1;
    float *d = fmd_data(t->grad);
    const float *s = fmd_data(gc);
    int64_t n = fmd_numel(g);
    if (fmd_is_contiguous(t->grad)) {
        for (int64_t i = 0; i < n; i++) d[i] += s[i];
    } else {
        fmd_tensor *sum = fmd_add(t->grad, gc);
        int rc = sum ? fmd_copy_(t->grad, sum) : -1;
        fmd_release(sum);
        if (rc) { fmd_release(gc); return -1; }
    }
    fmd_release(gc);
    return 0;
}

int fmd_accumulate_grad_reduced(fmd_tensor *t, fmd_tensor *g) {
    if (!t || !t->requires_grad) return 0;
    if (fmd_same_shape(t, g)) return fmd_accumulate_grad(t, g);
    /* sum over broadcast dims: leading extra dims, then dims where t has 1 */
    fmd_tensor *r = fmd_retain(g);
    while (r->ndim > t->ndim) {
        fmd_tensor *s = fmd_sum(r, 0, 0);
        fmd_release(r);
        if (!(r = s)) return -1;
    }
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] == 1 && r->shape[d] != 1) {
            fmd_tensor *s = fmd_sum(r, d, 1);
            fmd_release(r);
            if (!(r = s)) return -1;
        }
    }
    int rc = fmd_accumulate_grad(t, r);
    fmd_release(r);
    return rc;
}

/* ------------------------------------------------------------ backward */
typedef struct { fmd_tensor **v; int64_t n, cap; } tlist;

static int tlist_push(tlist *l, fmd_tensor *t) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 64;
        fmd_tensor **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return fmd_fail("backward: out of memory");
        l->v = v; l->cap = cap;
    }
    l->v[l->n++] = t;
    return 0;
}

static uint32_t visit_epoch;

/* iterative DFS producing a post-order (inputs before users) of the tensors
 * that have a grad_fn */
static int topo_sort(fmd_tensor *root, tlist *order) {
    typedef struct { fmd_tensor *t; int next; } frame;
    frame *stack = NULL;
    int64_t sp = 0, cap = 0;
    uint32_t mark = ++visit_epoch;
    int rc = 0;
#define PUSH(x) do { if (sp == cap) { cap = cap ? cap * 2 : 64; frame *ns = realloc(stack, (size_t)cap * sizeof *ns); \
    if (!ns) { rc = fmd_fail("backward: out of memory"); goto done; } stack = ns; } \
    stack[sp].t = (x); stack[sp].next = 0; sp++; (x)->visit = mark; } while (0)
    PUSH(root);
    while (sp > 0) {
        frame *f = &stack[sp - 1];
        fmd_node *n = f->t->grad_fn;
        if (n && f->next < n->ninputs) {
            fmd_tensor *in = n->inputs[f->next++];
            if (in && in->requires_grad && in->grad_fn && in->visit != mark) PUSH(in);
            continue;
        }
        if (tlist_push(order, f->t)) { rc = -1; goto done; }
        sp--;
    }
done:
    free(stack);
#undef PUSH
    return rc;
}

int fmd_backward(fmd_tensor *root, fmd_tensor *gradient) {
    char a[128], b[128];
    if (!root->requires_grad)
        return fmd_fail("backward: tensor does not require grad and has no grad_fn");
    if (!gradient && fmd_numel(root) != 1)
        return fmd_fail("backward: grad can be implicitly created only for one-element tensors, got %s",
                        fmd_shape_str(a, sizeof a, root->ndim, root->shape));
    if (gradient && !fmd_same_shape(root, gradient))
        return fmd_fail("backward: gradient %s does not match tensor %s",
                        fmd_shape_str(a, sizeof a, gradient->ndim, gradient->shape),
                        fmd_shape_str(b, sizeof b, root->ndim, root->shape));
    if (!root->grad_fn) {   /* a leaf: its gradient is the seed itself */
        fmd_tensor *g = gradient ? fmd_retain(gradient) : fmd_full(root->ndim, root->shape, 1.0f);
        int rc = g ? fmd_accumulate_grad(root, g) : -1;
        fmd_release(g);
        return rc;
    }
    int prev = fmd_set_grad_enabled(0);
    tlist order = {0};
    int rc = topo_sort(root, &order);
    /* hold every graph tensor while we free nodes along the way */
    for (int64_t i = 0; i < order.n; i++) fmd_retain(order.v[i]);
    /* non-leaf .grad is used as the accumulation buffer; those that did not
     * ask for retain_grad are cleared before and after */
    for (int64_t i = 0; rc == 0 && i < order.n; i++) {
        fmd_tensor *t = order.v[i];
        if (!t->retains_grad) { fmd_release(t->grad); t->grad = NULL; }
    }
    if (rc == 0) {
        fmd_tensor *seed = gradient ? fmd_retain(gradient) : fmd_full(root->ndim, root->shape, 1.0f);
        rc = seed ? fmd_accumulate_grad(root, seed) : -1;
        fmd_release(seed);
    }
    for (int64_t i = order.n - 1; i >= 0; i--) {
        fmd_tensor *t = order.v[i];
        fmd_node *n = t->grad_fn;
        if (rc == 0 && t->grad && !n->backward)
            rc = fmd_fail("backward: trying to backward through the graph a second time (through %s); "
                          "the graph is freed after backward", n->name);
        /* all of t's gradient is in: a shadow hands it to its tensor when
         * that asked for retain_grad after the graph was recorded */
        if (rc == 0 && t->grad && is_shadow(t)) {
            fmd_tensor *o = ext(n)->output;
            if (o && o->retains_grad) rc = fmd_accumulate_grad(o, t->grad);
        }
        if (rc == 0 && t->grad) {
            if (n->backward(n, t->grad)) {
                char msg[1024];
                snprintf(msg, sizeof msg, "%s", fmd_error());
                rc = fmd_fail("backward of %s: %s", n->name, msg);
            }
        }
        if (!t->retains_grad) { fmd_release(t->grad); t->grad = NULL; }
        /* free the graph (PyTorch's retain_graph=False): the node stays as a
         * marker so the tensor is still a non-leaf and a second backward
         * through it is a clear error */
        for (int k = 0; k < n->ninputs; k++) { fmd_release(n->inputs[k]); n->inputs[k] = NULL; }
        for (int k = 0; k < FMD_NODE_MAX_SAVED; k++) { fmd_release(n->saved[k]); n->saved[k] = NULL; }
        free(n->ctx);
        n->ctx = NULL;
        n->ninputs = 0;
        n->backward = NULL;
        /* nothing later in the walk uses t (its users came before it), so
         * its memory can go now rather than at the end */
        fmd_release(t);
        order.v[i] = NULL;
    }
    for (int64_t i = 0; i < order.n; i++) fmd_release(order.v[i]);
    free(order.v);
    fmd_set_grad_enabled(prev);
    return rc;
}
