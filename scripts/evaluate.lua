-- Cross-data-set evaluation: one checkpoint on the test split of several
-- data sets (train on one set, test on others, the protocol by which
-- detectors are compared across data). For each set: AUC of the fake logit
-- (and of the real one), AP, EER, accuracy, counts; one table, and
-- out/evaluate_<model>.json. The metrics are numerical_analysis.lua's
-- (analysis.evaluate).
--
--   fmd scripts/evaluate.lua -m SimpleNet -cpp checkpoints/deepfake_dev_SimpleNet_Adam.safetensors \
--       --data-root ../shared/data -d deepfake_dev synthetic_dev
--
-- A set is <data root>/<SET>/test, or <data root>/<SET> itself when it holds
-- real/ and fake/; a SET with a "/" is a folder path (absolute or from here).
local fmd = require "fmd"
local cli = require "fmd.cli"
local data = require "fmd.data"
local json = require "fmd.json"
local transforms = require "fmd.transforms"
local analysis = require "fmd.analysis"
local models = require "fmd.models"
local dist = require "fmd.dist"
local runs = require "fmd.runs"

local opts, positional = cli.parse(arg, runs.flags({
  name = "scripts/evaluate.lua",
  description = "Evaluate a checkpoint on the test split of one or more data sets: fmd scripts/evaluate.lua "
    .. "-m MODEL -cpp CKPT --data-root ROOT -d SET [SET...]",
  -- not the shared -d: no default, and more sets may follow
  {"--dataset", "-d", metavar = "SET", help = "first data set; more may follow as arguments"},
  {"--out", metavar = "PATH", help = "JSON file (default " .. runs.evaluation("<model>") .. ")"},
}, "model", {"checkpoint", help = "checkpoint (required)"}, "data_root", "batch_size", "threads"))
runs.apply_common(opts)
if not opts.checkpoint_path then error("scripts/evaluate.lua: -cpp CHECKPOINT is required (see --help)", 0) end
local sets = {}
if opts.dataset then sets[1] = opts.dataset end
for _, s in ipairs(positional) do sets[#sets + 1] = s end
if #sets == 0 then error("scripts/evaluate.lua: name at least one data set with -d SET [SET...] (see --help)", 0) end

local root = data.data_root(opts)
local function folder_of(set)
  local base = set:find("/", 1, true) and set or (root .. "/" .. set)   -- a path, or a name under the root
  if fmd.sys.is_dir(base .. "/test") then return base .. "/test" end
  if fmd.sys.is_dir(base .. "/real") and fmd.sys.is_dir(base .. "/fake") then return base end
  error(("data set %s: neither %s/test nor %s/{real,fake} exists"):format(set, base, base), 0)
end

-- check every set before the (long) evaluation starts
local folders = {}
for i, set in ipairs(sets) do folders[i] = folder_of(set) end
local model = analysis.load_model(opts.model, opts.checkpoint_path)

local rows, results = {}, {}
for i, set in ipairs(sets) do
  local ds = data.FacesDataset(folders[i], transforms.course("test", models.input(opts.model)))
  local ev = analysis.evaluate(model, ds, folders[i], {batch_size = opts.batch_size, label = set})
  ev.scores = nil
  results[i] = {__order = {"dataset", "folder", "n_real", "n_fake", "auc_b", "auc_a", "average_precision", "eer",
                           "eer_threshold", "accuracy", "confusion"},
                dataset = set, folder = folders[i], n_real = ev.n_real, n_fake = ev.n_fake, auc_b = ev.auc_b,
                auc_a = ev.auc_a, average_precision = ev.average_precision, eer = ev.eer,
                eer_threshold = ev.eer_threshold, accuracy = ev.accuracy, confusion = ev.confusion}
  rows[i] = ev
end
if not dist.is_root() then return end   -- under mpirun: rank 0 reports and writes

print(("%s (%s) on %d data set%s:"):format(opts.model, opts.checkpoint_path, #sets, #sets == 1 and "" or "s"))
local w = 8
for _, s in ipairs(sets) do w = math.max(w, #s) end
local fmt = "%-" .. w .. "s %6s %6s %7s %7s %7s %8s"
print(fmt:format("data set", "real", "fake", "AUC", "AP", "EER", "accuracy"))
for i, set in ipairs(sets) do
  local e = rows[i]
  print(fmt:format(set, e.n_real, e.n_fake, ("%.4f"):format(e.auc_b), ("%.4f"):format(e.average_precision),
    ("%.2f%%"):format(100 * e.eer), ("%.2f%%"):format(e.accuracy)))
end

local path = opts.out or runs.evaluation(opts.model)
local dir = path:match("^(.*)/[^/]*$")
if dir then fmd.sys.mkdir(dir) end
json.write_file(path, {__order = {"model", "checkpoint", "results"}, model = opts.model,
                       checkpoint = opts.checkpoint_path, results = results}, 2)
print("wrote " .. path)
