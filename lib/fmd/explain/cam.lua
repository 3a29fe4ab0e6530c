-- Class activation maps at a layer: the layer's output A (B,K,h,w) and the
-- gradient G of the target logit with respect to it, combined as
--   gradcam   (Selvaraju et al. 2017): w_k = mean over space of G_k; relu(sum_k w_k A_k)
--   gradcampp (Chattopadhay et al. 2018), as pytorch-grad-cam computes it:
--             a = G^2 / (2 G^2 + sum_space(A) G^3 + 1e-7) where G ~= 0, else 0;
--             w_k = sum over space of a * relu(G); relu(sum_k w_k A_k)
--   layercam  (Jiang et al. 2021): relu(sum_k relu(G_k) * A_k)
--   hirescam  (Draelos & Carin 2020): relu(sum_k G_k * A_k)
-- then bilinear upsampling to the image size and per-image min-max.
-- Returns maps (B,H,W) in [0, 1] and the raw map (B,h,w) before
-- upsampling. opts.layer: a dotted module name (default "conv3"; the
-- module's output, as pytorch-grad-cam hooks it: for XceptionBased, the
-- SeparableConv 1024->1536 before its BatchNorm and ReLU).
local fmd = require "fmd"
local util = require "fmd.explain.util"

local EPS = 1e-7

local combine = {}
-- A, G are (B,K,h,w); each returns the (B,h,w) map before ReLU
function combine.gradcam(A, G) return (A * G:mean(4, true):mean(3, true)):sum(2) end
function combine.gradcampp(A, G)
  local g2 = G * G
  local g3 = g2 * G
  local sumA = A:sum(4, true):sum(3, true)               -- (B,K,1,1)
  local aij = g2 / (g2 * 2 + sumA * g3 + EPS) * G:ne(0)
  local w = (aij * G:relu()):sum(4, true):sum(3, true)  -- (B,K,1,1)
  return (A * w):sum(2)
end
function combine.layercam(A, G) return (A * G:relu()):sum(2) end
function combine.hirescam(A, G) return (A * G):sum(2) end

local function make(name)
  -- images is (B,C,H,W)
  return function(model, images, target, opts)
    opts = opts or {}
    util.check_images(name, images)
    local layer = util.find_layer(name, model, opts.layer or "conv3")
    local act
    local handle = layer:register_forward_hook(function(_, _, out)
      if not fmd.is_tensor(out) then error(("explain.%s: layer output is a %s, not a tensor"):format(name, type(out)), 0) end
      out:retain_grad()
      act = out
    end)
    return util.with_model(model, function()
      util.input_gradient(name, model, images, target)
      if not act or not act.grad then
        error(("explain.%s: layer '%s' did not take part in the forward pass"):format(name, opts.layer or "conv3"), 0)
      end
      if act:dim() ~= 4 then
        error(("explain.%s: layer '%s' gives %s, a CAM needs (B,K,h,w)"):format(name, opts.layer or "conv3",
          fmd.shape_str(act)), 0)
      end
      return fmd.no_grad(function()
        local raw = combine[name](act:detach(), act.grad):relu()
        local maps = util.normalize(util.upsample(raw, images:size(3), images:size(4)))
        return maps, raw
      end)
    end, function() handle.remove(); act = nil end)
  end
end

return {gradcam = make("gradcam"), gradcampp = make("gradcampp"), layercam = make("layercam"),
        hirescam = make("hirescam")}
