-- nn.Identity(): returns its input (a placeholder, e.g. to drop a head).
local Module = require "fmd.nn.Module"

local Identity = Module:extend("nn.Identity")

function Identity:__init() end
function Identity:forward(x) return x end

return Identity
