-- fmd.models: find models by name, count parameters, load ImageNet weights.
--
--   local models = require "fmd.models"
--   local model = models.load_model("SimpleNet")      -- an instance
--   print(models.get_nof_params(model))              -- trainable parameters
--
-- A model is a Lua file returning an nn.Module class. load_model looks in
-- the user's folder first (./models/<Name>.lua, then ./<Name>.lua), then in
-- fmd's own lib/fmd/models/, so a copied and edited model wins.
local fmd = require "fmd"
local models = {}

local BUILTIN = {"SimpleNet", "Xception", "XceptionBased", "MobileNetV2", "MobileNetBased", "bonus"}
-- names whose file is called otherwise (the course's bonus_model.py)
local FILES = {bonus = "bonus_model"}

local function lib_dir()
  return (package.fmd_lib or "lib") .. "/fmd/models"
end

local function candidates(name)
  name = FILES[name] or name
  return {"models/" .. name .. ".lua", name .. ".lua", lib_dir() .. "/" .. name .. ".lua"}
end

-- every model name available: built-ins and ./models/*.lua
function models.names()
  local seen, out = {}, {}
  local function add(n) if not seen[n] then seen[n] = true; out[#out + 1] = n end end
  for _, n in ipairs(BUILTIN) do add(n) end
  if fmd.sys.is_dir("models") then
    for _, f in ipairs(fmd.sys.listdir("models")) do
      local n = f:match("^(.+)%.lua$")
      if n and n ~= "init" then add(n) end
    end
  end
  return out
end

local cache = {}

-- the class of a model by name (loaded once per process)
function models.class(name)
  if cache[name] then return cache[name] end
  if type(name) ~= "string" or not name:match("^[%w_]+$") then
    error(("model name must be a word, got %s"):format(tostring(name)), 2)
  end
  for _, path in ipairs(candidates(name)) do
    if fmd.sys.is_file(path) then
      local chunk, err = loadfile(path)
      if not chunk then error(("model %s: %s"):format(name, err), 0) end
      local cls = chunk(name, path)
      if type(cls) ~= "table" then
        error(("model file %s must return an nn.Module class, returned %s"):format(path, type(cls)), 0)
      end
      cache[name] = cls
      return cls
    end
  end
  local cli = require "fmd.cli"
  local s = cli.suggest(name, models.names())
  error(("unknown model '%s'%s; known models: %s"):format(name, s and (" (did you mean " .. s .. "?)") or "",
    table.concat(models.names(), ", ")), 0)
end

-- the input convention of a model (a name, class or instance): its class's
-- `input` field, else the course's (fmd.transforms.COURSE_INPUT: 256x256,
-- normalised with the course's mean and std). The data pipeline asks here.
function models.input(model)
  local cls = type(model) == "string" and models.class(model) or model
  return cls and cls.input or require("fmd.transforms").COURSE_INPUT
end

function models.load_model(name, opts)
  return models.class(name)(opts or {})
end

-- trainable parameters (requires_grad), like the course's get_nof_params
function models.get_nof_params(model)
  local n = 0
  for _, p in model:named_parameters() do
    if p.requires_grad then n = n + p:numel() end
  end
  return n
end

-- 16901762 -> "16,901,762"
function models.format_count(n)
  local s = tostring(math.tointeger(n) or n)
  repeat
    local k
    s, k = s:gsub("^(%-?%d+)(%d%d%d)", "%1,%2")
  until k == 0
  return s
end

------------------------------------------------------------ ImageNet weights

-- read a checkpoint (.pth zip or legacy, or .safetensors) as name -> tensor,
-- in the naming of the public Xception port: Cadene's last_linear is fc,
-- 2-D pointwise kernels become (O,I,1,1). ("module." is stripped by load_pth.)
function models.read_xception_state(path)
  local sd = require("fmd.state_io").read(path, "Xception weights")   -- safetensors or .pth, by content
  local out = {}
  for k, t in pairs(sd) do
    k = k:gsub("^last_linear%.", "fc.")
    if k:match("pointwise%.weight$") and t:dim() == 2 then t = t:view(t:size(1), t:size(2), 1, 1) end
    out[k] = t
  end
  return out
end

-- load ImageNet weights into an Xception-shaped model's backbone (every
-- key except the classifier fc must be present and match in shape)
function models.load_xception_weights(model, path)
  local sd = models.read_xception_state(path)
  local want, keys = model:state_dict()
  local backbone = {}
  local missing = {}
  for _, k in ipairs(keys) do
    if not k:match("^fc%.") then
      if sd[k] then backbone[k] = sd[k] else missing[#missing + 1] = k end
    end
  end
  if #missing > 0 then
    error(("Xception weights %s do not fit the model: %d backbone tensors missing (first: %s)")
      :format(path, #missing, missing[1]), 0)
  end
  for k in pairs(sd) do
    if not want[k] and not k:match("num_batches_tracked$") then
      error(("Xception weights %s hold '%s', which the model does not have"):format(path, k), 0)
    end
  end
  model:load_state_dict(backbone, false)
  return model
end

-- multiply-accumulates of one forward pass of an input of `shape` (e.g.
-- {1, 3, 256, 256}), counted on Conv2d and Linear layers (what dominates;
-- BatchNorm, ReLU and pooling are a few percent more): conv out.numel *
-- in/groups * kh * kw, linear batch * in * out. FLOPs are about 2x MACs.
function models.count_macs(model, shape)
  local macs, handles = 0, {}
  for _, m in model:named_modules() do
    local kind = m.__short_name
    if kind == "Conv2d" then
      handles[#handles + 1] = m:register_forward_hook(function(mod, _, out)
        macs = macs + out:numel() * (mod.in_channels // mod.groups) * mod.kernel_size[1] * mod.kernel_size[2]
      end)
    elseif kind == "Linear" then
      handles[#handles + 1] = m:register_forward_hook(function(mod, input, out)
        macs = macs + out:numel() * input[1]:size(-1)
      end)
    end
  end
  local was_training = model.training
  local ok, err = pcall(function()
    model:eval()
    fmd.no_grad(function() model(fmd.zeros(shape)) end)
  end)
  for _, h in ipairs(handles) do h.remove() end
  model:train(was_training)
  if not ok then error(err, 0) end
  return macs
end

return models
