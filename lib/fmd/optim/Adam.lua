-- optim.Adam(params, {lr = 0.001, betas = {0.9, 0.999}, eps = 1e-8,
--                     weight_decay = 0, amsgrad = false})
-- PyTorch 1.13's rule, per parameter p with gradient g at step t (1, 2, ...):
--   d = g + weight_decay * p
--   m = beta1 * m + (1 - beta1) * d;  v = beta2 * v + (1 - beta2) * d^2
--   vmax = max(vmax, v) and v = vmax                    (amsgrad)
--   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
-- State per parameter: step, exp_avg (m), exp_avg_sq (v), max_exp_avg_sq.
-- The update runs in place in C (fmd.core.adam_step).
local optim = require "fmd.optim"
local fmd = require "fmd"
local C = require "fmd.core"

local Adam = optim.Optimizer:extend("optim.Adam",
  {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0, amsgrad = false},
  {"lr", "betas", "eps", "weight_decay", "amsgrad"})

function Adam:check(g)
  if type(g.lr) ~= "number" or g.lr < 0 then error(("invalid learning rate %s"):format(tostring(g.lr)), 0) end
  if type(g.eps) ~= "number" or g.eps < 0 then error(("invalid epsilon %s"):format(tostring(g.eps)), 0) end
  local b = g.betas
  if type(b) ~= "table" or type(b[1]) ~= "number" or type(b[2]) ~= "number" then
    error("betas must be a pair of numbers {beta1, beta2}", 0)
  end
  for i = 1, 2 do
    if b[i] < 0 or b[i] >= 1 then error(("invalid beta parameter at index %d: %s"):format(i, tostring(b[i])), 0) end
  end
  if type(g.weight_decay) ~= "number" or g.weight_decay < 0 then
    error(("invalid weight_decay %s"):format(tostring(g.weight_decay)), 0)
  end
end

function Adam:update(i, p, grad, g)
  local st = self.state[i]
  if not st then
    st = {step = 0, exp_avg = fmd.zeros(p:size()), exp_avg_sq = fmd.zeros(p:size())}
    self.state[i] = st
  end
  if g.amsgrad and not st.max_exp_avg_sq then st.max_exp_avg_sq = fmd.zeros(p:size()) end
  st.step = st.step + 1
  C.adam_step(p, grad, st.exp_avg, st.exp_avg_sq, g.amsgrad and st.max_exp_avg_sq or nil, st.step,
    g.lr, g.betas[1], g.betas[2], g.eps, g.weight_decay)
end

return Adam
