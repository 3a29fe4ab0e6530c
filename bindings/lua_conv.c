/* lua_conv.c - raw bindings of convolution, pooling and padding
 * (engine/nn_conv*.c, engine/nn_pool.c, engine/nn_pad.c). Every size is a
 * plain integer here; the friendly API (numbers or pairs, defaults) is
 * fmd.nn.functional, written on top of
 * these exact names:
 *   conv2d(x, w, b|nil, sh, sw, ph, pw, dh, dw, groups)
 *   conv2d_fused(x, w, b|nil, sh, sw, ph, pw, dh, dw, groups, relu_in,
 *                bn_weight|nil, bn_bias|nil, running_mean|nil, running_var|nil, eps, relu)
 *   sepconv2d_fused(x, wd, bd|nil, sh, sw, ph, pw, dh, dw, groups, relu_in, wp, bp|nil,
 *                   bn_weight|nil, bn_bias|nil, running_mean|nil, running_var|nil, eps, relu)
 *   sepconv2d(x, wd, wp, sh, sw, ph, pw, dh, dw, groups)
 *   max_pool2d(x, kh, kw, sh, sw, ph, pw)
 *   avg_pool2d(x, kh, kw, sh, sw, ph, pw)
 *   adaptive_avg_pool2d(x, oh, ow)
 *   pad2d(x, left, right, top, bottom, value) */
#include "fmd_lua.h"

#include <limits.h>

/* an integer argument that fits an int (the engine checks the meaning) */
static int check_int(lua_State *L, int arg) {
    lua_Integer v = luaL_checkinteger(L, arg);
    if (v < INT_MIN || v > INT_MAX) luaL_argerror(L, arg, "integer out of range");
    return (int)v;
}

/* conv2d's leading arguments at 1-10: x, w, b|nil, sh, sw, ph, pw, dh, dw, groups */
typedef struct { fmd_tensor *x, *w, *b; int a[7]; } conv_args;

static conv_args check_conv_args(lua_State *L) {
    conv_args c = {fmd_lua_check_tensor(L, 1), fmd_lua_check_tensor(L, 2), fmd_lua_opt_tensor(L, 3), {0}};
    for (int i = 0; i < 7; i++) c.a[i] = check_int(L, 4 + i);
    return c;
}

/* the fused calls' trailing epilogue from at: bn_weight|nil, bn_bias|nil,
 * running_mean|nil, running_var|nil, eps, relu */
typedef struct { fmd_tensor *bw, *bb, *rm, *rv; float eps; int relu; } epilogue_args;

static epilogue_args check_epilogue_args(lua_State *L, int at) {
    epilogue_args e = {fmd_lua_opt_tensor(L, at), fmd_lua_opt_tensor(L, at + 1), fmd_lua_opt_tensor(L, at + 2),
                       fmd_lua_opt_tensor(L, at + 3), (float)luaL_optnumber(L, at + 4, 1e-5),
                       lua_toboolean(L, at + 5)};
    return e;
}

static int l_conv2d(lua_State *L) {
    conv_args c = check_conv_args(L);
    const int *a = c.a;
    fmd_lua_push_tensor(L, fmd_conv2d(c.x, c.w, c.b, a[0], a[1], a[2], a[3], a[4], a[5], a[6]));
    return 1;
}

static int l_conv2d_fused(lua_State *L) {
    conv_args c = check_conv_args(L);
    int relu_in = lua_toboolean(L, 11);
    epilogue_args e = check_epilogue_args(L, 12);
    const int *a = c.a;
    fmd_lua_push_tensor(L, fmd_conv2d_fused(c.x, c.w, c.b, a[0], a[1], a[2], a[3], a[4], a[5], a[6], relu_in, e.bw,
                                            e.bb, e.rm, e.rv, e.eps, e.relu));
    return 1;
}

/* c.w, c.b are the depthwise conv's */
static int l_sepconv2d_fused(lua_State *L) {
    conv_args c = check_conv_args(L);
    int relu_in = lua_toboolean(L, 11);
    fmd_tensor *wp = fmd_lua_check_tensor(L, 12), *bp = fmd_lua_opt_tensor(L, 13);
    epilogue_args e = check_epilogue_args(L, 14);
    const int *a = c.a;
    fmd_lua_push_tensor(L, fmd_sepconv2d_fused(c.x, c.w, c.b, a[0], a[1], a[2], a[3], a[4], a[5], a[6], relu_in, wp,
                                               bp, e.bw, e.bb, e.rm, e.rv, e.eps, e.relu));
    return 1;
}

static int l_sepconv2d(lua_State *L) {
    fmd_tensor *x = fmd_lua_check_tensor(L, 1), *wd = fmd_lua_check_tensor(L, 2), *wp = fmd_lua_check_tensor(L, 3);
    int a[7];
    for (int i = 0; i < 7; i++) a[i] = check_int(L, 4 + i);
    fmd_lua_push_tensor(L, fmd_sepconv2d(x, wd, wp, a[0], a[1], a[2], a[3], a[4], a[5], a[6]));
    return 1;
}

static int l_max_pool2d(lua_State *L) {
    fmd_tensor *x = fmd_lua_check_tensor(L, 1);
    int a[6];
    for (int i = 0; i < 6; i++) a[i] = check_int(L, 2 + i);
    fmd_lua_push_tensor(L, fmd_max_pool2d(x, a[0], a[1], a[2], a[3], a[4], a[5]));
    return 1;
}

static int l_avg_pool2d(lua_State *L) {
    fmd_tensor *x = fmd_lua_check_tensor(L, 1);
    int a[6];
    for (int i = 0; i < 6; i++) a[i] = check_int(L, 2 + i);
    fmd_lua_push_tensor(L, fmd_avg_pool2d(x, a[0], a[1], a[2], a[3], a[4], a[5]));
    return 1;
}

static int l_adaptive_avg_pool2d(lua_State *L) {
    fmd_tensor *x = fmd_lua_check_tensor(L, 1);
    int oh = check_int(L, 2), ow = check_int(L, 3);
    fmd_lua_push_tensor(L, fmd_adaptive_avg_pool2d(x, oh, ow));
    return 1;
}

static int l_pad2d(lua_State *L) {
    fmd_tensor *x = fmd_lua_check_tensor(L, 1);
    int a[4];
    for (int i = 0; i < 4; i++) a[i] = check_int(L, 2 + i);
    fmd_lua_push_tensor(L, fmd_pad2d(x, a[0], a[1], a[2], a[3], (float)luaL_checknumber(L, 6)));
    return 1;
}

void fmd_lua_open_conv(lua_State *L) {
    static const luaL_Reg fns[] = {{"conv2d", l_conv2d}, {"conv2d_fused", l_conv2d_fused}, {"sepconv2d_fused", l_sepconv2d_fused},
                                   {"sepconv2d", l_sepconv2d}, {"max_pool2d", l_max_pool2d},
                                   {"avg_pool2d", l_avg_pool2d}, {"adaptive_avg_pool2d", l_adaptive_avg_pool2d},
                                   {"pad2d", l_pad2d},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
