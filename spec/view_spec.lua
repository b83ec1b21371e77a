-- Specs of views: bounds-checked, tracked windows on blocks.
local BS = 4096

describe("fmap.View", function()
  local bf, off, v
  before_each(function()
    bf = assert(fmap.anonymous())
    off = bf:allocate_blocks(2)
    v = bf:get(off, 2)
  end)
  after_each(function()
    if v:live() then v:release() end
    h.no_live_views(bf)
    bf:close()
  end)

  describe("#", function()
    it("is the length in bytes", function()
      assert.equal(2 * BS, #v)
      assert.equal(off, v:offset())
      assert.equal(2, v:blocks())
    end)
  end)

  describe(":release()", function()
    it("makes every later use raise", function()
      v:release()
      assert.is_false(v:live())
      for name, f in pairs({
        len = function() return #v end,
        read = function() return v:read(0, 1) end,
        write = function() v:write(0, "x") end,
        u64 = function() return v:u64(0) end,
        set_u64 = function() v:set_u64(0, 1) end,
        pack = function() v:pack(0, "i4", 1) end,
        unpack = function() return v:unpack("i4") end,
        hex = function() return v:hex() end,
        offset = function() return v:offset() end,
      }) do
        assert.matches("^attempt to use a released view %(offset " .. off
                       .. ", 8192 bytes, acquired at spec/view_spec.lua:%d+%)$",
                       h.errmsg(f), name)
      end
      assert.equal("view (offset " .. off .. ", 8192 bytes, released)",
                   tostring(v))
    end)

    it("is what leaving a <close> scope does", function()
      local kept
      do
        local w <close> = bf:get(off)
        kept = w
        assert.is_true(w:live())
      end
      assert.is_false(kept:live())
    end)
  end)

  describe(":read() and :write()", function()
    it("round-trip bytes, zeros included", function()
      local s = "a\0b\255c"
      assert.equal(5, v:write(0, s))
      assert.equal(s, v:read(0, 5))
      assert.equal(2 * BS - 5, #v:read(5))
      assert.equal(2 * BS, #v:read())
      assert.equal("", v:read(2 * BS, 0))
      assert.equal(2 * BS, v:write(2 * BS - 3, "end"))
      assert.equal("end", v:read(2 * BS - 3))
    end)

    it("write past the end raises and writes nothing", function()
      assert.equal("bad argument #1 to 'write' (position 8190 + length 3 is "
                   .. "outside the view (8192 bytes))",
                   h.errmsg(function() v:write(2 * BS - 2, "abc") end))
      assert.equal("\0\0", v:read(2 * BS - 2))
    end)

    it("rejects negative, huge and non-integer positions", function()
      assert.equal("bad argument #1 to 'read' (position -1 is outside the "
                   .. "view (8192 bytes))",
                   h.errmsg(function() v:read(-1, 1) end))
      assert.equal("bad argument #1 to 'read' (position "
                   .. math.maxinteger .. " is outside the view (8192 bytes))",
                   h.errmsg(function() v:read(math.maxinteger, 1) end))
      assert.equal("bad argument #1 to 'read' (position 0 + length "
                   .. math.maxinteger .. " is outside the view (8192 bytes))",
                   h.errmsg(function() v:read(0, math.maxinteger) end))
      assert.equal("bad argument #1 to 'read' (position 1 + length -1 is "
                   .. "outside the view (8192 bytes))",
                   h.errmsg(function() v:read(1, -1) end))
      assert.equal("bad argument #1 to 'write' (position "
                   .. math.mininteger .. " is outside the view (8192 bytes))",
                   h.errmsg(function() v:write(math.mininteger, "x") end))
      assert.equal("bad argument #1 to 'read' (number has no integer "
                   .. "representation)", h.errmsg(function() v:read(0.5) end))
      assert.equal("bad argument #2 to 'write' (string expected, got nil)",
                   h.errmsg(function() v:write(0, nil) end))
    end)
  end)

  describe(":fill()", function()
    it("fills all or part of the view", function()
      v:fill(0x41)
      assert.equal(string.rep("A", 2 * BS), v:read())
      v:fill(0x42, 10, 3)
      assert.equal("ABBBA", v:read(9, 5))
      v:fill(0, 2 * BS - 1)
      assert.equal("A\0", v:read(2 * BS - 2))
    end)

    it("rejects a value that is not a byte", function()
      assert.equal("bad argument #1 to 'fill' (byte 256 is not in 0..255)",
                   h.errmsg(function() v:fill(256) end))
      assert.equal("bad argument #2 to 'fill' (position 8193 is outside the "
                   .. "view (8192 bytes))",
                   h.errmsg(function() v:fill(1, 2 * BS + 1) end))
    end)
  end)

  describe(":compare()", function()
    it("compares with a string as memcmp does", function()
      v:write(0, "hello")
      assert.equal(0, v:compare(0, "hello"))
      assert.equal(1, v:compare(0, "hella"))
      assert.equal(-1, v:compare(0, "hellz"))
      assert.equal(0, v:compare(1, "ell"))
      assert.equal(0, v:compare(0, "xxhellxx", 2, 4))
      assert.equal(0, v:compare(0, ""))
    end)

    it("compares with a view, this one too", function()
      v:write(0, "abcabd")
      assert.equal(0, v:compare(0, v, 0, 6))
      assert.equal(-1, v:compare(0, v, 3, 3))
      assert.equal(1, v:compare(3, v, 0, 3))
      local w <close> = bf:get(bf:allocate())
      w:write(0, "abc")
      assert.equal(0, v:compare(0, w, 0, 3))
      assert.equal(1, v:compare(0, w, 3, 3))   -- "abc" > "\0\0\0"
    end)

    it("rejects spans outside either side", function()
      assert.equal("bad argument #4 to 'compare' (position 2 + length 5 is "
                   .. "outside the other (3 bytes))",
                   h.errmsg(function() v:compare(0, "abc", 2, 5) end))
      assert.equal("bad argument #1 to 'compare' (position 8191 + length 3 "
                   .. "is outside the view (8192 bytes))",
                   h.errmsg(function() v:compare(2 * BS - 1, "abc") end))
      assert.equal("bad argument #2 to 'compare' (string or view expected, "
                   .. "got number)", h.errmsg(function() v:compare(0, 5) end))
      local w, at = bf:get(off), h.line()
      w:release()
      assert.equal("bad argument #2 to 'compare' (a released view: offset "
                   .. off .. ", 4096 bytes, acquired at spec/view_spec.lua:"
                   .. at .. ")", h.errmsg(function() v:compare(0, w) end))
    end)
  end)

  describe(":copy()", function()
    it("moves bytes like memmove, overlapping ranges included", function()
      v:write(0, "0123456789")
      v:copy(2, v, 0, 8)
      assert.equal("0101234567", v:read(0, 10))
      v:copy(0, v, 2, 8)
      assert.equal("0123456767", v:read(0, 10))
      local w <close> = bf:get(bf:allocate())
      w:copy(100, v, 0, 4)
      assert.equal("0123", w:read(100, 4))
    end)

    it("rejects spans outside either view", function()
      assert.equal("bad argument #3 to 'copy' (position 8190 + length 4 is "
                   .. "outside the view (8192 bytes))",
                   h.errmsg(function() v:copy(0, v, 2 * BS - 2, 4) end))
      assert.equal("bad argument #1 to 'copy' (position 8190 + length 4 is "
                   .. "outside the view (8192 bytes))",
                   h.errmsg(function() v:copy(2 * BS - 2, v, 0, 4) end))
      assert.equal("bad argument #2 to 'copy' (view expected, got string)",
                   h.errmsg(function() v:copy(0, "abc", 0, 3) end))
    end)
  end)

  describe(":hex()", function()
    it("dumps bytes like hexdump -C, folding repeated lines", function()
      v:write(0, "hello, world")
      assert.equal(
        "00000000  68 65 6c 6c 6f 2c 20 77  6f 72 6c 64 00 00 00 00"
        .. "  |hello, world....|\n"
        .. "00000010  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00"
        .. "  |................|\n"
        .. "*\n"
        .. "00001ff0  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00"
        .. "  |................|\n", v:hex())
      assert.equal("00000001  65 6c" .. string.rep(" ", 45) .. "|el|\n",
                   v:hex(1, 2))
    end)
  end)

  describe(":pack() and :unpack()", function()
    it("say which comes first when the position and the format are "
       .. "swapped", function()
      assert.equal("bad argument #1 to 'unpack' (format expected, got "
                   .. "number; unpack takes the format first: "
                   .. "v:unpack(fmt [, pos]))",
                   h.errmsg(function() return v:unpack(0, "<I8") end))
      assert.equal("bad argument #1 to 'pack' (position expected, got "
                   .. "string; pack takes the position first: "
                   .. "v:pack(pos, fmt, ...))",
                   h.errmsg(function() v:pack("<I8", 0, 1) end))
    end)

    it("lay values out exactly as string.pack does", function()
      local cases = {
        { "<I8s2", 42, "hello" },
        { ">i4I2b", -5, 65535, -128 },
        { "<jJT", math.mininteger, -1, 123 },
        { "!8 i4 Xi8 d", 7, 2.5 },
        { "<f d n", 1.5, -0.25, 1e300 },
        { "c5 z s1", "ab", "zero-ended", "short" },
        { ">i16 <I16", -2, 3 },
        { "=hHlLxB", -1, 2, -3, 4, 5 },
        { "!4 b Xh i2 x Xi4 I4", 1, 2, 3 },
      }
      for _, c in ipairs(cases) do
        local fmt = c[1]
        local expect = string.pack(fmt, table.unpack(c, 2))
        v:fill(0xEE)
        local nextpos = v:pack(3, fmt, table.unpack(c, 2))
        -- alignment is relative to the view's start, as string.pack's
        -- is relative to the string's; so compare at an aligned spot
        nextpos = v:pack(16, fmt, table.unpack(c, 2))
        assert.equal(16 + #expect, nextpos, fmt)
        assert.equal(expect, v:read(16, #expect), fmt)
        local got = { v:unpack(fmt, 16) }
        local want = { string.unpack(fmt, expect) }
        assert.equal(#want, #got, fmt)
        for i = 1, #want - 1 do assert.equal(want[i], got[i], fmt) end
        assert.equal(want[#want] - 1 + 16, got[#got], fmt)
      end
    end)

    it("unpacks from position 0 by default and returns the next position",
       function()
      v:pack(0, "<I4I4", 1, 2)
      assert.same({ 1, 2, 8 }, { v:unpack("<I4I4") })
      assert.same({ 2, 8 }, { v:unpack("<I4", 4) })
    end)

    it("writes nothing when a value is wrong", function()
      v:fill(0x11, 0, 16)
      assert.equal("bad argument #4 to 'pack' (integer overflow)",
                   h.errmsg(function() v:pack(0, "<i4i1", 5, 300) end))
      assert.equal("bad argument #3 to 'pack' (number expected, got string)",
                   h.errmsg(function() v:pack(0, "<i4", "x") end))
      assert.equal(string.rep("\17", 16), v:read(0, 16))
    end)

    it("writes nothing when the result passes the end", function()
      v:fill(0x11, 2 * BS - 8)
      assert.equal("bad argument #1 to 'pack' (position 8188 + 8 packed "
                   .. "bytes is outside the view (8192 bytes))",
                   h.errmsg(function()
                     v:pack(2 * BS - 4, "<I4I4", 1, 2)
                   end))
      assert.equal(string.rep("\17", 8), v:read(2 * BS - 8))
    end)

    it("reports reads past the end and bad formats", function()
      assert.equal("bad argument #2 to 'unpack' (format reads past the end "
                   .. "of the view (8192 bytes) at position 8188)",
                   h.errmsg(function() v:unpack("<I8", 2 * BS - 4) end))
      v:pack(2 * BS - 4, "<I4", 1000)
      assert.equal("bad argument #2 to 'unpack' (string length 1000 at "
                   .. "position 8188 passes the end of the view)",
                   h.errmsg(function() v:unpack("<s4", 2 * BS - 4) end))
      v:fill(1)
      assert.equal("bad argument #2 to 'unpack' (unfinished string for "
                   .. "format 'z')", h.errmsg(function() v:unpack("z") end))
      assert.equal("invalid format option 'y'",
                   h.errmsg(function() v:unpack("y") end))
      assert.equal("integral size (17) out of limits [1,16]",
                   h.errmsg(function() v:unpack("i17") end))
      assert.equal("missing size for format option 'c'",
                   h.errmsg(function() v:unpack("c") end))
      assert.equal("bad argument #1 to 'unpack' (invalid next option for "
                   .. "option 'X')", h.errmsg(function() v:unpack("X") end))
      v:fill(0xff, 0, 16)
      v:fill(0x7f, 9, 1)
      assert.equal("16-byte integer does not fit into Lua Integer",
                   h.errmsg(function() v:unpack("<i16") end))
    end)
  end)

  describe("fixed-width integers", function()
    it("read and write little-endian values of 1, 2, 4 and 8 bytes",
       function()
      v:set_u8(0, 255); v:set_u16(1, 65535); v:set_u32(3, 0xDEADBEEF)
      v:set_u64(7, -2)
      assert.equal(255, v:u8(0)); assert.equal(-1, v:i8(0))
      assert.equal(65535, v:u16(1)); assert.equal(-1, v:i16(1))
      assert.equal(0xDEADBEEF, v:u32(3))
      assert.equal(0xDEADBEEF - (1 << 32), v:i32(3))
      assert.equal(-2, v:u64(7)); assert.equal(-2, v:i64(7))
      assert.equal(string.pack("<BI2I4i8", 255, 65535, 0xDEADBEEF, -2),
                   v:read(0, 15))
      v:set_i16(20, -300)
      assert.equal(-300, v:i16(20))
      assert.equal(65536 - 300, v:u16(20))
    end)

    it("reject values that do not fit", function()
      assert.equal("bad argument #2 to 'set_u8' (256 does not fit in 1 "
                   .. "byte)", h.errmsg(function() v:set_u8(0, 256) end))
      assert.equal("bad argument #2 to 'set_u16' (-32769 does not fit in 2 "
                   .. "bytes)", h.errmsg(function() v:set_u16(0, -32769) end))
      assert.equal("bad argument #2 to 'set_u32' (number has no integer "
                   .. "representation)",
                   h.errmsg(function() v:set_u32(0, 0.5) end))
    end)

    it("check bounds", function()
      assert.equal("bad argument #1 to 'u64' (position 8185 + 8 bytes is "
                   .. "outside the view (8192 bytes))",
                   h.errmsg(function() return v:u64(2 * BS - 7) end))
      assert.equal("bad argument #1 to 'u8' (position -1 + 1 bytes is "
                   .. "outside the view (8192 bytes))",
                   h.errmsg(function() return v:u8(-1) end))
      assert.equal("bad argument #1 to 'set_u32' (position "
                   .. math.maxinteger .. " + 4 bytes is outside the view "
                   .. "(8192 bytes))",
                   h.errmsg(function() v:set_u32(math.maxinteger, 1) end))
      assert.equal(0, v:u64(2 * BS - 8))
    end)
  end)

  describe(":bsearch()", function()
    -- The reference: the first of keys (a sorted list) >= key (> key with
    -- upper), 0-based, and whether one equals it.
    local function reference (keys, key, upper)
      local found = false
      for i, k in ipairs(keys) do
        if k == key then found = true end
        if k > key or (k == key and not upper) then return i - 1, found end
      end
      return #keys, found
    end

    it("finds what a plain binary search finds, however the keys spread",
       function()
      -- entries of a 16-byte key and 8 bytes beside, up to 300 in 2 blocks
      local bf2 = assert(fmap.anonymous())
      local big <close> = bf2:get(bf2:allocate_blocks(2), 2)
      local function be (x) return string.pack(">I8", x) end
      local spreads = {
        scattered = function (i) return be(i * 0x9E3779B97F4A7C15) .. be(i) end,
        counted = function (i) return be(i) .. be(0) end,
        clustered = function (i)   -- most share their first 8 bytes
          return be(i % 10 == 0 and i or 5000) .. be(i) end,
        doubling = function (i) return be(1 << (i % 63)) .. be(i) end,
        duplicated = function (i) return be(i // 7 * 1000) .. be(0) end,
        prefix = function (i) return be(42) .. be(i * 977) end,
        edges = function (i)
          return be(i % 2 == 0 and 0 or -1) .. be(i) end,
      }
      local probes = 0
      for name, make in pairs(spreads) do
        for _, n in ipairs({ 1, 16, 17, 40, 170, 300 }) do
          local keys = {}
          for i = 1, n do keys[i] = make(i) end
          table.sort(keys)
          for i, k in ipairs(keys) do
            big:write((i - 1) * 24, k)
            big:set_u64((i - 1) * 24 + 16, i)
          end
          local tries = {}
          for i = 1, n, math.max(1, n // 25) do
            local k = keys[i]
            tries[#tries + 1] = k                               -- present
            tries[#tries + 1] = k:sub(1, 15) .. string.char((k:byte(16) + 1) % 256)
            tries[#tries + 1] = k:sub(1, 8) .. ("\0"):rep(8)    -- between
          end
          tries[#tries + 1] = ("\0"):rep(16)
          tries[#tries + 1] = ("\255"):rep(16)
          for _ = 1, 30 do                                      -- anywhere
            tries[#tries + 1] = be(math.random(math.mininteger,
                                               math.maxinteger)) .. be(0)
          end
          for _, key in ipairs(tries) do
            for _, upper in ipairs({ false, true }) do
              local i, found = reference(keys, key, upper)
              local where = string.format("%s, %d keys, key %s, upper %s",
                                          name, n, (key:gsub(".",
                function (c) return ("%02x"):format(c:byte()) end)),
                tostring(upper))
              assert.same({ i, found }, { big:bsearch(0, n, 24, key, upper) },
                          where)
              local j, f2, field = big:bsearch(0, n, 24, key, upper, 16)
              assert.same({ i, found }, { j, f2 }, where)
              if i < n then assert.equal(i + 1, field, where) end
              probes = probes + 1
            end
          end
        end
      end
      assert.is_true(probes > 2000)
      big:release()
      bf2:close()
    end)

    it("finds the first entry not below the key", function()
      -- 5 entries of 12 bytes: a 4-byte big-endian key, then 8 bytes
      for i, k in ipairs({ 10, 20, 20, 30, 40 }) do
        v:pack(100 + (i - 1) * 12, ">I4<i8", k, i)
      end
      local function key(k) return string.pack(">I4", k) end
      assert.same({ 0, false }, { v:bsearch(100, 5, 12, key(5)) })
      assert.same({ 0, true }, { v:bsearch(100, 5, 12, key(10)) })
      assert.same({ 1, true }, { v:bsearch(100, 5, 12, key(20)) })
      assert.same({ 3, true }, { v:bsearch(100, 5, 12, key(20), true) })
      assert.same({ 3, false }, { v:bsearch(100, 5, 12, key(25)) })
      assert.same({ 5, false }, { v:bsearch(100, 5, 12, key(50)) })
      assert.same({ 5, true }, { v:bsearch(100, 5, 12, key(40), true) })
      assert.same({ 0, false }, { v:bsearch(100, 0, 12, key(40)) })
    end)

    it("rejects runs that pass the view", function()
      assert.equal("bad argument #1 to 'bsearch' (1000 entries of 16 bytes "
                   .. "(keys of 4) from position 0 pass the view (8192 "
                   .. "bytes))", h.errmsg(function()
                     v:bsearch(0, 1000, 16, "abcd")
                   end))
      assert.equal("bad argument #2 to 'bsearch' (count -1 is negative)",
                   h.errmsg(function() v:bsearch(0, -1, 16, "abcd") end))
      assert.equal("bad argument #1 to 'bsearch' (1 entry of 1 byte (keys "
                   .. "of 4) from position 8190 pass the view (8192 bytes))",
                   h.errmsg(function() v:bsearch(#v - 2, 1, 1, "abcd") end))
      -- a stride of 0 is the stride's fault, whatever the run
      for _, count in ipairs({ 1, 2, 5000 }) do
        assert.equal("bad argument #3 to 'bsearch' (stride 0: a sorted "
                     .. "run's entries are at least a byte apart)",
                     h.errmsg(function() v:bsearch(0, count, 0, "a") end))
      end
      assert.same({ 0, false }, { v:bsearch(0, 0, 0, "a") })   -- no run
    end)

    it("returns the field beside the hit when asked", function()
      -- an internal node's shape: child 0 at 92, then entries of a 4-byte
      -- key and the child after it, 12 bytes apart from 100
      v:set_u64(92, 1000)
      for i, k in ipairs({ 10, 20, 30 }) do
        v:pack(100 + (i - 1) * 12, ">I4<i8", k, 1000 + i)
      end
      local function key(k) return string.pack(">I4", k) end
      -- the child: the u64 at at + index * stride
      assert.same({ 0, false, 1000 }, { v:bsearch(100, 3, 12, key(5), false, 92) })
      assert.same({ 2, true, 1002 }, { v:bsearch(100, 3, 12, key(20), true, 92) })
      assert.same({ 3, false, 1003 }, { v:bsearch(100, 3, 12, key(99), false, 92) })
      -- a string of len bytes: the value of a leaf's entry
      assert.same({ 1, true, key(20) }, { v:bsearch(100, 3, 12, key(20), false, 100, 4) })
      assert.same({ 0, false, "" }, { v:bsearch(100, 0, 12, key(20), false, 100, 0) })
      -- a field that passes the view is nil, never a read outside it
      local last = #v - 8
      assert.same({ 3, false, nil }, { v:bsearch(100, 3, 12, key(99), false, last) })
      assert.same({ 0, false, nil }, { v:bsearch(100, 3, 12, key(5), false, last, 9) })
      assert.same({ 0, false, nil }, { v:bsearch(100, 3, 12, key(5), false, #v + 1) })
      assert.same({ 0, false, nil }, { v:bsearch(100, 3, 12, key(5), false, math.maxinteger) })
      assert.equal("bad argument #6 to 'bsearch' (position -1 is negative)",
                   h.errmsg(function() v:bsearch(100, 3, 12, key(5), false, -1) end))
      assert.equal("bad argument #7 to 'bsearch' (length -2 is negative)",
                   h.errmsg(function() v:bsearch(100, 3, 12, key(5), false, 100, -2) end))
      assert.equal("bad argument #6 to 'bsearch' (number expected, got string)",
                   h.errmsg(function() v:bsearch(100, 3, 12, key(5), false, "x") end))
    end)
  end)

  describe(":search()", function()
    it("searches a node whose count is in the node", function()
      -- a leaf's shape: a u32 count at 60, then entries of a 4-byte key
      -- and a 4-byte value, 8 bytes apart from 64
      v:set_u32(60, 3)
      for i, k in ipairs({ 10, 20, 30 }) do
        v:pack(64 + (i - 1) * 8, ">I4c4", k, "v" .. k .. "x")
      end
      v:pack(64 + 3 * 8, ">I4", 40)     -- past the count: not an entry
      local function key(k) return string.pack(">I4", k) end
      assert.same({ 1, true, nil, 3 }, { v:search(60, 64, 8, key(20)) })
      assert.same({ 3, false, nil, 3 }, { v:search(60, 64, 8, key(40)) })
      assert.same({ 2, true, nil, 3 }, { v:search(60, 64, 8, key(20), true) })
      assert.same({ 2, true, "v30x", 3 },
                  { v:search(60, 64, 8, key(30), false, 68, 4) })
      v:set_u32(60, 0)
      assert.same({ 0, false, nil, 0 }, { v:search(60, 64, 8, key(20)) })
    end)

    it("refuses a count or entries outside the view", function()
      assert.equal("bad argument #1 to 'search' (count position 8190 is "
                   .. "outside the view (8192 bytes))", h.errmsg(function()
                     v:search(#v - 2, 0, 8, "abcd")
                   end))
      assert.equal("bad argument #1 to 'search' (count position -1 is "
                   .. "outside the view (8192 bytes))", h.errmsg(function()
                     v:search(-1, 0, 8, "abcd")
                   end))
      v:set_u32(60, 2)
      assert.equal("bad argument #3 to 'search' (stride 0: a sorted run's "
                   .. "entries are at least a byte apart)",
                   h.errmsg(function() v:search(60, 64, 0, "abcd") end))
      assert.equal("bad argument #3 to 'remove_key' (stride 0: a sorted "
                   .. "run's entries are at least a byte apart)",
                   h.errmsg(function() v:remove_key(60, 64, 0, "abcd") end))
      assert.equal(2, v:u32(60))
      v:set_u32(60, 0xFFFFFFFF)
      assert.equal("bad argument #2 to 'search' (4294967295 entries of 8 "
                   .. "bytes (keys of 4) from position 64 pass the view "
                   .. "(8192 bytes))", h.errmsg(function()
                     v:search(60, 64, 8, "abcd")
                   end))
      v:set_u32(60, 0)
    end)
  end)

  describe(":remove_key()", function()
    it("removes a key's entries from a counted run", function()
      local function key(k) return string.pack(">I4", k) end
      local function fill (keys)
        v:set_u32(60, #keys)
        for i, k in ipairs(keys) do v:pack(64 + (i - 1) * 8, ">I4I4", k, i) end
      end
      local function keys ()
        local r = {}
        for i = 0, v:u32(60) - 1 do r[#r + 1] = (string.unpack(">I4", v:read(64 + i * 8, 4))) end
        return r
      end
      fill({ 10, 20, 20, 20, 30 })
      assert.same({ 1, 3, 2 }, { v:remove_key(60, 64, 8, key(20)) })
      assert.same({ 10, 30 }, keys())
      -- 30's value came down with it
      assert.equal(5, (string.unpack(">I4", v:read(64 + 8 + 4, 4))))
      assert.same({ 1, 0, 2 }, { v:remove_key(60, 64, 8, key(25)) })
      assert.same({ 2, 0, 2 }, { v:remove_key(60, 64, 8, key(99)) })
      assert.same({ 1, 1, 1 }, { v:remove_key(60, 64, 8, key(30)) })
      assert.same({ 0, 1, 0 }, { v:remove_key(60, 64, 8, key(10)) })
      assert.same({ 0, 0, 0 }, { v:remove_key(60, 64, 8, key(10)) })
      -- the entries reaching the run's end
      fill({ 10, 20, 20 })
      assert.same({ 1, 2, 1 }, { v:remove_key(60, 64, 8, key(20)) })
      assert.same({ 10 }, keys())
    end)

    it("refuses an empty key, which would remove every entry", function()
      v:set_u32(60, 3)
      assert.equal("bad argument #4 to 'remove_key' (an empty key would "
                   .. "remove every entry)", h.errmsg(function()
                     v:remove_key(60, 64, 8, "")
                   end))
      assert.equal(3, v:u32(60))
    end)

    it("refuses a run that passes the view, changing nothing", function()
      v:set_u32(60, 1100)
      assert.equal("bad argument #2 to 'remove_key' (1100 entries of 8 "
                   .. "bytes (keys of 4) from position 64 pass the view "
                   .. "(8192 bytes))", h.errmsg(function()
                     v:remove_key(60, 64, 8, "abcd")
                   end))
      assert.equal(1100, v:u32(60))
      v:set_u32(60, 2)
      assert.matches("pass the view", h.errmsg(function()
        v:remove_key(60, 64, 2, "abcd")          -- keys longer than entries
      end))
      assert.equal("bad argument #1 to 'remove_key' (count position 8189 is "
                   .. "outside the view (8192 bytes))", h.errmsg(function()
                     v:remove_key(#v - 3, 64, 8, "abcd")
                   end))
      v:set_u32(60, 0)
    end)
  end)

  describe(":insert_key()", function()
    local function key (k) return string.pack(">I4", k) end
    -- the run's entries as "key:value" strings
    local function entries ()
      local r = {}
      for i = 0, v:u32(60) - 1 do
        local k, val = string.unpack(">I4c4", v:read(64 + i * 8, 8))
        r[#r + 1] = k .. ":" .. val
      end
      return r
    end

    it("puts an entry in order, after the equal ones, and counts it",
       function()
      v:set_u32(60, 0)
      assert.same({ 0, 1, true }, { v:insert_key(60, 64, 8, 4, key(20),
                                                 "b1__") })
      assert.same({ 0, 2, true }, { v:insert_key(60, 64, 8, 4, key(10),
                                                 "a___") })
      assert.same({ 2, 3, true }, { v:insert_key(60, 64, 8, 4, key(20),
                                                 "b2__") })
      assert.same({ 3, 4, true }, { v:insert_key(60, 64, 8, 4, key(30),
                                                 "c___") })
      assert.same({ "10:a___", "20:b1__", "20:b2__", "30:c___" }, entries())
      -- full: nothing moves, and where it would go is told
      assert.same({ 1, 4, false }, { v:insert_key(60, 64, 8, 4, key(15),
                                                  "x___") })
      assert.same({ "10:a___", "20:b1__", "20:b2__", "30:c___" }, entries())
      assert.equal(0, v:u32(64 + 4 * 8))    -- past the capacity: untouched
      -- a key alone, as long as an entry; a key shorter than the entry's
      -- leads compares by its bytes
      v:set_u32(60, 0)
      assert.same({ 0, 1, true }, { v:insert_key(60, 64, 8, 4, "abcdefgh") })
      assert.same({ 1, 2, true }, { v:insert_key(60, 64, 8, 4, "abcd",
                                                 "zzzz") })
      assert.equal("abcdefghabcdzzzz", v:read(64, 16))
      v:set_u32(60, 0)
    end)

    it("refuses misuse and damage, changing nothing", function()
      v:set_u32(60, 2)
      v:write(64, ("\0"):rep(16))
      local before = v:read(60, 24)
      assert.equal("bad argument #5 to 'insert_key' (a key of 4 bytes and a "
                   .. "value of 3 make no entry of 8)", h.errmsg(function()
                     v:insert_key(60, 64, 8, 4, "abcd", "xyz")
                   end))
      assert.equal("bad argument #4 to 'insert_key' (the node holds 2 "
                   .. "entries, more than its capacity 1)", h.errmsg(function()
                     v:insert_key(60, 64, 8, 1, "abcd", "wxyz")
                   end))
      assert.equal("bad argument #2 to 'insert_key' (1024 entries of 8 "
                   .. "bytes, 8 apart from position 64, pass the view (8192 "
                   .. "bytes))", h.errmsg(function()
                     v:insert_key(60, 64, 8, 1024, "abcd", "wxyz")
                   end))
      assert.equal("bad argument #1 to 'insert_key' (count position 8189 is "
                   .. "outside the view (8192 bytes))", h.errmsg(function()
                     v:insert_key(#v - 3, 64, 8, 4, "abcd", "wxyz")
                   end))
      assert.equal("bad argument #3 to 'insert_key' (stride must be "
                   .. "positive)", h.errmsg(function()
                     v:insert_key(60, 64, 0, 4, "")
                   end))
      assert.equal("bad argument #4 to 'insert_key' (capacity -1 is "
                   .. "negative)", h.errmsg(function()
                     v:insert_key(60, 64, 8, -1, "abcd", "wxyz")
                   end))
      for _, cap in ipairs({ 0, 1 << 32 }) do
        assert.equal("bad argument #4 to 'insert_key' (capacity must be 1 "
                     .. "to 4294967295)", h.errmsg(function()
                       v:insert_key(60, -(1 << 62), 4, cap, "abcd")
                     end))
      end
      assert.equal(before, v:read(60, 24))
      v:set_u32(60, 0)
    end)
  end)

  describe(":put_key()", function()
    local function key (k) return string.pack(">I4", k) end
    local function entries ()
      local r = {}
      for i = 0, v:u32(60) - 1 do
        local k, val = string.unpack(">I4c4", v:read(64 + i * 8, 8))
        r[#r + 1] = k .. ":" .. val
      end
      return r
    end
    -- the statuses (see node.c)
    local INSERTED, REPLACED, FULL, SEVERAL, EDGE_FOUND, EDGE_NEW =
      0, 1, 2, 3, 4, 5

    it("puts a new key in order, or replaces the value of a key's entry",
       function()
      v:set_u32(60, 0)
      assert.same({ 0, 1, INSERTED },
                  { v:put_key(60, 64, 8, 4, key(20), "b___") })
      assert.same({ 0, 2, INSERTED },
                  { v:put_key(60, 64, 8, 4, key(10), "a___") })
      assert.same({ 1, 2, REPLACED, "b___" },
                  { v:put_key(60, 64, 8, 4, key(20), "B___") })
      assert.same({ 2, 3, INSERTED },
                  { v:put_key(60, 64, 8, 4, key(30), "c___") })
      assert.same({ "10:a___", "20:B___", "30:c___" }, entries())
      -- a key with two entries: nothing done
      v:insert_key(60, 64, 8, 4, key(20), "b2__")
      assert.same({ 1, 4, SEVERAL },
                  { v:put_key(60, 64, 8, 4, key(20), "x___") })
      -- full: a new key stays out, a key's value is still replaced
      assert.same({ 1, 4, FULL },
                  { v:put_key(60, 64, 8, 4, key(15), "x___") })
      assert.same({ 3, 4, REPLACED, "c___" },
                  { v:put_key(60, 64, 8, 4, key(30), "C___") })
      assert.same({ "10:a___", "20:B___", "20:b2__", "30:C___" }, entries())
      v:set_u32(60, 0)
    end)

    it("leaves the run's end to the next leaf the link names", function()
      v:set_u32(60, 0)
      v:set_u64(48, 0)                      -- the link: no next leaf
      assert.same({ 0, 1, INSERTED },
                  { v:put_key(60, 64, 8, 4, key(20), "b___", 48) })
      assert.same({ 0, 1, REPLACED, "b___" },
                  { v:put_key(60, 64, 8, 4, key(20), "B___", 48) })
      v:set_u64(48, 4096)                   -- a next leaf
      assert.same({ 0, 1, EDGE_FOUND },
                  { v:put_key(60, 64, 8, 4, key(20), "x___", 48) })
      assert.same({ 1, 1, EDGE_NEW },
                  { v:put_key(60, 64, 8, 4, key(30), "x___", 48) })
      assert.same({ 0, 2, INSERTED },     -- not at the end: no matter
                  { v:put_key(60, 64, 8, 4, key(10), "a___", 48) })
      assert.same({ "10:a___", "20:B___" }, entries())
      v:set_u32(60, 0)
      v:set_u64(48, 0)
    end)

    it("returns an old value larger than a Lua buffer", function()
      v:set_u32(60, 0)
      local big, big2 = ("v"):rep(3000), ("w"):rep(3000)
      assert.same({ 0, 1, INSERTED },
                  { v:put_key(60, 64, 3004, 2, key(1), big) })
      assert.same({ 0, 1, REPLACED, big },
                  { v:put_key(60, 64, 3004, 2, key(1), big2) })
      assert.equal(big2, v:read(68, 3000))
      v:set_u32(60, 0)
    end)

    it("refuses misuse and damage, changing nothing", function()
      v:set_u32(60, 2)
      v:write(64, ("\0"):rep(16))
      local before = v:read(60, 24)
      assert.equal("bad argument #5 to 'put_key' (a key of 4 bytes and a "
                   .. "value of 3 make no entry of 8)", h.errmsg(function()
                     v:put_key(60, 64, 8, 4, "abcd", "xyz")
                   end))
      assert.equal("bad argument #5 to 'put_key' (an empty key would match "
                   .. "every entry)", h.errmsg(function()
                     v:put_key(60, 64, 8, 4, "", "abcdefgh")
                   end))
      assert.equal("bad argument #6 to 'put_key' (string expected, got no "
                   .. "value)", h.errmsg(function()
                     v:put_key(60, 64, 8, 4, "abcdefgh")
                   end))
      assert.equal("bad argument #4 to 'put_key' (the node holds 2 "
                   .. "entries, more than its capacity 1)", h.errmsg(function()
                     v:put_key(60, 64, 8, 1, "abcd", "wxyz")
                   end))
      assert.equal("bad argument #2 to 'put_key' (1024 entries of 8 "
                   .. "bytes, 8 apart from position 64, pass the view (8192 "
                   .. "bytes))", h.errmsg(function()
                     v:put_key(60, 64, 8, 1024, "abcd", "wxyz")
                   end))
      assert.equal("bad argument #7 to 'put_key' (link position 8188 leaves "
                   .. "no u64 in the view (8192 bytes))", h.errmsg(function()
                     v:put_key(60, 64, 8, 4, "abcd", "wxyz", #v - 4)
                   end))
      assert.equal("bad argument #4 to 'put_key' (capacity must be 1 to "
                   .. "4294967295)", h.errmsg(function()
                     v:put_key(60, 64, 8, 0, "abcd", "wxyz")
                   end))
      assert.equal("bad argument #3 to 'put_key' (stride must be positive)",
                   h.errmsg(function()
                     v:put_key(60, 64, 0, 4, "abcd", "")
                   end))
      assert.equal(before, v:read(60, 24))
      v:set_u32(60, 0)
    end)
  end)

  describe(":insert()", function()
    it("opens a gap and writes the strings into it", function()
      v:write(300, "aabbcc")
      assert.equal(305, v:insert(302, 4, "XY", "Z"))
      assert.equal("aaXYZbbcc", v:read(300, 9))
      assert.equal(302, v:insert(300, 0, "12"))
      assert.equal("12XYZbbcc", v:read(300, 9))
      -- the gap may end at the view's end
      v:write(#v - 4, "tail")
      assert.equal(#v - 2, v:insert(#v - 4, 2, "!!"))
      assert.equal("!!ta", v:read(#v - 4, 4))
    end)

    it("refuses a gap that passes the view, changing nothing", function()
      v:write(#v - 4, "tail")
      assert.equal("bad argument #1 to 'insert' (a gap of 3 bytes at "
                   .. "position 8188 before 2 bytes passes the view (8192 "
                   .. "bytes))", h.errmsg(function()
                     v:insert(#v - 4, 2, "abc")
                   end))
      assert.equal("tail", v:read(#v - 4, 4))
      assert.equal("bad argument #1 to 'insert' (position 0 + length "
                   .. math.maxinteger .. " is outside the view (8192 "
                   .. "bytes))", h.errmsg(function()
                     v:insert(0, math.maxinteger, "a")
                   end))
      assert.equal("bad argument #1 to 'insert' (position -1 is outside "
                   .. "the view (8192 bytes))", h.errmsg(function()
                     v:insert(-1, 0, "a")
                   end))
      assert.equal("bad argument #2 to 'insert' (length -1 is negative)",
                   h.errmsg(function() v:insert(0, -1, "a") end))
      assert.equal("bad argument #1 to 'insert' (a gap of 1 byte at "
                   .. "position 8191 before 1 byte passes the view (8192 "
                   .. "bytes))", h.errmsg(function()
                     v:insert(#v - 1, 1, "a")
                   end))
      assert.equal("tail", v:read(#v - 4, 4))
      assert.equal("bad argument #3 to 'insert' (string expected, got "
                   .. "table)", h.errmsg(function() v:insert(0, 0, {}) end))
    end)
  end)

  describe(":read_entries()", function()
    it("reads fixed-size entries into a table", function()
      for i = 0, 3 do v:write(200 + i * 10, ("k%d"):format(i) .. ("v%d"):format(i)) end
      local t = {}
      assert.equal(4, v:read_entries(t, 200, 4, 10, 2))
      assert.same({ "k0", "k1", "k2", "k3" }, t)
      -- keys and the values after them; the table is reused as it is
      assert.equal(4, v:read_entries(t, 210, 2, 10, 2, 2))
      assert.same({ "k1", "v1", "k2", "v2" }, t)
      assert.equal(0, v:read_entries(t, 0, 0, 10, 2))
      assert.equal(1, v:read_entries(t, #v - 3, 1, 0, 3))
      assert.equal(3, #t[1])
    end)

    it("refuses entries that pass the view", function()
      local t = {}
      assert.equal("bad argument #2 to 'read_entries' (2 entries of 4 bytes, "
                   .. "10 apart from position 8180, pass the view (8192 "
                   .. "bytes))", h.errmsg(function()
                     v:read_entries(t, #v - 12, 2, 10, 2, 2)
                   end))
      assert.matches("pass the view", h.errmsg(function()
        v:read_entries(t, 0, math.maxinteger, 1, 1)
      end))
      assert.equal("bad argument #2 to 'read_entries' (1 entry of 1 byte, 1 "
                   .. "apart from position 8192, pass the view (8192 "
                   .. "bytes))", h.errmsg(function()
                     v:read_entries(t, #v, 1, 1, 1)
                   end))
      -- one entry needs no stride; more at one place is the stride's fault
      assert.equal(1, v:read_entries({}, 0, 1, 0, 1))
      assert.equal("bad argument #4 to 'read_entries' (stride 0 puts 2 "
                   .. "entries at one place)", h.errmsg(function()
                     v:read_entries({}, 0, 2, 0, 1)
                   end))
      assert.matches("pass the view", h.errmsg(function()
        v:read_entries(t, 0, 1, 1, math.maxinteger, math.maxinteger)
      end))
      assert.matches("pass the view", h.errmsg(function()
        v:read_entries(t, -1, 1, 1, 1)
      end))
      assert.equal("bad argument #5 to 'read_entries' (length -1 is "
                   .. "negative)", h.errmsg(function()
                     v:read_entries(t, 0, 1, 1, -1)
                   end))
      assert.equal("bad argument #1 to 'read_entries' (table expected, got "
                   .. "nil)", h.errmsg(function()
                     v:read_entries(nil, 0, 1, 1, 1)
                   end))
      assert.same({}, t)
    end)
  end)

  describe("fmap.memclr()", function()
    it("zeroes the view", function()
      v:fill(9)
      fmap.memclr(v)
      assert.equal(string.rep("\0", 2 * BS), v:read())
    end)
  end)

  describe(":tostring()", function()
    it("says where the view is and that it is live", function()
      assert.equal("view (offset " .. off .. ", 8192 bytes, live)",
                   tostring(v))
    end)
  end)

  describe("misuse", function()
    it("names the type expected", function()
      -- a method called with '.' for ':' gets a hint; memclr is no method
      assert.equal("bad argument #1 to 'read' (view expected, got table; "
                   .. "call it with ':')",
                   h.errmsg(function() v.read({}, 0, 1) end))
      assert.equal("bad argument #1 to 'read' (view expected, got number; "
                   .. "call it with ':')", h.errmsg(function() v.read(0, 1) end))
      for m, f in pairs { release = function() v.release() end,
                          live = function() v.live() end,
                          blockfile = function() v.blockfile() end } do
        assert.equal("bad argument #1 to '" .. m .. "' (view expected, got "
                     .. "no value; call it with ':')", h.errmsg(f))
      end
      assert.equal("bad argument #1 to 'remove' (BlockFile expected, got "
                   .. "no value; call it with ':')",
                   h.errmsg(function() bf.remove() end))
      assert.equal("bad argument #1 to 'memclr' (view expected, got no value)",
                   h.errmsg(function() fmap.memclr() end))
      -- with ':', on something that is no view: Lua's own words
      local fake = { read = v.read }
      assert.equal("calling 'read' on bad self (view expected, got table)",
                   h.errmsg(function() fake:read(0, 1) end))
    end)

    it("cannot be fooled by another userdata", function()
      local bfm = getmetatable(bf).__index
      assert.equal("bad argument #1 to 'u32' (view expected, got "
                   .. "fmap.BlockFile; call it with ':')",
                   h.errmsg(function() v.u32(bf, 0) end))
      assert.equal("bad argument #1 to 'allocate' (BlockFile expected, got "
                   .. "fmap.View; call it with ':')",
                   h.errmsg(function() bfm.allocate(v) end))
      -- a file handle dressed as a view: its metatable says view, its bytes
      -- are not one
      local f <close> = assert(io.tmpfile())
      local mt = debug.getmetatable(f)
      debug.setmetatable(f, debug.getmetatable(v))
      local ok, err = pcall(v.u64, f, 0)
      debug.setmetatable(f, mt)
      assert.is_false(ok)
      assert.matches("view expected", err)
    end)
  end)
end)

describe("fmap.View :retarget()", function()
  local bf
  before_each(function() bf = assert(fmap.anonymous()) end)
  after_each(function() h.no_live_views(bf); bf:close() end)

  it("points a live view at other blocks and returns it", function()
    local a, b = bf:allocate(), bf:allocate_blocks(3)
    bf:with(b, 3, function(w) w:write(0, "over there") end)
    local v <close> = bf:get(a)
    v:write(0, "here")
    assert.equal(v, v:retarget(b, 3))
    assert.equal(b, v:offset())
    assert.equal(3 * 4096, #v)
    assert.equal("over there", v:read(0, 10))
    v:retarget(a)
    assert.equal("here", v:read(0, 4))
    assert.equal(1, #bf:live_views())
  end)

  it("rejects a free or out-of-range target and stays where it was",
     function()
    local a, b = bf:allocate(), bf:allocate()
    bf:free(b)
    local v <close> = bf:get(a)
    assert.equal("bad argument #1 to 'retarget' (block at offset " .. b
                 .. " is free)", h.errmsg(function() v:retarget(b) end))
    assert.equal("bad argument #1 to 'retarget' (offset 4097 is not "
                 .. "block-aligned)", h.errmsg(function() v:retarget(4097) end))
    assert.equal("bad argument #2 to 'retarget' (block count 0 is not "
                 .. "positive)", h.errmsg(function() v:retarget(a, 0) end))
    assert.equal(a, v:offset())
  end)

  it("is retired by a free of its new blocks", function()
    local a, b = bf:allocate(), bf:allocate()
    local v = bf:get(a)
    v:retarget(b)
    bf:free(b)
    assert.matches("^attempt to use a view of freed blocks %(offset " .. b
                   .. ", 4096 bytes, acquired at ",
                   h.errmsg(function() v:retarget(a) end))
  end)
end)

describe("fmap.View and finalizers", function()
  -- Any allocation may run a __gc finalizer, which may close, grow (and
  -- so move) or free a BlockFile in the middle of another call. Each of
  -- these loops arms finalizers until one runs inside the call; with a
  -- raw pointer kept across the allocation, the process would crash.
  local path, bf, grows
  before_each(function()
    path = h.tmpname()
    bf = assert(fmap.create(path))
    grows = 0
    -- A collector that starts its cycles soon, whatever heap the specs run
    -- before this one left: the loops below need a finalizer to run inside
    -- a call within their rounds, not once the heap has doubled.
    collectgarbage()
    collectgarbage("incremental", 25, 400, 10)
  end)
  after_each(function()
    collectgarbage("incremental", 200, 100, 13)
    collectgarbage()
    if not tostring(bf):match("closed") then bf:close() end
    os.remove(path)
  end)
  local function arm (fn)
    setmetatable({}, { __gc = function() pcall(fn) end })
  end
  -- A function to call once a round: it keeps one finalizer armed, which
  -- runs fn when the collector finalizes it; the next call arms another.
  local function armer (fn)
    local armed = false
    return function ()
      if armed then return end
      armed = true
      setmetatable({}, { __gc = function() armed = false; fn() end })
    end
  end
  -- Grows the file by 20 blocks, which moves the map, and counts it.
  local function grow ()
    for _ = 1, 20 do bf:allocate() end
    grows = grows + 1
  end
  -- Calls call(w, i) for i = 1, 2, ... with a finalizer armed to release
  -- the view w, until a call raises: one must, saying the view was
  -- released, rather than go on with a dead view.
  local function raises_once_released (w, call)
    local raised = false
    arm(function() if w:live() then w:release() end end)
    for i = 1, 1000000 do
      local ok, err = pcall(call, w, i)
      if not ok then
        assert.matches("released view", err)
        raised = true
        break
      end
    end
    if w:live() then w:release() end
    assert.is_true(raised)
  end

  it("get raises when a finalizer closed the BlockFile during it",
     function()
    local off = bf:allocate()
    local closed, during = false, false
    for _ = 1, 100000 do
      arm(function() if not closed then closed = true; bf:close() end end)
      local ok, v = pcall(bf.get, bf, off)
      if closed then
        during = ok == false or tostring(v):match("file closed") ~= nil
        assert.is_true(ok == false or not v:live())
        if not ok then
          assert.matches("attempt to use a closed BlockFile", v)
        end
        break
      end
      v:release()
    end
    assert.is_true(closed)
    assert.is_boolean(during)
  end)

  it("reads right when finalizers move the map during unpack and hex",
     function()
    local off = bf:allocate()
    local v <close> = bf:get(off)
    v:pack(0, "<c5s1z", "hello", "world", "again")
    for _ = 1, 3000 do
      arm(grow)
      local a, b, c, nxt = v:unpack("<c5s1z")
      assert.same({ "hello", "world", "again", 17 }, { a, b, c, nxt })
      assert.matches("^00000000  68 65 6c 6c 6f", v:hex(0, 32))
    end
    assert.is_true(grows > 0)
  end)

  it("read_entries reads right, or raises, when finalizers move the map, "
     .. "retarget or release the view during it", function()
    local off, other = bf:allocate(), bf:allocate()
    bf:with(other, 1, function (w) w:write(0, ("o"):rep(64)) end)
    local v <close> = bf:get(off)
    for i = 0, 7 do v:write(i * 8, ("k%d"):format(i) .. ("v%d"):format(i)) end
    local want = {}
    for i = 0, 7 do want[#want + 1] = "k" .. i; want[#want + 1] = "v" .. i end
    local moved = 0
    for round = 1, 3000 do
      local action = round % 3
      arm(function()
        if action == 0 then
          grow()
        elseif action == 1 then
          v:retarget(other)
          moved = moved + 1
        end
      end)
      local t = {}
      local n = v:read_entries(t, 0, 8, 8, 2, 2)
      assert.equal(16, n)
      -- each string is the view's bytes when it was read: the first
      -- block's, then, once a retarget happened, the other block's
      local after = false
      for j = 1, 16 do
        after = after or t[j] == "oo"
        assert.equal(after and "oo" or want[j], t[j])
      end
      v:retarget(off)
    end
    assert.is_true(grows > 0 and moved > 0)
    -- a release in the middle raises rather than reading a dead view
    raises_once_released(bf:get(off), function (w)
      w:read_entries({}, 0, 8, 8, 2, 2)
    end)
  end)

  it("insert_key writes right when finalizers move the map, and raises "
     .. "when one releases the view, while it converts its key", function()
    local off = bf:allocate()
    local v <close> = bf:get(off)
    -- 2000 rounds at least, and on until a finalizer has run: how soon
    -- the collector finishes a cycle depends on the heap the specs before
    -- this one left
    local i = 0
    while i < 2000 or grows == 0 and i < 1000000 do
      i = i + 1
      arm(grow)
      v:set_u32(0, 0)
      -- a number key, new each round: making it a string allocates
      local key = 10000000 + i % 90000000
      assert.same({ 0, 1, true }, { v:insert_key(0, 8, 8, 4, key) })
      assert.equal(tostring(key), v:read(8, 8))
    end
    assert.is_true(grows > 0)
    raises_once_released(bf:get(off), function (w, i)
      w:set_u32(0, 0)
      -- a new number each time, so that its string is a new allocation
      w:insert_key(0, 8, 8, 4, 10000000 + i)
    end)
  end)

  it("entry_iterator reads right when finalizers move the map, and raises "
     .. "when one closes the BlockFile, during a step", function()
    local off = bf:allocate()
    -- entries of a fresh content each round, so that every string a step
    -- makes is a new allocation, where a finalizer may run
    local function fill_block (round)
      bf:with(off, 1, function (v)
        for i = 0, 7 do
          v:write(i * 16, ("k%d:%05d"):format(i, round % 100000)
                          .. ("v%d:%05d"):format(i, round % 100000))
        end
      end)
    end
    local function runs (n)
      local done = false
      return function ()
        if not done then done = true; return off, n, 16, 8, 8 end
      end
    end
    for round = 1, 2000 do
      fill_block(round)
      arm(grow)
      local i = 0
      for k, v in bf:entry_iterator(runs(8)) do
        assert.equal(("k%d:%05d"):format(i, round), k)
        assert.equal(("v%d:%05d"):format(i, round), v)
        i = i + 1
      end
      assert.equal(8, i)
    end
    assert.is_true(grows > 0)
    -- A close in the middle of a step, while it makes its first string,
    -- raises rather than reading the second from the map it unmapped.
    -- Young collections come often, and the finalizer closes only inside
    -- a step; each step reads fresh numbers, so its strings are new.
    -- (Without the check after the first string, this crashes.)
    collectgarbage("generational", 1, 100)    -- after_each restores it
    local stepping, hits, counter = false, 0, 0
    local rearm = armer(function ()
      if stepping then pcall(bf.close, bf) end
    end)
    local it
    local function reset ()
      if not tostring(bf):match("closed") then bf:close() end
      bf = assert(fmap.anonymous())
      off = bf:allocate()
      it = bf:entry_iterator(function () return off, 8, 16, 8, 8 end)
    end
    reset()
    for _ = 1, 3000000 do
      rearm()
      bf:with(off, 1, function (w)
        for i = 0, 15 do counter = counter + 1; w:set_u64(i * 8, counter) end
      end)
      -- a random number of allocations, so that a collection falls on
      -- any allocation of the step rather than always on the same one
      for _ = 1, math.random(0, 12) do local _ = {} end
      stepping = true
      local ok, k, v = pcall(it)
      stepping = false
      if ok then
        assert.equal(string.unpack("<I8", k) + 1, string.unpack("<I8", v))
      else
        assert.equal("attempt to use a closed BlockFile", k)
      end
      if tostring(bf):match("closed") then
        if not ok then
          hits = hits + 1                 -- closed by the first string
          if hits == 3 then break end
        end
        reset()
      end
    end
    assert.equal(3, hits)
  end)

  it("a searcher reads right when finalizers move the map, and raises "
     .. "when one closes the BlockFile, while it converts its key",
     function()
    -- a node of one entry: its 8-byte key, the digits of a number of 8,
    -- written without making them a string (which the search's key
    -- would then find interned, with nothing to allocate)
    local function node (o, n)
      local x, p = 0, 10000000
      while p > 0 do
        x = (x << 8) | (48 + n // p % 10)
        p = p // 10
      end
      bf:with(o, 1, function (w)
        w:set_u32(4, 1)
        w:pack(16, ">I8", x)
      end)
    end
    local off = bf:allocate()
    local search = bf:searcher(4, 16, 8)
    -- Young collections come often; a finalizer grows the file only
    -- inside a search, where the key's conversion allocates.
    collectgarbage("generational", 1, 100)    -- after_each restores it
    local inside, moved = false, 0
    local rearm = armer(function ()
      if inside then grow(); moved = moved + 1 end
    end)
    for i = 1, 3000000 do
      rearm()
      node(off, 10000000 + i)
      for _ = 1, math.random(0, 12) do local _ = {} end
      -- a number key: making it a string allocates
      inside = true
      local a, b, c, d = search(off, 10000000 + i)
      inside = false
      assert.same({ 0, true, nil, 1 }, { a, b, c, d })
      if moved == 3 then break end
    end
    assert.equal(3, moved)
    -- a close while the key becomes a string raises; without the check
    -- after the conversion, the search would read the unmapped file
    local searching, hits = false, 0
    rearm = armer(function ()
      if searching then pcall(bf.close, bf) end
    end)
    for i = 1, 3000000 do
      rearm()
      for _ = 1, math.random(0, 12) do local _ = {} end
      searching = true
      local ok, err      -- every other call the descent form, with below
      if i % 2 == 0 then ok, err = pcall(search, off, 20000000 + i)
      else ok, err = pcall(search, off, 20000000 + i, false, 0, search) end
      searching = false
      if tostring(bf):match("closed") then
        assert.is_false(ok)
        assert.equal("attempt to use a closed BlockFile", err)
        hits = hits + 1
        if hits == 3 then break end
        bf = assert(fmap.anonymous())
        off = bf:allocate()
        search = bf:searcher(4, 16, 8)
      else
        assert.is_true(ok)
      end
    end
    assert.equal(3, hits)
  end)

  it("entry_iterator returns each entry whole when a finalizer steps the "
     .. "same iterator into another run during a step", function()
    -- Runs alternate: A, one entry of two strings (8 bytes each), and B,
    -- one entry of one string of 5 bytes. A finalizer that steps the
    -- iterator in the middle of an A step moves it to a B run; the A step
    -- must still return A's two strings, read with A's lengths.
    -- (A step that read its lengths after its first string read B's,
    -- past the end of the map for a B at the end of the file.)
    collectgarbage("generational", 1, 100)    -- after_each restores it
    local off = bf:allocate()
    local w = bf:get(off)
    -- (armed inline, not with armer: with armer's extra call in the
    -- finalizer, ten hits took 68,000-200,000 rounds in the whole file
    -- with FMAP_ALLOC=system, against 22,000-79,000 inline, and 200,000
    -- rounds were at times too few, and once in the whole suite even with
    -- armed inline: up to 1,000,000 now; it stops at ten hits)
    local fills, stepping, armed, nested, counter = 0, false, false, 0, 0
    local it = bf:entry_iterator(function ()
      fills = fills + 1
      if fills % 2 == 1 then return off, 1, 0, 8, 8 end
      return off + 4091, 1, 0, 5
    end)
    for _ = 1, 1000000 do
      if not armed then
        armed = true
        setmetatable({}, { __gc = function ()
          armed = false
          if stepping then nested = nested + 1; pcall(it) end
        end })
      end
      -- fresh bytes each time, so that each string is a new allocation,
      -- where a collection may fall
      counter = counter + 1
      local a = string.pack("<i8i8", counter * 0x9E3779B97F4A7C15, counter)
      w:write(0, a)
      w:write(4091, a:sub(3, 7))
      for _ = 1, math.random(0, 3) do local _ = {} end
      stepping = true
      local x, y = it()
      stepping = false
      if y ~= nil then                       -- an A step
        assert.equal(a:sub(1, 8), x)
        assert.equal(a:sub(9, 16), y)
      else                                   -- a B step: the tail
        assert.equal(a:sub(3, 7), x)
      end
      if nested >= 10 then break end
    end
    w:release()
    assert.is_true(nested >= 10)
  end)

  it("check, free_list and live_views survive a finalizer that closes",
     function()
    local offs = {}
    for i = 1, 100 do offs[i] = bf:allocate() end
    for i = 1, 100, 2 do bf:free(offs[i]) end   -- 50 runs
    local closed = false
    for _ = 1, 100000 do
      arm(function() if not closed then closed = true; bf:close() end end)
      local ok1, r1 = pcall(bf.check, bf)
      local ok2, r2 = pcall(bf.free_list, bf)
      local ok3, r3 = pcall(bf.live_views, bf)
      -- each either worked (before the close) or says the file is closed
      assert.is_true(ok1 and r1 == true or r1:match("closed BlockFile") ~= nil)
      assert.is_true(ok2 and #r2 == 50 or r2:match("closed BlockFile") ~= nil)
      assert.is_true(ok3 and #r3 == 0 or r3:match("closed BlockFile") ~= nil)
      if closed then break end
    end
    assert.is_true(closed)
  end)

  it("write, pack and bsearch look at the view again after converting "
     .. "a number", function()
    local off = bf:allocate()
    for _ = 1, 2000 do
      local v = bf:get(off)
      arm(function() v:release() end)
      local ok, err = pcall(v.write, v, 0, 12345)
      assert.is_true(ok or err:match("released view") ~= nil)
      if v:live() then
        ok, err = pcall(v.pack, v, 0, "z", 678)
        assert.is_true(ok or err:match("released view") ~= nil)
      end
      if v:live() then
        ok, err = pcall(v.bsearch, v, 0, 1, 8, 42)
        assert.is_true(ok or err:match("released view") ~= nil)
      end
      if v:live() then v:release() end
    end
  end)

  it("keeps its metatables out of reach: getmetatable answers a read-only "
     .. "proxy", function()
    local vmt, bmt = getmetatable(bf:get(bf:allocate())), getmetatable(bf)
    -- a view whose metatable lost __gc would be freed while still listed
    assert.equal("the metatable of fmap.View is read-only",
                 h.errmsg(function() vmt.__gc = nil end))
    assert.equal("the metatable of fmap.BlockFile is read-only",
                 h.errmsg(function() bmt.__gc = nil end))
    assert.equal("fmap.View", getmetatable(vmt))
    assert.equal("fmap.BlockFile", getmetatable(bmt))
    rawset(vmt, "__gc", false)   -- changes the proxy, not the metatable
    collectgarbage()
    collectgarbage()
    assert.same({}, bf:live_views())
    rawset(vmt, "__gc", nil)
    -- it reads and iterates as the metatable does
    assert.equal("fmap.View", vmt.__name)
    local keys = {}
    for k in pairs(bmt) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.same({ "__close", "__gc", "__index", "__metatable", "__name",
                  "__tostring" }, keys)
    -- the method table is the views' own: a script may add methods
    vmt.__index.double_u32 = function (w, pos) return 2 * w:u32(pos) end
    local v <close> = bf:get(bf:allocate())
    v:set_u32(0, 21)
    assert.equal(42, v:double_u32(0))
    vmt.__index.double_u32 = nil
  end)

  it("the module's __index called by hand checks its table", function()
    assert.equal("bad argument #1 to '__index' (table expected, got "
                 .. "number)", h.errmsg(function()
                   getmetatable(fmap).__index(42, "codec")
                 end))
  end)

  it("__gc and __close called by hand check their argument's type",
     function()
    local v = bf:get(bf:allocate())
    local vmt, bmt = getmetatable(v), getmetatable(bf)
    bmt.__gc(v)       -- a view is not a BlockFile: nothing happens
    bmt.__gc("x")
    vmt.__gc(bf)      -- nor a BlockFile a view
    vmt.__close(bf, nil)
    assert.is_true(v:live())
    assert.matches("^BlockFile %(", tostring(bf))
    assert.is_false(tostring(bf):match("closed") ~= nil)
    vmt.__gc(v)       -- its own: released, as the collector would
    assert.is_false(v:live())
  end)
end)

describe("fmap.View :bsearch() against a model", function()
  local bf
  before_each(function() bf = assert(fmap.anonymous()) end)
  after_each(function() h.no_live_views(bf); bf:close() end)

  -- memcmp's sign, byte by byte, as the model of the engine's compare
  local function cmp (a, b, n)
    for i = 1, n do
      local x, y = a:byte(i), b:byte(i)
      if x ~= y then return x < y and -1 or 1 end
    end
    return 0
  end

  -- Bytes from a small alphabet, so that keys share long prefixes (whole
  -- 8-byte words equal) and hold 0x00, 0x7f, 0x80 and 0xff (signedness).
  local ALPHABET = { 0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff }
  local function random_key (n)
    local t = {}
    for i = 1, n do t[i] = ALPHABET[math.random(#ALPHABET)] end
    return string.char(table.unpack(t))
  end

  it("agrees with a linear scan for keys of 1 to 40 bytes", function()
    local v <close> = bf:get(bf:allocate_blocks(4), 4)
    for _, kl in ipairs { 1, 3, 7, 8, 9, 15, 16, 17, 24, 31, 32, 40 } do
      local stride = kl + math.random(0, 9)
      local count = math.random(0, math.min(200, (#v - 5) // stride))
      local keys = {}
      for i = 1, count do keys[i] = random_key(kl) end
      table.sort(keys, function (a, b) return cmp(a, b, kl) < 0 end)
      for i, k in ipairs(keys) do
        v:write(5 + (i - 1) * stride, k)
        -- bytes after the key are not part of it
        v:fill(math.random(0, 255), 5 + (i - 1) * stride + kl, stride - kl)
      end
      local probes = { random_key(kl), string.rep("\0", kl),
                       string.rep("\255", kl) }
      for i = 1, 60 do probes[#probes + 1] = keys[math.random(count)] end
      for i = 1, 60 do probes[#probes + 1] = random_key(kl) end
      for _, key in ipairs(probes) do
        if key then
          local lower, upper, found = count, count, false
          for i = count, 1, -1 do
            local c = cmp(keys[i], key, kl)
            if c >= 0 then lower = i - 1 end
            if c > 0 then upper = i - 1 end
            if c == 0 then found = true end
          end
          local what = string.format("kl %d stride %d count %d key %q", kl,
                                     stride, count, key)
          assert.same({ lower, found }, { v:bsearch(5, count, stride, key) },
                      what)
          assert.same({ upper, found },
                      { v:bsearch(5, count, stride, key, true) }, what)
        end
      end
    end
  end)

  it("orders words by their first differing byte, not as integers",
     function()
    local v <close> = bf:get(bf:allocate())
    -- little-endian integer order would put these in the other order
    v:write(0, "\1\0\0\0\0\0\0\2" .. "\0\0\0\0\0\0\0\0")
    v:write(16, "\2\0\0\0\0\0\0\1" .. "\0\0\0\0\0\0\0\0")
    assert.same({ 1, true },
                { v:bsearch(0, 2, 16, "\2\0\0\0\0\0\0\1" .. ("\0"):rep(8)) })
    assert.same({ 1, false },
                { v:bsearch(0, 2, 16, "\1\0\0\0\0\0\0\3" .. ("\0"):rep(8)) })
    assert.same({ 0, false },
                { v:bsearch(0, 2, 16, "\0\255\255\255\255\255\255\255"
                                      .. ("\255"):rep(8)) })
  end)
end)

describe("fmap.View :bsearch_slots()", function()
  local bf
  before_each(function() bf = assert(fmap.anonymous()) end)
  after_each(function() h.no_live_views(bf); bf:close() end)

  -- memcmp order, a proper prefix first: the model of the comparison
  local function cmp (a, b)
    if a == b then return 0 end
    for i = 1, math.min(#a, #b) do
      local x, y = a:byte(i), b:byte(i)
      if x ~= y then return x < y and -1 or 1 end
    end
    return #a < #b and -1 or 1
  end

  -- Lays strings out as a slot table at pos (stride bytes a slot, junk
  -- after the 4-byte position) and cells from the end of the view down.
  local function layout (v, pos, stride, strings)
    local at = #v
    for i, s in ipairs(strings) do
      at = at - 4 - #s
      v:set_u32(at, #s)
      v:write(at + 4, s)
      v:set_u32(pos + (i - 1) * stride, at)
      v:fill(0xA5, pos + (i - 1) * stride + 4, stride - 4)
    end
  end

  it("finds the first string not below the key, prefixes first",
     function()
    local v <close> = bf:get(bf:allocate())
    layout(v, 8, 4, { "", "a", "a", "a\0", "ab", "b" })
    assert.same({ 0, true }, { v:bsearch_slots(8, 6, 4, "") })
    assert.same({ 1, true }, { v:bsearch_slots(8, 6, 4, "", true) })
    assert.same({ 1, true }, { v:bsearch_slots(8, 6, 4, "a") })
    assert.same({ 3, true }, { v:bsearch_slots(8, 6, 4, "a", true) })
    assert.same({ 3, true }, { v:bsearch_slots(8, 6, 4, "a\0") })
    assert.same({ 4, false }, { v:bsearch_slots(8, 6, 4, "a\0\0") })
    assert.same({ 5, false }, { v:bsearch_slots(8, 6, 4, "ac") })
    assert.same({ 6, false }, { v:bsearch_slots(8, 6, 4, "c") })
    assert.same({ 0, false }, { v:bsearch_slots(8, 0, 4, "c") })
  end)

  it("agrees with a linear scan", function()
    local v <close> = bf:get(bf:allocate_blocks(2), 2)
    local ALPHABET = { "\0", "\1", "\127", "\128", "\255" }
    for _ = 1, 40 do
      local strings = {}
      for i = 1, math.random(0, 60) do
        local t = {}
        for j = 1, math.random(0, 12) do
          t[j] = ALPHABET[math.random(#ALPHABET)]
        end
        strings[i] = table.concat(t)
      end
      table.sort(strings, function (a, b) return cmp(a, b) < 0 end)
      local stride = math.random(4, 16)
      layout(v, 16, stride, strings)
      for _ = 1, 30 do
        local key = strings[math.random(math.max(#strings, 1))] or ""
        if math.random(2) == 1 then key = key .. ALPHABET[math.random(5)] end
        local lower, upper, found = #strings, #strings, false
        for i = #strings, 1, -1 do
          local c = cmp(strings[i], key)
          if c >= 0 then lower = i - 1 end
          if c > 0 then upper = i - 1 end
          if c == 0 then found = true end
        end
        assert.same({ lower, found },
                    { v:bsearch_slots(16, #strings, stride, key) })
        assert.same({ upper, found },
                    { v:bsearch_slots(16, #strings, stride, key, true) })
      end
    end
  end)

  it("rejects slot tables and strings that pass the view", function()
    local v <close> = bf:get(bf:allocate())
    assert.equal("bad argument #1 to 'bsearch_slots' (1000 slots of 8 "
                 .. "bytes from position 0 pass the view (4096 bytes))",
                 h.errmsg(function() v:bsearch_slots(0, 1000, 8, "a") end))
    assert.equal("bad argument #3 to 'bsearch_slots' (stride 2 is shorter "
                 .. "than a slot's 4-byte position)",
                 h.errmsg(function() v:bsearch_slots(0, 2, 2, "a") end))
    assert.equal("bad argument #1 to 'bsearch_slots' (1 slot of 4 bytes "
                 .. "from position 4094 pass the view (4096 bytes))",
                 h.errmsg(function() v:bsearch_slots(4094, 1, 4, "a") end))
    assert.equal("bad argument #2 to 'bsearch_slots' (count -1 is "
                 .. "negative)", h.errmsg(function()
                 v:bsearch_slots(0, -1, 4, "a") end))
    v:set_u32(0, 4094)                    -- a cell whose length cannot fit
    assert.equal("bad argument #1 to 'bsearch_slots' (string of slot 0 at "
                 .. "position 4094 passes the view (4096 bytes))",
                 h.errmsg(function() v:bsearch_slots(0, 1, 4, "a") end))
    v:set_u32(0, 4000)
    v:set_u32(4000, 0x80000010)           -- a length past the end
    assert.equal("bad argument #1 to 'bsearch_slots' (string of slot 0 at "
                 .. "position 4000 passes the view (4096 bytes))",
                 h.errmsg(function() v:bsearch_slots(0, 1, 4, "a") end))
    v:set_u32(4000, 92)                   -- zeros to the very end: fine
    assert.same({ 1, false }, { v:bsearch_slots(0, 1, 4, "a") })
  end)
end)
