/*
 * fmd.h - the fmd engine's public API: float32 tensors, CPU kernels,
 * reverse-mode autograd, image IO. Pure C11; no Lua in here (Lua sees the
 * engine only via bindings/). What the engine's files share among
 * themselves (error setters, graph nodes, the thread pool's tasks, GEMM,
 * SIMD clones, kernel pieces) is in engine/fmd_impl.h, the internal header.
 *
 * Where each area lives (engine/)
 * -------------------------------
 *   tensors      tensor.c      storage, lifetime, creation, RNG, views,
 *                              copies, errors, checked sizes
 *   autograd     autograd.c    graph nodes, gradient accumulation, backward
 *   threads      thread.c      the pthread pool; fmd_sgemm, which splits a
 *                              GEMM over it and picks the kernel
 *   GEMM         gemm.c        fmd's own AVX-512 sgemm (else OpenBLAS)
 *   ops          ops_elementwise.c (binary, scalar, unary, compare),
 *                ops_reduce.c  (sum, mean, max, min, argmax, matmul)
 *   nn kernels   nn_conv.c     conv2d: geometry, im2col + GEMM, 1x1, the
 *                              choice of kernel, autograd; conv2d_fused
 *                nn_conv_depthwise.c, nn_conv_direct.c  its depthwise and
 *                              direct kernels
 *                nn_conv_separable.c  sepconv2d, sepconv2d_fused
 *                nn_linear.c, nn_pool.c, nn_norm.c, nn_dropout.c, nn_loss.c
 *   optimizers   optim.c       SGD and Adam update kernels
 *   image IO     image.c       PNG/JPEG decoding, PNG writing
 *   transforms   transform.c   resize, crops, flip, normalize, augmentations,
 *                              the transform chain the loader runs
 *   loader       loader.c      threaded data loader
 *   formats      safetensors.c, pth.c (PyTorch checkpoints, no Python)
 *   metrics      metrics.c     ROC/DET/PR curves, AUC, AP, EER (sklearn's)
 *   face generator  facegen.c  the procedural faces of the default data set
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
 *            records a graph node on its output: the node holds references to
 *            its inputs, saved tensors and a backward function. fmd_backward()
 *            walks the graph in reverse topological order, accumulating (+=)
 *            into .grad of leaves and of tensors that called retain_grad, and
 *            frees the graph as it goes (like PyTorch's retain_graph=False).
 *            The node never references its own output (no refcount cycles).
 * Threads.   A small pthread pool (fmd_set_num_threads, default = cores).
 *            Kernels split an outer dimension. Policy: BLAS is always
 *            single-threaded; large GEMMs are split over the pool, and inside
 *            a parallel region everything runs serially, so BLAS threads and
 *            fmd threads never nest. The single-threaded kernel is OpenBLAS
 *            or, where the CPU has AVX-512 and OpenBLAS runs an AVX2 kernel,
 *            gemm.c's (fmd_gemm_backend).
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
/* formats "[2 x 3 x 4]" into buf (for messages); returns buf */
char *fmd_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);


/* largest storage one tensor may have, in bytes: the physical memory (at
 * most 2^39, below ASan's 2^40 allocation limit), or FMD_MAX_TENSOR_BYTES
 * from the environment (bytes, optional K/M/G/T suffix); see fmd_impl.h's
 * checked sizes and docs/robustness.md */
uint64_t fmd_max_storage_bytes(void);

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
fmd_tensor *fmd_detach(fmd_tensor *t);      /* = alias: shares data, requires_grad 0 */
int fmd_copy_(fmd_tensor *dst, const fmd_tensor *src); /* src broadcast to dst; no grad */
int fmd_fill_(fmd_tensor *t, float v);

/* ------------------------------------------------- elementwise and maths */
/* All record autograd. Binary ops broadcast like NumPy/PyTorch. */
typedef enum { FMD_ADD, FMD_SUB, FMD_MUL, FMD_DIV, FMD_POW_T, FMD_MAXIMUM, FMD_MINIMUM } fmd_binop;
fmd_tensor *fmd_binary(fmd_binop op, fmd_tensor *a, fmd_tensor *b);
fmd_tensor *fmd_add(fmd_tensor *a, fmd_tensor *b);
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
int fmd_is_grad_enabled(void);              /* per thread */
int fmd_set_grad_enabled(int enabled);      /* returns previous */
/* reverse mode from root; gradient may be NULL when root has one element */
int fmd_backward(fmd_tensor *root, fmd_tensor *gradient);
int fmd_set_requires_grad(fmd_tensor *t, int flag);   /* leaves only */
/* the op that made t ("conv2d", ...; a non-leaf whose graph backward freed
 * keeps it), or NULL for a leaf */
const char *fmd_grad_fn_name(const fmd_tensor *t);

/* --------------------------------------------------------------- threads */
void fmd_set_num_threads(int n);            /* n >= 1 */
int fmd_get_num_threads(void);
/* the single-threaded GEMM kernel every product runs on: "fmd-avx512"
 * (gemm.c) or "openblas"; thread.c says when */
const char *fmd_gemm_backend(void);

/* ------------------------------------------------------------- image IO */
/* Decodes a PNG or JPEG (chosen by content) into a new 3 x H x W tensor in
 * [0, 1] (gray is replicated, alpha dropped). */
fmd_tensor *fmd_image_load(const char *path);
fmd_tensor *fmd_image_decode(const uint8_t *buf, size_t len, const char *name);
/* Writes img (3xHxW, 1xHxW or HxW floats, clamped to [0,1]) as 8-bit PNG;
 * writes path.tmp then renames. */
int fmd_image_save_png(const char *path, const fmd_tensor *img);

/* ------------------------------------------------ video (engine/video.c) */
/* What a file is, the one place that decides it: by its first bytes, and
 * for a video container without a signature (.ts, .h264 ...) by its
 * extension. Returns "image" (a PNG or JPEG, fmd_image_load), "video" (a
 * container fmd_video_open tries), or NULL with the reason as the error;
 * *format (may be NULL) gets "png", "jpeg", "mp4", "matroska", ... */
const char *fmd_file_kind(const char *path, const char **format);
/* the container named by the first bytes (16 suffice, 192 for MPEG-TS),
 * or NULL; PNG and JPEG are images, not videos */
const char *fmd_video_format(const uint8_t *buf, size_t len);
/* 1 when fmd was built with FFmpeg's libraries (else fmd_video_open fails) */
int fmd_video_available(void);

/* Frames are sampled as a stream: decoded in order, the unsampled ones
 * dropped, so memory does not grow with the video's length. A frame is
 * taken for target time T when its time t >= T - half a frame; a frame
 * serves one target at most. Times are seconds from the first frame. */
typedef enum {
    FMD_VIDEO_FPS,      /* targets k / fps, k = 0, 1, ... */
    FMD_VIDEO_FRAMES,   /* targets (k + 1/2) * duration / frames, k < frames */
    FMD_VIDEO_ALL       /* every frame */
} fmd_video_mode;
typedef struct fmd_video_opts {
    fmd_video_mode mode;
    double fps;         /* FMD_VIDEO_FPS: samples per second of video, > 0 */
    int64_t frames;     /* FMD_VIDEO_FRAMES: at most this many, >= 1 */
    int threads;        /* decoder threads, 0 = fmd_get_num_threads() */
} fmd_video_opts;
typedef struct fmd_video_info {
    int64_t width, height;  /* of the frames returned (after rotation) */
    double fps;             /* average frame rate, 0 when unknown */
    double duration;        /* seconds, 0 when unknown */
    int64_t frames;         /* the container's count, else duration * fps */
    int64_t samples;        /* frames the sampling is expected to return */
    int rotation;           /* 0, 90, 180, 270: degrees turned clockwise */
    char format[32], codec[32];
} fmd_video_info;
typedef struct fmd_video fmd_video;
/* Opens path (a regular file) and decodes up to its first good frame, so a
 * file that is not a video, has no video stream or no frame fails here.
 * NULL with "video '<path>': ..." as the error. */
fmd_video *fmd_video_open(const char *path, const fmd_video_opts *o);
const fmd_video_info *fmd_video_get_info(const fmd_video *v);
/* The next sampled frame: 1 with *frame (3, H, W) in [0, 1] (a new
 * reference), *index (0-based position in the stream) and *time (s);
 * 0 at the end; -1 on an error (the video stays usable for close). */
int fmd_video_next(fmd_video *v, fmd_tensor **frame, int64_t *index, double *time);
/* back to the start (reopens the file); the skipped count restarts too */
int fmd_video_rewind(fmd_video *v);
/* damaged frames skipped so far: packets the decoder refused and frames it
 * marked corrupt */
int64_t fmd_video_skipped(const fmd_video *v);
void fmd_video_close(fmd_video *v);   /* NULL is fine */

/* --- transforms and data loader (engine/transform.c, loader.c) --- */
/* the same with values in [0, maxval] (maxval 255 for uint8 data) */
int fmd_image_save_png_scaled(const char *path, const fmd_tensor *img, float maxval);
/* "png" or "jpeg" from the first bytes (8 suffice), else NULL */
const char *fmd_image_format(const uint8_t *buf, size_t len);
/* Kernels on img (C,H,W); each returns a new contiguous tensor, no autograd.
 * resize: bilinear with PIL's taps (antialiased when shrinking); pil8 = 1
 * quantizes to 8 bits and uses PIL's fixed-point math, matching PIL's
 * im.resize(size, BILINEAR) on uint8 images exactly. Same size = copy. */
fmd_tensor *fmd_image_resize(fmd_tensor *img, int64_t oh, int64_t ow, int pil8);
/* resize_tf: bilinear as TensorFlow's resize_bilinear (align_corners and
 * half_pixel_centers false; what face-api.js uses): source = dest * in/out,
 * no antialiasing. Same size = copy. */
fmd_tensor *fmd_image_resize_tf(fmd_tensor *img, int64_t oh, int64_t ow);
/* out[c,y,x] = img[c, y+top, x+left], fill outside the image: pad + crop */
fmd_tensor *fmd_image_pad_crop(fmd_tensor *img, int64_t top, int64_t left, int64_t oh, int64_t ow, float fill);
fmd_tensor *fmd_image_hflip(fmd_tensor *img);
/* (v - mean[c]) / std[c]; n = C values, or 1 for all channels */
fmd_tensor *fmd_image_normalize(fmd_tensor *img, int n, const float *mean, const float *std);


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
    int shard_count;     /* > 1: data-parallel, read only part shard_rank (0-based) of */
    int shard_rank;      /* each epoch's order: see fmd_loader_shard */
} fmd_loader_opts;
/* Data-parallel sharding of an epoch's order (lib/fmd/dist.lua): the order
 * is cut into global batches of batch_size * count samples and rank takes
 * its contiguous part of each, batch_size samples of a full one and, of a
 * last one of m samples (none with drop_last), m / count, one more for the
 * first m % count ranks. So every sample goes to one rank, and the rank's
 * k-th batch is its part of global batch k. order (n) is compacted in place
 * to the rank's part, whose length is returned; order NULL only counts. */
int64_t fmd_loader_shard(int64_t *order, int64_t n, int64_t batch_size, int drop_last, int count, int rank);
/* copies paths, labels and tf */
fmd_loader *fmd_loader_new(int64_t n, const char *const *paths, const float *labels,
                           const fmd_transform *tf, const fmd_loader_opts *opts);
int fmd_loader_start(fmd_loader *l, int64_t epoch);   /* stops a running epoch first */
/* 1 = batch returned (caller owns both), 0 = epoch done, -1 = error (a
 * worker's message, with the file name); errors repeat until restarted */
int fmd_loader_next(fmd_loader *l, fmd_tensor **images, fmd_tensor **labels);
void fmd_loader_stop(fmd_loader *l);                  /* joins workers, frees batches */
/* samples skipped (skip_bad) this epoch; buf gets the messages of skips not
 * reported by an earlier call, one per line (as many as fit), "" if none */
int64_t fmd_loader_skipped(fmd_loader *l, char *buf, size_t n);
void fmd_loader_free(fmd_loader *l);                  /* NULL is fine */

/* --- the face generator (engine/facegen.c) --- */
/* Generated face images for the default data set (docs/facegen.md). Each image
 * is a pure function of (kind, seed, target_seed, params). */
typedef enum { FMD_FACEGEN_REAL = 0, FMD_FACEGEN_SWAP = 1, FMD_FACEGEN_GAN = 2 } fmd_facegen_kind;
/* Strengths of the fake traces, tuned in one place (fmd_facegen_default_params);
 * `strength` multiplies all of them, 0 turns a trace off. */
typedef struct fmd_facegen_params {
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
} fmd_facegen_params;
void fmd_facegen_default_params(fmd_facegen_params *p);
/* 64-bit seed of one image from (seed, dataset, split, class, index) */
uint64_t fmd_facegen_seed(uint64_t seed, const char *dataset, const char *split, const char *cls,
                          int64_t index);
/* One image (3 x S x S in [0,1]). REAL: a camera image of identity `seed`.
 * SWAP: the REAL image of target_seed with the inner face of identity `seed`
 * blended in. GAN: identity `seed` through a generator path. params NULL =
 * defaults; *mask (optional) gets the 1 x S x S swap blend mask (zeros for
 * the other kinds). */
fmd_tensor *fmd_facegen_render(fmd_facegen_kind kind, uint64_t seed, uint64_t target_seed,
                               const fmd_facegen_params *params, fmd_tensor **mask);
typedef struct fmd_facegen_job {
    fmd_facegen_kind kind;
    uint64_t seed, target_seed;
    const char *path;      /* PNG written here (directory must exist) */
} fmd_facegen_job;
/* renders and writes the jobs as PNGs on the thread pool; 0 or -1 */
int fmd_facegen_write(const fmd_facegen_job *jobs, int n, const fmd_facegen_params *params);
/* mkdir -p dir; returns the number of *.png in it (removed first when
 * clear), or -1 */
int fmd_facegen_prepare_dir(const char *dir, int clear);

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
 * P = positives, N = negatives. Labels come before scores, as sklearn's
 * (y_true, y_score). See docs/metrics.md. */
/* sklearn's _binary_clf_curve: m points, one per distinct score from the
 * highest down, with the counts of positives/negatives scoring >= thr[k] */
typedef struct fmd_clf_curve {
    int64_t m;
    double *fps, *tps, *thr;     /* (n,) buffers of the caller */
} fmd_clf_curve;
int fmd_binary_clf_curve(const double *y, const double *score, int64_t n, fmd_clf_curve *c); /* n < 2^30 */
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
void fmd_confusion(const double *y, const double *score, int64_t n, double threshold, int64_t cm[4]);

#endif
