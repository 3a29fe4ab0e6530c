/* lua_video.c - video files (engine/video.c) for Lua. lib/fmd/video.lua
 * builds the user API (fmd.video.open, v:frames(), fmd.video.kind) on these. */
#include "fmd_lua.h"

#include <string.h>

#define FMD_VIDEO_MT "fmd.Video"

static fmd_video **check_video(lua_State *L, int idx) {
    fmd_video **p = luaL_checkudata(L, idx, FMD_VIDEO_MT);
    if (!*p) luaL_error(L, "video was closed");
    return p;
}

static void set_num(lua_State *L, const char *k, double v) { lua_pushnumber(L, v); lua_setfield(L, -2, k); }
static void set_int(lua_State *L, const char *k, int64_t v) { lua_pushinteger(L, v); lua_setfield(L, -2, k); }
static void set_str(lua_State *L, const char *k, const char *v) { lua_pushstring(L, v); lua_setfield(L, -2, k); }

/* video_open(path, mode, value, threads) -> handle, info: mode "fps"
 * (value = samples per second), "frames" (value = count) or "all";
 * threads 0 = fmd's thread count */
static int l_video_open(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    static const char *modes[] = {"fps", "frames", "all", NULL};
    fmd_video_opts o = {.mode = (fmd_video_mode)luaL_checkoption(L, 2, "fps", modes)};
    if (o.mode == FMD_VIDEO_FPS) o.fps = luaL_optnumber(L, 3, 1.0);
    if (o.mode == FMD_VIDEO_FRAMES) o.frames = luaL_checkinteger(L, 3);
    lua_Integer th = luaL_optinteger(L, 4, 0);
    luaL_argcheck(L, th >= 0 && th <= 256, 4, "threads must be 0..256");
    o.threads = (int)th;
    /* userdata first, so that a Lua error below cannot leak the video */
    fmd_video **p = lua_newuserdatauv(L, sizeof *p, 0);
    *p = NULL;
    luaL_setmetatable(L, FMD_VIDEO_MT);
    *p = fmd_video_open(path, &o);
    if (!*p) return fmd_lua_error(L);
    const fmd_video_info *in = fmd_video_get_info(*p);
    lua_createtable(L, 0, 9);
    set_int(L, "width", in->width);
    set_int(L, "height", in->height);
    set_num(L, "fps", in->fps);
    set_num(L, "duration", in->duration);
    set_int(L, "frames", in->frames);
    set_int(L, "samples", in->samples);
    set_int(L, "rotation", in->rotation);
    set_str(L, "format", in->format);
    set_str(L, "codec", in->codec);
    return 2;
}

/* video_next(handle) -> frame (3,H,W), index (1-based), time (s); nil at the end */
static int l_video_next(lua_State *L) {
    fmd_video **p = check_video(L, 1);
    fmd_tensor *t;
    int64_t index;
    double time;
    int r = fmd_video_next(*p, &t, &index, &time);
    if (r < 0) return fmd_lua_error(L);
    if (r == 0) {
        lua_pushnil(L);
        return 1;
    }
    fmd_lua_push_tensor(L, t);
    lua_pushinteger(L, index + 1);
    lua_pushnumber(L, time);
    return 3;
}

static int l_video_rewind(lua_State *L) {
    if (fmd_video_rewind(*check_video(L, 1))) return fmd_lua_error(L);
    return 0;
}

static int l_video_skipped(lua_State *L) {
    lua_pushinteger(L, fmd_video_skipped(*check_video(L, 1)));
    return 1;
}

/* video_close(handle): frees the decoder now (a closed handle raises on use) */
static int l_video_close(lua_State *L) {
    fmd_video **p = luaL_checkudata(L, 1, FMD_VIDEO_MT);
    fmd_video_close(*p);
    *p = NULL;
    return 0;
}

/* video_kind(path) -> "image" | "video", format; or nil, reason */
static int l_video_kind(lua_State *L) {
    const char *fmt;
    const char *kind = fmd_file_kind(luaL_checkstring(L, 1), &fmt);
    if (!kind) {
        lua_pushnil(L);
        lua_pushstring(L, fmd_error());
        return 2;
    }
    lua_pushstring(L, kind);
    lua_pushstring(L, fmt);
    return 2;
}

static int l_video_available(lua_State *L) {
    lua_pushboolean(L, fmd_video_available());
    return 1;
}

void fmd_lua_open_video(lua_State *L) {
    luaL_newmetatable(L, FMD_VIDEO_MT);
    lua_pushcfunction(L, l_video_close);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        {"video_open", l_video_open}, {"video_next", l_video_next}, {"video_rewind", l_video_rewind},
        {"video_skipped", l_video_skipped}, {"video_close", l_video_close}, {"video_kind", l_video_kind},
        {"video_available", l_video_available}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
