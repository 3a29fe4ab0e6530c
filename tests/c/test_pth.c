/* PyTorch checkpoints: the fixtures of tests/fixtures/make_pth.py in both
 * formats must equal the values the same script wrote to safetensors files;
 * refused and damaged files must fail with a clear message and no crash. */
#include "fmd.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIX "tests/fixtures/pth/"

static fmd_tensor *find(const fmd_tensor_dict *d, const char *name) {
    for (int i = 0; i < d->n; i++)
        if (!strcmp(d->names[i], name)) return d->tensors[i];
    return NULL;
}

/* every tensor of `expected` is in `got` with the same shape and the very
 * same float values (both sides convert the same source dtype) */
static int same_dicts(const fmd_tensor_dict *got, const fmd_tensor_dict *expected) {
    int ok = got->n == expected->n;
    if (!ok) fprintf(stderr, "  %d tensors, expected %d\n", got->n, expected->n);
    for (int i = 0; i < expected->n; i++) {
        const fmd_tensor *e = expected->tensors[i], *g = find(got, expected->names[i]);
        if (!g) { fprintf(stderr, "  missing %s\n", expected->names[i]); ok = 0; continue; }
        int same = g->ndim == e->ndim && fmd_numel(g) == fmd_numel(e) && fmd_is_contiguous(g);
        for (int k = 0; same && k < e->ndim; k++) same = g->shape[k] == e->shape[k];
        if (same && fmd_numel(e))
            same = memcmp(fmd_data(g), fmd_data(e), (size_t)fmd_numel(e) * sizeof(float)) == 0;
        if (!same) { fprintf(stderr, "  %s differs\n", expected->names[i]); ok = 0; }
    }
    return ok;
}

static void check_against(const char *pth, const char *st) {
    fmd_tensor_dict g, e;
    int rc = fmd_pth_load(pth, &g);
    if (rc) fprintf(stderr, "  %s\n", fmd_error());
    CHECK(rc == 0);
    CHECK(fmd_safetensors_load(st, &e) == 0);
    if (rc == 0) {
        int ok = same_dicts(&g, &e);
        if (!ok) fprintf(stderr, "  (%s vs %s)\n", pth, st);
        CHECK(ok);
    }
    fmd_tensor_dict_free(&g);
    fmd_tensor_dict_free(&e);
}

/* must fail, naming the file and `what` */
static void expect_fail(const char *path, const char *what) {
    fmd_tensor_dict d;
    int rc = fmd_pth_load(path, &d);
    CHECK(rc == -1);
    CHECK(d.n == 0);
    const char *e = fmd_error();
    int ok = strstr(e, path) && strstr(e, what);
    if (!ok) fprintf(stderr, "  error was: %s (wanted '%s')\n", e, what);
    CHECK(ok);
}

static void test_formats(void) {
    check_against(FIX "state_zip.pth", FIX "state.safetensors");
    check_against(FIX "state_legacy.pth", FIX "state.safetensors");
    check_against(FIX "state_deflate.pth", FIX "state.safetensors");
    check_against(FIX "nested_legacy.pth", FIX "state.safetensors");
    check_against(FIX "nested_zip.pth", FIX "state.safetensors");
    check_against(FIX "shared_zip.pth", FIX "shared.safetensors");
    check_against(FIX "shared_legacy.pth", FIX "shared.safetensors");
    /* Python 2 / torch 0.3 style: byte-string names, OrderedDict from pairs,
     * _rebuild_tensor, torch.cuda.FloatStorage, a storage view */
    check_against(FIX "old_style.pth", FIX "old_style.safetensors");

    /* names keep the state dict's order */
    fmd_tensor_dict d;
    CHECK(fmd_pth_load(FIX "state_legacy.pth", &d) == 0);
    static const char *const first[] = {"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                                        "bn1.running_var", "bn1.num_batches_tracked", "fc.weight", "fc.bias"};
    for (int i = 0; i < 8 && i < d.n; i++) CHECK(!strcmp(d.names[i], first[i]));
    fmd_tensor *t = find(&d, "bn1.num_batches_tracked");
    CHECK(t && t->ndim == 0 && fmd_data(t)[0] == 7.0f);
    fmd_tensor_dict_free(&d);

    /* a training checkpoint: only the nested state dict, without "module." */
    CHECK(fmd_pth_load(FIX "nested_zip.pth", &d) == 0);
    CHECK(d.n == 17);
    CHECK(d.n > 0 && !strcmp(d.names[0], "conv1.weight"));
    for (int i = 0; i < d.n; i++) CHECK(strncmp(d.names[i], "module.", 7) != 0 && !strstr(d.names[i], "optimizer"));
    fmd_tensor_dict_free(&d);

    /* shared storage: the views are independent copies */
    CHECK(fmd_pth_load(FIX "shared_zip.pth", &d) == 0);
    fmd_tensor *base = find(&d, "base"), *tr = find(&d, "t");
    CHECK(base && tr && base->storage != tr->storage);
    if (tr) CHECK(tr->ndim == 2 && tr->shape[0] == 6 && tr->shape[1] == 4 && fmd_data(tr)[1] == fmd_data(base)[6]);
    fmd_tensor_dict_free(&d);
}

static void test_refused(void) {
    expect_fail(FIX "evil.pth", "refusing global 'posix.system'");
    expect_fail(FIX "evil_class.pth", "refusing global '__main__.Custom'");
    expect_fail(FIX "evil_class.pth", "save model.state_dict()");
    expect_fail(FIX "truncated_zip.pth", "truncated");
    expect_fail(FIX "truncated_legacy.pth", "truncated");
    expect_fail(FIX "state.safetensors", "not a PyTorch checkpoint");
    fmd_tensor_dict d;
    CHECK(fmd_pth_load("/nonexistent_fmd.pth", &d) == -1);
    CHECK(strstr(fmd_error(), "/nonexistent_fmd.pth") != NULL);
    expect_fail(FIX, "not a regular file");
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n);
    if (b && fread(b, 1, *n, f) != *n) { free(b); b = NULL; }
    fclose(f);
    return b;
}

/* every prefix of the files, and every byte changed, must load or fail
 * cleanly (run under FMD_SANITIZE to see memory errors) */
static void test_damage(const char *src, int flips) {
    size_t n;
    unsigned char *b = slurp(src, &n);
    CHECK(b != NULL);
    if (!b) return;
    char path[256];
    snprintf(path, sizeof path, "/tmp/fmd_test_pth_%d.pth", (int)getpid());
    int failed_prefix = 0, prefixes = 0, loaded = 0;
    for (size_t len = 0; len < n; len += 1 + len / 64) {
        FILE *f = fopen(path, "wb");
        fwrite(b, 1, len, f);
        fclose(f);
        fmd_tensor_dict d;
        prefixes++;
        if (fmd_pth_load(path, &d) == -1) failed_prefix++;
        fmd_tensor_dict_free(&d);
    }
    CHECK(failed_prefix == prefixes);   /* no strict prefix is a valid file */
    for (size_t i = 0; flips && i < n; i++) {
        unsigned char save = b[i];
        b[i] = (unsigned char)(save ^ (i % 2 ? 0xff : 0x01));
        FILE *f = fopen(path, "wb");
        fwrite(b, 1, n, f);
        fclose(f);
        b[i] = save;
        fmd_tensor_dict d;
        if (fmd_pth_load(path, &d) == 0) loaded++;
        else CHECK(strstr(fmd_error(), path) != NULL);
        fmd_tensor_dict_free(&d);
    }
    printf("%s: %d prefixes refused; %d of %zu one-byte changes still load\n", src, failed_prefix, loaded, flips ? n : 0);
    remove(path);
    free(b);
}

int main(void) {
    test_formats();
    test_refused();
    test_damage(FIX "state_legacy.pth", 1);
    test_damage(FIX "shared_zip.pth", 1);
    test_damage(FIX "old_style.pth", 1);
    test_damage(FIX "state_deflate.pth", 0);
    return TEST_SUMMARY();
}
