/* sgemm_probe.c - the machine's practical GEMM ceiling for bench/compare.sh:
 * median GFLOP/s of cblas_sgemm (n x n @ n x n, row-major, no transpose) on
 * 1 thread and on `threads` OpenBLAS threads, and which kernel OpenBLAS
 * picked for this CPU (openblas_get_corename). One JSON line.
 *
 *   cc -O2 bench/sgemm_probe.c -o probe $(pkg-config --cflags --libs openblas)
 *   ./probe [n=2048] [reps=5] [threads=2]
 *
 * Links the same libopenblas as fmd (pkg-config openblas). */
#include <cblas.h>
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

/* median seconds of reps sgemm calls after one warm-up */
static double median_sgemm(int n, int reps, const float *a, const float *b, float *c) {
    double t[64];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t[r] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    return reps % 2 ? t[reps / 2] : (t[reps / 2 - 1] + t[reps / 2]) / 2;
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
    printf("{\"probe\": \"cblas_sgemm\", \"n\": %d, \"reps\": %d, \"gflops_1thread\": %.2f, \"threads\": %d, "
           "\"gflops_threads\": %.2f, \"corename\": \"%s\", \"config\": \"%s\", \"OPENBLAS_CORETYPE\": %s%s%s}\n",
           n, reps, flops / t1 / 1e9, threads, flops / tn / 1e9, core ? core : "?", cfg ? cfg : "?",
           env ? "\"" : "", env ? env : "null", env ? "\"" : "");
    free(a); free(b); free(c);
    return 0;
}
