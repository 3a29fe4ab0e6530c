-- nn.MaxPool2d(kernel_size, stride=kernel_size, padding=0): max over each
-- window (floor mode; padding acts as -inf). Sizes: a number or {h, w}.
local Module = require "fmd.nn.Module"
local util = require "fmd.nn.util"
local C = require "fmd.core"

local MaxPool2d = Module:extend("nn.MaxPool2d")

function MaxPool2d:__init(...)
  local o = util.args(table.pack(...), {"kernel_size", "stride", "padding", "dilation", "return_indices",
    "ceil_mode"}, "nn.MaxPool2d")
  if o.kernel_size == nil then error("nn.MaxPool2d: kernel_size is required", 3) end
  self._k = {util.pair(o.kernel_size, "nn.MaxPool2d: kernel_size", 1)}
  self._s = {util.pair(o.stride or o.kernel_size, "nn.MaxPool2d: stride", 1)}
  self._p = {util.pair(o.padding or 0, "nn.MaxPool2d: padding", 0)}
  local dh, dw = util.pair(o.dilation or 1, "nn.MaxPool2d: dilation", 1)
  if dh ~= 1 or dw ~= 1 then error("nn.MaxPool2d: only dilation 1 is supported", 3) end
  if o.return_indices then error("nn.MaxPool2d: return_indices is not supported", 3) end
  if o.ceil_mode then error("nn.MaxPool2d: ceil_mode is not supported (floor mode only)", 3) end
  -- as given, for the repr (PyTorch shows 2, not (2, 2), when given 2)
  self.kernel_size, self.stride, self.padding = o.kernel_size, o.stride or o.kernel_size, o.padding or 0
end

function MaxPool2d:forward(x)
  local k, s, p = self._k, self._s, self._p
  return C.max_pool2d(x, k[1], k[2], s[1], s[2], p[1], p[2])
end

function MaxPool2d:extra_repr()
  local py = util.py
  return ("kernel_size=%s, stride=%s, padding=%s, dilation=1, ceil_mode=False"):format(py(self.kernel_size),
    py(self.stride), py(self.padding))
end

return MaxPool2d
