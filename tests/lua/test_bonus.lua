-- The bonus model: every design builds, stays under the size budget and
-- takes any input size; MACs are counted right; train_bonus.lua never reads
-- the test split (it trains with no test folder at all); bonus_main.lua
-- writes its metrics and the trade-off figure; mistakes are one line.
local fmd = require "fmd"
local json = require "fmd.json"
local models = require "fmd.models"

local tmp, run = script_sandbox()

local Bonus = models.class("bonus")

test("every design builds, is under 1 % of SimpleNet and maps (B,3,H,W) to (B,2)", function()
  local simple = models.get_nof_params(models.load_model("SimpleNet"))
  local names = {}
  for name in pairs(Bonus.DESIGNS) do names[#names + 1] = name end
  table.sort(names)
  expect(#names >= 3, "fewer than three designs")
  for _, name in ipairs(names) do
    local m = models.load_model("bonus", {design = name})
    local n = models.get_nof_params(m)
    expect(n <= simple // 100, ("design %s has %d parameters, more than 1 %% of SimpleNet's %d"):format(name, n, simple))
    m:eval()
    for _, size in ipairs{256, 224} do
      local y = fmd.no_grad(function() return m(fmd.randn(2, 3, size, size)) end)
      expect(y:dim() == 2 and y:size(1) == 2 and y:size(2) == 2, ("%s on %dx%d gives %s"):format(name, size, size, fmd.shape_str(y)))
    end
  end
  -- Meso-4 by hand: convs (no bias) + BN (2 per channel) + fc 1024->16->2
  local meso = 3 * 8 * 9 + 8 * 8 * 25 + 8 * 16 * 25 + 16 * 16 * 25 + 2 * (8 + 8 + 16 + 16) + 1024 * 16 + 16 + 16 * 2 + 2
  expect_eq(models.get_nof_params(models.load_model("bonus", {design = "meso4"})), meso, "meso4 parameters")
  expect_error(function() models.load_model("bonus", {design = "nope"}) end, "unknown design 'nope' (known: ")
end)

test("count_macs counts convolutions and linear layers", function()
  -- SimpleNet at 256: conv outputs 250^2*6, 119^2*16, 53^2*24 times in*k*k, then the three fc layers
  local want = 250 * 250 * 6 * 3 * 49 + 119 * 119 * 16 * 6 * 49 + 53 * 53 * 24 * 16 * 49
             + 24 * 26 * 26 * 1024 + 1024 * 256 + 256 * 2
  local m = models.load_model("SimpleNet")
  m:train()
  expect_eq(models.count_macs(m, {1, 3, 256, 256}), want, "SimpleNet MACs")
  expect(m.training, "count_macs left the model in eval mode")
  expect_eq(models.count_macs(m, {2, 3, 256, 256}), 2 * want, "batch of two")
end)

test("my_bonus_model without a checkpoint says how to make one", function()
  expect_error(function() Bonus.my_bonus_model(tmp .. "/none.safetensors") end, "train it with: fmd scripts/train_bonus.lua")
end)

test("train_bonus never reads the test split; bonus_main evaluates and plots", function()
  local root = tmp .. "/data"
  local out, code = run("make_faces.lua", ("--out %s --seed 2 --train 16 --val 8 --test 12 --threads 1 --only fakes_dataset"):format(root))
  expect(code == 0, out)
  -- hide the test split while training: any read of it would fail
  os.rename(root .. "/fakes_dataset/test", root .. "/hidden_test")
  out, code = run("train_bonus.lua", ("--data-root %s -d fakes_dataset -e 2 -b 8 --workers 1 --threads 1"):format(root))
  expect(code == 0, "train_bonus failed without a test split:\n" .. out)
  expect(out:find("the test split is not read", 1, true), out)
  os.rename(root .. "/hidden_test", root .. "/fakes_dataset/test")
  expect(fmd.sys.is_file(tmp .. "/checkpoints/bonus.safetensors"), "no checkpoint")
  local log = json.read_file(tmp .. "/out/bonus_fakes_dataset_" .. Bonus.CHOSEN .. ".json")
  expect_eq(#log.val_auc, 2, "epochs logged")
  expect(log.lr[2] < log.lr[1], "the learning rate did not decay")
  local rows = json.read_file(tmp .. "/out/bonus_designs.json")
  expect_eq(#rows, 1, "design rows")
  expect_eq(rows[1].design, Bonus.CHOSEN, "design row")

  out, code = run("bonus_main.lua", ("--data-root %s -d fakes_dataset --latency-runs 3 --threads 1"):format(root))
  expect(code == 0, out)
  local m = json.read_file(tmp .. "/out/bonus_metrics.json")
  expect_eq(m.test_images, 12, "test images")
  expect(m.test_auc >= 0 and m.test_auc <= 1, "AUC " .. tostring(m.test_auc))
  expect_eq(m.params, models.get_nof_params(models.load_model("bonus")), "params")
  expect(m.flops == 2 * m.macs and m.latency_ms > 0, "flops/latency")
  local img = fmd.load_image(tmp .. "/figures/bonus_tradeoff.png")
  expect(img:size(3) >= 600, "figure width " .. img:size(3))

  -- another design goes to its own file, and loads by name alone: the
  -- design is saved with the weights
  out, code = run("train_bonus.lua", ("--data-root %s -d fakes_dataset -e 1 -b 8 --workers 1 --threads 1 --design meso4_gap"):format(root))
  expect(code == 0, out)
  local path = tmp .. "/checkpoints/bonus_meso4_gap_course.safetensors"
  local gap = fmd.load_model("bonus", path)
  expect_eq(gap.design_name, "meso4_gap", "design rebuilt from the checkpoint")
  expect_eq(models.get_nof_params(gap), models.get_nof_params(models.load_model("bonus", {design = "meso4_gap"})), "params")
  expect_eq(#json.read_file(tmp .. "/out/bonus_designs.json"), 2, "design rows after a second design")

  -- mistakes: an unknown design, a missing data set
  out, code = run("train_bonus.lua", "--design huge")
  expect(code ~= 0 and out:find("huge", 1, true) and not out:find("traceback", 1, true), out)
  out, code = run("bonus_main.lua", ("--data-root %s -d no_such_set"):format(root))
  expect(code ~= 0 and out:find("no_such_set", 1, true) and not out:find("traceback", 1, true), out)
end)

os.execute("rm -rf '" .. tmp .. "'")
