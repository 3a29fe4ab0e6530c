-- The course's saliency_map.py: gradient saliency (|d true-class logit /
-- d pixel|, max over colour channels) of test images. Each map is shown
-- scaled by explain.clip_percentile (its min -> 0, its 98th percentile -> 1):
-- min-max would let one hot pixel turn the rest of the map black.
--   <out-dir>/<dataset>_<model>_saliency_maps_and_images_pairs.png  36 test images beside their maps
--   <out-dir>/<dataset>_<model>_mean_saliency_maps.png              mean of the scaled maps, fake vs real
--   fmd scripts/saliency_map.lua -m SimpleNet -cpp checkpoints/fakes_dataset_SimpleNet_Adam.safetensors -d fakes_dataset
local fmd = require "fmd"
local data = require "fmd.data"
local explain = require "fmd.explain"
local plot = require "fmd.plot"
local image = require "fmd.image"
local progress = require "fmd.progress"
local analysis = require "fmd.analysis"
local runs = require "fmd.runs"

local opts = runs.parse(arg, {
  name = "scripts/saliency_map.lua", checkpoint = true,
  description = "Gradient saliency maps of test images (pairs figure and class means)",
  {"--pairs", type = "integer", default = 36, min = 1, help = "images in the pairs figure"},
  {"--limit", type = "integer", min = 1, help = "use at most this many test images for the mean maps"},
})
local model = analysis.load_model(opts.model, opts.checkpoint_path)
local ds = analysis.dataset(opts, "test")

local clipped = ("clipped at %dth percentile"):format(explain.DISPLAY_PERCENTILE)

-- figure 1: random test images, each beside its map scaled for display
local idx = analysis.sample_indices(#ds, opts.pairs)
local imgs, labs = {}, {}
for i, k in ipairs(idx) do imgs[i], labs[i] = ds:get(k) end
local samples, true_labels = fmd.stack_batch(imgs, labs)
local maps = explain.clip_percentile(explain.compute_gradient_saliency_maps(samples, true_labels, model))
local panels = {}
for i = 1, #idx do
  local cls = labs[i] == 1 and "fake" or "real"
  panels[#panels + 1] = {image = analysis.denormalize(samples[i], ds.input), title = cls}
  panels[#panels + 1] = {image = maps[i], title = "saliency"}
end
local cols = math.min(12, 2 * #idx)
local p1 = plot.images(runs.output_figure(opts, "saliency_maps_and_images_pairs"), panels, {cols = cols,
  panel_size = 160, colorbar = {label = "normalised |gradient|", map = "gray"},
  title = ("Gradient saliency of %s on %s test images (image, then its map: |grad|, %s)"):format(opts.model,
    opts.dataset, clipped)})
print("wrote " .. p1)

-- figure 2: the mean of the per-image scaled maps over the test set, per class
local n = math.min(#ds, opts.limit or #ds)
local sums, counts = {}, {[0] = 0, [1] = 0}
local dl = data.DataLoader(ds, {batch_size = opts.batch_size, num_workers = 2})
local bar = progress.new{total = math.ceil(n / opts.batch_size), label = "saliency", unit = "img"}
local done, b = 0, 0
for images, labels in dl:iter(1) do
  if done >= n then break end
  b = b + 1
  local m = explain.clip_percentile(explain.compute_gradient_saliency_maps(images, labels, model))
  for i = 1, labels:numel() do
    if done >= n then break end
    local c = math.tointeger(labels[i])
    sums[c] = sums[c] and (sums[c] + m[i]) or m[i]:clone()
    counts[c] = counts[c] + 1
    done = done + 1
  end
  bar:update(b, done)
end
dl:stop()
bar:finish()
local mean_panels = {}
for _, c in ipairs{1, 0} do
  if counts[c] == 0 then
    error(("the test split of %s has no %s images: no mean map for that class"):format(opts.dataset, c == 1 and "fake" or "real"), 0)
  end
  local mean = sums[c] / counts[c]
  mean_panels[#mean_panels + 1] = {image = image.colormap(explain.clip_percentile(mean), "jet"),
    title = ("%s images (mean of %d maps)"):format(c == 1 and "Fake" or "Real", counts[c])}
end
local p2 = plot.images(runs.output_figure(opts, "mean_saliency_maps"), mean_panels, {cols = 2, panel_size = 320,
  colorbar = {label = "mean normalised |gradient|", map = "jet"},
  title = ("Mean gradient saliency: %s on %s test (|grad|, %s)"):format(opts.model, opts.dataset, clipped)})
print("wrote " .. p2)
