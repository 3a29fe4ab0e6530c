/* engine/video.c: file sniffing, and (when built with FFmpeg) opening,
 * sampling and closing a fixture clip of tests/fixtures/videos (made by
 * tests/fixtures/make_videos.py: 3 s, 10 fps, 72 x 48; frame n's top-left
 * pixel is (8n, 255 - 8n, 128)). test_video_noffmpeg.c covers a build
 * without FFmpeg. */
#include <string.h>
#include "fmd.h"
#include "test.h"

#define FIX "tests/fixtures/videos/"

static void test_sniff(void) {
    uint8_t mp4[16] = {0, 0, 0, 0x20, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm'};
    uint8_t heic[16] = {0, 0, 0, 0x20, 'f', 't', 'y', 'p', 'h', 'e', 'i', 'c'};
    uint8_t ts[200] = {0};
    ts[0] = ts[188] = 0x47;
    CHECK(strcmp(fmd_video_format(mp4, 12), "mp4") == 0);
    CHECK(fmd_video_format(mp4, 7) == NULL);                /* too short to tell */
    CHECK(fmd_video_format(heic, 12) == NULL);              /* a still image */
    CHECK(strcmp(fmd_video_format((const uint8_t *)"\x1a\x45\xdf\xa3", 4), "matroska") == 0);
    CHECK(strcmp(fmd_video_format((const uint8_t *)"RIFF\0\0\0\0AVI ", 12), "avi") == 0);
    CHECK(fmd_video_format((const uint8_t *)"RIFF\0\0\0\0WAVE", 12) == NULL);
    CHECK(strcmp(fmd_video_format(ts, sizeof ts), "mpegts") == 0);
    CHECK(fmd_video_format(ts, 188) == NULL);
    const char *fmt;
    CHECK(fmd_file_kind(FIX "vp9.webm", &fmt) && strcmp(fmt, "matroska") == 0);
    CHECK(strcmp(fmd_file_kind("tests/fixtures/images/src.png", &fmt), "image") == 0 && strcmp(fmt, "png") == 0);
    CHECK(fmd_file_kind("tests/fixtures/images/nosuch.png", &fmt) == NULL && fmt == NULL);
    CHECK(strstr(fmd_error(), "cannot open") != NULL);
    CHECK(fmd_file_kind("tests/fixtures", NULL) == NULL && strstr(fmd_error(), "(a directory)") != NULL);
}

static void test_read(void) {
    size_t start = fmd_bytes_in_use();
    fmd_video_opts o = {.mode = FMD_VIDEO_FRAMES, .frames = 3, .threads = 1};
    fmd_video *v = fmd_video_open(FIX "h264.mp4", &o);
    CHECK(v != NULL);
    if (!v) { fprintf(stderr, "%s\n", fmd_error()); return; }
    const fmd_video_info *in = fmd_video_get_info(v);
    CHECK(in->width == 72 && in->height == 48 && in->frames == 30 && in->samples == 3);
    CHECK_NEAR(in->fps, 10, 1e-9);
    CHECK_NEAR(in->duration, 3, 1e-9);
    fmd_tensor *t;
    int64_t index;
    double time;
    for (int k = 0; k < 3; k++) {
        CHECK(fmd_video_next(v, &t, &index, &time) == 1);
        CHECK(index == 5 + 10 * k);                       /* 0-based here */
        CHECK_NEAR(time, 0.5 + k, 1e-9);
        CHECK(t->ndim == 3 && t->shape[0] == 3 && t->shape[1] == 48 && t->shape[2] == 72);
        CHECK(fabs(fmd_data(t)[0] * 255 - 8 * index) < 8);   /* red of the top-left pixel */
        fmd_release(t);
    }
    CHECK(fmd_video_next(v, &t, &index, &time) == 0 && t == NULL);
    CHECK(fmd_video_next(v, &t, &index, &time) == 0);     /* and stays at the end */
    CHECK(fmd_video_rewind(v) == 0);
    CHECK(fmd_video_next(v, &t, &index, &time) == 1 && index == 5);
    fmd_release(t);
    CHECK(fmd_video_skipped(v) == 0);
    fmd_video_close(v);
    fmd_video_close(NULL);
    CHECK(fmd_bytes_in_use() == start);

    fmd_video_opts bad = {.mode = FMD_VIDEO_FPS, .fps = -1};
    CHECK(fmd_video_open(FIX "h264.mp4", &bad) == NULL && strstr(fmd_error(), "fps must be in (0, 1e6]") != NULL);
    CHECK(fmd_video_open(FIX "notes.mp4", NULL) == NULL);
    CHECK(strstr(fmd_error(), "notes.mp4': not a video file FFmpeg can read") != NULL);
    /* the damaged frame is counted, the stream goes on */
    o.mode = FMD_VIDEO_ALL;
    v = fmd_video_open(FIX "damaged.avi", &o);
    CHECK(v != NULL);
    int n = 0;
    while (v && fmd_video_next(v, &t, &index, &time) == 1) { n++; fmd_release(t); }
    CHECK(n == 29 && v && fmd_video_skipped(v) == 1);
    fmd_video_close(v);
}

int main(void) {
    test_sniff();
    if (fmd_video_available()) test_read();
    else printf("built without FFmpeg: reading not tested here\n");
    return TEST_SUMMARY();
}
