-- Helpers shared by the nn modules: argument shapes (a number or an {h, w}
-- pair), option tables, whether a module is hooked, uniform initialisation
-- and Python-style text for the PyTorch-like repr.
local fmd = require "fmd"
local util = {}

-- n or {h, w} -> h, w (both integers >= lo); `what` names the argument in errors
function util.pair(v, what, lo)
  local a, b
  if type(v) == "number" then a, b = v, v
  elseif type(v) == "table" and #v == 2 then a, b = v[1], v[2]
  else error(("%s must be a number or a {h, w} pair, got %s"):format(what, type(v) == "table" and
    ("a table of %d entries"):format(#v) or type(v)), 3) end
  a, b = math.tointeger(a), math.tointeger(b)
  if not a or not b then error(("%s must hold integers"):format(what), 3) end
  if lo and (a < lo or b < lo) then error(("%s (%d, %d) must be >= %d"):format(what, a, b, lo), 3) end
  return a, b
end

-- a table of named options (no array part), as the last constructor argument
function util.is_opts(v)
  return type(v) == "table" and v[1] == nil and getmetatable(v) == nil
end

-- positional arguments `args` (a table.pack) named by `names`, where any
-- position may instead be a table of named options that ends the list
function util.args(args, names, what)
  local out = {}
  for i, name in ipairs(names) do
    local v = args[i]
    if util.is_opts(v) and not (name == "kernel_size" or name == "output_size") then
      for k, x in pairs(v) do
        local known = false
        for _, n in ipairs(names) do if n == k then known = true end end
        if not known then
          error(("%s: unknown option '%s' (options: %s)"):format(what, tostring(k), table.concat(names, ", ")), 3)
        end
        out[k] = x
      end
      break
    end
    out[name] = v
  end
  return out
end

-- module m has a forward hook or pre-hook: a fused call that skips its
-- forward would hide m's own output from it (nn.fusion, SeparableConv2d)
function util.hooked(m)
  return #rawget(m, "_forward_hooks") > 0 or #rawget(m, "_forward_pre_hooks") > 0
end

-- tensor of `shape` drawn from U(-bound, bound) with the global RNG, a leaf
function util.uniform(shape, bound)
  local t = fmd.rand(shape)
  return fmd.no_grad(function() return t * (2 * bound) - bound end)
end

-- Python's text for values in reprs: True/False, 1e-05, 0.1, (3, 3)
function util.py(v)
  if type(v) == "boolean" then return v and "True" or "False" end
  if v == nil then return "None" end
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = util.py(x) end
    return "(" .. table.concat(parts, ", ") .. (#parts == 1 and ",)" or ")")
  end
  if math.type(v) == "integer" then return tostring(v) end
  if type(v) == "number" then
    if v ~= v then return "nan" end
    if v == math.huge then return "inf" elseif v == -math.huge then return "-inf" end
    if v == math.floor(v) and math.abs(v) < 1e16 then return ("%.1f"):format(v) end
    for digits = 1, 17 do   -- shortest text that reads back exactly, like repr()
      local s = ("%." .. digits .. "g"):format(v)
      if tonumber(s) == v then return s end
    end
  end
  return tostring(v)
end

return util
