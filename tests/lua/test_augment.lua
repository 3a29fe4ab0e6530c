-- RandomJPEG, GaussianBlur and ColorJitter: against PIL and torchvision
-- (tests/fixtures/augment.safetensors, written by tests/fixtures/make_augment.py),
-- their random draws, the loader with 1 and 2 workers, and the errors.
local fmd = require "fmd"
local T = require "fmd.transforms"
local data = require "fmd.data"

local cases, by = load_fixture_cases("tests/fixtures/augment.safetensors")
local function maxdiff(a, b) return (a - b):abs():max():item() end

test("RandomJPEG(1, q) = PIL's save(JPEG, quality=q) + open, exactly", function()
  local x, n = by.input_jpeg.tensors.x, 0
  for _, c in ipairs(cases) do
    if c.meta.op == "jpeg" then
      n = n + 1
      local q = math.tointeger(tonumber(c.meta.quality))
      local y = T.RandomJPEG(1, q)(x)
      expect_eq(fmd.shape_str(y), "[3 x 21 x 30]", c.name)
      -- same libjpeg-turbo and settings: bit-identical bytes
      expect_eq(maxdiff(y, c.tensors.y) * 255, 0, c.name .. " max difference in 8-bit steps")
      if q < 100 then expect(maxdiff(y, x) > 0, c.name .. " changed the image") end
    end
  end
  expect_eq(n, 8, "JPEG cases")
end)

test("GaussianBlur = torchvision gaussian_blur within 1e-5", function()
  local x, n = by.input_float.tensors.x, 0
  for _, c in ipairs(cases) do
    if c.meta.op == "blur" then
      n = n + 1
      local kx, ky = math.tointeger(tonumber(c.meta.kx)), math.tointeger(tonumber(c.meta.ky))
      local s = tonumber(c.meta.sigma)
      local y = T.GaussianBlur({kx, ky}, s, s)(x)
      local d = maxdiff(y, c.tensors.y)
      expect(d <= 1e-5, ("%s: max difference %.3g > 1e-5"):format(c.name, d))
      if kx > 1 then expect(maxdiff(y, x) > 1e-3, c.name .. " blurred") end
    end
  end
  expect_eq(n, 7, "blur cases")
end)

test("ColorJitter with fixed factors = torchvision adjust_* within 1e-5", function()
  local x, n = by.input_float.tensors.x, 0
  for _, c in ipairs(cases) do
    if c.meta.op == "jitter" then
      n = n + 1
      local b, ct, s = tonumber(c.meta.brightness), tonumber(c.meta.contrast), tonumber(c.meta.saturation)
      -- {f, f}: the drawn factor is exactly f
      local y = T.ColorJitter({b, b}, {ct, ct}, {s, s})(x)
      local d = maxdiff(y, c.tensors.y)
      expect(d <= 1e-5, ("%s: max difference %.3g > 1e-5"):format(c.name, d))
      expect(y:min():item() >= 0 and y:max():item() <= 1, c.name .. " clamped to [0, 1]")
    end
  end
  expect_eq(n, 7, "jitter cases")
  -- nothing asked: unchanged
  expect_eq(maxdiff(T.ColorJitter()(x), x), 0)
  expect_eq(maxdiff(T.ColorJitter(0, 0, 0)(x), x), 0)
end)

test("random draws follow the order documented in fmd.h", function()
  local x = by.input_float.tensors.x
  -- ranges with exact binary bounds, so Lua's lo + u * (hi - lo) is C's
  local t = T.Compose{T.RandomJPEG(0.5, 20, 80), T.GaussianBlur(5, 0.5, 2.0, 0.5),
                      T.ColorJitter({0.5, 1.5}, {0.75, 1.25}, {0.25, 1.75})}
  local jpeg_on, blur_on = 0, 0
  for seed = 1, 12 do
    local got = t(x, fmd.Rng(seed))
    local g = fmd.Rng(seed)
    local want = x
    local u = g:uniform()
    local q = 20 + math.floor(g:uniform() * 61)
    if u < 0.5 then want = T.RandomJPEG(1, q)(want); jpeg_on = jpeg_on + 1 end
    u = g:uniform()
    local sigma = 0.5 + g:uniform() * 1.5
    if u < 0.5 then want = T.GaussianBlur(5, sigma, sigma)(want); blur_on = blur_on + 1 end
    local f = {}
    for k, r in ipairs{{0.5, 1.5}, {0.75, 1.25}, {0.25, 1.75}} do f[k] = r[1] + g:uniform() * (r[2] - r[1]) end
    want = T.ColorJitter({f[1], f[1]}, {f[2], f[2]}, {f[3], f[3]})(want)
    expect_eq(maxdiff(got, want), 0, "seed " .. seed)
  end
  expect(jpeg_on > 0 and jpeg_on < 12 and blur_on > 0 and blur_on < 12,
    ("both branches drawn (jpeg %d, blur %d of 12)"):format(jpeg_on, blur_on))
  -- p = 0: the image is unchanged
  local off = T.Compose{T.RandomJPEG(0, 10, 20), T.GaussianBlur(5, 1, 2, 0)}
  expect_eq(maxdiff(off(x, fmd.Rng(3)), x), 0)
end)

test("DataLoader: augmented batches are the same with 1 and 2 workers and on the Lua path", function()
  local root = os.tmpname()
  os.remove(root)
  for _, c in ipairs{"real", "fake"} do
    fmd.sys.mkdir(root .. "/" .. c)
    for i = 1, 4 do fmd.save_image(("%s/%s/%d.png"):format(root, c, i), fmd.rand(3, 36, 40)) end
  end
  local tf = T.Compose{T.Resize(32, 32), T.RandomJPEG(0.5, 30, 90), T.GaussianBlur(3, 0.1, 2.0, 0.5),
                       T.ColorJitter(0.3, 0.3, 0.3), T.RandomHorizontalFlip(), T.ToTensor(),
                       T.Normalize(T.COURSE_MEAN, T.COURSE_STD)}
  local ds = data.FacesDataset(root, tf)
  local function batches(opts)
    local out = {}
    for im, lb in data.DataLoader(ds, opts):iter(3) do out[#out + 1] = {im, lb} end
    return out
  end
  local base = {batch_size = 3, shuffle = true, seed = 5}
  local function with(k, v) local o = {} for a, b in pairs(base) do o[a] = b end o[k] = v return o end
  local w1, w2 = batches(with("num_workers", 1)), batches(with("num_workers", 2))
  local lua = batches(with("backend", "lua"))
  expect_eq(#w1, 3)
  expect_eq(fmd.shape_str(w1[1][1]), "[3 x 3 x 32 x 32]")
  for i = 1, #w1 do
    expect_eq(maxdiff(w1[i][1], w2[i][1]), 0, "1 vs 2 workers, batch " .. i)
    expect_eq(maxdiff(w1[i][1], lua[i][1]), 0, "C vs Lua path, batch " .. i)
    expect_eq(maxdiff(w1[i][2], w2[i][2]), 0, "labels " .. i)
  end
  os.execute("rm -rf '" .. root .. "'")
end)

test("bad parameters and placement: one clear error naming the op and the value", function()
  local x = by.input_float.tensors.x
  expect_error(function() T.RandomJPEG(1.5, 50) end, "RandomJPEG: p must be a probability in [0, 1], got 1.5")
  expect_error(function() T.RandomJPEG(0.5, 0, 50) end, "RandomJPEG: quality must be an integer in 1..100, got 0")
  expect_error(function() T.RandomJPEG(0.5, 50, 101) end, "got 101")
  expect_error(function() T.RandomJPEG(0.5, 50.5) end, "got 50.5")
  expect_error(function() T.RandomJPEG(0.5, 90, 30) end, "RandomJPEG: quality_lo 90 is above quality_hi 30")
  expect_error(function() T.GaussianBlur(4) end, "GaussianBlur: kernel_size must be an odd integer in 1..255 (or {kx, ky}), got 4")
  expect_error(function() T.GaussianBlur({3, 6}) end, "got 6")
  expect_error(function() T.GaussianBlur(3, 0) end, "GaussianBlur: sigma must be a number > 0, got 0")
  expect_error(function() T.GaussianBlur(3, 2, 1) end, "GaussianBlur: sigma_lo 2 is above sigma_hi 1")
  expect_error(function() T.GaussianBlur(3, 1, 2, -0.1) end, "GaussianBlur: p must be a probability in [0, 1], got -0.1")
  expect_error(function() T.ColorJitter(-0.1) end, "ColorJitter: brightness must be >= 0, got -0.1")
  expect_error(function() T.ColorJitter(0, {1.2, 0.8}) end, "ColorJitter: contrast range {1.2, 0.8} must have 0 <= lo <= hi")
  expect_error(function() T.ColorJitter(0, 0, "a lot") end, "ColorJitter: saturation must be a number >= 0 or {lo, hi}, got a lot")
  expect_error(function() T.ColorJitter(0, 0, 0, 0.1) end, "ColorJitter: hue is not supported")
  -- after Normalize: refused when composed (also through a Lua part) ...
  expect_error(function() T.Compose{T.Normalize(0.5, 0.5), T.RandomJPEG(1, 50)} end,
    "Compose: item 2 (RandomJPEG(p=1, quality=50..50)) comes after Normalize (item 1)")
  local lua_part = T.Compose{T.Normalize(0.5, 0.5), T.Lambda(function(i) return i end)}
  expect_error(function() T.Compose{lua_part, T.GaussianBlur(3)} end, "comes after Normalize")
  -- ... by the C chain given raw ops ...
  expect_error(function()
    fmd.transform_apply({{kind = "normalize", mean = 0, std = 1}, {kind = "gaussian_blur", kx = 3, sigma_lo = 1}}, x,
      fmd.Rng(1))
  end, "transform op 2: GaussianBlur after normalize (op 1)")
  expect_error(function() fmd.transform_apply({{kind = "random_jpeg", p = 1, q_lo = 0}}, x, fmd.Rng(1)) end,
    "transform op 1: RandomJPEG quality range 0..0 must be within 1..100")
  expect_error(function() fmd.transform_apply({{kind = "color_jitter", saturation = {-1, 1}}}, x, fmd.Rng(1)) end,
    "transform op 1: ColorJitter saturation range -1..1 must be >= 0")
  -- ... and on a normalized image, whether or not the op fires
  local normed = T.Normalize(0.5, 0.25)(x)
  for _, t in ipairs{T.RandomJPEG(1, 50), T.RandomJPEG(0, 50), T.GaussianBlur(3, 1, 1, 0), T.ColorJitter(0.2)} do
    expect_error(function() t(normed) end, "image values must be in [0, 1], found")
  end
  -- wrong images
  expect_error(function() T.RandomJPEG(1, 50)(fmd.rand(1, 8, 8)) end,
    "RandomJPEG: needs a 3 x H x W RGB image, got [1 x 8 x 8]")
  expect_error(function() T.ColorJitter(0.5)(fmd.rand(8, 8)) end, "image must be C x H x W, got [8 x 8]")
  expect_error(function() T.GaussianBlur(9, 1, 1, 0)(fmd.rand(3, 30, 4)) end,
    "GaussianBlur: kernel 9 x 9 (width x height) needs an image over 4 pixels wide and 4 high (reflect padding), got 4 x 30")
end)
