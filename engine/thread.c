/* thread.c - the pthread pool and the threaded sgemm wrapper.
 *
 * Policy: OpenBLAS is set to one thread at start-up. Parallelism comes only
 * from this pool, which splits an outer dimension (ith of nth). Inside a
 * parallel region fmd_parallel runs the task serially, so nothing nests.
 * Each piece of a GEMM runs on one single-threaded kernel, OpenBLAS's or
 * gemm.c's AVX-512 one, chosen once (pick_backend). */
#include "fmd_impl.h"

#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

void openblas_set_num_threads(int);

#define MAX_THREADS 64

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv_work = PTHREAD_COND_INITIALIZER, cv_done = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t submit_mu = PTHREAD_MUTEX_INITIALIZER;   /* one job at a time */
static pthread_t workers[MAX_THREADS];
static int nworkers;            /* started worker threads (pool size - 1) */
static int nthreads_wanted;     /* 0 until initialised */
static uint64_t generation;
static int pending;
static fmd_task_fn job_fn;
static void *job_ctx;
static int job_nth;
static _Thread_local int in_parallel;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void *worker_main(void *arg) {
    int ith = (int)(intptr_t)arg;
    uint64_t seen = 0;
    in_parallel = 1;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (generation == seen) pthread_cond_wait(&cv_work, &mu);
        seen = generation;
        if (ith < job_nth) {
            fmd_task_fn fn = job_fn;
            void *ctx = job_ctx;
            int nth = job_nth;
            pthread_mutex_unlock(&mu);
            fn(ctx, ith, nth);
            pthread_mutex_lock(&mu);
            if (--pending == 0) pthread_cond_signal(&cv_done);
        }
    }
    return NULL;
}

char *openblas_get_corename(void);

/* Which kernel runs a GEMM (use512, resolved in init_once): gemm.c's AVX-512
 * one where the CPU has AVX-512 and OpenBLAS does not use it (its kernel is
 * an AVX2 one, e.g. OPENBLAS_CORETYPE=Haswell on a Zen 5), else OpenBLAS.
 * FMD_GEMM=openblas or FMD_GEMM=avx512 overrides the choice. */
static int use512;

static int pick_backend(void) {
    const char *want = getenv("FMD_GEMM");
    if (want && !strcmp(want, "openblas")) return 0;
    if (!fmd_cpu_avx512()) return 0;
    if (want && !strcmp(want, "avx512")) return 1;
    /* auto: keep OpenBLAS where it runs an AVX-512 kernel itself */
    const char *core = openblas_get_corename();
    static const char *wide[] = {"skylakex", "cooperlake", "sapphirerapids"};
    for (size_t i = 0; core && i < sizeof wide / sizeof *wide; i++)
        if (!strcasecmp(core, wide[i])) return 0;
    return 1;
}

static void init_once(void) {
    openblas_set_num_threads(1);
    use512 = pick_backend();
    if (!nthreads_wanted) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads_wanted = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
    }
}

static void ensure_workers(int n) {   /* called with submit_mu held */
    while (nworkers < n - 1) {
        if (pthread_create(&workers[nworkers], NULL, worker_main, (void *)(intptr_t)(nworkers + 1))) break;
        pthread_detach(workers[nworkers]);
        nworkers++;
    }
}

void fmd_set_num_threads(int n) {
    pthread_once(&once, init_once);
    if (n < 1) n = 1;
    if (n > MAX_THREADS) n = MAX_THREADS;
    nthreads_wanted = n;
}

int fmd_get_num_threads(void) {
    pthread_once(&once, init_once);
    return nthreads_wanted;
}

int fmd_in_parallel(void) { return in_parallel; }

void fmd_parallel_n(fmd_task_fn fn, void *ctx, int max_nth) {
    pthread_once(&once, init_once);
    int nth = nthreads_wanted < max_nth ? nthreads_wanted : max_nth;
    if (nth <= 1 || in_parallel) { fn(ctx, 0, 1); return; }
    pthread_mutex_lock(&submit_mu);
    ensure_workers(nth);
    if (nworkers + 1 < nth) nth = nworkers + 1;
    pthread_mutex_lock(&mu);
    job_fn = fn; job_ctx = ctx; job_nth = nth;
    pending = nth - 1;
    generation++;
    pthread_cond_broadcast(&cv_work);
    pthread_mutex_unlock(&mu);
    in_parallel = 1;
    fn(ctx, 0, nth);
    in_parallel = 0;
    pthread_mutex_lock(&mu);
    while (pending > 0) pthread_cond_wait(&cv_done, &mu);
    pthread_mutex_unlock(&mu);
    pthread_mutex_unlock(&submit_mu);
}

void fmd_parallel(fmd_task_fn fn, void *ctx) { fmd_parallel_n(fn, ctx, MAX_THREADS); }

/* ----------------------------------------------------------------- sgemm */
typedef struct {
    int ta, tb; int64_t M, N, K; float alpha; const float *A; int64_t lda;
    const float *B; int64_t ldb; float beta; float *C; int64_t ldc; int split_rows;
} gemm_job;

const char *fmd_gemm_backend(void) {
    pthread_once(&once, init_once);
    return use512 ? "fmd-avx512" : "openblas";
}

static void blas(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (use512 && !fmd_sgemm512(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

static void gemm_task(void *p, int ith, int nth) {
    gemm_job *j = p;
    int64_t b, e;
    if (j->split_rows) {
        fmd_split(j->M, ith, nth, &b, &e);
        /* rows of op(A): row i of A (no trans) or column i (trans) */
        const float *A = j->ta ? j->A + b : j->A + b * j->lda;
        blas(j->ta, j->tb, e - b, j->N, j->K, j->alpha, A, j->lda, j->B, j->ldb, j->beta, j->C + b * j->ldc, j->ldc);
    } else {
        fmd_split(j->N, ith, nth, &b, &e);
        const float *B = j->tb ? j->B + b * j->ldb : j->B + b;
        blas(j->ta, j->tb, j->M, e - b, j->K, j->alpha, j->A, j->lda, B, j->ldb, j->beta, j->C + b, j->ldc);
    }
}

void fmd_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
               float *C, int64_t ldc) {
    pthread_once(&once, init_once);
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {   /* C = beta * C */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
        return;
    }
    double flops = 2.0 * (double)M * (double)N * (double)K;
    if (in_parallel || nthreads_wanted <= 1 || flops < 4e6) {
        blas(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* split the larger side of C over the pool */
    gemm_job j = {transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, M >= N};
    fmd_parallel(gemm_task, &j);
}
