--- fmap.png: a minimal PNG writer in pure Lua, for the block map.
--
-- Writes 8-bit palette images (colour type 3, at most 256 colours): the
-- signature, IHDR, PLTE, one IDAT holding a zlib stream, and IEND, each
-- chunk with its CRC-32. The zlib stream (RFC 1950) ends with the
-- Adler-32 of the raw scanlines; its deflate data (RFC 1951) is either
-- stored blocks or one block of fixed Huffman codes whose only matches
-- are a run of one byte (distance 1) and a copy of the whole previous
-- scanline (distance = scanline length): that is all a picture made of
-- flat rectangles needs, and it finds both without searching, so encoding
-- costs time in the number of runs, not of pixels.
--
-- Also a small canvas to draw rectangles and text (a 5x7 capitals font)
-- on, for the parts of a picture that are not a grid.
local argerror = require("fmap.argcheck").argerror

local M = {}

local char, byte, find, rep = string.char, string.byte, string.find,
                              string.rep
local concat = table.concat

-- CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) table.
local CRC = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if c & 1 == 1 then c = 0xEDB88320 ~ (c >> 1) else c = c >> 1 end
  end
  CRC[i] = c
end

--- The CRC-32 of a string, as PNG and zlib's crc32 compute it.
-- @param s the bytes
-- @param crc a running CRC to continue, optional
-- @return the CRC, an integer in 0..2^32-1
function M.crc32 (s, crc)
  local c = (crc or 0) ~ 0xFFFFFFFF
  local n = #s
  local i = 1
  while i <= n do
    local j = i + 63 < n and i + 63 or n
    local t = { byte(s, i, j) }
    for k = 1, #t do
      c = CRC[(c ~ t[k]) & 0xFF] ~ (c >> 8)
    end
    i = j + 1
  end
  return c ~ 0xFFFFFFFF
end

local ADLER_MOD = 65521

--- The Adler-32 of a string, as zlib computes it.
-- @param s the bytes
-- @return the checksum
function M.adler32 (s)
  local a, b = 1, 0
  for i = 1, #s do
    a = (a + byte(s, i)) % ADLER_MOD
    b = (b + a) % ADLER_MOD
  end
  return (b << 16) | a
end

-- Adler-32 state advanced over n copies of byte c, in O(1):
-- b gains n*a + c*(1 + 2 + ... + n).
local function adler_run (a, b, c, n)
  b = (b + n * a + c * (n * (n + 1) // 2)) % ADLER_MOD
  a = (a + n * c) % ADLER_MOD
  return a, b
end

-- Fixed Huffman codes (RFC 1951 3.2.6), bit-reversed so that they can be
-- written least significant bit first like everything else.
local function reverse (code, len)
  local r = 0
  for _ = 1, len do
    r = (r << 1) | (code & 1)
    code = code >> 1
  end
  return r
end

local LIT_CODE, LIT_LEN = {}, {}
for v = 0, 287 do
  local code, len
  if v <= 143 then code, len = 0x30 + v, 8
  elseif v <= 255 then code, len = 0x190 + v - 144, 9
  elseif v <= 279 then code, len = v - 256, 7
  else code, len = 0xC0 + v - 280, 8 end
  LIT_CODE[v], LIT_LEN[v] = reverse(code, len), len
end

local LEN_BASE = { 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27,
                   31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227,
                   258 }
local LEN_EXTRA = { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3,
                    3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0 }
local DIST_BASE = { 1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129,
                    193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097,
                    6145, 8193, 12289, 16385, 24577 }
local DIST_EXTRA = { 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7,
                     8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13 }
M.MAX_DISTANCE = 32768

-- For each match length 3..258: the symbol, its extra bits and their
-- count.
local LEN_SYM, LEN_XBITS, LEN_XVAL = {}, {}, {}
for i = #LEN_BASE, 1, -1 do
  for l = LEN_BASE[i], math.min(LEN_BASE[i] + (1 << LEN_EXTRA[i]) - 1, 258) do
    if not LEN_SYM[l] then
      LEN_SYM[l], LEN_XBITS[l], LEN_XVAL[l] = 256 + i, LEN_EXTRA[i],
                                              l - LEN_BASE[i]
    end
  end
end

local function dist_code (d)
  for i = #DIST_BASE, 1, -1 do
    if d >= DIST_BASE[i] then
      return i - 1, DIST_EXTRA[i], d - DIST_BASE[i]
    end
  end
end

-- A bit writer, least significant bit first.
local function bitwriter ()
  local out, nout = {}, 0
  local buf, nbits = 0, 0
  local w = {}
  function w.put (v, n)
    buf = buf | (v << nbits)
    nbits = nbits + n
    while nbits >= 8 do
      nout = nout + 1
      out[nout] = buf & 0xFF
      buf = buf >> 8
      nbits = nbits - 8
    end
  end
  function w.finish ()
    if nbits > 0 then
      nout = nout + 1
      out[nout] = buf & 0xFF
      buf, nbits = 0, 0
    end
    local parts = {}
    for i = 1, nout, 4096 do
      parts[#parts + 1] = char(table.unpack(out, i, math.min(i + 4095, nout)))
    end
    return concat(parts)
  end
  return w
end

-- NOT[c]: a pattern matching any byte but c.
local NOT = {}
for c = 0, 255 do
  local ch = char(c)
  NOT[c] = "[^" .. (ch:match("%w") and ch or "%" .. ch) .. "]"
end

-- The runs of a scanline: an array c1, n1, c2, n2, ... of byte values
-- and counts.
local function runs_of (row)
  local t, nt = {}, 0
  local n, i = #row, 1
  while i <= n do
    local c = byte(row, i)
    local j = find(row, NOT[c], i + 1) or n + 1
    t[nt + 1], t[nt + 2] = c, j - i
    nt = nt + 2
    i = j
  end
  return t
end

-- Deflate with fixed Huffman codes: see the top of the file. Returns the
-- deflate data and the Adler-32 of the raw stream (filter bytes
-- included).
local function deflate_fixed (height, row_of)
  local w = bitwriter()
  local put = w.put
  local a, b = 1, 0
  put(1, 1)  -- BFINAL
  put(1, 2)  -- BTYPE = 01, fixed Huffman
  local function literal (c)
    put(LIT_CODE[c], LIT_LEN[c])
  end
  local function match (len, dist)
    local dsym, dxn, dxv = dist_code(dist)
    local dcode = reverse(dsym, 5)
    while len > 0 do
      local l = len > 258 and 258 or len
      if len - l > 0 and len - l < 3 then l = len - 3 end
      local sym = LEN_SYM[l]
      put(LIT_CODE[sym], LIT_LEN[sym])
      if LEN_XBITS[l] > 0 then put(LEN_XVAL[l], LEN_XBITS[l]) end
      put(dcode, 5)
      if dxn > 0 then put(dxv, dxn) end
      len = len - l
    end
  end
  local prev, prev_runs
  for y = 0, height - 1 do
    local row = row_of(y)
    local stride = #row + 1
    local runs
    if row == prev and stride >= 3 and stride <= M.MAX_DISTANCE then
      runs = prev_runs
      match(stride, stride)
    else
      runs = runs_of(row)
      literal(0)
      for i = 1, #runs, 2 do
        local c, n = runs[i], runs[i + 1]
        literal(c)
        if n - 1 >= 3 then
          match(n - 1, 1)
        else
          for _ = 2, n do literal(c) end
        end
      end
    end
    a, b = adler_run(a, b, 0, 1)
    for i = 1, #runs, 2 do
      a, b = adler_run(a, b, runs[i], runs[i + 1])
    end
    prev, prev_runs = row, runs
  end
  put(LIT_CODE[256], LIT_LEN[256])  -- end of block
  return w.finish(), (b << 16) | a
end

-- Deflate as stored blocks of at most 65535 bytes.
local function deflate_stored (height, row_of)
  local raw = {}
  for y = 0, height - 1 do
    raw[#raw + 1] = "\0"
    raw[#raw + 1] = row_of(y)
  end
  raw = concat(raw)
  local out, n = {}, #raw
  local i = 1
  repeat
    local len = math.min(65535, n - i + 1)
    local final = (i + len > n) and 1 or 0
    out[#out + 1] = string.pack("<BI2I2", final, len, len ~ 0xFFFF)
    out[#out + 1] = raw:sub(i, i + len - 1)
    i = i + len
  until i > n
  return concat(out), M.adler32(raw)
end

local function chunk (ctype, data)
  return string.pack(">I4", #data) .. ctype .. data
         .. string.pack(">I4", M.crc32(ctype .. data))
end

--- Parses a colour `#rrggbb` into its three bytes.
-- @return r, g, b
function M.rgb (color)
  local r, g, b = tostring(color):match("^#(%x%x)(%x%x)(%x%x)$")
  if not r then
    error(string.format("bad colour '%s' (#rrggbb expected)",
                        tostring(color)), 2)
  end
  return tonumber(r, 16), tonumber(g, 16), tonumber(b, 16)
end

--- Encodes a palette image as PNG.
-- @param img `{width = , height = , palette = {"#rrggbb", ...},
--   row = function (y) -> string}`: `row(y)` for y = 0 .. height-1
--   returns the scanline, `width` bytes, each a 0-based palette index;
--   `deflate = "stored"` writes stored blocks instead of fixed Huffman
-- @return the PNG file's bytes
function M.encode (img)
  local w, hgt, pal = img.width, img.height, img.palette
  if math.type(w) ~= "integer" or w < 1 or w > 0x7FFFFFFF then
    argerror(1, "encode", "width must be a positive integer, got "
             .. tostring(w))
  end
  if math.type(hgt) ~= "integer" or hgt < 1 or hgt > 0x7FFFFFFF then
    argerror(1, "encode", "height must be a positive integer, got "
             .. tostring(hgt))
  end
  if type(pal) ~= "table" or #pal < 1 or #pal > 256 then
    argerror(1, "encode", "palette must hold 1 to 256 colours")
  end
  local plte = {}
  for i, c in ipairs(pal) do plte[i] = char(M.rgb(c)) end
  local function row_of (y)
    local r = img.row(y)
    if type(r) ~= "string" or #r ~= w then
      argerror(1, "encode", string.format("row %d must be a string of %d "
               .. "bytes, got %s", y, w,
               type(r) == "string" and #r .. " bytes" or type(r)), 3)
    end
    return r
  end
  local data, adler
  if img.deflate == "stored" then
    data, adler = deflate_stored(hgt, row_of)
  else
    data, adler = deflate_fixed(hgt, row_of)
  end
  -- zlib header: deflate, 32K window; FCHECK makes it a multiple of 31.
  local zlib = "\x78\x01" .. data .. string.pack(">I4", adler)
  return concat {
    "\x89PNG\r\n\x1a\n",
    chunk("IHDR", string.pack(">I4I4BBBBB", w, hgt, 8, 3, 0, 0, 0)),
    chunk("PLTE", concat(plte)),
    chunk("IDAT", zlib),
    chunk("IEND", ""),
  }
end

-- A 5x7 font for ASCII 32..95 (space to underscore; lower case is drawn
-- in capitals): 7 rows per glyph, each a base-32 digit whose 5 bits are
-- the row's pixels, the leftmost the highest.
local FONT = "00000004444404aaa0000aavavaa4fke5u4op248j3cik8lid444000024888428422248"
  .. "04lel40044v4400000c48000v00000000cc01248g0ehjlphe4c4444eeh1248vv2421he"
  .. "26aiv22vgu11he68guhhev124888ehhehheehhf12c0cc0cc00cc0c48248g84200v0v00"
  .. "8421248eh12404eh1dlleehhvhhhuhhuhhuehggghesihhhisvgguggvvggugggehgnhhf"
  .. "hhhvhhhe44444e72222ichikokihggggggvhrllhhhhhpljhhehhhhheuhhugggehhhlid"
  .. "uhhukihfgge11uv444444hhhhhhehhhhha4hhhlllahha4ahhhha4444v1248gve88888e"
  .. "0g84210e22222e4ah0000000000v"
M.GLYPH_WIDTH, M.GLYPH_HEIGHT, M.ADVANCE = 5, 7, 6

local Canvas = {}
Canvas.__index = Canvas

--- A canvas of palette indices to draw on.
-- @param width pixels
-- @param height pixels
-- @param bg the palette index it starts filled with
function M.canvas (width, height, bg)
  local rows = {}
  for y = 0, height - 1 do
    local r = {}
    for x = 1, width do r[x] = bg end
    rows[y] = r
  end
  return setmetatable({ width = width, height = height, rows = rows },
                      Canvas)
end

--- Fills a rectangle, clipped to the canvas.
function Canvas:rect (x, y, w, h, c)
  local x1, y1 = math.min(x + w, self.width), math.min(y + h, self.height)
  for yy = math.max(y, 0), y1 - 1 do
    local r = self.rows[yy]
    for xx = math.max(x, 0), x1 - 1 do r[xx + 1] = c end
  end
end

--- Draws text in the 5x7 font, each pixel `scale` pixels square; lower
-- case in capitals, characters it lacks as `?`. Clipped to the canvas.
-- @return the x after the text
function Canvas:text (x, y, s, c, scale)
  scale = scale or 1
  s = tostring(s):upper()
  for i = 1, #s do
    local code = byte(s, i)
    if code < 32 or code > 95 then code = 63 end
    local g = (code - 32) * 7
    for row = 0, 6 do
      local bits = tonumber(FONT:sub(g + row + 1, g + row + 1), 32)
      for col = 0, 4 do
        if bits & (16 >> col) ~= 0 then
          self:rect(x + col * scale, y + row * scale, scale, scale, c)
        end
      end
    end
    x = x + M.ADVANCE * scale
  end
  return x
end

--- Width in pixels of text drawn at a scale.
function M.text_width (s, scale)
  return #tostring(s) * M.ADVANCE * (scale or 1)
end

--- Scanline y as a string of palette indices.
function Canvas:row (y)
  return char(table.unpack(self.rows[y], 1, self.width))
end

return M
