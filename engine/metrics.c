/* metrics.c - detection metrics with scikit-learn 1.2's semantics
 * (sklearn/metrics/_ranking.py): the sorted cumulative counts of
 * _binary_clf_curve and the curves and numbers derived from them. Labels
 * come first, then scores, as sklearn's (y_true, y_score), both as doubles
 * so results agree with sklearn's float64 to ~1e-15. Inputs are checked by
 * the caller (bindings/lua_metrics.c): n >= 1, finite scores, labels 0 or
 * 1, and the classes each function needs. */
#include "fmd_impl.h"

#include <stdlib.h>
#include <string.h>

#define RADIX_BITS 8     /* 256 buckets: faster scatter than 11 or 16 bits here */
#define RADIX_SIZE (1 << RADIX_BITS)
#define RADIX_PASSES 8

/* double -> uint64 in descending order of the doubles: the IEEE bits as
 * unsigned integers in ascending order, complemented. -0.0 maps as 0.0. */
static uint64_t desc_key(double x) {
    if (x == 0) x = 0.0;
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    u = (u >> 63) ? ~u : u | ((uint64_t)1 << 63);
    return ~u;
}

static double key_value(uint64_t k) {
    uint64_t u = ~k;
    u = (u >> 63) ? u & ~((uint64_t)1 << 63) : ~u;
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* v, y are (n,), n < 2^31; key, pay are (n,) outputs: the keys of v sorted
 * ascending (scores descending, ties in index order) and their payloads
 * 2 i + y[i] (so the curve needs no random access).
 * LSD radix sort, linear time (~10x faster than a comparison sort at 10^6),
 * over only the bits that differ between keys: float32 scores leave the low
 * 29 mantissa bits zero, so scores of a model in (0, 1) take 4 passes. */
static int radix_desc(const double *v, const double *y, int64_t n, uint64_t *key, uint32_t *pay) {
    uint64_t *kb = malloc((size_t)n * sizeof *kb);
    uint32_t *pb = malloc((size_t)n * sizeof *pb);
    size_t (*hist)[RADIX_SIZE] = calloc(RADIX_PASSES, sizeof *hist);
    if (!kb || !pb || !hist) {
        free(kb); free(pb); free(hist);
        return fmd_fail("binary_clf_curve: out of memory sorting %lld scores", (long long)n);
    }
    uint64_t all_or = 0, all_and = ~(uint64_t)0;
    for (int64_t i = 0; i < n; i++) {
        key[i] = desc_key(v[i]);
        pay[i] = 2 * (uint32_t)i + (y[i] != 0);
        all_or |= key[i];
        all_and &= key[i];
    }
    uint64_t diff = all_or ^ all_and;
    int lo = 0, hi = 63;
    while (lo < 64 && !(diff >> lo & 1)) lo++;
    while (hi >= lo && !(diff >> hi & 1)) hi--;
    int passes = (hi - lo + RADIX_BITS) / RADIX_BITS;   /* 0 when all keys are equal */
    for (int64_t i = 0; i < n; i++)
        for (int p = 0; p < passes; p++) hist[p][(key[i] >> (lo + p * RADIX_BITS)) & (RADIX_SIZE - 1)]++;
    uint64_t *ka = key;
    uint32_t *pa = pay;
    for (int p = 0; p < passes; p++) {
        int shift = lo + p * RADIX_BITS;
        size_t sum = 0;
        for (int d = 0; d < RADIX_SIZE; d++) {
            size_t c = hist[p][d];
            hist[p][d] = sum;
            sum += c;
        }
        for (int64_t i = 0; i < n; i++) {
            size_t at = hist[p][(ka[i] >> shift) & (RADIX_SIZE - 1)]++;
            kb[at] = ka[i];
            pb[at] = pa[i];
        }
        uint64_t *kt = ka; ka = kb; kb = kt;
        uint32_t *pt = pa; pa = pb; pb = pt;
    }
    if (ka != key) {
        memcpy(key, ka, (size_t)n * sizeof *key);
        memcpy(pay, pa, (size_t)n * sizeof *pay);
        kb = ka;
        pb = pa;
    }
    free(kb); free(pb); free(hist);
    return 0;
}

/* y, score are (n,); fps, tps, thr are (n,) buffers of the caller. Fills
 * c->m <= n points, one per distinct score from the highest down: thr[k] is
 * the score, tps[k]/fps[k] count the positives/negatives scoring >= thr[k]
 * (sklearn's _binary_clf_curve without weights). */
int fmd_binary_clf_curve(const double *y, const double *score, int64_t n, fmd_clf_curve *c) {
    if (n <= 0) return fmd_fail("binary_clf_curve: no scores");
    if (n > INT32_MAX / 2) return fmd_fail("binary_clf_curve: %lld scores, at most 2^30 - 1 supported", (long long)n);
    uint64_t *key = malloc((size_t)n * sizeof *key);
    uint32_t *pay = malloc((size_t)n * sizeof *pay);
    int r = key && pay ? radix_desc(score, y, n, key, pay)
                       : fmd_fail("binary_clf_curve: out of memory for %lld scores", (long long)n);
    double tp = 0;
    int64_t m = 0;
    for (int64_t i = 0; r == 0 && i < n; i++) {
        tp += (double)(pay[i] & 1);
        if (i == n - 1 || key[i + 1] != key[i]) {
            c->tps[m] = tp;
            c->fps[m] = (double)(i + 1) - tp;
            c->thr[m] = key_value(key[i]);
            m++;
        }
    }
    c->m = m;
    free(key); free(pay);
    return r;
}

/* fpr, tpr, thr are (m+1,): sklearn's roc_curve(drop_intermediate=False),
 * which starts at (0, 0) with the threshold max score + 1. Needs P, N > 0. */
void fmd_roc_curve(const fmd_clf_curve *c, double *fpr, double *tpr, double *thr) {
    double P = c->tps[c->m - 1], N = c->fps[c->m - 1];
    fpr[0] = tpr[0] = 0;
    thr[0] = c->thr[0] + 1;
    for (int64_t k = 0; k < c->m; k++) {
        fpr[k + 1] = c->fps[k] / N;
        tpr[k + 1] = c->tps[k] / P;
        thr[k + 1] = c->thr[k];
    }
}

/* fpr, fnr, thr are (m,) buffers; returns how many points sklearn's
 * det_curve keeps: from the last point with the first fps (fpr still at its
 * minimum) to the first point with all positives found (fnr = 0), in
 * reverse, so fpr decreases. Needs P, N > 0. */
int64_t fmd_det_curve(const fmd_clf_curve *c, double *fpr, double *fnr, double *thr) {
    double P = c->tps[c->m - 1], N = c->fps[c->m - 1];
    int64_t first = 0, last = 0;
    while (first + 1 < c->m && c->fps[first + 1] == c->fps[0]) first++;
    while (c->tps[last] != P) last++;
    int64_t cnt = 0;
    for (int64_t k = last; k >= first; k--, cnt++) {
        fpr[cnt] = c->fps[k] / N;
        fnr[cnt] = (P - c->tps[k]) / P;
        thr[cnt] = c->thr[k];
    }
    return cnt;
}

/* precision, recall are (m+1,), thr is (m,): sklearn 1.2's
 * precision_recall_curve, thresholds ascending, ending at (recall 0,
 * precision 1). Needs P > 0 (sklearn sets recall to 1 when P = 0). */
void fmd_precision_recall_curve(const fmd_clf_curve *c, double *precision, double *recall, double *thr) {
    int64_t m = c->m;
    double P = c->tps[m - 1];
    for (int64_t k = 0; k < m; k++) {
        /* every point adds at least one sample, so tps + fps > 0 */
        precision[m - 1 - k] = c->tps[k] / (c->tps[k] + c->fps[k]);
        recall[m - 1 - k] = c->tps[k] / P;
        thr[m - 1 - k] = c->thr[k];
    }
    precision[m] = 1;
    recall[m] = 0;
}

/* roc_auc_score: the trapezoid area under the ROC. The counts are integers,
 * so the sum of 2 * area * P * N is exact in doubles (< 2^53 for n < 10^7)
 * and the result has one rounding. Needs P, N > 0. */
double fmd_roc_auc(const fmd_clf_curve *c) {
    double P = c->tps[c->m - 1], N = c->fps[c->m - 1];
    double sum = 0, fp0 = 0, tp0 = 0;
    for (int64_t k = 0; k < c->m; k++) {
        sum += (c->fps[k] - fp0) * (c->tps[k] + tp0);
        fp0 = c->fps[k];
        tp0 = c->tps[k];
    }
    return sum / (2 * P * N);
}

/* average_precision_score: sum over points of (recall step) * precision,
 * i.e. -sum(diff(recall) * precision[:-1]) of sklearn's reversed curve.
 * Needs P > 0. */
double fmd_average_precision(const fmd_clf_curve *c) {
    double P = c->tps[c->m - 1], ap = 0, tp0 = 0;
    for (int64_t k = 0; k < c->m; k++) {
        ap += (c->tps[k] - tp0) * (c->tps[k] / (c->tps[k] + c->fps[k]));
        tp0 = c->tps[k];
    }
    return ap / P;
}

/* Equal error rate on the ROC of fmd_roc_curve (points k = 0..m, k = 0 being
 * (0, 0) at threshold max + 1), with fnr = 1 - tpr and d = fnr - fpr, which
 * falls from 1 to -1. k is the first point with d <= 0; between points k-1
 * and k, t = d[k-1] / (d[k-1] - d[k]) and
 *   eer = (1-t) fpr[k-1] + t fpr[k]  (= (1-t) fnr[k-1] + t fnr[k])
 *   thr = (1-t) thr[k-1] + t thr[k]
 * so a point with fpr = fnr exactly gives its own rate and threshold.
 * Needs P, N > 0. */
void fmd_eer(const fmd_clf_curve *c, double *eer, double *thr) {
    double P = c->tps[c->m - 1], N = c->fps[c->m - 1];
    double fpr0 = 0, d0 = 1, thr0 = c->thr[0] + 1;
    int64_t k = 0;
    double fpr = c->fps[0] / N, d = (P - c->tps[0]) / P - fpr;
    /* the last point has d = -1, so this stops by k = m - 1 */
    while (d > 0 && k + 1 < c->m) {
        fpr0 = fpr; d0 = d; thr0 = c->thr[k];
        k++;
        fpr = c->fps[k] / N;
        d = (P - c->tps[k]) / P - fpr;
    }
    double t = d0 / (d0 - d);
    *eer = (1 - t) * fpr0 + t * fpr;
    *thr = (1 - t) * thr0 + t * c->thr[k];
}

/* y, score are (n,): counts of (true, predicted) with predicted fake when
 * score >= threshold; cm = {tn, fp, fn, tp} (sklearn's confusion_matrix
 * read row by row). */
void fmd_confusion(const double *y, const double *score, int64_t n, double threshold, int64_t cm[4]) {
    cm[0] = cm[1] = cm[2] = cm[3] = 0;
    for (int64_t i = 0; i < n; i++) cm[2 * (y[i] != 0) + (score[i] >= threshold)]++;
}
