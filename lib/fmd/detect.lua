-- fmd.detect: faces in images, and the crops a deepfake detector scores.
--
--   local detect = require "fmd.detect"
--   local boxes = detect.faces("photo.jpg")            -- {{x=, y=, w=, h=, score=}, ...}
--   local all = detect.faces({img1, "b.png"}, {size = 608})   -- a list per image
--   local crop, info = detect.crop(img, boxes[1])      -- (3,256,256), normalised as the test split
--
-- The detector is face-api.js's TinyFaceDetector (lib/fmd/models/
-- TinyFaceDetector.lua) with the weights of @vladmandic/face-api 1.7.15
-- (scripts/fetch_weights.lua puts them in the weights cache). Pre- and
-- post-processing are the package's (src/tinyYolov2/TinyYolov2Base.ts,
-- src/dom/NetInput.ts): the image, RGB 0..255, is padded with zeros at the
-- bottom or right to a square, resized to size x size with TensorFlow's
-- bilinear resize, the mean RGB subtracted and divided by 255; each grid
-- cell's 5 anchors give a box (centre (col + sigmoid(tx)) / grid, size
-- exp(tw) * anchor / grid, in the resized square, corrected for the padding)
-- and a score sigmoid(s); boxes scoring above score_threshold go through
-- non-maximum suppression at IoU iou. Boxes are in the original image's
-- pixels (x, y the top-left corner; 0-based, so pixel (0,0)'s box starts
-- at 0) and may reach outside it. docs/detect.md has the details and the
-- agreement with the package's own JavaScript.
local fmd = require "fmd"
local C = require "fmd.core"
local weights = require "fmd.weights"
local transforms = require "fmd.transforms"

local detect = {}

detect.WEIGHTS_PACKAGE = "face-api"
detect.MANIFEST = "model/tiny_face_detector_model-weights_manifest.json"
-- the package's defaults (TinyYolov2Options, TinyFaceDetector's config)
detect.SIZE = 416
detect.SCORE_THRESHOLD = 0.5
detect.IOU = 0.4
-- crops: FaceForensics++'s margin around the box, the smallest face worth scoring
detect.MARGIN = 1.3
detect.MIN_FACE = 40

local model_cache
-- the detector with its weights (loaded once); an error naming the fetch
-- command when they are not in the cache
function detect.model()
  if not model_cache then
    local path = weights.path(detect.WEIGHTS_PACKAGE, detect.MANIFEST)
    model_cache = require("fmd.models").load_model("TinyFaceDetector"):load_tfjs(path)
  end
  return model_cache
end

-- whether the weights are in the cache (tests and scripts skip without them)
function detect.available() return weights.have(detect.WEIGHTS_PACKAGE) end

local function check_opts(opts, fn)
  opts = opts or {}
  if type(opts) ~= "table" then error(("%s: options must be a table, got %s"):format(fn, type(opts)), 3) end
  local size = opts.size or detect.SIZE
  if math.type(size) ~= "integer" or size < 32 or size % 32 ~= 0 then
    error(("%s: size must be a multiple of 32 (the grid is size/32), got %s"):format(fn, tostring(size)), 3)
  end
  local thr = opts.score_threshold or detect.SCORE_THRESHOLD
  if type(thr) ~= "number" or not (thr >= 0 and thr < 1) then
    error(("%s: score_threshold must be in [0, 1), got %s"):format(fn, tostring(thr)), 3)
  end
  local iou = opts.iou or detect.IOU
  if type(iou) ~= "number" or not (iou >= 0 and iou <= 1) then
    error(("%s: iou must be in [0, 1], got %s"):format(fn, tostring(iou)), 3)
  end
  local bs = opts.batch_size or 8
  if math.type(bs) ~= "integer" or bs < 1 then
    error(("%s: batch_size must be an integer >= 1, got %s"):format(fn, tostring(bs)), 3)
  end
  local sizes = opts.sizes or {size}
  if type(sizes) ~= "table" or #sizes == 0 then error(("%s: sizes must be a list of sizes"):format(fn), 3) end
  for _, s in ipairs(sizes) do
    if math.type(s) ~= "integer" or s < 32 or s % 32 ~= 0 then
      error(("%s: sizes must be multiples of 32 (the grid is size/32), got %s"):format(fn, tostring(s)), 3)
    end
  end
  return {size = size, sizes = sizes, score_threshold = thr, iou = iou, batch_size = bs, model = opts.model}
end

-- a (3,H,W) image in [0, 1] from a tensor ((3,H,W), (1,H,W) or (H,W)) or a path
local function rgb(img, fn)
  if type(img) == "string" then return fmd.load_image(img) end
  if not fmd.is_tensor(img) then error(("%s: expected an image tensor or a file path, got %s"):format(fn, type(img)), 3) end
  if img:dim() == 2 then img = img:unsqueeze(1) end
  if img:dim() ~= 3 or (img:size(1) ~= 3 and img:size(1) ~= 1) or img:numel() == 0 then
    error(("%s: expected a (3,H,W) image, got %s"):format(fn, fmd.shape_str(img)), 3)
  end
  if img:size(1) == 1 then img = img:expand(3, img:size(2), img:size(3)) end
  return img
end

-- the network's input for one image: (3,size,size)
function detect.prepare(img, size)
  img = rgb(img, "detect.prepare")
  size = size or detect.SIZE
  local H, W = img:size(2), img:size(3)
  local S = math.max(H, W)
  local sq = S == H and S == W and img or C.image_crop(img:contiguous(), 1, 1, S, S, 0)   -- zeros bottom/right
  local x = S == size and sq or C.image_resize_tf(sq, size, size)
  -- (255 v - mean) / 255 = v - mean / 255
  local m = require("fmd.models").class("TinyFaceDetector").MEAN_RGB
  return C.image_normalize(x, {m[1] / 255, m[2] / 255, m[3] / 255}, {1, 1, 1})
end

-- JavaScript's Math.round
local function js_round(v) return math.floor(v + 0.5) end
local function sigmoid(v) return 1 / (1 + math.exp(-v)) end

-- intersection over union of two {x, y, w, h} boxes
function detect.iou(a, b)
  local w = math.max(0, math.min(a.x + a.w, b.x + b.w) - math.max(a.x, b.x))
  local h = math.max(0, math.min(a.y + a.h, b.y + b.h) - math.max(a.y, b.y))
  local inter = w * h
  return inter / (a.w * a.h + b.w * b.h - inter)
end

-- greedy non-maximum suppression as the package's: highest score first
-- (equal scores: the later candidate first), drop every box whose IoU with
-- a kept one exceeds iou; returns the kept boxes, best first
function detect.nms(boxes, iou)
  local order = {}
  for i = 1, #boxes do order[i] = i end
  table.sort(order, function(a, b)
    if boxes[a].score ~= boxes[b].score then return boxes[a].score > boxes[b].score end
    return a > b
  end)
  local kept, gone = {}, {}
  for k, i in ipairs(order) do
    if not gone[i] then
      kept[#kept + 1] = boxes[i]
      for l = k + 1, #order do
        local j = order[l]
        if not gone[j] and detect.iou(boxes[i], boxes[j]) > iou then gone[j] = true end
      end
    end
  end
  return kept
end

-- the boxes scoring above the threshold, in the pixels of the H x W image,
-- from the network's output out (25,g,g) at size o.size
local function candidates(out, H, W, o, cand)
  local g = out:size(2)
  local v = out:contiguous():flat()
  local scale = o.size / math.max(H, W)
  -- the package measures the resized image in whole pixels
  local cx, cy = o.size / js_round(W * scale), o.size / js_round(H * scale)
  local anchors = require("fmd.models").class("TinyFaceDetector").ANCHORS
  for row = 0, g - 1 do
    for col = 0, g - 1 do
      for a = 0, 4 do
        local function at(k) return v[((a * 5 + k) * g + row) * g + col + 1] end
        local score = sigmoid(at(4))
        if score > o.score_threshold then
          local bw = math.exp(at(2)) * anchors[a + 1][1] / g * cx
          local bh = math.exp(at(3)) * anchors[a + 1][2] / g * cy
          local x = (col + sigmoid(at(0))) / g * cx - bw / 2
          local y = (row + sigmoid(at(1))) / g * cy - bh / 2
          -- x, y, bw, bh are fractions of W and H
          cand[#cand + 1] = {x = x * W, y = y * H, w = bw * W, h = bh * H, score = score}
        end
      end
    end
  end
  return cand
end

-- the boxes of one image from the network's output out (25,g,g) for an
-- image of H x W pixels; opts as detect.faces (size: the one it ran at)
function detect.decode(out, H, W, opts)
  local o = check_opts(opts, "detect.decode")
  return detect.nms(candidates(out, H, W, o, {}), o.iou)
end

-- boxes of an image and boxes of its mirror image (in the mirror's
-- pixels, width W): each box's score becomes the mean of its own and that
-- of the mirror's box that best matches it (IoU >= 0.5 once mirrored back;
-- 0 when none). A face scores alike both ways round; many textures the
-- detector takes for faces do not.
function detect.merge_flip(boxes, mirrored, W)
  local back = {}
  for i, b in ipairs(mirrored) do back[i] = {x = W - b.x - b.w, y = b.y, w = b.w, h = b.h, score = b.score} end
  local out = {}
  for i, b in ipairs(boxes) do
    local best, m = 0.5, 0
    for _, f in ipairs(back) do
      local v = detect.iou(b, f)
      if v >= best then best, m = v, f.score end
    end
    out[i] = {x = b.x, y = b.y, w = b.w, h = b.h, score = (b.score + m) / 2}
  end
  return out
end

-- detect.faces(image, opts) -> boxes; detect.faces({image, ...}, opts) ->
-- a list of boxes per image. image: a (3,H,W) tensor in [0, 1] or a path.
-- opts: size (multiple of 32, default 416), score_threshold (0.5), iou
-- (0.4), batch_size (8 images per forward pass), model (another detector),
-- sizes (a list of sizes instead of size: the boxes of every size go
-- through one NMS, so small faces are found at a large size and large ones
-- at a small size), flip (also run the mirror image; scores are then
-- detect.merge_flip's means). docs/detect.md measures these on big scenes.
function detect.faces(images, opts)
  local o = check_opts(opts, "detect.faces")
  local single = type(images) == "string" or fmd.is_tensor(images)
  if single then images = {images}
  elseif type(images) ~= "table" then
    error(("detect.faces: expected an image (tensor or path) or a list of them, got %s"):format(type(images)), 2)
  end
  local flip = opts and opts.flip
  -- a mean above the threshold needs both scores above 2 t - 1
  local raw = {score_threshold = flip and math.max(0, 2 * o.score_threshold - 1) or o.score_threshold}
  local model
  local results = {}
  fmd.no_grad(function()
    for first = 1, #images, o.batch_size do
      local imgs, dims = {}, {}
      for i = first, math.min(first + o.batch_size - 1, #images) do
        local img = rgb(images[i], "detect.faces")
        imgs[#imgs + 1] = flip and img:contiguous() or img
        dims[#dims + 1] = {img:size(2), img:size(3)}
        if flip then imgs[#imgs + 1] = C.image_hflip(imgs[#imgs]) end
      end
      model = model or o.model or detect.model()   -- after the first images are read: their errors first
      local n, cand = #dims, {}
      for k = 1, n do cand[k] = {} end
      for _, size in ipairs(o.sizes) do
        local x, labels = {}, {}
        for k, img in ipairs(imgs) do x[k], labels[k] = detect.prepare(img, size), 0 end
        local out = model(fmd.stack_batch(x, labels))
        raw.size = size
        for k, d in ipairs(dims) do
          if flip then
            local boxes = candidates(out[2 * k - 1], d[1], d[2], raw, {})
            local mirrored = candidates(out[2 * k], d[1], d[2], raw, {})
            for _, b in ipairs(detect.merge_flip(boxes, mirrored, d[2])) do
              if b.score > o.score_threshold then table.insert(cand[k], b) end
            end
          else
            candidates(out[k], d[1], d[2], raw, cand[k])
          end
        end
      end
      for k = 1, n do results[first + k - 1] = detect.nms(cand[k], o.iou) end
    end
  end)
  return single and results[1] or results
end

------------------------------------------------------------ crops

-- the square a crop takes: side = margin x the box's longer side, centred
-- on the box; 0-based pixel position of its top-left corner
function detect.crop_square(box, margin)
  margin = margin or detect.MARGIN
  local side = math.max(1, js_round(math.max(box.w, box.h) * margin))
  local left = js_round(box.x + box.w / 2 - side / 2)
  local top = js_round(box.y + box.h / 2 - side / 2)
  return left, top, side
end

-- the most pixels a square crop is cut at before its resize (2048^2 x 3
-- floats, 48 MB); a bigger square is cut from a shrunken image
detect.MAX_CROP_SIDE = 2048

-- detect.crop(image, box, opts) -> crop, info. A square of margin (1.3) x
-- the box's longer side around the box's centre, zeros where it leaves
-- the image, then opts.transform (default: the test split's,
-- transforms.course("test"): resize to 256 x 256, normalise); transform =
-- false keeps the square crop in [0, 1]. info: {x, y, side} (the square in
-- image pixels), small = the box's longer side is under opts.min_face (40).
function detect.crop(image, box, opts)
  opts = opts or {}
  if type(box) ~= "table" or type(box.x) ~= "number" or type(box.y) ~= "number" or type(box.w) ~= "number"
     or type(box.h) ~= "number" or not (box.w > 0 and box.h > 0) or box.x ~= box.x or box.y ~= box.y
     or box.w == math.huge or box.h == math.huge or math.abs(box.x) == math.huge or math.abs(box.y) == math.huge then
    error("detect.crop: box must be {x, y, w, h} with finite numbers and w, h > 0", 2)
  end
  local margin = opts.margin or detect.MARGIN
  if type(margin) ~= "number" or not (margin > 0 and margin < math.huge) then
    error(("detect.crop: margin must be a number > 0, got %s"):format(tostring(margin)), 2)
  end
  local img = rgb(image, "detect.crop")
  local min_face = opts.min_face or detect.MIN_FACE
  local left, top, side = detect.crop_square(box, margin)
  local info = {x = left, y = top, side = side, small = math.max(box.w, box.h) < min_face}
  local tf = opts.transform
  if tf == nil then tf = transforms.course("test") end
  local H, W = img:size(2), img:size(3)
  local crop
  if side <= detect.MAX_CROP_SIDE then
    crop = C.image_crop(img:contiguous(), top + 1, left + 1, side, side, 0)
  else
    -- shrink the image so that the square is MAX_CROP_SIDE wide, then cut it
    -- (the same antialiased resize the transform would do, in two steps)
    local f = detect.MAX_CROP_SIDE / side
    local h, w = math.max(1, js_round(H * f)), math.max(1, js_round(W * f))
    local small = C.image_resize(img:contiguous(), h, w, false)
    crop = C.image_crop(small, js_round(top * f) + 1, js_round(left * f) + 1, detect.MAX_CROP_SIDE,
      detect.MAX_CROP_SIDE, 0)
  end
  if tf then crop = tf(crop) end
  return crop, info
end

return detect
