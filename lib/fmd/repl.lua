-- The REPL's logic, in Lua so it can be read and changed: compiling a line
-- (locals that persist, `?name`, a trailing `;` that hides the result),
-- printing results (pretty tables, one-line modules for m:eval(), colour on
-- a terminal), `_` and the results history, per-command timing and Tab
-- completion. Help (`?name`, help(x)) is lib/fmd/help.lua, which also
-- holds the list of fmd's modules that completion offers. bindings/main.c
-- only reads lines and calls repl.compile and repl.complete.
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
repl.is_module = is_module

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
    return function() require("fmd.help").show(topic ~= "" and topic or nil) end
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
    if v == fmd then   -- fmd's modules load on first use, so they are no keys yet
      for _, m in ipairs(require("fmd.help").MODULES) do if not m:find(".", 1, true) then add(m, {}) end end
    end
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
  for _, n in ipairs(require("fmd.help").MODULES) do out[#out + 1] = "fmd." .. n end
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

-- called by bindings/main.c once before the first prompt
function repl.start()
  install_underscore()
  fmd.timing = repl.timing
  help = require("fmd.help").callable   -- the global help(x)
end

return repl

