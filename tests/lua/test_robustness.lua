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
              facegen_write = true, facegen_prepare_dir = true, backward = true, sys = true}

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

-- ------------------------------------------------ checked sizes (issue 12)
-- Shapes whose products wrap int64 were accepted (zeros(0):view(2^32, 2^32)
-- has 2^64 = 0 elements) and then read garbage. Every size is now checked
-- against 2^53 (sizes 0 count as 1) and every allocation against the
-- storage limit before malloc.
test("sizes at 2^31, 2^32, 2^53, 2^63 and their products are clear errors", function()
  expect_error(function()
    local v = fmd.zeros(0):view(4294967296, 4294967296)
    for i = 1, 100000 do v[1][i] = 42 end
  end, "view: shape [4294967296 x 4294967296] is too large")
  expect_error(function() return fmd.zeros(0):view(2^32, -1, 2^32) end, "too large")
  expect_error(function() return fmd.zeros(0, 2^40, 2^40) end, "zeros: shape [0 x 1099511627776 x 1099511627776] is too large")
  expect_error(function() return fmd.ones(1):expand(2^32, 2^32) end, "expand: shape")
  expect_error(function() return fmd.ones(1):expand(2^32, 2^32):numel() end, "too large")
  expect_error(function() return fmd.zeros(2^31, 2^31) end, "too large")
  expect_error(function() return fmd.zeros((1 << 53) + 1) end, "too large")
  expect_error(function() return fmd.zeros(math.maxinteger) end, "too large")
  expect_error(function() return fmd.zeros(2^63) end, "integer")          -- not representable
  expect_error(function() return fmd.zeros(-2^63) end, "negative")
  expect_error(function() return fmd.zeros(2, 2^31, 2^31) end, "too large")
  -- allowed shapes at the limit: no memory needed
  expect_eq(fmd.zeros(0, 2^26, 2^27):numel(), 0)
  expect_eq(fmd.ones(1):expand(2^26, 2^27):numel(), 2^53 // 1)
  -- 2^53 floats fit the shape limit but not the machine: refused before malloc
  expect_error(function() return fmd.zeros(2^53) end, "more than the limit")
  expect_error(function() return fmd.empty(2^31, 2^10) end, "FMD_MAX_TENSOR_BYTES")
  expect_error(function() return fmd.randn(1e12, 7) end, "cannot allocate a [1000000000000 x 7] tensor")
  expect_error(function() return fmd.zeros(5):narrow(1, 2^62, 2^62) end, "out of bounds")
  expect_error(function() return fmd.arange(0, 1e300, 1e-300) end, "2^53")
end)

local function st_file(path, header, data)
  local f = assert(io.open(path, "wb"))
  f:write(string.pack("<I8", #header), header, data or "")
  f:close()
end

test("crafted safetensors with wrapping sizes are refused", function()
  local p = os.tmpname()
  st_file(p, '{"w":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}}')
  expect_error(function() return fmd.load_safetensors(p) end, "tensor 'w': empty: shape [0 x 4294967296 x 4294967296] is too large")
  -- 2^32 * 2^32 * 4 bytes wraps to 0 = the data size
  st_file(p, '{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}')
  expect_error(function() return fmd.load_safetensors(p) end, "needs")
  st_file(p, '{"w":{"dtype":"F32","shape":[9007199254740993],"data_offsets":[0,4]}}', "\0\0\0\0")
  expect_error(function() return fmd.load_safetensors(p) end, "needs")
  st_file(p, '{"w":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551616]}}', "\0\0\0\0")
  expect_error(function() return fmd.load_safetensors(p) end, "data_offsets")
  local f = assert(io.open(p, "wb")); f:write(string.pack("<I8", math.mininteger), "{}"); f:close()
  expect_error(function() return fmd.load_safetensors(p) end, "header length")
  os.remove(p)
end)

test("a safetensors file claiming more tensor bytes than it holds is refused before allocating", function()
  local p = os.tmpname()
  -- a 2^40-float tensor over 4 bytes of data
  st_file(p, '{"w":{"dtype":"F32","shape":[1048576,1048576],"data_offsets":[0,4]}}', "\0\0\0\0")
  expect_error(function() return fmd.load_safetensors(p) end, "needs 4398046511104 bytes but data_offsets")
  os.remove(p)
end)

-- a legacy torch.save file by hand: one float storage of n elements, and
-- tensors {name, size, stride} viewing it from offset 0
local function legacy_pth(path, n, tensors)
  local function str(x) return "X" .. string.pack("<I4", #x) .. x end
  local function int(i) return "J" .. string.pack("<i4", i) end
  local function tuple(xs)
    local t = {"("}
    for _, x in ipairs(xs) do t[#t + 1] = int(x) end
    return table.concat(t) .. "t"
  end
  local out = {"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.",   -- magic number
               "\x80\x02M\xe9\x03.",                                             -- protocol 1001
               "\x80\x02}.",                                                       -- sys_info
               "\x80\x02}"}
  for _, t in ipairs(tensors) do
    out[#out + 1] = str(t[1]) .. "ctorch._utils\n_rebuild_tensor_v2\n("
      .. "(" .. str("storage") .. "ctorch\nFloatStorage\n" .. str("0") .. str("cpu") .. int(n) .. "tQ"
      .. int(0) .. tuple(t[2]) .. tuple(t[3]) .. "\x89ccollections\nOrderedDict\n)RtRs"
  end
  out[#out + 1] = "."
  out[#out + 1] = "\x80\x02]" .. str("0") .. "a."                                 -- storage keys
  out[#out + 1] = string.pack("<I8", n) .. string.pack("<f", 0.5):rep(n)
  local f = assert(io.open(path, "wb"))
  f:write(table.concat(out))
  f:close()
end

test("a .pth whose tensors claim far more than its bytes is refused before allocating", function()
  local p = os.tmpname()
  -- what PyTorch writes and fmd reads: views, a shared storage, a small broadcast
  legacy_pth(p, 8, {{"a", {2, 4}, {4, 1}}, {"b", {8}, {1}}, {"c", {3, 8}, {0, 1}}})
  local sd = fmd.load_pth(p)
  expect_eq(sd.a:numel(), 8); expect_eq(sd.b[8], 0.5); expect_eq(sd.c:numel(), 24)
  -- one float broadcast to 2^28 (1 GiB) by zero strides: 300 bytes of file
  legacy_pth(p, 1, {{"w", {16384, 16384}, {0, 0}}})
  expect_error(function() return fmd.load_pth(p) end, "tensor 'w' [16384 x 16384] would bring the tensors of this file")
  -- a 256 KiB storage viewed whole by 400 tensors: 100 MiB from 300 KiB
  local many = {}
  for i = 1, 400 do many[i] = {"t" .. i, {65536}, {1}} end
  legacy_pth(p, 65536, many)
  local err = expect_error(function() return fmd.load_pth(p) end, "more than 16 times the file's")
  expect(err:find(p, 1, true), err)
  os.remove(p)
end)

-- a PNG header claiming w x h, no pixel data
local function crc32(s)
  local crc = 0xffffffff
  for i = 1, #s do
    crc = crc ~ s:byte(i)
    for _ = 1, 8 do crc = (crc >> 1) ~ (0xedb88320 & -(crc & 1)) end
  end
  return ~crc & 0xffffffff
end
local function png_header(w, h)
  local ihdr = "IHDR" .. string.pack(">I4I4BBBBB", w, h, 8, 2, 0, 0, 0)
  local idat, iend = "IDAT", "IEND"
  return "\137PNG\r\n\26\n" .. string.pack(">I4", 13) .. ihdr .. string.pack(">I4", crc32(ihdr))
    .. string.pack(">I4", 0) .. idat .. string.pack(">I4", crc32(idat))
    .. string.pack(">I4", 0) .. iend .. string.pack(">I4", crc32(iend))
end

test("a 16384 x 16384 PNG is refused before decoding (limit 2^26 pixels, overridable)", function()
  expect_error(function() return fmd.decode_image(png_header(16384, 16384), "big.png") end,
    "image 'big.png': PNG size 16384 x 16384 (268435456 pixels) is over the limit of 67108864 pixels")
  expect_error(function() return fmd.decode_image(png_header(70000, 1), "wide.png") end, "sides 1..65535")
  expect_error(function() return fmd.decode_image(png_header(0, 5), "zero.png") end, "")
  -- under the limit the header passes and decoding fails on the missing data
  expect_error(function() return fmd.decode_image(png_header(1000, 1000), "ok.png") end, "bad PNG")
  local p = os.tmpname()
  local f = assert(io.open(p, "wb")); f:write(png_header(100, 100)); f:close()
  local fmdbin = arg and arg[-1] or "fmd"
  local out = io.popen(("FMD_MAX_IMAGE_PIXELS=1000 %s -e 'print(pcall(fmd.load_image, %q))' 2>&1")
    :format(fmdbin, p)):read("a")
  expect(out:find("(10000 pixels) is over the limit of 1000 pixels", 1, true), out)
  os.remove(p)
end)

test("readers refuse pipes and directories without blocking", function()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir .. " && mkfifo " .. dir .. "/fifo"))
  for _, f in ipairs({"load_image", "load_safetensors", "load_pth"}) do
    expect_error(function() return fmd[f](dir .. "/fifo") end, "is not a regular file (a pipe)")
    expect_error(function() return fmd[f](dir) end, "is not a regular file (a directory)")
  end
  os.execute("rm -rf " .. dir)
end)

test("a safetensors file whose header length's low byte is 0x80 is not taken for a .pth", function()
  local models = require "fmd.models"
  local p = os.tmpname()
  local h = '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
  h = h .. (" "):rep(0x80 - #h)
  st_file(p, h, string.pack("<f", 1.5))
  local sd = models.read_xception_state(p)
  expect_eq(sd.w[1], 1.5)
  os.remove(p)
end)
