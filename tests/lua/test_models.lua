-- Models: exact parameter counts, names of the public Xception port,
-- PyTorch checkpoints (legacy and zip) giving PyTorch's outputs, lookup by
-- name with the user's folder first.
local fmd = require "fmd"
local models = require "fmd.models"

local FIX = "tests/fixtures/models/"
local TINY = {c1 = 4, c2 = 8, b1 = 8, b2 = 12, b3 = 16, b12 = 20, c3 = 24, c4 = 32, middle = 2}

test("parameter counts match the course", function()
  expect_eq(models.get_nof_params(models.load_model("SimpleNet")), 16901762)
  expect_eq(models.get_nof_params(models.load_model("Xception")), 22855952)
  local xb = models.load_model("XceptionBased", {pretrained = false})
  expect_eq(models.get_nof_params(xb), 23128786)
  expect_eq(models.format_count(23128786), "23,128,786")
end)

test("frozen parameters are not counted", function()
  local m = models.load_model("SimpleNet")
  m.conv1:requires_grad_(false)
  expect_eq(models.get_nof_params(m), 16901762 - (3 * 6 * 49 + 6))
end)

test("Xception state_dict names follow the public port", function()
  local _, keys = models.load_model("Xception"):state_dict()
  local set = {}
  for _, k in ipairs(keys) do set[k] = true end
  for _, k in ipairs{"conv1.weight", "bn1.running_mean", "block1.skip.weight", "block1.skipbn.running_var",
                     "block1.rep.0.conv1.weight", "block1.rep.0.pointwise.weight", "block1.rep.1.weight",
                     "block2.rep.1.conv1.weight", "block4.rep.7.pointwise.weight", "block12.rep.5.bias",
                     "conv3.conv1.weight", "conv4.pointwise.weight", "bn4.running_var", "fc.weight", "fc.bias"} do
    expect(set[k], "missing " .. k)
  end
  expect(not set["block4.skip.weight"], "middle blocks have no skip conv")
end)

test("SimpleNet forward shape", function()
  fmd.manual_seed(0)
  local m = models.load_model("SimpleNet")
  local y = fmd.no_grad(function() return m(fmd.randn(2, 3, 256, 256)) end)
  expect_eq(fmd.shape_str(y), "[2 x 2]")
end)

local function tiny_from(path)
  local m = models.load_model("Xception", {widths = TINY, num_classes = 10})
  models.load_xception_weights(m, path)
  local sd = models.read_xception_state(path)
  fmd.no_grad(function() m.fc.weight:copy(sd["fc.weight"]); m.fc.bias:copy(sd["fc.bias"]) end)
  return m:eval()
end

test("tiny Xception from a legacy .pth equals PyTorch", function()
  local io_ = fmd.load_safetensors(FIX .. "tiny_xception_io.safetensors")
  local m = tiny_from(FIX .. "tiny_xception_legacy.pth")
  local y = fmd.no_grad(function() return m(io_.input) end)
  expect_near(y, io_.logits, 1e-4)
end)

test("tiny Xception from a zip .pth (module., last_linear, nested) equals PyTorch", function()
  local io_ = fmd.load_safetensors(FIX .. "tiny_xception_io.safetensors")
  local m = tiny_from(FIX .. "tiny_xception_zip.pth")
  local y = fmd.no_grad(function() return m(io_.input) end)
  expect_near(y, io_.logits, 1e-4)
end)

test("XceptionBased loads the backbone and replaces fc", function()
  local m = models.load_model("XceptionBased", {widths = TINY, pretrained = FIX .. "tiny_xception_legacy.pth"})
  local sd = models.read_xception_state(FIX .. "tiny_xception_legacy.pth")
  expect_near(m.block2.rep[2].pointwise.weight, sd["block2.rep.1.pointwise.weight"], 0)
  local y = fmd.no_grad(function() return m:eval()(fmd.randn(1, 3, 64, 64)) end)
  expect_eq(fmd.shape_str(y), "[1 x 2]")
  expect_error(function() models.load_model("XceptionBased", {pretrained = FIX .. "nope.pth"}) end, "no such file")
  expect_error(function()
    models.load_model("XceptionBased", {widths = {c1 = 5}, pretrained = FIX .. "tiny_xception_legacy.pth"})
  end, "do not fit")
end)

test("unknown model names list the known ones and suggest", function()
  local err = expect_error(function() models.load_model("SimpelNet") end, "unknown model 'SimpelNet'")
  expect(err:find("did you mean SimpleNet?", 1, true), err)
  expect(err:find("XceptionBased", 1, true), err)
end)

test("a model in the user's ./models folder wins", function()
  local dir = os.tmpname()
  os.remove(dir)
  fmd.sys.mkdir(dir .. "/models")
  local f = assert(io.open(dir .. "/models/SimpleNet.lua", "w"))
  f:write([[local nn = require "fmd.nn"
local M = nn.Module:extend("MySimpleNet")
function M:__init() self.fc = nn.Linear(3, 2) end
function M:forward(x) return self.fc(x) end
return M
]])
  f:close()
  local exe = package.fmd_exe
  local p = io.popen(("cd %s && %s -e 'local m = require(\"fmd.models\"); print(m.get_nof_params(m.load_model(\"SimpleNet\")))' 2>&1")
    :format(dir, exe))
  local out = p:read("a"); p:close()
  os.execute("rm -rf " .. dir)
  expect(out:find("^8\n"), out)
end)
