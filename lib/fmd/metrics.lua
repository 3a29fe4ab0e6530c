-- fmd.metrics: detection metrics with scikit-learn 1.2's semantics (ties
-- included) and its argument order: labels first, then scores, as
-- sklearn's (y_true, y_score). Label 1 = fake = the positive class, 0 =
-- real; a higher score means "more fake". labels and scores are Lua arrays
-- of numbers or 1-D tensors of the same length; results are Lua arrays and
-- numbers. The sorting and counting run in C (engine/metrics.c, bound in
-- bindings/lua_metrics.c); every bad input (empty, lengths differ, a label
-- other than 0/1 -- the message says the order --, NaN or infinite score, a
-- class the metric needs missing) is an error naming the function. See
-- docs/metrics.md.
local C = require("fmd.core")._metrics

local metrics = {}

-- fpr, tpr, thresholds: sklearn.metrics.roc_curve(labels, scores,
-- drop_intermediate=False). One point per distinct score from the highest
-- down, after a first point (0, 0) at threshold max score + 1.
function metrics.roc_curve(labels, scores) return C.roc_curve(labels, scores) end

-- fpr, fnr, thresholds: sklearn.metrics.det_curve (thresholds ascending,
-- trimmed to the points between fnr = 0 and the lowest fpr).
function metrics.det_curve(labels, scores) return C.det_curve(labels, scores) end

-- precision, recall, thresholds: sklearn.metrics.precision_recall_curve
-- (thresholds ascending; precision and recall end with 1, 0). Needs at least
-- one fake; all fakes is fine.
function metrics.precision_recall_curve(labels, scores) return C.precision_recall_curve(labels, scores) end

-- sklearn.metrics.roc_auc_score: area under the ROC (trapezoids).
function metrics.roc_auc(labels, scores) return C.roc_auc(labels, scores) end

-- sklearn.metrics.average_precision_score: sum of precision * recall step.
function metrics.average_precision(labels, scores) return C.average_precision(labels, scores) end

-- eer, threshold: the equal error rate, where fpr = fnr (= 1 - tpr) on the
-- ROC of roc_curve, linearly interpolated between the last point with
-- fnr > fpr and the next one; the threshold is interpolated the same way
-- (between the first two points it involves roc_curve's max score + 1).
function metrics.eer(labels, scores) return C.eer(labels, scores) end

-- fraction (0..1) of samples classified right:
-- sklearn.metrics.accuracy_score(labels, predictions) for 0/1 predictions,
-- or accuracy_score(labels, scores >= threshold) when a threshold is given.
function metrics.accuracy(labels, predictions, threshold) return C.accuracy(labels, predictions, threshold) end

-- {tn=, fp=, fn=, tp=}, also readable as
-- sklearn.metrics.confusion_matrix(labels, predictions): cm[1] = {tn, fp}
-- (true real), cm[2] = {fn, tp} (true fake). predictions are 0/1, or scores
-- with a threshold (score >= threshold predicted fake).
function metrics.confusion(labels, predictions, threshold) return C.confusion(labels, predictions, threshold) end

return metrics
