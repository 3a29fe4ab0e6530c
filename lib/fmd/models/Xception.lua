-- Xception (Chollet 2017) with the module names of the public PyTorch port
-- (tstandley / Cadene), so ImageNet weights load by name:
--   conv1 bn1 conv2 bn2 block1..block12 conv3 bn3 conv4 bn4 fc,
--   inside blocks: skip, skipbn, rep.N.
-- Input (B,3,H,W) (299x299 for ImageNet, 256x256 here); output (B,num_classes).
-- 22,855,952 parameters with num_classes = 1000.
--
-- Xception(opts): opts.num_classes (1000) and opts.widths, a table with
-- c1 c2 b1 b2 b3 b12 c3 c4 (channel widths) and middle (number of middle
-- blocks, 8), used by the tests to build a tiny network of the same shape.
local nn = require "fmd.nn"
local C = require "fmd.core"
-- fuse(conv, bn, x, relu) is relu(bn(conv(x))): one kernel call in eval
-- without a graph, BatchNorm and ReLU as one node otherwise (nn.fusion); the
-- rep chains (ReLU, SeparableConv, BatchNorm, ...) fuse the same way in
-- nn.Sequential
local fuse = nn.fusion.conv_bn

local DEFAULT = {c1 = 32, c2 = 64, b1 = 128, b2 = 256, b3 = 728, b12 = 1024, c3 = 1536, c4 = 2048, middle = 8}

-- one Xception block: reps x (ReLU, SeparableConv 3x3, BatchNorm), then a
-- 3x3 stride-s max-pool when s ~= 1; added to a skip path (1x1 conv + BN
-- when the shape changes, else the input itself)
local Block = nn.Module:extend("Block")

function Block:__init(cin, cout, reps, stride, start_with_relu, grow_first)
  if start_with_relu == nil then start_with_relu = true end
  if grow_first == nil then grow_first = true end
  if cout ~= cin or stride ~= 1 then
    self.skip = nn.Conv2d(cin, cout, 1, {stride = stride, bias = false})
    self.skipbn = nn.BatchNorm2d(cout)
  end
  -- the ReLUs are in-place (without a graph) except the first, whose input
  -- the skip path still reads (as in the PyTorch port)
  local layers, c = {}, cin
  local function unit(i, o)
    layers[#layers + 1] = nn.ReLU(#layers > 0)
    layers[#layers + 1] = nn.SeparableConv2d(i, o, 3, 1, 1)
    layers[#layers + 1] = nn.BatchNorm2d(o)
  end
  if grow_first then unit(cin, cout); c = cout end
  for _ = 1, reps - 1 do unit(c, c) end
  if not grow_first then unit(cin, cout) end
  if not start_with_relu then table.remove(layers, 1) end
  if stride ~= 1 then layers[#layers + 1] = nn.MaxPool2d(3, stride, 1) end
  self.rep = nn.Sequential(table.unpack(layers))
end

-- x is (B,cin,H,W)
function Block:forward(x)
  local skip = x
  if self.skip then skip = fuse(self.skip, self.skipbn, x) end
  local y = self.rep(x)
  -- without a graph the sum goes into rep's fresh output, as the PyTorch port's x += skip
  if not C.is_grad_enabled() then return y:add_(skip) end
  return y + skip
end

local Xception = nn.Module:extend("Xception")
Xception.Block = Block

function Xception:__init(opts)
  opts = opts or {}
  local w = {}
  for k, v in pairs(DEFAULT) do w[k] = (opts.widths and opts.widths[k]) or v end
  self.n_middle = w.middle
  self.feature_dim = w.c4
  -- entry flow
  self.conv1 = nn.Conv2d(3, w.c1, 3, {stride = 2, padding = 0, bias = false})
  self.bn1 = nn.BatchNorm2d(w.c1)
  self.conv2 = nn.Conv2d(w.c1, w.c2, 3, {bias = false})
  self.bn2 = nn.BatchNorm2d(w.c2)
  self.block1 = Block(w.c2, w.b1, 2, 2, false, true)
  self.block2 = Block(w.b1, w.b2, 2, 2)
  self.block3 = Block(w.b2, w.b3, 2, 2)
  -- middle flow
  for i = 4, 3 + w.middle do self["block" .. i] = Block(w.b3, w.b3, 3, 1) end
  -- exit flow
  self["block" .. (4 + w.middle)] = Block(w.b3, w.b12, 2, 2, true, false)
  self.conv3 = nn.SeparableConv2d(w.b12, w.c3, 3, 1, 1)
  self.bn3 = nn.BatchNorm2d(w.c3)
  self.conv4 = nn.SeparableConv2d(w.c3, w.c4, 3, 1, 1)
  self.bn4 = nn.BatchNorm2d(w.c4)
  self.fc = nn.Linear(w.c4, opts.num_classes or 1000)
end

-- (B,3,H,W) -> (B,c4) pooled features
function Xception:features(x)
  x = fuse(self.conv1, self.bn1, x, true)   -- relu(bn1(conv1(x)))
  x = fuse(self.conv2, self.bn2, x, true)
  for i = 1, 4 + self.n_middle do x = self["block" .. i](x) end
  x = fuse(self.conv3, self.bn3, x, true)
  x = fuse(self.conv4, self.bn4, x, true)
  return x:mean(4):mean(3)                 -- adaptive average pool to 1x1, flattened
end

function Xception:forward(x)
  return self.fc(self:features(x))
end

return Xception
