-- linear, batch_norm, dropout, softmax, log_softmax, cross_entropy, mse_loss:
-- forward and backward against PyTorch 1.13 fixtures (tests/fixtures/nn_ops.safetensors,
-- written by tests/fixtures/make_nn_ops.py, which holds the list of cases),
-- finite-difference gradient checks, dropout statistics and determinism,
-- and the error messages.
local fmd = require "fmd"
local FIX = "tests/fixtures/nn_ops.safetensors"

local function csv(s)
  local t = {}
  for v in (s or ""):gmatch("[^,]+") do t[#t + 1] = tonumber(v) end
  return t
end

local function run_op(op, t, a)
  if op == "linear" then return fmd.linear(t.x, t.w, t.b) end
  if op == "batch_norm" then
    return fmd.batch_norm(t.x, t.w, t.b, t.running_mean, t.running_var, a[1] == 1, a[2], a[3])
  end
  if op == "softmax" or op == "log_softmax" then return fmd[op](t.x, math.tointeger(a[1])) end
  return fmd[op](t.x, t.t)   -- cross_entropy, mse_loss
end

-- sums over many terms (wide dot products, planes of a large-mean batch)
-- round differently from PyTorch's blocked order
local LONG = {linear_wide = true, bn2d_train_offset = true}

test("forward and backward match PyTorch on every fixture", function()
  local n, ops = 0, {}
  for _, c in ipairs(load_fixture_cases(FIX)) do
    n = n + 1
    local name, t, md = c.name, c.tensors, c.meta
    ops[md.op] = true
    local tol = LONG[name] and 1e-3 or 1e-4
    local leaves = {"x", "w", "b"}
    if md.op == "mse_loss" then leaves[#leaves + 1] = "t" end
    for _, k in ipairs(leaves) do if t[k] then t[k].requires_grad = true end end
    local y = run_op(md.op, t, csv(md.args))
    if y:dim() == 0 then
      -- 0-dim losses; view({}) also accepts the [1] shape older fixture writers used
      t.y, t.gy = t.y:view({}), t.gy:view({})
    end
    expect_eq(fmd.shape_str(y), fmd.shape_str(t.y), name .. " output shape")
    expect_near(y, t.y, tol, name .. " forward")
    if t.running_mean then
      expect_near(t.running_mean, t.running_mean_out, 1e-5, name .. " running_mean")
      expect_near(t.running_var, t.running_var_out, 1e-5, name .. " running_var")
    end
    y:backward(t.gy)
    for _, k in ipairs(leaves) do
      if t[k] then expect_near(t[k].grad, t["g" .. k], tol, name .. " grad " .. k) end
    end
  end
  expect(n >= 24, "expected the nn_ops fixtures, found " .. n)
  for _, op in ipairs({"linear", "batch_norm", "softmax", "log_softmax", "cross_entropy", "mse_loss"}) do
    expect(ops[op], "no fixture for " .. op)
  end
end)



-- (y * r):sum() with a fixed random r, so every output position matters
local function weighted(fn)
  local y = fmd.no_grad(fn)
  local r = fmd.randn(y:size())
  return function() return (fn() * r):sum() end
end

test("gradcheck linear, with and without bias", function()
  fmd.manual_seed(21)
  local x, w, b = fmd.randn(4, 5), fmd.randn(3, 5), fmd.randn(3)
  gradcheck("linear", weighted(function() return fmd.linear(x, w, b) end), {x, w, b})
  gradcheck("linear nobias", weighted(function() return fmd.linear(x, w) end), {x, w})
end)

test("gradcheck batch_norm: training (4-D and 2-D), eval, no affine", function()
  fmd.manual_seed(22)
  local x, w, b = fmd.randn(3, 2, 3, 3), fmd.rand(2) + 0.5, fmd.randn(2)
  gradcheck("bn train", weighted(function() return fmd.batch_norm(x, w, b, nil, nil, true, 0.1, 1e-5) end),
    {x, w, b}, 2e-2)
  local x2 = fmd.randn(6, 3)
  local w2, b2 = fmd.rand(3) + 0.5, fmd.randn(3)
  gradcheck("bn 2-D train", weighted(function() return fmd.batch_norm(x2, w2, b2, nil, nil, true, 0.1, 1e-5) end),
    {x2, w2, b2}, 2e-2)
  local rm, rv = fmd.randn(2), fmd.rand(2) + 0.5
  gradcheck("bn eval", weighted(function() return fmd.batch_norm(x, w, b, rm, rv, false, 0.1, 1e-5) end), {x, w, b})
  gradcheck("bn train no affine", weighted(function() return fmd.batch_norm(x, nil, nil, nil, nil, true, 0.1, 1e-5) end),
    {x}, 2e-2)
end)

test("gradcheck batch_norm_relu: training and eval (the fused ReLU masks the gradient)", function()
  fmd.manual_seed(26)
  -- bias 0.3 and a spread-out x: some outputs on either side of 0, none
  -- within the finite-difference step of it
  local x, w, b = fmd.randn(3, 2, 3, 3) * 2, fmd.rand(2) + 0.5, fmd.tensor{0.3, -0.2}
  gradcheck("bn_relu train", weighted(function() return fmd.batch_norm_relu(x, w, b, nil, nil, true, 0.1, 1e-5) end),
    {x, w, b}, 2e-2)
  local rm, rv = fmd.randn(2), fmd.rand(2) + 0.5
  gradcheck("bn_relu eval", weighted(function() return fmd.batch_norm_relu(x, w, b, rm, rv, false, 0.1, 1e-5) end),
    {x, w, b}, 2e-2)
  local y = fmd.no_grad(function() return fmd.batch_norm_relu(x, w, b, nil, nil, true, 0.1, 1e-5) end)
  expect(y:min():item() == 0 and y:max():item() > 0, "both sides of the ReLU are exercised")
end)

test("gradcheck softmax, log_softmax along every dim", function()
  fmd.manual_seed(23)
  local x = fmd.randn(2, 3, 4)
  for _, dim in ipairs({1, 2, 3, -1}) do
    gradcheck("softmax dim " .. dim, weighted(function() return fmd.softmax(x, dim) end), {x})
    gradcheck("log_softmax dim " .. dim, weighted(function() return fmd.log_softmax(x, dim) end), {x})
  end
end)

test("gradcheck cross_entropy, mse_loss, dropout (fixed mask)", function()
  fmd.manual_seed(24)
  local logits, target = fmd.randn(5, 3), fmd.tensor({0, 2, 1, 1, 0})
  gradcheck("cross_entropy", function() return fmd.cross_entropy(logits, target) end, {logits})
  local a, b = fmd.randn(3, 4), fmd.randn(3, 4)
  gradcheck("mse_loss", function() return fmd.mse_loss(a, b) end, {a, b})
  local x = fmd.randn(4, 5)
  local f = weighted(function() fmd.manual_seed(7); return fmd.dropout(x, 0.4, true) end)
  gradcheck("dropout", f, {x})
end)

test("linear reads transposed and strided views without copies changing results", function()
  fmd.manual_seed(25)
  local x, w, b = fmd.randn(6, 5), fmd.randn(4, 5), fmd.randn(4)
  local ref = fmd.linear(x, w, b)
  -- same values through views: x^T^T, w stored as (in,out) and transposed, strided rows
  local xt = x:t():contiguous():t()
  local wt = w:t():contiguous():t()
  expect(not xt:is_contiguous() and not wt:is_contiguous())
  expect_near(fmd.linear(xt, wt, b), ref, 1e-6, "transposed views")
  local wide = fmd.randn(6, 9)
  wide:narrow(2, 3, 5):copy(x)
  expect_near(fmd.linear(wide:narrow(2, 3, 5), w, b), ref, 1e-6, "row stride 9")
  local bb = fmd.randn(4, 2)
  bb:select(2, 2):copy(b)
  expect_near(fmd.linear(x, w, bb:select(2, 2)), ref, 1e-6, "strided bias")
  -- gradients reach the bases of the views
  local wb = w:t():contiguous()   -- (in,out) leaf, used transposed
  wb.requires_grad = true
  fmd.linear(x, wb:t(), b):sum():backward()
  local w2 = w:clone(); w2.requires_grad = true
  fmd.linear(x, w2, b):sum():backward()
  expect_near(wb.grad, w2.grad:t(), 1e-6, "grad through w:t()")
end)

test("linear agrees with matmul on a GEMM big enough to split over threads", function()
  fmd.manual_seed(26)
  local x, w, b = fmd.randn(32, 700), fmd.randn(200, 700) * 0.05, fmd.randn(200)
  for _, v in ipairs({x, w, b}) do v.requires_grad = true end
  local y = fmd.linear(x, w, b)
  local r = fmd.randn(32, 200)
  local g = {}
  ;(y * r):sum():backward()
  for i, v in ipairs({x, w, b}) do g[i] = v.grad; v.grad = nil end
  local y2 = x:matmul(w:t()) + b
  expect_near(y, y2, 1e-4, "forward")
  ;(y2 * r):sum():backward()
  for i, v in ipairs({x, w, b}) do expect_near(g[i], v.grad, 1e-4, "grad " .. i) end
  -- thread count does not change the result beyond rounding
  local prev = fmd.get_num_threads()
  fmd.set_num_threads(1)
  local y1 = fmd.no_grad(fmd.linear, x, w, b)
  fmd.set_num_threads(prev)
  expect_near(y1, y, 1e-5, "1 thread vs pool")
end)

test("gradients accumulate across backward calls (into an existing .grad)", function()
  fmd.manual_seed(27)
  local x, w, b = fmd.randn(3, 4), fmd.randn(2, 4), fmd.randn(2)
  for _, v in ipairs({x, w, b}) do v.requires_grad = true end
  fmd.linear(x, w, b):sum():backward()
  local gx, gw, gb = x.grad:clone(), w.grad:clone(), b.grad:clone()
  fmd.linear(x, w, b):sum():backward()
  expect_near(x.grad, gx * 2, 1e-6); expect_near(w.grad, gw * 2, 1e-6); expect_near(b.grad, gb * 2, 1e-6)
  -- batch_norm and the losses accumulate too
  local bw = fmd.ones(4); bw.requires_grad = true
  for _ = 1, 2 do fmd.batch_norm(x, bw, nil, nil, nil, true, 0.1, 1e-5):pow(2):sum():backward() end
  local once = fmd.ones(4); once.requires_grad = true
  fmd.batch_norm(x, once, nil, nil, nil, true, 0.1, 1e-5):pow(2):sum():backward()
  expect_near(bw.grad, once.grad * 2, 1e-5)
  -- weight only (a frozen input) and input only (saliency: frozen layer)
  local xi, wf = fmd.randn(3, 4), fmd.randn(2, 4)
  xi.requires_grad = true
  fmd.linear(xi, wf, nil):sum():backward()
  expect(xi.grad ~= nil and wf.grad == nil)
  expect(not fmd.no_grad(fmd.linear, xi, wf, nil).requires_grad, "no graph under no_grad")
end)

test("batch_norm running statistics, eval mode, (N,C) input, threads", function()
  fmd.manual_seed(28)
  local x = fmd.randn(5, 3, 4, 4) * 2 + 1
  local rm, rv = fmd.zeros(3), fmd.ones(3)
  local y = fmd.batch_norm(x, nil, nil, rm, rv, true, 0.1, 1e-5)
  -- per-channel statistics by hand: mean over N, H, W
  local xc = x:transpose(1, 2):contiguous():view(3, -1)   -- (C, N*H*W)
  local m = xc:mean(2)
  local M = xc:size(2)
  local var_b = ((xc - m:view(3, 1)):pow(2)):sum(2) / M
  expect_near(rm, m * 0.1, 1e-5, "running_mean")
  expect_near(rv, fmd.ones(3) * 0.9 + var_b * (M / (M - 1)) * 0.1, 1e-5, "running_var uses the unbiased variance")
  -- output is normalised with the biased batch variance
  local yc = y:transpose(1, 2):contiguous():view(3, -1)
  expect_near(yc:mean(2), fmd.zeros(3), 1e-4)
  expect_near((yc:pow(2)):mean(2), fmd.ones(3), 1e-3)
  -- eval uses the running stats and leaves them alone
  local rm0, rv0 = rm:clone(), rv:clone()
  local ye = fmd.batch_norm(x, nil, nil, rm, rv, false, 0.1, 1e-5)
  expect_near(rm, rm0, 0); expect_near(rv, rv0, 0)
  expect_near(ye, (x - rm:view(1, 3, 1, 1)) / (rv:view(1, 3, 1, 1) + 1e-5):sqrt(), 1e-5, "eval formula")
  -- (N,C) input normalises each column
  local x2 = fmd.randn(10, 4) * 3 - 2
  local y2 = fmd.batch_norm(x2, nil, nil, nil, nil, true, 0.1, 0)
  expect_near(y2:mean(1), fmd.zeros(4), 1e-5)
  -- channel-parallel result equals the serial one; non-contiguous input
  local big = fmd.randn(8, 16, 12, 12)
  local w, b = fmd.rand(16), fmd.randn(16)
  local prev = fmd.get_num_threads()
  fmd.set_num_threads(1)
  local ys = fmd.batch_norm(big, w, b, nil, nil, true, 0.1, 1e-5)
  fmd.set_num_threads(prev)
  expect_near(fmd.batch_norm(big, w, b, nil, nil, true, 0.1, 1e-5), ys, 0, "threads")
  local nc = big:transpose(3, 4)
  expect_near(fmd.batch_norm(nc, w, b, nil, nil, true, 0.1, 1e-5):transpose(3, 4), ys, 1e-5, "non-contiguous")
end)

test("softmax and log_softmax: rows sum to 1, stable for huge logits, dims", function()
  fmd.manual_seed(29)
  local x = fmd.randn(3, 4, 5)
  for d = 1, 3 do
    local s = fmd.softmax(x, d)
    expect_near(s:sum(d), fmd.ones(s:sum(d):size()), 1e-5, "dim " .. d)
    expect_near(fmd.log_softmax(x, d), s:log(), 1e-5, "log_softmax dim " .. d)
  end
  expect_near(fmd.softmax(x, -1), fmd.softmax(x, 3), 0, "negative dim")
  local huge = fmd.tensor({{1000, 1001, 999}, {-1e4, -1e4, -1e4}})
  local s = fmd.softmax(huge, 2)
  expect_near(s, fmd.tensor({{0.24472847, 0.66524096, 0.09003057}, {1 / 3, 1 / 3, 1 / 3}}), 1e-5)
  local ls = fmd.log_softmax(huge, 2)
  expect(ls:abs():max():item() < 3, "log_softmax finite and small")
  local nc = x:transpose(1, 3)
  expect_near(fmd.softmax(nc, 2), fmd.softmax(nc:contiguous(), 2), 0, "non-contiguous input")
end)

test("cross_entropy: value, confident logits, matches log_softmax", function()
  local logits = fmd.tensor({{2, 0}, {0, 2}, {1, 1}})
  local t = fmd.tensor({0, 0, 1})
  local want = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2)) + math.log(2)) / 3
  expect_near(fmd.cross_entropy(logits, t):item(), want, 1e-6)
  local ls = fmd.log_softmax(logits, 2)
  expect_near(fmd.cross_entropy(logits, t):item(),
    -(ls[1][1] + ls[2][1] + ls[3][2]) / 3, 1e-6, "= -mean log_softmax[target]")
  local sure = fmd.tensor({{500, -500}, {-500, 500}})
  expect_near(fmd.cross_entropy(sure, fmd.tensor({0, 1})):item(), 0, 1e-7, "right and confident")
  expect_near(fmd.cross_entropy(sure, fmd.tensor({1, 0})):item(), 1000, 1e-6, "wrong and confident: finite")
  -- a non-contiguous target column works
  local tt = fmd.tensor({{0, 9}, {0, 9}, {1, 9}})
  expect_near(fmd.cross_entropy(logits, tt:select(2, 1)):item(), want, 1e-6)
  expect_eq(fmd.cross_entropy(logits, t):dim(), 0, "scalar loss")
end)

test("dropout: statistics, scaling, determinism under manual_seed, eval identity", function()
  local n, p = 200000, 0.3
  local x = fmd.ones(n)
  fmd.manual_seed(31)
  local y = fmd.dropout(x, p, true)
  local zeros = y:eq(fmd.zeros(1)):sum():item()
  local sigma = math.sqrt(p * (1 - p) / n)
  expect(math.abs(zeros / n - p) < 5 * sigma, ("dropped fraction %.4f, expected %.2f"):format(zeros / n, p))
  -- survivors are exactly 1 / (1 - p)
  local kept = y:max():item()
  expect_near(kept, 1 / (1 - p), 1e-6)
  expect_near(y:sum():item(), (n - zeros) * kept, 1e-4)
  expect(math.abs(y:mean():item() - 1) < 0.02, "expectation preserved")
  -- the same seed gives the same mask, for any thread count
  fmd.manual_seed(31)
  local prev = fmd.get_num_threads()
  fmd.set_num_threads(1)
  local y1 = fmd.dropout(x, p, true)
  fmd.set_num_threads(prev)
  expect_near(y1, y, 0, "same seed, 1 thread")
  local y2 = fmd.dropout(x, p, true)
  expect(fmd.max_rel_err(y2, y) > 0, "next call draws a new mask")
  -- the backward uses the forward's mask
  local a = fmd.randn(4, 6); a.requires_grad = true
  local o = fmd.dropout(a, 0.5, true)
  o:sum():backward()
  expect_near(a.grad, o:detach():ne(fmd.zeros(1)) * 2, 0, "grad = mask / (1 - p)")
  -- eval and p = 0: identity, gradient passes through
  local b = fmd.randn(3, 3); b.requires_grad = true
  expect_near(fmd.dropout(b, 0.5, false), b, 0, "eval")
  expect_near(fmd.dropout(b, 0, true), b, 0, "p = 0")
  fmd.dropout(b, 0.5, false):sum():backward()
  expect_near(b.grad, fmd.ones(3, 3), 0)
  -- p = 1: zeros, and zero gradient
  b.grad = nil
  local z = fmd.dropout(b, 1, true)
  expect_near(z, fmd.zeros(3, 3), 0, "p = 1")
  z:sum():backward()
  expect_near(b.grad, fmd.zeros(3, 3), 0)
end)

test("errors name the op, shapes and expectation", function()
  local x = fmd.randn(4, 5)
  expect_error(function() fmd.linear(x, fmd.randn(3, 6)) end,
    "linear: input [4 x 5] has 5 features, weight [3 x 6] expects 6")
  expect_error(function() fmd.linear(fmd.randn(2, 4, 5), fmd.randn(3, 5)) end,
    "linear: input must be 2-D (N,in), got [2 x 4 x 5]")
  expect_error(function() fmd.linear(x, fmd.randn(3, 5), fmd.randn(4)) end,
    "linear: bias [4] should be [3]")
  expect_error(function() fmd.linear(x, "w") end, "tensor expected")

  local img = fmd.randn(2, 3, 4, 4)
  expect_error(function() fmd.batch_norm(img, fmd.ones(4), nil, nil, nil, true, 0.1, 1e-5) end,
    "batch_norm: weight [4] should be [3] (one per channel of input [2 x 3 x 4 x 4])")
  expect_error(function() fmd.batch_norm(img, nil, nil, fmd.zeros(3), nil, true, 0.1, 1e-5) end,
    "batch_norm: running_mean and running_var must be given together")
  expect_error(function() fmd.batch_norm(img, nil, nil, nil, nil, false, 0.1, 1e-5) end,
    "batch_norm: eval mode (training = false) needs running_mean and running_var")
  expect_error(function() fmd.batch_norm(fmd.randn(1, 3), nil, nil, nil, nil, true, 0.1, 1e-5) end,
    "batch_norm: expected more than 1 value per channel when training, got input [1 x 3]")
  expect_error(function() fmd.batch_norm(fmd.randn(5), nil, nil, nil, nil, true, 0.1, 1e-5) end,
    "batch_norm: input must be (N,C) or (N,C,H,W), got [5]")
  expect_error(function() fmd.batch_norm(img, nil, nil, nil, nil, 1, 0.1, 1e-5) end, "boolean expected")
  expect_error(function() fmd.batch_norm(img, nil, nil, nil, nil, true, 0.1, -1) end,
    "batch_norm: eps -1 must be a finite number >= 0")

  expect_error(function() fmd.dropout(x, 1.5, true) end, "dropout: probability p must be in [0, 1], got 1.5")
  expect_error(function() fmd.dropout(x, -0.1, true) end, "dropout: probability p must be in [0, 1]")

  expect_error(function() fmd.softmax(x, 3) end, "dim 3 out of range for a 2-dim tensor")
  expect_error(function() fmd.log_softmax(x, -3) end, "out of range for a 2-dim tensor")

  local logits = fmd.randn(6, 2)
  expect_error(function() fmd.cross_entropy(logits, fmd.tensor({0, 1, 0, 1, 2, 0})) end,
    "cross_entropy: target 2 at position 5 is out of range 0..1 for 2 classes")
  expect_error(function() fmd.cross_entropy(logits, fmd.tensor({0, 1, -1, 1, 1, 0})) end,
    "cross_entropy: target -1 at position 3 is out of range 0..1 for 2 classes")
  expect_error(function() fmd.cross_entropy(logits, fmd.tensor({0, 0.5, 0, 1, 1, 0})) end,
    "cross_entropy: target 0.5 at position 2 is not an integer class id (expected 0..1 for 2 classes)")
  expect_error(function() fmd.cross_entropy(logits, fmd.tensor({0, 1, 0})) end,
    "cross_entropy: target [3] should be [6] (one class id per row of logits [6 x 2])")
  expect_error(function() fmd.cross_entropy(logits, fmd.zeros(6, 1)) end,
    "cross_entropy: target [6 x 1] should be [6]")
  expect_error(function() fmd.cross_entropy(fmd.randn(6), fmd.zeros(6)) end,
    "cross_entropy: logits must be 2-D (N,C), got [6]")
  local nan = fmd.zeros(6); nan[4] = 0 / 0
  expect_error(function() fmd.cross_entropy(logits, nan) end, "at position 4 is not an integer class id")

  expect_error(function() fmd.mse_loss(fmd.randn(2, 3), fmd.randn(3, 2)) end,
    "mse_loss: input [2 x 3] and target [3 x 2] must have the same shape")
end)
