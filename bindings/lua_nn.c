/* lua_nn.c - raw bindings of the dense nn ops (engine/nn_linear.c,
 * nn_norm.c, nn_dropout.c, nn_loss.c). The friendly API (defaults, modules)
 * is fmd.nn.functional, written on top of these exact names:
 *   linear(x, w, b|nil)
 *   batch_norm(x, weight|nil, bias|nil, running_mean|nil, running_var|nil,
 *              training, momentum, eps)
 *   batch_norm_relu(same arguments)          max(batch_norm(...), 0), one node
 *   dropout(x, p, training)
 *   softmax(x, dim), log_softmax(x, dim)     dim 1-based, negative from the end
 *   cross_entropy(logits, target)            target: class ids 0..C-1
 *   mse_loss(input, target) */
#include "fmd_lua.h"

static int l_linear(lua_State *L) {
    fmd_tensor *x = fmd_lua_check_tensor(L, 1), *w = fmd_lua_check_tensor(L, 2), *b = fmd_lua_opt_tensor(L, 3);
    fmd_lua_push_tensor(L, fmd_linear(x, w, b));
    return 1;
}

static int batch_norm_common(lua_State *L, int relu) {
    fmd_tensor *x = fmd_lua_check_tensor(L, 1);
    fmd_tensor *w = fmd_lua_opt_tensor(L, 2), *b = fmd_lua_opt_tensor(L, 3);
    fmd_tensor *rm = fmd_lua_opt_tensor(L, 4), *rv = fmd_lua_opt_tensor(L, 5);
    luaL_checktype(L, 6, LUA_TBOOLEAN);
    int training = lua_toboolean(L, 6);
    float momentum = (float)luaL_checknumber(L, 7), eps = (float)luaL_checknumber(L, 8);
    fmd_lua_push_tensor(L, (relu ? fmd_batch_norm_relu : fmd_batch_norm)(x, w, b, rm, rv, training, momentum, eps));
    return 1;
}

static int l_batch_norm(lua_State *L) { return batch_norm_common(L, 0); }
static int l_batch_norm_relu(lua_State *L) { return batch_norm_common(L, 1); }

static int l_dropout(lua_State *L) {
    fmd_tensor *x = fmd_lua_check_tensor(L, 1);
    float p = (float)luaL_checknumber(L, 2);
    luaL_checktype(L, 3, LUA_TBOOLEAN);
    fmd_lua_push_tensor(L, fmd_dropout(x, p, lua_toboolean(L, 3)));
    return 1;
}

static int softmax_common(lua_State *L, int log) {
    fmd_tensor *x = fmd_lua_check_tensor(L, 1);
    int dim = fmd_lua_check_dim(L, 2, x->ndim, luaL_checkinteger(L, 2));
    fmd_lua_push_tensor(L, log ? fmd_log_softmax(x, dim) : fmd_softmax(x, dim));
    return 1;
}
static int l_softmax(lua_State *L) { return softmax_common(L, 0); }
static int l_log_softmax(lua_State *L) { return softmax_common(L, 1); }

static int l_cross_entropy(lua_State *L) {
    fmd_tensor *x = fmd_lua_check_tensor(L, 1), *t = fmd_lua_check_tensor(L, 2);
    fmd_lua_push_tensor(L, fmd_cross_entropy(x, t));
    return 1;
}

static int l_mse_loss(lua_State *L) {
    fmd_tensor *x = fmd_lua_check_tensor(L, 1), *t = fmd_lua_check_tensor(L, 2);
    fmd_lua_push_tensor(L, fmd_mse_loss(x, t));
    return 1;
}

void fmd_lua_open_nn(lua_State *L) {
    static const luaL_Reg fns[] = {{"linear", l_linear},         {"batch_norm", l_batch_norm}, {"batch_norm_relu", l_batch_norm_relu},
                                   {"dropout", l_dropout},       {"softmax", l_softmax},
                                   {"log_softmax", l_log_softmax}, {"cross_entropy", l_cross_entropy},
                                   {"mse_loss", l_mse_loss},     {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
