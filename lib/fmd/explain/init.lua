-- fmd.explain: attribution maps, one interface for every method (as
-- pytorch-grad-cam and Captum):
--
--   local explain = require "fmd.explain"
--   local maps = explain.saliency(model, images, target)              -- (B,H,W)
--   local maps, raw = explain.gradcam(model, images, "pred", {layer = "conv3"})
--
-- images is (B,3,H,W); target is a class id (0 = real, 1 = fake, the
-- course's labels), a per-image tensor or array of ids, or "pred" (the
-- predicted class; the default). Maps come back without a graph; CAMs also
-- return the raw low-resolution map (B,h,w). The model runs in eval mode
-- for the call (its mode is restored), its parameters receive no gradient,
-- and no hook or graph is left behind, also when the call fails.
-- One file per method: saliency, smoothgrad, integrated_gradients (gradient
-- methods) and gradcam, gradcampp, layercam, hirescam (CAMs, cam.lua).
local util = require "fmd.explain.util"

local explain = {}
explain.saliency = require "fmd.explain.saliency"
explain.smoothgrad = require "fmd.explain.smoothgrad"
explain.integrated_gradients = require "fmd.explain.integrated_gradients"
local cam = require "fmd.explain.cam"
explain.gradcam, explain.gradcampp, explain.layercam, explain.hirescam =
  cam.gradcam, cam.gradcampp, cam.layercam, cam.hirescam

-- the course's compute_gradient_saliency_maps(samples, true_labels, model)
function explain.compute_gradient_saliency_maps(samples, true_labels, model)
  return explain.saliency(model, samples, true_labels)
end

-- deletion/insertion curves of maps (faithfulness.lua; scripts/explain_eval.lua)
explain.faithfulness = require "fmd.explain.faithfulness"

explain.normalize = util.normalize
-- display scaling of every heat-map figure: min -> 0, 98th percentile -> 1
explain.clip_percentile = util.clip_percentile
explain.DISPLAY_PERCENTILE = util.DISPLAY_PERCENTILE
explain.upsample = util.upsample
explain.METHODS = {"saliency", "smoothgrad", "integrated_gradients", "gradcam", "gradcampp", "layercam", "hirescam"}

return explain
