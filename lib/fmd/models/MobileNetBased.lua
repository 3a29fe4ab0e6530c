-- MobileNetBased: MobileNetV2 (models/MobileNetV2.lua) with the classifier
-- replaced by an MLP head 1280 -> 256 -> 2 (ReLU between), the pretrained
-- counterpart of XceptionBased that fmd can actually load: no installable
-- package ships ImageNet Xception weights, but nsfwjs@4.4.0 (MIT) ships a
-- Keras MobileNetV2 built from the Keras ImageNet weights. Its blocks 0-10
-- were kept frozen at ImageNet's values, blocks 11-16 and the last conv were
-- then fine-tuned on another task (five image-content classes), so it is an
-- "ImageNet-initialised MobileNetV2 from nsfwjs, upper blocks fine-tuned on
-- another task", not plain ImageNet weights. 2,552,322 parameters.
--
-- Input: 224x224 in [0, 1], no normalisation (the statistics its BatchNorms
-- hold), trained with horizontal flips only: the `input` field below, which
-- the data pipeline asks (fmd.models.input). Grad-CAM: layer conv_last.
--
-- MobileNetBased(opts): opts.pretrained = the model.min.js (or model.json)
-- of a Keras MobileNetV2 to start from; nil looks for nsfwjs' in the weights
-- cache (fmd.weights; fetched by scripts/fetch_weights.lua), and starts from
-- random initialisation when it is not there; "none" or false: random
-- initialisation (false is also what loading a checkpoint passes).
-- m.init_weights is the file loaded (nil from random initialisation); the
-- trainer records it in the log and checkpoint (`init`), as XceptionBased's.
-- opts.bn_momentum (0.1, PyTorch's convention).
local nn = require "fmd.nn"
local models = require "fmd.models"
local MobileNetV2 = models.class("MobileNetV2")

local MobileNetBased = MobileNetV2:extend("MobileNetBased")

MobileNetBased.input = {size = 224, crop_padding = 0}
-- what --pretrained gives this model (scripts/train.lua)
MobileNetBased.PRETRAINED = "a Keras MobileNetV2 model.min.js or model.json (default: nsfwjs' from the weights cache; "
  .. "'none' trains from scratch)"
MobileNetBased.WEIGHTS = {package = "nsfwjs", file = "dist/models/mobilenet_v2/model.min.js"}
MobileNetBased.DESCRIPTION = "ImageNet-initialised MobileNetV2 from nsfwjs (upper blocks fine-tuned on another task)"

function MobileNetBased:__init(opts)
  opts = opts or {}
  local dim = MobileNetV2.feature_dim
  MobileNetV2.__init(self, {bn_momentum = opts.bn_momentum,
    head = nn.Sequential(nn.Linear(dim, 256), nn.ReLU(), nn.Linear(256, 2))})
  local path = opts.pretrained
  if path == "none" or path == false then return end
  local weights = require "fmd.weights"
  local w = MobileNetBased.WEIGHTS
  if path == nil and weights.have(w.package) then path = weights.path(w.package, w.file) end
  if path then
    self:load_keras(require("fmd.keras").load(path))
    self.init_weights = path
    if not opts.quiet then print(("MobileNetBased: %s loaded from %s"):format(MobileNetBased.DESCRIPTION, path)) end
  elseif not opts.quiet then
    print(("MobileNetBased: no pretrained weights (%s are not in %s; fetch them with: %s %s); "
      .. "training MobileNetV2 from scratch (random initialisation)")
      :format(w.package, weights.dir(), weights.FETCH_COMMAND, w.package))
  end
end

return MobileNetBased
