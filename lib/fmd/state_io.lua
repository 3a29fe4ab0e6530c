-- Checkpoint files: a model state_dict (and optionally an optimizer state)
-- in one safetensors file. Model tensors keep their plain state_dict names,
-- so Python's safetensors + PyTorch can read them directly; optimizer
-- tensors are stored as "optimizer/<path>" with the table skeleton as JSON
-- in the metadata. Other metadata values are strings: numbers as numbers,
-- tables as JSON.
local fmd = require "fmd"
local json = require "fmd.json"
local state_io = {}

local OPT = "optimizer/"

-- optimizer state -> skeleton with {"__tensor": key} placeholders + tensors
local function split(v, path, tensors)
  if fmd.is_tensor(v) then
    tensors[OPT .. path] = v
    return {__tensor = OPT .. path}
  elseif type(v) == "table" then
    local out = {}
    local is_arr = #v > 0
    for k, x in pairs(v) do
      if k ~= "__order" then out[k] = split(x, path .. "/" .. tostring(k), tensors) end
    end
    if is_arr then return out end
    -- keys that are numbers survive a JSON round trip as "#n"
    local obj = {}
    for k, x in pairs(out) do obj[math.type(k) and ("#" .. k) or k] = x end
    return obj
  end
  return v
end

local function join(v, tensors)
  if type(v) ~= "table" then return v end
  if v.__tensor then
    return tensors[v.__tensor] or error("checkpoint: missing optimizer tensor " .. v.__tensor, 0)
  end
  local out = {}
  for k, x in pairs(v) do
    if k ~= "__order" then
      local key = type(k) == "string" and k:match("^#(%-?%d+)$")
      out[key and math.tointeger(tonumber(key)) or k] = join(x, tensors)
    end
  end
  return out
end

-- groups = {model = state_dict, optimizer = state or nil}; meta = table
function state_io.save(path, groups, meta)
  local tensors = {}
  for k, t in pairs(groups.model or {}) do tensors[k] = t end
  local md = {format = "fmd-checkpoint-1"}
  if groups.optimizer then md.optimizer_state = json.encode(split(groups.optimizer, "", tensors)) end
  for k, v in pairs(meta or {}) do
    if type(v) == "table" then md[k] = json.encode(v)
    elseif type(v) == "number" then md[k] = json.format_number(v)
    else md[k] = tostring(v) end
  end
  fmd.save_safetensors(path, tensors, md)
end

-- returns {model = state_dict, optimizer = state or nil}, meta
function state_io.load(path)
  local tensors, md = fmd.load_safetensors(path)
  local model, opt_tensors = {}, {}
  for k, t in pairs(tensors) do
    if k:sub(1, #OPT) == OPT then opt_tensors[k] = t else model[k] = t end
  end
  local meta = {}
  for k, v in pairs(md or {}) do
    if k == "optimizer_state" or k == "format" then -- handled below
    elseif tonumber(v) and not v:match("^%s") then meta[k] = tonumber(v)
    elseif v:match("^[%[{]") then
      local ok, d = pcall(json.decode, v, path .. " metadata " .. k)
      meta[k] = ok and d or v
    else meta[k] = v end
  end
  local groups = {model = model}
  if md and md.optimizer_state then groups.optimizer = join(json.decode(md.optimizer_state, path), opt_tensors) end
  return groups, meta
end

return state_io
