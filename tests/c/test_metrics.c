/* fmd_binary_clf_curve (a radix sort of the scores, then one pass) against
 * a reference made with qsort: ties, negatives, signed zeros, tiny and huge
 * magnitudes, sizes 1..2*10^5 (the radix sort skips passes whose digit all
 * keys share, so both narrow and wide value ranges are covered). The
 * metrics themselves are compared with scikit-learn in
 * tests/lua/test_metrics.lua. */
#include "fmd.h"
#include "test.h"

#include <stdlib.h>

static const double *ref_v;

static int cmp_desc(const void *a, const void *b) {
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    double x = ref_v[i], y = ref_v[j];
    if (x != y) return x > y ? -1 : 1;
    return (i > j) - (i < j);
}

/* v, y are (n,): 1 when fmd_binary_clf_curve gives the reference's points:
 * one per distinct score from the highest down (-0 and 0 are one score),
 * with the positives and negatives scoring at least that much */
static int same_as_reference(const double *v, const double *y, int64_t n) {
    int64_t *order = malloc((size_t)n * sizeof *order);
    double *buf = malloc((size_t)(6 * n) * sizeof *buf);
    for (int64_t i = 0; i < n; i++) order[i] = i;
    ref_v = v;
    qsort(order, (size_t)n, sizeof *order, cmp_desc);
    fmd_clf_curve got = {0, buf, buf + n, buf + 2 * n}, want = {0, buf + 3 * n, buf + 4 * n, buf + 5 * n};
    double tp = 0;
    for (int64_t k = 0; k < n; k++) {
        tp += y[order[k]];
        if (k == n - 1 || v[order[k + 1]] != v[order[k]]) {
            want.tps[want.m] = tp;
            want.fps[want.m] = (double)(k + 1) - tp;
            want.thr[want.m] = v[order[k]];
            want.m++;
        }
    }
    int ok = fmd_binary_clf_curve(y, v, n, &got) == 0 && got.m == want.m;
    for (int64_t k = 0; ok && k < want.m; k++)
        ok = got.tps[k] == want.tps[k] && got.fps[k] == want.fps[k] && got.thr[k] == want.thr[k];
    free(order);
    free(buf);
    return ok;
}

int main(void) {
    static const double special[] = {0.0, -0.0, 1.0, -1.0, 1e-300, -1e-300, 1e300, -1e300, 0.5, 0.5, -0.0, 2.0};
    static const double special_y[] = {1, 0, 0, 1, 1, 0, 1, 0, 1, 0, 1, 1};
    CHECK(same_as_reference(special, special_y, 12));
    CHECK(same_as_reference(special, special_y, 1));
    fmd_manual_seed(3);
    int64_t sizes[] = {2, 3, 17, 1000, 200000};
    for (int s = 0; s < 5; s++) {
        int64_t n = sizes[s];
        double *v = malloc((size_t)n * sizeof *v), *y = malloc((size_t)n * sizeof *y);
        for (int64_t i = 0; i < n; i++) y[i] = (double)(fmd_rng_u64() & 1);
        /* many ties: integers 0..9 */
        for (int64_t i = 0; i < n; i++) v[i] = (double)(fmd_rng_u64() % 10);
        CHECK(same_as_reference(v, y, n));
        /* logits: both signs, few ties */
        for (int64_t i = 0; i < n; i++) v[i] = fmd_rng_normal() * 3;
        CHECK(same_as_reference(v, y, n));
        /* probabilities from float32, as a model outputs them */
        for (int64_t i = 0; i < n; i++) v[i] = (float)fmd_rng_uniform();
        CHECK(same_as_reference(v, y, n));
        free(v);
        free(y);
    }
    return TEST_SUMMARY();
}
