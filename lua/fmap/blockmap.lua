--- fmap.blockmap: a picture of every block of a file, coloured by kind.
--
--     local blockmap = require "fmap.blockmap"
--     assert(blockmap.write(bf, "map.png"))   -- or "map.svg"
--
-- The blocks are read through the classifiers of `fmap.classify`: the
-- control block, free blocks, the tail never allocated, each registered
-- structure's blocks by kind, and `unknown` for blocks no classifier
-- claims. Blocks go left to right, top to bottom, in file order, one cell
-- each (in files of more than `MAX_CELLS` blocks, a cell stands for
-- several blocks and shows the kind most of them have). Above the grid: the
-- file's path and figures (`classify.figures`: size, blocks, free share,
-- free runs, fragmentation) and a legend with the blocks of each kind.
-- PNG is written by `fmap.png` (pure Lua), SVG as text; an SVG cell's
-- tooltip names its blocks, kind and owner.
local classify = require "fmap.classify"
local png = require "fmap.png"
local argcheck = require "fmap.argcheck"
local cli = require "fmap.cli"
local argerror = argcheck.argerror

local M = {}

--- Cells at most in one picture; beyond, a cell stands for several blocks.
M.MAX_CELLS = 512 * 1024
--- Widest grid, in pixels, before cells shrink.
M.GRID_WIDTH = 1024

local MARGIN = 8
local BG, INK, GAP = "#ffffff", "#202020", "#ffffff"

local function human (n)
  local units = { "B", "KiB", "MiB", "GiB", "TiB" }
  local i, x = 1, n
  while x >= 1024 and i < #units do
    x = x / 1024
    i = i + 1
  end
  if i == 1 then return string.format("%d B", n) end
  return string.format("%.1f %s", x, units[i])
end

local function is_scan (src)
  return type(src) == "table" and src.kind ~= nil and src.block_size ~= nil
end

-- The scan of a BlockFile, or the scan itself.
-- (fname names the function the user called; up counts the frames of
-- this module between that function's and the user's, 0 when none, so
-- that errors name the user's line. png, svg and layout take them as
-- _fname and _up, which help leaves out.)
local function scan_of (src, opts, fname, up)
  if is_scan(src) then return src end
  local bs, why = classify._block_size_of(src, "BlockFile or scan")
  if not bs then argerror(1, fname, why, 3 + (up or 0)) end
  return classify.scan(src, opts and opts.scan)
end

--- The shape of the picture of a scan: how blocks map to cells.
-- @param r a scan (`classify.scan`)
-- @param opts optional `{cols = n, cell = pixels}` to override the choice
-- @return `{cols, rows, cell, gap, per_cell, cells, kinds = {[i] = kind}}`:
--   cell i (0-based) shows blocks i*per_cell .. (i+1)*per_cell-1
function M.layout (r, opts, _fname, _up)
  local fname, up = _fname, _up
  opts = opts or {}
  local function check (name, max)
    local v = opts[name]
    if v ~= nil and (math.type(v) ~= "integer" or v < 1 or v > max) then
      argerror(2, fname or "layout", string.format("option '%s' must be an "
               .. "integer from 1 to %d, got %s", name, max, tostring(v)),
               3 + (up or 0))
    end
  end
  check("cols", 4096)
  check("cell", 64)
  local n = math.max(r.blocks, 1)
  local per_cell = (n + M.MAX_CELLS - 1) // M.MAX_CELLS
  local cells = (n + per_cell - 1) // per_cell
  local cols = opts.cols
  if not cols then
    cols = 32
    while cols < 512 and cols * cols < 2 * cells do cols = cols * 2 end
  end
  local rows = (cells + cols - 1) // cols
  local cell = opts.cell or math.max(1, math.min(12, M.GRID_WIDTH // cols))
  local gap = cell >= 4 and 1 or 0
  local kinds = {}
  if per_cell == 1 then
    for i = 0, cells - 1 do kinds[i] = r.kind[i] end
  else
    for i = 0, cells - 1 do
      local count, best, bestn = {}, nil, 0
      for b = i * per_cell, math.min((i + 1) * per_cell, r.blocks) - 1 do
        local k = r.kind[b]
        local c = (count[k] or 0) + 1
        count[k] = c
        if c > bestn then best, bestn = k, c end
      end
      kinds[i] = best
    end
  end
  return { cols = cols, rows = rows, cell = cell, gap = gap,
           per_cell = per_cell, cells = cells, kinds = kinds }
end

-- The text above the grid: lines, and the legend's entries.
local function captions (r)
  local f = classify.figures(r)
  local lines = {
    string.format("%s", r.path or "(anonymous BlockFile)"),
    string.format("size %s, %d blocks of %d bytes", human(f.size),
                  f.blocks, f.block_size),
    string.format("free %d blocks (%.1f%%) in %d run%s, largest %d; "
                  .. "fragmentation %.2f", f.free_blocks,
                  100 * f.free_share, f.free_runs,
                  f.free_runs == 1 and "" or "s", f.largest_free_run,
                  f.fragmentation),
  }
  local legend = {}
  for i, k in ipairs(classify._counted_kinds(r)) do
    legend[i] = { kind = k, count = r.counts[k] }
  end
  for _, e in ipairs(legend) do
    local kd = classify.KINDS[e.kind] or classify.kind(e.kind)
    e.label = kd.label
    e.color = kd.color
    e.text = string.format("%s: %d", kd.label, e.count)
  end
  return lines, legend
end

-- What png and svg draw: the scan of src, its layout and its captions
-- (lines, legend). fname and up are png's or svg's, as scan_of takes
-- them: errors name the line that called png or svg.
local function picture (src, opts, fname, up)
  local r = scan_of(src, opts, fname, up + 1)
  return r, M.layout(r, opts, fname, up + 2), captions(r)
end

--- Draws a file's block map as PNG.
-- @param src a BlockFile (scanned with `classify.scan`) or a scan
-- @param opts optional: `cols`, `cell` (see `layout`), `scan` (options of
--   `classify.scan`)
-- @return the PNG's bytes, the scan, and where the grid is: `{x, y,
--   pitch, cols, per_cell, palette, width, height}` (cell i's top left
--   pixel is at x + (i % cols) * pitch, y + (i // cols) * pitch)
function M.png (src, opts, _fname, _up)
  local r, L, lines, legend = picture(src, opts, _fname or "png", _up or 0)
  -- Palette: background, ink, gap, then one colour per kind shown.
  local palette, index = { BG, INK, GAP }, {}
  for _, e in ipairs(legend) do
    palette[#palette + 1] = e.color
    index[e.kind] = #palette - 1
  end
  local pitch = L.cell
  -- Left gutter: the number of the first block of some rows.
  local label_every = (9 + pitch - 1) // pitch
  local gutter = png.text_width(tostring((L.rows - 1) * L.cols * L.per_cell))
                 + 6
  local grid_w = L.cols * pitch
  -- Header: title at scale 2, figures, then the legend in columns.
  local title_h, line_h = 16, 10
  local swatch = 9
  local entry_w = 0
  for _, e in ipairs(legend) do
    entry_w = math.max(entry_w, swatch + 4 + png.text_width(e.text) + 12)
  end
  local text_w = png.text_width(lines[1], 2)
  for i = 2, #lines do
    text_w = math.max(text_w, png.text_width(lines[i]))
  end
  local width = MARGIN * 2 + math.max(gutter + grid_w, text_w, entry_w)
  local per_line = math.max(1, (width - 2 * MARGIN) // entry_w)
  local legend_rows = (#legend + per_line - 1) // per_line
  local header_h = MARGIN + title_h + (#lines - 1) * line_h + 4
                   + legend_rows * (swatch + 4) + 6
  local grid_h = L.rows * pitch
  local height = header_h + grid_h + MARGIN

  local head = png.canvas(width, header_h, 0)
  local y = MARGIN
  head:text(MARGIN, y, lines[1], 1, 2)
  y = y + title_h
  for i = 2, #lines do
    head:text(MARGIN, y, lines[i], 1)
    y = y + line_h
  end
  y = y + 4
  for i, e in ipairs(legend) do
    local col, row = (i - 1) % per_line, (i - 1) // per_line
    local x0, y0 = MARGIN + col * entry_w, y + row * (swatch + 4)
    head:rect(x0, y0, swatch, swatch, 1)
    head:rect(x0 + 1, y0 + 1, swatch - 2, swatch - 2, index[e.kind])
    head:text(x0 + swatch + 4, y0 + 1, e.text, 1)
  end
  local left = png.canvas(MARGIN + gutter, grid_h, 0)
  for row = 0, L.rows - 1, label_every do
    local s = tostring(row * L.cols * L.per_cell)
    left:text(MARGIN + gutter - 6 - png.text_width(s), row * pitch, s, 1)
  end

  -- One string per grid row of cells, built from runs of one kind.
  local right_pad = string.rep("\0", width - MARGIN - gutter - grid_w)
  local cell_rows = {}
  local function cells_row (row, line)
    local parts = {}
    local first = row * L.cols
    local last = math.min(first + L.cols, L.cells) - 1
    for i = first, last do
      local c = string.char(index[L.kinds[i]])
      if line < pitch - L.gap then
        parts[#parts + 1] = string.rep(c, pitch - L.gap)
        if L.gap > 0 then parts[#parts + 1] = "\2" end
      else
        parts[#parts + 1] = string.rep("\2", pitch)
      end
    end
    parts[#parts + 1] = string.rep("\0", (first + L.cols - 1 - last) * pitch)
    return table.concat(parts)
  end
  local blank = string.rep("\0", width)
  local bytes = png.encode {
    width = width, height = height, palette = palette,
    row = function (yy)
      if yy < header_h then return head:row(yy) end
      yy = yy - header_h
      if yy >= grid_h then return blank end
      local row, line = yy // pitch, yy % pitch
      local key = line < pitch - L.gap and 0 or 1
      local cr = cell_rows[row]
      if not cr then
        cell_rows = {}  -- keep one grid row at a time
        cr = {}
        cell_rows[row] = cr
      end
      if not cr[key] then cr[key] = cells_row(row, line) end
      return left:row(yy) .. cr[key] .. right_pad
    end,
  }
  return bytes, r, { x = MARGIN + gutter, y = header_h, pitch = pitch,
                     cols = L.cols, per_cell = L.per_cell,
                     palette = palette, width = width, height = height }
end

local function xml (s)
  return (tostring(s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;",
                                       [">"] = "&gt;", ['"'] = "&quot;" }))
end

--- Draws a file's block map as SVG. Runs of cells of one kind and owner
-- are one rectangle each, with a tooltip naming the blocks, the kind and
-- the owner.
-- @param src a BlockFile or a scan
-- @param opts optional, as for `png`
-- @return the SVG text, and the scan
function M.svg (src, opts, _fname, _up)
  local r, L, lines, legend = picture(src, opts, _fname or "svg", _up or 0)
  local pitch = math.max(L.cell, 2)
  local gutter = 8 * #tostring((L.rows - 1) * L.cols * L.per_cell) + 8
  local entry_w = 0
  for _, e in ipairs(legend) do
    entry_w = math.max(entry_w, 16 + 7 * #e.text + 16)
  end
  local text_w = 0
  for i, s in ipairs(lines) do
    text_w = math.max(text_w, (i == 1 and 9 or 7) * #s)
  end
  local grid_w = L.cols * pitch
  local width = MARGIN * 2 + math.max(gutter + grid_w, text_w, entry_w)
  local per_line = math.max(1, (width - 2 * MARGIN) // entry_w)
  local legend_rows = (#legend + per_line - 1) // per_line
  local header_h = MARGIN + 20 + (#lines - 1) * 16 + legend_rows * 18 + 8
  local height = header_h + L.rows * pitch + MARGIN
  local out = {}
  local function add (...) out[#out + 1] = string.format(...) end
  add('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
      .. 'viewBox="0 0 %d %d" font-family="monospace" font-size="12">\n',
      width, height, width, height)
  add('<rect width="100%%" height="100%%" fill="%s"/>\n', BG)
  add('<text x="%d" y="%d" font-size="15" font-weight="bold" fill="%s">'
      .. '%s</text>\n', MARGIN, MARGIN + 14, INK, xml(lines[1]))
  local y = MARGIN + 20
  for i = 2, #lines do
    add('<text x="%d" y="%d" fill="%s">%s</text>\n', MARGIN, y + 12, INK,
        xml(lines[i]))
    y = y + 16
  end
  add('<g class="legend">\n')
  for i, e in ipairs(legend) do
    local col, row = (i - 1) % per_line, (i - 1) // per_line
    local x0, y0 = MARGIN + col * entry_w, y + 4 + row * 18
    add('<rect x="%d" y="%d" width="12" height="12" fill="%s" '
        .. 'stroke="%s" data-kind="%s"/><text x="%d" y="%d" fill="%s">%s'
        .. '</text>\n', x0, y0, e.color, INK, xml(e.kind), x0 + 16, y0 + 11,
        INK, xml(e.text))
  end
  add('</g>\n<g class="blocks" shape-rendering="crispEdges">\n')
  local bs = r.block_size
  for row = 0, L.rows - 1 do
    local ry = header_h + row * pitch
    local first = row * L.cols
    if row % math.max(1, (14 + pitch - 1) // pitch) == 0 then
      add('<text x="%d" y="%d" text-anchor="end" font-size="10" fill="%s">'
          .. '%d</text>\n', MARGIN + gutter - 6, ry + math.min(pitch, 10),
          INK, first * L.per_cell)
    end
    local last = math.min(first + L.cols, L.cells) - 1
    local i = first
    while i <= last do
      local k = L.kinds[i]
      local o = L.per_cell == 1 and r.owner[i] or nil
      local j = i + 1
      while j <= last and L.kinds[j] == k
            and (L.per_cell > 1 or r.owner[j] == o) do
        j = j + 1
      end
      local b0, b1 = i * L.per_cell, math.min(j * L.per_cell, r.blocks) - 1
      local kd = classify.KINDS[k]
      local tip = b0 == b1
        and string.format("block %d (offset %d): %s", b0, b0 * bs, kd.label)
        or string.format("blocks %d-%d (offsets %d-%d): %s", b0, b1, b0 * bs,
                         b1 * bs, kd.label)
      if o then tip = tip .. ", " .. o end
      add('<rect x="%d" y="%d" width="%d" height="%d" fill="%s" '
          .. 'data-kind="%s"><title>%s</title></rect>\n',
          MARGIN + gutter + (i - first) * pitch, ry,
          (j - i) * pitch - (L.gap > 0 and 1 or 0), pitch - L.gap, kd.color,
          xml(k), xml(tip))
      i = j
    end
  end
  add('</g>\n</svg>\n')
  return table.concat(out), r
end

--- Writes a block map to a file, PNG or SVG by the path's extension.
-- @param src a BlockFile or a scan
-- @param path ends in `.png` or `.svg`
-- @param opts optional, as for `png`
-- @return the scan, or nil, message, errno if the file cannot be written
function M.write (src, path, opts)
  argcheck.checktype(path, 2, "write", "string")
  local ext = path:match("%.(%w+)$")
  ext = ext and ext:lower()
  if ext ~= "png" and ext ~= "svg" then
    argerror(2, "write", "path must end in .png or .svg, got '" .. path
             .. "'")
  end
  local data, r = M[ext](src, opts, "write", 1)
  local ok, msg, code = cli.writefile(path, data)
  if not ok then return nil, msg, code end
  return r
end

return M
