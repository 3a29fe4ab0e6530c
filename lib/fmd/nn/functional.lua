-- nn.functional (F): the ops as plain functions with PyTorch's argument
-- order and defaults. Sizes are a number or an {h, w} pair; dims are
-- 1-based; class ids in targets are 0-based (0 = real, 1 = fake). Any
-- argument list may end in a table of named options instead:
--   F.conv2d(x, w, b, 2, 1)   ==   F.conv2d(x, w, b, {stride = 2, padding = 1})
-- Each wraps a raw kernel of fmd.core (same name, every size spelled out).
local C = require "fmd.core"
local util = require "fmd.nn.util"
local pair, args = util.pair, util.args
local F = {}

local function tensor_arg(v, what, fn)
  if not C.is_tensor(v) then error(("%s: %s must be a tensor, got %s"):format(fn, what, type(v)), 3) end
  return v
end

-- conv2d(x, weight, bias=nil, stride=1, padding=0, dilation=1, groups=1)
-- x (N,C,H,W), weight (O, C/groups, KH, KW), bias (O) or nil
function F.conv2d(x, w, b, ...)
  local o
  if util.is_opts(b) then   -- F.conv2d(x, w, {bias = b, stride = 2, ...})
    o = args({b}, {"bias", "stride", "padding", "dilation", "groups"}, "conv2d")
    b = o.bias
  else
    o = args(table.pack(...), {"stride", "padding", "dilation", "groups"}, "conv2d")
  end
  local sh, sw = pair(o.stride or 1, "conv2d: stride", 1)
  local ph, pw = pair(o.padding or 0, "conv2d: padding", 0)
  local dh, dw = pair(o.dilation or 1, "conv2d: dilation", 1)
  return C.conv2d(tensor_arg(x, "input", "conv2d"), tensor_arg(w, "weight", "conv2d"), b,
    sh, sw, ph, pw, dh, dw, math.tointeger(o.groups or 1) or error("conv2d: groups must be an integer", 2))
end

-- max_pool2d(x, kernel_size, stride=kernel_size, padding=0)
function F.max_pool2d(x, kernel_size, ...)
  local o = args(table.pack(...), {"stride", "padding", "dilation", "ceil_mode"}, "max_pool2d")
  local kh, kw = pair(kernel_size, "max_pool2d: kernel_size", 1)
  local sh, sw = pair(o.stride or {kh, kw}, "max_pool2d: stride", 1)
  local ph, pw = pair(o.padding or 0, "max_pool2d: padding", 0)
  local dh, dw = pair(o.dilation or 1, "max_pool2d: dilation", 1)
  if dh ~= 1 or dw ~= 1 then error("max_pool2d: only dilation 1 is supported", 2) end
  if o.ceil_mode then error("max_pool2d: ceil_mode is not supported (floor mode only)", 2) end
  return C.max_pool2d(tensor_arg(x, "input", "max_pool2d"), kh, kw, sh, sw, ph, pw)
end

-- avg_pool2d(x, kernel_size, stride=kernel_size, padding=0); padding counts
-- in the divisor (PyTorch's default count_include_pad=True)
function F.avg_pool2d(x, kernel_size, ...)
  local o = args(table.pack(...), {"stride", "padding", "ceil_mode", "count_include_pad"}, "avg_pool2d")
  local kh, kw = pair(kernel_size, "avg_pool2d: kernel_size", 1)
  local sh, sw = pair(o.stride or {kh, kw}, "avg_pool2d: stride", 1)
  local ph, pw = pair(o.padding or 0, "avg_pool2d: padding", 0)
  if o.ceil_mode then error("avg_pool2d: ceil_mode is not supported (floor mode only)", 2) end
  if o.count_include_pad == false then error("avg_pool2d: only count_include_pad = true is supported", 2) end
  return C.avg_pool2d(tensor_arg(x, "input", "avg_pool2d"), kh, kw, sh, sw, ph, pw)
end

-- adaptive_avg_pool2d(x, output_size): output_size a number or {h, w}
function F.adaptive_avg_pool2d(x, output_size)
  local oh, ow = pair(output_size, "adaptive_avg_pool2d: output_size", 1)
  return C.adaptive_avg_pool2d(tensor_arg(x, "input", "adaptive_avg_pool2d"), oh, ow)
end

-- pad(x, {left, right, top, bottom}, value=0): a constant border around each
-- (H,W) plane of x (N,C,H,W), each side its own width (>= 0), like PyTorch's
-- F.pad(x, (left, right, top, bottom), value=value) in "constant" mode
function F.pad(x, pad, value)
  tensor_arg(x, "input", "pad")
  if type(pad) ~= "table" or #pad ~= 4 then
    error("pad: padding must be {left, right, top, bottom}", 2)
  end
  local w = {}
  for i = 1, 4 do
    w[i] = math.tointeger(pad[i]) or error(("pad: padding[%d] must be an integer, got %s"):format(i, tostring(pad[i])), 2)
  end
  return C.pad2d(x, w[1], w[2], w[3], w[4], value or 0)
end

-- linear(x, weight, bias=nil): x (..., in), weight (out, in) -> (..., out)
function F.linear(x, w, b)
  tensor_arg(x, "input", "linear")
  if x:dim() == 2 then return C.linear(x, w, b) end
  local s = x:size()
  if #s < 1 then error("linear: input must have at least 1 dim", 2) end
  local y = C.linear(x:reshape(-1, s[#s]), w, b)
  s[#s] = y:size(2)
  return y:reshape(s)
end

-- batch_norm(x, running_mean, running_var, weight=nil, bias=nil,
--            training=false, momentum=0.1, eps=1e-5)
-- training uses batch statistics and updates the running ones in place
function F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
  return C.batch_norm(tensor_arg(x, "input", "batch_norm"), weight, bias, running_mean, running_var,
    training and true or false, momentum or 0.1, eps or 1e-5)
end

-- dropout(x, p=0.5, training=true): zeroes with probability p, scales by 1/(1-p)
function F.dropout(x, p, training)
  if training == nil then training = true end
  return C.dropout(tensor_arg(x, "input", "dropout"), p or 0.5, training and true or false)
end

-- relu(x, inplace=false). inplace: overwrite x, as PyTorch does, when no
-- graph is being recorded (fmd.no_grad); otherwise a new tensor, since a
-- graph may hold x (even one that needs no grad, such as a conv's input).
function F.relu(x, inplace)
  tensor_arg(x, "input", "relu")
  if inplace and not C.is_grad_enabled() then return x:relu_() end
  return x:relu()
end
-- relu6(x) = min(max(x, 0), 6) (MobileNet's activation). The gradient passes
-- where 0 <= x <= 6 (torch.clamp's rule; PyTorch's relu6 passes none at
-- exactly 0 and 6, which only differs on ties)
function F.relu6(x) return tensor_arg(x, "input", "relu6"):clamp(0, 6) end
function F.sigmoid(x) return tensor_arg(x, "input", "sigmoid"):sigmoid() end
function F.tanh(x) return tensor_arg(x, "input", "tanh"):tanh() end

-- softmax / log_softmax over dim (1-based; default: the last dim)
function F.softmax(x, dim) return C.softmax(tensor_arg(x, "input", "softmax"), dim or -1) end
function F.log_softmax(x, dim) return C.log_softmax(tensor_arg(x, "input", "log_softmax"), dim or -1) end

-- target: class ids 0..C-1, a tensor or a Lua list
local function target_arg(t)
  if type(t) == "table" and not C.is_tensor(t) then return C.tensor(t) end
  return t
end

-- cross_entropy(logits (N,C), target (N) of 0-based class ids): mean over N
function F.cross_entropy(logits, target)
  return C.cross_entropy(tensor_arg(logits, "input", "cross_entropy"), target_arg(target))
end

-- nll_loss(log_probs (N,C), target): -mean of log_probs[i, target[i]]
function F.nll_loss(log_probs, target)
  local t = target_arg(target)
  tensor_arg(log_probs, "input", "nll_loss")
  local n, c = log_probs:size(1), log_probs:size(2)
  -- one-hot mask from the (0-based) ids; cross_entropy's range check on the
  -- same ids gives the clear error for bad labels
  local onehot = C.arange(0, c):reshape(1, c):eq(t:reshape(n, 1))
  return (log_probs * onehot):sum():neg() / n
end

-- mse_loss(input, target): mean of squared differences
function F.mse_loss(a, b) return C.mse_loss(tensor_arg(a, "input", "mse_loss"), tensor_arg(b, "target", "mse_loss")) end

-- flatten(x, start_dim=2, end_dim=-1): merges dims start..end (1-based, so
-- the default keeps the batch dim, like PyTorch's start_dim=1)
function F.flatten(x, start_dim, end_dim)
  tensor_arg(x, "input", "flatten")
  local s = x:size()
  local nd = #s
  local a, e = start_dim or 2, end_dim or -1
  if a < 0 then a = a + nd + 1 end
  if e < 0 then e = e + nd + 1 end
  if nd == 0 then return x:reshape(1) end
  if a < 1 or a > nd or e < 1 or e > nd or a > e then
    error(("flatten: dims %d..%d out of range for a %d-dim tensor %s"):format(start_dim or 2, end_dim or -1, nd,
      C.shape_str(x)), 2)
  end
  local out, n = {}, 1
  for i = 1, a - 1 do out[#out + 1] = s[i] end
  for i = a, e do n = n * s[i] end
  out[#out + 1] = n
  for i = e + 1, nd do out[#out + 1] = s[i] end
  return x:reshape(out)
end

return F
