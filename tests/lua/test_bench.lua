-- bench/fmd_bench.lua, the fmd side of bench/compare.sh (docs/performance.md):
-- one JSON line per run with the fields compare.sh reads, MACs equal to
-- models.count_macs, the real-loading mode on a tiny generated folder, and
-- one-line usage errors. (The PyTorch side is not run: Python is no
-- dependency of the tests.) And the other benchmarks of bench/ (kernels,
-- loader, metrics) answer --help and bad flags from there.
local fmd = require "fmd"
local json = require "fmd.json"
local models = require "fmd.models"

local exe = package.fmd_exe
local here = io.popen("pwd"):read("l")   -- the source tree (ctest runs tests there)

local function run(args)
  local p = io.popen(("%s %s/bench/fmd_bench.lua %s 2>&1; echo \"exit=$?\""):format(exe, here, args))
  local out = p:read("a"); p:close()
  return out, tonumber(out:match("exit=(%d+)%s*$"))
end

local function row(args)
  local out, code = run(args)
  expect(code == 0, ("fmd_bench %s failed:\n%s"):format(args, out))
  local line = out:match("(%b{})")
  expect(line, "no JSON line in:\n" .. out)
  return json.decode(line)
end

local FIELDS = {"side", "model", "mode", "batch", "size", "threads", "steps", "median_s", "times_s",
                "images_per_s", "macs", "gflops", "peak_rss_gb", "gemm"}

test("train and eval rows carry every field; MACs are models.count_macs of the batch", function()
  local r = row("--model XceptionBased --mode train --batch 2 --size 64 --steps 2 --warmup 1 --threads 1")
  for _, k in ipairs(FIELDS) do expect(r[k] ~= nil, "missing " .. k) end
  expect(r.side == "fmd" and r.model == "XceptionBased" and r.mode == "train" and r.batch == 2 and r.steps == 2)
  expect(#r.times_s == 2 and r.median_s > 0 and r.peak_rss_gb > 0.01)
  local m = models.load_model("XceptionBased", {pretrained = false, quiet = true})
  expect_eq(r.macs, 2 * models.count_macs(m, {1, 3, 64, 64}))
  expect_near(r.images_per_s, 2 / r.median_s, 1e-3)
  expect_near(r.gflops, 3 * 2 * r.macs / r.median_s / 1e9, 1e-3)   -- training = 3 x forward
  local e = row("--model XceptionBased --mode eval --batch 1 --size 64 --steps 1 --warmup 0 --threads 1")
  expect(e.mode == "eval" and #e.times_s == 1)
  expect_near(e.gflops, 2 * e.macs / e.median_s / 1e9, 1e-3)
end)

test("MobileNetBased rows run at its 224x224 input by default", function()
  local r = row("--model MobileNetBased --mode eval --batch 1 --steps 1 --warmup 0 --threads 1")
  expect(r.model == "MobileNetBased" and r.size == 224 and r.median_s > 0)
  local m = models.load_model("MobileNetBased", {pretrained = false, quiet = true})
  expect_eq(r.macs, models.count_macs(m, {1, 3, 224, 224}))
  local t = row("--model MobileNetBased --mode train --batch 2 --size 64 --steps 1 --warmup 0 --threads 1")
  expect(t.mode == "train" and t.size == 64 and t.median_s > 0)
end)

test("data mode reads batches from a folder of real/ and fake/ images", function()
  local dir = os.tmpname()
  os.remove(dir)
  for _, c in ipairs({"real", "fake"}) do
    fmd.sys.mkdir(dir .. "/" .. c)
    for i = 1, 2 do fmd.save_image(("%s/%s/%d.png"):format(dir, c, i), fmd.rand(3, 40, 40)) end
  end
  local r = row(("--model SimpleNet --mode data --data %s --batch 2 --steps 1 --warmup 0 --threads 1 --workers 1"):format(dir))
  expect(r.mode == "data" and r.steps == 1 and r.median_s > 0)
  expect(r.wait_s and r.wait_s >= 0 and r.wait_s <= r.median_s, "wait_s is part of the step")
  -- more steps than the folder has batches: said, not a short row
  local out, code = run(("--model SimpleNet --mode data --data %s --batch 2 --steps 5 --warmup 0"):format(dir))
  expect(code ~= 0 and out:find("fewer than", 1, true), out)
  os.execute(("rm -rf '%s'"):format(dir))
end)

test("mistakes are one line and the --help hint, no traceback", function()
  for _, args in ipairs({"--mode foo", "--model Foo", "--batch 0", "--steps x", "--bogus 1", "--batch",
                         "--mode data", "--mode data --data /nonexistent/dir"}) do
    local out, code = run(args)
    local lines = {}
    for l in out:gmatch("[^\n]+") do if not l:find("^exit=") then lines[#lines + 1] = l end end
    expect(code ~= 0, args .. ": exit 0")
    expect(#lines == 2 and lines[2]:find("--help", 1, true) and not out:find("traceback"),
      args .. ":\n" .. out)
  end
  local out, code = run("--help")
  expect(code == 0 and out:find("^usage: "), out)
end)

test("the GEMM kernel is reported, and FMD_GEMM chooses it", function()
  local function backend(env)
    local p = io.popen(("%s %s -e 'io.write(fmd.gemm_backend())' 2>&1"):format(env, exe))
    local out = p:read("a"); p:close()
    return out
  end
  local auto = fmd.gemm_backend()
  expect(auto == "fmd-avx512" or auto == "openblas", "unknown backend " .. auto)
  expect_eq(backend("FMD_GEMM=openblas"), "openblas")
  local forced = backend("FMD_GEMM=avx512")
  -- avx512 is taken only where the CPU has it; auto never picks it elsewhere
  expect(forced == "fmd-avx512" or (forced == "openblas" and auto == "openblas"), "FMD_GEMM=avx512 gave " .. forced)
  expect_eq(backend("FMD_GEMM="), auto)
  local r = row("--model XceptionBased --mode eval --batch 1 --size 64 --steps 1 --warmup 0 --threads 1")
  expect_eq(r.gemm, auto)
end)

test("bench/kernels.lua, loader.lua and metrics.lua run from bench/: usage, one-line mistakes, a small metrics run", function()
  local function sh(cmd)
    local p = io.popen(("cd %s && %s 2>&1; echo \"exit=$?\""):format(here, cmd))
    local out = p:read("a"); p:close()
    return out, tonumber(out:match("exit=(%d+)%s*$"))
  end
  for _, name in ipairs{"kernels", "loader", "metrics"} do
    local out, code = sh(("%s bench/%s.lua --help"):format(exe, name))
    expect(code == 0 and out:find("^usage: fmd bench/" .. name .. "%.lua"), out)
  end
  for _, cmd in ipairs{"bench/kernels.lua --bogus 1", "bench/loader.lua --bogus 1", "bench/metrics.lua 1"} do
    local out, code = sh(exe .. " " .. cmd)
    expect(code ~= 0 and out:find("usage: fmd bench/", 1, true) and not out:find("traceback"), cmd .. ":\n" .. out)
  end
  local out, code = sh(exe .. " bench/metrics.lua 1000")
  expect(code == 0 and out:find("1000 scores as tensors:", 1, true) and out:find("all together", 1, true), out)
end)
