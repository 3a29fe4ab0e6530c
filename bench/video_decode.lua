-- Video decoding throughput and peak memory of fmd.video (docs/video.md).
--
--   build/fmd bench/video_decode.lua [--dir DIR] [--long SECONDS] [--threads N]
--
-- Makes, once, with the ffmpeg command (apt-get install ffmpeg), two
-- 1920x1080 30 fps H.264 clips of testsrc2 in DIR (default
-- /tmp/fmd_bench_video): 10 s, and --long seconds (default 120). Each
-- measurement runs in a process of its own under /usr/bin/time -v, which
-- gives its peak resident memory:
--   10 s clip, fps = 1     (10 frames returned)
--   10 s clip, all frames  (300 frames returned)
--   long clip, fps = 1     (memory must not grow with the length)
--   the same, collectgarbage() after each frame (the decoder's own share:
--                          fmd's collector otherwise lets up to 256 MB of
--                          dropped tensors wait, docs/architecture.md)
--   fmd doing nothing      (the process's own baseline)
-- Frames/s counts frames returned per second of wall time, and decoded
-- frames per second (every frame is decoded whatever the sampling).
local fmd = require "fmd"
local C = require "fmd.core"
local video = require "fmd.video"

local opts = require("fmd.cli").parse(arg, {
  name = "bench/video_decode.lua", description = "fmd.video decoding: frames/s and peak memory (docs/video.md)",
  {"--dir", default = "/tmp/fmd_bench_video", help = "where the clips are made, once"},
  {"--long", type = "integer", default = 120, min = 1, help = "seconds of the long clip"},
  {"--threads", type = "integer", default = 2, min = 1, help = "decoder threads"},
  {"--measure", help = "(internal) one pass over this clip, in this process"},
  {"--mode", default = "fps", choices = {"fps", "all", "fps_gc"},
   help = "(internal) with --measure: fps = 1, every frame, or fps = 1 collecting each dropped frame"},
})

-- the child: one pass, one line "returned decoded seconds"
if opts.measure then
  fmd.set_num_threads(opts.threads)
  local t0 = C.sys.now()
  local v = video.open(opts.measure, opts.mode == "all" and {all = true} or {fps = 1})
  local n = 0
  for frame in v:frames() do
    n = n + 1
    frame = nil   -- dropped, as a caller that keeps only scores does
    if opts.mode == "fps_gc" then collectgarbage() end
  end
  local dt = C.sys.now() - t0
  print(("%d %d %.3f"):format(n, v.info.frames, dt))
  os.exit(0)
end

if not video.available() then error("video_decode: this fmd was built without FFmpeg", 0) end
if not os.execute("command -v ffmpeg >/dev/null") then
  error("video_decode: the ffmpeg command makes the clips; apt-get install ffmpeg", 0)
end
local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
C.sys.mkdir(opts.dir)
local function clip(seconds)
  local p = ("%s/testsrc2_1080p30_%ds.mp4"):format(opts.dir, seconds)
  if not C.sys.is_file(p) then
    io.stderr:write(("making %s ...\n"):format(p))
    assert(os.execute(("ffmpeg -v error -y -nostdin -f lavfi -i testsrc2=s=1920x1080:r=30:d=%d -c:v libx264 "
      .. "-preset veryfast -pix_fmt yuv420p %s"):format(seconds, q(p .. ".tmp.mp4"))), "ffmpeg failed")
    assert(os.rename(p .. ".tmp.mp4", p))
  end
  return p
end
local short, long = clip(10), clip(opts.long)

local exe = package.fmd_exe or "build/fmd"
local script = debug.getinfo(1, "S").source:gsub("^@", "")
-- runs the child under /usr/bin/time -v: its line and peak RSS (MB)
local function run(args)
  local p = io.popen(("/usr/bin/time -v %s %s %s 2>&1"):format(q(exe), q(script), args))
  local out = p:read("a")
  p:close()
  local kb = tonumber(out:match("Maximum resident set size %(kbytes%): (%d+)"))
  return out:match("^(%d+ %d+ [%d.]+)"), kb and kb / 1024
end

print(("fmd.video decode, 1920x1080 30 fps H.264 (testsrc2), %d decoder threads; machine shared and busy, "
  .. "figures indicative"):format(opts.threads))
print(("%-32s %9s %9s %12s %12s %10s"):format("case", "returned", "decoded", "returned/s", "decoded/s", "peak MB"))
local cases = {
  {"10 s clip, fps = 1", short, "fps"},
  {"10 s clip, all frames", short, "all"},
  {("%d s clip, fps = 1"):format(opts.long), long, "fps"},
  {("%d s clip, fps = 1, collected"):format(opts.long), long, "fps_gc"},
}
for _, c in ipairs(cases) do
  local line, mb = run(("--measure %s --mode %s --threads %d"):format(q(c[2]), c[3], opts.threads))
  if not line then error("video_decode: the measurement failed: " .. tostring(mb), 0) end
  local n, decoded, dt = line:match("(%d+) (%d+) ([%d.]+)")
  n, decoded, dt = tonumber(n), tonumber(decoded), tonumber(dt)
  print(("%-32s %9d %9d %12.1f %12.1f %10.0f"):format(c[1], n, decoded, n / dt, decoded / dt, mb or 0))
end
local _, base = run("--help")
print(("%-32s %9s %9s %12s %12s %10.0f"):format("fmd itself (--help)", "", "", "", "", base or 0))
