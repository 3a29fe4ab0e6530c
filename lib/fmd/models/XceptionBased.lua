-- XceptionBased: the course's Xception with the ImageNet classifier (fc)
-- replaced by an MLP head 2048 -> 1000 -> 256 -> 64 -> 2 (ReLU between).
-- 23,128,786 parameters.
--
-- XceptionBased(opts): opts.pretrained = path of ImageNet Xception weights
-- (xception-c0a72b38.pth.tar, xception-43020ad28.pth, or a .safetensors
-- export), loaded into the backbone before fc is replaced. Without it, the
-- weights are looked for at the default places (fmd.weights.find_xception);
-- when none is found the backbone starts from random initialisation.
-- m.init_weights is the file loaded (nil from random initialisation); the
-- trainer records it in the log and checkpoint, for the report.
local nn = require "fmd.nn"
local models = require "fmd.models"
local Xception = models.class("Xception")

local XceptionBased = Xception:extend("XceptionBased")
-- what --pretrained gives this model (scripts/train.lua)
XceptionBased.PRETRAINED = "ImageNet Xception weights (.pth, .pth.tar or .safetensors)"

function XceptionBased:__init(opts)
  opts = opts or {}
  Xception.__init(self, opts)
  local path = opts.pretrained or (opts.pretrained ~= false and require("fmd.weights").find_xception())
  if path then
    models.load_xception_weights(self, path)
    self.init_weights = path
    print(("XceptionBased: ImageNet weights loaded from %s"):format(path))
  elseif opts.pretrained ~= false and not opts.quiet then
    print("XceptionBased: no ImageNet Xception weights found (pass --pretrained PATH or put "
      .. "xception-c0a72b38.pth.tar in weights/); starting from random initialisation")
  end
  local c4 = self.feature_dim
  self.fc = nn.Sequential(
    nn.Linear(c4, 1000), nn.ReLU(),
    nn.Linear(1000, 256), nn.ReLU(),
    nn.Linear(256, 64), nn.ReLU(),
    nn.Linear(64, 2))
end

return XceptionBased
