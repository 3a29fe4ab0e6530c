-- How well fmd.detect finds faces in big, cluttered images (evidence for
-- docs/detect.md, not a test): scenes of at least 1024 x 768 whose
-- backgrounds are crops of scikit-image's face-free sample photos (coffee,
-- grass, bricks, gravel, a cat, a rocket, text pages, ...) or generated
-- noise textures, with 0 to 4 face crops of a data set's test split pasted at
-- random sizes and places (never overlapping). Reports recall at IoU 0.5 by
-- face size and false positives per scene. Seeded: the same flags give the
-- same scenes.
--
--   build/fmd bench/detect_quality.lua --data-root /work/shared/data --sets synthetic_dev,deepfake_dev
--
-- Ground truth: a face's box is its pasted crop's square scaled by the data
-- set's face box convention, the median box the detector draws on that set's
-- crops shown alone (200 px on grey, --calibrate of them): crops of one set
-- are aligned alike, and the convention (how tight face-api draws a face)
-- is the detector's; whether each face is found, and where, is not. The
-- face size of a row is the box's width.
local fmd = require "fmd"
local cli = require "fmd.cli"
local data = require "fmd.data"
local detect = require "fmd.detect"
local transforms = require "fmd.transforms"
local json = require "fmd.json"

local SKIMAGE = "/usr/lib/python3/dist-packages/skimage/data"
-- scikit-image's sample photos without a human face
local BACKGROUNDS = {"coffee.png", "chelsea.png", "grass.png", "gravel.png", "brick.png", "rocket.jpg",
                     "hubble_deep_field.jpg", "motorcycle_left.png", "coins.png", "page.png", "text.png",
                     "moon.png", "horse.png", "color.png", "ihc.png", "retina.jpg", "cell.png"}
local BUCKETS = {32, 40, 48, 64, 96, 128, 192, 256, 401}

local opts = cli.parse(arg, {
  name = "bench/detect_quality.lua",
  description = "Recall and false positives of fmd.detect on generated scenes of pasted face crops",
  {"--data-root", metavar = "DIR", help = "folder holding the data sets (default $FMD_DATA or data)"},
  {"--sets", default = "synthetic_dev", metavar = "A,B", help = "data sets whose test split gives the faces"},
  {"--scenes", type = "integer", default = 200, min = 1, help = "scenes per data set"},
  {"--width", type = "integer", default = 1024, min = 64, help = "scene width"},
  {"--height", type = "integer", default = 768, min = 64, help = "scene height"},
  {"--detect-sizes", metavar = "A,B", help = "detector input sizes, their boxes merged by one NMS (default: 416 "
    .. "and the scene's longer side rounded up to a multiple of 32)"},
  {"--score-threshold", type = "number", default = 0.55, help = "detector score threshold"},
  {"--no-flip", type = "boolean", help = "do not also run the mirror image (detect.faces's flip)"},
  {"--compare", metavar = "LIST", help = "other settings on the same scenes, e.g. 416@0.5,1024@0.5,416+1024+flip@0.55 "
    .. "(sizes, + flip to also run the mirror image, @ threshold)"},
  {"--min-face", type = "integer", default = 32, min = 8, help = "smallest face width pasted"},
  {"--max-face", type = "integer", default = 400, min = 16, help = "largest face width pasted"},
  {"--calibrate", type = "integer", default = 60, min = 5, help = "crops per set for the face box convention"},
  {"--backgrounds", default = SKIMAGE, metavar = "DIR", help = "folder of the background photos"},
  {"--seed", type = "integer", default = 1, help = "seed of the scenes"},
  {"--batch", type = "integer", default = 2, min = 1, help = "scenes per forward pass"},
  {"--out", metavar = "PATH", help = "also write the results as JSON"},
})
local W, H = opts.width, opts.height

-- a setting: sizes (multiples of 32), whether the mirror image runs too,
-- and a score threshold
local function setting(sizes_text, thr, flip)
  local sizes = {}
  for v in sizes_text:gmatch("[^,+]+") do
    local n = math.tointeger(tonumber(v))
    if v == "flip" then flip = true
    elseif not n or n < 32 or n % 32 ~= 0 then error(("detector sizes must be multiples of 32, got '%s'"):format(v), 0)
    else sizes[#sizes + 1] = n end
  end
  if #sizes == 0 or not (thr >= 0 and thr < 1) then error(("bad setting '%s@%s'"):format(sizes_text, thr), 0) end
  -- candidates below `raw` cannot pass (a flip mean above thr needs both above 2 thr - 1)
  return {sizes = sizes, threshold = thr, flip = flip, raw = flip and math.max(0, 2 * thr - 1) or thr,
          name = table.concat(sizes, "+") .. (flip and "+flip" or "") .. "@" .. thr}
end
local settings = {setting(opts.detect_sizes or ("416," .. math.ceil(math.max(W, H) / 32) * 32), opts.score_threshold,
                          not opts.no_flip)}
for item in (opts.compare or ""):gmatch("[^,]+") do
  local sz, thr = item:match("^([%w+]+)@([%d.]+)$")
  if not sz then error(("--compare: '%s' is not sizes@threshold (e.g. 416+1024+flip@0.55)"):format(item), 0) end
  settings[#settings + 1] = setting(sz, tonumber(thr), false)
end
-- every size any setting needs, run once per scene (and its mirror when a
-- setting flips) at the lowest threshold any setting needs
local all_sizes, lowest, seen_size, any_flip = {}, 1, {}, false
for _, st in ipairs(settings) do
  lowest = math.min(lowest, st.raw)
  any_flip = any_flip or st.flip
  for _, v in ipairs(st.sizes) do
    if not seen_size[v] then seen_size[v] = true; all_sizes[#all_sizes + 1] = v end
  end
end
local root = data.data_root(opts)

local rng = fmd.Rng(opts.seed)
fmd.manual_seed(opts.seed)
local function uniform(a, b) return a + (b - a) * rng:uniform() end
local function round(v) return math.floor(v + 0.5) end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  return s[(#s + 1) // 2]
end

local iou = detect.iou

------------------------------------------------------------ inputs

local function list_faces(set)
  local files = {}
  for _, cls in ipairs{"real", "fake"} do
    local dir = ("%s/%s/test/%s"):format(root, set, cls)
    if not fmd.sys.is_dir(dir) then error(("data set %s: no folder %s"):format(set, dir), 0) end
    for _, f in ipairs(fmd.sys.listdir(dir)) do
      if f:match("%.jpe?g$") or f:match("%.png$") then files[#files + 1] = dir .. "/" .. f end
    end
  end
  return files
end

local backgrounds = {}
for _, f in ipairs(BACKGROUNDS) do
  local p = opts.backgrounds .. "/" .. f
  if fmd.sys.is_file(p) then backgrounds[#backgrounds + 1] = {name = f, img = fmd.load_image(p)} end
end
print(("backgrounds: %d photos from %s, and generated noise"):format(#backgrounds, opts.backgrounds))

-- a W x H background: a random part of a photo (at least 40 % of its side),
-- or smooth colour blobs with fine grain (a generated texture)
local function background()
  local k = rng:int(#backgrounds + 3)
  if k > #backgrounds then
    local blobs = transforms.Resize(H, W, {mode = "float"})(fmd.rand(3, rng:int(6) + 2, rng:int(8) + 2))
    return (blobs * 0.8 + fmd.rand(3, H, W) * 0.2):clamp(0, 1), "noise"
  end
  local b = backgrounds[k]
  local h, w = b.img:size(2), b.img:size(3)
  local ch = math.max(8, round(h * uniform(0.4, 1)))
  local cw = math.min(w, math.max(8, round(ch * W / H)))
  local top, left = rng:int(h - ch + 1), rng:int(w - cw + 1)
  local part = b.img:narrow(2, top, ch):narrow(3, left, cw)
  return transforms.Resize(H, W)(part:contiguous()), b.name
end

------------------------------------------------------------ the face box convention

-- the median box (relative to the crop's square) the detector draws on
-- crops shown alone; and how many it misses even so
local function convention(files)
  local rel, missed, canvas_size, side = {x = {}, y = {}, w = {}, h = {}}, 0, 416, 200
  local off = (canvas_size - side) // 2
  local imgs = {}
  for i = 1, math.min(opts.calibrate, #files) do
    local face = transforms.Resize(side, side)(files[rng:int(#files)])
    local canvas = fmd.full({3, canvas_size, canvas_size}, 0.5)
    canvas:narrow(2, off + 1, side):narrow(3, off + 1, side):copy(face)
    imgs[i] = canvas
  end
  for _, boxes in ipairs(detect.faces(imgs, {size = canvas_size, batch_size = opts.batch})) do
    local b = boxes[1]
    if not b then missed = missed + 1
    else
      rel.x[#rel.x + 1], rel.y[#rel.y + 1] = (b.x - off) / side, (b.y - off) / side
      rel.w[#rel.w + 1], rel.h[#rel.h + 1] = b.w / side, b.h / side
    end
  end
  if #rel.w == 0 then error("the detector found no face on any crop shown alone", 0) end
  return {x = median(rel.x), y = median(rel.y), w = median(rel.w), h = median(rel.h), missed = missed, n = #imgs}
end

------------------------------------------------------------ scenes

-- one scene: the image and its faces' boxes (the pasted squares must not overlap)
local function scene(files, conv)
  local img, bg = background()
  local nfaces = rng:uniform() < 0.2 and 0 or rng:int(4)
  local faces, squares = {}, {}
  for _ = 1, nfaces do
    local fw = math.exp(uniform(math.log(opts.min_face), math.log(opts.max_face)))   -- log-uniform width
    local side = math.max(8, round(fw / conv.w))
    if side < math.min(W, H) then
      for _ = 1, 50 do
        local x, y = rng:int(W - side + 1) - 1, rng:int(H - side + 1) - 1
        local sq = {x = x, y = y, w = side, h = side}
        local free = true
        for _, o in ipairs(squares) do if iou(o, sq) > 0 then free = false end end
        if free then
          local file = files[rng:int(#files)]
          img:narrow(2, y + 1, side):narrow(3, x + 1, side):copy(transforms.Resize(side, side)(file))
          squares[#squares + 1] = sq
          faces[#faces + 1] = {x = x + conv.x * side, y = y + conv.y * side, w = conv.w * side, h = conv.h * side,
                               file = file}
          break
        end
      end
    end
  end
  return img, faces, bg
end

local function bucket_of(w)
  for i = 1, #BUCKETS - 1 do if w >= BUCKETS[i] and w < BUCKETS[i + 1] then return i end end
end

------------------------------------------------------------ run

-- a setting's boxes for one scene: the candidates of its sizes (their
-- scores merged with the mirror image's when it flips) above its threshold
-- through one NMS, what detect.faces does with opts.sizes and opts.flip
local function boxes_of(st, cands, mirrored)
  local function above(list, t)
    local out = {}
    for _, b in ipairs(list) do if b.score > t then out[#out + 1] = b end end
    return out
  end
  local pool = {}
  for _, v in ipairs(st.sizes) do
    local list = cands[v]
    if st.flip then list = detect.merge_flip(above(list, st.raw), above(mirrored[v], st.raw), W) end
    for _, b in ipairs(above(list, st.threshold)) do pool[#pool + 1] = b end
  end
  return detect.nms(pool, detect.IOU)
end

local function new_tally()
  local t = {found = {}, total = {}, fp = 0, fp_by_bg = {}, ious = {}}
  for i = 1, #BUCKETS - 1 do t.found[i], t.total[i] = 0, 0 end
  return t
end

-- matches a scene's boxes (best score first) to its faces at IoU >= 0.5
local function score_scene(t, boxes, truth, bg)
  local matched = {}
  for _, d in ipairs(boxes) do
    local best, bi = 0.5, nil
    for j, f in ipairs(truth) do
      local v = iou(d, f)
      if not matched[j] and v >= best then best, bi = v, j end
    end
    if bi then matched[bi] = true; t.ious[#t.ious + 1] = best
    else t.fp = t.fp + 1; t.fp_by_bg[bg] = (t.fp_by_bg[bg] or 0) + 1 end
  end
  for j, f in ipairs(truth) do
    local b = bucket_of(f.w)
    if b then
      t.total[b] = t.total[b] + 1
      if matched[j] then t.found[b] = t.found[b] + 1 end
    end
  end
end

local function recall_48(t)
  local f, n = 0, 0
  for i = 1, #BUCKETS - 1 do
    if BUCKETS[i] >= 48 then f, n = f + t.found[i], n + t.total[i] end
  end
  return f, n
end

local report = {width = W, height = H, seed = opts.seed, scenes_per_set = opts.scenes, sets = {}}
for set in opts.sets:gmatch("[^,]+") do
  local files = list_faces(set)
  local conv = convention(files)
  print(("\n%s: %d test crops; face box convention x %.3f y %.3f w %.3f h %.3f of the crop "
    .. "(the detector missed %d of %d crops shown alone at 200 px)"):format(set, #files, conv.x, conv.y, conv.w, conv.h,
    conv.missed, conv.n))
  local tallies = {}
  for k = 1, #settings do tallies[k] = new_tally() end
  local n_scenes, t0 = 0, fmd.sys.now()
  for first = 1, opts.scenes, opts.batch do
    local imgs, truths, bgs = {}, {}, {}
    for k = 1, math.min(opts.batch, opts.scenes - first + 1) do imgs[k], truths[k], bgs[k] = scene(files, conv) end
    -- iou 1 keeps every candidate: each setting runs its own NMS
    local cands, mirrors, flipped = {}, {}, {}
    if any_flip then for k, img in ipairs(imgs) do flipped[k] = fmd.image_hflip(img) end end
    for _, v in ipairs(all_sizes) do
      local o = {size = v, score_threshold = lowest, iou = 1, batch_size = opts.batch}
      cands[v] = detect.faces(imgs, o)
      if any_flip then mirrors[v] = detect.faces(flipped, o) end
    end
    for k = 1, #imgs do
      n_scenes = n_scenes + 1
      local per_size, per_mirror = {}, {}
      for _, v in ipairs(all_sizes) do per_size[v], per_mirror[v] = cands[v][k], any_flip and mirrors[v][k] end
      for si, st in ipairs(settings) do score_scene(tallies[si], boxes_of(st, per_size, per_mirror), truths[k], bgs[k]) end
    end
    io.write(("\r%d/%d scenes"):format(n_scenes, opts.scenes)); io.flush()
  end
  print(("\r%d scenes in %.0f s (machine shared: not a timing)"):format(n_scenes, fmd.sys.now() - t0))
  -- the table: one column pair per setting
  local head = ("%-14s %6s"):format("face width px", "faces")
  for _, st in ipairs(settings) do head = head .. ("  %18s"):format(st.name) end
  print(head)
  for i = 1, #BUCKETS - 1 do
    local t1 = tallies[1]
    local line = ("%-14s %6d"):format(("%d-%d"):format(BUCKETS[i], BUCKETS[i + 1] - 1), t1.total[i])
    for _, t in ipairs(tallies) do
      line = line .. ("  %18s"):format(t.total[i] > 0 and ("%d  %.3f"):format(t.found[i], t.found[i] / t.total[i]) or "-")
    end
    print(line)
  end
  local results = {}
  for si, st in ipairs(settings) do
    local t = tallies[si]
    local f, n = recall_48(t)
    local fps = {}
    for k, v in pairs(t.fp_by_bg) do fps[#fps + 1] = ("%s %d"):format(k, v) end
    table.sort(fps)
    print(("%-18s recall for faces >= 48 px %d / %d = %.3f; false positives %d in %d scenes = %.3f per scene (%s); "
      .. "median IoU %.2f"):format(st.name, f, n, f / math.max(1, n), t.fp, n_scenes, t.fp / n_scenes,
      #fps > 0 and table.concat(fps, ", ") or "none", median(t.ious) or 0))
    local rows = {}
    for i = 1, #BUCKETS - 1 do rows[i] = {from = BUCKETS[i], to = BUCKETS[i + 1] - 1, faces = t.total[i], found = t.found[i]} end
    results[si] = {setting = st.name, buckets = rows, recall_48 = f / math.max(1, n), false_positives = t.fp,
                   fp_per_scene = t.fp / n_scenes, fp_by_background = t.fp_by_bg, median_iou = median(t.ious)}
  end
  report.sets[#report.sets + 1] = {set = set, convention = conv, scenes = n_scenes, results = results}
end
if opts.out then json.write_file(opts.out, report) end
