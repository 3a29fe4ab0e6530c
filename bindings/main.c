/* main.c - the fmd executable: runs scripts, -e chunks, and the REPL.
 *
 *   fmd script.lua a b c     run a script, arg = {[0]="script.lua", "a", "b", "c"}
 *   fmd train -m SimpleNet   a command: runs scripts/train.lua (installed: share/fmd/scripts)
 *   fmd -e 'code'            run a chunk
 *   fmd -i script.lua        run, then enter the REPL
 *   fmd                      the REPL (readline + history when on a terminal)
 *   fmd --version
 */
#include "fmd_lua.h"

#include <lualib.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef FMD_HAVE_READLINE
#include <readline/history.h>
#include <readline/readline.h>
#endif

static lua_State *globalL;
static const char *progname = "fmd";

/* --------------------------------------------------------------- Ctrl-C */
/* The signal handler only arms a hook; the hook raises the error from a
 * safe point in the Lua VM (C kernels finish their current call first). */
static void interrupt_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

static void on_sigint(int sig) {
    signal(sig, SIG_DFL);   /* a second Ctrl-C kills, as in lua.c */
    lua_sethook(globalL, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static int in_repl;   /* set while the REPL runs commands */

static int msghandler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    /* error(msg, 0) carries no "file:line:" position: that is a user's
       mistake reported in one line; a traceback only helps with bugs
       (FMD_TRACEBACK=1 shows it anyway) */
    const char *colon = strchr(msg, ':');
    int positioned = colon && colon[1] >= '0' && colon[1] <= '9';
    const char *tb = getenv("FMD_TRACEBACK");
    if (!(tb && *tb && strcmp(tb, "0") != 0)) tb = getenv("FMD_DEBUG");   /* a synonym */
    /* at the prompt, an error in the line just typed ("stdin:1: ...") is
       read in one line, as the line is on screen; the stack would only show
       the REPL's own frames */
    int want_tb = tb && *tb && strcmp(tb, "0") != 0;
    if (!want_tb && ((in_repl && strncmp(msg, "stdin:", 6) == 0) || strncmp(msg, "(command line):", 15) == 0))
        return 1;
    /* a library's error(msg, level) pointing at the REPL's call of the line
       (through tail calls): the position names fmd's code, not the user's */
    const char *body = strstr(msg, ": ");   /* after "file:line" */
    const char *rp = strstr(msg, "/lib/fmd/repl.lua:");
    if (!want_tb && in_repl && body && rp && rp < body) { lua_pushstring(L, body + 2); return 1; }
    if (!positioned && !(tb && *tb && strcmp(tb, "0") != 0)) {
        /* an engine error (raised by a C function other than error/assert)
           also says where in the user's code it happened */
        lua_Debug ar;
        if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sn", &ar) && ar.what[0] == 'C' &&
            !(ar.name && (strcmp(ar.name, "error") == 0 || strcmp(ar.name, "assert") == 0))) {
            for (int level = 2; lua_getstack(L, level, &ar); level++) {
                lua_getinfo(L, "Sl", &ar);
                if (ar.currentline > 0 && !strstr(ar.short_src, "/lib/fmd/")) {
                    lua_pushfstring(L, "%s (at %s:%d)", msg, ar.short_src, ar.currentline);
                    break;
                }
            }
        }
        return 1;
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int docall(lua_State *L, int narg, int nres) {
    int base = lua_gettop(L) - narg;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    globalL = L;
    signal(SIGINT, on_sigint);
    int status = lua_pcall(L, narg, nres, base);
    signal(SIGINT, SIG_DFL);
    lua_remove(L, base);
    return status;
}

static int report(lua_State *L, int status) {
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        fmd_lua_dist_fail(msg);   /* one of several ranks: "rank R: msg", and the whole job ends */
        fprintf(stderr, "%s: %s\n", progname, msg ? msg : "(error)");
        fflush(stderr);
        lua_pop(L, 1);
    }
    return status;
}

/* ------------------------------------------------------------ lib path */
static int is_dir(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISDIR(st.st_mode); }
static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_file(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISREG(st.st_mode); }

/* fmd's Lua modules and scripts: <exe>/../share/fmd/{lua,scripts} when
 * installed, else the source tree's lib/ and scripts/; for modules the
 * current folder comes first so a user's copy wins */
static char scripts_dir[4096 + 64] = FMD_SOURCE_SCRIPTS_DIR;

static void set_paths(lua_State *L) {
    char exe[4096], dir[4096 + 64];
    const char *lib = FMD_SOURCE_LUA_DIR;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        lua_getglobal(L, "package");
        lua_pushstring(L, exe);
        lua_setfield(L, -2, "fmd_exe");   /* for tests and scripts that start fmd */
        lua_pop(L, 1);
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(dir, sizeof dir, "%s/../%s", exe, FMD_INSTALL_LUA_REL);
            if (is_dir(dir)) {   /* installed copy */
                lib = dir;
                snprintf(scripts_dir, sizeof scripts_dir, "%s/../%s", exe, FMD_INSTALL_SCRIPTS_REL);
            }
        }
    }
    lua_getglobal(L, "package");
    lua_pushfstring(L, "./?.lua;./?/init.lua;%s/?.lua;%s/?/init.lua", lib, lib);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, lib);
    lua_setfield(L, -2, "fmd_lib");
    lua_pushstring(L, scripts_dir);
    lua_setfield(L, -2, "fmd_scripts");
    /* fmd.core is linked in */
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_fmd_core);
    lua_setfield(L, -2, "fmd.core");
    lua_pop(L, 2);
}

/* `fmd train ...` runs <scripts>/train.lua: a first argument that is a
 * plain word (no '/', no ".lua", not a file here) names a script. Returns
 * the path (static buffer), or NULL after printing the commands there are. */
static const char *command_script(const char *word) {
    static char path[sizeof scripts_dir + 300];
    size_t len = strlen(word);
    if (strchr(word, '/') || (len > 4 && !strcmp(word + len - 4, ".lua")) || is_file(word) || len > 200) return word;
    snprintf(path, sizeof path, "%s/%s.lua", scripts_dir, word);
    if (is_file(path)) return path;
    fprintf(stderr, "%s: '%s' is neither a file nor a command; commands (scripts in %s):", progname, word, scripts_dir);
    DIR *d = opendir(scripts_dir);
    if (d) {
        /* sorted, so the list reads the same on every machine */
        char *names[256];
        int k = 0;
        struct dirent *e;
        while ((e = readdir(d)) && k < 256) {
            size_t n = strlen(e->d_name);
            if (n > 4 && !strcmp(e->d_name + n - 4, ".lua")) names[k++] = strndup(e->d_name, n - 4);
        }
        closedir(d);
        qsort(names, (size_t)k, sizeof *names, cmp_names);
        for (int i = 0; i < k; i++) { fprintf(stderr, "%s %s", i ? "," : "", names[i]); free(names[i]); }
    }
    fputc('\n', stderr);
    return NULL;
}

static int load_fmd(lua_State *L) {
    lua_getglobal(L, "require");
    lua_pushstring(L, "fmd");
    int st = docall(L, 1, 1);
    if (st == LUA_OK) lua_setglobal(L, "fmd");
    if (st == LUA_OK && fmd_lua_dist_active()) {   /* one of several ranks: lib/fmd/dist.lua sets it up */
        lua_getglobal(L, "require");
        lua_pushstring(L, "fmd.dist");
        st = docall(L, 1, 0);
    }
    return report(L, st);
}

/* ------------------------------------------------------------------ REPL */
#define PROMPT "fmd> "
#define PROMPT2 "...> "

static char *history_file(void) {
    static char p[4096];
    const char *h = getenv("FMD_HISTORY");
    if (h) return (char *)h;
    const char *home = getenv("HOME");
    if (!home) return NULL;
    snprintf(p, sizeof p, "%s/.fmd_history", home);
    return p;
}

static int interactive_tty;

static char *read_line(const char *prompt) {
#ifdef FMD_HAVE_READLINE
    if (interactive_tty) return readline(prompt);
#endif
    static char buf[65536];
    if (interactive_tty || getenv("FMD_PROMPT")) { fputs(prompt, stdout); fflush(stdout); }
    if (!fgets(buf, sizeof buf, stdin)) return NULL;
    size_t n = strlen(buf);
    if (n && buf[n - 1] == '\n') buf[n - 1] = 0;
    return strdup(buf);
}

/* The REPL's logic is Lua (lib/fmd/repl.lua): compile a command, print its
 * results, complete a word. This file reads lines and runs what compiles. */
static int repl_ref = LUA_NOREF;

/* push repl[name] */
static void repl_field(lua_State *L, const char *name) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, repl_ref);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

/* compile the code at index 1: pushes a function and returns LUA_OK, or
 * pushes a message and returns LUA_ERRSYNTAX; *more says "not finished" */
static int repl_compile(lua_State *L, int *more) {
    repl_field(L, "compile");
    lua_pushvalue(L, 1);
    *more = 0;
    if (docall(L, 1, 3) != LUA_OK) return LUA_ERRRUN;   /* the message is on top */
    if (!lua_isnil(L, -3)) { lua_pop(L, 2); return LUA_OK; }
    *more = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_remove(L, -2);
    return LUA_ERRSYNTAX;
}

#ifdef FMD_HAVE_READLINE
/* Tab: repl.complete(line, start, end) gives the candidates for the word */
static char **completions;
static int ncompletions;

static char *completion_next(const char *text, int state) {
    (void)text;
    static int i;
    if (state == 0) i = 0;
    return i < ncompletions ? strdup(completions[i++]) : NULL;
}

static char **complete(const char *text, int start, int end) {
    lua_State *L = globalL;
    rl_attempted_completion_over = 1;   /* no fallback to readline's file names */
    rl_completion_append_character = '\0';
    rl_completion_suppress_quote = 1;   /* inside "...", the user's own quote closes it */
    for (int i = 0; i < ncompletions; i++) free(completions[i]);
    free(completions);
    completions = NULL;
    ncompletions = 0;
    int top = lua_gettop(L);
    repl_field(L, "complete");
    lua_pushstring(L, rl_line_buffer);
    lua_pushinteger(L, start + 1);
    lua_pushinteger(L, end);
    if (lua_pcall(L, 3, 1, 0) == LUA_OK && lua_istable(L, -1)) {
        int n = (int)luaL_len(L, -1);
        completions = malloc(sizeof(char *) * (n ? n : 1));
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            const char *c = lua_tostring(L, -1);
            if (c) completions[ncompletions++] = strdup(c);
            lua_pop(L, 1);
        }
    }
    lua_settop(L, top);
    return ncompletions ? rl_completion_matches(text, completion_next) : NULL;
}
#endif

static void repl(lua_State *L) {
    interactive_tty = isatty(0);
    in_repl = 1;
    lua_getglobal(L, "require");
    lua_pushstring(L, "fmd.repl");
    if (report(L, docall(L, 1, 1)) != LUA_OK) return;
    repl_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    repl_field(L, "start");
    if (report(L, docall(L, 0, 0)) != LUA_OK) return;
#ifdef FMD_HAVE_READLINE
    char *hist = history_file();
    if (interactive_tty && hist) read_history(hist);
    /* no '.', ':' or '/': a word is a name path (fmd.nn.Li, x:si) or a
       file name inside a string */
    rl_completer_word_break_characters = " \t\n\"'`@$><=;|&{(,+-*%^#~[]?";
    rl_basic_quote_characters = "";   /* else a word after `"` gets a second `"` appended */
    rl_attempted_completion_function = complete;
    globalL = L;
#endif
    if (interactive_tty) printf("fmd %s (Lua 5.4) - tensors and autograd; `fmd` is loaded. ?x or help(x) for help, Tab completes, Ctrl-D exits.\n", FMD_VERSION);
    for (;;) {
        lua_settop(L, 0);
        char *line = read_line(PROMPT);
        if (!line) break;
        if (!*line) { free(line); continue; }
        lua_pushstring(L, line);
        free(line);
        int more, st;
        /* a command may span several lines */
        while ((st = repl_compile(L, &more)) != LUA_OK && more) {
            char *next = read_line(PROMPT2);
            if (!next) break;
            lua_pop(L, 1);
            lua_pushfstring(L, "%s\n%s", lua_tostring(L, 1), next);
            lua_replace(L, 1);
            free(next);
        }
#ifdef FMD_HAVE_READLINE
        if (interactive_tty) add_history(lua_tostring(L, 1));
#endif
        if (st == LUA_OK) st = docall(L, 0, 0);
        report(L, st);
    }
#ifdef FMD_HAVE_READLINE
    if (interactive_tty && hist) { write_history(hist); history_truncate_file(hist, 1000); }
#endif
    if (interactive_tty) putchar('\n');
}

/* ------------------------------------------------------------------ main */
static void usage(void) {
    fprintf(stderr,
            "usage: %s [options] [script [args]]\n"
            "       %s [options] command [args]   (command: a script of fmd's scripts/, e.g. train, predict)\n"
            "  -e code     run code\n"
            "  -i          enter the REPL after running the script\n"
            "  --seed N    fmd.manual_seed(N) first (default: seeded from the clock)\n"
            "  --dist      start MPI even without mpirun (fmd.dist; under mpirun it starts anyway)\n"
            "  -v, --version  print the version\n"
            "  -h, --help  this help\n"
            "With no script, fmd starts the REPL (`fmd` is loaded as a global).\n",
            progname, progname);
}

static int run_script(lua_State *L, char **argv, int script, int argc) {
    /* arg table like the lua executable */
    lua_createtable(L, argc - script - 1, script + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
    const char *fname = argv[script];
    if (strcmp(fname, "-") == 0) fname = NULL;
    else if (!(fname = command_script(fname))) return LUA_ERRFILE;
    else {   /* arg[0] is the script's path */
        lua_getglobal(L, "arg");
        lua_pushstring(L, fname);
        lua_rawseti(L, -2, 0);
        lua_pop(L, 1);
    }
    int st = luaL_loadfile(L, fname);
    if (st == LUA_OK) {
        int n = argc - script - 1;
        for (int i = script + 1; i < argc; i++) lua_pushstring(L, argv[i]);
        st = docall(L, n, LUA_MULTRET);
    }
    return report(L, st);
}

static int pmain(lua_State *L) {
    int argc = (int)lua_tointeger(L, 1);
    char **argv = lua_touserdata(L, 2);
    int interactive = 0, ran = 0, script = 0;
    const char *seed = NULL;   /* --seed N: fmd.manual_seed(N) before anything runs */
    int dist = 0;              /* --dist: MPI without a launcher (docs/distributed.md) */
    luaL_openlibs(L);
    set_paths(L);
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || strcmp(a, "-") == 0) { script = i; break; }
        if (!strcmp(a, "--")) { if (i + 1 < argc) script = i + 1; break; }
        if (!strcmp(a, "-v") || !strcmp(a, "--version")) { printf("fmd %s (%s)\n", FMD_VERSION, LUA_RELEASE); ran = 1; continue; }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); lua_pushboolean(L, 1); return 1; }
        if (!strcmp(a, "-i")) { interactive = 1; continue; }
        if (!strcmp(a, "--dist")) { dist = 1; continue; }
        if (!strcmp(a, "--seed")) {
            char *end = NULL;
            if (++i < argc) strtoll(argv[i], &end, 10);
            if (i >= argc || !end || end == argv[i] || *end) {
                fprintf(stderr, "%s: --seed needs an integer (fmd --seed 0 ...)\n", progname);
                return 0;
            }
            seed = argv[i];
            continue;
        }
        if (!strcmp(a, "-e")) {
            if (++i >= argc) { fprintf(stderr, "%s: -e needs an argument\n", progname); usage(); return 0; }
            continue;   /* run after fmd is loaded, below */
        }
        fprintf(stderr, "%s: unknown option '%s'\n", progname, a);
        usage();
        return 0;
    }
    if (fmd_lua_dist_autostart(dist) != 0) return 0;
    if (load_fmd(L) != LUA_OK) return 0;
    if (seed) {
        lua_getglobal(L, "fmd");
        lua_getfield(L, -1, "manual_seed");
        lua_remove(L, -2);
        lua_pushinteger(L, (lua_Integer)strtoll(seed, NULL, 10));
        if (report(L, docall(L, 1, 0)) != LUA_OK) return 0;
    }
    for (int k = 1; k < (script ? script : argc); k++) {
        if (!strcmp(argv[k], "-e") && k + 1 < argc) {
            const char *code = argv[++k];
            int st = luaL_loadbuffer(L, code, strlen(code), "=(command line)");
            if (st == LUA_OK) st = docall(L, 0, 0);
            if (report(L, st) != LUA_OK) return 0;
            ran = 1;
        }
    }
    if (script) {
        if (run_script(L, argv, script, argc) != LUA_OK) return 0;
        ran = 1;
    }
    if (interactive || !ran) repl(L);
    lua_pushboolean(L, 1);
    return 1;
}

int main(int argc, char **argv) {
    /* Keep freed memory in the heap (no mmap for big blocks, no trimming):
     * a training step allocates the same activations every iteration, and
     * pages handed back to the kernel cost a fault each when taken again
     * (more than half of an XceptionBased step's system time). This is what
     * PyTorch gets from GLIBC_TUNABLES mmap_max=0, trim_threshold=huge. */
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, -1);
    lua_State *L = luaL_newstate();
    if (!L) { fprintf(stderr, "%s: cannot create Lua state: not enough memory\n", progname); return 1; }
    lua_pushcfunction(L, pmain);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    int st = lua_pcall(L, 2, 1, 0);
    int ok = st == LUA_OK && lua_toboolean(L, -1);
    if (st != LUA_OK) report(L, st);
    lua_close(L);
    return ok ? 0 : 1;
}
