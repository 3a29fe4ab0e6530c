-- pad2d (nn.ZeroPad2d, F.pad) and relu6 (nn.ReLU6, F.relu6), the ops
-- MobileNetV2 adds: forward and backward against PyTorch 1.13
-- (tests/fixtures/pad_relu6.safetensors, written by make_pad_relu6.py, which
-- holds the list of cases), finite-difference gradient checks, the modules,
-- and the error messages.
local fmd = require "fmd"
local nn = require "fmd.nn"
local F = nn.functional
local FIX = "tests/fixtures/pad_relu6.safetensors"

test("forward and backward match PyTorch on every fixture", function()
  local n, ops = 0, {}
  for _, c in ipairs(load_fixture_cases(FIX)) do
    n = n + 1
    local t, op, a = c.tensors, c.meta.op, {}
    for v in (c.meta.args or ""):gmatch("[^,]+") do a[#a + 1] = tonumber(v) end
    ops[op] = true
    t.x.requires_grad = true
    local y
    if op == "pad2d" then y = F.pad(t.x, {a[1], a[2], a[3], a[4]}, a[5])
    else y = F.relu6(t.x) end
    expect_eq(fmd.shape_str(y), fmd.shape_str(t.y), c.name .. " shape")
    expect_near(y, t.y, 0, c.name .. " forward")    -- copies and clamps: exact
    y:backward(t.gy)
    expect_near(t.x.grad, t.gx, 0, c.name .. " backward")
  end
  expect(n >= 7, "expected the pad_relu6 fixtures, found " .. n)
  expect(ops.pad2d and ops.relu6, "a fixture op is missing")
end)

local function weighted(fn)
  local r = fmd.randn(fmd.no_grad(fn):size())
  return function() return (fn() * r):sum() end
end

test("gradcheck pad2d (asymmetric, through a second op) and relu6", function()
  fmd.manual_seed(31)
  local x = fmd.randn(2, 3, 4, 5)
  gradcheck("pad2d", weighted(function() return fmd.pad2d(x * x, 0, 1, 2, 1, 0.5) end), {x})
  -- relu6 away from its kinks (finite differences straddle them otherwise)
  local s = fmd.tensor{{-2.1, -0.3, 0.4, 1.7}, {3.3, 5.2, 6.8, 9.0}}
  gradcheck("relu6", weighted(function() return F.relu6(s * 1.5) end), {s})
end)

test("pad2d keeps the input, fills the border, and a stride-2 conv after it is Keras' 'same'", function()
  fmd.manual_seed(32)
  local x = fmd.randn(1, 2, 4, 4)
  local y = fmd.pad2d(x, 0, 1, 0, 1, 0)
  expect_eq(fmd.shape_str(y), "[1 x 2 x 5 x 5]")
  expect_near(y:narrow(3, 1, 4):narrow(4, 1, 4), x, 0, "inside")
  expect_eq(y:narrow(3, 5, 1):abs():sum():item() + y:narrow(4, 5, 1):abs():sum():item(), 0, "bottom/right zero")
  -- Keras: out[i] reads rows 2i..2i+2 of the bottom-padded input, so
  -- out[1][1] sees x[1..3][1..3] only (no top/left zeros), unlike padding 1
  local w = fmd.randn(2, 1, 3, 3)
  local keras = fmd.conv2d(y, w, nil, 2, 2, 0, 0, 1, 1, 2)
  local corner = (x:narrow(3, 1, 3):narrow(4, 1, 3) * w:view(1, 2, 3, 3)):sum(4):sum(3)
  expect_near(keras:narrow(3, 1, 1):narrow(4, 1, 1):reshape(2), corner:reshape(2), 1e-5, "corner window")
  local sym = fmd.conv2d(x, w, nil, 2, 2, 1, 1, 1, 1, 2)
  expect(fmd.max_rel_err(sym, keras) > 1e-2, "symmetric padding must give other numbers")
end)

test("modules: nn.ZeroPad2d and nn.ReLU6", function()
  local m = nn.ZeroPad2d{0, 1, 0, 1}
  expect_eq(tostring(m), "ZeroPad2d((0, 1, 0, 1))")
  expect_eq(fmd.shape_str(m(fmd.ones(2, 3, 6, 6))), "[2 x 3 x 7 x 7]")
  expect_eq(fmd.shape_str(nn.ZeroPad2d(2)(fmd.ones(1, 1, 3, 3))), "[1 x 1 x 7 x 7]")
  expect_near(nn.ReLU6()(fmd.tensor{-1, 0, 2.5, 6, 7}), fmd.tensor{0, 0, 2.5, 6, 6}, 0)
end)

test("bad arguments name the problem", function()
  expect_error(function() fmd.pad2d(fmd.ones(2, 3), 1, 1, 1, 1, 0) end, "pad2d: input must be 4-D (N,C,H,W), got [2 x 3]")
  expect_error(function() fmd.pad2d(fmd.ones(1, 1, 2, 2), 0, -1, 0, 0, 0) end, "must not be negative")
  expect_error(function() F.pad(fmd.ones(1, 1, 2, 2), {1, 1}) end, "pad: padding must be {left, right, top, bottom}")
  expect_error(function() F.pad(fmd.ones(1, 1, 2, 2), {1, 1, 0.5, 0}) end, "pad: padding[3] must be an integer")
  expect_error(function() nn.ZeroPad2d{0, 1, -1, 0} end, "nn.ZeroPad2d: padding[3] must be an integer >= 0")
  expect_error(function() nn.ZeroPad2d("x") end, "nn.ZeroPad2d: padding must be a number or {left, right, top, bottom}")
end)
