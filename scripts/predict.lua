-- Real or fake? Scores any images with a trained detector (docs/predict.md):
--   fmd scripts/predict.lua -m SimpleNet -cpp checkpoints/fakes_dataset_SimpleNet_Adam.safetensors face.jpg photos/
-- PATH is an image or a folder (searched recursively for .png/.jpg/.jpeg).
-- Each image is resized and normalised like the test split (the course's
-- test transform) and scored: P(fake) = softmax of the two logits, label
-- fake when P(fake) > --threshold. A file that cannot be read or decoded is
-- reported with the reason and skipped; the exit code is 1 if any failed.
local fmd = require "fmd"
local C = require "fmd.core"
local cli = require "fmd.cli"
local json = require "fmd.json"
local data = require "fmd.data"
local models = require "fmd.models"
local progress = require "fmd.progress"
local transforms = require "fmd.transforms"
local analysis = require "fmd.analysis"
local dist = require "fmd.dist"
local runs = require "fmd.runs"

local NAME = "scripts/predict.lua"
local opts, paths = cli.parse(arg, runs.flags({
  name = NAME .. " PATH...",
  description = "P(fake) of every image in PATH (files, or folders searched recursively for PNG and JPEG)",
  {"--threshold", type = "number", default = 0.5, help = "label fake when P(fake) > threshold"},
  {"--out", metavar = "FILE", help = "also write the table to FILE (.csv or .json)"},
  {"--cam", metavar = "DIR", help = "write an attribution overlay per image to DIR"},
  {"--method", default = "gradcam", metavar = "NAME", help = "attribution method for --cam (any of fmd.explain)"},
  {"--layer", default = "conv3", metavar = "NAME", help = "layer of the CAM methods"},
  {"--target", default = "pred", choices = {"pred", "fake", "real"}, help = "class explained by --cam"},
  {"--force", type = "boolean", help = "replace an existing --out file or overlays"},
}, {"model", help = "model name (" .. table.concat(models.names(), ", ") .. ")"},
   {"checkpoint", help = "checkpoint written by scripts/train.lua (required)"},
   {"batch_size", help = "images per forward pass"}, "workers", "threads"))

local function die(msg) error(("predict: %s"):format(msg), 0) end

if #paths == 0 then die("no image or folder given (usage: fmd " .. NAME .. " -m MODEL -cpp CKPT PATH...)") end
if not opts.checkpoint_path then die("-cpp CKPT is required (a checkpoint written by scripts/train.lua)") end
if opts.threshold < 0 or opts.threshold > 1 then die(("--threshold must be in [0, 1], got %g"):format(opts.threshold)) end
local out_kind
if opts.out then
  out_kind = opts.out:lower():match("%.(csv)$") or opts.out:lower():match("%.(json)$")
  if not out_kind then die(("--out %s: the name must end in .csv or .json"):format(opts.out)) end
  if fmd.sys.is_file(opts.out) and not opts.force then
    die(("--out %s exists (pass --force to replace it)"):format(opts.out))
  end
end
local explain, method
if opts.cam then
  explain = require "fmd.explain"
  method = explain[opts.method]
  local known = false
  for _, m in ipairs(explain.METHODS) do known = known or m == opts.method end
  if not known then
    local s = cli.suggest(opts.method, explain.METHODS)
    die(("--method: unknown attribution method '%s'%s; methods: %s"):format(opts.method,
      s and (" (did you mean " .. s .. "?)") or "", table.concat(explain.METHODS, ", ")))
  end
  if fmd.sys.is_file(opts.cam) then die(("--cam %s is a file, expected a folder"):format(opts.cam)) end
end
runs.apply_common(opts)

---------------------------------------------------------------- the files

-- files: {path =, name = overlay name relative to --cam}; failed: {path, reason}
local files, failed, ignored = {}, {}, 0
local IMAGE_EXT = {png = true, jpg = true, jpeg = true}

local function join(a, b) return a:sub(-1) == "/" and a .. b or a .. "/" .. b end

local function walk(dir, rel, depth)
  if depth > 64 then failed[#failed + 1] = {dir, "folders nested more than 64 deep (a link loop?)"}; return end
  local ok, names = pcall(C.sys.listdir, dir)
  if not ok then failed[#failed + 1] = {dir, tostring(names):gsub("^cannot list folder '.-': ", "cannot list: ")}; return end
  for _, name in ipairs(names) do
    if name:sub(1, 1) ~= "." then   -- .DS_Store, .git ...
      local p, r = join(dir, name), rel == "" and name or rel .. "/" .. name
      if C.sys.is_dir(p) then walk(p, r, depth + 1)
      elseif IMAGE_EXT[(name:match("%.([^.]+)$") or ""):lower()] then files[#files + 1] = {path = p, name = r}
      else ignored = ignored + 1 end
    end
  end
end

for _, p in ipairs(paths) do
  if C.sys.is_dir(p) then
    walk(p, "", 1)
  elseif C.sys.is_file(p) then
    files[#files + 1] = {path = p, name = p:match("([^/]+)$")}   -- named explicitly: tried whatever its name
  else
    -- os.rename(p, p) succeeds on anything that exists, without opening it
    failed[#failed + 1] = {p, os.rename(p, p) and "is not a regular file (a pipe, socket or device?)"
                              or "no such file or folder"}
  end
end

if #files == 0 and #failed == 0 then
  die(("no .png, .jpg or .jpeg files in %s"):format(table.concat(paths, ", ")))
end

-- a quick look at the first bytes: not an image (or unreadable) fails here
local good = {}
for _, f in ipairs(files) do
  local fmt, why = C.image_format(f.path)
  if fmt then good[#good + 1] = f else failed[#failed + 1] = {f.path, why} end
end

-- overlay names: <name without extension>_<method>.png under --cam, unique
if opts.cam then
  local used = {}
  for _, f in ipairs(good) do
    local base = f.name:gsub("%.[^./]+$", "") .. "_" .. opts.method
    local n, cand = 1, base .. ".png"
    while used[cand] do n = n + 1; cand = ("%s_%d.png"):format(base, n) end
    used[cand] = true
    f.cam = join(opts.cam, cand)
    if fmd.sys.is_file(f.cam) and not opts.force then
      die(("--cam: %s exists (pass --force to replace overlays)"):format(f.cam))
    end
  end
end

---------------------------------------------------------------- scoring

local model = analysis.load_model(opts.model, opts.checkpoint_path)
local input = models.input(opts.model)
local tf = transforms.course("test", input)
if opts.cam and opts.method:find("cam$") then   -- a wrong layer fails now, not after the first batch
  local ok, err = pcall(require("fmd.explain.util").find_layer, opts.method, model, opts.layer)
  if not ok then die(("--layer: %s"):format(tostring(err):gsub("^explain%.%w+: ", ""))) end
end
local rows = {}   -- per good file: {logit_real, logit_fake, p_fake}

local function write_overlays(batch_files, images)
  local image = require "fmd.image"
  local target = opts.target == "pred" and "pred" or (opts.target == "fake" and 1 or 0)
  local maps = method(model, images, target, {layer = opts.layer})
  maps = explain.clip_percentile(maps)
  for i, f in ipairs(batch_files) do
    local shown = analysis.denormalize(images[i], input)
    local over = image.blend(image.colormap(maps[i], "jet"), shown, 0.5)
    local dir = f.cam:match("^(.*)/[^/]*$")
    if dir then fmd.sys.mkdir(dir) end
    fmd.save_image(f.cam, image.grid({shown, over}, 2))   -- written to .tmp and renamed
  end
end

-- scores one batch of good files (positions first..last) from images (B,3,H,W)
local function score(first, images)
  local logits = fmd.no_grad(function() return model(images) end)
  local B = images:size(1)
  if logits:dim() ~= 2 or logits:size(1) ~= B or logits:size(2) ~= 2 then
    die(("model output is %s, expected [%d x 2] (real and fake logits)"):format(fmd.shape_str(logits), B))
  end
  local p = fmd.softmax(logits, 2):totable()
  local l = logits:totable()
  local batch_files = {}
  for i = 1, B do
    rows[first + i - 1] = {l[i][1], l[i][2], p[i][2]}
    batch_files[i] = good[first + i - 1]
  end
  if opts.cam then write_overlays(batch_files, images) end
end

local bs = opts.batch_size
local lo, hi = dist.shard_range(#good, bs)   -- this process's files: all of them, or its shard under mpirun
local nbatches = (hi - lo + bs) // bs
local bar = progress.new{total = nbatches, label = "predict", unit = "img"}
local t0 = fmd.sys.now()
local pos, done_batches = lo, 0   -- next unscored position in good
local bad_at = {}
while pos <= hi do
  -- the threaded loader over good[pos..hi]; labels carry the position, so a
  -- batch is matched to its files
  local sub, lab = {}, {}
  for k = pos, hi do sub[#sub + 1] = good[k].path; lab[#lab + 1] = k end
  local loader = C.Loader(sub, lab, tf.ops, {batch_size = bs, num_workers = opts.workers, prefetch = 2})
  loader:start(1)
  local failed_batch = false
  while true do
    local ok, images, labels = pcall(loader.next, loader)
    if not ok then failed_batch = true; break end
    if not images then break end
    local first = math.tointeger(labels[1])
    score(first, images)
    pos = first + images:size(1)
    done_batches = done_batches + 1
    bar:update(done_batches, pos - lo)
  end
  loader:stop()
  loader:free()
  if not failed_batch then break end
  -- one file of good[pos .. pos+bs-1] failed to decode: load those one by
  -- one, score the good ones, report the others, and go on after them
  local imgs, firsts = {}, {}
  local last = math.min(pos + bs - 1, hi)
  local function flush()
    if #imgs > 0 then
      local images = C.stack_batch(imgs, firsts)
      -- consecutive runs only: score() fills rows[first ...]
      score(firsts[1], images)
      imgs, firsts = {}, {}
    end
  end
  for k = pos, last do
    local ok, img = pcall(function() return tf(data.load_image(good[k].path)) end)
    if ok then
      imgs[#imgs + 1], firsts[#firsts + 1] = img, k
    else
      flush()
      bad_at[k] = tostring(img):gsub("^image '.-': ", "")
    end
  end
  flush()
  pos = last + 1
  done_batches = done_batches + 1
  bar:update(done_batches, pos - lo)
end
bar:finish()
local elapsed = fmd.sys.now() - t0
rows, bad_at = dist.gather_range(rows, lo, hi), dist.gather_range(bad_at, lo, hi)
if not dist.is_root() then return end   -- under mpirun: rank 0 has every row and writes

---------------------------------------------------------------- results

local results = {}
for k, f in ipairs(good) do
  if bad_at[k] then
    failed[#failed + 1] = {f.path, bad_at[k]}
  else
    local r = rows[k]
    results[#results + 1] = {file = f.path, logit_real = r[1], logit_fake = r[2], p_fake = r[3],
      label = r[3] > opts.threshold and "fake" or "real", cam = f.cam}
  end
end

local width = 4
for _, r in ipairs(results) do width = math.max(width, #r.file) end
width = math.min(width, 80)
if #results > 0 then
  print(("%-" .. width .. "s  %7s  %s"):format("file", "P(fake)", "label"))
  for _, r in ipairs(results) do print(("%-" .. width .. "s  %7.4f  %s"):format(r.file, r.p_fake, r.label)) end
end
for _, f in ipairs(failed) do io.stderr:write(("predict: skipped %s: %s\n"):format(f[1], f[2])) end

local function csv_field(s)
  s = tostring(s)
  if s:find('[,"\r\n]') then return '"' .. s:gsub('"', '""') .. '"' end
  return s
end

if opts.out then
  local dir = opts.out:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then fmd.sys.mkdir(dir) end
  if out_kind == "json" then
    local list = {}
    for i, r in ipairs(results) do
      list[i] = {__order = {"file", "p_fake", "label", "logit_real", "logit_fake", "cam"}, file = r.file,
        p_fake = r.p_fake, label = r.label, logit_real = r.logit_real, logit_fake = r.logit_fake, cam = r.cam}
    end
    local fl = {}
    for i, f in ipairs(failed) do fl[i] = {__order = {"file", "error"}, file = f[1], error = f[2]} end
    json.write_file(opts.out, {__order = {"model", "checkpoint", "threshold", "n_scored", "n_failed", "results", "failed"},
      model = opts.model, checkpoint = opts.checkpoint_path, threshold = opts.threshold,
      n_scored = #results, n_failed = #failed, results = list, failed = fl}, 2)
  else
    local tmp = opts.out .. ".tmp"
    local f, err = io.open(tmp, "w")
    if not f then die(("cannot write %s: %s"):format(tmp, err)) end
    f:write("file,p_fake,label,logit_real,logit_fake,error\n")
    for _, r in ipairs(results) do
      f:write(("%s,%.9g,%s,%.9g,%.9g,\n"):format(csv_field(r.file), r.p_fake, r.label, r.logit_real, r.logit_fake))
    end
    for _, e in ipairs(failed) do f:write(("%s,,,,,%s\n"):format(csv_field(e[1]), csv_field(e[2]))) end
    local okw, werr = f:close()
    if not okw then os.remove(tmp); die(("cannot write %s: %s"):format(tmp, tostring(werr))) end
    local okr, rerr = os.rename(tmp, opts.out)
    if not okr then os.remove(tmp); die(("cannot write %s: %s"):format(opts.out, tostring(rerr))) end
  end
end

local nfake = 0
for _, r in ipairs(results) do if r.label == "fake" then nfake = nfake + 1 end end
print(("%d image%s scored (%d fake, %d real at threshold %g), %d failed%s%s; %.1f images/s")
  :format(#results, #results == 1 and "" or "s", nfake, #results - nfake, opts.threshold, #failed,
    ignored > 0 and (", " .. ignored .. " other files ignored (not .png/.jpg/.jpeg)") or "",
    opts.cam and (", overlays in " .. opts.cam) or "", #results / math.max(elapsed, 1e-9)))
if opts.out then print("wrote " .. opts.out) end
io.stdout:flush()
if #failed > 0 then os.exit(1) end
