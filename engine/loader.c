/*
 * loader.c - threaded data loader: worker pthreads decode and transform
 * samples into a ring of `prefetch` batch slots ahead of the consumer.
 *
 * Work is handed out one sample at a time in epoch order, and a worker only
 * takes a sample whose batch fits in the ring (batch < consumed + nslots):
 * that bounds memory and means every sample before a taken one is already
 * taken, so the batch the consumer waits for always completes or fails.
 * Each sample's rng is seeded from (seed, epoch, dataset index), so the
 * output does not depend on the number of workers.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmd_impl.h"

typedef struct {
    int64_t batch;          /* batch index this slot is filling */
    int64_t size;           /* samples in that batch */
    int64_t done;           /* samples finished (ok or failed) */
    fmd_tensor *images;     /* (size, C, H, W), allocated by the first sample */
    fmd_tensor *labels;     /* (size) */
    int failed;
    char msg[512];
    int64_t nbad;           /* skip_bad: samples left out */
    uint8_t *bad;           /* (batch_size) flags, owned */
} slot;

struct fmd_loader {
    int64_t n;
    char **paths;
    float *labels;
    fmd_transform tf;
    fmd_loader_opts o;
    int64_t nbatches, total;   /* total = samples used per epoch */
    int64_t *order;
    int64_t epoch;

    pthread_mutex_t mu;
    pthread_cond_t cv_work;    /* workers: room in the ring, or stop */
    pthread_cond_t cv_done;    /* consumer: a sample finished */
    pthread_t *threads;
    int nthreads;              /* threads running this epoch */
    int started;
    int stop;
    int64_t next_sample;       /* next epoch position to hand out */
    int64_t consumed;          /* batches handed to the caller */
    int nslots;
    slot *slots;
    char err[512];             /* sticky error after a failed batch */
    int64_t nskipped;          /* skip_bad: samples skipped this epoch */
    char skipped[4096];        /* messages not yet reported, one per line */
};

int64_t fmd_loader_shard(int64_t *order, int64_t n, int64_t batch_size, int drop_last, int count, int rank) {
    int64_t g;   /* global batch */
    if (fmd_checked_mul(batch_size, count, &g)) g = INT64_MAX;
    int64_t full = n / g, m = drop_last ? 0 : n - full * g;
    int64_t q = m / count, extra = m % count;
    int64_t part = q + (rank < extra), off = rank * q + (rank < extra ? rank : extra);
    if (!order) return full * batch_size + part;
    /* reads never fall behind writes (g * k + rank * batch_size + j >= batch_size * k + j) */
    int64_t k = 0;
    for (int64_t b = 0; b < full; b++)
        for (int64_t j = 0; j < batch_size; j++) order[k++] = order[b * g + rank * batch_size + j];
    for (int64_t j = 0; j < part; j++) order[k++] = order[full * g + off + j];
    return k;
}

static int64_t batch_size_of(const fmd_loader *l, int64_t b) {
    int64_t start = b * l->o.batch_size, end = start + l->o.batch_size;
    return (end > l->total ? l->total : end) - start;
}

static void slot_reset(fmd_loader *l, slot *s, int64_t b) {
    fmd_release(s->images);
    fmd_release(s->labels);
    uint8_t *bad = s->bad;
    memset(s, 0, sizeof *s);
    s->bad = bad;
    if (bad) memset(bad, 0, (size_t)l->o.batch_size);
    s->batch = b;
    s->size = b >= 0 && b < l->nbatches ? batch_size_of(l, b) : 0;
}

/* Decodes + transforms the sample at epoch position k into its slot. Called
 * without the lock; takes it only to allocate the slot's tensors. */
static void run_sample(fmd_loader *l, int64_t k) {
    int64_t b = k / l->o.batch_size, j = k % l->o.batch_size;
    int64_t idx = l->order[k];
    slot *s = &l->slots[b % l->nslots];
    char msg[512] = "";
    fmd_tensor *img = fmd_image_load(l->paths[idx]);
    fmd_tensor *out = NULL;
    if (img) {
        fmd_rng rng;
        fmd_rng_seed(&rng, fmd_sample_seed(l->o.seed, l->epoch, idx));
        out = fmd_transform_apply(&l->tf, img, &rng);
        fmd_release(img);
        if (!out) snprintf(msg, sizeof msg, "loader: '%s': %s", l->paths[idx], fmd_error());
    } else {
        snprintf(msg, sizeof msg, "loader: %s", fmd_error());
    }
    pthread_mutex_lock(&l->mu);
    if (out && !s->images) {
        int64_t shape[4] = {s->size, out->shape[0], out->shape[1], out->shape[2]};
        s->images = fmd_empty(4, shape);
        s->labels = fmd_empty(1, shape);
        if (!s->images || !s->labels)
            snprintf(msg, sizeof msg, "loader: batch of %lld images: %s", (long long)s->size, fmd_error());
    }
    if (out && !msg[0] && (s->images->shape[1] != out->shape[0] || s->images->shape[2] != out->shape[1] ||
                           s->images->shape[3] != out->shape[2])) {
        char a[96], c[96];
        fmd_shape_str(a, sizeof a, 3, out->shape);
        fmd_shape_str(c, sizeof c, 3, s->images->shape + 1);
        snprintf(msg, sizeof msg, "loader: '%s' is %s after the transform but its batch holds %s "
                 "(add a Resize or crop so all images get one size)", l->paths[idx], a, c);
    }
    pthread_mutex_unlock(&l->mu);
    if (!msg[0]) {   /* disjoint part of the batch: no lock needed */
        size_t plane = (size_t)fmd_numel(out);
        memcpy(fmd_data(s->images) + j * plane, fmd_data(out), plane * sizeof(float));
        fmd_data(s->labels)[j] = l->labels[idx];
    }
    fmd_release(out);
    pthread_mutex_lock(&l->mu);
    if (msg[0] && !img && l->o.skip_bad) {   /* unreadable file: leave it out, report it */
        s->bad[j] = 1;
        s->nbad++;
        l->nskipped++;
        size_t used = strlen(l->skipped);
        if (used + strlen(msg) + 2 < sizeof l->skipped)
            snprintf(l->skipped + used, sizeof l->skipped - used, "%s\n", msg);
        msg[0] = 0;
    }
    if (msg[0] && !s->failed) {
        s->failed = 1;
        memcpy(s->msg, msg, sizeof msg);
    }
    if (msg[0]) l->stop = 1;   /* no new work: the epoch ends at this batch */
    s->done++;
    pthread_cond_broadcast(&l->cv_done);
    pthread_mutex_unlock(&l->mu);
}

static void *worker(void *arg) {
    fmd_loader *l = arg;
    /* tensors made here never need grad, and grad mode is per thread */
    fmd_set_grad_enabled(0);
    pthread_mutex_lock(&l->mu);
    while (!l->stop && l->next_sample < l->total) {
        int64_t k = l->next_sample;
        if (k / l->o.batch_size >= l->consumed + l->nslots) {
            pthread_cond_wait(&l->cv_work, &l->mu);
            continue;
        }
        l->next_sample++;
        pthread_mutex_unlock(&l->mu);
        run_sample(l, k);
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

fmd_loader *fmd_loader_new(int64_t n, const char *const *paths, const float *labels,
                           const fmd_transform *tf, const fmd_loader_opts *opts) {
    if (n < 0 || (n > 0 && (!paths || !labels)))
        return fmd_fail_null("loader: needs n >= 0 paths and labels");
    if (!opts || opts->batch_size < 1)
        return fmd_fail_null("loader: batch_size must be >= 1");
    if (opts->num_workers < 0 || opts->num_workers > 64)
        return fmd_fail_null("loader: num_workers %d must be in 0..64", opts->num_workers);
    if (opts->prefetch < 0 || opts->prefetch > 64)
        return fmd_fail_null("loader: prefetch %d must be in 0..64", opts->prefetch);
    if (opts->shard_count > 1 && (opts->shard_rank < 0 || opts->shard_rank >= opts->shard_count))
        return fmd_fail_null("loader: shard rank %d is not in 0..%d", opts->shard_rank, opts->shard_count - 1);
    fmd_transform none = {0};
    if (!tf) tf = &none;
    if (fmd_transform_check(tf)) return NULL;
    fmd_loader *l = calloc(1, sizeof *l);
    if (!l) return fmd_fail_null("loader: out of memory");
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv_work, NULL);
    pthread_cond_init(&l->cv_done, NULL);
    l->n = n;
    l->tf = *tf;
    l->o = *opts;
    l->nslots = opts->prefetch ? opts->prefetch : 2;
    l->nbatches = opts->drop_last ? n / opts->batch_size : (n + opts->batch_size - 1) / opts->batch_size;
    l->total = l->nbatches * opts->batch_size < n ? l->nbatches * opts->batch_size : n;
    if (opts->shard_count > 1) {
        l->total = fmd_loader_shard(NULL, n, opts->batch_size, opts->drop_last, opts->shard_count, opts->shard_rank);
        l->nbatches = (l->total + opts->batch_size - 1) / opts->batch_size;
    }
    l->paths = calloc((size_t)n + 1, sizeof(char *));
    l->labels = malloc(sizeof(float) * ((size_t)n + 1));
    l->order = malloc(sizeof(int64_t) * ((size_t)n + 1));
    l->slots = calloc((size_t)l->nslots, sizeof(slot));
    l->threads = calloc((size_t)opts->num_workers + 1, sizeof(pthread_t));
    int ok = l->paths && l->labels && l->order && l->slots && l->threads;
    for (int i = 0; ok && opts->skip_bad && i < l->nslots; i++)
        ok = (l->slots[i].bad = calloc((size_t)opts->batch_size, 1)) != NULL;
    for (int64_t i = 0; ok && i < n; i++) {
        l->paths[i] = strdup(paths[i] ? paths[i] : "");
        ok = l->paths[i] != NULL;
        l->labels[i] = labels[i];
    }
    if (!ok) {
        fmd_loader_free(l);
        return fmd_fail_null("loader: out of memory for %lld samples", (long long)n);
    }
    return l;
}

void fmd_loader_stop(fmd_loader *l) {
    if (!l || !l->started) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->nthreads; i++) pthread_join(l->threads[i], NULL);
    l->nthreads = 0;
    for (int i = 0; i < l->nslots; i++) slot_reset(l, &l->slots[i], -1);
    l->started = 0;
}

int fmd_loader_start(fmd_loader *l, int64_t epoch) {
    fmd_loader_stop(l);
    l->epoch = epoch;
    fmd_loader_order(l->n, l->o.shuffle, l->o.seed, epoch, l->order);
    if (l->o.shard_count > 1)
        fmd_loader_shard(l->order, l->n, l->o.batch_size, l->o.drop_last, l->o.shard_count, l->o.shard_rank);
    l->stop = 0;
    l->next_sample = 0;
    l->consumed = 0;
    l->err[0] = 0;
    l->nskipped = 0;
    l->skipped[0] = 0;
    for (int i = 0; i < l->nslots; i++) slot_reset(l, &l->slots[i], i);
    l->started = 1;
    for (int i = 0; i < l->o.num_workers; i++) {
        if (pthread_create(&l->threads[i], NULL, worker, l) != 0) {
            fmd_loader_stop(l);
            return fmd_fail("loader: cannot start worker thread %d", i + 1);
        }
        l->nthreads++;
    }
    return 0;
}

/* the good rows of a batch with skipped samples, as new tensors; *im and
 * *lb are replaced (their references released) */
static int compact(const slot *s, fmd_tensor **im, fmd_tensor **lb) {
    int64_t keep = s->size - s->nbad;
    int64_t shape[4] = {keep, (*im)->shape[1], (*im)->shape[2], (*im)->shape[3]};
    fmd_tensor *ni = fmd_empty(4, shape), *nl = fmd_empty(1, shape);
    if (!ni || !nl) { fmd_release(ni); fmd_release(nl); return -1; }
    size_t plane = (size_t)(shape[1] * shape[2] * shape[3]);
    for (int64_t j = 0, k = 0; j < s->size; j++) {
        if (s->bad[j]) continue;
        memcpy(fmd_data(ni) + k * plane, fmd_data(*im) + j * plane, plane * sizeof(float));
        fmd_data(nl)[k++] = fmd_data(*lb)[j];
    }
    fmd_release(*im); fmd_release(*lb);
    *im = ni; *lb = nl;
    return 0;
}

int fmd_loader_next(fmd_loader *l, fmd_tensor **images, fmd_tensor **labels) {
    *images = *labels = NULL;
    if (!l->started) return fmd_fail("loader: next() before start()");
    for (;;) {   /* more than once only when a whole batch was skipped */
        if (l->err[0]) return fmd_fail("%s", l->err);
        int64_t b = l->consumed;
        if (b >= l->nbatches) return 0;
        slot *s = &l->slots[b % l->nslots];
        if (l->nthreads == 0) {   /* no workers: decode this batch here */
            for (int64_t k = b * l->o.batch_size; k < b * l->o.batch_size + s->size && !s->failed; k++) {
                l->next_sample = k + 1;
                run_sample(l, k);
            }
        }
        pthread_mutex_lock(&l->mu);
        while (!s->failed && s->done < s->size) pthread_cond_wait(&l->cv_done, &l->mu);
        if (s->failed) {
            memcpy(l->err, s->msg, sizeof l->err);
            pthread_mutex_unlock(&l->mu);
            return fmd_fail("%s", l->err);
        }
        fmd_tensor *im = s->images, *lb = s->labels;
        s->images = s->labels = NULL;
        int all_bad = s->nbad == s->size, rc = 0;
        if (!all_bad && s->nbad) rc = compact(s, &im, &lb);
        if (rc) snprintf(l->err, sizeof l->err, "loader: %s", fmd_error());
        l->consumed++;
        slot_reset(l, s, b + l->nslots);
        pthread_cond_broadcast(&l->cv_work);
        pthread_mutex_unlock(&l->mu);
        if (rc) { fmd_release(im); fmd_release(lb); return fmd_fail("%s", l->err); }
        if (all_bad) { fmd_release(im); fmd_release(lb); continue; }
        *images = im;
        *labels = lb;
        return 1;
    }
}

int64_t fmd_loader_skipped(fmd_loader *l, char *buf, size_t n) {
    pthread_mutex_lock(&l->mu);
    if (buf && n) {
        snprintf(buf, n, "%s", l->skipped);
        l->skipped[0] = 0;
    }
    int64_t k = l->nskipped;
    pthread_mutex_unlock(&l->mu);
    return k;
}

void fmd_loader_free(fmd_loader *l) {
    if (!l) return;
    if (l->started) fmd_loader_stop(l);
    if (l->slots)
        for (int i = 0; i < l->nslots; i++) {
            fmd_release(l->slots[i].images);
            fmd_release(l->slots[i].labels);
            free(l->slots[i].bad);
        }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv_work);
    pthread_cond_destroy(&l->cv_done);
    if (l->paths)
        for (int64_t i = 0; i < l->n; i++) free(l->paths[i]);
    free(l->paths);
    free(l->labels);
    free(l->order);
    free(l->slots);
    free(l->threads);
    free(l);
}
