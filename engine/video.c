/*
 * video.c - video files through FFmpeg's libraries (libavformat demuxes,
 * libavcodec decodes, libswscale converts to RGB). Frames are sampled
 * evenly while the stream is decoded in order (no seeking), and each
 * sampled frame becomes a 3 x H x W float tensor in [0, 1], as
 * fmd_image_load returns images. Also fmd_file_kind: the one place that
 * tells an image from a video.
 *
 * Built without FFmpeg (FMD_HAVE_FFMPEG undefined: CMake did not find the
 * libraries) fmd_video_open fails with "built without FFmpeg"; the file
 * sniffing works either way.
 *
 * The file is read through our own AVIOContext over fmd_open_regular's
 * FILE: only regular files are opened, a path is never an FFmpeg URL
 * ("concat:...", "http://..."), and nested opens (HLS playlists, mov
 * references, image sequences) are refused, so a file cannot make fmd read
 * another file or the network. FFmpeg's log never reaches the terminal:
 * its last error line is kept and put into fmd's error messages.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fmd_impl.h"

/* ---------------------------------------------------------- file kind */

static int at(const uint8_t *b, size_t len, size_t off, const char *s, size_t n) {
    return len >= off + n && memcmp(b + off, s, n) == 0;
}

const char *fmd_video_format(const uint8_t *b, size_t len) {
    if (at(b, len, 4, "ftyp", 4)) {
        /* HEIF and AVIF still images share the ISO box format */
        static const char *stills[] = {"heic", "heix", "heim", "heis", "mif1", "msf1", "avif", "avis"};
        for (size_t i = 0; i < sizeof stills / sizeof *stills; i++)
            if (at(b, len, 8, stills[i], 4)) return NULL;
        return "mp4";
    }
    if (at(b, len, 4, "moov", 4) || at(b, len, 4, "mdat", 4) || at(b, len, 4, "wide", 4)) return "mov";
    if (at(b, len, 0, "\x1a\x45\xdf\xa3", 4)) return "matroska";      /* also WebM */
    if (at(b, len, 0, "RIFF", 4) && at(b, len, 8, "AVI ", 4)) return "avi";
    if (at(b, len, 0, "GIF87a", 6) || at(b, len, 0, "GIF89a", 6)) return "gif";
    if (at(b, len, 0, "OggS", 4)) return "ogg";
    if (at(b, len, 0, "FLV\x01", 4)) return "flv";
    if (at(b, len, 0, "\x00\x00\x01\xba", 4)) return "mpeg";
    if (at(b, len, 0, "\x00\x00\x01\xb3", 4)) return "mpegvideo";
    if (at(b, len, 0, "\x30\x26\xb2\x75\x8e\x66\xcf\x11", 8)) return "asf";
    if (at(b, len, 0, "YUV4MPEG2", 9)) return "yuv4mpegpipe";
    /* MPEG-TS: a sync byte every 188 bytes (M2TS: 192, after a 4-byte stamp) */
    if (len >= 189 && b[0] == 0x47 && b[188] == 0x47) return "mpegts";
    if (len >= 197 && b[4] == 0x47 && b[196] == 0x47) return "mpegts";
    return NULL;
}

/* containers without a reliable signature, taken by name when the bytes
 * say nothing (FFmpeg then decides, and says so if it cannot) */
static const char *video_ext(const char *path) {
    static const char *exts[] = {"mp4", "m4v", "mov", "mkv", "webm", "avi", "gif", "ogv", "flv", "mpg", "mpeg",
                                 "ts", "m2ts", "mts", "wmv", "3gp", "3g2", "h264", "264", "hevc", "h265", "265",
                                 "y4m", "mxf", "vob"};
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    if (!dot || (slash && dot < slash)) return NULL;
    for (size_t i = 0; i < sizeof exts / sizeof *exts; i++)
        if (strcasecmp(dot + 1, exts[i]) == 0) return exts[i];
    return NULL;
}

/* the first bytes as hex, so "a text file named .mp4" is plain */
static void hex_head(char *out, size_t cap, const uint8_t *b, size_t len) {
    size_t k = 0;
    out[0] = 0;
    for (size_t i = 0; i < len && i < 12 && k + 3 < cap; i++) k += snprintf(out + k, cap - k, "%02x", b[i]);
}

const char *fmd_file_kind(const char *path, const char **format) {
    if (format) *format = NULL;
    FILE *f = fmd_open_regular("file", path, NULL);
    if (!f) return NULL;
    uint8_t b[512];
    size_t n = fread(b, 1, sizeof b, f);
    int err = ferror(f);
    fclose(f);
    if (err) return fmd_fail_null("file: cannot read %s", path);
    if (n == 0) return fmd_fail_null("'%s': the file is empty", path);
    const char *fmt = fmd_image_format(b, n), *kind = "image";
    if (!fmt) fmt = fmd_video_format(b, n), kind = "video";
    if (!fmt) fmt = video_ext(path);
    if (!fmt) {
        char head[32];
        hex_head(head, sizeof head, b, n);
        return fmd_fail_null("'%s': not an image (PNG, JPEG) or a video (%zu%s bytes, starts with %s)", path, n,
                             n == sizeof b ? "+" : "", head);
    }
    if (format) *format = fmt;
    return kind;
}

#ifndef FMD_HAVE_FFMPEG
/* ------------------------------------------------- built without FFmpeg */

struct fmd_video { int unused; };

int fmd_video_available(void) { return 0; }

fmd_video *fmd_video_open(const char *path, const fmd_video_opts *o) {
    (void)o;
    return fmd_fail_null("video '%s': fmd was built without FFmpeg (install libavformat-dev libavcodec-dev "
                         "libswscale-dev libavutil-dev, then rebuild: scripts/bootstrap.sh does both)", path);
}
const fmd_video_info *fmd_video_get_info(const fmd_video *v) { (void)v; return NULL; }
int fmd_video_next(fmd_video *v, fmd_tensor **frame, int64_t *index, double *time) {
    (void)v; (void)frame; (void)index; (void)time;
    return fmd_fail("video: fmd was built without FFmpeg");
}
int fmd_video_rewind(fmd_video *v) { (void)v; return fmd_fail("video: fmd was built without FFmpeg"); }
int64_t fmd_video_skipped(const fmd_video *v) { (void)v; return 0; }
void fmd_video_close(fmd_video *v) { (void)v; }

#else
/* ------------------------------------------------------------- FFmpeg */
#include <errno.h>
#include <math.h>
#include <pthread.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#define IO_BUF 65536
/* consecutive demuxer errors (damaged packets) before the rest of the file
 * is given up as unreadable */
#define MAX_READ_ERRORS 64

struct fmd_video {
    char *path;
    fmd_video_opts opts;
    fmd_video_info info;
    FILE *f;
    int64_t fsize;
    AVIOContext *io;
    AVFormatContext *fmt;
    AVCodecContext *dec;
    struct SwsContext *sws, *sws_set;   /* sws_set: the context whose colour details are sws_cs, sws_range */
    int sws_cs, sws_range;
    AVPacket *pkt;
    AVFrame *frame;
    int stream;
    AVRational tb;
    int64_t start_pts;       /* stream time of t = 0, AV_NOPTS_VALUE until known */
    double frame_dur;        /* 1 / fps, or 0 */
    int have_frame;          /* frame holds a decoded frame not yet looked at */
    int flushed, ended;
    /* Damage: what the decoder reports (refused packets, frames it marks
     * corrupt) counts at once; frames it drops without a word (H.264 after
     * a damaged reference) are the packets sent that gave no frame, known
     * at the end. One packet is one frame, except in field-coded
     * (interlaced) video, where that last count is not made. */
    int64_t skipped, sent, out, reported;
    int interlaced;
    int64_t count;           /* frames come out so far: the index when the time is unknown */
    int has_time;            /* the last frame_time came from a timestamp */
    int64_t k;               /* next sampling target */
    double last_t;
    /* what the header promises, to tell a truncated file: frames (0 when
     * unknown) and the video's end in seconds (0 when unknown) */
    int64_t expect_frames;
    double expect_end;
    uint8_t *rgb;
    size_t rgb_cap;
};

/* ---- FFmpeg's log: nothing printed, the last error line kept */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_last[256];
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static void log_cb(void *avcl, int level, const char *fmt, va_list vl) {
    (void)avcl;
    if (level > AV_LOG_ERROR) return;
    char line[256];
    vsnprintf(line, sizeof line, fmt, vl);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == ' ')) line[--n] = 0;
    if (!n) return;
    pthread_mutex_lock(&log_mu);
    memcpy(log_last, line, n + 1);
    pthread_mutex_unlock(&log_mu);
}

static void log_init(void) {
    av_log_set_level(AV_LOG_ERROR);
    av_log_set_callback(log_cb);
}

static void log_clear(void) {
    pthread_mutex_lock(&log_mu);
    log_last[0] = 0;
    pthread_mutex_unlock(&log_mu);
}

/* "reason" from an AVERROR and FFmpeg's last log line, into out */
static const char *why(char *out, size_t cap, int averr) {
    char e[AV_ERROR_MAX_STRING_SIZE] = "";
    if (averr) av_strerror(averr, e, sizeof e);
    pthread_mutex_lock(&log_mu);
    if (log_last[0] && e[0] && !strstr(log_last, e)) snprintf(out, cap, "%s: %s", e, log_last);
    else snprintf(out, cap, "%s", log_last[0] ? log_last : e[0] ? e : "unknown error");
    pthread_mutex_unlock(&log_mu);
    return out;
}

int fmd_video_available(void) { return 1; }

/* ---- reading through fmd's FILE */
static int io_read(void *opaque, uint8_t *buf, int n) {
    fmd_video *v = opaque;
    size_t got = fread(buf, 1, (size_t)n, v->f);
    if (got == 0) return ferror(v->f) ? AVERROR(EIO) : AVERROR_EOF;
    return (int)got;
}

static int64_t io_seek(void *opaque, int64_t off, int whence) {
    fmd_video *v = opaque;
    if (whence & AVSEEK_SIZE) return v->fsize;
    whence &= ~AVSEEK_FORCE;
    if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END) return AVERROR(EINVAL);
    if (fseeko(v->f, off, whence) != 0) return AVERROR(errno ? errno : EIO);
    return ftello(v->f);
}

static int no_nested_open(AVFormatContext *s, AVIOContext **pb, const char *url, int flags, AVDictionary **opts) {
    (void)pb; (void)flags; (void)opts;
    av_log(s, AV_LOG_ERROR, "the file refers to '%.100s', which fmd does not open", url);
    return AVERROR(EPERM);
}

/* frees the demuxer and decoder state (not the file, path or buffers) */
static void close_streams(fmd_video *v) {
    avcodec_free_context(&v->dec);
    avformat_close_input(&v->fmt);
    if (v->io) {
        av_freep(&v->io->buffer);
        avio_context_free(&v->io);
    }
    av_packet_free(&v->pkt);
    av_frame_free(&v->frame);
}

static double ts_seconds(int64_t ts, AVRational tb) { return (double)ts * tb.num / tb.den; }

static int fail_open(fmd_video *v, const char *what, int averr) {
    char w[300];
    why(w, sizeof w, averr);
    return fmd_fail("video '%s': %s (%s)", v->path, what, w);
}

/* demuxer, stream and decoder from the start of the file; fills info
 * when fill_info */
static int open_streams(fmd_video *v, int fill_info) {
    if (fseeko(v->f, 0, SEEK_SET) != 0) return fmd_fail("video '%s': cannot seek to the start", v->path);
    uint8_t *buf = av_malloc(IO_BUF);
    v->io = buf ? avio_alloc_context(buf, IO_BUF, 0, v, io_read, NULL, io_seek) : NULL;
    v->fmt = avformat_alloc_context();
    v->pkt = av_packet_alloc();
    v->frame = av_frame_alloc();
    if (!v->io || !v->fmt || !v->pkt || !v->frame) {
        if (!v->io) av_free(buf);
        return fmd_fail("video '%s': out of memory opening the file", v->path);
    }
    v->fmt->pb = v->io;
    /* a file never opens another: demuxers that open through the context
     * (HLS, mov references) meet no_nested_open, those that open a context
     * of their own (concat) inherit a protocol list that allows nothing */
    v->fmt->io_open = no_nested_open;
    v->fmt->protocol_whitelist = av_strdup("none");
    if (!v->fmt->protocol_whitelist) return fmd_fail("video '%s': out of memory opening the file", v->path);
    int r = avformat_open_input(&v->fmt, v->path, NULL, NULL);   /* frees fmt on failure */
    if (r < 0) {
        char w[300], head[32];
        uint8_t b[16];
        size_t n = fseeko(v->f, 0, SEEK_SET) == 0 ? fread(b, 1, sizeof b, v->f) : 0;
        hex_head(head, sizeof head, b, n);
        return fmd_fail("video '%s': not a video file FFmpeg can read (%s; %lld bytes, starts with %s)", v->path,
                        why(w, sizeof w, r), (long long)v->fsize, head);
    }
    /* find_stream_info decodes a frame or two: no bigger than fmd allows */
    unsigned ns = v->fmt->nb_streams;
    AVDictionary **sopts = ns ? av_calloc(ns, sizeof *sopts) : NULL;
    if (ns && !sopts) return fmd_fail("video '%s': out of memory", v->path);
    for (unsigned i = 0; i < ns; i++) av_dict_set_int(&sopts[i], "max_pixels", fmd_max_image_pixels(), 0);
    r = avformat_find_stream_info(v->fmt, sopts);
    for (unsigned i = 0; i < ns; i++) av_dict_free(&sopts[i]);
    av_free(sopts);
    if (r < 0) return fail_open(v, "cannot read the streams", r);
    /* the first video stream that is not a cover picture */
    v->stream = -1;
    char kinds[160] = "";
    for (unsigned i = 0; i < v->fmt->nb_streams; i++) {
        AVStream *st = v->fmt->streams[i];
        if (st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO && !(st->disposition & AV_DISPOSITION_ATTACHED_PIC)) {
            v->stream = (int)i;
            break;
        }
        size_t k = strlen(kinds);
        if (k + 40 < sizeof kinds)
            snprintf(kinds + k, sizeof kinds - k, "%s%s %s", k ? ", " : "",
                     av_get_media_type_string(st->codecpar->codec_type) ? av_get_media_type_string(st->codecpar->codec_type)
                                                                        : "data",
                     avcodec_get_name(st->codecpar->codec_id));
    }
    if (v->stream < 0)
        return fmd_fail("video '%s': no video stream (%s%s)", v->path, kinds[0] ? "the file holds " : "",
                        kinds[0] ? kinds : "the file holds no streams");
    AVStream *st = v->fmt->streams[v->stream];
    for (unsigned i = 0; i < v->fmt->nb_streams; i++)   /* read past, not into memory */
        if ((int)i != v->stream) v->fmt->streams[i]->discard = AVDISCARD_ALL;
    AVCodecParameters *par = st->codecpar;
    if ((int64_t)par->width * par->height > fmd_max_image_pixels())
        return fmd_fail("video '%s': frames of %d x %d (%lld pixels) are over the limit of %lld pixels "
                        "(FMD_MAX_IMAGE_PIXELS overrides)", v->path, par->width, par->height,
                        (long long)par->width * par->height, (long long)fmd_max_image_pixels());
    const AVCodec *codec = avcodec_find_decoder(par->codec_id);
    if (!codec)
        return fmd_fail("video '%s': FFmpeg here has no decoder for its %s video", v->path,
                        avcodec_get_name(par->codec_id));
    v->dec = avcodec_alloc_context3(codec);
    if (!v->dec) return fmd_fail("video '%s': out of memory", v->path);
    r = avcodec_parameters_to_context(v->dec, par);
    if (r < 0) return fail_open(v, "bad codec parameters", r);
    v->dec->pkt_timebase = st->time_base;
    v->dec->thread_count = v->opts.threads > 0 ? v->opts.threads : fmd_get_num_threads();
    v->dec->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
    v->dec->max_pixels = fmd_max_image_pixels();
    r = avcodec_open2(v->dec, codec, NULL);
    if (r < 0) return fail_open(v, "cannot open the decoder", r);
    v->tb = st->time_base;
    v->start_pts = st->start_time;
    v->flushed = v->ended = v->have_frame = 0;
    v->skipped = v->sent = v->out = v->reported = v->count = v->k = 0;
    v->interlaced = 0;
    v->last_t = -1;
    if (!fill_info) return 0;

    fmd_video_info *in = &v->info;
    memset(in, 0, sizeof *in);
    snprintf(in->format, sizeof in->format, "%s", v->fmt->iformat->name);
    snprintf(in->codec, sizeof in->codec, "%s", avcodec_get_name(par->codec_id));
    AVRational fr = av_guess_frame_rate(v->fmt, st, NULL);
    in->fps = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 0;
    if (!(in->fps > 0 && in->fps < 1e6)) in->fps = 0;
    /* a duration FFmpeg guessed from the bit rate counts as unknown */
    if (v->fmt->duration_estimation_method == AVFMT_DURATION_FROM_BITRATE) in->duration = 0;
    else if (st->duration > 0 && st->duration != AV_NOPTS_VALUE) in->duration = ts_seconds(st->duration, st->time_base);
    else if (v->fmt->duration > 0 && v->fmt->duration != AV_NOPTS_VALUE) in->duration = v->fmt->duration / (double)AV_TIME_BASE;
    if (!(in->duration > 0 && in->duration < 1e9)) in->duration = 0;
    in->frames = st->nb_frames > 0 ? st->nb_frames : (int64_t)llround(in->duration * in->fps);
    /* a phone's portrait clip is stored landscape with a display matrix */
#if LIBAVCODEC_VERSION_INT >= AV_VERSION_INT(60, 31, 100)   /* FFmpeg 6.1 moved it */
    const AVPacketSideData *sd = av_packet_side_data_get(par->coded_side_data, par->nb_coded_side_data,
                                                         AV_PKT_DATA_DISPLAYMATRIX);
    const uint8_t *m = sd && sd->size >= 36 ? sd->data : NULL;
#else
    size_t msize = 0;
    const uint8_t *m = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, &msize);
    if (msize < 36) m = NULL;
#endif
    if (m) {
        double deg = -av_display_rotation_get((const int32_t *)m);   /* clockwise */
        if (deg == deg) {
            long q = lround(deg / 90.0) % 4;
            in->rotation = (int)((q + 4) % 4) * 90;
        }
    }
    v->frame_dur = in->fps > 0 ? 1.0 / in->fps : 0;
    v->expect_frames = st->nb_frames > 0 ? st->nb_frames : 0;
    /* the file's duration is the video's only when nothing else is in it */
    v->expect_end = (st->duration > 0 && st->duration != AV_NOPTS_VALUE) || v->fmt->nb_streams == 1 ? in->duration : 0;
    return 0;
}

/* seconds from the first frame; a frame without a time follows the last */
static double frame_time(fmd_video *v) {
    int64_t ts = v->frame->best_effort_timestamp;
    if (ts == AV_NOPTS_VALUE) ts = v->frame->pts;
    if (ts != AV_NOPTS_VALUE && v->start_pts == AV_NOPTS_VALUE) v->start_pts = ts;
    double t = ts != AV_NOPTS_VALUE && v->tb.den > 0 ? ts_seconds(ts - v->start_pts, v->tb) : NAN;
    /* a damaged stream's time (or none) follows the last frame's */
    v->has_time = fabs(t) <= 1e12;
    if (!v->has_time) t = v->last_t < 0 ? 0 : v->last_t + v->frame_dur;
    return t;
}

/* the next decoded frame into v->frame: 1, 0 at the end of the stream, -1
 * on an error; damaged packets and frames are counted in v->skipped */
static int decode_next(fmd_video *v) {
    int errors = 0;
    for (;;) {
        int r = avcodec_receive_frame(v->dec, v->frame);
        if (r == 0) {
            v->out++;
#ifdef AV_FRAME_FLAG_INTERLACED   /* FFmpeg 6.1 on */
            if (v->frame->flags & AV_FRAME_FLAG_INTERLACED) v->interlaced = 1;
#else
            if (v->frame->interlaced_frame) v->interlaced = 1;
#endif
            if ((v->frame->flags & AV_FRAME_FLAG_CORRUPT) || v->frame->decode_error_flags) {
                v->skipped++;
                v->last_t = frame_time(v);
                v->count++;
                av_frame_unref(v->frame);
                continue;
            }
            return 1;
        }
        if (r == AVERROR_EOF) {
            int64_t silent = v->sent - v->out - v->reported;
            if (silent > 0 && !v->interlaced) v->skipped += silent;
            return 0;
        }
        if (r != AVERROR(EAGAIN)) {     /* a frame the decoder gave up on */
            v->skipped++;
            v->reported++;
            if (++errors > MAX_READ_ERRORS) return 0;
            continue;
        }
        if (v->flushed) return 0;
        r = av_read_frame(v->fmt, v->pkt);
        if (r < 0) {
            if (r != AVERROR_EOF && !avio_feof(v->fmt->pb) && ++errors <= MAX_READ_ERRORS) continue;
            avcodec_send_packet(v->dec, NULL);   /* drain what the decoder holds */
            v->flushed = 1;
            continue;
        }
        if (v->pkt->stream_index != v->stream) {
            av_packet_unref(v->pkt);
            continue;
        }
        /* packets an edit list cuts (before the start) give no frame by design */
        if (!(v->pkt->flags & AV_PKT_FLAG_DISCARD)) v->sent++;
        r = avcodec_send_packet(v->dec, v->pkt);
        av_packet_unref(v->pkt);
        if (r < 0 && r != AVERROR(EAGAIN)) {
            v->skipped++;
            v->reported++;
            if (++errors > MAX_READ_ERRORS * 16) return 0;
        } else {
            errors = 0;
        }
    }
}

/* At the end of the stream: -1 with the error when the header promised
 * (by 1% and two frames) more frames or seconds than the file held */
static int check_complete(fmd_video *v) {
    int64_t seen = v->sent > v->count ? v->sent : v->count;
    double end = v->last_t + v->frame_dur;
    int short_frames = v->expect_frames > 0 && seen < v->expect_frames - 2 - v->expect_frames / 100;
    int short_time = v->expect_end > 0 && end < v->expect_end * 0.99 - 2 * v->frame_dur - 1e-3;
    if (!short_frames && !short_time) return 0;
    char w[300], promise[100];
    why(w, sizeof w, 0);
    if (short_frames)
        snprintf(promise, sizeof promise, "%lld of the %lld frames its header lists", (long long)seen,
                 (long long)v->expect_frames);
    else
        snprintf(promise, sizeof promise, "its header gives %.2f s", v->expect_end);
    int said = strcmp(w, "unknown error") != 0;
    if (v->last_t < 0)
        return fmd_fail("video '%s': truncated or damaged: none of its frames can be decoded (%s%s%s)", v->path,
                        promise, said ? "; " : "", said ? w : "");
    return fmd_fail("video '%s': truncated or damaged: its frames stop at %.2f s (%s%s%s)", v->path, end, promise,
                    said ? "; " : "", said ? w : "");
}

/* how many targets a sampling of the whole video is expected to take */
static int64_t expected_samples(const fmd_video *v) {
    const fmd_video_info *in = &v->info;
    int64_t n = 0;
    switch (v->opts.mode) {
    case FMD_VIDEO_ALL: n = in->frames; break;
    case FMD_VIDEO_FPS: n = in->duration > 0 ? (int64_t)ceil(in->duration * v->opts.fps - 1e-9) : 0; break;
    case FMD_VIDEO_FRAMES: n = v->opts.frames; break;
    }
    return in->frames > 0 && n > in->frames ? in->frames : n;
}

/* demux only, to the end: the stream's duration when the header has none
 * (a WebM recorded live, a raw stream); 0 when nothing is found */
static double scan_duration(fmd_video *v) {
    int64_t first = AV_NOPTS_VALUE, last = AV_NOPTS_VALUE;
    int errors = 0;
    for (;;) {
        int r = av_read_frame(v->fmt, v->pkt);
        if (r < 0) {
            if (r != AVERROR_EOF && !avio_feof(v->fmt->pb) && ++errors <= MAX_READ_ERRORS) continue;
            break;
        }
        errors = 0;
        if (v->pkt->stream_index == v->stream && v->pkt->pts != AV_NOPTS_VALUE) {
            int64_t end = v->pkt->pts + (v->pkt->duration > 0 ? v->pkt->duration : 0);
            if (first == AV_NOPTS_VALUE || v->pkt->pts < first) first = v->pkt->pts;
            if (last == AV_NOPTS_VALUE || end > last) last = end;
        }
        av_packet_unref(v->pkt);
    }
    if (first == AV_NOPTS_VALUE) return 0;
    if (v->start_pts != AV_NOPTS_VALUE && v->start_pts < first) first = v->start_pts;
    double d = ts_seconds(last - first, v->tb);
    return d > 0 && d < 1e9 ? d : 0;
}

/* opens, and decodes to the first good frame (kept for fmd_video_next) */
static int start(fmd_video *v, int fill_info) {
    close_streams(v);
    log_clear();
    if (open_streams(v, fill_info)) return -1;
    if (fill_info && v->info.duration <= 0) {
        v->info.duration = scan_duration(v);
        if (v->info.frames <= 0) v->info.frames = (int64_t)llround(v->info.duration * v->info.fps);
        close_streams(v);
        if (open_streams(v, 0)) return -1;
    }
    if (fill_info) v->info.samples = expected_samples(v);
    int r = decode_next(v);
    if (r < 0) return -1;
    if (r == 0) {
        char w[300];
        if (check_complete(v)) return -1;
        if (v->skipped)
            return fmd_fail("video '%s': none of its frames can be decoded (%lld damaged; %s)", v->path,
                            (long long)v->skipped, why(w, sizeof w, 0));
        return fmd_fail("video '%s': the video stream has no frames", v->path);
    }
    v->have_frame = 1;
    if (fill_info) {
        int64_t w = v->frame->width, h = v->frame->height;
        if (w <= 0 || h <= 0 || w * h > fmd_max_image_pixels())
            return fmd_fail("video '%s': frames of %lld x %lld (%lld pixels) are over the limit of %lld pixels "
                            "(FMD_MAX_IMAGE_PIXELS overrides)", v->path, (long long)w, (long long)h,
                            (long long)(w * h), (long long)fmd_max_image_pixels());
        int turn = v->info.rotation % 180 != 0;
        v->info.width = turn ? h : w;
        v->info.height = turn ? w : h;
    }
    return 0;
}

static int check_opts(const char *path, const fmd_video_opts *o) {
    switch (o->mode) {
    case FMD_VIDEO_FPS:
        if (!(o->fps > 0 && o->fps <= 1e6)) return fmd_fail("video '%s': fps must be in (0, 1e6], got %g", path, o->fps);
        break;
    case FMD_VIDEO_FRAMES:
        if (o->frames < 1 || o->frames > ((int64_t)1 << 40))
            return fmd_fail("video '%s': frames must be >= 1, got %lld", path, (long long)o->frames);
        break;
    case FMD_VIDEO_ALL: break;
    default: return fmd_fail("video '%s': unknown sampling mode %d", path, (int)o->mode);
    }
    if (o->threads < 0 || o->threads > 256)
        return fmd_fail("video '%s': threads must be 0..256, got %d", path, o->threads);
    return 0;
}

fmd_video *fmd_video_open(const char *path, const fmd_video_opts *o) {
    fmd_video_opts def = {.mode = FMD_VIDEO_FPS, .fps = 1};
    if (!o) o = &def;
    if (check_opts(path, o)) return NULL;
    pthread_once(&log_once, log_init);
    int64_t size = 0;
    FILE *f = fmd_open_regular("video", path, &size);
    if (!f) return NULL;
    if (size == 0) {
        fclose(f);
        return fmd_fail_null("video '%s': the file is empty", path);
    }
    fmd_video *v = calloc(1, sizeof *v);
    if (!v || !(v->path = strdup(path))) {
        free(v);
        fclose(f);
        return fmd_fail_null("video '%s': out of memory", path);
    }
    v->f = f;
    v->fsize = size;
    v->opts = *o;
    if (start(v, 1)) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", fmd_error());
        fmd_video_close(v);
        return fmd_fail_null("%s", msg);
    }
    return v;
}

const fmd_video_info *fmd_video_get_info(const fmd_video *v) { return &v->info; }
int64_t fmd_video_skipped(const fmd_video *v) { return v->skipped; }

int fmd_video_rewind(fmd_video *v) {
    if (start(v, 0)) {
        v->ended = 1;
        return -1;
    }
    return 0;
}

static double target(const fmd_video *v, int64_t k) {
    if (v->opts.mode == FMD_VIDEO_FPS) return k / v->opts.fps;
    return (k + 0.5) * v->info.duration / v->opts.frames;
}

/* whether the frame at t is sampled; advances the target past t */
static int take(fmd_video *v, double t) {
    if (v->opts.mode == FMD_VIDEO_ALL) return 1;
    double tol = v->frame_dur / 2;
    if (t < target(v, v->k) - tol) return 0;
    /* the first target after t + tol, in closed form (frames may be 2^40) */
    double next;
    if (v->opts.mode == FMD_VIDEO_FPS) next = floor((t + tol) * v->opts.fps) + 1;
    else if (v->info.duration > 0) next = floor((t + tol) * v->opts.frames / v->info.duration - 0.5) + 1;
    else next = (double)v->opts.frames;
    if (!(next < 9e15)) next = 9e15;   /* t is at most 1e12 s (frame_time): never reached */
    int64_t k = (int64_t)next;
    v->k = k > v->k ? k : v->k + 1;
    if (v->opts.mode == FMD_VIDEO_FRAMES && v->k > v->opts.frames) v->k = v->opts.frames;
    return 1;
}

/* full-range YUV: the frame says so, or a (deprecated) yuvj format does */
static int full_range(const AVFrame *fr) {
    enum AVPixelFormat p = fr->format;
    return fr->color_range == AVCOL_RANGE_JPEG || p == AV_PIX_FMT_YUVJ420P || p == AV_PIX_FMT_YUVJ422P ||
           p == AV_PIX_FMT_YUVJ444P || p == AV_PIX_FMT_YUVJ440P || p == AV_PIX_FMT_YUVJ411P;
}

// frame (w x h, any pixel format) -> *out (3, h, w), or (3, w, h) when turned 90 or 270 degrees;
// 1, 0 for a frame that cannot be converted (a damaged one), -1 on an error
static int to_tensor(fmd_video *v, fmd_tensor **out) {
    const AVFrame *fr = v->frame;
    int64_t w = fr->width, h = fr->height;
    if (w <= 0 || h <= 0 || w * h > fmd_max_image_pixels())
        return 0;   /* the decoder changed size mid-stream to something the first frame's check refused */
    /* the size stays, so the filter does not matter; accurate rounding and
     * full chroma interpolation halve the colour error of libswscale's fast
     * path (mean 1.5/255 instead of 3/255 on the fixtures) for about 8 ms
     * of CPU per 1080p frame instead of 1 */
    v->sws = sws_getCachedContext(v->sws, (int)w, (int)h, fr->format, (int)w, (int)h, AV_PIX_FMT_RGB24,
                                  SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
    if (!v->sws) return 0;
    /* the frame's YUV matrix (BT.601 when unspecified, as FFmpeg assumes) */
    int cs = fr->colorspace, range = full_range(fr);
    if (v->sws != v->sws_set || cs != v->sws_cs || range != v->sws_range) {
        sws_setColorspaceDetails(v->sws, sws_getCoefficients(cs), range, sws_getCoefficients(SWS_CS_DEFAULT), 1, 0,
                                 1 << 16, 1 << 16);
        v->sws_set = v->sws, v->sws_cs = cs, v->sws_range = range;
    }
    int stride = (int)((3 * w + 63) & ~63);
    size_t need = (size_t)stride * (size_t)h + 64;
    if (need > v->rgb_cap) {
        free(v->rgb);
        v->rgb = malloc(need);
        v->rgb_cap = v->rgb ? need : 0;
        if (!v->rgb) return fmd_fail("video '%s': out of memory for a %lld x %lld frame", v->path,
                                     (long long)w, (long long)h);
    }
    uint8_t *dst[4] = {v->rgb, NULL, NULL, NULL};
    int dst_stride[4] = {stride, 0, 0, 0};
    if (sws_scale(v->sws, (const uint8_t *const *)fr->data, fr->linesize, 0, (int)h, dst, dst_stride) != h) return 0;
    int rot = v->info.rotation;
    int64_t oh = rot % 180 ? w : h, ow = rot % 180 ? h : w;
    *out = fmd_empty(3, (int64_t[]){3, oh, ow});
    if (!*out) return -1;
    float *o = fmd_data(*out);
    int64_t plane = oh * ow;
    const float s = 1.0f / 255.0f;
    for (int64_t y = 0; y < oh; y++) {
        float *r = o + y * ow, *g = r + plane, *b = g + plane;
        if (rot == 0) {
            const uint8_t *p = v->rgb + y * stride;
            for (int64_t x = 0; x < ow; x++, p += 3) { r[x] = p[0] * s; g[x] = p[1] * s; b[x] = p[2] * s; }
            continue;
        }
        for (int64_t x = 0; x < ow; x++) {
            /* the source pixel shown at (y, x) after turning clockwise */
            int64_t sy, sx;
            if (rot == 90) { sy = h - 1 - x; sx = y; }
            else if (rot == 180) { sy = h - 1 - y; sx = w - 1 - x; }
            else { sy = x; sx = w - 1 - y; }
            const uint8_t *p = v->rgb + sy * stride + sx * 3;
            r[x] = p[0] * s; g[x] = p[1] * s; b[x] = p[2] * s;
        }
    }
    return 1;
}

// frame out is (3, H, W)
int fmd_video_next(fmd_video *v, fmd_tensor **frame, int64_t *index, double *time) {
    *frame = NULL;
    if (v->ended) return 0;
    for (;;) {
        if (!v->have_frame) {
            if (v->opts.mode == FMD_VIDEO_FRAMES && v->k >= v->opts.frames) break;   /* all targets met */
            int r = decode_next(v);
            if (r < 0) return -1;
            if (r == 0) {
                v->ended = 1;
                return check_complete(v);
            }
        }
        v->have_frame = 0;
        double t = frame_time(v);
        /* the frame's number at the average rate: exact for constant-rate
         * video; with damage or variable rate, time is the frame's name */
        double at = v->frame_dur > 0 && v->has_time ? nearbyint(t / v->frame_dur) : (double)v->count;
        int64_t at_index = at < 0 ? 0 : at > 9e15 ? (int64_t)9e15 : (int64_t)at;   /* < 0: before the start time */
        v->count++;
        v->last_t = t;
        if (!take(v, t)) {
            av_frame_unref(v->frame);
            continue;
        }
        fmd_tensor *out = NULL;
        int r = to_tensor(v, &out);
        av_frame_unref(v->frame);
        if (r < 0) return -1;
        if (r == 0) {   /* a frame that cannot be converted is a damaged one */
            v->skipped++;
            continue;
        }
        *frame = out;
        *index = at_index;
        *time = t;
        return 1;
    }
    v->ended = 1;
    return 0;
}

void fmd_video_close(fmd_video *v) {
    if (!v) return;
    close_streams(v);
    sws_freeContext(v->sws);
    if (v->f) fclose(v->f);
    free(v->rgb);
    free(v->path);
    free(v);
}
#endif
