-- fmd.image: composing images for figures out of engine tensor ops
-- (colour maps, alpha blending, grids). Images are (3,H,W) in [0, 1];
-- maps are (H,W) in [0, 1].
--
--   local image = require "fmd.image"
--   local heat = image.colormap(map, "jet")          -- (3,H,W)
--   local over = image.blend(heat, img, 0.5)          -- 0.5 heat + 0.5 img
--   local sheet = image.grid({a, b, c, d}, 2)         -- 2 columns
local fmd = require "fmd"
local image = {}

local function is_map(t) return fmd.is_tensor(t) and t:dim() == 2 end

-- map (H,W) in [0, 1] (values outside are clamped) -> (3,H,W).
-- "jet": the piecewise-linear blue-cyan-yellow-red map of OpenCV's
-- COLORMAP_JET (what pytorch-grad-cam draws): channel c = clamp(1.5 - |4v - k|)
-- with k = 3 (red), 2 (green), 1 (blue). "gray": the value in all channels.
function image.colormap(map, name)
  if not is_map(map) then
    error(("image.colormap: expected an (H,W) map, got %s"):format(fmd.is_tensor(map) and fmd.shape_str(map) or type(map)), 2)
  end
  local v = map:clamp(0, 1)
  local H, W = v:size(1), v:size(2)
  local out = fmd.empty(3, H, W)
  name = name or "jet"
  if name == "jet" then
    local v4 = v * 4
    for c, k in ipairs{3, 2, 1} do out[c] = ((v4 - k):abs() * -1 + 1.5):clamp(0, 1) end
  elseif name == "gray" then
    for c = 1, 3 do out[c] = v end
  else
    error(("image.colormap: unknown colour map '%s' (jet or gray)"):format(tostring(name)), 2)
  end
  return out
end

-- alpha * a + (1 - alpha) * b for images of one shape
function image.blend(a, b, alpha)
  if not (fmd.is_tensor(a) and fmd.is_tensor(b)) or fmd.shape_str(a) ~= fmd.shape_str(b) then
    error(("image.blend: images must have one shape, got %s and %s"):format(
      fmd.is_tensor(a) and fmd.shape_str(a) or type(a), fmd.is_tensor(b) and fmd.shape_str(b) or type(b)), 2)
  end
  if type(alpha) ~= "number" or alpha < 0 or alpha > 1 then
    error(("image.blend: alpha must be a number in [0, 1], got %s"):format(tostring(alpha)), 2)
  end
  return a * alpha + b * (1 - alpha)
end

-- (3,H,W) image of any (H,W) map or (1,H,W)/(3,H,W) image, for display
function image.rgb(t)
  if is_map(t) then return image.colormap(t, "gray") end
  if fmd.is_tensor(t) and t:dim() == 3 and t:size(1) == 1 then return image.colormap(t[1], "gray") end
  if fmd.is_tensor(t) and t:dim() == 3 and t:size(1) == 3 then return t:clamp(0, 1) end
  error(("image: expected an (H,W) map or a (1|3,H,W) image, got %s"):format(fmd.is_tensor(t) and fmd.shape_str(t) or type(t)), 2)
end

-- images (a list of same-size (3,H,W)) -> one (3, rows*(H+pad)-pad, cols*(W+pad)-pad)
-- sheet, row by row; gaps and empty cells filled with `fill` (default 1, white)
function image.grid(images, cols, pad, fill)
  if type(images) ~= "table" or #images == 0 then error("image.grid: expected a non-empty list of images", 2) end
  pad, fill = pad or 2, fill or 1
  cols = math.min(cols or math.ceil(math.sqrt(#images)), #images)
  local first = image.rgb(images[1])
  local H, W = first:size(2), first:size(3)
  local rows = math.ceil(#images / cols)
  local out = fmd.full({3, rows * (H + pad) - pad, cols * (W + pad) - pad}, fill)
  for i, img in ipairs(images) do
    local t = image.rgb(img)
    if t:size(2) ~= H or t:size(3) ~= W then
      error(("image.grid: image %d is %s, image 1 is %s"):format(i, fmd.shape_str(t), fmd.shape_str(first)), 2)
    end
    local r, c = (i - 1) // cols, (i - 1) % cols
    out:narrow(2, r * (H + pad) + 1, H):narrow(3, c * (W + pad) + 1, W):copy(t)
  end
  return out
end

return image
