-- nn.Linear(in_features, out_features, bias=true): y = x W^T + b on the last
-- dim. weight (out, in) and bias (out) start as U(-k, k), k = 1/sqrt(in),
-- PyTorch's default.
local Module = require "fmd.nn.Module"
local util = require "fmd.nn.util"
local F = require "fmd.nn.functional"

local Linear = Module:extend("nn.Linear")

function Linear:__init(...)
  local o = util.args(table.pack(...), {"in_features", "out_features", "bias"}, "nn.Linear")
  local nin, nout = math.tointeger(o.in_features), math.tointeger(o.out_features)
  if not nin or not nout or nin < 1 or nout < 1 then
    error(("nn.Linear: in_features and out_features must be positive integers, got %s and %s")
      :format(tostring(o.in_features), tostring(o.out_features)), 3)
  end
  self.in_features, self.out_features = nin, nout
  local bound = 1 / math.sqrt(nin)
  self:register_parameter("weight", util.uniform({nout, nin}, bound))
  if o.bias == nil or o.bias then self:register_parameter("bias", util.uniform({nout}, bound)) end
end

function Linear:forward(x) return F.linear(x, self.weight, self.bias) end

function Linear:extra_repr()
  return ("in_features=%d, out_features=%d, bias=%s"):format(self.in_features, self.out_features,
    util.py(self.bias ~= nil))
end

return Linear
