/*
 * image.c - PNG (libpng) and JPEG (libjpeg-turbo) decoding into 3 x H x W
 * float tensors in [0, 1], and 8-bit PNG writing.
 *
 * Both libraries report fatal errors by longjmp. Every buffer that must be
 * freed after such a jump is reachable from a context struct (not from a
 * local that setjmp could clobber), so each error path frees everything.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "fmd_impl.h"

/* Refuse absurd headers before allocating (an 800 KB PNG can claim
 * 16384 x 16384, 3 GB of floats): fmd_max_image_pixels(), 2^26 by default. */
#define FMD_IMAGE_MAX_SIDE 65535
/* image files above 1 GB are refused before they are read */
#define FMD_IMAGE_MAX_FILE_BYTES ((int64_t)1 << 30)

static const char *img_name(const char *name) { return name ? name : "<memory>"; }

static int check_dims(const char *name, const char *fmt, int64_t w, int64_t h) {
    if (w <= 0 || h <= 0 || w > FMD_IMAGE_MAX_SIDE || h > FMD_IMAGE_MAX_SIDE)
        return fmd_fail("image '%s': %s size %lld x %lld is not supported (sides 1..%d)", img_name(name), fmt,
                        (long long)w, (long long)h, FMD_IMAGE_MAX_SIDE);
    if (w * h > fmd_max_image_pixels())
        return fmd_fail("image '%s': %s size %lld x %lld (%lld pixels) is over the limit of %lld pixels "
                        "(FMD_MAX_IMAGE_PIXELS overrides)", img_name(name), fmt, (long long)w, (long long)h,
                        (long long)(w * h), (long long)fmd_max_image_pixels());
    return 0;
}

/* ----------------------------------------------------------------- PNG */

typedef struct {
    const uint8_t *buf;
    size_t len, pos;
    char msg[200];
    uint8_t *pixels;        /* decoded rows, freed on every path */
    png_bytep *rows;
    fmd_tensor *out;
} png_ctx;

static void png_err_fn(png_structp png, png_const_charp msg) {
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_warn_fn(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void png_read_fn(png_structp png, png_bytep data, size_t n) {
    png_ctx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos) png_error(png, "file is truncated");
    memcpy(data, c->buf + c->pos, n);
    c->pos += n;
}

// out is (3, H, W)
static fmd_tensor *decode_png(const uint8_t *buf, size_t len, const char *name) {
    png_ctx c = {.buf = buf, .len = len};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, png_err_fn, png_warn_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return fmd_fail_null("image '%s': out of memory creating the PNG decoder", img_name(name));
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(c.pixels);
        free(c.rows);
        fmd_release(c.out);
        return fmd_fail_null("image '%s': bad PNG: %s", img_name(name), c.msg);
    }
    png_set_read_fn(png, &c, png_read_fn);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (check_dims(name, "PNG", w, h)) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s", fmd_error());
        png_destroy_read_struct(&png, &info, NULL);
        return fmd_fail_null("%s", msg);
    }
    /* palette -> RGB(A), gray < 8 bit -> 8 bit; keep 16 bit for precision */
    png_set_expand(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int ch = png_get_channels(png, info);
    int depth = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if ((depth != 8 && depth != 16) || ch < 1 || ch > 4 ||
        rowbytes != (size_t)w * ch * (depth / 8))
        png_error(png, "unsupported pixel layout");
    c.pixels = malloc(rowbytes * h);
    c.rows = malloc(sizeof(png_bytep) * h);
    c.out = fmd_empty(3, (int64_t[]){3, h, w});
    if (!c.pixels || !c.rows || !c.out) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) c.rows[y] = c.pixels + rowbytes * y;
    png_read_image(png, c.rows);
    png_read_end(png, NULL);

    /* gray (1, 2 channels) is replicated; alpha (2nd or 4th) is dropped */
    float *o = fmd_data(c.out);
    int64_t plane = (int64_t)w * h;
    int src[3] = {0, ch >= 3 ? 1 : 0, ch >= 3 ? 2 : 0};
    const float s8 = 1.0f / 255.0f, s16 = 1.0f / 65535.0f;
    for (int64_t i = 0; i < plane; i++) {
        const uint8_t *p = c.pixels + i * ch * (depth / 8);
        for (int k = 0; k < 3; k++) {
            o[k * plane + i] = depth == 8 ? p[src[k]] * s8
                : ((p[2 * src[k]] << 8) | p[2 * src[k] + 1]) * s16;
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(c.pixels);
    free(c.rows);
    return c.out;
}

/* ---------------------------------------------------------------- JPEG */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jmp;
    char msg[JMSG_LENGTH_MAX];
    int eof;                  /* libjpeg saw the data end early (a warning) */
    uint8_t *row;
    fmd_tensor *out;
} jpg_err;

static void jpg_error_exit(j_common_ptr cinfo) {
    jpg_err *e = (jpg_err *)cinfo->err;
    e->pub.format_message(cinfo, e->msg);
    longjmp(e->jmp, 1);
}

/* Corrupt-data warnings are level -1. A truncated file is only a warning to
 * libjpeg (it pads with gray); we treat it as an error like PIL does. */
static void jpg_emit_message(j_common_ptr cinfo, int level) {
    jpg_err *e = (jpg_err *)cinfo->err;
    if (level < 0 && (e->pub.msg_code == JWRN_JPEG_EOF || e->pub.msg_code == JWRN_HIT_MARKER) &&
        !e->eof) {
        e->eof = 1;
        e->pub.format_message(cinfo, e->msg);
    }
}

static void jpg_output_message(j_common_ptr cinfo) { (void)cinfo; }

static inline float clamp01(float v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

// out is (3, H, W)
static fmd_tensor *decode_jpeg(const uint8_t *buf, size_t len, const char *name) {
    struct jpeg_decompress_struct cinfo;
    jpg_err e;
    memset(&e, 0, sizeof e);
    cinfo.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = jpg_error_exit;
    e.pub.emit_message = jpg_emit_message;
    e.pub.output_message = jpg_output_message;
    if (setjmp(e.jmp)) {
        jpeg_destroy_decompress(&cinfo);
        free(e.row);
        fmd_release(e.out);
        return fmd_fail_null("image '%s': bad JPEG: %s", img_name(name), e.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    if (check_dims(name, "JPEG", cinfo.image_width, cinfo.image_height)) {
        jpeg_destroy_decompress(&cinfo);
        return NULL;
    }
    int cmyk = 0;
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: cinfo.out_color_space = JCS_GRAYSCALE; break;
    case JCS_CMYK: case JCS_YCCK: cinfo.out_color_space = JCS_CMYK; cmyk = 1; break;
    default: cinfo.out_color_space = JCS_RGB; break;
    }
    jpeg_start_decompress(&cinfo);
    int64_t w = cinfo.output_width, h = cinfo.output_height;
    int ch = cinfo.output_components;
    e.row = malloc((size_t)w * ch);
    e.out = fmd_empty(3, (int64_t[]){3, h, w});
    if (!e.row || !e.out) {
        snprintf(e.msg, sizeof e.msg, "out of memory");
        longjmp(e.jmp, 1);
    }
    float *o = fmd_data(e.out);
    int64_t plane = w * h;
    /* Adobe CMYK JPEGs store inverted values (Photoshop's convention, which
     * PIL follows): then C' = 255 - C and R = C' * K' / 255. */
    int inverted = cmyk && cinfo.saw_Adobe_marker;
    const float s = 1.0f / 255.0f;
    while (cinfo.output_scanline < cinfo.output_height) {
        int64_t y = cinfo.output_scanline;
        JSAMPROW rp = e.row;
        jpeg_read_scanlines(&cinfo, &rp, 1);
        float *r = o + y * w, *g = r + plane, *b = g + plane;
        const uint8_t *p = e.row;
        if (ch == 1) {
            for (int64_t x = 0; x < w; x++) r[x] = g[x] = b[x] = p[x] * s;
        } else if (ch == 3) {
            for (int64_t x = 0; x < w; x++, p += 3) {
                r[x] = p[0] * s; g[x] = p[1] * s; b[x] = p[2] * s;
            }
        } else {
            for (int64_t x = 0; x < w; x++, p += 4) {
                float cc[4];
                for (int k = 0; k < 4; k++) cc[k] = (inverted ? p[k] : 255 - p[k]) * s;
                r[x] = clamp01(cc[0] * cc[3]);
                g[x] = clamp01(cc[1] * cc[3]);
                b[x] = clamp01(cc[2] * cc[3]);
            }
        }
    }
    if (e.eof) longjmp(e.jmp, 1);   /* e.msg holds the warning text */
    jpeg_finish_decompress(&cinfo);
    if (e.eof) longjmp(e.jmp, 1);
    jpeg_destroy_decompress(&cinfo);
    free(e.row);
    return e.out;
}

/* ------------------------------------------------------------- public */

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

const char *fmd_image_format(const uint8_t *buf, size_t len) {
    if (len >= 8 && memcmp(buf, png_sig, 8) == 0) return "png";
    if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) return "jpeg";
    return NULL;
}

fmd_tensor *fmd_image_decode(const uint8_t *buf, size_t len, const char *name) {
    if (!buf || len == 0) return fmd_fail_null("image '%s': file is empty", img_name(name));
    const char *fmt = fmd_image_format(buf, len);
    if (fmt && fmt[0] == 'p') return decode_png(buf, len, name);
    if (fmt) return decode_jpeg(buf, len, name);
    if (len < 8 && memcmp(buf, png_sig, len) == 0)
        return fmd_fail_null("image '%s': bad PNG: file is truncated (%zu bytes)", img_name(name), len);
    /* show what the file starts with, so "text file named .png" is obvious */
    char head[40];
    size_t n = len < 12 ? len : 12, k = 0;
    for (size_t i = 0; i < n && k + 4 < sizeof head; i++)
        k += snprintf(head + k, sizeof head - k, "%02x", buf[i]);
    return fmd_fail_null("image '%s': not a PNG or JPEG file (%zu bytes, starts with %s)",
                         img_name(name), len, head);
}

fmd_tensor *fmd_image_load(const char *path) {
    int64_t fsize = 0;
    FILE *f = fmd_open_regular("image", path, &fsize);
    if (!f) return NULL;
    if (fsize > FMD_IMAGE_MAX_FILE_BYTES) {
        fclose(f);
        return fmd_fail_null("image '%s': file of %lld bytes is over the limit of %lld", path, (long long)fsize,
                             (long long)FMD_IMAGE_MAX_FILE_BYTES);
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return fmd_fail_null("image '%s': out of memory reading the file", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
        if ((int64_t)len > FMD_IMAGE_MAX_FILE_BYTES) break;   /* grew while we read: decode what we have */
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(buf);
        return fmd_fail_null("image '%s': read error (is it a directory?)", path);
    }
    fmd_tensor *t = fmd_image_decode(buf, len, path);
    free(buf);
    return t;
}

/* ------------------------------------------------------------ writing */

typedef struct {
    char msg[200];
    FILE *f;
    png_bytep row;
} pngw_ctx;

static void pngw_err_fn(png_structp png, png_const_charp msg) {
    pngw_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

/* Rows come from get_row(ctx, y, row) so float and uint8 sources share the
 * libpng code. */
typedef void (*row_fn)(const void *ctx, int64_t y, uint8_t *row);

static int write_png(const char *path, int64_t h, int64_t w, int ch, row_fn get_row, const void *ctx) {
    if (h <= 0 || w <= 0 || h > FMD_IMAGE_MAX_SIDE || w > FMD_IMAGE_MAX_SIDE)
        return fmd_fail("save_png '%s': image size %lld x %lld is not writable", path,
                        (long long)h, (long long)w);
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) return fmd_fail("save_png '%s': out of memory", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    pngw_ctx c = {.f = fopen(tmp, "wb")};
    if (!c.f) {
        int err = errno;
        free(tmp);
        return fmd_fail("save_png '%s': cannot create '%s.tmp': %s", path, path, strerror(err));
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &c, pngw_err_fn, png_warn_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        fclose(c.f);
        remove(tmp);
        free(tmp);
        return fmd_fail("save_png '%s': out of memory", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        if (c.f) fclose(c.f);
        remove(tmp);
        free(tmp);
        free(c.row);
        return fmd_fail("save_png '%s': %s", path, c.msg);
    }
    png_init_io(png, c.f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8,
                 ch == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    /* level 3: ~2.5x faster than 6 for ~7% larger files; generated data sets write thousands */
    png_set_compression_level(png, 3);
    png_write_info(png, info);
    c.row = malloc((size_t)w * ch);
    if (!c.row) png_error(png, "out of memory");
    for (int64_t y = 0; y < h; y++) {
        get_row(ctx, y, c.row);
        png_write_row(png, c.row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(c.row);
    FILE *f = c.f;
    c.f = NULL;
    if (fflush(f) != 0 || ferror(f)) {
        int err = errno;
        fclose(f);
        remove(tmp);
        free(tmp);
        return fmd_fail("save_png '%s': write error: %s", path, strerror(err));
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        int err = errno;
        remove(tmp);
        free(tmp);
        return fmd_fail("save_png '%s': cannot write: %s", path, strerror(err));
    }
    free(tmp);
    return 0;
}

typedef struct {
    const fmd_tensor *t;
    int ch;
    float scale;   /* value that maps to 255 */
} float_src;

static void float_row(const void *ctx, int64_t y, uint8_t *row) {
    const float_src *s = ctx;
    const fmd_tensor *t = s->t;
    int nd = t->ndim;
    int64_t w = t->shape[nd - 1], sy = t->stride[nd - 2], sx = t->stride[nd - 1];
    int64_t sc = nd == 3 ? t->stride[0] : 0;
    const float *base = fmd_data(t) + y * sy;
    for (int64_t x = 0; x < w; x++)
        for (int k = 0; k < s->ch; k++) {
            float v = base[k * sc + x * sx] / s->scale;
            v = v != v ? 0 : v < 0 ? 0 : v > 1 ? 1 : v;   /* NaN -> 0 */
            row[x * s->ch + k] = (uint8_t)lrintf(v * 255.0f);
        }
}

// img is (3,H,W), (1,H,W) or (H,W)
int fmd_image_save_png_scaled(const char *path, const fmd_tensor *img, float maxval) {
    if (!img || !(img->ndim == 2 || (img->ndim == 3 && (img->shape[0] == 3 || img->shape[0] == 1)))) {
        char sb[96] = "none";
        if (img) fmd_shape_str(sb, sizeof sb, img->ndim, img->shape);
        return fmd_fail("save_png '%s': image must be 3xHxW, 1xHxW or HxW, got %s", path, sb);
    }
    if (!(maxval > 0)) return fmd_fail("save_png '%s': maxval must be > 0", path);
    float_src s = {img, img->ndim == 3 ? (int)img->shape[0] : 1, maxval};
    return write_png(path, img->shape[img->ndim - 2], img->shape[img->ndim - 1], s.ch, float_row, &s);
}

int fmd_image_save_png(const char *path, const fmd_tensor *img) {
    return fmd_image_save_png_scaled(path, img, 1.0f);
}
