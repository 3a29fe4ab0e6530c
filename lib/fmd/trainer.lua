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
-- Files (docs/training.md, docs/robustness.md; named by fmd.runs):
-- out/<run>.json is a list of runs, this run the last entry; a log that
-- does not parse is moved aside to <log>.corrupt-<time>, never dropped.
-- checkpoints/<run>.safetensors is this run's best; an earlier run's best
-- is kept as <run>.prev.safetensors before the first replacement.
-- checkpoints/<run>.last.safetensors is the resumable state. .tmp files
-- left by an interrupted write are removed.
-- out/<run>.lock (an flock holding the pid) keeps a second training of the
-- same run from writing the same files; the kernel drops it when the
-- process dies, and a lock file left by a killed run is taken over.
-- Under mpirun (fmd.dist, docs/distributed.md) every rank trains on its
-- shard and averages gradients; rank 0 alone takes the lock and writes.
local fmd = require "fmd"
local data = require "fmd.data"
local dist = require "fmd.dist"
local json = require "fmd.json"
local metrics = require "fmd.metrics"
local progress = require "fmd.progress"
local runs = require "fmd.runs"
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
  self.checkpoint_dir = opts.checkpoint_dir or runs.DIRS.checkpoints
  self.out_dir = opts.out_dir or runs.DIRS.logs
  self.scheduler = opts.scheduler
  self.select = opts.select or "val_acc"
  if self.select ~= "val_acc" and self.select ~= "val_auc" then
    error(("Trainer: select must be 'val_acc' or 'val_auc', got %s"):format(tostring(self.select)), 2)
  end
  return self
end

-- an image that turns out unreadable mid-run (truncated, replaced) is
-- skipped with a warning naming it, and counted, rather than ending a run
local function loader(self, ds, shuffle, shard)
  return data.DataLoader(ds, {batch_size = self.batch_size, shuffle = shuffle, drop_last = false,
                              num_workers = self.num_workers, seed = self.seed, skip_bad = true, shard = shard})
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
  local dl = loader(self, self.train_dataset, true, dist.shard())
  local nb = #dl
  local bar = progress.new{total = nb, label = ("train %d"):format(self.epoch + 1), unit = "img"}
  local print_every = math.max(1, math.ceil(nb / 10))
  local total_loss, correct, n = 0, 0, 0
  local b = 0
  for images, labels, n_step in dist.steps(dl:iter(self.epoch + 1)) do
    b = b + 1
    warn_skipped(self, dl)
    self.optimizer:zero_grad()
    local logits, lv, bs = nil, 0, 0
    if images then   -- false: under mpirun, a rank with no share of this step
      logits = self.model(images)
      local loss = self.criterion(logits, labels)
      lv = loss:item()
      if lv ~= lv or lv == math.huge or lv == -math.huge then
        bar:finish()
        error(("training diverged: loss is %s at batch %d of epoch %d (lower the learning rate?); "
          .. "the last good checkpoint is kept"):format(tostring(lv), b, self.epoch + 1), 0)
      end
      loss:backward()
      bs = labels:numel()
    end
    dist.average_gradients(self.model, bs, n_step)
    self.optimizer:step()
    if self.scheduler then self.scheduler:step() end
    total_loss = total_loss + lv * bs
    correct = correct + (logits and fmd.no_grad(count_correct, logits, labels) or 0)
    n = n + bs
    bar:update(b, n, ("loss %.3f acc %.2f%%"):format(total_loss / n, 100 * correct / n))
    if not bar.tty and (b % print_every == 0 or b == nb) then
      self.print(("epoch %d/%s batch %d/%d | loss %.3f | acc %.2f%% (%d/%d)"):format(self.epoch + 1,
        tostring(self.epochs or "?"), b, nb, total_loss / n, 100 * correct / n, correct, n))
    end
  end
  self.last_train_seconds = bar:finish()
  self.skipped = (self.skipped or 0) + warn_skipped(self, dl)
  total_loss, correct, n = dist.sum(total_loss, correct, n)
  dist.average_buffers(self.model)   -- BatchNorm running statistics: every rank evaluates one model
  if n == 0 then error("training: every image of the epoch was skipped (unreadable)", 0) end
  return total_loss / n, 100 * correct / n
end

-- evaluate without recording a graph; returns avg_loss, accuracy (%), and
-- the fake scores (logit of class 1) and labels as Lua arrays
function Trainer:evaluate_model_on_dataloader(dataset)
  self.model:eval()
  local dl = loader(self, dist.shard_dataset(dataset, self.batch_size), false)
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
  total_loss, correct, n = dist.sum(total_loss, correct, n)
  scores, labels_out = dist.all_gather(scores), dist.all_gather(labels_out)
  if n == 0 then error("evaluation: every image was skipped (unreadable)", 0) end
  return total_loss / n, 100 * correct / n, scores, labels_out
end

function Trainer:validate() return self:evaluate_model_on_dataloader(self.validation_dataset) end
function Trainer:test() return self:evaluate_model_on_dataloader(self.test_dataset) end

local function run_name(p) return runs.name(p.dataset_name, p.model_name, p.optimizer_name) end

-- the paths of a run's files in this trainer's folders
local function paths(self, p)
  local ds, m, o, c = p.dataset_name, p.model_name, p.optimizer_name, self.checkpoint_dir
  return {log = runs.log(ds, m, o, self.out_dir), lock = runs.lock(ds, m, o, self.out_dir),
          best = runs.checkpoint(ds, m, o, "best", c), last = runs.checkpoint(ds, m, o, "last", c),
          prev = runs.checkpoint(ds, m, o, "prev", c)}
end

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
  local ok, entries = pcall(json.decode, text, path)
  if not ok and interrupted(entries) then error(entries, 0) end
  local why = not ok and tostring(entries)
    or (type(entries) ~= "table" or (entries.__order and next(entries.__order))) and (path .. ": not a list of runs")
  if not why then return entries end
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
  local entries = read_runs(self, path)
  if self.log_index and entries[self.log_index] then entries[self.log_index] = entry
  else entries[#entries + 1] = entry; self.log_index = #entries end
  json.write_file(path, entries, 4)
end

-- p.init: where the weights started (an ImageNet weights file, or
-- "random"), recorded so the report says what the training really used;
-- select: the metric whose best epoch is checkpointed (Trainer.best_epoch)
local function new_log(self, p)
  return {__order = {"model", "dataset", "optimizer", "batch_size", "init", "select", "train_loss", "train_acc",
                     "val_loss", "val_acc", "val_auc", "test_loss", "test_acc", "test_auc", "seconds_per_epoch"},
          model = p.model_name, dataset = p.dataset_name,
          optimizer = {__order = {"name", "params"}, name = p.optimizer_name, params = p.optimizer_params or {}},
          batch_size = self.batch_size, init = p.init, select = self.select,
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
     lr = base_lr(self), lr_step = self.scheduler and self.scheduler.last_epoch, batch_size = self.batch_size,
     world_size = dist.world_size()})
end

local function same(a, b) return a == b or (type(a) == "number" and type(b) == "number" and math.abs(a - b) <= 1e-12 * math.abs(b)) end

-- the per-epoch lists of a log entry and the range of their values
-- (val_auc, test_auc and seconds_per_epoch are absent from older logs)
local LOG_LISTS = {
  {"train_loss", {min = 0}}, {"train_acc", {min = 0, max = 100}}, {"val_loss", {min = 0}},
  {"val_acc", {min = 0, max = 100}}, {"val_auc", {min = 0, max = 1, optional = true}},
  {"test_loss", {min = 0}}, {"test_acc", {min = 0, max = 100}},
  {"test_auc", {min = 0, max = 1, optional = true}}, {"seconds_per_epoch", {min = 0, optional = true}},
}

-- a log entry read back from a file, checked before use: every list of
-- numbers in range and of `epochs` values (of train_loss's count when nil,
-- at least one); errors name `where` and the field
local function check_log_entry(L, where, epochs)
  json.field({entry = L}, "entry", "table", where)
  local n = epochs or #json.field(L, "train_loss", "numbers", where, {min = 0})
  if n < 1 then error(("%s: 'train_loss' is empty, expected one value per epoch"):format(where), 0) end
  for _, f in ipairs(LOG_LISTS) do
    local r = {len = n}
    for k, v in pairs(f[2]) do r[k] = v end
    json.field(L, f[1], "numbers", where, r)
  end
  -- what the run was trained with (older logs lack batch_size and init)
  local o = json.field(L, "optimizer", "table", where, {optional = true})
  local params = o and json.field(o, "params", "table", where .. " optimizer", {optional = true})
  if params then json.field(params, "lr", "number", where .. " optimizer params", {above = 0, optional = true}) end
  json.field(L, "batch_size", "integer", where, {min = 1, optional = true})
  json.field(L, "init", "string", where, {optional = true})
  local select = json.field(L, "select", "string", where, {optional = true})   -- older logs: val_acc
  if select and select ~= "val_acc" and select ~= "val_auc" then
    error(("%s: 'select' must be \"val_acc\" or \"val_auc\", got \"%s\""):format(where, select), 0)
  end
  if select == "val_auc" and not L.val_auc then
    error(("%s: 'select' is val_auc but the log has no 'val_auc'"):format(where), 0)
  end
  return L
end

-- Trainer.last_run(runs, path) -> the last entry of a decoded training log
-- (read from `path`), checked as the trainer's own resume checks it: one
-- clear error naming the file and the field
function Trainer.last_run(all, path)
  if type(all) ~= "table" or (all.__order and next(all.__order)) or #all == 0 then
    error(("training log %s holds no runs (expected a JSON list of runs)"):format(path), 0)
  end
  return check_log_entry(all[#all], ("training log %s, last run"):format(path))
end

-- Trainer.read_log(path) -> the last run of a training log file, checked
-- (scripts/plot_accuracy_and_loss.lua, bonus_main.lua)
function Trainer.read_log(path)
  if not fmd.sys.is_file(path) then
    error(("training log %s: %s"):format(path, fmd.sys.is_dir(path) and "is a folder, not a file" or "no such file"), 0)
  end
  return Trainer.last_run(json.read_file(path), path)
end

-- the epoch the kept checkpoint comes from: the first with the best
-- value of the run's select metric (validation accuracy, or val AUC for a
-- run trained with --select val_auc), 1-based
function Trainer.best_epoch(run)
  local sel, b = run[run.select or "val_acc"], 1
  for i, v in ipairs(sel) do if v > sel[b] then b = i end end
  return b
end

-- resume from checkpoints/<run>.last.safetensors if present. Every value
-- of the saved state is checked before use (a damaged or foreign file is
-- one error naming it and the field, not a run on nonsense).
function Trainer:resume(p)
  local path = paths(self, p).last
  if not fmd.sys.is_file(path) then
    error(("--resume: no saved state for this run at %s"):format(path), 0)
  end
  local st, info = state_io.load(path)
  local where = ("--resume: %s"):format(path)
  local epoch = json.field(info, "epoch", "integer", where, {min = 1, max = 1e6})
  local best_acc = json.field(info, "best_acc", "number", where, {min = 0, max = 100})
  local log = check_log_entry(json.field(info, "log", "table", where), where .. " (metadata 'log')", epoch)
  if log.model ~= p.model_name or log.dataset ~= p.dataset_name then
    error(("%s: the saved state is of %s on %s, not of this run (%s on %s)"):format(where, tostring(log.model),
      tostring(log.dataset), p.model_name, p.dataset_name), 0)
  end
  local log_index = json.field(info, "log_index", "integer", where, {min = 1, optional = true})
  local best_written = json.field(info, "best_written", "integer", where, {min = 0, max = 1, optional = true})
  local saved_lr = json.field(info, "lr", "number", where, {above = 0, optional = true})
  local saved_bs = json.field(info, "batch_size", "integer", where, {min = 1, optional = true})
  local saved_ws = json.field(info, "world_size", "integer", where, {min = 1, optional = true})   -- mpirun ranks
  local best_auc = json.field(info, "best_auc", "number", where, {min = 0, max = 1, optional = true})
  local lr_step = json.field(info, "lr_step", "integer", where, {min = 0, optional = true})   -- the schedule's
  if not st.optimizer then error(("%s: holds no optimizer state (not a resumable state)"):format(where), 0) end
  -- a resume continues the same run: other hyper-parameters are a mistake
  -- unless forced (then the new values are used from here on)
  local lr = base_lr(self)
  local diffs = {}
  if saved_lr and not same(lr, saved_lr) then
    diffs[#diffs + 1] = ("--lr %s (the run used %s)"):format(json.format_number(lr), json.format_number(saved_lr))
  end
  if saved_bs and saved_bs ~= self.batch_size then
    diffs[#diffs + 1] = ("-b %d (the run used %d)"):format(self.batch_size, saved_bs)
  end
  if (log.select or "val_acc") ~= self.select then   -- another checkpoint would be kept
    diffs[#diffs + 1] = ("--select %s (the run used %s)"):format(self.select, log.select or "val_acc")
  end
  if (saved_ws or 1) ~= dist.world_size() then   -- another global batch
    local function procs(k) return ("%d process%s"):format(k, k == 1 and "" or "es") end
    diffs[#diffs + 1] = ("%s (the run used %s)"):format(procs(dist.world_size()), procs(saved_ws or 1))
  end
  if #diffs > 0 and not p.force then
    error(("--resume: this command gives %s; resume with the same values, or add --force to continue with the new ones")
      :format(table.concat(diffs, " and ")), 0)
  end
  for _, part in ipairs{{self.model, st.model, true}, {self.optimizer, st.optimizer}} do
    local ok, err = pcall(part[1].load_state_dict, part[1], part[2], part[3])
    if not ok then error(("%s: %s"):format(where, (tostring(err):gsub("\n\t", " "))), 0) end
  end
  if #diffs > 0 then
    for _, g in ipairs(self.optimizer.param_groups) do g.lr = lr end
    self.print("--force: continuing with " .. table.concat(diffs, " and "))
  end
  if self.scheduler then
    -- the schedule goes on from the step it reached, from the (new) base lr
    self.scheduler:load_state_dict({last_epoch = lr_step or 0, base_lrs = {lr}})
  end
  self.epoch, self.best_acc, self.log, self.log_index = epoch, best_acc, log, log_index
  self.best_auc = best_auc
  self.log.val_auc = self.log.val_auc or {}
  self.log.select = self.select
  self.best_written = best_written == 1 or best_written == nil
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
  local root = dist.is_root()   -- the one process that writes (every process alone)
  if root then
    fmd.sys.mkdir(self.checkpoint_dir)
    fmd.sys.mkdir(self.out_dir)
  end
  local name, files = run_name(p), paths(self, p)
  local lock <close> = root and take_lock(self, files.lock, name) or nil
  local log_path, best_path, last_path, prev_path = files.log, files.best, files.last, files.prev
  check_datasets(self)
  for _, path in ipairs{log_path, best_path, last_path} do
    -- found now rather than after an epoch of training
    if (fmd.sys.is_dir(path) or os.rename(path, path)) and not fmd.sys.is_file(path) then
      error(("%s exists and is not a regular file; move it away"):format(path), 0)
    end
  end
  if root then
    clean_stale(self, {log_path, best_path, last_path, prev_path})
    read_runs(self, log_path)   -- a corrupt log is moved aside now, not after an epoch
  end
  dist.broadcast_module(self.model)   -- every rank starts from rank 0's weights
  if dist.describe(self.batch_size) then self.print(dist.describe(self.batch_size)) end
  self.log = self.log or new_log(self, p)
  self.best_acc = self.best_acc or 0
  self.epochs = epochs
  while self.epoch < epochs do
    local ep = self.epoch + 1
    self.print(("Epoch %d/%d"):format(ep, epochs))
    local t0 = fmd.sys.now()
    self.skipped = 0
    local train_loss, train_acc = self:train_one_epoch()
    local val_loss, val_acc, val_scores, val_labels = self:validate()
    local val_auc = metrics.roc_auc(val_labels, val_scores)
    local test_loss, test_acc, scores, labels = self:test()
    self.skipped = dist.sum(self.skipped)
    local auc = metrics.roc_auc(labels, scores)
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
      if root and not self.best_written and fmd.sys.is_file(best_path) then
        -- an earlier run's best: keep it rather than replace it silently
        fmd.sys.rename(best_path, prev_path)
        self.print(("kept the earlier run's checkpoint %s as %s"):format(best_path, prev_path))
      end
      self.best_written = true
      self.print(("saving checkpoint %s (val acc %.2f%%, val auc %.4f)"):format(best_path, val_acc, val_auc))
      if root then
        state_io.save(best_path, {model = self.model:state_dict()},
          {val_acc = val_acc, val_auc = val_auc, test_acc = test_acc, test_auc = auc, epoch = ep, model = p.model_name,
           dataset = p.dataset_name, optimizer = p.optimizer_name, init = p.init})
      end
    end
    if root then
      write_log(self, log_path, L)
      save_last(self, last_path)
    end
  end
  return self.log
end

return Trainer
