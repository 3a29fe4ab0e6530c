-- What the fmd.dist tests share (test_dist.lua, test_dist_train.lua):
-- running fmd under mpirun on this machine, a toy data set, tiny models.
--   local H = dofile("tests/lua/dist_helpers.lua")
--   if H.skip then print(H.skip) return end
--   local out, code, seconds = H.mpirun(2, "scripts/train.lua ...", {cwd = dir, env = "FMD_DIST_TIMEOUT=2"})
local fmd = require "fmd"

local H = {}
H.exe = package.fmd_exe
H.here = io.popen("pwd"):read("l")   -- the source tree (ctest runs tests there)

-- the tests need mpirun and an fmd built with MPI; without them they say why
if not require("fmd.core")._dist.available then
  H.skip = "skipped: fmd was built without MPI (apt-get install libopenmpi-dev openmpi-bin; rebuild)"
elseif not os.execute("command -v mpirun >/dev/null 2>&1") then
  H.skip = "skipped: mpirun is not installed (apt-get install openmpi-bin)"
end

-- Open MPI on one machine, as root in a sandbox: root allowed (CI runs as
-- root), more ranks than cores allowed, shared memory and self only (no
-- network interfaces probed). Under FMD_SANITIZE=1, LeakSanitizer skips
-- what Open MPI keeps at exit (tests/lsan_mpi.supp names only Open MPI's
-- libraries); it needs whole allocation stacks to see them, which the fast
-- unwinder does not give through libraries built without frame pointers.
H.env = ("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader "
  .. "LSAN_OPTIONS=suppressions=%s/tests/lsan_mpi.supp ASAN_OPTIONS=\"$ASAN_OPTIONS:fast_unwind_on_malloc=0\"")
  :format(H.here)

local function sh_capture(cmd)
  local t0 = fmd.sys.now()
  local p = io.popen("( " .. cmd .. " ) 2>&1; echo \"exit=$?\"")
  local out = p:read("a")
  p:close()
  return out, tonumber(out:match("exit=(%d+)%s*$")), fmd.sys.now() - t0
end
H.capture = sh_capture

-- `fmd <args>` as np ranks (a script path relative to the source tree is
-- made absolute); opts.cwd, opts.env (extra VAR=value words), opts.mpi
-- (extra mpirun options). Returns the output, exit code, seconds.
function H.mpirun(np, args, opts)
  opts = opts or {}
  args = args:gsub("^scripts/", H.here .. "/scripts/")
  return sh_capture(("cd %s && %s %s mpirun --oversubscribe %s -np %d %s %s"):format(opts.cwd or ".", H.env,
    opts.env or "", opts.mpi or "", np, H.exe, args))
end

-- the same as one plain process
function H.fmd(args, opts)
  opts = opts or {}
  args = args:gsub("^scripts/", H.here .. "/scripts/")
  return sh_capture(("cd %s && %s %s %s"):format(opts.cwd or ".", opts.env or "", H.exe, args))
end

function H.tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  fmd.sys.mkdir(dir)
  return dir
end

-- <root>/<name>/{train,val,test}/{real,fake}: dark real and bright fake
-- 32x32 PNGs (the course transform makes them 256x256); counts {train =
-- {real, fake}, ...}; name defaults to toy
function H.make_set(root, counts, name)
  fmd.manual_seed(5)
  for _, part in ipairs{"train", "val", "test"} do
    for c, cls in ipairs{{"real", 0.2}, {"fake", 0.6}} do
      local dir = ("%s/%s/%s/%s"):format(root, name or "toy", part, cls[1])
      fmd.sys.mkdir(dir)
      for i = 1, counts[part][c] do
        fmd.save_image(("%s/%03d.png"):format(dir, i), fmd.rand(3, 32, 32) * 0.3 + cls[2])
      end
    end
  end
end

-- model files found by name in <dir>/models (fmd.models looks there first)
H.MODELS = {
  -- no BatchNorm: conv, pool, linear
  Tiny = [[local nn = require "fmd.nn"
local M = nn.Module:extend("Tiny")
function M:__init() self.conv = nn.Conv2d(3, 4, 3, 2); self.pool = nn.AdaptiveAvgPool2d(4); self.fc = nn.Linear(64, 2) end
function M:forward(x) return self.fc(self.pool(self.conv(x):relu()):flatten(2)) end
return M
]],
  -- with BatchNorm
  TinyBN = [[local nn = require "fmd.nn"
local M = nn.Module:extend("TinyBN")
function M:__init()
  self.conv = nn.Conv2d(3, 4, 3, 2); self.bn = nn.BatchNorm2d(4); self.pool = nn.AdaptiveAvgPool2d(4)
  self.fc = nn.Linear(64, 2)
end
function M:forward(x) return self.fc(self.pool(self.bn(self.conv(x)):relu()):flatten(2)) end
return M
]],
  -- rank 1 fails at its second forward pass: FAIL_MODE=error raises,
  -- FAIL_MODE=hang never returns; every rank writes its pid to pid.<rank>
  Failing = [[local nn = require "fmd.nn"
local dist = require "fmd.dist"
local M = nn.Module:extend("Failing")
local calls = 0
function M:__init()
  self.pool = nn.AdaptiveAvgPool2d(4); self.fc = nn.Linear(48, 2)
  local f = assert(io.open("pid." .. dist.rank(), "w"))
  f:write(io.open("/proc/self/stat"):read("n")); f:close()
end
function M:forward(x)
  calls = calls + 1
  local mode = os.getenv("FAIL_MODE")
  if dist.rank() == 1 and calls == 2 and mode == "error" then error("rank one's model failed on purpose", 0) end
  if dist.rank() == 1 and calls == 2 and mode == "hang" then while true do end end
  return self.fc(self.pool(x):flatten(2))
end
return M
]],
}

function H.write_models(dir)
  fmd.sys.mkdir(dir .. "/models")
  for name, src in pairs(H.MODELS) do
    local f = assert(io.open(("%s/models/%s.lua"):format(dir, name), "w"))
    f:write(src)
    f:close()
  end
end

function H.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

return H
