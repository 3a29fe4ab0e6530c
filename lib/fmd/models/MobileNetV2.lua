-- MobileNetV2 (Sandler et al. 2018, width 1.0) as Keras builds it
-- (keras.applications.MobileNetV2), so Keras weights load by name:
--   stem      ZeroPad2d{0,1,0,1}, conv1 3->32 3x3 stride 2, bn1, ReLU6
--   block0    depthwise 3x3, BN, ReLU6, project 1x1 32->16, BN (no expansion)
--   block1-16 inverted residuals: expand 1x1 (x6), BN, ReLU6, depthwise 3x3
--             (stride 2: ZeroPad2d{0,1,0,1} and no conv padding), BN, ReLU6,
--             project 1x1, BN; + the input when stride 1 and widths match
--   conv_last 1x1 320->1280, bn_last, ReLU6; global average pool; fc
-- Input (B,3,H,W) in [0, 1] (what the Keras weights fmd loads were trained
-- on), 224x224; output (B,num_classes). 2,223,872 trainable parameters
-- before fc (BatchNorm weights and biases included, running stats not).
--
-- Keras' conventions kept: BatchNorm eps 1e-3 (PyTorch's default is
-- 1e-5), and a stride-2 conv pads one zero row and column at the bottom
-- and right only ('same' padding on an even input). BatchNorm momentum is
-- PyTorch's convention (weight of the new batch), opts.bn_momentum, 0.1.
--
-- MobileNetV2(opts): opts.num_classes (1000), opts.head (a module taking
-- the pooled (B,1280) features instead of fc), opts.bn_momentum.
-- model:load_keras(m) loads a model read by fmd.keras.load (every backbone
-- layer; the Keras head is left to the caller).
local nn = require "fmd.nn"
local F = nn.functional
-- conv then BatchNorm as one kernel call in eval without a graph (nn.fusion)
local conv_bn = nn.fusion.conv_bn

local EPS = 1e-3

-- expansion t, output channels c, repeats n, first stride s (the paper's table 2)
local STAGES = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2}, {6, 96, 3, 1}, {6, 160, 3, 2},
                {6, 320, 1, 1}}

local function bn(c, momentum) return nn.BatchNorm2d(c, EPS, momentum) end

-- one inverted residual block: [expand 1x1] -> depthwise 3x3 -> project 1x1
local Block = nn.Module:extend("InvertedResidual")

function Block:__init(cin, cout, stride, t, momentum)
  local hidden = cin * t
  self.stride, self.residual = stride, stride == 1 and cin == cout
  if t ~= 1 then
    self.expand = nn.Conv2d(cin, hidden, 1, {bias = false})
    self.expand_bn = bn(hidden, momentum)
  end
  if stride == 2 then self.pad = nn.ZeroPad2d{0, 1, 0, 1} end
  self.depthwise = nn.Conv2d(hidden, hidden, 3, {stride = stride, padding = stride == 1 and 1 or 0,
                                                 groups = hidden, bias = false})
  self.depthwise_bn = bn(hidden, momentum)
  self.project = nn.Conv2d(hidden, cout, 1, {bias = false})
  self.project_bn = bn(cout, momentum)
end

-- x is (B,cin,H,W) -> (B,cout,H/stride,W/stride)
function Block:forward(x)
  local y = x
  if self.expand then y = F.relu6(conv_bn(self.expand, self.expand_bn, y)) end
  if self.pad then y = self.pad(y) end
  y = F.relu6(conv_bn(self.depthwise, self.depthwise_bn, y))
  y = conv_bn(self.project, self.project_bn, y)        -- linear bottleneck: no activation
  if self.residual then y = y + x end
  return y
end

local MobileNetV2 = nn.Module:extend("MobileNetV2")
MobileNetV2.Block = Block
MobileNetV2.feature_dim = 1280
MobileNetV2.n_blocks = 17

function MobileNetV2:__init(opts)
  opts = opts or {}
  local momentum = opts.bn_momentum or 0.1
  self.pad = nn.ZeroPad2d{0, 1, 0, 1}
  self.conv1 = nn.Conv2d(3, 32, 3, {stride = 2, bias = false})
  self.bn1 = bn(32, momentum)
  local cin, i = 32, 0
  for _, st in ipairs(STAGES) do
    local t, c, n, s = table.unpack(st)
    for r = 1, n do
      self["block" .. i] = Block(cin, c, r == 1 and s or 1, t, momentum)
      cin, i = c, i + 1
    end
  end
  self.conv_last = nn.Conv2d(cin, MobileNetV2.feature_dim, 1, {bias = false})
  self.bn_last = bn(MobileNetV2.feature_dim, momentum)
  self.fc = opts.head or nn.Linear(MobileNetV2.feature_dim, opts.num_classes or 1000)
end

-- (B,3,H,W) -> (B,1280) pooled features
function MobileNetV2:features(x)
  x = F.relu6(conv_bn(self.conv1, self.bn1, self.pad(x)))
  for i = 0, MobileNetV2.n_blocks - 1 do x = self["block" .. i](x) end
  x = F.relu6(conv_bn(self.conv_last, self.bn_last, x))
  return x:mean(4):mean(3)                 -- global average pool, flattened
end

function MobileNetV2:forward(x)
  return self.fc(self:features(x))
end

------------------------------------------------------------ Keras weights

-- fmd module path -> Keras layer name, for every backbone layer with weights
function MobileNetV2.keras_names()
  local map = {conv1 = "Conv1", bn1 = "bn_Conv1", conv_last = "Conv_1", bn_last = "Conv_1_bn"}
  for i = 0, MobileNetV2.n_blocks - 1 do
    local k = i == 0 and "expanded_conv" or ("block_" .. i)
    local p = "block" .. i .. "."
    if i > 0 then map[p .. "expand"], map[p .. "expand_bn"] = k .. "_expand", k .. "_expand_BN" end
    map[p .. "depthwise"], map[p .. "depthwise_bn"] = k .. "_depthwise", k .. "_depthwise_BN"
    map[p .. "project"], map[p .. "project_bn"] = k .. "_project", k .. "_project_BN"
  end
  return map
end

-- the Keras model's settings that fmd's forward builds in, checked rather
-- than trusted: BatchNorm eps, ReLU6, the bottom/right zero padding, strides
local function check_keras(m)
  local keras = require "fmd.keras"
  local n = 0
  for _, layer in ipairs(m.layers) do
    local name, class = layer.name, layer.class
    if class == "BatchNormalization" then
      keras.check_config(m, name, {epsilon = EPS})
    elseif class == "ReLU" then
      keras.check_config(m, name, {max_value = 6})
    elseif class == "ZeroPadding2D" then
      keras.check_config(m, name, {padding = {{0, 1}, {0, 1}}})
      n = n + 1
    elseif class == "DepthwiseConv2D" then
      local s = layer.config.strides and layer.config.strides[1]
      keras.check_config(m, name, {padding = s == 2 and "valid" or "same"})
    end
  end
  if n ~= 5 then error(("%s: %d ZeroPadding2D layers, MobileNetV2 has 5 (the stem and four stride-2 blocks)")
    :format(m.path, n), 0) end
end

-- copies the backbone of Keras model m (fmd.keras.load) into this model;
-- returns the names of the Keras layers with weights it did not use (the
-- head). Everything is checked before anything is copied.
function MobileNetV2:load_keras(m)
  local keras = require "fmd.keras"
  check_keras(m)
  local map = MobileNetV2.keras_names()
  for path, lname in pairs(map) do
    local conv = path:match("^(block%d+)%.depthwise$")
    if conv then keras.check_config(m, lname, {strides = {self[conv].stride, self[conv].stride}}) end
  end
  local sd = keras.state_dict(m, map, {partial = true})
  for k in pairs(self:state_dict()) do
    if not k:match("^fc%.") and not sd[k] then
      error(("%s: no weights for %s (from Keras layer %s)"):format(m.path, k, map[k:match("^(.*)%.[^.]+$")]), 0)
    end
  end
  self:load_state_dict(sd, false)   -- fc is not in sd; shapes are checked
  local used, seen, rest = {}, {}, {}
  for _, lname in pairs(map) do used[lname] = true end
  for _, w in ipairs(m.names) do
    local l = w:match("^(.*)/[^/]*$")
    if not used[l] and not seen[l] then seen[l] = true; rest[#rest + 1] = l end
  end
  return rest
end

return MobileNetV2
