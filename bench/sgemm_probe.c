/* sgemm_probe.c - the machine's practical GEMM ceiling for bench/compare.sh:
 * median GFLOP/s of cblas_sgemm (n x n @ n x n, row-major, no transpose) on
 * 1 thread and on `threads` OpenBLAS threads, and which kernel OpenBLAS
 * picked for this CPU (openblas_get_corename); then the same for fmd's own
 * AVX-512 kernel (engine/gemm.c, fmd_sgemm512: null without AVX-512), on
 * `threads` pthreads that split the rows as fmd_sgemm does. One JSON line.
 *
 *   cc -O2 -Iengine bench/sgemm_probe.c engine/gemm.c -o probe -lpthread \
 *      $(pkg-config --cflags --libs openblas)
 *   ./probe [n=2048] [reps=5] [threads=2]
 *
 * Links the same libopenblas as fmd (pkg-config openblas). */
#include "fmd_impl.h"   /* fmd_sgemm512 is internal */

#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* from OpenBLAS's cblas.h; declared again in case an older header lacks them */
char *openblas_get_corename(void);
char *openblas_get_config(void);
void openblas_set_num_threads(int);

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp);
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

/* median seconds of reps sgemm calls after one warm-up */
static double median_sgemm(int n, int reps, const float *a, const float *b, float *c) {
    double t[64];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t[r] = now() - t0;
    }
    return median(t, reps);
}

typedef struct { int n, ith, nth; const float *a, *b; float *c; } part;

static void *fmd_part(void *p) {
    const part *q = p;
    int64_t r0 = (int64_t)q->n * q->ith / q->nth, r1 = (int64_t)q->n * (q->ith + 1) / q->nth;
    fmd_sgemm512(0, 0, r1 - r0, q->n, q->n, 1.0f, q->a + r0 * q->n, q->n, q->b, q->n, 0.0f, q->c + r0 * q->n, q->n);
    return NULL;
}

/* median seconds of fmd_sgemm512 over nth threads, each a band of rows */
static double median_fmd(int n, int reps, int nth, const float *a, const float *b, float *c) {
    double t[64];
    pthread_t th[256];
    part p[256];
    for (int r = -1; r < reps; r++) {
        double t0 = now();
        for (int i = 0; i < nth; i++) {
            p[i] = (part){n, i, nth, a, b, c};
            if (i) pthread_create(&th[i], NULL, fmd_part, &p[i]);
        }
        fmd_part(&p[0]);
        for (int i = 1; i < nth; i++) pthread_join(th[i], NULL);
        if (r >= 0) t[r] = now() - t0;
    }
    return median(t, reps);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 2048, reps = argc > 2 ? atoi(argv[2]) : 5;
    int threads = argc > 3 ? atoi(argv[3]) : 2;
    if (n < 16 || n > 16384 || reps < 1 || reps > 64 || threads < 1 || threads > 256) {
        fprintf(stderr, "usage: sgemm_probe [n 16..16384] [reps 1..64] [threads >= 1]\n");
        return 2;
    }
    size_t nn = (size_t)n * (size_t)n;
    float *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
    if (!a || !b || !c) { fprintf(stderr, "sgemm_probe: out of memory for n = %d\n", n); return 1; }
    srand(1);
    for (size_t i = 0; i < nn; i++) { a[i] = rand() / (float)RAND_MAX - 0.5f; b[i] = rand() / (float)RAND_MAX - 0.5f; }
    double flops = 2.0 * n * (double)n * n;
    openblas_set_num_threads(1);
    double t1 = median_sgemm(n, reps, a, b, c);
    openblas_set_num_threads(threads);
    double tn = median_sgemm(n, reps, a, b, c);
    const char *core = openblas_get_corename(), *cfg = openblas_get_config();
    const char *env = getenv("OPENBLAS_CORETYPE");
    char f1[32] = "null", fn[32] = "null";
    if (fmd_cpu_avx512()) {
        snprintf(f1, sizeof f1, "%.2f", flops / median_fmd(n, reps, 1, a, b, c) / 1e9);
        snprintf(fn, sizeof fn, "%.2f", flops / median_fmd(n, reps, threads, a, b, c) / 1e9);
    }
    printf("{\"probe\": \"cblas_sgemm\", \"n\": %d, \"reps\": %d, \"gflops_1thread\": %.2f, \"threads\": %d, "
           "\"gflops_threads\": %.2f, \"corename\": \"%s\", \"config\": \"%s\", \"OPENBLAS_CORETYPE\": %s%s%s, "
           "\"fmd_gflops_1thread\": %s, \"fmd_gflops_threads\": %s}\n",
           n, reps, flops / t1 / 1e9, threads, flops / tn / 1e9, core ? core : "?", cfg ? cfg : "?",
           env ? "\"" : "", env ? env : "null", env ? "\"" : "", f1, fn);
    free(a); free(b); free(c);
    return 0;
}
