-- fmd.nn: layers, losses and the Module base class, PyTorch's torch.nn in
-- Lua. Each class lives in its own file lib/fmd/nn/<Name>.lua and is loaded
-- on first use (nn.Conv2d, nn.Sequential, ...). nn.functional (also nn.F)
-- has the ops as functions, nn.init the weight initialisers, nn.fusion the
-- joining of conv, BatchNorm and ReLU into one kernel call.
--
--   local nn = require "fmd.nn"
--   local net = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
--                             nn.Flatten(), nn.Linear(8, 2))
local nn = {}

nn.Module = require "fmd.nn.Module"
nn.functional = require "fmd.nn.functional"
nn.F = nn.functional
nn.init = require "fmd.nn.initializers"
nn.fusion = require "fmd.nn.fusion"

-- the classes this package ships (also what an unknown name lists)
nn.classes = {"AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm2d", "Conv2d", "CrossEntropyLoss", "Dropout",
              "Flatten", "Identity", "Linear", "LogSoftmax", "MaxPool2d", "MSELoss", "ReLU",
              "ReLU6", "SeparableConv2d", "Sequential", "Softmax", "ZeroPad2d"}
local known = {}
for _, n in ipairs(nn.classes) do known[n] = true end

-- a tensor as a trainable parameter: t itself, now requiring grad
function nn.Parameter(t)
  if not t.is_leaf then t = t:detach() end
  t.requires_grad = true
  return t
end

function nn.is_module(v) return nn.Module.is_module(v) end

return setmetatable(nn, {__index = function(t, k)
  if known[k] then
    local cls = require("fmd.nn." .. k)
    rawset(t, k, cls)
    return cls
  end
  if type(k) == "string" and k:match("^%u") then
    error(("fmd.nn has no class '%s' (it has %s)"):format(k, table.concat(nn.classes, ", ")), 2)
  end
  return nil
end})
