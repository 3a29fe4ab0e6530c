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

function json.read_file(path)
  local f, err = io.open(path)
  if not f then error("cannot read " .. path .. ": " .. err, 0) end
  local s = f:read("a"); f:close()
  return json.decode(s, path)
end

return json
