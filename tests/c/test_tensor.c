/* Engine unit tests: storage and views, broadcasting, reductions, matmul
 * against a naive loop, RNG determinism, error messages, autograd core,
 * thread pool. */
#include <stdlib.h>
#include <string.h>

#include "fmd_impl.h"   /* the pool and graph nodes are internal */
#include "test.h"

static float at2(const fmd_tensor *t, int64_t i, int64_t j) { return fmd_data(t)[i * t->stride[0] + j * t->stride[1]]; }

static void test_views(void) {
    fmd_tensor *a = fmd_arange(0, 24, 1);
    int64_t s[3] = {2, 3, 4};
    fmd_tensor *v = fmd_view(a, 3, s);
    CHECK(v && v->storage == a->storage && fmd_is_contiguous(v));
    CHECK(v->stride[0] == 12 && v->stride[1] == 4 && v->stride[2] == 1);
    fmd_tensor *t = fmd_transpose(v, 0, 2);   /* (4,3,2) */
    CHECK(t->shape[0] == 4 && t->shape[2] == 2 && !fmd_is_contiguous(t));
    CHECK(fmd_data(t)[1 * t->stride[0] + 2 * t->stride[1] + 1 * t->stride[2]] == 1 * 12 + 2 * 4 + 1);
    /* a transposed tensor cannot be viewed flat, but reshape copies */
    int64_t flat = 24;
    CHECK(fmd_view(t, 1, &flat) == NULL);
    CHECK(strstr(fmd_error(), "use reshape") != NULL);
    fmd_tensor *r = fmd_reshape(t, 1, &flat);
    CHECK(r && fmd_is_contiguous(r) && fmd_data(r)[1] == 12);
    /* narrow and select share storage and offset */
    fmd_tensor *n = fmd_narrow(v, 2, 1, 2);  /* (2,3,2) */
    CHECK(n->offset == 1 && n->shape[2] == 2);
    fmd_tensor *sel = fmd_select(v, 1, 2);   /* (2,4) */
    CHECK(sel->ndim == 2 && at2(sel, 1, 3) == 12 + 8 + 3);
    /* view of a non-contiguous but compatible tensor: narrow of dim 0 */
    fmd_tensor *n0 = fmd_narrow(v, 0, 1, 1);
    int64_t s2[2] = {3, 4};
    fmd_tensor *v2 = fmd_view(n0, 2, s2);
    CHECK(v2 && at2(v2, 0, 0) == 12);
    /* -1 inference and bad shapes */
    int64_t s3[2] = {-1, 6};
    fmd_tensor *v3 = fmd_view(a, 2, s3);
    CHECK(v3 && v3->shape[0] == 4);
    int64_t s4[2] = {5, 5};
    CHECK(fmd_view(a, 2, s4) == NULL && strstr(fmd_error(), "[5 x 5]"));
    /* copy into a strided destination */
    fmd_tensor *z = fmd_zeros(3, s);
    fmd_tensor *zt = fmd_transpose(z, 0, 2);
    CHECK(fmd_copy_(zt, t) == 0);
    CHECK(memcmp(fmd_data(z), fmd_data(a), 24 * sizeof(float)) == 0);
    fmd_release(a); fmd_release(v); fmd_release(t); fmd_release(r); fmd_release(n); fmd_release(sel);
    fmd_release(n0); fmd_release(v2); fmd_release(v3); fmd_release(z); fmd_release(zt);
}

static void test_broadcast(void) {
    fmd_tensor *a = fmd_new(2, (int64_t)2, (int64_t)3), *b = fmd_new(1, (int64_t)3);
    for (int i = 0; i < 6; i++) fmd_data(a)[i] = (float)i;
    for (int i = 0; i < 3; i++) fmd_data(b)[i] = (float)(10 * (i + 1));
    fmd_tensor *c = fmd_add(a, b);
    CHECK(c && c->shape[0] == 2 && c->shape[1] == 3);
    CHECK(fmd_data(c)[4] == 4 + 20);
    int64_t s[2] = {2, 1};
    fmd_tensor *col = fmd_full(2, s, 2.0f);
    fmd_tensor *d = fmd_mul(col, b);   /* (2,1) * (3) -> (2,3) */
    CHECK(d && d->shape[0] == 2 && d->shape[1] == 3 && fmd_data(d)[5] == 60);
    fmd_tensor *bad = fmd_new(1, (int64_t)4);
    CHECK(fmd_add(a, bad) == NULL);
    CHECK(strstr(fmd_error(), "add: shapes [2 x 3] and [4] do not broadcast") != NULL);
    fmd_release(a); fmd_release(b); fmd_release(c); fmd_release(col); fmd_release(d); fmd_release(bad);
}

static void test_reductions(void) {
    int64_t s[3] = {2, 3, 4};
    fmd_tensor *a = fmd_arange(0, 24, 1);
    fmd_tensor *v = fmd_view(a, 3, s);
    fmd_tensor *all = fmd_sum(v, -1, 0);
    CHECK(all->ndim == 0 && fmd_data(all)[0] == 276);
    fmd_tensor *s1 = fmd_sum(v, 1, 0);   /* (2,4) */
    CHECK(s1->ndim == 2 && fmd_data(s1)[0] == 0 + 4 + 8 && fmd_data(s1)[7] == 15 + 19 + 23);
    fmd_tensor *m2 = fmd_mean(v, 2, 1);  /* (2,3,1) */
    CHECK(m2->ndim == 3 && m2->shape[2] == 1);
    CHECK_NEAR(fmd_data(m2)[5], (20 + 21 + 22 + 23) / 4.0, 1e-6);
    fmd_tensor *idx = NULL;
    fmd_tensor *mx = fmd_max(v, 0, 0, &idx);
    CHECK(fmd_data(mx)[0] == 12 && fmd_data(idx)[0] == 1);
    fmd_tensor *am = fmd_argmax(v, 2, 0);
    CHECK(fmd_data(am)[0] == 3);
    CHECK(fmd_sum(v, 3, 0) == NULL && strstr(fmd_error(), "dim 4 out of range"));
    fmd_release(a); fmd_release(v); fmd_release(all); fmd_release(s1); fmd_release(m2);
    fmd_release(idx); fmd_release(mx); fmd_release(am);
}

static void test_matmul(void) {
    fmd_manual_seed(1);
    int64_t M = 37, K = 53, N = 29;
    int64_t sa[2] = {M, K}, sb[2] = {K, N};
    fmd_tensor *a = fmd_randn(2, sa), *b = fmd_randn(2, sb);
    fmd_tensor *c = fmd_matmul(a, b);
    double worst = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)fmd_data(a)[i * K + k] * fmd_data(b)[k * N + j];
            double e = fabs(s - fmd_data(c)[i * N + j]);
            if (e > worst) worst = e;
        }
    CHECK(worst < 1e-4);
    /* a large one goes through the threaded split */
    int64_t big[2] = {300, 300};
    fmd_tensor *x = fmd_randn(2, big), *y = fmd_randn(2, big);
    fmd_tensor *z = fmd_matmul(x, y);
    double s = 0;
    for (int64_t k = 0; k < 300; k++) s += (double)fmd_data(x)[299 * 300 + k] * fmd_data(y)[k * 300 + 7];
    CHECK_NEAR(fmd_data(z)[299 * 300 + 7], s, 1e-4);
    /* transposed operand */
    fmd_tensor *at = fmd_transpose(a, 0, 1);   /* (K,M) */
    fmd_tensor *c2 = fmd_matmul(at, c);        /* (K,N)? no: (K,M)@(M,N) */
    CHECK(c2 && c2->shape[0] == K && c2->shape[1] == N);
    fmd_tensor *bad = fmd_new(2, (int64_t)4, (int64_t)5);
    fmd_tensor *a23 = fmd_new(2, (int64_t)2, (int64_t)3);
    CHECK(fmd_matmul(a23, bad) == NULL);
    CHECK(strcmp(fmd_error(), "matmul: [2 x 3] and [4 x 5] do not match (3 ~= 4)") == 0);
    fmd_release(a); fmd_release(b); fmd_release(c); fmd_release(x); fmd_release(y); fmd_release(z);
    fmd_release(at); fmd_release(c2); fmd_release(bad); fmd_release(a23);
}

static void test_rng(void) {
    fmd_manual_seed(42);
    uint64_t a = fmd_rng_u64(), b = fmd_rng_u64();
    fmd_manual_seed(42);
    CHECK(fmd_rng_u64() == a && fmd_rng_u64() == b);
    /* the stream is fixed by the algorithm (xoshiro256** seeded by
     * splitmix64): the same on every machine */
    fmd_rng r;
    fmd_rng_seed(&r, 0);
    CHECK(fmd_rng_next(&r) == 0x99ec5f36cb75f2b4ull);
    int64_t n = 100000;
    fmd_tensor *u = fmd_rand(1, &n), *g = fmd_randn(1, &n);
    double su = 0, sg = 0, sg2 = 0;
    int64_t out_of_range = 0;
    for (int64_t i = 0; i < n; i++) {
        su += fmd_data(u)[i]; sg += fmd_data(g)[i]; sg2 += fmd_data(g)[i] * fmd_data(g)[i];
        out_of_range += !(fmd_data(u)[i] >= 0 && fmd_data(u)[i] < 1);
    }
    CHECK(out_of_range == 0);
    CHECK(fabs(su / n - 0.5) < 0.01);
    CHECK(fabs(sg / n) < 0.02 && fabs(sg2 / n - 1) < 0.02);
    fmd_release(u); fmd_release(g);
}

static void test_autograd(void) {
    /* y = sum((a * b + a) ^ 2), dy/da = 2(ab+a)(b+1), dy/db = 2(ab+a)a */
    int64_t s[1] = {3};
    float av[3] = {1, 2, 3}, bv[3] = {0.5f, -1, 2};
    fmd_tensor *a = fmd_from_floats(1, s, av), *b = fmd_from_floats(1, s, bv);
    fmd_set_requires_grad(a, 1);
    fmd_set_requires_grad(b, 1);
    fmd_tensor *ab = fmd_mul(a, b), *u = fmd_add(ab, a), *p = fmd_pow_scalar(u, 2), *y = fmd_sum(p, -1, 0);
    CHECK(y->grad_fn != NULL);
    CHECK(fmd_backward(y, NULL) == 0);
    for (int i = 0; i < 3; i++) {
        float uu = av[i] * bv[i] + av[i];
        CHECK_NEAR(fmd_data(a->grad)[i], 2 * uu * (bv[i] + 1), 1e-6);
        CHECK_NEAR(fmd_data(b->grad)[i], 2 * uu * av[i], 1e-6);
    }
    /* graph freed; non-leaf grads not kept */
    CHECK(y->grad_fn && y->grad_fn->backward == NULL && ab->grad == NULL);
    CHECK(fmd_backward(y, NULL) == -1 && strstr(fmd_error(), "second time"));
    /* second backward on a new graph accumulates */
    fmd_tensor *y2 = fmd_sum(a, -1, 0);
    fmd_backward(y2, NULL);
    CHECK_NEAR(fmd_data(a->grad)[0], 2 * 1.5 * 1.5 + 1, 1e-6);
    /* no_grad mode records nothing */
    int prev = fmd_set_grad_enabled(0);
    fmd_tensor *q = fmd_mul(a, b);
    CHECK(q->grad_fn == NULL && !q->requires_grad);
    fmd_set_grad_enabled(prev);
    /* backward of a non-scalar without gradient is an error */
    fmd_tensor *w = fmd_mul(a, b);
    CHECK(fmd_backward(w, NULL) == -1 && strstr(fmd_error(), "one-element"));
    fmd_release(a); fmd_release(b); fmd_release(ab); fmd_release(u); fmd_release(p); fmd_release(y);
    fmd_release(y2); fmd_release(q); fmd_release(w);
}

typedef struct { int64_t n; int64_t *hits; } par_ctx;
static void par_task(void *p, int ith, int nth) {
    par_ctx *c = p;
    int64_t b, e;
    fmd_split(c->n, ith, nth, &b, &e);
    for (int64_t i = b; i < e; i++) c->hits[i] += 1 + (fmd_in_parallel() ? 0 : 100);
}

static void test_threads(void) {
    fmd_set_num_threads(2);
    CHECK(fmd_get_num_threads() == 2);
    int64_t hits[1000] = {0};
    par_ctx c = {1000, hits};
    for (int k = 0; k < 50; k++) fmd_parallel(par_task, &c);
    int ok = 1;
    for (int i = 0; i < 1000; i++) ok &= hits[i] == 50;
    CHECK(ok);   /* every item exactly once per run, always inside the region */
}

int main(void) {
    test_views();
    test_broadcast();
    test_reductions();
    test_matmul();
    test_rng();
    test_autograd();
    test_threads();
    CHECK(fmd_bytes_in_use() == 0);   /* everything released */
    return TEST_SUMMARY();
}
