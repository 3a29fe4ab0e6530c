/* sgemm against a naive double loop: gemm.c's AVX-512 kernel directly
 * (every transpose, edges of its 12 x 32 tile, its 4- and 8-row edge
 * tiles, the edges of its 144 / 256 / 512 blocks, leading dimensions wider
 * than a row, alpha and beta, beta = 0 over NaN), and fmd_sgemm, which
 * picks that kernel or OpenBLAS and splits over the threads. Without
 * AVX-512 fmd_sgemm512 must decline and leave C alone. */
#include "fmd_impl.h"   /* the GEMM kernels are internal */
#include "test.h"

#include <math.h>
#include <stdlib.h>

typedef struct { int ta, tb, M, N, K, pad; float alpha, beta; } gcase;

static float rnd(void) { return (float)rand() / RAND_MAX - 0.5f; }

/* max |got - want| / (1 + |want|) over C, want in double */
static double check(const gcase *g, int use512) {
    int64_t lda = (g->ta ? g->M : g->K) + g->pad, ldb = (g->tb ? g->K : g->N) + g->pad, ldc = g->N + g->pad;
    int64_t na = (g->ta ? g->K : g->M) * lda, nb = (g->tb ? g->N : g->K) * ldb, nc = g->M * ldc;
    float *A = malloc(sizeof(float) * na), *B = malloc(sizeof(float) * nb), *C = malloc(sizeof(float) * nc);
    double *want = malloc(sizeof(double) * nc);
    for (int64_t i = 0; i < na; i++) A[i] = rnd();
    for (int64_t i = 0; i < nb; i++) B[i] = rnd();
    for (int64_t i = 0; i < nc; i++) C[i] = g->beta == 0 ? NAN : rnd();
    for (int64_t i = 0; i < g->M; i++)
        for (int64_t j = 0; j < ldc; j++) {
            if (j >= g->N) { want[i * ldc + j] = C[i * ldc + j]; continue; }   /* padding stays */
            double s = 0;
            for (int64_t k = 0; k < g->K; k++)
                s += (double)(g->ta ? A[k * lda + i] : A[i * lda + k]) * (g->tb ? B[j * ldb + k] : B[k * ldb + j]);
            want[i * ldc + j] = g->alpha * s + (g->beta == 0 ? 0 : g->beta * (double)C[i * ldc + j]);
        }
    if (use512) {
        if (fmd_sgemm512(g->ta, g->tb, g->M, g->N, g->K, g->alpha, A, lda, B, ldb, g->beta, C, ldc)) {
            free(A); free(B); free(C); free(want);
            return INFINITY;
        }
    } else {
        fmd_sgemm(g->ta, g->tb, g->M, g->N, g->K, g->alpha, A, lda, B, ldb, g->beta, C, ldc);
    }
    double worst = 0;
    for (int64_t i = 0; i < nc; i++) {
        double e = isnan(want[i]) ? (isnan(C[i]) ? 0 : INFINITY) : fabs(C[i] - want[i]) / (1 + fabs(want[i]));
        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
    }
    free(A); free(B); free(C); free(want);
    return worst;
}

int main(void) {
    srand(11);
    static const gcase cases[] = {
        {0, 0, 12, 32, 8, 0, 1, 0},            /* one full tile */
        {0, 0, 1, 1, 1, 0, 1, 0},
        {0, 0, 13, 33, 5, 3, 1, 0},            /* one past the tile both ways, padded rows */
        {1, 0, 25, 47, 300, 1, 0.5f, 2},       /* K over one 256 block */
        {0, 1, 150, 70, 257, 0, 1, 1},         /* M over one 144 block, accumulate */
        {1, 1, 31, 530, 40, 2, -1, 0.25f},     /* N over one 512 block */
        {0, 0, 145, 513, 513, 0, 1, 0},        /* every block edge at once */
        {1, 0, 728, 64, 96, 0, 1, 1},          /* a pointwise conv's input-gradient shape */
        {0, 1, 64, 96, 600, 5, 1, 1},          /* a weight-gradient shape */
        {0, 0, 7, 3, 1000, 0, 2, 0},
        {1, 0, 16, 40, 30, 2, 1, 0.5f},        /* 4 rows over 12, read in place */
        {0, 1, 20, 33, 70, 1, 1, 0},           /* 8 rows over 12, read in place */
        {0, 0, 9, 20, 17, 0, 1, 1},            /* 9 rows: a packed edge of 12 */
    };
    int ncases = (int)(sizeof cases / sizeof *cases);
    if (fmd_cpu_avx512()) {
        for (int i = 0; i < ncases; i++) {
            double e = check(&cases[i], 1);
            if (e > 1e-5) fprintf(stderr, "fmd_sgemm512 case %d: max rel error %g\n", i, e);
            CHECK(e <= 1e-5);
        }
    } else {
        float a = 1, b = 1, c = 7;
        CHECK(fmd_sgemm512(0, 0, 1, 1, 1, 1, &a, 1, &b, 1, 0, &c, 1) == -1);
        CHECK(c == 7);
    }
    CHECK(fmd_sgemm512(0, 0, 0, 5, 5, 1, NULL, 5, NULL, 5, 0, NULL, 5) == -1);   /* empty: declined */
    for (int nth = 1; nth <= 2; nth++) {
        fmd_set_num_threads(nth);
        for (int i = 0; i < ncases; i++) {
            double e = check(&cases[i], 0);
            if (e > 1e-5) fprintf(stderr, "fmd_sgemm (%s, %d threads) case %d: max rel error %g\n",
                                  fmd_gemm_backend(), nth, i, e);
            CHECK(e <= 1e-5);
        }
    }
    printf("fmd_sgemm backend: %s\n", fmd_gemm_backend());
    return TEST_SUMMARY();
}
