-- nn.BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=true,
--                track_running_stats=true)
-- Training: normalises with the batch statistics and updates the buffers
-- running_mean/running_var (unbiased variance, weight `momentum` on the new
-- value); eval: uses the buffers. weight starts at 1, bias at 0.
local Module = require "fmd.nn.Module"
local util = require "fmd.nn.util"
local fmd = require "fmd"
local C = require "fmd.core"

local BatchNorm2d = Module:extend("nn.BatchNorm2d")

function BatchNorm2d:__init(...)
  local o = util.args(table.pack(...), {"num_features", "eps", "momentum", "affine", "track_running_stats"},
    "nn.BatchNorm2d")
  local n = math.tointeger(o.num_features)
  if not n or n < 1 then
    error(("nn.BatchNorm2d: num_features must be a positive integer, got %s"):format(tostring(o.num_features)), 3)
  end
  self.num_features = n
  self.eps = o.eps or 1e-5
  self.momentum = o.momentum or 0.1
  self.affine = o.affine == nil or o.affine and true or false
  self.track_running_stats = o.track_running_stats == nil or o.track_running_stats and true or false
  if self.affine then
    self:register_parameter("weight", fmd.ones(n))
    self:register_parameter("bias", fmd.zeros(n))
  end
  if self.track_running_stats then
    self:register_buffer("running_mean", fmd.zeros(n))
    self:register_buffer("running_var", fmd.ones(n))
  end
end

function BatchNorm2d:reset_running_stats()
  if self.track_running_stats then
    self.running_mean:zero()
    self.running_var:fill(1)
  end
end

-- op is C.batch_norm or C.batch_norm_relu
local function run(self, op, x)
  -- without running stats, batch statistics are used in eval too (PyTorch)
  local training = self.training or not self.track_running_stats
  return op(x, self.weight, self.bias, self.running_mean, self.running_var, training, self.momentum, self.eps)
end

function BatchNorm2d:forward(x) return run(self, C.batch_norm, x) end

-- max(self(x), 0) as one node, with or without a graph: the ReLU costs no
-- pass or tensor of its own (nn.fusion decides when)
function BatchNorm2d:forward_relu(x) return run(self, C.batch_norm_relu, x) end

function BatchNorm2d:extra_repr()
  local py = util.py
  return ("%d, eps=%s, momentum=%s, affine=%s, track_running_stats=%s"):format(self.num_features, py(self.eps),
    py(self.momentum), py(self.affine), py(self.track_running_stats))
end

return BatchNorm2d
