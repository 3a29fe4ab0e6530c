-- SmoothGrad (Smilkov et al. 2017): the input gradient averaged over n
-- noisy copies x + N(0, (sigma * (max(x) - min(x)))^2) per image, then
-- reduced like saliency. opts: n (default 25), sigma (default 0.15, a
-- fraction of each image's value range), noise (a list of n (B,C,H,W)
-- standard-normal tensors, for reproducible tests), reduce.
-- The target is fixed on the clean images ("pred" = their prediction).
local fmd = require "fmd"
local util = require "fmd.explain.util"

-- images is (B,C,H,W)
return function(model, images, target, opts)
  opts = opts or {}
  util.check_images("smoothgrad", images)
  local n, sigma = opts.noise and #opts.noise or (opts.n or 25), opts.sigma or 0.15
  if math.type(n) ~= "integer" or n < 1 then error("explain.smoothgrad: n must be an integer >= 1", 2) end
  local B = images:size(1)
  local flat = images:reshape(B, -1)
  local scale = ((flat:max(2) - flat:min(2)) * sigma):view(B, 1, 1, 1)   -- (B,1,1,1)
  return util.with_model(model, function()
    local logits = fmd.no_grad(function() return model(images) end)
    local targets = util.targets("smoothgrad", target, logits)
    local sum
    for k = 1, n do
      local eps = opts.noise and opts.noise[k] or fmd.randn(images:size())
      local g = util.input_gradient("smoothgrad", model, images + eps * scale, nil, targets)
      sum = sum and (sum + g) or g
    end
    return util.reduce("smoothgrad", sum / n, opts.reduce):detach()
  end)
end
