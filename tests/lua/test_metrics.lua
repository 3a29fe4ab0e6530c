-- fmd.metrics against scikit-learn 1.2 (tests/fixtures/metrics.json, made by
-- tests/fixtures/make_metrics.py): every curve and number within 1e-9 on
-- ties, tiny sets, separated, reversed, all-equal and 10^5 samples; tensors
-- give what Lua arrays give; every input error is one clear line.
local fmd = require "fmd"
local json = require "fmd.json"
local metrics = require "fmd.metrics"

local TOL = 1e-9
local fixture = json.read_file("tests/fixtures/metrics.json")
local cases = fixture.cases

-- the 10^5 case stores scores as 3-digit groups and labels as 0/1 digits
local function inputs(c)
  local s, y = c.scores, c.labels
  if type(s) == "string" then
    local t = {}
    for i = 1, #s // 3 do t[i] = tonumber(s:sub(3 * i - 2, 3 * i)) end
    s = t
  end
  if type(y) == "string" then
    local t = {}
    for i = 1, #y do t[i] = y:byte(i) - 48 end
    y = t
  end
  return s, y
end
for name, c in pairs(cases) do
  if not name:find("^__") then c.s, c.y = inputs(c) end
end

local function expect_array(got, want, what)
  expect_eq(#got, #want, what .. " length")
  for i = 1, #want do expect_near(got[i], want[i], TOL, ("%s[%d]"):format(what, i)) end
end

local names = {}
for name in pairs(cases) do
  if not name:find("^__") then names[#names + 1] = name end   -- json keeps key order in __order
end
table.sort(names)

for _, name in ipairs(names) do
  local c = cases[name]
  test(name .. ": curves, AUC, AP and EER equal scikit-learn's", function()
    if c.roc then
      local fpr, tpr, thr = metrics.roc_curve(c.y, c.s)
      expect_array(fpr, c.roc.fpr, "roc fpr")
      expect_array(tpr, c.roc.tpr, "roc tpr")
      expect_array(thr, c.roc.thresholds, "roc thresholds")
      local dfpr, dfnr, dthr = metrics.det_curve(c.y, c.s)
      expect_array(dfpr, c.det.fpr, "det fpr")
      expect_array(dfnr, c.det.fnr, "det fnr")
      expect_array(dthr, c.det.thresholds, "det thresholds")
      expect_near(metrics.roc_auc(c.y, c.s), c.roc_auc, TOL, "roc_auc")
      local eer, ethr = metrics.eer(c.y, c.s)
      expect_near(eer, c.eer, TOL, "eer")
      expect_near(ethr, c.eer_threshold, TOL, "eer threshold")
    end
    local p, r, pthr = metrics.precision_recall_curve(c.y, c.s)
    expect_array(p, c.pr.precision, "precision")
    expect_array(r, c.pr.recall, "recall")
    expect_array(pthr, c.pr.thresholds, "pr thresholds")
    expect_near(metrics.average_precision(c.y, c.s), c.average_precision, TOL, "average_precision")
  end)
  test(name .. ": accuracy and confusion equal scikit-learn's", function()
    for k, t in ipairs(c.thresholds) do
      expect_near(metrics.accuracy(c.y, c.s, t), c.accuracy[k], TOL, "accuracy at " .. t)
      local cm, want = metrics.confusion(c.y, c.s, t), c.confusion[k]
      expect_eq(cm.tn, want[1], "tn"); expect_eq(cm.fp, want[2], "fp")
      expect_eq(cm.fn, want[3], "fn"); expect_eq(cm.tp, want[4], "tp")
      expect_eq(cm[1][1], cm.tn); expect_eq(cm[1][2], cm.fp)
      expect_eq(cm[2][1], cm.fn); expect_eq(cm[2][2], cm.tp)
    end
  end)
end

test("the 10^5 case really has many ties and both classes", function()
  local c = cases.big
  expect_eq(#c.s, 100000)
  expect_eq(#c.roc.fpr, 1001)   -- 1000 distinct scores + the (0, 0) point
end)

-- every result of every function, for comparing two calls
local function all_results(y, s)
  local out = {}
  for _, f in ipairs{"roc_curve", "det_curve", "precision_recall_curve", "eer"} do
    out[f] = table.pack(metrics[f](y, s))
  end
  out.roc_auc = metrics.roc_auc(y, s)
  out.average_precision = metrics.average_precision(y, s)
  out.accuracy = metrics.accuracy(y, s, 0.5)
  out.confusion = metrics.confusion(y, s, 0.5)
  return out
end

local function same(a, b, path)
  if type(a) == "table" then
    expect_eq(type(b), "table", path)
    for k, v in pairs(a) do same(v, b[k], path .. "." .. tostring(k)) end
    for k in pairs(b) do expect(a[k] ~= nil, path .. "." .. tostring(k) .. " missing") end
  else
    expect_eq(a, b, path)
  end
end

test("tensors give the same results as Lua arrays (contiguous and strided)", function()
  -- float32 rounds 0.1 etc.: the arrays hold the tensor's own values
  for _, name in ipairs{"ties", "logits", "big"} do
    local c = cases[name]
    local ts, ty = fmd.tensor(c.s), fmd.tensor(c.y)
    local s32 = {}
    for i = 1, #c.s do s32[i] = ts[i] end
    local want = all_results(c.y, s32)
    same(all_results(ty, ts), want, name .. " tensor")
    same(all_results(c.y, ts), want, name .. " tensor scores, array labels")
    local rows = {}
    for i = 1, #c.s do rows[i] = {c.s[i], -1} end
    local col = fmd.tensor(rows):select(2, 1)   -- column 1 of (n, 2): stride 2
    expect_eq(col:stride()[1], 2)
    same(all_results(ty, col), want, name .. " strided tensor")
  end
  -- integer scores are exact in float32, so there sklearn's values hold too
  local fpr = metrics.roc_curve(fmd.tensor(cases.big.y), fmd.tensor(cases.big.s))
  expect_array(fpr, cases.big.roc.fpr, "big roc fpr from tensors")
end)

test("results do not depend on the order of the samples", function()
  local c = cases.ties
  local s, y = {}, {}
  for i = #c.s, 1, -1 do s[#s + 1] = c.s[i]; y[#y + 1] = c.y[i] end
  same(all_results(y, s), all_results(c.y, c.s), "reversed order")
end)

test("the trainer's call: roc_auc of Lua arrays, integer labels", function()
  expect_near(metrics.roc_auc({0, 0, 1, 1}, {0.1, 0.4, 0.35, 0.8}), 0.75, TOL)
end)

-- errors: one line that starts with the function's name (no file:line)
local function expect_msg(fn, want)
  local err = expect_error(fn, want)
  expect(not err:find("\n"), "one line: " .. err)
  expect(not err:find("%.lua:%d+:"), "no position: " .. err)
end

local curve_fns = {"roc_curve", "det_curve", "roc_auc", "eer", "precision_recall_curve", "average_precision"}
local all_fns = {"roc_curve", "det_curve", "roc_auc", "eer", "precision_recall_curve", "average_precision",
                 "accuracy", "confusion"}

test("a single class is an error for ROC, DET, EER; no fake for precision-recall", function()
  for _, f in ipairs{"roc_curve", "roc_auc"} do
    expect_msg(function() metrics[f]({1, 1}, {0.2, 0.4}) end,
      f .. ": labels hold only class 1 (fake); ROC needs both real (0) and fake (1)")
    expect_msg(function() metrics[f]({0, 0}, {0.2, 0.4}) end,
      f .. ": labels hold only class 0 (real); ROC needs both real (0) and fake (1)")
  end
  expect_msg(function() metrics.det_curve({1}, {0.2}) end, "det_curve: labels hold only class 1 (fake); DET needs both")
  expect_msg(function() metrics.eer({0}, {0.2}) end, "eer: labels hold only class 0 (real); EER needs both")
  for _, f in ipairs{"precision_recall_curve", "average_precision"} do
    expect_msg(function() metrics[f]({0, 0}, {0.2, 0.4}) end,
      f .. ": labels hold only class 0 (real); precision-recall needs at least one fake (1)")
  end
  -- accuracy and confusion are defined on one class
  expect_eq(metrics.accuracy({0, 0}, {0.2, 0.7}, 0.5), 0.5)
  expect_eq(metrics.confusion({1, 1}, {0.2, 0.7}, 0.5).tp, 1)
end)

test("NaN and infinite scores are errors that count them and give the first index", function()
  local nan = 0 / 0
  for _, f in ipairs(all_fns) do
    expect_msg(function() metrics[f]({0, 1, 0, 1}, {0.1, nan, 0.3, nan}, 0.5) end,
      f .. ": scores hold 2 NaN values (the first at index 2)")
    expect_msg(function() metrics[f]({0, 1, 0}, fmd.tensor{0.1, 0.2, nan}, 0.5) end,
      f .. ": scores hold 1 NaN value (the first at index 3)")
    expect_msg(function() metrics[f]({0, 1, 0}, {0.1, math.huge, 0.3}, 0.5) end,
      f .. ": scores hold 1 infinite value (the first at index 2); scores must be finite")
  end
end)

test("length mismatch, empty input, bad labels and bad types are errors", function()
  for _, f in ipairs(all_fns) do
    expect_msg(function() metrics[f]({0, 1}, {0.1, 0.2, 0.3}, 0.5) end,
      f .. ": labels has 2 entries but scores has 3")
    expect_msg(function() metrics[f](fmd.tensor{0, 1, 1}, fmd.tensor{0.1, 0.2}, 0.5) end,
      f .. ": labels has 3 entries but scores has 2")
    expect_msg(function() metrics[f]({}, {}, 0.5) end, f .. ": labels and scores are empty")
    expect_msg(function() metrics[f]({0, 2, 1}, {0.1, 0.2, 0.3}, 0.5) end,
      f .. "(labels, scores): labels must be 0 or 1, got 2 at index 2 (the order is labels first")
    expect_msg(function() metrics[f]({0, -0.5}, {0.1, 0.2}, 0.5) end, f .. "(labels, scores): labels must be 0 or 1, got -0.5 at index 2")
    expect_msg(function() metrics[f]({0, 1}, {0.1, "x"}, 0.5) end, f .. ": scores[2] is string, expected a number")
    expect_msg(function() metrics[f]({0, nil, 1}, {0.1, 0.2}, 0.5) end, f .. ": ")
    expect_msg(function() metrics[f]({0}, "0.1", 0.5) end,
      f .. ": scores must be a Lua array of numbers or a 1-D tensor (got string)")
    expect_msg(function() metrics[f](nil, {0.1}, 0.5) end,
      f .. ": labels must be a Lua array of numbers or a 1-D tensor (got nil)")
    expect_msg(function() metrics[f]({0, 1, 0, 1}, fmd.zeros(2, 2), 0.5) end,
      f .. ": scores must be a 1-D tensor (got [2 x 2])")
  end
  for _, f in ipairs{"accuracy", "confusion"} do
    expect_msg(function() metrics[f]({0, 1}, {0.1, 0.9}, "half") end, f .. ": threshold must be a number (got string)")
    expect_msg(function() metrics[f]({0, 1}, {0.1, 0.9}, 0 / 0) end, f .. ": threshold is NaN")
  end
  expect(#curve_fns == 6)
end)

test("scores passed first (scikit-learn's order swapped) are an error that says the order", function()
  local y, s = {0, 0, 1, 1, 1}, {0, 0.2, 1, 0.73, 0.9}
  for _, f in ipairs(curve_fns) do
    expect_msg(function() metrics[f](s, y) end, f .. "(labels, scores): labels must be 0 or 1, got 0.2 at index 2 " ..
      "(the order is labels first, as scikit-learn's y_true, y_score)")
    metrics[f](y, s)   -- the right order works
  end
  for _, f in ipairs{"accuracy", "confusion"} do
    expect_msg(function() metrics[f](s, y, 0.5) end, f .. "(labels, scores): labels must be 0 or 1, got 0.2 at index 2 " ..
      "(the order is labels first, as scikit-learn's y_true, y_score)")
    expect_msg(function() metrics[f](fmd.tensor(s), y) end, f .. "(labels, predictions): labels must be 0 or 1, " ..
      "got 0.20000000298023224 at index 2 (the order is labels first, as scikit-learn's y_true, y_pred)")
  end
end)

test("confusion(labels, predictions) counts FP and FN the right way round", function()
  -- 2 reals, 4 fakes; predictions: real 1 called fake (a false positive),
  -- fakes 3 and 4 called real (two false negatives)
  local y    = {0, 0, 1, 1, 1, 1}
  local pred = {1, 0, 0, 0, 1, 1}
  local cm = metrics.confusion(y, pred)
  expect_eq(cm.tn, 1); expect_eq(cm.fp, 1); expect_eq(cm.fn, 2); expect_eq(cm.tp, 2)
  expect_eq(cm[1][1], 1); expect_eq(cm[1][2], 1); expect_eq(cm[2][1], 2); expect_eq(cm[2][2], 2)
  expect_near(metrics.accuracy(y, pred), 3 / 6, TOL)
  -- the same predictions from tensors, and as scores with a threshold
  local t = metrics.confusion(fmd.tensor(y), fmd.tensor(pred))
  expect_eq(t.fp, 1); expect_eq(t.fn, 2)
  local sc = metrics.confusion(y, {0.9, 0.1, 0.3, 0.4, 0.6, 0.8}, 0.5)
  expect_eq(sc.fp, 1); expect_eq(sc.fn, 2)
end)

test("predictions without a threshold must be 0 or 1", function()
  for _, f in ipairs{"accuracy", "confusion"} do
    expect_msg(function() metrics[f]({0, 1, 1}, {0, 0.73, 1}) end, f .. "(labels, predictions): predictions must " ..
      "be 0 or 1, got 0.73 at index 2 (for scores, give a threshold: " .. f .. "(labels, scores, threshold))")
    expect_msg(function() metrics[f]({0, 1}, {0, 0 / 0}) end, f .. ": predictions hold 1 NaN value (the first at index 2)")
    expect_msg(function() metrics[f]({0, 1}, {0}) end, f .. ": labels has 2 entries but predictions has 1")
  end
end)

test("a threshold tie counts as fake (score >= threshold)", function()
  local cm = metrics.confusion({1, 0, 0}, {0.5, 0.5, 0.2}, 0.5)
  expect_eq(cm.tp, 1); expect_eq(cm.fp, 1); expect_eq(cm.tn, 1); expect_eq(cm.fn, 0)
  expect_near(metrics.accuracy({1, 0, 0}, {0.5, 0.5, 0.2}, 0.5), 2 / 3, TOL)
end)
