/*
 * pth.c - reads PyTorch checkpoints (torch.save) without Python and without
 * running any code from the file.
 *
 * Two container formats:
 *  - zip (torch >= 1.6): <archive>/data.pkl is the pickle, tensor bytes live
 *    in <archive>/data/<key> (entries stored; deflate also accepted).
 *  - legacy (older torch.save, also _use_new_zipfile_serialization=False):
 *    five pickles back to back - magic number, protocol version (1001),
 *    sys_info, the object, the sorted list of storage keys - then for each
 *    key a u64 little-endian element count followed by the raw storage bytes.
 * In both, tensors are pickled as torch._utils._rebuild_tensor_v2(storage,
 * offset, size, stride, ...) whose storage argument is a persistent id
 * ('storage', torch.FloatStorage, key, location, numel[, view]).
 *
 * The unpickler is restricted: it builds plain values (None, bool, int,
 * float, str, bytes, tuple, list, dict) and understands a short allow-list
 * of globals (OrderedDict, the tensor rebuild functions, storage types and a
 * few harmless value types that are kept as opaque placeholders). Any other
 * global - os.system, a user class, a pickled nn.Module - is refused by name.
 * Nothing is ever called; "calls" of allowed globals are interpreted here.
 */
#include "fmd_impl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* --------------------------------------------------------------- dtypes */
typedef enum { PT_F32, PT_F16, PT_BF16, PT_F64, PT_I64, PT_I32, PT_I16, PT_I8, PT_U8, PT_BOOL, PT_N } pt_dtype;
static const struct { const char *storage; int size; } pt_types[PT_N] = {
    {"FloatStorage", 4}, {"HalfStorage", 2}, {"BFloat16Storage", 2}, {"DoubleStorage", 8},
    {"LongStorage", 8}, {"IntStorage", 4}, {"ShortStorage", 2}, {"CharStorage", 1},
    {"ByteStorage", 1}, {"BoolStorage", 1},
};

/* count elements at src[start + i*stride] (element indices) -> floats.
 * Checkpoints are little-endian (sys_info / byteorder are checked), as is
 * every machine fmd targets, so values are read in host order. */
static void pt_convert(pt_dtype dt, const uint8_t *src, int64_t start, int64_t count, int64_t stride, float *dst) {
    const int es = pt_types[dt].size;
    const uint8_t *p = src + start * es;
    const int64_t step = stride * es;
    switch (dt) {
    case PT_F32:
        if (stride == 1) { memcpy(dst, p, (size_t)count * 4); break; }
        for (int64_t i = 0; i < count; i++, p += step) memcpy(&dst[i], p, 4);
        break;
    case PT_F16:
        for (int64_t i = 0; i < count; i++, p += step) { uint16_t v; memcpy(&v, p, 2); dst[i] = fmd_half_to_float(v); }
        break;
    case PT_BF16:
        for (int64_t i = 0; i < count; i++, p += step) { uint16_t v; memcpy(&v, p, 2); dst[i] = fmd_bf16_to_float(v); }
        break;
    case PT_F64:
        for (int64_t i = 0; i < count; i++, p += step) { double v; memcpy(&v, p, 8); dst[i] = (float)v; }
        break;
    case PT_I64:
        for (int64_t i = 0; i < count; i++, p += step) { int64_t v; memcpy(&v, p, 8); dst[i] = (float)v; }
        break;
    case PT_I32:
        for (int64_t i = 0; i < count; i++, p += step) { int32_t v; memcpy(&v, p, 4); dst[i] = (float)v; }
        break;
    case PT_I16:
        for (int64_t i = 0; i < count; i++, p += step) { int16_t v; memcpy(&v, p, 2); dst[i] = (float)v; }
        break;
    case PT_I8:
        for (int64_t i = 0; i < count; i++, p += step) dst[i] = (float)(int8_t)*p;
        break;
    case PT_U8:
        for (int64_t i = 0; i < count; i++, p += step) dst[i] = (float)*p;
        break;
    case PT_BOOL:
        for (int64_t i = 0; i < count; i++, p += step) dst[i] = *p ? 1.0f : 0.0f;
        break;
    default: break;
    }
}

/* --------------------------------------------------------------- values */
typedef enum {
    PV_NONE, PV_BOOL, PV_INT, PV_BIGINT, PV_FLOAT, PV_STR, PV_BYTES, PV_TUPLE, PV_LIST,
    PV_DICT, PV_GLOBAL, PV_STORAGE, PV_TENSOR, PV_OPAQUE
} pv_kind;

/* allowed globals */
typedef enum {
    G_ORDERED_DICT, G_REBUILD_TENSOR, G_REBUILD_TENSOR_V2, G_REBUILD_PARAMETER,
    G_REBUILD_FROM_TYPE, G_TENSOR_TYPE, G_STORAGE_TYPE, G_TORCH_SIZE, G_OPAQUE_FN
} gkind;

typedef struct pstore {
    char *key;
    pt_dtype dtype;
    int64_t numel;              /* elements */
    struct pstore *root;        /* legacy storage views: the storage they slice */
    int64_t view_offset;        /* elements into root */
    const uint8_t *data;        /* root storages: the bytes, once located */
    int located;
} pstore;

typedef struct pv pv;
struct pv {
    pv_kind kind;
    pv *next_alloc;
    int64_t i;                  /* int, bool; global: gkind */
    double f;
    pt_dtype dtype;             /* global storage type */
    char *s;                    /* str/bytes/bigint bytes; global: "module.name" */
    size_t len;
    pv **items;                 /* tuple/list items; dict: key, value, key, value... */
    int n, cap;
    pstore *st;                 /* storage / tensor */
    int64_t offset;
    int ndim;
    int64_t shape[FMD_MAX_DIMS], stride[FMD_MAX_DIMS];
};

typedef struct zentry {
    char *name;
    int method;
    uint64_t csize, usize, data_off;
    uint32_t crc;
} zentry;

typedef struct pctx {
    const char *path;
    uint8_t *file;              /* whole file */
    size_t fsize;
    /* current pickle */
    const uint8_t *buf;
    size_t len, pos, base;      /* base: offset of buf in the file, for messages */
    pv **stack;
    int sp, scap;
    int *marks;
    int nmarks, mcap;
    pv **memo;
    int64_t memocap, memolen;   /* memolen: entries set, the next MEMOIZE index */
    pv *allocs;
    pstore **stores;
    int nstores, stcap;
    zentry *zents;
    int nz;
    uint8_t **bufs;             /* inflated zip entries */
    int depth;                  /* nested rebuild calls */
    long visits;                /* nodes walked by flatten */
    uint64_t data_bytes;        /* storage bytes read from the file (inflated) */
    uint64_t out_bytes;         /* float bytes of the tensors made so far */
    int nbufs;
} pctx;

static int perr(pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(pctx *c, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fmd_fail("pth: %s: %s", c->path, msg);
}

static pv *pv_new(pctx *c, pv_kind k) {
    pv *v = calloc(1, sizeof *v);
    if (!v) { perr(c, "out of memory"); return NULL; }
    v->kind = k;
    v->next_alloc = c->allocs;
    c->allocs = v;
    return v;
}

static int pv_append(pctx *c, pv *list, pv *item) {
    if (list->n == list->cap) {
        int cap = list->cap ? list->cap * 2 : 4;
        pv **it = realloc(list->items, (size_t)cap * sizeof *it);
        if (!it) return perr(c, "out of memory");
        list->items = it;
        list->cap = cap;
    }
    list->items[list->n++] = item;
    return 0;
}

static pv *pv_str(pctx *c, pv_kind k, const uint8_t *s, size_t n) {
    pv *v = pv_new(c, k);
    if (!v) return NULL;
    v->s = malloc(n + 1);
    if (!v->s) { perr(c, "out of memory"); return NULL; }
    memcpy(v->s, s, n);
    v->s[n] = 0;
    v->len = n;
    return v;
}

static int is_str(const pv *v, const char *s) {
    return v && (v->kind == PV_STR || v->kind == PV_BYTES) && strcmp(v->s, s) == 0;
}

/* ------------------------------------------------------------- storages */
static pstore *store_find(pctx *c, const char *key) {
    for (int i = 0; i < c->nstores; i++)
        if (strcmp(c->stores[i]->key, key) == 0) return c->stores[i];
    return NULL;
}

static pstore *store_add(pctx *c, const char *key, pt_dtype dt, int64_t numel) {
    if (c->nstores == c->stcap) {
        int cap = c->stcap ? c->stcap * 2 : 16;
        pstore **s = realloc(c->stores, (size_t)cap * sizeof *s);
        if (!s) { perr(c, "out of memory"); return NULL; }
        c->stores = s;
        c->stcap = cap;
    }
    pstore *s = calloc(1, sizeof *s);
    char *k = s ? malloc(strlen(key) + 1) : NULL;
    if (!k) { free(s); perr(c, "out of memory"); return NULL; }
    strcpy(k, key);
    s->key = k;
    s->dtype = dt;
    s->numel = numel;
    c->stores[c->nstores++] = s;
    return s;
}

/* key of a persistent id: str, or int in some old files */
static int key_str(pctx *c, const pv *v, char *buf, size_t n) {
    if (v && (v->kind == PV_STR || v->kind == PV_BYTES)) snprintf(buf, n, "%s", v->s);
    else if (v && v->kind == PV_INT) snprintf(buf, n, "%lld", (long long)v->i);
    else return perr(c, "storage key is neither a string nor an integer");
    return 0;
}

/* persistent_load: ('storage', storage_type, key, location, numel[, view]) */
static pv *persistent_load(pctx *c, pv *pid) {
    if (!pid || pid->kind != PV_TUPLE || pid->n < 1)
        return perr(c, "persistent id is not a tuple"), NULL;
    if (is_str(pid->items[0], "module"))
        return perr(c, "the file holds a whole pickled nn.Module (torch.save(model)); fmd reads "
                       "only state dicts: save model.state_dict() instead"), NULL;
    if (!is_str(pid->items[0], "storage") || pid->n < 5)
        return perr(c, "unknown persistent id (expected ('storage', type, key, location, size))"), NULL;
    pv *ty = pid->items[1], *num = pid->items[4];
    if (!ty || ty->kind != PV_GLOBAL || ty->i != G_STORAGE_TYPE)
        return perr(c, "persistent id: storage type is not a torch.*Storage class"), NULL;
    if (!num || num->kind != PV_INT || num->i < 0)
        return perr(c, "persistent id: storage size is not a non-negative integer"), NULL;
    if (num->i > FMD_MAX_NUMEL)   /* so numel * element size cannot wrap */
        return perr(c, "persistent id: storage of %lld elements is beyond fmd's limit of 2^53",
                    (long long)num->i), NULL;
    char key[128];
    if (key_str(c, pid->items[2], key, sizeof key)) return NULL;
    pstore *s = store_find(c, key);
    if (s) {
        if (s->dtype != ty->dtype || s->numel != num->i)
            return perr(c, "storage '%s' is referenced with two different types or sizes", key), NULL;
    } else if (!(s = store_add(c, key, ty->dtype, num->i))) {
        return NULL;
    }
    pv *view = pid->n >= 6 ? pid->items[5] : NULL;
    if (view && view->kind != PV_NONE) {   /* legacy view: (view_key, offset, size) */
        if (view->kind != PV_TUPLE || view->n != 3 || view->items[1]->kind != PV_INT ||
            view->items[2]->kind != PV_INT)
            return perr(c, "storage '%s': malformed view metadata", key), NULL;
        int64_t off = view->items[1]->i, vn = view->items[2]->i;
        if (off < 0 || vn < 0 || off > s->numel || vn > s->numel - off)
            return perr(c, "storage view [%lld, +%lld) is outside storage '%s' of %lld elements",
                        (long long)off, (long long)vn, key, (long long)s->numel), NULL;
        char vkey[128];
        if (key_str(c, view->items[0], vkey, sizeof vkey)) return NULL;
        pstore *vs = store_find(c, vkey);
        if (!vs) {
            if (!(vs = store_add(c, vkey, ty->dtype, vn))) return NULL;
            vs->root = s;
            vs->view_offset = off;
        }
        s = vs;
    }
    pv *v = pv_new(c, PV_STORAGE);
    if (v) v->st = s;
    return v;
}

/* -------------------------------------------------------------- globals */
static pv *make_global(pctx *c, const char *mod, const char *name) {
    int g = -1;
    pt_dtype dt = PT_F32;
    if (!strcmp(mod, "collections") && !strcmp(name, "OrderedDict")) g = G_ORDERED_DICT;
    else if (!strcmp(mod, "torch._utils") && !strcmp(name, "_rebuild_tensor")) g = G_REBUILD_TENSOR;
    else if (!strcmp(mod, "torch._utils") && !strcmp(name, "_rebuild_tensor_v2")) g = G_REBUILD_TENSOR_V2;
    else if (!strcmp(mod, "torch._utils") && (!strcmp(name, "_rebuild_parameter") ||
                                              !strcmp(name, "_rebuild_parameter_with_state")))
        g = G_REBUILD_PARAMETER;
    else if (!strcmp(mod, "torch._tensor") && !strcmp(name, "_rebuild_from_type_v2")) g = G_REBUILD_FROM_TYPE;
    else if ((!strcmp(mod, "torch") && !strcmp(name, "Tensor")) ||
             (!strcmp(mod, "torch.nn.parameter") && !strcmp(name, "Parameter")))
        g = G_TENSOR_TYPE;
    else if (!strcmp(mod, "torch") && !strcmp(name, "Size")) g = G_TORCH_SIZE;
    else if ((!strcmp(mod, "torch") || !strcmp(mod, "torch.cuda")) && strstr(name, "Storage")) {
        /* GPU-saved files name torch.cuda.FloatStorage; the bytes are the same */
        for (int k = 0; k < PT_N; k++)
            if (!strcmp(name, pt_types[k].storage)) { g = G_STORAGE_TYPE; dt = (pt_dtype)k; }
        if (!strcmp(name, "UntypedStorage")) { g = G_STORAGE_TYPE; dt = PT_U8; }
        if (g < 0)
            return perr(c, "storage type %s.%s is not supported (fmd reads Float, Half, BFloat16, Double, "
                           "Long, Int, Short, Char, Byte and Bool storages)", mod, name), NULL;
    }
    /* value types that may sit beside a state dict (a numpy best-accuracy,
     * a set): kept as inert placeholders, never constructed */
    else if ((!strcmp(mod, "numpy.core.multiarray") && !strcmp(name, "scalar")) ||
             (!strcmp(mod, "numpy") && !strcmp(name, "dtype")) ||
             (!strcmp(mod, "_codecs") && !strcmp(name, "encode")) ||
             ((!strcmp(mod, "builtins") || !strcmp(mod, "__builtin__")) &&
              (!strcmp(name, "set") || !strcmp(name, "frozenset"))))
        g = G_OPAQUE_FN;
    if (g < 0) {
        int model = !strncmp(mod, "torch.nn.modules", 16) || !strncmp(mod, "__torch__", 9) ||
                    !strcmp(mod, "__main__");
        return perr(c, "refusing global '%s.%s': fmd reads only tensors and plain containers from "
                       "checkpoints and never runs code from them%s", mod, name,
                    model ? " (a pickled model or custom object? save model.state_dict() instead)" : ""),
               NULL;
    }
    size_t ml = strlen(mod), nl = strlen(name);
    pv *v = pv_new(c, PV_GLOBAL);
    if (!v || !(v->s = malloc(ml + nl + 2))) return v ? (perr(c, "out of memory"), NULL) : NULL;
    memcpy(v->s, mod, ml);
    v->s[ml] = '.';
    memcpy(v->s + ml + 1, name, nl + 1);
    v->i = g;
    v->dtype = dt;
    return v;
}

static int int_tuple(const pv *t, int64_t *out, int max) {
    if (!t || (t->kind != PV_TUPLE && t->kind != PV_LIST) || t->n > max) return -1;
    for (int i = 0; i < t->n; i++) {
        if (t->items[i]->kind != PV_INT) return -1;
        out[i] = t->items[i]->i;
    }
    return t->n;
}

static pv *call_global(pctx *c, pv *fn, pv *args);

/* "calls" of allowed globals, interpreted: nothing from the file runs */
static pv *call_global(pctx *c, pv *fn, pv *args) {
    if (!fn || fn->kind != PV_GLOBAL) return perr(c, "REDUCE on something that is not an allowed global"), NULL;
    if (!args || args->kind != PV_TUPLE) return perr(c, "REDUCE of %s without an argument tuple", fn->s), NULL;
    switch ((gkind)fn->i) {
    case G_ORDERED_DICT: {
        pv *d = pv_new(c, PV_DICT);
        if (!d) return NULL;
        if (args->n >= 1 && args->items[0]->kind == PV_LIST) {   /* Python 2: OrderedDict([[k, v], ...]) */
            pv *l = args->items[0];
            for (int i = 0; i < l->n; i++) {
                pv *p = l->items[i];
                if ((p->kind != PV_LIST && p->kind != PV_TUPLE) || p->n != 2)
                    return perr(c, "OrderedDict argument is not a list of pairs"), NULL;
                if (pv_append(c, d, p->items[0]) || pv_append(c, d, p->items[1])) return NULL;
            }
        }
        return d;
    }
    case G_REBUILD_TENSOR:
    case G_REBUILD_TENSOR_V2: {
        if (args->n < 4 || args->items[0]->kind != PV_STORAGE || args->items[1]->kind != PV_INT)
            return perr(c, "%s: expected (storage, offset, size, stride, ...)", fn->s), NULL;
        pv *t = pv_new(c, PV_TENSOR);
        if (!t) return NULL;
        t->st = args->items[0]->st;
        t->offset = args->items[1]->i;
        int nd = int_tuple(args->items[2], t->shape, FMD_MAX_DIMS);
        int ns = int_tuple(args->items[3], t->stride, FMD_MAX_DIMS);
        if (nd < 0 || ns != nd)
            return perr(c, "%s: size and stride must be tuples of integers of equal length (at most %d dims)",
                        fn->s, FMD_MAX_DIMS), NULL;
        t->ndim = nd;
        return t;
    }
    case G_REBUILD_PARAMETER:
        if (args->n < 1 || args->items[0]->kind != PV_TENSOR)
            return perr(c, "%s: first argument is not a tensor", fn->s), NULL;
        return args->items[0];
    case G_REBUILD_FROM_TYPE: { /* (func, type, args, state): a tensor subclass */
        if (args->n < 3 || args->items[1]->kind != PV_GLOBAL || args->items[1]->i != G_TENSOR_TYPE)
            return perr(c, "%s: only torch.Tensor and Parameter types are accepted", fn->s), NULL;
        if (c->depth >= 64) return perr(c, "%s nested more than 64 deep", fn->s), NULL;
        c->depth++;
        pv *r = call_global(c, args->items[0], args->items[2]);
        c->depth--;
        return r;
    }
    case G_TORCH_SIZE:
        if (args->n >= 1 && args->items[0]->kind == PV_TUPLE) return args->items[0];
        return pv_new(c, PV_TUPLE);
    case G_OPAQUE_FN:
        return pv_new(c, PV_OPAQUE);
    default:
        return perr(c, "%s cannot be called", fn->s), NULL;
    }
}

/* ------------------------------------------------------------ unpickler */
static int push(pctx *c, pv *v) {
    if (!v) return -1;
    if (c->sp == c->scap) {
        int cap = c->scap ? c->scap * 2 : 64;
        pv **s = realloc(c->stack, (size_t)cap * sizeof *s);
        if (!s) return perr(c, "out of memory");
        c->stack = s;
        c->scap = cap;
    }
    c->stack[c->sp++] = v;
    return 0;
}

static int frame_bottom(pctx *c) { return c->nmarks ? c->marks[c->nmarks - 1] : 0; }

static pv *pop(pctx *c) {
    if (c->sp <= frame_bottom(c)) return perr(c, "malformed pickle: stack underflow at byte %zu", c->base + c->pos), NULL;
    return c->stack[--c->sp];
}

static pv *top(pctx *c) {
    if (c->sp <= frame_bottom(c)) return perr(c, "malformed pickle: empty stack at byte %zu", c->base + c->pos), NULL;
    return c->stack[c->sp - 1];
}

/* items above the last mark; *n gets their count; the mark is removed */
static pv **pop_mark(pctx *c, int *n) {
    if (!c->nmarks) return perr(c, "malformed pickle: no MARK at byte %zu", c->base + c->pos), NULL;
    int b = c->marks[--c->nmarks];
    *n = c->sp - b;
    c->sp = b;
    return c->stack + b;   /* still valid until the next push */
}

static int memo_put(pctx *c, int64_t idx, pv *v) {
    if (!v) return -1;
    /* every memo entry costs at least one byte of pickle: bounds the table */
    if (idx < 0 || idx > (int64_t)c->len + 16) return perr(c, "malformed pickle: memo index %lld", (long long)idx);
    if (idx >= c->memocap) {
        int64_t cap = c->memocap ? c->memocap : 256;
        while (cap <= idx) cap *= 2;
        pv **m = realloc(c->memo, (size_t)cap * sizeof *m);
        if (!m) return perr(c, "out of memory");
        memset(m + c->memocap, 0, (size_t)(cap - c->memocap) * sizeof *m);
        c->memo = m;
        c->memocap = cap;
    }
    if (!c->memo[idx]) c->memolen++;
    c->memo[idx] = v;
    return 0;
}

static pv *memo_get(pctx *c, int64_t idx) {
    if (idx < 0 || idx >= c->memocap || !c->memo[idx])
        return perr(c, "malformed pickle: memo entry %lld is not set", (long long)idx), NULL;
    return c->memo[idx];
}

#define NEED(k) do { if (c->len - c->pos < (size_t)(k)) goto truncated; } while (0)

static uint64_t rd_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* a text line (protocol 0 style argument) without its newline */
static int read_line(pctx *c, char *out, size_t n) {
    const uint8_t *s = c->buf + c->pos, *e = memchr(s, '\n', c->len - c->pos);
    if (!e) return perr(c, "pickle truncated at byte %zu (file cut short?)", c->base + c->len);
    size_t l = (size_t)(e - s);
    if (l >= n) return perr(c, "malformed pickle: text argument too long at byte %zu", c->base + c->pos);
    memcpy(out, s, l);
    out[l] = 0;
    c->pos += l + 1;
    return 0;
}

static pv *make_long(pctx *c, const uint8_t *p, uint64_t n) {
    if (n <= 8) {
        pv *v = pv_new(c, PV_INT);
        if (!v) return NULL;
        uint64_t u = rd_le(p, (int)n);
        if (n > 0 && n < 8 && (p[n - 1] & 0x80)) u |= ~UINT64_C(0) << (8 * n);   /* sign-extend */
        v->i = (int64_t)u;
        return v;
    }
    return pv_str(c, PV_BIGINT, p, n);   /* kept as bytes (the legacy magic number) */
}

/* runs one pickle from c->buf[c->pos]; returns its value, c->pos after STOP */
static pv *unpickle(pctx *c) {
    c->sp = 0;
    c->nmarks = 0;
    for (int64_t i = 0; i < c->memocap; i++) c->memo[i] = NULL;
    c->memolen = 0;
    for (;;) {
        NEED(1);
        size_t at = c->pos;
        int op = c->buf[c->pos++];
        pv *v = NULL, *a, *b;
        pv **items;
        int n;
        char line[512], line2[512];
        switch (op) {
        case 0x80: NEED(1); if (c->buf[c->pos] > 5) return perr(c, "pickle protocol %d is newer than 5", c->buf[c->pos]), NULL;
            c->pos++; break;                                          /* PROTO */
        case 0x95: NEED(8); c->pos += 8; break;                       /* FRAME: framing is only a hint */
        case '.':                                                     /* STOP */
            if (!(v = pop(c))) return NULL;
            return v;
        case '(':                                                     /* MARK */
            if (c->nmarks == c->mcap) {
                int cap = c->mcap ? c->mcap * 2 : 16;
                int *m = realloc(c->marks, (size_t)cap * sizeof *m);
                if (!m) return perr(c, "out of memory"), NULL;
                c->marks = m;
                c->mcap = cap;
            }
            c->marks[c->nmarks++] = c->sp;
            break;
        case ')': if (push(c, pv_new(c, PV_TUPLE))) return NULL; break;   /* EMPTY_TUPLE */
        case ']': if (push(c, pv_new(c, PV_LIST))) return NULL; break;    /* EMPTY_LIST */
        case '}': if (push(c, pv_new(c, PV_DICT))) return NULL; break;    /* EMPTY_DICT */
        case 0x8f: if (push(c, pv_new(c, PV_OPAQUE))) return NULL; break; /* EMPTY_SET */
        case 't': case 'l': case 'd': case 0x91:                      /* TUPLE LIST DICT FROZENSET */
            if (!(items = pop_mark(c, &n))) return NULL;
            if (!(v = pv_new(c, op == 't' ? PV_TUPLE : op == 'l' ? PV_LIST : op == 'd' ? PV_DICT : PV_OPAQUE)))
                return NULL;
            if (op == 'd' && n % 2) return perr(c, "malformed pickle: odd DICT at byte %zu", c->base + at), NULL;
            if (op != 0x91)
                for (int i = 0; i < n; i++) if (pv_append(c, v, items[i])) return NULL;
            if (push(c, v)) return NULL;
            break;
        case 0x85: case 0x86: case 0x87: {                            /* TUPLE1..3 */
            int k = op - 0x84;
            if (c->sp - frame_bottom(c) < k) return perr(c, "malformed pickle: stack underflow at byte %zu", c->base + at), NULL;
            if (!(v = pv_new(c, PV_TUPLE))) return NULL;
            for (int i = c->sp - k; i < c->sp; i++) if (pv_append(c, v, c->stack[i])) return NULL;
            c->sp -= k;
            if (push(c, v)) return NULL;
            break;
        }
        case 'a':                                                     /* APPEND */
            if (!(a = pop(c)) || !(b = top(c))) return NULL;
            if (b->kind == PV_LIST && pv_append(c, b, a)) return NULL;
            else if (b->kind != PV_LIST && b->kind != PV_OPAQUE) return perr(c, "APPEND to a non-list"), NULL;
            break;
        case 'e': case 0x90:                                          /* APPENDS ADDITEMS */
            if (!(items = pop_mark(c, &n)) || !(b = top(c))) return NULL;
            if (b->kind == PV_LIST) { for (int i = 0; i < n; i++) if (pv_append(c, b, items[i])) return NULL; }
            else if (b->kind != PV_OPAQUE) return perr(c, "APPENDS to a non-list"), NULL;
            break;
        case 's':                                                     /* SETITEM */
            if (!(v = pop(c)) || !(a = pop(c)) || !(b = top(c))) return NULL;
            if (b->kind == PV_DICT) { if (pv_append(c, b, a) || pv_append(c, b, v)) return NULL; }
            else if (b->kind != PV_OPAQUE) return perr(c, "SETITEM on a non-dict"), NULL;
            break;
        case 'u':                                                     /* SETITEMS */
            if (!(items = pop_mark(c, &n)) || !(b = top(c))) return NULL;
            if (n % 2) return perr(c, "malformed pickle: odd SETITEMS at byte %zu", c->base + at), NULL;
            if (b->kind == PV_DICT) { for (int i = 0; i < n; i++) if (pv_append(c, b, items[i])) return NULL; }
            else if (b->kind != PV_OPAQUE) return perr(c, "SETITEMS on a non-dict"), NULL;
            break;
        case 'K': case 'M': case 'J': {                               /* BININT1 BININT2 BININT */
            int w = op == 'K' ? 1 : op == 'M' ? 2 : 4;
            NEED(w);
            if (!(v = pv_new(c, PV_INT))) return NULL;
            uint64_t u = rd_le(c->buf + c->pos, w);
            v->i = w == 4 ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u;
            c->pos += w;
            if (push(c, v)) return NULL;
            break;
        }
        case 0x8a: case 0x8b: {                                       /* LONG1 LONG4 */
            int w = op == 0x8a ? 1 : 4;
            NEED(w);
            uint64_t k = rd_le(c->buf + c->pos, w);
            c->pos += w;
            NEED(k);
            if (push(c, make_long(c, c->buf + c->pos, k))) return NULL;
            c->pos += k;
            break;
        }
        case 'I': case 'L': {                                         /* INT LONG (text) */
            if (read_line(c, line, sizeof line)) return NULL;
            if (op == 'I' && (!strcmp(line, "00") || !strcmp(line, "01"))) {
                if (!(v = pv_new(c, PV_BOOL))) return NULL;
                v->i = line[1] == '1';
            } else {
                if (!(v = pv_new(c, PV_INT))) return NULL;
                v->i = strtoll(line, NULL, 10);
            }
            if (push(c, v)) return NULL;
            break;
        }
        case 'G': {                                                   /* BINFLOAT: big-endian */
            NEED(8);
            uint64_t u = 0;
            for (int i = 0; i < 8; i++) u = (u << 8) | c->buf[c->pos + i];
            c->pos += 8;
            if (!(v = pv_new(c, PV_FLOAT))) return NULL;
            memcpy(&v->f, &u, 8);
            if (push(c, v)) return NULL;
            break;
        }
        case 'F':                                                     /* FLOAT (text) */
            if (read_line(c, line, sizeof line) || !(v = pv_new(c, PV_FLOAT))) return NULL;
            v->f = strtod(line, NULL);
            if (push(c, v)) return NULL;
            break;
        case 'N': if (push(c, pv_new(c, PV_NONE))) return NULL; break;
        case 0x88: case 0x89:                                         /* NEWTRUE NEWFALSE */
            if (!(v = pv_new(c, PV_BOOL))) return NULL;
            v->i = op == 0x88;
            if (push(c, v)) return NULL;
            break;
        case 'X': case 0x8c: case 0x8d: case 'T': case 'U':           /* strings */
        case 'B': case 'C': case 0x8e: case 0x96: {                   /* bytes */
            int w = (op == 0x8c || op == 'U' || op == 'C') ? 1 : (op == 0x8d || op == 0x8e || op == 0x96) ? 8 : 4;
            NEED(w);
            uint64_t k = rd_le(c->buf + c->pos, w);
            c->pos += w;
            NEED(k);
            /* Python 2 str (BINSTRING) carries the names and keys of old files */
            pv_kind kind = (op == 'X' || op == 0x8c || op == 0x8d || op == 'T' || op == 'U') ? PV_STR : PV_BYTES;
            if (push(c, pv_str(c, kind, c->buf + c->pos, k))) return NULL;
            c->pos += k;
            break;
        }
        case 'q': NEED(1); if (memo_put(c, c->buf[c->pos], top(c))) return NULL; c->pos += 1; break;
        case 'r': NEED(4); if (memo_put(c, (int64_t)rd_le(c->buf + c->pos, 4), top(c))) return NULL; c->pos += 4; break;
        case 'p': if (read_line(c, line, sizeof line) || memo_put(c, strtoll(line, NULL, 10), top(c))) return NULL; break;
        case 0x94: if (memo_put(c, c->memolen, top(c))) return NULL; break;  /* MEMOIZE */
        case 'h': NEED(1); if (push(c, memo_get(c, c->buf[c->pos]))) return NULL; c->pos += 1; break;
        case 'j': NEED(4); if (push(c, memo_get(c, (int64_t)rd_le(c->buf + c->pos, 4)))) return NULL; c->pos += 4; break;
        case 'g': if (read_line(c, line, sizeof line) || push(c, memo_get(c, strtoll(line, NULL, 10)))) return NULL; break;
        case 'c':                                                     /* GLOBAL module\nname\n */
            if (read_line(c, line, sizeof line) || read_line(c, line2, sizeof line2)) return NULL;
            if (push(c, make_global(c, line, line2))) return NULL;
            break;
        case 0x93:                                                    /* STACK_GLOBAL */
            if (!(b = pop(c)) || !(a = pop(c))) return NULL;
            if (a->kind != PV_STR || b->kind != PV_STR) return perr(c, "STACK_GLOBAL needs two strings"), NULL;
            if (push(c, make_global(c, a->s, b->s))) return NULL;
            break;
        case 'i':                                                     /* INST: refused unless allowed */
            if (read_line(c, line, sizeof line) || read_line(c, line2, sizeof line2)) return NULL;
            if (!make_global(c, line, line2)) return NULL;
            return perr(c, "unsupported protocol-0 INST of %s.%s", line, line2), NULL;
        case 'R':                                                     /* REDUCE */
            if (!(a = pop(c)) || !(b = pop(c))) return NULL;
            if (push(c, call_global(c, b, a))) return NULL;
            break;
        case 0x81: case 0x92:                                         /* NEWOBJ NEWOBJ_EX */
            if (op == 0x92 && !pop(c)) return NULL;
            if (!(a = pop(c)) || !(b = pop(c))) return NULL;
            if (b->kind != PV_GLOBAL) return perr(c, "NEWOBJ of something that is not a class"), NULL;
            if (b->i == G_ORDERED_DICT) v = pv_new(c, PV_DICT);
            else if (b->i == G_OPAQUE_FN) v = pv_new(c, PV_OPAQUE);
            else return perr(c, "%s cannot be instantiated", b->s), NULL;
            if (push(c, v)) return NULL;
            break;
        case 'b':                                                     /* BUILD: state is ignored */
            if (!pop(c) || !top(c)) return NULL;
            break;
        case 'Q':                                                     /* BINPERSID */
            if (!(a = pop(c))) return NULL;
            if (push(c, persistent_load(c, a))) return NULL;
            break;
        case '0':                                                     /* POP */
            if (c->nmarks && c->sp == c->marks[c->nmarks - 1]) c->nmarks--;
            else if (!pop(c)) return NULL;
            break;
        case '1': if (!pop_mark(c, &n)) return NULL; break;           /* POP_MARK */
        case '2': if (push(c, top(c))) return NULL; break;            /* DUP */
        default:
            return perr(c, "unsupported pickle opcode 0x%02x at byte %zu", op, c->base + at), NULL;
        }
    }
truncated:
    return perr(c, "truncated: the pickle ends at byte %zu inside an opcode (file cut short?)", c->base + c->len), NULL;
}

/* ------------------------------------------------------------------ zip */
static const zentry *zfind(pctx *c, const char *name) {
    for (int i = 0; i < c->nz; i++)
        if (!strcmp(c->zents[i].name, name)) return &c->zents[i];
    return NULL;
}

static int zip_index(pctx *c) {
    const uint8_t *f = c->file;
    size_t n = c->fsize;
    /* end of central directory: last signature within 64 KB + 22 of the end */
    size_t eocd = (size_t)-1;
    for (size_t i = n >= 22 ? n - 22 + 1 : 0; i-- > 0 && n - i <= 65557;)
        if (rd_le(f + i, 4) == 0x06054b50) { eocd = i; break; }
    if (eocd == (size_t)-1)
        return perr(c, "zip archive without its central directory: the file is truncated or damaged");
    uint64_t count = rd_le(f + eocd + 10, 2), cdoff = rd_le(f + eocd + 16, 4);
    if (count == 0xffff || cdoff == 0xffffffff) {             /* zip64 */
        if (eocd < 20 || rd_le(f + eocd - 20, 4) != 0x07064b50) return perr(c, "damaged zip64 directory locator");
        uint64_t z = rd_le(f + eocd - 20 + 8, 8);
        /* n < 56: n - 56 would wrap (found by fuzz/fuzz_pth) */
        if (n < 56 || z > n - 56 || rd_le(f + z, 4) != 0x06064b50) return perr(c, "damaged zip64 end of central directory");
        count = rd_le(f + z + 32, 8);
        cdoff = rd_le(f + z + 48, 8);
    }
    if (cdoff > n || count > n / 46) return perr(c, "zip central directory lies outside the file (truncated?)");
    c->zents = calloc((size_t)(count ? count : 1), sizeof *c->zents);
    if (!c->zents) return perr(c, "out of memory");
    size_t p = (size_t)cdoff;
    for (uint64_t k = 0; k < count; k++) {
        if (p + 46 > n || rd_le(f + p, 4) != 0x02014b50) return perr(c, "damaged zip central directory (entry %llu)", (unsigned long long)k);
        zentry *e = &c->zents[c->nz];
        int flags = (int)rd_le(f + p + 8, 2);
        e->method = (int)rd_le(f + p + 10, 2);
        e->crc = (uint32_t)rd_le(f + p + 16, 4);
        e->csize = rd_le(f + p + 20, 4);
        e->usize = rd_le(f + p + 24, 4);
        size_t nl = rd_le(f + p + 28, 2), xl = rd_le(f + p + 30, 2), cl = rd_le(f + p + 32, 2);
        uint64_t loff = rd_le(f + p + 42, 4);
        if (p + 46 + nl + xl + cl > n) return perr(c, "damaged zip central directory (entry %llu)", (unsigned long long)k);
        if (flags & 1) return perr(c, "encrypted zip entries are not supported");
        /* zip64 extra field: the 0xffffffff fields, in order */
        for (size_t x = p + 46 + nl; x + 4 <= p + 46 + nl + xl;) {
            size_t id = rd_le(f + x, 2), sz = rd_le(f + x + 2, 2), q = x + 4;
            if (x + 4 + sz > p + 46 + nl + xl) break;
            if (id == 1) {
                if (e->usize == 0xffffffff && q + 8 <= x + 4 + sz) { e->usize = rd_le(f + q, 8); q += 8; }
                if (e->csize == 0xffffffff && q + 8 <= x + 4 + sz) { e->csize = rd_le(f + q, 8); q += 8; }
                if (loff == 0xffffffff && q + 8 <= x + 4 + sz) { loff = rd_le(f + q, 8); q += 8; }
            }
            x += 4 + sz;
        }
        if (!(e->name = malloc(nl + 1))) return perr(c, "out of memory");
        memcpy(e->name, f + p + 46, nl);
        e->name[nl] = 0;
        c->nz++;
        if (n < 30 || loff > n - 30 || rd_le(f + loff, 4) != 0x04034b50)
            return perr(c, "zip entry '%s' has no local header (truncated?)", e->name);
        e->data_off = loff + 30 + rd_le(f + loff + 26, 2) + rd_le(f + loff + 28, 2);
        if (e->data_off > n || e->csize > n - e->data_off)
            return perr(c, "zip entry '%s' goes beyond the end of the file (truncated?)", e->name);
        p += 46 + nl + xl + cl;
    }
    return 0;
}

/* bytes of a zip entry (inflated if needed, CRC checked) */
static const uint8_t *zip_read(pctx *c, const zentry *e) {
    const uint8_t *src = c->file + e->data_off;
    const uint8_t *out = src;
    if (e->method == 8) {
        /* deflate expands at most 1032:1; a larger claimed size is a lie that
         * would only make us allocate it */
        if (e->usize / 1032 > e->csize + 1)
            return perr(c, "zip entry '%s' claims %llu bytes from %llu compressed (damaged file)", e->name,
                        (unsigned long long)e->usize, (unsigned long long)e->csize), NULL;
        uint8_t **bs = realloc(c->bufs, (size_t)(c->nbufs + 1) * sizeof *bs);
        uint8_t *dst = bs ? malloc(e->usize ? e->usize : 1) : NULL;
        if (bs) c->bufs = bs;
        if (!dst) return perr(c, "out of memory inflating '%s'", e->name), NULL;
        c->bufs[c->nbufs++] = dst;
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) return perr(c, "zlib init failed"), NULL;
        int r = Z_OK;
        uint64_t in_left = e->csize, out_left = e->usize;
        zs.next_in = (Bytef *)src;
        zs.next_out = dst;
        while (r == Z_OK) {   /* chunks: zlib counts in uInt */
            if (!zs.avail_in) { zs.avail_in = (uInt)(in_left > 1u << 30 ? 1u << 30 : in_left); in_left -= zs.avail_in; }
            if (!zs.avail_out) { zs.avail_out = (uInt)(out_left > 1u << 30 ? 1u << 30 : out_left); out_left -= zs.avail_out; }
            r = inflate(&zs, Z_NO_FLUSH);
            if (r == Z_BUF_ERROR && (in_left || out_left)) r = Z_OK;
        }
        uint64_t got = zs.total_out;
        inflateEnd(&zs);
        if (r != Z_STREAM_END || got != e->usize)
            return perr(c, "zip entry '%s' does not inflate to %llu bytes (damaged file)", e->name,
                        (unsigned long long)e->usize), NULL;
        out = dst;
    } else if (e->method != 0) {
        return perr(c, "zip entry '%s' uses compression method %d (fmd reads stored and deflate)",
                    e->name, e->method), NULL;
    } else if (e->csize != e->usize) {
        return perr(c, "zip entry '%s' is stored but sizes differ", e->name), NULL;
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    for (uint64_t off = 0; off < e->usize;) {
        uInt k = (uInt)(e->usize - off > 1u << 30 ? 1u << 30 : e->usize - off);
        crc = crc32(crc, out + off, k);
        off += k;
    }
    if ((uint32_t)crc != e->crc) return perr(c, "zip entry '%s' fails its CRC check (damaged file)", e->name), NULL;
    return out;
}

static pv *load_zip(pctx *c) {
    if (zip_index(c)) return NULL;
    const zentry *pkl = NULL;
    for (int i = 0; i < c->nz; i++) {
        const char *nm = c->zents[i].name, *sl = strchr(nm, '/');
        if (sl && !strcmp(sl, "/data.pkl")) { pkl = &c->zents[i]; break; }
    }
    if (!pkl) {
        if (zfind(c, "constants.pkl") || c->nz == 0) return perr(c, "zip archive has no <archive>/data.pkl: not a torch.save checkpoint"), NULL;
        return perr(c, "zip archive has no <archive>/data.pkl (a TorchScript file or another zip?); "
                       "fmd reads torch.save checkpoints"), NULL;
    }
    size_t plen = (size_t)(strchr(pkl->name, '/') - pkl->name);
    char name[1024];
    snprintf(name, sizeof name, "%.*s/byteorder", (int)plen, pkl->name);
    const zentry *bo = zfind(c, name);
    if (bo) {
        const uint8_t *b = zip_read(c, bo);
        if (!b) return NULL;
        if (!(bo->usize == 6 && !memcmp(b, "little", 6)))
            return perr(c, "checkpoint was written on a big-endian machine; fmd reads little-endian files"), NULL;
    }
    const uint8_t *p = zip_read(c, pkl);
    if (!p) return NULL;
    c->buf = p;
    c->len = pkl->usize;
    c->pos = 0;
    c->base = 0;
    pv *root = unpickle(c);
    if (!root) return NULL;
    for (int i = 0; i < c->nstores; i++) {
        pstore *s = c->stores[i];
        if (s->root) continue;
        snprintf(name, sizeof name, "%.*s/data/%s", (int)plen, pkl->name, s->key);
        const zentry *e = zfind(c, name);
        if (!e) return perr(c, "storage '%s' is missing from the archive (%s)", s->key, name), NULL;
        uint64_t need = (uint64_t)s->numel * (uint64_t)pt_types[s->dtype].size;   /* <= 2^56: numel <= 2^53 */
        if (e->usize < need)
            return perr(c, "storage '%s' holds %llu bytes, %llu expected", s->key,
                        (unsigned long long)e->usize, (unsigned long long)need), NULL;
        if (!(s->data = zip_read(c, e))) return NULL;
        s->located = 1;
        c->data_bytes += e->usize;
    }
    return root;
}

/* ----------------------------------------------------------------- legacy */
static const uint8_t legacy_magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

static pv *load_legacy(pctx *c) {
    c->buf = c->file;
    c->len = c->fsize;
    c->pos = 0;
    c->base = 0;
    if (c->fsize < 15 || c->file[0] != 0x80 || c->file[2] != 0x8a || c->file[3] != 10 ||
        memcmp(c->file + 4, legacy_magic, 10))
        return perr(c, "not a PyTorch checkpoint: neither a zip archive nor a legacy torch.save file "
                       "(no magic number)"), NULL;
    pv *magic = unpickle(c);
    if (!magic) return NULL;
    pv *ver = unpickle(c);
    if (!ver) return NULL;
    if (ver->kind != PV_INT || ver->i != 1001)
        return perr(c, "legacy checkpoint with protocol version %lld; fmd reads version 1001",
                    ver->kind == PV_INT ? (long long)ver->i : -1LL), NULL;
    pv *info = unpickle(c);
    if (!info) return NULL;
    if (info->kind == PV_DICT)
        for (int i = 0; i + 1 < info->n; i += 2)
            if (is_str(info->items[i], "little_endian") && info->items[i + 1]->kind == PV_BOOL &&
                !info->items[i + 1]->i)
                return perr(c, "checkpoint was written on a big-endian machine; fmd reads little-endian files"), NULL;
    pv *root = unpickle(c);
    if (!root) return NULL;
    pv *keys = unpickle(c);
    if (!keys) return NULL;
    if (keys->kind != PV_LIST) return perr(c, "legacy checkpoint: storage key list missing"), NULL;
    size_t p = c->pos;
    for (int i = 0; i < keys->n; i++) {
        char key[128];
        if (key_str(c, keys->items[i], key, sizeof key)) return NULL;
        pstore *s = store_find(c, key);
        if (!s || s->root) return perr(c, "legacy checkpoint: storage '%s' is listed but never used", key), NULL;
        if (c->fsize - p < 8)
            return perr(c, "truncated: storage '%s' (%d of %d) is missing; the file ends at byte %zu",
                        key, i + 1, keys->n, c->fsize), NULL;
        uint64_t cnt = rd_le(c->file + p, 8);
        p += 8;
        if (cnt != (uint64_t)s->numel)
            return perr(c, "storage '%s' holds %llu elements, %lld expected", key, (unsigned long long)cnt,
                        (long long)s->numel), NULL;
        uint64_t bytes = cnt * (uint64_t)pt_types[s->dtype].size;   /* cnt = numel <= 2^53: no wrap */
        if (bytes > c->fsize - p)
            return perr(c, "truncated: storage '%s' (%d of %d) needs %llu bytes but only %zu remain",
                        key, i + 1, keys->n, (unsigned long long)bytes, c->fsize - p), NULL;
        s->data = c->file + p;
        s->located = 1;
        p += bytes;
    }
    return root;
}

/* --------------------------------------------------------------- output */
static fmd_tensor *make_tensor(pctx *c, const pv *t, const char *name) {
    pstore *s = t->st;
    int64_t base = t->offset, limit = s->numel;
    if (s->root) { base += s->view_offset; s = s->root; }
    if (!s->located) return perr(c, "tensor '%s': storage '%s' has no data in the file", name, s->key), NULL;
    char sb[160];
    int64_t numel = 1, maxi = t->offset;
    int bad = t->offset < 0;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0 || t->stride[d] < 0)
            return perr(c, "tensor '%s': negative size or stride", name), NULL;
        if (t->shape[d] == 0) numel = 0;
    }
    /* the highest element the view touches, with overflow checks (sizes
     * come from the file); size-1 dims may carry any stride */
    for (int d = 0; d < t->ndim && numel; d++) {
        int64_t span;
        if (t->shape[d] > 1 && (__builtin_mul_overflow(t->shape[d] - 1, t->stride[d], &span) ||
                                __builtin_add_overflow(maxi, span, &maxi)))
            bad = 1;
        if (__builtin_mul_overflow(numel, t->shape[d], &numel)) bad = 1;
    }
    if (bad || (numel > 0 && maxi >= limit))
        return perr(c, "tensor '%s' %s (offset %lld) reaches element %lld of a storage of %lld",
                    name, fmd_shape_str(sb, sizeof sb, t->ndim, t->shape), (long long)t->offset,
                    (long long)maxi, (long long)limit), NULL;
    if (fmd_check_shape("shape", t->ndim, t->shape, NULL))   /* an empty [0 x 2^40 x 2^40] */
        return perr(c, "tensor '%s': %s", name, fmd_error()), NULL;
    /* Zero strides and views repeated from the memo let a few bytes name
     * any number of elements, each copied out as a float. The tensors of a
     * file may take at most 16 times its bytes (a 1-byte dtype is 4x; tied
     * weights a few views more) plus 16 MiB, so a small file cannot make
     * fmd allocate gigabytes. */
    uint64_t budget = 16 * ((uint64_t)c->fsize + c->data_bytes) + (UINT64_C(1) << 24);
    c->out_bytes += (uint64_t)numel * sizeof(float);   /* <= budget + 2^55 (numel <= 2^53): no wrap */
    if (c->out_bytes > budget)
        return perr(c, "tensor '%s' %s would bring the tensors of this file to %llu bytes, more than 16 times the "
                       "file's %zu bytes (views that repeat or broadcast a storage); refused before allocating",
                    name, fmd_shape_str(sb, sizeof sb, t->ndim, t->shape), (unsigned long long)c->out_bytes,
                    c->fsize), NULL;
    fmd_tensor *out = fmd_empty(t->ndim, t->shape);
    if (!out) return perr(c, "tensor '%s': %s", name, fmd_error()), NULL;
    if (numel == 0) return out;
    float *dst = fmd_data(out);
    /* drop size-1 dims and merge dims that are contiguous with the next, so
     * a contiguous tensor is one run (a 728x728x1x1 weight is not 530k rows) */
    int64_t sh[FMD_MAX_DIMS], st[FMD_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] == 1) continue;
        if (nd && st[nd - 1] == t->stride[d] * t->shape[d]) {
            sh[nd - 1] *= t->shape[d];
            st[nd - 1] = t->stride[d];
        } else {
            sh[nd] = t->shape[d];
            st[nd] = t->stride[d];
            nd++;
        }
    }
    if (!nd) { sh[0] = 1; st[0] = 1; nd = 1; }
    /* rows along the last dim, an odometer over the others */
    int64_t inner = sh[nd - 1], idx[FMD_MAX_DIMS] = {0}, off = base;
    for (int64_t r = 0; r < numel / inner; r++) {
        pt_convert(s->dtype, s->data, off, inner, st[nd - 1], dst);
        dst += inner;
        for (int d = nd - 2; d >= 0; d--) {
            off += st[d];
            if (++idx[d] < sh[d]) break;
            off -= st[d] * sh[d];
            idx[d] = 0;
        }
    }
    return out;
}

static int flatten(pctx *c, const pv *v, char *name, size_t cap, size_t len, int depth, fmd_tensor_dict *out) {
    if (depth > 64) return perr(c, "containers nested more than 64 deep (a cycle?)");
    /* shared (memo) containers make a DAG whose walk can be exponential */
    if (++c->visits > (1L << 20)) return perr(c, "more than 2^20 containers and tensors to walk (shared containers?)");
    if (v->kind == PV_TENSOR) {
        const char *nm = name;
        while (!strncmp(nm, "module.", 7)) nm += 7;   /* nn.DataParallel's prefix */
        fmd_tensor *t = make_tensor(c, v, nm);
        if (!t) return -1;
        int r = fmd_tensor_dict_add(out, nm, t);
        fmd_release(t);
        return r ? perr(c, "%s", fmd_error()) : 0;
    }
    int dict = v->kind == PV_DICT, seq = v->kind == PV_LIST || v->kind == PV_TUPLE;
    if (!dict && !seq) return 0;   /* numbers, strings, None...: not tensors, ignored */
    int step = dict ? 2 : 1;
    for (int i = 0; i + step - 1 < v->n; i += step) {
        char key[256];
        const pv *k = dict ? v->items[i] : NULL, *val = v->items[i + step - 1];
        if (val->kind != PV_TENSOR && val->kind != PV_DICT && val->kind != PV_LIST && val->kind != PV_TUPLE) continue;
        if (!dict) snprintf(key, sizeof key, "%d", i);
        else if (k->kind == PV_STR || k->kind == PV_BYTES) snprintf(key, sizeof key, "%s", k->s);
        else if (k->kind == PV_INT) snprintf(key, sizeof key, "%lld", (long long)k->i);
        else continue;   /* tuple keys and the like cannot name a tensor */
        size_t kl = strlen(key);
        if (len + kl + 2 > cap) return perr(c, "tensor name longer than %zu characters", cap);
        size_t nl = len;
        if (len) name[nl++] = '.';
        memcpy(name + nl, key, kl + 1);
        if (flatten(c, val, name, cap, nl + kl, depth + 1, out)) return -1;
        name[len] = 0;
    }
    return 0;
}

static const pv *dict_get(const pv *d, const char *key) {
    for (int i = 0; i + 1 < d->n; i += 2)
        if (is_str(d->items[i], key)) return d->items[i + 1];
    return NULL;
}

/* *budget bounds the nodes visited: memo references can make a container
 * hold itself twice, and the walk would then take 2^64 steps */
static int has_tensor(const pv *v, int depth, long *budget) {
    if (v->kind == PV_TENSOR) return 1;
    if (depth > 64 || --*budget < 0 || (v->kind != PV_DICT && v->kind != PV_LIST && v->kind != PV_TUPLE)) return 0;
    for (int i = 0; i < v->n; i++)
        if (has_tensor(v->items[i], depth + 1, budget)) return 1;
    return 0;
}

/* a training checkpoint keeps the weights under a key; use that dict */
static const pv *find_state_dict(const pv *root) {
    static const char *const keys[] = {"state_dict", "model_state_dict", "model", "net", "network"};
    for (int depth = 0; depth < 4 && root->kind == PV_DICT; depth++) {
        const pv *inner = NULL;
        for (size_t k = 0; k < sizeof keys / sizeof *keys && !inner; k++) {
            const pv *v = dict_get(root, keys[k]);
            long budget = 1L << 20;
            if (v && v->kind == PV_DICT && has_tensor(v, 0, &budget)) inner = v;
        }
        if (!inner) break;
        root = inner;
    }
    return root;
}

int fmd_pth_load(const char *path, fmd_tensor_dict *out) {
    memset(out, 0, sizeof *out);
    pctx ctx, *c = &ctx;
    memset(c, 0, sizeof ctx);
    c->path = path;
    int rc = -1;
    int64_t sz = 0;
    FILE *f = fmd_open_regular("pth", path, &sz);
    if (!f) return -1;
    if ((uint64_t)sz > fmd_max_storage_bytes()) {   /* the file is read whole */
        fclose(f);
        return perr(c, "file of %lld bytes is over the limit of %llu (FMD_MAX_TENSOR_BYTES)", (long long)sz,
                    (unsigned long long)fmd_max_storage_bytes());
    }
    c->fsize = (size_t)sz;
    c->file = malloc(c->fsize ? c->fsize : 1);
    if (!c->file) { fclose(f); return perr(c, "out of memory reading %zu bytes", c->fsize); }
    size_t got = fread(c->file, 1, c->fsize, f);
    fclose(f);
    if (got != c->fsize) { perr(c, "read error"); goto done; }

    pv *root;
    if (c->fsize >= 4 && !memcmp(c->file, "PK\x03\x04", 4)) {
        root = load_zip(c);
    } else if (c->fsize >= 262 && !memcmp(c->file + 257, "ustar", 5)) {
        perr(c, "tar-format checkpoint (torch < 0.1.10) is not supported; re-save it with a newer torch");
        goto done;
    } else {
        root = load_legacy(c);
    }
    if (!root) goto done;
    char name[1024] = "";
    if (flatten(c, find_state_dict(root), name, sizeof name, 0, 0, out)) goto done;
    rc = 0;
done:
    if (rc) fmd_tensor_dict_free(out);
    for (pv *v = c->allocs, *nx; v; v = nx) {
        nx = v->next_alloc;
        free(v->s);
        free(v->items);
        free(v);
    }
    for (int i = 0; i < c->nstores; i++) { free(c->stores[i]->key); free(c->stores[i]); }
    for (int i = 0; i < c->nz; i++) free(c->zents[i].name);
    for (int i = 0; i < c->nbufs; i++) free(c->bufs[i]);
    free(c->stores);
    free(c->zents);
    free(c->bufs);
    free(c->stack);
    free(c->marks);
    free(c->memo);
    free(c->file);
    return rc;
}
