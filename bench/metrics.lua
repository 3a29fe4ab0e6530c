-- fmd.metrics speed: every function once on n scores (default 10^6), as
-- Lua arrays and as tensors; prints the seconds of each and the total.
-- Scores are float32 probabilities (like a model's), so ties are few and the
-- curves have ~n points: the slow case.
--
--   build/fmd bench/metrics.lua [n]
local fmd = require "fmd"
local metrics = require "fmd.metrics"
local now = require("fmd.core").sys.now

if arg[1] == "--help" or arg[1] == "-h" then print("usage: fmd bench/metrics.lua [n >= 2]"); os.exit(0) end
local n = math.tointeger(tonumber(arg[1] or "1000000"))
if not n or n < 2 then error("usage: fmd bench/metrics.lua [n >= 2]", 0) end

fmd.manual_seed(0)
local ts = fmd.rand(n)
local ty = (fmd.rand(n) * 0.5 + ts * 0.5):gt(0.5)
local s, y = {}, {}
for i = 1, n do s[i] = ts[i]; y[i] = ty[i] end

local calls = {
  {"roc_curve", function(s, y) return metrics.roc_curve(y, s) end},
  {"det_curve", function(s, y) return metrics.det_curve(y, s) end},
  {"precision_recall_curve", function(s, y) return metrics.precision_recall_curve(y, s) end},
  {"roc_auc", function(s, y) return metrics.roc_auc(y, s) end},
  {"average_precision", function(s, y) return metrics.average_precision(y, s) end},
  {"eer", function(s, y) return metrics.eer(y, s) end},
  {"accuracy", function(s, y) return metrics.accuracy(y, s, 0.5) end},
  {"confusion", function(s, y) return metrics.confusion(y, s, 0.5) end},
}

for _, input in ipairs{{"Lua arrays", s, y}, {"tensors", ts, ty}} do
  collectgarbage()
  local total = 0
  print(("%d scores as %s:"):format(n, input[1]))
  for _, c in ipairs(calls) do
    local t0 = now()
    c[2](input[2], input[3])
    local dt = now() - t0
    total = total + dt
    print(("  %-24s %7.3f s"):format(c[1], dt))
  end
  print(("  %-24s %7.3f s"):format("all together", total))
end
