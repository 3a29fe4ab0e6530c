-- The bad-input catalogue (issue 12): every case of tests/bad_inputs/cases.lua
-- is one test. A case gives a bad input to one entry point (a script's flags,
-- a data folder, an image, a checkpoint, a log, a Lua call, a file-system
-- fault) and the message it must get. Never allowed: exit 0, a signal, a
-- hang (timeout), a Lua traceback or position for a user's mistake, a .tmp
-- or .partial file left behind, or a file the case names as absent.
--
-- Case fields (tests/bad_inputs/cases.lua documents them too):
--   name     what is wrong
--   run      "script.lua args" run with fmd in the case's own folder;
--            {data} {ckpt} {case} {ro} {here} are replaced
--   fmd      raw arguments to fmd instead of a script (e.g. "-e '...'")
--   lua      function(ctx) called here; must raise an error
--   setup    function(ctx) before the run (ctx.file, ctx.png, ctx.dataset...)
--   expect   substring of the output (stdout + stderr) or of the Lua error
--   exit     expected exit code (default: 1 or 2)
--   usage    a usage error: stderr is one line, plus the "(see --help)" hint
--   traceback  true: the output must have a traceback (FMD_DEBUG=1 cases)
--   env      "VAR=value ..." before the command
--   readonly folder (relative to the case) mounted read-only for the run
--   absent   paths (relative to the case) that must not exist afterwards
local fmd = require "fmd"

local exe = package.fmd_exe
local here = io.popen("pwd"):read("l")   -- the source tree (ctest runs tests there)
local tmp = os.tmpname()
os.remove(tmp)
fmd.sys.mkdir(tmp)
local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function sh(cmd) assert(os.execute(cmd), cmd) end
local function write(path, bytes)
  local f = assert(io.open(path, "wb")); f:write(bytes); f:close()
end
local function read(path)
  local f = io.open(path, "rb"); if not f then return "" end
  local s = f:read("a"); f:close(); return s
end
local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end

-- shared, made once: a small generated data set and a SimpleNet checkpoint
local DATA = tmp .. "/data"
sh(("cd %s && %s %s/scripts/make_faces.lua --out data --seed 1 --train 8 --val 4 --test 4 --threads 1 "
  .. "--only synthetic_dataset >/dev/null"):format(tmp, exe, here))
local CKPT = tmp .. "/SimpleNet.safetensors"
do
  fmd.manual_seed(0)
  require("fmd.models").load_model("SimpleNet"):save(CKPT)
end

-- can this machine mount a read-only folder (user + mount namespace)?
local RO_OK = os.execute(("mkdir -p %s/rocheck && unshare -rm sh -c 'mount -t tmpfs -o ro tmpfs %s/rocheck && "
  .. "! touch %s/rocheck/x 2>/dev/null' 2>/dev/null"):format(tmp, tmp, tmp)) == true

local function make_ctx(dir)
  local ctx = {dir = dir, data = DATA, ckpt = CKPT, here = here, exe = exe}
  function ctx.path(rel) return rel:sub(1, 1) == "/" and rel or dir .. "/" .. rel end
  function ctx.file(rel, bytes)
    local p = ctx.path(rel)
    fmd.sys.mkdir(dirname(p))
    write(p, bytes)
    return p
  end
  function ctx.read(rel) return read(ctx.path(rel)) end
  function ctx.png(rel, value)
    local p = ctx.path(rel)
    fmd.sys.mkdir(dirname(p))
    fmd.save_image(p, fmd.full({3, 16, 16}, value or 0.5))
    return p
  end
  function ctx.mkdir(rel) fmd.sys.mkdir(ctx.path(rel)) end
  function ctx.fifo(rel)
    local p = ctx.path(rel)
    fmd.sys.mkdir(dirname(p))
    sh("mkfifo " .. q(p))
    return p
  end
  function ctx.sh(cmd) sh(("cd %s && %s"):format(q(dir), cmd)) end
  -- parts = {train = {real = n, fake = n}, val = ..., test = ...}: a data set
  -- of 16x16 PNGs under <case>/<root>/<name>; missing parts are not made
  function ctx.dataset(name, parts, root)
    for part, counts in pairs(parts) do
      for _, cls in ipairs{"real", "fake"} do
        ctx.mkdir(("%s/%s/%s/%s"):format(root or "data", name, part, cls))
        for i = 1, counts[cls] or 0 do
          ctx.png(("%s/%s/%s/%s/%03d.png"):format(root or "data", name, part, cls, i), cls == "real" and 0.2 or 0.8)
        end
      end
    end
  end
  -- the first bytes of the shared SimpleNet checkpoint
  function ctx.truncated_ckpt(rel, n) return ctx.file(rel, read(CKPT):sub(1, n)) end
  return ctx
end

local function subst(s, ctx)
  return (s:gsub("{(%w+)}", function(k)
    local v = ({data = DATA, ckpt = CKPT, case = ctx.dir, ro = ctx.dir .. "/ro", here = here})[k]
    return v and q(v) or "{" .. k .. "}"
  end))
end

local function leftovers(dir)
  local p = io.popen(("find %s \\( -name '*.tmp' -o -name '*.partial' -o -name '*.tmp.*' \\) -print 2>/dev/null")
    :format(q(dir)))
  local s = p:read("a"); p:close()
  return s
end

local cases = dofile(here .. "/tests/bad_inputs/cases.lua")
local n_sub, n_lua, skipped = 0, 0, 0

local function run_case(i, c)
  local dir = ("%s/case%03d"):format(tmp, i)
  fmd.sys.mkdir(dir)
  local ctx = make_ctx(dir)
  if c.setup then c.setup(ctx) end
  if c.lua then
    n_lua = n_lua + 1
    local ok, err = pcall(c.lua, ctx)
    expect(not ok, "no error (expected '" .. c.expect .. "')")
    err = tostring(err)
    expect(err:find(c.expect, 1, true), ("error '%s' does not contain '%s'"):format(err, c.expect))
    expect(not err:find("attempt to ", 1, true), "an internal Lua error, not a message: " .. err)
  else
    n_sub = n_sub + 1
    local cmd = c.run and ("%s/scripts/%s"):format(q(here), subst(c.run, ctx)) or subst(c.fmd, ctx)
    cmd = ("timeout -k 5 120 %s %s"):format(q(exe), cmd)
    if c.readonly then
      ctx.mkdir(c.readonly)
      cmd = ("unshare -rm sh -c %s"):format(q(("mount -t tmpfs -o ro tmpfs %s && exec %s"):format(q(dir .. "/" .. c.readonly), cmd)))
    end
    local full = ("cd %s && %s %s >%s/stdout 2>%s/stderr; echo $?"):format(q(dir), c.env or "", cmd, q(dir), q(dir))
    local p = io.popen(full)
    local code = tonumber(p:read("a"):match("(%d+)%s*$"))
    p:close()
    local out, errs = read(dir .. "/stdout"), read(dir .. "/stderr")
    local both = out .. errs
    local story = ("\n$ %s\nexit %s\n--- stdout\n%s--- stderr\n%s"):format(cmd, tostring(code), out, errs)
    expect(code ~= 124 and code ~= 137, "hang (timeout)" .. story)
    expect(code and code < 128, "killed by a signal" .. story)
    if c.exit then expect_eq(code, c.exit, "exit code" .. story)
    else expect(code == 1 or code == 2, "expected exit 1 or 2" .. story) end
    expect(both:find(c.expect, 1, true), ("output lacks '%s'"):format(c.expect) .. story)
    if c.traceback then
      expect(both:find("stack traceback", 1, true), "FMD_DEBUG/FMD_TRACEBACK should show the traceback" .. story)
    else
      expect(not both:find("stack traceback", 1, true), "a traceback for a user's mistake" .. story)
      expect(not errs:find("%.lua:%d+:"), "a Lua position for a user's mistake" .. story)
      expect(not errs:find("attempt to ", 1, true), "an internal Lua error" .. story)
    end
    if c.usage then
      local lines = {}
      for l in errs:gmatch("[^\n]+") do lines[#lines + 1] = l end
      expect(#lines <= 2 and (#lines < 2 or lines[2]:find("--help", 1, true)),
        "a usage error is one line and the --help hint" .. story)
    end
  end
  local left = leftovers(dir)
  expect(left == "", "left behind: " .. left)
  for _, rel in ipairs(c.absent or {}) do
    expect(not fmd.sys.is_file(ctx.path(rel)) and not fmd.sys.is_dir(ctx.path(rel)), rel .. " was written")
  end
end

for i, c in ipairs(cases) do
  if c.readonly and not RO_OK then
    skipped = skipped + 1
    io.stderr:write(("skip (no read-only mount here): %s\n"):format(c.name))
  else
    test(("bad input %d: %s"):format(i, c.name), function() run_case(i, c) end)
  end
end

test("the catalogue has at least 60 cases over every entry point", function()
  expect(#cases >= 60, #cases .. " cases")
  local seen = {}
  for _, c in ipairs(cases) do
    local s = c.run and c.run:match("^(%S+)%.lua")
    if s then seen[s] = true end
  end
  for _, s in ipairs{"train", "predict", "numerical_analysis", "saliency_map", "grad_cam_analysis",
                     "plot_accuracy_and_loss", "plot_samples", "report", "train_bonus", "bonus_main", "make_faces",
                     "explain_eval", "fetch_weights"} do
    expect(seen[s], "no case runs scripts/" .. s .. ".lua")
  end
end)

-- inputs that crashed a fuzz target (fuzz/regressions/<target>/): read
-- again through the same reader, an error message or a result, never a
-- crash (the sanitizer suite runs this under ASan + UBSan too)
test("fuzz regressions: every input that once crashed a reader is an error now", function()
  local json, cli = require "fmd.json", require "fmd.cli"
  local readers = {
    png = fmd.load_image, jpeg = fmd.load_image, safetensors = fmd.load_safetensors, pth = fmd.load_pth,
    json = function(p) return json.decode(read(p), p) end,
    cli = function(p)
      local argv = {}
      for a in (read(p) .. "\n"):gmatch("([^%z\n]*)[%z\n]") do argv[#argv + 1] = a end
      -- the flags of fuzz/fuzz_cli.c; a parse that succeeds has typed values
      local o = cli.parse(argv, {name = "x", {"--lr", type = "number", default = 0.001},
        {"--batch_size", "-b", type = "integer", default = 4, min = 1},
        {"--model", "-m", default = "SimpleNet", choices = {"SimpleNet", "XceptionBased"}},
        {"--data-root"}, {"--resume", type = "boolean"}, {"-x", type = "number"}})
      assert(math.type(o.batch_size) == "integer" and type(o.lr) == "number", "a flag lost its value")
    end,
  }
  local root, n = here .. "/fuzz/regressions", 0
  if not fmd.sys.is_dir(root) then return end
  for _, target in ipairs(fmd.sys.listdir(root)) do
    local reader = assert(readers[target], "no reader for fuzz/regressions/" .. target)
    for _, name in ipairs(fmd.sys.listdir(root .. "/" .. target)) do
      local ok, err = pcall(reader, root .. "/" .. target .. "/" .. name)
      expect(ok or (type(err) == "string" and not err:find("attempt to", 1, true)
        and (target ~= "cli" or err:find("%(see %-%-help%)$"))), name .. ": " .. tostring(err))
      n = n + 1
    end
  end
  expect(n >= 1, "no regression inputs")
end)

-- every script, including ones added later: --help is usage and exit 0; an
-- unknown flag is one line (and the --help hint), exit 1 or 2, no traceback
test("every script: --help prints usage, an unknown flag is a one-line error", function()
  local dir = tmp .. "/every"
  fmd.sys.mkdir(dir)
  local n = 0
  for _, name in ipairs(fmd.sys.listdir(here .. "/scripts")) do
    if name:match("%.lua$") then
      n = n + 1
      local base = ("cd %s && timeout -k 5 60 %s %s/scripts/%s"):format(q(dir), q(exe), q(here), name)
      local p = io.popen(base .. " --help 2>&1; echo \"exit=$?\"")
      local h = p:read("a"); p:close()
      expect(h:find("^usage: ") and h:find("exit=0", 1, true), name .. " --help:\n" .. h)
      p = io.popen(base .. " --no-such-flag x 2>&1 >/dev/null; echo \"exit=$?\"")
      local e = p:read("a"); p:close()
      local code = tonumber(e:match("exit=(%d+)%s*$"))
      local lines = select(2, e:gsub("\n", "")) - 1
      expect((code == 1 or code == 2) and lines >= 1 and lines <= 2 and not e:find("traceback", 1, true)
        and not e:find("%.lua:%d+:"), name .. " --no-such-flag:\n" .. e)
    end
  end
  expect(n >= 12, "scripts found: " .. n)
end)

io.stderr:write(("bad inputs: %d cases (%d runs of fmd, %d Lua calls, %d skipped)\n"):format(#cases, n_sub, n_lua,
  skipped))
os.execute("rm -rf " .. q(tmp))
