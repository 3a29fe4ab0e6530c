-- Crash-safe runs (issue 12): the run lock, and a training killed with
-- SIGINT, SIGTERM and SIGKILL at random moments and in the middle of
-- checkpoint writes. After every kill each file is a complete old or new
-- version, and --resume ends with exactly (bitwise) the weights, optimizer
-- state and log of an uninterrupted run with the same seed.
-- SimpleNet on a tiny generated set (8 train, 4 val, 4 test images, batch 4,
-- one thread): about 3 s an epoch (10 s under ASan), 270 MB of checkpoints
-- written per epoch. Kill moments: "time" = at a random point of the epoch
-- after the attempt's first (so each such kill leaves one more epoch to
-- resume from), "early" = in the first second (start-up), "last" = while
-- the resumable state's .tmp is written, "write" = while any .tmp is.
local fmd = require "fmd"
local json = require "fmd.json"

local exe = package.fmd_exe
local here = io.popen("pwd"):read("l")   -- the source tree (ctest runs tests there)
local tmp = os.tmpname()
os.remove(tmp)
fmd.sys.mkdir(tmp)
local function sh(cmd) assert(os.execute(cmd), cmd) end
local function capture(cmd)
  local p = io.popen("( " .. cmd .. " ) 2>&1; echo \"exit=$?\"")
  local out = p:read("a"); p:close()
  return out, tonumber(out:match("exit=(%d+)%s*$"))
end
local function read(path) local f = assert(io.open(path, "rb")); local s = f:read("a"); f:close(); return s end

sh(("cd %s && %s %s/scripts/make_faces.lua --out data --seed 1 --train 8 --val 4 --test 4 --threads 1 "
  .. "--only synthetic_dataset >/dev/null"):format(tmp, exe, here))
local RUN = "synthetic_dataset_SimpleNet_Adam"
local EPOCHS = 5
local ARGS = ("--data-root %s/data -d synthetic_dataset -m SimpleNet -b 4 -e %d -o Adam --lr 1e-4 "
  .. "--workers 1 --threads 1 --seed 1"):format(tmp, EPOCHS)
local function train_line(extra) return ("%s %s/scripts/train.lua %s %s"):format(exe, here, ARGS, extra or "") end
local function train_cmd(dir, extra)
  fmd.sys.mkdir(dir)
  return ("cd %s && exec %s"):format(dir, train_line(extra))
end

-- ------------------------------------------------------------- the lock
test("a second training of the same run is refused while the first holds out/<run>.lock", function()
  local dir = tmp .. "/lock"
  fmd.sys.mkdir(dir .. "/out")
  local lock = dir .. "/out/" .. RUN .. ".lock"
  local fd = assert(fmd.sys.lock_file(lock))   -- this process trains it
  local mine = read(lock):match("%d+")
  local out, code = capture(train_cmd(dir, "-e 1"))
  fmd.sys.unlock_file(fd, lock)
  expect_eq(code, 1, out)
  expect(out:find(("another training of %s is running (process %s holds %s)"):format(RUN, mine, "out/" .. RUN
    .. ".lock"), 1, true), out)
  expect(not out:find("traceback", 1, true), out)
  -- nothing of the run was written
  expect(not fmd.sys.is_dir(dir .. "/checkpoints") or #fmd.sys.listdir(dir .. "/checkpoints") == 0)
  expect_eq(#fmd.sys.listdir(dir .. "/out"), 0)
end)

test("a lock left by a dead process is taken over with a message, and released at the end", function()
  local dir = tmp .. "/stale"
  fmd.sys.mkdir(dir .. "/out")
  local dead = io.popen("sh -c 'echo $$'"):read("l")   -- a pid that has ended
  local f = assert(io.open(dir .. "/out/" .. RUN .. ".lock", "w")); f:write(dead, "\n"); f:close()
  local out, code = capture(train_cmd(dir, "-e 1"))
  expect_eq(code, 0, out)
  expect(out:find(("took over the lock out/%s.lock of process %s"):format(RUN, dead), 1, true), out)
  expect(not fmd.sys.is_file(dir .. "/out/" .. RUN .. ".lock"), "the lock is removed at the end")
end)

test("two trainings started together: one runs, the other is refused", function()
  local dir = tmp .. "/two"
  fmd.sys.mkdir(dir)
  local line = train_line("-e 1")
  local out = capture(("cd %s && (%s > a.log 2>&1; echo \"a=$?\" >> a.log) & (sleep 0.3; cd %s && %s > b.log 2>&1; "
    .. "echo \"b=$?\" >> b.log); wait"):format(dir, line, dir, line))
  local a, b = read(dir .. "/a.log"), read(dir .. "/b.log")
  local ok_a, ok_b = a:find("a=0", 1, true) ~= nil, b:find("b=0", 1, true) ~= nil
  expect(ok_a ~= ok_b, "exactly one succeeds:\n" .. a .. "\n" .. b .. "\n" .. out)
  local refused = ok_a and b or a
  expect(refused:find("another training of " .. RUN .. " is running", 1, true), refused)
end)

-- ------------------------------------------------------------- kill test
local function tensors_equal(pa, pb)
  local ta, ma = fmd.load_safetensors(pa)
  local tb, mb = fmd.load_safetensors(pb)
  local n = 0
  for k, a in pairs(ta) do
    local b = tb[k]
    if not b then return false, "missing " .. k end
    if a:numel() ~= b:numel() then return false, "size of " .. k end
    if a:numel() > 0 and (a - b):abs():max():item() ~= 0 then return false, k .. " differs" end
    n = n + 1
  end
  for k in pairs(tb) do if not ta[k] then return false, "extra " .. k end end
  return true, n, ma, mb
end

-- every file of the run is complete: checkpoints load, the log is a list
local function check_files(dir, last_epoch)
  for _, name in ipairs(fmd.sys.listdir(dir .. "/checkpoints")) do
    if name:match("%.safetensors$") then
      local ok, t, meta = pcall(fmd.load_safetensors, dir .. "/checkpoints/" .. name)
      expect(ok, ("%s does not load after a kill: %s"):format(name, tostring(t)))
      expect(next(t) ~= nil, name .. " has no tensors")
      if name == RUN .. ".last.safetensors" then
        local e = tonumber(meta.epoch)
        expect(e >= last_epoch, ("%s went back from epoch %d to %d"):format(name, last_epoch, e))
        last_epoch = e
      end
    else
      expect(name:match("%.safetensors%.tmp$"), "unexpected file " .. name)
    end
  end
  for _, name in ipairs(fmd.sys.listdir(dir .. "/out")) do
    expect(not name:find("corrupt", 1, true), "a kill left a log that does not parse: " .. name)
    if name:match("%.json$") then
      local runs = json.read_file(dir .. "/out/" .. name)
      expect(#runs >= 1, name .. " is not a list of runs")
    end
  end
  return last_epoch
end

test("SIGINT, SIGTERM, SIGKILL at random moments and mid-write: files stay whole, --resume is exact", function()
  local ref = tmp .. "/ref"
  local t0 = fmd.sys.now()
  local out, code = capture(train_cmd(ref))
  local full = fmd.sys.now() - t0
  expect_eq(code, 0, out)
  local seed = os.time()
  math.randomseed(seed)
  local dir = tmp .. "/killed"
  fmd.sys.mkdir(dir .. "/checkpoints"); fmd.sys.mkdir(dir .. "/out")
  local plan = {{"INT", "time"}, {"TERM", "last"}, {"KILL", "time"}, {"INT", "write"}, {"TERM", "early"},
                {"KILL", "last"}, {"TERM", "time"}, {"KILL", "write"}}
  local per_epoch = full / EPOCHS
  local lock = dir .. "/out/" .. RUN .. ".lock"
  local last_epoch, took_over, log, stale, kills = 0, false, {}, false, 0
  local function attempt(i, sig, mode)
    local resume = fmd.sys.is_file(dir .. "/checkpoints/" .. RUN .. ".last.safetensors") and "--resume" or ""
    local logf = ("attempt%d.log"):format(i)
    -- shell builtins where the poll is fast (a 200 MB write takes ~0.1 s)
    local function after_epochs(k)   -- until the attempt has printed k "Epoch" lines
      return ("while kill -0 $pid 2>/dev/null; do n=$(grep -c '^Epoch ' %s 2>/dev/null); "
        .. "[ \"${n:-0}\" -ge %d ] && break; sleep 0.05; done; "):format(logf, k)
    end
    local function until_file(glob)
      return ("while kill -0 $pid 2>/dev/null; do for f in %s; do [ -e \"$f\" ] && break 2; done; sleep 0.01; done")
        :format(glob)
    end
    local wait
    if mode == "time" then
      wait = after_epochs(2) .. ("sleep %.2f"):format(math.random() * 1.2 * per_epoch)
    elseif mode == "early" then
      wait = ("sleep %.2f"):format(math.random())
    else
      -- once training has started: a .tmp left by the previous kill is there
      -- until the trainer's start-up removes it
      wait = after_epochs(1) .. until_file(mode == "last" and "checkpoints/*.last.safetensors.tmp" or "checkpoints/*.tmp")
    end
    local cmd = ("cd %s && { %s > attempt%d.log 2>&1 & pid=$!; %s; "
      .. "kill -%s $pid 2>/dev/null; wait $pid; }"):format(dir, train_line(resume), i, wait, sig)
    local o, c = capture(cmd)
    if os.getenv("KILL_DEBUG") then io.stderr:write(cmd, "\n", o, "\n") end
    local f = io.open(dir .. ("/attempt%d.log"):format(i), "rb")   -- none when killed before the redirect
    local text = f and f:read("a") or ""
    if f then f:close() end
    log[#log + 1] = ("attempt %d: SIG%s at %s%s: exit %s"):format(i, sig, mode, resume ~= "" and " (resume)" or "", c)
    -- never a crash: exit 0 (finished first), 1 (SIGINT: an error), 128+TERM/KILL,
    -- 130 (SIGINT during start-up, before fmd handles it)
    expect(c == 0 or c == 1 or c == 130 or c == 143 or c == 137, ("%s\n%s\n%s"):format(log[#log], o, text))
    if c == 1 then
      expect(text:find("interrupted", 1, true), "exit 1 without an interrupt:\n" .. text)
      expect(not fmd.sys.is_file(dir .. "/out/" .. RUN .. ".lock"), "SIGINT released the lock")
    end
    -- a run killed while holding the lock left it (with its pid): the next
    -- run that gets that far takes it over and says so
    local holder = fmd.sys.is_file(lock) and read(lock):match("%d+")
    if stale then
      if text:find(("took over the lock out/%s.lock of process %s"):format(RUN, stale), 1, true) then
        took_over = true
      else
        expect(holder == stale, ("the lock of killed process %s was replaced without a message:\n%s"):format(stale, text))
      end
    end
    if c == 137 or c == 143 or c == 130 then stale = holder or stale
    elseif holder ~= stale then stale = false end
    if c ~= 0 then kills = kills + 1 end
    last_epoch = check_files(dir, last_epoch)
    return c == 0
  end
  local done = false
  for i, p in ipairs(plan) do
    done = attempt(i, p[1], p[2])
    if done then break end
  end
  if not done then
    local resume = fmd.sys.is_file(dir .. "/checkpoints/" .. RUN .. ".last.safetensors") and "--resume" or ""
    out, code = capture(train_cmd(dir, resume))
    expect_eq(code, 0, out)
    if stale then
      expect(out:find(("took over the lock out/%s.lock of process %s"):format(RUN, stale), 1, true),
        "the lock of the killed run was not taken over:\n" .. out)
      took_over = true
    end
    log[#log + 1] = "final run " .. resume
    expect(not out:find("Epoch 1/", 1, true) or resume == "", "a resume starts again at epoch 1:\n" .. out)
  end
  log[#log + 1] = took_over and "a killed run's lock was taken over" or "(no kill left a lock)"
  local story = ("seed %d, uninterrupted run %.1f s\n%s"):format(seed, full, table.concat(log, "\n"))
  expect(kills >= 3, "fewer than 3 attempts were killed before the run ended\n" .. story)
  -- exactly the uninterrupted run: weights and optimizer state, bit for bit
  local same, n, ma, mb = tensors_equal(dir .. "/checkpoints/" .. RUN .. ".last.safetensors",
                                        ref .. "/checkpoints/" .. RUN .. ".last.safetensors")
  expect(same, ("resumed state differs from the uninterrupted run: %s\n%s"):format(tostring(n), story))
  expect_eq(tonumber(ma.epoch), EPOCHS)
  expect_eq(ma.optimizer_state, mb.optimizer_state, "optimizer state (steps)")
  local best_same, why = tensors_equal(dir .. "/checkpoints/" .. RUN .. ".safetensors",
                                       ref .. "/checkpoints/" .. RUN .. ".safetensors")
  expect(best_same, "best checkpoint differs: " .. tostring(why) .. "\n" .. story)
  -- the log's last run has the uninterrupted run's numbers
  local a = json.read_file(dir .. "/out/" .. RUN .. ".json")
  local b = json.read_file(ref .. "/out/" .. RUN .. ".json")
  local ra, rb = a[#a], b[#b]
  for _, k in ipairs{"train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "test_auc"} do
    expect_eq(#ra[k], EPOCHS, k)
    for e = 1, EPOCHS do expect_eq(ra[k][e], rb[k][e], ("%s[%d]\n%s"):format(k, e, story)) end
  end
  expect(not fmd.sys.is_file(dir .. "/out/" .. RUN .. ".lock"), "lock released after the last run")
  for _, name in ipairs(fmd.sys.listdir(dir .. "/checkpoints")) do
    expect(not name:match("%.tmp$"), "a .tmp is left after the last run: " .. name)
  end
  io.stderr:write("kill test: " .. story:gsub("\n", "; ") .. "\n")
end)

os.execute("rm -rf " .. tmp)
