local blockmap = require "fmap.blockmap"
local classify = require "fmap.classify"
local png = require "fmap.png"
local toy = require "toychain"

local BS = 4096

-- An inflater for what fmap.png writes (stored and fixed-Huffman blocks),
-- written from RFC 1951, independent of the encoder's tables.
local function inflate (data)
  local pos, bit, nbit = 1, 0, 0
  local function need (n)
    while nbit < n do
      local b = data:byte(pos)
      assert(b, "inflate: data ends early")
      pos = pos + 1
      bit = bit | (b << nbit)
      nbit = nbit + 8
    end
  end
  local function bits (n)
    need(n)
    local v = bit & ((1 << n) - 1)
    bit, nbit = bit >> n, nbit - n
    return v
  end
  local function huff (n)  -- n bits, most significant first
    local v = 0
    for _ = 1, n do v = (v << 1) | bits(1) end
    return v
  end
  local lbase, lext, dbase, dext = {}, {}, {}, {}
  do
    local l, e = 3, 0
    for i = 0, 27 do
      if i >= 8 and i % 4 == 0 then e = e + 1 end
      lbase[257 + i], lext[257 + i] = l, e
      l = l + (1 << e)
    end
    lbase[285], lext[285] = 258, 0
    local d = 1
    e = 0
    for i = 0, 29 do
      if i >= 4 and i % 2 == 0 then e = e + 1 end
      dbase[i], dext[i] = d, e
      d = d + (1 << e)
    end
  end
  local out, n = {}, 0
  repeat
    local final, btype = bits(1), bits(2)
    if btype == 0 then
      bit, nbit = 0, 0
      local len, nlen = string.unpack("<I2I2", data, pos)
      assert(len == nlen ~ 0xFFFF, "inflate: bad stored length")
      for i = pos + 4, pos + 3 + len do
        n = n + 1
        out[n] = data:byte(i)
      end
      pos = pos + 4 + len
    elseif btype == 1 then
      while true do
        local sym = huff(7)
        if sym <= 23 then
          sym = sym + 256
        else
          sym = (sym << 1) | bits(1)
          if sym >= 0x30 and sym <= 0xBF then sym = sym - 0x30
          elseif sym >= 0xC0 and sym <= 0xC7 then sym = sym - 0xC0 + 280
          else sym = ((sym << 1) | bits(1)) - 0x190 + 144 end
        end
        if sym < 256 then
          n = n + 1
          out[n] = sym
        elseif sym == 256 then
          break
        else
          local len = lbase[sym] + bits(lext[sym])
          local dsym = huff(5)
          local dist = dbase[dsym] + bits(dext[dsym])
          assert(dist <= n, "inflate: distance beyond the start")
          for _ = 1, len do
            n = n + 1
            out[n] = out[n - dist]
          end
        end
      end
    else
      error("inflate: block type " .. btype .. " not expected")
    end
  until final == 1
  return out, pos
end

-- Parses a PNG: checks the signature and every chunk's CRC, inflates the
-- zlib stream and checks its header and Adler-32. Returns width, height,
-- the palette ({"#rrggbb"}) and pixel(x, y) -> palette index.
local function decode (s)
  assert.equal("\137PNG\r\n\26\n", s:sub(1, 8))
  local pos, chunks, idat = 9, {}, {}
  local w, hgt, palette
  while pos <= #s do
    local len, ctype = string.unpack(">I4c4", s, pos)
    local body = s:sub(pos + 8, pos + 7 + len)
    local crc = string.unpack(">I4", s, pos + 8 + len)
    assert.equal(png.crc32(ctype .. body), crc)
    chunks[#chunks + 1] = ctype
    if ctype == "IHDR" then
      local depth, ctyp
      w, hgt, depth, ctyp = string.unpack(">I4I4BB", body)
      assert.same({ 8, 3 }, { depth, ctyp })
    elseif ctype == "PLTE" then
      palette = {}
      for i = 1, #body, 3 do
        palette[#palette + 1] = string.format("#%02x%02x%02x",
                                              body:byte(i, i + 2))
      end
    elseif ctype == "IDAT" then
      idat[#idat + 1] = body
    end
    pos = pos + 12 + len
  end
  assert.same({ "IHDR", "PLTE", "IDAT", "IEND" }, chunks)
  local z = table.concat(idat)
  local cmf, flg = z:byte(1, 2)
  assert.equal(8, cmf & 15)
  assert.equal(0, (cmf * 256 + flg) % 31)
  local raw, used = inflate(z:sub(3))
  assert.equal((w + 1) * hgt, #raw)
  local adler = string.unpack(">I4", z, used + 2)
  local a, b = 1, 0
  for i = 1, #raw do
    a = (a + raw[i]) % 65521
    b = (b + a) % 65521
  end
  assert.equal((b << 16) | a, adler)
  for y = 0, hgt - 1 do assert.equal(0, raw[y * (w + 1) + 1]) end
  local function pixel (x, y)
    assert(x >= 0 and x < w and y >= 0 and y < hgt)
    return raw[y * (w + 1) + x + 2]
  end
  return w, hgt, palette, pixel
end

local function has_python ()
  local out = h.run("command -v python3 2>/dev/null")
  return out ~= ""
end

-- Checks a PNG file with Python's zlib, independently of this spec:
-- returns "width height bytes".
local function python_check (file)
  local out = h.run("python3 -c '" .. [[
import sys, struct, zlib
d = open(sys.argv[1], "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n"
i, idat = 8, b""
while i < len(d):
    n, = struct.unpack(">I", d[i:i+4]); t = d[i+4:i+8]; body = d[i+8:i+8+n]
    assert zlib.crc32(t + body) == struct.unpack(">I", d[i+8+n:i+12+n])[0]
    if t == b"IHDR": w, h = struct.unpack(">II", body[:8])
    if t == b"IDAT": idat += body
    i += 12 + n
print(w, h, len(zlib.decompress(idat)))
]] .. "' " .. file .. " 2>&1")
  return (out:gsub("%s+$", ""))
end

-- Asserts that the picture shows every block of the scan r in its
-- kind's colour.
local function assert_cells (bytes, r, geo)
  local _, _, palette, pixel = decode(bytes)
  assert.same(geo.palette, palette)
  for b = 0, r.blocks - 1 do
    local i = b // geo.per_cell
    local x = geo.x + (i % geo.cols) * geo.pitch
    local y = geo.y + (i // geo.cols) * geo.pitch
    local color = palette[pixel(x, y) + 1]
    if color ~= classify.KINDS[r.kind[b]].color then
      assert.equal(classify.KINDS[r.kind[b]].color, color,
                   "block " .. b .. " (" .. r.kind[b] .. ")")
    end
  end
end

-- The kinds an SVG's rectangles give each block, from their tooltips.
local function svg_kinds (svg)
  local t = {}
  for kind, tip in svg:gmatch('<rect [^>]-data%-kind="([^"]+)"><title>'
                              .. '([^<]+)</title>') do
    local b0, b1 = tip:match("^blocks (%d+)%-(%d+)")
    if not b0 then
      b0 = tip:match("^block (%d+)")
      b1 = b0
    end
    for b = tonumber(b0), tonumber(b1) do
      assert.is_nil(t[b], "block " .. b .. " drawn twice")
      t[b] = kind
    end
  end
  return t
end

describe("fmap.png", function()
  describe(".crc32() and .adler32()", function()
    it("give the reference values", function()
      assert.equal(0xCBF43926, png.crc32("123456789"))
      assert.equal(0, png.crc32(""))
      assert.equal(0x11E60398, png.adler32("Wikipedia"))
    end)
  end)

  describe(".encode()", function()
    local rows = {}
    for y = 0, 39 do
      if y % 4 == 3 then
        rows[y] = rows[y - 1]                   -- a repeated scanline
      elseif y % 4 == 0 then
        rows[y] = string.rep("\1", 30) .. string.rep("\2", 270)  -- runs
      else
        local t = {}
        for x = 1, 300 do t[x] = string.char((x * 7 + y) % 5) end
        rows[y] = table.concat(t)
      end
    end
    local pal = { "#000000", "#ff0000", "#00ff00", "#0000ff", "#ffffff" }

    for _, mode in ipairs { "fixed", "stored" } do
      it("writes a valid PNG that decodes to its rows (" .. mode .. ")",
         function()
        local s = png.encode { width = 300, height = 40, palette = pal,
                               deflate = mode ~= "fixed" and mode or nil,
                               row = function (y) return rows[y] end }
        local w, hgt, palette, pixel = decode(s)
        assert.same({ 300, 40, pal }, { w, hgt, palette })
        for y = 0, 39 do
          for x = 0, 299 do
            if pixel(x, y) ~= rows[y]:byte(x + 1) then
              assert.equal(rows[y]:byte(x + 1), pixel(x, y), x .. "," .. y)
            end
          end
        end
      end)
    end

    it("compresses runs and repeated scanlines", function()
      local s = png.encode { width = 1000, height = 1000, palette = pal,
                             row = function (y)
                               return string.rep(string.char(y // 100 % 5),
                                                 1000)
                             end }
      assert.is_true(#s < 20000, #s .. " bytes")  -- 1 MB of pixels
      local w, hgt, _, pixel = decode(s)
      assert.same({ 1000, 1000, 4 }, { w, hgt, pixel(999, 999) })
    end)

    it("rejects a width that is not a positive integer", function()
      assert.equal("bad argument #1 to 'encode' (width must be a positive "
                   .. "integer, got 0)", h.errmsg(function()
                     png.encode { width = 0, height = 1, palette = pal,
                                  row = function () return "" end }
                   end))
    end)

    it("rejects a palette of more than 256 colours", function()
      local big = {}
      for i = 1, 257 do big[i] = "#000000" end
      assert.equal("bad argument #1 to 'encode' (palette must hold 1 to "
                   .. "256 colours)", h.errmsg(function()
                     png.encode { width = 1, height = 1, palette = big,
                                  row = function () return "\0" end }
                   end))
    end)

    it("rejects a row of the wrong length", function()
      assert.equal("bad argument #1 to 'encode' (row 0 must be a string "
                   .. "of 2 bytes, got 1 bytes)", h.errmsg(function()
                     png.encode { width = 2, height = 1, palette = pal,
                                  row = function () return "\0" end }
                   end))
    end)

    it("rejects a colour that is not #rrggbb", function()
      assert.equal("bad colour 'red' (#rrggbb expected)", h.errmsg(function()
        png.encode { width = 1, height = 1, palette = { "red" },
                     row = function () return "\0" end }
      end))
    end)
  end)
end)

describe("fmap.blockmap", function()
  local path, bf
  h.fixture(function (p, b) if p then path, bf = p, b end return bf end)
  toy.each_test()
  after_each(function() blockmap.MAX_CELLS = 512 * 1024 end)

  -- A small file with known contents: toy nodes and payloads, a leaked
  -- block, free runs, a tail.
  local function fill ()
    for i = 1, 12 do toy.push(bf, i % 4) end
    bf:allocate()
    toy.pop(bf)
    toy.pop(bf, true)
    local a = bf:allocate_blocks(5)
    bf:free(a, 2)
    bf:free(a + 3 * BS)
  end

  describe(".png()", function()
    it("draws an empty file", function()
      local bytes, r, geo = blockmap.png(bf)
      assert.equal(1, r.blocks)
      assert_cells(bytes, r, geo)
    end)

    it("draws every block of a small file in its kind's colour", function()
      fill()
      local bytes, r, geo = blockmap.png(bf)
      -- the stray block, the leaked payload (3), the 2 left of a run of 5
      assert.equal(6, r.counts.unknown)
      assert.is_true(r.counts.free >= 3)
      assert.is_true(r.counts.tail > 0)
      assert.equal(1, geo.per_cell)
      assert_cells(bytes, r, geo)
    end)

    it("draws a file of 100,000 blocks, as PNG and as SVG", function()
      local big <close> = fmap.anonymous()
      local run = big:allocate_blocks(99999)
      -- toy nodes every 1000 blocks, each owning the 600 after it
      local prev = 0
      for i = 0, 98 do
        local node = run + i * 1000 * BS
        big:with(node, 1, function (v)
          v:set_u64(0, prev)
          v:set_u64(8, node + BS)
          v:set_u64(16, 600)
        end)
        prev = node
      end
      big:set_control_data("toy=" .. prev)
      big:free(run + 99000 * BS, 500)
      local bytes, r, geo = blockmap.png(big)
      assert.equal(100000, r.blocks)
      assert.equal(99 * 601, r.counts.toy_node + r.counts.toy_payload)
      assert.equal(500, r.counts.free)
      assert_cells(bytes, r, geo)
      local t = svg_kinds((blockmap.svg(r)))
      for b = 0, r.blocks - 1 do
        if t[b] ~= r.kind[b] then
          assert.equal(r.kind[b], t[b], "block " .. b)
        end
      end
      if has_python() then
        local file = h.tmpname(".png")
        h.writefile(file, bytes)
        local w, hgt = decode(bytes)
        assert.equal(string.format("%d %d %d", w, hgt, (w + 1) * hgt),
                     python_check(file))
        os.remove(file)
      end
      h.no_live_views(big)
    end)

    it("lets a cell stand for several blocks in a large file", function()
      fill()
      blockmap.MAX_CELLS = 8
      local bytes, r, geo = blockmap.png(bf)
      local L = blockmap.layout(r)
      assert.equal((r.blocks + 7) // 8, L.per_cell)
      assert.equal(L.per_cell, geo.per_cell)
      -- each cell shows the kind most of its blocks have
      for i = 0, L.cells - 1 do
        local count, most = {}, 0
        for b = i * L.per_cell, math.min((i + 1) * L.per_cell, r.blocks) - 1
        do
          count[r.kind[b]] = (count[r.kind[b]] or 0) + 1
          most = math.max(most, count[r.kind[b]])
        end
        assert.equal(most, count[L.kinds[i]])
      end
      decode(bytes)
    end)

    it("rejects a cell size or a column count out of range", function()
      assert.equal("bad argument #2 to 'png' (option 'cell' must be an "
                   .. "integer from 1 to 64, got 0)", h.errmsg(function()
                     blockmap.png(bf, { cell = 0 })
                   end))
      assert.equal("bad argument #2 to 'svg' (option 'cols' must be an "
                   .. "integer from 1 to 4096, got 2.5)", h.errmsg(function()
                     blockmap.svg(bf, { cols = 2.5 })
                   end))
    end)

    it("draws with the columns and cell size asked for", function()
      fill()
      local bytes, r, geo = blockmap.png(bf, { cols = 7, cell = 5 })
      assert.same({ 7, 5 }, { geo.cols, geo.pitch })
      assert_cells(bytes, r, geo)
    end)

    it("rejects what is not a BlockFile or a scan", function()
      assert.equal("bad argument #1 to 'png' (BlockFile or scan expected, "
                   .. "got string)", h.errmsg(function()
                     blockmap.png("x")
                   end))
    end)
  end)

  describe(".svg()", function()
    it("draws every block in its kind, with the figures and a legend",
       function()
      fill()
      local svg, r = blockmap.svg(bf)
      local t = svg_kinds(svg)
      for b = 0, r.blocks - 1 do
        assert.equal(r.kind[b], t[b], "block " .. b)
      end
      assert.is_nil(t[r.blocks])
      local f = classify.figures(r)
      assert.matches(string.format("free %d blocks %%(%.1f%%%%%%) in %d runs",
                                   f.free_blocks, 100 * f.free_share,
                                   f.free_runs), svg)
      assert.matches(string.format("fragmentation %.2f", f.fragmentation),
                     svg, 1, true)
      for k, n in pairs(r.counts) do
        assert.matches(">" .. classify.KINDS[k].label .. ": " .. n .. "<",
                       svg, 1, true)
      end
      assert.matches("toy node: ", svg, 1, true)
    end)

    it("names the owner of a block in its tooltip", function()
      local node = toy.push(bf, 1)
      local svg = blockmap.svg(bf)
      assert.matches("block 1 (offset 4096): toy node, toy@" .. node, svg,
                     1, true)
    end)

    it("is well-formed XML for an empty file and a small one", function()
      if not has_python() then return end
      local file = h.tmpname(".svg")
      for _ = 1, 2 do
        h.writefile(file, (blockmap.svg(bf)))
        local out = h.run("python3 -c 'import sys, xml.dom.minidom as m; "
                          .. "d = m.parse(sys.argv[1]); "
                          .. "print(len(d.getElementsByTagName(\"rect\")))' "
                          .. file .. " 2>&1")
        assert.matches("^%d+%s*$", out)
        fill()
      end
      os.remove(file)
    end)
  end)

  describe(".write()", function()
    it("writes PNG or SVG by the extension", function()
      fill()
      local p, s = h.tmpname(".png"), h.tmpname(".SVG")
      assert.is_table(blockmap.write(bf, p))
      assert.is_table(blockmap.write(bf, s))
      decode(h.readfile(p))
      assert.matches("^<svg ", h.readfile(s))
      os.remove(p)
      os.remove(s)
    end)

    it("rejects another extension", function()
      assert.equal("bad argument #2 to 'write' (path must end in .png or "
                   .. ".svg, got 'map.gif')", h.errmsg(function()
                     blockmap.write(bf, "map.gif")
                   end))
    end)

    it("returns nil, message, errno when the file cannot be written",
       function()
      local r, msg, code = blockmap.write(bf, "/nonexistent/dir/map.png")
      assert.same({ nil, "/nonexistent/dir/map.png: No such file or "
                    .. "directory", 2 }, { r, msg, code })
    end)
  end)

  describe("scripts/blockmap.lua", function()
    local function run (args)
      return h.run("LUA_PATH='spec/?.lua;;' " .. h.bin()
                   .. " scripts/blockmap.lua " .. args .. " 2>&1")
    end

    it("draws a file with a user's classifier loaded by -r", function()
      fill()
      local st = bf:stats()
      bf:close()
      local out = h.tmpname(".png")
      local text, status = run(path .. " -r toychain -o " .. out)
      assert.equal(0, status, text)
      assert.matches("toy node%s+%d+", text)
      assert.matches("wrote " .. out, text, 1, true)
      local w, hgt = decode(h.readfile(out))
      assert.is_true(w > 0 and hgt > 0)
      -- closing trimmed the tail
      assert.matches(path .. ": " .. (st.blocks - st.tail_blocks)
                     .. " blocks", text, 1, true)
      os.remove(out)
    end)

    it("fails with a message when the file cannot be opened", function()
      local text, status = run("/nonexistent.fmap -o /tmp/x.png")
      assert.equal(1, status)
      assert.equal("blockmap: /nonexistent.fmap: No such file or directory\n",
                   text)
    end)

    it("refuses an output that is neither .png nor .svg", function()
      local text, status = run(path .. " -o map.gif")
      assert.equal(2, status)
      assert.matches('^blockmap: "map.gif": the output must end in .png or '
                     .. '.svg\nusage: ', text)
    end)

    it("refuses a missing -o", function()
      local text, status = run(path)
      assert.equal(2, status)
      assert.matches("^blockmap: no %-o OUT.png or OUT.svg\n", text)
    end)
  end)
end)
