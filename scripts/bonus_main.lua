-- Evaluate the bonus model the way the course's bonus_main did, on the test
-- split of the deepfake data set: test AUC of the fake score, accuracy,
-- trainable parameters, plus forward MACs/FLOPs per image and single-image
-- CPU latency. Writes out/bonus_metrics.json and figures/bonus_tradeoff.png
-- (AUC against parameters for SimpleNet, XceptionBased and every bonus
-- design trained, from out/bonus_designs.json).
--
--   fmd scripts/bonus_main.lua --data-root ../shared/data -d deepfake_dev
local fmd = require "fmd"
local cli = require "fmd.cli"
local models = require "fmd.models"
local runs = require "fmd.runs"

local opts = runs.apply_common(cli.parse(arg, runs.flags({
  name = "scripts/bonus_main.lua",
  description = ("Evaluate %s on <data-root>/<dataset>/test; write %s and %s."):format(runs.bonus_checkpoint(),
    runs.bonus_metrics(), runs.plain_figure("bonus_tradeoff")),
  {"--latency-runs", type = "integer", default = 30, min = 1, help = "timed single-image forwards (median reported)"},
}, "dataset", "data_root", {"checkpoint", default = runs.bonus_checkpoint(), help = "bonus checkpoint"},
   {"out_dir", help = "where the figure is written"}, "threads")))

local json = require "fmd.json"
local plot = require "fmd.plot"
local analysis = require "fmd.analysis"

local Bonus = models.class("bonus")
local model = Bonus.my_bonus_model(opts.checkpoint_path)
local ds = analysis.dataset(opts, "test")
-- the same metrics as numerical_analysis.lua (AUC of the fake logit, argmax accuracy)
local ev = analysis.evaluate(model, ds, "the test split of " .. opts.dataset, {label = "test"})
local r, auc, acc = ev.scores, ev.auc_b, ev.accuracy
local nparams = models.get_nof_params(model)
local macs = models.count_macs(model, {1, 3, 256, 256})

-- single-image latency: median of timed eval forwards after warm-up
local x = fmd.stack_batch({(ds:get(1))}, {0})
local times = {}
fmd.no_grad(function()
  for _ = 1, 3 do model(x) end
  for i = 1, opts.latency_runs do
    local t0 = fmd.sys.now()
    model(x)
    times[i] = fmd.sys.now() - t0
  end
end)
table.sort(times)
local latency = times[(#times + 1) // 2]

print(("bonus model (%s) on %s test (%d images): AUC %.4f, accuracy %.2f %%"):format(model.design_name,
  opts.dataset, #r.labels, auc, acc))
print(("%s trainable parameters, %.1f M MACs (%.1f M FLOPs) per 256x256 image, latency %.1f ms (batch 1, %d threads)")
  :format(models.format_count(nparams), macs / 1e6, 2 * macs / 1e6, 1000 * latency, fmd.get_num_threads()))

local metrics_path = runs.bonus_metrics()
fmd.sys.mkdir(runs.DIRS.logs)
json.write_file(metrics_path, {
  __order = {"dataset", "design", "checkpoint", "test_images", "test_auc", "test_acc", "params", "macs", "flops",
             "latency_ms", "threads"},
  dataset = opts.dataset, design = model.design_name, checkpoint = opts.checkpoint_path, test_images = #r.labels,
  test_auc = auc, test_acc = acc, params = nparams, macs = macs, flops = 2 * macs, latency_ms = 1000 * latency,
  threads = fmd.get_num_threads()})
print("wrote " .. metrics_path)

-- the trade-off figure: x = parameters (log), y = AUC
local series = {}
local designs = {x = {}, y = {}, title = "bonus designs (val AUC)", style = "points", pt = 6, ps = 1.6}
local labels = {}
for _, row in ipairs(Bonus.read_designs(runs.bonus_designs())) do
  if row.dataset == opts.dataset then
    designs.x[#designs.x + 1], designs.y[#designs.y + 1] = row.params, row.val_auc
    -- designs of one size (one design, other recipes or epochs) get their
    -- labels on alternate sides of the point so they do not overprint
    local same = 0
    for _, l in ipairs(labels) do if l.x == row.params then same = same + 1 end end
    labels[#labels + 1] = {x = row.params, y = row.val_auc,
      label = ("%s%s, %d ep"):format(row.design, (row.recipe or "course") == "course" and "" or (" + " .. row.recipe),
        row.epochs),
      offset = same % 2 == 0 and "1.2,0.3" or "-1.2,0.3", align = same % 2 == 0 and "left" or "right"}
  end
end
if #designs.x > 0 then series[#series + 1] = designs end
-- the course models on the same data set: test AUC at their best val epoch
local baselines = {x = {}, y = {}, title = "course models (test AUC)", style = "points", pt = 5, ps = 1.6,
                   color = "#444444"}
local Trainer = require "fmd.trainer"
for _, name in ipairs{"SimpleNet", "XceptionBased"} do
  local log_path = runs.log(opts.dataset, name)
  if fmd.sys.is_file(log_path) then
    local L = Trainer.read_log(log_path)   -- checked: lists of numbers in range
    if L.test_auc then
      local best = Trainer.best_epoch(L)
      local p = models.get_nof_params(models.load_model(name, {pretrained = false}))
      baselines.x[#baselines.x + 1], baselines.y[#baselines.y + 1] = p, L.test_auc[best]
      labels[#labels + 1] = {x = p, y = L.test_auc[best], label = name}
    end
  end
end
if #baselines.x > 0 then series[#series + 1] = baselines end
series[#series + 1] = {x = {nparams}, y = {auc}, title = ("chosen: %s (test AUC %.3f)"):format(model.design_name, auc),
                       style = "points", pt = 7, ps = 2.4, color = "#d62728"}
-- x: a decade's margin; y: the AUCs with a margin, in steps of 0.05
local lo, hi, ylo, yhi = 1e9, 0, 1, 0
for _, s in ipairs(series) do
  for i, v in ipairs(s.x) do
    lo, hi = math.min(lo, v), math.max(hi, v)
    ylo, yhi = math.min(ylo, s.y[i]), math.max(yhi, s.y[i])
  end
end
ylo, yhi = math.max(0, math.floor((ylo - 0.04) * 20) / 20), math.min(1, math.ceil((yhi + 0.04) * 20) / 20)
local tics = {}
for e = 2, 9 do
  local v = 10 ^ e
  if v >= lo / 12 and v <= hi * 3 then
    tics[#tics + 1] = {({"100", "1k", "10k", "100k", "1M", "10M", "100M", "1G"})[e - 1], v}
  end
end
fmd.sys.mkdir(opts.out_dir)
local path = plot.lines(runs.plain_figure("bonus_tradeoff", opts.out_dir), series,
  {title = ("ROC AUC against size on %s"):format(opts.dataset),   -- the legend says which AUC is which
           xlabel = "trainable parameters (log scale)",
           ylabel = "ROC AUC (fake score)", logx = true, xrange = {lo / 12, hi * 3}, yrange = {ylo, yhi}, xtics = tics,   -- x: room on the left for labels
           key = "bottom right", labels = labels})
print("wrote " .. path)
