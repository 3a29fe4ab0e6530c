-- nn.fusion: [ReLU] conv [eval-mode BatchNorm2d [ReLU]] as one kernel call
-- without a graph (C.conv2d_fused). The fused numbers must equal the modules
-- run in turn bit for bit, on every conv kernel (per-sample GEMM, batched
-- 1x1, im2col, direct, depthwise, with the input ReLU read by the depthwise
-- kernels or applied first by the others), and fusion must step aside for
-- hooks, training mode and a recorded graph.
local fmd = require "fmd"
local nn = require "fmd.nn"
local F = require "fmd.nn.functional"
local models = require "fmd.models"

-- a BatchNorm2d in eval mode with running stats and affine parameters far from 1 and 0
local function eval_bn(c)
  local bn = nn.BatchNorm2d(c)
  fmd.no_grad(function()
    bn.running_mean:copy(fmd.randn(c))
    bn.running_var:copy(fmd.rand(c) * 2 + 0.1)
    bn.weight:copy(fmd.randn(c))
    bn.bias:copy(fmd.randn(c))
  end)
  bn:eval()
  return bn
end

local function span(...)
  local p = nn.fusion.plan(...)
  return p and p.n or 1
end

local function expect_same(a, b, what)
  expect_eq(fmd.shape_str(a), fmd.shape_str(b), what .. " shape")
  local worst, at = fmd.max_rel_err(a, b)
  expect(worst == 0, ("%s: fused differs from unfused by %g at element %d"):format(what, worst, at or -1))
end

test("conv2d_fused equals relu, conv, batch_norm and relu in turn on every conv kernel", function()
  fmd.manual_seed(11)
  local cases = {   -- {name, N, C, H, O, conv options}
    {"1x1 per-sample GEMM", 3, 24, 20, 40, {}},
    {"1x1 batched (8x8 plane)", 4, 16, 8, 24, {}},
    {"1x1 stride 2 (im2col)", 2, 8, 15, 12, {stride = 2}},
    {"3x3 stride 2 (im2col), bias", 2, 3, 17, 8, {stride = 2, bias = true}},
    {"3x3 direct", 2, 8, 20, 16, {}},
    {"3x3 of one channel (depthwise, but the direct kernel)", 2, 1, 20, 8, {}},
    {"depthwise 3x3 same", 2, 12, 18, 12, {padding = 1, groups = 12}},
    {"depthwise 3x3 narrow (span form)", 2, 6, 9, 6, {padding = 1, groups = 6}},
    {"depthwise 3x3 pad 0 (stride 1 general)", 2, 6, 11, 12, {groups = 6, bias = true}},
    {"depthwise 3x3 stride 2 (no padded copy)", 2, 6, 13, 6, {stride = 2, padding = 1, groups = 6}},
    {"1x1, one sample (GEMM split)", 1, 32, 16, 48, {}},
  }
  for _, c in ipairs(cases) do
    local name, N, Cin, H, O, o = table.unpack(c)
    local k = (name:find("1x1") and 1) or 3
    local conv = nn.Conv2d(Cin, O, k, {stride = o.stride or 1, padding = o.padding or 0, groups = o.groups or 1,
                                     bias = o.bias or false})
    local bn = eval_bn(O)
    local x = fmd.randn(N, Cin, H, H)
    for _, relu in ipairs{false, true} do
      fmd.no_grad(function()
        local want = bn(conv(x))
        if relu then want = want:relu() end
        expect_eq(span(conv, bn), 2, name)
        expect_same(nn.fusion.conv_bn(conv, bn, x, relu), want, name .. (relu and " + relu" or ""))
        for _, use_bn in ipairs{false, true} do   -- a ReLU before the conv too
          local w2 = conv(x:relu())
          if use_bn then w2 = bn(w2) end
          if relu then w2 = w2:relu() end
          expect_same(conv:forward_fused(x, true, use_bn and bn or nil, relu), w2,
            name .. " relu_in" .. (use_bn and " + bn" or "") .. (relu and " + relu" or ""))
        end
      end)
    end
    expect_eq(fmd.shape_str(x), fmd.shape_str(fmd.randn(N, Cin, H, H)))
  end
end)

test("SeparableConv2d + BatchNorm2d + ReLU in nn.Sequential fuse with the same numbers", function()
  fmd.manual_seed(12)
  local seq = nn.Sequential(nn.ReLU(), nn.SeparableConv2d(8, 16, 3, 1, 1), eval_bn(16), nn.ReLU(true),
    nn.SeparableConv2d(16, 16, 3, 1, 1), eval_bn(16), nn.MaxPool2d(3, 2, 1))
  seq:eval()
  local x = fmd.randn(2, 8, 12, 12)
  local want = seq(x)   -- grad mode on: a graph is recorded, nothing fuses
  expect(want.requires_grad, "the reference forward recorded a graph")
  expect_eq(span(seq[1], seq[2], seq[3], seq[4]), 1, "no fusion in grad mode")
  fmd.no_grad(function()
    expect_eq(span(seq[1], seq[2], seq[3], seq[4]), 4, "relu + sep conv + bn + relu")
    expect_eq(span(seq[2], seq[3], seq[4]), 3, "sep conv + bn + relu")
    expect_eq(span(seq[5], seq[6], seq[7]), 2, "sep conv + bn, then a max-pool")
    expect_eq(span(seq[4], seq[5], seq[7]), 2, "relu + sep conv, then no BatchNorm")
    expect_eq(span(seq[4], seq[6]), 1, "a ReLU alone")
    expect_eq(span(nn.ReLU(), nn.Conv2d(8, 8, 1), eval_bn(8)), 1, "a leading ReLU only before a SeparableConv2d")
    local x0 = x:clone()
    expect_same(seq(x), want:detach(), "Sequential")
    expect_same(x, x0, "the input of the fused ReLU is left as it was")
  end)
end)

test("fusion steps aside for hooks, training mode and subclasses", function()
  fmd.manual_seed(13)
  local conv, bn, relu = nn.Conv2d(4, 6, 1, {bias = false}), eval_bn(6), nn.ReLU()
  local seq = nn.Sequential(conv, bn, relu)
  local x = fmd.randn(2, 4, 5, 5)
  fmd.no_grad(function()
    local want = seq(x)
    local seen = 0
    local h = bn:register_forward_hook(function(_, _, out) seen = seen + 1; expect(out:min():item() < 0) end)
    expect_eq(span(conv, bn, relu), 1, "hook on the BatchNorm")
    expect_same(seq(x), want, "hooked")
    expect_eq(seen, 1, "the hook saw the BatchNorm's own output")
    h.remove()
    h = relu:register_forward_hook(function() seen = seen + 1 end)
    expect_eq(span(conv, bn, relu), 2, "hook on the ReLU: conv + bn only")
    expect_same(seq(x), want, "ReLU hooked")
    expect_eq(seen, 2)
    h.remove()
    local sep = nn.SeparableConv2d(4, 6, 3, 1, 1)
    h = sep.pointwise:register_forward_pre_hook(function() end)
    expect_eq(span(sep, bn), 1, "hook inside the separable conv")
    h.remove()
    h = sep.conv1:register_forward_hook(function() end)
    expect_eq(span(nn.ReLU(), sep, bn), 1, "hook on the depthwise conv")
    h.remove()
    expect_eq(span(nn.ReLU(), sep, bn), 3)
    bn:train()
    expect_eq(span(conv, bn, relu), 1, "training-mode BatchNorm")
    local before = bn.running_mean:clone()
    seq(x)
    expect(fmd.max_rel_err(bn.running_mean, before) > 0, "training mode still updates the running stats")
    bn:eval()
    local MyConv = nn.Conv2d:extend("MyConv")
    expect_eq(span(MyConv(4, 6, 1), bn), 1, "a subclass may change forward")
  end)
end)

test("sepconv2d_fused (a sample at a time) equals the depthwise and pointwise convs in turn", function()
  fmd.manual_seed(17)
  local cases = {   -- {name, N, C, H, O, SeparableConv2d options}: the first four take the sample-at-a-time path
    {"3x3 same, even batch", 4, 6, 13, 10, {padding = 1}},
    {"3x3 same, narrow (span form)", 2, 5, 12, 7, {padding = 1}},
    {"3x3 pad 0, biases", 2, 4, 14, 6, {bias = true}},
    {"batch of 9 (uneven but large)", 9, 3, 12, 5, {padding = 1}},
    {"batch of 3 (the convs in turn)", 3, 4, 12, 6, {padding = 1}},
    {"one sample (the convs in turn)", 1, 4, 12, 6, {padding = 1}},
    {"8x8 plane (batched 1x1, the convs in turn)", 2, 6, 8, 6, {padding = 1}},
    {"stride 2 (ReLU applied first)", 2, 4, 15, 6, {stride = 2, padding = 1}},
    {"one channel (direct kernel)", 2, 1, 20, 4, {}},
  }
  for _, c in ipairs(cases) do
    local name, N, Cin, H, O, o = table.unpack(c)
    local sep = nn.SeparableConv2d(Cin, O, 3, o.stride or 1, o.padding or 0, 1, o.bias or false)
    local bn = eval_bn(O)
    local x = fmd.randn(N, Cin, H, H)
    for _, relu_in in ipairs{false, true} do
      for _, use_bn in ipairs{false, true} do
        for _, relu in ipairs{false, true} do
          fmd.no_grad(function()
            local want = sep.pointwise(sep.conv1(relu_in and F.relu(x) or x))
            if use_bn then want = bn(want) end
            if relu then want = F.relu(want) end
            local got = sep:forward_fused(x, relu_in, use_bn and bn or nil, relu)
            expect_same(got, want, ("%s, relu_in %s, bn %s, relu %s"):format(name, relu_in, use_bn, relu))
          end)
        end
      end
    end
  end
  local sep = nn.SeparableConv2d(4, 6, 3, 1, 1)
  expect_error(function() fmd.no_grad(function() sep:forward_fused(fmd.randn(2, 5, 9, 9)) end) end,
    "input [2 x 5 x 9 x 9] has 5 channels")
  expect_error(function() sep:forward_fused(fmd.randn(2, 4, 9, 9)) end, "sepconv2d_fused: records no graph")
end)

-- with a graph, a plain SeparableConv2d is one node (C.sepconv2d) whose
-- forward and backward take a sample at a time; the numbers are those of its
-- two convs in turn (the depthwise weight gradient sums the samples in
-- another order, so it is close, not equal)
test("sepconv2d (one node, a sample at a time) equals its two convs in turn, gradients too", function()
  fmd.manual_seed(23)
  local prev = fmd.get_num_threads()
  fmd.set_num_threads(2)   -- the sample-at-a-time path shares the batch over threads
  local cases = {   -- {name, N, C, H, O, kernel, options, the node it records}
    {"3x3 same (Xception's)", 4, 6, 13, 10, 3, {padding = 1}, "sepconv2d"},
    {"3x3 same, narrow (span form)", 2, 5, 12, 7, 3, {padding = 1}, "sepconv2d"},
    {"3x3 pad 0 (stride-1 general kernel)", 2, 4, 14, 6, 3, {}, "sepconv2d"},
    {"5x5 dilation 2, padding 4", 2, 3, 16, 5, 5, {padding = 4, dilation = 2}, "sepconv2d"},
    {"batch of 9 (uneven but large)", 9, 3, 12, 5, 3, {padding = 1}, "sepconv2d"},
    {"batch of 3 (the convs in turn)", 3, 4, 12, 6, 3, {padding = 1}, "conv2d"},
    {"8x8 plane (batched 1x1, the convs in turn)", 2, 6, 8, 6, 3, {padding = 1}, "conv2d"},
    {"stride 2 (the convs in turn)", 2, 4, 15, 6, 3, {stride = 2, padding = 1}, "conv2d"},
    {"biases (the convs in turn)", 2, 4, 12, 6, 3, {padding = 1, bias = true}, "conv2d"},
  }
  local function run(sep, x, r, one, want_x, want_w)
    x = x:clone(); x.requires_grad = want_x
    for _, p in ipairs(sep:parameters()) do p.grad = nil; p.requires_grad = want_w end
    local y = one and sep(x) or sep.pointwise(sep.conv1(x))
    local name = y.grad_fn
    ;(y * r):sum():backward()
    return y, name, x.grad, sep.conv1.weight.grad, sep.pointwise.weight.grad
  end
  for _, c in ipairs(cases) do
    local name, N, Cin, H, O, k, o, node = table.unpack(c)
    local sep = nn.SeparableConv2d(Cin, O, k, o.stride or 1, o.padding or 0, o.dilation or 1, o.bias or false)
    local x = fmd.randn(N, Cin, H, H)
    local r = fmd.randn(table.unpack(fmd.no_grad(function() return sep(x) end):size()))
    for _, need in ipairs{{true, true}, {true, false}, {false, true}} do
      local what = ("%s, grad of x %s, of weights %s"):format(name, need[1], need[2])
      local y1, n1, gx1, gd1, gp1 = run(sep, x, r, true, need[1], need[2])
      local y2, _, gx2, gd2, gp2 = run(sep, x, r, false, need[1], need[2])
      expect_eq(n1, node, what .. ": the node recorded")
      expect_same(y1, y2, what .. " output")
      if need[1] then expect_same(gx1, gx2, what .. " input gradient") else expect(gx1 == nil, what) end
      if need[2] then
        expect_same(gp1, gp2, what .. " pointwise weight gradient")
        expect_near(gd1, gd2, 1e-5, what .. " depthwise weight gradient")
      else
        expect(gd1 == nil and gp1 == nil, what .. ": no weight gradients")
      end
    end
  end
  -- against central differences, through the engine call itself
  local C = require "fmd.core"
  local x, wd, wp = fmd.randn(2, 3, 12, 12), fmd.randn(3, 1, 3, 3), fmd.randn(4, 3, 1, 1)
  expect_eq(C.sepconv2d(x, wd:requires_grad_(), wp, 1, 1, 1, 1, 1, 1, 3).grad_fn, "sepconv2d", "gradcheck's node")
  local r = fmd.randn(2, 4, 12, 12)
  gradcheck("sepconv2d", function() return (C.sepconv2d(x, wd, wp, 1, 1, 1, 1, 1, 1, 3) * r):sum() end, {x, wd, wp})
  expect_error(function() C.sepconv2d(x, wd, fmd.randn(4, 3, 3, 3), 1, 1, 1, 1, 1, 1, 3) end,
    "sepconv2d: pointwise weight must be (O,C,1,1), got [4 x 3 x 3 x 3]")
  expect_error(function() C.sepconv2d(fmd.randn(2, 5, 6, 6), wd, wp, 1, 1, 1, 1, 1, 1, 3) end, "5 channels")
  -- a second backward through the freed node is a clear error
  local y = C.sepconv2d(x, wd, wp, 1, 1, 1, 1, 1, 1, 3):sum()
  y:backward()
  expect_error(function() y:backward() end, "second time")
  fmd.set_num_threads(prev)
end)

test("conv2d_fused: a graph, wrong BatchNorm sizes and missing stats are clear errors", function()
  local C = require "fmd.core"
  local x, w = fmd.randn(1, 2, 4, 4), fmd.randn(3, 2, 1, 1):requires_grad_()
  local rm, rv = fmd.zeros(3), fmd.ones(3)
  local function call(xx, bw, r_m, r_v, relu)   -- eps 0: mean 0, var 1 is the identity
    return C.conv2d_fused(xx, w, nil, 1, 1, 0, 0, 1, 1, 1, false, bw, nil, r_m, r_v, 0, relu)
  end
  expect_error(function() call(x, nil, rm, rv, false) end, "conv2d_fused: records no graph")
  fmd.no_grad(function()
    expect_error(function() call(x, nil, fmd.zeros(4), rv, false) end, "batch_norm: running_mean [4] should be [3]")
    expect_error(function() call(x, fmd.ones(2), rm, rv, false) end, "batch_norm: weight [2] should be [3]")
    expect_error(function() call(x, fmd.ones(3), nil, nil, false) end, "needs running_mean and running_var")
    expect_error(function() call(fmd.randn(1, 5, 4, 4), nil, rm, rv, false) end,
      "conv2d: input [1 x 5 x 4 x 4] has 5 channels")
    expect_same(call(x, nil, rm, rv, true), F.conv2d(x, w):relu(), "identity BatchNorm")
    expect_same(call(x, nil, nil, nil, true), F.conv2d(x, w):relu(), "ReLU alone")
    expect_same(call(x, nil, nil, nil, false), F.conv2d(x, w), "nothing fused")
  end)
end)

test("batch_norm_relu: forward, running stats and gradients equal batch_norm then relu, bit for bit", function()
  local C = require "fmd.core"
  fmd.manual_seed(15)
  for _, training in ipairs{true, false} do
    for _, shape in ipairs{{4, 6, 9, 9}, {3, 5, 40, 40}, {8, 3}} do
      local x0 = fmd.randn(table.unpack(shape))
      local c = shape[2]
      local w0, b0 = fmd.randn(c), fmd.randn(c)
      local rm0, rv0 = fmd.randn(c) * 0.1, fmd.rand(c) + 0.5
      local gy = fmd.randn(table.unpack(shape))
      local function run(fused)
        local x, w, b = x0:clone():requires_grad_(), w0:clone():requires_grad_(), b0:clone():requires_grad_()
        local rm, rv = rm0:clone(), rv0:clone()
        local y
        if fused then y = C.batch_norm_relu(x, w, b, rm, rv, training, 0.1, 1e-5)
        else y = C.batch_norm(x, w, b, rm, rv, training, 0.1, 1e-5):relu() end
        (y * gy):sum():backward()
        return {y:detach(), x.grad, w.grad, b.grad, rm, rv}
      end
      local a, u = run(true), run(false)
      local what = ("%s %s"):format(training and "training" or "eval", fmd.shape_str(x0))
      for k, name in ipairs{"y", "x.grad", "weight.grad", "bias.grad", "running_mean", "running_var"} do
        expect_same(a[k], u[k], what .. " " .. name)
      end
      expect(a[1]:min():item() == 0 and a[2]:abs():max():item() > 0, what .. ": some outputs rectified, gradients flow")
    end
  end
end)

test("BatchNorm2d then ReLU fuse while training too; a whole model's gradients are unchanged", function()
  fmd.manual_seed(16)
  local function net()
    fmd.manual_seed(17)
    return nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU(true), nn.SeparableConv2d(8, 8, 3, 1, 1),
      nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
  end
  local fused, plain = net(), net()
  local x = fmd.randn(4, 3, 10, 10)
  expect_eq(span(fused[2], fused[3]), 2, "BatchNorm2d + ReLU in grad mode")
  expect_eq(span(fused[1], fused[2], fused[3]), 1, "conv + BatchNorm only fuse without a graph")
  local h = plain[2]:register_forward_hook(function() end)   -- a hook turns the fusion off in `plain`
  expect_eq(span(plain[2], plain[3]), 1, "hooked BatchNorm")
  local lf, lp = fused(x):sum(), plain(x):sum()
  expect_same(lf:detach(), lp:detach(), "loss")
  lf:backward(); lp:backward()
  local function grads(m)
    local g = {}
    for name, t in m:named_parameters() do g[name] = t.grad end
    return g
  end
  local gf, gp, count = grads(fused), grads(plain), 0
  for name, g in pairs(gp) do
    expect(gf[name], "gradient of " .. name)
    expect_same(gf[name], g, name .. " grad")
    count = count + 1
  end
  expect_eq(count, 10, "parameters with gradients")
  local sf, sp = fused:state_dict(), plain:state_dict()
  for _, name in ipairs{"1.running_mean", "1.running_var", "4.running_mean", "4.running_var"} do
    expect_same(sf[name], sp[name], name)
  end
  h.remove()
end)

test("Xception eval without a graph (fused) equals the forward with a graph", function()
  fmd.manual_seed(14)
  local net = models.load_model("Xception", {num_classes = 2, widths = {c1 = 4, c2 = 8, b1 = 8, b2 = 12, b3 = 16, b12 = 20, c3 = 24,
    c4 = 28, middle = 1}})
  for _, m in ipairs(net:modules()) do
    if m.__name == "nn.BatchNorm2d" then
      fmd.no_grad(function()
        m.running_mean:copy(fmd.randn(m.num_features) * 0.1)
        m.running_var:copy(fmd.rand(m.num_features) + 0.5)
      end)
    end
  end
  net:eval()
  local x = fmd.randn(2, 3, 48, 48)
  local want = net(x):detach()
  expect_same(fmd.no_grad(function() return net(x) end), want, "Xception logits")
end)
