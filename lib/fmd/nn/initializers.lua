-- nn.init: in-place weight initialisers like torch.nn.init (the ones with
-- a trailing underscore fill t and return it). All draw from the global RNG
-- (fmd.manual_seed), none records autograd.
local fmd = require "fmd"
local init = {}

-- fan_in, fan_out of a weight: Linear (out, in); Conv (out, in/groups, kh, kw)
function init.calculate_fan_in_and_fan_out(t)
  local s = t:size()
  if #s < 2 then error("fan in and fan out need a tensor with at least 2 dims, got " .. fmd.shape_str(t), 2) end
  local field = 1
  for i = 3, #s do field = field * s[i] end
  return s[2] * field, s[1] * field
end

-- the recommended gain of a nonlinearity ("relu", "leaky_relu" with a, ...)
function init.calculate_gain(nonlinearity, param)
  if nonlinearity == "relu" then return math.sqrt(2)
  elseif nonlinearity == "leaky_relu" then
    local a = param or 0.01
    return math.sqrt(2 / (1 + a * a))
  elseif nonlinearity == "tanh" then return 5 / 3
  elseif nonlinearity == "selu" then return 3 / 4
  elseif nonlinearity == "linear" or nonlinearity == "sigmoid" or nonlinearity == "conv2d" then return 1
  end
  error(("calculate_gain: unknown nonlinearity '%s'"):format(tostring(nonlinearity)), 2)
end

local function fill_from(t, src)
  fmd.no_grad(function() t:copy(src) end)
  return t
end

function init.uniform_(t, a, b)
  a, b = a or 0, b or 1
  return fill_from(t, fmd.no_grad(function() return fmd.rand(t:size()) * (b - a) + a end))
end

function init.normal_(t, mean, std)
  mean, std = mean or 0, std or 1
  return fill_from(t, fmd.no_grad(function() return fmd.randn(t:size()) * std + mean end))
end

function init.constant_(t, v) fmd.no_grad(function() t:fill(v) end) return t end
function init.zeros_(t) return init.constant_(t, 0) end
function init.ones_(t) return init.constant_(t, 1) end

local function fan(t, mode)
  local fin, fout = init.calculate_fan_in_and_fan_out(t)
  if mode == nil or mode == "fan_in" then return fin elseif mode == "fan_out" then return fout end
  error(("kaiming: mode must be 'fan_in' or 'fan_out', got '%s'"):format(tostring(mode)), 3)
end

-- U(-b, b), b = gain * sqrt(3 / fan); PyTorch's layer default is a = sqrt(5)
function init.kaiming_uniform_(t, a, mode, nonlinearity)
  local gain = init.calculate_gain(nonlinearity or "leaky_relu", a or 0)
  local bound = math.sqrt(3) * gain / math.sqrt(fan(t, mode))
  return init.uniform_(t, -bound, bound)
end

function init.kaiming_normal_(t, a, mode, nonlinearity)
  local gain = init.calculate_gain(nonlinearity or "leaky_relu", a or 0)
  return init.normal_(t, 0, gain / math.sqrt(fan(t, mode)))
end

function init.xavier_uniform_(t, gain)
  local fin, fout = init.calculate_fan_in_and_fan_out(t)
  local bound = (gain or 1) * math.sqrt(6 / (fin + fout))
  return init.uniform_(t, -bound, bound)
end

function init.xavier_normal_(t, gain)
  local fin, fout = init.calculate_fan_in_and_fan_out(t)
  return init.normal_(t, 0, (gain or 1) * math.sqrt(2 / (fin + fout)))
end

return init
