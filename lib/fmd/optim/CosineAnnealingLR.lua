-- optim.CosineAnnealingLR(optimizer, T_max [, eta_min = 0]): PyTorch's
-- cosine schedule in its closed form. After step() has been called t times,
--   lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2
-- in every parameter group, base_lr being the group's lr when the scheduler
-- is made. Stepped once per optimizer step with T_max = the run's number of
-- steps, the lr falls from base_lr at the first step to eta_min after the
-- last ("cosine decay to 0"; scripts/train.lua --lr-schedule cosine).
-- sched:state_dict() / sched:load_state_dict(sd) save and restore t.
local Cosine = {}
Cosine.__index = Cosine
Cosine.__name = "optim.CosineAnnealingLR"

local function check_count(v, what)
  if math.type(v) ~= "integer" or v < 0 then
    error(("optim.CosineAnnealingLR: %s must be an integer >= 0, got %s"):format(what, tostring(v)), 3)
  end
end

function Cosine.new(optimizer, T_max, eta_min)
  if type(optimizer) ~= "table" or type(optimizer.param_groups) ~= "table" then
    error("optim.CosineAnnealingLR: expected an optimizer (optim.SGD, optim.Adam)", 2)
  end
  if math.type(T_max) ~= "integer" or T_max < 1 then
    error(("optim.CosineAnnealingLR: T_max must be an integer >= 1, got %s"):format(tostring(T_max)), 2)
  end
  eta_min = eta_min or 0
  if type(eta_min) ~= "number" or eta_min < 0 then
    error(("optim.CosineAnnealingLR: eta_min must be a number >= 0, got %s"):format(tostring(eta_min)), 2)
  end
  local base = {}
  for i, g in ipairs(optimizer.param_groups) do base[i] = g.lr end
  return setmetatable({optimizer = optimizer, T_max = T_max, eta_min = eta_min, base_lrs = base, last_epoch = 0},
    Cosine)
end

-- the lr of a group whose base is `base` after t steps
function Cosine:lr_at(t, base)
  local e = self.eta_min
  return e + (base - e) * (1 + math.cos(math.pi * t / self.T_max)) / 2
end

local function apply(self)
  for i, g in ipairs(self.optimizer.param_groups) do g.lr = self:lr_at(self.last_epoch, self.base_lrs[i]) end
end

-- one more step done: the next lr is set in the optimizer
function Cosine:step()
  self.last_epoch = self.last_epoch + 1
  apply(self)
end

function Cosine:get_last_lr()
  local out = {}
  for i, g in ipairs(self.optimizer.param_groups) do out[i] = g.lr end
  return out
end

function Cosine:state_dict()
  return {last_epoch = self.last_epoch, T_max = self.T_max, eta_min = self.eta_min, base_lrs = {table.unpack(self.base_lrs)}}
end

-- restores the step count (and base lrs when given) and sets the lr to match
function Cosine:load_state_dict(sd)
  if type(sd) ~= "table" then error("optim.CosineAnnealingLR.load_state_dict: expected a table from state_dict()", 2) end
  check_count(sd.last_epoch, "last_epoch")
  self.last_epoch = sd.last_epoch
  if sd.base_lrs then self.base_lrs = {table.unpack(sd.base_lrs)} end
  apply(self)
end

Cosine.__tostring = function(self)
  return ("CosineAnnealingLR(T_max=%d, eta_min=%g, step %d)"):format(self.T_max, self.eta_min, self.last_epoch)
end

return setmetatable(Cosine, {__call = function(_, ...) return Cosine.new(...) end})
