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

-- submodules on first use: fmd.nn, fmd.optim, fmd.data, fmd.transforms, ...
setmetatable(fmd, {__index = function(t, k)
  if type(k) ~= "string" then return nil end
  local ok, mod = pcall(require, "fmd." .. k)
  if ok then rawset(t, k, mod); return mod end
  if not tostring(mod):find("module 'fmd." .. k .. "' not found", 1, true) then error(mod, 2) end
  return nil
end})

return fmd
