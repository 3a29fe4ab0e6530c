/*
 * fmd.h - the fmd engine: float32 tensors, CPU kernels, reverse-mode autograd,
 * image IO. Pure C11; no Lua in here (Lua sees the engine only via bindings/).
 *
 * Overview
 * --------
 * Tensors.   An fmd_tensor is a strided view (shape, stride, offset) onto a
 *            refcounted fmd_storage of float32. Views share storage. All
 *            tensors are refcounted: a function that returns a tensor hands
 *            the caller one reference, release it with fmd_release().
 *            Shapes and strides are in elements; dims are 0-based here (the
 *            Lua API is 1-based and converts in the bindings).
 * Errors.    Engine functions never exit or abort on bad input. They return
 *            NULL (tensor-returning) or -1 (int-returning) and leave a message
 *            in a thread-local buffer, read with fmd_error(). Messages name the
 *            operation and show shapes: "matmul: [2 x 3] and [4 x 5] do not
 *            match (3 ~= 4)". Only the bindings turn them into Lua errors.
 * Autograd.  Each op that sees an input with requires_grad (and grad mode on)
 *            records an fmd_node on its output: the node holds references to
 *            its inputs, saved tensors and a backward function. fmd_backward()
 *            walks the graph in reverse topological order, accumulating (+=)
 *            into .grad of leaves and of tensors that called retain_grad, and
 *            frees the graph as it goes (like PyTorch's retain_graph=False).
 *            The node never references its own output (no refcount cycles):
 *            ops that need their output in backward save an alias made by
 *            fmd_alias().
 * Threads.   A small pthread pool (fmd_set_num_threads, default = cores).
 *            Kernels split an outer dimension: fn(ctx, ith, nth). Policy:
 *            BLAS is always single-threaded; fmd_sgemm splits large GEMMs over
 *            the pool itself, and inside a parallel region everything runs
 *            serially, so BLAS threads and fmd threads never nest. The
 *            single-threaded kernel is OpenBLAS or, where the CPU has AVX-512
 *            and OpenBLAS runs an AVX2 kernel, gemm.c's (fmd_gemm_backend).
 * Memory.    fmd_bytes_in_use() counts live storage bytes so the Lua binding
 *            can put GC pressure proportional to C allocations.
 */
#ifndef FMD_H
#define FMD_H

#include <stddef.h>
#include <stdint.h>

#define FMD_VERSION "0.1.0"
#define FMD_MAX_DIMS 8

/* ------------------------------------------------------------------ errors */
const char *fmd_error(void);                 /* last error of this thread */
int fmd_fail(const char *fmt, ...)           /* set error, return -1 */
    __attribute__((format(printf, 1, 2)));
void *fmd_fail_null(const char *fmt, ...)    /* set error, return NULL */
    __attribute__((format(printf, 1, 2)));
/* formats "[2 x 3 x 4]" into buf (for messages); returns buf */
char *fmd_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

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
/* largest storage one tensor may have, in bytes: the physical memory (at
 * most 2^39, below ASan's 2^40 allocation limit), or FMD_MAX_TENSOR_BYTES
 * from the environment (bytes, optional K/M/G/T suffix) */
uint64_t fmd_max_storage_bytes(void);
/* Opens path for reading only if it is a regular file (a FIFO, device or
 * directory would block or mislead a reader), without blocking; *size gets
 * its length. NULL with "what: path ..." as the error. */
#include <stdio.h>
FILE *fmd_open_regular(const char *what, const char *path, int64_t *size);
/* the largest image, in pixels, a decoder accepts: 2^26 (8192 x 8192, 768 MB
 * as floats), or FMD_MAX_IMAGE_PIXELS from the environment */
int64_t fmd_max_image_pixels(void);

/* -------------------------------------------------------- storage, tensor */
typedef struct fmd_storage {
    float *data;
    int64_t size;      /* elements */
    int refcount;
} fmd_storage;

typedef struct fmd_node fmd_node;
typedef struct fmd_tensor fmd_tensor;

struct fmd_tensor {
    fmd_storage *storage;
    int64_t offset;
    int ndim;
    int64_t shape[FMD_MAX_DIMS];
    int64_t stride[FMD_MAX_DIMS];
    int refcount;
    /* autograd */
    int requires_grad;   /* leaf that wants .grad, or result of a graph op */
    int retains_grad;    /* non-leaf keeps its .grad after backward */
    fmd_tensor *grad;    /* owned reference or NULL */
    fmd_node *grad_fn;   /* owned reference or NULL (NULL = leaf) */
    uint32_t visit;      /* scratch mark used by fmd_backward */
};

static inline float *fmd_data(const fmd_tensor *t) { return t->storage->data + t->offset; }
int64_t fmd_numel(const fmd_tensor *t);
int fmd_is_contiguous(const fmd_tensor *t);
int fmd_same_shape(const fmd_tensor *a, const fmd_tensor *b);

fmd_tensor *fmd_retain(fmd_tensor *t);
void fmd_release(fmd_tensor *t);            /* NULL is fine */
size_t fmd_bytes_in_use(void);              /* live storage bytes */

/* creation: shape has ndim entries, each >= 0 */
fmd_tensor *fmd_empty(int ndim, const int64_t *shape);   /* uninitialised */
fmd_tensor *fmd_zeros(int ndim, const int64_t *shape);
fmd_tensor *fmd_full(int ndim, const int64_t *shape, float value);
fmd_tensor *fmd_empty_like(const fmd_tensor *t);          /* contiguous */
fmd_tensor *fmd_zeros_like(const fmd_tensor *t);
fmd_tensor *fmd_arange(double start, double stop, double step);
fmd_tensor *fmd_from_floats(int ndim, const int64_t *shape, const float *src);
/* shorthand: fmd_new(2, B, C) */
fmd_tensor *fmd_new(int ndim, ...);

/* ------------------------------------------------------------------- RNG */
/* One global generator (like torch.manual_seed). xoshiro256** seeded by
 * splitmix64, so a seed gives the same stream on every machine. */
void fmd_manual_seed(uint64_t seed);
uint64_t fmd_rng_u64(void);
double fmd_rng_uniform(void);                /* [0, 1) */
double fmd_rng_normal(void);                 /* N(0, 1) */
/* independent generator objects (per data-loader worker etc.) */
typedef struct fmd_rng { uint64_t s[4]; } fmd_rng;
void fmd_rng_seed(fmd_rng *r, uint64_t seed);
uint64_t fmd_rng_next(fmd_rng *r);
double fmd_rng_next_uniform(fmd_rng *r);
fmd_tensor *fmd_rand(int ndim, const int64_t *shape);     /* U[0,1) */
fmd_tensor *fmd_randn(int ndim, const int64_t *shape);    /* N(0,1) */

/* ------------------------------------------------------- views and copies */
/* Views share storage and do not record autograd unless noted (*). */
fmd_tensor *fmd_view(fmd_tensor *t, int ndim, const int64_t *shape);    /* * ; one -1 allowed; needs compatible strides */
fmd_tensor *fmd_reshape(fmd_tensor *t, int ndim, const int64_t *shape); /* * ; view if possible, else copy */
fmd_tensor *fmd_transpose(fmd_tensor *t, int d0, int d1);              /* * */
fmd_tensor *fmd_permute(fmd_tensor *t, const int *dims);               /* * */
fmd_tensor *fmd_narrow(fmd_tensor *t, int dim, int64_t start, int64_t len); /* * */
fmd_tensor *fmd_select(fmd_tensor *t, int dim, int64_t index);         /* * removes dim */
fmd_tensor *fmd_index_select(fmd_tensor *t, int dim, const fmd_tensor *idx); /* * copy; idx holds 0-based ids */
fmd_tensor *fmd_expand(fmd_tensor *t, int ndim, const int64_t *shape); /* stride-0 view, no grad */
fmd_tensor *fmd_contiguous(fmd_tensor *t);  /* * ; t itself (retained) when already contiguous */
fmd_tensor *fmd_clone(fmd_tensor *t);       /* * ; contiguous copy */
fmd_tensor *fmd_alias(fmd_tensor *t);       /* same view, no autograd info */
fmd_tensor *fmd_detach(fmd_tensor *t);      /* = alias: shares data, requires_grad 0 */
int fmd_copy_(fmd_tensor *dst, const fmd_tensor *src); /* src broadcast to dst; no grad */
int fmd_fill_(fmd_tensor *t, float v);

/* ------------------------------------------------- elementwise and maths */
/* All record autograd. Binary ops broadcast like NumPy/PyTorch. */
typedef enum { FMD_ADD, FMD_SUB, FMD_MUL, FMD_DIV, FMD_POW_T, FMD_MAXIMUM, FMD_MINIMUM } fmd_binop;
fmd_tensor *fmd_binary(fmd_binop op, fmd_tensor *a, fmd_tensor *b);
fmd_tensor *fmd_add(fmd_tensor *a, fmd_tensor *b);
fmd_tensor *fmd_sub(fmd_tensor *a, fmd_tensor *b);
fmd_tensor *fmd_mul(fmd_tensor *a, fmd_tensor *b);
fmd_tensor *fmd_div(fmd_tensor *a, fmd_tensor *b);
fmd_tensor *fmd_add_scalar(fmd_tensor *a, float s);
fmd_tensor *fmd_mul_scalar(fmd_tensor *a, float s);
fmd_tensor *fmd_rsub_scalar(fmd_tensor *a, float s);   /* s - a */
fmd_tensor *fmd_rdiv_scalar(fmd_tensor *a, float s);   /* s / a */
fmd_tensor *fmd_pow_scalar(fmd_tensor *a, float p);    /* a ^ p */
typedef enum { FMD_NEG, FMD_EXP, FMD_LOG, FMD_SQRT, FMD_ABS, FMD_RELU, FMD_SIGMOID, FMD_TANH } fmd_unop;
fmd_tensor *fmd_unary(fmd_unop op, fmd_tensor *a);
int fmd_relu_(fmd_tensor *t);   /* in place, only where no graph is recorded for t */
int fmd_add_(fmd_tensor *t, fmd_tensor *other);   /* t += other (broadcast to t), likewise without a graph */
fmd_tensor *fmd_clamp(fmd_tensor *a, float lo, float hi);  /* use +-INFINITY for none */
/* comparisons: result is 0/1 float, no grad */
typedef enum { FMD_EQ, FMD_NE, FMD_LT, FMD_LE, FMD_GT, FMD_GE } fmd_cmpop;
fmd_tensor *fmd_compare(fmd_cmpop op, fmd_tensor *a, fmd_tensor *b);

/* reductions: dim = -1 means over all elements (result is 0-dim) */
fmd_tensor *fmd_sum(fmd_tensor *a, int dim, int keepdim);
fmd_tensor *fmd_mean(fmd_tensor *a, int dim, int keepdim);
/* max/min over a dim give values and (optional) 0-based indices (no grad) */
fmd_tensor *fmd_max(fmd_tensor *a, int dim, int keepdim, fmd_tensor **indices);
fmd_tensor *fmd_min(fmd_tensor *a, int dim, int keepdim, fmd_tensor **indices);
fmd_tensor *fmd_argmax(fmd_tensor *a, int dim, int keepdim);  /* 0-based, no grad */

/* matmul: 1-D/2-D/batched like torch.matmul (batched: both 3-D, same batch) */
fmd_tensor *fmd_matmul(fmd_tensor *a, fmd_tensor *b);

/* -------------------------------------------------------------- autograd */
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

int fmd_is_grad_enabled(void);              /* per thread */
int fmd_set_grad_enabled(int enabled);      /* returns previous */
/* true when grad mode is on and any of the n tensors requires grad */
int fmd_needs_grad(int n, fmd_tensor *const *ts);
/* new node with refs to the inputs; attach to out (sets requires_grad) */
fmd_node *fmd_node_new(const char *name, fmd_backward_fn bw, int ninputs, fmd_tensor *const *inputs);
void fmd_node_attach(fmd_tensor *out, fmd_node *n);   /* out takes the node's reference */
/* t.grad += g (g same shape as t). No-op when t does not require grad. */
int fmd_accumulate_grad(fmd_tensor *t, fmd_tensor *g);
/* sums g (broadcast result) down to shape of t, then accumulates */
int fmd_accumulate_grad_reduced(fmd_tensor *t, fmd_tensor *g);
/* reverse mode from root; gradient may be NULL when root has one element */
int fmd_backward(fmd_tensor *root, fmd_tensor *gradient);
int fmd_set_requires_grad(fmd_tensor *t, int flag);   /* leaves only */

/* --------------------------------------------------------------- threads */
typedef void (*fmd_task_fn)(void *ctx, int ith, int nth);
void fmd_set_num_threads(int n);            /* n >= 1 */
int fmd_get_num_threads(void);
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
/* the kernel fmd_sgemm uses: "fmd-avx512" or "openblas" (thread.c says when) */
const char *fmd_gemm_backend(void);

/* ------------------------------------------------------ engine-internal */
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

/* ------------------------------------------------------------- image IO */
/* Decodes a PNG or JPEG (chosen by content) into a new 3 x H x W tensor in
 * [0, 1] (gray is replicated, alpha dropped). */
fmd_tensor *fmd_image_load(const char *path);
fmd_tensor *fmd_image_decode(const uint8_t *buf, size_t len, const char *name);
/* Writes img (3xHxW, 1xHxW or HxW floats, clamped to [0,1]) as 8-bit PNG;
 * writes path.tmp then renames. */
int fmd_image_save_png(const char *path, const fmd_tensor *img);

/* --- transforms and data loader (engine/transform.c, loader.c) --- */
/* PNG writers: img values in [0, maxval] (maxval 255 for uint8 data); pix is
 * H x W x ch interleaved bytes, ch 1 or 3. Both write path.tmp, rename. */
int fmd_image_save_png_scaled(const char *path, const fmd_tensor *img, float maxval);
int fmd_image_save_png_u8(const char *path, const uint8_t *pix, int64_t h, int64_t w, int ch);
/* "png" or "jpeg" from the first bytes (8 suffice), else NULL */
const char *fmd_image_format(const uint8_t *buf, size_t len);
/* Kernels on img (C,H,W); each returns a new contiguous tensor, no autograd.
 * resize: bilinear with PIL's taps (antialiased when shrinking); pil8 = 1
 * quantizes to 8 bits and uses PIL's fixed-point math, matching PIL's
 * im.resize(size, BILINEAR) on uint8 images exactly. Same size = copy. */
fmd_tensor *fmd_image_resize(fmd_tensor *img, int64_t oh, int64_t ow, int pil8);
/* out[c,y,x] = img[c, y+top, x+left], fill outside the image: pad + crop */
fmd_tensor *fmd_image_pad_crop(fmd_tensor *img, int64_t top, int64_t left, int64_t oh, int64_t ow, float fill);
fmd_tensor *fmd_image_hflip(fmd_tensor *img);
/* (v - mean[c]) / std[c]; n = C values, or 1 for all channels */
fmd_tensor *fmd_image_normalize(fmd_tensor *img, int n, const float *mean, const float *std);

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

/* A transform chain the loader can run without Lua. Random ops draw from
 * the rng in op order, a fixed number of draws per op whatever is drawn:
 * random crop draws top then left (each floor(u * count)); flip draws u
 * and flips when u < p; random JPEG draws u (applies when u < p) then the
 * quality q_lo + floor(u * (q_hi - q_lo + 1)); gaussian blur draws u
 * (applies when u < p) then sigma = lo + u * (hi - lo); colour jitter
 * draws the brightness, contrast and saturation factors, each
 * lo + u * (hi - lo). Augmentations must come before normalize. */
enum { FMD_TF_RESIZE = 1, FMD_TF_CENTER_CROP, FMD_TF_RANDOM_CROP, FMD_TF_HFLIP, FMD_TF_NORMALIZE,
       FMD_TF_RANDOM_JPEG, FMD_TF_GAUSSIAN_BLUR, FMD_TF_COLOR_JITTER };
#define FMD_TF_MAX_OPS 16
#define FMD_TF_MAX_CH 4
typedef struct fmd_tf_op {
    int kind;
    int64_t h, w;        /* output size: resize, crops */
    int pad;             /* random crop: zero padding on each side */
    int pil8;            /* resize: 8-bit PIL emulation */
    float p;             /* flip, random JPEG, blur: probability */
    int nch;             /* normalize: number of mean/std values */
    float mean[FMD_TF_MAX_CH], std[FMD_TF_MAX_CH];
    int q_lo, q_hi;      /* random JPEG: quality range, 1..100 */
    int kx, ky;          /* gaussian blur: odd kernel width and height */
    float sigma_lo, sigma_hi;   /* gaussian blur: sigma range, > 0 */
    float jitter[3][2];  /* colour jitter: [lo, hi] of the brightness,
                          * contrast, saturation factors, 0 <= lo <= hi */
} fmd_tf_op;
typedef struct fmd_transform { int n; fmd_tf_op ops[FMD_TF_MAX_OPS]; } fmd_transform;
int fmd_transform_check(const fmd_transform *tf);
fmd_tensor *fmd_transform_apply(const fmd_transform *tf, fmd_tensor *img, fmd_rng *rng);
/* seed of sample `index` in `epoch`: the loader seeds each sample's rng with
 * it, so results do not depend on workers or batch size */
uint64_t fmd_sample_seed(uint64_t seed, int64_t epoch, int64_t index);
/* order[0..n) = 0..n-1, shuffled (Fisher-Yates) per (seed, epoch) if asked */
void fmd_loader_order(int64_t n, int shuffle, uint64_t seed, int64_t epoch, int64_t *order);

/* Threaded loader: workers decode + transform samples into a bounded ring of
 * `prefetch` batches ahead of the consumer. Batches are images (B,C,H,W)
 * and labels (B). num_workers 0 decodes in the caller's thread. */
typedef struct fmd_loader fmd_loader;
typedef struct fmd_loader_opts {
    int64_t batch_size;
    int shuffle, drop_last;
    int num_workers;     /* 0 = no threads */
    int prefetch;        /* batches in flight; 0 = default (2) */
    uint64_t seed;
    int skip_bad;        /* 1: an image that cannot be read or decoded is left out of its
                          * batch (the batch is smaller; a batch of only bad images is
                          * skipped) and reported by fmd_loader_skipped, not an error */
} fmd_loader_opts;
/* copies paths, labels and tf */
fmd_loader *fmd_loader_new(int64_t n, const char *const *paths, const float *labels,
                           const fmd_transform *tf, const fmd_loader_opts *opts);
int64_t fmd_loader_num_batches(const fmd_loader *l);
int fmd_loader_start(fmd_loader *l, int64_t epoch);   /* stops a running epoch first */
/* 1 = batch returned (caller owns both), 0 = epoch done, -1 = error (a
 * worker's message, with the file name); errors repeat until restarted */
int fmd_loader_next(fmd_loader *l, fmd_tensor **images, fmd_tensor **labels);
void fmd_loader_stop(fmd_loader *l);                  /* joins workers, frees batches */
/* samples skipped (skip_bad) this epoch; buf gets the messages of skips not
 * reported by an earlier call, one per line (as many as fit), "" if none */
int64_t fmd_loader_skipped(fmd_loader *l, char *buf, size_t n);
void fmd_loader_free(fmd_loader *l);                  /* NULL is fine */

/* --- procedural faces (engine/faces.c) --- */
/* Generated face images for the default data set (docs/faces.md). Each image
 * is a pure function of (kind, seed, target_seed, params). */
typedef enum { FMD_FACE_REAL = 0, FMD_FACE_SWAP = 1, FMD_FACE_GAN = 2 } fmd_face_kind;
/* Strengths of the fake traces, tuned in one place (fmd_faces_default_params);
 * `strength` multiplies all of them, 0 turns a trace off. */
typedef struct fmd_faces_params {
    int size;              /* images are 3 x size x size (256) */
    float strength;        /* global multiplier on every fake trace (1) */
    float swap_color;      /* residual colour-transfer gain/offset mismatch */
    float swap_light;      /* illumination-direction mismatch of the swapped face */
    float swap_resample;   /* down/up-sampling factor - 1 of the swapped face */
    float swap_sharpen;    /* unsharp-mask amount (on about a third of swaps) */
    float swap_feather;    /* blend-boundary width, relative to the mask radius */
    float swap_misalign;   /* scale/position drift of the swapped face */
    float gan_checker;     /* phase-gain amplitude of the up-sampling layers */
    float gan_smooth;      /* texture lost through the half-resolution bottleneck */
    float gan_color;       /* saturation/tint/tone shift */
    float noise;           /* mean sensor-noise std of camera images */
} fmd_faces_params;
void fmd_faces_default_params(fmd_faces_params *p);
/* 64-bit seed of one image from (seed, dataset, split, class, index) */
uint64_t fmd_faces_seed(uint64_t seed, const char *dataset, const char *split, const char *cls,
                        int64_t index);
/* One image (3 x S x S in [0,1]). REAL: a camera image of identity `seed`.
 * SWAP: the REAL image of target_seed with the inner face of identity `seed`
 * blended in. GAN: identity `seed` through a generator path. params NULL =
 * defaults; *mask (optional) gets the 1 x S x S swap blend mask (zeros for
 * the other kinds). */
fmd_tensor *fmd_face_render(fmd_face_kind kind, uint64_t seed, uint64_t target_seed,
                            const fmd_faces_params *params, fmd_tensor **mask);
typedef struct fmd_face_job {
    fmd_face_kind kind;
    uint64_t seed, target_seed;
    const char *path;      /* PNG written here (directory must exist) */
} fmd_face_job;
/* renders and writes the jobs as PNGs on the thread pool; 0 or -1 */
int fmd_faces_write(const fmd_face_job *jobs, int n, const fmd_faces_params *params);
/* mkdir -p dir; returns the number of *.png in it (removed first when
 * clear), or -1 */
int fmd_faces_prepare_dir(const char *dir, int clear);

/* ------------------------------------------------- nn ops (engine/nn_*.c) */
/* All record autograd; shapes: x is (N,C,H,W), w is (O, C/groups, KH, KW). */
fmd_tensor *fmd_conv2d(fmd_tensor *x, fmd_tensor *w, fmd_tensor *b /* NULL ok */,
                       int sh, int sw, int ph, int pw, int dh, int dw, int groups);
/* relu(batch_norm(conv2d(relu(x)))) with each part optional: relu_in,
 * then an eval-mode batch_norm of the output when running_mean/var are given
 * (bn_* are (O) or NULL), then relu. Each sample's output is normalised
 * while it is still in cache, and the stride-1 depthwise kernels apply the
 * first ReLU as they read x. The same numbers as the ops in turn, but no
 * graph: fails when an input requires grad in grad mode. */
fmd_tensor *fmd_conv2d_fused(fmd_tensor *x, fmd_tensor *w, fmd_tensor *b, int sh, int sw, int ph, int pw, int dh,
                             int dw, int groups, int relu_in, fmd_tensor *bn_weight, fmd_tensor *bn_bias,
                             fmd_tensor *running_mean, fmd_tensor *running_var, float eps, int relu);
/* A separable conv without a graph: the pointwise conv by wp (O,C,1,1) (bias
 * bp or NULL) of the depthwise conv by wd (groups C, bias bd or NULL) of
 * relu_in ? max(x, 0) : x, then fmd_conv2d_fused's epilogue. Each thread
 * takes whole samples, so a sample's depthwise output is read by its GEMM
 * from cache, not from a whole-batch tensor; the same numbers as the convs in
 * turn (which it falls back to where its kernels do not apply). */
fmd_tensor *fmd_sepconv2d_fused(fmd_tensor *x, fmd_tensor *wd, fmd_tensor *bd, int sh, int sw, int ph, int pw,
                                int dh, int dw, int groups, int relu_in, fmd_tensor *wp, fmd_tensor *bp,
                                fmd_tensor *bn_weight, fmd_tensor *bn_bias, fmd_tensor *running_mean,
                                fmd_tensor *running_var, float eps, int relu);
/* The same without biases, input ReLU or epilogue, recording one autograd
 * node: its backward also takes a sample at a time, remaking the sample's
 * depthwise output and its gradient in per-thread buffers. Falls back to the
 * two convs (two nodes) where its kernels do not apply. */
fmd_tensor *fmd_sepconv2d(fmd_tensor *x, fmd_tensor *wd, fmd_tensor *wp, int sh, int sw, int ph, int pw, int dh,
                          int dw, int groups);
fmd_tensor *fmd_linear(fmd_tensor *x, fmd_tensor *w, fmd_tensor *b);  /* x (N,in) w (out,in) b (out) or NULL */
fmd_tensor *fmd_max_pool2d(fmd_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw);
fmd_tensor *fmd_avg_pool2d(fmd_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw); /* count_include_pad */
fmd_tensor *fmd_adaptive_avg_pool2d(fmd_tensor *x, int oh, int ow);
/* constant border of its own width on each side of every (H,W) plane:
 * (N,C,H,W) -> (N,C,top+H+bottom,left+W+right); widths >= 0 */
fmd_tensor *fmd_pad2d(fmd_tensor *x, int left, int right, int top, int bottom, float value);
/* x (N,C) or (N,C,H,W). training: batch stats, running stats updated in
 * place (momentum, unbiased var); eval: running stats (required).
 * weight/bias/running_* are (C) or NULL. */
fmd_tensor *fmd_batch_norm(fmd_tensor *x, fmd_tensor *weight, fmd_tensor *bias,
                           fmd_tensor *running_mean, fmd_tensor *running_var,
                           int training, float momentum, float eps);
/* max(batch_norm(...), 0) as one node: the ReLU costs no pass or tensor of
 * its own, forward or backward; the numbers of batch_norm then relu */
fmd_tensor *fmd_batch_norm_relu(fmd_tensor *x, fmd_tensor *weight, fmd_tensor *bias,
                                fmd_tensor *running_mean, fmd_tensor *running_var,
                                int training, float momentum, float eps);
/* mask from the global RNG; eval or p = 0 returns x itself (retained) */
fmd_tensor *fmd_dropout(fmd_tensor *x, float p, int training);
fmd_tensor *fmd_softmax(fmd_tensor *x, int dim);       /* dim 0-based, < 0 from the end */
fmd_tensor *fmd_log_softmax(fmd_tensor *x, int dim);
/* logits (N,C), target (N) holding class ids 0..C-1 as floats; mean over N
 * (0-dim). Bad targets are errors whose positions are 1-based (as in Lua). */
fmd_tensor *fmd_cross_entropy(fmd_tensor *logits, fmd_tensor *target);
fmd_tensor *fmd_mse_loss(fmd_tensor *input, fmd_tensor *target);     /* mean */

/* ------------------------------ tensor files (engine/safetensors.c, pth.c, tfjs.c) */
typedef struct fmd_tensor_dict {
    int n;
    char **names;
    fmd_tensor **tensors;      /* owned refs */
    int nmeta;                 /* safetensors __metadata__ (string -> string) */
    char **meta_keys, **meta_vals;
} fmd_tensor_dict;
void fmd_tensor_dict_free(fmd_tensor_dict *d);  /* frees contents, not d itself */
/* appends (copy of name, new reference to t); -1 on a duplicate name */
int fmd_tensor_dict_add(fmd_tensor_dict *d, const char *name, fmd_tensor *t);
int fmd_tensor_dict_add_meta(fmd_tensor_dict *d, const char *key, const char *val);
float fmd_half_to_float(uint16_t h);           /* IEEE binary16 */
float fmd_bf16_to_float(uint16_t b);           /* bfloat16 */
/* safetensors: F32 written (tensors in name order, header padded to 8 bytes
 * like the reference implementation); F32/F16/BF16/F64/I64/I32/I16/I8/U8/BOOL
 * read as float32. Save writes path.tmp then renames. */
int fmd_safetensors_save(const char *path, const fmd_tensor_dict *d);
int fmd_safetensors_load(const char *path, fmd_tensor_dict *out);
/* PyTorch checkpoints (zip and legacy formats) with a restricted unpickler:
 * only tensors and containers; any other global is an error. Tensors come
 * out as contiguous float32 copies with flat dotted names (a state dict
 * nested under "state_dict"/"model"/... is used; "module." is stripped).
 * Both loaders overwrite *out; on error it is left empty. See docs/formats.md. */
int fmd_pth_load(const char *path, fmd_tensor_dict *out);
/* TensorFlow.js weights (engine/tfjs.c; lib/fmd/tfjs.lua reads the manifest
 * and shards): one tensor's little-endian bytes as stored -> float32 (shape).
 * U8/U16 are quantised: min + scale * q in double, then float (rounded to an
 * integer, as Math.round, when round: tfjs's quantised int32). nbytes must be
 * numel(shape) times the stored size, checked before anything is allocated. */
typedef enum { FMD_TFJS_F32, FMD_TFJS_I32, FMD_TFJS_F16, FMD_TFJS_U8, FMD_TFJS_U16 } fmd_tfjs_kind;
fmd_tensor *fmd_tfjs_decode(const uint8_t *src, int64_t nbytes, fmd_tfjs_kind kind, double min, double scale,
                            int round, int ndim, const int64_t *shape);

/* --- optimizer kernels (engine/optim.c) --- */
/* In-place updates with PyTorch 1.13's rules on n contiguous floats each (no
 * autograd). SGD: buf is the momentum buffer (NULL when momentum is 0);
 * first = 1 on a parameter's first step sets buf = grad (+ wd * p). Adam:
 * step is the 1-based count of this update; vmax != NULL means amsgrad. */
int fmd_sgd_step(float *p, const float *g, float *buf, int64_t n, double lr, double momentum,
                 double dampening, int nesterov, double weight_decay, int first);
int fmd_adam_step(float *p, const float *g, float *m, float *v, float *vmax, int64_t n, int64_t step,
                  double lr, double beta1, double beta2, double eps, double weight_decay);

/* --- detection metrics (engine/metrics.c) --- */
/* scikit-learn 1.2's binary ranking metrics on doubles. The caller checks
 * the inputs: n >= 1, finite scores, labels y 0 or 1 (1 = positive = fake);
 * P = positives, N = negatives. See docs/metrics.md. */
/* order (n,) gets the 0-based ids of v (n,) from largest to smallest, ties
 * in index order (stable); -1 when out of memory or n >= 2^31 */
int fmd_argsort_desc(const double *v, int64_t n, int64_t *order);
/* sklearn's _binary_clf_curve: m points, one per distinct score from the
 * highest down, with the counts of positives/negatives scoring >= thr[k] */
typedef struct fmd_clf_curve {
    int64_t m;
    double *fps, *tps, *thr;     /* (n,) buffers of the caller */
} fmd_clf_curve;
int fmd_binary_clf_curve(const double *score, const double *y, int64_t n, fmd_clf_curve *c); /* n < 2^30 */
/* roc_curve(drop_intermediate=False): (m+1,) each; needs P, N > 0 */
void fmd_roc_curve(const fmd_clf_curve *c, double *fpr, double *tpr, double *thr);
/* det_curve: (m,) buffers; returns the number of points; needs P, N > 0 */
int64_t fmd_det_curve(const fmd_clf_curve *c, double *fpr, double *fnr, double *thr);
/* precision_recall_curve: precision, recall (m+1,), thr (m,); needs P > 0 */
void fmd_precision_recall_curve(const fmd_clf_curve *c, double *precision, double *recall, double *thr);
double fmd_roc_auc(const fmd_clf_curve *c);            /* needs P, N > 0 */
double fmd_average_precision(const fmd_clf_curve *c);  /* needs P > 0 */
/* equal error rate and its threshold, interpolated on the ROC; P, N > 0 */
void fmd_eer(const fmd_clf_curve *c, double *eer, double *thr);
/* cm = {tn, fp, fn, tp}, predicted positive when score >= threshold */
void fmd_confusion(const double *score, const double *y, int64_t n, double threshold, int64_t cm[4]);

#endif
