-- TinyFaceDetector, the face finder of face-api.js (@vladmandic/face-api
-- 1.7.15, src/tinyYolov2/TinyYolov2Base.ts runMobilenet with
-- TinyFaceDetector's config), rebuilt from fmd.nn modules so that its
-- trained weights (a TensorFlow.js manifest, fetched by
-- scripts/fetch_weights.lua) run in fmd. A YOLOv2-style detector with one
-- class: the input (B,3,S,S), S a multiple of 32 (416 by default), gives a
-- (B,25,S/32,S/32) grid: for each cell, 5 anchors x (tx, ty, tw, th, score
-- logit), channel = 5 * (anchor - 1) + k. fmd.detect turns that into boxes.
-- 193,321 parameters (one uint8 each in the package). It is not one of the
-- trainable 2-class models (models.names(), which train.lua offers, leaves
-- it out), but models.load_model("TinyFaceDetector") builds it.
--
--   local m = require("fmd.models").load_model("TinyFaceDetector")
--   m:load_tfjs(require("fmd.weights").path("face-api", "model/tiny_face_detector_model-weights_manifest.json"))
local nn = require "fmd.nn"
local F = require "fmd.nn.functional"
local C = require "fmd.core"

local TinyFaceDetector = nn.Module:extend("TinyFaceDetector")

-- the package's constants (src/tinyFaceDetector/const.ts): anchor widths and
-- heights in grid cells, the mean RGB (0..255) taken from the input
TinyFaceDetector.ANCHORS = {{1.603231, 2.094468}, {6.041143, 7.080126}, {2.882459, 3.518061},
                            {4.266906, 5.178857}, {9.041765, 10.66308}}
TinyFaceDetector.MEAN_RGB = {117.001, 114.697, 97.404}
TinyFaceDetector.IOU_THRESHOLD = 0.4

-- leaky ReLU with slope 0.1, the package's only nonlinearity
local function leaky(x) return x:maximum(x * 0.1) end

-- TensorFlow's 'same' 2x2 max-pool: where the window runs off the bottom or
-- right edge the map is padded there (-inf), so 207 pools to 104 with
-- stride 2 and 13 stays 13 with stride 1. (PyTorch-style padding is
-- symmetric and would shift every window by one.)
local function max_pool_same(x, stride)
  local B, Ch, H, W = x:size(1), x:size(2), x:size(3), x:size(4)
  local ph, pw = stride == 1 and 1 or H % 2, stride == 1 and 1 or W % 2
  if ph + pw > 0 then   -- the image kernel pads a (B*C,H,W) stack of planes
    x = C.image_crop(x:contiguous():view(B * Ch, H, W), 1, 1, H + ph, W + pw, -math.huge):view(B, Ch, H + ph, W + pw)
  end
  return F.max_pool2d(x, 2, stride)
end

-- a depthwise-separable stage: 3x3 depthwise conv (zero padding 1, no
-- bias), 1x1 pointwise conv with bias, leaky ReLU
local Separable = nn.Module:extend("TinyFaceDetector.Separable")

function Separable:__init(cin, cout)
  self.depthwise = nn.Conv2d(cin, cin, 3, {padding = 1, groups = cin, bias = false})
  self.pointwise = nn.Conv2d(cin, cout, 1)
end

function Separable:forward(x) return leaky(self.pointwise(self.depthwise(x))) end

function TinyFaceDetector:__init()
  self.conv0 = nn.Conv2d(3, 16, 3)          -- 'valid': (B,16,S-2,S-2)
  local widths = {16, 32, 64, 128, 256, 512}
  for i = 1, 5 do self["conv" .. i] = Separable(widths[i], widths[i + 1]) end
  self.conv8 = nn.Conv2d(512, 25, 1)       -- 5 anchors x (tx, ty, tw, th, score)
end

-- x is (B,3,S,S): RGB in 0..255 minus MEAN_RGB, divided by 255 (fmd.detect
-- prepares it); returns (B,25,S/32,S/32)
function TinyFaceDetector:forward(x)
  x = max_pool_same(leaky(self.conv0(x)), 2)   -- 414 -> 207 (S = 416)
  x = max_pool_same(self.conv1(x), 2)          -- 104
  x = max_pool_same(self.conv2(x), 2)          -- 52
  x = max_pool_same(self.conv3(x), 2)          -- 26
  x = max_pool_same(self.conv4(x), 2)          -- 13
  x = max_pool_same(self.conv5(x), 1)          -- 13
  return self.conv8(x)
end

-- the package's tensor names -> this module's, with TensorFlow's layouts
-- turned into fmd's: conv kernels (kh,kw,in,out) -> (out,in,kh,kw),
-- depthwise kernels (kh,kw,in,1) -> (in,1,kh,kw)
local function conv(t) return t:permute(4, 3, 1, 2):contiguous() end
local function depthwise(t) return t:permute(3, 4, 1, 2):contiguous() end

function TinyFaceDetector.state_from_tfjs(tensors, where)
  local function get(name)
    return tensors[name] or error(("%s: no tensor '%s' (not the TinyFaceDetector weights?)")
      :format(where or "TinyFaceDetector weights", name), 0)
  end
  local sd = {["conv0.weight"] = conv(get("conv0/filters")), ["conv0.bias"] = get("conv0/bias"),
              ["conv8.weight"] = conv(get("conv8/filters")), ["conv8.bias"] = get("conv8/bias")}
  for i = 1, 5 do
    local p = "conv" .. i
    sd[p .. ".depthwise.weight"] = depthwise(get(p .. "/depthwise_filter"))
    sd[p .. ".pointwise.weight"] = conv(get(p .. "/pointwise_filter"))
    sd[p .. ".pointwise.bias"] = get(p .. "/bias")
  end
  return sd
end

-- loads the package's weights manifest (fmd.tfjs); every tensor must fit
function TinyFaceDetector:load_tfjs(manifest_path)
  local tensors = require("fmd.tfjs").load(manifest_path)
  local ok, err = pcall(self.load_state_dict, self, TinyFaceDetector.state_from_tfjs(tensors, manifest_path))
  if not ok then error(("%s: %s"):format(manifest_path, tostring(err)), 0) end
  return self:eval()
end

return TinyFaceDetector
