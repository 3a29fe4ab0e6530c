-- Every ```lua block in docs/*.md runs without error (the examples assert
-- what they claim).
local function blocks(path)
  local f = io.open(path)
  if not f then return {} end
  local text = f:read("a"); f:close()
  local out = {}
  for code in text:gmatch("```lua\n(.-)```") do out[#out + 1] = code end
  return out
end

local fmd = require "fmd"
local docs = {}
for _, name in ipairs(fmd.sys.listdir("docs")) do
  if name:match("%.md$") then docs[#docs + 1] = "docs/" .. name end
end
for _, path in ipairs(docs) do
  for i, code in ipairs(blocks(path)) do
    test(("%s example %d"):format(path, i), function()
      local chunk = assert(load(code, "=" .. path .. "#" .. i))
      local saved_print = print
      print = function() end   -- keep the test output readable
      local ok, err = pcall(chunk)
      print = saved_print
      if not ok then error(err, 0) end
    end)
  end
end
