/* tensor.c - errors, storage, tensor lifetime, creation, RNG, views, copies. */
#include "fmd_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ errors */
static _Thread_local char err_buf[1024];

const char *fmd_error(void) { return err_buf[0] ? err_buf : "unknown error"; }

static void set_error(const char *fmt, va_list ap) { vsnprintf(err_buf, sizeof err_buf, fmt, ap); }

int fmd_fail(const char *fmt, ...) {
    va_list ap; va_start(ap, fmt); set_error(fmt, ap); va_end(ap);
    return -1;
}

void *fmd_fail_null(const char *fmt, ...) {
    va_list ap; va_start(ap, fmt); set_error(fmt, ap); va_end(ap);
    return NULL;
}

char *fmd_shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? " x %lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

/* ----------------------------------------------------------- checked sizes */
int fmd_check_shape(const char *op, int ndim, const int64_t *shape, int64_t *numel) {
    char a[160];
    if (ndim < 0 || ndim > FMD_MAX_DIMS)
        return fmd_fail("%s: %d dims requested, fmd supports 0..%d", op, ndim, FMD_MAX_DIMS);
    int64_t n = 1, extent = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return fmd_fail("%s: size %lld of dim %d is negative", op, (long long)shape[i], i + 1);
        if (fmd_checked_mul(extent, shape[i] ? shape[i] : 1, &extent) || extent > FMD_MAX_NUMEL)
            return fmd_fail("%s: shape %s is too large: its sizes multiply to more than 2^53 "
                            "(fmd's limit; sizes 0 count as 1)", op, fmd_shape_str(a, sizeof a, ndim, shape));
        n *= shape[i];   /* n <= extent: cannot overflow */
    }
    if (numel) *numel = n;
    return 0;
}

static uint64_t parse_bytes(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v > 0)) return 0;
    switch (*end) {
    case 'k': case 'K': v *= 1024.0; end++; break;
    case 'm': case 'M': v *= 1048576.0; end++; break;
    case 'g': case 'G': v *= 1073741824.0; end++; break;
    case 't': case 'T': v *= 1099511627776.0; end++; break;
    default: break;
    }
    if (*end == 'B' || *end == 'b') end++;
    if (*end || v >= 1.8e19) return 0;
    return (uint64_t)v;
}

uint64_t fmd_max_storage_bytes(void) {
    static _Atomic uint64_t limit;   /* computed once; races compute the same value */
    uint64_t l = atomic_load(&limit);
    if (l) return l;
    const char *env = getenv("FMD_MAX_TENSOR_BYTES");
    l = env ? parse_bytes(env) : 0;
    if (!l) {
        long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
        l = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : (UINT64_C(1) << 34);
        if (l > (UINT64_C(1) << 39)) l = UINT64_C(1) << 39;
    }
    atomic_store(&limit, l);
    return l;
}

FILE *fmd_open_regular(const char *what, const char *path, int64_t *size) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return fmd_fail_null("%s: cannot open %s: %s", what, path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return fmd_fail_null("%s: cannot stat %s: %s", what, path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return fmd_fail_null("%s: %s is not a regular file (%s)", what, path,
                             S_ISDIR(sb.st_mode) ? "a directory" : S_ISFIFO(sb.st_mode) ? "a pipe"
                             : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "a device" : "a special file");
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return fmd_fail_null("%s: cannot open %s: %s", what, path, strerror(e));
    }
    if (size) *size = (int64_t)sb.st_size;
    return f;
}

int64_t fmd_max_image_pixels(void) {
    static _Atomic int64_t limit;
    int64_t l = atomic_load(&limit);
    if (l) return l;
    const char *env = getenv("FMD_MAX_IMAGE_PIXELS");
    l = env ? (int64_t)parse_bytes(env) : 0;
    if (l <= 0 || l > ((int64_t)1 << 32)) l = (int64_t)1 << 26;
    atomic_store(&limit, l);
    return l;
}

/* ----------------------------------------------------------------- storage */
static atomic_size_t bytes_in_use;

size_t fmd_bytes_in_use(void) { return atomic_load(&bytes_in_use); }

/* Storage comes straight from malloc. The fmd program (bindings/main.c)
 * tells glibc to keep freed memory in its heap, so the same sizes that every
 * training step allocates again are served from pages already touched, not
 * fresh ones that cost a page fault each; the heap coalesces freed chunks,
 * which an exact-size cache of our own could not (it held 3 GB yet missed
 * 1.5 GB per XceptionBased forward, and kept RSS higher). */
static size_t storage_bytes(int64_t size) {
    size_t bytes = (size_t)(size > 0 ? size : 1) * sizeof(float);
    return (bytes + 63) & ~(size_t)63;   /* 64-byte alignment suits AVX kernels and BLAS */
}

/* size elements, already checked by fmd_check_shape (<= 2^53); shape is
 * for the message */
static fmd_storage *storage_new(int64_t size, int ndim, const int64_t *shape) {
    /* refuse before malloc: a request the machine cannot hold would be
     * fatal under ASan and useless (or OOM-killed) otherwise */
    uint64_t limit = fmd_max_storage_bytes();
    if ((uint64_t)size > limit / sizeof(float)) {
        char a[160];
        return fmd_fail_null("cannot allocate a %s tensor: %.1f GB, more than the limit of %.1f GB "
                             "(physical memory; FMD_MAX_TENSOR_BYTES overrides)",
                             fmd_shape_str(a, sizeof a, ndim, shape), (double)size * 4 / 1e9, (double)limit / 1e9);
    }
    fmd_storage *s = malloc(sizeof *s);
    if (!s) return fmd_fail_null("out of memory allocating a storage");
    size_t bytes = storage_bytes(size);
    s->data = aligned_alloc(64, bytes);
    if (!s->data) {
        free(s);
        return fmd_fail_null("out of memory allocating %lld floats (%.1f MB)", (long long)size, bytes / 1e6);
    }
    s->size = size;
    s->refcount = 1;
    atomic_fetch_add(&bytes_in_use, bytes);
    return s;
}

static void storage_release(fmd_storage *s) {
    if (!s) return;
    if (__atomic_sub_fetch(&s->refcount, 1, __ATOMIC_ACQ_REL) == 0) {
        size_t bytes = storage_bytes(s->size);
        atomic_fetch_sub(&bytes_in_use, bytes);
        free(s->data);
        free(s);
    }
}

/* ------------------------------------------------------------------ tensor */
/* every header passed fmd_check_shape, so this cannot overflow */
int64_t fmd_numel(const fmd_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

int fmd_is_contiguous(const fmd_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

int fmd_same_shape(const fmd_tensor *a, const fmd_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

fmd_tensor *fmd_retain(fmd_tensor *t) {
    if (t) __atomic_add_fetch(&t->refcount, 1, __ATOMIC_RELAXED);
    return t;
}

void fmd_release(fmd_tensor *t) {
    if (!t) return;
    if (__atomic_sub_fetch(&t->refcount, 1, __ATOMIC_ACQ_REL) == 0) {
        storage_release(t->storage);
        fmd_release(t->grad);
        fmd_node_release(t->grad_fn);
        free(t);
    }
}

/* strides <= extent <= 2^53 (checked by tensor_over's caller) */
static void set_contiguous_strides(fmd_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) { t->stride[i] = s; s *= t->shape[i] ? t->shape[i] : 1; }
}

/* a tensor header over storage s (takes the caller's storage reference) */
static fmd_tensor *tensor_over(fmd_storage *s, int64_t offset, int ndim, const int64_t *shape,
                               const int64_t *stride) {
    /* the one gate every tensor header passes: no shape beyond the limits */
    if (fmd_check_shape("tensor", ndim, shape, NULL)) { storage_release(s); return NULL; }
    fmd_tensor *t = calloc(1, sizeof *t);
    if (!t) { storage_release(s); return fmd_fail_null("out of memory"); }
    t->storage = s;
    t->offset = offset;
    t->ndim = ndim;
    t->refcount = 1;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    if (stride) for (int i = 0; i < ndim; i++) t->stride[i] = stride[i];
    else set_contiguous_strides(t);
    return t;
}

static fmd_tensor *empty_op(const char *op, int ndim, const int64_t *shape) {
    int64_t n = 0;
    if (fmd_check_shape(op, ndim, shape, &n)) return NULL;
    fmd_storage *s = storage_new(n, ndim, shape);
    if (!s) return NULL;
    return tensor_over(s, 0, ndim, shape, NULL);
}

static fmd_tensor *full_op(const char *op, int ndim, const int64_t *shape, float value) {
    fmd_tensor *t = empty_op(op, ndim, shape);
    if (!t) return NULL;
    float *d = t->storage->data;
    int64_t n = fmd_numel(t);
    if (value == 0.0f) memset(d, 0, (size_t)n * sizeof(float));
    else for (int64_t i = 0; i < n; i++) d[i] = value;
    return t;
}

fmd_tensor *fmd_empty(int ndim, const int64_t *shape) { return empty_op("empty", ndim, shape); }
fmd_tensor *fmd_full(int ndim, const int64_t *shape, float value) { return full_op("full", ndim, shape, value); }
fmd_tensor *fmd_zeros(int ndim, const int64_t *shape) { return full_op("zeros", ndim, shape, 0.0f); }
fmd_tensor *fmd_empty_like(const fmd_tensor *t) { return fmd_empty(t->ndim, t->shape); }
fmd_tensor *fmd_zeros_like(const fmd_tensor *t) { return fmd_zeros(t->ndim, t->shape); }

fmd_tensor *fmd_new(int ndim, ...) {
    int64_t shape[FMD_MAX_DIMS];
    if (ndim < 0 || ndim > FMD_MAX_DIMS) return fmd_fail_null("new: bad number of dims %d", ndim);
    va_list ap; va_start(ap, ndim);
    for (int i = 0; i < ndim; i++) shape[i] = va_arg(ap, int64_t);
    va_end(ap);
    return fmd_zeros(ndim, shape);
}

fmd_tensor *fmd_arange(double start, double stop, double step) {
    if (step == 0 || !isfinite(start) || !isfinite(stop) || !isfinite(step))
        return fmd_fail_null("arange: step must be non-zero and bounds finite (got %g, %g, %g)", start, stop, step);
    double n = ceil((stop - start) / step);
    if (n < 0) n = 0;
    if (!(n <= (double)FMD_MAX_NUMEL))   /* also inf and nan: (int64_t) of those is undefined */
        return fmd_fail_null("arange: %g to %g by %g has more than 2^53 elements", start, stop, step);
    int64_t len = (int64_t)n;
    fmd_tensor *t = fmd_empty(1, &len);
    if (!t) return NULL;
    for (int64_t i = 0; i < len; i++) t->storage->data[i] = (float)(start + step * (double)i);
    return t;
}

fmd_tensor *fmd_from_floats(int ndim, const int64_t *shape, const float *src) {
    fmd_tensor *t = fmd_empty(ndim, shape);
    if (t) memcpy(t->storage->data, src, (size_t)fmd_numel(t) * sizeof(float));
    return t;
}

/* --------------------------------------------------------------------- RNG */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void fmd_rng_seed(fmd_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

uint64_t fmd_rng_next(fmd_rng *r) {   /* xoshiro256** */
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return res;
}

double fmd_rng_next_uniform(fmd_rng *r) { return (double)(fmd_rng_next(r) >> 11) * 0x1.0p-53; }

/* the global generator is used from the main thread only (kernels that need
 * randomness draw their per-thread seeds from it before going parallel) */
static fmd_rng global_rng = {{0x9e3779b97f4a7c15ull, 0x6a09e667f3bcc909ull, 0xbb67ae8584caa73bull, 0x3c6ef372fe94f82bull}};
static int have_spare_normal;
static double spare_normal;

void fmd_manual_seed(uint64_t seed) { fmd_rng_seed(&global_rng, seed); have_spare_normal = 0; }
uint64_t fmd_rng_u64(void) { return fmd_rng_next(&global_rng); }
double fmd_rng_uniform(void) { return fmd_rng_next_uniform(&global_rng); }

double fmd_rng_normal(void) {   /* Box-Muller, both values used */
    if (have_spare_normal) { have_spare_normal = 0; return spare_normal; }
    double u1 = fmd_rng_uniform(), u2 = fmd_rng_uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    double r = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
    spare_normal = r * sin(th);
    have_spare_normal = 1;
    return r * cos(th);
}

fmd_tensor *fmd_rand(int ndim, const int64_t *shape) {
    fmd_tensor *t = fmd_empty(ndim, shape);
    if (!t) return NULL;
    int64_t n = fmd_numel(t);
    for (int64_t i = 0; i < n; i++) t->storage->data[i] = (float)fmd_rng_uniform();
    return t;
}

fmd_tensor *fmd_randn(int ndim, const int64_t *shape) {
    fmd_tensor *t = fmd_empty(ndim, shape);
    if (!t) return NULL;
    int64_t n = fmd_numel(t);
    for (int64_t i = 0; i < n; i++) t->storage->data[i] = (float)fmd_rng_normal();
    return t;
}

/* ------------------------------------------------------------------- views */
/* a view of t with new geometry sharing its storage; no autograd info */
static fmd_tensor *make_view(fmd_tensor *t, int64_t offset, int ndim, const int64_t *shape,
                             const int64_t *stride) {
    __atomic_add_fetch(&t->storage->refcount, 1, __ATOMIC_RELAXED);
    return tensor_over(t->storage, offset, ndim, shape, stride);
}

fmd_tensor *fmd_alias(fmd_tensor *t) { return make_view(t, t->offset, t->ndim, t->shape, t->stride); }
fmd_tensor *fmd_detach(fmd_tensor *t) { return fmd_alias(t); }

/* ---- backward functions of view ops: route the gradient back to the input */
static int view_backward(fmd_node *n, fmd_tensor *g) {   /* reshape/view */
    fmd_tensor *in = n->inputs[0];
    fmd_tensor *gc = fmd_contiguous(g);
    if (!gc) return -1;
    fmd_tensor *r = fmd_view(gc, in->ndim, in->shape);
    fmd_release(gc);
    if (!r) return -1;
    int rc = fmd_accumulate_grad(in, r);
    fmd_release(r);
    return rc;
}

static int permute_backward(fmd_node *n, fmd_tensor *g) {
    fmd_tensor *in = n->inputs[0];
    int inv[FMD_MAX_DIMS];
    for (int i = 0; i < in->ndim; i++) inv[n->iarg[i]] = i;
    fmd_tensor *p = fmd_permute(g, inv);
    if (!p) return -1;
    int rc = fmd_accumulate_grad(in, p);
    fmd_release(p);
    return rc;
}

/* narrow/select: scatter g into a zero tensor shaped like the input */
static int narrow_backward(fmd_node *n, fmd_tensor *g) {
    fmd_tensor *in = n->inputs[0];
    int dim = (int)n->iarg[0];
    int64_t start = n->iarg[1], len = n->iarg[2];
    int is_select = (int)n->iarg[3];
    fmd_tensor *z = fmd_zeros_like(in);
    if (!z) return -1;
    fmd_tensor *part = is_select ? fmd_select(z, dim, start) : fmd_narrow(z, dim, start, len);
    int rc = part ? fmd_copy_(part, g) : -1;
    fmd_release(part);
    if (rc == 0) rc = fmd_accumulate_grad(in, z);
    fmd_release(z);
    return rc;
}

static int index_select_backward(fmd_node *n, fmd_tensor *g) {
    fmd_tensor *in = n->inputs[0], *idx = n->saved[0];
    int dim = (int)n->iarg[0];
    fmd_tensor *z = fmd_zeros_like(in);
    if (!z) return -1;
    int64_t k = fmd_numel(idx);
    int rc = 0;
    for (int64_t i = 0; i < k && rc == 0; i++) {
        int64_t j = (int64_t)fmd_data(idx)[i * idx->stride[0]];
        fmd_tensor *dst = fmd_narrow(z, dim, j, 1), *src = fmd_narrow(g, dim, i, 1);
        fmd_tensor *sum = (dst && src) ? fmd_add(dst, src) : NULL;
        rc = sum ? fmd_copy_(dst, sum) : -1;
        fmd_release(dst); fmd_release(src); fmd_release(sum);
    }
    if (rc == 0) rc = fmd_accumulate_grad(in, z);
    fmd_release(z);
    return rc;
}

static void record_view(fmd_tensor *out, fmd_tensor *in, const char *name, fmd_backward_fn bw) {
    if (!fmd_needs_grad(1, &in)) return;
    fmd_node *n = fmd_node_new(name, bw, 1, &in);
    if (n) fmd_node_attach(out, n);
}

fmd_tensor *fmd_view(fmd_tensor *t, int ndim, const int64_t *shape_in) {
    char a[128], b[128];
    int64_t shape[FMD_MAX_DIMS];
    int infer = -1;
    int64_t known = 1, n = fmd_numel(t);
    if (ndim < 0 || ndim > FMD_MAX_DIMS) return fmd_fail_null("view: %d dims, at most %d", ndim, FMD_MAX_DIMS);
    for (int i = 0; i < ndim; i++) {
        shape[i] = shape_in[i];
        if (shape[i] == -1) {
            if (infer >= 0) return fmd_fail_null("view: only one dimension can be -1");
            infer = i;
        } else if (shape[i] < 0) {
            return fmd_fail_null("view: invalid size %lld", (long long)shape[i]);
        }
    }
    {   /* the known sizes alone must pass the limits (else the product wraps) */
        int64_t ks[FMD_MAX_DIMS] = {0};
        for (int i = 0; i < ndim; i++) ks[i] = i == infer ? 1 : shape[i];
        if (fmd_check_shape("view", ndim, ks, &known)) return NULL;
    }
    if (infer >= 0) {
        if (known == 0 || n % known)
            return fmd_fail_null("view: shape %s is invalid for input of size %lld (%s)",
                                 fmd_shape_str(a, sizeof a, ndim, shape_in), (long long)n,
                                 fmd_shape_str(b, sizeof b, t->ndim, t->shape));
        shape[infer] = n / known;
        known = n;
    }
    if (known != n)
        return fmd_fail_null("view: shape %s is invalid for input %s of %lld elements",
                             fmd_shape_str(a, sizeof a, ndim, shape), fmd_shape_str(b, sizeof b, t->ndim, t->shape),
                             (long long)n);
    /* compute strides for the new shape over t's (possibly strided) layout,
     * merging t's dims into contiguous chunks (as torch's computeStride) */
    int64_t stride[FMD_MAX_DIMS];
    int view_d = ndim - 1;
    int64_t chunk_base_stride = t->ndim ? t->stride[t->ndim - 1] : 1;
    int64_t tensor_numel = 1, view_numel = 1;
    int ok = 1;
    if (n == 0) {
        int64_t s = 1;   /* <= extent, checked above */
        for (int i = ndim - 1; i >= 0; i--) { stride[i] = s; s *= shape[i] ? shape[i] : 1; }
    } else {
        for (int td = t->ndim - 1; td >= 0; td--) {
            tensor_numel *= t->shape[td];
            if (td == 0 || (t->shape[td - 1] != 1 && t->stride[td - 1] != tensor_numel * chunk_base_stride)) {
                while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
                    stride[view_d] = view_numel * chunk_base_stride;
                    view_numel *= shape[view_d];
                    view_d--;
                }
                if (view_numel != tensor_numel) { ok = 0; break; }
                if (td > 0) { chunk_base_stride = t->stride[td - 1]; tensor_numel = 1; view_numel = 1; }
            }
        }
        if (ok && view_d != -1) {
            /* remaining leading dims of size 1 */
            while (view_d >= 0) { if (shape[view_d] != 1) { ok = 0; break; } stride[view_d] = 1; view_d--; }
        }
    }
    if (!ok)
        return fmd_fail_null("view: %s with strides that cannot be viewed as %s; use reshape (copies)",
                             fmd_shape_str(a, sizeof a, t->ndim, t->shape), fmd_shape_str(b, sizeof b, ndim, shape));
    fmd_tensor *v = make_view(t, t->offset, ndim, shape, stride);
    if (v) record_view(v, t, "view", view_backward);
    return v;
}

fmd_tensor *fmd_reshape(fmd_tensor *t, int ndim, const int64_t *shape) {
    if (fmd_is_contiguous(t)) return fmd_view(t, ndim, shape);
    fmd_tensor *c = fmd_contiguous(t);
    if (!c) return NULL;
    fmd_tensor *v = fmd_view(c, ndim, shape);
    fmd_release(c);
    return v;
}

fmd_tensor *fmd_permute(fmd_tensor *t, const int *dims) {
    int64_t shape[FMD_MAX_DIMS], stride[FMD_MAX_DIMS];
    int seen[FMD_MAX_DIMS] = {0};
    for (int i = 0; i < t->ndim; i++) {
        int d = dims[i];
        if (d < 0 || d >= t->ndim || seen[d])
            return fmd_fail_null("permute: dims must be a permutation of 1..%d", t->ndim);
        seen[d] = 1;
        shape[i] = t->shape[d];
        stride[i] = t->stride[d];
    }
    fmd_tensor *v = make_view(t, t->offset, t->ndim, shape, stride);
    if (v && fmd_needs_grad(1, &t)) {
        fmd_node *n = fmd_node_new("permute", permute_backward, 1, &t);
        if (n) { for (int i = 0; i < t->ndim; i++) n->iarg[i] = dims[i]; fmd_node_attach(v, n); }
    }
    return v;
}

fmd_tensor *fmd_transpose(fmd_tensor *t, int d0, int d1) {
    if (d0 < 0 || d0 >= t->ndim || d1 < 0 || d1 >= t->ndim)
        return fmd_fail_null("transpose: dims %d and %d out of range for a %d-dim tensor", d0 + 1, d1 + 1, t->ndim);
    int dims[FMD_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) dims[i] = i;
    dims[d0] = d1; dims[d1] = d0;
    return fmd_permute(t, dims);
}

static fmd_tensor *narrow_impl(fmd_tensor *t, int dim, int64_t start, int64_t len, int is_select) {
    char a[128];
    if (dim < 0 || dim >= t->ndim)
        return fmd_fail_null("%s: dim %d out of range for %s", is_select ? "select" : "narrow", dim + 1,
                             fmd_shape_str(a, sizeof a, t->ndim, t->shape));
    if (start < 0 || len < 0 || start > t->shape[dim] || len > t->shape[dim] - start)   /* no start + len: it may wrap */
        return fmd_fail_null("%s: range %.0f..%.0f out of bounds 1..%lld of dim %d of %s",
                             is_select ? "select" : "narrow", (double)start + 1, (double)start + (double)len,
                             (long long)t->shape[dim], dim + 1, fmd_shape_str(a, sizeof a, t->ndim, t->shape));
    int64_t shape[FMD_MAX_DIMS], stride[FMD_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (i == dim && is_select) continue;
        shape[nd] = i == dim ? len : t->shape[i];
        stride[nd] = t->stride[i];
        nd++;
    }
    fmd_tensor *v = make_view(t, t->offset + start * t->stride[dim], nd, shape, stride);
    if (v && fmd_needs_grad(1, &t)) {
        fmd_node *n = fmd_node_new(is_select ? "select" : "narrow", narrow_backward, 1, &t);
        if (n) {
            n->iarg[0] = dim; n->iarg[1] = start; n->iarg[2] = len; n->iarg[3] = is_select;
            fmd_node_attach(v, n);
        }
    }
    return v;
}

fmd_tensor *fmd_narrow(fmd_tensor *t, int dim, int64_t start, int64_t len) {
    return narrow_impl(t, dim, start, len, 0);
}

fmd_tensor *fmd_select(fmd_tensor *t, int dim, int64_t index) {
    return narrow_impl(t, dim, index, 1, 1);
}

fmd_tensor *fmd_index_select(fmd_tensor *t, int dim, const fmd_tensor *idx) {
    char a[128];
    if (dim < 0 || dim >= t->ndim)
        return fmd_fail_null("index: dim %d out of range for %s", dim + 1, fmd_shape_str(a, sizeof a, t->ndim, t->shape));
    if (idx->ndim != 1) return fmd_fail_null("index: indices must be 1-D, got %d dims", idx->ndim);
    int64_t k = idx->shape[0];
    int64_t shape[FMD_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) shape[i] = t->shape[i];
    shape[dim] = k;
    for (int64_t i = 0; i < k; i++) {
        float f = fmd_data(idx)[i * idx->stride[0]];
        if (f != floorf(f) || f < 0 || f >= (float)t->shape[dim])
            return fmd_fail_null("index: index %g out of range 1..%lld for dim %d of %s", (double)f + 1,
                                 (long long)t->shape[dim], dim + 1, fmd_shape_str(a, sizeof a, t->ndim, t->shape));
    }
    fmd_tensor *out = fmd_empty(t->ndim, shape);
    if (!out) return NULL;
    for (int64_t i = 0; i < k; i++) {
        int64_t j = (int64_t)fmd_data(idx)[i * idx->stride[0]];
        fmd_tensor *src = make_view(t, t->offset + j * t->stride[dim], t->ndim, t->shape, t->stride);
        fmd_tensor *dst = fmd_narrow(out, dim, i, 1);
        if (src) src->shape[dim] = 1;
        int rc = (src && dst) ? fmd_copy_(dst, src) : -1;
        fmd_release(src); fmd_release(dst);
        if (rc) { fmd_release(out); return NULL; }
    }
    if (fmd_needs_grad(1, &t)) {
        fmd_node *n = fmd_node_new("index_select", index_select_backward, 1, &t);
        if (n) {
            n->iarg[0] = dim;
            n->saved[0] = fmd_alias((fmd_tensor *)idx);
            fmd_node_attach(out, n);
        }
    }
    return out;
}

fmd_tensor *fmd_expand(fmd_tensor *t, int ndim, const int64_t *shape) {
    char a[128], b[128];
    if (ndim < t->ndim || ndim > FMD_MAX_DIMS) goto bad;
    if (fmd_check_shape("expand", ndim, shape, NULL)) return NULL;
    int64_t stride[FMD_MAX_DIMS];
    for (int i = ndim - 1, j = t->ndim - 1; i >= 0; i--, j--) {
        if (j >= 0 && t->shape[j] == shape[i]) stride[i] = t->stride[j];
        else if (j < 0 || t->shape[j] == 1) stride[i] = 0;
        else goto bad;
    }
    return make_view(t, t->offset, ndim, shape, stride);
bad:
    return fmd_fail_null("expand: %s cannot be expanded to %s", fmd_shape_str(a, sizeof a, t->ndim, t->shape),
                         fmd_shape_str(b, sizeof b, ndim, shape));
}

/* ------------------------------------------------------------------ copies */
/* strided copy dst <- src where both have the same shape */
static void copy_strided(float *dst, const int64_t *dstride, const float *src, const int64_t *sstride,
                         const int64_t *shape, int ndim) {
    if (ndim == 0) { *dst = *src; return; }
    if (ndim == 1) {
        int64_t n = shape[0], ds = dstride[0], ss = sstride[0];
        if (ds == 1 && ss == 1) memcpy(dst, src, (size_t)n * sizeof(float));
        else for (int64_t i = 0; i < n; i++) dst[i * ds] = src[i * ss];
        return;
    }
    for (int64_t i = 0; i < shape[0]; i++)
        copy_strided(dst + i * dstride[0], dstride + 1, src + i * sstride[0], sstride + 1, shape + 1, ndim - 1);
}

int fmd_copy_(fmd_tensor *dst, const fmd_tensor *src) {
    fmd_tensor *s = fmd_expand((fmd_tensor *)src, dst->ndim, dst->shape);
    if (!s) {
        char a[128], b[128];
        return fmd_fail("copy: source %s does not broadcast to destination %s",
                        fmd_shape_str(a, sizeof a, src->ndim, src->shape), fmd_shape_str(b, sizeof b, dst->ndim, dst->shape));
    }
    if (fmd_numel(dst) > 0) {
        if (fmd_is_contiguous(dst) && fmd_is_contiguous(s) && s->storage != dst->storage)
            memcpy(fmd_data(dst), fmd_data(s), (size_t)fmd_numel(dst) * sizeof(float));
        else if (s->storage == dst->storage) {
            /* overlapping memory: go through a temporary */
            fmd_tensor *tmp = fmd_empty(dst->ndim, dst->shape);
            if (!tmp) { fmd_release(s); return -1; }
            copy_strided(fmd_data(tmp), tmp->stride, fmd_data(s), s->stride, dst->shape, dst->ndim);
            copy_strided(fmd_data(dst), dst->stride, fmd_data(tmp), tmp->stride, dst->shape, dst->ndim);
            fmd_release(tmp);
        } else
            copy_strided(fmd_data(dst), dst->stride, fmd_data(s), s->stride, dst->shape, dst->ndim);
    }
    fmd_release(s);
    return 0;
}

int fmd_fill_(fmd_tensor *t, float v) {
    fmd_tensor *s = fmd_full(0, NULL, v);
    if (!s) return -1;
    int rc = fmd_copy_(t, s);
    fmd_release(s);
    return rc;
}

static int clone_backward(fmd_node *n, fmd_tensor *g) { return fmd_accumulate_grad(n->inputs[0], g); }

fmd_tensor *fmd_clone(fmd_tensor *t) {
    fmd_tensor *c = fmd_empty(t->ndim, t->shape);
    if (!c) return NULL;
    if (fmd_copy_(c, t)) { fmd_release(c); return NULL; }
    record_view(c, t, "clone", clone_backward);
    return c;
}

fmd_tensor *fmd_contiguous(fmd_tensor *t) {
    if (fmd_is_contiguous(t)) return fmd_retain(t);
    return fmd_clone(t);
}
