-- The generated face data set: engine/facegen.c, lib/fmd/facegen.lua,
-- scripts/make_faces.lua.
local fmd = require "fmd"
local facegen = require "fmd.facegen"
local C = require "fmd.core"

local S = 64   -- small renders keep the tests quick; the code is size-generic
local small = {size = S}

local function maxdiff(a, b)
  local fa, fb = a:flat(), b:flat()
  assert(#fa == #fb)
  local m = 0
  for i = 1, #fa do m = math.max(m, math.abs(fa[i] - fb[i])) end
  return m
end

local function meandiff(a, b)
  local fa, fb = a:flat(), b:flat()
  local s = 0
  for i = 1, #fa do s = s + math.abs(fa[i] - fb[i]) end
  return s / #fa
end

test("default parameters are exposed and overridable by name", function()
  local p = facegen.params()
  expect_eq(p.size, 256)
  expect_eq(p.strength, 1)
  for _, k in ipairs{"swap_color", "swap_light", "swap_resample", "swap_sharpen", "swap_feather",
                     "swap_misalign", "gan_checker", "gan_smooth", "gan_color", "noise"} do
    expect(type(p[k]) == "number" and p[k] > 0, "parameter " .. k)
  end
  expect_eq(facegen.params{strength = 2}.strength, 2)
  expect_error(function() facegen.params{bogus = 1} end, "unknown parameter 'bogus'")
end)

test("bad arguments give clear errors", function()
  expect_error(function() facegen.render("nope", 1) end, 'kind must be "real", "swap" or "gan"')
  expect_error(function() facegen.render("swap", 1) end, "needs a target seed")
  expect_error(function() facegen.render("real", 1, nil, {bogus = 1}) end, "unknown parameter 'bogus'")
  expect_error(function() facegen.render("real", 1, nil, {size = 8}) end, "size 8 must be in 16..4096")
  expect_error(function() facegen.render("real", 1, nil, {size = 64.5}) end, "size must be an integer")
  expect_error(function() facegen.render("gan", 1, nil, {gan_checker = -1}) end, "gan_checker = -1")
  expect_error(function() facegen.render("real", 1, nil, {noise = "x"}) end, "'noise' must be a number")
  expect_error(function() C.facegen_write({{kind = "real", seed = 1}}) end, "needs a path")
  expect_error(function() facegen.split_counts("nope", 10) end, "unknown data set 'nope'")
end)

test("rendering is deterministic and seeds differ", function()
  for _, kind in ipairs{"real", "swap", "gan"} do
    local a = facegen.render(kind, 11, 12, small)
    local b = facegen.render(kind, 11, 12, small)
    expect_eq(a:size(1), 3); expect_eq(a:size(2), S); expect_eq(a:size(3), S)
    expect_eq(maxdiff(a, b), 0, kind .. " same seed")
    local c = facegen.render(kind, 13, 14, small)
    expect(meandiff(a, c) > 0.02, kind .. " different seeds should differ")
    expect(a:min():item() >= 0 and a:max():item() <= 1, kind .. " in [0, 1]")
  end
end)

test("image seeds are a pure function of (seed, dataset, split, class, index)", function()
  local s = facegen.seed(0, "fakes_dataset", "train", "real", 0)
  expect_eq(facegen.seed(0, "fakes_dataset", "train", "real", 0), s)
  local seen = {[s] = true}
  for _, other in ipairs{
      {1, "fakes_dataset", "train", "real", 0}, {0, "synthetic_dataset", "train", "real", 0},
      {0, "fakes_dataset", "val", "real", 0}, {0, "fakes_dataset", "train", "fake", 0},
      {0, "fakes_dataset", "train", "real", 1}} do
    local t = facegen.seed(table.unpack(other))
    expect(not seen[t], "seed collision for " .. table.concat(other, ","))
    seen[t] = true
  end
end)

test("a swap changes the real target image only inside its blend mask", function()
  for seed = 1, 3 do
    local target = 100 + seed
    local real = facegen.render("real", target, nil, small)
    local fake, mask = facegen.render("swap", seed, target, small)
    local fr, ff, fm = real:flat(), fake:flat(), mask:flat()
    local P = S * S
    local on, outside_diff, inside_diff, n_in = 0, 0, 0, 0
    for i = 1, P do
      local m = fm[i]
      expect(m >= 0 and m <= 1, "mask in [0, 1]")
      local d = 0
      for c = 0, 2 do d = d + math.abs(fr[c * P + i] - ff[c * P + i]) end
      if m == 0 then outside_diff = math.max(outside_diff, d) end
      if m > 0.5 then on = on + 1; inside_diff = inside_diff + d; n_in = n_in + 1 end
    end
    expect_eq(outside_diff, 0, "pixels outside the mask are the real image's")
    expect(on > 0.05 * P and on < 0.6 * P, ("mask covers the inner face (%d of %d px)"):format(on, P))
    expect(inside_diff / n_in > 0.02, "the swapped face differs from the target's")
    -- the mask sits on the face, not at the image border
    for x = 1, S do
      expect_eq(fm[x], 0, "top row unmasked"); expect_eq(fm[(S - 1) * S + x], 0, "bottom row unmasked")
    end
  end
end)

test("the other kinds have an all-zero mask", function()
  local _, m = facegen.render("gan", 3, nil, small)
  expect_eq(m:sum():item(), 0)
  expect_eq(m:size(1), 1)
end)

test("strength 0 removes the generator traces: gan equals the real image", function()
  local real = facegen.render("real", 21, nil, small)
  local gan0 = facegen.render("gan", 21, nil, {size = S, strength = 0})
  expect_eq(maxdiff(real, gan0), 0)
  local gan = facegen.render("gan", 21, nil, small)
  expect(meandiff(real, gan) > 0.003, "default strength leaves traces")
end)

-- |DFT coefficient| at (fy, fx) cycles per image over the rms of the image
local function gray(img, n)
  local f, P, g, m = img:flat(), n * n, {}, 0
  for i = 1, P do g[i] = 0.299 * f[i] + 0.587 * f[P + i] + 0.114 * f[2 * P + i]; m = m + g[i] end
  for i = 1, P do g[i] = g[i] - m / P end
  return g
end
local function peak(g, n, fy, fx)
  local re, im, e = 0, 0, 0
  for y = 0, n - 1 do
    for x = 0, n - 1 do
      local v, a = g[y * n + x + 1], 2 * math.pi * (fy * y + fx * x) / n
      re = re + v * math.cos(a); im = im + v * math.sin(a); e = e + v * v
    end
  end
  return math.sqrt(re * re + im * im) / math.sqrt(e)
end
local function best(g, n, freqs)
  local b = 0
  for _, f in ipairs(freqs) do b = math.max(b, peak(g, n, f[1], f[2])) end
  return b
end

test("synthetic fakes carry periodic spectral peaks that real images lack", function()
  local n = 128
  local periodic = {{n / 2, n / 2}, {0, n / 2}, {n / 2, 0}, {n / 4, n / 4}, {0, n / 4}, {n / 4, 0}}
  local control = {{n / 2 - 3, n / 2 - 5}, {7, n / 2 - 3}, {n / 2 - 9, 2}, {n / 4 + 3, n / 4 - 2},
                   {5, n / 4 + 3}, {n / 4 - 5, 7}}
  for seed = 1, 3 do
    local r = gray(facegen.render("real", seed, nil, {size = n}), n)
    local g = gray(facegen.render("gan", seed, nil, {size = n}), n)
    local gp, gc, rp = best(g, n, periodic), best(g, n, control), best(r, n, periodic)
    expect(gp > 2.5, ("gan seed %d: periodic peak %.2f"):format(seed, gp))
    expect(gp > 4 * gc, ("gan seed %d: peak %.2f vs control %.2f"):format(seed, gp, gc))
    expect(rp < 1.5 and gp > 2.5 * rp, ("seed %d: real %.2f vs gan %.2f"):format(seed, rp, gp))
  end
end)

test("swapped faces and synthetic images are smoother than camera images", function()
  -- mean |horizontal second difference| on the face area: the sensor noise
  -- and skin texture that the fakes lose
  local function hf(img, mask)
    local f, P, s, k = img:flat(), S * S, 0, 0
    local fm = mask and mask:flat()
    for y = 0, S - 1 do
      for x = 1, S - 2 do
        local i = y * S + x + 1
        if not fm or fm[i] > 0.99 then
          for c = 0, 2 do
            local o = c * P + i
            s = s + math.abs(f[o - 1] - 2 * f[o] + f[o + 1]); k = k + 1
          end
        end
      end
    end
    return s / k
  end
  local lower_swap, lower_gan = 0, 0
  for seed = 1, 8 do
    local target = 300 + seed
    local real = facegen.render("real", target, nil, small)
    local fake, mask = facegen.render("swap", seed, target, small)
    if hf(fake, mask) < hf(real, mask) then lower_swap = lower_swap + 1 end
    -- (without the checkerboard, which adds its own high frequencies)
    local gan = facegen.render("gan", target, nil, {size = S, gan_checker = 0})
    if hf(gan) < hf(real) then lower_gan = lower_gan + 1 end
  end
  expect(lower_swap >= 7, ("swaps smoother in %d of 8"):format(lower_swap))
  expect(lower_gan >= 7, ("gan images smoother in %d of 8"):format(lower_gan))
end)

-- a fresh empty directory under /tmp
local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  return p
end

local function file_bytes(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function remove_tree(root, jobs, dirs)
  for _, j in ipairs(jobs) do os.remove(j.path) end
  for i = #dirs, 1, -1 do os.remove(dirs[i]) end
  for _, d in ipairs{"fakes_dataset", "synthetic_dataset"} do
    for _, s in ipairs{"train", "val", "test"} do os.remove(root .. "/" .. d .. "/" .. s) end
    os.remove(root .. "/" .. d)
  end
  os.remove(root)
end

test("a tiny generated set has the course layout, counts and contents", function()
  local root = tmpdir()
  local sizes = {train = 6, val = 3, test = 3}
  local jobs, dirs = facegen.plan{out = root, seed = 5, sizes = sizes}
  local ok, err = pcall(function()
    expect_eq(facegen.generate{out = root, seed = 5, sizes = sizes, size = S}, 24)
    -- counts per folder: fakes_dataset 2 real : 1 fake, synthetic 1 : 1
    local want = {
      fakes_dataset = {train = {4, 2}, val = {2, 1}, test = {2, 1}},
      synthetic_dataset = {train = {3, 3}, val = {2, 1}, test = {2, 1}},
    }
    for ds, splits in pairs(want) do
      for split, n in pairs(splits) do
        expect_eq(C.facegen_prepare_dir(("%s/%s/%s/real"):format(root, ds, split)), n[1], ds .. split .. " real")
        expect_eq(C.facegen_prepare_dir(("%s/%s/%s/fake"):format(root, ds, split)), n[2], ds .. split .. " fake")
      end
    end
    expect(file_bytes(root .. "/fakes_dataset/train/real/real_00003.png"), "real_00003.png exists")
    expect(file_bytes(root .. "/fakes_dataset/train/fake/fake_00001.png"), "fake_00001.png exists")
    -- the files hold what render() gives for the job's seeds (8-bit rounded);
    -- fake i of fakes_dataset is swapped into real image i
    local img = fmd.load_image(root .. "/fakes_dataset/val/fake/fake_00000.png")
    expect_eq(img:size(2), S)
    local want_img = facegen.render("swap", facegen.seed(5, "fakes_dataset", "val", "fake", 0),
                                    facegen.seed(5, "fakes_dataset", "val", "real", 0), small)
    expect(maxdiff(img, want_img) <= 0.5 / 255 + 1e-6, "fake file = render of its seeds")
    img = fmd.load_image(root .. "/synthetic_dataset/test/fake/fake_00000.png")
    want_img = facegen.render("gan", facegen.seed(5, "synthetic_dataset", "test", "fake", 0), nil, small)
    expect(maxdiff(img, want_img) <= 0.5 / 255 + 1e-6, "gan file = render of its seed")
    -- generating again refuses to mix with existing files, --force replaces
    expect_error(function() facegen.generate{out = root, seed = 5, sizes = sizes, size = S} end,
                 "fakes_dataset already exists; use --force")
    expect(not C.sys.is_dir(root .. "/fakes_dataset.partial"), "no staging folder left")
    -- the bytes do not depend on the thread count
    local before = file_bytes(root .. "/synthetic_dataset/train/fake/fake_00002.png")
    local nth = fmd.get_num_threads()
    fmd.set_num_threads(1)
    -- leftovers of an interrupted run in the staging folder are cleared
    C.sys.mkdir(root .. "/synthetic_dataset.partial/train/real")
    local f = assert(io.open(root .. "/synthetic_dataset.partial/train/real/junk.png", "wb"))
    f:write("x"); f:close()
    local ok2, err2 = pcall(facegen.generate, {out = root, seed = 5, sizes = sizes, size = S, force = true})
    fmd.set_num_threads(nth)
    assert(ok2, err2)
    expect(before == file_bytes(root .. "/synthetic_dataset/train/fake/fake_00002.png"),
           "same bytes with 1 thread")
    expect_eq(C.facegen_prepare_dir(root .. "/synthetic_dataset/train/real"), 3, "junk not carried over")
    expect(not C.sys.is_dir(root .. "/synthetic_dataset.partial"), "staging folder renamed")
  end)
  remove_tree(root, jobs, dirs)
  assert(ok, err)
end)

test("the default plan matches the documented sizes", function()
  local jobs = facegen.plan{out = "x", seed = 0}
  local count = {}
  for _, j in ipairs(jobs) do
    local k = j.dataset .. "/" .. j.split .. "/" .. j.class
    count[k] = (count[k] or 0) + 1
    expect(j.path == ("x/%s/%s/%s/%s_%05d.png"):format(j.dataset, j.split, j.class, j.class, j.index - 1))
  end
  expect_eq(count["fakes_dataset/train/real"], 400); expect_eq(count["fakes_dataset/train/fake"], 200)
  expect_eq(count["fakes_dataset/val/real"], 100); expect_eq(count["fakes_dataset/val/fake"], 50)
  expect_eq(count["fakes_dataset/test/real"], 100); expect_eq(count["fakes_dataset/test/fake"], 50)
  expect_eq(count["synthetic_dataset/train/real"], 300); expect_eq(count["synthetic_dataset/train/fake"], 300)
  expect_eq(count["synthetic_dataset/val/fake"], 75); expect_eq(count["synthetic_dataset/test/real"], 75)
  expect_eq(#facegen.plan{out = "x", only = "synthetic_dataset"}, 900)
  expect_error(function() facegen.plan{only = "nope"} end, "unknown data set 'nope'")
end)

test("make_faces.lua: --help and errors for bad flags", function()
  local exe = arg and arg[-1]
  if not exe then return end
  local function run(args)
    local p = io.popen(exe .. " scripts/make_faces.lua " .. args .. " 2>&1")
    local out = p:read("a")
    local _, _, code = p:close()
    return out, code
  end
  local out, code = run("--help")
  expect_eq(code, 0)
  expect(out:find("--train N", 1, true) and out:find("synthetic_dataset", 1, true), "help text")
  out, code = run("--bogus")
  expect(code ~= 0 and out:find("unknown option '--bogus'", 1, true), out)
  out, code = run("--train")
  expect(code ~= 0 and out:find("--train needs a value", 1, true), out)
  out, code = run("--val 1.5")
  expect(code ~= 0 and out:find("--val needs an integer", 1, true), out)
  out, code = run("--test -3")
  expect(code ~= 0 and out:find("--test must be >= 0", 1, true), out)
  out, code = run("--only everything")
  expect(code ~= 0 and out:find("--only must be fakes_dataset or synthetic_dataset", 1, true), out)
  out, code = run("--strength x")
  expect(code ~= 0 and out:find("--strength needs a number", 1, true), out)
end)
