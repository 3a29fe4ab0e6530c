-- fmd: the library table. `local fmd = require "fmd"`; scripts and the REPL
-- also have it as the global `fmd`. The C core (fmd.core) provides tensors
-- and kernels; Lua submodules (fmd.nn, fmd.optim, fmd.data, ...) hang off it
-- and are loaded on first use.
local C = require "fmd.core"
local fmd = {}
for k, v in pairs(C) do fmd[k] = v end

require("fmd.tensor")(fmd, C)

-- fmd.no_grad(fn, ...) runs fn with graph recording off and returns its
-- results; the previous mode is restored even when fn raises.
function fmd.no_grad(fn, ...)
  local prev = C.set_grad_enabled(false)
  local res = table.pack(pcall(fn, ...))
  C.set_grad_enabled(prev)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

function fmd.enable_grad(fn, ...)
  local prev = C.set_grad_enabled(true)
  local res = table.pack(pcall(fn, ...))
  C.set_grad_enabled(prev)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

-- The global generator starts from the clock, as PyTorch's does: two REPL
-- sessions or script runs draw different numbers unless fmd.manual_seed
-- (or `fmd --seed N`, or a script's --seed flag) fixes them.
-- fmd.initial_seed() is the seed in use, to repeat a run.
local seed_in_use
function fmd.manual_seed(seed)
  seed = math.tointeger(seed) or error(("manual_seed: expected an integer seed, got %s")
    :format(type(seed) == "number" and tostring(seed) or type(seed)), 2)
  seed_in_use = seed
  C.manual_seed(seed)
end

function fmd.initial_seed() return seed_in_use end

do
  -- wall clock (seconds) and monotonic clock (ns resolution) mixed
  local t = os.time() * 1000003 + math.floor((C.sys.now() % 1e3) * 1e9)
  fmd.manual_seed(t & 0x7fffffffffff)
end

-- fmd.timing(true): the REPL prints each command's wall time
function fmd.timing(on) return require("fmd.repl").timing(on) end

-- fmd.load_model(name, checkpoint): the model `name` (fmd.models) with the
-- weights of a checkpoint file (safetensors or PyTorch .pth), in eval mode;
-- every tensor must fit both ways. Returns model, the file's metadata.
function fmd.load_model(name, checkpoint)
  local model = fmd.models.load_model(name, {pretrained = false})   -- the checkpoint brings the weights
  local _, meta = model:load(checkpoint)
  model:eval()
  return model, meta
end

-- submodules on first use: fmd.nn, fmd.optim, fmd.data, fmd.transforms, ...
setmetatable(fmd, {__index = function(t, k)
  if type(k) ~= "string" then return nil end
  local ok, mod = pcall(require, "fmd." .. k)
  if ok then rawset(t, k, mod); return mod end
  if not tostring(mod):find("module 'fmd." .. k .. "' not found", 1, true) then error(mod, 2) end
  return nil
end})

return fmd
