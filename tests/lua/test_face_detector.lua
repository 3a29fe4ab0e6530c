-- fmd.detect and the TinyFaceDetector model against @vladmandic/face-api
-- 1.7.15 itself: tests/fixtures/face_detector.json holds what the package's
-- JavaScript finds in tests/fixtures/detect/*.{jpg,png} (written by
-- tests/fixtures/make_face_detector.mjs). fmd's boxes must match within
-- 1 pixel and their scores within 1e-3, box for box. Needs the package's
-- weights (scripts/fetch_weights.lua, run by scripts/bootstrap.sh); without
-- them the comparisons skip and say so. The crop geometry tests need no
-- weights.
local fmd = require "fmd"
local json = require "fmd.json"
local detect = require "fmd.detect"

local FIX = "tests/fixtures/"
local BOX_TOL, SCORE_TOL = 1, 1e-3

local fx = json.read_file(FIX .. "face_detector.json")
local have = detect.available()
if not have then
  io.stderr:write(("skip: the TinyFaceDetector weights are not in %s (fetch them with: %s face-api); "
    .. "the comparisons with face-api.js are not run\n"):format(require("fmd.weights").dir(),
    require("fmd.weights").FETCH_COMMAND))
end
local function with_weights(name, fn) if have then test(name, fn) end end

-- the largest differences between fmd's boxes and the package's, boxes
-- paired in score order (both lists are sorted best first)
local function compare(got, want, what)
  expect_eq(#got, #want, what .. ": number of faces")
  local dbox, dscore = 0, 0
  for i, w in ipairs(want) do
    local g = got[i]
    for _, k in ipairs{"x", "y", "w", "h"} do dbox = math.max(dbox, math.abs(g[k] - w[k])) end
    dscore = math.max(dscore, math.abs(g.score - w.score))
  end
  return dbox, dscore
end

local function sorted(list)
  table.sort(list, function(a, b) return a.score > b.score end)
  return list
end

with_weights("the network's raw output equals the package's (astronaut, size 224)", function()
  local r = fx.raw
  local x = detect.prepare(FIX .. "detect/" .. r.image, r.size):unsqueeze(1)
  local out = fmd.no_grad(function() return detect.model()(x) end)
  -- the package's is (1, g, g, 25), channels last
  local want = fmd.tensor(r.values):view(table.unpack(r.shape)):permute(1, 4, 2, 3)
  expect_eq(fmd.shape_str(out), fmd.shape_str(want))
  local worst = (out - want):abs():max():item()
  expect(worst < 1e-3, ("largest difference of the raw output: %g"):format(worst))
end)

with_weights("fmd.detect finds the package's faces: boxes within 1 px, scores within 1e-3", function()
  -- one run per image and size, at its lowest threshold: greedy NMS keeps
  -- the same boxes above a higher threshold whatever scored below it
  local lowest, runs = {}, {}
  for _, c in ipairs(fx.cases) do
    local k = c.image .. "@" .. c.size
    lowest[k] = math.min(lowest[k] or 1, c.score_threshold)
  end
  local dbox, dscore, n, by_image = 0, 0, 0, {}
  for _, c in ipairs(fx.cases) do
    local k = c.image .. "@" .. c.size
    runs[k] = runs[k] or detect.faces(FIX .. "detect/" .. c.image, {size = c.size, score_threshold = lowest[k]})
    local got = {}
    for _, b in ipairs(runs[k]) do if b.score > c.score_threshold then got[#got + 1] = b end end
    local b, s = compare(got, sorted(c.detections), ("%s size %d threshold %g"):format(c.image, c.size, c.score_threshold))
    dbox, dscore, n = math.max(dbox, b), math.max(dscore, s), n + #got
    if c.score_threshold == detect.SCORE_THRESHOLD then by_image[c.image] = (by_image[c.image] or 0) + #got end
  end
  io.stderr:write(("face-api agreement: %d runs, %d faces, max box difference %.2g px, max score difference %.2g\n")
    :format(#fx.cases, n, dbox, dscore))
  expect(dbox <= BOX_TOL, ("max box difference %g px"):format(dbox))
  expect(dscore <= SCORE_TOL, ("max score difference %g"):format(dscore))
  -- at the default threshold, photos without a face give no detection
  expect_eq(by_image["coffee.jpg"], 0, "faces in coffee.jpg")
  expect_eq(by_image["grass.jpg"], 0, "faces in grass.jpg")
  expect(by_image["astronaut.jpg"] >= 1 and by_image["two_faces.jpg"] >= 2, "faces found in the photos")
end)

with_weights("a batch gives the same boxes as one image at a time", function()
  local names = {"astronaut.jpg", "coffee.jpg", "two_faces.jpg", "camera.jpg"}
  local imgs = {}
  for i, n in ipairs(names) do imgs[i] = fmd.load_image(FIX .. "detect/" .. n) end
  local batch = detect.faces(imgs, {batch_size = 3})
  expect_eq(#batch, #names)
  for i, n in ipairs(names) do
    local one = detect.faces(imgs[i])
    local b, s = compare(batch[i], one, n)
    expect(b < 1e-3 and s < 1e-6, n .. ": batch and single runs differ")
  end
end)

with_weights("the comparison fails with a wrong anchor or a wrong mean", function()
  local TFD = require("fmd.models").class("TinyFaceDetector")
  local c = fx.cases[1]
  expect(#c.detections > 0, "the first case has a face")
  local function diffs()
    local got = detect.faces(FIX .. "detect/" .. c.image, {size = c.size, score_threshold = c.score_threshold})
    if #got ~= #c.detections then return math.huge, math.huge end
    return compare(got, sorted(c.detections), c.image)
  end
  local widths, red = {}, TFD.MEAN_RGB[1]
  for a, anchor in ipairs(TFD.ANCHORS) do widths[a] = anchor[1] end
  local ok, err = pcall(function()
    for _, anchor in ipairs(TFD.ANCHORS) do anchor[1] = anchor[1] * 1.05 end   -- anchors 5 % wider
    local bad_box = diffs()
    for a, anchor in ipairs(TFD.ANCHORS) do anchor[1] = widths[a] end
    TFD.MEAN_RGB[1] = red + 10                                                -- a wrong red mean
    local _, bad_score = diffs()
    TFD.MEAN_RGB[1] = red
    expect(bad_box > BOX_TOL, ("wider anchors still agree: %g px"):format(bad_box))
    expect(bad_score > SCORE_TOL, ("a wrong mean still agrees: score difference %g"):format(bad_score))
    io.stderr:write(("with anchors 5 %% wider: box difference %.3g px; with the red mean + 10: score difference %.3g\n")
      :format(bad_box, bad_score))
  end)
  for a, anchor in ipairs(TFD.ANCHORS) do anchor[1] = widths[a] end
  TFD.MEAN_RGB[1] = red
  if not ok then error(err, 0) end
end)

with_weights("several sizes: every size's boxes through one NMS", function()
  local img = fmd.load_image(FIX .. "detect/two_faces.jpg")
  local multi = detect.faces(img, {sizes = {416, 608}, score_threshold = 0.3})
  local pool = {}
  for _, size in ipairs{416, 608} do
    -- iou = 1 keeps every candidate of one size
    for _, b in ipairs(detect.faces(img, {size = size, score_threshold = 0.3, iou = 1})) do pool[#pool + 1] = b end
  end
  local want = detect.nms(pool, detect.IOU)
  local b, sc = compare(multi, want, "two_faces sizes 416 + 608")
  expect(b == 0 and sc == 0, "the same boxes")
  expect_eq(#multi, 2, "both faces, once each")
  expect_error(function() detect.faces(img, {sizes = {416, 100}}) end, "detect.faces: sizes must be multiples of 32")
end)

test("merge_flip: the mean of a box's score and its mirror match's", function()
  local boxes = {{x = 10, y = 5, w = 20, h = 20, score = 0.9}, {x = 60, y = 5, w = 10, h = 10, score = 0.7}}
  -- in the mirror image (width 100) the first box is at x = 100 - 10 - 20 = 70
  local mirrored = {{x = 71, y = 5, w = 20, h = 20, score = 0.5}, {x = 5, y = 50, w = 10, h = 10, score = 0.99}}
  local m = detect.merge_flip(boxes, mirrored, 100)
  expect_near(m[1].score, 0.7, 1e-12)
  expect_near(m[2].score, 0.35, 1e-12)     -- no match: the mirror counts 0
  expect_eq(m[1].x, 10)                    -- the box itself is kept
end)

with_weights("flip: the mirror image runs too and scores are merge_flip's means", function()
  local img = fmd.load_image(FIX .. "detect/two_faces.jpg")
  local got = detect.faces(img, {flip = true, score_threshold = 0.3})
  local raw = {score_threshold = 0, iou = 1}
  local want = {}
  for _, b in ipairs(detect.merge_flip(detect.faces(img, raw), detect.faces(fmd.image_hflip(img), raw), img:size(3))) do
    if b.score > 0.3 then want[#want + 1] = b end
  end
  want = detect.nms(want, detect.IOU)
  local b, sc = compare(got, want, "two_faces flipped")
  expect(b == 0 and sc == 0, "the same boxes and scores")
  expect_eq(#got, 2)
end)

test("resize_tf equals tf.image.resizeBilinear", function()
  for _, r in ipairs(fx.resize) do
    local h, w = r.input_shape[1], r.input_shape[2]
    local x = fmd.tensor(r.input):view(h, w, 3):permute(3, 1, 2):contiguous()
    local got = fmd.image_resize_tf(x, r.size[1], r.size[2])
    local want = fmd.tensor(r.output):view(r.size[1], r.size[2], 3):permute(3, 1, 2)
    expect_near(got, want, 1e-6, ("%dx%d -> %dx%d"):format(h, w, r.size[1], r.size[2]))
  end
end)

test("detect.faces refuses bad options and inputs with one clear line", function()
  expect_error(function() detect.faces(fmd.zeros(3, 8, 8), {size = 100}) end,
    "detect.faces: size must be a multiple of 32 (the grid is size/32), got 100")
  expect_error(function() detect.faces(fmd.zeros(3, 8, 8), {score_threshold = 1}) end,
    "detect.faces: score_threshold must be in [0, 1), got 1")
  expect_error(function() detect.faces(fmd.zeros(3, 8, 8), {iou = -0.1}) end, "detect.faces: iou must be in [0, 1]")
  expect_error(function() detect.faces(fmd.zeros(2, 8, 8)) end, "detect.faces: expected a (3,H,W) image, got [2 x 8 x 8]")
  expect_error(function() detect.faces(42) end, "detect.faces: expected an image (tensor or path) or a list of them")
  expect_error(function() detect.faces("tests/fixtures/nosuch.png") end, "nosuch.png")
end)

test("without the weights: one line naming the fetch command", function()
  local saved = os.getenv("FMD_WEIGHTS")
  local out = io.popen(("FMD_WEIGHTS=/nonexistent/fmd-weights %s -e 'require(\"fmd.detect\").faces(fmd.zeros(3, 8, 8))' 2>&1")
    :format(package.fmd_exe)):read("a")
  expect(out:find("/nonexistent/fmd-weights/vladmandic-face-api-1.7.15/model/tiny_face_detector_model-weights_manifest.json: "
    .. "not found (the weights of @vladmandic/face-api@1.7.15); fetch them with: build/fmd scripts/fetch_weights.lua face-api",
    1, true), out)
  expect(not out:find("traceback", 1, true), out)
  expect(saved == os.getenv("FMD_WEIGHTS"))
end)

------------------------------------------------------------ crops (no weights needed)

-- an image whose pixel (y, x) (0-based) holds ((y + 1) / 100, (x + 1) / 100, 1) per channel
local function ramp(h, w)
  local img = fmd.empty(3, h, w)
  img[1] = fmd.arange(1, h + 1):view(h, 1):expand(h, w) / 100
  img[2] = fmd.arange(1, w + 1):view(1, w):expand(h, w) / 100
  img[3] = fmd.ones(h, w)
  return img
end

test("crop: a square of 1.3 x the longer side around the box's centre", function()
  local img = ramp(60, 80)
  local crop, info = detect.crop(img, {x = 30, y = 20, w = 20, h = 10}, {transform = false})
  -- side round(26) centred on (40, 25): left 27, top 12
  expect_eq(info.side, 26)
  expect_eq(info.x, 27)
  expect_eq(info.y, 12)
  expect_eq(fmd.shape_str(crop), "[3 x 26 x 26]")
  expect_near(crop[1][1][1], 13 / 100, 1e-6)   -- row 12 -> value 13/100
  expect_near(crop[2][1][1], 28 / 100, 1e-6)   -- column 27
  expect_eq(info.small, true)                        -- 20 px < 40
  local _, info2 = detect.crop(img, {x = 0, y = 0, w = 40, h = 30}, {transform = false})
  expect_eq(info2.small, false)
end)

test("crop at the border: zeros where the square leaves the image", function()
  local img = ramp(50, 50)
  local crop, info = detect.crop(img, {x = -10, y = 40, w = 20, h = 20}, {transform = false})
  expect_eq(info.side, 26)
  expect_eq(info.x, -13)
  expect_eq(info.y, 37)
  -- columns -13..-1 and rows 50..62 are outside: zeros in every channel
  expect_eq(crop:narrow(3, 1, 13):abs():sum():item(), 0)
  expect_eq(crop:narrow(2, 14, 13):abs():sum():item(), 0)
  -- the pixel at image (37, 0) is crop (1, 14)
  expect_near(crop[1][1][14], 38 / 100, 1e-6)
  expect_near(crop[2][1][14], 1 / 100, 1e-6)
  expect_eq(crop[3]:narrow(1, 1, 13):narrow(2, 14, 13):min():item(), 1)
end)

test("crop of a 1 x 1 image and of a box far outside", function()
  local one = fmd.full({3, 1, 1}, 0.5)
  local crop, info = detect.crop(one, {x = 0, y = 0, w = 1, h = 1}, {transform = false})
  expect_eq(info.side, 1)
  expect_eq(crop:sum():item(), 1.5)
  local c2 = detect.crop(one, {x = 0, y = 0, w = 1, h = 1})   -- the test transform: 256 x 256, normalised
  expect_eq(fmd.shape_str(c2), "[3 x 256 x 256]")
  local away = detect.crop(one, {x = 500, y = 500, w = 10, h = 10}, {transform = false})
  expect_eq(away:abs():sum():item(), 0)
end)

test("crop of a huge box: bounded memory, the image in the middle", function()
  local img = fmd.full({3, 40, 40}, 1)
  local before = fmd.memory_in_use()
  -- a box 100 times the image: a 520,000-pixel square is cut from a shrunken image
  local crop, info = detect.crop(img, {x = -1980, y = -1980, w = 4000, h = 4000}, {transform = false})
  expect_eq(info.side, 5200)
  expect_eq(fmd.shape_str(crop), ("[3 x %d x %d]"):format(detect.MAX_CROP_SIDE, detect.MAX_CROP_SIDE))
  expect(fmd.memory_in_use() - before < 3 * detect.MAX_CROP_SIDE ^ 2 * 4 * 2.5, "memory bounded")
  -- the image (40 px of 5200) lands in the middle, about 16 px of 2048
  local mid = crop[1]:narrow(1, 1010, 30):narrow(2, 1010, 30)
  expect(mid:max():item() > 0.9, "the image is in the middle")
  expect_eq(crop[1]:narrow(1, 1, 1000):abs():sum():item(), 0)
  local t = detect.crop(img, {x = -1980, y = -1980, w = 4000, h = 4000})
  expect_eq(fmd.shape_str(t), "[3 x 256 x 256]")
end)

test("crop with the test transform equals the test split's transform of the square", function()
  local img = ramp(60, 80)
  local raw = detect.crop(img, {x = 30, y = 20, w = 20, h = 10}, {transform = false})
  local t = detect.crop(img, {x = 30, y = 20, w = 20, h = 10})
  expect_near(t, require("fmd.transforms").course("test")(raw), 0)
end)

test("crop refuses a box that is not one", function()
  local img = ramp(10, 10)
  expect_error(function() detect.crop(img, {x = 0, y = 0, w = 0, h = 5}) end,
    "detect.crop: box must be {x, y, w, h} with finite numbers and w, h > 0")
  expect_error(function() detect.crop(img, {x = 0 / 0, y = 0, w = 1, h = 5}) end, "finite numbers")
  expect_error(function() detect.crop(img, {x = 0, y = 0, w = 1, h = 1}, {margin = 0}) end,
    "detect.crop: margin must be a number > 0, got 0")
end)
