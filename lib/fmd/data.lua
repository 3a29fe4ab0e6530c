-- fmd.data: the faces dataset and a batching data loader.
--
--   local data = require "fmd.data"
--   local ds = data.load_dataset("fakes_dataset", "train")   -- data/fakes_dataset/train
--   local img, label = ds:get(1)          -- 3x256x256 tensor, 0 (real) / 1 (fake)
--   local loader = data.DataLoader(ds, {batch_size = 128, shuffle = true, num_workers = 2, seed = 0})
--   for images, labels in loader:iter(epoch) do ... end    -- (B,3,256,256), (B)
local C = require "fmd.core"
local transforms = require "fmd.transforms"

local M = {}

M.load_image = C.load_image     -- load_image(path) -> 3xHxW in [0, 1]
M.save_image = C.save_image     -- save_image(path, img [, maxval]) as 8-bit PNG

local function join(a, b)
  if a:sub(-1) == "/" then return a .. b end
  return a .. "/" .. b
end

-- warnings go to stderr, one line each (a few, then a count)
local function warn_skipped(skipped)
  local MAX = 5
  for i = 1, math.min(#skipped, MAX) do
    io.stderr:write(("fmd.data: skipping '%s' (%s)\n"):format(skipped[i][1], skipped[i][2]))
  end
  if #skipped > MAX then
    io.stderr:write(("fmd.data: skipped %d more files that are not images\n"):format(#skipped - MAX))
  end
end

---------------------------------------------------------------- FacesDataset

local FacesDataset = {}
FacesDataset.__name = "FacesDataset"

local methods = {}

-- ds:get(i [, gen]) -> image, label (i is 1-based; random transforms draw
-- from gen, default transforms.generator)
function methods:get(i, gen)
  if math.type(i) ~= "integer" or i < 1 or i > #self.paths then
    error(("FacesDataset: index %s out of range 1..%d"):format(tostring(i), #self.paths), 2)
  end
  local img = C.load_image(self.paths[i])
  if self.transform then img = self.transform(img, gen) end
  return img, self.labels[i]
end

function methods:path(i) return self.paths[i] end

function methods:counts() return self.nreal, self.nfake end

-- ds:slice(first, last): the items first..last (inclusive; none when last <
-- first) as a data set of their own, same root and transform (fmd.dist
-- gives each rank one)
function methods:slice(first, last)
  local paths, labels, nfake = {}, {}, 0
  for i = math.max(first, 1), math.min(last, #self.paths) do
    paths[#paths + 1], labels[#labels + 1] = self.paths[i], self.labels[i]
    nfake = nfake + self.labels[i]
  end
  return setmetatable({root = self.root, transform = self.transform, paths = paths, labels = labels,
                       nreal = #paths - nfake, nfake = nfake}, FacesDataset)
end

FacesDataset.__index = function(self, k)
  if math.type(k) == "integer" then
    -- ds[i] is one value in Lua: a {image, label} pair (also .image, .label)
    local img, label = methods.get(self, k)
    return {img, label, image = img, label = label}
  end
  return methods[k]
end
FacesDataset.__len = function(self) return #self.paths end
FacesDataset.__tostring = function(self)
  return ("FacesDataset('%s': %d real, %d fake, transform %s)"):format(self.root, self.nreal, self.nfake,
    tostring(self.transform))
end

-- FacesDataset(root [, transform]): root/real/* (label 0) then root/fake/*
-- (label 1), each sorted bytewise by file name. Files that are not PNG or
-- JPEG (by content) are skipped with a warning; sub-folders are ignored.
function M.FacesDataset(root, transform)
  if type(root) ~= "string" then error("FacesDataset: root must be a folder name", 2) end
  if transform ~= nil and not (transforms.is_transform(transform) or type(transform) == "function") then
    error("FacesDataset: transform must be a transform or a function", 2)
  end
  if not C.sys.is_dir(root) then
    error(("FacesDataset: '%s' %s (expected a folder with real/ and fake/ sub-folders of images)"):format(
      root, C.sys.is_file(root) and "is not a folder" or "does not exist"), 0)   -- the path says it all: no position
  end
  local paths, labels, skipped = {}, {}, {}
  local counts = {}
  for label, sub in ipairs{"real", "fake"} do
    local dir = join(root, sub)
    if not C.sys.is_dir(dir) then
      error(("FacesDataset: '%s' has no %s/ folder (expected %s/real/* and %s/fake/* images)"):format(
        root, sub, root, root), 2)
    end
    local n = 0
    for _, name in ipairs(C.sys.listdir(dir)) do
      local p = join(dir, name)
      if C.sys.is_file(p) then
        local fmt, why = C.image_format(p)
        if fmt then
          paths[#paths + 1], labels[#labels + 1] = p, label - 1
          n = n + 1
        elseif name:sub(1, 1) ~= "." then   -- dot files (.DS_Store ...) silently
          skipped[#skipped + 1] = {p, why}
        end
      end
    end
    counts[sub] = n
  end
  warn_skipped(skipped)
  return setmetatable({root = root, transform = transform, paths = paths, labels = labels,
                       nreal = counts.real, nfake = counts.fake}, FacesDataset)
end

function M.is_faces_dataset(ds) return getmetatable(ds) == FacesDataset end

-- data root: opts.data_root (a command-line flag), else $FMD_DATA, else "data"
function M.data_root(opts)
  return opts and opts.data_root or os.getenv("FMD_DATA") or "data"
end

-- load_dataset(name, part [, opts]): FacesDataset of <root>/<name>/<part>
-- with the course transform of the part for the input opts.model (a model
-- name) takes (fmd.models.input: size, normalisation; the course's when
-- nil); opts.transform overrides. ds.input is that input convention.
function M.load_dataset(name, part, opts)
  opts = opts or {}
  if type(name) ~= "string" or type(part) ~= "string" then
    error("load_dataset: expected a data set name and a part (train, val or test)", 2)
  end
  local root = join(join(M.data_root(opts), name), part)
  local input = opts.model and require("fmd.models").input(opts.model) or transforms.COURSE_INPUT
  local tf = opts.transform
  if tf == nil then
    local ok, t = pcall(transforms.course, part, input)
    if not ok then error(("load_dataset: unknown part '%s' (train, val or test)"):format(part), 2) end
    tf = t
  end
  local ok, ds = pcall(M.FacesDataset, root, tf)
  if not ok then error(ds, 0) end   -- already names the folder
  ds.input = input
  return ds
end

------------------------------------------------------------------ DataLoader

local DataLoader = {}
DataLoader.__index = DataLoader
DataLoader.__name = "DataLoader"

-- DataLoader(ds, {batch_size = 1, shuffle = false, drop_last = false,
--   num_workers = 2, seed = 0, prefetch = 2, skip_bad = false, shard = nil})
-- skip_bad (C loader): an image that cannot be read or decoded is left out
-- of its batch instead of raising; loader:skipped() tells which.
-- shard = {rank =, count =} (fmd.dist.shard()): this rank's part of each
-- epoch's order, its k-th batch being its part of global batch k of
-- batch_size * count (fmd_loader_shard in engine/fmd.h).
-- ds: a FacesDataset, or any object with #ds and ds:get(i, gen) -> image,
-- label (or ds[i] -> {image, label}). A FacesDataset whose transform has a
-- C description (the course transforms) is read by the C threaded loader;
-- anything else by a plain Lua loop. Both give the same batches: item i of
-- epoch e is transformed with an Rng seeded by sample_seed(seed, e, i), and
-- the order is a shuffle seeded by (seed, e).
function M.DataLoader(ds, opts)
  opts = opts or {}
  local bs = opts.batch_size or 1
  if math.type(bs) ~= "integer" or bs < 1 then error("DataLoader: batch_size must be an integer >= 1", 2) end
  local nw = opts.num_workers or 2
  if math.type(nw) ~= "integer" or nw < 0 then error("DataLoader: num_workers must be an integer >= 0", 2) end
  local self = setmetatable({
    dataset = ds, batch_size = bs, shuffle = opts.shuffle and true or false,
    drop_last = opts.drop_last and true or false, num_workers = nw, seed = opts.seed or 0,
    prefetch = opts.prefetch or 0, epoch = 0, skip_bad = opts.skip_bad and true or false,
  }, DataLoader)
  local n = #ds
  self.nbatches = self.drop_last and n // bs or (n + bs - 1) // bs
  local sh = opts.shard
  if sh and sh.count > 1 then
    self.shard = {batch_size = bs, drop_last = self.drop_last, count = sh.count, rank = sh.rank}
    self.nbatches = (#C.loader_order(n, false, 0, 0, self.shard) + bs - 1) // bs
  end
  local tf = M.is_faces_dataset(ds) and ds.transform
  if opts.backend ~= "lua" and type(tf) == "table" and tf.ops then
    self.c = C.Loader(ds.paths, ds.labels, tf.ops, {batch_size = bs, shuffle = self.shuffle,
      drop_last = self.drop_last, num_workers = nw, seed = self.seed, prefetch = self.prefetch,
      skip_bad = self.skip_bad, shard_count = sh and sh.count, shard_rank = sh and sh.rank})
  elseif M.is_faces_dataset(ds) and ds.transform == nil then
    self.c = C.Loader(ds.paths, ds.labels, {}, {batch_size = bs, shuffle = self.shuffle,
      drop_last = self.drop_last, num_workers = nw, seed = self.seed, prefetch = self.prefetch,
      skip_bad = self.skip_bad, shard_count = sh and sh.count, shard_rank = sh and sh.rank})
  end
  if opts.backend == "lua" then self.c = nil end
  return self
end

DataLoader.__len = function(self) return self.nbatches end

-- the Lua path: one sample with its own generator
local function get_sample(ds, i, gen)
  if ds.get then return ds:get(i, gen) end
  local s = ds[i]
  return s[1], s[2]
end

-- loader:iter([epoch]) -> iterator over images (B,C,H,W), labels (B) for
-- `for images, labels in loader:iter(epoch) do`. Without epoch, each call
-- moves to the next epoch (1, 2, ...). Leaving the loop early (break or an
-- error) stops the workers at once; a failing image raises an error naming
-- the file.
function DataLoader:iter(epoch)
  if epoch == nil then epoch = self.epoch + 1 end
  if math.type(epoch) ~= "integer" then error("DataLoader:iter: epoch must be an integer", 2) end
  self.epoch = epoch
  if self.c then
    local c = self.c
    c:start(epoch)
    -- c is also the loop's closing value: its __close stops the workers
    return function() return c:next() end, nil, nil, c
  end
  local ds, bs, seed = self.dataset, self.batch_size, self.seed
  local order = C.loader_order(#ds, self.shuffle, seed, epoch, self.shard)
  local b, nb = 0, self.nbatches
  return function()
    if b >= nb then return nil end
    local images, labels = {}, {}
    for k = b * bs + 1, math.min((b + 1) * bs, #order) do
      local i = order[k]
      local img, label = get_sample(ds, i, C.Rng(C.sample_seed(seed, epoch, i)))
      images[#images + 1], labels[#labels + 1] = img, label
    end
    b = b + 1
    return C.stack_batch(images, labels)
  end
end

-- loader:skipped() -> number of images skipped this epoch (skip_bad), and
-- a list of messages (each naming the file) not returned by an earlier call
function DataLoader:skipped()
  if not self.c then return 0, {} end
  local n, text = self.c:skipped()
  local msgs = {}
  for line in text:gmatch("[^\n]+") do msgs[#msgs + 1] = line end
  return n, msgs
end

-- stops the workers of a running epoch (they also stop when the loop ends)
function DataLoader:stop() if self.c then self.c:stop() end end

DataLoader.__tostring = function(self)
  return ("DataLoader(%d samples, batch_size %d, %d batches, %s)"):format(#self.dataset, self.batch_size,
    self.nbatches, self.c and (self.num_workers .. " C workers") or "Lua path")
end

return M
