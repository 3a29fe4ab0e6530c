-- fmd side of the fmd/PyTorch benchmark (bench/compare.sh runs it; see
-- docs/performance.md). One measurement per process, one JSON line out:
--
--   build/fmd bench/fmd_bench.lua --model SimpleNet --mode train [--batch 32]
--       [--steps 10] [--warmup 2] [--threads 2] [--size N] [--data DIR]
--
-- models: SimpleNet, XceptionBased, MobileNetBased (MobileNetV2 with its
-- 1280-256-2 head, random weights); --size defaults to the model's input
-- side (fmd.models.input: 256, or 224 for MobileNetBased)
--
-- modes: train  zero_grad + forward + cross-entropy + backward + Adam step
--               on one preloaded random batch
--        eval   forward in eval mode without a graph (fmd.no_grad)
--        data   the train step on batches read from --data DIR (a folder
--               with real/ and fake/) by fmd's threaded loader with the
--               course train transform, loading time included; wait_s
--               is the median time a step waited for its batch
-- The JSON line holds the median and every step time (s), images/s, the
-- MACs of one forward (models.count_macs, conv + linear), effective
-- GFLOP/s (forward 2*MACs; a training step counted as 3x forward) and the
-- process's peak resident memory (VmHWM of /proc/self/status, GB = 1e9 B)
-- read at the end, so run one measurement per process.
local fmd = require "fmd"
local models = require "fmd.models"
local nn = require "fmd.nn"
local optim = require "fmd.optim"

local USAGE = "usage: fmd bench/fmd_bench.lua --model SimpleNet|XceptionBased|MobileNetBased --mode train|eval|data "
  .. "[--batch N] [--steps N] [--warmup N] [--threads N] [--size N] [--data DIR] [--workers N]"
local opts = {model = "SimpleNet", mode = "train", batch = 32, steps = 10, warmup = 2,
              threads = 2, size = false, data = nil, workers = 2}
local NUMERIC = {batch = 1, steps = 1, warmup = 0, threads = 1, size = 32, workers = 0}

local function die(msg) error(msg .. "\n(see --help)", 0) end

local i = 1
while arg[i] do
  local k = arg[i]:match("^%-%-([%w_]+)$")
  if arg[i] == "--help" or arg[i] == "-h" then print(USAGE); os.exit(0) end
  if not k or (opts[k] == nil and k ~= "data") then die(("fmd_bench: unknown option '%s'"):format(arg[i])) end
  local v = arg[i + 1]
  if v == nil then die(("fmd_bench: --%s needs a value"):format(k)) end
  if NUMERIC[k] then
    local n = math.tointeger(tonumber(v))
    if not n or n < NUMERIC[k] then die(("fmd_bench: --%s must be an integer >= %d, got '%s'"):format(k, NUMERIC[k], v)) end
    v = n
  end
  opts[k] = v
  i = i + 2
end
local MODELS = {SimpleNet = true, XceptionBased = true, MobileNetBased = true}
if not MODELS[opts.model] then
  die(("fmd_bench: --model must be SimpleNet, XceptionBased or MobileNetBased, got '%s'"):format(opts.model))
end
opts.size = opts.size or models.input(opts.model).size
if opts.mode ~= "train" and opts.mode ~= "eval" and opts.mode ~= "data" then
  die(("fmd_bench: --mode must be train, eval or data, got '%s'"):format(opts.mode))
end
if opts.mode == "data" and not opts.data then die("fmd_bench: --mode data needs --data DIR") end
if opts.mode == "data" and not fmd.sys.is_dir(opts.data) then
  die(("fmd_bench: --data %s is not a folder"):format(opts.data))
end

fmd.set_num_threads(opts.threads)
fmd.manual_seed(0)

local function peak_rss_gb()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local kb = s:match("VmHWM:%s*(%d+)%s*kB")
  return kb and tonumber(kb) * 1024 / 1e9 or nil
end

local function median(t)
  local s = {}
  for k, v in ipairs(t) do s[k] = v end
  table.sort(s)
  local n = #s
  if n == 0 then return 0 / 0 end
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

local model
if opts.model == "SimpleNet" then model = models.load_model("SimpleNet")
else model = models.load_model(opts.model, {pretrained = false, quiet = true}) end
local S, B = opts.size, opts.batch
local macs = models.count_macs(model, {1, 3, S, S}) * B

local crit = nn.CrossEntropyLoss()
local opt = optim.Adam(model:parameters(), {lr = 1e-3})
local x = fmd.randn(B, 3, S, S)
local lab = {}
for k = 1, B do lab[k] = (k - 1) % 2 end
local target = fmd.tensor(lab)

local function train_step(images, labels)
  opt:zero_grad()
  local loss = crit(model(images), labels)
  loss:backward()
  opt:step()
  return loss
end

local times, waits = {}, {}
local now = fmd.sys.now
if opts.mode == "train" then
  model:train()
  for s = 1, opts.warmup + opts.steps do
    local t0 = now()
    train_step(x, target)
    local t = now() - t0
    if s > opts.warmup then times[#times + 1] = t end
  end
elseif opts.mode == "eval" then
  model:eval()
  for s = 1, opts.warmup + opts.steps do
    local t0 = now()
    fmd.no_grad(function() return model(x) end)
    local t = now() - t0
    if s > opts.warmup then times[#times + 1] = t end
  end
else
  -- real loading: each step's time includes waiting for the loader's batch
  local data = require "fmd.data"
  local transforms = require "fmd.transforms"
  local ds = data.FacesDataset(opts.data, transforms.course("train", models.input(opts.model)))
  local dl = data.DataLoader(ds, {batch_size = B, shuffle = true, drop_last = true,
                                  num_workers = opts.workers, seed = 0})
  if #dl < opts.warmup + opts.steps then
    die(("fmd_bench: --data %s has %d full batches of %d, fewer than --warmup + --steps = %d")
      :format(opts.data, #dl, B, opts.warmup + opts.steps))
  end
  model:train()
  local s, t0 = 0, now()
  for images, labels in dl:iter(1) do
    s = s + 1
    local got = now()   -- from the end of the last step until the batch is here
    train_step(images, labels)
    local t1 = now()
    if s > opts.warmup then times[#times + 1] = t1 - t0; waits[#waits + 1] = got - t0 end
    t0 = t1
    if s == opts.warmup + opts.steps then break end
  end
end

local med = median(times)
local flops = 2 * macs * (opts.mode == "eval" and 1 or 3)
local parts = {}
for _, t in ipairs(times) do parts[#parts + 1] = ("%.6f"):format(t) end
local rss = peak_rss_gb()
print(('{"side": "fmd", "model": "%s", "mode": "%s", "batch": %d, "size": %d, "threads": %d, "steps": %d, '
  .. '"median_s": %.6f, "times_s": [%s], "images_per_s": %.3f, "macs": %d, "gflops": %.3f, "peak_rss_gb": %s, '
  .. '"gemm": "%s"%s}')
  :format(opts.model, opts.mode, B, S, opts.threads, #times, med, table.concat(parts, ", "), B / med,
    math.tointeger(macs) or macs, flops / med / 1e9, rss and ("%.4f"):format(rss) or "null", fmd.gemm_backend(),
    #waits > 0 and (', "wait_s": %.6f'):format(median(waits)) or ""))
