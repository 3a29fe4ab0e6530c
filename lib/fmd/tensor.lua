-- Tensor methods written in Lua and the pretty-printer (tostring(t)).
-- Called once by fmd/init.lua with the library table and the C core.
return function(fmd, C)
  local M = C.Tensor_methods
  local mt = C.Tensor

  local EDGE, THRESHOLD = 3, 1000

  -- values shown: all of them, or EDGE from each end of every dim when big
  local function collect(t, summarise)
    if t:dim() == 0 then return t:item() end
    local n = t:size(1)
    local rows = {}
    local function add(i)
      if t:dim() == 1 then rows[#rows + 1] = t[i] else rows[#rows + 1] = collect(t:select(1, i), summarise) end
    end
    if summarise and n > 2 * EDGE then
      for i = 1, EDGE do add(i) end
      rows[#rows + 1] = "..."
      for i = n - EDGE + 1, n do add(i) end
    else
      for i = 1, n do add(i) end
    end
    return rows
  end

  local function number_format(values)
    local all_int, maxabs, minabs = true, 0, math.huge
    local function scan(v)
      if type(v) == "table" then for _, x in ipairs(v) do scan(x) end return end
      if type(v) ~= "number" then return end
      if v ~= v or v == math.huge or v == -math.huge then return end
      if v ~= math.floor(v) then all_int = false end
      local a = math.abs(v)
      if a > maxabs then maxabs = a end
      if a > 0 and a < minabs then minabs = a end
    end
    scan(values)
    if all_int and maxabs < 1e8 then
      return function(v) return ("%.0f."):format(v) end
    elseif maxabs >= 1e8 or (minabs < 1e-4 and minabs < math.huge) or (maxabs > 0 and maxabs / minabs > 1e6) then
      return function(v) return ("%.4e"):format(v) end
    end
    return function(v) return ("%.4f"):format(v) end
  end

  local function str(v, fmt)
    return v ~= v and "nan" or (v == math.huge and "inf") or (v == -math.huge and "-inf") or fmt(v)
  end

  local function max_width(values, fmt)
    if type(values) == "number" then return #str(values, fmt) end
    local w = 0
    for _, v in ipairs(values) do
      if v ~= "..." then w = math.max(w, max_width(v, fmt)) end
    end
    return w
  end

  -- width: every number is right-aligned to the widest one in the tensor
  local function render(values, fmt, indent, width)
    if type(values) == "number" then return str(values, fmt) end
    local parts, nested = {}, type(values[1]) == "table"
    for _, v in ipairs(values) do
      if v == "..." then parts[#parts + 1] = "..."
      elseif nested then parts[#parts + 1] = render(v, fmt, indent .. " ", width)
      else local s = str(v, fmt); parts[#parts + 1] = (" "):rep(width - #s) .. s end
    end
    if nested then return "[" .. table.concat(parts, ",\n" .. indent .. " ") .. "]" end
    return "[" .. table.concat(parts, ", ") .. "]"
  end

  local function format(t)
    local summarise = t:numel() > THRESHOLD
    local values = collect(t:detach(), summarise)
    local fmt = number_format(values)
    local body = t:numel() == 0 and "[]" or render(values, fmt, "", max_width(values, fmt))
    local extra = ""
    if t.grad_fn then extra = ", grad_fn=" .. t.grad_fn
    elseif t.requires_grad then extra = ", requires_grad=true" end
    return ("%s\n[fmd.Tensor of size %s%s]"):format(body, C.shape_str(t), extra)
  end
  mt.__tostring = format
  -- x:size() and x.shape print like the footer: [2 x 3]
  C.Size.__tostring = function(s) return "[" .. table.concat(s, " x ") .. "]" end

  function M:float() return self end
  -- a 1-based dim (negative from the end) of a tensor with n dims, or an error
  local function dim_arg(what, d, n, extra)
    local hi = n + (extra or 0)
    if math.type(d) ~= "integer" then
      error(("%s: dim must be an integer, got %s"):format(what, tostring(d)), 3)
    end
    if d < 0 then d = d + hi + 1 end
    if d < 1 or d > hi then
      error(("%s: dim out of range (1..%d or -%d..-1)"):format(what, hi, hi), 3)
    end
    return d
  end

  function M:squeeze(d)
    local s = self:size()
    if d ~= nil then d = dim_arg("squeeze", d, #s) end
    local out = {}
    for i, n in ipairs(s) do
      if n ~= 1 or (d and i ~= d) then out[#out + 1] = n end
    end
    return self:reshape(out)
  end
  function M:unsqueeze(d)
    local s = self:size()
    table.insert(s, dim_arg("unsqueeze", d, #s, 1), 1)
    return self:reshape(s)
  end
  function M:flatten(start_dim)
    local s, out, n = self:size(), {}, 1
    if #s == 0 then return self:reshape(1) end
    start_dim = dim_arg("flatten", start_dim or 1, #s)
    for i = 1, start_dim - 1 do out[i] = s[i] end
    for i = start_dim, #s do n = n * s[i] end
    out[start_dim] = n
    return self:reshape(out)
  end
  function M:type() return "fmd.Tensor" end
end
