-- nn.Sequential(m1, m2, ...): runs the modules in order. Children are named
-- "0", "1", ... like PyTorch (so keys read features.0.weight); seq[i] is the
-- i-th module (1-based) and #seq their number. An error inside a child is
-- re-raised as "in module i (nn.Conv2d) of nn.Sequential: <message>".
local Module = require "fmd.nn.Module"
local fusion = require "fmd.nn.fusion"

local Sequential = Module:extend("nn.Sequential")

function Sequential:__init(...)
  local mods = table.pack(...)
  -- nn.Sequential({m1, m2}) also works
  if mods.n == 1 and type(mods[1]) == "table" and not Module.is_module(mods[1]) then
    mods = table.pack(table.unpack(mods[1]))
  end
  for i = 1, mods.n do
    if not Module.is_module(mods[i]) then
      error(("nn.Sequential: argument %d is a %s, not a module"):format(i, type(mods[i])), 3)
    end
    self:add_module(tostring(i - 1), mods[i])
  end
end

-- appends m, named by its position ("0"-based like PyTorch); returns self
function Sequential:add(m)
  self:add_module(tostring(#rawget(self, "_modules_names")), m)
  return self
end
Sequential.append = Sequential.add

function Sequential.__index(self, k)
  if math.type(k) == "integer" then
    local names = rawget(self, "_modules_names")
    if k < 0 then k = #names + k + 1 end
    local n = names[k]
    return n and rawget(self, "_modules")[n]
  end
  return Module.__index(self, k)
end

function Sequential.__len(self) return #rawget(self, "_modules_names") end

-- Children that nn.fusion can join run as one kernel call: without a graph
-- [ReLU] conv [BatchNorm2d [ReLU]], and graph or not BatchNorm2d ReLU; the
-- numbers are the same.
function Sequential:forward(x, ...)
  local names, mods = rawget(self, "_modules_names"), rawget(self, "_modules")
  local i = 1
  while names[i] do
    local m = mods[names[i]]
    local p = fusion.plan(m, mods[names[i + 1]], mods[names[i + 2]], mods[names[i + 3]])
    local ok, res
    if p then ok, res = pcall(fusion.run, p, x)
    else ok, res = pcall(m, x, ...) end
    if not ok then
      error(("in module %d (%s) of %s: %s"):format(i, m.__name, self.__name, tostring(res)), 0)
    end
    x = res
    i = i + (p and p.n or 1)
  end
  return x
end

return Sequential
