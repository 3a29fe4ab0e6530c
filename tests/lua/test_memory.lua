-- What a recorded graph keeps alive: only the data a backward function reads
-- (engine/autograd.c: nodes hold storage-less shadows of their non-leaf
-- inputs; relu saves its output; a pointwise conv after a bias-free
-- depthwise conv recomputes its input), and that none of it changes a
-- gradient. docs/performance.md has the numbers for XceptionBased.
local fmd = require "fmd"

local function live()
  collectgarbage(); collectgarbage()
  return fmd.memory_in_use()
end

local function bytes(t) return t:numel() * 4 end

test("a BatchNorm output that only a ReLU consumed is freed; the ReLU keeps its output", function()
  local x = fmd.randn(8, 16, 64, 64):requires_grad_()
  local m0 = live()
  local y = fmd.batch_norm(x, nil, nil, nil, nil, true, 0.1, 1e-5)
  local z = y:relu()
  local n = bytes(y)
  y = nil
  local held = live() - m0
  -- z itself (which relu saved) and nothing of the same size besides
  expect(held >= n and held < 1.5 * n, ("graph holds %.2f MB, expected about %.2f"):format(held / 2^20, n / 2^20))
  -- the gradient is that of relu(bn(x)), computed from the saved output
  local gz = fmd.randn(z:size())
  z:backward(gz)
  local x2 = x:detach():clone():requires_grad_()
  local y2 = fmd.batch_norm(x2, nil, nil, nil, nil, true, 0.1, 1e-5)
  local mask = y2:detach():gt(0)
  y2:backward(gz * mask)
  expect_near(x.grad, x2.grad, 1e-6)
end)

test("the input of a pointwise conv after a bias-free depthwise conv is recomputed, not kept", function()
  fmd.manual_seed(3)
  local x = fmd.randn(4, 32, 64, 64):requires_grad_()
  local wd = (fmd.randn(32, 1, 3, 3) * 0.3):requires_grad_()
  local wp = (fmd.randn(16, 32, 1, 1) * 0.3):requires_grad_()
  local m0 = live()
  local d = fmd.conv2d(x, wd, nil, 1, 1, 1, 1, 1, 1, 32)
  local y = fmd.conv2d(d, wp, nil, 1, 1, 0, 0, 1, 1, 1)
  local nd, ny = bytes(d), bytes(y)
  d = nil
  local held = live() - m0
  expect(held < ny + nd / 4, ("graph holds %.2f MB, expected about %.2f (y only)"):format(held / 2^20, ny / 2^20))
  local gy = fmd.randn(y:size())
  y:backward(gy)
  -- the same graph with the depthwise output saved (a mul in between)
  local x2, wd2, wp2 = x:detach():clone():requires_grad_(), wd:detach():clone():requires_grad_(),
    wp:detach():clone():requires_grad_()
  local d2 = fmd.conv2d(x2, wd2, nil, 1, 1, 1, 1, 1, 1, 32) * 1
  fmd.conv2d(d2, wp2, nil, 1, 1, 0, 0, 1, 1, 1):backward(gy)
  expect_near(wp.grad, wp2.grad, 1e-6, "pointwise weight")
  expect_near(wd.grad, wd2.grad, 1e-6, "depthwise weight")
  expect_near(x.grad, x2.grad, 1e-6, "input")
end)

test("a depthwise conv with a bias keeps the pointwise input (no recompute) and gradients agree", function()
  local x = fmd.randn(2, 4, 9, 9):requires_grad_()
  local wd, bd = fmd.randn(4, 1, 3, 3):requires_grad_(), fmd.randn(4):requires_grad_()
  local wp = fmd.randn(5, 4, 1, 1):requires_grad_()
  local r = fmd.randn(2, 5, 5, 5)
  gradcheck("depthwise+bias then pointwise", function()
    return (fmd.conv2d(fmd.conv2d(x, wd, bd, 2, 2, 1, 1, 1, 1, 4), wp, nil, 1, 1, 0, 0, 1, 1, 1) * r):sum()
  end, {x, wd, bd, wp}, 1e-2)
end)

test("a second backward through a recomputed input is the usual error", function()
  local x = fmd.randn(2, 3, 6, 6):requires_grad_()
  local d = fmd.conv2d(x, fmd.randn(3, 1, 3, 3):requires_grad_(), nil, 1, 1, 1, 1, 1, 1, 3)
  local y = fmd.conv2d(d, fmd.randn(4, 3, 1, 1):requires_grad_(), nil, 1, 1, 0, 0, 1, 1, 1)
  d:sum():backward()
  expect_error(function() y:sum():backward() end, "second time")
end)

test("retain_grad asked after the tensor was used still gets its gradient", function()
  local x = fmd.tensor{1, -2, 3}:requires_grad_()
  local y = x * 2
  local z = (y * y):sum() + y:relu():sum()
  y:retain_grad()
  z:backward()
  expect_near(y.grad, fmd.tensor{2 * 2 + 1, 2 * -4, 2 * 6 + 1})
  expect_near(x.grad, y.grad * 2)
  -- asked before: as ever
  local a = x * 1
  a:retain_grad()
  a:exp():sum():backward()
  expect_near(a.grad, a:detach():exp())
end)

test("a tensor used by several ops gets the sum of their gradients", function()
  local x = fmd.tensor{0.5, -1, 2}:requires_grad_()
  local y = x * 3                       -- used four times below
  local z = (y:relu() + y:exp() + y * y + y:sum()):sum()
  z:backward()
  local yv = x:detach() * 3
  local want = (yv:gt(0) + yv:exp() + yv * 2 + 3) * 3
  expect_near(x.grad, want, 1e-5)
end)

test("after backward the graph holds no activation memory", function()
  local nn = require "fmd.nn"
  fmd.manual_seed(1)
  local m = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU(),
    nn.SeparableConv2d(8, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
  local x = fmd.randn(4, 3, 32, 32)
  m(x):sum():backward()             -- first step makes the .grad tensors
  local m0 = live()
  local out = m(x):sum()
  expect(live() > m0 + 4 * 8 * 32 * 32 * 4, "the forward keeps activations")
  out:backward()
  out = nil
  expect(live() <= m0, ("%d bytes left after backward"):format(live() - m0))
end)
