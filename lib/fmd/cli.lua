-- Command-line flags for fmd scripts.
--
--   local cli = require "fmd.cli"
--   local opts = cli.parse(arg, {
--     name = "train.lua", description = "...",
--     {"--lr", type = "number", default = 0.001, help = "learning rate"},
--     {"--model", "-m", default = "SimpleNet", choices = {"SimpleNet", ...}},
--     {"--resume", type = "boolean", help = "..."},
--   })
--   opts.lr, opts.model ...   (dashes in names become underscores)
--
-- A wrong flag or value raises an error that names the flag and what it
-- accepts, with a suggestion for near misses; --help prints usage and exits.
local cli = {}

local function distance(a, b)   -- Levenshtein, case-insensitive
  a, b = a:lower(), b:lower()
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = {[0] = i}
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

-- the closest candidate when it is close enough to be a likely typo
function cli.suggest(word, candidates)
  local best, bestd
  for _, c in ipairs(candidates) do
    local d = distance(word, c)
    if not bestd or d < bestd then best, bestd = c, d end
  end
  if best and (bestd <= math.max(2, #word // 3) or best:lower() == word:lower()) then return best end
  return nil
end

local function key_of(spec) return spec[1]:gsub("^%-+", ""):gsub("-", "_") end

function cli.usage(def)
  local lines = {("usage: fmd %s [options]"):format(def.name or "script.lua")}
  if def.description then lines[#lines + 1] = def.description end
  lines[#lines + 1] = ""
  for _, spec in ipairs(def) do
    local names = spec[1] .. (spec[2] and (", " .. spec[2]) or "")
    local meta = spec.type == "boolean" and "" or (" " .. (spec.metavar or (spec.type == "number" and "N" or "VALUE")))
    local extra = {}
    if spec.choices then extra[#extra + 1] = "one of " .. table.concat(spec.choices, ", ") end
    if spec.default ~= nil then extra[#extra + 1] = "default " .. tostring(spec.default) end
    lines[#lines + 1] = ("  %-28s %s%s"):format(names .. meta, spec.help or "",
      #extra > 0 and (" (" .. table.concat(extra, "; ") .. ")") or "")
  end
  lines[#lines + 1] = ("  %-28s %s"):format("--help, -h", "show this help")
  return table.concat(lines, "\n")
end

function cli.parse(argv, def)
  local by_name, opts, all_names = {}, {}, {}
  for _, spec in ipairs(def) do
    by_name[spec[1]] = spec
    all_names[#all_names + 1] = spec[1]
    if spec[2] then by_name[spec[2]] = spec end
    opts[key_of(spec)] = spec.default
  end
  local positional = {}
  local i = 1
  local function bad(msg) error(msg .. "\n(see --help)", 0) end
  while i <= #argv do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      print(cli.usage(def))
      os.exit(0)
    end
    local name, inline = a:match("^(%-%-?[^=]+)=(.*)$")
    name = name or a
    if name:sub(1, 1) ~= "-" or name == "-" then
      positional[#positional + 1] = a
    else
      local spec = by_name[name]
      if not spec then
        local s = cli.suggest(name, all_names)
        bad(("unknown flag '%s'%s"):format(name, s and (" (did you mean " .. s .. "?)") or ""))
      end
      local k = key_of(spec)
      if spec.type == "boolean" then
        local b = inline == nil and true or ({["true"] = true, ["1"] = true, yes = true, on = true,
                                              ["false"] = false, ["0"] = false, no = false, off = false})[inline]
        if b == nil then bad(("flag %s takes no value (or =yes/=no), got '%s'"):format(spec[1], inline)) end
        opts[k] = b
      else
        local v = inline
        if v == nil then
          i = i + 1
          v = argv[i]
          if v == nil then bad(("flag %s needs a value%s"):format(spec[1],
              spec.choices and (": one of " .. table.concat(spec.choices, ", ")) or "")) end
        end
        if spec.type == "number" or spec.type == "integer" then
          local n = tonumber(v)
          -- 1e999 is inf, and 2^70 passes n % 1 == 0 but has no integer
          -- (was nil: the flag silently lost; found by fuzz/fuzz_cli)
          if not n or n ~= n or n == math.huge or n == -math.huge
             or (spec.type == "integer" and math.tointeger(n) == nil) then
            bad(("flag %s expects %s, got '%s'"):format(spec[1], spec.type == "integer" and "an integer" or "a number", v))
          end
          if spec.min and n < spec.min then bad(("flag %s must be >= %s, got %s"):format(spec[1], spec.min, v)) end
          v = spec.type == "integer" and math.tointeger(n) or n
        elseif spec.choices then
          local ok = false
          for _, c in ipairs(spec.choices) do if c == v then ok = true end end
          if not ok then
            local s = cli.suggest(v, spec.choices)
            bad(("flag %s: unknown value '%s'; allowed: %s%s"):format(spec[1], v, table.concat(spec.choices, ", "),
              s and (" (did you mean " .. s .. "?)") or ""))
          end
        end
        opts[k] = v
      end
    end
    i = i + 1
  end
  return opts, positional
end

return cli
