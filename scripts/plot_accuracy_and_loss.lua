-- The course's plot_accuracy_and_loss.py: train/val/test loss and accuracy
-- over epochs of the last run in a training log ->
-- <out-dir>/<dataset>_<model>_losses_plot.png and _accuracies_plot.png
--   fmd scripts/plot_accuracy_and_loss.lua -m SimpleNet -j out/fakes_dataset_SimpleNet_Adam.json -d fakes_dataset
local fmd = require "fmd"
local plot = require "fmd.plot"
local runs = require "fmd.runs"

local opts = runs.parse(arg, {
  name = "scripts/plot_accuracy_and_loss.lua", json = true,
  description = "Loss and accuracy curves of the last run in a training log (scripts/train.lua writes them to out/)",
})
if not fmd.sys.is_file(opts.json) then
  error(("training log %s: no such file (train first, or pass -j PATH)"):format(opts.json), 0)
end
-- checked: lists of numbers in range, one value per epoch in each
local run = require("fmd.trainer").read_log(opts.json)
local epochs = {}
for i = 1, #run.train_loss do epochs[i] = i end
local what = ("%s on %s"):format(tostring(run.model or opts.model), tostring(run.dataset or opts.dataset))
local function curves(kind)
  local s = {}
  for _, part in ipairs{"train", "val", "test"} do
    s[#s + 1] = {x = epochs, y = run[part .. "_" .. kind], style = "linespoints",
                 title = ({train = "Train", val = "Validation", test = "Test"})[part]}
  end
  return s
end
local xtics = math.max(1, #epochs // 10)
local key = "below center horizontal"   -- under the axes: a legend box never hides a curve
local p1 = plot.lines(runs.output_figure(opts, "losses_plot"), curves("loss"),
  {title = "Loss vs. epochs: " .. what, xlabel = "Epoch", ylabel = "Loss (cross-entropy)", xtics = xtics, key = key})
local p2 = plot.lines(runs.output_figure(opts, "accuracies_plot"), curves("acc"),
  {title = "Accuracy vs. epochs: " .. what, xlabel = "Epoch", ylabel = "Accuracy [%]", xtics = xtics, key = key})
print("wrote " .. p1)
print("wrote " .. p2)
