-- fmd.dist: data-parallel training, evaluation and prediction on several
-- processes ("ranks") over MPI, the way Horovod and PyTorch's
-- DistributedDataParallel do it (docs/distributed.md):
--
--   mpirun -np 4 build/fmd scripts/train.lua -d fakes_dataset -m SimpleNet -b 32
--
-- Every rank runs the same script. fmd starts MPI when an MPI launcher
-- started it (or with `fmd --dist`); bindings/lua_dist.c is the C side.
-- Without that, fmd is one process and every function here is the
-- identity of a world of one: rank 0 of 1, a shard is everything, a gather
-- returns its input. Ranks are 0-based as in MPI and PyTorch.
--
--   local dist = require "fmd.dist"
--   dist.rank(), dist.world_size(), dist.is_root(), dist.is_active()
--   dist.allreduce(t [, op])       in place: op "sum" (default), "mean", "max", "min"
--   dist.broadcast(t [, root])     in place, from root (default 0)
--   dist.gather(numbers [, root])  root: every rank's array concatenated in rank order; others: nil
--   dist.all_gather(numbers)       the same on every rank
--   dist.gather_objects(v [, root]), dist.all_gather_objects(v): any tree of
--                                  tables, numbers, strings, booleans; a list of one per rank
--   dist.barrier()
-- Training (lib/fmd/trainer.lua): dist.broadcast_module, dist.shard,
-- dist.steps, dist.average_gradients, dist.average_buffers, dist.sum.
-- Evaluation: dist.shard_range, dist.shard_dataset, dist.gather_range.
--
-- On ranks other than 0, print() prints nothing (FMD_DIST_VERBOSE=1 keeps
-- it), so a script's output is rank 0's; warnings and errors (stderr)
-- still show, and an uncaught error on any rank ends the whole job as
-- "rank R: <error>" (bindings/main.c).
local C = require("fmd.core")._dist

local dist = {}

dist.available = C.available   -- built with MPI

local function active() return C.initialized() and C.size() > 1 end

function dist.is_active() return active() end
function dist.rank() return C.rank() end
function dist.world_size() return C.size() end
function dist.is_root() return C.rank() == 0 end

local function setup()
  if C.initialized() and C.rank() > 0 and (os.getenv("FMD_DIST_VERBOSE") or "0") == "0" then
    print = function() end   -- luacheck: ignore (rank 0 speaks for the job)
  end
end

-- starts MPI when the script, not the launcher, asks for it (as fmd --dist
-- does); a no-op when it runs already. Returns rank, world size.
function dist.init()
  if not C.initialized() then
    C.init()
    setup()
  end
  return C.rank(), C.size()
end

---------------------------------------------------------------- collectives

function dist.allreduce(t, op) return C.allreduce(t, op or "sum") end
function dist.broadcast(t, root) return C.broadcast(t, root or 0) end
function dist.barrier() C.barrier() end

function dist.gather(values, root) return C.gather_numbers(values, root or 0) end
function dist.all_gather(values) return C.gather_numbers(values, -1) end

-- a few numbers summed over the ranks (doubles): dist.sum(loss, correct, n)
function dist.sum(...)
  if not active() then return ... end
  return table.unpack(C.allreduce_numbers({...}, "sum"), 1, select("#", ...))
end

-- values travel as bytes: a tree of tables (keys and values of the kinds
-- below; metatables are not sent) packed with string.pack, exactly
local function encode(v, out)
  local t = math.type(v) or type(v)
  if t == "nil" then out[#out + 1] = "z"
  elseif t == "boolean" then out[#out + 1] = v and "T" or "F"
  elseif t == "integer" then out[#out + 1] = string.pack("<c1j", "i", v)
  elseif t == "float" then out[#out + 1] = string.pack("<c1d", "d", v)
  elseif t == "string" then out[#out + 1] = string.pack("<c1s4", "s", v)
  elseif t == "table" then
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    out[#out + 1] = string.pack("<c1I4", "t", n)
    for k, x in pairs(v) do encode(k, out); encode(x, out) end
  else
    error(("dist: cannot send a %s value between ranks"):format(t), 0)
  end
end

local function decode(s, pos)
  local tag = s:sub(pos, pos)
  pos = pos + 1
  if tag == "z" then return nil, pos
  elseif tag == "T" then return true, pos
  elseif tag == "F" then return false, pos
  elseif tag == "i" then return string.unpack("<j", s, pos)
  elseif tag == "d" then return string.unpack("<d", s, pos)
  elseif tag == "s" then return string.unpack("<s4", s, pos)
  end
  local n
  n, pos = string.unpack("<I4", s, pos)
  local t = {}
  for _ = 1, n do
    local k, x
    k, pos = decode(s, pos)
    x, pos = decode(s, pos)
    t[k] = x
  end
  return t, pos
end

local function gather_objects(v, root)
  if not active() then return {v} end
  local out = {}
  encode(v, out)
  local all = C.gather_bytes(table.concat(out), root)
  if not all then return nil end
  for r, s in ipairs(all) do all[r] = decode(s, 1) end
  return all
end

function dist.gather_objects(v, root) return gather_objects(v, root or 0) end
function dist.all_gather_objects(v) return gather_objects(v, -1) end

------------------------------------------------------------------ sharding

-- Evaluation and prediction: this rank's part of n inputs read in batches
-- of batch_size, as first, last (1-based, inclusive; n + 1, n when it
-- has none). The batches are dealt out whole and in order, the first ranks
-- taking one more when they do not divide evenly, so every rank runs
-- exactly the batches one process would (same scores, bit for bit) and
-- rank order is input order.
function dist.shard_range(n, batch_size)
  local size, r = C.size(), C.rank()
  if size == 1 then return 1, n end
  local nb = (n + batch_size - 1) // batch_size
  local per, extra = nb // size, nb % size
  local b0 = r * per + math.min(r, extra)
  local b1 = b0 + per + (r < extra and 1 or 0)
  local lo = math.min(b0 * batch_size + 1, n + 1)   -- a rank without a batch: n + 1, n
  return lo, math.max(math.min(b1 * batch_size, n), lo - 1)
end

-- the data set of this rank's shard_range: ds:slice(first, last) when ds
-- has it (fmd.data.FacesDataset: the threaded loader still reads it), else
-- a view with #view and view:get(i, gen)
function dist.shard_dataset(ds, batch_size)
  if not active() then return ds end
  local lo, hi = dist.shard_range(#ds, batch_size)
  if ds.slice then return ds:slice(lo, hi) end
  return setmetatable({get = function(_, i, gen)
    if ds.get then return ds:get(lo + i - 1, gen) end
    local s = ds[lo + i - 1]
    return s[1], s[2]
  end}, {__len = function() return math.max(0, hi - lo + 1) end})
end

-- t[first..last] of every rank (first, last from shard_range; holes
-- allowed) merged into one table on root (every rank with root -1);
-- nil on the others
function dist.gather_range(t, lo, hi, root)
  if not active() then return t end
  local part = {}
  for k = lo, hi do part[k - lo + 1] = t[k] end
  local all = gather_objects({lo = lo, hi = hi, part = part}, root or 0)
  if not all then return nil end
  local out = {}
  for _, p in ipairs(all) do
    for k = p.lo, p.hi do out[k] = p.part[k - p.lo + 1] end
  end
  return out
end

-- Training: the DataLoader option that gives this rank its part of every
-- epoch's shuffled order (fmd.data, engine/loader.c fmd_loader_shard), or
-- nil alone
function dist.shard()
  if not active() then return nil end
  return {rank = C.rank(), count = C.size()}
end

-- "2 ranks x batch 16 = global batch 32 (Open MPI v4.1.4)", nil alone
function dist.describe(batch_size)
  if not active() then return nil end
  return ("distributed: %d ranks x batch %d = global batch %d (%s)"):format(C.size(), batch_size,
    C.size() * batch_size, C.stats().library or "MPI")
end

-- Keeps the ranks in step over a training epoch whose shards differ in
-- batch count (the last global batch leaves some ranks none; an unreadable
-- batch is skipped on one rank only): wraps a loader's iterator (the four
-- values of dl:iter(epoch)) so that every rank runs the same number of
-- steps. Yields images, labels, n_total (images in this step over all
-- ranks); images and labels are false on a rank without a batch this step,
-- which still joins the step's collectives. Alone: the iterator itself.
function dist.steps(f, s, c, closing)
  if not active() then return f, s, c, closing end
  local done = false
  return function()
    local images, labels
    if not done then
      images, labels = f(s, c)
      done = images == nil
    end
    local t = C.allreduce_numbers({images and 1 or 0, images and labels:numel() or 0}, "sum")
    if t[1] == 0 then return nil end
    return images or false, labels or false, math.tointeger(t[2])
  end, nil, nil, closing
end

local function params_of(model) return model.parameters and model:parameters() or model end

-- After backward: every parameter's gradient becomes the mean over all
-- n_total images of the step, sum over ranks of (n / n_total) * grad, where
-- n is this rank's batch size (0 without a batch: it sends zeros), so
-- uneven batches weigh right. Packed into buckets of FMD_DIST_BUCKET_MB.
-- model: a module or a list of parameters.
function dist.average_gradients(model, n, n_total)
  if not active() then return end
  C.allreduce_grads(params_of(model), n / n_total)
end

-- parameters and buffers of root (default 0) to every rank
function dist.broadcast_module(model, root)
  if not active() then return end
  local list = model:parameters()
  for _, b in ipairs(model:buffers()) do list[#list + 1] = b end
  C.broadcast_list(list, root or 0)
end

-- buffers (BatchNorm's running mean and variance) averaged over the ranks:
-- each rank normalised with its own batch statistics (as DDP does by
-- default), so their running estimates differ until this
function dist.average_buffers(model)
  if not active() then return end
  C.allreduce_list(model:buffers(), 1 / C.size())
end

-- {allreduce_seconds, allreduce_bytes, allreduce_calls, bucket_bytes,
-- timeout, library} of this rank so far
function dist.stats() return C.stats() end

setup()
return dist
