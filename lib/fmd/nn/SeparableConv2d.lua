-- nn.SeparableConv2d(in, out, kernel_size=1, stride=1, padding=0,
--                    dilation=1, bias=false)
-- Xception's separable convolution as in the PyTorch ports by Cadene and
-- tstandley: conv1 = depthwise kernel_size conv (in -> in, groups = in),
-- then pointwise = 1x1 conv (in -> out). The child names match those
-- weight files: <name>.conv1.weight, <name>.pointwise.weight.
local Module = require "fmd.nn.Module"
local Conv2d = require "fmd.nn.Conv2d"
local util = require "fmd.nn.util"
local C = require "fmd.core"

local SeparableConv2d = Module:extend("nn.SeparableConv2d")

function SeparableConv2d:__init(...)
  local o = util.args(table.pack(...), {"in_channels", "out_channels", "kernel_size", "stride", "padding",
    "dilation", "bias"}, "nn.SeparableConv2d")
  local bias = o.bias and true or false
  self.conv1 = Conv2d(o.in_channels, o.in_channels, o.kernel_size or 1, o.stride or 1, o.padding or 0,
    o.dilation or 1, o.in_channels, bias)
  self.pointwise = Conv2d(o.in_channels, o.out_channels, 1, 1, 0, 1, 1, bias)
end

-- the children as this module made them (a user may swap or hook them):
-- then one C.sepconv2d call, one autograd node that runs forward and
-- backward a sample at a time; else the two modules in turn
local function plain(c, p)
  if c.__name ~= "nn.Conv2d" or p.__name ~= "nn.Conv2d" or c.bias ~= nil or p.bias ~= nil then return false end
  if util.hooked(c) or util.hooked(p) then return false end
  local k, s, pd, d = p.kernel_size, p.stride, p.padding, p.dilation
  return k[1] == 1 and k[2] == 1 and s[1] == 1 and s[2] == 1 and pd[1] == 0 and pd[2] == 0 and d[1] == 1 and
    d[2] == 1 and p.groups == 1
end

function SeparableConv2d:forward(x)
  local c, p = self.conv1, self.pointwise
  if not plain(c, p) then return p(c(x)) end
  local s, pd, d = c.stride, c.padding, c.dilation
  return C.sepconv2d(x, c.weight, p.weight, s[1], s[2], pd[1], pd[2], d[1], d[2], c.groups)
end

-- without a graph, in one kernel call (C.sepconv2d_fused, a sample at a
-- time): the ReLU before it read by the depthwise conv, and an eval-mode
-- BatchNorm2d (and ReLU) after it applied to the pointwise conv's output (nn.fusion)
function SeparableConv2d:forward_fused(x, relu_in, bn, relu)
  local c, p = self.conv1, self.pointwise
  local s, pd, d = c.stride, c.padding, c.dilation
  return C.sepconv2d_fused(x, c.weight, c.bias, s[1], s[2], pd[1], pd[2], d[1], d[2], c.groups,
    relu_in and true or false, p.weight, p.bias, bn and bn.weight, bn and bn.bias, bn and bn.running_mean,
    bn and bn.running_var, bn and bn.eps, relu and true or false)
end

return SeparableConv2d
