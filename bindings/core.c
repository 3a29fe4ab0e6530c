/* core.c - the "fmd.core" Lua module: shared binding helpers and the
 * registration of every binding area. */
#include "fmd_lua.h"

#include <stdlib.h>
#include <string.h>

/* engine messages name the op and shapes already; no "file:line:" prefix
 * (it would point into fmd's own Lua files, not at the user's code) */
int fmd_lua_error(lua_State *L) {
    lua_pushstring(L, fmd_error());
    return lua_error(L);
}

int fmd_lua_is_tensor(lua_State *L, int idx) { return luaL_testudata(L, idx, FMD_TENSOR_MT) != NULL; }

fmd_tensor *fmd_lua_check_tensor(lua_State *L, int idx) {
    fmd_tensor **p = luaL_testudata(L, idx, FMD_TENSOR_MT);
    if (!p) {
        const char *got = luaL_typename(L, idx);
        luaL_argerror(L, idx, lua_pushfstring(L, "tensor expected, got %s", got));
    }
    if (!*p) luaL_argerror(L, idx, "tensor was freed");
    return *p;
}

fmd_tensor *fmd_lua_opt_tensor(lua_State *L, int idx) {
    return lua_isnoneornil(L, idx) ? NULL : fmd_lua_check_tensor(L, idx);
}

/* Lua's GC sees only the small userdata, not the C storage behind it.
 * After each new tensor we count the bytes allocated since the last full
 * collection; once they exceed an eighth of the live size at that
 * collection (at least 256 MB) we collect, so loops that drop big tensors
 * stay bounded and a forward pass's dead intermediates are freed (and
 * their buffers reused) within an eighth of what it keeps. A full
 * collection of a training script's Lua heap takes well under 1 ms. */
static size_t live_after_gc, bytes_at_gc;

void fmd_lua_gc_pressure(lua_State *L) {
    size_t now = fmd_bytes_in_use();
    size_t budget = live_after_gc / 8 > ((size_t)256 << 20) ? live_after_gc / 8 : ((size_t)256 << 20);
    if (now > bytes_at_gc + budget) {
        lua_gc(L, LUA_GCCOLLECT);
        live_after_gc = bytes_at_gc = fmd_bytes_in_use();
    } else if (now < bytes_at_gc) {
        bytes_at_gc = now;
    }
}

void fmd_lua_push_tensor(lua_State *L, fmd_tensor *t) {
    if (!t) { fmd_lua_error(L); return; }
    fmd_tensor **p = lua_newuserdatauv(L, sizeof *p, 0);
    *p = t;
    luaL_setmetatable(L, FMD_TENSOR_MT);
    fmd_lua_gc_pressure(L);
}

int fmd_lua_check_shape(lua_State *L, int idx, int64_t *shape) {
    int nd = 0;
    if (lua_istable(L, idx)) {
        int n = (int)luaL_len(L, idx);
        if (n > FMD_MAX_DIMS) luaL_error(L, "shape has %d dims, fmd supports at most %d", n, FMD_MAX_DIMS);
        for (int i = 1; i <= n; i++) {
            lua_geti(L, idx, i);
            int isnum;
            lua_Integer v = lua_tointegerx(L, -1, &isnum);
            if (!isnum) luaL_error(L, "shape entry %d must be an integer, got %s", i, luaL_typename(L, -1));
            lua_pop(L, 1);
            shape[nd++] = v;
        }
        return nd;
    }
    int top = lua_gettop(L);
    /* fmd.zeros("a") was a 0-dim tensor: the numbers stop at the string */
    if (idx <= top && lua_type(L, idx) == LUA_TSTRING) luaL_argerror(L, idx, "size must be an integer, got a string");
    for (int i = idx; i <= top && lua_type(L, i) == LUA_TNUMBER; i++) {
        if (nd == FMD_MAX_DIMS) luaL_error(L, "shape has more than %d dims", FMD_MAX_DIMS);
        int isnum;
        lua_Integer v = lua_tointegerx(L, i, &isnum);
        if (!isnum) luaL_argerror(L, i, "size must be an integer");
        shape[nd++] = v;
    }
    return nd;
}

int fmd_lua_check_dim(lua_State *L, int arg, int ndim, lua_Integer d) {
    lua_Integer n = ndim ? ndim : 1, given = d;
    if (d < 0) d += n + 1;
    if (d < 1 || d > n)
        luaL_argerror(L, arg, lua_pushfstring(L, "dim %d out of range for a %d-dim tensor (1..%d or -%d..-1)",
                                              (int)given, ndim, (int)n, (int)n));
    return (int)d - 1;
}

int luaopen_fmd_core(lua_State *L) {
    lua_newtable(L);
    fmd_lua_open_tensor(L);
    fmd_lua_open_sys(L);
    fmd_lua_open_nn(L);
    fmd_lua_open_conv(L);
    fmd_lua_open_optim(L);
    fmd_lua_open_image(L);
    fmd_lua_open_serialize(L);
    fmd_lua_open_facegen(L);
    fmd_lua_open_metrics(L);
    fmd_lua_open_json(L);
    fmd_lua_open_video(L);
    fmd_lua_open_dist(L);
    lua_pushstring(L, FMD_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
