-- The course's plot_samples.py: a real and a fake training image of each
-- data set, in a 2x2 grid -> figures/datasets_samples.png
--   fmd scripts/plot_samples.lua [--data-root DIR] [--out-dir DIR]
local fmd = require "fmd"
local cli = require "fmd.cli"
local data = require "fmd.data"
local plot = require "fmd.plot"
local analysis = require "fmd.analysis"
local runs = require "fmd.runs"

local opts = runs.apply_common(cli.parse(arg, runs.flags({
  name = "scripts/plot_samples.lua",
  description = "A real and a fake train image of each data set -> <out-dir>/datasets_samples.png",
  {"--datasets", default = "fakes_dataset,synthetic_dataset", metavar = "A,B", help = "data sets to show"},
}, "data_root", {"out_dir", help = "where the figure is written"},
   {"seed", help = "0: the first image of each class; else a random one"})))

local panels = {}
for name in opts.datasets:gmatch("[^,]+") do
  -- the files as they are (no resize, no normalisation)
  local ds = data.FacesDataset(("%s/%s/train"):format(data.data_root(opts), name))
  local nreal, nfake = ds:counts()
  if nreal == 0 or nfake == 0 then
    error(("data set %s/train has %d real and %d fake images; the figure needs one of each"):format(name, nreal, nfake), 0)
  end
  local pick = {real = 1, fake = nreal + 1}
  if opts.seed ~= 0 then
    pick.real = analysis.sample_indices(nreal, 1)[1]
    pick.fake = nreal + analysis.sample_indices(nfake, 1)[1]
  end
  for _, cls in ipairs{"real", "fake"} do
    local img = data.load_image(ds:path(pick[cls]))
    panels[#panels + 1] = {image = img, title = ("%s dataset %s image"):format(analysis.dataset_title(name), cls)}
  end
end

fmd.sys.mkdir(opts.out_dir)
local path = plot.images(runs.plain_figure("datasets_samples", opts.out_dir), panels, {cols = 2, title = "Training samples"})
print("wrote " .. path)
