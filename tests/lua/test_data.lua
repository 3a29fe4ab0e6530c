-- FacesDataset, load_dataset and DataLoader on small data sets made here
local fmd = require "fmd"
local data = require "fmd.data"
local T = require "fmd.transforms"

local tmp = os.tmpname()
os.remove(tmp)
local function sh(cmd) assert(os.execute(cmd), cmd) end
sh("mkdir -p '" .. tmp .. "'")

-- root/{real,fake} with images of value-coded content (so order is visible)
local function make_set(root, nreal, nfake, size, extra)
  sh(("mkdir -p '%s/real' '%s/fake'"):format(root, root))
  local k = 0
  for _, spec in ipairs{{"real", nreal}, {"fake", nfake}} do
    for i = 1, spec[2] do
      k = k + 1
      local img = fmd.rand(3, size, size) * 0.5 + (k % 2) * 0.25
      -- mixed case: bytewise order puts upper case first
      local name = (i % 2 == 0 and "Img%02d.png" or "img%02d.png"):format(i)
      fmd.save_image(("%s/%s/%s"):format(root, spec[1], name), img)
    end
  end
  if extra then extra(root) end
end

local function write(path, s)
  local f = assert(io.open(path, "wb")); f:write(s); f:close()
end

fmd.manual_seed(1)
local root = tmp .. "/faces/train"
make_set(root, 5, 3, 40, function(r)
  write(r .. "/real/notes.txt", "not an image")
  sh(("mkdir -p '%s/fake/subdir'"):format(r))
end)

test("FacesDataset: count, order, labels, skipping non-images", function()
  local ds = data.FacesDataset(root)
  expect_eq(#ds, 8)
  expect_eq(ds.nreal, 5)
  expect_eq(ds.nfake, 3)
  for i = 1, 5 do expect_eq(ds.labels[i], 0) end
  for i = 6, 8 do expect_eq(ds.labels[i], 1) end
  -- names sorted bytewise: Img02, Img04, img01, img03, img05
  expect(ds.paths[1]:find("/real/Img02.png", 1, true), ds.paths[1])
  expect(ds.paths[3]:find("/real/img01.png", 1, true), ds.paths[3])
  expect(ds.paths[6]:find("/fake/Img02.png", 1, true), ds.paths[6])
  local img, label = ds:get(7)
  expect_eq(fmd.shape_str(img), "[3 x 40 x 40]")
  expect_eq(label, 1)
  local s = ds[2]
  expect_eq(s.label, 0)
  expect_near(s[1], fmd.load_image(ds.paths[2]), 0)
  expect_error(function() return ds[9] end, "out of range 1..8")
end)

test("FacesDataset errors: missing folders", function()
  sh(("mkdir -p '%s/onlyreal/real'"):format(tmp))
  fmd.save_image(tmp .. "/onlyreal/real/a.png", fmd.zeros(3, 4, 4))
  expect_error(function() data.FacesDataset(tmp .. "/onlyreal") end, "has no fake/ folder")
  expect_error(function() data.FacesDataset(tmp .. "/nope") end, "does not exist")
end)

test("load_dataset: data root from opts, FMD_DATA, course transform per part", function()
  local ds = data.load_dataset("faces", "train", {data_root = tmp})
  expect_eq(#ds, 8)
  expect_eq(tostring(ds.transform), tostring(T.course("train")))
  local img = ds:get(1)
  expect_eq(fmd.shape_str(img), "[3 x 256 x 256]")   -- 40x40 resized
  expect_error(function() data.load_dataset("faces", "val", {data_root = tmp}) end, "faces/val")
  expect_error(function() data.load_dataset("faces", "bogus", {data_root = tmp}) end, "unknown part")
  -- FMD_DATA is read when no data_root is given (run in a child fmd)
  local exe = arg and arg[-1]
  if exe then
    local p = io.popen(("FMD_DATA='%s' '%s' -e 'print(#require(\"fmd.data\").load_dataset(\"faces\", \"train\"))' 2>&1")
      :format(tmp, exe))
    local out = p:read("a")
    p:close()
    expect(out:match("\n8\n$"), "FMD_DATA honoured: " .. out)
    -- the non-image file gave one warning line naming it
    expect(out:match("^fmd.data: skipping '[^\n]*/real/notes.txt' %(not a PNG or JPEG file%)\n8"), out)
  end
end)

-- all batches of an epoch: list of {images, labels}
local function epoch_batches(loader, epoch)
  local out = {}
  for images, labels in loader:iter(epoch) do out[#out + 1] = {images, labels} end
  return out
end

local function same_batches(a, b, what)
  expect_eq(#a, #b, what .. " batch count")
  for i = 1, #a do
    expect_near(a[i][1], b[i][1], 0, what .. " images " .. i)
    expect_near(a[i][2], b[i][2], 0, what .. " labels " .. i)
  end
end

test("DataLoader: C threaded path = Lua path, any worker count", function()
  local ds = data.load_dataset("faces", "train", {data_root = tmp})
  local opts = {batch_size = 3, shuffle = true, seed = 42}
  local ref = data.DataLoader(ds, setmetatable({backend = "lua"}, {__index = opts}))
  expect(ref.c == nil)
  expect_eq(#ref, 3)
  local want = epoch_batches(ref, 2)
  expect_eq(fmd.shape_str(want[1][1]), "[3 x 3 x 256 x 256]")
  expect_eq(fmd.shape_str(want[3][1]), "[2 x 3 x 256 x 256]")
  for _, nw in ipairs{0, 1, 2, 3} do
    local L = data.DataLoader(ds, setmetatable({num_workers = nw}, {__index = opts}))
    expect(L.c ~= nil, "C path")
    same_batches(epoch_batches(L, 2), want, nw .. " workers")
  end
  -- labels are a permutation of the data set's
  local n1 = 0
  for _, b in ipairs(want) do n1 = n1 + b[2]:sum():item() end
  expect_eq(n1, 3)
  -- another epoch differs, the same epoch repeats
  local L = data.DataLoader(ds, opts)
  local e3 = epoch_batches(L, 3)
  expect(fmd.max_rel_err(e3[1][1], want[1][1]) > 0.01, "epochs differ")
  same_batches(epoch_batches(L, 3), e3, "repeat")
end)

test("DataLoader: drop_last, no shuffle order, plain Lua data sets", function()
  local ds = data.FacesDataset(root, T.CenterCrop(32))
  local L = data.DataLoader(ds, {batch_size = 3, drop_last = true})
  expect_eq(#L, 2)
  local b = epoch_batches(L, 1)
  expect_eq(#b, 2)
  expect_eq(table.concat(b[2][2]:flat(), ","), "0.0,0.0,1.0")   -- items 4, 5, 6
  expect_near(b[1][1]:select(1, 1), T.CenterCrop(32)(fmd.load_image(ds.paths[1])), 0)
  -- a transform with Lua code runs on the Lua path
  local lam = data.FacesDataset(root, T.Compose{T.Lambda(function(x) return x * 0 end), T.CenterCrop(8)})
  local LL = data.DataLoader(lam, {batch_size = 4})
  expect(LL.c == nil)
  for images in LL:iter() do expect_eq(images:abs():sum():item(), 0) end
  -- any object with #ds and get()
  local plain = setmetatable({}, {__len = function() return 5 end, __index = {
    get = function(_, i, gen) return fmd.full({1, 2, 2}, i + gen:uniform() * 0), i % 2 end}})
  local PL = data.DataLoader(plain, {batch_size = 2})
  local pb = epoch_batches(PL, 1)
  expect_eq(#pb, 3)
  expect_eq(fmd.shape_str(pb[3][1]), "[1 x 1 x 2 x 2]")
  expect_eq(pb[3][1]:max():item(), 5)
end)

test("DataLoader: a broken image raises with its name; early stop; no deadlock", function()
  local broot = tmp .. "/broken/train"
  make_set(broot, 6, 6, 16)
  -- a PNG signature, then garbage: passes the content check, fails to decode
  write(broot .. "/fake/img03.png", "\137PNG\r\n\26\n" .. string.rep("x", 100))
  local ds = data.FacesDataset(broot, T.course("val"))
  for _, nw in ipairs{0, 2} do
    local L = data.DataLoader(ds, {batch_size = 2, num_workers = nw, prefetch = 2})
    local seen = 0
    local err = expect_error(function()
      for images in L:iter(1) do seen = seen + 1 end
    end, "fake/img03.png")
    expect(err:find("bad PNG", 1, true), err)
    expect(seen >= 1 and seen < 6, "batches before the broken one arrive: " .. seen)
    -- early stop, then a fresh epoch works
    for images in L:iter(1) do break end
    local n = 0
    for images in L:iter(1) do n = n + 1; if n == 2 then break end end
    expect_eq(n, 2)
  end
  collectgarbage()
end)

os.execute("rm -rf '" .. tmp .. "'")
