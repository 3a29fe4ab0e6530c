/* libFuzzer target: the video reader (engine/video.c over FFmpeg's
 * libraries) on arbitrary bytes, in a file of their own (a memfd), sampled
 * every frame and by count: open fails with a message or gives frames of
 * 3 x H x W within the pixel limit, values in [0, 1], indices >= 0 and
 * times that are numbers; nothing crashes, hangs or leaks. FFmpeg itself is
 * the system's, not instrumented: what is fuzzed is fmd's side of it. */
#include "fuzz_common.h"
#include "fmd.h"

/* frames looked at per input: a 64 KB input may hold thousands */
#define MAX_FRAMES 64

static void run(const char *path, fmd_video_opts o) {
    fmd_video *v = fmd_video_open(path, &o);
    if (!v) {
        if (!fmd_error()[0]) abort();
        return;
    }
    const fmd_video_info *in = fmd_video_get_info(v);
    if (in->width <= 0 || in->height <= 0 || in->width * in->height > fmd_max_image_pixels()) abort();
    fmd_tensor *t;
    int64_t index;
    double time;
    for (int k = 0; k < MAX_FRAMES; k++) {
        int r = fmd_video_next(v, &t, &index, &time);
        if (r <= 0) break;
        if (t->ndim != 3 || t->shape[0] != 3 || t->shape[1] * t->shape[2] > fmd_max_image_pixels()) abort();
        const float *p = fmd_data(t);
        for (int64_t i = 0; i < fmd_numel(t); i++)
            if (!(p[i] >= 0 && p[i] <= 1)) abort();
        if (index < 0 || time != time) abort();
        fmd_release(t);
    }
    if (fmd_video_skipped(v) < 0) abort();
    fmd_video_close(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const char *path = fuzz_file(data, n);
    fmd_file_kind(path, NULL);
    run(path, (fmd_video_opts){.mode = FMD_VIDEO_ALL, .threads = 1});
    run(path, (fmd_video_opts){.mode = FMD_VIDEO_FRAMES, .frames = 3, .threads = 1});
    return 0;
}
