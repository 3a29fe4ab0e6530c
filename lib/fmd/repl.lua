-- The REPL's logic, in Lua so it can be read and changed: compiling a line
-- (locals that persist, `?name`, a trailing `;` that hides the result),
-- printing results (pretty tables, one-line modules for m:eval(), colour on
-- a terminal), `_` and the results history, per-command timing, Tab
-- completion and help taken from docs/*.md. bindings/main.c only reads
-- lines and calls repl.compile and repl.complete.
local fmd = require "fmd"
local repl = {}

------------------------------------------------------------------ colour

-- colour only when stdout is a terminal, NO_COLOR is unset (no-color.org)
-- and the terminal is not TERM=dumb
function repl.use_colour()
  local nc = os.getenv("NO_COLOR")
  return fmd.sys.isatty(1) and (nc == nil or nc == "") and os.getenv("TERM") ~= "dumb"
end

local COLOURS = {number = "36", string = "32", boolean = "35", ["nil"] = "35", key = "1", type = "33",
                 dim = "2"}

local function painter(on)
  return function(kind, s)
    if not on then return s end
    return "\27[" .. COLOURS[kind] .. "m" .. s .. "\27[0m"
  end
end

----------------------------------------------------------- pretty printing

local MAX_DEPTH, MAX_ITEMS, WIDTH = 2, 50, 80

local function is_module(v)
  return type(v) == "table" and rawget(v, "_modules") ~= nil and getmetatable(v) ~= nil
end

local function count_params(m)
  local n = 0
  for _, p in m:named_parameters() do n = n + p:numel() end
  return n
end

local function thousands(n)
  local s = tostring(n)
  repeat local k; s, k = s:gsub("^(%-?%d+)(%d%d%d)", "%1,%2") until k == 0
  return s
end

-- one line for a module: Linear(in_features=8, ...) or Net (3 children, ...)
function repl.module_line(m)
  local name = m.__short_name or m.__name or "Module"
  local nchild = #rawget(m, "_modules_names")
  if nchild == 0 then return name .. "(" .. m:extra_repr() .. ")" end
  return ("%s (%d children, %s parameters, %s mode)"):format(name, nchild, thousands(count_params(m)),
    rawget(m, "training") and "train" or "eval")
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta == "number" and tb == "number" then return a < b end
  if ta == "number" then return true end
  if tb == "number" then return false end
  if ta == "string" and tb == "string" then return a < b end
  if ta == "string" then return true end
  if tb == "string" then return false end
  return tostring(a) < tostring(b)
end

local function has_tostring(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__tostring") ~= nil
end

-- a value inside a table: one line
local function short(v, paint)
  local t = type(v)
  if t == "string" then return paint("string", ("%q"):format(v):gsub("\\\n", "\\n")) end
  if t == "number" or t == "boolean" or t == "nil" then return paint(t == "number" and "number" or t, tostring(v)) end
  if fmd.is_tensor(v) then return paint("type", "fmd.Tensor " .. fmd.shape_str(v)) end
  if is_module(v) then return paint("type", repl.module_line(v)) end
  if t == "function" then return paint("type", "function") end
  if t == "table" and type(rawget(v, "__name")) == "string" and rawget(v, "__index") then
    return paint("type", "class " .. v.__name)
  end
  if has_tostring(v) then
    local s = tostring(v)
    if not s:find("\n") then return s end
  end
  return paint("type", tostring(v))
end

local function key_text(k, paint)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then return paint("key", k) end
  return "[" .. short(k, paint) .. "]"
end

-- tables nested up to MAX_DEPTH, keys sorted, at most MAX_ITEMS entries;
-- short tables on one line
local function render_table(t, paint, depth, indent, seen)
  if seen[t] then return paint("type", "<cycle>") end
  if has_tostring(t) or (type(rawget(t, "__name")) == "string" and rawget(t, "__index")) then
    return short(t, paint)
  end
  if next(t) == nil then return "{}" end
  if depth >= MAX_DEPTH then
    local n = 0
    for _ in pairs(t) do n = n + 1 end
    return paint("type", ("{...%d %s}"):format(n, n == 1 and "entry" or "entries"))
  end
  seen[t] = true
  local n = #t
  local keys = {}
  for k in pairs(t) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_order)
  local items = {}
  local function value(v)
    if type(v) == "table" and not is_module(v) then return render_table(v, paint, depth + 1, indent .. "  ", seen) end
    return short(v, paint)
  end
  for i = 1, n do
    if #items >= MAX_ITEMS then break end
    items[#items + 1] = value(t[i])
  end
  for _, k in ipairs(keys) do
    if #items >= MAX_ITEMS then break end
    items[#items + 1] = key_text(k, paint) .. " = " .. value(t[k])
  end
  local total = n + #keys
  if total > #items then items[#items + 1] = paint("dim", ("... (%d more)"):format(total - #items)) end
  seen[t] = nil
  local one = "{" .. table.concat(items, ", ") .. "}"
  local plain = one:gsub("\27%[[%d;]*m", "")
  if #plain + #indent <= WIDTH and not one:find("\n") then return one end
  return "{\n" .. indent .. "  " .. table.concat(items, ",\n" .. indent .. "  ") .. "\n" .. indent .. "}"
end

-- the text the REPL prints for one result
function repl.format(v, opts)
  opts = opts or {}
  local paint = painter(opts.colour)
  local t = type(v)
  if t == "string" then return v end
  if t == "table" and is_module(v) then
    return opts.one_line and repl.module_line(v) or tostring(v)
  end
  if t == "table" then return render_table(v, paint, 0, "", {}) end
  if fmd.is_tensor(v) then
    local s = tostring(v)
    return (s:gsub("(\n)(%[fmd%.Tensor[^\n]*%])$", function(nl, foot) return nl .. paint("dim", foot) end))
  end
  if has_tostring(v) then return tostring(v) end
  return short(v, paint)
end

----------------------------------------------------- `_` and the history

-- results bigger than this (tensors, modules, tables holding them) are kept
-- only weakly: printing `x` then `x = nil` frees x's memory
repl.KEEP_BYTES = 1 << 20

local function big(v, depth)
  if fmd.is_tensor(v) then return v:numel() * 4 >= repl.KEEP_BYTES end
  if is_module(v) then return true end
  if type(v) == "table" and (depth or 0) < 2 then
    for _, x in pairs(v) do if big(x, (depth or 0) + 1) then return true end end
  end
  return false
end

-- repl.results[n] is the n-th printed result, repl.results.n their count.
-- Small results are kept (the last HISTORY of them); big ones only weakly,
-- so they live exactly as long as the user's own references.
repl.HISTORY = 100
local strong, weak = {}, setmetatable({}, {__mode = "v"})
local count = 0
repl.results = setmetatable({}, {
  __index = function(_, k)
    if k == "n" then return count end
    if math.type(k) == "integer" then
      local v = strong[k]
      if v == nil then v = weak[k] end
      return v
    end
  end,
  __len = function() return count end,
  __newindex = function() error("repl.results is read-only", 2) end,
})
local last = setmetatable({}, {__mode = "v"})   -- the weak `_`

local function remember(v)
  count = count + 1
  strong[count - repl.HISTORY] = nil
  if big(v) then
    weak[count] = v
    rawset(_G, "_", nil)
    last[1] = v
  else
    strong[count] = v
    last[1] = nil
    rawset(_G, "_", v)
  end
end

-- `_` reads the weak slot when the global itself is unset
local function install_underscore()
  local mt = getmetatable(_G)
  if mt == nil then mt = {}; setmetatable(_G, mt) end
  if mt.__index == nil then
    mt.__index = function(_, k) if k == "_" then return last[1] end end
  end
end

------------------------------------------------------------------ timing

local timing = false

-- fmd.timing(true) prints each command's wall time after it; fmd.timing()
-- says whether it is on
function repl.timing(on)
  if on == nil then return timing end
  timing = on and true or false
end

------------------------------------------------------- local persistence

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or repeat
            return then true until while]]):gmatch("%a+") do KEYWORDS[w] = true end

-- tokens of a chunk: {kind, text, s, e}; kind is "name", "keyword",
-- "string", "number", "op" or "eof". Comments are skipped. Never fails: an
-- unfinished string runs to the end (load reports it).
function repl.tokens(code)
  local toks, i, n = {}, 1, #code
  while i <= n do
    local c = code:sub(i, i)
    if c:match("%s") then i = i + 1
    elseif code:find("^%-%-", i) then
      local eq = code:match("^%-%-%[(=*)%[", i)
      if eq then
        local _, e = code:find("]" .. eq .. "]", i, true)
        i = (e or n) + 1
      else
        i = (code:find("\n", i, true) or n) + 1
      end
    elseif c:match("[%a_]") then
      local w = code:match("^[%w_]+", i)
      toks[#toks + 1] = {KEYWORDS[w] and "keyword" or "name", w, i, i + #w - 1}
      i = i + #w
    elseif c:match("%d") or (c == "." and code:sub(i + 1, i + 1):match("%d")) then
      local num = code:match("^0[xX][%x%.]*[pP][%+%-]?%d+", i) or code:match("^0[xX][%x%.]*", i)
        or code:match("^[%d%.]+[eE][%+%-]?%d+", i) or code:match("^[%d%.]+", i)
      toks[#toks + 1] = {"number", num, i, i + #num - 1}
      i = i + #num
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n do
        local d = code:sub(j, j)
        if d == "\\" then j = j + 2
        elseif d == c or d == "\n" then break
        else j = j + 1 end
      end
      toks[#toks + 1] = {"string", code:sub(i, j), i, j}
      i = j + 1
    elseif code:find("^%[=*%[", i) then
      local eq = code:match("^%[(=*)%[", i)
      local _, e = code:find("]" .. eq .. "]", i, true)
      e = e or n
      toks[#toks + 1] = {"string", code:sub(i, e), i, e}
      i = e + 1
    else
      local op = code:match("^%.%.%.", i) or code:match("^[=~<>]=", i) or code:match("^%.%.", i)
        or code:match("^::", i) or code:match("^//", i) or code:match("^<<", i) or code:match("^>>", i) or c
      toks[#toks + 1] = {"op", op, i, i + #op - 1}
      i = i + #op
    end
  end
  toks[#toks + 1] = {"eof", "", n + 1, n}
  return toks
end

-- `local x, y = 1, 2` at the top level of a chunk becomes `x, y = 1, 2`
-- (globals survive to the next line); `local x` becomes `x = nil`;
-- `local function f` becomes `function f`; attributes (<const>, <close>)
-- are dropped. Locals inside functions and blocks are left alone.
function repl.rewrite_locals(code)
  local toks = repl.tokens(code)
  local depth, pending_do = 0, 0
  local edits = {}   -- {s, e, replacement}
  local i = 1
  while toks[i][1] ~= "eof" do
    local kind, text = toks[i][1], toks[i][2]
    if kind == "keyword" then
      if text == "function" or text == "if" or text == "repeat" then depth = depth + 1
      elseif text == "while" or text == "for" then depth = depth + 1; pending_do = pending_do + 1
      elseif text == "do" then
        if pending_do > 0 then pending_do = pending_do - 1 else depth = depth + 1 end
      elseif text == "end" or text == "until" then depth = math.max(0, depth - 1)
      elseif text == "local" and depth == 0 then
        local nxt = toks[i + 1]
        if nxt[1] == "keyword" and nxt[2] == "function" then
          edits[#edits + 1] = {toks[i][3], nxt[3] - 1, ""}
        elseif nxt[1] == "name" then
          edits[#edits + 1] = {toks[i][3], nxt[3] - 1, ""}
          local j = i + 1
          while true do
            -- name [<attrib>]
            local last_tok = toks[j]
            if toks[j + 1][2] == "<" and toks[j + 2][1] == "name" and toks[j + 3][2] == ">" then
              edits[#edits + 1] = {toks[j][4] + 1, toks[j + 3][4], ""}
              last_tok = toks[j + 3]
              j = j + 3
            end
            if toks[j + 1][2] == "," and toks[j + 2][1] == "name" then
              j = j + 2
            else
              if toks[j + 1][2] ~= "=" then edits[#edits + 1] = {last_tok[4] + 1, last_tok[4], " = nil"} end
              break
            end
          end
          i = j
        end
      end
    end
    i = i + 1
  end
  for k = #edits, 1, -1 do
    local e = edits[k]
    code = code:sub(1, e[1] - 1) .. e[3] .. code:sub(e[2] + 1)
  end
  return code
end

----------------------------------------------------------------- compile

local function incomplete(msg) return msg and msg:sub(-5) == "<eof>" end

-- the value of a dotted name path (a.b.c), or nil; never calls functions
-- other than __index metamethods
local function lookup(path)
  local v = _G
  for part in path:gmatch("[^%.]+") do
    if type(v) ~= "table" and type(v) ~= "userdata" then return nil end
    local ok, x = pcall(function() return v[part] end)
    if not ok then return nil end
    v = x
  end
  return v
end
repl.lookup = lookup

-- show the results of one command: pretty, `_`, history, timing
function repl.show(info, elapsed, res)
  local colour = repl.use_colour()
  if not info.silent and res.n > 0 then
    local parts = {}
    for i = 1, res.n do
      local v = res[i]
      -- m:eval(), m:train(), m:zero_grad()-style calls that return their
      -- receiver print one line instead of the whole tree
      local one_line = false
      if is_module(v) and info.receiver then one_line = rawequal(lookup(info.receiver), v) end
      parts[#parts + 1] = repl.format(v, {colour = colour, one_line = one_line})
    end
    io.write(table.concat(parts, "\t"), "\n")
  end
  if not info.silent and res.n > 0 then remember(res[1]) end
  if timing then io.write(painter(colour)("dim", ("(%.3f s)"):format(elapsed)), "\n") end
  io.flush()
end

-- compile one command. Returns a function to run, or nil, message,
-- is_incomplete (the caller then reads another line and tries again).
function repl.compile(code)
  local trimmed = code:match("^%s*(.-)%s*$")
  local topic = trimmed:match("^%?%s*(.*)$")
  if topic then
    return function() repl.help(topic ~= "" and topic or nil) end
  end
  local info = {}
  if trimmed:sub(-1) == ";" and not trimmed:find("%-%-") then
    info.silent = true
    trimmed = trimmed:sub(1, -2)
  end
  local fn = load("return " .. trimmed .. "\n;", "=stdin", "t")
  if fn then
    info.receiver = trimmed:match("^([%a_][%w_%.]*):[%a_][%w_]*%b()$")
  else
    local err
    fn, err = load(repl.rewrite_locals(trimmed), "=stdin", "t")
    if not fn then
      local _, orig_err = load(trimmed, "=stdin", "t")
      err = orig_err or err
      return nil, err, incomplete(err)
    end
  end
  return function()
    local t0 = fmd.sys.now()
    local res = table.pack(fn())
    repl.show(info, fmd.sys.now() - t0, res)
  end
end

-------------------------------------------------------------- completion

local function fmd_submodules()
  local out = {}
  local dir = (package.fmd_lib or "lib") .. "/fmd"
  for _, f in ipairs(fmd.sys.is_dir(dir) and fmd.sys.listdir(dir) or {}) do
    local n = f:match("^([%w_]+)%.lua$")
    if n and n ~= "init" then out[#out + 1] = n
    elseif fmd.sys.is_file(dir .. "/" .. f .. "/init.lua") then out[#out + 1] = f end
  end
  return out
end

local TENSOR_FIELDS = {"grad", "requires_grad", "is_leaf", "grad_fn", "shape", "ndim"}

-- field names of v: its keys, a module's children/parameters/buffers, and
-- what its metatable's __index chain provides (methods of classes,
-- tensor methods); methods_only keeps functions only (after `:`)
function repl.fields(v, methods_only)
  local names, seen = {}, {}
  local function add(k, x)
    if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") or seen[k] then return end
    if methods_only and type(x) ~= "function" then return end
    seen[k] = true
    names[#names + 1] = k
  end
  local function add_table(t, depth)
    if depth > 10 or type(t) ~= "table" then return end
    for k, x in pairs(t) do add(k, x) end
  end
  if fmd.is_tensor(v) then
    add_table(fmd.Tensor_methods, 0)
    if not methods_only then for _, k in ipairs(TENSOR_FIELDS) do add(k, true) end end
  elseif type(v) == "table" then
    if is_module(v) then
      for _, kind in ipairs{"_modules", "_parameters", "_buffers"} do
        for k, x in pairs(rawget(v, kind)) do add(k, x) end
      end
    end
    for k, x in pairs(v) do add(k, x) end
    if v == fmd then for _, k in ipairs(fmd_submodules()) do add(k, {}) end end
    if v == package.loaded["fmd.nn"] then for _, k in ipairs(v.classes or {}) do add(k, {}) end end
    -- classes: methods in the metatable, then its parents through __index
    local mt, depth = getmetatable(v), 0
    while type(mt) == "table" and depth < 10 do
      if type(mt.__index) == "table" then add_table(mt.__index, depth); mt = getmetatable(mt.__index)
      elseif rawget(mt, "__name") or rawget(mt, "super") then add_table(mt, depth); mt = getmetatable(mt)
      else break end
      depth = depth + 1
    end
  elseif type(v) == "string" then
    add_table(string, 0)
  end
  table.sort(names)
  return names
end

local function module_names()
  local out = {}
  for _, n in ipairs(fmd_submodules()) do out[#out + 1] = "fmd." .. n end
  out[#out + 1] = "fmd"
  local nn = package.loaded["fmd.nn"] or require("fmd.nn")
  for _, n in ipairs(nn.classes) do out[#out + 1] = "fmd.nn." .. n end
  for _, d in ipairs{".", "models"} do
    for _, f in ipairs(fmd.sys.is_dir(d) and fmd.sys.listdir(d) or {}) do
      local n = f:match("^([%w_]+)%.lua$")
      if n then out[#out + 1] = d == "." and n or (d .. "." .. n) end
    end
  end
  for k in pairs(package.loaded) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function starts(s, p) return s:sub(1, #p) == p end

-- Candidates that replace line:sub(start, finish) (what readline calls the
-- word; it ends at the cursor). Knows about strings: inside a string the
-- word is part of a file name, or a module name after require.
function repl.complete(line, start, finish)
  local before = line:sub(1, start - 1)
  local word = line:sub(start, finish)
  local out, seen = {}, {}
  local function add(s) if not seen[s] then seen[s] = true; out[#out + 1] = s end end
  -- inside a string? (count quotes not escaped before the word)
  local quote, qpos = nil, nil
  do
    local i = 1
    while i <= #before do
      local c = before:sub(i, i)
      if quote then
        if c == "\\" then i = i + 1 elseif c == quote then quote = nil end
      elseif c == '"' or c == "'" then quote, qpos = c, i end
      i = i + 1
    end
  end
  if quote then
    local inside = line:sub(qpos + 1, finish)
    if before:sub(1, qpos - 1):match("require%s*%(?%s*$") then
      for _, n in ipairs(module_names()) do if starts(n, inside) then add(n:sub(#inside - #word + 1)) end end
      return out
    end
    local dir, base = inside:match("^(.*/)([^/]*)$")
    if not dir then dir, base = "", inside end
    local ddir = dir == "" and "." or dir
    if dir:sub(1, 2) == "~/" and os.getenv("HOME") then ddir = os.getenv("HOME") .. dir:sub(2) end
    if fmd.sys.is_dir(ddir) then
      for _, f in ipairs(fmd.sys.listdir(ddir)) do
        if starts(f, base) and (base ~= "" or f:sub(1, 1) ~= ".") then
          local full = (dir .. f):sub(#inside - #word + 1)
          add(fmd.sys.is_dir(ddir .. "/" .. f) and full .. "/" or full)
        end
      end
    end
    table.sort(out)
    return out
  end
  -- a name path: a.b.c or a.b:c, the last part partial
  local path, sep, partial = word:match("^(.-)([%.:])([%w_]*)$")
  if path and path ~= "" and path:match("^[%a_][%w_%.]*$") then
    local v = lookup(path)
    if v == nil then return out end
    for _, k in ipairs(repl.fields(v, sep == ":")) do
      if starts(k, partial) and (partial:sub(1, 1) == "_" or k:sub(1, 1) ~= "_") then add(path .. sep .. k) end
    end
    return out
  end
  if word:match("^[%a_][%w_]*$") or word == "" then
    local names = {}
    for k in pairs(_G) do if type(k) == "string" then names[#names + 1] = k end end
    for k in pairs(KEYWORDS) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do
      if starts(k, word) and (word:sub(1, 1) == "_" or k:sub(1, 1) ~= "_") then add(k) end
    end
  end
  return out
end

-------------------------------------------------------------------- help

local docs_cache

-- the docs folder: next to lib/ in the source tree, share/fmd/docs installed
function repl.docs_dir()
  local lib = package.fmd_lib or "lib"
  local d = lib:gsub("/lua$", "") .. (lib:match("/lua$") and "/docs" or "/../docs")
  return d
end

-- docs/*.md as sections: {file, title, lines = {{text, code = bool}}}
local function load_docs()
  if docs_cache then return docs_cache end
  local dir = repl.docs_dir()
  local sections = {}
  local files = fmd.sys.is_dir(dir) and fmd.sys.listdir(dir) or {}
  for _, f in ipairs(files) do
    if f:match("%.md$") then
      local fh = io.open(dir .. "/" .. f)
      if fh then
        local cur = {file = "docs/" .. f, title = f, lines = {}}
        sections[#sections + 1] = cur
        local code = false
        for line in fh:lines() do
          if line:match("^```") then code = not code
          elseif not code and line:match("^#+%s") then
            cur = {file = "docs/" .. f, title = line:gsub("^#+%s*", ""), lines = {}}
            sections[#sections + 1] = cur
          else
            cur.lines[#cur.lines + 1] = {text = line, code = code}
          end
        end
        fh:close()
      end
    end
  end
  docs_cache = sections
  return sections
end

local function escape(s) return (s:gsub("%p", "%%%0")) end

-- a paragraph: the prose lines around line i of a section
local function paragraph(sec, i)
  local a, b = i, i
  while a > 1 and not sec.lines[a - 1].code and sec.lines[a - 1].text:match("%S") do a = a - 1 end
  while b < #sec.lines and not sec.lines[b + 1].code and sec.lines[b + 1].text:match("%S") do b = b + 1 end
  local out = {}
  for k = a, b do out[#out + 1] = sec.lines[k].text end
  return table.concat(out, "\n")
end

local function first_paragraph(sec)
  for i, l in ipairs(sec.lines) do
    if not l.code and l.text:match("%S") and not l.text:match("^|") and not l.text:match("^%- `") then
      return paragraph(sec, i)
    end
  end
end

-- Public names are written canonically: fmd.zeros, fmd.nn.Linear,
-- fmd.Tensor:view, fmd.nn.Module:load. canonical() turns what a user
-- types (nn.Linear, F.relu, x:size for a tensor x, m:eval for a module m,
-- zeros) into that form.
local function class_name(v)
  if fmd.is_tensor(v) then return "fmd.Tensor" end
  if is_module(v) then return "fmd.nn.Module" end
  -- an optimizer: its class chain reaches optim.Optimizer
  local mt, depth = getmetatable(v), 0
  while type(v) == "table" and type(mt) == "table" and depth < 5 do
    if mt == fmd.optim.Optimizer then return "fmd.optim.Optimizer" end
    mt, depth = getmetatable(mt) and getmetatable(mt).__index, depth + 1
  end
end

local function canonical(name)
  name = name:gsub("%s+", ""):gsub("%(%)$", "")
  local obj, method = name:match("^(.-)([:%.][%w_]+)$")
  -- x:size, m:eval, opt:step: the class of the value decides
  if obj and obj ~= "" and method:sub(1, 1) == ":" and obj ~= "t" and obj ~= "m" then
    local v = repl.lookup(obj)
    local cls = v ~= nil and class_name(v)
    if cls and obj ~= cls then return cls .. method end
  end
  if name:match("^t:") then return "fmd.Tensor" .. name:sub(2) end
  if name:match("^m:") then return "fmd.nn.Module" .. name:sub(2) end
  if name:match("^F%.") then return "fmd.nn.functional" .. name:sub(2) end
  if name:match("^fmd%.nn%.F%.") then return "fmd.nn.functional" .. name:sub(9) end
  if name:match("^nn%.F%.") then return "fmd.nn.functional" .. name:sub(5) end
  for _, sub in ipairs{"nn", "optim", "data", "transforms", "metrics", "explain", "plot", "image", "faces",
                       "models", "json", "sys", "analysis", "trainer", "tfjs", "weights", "keras"} do
    if name == sub or name:sub(1, #sub + 1) == sub .. "." then return "fmd." .. name end
  end
  if name ~= "fmd" and not name:match("^fmd[%.:]") and name:match("^[%w_]+$") and rawget(fmd, name) ~= nil then
    return "fmd." .. name
  end
  -- a class method written with a dot (fmd.nn.Module.load)
  local cls, m = name:match("^(fmd%.nn%.Module)%.([%w_]+)$")
  if not cls then cls, m = name:match("^(fmd%.optim%.Optimizer)%.([%w_]+)$") end
  if not cls then cls, m = name:match("^(fmd%.Tensor)%.([%w_]+)$") end
  if cls then return cls .. ":" .. m end
  return name
end
repl.canonical = canonical

-- how a canonical name is written in docs/reference.md's entries
local function entry_spelling(name)
  local m = name:match("^fmd%.Tensor:(.+)$")
  if m then return "t:" .. m end
  m = name:match("^fmd%.nn%.Module:(.+)$")
  if m then return "m:" .. m end
  return name
end

-- the reference entry of a canonical name: signature, text, where
function repl.reference_entry(name)
  local want = entry_spelling(name)
  for _, sec in ipairs(load_docs()) do
    for i, l in ipairs(sec.lines) do
      if not l.code then
        local sig, rest = l.text:match("^%- `([^`]+)`(.*)$")
        if sig and (sig == want or sig:sub(1, #want + 1) == want .. "(") then
          local text = {rest}
          for k = i + 1, #sec.lines do
            local nl = sec.lines[k]
            if nl.code or not nl.text:match("^%s+%S") then break end
            text[#text + 1] = nl.text:match("^%s*(.-)$")
          end
          local body = table.concat(text, " "):gsub("^%s*", "")
          local ret = body:match("^→%s*([^%.]+)%.%s*")
          if ret then body = body:gsub("^→%s*[^%.]+%.%s*", "") end
          body = body:gsub("^%.%s*", "")
          return {signature = sig, returns = ret, text = body, file = sec.file, title = sec.title}
        end
      end
    end
  end
end

-- how a name may be written in the explaining pages: fmd.nn.Linear is
-- also nn.Linear, fmd.nn.functional.relu is F.relu; a method is :name
local function spellings(name)
  local out = {name}
  local short_nn = name:match("^fmd%.(nn%..+)$") or name:match("^fmd%.(optim%..+)$")
  if short_nn then out[#out + 1] = short_nn end
  local f = name:match("^fmd%.nn%.functional%.(.+)$")
  if f then out[#out + 1] = "F." .. f end
  local m = name:match(":(.+)$")
  if m then out = {":" .. m} end
  return out
end

-- where a name is explained at length (other than the reference): a
-- heading that names it, else the first section that uses it (in code or
-- in backticks), looking at the pages in PAGES order; and up to three code
-- lines that use it, that section's first
local PAGES = {"lua-api.md", "nn.md", "ops.md", "repl.md", "formats.md", "data.md", "training.md", "metrics.md",
               "plot.md", "faces.md", "analysis.md", "architecture.md"}
local function explained(name)
  local pats = {}
  for _, s in ipairs(spellings(name)) do pats[#pats + 1] = escape(s) .. "%f[^%w_]" end
  local function mentions(text)
    for _, p in ipairs(pats) do if text:find(p) then return true end end
  end
  local rank = {}
  for i, f in ipairs(PAGES) do rank["docs/" .. f] = i end
  local sections = {}
  for i, sec in ipairs(load_docs()) do
    if sec.file ~= "docs/reference.md" then sections[#sections + 1] = {sec, rank[sec.file] or 99, i} end
  end
  table.sort(sections, function(a, b) if a[2] ~= b[2] then return a[2] < b[2] end return a[3] < b[3] end)
  for i, x in ipairs(sections) do sections[i] = x[1] end
  local by_title, by_mention
  for _, sec in ipairs(sections) do
    if not by_title and mentions(sec.title) then by_title = sec end
    for _, l in ipairs(sec.lines) do
      if by_mention then break end
      if l.code then
        if mentions(l.text) then by_mention = sec end
      else
        for span in l.text:gmatch("`([^`]+)`") do if mentions(span) then by_mention = sec; break end end
      end
    end
  end
  local where = by_title or by_mention
  local examples, seen = {}, {}
  local function collect(sec)
    for _, l in ipairs(sec.lines) do
      local line = l.text:match("^%s*(.-)%s*$")
      if l.code and #examples < 3 and not seen[line] and mentions(line) then
        seen[line] = true
        examples[#examples + 1] = line
      end
    end
  end
  if where then collect(where) end
  for _, sec in ipairs(sections) do collect(sec) end
  return where, examples
end

-- text in lines of at most width characters after the indent
local function wrap(text, indent, width)
  local lines, cur = {}, ""
  for word in text:gmatch("%S+") do
    if cur ~= "" and #cur + 1 + #word > width then lines[#lines + 1] = indent .. cur; cur = word
    else cur = cur == "" and word or (cur .. " " .. word) end
  end
  if cur ~= "" then lines[#lines + 1] = indent .. cur end
  return table.concat(lines, "\n")
end

-- the help text of a name: its signature and text from docs/reference.md,
-- examples from the other pages and the page that explains it; nil when
-- the docs do not name it
function repl.help_text(name)
  name = canonical(name)
  local e = repl.reference_entry(name)
  local where, examples = explained(name)
  if not e and not where then return nil end
  local out = {}
  if e then
    out[1] = e.signature .. (e.returns and (" → " .. e.returns) or "")
    if e.text ~= "" then out[#out + 1] = wrap(e.text, "  ", WIDTH - 2) end
  else
    out[1] = name
    local p = first_paragraph(where)
    if p then out[#out + 1] = p end
  end
  if #examples > 0 then
    out[#out + 1] = "Examples:"
    for _, x in ipairs(examples) do out[#out + 1] = "  " .. x end
  end
  if where then out[#out + 1] = ("More: %s, \"%s\""):format(where.file, where.title) end
  return table.concat(out, "\n")
end

-- every public name (canonical), for the help test and completion of `?`:
-- the functions and classes of fmd and its user-facing modules, tensor
-- methods and the methods of nn.Module and optim.Optimizer
repl.PUBLIC_MODULES = {"sys", "nn", "nn.functional", "nn.init", "nn.fusion", "optim", "data", "transforms", "metrics", "explain",
                       "plot", "image", "faces", "models", "json", "analysis", "trainer", "tfjs", "weights",
                       "keras"}
function repl.public_names()
  local out = {}
  local function walk(prefix, t, sep)
    local keys = {}
    for k, v in pairs(t) do
      if type(k) == "string" and not k:match("^_") and k ~= "classes" and k ~= "F" then
        if type(v) == "function" or (type(v) == "table" and (rawget(v, "__name") or rawget(v, "name"))) then
          keys[#keys + 1] = k
        end
      end
    end
    table.sort(keys)
    for _, k in ipairs(keys) do out[#out + 1] = prefix .. sep .. k end
  end
  walk("fmd", fmd, ".")
  walk("fmd.Tensor", fmd.Tensor_methods, ":")
  local nn = fmd.nn
  for _, c in ipairs(nn.classes) do local _ = nn[c] end
  for _, c in ipairs{"SGD", "Adam", "CosineAnnealingLR"} do local _ = fmd.optim[c] end
  for _, s in ipairs(repl.PUBLIC_MODULES) do
    local m = fmd
    for p in s:gmatch("[^.]+") do m = m[p] end
    out[#out + 1] = "fmd." .. s
    walk("fmd." .. s, m, ".")
  end
  walk("fmd.nn.Module", nn.Module, ":")
  out[#out + 1] = "fmd.optim.Optimizer"
  walk("fmd.optim.Optimizer", fmd.optim.Optimizer, ":")
  local seen, uniq = {}, {}
  for _, n in ipairs(out) do if not seen[n] then seen[n] = true; uniq[#uniq + 1] = n end end
  return uniq
end

-- names of values reachable from fmd, for help(value)
local function name_of(v)
  if v == fmd then return "fmd" end
  if fmd.is_tensor(v) then return "fmd.Tensor" end
  if is_module(v) then return getmetatable(v).__name end
  if type(v) == "table" and rawget(v, "__name") and rawget(v, "super") then return v.__name end
  local function search(t, prefix, depth, seen)
    if depth > 2 or seen[t] then return nil end
    seen[t] = true
    for k, x in pairs(t) do
      if type(k) == "string" and rawequal(x, v) then return prefix .. "." .. k end
    end
    for k, x in pairs(t) do
      if type(k) == "string" and type(x) == "table" and not k:match("^_") then
        local r = search(x, prefix .. "." .. k, depth + 1, seen)
        if r then return r end
      end
    end
  end
  for k, x in pairs(fmd.Tensor_methods) do if rawequal(x, v) then return "fmd.Tensor:" .. k end end
  local r = search(fmd, "fmd", 0, {})
  if r then return r end
end

-- help(x) or ?x: the docs of a function, module, class or tensor; `help`
-- alone (not called) prints how to use it, as Python's does
help = setmetatable({}, {
  __call = function(_, what) return repl.help(what) end,
  __tostring = function() return "help(x) or ?x shows the documentation of x; help() for more" end,
  __name = "help",
})

local function public_only(names)
  local out = {}
  for _, n in ipairs(names) do if not n:match("^_") then out[#out + 1] = n end end
  return out
end

function repl.help(what)
  if what == nil then
    print("help(x) or ?x shows the documentation of x: a value (help(fmd.zeros), help(m)) or a name "
      .. "(?fmd.zeros, ?nn.Linear, ?x:view, ?m:load). Tab completes names. The manual is in "
      .. repl.docs_dir() .. ":")
    local seen = {}
    for _, sec in ipairs(load_docs()) do
      if not seen[sec.file] then seen[sec.file] = true; print("  " .. sec.file) end
    end
    return
  end
  if rawequal(what, help) then return repl.help() end
  local name = type(what) == "string" and what or name_of(what)
  if not name then print(("no help for this %s"):format(type(what))); return end
  name = canonical(name)
  local text = repl.help_text(name)
  if name == "fmd.Tensor" or fmd.is_tensor(what) then
    text = (text or "fmd.Tensor") .. "\nMethods (?t:name for one): "
      .. table.concat(public_only(repl.fields(fmd.zeros(1), true)), ", ")
  elseif is_module(what) or (type(what) == "string" and is_module(repl.lookup(what))) then
    local m = is_module(what) and what or repl.lookup(what)
    text = (text and (text .. "\n") or "") .. repl.module_line(m)
      .. "\nMethods (?m:name for one): " .. table.concat(public_only(repl.fields(m, true)), ", ")
  end
  print(text or ("no help found for %s (the docs are in %s)"):format(name, repl.docs_dir()))
end

-- called by bindings/main.c once before the first prompt
function repl.start()
  install_underscore()
  fmd.timing = repl.timing
end

return repl
