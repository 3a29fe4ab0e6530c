-- The last step of ./run_me.sh: a report that shows every figure with its
-- caption and answers the assignment's questions with numbers computed from
-- the logs (out/*.json), checkpoints and metrics files.
--   fmd scripts/report.lua [--data-root DIR] [--fakes NAME] [--synthetic NAME] [--out-dir figures]
-- writes <out-dir>/report.md (figures linked) and <out-dir>/report.html (one
-- self-contained file, figures embedded).
local fmd = require "fmd"
local cli = require "fmd.cli"
local data = require "fmd.data"
local json = require "fmd.json"
local models = require "fmd.models"
local runs = require "fmd.runs"
local Trainer = require "fmd.trainer"

local opts = cli.parse(arg, runs.flags({
  name = "scripts/report.lua",
  description = "Write <out-dir>/report.html and report.md from out/ and <out-dir>/ (run after the analysis scripts)",
  {"--fakes", default = "fakes_dataset", metavar = "NAME", help = "the face-swap data set"},
  {"--synthetic", default = "synthetic_dataset", metavar = "NAME", help = "the synthetic-faces data set"},
  {"--logs", default = runs.DIRS.logs, metavar = "DIR", help = "training logs and metrics files"},
  {"--quick", type = "boolean", help = "the data and epochs were shrunk (./run_me.sh --quick)"},
  {"--generated", type = "boolean", help = "the data is fmd's generated default (scripts/make_faces.lua)"},
}, "data_root", {"out_dir", help = "where the figures are and the report goes"}))
local root = data.data_root(opts)
local F, S = opts.fakes, opts.synthetic
local course = runs.course(F, S)

------------------------------------------------------------------ reading
-- a file another step wrote, or nil when it is missing or damaged: the
-- report still comes out, and says on stderr what it left out and why
local function left_out(path, why) io.stderr:write(("report: %s %s; left out\n"):format(path, why)) end

local function read_json(path)
  if not fmd.sys.is_file(path) then return nil end
  local ok, v = pcall(json.read_file, path)
  if not ok then left_out(path, ("is not readable JSON (%s)"):format(tostring(v))) end
  return ok and v or nil
end

-- a JSON file whose every field the report uses is checked by
-- check(value, path) (which returns what the report reads)
local function read_checked(path, check)
  local v = read_json(path)
  if v == nil then return nil end
  local ok, r = pcall(check, v, path)
  if not ok then left_out(path, ("is not usable: %s"):format(tostring(r))) end
  return ok and r or nil
end

-- numerical_analysis.lua's metrics file
local function check_metrics(m, path)
  json.field({metrics = m}, "metrics", "table", path)
  for _, k in ipairs{"auc_a", "auc_b", "average_precision", "eer"} do json.field(m, k, "number", path, {min = 0, max = 1}) end
  json.field(m, "eer_threshold", "number", path)
  json.field(m, "accuracy", "number", path, {min = 0, max = 100})
  local cm = json.field(m, "confusion", "table", path)
  for _, k in ipairs{"tn", "fp", "fn", "tp"} do json.field(cm, k, "integer", path .. " confusion", {min = 0}) end
  return m
end

local function metrics_of(ds, model) return read_checked(runs.metrics(ds, model, opts.logs), check_metrics) end

-- bonus_main.lua's metrics file
local function check_bonus(b, path)
  json.field({bonus = b}, "bonus", "table", path)
  json.field(b, "dataset", "string", path)
  json.field(b, "params", "integer", path, {min = 1})
  json.field(b, "test_auc", "number", path, {min = 0, max = 1})
  return b
end

local function counts(ds, part)
  local dir = ("%s/%s/%s"):format(root, ds, part)
  if not fmd.sys.is_dir(dir) then return nil end
  local ok, d = pcall(data.FacesDataset, dir)
  if not ok then return nil end
  return d:counts()
end

-- the last run of a training log, checked (Trainer.read_log)
local function last_run(ds, model) return read_checked(runs.log(ds, model, nil, opts.logs), Trainer.last_run) end

local fig = runs.figure_name
local function has(name) return fmd.sys.is_file(opts.out_dir .. "/" .. name) end
local function pct(x) return x and ("%.2f %%"):format(x) or "n/a" end
local function num(x, f) return x and (f or "%.4f"):format(x) or "n/a" end

------------------------------------------------------------- the document
-- blocks: {h = level, text}, {p = text}, {table = {header, rows}}, {img = name, caption}
local doc = {}
local function H(level, text) doc[#doc + 1] = {h = level, text = text} end
local function P(text) doc[#doc + 1] = {p = text} end
local function T(header, rows) doc[#doc + 1] = {table = {header, rows}} end
local function IMG(name, caption)
  if has(name) then doc[#doc + 1] = {img = name, caption = caption}
  else P(("*(figure %s is missing: its step of ./run_me.sh did not run)*"):format(name)) end
end

-- every course run's log and metrics, read (and checked) once
local run_of, metrics = {}, {}
for _, r in ipairs(course) do
  run_of[r] = last_run(r.dataset, r.model)
  metrics[r] = metrics_of(r.dataset, r.model)
end
local function course_run(ds, model)
  for _, r in ipairs(course) do if r.dataset == ds and r.model == model then return r end end
end

-- what XceptionBased's training started from, as its log records it:
-- the ImageNet weights file fmd.weights found (or --pretrained), or "random"
local x_run = run_of[course_run(S, "XceptionBased")]
local x_init = x_run and x_run.init
local function init_text()
  if not x_run then return "weights not known yet (it has no training log)" end
  if x_init == nil then return "weights its training log does not record (a log written before fmd recorded them)" end
  if x_init == "random" then return "random weights (no ImageNet weights file was found; see docs/getting-started.md)" end
  return "the ImageNet weights in `" .. x_init .. "`"
end

-- the training settings the logs record (the course's where they do not)
local function setting(get)
  for _, r in ipairs(course) do
    local v = run_of[r] and get(run_of[r])
    if v ~= nil then return v end
  end
end
local opt_name = setting(function(l) return l.optimizer and l.optimizer.name end) or runs.COURSE_TRAINING.optimizer
local lr = setting(function(l) return l.optimizer and l.optimizer.params and l.optimizer.params.lr end)
  or runs.COURSE_TRAINING.lr
local batch = setting(function(l) return l.batch_size end) or runs.COURSE_TRAINING.batch_size

H(1, "Facial manipulation detection with fmd: results")
local generated = opts.generated
P(("Data: `%s` (data sets `%s` and `%s`)%s. %sXceptionBased started from %s. Written %s by `fmd scripts/report.lua`.")
  :format(root, F, S,
    generated and ", the default data fmd generates (`scripts/make_faces.lua`, see docs/facegen.md), not the course's face images" or "",
    opts.quick and "**Quick smoke run** (`./run_me.sh --quick`): tiny data and one epoch, so the numbers below say nothing about the models. " or "",
    init_text(),
    os.date("!%Y-%m-%d %H:%M UTC")))

H(2, "1. The data")
local rows = {}
for _, ds in ipairs{F, S} do
  for _, part in ipairs{"train", "val", "test"} do
    local r, f = counts(ds, part)
    if r then rows[#rows + 1] = {ds, part, tostring(r), tostring(f), tostring(r + f),
                                 r > 0 and ("%.3f"):format(f / r) or "n/a"} end
  end
end
T({"data set", "split", "real (0)", "fake (1)", "images", "fake : real"}, rows)
local tr, tf = counts(F, "test")
local sr, sf = counts(S, "test")
if tr and sr then
  P(("The fake:real proportion of the test sets is %d:%d = %.3f for %s and %d:%d = %.3f for %s. Accuracy must be read against it: "
    .. "always answering \"real\" scores %.1f %% on %s and %.1f %% on %s.")
    :format(tf, tr, tf / tr, F, sf, sr, sf / sr, S, 100 * tr / (tr + tf), F, 100 * sr / (sr + sf), S))
end
IMG(runs.plain_figure_name("datasets_samples"), "A real and a fake training image of each data set.")

H(2, "2. Training")
rows = {}
for _, r in ipairs(course) do
  local run = run_of[r]
  if run then
    local b = Trainer.best_epoch(run)
    rows[#rows + 1] = {r.model, r.dataset, tostring(#run.val_acc), tostring(b), pct(run.val_acc[b]), pct(run.test_acc[b]),
                       num(run.test_auc and run.test_auc[b])}
  else
    rows[#rows + 1] = {r.model, r.dataset, "not trained", "", "", "", ""}
  end
end
P(("%s, learning rate %s, batch %d. The checkpoint kept is the one of the epoch with the best validation accuracy; "
  .. "the test accuracy reported is the one of that epoch (the course's question)."):format(opt_name, json.format_number(lr), batch))
T({"model", "data set", "epochs", "best val epoch", "val acc", "test acc at best val", "test AUC (fake logit)"}, rows)
for _, r in ipairs(course) do
  IMG(fig(r.dataset, r.model, "losses_plot"), ("Loss of %s on %s over epochs (train, validation, test)."):format(r.model, r.dataset))
  IMG(fig(r.dataset, r.model, "accuracies_plot"), ("Accuracy of %s on %s over epochs."):format(r.model, r.dataset))
end

H(2, "3. Model sizes")
local n_x = models.get_nof_params(models.load_model("Xception"))
local n_xb = models.get_nof_params(models.load_model("XceptionBased", {pretrained = false}))
local n_s = models.get_nof_params(models.load_model("SimpleNet"))
T({"model", "trainable parameters"}, {
  {"SimpleNet", models.format_count(n_s)}, {"Xception (ImageNet classifier, fc 2048 -> 1000)", models.format_count(n_x)},
  {"XceptionBased (fc replaced by the MLP 2048-1000-256-64-2)", models.format_count(n_xb)},
})
P(("XceptionBased has %s parameters more than Xception: its MLP head has (2048*1000+1000) + (1000*256+256) + (256*64+64) + (64*2+2) = %s "
  .. "parameters where Xception's fc has 2048*1000+1000 = %s.")
  :format(models.format_count(n_xb - n_x), models.format_count(2049000 + 256256 + 16448 + 130), models.format_count(2049000)))

H(2, "4. Scores, ROC and DET curves")
rows = {}
for _, r in ipairs(course) do
  local m = metrics[r]
  if m then
    rows[#rows + 1] = {r.model, r.dataset, num(m.auc_a), num(m.auc_b), num(m.auc_a + m.auc_b), num(m.average_precision),
      num(100 * m.eer, "%.2f %%"), pct(m.accuracy),
      ("%d / %d / %d / %d"):format(m.confusion.tn, m.confusion.fp, m.confusion.fn, m.confusion.tp)}
  end
end
P("Score A is the model's first output (the \"real\" logit), score B its second (the \"fake\" logit); both are ranked against "
  .. "the fake label. AP, EER and the confusion matrix use score B and the argmax prediction.")
T({"model", "data set", "AUC A", "AUC B", "A + B", "AP", "EER", "accuracy", "TN / FP / FN / TP"}, rows)
P("Why the two AUCs mirror each other: the two logits are trained against each other by the softmax cross-entropy, so a "
  .. "high real score goes with a low fake score. When score A ranks the images (close to) exactly in the reverse order of "
  .. "score B, every threshold on A is a threshold on B with the roles of the classes swapped: the ROC curve of A is that of B "
  .. "reflected through the point (0.5, 0.5), and AUC(A) = 1 - AUC(B). (Exactly so for any model whose logits satisfy "
  .. "A = c - B, up to ties; the table shows how close A + B is to 1.) Score A is a good detector of *real* images, read upside down.")
for _, r in ipairs(course) do
  local ds, m = r.dataset, r.model
  IMG(fig(ds, m, "roc_curve"), ("ROC curves of both scores: %s on the %s test split."):format(m, ds))
  IMG(fig(ds, m, "det_curve"), ("DET curves (normal-deviate axes): %s on %s."):format(m, ds))
  IMG(fig(ds, m, "pr_curve"), ("Precision-recall curve of the fake score: %s on %s."):format(m, ds))
end

H(2, "5. What the detectors look at")
for _, r in ipairs(course) do
  if runs.has_analysis(r, "saliency") then
    local ds, m = r.dataset, r.model
    IMG(fig(ds, m, "saliency_maps_and_images_pairs"),
      ("Gradient saliency (|d true-class logit / d pixel|, max over channels) of 36 test images: %s on %s."):format(m, ds))
    IMG(fig(ds, m, "mean_saliency_maps"), ("Mean of the saliency maps (each clipped at its 98th percentile) over the test set, fake vs real: %s on %s.")
      :format(m, ds))
  end
end
for _, r in ipairs(course) do
  local ds, m = r.dataset, r.model
  IMG(fig(ds, m, "Real_Image_grad_cam"), ("Grad-CAM (layer conv3, predicted class) on a real test image: %s on %s."):format(m, ds))
  IMG(fig(ds, m, "Fake_Image_grad_cam"), ("Grad-CAM on a fake test image: %s on %s."):format(m, ds))
end

H(2, "6. The bonus model")
local bonus_path = runs.bonus_metrics(opts.logs)
local bonus = read_checked(bonus_path, check_bonus)
if bonus then
  local brows = {}
  for _, k in ipairs(bonus.__order or {}) do
    local v = bonus[k]
    if type(v) ~= "table" then brows[#brows + 1] = {k, type(v) == "number" and (math.type(v) == "integer" and models.format_count(v) or ("%.4g"):format(v)) or tostring(v)} end
  end
  T({"quantity", "value"}, brows)
  if n_s then
    P(("The bonus model has %s trainable parameters, %.2f %% of SimpleNet's %s.")
      :format(models.format_count(bonus.params), 100 * bonus.params / n_s, models.format_count(n_s)))
  end
  local designs = read_checked(runs.bonus_designs(opts.logs), models.class("bonus").check_designs)
  if designs and #designs > 0 then
    P("Every design trained (scripts/train_bonus.lua; chosen on validation AUC, the test split never read during training):")
    local drows = {}
    for _, d in ipairs(designs) do
      if d.dataset == bonus.dataset then
        drows[#drows + 1] = {d.design .. (d.chosen and " (chosen)" or ""), d.recipe or "course", models.format_count(d.params),
          ("%.1f M"):format(d.macs / 1e6), ("%d / %d"):format(d.best_epoch, d.epochs), ("%.4f"):format(d.val_auc),
          ("%.0f s"):format(d.train_seconds)}
      end
    end
    T({"design", "augmentation", "parameters", "MACs per image", "best epoch", "val AUC", "training time"}, drows)
  end
  local sm = metrics_of(bonus.dataset, "SimpleNet")
  if sm then
    P(("On the same test split SimpleNet scores AUC %.4f: the bonus model's %.4f is %s with %.2f %% of its parameters.")
      :format(sm.auc_b, bonus.test_auc, bonus.test_auc >= sm.auc_b and "as good or better" or "lower", 100 * bonus.params / n_s))
  end
else
  P(("*(%s is missing: the bonus steps did not run)*"):format(bonus_path))
end
IMG(runs.plain_figure_name("bonus_tradeoff"), "Test AUC against trainable parameters (log axis): SimpleNet, XceptionBased and the bonus designs; the chosen one marked.")

H(2, "7. Where this data differs from the course's")
local notes = {}
local function auc_of(ds, model)
  local m = metrics[course_run(ds, model)]
  return m and m.auc_b
end
local s_auc = auc_of(S, "SimpleNet")
if s_auc then
  if s_auc > 0.6 then
    notes[#notes + 1] = ("SimpleNet **does** learn %s here (test AUC %.3f), whereas on the course's synthetic_dataset it stays at "
      .. "chance (accuracy 50 %%, AUC 0.50). The traces of this data are within reach of three 7x7 convolutions."):format(S, s_auc)
  else
    notes[#notes + 1] = ("SimpleNet does not learn %s (test AUC %.3f), as on the course's data (AUC 0.50)."):format(S, s_auc)
  end
end
local f_auc = auc_of(F, "SimpleNet")
if f_auc then
  notes[#notes + 1] = ("SimpleNet on %s reaches a test AUC of %.3f (the course's data: 0.84-0.95, median about 0.91)."):format(F, f_auc)
end
local x_auc = auc_of(S, "XceptionBased")
if x_auc then
  notes[#notes + 1] = ("XceptionBased on %s reaches a test AUC of %.3f (course: 0.995-1.000 from ImageNet weights)%s."):format(S, x_auc,
    x_init == "random" and "; here it started from random weights, which is the main reason for any gap" or "")
end
-- a model whose scores rank well but whose argmax misses: say why, so the
-- two numbers do not read as a contradiction
for _, r in ipairs(course) do
  local m = metrics[r]
  if m and m.auc_b > 0.85 and m.accuracy < 70 then
    notes[#notes + 1] = ("%s on %s ranks the test images well (AUC %.3f) but its argmax accuracy is only %.1f %%: "
      .. "the scores separate the classes but the threshold between the two logits is off (a model a few epochs "
      .. "from random weights is badly calibrated; BatchNorm's running statistics, used in eval mode, are one known cause). "
      .. "The EER threshold (%.3g on the fake logit) is where a usable decision lies."):format(r.model, r.dataset, m.auc_b,
      m.accuracy, m.eer_threshold)
  end
end
if generated then
  local fr, ff = counts(F, "train")
  local sr2, sf2 = counts(S, "train")
  notes[#notes + 1] = ("The default data is generated and smaller than the course's (%d and %d training images instead of 10,800 and 9,446), "
    .. "and its fakes carry traces of known strength (docs/facegen.md): the figures show the method, not the course's numbers.")
    :format((fr or 0) + (ff or 0), (sr2 or 0) + (sf2 or 0))
end
if opts.quick then notes[#notes + 1] = "This was a quick smoke run: one epoch on 64 training images per set." end
for _, n in ipairs(notes) do P(n) end

------------------------------------------------------------------- output
local function md_escape_cell(s) return (tostring(s):gsub("|", "\\|")) end

local function render_md()
  local out = {}
  for _, b in ipairs(doc) do
    if b.h then out[#out + 1] = ("#"):rep(b.h) .. " " .. b.text
    elseif b.p then out[#out + 1] = b.p
    elseif b.table then
      local hdr, rws = b.table[1], b.table[2]
      local lines = {"| " .. table.concat(hdr, " | ") .. " |", "|" .. ("---|"):rep(#hdr)}
      for _, r in ipairs(rws) do
        local cells = {}
        for i = 1, #hdr do cells[i] = md_escape_cell(r[i] or "") end
        lines[#lines + 1] = "| " .. table.concat(cells, " | ") .. " |"
      end
      out[#out + 1] = table.concat(lines, "\n")
    elseif b.img then out[#out + 1] = ("![%s](%s)\n\n*%s*"):format(b.caption, b.img, b.caption) end
  end
  return table.concat(out, "\n\n") .. "\n"
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out, n = {}, #s
  for i = 1, n, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local q1, q2, q3, q4 = v >> 18, (v >> 12) & 63, (v >> 6) & 63, v & 63
    out[#out + 1] = B64:sub(q1 + 1, q1 + 1) .. B64:sub(q2 + 1, q2 + 1)
      .. (b and B64:sub(q3 + 1, q3 + 1) or "=") .. (c and B64:sub(q4 + 1, q4 + 1) or "=")
  end
  return table.concat(out)
end

local function html_escape(s)
  return (tostring(s):gsub("[&<>\"]", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;"}))
end
-- the little markdown the paragraphs use: `code`, **bold**, *italic*
local function inline(s)
  s = html_escape(s)
  s = s:gsub("`([^`]+)`", "<code>%1</code>"):gsub("%*%*(.-)%*%*", "<b>%1</b>"):gsub("%*(.-)%*", "<i>%1</i>")
  return s
end

local function render_html()
  local out = {[[<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fmd report</title>
<style>
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; } th, td { border: 1px solid #bbb; padding: .3em .7em; text-align: left; }
th { background: #eee; } tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: .92em; margin-top: .3em; } code { background: #f2f2f2; padding: 0 .2em; }
</style></head><body>
]]}
  for _, b in ipairs(doc) do
    if b.h then out[#out + 1] = ("<h%d>%s</h%d>"):format(b.h, inline(b.text), b.h)
    elseif b.p then out[#out + 1] = "<p>" .. inline(b.p) .. "</p>"
    elseif b.table then
      local t = {"<table><tr>"}
      for _, h in ipairs(b.table[1]) do t[#t + 1] = "<th>" .. html_escape(h) .. "</th>" end
      t[#t + 1] = "</tr>"
      for _, r in ipairs(b.table[2]) do
        t[#t + 1] = "<tr>"
        for i = 1, #b.table[1] do t[#t + 1] = "<td>" .. html_escape(r[i] or "") .. "</td>" end
        t[#t + 1] = "</tr>"
      end
      t[#t + 1] = "</table>"
      out[#out + 1] = table.concat(t)
    elseif b.img then
      local f = assert(io.open(opts.out_dir .. "/" .. b.img, "rb"))
      local bytes = f:read("a"); f:close()
      out[#out + 1] = ('<figure><img alt="%s" src="data:image/png;base64,%s"><figcaption>%s <span style="color:#999">(%s)</span></figcaption></figure>')
        :format(html_escape(b.caption), base64(bytes), inline(b.caption), html_escape(b.img))
    end
  end
  out[#out + 1] = "</body></html>\n"
  return table.concat(out, "\n")
end

local function write(path, text)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then error(("cannot write %s: %s"):format(path, err), 0) end
  f:write(text); f:close()
  local ok, e = os.rename(tmp, path)
  if not ok then error(("cannot write %s: %s"):format(path, e), 0) end
  print("wrote " .. path)
end

fmd.sys.mkdir(opts.out_dir)
write(runs.report("md", opts.out_dir), render_md())
write(runs.report("html", opts.out_dir), render_html())
