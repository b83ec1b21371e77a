local codec = require "fmap.codec"

-- memcmp order of two strings, whatever the locale: -1, 0 or 1.
local function bytecmp (a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y and -1 or 1 end
  end
  return #a < #b and -1 or (#a > #b and 1 or 0)
end

local function cmp (a, b)
  if a == b then return 0 end
  if type(a) == "string" then return bytecmp(a, b) end
  return a < b and -1 or 1
end

-- Unsigned 64-bit order of two Lua integers.
local function ucmp (a, b)
  if a == b then return 0 end
  return math.ult(a, b) and -1 or 1
end

describe("fmap.codec", function()
  describe(".int() and .uint()", function()
    it("sort as the numbers do, negative ones first", function()
      local xs = { math.mininteger, -(1 << 40), -65536, -257, -256, -1, 0, 1,
                   255, 256, 65535, 1 << 40, math.maxinteger }
      for i = 1, #xs do
        for j = 1, #xs do
          assert.equal(cmp(xs[i], xs[j]), bytecmp(codec.int(xs[i]),
                                                  codec.int(xs[j])))
        end
      end
      for _ = 1, 2000 do
        local a, b = math.random(math.mininteger, math.maxinteger),
                     math.random(math.mininteger, math.maxinteger)
        assert.equal(cmp(a, b), bytecmp(codec.int(a), codec.int(b)))
        assert.equal(ucmp(a, b), bytecmp(codec.uint(a), codec.uint(b)))
        local s = math.random(1, 8)
        local lim = s == 8 and math.maxinteger or (1 << (8 * s - 1)) - 1
        local x, y = math.random(-lim - 1, lim), math.random(-lim - 1, lim)
        assert.equal(cmp(x, y), bytecmp(codec.int(x, s), codec.int(y, s)))
        assert.equal(s, #codec.int(x, s))
      end
    end)

    it("are big-endian with the sign bit flipped for signed ones",
       function()
      assert.equal("\0\0\0\0\0\0\1\2", codec.uint(0x0102))
      assert.equal("\1\2", codec.uint(0x0102, 2))
      assert.equal("\255\255\255\255\255\255\255\255", codec.uint(-1))
      assert.equal("\128\0\0\0\0\0\0\0", codec.int(0))
      assert.equal("\127\255\255\255\255\255\255\255", codec.int(-1))
      assert.equal("\127\255", codec.int(-1, 2))
      assert.equal("\0", codec.int(-128, 1))
      assert.equal("\255", codec.int(127, 1))
    end)

    it("reject values that do not fit and sizes out of range", function()
      assert.equal("bad argument #1 to 'uint' (256 does not fit in u1)",
                   h.errmsg(function() codec.uint(256, 1) end))
      assert.equal("bad argument #1 to 'uint' (-1 does not fit in u4)",
                   h.errmsg(function() codec.uint(-1, 4) end))
      assert.equal("bad argument #1 to 'int' (128 does not fit in i1)",
                   h.errmsg(function() codec.int(128, 1) end))
      assert.equal("bad argument #2 to 'int' (size must be an integer in "
                   .. "1..8)", h.errmsg(function() codec.int(1, 9) end))
      assert.equal("bad argument #1 to 'int' (integer expected, got "
                   .. "float 1.5)", h.errmsg(function() codec.int(1.5) end))
      assert.equal("bad argument #1 to 'int' (integer expected, got "
                   .. "float 1e+300)",
                   h.errmsg(function() codec.int(1e300) end))
      -- an integral float is its integer, as for the engine's arguments
      assert.equal(codec.int(1024), codec.int(2^10))
      assert.equal(codec.uint(3, 2), codec.uint(3.0, 2))
      assert.equal(codec.encode("i8 u4", 1024, 3),
                   codec.encode("i8 u4", 2^10, 3.0))
      assert.equal("bad argument #1 to 'uint' (integer expected, got "
                   .. "string)", h.errmsg(function() codec.uint("1") end))
    end)
  end)

  describe(".double()", function()
    it("sorts as the numbers do", function()
      local xs = { -math.huge, -1e300, -2.5, -1, -1e-300, -0.0, 0.0, 1e-300,
                   0.5, 1, 2.5, 1e300, math.huge }
      for i = 1, #xs do
        for j = 1, #xs do
          local want = i == j and 0 or (i < j and -1 or 1)
          assert.equal(want, bytecmp(codec.double(xs[i]),
                                     codec.double(xs[j])))
        end
      end
      for _ = 1, 1000 do
        local a, b = (math.random() - 0.5) * 10 ^ math.random(-20, 20),
                     (math.random() - 0.5) * 10 ^ math.random(-20, 20)
        assert.equal(cmp(a, b), bytecmp(codec.double(a), codec.double(b)))
        assert.equal(a, codec.decode("d", codec.double(a)))
      end
    end)

    it("refuses NaN", function()
      assert.equal("bad argument #1 to 'double' (NaN has no order)",
                   h.errmsg(function() codec.double(0 / 0) end))
    end)
  end)

  describe(".string()", function()
    it("escapes zeros and ends with two zeros", function()
      assert.equal("ab\0\0", codec.string("ab"))
      assert.equal("a\0\255b\0\0", codec.string("a\0b"))
      assert.equal("\0\0", codec.string(""))
    end)

    it("sorts as the strings do, prefixes and zeros included", function()
      local xs = { "", "\0", "\0\0", "\0\1", "\1", "a", "a\0", "a\0\0",
                   "a\0b", "a\1", "ab", "b", "\255", "\255\0", "\255\255" }
      for i = 1, #xs do
        for j = 1, #xs do
          assert.equal(cmp(xs[i], xs[j]), bytecmp(codec.string(xs[i]),
                                                  codec.string(xs[j])))
        end
      end
    end)
  end)

  describe(".encode() and .decode()", function()
    local alphabet = { "\0", "\1", "a", "b", "\255" }
    local function rstring ()
      local t = {}
      for i = 1, math.random(0, 4) do
        t[i] = alphabet[math.random(#alphabet)]
      end
      return table.concat(t)
    end

    it("sort tuples component by component", function()
      local fmt = "s i2 s u1"
      local tuples = {}
      for i = 1, 300 do
        tuples[i] = { rstring(), math.random(-3, 3), rstring(),
                      math.random(0, 2) }
      end
      local function tcmp (a, b)
        for k = 1, 4 do
          local c = cmp(a[k], b[k])
          if c ~= 0 then return c end
        end
        return 0
      end
      for _ = 1, 5000 do
        local a, b = tuples[math.random(#tuples)],
                     tuples[math.random(#tuples)]
        local ka = codec.encode(fmt, a[1], a[2], a[3], a[4])
        local kb = codec.encode(fmt, b[1], b[2], b[3], b[4])
        assert.equal(tcmp(a, b), bytecmp(ka, kb))
        local d = { codec.decode(fmt, ka) }
        assert.same(a, d)
      end
    end)

    it("round-trip every kind at every size", function()
      for n = 1, 8 do
        local hi = n == 8 and math.maxinteger or (1 << (8 * n - 1)) - 1
        local uhi = n == 8 and -1 or (1 << (8 * n)) - 1
        local fmt = "i" .. n .. " u" .. n
        assert.same({ -hi - 1, uhi }, { codec.decode(fmt, codec.encode(fmt,
                                        -hi - 1, uhi)) })
        assert.same({ hi, 0 }, { codec.decode(fmt, codec.encode(fmt, hi,
                                 0)) })
      end
      assert.same({ -0.5, "x\0y", 3 },
                  { codec.decode("d s u", codec.encode("d s u", -0.5, "x\0y",
                                                       3)) })
    end)

    it("know the size of a format", function()
      assert.equal(8, codec.size("u"))
      assert.equal(15, codec.size("u4 i2 d i1"))
      assert.equal(-1, codec.size("u4 s"))
      assert.equal(12, #codec.encode("u4 i", 1, 2))
    end)

    it("reject bad formats and wrong values", function()
      assert.equal("bad argument #1 to 'encode' (invalid option 'x' in "
                   .. "format \"u4x\")",
                   h.errmsg(function() codec.encode("u4x", 1) end))
      -- a key given as the format: escaped bytes, and which comes first
      local key = codec.encode("u4 s", 7, "bob")
      assert.equal("bad argument #1 to 'decode' (invalid option \"\\0\" in "
                   .. "format \"\\0\\0\\0\\7bob\\0\\0\" (the format comes "
                   .. "first: decode(format, ...)))",
                   h.errmsg(function() codec.decode(key, "u4 s") end))
      assert.equal("bad argument #1 to 'encode' (integer size 9 in \"i9\" "
                   .. "is not in 1..8)",
                   h.errmsg(function() codec.encode("i9", 1) end))
      assert.equal("bad argument #1 to 'size' (empty format)",
                   h.errmsg(function() codec.size(" ") end))
      assert.equal("bad argument #1 to 'decode' (format string expected, "
                   .. "got nil)", h.errmsg(function() codec.decode() end))
      assert.equal("bad argument #2 to 'encode' (1 value for 2 components)",
                   h.errmsg(function() codec.encode("u s", 1) end))
      assert.equal("bad argument #3 to 'encode' (string expected, got "
                   .. "number)", h.errmsg(function() codec.encode("u s", 1, 2)
                   end))
      assert.equal("bad argument #2 to 'encode' (number expected, got "
                   .. "boolean)", h.errmsg(function() codec.encode("d", true)
                   end))
    end)

    it("reject keys that are not encodings of the format", function()
      assert.equal("bad argument #2 to 'decode' (key too short for 'u4' at "
                   .. "byte 0)", h.errmsg(function() codec.decode("u4", "ab")
                   end))
      assert.equal("bad argument #2 to 'decode' (key too short for 's end' "
                   .. "at byte 2)", h.errmsg(function()
                   codec.decode("s", "ab") end))
      assert.equal("bad argument #2 to 'decode' (bad escape 0x00 0x07 in a "
                   .. "string at byte 1)", h.errmsg(function()
                   codec.decode("s", "a\0\7\0\0") end))
      assert.equal("bad argument #2 to 'decode' (2 bytes left after the "
                   .. "last component)", h.errmsg(function()
                   codec.decode("u1", "abc") end))
      assert.equal("bad argument #2 to 'decode' (string expected, got nil)",
                   h.errmsg(function() codec.decode("u1") end))
      -- encode refuses NaN, so a key holding one is no encoding: each
      -- half of NaN's patterns, as the order maps them
      for _, nan in ipairs { ("\255"):rep(8), "\0\7" .. ("\255"):rep(6),
                             ("\0"):rep(8) } do
        local key = "\1" .. nan
        assert.equal("bad argument #2 to 'decode' (a NaN at byte 1, which "
                     .. "no key encodes)", h.errmsg(function()
                     codec.decode("u1 d", key) end))
      end
      -- the largest and least patterns that are no NaN decode
      assert.equal(math.huge, codec.decode("d", codec.double(math.huge)))
      assert.equal(-math.huge, codec.decode("d", codec.double(-math.huge)))
    end)
  end)
end)
