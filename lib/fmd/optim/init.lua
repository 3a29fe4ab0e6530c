-- fmd.optim: optimizers with PyTorch 1.13's update rules.
--   local opt = optim.SGD(model:parameters(), {lr = 0.01, momentum = 0.9})
--   opt:zero_grad(); loss:backward(); opt:step()
-- optim.Optimizer is the shared base: parameter list, options checking,
-- zero_grad, and state_dict/load_state_dict for resuming a run.
-- optim.CosineAnnealingLR(opt, T_max) sets the lr of each step (a schedule).
local fmd = require "fmd"
local optim = {}

local Optimizer = {}
Optimizer.__index = Optimizer
optim.Optimizer = Optimizer

-- Cls = Optimizer:extend("optim.Name", defaults, order): defaults holds every
-- option (lr = false when it is required); order lists them for messages
-- and positional use.
function Optimizer:extend(name, defaults, order)
  local cls = setmetatable({name = name, defaults = defaults, order = order}, {__index = self,
    __call = function(c, ...) return c.new(c, ...) end})
  cls.__index = cls
  return cls
end

local function param_list(params, name)
  if type(params) == "table" and rawget(params, "_modules") ~= nil then params = params:parameters() end
  if type(params) == "table" and #params == 1 and type(params[1]) == "table" and params[1].params then
    params = params[1].params   -- a single param group {{params = ...}}
  end
  if type(params) ~= "table" then
    error(("%s: expected a list of tensors (e.g. model:parameters()), got %s"):format(name, type(params)), 4)
  end
  local out = {}
  for i, p in ipairs(params) do
    if not fmd.is_tensor(p) then error(("%s: parameter %d is a %s, not a tensor"):format(name, i, type(p)), 4) end
    out[i] = p
  end
  if #out == 0 then error(("%s: got an empty parameter list"):format(name), 4) end
  return out
end

-- cls(params, opts): opts is a table of named options or the learning rate
function Optimizer:new(params, opts)
  local name = self.name
  local group = {params = param_list(params, name)}
  if type(opts) == "number" then opts = {lr = opts} end
  opts = opts or {}
  if type(opts) ~= "table" then error(("%s: options must be a table, got %s"):format(name, type(opts)), 3) end
  for k in pairs(opts) do
    if self.defaults[k] == nil then
      error(("%s: unknown option '%s' (options: %s)"):format(name, tostring(k), table.concat(self.order, ", ")), 3)
    end
  end
  for _, k in ipairs(self.order) do
    local v = opts[k]
    if v == nil then v = self.defaults[k] end
    if k == "lr" and v == false then error(("%s: the learning rate lr is required"):format(name), 3) end
    group[k] = type(v) == "table" and {table.unpack(v)} or v
  end
  local obj = setmetatable({param_groups = {group}, state = {}}, self)
  local ok, err = pcall(obj.check, obj, group)
  if not ok then error(("%s: %s"):format(name, err), 3) end
  return obj
end

-- option checks of a group (raise a plain message)
function Optimizer:check(g) end

-- drops every parameter's gradient
function Optimizer:zero_grad()
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do p.grad = nil end
  end
end

-- step(closure): closure (optional) re-evaluates the model and returns the
-- loss; it runs with gradients enabled and its result is returned
function Optimizer:step(closure)
  local loss
  if closure then loss = fmd.enable_grad(closure) end
  local g = self.param_groups[1]
  fmd.no_grad(function()
    for i, p in ipairs(g.params) do
      local grad = p.grad
      if grad ~= nil then self:update(i, p, grad, g) end
    end
  end)
  return loss
end

local function copy_state(st)
  local out = {}
  for k, v in pairs(st) do out[k] = fmd.is_tensor(v) and v:clone() or v end
  return out
end

-- {state = {[i] = {...}} (one entry per parameter, by position, {} if none
-- yet), param_groups = {{lr = ..., ..., params = {1, ..., n}}}}; tensors are
-- copies, so later steps do not change a saved state
function Optimizer:state_dict()
  local g = self.param_groups[1]
  local state, ids = {}, {}
  for i = 1, #g.params do
    state[i] = self.state[i] and copy_state(self.state[i]) or {}
    ids[i] = i
  end
  local group = {params = ids}
  for _, k in ipairs(self.order) do
    local v = g[k]
    group[k] = type(v) == "table" and {table.unpack(v)} or v
  end
  return {state = state, param_groups = {group}}
end

-- restores a state_dict() from this kind of optimizer over the same
-- parameters (same count and shapes); hyperparameters come from sd, as in
-- PyTorch
function Optimizer:load_state_dict(sd)
  local name = self.name .. ".load_state_dict"
  if type(sd) ~= "table" or type(sd.param_groups) ~= "table" or type(sd.param_groups[1]) ~= "table" then
    error(name .. ": expected a table {state = ..., param_groups = {...}} from state_dict()", 2)
  end
  if #sd.param_groups ~= 1 then
    error(("%s: the saved state has %d parameter groups, expected 1"):format(name, #sd.param_groups), 2)
  end
  local g, sg = self.param_groups[1], sd.param_groups[1]
  local n = #g.params
  local saved_n = type(sg.params) == "table" and #sg.params or -1
  if saved_n ~= n then
    error(("%s: the saved state is for %d parameters, this optimizer has %d"):format(name, saved_n, n), 2)
  end
  for k in pairs(sg) do
    if k ~= "params" and self.defaults[k] == nil then
      error(("%s: the saved state has option '%s', which %s does not have (saved by another optimizer?)")
        :format(name, tostring(k), self.name), 2)
    end
  end
  local new_state = {}
  for key, st in pairs(sd.state or {}) do
    local i = math.tointeger(key) or math.tointeger(tonumber(key))
    if not i or i < 1 or i > n then error(("%s: state for unknown parameter %s"):format(name, tostring(key)), 2) end
    if type(st) ~= "table" then error(("%s: state of parameter %d is not a table"):format(name, i), 2) end
    local shape = fmd.shape_str(g.params[i])
    local copy = {}
    for k, v in pairs(st) do
      if fmd.is_tensor(v) then
        if fmd.shape_str(v) ~= shape then
          error(("%s: %s of parameter %d has shape %s, the parameter has %s"):format(name, k, i,
            fmd.shape_str(v), shape), 2)
        end
        copy[k] = v:clone()
      else
        copy[k] = math.tointeger(v) or v
      end
    end
    if next(copy) ~= nil then new_state[i] = copy end
  end
  local ok, err = pcall(self.check, self, setmetatable({}, {__index = function(_, k)
    if sg[k] ~= nil then return sg[k] end return g[k] end}))
  if not ok then error(("%s: %s"):format(name, err), 2) end
  for _, k in ipairs(self.order) do
    if sg[k] ~= nil then g[k] = type(sg[k]) == "table" and {table.unpack(sg[k])} or sg[k] end
  end
  self.state = new_state
end

return setmetatable(optim, {__index = function(t, k)
  if k == "SGD" or k == "Adam" or k == "CosineAnnealingLR" then
    local cls = require("fmd.optim." .. k)
    rawset(t, k, cls)
    return cls
  end
  if type(k) == "string" and k:match("^%u") then
    error(("fmd.optim has no optimizer '%s' (it has SGD, Adam; and the schedule CosineAnnealingLR)"):format(k), 2)
  end
end})
