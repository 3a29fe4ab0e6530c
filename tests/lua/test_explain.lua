-- fmd.explain against PyTorch (tests/fixtures/make_explain.py): every
-- method on a tiny conv net; saliency of a linear model equals its analytic
-- gradient; targets, errors, nothing left behind, flat memory.
local fmd = require "fmd"
local nn = require "fmd.nn"
local explain = require "fmd.explain"

local cases = select(2, load_fixture_cases("tests/fixtures/explain.safetensors"))

local Net = nn.Module:extend("Net")
function Net:__init()
  self.conv1 = nn.Conv2d(3, 4, 3, 1, 1)
  self.conv3 = nn.Conv2d(4, 5, 3, 1, 1)
  self.pool = nn.MaxPool2d(2, 2)
  self.fc = nn.Linear(5 * 4 * 4, 2)
end
function Net:forward(x)
  x = self.conv1(x):relu()
  x = self.pool(self.conv3(x):relu())
  return self.fc(x:flatten(2))
end

local function net()
  local m = Net()
  local sd = {}
  for k, v in pairs(cases.net.tensors) do
    local name = k:match("^p%.(.+)$")
    if name then sd[name] = v end
  end
  m:load_state_dict(sd)
  return m
end
local X = cases.net.tensors.x
local TARGET = fmd.tensor{0, 1}

test("saliency, smoothgrad, integrated gradients match PyTorch", function()
  local m = net()
  expect_near(explain.saliency(m, X, TARGET), cases.saliency.tensors.map, 1e-4, "saliency")
  local noise = {}
  local nt = cases.smoothgrad.tensors.noise
  for k = 1, nt:size(1) do noise[k] = nt[k] end
  expect_near(explain.smoothgrad(m, X, TARGET, {noise = noise, sigma = 0.15}), cases.smoothgrad.tensors.map, 1e-4,
    "smoothgrad")
  local steps = math.tointeger(tonumber(cases.integrated_gradients.meta.steps))
  expect_near(explain.integrated_gradients(m, X, TARGET, {steps = steps}), cases.integrated_gradients.tensors.map,
    1e-4, "integrated_gradients")
  expect_near(explain.integrated_gradients(m, X, TARGET, {steps = steps, reduce = "sum"}),
    cases.integrated_gradients.tensors.sum, 1e-4, "integrated_gradients sum")
end)

test("gradcam, gradcampp, layercam, hirescam match PyTorch (raw and upsampled)", function()
  local m = net()
  for _, name in ipairs{"gradcam", "gradcampp", "layercam", "hirescam"} do
    local maps, raw = explain[name](m, X, TARGET, {layer = "conv3"})
    expect_near(raw, cases[name].tensors.raw, 1e-5, name .. " raw")
    expect_near(maps, cases[name].tensors.map, name == "gradcam" and 1e-5 or 1e-4, name .. " map")
  end
end)

test("upsample is PyTorch's bilinear interpolate with align_corners=False", function()
  local c = cases.upsample.tensors
  expect_near(explain.upsample(c["in"], 11, 7), c.out, 1e-6)
end)

test("saliency of a linear model is |w| of the target class, max over channels", function()
  local Lin = nn.Module:extend("Lin")
  function Lin:__init() self.fc = nn.Linear(2 * 3 * 3, 2) end
  function Lin:forward(x) return self.fc(x:flatten(2)) end
  fmd.manual_seed(1)
  local m = Lin()
  local x = fmd.randn(2, 2, 3, 3)
  local s = explain.saliency(m, x, {1, 0})
  local w = m.fc.weight:detach()   -- (2, 18)
  for i, c in ipairs{1, 0} do
    local expect_map = w[c + 1]:view(2, 3, 3):abs():max(1)
    expect_near(s[i], expect_map, 1e-6, "image " .. i)
  end
end)

test("targets: a number, an array, a tensor, \"pred\"", function()
  local m = net()
  local pred = fmd.no_grad(function() return m(X) end):argmax(2) - 1
  expect_near(explain.gradcam(m, X, "pred"), explain.gradcam(m, X, pred), 0)
  expect_near(explain.gradcam(m, X), explain.gradcam(m, X, pred), 0)
  expect_near(explain.saliency(m, X, {0, 1}), explain.saliency(m, X, TARGET), 0)
  local one = explain.saliency(m, X, 1)
  expect_near(one[2], explain.saliency(m, X, TARGET)[2], 0)
end)

test("the model's state is kept: mode, requires_grad, no parameter gradients, no hooks", function()
  local m = net()
  m:train()
  explain.gradcam(m, X, 1)
  explain.saliency(m, X, 1)
  expect(m.training and m.conv1.training, "training mode restored")
  for name, p in m:named_parameters() do
    expect(p.requires_grad, name .. " still requires grad")
    expect(p.grad == nil, name .. " got a gradient")
  end
  expect_eq(#rawget(m.conv3, "_forward_hooks"), 0)
  -- also after an error inside the call
  expect_error(function() explain.gradcam(m, X, 5) end, "target 5 of image 1 is not a class id 0..1")
  expect_eq(#rawget(m.conv3, "_forward_hooks"), 0)
  expect(m.training, "mode restored after an error")
end)

test("errors name the problem", function()
  local m = net()
  expect_error(function() explain.gradcam(m, X, 1, {layer = "conv9"}) end,
    "explain.gradcam: the model has no layer 'conv9' (did you mean conv1?)")
  expect_error(function() explain.saliency(m, fmd.zeros(3, 8, 8), 1) end,
    "explain.saliency: images must be a (B,C,H,W) tensor, got [3 x 8 x 8]")
  expect_error(function() explain.saliency(m, X, {0}) end, "explain.saliency: 1 targets for 2 images")
  expect_error(function() explain.gradcam(m, X, 1, {layer = "fc"}) end, "gives [2 x 2], a CAM needs (B,K,h,w)")
  expect_error(function() explain.saliency(m, X, 1, {reduce = "median"}) end, "reduce must be absmax")
  expect_error(function() explain.integrated_gradients(m, X, 1, {baseline = fmd.zeros(1, 3, 8, 8)}) end,
    "baseline [1 x 3 x 8 x 8] does not match images [2 x 3 x 8 x 8]")
end)

test("normalize: per map to [0, 1], a flat map becomes zeros", function()
  local maps = fmd.tensor{{{1, 3}, {5, 9}}, {{2, 2}, {2, 2}}}
  local n = explain.normalize(maps)
  expect_near(n[1], fmd.tensor{{0, 0.25}, {0.5, 1}}, 0)
  expect_near(n[2], fmd.zeros(2, 2), 0)
  expect_near(explain.normalize(maps[1]), n[1], 0)
end)

-- display scaling (tests/fixtures/make_clip_percentile.py): numpy's
-- percentile and the clipped maps, hot pixels, ties, a map mostly at its min
test("clip_percentile: numpy's percentile, min -> 0, percentile -> 1, clipped", function()
  local util = require "fmd.explain.util"
  local fixture = require("fmd.json").read_file("tests/fixtures/clip_percentile.json")
  local n = 0
  for name, c in pairs(fixture.cases) do if not name:find("^__") then
    local maps = fmd.tensor(c.maps)
    for p, want in pairs(c.percentiles) do if not p:find("^__") then
      p = tonumber(p)
      n = n + 1
      local got = explain.clip_percentile(maps, p)
      expect_near(got, fmd.tensor(want.clipped), 1e-6, ("%s at %g"):format(name, p))
      for i = 1, maps:size(1) do
        expect_near(util.percentile(maps[i]:reshape(-1):totable(), p), want.percentile[i], 1e-6,
          ("%s map %d percentile %g"):format(name, i, p))
        expect_near(explain.clip_percentile(maps[i], p), got[i], 0, "an (H,W) map as one of a batch")
      end
    end end
  end end
  expect_eq(n, 16, "cases x percentiles")
  -- the default is the figures' 98th; 100 is min-max; the maps are not changed
  local hot = fmd.tensor(fixture.cases.hot.maps)
  local before = hot:clone()
  expect_near(explain.clip_percentile(hot), explain.clip_percentile(hot, 98), 0)
  expect_near(explain.clip_percentile(hot, 100), explain.normalize(hot), 1e-6)
  expect_near(hot, before, 0)
  -- what the scaling is for: min-max leaves the hot-pixel map almost black
  expect(explain.normalize(hot)[1]:mean():item() < 0.02)
  expect(explain.clip_percentile(hot)[1]:mean():item() > 0.2)
  expect_error(function() explain.clip_percentile(hot, 0) end, "the percentile must be a number in (0, 100], got 0")
  expect_error(function() explain.clip_percentile(hot, 101) end, "got 101")
  expect_error(function() explain.clip_percentile(fmd.zeros(2, 3, 4, 5)) end, "maps must be (H,W) or (B,H,W), got [2 x 3 x 4 x 5]")
end)

test("1,000 maps in a loop stay at flat memory", function()
  local m = net()
  local x = X:narrow(1, 1, 1)
  for _ = 1, 20 do explain.gradcam(m, x, 1) end
  collectgarbage(); collectgarbage()
  local before = fmd.memory_in_use()
  for _ = 1, 1000 do explain.gradcam(m, x, 1); explain.saliency(m, x, 0) end
  collectgarbage(); collectgarbage()
  local after = fmd.memory_in_use()
  expect(after - before < 64 * 1024, ("memory grew by %d bytes"):format(after - before))
end)
