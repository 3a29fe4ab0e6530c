/*
 * safetensors.c - the safetensors file format (https://github.com/huggingface/safetensors)
 * and the fmd_tensor_dict container shared with pth.c.
 *
 * Layout: u64 little-endian N, then N bytes of JSON header
 *   {"__metadata__": {"k": "v"}, "name": {"dtype": "F32", "shape": [2, 3],
 *    "data_offsets": [begin, end]}, ...}
 * then the data buffer; offsets are relative to the buffer start. Like the
 * reference writer we pad the header with spaces to a multiple of 8 bytes
 * (so the data is aligned) and lay tensors out contiguously in name order.
 */
#include "fmd_impl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* the reference implementation refuses headers above 100 MB; so do we */
#define ST_MAX_HEADER (100u * 1000 * 1000)

/* ------------------------------------------------------------ tensor dict */
void fmd_tensor_dict_free(fmd_tensor_dict *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) {
        free(d->names[i]);
        fmd_release(d->tensors[i]);
    }
    for (int i = 0; i < d->nmeta; i++) {
        free(d->meta_keys[i]);
        free(d->meta_vals[i]);
    }
    free(d->names);
    free(d->tensors);
    free(d->meta_keys);
    free(d->meta_vals);
    memset(d, 0, sizeof *d);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *r = malloc(n);
    if (r) memcpy(r, s, n);
    return r;
}

int fmd_tensor_dict_add(fmd_tensor_dict *d, const char *name, fmd_tensor *t) {
    if (!name || !t) return fmd_fail("tensor dict: NULL name or tensor");
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->names[i], name) == 0) return fmd_fail("tensor dict: duplicate name '%s'", name);
    char **names = realloc(d->names, (size_t)(d->n + 1) * sizeof *names);
    if (!names) return fmd_fail("tensor dict: out of memory");
    d->names = names;
    fmd_tensor **ts = realloc(d->tensors, (size_t)(d->n + 1) * sizeof *ts);
    if (!ts) return fmd_fail("tensor dict: out of memory");
    d->tensors = ts;
    char *copy = dup_str(name);
    if (!copy) return fmd_fail("tensor dict: out of memory");
    d->names[d->n] = copy;
    d->tensors[d->n] = fmd_retain(t);
    d->n++;
    return 0;
}

int fmd_tensor_dict_add_meta(fmd_tensor_dict *d, const char *key, const char *val) {
    if (!key || !val) return fmd_fail("tensor dict: NULL metadata key or value");
    for (int i = 0; i < d->nmeta; i++)
        if (strcmp(d->meta_keys[i], key) == 0) return fmd_fail("tensor dict: duplicate metadata key '%s'", key);
    char **ks = realloc(d->meta_keys, (size_t)(d->nmeta + 1) * sizeof *ks);
    if (!ks) return fmd_fail("tensor dict: out of memory");
    d->meta_keys = ks;
    char **vs = realloc(d->meta_vals, (size_t)(d->nmeta + 1) * sizeof *vs);
    if (!vs) return fmd_fail("tensor dict: out of memory");
    d->meta_vals = vs;
    char *k = dup_str(key), *v = dup_str(val);
    if (!k || !v) { free(k); free(v); return fmd_fail("tensor dict: out of memory"); }
    d->meta_keys[d->nmeta] = k;
    d->meta_vals[d->nmeta] = v;
    d->nmeta++;
    return 0;
}

/* ------------------------------------------------------- dtype conversion */
float fmd_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);            /* inf / nan */
    } else if (exp) {
        bits = sign | ((exp + 112) << 23) | (man << 13);    /* normal: rebias 15 -> 127 */
    } else if (man) {                                        /* subnormal: normalise */
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    } else {
        bits = sign;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float fmd_bf16_to_float(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

typedef enum { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL, ST_NTYPES } st_dtype;
static const char *const st_names[ST_NTYPES] = {"F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"};
static const int st_sizes[ST_NTYPES] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1};

static int le_host(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

static uint64_t rd_u64le(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* little-endian bytes of n elements of type dt -> floats */
static void st_convert(st_dtype dt, const uint8_t *src, int64_t n, float *dst) {
    int le = le_host();
    uint8_t tmp[8];
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *p = src + i * st_sizes[dt];
        if (!le) {   /* data is little-endian; swap into host order */
            for (int k = 0; k < st_sizes[dt]; k++) tmp[k] = p[st_sizes[dt] - 1 - k];
            p = tmp;
        }
        switch (dt) {
        case ST_F32: { float v; memcpy(&v, p, 4); dst[i] = v; break; }
        case ST_F16: { uint16_t v; memcpy(&v, p, 2); dst[i] = fmd_half_to_float(v); break; }
        case ST_BF16: { uint16_t v; memcpy(&v, p, 2); dst[i] = fmd_bf16_to_float(v); break; }
        case ST_F64: { double v; memcpy(&v, p, 8); dst[i] = (float)v; break; }
        case ST_I64: { int64_t v; memcpy(&v, p, 8); dst[i] = (float)v; break; }
        case ST_I32: { int32_t v; memcpy(&v, p, 4); dst[i] = (float)v; break; }
        case ST_I16: { int16_t v; memcpy(&v, p, 2); dst[i] = (float)v; break; }
        case ST_I8: dst[i] = (float)(int8_t)p[0]; break;
        case ST_U8: dst[i] = (float)p[0]; break;
        case ST_BOOL: dst[i] = p[0] ? 1.0f : 0.0f; break;
        default: break;
        }
    }
}

/* ------------------------------------------------------------------- load */
typedef struct st_entry {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[FMD_MAX_DIMS];
    uint64_t begin, end;
} st_entry;

static int cmp_entry_begin(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* a JSON number that is a non-negative integer below 2^53 */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double v = j->valuedouble;
    if (!(v >= 0) || v > 9007199254740992.0 || v != (double)(uint64_t)v) return 0;
    *out = (uint64_t)v;
    return 1;
}

static int parse_entry(const char *path, const cJSON *item, st_entry *e) {
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return fmd_fail("safetensors: %s: entry '%s' is not an object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off))
        return fmd_fail("safetensors: %s: entry '%s' needs \"dtype\" (string), \"shape\" and "
                        "\"data_offsets\" (arrays)", path, name);
    e->name = name;
    e->dtype = ST_NTYPES;
    for (int k = 0; k < ST_NTYPES; k++)
        if (strcmp(dt->valuestring, st_names[k]) == 0) e->dtype = (st_dtype)k;
    if (e->dtype == ST_NTYPES)
        return fmd_fail("safetensors: %s: tensor '%s' has dtype '%s'; fmd reads F32, F16, BF16, F64, "
                        "I64, I32, I16, I8, U8 and BOOL", path, name, dt->valuestring);
    int nd = cJSON_GetArraySize(sh);
    if (nd > FMD_MAX_DIMS)
        return fmd_fail("safetensors: %s: tensor '%s' has %d dims, fmd supports at most %d",
                        path, name, nd, FMD_MAX_DIMS);
    e->ndim = nd;
    uint64_t numel = 1;
    int overflow = 0;
    for (int i = 0; i < nd; i++) {
        uint64_t v;
        if (!json_uint(cJSON_GetArrayItem(sh, i), &v))
            return fmd_fail("safetensors: %s: tensor '%s': shape entry %d is not a non-negative integer",
                            path, name, i + 1);
        e->shape[i] = (int64_t)v;
        if (v && numel > (UINT64_C(1) << 53) / v) overflow = 1;
        else numel *= v;
    }
    uint64_t b, en;
    if (cJSON_GetArraySize(off) != 2 || !json_uint(cJSON_GetArrayItem(off, 0), &b) ||
        !json_uint(cJSON_GetArrayItem(off, 1), &en) || en < b)
        return fmd_fail("safetensors: %s: tensor '%s': data_offsets must be [begin, end] with "
                        "0 <= begin <= end", path, name);
    e->begin = b;
    e->end = en;
    char sbuf[160];
    if (overflow || numel * (uint64_t)st_sizes[e->dtype] != en - b)
        return fmd_fail("safetensors: %s: tensor '%s' (%s %s) needs %llu bytes but data_offsets "
                        "[%llu, %llu] hold %llu", path, name, st_names[e->dtype],
                        fmd_shape_str(sbuf, sizeof sbuf, nd, e->shape),
                        (unsigned long long)(numel * (uint64_t)st_sizes[e->dtype]),
                        (unsigned long long)b, (unsigned long long)en, (unsigned long long)(en - b));
    return 0;
}

int fmd_safetensors_load(const char *path, fmd_tensor_dict *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fmd_open_regular("safetensors", path, NULL);
    if (!f) return -1;
    char *header = NULL;
    uint8_t *data = NULL;
    cJSON *root = NULL;
    st_entry *ents = NULL;
    int rc = -1;

    long fsize = -1;
    if (fseek(f, 0, SEEK_END) == 0) fsize = ftell(f);
    if (fsize < 0 || fseek(f, 0, SEEK_SET) != 0) { fmd_fail("safetensors: %s: cannot seek", path); goto done; }
    uint8_t lenbuf[8];
    if (fsize < 8 || fread(lenbuf, 1, 8, f) != 8) {
        fmd_fail("safetensors: %s: file is %ld bytes, too short for the 8-byte header length", path, fsize);
        goto done;
    }
    uint64_t hlen = rd_u64le(lenbuf);
    if (hlen > (uint64_t)fsize - 8) {
        fmd_fail("safetensors: %s: header length %llu goes beyond the end of the file (%ld bytes); "
                 "truncated or not a safetensors file", path, (unsigned long long)hlen, fsize);
        goto done;
    }
    if (hlen > ST_MAX_HEADER || hlen < 2) {
        fmd_fail("safetensors: %s: implausible header length %llu", path, (unsigned long long)hlen);
        goto done;
    }
    header = malloc(hlen + 1);
    if (!header) { fmd_fail("safetensors: %s: out of memory for the header", path); goto done; }
    if (fread(header, 1, hlen, f) != hlen) { fmd_fail("safetensors: %s: short read of the header", path); goto done; }
    header[hlen] = 0;
    if (header[0] != '{') {
        fmd_fail("safetensors: %s: header does not start with '{' (not a safetensors file?)", path);
        goto done;
    }
    const char *endp = NULL;
    root = cJSON_ParseWithLengthOpts(header, hlen, &endp, 0);
    if (!root || !cJSON_IsObject(root)) {
        fmd_fail("safetensors: %s: header is not valid JSON (near byte %ld of the header)", path,
                 endp ? (long)(endp - header) : -1L);
        goto done;
    }
    for (const char *p = endp; p && p < header + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != 0) {
            fmd_fail("safetensors: %s: junk after the JSON header", path);
            goto done;
        }

    uint64_t dsize = (uint64_t)fsize - 8 - hlen;
    if (dsize > fmd_max_storage_bytes()) {   /* the data is read whole */
        fmd_fail("safetensors: %s: %llu bytes of data, more than the limit of %llu (FMD_MAX_TENSOR_BYTES)", path,
                 (unsigned long long)dsize, (unsigned long long)fmd_max_storage_bytes());
        goto done;
    }
    int n = cJSON_GetArraySize(root);
    ents = calloc((size_t)(n ? n : 1), sizeof *ents);
    if (!ents) { fmd_fail("safetensors: %s: out of memory", path); goto done; }
    int ne = 0;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (!it->string) continue;
        if (strcmp(it->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(it)) {
                fmd_fail("safetensors: %s: __metadata__ must be an object of strings", path);
                goto done;
            }
            for (const cJSON *m = it->child; m; m = m->next) {
                if (!cJSON_IsString(m)) {
                    fmd_fail("safetensors: %s: __metadata__ value of '%s' is not a string", path, m->string);
                    goto done;
                }
                if (fmd_tensor_dict_add_meta(out, m->string, m->valuestring)) goto done;
            }
            continue;
        }
        if (parse_entry(path, it, &ents[ne])) goto done;
        if (ents[ne].end > dsize) {
            fmd_fail("safetensors: %s: tensor '%s' data_offsets [%llu, %llu] go beyond the data "
                     "(%llu bytes); truncated file?", path, it->string,
                     (unsigned long long)ents[ne].begin, (unsigned long long)ents[ne].end,
                     (unsigned long long)dsize);
            goto done;
        }
        ne++;
    }
    /* overlaps: sort a copy by begin and compare neighbours (empty tensors
     * occupy nothing and may share an offset) */
    st_entry *sorted = malloc((size_t)(ne ? ne : 1) * sizeof *sorted);
    if (!sorted) { fmd_fail("safetensors: %s: out of memory", path); goto done; }
    memcpy(sorted, ents, (size_t)ne * sizeof *sorted);
    qsort(sorted, (size_t)ne, sizeof *sorted, cmp_entry_begin);
    uint64_t prev_end = 0;
    const char *prev_name = NULL;
    for (int i = 0; i < ne; i++) {
        if (sorted[i].begin == sorted[i].end) continue;
        if (prev_name && sorted[i].begin < prev_end) {
            fmd_fail("safetensors: %s: data of tensors '%s' and '%s' overlap", path, prev_name, sorted[i].name);
            free(sorted);
            goto done;
        }
        prev_end = sorted[i].end;
        prev_name = sorted[i].name;
    }
    free(sorted);

    data = malloc(dsize ? dsize : 1);
    if (!data) { fmd_fail("safetensors: %s: out of memory for %llu bytes of data", path, (unsigned long long)dsize); goto done; }
    if (fread(data, 1, dsize, f) != dsize) { fmd_fail("safetensors: %s: short read of the data", path); goto done; }

    for (int i = 0; i < ne; i++) {
        fmd_tensor *t = fmd_empty(ents[i].ndim, ents[i].shape);   /* checks the limits (an empty [0 x 2^40 x 2^40]) */
        if (!t) {
            char why[256];
            snprintf(why, sizeof why, "%s", fmd_error());
            fmd_fail("safetensors: %s: tensor '%s': %s", path, ents[i].name, why);
            goto done;
        }
        st_convert(ents[i].dtype, data + ents[i].begin, fmd_numel(t), fmd_data(t));
        int r = fmd_tensor_dict_add(out, ents[i].name, t);
        fmd_release(t);
        if (r) {   /* copy first: fmd_error() is the buffer fmd_fail writes */
            char why[256];
            snprintf(why, sizeof why, "%s", fmd_error());
            fmd_fail("safetensors: %s: %s", path, why);
            goto done;
        }
    }
    rc = 0;
done:
    if (rc) fmd_tensor_dict_free(out);
    cJSON_Delete(root);
    free(header);
    free(data);
    free(ents);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------- save */
typedef struct { const char *name; int idx; } st_named;
static int cmp_named(const void *a, const void *b) {
    return strcmp(((const st_named *)a)->name, ((const st_named *)b)->name);
}

/* writes t's elements in row-major order as little-endian float32 */
static int write_tensor_f32(FILE *f, const fmd_tensor *t) {
    int64_t n = fmd_numel(t);
    if (n == 0) return 0;
    if (fmd_is_contiguous(t) && le_host())
        return fwrite(fmd_data(t), sizeof(float), (size_t)n, f) == (size_t)n ? 0 : -1;
    enum { CHUNK = 4096 };
    float buf[CHUNK];
    int64_t idx[FMD_MAX_DIMS] = {0};
    const float *base = t->storage->data;
    int64_t off = t->offset;
    int nb = 0;
    for (int64_t k = 0; k < n; k++) {
        float v = base[off];
        if (!le_host()) {
            uint8_t *p = (uint8_t *)&v, c;
            c = p[0]; p[0] = p[3]; p[3] = c; c = p[1]; p[1] = p[2]; p[2] = c;
        }
        buf[nb++] = v;
        if (nb == CHUNK) {
            if (fwrite(buf, sizeof(float), CHUNK, f) != CHUNK) return -1;
            nb = 0;
        }
        for (int d = t->ndim - 1; d >= 0; d--) {   /* odometer over the view */
            off += t->stride[d];
            if (++idx[d] < t->shape[d]) break;
            off -= t->stride[d] * t->shape[d];
            idx[d] = 0;
        }
    }
    if (nb && fwrite(buf, sizeof(float), (size_t)nb, f) != (size_t)nb) return -1;
    return 0;
}

int fmd_safetensors_save(const char *path, const fmd_tensor_dict *d) {
    for (int i = 0; i < d->n; i++) {
        if (!d->names[i] || !d->names[i][0]) return fmd_fail("safetensors: %s: tensor %d has an empty name", path, i + 1);
        if (strcmp(d->names[i], "__metadata__") == 0)
            return fmd_fail("safetensors: %s: '__metadata__' is reserved and cannot name a tensor", path);
        if (!d->tensors[i]) return fmd_fail("safetensors: %s: tensor '%s' is NULL", path, d->names[i]);
    }
    if (d->n < 0) return fmd_fail("safetensors: %s: bad tensor count %d", path, d->n);
    st_named *order = malloc((size_t)(d->n > 0 ? d->n : 1) * sizeof *order);
    if (!order) return fmd_fail("safetensors: %s: out of memory", path);
    for (int i = 0; i < d->n; i++) order[i] = (st_named){d->names[i], i};
    qsort(order, (size_t)d->n, sizeof *order, cmp_named);
    for (int i = 1; i < d->n; i++)
        if (strcmp(order[i].name, order[i - 1].name) == 0) {
            fmd_fail("safetensors: %s: duplicate tensor name '%s'", path, order[i].name);
            free(order);
            return -1;
        }

    int rc = -1;
    char *json = NULL, *tmp = NULL;
    FILE *f = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root) { fmd_fail("safetensors: %s: out of memory", path); goto done; }
    if (d->nmeta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        if (!meta) { fmd_fail("safetensors: %s: out of memory", path); goto done; }
        for (int i = 0; i < d->nmeta; i++) {
            if (cJSON_GetObjectItemCaseSensitive(meta, d->meta_keys[i])) {
                fmd_fail("safetensors: %s: duplicate metadata key '%s'", path, d->meta_keys[i]);
                goto done;
            }
            if (!cJSON_AddStringToObject(meta, d->meta_keys[i], d->meta_vals[i])) {
                fmd_fail("safetensors: %s: out of memory", path);
                goto done;
            }
        }
    }
    uint64_t offset = 0;
    for (int k = 0; k < d->n; k++) {
        const fmd_tensor *t = d->tensors[order[k].idx];
        cJSON *e = cJSON_AddObjectToObject(root, d->names[order[k].idx]);
        /* the reference writer's key order: dtype, shape, data_offsets */
        cJSON *dt = e ? cJSON_AddStringToObject(e, "dtype", "F32") : NULL;
        cJSON *shape = dt ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = shape ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        if (!offs) { fmd_fail("safetensors: %s: out of memory", path); goto done; }
        for (int i = 0; i < t->ndim; i++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[i]));
        uint64_t nbytes = (uint64_t)fmd_numel(t) * 4;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(offset + nbytes)));
        offset += nbytes;
    }
    json = cJSON_PrintUnformatted(root);
    if (!json) { fmd_fail("safetensors: %s: out of memory printing the header", path); goto done; }
    size_t hlen = strlen(json), pad = (8 - hlen % 8) % 8;

    size_t plen = strlen(path);
    tmp = malloc(plen + 5);
    if (!tmp) { fmd_fail("safetensors: %s: out of memory", path); goto done; }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    f = fopen(tmp, "wb");
    if (!f) { fmd_fail("safetensors: cannot create %s: %s", tmp, strerror(errno)); goto done; }
    uint8_t lenbuf[8];
    uint64_t total = hlen + pad;
    for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)(total >> (8 * i));
    int bad = fwrite(lenbuf, 1, 8, f) != 8 || fwrite(json, 1, hlen, f) != hlen;
    for (size_t i = 0; i < pad && !bad; i++) bad = fputc(' ', f) == EOF;
    for (int k = 0; k < d->n && !bad; k++) bad = write_tensor_f32(f, d->tensors[order[k].idx]) != 0;
    if (fflush(f) != 0) bad = 1;
    if (fclose(f) != 0) bad = 1;
    f = NULL;
    if (bad) {
        fmd_fail("safetensors: error writing %s: %s", tmp, strerror(errno));
        remove(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        fmd_fail("safetensors: cannot rename %s to %s: %s", tmp, path, strerror(errno));
        remove(tmp);
        goto done;
    }
    rc = 0;
done:
    if (f) { fclose(f); remove(tmp); }
    free(tmp);
    free(json);
    cJSON_Delete(root);
    free(order);
    return rc;
}
