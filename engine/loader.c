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

#include "fmd.h"

typedef struct {
    int64_t batch;          /* batch index this slot is filling */
    int64_t size;           /* samples in that batch */
    int64_t done;           /* samples finished (ok or failed) */
    fmd_tensor *images;     /* (size, C, H, W), allocated by the first sample */
    fmd_tensor *labels;     /* (size) */
    int failed;
    char msg[512];
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
};

int64_t fmd_loader_num_batches(const fmd_loader *l) { return l->nbatches; }

static int64_t batch_size_of(const fmd_loader *l, int64_t b) {
    int64_t start = b * l->o.batch_size, end = start + l->o.batch_size;
    return (end > l->total ? l->total : end) - start;
}

static void slot_reset(fmd_loader *l, slot *s, int64_t b) {
    fmd_release(s->images);
    fmd_release(s->labels);
    memset(s, 0, sizeof *s);
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
    l->paths = calloc((size_t)n + 1, sizeof(char *));
    l->labels = malloc(sizeof(float) * ((size_t)n + 1));
    l->order = malloc(sizeof(int64_t) * ((size_t)n + 1));
    l->slots = calloc((size_t)l->nslots, sizeof(slot));
    l->threads = calloc((size_t)opts->num_workers + 1, sizeof(pthread_t));
    int ok = l->paths && l->labels && l->order && l->slots && l->threads;
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
    l->stop = 0;
    l->next_sample = 0;
    l->consumed = 0;
    l->err[0] = 0;
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

int fmd_loader_next(fmd_loader *l, fmd_tensor **images, fmd_tensor **labels) {
    *images = *labels = NULL;
    if (!l->started) return fmd_fail("loader: next() before start()");
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
    *images = s->images;
    *labels = s->labels;
    s->images = s->labels = NULL;
    l->consumed++;
    slot_reset(l, s, b + l->nslots);
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    return 1;
}

void fmd_loader_free(fmd_loader *l) {
    if (!l) return;
    if (l->started) fmd_loader_stop(l);
    if (l->slots)
        for (int i = 0; i < l->nslots; i++) {
            fmd_release(l->slots[i].images);
            fmd_release(l->slots[i].labels);
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
