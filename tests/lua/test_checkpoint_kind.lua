-- A checkpoint's kind (safetensors or PyTorch .pth) is decided by its
-- content in one place, fmd.state_io.kind, and every way into a checkpoint
-- asks it. A safetensors file starts with its header length, whose low byte
-- is 0x80 for 1 header length in 32 (fmd pads headers to multiples of 8):
-- m:load once took such a file for a pickle ("not a PyTorch checkpoint").
-- Here checkpoints with header lengths 0x80, 0x180, 0x8000 and the first
-- length ending in 0x80 of SimpleNet's and the bonus model's go through
-- every public entry point: m:load, fmd.load_model, the bonus model's load,
-- models.read_xception_state, and scripts/numerical_analysis.lua -cpp.
local fmd = require "fmd"
local nn = fmd.nn
local models = require "fmd.models"
local state_io = require "fmd.state_io"

local tmp, run = script_sandbox()

local function header_len(path)
  local f = assert(io.open(path, "rb"))
  local n = string.unpack("<I8", f:read(8))
  f:close()
  return n
end

local function first_byte(path)
  local f = assert(io.open(path, "rb"))
  local b = f:read(1):byte()
  f:close()
  return b
end

-- m:save(path, meta) with a metadata string padded so that the safetensors
-- header is exactly `target` bytes (a multiple of 8, as fmd pads headers)
local function save_padded(m, path, target, meta)
  meta = meta or {}
  meta.pad = ""
  m:save(path, meta)
  local natural = header_len(path)
  assert(natural <= target, ("%s: the header is already %d bytes, more than %d"):format(path, natural, target))
  meta.pad = ("x"):rep(target - natural)
  m:save(path, meta)
  expect_eq(header_len(path), target, path .. " header length")
  return path
end

-- the smallest header length >= that of m's checkpoint whose low byte is 0x80
local function next_0x80(m, meta)
  local p = tmp .. "/probe.safetensors"
  meta = meta or {}
  meta.pad = ""
  m:save(p, meta)
  local n = header_len(p)
  os.remove(p)
  return (n - 0x80 + 0xff) // 0x100 * 0x100 + 0x80
end

local function same_weights(a, b)
  for k, t in pairs(a:state_dict()) do expect_near(b:state_dict()[k], t, 0, k) end
end

-- a module with one parameter: the smallest checkpoint (a 0x80 header)
local One = nn.Module:extend("One")
function One:__init() self:register_parameter("w", fmd.tensor({1.5})) end

local Small = nn.Module:extend("Small")
function Small:__init() self.fc = nn.Linear(2, 2) end

test("the test files are what they claim: header lengths 0x80, 0x180, 0x8000; first byte 0x80", function()
  local p = save_padded(One(), tmp .. "/one_80.safetensors", 0x80)
  expect_eq(first_byte(p), 0x80)
  p = save_padded(Small(), tmp .. "/small_180.safetensors", 0x180)
  expect_eq(first_byte(p), 0x80)
  p = save_padded(Small(), tmp .. "/small_8000.safetensors", 0x8000)
  expect_eq(first_byte(p), 0x00)
end)

test("state_io.kind: safetensors whatever its header length; zip, legacy and tar .pth", function()
  for _, c in ipairs{{One, 0x80}, {Small, 0x180}, {Small, 0x8000}} do
    local target = c[2]
    local p = save_padded(c[1](), ("%s/k_%x.safetensors"):format(tmp, target), target)
    expect_eq(state_io.kind(p), "safetensors", p)
  end
  local kind, how = state_io.kind("tests/fixtures/pth/state_zip.pth")
  expect_eq(kind, "pth"); expect_eq(how, "zip")
  kind, how = state_io.kind("tests/fixtures/pth/state_legacy.pth")
  expect_eq(kind, "pth"); expect_eq(how, "legacy")
  kind, how = state_io.kind("tests/fixtures/pth/old_style.pth")
  expect_eq(kind, "pth"); expect_eq(how, "legacy")
  -- a pre-0.1.10 tar checkpoint is a .pth (load_pth then says it is too old)
  local tar = tmp .. "/old.tar.pth"
  local f = assert(io.open(tar, "wb")); f:write(("\0"):rep(257) .. "ustar" .. ("\0"):rep(250)); f:close()
  expect_eq(state_io.kind(tar), "pth")
  expect_error(function() state_io.read(tar) end, "tar-format checkpoint")
end)

test("state_io.kind: anything else is one error naming the file and what was expected", function()
  local err = expect_error(function() state_io.kind("tests/fixtures/metrics.json") end,
    "checkpoint tests/fixtures/metrics.json: not a checkpoint: expected a safetensors file")
  expect(err:find("it starts 7b", 1, true) and not err:find("\n"), err)
  local empty = tmp .. "/empty.safetensors"
  local f = assert(io.open(empty, "wb")); f:close()
  expect_error(function() state_io.kind(empty) end, "empty.safetensors: not a checkpoint")
  expect_error(function() state_io.kind(empty) end, "the file is empty")
  -- a pickle that is not torch.save's (0x80 <protocol>, no LONG1 magic)
  local pkl = tmp .. "/plain.pkl"
  f = assert(io.open(pkl, "wb")); f:write("\x80\x04\x95\x05\0\0\0\0\0\0\0}\x94."); f:close()
  expect_error(function() state_io.kind(pkl) end, "plain.pkl: not a checkpoint")
  expect_error(function() state_io.kind(tmp .. "/nope.pth") end, "nope.pth: no such file")
  expect_error(function() state_io.kind(tmp) end, ": is a folder, not a file")
  expect_error(function() state_io.kind(tmp .. "/nope.pth", "Xception weights") end, "Xception weights " .. tmp)
  expect_error(function() state_io.kind(7) end, "checkpoint: expected a file name, got number")
end)

test("m:load and models.read_xception_state read 0x80, 0x180 and 0x8000 headers", function()
  local cases = {{One, 0x80}, {Small, 0x180}, {Small, 0x8000}}
  for _, c in ipairs(cases) do
    fmd.manual_seed(7)
    local a = c[1]()
    local p = save_padded(a, ("%s/load_%x.safetensors"):format(tmp, c[2]), c[2])
    local b = c[1]()
    local _, meta = b:load(p)
    expect_eq(meta.model, a.__short_name or a.__name)
    same_weights(a, b)
    local sd = models.read_xception_state(p)
    for k, t in pairs(a:state_dict()) do expect_near(sd[k], t, 0, k) end
  end
end)

test("fmd.load_model and the bonus model's load read SimpleNet and bonus checkpoints with such headers", function()
  fmd.manual_seed(8)
  local s = models.load_model("SimpleNet")
  for _, target in ipairs{next_0x80(s), 0x8000} do
    local p = save_padded(s, ("%s/simplenet_%x.safetensors"):format(tmp, target), target)
    expect_eq(first_byte(p), target & 0xff)
    local m = fmd.load_model("SimpleNet", p)
    same_weights(s, m)
  end
  local Bonus = models.class("bonus")
  local b = Bonus({design = "wide5"})
  local meta = {design = "wide5", spec = Bonus.DESIGNS.wide5}
  for _, target in ipairs{next_0x80(b, meta), 0x8000} do
    local p = save_padded(b, ("%s/bonus_%x.safetensors"):format(tmp, target), target, meta)
    expect_eq(first_byte(p), target & 0xff)
    local m = Bonus.my_bonus_model(p)             -- rebuilds the saved design (not CHOSEN)
    expect_eq(m.design_name, "wide5")
    same_weights(b, m)
    same_weights(b, (fmd.load_model("bonus", p)))
  end
end)

test("scripts/numerical_analysis.lua -cpp reads a checkpoint whose first byte is 0x80", function()
  -- a tiny test split: two dark real and two bright fake images
  for _, cls in ipairs{{"real", 0.2}, {"fake", 0.7}} do
    local dir = ("%s/data/toy/test/%s"):format(tmp, cls[1])
    fmd.sys.mkdir(dir)
    for i = 1, 2 do fmd.save_image(("%s/%d.png"):format(dir, i), fmd.rand(3, 16, 16) * 0.2 + cls[2]) end
  end
  local s = models.load_model("SimpleNet")
  local p = save_padded(s, tmp .. "/cli.safetensors", next_0x80(s))
  expect_eq(first_byte(p), 0x80)
  local out, code = run("numerical_analysis.lua", ("-m SimpleNet -d toy --data-root %s/data -cpp %s --threads 1"):format(tmp, p))
  expect_eq(code, 0, out)
  expect(out:find("AUC score A", 1, true), out)
end)

test("a resumable state and a metadata design are checked before use: one error naming the file and field", function()
  -- the bonus model's saved design: a damaged spec is named, not built
  local Bonus = models.class("bonus")
  local p = tmp .. "/bad_spec.safetensors"
  local spec = {widths = {8, 8}, kernels = {3, 5}, pools = {2, -2}, grid = 1, hidden = 16}
  state_io.save(p, {model = Bonus():state_dict()}, {design = "meso4", spec = spec})
  expect_error(function() Bonus.my_bonus_model(p) end,
    p .. " (metadata 'spec'): 'pools' value 2 is -2, expected an integer >= 1 and <= 64")
  spec.pools = {2, 2}
  spec.hidden = "16"
  state_io.save(p, {model = Bonus():state_dict()}, {design = "meso4", spec = spec})
  expect_error(function() Bonus.my_bonus_model(p) end, "'hidden' is '16', expected an integer")
end)

os.execute("rm -rf " .. tmp)
