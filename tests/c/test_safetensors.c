/* safetensors: round trip, the Python-written fixture (every dtype), the
 * exact byte layout, and rejection of malformed files. Run from the source
 * dir (ctest does); scratch files go to /tmp. */
#include "fmd_impl.h"   /* the float16/bfloat16 converters are internal */
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char scratch[256];

static const char *tmp_path(const char *tag) {
    snprintf(scratch, sizeof scratch, "/tmp/fmd_test_st_%d_%s.safetensors", (int)getpid(), tag);
    return scratch;
}

static fmd_tensor *find(const fmd_tensor_dict *d, const char *name) {
    for (int i = 0; i < d->n; i++)
        if (!strcmp(d->names[i], name)) return d->tensors[i];
    return NULL;
}

static const char *meta(const fmd_tensor_dict *d, const char *key) {
    for (int i = 0; i < d->nmeta; i++)
        if (!strcmp(d->meta_keys[i], key)) return d->meta_vals[i];
    return NULL;
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(2); }
    fwrite(p, 1, n, f);
    fclose(f);
}

/* a file with the given JSON header and `data` bytes of zeros */
static void write_st(const char *path, const char *json, size_t data) {
    size_t h = strlen(json);
    unsigned char *buf = calloc(1, 8 + h + data);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, json, h);
    write_file(path, buf, 8 + h + data);
    free(buf);
}

/* load must fail with a message containing both the file name and `what` */
static void expect_fail(const char *path, const char *what) {
    fmd_tensor_dict d;
    int rc = fmd_safetensors_load(path, &d);
    CHECK(rc == -1);
    CHECK(d.n == 0 && d.nmeta == 0);
    const char *e = fmd_error();
    int ok = strstr(e, path) != NULL && strstr(e, what) != NULL;
    if (!ok) fprintf(stderr, "  error was: %s (wanted '%s')\n", e, what);
    CHECK(ok);
    remove(path);
}

static void test_half(void) {
    CHECK(fmd_half_to_float(0x3c00) == 1.0f);
    CHECK(fmd_half_to_float(0xc000) == -2.0f);
    CHECK(fmd_half_to_float(0x7bff) == 65504.0f);
    CHECK(fmd_half_to_float(0x0400) == ldexpf(1.0f, -14));        /* smallest normal */
    CHECK(fmd_half_to_float(0x0001) == ldexpf(1.0f, -24));        /* smallest subnormal */
    CHECK(fmd_half_to_float(0x03ff) == ldexpf(1023.0f, -24));     /* largest subnormal */
    CHECK(fmd_half_to_float(0x8000) == 0.0f && signbit(fmd_half_to_float(0x8000)));
    CHECK(isinf(fmd_half_to_float(0x7c00)) && fmd_half_to_float(0xfc00) < 0);
    CHECK(isnan(fmd_half_to_float(0x7e00)));
    CHECK(fmd_bf16_to_float(0x3f80) == 1.0f);
    CHECK(fmd_bf16_to_float(0xc020) == -2.5f);
}

static void test_roundtrip(void) {
    const char *path = tmp_path("rt");
    fmd_tensor_dict d;
    memset(&d, 0, sizeof d);
    float av[6] = {1, -2, 3.5f, 1e-30f, -0.0f, 12345.678f};
    fmd_tensor *a = fmd_from_floats(2, (int64_t[]){2, 3}, av);
    fmd_tensor *at = fmd_transpose(a, 0, 1);                 /* non-contiguous: saved as 3x2 values */
    fmd_tensor *s = fmd_full(0, NULL, 7.25f);                 /* 0-dim */
    fmd_tensor *e = fmd_zeros(2, (int64_t[]){0, 4});          /* no elements */
    CHECK(a && at && s && e);
    CHECK(fmd_tensor_dict_add(&d, "zeta.weight", a) == 0);
    CHECK(fmd_tensor_dict_add(&d, "alpha.t", at) == 0);
    CHECK(fmd_tensor_dict_add(&d, "scalar", s) == 0);
    CHECK(fmd_tensor_dict_add(&d, "empty", e) == 0);
    CHECK(fmd_tensor_dict_add(&d, "scalar", s) == -1);       /* duplicate */
    CHECK(fmd_tensor_dict_add_meta(&d, "epoch", "3") == 0);
    CHECK(fmd_tensor_dict_add_meta(&d, "model", "Xception \"quoted\" \xc3\xa9") == 0);
    CHECK(fmd_safetensors_save(path, &d) == 0);

    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0);                            /* renamed away */

    /* layout: u64 header length (multiple of 8), JSON starting with the
     * metadata, tensors in name order with contiguous offsets */
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    unsigned char raw[4096];
    size_t n = f ? fread(raw, 1, sizeof raw, f) : 0;
    if (f) fclose(f);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = (h << 8) | raw[i];
    CHECK(h % 8 == 0);
    CHECK(n == 8 + h + 4 * (6 + 6 + 1));
    CHECK(raw[8] == '{');
    CHECK(raw[8 + h - 1] == ' ' || raw[8 + h - 1] == '}');
    char *hdr = calloc(1, h + 1);
    memcpy(hdr, raw + 8, h);
    CHECK(strncmp(hdr, "{\"__metadata__\":{\"epoch\":\"3\"", 28) == 0);
    char *pa = strstr(hdr, "\"alpha.t\""), *pe = strstr(hdr, "\"empty\""), *pz = strstr(hdr, "\"zeta.weight\"");
    CHECK(pa && pe && pz && pa < pe && pe < pz);
    CHECK(strstr(hdr, "\"alpha.t\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]}") != NULL);
    CHECK(strstr(hdr, "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[24,24]}") != NULL);
    CHECK(strstr(hdr, "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[24,28]}") != NULL);
    free(hdr);
    float first;
    memcpy(&first, raw + 8 + h + 4, 4);                       /* alpha.t[0][1] = a[1][0] */
    CHECK(first == av[3]);

    fmd_tensor_dict r;
    CHECK(fmd_safetensors_load(path, &r) == 0);
    CHECK(r.n == 4 && r.nmeta == 2);
    fmd_tensor *ra = find(&r, "zeta.weight"), *rt = find(&r, "alpha.t"), *rs = find(&r, "scalar"), *re = find(&r, "empty");
    CHECK(ra && rt && rs && re);
    if (ra && rt && rs && re) {
        CHECK(ra->ndim == 2 && ra->shape[0] == 2 && ra->shape[1] == 3);
        CHECK(memcmp(fmd_data(ra), av, sizeof av) == 0);      /* bit-exact, -0 included */
        CHECK(rt->ndim == 2 && rt->shape[0] == 3 && rt->shape[1] == 2);
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 2; j++) CHECK(fmd_data(rt)[i * 2 + j] == av[j * 3 + i]);
        CHECK(rs->ndim == 0 && fmd_data(rs)[0] == 7.25f);
        CHECK(re->ndim == 2 && re->shape[0] == 0 && re->shape[1] == 4);
    }
    CHECK(meta(&r, "epoch") && !strcmp(meta(&r, "epoch"), "3"));
    CHECK(meta(&r, "model") && !strcmp(meta(&r, "model"), "Xception \"quoted\" \xc3\xa9"));
    fmd_tensor_dict_free(&r);
    CHECK(r.n == 0 && r.names == NULL);

    /* overwriting an existing file works (rename over it) */
    CHECK(fmd_safetensors_save(path, &d) == 0);
    remove(path);

    /* save errors */
    CHECK(fmd_safetensors_save("/nonexistent_dir_fmd/x.safetensors", &d) == -1);
    CHECK(strstr(fmd_error(), "/nonexistent_dir_fmd/x.safetensors.tmp") != NULL);
    fmd_tensor_dict bad;
    memset(&bad, 0, sizeof bad);
    CHECK(fmd_tensor_dict_add(&bad, "__metadata__", a) == 0);
    CHECK(fmd_safetensors_save(path, &bad) == -1);
    CHECK(strstr(fmd_error(), "reserved") != NULL);
    CHECK(access(path, F_OK) != 0);
    fmd_tensor_dict_free(&bad);

    fmd_tensor_dict_free(&d);
    fmd_release(a);
    fmd_release(at);
    fmd_release(s);
    fmd_release(e);
}

/* written by tests/fixtures/make_pth.py's pure-Python writer */
static void test_python_fixture(void) {
    fmd_tensor_dict d;
    int rc = fmd_safetensors_load("tests/fixtures/pth/state.safetensors", &d);
    if (rc) fprintf(stderr, "  %s\n", fmd_error());
    CHECK(rc == 0);
    if (rc) return;
    CHECK(d.n == 17);
    CHECK(meta(&d, "source") && !strcmp(meta(&d, "source"), "make_pth.py"));
    fmd_tensor *t;
    CHECK((t = find(&d, "extra.half")) && t->ndim == 1 && t->shape[0] == 4);
    if (t) { const float *v = fmd_data(t); CHECK(v[0] == 0.5f && v[1] == -1.25f && v[2] == 3.0f && v[3] == 65504.0f); }
    CHECK((t = find(&d, "extra.bf16")) && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 2);
    /* 1e10 rounds to 9999220736 in bfloat16 */
    if (t) { const float *v = fmd_data(t); CHECK(v[0] == 1.0f && v[1] == -2.5f && v[2] == 0.15625f && v[3] == 9999220736.0f); }
    CHECK((t = find(&d, "extra.double")));
    if (t) { const float *v = fmd_data(t); CHECK(v[0] == (float)(1.0 / 3.0) && v[1] == (float)-2e-8 && v[2] == (float)1e30); }
    CHECK((t = find(&d, "extra.int32")));
    if (t) { const float *v = fmd_data(t); CHECK(v[0] == -7 && v[1] == 0 && v[2] == 123456); }
    CHECK((t = find(&d, "extra.uint8")));
    if (t) { const float *v = fmd_data(t); CHECK(v[0] == 0 && v[1] == 17 && v[2] == 255); }
    CHECK((t = find(&d, "extra.bool")));
    if (t) { const float *v = fmd_data(t); CHECK(v[0] == 1 && v[1] == 0 && v[2] == 1); }
    CHECK((t = find(&d, "extra.scalar")) && t->ndim == 0 && fmd_data(t)[0] == 2.5f);
    CHECK((t = find(&d, "extra.empty")) && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 3);
    CHECK((t = find(&d, "bn1.num_batches_tracked")) && t->ndim == 0 && fmd_data(t)[0] == 7);   /* I64 */
    CHECK((t = find(&d, "conv1.weight")) && t->ndim == 4 && t->shape[0] == 3 && t->shape[1] == 2);
    fmd_tensor_dict_free(&d);
}

static void test_malformed(void) {
    const char *p;
    fmd_tensor_dict d;

    CHECK(fmd_safetensors_load("/nonexistent_fmd.safetensors", &d) == -1);
    CHECK(strstr(fmd_error(), "/nonexistent_fmd.safetensors") != NULL);
    CHECK(fmd_safetensors_load("tests/fixtures/pth", &d) == -1);
    CHECK(strstr(fmd_error(), "not a regular file") != NULL);

    p = tmp_path("short");
    write_file(p, "\x10\x00", 2);
    expect_fail(p, "too short");

    p = tmp_path("hlen");   /* header length far beyond the file */
    write_file(p, "\x00\x00\x00\x00\x01\x00\x00\x00{}", 10);
    expect_fail(p, "beyond the end of the file");

    p = tmp_path("json");
    write_st(p, "{\"a\":{\"dtype\":\"F32\",", 0);
    expect_fail(p, "not valid JSON");

    p = tmp_path("notobj");
    write_st(p, "[1,2]   ", 0);
    expect_fail(p, "does not start with '{'");

    p = tmp_path("dtype");
    write_st(p, "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
    expect_fail(p, "dtype 'F8_E4M3'");

    p = tmp_path("count");   /* 2x3 F32 needs 24 bytes, offsets give 20 */
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24);
    expect_fail(p, "needs 24 bytes");

    p = tmp_path("range");
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 16);
    expect_fail(p, "beyond the data");

    p = tmp_path("overlap");
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16);
    expect_fail(p, "overlap");

    p = tmp_path("order");
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4);
    expect_fail(p, "begin <= end");

    p = tmp_path("shape");
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4);
    expect_fail(p, "shape entry 1");

    p = tmp_path("missing");
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4);
    expect_fail(p, "data_offsets");

    p = tmp_path("meta");
    write_st(p, "{\"__metadata__\":{\"epoch\":3}}", 0);
    expect_fail(p, "not a string");

    p = tmp_path("dup");
    write_st(p, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2);
    expect_fail(p, "duplicate");

    p = tmp_path("junk");
    write_st(p, "{}xx", 0);
    expect_fail(p, "junk");

    /* a valid file with a gap-free empty dict loads as nothing */
    p = tmp_path("empty");
    write_st(p, "{}      ", 0);
    CHECK(fmd_safetensors_load(p, &d) == 0 && d.n == 0);
    fmd_tensor_dict_free(&d);
    remove(p);
}

int main(void) {
    test_half();
    test_roundtrip();
    test_python_fixture();
    test_malformed();
    return TEST_SUMMARY();
}
