-- nn.CrossEntropyLoss(): loss(logits (N,C), target (N) of 0-based class
-- ids) = mean over N of -log softmax(logits)[target].
local Module = require "fmd.nn.Module"
local F = require "fmd.nn.functional"

local CrossEntropyLoss = Module:extend("nn.CrossEntropyLoss")

function CrossEntropyLoss:forward(logits, target) return F.cross_entropy(logits, target) end

return CrossEntropyLoss
