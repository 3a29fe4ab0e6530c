-- Trainer and scripts/train.lua on a tiny learnable data set: log layout,
-- checkpoints in safetensors, resume equals an uninterrupted run, a NaN
-- loss stops the run and keeps the last good checkpoint, CLI errors.
local fmd = require "fmd"
local data = require "fmd.data"
local nn = require "fmd.nn"
local optim = require "fmd.optim"
local json = require "fmd.json"
local Trainer = require "fmd.trainer"

local tmp = os.tmpname()
os.remove(tmp)
local function sh(cmd) assert(os.execute(cmd), cmd) end

-- real images are dark, fake images bright: any model can learn it
local function make_set(root)
  fmd.manual_seed(5)
  for _, part in ipairs{{"train", 12, 6}, {"val", 4, 4}, {"test", 4, 4}} do
    for _, cls in ipairs{{"real", part[2], 0.2}, {"fake", part[3], 0.7}} do
      local dir = ("%s/toy/%s/%s"):format(root, part[1], cls[1])
      fmd.sys.mkdir(dir)
      for i = 1, cls[2] do
        fmd.save_image(("%s/%03d.png"):format(dir, i), fmd.rand(3, 32, 32) * 0.2 + cls[3])
      end
    end
  end
end
make_set(tmp)

-- a tiny model on 3x256x256 input: pool to 4x4, then linear
local Tiny = nn.Module:extend("Tiny")
function Tiny:__init()
  self.pool = nn.AdaptiveAvgPool2d(4)
  self.fc = nn.Linear(48, 2)
end
function Tiny:forward(x) return self.fc(self.pool(x):flatten(2)) end

local function datasets()
  local o = {data_root = tmp}
  return data.load_dataset("toy", "train", o), data.load_dataset("toy", "val", o), data.load_dataset("toy", "test", o)
end

local RUN = {model_name = "Tiny", dataset_name = "toy", optimizer_name = "Adam", optimizer_params = {lr = 0.05}}

local function trainer(dir, criterion)
  fmd.manual_seed(3)
  local m = Tiny()
  local tr, va, te = datasets()
  return Trainer.new(m, optim.Adam(m:parameters(), {lr = 0.05}), criterion or nn.CrossEntropyLoss(), 4, tr, va, te,
    {num_workers = 1, seed = 0, print = function() end, checkpoint_dir = dir .. "/checkpoints", out_dir = dir .. "/out"})
end

test("run: learns, logs in the course layout, checkpoints in safetensors", function()
  local dir = tmp .. "/a"
  local t = trainer(dir)
  t:run(3, RUN)
  local runs = json.read_file(dir .. "/out/toy_Tiny_Adam.json")
  expect_eq(#runs, 1)
  local r = runs[1]
  expect_eq(r.model, "Tiny"); expect_eq(r.dataset, "toy")
  expect_eq(r.optimizer.name, "Adam"); expect_eq(r.optimizer.params.lr, 0.05)
  for _, k in ipairs{"train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"} do
    expect_eq(#r[k], 3, k)
  end
  expect(r.train_acc[3] > 80, "train accuracy " .. r.train_acc[3])
  expect_eq(r.test_acc[3], 100)
  local tensors, meta = fmd.load_safetensors(dir .. "/checkpoints/toy_Tiny_Adam.safetensors")
  expect(tensors["fc.weight"] and tensors["fc.bias"])
  expect_eq(meta.model, "Tiny"); expect_eq(meta.dataset, "toy"); expect_eq(meta.optimizer, "Adam")
  expect(tonumber(meta.val_acc) > 0 and tonumber(meta.epoch) >= 1)
  -- a second run is appended to the same log
  trainer(dir):run(1, RUN)
  expect_eq(#json.read_file(dir .. "/out/toy_Tiny_Adam.json"), 2)
end)

test("evaluate_model_on_dataloader records no graph", function()
  local t = trainer(tmp .. "/e")
  local loss, acc = t:evaluate_model_on_dataloader(t.test_dataset)
  expect(loss > 0 and acc >= 0 and acc <= 100)
  for _, p in ipairs(t.model:parameters()) do expect(p.grad == nil) end
end)

test("resume continues a run exactly", function()
  local full = trainer(tmp .. "/full")
  full:run(3, RUN)
  local part = trainer(tmp .. "/part")
  part:run(2, RUN)
  local resumed = trainer(tmp .. "/part")
  resumed:resume(RUN)
  expect_eq(resumed.epoch, 2)
  resumed:run(3, RUN)
  expect_near(resumed.model.fc.weight, full.model.fc.weight, 1e-6)
  local runs = json.read_file(tmp .. "/part/out/toy_Tiny_Adam.json")
  expect_eq(#runs, 1, "the resumed run continues its log entry")
  expect_eq(#runs[1].val_acc, 3)
end)

test("resume checks every value of the saved state: one error naming the file and the field", function()
  local state_io = require "fmd.state_io"
  local dir = tmp .. "/badstate"
  trainer(dir):run(1, RUN)
  local last = dir .. "/checkpoints/toy_Tiny_Adam.last.safetensors"
  local groups, meta = state_io.load(last)
  -- the saved state with one change, then a resume that must refuse it
  local function refused(change, want)
    local m = json.decode(json.encode(meta))   -- a deep copy
    local g = {model = groups.model, optimizer = groups.optimizer}
    change(m, g)
    state_io.save(last, g, m)
    local err = expect_error(function() trainer(dir):resume(RUN) end, want)
    expect(err:find("--resume: " .. last, 1, true) and not err:find("\n"), err)
  end
  refused(function(m) m.epoch = -3 end, "'epoch' is -3, expected an integer >= 1 and <= 1000000")
  refused(function(m) m.epoch = 2.5 end, "'epoch' is 2.5, expected an integer")
  refused(function(m) m.epoch = 2 end, "'train_loss' is a list, expected a list of numbers of 2 values (it has 1)")
  refused(function(m) m.best_acc = 250 end, "'best_acc' is 250, expected a number >= 0 and <= 100")
  refused(function(m) m.lr = "fast" end, "'lr' is 'fast', expected a number > 0")
  refused(function(m) m.lr = 0 end, "'lr' is 0, expected a number > 0")
  refused(function(m) m.batch_size = 0 end, "'batch_size' is 0, expected an integer >= 1")
  refused(function(m) m.log_index = -1 end, "'log_index' is -1, expected an integer >= 1")
  refused(function(m) m.log = nil end, "'log' is missing, expected an object or a list")
  refused(function(m) m.log.val_acc = {"x"} end, "(metadata 'log'): 'val_acc' value 1 is 'x', expected a number")
  refused(function(m) m.log.train_loss = {-1} end, "'train_loss' value 1 is -1, expected a number >= 0")
  refused(function(m) m.log.model = "Other" end, "the saved state is of Other on toy, not of this run (Tiny on toy)")
  refused(function(_, g) g.optimizer = nil end, "holds no optimizer state (not a resumable state)")
  -- the intact state still resumes
  state_io.save(last, groups, meta)
  local t = trainer(dir)
  t:resume(RUN)
  expect_eq(t.epoch, 1)
end)

test("Trainer.read_log: the last run of a log, checked; best_epoch is the first best val acc", function()
  local p = tmp .. "/log.json"
  json.write_file(p, {{train_loss = {1, 0.5}, val_loss = {1, 1}, test_loss = {1, 1}, train_acc = {50, 60},
                       val_acc = {70, 70}, test_acc = {1, 2}}})
  local r = Trainer.read_log(p)
  expect_eq(Trainer.best_epoch(r), 1)
  r.select, r.val_auc = "val_auc", {0.5, 0.75}   -- a run trained with --select val_auc
  expect_eq(Trainer.best_epoch(r), 2)
  json.write_file(p, {{train_loss = {1}, val_loss = {1}, test_loss = {1}, train_acc = {50}, val_acc = {50},
                       test_acc = {50}, test_auc = {1.5}}})
  expect_error(function() Trainer.read_log(p) end,
    "training log " .. p .. ", last run: 'test_auc' value 1 is 1.5, expected a number >= 0 and <= 1")
  json.write_file(p, {{train_loss = {1}, val_loss = {1}, test_loss = {1}, train_acc = {50}, val_acc = {50},
                       test_acc = {50}, select = "auc"}})
  expect_error(function() Trainer.read_log(p) end, "'select' must be \"val_acc\" or \"val_auc\", got \"auc\"")
  json.write_file(p, {})
  expect_error(function() Trainer.read_log(p) end, "holds no runs")
  expect_error(function() Trainer.read_log(tmp .. "/none.json") end, "none.json: no such file")
end)

test("a NaN loss stops the run and keeps the last good checkpoint", function()
  local dir = tmp .. "/nan"
  local calls = 0
  local ce = nn.CrossEntropyLoss()
  local t = trainer(dir, function(logits, labels)
    calls = calls + 1
    local l = ce(logits, labels)
    if calls > 8 then return l * (0 / 0) end   -- second epoch diverges
    return l
  end)
  expect_error(function() t:run(3, RUN) end, "training diverged: loss is")
  expect(fmd.sys.is_file(dir .. "/checkpoints/toy_Tiny_Adam.safetensors"))
  local _, meta = fmd.load_safetensors(dir .. "/checkpoints/toy_Tiny_Adam.safetensors")
  expect_eq(tonumber(meta.epoch), 1)
end)

local exe = package.fmd_exe
local here = io.popen("pwd"):read("l")   -- the source tree (ctest runs tests there)
local function train_cli(args)
  local p = io.popen(("cd %s && %s %s/scripts/train.lua %s 2>&1; echo \"exit=$?\""):format(tmp, exe,
    here, args))
  local out = p:read("a"); p:close()
  return out
end

test("train.lua: bad flags and names are clear errors", function()
  local out = train_cli("--modle SimpleNet")
  expect(out:find("unknown flag '--modle' (did you mean --model?)", 1, true), out)
  expect(out:find("exit=1", 1, true), out)
  out = train_cli("-m simplenet")
  expect(out:find("did you mean SimpleNet?", 1, true), out)
  out = train_cli("-o adam")
  expect(out:find("allowed: SGD, Adam", 1, true), out)
  out = train_cli("-e zero")
  expect(out:find("flag --epochs expects an integer, got 'zero'", 1, true), out)
  out = train_cli("--data-root " .. tmp .. " -d nosuch")
  expect(out:find("nosuch", 1, true) and out:find("exit=1", 1, true), out)
  expect(train_cli("--help"):find("--batch_size, -b", 1, true))
end)

test("train.lua: a killed run resumes with --resume", function()
  local common = ("--data-root %s -d toy -b 4 -o Adam --lr 0.05 --workers 1"):format(tmp)
  -- a model file in the user's folder, found by name
  fmd.sys.mkdir(tmp .. "/models")
  local f = assert(io.open(tmp .. "/models/Tiny.lua", "w"))
  f:write([[local nn = require "fmd.nn"
local Tiny = nn.Module:extend("Tiny")
function Tiny:__init() self.pool = nn.AdaptiveAvgPool2d(4); self.fc = nn.Linear(48, 2) end
function Tiny:forward(x) return self.fc(self.pool(x):flatten(2)) end
return Tiny
]])
  f:close()
  local out = train_cli(common .. " -m Tiny -e 1")
  expect(out:find("exit=0", 1, true), out)
  out = train_cli(common .. " -m Tiny -e 3 --resume")
  expect(out:find("resumed toy_Tiny_Adam after epoch 1", 1, true), out)
  expect(out:find("Epoch 3/3", 1, true) and not out:find("Epoch 1/3", 1, true), out)
  expect(out:find("best epoch", 1, true) and out:find("exit=0", 1, true), out)
  local runs = json.read_file(tmp .. "/out/toy_Tiny_Adam.json")
  expect_eq(#runs[#runs].train_loss, 3)
  -- what the run started from and its batch size are recorded, for the report
  expect_eq(runs[#runs].init, "random")
  expect_eq(runs[#runs].batch_size, 4)
  local _, meta = fmd.load_safetensors(tmp .. "/checkpoints/toy_Tiny_Adam.safetensors")
  expect_eq(meta.init, "random")
end)

-- ------------------------------------------------ crash-safe runs (issue 12)
local function trainer_with_log(dir, lines, sets)
  fmd.manual_seed(3)
  local m = Tiny()
  local tr, va, te = datasets()
  if sets then tr, va, te = sets[1] or tr, sets[2] or va, sets[3] or te end
  return Trainer.new(m, optim.Adam(m:parameters(), {lr = 0.05}), nn.CrossEntropyLoss(), 4, tr, va, te,
    {num_workers = 1, seed = 0, print = function(l) lines[#lines + 1] = l end,
     checkpoint_dir = dir .. "/checkpoints", out_dir = dir .. "/out"})
end
local function read(path) local f = assert(io.open(path, "rb")); local s = f:read("a"); f:close(); return s end
local function write(path, s) local f = assert(io.open(path, "wb")); f:write(s); f:close() end
local function corrupt_files(dir)
  local out = {}
  for _, n in ipairs(fmd.sys.listdir(dir)) do if n:find(".corrupt-", 1, true) then out[#out + 1] = n end end
  return out
end

test("a log that does not parse is moved aside with a message, never replaced", function()
  local dir = tmp .. "/corrupt"
  trainer(dir):run(1, RUN)
  local log = dir .. "/out/toy_Tiny_Adam.json"
  local good = read(log)
  write(log, good:sub(1, 40) .. "x" .. good:sub(42))   -- a one-character typo
  local broken = read(log)
  local lines = {}
  trainer_with_log(dir, lines):run(1, RUN)
  local aside = corrupt_files(dir .. "/out")
  expect_eq(#aside, 1)
  expect_eq(read(dir .. "/out/" .. aside[1]), broken)
  local msg = table.concat(lines, "\n")
  expect(msg:find("cannot be read", 1, true) and msg:find("at byte", 1, true) and msg:find(aside[1], 1, true), msg)
  expect_eq(#json.read_file(log), 1)
  -- a log that parses but is not a list of runs is kept too
  write(log, '{"model": "mine"}')
  trainer_with_log(dir, {}):run(1, RUN)
  expect_eq(#corrupt_files(dir .. "/out"), 2)
end)

test("a new run keeps the earlier run's best checkpoint as .prev; stale .tmp files are removed", function()
  local dir = tmp .. "/prev"
  trainer(dir):run(1, RUN)
  local best = dir .. "/checkpoints/toy_Tiny_Adam.safetensors"
  local first = read(best)
  write(best .. ".tmp", "half a file")
  write(dir .. "/out/toy_Tiny_Adam.json.tmp", "[")
  local lines = {}
  trainer_with_log(dir, lines):run(2, RUN)
  local msg = table.concat(lines, "\n")
  expect_eq(read(dir .. "/checkpoints/toy_Tiny_Adam.prev.safetensors"), first)
  expect(msg:find("kept the earlier run's checkpoint", 1, true), msg)
  expect(not fmd.sys.is_file(best .. ".tmp") and not fmd.sys.is_file(dir .. "/out/toy_Tiny_Adam.json.tmp"))
  expect(msg:find("removed " .. best .. ".tmp, left by an interrupted write", 1, true), msg)
  -- the second epoch of the same run does not move its own checkpoint aside
  local n = 0
  for _, l in ipairs(lines) do if l:find("kept the earlier", 1, true) then n = n + 1 end end
  expect_eq(n, 1)
  expect(msg:find("epoch 1/2 batch 5/5 | loss", 1, true), msg)   -- issue 14's progress line
end)

test("empty splits and a one-class test split are clear errors before training", function()
  local root = tmp .. "/bad"
  for _, part in ipairs{"train", "val", "test"} do
    for _, cls in ipairs{"real", "fake"} do fmd.sys.mkdir(("%s/empty/%s/%s"):format(root, part, cls)) end
  end
  local o = {data_root = root}
  local e = data.load_dataset("empty", "train", o)
  local tr, va, te = datasets()
  expect_error(function() trainer_with_log(tmp .. "/bad1", {}, {e}):run(1, RUN) end, "the train split has no images in")
  expect_error(function() trainer_with_log(tmp .. "/bad1", {}, {nil, e}):run(1, RUN) end, "the validation split has no images")
  -- test split with only fake images
  fmd.sys.mkdir(root .. "/onecls/test/real"); fmd.sys.mkdir(root .. "/onecls/test/fake")
  fmd.save_image(root .. "/onecls/test/fake/1.png", fmd.rand(3, 8, 8))
  local one = data.load_dataset("onecls", "test", o)
  expect_error(function() trainer_with_log(tmp .. "/bad1", {}, {nil, nil, one}):run(1, RUN) end,
    "has only fake images (0 real, 1 fake): the AUC needs both classes")
  expect(not fmd.sys.is_file(tmp .. "/bad1/checkpoints/toy_Tiny_Adam.safetensors"))
end)

test("train.lua: resume with other --lr or -b is an error unless --force; --resume=yes; --pretrained", function()
  local common = ("--data-root %s -d toy -o Adam --workers 1 -m Tiny"):format(tmp)
  local out = train_cli(common .. " -b 4 --lr 0.05 -e 1")
  expect(out:find("exit=0", 1, true), out)
  out = train_cli(common .. " -b 4 --lr 0.01 -e 2 --resume")
  expect(out:find("this command gives --lr 0.01 (the run used 0.05)", 1, true) and out:find("exit=1", 1, true), out)
  out = train_cli(common .. " -b 8 --lr 0.05 -e 2 --resume=yes")
  expect(out:find("-b 8 (the run used 4)", 1, true) and out:find("exit=1", 1, true), out)
  out = train_cli(common .. " -b 8 --lr 0.05 -e 2 --resume=yes --force")
  expect(out:find("--force: continuing with -b 8", 1, true) and out:find("resumed toy_Tiny_Adam after epoch 1", 1, true)
    and out:find("exit=0", 1, true), out)
  out = train_cli(common .. " -e 2 --resume=maybe")
  expect(out:find("flag --resume takes no value (or =yes/=no), got 'maybe'", 1, true) and out:find("exit=1", 1, true), out)
  out = train_cli(common .. " -e 2 --force")
  expect(out:find("--force only applies to --resume", 1, true), out)
  out = train_cli(("--data-root %s -d toy -m SimpleNet --pretrained x.pth"):format(tmp))
  expect(out:find("--pretrained loads weights into XceptionBased or MobileNetBased; SimpleNet is trained from scratch", 1, true)
    and out:find("exit=1", 1, true) and not out:find("traceback", 1, true), out)
end)

test("one truncated image is skipped with a warning naming it and counted, not fatal", function()
  local root = tmp .. "/trunc"
  sh(("mkdir -p %s/truncroot && cp -r %s/toy %s/truncroot/"):format(tmp, tmp, tmp))
  local bad = tmp .. "/truncroot/toy/train/fake/003.png"
  local png = read(bad)
  write(bad, png:sub(1, #png // 2))          -- truncated after the scan
  local o = {data_root = tmp .. "/truncroot"}
  local tr = data.load_dataset("toy", "train", o)
  expect_eq(#tr, 18)
  local lines = {}
  local log = trainer_with_log(root, lines, {tr}):run(1, RUN)
  local msg = table.concat(lines, "\n")
  expect(msg:find("warning: skipping an image: loader: image '" .. bad .. "'", 1, true), msg)
  expect(msg:find("| 1 unreadable images skipped", 1, true), msg)
  expect_eq(#log.train_loss, 1)
  expect(log.train_loss[1] == log.train_loss[1], "loss is a number")
end)

test("a cosine schedule steps with every batch and resumes where it was; select = val_auc", function()
  local function sched_trainer(dir)
    local t = trainer(dir)
    local s = optim.CosineAnnealingLR(t.optimizer, 3 * 5)   -- 18 images in batches of 4: 5 steps an epoch
    t.scheduler, t.select = s, "val_auc"
    return t, s
  end
  local full, fs = sched_trainer(tmp .. "/cos_full")
  full:run(3, RUN)
  expect_eq(fs.last_epoch, 15)
  expect(math.abs(full.optimizer.param_groups[1].lr) < 1e-12, "the lr ends at 0")
  local part = sched_trainer(tmp .. "/cos_part")
  part:run(2, RUN)
  local resumed, rs = sched_trainer(tmp .. "/cos_part")
  resumed:resume(RUN)
  expect_eq(rs.last_epoch, 10)
  expect_near(resumed.optimizer.param_groups[1].lr, 0.05 * (1 + math.cos(math.pi * 10 / 15)) / 2, 1e-9)
  resumed:run(3, RUN)
  expect_near(resumed.model.fc.weight, full.model.fc.weight, 1e-6)
  local r = json.read_file(tmp .. "/cos_full/out/toy_Tiny_Adam.json")[1]
  expect_eq(#r.val_auc, 3)
  -- the checkpoint holds the epoch with the best validation AUC (the first of ties)
  local best = 1
  for i, v in ipairs(r.val_auc) do if v > r.val_auc[best] then best = i end end
  local _, meta = fmd.load_safetensors(tmp .. "/cos_full/checkpoints/toy_Tiny_Adam.safetensors")
  expect_eq(tonumber(meta.epoch), best)
  expect_near(tonumber(meta.val_auc), r.val_auc[best], 1e-9)
  expect_error(function() Trainer.new(Tiny(), full.optimizer, nn.CrossEntropyLoss(), 4, nil, nil, nil,
    {select = "auc"}) end, "Trainer: select must be 'val_acc' or 'val_auc', got auc")
end)

test("select picks the checkpoint epoch by validation AUC or by accuracy", function()
  -- validation results by epoch: the AUC is best at epoch 2, the accuracy at 3
  local labels = {0, 0, 1, 1}
  local VAL = {{acc = 75, scores = {0.1, 0.9, 0.2, 0.8}},    -- AUC 0.5
               {acc = 50, scores = {0.0, 0.1, 0.8, 0.9}},    -- AUC 1
               {acc = 100, scores = {0.1, 0.5, 0.2, 0.8}}}   -- AUC 0.75
  for _, case in ipairs{{"val_auc", 2}, {"val_acc", 3}} do
    local dir = tmp .. "/select_" .. case[1]
    local t = trainer(dir)
    t.select = case[1]
    t.validate = function(self) local v = VAL[self.epoch + 1]; return 0.5, v.acc, v.scores, labels end
    local log = t:run(3, RUN)
    expect_near(log.val_auc[2], 1, 1e-12); expect_near(log.val_auc[3], 0.75, 1e-12)
    local _, meta = fmd.load_safetensors(dir .. "/checkpoints/toy_Tiny_Adam.safetensors")
    expect_eq(tonumber(meta.epoch), case[2], case[1] .. " checkpoint epoch")
    -- the log says which metric chose it, and best_epoch (train.lua, the report) follows it
    local r = Trainer.read_log(dir .. "/out/toy_Tiny_Adam.json")
    expect_eq(r.select, case[1])
    expect_eq(Trainer.best_epoch(r), case[2], case[1] .. " best_epoch")
  end
end)

sh("rm -rf '" .. tmp .. "'")
