-- optim.CosineAnnealingLR against PyTorch 1.13's CosineAnnealingLR
-- (tests/fixtures/lr_schedule.json, written by make_lr_schedule.py), its
-- state round trip, and bad arguments.
local fmd = require "fmd"
local optim = require "fmd.optim"
local json = require "fmd.json"

test("the learning rates equal PyTorch's, step by step", function()
  local ref = json.read_file("tests/fixtures/lr_schedule.json")
  expect(#ref.cases >= 4, "fixture cases missing")
  for _, c in ipairs(ref.cases) do
    local opt = optim.Adam({fmd.zeros(1)}, {lr = c.lr})
    local s = optim.CosineAnnealingLR(opt, math.tointeger(c.T_max), c.eta_min)
    expect_near(opt.param_groups[1].lr, c.lrs[1], 1e-12)
    for i = 2, #c.lrs do
      s:step()
      local lr = opt.param_groups[1].lr
      expect(math.abs(lr - c.lrs[i]) <= 1e-12 * c.lr + 1e-15,
        ("T_max %d step %d: lr %.17g, PyTorch %.17g"):format(c.T_max, i - 1, lr, c.lrs[i]))
    end
  end
end)

test("state_dict / load_state_dict go on from the same step", function()
  local opt = optim.SGD({fmd.zeros(1)}, {lr = 0.1})
  local s = optim.CosineAnnealingLR(opt, 8)
  for _ = 1, 3 do s:step() end
  local sd = s:state_dict()
  local opt2 = optim.SGD({fmd.zeros(1)}, {lr = 0.1})
  local s2 = optim.CosineAnnealingLR(opt2, 8)
  s2:load_state_dict(sd)
  expect_eq(opt2.param_groups[1].lr, opt.param_groups[1].lr)
  s:step(); s2:step()
  expect_eq(opt2.param_groups[1].lr, opt.param_groups[1].lr)
  expect_eq(s2:get_last_lr()[1], opt.param_groups[1].lr)
end)

test("bad arguments name the problem", function()
  local opt = optim.SGD({fmd.zeros(1)}, {lr = 0.1})
  expect_error(function() optim.CosineAnnealingLR(opt, 0) end, "optim.CosineAnnealingLR: T_max must be an integer >= 1, got 0")
  expect_error(function() optim.CosineAnnealingLR(opt, 5, -1) end, "eta_min must be a number >= 0")
  expect_error(function() optim.CosineAnnealingLR({}, 5) end, "expected an optimizer")
  expect_error(function() optim.CosineAnnealingLR(opt, 5):load_state_dict({last_epoch = -1}) end,
    "last_epoch must be an integer >= 0")
end)
