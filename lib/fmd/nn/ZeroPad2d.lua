-- nn.ZeroPad2d(padding): zeros around each (H,W) plane. padding is one
-- number for every side or {left, right, top, bottom} (PyTorch's order), so
-- Keras' stride-2 convolutions, which pad only the bottom and right, are
-- nn.ZeroPad2d{0, 1, 0, 1} then a convolution without padding.
local Module = require "fmd.nn.Module"
local F = require "fmd.nn.functional"
local util = require "fmd.nn.util"

local ZeroPad2d = Module:extend("nn.ZeroPad2d")

function ZeroPad2d:__init(padding)
  if type(padding) == "table" and padding.padding then padding = padding.padding end
  local p = type(padding) == "number" and {padding, padding, padding, padding} or padding
  if type(p) ~= "table" or #p ~= 4 then
    error(("nn.ZeroPad2d: padding must be a number or {left, right, top, bottom}, got %s"):format(tostring(padding)), 3)
  end
  self.padding = {}
  for i = 1, 4 do
    local v = type(p[i]) == "number" and math.tointeger(p[i])
    if not v or v < 0 then
      error(("nn.ZeroPad2d: padding[%d] must be an integer >= 0, got %s"):format(i, tostring(p[i])), 3)
    end
    self.padding[i] = v
  end
end

function ZeroPad2d:forward(x) return F.pad(x, self.padding, 0) end

function ZeroPad2d:extra_repr() return util.py(self.padding) end

return ZeroPad2d
