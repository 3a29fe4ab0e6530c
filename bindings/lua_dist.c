/*
 * lua_dist.c - fmd.core._dist, the C side of lib/fmd/dist.lua: data-parallel
 * work over MPI (Open MPI). The only file that sees MPI; the engine has none.
 * Built with MPI when CMake finds it (FMD_HAVE_MPI); without, the same
 * functions exist, a single process works as ever, and a process that an
 * MPI launcher started as one of several refuses to run (see autostart).
 *
 *   launched()                 -> true when an MPI launcher started this process
 *   init()                     -> rank, size (0-based rank; once, later calls return the same)
 *   initialized(), rank(), size(), available (built with MPI)
 *   allreduce(t, op)           in place on a contiguous tensor; op "sum", "mean", "max", "min"
 *   broadcast(t, root)         in place (root is 0-based)
 *   allreduce_list(ts, scale)  each t = sum over ranks of scale * t, packed into buckets
 *   allreduce_grads(ps, scale) the same on the .grad of every parameter with
 *                              requires_grad (a missing grad is created as zeros)
 *   broadcast_list(ts, root)   bucketed broadcast
 *   allreduce_numbers(a, op)   -> new array: a Lua array of numbers reduced (doubles)
 *   gather_numbers(a, root)    -> the arrays of all ranks concatenated in rank order on
 *                              root (nil elsewhere); root -1 = every rank. Integers stay integers.
 *   gather_bytes(s, root)      -> {s of rank 0, s of rank 1, ...}, same rule
 *   barrier()
 *   stats()                    -> {allreduce_seconds, allreduce_bytes, allreduce_calls, ...}
 *
 * Failure: MPI_COMM_WORLD returns errors (MPI_ERRORS_RETURN), which become
 * Lua errors naming the call; main.c turns an uncaught error into "rank R:
 * <error>" and MPI_Abort (fmd_lua_dist_fail), so one failing rank ends the
 * job. Every collective is watched: a thread started by init aborts the
 * job with a message when one has not completed within FMD_DIST_TIMEOUT
 * seconds (default 300), since that means another rank died, hangs or is
 * far behind. Buckets are FMD_DIST_BUCKET_MB (default 4) MB; a tensor
 * larger than that is reduced in place on its own.
 */
#include "fmd_lua.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef FMD_HAVE_MPI
#include <mpi.h>
#endif

/* what the launcher tells its processes: Open MPI's mpirun, PMIx launchers
 * (prterun, srun --mpi=pmix), PMI ones (MPICH's hydra, srun --mpi=pmi2);
 * -1 when it does not say how many */
static int launched_size(void) {
    static const char *size_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", NULL};
    for (int i = 0; size_vars[i]; i++) {
        const char *v = getenv(size_vars[i]);
        if (v && *v) return atoi(v);
    }
    if (getenv("PMIX_RANK") || getenv("PMI_RANK")) return -1;
    return 0;
}

#ifdef FMD_HAVE_MPI
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* seconds > 0 from the environment variable, else dflt; -1 when set but not such a number */
static double env_seconds(const char *name, double dflt) {
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || *end || !(x > 0) || x > 1e9) return -1;
    return x;
}
#endif

static struct {
    int inited, finalized, rank, size, thread_level;
    double timeout;          /* seconds a collective may take */
    int64_t bucket;          /* elements per bucket */
    float *buf;              /* the bucket */
    double seconds, bytes;   /* spent in / sent through allreduce */
    int64_t calls;
} D = {.size = 1};

/* -------------------------------------------------------------- watchdog */
#ifdef FMD_HAVE_MPI
static pthread_t wd_thread;
static pthread_mutex_t wd_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cv;
static const char *wd_op;     /* the collective under way, NULL when none */
static double wd_deadline;
static int wd_quit, wd_running;

static void *watchdog(void *arg) {
    (void)arg;
    pthread_mutex_lock(&wd_mu);
    while (!wd_quit) {
        if (!wd_op) { pthread_cond_wait(&wd_cv, &wd_mu); continue; }
        double t = wd_deadline;
        if (now_s() >= t) {
            fprintf(stderr, "fmd: rank %d: dist.%s did not complete within %g s (FMD_DIST_TIMEOUT): another rank "
                    "has died, hangs or is far behind; ending the job\n", D.rank, wd_op, D.timeout);
            fflush(stderr);
            /* MPI_Abort from this thread is allowed at MPI_THREAD_MULTIPLE;
               otherwise a death without MPI_Finalize makes mpirun end the job */
            if (D.thread_level == MPI_THREAD_MULTIPLE) MPI_Abort(MPI_COMM_WORLD, 1);
            _exit(1);
        }
        struct timespec ts = {(time_t)t, (long)((t - (double)(time_t)t) * 1e9)};
        pthread_cond_timedwait(&wd_cv, &wd_mu, &ts);
    }
    pthread_mutex_unlock(&wd_mu);
    return NULL;
}

static void wd_arm(const char *op) {
    pthread_mutex_lock(&wd_mu);
    wd_op = op;
    wd_deadline = now_s() + D.timeout;
    pthread_cond_signal(&wd_cv);
    pthread_mutex_unlock(&wd_mu);
}

static void wd_disarm(void) {
    pthread_mutex_lock(&wd_mu);
    wd_op = NULL;
    pthread_mutex_unlock(&wd_mu);
}

static int wd_start(void) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);   /* the clock of now_s */
    pthread_cond_init(&wd_cv, &a);
    pthread_condattr_destroy(&a);
    if (pthread_create(&wd_thread, NULL, watchdog, NULL) != 0) return -1;
    wd_running = 1;
    return 0;
}

static void wd_stop(void) {
    if (!wd_running) return;
    pthread_mutex_lock(&wd_mu);
    wd_quit = 1;
    pthread_cond_signal(&wd_cv);
    pthread_mutex_unlock(&wd_mu);
    pthread_join(wd_thread, NULL);
    wd_running = 0;
}

static void finalize(void) {
    if (!D.inited || D.finalized) return;
    wd_stop();
    D.finalized = 1;
    free(D.buf);
    D.buf = NULL;
    MPI_Finalize();
}
#endif

/* ------------------------------------------------------------ init, exit */
static char init_err[300];

/* 0 when fmd runs distributed (or alone) from here on, -1 with init_err */
static int dist_init(void) {
    if (D.inited) return 0;
#ifdef FMD_HAVE_MPI
    double timeout = env_seconds("FMD_DIST_TIMEOUT", 300), mb = env_seconds("FMD_DIST_BUCKET_MB", 4);
    if (timeout < 0) {
        snprintf(init_err, sizeof init_err, "FMD_DIST_TIMEOUT must be a number of seconds > 0, got '%s'",
                 getenv("FMD_DIST_TIMEOUT"));
        return -1;
    }
    if (mb < 0 || mb > 1024) {
        snprintf(init_err, sizeof init_err, "FMD_DIST_BUCKET_MB must be a number of megabytes in (0, 1024], got '%s'",
                 getenv("FMD_DIST_BUCKET_MB"));
        return -1;
    }
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
        snprintf(init_err, sizeof init_err, "MPI_Init_thread failed");
        return -1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &D.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &D.size);
    D.thread_level = provided;
    D.timeout = timeout;
    D.bucket = (int64_t)(mb * (1 << 20)) / (int64_t)sizeof(float);
    if (D.bucket < 1) D.bucket = 1;
    D.inited = 1;
    atexit(finalize);
    if (wd_start() != 0) {
        snprintf(init_err, sizeof init_err, "cannot start the collective watchdog thread");
        return -1;
    }
    return 0;
#else
    snprintf(init_err, sizeof init_err, "fmd was built without MPI (install libopenmpi-dev and openmpi-bin, "
             "then rebuild: scripts/bootstrap.sh)");
    return -1;
#endif
}

int fmd_lua_dist_autostart(int force) {
    int n = launched_size();
    if (!force && n == 0) return 0;
#ifndef FMD_HAVE_MPI
    if (!force && n == 1) return 0;   /* mpirun -np 1: alone anyway */
    dist_init();
    if (force) fprintf(stderr, "fmd: --dist: %s\n", init_err);
    else fprintf(stderr, "fmd: this process is one of %s started by an MPI launcher, but %s\n",
                 n > 0 ? "several" : "the processes", init_err);
    return -1;
#else
    if (dist_init() != 0) { fprintf(stderr, "fmd: %s\n", init_err); return -1; }
    return 0;
#endif
}

int fmd_lua_dist_active(void) { return D.inited && !D.finalized; }

void fmd_lua_dist_fail(const char *msg) {
#ifdef FMD_HAVE_MPI
    if (!fmd_lua_dist_active() || D.size < 2) return;
    fprintf(stderr, "fmd: rank %d: %s\n", D.rank, msg ? msg : "(error)");
    fflush(stderr);
    fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, 1);
#else
    (void)msg;
#endif
}

/* ---------------------------------------------------------- collectives */
static int l_launched(lua_State *L) { lua_pushboolean(L, launched_size() != 0); return 1; }

static int l_init(lua_State *L) {
    if (dist_init() != 0) return luaL_error(L, "dist.init: %s", init_err);
    lua_pushinteger(L, D.rank);
    lua_pushinteger(L, D.size);
    return 2;
}

static int l_initialized(lua_State *L) { lua_pushboolean(L, fmd_lua_dist_active()); return 1; }
static int l_rank(lua_State *L) { lua_pushinteger(L, D.rank); return 1; }
static int l_size(lua_State *L) { lua_pushinteger(L, D.size); return 1; }

/* the op at idx (default "sum"); "mean" is a sum divided by the size */
enum { OP_SUM, OP_MEAN, OP_MAX, OP_MIN };
static int check_op(lua_State *L, int idx, const char *fn) {
    static const char *names[] = {"sum", "mean", "max", "min", NULL};
    const char *op = luaL_optstring(L, idx, "sum");
    for (int i = 0; names[i]; i++)
        if (!strcmp(op, names[i])) return i;
    return luaL_error(L, "dist.%s: op must be \"sum\", \"mean\", \"max\" or \"min\", got \"%s\"", fn, op);
}

/* a 0-based rank at idx (default 0); -1 (every rank) when allow_all */
static int check_root(lua_State *L, int idx, const char *fn, int allow_all) {
    lua_Integer r = luaL_optinteger(L, idx, 0);
    if (r < (allow_all ? -1 : 0) || r >= D.size)
        luaL_error(L, "dist.%s: root must be a rank in 0..%d, got %d", fn, D.size - 1, (int)r);
    return (int)r;
}

#ifdef FMD_HAVE_MPI
/* MPI's result of the collective `fn` (already disarmed): a Lua error if it failed */
static void check(lua_State *L, const char *fn, int rc) {
    if (rc == MPI_SUCCESS) return;
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(rc, s, &n);
    luaL_error(L, "dist.%s: MPI error: %s", fn, s);
}

static MPI_Op mpi_op(int op) { return op == OP_MAX ? MPI_MAX : op == OP_MIN ? MPI_MIN : MPI_SUM; }

/* MPI counts are int: big arrays go in chunks */
#define CHUNK ((int64_t)1 << 30)

static int allreduce_floats(const char *fn, float *p, int64_t n, MPI_Op op) {
    double t0 = now_s();
    int rc = MPI_SUCCESS;
    wd_arm(fn);
    for (int64_t i = 0; i < n && rc == MPI_SUCCESS; i += CHUNK)
        rc = MPI_Allreduce(MPI_IN_PLACE, p + i, (int)(n - i < CHUNK ? n - i : CHUNK), MPI_FLOAT, op, MPI_COMM_WORLD);
    wd_disarm();
    D.seconds += now_s() - t0;
    D.bytes += (double)n * sizeof(float);
    D.calls++;
    return rc;
}

static int bcast_floats(const char *fn, float *p, int64_t n, int root) {
    int rc = MPI_SUCCESS;
    wd_arm(fn);
    for (int64_t i = 0; i < n && rc == MPI_SUCCESS; i += CHUNK)
        rc = MPI_Bcast(p + i, (int)(n - i < CHUNK ? n - i : CHUNK), MPI_FLOAT, root, MPI_COMM_WORLD);
    wd_disarm();
    return rc;
}

#endif


/* alone (not initialised) a collective is the identity: arguments are
 * still checked, so a mistake shows without mpirun too */
static int l_allreduce(lua_State *L) {
    fmd_tensor *t = fmd_lua_check_tensor(L, 1);
    int op = check_op(L, 2, "allreduce");
    if (!fmd_is_contiguous(t)) return luaL_error(L, "dist.allreduce: the tensor must be contiguous (use :contiguous())");
#ifdef FMD_HAVE_MPI
    if (fmd_lua_dist_active()) {
        float *p = fmd_data(t);
        int64_t n = fmd_numel(t);
        check(L, "allreduce", allreduce_floats("allreduce", p, n, mpi_op(op)));
        if (op == OP_MEAN)
            for (int64_t i = 0; i < n; i++) p[i] /= (float)D.size;
    }
#else
    (void)op;
#endif
    lua_settop(L, 1);
    return 1;
}

static int l_broadcast(lua_State *L) {
    fmd_tensor *t = fmd_lua_check_tensor(L, 1);
    int root = check_root(L, 2, "broadcast", 0);
    if (!fmd_is_contiguous(t)) return luaL_error(L, "dist.broadcast: the tensor must be contiguous (use :contiguous())");
#ifdef FMD_HAVE_MPI
    if (fmd_lua_dist_active()) check(L, "broadcast", bcast_floats("broadcast", fmd_data(t), fmd_numel(t), root));
#else
    (void)root;
#endif
    lua_settop(L, 1);
    return 1;
}

#ifdef FMD_HAVE_MPI
/* The tensors ts[0..n) through one collective per bucket: allreduce sum of
 * scale * t (bcast = 0) or broadcast from root. Tensors are packed in
 * order into the bucket until the next does not fit; one larger than the
 * bucket is sent on its own, in place. */
static void list_collective(lua_State *L, const char *fn, fmd_tensor **ts, int n, int bcast, float scale, int root) {
    if (!D.buf && !(D.buf = malloc((size_t)D.bucket * sizeof(float))))
        luaL_error(L, "dist.%s: out of memory for a %d MB bucket", fn, (int)(D.bucket * 4 >> 20));
    int64_t cap = D.bucket, fill = 0;
    int first = 0;
    for (int i = 0; i <= n; i++) {
        int64_t m = i < n ? fmd_numel(ts[i]) : 0;
        if (fill > 0 && (i == n || m > cap || fill + m > cap)) {
            int rc = bcast ? bcast_floats(fn, D.buf, fill, root) : allreduce_floats(fn, D.buf, fill, MPI_SUM);
            check(L, fn, rc);
            int64_t off = 0;
            for (int k = first; k < i; k++) {
                int64_t mk = fmd_numel(ts[k]);
                memcpy(fmd_data(ts[k]), D.buf + off, (size_t)mk * sizeof(float));
                off += mk;
            }
            fill = 0;
        }
        if (i == n) break;
        float *p = fmd_data(ts[i]);
        if (m > cap) {
            if (!bcast && scale != 1)
                for (int64_t j = 0; j < m; j++) p[j] *= scale;
            check(L, fn, bcast ? bcast_floats(fn, p, m, root) : allreduce_floats(fn, p, m, MPI_SUM));
            continue;
        }
        if (fill == 0) first = i;
        if (bcast || scale == 1) memcpy(D.buf + fill, p, (size_t)m * sizeof(float));
        else for (int64_t j = 0; j < m; j++) D.buf[fill + j] = p[j] * scale;
        fill += m;
    }
}

/* the tensors of the array at idx (or their .grad with grads = 1), checked */
static fmd_tensor **list_of(lua_State *L, int idx, const char *fn, int grads, int *n) {
    luaL_checktype(L, idx, LUA_TTABLE);
    int len = (int)luaL_len(L, idx);
    fmd_tensor **ts = lua_newuserdatauv(L, sizeof *ts * (size_t)(len + 1), 0);   /* freed by the GC */
    int k = 0;
    for (int i = 1; i <= len; i++) {
        lua_geti(L, idx, i);
        fmd_tensor *t = fmd_lua_check_tensor(L, -1);
        lua_pop(L, 1);
        if (grads) {
            if (!t->requires_grad) continue;
            /* a rank without a batch this step (or a parameter the forward
               pass did not use) takes part with zeros */
            if (!t->grad && !(t->grad = fmd_zeros(t->ndim, t->shape))) fmd_lua_error(L);
            t = t->grad;
        }
        if (!fmd_is_contiguous(t)) luaL_error(L, "dist.%s: tensor %d is not contiguous", fn, i);
        ts[k++] = t;
    }
    *n = k;
    return ts;
}
#endif

/* allreduce_list(ts, scale) or, grads = 1, allreduce_grads(params, scale) */
static int allreduce_tensors(lua_State *L, int grads) {
#ifdef FMD_HAVE_MPI
    if (!fmd_lua_dist_active()) return 0;
    const char *fn = grads ? "allreduce_grads" : "allreduce_list";
    int n;
    fmd_tensor **ts = list_of(L, 1, fn, grads, &n);
    list_collective(L, fn, ts, n, 0, (float)luaL_optnumber(L, 2, 1), 0);
#else
    (void)L, (void)grads;
#endif
    return 0;
}

static int l_allreduce_list(lua_State *L) { return allreduce_tensors(L, 0); }
static int l_allreduce_grads(lua_State *L) { return allreduce_tensors(L, 1); }

static int l_broadcast_list(lua_State *L) {
#ifdef FMD_HAVE_MPI
    if (!fmd_lua_dist_active()) return 0;
    int root = check_root(L, 2, "broadcast_list", 0);
    int n;
    fmd_tensor **ts = list_of(L, 1, "broadcast_list", 0, &n);
    list_collective(L, "broadcast_list", ts, n, 1, 1, root);
#endif
    return 0;
}

/* the numbers of the array at idx into a new userdata buffer (and, with
 * isint, flags saying which were integers) */
static double *numbers_of(lua_State *L, int idx, const char *fn, int64_t *n, unsigned char **isint) {
    luaL_checktype(L, idx, LUA_TTABLE);
    *n = (int64_t)luaL_len(L, idx);
    double *v = lua_newuserdatauv(L, sizeof(double) * (size_t)(*n + 1), 0);
    if (isint) *isint = lua_newuserdatauv(L, (size_t)*n + 1, 0);
    for (int64_t i = 0; i < *n; i++) {
        lua_geti(L, idx, i + 1);
        int ok;
        v[i] = lua_tonumberx(L, -1, &ok);
        if (!ok) luaL_error(L, "dist.%s: element %d is %s, expected a number", fn, (int)i + 1, luaL_typename(L, -1));
        if (isint) (*isint)[i] = (unsigned char)lua_isinteger(L, -1);
        lua_pop(L, 1);
    }
    return v;
}

static int l_allreduce_numbers(lua_State *L) {
    int64_t n;
    double *v = numbers_of(L, 1, "allreduce_numbers", &n, NULL);
    int op = check_op(L, 2, "allreduce_numbers");
#ifdef FMD_HAVE_MPI
    if (fmd_lua_dist_active()) {
        if (n > INT_MAX) return luaL_error(L, "dist.allreduce_numbers: too many numbers");
        wd_arm("allreduce_numbers");
        int rc = MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, mpi_op(op), MPI_COMM_WORLD);
        wd_disarm();
        check(L, "allreduce_numbers", rc);
        if (op == OP_MEAN)
            for (int64_t i = 0; i < n; i++) v[i] /= D.size;
    }
#else
    (void)op;
#endif
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        lua_pushnumber(L, v[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

#ifdef FMD_HAVE_MPI
/* counts of every rank (ints) and their displacements; total in *total */
static void exchange_counts(lua_State *L, const char *fn, int64_t n, int **counts, int **displs, int64_t *total) {
    long long mine = n;
    long long *all = lua_newuserdatauv(L, sizeof(long long) * (size_t)D.size, 0);
    wd_arm(fn);
    int rc = MPI_Allgather(&mine, 1, MPI_LONG_LONG, all, 1, MPI_LONG_LONG, MPI_COMM_WORLD);
    wd_disarm();
    check(L, fn, rc);
    *counts = lua_newuserdatauv(L, sizeof(int) * (size_t)D.size, 0);
    *displs = lua_newuserdatauv(L, sizeof(int) * (size_t)D.size, 0);
    int64_t t = 0;
    for (int r = 0; r < D.size; r++) {
        if (t + all[r] > INT_MAX) luaL_error(L, "dist.%s: more than %d elements in all", fn, INT_MAX);
        (*counts)[r] = (int)all[r];
        (*displs)[r] = (int)t;
        t += all[r];
    }
    *total = t;
}

/* (all)gatherv of n elements of type at p into out (size total) */
static int gatherv(const char *fn, const void *p, int n, void *out, int *counts, int *displs, MPI_Datatype type,
                   int root) {
    wd_arm(fn);
    int rc = root < 0 ? MPI_Allgatherv(p, n, type, out, counts, displs, type, MPI_COMM_WORLD)
                      : MPI_Gatherv(p, n, type, out, counts, displs, type, root, MPI_COMM_WORLD);
    wd_disarm();
    return rc;
}
#endif

static int l_gather_numbers(lua_State *L) {
    int64_t n;
    unsigned char *isint;
    double *v = numbers_of(L, 1, "gather_numbers", &n, &isint);
    int64_t total = n;
    double *out = v;
    unsigned char *outint = isint;
#ifdef FMD_HAVE_MPI
    if (fmd_lua_dist_active()) {
        int root = check_root(L, 2, "gather", 1);
        int *counts, *displs;
        exchange_counts(L, "gather", n, &counts, &displs, &total);
        out = lua_newuserdatauv(L, sizeof(double) * (size_t)(total + 1), 0);
        outint = lua_newuserdatauv(L, (size_t)total + 1, 0);
        check(L, "gather", gatherv("gather", v, (int)n, out, counts, displs, MPI_DOUBLE, root));
        check(L, "gather", gatherv("gather", isint, (int)n, outint, counts, displs, MPI_UNSIGNED_CHAR, root));
        if (root >= 0 && root != D.rank) { lua_pushnil(L); return 1; }
    }
#endif
    lua_createtable(L, (int)total, 0);
    for (int64_t i = 0; i < total; i++) {
        if (outint[i]) lua_pushinteger(L, (lua_Integer)out[i]);
        else lua_pushnumber(L, out[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_gather_bytes(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
#ifdef FMD_HAVE_MPI
    if (fmd_lua_dist_active()) {
        int root = check_root(L, 2, "gather_bytes", 1);
        if (len > INT_MAX) return luaL_error(L, "dist.gather_bytes: string too long");
        int *counts, *displs;
        int64_t total;
        exchange_counts(L, "gather_bytes", (int64_t)len, &counts, &displs, &total);
        char *out = lua_newuserdatauv(L, (size_t)total + 1, 0);
        check(L, "gather_bytes", gatherv("gather_bytes", s, (int)len, out, counts, displs, MPI_CHAR, root));
        if (root >= 0 && root != D.rank) { lua_pushnil(L); return 1; }
        lua_createtable(L, D.size, 0);
        for (int r = 0; r < D.size; r++) {
            lua_pushlstring(L, out + displs[r], (size_t)counts[r]);
            lua_rawseti(L, -2, r + 1);
        }
        return 1;
    }
#endif
    lua_createtable(L, 1, 0);
    lua_pushlstring(L, s, len);
    lua_rawseti(L, -2, 1);
    return 1;
}

static int l_barrier(lua_State *L) {
#ifdef FMD_HAVE_MPI
    if (fmd_lua_dist_active()) {
        wd_arm("barrier");
        int rc = MPI_Barrier(MPI_COMM_WORLD);
        wd_disarm();
        check(L, "barrier", rc);
    }
#endif
    (void)L;
    return 0;
}

static int l_stats(lua_State *L) {
    lua_createtable(L, 0, 6);
    lua_pushnumber(L, D.seconds);
    lua_setfield(L, -2, "allreduce_seconds");
    lua_pushnumber(L, D.bytes);
    lua_setfield(L, -2, "allreduce_bytes");
    lua_pushinteger(L, D.calls);
    lua_setfield(L, -2, "allreduce_calls");
    lua_pushinteger(L, D.bucket * (int64_t)sizeof(float));
    lua_setfield(L, -2, "bucket_bytes");
    lua_pushnumber(L, D.timeout);
    lua_setfield(L, -2, "timeout");
#ifdef FMD_HAVE_MPI
    if (fmd_lua_dist_active()) {
        char v[MPI_MAX_LIBRARY_VERSION_STRING];
        int n = 0;
        MPI_Get_library_version(v, &n);
        lua_pushstring(L, strtok(v, ",\n"));   /* "Open MPI v4.1.4" */
        lua_setfield(L, -2, "library");
    }
#endif
    return 1;
}

void fmd_lua_open_dist(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"launched", l_launched}, {"init", l_init}, {"initialized", l_initialized}, {"rank", l_rank},
        {"size", l_size}, {"allreduce", l_allreduce}, {"broadcast", l_broadcast},
        {"allreduce_list", l_allreduce_list}, {"allreduce_grads", l_allreduce_grads},
        {"broadcast_list", l_broadcast_list}, {"allreduce_numbers", l_allreduce_numbers},
        {"gather_numbers", l_gather_numbers}, {"gather_bytes", l_gather_bytes}, {"barrier", l_barrier},
        {"stats", l_stats}, {NULL, NULL}};
    lua_newtable(L);
    luaL_setfuncs(L, fns, 0);
#ifdef FMD_HAVE_MPI
    lua_pushboolean(L, 1);
#else
    lua_pushboolean(L, 0);
#endif
    lua_setfield(L, -2, "available");
    lua_setfield(L, -2, "_dist");
}
