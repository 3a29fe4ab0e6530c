-- Small JSON encoder/decoder for logs and metadata.
-- encode(v, indent): tables with keys 1..n are arrays; others are objects
-- with keys sorted, unless an explicit key order is given in v.__order.
local json = {}

local escapes = {['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
                 ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t'}

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

local function is_array(t)
  if t.__order then return false end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then return false end
    n = math.max(n, k)
  end
  return n == #t and (n > 0 or next(t) == nil)
end

local function number(v)   -- also json.format_number
  if v ~= v or v == math.huge or v == -math.huge then return "null" end
  if math.type(v) == "integer" then return tostring(v) end
  if v == math.floor(v) and math.abs(v) < 1e15 then return ("%.1f"):format(v) end
  for digits = 15, 17 do   -- shortest text that reads back exactly, like Python's repr
    local s = ("%." .. digits .. "g"):format(v)
    if tonumber(s) == v then return s end
  end
  return ("%.17g"):format(v)
end

local function enc(v, indent, depth, out)
  local t = type(v)
  if v == nil or v == json.null then out[#out + 1] = "null"
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "number" then out[#out + 1] = number(v)
  elseif t == "string" then out[#out + 1] = quote(v)
  elseif t == "table" then
    local nl = indent and ("\n" .. (" "):rep(indent * (depth + 1))) or ""
    local close = indent and ("\n" .. (" "):rep(indent * depth)) or ""
    local sep = indent and ": " or ":"
    if is_array(v) then
      if #v == 0 then out[#out + 1] = "[]"; return end
      out[#out + 1] = "["
      for i, x in ipairs(v) do
        out[#out + 1] = (i > 1 and "," or "") .. nl
        enc(x, indent, depth + 1, out)
      end
      out[#out + 1] = close .. "]"
    else
      local keys = {}
      if v.__order then
        for _, k in ipairs(v.__order) do if v[k] ~= nil then keys[#keys + 1] = k end end
      else
        for k in pairs(v) do keys[#keys + 1] = tostring(k) end
        table.sort(keys)
      end
      if #keys == 0 then out[#out + 1] = "{}"; return end
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        out[#out + 1] = (i > 1 and "," or "") .. nl .. quote(k) .. sep
        enc(v[k], indent, depth + 1, out)
      end
      out[#out + 1] = close .. "}"
    end
  else
    error("json.encode: cannot encode a " .. t)
  end
end

json.format_number = number

json.null = setmetatable({}, {__tostring = function() return "null" end})

function json.encode(v, indent)
  local out = {}
  enc(v, indent, 0, out)
  return table.concat(out)
end

-- decode: objects keep their key order in __order so that a log read and
-- written again keeps its layout
function json.decode(s, name)
  local pos = 1
  name = name or "JSON"
  local function fail(msg) error(("%s: %s at byte %d"):format(name, msg, pos), 0) end
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local value
  local function str()
    local out = {}
    pos = pos + 1
    while true do
      local c = s:sub(pos, pos)
      if c == "" then fail("unterminated string") end
      if c == '"' then pos = pos + 1; break end
      if c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        local map = {b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/"}
        if map[e] then out[#out + 1] = map[e]; pos = pos + 2
        elseif e == "u" then
          local hex = s:sub(pos + 2, pos + 5)
          if not hex:match("^%x%x%x%x$") then fail("bad \\u escape") end
          out[#out + 1] = utf8.char(tonumber(hex, 16)); pos = pos + 6
        else fail("bad escape") end
      else
        out[#out + 1] = c; pos = pos + 1
      end
    end
    return table.concat(out)
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      pos = pos + 1
      local obj = {__order = {}}
      ws()
      if s:sub(pos, pos) == "}" then pos = pos + 1; return obj end
      while true do
        ws()
        if s:sub(pos, pos) ~= '"' then fail("expected a key") end
        local k = str()
        ws()
        if s:sub(pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        obj[k] = value()
        table.insert(obj.__order, k)
        ws()
        local d = s:sub(pos, pos); pos = pos + 1
        if d == "}" then return obj end
        if d ~= "," then fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      pos = pos + 1
      local arr = {}
      ws()
      if s:sub(pos, pos) == "]" then pos = pos + 1; return arr end
      while true do
        arr[#arr + 1] = value()
        ws()
        local d = s:sub(pos, pos); pos = pos + 1
        if d == "]" then return arr end
        if d ~= "," then fail("expected ',' or ']'") end
      end
    elseif c == '"' then return str()
    elseif s:sub(pos, pos + 3) == "true" then pos = pos + 4; return true
    elseif s:sub(pos, pos + 4) == "false" then pos = pos + 5; return false
    elseif s:sub(pos, pos + 3) == "null" then pos = pos + 4; return json.null
    else
      local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
      if not num or num == "" then fail("unexpected character '" .. c .. "'") end
      pos = pos + #num
      return tonumber(num) or fail("bad number")
    end
  end
  local v = value()
  ws()
  if pos <= #s then fail("trailing characters") end
  return v
end

-- write text to path via path.tmp + rename, so a crash never leaves half a file
function json.write_file(path, v, indent)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "w")
  if not f then error("cannot write " .. path .. ": " .. err, 0) end
  f:write(json.encode(v, indent or 4), "\n")
  f:close()
  local ok, e = os.rename(tmp, path)
  if not ok then error("cannot write " .. path .. ": " .. e, 0) end
end

function json.read_file(path)
  local f, err = io.open(path)
  if not f then error("cannot read " .. path .. ": " .. err, 0) end
  local s = f:read("a"); f:close()
  return json.decode(s, path)
end

return json
