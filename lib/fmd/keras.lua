-- fmd.keras: Keras models saved as TensorFlow.js "layers models", read in
-- Lua (no node): the topology and the weights, the weights turned into
-- fmd's layouts and names. nsfwjs ships its models this way, wrapped in
-- JavaScript: model.min.js holds the model.json as a JS object literal,
-- each shard group1-shardNofM.min.js one base64 string.
--
--   local keras = require "fmd.keras"
--   local m = keras.load("dist/models/mobilenet_v2/model.min.js")   -- or a model.json
--   m.layers[i]      {name =, class =, config =, inbound = {layer names}}, in file order
--   m.layer[name]    the same by name
--   m.weights[name]  "Conv1/kernel" -> tensor in Keras' layout (manifest order in m.names)
--   local sd = keras.state_dict(m, {["conv1"] = "Conv1", ["bn1"] = "bn_Conv1", ...})
--   model:load_state_dict(sd)
--
-- Layouts: Keras is channels-last, fmd (like PyTorch) channels-first:
--   Conv2D kernel (kh, kw, in, out)            -> weight (out, in, kh, kw)
--   DepthwiseConv2D kernel (kh, kw, in, mult)  -> weight (in*mult, 1, kh, kw)
--   Dense kernel (in, out)                     -> weight (out, in)
--   BatchNormalization gamma, beta, moving_mean, moving_variance
--                                              -> weight, bias, running_mean, running_var
-- What the layer configs say beyond the weights (BatchNormalization's
-- epsilon, 1e-3 in Keras against PyTorch's 1e-5; ZeroPadding2D's widths;
-- ReLU's max_value) is the model file's to follow: keras.check_config
-- compares a layer's config with what the fmd module does.
local fmd = require "fmd"
local json = require "fmd.json"
local tfjs = require "fmd.tfjs"
local keras = {}

---------------------------------------------------------- the JS wrapper

-- The JavaScript object literal at byte i of s (a minified bundle's
-- `exports={...}`) as JSON text: keys quoted, !0/!1 as true/false, .5 as
-- 0.5, strings copied. Anything else (a function, a variable) is an error:
-- the file is not the data it should be.
local function js_literal_to_json(s, i, where)
  local out, depth = {}, 0
  local function bad(msg, at) error(("%s: %s at byte %d"):format(where, msg, at), 0) end
  repeat
    local c = s:sub(i, i)
    if c == "" then bad("the object literal does not end", i) end
    if c == '"' then
      local j = i + 1
      while true do
        local k = s:find('[\\"]', j)
        if not k then bad("a string does not end", i) end
        if s:sub(k, k) == "\\" then j = k + 2 else j = k; break end
      end
      out[#out + 1] = s:sub(i, j)
      i = j + 1
    elseif c == "{" or c == "[" then
      depth = depth + 1
      out[#out + 1] = c
      i = i + 1
    elseif c == "}" or c == "]" then
      depth = depth - 1
      out[#out + 1] = c
      i = i + 1
    elseif c == "," or c == ":" or c:match("%s") then
      out[#out + 1] = c
      i = i + 1
    elseif c == "!" then
      local d = s:sub(i + 1, i + 1)
      if d ~= "0" and d ~= "1" then bad("'!' not followed by 0 or 1", i) end
      out[#out + 1] = d == "0" and "true" or "false"
      i = i + 2
    elseif c:match("[%d%.%-]") then
      local num = s:match("^%-?[%d%.]+[eE][%-+]?%d+", i) or s:match("^%-?[%d%.]+", i)
      if not tonumber(num) then bad(("'%s' is not a number"):format(num), i) end
      i = i + #num
      -- JSON wants a digit on both sides of the point
      num = num:gsub("^(%-?)%.", "%10."):gsub("%.([eE]?)", function(e) return e == "" and "." or ".0" .. e end)
      if num:match("%.$") then num = num .. "0" end
      out[#out + 1] = num
    elseif c:match("[%a_$]") then
      local id = s:match("^[%w_$]+", i)
      if id == "true" or id == "false" or id == "null" then
        out[#out + 1] = id
      elseif s:match("^%s*:", i + #id) then
        out[#out + 1] = '"' .. id .. '"'
      else
        bad(("'%s' is not data (a JavaScript expression?)"):format(id), i)
      end
      i = i + #id
    else
      bad(("unexpected '%s'"):format(c), i)
    end
  until depth == 0
  return table.concat(out)
end

local function read_file(path, what)
  local f, err = io.open(path, "rb")
  if not f then error(("%s: cannot read %s (%s)"):format(path, what, err), 0) end
  local s = f:read("a")
  f:close()
  return s
end

-- the model.json object of a model.json or model.min.js file
local function read_model_json(path)
  local s = read_file(path, "the Keras model")
  if path:match("%.json$") then return json.decode(s, path) end
  local at = s:find("exports%s*=%s*{")
  if not at then
    error(("%s: no `exports={...}` object (expected a TensorFlow.js model.json wrapped in JavaScript)")
      :format(path), 0)
  end
  return json.decode(js_literal_to_json(s, s:find("{", at, true), path), path)
end

-- the bytes of one shard: a binary file, or a .js file wrapping its base64
local function read_shard(dir, name, model_path)
  local bin = dir .. "/" .. name
  if fmd.sys.is_file(bin) then return read_file(bin, "a weights shard") end
  local js = bin .. ".min.js"
  if not fmd.sys.is_file(js) then js = bin .. ".js" end
  if not fmd.sys.is_file(js) then
    error(("%s: its weights shard %s is missing (looked for %s, %s.min.js and %s.js)")
      :format(model_path, name, bin, bin, bin), 0)
  end
  local s = read_file(js, "a weights shard")
  local b64 = s:match('exports%s*=%s*"([^"]*)"')
  if not b64 then error(("%s: no `exports=\"...\"` base64 string (expected a weights shard)"):format(js), 0) end
  return fmd.base64_decode(b64, js)
end

---------------------------------------------------------------- loading

local function list(v) return type(v) == "table" and v or {} end

-- keras.load(path): a TensorFlow.js layers model (model.json or model.min.js
-- beside its shards). Returns {path, layers, layer, weights, names,
-- input_shape}; see the header.
function keras.load(path)
  if type(path) ~= "string" then error("keras.load: expected the path of a model.json or model.min.js", 2) end
  if not fmd.sys.is_file(path) then error(("%s: no such file (a Keras model.json or model.min.js)"):format(path), 0) end
  local obj = read_model_json(path)
  local topo = type(obj.modelTopology) == "table" and obj.modelTopology
  local config = topo and (topo.model_config and topo.model_config.config or topo.config)
  if not (config and type(config.layers) == "table" and type(obj.weightsManifest) == "table") then
    error(("%s: not a TensorFlow.js layers model (expected modelTopology with layers and a weightsManifest)")
      :format(path), 0)
  end
  local m = {path = path, layers = {}, layer = {}}
  for i, l in ipairs(config.layers) do
    if type(l) ~= "table" or type(l.name) ~= "string" or type(l.class_name) ~= "string" then
      error(("%s: layer %d has no name or class_name"):format(path, i), 0)
    end
    local inbound = {}
    -- inbound_nodes: [[[layer, node, tensor, kwargs], ...]] (one node per call)
    for _, node in ipairs(list(l.inbound_nodes)) do
      for _, edge in ipairs(list(node)) do inbound[#inbound + 1] = list(edge)[1] end
    end
    local layer = {name = l.name, class = l.class_name, config = l.config or {}, inbound = inbound}
    m.layers[i] = layer
    m.layer[l.name] = layer
  end
  local first = m.layers[1]
  if first and first.class == "InputLayer" then m.input_shape = first.config.batch_input_shape end
  -- the shards of every group, in manifest order, decoded together
  local dir = path:match("^(.*)/[^/]*$") or "."
  local specs, bytes = {}, {}
  for _, group in ipairs(obj.weightsManifest) do
    for _, spec in ipairs(list(group.weights)) do specs[#specs + 1] = spec end
    for _, name in ipairs(list(group.paths)) do bytes[#bytes + 1] = read_shard(dir, name, path) end
  end
  m.weights, m.names = tfjs.decode(specs, table.concat(bytes), path)
  return m
end

--------------------------------------------------------------- layouts

-- Keras weight name -> fmd parameter name, and the layout change, by class
local CONVERT = {
  Conv2D = {kernel = {"weight", function(t) return t:permute(4, 3, 1, 2) end}, bias = {"bias"}},
  DepthwiseConv2D = {
    depthwise_kernel = {"weight", function(t)
      local kh, kw, c, mult = t:size(1), t:size(2), t:size(3), t:size(4)
      -- output channel c*mult + m of Keras is channel-major, as fmd's groups
      return t:permute(3, 4, 1, 2):contiguous():view(c * mult, 1, kh, kw)
    end},
    bias = {"bias"}},
  Dense = {kernel = {"weight", function(t) return t:t() end}, bias = {"bias"}},
  BatchNormalization = {gamma = {"weight"}, beta = {"bias"}, moving_mean = {"running_mean"},
                        moving_variance = {"running_var"}},
}

-- the fmd tensors of Keras layer `lname` of m: {fmd_param = tensor}
function keras.layer_tensors(m, lname)
  local layer = m.layer[lname] or error(("%s has no layer '%s'"):format(m.path, tostring(lname)), 0)
  local conv = CONVERT[layer.class]
  if not conv then error(("%s: layer %s is a %s, whose weights fmd does not convert"):format(m.path, lname, layer.class), 0) end
  local out, prefix = {}, lname .. "/"
  for _, wname in ipairs(m.names) do
    if wname:sub(1, #prefix) == prefix then
      local param = wname:sub(#prefix + 1)
      local c = conv[param] or error(("%s: %s holds '%s', which a %s should not have")
        :format(m.path, lname, param, layer.class), 0)
      local t = m.weights[wname]
      out[c[1]] = c[2] and c[2](t):contiguous() or t
    end
  end
  return out
end

-- keras.state_dict(m, map): map is fmd module path -> Keras layer name; the
-- result holds "<path>.<param>" for every weight of those layers. Every
-- Keras layer that has weights must be mapped unless opts.partial, so
-- nothing of the file is dropped by a typo.
function keras.state_dict(m, map, opts)
  local sd, used = {}, {}
  for path, lname in pairs(map) do
    for param, t in pairs(keras.layer_tensors(m, lname)) do sd[path .. "." .. param] = t end
    used[lname] = true
  end
  if not (opts and opts.partial) then
    for _, wname in ipairs(m.names) do
      local lname = wname:match("^(.*)/[^/]*$") or wname
      if not used[lname] then error(("%s: weights of layer %s are not used by the model"):format(m.path, lname), 0) end
    end
  end
  return sd
end

-- raises unless Keras layer `lname` of m has config[key] == want for each
-- key of `want` (tables compared as JSON), naming what differs
function keras.check_config(m, lname, want)
  local layer = m.layer[lname] or error(("%s has no layer '%s'"):format(m.path, tostring(lname)), 0)
  for k, v in pairs(want) do
    local got = layer.config[k]
    local a = type(got) == "table" and json.encode(got) or tostring(got)
    local b = type(v) == "table" and json.encode(v) or tostring(v)
    if a ~= b then
      error(("%s: layer %s has %s = %s, the fmd model expects %s"):format(m.path, lname, k, a, b), 0)
    end
  end
end

keras._js_literal_to_json = js_literal_to_json   -- for the tests

return keras
