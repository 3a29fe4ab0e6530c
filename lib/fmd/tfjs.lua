-- fmd.tfjs: TensorFlow.js weights as fmd tensors.
--
--   local tfjs = require "fmd.tfjs"
--   tensors, names = tfjs.decode(specs, bytes, where)
--   tensors, names = tfjs.load(manifest_path)
--
-- A tfjs model ships a weights manifest (JSON: a list of groups, each
-- {paths = {shard files}, weights = {specs}}) and binary shards. A group's
-- shards, concatenated in order, hold its tensors back to back in the order
-- of its specs: {name, shape, dtype = "float32" | "int32" | "float16",
-- quantization = {dtype = "uint8" | "uint16" | "float16", min, scale}}. A
-- quantised tensor stores q and means min + scale * q (tfjs-core's
-- decodeWeights, whose rules engine/tfjs.c follows). Every tensor comes out
-- as float32 with the manifest's shape, its layout untouched (a conv kernel
-- stays (kh, kw, in, out)); the model that uses it converts.
--
-- Byte ranges are checked against the data before anything is decoded: a
-- short shard, or a manifest that describes more or fewer bytes than the
-- shards hold, is one error naming the tensor and both counts.
local C = require "fmd.core"
local fmd = require "fmd"
local json = require "fmd.json"

local tfjs = {}

-- bytes per stored element, by the dtype the bytes are in
local SIZE = {float32 = 4, int32 = 4, float16 = 2, uint8 = 1, uint16 = 2}
local DTYPES = {float32 = true, int32 = true, float16 = true}
local MAX_NUMEL = 2 ^ 53

local function shape_str(shape)
  local s = {}
  for i, v in ipairs(shape) do s[i] = tostring(math.tointeger(v) or v) end
  return "[" .. table.concat(s, ", ") .. "]"
end

-- one spec checked: name, shape (integers), element count, the stored kind
-- (what the bytes are) and its byte count
local function check_spec(spec, i, where)
  local function bad(msg, ...) error(("%s: weight %d: " .. msg):format(where, i, ...), 0) end
  if type(spec) ~= "table" then bad("expected an object {name, shape, dtype}, got a %s", type(spec)) end
  local name = spec.name
  if type(name) ~= "string" or name == "" then bad("has no name (a string)") end
  local function bad_t(msg, ...) error(("%s: tensor '%s': " .. msg):format(where, name, ...), 0) end
  local shape = spec.shape
  if type(shape) ~= "table" then bad_t("shape must be a list of sizes, got %s", type(shape)) end
  if #shape > 8 then bad_t("shape %s has %d dims, fmd supports at most 8", shape_str(shape), #shape) end
  local dims, numel = {}, 1
  for d = 1, #shape do
    local v = math.tointeger(shape[d])
    if not v or v < 0 then bad_t("shape entry %d is %s, expected an integer >= 0", d, tostring(shape[d])) end
    dims[d] = v
    if v > 0 and numel > MAX_NUMEL // v then bad_t("shape %s has more than 2^53 elements", shape_str(shape)) end
    numel = numel * v
  end
  local dtype = spec.dtype
  if not DTYPES[dtype] then
    bad_t("unknown dtype '%s' (fmd reads float32, int32 and float16)", tostring(dtype))
  end
  local kind, q = dtype, spec.quantization
  if q ~= nil then
    if type(q) ~= "table" then bad_t("quantization must be an object, got %s", type(q)) end
    kind = q.dtype
    if kind == "uint8" or kind == "uint16" then
      if type(q.min) ~= "number" or type(q.scale) ~= "number" then
        bad_t("%s quantization needs numbers min and scale", kind)
      end
    elseif kind == "float16" then
      if dtype ~= "float32" then bad_t("float16 quantization applies to float32 weights, not %s", dtype) end
    else
      bad_t("unknown quantization dtype '%s' (tfjs has uint8, uint16 and float16)", tostring(kind))
    end
  end
  return {name = name, shape = dims, numel = numel, kind = kind, nbytes = numel * SIZE[kind],
          min = q and q.min, scale = q and q.scale, round = dtype == "int32" and q ~= nil}
end

-- specs: a manifest group's `weights`; bytes: its shards concatenated
function tfjs.decode(specs, bytes, where)
  where = where or "tfjs weights"
  if type(specs) ~= "table" then error(("%s: the weights list must be a table, got %s"):format(where, type(specs)), 0) end
  if type(bytes) ~= "string" then error(("%s: the weight data must be a string, got %s"):format(where, type(bytes)), 0) end
  -- every range first: nothing is allocated for a manifest the data cannot fill
  local entries, seen, offset = {}, {}, 0
  for i, spec in ipairs(specs) do
    local e = check_spec(spec, i, where)
    if seen[e.name] then error(("%s: tensor '%s' is listed twice"):format(where, e.name), 0) end
    seen[e.name] = true
    e.offset = offset
    offset = offset + e.nbytes
    entries[i] = e
  end
  local total = offset
  for _, e in ipairs(entries) do
    if e.offset + e.nbytes > #bytes then
      error(("%s: tensor '%s' (%s %s) needs bytes %d..%d but the data holds %d bytes (the manifest describes %d)")
        :format(where, e.name, e.kind, shape_str(e.shape), e.offset, e.offset + e.nbytes, #bytes, total), 0)
    end
  end
  if total ~= #bytes then
    error(("%s: the data holds %d bytes but the manifest describes %d (%d bytes left over after '%s')")
      :format(where, #bytes, total, #bytes - total, #entries > 0 and entries[#entries].name or "no tensors"), 0)
  end
  local tensors, names = {}, {}
  for i, e in ipairs(entries) do
    local ok, t = pcall(C.tfjs_decode, bytes, e.offset, e.nbytes, e.kind, e.shape, e.min, e.scale, e.round)
    if not ok then error(("%s: tensor '%s': %s"):format(where, e.name, tostring(t)), 0) end
    tensors[e.name], names[i] = t, e.name
  end
  return tensors, names
end

-- a regular file's bytes; a folder, a FIFO (opening it would block) or a
-- missing file is one error (os.rename(p, p) succeeds only when p exists)
local function read_file(path, what)
  if not fmd.sys.is_file(path) then
    local why = fmd.sys.is_dir(path) and "is a folder, not a file"
      or os.rename(path, path) and "is not a regular file" or "no such file"
    error(("%s: %s"):format(what, why), 0)
  end
  local f, err = io.open(path, "rb")
  if not f then error(("%s: %s"):format(what, err), 0) end
  local s = f:read("a")
  f:close()
  return s
end

-- a *weights_manifest.json and its shards (relative to the manifest's folder)
function tfjs.load(manifest_path)
  if type(manifest_path) ~= "string" then
    error(("tfjs.load: expected the path of a weights manifest, got %s"):format(type(manifest_path)), 2)
  end
  local text = read_file(manifest_path, manifest_path)
  local manifest = json.decode(text, manifest_path)
  if type(manifest) ~= "table" or manifest.__order or #manifest == 0 then
    error(("%s: a weights manifest is a list of groups {paths, weights}"):format(manifest_path), 0)
  end
  local dir = manifest_path:match("^(.*)/[^/]*$") or "."
  local tensors, names = {}, {}
  for g, group in ipairs(manifest) do
    if type(group) ~= "table" or type(group.paths) ~= "table" or type(group.weights) ~= "table" then
      error(("%s: group %d needs 'paths' and 'weights' lists"):format(manifest_path, g), 0)
    end
    local parts = {}
    for k, p in ipairs(group.paths) do
      if type(p) ~= "string" or p == "" then
        error(("%s: group %d: path %d is not a file name"):format(manifest_path, g, k), 0)
      end
      local file = p:sub(1, 1) == "/" and p or dir .. "/" .. p
      parts[k] = read_file(file, ("%s: shard '%s' (group %d) at %s"):format(manifest_path, p, g, file))
    end
    local where = ("%s (group %d: %s)"):format(manifest_path, g, table.concat(group.paths, ", "))
    local t, n = tfjs.decode(group.weights, table.concat(parts), where)
    for _, name in ipairs(n) do
      if tensors[name] then error(("%s: tensor '%s' is in two groups"):format(manifest_path, name), 0) end
      tensors[name] = t[name]
      names[#names + 1] = name
    end
  end
  return tensors, names
end

return tfjs
