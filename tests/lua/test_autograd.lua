-- Autograd: graph recording, backward, accumulation, no_grad, detach,
-- retain_grad, gradients w.r.t. inputs, finite-difference checks.
local fmd = require "fmd"



test("simple chain rule", function()
  local x = fmd.tensor{1, 2, 3}:requires_grad_()
  local y = (x * x * 3 + x):sum()
  y:backward()
  expect_near(x.grad, fmd.tensor{7, 13, 19})
  expect(x.is_leaf and not y.is_leaf)
  expect_error(function() y:backward() end, "second time")
end)

test("gradients accumulate until cleared", function()
  local x = fmd.tensor{1, 2}:requires_grad_()
  x:sum():backward(); x:sum():backward()
  expect_near(x.grad, fmd.tensor{2, 2})
  x.grad = nil
  (x * 3):sum():backward()
  expect_near(x.grad, fmd.tensor{3, 3})
end)

test("no_grad, detach and requires_grad", function()
  local x = fmd.randn(3):requires_grad_()
  local y = fmd.no_grad(function() return x * 2 end)
  expect(not y.requires_grad and y.grad_fn == nil)
  expect(fmd.is_grad_enabled())
  local d = x:detach()
  expect(not d.requires_grad)
  expect_error(function() fmd.no_grad(function() error("boom") end) end, "boom")
  expect(fmd.is_grad_enabled(), "grad mode restored after an error")
  expect_error(function() (x * 2).requires_grad = false end, "non-leaf")
  expect_error(function() fmd.ones(3):sum():backward() end, "does not require grad")
end)

test("in-place add_: threaded, strided and broadcast, refused with a graph", function()
  fmd.manual_seed(6)
  local x, s = fmd.randn(3, 200, 130), fmd.randn(3, 200, 130)
  local want = x + s
  expect(rawequal(x:add_(s), x))
  expect_near(x, want, 0)
  local base, o = fmd.randn(4, 6), fmd.randn(6, 4)
  local want_t = base:t() + o
  local v = base:t()                             -- strided view: writes through to base
  v:add_(o)
  expect_near(v, want_t, 0)
  local row = fmd.randn(4)
  local m = fmd.randn(3, 4)
  local want_b = m + row
  m:add_(row)                                    -- other broadcast to t
  expect_near(m, want_b, 0)
  expect_error(function() row:add_(m) end, "add_: other [3 x 4] does not broadcast to the shape of the tensor [4]")
  expect_error(function() m:add_(fmd.randn(5)) end, "do not broadcast")
  local p = fmd.randn(4):requires_grad_()
  expect_error(function() p:add_(row) end, "requires grad")
  expect_error(function() row:add_(p) end, "requires grad")
  fmd.no_grad(function() p:add_(row) end)        -- no graph: allowed, as in PyTorch's no_grad
end)

test("in-place relu: relu_, F.relu(x, true) and nn.ReLU(true) only without a graph", function()
  local nn, F = require "fmd.nn", require "fmd.nn.functional"
  fmd.manual_seed(5)
  local x = fmd.randn(3, 200, 130)               -- large enough for the threaded loop
  local want = x:relu()
  expect(rawequal(x:relu_(), x))
  expect_near(x, want, 0)
  local base = fmd.randn(4, 6)
  local want_t = base:relu():t()
  local v = base:t()                             -- strided view: writes through to base
  v:relu_()
  expect_near(v, want_t, 0)
  expect(base:min():item() >= 0)
  -- a graph is recorded: in-place is refused, the modules fall back to a new tensor
  local p = fmd.randn(5):requires_grad_()
  expect_error(function() p:relu_() end, "requires grad")
  local keep = p:detach():clone()
  local y = nn.ReLU(true)(p)
  expect(not rawequal(y, p) and y.requires_grad)
  expect_near(p:detach(), keep, 0, "input untouched while a graph is recorded")
  y:sum():backward()
  expect_near(p.grad, keep:gt(0), 0)
  local img = fmd.randn(5)                       -- needs no grad, but a graph may save it
  expect(not rawequal(F.relu(img, true), img))
  -- no graph: the input itself is overwritten and returned
  local z = fmd.randn(2, 3)
  local zr = z:relu()
  expect(fmd.no_grad(function() return rawequal(nn.ReLU(true)(z), z) end))
  expect_near(z, zr, 0)
  expect(tostring(nn.ReLU(true)):find("inplace=True", 1, true))
end)

test("retain_grad on an intermediate and grad w.r.t. input", function()
  local img = fmd.randn(1, 3, 4, 4):requires_grad_()
  local w = fmd.randn(3, 4, 4)
  local act = img * w
  act:retain_grad()
  local score = act:sum()
  score:backward()
  expect_near(act.grad, fmd.ones(1, 3, 4, 4))
  expect_near(img.grad, w:view(1, 3, 4, 4))
end)

test("backward with an explicit gradient", function()
  local x = fmd.tensor{1, 2, 3}:requires_grad_()
  local y = x * 2
  y:backward(fmd.tensor{1, 0, -1})
  expect_near(x.grad, fmd.tensor{2, 0, -2})
  expect_error(function() (x * 2):backward() end, "one-element")
end)

test("gradcheck: elementwise and broadcasting", function()
  fmd.manual_seed(1)
  local a, b = fmd.rand(2, 3) + 0.5, fmd.rand(3) + 0.5
  gradcheck("add", function() return ((a + b) * (a + b)):sum() end, {a, b})
  gradcheck("sub", function() return ((a - b) ^ 2):sum() end, {a, b})
  gradcheck("mul", function() return (a * b):sum() end, {a, b})
  gradcheck("div", function() return (a / b):sum() end, {a, b})
  gradcheck("pow", function() return (a:pow(b)):sum() end, {a, b})
  gradcheck("maximum", function() return a:maximum(b * 1.1):sum() end, {a, b})
  gradcheck("scalars", function() return ((2 - a) * 3 + 1 / a):sum() end, {a})
end)

test("gradcheck: unary maths", function()
  fmd.manual_seed(2)
  local a = fmd.rand(4) + 0.5
  for _, op in ipairs{"exp", "log", "sqrt", "sigmoid", "tanh", "neg"} do
    gradcheck(op, function() return a[op](a):mul(fmd.tensor{1, 2, 3, 4}):sum() end, {a})
  end
  local s = fmd.tensor{-1.3, -0.2, 0.4, 2.0}
  gradcheck("abs", function() return s:abs():sum() end, {s})
  gradcheck("relu", function() return (s:relu() * s):sum() end, {s})
  gradcheck("clamp", function() return (s:clamp(-0.5, 1) * s):sum() end, {s})
end)

test("gradcheck: reductions, views, matmul", function()
  fmd.manual_seed(3)
  local a = fmd.randn(3, 4)
  local w = fmd.randn(3, 4)
  gradcheck("sum dim", function() return (a:sum(2) * fmd.tensor{1, 2, 3}):sum() end, {a})
  gradcheck("mean dim", function() return (a:mean(1, true) ^ 2):sum() end, {a})
  gradcheck("max dim", function() return (a:max(2) * fmd.tensor{1, 2, 3}):sum() end, {a})
  gradcheck("max all", function() return a:max() * 3 end, {a})
  gradcheck("view/transpose", function() return (a:t():reshape(12) * w:view(12)):sum() end, {a})
  gradcheck("permute", function() return (a:view(3, 2, 2):permute(3, 1, 2):contiguous():view(-1) * w:view(-1)):sum() end, {a})
  gradcheck("narrow/select", function() return (a:narrow(2, 2, 2):sum() + a:select(1, 3):sum() * 2) end, {a})
  local r = fmd.randn(3, 4)
  gradcheck("index", function() return (a:index(1, {3, 1, 3}) * r):sum() end, {a})
  local b = fmd.randn(4, 2)
  gradcheck("matmul", function() return (a:matmul(b) ^ 2):sum() end, {a, b})
  local v = fmd.randn(4)
  gradcheck("matvec", function() return (a:matmul(v) ^ 2):sum() end, {a, v})
  local x, y = fmd.randn(2, 3, 4), fmd.randn(2, 4, 5)
  gradcheck("bmm", function() return (x:matmul(y) ^ 2):sum() end, {x, y})
end)
