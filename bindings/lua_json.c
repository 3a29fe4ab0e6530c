/* lua_json.c - JSON through cJSON (the library the engine links) for
 * lib/fmd/json.lua, which keeps the user API:
 *   _json.encode(v, indent|nil, null) -> string
 *   _json.decode(s, name, null)       -> value
 *   _json.format_number(x)            -> string
 * `null` is json.null, the Lua sentinel for JSON null.
 *
 * Encoding builds a cJSON tree (keys in the order they are added), with
 * numbers as raw text in fmd's form (integers plain, integral floats with
 * ".0", others the shortest of %.15g..%.17g that reads back exactly; NaN
 * and infinities become null), prints it with cJSON_PrintUnformatted and,
 * with an indent, re-indents that text (Python's json.dumps(indent=n)
 * layout, not cJSON's tabs). Decoding lets cJSON parse and validate; a
 * second scan of the text tells integers ("3") from floats ("3.0", "3e0")
 * in document order, so a log read and written again keeps its numbers. */
#include "fmd_lua.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 500   /* deeper is almost surely a table that contains itself */

/* ------------------------------------------------------------- numbers */
static void format_number(lua_State *L, int idx, char *out, size_t n) {
    if (lua_isinteger(L, idx)) { snprintf(out, n, LUA_INTEGER_FMT, lua_tointeger(L, idx)); return; }
    double v = lua_tonumber(L, idx);
    if (isnan(v) || isinf(v)) { snprintf(out, n, "null"); return; }
    if (v == floor(v) && fabs(v) < 1e15) { snprintf(out, n, "%.1f", v); return; }
    for (int digits = 15; digits <= 17; digits++) {   /* like Python's repr */
        snprintf(out, n, "%.*g", digits, v);
        if (strtod(out, NULL) == v) return;
    }
}

static int l_format_number(lua_State *L) {
    luaL_checknumber(L, 1);
    char buf[64];
    format_number(L, 1, buf, sizeof buf);
    lua_pushstring(L, buf);
    return 1;
}

/* --------------------------------------------------------------- encode */
typedef struct { char msg[256]; } enc_err;

static int cmp_keys(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* a table whose keys are exactly 1..#t (and no __order) is an array; so
 * is the empty table */
static int is_array(lua_State *L, int idx) {
    if (lua_getfield(L, idx, "__order") != LUA_TNIL) { lua_pop(L, 1); return 0; }
    lua_pop(L, 1);
    lua_Integer max = 0, count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) { lua_pop(L, 1); return 0; }
        if (lua_tointeger(L, -1) > max) max = lua_tointeger(L, -1);
        count++;
    }
    return max == count && max == (lua_Integer)luaL_len(L, idx);
}

/* the value at idx as a new cJSON item, or NULL with e->msg set */
static cJSON *to_cjson(lua_State *L, int idx, int null_idx, int depth, enc_err *e) {
    idx = lua_absindex(L, idx);
    int t = lua_type(L, idx);
    if (t == LUA_TNIL || lua_rawequal(L, idx, null_idx)) return cJSON_CreateNull();
    if (t == LUA_TBOOLEAN) return cJSON_CreateBool(lua_toboolean(L, idx));
    if (t == LUA_TNUMBER) {
        char buf[64];
        format_number(L, idx, buf, sizeof buf);
        return cJSON_CreateRaw(buf);
    }
    if (t == LUA_TSTRING) return cJSON_CreateString(lua_tostring(L, idx));
    if (t != LUA_TTABLE) {
        snprintf(e->msg, sizeof e->msg, "json.encode: cannot encode a %s", lua_typename(L, t));
        return NULL;
    }
    if (depth > MAX_DEPTH) {
        snprintf(e->msg, sizeof e->msg, "json.encode: tables nested more than %d deep (a table that contains itself?)",
                 MAX_DEPTH);
        return NULL;
    }
    luaL_checkstack(L, 8, "json.encode");
    cJSON *out;
    if (is_array(L, idx)) {
        out = cJSON_CreateArray();
        lua_Integer n = (lua_Integer)luaL_len(L, idx);
        for (lua_Integer i = 1; out && i <= n; i++) {
            lua_geti(L, idx, i);
            cJSON *item = to_cjson(L, -1, null_idx, depth + 1, e);
            lua_pop(L, 1);
            if (!item) { cJSON_Delete(out); return NULL; }
            cJSON_AddItemToArray(out, item);
        }
        return out;
    }
    out = cJSON_CreateObject();
    if (!out) return NULL;
    /* keys: v.__order (those present), else every key as tostring, sorted;
       orig maps each key's text to the key itself (2 for "2") */
    lua_newtable(L);
    int keys = lua_gettop(L);
    lua_newtable(L);
    int orig = lua_gettop(L);
    lua_Integer nk = 0;
    if (lua_getfield(L, idx, "__order") == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_geti(L, -1, i) == LUA_TSTRING) {
                lua_pushvalue(L, -1);
                int present = lua_gettable(L, idx) != LUA_TNIL;
                lua_pop(L, 1);
                if (present) {
                    lua_pushvalue(L, -1);
                    lua_pushvalue(L, -1);
                    lua_rawset(L, orig);
                    lua_rawseti(L, keys, ++nk);
                    continue;
                }
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    } else {
        lua_pop(L, 1);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            luaL_tolstring(L, -1, NULL);   /* [key, text] */
            lua_pushvalue(L, -1);
            lua_rawseti(L, keys, ++nk);
            lua_pushvalue(L, -2);
            lua_rawset(L, orig);
        }
        const char **names = malloc(sizeof *names * (nk ? nk : 1));
        if (!names) { lua_pop(L, 2); cJSON_Delete(out); snprintf(e->msg, sizeof e->msg, "json.encode: out of memory"); return NULL; }
        for (lua_Integer i = 1; i <= nk; i++) { lua_rawgeti(L, keys, i); names[i - 1] = lua_tostring(L, -1); lua_pop(L, 1); }
        qsort(names, (size_t)nk, sizeof *names, cmp_keys);
        lua_newtable(L);   /* the strings stay alive through orig's keys */
        for (lua_Integer i = 1; i <= nk; i++) { lua_pushstring(L, names[i - 1]); lua_rawseti(L, -2, i); }
        free(names);
        lua_replace(L, keys);
    }
    for (lua_Integer i = 1; i <= nk; i++) {
        lua_rawgeti(L, keys, i);
        const char *k = lua_tostring(L, -1);
        lua_pushvalue(L, -1);
        lua_rawget(L, orig);
        lua_gettable(L, idx);
        cJSON *item = to_cjson(L, -1, null_idx, depth + 1, e);
        lua_pop(L, 1);
        if (!item) { lua_pop(L, 3); cJSON_Delete(out); return NULL; }
        cJSON_AddItemToObject(out, k, item);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);   /* orig */
    lua_pop(L, 1);   /* keys */
    return out;
}

/* compact JSON text -> the same with newlines and `indent` spaces per
 * level, ": " after keys, empty containers kept as [] and {} */
static void reindent(luaL_Buffer *b, const char *s, int indent) {
    int depth = 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (c == '"') {   /* a string, escapes included, verbatim */
            luaL_addchar(b, c);
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1]) luaL_addchar(b, *p++);
                luaL_addchar(b, *p);
            }
            if (*p) luaL_addchar(b, '"'); else break;
            continue;
        }
        if ((c == '{' || c == '[') && (p[1] == '}' || p[1] == ']')) {
            luaL_addchar(b, c); luaL_addchar(b, *++p);
            continue;
        }
        if (c == '{' || c == '[' || c == ',') {
            if (c != ',') depth++;
            luaL_addchar(b, c);
            luaL_addchar(b, '\n');
            for (int i = 0; i < depth * indent; i++) luaL_addchar(b, ' ');
        } else if (c == '}' || c == ']') {
            depth--;
            luaL_addchar(b, '\n');
            for (int i = 0; i < depth * indent; i++) luaL_addchar(b, ' ');
            luaL_addchar(b, c);
        } else if (c == ':') {
            luaL_addstring(b, ": ");
        } else {
            luaL_addchar(b, c);
        }
    }
}

static int l_encode(lua_State *L) {
    lua_settop(L, 3);
    int indent = lua_isnil(L, 2) ? 0 : (int)luaL_checkinteger(L, 2);
    enc_err e = {{0}};
    cJSON *root = to_cjson(L, 1, 3, 0, &e);
    if (!root) return luaL_error(L, "%s", e.msg[0] ? e.msg : "json.encode: out of memory");
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) return luaL_error(L, "json.encode: out of memory");
    if (indent > 0 || lua_toboolean(L, 2)) {
        luaL_Buffer b;
        lua_pushlightuserdata(L, text);   /* keep the stack balanced for luaL_Buffer */
        luaL_buffinit(L, &b);
        reindent(&b, text, indent);
        cJSON_free(text);
        luaL_pushresult(&b);
        return 1;
    }
    lua_pushstring(L, text);
    cJSON_free(text);
    return 1;
}

/* --------------------------------------------------------------- decode */
/* The number tokens of valid JSON text, in order: is each one an integer
 * (no '.', 'e' or 'E')? Strings are skipped, escapes included. */
typedef struct { const char *p, *end; } scan;

static const char *next_number(scan *sc, size_t *len) {
    const char *p = sc->p;
    while (p < sc->end) {
        char c = *p;
        if (c == '"') {
            for (p++; p < sc->end && *p != '"'; p++) if (*p == '\\') p++;
            p++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            const char *s = p;
            while (p < sc->end && (strchr("+-.eE", *p) || (*p >= '0' && *p <= '9'))) p++;
            sc->p = p;
            *len = (size_t)(p - s);
            return s;
        } else p++;
    }
    sc->p = p;
    return NULL;
}

static void push_value(lua_State *L, const cJSON *v, int null_idx, scan *sc) {
    luaL_checkstack(L, 6, "json.decode");
    if (cJSON_IsNull(v)) lua_pushvalue(L, null_idx);
    else if (cJSON_IsTrue(v)) lua_pushboolean(L, 1);
    else if (cJSON_IsFalse(v)) lua_pushboolean(L, 0);
    else if (cJSON_IsString(v)) lua_pushstring(L, v->valuestring);
    else if (cJSON_IsNumber(v)) {
        size_t len = 0;
        const char *tok = next_number(sc, &len);
        char buf[512];
        /* an integer token that fits reads as a Lua integer, as tonumber would */
        if (tok && len < sizeof buf) {
            memcpy(buf, tok, len);
            buf[len] = 0;
            if (!strpbrk(buf, ".eE") && lua_stringtonumber(L, buf)) return;
        }
        lua_pushnumber(L, v->valuedouble);
    } else if (cJSON_IsArray(v)) {
        lua_newtable(L);
        lua_Integer i = 0;
        for (const cJSON *c = v->child; c; c = c->next) { push_value(L, c, null_idx, sc); lua_rawseti(L, -2, ++i); }
    } else {   /* object: keys in their order in __order (a repeated key once) */
        lua_newtable(L);
        lua_newtable(L);
        lua_Integer n = 0;
        for (const cJSON *c = v->child; c; c = c->next) {
            int seen = lua_getfield(L, -2, c->string) != LUA_TNIL;
            lua_pop(L, 1);
            push_value(L, c, null_idx, sc);
            lua_setfield(L, -3, c->string);
            if (!seen) { lua_pushstring(L, c->string); lua_rawseti(L, -2, ++n); }
        }
        lua_setfield(L, -2, "__order");
    }
}

static int l_decode(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, "JSON");
    lua_settop(L, 3);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    const char *why = NULL;
    if (root) {   /* only white space may follow the value */
        while (end < s + len && strchr(" \t\r\n", *end)) end++;
        if (end < s + len) { why = "trailing characters"; cJSON_Delete(root); root = NULL; }
    }
    if (!root) {
        if (!end || end < s || end > s + len) end = s + len;
        int line = 1, col = 1;
        for (const char *p = s; p < end; p++) {
            if (*p == '\n') { line++; col = 1; } else col++;
        }
        char what[32];
        if (why) snprintf(what, sizeof what, "%s", why);
        else if (end >= s + len) snprintf(what, sizeof what, "unexpected end of the text");
        else if ((unsigned char)*end >= 32 && (unsigned char)*end < 127) snprintf(what, sizeof what, "unexpected '%c'", *end);
        else snprintf(what, sizeof what, "unexpected byte 0x%02x", (unsigned char)*end);
        lua_pushfstring(L, "%s, line %d, column %d: invalid JSON, %s (at byte %d)", name, line, col, what,
                        (int)(end - s) + 1);
        return lua_error(L);
    }
    scan sc = {s, s + len};
    push_value(L, root, 3, &sc);
    cJSON_Delete(root);
    return 1;
}

void fmd_lua_open_json(lua_State *L) {
    static const luaL_Reg fns[] = {{"encode", l_encode}, {"decode", l_decode}, {"format_number", l_format_number},
                                   {NULL, NULL}};
    lua_newtable(L);
    luaL_setfuncs(L, fns, 0);
    lua_setfield(L, -2, "_json");
}
