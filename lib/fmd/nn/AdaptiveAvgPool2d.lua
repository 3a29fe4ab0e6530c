-- nn.AdaptiveAvgPool2d(output_size): averages into an output_size grid
-- (a number or {h, w}); 1 gives global average pooling.
local Module = require "fmd.nn.Module"
local util = require "fmd.nn.util"
local C = require "fmd.core"

local AdaptiveAvgPool2d = Module:extend("nn.AdaptiveAvgPool2d")

function AdaptiveAvgPool2d:__init(output_size)
  if type(output_size) == "table" and output_size.output_size then output_size = output_size.output_size end
  self._o = {util.pair(output_size, "nn.AdaptiveAvgPool2d: output_size", 1)}
  self.output_size = output_size
end

function AdaptiveAvgPool2d:forward(x) return C.adaptive_avg_pool2d(x, self._o[1], self._o[2]) end

function AdaptiveAvgPool2d:extra_repr() return "output_size=" .. util.py(self.output_size) end

return AdaptiveAvgPool2d
