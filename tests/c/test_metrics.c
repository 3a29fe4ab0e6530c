/* fmd_argsort_desc against qsort on (value descending, index ascending):
 * ties, negatives, signed zeros, tiny and huge magnitudes, sizes 1..2*10^5
 * (the radix sort skips passes whose digit all keys share, so both narrow
 * and wide value ranges are covered). The metrics themselves are compared
 * with scikit-learn in tests/lua/test_metrics.lua. */
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

/* v is (n,): 1 when fmd_argsort_desc equals the stable reference order */
static int same_as_reference(const double *v, int64_t n) {
    int64_t *got = malloc((size_t)n * sizeof *got), *want = malloc((size_t)n * sizeof *want);
    for (int64_t i = 0; i < n; i++) want[i] = i;
    ref_v = v;
    qsort(want, (size_t)n, sizeof *want, cmp_desc);
    int ok = fmd_argsort_desc(v, n, got) == 0;
    for (int64_t i = 0; ok && i < n; i++) ok = got[i] == want[i];
    free(got);
    free(want);
    return ok;
}

int main(void) {
    static const double special[] = {0.0, -0.0, 1.0, -1.0, 1e-300, -1e-300, 1e300, -1e300, 0.5, 0.5, -0.0, 2.0};
    CHECK(same_as_reference(special, 12));
    CHECK(same_as_reference(special, 1));
    fmd_manual_seed(3);
    int64_t sizes[] = {2, 3, 17, 1000, 200000};
    for (int s = 0; s < 5; s++) {
        int64_t n = sizes[s];
        double *v = malloc((size_t)n * sizeof *v);
        /* many ties: integers 0..9 */
        for (int64_t i = 0; i < n; i++) v[i] = (double)(fmd_rng_u64() % 10);
        CHECK(same_as_reference(v, n));
        /* logits: both signs, few ties */
        for (int64_t i = 0; i < n; i++) v[i] = fmd_rng_normal() * 3;
        CHECK(same_as_reference(v, n));
        /* probabilities from float32, as a model outputs them */
        for (int64_t i = 0; i < n; i++) v[i] = (float)fmd_rng_uniform();
        CHECK(same_as_reference(v, n));
        free(v);
    }
    return TEST_SUMMARY();
}
