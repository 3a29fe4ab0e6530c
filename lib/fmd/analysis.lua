-- What the course's analysis scripts share: loading a model with its
-- checkpoint (checked), running it over a split, its metrics, Grad-CAM.
-- Their flags and the names of their files are fmd.runs'.
--
--   local runs = require "fmd.runs"
--   local analysis = require "fmd.analysis"
--   local opts = runs.parse(arg, {name = "scripts/x.lua", description = "...", checkpoint = true})
--   local model, meta = analysis.load_model(opts.model, opts.checkpoint_path)
--   local out = analysis.run(model, analysis.dataset(opts, "test"))   -- logits, labels
local fmd = require "fmd"
local data = require "fmd.data"
local transforms = require "fmd.transforms"
local image = require "fmd.image"

local analysis = {}

-- the model `name` with the weights of `path`, in eval mode; every tensor
-- must match both ways (a checkpoint of another model names what is missing
-- and unexpected). Returns model, the checkpoint's metadata.
function analysis.load_model(name, path)
  if not fmd.sys.is_file(path) then
    error(("checkpoint %s: no such file (train first: fmd scripts/train.lua -m %s ...; or pass -cpp PATH)")
      :format(path, name), 0)
  end
  return fmd.load_model(name, path)
end

-- the split `part` of the data set in opts (course transform of that part,
-- for the input opts.model takes)
function analysis.dataset(opts, part, transform)
  local ds = data.load_dataset(opts.dataset, part, {data_root = opts.data_root, transform = transform,
                                                    model = opts.model})
  if #ds == 0 then
    error(("data set %s/%s/%s has no images"):format(data.data_root(opts), opts.dataset, part), 0)
  end
  return ds
end

-- every image of ds through the model without a graph: {a = real logits,
-- b = fake logits, labels = 0/1} as Lua arrays in data set order. Under
-- mpirun each rank runs its shard and every rank gets all of it (fmd.dist).
function analysis.run(model, ds, opts)
  opts = opts or {}
  local progress = require "fmd.progress"
  local dist = require "fmd.dist"
  ds = dist.shard_dataset(ds, opts.batch_size or 32)
  local dl = data.DataLoader(ds, {batch_size = opts.batch_size or 32, num_workers = opts.num_workers or 2})
  local bar = progress.new{total = #dl, label = opts.label or "test", unit = "img"}
  local a, b, labels = {}, {}, {}
  fmd.no_grad(function()
    local nb = 0
    for images, lab in dl:iter(1) do
      nb = nb + 1
      local logits = model(images)
      local n = lab:numel()
      if logits:dim() ~= 2 or logits:size(1) ~= n or logits:size(2) ~= 2 then
        error(("model output is %s, expected [%d x 2] (real and fake logits)"):format(fmd.shape_str(logits), n), 0)
      end
      local t = logits:totable()
      for i = 1, n do
        a[#a + 1], b[#b + 1] = t[i][1], t[i][2]
        labels[#labels + 1] = math.tointeger(lab[i])
      end
      bar:update(nb, #labels)
    end
  end)
  bar:finish()
  return {a = dist.all_gather(a), b = dist.all_gather(b), labels = dist.all_gather(labels)}
end

-- the detection metrics of a model on a data set (one function for
-- numerical_analysis.lua and evaluate.lua): runs every image (analysis.run)
-- and returns {scores = {a, b, labels}, n_real, n_fake, auc_a, auc_b (ROC AUC
-- of the real and fake logits against the fake label), average_precision,
-- eer, eer_threshold (of the fake logit), accuracy (%, argmax; a tie is
-- "real"), confusion = {tn, fp, fn, tp}}. `what` names the set in errors.
function analysis.evaluate(model, ds, what, opts)
  local metrics = require "fmd.metrics"
  local nreal, nfake = ds:counts()
  if nreal == 0 or nfake == 0 then
    error(("%s has %d real and %d fake images: ROC needs both classes"):format(what, nreal, nfake), 0)
  end
  local r = analysis.run(model, ds, opts)
  local y = r.labels
  local pred = {}
  for i = 1, #y do pred[i] = r.b[i] > r.a[i] and 1 or 0 end
  local eer, eer_thr = metrics.eer(y, r.b)
  local cm = metrics.confusion(y, pred)
  return {scores = r, n_real = nreal, n_fake = nfake,
          auc_a = metrics.roc_auc(y, r.a), auc_b = metrics.roc_auc(y, r.b),
          average_precision = metrics.average_precision(y, r.b), eer = eer, eer_threshold = eer_thr,
          accuracy = 100 * metrics.accuracy(y, pred),
          confusion = {__order = {"tn", "fp", "fn", "tp"}, tn = cm.tn, fp = cm.fp, fn = cm.fn, tp = cm.tp}}
end

-- a normalised (3,H,W) image back to [0, 1] for display; input: the
-- model's input convention (ds.input, fmd.models.input; the course's when
-- not a table, so denormalize(ds:get(i)) ignores the label)
function analysis.denormalize(img, input)
  if type(input) ~= "table" then input = transforms.COURSE_INPUT end
  if not input.mean then return img:clamp(0, 1) end
  local mean = fmd.tensor(input.mean):view(3, 1, 1)
  local std = fmd.tensor(input.std):view(3, 1, 1)
  return (img * std + mean):clamp(0, 1)
end

-- k distinct random indices in 1..n, drawn from fmd's generator (--seed)
function analysis.sample_indices(n, k)
  k = math.min(k, n)
  local r = fmd.rand(k):totable()
  local pool, idx = {}, {}
  for i = 1, n do pool[i] = i end
  for i = 1, k do   -- partial Fisher-Yates
    local j = math.min(n, i + math.floor(r[i] * (n - i + 1)))
    pool[i], pool[j] = pool[j], pool[i]
    idx[i] = pool[i]
  end
  return idx
end

-- The course's get_grad_cam_visualization(test_dataset, model): Grad-CAM of
-- one test image (opts.index, else a random one) at opts.layer (default
-- conv3) for opts.target ("pred" default, "true", "real", "fake"), as a jet
-- heat map over the de-normalised image (weight 0.5). Returns the H x W x 3
-- visualisation in [0, 1], the true label (0/1) and details: {image =
-- (3,H,W), map = (H,W) in [0, 1] as shown (explain.clip_percentile), raw =
-- low-resolution CAM, pred = 0/1, p_fake, target = class explained,
-- target_name}.
function analysis.get_grad_cam_visualization(test_dataset, model, opts)
  opts = opts or {}
  local explain = require "fmd.explain"
  local k = opts.index or analysis.sample_indices(#test_dataset, 1)[1]
  local img, label = test_dataset:get(k)
  local x = img:unsqueeze(1)
  local logits = fmd.no_grad(function() model:eval(); return model(x) end)
  local p_fake = fmd.softmax(logits, -1)[1][2]
  local pred = logits[1][2] > logits[1][1] and 1 or 0
  local tname = opts.target or "pred"
  local target = ({pred = pred, ["true"] = math.tointeger(label), real = 0, fake = 1})[tname]
  if target == nil then error(("get_grad_cam_visualization: target must be pred, true, real or fake, got %s"):format(tostring(tname)), 2) end
  local method = explain[opts.method or "gradcam"]
  if type(method) ~= "function" then
    error(("unknown attribution method '%s'"):format(tostring(opts.method)), 0)
  end
  local maps, raw = method(model, x, target, {layer = opts.layer or "conv3"})
  local map = explain.clip_percentile(maps[1])
  local shown = analysis.denormalize(img, test_dataset.input)
  local vis = image.blend(image.colormap(map, "jet"), shown, 0.5)
  return vis:permute(2, 3, 1), math.tointeger(label), {image = shown, map = map, raw = raw and raw[1], pred = pred,
    p_fake = p_fake, target = target, target_name = target == 1 and "fake" or "real"}
end

-- "fakes_dataset" -> "Deepfakes", "synthetic_dataset" -> "Synthetic faces"
function analysis.dataset_title(name)
  local titles = {fakes_dataset = "Deepfakes", synthetic_dataset = "Synthetic faces",
                  deepfake_dev = "Deepfake (DFDC dev)", synthetic_dev = "Synthetic (GAN dev)"}
  return titles[name] or name
end

return analysis
