-- The bad-input catalogue, read by tests/lua/test_bad_inputs.lua (which
-- documents the fields). One row per bad input: where it goes, what must
-- be said. Scripts run in the case's own empty folder, so their default
-- outputs (figures/, out/, checkpoints/) land there and are checked for
-- leftovers. {data} is a generated set (synthetic_dataset: 8 train, 4 val,
-- 4 test), {ckpt} a valid SimpleNet checkpoint, {here} the source tree.
local fmd = require "fmd"
local SYN = "--data-root {data} -d synthetic_dataset"

-- a safetensors file: header text as given, then data bytes
local function safetensors(header, data)
  return string.pack("<I8", #header) .. header .. (data or "")
end
-- CRC-32 of PNG chunks (a header fmd must refuse on its size, not its CRC)
local function crc32(str)
  local c = 0xffffffff
  for i = 1, #str do
    c = c ~ str:byte(i)
    for _ = 1, 8 do c = (c & 1 == 1) and ((c >> 1) ~ 0xedb88320) or (c >> 1) end
  end
  return c ~ 0xffffffff
end
local function png_chunk(kind, body) return string.pack(">I4", #body) .. kind .. body .. string.pack(">I4", crc32(kind .. body)) end
-- a plot_accuracy_and_loss case: a one-epoch log whose lists are valid but
-- for `fields` (JSON members that replace the valid ones)
local function log_text(fields)
  local lists = {}
  for _, k in ipairs{"train_loss", "val_loss", "test_loss", "train_acc", "val_acc", "test_acc"} do
    if not fields:find('"' .. k .. '"', 1, true) then lists[#lists + 1] = ('"%s": [1]'):format(k) end
  end
  return "[{" .. fields .. ", " .. table.concat(lists, ", ") .. "}]"
end
local function bad_log(what, fields, expect)
  local text = log_text(fields)
  return {name = "plot_accuracy_and_loss: " .. what, setup = function(ctx) ctx.file("log.json", text) end,
          run = "plot_accuracy_and_loss.lua -j log.json", expect = expect,
          absent = {"figures/fakes_dataset_SimpleNet_losses_plot.png"}}
end
-- a report case: out/<file> holds `text`; the report names it, leaves it out and is written
local function report_leaves_out(what, file, text, expect)
  return {name = "report: " .. what .. " is named and left out (a warning)", exit = 0,
          setup = function(ctx) ctx.file("out/" .. file, text) end, run = "report.lua --data-root {data}", expect = expect}
end
-- a committed clip of tests/fixtures/videos, and reading one to the end
local function clip(ctx, name) return ctx.here .. "/tests/fixtures/videos/" .. name end
local function read_video(ctx, name)
  local v = fmd.video.open(clip(ctx, name), {all = true})
  for _ in v:frames() do end
end
-- a TensorFlow.js weights manifest: one group, shard a.bin, one float32 [2, 3]
local TFJS_MANIFEST = '[{"paths": ["a.bin"], "weights": [{"name": "w", "shape": [2, 3], "dtype": "float32"}]}]'
-- a Keras model wrapped in JavaScript as nsfwjs ships it (model.min.js; the
-- shard group1-shard1of1.min.js wraps base64): one Dense layer, 4 bytes
local KERAS_JS = 'x.exports={modelTopology:{model_config:{config:{layers:[{name:"d",class_name:"Dense",'
  .. 'config:{units:1,use_bias:!1},inbound_nodes:[]}]}}},weightsManifest:[{paths:["group1-shard1of1"],'
  .. 'weights:[{name:"d/kernel",shape:[1,1],dtype:"float32"}]}]};'
local function one_class_test(ctx)
  ctx.dataset("oneclass", {train = {real = 2, fake = 2}, val = {real = 1, fake = 1}, test = {real = 0, fake = 2}})
end

return {
  ------------------------------------------------------------ train.lua flags
  {name = "train: misspelt flag", run = "train.lua --modle SimpleNet", usage = true,
   expect = "unknown flag '--modle' (did you mean --model?)"},
  {name = "train: unknown model", run = "train.lua -m simplenet", usage = true, expect = "did you mean SimpleNet?"},
  {name = "train: zero epochs", run = "train.lua -e 0", usage = true, expect = "flag --epochs must be >= 1, got 0"},
  {name = "train: learning rate not a number", run = "train.lua --lr fast", usage = true,
   expect = "flag --lr expects a number, got 'fast'"},
  {name = "train: batch size without a value", run = "train.lua -b", usage = true,
   expect = "flag --batch_size needs a value"},
  {name = "train: batch size not an integer", run = "train.lua -b 2.5", usage = true,
   expect = "flag --batch_size expects an integer, got '2.5'"},
  {name = "train: a batch size beyond 2^63 (was silently dropped; fuzz/fuzz_cli)",
   run = "train.lua -b 366666666666666666666666666", usage = true,
   expect = "flag --batch_size expects an integer, got '366666666666666666666666666'"},
  {name = "train: an infinite learning rate", run = "train.lua --lr 1e999", usage = true,
   expect = "flag --lr expects a number, got '1e999'"},
  {name = "train: --resume=maybe", run = "train.lua --resume=maybe", usage = true,
   expect = "flag --resume takes no value (or =yes/=no), got 'maybe'"},
  {name = "train: --pretrained with SimpleNet", run = "train.lua --pretrained x.pth -m SimpleNet", usage = true,
   expect = "--pretrained loads weights into XceptionBased or MobileNetBased; SimpleNet is trained from scratch"},
  {name = "train: --force without --resume", run = "train.lua --force", usage = true,
   expect = "--force only applies to --resume"},
  {name = "train: a stray argument", run = "train.lua " .. SYN .. " fakes", usage = true,
   expect = "unexpected argument 'fakes'"},
  {name = "train: unknown optimizer", run = "train.lua -o adamw", usage = true,
   expect = "flag --optimizer: unknown value 'adamw'; allowed: SGD, Adam"},
  {name = "train: --resume with no saved state", run = "train.lua " .. SYN .. " -m SimpleNet -o Adam --resume",
   expect = "--resume: no saved state for this run at checkpoints/synthetic_dataset_SimpleNet_Adam.last.safetensors",
   absent = {"out/synthetic_dataset_SimpleNet_Adam.json"}},
  {name = "train: workers negative", run = "train.lua --workers -1", usage = true,
   expect = "flag --workers must be >= 0, got -1"},

  ------------------------------------------------------------ data folders
  {name = "train: no such data set", run = "train.lua --data-root {data} -d nosuch", expect = "nosuch"},
  {name = "train: data root is a file", setup = function(ctx) ctx.file("root", "x") end,
   run = "train.lua --data-root root -d synthetic_dataset", expect = "root/synthetic_dataset"},
  {name = "train: a data set without images",
   setup = function(ctx) ctx.dataset("empty", {train = {}, val = {}, test = {}}) end,
   run = "train.lua --data-root data -d empty -e 1 --workers 1",
   expect = "the train split has no images in data/empty/train (expected images in real/ and fake/)",
   absent = {"checkpoints/empty_SimpleNet_SGD.safetensors", "out/empty_SimpleNet_SGD.json"}},
  {name = "train: no val split",
   setup = function(ctx) ctx.dataset("noval", {train = {real = 2, fake = 2}, test = {real = 1, fake = 1}}) end,
   run = "train.lua --data-root data -d noval -e 1 --workers 1", expect = "data/noval/val",
   absent = {"out/noval_SimpleNet_SGD.json"}},
  {name = "train: a test split of one class", setup = one_class_test,
   run = "train.lua --data-root data -d oneclass -e 1 --workers 1",
   expect = "has only fake images (0 real, 2 fake): the AUC needs both classes",
   absent = {"checkpoints/oneclass_SimpleNet_SGD.safetensors"}},
  {name = "train: a text file named .png in the train split is named and left out (a warning, not fatal)", exit = 0,
   setup = function(ctx)
     ctx.dataset("text", {train = {real = 2, fake = 2}, val = {real = 1, fake = 1}, test = {real = 1, fake = 1}})
     ctx.file("data/text/train/fake/notes.png", "these are my notes, not an image\n")
   end,
   run = "train.lua --data-root data -d text -e 1 --workers 1",
   expect = "skipping 'data/text/train/fake/notes.png' (not a PNG or JPEG file)"},
  {name = "numerical_analysis: a test split of one class", setup = one_class_test,
   run = "numerical_analysis.lua --data-root data -d oneclass -cpp {ckpt}", expect = "ROC needs both classes",
   absent = {"out/oneclass_SimpleNet_metrics.json"}},
  {name = "plot_samples: a data set without fakes",
   setup = function(ctx) ctx.dataset("real", {train = {real = 2, fake = 0}}) end,
   run = "plot_samples.lua --data-root data --datasets real", expect = "the figure needs one of each",
   absent = {"figures/datasets_samples.png"}},
  {name = "plot_samples: no such data set", run = "plot_samples.lua --data-root {data} --datasets nosuch",
   expect = "nosuch"},
  {name = "saliency_map: a test split without real images", setup = one_class_test,
   run = "saliency_map.lua --data-root data -d oneclass -cpp {ckpt} --pairs 1",
   expect = "has no real images"},
  {name = "grad_cam_analysis: a test split without real images", setup = one_class_test,
   run = "grad_cam_analysis.lua --data-root data -d oneclass -cpp {ckpt}", expect = "has no real image"},

  ------------------------------------------------------------ images (predict)
  {name = "predict: a truncated PNG is reported and skipped",
   setup = function(ctx)
     local p = ctx.png("imgs/ok.png")
     ctx.file("imgs/cut.png", ctx.read(p):sub(1, 60))
   end,
   run = "predict.lua -cpp {ckpt} imgs --workers 1", exit = 1, expect = "imgs/cut.png"},
  {name = "predict: a PNG of 16384 x 16384 (800 KB, 1 GB decoded) is refused",
   setup = function(ctx)
     -- a valid header and an empty zlib stream: refused on the header, before decoding
     ctx.file("imgs/big.png", "\137PNG\r\n\26\n" .. png_chunk("IHDR", string.pack(">I4I4BBBBB", 16384, 16384, 8, 2, 0, 0, 0))
       .. png_chunk("IDAT", "\120\1\1\0\0\255\255\0\0\0\1") .. png_chunk("IEND", ""))
   end,
   run = "predict.lua -cpp {ckpt} imgs/big.png --workers 1", exit = 1, expect = "over the limit of 67108864 pixels"},
  {name = "predict: a FIFO named .png does not block",
   setup = function(ctx) ctx.png("imgs/ok.png"); ctx.fifo("imgs/pipe.png") end,
   run = "predict.lua -cpp {ckpt} imgs/pipe.png imgs/ok.png --workers 1", exit = 1, expect = "is not a regular file"},
  {name = "predict: a JPEG of zeros",
   setup = function(ctx) ctx.file("imgs/zero.jpg", "\255\216\255" .. string.rep("\0", 200)) end,
   run = "predict.lua -cpp {ckpt} imgs/zero.jpg --workers 1", exit = 1, expect = "imgs/zero.jpg"},
  {name = "predict: a folder without images", setup = function(ctx) ctx.file("docs/a.txt", "x") end,
   run = "predict.lua -cpp {ckpt} docs", expect = "no .png, .jpg or .jpeg files in docs"},
  {name = "predict: a path that does not exist", run = "predict.lua -cpp {ckpt} nosuch.png", expect = "nosuch.png"},

  ------------------------------------------------------------ predict flags
  {name = "predict: no checkpoint", setup = function(ctx) ctx.png("a.png") end, run = "predict.lua a.png",
   usage = true, expect = "-cpp CKPT is required"},
  {name = "predict: no image", run = "predict.lua -cpp {ckpt}", usage = true, expect = "no image or folder given"},
  {name = "predict: threshold out of range", setup = function(ctx) ctx.png("a.png") end,
   run = "predict.lua -cpp {ckpt} --threshold 2 a.png", usage = true, expect = "--threshold must be in [0, 1], got 2"},
  {name = "predict: --out with another extension", setup = function(ctx) ctx.png("a.png") end,
   run = "predict.lua -cpp {ckpt} --out table.txt a.png", usage = true,
   expect = "--out table.txt: the name must end in .csv or .json", absent = {"table.txt"}},
  {name = "predict: --out exists", setup = function(ctx) ctx.png("a.png"); ctx.file("mine.csv", "mine\n") end,
   run = "predict.lua -cpp {ckpt} --out mine.csv a.png", usage = true, expect = "--out mine.csv exists (pass --force"},
  {name = "predict: unknown --target", run = "predict.lua --target both", usage = true,
   expect = "flag --target: unknown value 'both'; allowed: pred, fake, real"},
  {name = "predict: unknown --method", setup = function(ctx) ctx.png("a.png") end,
   run = "predict.lua -cpp {ckpt} --cam cams --method gradkam a.png", usage = true,
   expect = "--method: unknown attribution method 'gradkam' (did you mean gradcam?)"},
  {name = "predict: unknown --layer", setup = function(ctx) ctx.png("a.png") end,
   run = "predict.lua -cpp {ckpt} --cam cams --layer conv9 a.png --workers 1", expect = "--layer: ",
   absent = {"cams/a.png"}},
  {name = "predict: --out under a file", setup = function(ctx) ctx.png("a.png"); ctx.file("f", "mine") end,
   run = "predict.lua -cpp {ckpt} --out f/p.csv a.png --workers 1", expect = "mkdir: 'f' exists and is not a folder"},

  ------------------------------------------------------------ checkpoints, .pth, safetensors
  {name = "predict: an empty checkpoint", setup = function(ctx) ctx.png("a.png"); ctx.file("empty.safetensors", "") end,
   run = "predict.lua -cpp empty.safetensors a.png", expect = "empty.safetensors"},
  {name = "predict: a text file as checkpoint", setup = function(ctx) ctx.png("a.png"); ctx.file("notes.safetensors", "hello\n") end,
   run = "predict.lua -cpp notes.safetensors a.png", expect = "notes.safetensors"},
  {name = "predict: a truncated SimpleNet checkpoint",
   setup = function(ctx) ctx.png("a.png"); ctx.truncated_ckpt("cut.safetensors", 4096) end,
   run = "predict.lua -cpp cut.safetensors a.png", expect = "cut.safetensors"},
  {name = "predict: a checkpoint of another model",
   setup = function(ctx)
     ctx.png("a.png")
     fmd.save_safetensors(ctx.path("other.safetensors"), {w = fmd.zeros(2, 2)})
   end,
   run = "predict.lua -cpp other.safetensors a.png", expect = "other.safetensors"},
  {name = "predict: a folder as checkpoint", setup = function(ctx) ctx.png("a.png"); ctx.mkdir("ck.safetensors") end,
   run = "predict.lua -cpp ck.safetensors a.png", expect = "ck.safetensors"},
  {name = "predict: a .pth of random bytes",
   setup = function(ctx) ctx.png("a.png"); ctx.file("junk.pth", ("\1\2\3\4\5\6\7\8"):rep(40)) end,
   run = "predict.lua -cpp junk.pth a.png", expect = "junk.pth"},
  {name = "predict: a zip .pth whose pickle calls os.system", setup = function(ctx) ctx.png("a.png") end,
   run = "predict.lua -cpp {here}/tests/bad_inputs/evil_zip.pth a.png", expect = "system", absent = {"PWNED"}},
  {name = "predict: a legacy .pth whose pickle calls os.system", setup = function(ctx) ctx.png("a.png") end,
   run = "predict.lua -cpp {here}/tests/bad_inputs/evil_legacy.pth a.png", expect = "system", absent = {"PWNED"}},
  {name = "predict: safetensors whose header length is past the end",
   setup = function(ctx) ctx.png("a.png"); ctx.file("h.safetensors", string.pack("<I8", 1 << 40) .. "{}") end,
   run = "predict.lua -cpp h.safetensors a.png", expect = "goes beyond the end of the file"},
  {name = "predict: safetensors with a 2^32 x 2^32 tensor in 0 bytes",
   setup = function(ctx)
     ctx.png("a.png")
     ctx.file("w.safetensors", safetensors('{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}'))
   end,
   run = "predict.lua -cpp w.safetensors a.png", expect = "needs 17179869184 bytes but data_offsets [0, 0] hold 0"},
  {name = "predict: safetensors header that is not JSON",
   setup = function(ctx) ctx.png("a.png"); ctx.file("j.safetensors", safetensors('{"w": [1, 2')) end,
   run = "predict.lua -cpp j.safetensors a.png", expect = "j.safetensors"},
  {name = "numerical_analysis: missing checkpoint", run = "numerical_analysis.lua " .. SYN .. " -cpp nosuch.safetensors",
   expect = "nosuch.safetensors", absent = {"out/synthetic_dataset_SimpleNet_metrics.json"}},
  {name = "train: --pretrained file of random bytes",
   setup = function(ctx) ctx.file("x.pth", ("\0\1\2\3"):rep(64)) end,
   run = "train.lua " .. SYN .. " -m XceptionBased --pretrained x.pth -e 1 --workers 1", expect = "x.pth",
   absent = {"out/synthetic_dataset_XceptionBased_SGD.json"}},
  {name = "train: --resume from a truncated last checkpoint",
   setup = function(ctx) ctx.truncated_ckpt("checkpoints/synthetic_dataset_SimpleNet_SGD.last.safetensors", 100000) end,
   run = "train.lua " .. SYN .. " -e 1 --resume --workers 1", expect = "synthetic_dataset_SimpleNet_SGD.last.safetensors"},
  {name = "bonus_main: missing checkpoint", run = "bonus_main.lua " .. SYN .. " -cpp nosuch.safetensors",
   expect = "nosuch.safetensors", absent = {"figures/bonus_tradeoff.png"}},

  ------------------------------------------------------------ JSON logs
  {name = "plot_accuracy_and_loss: no log", run = "plot_accuracy_and_loss.lua -j nosuch.json",
   expect = "training log nosuch.json: no such file"},
  {name = "plot_accuracy_and_loss: an empty log", setup = function(ctx) ctx.file("log.json", "") end,
   run = "plot_accuracy_and_loss.lua -j log.json", expect = "log.json"},
  {name = "plot_accuracy_and_loss: a one-character typo",
   setup = function(ctx) ctx.file("log.json", '[{"model": "SimpleNet", "train_loss": [0.5 0.4]}]') end,
   run = "plot_accuracy_and_loss.lua -j log.json", expect = "log.json, line 1, column 44: invalid JSON, unexpected '0'"},
  {name = "plot_accuracy_and_loss: not a list of runs", setup = function(ctx) ctx.file("log.json", '{"model": 1}') end,
   run = "plot_accuracy_and_loss.lua -j log.json", expect = "training log log.json holds no runs"},
  {name = "plot_accuracy_and_loss: a run without losses",
   setup = function(ctx) ctx.file("log.json", '[{"model": "SimpleNet"}]') end,
   run = "plot_accuracy_and_loss.lua -j log.json",
   expect = "training log log.json, last run: 'train_loss' is missing, expected a list of numbers"},
  {name = "plot_accuracy_and_loss: a log that is a folder", setup = function(ctx) ctx.mkdir("log.json") end,
   run = "plot_accuracy_and_loss.lua -j log.json", expect = "log.json"},
  {name = "plot_accuracy_and_loss: a log that is a FIFO", setup = function(ctx) ctx.fifo("log.json") end,
   run = "plot_accuracy_and_loss.lua -j log.json", expect = "log.json"},
  bad_log("losses that are strings", '"train_loss": ["a"]',
    "training log log.json, last run: 'train_loss' value 1 is 'a', expected a number >= 0"),
  bad_log("an accuracy above 100 %", '"train_acc": [250]',
    "training log log.json, last run: 'train_acc' value 1 is 250, expected a number >= 0 and <= 100"),
  bad_log("lists of different lengths", '"train_loss": [1, 0.5], "test_loss": [1, 1], "train_acc": [1, 2], '
    .. '"val_acc": [1, 2], "test_acc": [1, 2]', "'val_loss' is a list, expected a list of numbers of 2 values (it has 1)"),
  bad_log("a NaN loss written as null", '"train_loss": [null]', "'train_loss' value 1 is null, expected a number >= 0"),
  {name = "train: the log path is a folder",
   setup = function(ctx) ctx.mkdir("out/synthetic_dataset_SimpleNet_SGD.json") end,
   run = "train.lua " .. SYN .. " -e 1 --workers 1",
   expect = "out/synthetic_dataset_SimpleNet_SGD.json exists and is not a regular file",
   absent = {"checkpoints/synthetic_dataset_SimpleNet_SGD.safetensors"}},
  {name = "report: a metrics file that does not parse is named and left out (a warning)", exit = 0,
   setup = function(ctx) ctx.file("out/synthetic_dataset_SimpleNet_metrics.json", "{oops") end,
   run = "report.lua --data-root {data}",
   expect = "out/synthetic_dataset_SimpleNet_metrics.json is not readable JSON (out/synthetic_dataset_SimpleNet_metrics.json, line 1, column 3: invalid JSON"},
  report_leaves_out("a metrics file whose AUC is not a number", "synthetic_dataset_SimpleNet_metrics.json",
    '{"auc_a": 0.4, "auc_b": "high", "average_precision": 0.5, "eer": 0.5, "eer_threshold": 0, "accuracy": 50, '
      .. '"confusion": {"tn": 1, "fp": 1, "fn": 1, "tp": 1}}',
    "out/synthetic_dataset_SimpleNet_metrics.json is not usable: out/synthetic_dataset_SimpleNet_metrics.json: "
      .. "'auc_b' is 'high', expected a number >= 0 and <= 1; left out"),
  report_leaves_out("a training log with a negative loss", "synthetic_dataset_SimpleNet_Adam.json",
    log_text('"train_loss": [-1]'),
    "training log out/synthetic_dataset_SimpleNet_Adam.json, last run: 'train_loss' value 1 is -1, expected a number >= 0"),
  {name = "train_bonus: a designs table whose row has a negative parameter count",
   setup = function(ctx)
     ctx.file("out/bonus_designs.json", '[{"dataset": "d", "design": "meso4", "params": -5, "macs": 1, "epochs": 1, '
       .. '"best_epoch": 1, "val_auc": 0.5, "train_seconds": 1}]')
   end,
   run = "train_bonus.lua " .. SYN .. " -e 1 --workers 1",
   expect = "out/bonus_designs.json, row 1: 'params' is -5, expected an integer >= 1",
   absent = {"checkpoints/bonus.safetensors"}},
  {name = "train_bonus: a designs table that does not parse",
   setup = function(ctx) ctx.file("out/bonus_designs.json", "[{") end,
   run = "train_bonus.lua " .. SYN .. " -e 1 --workers 1", expect = "bonus_designs.json"},

  ------------------------------------------------------------ the other scripts' flags
  {name = "numerical_analysis: unknown flag", run = "numerical_analysis.lua --roc", usage = true,
   expect = "unknown flag '--roc'"},
  {name = "numerical_analysis: a stray argument", run = "numerical_analysis.lua model.safetensors", usage = true,
   expect = "unexpected argument 'model.safetensors'"},
  {name = "saliency_map: zero pairs", run = "saliency_map.lua --pairs 0", usage = true,
   expect = "flag --pairs must be >= 1, got 0"},
  {name = "saliency_map: limit not an integer", run = "saliency_map.lua --limit many", usage = true,
   expect = "flag --limit expects an integer, got 'many'"},
  {name = "grad_cam_analysis: unknown --target", run = "grad_cam_analysis.lua --target both", usage = true,
   expect = "flag --target: unknown value 'both'; allowed: pred, true, real, fake"},
  {name = "grad_cam_analysis: unknown --method", run = "grad_cam_analysis.lua " .. SYN .. " -cpp {ckpt} --method gradkam",
   expect = "gradkam"},
  {name = "grad_cam_analysis: unknown --layer", run = "grad_cam_analysis.lua " .. SYN .. " -cpp {ckpt} --layer conv9",
   expect = "conv9"},
  {name = "plot_accuracy_and_loss: unknown flag", run = "plot_accuracy_and_loss.lua --jsn x", usage = true,
   expect = "unknown flag '--jsn' (did you mean --json?)"},
  {name = "plot_samples: seed not an integer", run = "plot_samples.lua --seed x", usage = true,
   expect = "flag --seed expects an integer, got 'x'"},
  {name = "report: unknown flag", run = "report.lua --quik", usage = true, expect = "unknown flag '--quik' (did you mean --quick?)"},
  {name = "report: --quick=sometimes", run = "report.lua --quick=sometimes", usage = true,
   expect = "flag --quick takes no value (or =yes/=no), got 'sometimes'"},
  {name = "train_bonus: unknown design", run = "train_bonus.lua --design huge", usage = true,
   expect = "flag --design: unknown value 'huge'"},
  {name = "train_bonus: unknown recipe", run = "train_bonus.lua --recipe best", usage = true,
   expect = "flag --recipe: unknown value 'best'; allowed: course, augment"},
  {name = "train_bonus: negative epochs", run = "train_bonus.lua -e -1", usage = true,
   expect = "flag --epochs must be >= 1, got -1"},
  {name = "bonus_main: zero latency runs", run = "bonus_main.lua --latency-runs 0", usage = true,
   expect = "flag --latency-runs must be >= 1, got 0"},
  {name = "make_faces: negative count", run = "make_faces.lua --train -5", expect = "--train", usage = true},
  {name = "make_faces: unknown flag", run = "make_faces.lua --sized 64", expect = "--sized", usage = true},
  {name = "make_faces: an existing data set is not replaced",
   setup = function(ctx) ctx.file("data/synthetic_dataset/mine.txt", "mine") end,
   run = "make_faces.lua --out data --only synthetic_dataset --train 2 --val 2 --test 2 --threads 1",
   expect = "--force"},
  {name = "explain_eval: unknown method", run = "explain_eval.lua --methods saliency,gradkam", usage = true,
   expect = "--methods: unknown method 'gradkam' (did you mean gradcam?)"},
  {name = "explain_eval: no method", run = "explain_eval.lua --methods ,", usage = true, expect = "--methods: no method given"},
  {name = "explain_eval: unknown baseline", run = "explain_eval.lua --baseline zero", usage = true,
   expect = "flag --baseline: unknown value 'zero'; allowed: blur, mean"},
  {name = "fetch_weights: unknown package", run = "fetch_weights.lua face-ap", usage = true,
   expect = "unknown package 'face-ap' (did you mean face-api?); known: face-api"},
  {name = "fetch_weights: the weights cache is a file", env = "FMD_WEIGHTS=cache",
   setup = function(ctx) ctx.file("cache", "mine") end,
   run = "fetch_weights.lua face-api", expect = "'cache' exists and is not a folder"},
  {name = "fmd: an unknown command", fmd = "trian", expect = "'trian' is neither a file nor a command"},
  {name = "fmd: a script that does not exist", fmd = "nosuch.lua", expect = "nosuch.lua"},

  ------------------------------------------------------------ tracebacks only on request
  {name = "FMD_DEBUG=1 shows the traceback of a usage error", env = "FMD_DEBUG=1", run = "train.lua --modle x",
   traceback = true, expect = "unknown flag '--modle'"},
  {name = "FMD_TRACEBACK=1 shows the traceback of a usage error", env = "FMD_TRACEBACK=1",
   run = "predict.lua --target both", traceback = true, expect = "unknown value 'both'"},

  ------------------------------------------------------------ file-system faults
  {name = "train: output folders on a read-only file system", readonly = "ro",
   run = "train.lua " .. SYN .. " -e 1 --workers 1", expect = "Read-only file system",
   setup = function(ctx) ctx.sh("ln -s ro checkpoints && ln -s ro out") end},
  {name = "plot_samples: --out-dir on a read-only file system", readonly = "ro",
   run = "plot_samples.lua --data-root {data} --datasets synthetic_dataset --out-dir ro/figures", expect = "ro/figures"},
  {name = "make_faces: --out on a read-only file system", readonly = "ro",
   run = "make_faces.lua --out ro/data --train 2 --val 2 --test 2 --threads 1", expect = "ro/data"},
  {name = "predict: --out on a read-only file system", readonly = "ro",
   setup = function(ctx) ctx.png("a.png") end,
   run = "predict.lua -cpp {ckpt} --out ro/p.csv a.png --workers 1", expect = "ro/p.csv"},
  {name = "train: checkpoints is a file", setup = function(ctx) ctx.file("checkpoints", "mine") end,
   run = "train.lua " .. SYN .. " -e 1 --workers 1", expect = "checkpoints"},
  {name = "plot_samples: a parent of --out-dir is a file", setup = function(ctx) ctx.file("f", "x") end,
   run = "plot_samples.lua --data-root {data} --datasets synthetic_dataset --out-dir f/figures", expect = "f"},
  {name = "numerical_analysis: --metrics-dir under a file", setup = function(ctx) ctx.file("f", "x") end,
   run = "numerical_analysis.lua " .. SYN .. " -cpp {ckpt} --metrics-dir f/out", expect = "f/out"},

  ------------------------------------------------------------ TensorFlow.js weights (fmd.tfjs)
  {name = "tfjs: a shard shorter than the manifest says", lua = function(ctx)
     ctx.file("m/a.bin", ("\0"):rep(12))
     return require("fmd.tfjs").load(ctx.file("m/w.json", TFJS_MANIFEST))
   end, expect = "tensor 'w' (float32 [2, 3]) needs bytes 0..24 but the data holds 12 bytes (the manifest describes 24)"},
  {name = "tfjs: shards longer than the manifest says", lua = function(ctx)
     ctx.file("m/a.bin", ("\0"):rep(30))
     return require("fmd.tfjs").load(ctx.file("m/w.json", TFJS_MANIFEST))
   end, expect = "the data holds 30 bytes but the manifest describes 24 (6 bytes left over after 'w')"},
  {name = "tfjs: a 2^52-element tensor over 4 bytes allocates nothing", lua = function()
     return require("fmd.tfjs").decode({{name = "big", shape = {2 ^ 26, 2 ^ 26}, dtype = "float32"}}, "abcd", "w.json")
   end, expect = "w.json: tensor 'big' (float32 [67108864, 67108864]) needs bytes 0..18014398509481984 but the data holds 4 bytes"},
  {name = "tfjs: an unknown dtype", lua = function()
     return require("fmd.tfjs").decode({{name = "s", shape = {1}, dtype = "string"}}, "abcd", "w.json")
   end, expect = "w.json: tensor 's': unknown dtype 'string' (fmd reads float32, int32 and float16)"},
  {name = "tfjs: an unknown quantization dtype", lua = function()
     return require("fmd.tfjs").decode({{name = "q", shape = {1}, dtype = "float32",
       quantization = {dtype = "int4", min = 0, scale = 1}}}, "a", "w.json")
   end, expect = "tensor 'q': unknown quantization dtype 'int4' (tfjs has uint8, uint16 and float16)"},
  {name = "tfjs: a missing shard", lua = function(ctx)
     return require("fmd.tfjs").load(ctx.file("m/w.json", TFJS_MANIFEST))
   end, expect = "w.json: shard 'a.bin' (group 1) at "},
  {name = "tfjs: a manifest that is not JSON", lua = function(ctx)
     return require("fmd.tfjs").load(ctx.file("w.json", '[{"paths": ["a.bin"],'))
   end, expect = "w.json, line 1, column 21: invalid JSON"},
  {name = "tfjs: a manifest that is not a list of groups", lua = function(ctx)
     return require("fmd.tfjs").load(ctx.file("w.json", '{"weights": []}'))
   end, expect = "w.json: a weights manifest is a list of groups {paths, weights}"},
  {name = "tfjs: no manifest", lua = function(ctx) return require("fmd.tfjs").load(ctx.path("nosuch.json")) end,
   expect = "nosuch.json: no such file"},

  ------------------------------------------------------------ face detection (fmd.detect)
  {name = "detect.faces at a size that is not a multiple of 32", lua = function()
     return require("fmd.detect").faces(fmd.zeros(3, 8, 8), {size = 100})
   end, expect = "detect.faces: size must be a multiple of 32 (the grid is size/32), got 100"},
  {name = "detect.crop of a box without width", lua = function()
     return require("fmd.detect").crop(fmd.zeros(3, 8, 8), {x = 1, y = 1, w = 0, h = 4})
   end, expect = "detect.crop: box must be {x, y, w, h} with finite numbers and w, h > 0"},

  ------------------------------------------------------------ Keras models in JavaScript (fmd.keras)
  {name = "keras: a model.min.js that wraps no object", lua = function(ctx)
     return require("fmd.keras").load(ctx.file("m/model.min.js", "console.log('hi')"))
   end, expect = "model.min.js: no `exports={...}` object (expected a TensorFlow.js model.json wrapped in JavaScript)"},
  {name = "keras: code instead of data in the object", lua = function(ctx)
     return require("fmd.keras").load(ctx.file("m/model.min.js", "a.exports={modelTopology:e(1)}"))
   end, expect = "model.min.js: 'e' is not data (a JavaScript expression?) at byte 26"},
  {name = "keras: an object cut short", lua = function(ctx)
     return require("fmd.keras").load(ctx.file("m/model.min.js", KERAS_JS:sub(1, 100)))
   end, expect = "model.min.js: the object literal does not end"},
  {name = "keras: a model.json that is no layers model", lua = function(ctx)
     return require("fmd.keras").load(ctx.file("m/model.json", '{"format": "graph-model", "weightsManifest": []}'))
   end, expect = "model.json: not a TensorFlow.js layers model (expected modelTopology with layers and a weightsManifest)"},
  {name = "keras: a missing shard", lua = function(ctx)
     return require("fmd.keras").load(ctx.file("m/model.min.js", KERAS_JS))
   end, expect = "its weights shard group1-shard1of1 is missing"},
  {name = "keras: a shard whose base64 is cut", lua = function(ctx)
     ctx.file("m/group1-shard1of1.min.js", 'x.exports="AAAAA"')
     return require("fmd.keras").load(ctx.file("m/model.min.js", KERAS_JS))
   end, expect = "group1-shard1of1.min.js: base64 text of 5 characters (expected a multiple of 4)"},
  {name = "keras: a shard that holds too few bytes", lua = function(ctx)
     ctx.file("m/group1-shard1of1.min.js", 'x.exports="AAA="')
     return require("fmd.keras").load(ctx.file("m/model.min.js", KERAS_JS))
   end, expect = "tensor 'd/kernel' (float32 [1, 1]) needs bytes 0..4 but the data holds 2 bytes"},
  {name = "keras: MobileNetBased from a Keras model that is not MobileNetV2", lua = function(ctx)
     ctx.file("m/group1-shard1of1.min.js", 'x.exports="AAAAAA=="')
     return require("fmd.models").load_model("MobileNetBased", {pretrained = ctx.file("m/model.min.js", KERAS_JS),
       quiet = true})
   end, expect = "model.min.js: 0 ZeroPadding2D layers, MobileNetV2 has 5"},
  {name = "train: MobileNetBased --pretrained of a missing file",
   run = "train.lua " .. SYN .. " -m MobileNetBased --pretrained nosuch.min.js",
   expect = "nosuch.min.js: no such file (a Keras model.json or model.min.js)",
   absent = {"out/synthetic_dataset_MobileNetBased_SGD.json"}},

  ------------------------------------------------------------ Lua API misuse
  {name = "fmd.zeros of a string", lua = function() return fmd.zeros("a") end,
   expect = "size must be an integer, got a string"},
  {name = "fmd.tensor of a ragged table", lua = function() return fmd.tensor({1, {2}}) end, expect = "tensor"},
  {name = "view to another element count", lua = function() return fmd.zeros(2, 3):view(4) end, expect = "view"},
  {name = "view of 2^32 x 2^32", lua = function() return fmd.zeros(0):view(2^32, 2^32) end, expect = "is too large"},
  {name = "adding tensors that do not broadcast", lua = function() return fmd.zeros(2) + fmd.zeros(3) end,
   expect = "broadcast"},
  {name = "load_image of a missing file", lua = function(ctx) return fmd.load_image(ctx.path("nosuch.png")) end,
   expect = "nosuch.png"},
  {name = "save_image in a missing folder", lua = function(ctx) fmd.save_image(ctx.path("no/dir/x.png"), fmd.zeros(3, 4, 4)) end,
   expect = "no/dir/x.png"},
  {name = "load_safetensors of a folder", lua = function(ctx) return fmd.load_safetensors(ctx.dir) end,
   expect = "is not a regular file"},
  {name = "load_state_dict of another model", lua = function()
     local m = require("fmd.models").load_model("SimpleNet")
     m:load_state_dict({w = fmd.zeros(1)})
   end, expect = "w"},
  {name = "json.decode of half an object", lua = function() return require("fmd.json").decode('{"a":', "x.json") end,
   expect = "x.json, line 1, column 5: invalid JSON, unexpected ':'"},
  {name = "DataLoader with batch size 0", lua = function()
     return require("fmd.data").DataLoader({{fmd.zeros(1), 0}}, {batch_size = 0})
   end, expect = "batch_size"},
  {name = "roc_auc of nothing", lua = function() return require("fmd.metrics").roc_auc({}, {}) end, expect = "roc_auc"},
  {name = "roc_auc with a label 2", lua = function() return require("fmd.metrics").roc_auc({0, 2}, {0.1, 0.2}) end,
   expect = "roc_auc(labels, scores): labels must be 0 or 1, got 2 at index 2"},
  {name = "roc_auc with scores first", lua = function() return require("fmd.metrics").roc_auc({0.1, 0.2}, {0, 1}) end,
   expect = "(the order is labels first, as scikit-learn's y_true, y_score)"},
  {name = "Adam with a negative learning rate", lua = function()
     local nn, optim = require "fmd.nn", require "fmd.optim"
     return optim.Adam(nn.Linear(2, 2):parameters(), {lr = -1})
   end, expect = "optim.Adam: invalid learning rate -1"},
  {name = "Conv2d with kernel 0", lua = function() return require("fmd.nn").Conv2d(3, 6, 0) end, expect = "kernel"},
  {name = "load_dataset of a part that does not exist", lua = function()
     return require("fmd.data").load_dataset("synthetic_dataset", "training")
   end, expect = "unknown part 'training'"},
  {name = "a training run with no data sets", lua = function(ctx)
     local Trainer, nn, optim = require "fmd.trainer", require "fmd.nn", require "fmd.optim"
     local m = nn.Linear(2, 2)
     Trainer.new(m, optim.SGD(m:parameters(), {lr = 0.1}), nn.CrossEntropyLoss(), 2, nil, nil, nil,
       {print = function() end, checkpoint_dir = ctx.path("c"), out_dir = ctx.path("o")}):run(1, {model_name = "L",
       dataset_name = "none", optimizer_name = "SGD"})
   end, expect = "the train split has no images"},

  ------------------------------------------------------------ videos (fmd.video, docs/video.md)
  -- the clips are tests/fixtures/videos (tests/fixtures/make_videos.py); a
  -- row reads the whole video, as a caller would
  {name = "video: a text file named .mp4", lua = function(ctx) return read_video(ctx, "notes.mp4") end,
   expect = "notes.mp4': not a video file FFmpeg can read (Invalid data found when processing input"},
  {name = "video: an MP4 cut short (its index says 30 frames)", lua = function(ctx) return read_video(ctx, "truncated.mp4") end,
   expect = "truncated.mp4': truncated or damaged: its frames stop at"},
  {name = "video: a WebM cut short (its header says 3 s)", lua = function(ctx) return read_video(ctx, "truncated.webm") end,
   expect = "truncated.webm': truncated or damaged: its frames stop at 0.70 s (its header gives 3.00 s"},
  {name = "video: a video stream without frames", lua = function(ctx) return read_video(ctx, "noframes.avi") end,
   expect = "noframes.avi': the video stream has no frames"},
  {name = "video: sound only", lua = function(ctx) return read_video(ctx, "audio.m4a") end,
   expect = "audio.m4a': no video stream (the file holds audio aac)"},
  {name = "video: random bytes named .webm", lua = function(ctx)
     local bytes = {}
     for i = 1, 4000 do bytes[i] = string.char((i * 7919 + i // 13) % 256) end
     return fmd.video.open(ctx.file("noise.webm", table.concat(bytes)))
   end, expect = "noise.webm': not a video file FFmpeg can read"},
  {name = "video: a header claiming 9000 x 8000 frames is refused before decoding", lua = function(ctx)
     return fmd.video.open(ctx.file("big.y4m", "YUV4MPEG2 W9000 H8000 F10:1 C420\nFRAME\n" .. ("x"):rep(1000)))
   end, expect = "big.y4m': frames of 9000 x 8000 (72000000 pixels) are over the limit of 67108864 pixels"},
  {name = "video: a missing file", lua = function(ctx) return fmd.video.open(ctx.path("nosuch.mp4")) end,
   expect = "video: cannot open"},
  {name = "video: an empty file", lua = function(ctx) return fmd.video.open(ctx.file("empty.mp4", "")) end,
   expect = "empty.mp4': the file is empty"},
  {name = "video: a folder", lua = function(ctx) return fmd.video.open(ctx.dir) end,
   expect = "is not a regular file (a directory)"},
  {name = "video: a FIFO named .mp4 does not block", lua = function(ctx) return fmd.video.open(ctx.fifo("pipe.mp4")) end,
   expect = "is not a regular file (a pipe)"},
  {name = "video: a path is a file name, never an FFmpeg URL", lua = function(ctx)
     return fmd.video.open("concat:" .. ctx.here .. "/tests/fixtures/videos/h264.mp4")
   end, expect = "video: cannot open concat:"},
  {name = "video: an HLS playlist naming another file is not followed", lua = function(ctx)
     return fmd.video.open(ctx.file("list.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3.0,\n"
       .. clip(ctx, "mpeg2.ts") .. "\n#EXT-X-ENDLIST\n"))
   end, expect = "list.m3u8': not a video file FFmpeg can read"},
  {name = "video: an ffconcat list naming a clip beside it is not followed", lua = function(ctx)
     local f = assert(io.open(clip(ctx, "h264.mp4"), "rb"))
     ctx.file("clip.mp4", f:read("a"))
     f:close()
     return fmd.video.open(ctx.file("list.ffconcat", "ffconcat version 1.0\nfile 'clip.mp4'\n"))
   end, expect = "list.ffconcat': not a video file FFmpeg can read"},
  {name = "video: a misspelt option", lua = function(ctx) return fmd.video.open(clip(ctx, "h264.mp4"), {fsp = 1}) end,
   expect = "video.open: unknown option 'fsp' (fps, frames, all, threads)"},
  {name = "video: fps 0", lua = function(ctx) return fmd.video.open(clip(ctx, "h264.mp4"), {fps = 0}) end,
   expect = "video.open: fps must be a positive number, got 0"},
  {name = "video: fps and frames together", lua = function(ctx)
     return fmd.video.open(clip(ctx, "h264.mp4"), {fps = 1, frames = 4})
   end, expect = "video.open: give one of fps, frames and all"},
  {name = "video: frames of a closed video", lua = function(ctx)
     local v = fmd.video.open(clip(ctx, "h264.mp4"))
     v:close()
     for _ in v:frames() do end
   end, expect = "video was closed"},
}
