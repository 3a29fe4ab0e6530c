-- fmd.nn.fusion: a conv followed by an eval-mode BatchNorm2d (and a ReLU)
-- run as one kernel when no graph is recorded (C.conv2d_bn): each sample's
-- conv output is normalised while it is still in cache instead of in
-- another pass over memory. The numbers are the same as the modules in
-- turn (tests/lua/test_fusion.lua checks they are equal bit for bit), so
-- this is an eval-time speed-up only, used by nn.Sequential and by models
-- that chain a conv and its BatchNorm in their own forward (Xception).
--
-- It applies only to the exact classes nn.Conv2d / nn.SeparableConv2d,
-- nn.BatchNorm2d (eval mode, running stats) and nn.ReLU, none of them with
-- forward hooks: a subclass may change forward, and a hook must see the
-- module's own output.
local C = require "fmd.core"
local F = require "fmd.nn.functional"

local fusion = {}

local function hooked(m)
  return #rawget(m, "_forward_hooks") > 0 or #rawget(m, "_forward_pre_hooks") > 0
end

local function conv_ok(m)
  if hooked(m) then return false end
  if m.__name == "nn.Conv2d" then return true end
  return m.__name == "nn.SeparableConv2d" and not hooked(m.pointwise)
end

local function bn_ok(m)
  return m.__name == "nn.BatchNorm2d" and not m.training and m.track_running_stats and not hooked(m)
end

local function relu_ok(m) return m ~= nil and m.__name == "nn.ReLU" and not hooked(m) end

-- how many of the modules a, b, c (b, c may be nil) one fused call runs:
-- 3 (conv, BatchNorm, ReLU), 2 (conv, BatchNorm) or 1 (no fusion)
function fusion.span(a, b, c)
  if C.is_grad_enabled() or b == nil or not bn_ok(b) or not conv_ok(a) then return 1 end
  return relu_ok(c) and 3 or 2
end

-- relu(bn(conv(x))) (relu when asked), fused when fusion.span allows
function fusion.conv_bn(conv, bn, x, relu)
  if fusion.span(conv, bn) > 1 then return conv:forward_bn(x, bn, relu) end
  local y = bn(conv(x))
  if relu then y = F.relu(y, true) end
  return y
end

return fusion
