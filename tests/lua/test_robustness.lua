-- No input from Lua crashes the process: every fmd function and tensor
-- method is called with random argument lists (wrong types, NaN, huge and
-- negative sizes, empty, strided and 8-dim tensors). Each call may raise a
-- Lua error; the test fails if the process dies or an error is not a string.
local fmd = require "fmd"

local function values()
  return {nil, 0, -1, 1, 2, 3, 1e12, -1e12, 7, 0 / 0, 1 / 0, "x", "", {}, {1, 2}, {-1}, {{1}, {2, 3}}, true, false,
    function() end, fmd.zeros(0), fmd.zeros(2, 3), fmd.randn(1, 3, 8, 8), fmd.ones(5), fmd.tensor(1),
    fmd.zeros(1, 1, 1, 1, 1, 1, 1, 1), fmd.randn(4, 4):t(), fmd.randn(2, 2):expand(3, 2, 2)}
end

-- functions that write files or change global state are left out
local SKIP = {manual_seed = true, set_num_threads = true, save_image = true, save_safetensors = true,
              faces_write = true, faces_prepare_dir = true, backward = true, sys = true}

test("random argument lists never crash", function()
  local names = {}
  for k, v in pairs(fmd) do if type(v) == "function" and not SKIP[k] then names[#names + 1] = k end end
  local methods = fmd.core.Tensor_methods
  for k in pairs(methods) do if not SKIP[k] then names[#names + 1] = "M." .. k end end
  table.sort(names)
  local calls, bad = 0, {}
  for seed = 1, 5 do
    math.randomseed(seed)
    local vals = values()
    for _, name in ipairs(names) do
      local is_method = name:sub(1, 2) == "M."
      local f = is_method and methods[name:sub(3)] or fmd[name]
      for _ = 1, 40 do
        local args, n = {}, math.random(0, 5)
        for i = 1, n do args[i] = vals[math.random(1, #vals + 1)] end
        if is_method then table.insert(args, 1, vals[math.random(21, #vals)]) end
        local ok, err = pcall(f, table.unpack(args, 1, 6))
        if not ok and type(err) ~= "string" then bad[#bad + 1] = name end
        calls = calls + 1
      end
    end
  end
  expect(calls > 5000, "calls made: " .. calls)
  expect(#bad == 0, "non-string errors from: " .. table.concat(bad, ", "))
end)
