-- Detection metrics on plain Lua arrays of scores and 0/1 labels
-- (label 1 = fake = positive class).
local metrics = {}

-- ROC AUC by the rank statistic (Mann-Whitney U) with average ranks for
-- ties: the probability that a random fake scores above a random real.
function metrics.roc_auc(scores, labels)
  local n = #scores
  assert(n == #labels, "roc_auc: scores and labels differ in length")
  local order = {}
  for i = 1, n do order[i] = i end
  table.sort(order, function(a, b)
    if scores[a] ~= scores[b] then return scores[a] < scores[b] end
    return a < b
  end)
  local ranks = {}
  local i = 1
  while i <= n do
    local j = i
    while j < n and scores[order[j + 1]] == scores[order[i]] do j = j + 1 end
    local r = (i + j) / 2
    for k = i, j do ranks[order[k]] = r end
    i = j + 1
  end
  local n1, n0, rsum = 0, 0, 0
  for k = 1, n do
    if labels[k] == 1 then n1 = n1 + 1; rsum = rsum + ranks[k] else n0 = n0 + 1 end
  end
  if n1 == 0 or n0 == 0 then return 0 / 0 end
  return (rsum - n1 * (n1 + 1) / 2) / (n1 * n0)
end

-- ROC points as thresholds sweep from high to low: fpr, tpr arrays
-- (starting at 0,0 and ending at 1,1), and the thresholds used.
function metrics.roc_curve(scores, labels)
  local n = #scores
  local order = {}
  for i = 1, n do order[i] = i end
  table.sort(order, function(a, b) return scores[a] > scores[b] end)
  local P, N = 0, 0
  for i = 1, n do if labels[i] == 1 then P = P + 1 else N = N + 1 end end
  local fpr, tpr, thr = {0}, {0}, {math.huge}
  local tp, fp = 0, 0
  for k = 1, n do
    local i = order[k]
    if labels[i] == 1 then tp = tp + 1 else fp = fp + 1 end
    if k == n or scores[order[k + 1]] ~= scores[i] then
      fpr[#fpr + 1] = N > 0 and fp / N or 0
      tpr[#tpr + 1] = P > 0 and tp / P or 0
      thr[#thr + 1] = scores[i]
    end
  end
  return fpr, tpr, thr
end

-- DET points: false positive rate and false negative (miss) rate
function metrics.det_curve(scores, labels)
  local fpr, tpr, thr = metrics.roc_curve(scores, labels)
  local fnr = {}
  for i = 1, #tpr do fnr[i] = 1 - tpr[i] end
  return fpr, fnr, thr
end

return metrics
