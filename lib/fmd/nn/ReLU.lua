-- nn.ReLU(inplace=false): max(x, 0). `inplace` is accepted for PyTorch
-- compatibility (and shown in the repr) but the result is always a new
-- tensor, which autograd needs anyway.
local Module = require "fmd.nn.Module"

local ReLU = Module:extend("nn.ReLU")

function ReLU:__init(inplace)
  if type(inplace) == "table" then inplace = inplace.inplace end
  self.inplace = inplace and true or false
end

function ReLU:forward(x) return x:relu() end

function ReLU:extra_repr() return self.inplace and "inplace=True" or "" end

return ReLU
