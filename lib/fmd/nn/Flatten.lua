-- nn.Flatten(start_dim=2, end_dim=-1): merges dims start_dim..end_dim
-- (1-based: the default keeps dim 1, the batch, like PyTorch's start_dim=1).
local Module = require "fmd.nn.Module"
local F = require "fmd.nn.functional"

local Flatten = Module:extend("nn.Flatten")

function Flatten:__init(start_dim, end_dim)
  if type(start_dim) == "table" then start_dim, end_dim = start_dim.start_dim, start_dim.end_dim end
  self.start_dim, self.end_dim = start_dim or 2, end_dim or -1
end

function Flatten:forward(x) return F.flatten(x, self.start_dim, self.end_dim) end

function Flatten:extra_repr() return ("start_dim=%d, end_dim=%d"):format(self.start_dim, self.end_dim) end

return Flatten
