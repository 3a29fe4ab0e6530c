-- Vanilla gradient saliency (Simonyan et al. 2014), the course's saliency
-- map: |d target logit / d pixel|, max over colour channels -> (B,H,W).
-- opts.reduce: "absmax" (default), "sum", "abssum", "none" (B,C,H,W).
local util = require "fmd.explain.util"

-- images is (B,C,H,W)
return function(model, images, target, opts)
  opts = opts or {}
  util.check_images("saliency", images)
  return util.with_model(model, function()
    local g = util.input_gradient("saliency", model, images, target)
    return util.reduce("saliency", g, opts.reduce):detach()
  end)
end
