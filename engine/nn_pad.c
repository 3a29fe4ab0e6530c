/* nn_pad.c - pad2d: a constant border around each (H,W) plane with its own
 * width on each side, forward with its backward below it. PyTorch's
 * F.pad(x, (left, right, top, bottom), value=v) on (N,C,H,W). It exists for
 * Keras' stride-2 convolutions, which pad one zero row and column at the
 * bottom and right only (ZeroPadding2D(((0, 1), (0, 1)))), a border no
 * symmetric conv padding can give. */
#include "fmd_impl.h"

#include <string.h>

typedef struct {
    int64_t NC, H, W, OH, OW;
    int top, left;
    float value;
    const float *x; float *y;
} pad_job;

// x plane (H,W) -> y plane (OH,OW): border rows and columns set to value, x copied inside
static void pad_fwd_task(void *p, int ith, int nth) {
    pad_job *j = p;
    int64_t b, e;
    fmd_split(j->NC, ith, nth, &b, &e);
    const int64_t right = j->OW - j->left - j->W;
    for (int64_t pl = b; pl < e; pl++) {
        const float *x = j->x + pl * j->H * j->W;
        float *y = j->y + pl * j->OH * j->OW;
        for (int64_t oy = 0; oy < j->OH; oy++) {
            float *row = y + oy * j->OW;
            int64_t iy = oy - j->top;
            if (iy < 0 || iy >= j->H) {
                for (int64_t ox = 0; ox < j->OW; ox++) row[ox] = j->value;
                continue;
            }
            for (int64_t ox = 0; ox < j->left; ox++) row[ox] = j->value;
            memcpy(row + j->left, x + iy * j->W, (size_t)j->W * sizeof *row);
            for (int64_t ox = 0; ox < right; ox++) row[j->left + j->W + ox] = j->value;
        }
    }
}

// gy (N,C,OH,OW) -> gx (N,C,H,W) += the inner window of gy (the border is a constant: no gradient)
static int pad_backward(fmd_node *n, fmd_tensor *gy) {
    fmd_tensor *x = n->inputs[0];
    int prev = fmd_set_grad_enabled(0);
    fmd_tensor *rows = fmd_narrow(gy, 2, n->iarg[0], x->shape[2]);
    fmd_tensor *win = rows ? fmd_narrow(rows, 3, n->iarg[1], x->shape[3]) : NULL;
    fmd_set_grad_enabled(prev);
    int rc = win ? fmd_accumulate_grad(x, win) : -1;
    fmd_release(rows); fmd_release(win);
    return rc;
}

// x is (N,C,H,W) -> (N,C,top+H+bottom,left+W+right)
fmd_tensor *fmd_pad2d(fmd_tensor *x, int left, int right, int top, int bottom, float value) {
    char a[128];
    if (!x) return fmd_fail_null("pad2d: input is required");
    if (x->ndim != 4)
        return fmd_fail_null("pad2d: input must be 4-D (N,C,H,W), got %s", fmd_shape_str(a, sizeof a, x->ndim, x->shape));
    if (left < 0 || right < 0 || top < 0 || bottom < 0)
        return fmd_fail_null("pad2d: padding (left %d, right %d, top %d, bottom %d) must not be negative", left, right,
                             top, bottom);
    pad_job j = {.NC = x->shape[0] * x->shape[1], .H = x->shape[2], .W = x->shape[3], .top = top, .left = left,
                 .value = value};
    j.OH = j.H + top + bottom;
    j.OW = j.W + left + right;
    int64_t shape[4] = {x->shape[0], x->shape[1], j.OH, j.OW};
    int prev = fmd_set_grad_enabled(0);
    fmd_tensor *xc = fmd_contiguous(x);
    fmd_set_grad_enabled(prev);
    fmd_tensor *y = xc ? fmd_empty(4, shape) : NULL;
    if (!y) { fmd_release(xc); return NULL; }
    j.x = fmd_data(xc); j.y = fmd_data(y);
    /* memory-bound: small tensors are not worth waking the pool for */
    if (j.NC * j.OH * j.OW >= (1 << 15)) fmd_parallel(pad_fwd_task, &j);
    else pad_fwd_task(&j, 0, 1);
    fmd_release(xc);
    if (!fmd_needs_grad(1, &x)) return y;
    fmd_node *n = fmd_node_new("pad2d", pad_backward, 1, &x);
    if (!n) { fmd_release(y); return NULL; }
    n->iarg[0] = top; n->iarg[1] = left;
    fmd_node_attach(y, n);
    return y;
}
