/*
 * tfjs.c - one tensor of TensorFlow.js weight data as float32.
 *
 * lib/fmd/tfjs.lua reads the weights manifest (JSON) and the shards and
 * checks every tensor's byte range against them; this file only turns one
 * tensor's stored bytes into floats, because a 22M-parameter model is too
 * slow to dequantise in Lua. The rules are tfjs-core's decodeWeights
 * (io_utils.ts): data is little-endian; a quantised tensor stores q as
 * uint8 or uint16 and means min + scale * q, computed in double and then
 * stored as float32 (an int32 weight rounds that with Math.round); float16
 * is IEEE binary16.
 */
#include "fmd_impl.h"

#include <math.h>
#include <string.h>

static const int kind_size[] = {4, 4, 2, 1, 2};   /* by fmd_tfjs_kind */
static const char *const kind_name[] = {"float32", "int32", "float16", "uint8", "uint16"};

static uint32_t rd32(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* JavaScript's Math.round: halves go up (-2.5 -> -2) */
static double js_round(double v) { return floor(v + 0.5); }

/* src: nbytes bytes holding numel(shape) elements of `kind` -> (shape) */
fmd_tensor *fmd_tfjs_decode(const uint8_t *src, int64_t nbytes, fmd_tfjs_kind kind, double min, double scale,
                            int round, int ndim, const int64_t *shape) {
    if ((int)kind < 0 || kind > FMD_TFJS_U16) return fmd_fail_null("tfjs_decode: unknown storage kind %d", (int)kind);
    if (ndim < 0 || ndim > FMD_MAX_DIMS)
        return fmd_fail_null("tfjs_decode: %d dims, fmd supports at most %d", ndim, FMD_MAX_DIMS);
    int64_t numel, need;
    if (fmd_check_shape("tfjs_decode", ndim, shape, &numel)) return NULL;
    char sbuf[160];
    /* checked before allocating: a shape that claims more than the bytes
     * given allocates nothing */
    if (fmd_checked_mul(numel, kind_size[kind], &need) || need != nbytes)   /* numel <= 2^53: no overflow */
        return fmd_fail_null("tfjs_decode: %s %s needs %lld bytes, got %lld", kind_name[kind],
                             fmd_shape_str(sbuf, sizeof sbuf, ndim, shape), (long long)need, (long long)nbytes);
    if ((kind == FMD_TFJS_U8 || kind == FMD_TFJS_U16) && !(isfinite(min) && isfinite(scale)))
        return fmd_fail_null("tfjs_decode: quantisation min %g and scale %g must be finite numbers", min, scale);
    fmd_tensor *t = fmd_empty(ndim, shape);
    if (!t) return NULL;
    float *d = fmd_data(t);
    switch (kind) {
    case FMD_TFJS_F32:
        for (int64_t i = 0; i < numel; i++) { uint32_t b = rd32(src + 4 * i); memcpy(d + i, &b, 4); }
        break;
    case FMD_TFJS_I32:
        for (int64_t i = 0; i < numel; i++) d[i] = (float)(int32_t)rd32(src + 4 * i);
        break;
    case FMD_TFJS_F16:
        for (int64_t i = 0; i < numel; i++) d[i] = fmd_half_to_float(rd16(src + 2 * i));
        break;
    case FMD_TFJS_U8: {
        float table[256];   /* 256 values: one multiply each, then a lookup */
        for (int q = 0; q < 256; q++) {
            double v = q * scale + min;
            table[q] = (float)(round ? js_round(v) : v);
        }
        for (int64_t i = 0; i < numel; i++) d[i] = table[src[i]];
        break;
    }
    case FMD_TFJS_U16:
        for (int64_t i = 0; i < numel; i++) {
            double v = rd16(src + 2 * i) * scale + min;
            d[i] = (float)(round ? js_round(v) : v);
        }
        break;
    }
    return t;
}
