/* nn_conv_separable.c - a separable conv (Xception's SeparableConv2d: a
 * depthwise conv, then a 1x1 pointwise conv) a sample at a time.
 *
 * fmd_sepconv2d_fused runs, without a graph, the depthwise then the
 * pointwise conv of one sample at a time, the sample's depthwise output in a
 * per-thread buffer; fmd_sepconv2d does the same with a graph, its backward
 * a sample at a time too. Both use the plane kernels of nn_conv_depthwise.c
 * and the per-sample GEMM of nn_conv.c, so their numbers are those of the
 * two convs in turn, which they fall back to where the kernels do not
 * apply. */
#include "fmd_impl.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------- separable conv, a sample at a time */
/* A SeparableConv2d without a graph: each thread takes whole samples, makes a
 * sample's depthwise output (C,OH,OW) in its own buffer and runs the
 * pointwise GEMM (and epilogue) on it while it is still in cache, instead of
 * writing the whole batch's depthwise output (256 MB at Xception's first
 * block) and reading it back. The same plane kernels and GEMM calls as the
 * two convs in turn, so the same numbers. */
typedef struct { fmd_conv_job dw, pw; } sep_job;

static void sep_task(void *p, int ith, int nth) {
    sep_job *s = p;
    int64_t b, e, O = s->dw.g.O;
    fmd_split(s->dw.g.N, ith, nth, &b, &e);
    if (b >= e) return;
    float *mid = fmd_conv_scratch(1, (size_t)(O * s->dw.g.OHW));
    if (!mid) { s->dw.failed = 1; return; }
    for (int64_t n = b; n < e && !s->dw.failed && !s->pw.failed; n++) {
        fmd_conv_dw_planes(&s->dw, n * O, (n + 1) * O, mid);
        if (!s->dw.failed) fmd_conv_fwd_sample(&s->pw, n, mid, 0);
    }
}

// s->dw.g, s->pw.g: the conv by wd (bias bd) of x with a = {sh, sw, ph, pw,
// dh, dw, groups}, then the 1x1 conv by wp (bias bp) of its output; -1 when
// either fails
static int sep_geometry(fmd_tensor *x, fmd_tensor *wd, fmd_tensor *bd, fmd_tensor *wp, fmd_tensor *bp,
                        const int64_t *a, sep_job *s) {
    if (fmd_conv_geometry(x, wd, bd, (int)a[0], (int)a[1], (int)a[2], (int)a[3], (int)a[4], (int)a[5], (int)a[6],
                          &s->dw.g))
        return -1;
    const fmd_conv_geom *g = &s->dw.g;
    fmd_tensor mid = {.ndim = 4, .shape = {g->N, g->O, g->OH, g->OW}};
    return fmd_conv_geometry(&mid, wp, bp, 1, 1, 0, 0, 1, 1, 1, &s->pw.g);
}

/* The sample-at-a-time path needs a depthwise conv that the plane kernels
 * make and a pointwise conv that fmd_conv_fwd_sample makes, over a batch the
 * threads share well (fmd_conv_batch_parallel): 1 when s's geometries
 * (sep_geometry) allow it. A geometry that fails here fails again, with its
 * message, in the convs in turn. */
static int sep_one(fmd_tensor *x, fmd_tensor *wd, fmd_tensor *bd, fmd_tensor *wp, fmd_tensor *bp, const int64_t *a,
                   sep_job *s) {
    const fmd_conv_geom *g = &s->dw.g;
    return !sep_geometry(x, wd, bd, wp, bp, a, s) && g->depthwise && !fmd_conv_uses_direct(g) && g->N > 0 &&
           fmd_conv_batch_parallel(g->N) && !fmd_conv_pw_batched(&s->pw.g);
}

// x (N,C,H,W), wd (C,1,KH,KW) with groups C, wp (O,C,1,1): the conv by wp of
// the conv by wd of x (or of max(x, 0)), then the epilogue as in
// fmd_conv2d_fused; a sample at a time when the kernels allow, else the two
// convs in turn; no graph
fmd_tensor *fmd_sepconv2d_fused(fmd_tensor *x, fmd_tensor *wd, fmd_tensor *bd, int sh, int sw, int ph, int pw,
                                int dh, int dw, int groups, int relu_in, fmd_tensor *wp, fmd_tensor *bp,
                                fmd_tensor *bn_weight, fmd_tensor *bn_bias, fmd_tensor *running_mean,
                                fmd_tensor *running_var, float eps, int relu) {
    fmd_tensor *in[7] = {x, wd, bd, wp, bp, bn_weight, bn_bias};
    if (fmd_needs_grad(7, in))
        return fmd_fail_null("sepconv2d_fused: records no graph, so no input may require grad while grad mode is on "
                             "(use conv2d, batch_norm and relu)");
    if (wp->ndim != 4)
        return fmd_fail_null("conv2d: weight must be 4-D (O,C/groups,KH,KW), got %dD", wp->ndim);
    float *coef;
    if (fmd_conv_epilogue_coef(wp->shape[0], bn_weight, bn_bias, running_mean, running_var, eps, relu, &coef))
        return NULL;
    sep_job s = {0};
    const fmd_conv_geom *g = &s.dw.g;
    int64_t a[7] = {sh, sw, ph, pw, dh, dw, groups};
    /* with the input ReLU, read by the depthwise kernels themselves */
    int one = sep_one(x, wd, bd, wp, bp, a, &s) && (!relu_in || fmd_conv_reads_relu_in(g));
    fmd_tensor *y = NULL;
    if (!one) {
        fmd_tensor *m = fmd_conv_forward(x, wd, bd, sh, sw, ph, pw, dh, dw, groups, relu_in, NULL, NULL, 0);
        y = m ? fmd_conv_forward(m, wp, bp, 1, 1, 0, 0, 1, 1, 1, 0, coef, coef ? coef + wp->shape[0] : NULL, relu)
              : NULL;
        fmd_release(m);
        free(coef);
        return y;
    }
    fmd_tensor *xc = fmd_conv_contiguous_nograd(x), *wdc = xc ? fmd_conv_contiguous_nograd(wd) : NULL;
    fmd_tensor *bdc = wdc && bd ? fmd_conv_contiguous_nograd(bd) : NULL;
    fmd_tensor *wpc = wdc ? fmd_conv_contiguous_nograd(wp) : NULL;
    fmd_tensor *bpc = wpc && bp ? fmd_conv_contiguous_nograd(bp) : NULL;
    int64_t shape[4] = {g->N, s.pw.g.O, g->OH, g->OW};
    if (wpc && (bdc || !bd) && (bpc || !bp)) y = fmd_empty(4, shape);
    if (y) {
        s.dw.x = fmd_data(xc); s.dw.w = fmd_data(wdc); s.dw.b = bdc ? fmd_data(bdc) : NULL; s.dw.relu_in = relu_in;
        s.pw.w = fmd_data(wpc); s.pw.b = bpc ? fmd_data(bpc) : NULL; s.pw.y = fmd_data(y);
        s.pw.ea = coef; s.pw.eb = coef ? coef + s.pw.g.O : NULL; s.pw.erelu = relu;
        fmd_parallel(sep_task, &s);
        if (s.dw.failed || s.pw.failed) {
            fmd_fail("sepconv2d_fused: out of memory for the depthwise buffer");
            fmd_release(y);
            y = NULL;
        }
    }
    fmd_release(xc); fmd_release(wdc); fmd_release(bdc); fmd_release(wpc); fmd_release(bpc);
    free(coef);
    return y;
}

/* The same with a graph (training): one node for the depthwise then the
 * pointwise conv, no biases. Its backward also takes a sample at a time: it
 * remakes the sample's depthwise output for the pointwise weight gradient,
 * makes that output's gradient by the pointwise input-gradient GEMM and runs
 * the depthwise backward on it, all in per-thread buffers. Neither the batch's
 * depthwise output nor its gradient is ever in memory; the node keeps x and
 * the two weights, as the two conv nodes did (their pointwise one recomputed
 * its input, see recomputable). */
typedef struct {
    sep_job s;               /* s.dw: x (NULL when no weight needs grad), wd; s.pw: wp */
    const float *gy;         /* (N,O,OH,OW) */
    float *gx;               /* (N,C,H,W), or NULL */
    float *gwd, *gwp;        /* per-thread partial sums (nparts x wd's, x wp's numel), or NULL */
} sep_bwd_job;           /* failures set s.dw.failed */

static void sep_bwd_task(void *p, int ith, int nth) {
    sep_bwd_job *j = p;
    fmd_conv_job *dj = &j->s.dw;
    const fmd_conv_geom *g = &dj->g, *pg = &j->s.pw.g;
    int64_t b, e;
    fmd_split(g->N, ith, nth, &b, &e);
    if (b >= e) return;
    const int64_t ntap = g->KH * g->KW, S = g->OHW;
    /* slot 0 first at its largest: fmd_conv_dw_planes asks it for less */
    float *buf = fmd_conv_scratch(0, (size_t)fmd_conv_dw_bwd_floats(g));
    float *mid = j->gwp ? fmd_conv_scratch(1, (size_t)(g->O * S)) : NULL;
    float *gmid = (j->gx || j->gwd) ? fmd_conv_scratch(2, (size_t)(g->O * S)) : NULL;
    if (!buf || (j->gwp && !mid) || ((j->gx || j->gwd) && !gmid)) { dj->failed = 1; return; }
    float *gwd = j->gwd ? j->gwd + (size_t)ith * g->O * ntap : NULL;
    float *gwp = j->gwp ? j->gwp + (size_t)ith * pg->O * pg->C : NULL;
    for (int64_t n = b; n < e; n++) {
        const float *gyn = j->gy + n * pg->O * S;
        if (mid) {   /* gwp (O2,O) += gy_n (O2,S) @ mid_n^T */
            fmd_conv_dw_planes(dj, n * g->O, (n + 1) * g->O, mid);
            if (dj->failed) return;
            fmd_sgemm(0, 1, pg->O, pg->C, S, 1.0f, gyn, S, mid, S, 1.0f, gwp, pg->C);
        }
        if (!gmid) continue;
        /* gmid (O,S) = wp^T @ gy_n, then the depthwise backward of sample n */
        fmd_sgemm(1, 0, pg->C, S, pg->O, 1.0f, j->s.pw.w, pg->C, gyn, S, 0.0f, gmid, S);
        for (int64_t c = 0; c < g->C; c++)
            for (int64_t m = 0; m < g->Og; m++) {
                const int64_t o = c * g->Og + m;
                const float *xp = dj->x ? dj->x + (n * g->C + c) * g->HW : NULL;
                float *gxp = j->gx ? j->gx + (n * g->C + c) * g->HW : NULL, *gk = gwd ? gwd + o * ntap : NULL;
                fmd_conv_dw_s1_plane_bwd(g, gmid + o * S, xp, dj->w + o * ntap, gxp, m == 0, gk, buf);
            }
    }
}

static int sep_backward(fmd_node *nd, fmd_tensor *gout) {
    fmd_tensor *x = nd->inputs[0], *wd = nd->inputs[1], *wp = nd->inputs[2];
    sep_bwd_job j = {0};
    if (sep_geometry(x, nd->saved[1], NULL, nd->saved[2], NULL, nd->iarg, &j.s)) return -1;
    const fmd_conv_geom *g = &j.s.dw.g, *pg = &j.s.pw.g;
    int need_x = x->requires_grad, need_wd = wd->requires_grad, need_wp = wp->requires_grad;
    if ((need_wd || need_wp) && !nd->saved[0]) return fmd_fail("sepconv2d backward: input was not saved");
    const int nparts = fmd_get_num_threads();
    const int64_t nwd = g->O * g->KH * g->KW, nwp = pg->O * pg->C;
    int64_t wdshape[4] = {g->O, 1, g->KH, g->KW}, wpshape[4] = {pg->O, pg->C, 1, 1};
    fmd_tensor *gy = fmd_contiguous(gout), *gx = NULL, *gwd = NULL, *gwp = NULL;
    float *parts = NULL;
    int rc = -1;
    if (!gy) return -1;
    if (need_x && !(gx = fmd_empty(4, x->shape))) goto done;
    if (need_wd && !(gwd = fmd_empty(4, wdshape))) goto done;
    if (need_wp && !(gwp = fmd_empty(4, wpshape))) goto done;
    if ((need_wd || need_wp) &&
        !(parts = calloc((size_t)nparts * (size_t)((need_wd ? nwd : 0) + (need_wp ? nwp : 0)), sizeof *parts))) {
        fmd_fail("sepconv2d backward: out of memory for weight-gradient partials");
        goto done;
    }
    j.s.dw.x = need_wd || need_wp ? fmd_data(nd->saved[0]) : NULL;
    j.s.dw.w = fmd_data(nd->saved[1]);
    j.s.pw.w = fmd_data(nd->saved[2]);
    j.gy = fmd_data(gy);
    j.gx = gx ? fmd_data(gx) : NULL;
    j.gwd = need_wd ? parts : NULL;
    j.gwp = need_wp ? parts + (need_wd ? (size_t)nparts * nwd : 0) : NULL;
    if (g->N > 0) fmd_parallel_n(sep_bwd_task, &j, nparts);
    if (j.s.dw.failed) { fmd_fail("sepconv2d backward: out of memory for the per-sample buffers"); goto done; }
    if (gwd) fmd_conv_sum_parts(j.gwd, nparts, nwd, fmd_data(gwd));
    if (gwp) fmd_conv_sum_parts(j.gwp, nparts, nwp, fmd_data(gwp));
    rc = 0;
    if (gx) rc = fmd_accumulate_grad(x, gx);
    if (rc == 0 && gwd) rc = fmd_accumulate_grad(wd, gwd);
    if (rc == 0 && gwp) rc = fmd_accumulate_grad(wp, gwp);
done:
    free(parts);
    fmd_release(gy); fmd_release(gx); fmd_release(gwd); fmd_release(gwp);
    return rc;
}

// x (N,C,H,W), wd (C*m,1,KH,KW) with groups C, wp (O,C*m,1,1), no biases:
// the conv by wp of the conv by wd of x, recording one node when an input
// needs grad; a sample at a time forward and backward when the kernels
// allow (stride 1), else the two convs (two nodes) in turn
fmd_tensor *fmd_sepconv2d(fmd_tensor *x, fmd_tensor *wd, fmd_tensor *wp, int sh, int sw, int ph, int pw, int dh,
                          int dw, int groups) {
    sep_job s = {0};
    const fmd_conv_geom *g = &s.dw.g;
    int64_t a[7] = {sh, sw, ph, pw, dh, dw, groups};
    if (wp->ndim != 4 || wp->shape[2] != 1 || wp->shape[3] != 1) {
        char sb[96];
        return fmd_fail_null("sepconv2d: pointwise weight must be (O,C,1,1), got %s",
                             fmd_shape_str(sb, sizeof sb, wp->ndim, wp->shape));
    }
    /* stride 1 for the backward's plane kernels */
    int one = sep_one(x, wd, NULL, wp, NULL, a, &s) && g->sh == 1 && g->sw == 1;
    if (!one) {
        fmd_tensor *m = fmd_conv2d(x, wd, NULL, sh, sw, ph, pw, dh, dw, groups);
        fmd_tensor *y = m ? fmd_conv2d(m, wp, NULL, 1, 1, 0, 0, 1, 1, 1) : NULL;
        fmd_release(m);
        return y;
    }
    fmd_tensor *xc = fmd_conv_contiguous_nograd(x), *wdc = xc ? fmd_conv_contiguous_nograd(wd) : NULL;
    fmd_tensor *wpc = wdc ? fmd_conv_contiguous_nograd(wp) : NULL, *y = NULL;
    int64_t shape[4] = {g->N, s.pw.g.O, g->OH, g->OW};
    if (!wpc || !(y = fmd_empty(4, shape))) goto fail;
    s.dw.x = fmd_data(xc); s.dw.w = fmd_data(wdc);
    s.pw.w = fmd_data(wpc); s.pw.y = fmd_data(y);
    fmd_parallel(sep_task, &s);
    if (s.dw.failed || s.pw.failed) { fmd_fail("sepconv2d: out of memory for the depthwise buffer"); goto fail; }
    fmd_tensor *in[3] = {x, wd, wp};
    if (fmd_needs_grad(3, in)) {
        fmd_node *n = fmd_node_new("sepconv2d", sep_backward, 3, in);
        if (!n) goto fail;
        memcpy(n->iarg, a, sizeof a);
        int save_x = wd->requires_grad || wp->requires_grad;
        n->saved[0] = save_x ? fmd_alias(xc) : NULL;
        n->saved[1] = fmd_alias(wdc);
        n->saved[2] = fmd_alias(wpc);
        fmd_node_attach(y, n);
        if ((save_x && !n->saved[0]) || !n->saved[1] || !n->saved[2]) goto fail;
    }
    fmd_release(xc); fmd_release(wdc); fmd_release(wpc);
    return y;
fail:
    fmd_release(xc); fmd_release(wdc); fmd_release(wpc); fmd_release(y);
    return NULL;
}
