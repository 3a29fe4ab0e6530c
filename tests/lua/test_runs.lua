-- fmd.runs: the one place that names runs and their files, lists the
-- course's trainings and declares the shared flags. The names must stay
-- the course's (CI checks the figure names), run_me.sh must take its steps
-- from here, and the report must say what XceptionBased really started from.
local fmd = require "fmd"
local cli = require "fmd.cli"
local json = require "fmd.json"
local runs = require "fmd.runs"

local tmp, run = script_sandbox()
local here = io.popen("pwd"):read("l")

test("paths of a run's files keep the course's names", function()
  expect_eq(runs.name("fakes_dataset", "SimpleNet"), "fakes_dataset_SimpleNet_Adam")
  expect_eq(runs.checkpoint("fakes_dataset", "SimpleNet"), "checkpoints/fakes_dataset_SimpleNet_Adam.safetensors")
  expect_eq(runs.checkpoint("d", "M", "SGD", "last"), "checkpoints/d_M_SGD.last.safetensors")
  expect_eq(runs.checkpoint("d", "M", nil, "prev", "c"), "c/d_M_Adam.prev.safetensors")
  expect_eq(runs.log("d", "M"), "out/d_M_Adam.json")
  expect_eq(runs.lock("d", "M", "SGD", "o"), "o/d_M_SGD.lock")
  expect_eq(runs.metrics("d", "M"), "out/d_M_metrics.json")
  expect_eq(runs.result("d", "M", "explain_eval", "x"), "x/d_M_explain_eval.json")
  expect_eq(runs.figure("d", "M", "roc_curve"), "figures/d_M_roc_curve.png")
  expect_eq(runs.figure_name("d", "M", "roc_curve"), "d_M_roc_curve.png")
  expect_eq(runs.plain_figure("datasets_samples"), "figures/datasets_samples.png")
  expect_eq(runs.report("html", "q"), "q/report.html")
  expect_eq(runs.evaluation("SimpleNet"), "out/evaluate_SimpleNet.json")
  expect_eq(runs.bonus_checkpoint(), "checkpoints/bonus.safetensors")
  expect_eq(runs.bonus_checkpoint("wide5", "augment"), "checkpoints/bonus_wide5_augment.safetensors")
  expect_eq(runs.bonus_log("d", "meso4", "course"), "out/bonus_d_meso4.json")
  expect_eq(runs.bonus_log("d", "meso4", "augment"), "out/bonus_d_meso4_augment.json")
  expect_eq(runs.bonus_designs(), "out/bonus_designs.json")
  expect_eq(runs.bonus_metrics(), "out/bonus_metrics.json")
  expect_error(function() runs.checkpoint("d", "M", nil, "newest") end, "which must be best, last or prev")
  expect_error(function() runs.name(nil, "M") end, "a run needs a data set and a model name")
end)

test("the course's three trainings and the analyses each gets", function()
  local c = runs.course("F", "S")
  expect_eq(#c, 3)
  local got = {}
  for _, r in ipairs(c) do got[#got + 1] = r.dataset .. " " .. r.model .. " " .. table.concat(r.analyses, ",") end
  expect_eq(table.concat(got, "; "), "F SimpleNet plots,roc,saliency,gradcam; S SimpleNet plots,roc,gradcam; "
    .. "S XceptionBased plots,roc,saliency,gradcam")
  expect_eq(c[3].epochs_from, "XCEPTION_EPOCHS")
  expect(runs.has_analysis(c[1], "saliency") and not runs.has_analysis(c[2], "saliency"))
  expect_eq(runs.course()[1].dataset, "fakes_dataset")
end)

test("shell_layout gives run_me.sh every run and path as key<TAB>value lines", function()
  local L, order = {}, {}
  for line in (runs.shell_layout("F", "S") .. "\n"):gmatch("(.-)\n") do
    local k, v = line:match("^([^\t]+)\t(.*)$")
    expect(k, "a line without a tab: " .. line)
    if k == "run" then order[#order + 1] = v else L[k] = v end
  end
  expect_eq(order[3], "S\tXceptionBased\tXCEPTION_EPOCHS\tplots,roc,saliency,gradcam")
  expect_eq(L["checkpoint/F/SimpleNet/best"], "checkpoints/F_SimpleNet_Adam.safetensors")
  expect_eq(L["checkpoint/S/XceptionBased/last"], "checkpoints/S_XceptionBased_Adam.last.safetensors")
  expect_eq(L["log/S/SimpleNet"], "out/S_SimpleNet_Adam.json")
  expect_eq(L["outputs/F/SimpleNet/roc"], "figures/F_SimpleNet_roc_curve.png\tfigures/F_SimpleNet_det_curve.png\t"
    .. "figures/F_SimpleNet_pr_curve.png\tout/F_SimpleNet_metrics.json")
  expect_eq(L["outputs/S/SimpleNet/saliency"], nil)
  expect_eq(L["report/html"], "figures/report.html")
  expect_eq(L["training/batch_size"], "32")
  expect_eq(L["dir/logs"], "out")
end)

test("run_me.sh --list takes its steps from fmd.runs", function()
  local p = io.popen(("cd %s && %s/run_me.sh --list --work %s/w --fakes F --synthetic S 2>&1"):format(here, here, tmp))
  local out = p:read("a")
  p:close()
  local steps = {}
  for name in out:gmatch("\n  (%S+)") do steps[#steps + 1] = name end
  expect_eq(table.concat(steps, " "), "data samples train_F_SimpleNet train_S_SimpleNet train_S_XceptionBased "
    .. "plots_F_SimpleNet plots_S_SimpleNet plots_S_XceptionBased roc_F_SimpleNet roc_S_SimpleNet roc_S_XceptionBased "
    .. "saliency_F_SimpleNet saliency_S_XceptionBased gradcam_F_SimpleNet gradcam_S_SimpleNet gradcam_S_XceptionBased "
    .. "bonus_train bonus_eval report")
  expect(out:find("(2 epochs, Adam, lr 0.001, batch 32)", 1, true), out)
end)

test("runs.flags splices the shared flags; apply_common applies --threads and --seed", function()
  local def = runs.flags({name = "x.lua", {"--own", default = "a"}}, "data_root", {"batch_size", default = 128},
    "threads", "seed")
  expect_eq(def[1][1], "--own")
  expect_eq(def[2][1], "--data-root")
  expect_eq(def[3][1], "--batch_size"); expect_eq(def[3].default, 128)
  local opts = cli.parse({"-b", "7", "--threads", "1", "--seed", "42"}, def)
  expect_eq(opts.batch_size, 7)
  local threads = fmd.get_num_threads()
  runs.apply_common(opts)
  expect_eq(fmd.get_num_threads(), 1)
  expect_eq(fmd.initial_seed(), 42)
  fmd.set_num_threads(threads)
  -- another script's -b keeps its own default: the shared spec is not changed
  expect_eq(runs.flags({}, "batch_size")[1].default, 32)
  expect_error(function() runs.flags({}, "nope") end, "no shared flag 'nope'")
end)

test("runs.parse: the analysis scripts' flags; -cpp and -j default to the run's files", function()
  local opts = runs.parse({"-m", "SimpleNet", "-d", "synthetic_dataset"}, {name = "x.lua", checkpoint = true})
  expect_eq(opts.checkpoint_path, "checkpoints/synthetic_dataset_SimpleNet_Adam.safetensors")
  opts = runs.parse({}, {name = "x.lua", json = true, "metrics_dir"})
  expect_eq(opts.json, "out/fakes_dataset_SimpleNet_Adam.json")
  expect_eq(opts.metrics_dir, "out")
  expect_error(function() runs.parse({"stray"}, {name = "x.lua"}) end, "x.lua: unexpected argument 'stray'")
end)

-- a log of one epoch of a course run
local function log_entry(ds, model, init)
  return {{model = model, dataset = ds, optimizer = {name = "Adam", params = {lr = 0.0005}}, batch_size = 16, init = init,
           train_loss = {0.7}, train_acc = {50}, val_loss = {0.7}, val_acc = {50}, test_loss = {0.7}, test_acc = {50},
           test_auc = {0.5}, seconds_per_epoch = {1}}}
end

test("the report says what XceptionBased started from, as its training log records it", function()
  fmd.sys.mkdir(tmp .. "/out")
  json.write_file(tmp .. "/out/fakes_dataset_SimpleNet_Adam.json", log_entry("fakes_dataset", "SimpleNet", "random"))
  local xlog = tmp .. "/out/synthetic_dataset_XceptionBased_Adam.json"
  json.write_file(xlog, log_entry("synthetic_dataset", "XceptionBased", "/home/u/.cache/fmd/xception-c0a72b38.pth.tar"))
  local out, code = run("report.lua", "--data-root " .. tmp .. "/nodata")
  expect_eq(code, 0, out)
  local md = io.open(tmp .. "/figures/report.md"):read("a")
  expect(md:find("XceptionBased started from the ImageNet weights in `/home/u/.cache/fmd/xception-c0a72b38.pth.tar`",
    1, true), md)
  expect(md:find("Adam, learning rate 0.0005, batch 16.", 1, true), md)
  json.write_file(xlog, log_entry("synthetic_dataset", "XceptionBased", "random"))
  out, code = run("report.lua", "--data-root " .. tmp .. "/nodata")
  expect_eq(code, 0, out)
  md = io.open(tmp .. "/figures/report.md"):read("a")
  expect(md:find("XceptionBased started from random weights (no ImageNet weights file was found", 1, true), md)
end)

os.execute("rm -rf " .. tmp)
