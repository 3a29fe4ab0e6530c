/* lua_serialize.c - tensor files from Lua:
 *   bytes = fmd.base64_decode(text [, where])  -- RFC 4648 (tfjs shards in .js files)
 *   fmd.save_safetensors(path, {name = tensor, ...} [, {key = "value", ...}])
 *   tensors, metadata = fmd.load_safetensors(path)
 *   tensors, names = fmd.load_pth(path)     -- names: the file's order
 *   t = fmd.tfjs_decode(bytes, offset, nbytes, kind, shape [, min, scale, round])
 *       -- one tensor of TensorFlow.js weights (lib/fmd/tfjs.lua reads the manifest)
 */
#include "fmd_lua.h"

#include <stdio.h>
#include <string.h>

/* pushes the dict's tensors as a name -> tensor table (and, when names_too,
 * a list of the names in order); the dict's references move to Lua */
static void push_tensors(lua_State *L, fmd_tensor_dict *d, int names_too) {
    lua_createtable(L, 0, d->n);
    for (int i = 0; i < d->n; i++) {
        fmd_tensor *t = d->tensors[i];
        d->tensors[i] = NULL;
        fmd_lua_push_tensor(L, t);
        lua_setfield(L, -2, d->names[i]);
    }
    if (names_too) {
        lua_createtable(L, d->n, 0);
        for (int i = 0; i < d->n; i++) {
            lua_pushstring(L, d->names[i]);
            lua_seti(L, -2, i + 1);
        }
    }
}

/* RFC 4648 base64 (standard alphabet, '=' padding, no whitespace) to bytes;
 * where names the text in errors. In C because a weights shard wrapped in
 * JavaScript is megabytes of it: a Lua loop takes seconds. */
static int l_base64_decode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *where = luaL_optstring(L, 2, "base64");
    static signed char val[256];
    if (!val['B']) {   /* 'A' is 0, so 'B' tells whether the table is filled */
        memset(val, -1, sizeof val);
        const char *abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (int i = 0; i < 64; i++) val[(unsigned char)abc[i]] = (signed char)i;
    }
    if (n % 4) return luaL_error(L, "%s: base64 text of %I characters (expected a multiple of 4)", where, (lua_Integer)n);
    size_t pad = n >= 1 && s[n - 1] == '=' ? (n >= 2 && s[n - 2] == '=' ? 2 : 1) : 0;
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, n / 4 * 3);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        for (size_t k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + k];
            int d = val[c];
            if (d < 0 && !(c == '=' && i + k >= n - pad)) {
                char shown[8] = "a byte";
                if (c >= 32 && c < 127) snprintf(shown, sizeof shown, "'%c'", c);
                return luaL_error(L, "%s: byte %I of the base64 text is %s (not base64)", where,
                                  (lua_Integer)(i + k + 1), shown);
            }
            v = v << 6 | (uint32_t)(d < 0 ? 0 : d);
        }
        out[o++] = (char)(v >> 16);
        out[o++] = (char)(v >> 8);
        out[o++] = (char)v;
    }
    luaL_pushresultsize(&b, o - pad);
    return 1;
}

static int l_save_safetensors(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int has_meta = !lua_isnoneornil(L, 3);
    if (has_meta) luaL_checktype(L, 3, LUA_TTABLE);
    /* check everything first: nothing is allocated yet, so raising is safe */
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            return luaL_error(L, "save_safetensors: tensor names must be strings, got a %s key",
                              luaL_typename(L, -2));
        if (!fmd_lua_is_tensor(L, -1))
            return luaL_error(L, "save_safetensors: '%s' is a %s, not a tensor", lua_tostring(L, -2),
                              luaL_typename(L, -1));
        fmd_lua_check_tensor(L, -1);   /* raises on a freed tensor */
        lua_pop(L, 1);
    }
    if (has_meta) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            int vt = lua_type(L, -1);
            if (lua_type(L, -2) != LUA_TSTRING)
                return luaL_error(L, "save_safetensors: metadata keys must be strings, got a %s key",
                                  luaL_typename(L, -2));
            if (vt != LUA_TSTRING && vt != LUA_TNUMBER && vt != LUA_TBOOLEAN)
                return luaL_error(L, "save_safetensors: metadata '%s' is a %s; values must be strings "
                                  "(numbers and booleans are converted)", lua_tostring(L, -2),
                                  luaL_typename(L, -1));
            lua_pop(L, 1);
        }
    }
    fmd_tensor_dict d;
    memset(&d, 0, sizeof d);
    int rc = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (!rc) rc = fmd_tensor_dict_add(&d, lua_tostring(L, -2), *(fmd_tensor **)lua_touserdata(L, -1));
        lua_pop(L, 1);
    }
    if (has_meta) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            /* luaL_tolstring pushes a converted copy, leaving the key intact */
            const char *v = luaL_tolstring(L, -1, NULL);
            if (!rc) rc = fmd_tensor_dict_add_meta(&d, lua_tostring(L, -3), v);
            lua_pop(L, 2);
        }
    }
    if (!rc) rc = fmd_safetensors_save(path, &d);
    fmd_tensor_dict_free(&d);
    if (rc) return fmd_lua_error(L);
    return 0;
}

static int l_load_safetensors(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    fmd_tensor_dict d;
    if (fmd_safetensors_load(path, &d)) return fmd_lua_error(L);
    push_tensors(L, &d, 0);
    lua_createtable(L, 0, d.nmeta);
    for (int i = 0; i < d.nmeta; i++) {
        lua_pushstring(L, d.meta_vals[i]);
        lua_setfield(L, -2, d.meta_keys[i]);
    }
    fmd_tensor_dict_free(&d);
    return 2;
}

static int l_load_pth(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    fmd_tensor_dict d;
    if (fmd_pth_load(path, &d)) return fmd_lua_error(L);
    push_tensors(L, &d, 1);
    fmd_tensor_dict_free(&d);
    return 2;
}

/* bytes[offset+1 .. offset+nbytes] (offset 0-based) hold one tensor stored as
 * kind: "float32", "int32", "float16", or quantised "uint8"/"uint16" with
 * min, scale (and round: an int32 weight); no copy of the string is made */
static int l_tfjs_decode(lua_State *L) {
    static const char *const kinds[] = {"float32", "int32", "float16", "uint8", "uint16", NULL};
    size_t len;
    const char *bytes = luaL_checklstring(L, 1, &len);
    lua_Integer off = luaL_checkinteger(L, 2), n = luaL_checkinteger(L, 3);
    int kind = luaL_checkoption(L, 4, NULL, kinds);
    luaL_checktype(L, 5, LUA_TTABLE);
    int64_t shape[FMD_MAX_DIMS];
    int ndim = fmd_lua_check_shape(L, 5, shape);
    double min = luaL_optnumber(L, 6, 0), scale = luaL_optnumber(L, 7, 1);
    int round = lua_toboolean(L, 8);
    if (off < 0 || n < 0 || (lua_Unsigned)off > len || (lua_Unsigned)n > len - (size_t)off)
        return luaL_error(L, "tfjs_decode: %I bytes at offset %I are outside the %I bytes given", n, off,
                          (lua_Integer)len);
    fmd_lua_push_tensor(L, fmd_tfjs_decode((const uint8_t *)bytes + off, n, (fmd_tfjs_kind)kind, min, scale,
                                           round, ndim, shape));
    return 1;
}

void fmd_lua_open_serialize(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"base64_decode", l_base64_decode},
        {"save_safetensors", l_save_safetensors},
        {"load_safetensors", l_load_safetensors},
        {"load_pth", l_load_pth},
        {"tfjs_decode", l_tfjs_decode},
        {NULL, NULL},
    };
    luaL_setfuncs(L, fns, 0);
}
