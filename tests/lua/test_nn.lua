-- fmd.nn: every module against PyTorch 1.13 (tests/fixtures/nn_modules.safetensors,
-- written by tests/fixtures/make_nn_modules.py), finite-difference gradient
-- checks, names / state_dict / load errors / repr / hooks / train-eval,
-- Sequential's error message, functional wrappers and init statistics.
local fmd = require "fmd"
local nn = require "fmd.nn"
local F = nn.functional
local FIX = "tests/fixtures/nn_modules.safetensors"

local function build(lua)
  local chunk = assert(load("return " .. lua, "=ctor", "t", {nn = nn}))
  return chunk()
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-------------------------------------------------------- PyTorch fixtures

test("every module's forward, backward and buffers match PyTorch", function()
  local n = 0
  for _, c in ipairs(load_fixture_cases(FIX)) do
    if c.name:match("^module_") then
      n = n + 1
      local f, t, md = c.name, c.tensors, c.meta
      local m = build(md.lua)
      local sd = {}
      for k, v in pairs(t) do
        local key = k:match("^p%.(.*)$")
        if key then sd[key] = v end
      end
      m:load_state_dict(sd)
      if md.mode == "eval" then m:eval() else m:train() end
      local x = t.x
      x.requires_grad = true
      local y = t.t and m(x, t.t) or m(x)
      -- (the fixture writer stores 0-dim losses as [1])
      if y:dim() > 0 then expect_eq(fmd.shape_str(y), fmd.shape_str(t.y), f .. " output shape") end
      expect_near(y, t.y, 1e-4, f .. " forward")
      y:backward(y:dim() > 0 and t.gy or t.gy:reshape({}))
      expect_near(x.grad, t.gx, 1e-4, f .. " grad x")
      local np = 0
      for name, p in m:named_parameters() do
        np = np + 1
        expect(t["g." .. name], f .. ": PyTorch has no gradient for " .. name)
        expect_near(p.grad, t["g." .. name], 1e-4, f .. " grad " .. name)
      end
      for k in pairs(t) do
        if k:match("^g%.") then np = np - 1 end
      end
      expect_eq(np, 0, f .. " number of parameters vs PyTorch")
      for name, b in m:named_buffers() do
        expect_near(b, t["after." .. name], 1e-4, f .. " buffer " .. name .. " after forward")
      end
      if md.repr then expect_eq(tostring(m), md.repr, f .. " repr") end
    end
  end
  expect(n >= 20, "expected the module fixtures, found " .. n)
end)

-- the Xception-shaped toy model of the fixture, written as a user would
local Small = nn.Module:extend("Small")
function Small:__init()
  self.conv1 = nn.Conv2d(3, 8, 3, {stride = 2, bias = false})
  self.bn1 = nn.BatchNorm2d(8)
  self.relu = nn.ReLU(true)
  self.skip = nn.Conv2d(8, 16, 1, {stride = 2, bias = false})
  self.skipbn = nn.BatchNorm2d(16)
  self.rep = nn.Sequential(nn.ReLU(false), nn.SeparableConv2d(8, 16, 3, 1, 1), nn.BatchNorm2d(16),
                           nn.MaxPool2d(3, 2, 1))
  self.fc = nn.Linear(16, 2)
end
function Small:forward(x)
  x = self.relu(self.bn1(self.conv1(x)))
  x = self.rep(x) + self.skipbn(self.skip(x))
  return self.fc(F.adaptive_avg_pool2d(x, 1):flatten(2))
end

test("state_dict keys, repr and eval output of a small Xception-like model match PyTorch", function()
  local _, cases = load_fixture_cases(FIX)
  local t, md = cases.model_small.tensors, cases.model_small.meta
  local m = Small()
  local want = {}
  for k in md.keys:gmatch("[^,]+") do
    if not k:match("num_batches_tracked$") then want[#want + 1] = k end
  end
  local sd, keys = m:state_dict()
  expect_eq(table.concat(keys, ","), table.concat(want, ","), "state_dict keys in PyTorch's order")
  expect_eq(#sorted_keys(sd), #want)
  expect_eq(tostring(m), md.repr, "repr")
  -- PyTorch's state dict, with num_batches_tracked as PyTorch files have it
  local psd = {}
  for k, v in pairs(t) do
    local key = k:match("^p%.(.*)$")
    if key then psd[key] = v end
  end
  psd["bn1.num_batches_tracked"] = fmd.tensor({3})
  m:load_state_dict(psd)
  m:eval()
  local y = fmd.no_grad(m, t.x)
  expect_near(y, t.y, 1e-4, "eval forward")
end)

-------------------------------------------------------- gradient checks


-- checks d(sum(m(x) * r))/d(x and every parameter) against finite differences
local function gradcheck_module(name, m, x, extra, tol, eps)
  local y = fmd.no_grad(function() return m(x, extra) end)
  local r = fmd.randn(y:size())
  local function f() return (m(x, extra) * r):sum() end
  x.grad = nil
  x.requires_grad = true
  m:zero_grad()
  f():backward()
  expect_near(x.grad, numgrad(f, x, eps), tol or 1e-2, name .. " input")
  for pname, p in m:named_parameters() do
    expect_near(p.grad, numgrad(f, p, eps), tol or 1e-2, name .. " " .. pname)
  end
end

-- x away from the kinks of relu and from max-pool ties
local function smooth_input(...)
  local x = fmd.randn(...)
  return fmd.no_grad(function() return x + x:gt(0) * 0.2 - x:le(0) * 0.2 end)
end

test("gradcheck: Conv2d (plain, strided/dilated/grouped), Linear, SeparableConv2d", function()
  fmd.manual_seed(3)
  gradcheck_module("Conv2d", nn.Conv2d(2, 3, 3, 1, 1), fmd.randn(2, 2, 5, 4))
  gradcheck_module("Conv2d options", nn.Conv2d(4, 2, {3, 2}, {2, 1}, {1, 0}, {2, 1}, 2, false), fmd.randn(1, 4, 7, 6))
  gradcheck_module("Linear", nn.Linear(4, 3), fmd.randn(3, 4))
  gradcheck_module("Linear 3-D input", nn.Linear(4, 2, false), fmd.randn(2, 3, 4))
  gradcheck_module("SeparableConv2d", nn.SeparableConv2d(3, 4, 3, 2, 1, 1, true), fmd.randn(2, 3, 5, 5))
end)

test("gradcheck: BatchNorm2d in training and eval mode", function()
  fmd.manual_seed(4)
  local bn = nn.BatchNorm2d(3)
  fmd.no_grad(function()
    bn.weight:copy(fmd.rand(3) + 0.5)
    bn.bias:copy(fmd.randn(3))
  end)
  -- large batch statistics make the normalised output well conditioned
  gradcheck_module("BatchNorm2d train", bn, fmd.randn(4, 3, 3, 3), nil, 2e-2)
  bn:eval()
  gradcheck_module("BatchNorm2d eval", bn, fmd.randn(2, 3, 3, 3))
end)

test("gradcheck: ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Identity, Softmax, LogSoftmax", function()
  fmd.manual_seed(5)
  gradcheck_module("ReLU", nn.ReLU(), smooth_input(2, 3, 3))
  gradcheck_module("MaxPool2d", nn.MaxPool2d(3, 2, 1), smooth_input(1, 2, 7, 6))
  gradcheck_module("MaxPool2d default stride", nn.MaxPool2d(2), smooth_input(2, 1, 5, 4))
  gradcheck_module("AvgPool2d", nn.AvgPool2d({3, 2}, {2, 1}, {1, 1}), fmd.randn(1, 2, 6, 5))
  gradcheck_module("AdaptiveAvgPool2d", nn.AdaptiveAvgPool2d({3, 2}), fmd.randn(2, 2, 7, 5))
  gradcheck_module("Flatten", nn.Flatten(), fmd.randn(2, 3, 2))
  gradcheck_module("Flatten dims 2..3", nn.Flatten(2, 3), fmd.randn(2, 3, 2, 2))
  gradcheck_module("Identity", nn.Identity(), fmd.randn(3, 2))
  gradcheck_module("Softmax", nn.Softmax(2), fmd.randn(3, 4))
  gradcheck_module("LogSoftmax", nn.LogSoftmax(1), fmd.randn(3, 4))
end)

test("gradcheck: Dropout (training, fixed mask), Sequential, losses", function()
  fmd.manual_seed(6)
  local drop = nn.Dropout(0.4)
  -- reseed before each forward so every evaluation draws the same mask
  local seeded = nn.Module:extend("Seeded")
  function seeded:__init(m) self.m = m end
  function seeded:forward(x) fmd.manual_seed(99); return self.m(x) end
  gradcheck_module("Dropout", seeded(drop), fmd.randn(4, 5))
  local seq = nn.Sequential(nn.Conv2d(2, 3, 3, 1, 1), nn.BatchNorm2d(3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                            nn.Linear(12, 2))
  -- a small step: the ReLU after BatchNorm has kinks close to many points
  gradcheck_module("Sequential", seq, fmd.randn(3, 2, 4, 4), nil, 2e-2, 2e-3)
  local target = fmd.tensor({0, 2, 1, 2})
  gradcheck_module("CrossEntropyLoss", nn.CrossEntropyLoss(), fmd.randn(4, 3), target)
  gradcheck_module("MSELoss", nn.MSELoss(), fmd.randn(3, 2), fmd.randn(3, 2))
end)

-------------------------------------------------------- Module behaviour

test("named_parameters, named_buffers, children and modules use PyTorch names and order", function()
  local net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Sequential(nn.ReLU(), nn.Linear(2, 2)))
  local names = {}
  for n, p in net:named_parameters() do names[#names + 1] = n .. fmd.shape_str(p) end
  expect_eq(table.concat(names, " "),
    "0.weight[2 x 1 x 3 x 3] 0.bias[2] 1.weight[2] 1.bias[2] 2.1.weight[2 x 2] 2.1.bias[2]")
  local bufs = {}
  for n in net:named_buffers() do bufs[#bufs + 1] = n end
  expect_eq(table.concat(bufs, " "), "1.running_mean 1.running_var")
  expect_eq(#net:parameters(), 6)
  expect_eq(#net:children(), 3)
  local mods = {}
  for n, m in net:named_modules() do mods[#mods + 1] = n .. "=" .. m.__short_name end
  expect_eq(table.concat(mods, " "), "=Sequential 0=Conv2d 1=BatchNorm2d 2=Sequential 2.0=ReLU 2.1=Linear")
  expect_eq(#net, 3)
  expect_eq(net[2].__name, "nn.BatchNorm2d")
  expect_eq(net[-1][2].out_features, 2)
  expect(net[4] == nil)
end)

test("a shared module or parameter is listed once; re-assignment replaces a child", function()
  local M = nn.Module:extend("M")
  function M:__init()
    self.a = nn.Linear(2, 2)
    self.b = self.a
    self.act = nn.ReLU()
  end
  local m = M()
  expect_eq(#m:parameters(), 2)
  local _, keys = m:state_dict()
  expect_eq(table.concat(keys, " "), "a.weight a.bias b.weight b.bias")   -- as PyTorch's state_dict
  m.b = nn.Linear(2, 3)
  expect_eq(#m:parameters(), 4)
  m.b = nil
  expect_eq(#m:parameters(), 2)
  expect_eq(#m:children(), 2)
  -- a leaf tensor that requires grad becomes a parameter; others stay plain fields
  m.scale = fmd.ones(1):requires_grad_()
  m.cache = fmd.ones(1)
  expect_eq(#m:parameters(), 3)
  local names = {}
  for n in m:named_parameters() do names[#names + 1] = n end
  expect_eq(table.concat(names, " "), "scale a.weight a.bias")
  -- an activation kept in a field (not a leaf) is not a parameter
  m.last = m.a(fmd.ones(1, 2))
  expect_eq(#m:parameters(), 3)
  expect_error(function() m.act = 5 end, "cannot assign a number as child module 'act'")
end)

test("train/eval set training recursively; zero_grad clears; requires_grad_ freezes", function()
  local net = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5), nn.Sequential(nn.BatchNorm2d(2)))
  expect(net.training and net[3][1].training)
  net:eval()
  expect(not net.training and not net[2].training and not net[3][1].training)
  local x = fmd.ones(4, 3)
  expect_near(net[2](x), x, 0, "dropout is identity in eval")
  net:train()
  expect(net[3][1].training)
  net[1](fmd.randn(2, 3)):sum():backward()
  expect(net[1].weight.grad ~= nil)
  net:zero_grad()
  expect(net[1].weight.grad == nil and net[1].bias.grad == nil)
  net:requires_grad_(false)
  expect(not net[1].weight.requires_grad)
  expect(not net[1](fmd.randn(2, 3)).requires_grad, "frozen module records no graph")
  net:requires_grad_()
  expect(net[1].weight.requires_grad)
  local seen = {}
  net:apply(function(m) seen[#seen + 1] = m.__short_name end)
  expect_eq(table.concat(seen, " "), "Linear Dropout BatchNorm2d Sequential Sequential")
end)

test("state_dict shares data; load_state_dict copies values and reports every problem at once", function()
  fmd.manual_seed(1)
  local a = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Linear(4, 3))
  local b = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Linear(4, 3))
  local sd = a:state_dict()
  fmd.no_grad(function() a[2].running_mean:fill(0.5) end)
  expect_eq(sd["1.running_mean"][1], 0.5, "state_dict tensors are views of the module's data")
  local res = b:load_state_dict(sd)
  expect_eq(#res.missing_keys + #res.unexpected_keys, 0)
  expect_near(b[1].weight, a[1].weight, 0)
  expect_near(b[2].running_mean, a[2].running_mean, 0)
  fmd.no_grad(function() a[1].weight:fill(7) end)
  expect(b[1].weight:max():item() < 7, "loading copies (no sharing)")
  expect(b[1].weight.requires_grad and b[1].weight.is_leaf, "parameters stay trainable leaves")

  -- all problems in one error, nothing copied
  local bad = a:state_dict()
  bad["0.bias"] = nil
  bad["1.running_var"] = nil
  bad["extra.weight"] = fmd.zeros(1)
  bad["2.weight"] = fmd.zeros(3, 5)
  bad["1.num_batches_tracked"] = fmd.zeros(1)   -- PyTorch's counter: accepted and ignored
  local before = b[1].weight:clone()
  local err = expect_error(function() b:load_state_dict(bad) end, "Error(s) in loading state_dict for Sequential")
  expect(err:find('Missing key(s) in state_dict: "0.bias", "1.running_var".', 1, true), err)
  expect(err:find('Unexpected key(s) in state_dict: "extra.weight".', 1, true), err)
  expect(err:find("size mismatch for 2.weight: copying a param with shape [3 x 5] from checkpoint, "
    .. "the shape in current model is [3 x 4].", 1, true), err)
  expect(not err:find("num_batches_tracked", 1, true), err)
  expect_near(b[1].weight, before, 0, "nothing copied when loading fails")
  -- strict = false: missing/unexpected are returned, shape mismatches still fail
  bad["2.weight"] = fmd.zeros(3, 4)
  res = b:load_state_dict(bad, false)
  expect_eq(table.concat(res.missing_keys, " "), "0.bias 1.running_var")
  expect_eq(table.concat(res.unexpected_keys, " "), "extra.weight")
  expect_eq(b[3].weight:abs():sum():item(), 0)
  bad["2.weight"] = fmd.zeros(2)
  expect_error(function() b:load_state_dict(bad, false) end, "size mismatch for 2.weight")
  bad["2.weight"] = "nope"
  expect_error(function() b:load_state_dict(bad, false) end, "2.weight is a string, not a tensor")
end)

test("Sequential names the failing child, 1-based, and nests", function()
  local net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(5, 2, 1))
  local err = expect_error(function() net(fmd.randn(1, 3, 5, 5)) end, "in module 3 (nn.Conv2d) of nn.Sequential: ")
  expect(err:find("conv2d", 1, true), err)
  local outer = nn.Sequential(nn.Identity(), net)
  expect_error(function() outer(fmd.randn(1, 3, 5, 5)) end,
    "in module 2 (nn.Sequential) of nn.Sequential: in module 3 (nn.Conv2d) of nn.Sequential: ")
  local User = nn.Module:extend("MyBlock")
  function User:forward() error("boom", 0) end
  expect_error(function() nn.Sequential(User())(fmd.ones(1)) end, "in module 1 (MyBlock) of nn.Sequential: boom")
  expect_error(function() nn.Sequential(nn.ReLU(), 3) end, "argument 2 is a number, not a module")
end)

test("repr prints the tree like PyTorch", function()
  local net = nn.Sequential(nn.Conv2d(3, 16, 3, {stride = 2, bias = false}), nn.BatchNorm2d(16), nn.ReLU(true),
    nn.MaxPool2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(), nn.Linear(16, 2), nn.Identity())
  expect_eq(tostring(net), [[
Sequential(
  (0): Conv2d(3, 16, kernel_size=(3, 3), stride=(2, 2), bias=False)
  (1): BatchNorm2d(16, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
  (2): ReLU(inplace=True)
  (3): MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)
  (4): AdaptiveAvgPool2d(output_size=1)
  (5): Flatten(start_dim=2, end_dim=-1)
  (6): Dropout(p=0.5, inplace=False)
  (7): Linear(in_features=16, out_features=2, bias=True)
  (8): Identity()
)]])
  expect_eq(tostring(nn.Module()), "Module()")
end)

test("forward hooks see input and output, can replace the output, and are removable", function()
  local net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
  local seen = {}
  local h = net[2]:register_forward_hook(function(m, input, output)
    seen.module, seen.input, seen.output = m, input[1], output
    output:retain_grad()   -- Grad-CAM: keep the activation's gradient
  end)
  local x = fmd.randn(5, 3)
  local y = net(x)
  expect(seen.module == net[2])
  expect_eq(fmd.shape_str(seen.input), "[5 x 4]")
  expect_eq(fmd.shape_str(seen.output), "[5 x 4]")
  y:sum():backward()
  expect(seen.output.grad ~= nil, "activation gradient kept")
  -- d(sum y)/d(activation) = column sums of the last weight
  expect_near(seen.output.grad:select(1, 1), net[3].weight:sum(1), 1e-6)
  h.remove()
  seen.module = nil
  net(x)
  expect(seen.module == nil, "removed hook does not run")
  local h2 = net[1]:register_forward_hook(function() return fmd.zeros(5, 4) end)
  local y0 = net(x)
  expect_near(y0:select(1, 1), net[3].bias, 1e-6, "hook replaced the output")
  h2:remove()
  local pre = net:register_forward_pre_hook(function(m, input) return {input[1] * 0} end)
  expect_near(net(x), fmd.no_grad(net, fmd.zeros(5, 3)), 1e-6, "pre-hook replaced the input")
  pre.remove()
  expect_error(function() net:register_forward_hook(3) end, "expected a function")
end)

test("user classes: extend, inheritance, parent __init, register_buffer", function()
  local Base = nn.Module:extend("Base")
  function Base:__init(n)
    self.fc = nn.Linear(n, n)
    self:register_buffer("count", fmd.zeros(1))
    self:register_buffer("scratch", fmd.zeros(1), false)   -- not saved
  end
  function Base:forward(x)
    fmd.no_grad(function() self.count:copy(self.count + 1) end)
    return self.fc(x)
  end
  local Child = Base:extend("Child")
  function Child:__init(n)
    Base.__init(self, n)
    self.head = nn.Linear(n, 1)
  end
  function Child:forward(x) return self.head(Base.forward(self, x)) end
  local c = Child(3)
  expect_eq(fmd.shape_str(c(fmd.ones(2, 3))), "[2 x 1]")
  expect_eq(c.count[1], 1)
  local _, keys = c:state_dict()
  expect_eq(table.concat(keys, " "), "count fc.weight fc.bias head.weight head.bias")
  expect_eq(tostring(c), [[
Child(
  (fc): Linear(in_features=3, out_features=3, bias=True)
  (head): Linear(in_features=3, out_features=1, bias=True)
)]])
  expect_error(function() nn.Module()(fmd.ones(1)) end, "nn.Module has no forward method")
  expect_error(function() c:register_parameter("a.b", fmd.ones(1)) end, "contain no '.'")
  expect_error(function() c:register_parameter("w", fmd.ones(1) * 2 + c.fc.weight:sum()) end, "leaf")
  expect_error(function() return nn.Conv3d end, "fmd.nn has no class 'Conv3d'")
end)

test("constructor argument errors are clear", function()
  expect_error(function() nn.Conv2d(3, 4) end, "kernel_size is required")
  expect_error(function() nn.Conv2d(3, 4, 3, 1, 0, 1, 2) end, "groups (2) must divide in_channels (3)")
  expect_error(function() nn.Conv2d(3, 4, {3, 3, 3}) end, "kernel_size must be a number or a {h, w} pair")
  expect_error(function() nn.Conv2d(3, 4, 3, {strid = 2}) end, "unknown option 'strid'")
  expect_error(function() nn.Linear(0, 3) end, "positive integers")
  expect_error(function() nn.Dropout(1.5) end, "probability")
  expect_error(function() nn.MaxPool2d(2, 2, 0, 2) end, "dilation")
end)

-------------------------------------------------------- functional

test("functional: PyTorch defaults, pairs and option tables", function()
  fmd.manual_seed(8)
  local x, w, b = fmd.randn(1, 2, 6, 5), fmd.randn(3, 2, 3, 3), fmd.randn(3)
  local ref = fmd.conv2d(x, w, b, 2, 2, 1, 1, 1, 1, 1)
  expect_near(F.conv2d(x, w, b, 2, 1), ref, 0)
  expect_near(F.conv2d(x, w, b, {stride = 2, padding = {1, 1}}), ref, 0)
  expect_near(F.conv2d(x, w, {bias = b, stride = 2, padding = 1}), ref, 0)
  expect_near(F.max_pool2d(x, 2), fmd.max_pool2d(x, 2, 2, 2, 2, 0, 0), 0)
  expect_near(F.max_pool2d(x, {3, 2}, 1, {1, 0}), fmd.max_pool2d(x, 3, 2, 1, 1, 1, 0), 0)
  expect_near(F.avg_pool2d(x, 3, 2, 1), fmd.avg_pool2d(x, 3, 3, 2, 2, 1, 1), 0)
  expect_near(F.adaptive_avg_pool2d(x, 1), x:mean(4):mean(3):reshape(1, 2, 1, 1), 1e-6)
  local a = fmd.randn(4, 3)
  expect_near(F.softmax(a), F.softmax(a, 2), 0)
  expect_near(F.log_softmax(a, 2), F.softmax(a, 2):log(), 1e-5)
  local t = {0, 2, 1, 1}
  expect_near(F.cross_entropy(a, t), F.nll_loss(F.log_softmax(a, 2), t), 1e-6)
  expect_near(F.relu(a), a:relu(), 0)
  expect_eq(fmd.shape_str(F.flatten(fmd.zeros(2, 3, 4, 5))), "[2 x 60]")
  expect_eq(fmd.shape_str(F.flatten(fmd.zeros(2, 3, 4, 5), 1)), "[120]")
  expect_eq(fmd.shape_str(F.flatten(fmd.zeros(2, 3, 4, 5), 2, -2)), "[2 x 12 x 5]")
  expect_error(function() F.flatten(fmd.zeros(2, 3), 3) end, "flatten: dims 3..-1 out of range")
  expect_error(function() F.conv2d(x, w, b, 0) end, "stride (0, 0) must be >= 1")
  expect_error(function() F.max_pool2d("x", 2) end, "max_pool2d: input must be a tensor, got string")
  local y = F.dropout(fmd.ones(1000), 0.3, true)
  local kept = y:gt(0):sum():item()
  expect(kept > 600 and kept < 800, "dropout keeps about 70%: " .. kept)
  expect_near(y:max(), 1 / 0.7, 1e-5)
  expect_near(F.dropout(a, 0.3, false), a, 0)
  local bn = F.batch_norm(fmd.randn(4, 2, 3, 3), nil, nil, nil, nil, true)
  expect_near(bn:mean(), 0, 1e-5)
end)

-------------------------------------------------------- initialisation

test("default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) from the global RNG", function()
  fmd.manual_seed(123)
  local lin = nn.Linear(400, 500)
  local bound = 1 / math.sqrt(400)
  local w = lin.weight
  local mean, std = w:mean():item(), ((w - w:mean()) ^ 2):mean():sqrt():item()
  expect(math.abs(mean) < 0.01 * bound, ("mean %.3g"):format(mean))
  expect_near(std, bound / math.sqrt(3), 0.01 * bound, "std of U(-b, b) is b/sqrt(3)")
  local top = bound * (1 + 1e-6)   -- the bound rounded to float32
  expect(w:abs():max():item() <= top and w:abs():max():item() > 0.999 * bound, "range is the bound")
  expect(lin.bias:abs():max():item() <= top)
  -- conv fan_in counts in_channels / groups * kh * kw
  local conv = nn.Conv2d(64, 32, 3, {groups = 4})
  local cb = 1 / math.sqrt(16 * 9)
  expect(conv.weight:abs():max():item() <= cb * (1 + 1e-6) and conv.weight:abs():max():item() > 0.99 * cb)
  expect(conv.bias:abs():max():item() <= cb * (1 + 1e-6))
  local bn = nn.BatchNorm2d(5)
  expect_near(bn.weight, fmd.ones(5), 0)
  expect_near(bn.bias, fmd.zeros(5), 0)
  expect_near(bn.running_var, fmd.ones(5), 0)
  -- reproducible with the seed, different without
  fmd.manual_seed(7); local a = nn.Conv2d(3, 4, 3)
  fmd.manual_seed(7); local b = nn.Conv2d(3, 4, 3)
  local c = nn.Conv2d(3, 4, 3)
  expect_near(a.weight, b.weight, 0)
  expect_near(a.bias, b.bias, 0)
  expect((a.weight - c.weight):abs():max():item() > 0)
end)

test("nn.init initialisers", function()
  fmd.manual_seed(9)
  local w = fmd.zeros(300, 200)
  nn.init.kaiming_uniform_(w, math.sqrt(5))
  expect(w:abs():max():item() <= 1 / math.sqrt(200) + 1e-7)
  nn.init.xavier_uniform_(w)
  expect(w:abs():max():item() <= math.sqrt(6 / 500) + 1e-7)
  nn.init.normal_(w, 1, 0.5)
  expect_near(w:mean():item(), 1, 0.01)
  nn.init.zeros_(w)
  expect_eq(w:abs():sum():item(), 0)
  nn.init.constant_(w, 2)
  expect_eq(w:mean():item(), 2)
  expect_eq(select(1, nn.init.calculate_fan_in_and_fan_out(fmd.zeros(8, 4, 3, 3))), 36)
  expect_near(nn.init.calculate_gain("leaky_relu", math.sqrt(5)), math.sqrt(1 / 3), 1e-12)
end)
