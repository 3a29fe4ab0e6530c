-- fmd.video: frames of video files, decoded by FFmpeg's libraries
-- (engine/video.c) as a stream and sampled evenly (docs/video.md).
--
--   local v = fmd.video.open("clip.mp4", {fps = 1})     -- or {frames = 16}, {all = true}
--   print(v.info.width, v.info.height, v.info.fps, v.info.duration, v.info.frames)
--   for frame, index, time in v:frames() do ... end    -- frame (3,H,W) in [0, 1]
--   print(v.skipped)                                     -- damaged frames left out
--   v:close()
--
--   fmd.video.kind(path)       -> "image" | "video", format; or nil, reason
--   fmd.video.is_video(path)   -> true for a video container
local C = require "fmd.core"

local video = {}

-- whether this fmd was built with FFmpeg (else open raises "built without FFmpeg")
function video.available() return C.video_available() end

-- What a file is: by its first bytes, and by its extension for video
-- containers that have no signature. Every caller that must tell an image
-- from a video asks this (engine/video.c, fmd_file_kind).
function video.kind(path)
  if type(path) ~= "string" then error(("video.kind: expected a path, got %s"):format(type(path)), 2) end
  return C.video_kind(path)
end

function video.is_video(path) return video.kind(path) == "video" end

local Video = {}

-- v.skipped is live: the damaged frames left out so far (a field once closed)
Video.__index = function(self, k)
  if k == "skipped" then return C.video_skipped(rawget(self, "handle")) end
  return Video[k]
end

local OPTIONS = {fps = true, frames = true, all = true, threads = true}

-- opts: fps = N (samples per second of video; the default, 1), frames = N
-- (N frames evenly spread over the video), all = true (every frame); at
-- most one of them. threads = N decoder threads (default: fmd's count).
function video.open(path, opts)
  if type(path) ~= "string" then error(("video.open: expected a path, got %s"):format(type(path)), 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error(("video.open: options must be a table, got %s"):format(type(opts)), 2) end
  for k in pairs(opts) do
    if not OPTIONS[k] then
      error(("video.open: unknown option '%s' (fps, frames, all, threads)"):format(tostring(k)), 2)
    end
  end
  local given = (opts.fps ~= nil and 1 or 0) + (opts.frames ~= nil and 1 or 0) + (opts.all ~= nil and 1 or 0)
  if given > 1 then error("video.open: give one of fps, frames and all", 2) end
  local mode, value = "fps", 1
  if opts.fps ~= nil then
    if type(opts.fps) ~= "number" or not (opts.fps > 0 and opts.fps < math.huge) then
      error(("video.open: fps must be a positive number, got %s"):format(tostring(opts.fps)), 2)
    end
    value = opts.fps
  elseif opts.frames ~= nil then
    if math.type(opts.frames) ~= "integer" or opts.frames < 1 then
      error(("video.open: frames must be an integer >= 1, got %s"):format(tostring(opts.frames)), 2)
    end
    mode, value = "frames", opts.frames
  elseif opts.all ~= nil then
    if opts.all ~= true then error(("video.open: all must be true, got %s"):format(tostring(opts.all)), 2) end
    mode = "all"
  end
  local threads = opts.threads or 0
  if opts.threads ~= nil and (math.type(threads) ~= "integer" or threads < 1 or threads > 256) then
    error(("video.open: threads must be an integer in 1..256, got %s"):format(tostring(opts.threads)), 2)
  end
  local handle, info = C.video_open(path, mode, value, threads)
  return setmetatable({path = path, info = info, handle = handle, started = false}, Video)
end

-- for frame, index, time in v:frames(): each sampled frame (3,H,W) in
-- [0, 1], its 1-based position in the stream and its time in seconds from
-- the first frame. A second v:frames() starts again from the beginning.
function Video:frames()
  local h = self.handle
  if self.started then C.video_rewind(h) end
  self.started = true
  return function() return C.video_next(h) end
end

-- frees the decoder now (the garbage collector would, later); v.skipped
-- keeps its last count
function Video:close()
  if rawget(self, "skipped") == nil then rawset(self, "skipped", C.video_skipped(self.handle)) end
  C.video_close(self.handle)
end
Video.__close = Video.close

function Video:__tostring()
  local i = self.info
  return ("Video('%s': %dx%d, %.3g fps, %.3g s, %s in %s)"):format(self.path, i.width, i.height, i.fps, i.duration,
    i.codec, i.format)
end

return video
