-- Faithfulness of attribution maps: deletion and insertion curves (Petsiuk
-- et al. 2018, "RISE"; the metric of Captum's and quantus' perturbation
-- tests). A map is faithful when the pixels it ranks highest are the ones
-- the model's decision rests on:
--   deletion:  replace the most relevant 0, 10, ..., 100 % of the pixels of
--              the image by a baseline; the target probability should fall
--              fast (small area under the curve is good)
--   insertion: start from the baseline and reveal the most relevant pixels
--              first; the probability should rise fast (large area is good)
--
--   local faithfulness = require "fmd.explain.faithfulness"
--   local r = faithfulness.evaluate(model, images, maps, {target = "pred", baseline = "blur"})
--   r.deletion_auc[i], r.insertion_auc[i], r.deletion[i][k] (k = 1 .. steps + 1)
--
-- A pixel is all channels at (y, x). Ties in a map (e.g. the zeros of a
-- CAM after its ReLU) are broken by a fixed pseudo-random priority, so a
-- flat region is removed in no spatial order and every mask contains the
-- previous one.
local fmd = require "fmd"
local util = require "fmd.explain.util"

local faithfulness = {}

local function fail(msg, ...) error("faithfulness: " .. msg:format(...), 0) end

-- a fixed pseudo-random permutation 1..N as an (H,W) tensor (cached per size)
local prio_cache = {}
local function priority(H, W)
  local key = H .. "x" .. W
  if prio_cache[key] then return prio_cache[key] end
  local N = H * W
  local rng = fmd.Rng(20180101)
  local p = {}
  for i = 1, N do p[i] = i end
  for i = N, 2, -1 do
    local j = rng:int(i)
    p[i], p[j] = p[j], p[i]
  end
  local t = fmd.tensor(p):view(H, W)
  prio_cache = {[key] = t}   -- one size at a time: data sets have one
  return t
end

-- For map (H,W): per step k = 0..steps, how to build the mask of the
-- round(k/steps * H*W) most relevant pixels: {t = threshold, cut = highest
-- tied priority taken} (mask = map > t, plus pixels == t with priority <= cut).
local function plan(map, steps)
  local H, W = map:size(1), map:size(2)
  local N = H * W
  local vals = map:reshape(N):totable()
  for i = 1, N do
    if vals[i] ~= vals[i] then fail("map has NaN at pixel %d", i) end
  end
  local sorted = table.move(vals, 1, N, 1, {})
  table.sort(sorted)
  local prio = priority(H, W)
  local pflat
  local out = {}
  for k = 0, steps do
    local n = math.floor(k * N / steps + 0.5)
    if n == 0 then out[k + 1] = {none = true}
    elseif n >= N then out[k + 1] = {all = true}
    else
      local t = sorted[N - n + 1]   -- the n-th largest value
      local lo, j = N - n + 1, N - n + 1
      while lo > 1 and sorted[lo - 1] == t do lo = lo - 1 end
      while j <= N and sorted[j] == t do j = j + 1 end
      local need = n - (N - j + 1)  -- ties at t to take (after all larger values)
      local ntied = j - lo
      local step = {t = t}
      if need < ntied then
        pflat = pflat or prio:reshape(N):totable()
        local tied = {}
        for i = 1, N do if vals[i] == t then tied[#tied + 1] = pflat[i] end end
        table.sort(tied)
        step.cut = tied[need]
      end
      out[k + 1] = step
    end
  end
  return out, prio
end

-- the (H,W) 0/1 mask of one plan step
local function build(map, s, prio)
  if s.none then return fmd.zeros(map:size()) end
  if s.all then return fmd.ones(map:size()) end
  if not s.cut then return map:ge(s.t) end
  return map:gt(s.t) + map:eq(s.t) * prio:le(s.cut)
end

-- faithfulness.masks(map, steps) -> list of steps + 1 (H,W) 0/1 masks; mask
-- k + 1 marks exactly round(k/steps * H*W) pixels, the most relevant first
function faithfulness.masks(map, steps)
  steps = steps or 10
  if not fmd.is_tensor(map) or map:dim() ~= 2 then
    fail("map must be an (H,W) tensor, got %s", fmd.is_tensor(map) and fmd.shape_str(map) or type(map))
  end
  local p, prio = plan(map, steps)
  local out = {}
  for k, s in ipairs(p) do out[k] = build(map, s, prio) end
  return out
end

-- separable Gaussian blur of (B,C,H,W), radius ceil(2 sigma), renormalised
-- at the borders (zero padding would darken them)
function faithfulness.blur(images, sigma)
  sigma = sigma or 5
  if type(sigma) ~= "number" or sigma <= 0 then fail("blur sigma must be a number > 0, got %s", tostring(sigma)) end
  local C, H, W = images:size(2), images:size(3), images:size(4)
  local r = math.max(1, math.ceil(2 * sigma))
  local k, s = {}, 0
  for i = -r, r do k[#k + 1] = math.exp(-i * i / (2 * sigma * sigma)); s = s + k[#k] end
  for i = 1, #k do k[i] = k[i] / s end
  local n = 2 * r + 1
  local function sep(x, ch)
    local kx = fmd.tensor(k):view(1, 1, 1, n):expand(ch, 1, 1, n):contiguous()
    local ky = fmd.tensor(k):view(1, 1, n, 1):expand(ch, 1, n, 1):contiguous()
    x = fmd.conv2d(x, kx, nil, 1, 1, 0, r, 1, 1, ch)
    return fmd.conv2d(x, ky, nil, 1, 1, r, 0, 1, 1, ch)
  end
  return sep(images:contiguous(), C) / sep(fmd.ones(1, 1, H, W), 1)
end

-- the baseline image that replaces removed pixels: "blur" (default),
-- "mean" (each image's per-channel mean), a number, or a (B,C,H,W) tensor
local function baseline(images, b, sigma)
  b = b or "blur"
  if b == "blur" then return faithfulness.blur(images, sigma) end
  if b == "mean" then return images:mean(4, true):mean(3, true) + fmd.zeros(images:size()) end
  if type(b) == "number" then return fmd.full(images:size(), b) end
  if fmd.is_tensor(b) then
    if fmd.shape_str(b) ~= fmd.shape_str(images) then
      fail("baseline %s does not match images %s", fmd.shape_str(b), fmd.shape_str(images))
    end
    return b
  end
  fail("baseline must be \"blur\", \"mean\", a number or a tensor, got %s", tostring(b))
end

-- area under a curve sampled at 0, 1/steps, ..., 1 (trapezoids)
function faithfulness.auc(y)
  local n = #y - 1
  if n < 1 then fail("a curve needs at least 2 points") end
  local a = 0
  for k = 1, n do a = a + (y[k] + y[k + 1]) / 2 end
  return a / n
end

-- faithfulness.evaluate(model, images, maps [, opts]): deletion and
-- insertion curves of maps (B,H,W) (larger = more relevant) for images
-- (B,C,H,W). opts: target (class id, per-image ids, or "pred" = the
-- prediction on the clean image; default), steps (default 10: 10 % steps),
-- baseline ("blur" | "mean" | number | tensor), sigma (blur, pixels,
-- default 5), which ("both" default, "deletion", "insertion").
-- Runs without a graph, the model in eval mode (its mode is restored).
-- Returns {fractions = {0, 0.1, ..., 1}, deletion = {B arrays of steps + 1
-- target probabilities}, insertion = {...}, deletion_auc = {B numbers},
-- insertion_auc = {...}, targets = {B class ids}, p = {B clean probabilities}}.
function faithfulness.evaluate(model, images, maps, opts)
  opts = opts or {}
  if not fmd.is_tensor(images) or images:dim() ~= 4 then
    fail("images must be a (B,C,H,W) tensor, got %s", fmd.is_tensor(images) and fmd.shape_str(images) or type(images))
  end
  local B, H, W = images:size(1), images:size(3), images:size(4)
  if not fmd.is_tensor(maps) or maps:dim() ~= 3 or maps:size(1) ~= B or maps:size(2) ~= H or maps:size(3) ~= W then
    fail("maps must be (%d,%d,%d) for images %s, got %s", B, H, W, fmd.shape_str(images),
      fmd.is_tensor(maps) and fmd.shape_str(maps) or type(maps))
  end
  local steps = opts.steps or 10
  if math.type(steps) ~= "integer" or steps < 1 then fail("steps must be an integer >= 1, got %s", tostring(steps)) end
  local which = opts.which or "both"
  if which ~= "both" and which ~= "deletion" and which ~= "insertion" then
    fail("which must be both, deletion or insertion, got %s", tostring(which))
  end
  local was_training = model.training
  model:eval()
  local ok, res = pcall(fmd.no_grad, function()
    images = images:detach():contiguous()
    local logits = model(images)
    if not fmd.is_tensor(logits) or logits:dim() ~= 2 or logits:size(1) ~= B or logits:size(2) < 2 then
      fail("the model must return (B,K) logits with K >= 2; got %s", fmd.is_tensor(logits) and fmd.shape_str(logits) or type(logits))
    end
    local targets = util.targets("faithfulness", opts.target, logits)
    local onehot = util.onehot(targets, logits:size(2))
    local function prob(x) return (fmd.softmax(model(x), 2) * onehot):sum(2):totable() end
    local base = baseline(images, opts.baseline, opts.sigma)
    local plans, prio = {}, nil
    for i = 1, B do plans[i], prio = plan(maps[i], steps) end
    local r = {fractions = {}, deletion = {}, insertion = {}, deletion_auc = {}, insertion_auc = {},
               targets = targets, p = prob(images)}
    for i = 1, B do r.deletion[i], r.insertion[i] = {}, {} end
    local M = fmd.empty(B, 1, H, W)
    for k = 0, steps do
      r.fractions[k + 1] = k / steps
      for i = 1, B do M[i][1]:copy(build(maps[i], plans[i][k + 1], prio)) end
      local keep = M * -1 + 1
      if which ~= "insertion" then
        local p = prob(images * keep + base * M)
        for i = 1, B do r.deletion[i][k + 1] = p[i] end
      end
      if which ~= "deletion" then
        local p = prob(base * keep + images * M)
        for i = 1, B do r.insertion[i][k + 1] = p[i] end
      end
    end
    for i = 1, B do
      if which ~= "insertion" then r.deletion_auc[i] = faithfulness.auc(r.deletion[i]) end
      if which ~= "deletion" then r.insertion_auc[i] = faithfulness.auc(r.insertion[i]) end
    end
    return r
  end)
  if was_training then model:train() end
  if not ok then error(res, 0) end
  return res
end

return faithfulness
