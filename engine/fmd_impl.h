/*
 * fmd_impl.h - the engine's internal header (like ggml's ggml-impl.h): what
 * the engine's own .c files share and the bindings never call. engine/fmd.h
 * is the public API; every engine file includes this header instead, and so
 * do the C tests and fuzz targets that look inside (white-box tests).
 *
 *   errors        fmd_fail, fmd_fail_null: set the thread's message
 *   sizes, files  checked int64 arithmetic, fmd_check_shape, the image
 *                 limit, fmd_open_regular
 *   tensors       fmd_empty_like, fmd_zeros_like, fmd_alias
 *   autograd      fmd_node and how an op records one (autograd.c)
 *   threads       fmd_parallel, fmd_split: the pool's task interface (thread.c)
 *   GEMM          fmd_sgemm (thread.c), fmd_sgemm512 (gemm.c), the CPU check
 *   SIMD          FMD_SIMD_CLONES: hot loops built for AVX2 and AVX-512 too
 *   nn kernels    batch_norm's pieces that the conv epilogue shares, the
 *                 direct conv (nn_conv_direct.c), and what nn_conv.c,
 *                 nn_conv_depthwise.c and nn_conv_separable.c share
 *   images        the augmentation kernels the transform chain runs
 *   formats       float16 and bfloat16 to float
 */
#ifndef FMD_IMPL_H
#define FMD_IMPL_H

#include <stdio.h>

#include "fmd.h"

/* ------------------------------------------------------------------ errors */
/* the thread's message for fmd_error(), formatted like printf */
int fmd_fail(const char *fmt, ...)           /* set error, return -1 */
    __attribute__((format(printf, 1, 2)));
void *fmd_fail_null(const char *fmt, ...)    /* set error, return NULL */
    __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------------- checked sizes */
/* Every shape, stride, element and byte count the engine derives from
 * input (Lua arguments, file headers) goes through these, so nothing wraps.
 * A tensor's extent, the product of max(1, size) over its dims, is at most
 * FMD_MAX_NUMEL = 2^53: element counts, strides and offsets then fit in
 * int64 with room for sums of products, and are exact as doubles (Lua
 * numbers). Dims of size 0 count as 1 so that the strides of an empty
 * [0 x 2^40 x 2^40] are bounded too. Storage is further limited to
 * fmd_max_storage_bytes(). See docs/robustness.md. */
#define FMD_MAX_NUMEL ((int64_t)1 << 53)
/* 0 and *r = a * b (or a + b), or -1 when it does not fit in int64 */
static inline int fmd_checked_mul(int64_t a, int64_t b, int64_t *r) { return __builtin_mul_overflow(a, b, r) ? -1 : 0; }
static inline int fmd_checked_add(int64_t a, int64_t b, int64_t *r) { return __builtin_add_overflow(a, b, r) ? -1 : 0; }
/* 0 and *numel (may be NULL) when shape (ndim dims, each >= 0) has an
 * extent <= FMD_MAX_NUMEL; else -1 with "op: shape [..] ..." as the error */
int fmd_check_shape(const char *op, int ndim, const int64_t *shape, int64_t *numel);
/* Opens path for reading only if it is a regular file (a FIFO, device or
 * directory would block or mislead a reader), without blocking; *size gets
 * its length. NULL with "what: path ..." as the error. */
FILE *fmd_open_regular(const char *what, const char *path, int64_t *size);
/* the largest image, in pixels, a decoder accepts: 2^26 (8192 x 8192, 768 MB
 * as floats), or FMD_MAX_IMAGE_PIXELS from the environment */
int64_t fmd_max_image_pixels(void);

/* --------------------------------------------------------------- tensors */
fmd_tensor *fmd_empty_like(const fmd_tensor *t);          /* contiguous */
fmd_tensor *fmd_zeros_like(const fmd_tensor *t);
fmd_tensor *fmd_alias(fmd_tensor *t);       /* same view, no autograd info */

/* -------------------------------------------------------------- autograd */
/* How an op records its graph: when fmd_needs_grad says so, it makes a
 * node with fmd_node_new, fills saved/iarg/farg, and attaches it to its
 * output; the node's backward adds into its inputs' grads with
 * fmd_accumulate_grad. */
#define FMD_NODE_MAX_INPUTS 4
#define FMD_NODE_MAX_SAVED 4
typedef int (*fmd_backward_fn)(fmd_node *n, fmd_tensor *gout);
struct fmd_node {
    const char *name;                       /* op name, for messages */
    fmd_backward_fn backward;               /* accumulates into inputs via fmd_accumulate_grad */
    int ninputs;
    fmd_tensor *inputs[FMD_NODE_MAX_INPUTS]; /* owned refs (may be NULL) */
    fmd_tensor *saved[FMD_NODE_MAX_SAVED];  /* owned refs: aliases of data needed in backward */
    int64_t iarg[16];                       /* small op parameters */
    float farg[8];
    void *ctx;                              /* op-specific malloc'd data, freed with free() */
    int refcount;
};

/* true when grad mode is on and any of the n tensors requires grad */
int fmd_needs_grad(int n, fmd_tensor *const *ts);
/* new node with refs to the inputs; attach to out (sets requires_grad) */
fmd_node *fmd_node_new(const char *name, fmd_backward_fn bw, int ninputs, fmd_tensor *const *inputs);
void fmd_node_attach(fmd_tensor *out, fmd_node *n);   /* out takes the node's reference */
void fmd_node_release(fmd_node *n);                   /* NULL is fine; fmd_release calls it */
/* t.grad += g (g same shape as t). No-op when t does not require grad. */
int fmd_accumulate_grad(fmd_tensor *t, fmd_tensor *g);
/* sums g (broadcast result) down to shape of t, then accumulates */
int fmd_accumulate_grad_reduced(fmd_tensor *t, fmd_tensor *g);

/* --------------------------------------------------------------- threads */
typedef void (*fmd_task_fn)(void *ctx, int ith, int nth);
/* runs fn(ctx, ith, nth) for ith = 0..nth-1 on the pool (caller is thread 0);
 * serial (nth = 1) when called from inside a parallel region */
void fmd_parallel(fmd_task_fn fn, void *ctx);
/* like fmd_parallel but uses at most max_nth threads */
void fmd_parallel_n(fmd_task_fn fn, void *ctx, int max_nth);
/* [begin, end) of n items for thread ith of nth */
static inline void fmd_split(int64_t n, int ith, int nth, int64_t *b, int64_t *e) {
    int64_t chunk = (n + nth - 1) / nth;
    *b = chunk * ith; if (*b > n) *b = n;
    *e = *b + chunk; if (*e > n) *e = n;
}
int fmd_in_parallel(void);

/* ------------------------------------------------------------------ GEMM */
/* row-major C = alpha * op(A) op(B) + beta * C, single-threaded BLAS; splits
 * rows of C (or columns) over the pool when large and not already parallel */
void fmd_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
               float *C, int64_t ldc);
/* fmd's own single-threaded AVX-512 sgemm (gemm.c), same arguments as
 * fmd_sgemm: 0 when done, -1 when it cannot run here (no AVX-512, or no
 * memory for its packs), and then C is untouched. */
int fmd_sgemm512(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                 float *C, int64_t ldc);
/* 1 when the CPU has AVX-512F: the kernels with an AVX-512 path of their own
 * (gemm.c, the direct conv's wide tiles) ask this. libgcc reads the CPU
 * once at start-up, so the call is a load. */
static inline int fmd_cpu_avx512(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

/* ------------------------------------------------------------------ SIMD */
/* Hot loops are also compiled for AVX2+FMA (x86-64-v3) and, where wide
 * vectors pay, AVX-512 (v4), picked at load time: the build itself targets
 * x86-64-v2 so that one binary runs everywhere. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define FMD_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#define FMD_SIMD_CLONES_V4 __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FMD_SIMD_CLONES
#define FMD_SIMD_CLONES_V4
#endif

/* ------------------------------------------------------------ nn kernels */
/* batch_norm's pieces that conv2d_fused's epilogue shares (nn_norm.c): the
 * per-channel y = x * scale + shift of an eval-mode batch_norm over C
 * channels, as fmd_batch_norm computes it (0 or -1), and its plane loop
 * y = x * a + b, then max(y, 0) when relu (y may be x) */
int fmd_batch_norm_eval_coef(fmd_tensor *weight, fmd_tensor *bias, fmd_tensor *running_mean,
                             fmd_tensor *running_var, int64_t C, float eps, float *scale, float *shift);
void fmd_plane_affine(const float *x, float *y, int64_t n, float a, float b, int relu);

/* direct conv2d, stride 1, no padding, dilation 1, groups 1
 * (nn_conv_direct.c): x (N,C,H,W), w (O,C,KH,KW), b (O) or NULL,
 * y (N,O,H-KH+1,W-KW+1) written whole */
typedef struct {
    int64_t N, C, H, W, O, KH, KW;
    const float *x, *w, *b;
    float *y;
} fmd_conv_direct;
/* whether the direct kernel suits a conv with O output channels and input
 * width W (unit_geometry: stride 1, pad 0, dilation 1, groups 1, not 1x1) */
int fmd_conv_direct_ok(int64_t O, int64_t W, int64_t KW, int unit_geometry);
void fmd_conv_direct_run(const fmd_conv_direct *d);   /* split over the pool */
/* its adjoint for the input: gy (N,O,OH,OW), w (O,C,KH,KW) ->
 * gx (N,C,OH+KH-1,OW+KW-1) written whole; -1 when out of memory */
int fmd_conv_direct_input_grad(int64_t N, int64_t C, int64_t O, int64_t OH, int64_t OW, int64_t KH, int64_t KW,
                               const float *gy, const float *w, float *gx);
/* and for the weights: x (N,C,H,W), gy (N,O,H-KH+1,W-KW+1) -> gw (O,C,KH,KW)
 * and gb (O) or NULL, written whole; -1 when out of memory */
int fmd_conv_direct_weight_grad(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t KH, int64_t KW,
                                const float *x, const float *gy, float *gw, float *gb);

/* What the conv2d files share: nn_conv.c (geometry, scratch, the general
 * and 1x1 kernels, the choice of kernel, autograd), nn_conv_depthwise.c and
 * nn_conv_separable.c. */
typedef struct {
    int64_t N, C, H, W, O, KH, KW, OH, OW;
    int64_t Cg, Og, Kc, HW, OHW;   /* channels per group, K of the GEMM, plane sizes */
    int sh, sw, ph, pw, dh, dw, groups;
    int pointwise, depthwise;
} fmd_conv_geom;
/* one conv call's data; the kernels' tasks take it */
typedef struct {
    fmd_conv_geom g;
    const float *x, *w, *b;   /* x (N,C,H,W), w (O,Kc), b (O) or NULL */
    float *y;                  /* (N,O,OH,OW) */
    const float *ea, *eb;      /* epilogue y = y * ea[o] + eb[o] (then max(y, 0) if erelu), or NULL */
    int erelu;
    int relu_in;               /* x is read as max(x, 0) (the stride-1 depthwise kernels) */
    /* backward */
    const float *gy;           /* (N,O,OH,OW) */
    float *gx;                 /* (N,C,H,W) zeroed, or NULL */
    float *gw, *gb;            /* per-thread partials: nparts x (O*Kc) and x O, or NULL */
    int nparts;
    int failed;
} fmd_conv_job;
/* this thread's scratch buffer `slot` (0..2) of at least n floats, grown on
 * demand and kept; NULL when out of memory */
float *fmd_conv_scratch(int slot, size_t n);
/* output positions o in [0, out) whose input index o*s + off lies in [0, in) */
static inline void fmd_conv_valid_range(int64_t off, int s, int64_t in, int64_t out, int64_t *lo, int64_t *hi) {
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t last = in - 1 - off;   /* o*s <= last */
    int64_t h = last < 0 ? 0 : last / s + 1;
    if (h > out) h = out;
    if (l > h) l = h;
    *lo = l; *hi = h;
}
/* checks x, w, b and the parameters and fills g; 0 or -1 */
int fmd_conv_geometry(const fmd_tensor *x, const fmd_tensor *w, const fmd_tensor *b, int sh, int sw, int ph, int pw,
                      int dh, int dw, int groups, fmd_conv_geom *g);
/* which kernel: the direct one (nn_conv_direct.c); the batched 1x1 GEMM;
 * samples split over the pool (else each GEMM is); the depthwise kernels
 * reading x as max(x, 0) themselves */
int fmd_conv_uses_direct(const fmd_conv_geom *g);
int fmd_conv_pw_batched(const fmd_conv_geom *g);
int fmd_conv_batch_parallel(int64_t N);
int fmd_conv_reads_relu_in(const fmd_conv_geom *g);
/* y[n] = w * xn (+ b), then the epilogue, by im2col + GEMM (or the GEMM
 * alone, 1x1); xn is sample n's input (C,H,W); par: the only sample being
 * worked on (then im2col and the GEMM are split over the pool) */
void fmd_conv_fwd_sample(fmd_conv_job *j, int64_t n, const float *xn, int par);
/* conv2d of x (of max(x, 0) when relu_in), then the epilogue ea, eb (O) or
 * NULL; records a graph only without either */
fmd_tensor *fmd_conv_forward(fmd_tensor *x, fmd_tensor *w, fmd_tensor *b, int sh, int sw, int ph, int pw, int dh,
                             int dw, int groups, int relu_in, const float *ea, const float *eb, int erelu);
/* *coef = the epilogue's a (O) then b (O), malloc'd, or NULL when there is
 * neither a BatchNorm nor a ReLU; 0 or -1 */
int fmd_conv_epilogue_coef(int64_t O, fmd_tensor *bn_weight, fmd_tensor *bn_bias, fmd_tensor *running_mean,
                           fmd_tensor *running_var, float eps, int relu, float **coef);
/* dst (n) = the sum of nparts per-thread partials of n floats each */
void fmd_conv_sum_parts(const float *parts, int nparts, int64_t n, float *dst);
fmd_tensor *fmd_conv_contiguous_nograd(fmd_tensor *t);   /* fmd_contiguous without a graph */
/* the depthwise kernels (nn_conv_depthwise.c): the whole output (split
 * over the pool), the gradients j->gx, gw, gb written whole */
void fmd_conv_dw_forward(fmd_conv_job *j);
void fmd_conv_dw_backward(fmd_conv_job *j);
/* output planes [b, e) of (N*O, OH, OW), one after another into y */
void fmd_conv_dw_planes(fmd_conv_job *j, int64_t b, int64_t e, float *y);
/* one stride-1 plane's backward: gx (H,W) = (gx_set) or += k^T gy when gx,
 * gk (KH*KW) += taps when gk; buf has fmd_conv_dw_bwd_floats(g) floats */
void fmd_conv_dw_s1_plane_bwd(const fmd_conv_geom *g, const float *gy, const float *x, const float *k, float *gx,
                              int gx_set, float *gk, float *buf);
int64_t fmd_conv_dw_bwd_floats(const fmd_conv_geom *g);

/* ---------------------------------------------------------------- images */
/* Augmentations on img (3,H,W) in [0, 1] (each refuses other values, e.g.
 * a normalized image, naming itself): new contiguous (3,H,W), no autograd.
 * jpeg: quantize to 8 bits, encode with libjpeg at `quality` (1..100,
 * 4:2:0, no optimize: PIL's Image.save(f, "JPEG", quality=q)), decode.
 * gaussian_blur: torchvision's gaussian_blur: kx x ky odd kernel (kx along
 * the width), sigmas > 0, reflect padding (needs kx/2 < W, ky/2 < H).
 * color_jitter: torchvision's adjust_brightness, adjust_contrast,
 * adjust_saturation in that order (factors >= 0; 1 = unchanged). */
fmd_tensor *fmd_image_jpeg(fmd_tensor *img, int quality);
fmd_tensor *fmd_image_gaussian_blur(fmd_tensor *img, int kx, int ky, float sigma_x, float sigma_y);
fmd_tensor *fmd_image_color_jitter(fmd_tensor *img, float brightness, float contrast, float saturation);

/* --------------------------------------------------------------- formats */
float fmd_half_to_float(uint16_t h);           /* IEEE binary16 */
float fmd_bf16_to_float(uint16_t b);           /* bfloat16 */

#endif
