/*
 * lua_metrics.c - fmd.core._metrics, the C side of lib/fmd/metrics.lua
 * (engine/metrics.c does the maths). Labels come first, as scikit-learn's
 * (y_true, y_score): labels and scores are Lua arrays of numbers or 1-D
 * tensors; results are Lua arrays and numbers.
 *
 *   roc_curve(labels, scores)              -> fpr, tpr, thresholds
 *   det_curve(labels, scores)              -> fpr, fnr, thresholds
 *   precision_recall_curve(labels, scores) -> precision, recall, thresholds
 *   roc_auc / average_precision(labels, scores) -> number
 *   eer(labels, scores)                    -> eer, threshold
 *   accuracy(labels, predictions)          -> fraction (predictions 0 or 1)
 *   accuracy(labels, scores, threshold)    -> fraction (fake when score >= threshold)
 *   confusion(labels, predictions)         -> {tn=, fp=, fn=, tp=, {tn, fp}, {fn, tp}}
 *   confusion(labels, scores, threshold)   -> the same
 *
 * Every input problem (type, length, empty, label not 0/1, NaN/inf score,
 * a prediction not 0/1, a class the function needs missing) raises one
 * line naming the function; a label not 0/1 also says the argument order,
 * the likely cause when porting from another library.
 * Buffers are userdata on the Lua stack, so an error frees them.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmd_lua.h"

typedef struct {
    const char *fn;        /* the Lua function's name, for messages */
    const char *second;    /* what argument 2 holds: "scores" or "predictions" */
    double *y, *s;         /* labels, scores (n,) */
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

/* index (1-based) of the first of v (n,) that is neither 0 nor 1, else 0 */
static int64_t first_not_01(const double *v, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (v[i] != 0 && v[i] != 1) return i + 1;
    return 0;
}

/* v in the fewest digits that read back as v (0.73, not 0.72999999999999998) */
static const char *num_str(char buf[32], double v) {
    snprintf(buf, 32, "%.15g", v);
    if (strtod(buf, NULL) != v) snprintf(buf, 32, "%.17g", v);
    return buf;
}

/* the error for labels[at] not 0 or 1: says the order, the likely cause
 * (scores passed first), in scikit-learn's names of the arguments */
static int fail_label(lua_State *L, const inputs *in, int64_t at) {
    char buf[32];
    return fail(L, "%s(labels, %s): labels must be 0 or 1, got %s at index %I (the order is labels first, "
                "as scikit-learn's y_true, %s)", in->fn, in->second, num_str(buf, in->y[at - 1]), (lua_Integer)at,
                strcmp(in->second, "predictions") ? "y_score" : "y_pred");
}

/* reads and checks labels (arg 1) and in->second (arg 2) for in->fn */
static void check_inputs(lua_State *L, inputs *in, int need, const char *curve) {
    const char *sn = in->second;
    int64_t ny = vec_len(L, in, 1, "labels"), ns = vec_len(L, in, 2, sn);
    if (ns != ny) fail(L, "%s: labels has %I entries but %s has %I", in->fn, (lua_Integer)ny, sn, (lua_Integer)ns);
    if (ns == 0) fail(L, "%s: labels and %s are empty", in->fn, sn);
    in->n = ns;
    in->y = vec_read(L, in, 1, "labels", ns);
    int64_t bad = first_not_01(in->y, ns);
    if (bad) fail_label(L, in, bad);
    in->s = vec_read(L, in, 2, sn, ns);
    int64_t nan = 0, inf = 0, first_nan = 0, first_inf = 0;
    for (int64_t i = 0; i < ns; i++) {
        double x = in->s[i];
        if (isnan(x)) { if (!nan++) first_nan = i + 1; }
        else if (isinf(x)) { if (!inf++) first_inf = i + 1; }
    }
    if (nan) fail(L, "%s: %s hold %I NaN value%s (the first at index %I)", in->fn, sn, (lua_Integer)nan,
                  nan > 1 ? "s" : "", (lua_Integer)first_nan);
    if (inf) fail(L, "%s: %s hold %I infinite value%s (the first at index %I); %s must be finite",
                  in->fn, sn, (lua_Integer)inf, inf > 1 ? "s" : "", (lua_Integer)first_inf, sn);
    in->P = 0;
    for (int64_t i = 0; i < ns; i++) in->P += in->y[i] == 1;
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
    if (fmd_binary_clf_curve(in->y, in->s, in->n, c) < 0) fmd_lua_error(L);
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
    inputs in = {.fn = "roc_curve", .second = "scores"};
    fmd_clf_curve c;
    check_inputs(L, &in, NEED_BOTH, "ROC");
    clf_curve(L, &in, &c);
    double *fpr = buffer(L, c.m + 1), *tpr = buffer(L, c.m + 1), *thr = buffer(L, c.m + 1);
    fmd_roc_curve(&c, fpr, tpr, thr);
    return push_curve(L, fpr, tpr, thr, c.m + 1, c.m + 1);
}

static int l_det_curve(lua_State *L) {
    inputs in = {.fn = "det_curve", .second = "scores"};
    fmd_clf_curve c;
    check_inputs(L, &in, NEED_BOTH, "DET");
    clf_curve(L, &in, &c);
    double *fpr = buffer(L, c.m), *fnr = buffer(L, c.m), *thr = buffer(L, c.m);
    int64_t k = fmd_det_curve(&c, fpr, fnr, thr);
    return push_curve(L, fpr, fnr, thr, k, k);
}

static int l_precision_recall_curve(lua_State *L) {
    inputs in = {.fn = "precision_recall_curve", .second = "scores"};
    fmd_clf_curve c;
    check_inputs(L, &in, NEED_FAKE, "precision-recall");
    clf_curve(L, &in, &c);
    double *p = buffer(L, c.m + 1), *r = buffer(L, c.m + 1), *thr = buffer(L, c.m);
    fmd_precision_recall_curve(&c, p, r, thr);
    return push_curve(L, p, r, thr, c.m + 1, c.m);
}

static int l_roc_auc(lua_State *L) {
    inputs in = {.fn = "roc_auc", .second = "scores"};
    fmd_clf_curve c;
    check_inputs(L, &in, NEED_BOTH, "ROC");
    clf_curve(L, &in, &c);
    lua_pushnumber(L, fmd_roc_auc(&c));
    return 1;
}

static int l_average_precision(lua_State *L) {
    inputs in = {.fn = "average_precision", .second = "scores"};
    fmd_clf_curve c;
    check_inputs(L, &in, NEED_FAKE, "precision-recall");
    clf_curve(L, &in, &c);
    lua_pushnumber(L, fmd_average_precision(&c));
    return 1;
}

static int l_eer(lua_State *L) {
    inputs in = {.fn = "eer", .second = "scores"};
    fmd_clf_curve c;
    check_inputs(L, &in, NEED_BOTH, "EER");
    clf_curve(L, &in, &c);
    double eer, thr;
    fmd_eer(&c, &eer, &thr);
    lua_pushnumber(L, eer);
    lua_pushnumber(L, thr);
    return 2;
}

/* cm = {tn, fp, fn, tp} of labels (arg 1) and either 0/1 predictions
 * (arg 2, no arg 3) or scores (arg 2) and a threshold (arg 3) */
static void confusion(lua_State *L, inputs *in, int64_t cm[4]) {
    int scored = !lua_isnoneornil(L, 3);
    in->second = scored ? "scores" : "predictions";
    check_inputs(L, in, NEED_NONE, NULL);
    double thr = 0.5;   /* predictions: 1 >= 0.5 > 0 */
    if (scored) {
        int isnum;
        thr = lua_tonumberx(L, 3, &isnum);
        if (!isnum) fail(L, "%s: threshold must be a number (got %s)", in->fn, luaL_typename(L, 3));
        if (isnan(thr)) fail(L, "%s: threshold is NaN", in->fn);
    } else {
        int64_t bad = first_not_01(in->s, in->n);
        if (bad) {
            char buf[32];
            fail(L, "%s(labels, predictions): predictions must be 0 or 1, got %s at index %I (for scores, "
                 "give a threshold: %s(labels, scores, threshold))", in->fn, num_str(buf, in->s[bad - 1]),
                 (lua_Integer)bad, in->fn);
        }
    }
    fmd_confusion(in->y, in->s, in->n, thr, cm);
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
