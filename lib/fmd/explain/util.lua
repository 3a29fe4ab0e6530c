-- What every attribution method shares: checking inputs, resolving the
-- target, running the model with gradients for the input only, reducing
-- over channels, upsampling, normalising maps and scaling them for display.
local fmd = require "fmd"
local util = {}

local function shape(t) return fmd.shape_str(t) end

-- images must be (B,3,H,W)-like: 4-D
function util.check_images(method, images)
  if not fmd.is_tensor(images) or images:dim() ~= 4 then
    error(("explain.%s: images must be a (B,C,H,W) tensor, got %s"):format(method,
      fmd.is_tensor(images) and shape(images) or type(images)), 3)
  end
end

-- target -> Lua array of B class ids (0/1 ...), given the logits (B,K)
function util.targets(method, target, logits)
  local B, K = logits:size(1), logits:size(2)
  local out = {}
  if target == nil or target == "pred" then
    local pred = logits:argmax(2)
    for i = 1, B do out[i] = math.tointeger(pred[i]) - 1 end
  elseif type(target) == "number" then
    for i = 1, B do out[i] = target end
  elseif fmd.is_tensor(target) or type(target) == "table" then
    local n = fmd.is_tensor(target) and target:numel() or #target
    if n ~= B then error(("explain.%s: %d targets for %d images"):format(method, n, B), 3) end
    local flat = fmd.is_tensor(target) and target:reshape(n):totable() or target
    for i = 1, B do out[i] = flat[i] end
  else
    error(("explain.%s: target must be a class id, a tensor or array of ids, or \"pred\"; got %s")
      :format(method, tostring(target)), 3)
  end
  for i = 1, B do
    local c = out[i]
    if math.type(c) ~= "integer" and not (type(c) == "number" and c % 1 == 0) or c < 0 or c >= K then
      error(("explain.%s: target %s of image %d is not a class id 0..%d"):format(method, tostring(c), i, K - 1), 3)
    end
    out[i] = math.tointeger(c)
  end
  return out
end

-- one-hot (B,K) of the targets: (logits * onehot):sum() is the sum of the
-- target logits, whose gradient is each image's target-logit gradient
function util.onehot(targets, K)
  local rows = {}
  for i, c in ipairs(targets) do
    local r = {}
    for k = 1, K do r[k] = (k - 1 == c) and 1 or 0 end
    rows[i] = r
  end
  return fmd.tensor(rows)
end

-- runs fn() with the model in eval mode and its parameters frozen, grad
-- mode on; restores everything (and runs cleanup) also when fn fails
function util.with_model(model, fn, cleanup)
  local was_training = model.training
  local frozen = {}
  for _, p in model:named_parameters() do
    if p.requires_grad then frozen[#frozen + 1] = p; p.requires_grad = false end
  end
  model:eval()
  local res = table.pack(pcall(fmd.enable_grad, fn))
  if cleanup then cleanup() end
  for _, p in ipairs(frozen) do p.requires_grad = true end
  if was_training then model:train() end
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

-- forward x (a fresh leaf that requires grad) and backprop the target
-- logits; returns the input gradient (B,C,H,W), the logits, the targets
function util.input_gradient(method, model, x, target, fixed_targets)
  local leaf = x:detach():clone():requires_grad_()
  local logits = model(leaf)
  if not fmd.is_tensor(logits) or logits:dim() ~= 2 or logits:size(1) ~= x:size(1) then
    error(("explain.%s: the model must return (B,K) logits; got %s"):format(method,
      fmd.is_tensor(logits) and shape(logits) or type(logits)), 0)
  end
  local targets = fixed_targets or util.targets(method, target, logits)
  local K = logits:size(2)
  ;(logits * util.onehot(targets, K)):sum():backward()
  return leaf.grad, logits:detach(), targets
end

-- (B,C,H,W) attributions -> (B,H,W): "absmax" (|.|, max over channels, the
-- course's saliency), "sum" (signed sum over channels), "abssum", or "none"
function util.reduce(method, g, how)
  how = how or "absmax"
  if how == "absmax" then return (g:abs():max(2))
  elseif how == "sum" then return g:sum(2)
  elseif how == "abssum" then return g:sum(2):abs()
  elseif how == "none" then return g end
  error(("explain.%s: reduce must be absmax, sum, abssum or none; got %s"):format(method, tostring(how)), 0)
end

-- maps (H,W) or (B,H,W) -> each map m as (m - min m) / (top - min m), top
-- (B,1) from top_of(flat (B,N)); a map whose top is its min becomes zeros
-- (never NaN)
local function rescale(maps, top_of)
  local single = maps:dim() == 2
  local m = single and maps:unsqueeze(1) or maps
  local B = m:size(1)
  local flat = m:reshape(B, -1)
  local lo = flat:min(2, true)
  local range = top_of(flat) - lo
  local inv = range:gt(0) / (range + range:le(0))   -- 1/range, or 0 for a flat map
  local out = ((flat - lo) * inv):view(m:size())
  return single and out:select(1, 1) or out
end

-- per-map min-max to [0, 1]; a constant map becomes zeros (never NaN).
-- maps is (H,W) or (B,H,W)
function util.normalize(maps)
  return rescale(maps, function(flat) return flat:max(2, true) end)
end

-- the p-th percentile (0..100) of the numbers in v (a Lua array, sorted in
-- place), interpolated linearly between neighbours as numpy.percentile's
-- default: v[1 + h] with h = (#v - 1) * p / 100
function util.percentile(v, p)
  table.sort(v)
  local h = (#v - 1) * p / 100
  local k = math.floor(h)
  local a, b = v[k + 1], v[math.min(k + 2, #v)]
  return a + (h - k) * (b - a)
end

-- the percentile at which heat-map figures saturate (Captum's
-- visualize_image_attr drops the top 2 % as outliers the same way)
util.DISPLAY_PERCENTILE = 98

-- display scaling of heat maps: per map, its min -> 0 and its p-th
-- percentile (default DISPLAY_PERCENTILE) -> 1, values above clipped to 1,
-- so one hot pixel cannot turn the rest of the map black. Where more than
-- p % of a map sits at its min, its max is the top (plain min-max). p = 100
-- is normalize. maps is (H,W) or (B,H,W); the maps themselves are unchanged.
function util.clip_percentile(maps, p)
  p = p == nil and util.DISPLAY_PERCENTILE or p
  if type(p) ~= "number" or not (p > 0 and p <= 100) then
    error(("explain.clip_percentile: the percentile must be a number in (0, 100], got %s"):format(tostring(p)), 2)
  end
  if not fmd.is_tensor(maps) or (maps:dim() ~= 2 and maps:dim() ~= 3) then
    error(("explain.clip_percentile: maps must be (H,W) or (B,H,W), got %s"):format(
      fmd.is_tensor(maps) and shape(maps) or type(maps)), 2)
  end
  return rescale(maps, function(flat)
    local top = {}
    for i = 1, flat:size(1) do
      local v = flat[i]:totable()
      local q = util.percentile(v, p)
      top[i] = {q > v[1] and q or v[#v]}   -- v is sorted now
    end
    return fmd.tensor(top)
  end):clamp(0, 1)
end

-- (B,h,w) -> (B,H,W) bilinear, the half-pixel convention of PyTorch's
-- interpolate(mode="bilinear", align_corners=False) (for enlarging, the
-- engine's PIL-style resize samples the same way)
function util.upsample(maps, H, W)
  if maps:size(2) == H and maps:size(3) == W then return maps:clone() end
  return fmd.image_resize(maps:contiguous(), H, W)
end

-- the module called `name` (dotted, as named_modules gives it)
function util.find_layer(method, model, name)
  local names = {}
  for n, m in model:named_modules() do
    if n == name then return m end
    if n ~= "" then names[#names + 1] = n end
  end
  local cli = require "fmd.cli"
  local s = cli.suggest(tostring(name), names)
  local shown = {}
  for i = 1, math.min(8, #names) do shown[i] = names[i] end
  error(("explain.%s: the model has no layer '%s'%s; layers: %s%s"):format(method, tostring(name),
    s and (" (did you mean " .. s .. "?)") or "", table.concat(shown, ", "), #names > 8 and ", ..." or ""), 0)
end

return util
