-- The course's grad_cam_analysis.py: Grad-CAM on a layer (conv3 by
-- default) for random test images until one real and one fake were shown:
--   <out-dir>/<dataset>_<model>_Real_Image_grad_cam.png, _Fake_Image_grad_cam.png
--   fmd scripts/grad_cam_analysis.lua -m SimpleNet -cpp checkpoints/fakes_dataset_SimpleNet_Adam.safetensors -d fakes_dataset
local fmd = require "fmd"
local plot = require "fmd.plot"
local image = require "fmd.image"
local explain = require "fmd.explain"
local analysis = require "fmd.analysis"
local runs = require "fmd.runs"

local opts = runs.parse(arg, {
  name = "scripts/grad_cam_analysis.lua", checkpoint = true,
  description = "Grad-CAM heat maps over one real and one fake test image",
  {"--layer", default = "conv3", metavar = "NAME", help = "module whose output the CAM is taken at"},
  {"--target", default = "pred", choices = {"pred", "true", "real", "fake"},
   help = "class whose logit is explained (pred: the predicted class, like pytorch-grad-cam)"},
  {"--method", default = "gradcam", metavar = "NAME", help = "CAM method of fmd.explain (gradcam, gradcampp, layercam, ...)"},
})
local model = analysis.load_model(opts.model, opts.checkpoint_path)
local ds = analysis.dataset(opts, "test")
local nreal, nfake = ds:counts()

local shown = {}
for _, k in ipairs(analysis.sample_indices(#ds, #ds)) do
  if shown[0] and shown[1] then break end
  local vis, label, info = analysis.get_grad_cam_visualization(ds, model,
    {index = k, layer = opts.layer, target = opts.target, method = opts.method})
  if not shown[label] then
    shown[label] = true
    local cls = label == 1 and "Fake" or "Real"
    local panels = {
      {image = info.image, title = ("%s test image #%d"):format(cls:lower(), k)},
      {image = vis:permute(3, 1, 2), title = ("Grad-CAM of '%s' for class %s"):format(opts.layer, info.target_name)},
      {image = image.colormap(info.map, "jet"), title = ("heat map, clipped at %dth percentile"):format(explain.DISPLAY_PERCENTILE)},
    }
    local path = plot.images(runs.output_figure(opts, cls .. "_Image_grad_cam"), panels, {cols = 3, panel_size = 300,
      colorbar = {label = "Grad-CAM (0-1)", map = "jet"},
      title = ("%s on %s: true %s, predicted %s (P(fake) = %.3f)"):format(opts.model, opts.dataset,
        cls:lower(), info.pred == 1 and "fake" or "real", info.p_fake)})
    print("wrote " .. path)
  end
end
for c, name in pairs{[0] = "real", [1] = "fake"} do
  if not shown[c] then
    error(("the test split of %s has no %s image (%d real, %d fake)"):format(opts.dataset, name, nreal, nfake), 0)
  end
end
