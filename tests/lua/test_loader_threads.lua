-- The threaded loader leaves no thread behind: after a full epoch, a
-- `break` out of the loop, an error raised in the loop body, and a loader
-- dropped mid-epoch and collected, the process has as many threads as it
-- had before the loader started (counted in /proc/self/task).
local fmd = require "fmd"
local data = require "fmd.data"
local transforms = require "fmd.transforms"

-- threads of this process (not of the `ls` that lists them)
local pid = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
local function threads()
  local n = 0
  local p = io.popen("ls /proc/" .. pid .. "/task")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

local root = os.tmpname()
os.remove(root)
for _, c in ipairs{"real", "fake"} do
  fmd.sys.mkdir(root .. "/" .. c)
  for i = 1, 8 do fmd.save_image(("%s/%s/%d.png"):format(root, c, i), fmd.rand(3, 24, 24)) end
end
local ds = data.FacesDataset(root, transforms.Compose{transforms.Resize(32, 32), transforms.ToTensor()})
local function loader() return data.DataLoader(ds, {batch_size = 2, shuffle = true, num_workers = 2, seed = 0}) end

-- the compute pool starts its threads on first use: count after it
local _ = (fmd.randn(64, 64):matmul(fmd.randn(64, 64))):sum()
collectgarbage(); collectgarbage()
local base = threads()

test("workers run during an epoch and are gone after it", function()
  local during
  for images in loader():iter(1) do during = during or threads(); local _ = images end
  expect(during > base, ("no loader threads seen during the epoch (%d, before %d)"):format(during, base))
  expect_eq(threads(), base, "threads after a full epoch")
end)

test("a break out of the loop stops the workers", function()
  for _ in loader():iter(1) do break end
  expect_eq(threads(), base, "threads after break")
end)

test("an error in the loop body stops the workers", function()
  local ok, err = pcall(function()
    for _ in loader():iter(1) do error("stop here", 0) end
  end)
  expect(not ok and err == "stop here", tostring(err))
  expect_eq(threads(), base, "threads after an error")
end)

test("a loader dropped mid-epoch is stopped when collected", function()
  local dl = loader()
  local it, st, ctl = dl:iter(1)
  it(st, ctl)                       -- one batch, then the loop is abandoned
  dl, it, st, ctl = nil, nil, nil, nil
  collectgarbage(); collectgarbage()
  expect_eq(threads(), base, "threads after collecting an abandoned loader")
end)

os.execute("rm -rf '" .. root .. "'")
