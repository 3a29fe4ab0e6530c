-- Kernel benchmark: time, GFLOP/s and the fraction of this machine's
-- single-call sgemm rate (measured first with a big fmd.matmul on all pool
-- threads) for the conv ops that dominate training, each forward+backward.
--
--   build/fmd bench/kernels.lua [--batch 32] [--reps 3] [--threads N] [--xception_batch 8]
--
-- Other processes on the machine skew wall times: compare runs on an idle
-- machine (the sgemm line shows what the cores delivered this run).
--
-- FLOPs counted: conv forward 2*N*O*OH*OW*(C/groups)*KH*KW, backward twice
-- that (input and weight gradients). Times are the best of --reps runs.
local fmd = require "fmd"
local now = fmd.sys.now

local opts = {batch = 32, reps = 3, threads = fmd.get_num_threads(), xception_batch = 8}
local USAGE = "usage: fmd bench/kernels.lua [--batch N] [--reps N] [--threads N] [--xception_batch N]"
local i = 1
while arg[i] do
  if arg[i] == "--help" or arg[i] == "-h" then print(USAGE); os.exit(0) end
  local k = arg[i]:match("^%-%-(.+)$")
  if not k or opts[k] == nil or not tonumber(arg[i + 1] or "") then
    error(("bad argument '%s'; %s"):format(arg[i], USAGE), 0)   -- a usage error: one line
  end
  opts[k] = math.tointeger(tonumber(arg[i + 1]))
  i = i + 2
end
fmd.set_num_threads(opts.threads)

local function best(reps, fn)
  fn()   -- warm-up: scratch buffers, page faults
  local t = math.huge
  for _ = 1, reps do
    collectgarbage()
    local t0 = now()
    fn()
    t = math.min(t, now() - t0)
  end
  return t
end

fmd.manual_seed(0)
print(("threads %d, batch %d, best of %d"):format(opts.threads, opts.batch, opts.reps))

-- reference: sgemm through fmd.matmul (fmd_sgemm split over the pool)
local n = 2048
local a, b = fmd.randn(n, n), fmd.randn(n, n)
local t = best(opts.reps, function() return a:matmul(b) end)
local sgemm = 2 * n ^ 3 / t / 1e9
print(("%-44s %8.1f ms %8.1f GFLOP/s"):format(("sgemm %dx%d @ %dx%d"):format(n, n, n, n), t * 1e3, sgemm))
a, b = nil, nil

local function row(name, secs, flops)
  local gf = flops / secs / 1e9
  print(("%-44s %8.1f ms %8.1f GFLOP/s %6.1f%% of sgemm"):format(name, secs * 1e3, gf, 100 * gf / sgemm))
end

-- conv: x (N,C,H,W), weight (O, C/groups, k, k), stride 1, "same" padding
local function bench_conv(name, N, C, H, O, k, groups)
  local p = k // 2
  local x = fmd.randn(N, C, H, H):requires_grad_()
  local w = (fmd.randn(O, C // groups, k, k) * 0.1):requires_grad_()
  local bias = fmd.zeros(O):requires_grad_()
  local fwd = 2 * N * O * H * H * (C // groups) * k * k
  local y
  local tf = best(opts.reps, function() y = fmd.no_grad(fmd.conv2d, x, w, bias, 1, 1, p, p, 1, 1, groups) end)
  local gy = fmd.randn(y:size())
  local tfb = best(opts.reps, function()
    x.grad, w.grad, bias.grad = nil, nil, nil
    fmd.conv2d(x, w, bias, 1, 1, p, p, 1, 1, groups):backward(gy)
  end)
  row(name .. " fwd", tf, fwd)
  row(name .. " fwd+bwd", tfb, 3 * fwd)
end

local B = opts.batch
bench_conv("conv 3x3 64->64 56x56", B, 64, 56, 64, 3, 1)
bench_conv("conv 1x1 728->728 16x16", B, 728, 16, 728, 1, 1)
bench_conv("depthwise 3x3 728 16x16", B, 728, 16, 728, 3, 728)

-- pooling (memory bound: GFLOP/s counts one op per window element)
do
  local x = fmd.randn(B, 128, 64, 64):requires_grad_()
  local y
  local function pool(name, fn, flops)
    local tf = best(opts.reps, function() y = fmd.no_grad(fn) end)
    local gy = fmd.randn(y:size())
    local tfb = best(opts.reps, function() x.grad = nil; fn():backward(gy) end)
    row(name .. " fwd", tf, flops)
    row(name .. " fwd+bwd", tfb, 2 * flops)
  end
  pool("max_pool 3x3/2 128ch 64x64", function() return fmd.max_pool2d(x, 3, 3, 2, 2, 1, 1) end, B * 128 * 32 * 32 * 9)
  pool("avg_pool 3x3/2 128ch 64x64", function() return fmd.avg_pool2d(x, 3, 3, 2, 2, 1, 1) end, B * 128 * 32 * 32 * 9)
  pool("adaptive_avg_pool 1x1 128ch 64x64", function() return fmd.adaptive_avg_pool2d(x, 1, 1) end, B * 128 * 64 * 64)
end

-- A small conv net written with the raw ops (no batch norm / optimizer):
-- forward + backward of a 3-stage SimpleNet-like stack on 3x64x64 images.
do
  local function param(...) return (fmd.randn(...) * 0.1):requires_grad_() end
  local ws = {param(32, 3, 3, 3), param(64, 32, 3, 3), param(128, 64, 3, 3)}
  local head = param(128, 2)
  local x = fmd.rand(B, 3, 64, 64)
  local flops = 0
  local c, h = 3, 64
  for _, w in ipairs(ws) do
    flops = flops + 3 * 2 * B * w:size(1) * h * h * c * 9
    c, h = w:size(1), h // 2
  end
  local t = best(opts.reps, function()
    local y = x
    for _, w in ipairs(ws) do
      w.grad = nil
      y = fmd.max_pool2d(fmd.conv2d(y, w, nil, 1, 1, 1, 1, 1, 1, 1):relu(), 2, 2, 2, 2, 0, 0)
    end
    y = fmd.adaptive_avg_pool2d(y, 1, 1):view(B, 128)
    y:matmul(head):pow(2):mean():backward()
  end)
  row("raw-op conv net 3x64x64 fwd+bwd (convs only)", t, flops)
end

-- Full training steps (forward, cross-entropy, backward, Adam step) of the
-- course models on random 3x256x256 images. GFLOP/s counts the conv and
-- linear FLOPs of one forward (measured by wrapping the core ops) times 3.
local C = require "fmd.core"
local function count_flops(fn)
  local conv, lin, flops = C.conv2d, C.linear, 0
  C.conv2d = function(x, w, b, sh, sw, ph, pw, dh, dw, groups)
    local y = conv(x, w, b, sh, sw, ph, pw, dh, dw, groups)
    local s, k = y:size(), w:size()
    flops = flops + 2 * s[1] * s[2] * s[3] * s[4] * k[2] * k[3] * k[4]
    return y
  end
  C.linear = function(x, w, b)
    flops = flops + 2 * x:size(1) * w:size(1) * w:size(2)
    return lin(x, w, b)
  end
  local ok, err = pcall(fn)
  C.conv2d, C.linear = conv, lin
  if not ok then error(err, 0) end
  return flops
end

local function train_step(name, batch, reps)
  local models, nn, optim = require "fmd.models", require "fmd.nn", require "fmd.optim"
  fmd.manual_seed(0)
  local model = models.load_model(name, name == "SimpleNet" and {} or {num_classes = 2})
  model:train()
  local opt = optim.Adam(model:parameters(), {lr = 1e-3})
  local crit = nn.CrossEntropyLoss()
  local x = fmd.randn(batch, 3, 256, 256)
  local labels = {}
  for k = 1, batch do labels[k] = (k - 1) % 2 end
  local target = fmd.tensor(labels)
  local fwd = count_flops(function() fmd.no_grad(model.forward, model, x) end)
  local t = best(reps, function()
    opt:zero_grad()
    crit(model(x), target):backward()
    opt:step()
  end)
  row(("%s train step, batch %d (%.1f img/s)"):format(name, batch, batch / t), t, 3 * fwd)
end

local ok, err = pcall(function()
  train_step("SimpleNet", B, opts.reps)
  train_step("Xception", opts.xception_batch, math.min(opts.reps, 2))
end)
if not ok then print("training steps skipped: " .. tostring(err)) end
