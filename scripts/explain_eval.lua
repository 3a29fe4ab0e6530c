-- Which attribution map should you believe for your detector? Deletion and
-- insertion curves (fmd.explain.faithfulness) of every fmd.explain method
-- on test images of a data set, with a random map as the control:
--   figures/<dataset>_<model>_explain_eval.png   deletion | insertion curves
--   out/<dataset>_<model>_explain_eval.json      curves, areas, time per image
--   fmd scripts/explain_eval.lua -m SimpleNet -cpp checkpoints/fakes_dataset_SimpleNet_Adam.safetensors -d fakes_dataset
local fmd = require "fmd"
local cli = require "fmd.cli"
local json = require "fmd.json"
local plot = require "fmd.plot"
local image = require "fmd.image"
local analysis = require "fmd.analysis"
local runs = require "fmd.runs"
local explain = require "fmd.explain"
local faithfulness = require "fmd.explain.faithfulness"

local opts = runs.parse(arg, {
  name = "scripts/explain_eval.lua", checkpoint = true,
  description = "Deletion and insertion curves of every attribution method on test images",
  {"--n", type = "integer", default = 100, min = 1, help = "test images evaluated (a random sample, --seed)"},
  {"--methods", default = "all", metavar = "LIST",
   help = "comma-separated methods of fmd.explain, and 'random' (the control); all = every method and random"},
  {"--layer", default = "conv3", metavar = "NAME", help = "layer of the CAM methods"},
  {"--baseline", default = "blur", choices = {"blur", "mean"}, help = "what removed pixels become"},
  {"--sigma", type = "number", default = 5, help = "blur baseline: Gaussian sigma in pixels"},
  {"--steps", type = "integer", default = 10, min = 1, help = "curve points - 1 (10: 10 % steps)"},
  {"--target", default = "pred", choices = {"pred", "true", "fake", "real"}, help = "class whose probability is tracked"},
  {"--sg-n", type = "integer", default = 25, min = 1, help = "SmoothGrad: noisy copies"},
  {"--ig-steps", type = "integer", default = 32, min = 1, help = "Integrated Gradients: path steps"},
  {"metrics_dir", help = "where <dataset>_<model>_explain_eval.json is written"},
})

local methods = {}
if opts.methods == "all" then
  for _, m in ipairs(explain.METHODS) do methods[#methods + 1] = m end
  methods[#methods + 1] = "random"
else
  local known = {random = true}
  local names = {"random"}
  for _, m in ipairs(explain.METHODS) do known[m] = true; names[#names + 1] = m end
  for m in opts.methods:gmatch("[^,%s]+") do
    if not known[m] then
      local s = cli.suggest(m, names)
      error(("--methods: unknown method '%s'%s; methods: %s"):format(m, s and (" (did you mean " .. s .. "?)") or "",
        table.concat(names, ", ")), 0)
    end
    methods[#methods + 1] = m
  end
  if #methods == 0 then error("--methods: no method given", 0) end
end

local model = analysis.load_model(opts.model, opts.checkpoint_path)
local ds = analysis.dataset(opts, "test")
local idx = analysis.sample_indices(#ds, opts.n)
table.sort(idx)
local n = #idx

local mopts = {layer = opts.layer, n = opts.sg_n, steps = opts.ig_steps}
local acc = {}
for _, m in ipairs(methods) do acc[m] = {del = {}, ins = {}, dsum = {}, isum = {}, seconds = 0} end
local fractions

local progress = require "fmd.progress"
local bs = opts.batch_size
local nb = (n + bs - 1) // bs
local bar = progress.new{total = nb * #methods, label = "explain_eval", unit = "map"}
local done, maps_done = 0, 0
for b = 1, nb do
  local imgs, labels = {}, {}
  for k = (b - 1) * bs + 1, math.min(b * bs, n) do
    local img, label = ds:get(idx[k])
    imgs[#imgs + 1], labels[#labels + 1] = img, label
  end
  local x = require("fmd.core").stack_batch(imgs, labels)
  local B, H, W = x:size(1), x:size(3), x:size(4)
  -- one target per image for every method: the prediction on the clean image, or a fixed class
  local target
  if opts.target == "pred" then
    local pred = fmd.no_grad(function() return model(x) end):argmax(2):totable()
    target = {}
    for i = 1, B do target[i] = math.tointeger(pred[i]) - 1 end
  elseif opts.target == "true" then
    target = {}
    for i = 1, B do target[i] = math.tointeger(labels[i]) end
  else
    target = opts.target == "fake" and 1 or 0
  end
  for _, m in ipairs(methods) do
    local t0 = fmd.sys.now()
    local maps
    if m == "random" then maps = fmd.rand(B, H, W) else maps = explain[m](model, x, target, mopts) end
    local a = acc[m]
    a.seconds = a.seconds + (fmd.sys.now() - t0)
    local r = faithfulness.evaluate(model, x, maps, {target = target, baseline = opts.baseline, sigma = opts.sigma,
      steps = opts.steps})
    fractions = r.fractions
    for i = 1, B do
      a.del[#a.del + 1], a.ins[#a.ins + 1] = r.deletion_auc[i], r.insertion_auc[i]
      for k = 1, #r.fractions do
        a.dsum[k] = (a.dsum[k] or 0) + r.deletion[i][k]
        a.isum[k] = (a.isum[k] or 0) + r.insertion[i][k]
      end
    end
    done, maps_done = done + 1, maps_done + B
    bar:update(done, maps_done, m)
  end
end
bar:finish()

local function mean_se(v)
  local s = 0
  for _, x in ipairs(v) do s = s + x end
  local mu = s / #v
  local q = 0
  for _, x in ipairs(v) do q = q + (x - mu) ^ 2 end
  return mu, #v > 1 and math.sqrt(q / (#v - 1) / #v) or 0
end

local summary = {}
for _, m in ipairs(methods) do
  local a = acc[m]
  local dm, dse = mean_se(a.del)
  local im, ise = mean_se(a.ins)
  local dc, ic = {}, {}
  for k = 1, #fractions do dc[k], ic[k] = a.dsum[k] / n, a.isum[k] / n end
  summary[m] = {__order = {"deletion_auc", "deletion_auc_se", "insertion_auc", "insertion_auc_se", "difference",
                           "ms_per_image", "deletion", "insertion"},
    deletion_auc = dm, deletion_auc_se = dse, insertion_auc = im, insertion_auc_se = ise, difference = im - dm,
    ms_per_image = 1000 * a.seconds / n, deletion = dc, insertion = ic}
end

-- the table
local what = ("%s on %s test (%d images, %s baseline, target %s)"):format(opts.model, opts.dataset, n, opts.baseline,
  opts.target)
print(what)
print(("%-22s %18s %18s %10s %10s"):format("method", "deletion AUC (low)", "insertion AUC (hi)", "ins - del", "ms/image"))
for _, m in ipairs(methods) do
  local s = summary[m]
  print(("%-22s %11.4f ± %.3f %11.4f ± %.3f %10.4f %10.1f"):format(m, s.deletion_auc, s.deletion_auc_se,
    s.insertion_auc, s.insertion_auc_se, s.difference, s.ms_per_image))
end

-- the figure: deletion and insertion side by side, one colour per method
-- one y range for both panels, from the data: a weak detector's curves
-- stay near 0.5 and would be flat lines on [0, 1]
local ylo, yhi = math.huge, -math.huge
for _, m in ipairs(methods) do
  for _, key in ipairs{"deletion", "insertion"} do
    for _, v in ipairs(summary[m][key]) do ylo, yhi = math.min(ylo, v), math.max(yhi, v) end
  end
end
local pad = math.max(0.02, 0.08 * (yhi - ylo))
ylo, yhi = math.max(0, ylo - pad), math.min(1.02, yhi + pad)
local function panel(path, key, title)
  local series = {}
  for i, m in ipairs(methods) do
    local s = summary[m]
    series[i] = {x = fractions, y = s[key], style = "linespoints",
      title = ("%s (AUC %.3f)"):format(m, s[key .. "_auc"]), dash = m == "random",
      color = m == "random" and "#7f7f7f" or plot.COLORS[(i - 1) % (#plot.COLORS - 1) + 1]}
  end
  -- the x label would sit under the key (in the bottom margin): the titles say what x is
  return plot.lines(path, series, {title = title, ylabel = "P(target class)", xrange = {0, 1}, yrange = {ylo, yhi},
    xtics = 0.1, key = "bmargin center horizontal maxcols 2", size = {760, 680}})
end
local fig = runs.output_figure(opts, "explain_eval")
local tmpdir = os.tmpname()
os.remove(tmpdir)
fmd.sys.mkdir(tmpdir)
local ok, err = pcall(function()
  local d = panel(tmpdir .. "/deletion.png", "deletion", ("Deletion (low = good), %s on %s: x = pixels removed")
    :format(opts.model, opts.dataset))
  local i = panel(tmpdir .. "/insertion.png", "insertion", ("Insertion (high = good), %s baseline: x = pixels revealed")
    :format(opts.baseline))
  fmd.save_image(fig, image.grid({fmd.load_image(d), fmd.load_image(i)}, 2, 0))   -- via fig.tmp + rename
end)
os.execute("rm -rf '" .. tmpdir:gsub("'", "'\\''") .. "'")
if not ok then error(err, 0) end

local order = {}
for i, m in ipairs(methods) do order[i] = m end
summary.__order = order
fmd.sys.mkdir(opts.metrics_dir)
local jpath = runs.result(opts.dataset, opts.model, "explain_eval", opts.metrics_dir)
json.write_file(jpath, {__order = {"model", "dataset", "checkpoint", "n_images", "baseline", "sigma", "steps", "target",
                                   "layer", "smoothgrad_n", "ig_steps", "fractions", "methods"},
  model = opts.model, dataset = opts.dataset, checkpoint = opts.checkpoint_path, n_images = n, baseline = opts.baseline,
  sigma = opts.sigma, steps = opts.steps, target = opts.target, layer = opts.layer, smoothgrad_n = opts.sg_n,
  ig_steps = opts.ig_steps, fractions = fractions, methods = summary}, 2)
print("wrote " .. fig)
print("wrote " .. jpath)
