-- fmd.help: the REPL's help, taken from docs/*.md. help(x) or ?x prints a
-- name's signature and text from docs/reference.md, examples from the other
-- pages and the page that explains it at length. lib/fmd/repl.lua (the
-- prompt, printing, completion) asks here for `?` and for help.MODULES.
local fmd = require "fmd"
local repl = require "fmd.repl"
local help = {}

-- fmd's user-facing modules, the one list of them: help finds short names
-- in them (nn.Linear is fmd.nn.Linear), the help test checks that every
-- function they hold has a reference entry, and the REPL completes them
-- after `fmd.` and inside require("fmd.").
help.MODULES = {"sys", "nn", "nn.functional", "nn.init", "nn.fusion", "optim", "data", "transforms", "metrics",
                "explain", "plot", "image", "facegen", "models", "json", "analysis", "trainer", "weights", "runs",
                "state_io", "video", "tfjs", "detect", "dist", "keras"}

local WIDTH = 80   -- help text is wrapped to this many columns

local docs_cache

-- the docs folder: next to lib/ in the source tree, share/fmd/docs installed
function help.docs_dir()
  local lib = package.fmd_lib or "lib"
  local d = lib:gsub("/lua$", "") .. (lib:match("/lua$") and "/docs" or "/../docs")
  return d
end

-- docs/*.md as sections: {file, title, lines = {{text, code = bool}}}
local function load_docs()
  if docs_cache then return docs_cache end
  local dir = help.docs_dir()
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
  if repl.is_module(v) then return "fmd.nn.Module" end
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
  for _, sub in ipairs(help.MODULES) do
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
help.canonical = canonical

-- how a canonical name is written in docs/reference.md's entries
local function entry_spelling(name)
  local m = name:match("^fmd%.Tensor:(.+)$")
  if m then return "t:" .. m end
  m = name:match("^fmd%.nn%.Module:(.+)$")
  if m then return "m:" .. m end
  return name
end

-- the reference entry of a canonical name: signature, text, where
function help.reference_entry(name)
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
               "plot.md", "facegen.md", "analysis.md", "architecture.md"}
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
function help.text(name)
  name = canonical(name)
  local e = help.reference_entry(name)
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

-- every public name (canonical), for the help test: the functions and
-- classes of fmd and of help.MODULES, tensor methods and the methods of
-- nn.Module and optim.Optimizer
function help.public_names()
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
  for _, s in ipairs(help.MODULES) do
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
  if repl.is_module(v) then return getmetatable(v).__name end
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

-- the REPL's global `help` (repl.start installs it): help(x) or ?x prints
-- the docs of a function, module, class or tensor; `help` alone (not
-- called) prints how to use it, as Python's does
help.callable = setmetatable({}, {
  __call = function(_, what) return help.show(what) end,
  __tostring = function() return "help(x) or ?x shows the documentation of x; help() for more" end,
  __name = "help",
})

local function public_only(names)
  local out = {}
  for _, n in ipairs(names) do if not n:match("^_") then out[#out + 1] = n end end
  return out
end

-- help(what): what is a value or a name as typed (?nn.Linear, ?x:view)
function help.show(what)
  if what == nil then
    print("help(x) or ?x shows the documentation of x: a value (help(fmd.zeros), help(m)) or a name "
      .. "(?fmd.zeros, ?nn.Linear, ?x:view, ?m:load). Tab completes names. The manual is in "
      .. help.docs_dir() .. ":")
    local seen = {}
    for _, sec in ipairs(load_docs()) do
      if not seen[sec.file] then seen[sec.file] = true; print("  " .. sec.file) end
    end
    return
  end
  if rawequal(what, help.callable) then return help.show() end
  local name = type(what) == "string" and what or name_of(what)
  if not name then print(("no help for this %s"):format(type(what))); return end
  name = canonical(name)
  local text = help.text(name)
  if name == "fmd.Tensor" or fmd.is_tensor(what) then
    text = (text or "fmd.Tensor") .. "\nMethods (?t:name for one): "
      .. table.concat(public_only(repl.fields(fmd.zeros(1), true)), ", ")
  elseif repl.is_module(what) or (type(what) == "string" and repl.is_module(repl.lookup(what))) then
    local m = repl.is_module(what) and what or repl.lookup(what)
    text = (text and (text .. "\n") or "") .. repl.module_line(m)
      .. "\nMethods (?m:name for one): " .. table.concat(public_only(repl.fields(m, true)), ", ")
  end
  print(text or ("no help found for %s (the docs are in %s)"):format(name, help.docs_dir()))
end

return help
