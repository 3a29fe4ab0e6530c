-- The generic trainer of the course: train one epoch, evaluate, run epochs
-- with logging and checkpoints.
--
--   local Trainer = require "fmd.trainer"
--   local t = Trainer.new(model, optimizer, criterion, batch_size, train_ds, val_ds, test_ds,
--                         {num_workers = 2, seed = 0})
--   t:run(epochs, {model_name = "SimpleNet", dataset_name = "fakes_dataset",
--                  optimizer_name = "Adam", optimizer_params = {lr = 0.001}})
--
-- Accuracy is a percentage; loss is averaged over all samples. Labels are
-- 0 = real, 1 = fake; the prediction is argmax of the two logits (- 1).
local fmd = require "fmd"
local data = require "fmd.data"
local json = require "fmd.json"
local metrics = require "fmd.metrics"
local progress = require "fmd.progress"
local state_io = require "fmd.state_io"

local Trainer = {}
Trainer.__index = Trainer

function Trainer.new(model, optimizer, criterion, batch_size, train_ds, val_ds, test_ds, opts)
  opts = opts or {}
  local self = setmetatable({}, Trainer)
  self.model, self.optimizer, self.criterion = model, optimizer, criterion
  self.batch_size = batch_size
  self.train_dataset, self.validation_dataset, self.test_dataset = train_ds, val_ds, test_ds
  self.num_workers = opts.num_workers or 2
  self.seed = opts.seed or 0
  self.epoch = 0          -- epochs finished
  self.print = opts.print or print
  self.checkpoint_dir = opts.checkpoint_dir or "checkpoints"
  self.out_dir = opts.out_dir or "out"
  return self
end

local function loader(self, ds, shuffle)
  return data.DataLoader(ds, {batch_size = self.batch_size, shuffle = shuffle, drop_last = false,
                              num_workers = self.num_workers, seed = self.seed})
end

local function count_correct(logits, labels)
  local pred = logits:argmax(2) - 1
  return pred:eq(labels):sum():item()
end

-- one pass over the training set; returns avg_loss, accuracy (%)
function Trainer:train_one_epoch()
  self.model:train()
  local dl = loader(self, self.train_dataset, true)
  local nb = #dl
  local bar = progress.new{total = nb, label = ("train %d"):format(self.epoch + 1), unit = "img"}
  local print_every = math.max(1, math.ceil(nb / 10))
  local total_loss, correct, n = 0, 0, 0
  local b = 0
  for images, labels in dl:iter(self.epoch + 1) do
    b = b + 1
    self.optimizer:zero_grad()
    local logits = self.model(images)
    local loss = self.criterion(logits, labels)
    local lv = loss:item()
    if lv ~= lv or lv == math.huge or lv == -math.huge then
      bar:finish()
      error(("training diverged: loss is %s at batch %d of epoch %d (lower the learning rate?); "
        .. "the last good checkpoint is kept"):format(tostring(lv), b, self.epoch + 1), 0)
    end
    loss:backward()
    self.optimizer:step()
    local bs = labels:numel()
    total_loss = total_loss + lv * bs
    correct = correct + fmd.no_grad(count_correct, logits, labels)
    n = n + bs
    bar:update(b, n, ("loss %.3f acc %.2f%%"):format(total_loss / n, 100 * correct / n))
    if not bar.tty and (b % print_every == 0 or b == nb) then
      self.print(("Epoch [%03d] | Loss: %.3f | Acc: %.2f[%%] (%d/%d)"):format(b, total_loss / n,
        100 * correct / n, correct, n))
    end
  end
  self.last_train_seconds = bar:finish()
  return total_loss / n, 100 * correct / n
end

-- evaluate without recording a graph; returns avg_loss, accuracy (%), and
-- the fake scores (logit of class 1) and labels as Lua arrays
function Trainer:evaluate_model_on_dataloader(dataset)
  self.model:eval()
  local dl = loader(self, dataset, false)
  local total_loss, correct, n = 0, 0, 0
  local scores, labels_out = {}, {}
  local bar = progress.new{total = #dl, label = "eval", unit = "img"}
  fmd.no_grad(function()
    local b = 0
    for images, labels in dl:iter(1) do
      b = b + 1
      local logits = self.model(images)
      local bs = labels:numel()
      total_loss = total_loss + self.criterion(logits, labels):item() * bs
      correct = correct + count_correct(logits, labels)
      n = n + bs
      local fake = logits:select(2, 2)
      for i = 1, bs do
        scores[#scores + 1] = fake[i]
        labels_out[#labels_out + 1] = labels[i]
      end
      bar:update(b, n)
    end
  end)
  bar:finish()
  return total_loss / n, 100 * correct / n, scores, labels_out
end

function Trainer:validate() return self:evaluate_model_on_dataloader(self.validation_dataset) end
function Trainer:test() return self:evaluate_model_on_dataloader(self.test_dataset) end

local function run_name(p) return ("%s_%s_%s"):format(p.dataset_name, p.model_name, p.optimizer_name) end

-- the log file holds a list of runs; this run is the last entry and is
-- rewritten after every epoch
local function write_log(self, path, entry)
  local runs = {}
  if fmd.sys.is_file(path) then
    local ok, old = pcall(json.read_file, path)
    if ok and type(old) == "table" and not old.__order then runs = old
    elseif not ok then self.print("warning: " .. tostring(old) .. "; starting a new log") end
  end
  if self.log_index and runs[self.log_index] then runs[self.log_index] = entry
  else runs[#runs + 1] = entry; self.log_index = #runs end
  json.write_file(path, runs, 4)
end

local function new_log(p)
  return {__order = {"model", "dataset", "optimizer", "train_loss", "train_acc", "val_loss", "val_acc",
                     "test_loss", "test_acc", "test_auc", "seconds_per_epoch"},
          model = p.model_name, dataset = p.dataset_name,
          optimizer = {__order = {"name", "params"}, name = p.optimizer_name, params = p.optimizer_params or {}},
          train_loss = {}, train_acc = {}, val_loss = {}, val_acc = {}, test_loss = {}, test_acc = {},
          test_auc = {}, seconds_per_epoch = {}}
end

-- save the resumable state: model + optimizer + trainer progress
local function save_last(self, path)
  state_io.save(path, {model = self.model:state_dict(), optimizer = self.optimizer:state_dict()},
    {epoch = self.epoch, best_acc = self.best_acc, log = self.log, log_index = self.log_index,
     rng = self.seed})
end

-- resume from checkpoints/<run>.last.safetensors if present
function Trainer:resume(p)
  local path = ("%s/%s.last.safetensors"):format(self.checkpoint_dir, run_name(p))
  if not fmd.sys.is_file(path) then
    error(("--resume: no saved state for this run at %s"):format(path), 0)
  end
  local st, info = state_io.load(path)
  self.model:load_state_dict(st.model, true)
  self.optimizer:load_state_dict(st.optimizer)
  self.epoch, self.best_acc, self.log, self.log_index = info.epoch, info.best_acc, info.log, info.log_index
  self.print(("resumed %s after epoch %d (best val acc %.2f)"):format(run_name(p), self.epoch, self.best_acc))
end

function Trainer:run(epochs, p)
  fmd.sys.mkdir(self.checkpoint_dir)
  fmd.sys.mkdir(self.out_dir)
  local name = run_name(p)
  local log_path = ("%s/%s.json"):format(self.out_dir, name)
  local best_path = ("%s/%s.safetensors"):format(self.checkpoint_dir, name)
  local last_path = ("%s/%s.last.safetensors"):format(self.checkpoint_dir, name)
  self.log = self.log or new_log(p)
  self.best_acc = self.best_acc or 0
  while self.epoch < epochs do
    local ep = self.epoch + 1
    self.print(("Epoch %d/%d"):format(ep, epochs))
    local t0 = fmd.sys.now()
    local train_loss, train_acc = self:train_one_epoch()
    local val_loss, val_acc = self:validate()
    local test_loss, test_acc, scores, labels = self:test()
    local auc = metrics.roc_auc(scores, labels)
    local secs = fmd.sys.now() - t0
    self.print(("train loss %.3f acc %.2f%% | val loss %.3f acc %.2f%% | test loss %.3f acc %.2f%% auc %.4f | %.0f s, %.1f img/s")
      :format(train_loss, train_acc, val_loss, val_acc, test_loss, test_acc, auc, secs,
        #self.train_dataset / (self.last_train_seconds or secs)))
    local L = self.log
    for k, v in pairs{train_loss = train_loss, train_acc = train_acc, val_loss = val_loss, val_acc = val_acc,
                      test_loss = test_loss, test_acc = test_acc, test_auc = auc, seconds_per_epoch = secs} do
      L[k][#L[k] + 1] = v
    end
    self.epoch = ep
    if val_acc > self.best_acc then
      self.best_acc = val_acc
      self.print(("saving checkpoint %s (val acc %.2f%%)"):format(best_path, val_acc))
      state_io.save(best_path, {model = self.model:state_dict()},
        {val_acc = val_acc, test_acc = test_acc, test_auc = auc, epoch = ep, model = p.model_name,
         dataset = p.dataset_name, optimizer = p.optimizer_name})
    end
    write_log(self, log_path, L)
    save_last(self, last_path)
  end
  return self.log
end

return Trainer
