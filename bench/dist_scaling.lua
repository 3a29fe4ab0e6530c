-- One row of the data-parallel scaling table (docs/distributed.md), run
-- as N ranks by bench/dist_scaling.sh:
--
--   mpirun -np 2 build/fmd bench/dist_scaling.lua -m SimpleNet -b 8 --steps 6 --data DIR
--
-- Trains the model with the trainer's own epoch (fmd.trainer:
-- train_one_epoch: sharded loader, gradients averaged in buckets) on
-- exactly steps x b x N images of DIR (a folder with real/ and fake/), one
-- compute thread and one decoding thread per rank: a warm-up epoch, then
-- the measured one. Prints a markdown row: images per second (of all
-- ranks), seconds per step, the allreduce time per step (mean over ranks;
-- it includes waiting for the slowest rank) and its share of the step,
-- the bytes each rank sends into the allreduce per step, and one allreduce
-- of that size timed on its own after a barrier. A 1-rank run also
-- prints the projection for 8 and 64 nodes from these numbers.
local fmd = require "fmd"
local cli = require "fmd.cli"
local data = require "fmd.data"
local dist = require "fmd.dist"
local models = require "fmd.models"
local nn = require "fmd.nn"
local optim = require "fmd.optim"
local Trainer = require "fmd.trainer"

local opts = cli.parse(arg, {
  name = "bench/dist_scaling.lua",
  description = "images/s and allreduce time of data-parallel training (run under mpirun)",
  {"--model", "-m", default = "SimpleNet", metavar = "NAME", help = "model"},
  {"--batch_size", "-b", type = "integer", default = 8, min = 1, help = "batch per rank"},
  {"--steps", type = "integer", default = 6, min = 1, help = "optimizer steps in the measured epoch"},
  {"--data", metavar = "DIR", help = "folder with real/ and fake/ images (required)"},
  {"--header", type = "boolean", help = "print the table's header first"},
})
if not opts.data then error("bench/dist_scaling.lua: --data DIR is required", 0) end
fmd.set_num_threads(1)
fmd.manual_seed(0)

local N, b = dist.world_size(), opts.batch_size
local need = opts.steps * b * N
local all = data.FacesDataset(opts.data, require("fmd.transforms").course("train"))
if #all < need then
  error(("bench: %s has %d images, %d steps x batch %d x %d ranks need %d"):format(opts.data, #all, opts.steps, b,
    N, need), 0)
end
local ds = all:slice(1, need)   -- which images does not matter for speed
local model = models.load_model(opts.model)
local trainer = Trainer.new(model, optim.SGD(model:parameters(), {lr = 1e-4, momentum = 0.9}), nn.CrossEntropyLoss(),
  b, ds, ds, ds, {num_workers = 1, seed = 0, print = function() end})
dist.broadcast_module(model)

local function epoch()
  local s0 = dist.stats()
  dist.barrier()
  local t0 = fmd.sys.now()
  trainer:train_one_epoch()
  local secs = fmd.sys.now() - t0
  trainer.epoch = trainer.epoch + 1
  local s1 = dist.stats()
  local ar = s1.allreduce_seconds - s0.allreduce_seconds
  local bytes = s1.allreduce_bytes - s0.allreduce_bytes
  -- the slowest rank's epoch; the mean allreduce time
  local t = require("fmd.core")._dist.allreduce_numbers({secs}, "max")[1]
  return t, dist.sum(ar) / N, bytes
end
epoch()   -- warm-up: first-touch of buffers, caches, the loader's threads
local secs, ar, bytes = epoch()

local step = secs / opts.steps
local ar_step, bytes_step = ar / opts.steps, bytes / opts.steps
-- the transfer alone: one allreduce of the gradients' size right after a
-- barrier, so no rank waits for another's compute (best of 3)
local alone = 0
if N > 1 then
  local grads = {}
  for _, p in ipairs(model:parameters()) do grads[#grads + 1] = fmd.zeros(p:size()) end
  alone = math.huge
  for _ = 1, 3 do
    dist.barrier()
    local t0 = fmd.sys.now()
    require("fmd.core")._dist.allreduce_list(grads, 1 / N)
    alone = math.min(alone, require("fmd.core")._dist.allreduce_numbers({fmd.sys.now() - t0}, "max")[1])
  end
end
if opts.header and dist.is_root() then
  print("| model | ranks | batch per rank | global batch | images/s | s per step | allreduce ms per step | allreduce share "
    .. "| MB per step per rank | allreduce alone ms |")
  print("|---|---|---|---|---|---|---|---|---|---|")
end
print(("| %s | %d | %d | %d | %.1f | %.3f | %.1f | %.1f%% | %.1f | %.1f |"):format(opts.model, N, b, b * N, need / secs,
  step, 1000 * ar_step, 100 * ar_step / step, bytes_step / 2 ^ 20, 1000 * alone))

-- on paper: N nodes of this machine's 1-rank speed, ring allreduce of the
-- measured message (2 (N - 1) / N x bytes over the link, plus a latency of
-- 2 (N - 1) messages per bucket), no overlap with backward
if N == 1 then
  local bucket = dist.stats().bucket_bytes
  if bucket == 0 then bucket = 4 * 2 ^ 20 end   -- MPI not started: the default
  -- messages as bindings/lua_dist.c packs them: tensors in order into
  -- buckets, one larger than a bucket on its own
  local grad_bytes, buckets, fill = 0, 0, 0
  for _, p in ipairs(model:parameters()) do
    local m = 4 * p:numel()
    grad_bytes = grad_bytes + m
    if fill > 0 and fill + m > bucket then buckets, fill = buckets + 1, 0 end
    if m > bucket then buckets = buckets + 1 else fill = fill + m end
  end
  if fill > 0 then buckets = buckets + 1 end
  local ALPHA = 20e-6   -- seconds per message on a TCP network
  print()
  print(("%s, projection: %.1f MB of gradients per step in %d messages, compute %.3f s per step of batch %d per node")
    :format(opts.model, grad_bytes / 2 ^ 20, buckets, step, b))
  print("| nodes | link | allreduce ms per step | share of the step | images/s | speed-up |")
  print("|---|---|---|---|---|---|")
  for _, nodes in ipairs{8, 64} do
    for _, gbit in ipairs{10, 100} do
      local bw = gbit * 1e9 / 8
      local t = 2 * (nodes - 1) / nodes * grad_bytes / bw + 2 * (nodes - 1) * buckets * ALPHA
      print(("| %d | %d Gbit/s | %.1f | %.1f%% | %.0f | %.1f |"):format(nodes, gbit, 1000 * t, 100 * t / (step + t),
        nodes * b / (step + t), nodes * step / (step + t)))
    end
  end
end
