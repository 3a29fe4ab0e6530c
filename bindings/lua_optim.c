/* lua_optim.c - the in-place optimizer kernels of engine/optim.c for
 * lib/fmd/optim/ (users call optim.SGD / optim.Adam, not these):
 *   sgd_step(p, grad, buf|nil, lr, momentum, dampening, nesterov, weight_decay, first)
 *   adam_step(p, grad, exp_avg, exp_avg_sq, max_exp_avg_sq|nil, step, lr, beta1, beta2, eps, weight_decay)
 * p and the state tensors are updated in place and must be contiguous with
 * p's shape; grad may be any layout of that shape. */
#include "fmd_lua.h"

/* a state tensor the kernel writes: contiguous, same shape as p */
static float *check_state(lua_State *L, int arg, const char *what, const fmd_tensor *p) {
    fmd_tensor *t = fmd_lua_check_tensor(L, arg);
    char a[128], b[128];
    if (!fmd_same_shape(t, p))
        luaL_error(L, "%s: shape %s does not match the parameter's %s", what,
                   fmd_shape_str(a, sizeof a, t->ndim, t->shape), fmd_shape_str(b, sizeof b, p->ndim, p->shape));
    if (!fmd_is_contiguous(t)) luaL_error(L, "%s: tensor must be contiguous", what);
    return fmd_data(t);
}

/* the gradient as a contiguous tensor (a new reference) */
static fmd_tensor *check_grad(lua_State *L, int arg, const char *op, const fmd_tensor *p) {
    fmd_tensor *g = fmd_lua_check_tensor(L, arg);
    char a[128], b[128];
    if (!fmd_same_shape(g, p))
        luaL_error(L, "%s: gradient shape %s does not match the parameter's %s", op,
                   fmd_shape_str(a, sizeof a, g->ndim, g->shape), fmd_shape_str(b, sizeof b, p->ndim, p->shape));
    fmd_tensor *c = fmd_contiguous(g);
    if (!c) fmd_lua_error(L);
    return c;
}

static int l_sgd_step(lua_State *L) {
    fmd_tensor *p = fmd_lua_check_tensor(L, 1);
    float *pd = check_state(L, 1, "sgd_step: parameter", p);
    float *buf = lua_isnoneornil(L, 3) ? NULL : check_state(L, 3, "sgd_step: momentum buffer", p);
    double lr = luaL_checknumber(L, 4), momentum = luaL_checknumber(L, 5), dampening = luaL_checknumber(L, 6);
    int nesterov = lua_toboolean(L, 7);
    double wd = luaL_checknumber(L, 8);
    int first = lua_toboolean(L, 9);
    fmd_tensor *g = check_grad(L, 2, "sgd_step", p);   /* last: nothing may raise after it */
    int rc = fmd_sgd_step(pd, fmd_data(g), buf, fmd_numel(p), lr, momentum, dampening, nesterov, wd, first);
    fmd_release(g);
    if (rc) return fmd_lua_error(L);
    return 0;
}

static int l_adam_step(lua_State *L) {
    fmd_tensor *p = fmd_lua_check_tensor(L, 1);
    float *pd = check_state(L, 1, "adam_step: parameter", p);
    float *m = check_state(L, 3, "adam_step: exp_avg", p);
    float *v = check_state(L, 4, "adam_step: exp_avg_sq", p);
    float *vmax = lua_isnoneornil(L, 5) ? NULL : check_state(L, 5, "adam_step: max_exp_avg_sq", p);
    lua_Integer step = luaL_checkinteger(L, 6);
    double lr = luaL_checknumber(L, 7), b1 = luaL_checknumber(L, 8), b2 = luaL_checknumber(L, 9);
    double eps = luaL_checknumber(L, 10), wd = luaL_checknumber(L, 11);
    fmd_tensor *g = check_grad(L, 2, "adam_step", p);
    int rc = fmd_adam_step(pd, fmd_data(g), m, v, vmax, fmd_numel(p), (int64_t)step, lr, b1, b2, eps, wd);
    fmd_release(g);
    if (rc) return fmd_lua_error(L);
    return 0;
}

void fmd_lua_open_optim(lua_State *L) {
    static const luaL_Reg fns[] = {{"sgd_step", l_sgd_step}, {"adam_step", l_adam_step}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
