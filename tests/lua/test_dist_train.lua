-- Data-parallel runs under `mpirun -np 2` (docs/distributed.md) against one
-- process: training without BatchNorm ends with the parameters of one
-- process with the global batch; with BatchNorm it matches two replicas in
-- one process, each normalising its half-batch; evaluate, numerical_analysis
-- and predict give one process's results byte for byte; a rank killed with
-- SIGKILL, a rank that raises and a rank that hangs each end the whole job
-- within seconds with a message naming the rank, and the checkpoints
-- written before stay whole.
-- Tolerance of the training comparisons: 1e-5 in max |a - b| / (1 + |b|).
-- Two ranks sum each half-batch's gradient (16 images) and add the halves;
-- one process sums the 32 in one pass: the same numbers added in another
-- order, so float32 rounding (2^-24 relative per addition, a few dozen
-- additions per element) differs; three SGD steps keep that near 1e-7
-- (measured: 2e-7 at most). A wrong shard, a missing average or a wrong
-- weight moves parameters by 1e-3 or more.
local fmd = require "fmd"
local json = require "fmd.json"
local H = dofile("tests/lua/dist_helpers.lua")
if H.skip then print("test_dist_train: " .. H.skip) return end

local tmp = H.tmpdir()
-- 96 training images: 3 steps of a global batch of 32; 97: a 4th step of
-- one image, which rank 1 has no share of; odd val/test splits
H.make_set(tmp, {train = {48, 48}, val = {3, 2}, test = {4, 3}})
H.make_set(tmp, {train = {49, 48}, val = {3, 2}, test = {4, 3}}, "toy97")
local COMMON = ("--data-root %s -o SGD --lr 0.05 --threads 1 --workers 1"):format(tmp)

local function folder(name)
  local dir = tmp .. "/" .. name
  H.write_models(dir)
  return dir
end

-- the tensors of a checkpoint file, and the largest difference to another's
local function compare(path_a, path_b)
  local a, b = fmd.load_safetensors(path_a), fmd.load_safetensors(path_b)
  local worst, n = 0, 0
  for k, t in pairs(a) do
    expect(b[k], "missing " .. k)
    worst = math.max(worst, (fmd.max_rel_err(t, b[k])))
    n = n + 1
  end
  expect(n > 0)
  return worst
end

local function ls(dir)
  local ok, names = pcall(fmd.sys.listdir, dir)
  return ok and names or {}
end

test("no BatchNorm: 2 ranks x batch 16 = 1 process x batch 32 (3 steps); only rank 0 writes", function()
  for _, set in ipairs{"toy", "toy97"} do
    local one, two, other = folder(set .. "_one"), folder(set .. "_two"), folder(set .. "_other")
    local out, code = H.fmd(("scripts/train.lua %s -d %s -m Tiny -b 32 -e 1"):format(COMMON, set), {cwd = one})
    expect_eq(code, 0, out)
    -- rank 1 runs in another folder: anything it wrote would be there
    local line = ("%s %s/scripts/train.lua %s -d %s -m Tiny -b 16 -e 1"):format(H.exe, H.here, COMMON, set)
    out, code = H.capture(("cd %s && %s mpirun --oversubscribe -np 1 -wdir %s %s : -np 1 -wdir %s %s"):format(two,
      H.env, two, line, other, line))
    expect_eq(code, 0, out)
    expect(out:find("distributed: 2 ranks x batch 16 = global batch 32", 1, true), out)
    local run = ("/checkpoints/%s_Tiny_SGD"):format(set)
    local err = compare(two .. run .. ".last.safetensors", one .. run .. ".last.safetensors")
    expect(err <= 1e-5, ("%s: parameters and momentum differ by %.3g"):format(set, err))
    expect_eq(#ls(other .. "/out") + #ls(other .. "/checkpoints"), 0, "rank 1 wrote files")
    local l1 = json.read_file(one .. ("/out/%s_Tiny_SGD.json"):format(set))[1]
    local l2 = json.read_file(two .. ("/out/%s_Tiny_SGD.json"):format(set))[1]
    expect_near(l2.train_loss[1], l1.train_loss[1], 1e-5, "train loss over all ranks")
    expect_eq(l2.val_acc[1], l1.val_acc[1])
    expect_eq(l2.test_auc[1], l1.test_auc[1])
  end
end)

test("BatchNorm: 2 ranks = two replicas in one process on the half-batches, running statistics averaged", function()
  local dir = folder("bn")
  local out, code = H.mpirun(2, ("scripts/train.lua %s -d toy -m TinyBN -b 16 -e 1"):format(COMMON), {cwd = dir})
  expect_eq(code, 0, out)
  -- the reference: what train.lua builds (seed 0, SGD momentum 0.9), one
  -- replica per half of each batch of 32 of the same seeded loader
  local data, nn, optim = require "fmd.data", require "fmd.nn", require "fmd.optim"
  local threads = fmd.get_num_threads()
  fmd.set_num_threads(1)
  local cls = dofile(dir .. "/models/TinyBN.lua")
  local reps, opts = {}, {}
  for r = 1, 2 do
    fmd.manual_seed(0)
    reps[r] = cls({})
    reps[r]:train()
    opts[r] = optim.SGD(reps[r]:parameters(), {lr = 0.05, momentum = 0.9})
  end
  local ce = nn.CrossEntropyLoss()
  local ds = data.load_dataset("toy", "train", {data_root = tmp})
  local dl = data.DataLoader(ds, {batch_size = 32, shuffle = true, seed = 0, num_workers = 1})
  for images, labels in dl:iter(1) do
    for r = 1, 2 do
      opts[r]:zero_grad()
      local x, y = images:narrow(1, 16 * r - 15, 16):contiguous(), labels:narrow(1, 16 * r - 15, 16):contiguous()
      ce(reps[r](x), y):backward()
    end
    local pa, pb = reps[1]:parameters(), reps[2]:parameters()
    for i = 1, #pa do
      local g = pa[i].grad * 0.5 + pb[i].grad * 0.5
      pa[i].grad, pb[i].grad = g, g:clone()
    end
    opts[1]:step(); opts[2]:step()
  end
  fmd.set_num_threads(threads)
  local got = fmd.load_safetensors(dir .. "/checkpoints/toy_TinyBN_SGD.last.safetensors")
  local sb = reps[2]:state_dict()
  local worst, n = 0, 0
  for k, want in pairs(reps[1]:state_dict()) do
    if k:find("running", 1, true) then want = want * 0.5 + sb[k] * 0.5 end
    worst = math.max(worst, (fmd.max_rel_err(got[k], want)))
    n = n + 1
  end
  expect_eq(n, 8)   -- conv, bn (weight, bias, running mean, var), fc
  expect(worst <= 1e-5, ("differs by %.3g"):format(worst))
end)

test("evaluate, numerical_analysis and predict: 2 ranks give one process's output byte for byte", function()
  local ckpt = tmp .. "/toy_one/checkpoints/toy_Tiny_SGD.safetensors"
  expect(fmd.sys.is_file(ckpt), "the first test's checkpoint")
  -- images to predict: the test split, a truncated PNG (fails to decode in
  -- its batch) and a file that is not an image
  local pics = tmp .. "/pics"
  fmd.sys.mkdir(pics)
  for _, cls in ipairs{"real", "fake"} do
    for _, name in ipairs(fmd.sys.listdir(("%s/toy/test/%s"):format(tmp, cls))) do
      local s = H.read(("%s/toy/test/%s/%s"):format(tmp, cls, name))
      local f = assert(io.open(("%s/%s_%s"):format(pics, cls, name), "wb")); f:write(s); f:close()
    end
  end
  local f = assert(io.open(pics .. "/real_002b.png", "wb"))
  f:write(H.read(tmp .. "/toy/test/real/002.png"):sub(1, 120)); f:close()
  f = assert(io.open(pics .. "/notes.png", "wb")); f:write("not an image"); f:close()
  -- predict's table on stdout (stderr's lines may come between them)
  local function table_lines(out)
    local t = {}
    for line in out:gmatch("[^\n]+") do if line:find(pics, 1, true) == 1 then t[#t + 1] = line end end
    expect_eq(#t, 7)
    return table.concat(t, "\n")
  end
  local outs = {}
  for _, np in ipairs{1, 2} do
    local dir = folder("eval" .. np)
    local function run(args)
      local out, code
      if np == 1 then out, code = H.fmd(args, {cwd = dir}) else out, code = H.mpirun(np, args, {cwd = dir}) end
      return out, code
    end
    local out, code = run(("scripts/evaluate.lua -m Tiny -cpp %s --data-root %s -d toy -b 2 --threads 1"):format(ckpt, tmp))
    expect_eq(code, 0, out)
    out, code = run(("scripts/numerical_analysis.lua -m Tiny -cpp %s --data-root %s -d toy -b 2 --threads 1 "
      .. "--out-dir figs --metrics-dir m"):format(ckpt, tmp))
    expect_eq(code, 0, out)
    out, code = run(("scripts/predict.lua -m Tiny -cpp %s -b 2 --threads 1 --out p.csv %s"):format(ckpt, pics))
    expect_eq(code, 1, out)   -- two files failed
    expect(out:find("7 images scored", 1, true), out)
    outs[np] = {H.read(dir .. "/out/evaluate_Tiny.json"), H.read(dir .. "/m/toy_Tiny_metrics.json"),
                H.read(dir .. "/p.csv"), table_lines(out)}
    expect(fmd.sys.is_file(dir .. "/figs/toy_Tiny_roc_curve.png"))
  end
  for i, what in ipairs{"evaluate_Tiny.json", "toy_Tiny_metrics.json", "p.csv", "predict's table"} do
    expect_eq(outs[2][i], outs[1][i], what)
  end
  expect(outs[1][1]:find('"auc_b"', 1, true) and outs[1][3]:find("real_002b.png,,,,,", 1, true), outs[1][3])
end)

---------------------------------------------------------------- failures

local function wait_for(cond, seconds)
  local t0 = fmd.sys.now()
  while not cond() do
    if fmd.sys.now() - t0 > seconds then return false end
    os.execute("sleep 0.05")
  end
  return true
end

test("a rank killed with SIGKILL ends the job within seconds; the checkpoints stay whole; --resume continues", function()
  local dir = folder("kill")
  local args = ("%s/scripts/train.lua %s -d toy -m Failing -b 16 -e 300"):format(H.here, COMMON)
  os.execute(("cd %s && (%s mpirun --oversubscribe -np 2 %s %s > log 2>&1; echo \"exit=$?\" >> log) &"):format(dir,
    H.env, H.exe, args))
  local last = dir .. "/checkpoints/toy_Failing_SGD.last.safetensors"
  expect(wait_for(function() return fmd.sys.is_file(last) and fmd.sys.is_file(dir .. "/pid.1") end, 60),
    "no epoch ended within 60 s")
  local pid = H.read(dir .. "/pid.1")
  local t0 = fmd.sys.now()
  os.execute("kill -9 " .. pid)
  local ended = wait_for(function() return H.read(dir .. "/log"):find("exit=%d+") ~= nil end, 30)
  local secs = fmd.sys.now() - t0
  local log = H.read(dir .. "/log")
  expect(ended, "the job still runs 30 s after the kill:\n" .. log)
  expect(secs < 10, ("the job ended %.1f s after the kill"):format(secs))
  expect(not log:find("exit=0", 1, true), log)
  expect(log:find("rank 1", 1, true) and log:find("signal 9", 1, true), log)
  -- every file under its final name is complete
  local _, meta = fmd.load_safetensors(last)
  local epoch = tonumber(meta.epoch)
  expect(epoch >= 1)
  fmd.load_safetensors(dir .. "/checkpoints/toy_Failing_SGD.safetensors")
  local runs = json.read_file(dir .. "/out/toy_Failing_SGD.json")
  expect(#runs[1].train_loss >= epoch, "the log has every saved epoch")
  -- a resume with one process is refused (another global batch), with two it continues
  local resume = ("scripts/train.lua %s -d toy -m Failing -b 16 --resume -e %d"):format(COMMON, epoch + 1)
  local out, code = H.fmd(resume, {cwd = dir})
  expect_eq(code, 1, out)
  expect(out:find("this command gives 1 process (the run used 2 processes)", 1, true), out)
  out, code = H.mpirun(2, resume, {cwd = dir})
  expect_eq(code, 0, out)
  expect(out:find(("resumed toy_Failing_SGD after epoch %d"):format(epoch), 1, true), out)
  expect_eq(#json.read_file(dir .. "/out/toy_Failing_SGD.json")[1].train_loss, epoch + 1)
  for _, d in ipairs{"/checkpoints", "/out"} do
    for _, name in ipairs(ls(dir .. d)) do expect(not name:find("%.tmp$"), "left behind: " .. name) end
  end
end)

-- a 2-rank training whose rank 1 fails at its second step (FAIL_MODE);
-- it must end, non-zero, within 20 s. Returns its output and folder.
local function failing_run(mode, env)
  local dir = folder(mode)
  local out, code, secs = H.mpirun(2, ("scripts/train.lua %s -d toy -m Failing -b 16 -e 1"):format(COMMON),
    {cwd = dir, env = "FAIL_MODE=" .. mode .. " " .. (env or "")})
  expect(code ~= 0, out)
  expect(secs < 20, ("took %.1f s"):format(secs))
  return out, dir
end

test("an error on one rank ends the job at once with 'rank R: <error>'", function()
  local out = failing_run("error")
  expect(out:find("fmd: rank 1: rank one's model failed on purpose", 1, true), out)
  expect(not out:find("traceback", 1, true), out)
end)

test("a rank that hangs: the others' watchdog ends the job after FMD_DIST_TIMEOUT", function()
  local out, dir = failing_run("hang", "FMD_DIST_TIMEOUT=2")
  expect(out:find("fmd: rank 0: dist%.[%w_]+ did not complete within 2 s %(FMD_DIST_TIMEOUT%)"), out)
  local pid = H.read(dir .. "/pid.1")
  expect(wait_for(function() return not os.execute("kill -0 " .. pid .. " 2>/dev/null") end, 10),
    "the hanging rank still runs 10 s after the job ended")
end)
