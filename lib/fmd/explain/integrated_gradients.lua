-- Integrated Gradients (Sundararajan et al. 2017): (x - baseline) times the
-- mean input gradient along the straight path from the baseline to x,
-- midpoint Riemann sum over opts.steps (default 32) points. One batch of
-- images per step, so memory stays that of one forward/backward.
-- opts: baseline (number or (B,C,H,W) tensor, default 0), steps, reduce
-- (default "absmax"; "none" gives Captum's per-channel attributions).
-- The target is fixed on x ("pred" = the prediction for x).
local fmd = require "fmd"
local util = require "fmd.explain.util"

-- images is (B,C,H,W)
return function(model, images, target, opts)
  opts = opts or {}
  util.check_images("integrated_gradients", images)
  local steps = opts.steps or 32
  if math.type(steps) ~= "integer" or steps < 1 then error("explain.integrated_gradients: steps must be an integer >= 1", 2) end
  local base = opts.baseline or 0
  if type(base) == "number" then base = fmd.full(images:size(), base) end
  if fmd.shape_str(base) ~= fmd.shape_str(images) then
    error(("explain.integrated_gradients: baseline %s does not match images %s"):format(fmd.shape_str(base),
      fmd.shape_str(images)), 2)
  end
  local delta = images - base
  return util.with_model(model, function()
    local logits = fmd.no_grad(function() return model(images) end)
    local targets = util.targets("integrated_gradients", target, logits)
    local sum
    for k = 1, steps do
      local g = util.input_gradient("integrated_gradients", model, base + delta * ((k - 0.5) / steps), nil, targets)
      sum = sum and (sum + g) or g
    end
    return util.reduce("integrated_gradients", delta * sum / steps, opts.reduce):detach()
  end)
end
