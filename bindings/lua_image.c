/* lua_image.c - image IO, transform kernels, per-sample generators and the
 * threaded data loader for Lua. The Lua side (lib/fmd/transforms.lua,
 * lib/fmd/data.lua) builds the user API on these. */
#include "fmd_lua.h"

#include <errno.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define FMD_RNG_MT "fmd.Rng"
#define FMD_LOADER_MT "fmd.Loader"

static int push_or_raise(lua_State *L, fmd_tensor *t) {
    fmd_lua_push_tensor(L, t);   /* raises on NULL */
    return 1;
}

/* load_image(path) -> 3xHxW tensor in [0, 1] */
static int l_load_image(lua_State *L) {
    return push_or_raise(L, fmd_image_load(luaL_checkstring(L, 1)));
}

/* decode_image(bytes [, name]) -> 3xHxW tensor */
static int l_decode_image(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    return push_or_raise(L, fmd_image_decode((const uint8_t *)s, n, luaL_optstring(L, 2, "<string>")));
}

/* save_image(path, img [, maxval = 1]): 8-bit PNG of a 3xHxW, 1xHxW or HxW
 * tensor; maxval 255 for uint8-valued data */
static int l_save_image(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    fmd_tensor *t = fmd_lua_check_tensor(L, 2);
    float maxval = (float)luaL_optnumber(L, 3, 1.0);
    if (fmd_image_save_png_scaled(path, t, maxval)) return fmd_lua_error(L);
    return 0;
}

/* image_resize(img, h, w [, pil8]) */
static int l_image_resize(lua_State *L) {
    fmd_tensor *t = fmd_lua_check_tensor(L, 1);
    lua_Integer h = luaL_checkinteger(L, 2), w = luaL_checkinteger(L, 3);
    return push_or_raise(L, fmd_image_resize(t, h, w, lua_toboolean(L, 4)));
}

/* image_resize_tf(img, h, w): TensorFlow's resize_bilinear (fmd.detect) */
static int l_image_resize_tf(lua_State *L) {
    fmd_tensor *t = fmd_lua_check_tensor(L, 1);
    lua_Integer h = luaL_checkinteger(L, 2), w = luaL_checkinteger(L, 3);
    return push_or_raise(L, fmd_image_resize_tf(t, h, w));
}

/* image_crop(img, top, left, h, w [, fill = 0]): 1-based top/left of the
 * window; rows/columns outside the image (top < 1 ...) are fill */
static int l_image_crop(lua_State *L) {
    fmd_tensor *t = fmd_lua_check_tensor(L, 1);
    lua_Integer top = luaL_checkinteger(L, 2), left = luaL_checkinteger(L, 3);
    lua_Integer h = luaL_checkinteger(L, 4), w = luaL_checkinteger(L, 5);
    return push_or_raise(L, fmd_image_pad_crop(t, top - 1, left - 1, h, w, (float)luaL_optnumber(L, 6, 0)));
}

static int l_image_hflip(lua_State *L) {
    return push_or_raise(L, fmd_image_hflip(fmd_lua_check_tensor(L, 1)));
}

/* numbers from a table or a single number; returns count */
static int get_floats(lua_State *L, int idx, const char *what, float *out, int max) {
    if (lua_type(L, idx) == LUA_TNUMBER) {
        out[0] = (float)lua_tonumber(L, idx);
        return 1;
    }
    if (!lua_istable(L, idx)) luaL_error(L, "%s must be a number or a table of numbers", what);
    int n = (int)luaL_len(L, idx);
    if (n < 1 || n > max) luaL_error(L, "%s needs 1..%d values, got %d", what, max, n);
    for (int i = 0; i < n; i++) {
        lua_geti(L, idx, i + 1);
        if (!lua_isnumber(L, -1)) luaL_error(L, "%s[%d] must be a number", what, i + 1);
        out[i] = (float)lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    return n;
}

/* image_normalize(img, mean, std): numbers or tables with one value per channel */
static int l_image_normalize(lua_State *L) {
    fmd_tensor *t = fmd_lua_check_tensor(L, 1);
    float mean[64], std[64];
    int nm = get_floats(L, 2, "mean", mean, 64), ns = get_floats(L, 3, "std", std, 64);
    if (nm != ns) return luaL_error(L, "normalize: %d mean values but %d std values", nm, ns);
    return push_or_raise(L, fmd_image_normalize(t, nm, mean, std));
}

/* ------------------------------------------------------------------ Rng */

static fmd_rng *check_rng(lua_State *L, int idx) { return luaL_checkudata(L, idx, FMD_RNG_MT); }

/* Rng(seed): an independent generator (xoshiro256**, the engine's) */
static int l_rng_new(lua_State *L) {
    lua_Integer seed = luaL_optinteger(L, 1, 0);
    fmd_rng *r = lua_newuserdatauv(L, sizeof *r, 0);
    fmd_rng_seed(r, (uint64_t)seed);
    luaL_setmetatable(L, FMD_RNG_MT);
    return 1;
}

static int l_rng_seed(lua_State *L) {
    fmd_rng_seed(check_rng(L, 1), (uint64_t)luaL_checkinteger(L, 2));
    return 0;
}

/* rng:uniform() in [0, 1) */
static int l_rng_uniform(lua_State *L) {
    lua_pushnumber(L, fmd_rng_next_uniform(check_rng(L, 1)));
    return 1;
}

/* rng:int(n): integer in 1..n from one uniform draw (as the C transforms draw) */
static int l_rng_int(lua_State *L) {
    fmd_rng *r = check_rng(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 1, 2, "n must be >= 1");
    lua_Integer v = (lua_Integer)(fmd_rng_next_uniform(r) * (double)n);
    lua_pushinteger(L, (v >= n ? n - 1 : v) + 1);
    return 1;
}

/* ------------------------------------------------------------ transform */

static lua_Integer field_int(lua_State *L, int t, const char *k, lua_Integer def) {
    lua_getfield(L, t, k);
    lua_Integer v = def;
    if (!lua_isnil(L, -1)) {
        int ok;
        v = lua_tointegerx(L, -1, &ok);
        if (!ok) luaL_error(L, "transform op: field '%s' must be an integer", k);
    }
    lua_pop(L, 1);
    return v;
}

static float field_num(lua_State *L, int t, const char *k, float def) {
    lua_getfield(L, t, k);
    float v = def;
    if (!lua_isnil(L, -1)) {
        int ok;
        v = (float)lua_tonumberx(L, -1, &ok);
        if (!ok) luaL_error(L, "transform op: field '%s' must be a number", k);
    }
    lua_pop(L, 1);
    return v;
}

/* out-of-range values stay out of range (the checks then name them) */
static int small_int(lua_Integer v) { return v > 1000000 ? 1000000 : v < -1000000 ? -1000000 : (int)v; }

/* field k = {lo, hi} (default {1, 1}: an unchanged colour) */
static void field_range(lua_State *L, int t, const char *k, float *out) {
    out[0] = out[1] = 1.0f;
    lua_getfield(L, t, k);
    if (!lua_isnil(L, -1)) {
        if (get_floats(L, lua_gettop(L), k, out, 2) != 2)
            luaL_error(L, "transform op: field '%s' must be {lo, hi}", k);
    }
    lua_pop(L, 1);
}

/* ops table (array of {kind=..., ...}) at idx -> fmd_transform */
static void check_ops(lua_State *L, int idx, fmd_transform *tf) {
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    memset(tf, 0, sizeof *tf);
    int n = (int)luaL_len(L, idx);
    if (n > FMD_TF_MAX_OPS) luaL_error(L, "transform: at most %d C ops, got %d", FMD_TF_MAX_OPS, n);
    for (int i = 0; i < n; i++) {
        lua_geti(L, idx, i + 1);
        int t = lua_gettop(L);
        if (!lua_istable(L, t)) luaL_error(L, "transform op %d must be a table", i + 1);
        lua_getfield(L, t, "kind");
        const char *kind = lua_tostring(L, -1);
        fmd_tf_op *op = &tf->ops[i];
        if (!kind) luaL_error(L, "transform op %d has no kind", i + 1);
        if (!strcmp(kind, "resize")) op->kind = FMD_TF_RESIZE;
        else if (!strcmp(kind, "center_crop")) op->kind = FMD_TF_CENTER_CROP;
        else if (!strcmp(kind, "random_crop")) op->kind = FMD_TF_RANDOM_CROP;
        else if (!strcmp(kind, "hflip")) op->kind = FMD_TF_HFLIP;
        else if (!strcmp(kind, "normalize")) op->kind = FMD_TF_NORMALIZE;
        else if (!strcmp(kind, "random_jpeg")) op->kind = FMD_TF_RANDOM_JPEG;
        else if (!strcmp(kind, "gaussian_blur")) op->kind = FMD_TF_GAUSSIAN_BLUR;
        else if (!strcmp(kind, "color_jitter")) op->kind = FMD_TF_COLOR_JITTER;
        else luaL_error(L, "transform op %d: unknown kind '%s'", i + 1, kind);
        lua_pop(L, 1);
        op->h = field_int(L, t, "h", 0);
        op->w = field_int(L, t, "w", 0);
        op->pad = (int)field_int(L, t, "pad", 0);
        lua_getfield(L, t, "pil8");
        op->pil8 = lua_toboolean(L, -1);
        lua_getfield(L, t, "p");
        op->p = (float)luaL_optnumber(L, -1, op->kind == FMD_TF_GAUSSIAN_BLUR ? 1.0 : 0.5);
        lua_pop(L, 2);
        if (op->kind == FMD_TF_NORMALIZE) {
            lua_getfield(L, t, "mean");
            int nm = get_floats(L, lua_gettop(L), "normalize mean", op->mean, FMD_TF_MAX_CH);
            lua_getfield(L, t, "std");
            int ns = get_floats(L, lua_gettop(L), "normalize std", op->std, FMD_TF_MAX_CH);
            lua_pop(L, 2);
            if (nm != ns) luaL_error(L, "normalize: %d mean values but %d std values", nm, ns);
            op->nch = nm;
        }
        if (op->kind == FMD_TF_RANDOM_JPEG) {
            op->q_lo = small_int(field_int(L, t, "q_lo", 0));
            op->q_hi = small_int(field_int(L, t, "q_hi", op->q_lo));
        } else if (op->kind == FMD_TF_GAUSSIAN_BLUR) {
            op->kx = small_int(field_int(L, t, "kx", 0));
            op->ky = small_int(field_int(L, t, "ky", op->kx));
            op->sigma_lo = field_num(L, t, "sigma_lo", 0);
            op->sigma_hi = field_num(L, t, "sigma_hi", op->sigma_lo);
        } else if (op->kind == FMD_TF_COLOR_JITTER) {
            field_range(L, t, "brightness", op->jitter[0]);
            field_range(L, t, "contrast", op->jitter[1]);
            field_range(L, t, "saturation", op->jitter[2]);
        }
        lua_pop(L, 1);
        tf->n = i + 1;
    }
    if (fmd_transform_check(tf)) fmd_lua_error(L);
}

/* transform_apply(ops, img, rng): runs the C chain (random ops draw from rng) */
static int l_transform_apply(lua_State *L) {
    fmd_transform tf;
    check_ops(L, 1, &tf);
    fmd_tensor *img = fmd_lua_check_tensor(L, 2);
    fmd_rng *r = check_rng(L, 3);
    return push_or_raise(L, fmd_transform_apply(&tf, img, r));
}

/* sample_seed(seed, epoch, i): seed of the 1-based dataset item i */
static int l_sample_seed(lua_State *L) {
    uint64_t s = fmd_sample_seed((uint64_t)luaL_checkinteger(L, 1), luaL_checkinteger(L, 2),
                                 luaL_checkinteger(L, 3) - 1);
    lua_pushinteger(L, (lua_Integer)s);
    return 1;
}

/* data-parallel shard {batch_size, drop_last, count, rank} at t (a table or
 * nil: *count = 0) */
static void check_shard(lua_State *L, int t, int64_t *bs, int *drop_last, int *count, int *rank) {
    *count = 0;
    if (lua_isnoneornil(L, t)) return;
    luaL_checktype(L, t, LUA_TTABLE);
    *bs = field_int(L, t, "batch_size", 1);
    *count = (int)field_int(L, t, "count", 1);
    *rank = (int)field_int(L, t, "rank", 0);
    lua_getfield(L, t, "drop_last");
    *drop_last = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (*bs < 1 || *count < 1 || *rank < 0 || *rank >= *count)
        luaL_error(L, "loader shard: needs batch_size >= 1 and rank in 0..count-1");
}

/* loader_order(n, shuffle, seed, epoch [, shard]) -> array of 1-based
 * indices; with shard = {batch_size, drop_last, count, rank} only that
 * rank's part (fmd_loader_shard) */
static int l_loader_order(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    /* a Lua table holds at most 2^31 - 1 items; checked before malloc */
    luaL_argcheck(L, n >= 0 && n < INT_MAX && (uint64_t)n * 8 <= fmd_max_storage_bytes(), 1, "bad count");
    /* every argument is read (and may raise) before the malloc */
    uint64_t seed = (uint64_t)luaL_optinteger(L, 3, 0);
    lua_Integer epoch = luaL_optinteger(L, 4, 0);
    int64_t bs = 1;
    int drop_last = 0, count, rank = 0;
    check_shard(L, 5, &bs, &drop_last, &count, &rank);
    lua_createtable(L, (int)n, 0);
    int64_t *ord = malloc(sizeof(int64_t) * (size_t)(n + 1));
    if (!ord) return luaL_error(L, "loader_order: out of memory");
    fmd_loader_order(n, lua_toboolean(L, 2), seed, epoch, ord);
    if (count > 1) n = fmd_loader_shard(ord, n, bs, drop_last, count, rank);
    for (lua_Integer i = 0; i < n; i++) {
        lua_pushinteger(L, ord[i] + 1);
        lua_rawseti(L, -2, i + 1);
    }
    free(ord);
    return 1;
}

/* stack_batch(images, labels) -> (B,C,H,W) tensor, (B) tensor; images is an
 * array of equally shaped CxHxW tensors, labels an array of numbers */
static int l_stack_batch(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    int64_t B = (int64_t)luaL_len(L, 1);
    if (B < 1) return luaL_error(L, "stack_batch: no images");
    if ((int64_t)luaL_len(L, 2) != B) return luaL_error(L, "stack_batch: %d images but %d labels",
                                                       (int)B, (int)luaL_len(L, 2));
    lua_geti(L, 1, 1);
    fmd_tensor *first = fmd_lua_check_tensor(L, -1);
    if (first->ndim != 3) {
        char sb[96];
        return luaL_error(L, "stack_batch: images must be C x H x W, got %s",
                          fmd_shape_str(sb, sizeof sb, first->ndim, first->shape));
    }
    int64_t shape[4] = {B, first->shape[0], first->shape[1], first->shape[2]};
    lua_pop(L, 1);
    fmd_tensor *lab = fmd_empty(1, shape);
    if (!lab) return fmd_lua_error(L);
    for (int64_t i = 0; i < B; i++) {
        lua_geti(L, 2, i + 1);
        int ok;
        fmd_data(lab)[i] = (float)lua_tonumberx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok) { fmd_release(lab); return luaL_error(L, "stack_batch: label %d is not a number", (int)i + 1); }
    }
    fmd_lua_push_tensor(L, lab);   /* owned by Lua from here: errors below free it */
    fmd_tensor *out = fmd_empty(4, shape);
    if (!out) return fmd_lua_error(L);
    fmd_lua_push_tensor(L, out);
    int64_t plane = shape[1] * shape[2] * shape[3];
    for (int64_t i = 0; i < B; i++) {
        lua_geti(L, 1, i + 1);
        fmd_tensor *t = fmd_lua_check_tensor(L, -1);
        if (t->ndim != 3 || t->shape[0] != shape[1] || t->shape[1] != shape[2] || t->shape[2] != shape[3]) {
            char a[96], b[96];
            return luaL_error(L, "stack_batch: image %d is %s, image 1 is %s", (int)i + 1,
                              fmd_shape_str(a, sizeof a, t->ndim, t->shape),
                              fmd_shape_str(b, sizeof b, 3, shape + 1));
        }
        fmd_tensor *c = fmd_contiguous(t);
        if (!c) return fmd_lua_error(L);
        memcpy(fmd_data(out) + i * plane, fmd_data(c), sizeof(float) * (size_t)plane);
        fmd_release(c);
        lua_pop(L, 1);
    }
    lua_insert(L, -2);   /* images, labels */
    return 2;
}

/* ------------------------------------------------------------ files */

/* image_format(path) -> "png" / "jpeg", or nil and the reason (by content) */
static int l_image_format(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    FILE *f = fopen(path, "rb");
    if (!f) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot open: %s", strerror(errno));
        return 2;
    }
    uint8_t buf[8];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    const char *fmt = fmd_image_format(buf, n);
    if (fmt) { lua_pushstring(L, fmt); return 1; }
    lua_pushnil(L);
    lua_pushstring(L, n == 0 ? "empty file" : "not a PNG or JPEG file");
    return 2;
}

/* --------------------------------------------------------------- loader */

static fmd_loader **check_loader(lua_State *L, int idx) {
    fmd_loader **p = luaL_checkudata(L, idx, FMD_LOADER_MT);
    if (!*p) luaL_error(L, "loader was closed");
    return p;
}

/* Loader(paths, labels, ops, {batch_size, shuffle, drop_last, num_workers,
 * prefetch, seed, skip_bad, shard_count, shard_rank}) */
static int l_loader_new(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    fmd_transform tf;
    check_ops(L, 3, &tf);
    luaL_checktype(L, 4, LUA_TTABLE);
    fmd_loader_opts o = {0};
    o.batch_size = field_int(L, 4, "batch_size", 1);
    o.num_workers = (int)field_int(L, 4, "num_workers", 0);
    o.prefetch = (int)field_int(L, 4, "prefetch", 0);
    o.seed = (uint64_t)field_int(L, 4, "seed", 0);
    o.shard_count = (int)field_int(L, 4, "shard_count", 0);
    o.shard_rank = (int)field_int(L, 4, "shard_rank", 0);
    lua_getfield(L, 4, "shuffle");
    o.shuffle = lua_toboolean(L, -1);
    lua_getfield(L, 4, "drop_last");
    o.drop_last = lua_toboolean(L, -1);
    lua_getfield(L, 4, "skip_bad");
    o.skip_bad = lua_toboolean(L, -1);
    lua_pop(L, 3);
    int64_t n = (int64_t)luaL_len(L, 1);
    if ((int64_t)luaL_len(L, 2) != n)
        return luaL_error(L, "Loader: %d paths but %d labels", (int)n, (int)luaL_len(L, 2));
    /* userdata first, so a Lua error below cannot leak the loader */
    fmd_loader **p = lua_newuserdatauv(L, sizeof *p, 0);
    *p = NULL;
    luaL_setmetatable(L, FMD_LOADER_MT);
    const char **paths = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
    float *labels = lua_newuserdatauv(L, sizeof(float) * (size_t)(n + 1), 0);
    for (int64_t i = 0; i < n; i++) {
        lua_geti(L, 1, i + 1);
        paths[i] = lua_tostring(L, -1);   /* strings stay alive in table 1 */
        if (!paths[i]) return luaL_error(L, "Loader: path %d is not a string", (int)i + 1);
        lua_pop(L, 1);
        lua_geti(L, 2, i + 1);
        int ok;
        labels[i] = (float)lua_tonumberx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok) return luaL_error(L, "Loader: label %d is not a number", (int)i + 1);
    }
    *p = fmd_loader_new(n, paths, labels, &tf, &o);
    if (!*p) return fmd_lua_error(L);
    lua_pop(L, 2);
    return 1;
}

static int l_loader_start(lua_State *L) {
    fmd_loader **p = check_loader(L, 1);
    if (fmd_loader_start(*p, luaL_optinteger(L, 2, 0))) return fmd_lua_error(L);
    return 0;
}

/* loader:next() -> images, labels, or nil at the end of the epoch */
static int l_loader_next(lua_State *L) {
    fmd_loader **p = check_loader(L, 1);
    fmd_tensor *im, *lb;
    int r = fmd_loader_next(*p, &im, &lb);
    if (r < 0) {
        /* stop the workers before raising: an error ends the epoch */
        char msg[600];
        snprintf(msg, sizeof msg, "%s", fmd_error());
        fmd_loader_stop(*p);
        return luaL_error(L, "%s", msg);
    }
    if (r == 0) {
        lua_pushnil(L);
        return 1;
    }
    fmd_lua_push_tensor(L, im);
    fmd_lua_push_tensor(L, lb);
    return 2;
}

static int l_loader_stop(lua_State *L) {
    fmd_loader **p = luaL_checkudata(L, 1, FMD_LOADER_MT);
    if (*p) fmd_loader_stop(*p);
    return 0;
}

/* loader:skipped() -> samples skipped this epoch, new messages ("" if none) */
static int l_loader_skipped(lua_State *L) {
    char buf[4096];
    lua_pushinteger(L, fmd_loader_skipped(*check_loader(L, 1), buf, sizeof buf));
    lua_pushstring(L, buf);
    return 2;
}

static int l_loader_gc(lua_State *L) {
    fmd_loader **p = luaL_checkudata(L, 1, FMD_LOADER_MT);
    fmd_loader_free(*p);
    *p = NULL;
    return 0;
}

void fmd_lua_open_image(lua_State *L) {
    static const luaL_Reg rng_methods[] = {
        {"seed", l_rng_seed}, {"uniform", l_rng_uniform}, {"int", l_rng_int}, {NULL, NULL}};
    luaL_newmetatable(L, FMD_RNG_MT);
    luaL_newlib(L, rng_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    static const luaL_Reg loader_methods[] = {
        {"start", l_loader_start}, {"next", l_loader_next}, {"stop", l_loader_stop},
        {"skipped", l_loader_skipped}, {"free", l_loader_gc},
        {NULL, NULL}};
    luaL_newmetatable(L, FMD_LOADER_MT);
    luaL_newlib(L, loader_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_loader_gc);
    lua_setfield(L, -2, "__gc");
    /* __close stops (not frees): `local l <close> = ...` or a for loop's
     * closing value ends the epoch's workers on break or error */
    lua_pushcfunction(L, l_loader_stop);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);

    static const luaL_Reg fns[] = {
        {"load_image", l_load_image}, {"decode_image", l_decode_image}, {"save_image", l_save_image},
        {"image_resize", l_image_resize}, {"image_resize_tf", l_image_resize_tf}, {"image_crop", l_image_crop}, {"image_hflip", l_image_hflip},
        {"image_normalize", l_image_normalize}, {"Rng", l_rng_new}, {"transform_apply", l_transform_apply},
        {"sample_seed", l_sample_seed}, {"loader_order", l_loader_order}, {"stack_batch", l_stack_batch},
        {"Loader", l_loader_new}, {"image_format", l_image_format}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
