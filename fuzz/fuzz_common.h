/*
 * fuzz_common.h - shared by the libFuzzer targets (fuzz/fuzz_*.c).
 *
 * The file readers take a path and accept only regular files, so an input
 * is written to a memfd (a regular file in memory) and read back through
 * /proc/self/fd/N. The Lua targets (JSON, CLI) feed libFuzzer line
 * coverage of the Lua code through its extra counters: the Lua VM is the
 * system library, not instrumented, so without them the CLI parser would
 * look like one edge.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* path of an in-memory regular file holding data[0..n) */
static inline const char *fuzz_file(const uint8_t *data, size_t n) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("fuzz", 0);
        if (fd < 0) { perror("memfd_create"); abort(); }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (n && pwrite(fd, data, n, 0) != (ssize_t)n)) { perror("memfd"); abort(); }
    return path;
}

#ifdef FUZZ_WITH_LUA
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
int luaopen_fmd_core(lua_State *L);

/* one counter per (line, previous line) pair of Lua code, hashed */
#define FUZZ_LUA_COUNTERS 65536
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t fuzz_lua_counters[FUZZ_LUA_COUNTERS];
static uintptr_t fuzz_prev_line;

static void fuzz_line_hook(lua_State *L, lua_Debug *ar) {
    lua_getinfo(L, "S", ar);
    uintptr_t here = (uintptr_t)ar->source * 31u + (uintptr_t)ar->currentline;
    uintptr_t h = (here ^ (fuzz_prev_line >> 1)) * 2654435761u;
    fuzz_prev_line = here;
    uint8_t *c = &fuzz_lua_counters[h % FUZZ_LUA_COUNTERS];
    if (*c != 255) (*c)++;
}

/* a Lua state with the standard libraries, fmd.core and lib/ on the path */
static lua_State *fuzz_lua_new(void) {
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", FMD_SOURCE_LUA_DIR, FMD_SOURCE_LUA_DIR);
    lua_setfield(L, -2, "path");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_fmd_core);
    lua_setfield(L, -2, "fmd.core");
    lua_pop(L, 2);
    lua_sethook(L, fuzz_line_hook, LUA_MASKLINE, 0);
    return L;
}

/* run chunk (which must return a function) once; the function is kept in
 * the registry under key and called per input with (input) */
static void fuzz_lua_load(lua_State *L, const char *key, const char *chunk) {
    if (luaL_loadstring(L, chunk) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        fprintf(stderr, "fuzz setup: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_setfield(L, LUA_REGISTRYINDEX, key);
}

/* calls the function with the input; a Lua error out of it is a finding
 * (the function itself pcalls what may fail legitimately) */
static void fuzz_lua_call(lua_State *L, const char *key, const uint8_t *data, size_t n) {
    lua_getfield(L, LUA_REGISTRYINDEX, key);
    lua_pushlstring(L, (const char *)data, n);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "finding: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, 0);
}
#endif
#endif
