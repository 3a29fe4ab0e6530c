/* gemm.c - fmd's own single-threaded sgemm for AVX-512 machines.
 *
 * Why: fmd_sgemm calls OpenBLAS, whose kernel is chosen for the CPU (or by
 * OPENBLAS_CORETYPE). Where OpenBLAS runs an AVX2 kernel on a CPU with
 * full-width AVX-512 (OPENBLAS_CORETYPE=Haswell on a Zen 5, or a CPU its
 * version does not know), it can reach only half the machine's FMA rate.
 * This file is the half it leaves: a GEMM in BLIS's loop order with a
 * 12 x 32 register tile, compiled for AVX-512 with a target attribute so
 * that the build still runs on machines without it (fmd_cpu_avx512).
 * thread.c decides when to use it (fmd_gemm_backend).
 *
 * Layout (row-major C = alpha * op(A) op(B) + beta * C):
 *   for each NC block of columns, for each KC block of k:
 *     pack op(B)[kc x nc] as panels of NR columns, each kc x NR contiguous
 *     for each MC block of rows, for each NR panel, for each MR panel of
 *       rows: the micro-kernel, reading A in place
 * The micro-kernel keeps the MR x NR tile of C in 24 zmm registers; a B
 * panel (kc x NR, 32 KB) stays in L1 while the A rows (MC x KC, 144 KB)
 * stream from L2. A is not packed: the kernel broadcasts its elements, so
 * its layout costs no vector loads (packing the weights again for every
 * sample of a batch cost 12 % of a training step). A last panel of 4 or 8
 * rows gets a tile of that height; any other last panel of fewer than MR
 * rows is packed, padded with zeros. Columns past N are masked at the store.
 * One thread on a Zen 5 core: 250-258 GFLOP/s on 728 x 256 x 728, 211-225
 * on 728 x 8192 x 728, 213-236 on 2048^3 (OpenBLAS's Haswell kernel
 * 120-130, the AVX-512 FMA peak 265; docs/performance.md, changes 17-21). */
#include "fmd_impl.h"

#include <stdlib.h>
#include <string.h>

#define MR 12
#define NR 32
#define KC 256
#define MC 144     /* 12 panels of MR: 144 x 256 floats = 144 KB of A rows in L2 */
#define NC 512     /* 256 x 512 floats = 512 KB of B in L2 too (4096: -10-15 % on wide C) */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* per-thread pack buffers, made on first use and kept (the pool's threads
 * live as long as the process) */
static _Thread_local float *apack, *bpack;

static int buffers(void) {
    if (!apack) apack = aligned_alloc(64, sizeof(float) * MR * KC);   /* one edge panel */
    if (!bpack) bpack = aligned_alloc(64, sizeof(float) * KC * NC);
    return apack && bpack ? 0 : -1;
}

// op(A) rows [i0, i0+m), m < MR, k [k0, k0+kc) -> ap: kc x MR, zero rows past m
static void pack_edge(int ta, const float *A, int64_t lda, int64_t i0, int64_t m, int64_t k0, int64_t kc,
                      float *ap) {
    for (int64_t k = 0; k < kc; k++, ap += MR)
        for (int64_t r = 0; r < MR; r++)
            ap[r] = r >= m ? 0 : ta ? A[(k0 + k) * lda + i0 + r] : A[(i0 + r) * lda + k0 + k];
}

/* 16 x 16 transpose in registers: r[i] holds row i, then column i */
__attribute__((target("avx512f"), always_inline)) static inline void tr16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4)
        for (int h = 0; h < 2; h++) {
            __m512d a = _mm512_castps_pd(t[i + h]), b = _mm512_castps_pd(t[i + h + 2]);
            r[i + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
            r[i + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        }
    for (int i = 0; i < 16; i += 8)
        for (int h = 0; h < 4; h++) {
            t[i + h] = _mm512_shuffle_f32x4(r[i + h], r[i + h + 4], 0x88);
            t[i + h + 4] = _mm512_shuffle_f32x4(r[i + h], r[i + h + 4], 0xdd);
        }
    for (int h = 0; h < 8; h++) {
        r[h] = _mm512_shuffle_f32x4(t[h], t[h + 8], 0x88);
        r[h + 8] = _mm512_shuffle_f32x4(t[h], t[h + 8], 0xdd);
    }
}

/* dst[k * NR + c] = src[c * ldb + k] for c < n (0 past n), k < kn (a
 * multiple of 16): 16 x 16 blocks through registers */
__attribute__((target("avx512f"))) static void pack_bt16(const float *src, int64_t ldb, int n, int64_t kn,
                                                         float *dst) {
    for (int64_t k = 0; k < kn; k += 16)
        for (int h = 0; h < NR; h += 16) {
            __m512 r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                r[i] = h + i < n ? _mm512_loadu_ps(src + (h + i) * ldb + k) : _mm512_setzero_ps();
            tr16(r);
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) _mm512_store_ps(dst + (k + i) * NR + h, r[i]);
        }
}

/* dst[k * NR + c] = src[k * ldb + c] for c < n (0 past n), k < kc: row by
 * row of B, each read once from start to end, so that the hardware
 * prefetcher follows (panel by panel, the reads jump a row per 128 bytes) */
__attribute__((target("avx512f"))) static void pack_b_rows(const float *src, int64_t ldb, int64_t kc, int64_t nc,
                                                           float *bp) {
    const int64_t full = nc / NR * NR;
    const __mmask16 m0 = (__mmask16)(nc - full >= 16 ? 0xFFFF : (1u << (nc - full)) - 1);
    const __mmask16 m1 = (__mmask16)(nc - full <= 16 ? 0 : (1u << (nc - full - 16)) - 1);
    for (int64_t k = 0; k < kc; k++, src += ldb) {
        float *dst = bp + k * NR;
        int64_t j = 0;
        for (; j < full; j += NR, dst += kc * NR) {
            _mm512_store_ps(dst, _mm512_loadu_ps(src + j));
            _mm512_store_ps(dst + 16, _mm512_loadu_ps(src + j + 16));
        }
        if (j < nc) {
            _mm512_store_ps(dst, _mm512_maskz_loadu_ps(m0, src + j));
            _mm512_store_ps(dst + 16, _mm512_maskz_loadu_ps(m1, src + j + 16));
        }
    }
}

// op(B) k [k0, k0+kc), columns [j0, j0+nc) -> bp: ceil(nc/NR) panels of kc x NR
static void pack_b(int tb, const float *B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                   float *bp) {
    if (!tb) {  /* op(B)[k][j] = B[k * ldb + j] */
        pack_b_rows(B + k0 * ldb + j0, ldb, kc, nc, bp);
        return;
    }
    for (int64_t jp = 0; jp < nc; jp += NR) {   /* op(B)[k][j] = B[j * ldb + k]: a transpose */
        int64_t n = nc - jp < NR ? nc - jp : NR;
        float *dst = bp + jp * kc;
        const float *src = B + (j0 + jp) * ldb + k0;
        int64_t k = kc / 16 * 16;
        pack_bt16(src, ldb, (int)n, k, dst);
        for (; k < kc; k++)
            for (int64_t c = 0; c < NR; c++) dst[k * NR + c] = c < n ? src[c * ldb + k] : 0;
    }
}

/* C[mr x nr] (ldc) = alpha * op(A) panel . b-panel + beta * C; beta == 0
 * never reads C. Row r, step k of the A panel is a[r * rs + k * ks]: A read
 * in place (rs = lda, ks = 1 untransposed; rs = 1, ks = lda transposed) or
 * packed (rs = 1, ks = MR). b is packed, kc x NR. R (4, 8 or 12, a
 * constant in each caller) rows are computed, mr <= R stored; rows past mr
 * are read only from a zero-padded pack. */
__attribute__((target("avx512f"), always_inline)) static inline void
tile(int64_t kc, const float *restrict a, int64_t rs, int64_t ks, const float *restrict b, float *c, int64_t ldc,
     float alpha, float beta, int mr, int nr, const float *pf, const int R) {
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) {
        c0[r] = c1[r] = _mm512_setzero_ps();
        /* C is wanted only at the end: fetch it now, under the FMAs (a wide
         * C lives in L3 or memory, and a miss there is ~15 % of a tile) */
        if (r < mr) {
            _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + r * ldc + 16), _MM_HINT_T0);
        }
    }
    for (int64_t k = 0; k < kc; k++, a += ks, b += NR) {
        if (pf && !(k & 15))
#pragma GCC unroll 12
            for (int r = 0; r < R; r++) _mm_prefetch((const char *)(pf + r * rs + k), _MM_HINT_T0);
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) {
            __m512 av = _mm512_set1_ps(a[r * rs]);
            c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
        }
    }
    __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) {
        if (r >= mr) break;
        float *cr = c + r * ldc;
        __m512 v0 = _mm512_mul_ps(va, c0[r]), v1 = _mm512_mul_ps(va, c1[r]);
        if (beta != 0) {
            v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), v0);
            v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), v1);
        }
        _mm512_mask_storeu_ps(cr, m0, v0);
        _mm512_mask_storeu_ps(cr + 16, m1, v1);
    }
}

/* the two shapes of the inner loop, each with one stride known */
__attribute__((target("avx512f"))) static void tile_rows(int64_t kc, const float *a, int64_t lda, const float *b,
                                                         float *c, int64_t ldc, float alpha, float beta, int nr,
                                                         const float *pf) {
    tile(kc, a, lda, 1, b, c, ldc, alpha, beta, MR, nr, pf, MR);
}
__attribute__((target("avx512f"))) static void tile_cols(int64_t kc, const float *a, int64_t ks, const float *b,
                                                         float *c, int64_t ldc, float alpha, float beta, int nr) {
    tile(kc, a, 1, ks, b, c, ldc, alpha, beta, MR, nr, NULL, MR);
}
/* the last panel of m < MR rows: 4 or 8 rows computed where they cover it
 * (channel counts leave 4 or 8 over 12 more often than not: 64, 128, 256,
 * 728), read in place when they are exactly the rows left */
__attribute__((target("avx512f"))) static void tile_edge(int64_t kc, const float *a, int64_t rs, int64_t ks,
                                                         const float *b, float *c, int64_t ldc, float alpha,
                                                         float beta, int m, int nr) {
    if (m <= 4) tile(kc, a, rs, ks, b, c, ldc, alpha, beta, m, nr, NULL, 4);
    else if (m <= 8) tile(kc, a, rs, ks, b, c, ldc, alpha, beta, m, nr, NULL, 8);
    else tile(kc, a, rs, ks, b, c, ldc, alpha, beta, m, nr, NULL, MR);
}

int fmd_sgemm512(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (!fmd_cpu_avx512() || M <= 0 || N <= 0 || K <= 0 || buffers()) return -1;
    for (int64_t j0 = 0; j0 < N; j0 += NC) {
        int64_t nc = N - j0 < NC ? N - j0 : NC;
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            int64_t kc = K - k0 < KC ? K - k0 : KC;
            float be = k0 == 0 ? beta : 1.0f;
            pack_b(tb, B, ldb, k0, kc, j0, nc, bpack);
            /* A is read in place, but for a last panel of fewer than MR rows
             * that is not 4 or 8 (packed with zeros, so no row past M is
             * read) */
            int64_t mfull = M / MR * MR, mleft = M - mfull;
            int edge_packed = mleft && mleft != 4 && mleft != 8;
            if (edge_packed) pack_edge(ta, A, lda, mfull, mleft, k0, kc, apack);
            for (int64_t i0 = 0; i0 < M; i0 += MC) {
                int64_t mc = M - i0 < MC ? M - i0 : MC;
                for (int64_t jp = 0; jp < nc; jp += NR) {
                    int nr = (int)(nc - jp < NR ? nc - jp : NR);
                    const float *bp = bpack + jp * kc;
                    for (int64_t ip = i0; ip < i0 + mc; ip += MR) {
                        float *cp = C + ip * ldc + j0 + jp;
                        if (ip + MR > M && edge_packed)
                            tile_edge(kc, apack, 1, MR, bp, cp, ldc, alpha, be, (int)mleft, nr);
                        else if (ip + MR > M)
                            tile_edge(kc, ta ? A + k0 * lda + ip : A + ip * lda + k0, ta ? 1 : lda, ta ? lda : 1, bp,
                                      cp, ldc, alpha, be, (int)mleft, nr);
                        else if (ta)
                            tile_cols(kc, A + k0 * lda + ip, lda, bp, cp, ldc, alpha, be, nr);
                        else
                            tile_rows(kc, A + ip * lda + k0, lda, bp, cp, ldc, alpha, be, nr,
                                      jp == 0 && ip + 2 * MR <= M ? A + (ip + MR) * lda + k0 : NULL);
                    }
                }
            }
        }
    }
    return 0;
}

#else
int fmd_sgemm512(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    (void)ta; (void)tb; (void)M; (void)N; (void)K; (void)alpha; (void)A; (void)lda;
    (void)B; (void)ldb; (void)beta; (void)C; (void)ldc;
    return -1;
}
#endif
