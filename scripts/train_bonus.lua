-- Train the bonus model (lib/fmd/models/bonus_model.lua) with its own
-- recipe, choosing everything on train and validation only: the test split
-- is never read here. The checkpoint kept is the epoch with the best
-- validation AUC; every design trained is recorded in out/bonus_designs.json
-- (parameters, MACs, best val AUC, time) for scripts/bonus_main.lua's
-- trade-off figure.
--
--   fmd scripts/train_bonus.lua --data-root ../shared/data -d deepfake_dev
--   fmd scripts/train_bonus.lua -d deepfake_dev --design wide5 --recipe augment -e 8
--
-- Recipe (docs/bonus.md says why): Adam, lr 3e-4 with a cosine decay to
-- 1e-5 over the epochs, weight decay 1e-4, batch 32, the course's training
-- augmentation (resize to 256, random crop with 4-pixel padding, horizontal
-- flip), dropout 0.2 on the pooled features.
local fmd = require "fmd"
local cli = require "fmd.cli"
local models = require "fmd.models"
local runs = require "fmd.runs"

local Bonus = models.class("bonus")
local designs = {}
for k in pairs(Bonus.DESIGNS) do designs[#designs + 1] = k end
table.sort(designs)

local opts = runs.apply_common(cli.parse(arg, runs.flags({
  name = "scripts/train_bonus.lua",
  description = ("Train the bonus model on <data-root>/<dataset>/{train,val}; the best epoch by validation AUC "
    .. "is saved to %s (the chosen design and recipe) or %s."):format(runs.bonus_checkpoint(),
    runs.bonus_checkpoint("<design>", "<recipe>")),
  {"--design", default = Bonus.CHOSEN, choices = designs, help = "architecture (DESIGNS in bonus_model.lua)"},
  {"--epochs", "-e", type = "integer", default = 16, min = 1, help = "number of epochs"},
  {"--lr", type = "number", default = 0.0003, help = "initial learning rate (cosine decay to lr/100)"},
  {"--weight_decay", type = "number", default = 1e-4, help = "Adam weight decay"},
  {"--recipe", default = Bonus.RECIPE, choices = {"course", "augment"},
   help = "augmentation: the course's (crop, flip) or also JPEG re-compression (p 0.5, quality 60-100), blur (p 0.2), colour jitter (0.1)"},
  {"--checkpoint", metavar = "PATH", help = "where to save (default by design, see above)"},
}, "dataset", "data_root", "batch_size", "seed", "threads", "workers")))

local data = require "fmd.data"
local json = require "fmd.json"
local metrics = require "fmd.metrics"
local nn = require "fmd.nn"
local optim = require "fmd.optim"
local state_io = require "fmd.state_io"
local Trainer = require "fmd.trainer"

local transforms = require "fmd.transforms"
local train_tf
if opts.recipe == "augment" then
  -- the course's training transform plus what a face swap's traces must
  -- survive: re-compression, slight blur, colour shifts (all C ops, so the
  -- threaded loader runs them)
  local S = transforms.COURSE_SIZE
  train_tf = transforms.Compose{transforms.Resize(S, S), transforms.RandomCrop(S, 4), transforms.RandomHorizontalFlip(0.5),
    transforms.RandomJPEG(0.5, 60, 100), transforms.GaussianBlur(5, 0.1, 1.5, 0.2), transforms.ColorJitter(0.1, 0.1, 0.1),
    transforms.Normalize(transforms.COURSE_MEAN, transforms.COURSE_STD)}
end
local recipe = opts.recipe
local train_ds = data.load_dataset(opts.dataset, "train", {data_root = opts.data_root, transform = train_tf})
local val_ds = data.load_dataset(opts.dataset, "val", {data_root = opts.data_root})
print(("dataset %s: train %d, val %d images (the test split is not read)"):format(opts.dataset, #train_ds, #val_ds))

local model = models.load_model("bonus", {design = opts.design})
local nparams = models.get_nof_params(model)
local macs = models.count_macs(model, {1, 3, 256, 256})
print(("recipe: %s augmentation"):format(recipe))
print(("bonus design %s: %s trainable parameters, %.1f M multiply-accumulates per 256x256 image")
  :format(opts.design, models.format_count(nparams), macs / 1e6))

local params = {lr = opts.lr, weight_decay = opts.weight_decay}
local optimizer = optim.Adam(model:parameters(), params)
local trainer = Trainer.new(model, optimizer, nn.CrossEntropyLoss(), opts.batch_size, train_ds, val_ds, nil,
  {num_workers = opts.workers, seed = opts.seed, epochs = opts.epochs})

-- the chosen design and recipe make checkpoints/bonus.safetensors; the
-- others their own file, so trying a design never replaces the chosen one
local chosen = opts.design == Bonus.CHOSEN and recipe == Bonus.RECIPE
local ckpt = opts.checkpoint or (chosen and Bonus.CHECKPOINT or runs.bonus_checkpoint(opts.design, recipe))
fmd.sys.mkdir(ckpt:match("^(.*)/[^/]*$") or ".")
fmd.sys.mkdir(runs.DIRS.logs)
Bonus.read_designs(runs.bonus_designs())   -- a damaged designs table is found now, not after an epoch

local log = {__order = {"design", "recipe", "dataset", "params", "macs", "train_loss", "train_acc", "val_loss", "val_acc",
                        "val_auc", "lr", "seconds_per_epoch"},
             design = opts.design, recipe = recipe, dataset = opts.dataset, params = nparams, macs = macs,
             train_loss = {}, train_acc = {}, val_loss = {}, val_acc = {}, val_auc = {}, lr = {}, seconds_per_epoch = {}}
local best, best_epoch = -1, 0
-- one row per (dataset, design, recipe, epochs): the latest training of it,
-- rewritten after every epoch so an interrupted run still counts
local function write_row(epochs_done, seconds)
  local table_path = runs.bonus_designs()
  local rows = Bonus.read_designs(table_path)
  local row = {__order = {"dataset", "design", "recipe", "params", "macs", "planned_epochs", "epochs", "best_epoch",
                          "val_auc", "train_seconds", "checkpoint", "chosen"},
               planned_epochs = opts.epochs,
               dataset = opts.dataset, design = opts.design, recipe = recipe, params = nparams, macs = macs,
               epochs = epochs_done, best_epoch = best_epoch, val_auc = best, train_seconds = seconds,
               checkpoint = ckpt, chosen = chosen}
  local replaced = false
  for i, r in ipairs(rows) do
    -- a row is a (data set, design, recipe, epoch budget): another budget is another row
    if r.dataset == row.dataset and r.design == row.design and (r.recipe or "course") == recipe
       and (r.planned_epochs or r.epochs) == opts.epochs then
      rows[i], replaced = row, true
    end
  end
  if not replaced then rows[#rows + 1] = row end
  json.write_file(table_path, rows, 2)
end
local t_start = fmd.sys.now()
for ep = 1, opts.epochs do
  -- cosine decay from lr to lr/100 (set before the epoch)
  local lr = opts.lr / 100 + (opts.lr - opts.lr / 100) * 0.5 * (1 + math.cos(math.pi * (ep - 1) / opts.epochs))
  optimizer.param_groups[1].lr = lr
  print(("Epoch %d/%d (lr %.2g)"):format(ep, opts.epochs, lr))
  local t0 = fmd.sys.now()
  local train_loss, train_acc = trainer:train_one_epoch()
  local val_loss, val_acc, scores, labels = trainer:validate()
  trainer.epoch = ep
  local auc = metrics.roc_auc(labels, scores)
  local secs = fmd.sys.now() - t0
  print(("train loss %.3f acc %.2f%% | val loss %.3f acc %.2f%% auc %.4f | %.0f s"):format(
    train_loss, train_acc, val_loss, val_acc, auc, secs))
  for k, v in pairs{train_loss = train_loss, train_acc = train_acc, val_loss = val_loss, val_acc = val_acc,
                    val_auc = auc, lr = lr, seconds_per_epoch = secs} do
    log[k][#log[k] + 1] = v
  end
  if auc > best then
    best, best_epoch = auc, ep
    -- fmd.save_safetensors writes a temporary file and renames it
    state_io.save(ckpt, {model = model:state_dict()},
      {design = opts.design, spec = Bonus.DESIGNS[opts.design], recipe = recipe, epoch = ep, val_auc = auc, val_acc = val_acc,
       dataset = opts.dataset, params = nparams, macs = macs})
    print(("saved %s (val AUC %.4f)"):format(ckpt, auc))
  end
  write_row(ep, fmd.sys.now() - t_start)
  json.write_file(runs.bonus_log(opts.dataset, opts.design, recipe), log, 2)
end
local total = fmd.sys.now() - t_start

print(("best epoch %d: val AUC %.4f (%s); %.0f s in all"):format(best_epoch, best, ckpt, total))
