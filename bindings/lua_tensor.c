/* lua_tensor.c - the Tensor userdata: creation, views, maths, autograd.
 * Dims and indices are 1-based here and converted to the engine's 0-based. */
#include "fmd_lua.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define T(i) fmd_lua_check_tensor(L, i)
#define PUSH(expr) (fmd_lua_push_tensor(L, (expr)), 1)

/* --------------------------------------------------------------- creation */
static int l_empty(lua_State *L) { int64_t s[FMD_MAX_DIMS]; int n = fmd_lua_check_shape(L, 1, s); return PUSH(fmd_empty(n, s)); }
static int l_zeros(lua_State *L) { int64_t s[FMD_MAX_DIMS]; int n = fmd_lua_check_shape(L, 1, s); return PUSH(fmd_zeros(n, s)); }
static int l_ones(lua_State *L) { int64_t s[FMD_MAX_DIMS]; int n = fmd_lua_check_shape(L, 1, s); return PUSH(fmd_full(n, s, 1)); }
static int l_rand(lua_State *L) { int64_t s[FMD_MAX_DIMS]; int n = fmd_lua_check_shape(L, 1, s); return PUSH(fmd_rand(n, s)); }
static int l_randn(lua_State *L) { int64_t s[FMD_MAX_DIMS]; int n = fmd_lua_check_shape(L, 1, s); return PUSH(fmd_randn(n, s)); }

/* full(shape..., value) or full({shape}, value) */
static int l_full(lua_State *L) {
    int64_t s[FMD_MAX_DIMS];
    int top = lua_gettop(L);
    if (top < 1) return luaL_error(L, "full: expected a shape and a value");
    float v = (float)luaL_checknumber(L, top);
    int n;
    if (lua_istable(L, 1)) n = fmd_lua_check_shape(L, 1, s);
    else { lua_settop(L, top - 1); n = fmd_lua_check_shape(L, 1, s); }
    return PUSH(fmd_full(n, s, v));
}

/* arange(stop) | arange(start, stop[, step]): end exclusive, like PyTorch */
static int l_arange(lua_State *L) {
    double a = luaL_checknumber(L, 1);
    if (lua_isnoneornil(L, 2)) return PUSH(fmd_arange(0, a, 1));
    return PUSH(fmd_arange(a, luaL_checknumber(L, 2), luaL_optnumber(L, 3, 1)));
}

/* nested Lua tables of numbers -> tensor */
static int table_shape(lua_State *L, int idx, int depth, int64_t *shape, int *nd) {
    if (lua_type(L, idx) == LUA_TNUMBER) { if (depth > *nd) *nd = depth; return 0; }
    if (!lua_istable(L, idx)) return luaL_error(L, "tensor: expected numbers or nested tables, got %s", luaL_typename(L, idx));
    if (depth >= FMD_MAX_DIMS) return luaL_error(L, "tensor: nesting deeper than %d", FMD_MAX_DIMS);
    int64_t n = (int64_t)luaL_len(L, idx);
    shape[depth] = n;
    if (depth + 1 > *nd) *nd = depth + 1;
    if (n > 0) {
        lua_geti(L, idx, 1);
        table_shape(L, lua_gettop(L), depth + 1, shape, nd);
        lua_pop(L, 1);
    }
    return 0;
}

static void table_fill(lua_State *L, int idx, int depth, int nd, const int64_t *shape, float **out) {
    if (depth == nd) {
        int isnum;
        lua_Number v = lua_tonumberx(L, idx, &isnum);
        if (!isnum) luaL_error(L, "tensor: element is %s, expected a number", luaL_typename(L, idx));
        *(*out)++ = (float)v;
        return;
    }
    if (!lua_istable(L, idx) || (int64_t)luaL_len(L, idx) != shape[depth])
        luaL_error(L, "tensor: ragged nested table (dim %d should have %d entries)", depth + 1, (int)shape[depth]);
    for (int64_t i = 1; i <= shape[depth]; i++) {
        lua_geti(L, idx, i);
        table_fill(L, lua_gettop(L), depth + 1, nd, shape, out);
        lua_pop(L, 1);
    }
}

static int l_tensor(lua_State *L) {
    if (fmd_lua_is_tensor(L, 1)) return PUSH(fmd_clone(T(1)));
    int64_t shape[FMD_MAX_DIMS];
    int nd = 0;
    table_shape(L, 1, 0, shape, &nd);
    fmd_tensor *t = fmd_empty(nd, shape);
    if (!t) return fmd_lua_error(L);
    fmd_lua_push_tensor(L, t);   /* anchored before table_fill may raise */
    float *p = fmd_data(t);
    table_fill(L, 1, 0, nd, shape, &p);
    return 1;
}

/* ----------------------------------------------------------------- basics */
static int l_gc(lua_State *L) {
    fmd_tensor **p = luaL_checkudata(L, 1, FMD_TENSOR_MT);
    fmd_release(*p);
    *p = NULL;
    return 0;
}

static int l_size(lua_State *L) {
    fmd_tensor *t = T(1);
    if (!lua_isnoneornil(L, 2)) {
        int d = fmd_lua_check_dim(L, 2, t->ndim, luaL_checkinteger(L, 2));
        lua_pushinteger(L, t->ndim ? t->shape[d] : 1);
        return 1;
    }
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) { lua_pushinteger(L, t->shape[i]); lua_rawseti(L, -2, i + 1); }
    luaL_setmetatable(L, "fmd.Size");   /* prints as [2 x 3] */
    return 1;
}

static int l_stride(lua_State *L) {
    fmd_tensor *t = T(1);
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) { lua_pushinteger(L, t->stride[i]); lua_rawseti(L, -2, i + 1); }
    return 1;
}

static int l_dim(lua_State *L) { lua_pushinteger(L, T(1)->ndim); return 1; }
static int l_numel(lua_State *L) { lua_pushinteger(L, fmd_numel(T(1))); return 1; }
static int l_len(lua_State *L) { fmd_tensor *t = T(1); lua_pushinteger(L, t->ndim ? t->shape[0] : 0); return 1; }
static int l_is_contiguous(lua_State *L) { lua_pushboolean(L, fmd_is_contiguous(T(1))); return 1; }

static int l_item(lua_State *L) {
    fmd_tensor *t = T(1);
    char s[128];
    if (fmd_numel(t) != 1)
        return luaL_error(L, "item: tensor %s has %d elements, expected exactly one",
                          fmd_shape_str(s, sizeof s, t->ndim, t->shape), (int)fmd_numel(t));
    int64_t off = 0;
    lua_pushnumber(L, fmd_data(t)[off]);
    return 1;
}

/* values of a tensor as a flat Lua array in row-major order */
static int l_flat(lua_State *L) {
    fmd_tensor *c = fmd_contiguous(T(1));
    if (!c) return fmd_lua_error(L);
    int64_t n = fmd_numel(c);
    lua_createtable(L, (int)n, 0);
    const float *d = fmd_data(c);
    for (int64_t i = 0; i < n; i++) { lua_pushnumber(L, d[i]); lua_rawseti(L, -2, i + 1); }
    fmd_release(c);
    return 1;
}

static void push_nested(lua_State *L, const fmd_tensor *t, int dim, const float *p) {
    if (dim == t->ndim) { lua_pushnumber(L, *p); return; }
    lua_createtable(L, (int)t->shape[dim], 0);
    for (int64_t i = 0; i < t->shape[dim]; i++) {
        push_nested(L, t, dim + 1, p + i * t->stride[dim]);
        lua_rawseti(L, -2, i + 1);
    }
}

static int l_totable(lua_State *L) {
    fmd_tensor *t = T(1);
    if (t->ndim == 0) { lua_pushnumber(L, fmd_data(t)[0]); return 1; }
    push_nested(L, t, 0, fmd_data(t));
    return 1;
}

/* ------------------------------------------------------------------ views */
static int l_view(lua_State *L) {
    int64_t s[FMD_MAX_DIMS];
    int n = fmd_lua_check_shape(L, 2, s);
    return PUSH(fmd_view(T(1), n, s));
}

static int l_reshape(lua_State *L) {
    int64_t s[FMD_MAX_DIMS];
    int n = fmd_lua_check_shape(L, 2, s);
    return PUSH(fmd_reshape(T(1), n, s));
}

static int l_transpose(lua_State *L) {
    fmd_tensor *t = T(1);
    int a = fmd_lua_check_dim(L, 2, t->ndim, luaL_checkinteger(L, 2));
    int b = fmd_lua_check_dim(L, 3, t->ndim, luaL_checkinteger(L, 3));
    return PUSH(fmd_transpose(t, a, b));
}

static int l_t(lua_State *L) {
    fmd_tensor *t = T(1);
    if (t->ndim != 2) return luaL_error(L, "t: expects a 2-D tensor, got %d dims (use transpose)", t->ndim);
    return PUSH(fmd_transpose(t, 0, 1));
}

static int l_permute(lua_State *L) {
    fmd_tensor *t = T(1);
    int64_t s[FMD_MAX_DIMS];
    int n = fmd_lua_check_shape(L, 2, s);
    if (n != t->ndim) return luaL_error(L, "permute: got %d dims for a %d-dim tensor", n, t->ndim);
    int dims[FMD_MAX_DIMS];
    for (int i = 0; i < n; i++) dims[i] = fmd_lua_check_dim(L, 2, t->ndim, s[i]);
    return PUSH(fmd_permute(t, dims));
}

/* narrow(dim, start, length): start is 1-based */
static int l_narrow(lua_State *L) {
    fmd_tensor *t = T(1);
    int d = fmd_lua_check_dim(L, 2, t->ndim, luaL_checkinteger(L, 2));
    lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
    if (t->ndim && start < 0) start += t->shape[d] + 1;
    return PUSH(fmd_narrow(t, d, start - 1, len));
}

static int l_select(lua_State *L) {
    fmd_tensor *t = T(1);
    if (t->ndim == 0) return luaL_error(L, "select: cannot select from a 0-dim tensor");
    int d = fmd_lua_check_dim(L, 2, t->ndim, luaL_checkinteger(L, 2));
    lua_Integer i = luaL_checkinteger(L, 3);
    if (i < 0) i += t->shape[d] + 1;
    return PUSH(fmd_select(t, d, i - 1));
}

/* index(dim, indices): indices 1-based, a tensor or a table */
static int l_index(lua_State *L) {
    fmd_tensor *t = T(1);
    int d = fmd_lua_check_dim(L, 2, t->ndim, luaL_checkinteger(L, 2));
    fmd_tensor *idx;
    if (fmd_lua_is_tensor(L, 3)) idx = fmd_contiguous(T(3));
    else {
        luaL_checktype(L, 3, LUA_TTABLE);
        int64_t n = (int64_t)luaL_len(L, 3);
        idx = fmd_empty(1, &n);
        if (!idx) return fmd_lua_error(L);
        for (int64_t i = 0; i < n; i++) {
            lua_geti(L, 3, i + 1);
            fmd_data(idx)[i] = (float)lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
        fmd_tensor *tmp = idx; idx = fmd_clone(tmp); fmd_release(tmp);
    }
    if (!idx) return fmd_lua_error(L);
    fmd_tensor *z = fmd_add_scalar(idx, -1.0f);   /* to 0-based */
    fmd_release(idx);
    if (!z) return fmd_lua_error(L);
    fmd_tensor *r = fmd_index_select(t, d, z);
    fmd_release(z);
    return PUSH(r);
}

static int l_expand(lua_State *L) {
    int64_t s[FMD_MAX_DIMS];
    int n = fmd_lua_check_shape(L, 2, s);
    return PUSH(fmd_expand(T(1), n, s));
}

static int l_contiguous(lua_State *L) { return PUSH(fmd_contiguous(T(1))); }
static int l_clone(lua_State *L) { return PUSH(fmd_clone(T(1))); }
static int l_detach(lua_State *L) { return PUSH(fmd_detach(T(1))); }

static int l_copy(lua_State *L) {
    if (fmd_copy_(T(1), T(2))) return fmd_lua_error(L);
    lua_settop(L, 1);
    return 1;
}

static int l_fill(lua_State *L) {
    if (fmd_fill_(T(1), (float)luaL_checknumber(L, 2))) return fmd_lua_error(L);
    lua_settop(L, 1);
    return 1;
}

static int l_zero(lua_State *L) {
    if (fmd_fill_(T(1), 0)) return fmd_lua_error(L);
    lua_settop(L, 1);
    return 1;
}

/* t[i]: number for 1-D tensors (like Torch7), else a view of row i */
static int index_get(lua_State *L, fmd_tensor *t, lua_Integer i) {
    if (t->ndim == 0) return luaL_error(L, "cannot index a 0-dim tensor (use item())");
    lua_Integer n = t->shape[0];
    if (i < 0) i += n + 1;
    if (i < 1 || i > n) return luaL_error(L, "index %d out of range 1..%d of dim 1", (int)i, (int)n);
    if (t->ndim == 1) { lua_pushnumber(L, fmd_data(t)[(i - 1) * t->stride[0]]); return 1; }
    return PUSH(fmd_select(t, 0, i - 1));
}

/* -------------------------------------------------------------- arithmetic */
static int arith(lua_State *L, fmd_binop op) {
    int an = lua_type(L, 1) == LUA_TNUMBER, bn = lua_type(L, 2) == LUA_TNUMBER;
    if (an && bn) return luaL_error(L, "arith: expected a tensor operand");
    if (bn) {
        fmd_tensor *a = T(1);
        float s = (float)lua_tonumber(L, 2);
        switch (op) {
        case FMD_ADD: return PUSH(fmd_add_scalar(a, s));
        case FMD_SUB: return PUSH(fmd_add_scalar(a, -s));
        case FMD_MUL: return PUSH(fmd_mul_scalar(a, s));
        case FMD_DIV: return PUSH(fmd_mul_scalar(a, 1.0f / s));
        case FMD_POW_T: return PUSH(fmd_pow_scalar(a, s));
        default: break;
        }
    } else if (an) {
        fmd_tensor *b = T(2);
        float s = (float)lua_tonumber(L, 1);
        switch (op) {
        case FMD_ADD: return PUSH(fmd_add_scalar(b, s));
        case FMD_SUB: return PUSH(fmd_rsub_scalar(b, s));
        case FMD_MUL: return PUSH(fmd_mul_scalar(b, s));
        case FMD_DIV: return PUSH(fmd_rdiv_scalar(b, s));
        default: break;
        }
        fmd_tensor *a = fmd_full(0, NULL, s);
        if (!a) return fmd_lua_error(L);
        fmd_tensor *r = fmd_binary(op, a, b);
        fmd_release(a);
        return PUSH(r);
    }
    return PUSH(fmd_binary(op, T(1), T(2)));
}

static int l_add(lua_State *L) { return arith(L, FMD_ADD); }
static int l_sub(lua_State *L) { return arith(L, FMD_SUB); }
static int l_mul(lua_State *L) { return arith(L, FMD_MUL); }
static int l_div(lua_State *L) { return arith(L, FMD_DIV); }
static int l_pow(lua_State *L) { return arith(L, FMD_POW_T); }
static int l_maximum(lua_State *L) { return PUSH(fmd_binary(FMD_MAXIMUM, T(1), T(2))); }
static int l_minimum(lua_State *L) { return PUSH(fmd_binary(FMD_MINIMUM, T(1), T(2))); }

#define UNARY(name, op) static int l_##name(lua_State *L) { return PUSH(fmd_unary(op, T(1))); }
UNARY(neg, FMD_NEG) UNARY(exp, FMD_EXP) UNARY(log, FMD_LOG) UNARY(sqrt, FMD_SQRT)
UNARY(abs, FMD_ABS) UNARY(relu, FMD_RELU) UNARY(sigmoid, FMD_SIGMOID) UNARY(tanh, FMD_TANH)

static int l_relu_(lua_State *L) {
    if (fmd_relu_(T(1))) return fmd_lua_error(L);
    lua_settop(L, 1);
    return 1;
}

static int l_add_(lua_State *L) {
    if (fmd_add_(T(1), T(2))) return fmd_lua_error(L);
    lua_settop(L, 1);
    return 1;
}

static int l_clamp(lua_State *L) {
    float lo = lua_isnoneornil(L, 2) ? -INFINITY : (float)luaL_checknumber(L, 2);
    float hi = lua_isnoneornil(L, 3) ? INFINITY : (float)luaL_checknumber(L, 3);
    return PUSH(fmd_clamp(T(1), lo, hi));
}

static int compare(lua_State *L, fmd_cmpop op) {
    fmd_tensor *a = T(1), *b;
    if (lua_type(L, 2) == LUA_TNUMBER) {
        b = fmd_full(0, NULL, (float)lua_tonumber(L, 2));
        if (!b) return fmd_lua_error(L);
    } else b = fmd_retain(T(2));
    fmd_tensor *r = fmd_compare(op, a, b);
    fmd_release(b);
    return PUSH(r);
}
static int l_eq(lua_State *L) { return compare(L, FMD_EQ); }
static int l_ne(lua_State *L) { return compare(L, FMD_NE); }
static int l_lt(lua_State *L) { return compare(L, FMD_LT); }
static int l_le(lua_State *L) { return compare(L, FMD_LE); }
static int l_gt(lua_State *L) { return compare(L, FMD_GT); }
static int l_ge(lua_State *L) { return compare(L, FMD_GE); }

/* ------------------------------------------------------------- reductions */
static int opt_dim(lua_State *L, int arg, fmd_tensor *t) {
    if (lua_isnoneornil(L, arg)) return -1;
    return fmd_lua_check_dim(L, arg, t->ndim, luaL_checkinteger(L, arg));
}

static int l_sum(lua_State *L) { fmd_tensor *t = T(1); return PUSH(fmd_sum(t, opt_dim(L, 2, t), lua_toboolean(L, 3))); }
static int l_mean(lua_State *L) { fmd_tensor *t = T(1); return PUSH(fmd_mean(t, opt_dim(L, 2, t), lua_toboolean(L, 3))); }

/* max(): value; max(dim[, keepdim]): values, 1-based indices */
static int extreme(lua_State *L, int is_max) {
    fmd_tensor *t = T(1);
    int dim = opt_dim(L, 2, t);
    if (dim < 0) {
        fmd_tensor *v = is_max ? fmd_max(t, -1, 0, NULL) : fmd_min(t, -1, 0, NULL);
        return PUSH(v);
    }
    fmd_tensor *idx = NULL;
    fmd_tensor *v = is_max ? fmd_max(t, dim, lua_toboolean(L, 3), &idx) : fmd_min(t, dim, lua_toboolean(L, 3), &idx);
    if (!v) return fmd_lua_error(L);
    fmd_lua_push_tensor(L, v);
    fmd_tensor *i1 = fmd_add_scalar(idx, 1.0f);
    fmd_release(idx);
    fmd_lua_push_tensor(L, i1);
    return 2;
}
static int l_max(lua_State *L) { return extreme(L, 1); }
static int l_min(lua_State *L) { return extreme(L, 0); }

/* argmax([dim[, keepdim]]): 1-based */
static int l_argmax(lua_State *L) {
    fmd_tensor *t = T(1);
    fmd_tensor *idx = fmd_argmax(t, opt_dim(L, 2, t), lua_toboolean(L, 3));
    if (!idx) return fmd_lua_error(L);
    fmd_tensor *i1 = fmd_add_scalar(idx, 1.0f);
    fmd_release(idx);
    return PUSH(i1);
}

static int l_matmul(lua_State *L) { return PUSH(fmd_matmul(T(1), T(2))); }

/* --------------------------------------------------------------- autograd */
static int l_backward(lua_State *L) {
    /* the forward's intermediate tensors are garbage by now, but their
     * userdata would keep every activation alive through the backward
     * pass; collected first, each activation is freed as soon as the
     * backward walk is past it (a full GC costs ~1 ms, so only for big graphs) */
    if (fmd_bytes_in_use() >= ((size_t)256 << 20)) lua_gc(L, LUA_GCCOLLECT);
    if (fmd_backward(T(1), fmd_lua_opt_tensor(L, 2))) return fmd_lua_error(L);
    return 0;
}

static int l_retain_grad(lua_State *L) {
    fmd_tensor *t = T(1);
    if (!t->requires_grad) return luaL_error(L, "retain_grad: tensor does not require grad");
    t->retains_grad = 1;
    lua_settop(L, 1);
    return 1;
}

static int l_requires_grad_(lua_State *L) {
    fmd_tensor *t = T(1);
    if (fmd_set_requires_grad(t, lua_isnone(L, 2) ? 1 : lua_toboolean(L, 2))) return fmd_lua_error(L);
    lua_settop(L, 1);
    return 1;
}

/* properties read through __index */
static int get_property(lua_State *L, fmd_tensor *t, const char *k) {
    if (!strcmp(k, "grad")) {
        if (t->grad) fmd_lua_push_tensor(L, fmd_retain(t->grad));
        else lua_pushnil(L);
        return 1;
    }
    if (!strcmp(k, "requires_grad")) { lua_pushboolean(L, t->requires_grad); return 1; }
    if (!strcmp(k, "is_leaf")) { lua_pushboolean(L, t->grad_fn == NULL); return 1; }
    if (!strcmp(k, "grad_fn")) { lua_pushstring(L, fmd_grad_fn_name(t)); return 1; }   /* NULL pushes nil */
    if (!strcmp(k, "shape")) { lua_settop(L, 1); return l_size(L); }
    if (!strcmp(k, "ndim")) { lua_pushinteger(L, t->ndim); return 1; }
    lua_pushnil(L);
    return 1;
}

static int l_index_mm(lua_State *L) {
    fmd_tensor *t = T(1);
    if (lua_type(L, 2) == LUA_TNUMBER) return index_get(L, t, luaL_checkinteger(L, 2));
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;   /* a method */
    lua_pop(L, 1);
    if (lua_type(L, 2) == LUA_TSTRING) return get_property(L, t, lua_tostring(L, 2));
    lua_pushnil(L);
    return 1;
}

static int l_newindex_mm(lua_State *L) {
    fmd_tensor *t = T(1);
    if (lua_type(L, 2) == LUA_TNUMBER) {   /* t[i] = number or tensor */
        lua_Integer i = luaL_checkinteger(L, 2);
        if (t->ndim == 0) return luaL_error(L, "cannot index a 0-dim tensor");
        if (i < 0) i += t->shape[0] + 1;
        if (i < 1 || i > t->shape[0]) return luaL_error(L, "index %d out of range 1..%d of dim 1", (int)i, (int)t->shape[0]);
        fmd_tensor *row = fmd_select(t, 0, i - 1);
        if (!row) return fmd_lua_error(L);
        int rc = lua_type(L, 3) == LUA_TNUMBER ? fmd_fill_(row, (float)lua_tonumber(L, 3)) : fmd_copy_(row, T(3));
        fmd_release(row);
        if (rc) return fmd_lua_error(L);
        return 0;
    }
    const char *k = luaL_checkstring(L, 2);
    if (!strcmp(k, "requires_grad")) {
        if (fmd_set_requires_grad(t, lua_toboolean(L, 3))) return fmd_lua_error(L);
        return 0;
    }
    if (!strcmp(k, "grad")) {
        fmd_tensor *g = fmd_lua_opt_tensor(L, 3);
        if (g && !fmd_same_shape(g, t)) return luaL_error(L, "grad: assigned gradient has a different shape");
        fmd_release(t->grad);
        t->grad = g ? fmd_retain(g) : NULL;
        return 0;
    }
    return luaL_error(L, "cannot set field '%s' of a tensor", k);
}

/* ------------------------------------------------------------- module fns */
static int l_is_tensor(lua_State *L) { lua_pushboolean(L, fmd_lua_is_tensor(L, 1)); return 1; }

static int l_shape_str(lua_State *L) {
    fmd_tensor *t = T(1);
    char s[256];
    lua_pushstring(L, fmd_shape_str(s, sizeof s, t->ndim, t->shape));
    return 1;
}

/* max |a-b| / (1+|b|) over elements (flat order) and its 1-based position */
static int l_max_rel_err(lua_State *L) {
    fmd_tensor *ta = T(1), *tb = T(2);   /* both checked first: a raise after a copy would leak it */
    fmd_tensor *a = fmd_contiguous(ta), *b = fmd_contiguous(tb);
    if (!a || !b) { fmd_release(a); fmd_release(b); return fmd_lua_error(L); }
    int64_t n = fmd_numel(a) < fmd_numel(b) ? fmd_numel(a) : fmd_numel(b), at = 0;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = fmd_data(a)[i], y = fmd_data(b)[i];
        double e = fabs(x - y) / (1 + fabs(y));
        if (e != e) e = INFINITY;
        if (e > worst) { worst = e; at = i; }
    }
    fmd_release(a); fmd_release(b);
    lua_pushnumber(L, worst);
    lua_pushinteger(L, at + 1);
    return 2;
}

static int l_manual_seed(lua_State *L) { fmd_manual_seed((uint64_t)luaL_checkinteger(L, 1)); return 0; }
static int l_set_num_threads(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 1) return luaL_argerror(L, 1, "number of threads must be >= 1");
    fmd_set_num_threads((int)n);
    return 0;
}
static int l_get_num_threads(lua_State *L) { lua_pushinteger(L, fmd_get_num_threads()); return 1; }
static int l_gemm_backend(lua_State *L) { lua_pushstring(L, fmd_gemm_backend()); return 1; }
static int l_is_grad_enabled(lua_State *L) { lua_pushboolean(L, fmd_is_grad_enabled()); return 1; }
static int l_set_grad_enabled(lua_State *L) { lua_pushboolean(L, fmd_set_grad_enabled(lua_toboolean(L, 1))); return 1; }
static int l_memory_in_use(lua_State *L) { lua_pushinteger(L, (lua_Integer)fmd_bytes_in_use()); return 1; }

static const luaL_Reg methods[] = {
    {"size", l_size}, {"stride", l_stride}, {"dim", l_dim}, {"numel", l_numel}, {"nelement", l_numel},
    {"is_contiguous", l_is_contiguous}, {"item", l_item}, {"flat", l_flat}, {"totable", l_totable},
    {"view", l_view}, {"reshape", l_reshape}, {"transpose", l_transpose}, {"t", l_t}, {"permute", l_permute},
    {"narrow", l_narrow}, {"select", l_select}, {"index", l_index}, {"expand", l_expand},
    {"contiguous", l_contiguous}, {"clone", l_clone}, {"detach", l_detach}, {"copy", l_copy},
    {"fill", l_fill}, {"zero", l_zero},
    {"add", l_add}, {"sub", l_sub}, {"mul", l_mul}, {"div", l_div}, {"pow", l_pow},
    {"maximum", l_maximum}, {"minimum", l_minimum},
    {"neg", l_neg}, {"exp", l_exp}, {"log", l_log}, {"sqrt", l_sqrt}, {"abs", l_abs}, {"relu", l_relu}, {"relu_", l_relu_}, {"add_", l_add_},
    {"sigmoid", l_sigmoid}, {"tanh", l_tanh}, {"clamp", l_clamp},
    {"eq", l_eq}, {"ne", l_ne}, {"lt", l_lt}, {"le", l_le}, {"gt", l_gt}, {"ge", l_ge},
    {"sum", l_sum}, {"mean", l_mean}, {"max", l_max}, {"min", l_min}, {"argmax", l_argmax},
    {"matmul", l_matmul},
    {"backward", l_backward}, {"retain_grad", l_retain_grad}, {"requires_grad_", l_requires_grad_},
    {NULL, NULL}};

static const luaL_Reg functions[] = {
    {"empty", l_empty}, {"zeros", l_zeros}, {"ones", l_ones}, {"full", l_full}, {"rand", l_rand},
    {"randn", l_randn}, {"arange", l_arange}, {"tensor", l_tensor},
    {"is_tensor", l_is_tensor}, {"shape_str", l_shape_str}, {"max_rel_err", l_max_rel_err},
    {"manual_seed", l_manual_seed}, {"set_num_threads", l_set_num_threads},
    {"get_num_threads", l_get_num_threads}, {"gemm_backend", l_gemm_backend},
    {"is_grad_enabled", l_is_grad_enabled},
    {"set_grad_enabled", l_set_grad_enabled}, {"memory_in_use", l_memory_in_use},
    {"matmul", l_matmul},
    {NULL, NULL}};

void fmd_lua_open_tensor(lua_State *L) {
    luaL_setfuncs(L, functions, 0);
    luaL_newmetatable(L, "fmd.Size");   /* of size() tables; __tostring set from Lua */
    lua_setfield(L, -2, "Size");
    luaL_newmetatable(L, FMD_TENSOR_MT);
    lua_newtable(L);   /* methods; Lua code adds more through fmd.core.Tensor_methods */
    luaL_setfuncs(L, methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, "Tensor_methods");
    lua_pushcclosure(L, l_index_mm, 1);
    lua_setfield(L, -2, "__index");
    static const luaL_Reg mm[] = {
        {"__gc", l_gc}, {"__newindex", l_newindex_mm}, {"__len", l_len},
        {"__add", l_add}, {"__sub", l_sub}, {"__mul", l_mul}, {"__div", l_div}, {"__pow", l_pow},
        {"__unm", l_neg}, {NULL, NULL}};
    luaL_setfuncs(L, mm, 0);
    lua_pushstring(L, "fmd.Tensor");
    lua_setfield(L, -2, "__name");
    lua_setfield(L, -2, "Tensor");   /* the metatable, for __tostring set from Lua */
}
