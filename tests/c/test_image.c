/* Image IO, transform kernels and the threaded loader.
 * Fixtures: tests/fixtures/images/ (made by tests/fixtures/make_images.py);
 * broken files are made here in a temp dir. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fmd.h"
#include "test.h"

#define FIX "tests/fixtures/images/"
static char tmpdir[64];

static char *tpath(const char *name) {
    static char buf[8][256];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    return p;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f) { fwrite(data, 1, n, f); fclose(f); }
}

static size_t read_file(const char *path, uint8_t *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* max |a - b| over two (3,H,W) tensors, or 1e9 when shapes differ */
static double max_diff(const fmd_tensor *a, const fmd_tensor *b) {
    if (!a || !b || !fmd_same_shape(a, b)) return 1e9;
    double m = 0;
    for (int64_t i = 0; i < fmd_numel(a); i++) {
        double d = fabs(fmd_data(a)[i] - fmd_data(b)[i]);
        if (d > m) m = d;
    }
    return m;
}

/* the decoded fixture must match PIL's decode stored in ref (8-bit) */
static void check_against_ref(const char *name, const char *ref, double tol) {
    char p[256], r[256];
    snprintf(p, sizeof p, FIX "%s", name);
    snprintf(r, sizeof r, FIX "%s", ref);
    fmd_tensor *a = fmd_image_load(p), *b = fmd_image_load(r);
    if (!a) fprintf(stderr, "%s: %s\n", name, fmd_error());
    CHECK(a != NULL && b != NULL);
    if (a && b) {
        CHECK(a->ndim == 3 && a->shape[0] == 3 && a->shape[1] == 20 && a->shape[2] == 24);
        double d = max_diff(a, b);
        if (d > tol) fprintf(stderr, "%s: max diff %g > %g\n", name, d, tol);
        CHECK(d <= tol);
    }
    fmd_release(a);
    fmd_release(b);
}

static void expect_error(const char *path, const char *part) {
    fmd_tensor *t = fmd_image_load(path);
    CHECK(t == NULL);
    fmd_release(t);
    const char *e = fmd_error();
    int ok = strstr(e, path) != NULL && strstr(e, part) != NULL;
    if (!ok) fprintf(stderr, "error for %s: '%s' lacks '%s'\n", path, e, part);
    CHECK(ok);
}

static void test_formats(void) {
    const double exact = 1e-6, q8 = 0.5 / 255 + 1e-6;
    check_against_ref("src.png", "src.png", 0);
    check_against_ref("rgba8.png", "rgba8.ref.png", exact);
    check_against_ref("gray8.png", "gray8.ref.png", exact);
    check_against_ref("graya8.png", "graya8.ref.png", exact);
    check_against_ref("pal4.png", "pal4.ref.png", exact);
    check_against_ref("pal8.png", "pal8.ref.png", exact);
    check_against_ref("pal1.png", "pal1.ref.png", exact);
    check_against_ref("gray2.png", "gray2.ref.png", exact);
    check_against_ref("rgb16.png", "rgb16.ref.png", q8);
    check_against_ref("gray16.png", "gray16.ref.png", q8);
    check_against_ref("base.jpg", "base.jpg.ref.png", exact);
    check_against_ref("prog.jpg", "prog.jpg.ref.png", exact);
    check_against_ref("gray.jpg", "gray.jpg.ref.png", exact);
    /* PIL's CMYK -> RGB conversion rounds differently by a step */
    check_against_ref("cmyk.jpg", "cmyk.jpg.ref.png", 1.5 / 255);

    /* 16-bit keeps full precision */
    unsigned v[4] = {0};
    FILE *f = fopen(FIX "rgb16.first.txt", "r");
    CHECK(f && fscanf(f, "%u %u %u %u", &v[0], &v[1], &v[2], &v[3]) == 4);
    if (f) fclose(f);
    fmd_tensor *t = fmd_image_load(FIX "rgb16.png"), *g = fmd_image_load(FIX "gray16.png");
    CHECK(t && g);
    if (t && g) {
        int64_t plane = 20 * 24;
        for (int c = 0; c < 3; c++) CHECK_NEAR(fmd_data(t)[c * plane], v[c] / 65535.0, 1e-7);
        for (int c = 0; c < 3; c++) CHECK_NEAR(fmd_data(g)[c * plane + plane - 1], v[3] / 65535.0, 1e-7);
    }
    fmd_release(t);
    fmd_release(g);

    /* format by content: a JPEG named .png decodes */
    uint8_t buf[8192];
    size_t n = read_file(FIX "base.jpg", buf, sizeof buf);
    write_file(tpath("jpeg_named.png"), buf, n);
    fmd_tensor *a = fmd_image_load(tpath("jpeg_named.png")), *b = fmd_image_load(FIX "base.jpg");
    CHECK(a && b && max_diff(a, b) == 0);
    fmd_release(a);
    fmd_release(b);
    /* decode from memory */
    a = fmd_image_decode(buf, n, "mem.jpg");
    CHECK(a && a->shape[1] == 20 && a->shape[2] == 24);
    fmd_release(a);
}

static void test_broken(void) {
    uint8_t buf[8192];
    size_t npng = read_file(FIX "src.png", buf, sizeof buf);
    CHECK(npng > 100);
    write_file(tpath("trunc.png"), buf, npng / 2);
    expect_error(tpath("trunc.png"), "truncated");
    write_file(tpath("sig_only.png"), buf, 5);
    expect_error(tpath("sig_only.png"), "truncated");
    write_file(tpath("empty.png"), buf, 0);
    expect_error(tpath("empty.png"), "empty");
    write_file(tpath("text.png"), "hello, I am text\n", 17);
    expect_error(tpath("text.png"), "not a PNG or JPEG");
    uint8_t rnd[600];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof rnd; i++) { x = x * 1103515245u + 12345u; rnd[i] = (uint8_t)(x >> 16); }
    write_file(tpath("random.jpg"), rnd, sizeof rnd);
    expect_error(tpath("random.jpg"), "not a PNG or JPEG");
    /* PNG signature then garbage: libpng's error path */
    memcpy(rnd, buf, 8);
    write_file(tpath("garbage.png"), rnd, sizeof rnd);
    expect_error(tpath("garbage.png"), "bad PNG");
    /* damaged IDAT data (CRC error in a critical chunk) */
    uint8_t bad[8192];
    memcpy(bad, buf, npng);
    bad[npng - 30] ^= 0x55;
    write_file(tpath("crc.png"), bad, npng);
    expect_error(tpath("crc.png"), "bad PNG");

    size_t njpg = read_file(FIX "base.jpg", buf, sizeof buf);
    write_file(tpath("trunc.jpg"), buf, njpg * 2 / 3);
    expect_error(tpath("trunc.jpg"), "bad JPEG");
    write_file(tpath("head.jpg"), buf, 20);
    expect_error(tpath("head.jpg"), "bad JPEG");
    /* JPEG signature then garbage */
    memcpy(rnd, buf, 3);
    write_file(tpath("garbage.jpg"), rnd, sizeof rnd);
    expect_error(tpath("garbage.jpg"), "bad JPEG");

    expect_error(tpath("does_not_exist.png"), "cannot open");
    expect_error(tmpdir, "not a regular file");
    /* repeated failures leak nothing the engine counts */
    size_t before = fmd_bytes_in_use();
    for (int i = 0; i < 50; i++) {
        fmd_release(fmd_image_load(tpath("trunc.png")));
        fmd_release(fmd_image_load(tpath("trunc.jpg")));
    }
    CHECK(fmd_bytes_in_use() == before);
}

static void test_save(void) {
    fmd_tensor *src = fmd_image_load(FIX "src.png");
    CHECK(src != NULL);
    if (!src) return;
    CHECK(fmd_image_save_png(tpath("round.png"), src) == 0);
    fmd_tensor *back = fmd_image_load(tpath("round.png"));
    CHECK(max_diff(src, back) == 0);
    CHECK(access(tpath("round.png.tmp"), F_OK) != 0);
    fmd_release(back);

    /* gray from 1xHxW, values clamped */
    fmd_tensor *g = fmd_full(3, (int64_t[]){1, 4, 5}, 2.0f);
    fmd_data(g)[0] = -1.0f;
    CHECK(fmd_image_save_png(tpath("gray.png"), g) == 0);
    back = fmd_image_load(tpath("gray.png"));
    CHECK(back && back->shape[0] == 3 && back->shape[1] == 4 && back->shape[2] == 5);
    if (back) {
        CHECK(fmd_data(back)[0] == 0.0f && fmd_data(back)[1] == 1.0f);
        CHECK(fmd_data(back)[20] == 0.0f);   /* replicated into channel 2 */
    }
    fmd_release(back);
    fmd_release(g);

    /* uint8 values with maxval 255 */
    fmd_tensor *u = fmd_full(2, (int64_t[]){2, 3}, 51.0f);
    CHECK(fmd_image_save_png_scaled(tpath("u8.png"), u, 255.0f) == 0);
    back = fmd_image_load(tpath("u8.png"));
    CHECK(back && fabsf(fmd_data(back)[0] - 0.2f) < 1e-6f);
    fmd_release(back);
    fmd_release(u);

    /* non-contiguous (transposed H/W) is written as seen */
    fmd_tensor *tr = fmd_transpose(src, 1, 2);
    CHECK(fmd_image_save_png(tpath("tr.png"), tr) == 0);
    back = fmd_image_load(tpath("tr.png"));
    CHECK(back && back->shape[1] == 24 && back->shape[2] == 20);
    if (back) CHECK(fmd_data(back)[1] == fmd_data(src)[24]);
    fmd_release(back);
    fmd_release(tr);

    /* bad shapes and unwritable paths fail with a message */
    fmd_tensor *bad = fmd_zeros(3, (int64_t[]){2, 4, 4});
    CHECK(fmd_image_save_png(tpath("bad.png"), bad) == -1 && strstr(fmd_error(), "3xHxW"));
    fmd_release(bad);
    CHECK(fmd_image_save_png("/nonexistent_dir/x.png", src) == -1 && strstr(fmd_error(), "/nonexistent_dir/x.png"));
    fmd_release(src);
}

static void check_resize(const char *in, const char *ref, int64_t h, int64_t w) {
    char a[256], b[256];
    snprintf(a, sizeof a, FIX "%s", in);
    snprintf(b, sizeof b, FIX "%s", ref);
    fmd_tensor *src = fmd_image_load(a), *want = fmd_image_load(b);
    fmd_tensor *got8 = src ? fmd_image_resize(src, h, w, 1) : NULL;
    fmd_tensor *gotf = src ? fmd_image_resize(src, h, w, 0) : NULL;
    CHECK(got8 && gotf && want);
    double d8 = max_diff(got8, want), df = max_diff(gotf, want);
    /* 8-bit mode is PIL exactly; float mode differs only by PIL's roundings */
    if (d8 > 1e-6 || df > 1.01 / 255) fprintf(stderr, "resize %s: pil8 diff %g, float diff %g\n", ref, d8, df);
    CHECK(d8 <= 1e-6);
    CHECK(df <= 1.01 / 255);
    fmd_release(src); fmd_release(want); fmd_release(got8); fmd_release(gotf);
}

static void test_kernels(void) {
    check_resize("src.png", "resize_31x27.png", 27, 31);
    check_resize("src.png", "resize_9x7.png", 7, 9);
    check_resize("src.png", "resize_24x13.png", 13, 24);
    check_resize("src.png", "resize_5x20.png", 20, 5);
    check_resize("src21.png", "resize21_24x24.png", 24, 24);

    /* shrinking averages (antialias): 4x4 checkerboard -> 1x1 is the mean */
    fmd_tensor *cb = fmd_zeros(3, (int64_t[]){1, 4, 4});
    for (int i = 0; i < 16; i++) fmd_data(cb)[i] = ((i / 4 + i % 4) % 2) ? 1.0f : 0.0f;
    fmd_tensor *r = fmd_image_resize(cb, 1, 1, 0);
    CHECK(r && fabsf(fmd_data(r)[0] - 0.5f) < 1e-6f);
    fmd_release(r);
    fmd_release(cb);

    /* pad + crop: top/left may be negative (padding), fill outside */
    float v[12];
    for (int i = 0; i < 12; i++) v[i] = (float)(i + 1);
    fmd_tensor *x = fmd_from_floats(3, (int64_t[]){1, 3, 4}, v);
    fmd_tensor *c = fmd_image_pad_crop(x, -1, -2, 3, 4, 0.0f);
    /* row 0 is padding; row 1 = [0 0 1 2] */
    CHECK(c && fmd_data(c)[0] == 0 && fmd_data(c)[3] == 0);
    CHECK(c && fmd_data(c)[4] == 0 && fmd_data(c)[5] == 0 && fmd_data(c)[6] == 1 && fmd_data(c)[7] == 2);
    CHECK(c && fmd_data(c)[10] == 5 && fmd_data(c)[11] == 6);
    fmd_release(c);
    c = fmd_image_pad_crop(x, 1, 2, 3, 4, -7.0f);   /* [7 8 f f] [11 12 f f] [f f f f] */
    CHECK(c && fmd_data(c)[0] == 7 && fmd_data(c)[1] == 8 && fmd_data(c)[2] == -7 &&
          fmd_data(c)[4] == 11 && fmd_data(c)[8] == -7);
    fmd_release(c);
    fmd_tensor *f = fmd_image_hflip(x);
    CHECK(f && fmd_data(f)[0] == 4 && fmd_data(f)[3] == 1 && fmd_data(f)[4] == 8);
    fmd_release(f);
    float m = 1, s = 2;
    fmd_tensor *nrm = fmd_image_normalize(x, 1, &m, &s);
    CHECK(nrm && fmd_data(nrm)[0] == 0 && fmd_data(nrm)[11] == 5.5f);
    fmd_release(nrm);
    float m2[2] = {0, 0}, s0 = 0;
    CHECK(fmd_image_normalize(x, 2, m2, m2) == NULL && strstr(fmd_error(), "channels"));
    CHECK(fmd_image_normalize(x, 1, &m, &s0) == NULL && strstr(fmd_error(), "nonzero"));
    /* fused crop + flip + normalize in a chain = the kernels one by one */
    fmd_tensor *img = fmd_image_load(FIX "src.png");
    float mean[3] = {0.1f, 0.5f, 0.9f}, sd[3] = {0.2f, 0.3f, 0.4f};
    fmd_transform tf = {0};
    tf.ops[tf.n++] = (fmd_tf_op){.kind = FMD_TF_CENTER_CROP, .h = 26, .w = 23};
    tf.ops[tf.n++] = (fmd_tf_op){.kind = FMD_TF_HFLIP, .p = 1.0f};
    tf.ops[tf.n++] = (fmd_tf_op){.kind = FMD_TF_NORMALIZE, .nch = 3, .mean = {0.1f, 0.5f, 0.9f},
                                 .std = {0.2f, 0.3f, 0.4f}};
    fmd_rng rng;
    fmd_rng_seed(&rng, 1);
    fmd_tensor *fused = fmd_transform_apply(&tf, img, &rng);
    fmd_tensor *s1 = fmd_image_pad_crop(img, -3, 0, 26, 23, 0.0f);   /* 20x24 -> 26x23 */
    fmd_tensor *s2 = fmd_image_hflip(s1);
    fmd_tensor *s3 = fmd_image_normalize(s2, 3, mean, sd);
    CHECK(fused && s3 && max_diff(fused, s3) == 0);
    fmd_release(fused); fmd_release(s1); fmd_release(s2); fmd_release(s3); fmd_release(img);
    tf.ops[2].std[1] = 0;
    CHECK(fmd_transform_apply(&tf, x, &rng) == NULL && strstr(fmd_error(), "nonzero"));

    fmd_tensor *flat = fmd_zeros(2, (int64_t[]){3, 4});
    CHECK(fmd_image_resize(flat, 2, 2, 0) == NULL && strstr(fmd_error(), "C x H x W"));
    fmd_release(flat);
    fmd_release(x);
}

/* the course train recipe as a C transform */
static fmd_transform course_train(void) {
    fmd_transform tf = {0};
    tf.ops[tf.n++] = (fmd_tf_op){.kind = FMD_TF_RESIZE, .h = 32, .w = 32, .pil8 = 1};
    tf.ops[tf.n++] = (fmd_tf_op){.kind = FMD_TF_RANDOM_CROP, .h = 32, .w = 32, .pad = 4};
    tf.ops[tf.n++] = (fmd_tf_op){.kind = FMD_TF_HFLIP, .p = 0.5f};
    tf.ops[tf.n++] = (fmd_tf_op){.kind = FMD_TF_NORMALIZE, .nch = 3,
                                 .mean = {0.4914f, 0.4822f, 0.4465f}, .std = {0.2023f, 0.1994f, 0.2010f}};
    return tf;
}

/* all batches of one epoch concatenated */
static fmd_tensor *run_epoch(int n, const char **paths, const float *labels, int workers, int64_t bs,
                             int64_t epoch, float *labels_out, int *nbatches) {
    fmd_transform tf = course_train();
    fmd_loader_opts o = {.batch_size = bs, .shuffle = 1, .num_workers = workers, .seed = 7};
    fmd_loader *l = fmd_loader_new(n, paths, labels, &tf, &o);
    fmd_tensor *all = fmd_empty(4, (int64_t[]){n, 3, 32, 32});
    int64_t at = 0;
    *nbatches = 0;
    if (!l || fmd_loader_start(l, epoch)) { fmd_loader_free(l); fmd_release(all); return NULL; }
    fmd_tensor *im, *lb;
    int r;
    while ((r = fmd_loader_next(l, &im, &lb)) == 1) {
        memcpy(fmd_data(all) + at * 3 * 32 * 32, fmd_data(im), sizeof(float) * fmd_numel(im));
        memcpy(labels_out + at, fmd_data(lb), sizeof(float) * lb->shape[0]);
        at += im->shape[0];
        (*nbatches)++;
        fmd_release(im);
        fmd_release(lb);
    }
    fmd_loader_free(l);
    if (r != 0 || at != n) { fmd_release(all); return NULL; }
    return all;
}

static void test_loader(void) {
    const char *names[] = {"src.png", "base.jpg", "gray8.png", "pal8.png", "prog.jpg", "rgb16.png", "cmyk.jpg"};
    enum { N = 7 };
    char pbuf[N][128];
    const char *paths[N];
    float labels[N];
    for (int i = 0; i < N; i++) {
        snprintf(pbuf[i], sizeof pbuf[i], FIX "%s", names[i]);
        paths[i] = pbuf[i];
        labels[i] = (float)(i % 2);
    }
    float la[N], lb2[N], lc[N];
    int nb;
    fmd_tensor *a = run_epoch(N, paths, labels, 0, 3, 1, la, &nb);
    CHECK(a != NULL && nb == 3);
    fmd_tensor *b = run_epoch(N, paths, labels, 2, 3, 1, lb2, &nb);
    fmd_tensor *c = run_epoch(N, paths, labels, 1, 2, 1, lc, &nb);   /* other batch size */
    CHECK(b && c && nb == 4);
    /* same epoch + seed: identical however many workers or batch size */
    CHECK(max_diff(a, b) == 0 && memcmp(la, lb2, sizeof la) == 0);
    CHECK(max_diff(a, c) == 0 && memcmp(la, lc, sizeof la) == 0);
    fmd_release(b);
    fmd_release(c);
    /* another epoch shuffles differently */
    fmd_tensor *d = run_epoch(N, paths, labels, 2, 3, 2, lb2, &nb);
    CHECK(d && max_diff(a, d) > 0.1);
    fmd_release(d);

    /* sample k of the epoch = transform of order[k] with its own seed */
    int64_t order[N];
    fmd_loader_order(N, 1, 7, 1, order);
    int seen[N] = {0};
    for (int i = 0; i < N; i++) seen[order[i]]++;
    int perm = 1;
    for (int i = 0; i < N; i++) perm &= seen[i] == 1;
    CHECK(perm);
    fmd_transform tf = course_train();
    fmd_rng rng;
    fmd_rng_seed(&rng, fmd_sample_seed(7, 1, order[4]));
    fmd_tensor *img = fmd_image_load(paths[order[4]]);
    fmd_tensor *one = fmd_transform_apply(&tf, img, &rng);
    fmd_tensor *row = a ? fmd_select(a, 0, 4) : NULL;
    fmd_tensor *rowc = row ? fmd_contiguous(row) : NULL;
    CHECK(one && rowc && max_diff(one, rowc) == 0);
    CHECK(la[4] == labels[order[4]]);
    fmd_release(img); fmd_release(one); fmd_release(row); fmd_release(rowc);
    fmd_release(a);

    /* drop_last, and a broken file reaches the caller with its name */
    write_file(tpath("broken.png"), "not really", 10);
    const char *p2[5] = {paths[0], paths[1], paths[2], tpath("broken.png"), paths[3]};
    float l2[5] = {0, 0, 0, 1, 1};
    for (int workers = 0; workers <= 2; workers++) {
        fmd_transform t2 = course_train();
        fmd_loader_opts o = {.batch_size = 2, .drop_last = 1, .num_workers = workers, .seed = 1};
        fmd_loader *l = fmd_loader_new(5, p2, l2, &t2, &o);
        CHECK(l != NULL);
        if (!l) continue;
        CHECK(fmd_loader_start(l, 0) == 0);
        fmd_tensor *im, *lb;
        CHECK(fmd_loader_next(l, &im, &lb) == 1);
        CHECK(im && im->ndim == 4 && im->shape[0] == 2 && im->shape[1] == 3 && im->shape[2] == 32);
        CHECK(lb && lb->ndim == 1 && lb->shape[0] == 2);
        fmd_release(im); fmd_release(lb);
        CHECK(fmd_loader_next(l, &im, &lb) == -1);
        CHECK(strstr(fmd_error(), "broken.png") != NULL);
        CHECK(fmd_loader_next(l, &im, &lb) == -1);   /* sticky */
        /* restart, stop early after one batch: nothing left running */
        CHECK(fmd_loader_start(l, 1) == 0);
        CHECK(fmd_loader_next(l, &im, &lb) == 1);
        fmd_release(im); fmd_release(lb);
        fmd_loader_free(l);
    }

    /* images of different sizes without a resize: a clear error */
    fmd_transform none = {0};
    const char *p3[2] = {paths[0], FIX "resize_9x7.png"};
    fmd_loader_opts o = {.batch_size = 2, .num_workers = 1};
    fmd_loader *l = fmd_loader_new(2, p3, l2, &none, &o);
    fmd_tensor *im, *lb;
    CHECK(l && fmd_loader_start(l, 0) == 0 && fmd_loader_next(l, &im, &lb) == -1);
    CHECK(strstr(fmd_error(), "after the transform") != NULL);
    fmd_loader_free(l);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fmd_test_image_XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    size_t start = fmd_bytes_in_use();
    test_formats();
    test_broken();
    test_save();
    test_kernels();
    test_loader();
    CHECK(fmd_bytes_in_use() == start);   /* every tensor released */
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return TEST_SUMMARY();
}
