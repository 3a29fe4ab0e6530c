/*
 * facegen.c - the face generator (not a detector): procedurally rendered face
 * images for the generated default data set (docs/facegen.md): "real" faces,
 * face-swap fakes (fakes_dataset) and generator-path fakes
 * (synthetic_dataset).
 *
 * Every image is a pure function of (kind, seed, target seed, params): all
 * randomness comes from an fmd_rng seeded per image, and the value-noise
 * textures hash their lattice coordinates, so the pixels never depend on
 * thread scheduling or on which other images are made in the same run.
 *
 * Pipeline: identity/scene parameters are drawn from the seed (face_draw),
 * the scene is shaded pixel by pixel in float (render_scene), and a camera
 * stage adds optics blur, white balance, vignetting and sensor noise
 * (camera). Fakes take extra steps on top (make_swap, make_gan). Working
 * images are planar float buffers [3][S][S] in [0, 1].
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fmd_impl.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* --------------------------------------------------------------- params */

/* The one place where the strength of every fake trace is set. Calibrated
 * with SimpleNet (Adam 1e-3, batch 32, 5 epochs, default set, two training
 * seeds; docs/facegen.md): the swap traces at 1.3x and the generator traces at
 * 1.15x of a first guess gave test AUCs of 0.75-0.88 (fakes_dataset) and
 * about 0.8-0.9 (synthetic_dataset); at 1x both dropped to about 0.7. */
void fmd_facegen_default_params(fmd_facegen_params *p) {
    p->size = 256;
    p->strength = 1.0f;
    p->swap_color = 0.09f;
    p->swap_light = 0.65f;
    p->swap_resample = 0.65f;
    p->swap_sharpen = 0.8f;
    p->swap_feather = 0.18f;
    p->swap_misalign = 0.016f;
    p->gan_checker = 0.04f;
    p->gan_smooth = 0.7f;
    p->gan_color = 0.115f;
    p->noise = 0.010f;
}

static int check_params(const fmd_facegen_params *p) {
    if (p->size < 16 || p->size > 4096)
        return fmd_fail("facegen: image size %d must be in 16..4096", p->size);
    const struct { const char *name; float v; } f[] = {
        {"strength", p->strength}, {"swap_color", p->swap_color}, {"swap_light", p->swap_light},
        {"swap_resample", p->swap_resample}, {"swap_sharpen", p->swap_sharpen},
        {"swap_feather", p->swap_feather}, {"swap_misalign", p->swap_misalign},
        {"gan_checker", p->gan_checker}, {"gan_smooth", p->gan_smooth}, {"gan_color", p->gan_color},
        {"noise", p->noise}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (!(f[i].v >= 0.0f && f[i].v <= 100.0f))
            return fmd_fail("facegen: parameter %s = %g must be in [0, 100]", f[i].name, (double)f[i].v);
    return 0;
}

/* ---------------------------------------------------------- randomness */

static uint64_t mix64(uint64_t z) {   /* splitmix64 finaliser */
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t hash_str(uint64_t h, const char *s) {   /* FNV-1a, then mixed */
    uint64_t f = 0xcbf29ce484222325ull;
    for (; s && *s; s++) f = (f ^ (uint8_t)*s) * 0x100000001b3ull;
    return mix64(h ^ f);
}

uint64_t fmd_facegen_seed(uint64_t seed, const char *dataset, const char *split, const char *cls,
                          int64_t index) {
    uint64_t h = mix64(seed);
    h = hash_str(h, dataset);
    h = hash_str(h, split);
    h = hash_str(h, cls);
    return mix64(h ^ mix64((uint64_t)index));
}

static float U(fmd_rng *r, float a, float b) { return a + (b - a) * (float)fmd_rng_next_uniform(r); }
static int RI(fmd_rng *r, int n) { return (int)(fmd_rng_next_uniform(r) * n); }   /* 0..n-1 */
static float N01(fmd_rng *r) {
    double u1 = fmd_rng_next_uniform(r), u2 = fmd_rng_next_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

/* approximately N(0, 1) from one draw (sum of four 16-bit uniforms): fast
 * enough for per-pixel noise fields, where log/cos would dominate */
static inline float fast_gauss(fmd_rng *r) {
    uint64_t x = fmd_rng_next(r);
    float s = (float)(x & 0xffff) + (float)((x >> 16) & 0xffff) + (float)((x >> 32) & 0xffff) +
              (float)(x >> 48);
    return (s * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
}

/* value noise: smooth, deterministic function of (seed, x, y), in [0, 1) */
static inline float lattice(uint32_t seed, int32_t x, int32_t y) {
    uint32_t h = seed ^ ((uint32_t)x * 0x8da6b343u) ^ ((uint32_t)y * 0xd8163841u);
    h ^= h >> 15; h *= 0x2c1b3c6du; h ^= h >> 12; h *= 0x297a2d39u; h ^= h >> 15;
    return (float)(h >> 8) * (1.0f / 16777216.0f);
}

static float vnoise(uint32_t seed, float x, float y) {
    float fx0 = floorf(x), fy0 = floorf(y);
    int32_t xi = (int32_t)fx0, yi = (int32_t)fy0;
    float fx = x - fx0, fy = y - fy0;
    fx = fx * fx * (3 - 2 * fx);
    fy = fy * fy * (3 - 2 * fy);
    float a = lattice(seed, xi, yi), b = lattice(seed, xi + 1, yi);
    float c = lattice(seed, xi, yi + 1), d = lattice(seed, xi + 1, yi + 1);
    return a + (b - a) * fx + (c - a) * fy + (a - b - c + d) * fx * fy;
}

static float fbm(uint32_t seed, float x, float y, int oct) {   /* ~[0, 1], mean 0.5 */
    float s = 0, amp = 0.5f, norm = 0;
    for (int i = 0; i < oct; i++) {
        s += amp * vnoise(seed + 1013u * (uint32_t)i, x, y);
        norm += amp;
        x = x * 2.03f + 17.1f;
        y = y * 2.03f + 5.3f;
        amp *= 0.5f;
    }
    return s / norm;
}

/* --------------------------------------------------------------- helpers */

typedef struct { float r, g, b; } rgb;

static inline float clampf(float x, float a, float b) { return x < a ? a : x > b ? b : x; }
static inline float sat(float x) { return clampf(x, 0.0f, 1.0f); }
static inline float smooth01(float e0, float e1, float x) {
    float t = sat((x - e0) / (e1 - e0));
    return t * t * (3 - 2 * t);
}
static inline rgb mixc(rgb a, rgb b, float t) {
    return (rgb){a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}
static inline rgb scalec(rgb a, float s) { return (rgb){a.r * s, a.g * s, a.b * s}; }
static inline rgb mulc(rgb a, rgb b) { return (rgb){a.r * b.r, a.g * b.g, a.b * b.b}; }
/* coverage of a shape from its signed distance d (negative inside), AA width aa */
static inline float cover(float d, float aa) { return sat(0.5f - d / aa); }
/* approximate signed distance to an axis-aligned ellipse */
static inline float ell(float u, float v, float rx, float ry) {
    float q = sqrtf((u * u) / (rx * rx) + (v * v) / (ry * ry));
    return (q - 1.0f) * fminf(rx, ry);
}

static rgb rand_between(fmd_rng *r, const rgb *pal, int n) {   /* between two neighbours */
    int i = RI(r, n - 1);
    return mixc(pal[i], pal[i + 1], U(r, 0, 1));
}

/* ------------------------------------------------------------ the scene */

/* Face coordinates: origin at the face centre, v down, the face outline is
 * about |u| < width, |v| < 1. One unit is `scale` of the image side. */
typedef struct face {
    /* pose */
    float cx, cy, scale, roll, yaw, pitch;
    /* head shape */
    float width, jaw, forehead, chin;
    rgb skin, blush;
    float blush_amt, rough, freckles;
    /* eyes */
    float eye_y, eye_dx, eye_w, eye_h, eye_tilt, gaze_x, gaze_y, iris_r, lid;
    rgb iris;
    /* brows */
    float brow_y, brow_dx, brow_len, brow_thick, brow_arch, brow_tilt, brow_dark;
    /* nose */
    float nose_y, nose_w, nose_len;
    /* mouth */
    float mouth_y, mouth_w, lip_up, lip_lo, smile, open;
    rgb lip;
    /* ears */
    float ear_y, ear_rx, ear_ry;
    /* hair */
    int hair_style;      /* 0 shaved, 1 short, 2 long, 3 fringe, 4 curly volume */
    rgb hair;
    float hairline, hair_vol, hair_len, hair_part;
    int beard;           /* 0 none, 1 stubble, 2 moustache, 3 full */
    float beard_amt;
    /* glasses */
    int glasses;         /* 0 none, 1 round, 2 rectangular */
    rgb frame;
    float lens_rx, lens_ry, frame_th, lens_tint;
    /* clothing, neck */
    rgb cloth, cloth2;
    float neck_w, shoulder_y, neckline, cloth_pattern;
    /* background */
    int bg_kind;
    rgb bg1, bg2, bg3;
    float bg_angle, bg_scale;
    /* lighting: direction in face coords (x right, y down, z to camera) */
    float lx, ly, lz, ambient, key;
    rgb light;
    float spec;
    /* camera */
    float blur, noise, noise_corr, vignette, exposure, contrast;
    rgb wb;
    uint32_t tex;        /* seed of the textures */
    float cos_roll, sin_roll, cos_bg, sin_bg;   /* cached by face_ready */
} face;

static const rgb SKIN[] = {
    {0.97f, 0.82f, 0.72f}, {0.93f, 0.75f, 0.62f}, {0.86f, 0.66f, 0.52f}, {0.78f, 0.58f, 0.42f},
    {0.66f, 0.47f, 0.33f}, {0.52f, 0.36f, 0.25f}, {0.38f, 0.26f, 0.18f}, {0.27f, 0.18f, 0.13f}};
static const rgb HAIR[] = {
    {0.05f, 0.04f, 0.04f}, {0.13f, 0.09f, 0.06f}, {0.26f, 0.17f, 0.10f}, {0.42f, 0.29f, 0.17f},
    {0.62f, 0.47f, 0.29f}, {0.84f, 0.70f, 0.45f}, {0.50f, 0.22f, 0.10f}, {0.55f, 0.54f, 0.52f},
    {0.82f, 0.81f, 0.78f}};
static const rgb IRIS[] = {
    {0.14f, 0.08f, 0.04f}, {0.30f, 0.17f, 0.08f}, {0.42f, 0.32f, 0.14f}, {0.32f, 0.42f, 0.26f},
    {0.30f, 0.45f, 0.62f}, {0.42f, 0.48f, 0.54f}};

static rgb rand_color(fmd_rng *r, float lo, float hi) {
    return (rgb){U(r, lo, hi), U(r, lo, hi), U(r, lo, hi)};
}

/* identity: everything inside the face (used by the swap as the source) */
static void draw_identity(face *f, fmd_rng *r) {
    f->width = U(r, 0.70f, 0.84f);
    f->jaw = U(r, 0.10f, 0.40f);
    f->forehead = U(r, 0.95f, 1.08f);
    f->chin = U(r, 0.0f, 1.0f);
    f->skin = rand_between(r, SKIN, 8);
    f->skin.r *= U(r, 0.97f, 1.04f);
    f->skin.b *= U(r, 0.94f, 1.04f);
    f->blush = (rgb){0.85f, 0.35f, 0.35f};
    f->blush_amt = U(r, 0.0f, 0.25f);
    f->rough = U(r, 0.02f, 0.07f);
    f->freckles = fmd_rng_next_uniform(r) < 0.15 ? U(r, 0.03f, 0.09f) : 0.0f;

    f->eye_y = U(r, -0.12f, -0.02f);
    f->eye_dx = U(r, 0.27f, 0.35f);
    f->eye_w = U(r, 0.12f, 0.16f);
    f->eye_h = U(r, 0.040f, 0.065f);
    f->eye_tilt = U(r, -0.12f, 0.18f);
    f->gaze_x = U(r, -0.3f, 0.3f);
    f->gaze_y = U(r, -0.15f, 0.15f);
    f->iris_r = U(r, 0.052f, 0.066f);
    f->lid = U(r, 0.0f, 0.35f);
    f->iris = IRIS[RI(r, 6)];
    f->iris = scalec(f->iris, U(r, 0.8f, 1.2f));

    f->brow_y = f->eye_y - U(r, 0.11f, 0.17f);
    f->brow_dx = f->eye_dx + U(r, -0.02f, 0.03f);
    f->brow_len = U(r, 0.15f, 0.20f);
    f->brow_thick = U(r, 0.018f, 0.042f);
    f->brow_arch = U(r, 0.0f, 0.05f);
    f->brow_tilt = U(r, -0.04f, 0.05f);
    f->brow_dark = U(r, 0.55f, 0.95f);

    f->nose_y = U(r, 0.26f, 0.36f);
    f->nose_w = U(r, 0.09f, 0.14f);
    f->nose_len = U(r, 0.8f, 1.1f);

    f->mouth_y = U(r, 0.52f, 0.62f);
    f->mouth_w = U(r, 0.19f, 0.27f);
    f->lip_up = U(r, 0.028f, 0.048f);
    f->lip_lo = U(r, 0.040f, 0.065f);
    f->smile = U(r, -0.015f, 0.05f);
    f->open = fmd_rng_next_uniform(r) < 0.25 ? U(r, 0.004f, 0.02f) : 0.0f;
    rgb lipbase = {0.72f, 0.36f, 0.36f};
    f->lip = mixc(f->skin, lipbase, U(r, 0.4f, 0.7f));
    f->lip = scalec(f->lip, U(r, 0.72f, 0.9f));

    float b = (float)fmd_rng_next_uniform(r);
    f->beard = b < 0.70f ? 0 : b < 0.82f ? 1 : b < 0.90f ? 2 : 3;
    f->beard_amt = U(r, 0.5f, 1.0f);
    f->tex = (uint32_t)fmd_rng_next(r);
}

static void draw_scene(face *f, fmd_rng *r) {
    /* pose */
    f->cx = 0.5f + U(r, -0.05f, 0.05f);
    f->cy = 0.45f + U(r, -0.04f, 0.05f);
    f->scale = U(r, 0.29f, 0.36f);
    f->roll = U(r, -0.14f, 0.14f);
    f->yaw = U(r, -0.35f, 0.35f);
    f->pitch = U(r, -0.25f, 0.25f);
    /* ears, hair, glasses, clothing */
    f->ear_y = U(r, 0.0f, 0.08f);
    f->ear_rx = U(r, 0.07f, 0.10f);
    f->ear_ry = U(r, 0.14f, 0.19f);
    float h = (float)fmd_rng_next_uniform(r);
    f->hair_style = h < 0.08f ? 0 : h < 0.40f ? 1 : h < 0.70f ? 2 : h < 0.88f ? 3 : 4;
    f->hair = rand_between(r, HAIR, 9);
    if (fmd_rng_next_uniform(r) < 0.5) f->hair = HAIR[RI(r, 4)];   /* dark hair is common */
    f->hairline = U(r, -0.62f, -0.45f);
    f->hair_vol = U(r, 0.05f, 0.16f);
    f->hair_len = U(r, 0.6f, 1.6f);
    f->hair_part = U(r, -0.4f, 0.4f);
    f->glasses = fmd_rng_next_uniform(r) < 0.22 ? 1 + RI(r, 2) : 0;
    f->frame = fmd_rng_next_uniform(r) < 0.6 ? rand_color(r, 0.02f, 0.15f) : rand_color(r, 0.2f, 0.7f);
    f->lens_rx = U(r, 0.15f, 0.2f);
    f->lens_ry = U(r, 0.11f, 0.15f);
    f->frame_th = U(r, 0.010f, 0.022f);
    f->lens_tint = U(r, 0.0f, 0.25f);
    f->cloth = rand_color(r, 0.05f, 0.85f);
    f->cloth2 = mixc(f->cloth, rand_color(r, 0.1f, 0.9f), 0.5f);
    f->cloth_pattern = fmd_rng_next_uniform(r) < 0.3 ? U(r, 8, 20) : 0;
    f->neck_w = U(r, 0.38f, 0.5f);
    f->shoulder_y = U(r, 1.2f, 1.45f);
    f->neckline = U(r, 0.12f, 0.4f);
    /* background */
    f->bg_kind = RI(r, 4);
    f->bg1 = rand_color(r, 0.1f, 0.9f);
    f->bg2 = mixc(f->bg1, rand_color(r, 0.05f, 0.95f), U(r, 0.2f, 0.8f));
    f->bg3 = rand_color(r, 0.1f, 1.0f);
    f->bg_angle = U(r, 0, (float)(2 * M_PI));
    f->bg_scale = U(r, 2.0f, 7.0f);
    /* light */
    f->lx = U(r, -0.8f, 0.8f);
    f->ly = U(r, -0.7f, 0.1f);
    f->lz = U(r, 0.5f, 1.0f);
    float n = sqrtf(f->lx * f->lx + f->ly * f->ly + f->lz * f->lz);
    f->lx /= n; f->ly /= n; f->lz /= n;
    f->ambient = U(r, 0.35f, 0.6f);
    f->key = U(r, 0.9f, 1.15f);
    f->light = (rgb){U(r, 0.95f, 1.05f), 1.0f, U(r, 0.9f, 1.08f)};
    f->spec = U(r, 0.02f, 0.12f);
    /* camera (the noise level is drawn relative to params->noise) */
    f->blur = U(r, 0.25f, 0.9f);
    f->noise = U(r, 0.3f, 1.7f);
    f->noise_corr = U(r, 0.0f, 0.2f);
    f->vignette = U(r, 0.0f, 0.35f);
    f->exposure = U(r, 0.9f, 1.1f);
    f->contrast = U(r, 0.9f, 1.12f);
    f->wb = (rgb){U(r, 0.94f, 1.06f), 1.0f, U(r, 0.92f, 1.08f)};
}

static void face_ready(face *f) {
    f->cos_roll = cosf(f->roll); f->sin_roll = sinf(f->roll);
    f->cos_bg = cosf(f->bg_angle); f->sin_bg = sinf(f->bg_angle);
}

static void face_draw(face *f, uint64_t seed) {
    fmd_rng r;
    fmd_rng_seed(&r, seed);
    draw_identity(f, &r);
    draw_scene(f, &r);
    face_ready(f);
}

/* half width of the head outline at height v */
static inline float head_w(const face *f, float v) {
    if (v <= 0) return f->width;
    float t = fminf(v, 1.0f);   /* the outline ends at v = 1; keep w > 0 below */
    t *= t;
    return f->width * (1.0f - f->jaw * t) * (1.0f - 0.25f * f->chin * t * t);
}

static inline float head_d(const face *f, float u, float v) {   /* signed distance, face units */
    float w = head_w(f, v), hh = v < 0 ? f->forehead : 1.0f;
    return ell(u, v, w, hh);
}

static rgb background(const face *f, float X, float Y) {
    float ca = f->cos_bg, sa = f->sin_bg;
    float t = sat(0.5f + 0.8f * ((X - 0.5f) * ca + (Y - 0.5f) * sa));
    rgb c = mixc(f->bg1, f->bg2, t);
    uint32_t s = f->tex ^ 0x5bd1e995u;
    switch (f->bg_kind) {
    case 0: {   /* plain wall with slow shading */
        float n = fbm(s, X * 3, Y * 3, 3);
        c = scalec(c, 0.85f + 0.3f * n);
        break;
    }
    case 1: {   /* out-of-focus blobs (bokeh-like) */
        float n = fbm(s, X * f->bg_scale, Y * f->bg_scale, 2);
        c = mixc(c, f->bg3, smooth01(0.5f, 0.75f, n) * 0.7f);
        break;
    }
    case 2: {   /* blurred room: vertical panels and a floor line */
        float px = X * f->bg_scale * 0.6f + 0.3f;
        float panel = smooth01(0.35f, 0.45f, fabsf(px - floorf(px) - 0.5f));
        c = mixc(c, f->bg3, panel * 0.35f);
        c = scalec(c, 0.8f + 0.25f * smooth01(0.7f, 0.8f, Y + 0.1f * sa));
        break;
    }
    default: {   /* textured, leaves or fabric */
        float n = fbm(s, X * f->bg_scale * 3, Y * f->bg_scale * 3, 4);
        c = mixc(c, f->bg3, smooth01(0.3f, 0.7f, n) * 0.3f);
        break;
    }
    }
    return c;
}

/* diffuse + ambient shading of a surface with normal (nx, ny, nz) */
static inline float lambert(const face *f, float nx, float ny, float nz) {
    float d = nx * f->lx + ny * f->ly + nz * f->lz;
    return f->ambient + f->key * (1.0f - f->ambient) * fmaxf(d, 0.0f);
}

static inline rgb lit(const face *f, rgb c, float shade) {
    return mulc(scalec(c, shade), f->light);
}

/* hair coverage at (u, v) for the front layer (cap, fringe) and strand texture */
static float hair_front(const face *f, float u, float v, float aa) {
    if (f->hair_style == 0) return 0;
    float w = f->width + f->hair_vol, top = f->forehead + f->hair_vol * 1.3f;
    float outer = ell(u, v + 0.02f, w, top);
    if (f->hair_style == 4)   /* curly volume: bigger, bumpy outline */
        outer = ell(u, v + 0.05f, w + 0.08f, top + 0.1f) -
                0.05f * (0.5f + 0.5f * sinf(atan2f(v, u) * 11.0f + (float)(f->tex & 7)));
    /* hairline: a curve above which the skin is covered */
    float line = f->hairline + 0.35f * u * u;
    if (f->hair_style == 3) {   /* fringe: lower, jagged edge */
        line = f->hairline + 0.22f + 0.12f * u * u +
               0.03f * (vnoise(f->tex ^ 0x51u, u * 14.0f, 0.5f) - 0.5f);
    }
    if (f->hair_style != 3) {   /* the parting lifts the hairline a little */
        float pu = (u - f->hair_part * f->width) / 0.05f;
        line -= 0.05f * expf(-pu * pu);
    }
    float below = v - line;   /* > 0: below the hairline, skin visible */
    /* sideburns: hair continues down the sides outside |u| > width-0.08 */
    float side = (head_w(f, v) - 0.07f) - fabsf(u);
    float sideburn = fmaxf(side, v - (f->ear_y - 0.02f));
    float inside = fminf(below, sideburn);
    float d = fmaxf(outer, inside);
    return cover(d, aa);
}

static float hair_back(const face *f, float u, float v, float aa) {
    if (f->hair_style != 2 && f->hair_style != 4) return 0;
    float w = f->width + f->hair_vol + 0.06f;
    float len = f->hair_style == 2 ? f->hair_len : 0.4f;
    float d;
    if (v < 0) d = ell(u, v, w, f->forehead + f->hair_vol * 1.3f);
    else d = fmaxf(fabsf(u) - (w + 0.08f * v) , v - len);
    /* ragged tips */
    d += 0.02f * sinf(u * 30.0f) * smooth01(len - 0.2f, len, v);
    return cover(d, aa);
}

static rgb hair_color(const face *f, float u, float v, float shade) {
    float ang = (u - f->hair_part * f->width);
    float strands = fbm(f->tex ^ 0x2545f491u, ang * 40.0f, v * 5.0f, 3);
    float sh = 0.65f + 0.55f * strands;
    float hi = 0.25f * smooth01(0.6f, 0.95f, strands) * (1.0f - sat(fabsf(v + 0.6f) * 2.0f));
    rgb c = scalec(f->hair, sh * shade);
    return mixc(c, (rgb){0.9f, 0.88f, 0.85f}, hi * 0.4f);
}

/* skin colour at (u, v) inside the head with shading */
static rgb skin_at(const face *f, float u, float v, float fu) {
    float w = head_w(f, v), hh = v < 0 ? f->forehead : 1.0f;
    float nx = clampf(u / (w * 1.05f), -1, 1), ny = clampf(v / (hh * 1.1f), -1, 1);
    float nz = sqrtf(fmaxf(0.0f, 1.0f - nx * nx - ny * ny));
    /* bumps for facial relief: brow ridge, cheekbones, nose */
    float shade = lambert(f, nx * 0.8f, ny * 0.8f, nz * 0.8f + 0.2f);
    rgb c = f->skin;
    /* fine skin texture */
    float n = fbm(f->tex, u * 60.0f, v * 60.0f, 2) - 0.5f;
    c = scalec(c, 1.0f + f->rough * n);
    if (f->freckles > 0) {
        float fr = vnoise(f->tex ^ 0x77u, u * 90.0f, v * 90.0f);
        float where = smooth01(0.4f, 0.0f, fabsf(v - 0.1f)) * smooth01(0.6f, 0.2f, fabsf(u));
        c = scalec(c, 1.0f - f->freckles * where * smooth01(0.75f, 0.85f, fr) * 3.0f);
    }
    /* blush on the cheeks */
    for (int s = -1; s <= 1; s += 2) {
        float du = fu - s * 0.36f, dv = v - 0.22f;
        float g = expf(-(du * du + dv * dv) / 0.012f);
        c = mixc(c, mulc(c, f->blush), g * f->blush_amt * 1.5f);
    }
    /* eye sockets: darker above and around the eyes */
    for (int s = -1; s <= 1; s += 2) {
        float du = (fu - s * f->eye_dx) / (f->eye_w * 1.4f), dv = (v - f->eye_y + 0.02f) / 0.09f;
        shade *= 1.0f - 0.18f * expf(-(du * du + dv * dv));
    }
    /* nose: shadow on the side away from the light, bright ridge */
    {
        float nu = u - f->yaw * 0.3f;          /* nose sticks out: moves more with yaw */
        float along = smooth01(f->eye_y, f->nose_y, v) * smooth01(f->nose_y + 0.08f, f->nose_y, v);
        float side = f->lx > 0 ? -1.0f : 1.0f;
        float du = (nu - side * f->nose_w * 0.55f) / 0.035f;
        shade *= 1.0f - 0.22f * fabsf(f->lx) * along * expf(-du * du) - 0.05f * along * expf(-du * du);
        float ridge = expf(-(nu * nu) / 0.0012f) * along;
        shade *= 1.0f + 0.08f * ridge * f->lz;
        /* under the nose and the chin */
        float dv = (v - f->nose_y - 0.05f) / 0.025f, dn = nu / f->nose_w;
        shade *= 1.0f - 0.18f * expf(-dv * dv - dn * dn);
        float dm = (v - f->mouth_y - 0.12f) / 0.04f, dmu = (u - f->yaw * 0.2f) / 0.15f;
        shade *= 1.0f - 0.12f * expf(-dm * dm - dmu * dmu);
    }
    /* specular sheen on forehead and nose tip */
    float spec = f->spec * (expf(-((u - 0.1f * f->lx) * (u - 0.1f * f->lx) + (v + 0.55f) * (v + 0.55f)) / 0.04f) +
                            expf(-((u - f->yaw * 0.3f) * (u - f->yaw * 0.3f) + (v - f->nose_y) * (v - f->nose_y)) / 0.002f));
    rgb out = lit(f, c, shade);
    return (rgb){out.r + spec, out.g + spec, out.b + spec};
}

/* composites the face features over the skin colour c */
static rgb features(const face *f, float u, float v, float aa, rgb c) {
    float fu = u - f->yaw * 0.18f;     /* inner features shift with yaw */
    float fv = v + f->pitch * 0.06f * (1.0f - v);
    /* beard / moustache / stubble */
    if (f->beard) {
        float bn = vnoise(f->tex ^ 0x1234u, u * 120.0f, v * 120.0f);
        float m = 0;
        float mouthd = ell(fu, fv - f->mouth_y, f->mouth_w * 1.05f, f->lip_lo + 0.025f);
        if (f->beard == 1 || f->beard == 3) {
            float lower = smooth01(f->nose_y + 0.05f, f->nose_y + 0.15f, fv) *
                          smooth01(0.0f, 0.1f, fabsf(u) < head_w(f, v) ? 1.0f : 0.0f);
            m = fmaxf(m, lower * (f->beard == 1 ? 0.35f : 0.95f));
        }
        if (f->beard >= 2) {
            float mu = fabsf(fu) / (f->mouth_w * 1.1f), mv = (fv - (f->mouth_y - f->lip_up - 0.04f)) / 0.035f;
            m = fmaxf(m, 0.95f * sat(1.0f - mu * mu - mv * mv) * 1.5f);
        }
        m *= sat(mouthd / 0.01f);   /* keep the lips clear */
        m *= f->beard_amt * (0.55f + 0.45f * bn);
        c = mixc(c, scalec(f->hair, 0.9f), sat(m));
    }
    for (int s = -1; s <= 1; s += 2) {
        /* brows */
        {
            float bu = (fu - s * f->brow_dx) / f->brow_len;   /* -1..1 along */
            float t = bu * (float)s;                          /* -1 inner .. 1 outer */
            float curve = f->brow_y - f->brow_arch * (1.0f - t * t) + f->brow_tilt * t;
            float th = f->brow_thick * (1.0f - 0.45f * sat((t + 1) * 0.5f));
            float d = fmaxf(fabsf(fv - curve) - th * 0.5f, (fabsf(bu) - 1.0f) * f->brow_len);
            float a = cover(d, aa * 1.5f + 0.006f);
            if (a > 0) {
                float hn = vnoise(f->tex ^ 0xb0u, fu * 150.0f, fv * 30.0f);
                rgb bc = mixc(c, scalec(f->hair, 0.85f), f->brow_dark * (0.7f + 0.3f * hn));
                c = mixc(c, bc, a);
            }
        }
        /* eyes */
        {
            float ex = s * f->eye_dx, ey = f->eye_y;
            float lu = fu - ex, lv = fv - ey;
            float ct = cosf(f->eye_tilt * s), st = sinf(f->eye_tilt * s);
            float au = ct * lu + st * lv, av = -st * lu + ct * lv;
            float t = au / f->eye_w;
            if (fabsf(t) < 1.4f && fabsf(av) < f->eye_h * 3.0f) {
                float k = 1.0f - t * t;
                float top = -f->eye_h * k * (1.0f - f->lid * 0.5f), bot = f->eye_h * 0.7f * k;
                float d_in = fmaxf(fmaxf(top - av, av - bot), (fabsf(t) - 1.0f) * f->eye_h);
                float a = cover(d_in, aa);
                /* crease above the eye, lashes along the upper lid */
                float crease = expf(-powf((av - (top - f->eye_h * 0.9f)) / 0.008f, 2.0f)) * sat(k) * 0.25f;
                c = scalec(c, 1.0f - crease);
                if (a > 0) {
                    rgb white = scalec((rgb){0.93f, 0.90f, 0.87f}, 0.75f + 0.25f * f->lz);
                    float gu = au - f->gaze_x * f->eye_w * 0.45f, gv = av - f->gaze_y * f->eye_h;
                    float ir = sqrtf(gu * gu + gv * gv);
                    float rad = ir / f->iris_r;
                    float ring = 0.75f + 0.25f * vnoise(f->tex ^ 0x99u, atan2f(gv, gu) * 6.0f, rad * 4.0f);
                    rgb ic = scalec(f->iris, ring * (1.0f - 0.4f * sat(rad - 0.7f) * 3.0f));
                    rgb e = mixc(white, ic, cover(ir - f->iris_r, aa));
                    e = mixc(e, (rgb){0.02f, 0.02f, 0.02f}, cover(ir - f->iris_r * 0.42f, aa));
                    /* catch light */
                    float hu = gu + 0.35f * f->iris_r * f->lx, hv = gv + 0.35f * f->iris_r;
                    e = mixc(e, (rgb){1, 1, 1}, cover(sqrtf(hu * hu + hv * hv) - f->iris_r * 0.18f, aa) * 0.9f);
                    /* upper lid shadow over the eyeball */
                    e = scalec(e, 1.0f - 0.35f * smooth01(top + f->eye_h * 0.6f, top, av));
                    c = mixc(c, e, a);
                }
                /* lid lines: upper dark and thick (lashes), lower faint */
                float lash = fabsf(av - top) - (0.006f + 0.006f * sat(t * (float)s + 0.3f));
                float la = cover(lash, aa) * sat(k * 4.0f) * cover((fabsf(t) - 1.05f) * f->eye_h, aa);
                c = mixc(c, (rgb){0.05f, 0.04f, 0.04f}, la * 0.9f);
                float low = fabsf(av - bot) - 0.003f;
                c = mixc(c, scalec(c, 0.75f), cover(low, aa) * sat(k * 3.0f) * 0.6f);
            }
        }
    }
    /* nostrils and nose tip outline */
    {
        float nu = fu - f->yaw * 0.12f, nv = fv - f->nose_y;
        for (int s = -1; s <= 1; s += 2) {
            float d = ell(nu - s * f->nose_w * 0.42f, nv - 0.01f, f->nose_w * 0.26f, 0.016f);
            c = mixc(c, scalec(c, 0.35f), cover(d, aa) * 0.85f);
            /* alar crease */
            float ad = fabsf(ell(nu - s * f->nose_w * 0.62f, nv - 0.005f, f->nose_w * 0.3f, 0.04f)) - 0.004f;
            float side = smooth01(0.0f, 0.02f, s * (nu - s * f->nose_w * 0.6f));
            c = mixc(c, scalec(c, 0.7f), cover(ad, aa) * 0.6f * side);
        }
    }
    /* mouth */
    {
        float mu = fu, mv = fv - f->mouth_y;
        float t = mu / f->mouth_w;
        if (fabsf(t) < 1.3f && fabsf(mv) < 0.12f) {
            float k = sat(1.0f - t * t);
            float line = -f->smile * t * t + f->smile * 0.3f;
            float bow = 0.35f * f->lip_up * expf(-t * t / 0.02f);   /* cupid's bow dip */
            float up_top = line - f->open - f->lip_up * sqrtf(k) * 1.2f + bow;
            float lo_bot = line + f->open + f->lip_lo * sqrtf(k) * 1.2f;
            float d_up = fmaxf(fmaxf(up_top - mv, mv - (line - f->open)), (fabsf(t) - 1.0f) * 0.02f);
            float d_lo = fmaxf(fmaxf((line + f->open) - mv, mv - lo_bot), (fabsf(t) - 0.97f) * 0.02f);
            rgb lu = lit(f, f->lip, 0.85f + 0.15f * f->lz);
            rgb ll = lit(f, f->lip, 0.95f + 0.2f * f->lz);
            c = mixc(c, scalec(lu, 0.9f), cover(d_up, aa * 1.5f));
            /* lower lip highlight */
            float hl = expf(-powf((mv - (line + f->lip_lo * 0.5f)) / 0.01f, 2.0f)) * k * f->spec * 3.0f;
            ll = (rgb){ll.r + hl, ll.g + hl, ll.b + hl};
            c = mixc(c, ll, cover(d_lo, aa * 1.5f));
            /* opening / line between the lips */
            float gap = fabsf(mv - line) - (f->open + 0.0035f);
            float ga = cover(gap, aa) * cover((fabsf(t) - 1.02f) * 0.02f, aa);
            rgb inside = f->open > 0.008f ? mixc((rgb){0.15f, 0.05f, 0.05f}, (rgb){0.85f, 0.83f, 0.78f},
                                                 smooth01(0.0f, 0.003f, line - mv + f->open * 0.2f))
                                          : (rgb){0.18f, 0.07f, 0.06f};
            c = mixc(c, inside, ga * 0.9f);
        }
    }
    return c;
}

static rgb glasses(const face *f, float u, float v, float aa, rgb c) {
    if (!f->glasses) return c;
    float fu = u - f->yaw * 0.18f, fv = v;
    for (int s = -1; s <= 1; s += 2) {
        float lu = fu - s * f->eye_dx, lv = fv - (f->eye_y + 0.01f);
        float d;
        if (f->glasses == 1) d = ell(lu, lv, f->lens_rx, f->lens_ry);
        else {   /* rounded rectangle */
            float qx = fabsf(lu) - (f->lens_rx - 0.04f), qy = fabsf(lv) - (f->lens_ry - 0.04f);
            float ox = fmaxf(qx, 0), oy = fmaxf(qy, 0);
            d = sqrtf(ox * ox + oy * oy) + fminf(fmaxf(qx, qy), 0.0f) - 0.04f;
        }
        if (d < 0) {   /* lens: tint and a faint reflection band */
            float refl = smooth01(0.02f, 0.0f, fabsf(lu * 0.7f + lv - 0.02f * s)) * 0.10f;
            c = scalec(c, 1.0f - f->lens_tint * 0.5f);
            c = (rgb){c.r + refl, c.g + refl, c.b + refl};
        }
        c = mixc(c, lit(f, f->frame, 1.0f), cover(fabsf(d) - f->frame_th * 0.5f, aa));
        /* temple arm towards the ear */
        float tu = s * lu - f->lens_rx, tv = lv + 0.02f;
        if (tu > 0 && tu < 0.35f) c = mixc(c, lit(f, f->frame, 0.8f), cover(fabsf(tv) - f->frame_th * 0.4f, aa));
    }
    /* bridge */
    float bv = fv - (f->eye_y - 0.03f) + 0.06f * fu * fu;
    float bu = fabsf(fu) - (f->eye_dx - f->lens_rx + 0.01f);
    c = mixc(c, lit(f, f->frame, 1.0f), cover(fmaxf(fabsf(bv) - f->frame_th * 0.45f, bu), aa));
    return c;
}

/* the whole scene at image position (X, Y) in [0, 1] */
static rgb shade_pixel(const face *f, float X, float Y, float aa) {
    rgb c = background(f, X, Y);
    /* to face coordinates */
    float dx = X - f->cx, dy = Y - f->cy;
    float cr = f->cos_roll, sr = f->sin_roll;
    float u = (cr * dx + sr * dy) / f->scale, v = (-sr * dx + cr * dy) / f->scale;
    if (fabsf(u) > 2.5f || v < -1.8f) return c;
    /* the face centre shifts a little with yaw (head turned) */
    float hu = u + f->yaw * 0.06f;
    /* back hair */
    float hb = hair_back(f, hu, v, aa);
    if (hb > 0) c = mixc(c, hair_color(f, hu, v, lambert(f, 0, -0.3f, 0.8f) * 0.8f), hb);
    /* neck, darker under the jaw */
    {
        float nw = f->neck_w * (1.0f + 0.15f * sat(v - 1.0f));
        float a = cover(fmaxf(fabsf(hu) - nw, 0.2f - v), aa);
        if (a > 0) {
            float nx = clampf(hu / nw, -1, 1);
            float sh = lambert(f, nx, 0.0f, sqrtf(1 - nx * nx)) * (0.72f - 0.2f * smooth01(1.25f, 0.9f, v));
            c = mixc(c, lit(f, f->skin, sh), a);
        }
    }
    /* shoulders and clothing, with a U neckline showing the neck */
    {
        float d = ell(hu, v - (f->shoulder_y + 0.95f), 1.9f, 1.0f);
        float neckline = ell(hu, v - (f->shoulder_y - 0.08f), f->neck_w * 1.05f, f->neckline);
        d = fmaxf(d, -neckline);
        float a = cover(d, aa);
        if (a > 0) {
            float sh = lambert(f, clampf(hu / 1.9f, -1, 1), -0.5f, 0.7f);
            rgb cc = f->cloth;
            if (f->cloth_pattern > 0) {
                float st = 0.5f + 0.5f * sinf((hu + v * 0.3f) * f->cloth_pattern);
                cc = mixc(f->cloth, f->cloth2, smooth01(0.4f, 0.6f, st));
            }
            float fold = fbm(f->tex ^ 0xc1u, hu * 4.0f, v * 2.0f, 2);
            /* the collar edge is a little darker */
            float edge = 1.0f - 0.25f * smooth01(0.04f, 0.0f, fabsf(neckline));
            c = mixc(c, lit(f, cc, sh * edge * (0.8f + 0.4f * fold)), a);
        }
    }
    /* ears */
    for (int s = -1; s <= 1; s += 2) {
        float eu = hu - s * (head_w(f, f->ear_y) - 0.01f + f->yaw * s * 0.05f);
        float d = ell(eu, v - f->ear_y, f->ear_rx, f->ear_ry);
        float a = cover(d, aa);
        if (a > 0) {
            float inner = cover(ell(eu - s * 0.01f, v - f->ear_y, f->ear_rx * 0.55f, f->ear_ry * 0.65f), aa * 2 + 0.01f);
            float sh = lambert(f, (float)s * 0.7f, 0.0f, 0.5f) * (1.0f - 0.25f * inner);
            c = mixc(c, lit(f, f->skin, sh * 0.92f), a);
        }
    }
    /* head */
    float hd = head_d(f, hu, v);
    float a = cover(hd, aa);
    if (a > 0) {
        rgb s = skin_at(f, hu, v, hu - f->yaw * 0.18f);
        s = features(f, hu, v, aa, s);
        /* soft darkening toward the silhouette (the head turns away) */
        s = scalec(s, 1.0f - 0.2f * smooth01(-0.12f, 0.0f, hd));
        c = mixc(c, s, a);
    }
    /* front hair */
    float hf = hair_front(f, hu, v, aa);
    if (hf > 0) {
        float nx = clampf(hu / (f->width + f->hair_vol), -1, 1);
        float ny = clampf(v / 1.2f, -1, 1);
        float sh = lambert(f, nx, ny, sqrtf(fmaxf(0.05f, 1 - nx * nx - ny * ny)));
        c = mixc(c, hair_color(f, hu, v, sh), hf);
    }
    c = glasses(f, hu, v, aa, c);
    return c;
}

/* shades pixels [x0, x1) x [y0, y1) of an S x S planar image */
static void render_rect(const face *f, int S, float *img, int x0, int y0, int x1, int y1) {
    size_t P = (size_t)S * S;
    float aa = 1.2f / (S * f->scale);   /* one pixel in face units, a bit wider */
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            rgb c = shade_pixel(f, (x + 0.5f) / S, (y + 0.5f) / S, aa);
            size_t i = (size_t)y * S + x;
            img[i] = c.r;
            img[P + i] = c.g;
            img[2 * P + i] = c.b;
        }
}

static void render_scene(const face *f, int S, float *img) { render_rect(f, S, img, 0, 0, S, S); }

/* ------------------------------------------------------- image filters */

/* separable Gaussian blur of one S x S plane (clamped edges), tmp has S*S */
static void blur_plane(float *p, int S, float sigma, float *tmp) {
    if (sigma < 0.05f) return;
    int R = (int)ceilf(3 * sigma);
    if (R > 32) R = 32;
    float k[65], sum = 0;
    for (int i = -R; i <= R; i++) sum += k[i + R] = expf(-0.5f * i * i / (sigma * sigma));
    for (int i = 0; i <= 2 * R; i++) k[i] /= sum;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            float s = 0;
            for (int i = -R; i <= R; i++) {
                int xx = x + i;
                xx = xx < 0 ? 0 : xx >= S ? S - 1 : xx;
                s += k[i + R] * p[(size_t)y * S + xx];
            }
            tmp[(size_t)y * S + x] = s;
        }
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            float s = 0;
            for (int i = -R; i <= R; i++) {
                int yy = y + i;
                yy = yy < 0 ? 0 : yy >= S ? S - 1 : yy;
                s += k[i + R] * tmp[(size_t)yy * S + x];
            }
            p[(size_t)y * S + x] = s;
        }
}

/* Antialiased linear (triangle filter) resampling of an n x n plane to
 * m x m, separable. The taps of each output sample are computed once: output
 * i reads w[i][0..k) at source index first[i] + j (edges clamped). */
typedef struct { int k; int *first; float *w; } taps;

static int taps_make(taps *t, int n, int m) {
    float scale = (float)n / m, sup = scale > 1 ? scale : 1;
    t->k = (int)ceilf(2 * sup) + 2;
    t->first = malloc((size_t)m * sizeof(int));
    t->w = calloc((size_t)m * t->k, sizeof(float));
    if (!t->first || !t->w) { free(t->first); free(t->w); return -1; }
    for (int i = 0; i < m; i++) {
        float c = (i + 0.5f) * scale - 0.5f, ws = 0;
        int lo = (int)floorf(c - sup) + 1;
        t->first[i] = lo;
        for (int j = 0; j < t->k; j++) {
            float w = 1.0f - fabsf(lo + j - c) / sup;
            if (w > 0) { t->w[(size_t)i * t->k + j] = w; ws += w; }
        }
        for (int j = 0; j < t->k; j++) t->w[(size_t)i * t->k + j] /= ws;
    }
    return 0;
}

static void taps_free(taps *t) { free(t->first); free(t->w); }

static void taps_apply(const taps *t, const float *src, int n, int sstride, float *dst, int m, int dstride) {
    for (int i = 0; i < m; i++) {
        const float *w = t->w + (size_t)i * t->k;
        float s = 0;
        for (int j = 0; j < t->k; j++) {
            int jj = t->first[i] + j;
            jj = jj < 0 ? 0 : jj >= n ? n - 1 : jj;
            s += w[j] * src[(size_t)jj * sstride];
        }
        dst[(size_t)i * dstride] = s;
    }
}

/* resamples an n x n plane to m x m; tmp has n*m floats */
static int resample_plane(const float *src, int n, float *dst, int m, float *tmp) {
    taps t;
    if (taps_make(&t, n, m)) return fmd_fail("facegen: out of memory resampling %d -> %d", n, m);
    for (int y = 0; y < n; y++) taps_apply(&t, src + (size_t)y * n, n, 1, tmp + (size_t)y * m, m, 1);
    /* vertical pass row by row over the output, so memory is read in order */
    for (int i = 0; i < m; i++) {
        const float *w = t.w + (size_t)i * t.k;
        float *d = dst + (size_t)i * m;
        for (int x = 0; x < m; x++) d[x] = 0;
        for (int j = 0; j < t.k; j++) {
            if (w[j] == 0) continue;
            int jj = t.first[i] + j;
            jj = jj < 0 ? 0 : jj >= n ? n - 1 : jj;
            const float *row = tmp + (size_t)jj * m;
            for (int x = 0; x < m; x++) d[x] += w[j] * row[x];
        }
    }
    taps_free(&t);
    return 0;
}

/* ------------------------------------------------------------- camera */

/* optics blur, exposure, white balance, vignetting, contrast */
static void camera_optics(const face *f, int S, float *img, float *tmp) {
    size_t P = (size_t)S * S;
    const float wb[3] = {f->wb.r, f->wb.g, f->wb.b};
    for (int ch = 0; ch < 3; ch++) {
        float *p = img + ch * P;
        blur_plane(p, S, f->blur * S / 256.0f, tmp);
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                float X = (x + 0.5f) / S - 0.5f, Y = (y + 0.5f) / S - 0.5f;
                float vig = 1.0f - f->vignette * (X * X + Y * Y) * 2.0f;
                float c = p[(size_t)y * S + x] * f->exposure * wb[ch] * vig;
                p[(size_t)y * S + x] = 0.5f + (c - 0.5f) * f->contrast;
            }
    }
}

/* sensor noise of std sigma (shot + read, luma plus weaker chroma, slightly
 * correlated as after demosaicing), then clamping to [0, 1]; scratch has
 * 3*S*S floats */
static void camera_noise(const face *f, int S, float *img, float sigma, fmd_rng *r, float *scratch) {
    size_t P = (size_t)S * S;
    float *luma = scratch, *nz = scratch + P, *tmp = scratch + 2 * P;
    if (sigma > 0) {
        for (size_t i = 0; i < P; i++) luma[i] = fast_gauss(r);
        for (int ch = 0; ch < 3; ch++) {
            float *p = img + ch * P;
            for (size_t i = 0; i < P; i++) nz[i] = luma[i] + 0.5f * fast_gauss(r);
            /* [a, 1-2a, a] horizontally and vertically */
            float a = f->noise_corr, e1 = 2 * a * a + (1 - 2 * a) * (1 - 2 * a);
            if (a > 0) {
                for (int y = 0; y < S; y++)
                    for (int x = 0; x < S; x++) {
                        size_t i = (size_t)y * S + x;
                        float l = nz[x > 0 ? i - 1 : i], rr = nz[x < S - 1 ? i + 1 : i];
                        tmp[i] = a * (l + rr) + (1 - 2 * a) * nz[i];
                    }
                for (int y = 0; y < S; y++)
                    for (int x = 0; x < S; x++) {
                        size_t i = (size_t)y * S + x;
                        float u = tmp[y > 0 ? i - S : i], d = tmp[y < S - 1 ? i + S : i];
                        /* the separable filter scales the std by e1: undo it */
                        nz[i] = (a * (u + d) + (1 - 2 * a) * tmp[i]) / e1;
                    }
            }
            for (size_t i = 0; i < P; i++) {
                float c = p[i];
                float sd = sigma * (0.6f + 0.8f * sqrtf(fmaxf(c, 0.0f)));   /* shot noise grows with signal */
                p[i] = c + sd * nz[i];
            }
        }
    }
    for (size_t i = 0; i < 3 * P; i++) img[i] = sat(img[i]);
}

/* the stream of a camera image's noise: shared by a real image and the fakes
 * made from the same seed, so that strength 0 reproduces the real image */
static void noise_rng(fmd_rng *r, uint64_t seed) { fmd_rng_seed(r, seed ^ 0xc0ffee1234567ull); }

static int make_real(uint64_t seed, const fmd_facegen_params *p, float *img) {
    int S = p->size;
    size_t P = (size_t)S * S;
    float *scratch = malloc(3 * P * sizeof(float));
    if (!scratch) return fmd_fail("facegen: out of memory (%d x %d image)", S, S);
    face f;
    face_draw(&f, seed);
    fmd_rng r;
    noise_rng(&r, seed);
    render_scene(&f, S, img);
    camera_optics(&f, S, img, scratch);
    camera_noise(&f, S, img, p->noise * f.noise, &r, scratch);
    free(scratch);
    return 0;
}

/* ------------------------------------------------------ the fake kinds */

/* mask of the swapped inner face in the target's pose: 1 inside, feathered
 * to 0 over `feather` (relative radius); slightly irregular like a hull of
 * landmarks */
static void swap_mask(const face *t, int S, float feather, float *m) {
    float cr = t->cos_roll, sr = t->sin_roll;
    float mcx = 0.12f * t->yaw, mcy = 0.12f;   /* centre of the inner features */
    float rx = t->width * 0.80f, ry = 0.80f;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            float dx = (x + 0.5f) / S - t->cx, dy = (y + 0.5f) / S - t->cy;
            float u = (cr * dx + sr * dy) / t->scale, v = (-sr * dx + cr * dy) / t->scale;
            float q = sqrtf((u - mcx) * (u - mcx) / (rx * rx) + (v - mcy) * (v - mcy) / (ry * ry)) - 1.0f;
            q += 0.04f * (vnoise(t->tex ^ 0x3779u, u * 4.0f, v * 4.0f) - 0.5f);
            m[(size_t)y * S + x] = smooth01(0.0f, -feather, q);
        }
}

/* fakes_dataset fake: the real image of target_seed with the inner face of
 * identity `seed` blended in; mask_out (S*S, optional) gets the mask.
 * Outside the mask the pixels are exactly those of the real image. */
static int make_swap(uint64_t seed, uint64_t target_seed, const fmd_facegen_params *p, float *img,
                     float *mask_out) {
    int S = p->size;
    size_t P = (size_t)S * S;
    float *gen = malloc(P * sizeof(float) * 7);
    if (!gen) return fmd_fail("facegen: out of memory (%d x %d image)", S, S);
    float *m = gen + 3 * P, *scratch = gen + 4 * P, *tmp = scratch, *tmp2 = scratch + P;
    face tgt, src, idn;
    face_draw(&tgt, target_seed);
    fmd_rng rt, r;
    noise_rng(&rt, target_seed);
    fmd_rng_seed(&r, seed);
    draw_identity(&idn, &r);
    float amt = p->strength * U(&r, 0.5f, 1.5f);   /* per-image strength: some fakes are subtle */

    /* the source face in the target's pose, hair, glasses and scene */
    src = tgt;
    src.blush = idn.blush; src.blush_amt = idn.blush_amt;
    src.rough = idn.rough; src.freckles = idn.freckles;
    /* eyes, brows, nose and mouth: ranges of fields in declaration order */
    memcpy(&src.eye_y, &idn.eye_y, (char *)&src.brow_y - (char *)&src.eye_y);
    memcpy(&src.brow_y, &idn.brow_y, (char *)&src.nose_y - (char *)&src.brow_y);
    memcpy(&src.nose_y, &idn.nose_y, (char *)&src.mouth_y - (char *)&src.nose_y);
    memcpy(&src.mouth_y, &idn.mouth_y, (char *)&src.lip - (char *)&src.mouth_y);
    src.beard = idn.beard; src.beard_amt = idn.beard_amt;
    src.tex = idn.tex;
    /* swap pairs are chosen with similar skin tones and colour-corrected;
     * what is left of the difference comes from swap_color below */
    src.lip = mixc(tgt.lip, idn.lip, 0.5f);
    /* imperfect alignment: scale and position drift */
    src.scale *= 1.0f + p->swap_misalign * amt * N01(&r);
    src.cx += p->swap_misalign * amt * N01(&r) * 0.5f;
    src.cy += p->swap_misalign * amt * N01(&r) * 0.5f;
    /* illumination mismatch: a different light direction and ambient */
    float lm = p->swap_light * amt;
    src.lx += lm * U(&r, -0.4f, 0.4f);
    src.ly += lm * U(&r, -0.3f, 0.3f);
    float ln = sqrtf(src.lx * src.lx + src.ly * src.ly + src.lz * src.lz);
    src.lx /= ln; src.ly /= ln; src.lz /= ln;
    src.ambient = clampf(src.ambient + lm * U(&r, -0.15f, 0.15f), 0.2f, 0.8f);
    face_ready(&src);

    /* the blend mask in the target's pose */
    float feather = p->swap_feather * U(&r, 0.4f, 1.3f);
    if (feather < 0.01f) feather = 0.01f;
    swap_mask(&tgt, S, feather, m);
    /* the target, and the source face where the mask is on (plus a margin for
     * the filters below); elsewhere the generator sees the target */
    render_scene(&tgt, S, img);
    memcpy(gen, img, 3 * P * sizeof(float));
    int bx0 = S, by0 = S, bx1 = 0, by1 = 0;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            if (m[(size_t)y * S + x] > 0) {
                if (x < bx0) bx0 = x;
                if (x >= bx1) bx1 = x + 1;
                if (y < by0) by0 = y;
                if (y >= by1) by1 = y + 1;
            }
    int margin = 4 + S / 16;
    bx0 = bx0 - margin < 0 ? 0 : bx0 - margin;
    by0 = by0 - margin < 0 ? 0 : by0 - margin;
    bx1 = bx1 + margin > S ? S : bx1 + margin;
    by1 = by1 + margin > S ? S : by1 + margin;
    if (bx1 > bx0 && by1 > by0) render_rect(&src, S, gen, bx0, by0, bx1, by1);
    /* both go through the target's camera optics; only the target gets its
     * sensor noise (this is exactly the real image of target_seed) */
    camera_optics(&tgt, S, img, tmp);
    camera_optics(&tgt, S, gen, tmp);
    camera_noise(&tgt, S, img, p->noise * tgt.noise, &rt, scratch);

    /* the face generator works at low resolution: down, then back up */
    float f = 1.0f + p->swap_resample * amt * U(&r, 0.6f, 1.4f);
    int lo = (int)lroundf(S / f);
    if (lo < 8) lo = 8;
    float *small = malloc((size_t)S * lo * sizeof(float) + (size_t)lo * lo * sizeof(float));
    if (!small) { free(gen); return fmd_fail("facegen: out of memory (%d x %d image)", S, S); }
    float *low = small + (size_t)S * lo;
    int sharpen = fmd_rng_next_uniform(&r) < 0.35;
    float sh_amt = p->swap_sharpen * amt * U(&r, 0.5f, 1.2f);
    /* colour transfer leaves a residual per-channel gain and offset */
    float gain[3], off[3];
    float bright = p->swap_color * amt * N01(&r) * 0.6f;
    for (int ch = 0; ch < 3; ch++) {
        gain[ch] = 1.0f + bright + p->swap_color * amt * N01(&r) * 0.5f;
        off[ch] = p->swap_color * amt * N01(&r) * 0.15f;
    }
    for (int ch = 0; ch < 3; ch++) {
        float *g = gen + ch * P;
        if (lo < S && (resample_plane(g, S, low, lo, small) || resample_plane(low, lo, g, S, small))) {
            free(small);
            free(gen);
            return -1;
        }
        if (sharpen && sh_amt > 0) {   /* unsharp mask, as some pipelines do */
            memcpy(tmp, g, P * sizeof(float));
            blur_plane(tmp, S, 1.2f * S / 256.0f, tmp2);
            for (size_t i = 0; i < P; i++) g[i] += sh_amt * (g[i] - tmp[i]);
        }
        for (size_t i = 0; i < P; i++) g[i] = g[i] * gain[ch] + off[ch];
    }
    free(small);
    /* the generated face is cleaner than the camera image around it */
    float gsig = p->noise * tgt.noise * (1.0f - sat(amt) * U(&r, 0.5f, 0.9f));
    for (size_t i = 0; i < P; i++) {
        float mi = m[i];
        if (mi <= 0) continue;
        for (int ch = 0; ch < 3; ch++) {
            float gv = gen[ch * P + i] + gsig * fast_gauss(&r);
            img[ch * P + i] = sat(img[ch * P + i] + mi * (gv - img[ch * P + i]));
        }
    }
    if (mask_out) memcpy(mask_out, m, P * sizeof(float));
    free(gen);
    return 0;
}

/* synthetic_dataset fake: identity `seed` rendered as for a real image, but
 * between the optics and the sensor noise it goes through a "generator"
 * path: texture smoothed by a half-resolution bottleneck, up-sampling layers
 * whose 2x2 output phases have unequal gains (periodic spectral peaks at
 * periods 2 and 4, strongest on edges), shifted colour statistics, and less
 * noise. With strength 0 it is exactly the real image of `seed`. */
static int make_gan(uint64_t seed, const fmd_facegen_params *p, float *img) {
    int S = p->size;
    size_t P = (size_t)S * S;
    float *buf = malloc(P * sizeof(float) * 3);
    if (!buf) return fmd_fail("facegen: out of memory (%d x %d image)", S, S);
    float *tmp = buf, *low = buf + P, *up = buf + 2 * P;
    face f;
    face_draw(&f, seed);
    fmd_rng r, rn;
    fmd_rng_seed(&r, seed ^ 0x6a09e667f3bcc909ull);
    noise_rng(&rn, seed);
    float amt = p->strength * U(&r, 0.5f, 1.5f);
    float sm = sat(p->gan_smooth * amt);
    f.rough *= 1.0f - 0.6f * sm;   /* less skin texture */
    render_scene(&f, S, img);
    camera_optics(&f, S, img, tmp);
    int h = S / 2;
    /* unequal gains of the 2x2 output phases of the last two up-sampling
     * layers, one pattern per image ("per generator") */
    float g2[2][2], g4[2][2], mean2 = 0, mean4 = 0;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            g2[a][b] = N01(&r); mean2 += g2[a][b] / 4;
            g4[a][b] = N01(&r); mean4 += g4[a][b] / 4;
        }
    float ck = p->gan_checker * amt;
    for (int ch = 0; ch < 3; ch++) {
        float *x = img + ch * P;
        if (sm > 0) {   /* what comes back from half resolution keeps less texture */
            if (resample_plane(x, S, low, h, tmp) || resample_plane(low, h, up, S, tmp)) {
                free(buf);
                return -1;
            }
            for (size_t i = 0; i < P; i++) x[i] += sm * (up[i] - x[i]);
        }
        if (ck > 0) {   /* phase gains, modulated by local contrast */
            for (int y = 0; y < S; y++)
                for (int xx = 0; xx < S; xx++) {
                    size_t i = (size_t)y * S + xx;
                    float gx = x[xx < S - 1 ? i + 1 : i] - x[xx > 0 ? i - 1 : i];
                    float gy = x[y < S - 1 ? i + S : i] - x[y > 0 ? i - S : i];
                    float edge = sqrtf(gx * gx + gy * gy);
                    float p2 = g2[y & 1][xx & 1] - mean2, p4 = g4[(y >> 1) & 1][(xx >> 1) & 1] - mean4;
                    float pat = p2 + 0.6f * p4;
                    tmp[i] = x[i] * (1.0f + ck * 0.5f * pat) + ck * 2.0f * edge * pat;
                }
            memcpy(x, tmp, P * sizeof(float));
        }
    }
    /* colour statistics: saturation, a tint, slightly compressed tones */
    float satk = 1.0f + p->gan_color * amt * U(&r, -0.5f, 1.5f);
    float tint[3];
    for (int ch = 0; ch < 3; ch++) tint[ch] = p->gan_color * amt * 0.15f * N01(&r);
    float tone = 1.0f - p->gan_color * amt * U(&r, 0.0f, 0.6f);
    for (size_t i = 0; p->gan_color * amt > 0 && i < P; i++) {
        float R = img[i], G = img[P + i], B = img[2 * P + i];
        float Y = 0.299f * R + 0.587f * G + 0.114f * B;
        float Yt = 0.5f + (Y - 0.5f) * tone;
        img[i] = Yt + (R - Y) * satk + tint[0];
        img[P + i] = Yt + (G - Y) * satk + tint[1];
        img[2 * P + i] = Yt + (B - Y) * satk + tint[2];
    }
    free(buf);
    /* generated images carry little sensor noise */
    float *scratch = malloc(3 * P * sizeof(float));
    if (!scratch) return fmd_fail("facegen: out of memory (%d x %d image)", S, S);
    camera_noise(&f, S, img, p->noise * f.noise * (1.0f - 0.8f * sm), &rn, scratch);
    free(scratch);
    return 0;
}

/* ------------------------------------------------------------ public API */

static int render_into(fmd_facegen_kind kind, uint64_t seed, uint64_t target_seed,
                       const fmd_facegen_params *p, float *img, float *mask) {
    switch (kind) {
    case FMD_FACEGEN_REAL: return make_real(seed, p, img);
    case FMD_FACEGEN_SWAP: return make_swap(seed, target_seed, p, img, mask);
    case FMD_FACEGEN_GAN: return make_gan(seed, p, img);
    }
    return fmd_fail("facegen: unknown image kind %d (expected real, swap or gan)", (int)kind);
}

// result is (3, size, size); *mask (optional) is (1, size, size): the blend
// mask for FMD_FACEGEN_SWAP, zeros for the other kinds
fmd_tensor *fmd_facegen_render(fmd_facegen_kind kind, uint64_t seed, uint64_t target_seed,
                               const fmd_facegen_params *params, fmd_tensor **mask) {
    fmd_facegen_params def;
    if (!params) { fmd_facegen_default_params(&def); params = &def; }
    if (mask) *mask = NULL;
    if (check_params(params)) return NULL;
    int64_t S = params->size;
    fmd_tensor *img = fmd_empty(3, (int64_t[]){3, S, S});
    fmd_tensor *m = mask ? fmd_zeros(3, (int64_t[]){1, S, S}) : NULL;
    if (!img || (mask && !m)) { fmd_release(img); fmd_release(m); return NULL; }
    if (render_into(kind, seed, target_seed, params, fmd_data(img), m ? fmd_data(m) : NULL)) {
        fmd_release(img);
        fmd_release(m);
        return NULL;
    }
    if (mask) *mask = m;
    return img;
}

typedef struct {
    const fmd_facegen_job *jobs;
    int n;
    const fmd_facegen_params *p;
    pthread_mutex_t lock;
    int failed;
    char msg[512];
} write_ctx;

static void write_task(void *vctx, int ith, int nth) {
    write_ctx *c = vctx;
    for (int j = ith; j < c->n; j += nth) {   /* interleaved: neighbours cost alike */
        if (c->failed) return;
        const fmd_facegen_job *job = &c->jobs[j];
        fmd_tensor *img = fmd_facegen_render(job->kind, job->seed, job->target_seed, c->p, NULL);
        int bad = !img || fmd_image_save_png(job->path, img);
        fmd_release(img);
        if (bad) {
            pthread_mutex_lock(&c->lock);
            if (!c->failed) snprintf(c->msg, sizeof c->msg, "%s", fmd_error());
            c->failed = 1;
            pthread_mutex_unlock(&c->lock);
            return;
        }
    }
}

int fmd_facegen_write(const fmd_facegen_job *jobs, int n, const fmd_facegen_params *params) {
    fmd_facegen_params def;
    if (!params) { fmd_facegen_default_params(&def); params = &def; }
    if (check_params(params)) return -1;
    if (n < 0) return fmd_fail("facegen: job count %d is negative", n);
    for (int i = 0; i < n; i++)
        if (!jobs[i].path) return fmd_fail("facegen: job %d has no output path", i);
    write_ctx c = {.jobs = jobs, .n = n, .p = params};
    pthread_mutex_init(&c.lock, NULL);
    fmd_parallel(write_task, &c);
    pthread_mutex_destroy(&c.lock);
    if (c.failed) return fmd_fail("%s", c.msg);
    return 0;
}

static int mkdir_p(const char *dir) {
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf) return fmd_fail("facegen: bad directory name '%s'", dir);
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char keep = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return fmd_fail("facegen: cannot create directory '%s': %s", buf, strerror(errno));
        struct stat st;
        if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
            return fmd_fail("facegen: '%s' exists and is not a directory", buf);
        buf[i] = keep;
    }
    return 0;
}

static int is_png_name(const char *s) {
    size_t n = strlen(s);
    return n > 4 && strcmp(s + n - 4, ".png") == 0;
}

int fmd_facegen_prepare_dir(const char *dir, int clear) {
    if (mkdir_p(dir)) return -1;
    DIR *d = opendir(dir);
    if (!d) return fmd_fail("facegen: cannot open directory '%s': %s", dir, strerror(errno));
    int count = 0;
    struct dirent *e;
    char path[4352];
    while ((e = readdir(d))) {
        if (!is_png_name(e->d_name)) continue;
        count++;
        if (clear) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (unlink(path) != 0) {
                int err = errno;
                closedir(d);
                return fmd_fail("facegen: cannot remove '%s': %s", path, strerror(err));
            }
        }
    }
    closedir(d);
    return count;
}
