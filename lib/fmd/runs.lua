-- The layout of runs: what a training run is called, where each of its
-- artefacts goes, the course's three trainings and the analyses each gets,
-- and the command-line flags every script shares. Decided here only: the
-- trainer, every script and run_me.sh (through `build/fmd -e`) ask.
--
--   local runs = require "fmd.runs"
--   runs.name("fakes_dataset", "SimpleNet")              --> fakes_dataset_SimpleNet_Adam
--   runs.checkpoint("fakes_dataset", "SimpleNet")        --> checkpoints/fakes_dataset_SimpleNet_Adam.safetensors
--   runs.checkpoint(ds, model, "SGD", "last")            --> checkpoints/<ds>_<model>_SGD.last.safetensors
--   runs.log(ds, model)                                  --> out/<ds>_<model>_Adam.json
--   runs.metrics(ds, model)                              --> out/<ds>_<model>_metrics.json
--   runs.figure(ds, model, "roc_curve")                  --> figures/<ds>_<model>_roc_curve.png
--   local opts = cli.parse(arg, runs.flags({name = ..., {"--lr", ...}}, "model", "data_root", "threads"))
--   runs.apply_common(opts)                              -- --threads and --seed take effect
--
-- Every path function takes an optional last argument, the folder, for a
-- run kept elsewhere (tests, --out-dir, --logs); without it the folder is
-- runs.DIRS' (relative to the working directory, as the scripts run).
local runs = {}

runs.DIRS = {checkpoints = "checkpoints", logs = "out", figures = "figures"}
-- the optimizer a run name assumes when none is given: the course's
runs.OPTIMIZER = "Adam"
-- the course's training settings (run_me.sh passes them to train.lua)
runs.COURSE_TRAINING = {optimizer = "Adam", lr = 0.001, batch_size = 32}

local function dir_of(kind, dir) return dir or runs.DIRS[kind] end

------------------------------------------------------------ a run's files

-- "<dataset>_<model>_<optimizer>"
function runs.name(ds, model, opt)
  if type(ds) ~= "string" or ds == "" or type(model) ~= "string" or model == "" then
    error(("runs: a run needs a data set and a model name, got %s and %s"):format(tostring(ds), tostring(model)), 2)
  end
  return ("%s_%s_%s"):format(ds, model, opt or runs.OPTIMIZER)
end

local CHECKPOINT_SUFFIX = {best = ".safetensors", last = ".last.safetensors", prev = ".prev.safetensors"}

-- which: "best" (default; the epoch of best validation accuracy, what the
-- analyses read), "last" (the resumable state after the last epoch) or
-- "prev" (an earlier run's best, kept when a new run replaces it)
function runs.checkpoint(ds, model, opt, which, dir)
  local suffix = CHECKPOINT_SUFFIX[which or "best"]
  if not suffix then error(("runs.checkpoint: which must be best, last or prev, got %s"):format(tostring(which)), 2) end
  return ("%s/%s%s"):format(dir_of("checkpoints", dir), runs.name(ds, model, opt), suffix)
end

-- the training log: a JSON list of runs, the latest last
function runs.log(ds, model, opt, dir)
  return ("%s/%s.json"):format(dir_of("logs", dir), runs.name(ds, model, opt))
end

-- the lock that keeps two trainings of one run apart
function runs.lock(ds, model, opt, dir)
  return ("%s/%s.lock"):format(dir_of("logs", dir), runs.name(ds, model, opt))
end

-- a result of an analysis of the model's checkpoint: out/<ds>_<model>_<what>.json
function runs.result(ds, model, what, dir)
  return ("%s/%s_%s_%s.json"):format(dir_of("logs", dir), ds, model, what)
end

-- the detection metrics on the test split (scripts/numerical_analysis.lua)
function runs.metrics(ds, model, dir) return runs.result(ds, model, "metrics", dir) end

-- the file name of a figure of a model on a data set: <ds>_<model>_<what>.png
function runs.figure_name(ds, model, what) return ("%s_%s_%s.png"):format(ds, model, what) end

-- figures/<ds>_<model>_<what>.png
function runs.figure(ds, model, what, dir)
  return dir_of("figures", dir) .. "/" .. runs.figure_name(ds, model, what)
end

-- a figure of no single run: <what>.png (datasets_samples, bonus_tradeoff)
-- in figures/
function runs.plain_figure_name(what) return what .. ".png" end
function runs.plain_figure(what, dir) return dir_of("figures", dir) .. "/" .. runs.plain_figure_name(what) end

-- the report: figures/report.<ext> (html or md)
function runs.report(ext, dir) return ("%s/report.%s"):format(dir_of("figures", dir), ext) end

-- scripts/evaluate.lua's table of one model on several data sets
function runs.evaluation(model, dir) return ("%s/evaluate_%s.json"):format(dir_of("logs", dir), model) end

--------------------------------------------------------- the bonus model

-- the chosen bonus design's checkpoint (checkpoints/bonus.safetensors), or
-- with a design and recipe that one's (checkpoints/bonus_<design>_<recipe>.safetensors)
function runs.bonus_checkpoint(design, recipe, dir)
  if design == nil then return dir_of("checkpoints", dir) .. "/bonus.safetensors" end
  return ("%s/bonus_%s_%s.safetensors"):format(dir_of("checkpoints", dir), design, recipe)
end

-- the per-epoch log of one bonus training (the course recipe has no suffix)
function runs.bonus_log(ds, design, recipe, dir)
  return ("%s/bonus_%s_%s%s.json"):format(dir_of("logs", dir), ds, design, recipe == "augment" and "_augment" or "")
end

-- every bonus design trained, one row each (scripts/train_bonus.lua)
function runs.bonus_designs(dir) return dir_of("logs", dir) .. "/bonus_designs.json" end

-- the chosen bonus model on the test split (scripts/bonus_main.lua)
function runs.bonus_metrics(dir) return dir_of("logs", dir) .. "/bonus_metrics.json" end

------------------------------------------------------ the course's runs

-- the figures each analysis writes for a run, in the order it writes them
runs.ANALYSES = {
  plots = {"losses_plot", "accuracies_plot"},                            -- scripts/plot_accuracy_and_loss.lua
  roc = {"roc_curve", "det_curve", "pr_curve"},                          -- scripts/numerical_analysis.lua (+ metrics)
  saliency = {"saliency_maps_and_images_pairs", "mean_saliency_maps"},   -- scripts/saliency_map.lua
  gradcam = {"Real_Image_grad_cam", "Fake_Image_grad_cam"},              -- scripts/grad_cam_analysis.lua
}

-- The three trainings of the course, in order, on the face-swap set
-- `fakes` and the synthetic-faces set `synthetic` (default names
-- fakes_dataset, synthetic_dataset): {dataset, model, optimizer, analyses =
-- the keys of runs.ANALYSES it gets, epochs_from = which of run_me.sh's
-- epoch settings applies (EPOCHS or XCEPTION_EPOCHS)}.
function runs.course(fakes, synthetic)
  fakes, synthetic = fakes or "fakes_dataset", synthetic or "synthetic_dataset"
  local all = {"plots", "roc", "saliency", "gradcam"}
  return {
    {dataset = fakes, model = "SimpleNet", optimizer = runs.OPTIMIZER, analyses = all, epochs_from = "EPOCHS"},
    {dataset = synthetic, model = "SimpleNet", optimizer = runs.OPTIMIZER, analyses = {"plots", "roc", "gradcam"},
     epochs_from = "EPOCHS"},
    {dataset = synthetic, model = "XceptionBased", optimizer = runs.OPTIMIZER, analyses = all,
     epochs_from = "XCEPTION_EPOCHS"},
  }
end

-- true when the course run `r` gets the analysis `name`
function runs.has_analysis(r, name)
  for _, a in ipairs(r.analyses) do if a == name then return true end end
  return false
end

-- The layout for run_me.sh, one "key<TAB>value[<TAB>value...]" line each:
--   run  <ds> <model> <epochs_from> <analyses, comma-separated>   (one per course run, in order)
--   checkpoint/<ds>/<model>/<best|last>, log/<ds>/<model>, metrics/<ds>/<model>
--   outputs/<ds>/<model>/<analysis>   the files that analysis writes
--   dir/<checkpoints|logs|figures>, samples, bonus/checkpoint, bonus/metrics, bonus/tradeoff,
--   report/html, report/md
--   training/optimizer, training/lr, training/batch_size
function runs.shell_layout(fakes, synthetic)
  local lines = {}
  local function put(...) lines[#lines + 1] = table.concat({...}, "\t") end
  for _, r in ipairs(runs.course(fakes, synthetic)) do
    local ds, m = r.dataset, r.model
    put("run", ds, m, r.epochs_from, table.concat(r.analyses, ","))
    put(("checkpoint/%s/%s/best"):format(ds, m), runs.checkpoint(ds, m, r.optimizer))
    put(("checkpoint/%s/%s/last"):format(ds, m), runs.checkpoint(ds, m, r.optimizer, "last"))
    put(("log/%s/%s"):format(ds, m), runs.log(ds, m, r.optimizer))
    put(("metrics/%s/%s"):format(ds, m), runs.metrics(ds, m))
    for _, a in ipairs(r.analyses) do
      local outs = {}
      for _, what in ipairs(runs.ANALYSES[a]) do outs[#outs + 1] = runs.figure(ds, m, what) end
      if a == "roc" then outs[#outs + 1] = runs.metrics(ds, m) end
      put(("outputs/%s/%s/%s"):format(ds, m, a), table.unpack(outs))
    end
  end
  for _, k in ipairs{"checkpoints", "logs", "figures"} do put("dir/" .. k, runs.DIRS[k]) end
  put("samples", runs.plain_figure("datasets_samples"))
  put("bonus/checkpoint", runs.bonus_checkpoint())
  put("bonus/metrics", runs.bonus_metrics())
  put("bonus/tradeoff", runs.plain_figure("bonus_tradeoff"))
  put("report/html", runs.report("html"))
  put("report/md", runs.report("md"))
  for _, k in ipairs{"optimizer", "lr", "batch_size"} do put("training/" .. k, tostring(runs.COURSE_TRAINING[k])) end
  return table.concat(lines, "\n")
end

------------------------------------------------------------- the flags

-- the flags several scripts take, by key; a script may change a field
-- (default, help) by naming the key in a table: {"seed", help = "..."}
local FLAGS = {
  model = {"--model", "-m", default = "SimpleNet", metavar = "NAME", help = "model name"},
  dataset = {"--dataset", "-d", default = "fakes_dataset", metavar = "NAME", help = "data set folder under the data root"},
  data_root = {"--data-root", metavar = "DIR", help = "folder holding the data sets (default $FMD_DATA or data)"},
  checkpoint = {"--checkpoint_path", "-cpp", metavar = "PATH", help = "checkpoint"},
  batch_size = {"--batch_size", "-b", type = "integer", default = 32, min = 1, help = "batch size"},
  seed = {"--seed", type = "integer", default = 0, help = "random seed"},
  threads = {"--threads", type = "integer", min = 1, help = "compute threads (default: all cores)"},
  workers = {"--workers", type = "integer", default = 2, min = 0, help = "image-decoding threads"},
  out_dir = {"--out-dir", default = runs.DIRS.figures, metavar = "DIR", help = "where figures are written"},
  metrics_dir = {"--metrics-dir", default = runs.DIRS.logs, metavar = "DIR", help = "where the results (.json) are written"},
}

-- the key of a shared flag named as "key" or {"key", ...}, else nil
local function shared_key(want)
  local key = type(want) == "table" and want[1] or want
  return FLAGS[key] and key or nil
end

-- runs.flags(def, key or {key, field = value...}, ...) -> def with the
-- shared flags appended in the order given, for cli.parse
function runs.flags(def, ...)
  for _, want in ipairs{...} do
    local key = shared_key(want)
    local base = key and FLAGS[key] or error(("runs.flags: no shared flag '%s'"):format(
      tostring(type(want) == "table" and want[1] or want)), 2)
    local spec = {}
    for k, v in pairs(base) do spec[k] = v end
    if type(want) == "table" then
      for k, v in pairs(want) do if k ~= 1 then spec[k] = v end end
    end
    def[#def + 1] = spec
  end
  return def
end

-- --threads and --seed of a parsed command line take effect (the one place
-- they do); a script without the flag leaves the setting alone
function runs.apply_common(opts)
  local fmd = require "fmd"
  if opts.threads then fmd.set_num_threads(opts.threads) end
  if opts.seed then fmd.manual_seed(opts.seed) end
  return opts
end

-- The analysis scripts' command line: def = {name, description, checkpoint
-- = bool (-cpp, default the run's best checkpoint), json = bool (-j,
-- default the run's log), [own flag specs, or keys of shared flags as in
-- runs.flags]}; -m, -d, --data-root, --out-dir, --seed, --threads, -b are
-- added. --threads and --seed are applied. A stray argument is an error.
function runs.parse(argv, def)
  local cli = require "fmd.cli"
  local spec = {name = def.name, description = def.description}
  runs.flags(spec, {"model", help = "model name (" .. table.concat(require("fmd.models").names(), ", ") .. ")"})
  if def.checkpoint then
    runs.flags(spec, {"checkpoint", help = "checkpoint (default " .. runs.checkpoint("<dataset>", "<model>") .. ")"})
  end
  if def.json then
    spec[#spec + 1] = {"--json", "-j", metavar = "PATH", help = "training log (default " .. runs.log("<dataset>", "<model>") .. ")"}
  end
  runs.flags(spec, "dataset", "data_root", "out_dir", {"seed", help = "random seed (which test images are shown)"},
    "threads", {"batch_size", help = "batch size for evaluation"})
  for _, s in ipairs(def) do
    if shared_key(s) then runs.flags(spec, s) else spec[#spec + 1] = s end
  end
  local opts, positional = cli.parse(argv, spec)
  if #positional > 0 then error(("%s: unexpected argument '%s' (see --help)"):format(def.name, positional[1]), 0) end
  if def.checkpoint and not opts.checkpoint_path then opts.checkpoint_path = runs.checkpoint(opts.dataset, opts.model) end
  if def.json and not opts.json then opts.json = runs.log(opts.dataset, opts.model) end
  return runs.apply_common(opts)
end

-- the figure `what` of the run a parsed command line names (opts.dataset,
-- opts.model) in opts.out_dir, which is made if missing
function runs.output_figure(opts, what)
  require("fmd").sys.mkdir(opts.out_dir)
  return runs.figure(opts.dataset, opts.model, what, opts.out_dir)
end

return runs
