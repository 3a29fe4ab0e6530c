-- Data loader throughput: decode + course train transform, images/s with 1
-- and 2 worker threads, on 224x224 JPEGs (the deepfake_dev train set) and
-- on 256x256 PNGs (made once in a temp folder from those JPEGs).
--
--   build/fmd bench/loader.lua [--data DIR] [--images N] [--batch B] [--png-dir DIR]
local fmd = require "fmd"
local data = require "fmd.data"
local T = require "fmd.transforms"
local C = require "fmd.core"

local opts = {data = "../shared/data/deepfake_dev/train", images = 1024, batch = 64,
              png_dir = "/tmp/fmd_bench_png"}
local USAGE = "usage: fmd bench/loader.lua [--data DIR] [--images N] [--batch B] [--png-dir DIR]"
local i = 1
while arg[i] do
  if arg[i] == "--help" or arg[i] == "-h" then print(USAGE); os.exit(0) end
  local k = arg[i]:match("^%-%-(.+)$")
  if not k or arg[i + 1] == nil then error(("bad argument '%s'; %s"):format(arg[i], USAGE), 0) end
  k = k:gsub("-", "_")
  if opts[k] == nil then error(("unknown option --%s; %s"):format(k, USAGE), 0) end
  opts[k] = type(opts[k]) == "number" and math.tointeger(tonumber(arg[i + 1])) or arg[i + 1]
  i = i + 2
end
if not C.sys.is_dir(opts.data) and C.sys.is_dir("/work/shared/data/deepfake_dev/train") then
  opts.data = "/work/shared/data/deepfake_dev/train"
end

-- images/s of one pass over `limit` images (whole batches)
local function run(ds, workers)
  local loader = data.DataLoader(ds, {batch_size = opts.batch, shuffle = true, num_workers = workers, seed = 0})
  local n, t0 = 0, C.sys.now()
  for images in loader:iter(1) do
    n = n + images:size(1)
    if n >= opts.images then break end
  end
  local dt = C.sys.now() - t0
  collectgarbage()
  return n / dt, n
end

local function bench(name, root)
  local ds = data.FacesDataset(root, T.course("train"))
  -- one untimed pass so every configuration reads from the page cache
  run(ds, 2)
  local img = fmd.load_image(ds.paths[1])
  print(("%s: %d images of %dx%d, batch %d, course train transform"):format(name, #ds, img:size(3), img:size(2),
    opts.batch))
  for _, w in ipairs{1, 2} do
    local rate, n = run(ds, w)
    print(("  %d worker%s: %7.1f images/s (%d images)"):format(w, w > 1 and "s" or " ", rate, n))
  end
end

if not C.sys.is_dir(opts.data) then error("no data set at " .. opts.data .. " (use --data DIR with real/ and fake/)") end
bench("JPEG " .. opts.data, opts.data)

-- 256x256 PNGs: made from the JPEGs once (PIL-style resize), reused later
local src = data.FacesDataset(opts.data)
local need = math.min(opts.images, #src)
local have = 0
for _, sub in ipairs{"real", "fake"} do
  if C.sys.is_dir(opts.png_dir .. "/" .. sub) then have = have + #C.sys.listdir(opts.png_dir .. "/" .. sub) end
end
if have < need then
  io.write(("making %d 256x256 PNGs in %s ... "):format(need, opts.png_dir)); io.flush()
  C.sys.mkdir(opts.png_dir .. "/real")
  C.sys.mkdir(opts.png_dir .. "/fake")
  local step = #src / need
  for k = 0, need - 1 do
    local idx = math.floor(k * step) + 1
    local img, label = src:get(idx)
    local out = ("%s/%s/%05d.png"):format(opts.png_dir, label == 0 and "real" or "fake", k)
    fmd.save_image(out, fmd.image_resize(img, 256, 256, true))
  end
  print("done")
end
bench("PNG " .. opts.png_dir, opts.png_dir)
