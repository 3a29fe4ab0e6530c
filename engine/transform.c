/*
 * transform.c - image kernels on C x H x W float tensors (resize, pad+crop,
 * horizontal flip, normalize; the JPEG, blur and colour augmentations) and
 * the transform chain the data loader runs.
 *
 * The kernels are serial on purpose: they run inside data-loader workers, so
 * parallelism comes from the workers and never competes with fmd_parallel.
 * They record no autograd (data preparation only).
 */
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "fmd_impl.h"

/* contiguous (C,H,W) source or an error naming the op */
static fmd_tensor *chw_input(const char *op, fmd_tensor *img) {
    if (!img) return fmd_fail_null("%s: image is NULL", op);
    if (img->ndim != 3) {
        char sb[96];
        fmd_shape_str(sb, sizeof sb, img->ndim, img->shape);
        return fmd_fail_null("%s: image must be C x H x W, got %s", op, sb);
    }
    return fmd_contiguous(img);
}

/* ------------------------------------------------------------- resize */

/* Filter taps laid out like PIL's precompute_coeffs (Resample.c), so float
 * and 8-bit results follow PIL's bilinear resize: a triangle filter whose
 * support widens by the scale factor when shrinking (antialiasing). */
typedef struct {
    int64_t ksize;
    int64_t *xmin, *xcnt;   /* first tap and tap count per output pixel */
    double *k;              /* out x ksize normalized weights */
    int32_t *ik;            /* fixed-point weights for the 8-bit path */
} taps;

#define PIL_PRECISION_BITS (32 - 8 - 2)

static void taps_free(taps *t) {
    free(t->xmin); free(t->xcnt); free(t->k); free(t->ik);
}

static double bilinear_filter(double x) {
    if (x < 0) x = -x;
    return x < 1 ? 1 - x : 0;
}

static int taps_make(int64_t in, int64_t out, taps *t) {
    double scale = (double)in / (double)out;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    t->ksize = (int64_t)ceil(support) * 2 + 1;
    t->xmin = malloc(sizeof(int64_t) * out);
    t->xcnt = malloc(sizeof(int64_t) * out);
    t->k = calloc((size_t)(out * t->ksize), sizeof(double));
    t->ik = calloc((size_t)(out * t->ksize), sizeof(int32_t));
    if (!t->xmin || !t->xcnt || !t->k || !t->ik) {
        taps_free(t);
        return fmd_fail("resize: out of memory for %lld filter taps", (long long)(out * t->ksize));
    }
    for (int64_t xx = 0; xx < out; xx++) {
        double center = (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int64_t xmin = (int64_t)(center - support + 0.5);   /* truncation, as in PIL */
        if (xmin < 0) xmin = 0;
        int64_t xmax = (int64_t)(center + support + 0.5);
        if (xmax > in) xmax = in;
        xmax -= xmin;
        double *k = t->k + xx * t->ksize;
        for (int64_t x = 0; x < xmax; x++) {
            double w = bilinear_filter((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (int64_t x = 0; x < xmax; x++) {
            if (ww != 0.0) k[x] /= ww;
            /* weights are >= 0, so PIL's rounding is +0.5 then truncation */
            t->ik[xx * t->ksize + x] = (int32_t)(0.5 + k[x] * (1 << PIL_PRECISION_BITS));
        }
        t->xmin[xx] = xmin;
        t->xcnt[xx] = xmax;
    }
    return 0;
}

static inline uint8_t pil_clip8(int32_t v) {
    if (v >= (1 << PIL_PRECISION_BITS << 8)) return 255;
    if (v <= 0) return 0;
    return (uint8_t)(v >> PIL_PRECISION_BITS);
}

static inline uint8_t to_u8(float v) {
    v = v > 0.0f ? v : 0.0f;   /* NaN -> 0 */
    v = v < 1.0f ? v : 1.0f;
    return (uint8_t)(int32_t)(v * 255.0f + 0.5f);   /* via int32: vectorizes */
}

/* restrict: a byte store may alias anything, and without it the loop
 * stays scalar (half a loader's resize time) */
FMD_SIMD_CLONES static void to_u8_plane(const float *restrict src, int64_t n, uint8_t *restrict dst) {
    for (int64_t i = 0; i < n; i++) dst[i] = to_u8(src[i]);
}

/* One 8-bit pass along columns: dst row y (cw bytes) = clip(sum over the
 * taps i of src row (xmin[y] + i) * ik[y][i]), accumulated row by row in
 * acc (cw int32) so that the inner loop is contiguous and vectorises. */
FMD_SIMD_CLONES static void pass_u8(const uint8_t *src, int64_t cw, const taps *t, int64_t oh, uint8_t *dst,
                                    int32_t *acc) {
    const int32_t half = 1 << (PIL_PRECISION_BITS - 1);
    for (int64_t y = 0; y < oh; y++) {
        const int32_t *k = t->ik + y * t->ksize;
        for (int64_t x = 0; x < cw; x++) acc[x] = half;
        for (int64_t i = 0; i < t->xcnt[y]; i++) {
            const uint8_t *p = src + (t->xmin[y] + i) * cw;
            int32_t kk = k[i];
            for (int64_t x = 0; x < cw; x++) acc[x] += p[x] * kk;
        }
        uint8_t *o = dst + y * cw;
        for (int64_t x = 0; x < cw; x++) o[x] = pil_clip8(acc[x]);
    }
}

// src (h, w) bytes -> dst (w, h)
static void transpose_u8(const uint8_t *src, int64_t h, int64_t w, uint8_t *dst) {
    for (int64_t y0 = 0; y0 < h; y0 += 16)   /* 16 x 16 blocks stay in L1 */
        for (int64_t x0 = 0; x0 < w; x0 += 16)
            for (int64_t y = y0; y < h && y < y0 + 16; y++)
                for (int64_t x = x0; x < w && x < x0 + 16; x++) dst[x * h + y] = src[y * w + x];
}

/* 8-bit path, PIL's order: horizontal (h, w) -> (h, ow) into tmp, then
 * vertical -> (oh, ow) into dst. The horizontal pass runs as a vertical one
 * on the transposed plane (tr, at least max(w, ow) * h bytes), which gives
 * the same integer sums: a pass along rows gathers a few bytes per output
 * pixel and does not vectorise (it was 40 % of a loader's time). acc has
 * max(w, h, ow) int32 of scratch. */
static void resample_u8(const uint8_t *src, int64_t h, int64_t w, uint8_t *tmp, uint8_t *tr, uint8_t *dst,
                        int64_t oh, int64_t ow, const taps *th, const taps *tv, int32_t *acc) {
    const uint8_t *hsrc = src;
    if (th) {
        transpose_u8(src, h, w, tr);            /* (w, h) */
        pass_u8(tr, h, th, ow, tmp, acc);       /* (ow, h) */
        transpose_u8(tmp, ow, h, tr);           /* (h, ow) */
        hsrc = tr;
    }
    int64_t cw = th ? ow : w;
    if (tv) pass_u8(hsrc, cw, tv, oh, dst, acc);
    else memcpy(dst, hsrc, (size_t)(oh * cw));
}

static void resample_f32(const float *src, int64_t h, int64_t w, float *tmp, float *dst,
                         int64_t oh, int64_t ow, const taps *th, const taps *tv) {
    const float *hsrc = src;
    if (th) {
        for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < ow; x++) {
                const double *k = th->k + x * th->ksize;
                const float *p = src + y * w + th->xmin[x];
                float ss = 0;
                for (int64_t i = 0; i < th->xcnt[x]; i++) ss += p[i] * (float)k[i];
                tmp[y * ow + x] = ss;
            }
        hsrc = tmp;
    }
    int64_t cw = th ? ow : w;
    if (tv) {
        for (int64_t y = 0; y < oh; y++) {
            const double *k = tv->k + y * tv->ksize;
            float *o = dst + y * cw;
            for (int64_t x = 0; x < cw; x++) o[x] = 0;
            /* row-wise accumulation keeps the inner loop contiguous */
            for (int64_t i = 0; i < tv->xcnt[y]; i++) {
                const float *p = hsrc + (tv->xmin[y] + i) * cw;
                float kk = (float)k[i];
                for (int64_t x = 0; x < cw; x++) o[x] += p[x] * kk;
            }
        }
    } else {
        memcpy(dst, hsrc, sizeof(float) * (size_t)(oh * ow));
    }
}

/* the contiguous (C,H,W) source of a resize to oh x ow, or an error naming op */
static fmd_tensor *resize_input(const char *op, fmd_tensor *img, int64_t oh, int64_t ow) {
    if (oh <= 0 || ow <= 0 || oh > 65535 || ow > 65535)
        return fmd_fail_null("%s: output size %lld x %lld must be in 1..65535", op, (long long)oh, (long long)ow);
    fmd_tensor *x = chw_input(op, img);
    if (x && (x->shape[1] == 0 || x->shape[2] == 0)) {
        fmd_fail("%s: cannot resize an empty %lld x %lld image", op, (long long)x->shape[1], (long long)x->shape[2]);
        fmd_release(x);
        return NULL;
    }
    return x;
}

// img is (C,H,W); returns (C,oh,ow)
fmd_tensor *fmd_image_resize(fmd_tensor *img, int64_t oh, int64_t ow, int pil8) {
    fmd_tensor *x = resize_input("resize", img, oh, ow);
    if (!x) return NULL;
    int64_t C = x->shape[0], h = x->shape[1], w = x->shape[2];
    fmd_tensor *out = fmd_empty(3, (int64_t[]){C, oh, ow});
    if (out && oh == h && ow == w) {   /* a copy, like PIL: no 8-bit rounding */
        memcpy(fmd_data(out), fmd_data(x), sizeof(float) * (size_t)(C * h * w));
        fmd_release(x);
        return out;
    }
    taps th = {0}, tv = {0};
    int need_h = ow != w, need_v = oh != h;
    void *tmp = NULL, *a = NULL, *b = NULL, *tr = NULL;
    if (!out || (need_h && taps_make(w, ow, &th)) || (need_v && taps_make(h, oh, &tv))) goto fail;
    size_t esz = pil8 ? 1 : sizeof(float);
    tmp = malloc(esz * (size_t)(h * ow));
    if (pil8) {
        int64_t wide = ow > w ? ow : w, accn = wide > h ? wide : h;
        a = malloc((size_t)(h * w));
        b = malloc((size_t)(oh * ow) + sizeof(int32_t) * (size_t)accn + 8);
        tr = malloc((size_t)(wide * h));
    }
    if (!tmp || (pil8 && (!a || !b || !tr))) {
        fmd_fail("resize: out of memory");
        goto fail;
    }
    const float *src = fmd_data(x);
    float *dst = fmd_data(out);
    for (int64_t c = 0; c < C; c++) {
        const float *sp = src + c * h * w;
        float *dp = dst + c * oh * ow;
        if (pil8) {
            /* like PIL on a uint8 image: quantize, resample with fixed-point
             * weights and 8-bit intermediates, then back to [0, 1] */
            uint8_t *ua = a, *ub = b;
            /* accumulator row after the output plane, 4-byte aligned */
            int32_t *acc = (int32_t *)(ub + (((size_t)(oh * ow) + 3) & ~(size_t)3));
            to_u8_plane(sp, h * w, ua);
            resample_u8(ua, h, w, tmp, tr, ub, oh, ow, need_h ? &th : NULL, need_v ? &tv : NULL, acc);
            for (int64_t i = 0; i < oh * ow; i++) dp[i] = ub[i] * (1.0f / 255.0f);
        } else {
            resample_f32(sp, h, w, tmp, dp, oh, ow, need_h ? &th : NULL, need_v ? &tv : NULL);
        }
    }
    free(tmp); free(a); free(b); free(tr);
    taps_free(&th); taps_free(&tv);
    fmd_release(x);
    return out;
fail:
    free(tmp); free(a); free(b); free(tr);
    taps_free(&th); taps_free(&tv);
    fmd_release(x);
    fmd_release(out);
    return NULL;
}

/* ------------------------------------------------- crop, flip, normalize */

/* One pass for crop, then optional mirror, then optional normalize (the
 * train recipe's tail): out[c,y,x] = (Cr[c,y,flip ? ow-1-x : x] - m[c]) / s[c]
 * with Cr[c,y,x] = img[c, y+top, x+left] or fill outside. n = 0: no
 * normalize (m = 0, s = 1 leave values bit-identical). */
static fmd_tensor *crop_flip_norm(const char *op, fmd_tensor *img, int64_t top, int64_t left, int64_t oh,
                                  int64_t ow, float fill, int flip, int n, const float *mean, const float *std) {
    if (oh <= 0 || ow <= 0) return fmd_fail_null("%s: size %lld x %lld must be positive", op,
                                                 (long long)oh, (long long)ow);
    fmd_tensor *x = chw_input(op, img);
    if (!x) return NULL;
    int64_t C = x->shape[0], h = x->shape[1], w = x->shape[2];
    if (n != 0 && n != 1 && n != C) {
        fmd_release(x);
        return fmd_fail_null("normalize: %d mean/std values for an image with %lld channels", n, (long long)C);
    }
    fmd_tensor *out = fmd_empty(3, (int64_t[]){C, oh, ow});
    if (!out) { fmd_release(x); return NULL; }
    const float *s = fmd_data(x);
    float *d = fmd_data(out);
    /* crop columns [x0, x1) come from the image; mirrored they land on
     * output columns [ow - x1, ow - x0) */
    int64_t x0 = left < 0 ? -left : 0, x1 = w - left < ow ? w - left : ow;
    if (x0 > ow) x0 = ow;
    if (x1 < x0) x1 = x0;
    int64_t o0 = flip ? ow - x1 : x0, o1 = flip ? ow - x0 : x1;
    for (int64_t c = 0; c < C; c++) {
        float m = n ? mean[n == 1 ? 0 : c] : 0.0f, sd = n ? std[n == 1 ? 0 : c] : 1.0f;
        float fv = (fill - m) / sd;
        for (int64_t y = 0; y < oh; y++) {
            float *o = d + (c * oh + y) * ow;
            int64_t sy = y + top;
            if (sy < 0 || sy >= h) {
                for (int64_t i = 0; i < ow; i++) o[i] = fv;
                continue;
            }
            const float *row = s + (c * h + sy) * w + left;   /* row[xc] = Cr column xc */
            for (int64_t i = 0; i < o0; i++) o[i] = fv;
            if (flip)
                for (int64_t i = o0; i < o1; i++) o[i] = (row[ow - 1 - i] - m) / sd;
            else
                for (int64_t i = o0; i < o1; i++) o[i] = (row[i] - m) / sd;
            for (int64_t i = o1; i < ow; i++) o[i] = fv;
        }
    }
    fmd_release(x);
    return out;
}

/* TensorFlow's resize_bilinear with align_corners = half_pixel_centers =
 * false (tfjs-backend-cpu's kernel, which face-api.js resizes with): output
 * pixel y reads source row y * h/oh and its next row (the last row repeats),
 * interpolated in double and stored as float; no antialiasing, so shrinking
 * skips pixels. fmd.detect needs it to see what the detector was trained on. */
// img is (C,H,W); returns (C,oh,ow)
fmd_tensor *fmd_image_resize_tf(fmd_tensor *img, int64_t oh, int64_t ow) {
    fmd_tensor *x = resize_input("resize_tf", img, oh, ow);
    if (!x) return NULL;
    int64_t C = x->shape[0], h = x->shape[1], w = x->shape[2];
    fmd_tensor *out = fmd_empty(3, (int64_t[]){C, oh, ow});
    int64_t *x0 = malloc(sizeof(int64_t) * 2 * (size_t)ow);
    double *fx = malloc(sizeof(double) * (size_t)ow);
    if (!out || !x0 || !fx) {
        if (out) fmd_fail("resize_tf: out of memory");
        fmd_release(out);
        out = NULL;
        goto done;
    }
    int64_t *x1 = x0 + ow;
    double ry = (double)h / (double)oh, rx = (double)w / (double)ow;
    for (int64_t j = 0; j < ow; j++) {
        double sx = rx * (double)j;
        x0[j] = (int64_t)floor(sx);
        fx[j] = sx - (double)x0[j];
        x1[j] = (int64_t)ceil(sx) < w - 1 ? (int64_t)ceil(sx) : w - 1;
    }
    const float *src = fmd_data(x);
    float *dst = fmd_data(out);
    for (int64_t c = 0; c < C; c++) {
        for (int64_t i = 0; i < oh; i++) {
            double sy = ry * (double)i;
            int64_t y0 = (int64_t)floor(sy), y1 = (int64_t)ceil(sy) < h - 1 ? (int64_t)ceil(sy) : h - 1;
            double fy = sy - (double)y0;
            const float *r0 = src + (c * h + y0) * w, *r1 = src + (c * h + y1) * w;
            float *d = dst + (c * oh + i) * ow;
            for (int64_t j = 0; j < ow; j++) {
                double top = r0[x0[j]] + ((double)r0[x1[j]] - r0[x0[j]]) * fx[j];
                double bottom = r1[x0[j]] + ((double)r1[x1[j]] - r1[x0[j]]) * fx[j];
                d[j] = (float)(top + (bottom - top) * fy);
            }
        }
    }
done:
    free(x0);
    free(fx);
    fmd_release(x);
    return out;
}

// img is (C,H,W); returns (C,oh,ow) with out[c,y,x] = img[c, y+top, x+left], fill outside
fmd_tensor *fmd_image_pad_crop(fmd_tensor *img, int64_t top, int64_t left, int64_t oh, int64_t ow,
                               float fill) {
    return crop_flip_norm("crop", img, top, left, oh, ow, fill, 0, 0, NULL, NULL);
}

// img is (C,H,W); returns (C,H,W) mirrored left-right
fmd_tensor *fmd_image_hflip(fmd_tensor *img) {
    fmd_tensor *x = chw_input("hflip", img);
    if (!x) return NULL;
    fmd_tensor *out = fmd_empty_like(x);
    if (!out) { fmd_release(x); return NULL; }
    int64_t rows = x->shape[0] * x->shape[1], w = x->shape[2];
    const float *s = fmd_data(x);
    float *d = fmd_data(out);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < w; i++) d[r * w + i] = s[r * w + w - 1 - i];
    fmd_release(x);
    return out;
}

// img is (C,H,W); mean/std have n = C entries (or 1, used for all); returns (C,H,W)
fmd_tensor *fmd_image_normalize(fmd_tensor *img, int n, const float *mean, const float *std) {
    fmd_tensor *x = chw_input("normalize", img);
    if (!x) return NULL;
    int64_t C = x->shape[0], plane = x->shape[1] * x->shape[2];
    if (n != 1 && n != C) {
        fmd_release(x);
        return fmd_fail_null("normalize: %d mean/std values for an image with %lld channels", n, (long long)C);
    }
    for (int i = 0; i < n; i++)
        if (!(std[i] != 0) || std[i] != std[i]) {
            fmd_release(x);
            return fmd_fail_null("normalize: std[%d] = %g must be nonzero", i + 1, std[i]);
        }
    fmd_tensor *out = fmd_empty_like(x);
    if (!out) { fmd_release(x); return NULL; }
    const float *s = fmd_data(x);
    float *d = fmd_data(out);
    for (int64_t c = 0; c < C; c++) {
        /* (v - m) / s, as torchvision computes it */
        float m = mean[n == 1 ? 0 : c], sd = std[n == 1 ? 0 : c];
        for (int64_t i = 0; i < plane; i++) d[c * plane + i] = (s[c * plane + i] - m) / sd;
    }
    fmd_release(x);
    return out;
}

/* --------------------------------------------------------- augmentations */

/* contiguous (3,H,W) [0, 1] source (when rgb) or an error naming the op.
 * The range check is what catches an augmentation placed after Normalize
 * inside a Lua chain; 1e-4 slack for float resize rounding. */
static fmd_tensor *aug_input(const char *op, fmd_tensor *img, int rgb) {
    fmd_tensor *x = chw_input(op, img);
    if (!x) return NULL;
    if (rgb && x->shape[0] != 3) {
        char sb[96];
        fmd_shape_str(sb, sizeof sb, x->ndim, x->shape);
        fmd_release(x);
        return fmd_fail_null("%s: needs a 3 x H x W RGB image, got %s", op, sb);
    }
    const float *d = fmd_data(x);
    int64_t n = fmd_numel(x);
    for (int64_t i = 0; i < n; i++)
        if (!(d[i] >= -1e-4f && d[i] <= 1.0001f)) {
            float v = d[i];
            fmd_release(x);
            return fmd_fail_null("%s: image values must be in [0, 1], found %g (put it before Normalize)",
                                 op, v);
        }
    return x;
}

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jmp;
    char msg[JMSG_LENGTH_MAX];
    uint8_t *pix, *buf;      /* interleaved RGB rows; our output buffer */
} jpg_enc;

static void jpg_enc_exit(j_common_ptr cinfo) {
    jpg_enc *e = (jpg_enc *)cinfo->err;
    e->pub.format_message(cinfo, e->msg);
    longjmp(e->jmp, 1);
}

static void jpg_enc_silent(j_common_ptr cinfo) { (void)cinfo; }

// img is (3,H,W) in [0, 1]; returns (3,H,W), the image after a JPEG round trip
fmd_tensor *fmd_image_jpeg(fmd_tensor *img, int quality) {
    if (quality < 1 || quality > 100) return fmd_fail_null("RandomJPEG: quality %d must be in 1..100", quality);
    fmd_tensor *x = aug_input("RandomJPEG", img, 1);
    if (!x) return NULL;
    int64_t h = x->shape[1], w = x->shape[2], plane = h * w;
    if (h > 65500 || w > 65500) {   /* JPEG's limit */
        fmd_release(x);
        return fmd_fail_null("RandomJPEG: image %lld x %lld is over JPEG's 65500 side limit", (long long)h,
                             (long long)w);
    }
    struct jpeg_compress_struct ci;
    jpg_enc e;
    memset(&e, 0, sizeof e);
    /* room for any JPEG of this size (libjpeg-turbo's tjBufSize bound), so
     * libjpeg never swaps in a buffer of its own */
    unsigned long cap = (unsigned long)(((w + 15) & ~15) * ((h + 15) & ~15) * 6 + 2048);
    unsigned long len = cap;
    e.pix = malloc((size_t)(plane * 3));
    e.buf = malloc(cap);
    if (!e.pix || !e.buf) {
        free(e.pix); free(e.buf);
        fmd_release(x);
        return fmd_fail_null("RandomJPEG: out of memory for a %lld x %lld image", (long long)h, (long long)w);
    }
    const float *s = fmd_data(x);
    for (int64_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) e.pix[i * 3 + c] = to_u8(s[c * plane + i]);
    fmd_release(x);
    ci.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = jpg_enc_exit;
    e.pub.output_message = jpg_enc_silent;
    if (setjmp(e.jmp)) {
        jpeg_destroy_compress(&ci);
        free(e.pix); free(e.buf);
        return fmd_fail_null("RandomJPEG: libjpeg: %s", e.msg);
    }
    jpeg_create_compress(&ci);
    uint8_t *out = e.buf;
    jpeg_mem_dest(&ci, &out, &len);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = 3;
    ci.in_color_space = JCS_RGB;
    /* PIL's encoder: library defaults (YCbCr 4:2:0, islow DCT, Huffman
     * tables not optimized), then jpeg_set_quality(q, force_baseline) */
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, quality, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = e.pix + (size_t)ci.next_scanline * (size_t)(w * 3);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    free(e.pix);
    fmd_tensor *r = fmd_image_decode(out, len, "jpeg round trip");
    if (out != e.buf) free(out);   /* cannot happen with cap, kept for safety */
    free(e.buf);
    return r;
}

/* torchvision's _get_gaussian_kernel1d in float32: x = -(k-1)/2 .. (k-1)/2,
 * pdf = exp(-0.5 (x / sigma)^2), normalized to sum 1 */
static void gauss_kernel(int k, float sigma, float *out) {
    float half = (float)(k - 1) * 0.5f, sum = 0;
    for (int i = 0; i < k; i++) {
        float t = ((float)i - half) / sigma;
        out[i] = expf(-0.5f * t * t);
        sum += out[i];
    }
    for (int i = 0; i < k; i++) out[i] /= sum;
}

/* reflect (no edge repeat) index into 0..n-1, valid for -n < i < 2n - 1 */
static inline int64_t reflect(int64_t i, int64_t n) { return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i; }

// img is (C,H,W); returns (C,H,W) blurred with a separable kx x ky Gaussian
fmd_tensor *fmd_image_gaussian_blur(fmd_tensor *img, int kx, int ky, float sigma_x, float sigma_y) {
    if (kx < 1 || ky < 1 || kx % 2 == 0 || ky % 2 == 0 || kx > 255 || ky > 255)
        return fmd_fail_null("GaussianBlur: kernel size %d x %d must be odd, 1..255", kx, ky);
    if (!(sigma_x > 0) || !(sigma_y > 0) || !isfinite(sigma_x) || !isfinite(sigma_y))
        return fmd_fail_null("GaussianBlur: sigma %g, %g must be > 0", sigma_x, sigma_y);
    fmd_tensor *x = aug_input("GaussianBlur", img, 0);
    if (!x) return NULL;
    int64_t C = x->shape[0], h = x->shape[1], w = x->shape[2];
    int px = kx / 2, py = ky / 2;
    if (px >= w || py >= h) {
        fmd_release(x);
        return fmd_fail_null("GaussianBlur: kernel %d x %d (width x height) needs an image over %d pixels wide "
                             "and %d high (reflect padding), got %lld x %lld (width x height)", kx, ky, px, py,
                             (long long)w, (long long)h);
    }
    float gx[255], gy[255];
    gauss_kernel(kx, sigma_x, gx);
    gauss_kernel(ky, sigma_y, gy);
    fmd_tensor *out = fmd_empty_like(x);
    float *tmp = malloc(sizeof(float) * (size_t)(h * w)), *row = malloc(sizeof(float) * (size_t)(w + 2 * px));
    if (!out || !tmp || !row) {
        free(tmp); free(row);
        fmd_release(x); fmd_release(out);
        return fmd_fail_null("GaussianBlur: out of memory");
    }
    const float *s = fmd_data(x);
    float *d = fmd_data(out);
    for (int64_t c = 0; c < C; c++) {
        const float *sp = s + c * h * w;
        float *dp = d + c * h * w;
        for (int64_t y = 0; y < h; y++) {   /* horizontal: padded row, then taps */
            const float *r = sp + y * w;
            for (int64_t i = -px; i < w + px; i++) row[i + px] = r[reflect(i, w)];
            float *o = tmp + y * w;
            for (int64_t i = 0; i < w; i++) {
                float acc = 0;
                for (int k = 0; k < kx; k++) acc += row[i + k] * gx[k];
                o[i] = acc;
            }
        }
        for (int64_t y = 0; y < h; y++) {   /* vertical, row-wise so the inner loop is contiguous */
            float *o = dp + y * w;
            for (int64_t i = 0; i < w; i++) o[i] = 0;
            for (int k = 0; k < ky; k++) {
                const float *p = tmp + reflect(y + k - py, h) * w;
                float g = gy[k];
                for (int64_t i = 0; i < w; i++) o[i] += p[i] * g;
            }
        }
    }
    free(tmp); free(row);
    fmd_release(x);
    return out;
}

static inline float clampf01(float v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

// img is (3,H,W) in [0, 1]; returns (3,H,W)
fmd_tensor *fmd_image_color_jitter(fmd_tensor *img, float brightness, float contrast, float saturation) {
    if (!(brightness >= 0) || !(contrast >= 0) || !(saturation >= 0) || !isfinite(brightness) ||
        !isfinite(contrast) || !isfinite(saturation))
        return fmd_fail_null("ColorJitter: factors (brightness %g, contrast %g, saturation %g) must be >= 0",
                             brightness, contrast, saturation);
    fmd_tensor *x = aug_input("ColorJitter", img, 1);
    if (!x) return NULL;
    fmd_tensor *out = fmd_empty_like(x);
    if (!out) { fmd_release(x); return NULL; }
    int64_t plane = x->shape[1] * x->shape[2];
    float *d = fmd_data(out);
    memcpy(d, fmd_data(x), sizeof(float) * (size_t)(3 * plane));
    fmd_release(x);
    float *r = d, *g = d + plane, *b = d + 2 * plane;
    /* torchvision's _blend: (f * a + (1 - f) * b).clamp(0, 1), float32 math.
     * A factor of 1 is skipped: then the blend is the identity on [0, 1]. */
    if (brightness != 1.0f) {
        float f = brightness;
        for (int64_t i = 0; i < 3 * plane; i++) d[i] = clampf01(f * d[i]);
    }
    if (contrast != 1.0f) {
        double sum = 0;
        for (int64_t i = 0; i < plane; i++) sum += 0.2989f * r[i] + 0.587f * g[i] + 0.114f * b[i];
        float f = contrast, f1 = (float)(1.0 - (double)contrast);
        float m = (float)(sum / (double)plane) * f1;
        for (int64_t i = 0; i < 3 * plane; i++) d[i] = clampf01(f * d[i] + m);
    }
    if (saturation != 1.0f) {
        float f = saturation, f1 = (float)(1.0 - (double)saturation);
        for (int64_t i = 0; i < plane; i++) {
            float gray = (0.2989f * r[i] + 0.587f * g[i] + 0.114f * b[i]) * f1;
            r[i] = clampf01(f * r[i] + gray);
            g[i] = clampf01(f * g[i] + gray);
            b[i] = clampf01(f * b[i] + gray);
        }
    }
    return out;
}

/* ------------------------------------------------------ transform chain */

/* integer in [0, n) from one uniform draw; shared with the Lua transforms */
static int64_t draw_int(fmd_rng *rng, int64_t n) {
    int64_t v = (int64_t)(fmd_rng_next_uniform(rng) * (double)n);
    return v >= n ? n - 1 : v;
}

/* Python's round() on k/2 (ties to even), as torchvision's center crop uses */
static int64_t half_round_even(int64_t d) {
    if (d % 2 == 0) return d / 2;
    int64_t lo = d / 2;          /* d > 0 here */
    return lo % 2 == 0 ? lo : lo + 1;
}

static const char *aug_name(int kind) {
    switch (kind) {
    case FMD_TF_RANDOM_JPEG: return "RandomJPEG";
    case FMD_TF_GAUSSIAN_BLUR: return "GaussianBlur";
    case FMD_TF_COLOR_JITTER: return "ColorJitter";
    default: return "op";
    }
}

/* lo + u * (hi - lo); exactly lo when lo == hi */
static float draw_range(fmd_rng *rng, float lo, float hi) {
    double u = fmd_rng_next_uniform(rng);
    return lo == hi ? lo : (float)(lo + u * ((double)hi - lo));
}

int fmd_transform_check(const fmd_transform *tf) {
    if (!tf || tf->n < 0 || tf->n > FMD_TF_MAX_OPS)
        return fmd_fail("transform: needs 0..%d ops", FMD_TF_MAX_OPS);
    for (int i = 0; i < tf->n; i++) {
        const fmd_tf_op *op = &tf->ops[i];
        switch (op->kind) {
        case FMD_TF_RESIZE: case FMD_TF_CENTER_CROP: case FMD_TF_RANDOM_CROP:
            if (op->h <= 0 || op->w <= 0 || op->h > 65535 || op->w > 65535)
                return fmd_fail("transform op %d: size %lld x %lld must be in 1..65535", i + 1,
                                (long long)op->h, (long long)op->w);
            if (op->kind == FMD_TF_RANDOM_CROP && op->pad < 0)
                return fmd_fail("transform op %d: padding %d must be >= 0", i + 1, op->pad);
            break;
        case FMD_TF_HFLIP:
            if (!(op->p >= 0 && op->p <= 1))
                return fmd_fail("transform op %d: flip probability %g must be in [0, 1]", i + 1, op->p);
            break;
        case FMD_TF_NORMALIZE:
            if (op->nch < 1 || op->nch > FMD_TF_MAX_CH)
                return fmd_fail("transform op %d: normalize needs 1..%d mean/std values", i + 1, FMD_TF_MAX_CH);
            for (int c = 0; c < op->nch; c++)
                if (!(op->std[c] != 0))
                    return fmd_fail("transform op %d: normalize std[%d] = %g must be nonzero", i + 1, c + 1,
                                    op->std[c]);
            break;
        case FMD_TF_RANDOM_JPEG:
            if (!(op->p >= 0 && op->p <= 1))
                return fmd_fail("transform op %d: RandomJPEG probability %g must be in [0, 1]", i + 1, op->p);
            if (op->q_lo < 1 || op->q_hi > 100 || op->q_lo > op->q_hi)
                return fmd_fail("transform op %d: RandomJPEG quality range %d..%d must be within 1..100, "
                                "low <= high", i + 1, op->q_lo, op->q_hi);
            break;
        case FMD_TF_GAUSSIAN_BLUR:
            if (!(op->p >= 0 && op->p <= 1))
                return fmd_fail("transform op %d: GaussianBlur probability %g must be in [0, 1]", i + 1, op->p);
            if (op->kx < 1 || op->ky < 1 || op->kx % 2 == 0 || op->ky % 2 == 0 || op->kx > 255 || op->ky > 255)
                return fmd_fail("transform op %d: GaussianBlur kernel size %d x %d must be odd, 1..255", i + 1,
                                op->kx, op->ky);
            if (!(op->sigma_lo > 0 && op->sigma_lo <= op->sigma_hi && isfinite(op->sigma_hi)))
                return fmd_fail("transform op %d: GaussianBlur sigma range %g..%g must be > 0, low <= high",
                                i + 1, op->sigma_lo, op->sigma_hi);
            break;
        case FMD_TF_COLOR_JITTER: {
            static const char *names[3] = {"brightness", "contrast", "saturation"};
            for (int k = 0; k < 3; k++)
                if (!(op->jitter[k][0] >= 0 && op->jitter[k][0] <= op->jitter[k][1] && isfinite(op->jitter[k][1])))
                    return fmd_fail("transform op %d: ColorJitter %s range %g..%g must be >= 0, low <= high",
                                    i + 1, names[k], op->jitter[k][0], op->jitter[k][1]);
            break;
        }
        default:
            return fmd_fail("transform op %d: unknown kind %d", i + 1, op->kind);
        }
        if (op->kind >= FMD_TF_RANDOM_JPEG)
            for (int j = 0; j < i; j++)
                if (tf->ops[j].kind == FMD_TF_NORMALIZE)
                    return fmd_fail("transform op %d: %s after normalize (op %d): augmentations take [0, 1] "
                                    "images, put them before Normalize", i + 1, aug_name(op->kind), j + 1);
    }
    return 0;
}

// img is (C,H,W); returns the transformed image (new reference)
fmd_tensor *fmd_transform_apply(const fmd_transform *tf, fmd_tensor *img, fmd_rng *rng) {
    if (fmd_transform_check(tf)) return NULL;
    fmd_tensor *cur = chw_input("transform", img);
    for (int i = 0; i < tf->n && cur; i++) {
        const fmd_tf_op *op = &tf->ops[i];
        int64_t h = cur->shape[1], w = cur->shape[2];
        fmd_tensor *next = NULL;
        switch (op->kind) {
        case FMD_TF_RESIZE:   /* same size: nothing to do (cur is ours and contiguous) */
            next = op->h == h && op->w == w ? fmd_retain(cur) : fmd_image_resize(cur, op->h, op->w, op->pil8);
            break;
        case FMD_TF_CENTER_CROP:
        case FMD_TF_RANDOM_CROP: {
            int64_t top, left;
            if (op->kind == FMD_TF_CENTER_CROP) {
                /* smaller images are zero-padded first, as in torchvision */
                top = h >= op->h ? half_round_even(h - op->h) : -((op->h - h) / 2);
                left = w >= op->w ? half_round_even(w - op->w) : -((op->w - w) / 2);
            } else {
                int64_t ph = h + 2 * op->pad, pw = w + 2 * op->pad;
                if (ph < op->h || pw < op->w) {
                    fmd_fail("random crop: crop %lld x %lld is larger than the padded image %lld x %lld",
                             (long long)op->h, (long long)op->w, (long long)ph, (long long)pw);
                    break;
                }
                top = draw_int(rng, ph - op->h + 1) - op->pad;
                left = draw_int(rng, pw - op->w + 1) - op->pad;
            }
            /* a following flip and normalize run in the same pass (same
             * draws in the same order as running them one by one) */
            int flip = 0, n = 0;
            const float *mean = NULL, *std = NULL;
            if (i + 1 < tf->n && tf->ops[i + 1].kind == FMD_TF_HFLIP)
                flip = fmd_rng_next_uniform(rng) < tf->ops[++i].p;
            if (i + 1 < tf->n && tf->ops[i + 1].kind == FMD_TF_NORMALIZE) {
                const fmd_tf_op *nop = &tf->ops[++i];
                n = nop->nch; mean = nop->mean; std = nop->std;
            }
            next = crop_flip_norm("crop", cur, top, left, op->h, op->w, 0.0f, flip, n, mean, std);
            break;
        }
        case FMD_TF_HFLIP:
            next = fmd_rng_next_uniform(rng) < op->p ? fmd_image_hflip(cur) : fmd_retain(cur);
            break;
        case FMD_TF_NORMALIZE:
            next = fmd_image_normalize(cur, op->nch, op->mean, op->std);
            break;
        case FMD_TF_RANDOM_JPEG: {
            int apply = fmd_rng_next_uniform(rng) < op->p;
            int q = op->q_lo + (int)draw_int(rng, op->q_hi - op->q_lo + 1);
            next = apply ? fmd_image_jpeg(cur, q) : aug_input("RandomJPEG", cur, 1);
            break;
        }
        case FMD_TF_GAUSSIAN_BLUR: {
            int apply = fmd_rng_next_uniform(rng) < op->p;
            float sigma = draw_range(rng, op->sigma_lo, op->sigma_hi);
            /* not applied: still checked, so a bad input fails on every draw */
            if (!apply && (op->kx / 2 >= w || op->ky / 2 >= h))
                next = fmd_image_gaussian_blur(cur, op->kx, op->ky, 1.0f, 1.0f);   /* for its error */
            else
                next = apply ? fmd_image_gaussian_blur(cur, op->kx, op->ky, sigma, sigma)
                             : aug_input("GaussianBlur", cur, 0);
            break;
        }
        case FMD_TF_COLOR_JITTER: {
            float f[3];
            for (int k = 0; k < 3; k++) f[k] = draw_range(rng, op->jitter[k][0], op->jitter[k][1]);
            next = fmd_image_color_jitter(cur, f[0], f[1], f[2]);
            break;
        }
        }
        fmd_release(cur);
        cur = next;
    }
    return cur;
}

/* splitmix64 finalizer: decorrelates nearby (seed, epoch, index) triples */
static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t fmd_sample_seed(uint64_t seed, int64_t epoch, int64_t index) {
    return mix64(mix64(mix64(seed) ^ (uint64_t)epoch) ^ (uint64_t)index);
}

void fmd_loader_order(int64_t n, int shuffle, uint64_t seed, int64_t epoch, int64_t *order) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    if (!shuffle) return;
    fmd_rng r;
    /* index -1 keeps the shuffle stream apart from every sample's stream */
    fmd_rng_seed(&r, fmd_sample_seed(seed, epoch, -1));
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(((unsigned __int128)fmd_rng_next(&r) * (uint64_t)(i + 1)) >> 64);
        int64_t t = order[i]; order[i] = order[j]; order[j] = t;
    }
}
