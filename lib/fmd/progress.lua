-- A live progress bar on a terminal (items/s and ETA), plain lines otherwise.
--   local bar = progress.new{total = n_batches, label = "train", unit = "img"}
--   bar:update(done_batches, images_done, "loss 0.41")   ...   bar:finish()
local fmd_core = require "fmd.core"
local progress = {}
progress.__index = progress

local function fmt_time(s)
  if s ~= s or s == math.huge then return "--:--" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return ("%d:%02d:%02d"):format(s // 3600, s // 60 % 60, s % 60) end
  return ("%02d:%02d"):format(s // 60, s % 60)
end

function progress.new(o)
  local self = setmetatable({}, progress)
  self.total = o.total or 0
  self.label = o.label or ""
  self.unit = o.unit or "it"
  -- under mpirun, plain lines: the ranks write to a pseudo-terminal of the
  -- launcher whatever its own output is (and only rank 0 prints, fmd.dist)
  self.tty = o.tty ~= nil and o.tty or (fmd_core.sys.isatty(1) and not fmd_core._dist.initialized())
  self.start = fmd_core.sys.now()
  self.last = -1
  return self
end

-- done: steps finished; items: units processed (for the rate); note: text
function progress:update(done, items, note)
  if not self.tty then return end
  local now = fmd_core.sys.now()
  if now - self.last < 0.1 and done < self.total then return end
  self.last = now
  local el = now - self.start
  local rate = el > 0 and (items or done) / el or 0
  local eta = done > 0 and el / done * (self.total - done) or math.huge
  local width = 24
  local filled = self.total > 0 and math.floor(width * done / self.total) or 0
  io.write(("\r%s [%s%s] %d/%d  %.1f %s/s  ETA %s  %s\27[K"):format(self.label, ("#"):rep(filled),
    ("."):rep(width - filled), done, self.total, rate, self.unit, fmt_time(eta), note or ""))
  io.flush()
end

function progress:finish()
  if self.tty then io.write("\r\27[K"); io.flush() end
  return fmd_core.sys.now() - self.start
end

return progress
