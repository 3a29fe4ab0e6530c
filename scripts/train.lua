-- Train a face-manipulation detector (the course's train_main.py).
--   fmd scripts/train.lua -d fakes_dataset -m SimpleNet --lr 0.001 -b 32 -e 5 -o Adam
local fmd = require "fmd"
local cli = require "fmd.cli"
local models = require "fmd.models"
local runs = require "fmd.runs"

local opts, positional = cli.parse(arg, runs.flags({
  name = "scripts/train.lua",
  description = "Train a model on <data-root>/<dataset>/{train,val,test}/{real,fake}; log to out/, checkpoints to checkpoints/.",
  {"--lr", type = "number", default = 0.001, help = "learning rate"},
  {"--momentum", type = "number", default = 0.9, help = "SGD momentum"},
  {"--epochs", "-e", type = "integer", default = 2, min = 1, help = "number of epochs"},
  {"--optimizer", "-o", default = "SGD", choices = {"SGD", "Adam"}, help = "optimizer"},
  {"--pretrained", metavar = "PATH", help = "weights to start from: ImageNet Xception (.pth/.pth.tar/.safetensors) for "
   .. "XceptionBased (default: fmd.weights finds them); a Keras MobileNetV2 model.min.js for MobileNetBased (default: "
   .. "the ImageNet-initialised MobileNetV2 from nsfwjs, upper blocks fine-tuned on another task, when fetched; "
   .. "'none': from scratch)"},
  {"--lr-schedule", default = "constant", choices = {"constant", "cosine"},
   help = "learning rate per step: constant, or cosine decay from --lr to 0 over the run"},
  {"--select", default = "val_acc", choices = {"val_acc", "val_auc"},
   help = "validation metric whose best epoch is checkpointed"},
  {"--resume", type = "boolean", help = "continue the interrupted run with the same dataset/model/optimizer"},
  {"--force", type = "boolean", help = "with --resume: continue even with another --lr, -b or number of processes (the new values apply)"},
}, {"batch_size", default = 128}, {"model", choices = models.names()},
   {"dataset", help = "data set folder under the data root (fakes_dataset, synthetic_dataset, or your own)"},
   "data_root", {"seed", help = "random seed (weights, shuffling, augmentation)"}, "threads", "workers"))

-- mistakes that would otherwise be ignored
local function usage_error(msg) error(msg .. "\n(see --help)", 0) end
if opts.pretrained and not models.class(opts.model).PRETRAINED then
  usage_error(("--pretrained loads weights into XceptionBased or MobileNetBased; %s is trained from scratch")
    :format(opts.model))
end
if opts.force and not opts.resume then usage_error("--force only applies to --resume") end
if #positional > 0 then usage_error(("unexpected argument '%s' (flags start with -)"):format(positional[1])) end

runs.apply_common(opts)

local data = require "fmd.data"
local nn = require "fmd.nn"
local optim = require "fmd.optim"
local Trainer = require "fmd.trainer"

local function load(part)
  return data.load_dataset(opts.dataset, part, {data_root = opts.data_root, model = opts.model})
end
local train_ds, val_ds, test_ds = load("train"), load("val"), load("test")
print(("dataset %s: train %d, val %d, test %d images"):format(opts.dataset, #train_ds, #val_ds, #test_ds))

local model = models.load_model(opts.model, {pretrained = opts.pretrained})
print(("model %s: %s trainable parameters"):format(opts.model, models.format_count(models.get_nof_params(model))))

local optimizer, params
if opts.optimizer == "SGD" then
  params = {lr = opts.lr, momentum = opts.momentum}
  optimizer = optim.SGD(model:parameters(), params)
else
  params = {lr = opts.lr}
  optimizer = optim.Adam(model:parameters(), params)
end

local scheduler
if opts.lr_schedule == "cosine" then
  params.lr_schedule = "cosine"
  -- optimizer steps in the run: under mpirun each step takes a batch from
  -- every rank, whose shard is at most ceil(N / ranks) images (fmd.dist)
  local shard = math.ceil(#train_ds / require("fmd.dist").world_size())
  scheduler = optim.CosineAnnealingLR(optimizer, opts.epochs * math.ceil(shard / opts.batch_size))
end
local trainer = Trainer.new(model, optimizer, nn.CrossEntropyLoss(), opts.batch_size, train_ds, val_ds, test_ds,
  {num_workers = opts.workers, seed = opts.seed, scheduler = scheduler, select = opts.select})
-- init: the weights file the model started from (fmd.weights found it, or
-- --pretrained), recorded in the log and checkpoint for the report
local run = {model_name = opts.model, dataset_name = opts.dataset, optimizer_name = opts.optimizer,
             optimizer_params = params, force = opts.force, init = model.init_weights or "random"}
if opts.resume then trainer:resume(run) end
local log = trainer:run(opts.epochs, run)

-- summary: the epoch whose checkpoint is kept (best --select metric)
local best = Trainer.best_epoch(log)
print(("best epoch %d: val acc %.2f%%, val AUC %.4f, test acc %.2f%%, test AUC %.4f (%s)"):format(best,
  log.val_acc[best], log.val_auc[best] or 0 / 0, log.test_acc[best], log.test_auc[best],
  runs.checkpoint(opts.dataset, opts.model, opts.optimizer)))
