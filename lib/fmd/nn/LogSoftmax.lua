-- nn.LogSoftmax(dim): log of softmax over dim (1-based; default: the last).
local Module = require "fmd.nn.Module"
local F = require "fmd.nn.functional"

local LogSoftmax = Module:extend("nn.LogSoftmax")
function LogSoftmax:__init(dim) self.dim = dim end
function LogSoftmax:forward(x) return F.log_softmax(x, self.dim) end
function LogSoftmax:extra_repr() return "dim=" .. (self.dim and tostring(self.dim) or "None") end

return LogSoftmax
