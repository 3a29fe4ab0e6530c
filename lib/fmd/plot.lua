-- fmd.plot: figures as PNG files, drawn by gnuplot (terminal pngcairo:
-- anti-aliased lines, DejaVu Sans) and driven from Lua as Torch7's gnuplot
-- package did: the data and a script go to a temporary folder, gnuplot
-- writes <path>.tmp, which is renamed to path when complete.
--
--   local plot = require "fmd.plot"
--   plot.lines("loss.png", {{x = {1, 2, 3}, y = {0.9, 0.5, 0.4}, title = "train"}},
--              {title = "Loss", xlabel = "Epoch", ylabel = "Loss"})
--   plot.roc("roc.png", {{fpr = fpr, tpr = tpr, title = "AUC = 0.91"}})
--   plot.det("det.png", {{fpr = fpr, fnr = fnr, title = "model"}})
--   plot.pr("pr.png", {{recall = r, precision = p, title = "AP = 0.9"}})
--   plot.images("grid.png", {{image = img, title = "real"}, ...}, {cols = 4})
--
-- Every function returns path. $FMD_GNUPLOT names the gnuplot program
-- (default: gnuplot on PATH).
local fmd = require "fmd"
local image = require "fmd.image"
local plot = {}

plot.COLORS = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"}
local FONT = "DejaVu Sans"

--------------------------------------------------------------- running it

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
-- a gnuplot string literal (single quotes: no escapes but '' for ')
local function gq(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end
plot.quote = gq

local function gnuplot_program()
  local exe = os.getenv("FMD_GNUPLOT")
  if exe == nil or exe == "" then exe = "gnuplot" end
  local found = os.execute("command -v " .. shell_quote(exe) .. " >/dev/null 2>&1")
  if not found then
    error(("fmd.plot: gnuplot not found%s; install it with: apt-get install gnuplot-nox")
      :format(exe ~= "gnuplot" and (" (FMD_GNUPLOT=" .. exe .. ")") or ""), 0)
  end
  return exe
end

local function tmpdir()
  local base = os.tmpname()
  os.remove(base)
  if not fmd.sys.mkdir(base) and not fmd.sys.is_dir(base) then error("fmd.plot: cannot make a temporary folder " .. base, 0) end
  return base
end

local cwd
-- gnuplot runs in the temporary folder: give it absolute names
local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  if not cwd then
    local p = io.popen("pwd")
    cwd = p:read("l"); p:close()
  end
  return cwd .. "/" .. path
end

local function check_path(fn, path)
  if type(path) ~= "string" or path == "" then error(("plot.%s: expected a file name for the PNG, got %s"):format(fn, tostring(path)), 3) end
end

-- runs the script lines (after the terminal/output lines) in a temp dir
-- that `prepare(dir)` fills; returns path
local function render(fn, path, size, lines, prepare)
  local exe = gnuplot_program()
  local dir = tmpdir()
  local ok, err = pcall(function()
    if prepare then prepare(dir) end
    local out = absolute(path) .. ".tmp"
    local head = {
      ("set terminal pngcairo size %d,%d noenhanced font %s linewidth 1.4"):format(size[1], size[2], gq(FONT .. ",11")),
      "set output " .. gq(out),
      "set encoding utf8",
    }
    local f = assert(io.open(dir .. "/plot.gp", "w"))
    f:write(table.concat(head, "\n"), "\n", table.concat(lines, "\n"), "\nunset output\n")
    f:close()
    local okx = os.execute(("cd %s && %s plot.gp > gnuplot.log 2>&1"):format(shell_quote(dir), shell_quote(exe)))
    if not okx then
      os.remove(out)
      local lf = io.open(dir .. "/gnuplot.log")
      local msg = lf and lf:read("a") or ""
      if lf then lf:close() end
      msg = msg:gsub("%s+$", ""):gsub("\n", " | ")
      error(("plot.%s: gnuplot failed writing %s: %s"):format(fn, path, msg ~= "" and msg:sub(1, 400) or "no message"), 0)
    end
    local renamed, e = os.rename(out, path)
    if not renamed then os.remove(out); error(("plot.%s: cannot write %s: %s"):format(fn, path, tostring(e)), 0) end
  end)
  os.execute("rm -rf " .. shell_quote(dir))
  if not ok then error(err, 0) end
  return path
end

--------------------------------------------------------------- line plots

local function values(fn, what, v)
  if fmd.is_tensor(v) then
    if v:dim() ~= 1 then error(("plot.%s: %s must be 1-D, got %s"):format(fn, what, fmd.shape_str(v)), 4) end
    return v:totable()
  end
  if type(v) ~= "table" then error(("plot.%s: %s must be a Lua array or a 1-D tensor, got %s"):format(fn, what, type(v)), 4) end
  return v
end

local function write_xy(fn, file, x, y, i)
  x, y = values(fn, ("series %d x"):format(i), x), values(fn, ("series %d y"):format(i), y)
  if #x ~= #y then error(("plot.%s: series %d has %d x values but %d y values"):format(fn, i, #x, #y), 3) end
  if #x == 0 then error(("plot.%s: series %d is empty"):format(fn, i), 3) end
  local f = assert(io.open(file, "w"))
  for k = 1, #x do
    local a, b = x[k], y[k]
    if type(a) ~= "number" or type(b) ~= "number" then
      f:close()
      error(("plot.%s: series %d point %d is not a pair of numbers"):format(fn, i, k), 3)
    end
    -- gnuplot reads NaN as a gap in the line
    f:write(a ~= a and "NaN" or ("%.17g"):format(a), " ", b ~= b and "NaN" or ("%.17g"):format(b), "\n")
  end
  f:close()
end

-- entries: how many lines the key has (for the room a key below the axes takes)
local function axis_lines(opts, entries)
  local L = {}
  if opts.title then L[#L + 1] = ("set title %s font %s"):format(gq(opts.title), gq(FONT .. ",13")) end
  if opts.xlabel then L[#L + 1] = "set xlabel " .. gq(opts.xlabel) end
  if opts.ylabel then L[#L + 1] = "set ylabel " .. gq(opts.ylabel) end
  if opts.xrange then L[#L + 1] = ("set xrange [%.17g:%.17g]"):format(opts.xrange[1], opts.xrange[2]) end
  if opts.yrange then L[#L + 1] = ("set yrange [%.17g:%.17g]"):format(opts.yrange[1], opts.yrange[2]) end
  if opts.logx then L[#L + 1] = "set logscale x" end
  if opts.logy then L[#L + 1] = "set logscale y" end
  if type(opts.xtics) == "number" then L[#L + 1] = ("set xtics %.17g"):format(opts.xtics)
  elseif type(opts.xtics) == "table" then
    local t = {}
    for _, v in ipairs(opts.xtics) do
      if type(v) == "table" then t[#t + 1] = ("%s %.17g"):format(gq(v[1]), v[2]) else t[#t + 1] = ("%.17g"):format(v) end
    end
    L[#L + 1] = "set xtics (" .. table.concat(t, ", ") .. ")"
  end
  if opts.grid ~= false then
    L[#L + 1] = "set grid xtics ytics mxtics mytics lc rgb '#dddddd' lw 1, lc rgb '#f0f0f0' lw 1"
    L[#L + 1] = "set mxtics; set mytics"
  end
  L[#L + 1] = "set border lc rgb '#444444'"
  L[#L + 1] = ("set key %s opaque box lc rgb '#bbbbbb' samplen 2.5 spacing 1.2"):format(opts.key or "top right")
  -- gnuplot's automatic margin puts a key below the axes over the x label;
  -- a vertical key there takes one line per entry
  local key = opts.key or ""
  if key:find("below", 1, true) then
    L[#L + 1] = ("set bmargin %d"):format(key:find("vertical", 1, true) and 5 + (entries or 1) or 6)
  end
  for _, m in ipairs(opts.marker or {}) do
    L[#L + 1] = ("set label %s at %.17g,%.17g point pt 7 ps 1.8 lc rgb '#000000' offset 1,1 front")
      :format(gq(m.label or ""), m.x, m.y)
  end
  for _, m in ipairs(opts.labels or {}) do
    L[#L + 1] = ("set label %s at %.17g,%.17g %s offset %s font %s textcolor rgb '#333333' front")
      :format(gq(m.label or ""), m.x, m.y, m.align == "right" and "right" or "left", m.offset or "1.2,0.6", gq(FONT .. ",9"))
  end
  return L
end

local function series_clause(file, s, i, using)
  local style = s.style or "lines"
  local color = s.color or plot.COLORS[(i - 1) % #plot.COLORS + 1]
  local parts = {gq(file), "using " .. (using or "1:2"), "with " .. style,
                 ("lc rgb %s lw %s"):format(gq(color), s.width or 2)}
  if style == "linespoints" or style == "points" then parts[#parts + 1] = ("pt %d ps %s"):format(s.pt or 7, s.ps or 1) end
  if s.dash then parts[#parts + 1] = "dt 2" end
  parts[#parts + 1] = s.title and ("title " .. gq(s.title)) or "notitle"
  return table.concat(parts, " ")
end

-- generic x/y plot: series = list of {x=, y=, title=, style=, color=, dash=, width=}
local function draw(fn, path, series, opts, extra, using, after)
  check_path(fn, path)
  opts = opts or {}
  if type(series) ~= "table" or #series == 0 then error(("plot.%s: expected a non-empty list of series"):format(fn), 3) end
  local clauses = {}
  for i, s in ipairs(series) do clauses[i] = series_clause(("s%d.dat"):format(i), s, i, using) end
  for _, c in ipairs(after or {}) do clauses[#clauses + 1] = c end
  local entries = #(after or {})
  for _, s in ipairs(series) do if s.title then entries = entries + 1 end end
  local lines = axis_lines(opts, entries)
  for _, l in ipairs(extra or {}) do lines[#lines + 1] = l end
  lines[#lines + 1] = "plot " .. table.concat(clauses, ", \\\n     ")
  return render(fn, path, opts.size or {800, 560}, lines, function(dir)
    for i, s in ipairs(series) do write_xy(fn, ("%s/s%d.dat"):format(dir, i), s.x, s.y, i) end
  end)
end

-- series = list of {x =, y =, title =, style = "lines"|"linespoints"|"points",
-- color = "#rrggbb", dash = bool, width = n}; opts: title, xlabel, ylabel,
-- xrange/yrange = {lo, hi}, logx, logy, xtics (step, or a list of values or
-- {label, value}), key ("top right", "bottom right", ...), grid (default
-- true), size = {w, h} (default 800 x 560), marker = list of {x=, y=, label=}
-- (a large point, labelled), labels = list of {x=, y=, label=, offset = "dx,dy"
-- in characters (default "1.2,0.6"), align = "left" (text starts at the
-- point, default) or "right" (text ends there)} (text only)
function plot.lines(path, series, opts) return draw("lines", path, series, opts) end

local function relabel(curves, fx, fy)
  local out = {}
  for i, c in ipairs(curves) do
    out[i] = {x = c[fx], y = c[fy], title = c.title, color = c.color, dash = c.dash, style = c.style, width = c.width}
  end
  return out
end

local function defaults(opts, d)
  local o = {}
  for k, v in pairs(d) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  return o
end

-- the key of ROC and DET curves: below the axes, one entry a line. Inside
-- it would hide a curve: a score worse than chance runs along the ROC's
-- bottom right and through the DET's top right.
local KEY_BELOW = "below center vertical Left reverse"

-- ROC: curves = list of {fpr =, tpr =, title =}; the chance diagonal dashed
function plot.roc(path, curves, opts)
  opts = defaults(opts, {xlabel = "False positive rate", ylabel = "True positive rate", xrange = {0, 1},
                         yrange = {0, 1.0001}, key = KEY_BELOW, size = {760, 740}})
  return draw("roc", path, relabel(curves, "fpr", "tpr"), opts, {"set size ratio -1"}, nil,
    {"x with lines dt 2 lc rgb '#888888' lw 1.2 title 'chance'"})
end

-- precision-recall: curves = list of {recall =, precision =, title =};
-- opts.baseline: the share of positives (a random detector's precision)
function plot.pr(path, curves, opts)
  opts = defaults(opts, {xlabel = "Recall (true positive rate)", ylabel = "Precision", xrange = {0, 1},
                         yrange = {0, 1.02}, key = "bottom left", size = {760, 680}})
  local after
  if opts.baseline then
    after = {("%.17g with lines dt 2 lc rgb '#888888' lw 1.2 title %s"):format(opts.baseline,
      gq(("chance (%.3f)"):format(opts.baseline)))}
  end
  return draw("pr", path, relabel(curves, "recall", "precision"), opts, {"set size ratio -1"}, nil, after)
end

-- DET on normal-deviate axes (as scikit-learn's DetCurveDisplay): x =
-- probit(fpr), y = probit(fnr), ticks 0.1 % ... 99.9 %; rates of 0 or 1 are
-- drawn at the edge of the axes. curves = list of {fpr =, fnr =, title =}
function plot.det(path, curves, opts)
  local ticks = {0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99, 0.999}
  local labels = {"0.1%%", "1%%", "5%%", "20%%", "50%%", "80%%", "95%%", "99%%", "99.9%%"}   -- tic labels are formats
  local t = {}
  for i, p in ipairs(ticks) do t[i] = ("%s invnorm(%g)"):format(gq(labels[i]), p) end
  local lim = 3.2   -- a little beyond the 0.1 % / 99.9 % ticks (+-3.09)
  opts = defaults(opts, {xlabel = "False positive rate", ylabel = "False negative rate", key = KEY_BELOW,
                         size = {760, 740}, grid = false})
  local extra = {
    ("clip(p) = invnorm(p < %.10g ? %.10g : (p > %.10g ? %.10g : p))"):format(0.0005, 0.0005, 0.9995, 0.9995),
    ("lim = %g"):format(lim),
    "set xrange [-lim:lim]; set yrange [-lim:lim]",
    "set xtics (" .. table.concat(t, ", ") .. ")",
    "set ytics (" .. table.concat(t, ", ") .. ")",
    "set grid xtics ytics lc rgb '#dddddd' lw 1",
    "set size ratio -1",
  }
  return draw("det", path, relabel(curves, "fpr", "fnr"), opts, extra, "(clip($1)):(clip($2))")
end

------------------------------------------------------------- image panels

-- the font size (at most max, at least min) at which text fits in width
-- pixels: a long title shrinks rather than being clipped at the edges
-- (DejaVu Sans averages about 0.65 em per character)
local function fit_font(text, width, max, min)
  if not text or #text == 0 then return max end
  return math.max(min, math.min(max, math.floor(width / (0.68 * (utf8.len(text) or #text)))))
end

-- gnuplot's "set palette defined" of image.colormap(name): 65 samples,
-- exact for jet (piecewise linear with knots at multiples of 1/8) and gray,
-- so a colour bar shows the very colours of the panels
local function palette(name)
  local n = 64
  local v = {}
  for k = 0, n do v[k + 1] = k / n end
  local ok, c = pcall(image.colormap, fmd.tensor({v}), name)
  if not ok then error("plot.images: colorbar: " .. tostring(c):gsub("^image%.colormap: ", ""), 3) end
  local stops = {}
  for k = 0, n do
    local rgb = {}
    for ch = 1, 3 do rgb[ch] = math.floor(c[ch][1][k + 1] * 255 + 0.5) end
    stops[k + 1] = ("%.6f '#%02x%02x%02x'"):format(k / n, rgb[1], rgb[2], rgb[3])
  end
  return "set palette defined (" .. table.concat(stops, ", ") .. ")"
end

local COLORBAR_W = 110   -- pixels right of the panels: the bar, its tics and label

-- panels = list of {image = (3,H,W) in [0, 1] or an (H,W) map (drawn
-- gray), title = "..."}; opts: cols (default ceil(sqrt(n))), title (of the
-- figure), panel_size (pixels of a panel's longer side, default 256),
-- font_size (panel titles; default by panel size), colorbar = {label =
-- "what the values are", map = "jet" or "gray" (the colour map the heat
-- maps were drawn with, default jet), range = {lo, hi} (default {0, 1}),
-- tics = step (default 0.2 of the range)}: one colour bar right of the
-- panels, for the heat maps they share
function plot.images(path, panels, opts)
  check_path("images", path)
  opts = opts or {}
  if type(panels) ~= "table" or #panels == 0 then error("plot.images: expected a non-empty list of panels", 2) end
  local n = #panels
  local cols = math.min(opts.cols or math.ceil(math.sqrt(n)), n)
  local rows = math.ceil(n / cols)
  local ps = opts.panel_size or 256
  local rgb = {}
  local aspect = 1
  for i, p in ipairs(panels) do
    local img = type(p) == "table" and not fmd.is_tensor(p) and p.image or p
    local ok, t = pcall(image.rgb, img)
    if not ok then error(("plot.images: panel %d: %s"):format(i, tostring(t):gsub("^image: ", "")), 2) end
    rgb[i] = t
    if i == 1 then aspect = t:size(2) / t:size(3) end
  end
  local fs = opts.font_size or (ps < 200 and 9 or (ps < 300 and 11 or 12))
  local title_h = math.floor(fs * 2.2)
  local top = opts.title and 42 or 6
  local pw, ph = ps, math.floor(ps * aspect + 0.5)
  local cb = opts.colorbar
  local range = cb and (cb.range or {0, 1})
  if cb and not (type(range) == "table" and type(range[1]) == "number" and type(range[2]) == "number" and range[1] < range[2]) then
    error("plot.images: colorbar.range must be {lo, hi} with lo < hi", 2)
  end
  local right = cb and COLORBAR_W or 0
  local W, H = cols * (pw + 8) + 8 + right, top + rows * (ph + title_h + 8)
  local lines = {
    "unset key; unset tics; unset border; unset colorbox",
    ("set multiplot layout %d,%d%s margins %.6f,%.6f,%.6f,%.6f spacing %.6f,%.6f"):format(rows, cols,
      opts.title and (" title " .. gq(opts.title) .. " font " .. gq(FONT .. "," .. fit_font(opts.title, W - 16, 14, 8))) or "",
      4 / W, 1 - (4 + right) / W, 4 / H, 1 - top / H, 8 / W, (title_h + 8) / H),
  }
  for i, p in ipairs(panels) do
    local t = rgb[i]
    local title = type(p) == "table" and p.title or nil
    lines[#lines + 1] = ("set title %s font %s offset 0,-0.6"):format(gq(title or ""),
      gq(FONT .. "," .. fit_font(title, pw, fs, 7)))
    lines[#lines + 1] = ("set xrange [-0.5:%d.5]; set yrange [-0.5:%d.5]; set size ratio -1"):format(t:size(3) - 1, t:size(2) - 1)
    local bar = ""
    if cb and i == n then
      -- the bar spans the panels' images, from the last row's bottom to the
      -- first row's top; an invisible palette-coloured line makes gnuplot draw it
      local lo, hi = range[1], range[2]
      lines[#lines + 1] = palette(cb.map or "jet")
      lines[#lines + 1] = ("set cbrange [%.17g:%.17g]; set cbtics %.17g scale 0.6 font %s"):format(lo, hi,
        cb.tics or (hi - lo) / 5, gq(FONT .. ",10"))
      lines[#lines + 1] = ("set colorbox vertical user origin screen %.6f, screen %.6f size screen %.6f, screen %.6f border"):format(
        (W - right + 6) / W, 6 / H, 18 / W, (H - top - title_h - 10) / H)
      lines[#lines + 1] = ("set cblabel %s font %s offset -0.5,0"):format(gq(cb.label or ""), gq(FONT .. ",11"))
      bar = (", NaN with lines lc palette cb %.17g notitle"):format(lo)
    end
    lines[#lines + 1] = ("plot 'p%d.png' binary filetype=png with rgbimage%s"):format(i, bar)
  end
  lines[#lines + 1] = "unset multiplot"
  return render("images", path, {W, H}, lines, function(dir)
    for i, t in ipairs(rgb) do fmd.save_image(("%s/p%d.png"):format(dir, i), t) end
  end)
end

return plot
