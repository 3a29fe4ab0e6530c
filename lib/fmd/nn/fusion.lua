-- fmd.nn.fusion: modules that follow each other run as one kernel call.
--  - Without a graph, [ReLU] conv [eval-mode BatchNorm2d [ReLU]]
--    (C.conv2d_fused, C.sepconv2d_fused): the stride-1 depthwise conv of a
--    SeparableConv2d reads its input as max(x, 0) while it pads each plane,
--    a SeparableConv2d runs a sample at a time (its pointwise GEMM reads the
--    sample's depthwise output from cache), and each sample's conv output is
--    normalised (and rectified) while it is still in cache, instead of
--    further passes over memory.
--  - Graph or not (training too), BatchNorm2d then ReLU
--    (C.batch_norm_relu): one autograd node that rectifies as it writes and
--    masks the gradient as it reads, with no ReLU pass or tensor each way.
-- The numbers are those of the modules in turn, bit for bit, gradients
-- included (tests/lua/test_fusion.lua). nn.Sequential fuses its children,
-- and models that chain a conv and its BatchNorm in their own forward
-- (Xception) call fusion.conv_bn.
--
-- It applies only to the exact classes nn.Conv2d / nn.SeparableConv2d,
-- nn.BatchNorm2d (for the conv fusion: eval mode, running stats) and
-- nn.ReLU, none of them with forward hooks: a subclass may change forward,
-- and a hook must see the module's own output.
local C = require "fmd.core"
local F = require "fmd.nn.functional"
local hooked = require("fmd.nn.util").hooked

local fusion = {}

local function conv_ok(m)
  if m == nil or hooked(m) then return false end
  if m.__name == "nn.Conv2d" then return true end
  return m.__name == "nn.SeparableConv2d" and not hooked(m.conv1) and not hooked(m.pointwise)
end

local function relu_ok(m) return m ~= nil and m.__name == "nn.ReLU" and not hooked(m) end

-- a BatchNorm2d that can take the ReLU after it (any mode)
local function bn_ok(m) return m ~= nil and m.__name == "nn.BatchNorm2d" and not hooked(m) end

-- one that a conv can apply as its epilogue: fixed statistics
local function eval_bn_ok(m) return bn_ok(m) and not m.training and m.track_running_stats end

-- The fused call that runs modules a, b, c, d (later ones may be nil) from
-- the first: {n = modules covered, conv =, relu_in =, bn =, relu =}, or nil
-- when nothing fuses. Patterns: without a graph, [ReLU] conv [BatchNorm2d
-- [ReLU]], with the leading ReLU only before a SeparableConv2d (its
-- depthwise conv reads it) and at least two modules in all; and, graph or
-- not, BatchNorm2d ReLU (conv = nil).
function fusion.plan(a, b, c, d)
  if bn_ok(a) and relu_ok(b) then
    return {n = 2, bn = a, relu = true, relu_in = false}
  end
  if C.is_grad_enabled() then return nil end
  local relu_in = relu_ok(a) and b ~= nil and b.__name == "nn.SeparableConv2d" and conv_ok(b)
  if relu_in then a, b, c = b, c, d end
  if not conv_ok(a) then return nil end
  local bn = eval_bn_ok(b) and b or nil
  if not bn and not relu_in then return nil end
  local relu = bn ~= nil and relu_ok(c)
  return {n = (relu_in and 1 or 0) + 1 + (bn and 1 or 0) + (relu and 1 or 0), conv = a, relu_in = relu_in,
          bn = bn, relu = relu}
end

-- runs plan p (from fusion.plan) on x
function fusion.run(p, x)
  if not p.conv then return p.bn:forward_relu(x) end
  return p.conv:forward_fused(x, p.relu_in, p.bn, p.relu)
end

-- relu(bn(conv(x))) (relu when asked), one kernel call when fusion allows
function fusion.conv_bn(conv, bn, x, relu)
  local p = fusion.plan(conv, bn)
  if p then return conv:forward_fused(x, false, bn, relu) end
  local y = conv(x)
  if relu and bn_ok(bn) then return bn:forward_relu(y) end
  y = bn(y)
  if relu then y = F.relu(y, true) end
  return y
end

return fusion
