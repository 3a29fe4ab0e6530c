/* optim.c - in-place parameter updates of SGD and Adam on contiguous float
 * buffers, with PyTorch 1.13's exact rules (torch/optim/sgd.py and adam.py,
 * the single-tensor path). The Lua optimizers (lib/fmd/optim/) keep the
 * state tensors and call these once per parameter per step. Elements are
 * independent, so big tensors are split over the thread pool. */
#include "fmd_impl.h"

#include <math.h>

/* below this many elements waking the pool costs more than it saves. (Both
 * updates are memory-bound: Adam moves 7 floats per element, about 56 ms
 * for SimpleNet's 16.9M parameters on the 2-core VM, where a plain sum
 * streams ~5 GB/s.) */
#define OPTIM_PAR_MIN (1 << 16)

typedef struct {
    float *p; const float *g; float *buf;            /* sgd */
    float *m, *v, *vmax;                             /* adam */
    int64_t n;
    float lr, momentum, damp1, weight_decay;         /* sgd */
    int nesterov, first;
    float beta1, beta2, c1, c2, eps, step_size, bc2_sqrt; /* adam */
} optim_job;

static void run(fmd_task_fn fn, optim_job *j) {
    if (j->n >= OPTIM_PAR_MIN) fmd_parallel(fn, j);
    else fn(j, 0, 1);
}

/* SGD on elements [b, e):
 *   d = g + wd * p
 *   buf = first ? d : momentum * buf + (1 - dampening) * d   (momentum != 0)
 *   d = nesterov ? d + momentum * buf : buf                  (momentum != 0)
 *   p -= lr * d
 * The first step copies d into buf without dampening, as PyTorch does. */
static void sgd_task(void *ctx, int ith, int nth) {
    optim_job *j = ctx;
    int64_t b, e;
    fmd_split(j->n, ith, nth, &b, &e);
    float *p = j->p, *buf = j->buf;
    const float *g = j->g;
    const float wd = j->weight_decay, mom = j->momentum, damp1 = j->damp1, lr = j->lr;
    for (int64_t i = b; i < e; i++) {
        float d = g[i];
        if (wd != 0.0f) d = d + wd * p[i];
        if (mom != 0.0f) {
            float bi = j->first ? d : buf[i] * mom + damp1 * d;
            buf[i] = bi;
            d = j->nesterov ? d + mom * bi : bi;
        }
        p[i] = p[i] - lr * d;
    }
}

/* p, g (and buf when momentum != 0) hold n floats each */
int fmd_sgd_step(float *p, const float *g, float *buf, int64_t n, double lr, double momentum,
                 double dampening, int nesterov, double weight_decay, int first) {
    if (n < 0) return fmd_fail("sgd_step: negative element count %lld", (long long)n);
    if (momentum != 0.0 && !buf) return fmd_fail("sgd_step: momentum %g needs a momentum buffer", momentum);
    if (nesterov && (momentum <= 0.0 || dampening != 0.0))
        return fmd_fail("sgd_step: Nesterov momentum requires a momentum > 0 and zero dampening");
    /* scalars become float the way PyTorch's CPU kernels cast them */
    optim_job j = {.p = p, .g = g, .buf = buf, .n = n, .lr = (float)lr, .momentum = (float)momentum,
                   .damp1 = (float)(1.0 - dampening), .weight_decay = (float)weight_decay,
                   .nesterov = nesterov, .first = first};
    run(sgd_task, &j);
    return 0;
}

/* Adam on elements [b, e):
 *   d = g + wd * p
 *   m = beta1 * m + (1 - beta1) * d
 *   v = beta2 * v + (1 - beta2) * d * d
 *   vmax = max(vmax, v)                              (amsgrad)
 *   p -= step_size * m / (sqrt(v or vmax) / sqrt(bc2) + eps)
 * with step_size = lr / bc1, bc1 = 1 - beta1^t, bc2 = 1 - beta2^t computed
 * in double like Python does. */
/* the loop with weight decay and amsgrad fixed per call, so each variant
 * compiles to branch-free vector code */
static inline __attribute__((always_inline)) void adam_range(const optim_job *j, int64_t b, int64_t e,
                                                            const int wd_on, const int ams) {
    float *restrict p = j->p, *restrict m = j->m, *restrict v = j->v, *restrict vmax = j->vmax;
    const float *restrict g = j->g;
    const float wd = j->weight_decay, b1 = j->beta1, b2 = j->beta2;
    const float c1 = j->c1, c2 = j->c2, eps = j->eps, bc2s = j->bc2_sqrt, ss = j->step_size;
    for (int64_t i = b; i < e; i++) {
        float d = g[i];
        if (wd_on) d = d + wd * p[i];
        float mi = m[i] * b1 + c1 * d;
        float vi = v[i] * b2 + c2 * (d * d);
        m[i] = mi;
        v[i] = vi;
        if (ams) {
            float mx = vmax[i];
            mx = (vi > mx || vi != vi) ? vi : mx;   /* torch.maximum propagates NaN */
            vmax[i] = mx;
            vi = mx;
        }
        float denom = sqrtf(vi) / bc2s + eps;
        p[i] = p[i] - ss * (mi / denom);
    }
}

static void adam_task(void *ctx, int ith, int nth) {
    optim_job *j = ctx;
    int64_t b, e;
    fmd_split(j->n, ith, nth, &b, &e);
    int wd_on = j->weight_decay != 0.0f, ams = j->vmax != NULL;
    if (wd_on && ams) adam_range(j, b, e, 1, 1);
    else if (wd_on) adam_range(j, b, e, 1, 0);
    else if (ams) adam_range(j, b, e, 0, 1);
    else adam_range(j, b, e, 0, 0);
}

/* p, g, m, v (and vmax when not NULL = amsgrad) hold n floats each; step is
 * this update's 1-based count (PyTorch increments before computing) */
int fmd_adam_step(float *p, const float *g, float *m, float *v, float *vmax, int64_t n, int64_t step,
                  double lr, double beta1, double beta2, double eps, double weight_decay) {
    if (n < 0) return fmd_fail("adam_step: negative element count %lld", (long long)n);
    if (step < 1) return fmd_fail("adam_step: step must be >= 1, got %lld", (long long)step);
    if (!(beta1 >= 0.0 && beta1 < 1.0) || !(beta2 >= 0.0 && beta2 < 1.0))
        return fmd_fail("adam_step: betas (%g, %g) must be in [0, 1)", beta1, beta2);
    double bc1 = 1.0 - pow(beta1, (double)step);
    double bc2 = 1.0 - pow(beta2, (double)step);
    optim_job j = {.p = p, .g = g, .m = m, .v = v, .vmax = vmax, .n = n, .beta1 = (float)beta1,
                   .beta2 = (float)beta2, .c1 = (float)(1.0 - beta1), .c2 = (float)(1.0 - beta2),
                   .eps = (float)eps, .weight_decay = (float)weight_decay,
                   .step_size = (float)(lr / bc1), .bc2_sqrt = (float)sqrt(bc2)};
    run(adam_task, &j);
    return 0;
}
