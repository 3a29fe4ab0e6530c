-- nn.Module: base class of layers and models, PyTorch's torch.nn.Module in
-- Lua. A module holds parameters (tensors that require grad), buffers
-- (state that is saved but not trained, e.g. BatchNorm running stats) and
-- child modules, each in registration order, so names come out as in
-- PyTorch: features.0.weight, bn1.running_mean.
--
--   local Net = nn.Module:extend("Net")
--   function Net:__init(n) self.fc = nn.Linear(4, n) end   -- registers "fc"
--   function Net:forward(x) return self.fc(x) end
--   local net = Net(2)                                      -- net(x) calls forward
--
-- Assigning a module to a field registers it as a child; assigning a leaf
-- tensor that requires grad registers a parameter; buffers need
-- register_buffer. Registered things live in self._modules/_parameters/
-- _buffers (not in the instance table), so re-assigning one replaces it.
local fmd = require "fmd"
local util = require "fmd.nn.util"

local Module = {}
Module.__name = "nn.Module"    -- full name (errors); the repr uses the part after the last dot

local function is_module(v)
  return type(v) == "table" and rawget(v, "_modules") ~= nil
end
Module.is_module = is_module

local function is_param(v)
  return fmd.is_tensor(v) and v.requires_grad and v.is_leaf
end

-- ordered maps: self._<kind>[name] = value, self._<kind>_names = {name, ...}
local function od_set(self, kind, name, v)
  local map, names = rawget(self, "_" .. kind), rawget(self, "_" .. kind .. "_names")
  if v == nil then
    if map[name] ~= nil then
      map[name] = nil
      for i, n in ipairs(names) do if n == name then table.remove(names, i) break end end
    end
    return
  end
  if map[name] == nil then names[#names + 1] = name end
  map[name] = v
end

local function check_name(self, name, what)
  if type(name) ~= "string" and math.type(name) ~= "integer" then
    error(("%s: name must be a string, got %s"):format(what, type(name)), 3)
  end
  name = tostring(name)
  if name:find(".", 1, true) or name == "" then
    error(("%s: name '%s' must be non-empty and contain no '.'"):format(what, name), 3)
  end
  return name
end

local function clear_others(self, name, keep)
  for _, kind in ipairs{"modules", "parameters", "buffers"} do
    if kind ~= keep then od_set(self, kind, name, nil) end
  end
  rawset(self, name, nil)
end

---------------------------------------------------------------- class system

local METAMETHODS = {"__index", "__newindex", "__call", "__tostring", "__len", "__name"}

-- Cls = Parent:extend("Name"): a subclass. Instances: Cls(...) runs
-- Cls.__init(self, ...) on a fresh module; methods are looked up in Cls,
-- then Parent, ... A subclass __init that wants the parent's set-up calls
-- Parent.__init(self, ...) itself.
function Module:extend(name)
  assert(type(name) == "string", "extend: expected a class name")
  local cls = {}
  for _, k in ipairs(METAMETHODS) do cls[k] = self[k] end
  cls.__name = name
  cls.__short_name = name:match("([^.]+)$")
  cls.super = self
  return setmetatable(cls, {__index = self, __call = function(c, ...) return c:new(...) end,
                            __tostring = function(c) return "class " .. c.__name end})
end

function Module:new(...)
  local obj = setmetatable({_modules = {}, _modules_names = {}, _parameters = {}, _parameters_names = {},
                            _buffers = {}, _buffers_names = {}, _non_persistent = {},
                            _forward_hooks = {}, _forward_pre_hooks = {}, training = true}, self)
  obj:__init(...)
  return obj
end

function Module:__init() end

function Module.__index(self, k)
  local v = rawget(self, "_modules")[k]
  if v ~= nil then return v end
  v = rawget(self, "_parameters")[k]
  if v ~= nil then return v end
  v = rawget(self, "_buffers")[k]
  if v ~= nil then return v end
  return getmetatable(self)[k]
end

function Module.__newindex(self, k, v)
  if type(k) ~= "string" then rawset(self, k, v) return end
  local params, bufs, mods = rawget(self, "_parameters"), rawget(self, "_buffers"), rawget(self, "_modules")
  if is_module(v) then
    clear_others(self, k, "modules")
    od_set(self, "modules", k, v)
  elseif is_param(v) or (params[k] ~= nil and (v == nil or fmd.is_tensor(v))) then
    clear_others(self, k, "parameters")
    od_set(self, "parameters", k, v)
  elseif bufs[k] ~= nil and (v == nil or fmd.is_tensor(v)) then
    od_set(self, "buffers", k, v)
  elseif mods[k] ~= nil then
    if v ~= nil then
      error(("cannot assign a %s as child module '%s' of %s (expected a module or nil)"):format(type(v), k,
        self.__name), 2)
    end
    od_set(self, "modules", k, nil)
  elseif params[k] ~= nil or bufs[k] ~= nil then
    error(("cannot assign a %s to '%s' of %s (expected a tensor or nil)"):format(type(v), k, self.__name), 2)
  else
    rawset(self, k, v)
  end
end

-- module(...) runs forward pre-hooks, forward, then forward hooks
function Module.__call(self, ...)
  local pre, post = rawget(self, "_forward_pre_hooks"), rawget(self, "_forward_hooks")
  if #pre == 0 and #post == 0 then return self:forward(...) end
  local input = table.pack(...)
  for _, h in ipairs({table.unpack(pre)}) do
    local r = h.fn(self, input)
    if r ~= nil then input = type(r) == "table" and not fmd.is_tensor(r) and r or table.pack(r) end
  end
  local output = self:forward(table.unpack(input, 1, input.n))
  for _, h in ipairs({table.unpack(post)}) do
    local r = h.fn(self, input, output)
    if r ~= nil then output = r end
  end
  return output
end

function Module:forward()
  error(("%s has no forward method"):format(self.__name), 2)
end

-------------------------------------------------------------- registration

function Module:register_parameter(name, t)
  name = check_name(self, name, "register_parameter")
  if t ~= nil then
    if not fmd.is_tensor(t) then error(("register_parameter: '%s' is a %s, not a tensor"):format(name, type(t)), 2) end
    if not t.is_leaf then
      error(("register_parameter: '%s' is the result of an operation; parameters must be leaf tensors "
        .. "(use t:detach())"):format(name), 2)
    end
    if not t.requires_grad then t.requires_grad = true end
  end
  clear_others(self, name, "parameters")
  od_set(self, "parameters", name, t)
  return t
end

-- buffers are saved in state_dict (unless persistent == false) but never trained
function Module:register_buffer(name, t, persistent)
  name = check_name(self, name, "register_buffer")
  if t ~= nil and not fmd.is_tensor(t) then
    error(("register_buffer: '%s' is a %s, not a tensor"):format(name, type(t)), 2)
  end
  clear_others(self, name, "buffers")
  od_set(self, "buffers", name, t)
  rawget(self, "_non_persistent")[name] = persistent == false or nil
  return t
end

function Module:add_module(name, m)
  name = check_name(self, name, "add_module")
  if m ~= nil and not is_module(m) then error(("add_module: '%s' is a %s, not a module"):format(name, type(m)), 2) end
  clear_others(self, name, "modules")
  od_set(self, "modules", name, m)
  return m
end
Module.register_module = Module.add_module

------------------------------------------------------------------- walking

-- iterator over (name, child) of direct children, in registration order
function Module:named_children()
  local names, map, i = rawget(self, "_modules_names"), rawget(self, "_modules"), 0
  return function()
    i = i + 1
    local n = names[i]
    if n then return n, map[n] end
  end
end

function Module:children()
  local out = {}
  for _, m in self:named_children() do out[#out + 1] = m end
  return out
end

-- pre-order list of {name, module}; each module once (like PyTorch)
local function collect_modules(self, prefix, out, seen)
  if seen[self] then return end
  seen[self] = true
  out[#out + 1] = {prefix, self}
  for name, m in self:named_children() do
    collect_modules(m, prefix == "" and name or (prefix .. "." .. name), out, seen)
  end
end

-- iterator over (dotted name, module), self first with name ""
function Module:named_modules(prefix)
  local list = {}
  collect_modules(self, prefix or "", list, {})
  local i = 0
  return function()
    i = i + 1
    if list[i] then return list[i][1], list[i][2] end
  end
end

function Module:modules()
  local out = {}
  for _, m in self:named_modules() do out[#out + 1] = m end
  return out
end

local function named_members(self, kind, prefix, recurse)
  local list, seen = {}, {}
  local function visit(m, pre)
    local map = rawget(m, "_" .. kind)
    for _, n in ipairs(rawget(m, "_" .. kind .. "_names")) do
      local t = map[n]
      if t ~= nil and not seen[t] then
        seen[t] = true
        list[#list + 1] = {pre == "" and n or (pre .. "." .. n), t}
      end
    end
  end
  if recurse == false then visit(self, prefix or "")
  else for name, m in self:named_modules(prefix) do visit(m, name) end end
  local i = 0
  return function()
    i = i + 1
    if list[i] then return list[i][1], list[i][2] end
  end
end

-- iterator over (dotted name, tensor); shared tensors once
function Module:named_parameters(prefix, recurse) return named_members(self, "parameters", prefix, recurse) end
function Module:named_buffers(prefix, recurse) return named_members(self, "buffers", prefix, recurse) end

-- list of parameter tensors (what optimizers take)
function Module:parameters(recurse)
  local out = {}
  for _, p in self:named_parameters(nil, recurse) do out[#out + 1] = p end
  return out
end

function Module:buffers(recurse)
  local out = {}
  for _, b in self:named_buffers(nil, recurse) do out[#out + 1] = b end
  return out
end

-- fn(m) on every child (recursively) and then on self; returns self
function Module:apply(fn)
  for _, m in self:named_children() do m:apply(fn) end
  fn(self)
  return self
end

-------------------------------------------------------------- mode, grads

function Module:train(mode)
  if mode == nil then mode = true end
  rawset(self, "training", mode and true or false)
  for _, m in self:named_children() do m:train(mode) end
  return self
end

function Module:eval() return self:train(false) end

-- drops every parameter's gradient (the next backward starts from zero)
function Module:zero_grad()
  for _, p in self:named_parameters() do p.grad = nil end
end

-- freeze (false) or unfreeze (true, the default) every parameter
function Module:requires_grad_(flag)
  if flag == nil then flag = true end
  for _, p in self:named_parameters() do p.requires_grad = flag end
  return self
end

-------------------------------------------------------------------- hooks

local function add_hook(self, field, fn, what)
  if type(fn) ~= "function" then error(("%s: expected a function, got %s"):format(what, type(fn)), 3) end
  local list = rawget(self, field)
  local entry = {fn = fn}
  list[#list + 1] = entry
  return {remove = function()
    for i, e in ipairs(list) do if e == entry then table.remove(list, i) return true end end
    return false
  end}
end

-- fn(module, input, output) after each forward; input is the packed argument
-- list (input[1] is the tensor); a non-nil return replaces the output.
-- Returns a handle; handle.remove() (or handle:remove()) unregisters it.
function Module:register_forward_hook(fn)
  return add_hook(self, "_forward_hooks", fn, "register_forward_hook")
end

-- fn(module, input) before each forward; may return replacement arguments
function Module:register_forward_pre_hook(fn)
  return add_hook(self, "_forward_pre_hooks", fn, "register_forward_pre_hook")
end

--------------------------------------------------------------- state dict

-- like PyTorch: own parameters, own persistent buffers, then each child
local function save_into(self, prefix, out, keys)
  for _, kind in ipairs{"parameters", "buffers"} do
    local map = rawget(self, "_" .. kind)
    local np = rawget(self, "_non_persistent")
    for _, n in ipairs(rawget(self, "_" .. kind .. "_names")) do
      if map[n] ~= nil and not (kind == "buffers" and np[n]) then
        out[prefix .. n] = map[n]
        keys[#keys + 1] = prefix .. n
      end
    end
  end
  for name, m in self:named_children() do save_into(m, prefix .. name .. ".", out, keys) end
end

-- name -> tensor (detached views sharing the module's data), and the keys
-- in PyTorch's order as a second result
function Module:state_dict(prefix)
  local live, keys = {}, {}
  save_into(self, prefix or "", live, keys)
  local out = {}
  for _, k in ipairs(keys) do out[k] = live[k]:detach() end
  return out, keys
end

local MAX_LISTED = 20

local function quoted_list(keys)
  local shown = {}
  for i = 1, math.min(#keys, MAX_LISTED) do shown[i] = '"' .. keys[i] .. '"' end
  local s = table.concat(shown, ", ")
  if #keys > MAX_LISTED then s = s .. (", ... (%d more)"):format(#keys - MAX_LISTED) end
  return s
end

-- Copies sd's tensors into this module's parameters and buffers. strict
-- (default true): every key must match both ways. Shape mismatches are
-- always errors. Everything is checked before anything is copied, and one
-- error lists all problems. Keys ending in num_batches_tracked (PyTorch's
-- BatchNorm counter) are accepted and ignored. Returns {missing_keys,
-- unexpected_keys}.
function Module:load_state_dict(sd, strict)
  if strict == nil then strict = true end
  if type(sd) ~= "table" then error(("load_state_dict: expected a table of tensors, got %s"):format(type(sd)), 2) end
  local own, keys = {}, {}
  save_into(self, "", own, keys)
  local missing, unexpected, problems = {}, {}, {}
  for _, k in ipairs(keys) do
    local src = sd[k]
    if src == nil then missing[#missing + 1] = k
    elseif not fmd.is_tensor(src) then
      problems[#problems + 1] = ("%s is a %s, not a tensor"):format(k, type(src))
    elseif fmd.shape_str(src) ~= fmd.shape_str(own[k]) then
      problems[#problems + 1] = ("size mismatch for %s: copying a param with shape %s from checkpoint, "
        .. "the shape in current model is %s."):format(k, fmd.shape_str(src), fmd.shape_str(own[k]))
    end
  end
  for k in pairs(sd) do
    if own[k] == nil and not (type(k) == "string" and k:match("num_batches_tracked$")) then
      unexpected[#unexpected + 1] = tostring(k)
    end
  end
  table.sort(unexpected)
  local lines = {}
  if strict and #missing > 0 then lines[#lines + 1] = "Missing key(s) in state_dict: " .. quoted_list(missing) .. "." end
  if strict and #unexpected > 0 then
    lines[#lines + 1] = "Unexpected key(s) in state_dict: " .. quoted_list(unexpected) .. "."
  end
  for _, p in ipairs(problems) do lines[#lines + 1] = p end
  if #lines > 0 then
    error(("Error(s) in loading state_dict for %s:\n\t%s"):format(self.__short_name or self.__name,
      table.concat(lines, "\n\t")), 2)
  end
  fmd.no_grad(function()
    for _, k in ipairs(keys) do
      if sd[k] ~= nil then own[k]:copy(sd[k]) end
    end
  end)
  return {missing_keys = missing, unexpected_keys = unexpected}
end

----------------------------------------------------------- checkpoints

-- m:load(path [, strict]): the weights of a checkpoint file into m; every
-- tensor must fit (strict, the default). Returns m and the file's metadata.
-- The file may be fmd's safetensors checkpoint (its optimizer tensors are
-- left out), any other safetensors file or a PyTorch .pth (state_io.read
-- tells them apart by content).
function Module:load(path, strict)
  local sd, meta = require("fmd.state_io").read(path)
  local ok, err = pcall(self.load_state_dict, self, sd, strict)
  if not ok then
    local name = self.__short_name or self.__name
    error(("checkpoint %s does not fit model %s%s: %s"):format(path, name,
      meta.model and meta.model ~= name and (" (it was saved from " .. tostring(meta.model) .. ")") or "",
      (tostring(err):gsub("\n\t", " "))), 0)
  end
  return self, meta
end

-- m:save(path [, meta]): the state_dict as safetensors (path.tmp, then a
-- rename); meta values become metadata, and the model's name is recorded
-- so a checkpoint loaded into another model says where it came from
function Module:save(path, meta)
  if type(path) ~= "string" then error(("save: expected a file name, got %s"):format(type(path)), 2) end
  local md = {model = self.__short_name or self.__name}
  for k, v in pairs(meta or {}) do md[k] = v end
  require("fmd.state_io").save(path, {model = self:state_dict()}, md)
  return self
end

--------------------------------------------------------------------- repr

-- one line describing the module's own settings (PyTorch's extra_repr)
function Module:extra_repr() return "" end

local function addindent(s, n)
  local pad = (" "):rep(n)
  return (s:gsub("\n", "\n" .. pad))
end

-- the module tree in PyTorch's repr layout
function Module.__tostring(self)
  local extra = self:extra_repr()
  local extra_lines = {}
  if extra ~= "" then for line in (extra .. "\n"):gmatch("(.-)\n") do extra_lines[#extra_lines + 1] = line end end
  local child_lines = {}
  for name, m in self:named_children() do
    child_lines[#child_lines + 1] = "(" .. name .. "): " .. addindent(tostring(m), 2)
  end
  local s = (self.__short_name or self.__name) .. "("
  if #extra_lines == 1 and #child_lines == 0 then
    s = s .. extra_lines[1]
  elseif #extra_lines + #child_lines > 0 then
    local lines = {}
    for _, l in ipairs(extra_lines) do lines[#lines + 1] = l end
    for _, l in ipairs(child_lines) do lines[#lines + 1] = l end
    s = s .. "\n  " .. table.concat(lines, "\n  ") .. "\n"
  end
  return s .. ")"
end

Module.__short_name = "Module"
Module.py = util.py   -- Python-style value text, for extra_repr methods

return setmetatable(Module, {__call = function(c, ...) return c:new(...) end})
