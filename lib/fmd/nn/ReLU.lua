-- nn.ReLU(inplace=false): max(x, 0). inplace = true overwrites the input
-- when no graph is recorded (eval under fmd.no_grad), as PyTorch's relu_:
-- one pass over the data and no new buffer. With a graph the result is a
-- new tensor, which autograd needs.
local Module = require "fmd.nn.Module"
local F = require "fmd.nn.functional"

local ReLU = Module:extend("nn.ReLU")

function ReLU:__init(inplace)
  if type(inplace) == "table" then inplace = inplace.inplace end
  self.inplace = inplace and true or false
end

function ReLU:forward(x) return F.relu(x, self.inplace) end

function ReLU:extra_repr() return self.inplace and "inplace=True" or "" end

return ReLU
