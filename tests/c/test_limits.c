/* Checked sizes at the limits (2^31, 2^32, 2^53, 2^63 and their products):
 * fmd_check_shape, tensor creation and views, and crafted .pth (legacy
 * pickle) files whose shapes, strides or storage sizes would wrap int64, or
 * whose shared containers would make the walk exponential. Each case must
 * fail with a clear message, never crash (run under ASan+UBSan too). */
#include "fmd_impl.h"   /* the checked-size helpers are internal */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define P31 ((int64_t)1 << 31)
#define P32 ((int64_t)1 << 32)
#define P40 ((int64_t)1 << 40)
#define P53 ((int64_t)1 << 53)
#define P62 ((int64_t)1 << 62)

static int has(const char *part) {
    int ok = strstr(fmd_error(), part) != NULL;
    if (!ok) fprintf(stderr, "  error was: %s (wanted '%s')\n", fmd_error(), part);
    return ok;
}

static void test_checked(void) {
    int64_t r;
    CHECK(fmd_checked_mul(P31, P31, &r) == 0 && r == P62);
    CHECK(fmd_checked_mul(P32, P32, &r) == -1);
    CHECK(fmd_checked_mul(P53, 512, &r) == 0 && r == P62);
    CHECK(fmd_checked_mul(P53, 1024, &r) == -1);
    CHECK(fmd_checked_mul(INT64_MAX, 2, &r) == -1);
    CHECK(fmd_checked_mul(INT64_MIN, -1, &r) == -1);
    CHECK(fmd_checked_add(INT64_MAX, 1, &r) == -1);
    CHECK(fmd_checked_add(P62, P62 - 1, &r) == 0 && r == INT64_MAX);

    int64_t n;
    CHECK(fmd_check_shape("t", 2, (int64_t[]){P31, P31}, &n) == -1 && has("t: shape [2147483648 x 2147483648] is too large"));
    CHECK(fmd_check_shape("t", 2, (int64_t[]){P32, P32}, &n) == -1);
    CHECK(fmd_check_shape("t", 1, (int64_t[]){P53}, &n) == 0 && n == P53);
    CHECK(fmd_check_shape("t", 1, (int64_t[]){P53 + 1}, &n) == -1);
    CHECK(fmd_check_shape("t", 1, (int64_t[]){INT64_MAX}, &n) == -1);
    CHECK(fmd_check_shape("t", 3, (int64_t[]){0, P40, P40}, &n) == -1 && has("sizes 0 count as 1"));
    CHECK(fmd_check_shape("t", 3, (int64_t[]){0, (int64_t)1 << 26, (int64_t)1 << 27}, &n) == 0 && n == 0);
    CHECK(fmd_check_shape("t", 2, (int64_t[]){-1, 2}, &n) == -1 && has("negative"));
    CHECK(fmd_check_shape("t", 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, &n) == -1);
    /* 8 dims of 2^7 = 2^56: each size is small, the product is not */
    int64_t s8[8];
    for (int i = 0; i < 8; i++) s8[i] = 128;
    CHECK(fmd_check_shape("t", 8, s8, &n) == -1);
}

static void test_tensors(void) {
    fmd_tensor *z = fmd_zeros(1, (int64_t[]){0});
    /* the reproducer: 2^32 * 2^32 wrapped to 0 = numel of zeros(0) */
    CHECK(fmd_view(z, 2, (int64_t[]){P32, P32}) == NULL && has("view: shape [4294967296 x 4294967296] is too large"));
    CHECK(fmd_view(z, 3, (int64_t[]){P32, P32, -1}) == NULL && has("too large"));
    CHECK(fmd_view(z, 3, (int64_t[]){0, P40, P40}) == NULL && has("too large"));
    fmd_tensor *v = fmd_view(z, 3, (int64_t[]){0, (int64_t)1 << 26, (int64_t)1 << 27});
    CHECK(v && v->stride[0] == P53 && v->stride[1] == (int64_t)1 << 27 && v->stride[2] == 1);
    fmd_release(v);
    CHECK(fmd_zeros(3, (int64_t[]){0, P40, P40}) == NULL && has("zeros: shape"));
    v = fmd_empty(3, (int64_t[]){0, (int64_t)1 << 26, (int64_t)1 << 27});
    CHECK(v && fmd_numel(v) == 0 && v->stride[0] == P53);
    fmd_release(v);
    fmd_release(z);

    fmd_tensor *one = fmd_full(1, (int64_t[]){1}, 2.0f);
    CHECK(fmd_expand(one, 2, (int64_t[]){P32, P32}) == NULL && has("expand: shape"));
    v = fmd_expand(one, 2, (int64_t[]){(int64_t)1 << 26, (int64_t)1 << 27});   /* 2^53: allowed, no memory */
    CHECK(v && fmd_numel(v) == P53 && v->stride[0] == 0);
    CHECK(v && fmd_narrow(v, 0, P62, P62) == NULL && has("out of bounds"));
    CHECK(v && fmd_narrow(v, 0, INT64_MAX, 1) == NULL);
    fmd_release(v);
    fmd_release(one);

    /* allocations beyond the storage limit fail before malloc (ASan would abort) */
    CHECK(fmd_empty(1, (int64_t[]){P53}) == NULL && has("more than the limit"));
    CHECK(fmd_zeros(2, (int64_t[]){P31, 1024}) == NULL && has("FMD_MAX_TENSOR_BYTES"));
    CHECK(fmd_max_storage_bytes() <= (UINT64_C(1) << 39) || getenv("FMD_MAX_TENSOR_BYTES"));
    CHECK(fmd_arange(0, 1e300, 1e-300) == NULL && has("2^53"));
    CHECK(fmd_arange(0, (double)P53 * 2, 1) == NULL);
}

/* ---------------------------------------------- crafted legacy .pth files */
typedef struct { uint8_t b[1 << 16]; size_t n; } buf;
static void put(buf *o, const void *p, size_t n) { memcpy(o->b + o->n, p, n); o->n += n; }
static void op(buf *o, int c) { o->b[o->n++] = (uint8_t)c; }
static void str(buf *o, const char *s) {   /* BINUNICODE */
    uint32_t n = (uint32_t)strlen(s);
    op(o, 'X');
    for (int i = 0; i < 4; i++) op(o, (int)(n >> (8 * i)) & 0xff);
    put(o, s, n);
}
static void i64(buf *o, int64_t v) {   /* LONG1 with 8 bytes */
    op(o, 0x8a); op(o, 8);
    for (int i = 0; i < 8; i++) op(o, (int)((uint64_t)v >> (8 * i)) & 0xff);
}
static void tuple(buf *o, int n, const int64_t *v) { op(o, '('); for (int i = 0; i < n; i++) i64(o, v[i]); op(o, 't'); }

/* _rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', numel), 0, size, stride, False, ()) */
static void tensor(buf *o, int64_t numel, int nd, const int64_t *size, const int64_t *stride) {
    const char *g = "ctorch._utils\n_rebuild_tensor_v2\n";
    put(o, g, strlen(g));
    op(o, '(');
    op(o, '('); str(o, "storage");
    const char *fs = "ctorch\nFloatStorage\n";
    put(o, fs, strlen(fs));
    str(o, "0"); str(o, "cpu"); i64(o, numel); op(o, 't');
    op(o, 'Q');
    op(o, 'K'); op(o, 0);
    tuple(o, nd, size);
    tuple(o, nd, stride);
    op(o, 0x89); op(o, ')');
    op(o, 't'); op(o, 'R');
}

/* magic, version, sys_info, the object (body, a complete pickle), the key
 * list and (when nkeys) storage '0' with `count` floats but no data */
static const char *write_pth(const buf *body, int nkeys, uint64_t count) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/fmd_limits_%d.pth", (int)getpid());
    buf o = {.n = 0};
    static const uint8_t magic[] = {0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
    put(&o, magic, sizeof magic);
    static const uint8_t ver[] = {0x80, 2, 'M', 0xe9, 0x03, '.', 0x80, 2, '}', '.'};
    put(&o, ver, sizeof ver);
    put(&o, body->b, body->n);
    op(&o, 0x80); op(&o, 2); op(&o, ']');
    if (nkeys) { str(&o, "0"); op(&o, 'a'); }
    op(&o, '.');
    if (nkeys) for (int i = 0; i < 8; i++) op(&o, (int)(count >> (8 * i)) & 0xff);
    op(&o, 0); op(&o, 0); op(&o, 0); op(&o, 0);   /* one float of data */
    FILE *f = fopen(path, "wb");
    fwrite(o.b, 1, o.n, f);
    fclose(f);
    return path;
}

static void expect_pth(const buf *body, int nkeys, uint64_t count, const char *part) {
    const char *path = write_pth(body, nkeys, count);
    fmd_tensor_dict d;
    int rc = fmd_pth_load(path, &d);
    CHECK(rc == -1 && d.n == 0);
    CHECK(strstr(fmd_error(), path) != NULL);
    CHECK(has(part));
    if (rc == 0) fmd_tensor_dict_free(&d);
    unlink(path);
}

/* {'w': tensor} */
static void one_tensor(buf *o, int64_t numel, int nd, const int64_t *size, const int64_t *stride) {
    o->n = 0;
    op(o, 0x80); op(o, 2); op(o, '}');
    str(o, "w");
    tensor(o, numel, nd, size, stride);
    op(o, 's'); op(o, '.');
}

static void test_pth(void) {
    buf body;
    /* a sane one first, so the crafting itself is known to work */
    one_tensor(&body, 1, 1, (int64_t[]){1}, (int64_t[]){1});
    const char *path = write_pth(&body, 1, 1);
    fmd_tensor_dict d;
    int rc = fmd_pth_load(path, &d);
    if (rc) fprintf(stderr, "  %s\n", fmd_error());
    CHECK(rc == 0 && d.n == 1 && fmd_numel(d.tensors[0]) == 1);
    if (rc == 0) fmd_tensor_dict_free(&d);
    unlink(path);

    /* empty tensor whose contiguous strides would be 2^80 */
    one_tensor(&body, 0, 3, (int64_t[]){0, P40, P40}, (int64_t[]){1, 1, 1});
    expect_pth(&body, 1, 0, "too large");
    /* a stride-0 view of one float claiming 2^62 elements */
    one_tensor(&body, 1, 2, (int64_t[]){P31, P31}, (int64_t[]){0, 0});
    expect_pth(&body, 1, 1, "too large");
    /* 2^32 x 2^32: the element count itself wraps */
    one_tensor(&body, 1, 2, (int64_t[]){P32, P32}, (int64_t[]){0, 0});
    expect_pth(&body, 1, 1, "reaches element");
    /* a stride whose span wraps int64 */
    one_tensor(&body, 1, 1, (int64_t[]){3}, (int64_t[]){P62});
    expect_pth(&body, 1, 1, "reaches element");
    /* storage sizes whose byte count would wrap (2^62 * 4) */
    one_tensor(&body, P62, 1, (int64_t[]){1}, (int64_t[]){1});
    expect_pth(&body, 1, (uint64_t)P62, "beyond fmd's limit of 2^53");
    one_tensor(&body, INT64_MAX, 1, (int64_t[]){1}, (int64_t[]){1});
    expect_pth(&body, 1, (uint64_t)INT64_MAX, "beyond fmd's limit");
    /* a storage of 2^53 floats in a 100-byte file */
    one_tensor(&body, P53, 1, (int64_t[]){1}, (int64_t[]){1});
    expect_pth(&body, 1, (uint64_t)P53, "truncated");

    /* {'state_dict': d} with d['a'] = d['b'] = d: without a bound the search
     * for tensors takes 2^64 steps */
    body.n = 0;
    op(&body, 0x80); op(&body, 2); op(&body, '}');
    str(&body, "state_dict");
    op(&body, '}'); op(&body, 'q'); op(&body, 0);
    str(&body, "a"); op(&body, 'h'); op(&body, 0); op(&body, 's');
    str(&body, "b"); op(&body, 'h'); op(&body, 0); op(&body, 's');
    op(&body, 's'); op(&body, '.');
    expect_pth(&body, 0, 0, "nested more than 64 deep");

    /* a DAG of 40 lists, each holding the previous one twice: 2^40 paths */
    body.n = 0;
    op(&body, 0x80); op(&body, 2); op(&body, '}');
    str(&body, "x");
    op(&body, ']'); op(&body, 'q'); op(&body, 0);
    for (int k = 0; k < 40; k++) {
        op(&body, 0x30);   /* POP the memoized previous list from the stack */
        op(&body, ']'); op(&body, '('); op(&body, 'h'); op(&body, k); op(&body, 'h'); op(&body, k);
        op(&body, 'e'); op(&body, 'q'); op(&body, k + 1);
    }
    op(&body, 's'); op(&body, '.');
    expect_pth(&body, 0, 0, "more than 2^20");
}

int main(void) {
    test_checked();
    test_tensors();
    test_pth();
    return TEST_SUMMARY();
}
