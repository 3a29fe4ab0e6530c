-- nn.Softmax(dim): softmax over dim (1-based; default: the last dim).
local Module = require "fmd.nn.Module"
local F = require "fmd.nn.functional"

local Softmax = Module:extend("nn.Softmax")
function Softmax:__init(dim) self.dim = dim end
function Softmax:forward(x) return F.softmax(x, self.dim) end
function Softmax:extra_repr() return "dim=" .. (self.dim and tostring(self.dim) or "None") end

return Softmax
