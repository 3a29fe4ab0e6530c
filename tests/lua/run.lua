-- Lua test runner: fmd tests/lua/run.lua FILE...
-- A test file calls test(name, fn) for each case; inside, the helpers below
-- raise on failure; numgrad/gradcheck compare backward with finite
-- differences. Prints one line per failure and "N passed, N failed".
local passed, failed = 0, 0
local current_file

function test(name, fn)
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    passed = passed + 1
  else
    failed = failed + 1
    io.stderr:write(("FAIL %s: %s\n%s\n"):format(current_file, name, err))
  end
end

function expect(cond, msg)
  if not cond then error(msg or "expectation failed", 2) end
end

function expect_eq(a, b, msg)
  if a ~= b then
    error(("%sexpected %s, got %s"):format(msg and msg .. ": " or "", tostring(b), tostring(a)), 2)
  end
end

-- numbers or tensors; relative+absolute tolerance |a-b| <= tol*(1+|b|)
function expect_near(a, b, tol, msg)
  tol = tol or 1e-5
  local fmd = require "fmd"
  if fmd.is_tensor(a) or fmd.is_tensor(b) then
    a = fmd.is_tensor(a) and a or fmd.tensor(a)
    b = fmd.is_tensor(b) and b or fmd.tensor(b)
    if a:numel() ~= b:numel() then
      error(("%ssizes differ: %s vs %s"):format(msg and msg .. ": " or "",
        fmd.shape_str(a), fmd.shape_str(b)), 2)
    end
    local worst, at = fmd.max_rel_err(a, b)
    if worst > tol then
      error(("%smax error %.3g > %.3g at element %d"):format(msg and msg .. ": " or "", worst, tol, at), 2)
    end
    return
  end
  if math.abs(a - b) > tol * (1 + math.abs(b)) or a ~= a then
    error(("%sexpected %.8g, got %.8g"):format(msg and msg .. ": " or "", b, a), 2)
  end
end

-- writes bytes to path (a test's scratch file) and returns path
function write_file(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
  return path
end

-- fn must raise an error whose message contains `plain` (plain text)
function expect_error(fn, plain)
  local ok, err = pcall(fn)
  if ok then error("expected an error" .. (plain and (" containing '" .. plain .. "'") or ""), 2) end
  err = tostring(err)
  if plain and not err:find(plain, 1, true) then
    error(("error '%s' does not contain '%s'"):format(err, plain), 2)
  end
  return err
end

-- central differences of scalar f at x (float32: step 1e-2, relative metric)
function numgrad(f, x, eps)
  local fmd = require "fmd"
  eps = eps or 1e-2
  local g = fmd.zeros(x:size())
  local flat, gflat = x:view(-1), g:view(-1)
  for i = 1, x:numel() do
    local v = flat[i]
    flat[i] = v + eps; local fp = fmd.no_grad(f):item()
    flat[i] = v - eps; local fm = fmd.no_grad(f):item()
    flat[i] = v
    gflat[i] = (fp - fm) / (2 * eps)
  end
  return g
end

-- backward of scalar f() against numgrad for each input tensor
function gradcheck(name, f, inputs, tol)
  for _, x in ipairs(inputs) do x.grad = nil; x.requires_grad = true end
  f():backward()
  for k, x in ipairs(inputs) do
    expect_near(x.grad, numgrad(f, x), tol or 1e-2, name .. " input " .. k)
  end
end

-- a file of many fixture cases (write_cases in tests/fixtures/safetensors_writer.py):
-- tensors "<case>/<name>", metadata "<case>/<key>". Returns the cases sorted
-- by name, each {name =, tensors =, meta =}, and the same cases keyed by name.
function load_fixture_cases(path)
  local t, md = require("fmd").load_safetensors(path)
  local list, by_name = {}, {}
  local function split(key)
    local name, rest = key:match("^([^/]+)/(.+)$")
    if not name then error(("%s: '%s' is not <case>/<name>"):format(path, key), 3) end
    if not by_name[name] then
      by_name[name] = {name = name, tensors = {}, meta = {}}
      list[#list + 1] = by_name[name]
    end
    return by_name[name], rest
  end
  for k, v in pairs(t) do local c, n = split(k); c.tensors[n] = v end
  for k, v in pairs(md) do local c, n = split(k); c.meta[n] = v end
  table.sort(list, function(x, y) return x.name < y.name end)
  return list, by_name
end

-- script_sandbox(): a fresh temporary folder and two functions that run
-- `fmd scripts/<script> <args>` of this source tree with it as the current
-- folder (ctest runs the tests from the source tree). run returns the
-- output (stdout and stderr) and the exit code; ok_run returns the output
-- and raises, with the output, unless the exit code is 0.
function script_sandbox()
  local fmd = require "fmd"
  local here = io.popen("pwd"):read("l")
  local dir = os.tmpname()
  os.remove(dir)
  fmd.sys.mkdir(dir)
  local function run(script, args)
    local p = io.popen(("cd %s && %s %s/scripts/%s %s 2>&1; echo \"exit=$?\""):format(dir, package.fmd_exe, here,
      script, args or ""))
    local out = p:read("a"); p:close()
    return out, tonumber(out:match("exit=(%d+)%s*$"))
  end
  local function ok_run(script, args)
    local out, code = run(script, args)
    if code ~= 0 then error(("%s %s failed (exit %s):\n%s"):format(script, args, tostring(code), out), 2) end
    return out
  end
  return dir, run, ok_run
end

for _, f in ipairs(arg) do
  current_file = f
  local chunk, err = loadfile(f)
  if not chunk then
    failed = failed + 1
    io.stderr:write("FAIL " .. f .. ": " .. err .. "\n")
  else
    local ok, e = xpcall(chunk, debug.traceback)
    if not ok then
      failed = failed + 1
      io.stderr:write("FAIL " .. f .. " (top level): " .. e .. "\n")
    end
  end
end
print(("%d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)
