-- image IO and transforms from Lua (fixtures: tests/fixtures/images, made by
-- tests/fixtures/make_images.py; broken files are made here)
local fmd = require "fmd"
local T = require "fmd.transforms"

local FIX = "tests/fixtures/images/"
local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p '" .. tmp .. "'"))

local function write(name, bytes)
  local f = assert(io.open(tmp .. "/" .. name, "wb"))
  f:write(bytes)
  f:close()
  return tmp .. "/" .. name
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function maxdiff(a, b) return (a - b):abs():max():item() end

test("load PNG and JPEG into 3xHxW in [0, 1]", function()
  for _, n in ipairs{"src.png", "base.jpg", "gray8.png", "pal8.png", "rgb16.png", "cmyk.jpg"} do
    local img = fmd.load_image(FIX .. n)
    expect_eq(fmd.shape_str(img), "[3 x 20 x 24]", n)
    expect(img:min():item() >= 0 and img:max():item() <= 1, n .. " in [0, 1]")
  end
  -- gray is replicated into the three channels
  local g = fmd.load_image(FIX .. "gray.jpg")
  expect_eq(maxdiff(g:select(1, 1), g:select(1, 3)), 0)
  -- JPEG decodes like PIL (same libjpeg-turbo)
  expect_near(fmd.load_image(FIX .. "prog.jpg"), fmd.load_image(FIX .. "prog.jpg.ref.png"), 0)
end)

test("decode from a string, format by content", function()
  local bytes = read(FIX .. "base.jpg")
  local a = fmd.decode_image(bytes, "x.png")
  expect_near(a, fmd.load_image(FIX .. "base.jpg"), 0)
  local p = write("jpeg_named.png", bytes)
  expect_near(fmd.load_image(p), a, 0)
end)

test("broken files give errors naming the file and the problem", function()
  local png = read(FIX .. "src.png")
  local cases = {
    {write("trunc.png", png:sub(1, #png // 2)), "truncated"},
    {write("empty.png", ""), "empty"},
    {write("text.png", "just some text, not an image\n"), "not a PNG or JPEG"},
    {write("garbage.png", png:sub(1, 8) .. string.rep("\1\2\3\4", 40)), "bad PNG"},
    {write("trunc.jpg", read(FIX .. "base.jpg"):sub(1, 500)), "bad JPEG"},
    {tmp .. "/missing.png", "cannot open"},
  }
  local rnd = {}
  local x = 7
  for i = 1, 300 do x = (x * 1103515245 + 12345) % 2147483648; rnd[i] = string.char(x % 256) end
  cases[#cases + 1] = {write("random.jpg", "\255\216\255" .. table.concat(rnd)), "bad JPEG"}
  for _, c in ipairs(cases) do
    local err = expect_error(function() fmd.load_image(c[1]) end, c[2])
    expect(err:find(c[1], 1, true), "message names the file: " .. err)
  end
  expect_error(function() fmd.decode_image("", "blob") end, "'blob': file is empty")
end)

test("save_image round trip, gray and uint8 data", function()
  local img = fmd.load_image(FIX .. "src.png")
  local p = tmp .. "/out.png"
  fmd.save_image(p, img)
  expect_near(fmd.load_image(p), img, 0)
  expect(io.open(p .. ".tmp") == nil, "no .tmp left behind")
  fmd.save_image(p, fmd.full({2, 3}, 0.5))   -- HxW gray
  local g = fmd.load_image(p)
  expect_eq(fmd.shape_str(g), "[3 x 2 x 3]")
  expect_near(g:max():item(), 128 / 255, 1e-7)
  fmd.save_image(p, fmd.full({1, 2, 2}, 255), 255)   -- uint8 values
  expect_eq(fmd.load_image(p):min():item(), 1)
  expect_error(function() fmd.save_image(p, fmd.zeros(4, 2, 2)) end, "3xHxW")
  expect_error(function() fmd.save_image("/nonexistent_dir/a.png", img) end, "/nonexistent_dir/a.png")
end)

test("resize matches PIL's BILINEAR resize on 8-bit images", function()
  local src = fmd.load_image(FIX .. "src.png")
  for _, s in ipairs{{27, 31}, {7, 9}, {13, 24}, {20, 5}} do
    local want = fmd.load_image(FIX .. ("resize_%dx%d.png"):format(s[2], s[1]))
    expect_near(fmd.image_resize(src, s[1], s[2], true), want, 0, "pil8 " .. s[1] .. "x" .. s[2])
    expect(maxdiff(fmd.image_resize(src, s[1], s[2], false), want) <= 1.01 / 255, "float close")
    expect_near(T.Resize(s[1], s[2])(src), want, 0)
  end
  -- the course case: 224 -> 256 has the ratio of 21 -> 24
  local sq = fmd.load_image(FIX .. "src21.png")
  expect_near(T.Resize(24, 24)(sq), fmd.load_image(FIX .. "resize21_24x24.png"), 0)
  -- shrinking averages: a 2x2 checkerboard block -> its mean
  local cb = fmd.tensor({{{0, 1}, {1, 0}}})
  expect_near(fmd.image_resize(cb, 1, 1, false):item(), 0.5, 1e-6)
  expect_error(function() fmd.image_resize(fmd.zeros(3, 4), 2, 2) end, "C x H x W")
end)

test("crop, flip, normalize kernels", function()
  local x = fmd.arange(1, 13):view(1, 3, 4)
  -- 1-based window origin; outside the image is fill
  local c = fmd.image_crop(x, 0, 2, 2, 3, -1)
  expect_eq(table.concat(c:flat(), " "), "-1.0 -1.0 -1.0 2.0 3.0 4.0")
  expect_eq(table.concat(fmd.image_hflip(x):flat(), " ", 1, 4), "4.0 3.0 2.0 1.0")
  local n = fmd.image_normalize(fmd.full({3, 1, 1}, 1), {0, 0.5, 1}, {1, 2, 4})
  expect_eq(table.concat(n:flat(), " "), "1.0 0.25 0.0")
  expect_error(function() fmd.image_normalize(x, {0, 0}, {1, 1}) end, "channels")
end)

test("transforms: shapes, CenterCrop rounding, seeded randomness", function()
  local src = fmd.load_image(FIX .. "src.png")   -- 20 x 24
  local cc = T.CenterCrop(20, 21)(src)
  -- torchvision: left = round((24 - 21) / 2) = round(1.5) = 2
  expect_near(cc, fmd.image_crop(src, 1, 3, 20, 21), 0)
  expect_eq(fmd.shape_str(T.CenterCrop(30)(src)), "[3 x 30 x 30]")   -- padded
  local rc = T.RandomCrop({20, 24}, 4)
  T.manual_seed(11)
  local a = rc(src)
  T.manual_seed(11)
  expect_near(rc(src), a, 0)
  local seen = {}
  for i = 1, 30 do seen[tostring((rc(src) - src):abs():sum():item())] = true end
  local k = 0
  for _ in pairs(seen) do k = k + 1 end
  expect(k > 3, "RandomCrop varies")
  -- an explicit generator gives the same draws as the C chain
  local g1, g2 = fmd.Rng(5), fmd.Rng(5)
  expect_near(T.RandomHorizontalFlip(1)(src, g1), fmd.image_hflip(src), 0)
  expect_near(T.RandomHorizontalFlip(0)(src, g2), src, 0)
  expect_error(function() T.RandomCrop(40)(src) end, "larger than the padded image")
end)

test("Compose and the course recipe", function()
  local src = fmd.load_image(FIX .. "src.png")
  local parts = {T.Resize(32, 32), T.RandomCrop(32, 4), T.RandomHorizontalFlip(), T.ToTensor(),
                 T.Normalize(T.COURSE_MEAN, T.COURSE_STD)}
  local all = T.Compose(parts)
  expect(all.ops and #all.ops == 4, "Compose of C transforms is C-describable")
  local a = all(src, fmd.Rng(3))
  local g, b = fmd.Rng(3), src
  for _, t in ipairs(parts) do b = t(b, g) end
  expect_near(a, b, 0)
  -- a Lua function in a Compose works (and has no C description)
  local lam = T.Compose{T.Lambda(function(img) return img * 2 end), T.CenterCrop(10)}
  expect(lam.ops == nil)
  expect_near(lam(src), T.CenterCrop(10)(src * 2), 0)

  local train, val = T.course("train"), T.course("val")
  expect_eq(fmd.shape_str(train(src)), "[3 x 256 x 256]")
  local v = val(src)
  local want = fmd.image_normalize(fmd.image_resize(src, 256, 256, true), T.COURSE_MEAN, T.COURSE_STD)
  expect_near(v, want, 1e-6)
  -- a 256x256 image is not resized: val = Normalize only
  local big = fmd.rand(3, 256, 256)
  expect_near(val(big), fmd.image_normalize(big, T.COURSE_MEAN, T.COURSE_STD), 1e-6)
  expect_error(function() T.course("bogus") end, "train")
  expect_error(function() T.Normalize({1, 2}, {1}) end, "2 mean values but 1 std")
  expect_error(function() T.Resize(0, 3) end, "positive")
end)

os.execute("rm -rf '" .. tmp .. "'")
