-- nn.Dropout(p=0.5): in training, zeroes each element with probability p
-- (drawn from the global RNG) and scales the rest by 1/(1-p); identity in eval.
local Module = require "fmd.nn.Module"
local util = require "fmd.nn.util"
local C = require "fmd.core"

local Dropout = Module:extend("nn.Dropout")

function Dropout:__init(p, inplace)
  if type(p) == "table" then p, inplace = p.p, p.inplace end
  p = p or 0.5
  if type(p) ~= "number" or p < 0 or p > 1 then
    error(("nn.Dropout: p must be a probability in [0, 1], got %s"):format(tostring(p)), 3)
  end
  self.p, self.inplace = p, inplace and true or false
end

function Dropout:forward(x) return C.dropout(x, self.p, self.training) end

function Dropout:extra_repr() return ("p=%s, inplace=%s"):format(util.py(self.p + 0.0), util.py(self.inplace)) end

return Dropout
