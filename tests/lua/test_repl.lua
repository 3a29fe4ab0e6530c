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

test("a mistake at the prompt or in -e is one line, not a traceback", function()
  local out = run(exe, "x = nil + 1\nrequire('fmd.nn').Linear(2, 'a')\n")
  expect(out:find("fmd: stdin:1: attempt to perform arithmetic on a nil value\n", 1, true), out)
  expect(out:find("fmd: nn.Linear: in_features and out_features must be positive integers, got 2 and a\n", 1, true), out)
  expect(not out:find("stack traceback", 1, true), out)
  out = run(exe .. " -e 'x = nil + 1'")
  expect(out:find("(command line):1: attempt to perform arithmetic", 1, true) and not out:find("stack traceback", 1, true), out)
  expect(not out:find("exit=0", 1, true), out)
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

test("after cmake --install, fmd finds its modules, scripts (fmd train ...) and docs without environment variables", function()
  local build = exe:match("^(.*)/[^/]+$")
  local prefix = os.tmpname()
  os.remove(prefix)
  local ok = os.execute(("cmake --install %s --prefix %s > /dev/null 2>&1"):format(build, prefix))
  expect(ok, "cmake --install failed")
  local fmd_bin = prefix .. "/bin/fmd"
  local out = run(("cd / && env -u FMD_DATA %s -e 'print(package.fmd_lib); print(package.fmd_scripts); print(require(\"fmd.nn\").Linear ~= nil)'")
    :format(fmd_bin))
  local train = run(("cd / && %s train --help"):format(fmd_bin))
  local predict = run(("cd / && %s predict --help"):format(fmd_bin))
  local unknown = run(("cd / && %s trian -e 1"):format(fmd_bin))
  local helped = run(("cd / && %s"):format(fmd_bin), "?fmd.zeros\n")
  local installed_sh = io.open(prefix .. "/share/fmd/scripts/bootstrap.sh")
  os.execute("rm -rf " .. prefix)
  expect(out:find(prefix .. "/bin/../share/fmd/lua\n" .. prefix .. "/bin/../share/fmd/scripts\n", 1, true), out)
  expect(out:find("true\nexit=0", 1, true), out)
  expect(train:find("usage: fmd scripts/train.lua", 1, true) and train:find("exit=0", 1, true), train)
  expect(predict:find("exit=0", 1, true), predict)
  expect(unknown:find("fmd: 'trian' is neither a file nor a command; commands (scripts in " .. prefix, 1, true)
    and unknown:find("predict, ", 1, true) and unknown:find("train", 1, true) and unknown:find("exit=1", 1, true), unknown)
  expect(helped:find("fmd.zeros(size...) → Tensor", 1, true), "help from the installed docs: " .. helped)
  expect(installed_sh == nil, "only the Lua scripts are installed")
end)

test("fmd <command> runs scripts/<command>.lua from the source tree; a file of that name here wins", function()
  local out = run(exe .. " make_faces --help")
  expect(out:find("usage: fmd scripts/make_faces.lua", 1, true) and out:find("exit=0", 1, true), out)
  local dir = os.tmpname(); os.remove(dir); os.execute("mkdir " .. dir)
  local f = assert(io.open(dir .. "/train", "w")); f:write("print('my own train, arg[1] = ' .. arg[1])\n"); f:close()
  local mine = run(("cd %s && %s train x"):format(dir, exe))
  os.execute("rm -rf " .. dir)
  expect(mine:find("my own train, arg[1] = x", 1, true), mine)
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

test("pretty printing: sizes, nested tables with sorted keys, modules, m:eval() in one line", function()
  local out = run(exe, table.concat({
    "fmd.zeros(2, 3):size()",
    "fmd.zeros(4).shape",
    "{b = 2, a = {1, 2, 3}, [10] = 'x', 'first', deep = {a = {b = {c = 1}}}}",
    "m = fmd.nn.Sequential(fmd.nn.Linear(2, 3), fmd.nn.ReLU())",
    "m",
    "m:eval()",
    "m:train()",
    "'plain string'",
    "fmd.zeros(3)",
    "fmd.zeros(5);",
    "_:size()",
    "fmd.nn.Linear",
  }, "\n") .. "\n")
  expect(out:find("[2 x 3]\n[4]\n", 1, true), out)
  expect(out:find('{"first", [10] = "x", a = {1, 2, 3}, b = 2, deep = {a = {...1 entry}}}', 1, true), out)
  expect(out:find("Sequential(\n  (0): Linear(in_features=2, out_features=3, bias=True)\n  (1): ReLU()\n)", 1, true), out)
  expect(out:find("\nSequential (2 children, 9 parameters, eval mode)\n", 1, true), out)
  expect(out:find("\nSequential (2 children, 9 parameters, train mode)\n", 1, true), out)
  expect(out:find("\nplain string\n", 1, true), out)
  expect(not out:find("[0., 0., 0., 0., 0.]", 1, true), "a trailing ; hides the result: " .. out)
  expect(out:find("\n[3]\n", 1, true), "_ holds the last result: " .. out)
  expect(out:find("class nn.Linear", 1, true), out)
  expect(not out:find("\27[", 1, true), "no colour when piped: " .. out)
end)

test("printed results do not keep a big tensor alive", function()
  local out = run(exe, table.concat({
    "collectgarbage(); m0 = fmd.memory_in_use()",
    "x = fmd.zeros(1e7)",
    "x",
    "print('held', fmd.memory_in_use() - m0)",
    "x = nil",
    "collectgarbage();",
    "print('after', fmd.memory_in_use() - m0)",
    "small = fmd.ones(3)",
    "small",
    "small = nil",
    "collectgarbage();",
    "_:sum():item()",
  }, "\n") .. "\n")
  expect(out:find("held\t40000000", 1, true), out)
  expect(out:find("after\t0\n", 1, true), out)
  expect(out:find("\n3.0\n", 1, true), "a small result stays in _: " .. out)
end)

test("top-level locals persist across lines; locals in blocks stay local", function()
  local out = run(exe, table.concat({
    "local x = 5",
    "x + 1",
    "local a, b <const> = 2, 3",
    "a * b",
    "local y",
    "print('y', y)",
    "local function sq(v) return v * v end",
    "sq(9)",
    "function g() local z = 7 return z end",
    "print('z', z, g())",
    "do local w = 1 end",
    "print('w', w)",
    "local s = [[local q = 1]] -- local in a string",
    "print('q', q, s)",
  }, "\n") .. "\n")
  expect(out:find("\n?6\n"), out)
  expect(out:find("\n6\n", 1, true), out)
  expect(out:find("y\tnil", 1, true), out)
  expect(out:find("81", 1, true), out)
  expect(out:find("z\tnil\t7", 1, true), out)
  expect(out:find("w\tnil", 1, true), out)
  expect(out:find("q\tnil\tlocal q = 1", 1, true), out)
end)

test("rewrite_locals works on tokens, not text", function()
  local repl = require "fmd.repl"
  expect_eq(repl.rewrite_locals("local x = 1"), "x = 1")
  expect_eq(repl.rewrite_locals("local x, y"), "x, y = nil")
  expect_eq(repl.rewrite_locals("local f <close> = nil"), "f = nil")
  expect_eq(repl.rewrite_locals("local function f() local a = 1 end"), "function f() local a = 1 end")
  expect_eq(repl.rewrite_locals("for i = 1, 2 do local k = i end local n = 2"), "for i = 1, 2 do local k = i end n = 2")
  expect_eq(repl.rewrite_locals("while false do local k = 1 end; local m = 'local t'"),
    "while false do local k = 1 end; m = 'local t'")
  expect_eq(repl.rewrite_locals("if x then local k = 1 else local j = 2 end --[[ local c ]] local d = 1"),
    "if x then local k = 1 else local j = 2 end --[[ local c ]] d = 1")
end)

test("every public function, module and class has help: a signature and text from docs/reference.md", function()
  local repl, help = require "fmd.repl", require "fmd.help"
  local names = help.public_names()
  expect(#names > 250, "public names found: " .. #names)
  local missing = {}
  for _, n in ipairs(names) do
    local e = help.reference_entry(n)
    local v = repl.lookup(n:gsub(":", "."):gsub("^fmd%.Tensor%.", "fmd.Tensor_methods."))
    local needs_call = type(v) == "function"
    if not e or e.text == "" or (needs_call and not e.signature:find("(", 1, true)) then missing[#missing + 1] = n end
  end
  expect(#missing == 0, "no reference entry (signature + text) in docs/reference.md for: " .. table.concat(missing, ", "))
  -- and the other way round: every entry names something that exists
  local known = {}
  for _, n in ipairs(names) do known[n] = true end
  local stale = {}
  local f = assert(io.open(help.docs_dir() .. "/reference.md"))
  for line in f:lines() do
    local sig = line:match("^%- `([^`]+)`")
    if sig then
      local n = help.canonical(sig:match("^[^%(%s%[]+"))
      if not known[n] then stale[#stale + 1] = n end
    end
  end
  f:close()
  expect(#stale == 0, "docs/reference.md documents names that do not exist: " .. table.concat(stale, ", "))
end)

test("help prints signature, text, examples and where to read more", function()
  local out = run(exe, table.concat({
    "?fmd.randn",
    "help(fmd.nn.Linear)",
    "x = fmd.zeros(2, 3)",
    "?x:view",
    "m = fmd.nn.Sequential(fmd.nn.Linear(2, 3))",
    "?m:load",
    "help(m)",
    "?F.relu",
    "help(fmd.optim.SGD(m:parameters(), 0.1).step)",
    "?no_such_thing",
    "help",
  }, "\n") .. "\n")
  expect(out:find("fmd.randn(size...) → Tensor\n  Standard normal samples", 1, true), out)
  expect(out:find("More: docs/lua-api.md, \"Creating tensors\"", 1, true), out)
  expect(out:find("fmd.nn.Linear(in_features, out_features [, bias]) → module\n", 1, true), out)
  expect(out:find("t:view(size...) → Tensor\n", 1, true), out)
  expect(out:find("m:load(path [, strict]) → m\n", 1, true), out)
  expect(out:find("Sequential (1 children, 9 parameters, train mode)\nMethods (?m:name for one): add, add_module", 1, true), out)
  expect(out:find("fmd.nn.functional.relu(x [, inplace]) → Tensor", 1, true), out)
  expect(out:find("fmd.optim.Optimizer:step([closure]) → loss", 1, true), out)
  expect(out:find("no help found for no_such_thing", 1, true), out)
  expect(out:find("help(x) or ?x shows the documentation", 1, true), out)
  expect(not out:find("function: 0x", 1, true), "help is a function that prints when called bare: " .. out)
end)

test("results history: small results kept, big ones only weakly (collectgarbage frees them)", function()
  local out = run(exe, table.concat({
    "x = fmd.zeros(1e6)",                      -- 4 MB: above repl.KEEP_BYTES
    "x",
    "t = {w = fmd.zeros(1e6)}",
    "t",
    "probe = setmetatable({}, {__mode = 'v'})",
    "probe.x, probe.t, probe.w = x, t, t.w",
    "x, t = nil, nil",
    "collectgarbage(); collectgarbage();",
    "print('freed', probe.x == nil, probe.t == nil, probe.w == nil)",
    "{1, 2, 3}",
    "collectgarbage(); collectgarbage();",
    "R = require('fmd.repl').results",
    "print('kept', #R, R[#R][3], _[2])",
  }, "\n") .. "\n")
  expect(out:find("freed\ttrue\ttrue\ttrue", 1, true), out)
  expect(out:find("kept\t3\t3\t2", 1, true), out)
end)

test("fmd.timing(true) prints each command's time; fmd.timing(false) stops", function()
  local out = run(exe, "fmd.timing(true)\n1 + 1\nprint(fmd.timing())\nfmd.timing(false)\n2 + 2\n")
  expect(out:find("\n?2\n%(%d+%.%d%d%d s%)\n"), out)
  expect(out:find("true\n%(%d+%.%d%d%d s%)\n"), out)
  expect(out:find("\n4\n", 1, true) and not out:find("4\n%(", 1), out)
  expect(run(exe .. " -e 'print(fmd.timing())'"):find("false", 1, true))
end)

-- a real terminal: readline, Tab completion, colour. util-linux's script(1)
-- gives the REPL a pseudo-terminal; the typed keys are read from a file.
local function pty(input, env)
  expect(os.execute("command -v script > /dev/null"), "script (util-linux) is needed for the pseudo-terminal test")
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "w")); f:write(input); f:close()
  local hist = os.tmpname()
  local cmd = ("%s FMD_HISTORY=%s TERM=xterm timeout 20 script -qec %s /dev/null < %s 2>&1")
    :format(env or "env -u NO_COLOR", hist, exe, tmp)
  local p = assert(io.popen(cmd))
  local out = p:read("a"); p:close()
  os.remove(tmp); os.remove(hist)
  return (out:gsub("\r", ""):gsub("\27%[%?2004[hl]", ""))   -- bracketed-paste mode switches
end

test("in a pseudo-terminal: Tab completes names, methods, fields, modules and files; colour; locals; help", function()
  local out = pty(table.concat({
    "x = fmd.ze\t(2, 3)",                 -- a field of fmd
    "x:nu\t()",                           -- a tensor method (through the metatable)
    "m = fmd.nn.Seq\t(fmd.nn.Linear(2, 3))",
    "n = fmd.nn.Module(); n.head = fmd.nn.Linear(2, 2)",
    "n.he\t.we\t:nu\t()",             -- a module's child, a parameter, a method
    "m:ev\t()",                           -- a module method; prints one line
    "require(\"fmd.metr\t\").eer ~= nil",  -- a module name inside require's string
    "io.open(\"tests/lua/run.l\t\") ~= nil",  -- a file name inside a string
    "local k = 41",
    "k + 1",
    "?fmd.on\t",
    "{a = 1}",
    "",
  }, "\n"))
  expect(out:find("fmd> x = fmd.zeros(2, 3)", 1, true), out)
  expect(out:find("fmd> x:numel()", 1, true), out)
  expect(out:find("\27[36m6\27[0m", 1, true), "numbers in colour on a terminal: " .. out)
  expect(out:find("fmd> m = fmd.nn.Sequential(", 1, true), out)
  expect(out:find("fmd> n.head.weight:numel()\n\27[36m4\27[0m", 1, true), out)
  expect(out:find("\nSequential (1 children, 9 parameters, eval mode)\n", 1, true), out)
  expect(out:find('require("fmd.metrics").eer ~= nil', 1, true), out)
  expect(out:find('io.open("tests/lua/run.lua") ~= nil', 1, true), out)
  expect(out:find("\27[36m42\27[0m", 1, true), out)
  expect(out:find("fmd.ones(size...) → Tensor", 1, true), out)
  expect(out:find("{\27[1ma\27[0m = \27[36m1\27[0m}", 1, true), out)
  expect(not out:find("stack traceback", 1, true), out)
  local plain = pty("1 + 2\n{a = 1}\n", "NO_COLOR=1")
  expect(plain:find("\n3\n", 1, true) and plain:find("{a = 1}\n", 1, true), plain)
  expect(not plain:find("\27[3", 1, true) and not plain:find("\27[1m", 1, true), "NO_COLOR: " .. plain)
end)
