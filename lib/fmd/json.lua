-- JSON for logs and metadata, through cJSON (bindings/lua_json.c).
-- encode(v, indent): tables with keys 1..n are arrays (the empty table
-- too); others are objects with keys sorted, unless an explicit key order
-- is given in v.__order. Numbers: integers plain, integral floats as 3.0,
-- others in the shortest form that reads back exactly; NaN and infinities
-- become null. decode keeps each object's key order in __order, so a log
-- read and written again keeps its layout; a parse error names the file,
-- line and column.
local C = require "fmd.core"
local J = C._json
local json = {}

json.null = setmetatable({}, {__tostring = function() return "null" end})

json.format_number = J.format_number

function json.encode(v, indent)
  return J.encode(v, indent, json.null)
end

function json.decode(s, name)
  if type(s) ~= "string" then error(("json.decode: expected a string, got %s"):format(type(s)), 2) end
  local ok, v = pcall(J.decode, s, name or "JSON", json.null)
  if not ok then error(v, 0) end
  return v
end

-- write text to path via path.tmp + rename, so a crash never leaves half a file
function json.write_file(path, v, indent)
  local text = json.encode(v, indent or 4)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "w")
  if not f then error("cannot write " .. path .. ": " .. err, 0) end
  local okw, werr = f:write(text, "\n")
  local okc, cerr = f:close()
  if not okw or not okc then
    os.remove(tmp)
    error("cannot write " .. path .. ": " .. tostring(werr or cerr), 0)
  end
  local ok, e = os.rename(tmp, path)
  if not ok then os.remove(tmp); error("cannot write " .. path .. ": " .. e, 0) end
end

-- json.field(t, key, kind, where [, range]) -> t[key], checked before use.
-- For every value read back from a file (a training log, checkpoint
-- metadata, a resume state, a metrics file): a damaged or hand-edited file
-- gives one line naming the file (`where`) and the field, not a traceback
-- or a run on nonsense. kind: "number" (finite), "integer", "string",
-- "boolean", "table", "list" (a JSON array), "numbers" (an array of finite
-- numbers, each in the range), "integers" (the same, of integers). range: min, max (inclusive), above (an
-- exclusive minimum), len (a list's length), optional (nil passes).
local function describe(v)
  if v == json.null then return "null" end
  if type(v) == "string" then return ("'%s'"):format(#v > 40 and (v:sub(1, 40) .. "...") or v) end
  if type(v) == "number" then return json.format_number(v) end
  if type(v) == "table" then return (v.__order and next(v.__order)) and "an object" or "a list" end
  return tostring(v)
end

local KINDS = {number = "a number", integer = "an integer", string = "a string", boolean = "true or false",
               table = "an object or a list", list = "a list", numbers = "a list of numbers",
               integers = "a list of integers"}

local function finite(x) return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge end

local function in_range(v, r)
  return not ((r.min and v < r.min) or (r.max and v > r.max) or (r.above and v <= r.above))
end

local function range_text(r)
  local parts = {}
  if r.above then parts[#parts + 1] = "> " .. json.format_number(r.above) end
  if r.min then parts[#parts + 1] = ">= " .. json.format_number(r.min) end
  if r.max then parts[#parts + 1] = "<= " .. json.format_number(r.max) end
  return #parts > 0 and (" " .. table.concat(parts, " and ")) or ""
end

local function is_list(v) return type(v) == "table" and v ~= json.null and not (v.__order and next(v.__order)) end

function json.field(t, key, kind, where, range)
  range = range or {}
  local v = type(t) == "table" and t[key] or nil
  if v == nil and range.optional then return nil end
  local ok
  if kind == "number" or kind == "integer" then
    ok = finite(v) and (kind == "number" or math.tointeger(v) ~= nil) and in_range(v, range)
    if ok and kind == "integer" then v = math.tointeger(v) end
  elseif kind == "numbers" or kind == "integers" or kind == "list" then
    ok = is_list(v) and (not range.len or #v == range.len)
    local int = kind == "integers"
    for i = 1, ok and kind ~= "list" and #v or 0 do
      local x = v[i]
      if not (finite(x) and (not int or math.tointeger(x)) and in_range(x, range)) then
        error(("%s: '%s' value %d is %s, expected %s%s"):format(where, key, i, describe(x),
          int and "an integer" or "a number", range_text(range)), 0)
      end
    end
  elseif kind == "table" then ok = type(v) == "table" and v ~= json.null
  else ok = type(v) == kind end
  if not ok then
    local want = KINDS[kind] or kind
    if kind == "number" or kind == "integer" then want = want .. range_text(range) end
    if range.len and is_list(v) then want = ("%s of %d values (it has %d)"):format(want, range.len, #v) end
    error(("%s: '%s' is %s, expected %s"):format(where, key, v == nil and "missing" or describe(v), want), 0)
  end
  return v
end

function json.read_file(path)
  local f, err = io.open(path)
  if not f then error("cannot read " .. path .. ": " .. err, 0) end
  local s = f:read("a"); f:close()
  return json.decode(s, path)
end

return json
