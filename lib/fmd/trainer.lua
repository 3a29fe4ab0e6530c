-- The generic trainer of the course: train one epoch, evaluate, run epochs
-- with logging and checkpoints.
--
--   local Trainer = require "fmd.trainer"
--   local t = Trainer.new(model, optimizer, criterion, batch_size, train_ds, val_ds, test_ds,
--                         {num_workers = 2, seed = 0, scheduler = nil, select = "val_acc"})
--   t:run(epochs, {model_name = "SimpleNet", dataset_name = "fakes_dataset",
--                  optimizer_name = "Adam", optimizer_params = {lr = 0.001}})
--
-- Accuracy is a percentage; loss is averaged over all samples. Labels are
-- 0 = real, 1 = fake; the prediction is argmax of the two logits (- 1).
-- opts.scheduler (e.g. optim.CosineAnnealingLR) is stepped after every
-- optimizer step. opts.select: the validation metric whose best epoch is
-- checkpointed, "val_acc" (the course's) or "val_auc" (AUC of the fake logit).
--
-- Files (docs/training.md, docs/robustness.md): out/<run>.json is a list of
-- runs, this run the last entry; a log that does not parse is moved aside
-- to <log>.corrupt-<time>, never dropped. checkpoints/<run>.safetensors is
-- this run's best; an earlier run's best is kept as <run>.prev.safetensors
-- before the first replacement. checkpoints/<run>.last.safetensors is the
-- resumable state. .tmp files left by an interrupted write are removed.
-- out/<run>.lock (an flock holding the pid) keeps a second training of the
-- same run from writing the same files; the kernel drops it when the
-- process dies, and a lock file left by a killed run is taken over.
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
  self.epochs = opts.epochs   -- planned (run() sets it); shown by the progress line
  self.print = opts.print or print
  self.checkpoint_dir = opts.checkpoint_dir or "checkpoints"
  self.out_dir = opts.out_dir or "out"
  self.scheduler = opts.scheduler
  self.select = opts.select or "val_acc"
  if self.select ~= "val_acc" and self.select ~= "val_auc" then
    error(("Trainer: select must be 'val_acc' or 'val_auc', got %s"):format(tostring(self.select)), 2)
  end
  return self
end

-- an image that turns out unreadable mid-run (truncated, replaced) is
-- skipped with a warning naming it, and counted, rather than ending a run
local function loader(self, ds, shuffle)
  return data.DataLoader(ds, {batch_size = self.batch_size, shuffle = shuffle, drop_last = false,
                              num_workers = self.num_workers, seed = self.seed, skip_bad = true})
end

local function warn_skipped(self, dl)
  local n, msgs = dl:skipped()
  for _, m in ipairs(msgs) do self.print("warning: skipping an image: " .. m) end
  return n
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
    warn_skipped(self, dl)
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
    if self.scheduler then self.scheduler:step() end
    local bs = labels:numel()
    total_loss = total_loss + lv * bs
    correct = correct + fmd.no_grad(count_correct, logits, labels)
    n = n + bs
    bar:update(b, n, ("loss %.3f acc %.2f%%"):format(total_loss / n, 100 * correct / n))
    if not bar.tty and (b % print_every == 0 or b == nb) then
      self.print(("epoch %d/%s batch %d/%d | loss %.3f | acc %.2f%% (%d/%d)"):format(self.epoch + 1,
        tostring(self.epochs or "?"), b, nb, total_loss / n, 100 * correct / n, correct, n))
    end
  end
  self.last_train_seconds = bar:finish()
  self.skipped = (self.skipped or 0) + warn_skipped(self, dl)
  if n == 0 then error("training: every image of the epoch was skipped (unreadable)", 0) end
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
      warn_skipped(self, dl)
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
  self.skipped = (self.skipped or 0) + warn_skipped(self, dl)
  if n == 0 then error("evaluation: every image was skipped (unreadable)", 0) end
  return total_loss / n, 100 * correct / n, scores, labels_out
end

function Trainer:validate() return self:evaluate_model_on_dataloader(self.validation_dataset) end
function Trainer:test() return self:evaluate_model_on_dataloader(self.test_dataset) end

local function run_name(p) return ("%s_%s_%s"):format(p.dataset_name, p.model_name, p.optimizer_name) end

local function interrupted(err) return tostring(err):find("interrupted!", 1, true) ~= nil end

-- the runs already in the log (a list), or {} when there is none. A log
-- that cannot be read as a list is renamed to <path>.corrupt-<time> (and
-- said so), never replaced; Ctrl-C while reading is passed on.
local function read_runs(self, path)
  if not fmd.sys.is_file(path) then return {} end
  local f, oerr = io.open(path, "rb")
  if not f then error(("cannot read the training log %s: %s"):format(path, oerr), 0) end
  local text = f:read("a")
  f:close()
  local ok, runs = pcall(json.decode, text, path)
  if not ok and interrupted(runs) then error(runs, 0) end
  local why = not ok and tostring(runs)
    or (type(runs) ~= "table" or (runs.__order and next(runs.__order))) and (path .. ": not a list of runs")
  if not why then return runs end
  local aside = ("%s.corrupt-%s"):format(path, os.date("!%Y%m%dT%H%M%SZ"))
  while fmd.sys.is_file(aside) do aside = aside .. "x" end
  fmd.sys.rename(path, aside)
  self.print(("warning: the training log %s cannot be read (%s); moved it to %s and starting a new log")
    :format(path, why, aside))
  return {}
end

-- the log file holds a list of runs; this run is the last entry and is
-- rewritten after every epoch
local function write_log(self, path, entry)
  local runs = read_runs(self, path)
  if self.log_index and runs[self.log_index] then runs[self.log_index] = entry
  else runs[#runs + 1] = entry; self.log_index = #runs end
  json.write_file(path, runs, 4)
end

local function new_log(p)
  return {__order = {"model", "dataset", "optimizer", "train_loss", "train_acc", "val_loss", "val_acc", "val_auc",
                     "test_loss", "test_acc", "test_auc", "seconds_per_epoch"},
          model = p.model_name, dataset = p.dataset_name,
          optimizer = {__order = {"name", "params"}, name = p.optimizer_name, params = p.optimizer_params or {}},
          train_loss = {}, train_acc = {}, val_loss = {}, val_acc = {}, val_auc = {}, test_loss = {}, test_acc = {},
          test_auc = {}, seconds_per_epoch = {}}
end

-- the run's learning rate: the schedule's base when there is one
local function base_lr(self)
  return self.scheduler and self.scheduler.base_lrs[1] or self.optimizer.param_groups[1].lr
end

-- save the resumable state: model + optimizer + trainer progress
local function save_last(self, path)
  state_io.save(path, {model = self.model:state_dict(), optimizer = self.optimizer:state_dict()},
    {epoch = self.epoch, best_acc = self.best_acc, best_auc = self.best_auc, log = self.log,
     log_index = self.log_index, rng = self.seed, best_written = self.best_written and 1 or 0,
     lr = base_lr(self), lr_step = self.scheduler and self.scheduler.last_epoch, batch_size = self.batch_size})
end

local function same(a, b) return a == b or (type(a) == "number" and type(b) == "number" and math.abs(a - b) <= 1e-12 * math.abs(b)) end

-- resume from checkpoints/<run>.last.safetensors if present
function Trainer:resume(p)
  local path = ("%s/%s.last.safetensors"):format(self.checkpoint_dir, run_name(p))
  if not fmd.sys.is_file(path) then
    error(("--resume: no saved state for this run at %s"):format(path), 0)
  end
  local st, info = state_io.load(path)
  -- a resume continues the same run: other hyper-parameters are a mistake
  -- unless forced (then the new values are used from here on)
  local lr = base_lr(self)
  local diffs = {}
  if info.lr and not same(lr, info.lr) then
    diffs[#diffs + 1] = ("--lr %s (the run used %s)"):format(json.format_number(lr), json.format_number(info.lr))
  end
  if info.batch_size and info.batch_size ~= self.batch_size then
    diffs[#diffs + 1] = ("-b %d (the run used %d)"):format(self.batch_size, info.batch_size)
  end
  if #diffs > 0 and not p.force then
    error(("--resume: this command gives %s; resume with the same values, or add --force to continue with the new ones")
      :format(table.concat(diffs, " and ")), 0)
  end
  self.model:load_state_dict(st.model, true)
  self.optimizer:load_state_dict(st.optimizer)
  if #diffs > 0 then
    for _, g in ipairs(self.optimizer.param_groups) do g.lr = lr end
    self.print("--force: continuing with " .. table.concat(diffs, " and "))
  end
  if self.scheduler then
    -- the schedule goes on from the step it reached, from the (new) base lr
    self.scheduler:load_state_dict({last_epoch = math.tointeger(info.lr_step) or 0, base_lrs = {lr}})
  end
  self.epoch, self.best_acc, self.log, self.log_index = info.epoch, info.best_acc, info.log, info.log_index
  self.best_auc = info.best_auc
  self.log.val_auc = self.log.val_auc or {}
  self.best_written = info.best_written == 1 or info.best_written == nil
  self.print(("resumed %s after epoch %d (best %s)"):format(run_name(p), self.epoch, self.select == "val_auc"
    and ("val auc %.4f"):format(self.best_auc or 0) or ("val acc %.2f"):format(self.best_acc)))
end

-- data problems that would train "successfully" on nothing or give NaN
-- metrics are found before the first epoch
local function check_datasets(self)
  for _, part in ipairs{{"train", self.train_dataset}, {"validation", self.validation_dataset},
                        {"test", self.test_dataset}} do
    local ds = part[2]
    local where = ds and ds.root and (" in " .. ds.root) or ""
    if ds == nil or #ds == 0 then
      error(("the %s split has no images%s (expected images in real/ and fake/)"):format(part[1], where), 0)
    end
  end
  local ds = self.test_dataset
  if ds.counts then
    local nreal, nfake = ds:counts()
    if nreal == 0 or nfake == 0 then
      error(("the test split%s has only %s images (%d real, %d fake): the AUC needs both classes")
        :format(ds.root and (" " .. ds.root) or "", nreal == 0 and "fake" or "real", nreal, nfake), 0)
    end
  end
end

-- a .tmp next to one of our files is left by a write that was killed
local function clean_stale(self, paths)
  for _, path in ipairs(paths) do
    local tmp = path .. ".tmp"
    if fmd.sys.is_file(tmp) then
      os.remove(tmp)
      self.print(("removed %s, left by an interrupted write"):format(tmp))
    end
  end
end

-- the lock of a run: released when the returned value goes out of scope
-- (a <close> variable: on errors and Ctrl-C too, after the traceback)
local function take_lock(self, path, name)
  local fd, text = fmd.sys.lock_file(path)
  if not fd then
    local pid = text:match("%d+")
    error(("another training of %s is running (process %s holds %s); wait for it to end or stop it")
      :format(name, pid or "?", path), 0)
  end
  local old = text:match("%d+")
  if old then
    self.print(("took over the lock %s of process %s, which ended without releasing it"):format(path, old))
  end
  return setmetatable({}, {__close = function() fmd.sys.unlock_file(fd, path) end})
end

function Trainer:run(epochs, p)
  fmd.sys.mkdir(self.checkpoint_dir)
  fmd.sys.mkdir(self.out_dir)
  local name = run_name(p)
  local lock <close> = take_lock(self, ("%s/%s.lock"):format(self.out_dir, name), name)
  local log_path = ("%s/%s.json"):format(self.out_dir, name)
  local best_path = ("%s/%s.safetensors"):format(self.checkpoint_dir, name)
  local last_path = ("%s/%s.last.safetensors"):format(self.checkpoint_dir, name)
  local prev_path = ("%s/%s.prev.safetensors"):format(self.checkpoint_dir, name)
  check_datasets(self)
  for _, path in ipairs{log_path, best_path, last_path} do
    -- found now rather than after an epoch of training
    if (fmd.sys.is_dir(path) or os.rename(path, path)) and not fmd.sys.is_file(path) then
      error(("%s exists and is not a regular file; move it away"):format(path), 0)
    end
  end
  clean_stale(self, {log_path, best_path, last_path, prev_path})
  read_runs(self, log_path)   -- a corrupt log is moved aside now, not after an epoch
  self.log = self.log or new_log(p)
  self.best_acc = self.best_acc or 0
  self.epochs = epochs
  while self.epoch < epochs do
    local ep = self.epoch + 1
    self.print(("Epoch %d/%d"):format(ep, epochs))
    local t0 = fmd.sys.now()
    self.skipped = 0
    local train_loss, train_acc = self:train_one_epoch()
    local val_loss, val_acc, val_scores, val_labels = self:validate()
    local val_auc = metrics.roc_auc(val_scores, val_labels)
    local test_loss, test_acc, scores, labels = self:test()
    local auc = metrics.roc_auc(scores, labels)
    local secs = fmd.sys.now() - t0
    self.print(("train loss %.3f acc %.2f%% | val loss %.3f acc %.2f%% auc %.4f | test loss %.3f acc %.2f%% auc %.4f | %.0f s, %.1f img/s")
      :format(train_loss, train_acc, val_loss, val_acc, val_auc, test_loss, test_acc, auc, secs,
        #self.train_dataset / (self.last_train_seconds or secs)) ..
      (self.skipped > 0 and (" | %d unreadable images skipped"):format(self.skipped) or ""))
    local L = self.log
    for k, v in pairs{train_loss = train_loss, train_acc = train_acc, val_loss = val_loss, val_acc = val_acc,
                      val_auc = val_auc, test_loss = test_loss, test_acc = test_acc, test_auc = auc,
                      seconds_per_epoch = secs} do
      L[k][#L[k] + 1] = v
    end
    self.epoch = ep
    -- strictly better on the selected metric; the first epoch always writes one
    local better = self.select == "val_auc" and val_auc > (self.best_auc or -1) or
                   self.select == "val_acc" and val_acc > self.best_acc
    if better or not self.best_written then
      if self.select == "val_auc" then self.best_auc = val_auc else self.best_acc = val_acc end
      if not self.best_written and fmd.sys.is_file(best_path) then
        -- an earlier run's best: keep it rather than replace it silently
        fmd.sys.rename(best_path, prev_path)
        self.print(("kept the earlier run's checkpoint %s as %s"):format(best_path, prev_path))
      end
      self.best_written = true
      self.print(("saving checkpoint %s (val acc %.2f%%, val auc %.4f)"):format(best_path, val_acc, val_auc))
      state_io.save(best_path, {model = self.model:state_dict()},
        {val_acc = val_acc, val_auc = val_auc, test_acc = test_acc, test_auc = auc, epoch = ep, model = p.model_name,
         dataset = p.dataset_name, optimizer = p.optimizer_name})
    end
    write_log(self, log_path, L)
    save_last(self, last_path)
  end
  return self.log
end

return Trainer
