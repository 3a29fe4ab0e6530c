-- The course's analysis scripts end to end on a tiny generated data set and
-- a one-epoch SimpleNet checkpoint: each writes its figures under their
-- course names, the PNGs show something drawn, the metrics file holds the
-- numbers, and mistakes (missing or foreign checkpoint) are one-line errors.
local fmd = require "fmd"
local json = require "fmd.json"
local analysis = require "fmd.analysis"

local tmp, run, ok_run = script_sandbox()


-- a PNG of at least min_w x min_h whose pixels are not one flat canvas:
-- some share of them differ clearly from the background (the top-left pixel)
local function expect_drawn(path, min_w, min_h)
  expect(fmd.sys.is_file(tmp .. "/" .. path), "missing " .. path)
  expect(not fmd.sys.is_file(tmp .. "/" .. path .. ".tmp"), "left " .. path .. ".tmp")
  local img = fmd.load_image(tmp .. "/" .. path)
  expect(img:size(2) >= min_h and img:size(3) >= min_w,
    ("%s is %s, expected at least %d x %d"):format(path, fmd.shape_str(img), min_w, min_h))
  local bg = img:narrow(2, 1, 1):narrow(3, 1, 1)   -- (3,1,1)
  local differs = (img - bg):abs():sum(1):gt(0.3):mean():item()
  expect(differs > 0.02, ("%s looks blank: only %.2f%% of the pixels differ from the background"):format(path, 100 * differs))
  return img
end

local ROOT = tmp .. "/data"
ok_run("make_faces.lua", ("--out %s --seed 1 --train 12 --val 6 --test 12 --threads 1"):format(ROOT))
ok_run("train.lua", ("--data-root %s -d fakes_dataset -m SimpleNet -e 1 -b 8 -o Adam --workers 1"):format(ROOT))
local CK = "checkpoints/fakes_dataset_SimpleNet_Adam.safetensors"
local COMMON = ("-m SimpleNet -d fakes_dataset --data-root %s"):format(ROOT)

test("plot_samples.lua: a 2x2 grid of real and fake train images", function()
  ok_run("plot_samples.lua", "--data-root " .. ROOT)
  expect_drawn("figures/datasets_samples.png", 400, 400)
end)

test("plot_accuracy_and_loss.lua: loss and accuracy figures of the last run", function()
  ok_run("plot_accuracy_and_loss.lua", COMMON .. " -j out/fakes_dataset_SimpleNet_Adam.json")
  expect_drawn("figures/fakes_dataset_SimpleNet_losses_plot.png", 400, 300)
  expect_drawn("figures/fakes_dataset_SimpleNet_accuracies_plot.png", 400, 300)
  local out, code = run("plot_accuracy_and_loss.lua", COMMON .. " -j out/nope.json")
  expect_eq(code, 1)
  expect(out:find("training log out/nope.json: no such file", 1, true), out)
end)

test("numerical_analysis.lua: ROC, DET, PR figures and the metrics file", function()
  local out = ok_run("numerical_analysis.lua", COMMON .. " -cpp " .. CK)
  expect(out:find("AUC score A", 1, true), out)
  expect_drawn("figures/fakes_dataset_SimpleNet_roc_curve.png", 400, 300)
  expect_drawn("figures/fakes_dataset_SimpleNet_det_curve.png", 400, 300)
  expect_drawn("figures/fakes_dataset_SimpleNet_pr_curve.png", 400, 300)
  local m = json.read_file(tmp .. "/out/fakes_dataset_SimpleNet_metrics.json")
  expect_eq(m.n_real + m.n_fake, 12)
  expect_near(m.fake_to_real, m.n_fake / m.n_real, 1e-12)
  for _, k in ipairs{"auc_a", "auc_b", "average_precision", "eer"} do
    expect(type(m[k]) == "number" and m[k] >= 0 and m[k] <= 1, k .. " = " .. tostring(m[k]))
  end
  local c = m.confusion
  expect_eq(c.tn + c.fp + c.fn + c.tp, 12)
  expect_near(m.accuracy, 100 * (c.tn + c.tp) / 12, 1e-9)
end)

test("saliency_map.lua: image/map pairs and the class means", function()
  ok_run("saliency_map.lua", COMMON .. " -cpp " .. CK .. " --pairs 6")
  expect_drawn("figures/fakes_dataset_SimpleNet_saliency_maps_and_images_pairs.png", 400, 100)
  expect_drawn("figures/fakes_dataset_SimpleNet_mean_saliency_maps.png", 400, 200)
end)

test("grad_cam_analysis.lua: a real and a fake image with their CAMs", function()
  ok_run("grad_cam_analysis.lua", COMMON .. " -cpp " .. CK)
  expect_drawn("figures/fakes_dataset_SimpleNet_Real_Image_grad_cam.png", 400, 200)
  expect_drawn("figures/fakes_dataset_SimpleNet_Fake_Image_grad_cam.png", 400, 200)
  local out, code = run("grad_cam_analysis.lua", COMMON .. " -cpp " .. CK .. " --layer conv9")
  expect_eq(code, 1)
  expect(out:find("conv9", 1, true), out)
end)

test("get_grad_cam_visualization: H x W x 3 in [0, 1] and the true label", function()
  local ds = require("fmd.data").load_dataset("fakes_dataset", "test", {data_root = ROOT})
  local model = analysis.load_model("SimpleNet", tmp .. "/" .. CK)
  local vis, label, info = analysis.get_grad_cam_visualization(ds, model, {index = 1})
  expect_eq(fmd.shape_str(vis), "[256 x 256 x 3]")
  expect_eq(label, 0)                         -- real images come first
  expect(vis:min():item() >= 0 and vis:max():item() <= 1)
  expect(info.map:max():item() > 0.99 and info.map:min():item() < 0.01, "the CAM is min-max normalised")
end)

test("a missing or foreign checkpoint is one clear line, exit 1", function()
  local out, code = run("numerical_analysis.lua", COMMON .. " -cpp nope.safetensors")
  expect_eq(code, 1)
  expect(out:find("checkpoint nope.safetensors: no such file", 1, true), out)
  expect(not out:find("traceback", 1, true), out)
  out, code = run("numerical_analysis.lua", "-m XceptionBased -d fakes_dataset --data-root " .. ROOT .. " -cpp " .. CK)
  expect_eq(code, 1)
  expect(out:find("does not fit model XceptionBased (it was saved from SimpleNet)", 1, true), out)
  expect(out:find("Missing key(s)", 1, true) and out:find("Unexpected key(s)", 1, true), out)
  expect(not out:find("traceback", 1, true), out)
end)

test("a wrong flag value is one line without a traceback", function()
  local out, code = run("saliency_map.lua", "--pairs many")
  expect_eq(code, 1)
  expect(out:find("flag --pairs expects an integer, got 'many'", 1, true), out)
  expect(not out:find("traceback", 1, true), out)
end)

os.execute("rm -rf " .. tmp)
