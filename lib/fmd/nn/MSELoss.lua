-- nn.MSELoss(): loss(input, target) = mean((input - target)^2).
local Module = require "fmd.nn.Module"
local F = require "fmd.nn.functional"

local MSELoss = Module:extend("nn.MSELoss")

function MSELoss:forward(input, target) return F.mse_loss(input, target) end

return MSELoss
