-- SimpleNet, exactly as the course defined it: three 7x7 conv + ReLU +
-- 2x2 max-pool stages, then three fully connected layers. Input (B,3,256,256),
-- output raw logits (B,2): column 1 scores "real", column 2 "fake".
-- 16,901,762 parameters. Copy this file to ./models/ to edit it.
local nn = require "fmd.nn"

local SimpleNet = nn.Module:extend("SimpleNet")

function SimpleNet:__init()
  self.conv1 = nn.Conv2d(3, 6, 7)          -- (B,6,250,250) -> pool (B,6,125,125)
  self.pool = nn.MaxPool2d(2, 2)
  self.conv2 = nn.Conv2d(6, 16, 7)         -- (B,16,119,119) -> (B,16,59,59)
  self.conv3 = nn.Conv2d(16, 24, 7)        -- (B,24,53,53) -> (B,24,26,26)
  self.fc1 = nn.Linear(24 * 26 * 26, 1024)
  self.fc2 = nn.Linear(1024, 256)
  self.fc3 = nn.Linear(256, 2)
end

-- x is (B,3,256,256)
function SimpleNet:forward(x)
  x = self.pool(self.conv1(x):relu())
  x = self.pool(self.conv2(x):relu())
  x = self.pool(self.conv3(x):relu())
  x = x:flatten(2)                         -- (B, 24*26*26)
  x = self.fc1(x):relu()
  x = self.fc2(x):relu()
  return self.fc3(x)
end

return SimpleNet
