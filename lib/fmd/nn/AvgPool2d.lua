-- nn.AvgPool2d(kernel_size, stride=kernel_size, padding=0): mean over each
-- window (floor mode; padded zeros count in the divisor, PyTorch's default).
local Module = require "fmd.nn.Module"
local util = require "fmd.nn.util"
local C = require "fmd.core"

local AvgPool2d = Module:extend("nn.AvgPool2d")

function AvgPool2d:__init(...)
  local o = util.args(table.pack(...), {"kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"},
    "nn.AvgPool2d")
  if o.kernel_size == nil then error("nn.AvgPool2d: kernel_size is required", 3) end
  self._k = {util.pair(o.kernel_size, "nn.AvgPool2d: kernel_size", 1)}
  self._s = {util.pair(o.stride or o.kernel_size, "nn.AvgPool2d: stride", 1)}
  self._p = {util.pair(o.padding or 0, "nn.AvgPool2d: padding", 0)}
  if o.ceil_mode then error("nn.AvgPool2d: ceil_mode is not supported (floor mode only)", 3) end
  if o.count_include_pad == false then error("nn.AvgPool2d: only count_include_pad = true is supported", 3) end
  self.kernel_size, self.stride, self.padding = o.kernel_size, o.stride or o.kernel_size, o.padding or 0
end

function AvgPool2d:forward(x)
  local k, s, p = self._k, self._s, self._p
  return C.avg_pool2d(x, k[1], k[2], s[1], s[2], p[1], p[2])
end

function AvgPool2d:extra_repr()
  local py = util.py
  return ("kernel_size=%s, stride=%s, padding=%s"):format(py(self.kernel_size), py(self.stride), py(self.padding))
end

return AvgPool2d
