/* conv2d and pooling against naive direct loops on random data: forward,
 * and the input/weight/bias gradients through fmd_backward, for the
 * general (im2col), pointwise and depthwise kernels, batch-parallel and
 * per-sample modes. */
#include "fmd.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int N, C, H, W, O, KH, KW, sh, sw, ph, pw, dh, dw, groups, bias; } cfg;

static double max_rel(const float *a, const float *b, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / (1 + fabs((double)b[i]));
        if (e > worst || isnan(e)) worst = isnan(e) ? INFINITY : e;
    }
    return worst;
}

/* y = conv(x, w) + b and, given gy, the three gradients, all in double */
static void naive_conv(const cfg *c, int OH, int OW, const float *x, const float *w, const float *b, const float *gy,
                       float *y, float *gx, float *gw, float *gb) {
    int Cg = c->C / c->groups, Og = c->O / c->groups;
    int64_t nx = (int64_t)c->N * c->C * c->H * c->W, nw = (int64_t)c->O * Cg * c->KH * c->KW;
    double *dgx = calloc((size_t)nx, sizeof *dgx), *dgw = calloc((size_t)nw, sizeof *dgw);
    double *dgb = calloc((size_t)c->O, sizeof *dgb);
    for (int n = 0; n < c->N; n++)
        for (int o = 0; o < c->O; o++)
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    int gi = o / Og;
                    int64_t yi = (((int64_t)n * c->O + o) * OH + oy) * OW + ox;
                    double s = b ? b[o] : 0, g = gy[yi];
                    for (int ci = 0; ci < Cg; ci++)
                        for (int kh = 0; kh < c->KH; kh++)
                            for (int kw = 0; kw < c->KW; kw++) {
                                int iy = oy * c->sh - c->ph + kh * c->dh, ix = ox * c->sw - c->pw + kw * c->dw;
                                if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W) continue;
                                int64_t xi = (((int64_t)n * c->C + gi * Cg + ci) * c->H + iy) * c->W + ix;
                                int64_t wi = (((int64_t)o * Cg + ci) * c->KH + kh) * c->KW + kw;
                                s += (double)x[xi] * w[wi];
                                dgx[xi] += g * w[wi];
                                dgw[wi] += g * x[xi];
                            }
                    y[yi] = (float)s;
                    dgb[o] += g;
                }
    for (int64_t i = 0; i < nx; i++) gx[i] = (float)dgx[i];
    for (int64_t i = 0; i < nw; i++) gw[i] = (float)dgw[i];
    for (int i = 0; i < c->O; i++) gb[i] = (float)dgb[i];
    free(dgx); free(dgw); free(dgb);
}

static void check_conv(const cfg *c, const char *name) {
    int Cg = c->C / c->groups;
    int64_t xs[4] = {c->N, c->C, c->H, c->W}, ws[4] = {c->O, Cg, c->KH, c->KW}, bs[1] = {c->O};
    fmd_tensor *x = fmd_randn(4, xs), *w = fmd_randn(4, ws), *b = c->bias ? fmd_randn(1, bs) : NULL;
    fmd_set_requires_grad(x, 1);
    fmd_set_requires_grad(w, 1);
    if (b) fmd_set_requires_grad(b, 1);
    fmd_tensor *y = fmd_conv2d(x, w, b, c->sh, c->sw, c->ph, c->pw, c->dh, c->dw, c->groups);
    CHECK(y != NULL);
    if (!y) { fprintf(stderr, "%s: %s\n", name, fmd_error()); return; }
    int OH = (int)y->shape[2], OW = (int)y->shape[3];
    fmd_tensor *gy = fmd_randn(4, y->shape);
    int64_t ny = fmd_numel(y), nx = fmd_numel(x), nw = fmd_numel(w);
    float *ry = malloc((size_t)ny * 4), *rgx = malloc((size_t)nx * 4), *rgw = malloc((size_t)nw * 4);
    float *rgb = malloc((size_t)c->O * 4);
    naive_conv(c, OH, OW, fmd_data(x), fmd_data(w), b ? fmd_data(b) : NULL, fmd_data(gy), ry, rgx, rgw, rgb);
    double e = max_rel(fmd_data(y), ry, ny);
    if (e > 1e-4) fprintf(stderr, "%s: forward error %g\n", name, e);
    CHECK(e <= 1e-4);
    CHECK(fmd_backward(y, gy) == 0);
    CHECK(x->grad && w->grad && (!b || b->grad));
    if (x->grad && w->grad) {
        double ex = max_rel(fmd_data(x->grad), rgx, nx), ew = max_rel(fmd_data(w->grad), rgw, nw);
        double eb = b && b->grad ? max_rel(fmd_data(b->grad), rgb, c->O) : 0;
        if (ex > 1e-4 || ew > 1e-4 || eb > 1e-4)
            fprintf(stderr, "%s: grad errors x %g w %g b %g\n", name, ex, ew, eb);
        CHECK(ex <= 1e-4);
        CHECK(ew <= 1e-4);
        CHECK(eb <= 1e-4);
    }
    free(ry); free(rgx); free(rgw); free(rgb);
    fmd_release(y); fmd_release(gy); fmd_release(x); fmd_release(w); fmd_release(b);
}

/* naive max/avg pooling, PyTorch semantics, forward only (backward is
 * covered against PyTorch fixtures in tests/lua/test_conv.lua) */
static void check_pool(int N, int C, int H, int W, int k, int s, int p) {
    int64_t xs[4] = {N, C, H, W};
    fmd_tensor *x = fmd_randn(4, xs);
    fmd_tensor *mx = fmd_max_pool2d(x, k, k, s, s, p, p), *av = fmd_avg_pool2d(x, k, k, s, s, p, p);
    CHECK(mx && av);
    if (!mx || !av) { fprintf(stderr, "pool: %s\n", fmd_error()); return; }
    int OH = (H + 2 * p - k) / s + 1, OW = (W + 2 * p - k) / s + 1;
    CHECK(mx->shape[2] == OH && mx->shape[3] == OW);
    const float *xd = fmd_data(x), *md = fmd_data(mx), *ad = fmd_data(av);
    double worst = 0;
    for (int pl = 0; pl < N * C; pl++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                double m = -INFINITY, sum = 0;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        int iy = oy * s - p + ky, ix = ox * s - p + kx;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                        double v = xd[((int64_t)pl * H + iy) * W + ix];
                        if (v > m) m = v;
                        sum += v;
                    }
                int64_t o = ((int64_t)pl * OH + oy) * OW + ox;
                double e1 = fabs(md[o] - m), e2 = fabs(ad[o] - sum / (k * k));
                if (e1 > worst) worst = e1;
                if (e2 > worst) worst = e2;
            }
    CHECK(worst < 1e-5);
    fmd_release(x); fmd_release(mx); fmd_release(av);
}

int main(void) {
    fmd_manual_seed(7);
    static const struct { cfg c; const char *name; } cases[] = {
        {{2, 3, 9, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, "3x3 pad 1"},
        {{4, 4, 11, 10, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1}, "3x3 stride 2"},
        {{3, 4, 12, 13, 4, 3, 3, 1, 1, 2, 2, 2, 2, 1, 0}, "dilation 2, no bias, odd batch"},
        {{2, 4, 7, 7, 6, 3, 2, 1, 2, 1, 0, 1, 1, 2, 1}, "groups 2, rectangular kernel"},
        {{2, 5, 9, 9, 5, 3, 3, 1, 1, 1, 1, 1, 1, 5, 1}, "depthwise"},
        {{2, 3, 8, 9, 6, 3, 3, 2, 1, 1, 2, 1, 2, 3, 0}, "depthwise multiplier 2, stride (2,1), dilation"},
        {{4, 4, 10, 10, 4, 5, 5, 2, 2, 2, 2, 1, 1, 4, 1}, "depthwise 5x5 stride 2"},
        {{2, 8, 6, 5, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1}, "1x1 fast path"},
        {{2, 8, 6, 6, 8, 1, 1, 1, 1, 0, 0, 1, 1, 2, 0}, "1x1 groups 2"},
        {{2, 6, 9, 9, 5, 1, 1, 2, 2, 0, 0, 1, 1, 1, 1}, "1x1 stride 2"},
        {{1, 16, 20, 20, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, "batch 1 (split GEMMs)"},
        {{1, 16, 20, 20, 16, 3, 3, 1, 1, 1, 1, 1, 1, 16, 1}, "batch 1 depthwise"},
        {{3, 2, 5, 5, 3, 5, 5, 1, 1, 0, 0, 1, 1, 1, 1}, "kernel covers the input"},
        {{2, 3, 3, 3, 3, 3, 3, 1, 1, 0, 0, 1, 1, 3, 1}, "depthwise, 1x1 output"},
        {{2, 4, 11, 9, 4, 5, 5, 1, 1, 3, 1, 2, 1, 4, 0}, "depthwise 5x5 stride 1, dilation (2,1)"},
        {{2, 3, 6, 7, 3, 3, 3, 1, 1, 0, 2, 1, 1, 3, 1}, "depthwise pad (0,2)"},
        /* column tiles: Kc = 576 gives 256-pixel tiles that end mid-row */
        {{2, 64, 21, 19, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, "several column tiles"},
        {{1, 64, 37, 23, 3, 3, 3, 2, 1, 2, 0, 2, 1, 1, 0}, "tiles, batch 1, stride/dilation"},
        {{3, 128, 18, 17, 4, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1}, "tiles with groups"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_conv(&cases[i].c, cases[i].name);
    fmd_set_num_threads(1);
    check_conv(&cases[1].c, "single thread");
    check_conv(&cases[4].c, "single thread depthwise");
    fmd_set_num_threads(2);

    check_pool(2, 3, 9, 9, 3, 2, 1);
    check_pool(1, 2, 8, 7, 2, 2, 0);
    check_pool(3, 1, 5, 6, 3, 1, 1);

    /* errors name the op and the shapes */
    int64_t xs[4] = {2, 3, 8, 8}, ws[4] = {4, 2, 3, 3};
    fmd_tensor *x = fmd_randn(4, xs), *w = fmd_randn(4, ws);
    CHECK(fmd_conv2d(x, w, NULL, 1, 1, 0, 0, 1, 1, 1) == NULL);
    CHECK(strstr(fmd_error(), "input [2 x 3 x 8 x 8] has 3 channels, weight [4 x 2 x 3 x 3] expects 2") != NULL);
    CHECK(fmd_max_pool2d(x, 3, 3, 1, 1, 2, 2) == NULL);
    CHECK(strstr(fmd_error(), "at most half") != NULL);
    fmd_release(x); fmd_release(w);
    return TEST_SUMMARY();
}
