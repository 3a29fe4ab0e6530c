/* engine/video.c compiled as a build without FFmpeg's libraries compiles it
 * (FMD_HAVE_FFMPEG undefined, whatever this build found): opening says so,
 * sniffing still works. Its own copy of video.c's functions is linked
 * instead of the engine's. */
#undef FMD_HAVE_FFMPEG
#include "../../engine/video.c"
#include "test.h"

int main(void) {
    CHECK(fmd_video_available() == 0);
    fmd_video_opts o = {.mode = FMD_VIDEO_FPS, .fps = 1};
    CHECK(fmd_video_open("tests/fixtures/videos/h264.mp4", &o) == NULL);
    CHECK(strstr(fmd_error(), "video 'tests/fixtures/videos/h264.mp4': fmd was built without FFmpeg") != NULL);
    const char *fmt;
    CHECK(strcmp(fmd_file_kind("tests/fixtures/videos/h264.mp4", &fmt), "video") == 0 && strcmp(fmt, "mp4") == 0);
    fmd_video_close(NULL);
    return TEST_SUMMARY();
}
