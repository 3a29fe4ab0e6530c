-- Checkpoint files: a model state_dict (and optionally an optimizer state)
-- in one safetensors file. Model tensors keep their plain state_dict names,
-- so Python's safetensors + PyTorch can read them directly; optimizer
-- tensors are stored as "optimizer/<path>" with the table skeleton as JSON
-- in the metadata. Other metadata values are strings: numbers as numbers,
-- tables as JSON.
--
-- What kind of file a checkpoint is (safetensors or PyTorch .pth) is decided
-- here only, by state_io.kind; every reader of a checkpoint or of weights
-- (m:load, fmd.load_model, the ImageNet Xception weights, the bonus model)
-- asks it, or reads through state_io.read, which does.
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

-- the first bytes of a file (fewer when it is shorter); errors name the file
local function head(path, what, n)
  if type(path) ~= "string" then error(("%s: expected a file name, got %s"):format(what, type(path)), 0) end
  if fmd.sys.is_dir(path) then error(("%s %s: is a folder, not a file"):format(what, path), 0) end
  if not fmd.sys.is_file(path) then
    -- a pipe or device would block a read: refused before opening it
    local exists = os.rename(path, path)
    error(("%s %s: %s"):format(what, path, exists and "is not a regular file" or "no such file"), 0)
  end
  local f, err = io.open(path, "rb")
  if not f then error(("%s %s: cannot read: %s"):format(what, path, err), 0) end
  local h = f:read(n) or ""
  f:close()
  return h
end

-- state_io.kind(path [, what]) -> "safetensors" | "pth", and for a .pth
-- "zip", "legacy" or "tar". By content, never by name: safetensors is a
-- u64 little-endian header length then '{' (the length's low byte may be
-- anything, 0x80 included: fmd pads headers to multiples of 8); a zip .pth
-- starts "PK\3\4"; a legacy .pth is a pickle, 0x80 <protocol> then LONG1
-- (0x8a) of torch's magic number; torch < 0.1.10 wrote a tar ("ustar" at
-- byte 257; load_pth names it). Anything else is one error naming the file
-- and what was expected. `what` names the file in errors ("checkpoint").
function state_io.kind(path, what)
  what = what or "checkpoint"
  local h = head(path, what, 262)
  if #h >= 9 and h:sub(9, 9) == "{" then return "safetensors" end
  if h:sub(1, 4) == "PK\3\4" then return "pth", "zip" end
  if #h >= 3 and h:byte(1) == 0x80 and h:byte(3) == 0x8a then return "pth", "legacy" end
  if h:sub(258, 262) == "ustar" then return "pth", "tar" end
  local shown = h:sub(1, 9):gsub(".", function(c) return ("%02x "):format(c:byte()) end)
  error(("%s %s: not a checkpoint: expected a safetensors file (an 8-byte header length, then '{') or a "
    .. "PyTorch .pth (a zip archive starting PK, or a torch.save pickle starting 80 xx 8a); %s"):format(what, path,
    #h == 0 and "the file is empty" or ("it starts " .. shown:sub(1, -2))), 0)
end

-- returns {model = state_dict, optimizer = state or nil}, meta
function state_io.load(path)
  local kind = state_io.kind(path)
  if kind ~= "safetensors" then
    error(("checkpoint %s: a PyTorch .pth; expected fmd's safetensors checkpoint (with its metadata)"):format(path), 0)
  end
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

-- state_io.read(path [, what]) -> state_dict, meta, kind: the model tensors
-- of any checkpoint: fmd's (optimizer tensors left out), any other
-- safetensors file, or a PyTorch .pth (meta is {}: a pickle's extras are not
-- read). Errors name the file (`what` as in state_io.kind).
function state_io.read(path, what)
  what = what or "checkpoint"
  local kind = state_io.kind(path, what)
  local ok, sd, meta
  if kind == "pth" then
    ok, sd = pcall(fmd.load_pth, path)
  else
    local groups
    ok, groups, meta = pcall(state_io.load, path)
    sd = ok and groups.model or groups
  end
  if not ok then error(("%s %s: %s"):format(what, path, tostring(sd)), 0) end
  return sd, meta or {}, kind
end

return state_io
