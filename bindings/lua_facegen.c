/*
 * lua_facegen.c - Lua access to the procedural face generator
 * (engine/facegen.c).
 *
 *   facegen_params()                            -> table of the default parameters
 *   facegen_seed(seed, dataset, split, cls, i)  -> integer seed of one image
 *   facegen_render(kind, seed [, target [, params]]) -> image (3xSxS), mask (1xSxS)
 *   facegen_write(jobs [, params])              -> number of files written
 *       jobs = { {kind=, seed=, target=, path=}, ... }, rendered in parallel
 *   facegen_prepare_dir(dir [, clear])          -> number of *.png found there
 *
 * kind is "real", "swap" or "gan". params is a table overriding any of the
 * fields of fmd_facegen_params by name (size, strength, swap_color, ...).
 */
#include <stdlib.h>
#include <string.h>

#include "fmd_lua.h"

#define FIELD(name) {#name, offsetof(fmd_facegen_params, name)}
static const struct { const char *name; size_t off; } float_fields[] = {
    FIELD(strength), FIELD(swap_color), FIELD(swap_light), FIELD(swap_resample),
    FIELD(swap_sharpen), FIELD(swap_feather), FIELD(swap_misalign), FIELD(gan_checker),
    FIELD(gan_smooth), FIELD(gan_color), FIELD(noise)};
#define NFIELDS (sizeof float_fields / sizeof float_fields[0])

static fmd_facegen_kind check_kind(lua_State *L, int idx) {
    const char *k = lua_tostring(L, idx);
    if (k && strcmp(k, "real") == 0) return FMD_FACEGEN_REAL;
    if (k && strcmp(k, "swap") == 0) return FMD_FACEGEN_SWAP;
    if (k && strcmp(k, "gan") == 0) return FMD_FACEGEN_GAN;
    luaL_error(L, "facegen: kind must be \"real\", \"swap\" or \"gan\" (got %s)",
               k ? k : luaL_typename(L, idx));
    return FMD_FACEGEN_REAL;
}

/* defaults overridden by the table at idx (nil/none = defaults) */
static void check_params(lua_State *L, int idx, fmd_facegen_params *p) {
    fmd_facegen_default_params(p);
    if (lua_isnoneornil(L, idx)) return;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "facegen: parameter names must be strings");
        const char *k = lua_tostring(L, -2);
        int isnum = 0;
        lua_Number v = lua_tonumberx(L, -1, &isnum);
        if (!isnum) luaL_error(L, "facegen: parameter '%s' must be a number", k);
        if (strcmp(k, "size") == 0) {
            if (v != (lua_Number)(int)v) luaL_error(L, "facegen: size must be an integer (got %f)", v);
            p->size = (int)v;
        } else {
            size_t i = 0;
            while (i < NFIELDS && strcmp(k, float_fields[i].name) != 0) i++;
            if (i == NFIELDS) luaL_error(L, "facegen: unknown parameter '%s' (see facegen_params())", k);
            *(float *)((char *)p + float_fields[i].off) = (float)v;
        }
        lua_pop(L, 1);
    }
}

static int l_facegen_params(lua_State *L) {
    fmd_facegen_params p;
    fmd_facegen_default_params(&p);
    lua_createtable(L, 0, (int)NFIELDS + 1);
    lua_pushinteger(L, p.size);
    lua_setfield(L, -2, "size");
    for (size_t i = 0; i < NFIELDS; i++) {
        lua_pushnumber(L, *(float *)((char *)&p + float_fields[i].off));
        lua_setfield(L, -2, float_fields[i].name);
    }
    return 1;
}

static int l_facegen_seed(lua_State *L) {
    uint64_t seed = (uint64_t)luaL_checkinteger(L, 1);
    const char *ds = luaL_checkstring(L, 2), *split = luaL_checkstring(L, 3), *cls = luaL_checkstring(L, 4);
    lua_Integer i = luaL_checkinteger(L, 5);
    lua_pushinteger(L, (lua_Integer)fmd_facegen_seed(seed, ds, split, cls, (int64_t)i));
    return 1;
}

static int l_facegen_render(lua_State *L) {
    fmd_facegen_kind kind = check_kind(L, 1);
    uint64_t seed = (uint64_t)luaL_checkinteger(L, 2);
    uint64_t target = (uint64_t)luaL_optinteger(L, 3, 0);
    if (kind == FMD_FACEGEN_SWAP && lua_isnoneornil(L, 3))
        return luaL_error(L, "facegen_render: a swap needs a target seed (argument 3)");
    fmd_facegen_params p;
    check_params(L, 4, &p);
    fmd_tensor *mask = NULL;
    fmd_tensor *img = fmd_facegen_render(kind, seed, target, &p, &mask);
    if (!img) return fmd_lua_error(L);
    fmd_lua_push_tensor(L, img);
    fmd_lua_push_tensor(L, mask);
    fmd_lua_gc_pressure(L);
    return 2;
}

static int l_facegen_write(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    fmd_facegen_params p;
    check_params(L, 2, &p);
    lua_Integer n = luaL_len(L, 1);
    if (n == 0) { lua_pushinteger(L, 0); return 1; }
    if (n > 100000000) return luaL_error(L, "facegen_write: too many jobs (%d)", (int)n);
    /* the path strings stay alive in the jobs table (arg 1) during the call;
     * the job array is Lua-owned userdata so an error below cannot leak it */
    fmd_facegen_job *jobs = lua_newuserdatauv(L, (size_t)n * sizeof *jobs, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_geti(L, 1, i) != LUA_TTABLE) return luaL_error(L, "facegen_write: job %d is not a table", (int)i);
        fmd_facegen_job *j = &jobs[i - 1];
        lua_getfield(L, -1, "kind");
        j->kind = check_kind(L, -1);
        lua_getfield(L, -2, "seed");
        int ok = 0;
        j->seed = (uint64_t)lua_tointegerx(L, -1, &ok);
        if (!ok) return luaL_error(L, "facegen_write: job %d needs an integer seed", (int)i);
        lua_getfield(L, -3, "target");
        j->target_seed = (uint64_t)lua_tointegerx(L, -1, &ok);
        if (!ok && j->kind == FMD_FACEGEN_SWAP)
            return luaL_error(L, "facegen_write: swap job %d needs an integer target", (int)i);
        lua_getfield(L, -4, "path");
        j->path = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (!j->path) return luaL_error(L, "facegen_write: job %d needs a path", (int)i);
        lua_pop(L, 5);   /* the path string is still referenced by the job table */
    }
    if (fmd_facegen_write(jobs, (int)n, &p)) return fmd_lua_error(L);
    lua_pushinteger(L, n);
    return 1;
}

static int l_facegen_prepare_dir(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    int clear = lua_toboolean(L, 2);
    int n = fmd_facegen_prepare_dir(dir, clear);
    if (n < 0) return fmd_lua_error(L);
    lua_pushinteger(L, n);
    return 1;
}

void fmd_lua_open_facegen(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"facegen_params", l_facegen_params}, {"facegen_seed", l_facegen_seed},
        {"facegen_render", l_facegen_render}, {"facegen_write", l_facegen_write},
        {"facegen_prepare_dir", l_facegen_prepare_dir}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
