-- Checkpoints in one call: m:save / m:load (safetensors, .pth import),
-- fmd.load_model with its mismatch error; the clock-seeded generator.
local fmd = require "fmd"
local nn = fmd.nn
local exe = package.fmd_exe

local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"exit=$?\""))
  local out = p:read("a"); p:close()
  return out
end

local function tmpdir()
  local d = os.tmpname(); os.remove(d); fmd.sys.mkdir(d); return d
end

local Net = nn.Module:extend("Net")
function Net:__init()
  self.conv1 = nn.Conv2d(2, 3, 3)
  self.bn1 = nn.BatchNorm2d(3)
  self.fc = nn.Linear(3, 2)
end

test("m:save then m:load gives the same weights; metadata records the model; no temporary left", function()
  local d = tmpdir()
  local a, b = Net(), Net()
  a.bn1.running_mean:fill(0.25)
  expect(rawequal(a:save(d .. "/net.safetensors", {epoch = 3}), a))
  local self_, meta = b:load(d .. "/net.safetensors")
  expect(rawequal(self_, b))
  expect_eq(meta.model, "Net"); expect_eq(meta.epoch, 3)
  for k, t in pairs(a:state_dict()) do expect_near(b:state_dict()[k], t, 0, k) end
  expect(not fmd.sys.is_file(d .. "/net.safetensors.tmp"))
  local names = fmd.sys.listdir(d)
  expect_eq(#names, 1)
  os.execute("rm -rf " .. d)
end)

test("m:load imports a PyTorch .pth (zip and legacy), strict = false for extra tensors", function()
  for _, f in ipairs{"state_zip.pth", "state_legacy.pth"} do
    local path = "tests/fixtures/pth/" .. f
    local m = Net()
    local err = expect_error(function() m:load(path) end, "checkpoint " .. path .. " does not fit model Net")
    expect(err:find("Unexpected key(s)", 1, true) and err:find("extra.half", 1, true), err)
    expect(not err:find("\n"), "one line: " .. err)
    m:load(path, false)
    local sd = fmd.load_pth(path)
    expect_near(m.conv1.weight, sd["conv1.weight"], 0)
    expect_near(m.bn1.running_var, sd["bn1.running_var"], 0)
    expect_near(m.fc.bias, sd["fc.bias"], 0)
  end
end)

test("m:load errors name the file: missing, a folder, not a checkpoint, another model", function()
  local m = Net()
  expect_error(function() m:load("nope.safetensors") end, "checkpoint nope.safetensors: no such file")
  expect_error(function() m:load("tests") end, "checkpoint tests: is a folder, not a file")
  expect_error(function() m:load("tests/fixtures/metrics.json") end, "checkpoint tests/fixtures/metrics.json: ")
  expect_error(function() m:load(42) end, "checkpoint: expected a file name, got number")
  local d = tmpdir()
  nn.Sequential(nn.Linear(2, 2)):save(d .. "/seq.safetensors")
  local err = expect_error(function() m:load(d .. "/seq.safetensors") end,
    "does not fit model Net (it was saved from Sequential): ")
  expect(err:find('Missing key(s) in state_dict: "conv1.weight"', 1, true), err)
  -- nothing was copied: a failed load leaves the model as it was
  local before = m.fc.weight:clone()
  pcall(m.load, m, d .. "/seq.safetensors")
  expect_near(m.fc.weight, before, 0)
  os.execute("rm -rf " .. d)
end)

test("fmd.load_model builds, loads (eval mode) and names a mismatch in one line", function()
  local d = tmpdir()
  fmd.manual_seed(1)
  local a = fmd.models.load_model("SimpleNet")
  a:save(d .. "/s.safetensors")
  local m, meta = fmd.load_model("SimpleNet", d .. "/s.safetensors")
  expect(not m.training, "eval mode")
  expect_eq(meta.model, "SimpleNet")
  for k, t in pairs(a:state_dict()) do expect_near(m:state_dict()[k], t, 0, k) end
  -- a trainer checkpoint with optimizer state loads too (state_io layout)
  local opt = fmd.optim.Adam(a:parameters(), 0.01)
  for _, p in ipairs(a:parameters()) do p.grad = fmd.ones(p:size()) end
  opt:step()
  require("fmd.state_io").save(d .. "/last.safetensors", {model = a:state_dict(), optimizer = opt:state_dict()},
    {model = "SimpleNet"})
  local m2 = fmd.load_model("SimpleNet", d .. "/last.safetensors")
  expect_near(m2.fc3.weight, a.fc3.weight, 0)
  nn.Sequential(nn.Linear(2, 2)):save(d .. "/seq.safetensors", {model = "Tiny"})
  local out = run(("%s -e 'fmd.load_model(\"SimpleNet\", \"%s/seq.safetensors\")'"):format(exe, d))
  expect(out:find("does not fit model SimpleNet (it was saved from Tiny): Error(s) in loading state_dict", 1, true), out)
  expect(out:find("exit=1", 1, true) and not out:find("traceback", 1, true), out)
  local out2 = run(("%s -e 'fmd.load_model(\"NoSuchNet\", \"x\")'"):format(exe))
  expect(out2:find("unknown model 'NoSuchNet'", 1, true), out2)
  os.execute("rm -rf " .. d)
end)

test("the generator starts from the clock unless seeded; --seed and manual_seed repeat", function()
  local code = "'print(fmd.randn(1):item())'"
  local a, b = run(exe .. " -e " .. code), run(exe .. " -e " .. code)
  expect(a ~= b, "two runs drew the same number: " .. a)
  local s1, s2 = run(exe .. " --seed 7 -e " .. code), run(exe .. " --seed 7 -e " .. code)
  expect_eq(s1, s2)
  local m1 = run(exe .. " -e 'fmd.manual_seed(7); print(fmd.randn(1):item())'")
  expect_eq(m1, s1)
  expect(run(exe .. " -e 'print(fmd.initial_seed())' --seed 3"):find("^3\n"), "initial_seed after --seed")
  expect(run(exe .. " --seed x -e 1"):find("--seed needs an integer", 1, true))
  expect_error(function() fmd.manual_seed(1.5) end, "manual_seed: expected an integer seed, got 1.5")
  fmd.manual_seed(2.0); expect_eq(fmd.initial_seed(), 2)
end)
