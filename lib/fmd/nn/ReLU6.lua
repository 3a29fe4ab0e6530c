-- nn.ReLU6(): min(max(x, 0), 6), the activation of MobileNetV2 (Keras'
-- ReLU(max_value=6)). F.relu6 says where its gradient passes.
local Module = require "fmd.nn.Module"
local F = require "fmd.nn.functional"

local ReLU6 = Module:extend("nn.ReLU6")

function ReLU6:__init() end

function ReLU6:forward(x) return F.relu6(x) end

return ReLU6
