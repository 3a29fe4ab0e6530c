-- fmd.optim: SGD and Adam trajectories against PyTorch 1.13 (three steps on
-- a small conv net, the optim_* cases of tests/fixtures/nn_modules.safetensors from
-- make_nn_modules.py), hand-computed updates, the multi-threaded kernel path,
-- resuming through a checkpoint file, and option errors.
local fmd = require "fmd"
local nn = require "fmd.nn"
local optim = require "fmd.optim"
local state_io = require "fmd.state_io"
local F = nn.functional
local FIX = "tests/fixtures/nn_modules.safetensors"

local function small_net()
  return nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1, 1, 1, false), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                       nn.Linear(64, 3))
end

local function prefixed(t, prefix)
  local out = {}
  for k, v in pairs(t) do
    if k:sub(1, #prefix) == prefix then out[k:sub(#prefix + 1)] = v end
  end
  return out
end

test("SGD and Adam trajectories match PyTorch over three steps", function()
  local n = 0
  for _, c in ipairs(load_fixture_cases(FIX)) do
    if c.name:match("^optim_") then
      n = n + 1
      local f, t, md = c.name, c.tensors, c.meta
      local net = small_net()
      net:load_state_dict(prefixed(t, "p0."))
      net:train()
      local opt = assert(load("return " .. md.lua, "=ctor", "t", {optim = optim, params = net:parameters()}))()
      for k = 1, 3 do
        opt:zero_grad()
        local loss = F.cross_entropy(net(t.x), t.t)
        expect_near(loss:item(), t["loss" .. k][1], 1e-4, ("%s loss before step %d"):format(f, k))
        loss:backward()
        opt:step()
        local want = prefixed(t, "s" .. k .. ".")
        local sd, keys = net:state_dict()
        for _, key in ipairs(keys) do
          expect_near(sd[key], want[key], 1e-4, ("%s step %d %s"):format(f, k, key))
        end
      end
    end
  end
  expect(n >= 6, "expected the optimizer fixtures, found " .. n)
end)

-- one parameter with a chosen gradient
local function param(values)
  local p = fmd.tensor(values)
  p.requires_grad = true
  return p
end

test("SGD by hand: first step copies the gradient into the buffer, then dampening applies", function()
  local p = param({1, -1})
  local opt = optim.SGD({p}, {lr = 0.1, momentum = 0.9, dampening = 0.5})
  p.grad = fmd.tensor({2, 2})
  opt:step()
  expect_near(p, fmd.tensor({0.8, -1.2}), 1e-6)              -- buf = g = 2
  expect_near(opt.state[1].momentum_buffer, fmd.tensor({2, 2}), 0)
  opt:step()                                                  -- same grad
  expect_near(p, fmd.tensor({0.52, -1.48}), 1e-6)            -- buf = 0.9*2 + 0.5*2 = 2.8
  -- plain SGD keeps no state; weight decay adds wd * p
  local q = param({2})
  local plain = optim.SGD({q}, 0.5)
  q.grad = fmd.tensor({1})
  plain:step()
  expect_near(q[1], 1.5, 1e-7)
  expect(plain.state[1] == nil)
  local r = param({2})
  local wd = optim.SGD({r}, {lr = 0.5, weight_decay = 0.1})
  r.grad = fmd.tensor({1})
  wd:step()
  expect_near(r[1], 2 - 0.5 * (1 + 0.2), 1e-7)
  -- nesterov: p -= lr * (g + momentum * buf)
  local s = param({1})
  local nes = optim.SGD({s}, {lr = 0.1, momentum = 0.5, nesterov = true})
  s.grad = fmd.tensor({1})
  nes:step()
  expect_near(s[1], 1 - 0.1 * 1.5, 1e-7)
end)

test("Adam by hand: the first step moves each weight by about lr against its gradient's sign", function()
  local p = param({1, 1, 1})
  local opt = optim.Adam({p}, {lr = 0.01})
  p.grad = fmd.tensor({3, -0.5, 1e-3})
  opt:step()
  expect_near(p, fmd.tensor({0.99, 1.01, 0.99}), 1e-5)
  expect_eq(opt.state[1].step, 1)
  expect_near(opt.state[1].exp_avg, fmd.tensor({0.3, -0.05, 1e-4}), 1e-6)
  -- second step with the same gradient: m/bc1 = g, sqrt(v/bc2) = |g|, so again lr
  opt:step()
  expect_near(p, fmd.tensor({0.98, 1.02, 0.98}), 1e-5)
  expect_eq(opt.state[1].step, 2)
end)

test("large tensors (threaded kernel path) match the update written with tensor ops", function()
  fmd.manual_seed(2)
  local n = 300 * 300   -- above the kernel's parallel threshold
  local p0, g = fmd.randn(300, 300), fmd.randn(300, 300)
  -- Adam with weight decay and amsgrad, two steps
  local p = p0:clone(); p.requires_grad = true
  local opt = optim.Adam({p}, {lr = 0.01, betas = {0.8, 0.9}, eps = 1e-6, weight_decay = 0.1, amsgrad = true})
  p.grad = g
  opt:step()
  p.grad = g * -0.5
  opt:step()
  local q, m, v, vmax = p0:clone(), fmd.zeros(300, 300), fmd.zeros(300, 300), fmd.zeros(300, 300)
  for step, gs in ipairs({g, g * -0.5}) do
    local d = gs + q * 0.1
    m = m * 0.8 + d * 0.2
    v = v * 0.9 + d * d * 0.1
    vmax = vmax:maximum(v)
    local bc1, bc2 = 1 - 0.8 ^ step, 1 - 0.9 ^ step
    q = q - m / (vmax:sqrt() / math.sqrt(bc2) + 1e-6) * (0.01 / bc1)
  end
  expect_near(p, q, 1e-5, "adam")
  expect_eq(p:numel(), n)
  -- SGD with momentum
  local s = p0:clone(); s.requires_grad = true
  local sgd = optim.SGD({s}, {lr = 0.1, momentum = 0.9, weight_decay = 0.01})
  s.grad = g
  sgd:step(); sgd:step()
  local d1 = g + p0 * 0.01
  local s1 = p0 - d1 * 0.1
  local buf = d1 * 0.9 + (g + s1 * 0.01)
  expect_near(s, s1 - buf * 0.1, 1e-5, "sgd")
end)

test("parameters without a gradient are skipped; zero_grad clears; closure and model arguments", function()
  local net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
  local opt = optim.SGD(net, {lr = 0.1, momentum = 0.9})   -- a module stands for its parameters
  expect_eq(#opt.param_groups[1].params, 4)
  net[2]:requires_grad_(false)
  local before = net[2].weight:clone()
  local loss = opt:step(function()
    opt:zero_grad()
    local l = net(fmd.ones(3, 2)):sum()
    l:backward()
    return l
  end)
  expect(fmd.is_tensor(loss))
  expect_near(net[2].weight, before, 0, "frozen weight unchanged")
  expect(opt.state[1] ~= nil and opt.state[3] == nil)
  opt:zero_grad()
  expect(net[1].weight.grad == nil)
  expect_eq(opt.param_groups[1].lr, 0.1)
  opt.param_groups[1].lr = 0   -- schedulers change the group's lr
  net[1].weight.grad = fmd.ones(2, 2)
  local w = net[1].weight:clone()
  opt:step()
  expect_near(net[1].weight, w, 0, "lr 0 leaves the weight")
end)

-- n steps of Adam or SGD on the small net with fixed data
local function train_steps(net, opt, x, t, n)
  for _ = 1, n do
    opt:zero_grad()
    F.cross_entropy(net(x), t):backward()
    opt:step()
  end
end

test("resuming from a checkpoint file equals the uninterrupted run", function()
  local path = os.tmpname()
  for _, make in ipairs({
    function(p) return optim.Adam(p, {lr = 0.01, amsgrad = true, weight_decay = 1e-3}) end,
    function(p) return optim.SGD(p, {lr = 0.05, momentum = 0.9, nesterov = true}) end,
  }) do
    fmd.manual_seed(5)
    local x, t = fmd.randn(4, 3, 8, 8), fmd.tensor({0, 1, 2, 1})
    local init = small_net():state_dict()
    local a = small_net(); a:load_state_dict(init)
    local opt_a = make(a:parameters())
    train_steps(a, opt_a, x, t, 4)
    -- interrupted: 2 steps, save, fresh objects, load, 2 more
    local b = small_net(); b:load_state_dict(init)
    local opt_b = make(b:parameters())
    train_steps(b, opt_b, x, t, 2)
    state_io.save(path, {model = b:state_dict(), optimizer = opt_b:state_dict()}, {epoch = 2})
    local st = state_io.load(path)
    local c = small_net()
    c:load_state_dict(st.model)
    local opt_c = make(c:parameters())
    opt_c:load_state_dict(st.optimizer)
    train_steps(c, opt_c, x, t, 2)
    local sa, keys = a:state_dict()
    local sc = c:state_dict()
    for _, k in ipairs(keys) do expect_near(sc[k], sa[k], 0, opt_a.name .. " resumed " .. k) end
    -- without the optimizer state the run differs (the test can fail)
    local d = small_net(); d:load_state_dict(st.model)
    train_steps(d, make(d:parameters()), x, t, 2)
    local sd_ = d:state_dict()
    expect((sd_["5.weight"] - sa["5.weight"]):abs():max():item() > 1e-6, "fresh optimizer state should differ")
  end
  os.remove(path)
end)

test("state_dict is a copy in PyTorch's layout; load_state_dict restores hyperparameters", function()
  local p = param({1, 2})
  local opt = optim.Adam({p}, {lr = 0.1, betas = {0.5, 0.6}})
  p.grad = fmd.tensor({1, 1})
  opt:step()
  local sd = opt:state_dict()
  expect_eq(sd.state[1].step, 1)
  expect_eq(sd.param_groups[1].lr, 0.1)
  expect_eq(sd.param_groups[1].betas[2], 0.6)
  expect_eq(table.concat(sd.param_groups[1].params, ","), "1")
  opt:step()
  expect_near(sd.state[1].exp_avg, fmd.tensor({0.5, 0.5}), 1e-7, "saved state unchanged by later steps")
  local q = param({1, 2})
  local fresh = optim.Adam({q})
  fresh:load_state_dict(sd)
  expect_eq(fresh.param_groups[1].lr, 0.1)
  expect_eq(fresh.state[1].step, 1)
end)

test("option and state errors are clear", function()
  local p = param({1})
  expect_error(function() optim.SGD({p}) end, "optim.SGD: the learning rate lr is required")
  expect_error(function() optim.SGD({p}, {lr = 0.1, momentun = 0.9}) end,
    "optim.SGD: unknown option 'momentun' (options: lr, momentum, dampening, nesterov, weight_decay)")
  expect_error(function() optim.SGD({p}, {lr = 0.1, nesterov = true}) end, "Nesterov momentum requires")
  expect_error(function() optim.SGD({p}, {lr = -1}) end, "invalid learning rate -1")
  expect_error(function() optim.Adam({p}, {betas = {0.9, 1}}) end, "invalid beta parameter at index 2")
  expect_error(function() optim.Adam({}, {}) end, "optim.Adam: got an empty parameter list")
  expect_error(function() optim.Adam({p, 3}) end, "parameter 2 is a number, not a tensor")
  expect_error(function() return optim.RMSprop end, "fmd.optim has no optimizer 'RMSprop'")
  local adam = optim.Adam({p})
  p.grad = fmd.tensor({1})
  adam:step()
  local sd = adam:state_dict()
  expect_error(function() optim.Adam({p, param({2})}):load_state_dict(sd) end,
    "the saved state is for 1 parameters, this optimizer has 2")
  expect_error(function() optim.Adam({param({1, 2})}):load_state_dict(sd) end,
    "of parameter 1 has shape [1], the parameter has [2]")
  expect_error(function() optim.SGD({p}, 0.1):load_state_dict(sd) end, "saved by another optimizer?")
  expect_error(function() fmd.sgd_step(p, fmd.ones(2), nil, 0.1, 0, 0, false, 0, true) end,
    "gradient shape [2] does not match the parameter's [1]")
  expect_error(function() fmd.sgd_step(p, fmd.ones(1), nil, 0.1, 0.9, 0, false, 0, true) end,
    "needs a momentum buffer")
end)
