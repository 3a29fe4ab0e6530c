-- The bonus model: a tiny deepfake detector in the spirit of MesoNet (Afchar
-- et al., 2018, "MesoNet: a Compact Facial Video Forgery Detection Network"):
-- a few narrow conv + BatchNorm + ReLU + max-pool stages look at mesoscopic
-- image statistics (blending seams, resampling and colour mismatch of the
-- swapped face) rather than at what a face is, then a small head decides.
-- Input (B,3,H,W) (any size: the head pools to a fixed grid), output raw
-- logits (B,2): column 1 "real", column 2 "fake".
--
--   local models = require "fmd.models"
--   local m = models.load_model("bonus")                 -- the chosen design
--   local m2 = models.load_model("bonus", {design = "meso4"})
--   local m3 = require("fmd.models").class("bonus").my_bonus_model()  -- + checkpoint
--
-- A design is one entry of DESIGNS: the stages' widths, kernel sizes and
-- pooling, the pooled grid and the hidden width of the head. Edit one, or
-- add one and train it with `fmd scripts/train_bonus.lua --design NAME`
-- (copy this file to ./models/bonus_model.lua to keep fmd's own intact).
local nn = require "fmd.nn"

local BonusModel = nn.Module:extend("BonusModel")

BonusModel.DESIGNS = {
  -- MesoNet's Meso-4 as published (27,977 parameters at 256x256)
  meso4 = {widths = {8, 8, 16, 16}, kernels = {3, 5, 5, 5}, pools = {2, 2, 2, 4}, grid = 8, hidden = 16},
  -- Meso-4 with global average pooling: the head no longer sees where
  meso4_gap = {widths = {8, 8, 16, 16}, kernels = {3, 5, 5, 5}, pools = {2, 2, 2, 4}, grid = 1, hidden = 16},
  -- wider 3x3 stages, five of them, global average pooling
  wide5 = {widths = {16, 24, 32, 48, 64}, kernels = {3, 3, 3, 3, 3}, pools = {2, 2, 2, 2, 2}, grid = 1, hidden = 32},
  -- wider 3x3 stages and a 4x4 grid (where on the face matters)
  wide5_grid = {widths = {16, 24, 32, 48, 64}, kernels = {3, 3, 3, 3, 3}, pools = {2, 2, 2, 2, 2}, grid = 2, hidden = 32},
}
BonusModel.CHOSEN = "meso4"
BonusModel.RECIPE = "course"   -- scripts/train_bonus.lua --recipe: "course" or "augment"
BonusModel.CHECKPOINT = require("fmd.runs").bonus_checkpoint()   -- checkpoints/bonus.safetensors

-- a design table is checked before it builds layers: one read back from a
-- checkpoint's metadata could be damaged; `where` names it in the error
local function check_design(d, where)
  local field = require("fmd.json").field
  field({design = d}, "design", "table", where)
  local n = #field(d, "widths", "integers", where, {min = 1, max = 4096})
  if n == 0 then error(("%s: 'widths' is empty, expected one width per stage"):format(where), 0) end
  field(d, "kernels", "integers", where, {min = 1, max = 31, len = n})
  field(d, "pools", "integers", where, {min = 1, max = 64, len = n})
  field(d, "grid", "integer", where, {min = 1, max = 64})
  field(d, "hidden", "integer", where, {min = 1, max = 65536})
  field(d, "dropout", "number", where, {min = 0, max = 0.99, optional = true})
end

-- opts.design: a name in DESIGNS (default CHOSEN) or a design table (then
-- opts.design_name names it; opts.design_where names where it was read)
function BonusModel:__init(opts)
  opts = opts or {}
  local d = opts.design or BonusModel.CHOSEN
  local name = type(d) == "string" and d or opts.design_name or "custom"
  if type(d) == "string" then
    d = BonusModel.DESIGNS[d]
    if not d then
      local names = {}
      for k in pairs(BonusModel.DESIGNS) do names[#names + 1] = k end
      table.sort(names)
      error(("bonus model: unknown design '%s' (known: %s)"):format(name, table.concat(names, ", ")), 0)
    end
  else
    check_design(d, opts.design_where or ("bonus design " .. name))
  end
  self.design_name, self.spec = name, d
  local layers, cin = {}, 3
  for i, w in ipairs(d.widths) do
    local k = d.kernels[i]
    layers[#layers + 1] = nn.Conv2d(cin, w, k, {padding = k // 2, bias = false})   -- same size
    layers[#layers + 1] = nn.BatchNorm2d(w)
    layers[#layers + 1] = nn.ReLU()
    layers[#layers + 1] = nn.MaxPool2d(d.pools[i], d.pools[i])                    -- H/pool
    cin = w
  end
  self.features = nn.Sequential(table.unpack(layers))
  self.pool = nn.AdaptiveAvgPool2d(d.grid)                                       -- (B,C,grid,grid)
  -- dropout on the pooled features only: on a 16-unit hidden layer it
  -- made training collapse to the constant answer (loss stuck at ln 2)
  self.dropout = nn.Dropout(d.dropout or 0.2)
  self.fc1 = nn.Linear(cin * d.grid * d.grid, d.hidden)
  self.fc2 = nn.Linear(d.hidden, 2)
end

-- x is (B,3,H,W)
function BonusModel:forward(x)
  x = self.pool(self.features(x)):flatten(2)   -- (B, C*grid*grid)
  x = self.fc1(self.dropout(x)):relu()
  return self.fc2(x)
end

function BonusModel:extra_repr() return "design=" .. self.design_name end

-- m:load(path): a checkpoint of any design. The design is saved with the
-- weights (scripts/train_bonus.lua), so the model is rebuilt to it first;
-- fmd.load_model("bonus", path) and the analysis scripts' -m bonus rely on it.
function BonusModel:load(path, strict)
  local _, md = require("fmd.state_io").read(path)
  if md.spec ~= nil then
    local training = self.training
    self:__init({design = md.spec, design_name = tostring(md.design or "custom"),
                 design_where = path .. " (metadata 'spec')"})
    self:train(training)
  end
  return nn.Module.load(self, path, strict)
end

-- the course's entry point: the chosen design with its trained weights
-- (checkpoints/bonus.safetensors, written by scripts/train_bonus.lua)
function BonusModel.my_bonus_model(path)
  local fmd = require "fmd"
  path = path or BonusModel.CHECKPOINT
  if not fmd.sys.is_file(path) then
    error(("bonus model: no checkpoint at %s (train it with: fmd scripts/train_bonus.lua)"):format(path), 0)
  end
  -- the design saved with the weights wins over an edited DESIGNS or CHOSEN
  local model = BonusModel():load(path)
  model:eval()
  return model
end

-- BonusModel.check_designs(rows, path) -> rows: the decoded designs table
-- that scripts/train_bonus.lua keeps (out/bonus_designs.json, read from
-- `path`), every field a reader uses checked: a damaged or hand-edited
-- table is one error naming the file, the row and the field.
function BonusModel.check_designs(rows, path)
  local json = require "fmd.json"
  json.field({rows = rows}, "rows", "list", path)
  for i, r in ipairs(rows) do
    local where = ("%s, row %d"):format(path, i)
    json.field({row = r}, "row", "table", where)
    for _, k in ipairs{"dataset", "design"} do json.field(r, k, "string", where) end
    json.field(r, "recipe", "string", where, {optional = true})
    json.field(r, "params", "integer", where, {min = 1})
    json.field(r, "macs", "number", where, {min = 0})
    json.field(r, "epochs", "integer", where, {min = 1})
    json.field(r, "planned_epochs", "integer", where, {min = 1, optional = true})
    json.field(r, "best_epoch", "integer", where, {min = 0, max = r.epochs})
    json.field(r, "val_auc", "number", where, {min = 0, max = 1})
    json.field(r, "train_seconds", "number", where, {min = 0})
    json.field(r, "chosen", "boolean", where, {optional = true})
  end
  return rows
end

-- BonusModel.read_designs(path) -> the checked rows of the designs table,
-- {} when there is none
function BonusModel.read_designs(path)
  local fmd = require "fmd"
  if not fmd.sys.is_file(path) then return {} end
  local ok, rows = pcall(require("fmd.json").read_file, path)
  if not ok then error(("%s is not readable (%s); fix or remove it"):format(path, tostring(rows)), 0) end
  return BonusModel.check_designs(rows, path)
end

return BonusModel
