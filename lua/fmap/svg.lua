--- fmap.svg: a small SVG writer, enough for line charts: a document of
-- lines, polylines, rectangles and text, built up and returned as a
-- string. No dependency; the numbers are written with two decimals.
--
--   local svg = require "fmap.svg"
--   local d = svg.new(640, 400)
--   d:line(10, 10, 100, 10, { stroke = "#000" })
--   d:polyline({ 10, 50, 60, 80, 110, 20 }, { stroke = "#c00" })
--   d:text(10, 120, "a <label>", { size = 12 })
--   local text = d:finish()
local M = {}

local Doc = {}
Doc.__index = Doc

local concat, sformat = table.concat, string.format

--- s with the five characters XML reserves escaped.
function M.escape (s)
  return (tostring(s):gsub("[&<>\"']", {
    ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
    ["'"] = "&apos;",
  }))
end
local escape = M.escape

-- A number as the document writes it: integers as they are, others with
-- two decimals, without trailing zeros.
local function num (x)
  if math.type(x) == "integer" then return tostring(x) end
  local s = sformat("%.2f", x):gsub("0+$", ""):gsub("%.$", "")
  if s == "-0" then s = "0" end
  return s
end

-- The attributes of style (a table of SVG attribute names, with `size`
-- for font-size and `anchor` for text-anchor), in a fixed order.
local ALIASES = { size = "font-size", anchor = "text-anchor",
                  width = "stroke-width", dash = "stroke-dasharray",
                  weight = "font-weight", family = "font-family" }
local function attrs (style)
  if not style then return "" end
  local keys = {}
  for k in pairs(style) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v = style[k]
    if type(v) == "number" then v = num(v) end
    out[#out + 1] = sformat(' %s="%s"', ALIASES[k] or k, escape(v))
  end
  return concat(out)
end

--- A document width by height pixels, white unless background says
-- otherwise (nil: none).
function M.new (width, height, background)
  local d = setmetatable({ parts = {}, width = width, height = height },
                         Doc)
  d.parts[1] = sformat('<svg xmlns="http://www.w3.org/2000/svg" '
    .. 'width="%s" height="%s" viewBox="0 0 %s %s" '
    .. 'font-family="sans-serif">\n', num(width), num(height), num(width),
    num(height))
  if background ~= false then
    d:rect(0, 0, width, height, { fill = background or "#ffffff" })
  end
  return d
end

local function add (d, s) d.parts[#d.parts + 1] = s end

--- A line from (x1, y1) to (x2, y2).
function Doc:line (x1, y1, x2, y2, style)
  add(self, sformat('<line x1="%s" y1="%s" x2="%s" y2="%s"%s/>\n', num(x1),
                    num(y1), num(x2), num(y2), attrs(style)))
end

--- A polyline through the points {x1, y1, x2, y2, ...}; no fill.
function Doc:polyline (xy, style)
  local pts = {}
  for i = 1, #xy - 1, 2 do
    pts[#pts + 1] = num(xy[i]) .. "," .. num(xy[i + 1])
  end
  local s = { fill = "none" }
  for k, v in pairs(style or {}) do s[k] = v end
  add(self, sformat('<polyline points="%s"%s/>\n', concat(pts, " "),
                    attrs(s)))
end

--- A rectangle with its top left corner at (x, y).
function Doc:rect (x, y, w, h, style)
  add(self, sformat('<rect x="%s" y="%s" width="%s" height="%s"%s/>\n',
                    num(x), num(y), num(w), num(h), attrs(style)))
end

--- Text whose baseline starts at (x, y) (see style.anchor).
function Doc:text (x, y, s, style)
  add(self, sformat('<text x="%s" y="%s"%s>%s</text>\n', num(x), num(y),
                    attrs(style), escape(s)))
end

--- The document's text; the document takes no more elements.
function Doc:finish ()
  add(self, "</svg>\n")
  local s = concat(self.parts)
  self.parts = nil
  return s
end

return M
