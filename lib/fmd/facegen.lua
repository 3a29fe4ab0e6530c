-- fmd.facegen: the face generator, which makes the generated default data
-- set (docs/facegen.md); face detection is elsewhere.
--
--   local facegen = require "fmd.facegen"
--   facegen.render("real", seed)                -> image 3xSxS, mask 1xSxS
--   facegen.plan{out=, seed=, sizes=, only=}    -> list of image jobs (pure)
--   facegen.generate{out=, seed=, ...}          -> writes the PNGs
--
-- Every image is a pure function of (seed, dataset, split, class, index):
-- its 64-bit seed comes from facegen.seed(), and the C renderer draws all of
-- its randomness from that seed alone.
local C = require "fmd.core"

local facegen = {}

-- The two data sets: which fake kind each holds and its real:fake ratio
-- (fakes_dataset follows the course data, 2 real : 1 fake).
facegen.datasets = {
  {name = "fakes_dataset", fake = "swap", real_share = 2 / 3},
  {name = "synthetic_dataset", fake = "gan", real_share = 1 / 2},
}
facegen.splits = {"train", "val", "test"}
-- images per split (real + fake) of each data set
facegen.default_sizes = {train = 600, val = 150, test = 150}

-- artefact strengths: the defaults live in engine/facegen.c
-- (fmd_facegen_default_params); pass overrides by name
function facegen.params(overrides)
  local p = C.facegen_params()
  for k, v in pairs(overrides or {}) do
    if p[k] == nil then error(("facegen: unknown parameter '%s'"):format(tostring(k)), 2) end
    p[k] = v
  end
  return p
end

function facegen.seed(seed, dataset, split, class, index)
  return C.facegen_seed(seed, dataset, split, class, index)
end

-- kind "real" | "swap" | "gan"; a swap needs the target seed
function facegen.render(kind, seed, target, params)
  return C.facegen_render(kind, seed, target, params)
end

-- number of real and fake images in a split of n images
function facegen.split_counts(dataset, n)
  for _, d in ipairs(facegen.datasets) do
    if d.name == dataset then
      local real = math.floor(n * d.real_share + 0.5)
      return real, n - real
    end
  end
  error(("facegen: unknown data set '%s' (fakes_dataset or synthetic_dataset)"):format(tostring(dataset)), 2)
end

local function file_name(class, i) return ("%s_%05d.png"):format(class, i - 1) end

-- Jobs for opts = {out, seed, sizes = {train=, val=, test=}, only = name?}.
-- Fake i of fakes_dataset is the real image i of the same split (its
-- target) with the face of identity facegen.seed(..., "fake", i) swapped in.
function facegen.plan(opts)
  local out, seed = opts.out or "data", opts.seed or 0
  local sizes = opts.sizes or facegen.default_sizes
  local jobs, dirs = {}, {}
  local found = false
  for _, d in ipairs(facegen.datasets) do
    if not opts.only or opts.only == d.name then
      found = true
      for _, split in ipairs(facegen.splits) do
        local n = sizes[split] or facegen.default_sizes[split]
        local nreal, nfake = facegen.split_counts(d.name, n)
        for _, class in ipairs{"real", "fake"} do
          local dir = ("%s/%s%s/%s/%s"):format(out, d.name, opts.suffix or "", split, class)
          dirs[#dirs + 1] = dir
          local count = class == "real" and nreal or nfake
          for i = 1, count do
            local s = facegen.seed(seed, d.name, split, class, i - 1)
            local job = {kind = class == "real" and "real" or d.fake, seed = s,
                         path = dir .. "/" .. file_name(class, i),
                         dataset = d.name, split = split, class = class, index = i}
            if job.kind == "swap" then job.target = facegen.seed(seed, d.name, split, "real", i - 1) end
            jobs[#jobs + 1] = job
          end
        end
      end
    end
  end
  if not found then
    error(("facegen: unknown data set '%s' (fakes_dataset or synthetic_dataset)"):format(tostring(opts.only)), 2)
  end
  return jobs, dirs
end

local sys = C.sys

-- removes root/{train,val,test}/{real,fake}/*.png and those folders; fails
-- (leaving the files alone) when anything else is in them
local function remove_set(root)
  for _, split in ipairs(facegen.splits) do
    for _, class in ipairs{"real", "fake"} do
      local dir = ("%s/%s/%s"):format(root, split, class)
      if sys.is_dir(dir) then
        C.facegen_prepare_dir(dir, true)
        local ok, err = os.remove(dir)
        if not ok then error(("facegen: cannot replace %s: %s"):format(root, err), 0) end
      end
    end
    local dir = root .. "/" .. split
    if sys.is_dir(dir) then
      local ok, err = os.remove(dir)
      if not ok then error(("facegen: cannot replace %s: %s"):format(root, err), 0) end
    end
  end
  local ok, err = os.remove(root)
  if not ok then error(("facegen: cannot replace %s: %s"):format(root, err), 0) end
end

-- Writes the data set(s). Each set is written to OUT/<name>.partial and
-- renamed to OUT/<name> only when complete, so an interrupted run never
-- leaves a half-made set that looks finished. An existing OUT/<name> is an
-- error unless opts.force (then it is replaced; only its PNGs are removed,
-- anything else in it stops the replacement).
-- opts.params overrides artefact strengths; opts.log(msg) reports progress.
function facegen.generate(opts)
  local out = opts.out or "data"
  local params = facegen.params(opts.params)
  if opts.size then params.size = opts.size end
  local log = opts.log or function() end
  local total = 0
  for _, d in ipairs(facegen.datasets) do
    if not opts.only or opts.only == d.name then
      local final, stage = out .. "/" .. d.name, out .. "/" .. d.name .. ".partial"
      if sys.is_dir(final) and not opts.force then
        error(("facegen: %s already exists; use --force to replace it"):format(final), 0)
      end
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      o.only, o.suffix = d.name, ".partial"
      local jobs, dirs = facegen.plan(o)
      for _, dir in ipairs(dirs) do C.facegen_prepare_dir(dir, true) end   -- leftovers of a broken run
      -- one call per split: the C side renders and writes in parallel; the
      -- file contents do not depend on the thread count
      for _, split in ipairs(facegen.splits) do
        local group, nreal = {}, 0
        for _, j in ipairs(jobs) do
          if j.split == split then
            group[#group + 1] = j
            if j.class == "real" then nreal = nreal + 1 end
          end
        end
        C.facegen_write(group, params)
        log(("%s/%s: %d real, %d fake"):format(final, split, nreal, #group - nreal))
      end
      if sys.is_dir(final) then remove_set(final) end
      sys.rename(stage, final)
      total = total + #jobs
    end
  end
  if total == 0 and opts.only then facegen.plan(opts) end   -- raises the unknown-name error
  return total
end

return facegen
