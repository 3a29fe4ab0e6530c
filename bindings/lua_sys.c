/* lua_sys.c - the few OS services the Lua layer needs: terminal check,
 * monotonic clock, directories, atomic rename, lock files. */
#include "fmd_lua.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* a file-system error is about the user's path, not a place in the Lua
 * code: raised without luaL_error's "file:line:" position */
#define sys_error(L, ...) (lua_pushfstring(L, __VA_ARGS__), lua_error(L))

static int l_isatty(lua_State *L) { lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 1))); return 1; }

static int l_now(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec * 1e-9);
    return 1;
}

static int l_is_dir(lua_State *L) {
    struct stat st;
    lua_pushboolean(L, stat(luaL_checkstring(L, 1), &st) == 0 && S_ISDIR(st.st_mode));
    return 1;
}

static int l_is_file(lua_State *L) {
    struct stat st;
    lua_pushboolean(L, stat(luaL_checkstring(L, 1), &st) == 0 && S_ISREG(st.st_mode));
    return 1;
}

/* mkdir -p */
static int l_mkdir(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof buf) return sys_error(L, "mkdir: path too long: %s", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return sys_error(L, "mkdir: cannot create '%s': %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return sys_error(L, "mkdir: '%s' exists and is not a folder", path);
    return 0;
}

static int l_rename(lua_State *L) {
    const char *a = luaL_checkstring(L, 1), *b = luaL_checkstring(L, 2);
    if (rename(a, b) != 0) return sys_error(L, "rename '%s' -> '%s': %s", a, b, strerror(errno));
    return 0;
}

/* sorted (bytewise) names in a folder, without . and .. */
static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int l_listdir(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    if (!d) return sys_error(L, "cannot list folder '%s': %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n > 1) qsort(names, n, sizeof *names, cmp);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
        free(names[i]);
    }
    free(names);
    return 1;
}

/* lock_file(path) -> fd, previous text | nil, holder's text. An flock on
 * path, so the kernel releases it when the holder dies (kill -9 too); the
 * file holds the holder's pid. A file left by a dead holder is taken over
 * (its text returned so the caller can say so). The inode is checked after
 * locking: a holder that unlinked the file as we opened it is retried. */
static int l_lock_file(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    for (int attempt = 0; attempt < 100; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0) return sys_error(L, "cannot create the lock file %s: %s", path, strerror(errno));
        char text[256];
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            ssize_t n = pread(fd, text, sizeof text - 1, 0);
            close(fd);
            if (e != EWOULDBLOCK) return sys_error(L, "cannot lock %s: %s", path, strerror(e));
            lua_pushnil(L);
            lua_pushlstring(L, text, n > 0 ? (size_t)n : 0);
            return 2;
        }
        struct stat a, b;
        if (fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
            close(fd);   /* unlinked (released) meanwhile: lock the new file */
            continue;
        }
        ssize_t n = pread(fd, text, sizeof text - 1, 0);
        char pid[32];
        int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
        if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
            int e = errno;
            close(fd);
            return sys_error(L, "cannot write the lock file %s: %s", path, strerror(e));
        }
        lua_pushinteger(L, fd);
        lua_pushlstring(L, text, n > 0 ? (size_t)n : 0);
        return 2;
    }
    return sys_error(L, "cannot lock %s: it keeps being replaced", path);
}

/* unlock_file(fd, path): removes path, then releases the lock */
static int l_unlock_file(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    const char *path = luaL_checkstring(L, 2);
    unlink(path);
    close(fd);
    return 0;
}

void fmd_lua_open_sys(lua_State *L) {
    static const luaL_Reg fns[] = {{"isatty", l_isatty}, {"now", l_now}, {"is_dir", l_is_dir},
                                   {"is_file", l_is_file}, {"mkdir", l_mkdir}, {"rename", l_rename},
                                   {"listdir", l_listdir}, {"lock_file", l_lock_file},
                                   {"unlock_file", l_unlock_file}, {NULL, NULL}};
    lua_newtable(L);
    luaL_setfuncs(L, fns, 0);
    lua_setfield(L, -2, "sys");
}
