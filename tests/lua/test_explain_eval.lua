-- fmd.explain.faithfulness (deletion and insertion curves) and
-- scripts/explain_eval.lua: exact curves of a linear model, the gradient
-- map beats a random one, masks remove exactly k/10 of the pixels (ties
-- too), the blur baseline, errors; the script end to end on a tiny
-- generated data set (table, JSON, figure, one-line mistakes).
local fmd = require "fmd"
local nn = require "fmd.nn"
local json = require "fmd.json"
local explain = require "fmd.explain"
local faithfulness = require "fmd.explain.faithfulness"

-- logits = (0, w . x + b): P(fake) = sigmoid(w . x + b), a known function of the pixels
local Lin = nn.Module:extend("Lin")
function Lin:__init(C, H, W) self.fc = nn.Linear(C * H * W, 2) end
function Lin:forward(x) return self.fc(x:flatten(2)) end

local C, H, W = 3, 8, 8
local function linear_model(seed, centred)
  fmd.manual_seed(seed)
  local m = Lin(C, H, W)
  local w = fmd.rand(1, C * H * W):pow(3) * (24 / (C * H * W))   -- positive, a few pixels matter most
  fmd.no_grad(function()
    m.fc.weight[1]:fill(0)
    m.fc.weight[2]:copy(w[1])
    m.fc.bias:fill(0)
    -- centred: P(fake) ~ 0.5 for x ~ U(0.5, 1), where the curves move most
    m.fc.bias[2] = centred and -0.75 * w:sum():item() or -1
  end)
  return m, w
end

local function sigmoid(z) return 1 / (1 + math.exp(-z)) end

test("linear model, zero baseline: the curves are the sigmoid of the remaining contributions", function()
  local m, w = linear_model(3)
  local x = fmd.rand(1, C, H, W) * 0.5 + 0.5
  local contrib = (x:view(C, H * W) * w:view(C, H * W)):sum(1):view(H, W)   -- per pixel, all channels
  local r = faithfulness.evaluate(m, x, contrib:view(1, H, W), {target = 1, baseline = 0})
  local cv = contrib:reshape(H * W):totable()
  table.sort(cv, function(a, b) return a > b end)
  local total = 0
  for _, v in ipairs(cv) do total = total + v end
  for k = 0, 10 do
    local n = math.floor(k * H * W / 10 + 0.5)
    local top = 0
    for i = 1, n do top = top + cv[i] end
    expect_near(r.deletion[1][k + 1], sigmoid(total - top - 1), 1e-5, "deletion step " .. k)
    expect_near(r.insertion[1][k + 1], sigmoid(top - 1), 1e-5, "insertion step " .. k)
  end
  expect_eq(#r.fractions, 11)
  expect_near(r.fractions[2], 0.1, 1e-12)
  expect_near(r.p[1], sigmoid(total - 1), 1e-5)
  expect_near(r.deletion_auc[1], faithfulness.auc(r.deletion[1]), 1e-12)
  expect_eq(r.targets[1], 1)
end)

test("the gradient map of a linear model falls faster than a random map (deletion) and rises faster (insertion)", function()
  local m = linear_model(5, true)
  local x = fmd.rand(6, C, H, W) * 0.5 + 0.5
  fmd.manual_seed(7)
  local rnd = fmd.rand(6, H, W)
  local function mean_aucs(map, base)
    local r = faithfulness.evaluate(m, x, map, {target = 1, baseline = base})
    local d, i = 0, 0
    for k = 1, 6 do d, i = d + r.deletion_auc[k], i + r.insertion_auc[k] end
    return d / 6, i / 6, r
  end
  -- zero baseline: removing a pixel removes w . x there, which |w| ranks (x > 0)
  local gd, gi, g = mean_aucs(explain.saliency(m, x, 1), 0)
  local rd, ri, r = mean_aucs(rnd, 0)
  for k = 1, 6 do expect(g.deletion_auc[k] < r.deletion_auc[k], "image " .. k) end
  expect(gd < rd - 0.02, ("deletion AUC gradient %.4f vs random %.4f"):format(gd, rd))
  expect(gi > ri + 0.02, ("insertion AUC gradient %.4f vs random %.4f"):format(gi, ri))
  -- mean and blur baselines: removing a pixel removes w . (x - baseline), which is
  -- what integrated gradients from that baseline gives for a linear model
  for _, name in ipairs{"mean", "blur"} do
    local b = name == "blur" and faithfulness.blur(x, 5) or (x:mean(4, true):mean(3, true) + fmd.zeros(x:size()))
    local ig = explain.integrated_gradients(m, x, 1, {baseline = b, steps = 4, reduce = "sum"})
    local id, ii = mean_aucs(ig, name)
    local zd, zi = mean_aucs(rnd, name)
    expect(id < zd - 0.01, ("%s: deletion AUC integrated gradients %.4f vs random %.4f"):format(name, id, zd))
    expect(ii > zi + 0.01, ("%s: insertion AUC integrated gradients %.4f vs random %.4f"):format(name, ii, zi))
  end
end)

test("masks: exactly round(k/10 N) pixels, the largest first, nested, also with ties", function()
  fmd.manual_seed(1)
  local distinct = fmd.rand(7, 9)
  local cam = distinct:gt(0.5) * distinct   -- about half exact zeros, like a CAM after ReLU
  for name, map in pairs{distinct = distinct, cam = cam, flat = fmd.zeros(7, 9)} do
    local masks = faithfulness.masks(map, 10)
    expect_eq(#masks, 11)
    local vals = map:reshape(63):totable()
    for k, mk in ipairs(masks) do
      local n = math.floor((k - 1) * 63 / 10 + 0.5)
      expect_eq(math.tointeger(mk:sum():item()), n, name .. " step " .. (k - 1))
      if k > 1 then
        expect_eq((mk - masks[k - 1]):min():item(), 0, name .. ": mask " .. k .. " contains mask " .. (k - 1))
      end
      -- no unmasked pixel is more relevant than a masked one
      local mv = mk:reshape(63):totable()
      local lo_in, hi_out = math.huge, -math.huge
      for i = 1, 63 do
        if mv[i] == 1 then lo_in = math.min(lo_in, vals[i]) else hi_out = math.max(hi_out, vals[i]) end
      end
      expect(n == 0 or n == 63 or lo_in >= hi_out, name .. " step " .. (k - 1))
    end
  end
  -- ties are not taken in raster order: the first tenth of a flat map is spread over the rows
  local m = faithfulness.masks(fmd.zeros(20, 20), 10)[2]
  expect(m:narrow(1, 1, 2):sum():item() < 40, "flat map: ties broken in raster order")
end)

test("blur: a constant image stays constant (borders too), a point spreads", function()
  local c = faithfulness.blur(fmd.full({1, 3, 12, 10}, 0.7), 2)
  expect_near(c, fmd.full({1, 3, 12, 10}, 0.7), 1e-6)
  local p = fmd.zeros(1, 1, 15, 15)
  p[1][1][8][8] = 1
  local b = faithfulness.blur(p, 1.5)
  expect(b[1][1][8][8] < 0.2 and b[1][1][8][9] > 0.01, "the point spreads")
  expect_near(b:sum():item(), 1, 1e-5)
end)

test("mean baseline: at 100 % deletion the image is its per-channel mean", function()
  local m = linear_model(9)
  local x = fmd.rand(2, C, H, W)
  local r = faithfulness.evaluate(m, x, fmd.rand(2, H, W), {target = {1, 0}, baseline = "mean"})
  local mean = x:mean(4, true):mean(3, true) + fmd.zeros(x:size())
  local p = fmd.no_grad(function() return fmd.softmax(m(mean), 2) end)
  expect_near(r.deletion[1][11], p[1][2], 1e-5)
  expect_near(r.deletion[2][11], p[2][1], 1e-5)
  expect_near(r.insertion[1][1], p[1][2], 1e-5)
  expect_near(r.deletion[1][1], r.p[1], 1e-6)
end)

test("the model's mode is restored and errors name the problem", function()
  local m = linear_model(2)
  m:train()
  local x = fmd.rand(2, C, H, W)
  faithfulness.evaluate(m, x, fmd.rand(2, H, W), {which = "deletion"})
  expect(m.training, "training mode restored")
  expect_error(function() faithfulness.evaluate(m, x, fmd.rand(2, H, 5)) end,
    "faithfulness: maps must be (2,8,8) for images [2 x 3 x 8 x 8], got [2 x 8 x 5]")
  expect_error(function() faithfulness.evaluate(m, x, fmd.rand(2, H, W), {baseline = "noise"}) end,
    "baseline must be \"blur\", \"mean\", a number or a tensor")
  local nan = fmd.rand(2, H, W)
  nan[1][2][3] = 0 / 0
  expect_error(function() faithfulness.evaluate(m, x, nan) end, "faithfulness: map has NaN")
  expect_error(function() faithfulness.evaluate(m, x, fmd.rand(2, H, W), {target = 3}) end, "target 3 of image 1")
  expect(m.training, "training mode restored after an error")
end)

---------------------------------------------------------------- the script

local tmp, run, ok_run = script_sandbox()

local ROOT = tmp .. "/data"
local setup_ok, setup_err = pcall(function()
  ok_run("make_faces.lua", ("--out %s --seed 3 --train 12 --val 6 --test 8 --threads 1 --only fakes_dataset"):format(ROOT))
  ok_run("train.lua", ("--data-root %s -d fakes_dataset -m SimpleNet -e 1 -b 8 -o Adam --workers 1"):format(ROOT))
end)
local COMMON = ("-m SimpleNet -d fakes_dataset --data-root %s -cpp checkpoints/fakes_dataset_SimpleNet_Adam.safetensors"):format(ROOT)

test("explain_eval.lua: the table, the JSON curves and areas, the figure", function()
  assert(setup_ok, setup_err)
  local out = ok_run("explain_eval.lua", COMMON .. " --n 5 -b 3 --methods saliency,gradcam,smoothgrad,random --sg-n 2 --baseline mean")
  for _, m in ipairs{"saliency", "gradcam", "smoothgrad", "random"} do
    expect(out:find("\n" .. m .. " ", 1, true), m .. " missing from the table:\n" .. out)
  end
  expect(out:find("SimpleNet on fakes_dataset test (5 images, mean baseline, target pred)", 1, true), out)
  local j = json.read_file(tmp .. "/out/fakes_dataset_SimpleNet_explain_eval.json")
  expect_eq(j.n_images, 5)
  expect_eq(j.baseline, "mean")
  expect_eq(#j.fractions, 11)
  for _, m in ipairs{"saliency", "gradcam", "smoothgrad", "random"} do
    local s = j.methods[m]
    expect(s, m)
    expect_eq(#s.deletion, 11, m)
    expect_eq(#s.insertion, 11, m)
    expect(s.deletion_auc >= 0 and s.deletion_auc <= 1 and s.insertion_auc >= 0 and s.insertion_auc <= 1, m)
    expect_near(s.difference, s.insertion_auc - s.deletion_auc, 1e-12, m)
    expect_near(faithfulness.auc(s.deletion), s.deletion_auc, 1e-6, m .. ": AUC of the mean curve")
    -- nothing removed = everything revealed (the clean image); the reverse is the baseline
    expect_near(s.deletion[1], s.insertion[11], 1e-6, m)
    expect_near(s.deletion[11], s.insertion[1], 1e-6, m)
    expect(s.ms_per_image >= 0, m)
  end
  -- every method sees the same images and target: the end points agree across methods
  expect_near(j.methods.saliency.deletion[1], j.methods.gradcam.deletion[1], 1e-6)
  local path = tmp .. "/figures/fakes_dataset_SimpleNet_explain_eval.png"
  expect(fmd.sys.is_file(path) and not fmd.sys.is_file(path .. ".tmp"), "figure written via .tmp")
  local img = fmd.load_image(path)
  expect(img:size(3) >= 1400 and img:size(2) >= 500, fmd.shape_str(img))
  local bg = img:narrow(2, 1, 1):narrow(3, 1, 1)
  expect((img - bg):abs():sum(1):gt(0.3):mean():item() > 0.02, "the figure looks blank")
end)

test("explain_eval.lua: a wrong method or layer is one line", function()
  assert(setup_ok, setup_err)
  local out, code = run("explain_eval.lua", COMMON .. " --n 2 --methods saliency,gradcan")
  expect_eq(code, 1)
  expect(out:find("--methods: unknown method 'gradcan' (did you mean gradcam?)", 1, true), out)
  expect(not out:find("traceback", 1, true), out)
  out, code = run("explain_eval.lua", COMMON .. " --n 2 --methods gradcam --layer conv9")
  expect_eq(code, 1)
  expect(out:find("no layer 'conv9'", 1, true), out)
  expect(not out:find("traceback", 1, true), out)
end)

os.execute("rm -rf " .. tmp)
