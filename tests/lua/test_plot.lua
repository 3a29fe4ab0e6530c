-- fmd.image (colour maps, blending, grids: exact values) and fmd.plot
-- (gnuplot figures: a PNG of the asked size is drawn, written through
-- <path>.tmp, bad input is a clear error and never replaces a figure).
local fmd = require "fmd"
local image = require "fmd.image"
local plot = require "fmd.plot"

local exe = package.fmd_exe
local tmp = os.tmpname()
os.remove(tmp)
fmd.sys.mkdir(tmp)

local function near(a, b, tol) return math.abs(a - b) <= (tol or 1e-6) end
local function rgb_at(t, y, x) return {t[1][y][x], t[2][y][x], t[3][y][x]} end
local function expect_rgb(t, y, x, want, what)
  local got = rgb_at(t, y, x)
  for c = 1, 3 do
    expect(near(got[c], want[c]), ("%s: channel %d is %.6f, expected %.6f"):format(what, c, got[c], want[c]))
  end
end

test("colormap jet matches OpenCV's COLORMAP_JET anchor points", function()
  -- OpenCV jet: 0 -> dark blue (0,0,.5), .25 -> (0,.5,1)... checked at the
  -- knots of the piecewise-linear map and clamped outside [0, 1]
  local v = fmd.tensor({{0, 0.125, 0.375, 0.5, 0.625, 0.875, 1, -3, 7}})
  local c = image.colormap(v, "jet")
  expect(fmd.shape_str(c) == fmd.shape_str(fmd.empty(3, 1, 9)), "shape " .. fmd.shape_str(c))
  local want = {{0, 0, 0.5}, {0, 0, 1}, {0, 1, 1}, {0.5, 1, 0.5}, {1, 1, 0}, {1, 0, 0}, {0.5, 0, 0}, {0, 0, 0.5}, {0.5, 0, 0}}
  for i, w in ipairs(want) do expect_rgb(c, 1, i, w, ("jet(%g)"):format(v[1][i])) end
end)

test("colormap gray copies the value into the three channels", function()
  local v = fmd.tensor({{0.2, 0.9}})
  local c = image.colormap(v, "gray")
  expect_rgb(c, 1, 1, {0.2, 0.2, 0.2}, "gray(0.2)")
  expect_rgb(c, 1, 2, {0.9, 0.9, 0.9}, "gray(0.9)")
end)

test("colormap rejects a wrong shape and an unknown map by name", function()
  expect_error(function() image.colormap(fmd.zeros(3, 4, 4), "jet") end, "expected an (H,W) map, got [3 x 4 x 4]")
  expect_error(function() image.colormap(fmd.zeros(4, 4), "viridis") end, "unknown colour map 'viridis'")
end)

test("blend is alpha * a + (1 - alpha) * b and checks its inputs", function()
  local a, b = fmd.full({3, 2, 2}, 1), fmd.zeros(3, 2, 2)
  local m = image.blend(a, b, 0.25)
  expect(near(m:sum():item(), 0.25 * 12), "blend sum " .. m:sum():item())
  expect_error(function() image.blend(a, fmd.zeros(3, 2, 3), 0.5) end, "must have one shape, got [3 x 2 x 2] and [3 x 2 x 3]")
  expect_error(function() image.blend(a, b, 1.5) end, "alpha must be a number in [0, 1]")
end)

test("grid places images row by row with padding and white fill", function()
  local imgs = {}
  for i = 1, 3 do imgs[i] = fmd.full({3, 2, 3}, i / 10) end
  local g = image.grid(imgs, 2, 1)
  -- 2 rows x 2 cols of 2x3 with 1-pixel gaps: (3, 5, 7)
  expect(g:size(2) == 5 and g:size(3) == 7, "grid shape " .. fmd.shape_str(g))
  expect_rgb(g, 1, 1, {0.1, 0.1, 0.1}, "image 1")
  expect_rgb(g, 1, 5, {0.2, 0.2, 0.2}, "image 2")
  expect_rgb(g, 4, 1, {0.3, 0.3, 0.3}, "image 3")
  expect_rgb(g, 3, 1, {1, 1, 1}, "gap row")
  expect_rgb(g, 5, 7, {1, 1, 1}, "empty cell")
  -- an (H,W) map is drawn gray
  local g2 = image.grid({fmd.full({2, 3}, 0.5)}, 1)
  expect_rgb(g2, 2, 3, {0.5, 0.5, 0.5}, "map in a grid")
  expect_error(function() image.grid({imgs[1], fmd.zeros(3, 4, 4)}, 2) end, "image 2 is [3 x 4 x 4], image 1 is [3 x 2 x 3]")
  expect_error(function() image.grid({}, 2) end, "non-empty list")
end)

-- a PNG of exactly w x h with at least `share` of its pixels non-white
local function expect_png(path, w, h, share)
  expect(fmd.sys.is_file(path), "missing " .. path)
  expect(not fmd.sys.is_file(path .. ".tmp"), "left " .. path .. ".tmp behind")
  local img = fmd.load_image(path)
  expect(img:size(2) == h and img:size(3) == w, ("%s is %s, expected 3 x %d x %d"):format(path, fmd.shape_str(img), h, w))
  local inked = (img:sum(1) * (1 / 3)):lt(0.9):mean():item()
  expect(inked >= share, ("%s: only %.2f%% of the pixels are drawn"):format(path, 100 * inked))
  return img
end

test("lines, roc, pr and det write PNGs of the asked size", function()
  local x, y = {}, {}
  for i = 1, 50 do x[i] = i; y[i] = 1 / i end
  expect_png(plot.lines(tmp .. "/lines.png", {{x = x, y = y, title = "1/x"}, {x = fmd.tensor(x), y = fmd.tensor(x) * 0.01, title = "tensor", dash = true}},
    {title = "Loss", xlabel = "epoch", ylabel = "loss", size = {640, 480}}), 640, 480, 0.01)
  local fpr, tpr = {0, 0, 0.5, 1}, {0, 0.5, 1, 1}
  expect_png(plot.roc(tmp .. "/roc.png", {{fpr = fpr, tpr = tpr, title = "AUC = 0.875"}}), 760, 740, 0.01)
  expect_png(plot.pr(tmp .. "/pr.png", {{recall = {0, 0.5, 1}, precision = {1, 1, 0.5}, title = "AP"}}, {baseline = 0.5}), 760, 680, 0.01)
  -- rates of exactly 0 and 1 are drawn at the edge, not dropped as -inf
  expect_png(plot.det(tmp .. "/det.png", {{fpr = {0, 0.1, 0.5, 1}, fnr = {1, 0.3, 0.05, 0}, title = "m"}}), 760, 740, 0.01)
end)

-- columns x0..x1 (1-based) in which some pixel between rows y0..y1 has the colour rgb
local function columns_with(img, rgb, x0, x1, y0, y1)
  local n = 0
  for x = x0, x1 do
    for y = y0, y1 do
      local p = rgb_at(img, y, x)
      if near(p[1], rgb[1], 0.06) and near(p[2], rgb[2], 0.06) and near(p[3], rgb[3], 0.06) then n = n + 1; break end
    end
  end
  return n
end

test("the keys of ROC and DET curves hide no curve: a curve through every corner stays visible", function()
  local blue = {0x1f / 255, 0x77 / 255, 0xb4 / 255}
  -- a worse-than-chance DET curve runs along the top (fnr 99.8 %) and the
  -- right (fpr 99.8 %), where a key inside the axes used to be
  local det = fmd.load_image(plot.det(tmp .. "/det_key.png", {
    {fpr = {0.001, 0.998, 0.998}, fnr = {0.998, 0.998, 0.001}, title = "a long key entry: score A (real logit)"},
    {fpr = {0.5}, fnr = {0.5}, title = "a second curve, EER = 50.00%"}}))
  local W, H = det:size(3), det:size(2)
  local x0, x1 = math.floor(0.3 * W), math.floor(0.85 * W)
  expect_eq(columns_with(det, blue, x0, x1, 1, math.floor(0.3 * H)), x1 - x0 + 1, "DET columns showing the top curve")
  -- a ROC curve below the diagonal runs along the bottom right
  local roc = fmd.load_image(plot.roc(tmp .. "/roc_key.png", {
    {fpr = {0, 0.05, 1, 1}, tpr = {0, 0.02, 0.02, 1}, title = "score A (real logit), AUC = 0.0100"},
    {fpr = {0, 1}, tpr = {0, 1}, title = "score B"}}))
  W, H = roc:size(3), roc:size(2)
  x0, x1 = math.floor(0.3 * W), math.floor(0.85 * W)
  expect_eq(columns_with(roc, blue, x0, x1, math.floor(0.6 * H), math.floor(0.85 * H)), x1 - x0 + 1,
    "ROC columns showing the bottom curve")
end)

test("images draws titled panels from tensors", function()
  local panels = {}
  for i = 1, 4 do panels[i] = {image = image.colormap(fmd.rand(32, 32), "jet"), title = "panel " .. i} end
  panels[5] = {image = fmd.rand(32, 32), title = "a gray map"}
  local img = expect_png(plot.images(tmp .. "/panels.png", panels, {cols = 3, title = "five panels", panel_size = 100}), 3 * 108 + 8,
    42 + 2 * (100 + math.floor(9 * 2.2) + 8), 0.2)
  expect(img:size(1) == 3, "RGB")
  expect_error(function() plot.images(tmp .. "/bad.png", {{image = fmd.zeros(2, 5, 5)}}) end, "panel 1: expected an (H,W) map or a (1|3,H,W) image, got [2 x 5 x 5]")
end)

test("images draws a colour bar of the panels' colour map to their right", function()
  local panels = {}
  for i = 1, 3 do panels[i] = {image = image.colormap(fmd.rand(32, 32), "jet"), title = "panel " .. i} end
  local W, H = 3 * 108 + 8 + 110, 42 + 100 + math.floor(9 * 2.2) + 8
  local img = expect_png(plot.images(tmp .. "/bar.png", panels, {cols = 3, title = "a bar", panel_size = 100,
    colorbar = {label = "Grad-CAM (0-1)"}}), W, H, 0.2)
  -- the bar, right of the panels: jet's dark red (1) at its top, dark blue (0) at its bottom
  local x = W - 110 + 6 + 9
  local top, bottom = 42 + math.floor(9 * 2.2) + 4 + 3, H - 6 - 3
  local t, b = rgb_at(img, top, x), rgb_at(img, bottom, x)
  expect(t[1] >= 0.5 and t[1] < 0.75 and t[2] < 0.05 and t[3] < 0.05, ("top of the bar is dark red, got %.2f %.2f %.2f"):format(t[1], t[2], t[3]))
  expect(b[3] >= 0.5 and b[3] < 0.75 and b[1] < 0.05 and b[2] < 0.05, ("bottom of the bar is dark blue, got %.2f %.2f %.2f"):format(b[1], b[2], b[3]))
  -- gray: white at the top, black at the bottom
  local g = expect_png(plot.images(tmp .. "/bar_gray.png", panels, {cols = 3, title = "a bar", panel_size = 100,
    colorbar = {label = "normalised |gradient|", map = "gray"}}), W, H, 0.2)
  for c = 1, 3 do
    expect(rgb_at(g, top, x)[c] > 0.95 and rgb_at(g, bottom, x)[c] < 0.05, "gray bar")
  end
  expect_error(function() plot.images(tmp .. "/bad.png", panels, {colorbar = {map = "viridis"}}) end,
    "plot.images: colorbar: unknown colour map 'viridis' (jet or gray)")
  expect_error(function() plot.images(tmp .. "/bad.png", panels, {colorbar = {range = {1, 1}}}) end,
    "plot.images: colorbar.range must be {lo, hi} with lo < hi")
end)

test("bad series are clear errors that name the series", function()
  expect_error(function() plot.lines(tmp .. "/x.png", {}) end, "non-empty list of series")
  expect_error(function() plot.lines(tmp .. "/x.png", {{x = {1, 2}, y = {1}}}) end, "series 1 has 2 x values but 1 y values")
  expect_error(function() plot.lines(tmp .. "/x.png", {{x = {1}, y = {2}}, {x = {1, "a"}, y = {1, 2}}}) end, "series 2 point 2 is not a pair of numbers")
  expect_error(function() plot.lines(tmp .. "/x.png", {{x = fmd.zeros(2, 2), y = {1}}}) end, "series 1 x must be 1-D, got [2 x 2]")
  expect_error(function() plot.lines(nil, {{x = {1}, y = {1}}}) end, "expected a file name")
  expect(not fmd.sys.is_file(tmp .. "/x.png"), "a failed plot wrote x.png")
end)

test("a failing gnuplot keeps the earlier figure and leaves no .tmp", function()
  local path = tmp .. "/keep.png"
  plot.lines(path, {{x = {1, 2}, y = {1, 2}}})
  local before = io.open(path, "rb"):read("a")
  -- a gnuplot syntax error: an unbalanced range through a crafted option
  expect_error(function() plot.lines(path, {{x = {1, 2}, y = {1, 2}}}, {key = "top right ("}) end, "gnuplot failed writing")
  expect(io.open(path, "rb"):read("a") == before, "the earlier figure was replaced")
  expect(not fmd.sys.is_file(path .. ".tmp"), "left keep.png.tmp")
  -- into a folder that does not exist
  expect_error(function() plot.lines(tmp .. "/no/such/dir/a.png", {{x = {1}, y = {1}}}) end, "a.png")
end)

test("a missing gnuplot says how to install it, in one line", function()
  local p = io.popen(("FMD_GNUPLOT=/nonexistent/gnuplot %s -e 'require(\"fmd.plot\").lines(\"%s/m.png\", {{x = {1}, y = {1}}})' 2>&1; echo \"exit=$?\"")
    :format(exe, tmp))
  local out = p:read("a"); p:close()
  expect(out:find("gnuplot not found (FMD_GNUPLOT=/nonexistent/gnuplot); install it with: apt-get install gnuplot-nox", 1, true), out)
  expect(not out:find("traceback", 1, true), "printed a traceback:\n" .. out)
  expect(out:match("exit=(%d+)") ~= "0", "exit code 0 on a missing gnuplot")
end)

os.execute("rm -rf '" .. tmp .. "'")
