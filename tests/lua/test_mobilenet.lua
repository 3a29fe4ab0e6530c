-- MobileNetV2 from nsfwjs' Keras files: the JavaScript wrapper (object
-- literal, base64 shards), the model's shape, and the whole packaged model
-- (fmd's MobileNetV2 with nsfwjs' own five-class head) against TensorFlow.js
-- on 20 face images (tests/fixtures/mobilenet/: inputs.lua makes the images,
-- reference.json is what make_mobilenet_ref.mjs got from @tensorflow/tfjs).
-- A wrong kernel transpose, symmetric padding or PyTorch's BatchNorm eps
-- must each break the agreement. The tests of the packaged weights need the
-- nsfwjs files in the weights cache (scripts/bootstrap.sh fetches them;
-- build/fmd scripts/fetch_weights.lua nsfwjs); without them they are
-- skipped with a line saying so, or fail when FMD_REQUIRE_WEIGHTS=1.
local fmd = require "fmd"
local nn = require "fmd.nn"
local json = require "fmd.json"
local keras = require "fmd.keras"
local models = require "fmd.models"
local weights = require "fmd.weights"
local FIX = "tests/fixtures/mobilenet"

local HAVE = weights.have("nsfwjs")
local function test_with_weights(name, fn)
  if HAVE or os.getenv("FMD_REQUIRE_WEIGHTS") == "1" then return test(name, fn) end
  io.stderr:write(("skip (nsfwjs weights not fetched: %s nsfwjs): %s\n"):format(weights.FETCH_COMMAND, name))
end

test("a JavaScript object literal becomes JSON: bare keys, !0/!1, .5", function()
  local js = [[x.exports={a:1,b:!0,c:!1,"d":[.5,-.25,1e-3,2.5e+2,-3],e:{f:"g:\"h\"",g:null},h:[]};]]
  local i = js:find("{", 1, true)
  local v = json.decode(keras._js_literal_to_json(js, i, "t.js"))
  expect_eq(v.a, 1); expect_eq(v.b, true); expect_eq(v.c, false)
  expect_eq(v.d[1], 0.5); expect_eq(v.d[2], -0.25); expect_eq(v.d[3], 1e-3); expect_eq(v.d[4], 250)
  expect_eq(v.e.f, 'g:"h"'); expect_eq(v.e.g, json.null); expect_eq(#v.h, 0)
  expect_error(function() keras._js_literal_to_json("{a:b}", 1, "t.js") end, "t.js: 'b' is not data")
  expect_error(function() keras._js_literal_to_json("{a:[1,2", 1, "t.js") end, "t.js: the object literal does not end")
  expect_error(function() keras._js_literal_to_json('{a:"x', 1, "t.js") end, "t.js: a string does not end")
end)

test("base64_decode: RFC 4648 vectors and bad text", function()
  for plain, enc in pairs{[""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==", fooba = "Zm9vYmE=",
                          foobar = "Zm9vYmFy"} do
    expect_eq(fmd.base64_decode(enc), plain)
  end
  expect_eq(fmd.base64_decode("/+8A"), "\255\239\0")
  expect_error(function() fmd.base64_decode("Zm9", "s.js") end, "s.js: base64 text of 3 characters")
  expect_error(function() fmd.base64_decode("Zm=v", "s.js") end, "s.js: byte 3 of the base64 text is '='")
end)

test("MobileNetV2: shapes, 2,223,872 backbone parameters, every one named in Keras", function()
  fmd.manual_seed(5)
  local MobileNetV2 = models.class("MobileNetV2")
  local net = MobileNetV2({num_classes = 2})
  expect_eq(models.get_nof_params(net), 2223872 + 1280 * 2 + 2)
  local map, named = MobileNetV2.keras_names(), 0
  for k in pairs(net:state_dict()) do
    if not k:match("^fc%.") then
      expect(map[k:match("^(.*)%.[^.]+$")], k .. " has no Keras name")
      named = named + 1
    end
  end
  expect_eq(named, 52 * 4 + 52)   -- 52 BatchNorms (4 tensors each), 35 convs and 17 depthwise convs
  -- 64x64: five halvings to 2x2; a backward reaches the stem
  local x = fmd.rand(2, 3, 64, 64)
  local y = net(x)
  expect_eq(fmd.shape_str(y), "[2 x 2]")
  y:sum():backward()
  expect(net.conv1.weight.grad and net.conv1.weight.grad:abs():sum():item() > 0, "no gradient at conv1")
  expect_eq(net.block1.depthwise_bn.eps, 1e-3)
end)

-- nsfwjs' MobileNetV2 with its own head (dense 256, 128, 5; ReLU; dropout
-- is the identity at inference), in eval mode
local keras_model
local function packaged_model()
  keras_model = keras_model or keras.load(weights.path("nsfwjs", "dist/models/mobilenet_v2/model.min.js"))
  local m = keras_model
  local head = nn.Sequential(nn.Linear(1280, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 5))
  local net = models.class("MobileNetV2")({head = head})
  local rest = net:load_keras(m)
  expect_eq(table.concat(rest, ","), "dense_1,dense_2,dense_3")
  head:load_state_dict(keras.state_dict(m, {["0"] = "dense_1", ["2"] = "dense_2", ["4"] = "dense_3"}, {partial = true}))
  net:eval()
  return net, head
end

local function run(net, head, x)
  return fmd.no_grad(function()
    local f = net:features(x)
    local logits = head(f)
    return fmd.softmax(logits, 2), logits, f
  end)
end

local function max_abs(a, b) return (a - (fmd.is_tensor(b) and b or fmd.tensor(b))):abs():max():item() end

test_with_weights("the packaged MobileNetV2 equals TensorFlow.js on 20 face images", function()
  local ref = json.read_file(FIX .. "/reference.json")
  local x, names = dofile(FIX .. "/inputs.lua")(FIX)
  expect_eq(table.concat(names, "|"), table.concat(ref.names, "|"), "inputs.lua and reference.json disagree")
  local net, head = packaged_model()
  local probs, logits, feats = run(net, head, x)
  local dp, dl = max_abs(probs, ref.probs), max_abs(logits, ref.logits)
  local df = max_abs(feats:narrow(1, 1, 2), ref.features_first2)
  local ds = max_abs(feats:sum(2) / fmd.tensor(ref.feature_sums), fmd.ones(#names))
  io.stderr:write(("mobilenet vs tfjs: max abs diff probs %.2g, logits %.2g (|logit| <= %.1f), "
    .. "features %.2g; feature sums rel %.2g\n"):format(dp, dl, logits:abs():max():item(), df, ds))
  expect(dp <= 1e-5, ("probabilities differ by %.3g"):format(dp))
  expect(dl <= 1e-4, ("logits differ by %.3g"):format(dl))
  expect(df <= 1e-5, ("pooled features differ by %.3g"):format(df))
  expect(ds <= 1e-4, ("feature sums differ by %.3g (relative)"):format(ds))
  -- the images do not all get the same answer: the comparison sees the input
  local spread = max_abs(logits:narrow(1, 1, 10), logits:narrow(1, 11, 10))
  expect(spread > 1, ("the astronaut and the generated faces get nearly the same logits (%.3g)"):format(spread))
end)

test_with_weights("a wrong transpose, symmetric padding or BatchNorm eps 1e-5 break the agreement", function()
  local ref = json.read_file(FIX .. "/reference.json")
  local x = dofile(FIX .. "/inputs.lua")(FIX):narrow(1, 1, 4)
  local want = fmd.tensor(ref.logits):narrow(1, 1, 4)
  local function logit_diff(change)
    local net, head = packaged_model()
    change(net)
    local _, logits = run(net, head, x)
    return max_abs(logits, want)
  end
  expect(logit_diff(function() end) <= 1e-4, "the unchanged model must agree")
  -- Conv2D kernels permuted (kw, kh) instead of (kh, kw): every 3x3 kernel transposed
  local d1 = logit_diff(function(net)
    for _, m in net:named_modules() do
      if m.__name == "nn.Conv2d" and m.kernel_size[1] == 3 then
        local w = m.weight
        w:copy(w:transpose(3, 4):contiguous())
      end
    end
  end)
  -- 'same' padding on both sides instead of Keras' bottom/right only
  local d2 = logit_diff(function(net)
    net.pad = nn.ZeroPad2d(1)
    for i = 0, 16 do
      local b = net["block" .. i]
      if b.pad then b.pad = nn.ZeroPad2d(1) end
    end
  end)
  -- PyTorch's BatchNorm eps instead of Keras' 1e-3
  local d3 = logit_diff(function(net)
    for _, m in net:named_modules() do if m.__name == "nn.BatchNorm2d" then m.eps = 1e-5 end end
  end)
  io.stderr:write(("mobilenet negative checks: max abs logit diff transpose %.3g, symmetric padding %.3g, "
    .. "eps 1e-5 %.3g\n"):format(d1, d2, d3))
  expect(d1 > 0.1, ("transposed kernels still agree (%.3g)"):format(d1))
  expect(d2 > 0.1, ("symmetric padding still agrees (%.3g)"):format(d2))
  expect(d3 > 0.1, ("eps 1e-5 still agrees (%.3g)"):format(d3))
end)

-- print() output of fn, as one string
local function printed(fn)
  local lines, old = {}, print
  print = function(...) lines[#lines + 1] = table.concat({...}, "\t") end
  local ok, err = pcall(fn)
  print = old
  if not ok then error(err, 0) end
  return table.concat(lines, "\n")
end

test_with_weights("MobileNetBased: nsfwjs' backbone when fetched, from scratch with 'none', and says which", function()
  local MobileNetBased = models.class("MobileNetBased")
  local m
  local out = printed(function() m = MobileNetBased() end)
  expect(out:find("MobileNetBased: ImageNet-initialised MobileNetV2 from nsfwjs (upper blocks fine-tuned on another "
    .. "task) loaded from " .. weights.path("nsfwjs", "dist/models/mobilenet_v2/model.min.js"), 1, true), out)
  expect_eq(models.get_nof_params(m), 2552322)
  keras_model = keras_model or keras.load(weights.path("nsfwjs", "dist/models/mobilenet_v2/model.min.js"))
  local k = keras.layer_tensors(keras_model, "block_16_project")
  expect_near(m.block16.project.weight, k.weight, 0, "a backbone weight")
  expect_eq(fmd.shape_str(m.fc[3].weight), "[2 x 256]")
  -- the file it started from, which the trainer records as `init`
  expect_eq(m.init_weights, weights.path("nsfwjs", "dist/models/mobilenet_v2/model.min.js"))
  local s
  out = printed(function() s = MobileNetBased({pretrained = "none"}) end)
  expect_eq(out, "")
  expect((s.block16.project.weight - k.weight):abs():max():item() > 0.01, "'none' must not load the weights")
  expect_eq(s.init_weights, nil)
  -- without the files in the cache: from scratch, and the message names the fetch command
  local old = weights.dir
  weights.dir = function() return "/nonexistent/fmd-weights" end
  local ok, err = pcall(function() out = printed(function() s = MobileNetBased() end) end)
  weights.dir = old
  if not ok then error(err, 0) end
  expect(out:find("MobileNetBased: no pretrained weights (nsfwjs are not in /nonexistent/fmd-weights; fetch them with: "
    .. weights.FETCH_COMMAND .. " nsfwjs); training MobileNetV2 from scratch", 1, true), out)
  -- a checkpoint brings its own weights: fmd.load_model passes pretrained = false
  expect_eq(printed(function() MobileNetBased({pretrained = false}) end), "")
end)

test("the input convention: MobileNetBased takes 224x224 in [0, 1] with flips only", function()
  local transforms = require "fmd.transforms"
  local data = require "fmd.data"
  expect_eq(models.input("SimpleNet"), transforms.COURSE_INPUT)
  local input = models.input("MobileNetBased")
  expect_eq(input.size, 224); expect_eq(input.mean, nil)
  expect_eq(tostring(transforms.course("train", input)), "Compose(Resize(224, 224), RandomHorizontalFlip(0.5), ToTensor())")
  expect_eq(tostring(transforms.course("test", input)), "Compose(Resize(224, 224), ToTensor())")
  -- the data pipeline asks the model: a 96x96 face becomes 224x224 values in [0, 1]
  local root = os.tmpname()
  os.remove(root)
  for _, cls in ipairs{"real", "fake"} do
    fmd.sys.mkdir(root .. "/set/test/" .. cls)
    fmd.save_image(root .. "/set/test/" .. cls .. "/a.png", fmd.load_image(FIX .. "/generated_" .. cls .. "_00000.png"))
  end
  local ds = data.load_dataset("set", "test", {data_root = root, model = "MobileNetBased"})
  local img = ds:get(1)
  os.execute("rm -rf '" .. root .. "'")
  expect_eq(ds.input, input)
  expect_eq(fmd.shape_str(img), "[3 x 224 x 224]")
  expect(img:min():item() >= 0 and img:max():item() <= 1, "values in [0, 1]")
  expect_near(require("fmd.analysis").denormalize(img, ds.input), img, 0, "nothing to undo")
end)
