-- fmd.tfjs: TensorFlow.js weights manifests and shards. The manifests here
-- are made by hand; the expected values follow tfjs-core's decodeWeights
-- rules (value = min + scale * q in double, stored as float32; quantised
-- int32 rounds as Math.round; float16 is IEEE binary16), and
-- tests/fixtures/tfjs_decode.json holds what tfjs itself decodes for a mixed
-- manifest (tests/fixtures/make_tfjs.mjs). The real model the face detector
-- uses is checked end to end in test_face_detector.lua.
local fmd = require "fmd"
local tfjs = require "fmd.tfjs"
local json = require "fmd.json"

local tmp = os.tmpname()
os.remove(tmp)
fmd.sys.mkdir(tmp)

local function write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

-- a manifest of groups {paths = {...}, weights = {...}} with shard bytes
-- {file = bytes}; returns the manifest's path
local n_dirs = 0
local function manifest(groups, shards, text)
  n_dirs = n_dirs + 1
  local dir = ("%s/m%d"):format(tmp, n_dirs)
  fmd.sys.mkdir(dir)
  for file, bytes in pairs(shards or {}) do write(dir .. "/" .. file, bytes) end
  local path = dir .. "/model-weights_manifest.json"
  write(path, text or json.encode(groups))
  return path
end

local function f32(...) return string.pack("<" .. ("f"):rep(select("#", ...)), ...) end
local function u8(...) return string.char(...) end
local function u16(...) return string.pack("<" .. ("I2"):rep(select("#", ...)), ...) end

local function values(t) return t:contiguous():flat() end
local function same(got, want, what)
  expect_eq(#got, #want, what .. ": element count")
  for i = 1, #want do expect_eq(got[i], want[i], ("%s element %d"):format(what, i)) end
end
local function fround(x) return (string.unpack("<f", string.pack("<f", x))) end

test("float32, int32 and float16 weights keep the manifest's shape and values", function()
  local specs = {
    {name = "w", shape = {2, 1, 1, 3}, dtype = "float32"},
    {name = "i", shape = {3}, dtype = "int32"},
    {name = "h", shape = {5}, dtype = "float16"},
    {name = "s", shape = {}, dtype = "float32"},
  }
  local bytes = f32(1.5, -2, 0.1, 3e30, -0, 7) .. string.pack("<i4i4i4", -7, 0, 16777216)
    .. u16(0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000) .. f32(42)
  local t, names = tfjs.decode(specs, bytes, "mem")
  same(names, {"w", "i", "h", "s"}, "names in manifest order")
  expect_eq(tostring(t.w:size()), "[2 x 1 x 1 x 3]")
  same(values(t.w), {1.5, -2, fround(0.1), fround(3e30), 0, 7}, "float32")
  same(values(t.i), {-7, 0, 16777216}, "int32")
  same(values(t.h), {1, -2, 65504, 2 ^ -24, 0}, "float16 (normal, max, subnormal, -0)")
  expect_eq(t.s:dim(), 0)
  expect_eq(t.s:item(), 42)
end)

test("uint8 and uint16 quantisation: min + scale * q, rounded once to float32", function()
  local specs = {
    {name = "a", shape = {4}, dtype = "float32", quantization = {dtype = "uint8", min = -1.2069439495311063,
                                                                  scale = 0.009007044399485869}},
    {name = "b", shape = {3}, dtype = "float32", quantization = {dtype = "uint16", min = -1, scale = 1 / 65535}},
    {name = "c", shape = {2}, dtype = "float32", quantization = {dtype = "float16"}},
  }
  local t = tfjs.decode(specs, u8(0, 1, 134, 255) .. u16(0, 65535, 32768) .. u16(0x3555, 0xfbff), "mem")
  local a = {}
  for i, q in ipairs{0, 1, 134, 255} do a[i] = fround(q * 0.009007044399485869 + -1.2069439495311063) end
  same(values(t.a), a, "uint8")
  same(values(t.b), {-1, 0, fround(32768 * (1 / 65535) + -1)}, "uint16")
  same(values(t.c), {fround(0.333251953125), -65504}, "float16 quantisation")
end)

test("quantised int32 weights round half up, as Math.round", function()
  local t = tfjs.decode({{name = "k", shape = {4}, dtype = "int32",
                          quantization = {dtype = "uint8", min = -3, scale = 0.5}}}, u8(1, 0, 7, 8), "mem")
  same(values(t.k), {-2, -3, 1, 1}, "round(-2.5) = -2, round(0.5) = 1")
end)

test("several shards and groups: shards concatenate in order, groups merge", function()
  local path = manifest({
    {paths = {"g1-shard1of2.bin", "g1-shard2of2.bin"},
     weights = {{name = "x", shape = {3}, dtype = "float32"}, {name = "y", shape = {2}, dtype = "float32",
                quantization = {dtype = "uint8", min = 0, scale = 2}}}},
    {paths = {"g2.bin"}, weights = {{name = "z", shape = {1, 2}, dtype = "float16"}}},
  }, {
    -- the second float of x straddles the two shards
    ["g1-shard1of2.bin"] = f32(1, 2):sub(1, 6),
    ["g1-shard2of2.bin"] = f32(1, 2):sub(7) .. f32(3) .. u8(3, 4),
    ["g2.bin"] = u16(0x3c00, 0x4000),
  })
  local t, names = tfjs.load(path)
  same(names, {"x", "y", "z"}, "names")
  same(values(t.x), {1, 2, 3}, "x")
  same(values(t.y), {6, 8}, "y")
  same(values(t.z), {1, 2}, "z")
end)

test("tfjs's own decodeWeights agrees (tests/fixtures/tfjs_decode.json)", function()
  local fx = json.read_file("tests/fixtures/tfjs_decode.json")
  local bytes = fx.bytes_hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
  local t, names = tfjs.decode(fx.weights, bytes, "tfjs_decode.json")
  expect_eq(#names, #fx.weights)
  for _, spec in ipairs(fx.weights) do
    -- tfjs gives float32 or int32 values (JSON carries them exactly); fmd
    -- holds int32 as float32, so 2147483647 is 2^31
    local want = {}
    for i, v in ipairs(fx.values[spec.name]) do want[i] = fround(v) end
    same(values(t[spec.name]), want, spec.name)
  end
end)

------------------------------------------------------------ bad input

local ONE = {{name = "w", shape = {2, 3}, dtype = "float32"}}

test("a short shard: one error naming the tensor, the bytes it needs and what the data holds", function()
  local err = expect_error(function() tfjs.decode(ONE, f32(1, 2, 3, 4, 5), "m.json") end,
    "m.json: tensor 'w' (float32 [2, 3]) needs bytes 0..24 but the data holds 20 bytes (the manifest describes 24)")
  expect(not err:find("traceback"), err)
end)

test("a manifest that describes fewer bytes than the shards hold", function()
  expect_error(function() tfjs.decode(ONE, f32(1, 2, 3, 4, 5, 6, 7), "m.json") end,
    "m.json: the data holds 28 bytes but the manifest describes 24 (4 bytes left over after 'w')")
end)

test("a huge shape over a tiny shard allocates nothing", function()
  local before = fmd.memory_in_use()
  expect_error(function()
    tfjs.decode({{name = "big", shape = {2 ^ 20, 2 ^ 20, 2 ^ 10}, dtype = "float32"}}, f32(1), "m.json")
  end, "tensor 'big' (float32 [1048576, 1048576, 1024]) needs bytes 0..4503599627370496 but the data holds 4 bytes")
  expect_error(function()
    tfjs.decode({{name = "huge", shape = {2 ^ 40, 2 ^ 40}, dtype = "float32"}}, f32(1), "m.json")
  end, "tensor 'huge': shape [1099511627776, 1099511627776] has more than 2^53 elements")
  expect_eq(fmd.memory_in_use(), before)
end)

test("unknown dtypes and malformed specs are named", function()
  local cases = {
    {{name = "s", shape = {1}, dtype = "string"}, "tensor 's': unknown dtype 'string' (fmd reads float32, int32 and float16)"},
    {{name = "q", shape = {1}, dtype = "float32", quantization = {dtype = "int4", min = 0, scale = 1}},
     "tensor 'q': unknown quantization dtype 'int4' (tfjs has uint8, uint16 and float16)"},
    {{name = "q", shape = {1}, dtype = "float32", quantization = {dtype = "uint8"}},
     "tensor 'q': uint8 quantization needs numbers min and scale"},
    {{name = "q", shape = {1}, dtype = "int32", quantization = {dtype = "float16"}},
     "tensor 'q': float16 quantization applies to float32 weights, not int32"},
    {{name = "n", shape = {2, -1}, dtype = "float32"}, "tensor 'n': shape entry 2 is -1, expected an integer >= 0"},
    {{name = "n", shape = {1.5}, dtype = "float32"}, "tensor 'n': shape entry 1 is 1.5, expected an integer >= 0"},
    {{shape = {1}, dtype = "float32"}, "m.json: weight 1: has no name (a string)"},
  }
  for _, c in ipairs(cases) do expect_error(function() tfjs.decode({c[1]}, f32(1), "m.json") end, c[2]) end
  expect_error(function() tfjs.decode({ONE[1], ONE[1]}, f32(1, 2, 3, 4, 5, 6):rep(2), "m.json") end,
    "m.json: tensor 'w' is listed twice")
end)

test("load: missing manifest, bad JSON, not a list, missing shard", function()
  expect_error(function() tfjs.load(tmp .. "/nosuch.json") end, tmp .. "/nosuch.json: no such file")
  expect_error(function() tfjs.load(tmp) end, tmp .. ": is a folder, not a file")
  local p = manifest(nil, nil, '[{"paths": ["a.bin"], "weights": [}]')
  expect_error(function() tfjs.load(p) end, p .. ", line 1, column 35: invalid JSON")
  p = manifest(nil, nil, '{"paths": ["a.bin"]}')
  expect_error(function() tfjs.load(p) end, p .. ": a weights manifest is a list of groups {paths, weights}")
  p = manifest({{paths = {"a.bin"}}})
  expect_error(function() tfjs.load(p) end, p .. ": group 1 needs 'paths' and 'weights' lists")
  p = manifest({{paths = {"a.bin", "b.bin"}, weights = ONE}}, {["a.bin"] = f32(1, 2, 3)})
  local dir = p:match("^(.*)/")
  expect_error(function() tfjs.load(p) end,
    ("%s: shard 'b.bin' (group 1) at %s/b.bin: no such file"):format(p, dir))
  p = manifest({{paths = {"a.bin"}, weights = ONE}}, {["a.bin"] = f32(1, 2, 3)})
  expect_error(function() tfjs.load(p) end,
    p .. " (group 1: a.bin): tensor 'w' (float32 [2, 3]) needs bytes 0..24 but the data holds 12 bytes")
  p = manifest({{paths = {"a.bin"}, weights = ONE}, {paths = {"b.bin"}, weights = ONE}},
    {["a.bin"] = f32(1, 2, 3, 4, 5, 6), ["b.bin"] = f32(1, 2, 3, 4, 5, 6)})
  expect_error(function() tfjs.load(p) end, p .. ": tensor 'w' is in two groups")
end)

test("a FIFO as manifest or shard is refused without blocking", function()
  local fifo = tmp .. "/pipe.json"
  assert(os.execute("mkfifo '" .. fifo .. "'"))
  expect_error(function() tfjs.load(fifo) end, fifo .. ": is not a regular file")
  local p = manifest({{paths = {"../pipe.json"}, weights = ONE}})
  expect_error(function() tfjs.load(p) end, "shard '../pipe.json' (group 1) at ")
end)

test("the engine's own checks: byte count against the shape, range inside the string", function()
  expect_error(function() fmd.tfjs_decode(f32(1), 0, 3, "float32", {1}) end,
    "tfjs_decode: float32 [1] needs 4 bytes, got 3")
  expect_error(function() fmd.tfjs_decode(f32(1), 2, 4, "float32", {1}) end,
    "tfjs_decode: 4 bytes at offset 2 are outside the 4 bytes given")
  expect_error(function() fmd.tfjs_decode(f32(1), 0, 4, "float64", {1}) end, "invalid option 'float64'")
  expect_error(function() fmd.tfjs_decode("a", 0, 1, "uint8", {1}, 0, 1 / 0) end, "must be finite")
  expect_eq(fmd.tfjs_decode(u8(9, 7), 1, 1, "uint8", {1}, 1, 2):item(), 15)
end)

os.execute("rm -rf '" .. tmp .. "'")
