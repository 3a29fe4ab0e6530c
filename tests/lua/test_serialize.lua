-- fmd.save_safetensors / load_safetensors / load_pth. The .pth fixtures and
-- the safetensors files holding their expected values are written by
-- tests/fixtures/make_pth.py (PyTorch 1.13).
local fmd = require "fmd"
local FIX = "tests/fixtures/pth/"

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

local function same_tensor(a, b, what)
  expect(fmd.is_tensor(a), what .. ": missing")
  local sa, sb = a:size(), b:size()
  expect_eq(#sa, #sb, what .. " ndim")
  for i = 1, #sb do expect_eq(sa[i], sb[i], what .. " size " .. i) end
  local fa, fb = a:flat(), b:flat()
  for i = 1, #fb do expect_eq(fa[i], fb[i], what .. " element " .. i) end
end

local function same_dict(got, expected, what)
  expect_eq(count(got), count(expected), what .. ": number of tensors")
  for name, t in pairs(expected) do same_tensor(got[name], t, what .. " " .. name) end
end

local expected = fmd.load_safetensors(FIX .. "state.safetensors")
local expected_shared = fmd.load_safetensors(FIX .. "shared.safetensors")

test("load_pth reads zip, legacy and deflate files like PyTorch wrote them", function()
  for _, f in ipairs{"state_zip.pth", "state_legacy.pth", "state_deflate.pth"} do
    local ts, names = fmd.load_pth(FIX .. f)
    same_dict(ts, expected, f)
    expect_eq(#names, count(ts), f .. ": names list")
  end
end)

test("load_pth names follow the state dict order", function()
  local _, names = fmd.load_pth(FIX .. "state_legacy.pth")
  local want = {"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                "bn1.num_batches_tracked", "fc.weight", "fc.bias", "extra.half"}
  for i, n in ipairs(want) do expect_eq(names[i], n, "name " .. i) end
end)

test("load_pth finds a nested state dict and strips module.", function()
  for _, f in ipairs{"nested_legacy.pth", "nested_zip.pth"} do
    local ts, names = fmd.load_pth(FIX .. f)
    same_dict(ts, expected, f)
    for _, n in ipairs(names) do expect(not n:find("^module%."), f .. ": prefix left in " .. n) end
  end
end)

test("load_pth reads Python 2 era legacy files (torch 0.3, GPU storages, views)", function()
  local ts, names = fmd.load_pth(FIX .. "old_style.pth")
  same_dict(ts, fmd.load_safetensors(FIX .. "old_style.safetensors"), "old_style.pth")
  expect_eq(names[1], "block1.rep.1.pointwise.weight")
end)

test("load_pth handles shared storages and non-contiguous views", function()
  for _, f in ipairs{"shared_zip.pth", "shared_legacy.pth"} do
    local ts = fmd.load_pth(FIX .. f)
    same_dict(ts, expected_shared, f)
    expect(ts.t:is_contiguous(), "loaded views are contiguous copies")
  end
  local ts = fmd.load_pth(FIX .. "shared_zip.pth")
  ts.base:fill(0)                      -- copies: the others keep their values
  expect_eq(ts.row:flat()[1], expected_shared.row:flat()[1])
end)

test("load_pth refuses code and damaged files", function()
  expect_error(function() fmd.load_pth(FIX .. "evil.pth") end, "refusing global 'posix.system'")
  expect_error(function() fmd.load_pth(FIX .. "evil_class.pth") end, "__main__.Custom")
  expect_error(function() fmd.load_pth(FIX .. "truncated_zip.pth") end, "truncated_zip.pth")
  expect_error(function() fmd.load_pth(FIX .. "truncated_legacy.pth") end, "truncated")
  expect_error(function() fmd.load_pth(FIX .. "no_such_file.pth") end, "no_such_file.pth")
  expect_error(function() fmd.load_pth(FIX .. "state.safetensors") end, "not a PyTorch checkpoint")
end)

test("load_safetensors converts every dtype to float32", function()
  expect_near(expected["extra.half"], fmd.tensor{0.5, -1.25, 3, 65504}, 0)
  expect_near(expected["extra.double"], fmd.tensor{1 / 3, -2e-8, 1e30}, 1e-7)
  expect_near(expected["extra.bool"], fmd.tensor{1, 0, 1}, 0)
  expect_near(expected["extra.uint8"], fmd.tensor{0, 17, 255}, 0)
  expect_eq(expected["extra.scalar"]:dim(), 0)
  expect_eq(expected["extra.scalar"]:item(), 2.5)
  expect_eq(expected["extra.empty"]:numel(), 0)
  local _, meta = fmd.load_safetensors(FIX .. "state.safetensors")
  expect_eq(meta.source, "make_pth.py")
end)

test("save_safetensors round trip with metadata", function()
  local path = os.tmpname()
  local a = fmd.randn(3, 4)
  local ts = {["block1.rep.0.weight"] = a, at = a:t(), s = fmd.tensor(1.5)}
  fmd.save_safetensors(path, ts, {epoch = 3, val_acc = 97.25, model = "XceptionBased", best = true})
  local back, meta = fmd.load_safetensors(path)
  expect_eq(count(back), 3)
  same_tensor(back["block1.rep.0.weight"], a, "weight")
  same_tensor(back.at, a:t():contiguous(), "transposed")
  expect_eq(back.s:item(), 1.5)
  expect_eq(meta.epoch, "3")
  expect_eq(meta.val_acc, "97.25")
  expect_eq(meta.model, "XceptionBased")
  expect_eq(meta.best, "true")
  -- no metadata table at all
  fmd.save_safetensors(path, {x = a})
  local _, m2 = fmd.load_safetensors(path)
  expect_eq(count(m2), 0)
  os.remove(path)
  local f = io.open(path .. ".tmp")
  expect(f == nil, "temporary file left behind")
end)

test("save_safetensors checks its arguments", function()
  local path = os.tmpname()
  expect_error(function() fmd.save_safetensors(path, {w = 3}) end, "'w' is a number, not a tensor")
  expect_error(function() fmd.save_safetensors(path, {fmd.zeros(2)}) end, "names must be strings")
  expect_error(function() fmd.save_safetensors(path, {w = fmd.zeros(2)}, {k = {}}) end, "metadata 'k'")
  expect_error(function() fmd.save_safetensors("/nonexistent_dir_fmd/x.safetensors", {w = fmd.zeros(2)}) end,
    "/nonexistent_dir_fmd/x.safetensors")
  expect_error(function() fmd.load_safetensors(FIX .. "state_zip.pth") end, "state_zip.pth")
  os.remove(path)
end)
