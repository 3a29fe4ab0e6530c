-- scripts/predict.lua end to end on a tiny generated data set and a
-- one-epoch SimpleNet checkpoint: folders searched recursively, JPEG and
-- PNG, bad files (corrupt, truncated JPEG, text named .png, missing)
-- reported by name and skipped with exit 1, CSV and JSON contents, the
-- probabilities equal the model's softmax on the test transform, batching
-- does not change them, overlays, one-line mistakes.
local fmd = require "fmd"
local json = require "fmd.json"
local analysis = require "fmd.analysis"
local transforms = require "fmd.transforms"

local here = io.popen("pwd"):read("l")   -- the source tree
local tmp, run, ok_run = script_sandbox()

local function sh(cmd) assert(os.execute(cmd), cmd) end
local function write(path, bytes)
  local f = assert(io.open(tmp .. "/" .. path, "wb")); f:write(bytes); f:close()
end
local function read(path)
  local f = assert(io.open(path, "rb")); local s = f:read("a"); f:close(); return s
end

local ROOT = tmp .. "/data"
ok_run("make_faces.lua", ("--out %s --seed 2 --train 12 --val 6 --test 8 --threads 1 --only fakes_dataset"):format(ROOT))
ok_run("train.lua", ("--data-root %s -d fakes_dataset -m SimpleNet -e 1 -b 8 -o Adam --workers 1"):format(ROOT))
local CK = "checkpoints/fakes_dataset_SimpleNet_Adam.safetensors"
local PRED = "-m SimpleNet -cpp " .. CK .. " --workers 1 "
local FIX = here .. "/tests/fixtures/images/"

-- imgs/: the generated test images in sub-folders, two JPEGs, three bad files, a text file
local TEST = ROOT .. "/fakes_dataset/test"
sh(("mkdir -p %s/imgs/deep/er && cp %s/real/* %s/imgs/ && cp %s/fake/* %s/imgs/deep/er/"):format(tmp, TEST, tmp, TEST, tmp))
sh(("cp %sbase.jpg %s/imgs/deep/photo.jpg && cp %sgray.jpg %s/imgs/gray.JPEG"):format(FIX, tmp, FIX, tmp))
write("imgs/corrupt.png", "\137PNG\r\n\26\n" .. ("\0\1\2\3"):rep(40))
write("imgs/deep/cut.jpg", read(FIX .. "base.jpg"):sub(1, 500))
write("imgs/notes.png", "these are my notes, not an image\n")
write("imgs/README.txt", "ignored: not named like an image\n")
local BAD = {["imgs/corrupt.png"] = "bad PNG", ["imgs/deep/cut.jpg"] = "bad JPEG",
             ["imgs/notes.png"] = "not a PNG or JPEG file"}

-- the reference: the model on the test transform of each file, one at a time
local model = analysis.load_model("SimpleNet", tmp .. "/" .. CK)
local tf = transforms.course("test")
local function reference(file)
  local logits = fmd.no_grad(function() return model(tf(fmd.load_image(tmp .. "/" .. file)):unsqueeze(1)) end)
  return fmd.softmax(logits, 2)[1][2], logits[1][1], logits[1][2]
end

local function parse_csv(path)
  local rows, header = {}, nil
  for line in io.lines(tmp .. "/" .. path) do
    local f = {}
    for v in (line .. ","):gmatch("([^,]*),") do f[#f + 1] = v end
    if not header then header = line else rows[f[1]] = f end
  end
  return header, rows
end

local N_GOOD = 8 + 2   -- generated images + the two JPEGs

test("a folder: every image scored, bad files reported and skipped, exit 1, CSV content", function()
  local out, code = run("predict.lua", PRED .. "-b 3 --out res.csv imgs")
  expect_eq(code, 1, out)
  expect(out:find(("%d images scored"):format(N_GOOD), 1, true), out)
  expect(out:find("3 failed", 1, true), out)
  expect(out:find("1 other files ignored", 1, true), out)
  for file, why in pairs(BAD) do
    expect(out:find(("predict: skipped %s: %s"):format(file, why), 1, true), file .. " not reported:\n" .. out)
  end
  expect(not out:find("traceback", 1, true), out)
  local header, rows = parse_csv("res.csv")
  expect_eq(header, "file,p_fake,label,logit_real,logit_fake,error")
  local n = 0
  for file, f in pairs(rows) do
    if BAD[file] then
      expect(f[2] == "" and f[6]:find(BAD[file], 1, true), file .. ": " .. table.concat(f, ","))
    else
      n = n + 1
      local p, a, b = reference(file)
      expect_near(tonumber(f[2]), p, 1e-6, file .. " P(fake)")
      expect_near(tonumber(f[4]), a, 1e-5, file .. " real logit")
      expect_near(tonumber(f[5]), b, 1e-5, file .. " fake logit")
      expect_eq(f[3], tonumber(f[2]) > 0.5 and "fake" or "real", file)
    end
  end
  expect_eq(n, N_GOOD)
  expect(rows["imgs/deep/er/fake_00000.png"] and rows["imgs/deep/photo.jpg"] and rows["imgs/gray.JPEG"],
    "recursive search, JPEG of any case")
  expect(not rows["imgs/README.txt"], "a text file not named like an image is ignored")
  expect(not fmd.sys.is_file(tmp .. "/res.csv.tmp"), "left res.csv.tmp")
end)

test("JSON output, batch sizes and the threshold do not change the scores", function()
  local _, code = run("predict.lua", PRED .. "-b 1 --threshold 0.0001 --out res.json imgs")
  expect_eq(code, 1)
  local j = json.read_file(tmp .. "/res.json")
  expect_eq(j.n_scored, N_GOOD)
  expect_eq(j.n_failed, 3)
  expect_eq(j.threshold, 0.0001)
  expect_eq(#j.results, N_GOOD)
  local _, rows = parse_csv("res.csv")   -- -b 3 above
  for _, r in ipairs(j.results) do
    expect_near(r.p_fake, tonumber(rows[r.file][2]), 1e-6, r.file)
    expect_eq(r.label, r.p_fake > 0.0001 and "fake" or "real", r.file)
  end
  local failed = {}
  for _, f in ipairs(j.failed) do failed[f.file] = f.error end
  for file, why in pairs(BAD) do expect(failed[file] and failed[file]:find(why, 1, true), file) end
end)

test("only good files: exit 0; a file named explicitly is tried whatever its name", function()
  sh(("cp %s/real/real_00000.png %s/picture.dat"):format(TEST, tmp))
  local out = ok_run("predict.lua", PRED .. "picture.dat imgs/deep/photo.jpg")
  expect(out:find("2 images scored", 1, true) and out:find("0 failed", 1, true), out)
  local p = reference("picture.dat")
  expect(out:find(("picture.dat%s%.4f"):format("%s+", p)), out)
end)

test("a missing path is a failed file; the others are still scored", function()
  local out, code = run("predict.lua", PRED .. "nope.png imgs/deep/photo.jpg")
  expect_eq(code, 1)
  expect(out:find("predict: skipped nope.png: no such file or folder", 1, true), out)
  expect(out:find("1 image scored", 1, true), out)
end)

test("--cam writes an overlay per image with any method, under the folder's structure", function()
  local _, code = run("predict.lua", PRED .. "-b 4 --cam cams --method saliency imgs")
  expect_eq(code, 1)
  for _, f in ipairs{"cams/real_00000_saliency.png", "cams/deep/er/fake_00000_saliency.png", "cams/deep/photo_saliency.png"} do
    expect(fmd.sys.is_file(tmp .. "/" .. f), "missing " .. f)
    local img = fmd.load_image(tmp .. "/" .. f)
    expect_eq(fmd.shape_str(img), "[3 x 256 x 514]", f)   -- image | overlay
    local left, right = img:narrow(3, 1, 256), img:narrow(3, 259, 256)
    expect((left - right):abs():mean():item() > 0.02, f .. ": the overlay differs from the image")
  end
  expect(not fmd.sys.is_file(tmp .. "/cams/corrupt_saliency.png"), "no overlay for a bad file")
  local out, code2 = run("predict.lua", PRED .. "--cam cams --method saliency imgs/real_00000.png")
  expect_eq(code2, 1)
  expect(out:find("predict: --cam: cams/real_00000_saliency.png exists (pass --force to replace overlays)", 1, true), out)
  ok_run("predict.lua", PRED .. "--cam cams --method gradcampp --layer conv2 imgs/deep/photo.jpg")
  expect(fmd.sys.is_file(tmp .. "/cams/photo_gradcampp.png"))
end)

test("mistakes are one line: no checkpoint, bad method, bad --out, existing --out, no path", function()
  sh(("mkdir -p %s/notes && echo hi > %s/notes/a.txt"):format(tmp, tmp))
  local cases = {
    {"-m SimpleNet imgs", "predict: -cpp CKPT is required"},
    {PRED .. "--cam c --method gradcan imgs", "unknown attribution method 'gradcan' (did you mean gradcam?)"},
    {PRED .. "--out res.txt imgs", "--out res.txt: the name must end in .csv or .json"},
    {PRED .. "--out res.csv imgs", "--out res.csv exists (pass --force to replace it)"},
    {PRED, "predict: no image or folder given"},
    {PRED .. "--threshold 2 imgs", "--threshold must be in [0, 1]"},
    {"-m SimpleNet -cpp nope.safetensors imgs", "checkpoint nope.safetensors: no such file"},
    {PRED .. "--cam c --layer conv9 imgs", "predict: --layer: the model has no layer 'conv9' (did you mean conv1?)"},
    {PRED .. "notes", "predict: no .png, .jpg or .jpeg files in notes"},
  }
  for _, c in ipairs(cases) do
    local out, code = run("predict.lua", c[1])
    expect_eq(code, 1, c[1])
    expect(out:find(c[2], 1, true), c[1] .. ":\n" .. out)
    expect(not out:find("traceback", 1, true), out)
  end
  -- --force replaces
  local before = read(tmp .. "/res.csv")
  run("predict.lua", PRED .. "--force --out res.csv imgs/deep/photo.jpg")
  expect(read(tmp .. "/res.csv") ~= before, "--force replaced res.csv")
end)

os.execute("rm -rf " .. tmp)
