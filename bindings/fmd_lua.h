/*
 * fmd_lua.h - helpers shared by the Lua bindings (bindings/ is the only C
 * that includes Lua headers).
 *
 * Conventions
 * - Tensors are full userdata holding one fmd_tensor* reference; __gc
 *   releases it. fmd_lua_push_tensor() takes over the caller's reference.
 * - Engine errors (NULL / -1 returns) become Lua errors through
 *   fmd_lua_error(), which raises fmd_error()'s message. Free temporaries
 *   before raising: lua_error longjmps.
 * - Dims and indices are 1-based in Lua, negative counts from the end;
 *   fmd_lua_check_dim() converts to 0-based.
 * - Each bindings/lua_<area>.c defines fmd_lua_open_<area>(L), which adds its
 *   functions to the table on top of the stack (the "fmd.core" module);
 *   bindings/core.c calls them all.
 */
#ifndef FMD_LUA_H
#define FMD_LUA_H

#include <lua.h>
#include <lauxlib.h>
#include "fmd.h"

#define FMD_TENSOR_MT "fmd.Tensor"

void fmd_lua_push_tensor(lua_State *L, fmd_tensor *t);   /* t == NULL raises fmd_error() */
fmd_tensor *fmd_lua_check_tensor(lua_State *L, int idx);
fmd_tensor *fmd_lua_opt_tensor(lua_State *L, int idx);   /* nil/none -> NULL */
int fmd_lua_is_tensor(lua_State *L, int idx);
int fmd_lua_error(lua_State *L);                         /* raises fmd_error() */
/* shape given as numbers from idx on, or as one table at idx; returns ndim */
int fmd_lua_check_shape(lua_State *L, int idx, int64_t *shape);
/* 1-based (negative from end) dim of a tensor with ndim dims -> 0-based */
int fmd_lua_check_dim(lua_State *L, int arg, int ndim, lua_Integer d);
/* tell the GC about C memory so loops making big tensors stay bounded */
void fmd_lua_gc_pressure(lua_State *L);

int luaopen_fmd_core(lua_State *L);
void fmd_lua_open_tensor(lua_State *L);
void fmd_lua_open_nn(lua_State *L);
void fmd_lua_open_conv(lua_State *L);
void fmd_lua_open_optim(lua_State *L);
void fmd_lua_open_sys(lua_State *L);
void fmd_lua_open_image(lua_State *L);
void fmd_lua_open_serialize(lua_State *L);
void fmd_lua_open_facegen(lua_State *L);
void fmd_lua_open_metrics(lua_State *L);
void fmd_lua_open_json(lua_State *L);
void fmd_lua_open_video(lua_State *L);
void fmd_lua_open_dist(lua_State *L);
/* data-parallel runs (lua_dist.c): MPI starts when an MPI launcher started
 * this process, or force (fmd --dist); -1 after printing why it cannot */
int fmd_lua_dist_autostart(int force);
int fmd_lua_dist_active(void);
/* one rank's uncaught error ends every rank's process ("rank R: msg" and
 * MPI_Abort); returns at once when fmd does not run as several ranks */
void fmd_lua_dist_fail(const char *msg);

#endif
