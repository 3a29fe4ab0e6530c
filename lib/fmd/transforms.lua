-- fmd.transforms: image transforms in the style of torchvision, over the C
-- kernels. An image is a C x H x W float tensor in [0, 1] (what
-- fmd.load_image returns). A transform is called as t(img [, gen]); random
-- ones draw from gen (an fmd.Rng) or from transforms.generator, which
-- transforms.manual_seed(s) reseeds, so runs are reproducible.
--
-- Transforms built from Resize, CenterCrop, RandomCrop, RandomHorizontalFlip,
-- ToTensor and Normalize (and Compose of those) carry a C description
-- (t.ops); the threaded DataLoader runs those without Lua, with the same
-- random draws as the Lua call.
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
  end
  local name = "Compose(" .. table.concat(names, ", ") .. ")"
  if all_c then return op_transform(name, ops) end
  local parts = {}
  for i, t in ipairs(list) do parts[i] = t end
  return T.Lambda(function(img, gen)
    for _, t in ipairs(parts) do img = t(img, gen) end
    return img
  end, name)
end

-- The course recipe (the PyTorch skeleton's transforms), by part name.
-- Images that are not 256x256 are first resized to it (Resize is the
-- identity on 256x256 images).
T.COURSE_MEAN = {0.4914, 0.4822, 0.4465}
T.COURSE_STD = {0.2023, 0.1994, 0.2010}
T.COURSE_SIZE = 256

function T.course(part)
  local S = T.COURSE_SIZE
  if part == "train" then
    return T.Compose{T.Resize(S, S), T.RandomCrop(S, 4), T.RandomHorizontalFlip(0.5), T.ToTensor(),
                     T.Normalize(T.COURSE_MEAN, T.COURSE_STD)}
  elseif part == "val" or part == "test" then
    return T.Compose{T.Resize(S, S), T.ToTensor(), T.Normalize(T.COURSE_MEAN, T.COURSE_STD)}
  end
  error(("transforms.course: part must be 'train', 'val' or 'test', got %s"):format(tostring(part)), 2)
end

return T
