/*
 * lua_metrics.c - fmd.core._metrics, the C side of lib/fmd/metrics.lua
 * (engine/metrics.c does the maths). scores and labels are Lua arrays of
 * numbers or 1-D tensors; results are Lua arrays and numbers.
 *
 *   roc_curve(scores, labels)              -> fpr, tpr, thresholds
 *   det_curve(scores, labels)              -> fpr, fnr, thresholds
 *   precision_recall_curve(scores, labels) -> precision, recall, thresholds
 *   roc_auc / average_precision(scores, labels) -> number
 *   eer(scores, labels)                    -> eer, threshold
 *   accuracy(scores, labels, threshold)    -> fraction
 *   confusion(scores, labels, threshold)   -> {tn=, fp=, fn=, tp=, {tn, fp}, {fn, tp}}
 *
 * Every input problem (type, length, empty, NaN/inf score, label not 0/1,
 * a class the function needs missing) raises one line naming the function.
 * Buffers are userdata on the Lua stack, so an error frees them.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "fmd_lua.h"

typedef struct {
    const char *fn;        /* the Lua function's name, for messages */
    double *s, *y;         /* scores, labels (n,) */
    int64_t n, P, N;       /* samples, fakes (1), reals (0) */
} inputs;

enum { NEED_NONE, NEED_FAKE, NEED_BOTH };

static int fail(lua_State *L, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    return lua_error(L);
}

static double *buffer(lua_State *L, int64_t n) {
    return lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof(double), 0);
}

/* length of the array or 1-D tensor at arg; raises on any other type */
static int64_t vec_len(lua_State *L, const inputs *in, int arg, const char *what) {
    if (fmd_lua_is_tensor(L, arg)) {
        fmd_tensor *t = fmd_lua_check_tensor(L, arg);
        if (t->ndim != 1) {
            char buf[128];
            fail(L, "%s: %s must be a 1-D tensor (got %s)", in->fn, what,
                 fmd_shape_str(buf, sizeof buf, t->ndim, t->shape));
        }
        return t->shape[0];
    }
    if (!lua_istable(L, arg))
        fail(L, "%s: %s must be a Lua array of numbers or a 1-D tensor (got %s)", in->fn, what,
             luaL_typename(L, arg));
    return (int64_t)lua_rawlen(L, arg);
}

/* copies the n values at arg into a new buffer (pushed on the stack) */
static double *vec_read(lua_State *L, const inputs *in, int arg, const char *what, int64_t n) {
    double *v = buffer(L, n);
    if (fmd_lua_is_tensor(L, arg)) {
        fmd_tensor *t = fmd_lua_check_tensor(L, arg);
        const float *d = fmd_data(t);
        int64_t st = t->stride[0];
        for (int64_t i = 0; i < n; i++) v[i] = d[i * st];
        return v;
    }
    for (int64_t i = 0; i < n; i++) {
        int isnum;
        lua_rawgeti(L, arg, (lua_Integer)i + 1);
        v[i] = lua_tonumberx(L, -1, &isnum);
        if (!isnum)
            fail(L, "%s: %s[%I] is %s, expected a number", in->fn, what, (lua_Integer)i + 1,
                 luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    return v;
}

/* reads and checks scores (arg 1) and labels (arg 2) for in->fn */
static void check_inputs(lua_State *L, inputs *in, int need, const char *curve) {
    int64_t ns = vec_len(L, in, 1, "scores"), ny = vec_len(L, in, 2, "labels");
    if (ns != ny) fail(L, "%s: scores has %I entries but labels has %I", in->fn, (lua_Integer)ns, (lua_Integer)ny);
    if (ns == 0) fail(L, "%s: scores and labels are empty", in->fn);
    in->n = ns;
    in->s = vec_read(L, in, 1, "scores", ns);
    in->y = vec_read(L, in, 2, "labels", ns);
    int64_t nan = 0, inf = 0, first_nan = 0, first_inf = 0;
    for (int64_t i = 0; i < ns; i++) {
        double x = in->s[i];
        if (isnan(x)) { if (!nan++) first_nan = i + 1; }
        else if (isinf(x)) { if (!inf++) first_inf = i + 1; }
    }
    if (nan) fail(L, "%s: scores hold %I NaN value%s (the first at index %I)", in->fn, (lua_Integer)nan,
                  nan > 1 ? "s" : "", (lua_Integer)first_nan);
    if (inf) fail(L, "%s: scores hold %I infinite value%s (the first at index %I); scores must be finite",
                  in->fn, (lua_Integer)inf, inf > 1 ? "s" : "", (lua_Integer)first_inf);
    in->P = 0;
    for (int64_t i = 0; i < ns; i++) {
        double y = in->y[i];
        if (y != 0 && y != 1) {
            char buf[32];
            snprintf(buf, sizeof buf, "%.17g", y);
            fail(L, "%s: labels[%I] is %s; labels must be 0 (real) or 1 (fake)", in->fn, (lua_Integer)i + 1, buf);
        }
        in->P += y == 1;
    }
    in->N = ns - in->P;
    if (need == NEED_BOTH && (in->P == 0 || in->N == 0))
        fail(L, "%s: labels hold only class %s; %s needs both real (0) and fake (1)", in->fn,
             in->P ? "1 (fake)" : "0 (real)", curve);
    if (need == NEED_FAKE && in->P == 0)
        fail(L, "%s: labels hold only class 0 (real); %s needs at least one fake (1)", in->fn, curve);
}

/* the clf curve of checked inputs, in buffers pushed on the stack */
static void clf_curve(lua_State *L, const inputs *in, fmd_clf_curve *c) {
    c->fps = buffer(L, in->n);
    c->tps = buffer(L, in->n);
    c->thr = buffer(L, in->n);
    if (fmd_binary_clf_curve(in->s, in->y, in->n, c) < 0) fmd_lua_error(L);
}

static void push_array(lua_State *L, const double *v, int64_t n) {
    lua_createtable(L, n < INT32_MAX ? (int)n : 0, 0);
    for (int64_t i = 0; i < n; i++) {
        lua_pushnumber(L, v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* pushes the three curve arrays of m, m and m2 points */
static int push_curve(lua_State *L, const double *a, const double *b, const double *t, int64_t m, int64_t m2) {
    push_array(L, a, m);
    push_array(L, b, m);
    push_array(L, t, m2);
    return 3;
}

static int l_roc_curve(lua_State *L) {
    inputs in = {.fn = "roc_curve"};
    fmd_clf_curve c;
    check_inputs(L, &in, NEED_BOTH, "ROC");
    clf_curve(L, &in, &c);
    double *fpr = buffer(L, c.m + 1), *tpr = buffer(L, c.m + 1), *thr = buffer(L, c.m + 1);
    fmd_roc_curve(&c, fpr, tpr, thr);
    return push_curve(L, fpr, tpr, thr, c.m + 1, c.m + 1);
}

static int l_det_curve(lua_State *L) {
    inputs in = {.fn = "det_curve"};
    fmd_clf_curve c;
    check_inputs(L, &in, NEED_BOTH, "DET");
    clf_curve(L, &in, &c);
    double *fpr = buffer(L, c.m), *fnr = buffer(L, c.m), *thr = buffer(L, c.m);
    int64_t k = fmd_det_curve(&c, fpr, fnr, thr);
    return push_curve(L, fpr, fnr, thr, k, k);
}

static int l_precision_recall_curve(lua_State *L) {
    inputs in = {.fn = "precision_recall_curve"};
    fmd_clf_curve c;
    check_inputs(L, &in, NEED_FAKE, "precision-recall");
    clf_curve(L, &in, &c);
    double *p = buffer(L, c.m + 1), *r = buffer(L, c.m + 1), *thr = buffer(L, c.m);
    fmd_precision_recall_curve(&c, p, r, thr);
    return push_curve(L, p, r, thr, c.m + 1, c.m);
}

static int l_roc_auc(lua_State *L) {
    inputs in = {.fn = "roc_auc"};
    fmd_clf_curve c;
    check_inputs(L, &in, NEED_BOTH, "ROC");
    clf_curve(L, &in, &c);
    lua_pushnumber(L, fmd_roc_auc(&c));
    return 1;
}

static int l_average_precision(lua_State *L) {
    inputs in = {.fn = "average_precision"};
    fmd_clf_curve c;
    check_inputs(L, &in, NEED_FAKE, "precision-recall");
    clf_curve(L, &in, &c);
    lua_pushnumber(L, fmd_average_precision(&c));
    return 1;
}

static int l_eer(lua_State *L) {
    inputs in = {.fn = "eer"};
    fmd_clf_curve c;
    check_inputs(L, &in, NEED_BOTH, "EER");
    clf_curve(L, &in, &c);
    double eer, thr;
    fmd_eer(&c, &eer, &thr);
    lua_pushnumber(L, eer);
    lua_pushnumber(L, thr);
    return 2;
}

/* checked inputs and threshold (arg 3) -> cm = {tn, fp, fn, tp} */
static void confusion(lua_State *L, inputs *in, int64_t cm[4]) {
    check_inputs(L, in, NEED_NONE, NULL);
    int isnum;
    double thr = lua_tonumberx(L, 3, &isnum);
    if (!isnum) fail(L, "%s: threshold must be a number (got %s)", in->fn, luaL_typename(L, 3));
    if (isnan(thr)) fail(L, "%s: threshold is NaN", in->fn);
    fmd_confusion(in->s, in->y, in->n, thr, cm);
}

static int l_accuracy(lua_State *L) {
    inputs in = {.fn = "accuracy"};
    int64_t cm[4];
    confusion(L, &in, cm);
    lua_pushnumber(L, (double)(cm[0] + cm[3]) / (double)in.n);
    return 1;
}

static int l_confusion(lua_State *L) {
    inputs in = {.fn = "confusion"};
    int64_t cm[4];
    confusion(L, &in, cm);
    static const char *names[4] = {"tn", "fp", "fn", "tp"};
    lua_createtable(L, 2, 4);
    for (int i = 0; i < 4; i++) {
        lua_pushinteger(L, (lua_Integer)cm[i]);
        lua_setfield(L, -2, names[i]);
    }
    for (int r = 0; r < 2; r++) {
        lua_createtable(L, 2, 0);
        for (int j = 0; j < 2; j++) {
            lua_pushinteger(L, (lua_Integer)cm[2 * r + j]);
            lua_rawseti(L, -2, j + 1);
        }
        lua_rawseti(L, -2, r + 1);
    }
    return 1;
}

void fmd_lua_open_metrics(lua_State *L) {
    static const luaL_Reg fns[] = {{"roc_curve", l_roc_curve}, {"det_curve", l_det_curve},
                                   {"precision_recall_curve", l_precision_recall_curve},
                                   {"roc_auc", l_roc_auc}, {"average_precision", l_average_precision},
                                   {"eer", l_eer}, {"accuracy", l_accuracy}, {"confusion", l_confusion},
                                   {NULL, NULL}};
    lua_newtable(L);
    luaL_setfuncs(L, fns, 0);
    lua_setfield(L, -2, "_metrics");
}
