-- optim.SGD(params, {lr = ..., momentum = 0, dampening = 0, nesterov = false,
--                    weight_decay = 0})
-- PyTorch's rule, per parameter p with gradient g:
--   d = g + weight_decay * p
--   buf = d on the first step, else momentum * buf + (1 - dampening) * d
--   d = nesterov and d + momentum * buf or buf        (when momentum ~= 0)
--   p = p - lr * d
-- The update runs in place in C (fmd.core.sgd_step).
local optim = require "fmd.optim"
local fmd = require "fmd"
local C = require "fmd.core"

local SGD = optim.Optimizer:extend("optim.SGD",
  {lr = false, momentum = 0, dampening = 0, nesterov = false, weight_decay = 0},
  {"lr", "momentum", "dampening", "nesterov", "weight_decay"})

function SGD:check(g)
  if type(g.lr) ~= "number" or g.lr < 0 then error(("invalid learning rate %s"):format(tostring(g.lr)), 0) end
  if type(g.momentum) ~= "number" or g.momentum < 0 then
    error(("invalid momentum %s"):format(tostring(g.momentum)), 0)
  end
  if type(g.weight_decay) ~= "number" or g.weight_decay < 0 then
    error(("invalid weight_decay %s"):format(tostring(g.weight_decay)), 0)
  end
  if type(g.dampening) ~= "number" then error(("invalid dampening %s"):format(tostring(g.dampening)), 0) end
  if g.nesterov and (g.momentum <= 0 or g.dampening ~= 0) then
    error("Nesterov momentum requires a momentum and zero dampening", 0)
  end
end

function SGD:update(i, p, grad, g)
  local buf, first
  if g.momentum ~= 0 then
    local st = self.state[i]
    if st and st.momentum_buffer then
      buf, first = st.momentum_buffer, false
    else
      buf, first = fmd.zeros(p:size()), true
      self.state[i] = {momentum_buffer = buf}
    end
  end
  C.sgd_step(p, grad, buf, g.lr, g.momentum, g.dampening, g.nesterov and true or false, g.weight_decay, first)
end

return SGD
