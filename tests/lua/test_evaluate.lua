-- scripts/evaluate.lua: one checkpoint on several data sets; the numbers
-- are numerical_analysis.lua's (one evaluation function), folders and
-- names both work, and mistakes are one line before any work.
local fmd = require "fmd"
local json = require "fmd.json"

local tmp, run, ok_run = script_sandbox()


local ROOT = tmp .. "/data"
ok_run("make_faces.lua", ("--out %s --seed 3 --train 12 --val 8 --test 12 --threads 1"):format(ROOT))
ok_run("train.lua", ("--data-root %s -d fakes_dataset -m SimpleNet -e 1 -b 8 -o Adam --workers 1"):format(ROOT))
local CK = "checkpoints/fakes_dataset_SimpleNet_Adam.safetensors"

test("evaluate agrees with numerical_analysis on every set, by name or by folder", function()
  local out = ok_run("evaluate.lua", ("-m SimpleNet -cpp %s --data-root %s -d fakes_dataset synthetic_dataset %s/fakes_dataset/val")
    :format(CK, ROOT, ROOT))
  expect(out:find("wrote out/evaluate_SimpleNet.json", 1, true), out)
  local ev = json.read_file(tmp .. "/out/evaluate_SimpleNet.json")
  expect_eq(#ev.results, 3, "rows")
  expect_eq(ev.results[3].folder, ROOT .. "/fakes_dataset/val", "a folder path is used as it is")
  for i, set in ipairs{"fakes_dataset", "synthetic_dataset"} do
    ok_run("numerical_analysis.lua", ("-m SimpleNet -cpp %s --data-root %s -d %s"):format(CK, ROOT, set))
    local na = json.read_file(("%s/out/%s_SimpleNet_metrics.json"):format(tmp, set))
    local e = ev.results[i]
    for _, k in ipairs{"auc_a", "auc_b", "average_precision", "eer", "accuracy", "n_real", "n_fake"} do
      expect_eq(e[k], na[k], set .. " " .. k)
    end
    expect_eq(e.confusion.tp, na.confusion.tp, set .. " tp")
  end
end)

test("mistakes are one line, found before loading anything", function()
  for _, c in ipairs{
    {("-m SimpleNet -cpp %s --data-root %s -d fakes_dataset nope"):format(CK, ROOT), "data set nope: neither"},
    {("-m SimpleNet --data-root %s -d fakes_dataset"):format(ROOT), "-cpp CHECKPOINT is required"},
    {("-m SimpleNet -cpp %s --data-root %s"):format(CK, ROOT), "name at least one data set"},
    {("-m SimpleNet -cpp missing.safetensors --data-root %s -d fakes_dataset"):format(ROOT), "missing.safetensors"},
  } do
    local out, code = run("evaluate.lua", c[1])
    expect(code ~= 0, "exit 0 for: " .. c[1])
    expect(out:find(c[2], 1, true), ("expected '%s' in:\n%s"):format(c[2], out))
    expect(not out:find("traceback", 1, true), "traceback for: " .. c[1] .. "\n" .. out)
  end
end)

os.execute("rm -rf '" .. tmp .. "'")
