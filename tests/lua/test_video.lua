-- fmd.video (engine/video.c, lib/fmd/video.lua) on the clips of
-- tests/fixtures/videos, made by tests/fixtures/make_videos.py: 3 s at
-- 10 fps, 72 x 48; frame n's top rows are (8n, 255 - 8n, 128), its bottom
-- rows (40, 200, 60), so each test knows which frame it got and its colours.
local fmd = require "fmd"
local video = require "fmd.video"

local FIX = "tests/fixtures/videos/"
local GOOD = {"h264.mp4", "vp9.webm", "vp8.webm", "mjpeg.avi", "anim.gif", "mpeg2.ts", "live.webm", "bt709.mp4"}
local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p '" .. tmp .. "'"))

if not video.available() then
  -- a build without FFmpeg: the one thing to check is the message
  test("built without FFmpeg: open says so", function()
    expect_error(function() return video.open(FIX .. "h264.mp4") end, "fmd was built without FFmpeg")
  end)
  return
end

local function write(name, bytes) return write_file(tmp .. "/" .. name, bytes) end

-- {index, ...}, {time, ...} of a whole pass
local function sample(name, opts)
  local v = video.open(FIX .. name, opts)
  local idx, times = {}, {}
  for _, i, t in v:frames() do idx[#idx + 1], times[#times + 1] = i, t end
  v:close()
  return idx, times, v
end

-- worst and mean |error| (0..255) of a frame against the pattern of frame n,
-- rows 23..26 left out (4:2:0 chroma blends the two halves there)
local function pattern_error(frame, n)
  local want = {{8 * n, 255 - 8 * n, 128}, {40, 200, 60}}
  local worst, mean = 0, 0
  for h, part in ipairs{frame:narrow(2, 1, 22), frame:narrow(2, 27, 22)} do
    for c = 1, 3 do
      local d = (part[c] * 255 - want[h][c]):abs()
      worst = math.max(worst, d:max():item())
      mean = math.max(mean, d:mean():item())
    end
  end
  return worst, mean
end

test("every codec and container: info, 30 frames, times, the pattern's colours", function()
  for _, name in ipairs(GOOD) do
    local v = video.open(FIX .. name, {all = true})
    local i = v.info
    expect_eq(i.width, 72, name)
    expect_eq(i.height, 48, name)
    expect_near(i.fps, 10, 1e-6, name)
    expect_near(i.duration, 3, 0.02, name)
    expect_eq(i.frames, 30, name)
    expect_eq(i.samples, 30, name)
    expect_eq(i.rotation, 0, name)
    local n = 0
    for frame, index, time in v:frames() do
      expect_eq(fmd.shape_str(frame), "[3 x 48 x 72]", name)
      expect_eq(index, n + 1, name)
      expect_near(time, n / 10, 1e-6, name)   -- mpeg2.ts: its clock starts at 1.5 s
      local worst, mean = pattern_error(frame, n)
      -- lossy codecs within 10/255 anywhere, 3/255 on average; the GIF is exact
      local tol = name == "anim.gif" and {1e-3, 1e-3} or {10, 3}
      expect(worst <= tol[1] and mean <= tol[2], ("%s frame %d: error %.2f (mean %.2f) of 255"):format(name, n, worst, mean))
      n = n + 1
    end
    expect_eq(n, 30, name)
    expect_eq(v.skipped, 0, name)
    v:close()
  end
end)

test("the colour matrix the file names (BT.709), not BT.601 everywhere", function()
  -- with BT.601 on bt709.mp4 the mean error is 27/255 (checked when written)
  local v = video.open(FIX .. "bt709.mp4", {frames = 1})
  local frame, index = v:frames()()
  local _, mean = pattern_error(frame, index - 1)
  expect(mean < 3, "mean error " .. mean)
end)

test("fps sampling: k / fps, the nearest frame at or after, each frame once", function()
  local idx, times, v = sample("h264.mp4")   -- the default: 1 a second
  expect_eq(table.concat(idx, ","), "1,11,21")
  expect_eq(table.concat(times, ","), "0.0,1.0,2.0")
  expect_eq(v.info.samples, 3)
  idx, _, v = sample("vp9.webm", {fps = 3})   -- targets 0, 0.33, 0.67, 1, ...
  expect_eq(table.concat(idx, ","), "1,4,8,11,14,18,21,24,28")
  expect_eq(v.info.samples, 9)
  idx = sample("mjpeg.avi", {fps = 2.5})      -- 0, 0.4, 0.8, ...
  expect_eq(table.concat(idx, ","), "1,5,9,13,17,21,25,29")
  idx = sample("anim.gif", {fps = 25})        -- more than the video has: every frame, once
  expect_eq(#idx, 30)
  expect_eq(idx[30], 30)
end)

test("frames sampling: the middles of N equal parts of the video", function()
  local idx, times, v = sample("h264.mp4", {frames = 3})   -- 0.5 s, 1.5 s, 2.5 s
  expect_eq(table.concat(idx, ","), "6,16,26")
  expect_eq(table.concat(times, ","), "0.5,1.5,2.5")
  expect_eq(v.info.samples, 3)
  expect_eq(table.concat(sample("vp8.webm", {frames = 1}), ","), "16")
  expect_eq(table.concat(sample("mpeg2.ts", {frames = 6}), ","), "3,8,13,18,23,28")
  idx, _, v = sample("mjpeg.avi", {frames = 100})           -- at most every frame
  expect_eq(#idx, 30)
  expect_eq(v.info.samples, 30)
end)

test("a WebM recorded live has no duration: it is measured, frames are spread over it", function()
  local v = video.open(FIX .. "live.webm", {frames = 3})
  expect_near(v.info.duration, 3, 0.02)
  expect_eq(v.info.frames, 30)
  local idx = {}
  for _, i in v:frames() do idx[#idx + 1] = i end
  expect_eq(table.concat(idx, ","), "6,16,26")
end)

test("a portrait phone clip (display matrix 90 degrees) comes out upright", function()
  local v = video.open(FIX .. "rot90.mp4", {frames = 3})
  expect_eq(v.info.rotation, 90)
  expect_eq(v.info.width, 48)
  expect_eq(v.info.height, 72)
  for frame, index in v:frames() do
    expect_eq(fmd.shape_str(frame), "[3 x 72 x 48]")
    -- turned clockwise: the picture's top rows are now its right columns
    local n = index - 1
    local right, left = frame:narrow(3, 27, 22), frame:narrow(3, 1, 22)
    expect_near(right[1]:mean():item() * 255, 8 * n, 0.02 * 255)
    expect_near(right[2]:mean():item() * 255, 255 - 8 * n, 0.02 * 255)
    expect_near(left[2]:mean():item() * 255, 200, 0.02 * 255)
    -- and the same pixels as the unturned clip, moved
    local plain = video.open(FIX .. "h264.mp4", {all = true})
    for f, i in plain:frames() do
      if i == index then expect_near(frame, fmd.image_hflip(f:transpose(2, 3):contiguous()), 1e-6) break end
    end
  end
end)

test("a second v:frames() starts again; decoder threads do not change a pixel", function()
  local v = video.open(FIX .. "h264.mp4", {fps = 2})
  local a, b = {}, {}
  for f, i in v:frames() do a[#a + 1] = {f, i} end
  for f, i in v:frames() do b[#b + 1] = {f, i} end
  expect_eq(#a, 6)
  expect_eq(#b, 6)
  local one = video.open(FIX .. "h264.mp4", {fps = 2, threads = 1})
  local k = 0
  for f, i in one:frames() do
    k = k + 1
    expect_eq(i, a[k][2])
    expect_eq(i, b[k][2])
    expect_eq(fmd.max_rel_err(f, a[k][1]), 0)
    expect_eq(fmd.max_rel_err(f, b[k][1]), 0)
  end
  v:close()
  expect_error(function() for _ in v:frames() do end end, "video was closed")
  do
    local w <close> = video.open(FIX .. "vp8.webm")
    expect_eq(w.info.codec, "vp8")
    expect(tostring(w):find("72x48", 1, true), tostring(w))
  end
end)

test("memory stays bounded: frames not kept are collected", function()
  local before = fmd.memory_in_use()
  local v = video.open(FIX .. "mjpeg.avi", {all = true})
  for _ = 1, 10 do
    for f in v:frames() do local _ = f end
  end
  v:close()
  collectgarbage()
  collectgarbage()
  -- 300 frames of 41 KB went through; what is left is at most a few
  expect(fmd.memory_in_use() - before < 4 * 3 * 48 * 72 * 4, "bytes in use grew by " .. fmd.memory_in_use() - before)
end)

test("damaged frames inside a good video are skipped and counted", function()
  -- random bytes over frame 8's JPEG data: the decoder refuses that frame
  local idx, times, v = sample("damaged.avi", {all = true})
  expect_eq(#idx, 29)
  expect_eq(v.skipped, 1)
  expect_eq(idx[7], 7)
  expect_eq(idx[8], 9)      -- frame 8 is the one missing; the others keep their numbers
  expect_eq(times[8], 0.8)
  -- H.264 whose second key frame (frame 11) is garbage: the decoder drops
  -- frames 11..14 without a word; they are counted at the end
  idx, _, v = sample("damaged.mp4", {all = true})
  expect_eq(#idx, 26)
  expect_eq(v.skipped, 4)
  expect_eq(idx[10], 10)
  expect_eq(idx[11], 15)
  -- sampled: the target 1.0 s falls on a lost frame, the next good one serves
  idx = sample("damaged.mp4", {fps = 1})
  expect_eq(table.concat(idx, ","), "1,15,21")
end)

test("bad files: each a clear error naming the file", function()
  local cases = {
    {"notes.mp4", "video '" .. FIX .. "notes.mp4': not a video file FFmpeg can read ("},
    {"notes.mp4", "32 bytes, starts with 746865736520617265206d79)"},
    {"noframes.avi", "video '" .. FIX .. "noframes.avi': the video stream has no frames"},
    {"audio.m4a", "video '" .. FIX .. "audio.m4a': no video stream (the file holds audio aac)"},
    {"truncated.mp4", "video '" .. FIX .. "truncated.mp4': truncated or damaged: its frames stop at"},
    {"truncated.mp4", "of the 30 frames its header lists"},
    {"truncated.webm", "video '" .. FIX .. "truncated.webm': truncated or damaged: its frames stop at 0.70 s (its header gives 3.00 s"},
  }
  for _, c in ipairs(cases) do
    expect_error(function()
      local v = video.open(FIX .. c[1], {all = true})
      for _ in v:frames() do end
    end, c[2])
  end
  -- a truncated file still gives the frames it has before the error
  local v = video.open(FIX .. "truncated.webm", {all = true})
  local n = 0
  expect_error(function() for _ in v:frames() do n = n + 1 end end, "truncated")
  expect_eq(n, 7)
  -- files that are not there or not files
  expect_error(function() return video.open(tmp .. "/nosuch.mp4") end, "video: cannot open " .. tmp .. "/nosuch.mp4")
  expect_error(function() return video.open(tmp) end, "is not a regular file (a directory)")
  expect_error(function() return video.open(write("empty.mp4", "")) end, "video '" .. tmp .. "/empty.mp4': the file is empty")
  assert(os.execute("mkfifo '" .. tmp .. "/pipe.mp4'"))
  expect_error(function() return video.open(tmp .. "/pipe.mp4") end, "is not a regular file (a pipe)")
  -- a path is a file name, never an FFmpeg URL
  expect_error(function() return video.open("concat:" .. FIX .. "h264.mp4") end, "cannot open concat:")
end)

test("a file never makes fmd open another file (HLS playlist, ffconcat list)", function()
  local here = io.popen("pwd"):read("l")
  -- FFmpeg would read the segment and return its frames
  local m3u8 = write("list.m3u8", "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXTINF:3.0,\n"
    .. here .. "/" .. FIX .. "mpeg2.ts\n#EXT-X-ENDLIST\n")
  expect_error(function() return video.open(m3u8) end, "list.m3u8': not a video file FFmpeg can read")
  -- the concat demuxer opens a context of its own (a file beside the list is "safe" to it)
  write("clip.mp4", io.open(FIX .. "h264.mp4", "rb"):read("a"))
  local list = write("list.ffconcat", "ffconcat version 1.0\nfile 'clip.mp4'\n")
  expect_error(function() return video.open(list) end, "list.ffconcat': not a video file FFmpeg can read")
  expect_eq(video.open(tmp .. "/clip.mp4").info.frames, 30)   -- the file itself reads
end)

test("bad options: clear errors", function()
  local p = FIX .. "h264.mp4"
  expect_error(function() return video.open(p, {fsp = 1}) end, "unknown option 'fsp' (fps, frames, all, threads)")
  expect_error(function() return video.open(p, {fps = 0}) end, "fps must be a positive number, got 0")
  expect_error(function() return video.open(p, {fps = 0 / 0}) end, "fps must be a positive number")
  expect_error(function() return video.open(p, {frames = 0}) end, "frames must be an integer >= 1, got 0")
  expect_error(function() return video.open(p, {frames = 2.5}) end, "frames must be an integer >= 1, got 2.5")
  expect_error(function() return video.open(p, {fps = 1, frames = 3}) end, "give one of fps, frames and all")
  expect_error(function() return video.open(p, {all = 1}) end, "all must be true")
  expect_error(function() return video.open(p, {threads = 0}) end, "threads must be an integer in 1..256")
  expect_error(function() return video.open(p, "fast") end, "options must be a table")
  expect_error(function() return video.open(42) end, "expected a path, got number")
end)

test("FFmpeg's own log never reaches the terminal: damage is counted, errors are one message", function()
  local exe = package.fmd_exe
  local function run(code)
    local p = io.popen(("%s -e %q 2>&1"):format(exe, code))
    local out = p:read("a")
    p:close()
    return out
  end
  -- the decoder complains about every damaged frame at its default log level
  local out = run("for _, n in ipairs{'damaged.avi', 'damaged.mp4'} do local v = fmd.video.open('" .. FIX
    .. "' .. n, {all = true}) for _ in v:frames() do end io.write(v.skipped, ' ') end")
  expect_eq(out, "1 4 ")
  out = run("local v = fmd.video.open('" .. FIX .. "truncated.webm', {all = true}) for _ in v:frames() do end")
  local lines = select(2, out:gsub("\n", ""))
  expect(lines == 1 and out:find("truncated or damaged", 1, true), out)
end)

test("kind: image or video by content, a video container by its extension", function()
  local function kind(p) return table.concat({tostring(select(1, video.kind(p))), tostring(select(2, video.kind(p)))}, " ") end
  expect_eq(kind("tests/fixtures/images/src.png"), "image png")
  expect_eq(kind("tests/fixtures/images/base.jpg"), "image jpeg")
  expect_eq(kind(FIX .. "h264.mp4"), "video mp4")
  expect_eq(kind(FIX .. "vp9.webm"), "video matroska")
  expect_eq(kind(FIX .. "mjpeg.avi"), "video avi")
  expect_eq(kind(FIX .. "anim.gif"), "video gif")
  expect_eq(kind(FIX .. "mpeg2.ts"), "video mpegts")
  expect_eq(kind(FIX .. "notes.mp4"), "video mp4")   -- by its name: open then says what it is
  expect(video.is_video(FIX .. "rot90.mp4"))
  expect(not video.is_video("tests/fixtures/images/src.png"))
  -- an image is an image whatever its name
  local png = io.open("tests/fixtures/images/src.png", "rb"):read("a")
  expect_eq(kind(write("photo.mp4", png)), "image png")
  local k, why = video.kind(write("notes.txt", "hello\n"))
  expect_eq(k, nil)
  expect(why:find("notes.txt': not an image (PNG, JPEG) or a video (6 bytes, starts with 68656c6c6f0a)", 1, true), why)
  k, why = video.kind(write("empty.ts", ""))
  expect(k == nil and why:find("empty.ts': the file is empty", 1, true), why)
  k, why = video.kind(tmp .. "/pipe.mp4")
  expect(k == nil and why:find("is not a regular file (a pipe)", 1, true), why)
  k, why = video.kind(tmp .. "/nosuch.png")
  expect(k == nil and why:find("cannot open", 1, true), why)
end)

os.execute("rm -rf '" .. tmp .. "'")
