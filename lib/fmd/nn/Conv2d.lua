-- nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0,
--           dilation=1, groups=1, bias=true)
-- Sizes are a number or an {h, w} pair; the arguments after kernel_size may
-- be given as a table instead: nn.Conv2d(3, 16, 3, {stride = 2, bias = false}).
-- weight (out, in/groups, kh, kw) and bias (out) start as U(-k, k) with
-- k = 1/sqrt(in/groups * kh * kw), PyTorch's default (kaiming_uniform, a = sqrt(5)).
local Module = require "fmd.nn.Module"
local util = require "fmd.nn.util"
local C = require "fmd.core"

local Conv2d = Module:extend("nn.Conv2d")

local NAMES = {"in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias"}

function Conv2d:__init(...)
  local o = util.args(table.pack(...), NAMES, "nn.Conv2d")
  local cin, cout = math.tointeger(o.in_channels), math.tointeger(o.out_channels)
  local groups = math.tointeger(o.groups or 1)
  if not cin or not cout or cin < 1 or cout < 1 then
    error(("nn.Conv2d: in_channels and out_channels must be positive integers, got %s and %s")
      :format(tostring(o.in_channels), tostring(o.out_channels)), 3)
  end
  if not groups or groups < 1 or cin % groups ~= 0 or cout % groups ~= 0 then
    error(("nn.Conv2d: groups (%s) must divide in_channels (%d) and out_channels (%d)")
      :format(tostring(o.groups), cin, cout), 3)
  end
  if o.kernel_size == nil then error("nn.Conv2d: kernel_size is required", 3) end
  local kh, kw = util.pair(o.kernel_size, "nn.Conv2d: kernel_size", 1)
  self.in_channels, self.out_channels, self.groups = cin, cout, groups
  self.kernel_size = {kh, kw}
  self.stride = {util.pair(o.stride or 1, "nn.Conv2d: stride", 1)}
  self.padding = {util.pair(o.padding or 0, "nn.Conv2d: padding", 0)}
  self.dilation = {util.pair(o.dilation or 1, "nn.Conv2d: dilation", 1)}
  local bound = 1 / math.sqrt(cin // groups * kh * kw)
  self:register_parameter("weight", util.uniform({cout, cin // groups, kh, kw}, bound))
  if o.bias == nil or o.bias then self:register_parameter("bias", util.uniform({cout}, bound)) end
end

function Conv2d:forward(x)
  local s, p, d = self.stride, self.padding, self.dilation
  return C.conv2d(x, self.weight, self.bias, s[1], s[2], p[1], p[2], d[1], d[2], self.groups)
end

-- relu(bn(conv(relu(x)))) without a graph, each part when asked (bn an
-- eval-mode BatchNorm2d or nil), in one kernel call; nn.fusion decides when
function Conv2d:forward_fused(x, relu_in, bn, relu)
  local s, p, d = self.stride, self.padding, self.dilation
  return C.conv2d_fused(x, self.weight, self.bias, s[1], s[2], p[1], p[2], d[1], d[2], self.groups,
    relu_in and true or false, bn and bn.weight, bn and bn.bias, bn and bn.running_mean, bn and bn.running_var,
    bn and bn.eps, relu and true or false)
end

function Conv2d:extra_repr()
  local py = util.py
  local s = ("%d, %d, kernel_size=%s, stride=%s"):format(self.in_channels, self.out_channels,
    py(self.kernel_size), py(self.stride))
  if self.padding[1] ~= 0 or self.padding[2] ~= 0 then s = s .. ", padding=" .. py(self.padding) end
  if self.dilation[1] ~= 1 or self.dilation[2] ~= 1 then s = s .. ", dilation=" .. py(self.dilation) end
  if self.groups ~= 1 then s = s .. ", groups=" .. self.groups end
  if self.bias == nil then s = s .. ", bias=False" end
  return s
end

return Conv2d
