-- The course's numerical_analysis.py, on the test split: score A = the
-- "real" logit (output column 1), score B = the "fake" logit (column 2).
-- ROC curves of both with their AUCs, DET curves, a precision-recall curve,
-- and the numbers -> out/<dataset>_<model>_metrics.json
--   fmd scripts/numerical_analysis.lua -m SimpleNet -cpp checkpoints/fakes_dataset_SimpleNet_Adam.safetensors -d fakes_dataset
local fmd = require "fmd"
local json = require "fmd.json"
local metrics = require "fmd.metrics"
local plot = require "fmd.plot"
local analysis = require "fmd.analysis"
local dist = require "fmd.dist"
local runs = require "fmd.runs"

local opts = runs.parse(arg, {
  name = "scripts/numerical_analysis.lua", checkpoint = true,
  description = "ROC, DET and PR curves and detection metrics of a checkpoint on the test split",
  {"metrics_dir", help = "where <dataset>_<model>_metrics.json is written"},
})
local model = analysis.load_model(opts.model, opts.checkpoint_path)
local ds = analysis.dataset(opts, "test")
local ev = analysis.evaluate(model, ds, "the test split of " .. opts.dataset, {batch_size = opts.batch_size})
if not dist.is_root() then return end   -- under mpirun: rank 0 has every score and writes
local r, y = ev.scores, ev.scores.labels
local nreal, nfake = ev.n_real, ev.n_fake
local auc_a, auc_b, ap, eer, eer_thr = ev.auc_a, ev.auc_b, ev.average_precision, ev.eer, ev.eer_threshold
local cm, acc = ev.confusion, ev.accuracy / 100

-- as the course asks: both scores against the fake label
local fpr_a, tpr_a = metrics.roc_curve(y, r.a)
local fpr_b, tpr_b = metrics.roc_curve(y, r.b)
local dfpr_a, dfnr_a = metrics.det_curve(y, r.a)
local dfpr_b, dfnr_b = metrics.det_curve(y, r.b)
local prec, rec = metrics.precision_recall_curve(y, r.b)

local what = ("%s on %s test"):format(opts.model, opts.dataset)
local roc = plot.roc(runs.output_figure(opts, "roc_curve"), {
  {fpr = fpr_a, tpr = tpr_a, title = ("Score A (real logit), AUC = %.4f"):format(auc_a)},
  {fpr = fpr_b, tpr = tpr_b, title = ("Score B (fake logit), AUC = %.4f"):format(auc_b)},
}, {title = ("ROC: %s (AUC A %.3f, AUC B %.3f)"):format(what, auc_a, auc_b)})
local det = plot.det(runs.output_figure(opts, "det_curve"), {
  {fpr = dfpr_a, fnr = dfnr_a, title = "Score A (real logit)"},
  {fpr = dfpr_b, fnr = dfnr_b, title = ("Score B (fake logit), EER = %.2f%%"):format(100 * eer)},
}, {title = "DET: " .. what})
local pr = plot.pr(runs.output_figure(opts, "pr_curve"), {
  {recall = rec, precision = prec, title = ("Score B (fake logit), AP = %.4f"):format(ap)},
}, {title = "Precision-recall (fake = positive): " .. what, baseline = nfake / (nreal + nfake)})

local out = {__order = {"model", "dataset", "checkpoint", "n_real", "n_fake", "fake_to_real", "auc_a", "auc_b",
                        "average_precision", "eer", "eer_threshold", "accuracy", "confusion"},
  model = opts.model, dataset = opts.dataset, checkpoint = opts.checkpoint_path,
  n_real = nreal, n_fake = nfake, fake_to_real = nfake / nreal,
  auc_a = auc_a, auc_b = auc_b, average_precision = ap, eer = eer, eer_threshold = eer_thr,
  accuracy = ev.accuracy, confusion = cm,
}
fmd.sys.mkdir(opts.metrics_dir)
local jpath = runs.metrics(opts.dataset, opts.model, opts.metrics_dir)
json.write_file(jpath, out, 2)

print(("%s: %d real, %d fake (fake:real = %.3f)"):format(what, nreal, nfake, nfake / nreal))
print(("AUC score A (real logit) %.4f | AUC score B (fake logit) %.4f | A + B = %.4f"):format(auc_a, auc_b, auc_a + auc_b))
print(("AP %.4f | EER %.2f%% (threshold %.4g) | accuracy at argmax %.2f%%"):format(ap, 100 * eer, eer_thr, 100 * acc))
print(("confusion (rows true real/fake, cols predicted real/fake): [[%d %d] [%d %d]]"):format(cm.tn, cm.fp, cm.fn, cm.tp))
for _, p in ipairs{roc, det, pr, jpath} do print("wrote " .. p) end
