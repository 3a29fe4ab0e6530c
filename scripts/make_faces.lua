-- Generates the default face data sets (docs/facegen.md):
--   build/fmd scripts/make_faces.lua --out data --seed 0
local facegen = require "fmd.facegen"

local usage = [[
usage: fmd scripts/make_faces.lua [options]

Generates two data sets of 256x256 RGB PNG faces in the course layout:
  OUT/fakes_dataset/{train,val,test}/{real,fake}/*.png      (face swaps, 2 real : 1 fake)
  OUT/synthetic_dataset/{train,val,test}/{real,fake}/*.png  (generator fakes, 1 : 1)
Every image is a pure function of (seed, data set, split, index).

options:
  --out DIR        output root (default: data)
  --seed N         integer seed (default: 0)
  --train N        images (real + fake) per data set in train (default: 600)
  --val N          ... in val (default: 150)
  --test N         ... in test (default: 150)
  --only NAME      only fakes_dataset or synthetic_dataset
  --size N         image side in pixels (default: 256)
  --strength X     multiplier on every fake trace (default: 1; see docs/facegen.md)
  --threads N      worker threads (default: all cores; output does not depend on it)
  --force          replace data sets that already exist under OUT
Each set is written to OUT/<name>.partial and renamed when complete.
  -h, --help       show this help
]]

local function fail(msg)
  io.stderr:write("make_faces: " .. msg .. "\n(run with --help for usage)\n")
  os.exit(2)
end

local opts = {out = "data", seed = 0, sizes = {}, params = {}}
local function int_arg(name, v, min)
  local n = math.tointeger(tonumber(v))
  if not n then fail(("%s needs an integer, got '%s'"):format(name, tostring(v))) end
  if n < min then fail(("%s must be >= %d, got %d"):format(name, min, n)) end
  return n
end

local i = 1
while i <= #arg do
  local a = arg[i]
  local function value()
    local v = arg[i + 1]
    if v == nil then fail(a .. " needs a value") end
    i = i + 1
    return v
  end
  if a == "-h" or a == "--help" then
    io.write(usage)
    os.exit(0)
  elseif a == "--out" then opts.out = value()
  elseif a == "--seed" then opts.seed = int_arg(a, value(), math.mininteger)
  elseif a == "--train" or a == "--val" or a == "--test" then
    opts.sizes[a:sub(3)] = int_arg(a, value(), 0)
  elseif a == "--only" then
    opts.only = value()
    if opts.only ~= "fakes_dataset" and opts.only ~= "synthetic_dataset" then
      fail(("--only must be fakes_dataset or synthetic_dataset, got '%s'"):format(opts.only))
    end
  elseif a == "--size" then opts.size = int_arg(a, value(), 16)
  elseif a == "--strength" then
    local x = tonumber(value())
    if not x or x < 0 or x ~= x then fail("--strength needs a number >= 0") end
    opts.params.strength = x
  elseif a == "--threads" then fmd.set_num_threads(int_arg(a, value(), 1))
  elseif a == "--force" then opts.force = true
  else
    fail(("unknown option '%s'"):format(a))
  end
  i = i + 1
end
for _, s in ipairs(facegen.splits) do opts.sizes[s] = opts.sizes[s] or facegen.default_sizes[s] end
opts.log = function(msg) print(msg) end

local t0 = require("fmd.core").sys.now()
local ok, n = pcall(facegen.generate, opts)
if not ok then
  io.stderr:write("make_faces: " .. tostring(n) .. "\n")
  os.exit(1)
end
print(("make_faces: wrote %d images under %s/ (seed %d) in %.1f s"):format(n, opts.out, opts.seed,
  require("fmd.core").sys.now() - t0))
