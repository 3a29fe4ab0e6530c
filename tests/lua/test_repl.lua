-- The REPL driven through stdin: auto-print, multi-line input, errors that
-- do not end the session; and script/-e/exit-status behaviour.
local exe = package.fmd_exe

local function run(cmd, input)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "w")); f:write(input or ""); f:close()
  local p = assert(io.popen(("%s < %s 2>&1; echo \"exit=$?\""):format(cmd, tmp)))
  local out = p:read("a"); p:close()
  os.remove(tmp)
  return out
end

test("repl auto-prints, takes multi-line chunks, survives errors", function()
  local out = run(exe, table.concat({
    "1 + 2",
    "function sq(x)",
    "  return x * x",
    "end",
    "sq(7)",
    "error('oops')",
    "fmd.zeros(2, 2) + 1",
    "nosuch.field",
    "print('still here')",
  }, "\n") .. "\n")
  expect(out:find("\n?3\n"), out)
  expect(out:find("49", 1, true), out)
  expect(out:find("oops", 1, true), out)
  expect(out:find("[[1., 1.],", 1, true), out)
  expect(out:find("attempt to index a nil value", 1, true), out)
  expect(out:find("still here", 1, true), out)
  expect(out:find("exit=0", 1, true), out)
end)

test("script errors exit non-zero with file:line: message", function()
  local tmp = os.tmpname() .. ".lua"
  local f = assert(io.open(tmp, "w")); f:write("local x = 1\nerror('bad thing')\n"); f:close()
  local out = run(exe .. " " .. tmp)
  os.remove(tmp)
  expect(out:find(tmp .. ":2: bad thing", 1, true), out)
  expect(out:find("exit=1", 1, true), out)
end)

test("arg table, -e, --version, unknown flag", function()
  local tmp = os.tmpname() .. ".lua"
  local f = assert(io.open(tmp, "w")); f:write("print(arg[0] ~= nil, arg[1], arg[2], select('#', ...))\n"); f:close()
  local out = run(exe .. " " .. tmp .. " a b")
  os.remove(tmp)
  expect(out:find("true\ta\tb\t2", 1, true), out)
  expect(run(exe .. " -e 'print(fmd.ones(3):sum():item())'"):find("3.0", 1, true))
  expect(run(exe .. " --version"):find("fmd %d"))
  local bad = run(exe .. " --bogus")
  expect(bad:find("unknown option '--bogus'", 1, true) and bad:find("exit=1", 1, true), bad)
end)

test("-i runs the script then the REPL", function()
  local tmp = os.tmpname() .. ".lua"
  local f = assert(io.open(tmp, "w")); f:write("answer = 42\n"); f:close()
  local out = run(exe .. " -i " .. tmp, "answer + 1\n")
  os.remove(tmp)
  expect(out:find("43", 1, true), out)
end)

test("after cmake --install, fmd finds its modules without environment variables", function()
  local build = exe:match("^(.*)/[^/]+$")
  local prefix = os.tmpname()
  os.remove(prefix)
  local ok = os.execute(("cmake --install %s --prefix %s > /dev/null 2>&1"):format(build, prefix))
  expect(ok, "cmake --install failed")
  local out = run(("cd / && env -u FMD_DATA %s/bin/fmd -e 'print(package.fmd_lib); print(require(\"fmd.nn\").Linear ~= nil)'")
    :format(prefix))
  os.execute("rm -rf " .. prefix)
  expect(out:find(prefix .. "/bin/../share/fmd/lua", 1, true), out)
  expect(out:find("true\nexit=0", 1, true), out)
end)

test("Ctrl-C interrupts a long computation and returns to the prompt", function()
  local tmp = os.tmpname()
  local cmd = ([[sh -c 'printf "while true do end\nprint(\"after\" .. \"wards\")\n" | %s > %s 2>&1 & pid=$!; sleep 1; kill -INT $pid; wait $pid; echo "exit=$?" >> %s']])
    :format(exe, tmp, tmp)
  os.execute(cmd)
  local f = assert(io.open(tmp)); local out = f:read("a"); f:close()
  os.remove(tmp)
  expect(out:find("interrupted!", 1, true), out)
  expect(out:find("afterwards", 1, true), out)
  expect(out:find("exit=0", 1, true), out)
end)
