-- conv2d and pooling: forward and backward against PyTorch 1.13 fixtures
-- (tests/fixtures/conv.safetensors, written by tests/fixtures/make_conv.py, which also
-- holds the list of cases), finite-difference gradient checks, and the
-- error messages for bad shapes and arguments.
local fmd = require "fmd"
local FIX = "tests/fixtures/conv.safetensors"

local function ints(csv)
  local t = {}
  for v in csv:gmatch("[^,]+") do t[#t + 1] = math.tointeger(tonumber(v)) end
  return t
end

local function run_op(op, t, args)
  if op == "conv2d" then return fmd.conv2d(t.x, t.w, t.b, table.unpack(args)) end
  return fmd[op](t.x, table.unpack(args))
end

test("forward and backward match PyTorch on every fixture", function()
  local n = 0
  for _, c in ipairs(load_fixture_cases(FIX)) do
    n = n + 1
    local f, t, md = c.name, c.tensors, c.meta
    local args = ints(md.args)
    local leaves = {"x", "w", "b"}
    for _, k in ipairs(leaves) do if t[k] then t[k].requires_grad = true end end
    local y = run_op(md.op, t, args)
    expect_near(y, t.y, 1e-4, f .. " forward")
    expect_eq(fmd.shape_str(y), fmd.shape_str(t.y), f .. " output shape")
    y:backward(t.gy)
    for _, k in ipairs(leaves) do
      if t[k] then expect_near(t[k].grad, t["g" .. k], 1e-4, f .. " grad " .. k) end
    end
  end
  expect(n >= 15, "expected the conv fixtures, found " .. n)
end)



-- (y * r):sum() with a fixed random r, so every output position matters
local function weighted(fn, ...)
  local y = fmd.no_grad(fn, ...)
  local r = fmd.randn(y:size())
  return function() return (fn() * r):sum() end
end

test("gradcheck conv2d: general, strided/dilated, groups, depthwise, 1x1", function()
  fmd.manual_seed(11)
  local cases = {
    {{2, 3, 5, 6}, {4, 3, 3, 3}, true, {1, 1, 1, 1, 1, 1, 1}},
    {{1, 2, 7, 7}, {3, 2, 3, 2}, false, {2, 1, 1, 0, 2, 1, 1}},
    {{2, 4, 5, 5}, {4, 2, 3, 3}, true, {1, 2, 1, 1, 1, 1, 2}},
    {{2, 3, 6, 5}, {6, 1, 3, 3}, true, {2, 2, 1, 1, 1, 1, 3}},
    {{2, 4, 4, 3}, {3, 4, 1, 1}, true, {1, 1, 0, 0, 1, 1, 1}},
  }
  for i, c in ipairs(cases) do
    local x, w = fmd.randn(c[1]), fmd.randn(c[2])
    local b = c[3] and fmd.randn(c[2][1]) or nil
    local f = weighted(function() return fmd.conv2d(x, w, b, table.unpack(c[4])) end)
    gradcheck("conv case " .. i, f, b and {x, w, b} or {x, w})
  end
end)

-- values at least 0.1 apart, so a 1e-2 step never changes which is the max
local function spaced(...)
  local t = fmd.zeros(...)
  local flat, n = t:view(-1), t:numel()
  local vals = {}
  for i = 1, n do vals[i] = (i - n / 2) * 0.1 end
  for i = n, 2, -1 do
    local j = math.random(i)
    vals[i], vals[j] = vals[j], vals[i]
  end
  for i = 1, n do flat[i] = vals[i] end
  return t
end

test("gradcheck pooling: max, avg, adaptive", function()
  fmd.manual_seed(12)
  math.randomseed(12)
  local x = spaced(2, 2, 7, 6)
  gradcheck("max_pool2d", weighted(function() return fmd.max_pool2d(x, 3, 3, 2, 2, 1, 1) end), {x})
  gradcheck("max_pool2d rect", weighted(function() return fmd.max_pool2d(x, 2, 3, 1, 2, 0, 1) end), {x})
  local a = fmd.randn(2, 2, 7, 6)
  gradcheck("avg_pool2d", weighted(function() return fmd.avg_pool2d(a, 3, 3, 2, 2, 1, 1) end), {a})
  gradcheck("avg_pool2d rect", weighted(function() return fmd.avg_pool2d(a, 2, 3, 1, 2, 1, 0) end), {a})
  gradcheck("adaptive 1x1", weighted(function() return fmd.adaptive_avg_pool2d(a, 1, 1) end), {a})
  gradcheck("adaptive 3x4", weighted(function() return fmd.adaptive_avg_pool2d(a, 3, 4) end), {a})
end)

test("non-contiguous input, partial requires_grad, accumulation", function()
  fmd.manual_seed(13)
  local base = fmd.randn(2, 3, 6, 5)
  local xt = base:transpose(3, 4)            -- (2,3,5,6), not contiguous
  local x = xt:contiguous()
  local w, b = fmd.randn(4, 3, 3, 3), fmd.randn(4)
  expect_near(fmd.conv2d(xt, w, b, 1, 1, 1, 1, 1, 1, 1), fmd.conv2d(x, w, b, 1, 1, 1, 1, 1, 1, 1), 1e-6)
  expect_near(fmd.max_pool2d(xt, 2, 2, 2, 2, 0, 0), fmd.max_pool2d(x, 2, 2, 2, 2, 0, 0), 0)
  -- gradient reaches a non-contiguous view's base
  base.requires_grad = true
  fmd.conv2d(base:transpose(3, 4), w, nil, 1, 1, 1, 1, 1, 1, 1):sum():backward()
  local g1 = base.grad:clone()
  expect(g1:abs():sum():item() > 0)
  -- input gradient only (saliency: weights frozen), twice: accumulates
  base.grad = nil
  for _ = 1, 2 do fmd.conv2d(base:transpose(3, 4), w, nil, 1, 1, 1, 1, 1, 1, 1):sum():backward() end
  expect_near(base.grad, g1 * 2, 1e-5)
  expect(w.grad == nil)
  -- weight gradient only (first layer: the image needs no grad)
  w.requires_grad = true
  local y = fmd.conv2d(x, w, b, 1, 1, 1, 1, 1, 1, 1)
  expect(y.requires_grad)
  y:sum():backward()
  expect(w.grad ~= nil and x.grad == nil and b.grad == nil)
  -- no graph under no_grad
  local z = fmd.no_grad(function() return fmd.conv2d(x, w, b, 1, 1, 1, 1, 1, 1, 1) end)
  expect(not z.requires_grad)
end)

test("max_pool2d without a graph equals the one that keeps its argmax (strides 1-3, ties, NaN)", function()
  fmd.manual_seed(16)
  local v = {}
  for i = 1, 2 * 3 * 11 * 13 do v[i] = math.random(0, 3) end   -- many ties
  v[100] = 0 / 0
  local x = fmd.tensor(v):reshape(2, 3, 11, 13)
  local nan = 0
  for _, g in ipairs({{3, 3, 2, 2, 1, 1}, {3, 3, 1, 1, 1, 1}, {2, 3, 3, 3, 1, 1}, {4, 2, 2, 3, 0, 1}}) do
    local plain = fmd.max_pool2d(x, table.unpack(g))
    local xg = x:clone(); xg.requires_grad = true
    local kept = fmd.max_pool2d(xg, table.unpack(g))
    local a, b = plain:reshape(plain:numel()):totable(), kept:detach():reshape(plain:numel()):totable()
    for i = 1, #a do
      expect(a[i] == b[i] or (a[i] ~= a[i] and b[i] ~= b[i]), "geometry " .. table.concat(g, ",") .. " at " .. i)
      if a[i] ~= a[i] then nan = nan + 1 end
    end
  end
  expect(nan >= 3, "the NaN reaches the outputs whose windows hold it")
end)

-- 1x1 convs on planes of <= 128 pixels run as one GEMM over the regrouped
-- batch; each sample alone (N = 1) takes the per-sample path
test("1x1 conv on a small plane: the batched GEMM equals sample by sample, gradients too", function()
  fmd.manual_seed(17)
  local x, w, b = fmd.randn(3, 12, 8, 8), fmd.randn(20, 12, 1, 1) * 0.3, fmd.randn(20)
  for _, t in ipairs({x, w, b}) do t.requires_grad = true end
  local r = fmd.randn(3, 20, 8, 8)
  local y = fmd.conv2d(x, w, b, 1, 1, 0, 0, 1, 1, 1)
  ;(y * r):sum():backward()
  local gx, gw, gb = x.grad:clone(), w.grad:clone(), b.grad:clone()
  x.grad, w.grad, b.grad = nil, nil, nil
  for n = 1, 3 do
    local xn = x:narrow(1, n, 1)
    local yn = fmd.conv2d(xn, w, b, 1, 1, 0, 0, 1, 1, 1)
    expect_near(y:narrow(1, n, 1), yn, 1e-5, "sample " .. n .. " forward")
    ;(yn * r:narrow(1, n, 1)):sum():backward()
  end
  expect_near(gx, x.grad, 1e-5, "input gradient")
  expect_near(gw, w.grad, 1e-4, "weight gradient")
  expect_near(gb, b.grad, 1e-4, "bias gradient")
end)

-- The direct kernel (engine/nn_conv_direct.c) takes stride-1, unpadded
-- convs with rows of >= 16 outputs and <= 64 output channels; padding 1
-- sends the same conv through im2col, whose interior is the unpadded result.
test("direct kernel equals the im2col path: forward and every gradient", function()
  fmd.manual_seed(15)
  local cases = {   -- x shape, w shape, bias
    {{2, 3, 20, 22}, {6, 3, 7, 7}, true},     -- OW 16: one tile
    {{1, 1, 5, 33}, {1, 1, 3, 3}, false},     -- OW 31: a shifted last tile
    {{3, 6, 9, 50}, {13, 6, 3, 5}, true},     -- OW 46: 32 + 14, blocks of 6, 6, 1
    {{2, 16, 8, 40}, {32, 16, 2, 7}, true},   -- the largest O of the direct weight gradient
    {{2, 32, 6, 21}, {64, 32, 3, 3}, false},  -- the largest O taken (Xception's conv2)
    {{1, 2, 4, 100}, {5, 2, 1, 3}, false},    -- a 1-row kernel
    {{2, 3, 12, 40}, {4, 3, 2, 9}, true},     -- 9 taps a row: weight-gradient tiles of 7, 1, 1
    {{1, 5, 6, 38}, {7, 5, 4, 6}, false},     -- 6 taps: 5, 1
    {{1, 16, 16, 600}, {32, 16, 7, 7}, true}, -- wide rows: weight gradient in chunks of a few rows
  }
  for i, c in ipairs(cases) do
    local x, w = fmd.randn(c[1]), fmd.randn(c[2]) * 0.3
    local b = c[3] and fmd.randn(c[2][1]) or nil
    local leaves = b and {x, w, b} or {x, w}
    for _, t in ipairs(leaves) do t.requires_grad = true end
    local y = fmd.conv2d(x, w, b, 1, 1, 0, 0, 1, 1, 1)
    local r = fmd.randn(y:size())
    ;(y * r):sum():backward()
    local got = {}
    for k, t in ipairs(leaves) do got[k] = t.grad:clone(); t.grad = nil end
    local OH, OW = y:size(3), y:size(4)
    local ref = fmd.conv2d(x, w, b, 1, 1, 1, 1, 1, 1, 1):narrow(3, 2, OH):narrow(4, 2, OW)
    expect_near(y, ref, 1e-4, "case " .. i .. " forward")
    ;(ref * r):sum():backward()
    for k, t in ipairs(leaves) do expect_near(got[k], t.grad, 1e-3, "case " .. i .. " grad " .. k) end
  end
end)

test("batch 1 and batch 3 agree with batch-parallel results", function()
  fmd.manual_seed(14)
  local x, w, b = fmd.randn(3, 8, 9, 9), fmd.randn(16, 8, 3, 3), fmd.randn(16)
  local whole = fmd.conv2d(x, w, b, 1, 1, 1, 1, 1, 1, 1)
  for i = 1, 3 do
    local xi = x:narrow(1, i, 1)
    expect_near(fmd.conv2d(xi, w, b, 1, 1, 1, 1, 1, 1, 1), whole:narrow(1, i, 1), 1e-5, "sample " .. i)
  end
end)

test("errors name the op, shapes and expectation", function()
  local x = fmd.randn(2, 3, 8, 8)
  expect_error(function() fmd.conv2d(x, fmd.randn(4, 2, 3, 3), nil, 1, 1, 0, 0, 1, 1, 1) end,
    "conv2d: input [2 x 3 x 8 x 8] has 3 channels, weight [4 x 2 x 3 x 3] expects 2 (x groups 1)")
  expect_error(function() fmd.conv2d(fmd.randn(3, 8, 8), fmd.randn(4, 3, 3, 3), nil, 1, 1, 0, 0, 1, 1, 1) end,
    "conv2d: input must be 4-D (N,C,H,W), got [3 x 8 x 8]")
  expect_error(function() fmd.conv2d(x, fmd.randn(4, 3, 3, 3), fmd.randn(5), 1, 1, 0, 0, 1, 1, 1) end,
    "conv2d: bias [5] should be [4]")
  expect_error(function() fmd.conv2d(x, fmd.randn(4, 1, 3, 3), nil, 1, 1, 0, 0, 1, 1, 3) end,
    "not divisible by groups 3")
  expect_error(function() fmd.conv2d(x, fmd.randn(4, 3, 9, 9), nil, 1, 1, 0, 0, 1, 1, 1) end,
    "smaller than the dilated kernel (9 x 9)")
  expect_error(function() fmd.conv2d(x, fmd.randn(4, 3, 3, 3), nil, 0, 1, 0, 0, 1, 1, 1) end,
    "stride (0, 1) must be positive")
  expect_error(function() fmd.conv2d(x, fmd.randn(4, 3, 3, 3), nil, 1.5, 1, 0, 0, 1, 1, 1) end,
    "integer")
  expect_error(function() fmd.max_pool2d(x, 3, 3, 1, 1, 2, 2) end,
    "max_pool2d: padding (2, 2) should be at most half of the kernel size (3, 3)")
  expect_error(function() fmd.avg_pool2d(fmd.randn(8, 8), 2, 2, 2, 2, 0, 0) end,
    "avg_pool2d: input must be 4-D (N,C,H,W), got [8 x 8]")
  expect_error(function() fmd.max_pool2d(fmd.randn(1, 1, 2, 2), 3, 3, 1, 1, 0, 0) end,
    "smaller than the kernel (3 x 3)")
  expect_error(function() fmd.adaptive_avg_pool2d(x, 0, 1) end,
    "adaptive_avg_pool2d: output size (0, 1) must be positive")
end)
