-- fmd.dist (lib/fmd/dist.lua, bindings/lua_dist.c) and the loader's
-- data-parallel shards (fmd_loader_shard): alone every function is the
-- identity of a world of one; under `mpirun -np 2` and `-np 3` every
-- collective gives the expected values on every rank; a shard gives each
-- rank its part of every global batch, with the same augmentation as one
-- process. Training, evaluation and failures: test_dist_train.lua.
local fmd = require "fmd"
local C = require "fmd.core"
local data = require "fmd.data"
local dist = require "fmd.dist"
local H = dofile("tests/lua/dist_helpers.lua")

---------------------------------------------------------------- alone

test("alone: rank 0 of 1, and every function is the identity", function()
  expect(not dist.is_active())
  expect_eq(dist.rank(), 0); expect_eq(dist.world_size(), 1); expect(dist.is_root())
  local t = fmd.tensor({1, 2})
  expect(dist.allreduce(t, "mean") == t and t[2] == 2)
  expect(dist.broadcast(t) == t)
  local a = {1, 2.5}
  expect(dist.gather(a)[2] == 2.5 and dist.all_gather(a)[1] == 1)
  expect_eq(math.type(dist.gather(a)[1]), "integer")
  expect_eq(dist.all_gather_objects({x = 1})[1].x, 1)
  expect_eq(select(2, dist.shard_range(10, 3)), 10)
  expect(dist.shard() == nil and dist.describe(4) == nil)
  local x, y = dist.sum(3, 4.5)
  expect(x == 3 and y == 4.5)
  local f = function() end
  expect(dist.steps(f) == f)
  local tbl = {[3] = "c"}
  expect(dist.gather_range(tbl, 3, 3) == tbl)
  dist.barrier()
  -- argument mistakes show without mpirun too
  expect_error(function() dist.allreduce(fmd.zeros(2), "avg") end, 'op must be "sum", "mean", "max" or "min"')
  expect_error(function() dist.allreduce({}) end, "tensor expected")
end)

---------------------------------------------------------------- shards

-- the loader's order for rank r of count (C.loader_order with a shard)
local function part(n, bs, count, r, drop_last, epoch)
  return C.loader_order(n, true, 7, epoch, {batch_size = bs, count = count, rank = r, drop_last = drop_last})
end

test("loader shards: every rank's k-th batch is its part of global batch k; every sample once", function()
  for _, c in ipairs{{10, 2, 2}, {11, 3, 3}, {5, 4, 2}, {1, 2, 3}, {0, 2, 2}, {13, 2, 4}, {64, 16, 2}} do
    local n, bs, count = c[1], c[2], c[3]
    for _, drop_last in ipairs{false, true} do
      for epoch = 1, 2 do
        local full = C.loader_order(n, true, 7, epoch)
        local G = bs * count
        local nglobal = drop_last and n // G or (n + G - 1) // G
        local parts, sizes = {}, {}
        for r = 0, count - 1 do parts[r] = part(n, bs, count, r, drop_last, epoch) end
        local seen = 0
        for g = 1, nglobal do
          -- the ranks' g-th batches, in rank order, are global batch g
          local pos = (g - 1) * G
          for r = 0, count - 1 do
            local p = parts[r]
            for j = (g - 1) * bs + 1, math.min(g * bs, #p) do
              pos = pos + 1
              expect_eq(p[j], full[pos], ("n %d bs %d count %d rank %d item %d"):format(n, bs, count, r, j))
              seen = seen + 1
            end
            sizes[r] = math.min(g * bs, #p) - (g - 1) * bs
          end
          expect_eq(pos, math.min(g * G, n))
        end
        expect_eq(seen, drop_last and nglobal * G or n, "every sample once")
        -- the last global batch is split as evenly as it goes, first ranks first
        for r = 1, nglobal > 0 and count - 1 or 0 do
          expect(sizes[r - 1] - sizes[r] >= 0 and sizes[r - 1] - sizes[r] <= 1)
        end
      end
    end
  end
  expect_error(function() part(4, 2, 2, 2, false, 1) end, "rank in 0..count-1")
end)

local tmp = H.tmpdir()
H.make_set(tmp, {train = {5, 4}, val = {0, 0}, test = {0, 0}})

test("a sharded DataLoader reads one process's batches in halves, augmentation included (C and Lua paths)", function()
  local ds = data.load_dataset("toy", "train", {data_root = tmp})   -- random crop + flip
  local function batches(opts)
    local out = {}
    local dl = data.DataLoader(ds, opts)
    for images, labels in dl:iter(2) do out[#out + 1] = {images, labels} end
    expect_eq(#out, #dl)
    return out
  end
  local whole = batches{batch_size = 4, shuffle = true, seed = 3, num_workers = 1}
  for r = 0, 1 do
    for _, backend in ipairs{"c", "lua"} do
      local mine = batches{batch_size = 2, shuffle = true, seed = 3, num_workers = 2, backend = backend,
                           shard = {rank = r, count = 2}}
      expect_eq(#mine, r == 0 and 3 or 2, "rank " .. r .. " batches")   -- 9 images: 4 + 4 + 1
      for k, b in ipairs(mine) do
        local n = b[2]:numel()
        local want = whole[k][1]:narrow(1, 2 * r + 1, n)
        expect_eq((b[1] - want):abs():max():item(), 0, ("rank %d batch %d (%s)"):format(r, k, backend))
        expect_eq((b[2] - whole[k][2]:narrow(1, 2 * r + 1, n)):abs():max():item(), 0)
      end
    end
  end
end)

test("ds:slice keeps the loader's C path and recounts the classes", function()
  local ds = data.load_dataset("toy", "train", {data_root = tmp})
  local s = ds:slice(4, 7)
  expect_eq(#s, 4)
  local nreal, nfake = s:counts()
  expect(nreal == 2 and nfake == 2, ("%d real %d fake"):format(nreal, nfake))
  expect_eq(s:path(1), ds:path(4))
  expect_eq(#ds:slice(5, 4), 0)
  expect(data.DataLoader(s, {batch_size = 2}).c ~= nil)
end)

---------------------------------------------------------------- mpirun

local COLLECTIVES = [==[
local dist = require "fmd.dist"
local C = require "fmd.core"
local nn = require "fmd.nn"
local r, N = dist.rank(), dist.world_size()
local function check(c, what) if not c then error(what, 2) end end
check(dist.is_active() and N == tonumber(os.getenv("OMPI_COMM_WORLD_SIZE")), "world size")
local S = N * (N + 1) // 2

-- allreduce, broadcast
local t = fmd.tensor({r + 1, -(r + 1), 2 ^ r})
dist.allreduce(t)
check(t[1] == S and t[2] == -S and t[3] == 2 ^ N - 1, "allreduce sum " .. tostring(t))
check(dist.allreduce(fmd.tensor({r}), "max")[1] == N - 1, "max")
check(dist.allreduce(fmd.tensor({r}), "min")[1] == 0, "min")
check(dist.allreduce(fmd.tensor({r}), "mean")[1] == (N - 1) / 2, "mean")
local b = dist.broadcast(fmd.full({2, 3}, r), N - 1)
check(b:min():item() == N - 1 and b:max():item() == N - 1, "broadcast from the last rank")

-- gather in rank order; integers stay integers
local mine = {}
for k = 1, r + 1 do mine[k] = r * 10 + k end
mine[#mine + 1] = r + 0.25
local want = {}
for q = 0, N - 1 do
  for k = 1, q + 1 do want[#want + 1] = q * 10 + k end
  want[#want + 1] = q + 0.25
end
local g, ag = dist.gather(mine), dist.all_gather(mine)
if r == 0 then check(#g == #want, "gather length") else check(g == nil, "gather: nil off root") end
for i, v in ipairs(want) do
  check(ag[i] == v and math.type(ag[i]) == math.type(v), ("all_gather item %d: %s"):format(i, tostring(ag[i])))
  if r == 0 then check(g[i] == v and math.type(g[i]) == math.type(v), "gather item " .. i) end
end
check(#dist.all_gather({}) == 0, "empty gather")
local o = dist.all_gather_objects({rank = r, name = "r" .. r, nested = {1.5, "x", true, false}})
check(#o == N and o[N].rank == N - 1 and o[1].name == "r0" and o[N].nested[2] == "x" and o[N].nested[4] == false,
  "all_gather_objects")
check((r == 0) == (dist.gather_objects(r) ~= nil), "gather_objects: root only")

-- shard_range: contiguous, whole batches, rank order = input order
for _, c in ipairs{{10, 3}, {7, 4}, {2, 5}, {0, 3}, {33, 4}} do
  local n, bs = c[1], c[2]
  local lo, hi = dist.shard_range(n, bs)
  local all = dist.all_gather_objects({lo, hi})
  local nextpos = 1
  for q = 1, N do
    local a, z = all[q][1], all[q][2]
    check(a == nextpos, ("shard_range(%d, %d): rank %d starts at %d"):format(n, bs, q - 1, a))
    check((a - 1) % bs == 0 or (a == n + 1 and z == n), "starts on a batch, or is empty")
    nextpos = math.max(nextpos, z + 1)
  end
  check(nextpos == n + 1, "covers 1..n")
  local t2 = {}
  for k = lo, hi do t2[k] = k * k end
  local full = dist.gather_range(t2, lo, hi)
  if r == 0 then for k = 1, n do check(full[k] == k * k, "gather_range " .. k) end end
end

-- buckets (FMD_DIST_BUCKET_MB is tiny here: 100 floats): small tensors
-- packed, a large one alone in place, an empty one
local ts = {fmd.full({5}, r + 1), fmd.full({3000}, 2 * (r + 1)), fmd.full({7, 3}, r), fmd.zeros(0), fmd.full({40}, 1)}
C._dist.allreduce_list(ts, 0.5)
check(ts[1]:min():item() == 0.5 * S and ts[1]:max():item() == 0.5 * S, "bucket: first")
check(ts[2]:min():item() == S and ts[2]:max():item() == S, "large tensor in place")
check(ts[3]:max():item() == 0.5 * (S - N), "bucket: third")
check(ts[5]:min():item() == 0.5 * N, "bucket: last")
local stats = dist.stats()
check(stats.bucket_bytes == 400 and stats.allreduce_calls >= 3 and stats.allreduce_bytes > 0, "stats")

-- gradients weighted by batch size; a missing grad joins as zeros
local p1 = fmd.full({4}, 1):requires_grad_()
p1.grad = fmd.full({4}, r + 1)
local p2 = fmd.full({3}, 1):requires_grad_()
local p3 = fmd.full({2}, 1)
dist.average_gradients({p1, p2, p3}, r + 1, S)
local sq = 0
for q = 1, N do sq = sq + q * q end
check(math.abs(p1.grad[1] - sq / S) < 1e-6, "weighted mean " .. p1.grad[1])
check(p2.grad and p2.grad:abs():max():item() == 0 and p3.grad == nil, "zeros for a missing grad")

-- steps: rank r has r + 1 batches of 2; all ranks take N steps
local function iter()
  local k = 0
  return function() k = k + 1; if k <= r + 1 then return fmd.zeros(2, 1), fmd.zeros(2) end end
end
local steps, mine_steps = 0, 0
for images, labels, n in dist.steps(iter()) do
  steps = steps + 1
  if images then mine_steps = mine_steps + 1 else check(labels == false, "labels false") end
  check(n == 2 * (N - steps + 1), ("step %d: %d images in all"):format(steps, n))
end
check(steps == N and mine_steps == r + 1, "steps")
local x, y = dist.sum(r, 1.5)
check(x == N * (N - 1) / 2 and y == 1.5 * N, "sum")

-- a module: rank 0's parameters and buffers everywhere; buffers averaged
fmd.manual_seed(100 + r)
local m = nn.Linear(3, 2)
m:register_buffer("stat", fmd.full({2}, r))
dist.broadcast_module(m)
local w = dist.all_gather(m.weight:view(-1):totable())
for i = 1, 6 do check(w[i] == w[(N - 1) * 6 + i], "broadcast_module weight") end
check(m.stat[1] == 0, "broadcast_module buffer")
m.stat:fill(r)
dist.average_buffers(m)
check(math.abs(m.stat[2] - (N - 1) / 2) < 1e-6, "average_buffers")

-- mistakes are raised before any message is sent, naming the call
local ok, err = pcall(dist.allreduce, fmd.zeros(2), "avg")
check(not ok and err:find('op must be "sum"', 1, true), tostring(err))
ok, err = pcall(dist.allreduce, fmd.zeros(2, 3):narrow(2, 1, 2))
check(not ok and err:find("contiguous", 1, true), tostring(err))
ok, err = pcall(dist.gather, {1, "x"})
check(not ok and err:find("element 2 is string", 1, true), tostring(err))
ok, err = pcall(dist.broadcast, fmd.zeros(1), N)
check(not ok and err:find("root must be a rank in 0..", 1, true), tostring(err))
dist.barrier()
io.stderr:write(("rank %d of %d: ok\n"):format(r, N))
]==]

if H.skip then
  print("test_dist: the mpirun cases are " .. H.skip)
else
  local script = tmp .. "/collectives.lua"
  local f = assert(io.open(script, "w")); f:write(COLLECTIVES); f:close()

  for _, np in ipairs{2, 3} do
    test(("collectives under mpirun -np %d"):format(np), function()
      local out, code = H.mpirun(np, script, {env = "FMD_DIST_BUCKET_MB=0.00038147"})   -- 400 bytes
      expect_eq(code, 0, out)
      for r = 0, np - 1 do expect(out:find(("rank %d of %d: ok"):format(r, np), 1, true), out) end
    end)
  end

  test("only rank 0 prints (FMD_DIST_VERBOSE=1: every rank)", function()
    local out, code = H.mpirun(2, "-e 'print(\"hello from \" .. fmd.dist.rank())'")
    expect_eq(code, 0, out)
    expect(out:find("hello from 0", 1, true) and not out:find("hello from 1", 1, true), out)
    out = H.mpirun(2, "-e 'print(\"hello from \" .. fmd.dist.rank())'", {env = "FMD_DIST_VERBOSE=1"})
    expect(out:find("hello from 1", 1, true), out)
  end)

  test("fmd --dist starts MPI without mpirun (a world of one); a bad FMD_DIST_TIMEOUT is named", function()
    local out, code = H.fmd("--dist -e 'print(\"world\", fmd.dist.world_size(), fmd.dist.is_active(), "
      .. "require(\"fmd.core\")._dist.initialized())'", {env = H.env})
    expect_eq(code, 0, out)
    expect(out:find("world\t1\tfalse\ttrue", 1, true), out)
    out, code = H.fmd("--dist -e 'print(1)'", {env = H.env .. " FMD_DIST_TIMEOUT=soon"})
    expect_eq(code, 1, out)
    expect(out:find("FMD_DIST_TIMEOUT must be a number of seconds > 0, got 'soon'", 1, true), out)
  end)
end
