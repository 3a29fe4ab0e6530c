-- fmd.transforms: image transforms in the style of torchvision, over the C
-- kernels. An image is a C x H x W float tensor in [0, 1] (what
-- fmd.load_image returns). A transform is called as t(img [, gen]); random
-- ones draw from gen (an fmd.Rng) or from transforms.generator, which
-- transforms.manual_seed(s) reseeds, so runs are reproducible.
--
-- Transforms built from Resize, CenterCrop, RandomCrop, RandomHorizontalFlip,
-- ToTensor, Normalize and the augmentations RandomJPEG, GaussianBlur and
-- ColorJitter (and Compose of those) carry a C description (t.ops); the
-- threaded DataLoader runs those without Lua, with the same random draws as
-- the Lua call.
local C = require "fmd.core"

local T = {}

T.generator = C.Rng(0)
function T.manual_seed(seed) T.generator:seed(seed) end

-- transforms with a C description: calling runs the whole chain in C
local OpT = {}
OpT.__index = OpT
OpT.__call = function(self, img, gen)
  if type(img) == "string" then img = C.load_image(img) end
  if #self.ops == 0 then return img end
  return C.transform_apply(self.ops, img, gen or T.generator)
end
OpT.__tostring = function(self) return self.name end

local function op_transform(name, ops)
  return setmetatable({name = name, ops = ops}, OpT)
end

local function check_size(fn, h, w)
  if type(h) == "table" then h, w = h[1], h[2] end
  w = w or h
  if math.type(h) ~= "integer" or math.type(w) ~= "integer" or h < 1 or w < 1 then
    error(("%s: size must be positive integers (h, w), got %s, %s"):format(fn, tostring(h), tostring(w)), 3)
  end
  return h, w
end

-- Resize(h [, w] [, {mode = "pil" | "float"}]): bilinear, antialiased when
-- shrinking. "pil" (default) works like PIL's im.resize((w, h), BILINEAR) on
-- an 8-bit image -- what the PyTorch reference does -- so it expects values
-- in [0, 1] and rounds to 1/255 steps; "float" keeps full precision (same
-- filter) for other value ranges.
function T.Resize(h, w, opts)
  if type(w) == "table" then w, opts = nil, w end
  h, w = check_size("Resize", h, w)
  local mode = opts and opts.mode or "pil"
  if mode ~= "pil" and mode ~= "float" then error("Resize: mode must be 'pil' or 'float', got " .. tostring(mode), 2) end
  return op_transform(("Resize(%d, %d%s)"):format(h, w, mode == "float" and ", float" or ""),
    {{kind = "resize", h = h, w = w, pil8 = mode == "pil"}})
end

-- CenterCrop(size) or CenterCrop(h, w); smaller images are zero-padded
function T.CenterCrop(h, w)
  h, w = check_size("CenterCrop", h, w)
  return op_transform(("CenterCrop(%d, %d)"):format(h, w), {{kind = "center_crop", h = h, w = w}})
end

-- RandomCrop(size [, padding = 0]): zero-pad each side, then crop at a
-- uniformly random position (size: number or {h, w})
function T.RandomCrop(size, padding)
  local h, w = check_size("RandomCrop", size)
  padding = padding or 0
  if math.type(padding) ~= "integer" or padding < 0 then
    error("RandomCrop: padding must be an integer >= 0, got " .. tostring(padding), 2)
  end
  return op_transform(("RandomCrop(%d, %d, padding=%d)"):format(h, w, padding),
    {{kind = "random_crop", h = h, w = w, pad = padding}})
end

function T.RandomHorizontalFlip(p)
  p = p or 0.5
  if type(p) ~= "number" or p < 0 or p > 1 then error("RandomHorizontalFlip: p must be in [0, 1]", 2) end
  return op_transform(("RandomHorizontalFlip(%g)"):format(p), {{kind = "hflip", p = p}})
end

-- ToTensor(): images already are float tensors in [0, 1], so this is the
-- identity on tensors; given a file name it loads the image. Kept so
-- recipes read like their torchvision originals.
function T.ToTensor() return op_transform("ToTensor()", {}) end

function T.Normalize(mean, std)
  local function list(v, what)
    if type(v) == "number" then return {v} end
    if type(v) ~= "table" or #v < 1 then error("Normalize: " .. what .. " must be a number or a list", 3) end
    for i = 1, #v do
      if type(v[i]) ~= "number" then error(("Normalize: %s[%d] must be a number"):format(what, i), 3) end
      if what == "std" and v[i] == 0 then error(("Normalize: std[%d] must be nonzero"):format(i), 3) end
    end
    return v
  end
  mean, std = list(mean, "mean"), list(std, "std")
  if #mean ~= #std then error(("Normalize: %d mean values but %d std values"):format(#mean, #std), 2) end
  local fmt = function(v) local s = {} for i, x in ipairs(v) do s[i] = ("%g"):format(x) end return table.concat(s, ", ") end
  return op_transform(("Normalize(mean=(%s), std=(%s))"):format(fmt(mean), fmt(std)),
    {{kind = "normalize", mean = mean, std = std}})
end

-- ------------------------------------------------------------ augmentations
-- They take [0, 1] images: before Normalize (Compose refuses them after it,
-- the C op refuses values outside [0, 1]).

local function is_num(v) return type(v) == "number" and v == v end

-- RandomJPEG(p, quality_lo [, quality_hi = quality_lo]): with probability p,
-- JPEG-encode at a quality drawn uniformly from the integers lo..hi (libjpeg,
-- 4:2:0, as PIL's Image.save(f, "JPEG", quality=q)) and decode back
function T.RandomJPEG(p, lo, hi)
  if not is_num(p) or p < 0 or p > 1 then
    error(("RandomJPEG: p must be a probability in [0, 1], got %s"):format(tostring(p)), 2)
  end
  hi = hi == nil and lo or hi
  for _, q in ipairs{lo, hi} do
    if math.type(q) ~= "integer" or q < 1 or q > 100 then
      error(("RandomJPEG: quality must be an integer in 1..100, got %s"):format(tostring(q)), 2)
    end
  end
  if lo > hi then error(("RandomJPEG: quality_lo %d is above quality_hi %d"):format(lo, hi), 2) end
  return op_transform(("RandomJPEG(p=%g, quality=%d..%d)"):format(p, lo, hi),
    {{kind = "random_jpeg", p = p, q_lo = lo, q_hi = hi}})
end

-- GaussianBlur(kernel_size [, sigma_lo = 0.1, sigma_hi = 2.0] [, p = 1]):
-- torchvision's GaussianBlur: sigma drawn uniformly in [lo, hi] (one number:
-- that sigma), kernel_size odd, or {kx, ky} in torchvision's order (width
-- first); reflect padding; applied with probability p
function T.GaussianBlur(ksize, lo, hi, p)
  local kx, ky = ksize, ksize
  if type(ksize) == "table" then kx, ky = ksize[1], ksize[2] end
  for _, k in ipairs{kx, ky or false} do
    if math.type(k) ~= "integer" or k < 1 or k % 2 == 0 or k > 255 then
      error(("GaussianBlur: kernel_size must be an odd integer in 1..255 (or {kx, ky}), got %s")
        :format(tostring(k)), 2)
    end
  end
  if lo == nil and hi == nil then lo, hi = 0.1, 2.0 end
  hi = hi == nil and lo or hi
  for _, s in ipairs{lo, hi} do
    if not is_num(s) or s <= 0 or s == math.huge then
      error(("GaussianBlur: sigma must be a number > 0, got %s"):format(tostring(s)), 2)
    end
  end
  if lo > hi then error(("GaussianBlur: sigma_lo %g is above sigma_hi %g"):format(lo, hi), 2) end
  p = p == nil and 1 or p
  if not is_num(p) or p < 0 or p > 1 then
    error(("GaussianBlur: p must be a probability in [0, 1], got %s"):format(tostring(p)), 2)
  end
  return op_transform(("GaussianBlur(%dx%d, sigma=%g..%g, p=%g)"):format(kx, ky, lo, hi, p),
    {{kind = "gaussian_blur", kx = kx, ky = ky, sigma_lo = lo, sigma_hi = hi, p = p}})
end

-- ColorJitter(brightness, contrast, saturation): torchvision's factors, each
-- drawn uniformly in [max(0, 1 - v), 1 + v] (or given as {lo, hi}); applied
-- in the fixed order brightness, contrast, saturation (torchvision shuffles
-- the order per image). 0 or nil leaves that property unchanged. No hue.
function T.ColorJitter(brightness, contrast, saturation, hue)
  if hue ~= nil and hue ~= 0 then error("ColorJitter: hue is not supported (pass 0 or nothing)", 2) end
  local op, parts = {kind = "color_jitter"}, {}
  for _, spec in ipairs{{"brightness", brightness}, {"contrast", contrast}, {"saturation", saturation}} do
    local name, v = spec[1], spec[2]
    local r
    if v == nil then
      r = {1, 1}
    elseif is_num(v) then
      if v < 0 or v == math.huge then
        error(("ColorJitter: %s must be >= 0, got %s"):format(name, tostring(v)), 2)
      end
      r = {math.max(0, 1 - v), 1 + v}
    elseif type(v) == "table" and #v == 2 and is_num(v[1]) and is_num(v[2]) then
      if not (v[1] >= 0 and v[1] <= v[2] and v[2] < math.huge) then
        error(("ColorJitter: %s range {%g, %g} must have 0 <= lo <= hi"):format(name, v[1], v[2]), 2)
      end
      r = {v[1], v[2]}
    else
      error(("ColorJitter: %s must be a number >= 0 or {lo, hi}, got %s"):format(name, tostring(v)), 2)
    end
    op[name] = r
    parts[#parts + 1] = ("%s=%g..%g"):format(name, r[1], r[2])
  end
  return op_transform("ColorJitter(" .. table.concat(parts, ", ") .. ")", {op})
end

local AUG = {random_jpeg = "RandomJPEG", gaussian_blur = "GaussianBlur", color_jitter = "ColorJitter"}

-- Lambda(fn): any Lua function fn(img, gen) -> img (has no C description, so
-- a DataLoader using it runs its Lua path)
local LuaT = {}
LuaT.__index = LuaT
LuaT.__call = function(self, img, gen) return self.fn(img, gen or T.generator) end
LuaT.__tostring = function(self) return self.name end
function T.Lambda(fn, name)
  if type(fn) ~= "function" then error("Lambda: expected a function", 2) end
  return setmetatable({name = name or "Lambda()", fn = fn}, LuaT)
end

function T.is_transform(t)
  local mt = getmetatable(t)
  return mt == OpT or mt == LuaT
end

-- Compose{t1, t2, ...}: applied in order; C-describable when all parts are
function T.Compose(list)
  if type(list) ~= "table" then error("Compose: expected a list of transforms", 2) end
  local ops, names, all_c = {}, {}, true
  local kinds, normalized = {}, nil   -- op kinds in order, also through Lua parts
  for i, t in ipairs(list) do
    if not (T.is_transform(t) or type(t) == "function") then
      error(("Compose: item %d is not a transform (got %s)"):format(i, type(t)), 2)
    end
    if getmetatable(t) == OpT then
      for _, op in ipairs(t.ops) do ops[#ops + 1] = op end
    else
      all_c = false
    end
    names[i] = type(t) == "function" and "function" or tostring(t)
    local tk = getmetatable(t) == OpT and {} or (type(t) == "table" and t.kinds) or {}
    if getmetatable(t) == OpT then for k, op in ipairs(t.ops) do tk[k] = op.kind end end
    for _, k in ipairs(tk) do
      if AUG[k] and normalized then
        error(("Compose: item %d (%s) comes after Normalize (item %d): augmentations take [0, 1] images, "
          .. "put them before Normalize"):format(i, names[i], normalized), 2)
      end
      if k == "normalize" then normalized = normalized or i end
      kinds[#kinds + 1] = k
    end
  end
  local name = "Compose(" .. table.concat(names, ", ") .. ")"
  if all_c then return op_transform(name, ops) end
  local parts = {}
  for i, t in ipairs(list) do parts[i] = t end
  local lam = T.Lambda(function(img, gen)
    for _, t in ipairs(parts) do img = t(img, gen) end
    return img
  end, name)
  lam.kinds = kinds
  return lam
end

-- The course recipe (the PyTorch skeleton's transforms), by part name.
-- Images that are not 256x256 are first resized to it (Resize is the
-- identity on 256x256 images).
T.COURSE_MEAN = {0.4914, 0.4822, 0.4465}
T.COURSE_STD = {0.2023, 0.1994, 0.2010}
T.COURSE_SIZE = 256

-- What a model takes as input: the image side, the normalisation (mean and
-- std; none means values in [0, 1]) and the zero padding of the training
-- crop (0: no random crop, only the flip). The course's models take this
-- one; a model class may carry its own as `input` (MobileNetBased: 224, [0,
-- 1], flips only, what its Keras weights were trained on), and
-- fmd.models.input(name) says which applies.
T.COURSE_INPUT = {size = T.COURSE_SIZE, mean = T.COURSE_MEAN, std = T.COURSE_STD, crop_padding = 4}

-- course(part [, input]): the transform of `part` for a model taking
-- `input` (default T.COURSE_INPUT): resize, for training the random crop
-- and the horizontal flip, then the normalisation
function T.course(part, input)
  input = input or T.COURSE_INPUT
  local S = input.size
  local tail = {T.ToTensor()}
  if input.mean then tail[2] = T.Normalize(input.mean, input.std) end
  local list
  if part == "train" then
    list = {T.Resize(S, S)}
    if (input.crop_padding or 0) > 0 then list[2] = T.RandomCrop(S, input.crop_padding) end
    list[#list + 1] = T.RandomHorizontalFlip(0.5)
  elseif part == "val" or part == "test" then
    list = {T.Resize(S, S)}
  else
    error(("transforms.course: part must be 'train', 'val' or 'test', got %s"):format(tostring(part)), 2)
  end
  for _, t in ipairs(tail) do list[#list + 1] = t end
  return T.Compose(list)
end

return T
