-- Specs of the BlockFile: fmap.create/open/anonymous and its methods.
local BS = 4096

describe("fmap.BlockFile", function()
  local path, bf
  h.fixture(function (p, b) if p then path, bf = p, b end return bf end)

  describe(".create()", function()
    it("makes a file of one control block", function()
      assert.equal(BS, bf:size())
      assert.equal(BS, bf:block_size())
      assert.equal(path, bf:path())
      assert.equal(BS, #h.readfile(path))
    end)

    it("truncates an existing file", function()
      local off = bf:allocate()
      bf:close()
      bf = assert(fmap.create(path))
      assert.equal(BS, bf:size())
      assert.same({}, bf:free_list())
      assert.equal(off, bf:allocate())   -- the first block again
    end)

    it("takes a block size that is a multiple of 4096", function()
      local p2 = h.tmpname()
      local b2 = assert(fmap.create(p2, 16384))
      assert.equal(16384, b2:block_size())
      local off = b2:allocate()
      assert.equal(16384, off)
      local v <close> = b2:get(off, 1)
      assert.equal(16384, #v)
      v:release()
      b2:close()
      b2 = assert(fmap.open(p2))
      assert.equal(16384, b2:block_size())
      b2:close()
      os.remove(p2)
    end)

    it("rejects a block size that is not a multiple of 4096", function()
      assert.equal("bad argument #2 to 'create' (block size 5000 is not a "
                   .. "multiple of 4096 up to 2^30)",
                   h.errmsg(function() fmap.create(path, 5000) end))
      assert.equal("bad argument #2 to 'create' (block size 0 is not a "
                   .. "multiple of 4096 up to 2^30)",
                   h.errmsg(function() fmap.create(path, 0) end))
    end)

    it("rejects a path that is not a string", function()
      assert.matches("bad argument #1 to 'create' %(string expected, got "
                     .. "table%)", h.errmsg(function() fmap.create({}) end))
    end)

    it("returns nil, message, errno when the directory is missing",
       function()
      local r, msg, en = fmap.create("/nonexistent-dir/x.fmap")
      assert.is_nil(r)
      assert.equal("/nonexistent-dir/x.fmap: No such file or directory", msg)
      assert.equal(2, en)
    end)

    it("refuses a FIFO, and a device, before truncating anything",
       function()
      local fifo = h.tmpname()
      assert(os.execute("mkfifo " .. fifo))
      assert.same({ nil, fifo .. ": not a regular file", 22 },
                  { fmap.create(fifo) })
      os.remove(fifo)
      assert.same({ nil, "/dev/null: not a regular file", 22 },
                  { fmap.create("/dev/null") })
    end)

    it("refuses a file another BlockFile has open", function()
      local r, msg, en = fmap.create(path)
      assert.is_nil(r)
      assert.equal(path .. ": file is locked: another BlockFile has it open",
                   msg)
      assert.equal(11, en)
      assert.equal(BS, bf:size())   -- and did not truncate it
    end)
  end)

  describe(".open()", function()
    it("finds what was written, after close", function()
      local off = bf:allocate()
      local v = bf:get(off)
      v:write(0, "persistent")
      v:release()
      bf:set_control_data("root=" .. off)
      bf:close()
      bf = assert(fmap.open(path))
      assert.equal("root=" .. off, bf:control_data())
      v = bf:get(off)
      assert.equal("persistent", v:read(0, 10))
      v:release()
      assert.is_true(bf:check())
    end)

    it("keeps the free list across close and open", function()
      local a, b, c = bf:allocate(), bf:allocate(), bf:allocate()
      bf:free(b)
      bf:close()
      bf = assert(fmap.open(path))
      assert.same({ { offset = b, blocks = 1 } }, bf:free_list())
      assert.equal(b, bf:allocate())
      assert.is_true(a < c)
    end)

    it("returns nil, message, errno for a missing file", function()
      local r, msg, en = fmap.open(path .. ".missing")
      assert.is_nil(r)
      assert.equal(path .. ".missing: No such file or directory", msg)
      assert.equal(2, en)
    end)

    it("returns nil, message, errno for a file that is not fmap's",
       function()
      local p2 = h.tmpname()
      h.writefile(p2, string.rep("not an fmap file\n", 1000))
      local r, msg, en = fmap.open(p2)
      assert.is_nil(r)
      assert.equal(p2 .. ": not an fmap file", msg)
      assert.equal(22, en)
      h.writefile(p2, "")
      assert.same({ nil, p2 .. ": not an fmap file (empty)", 22 },
                  { fmap.open(p2) })
      h.writefile(p2, "short")
      assert.same({ nil, p2 .. ": not an fmap file (shorter than one block)",
                    22 }, { fmap.open(p2) })
      os.remove(p2)
    end)

    it("refuses a directory", function()
      local r, msg = fmap.open("/tmp")
      assert.is_nil(r)
      assert.is_string(msg)
    end)

    it("refuses a FIFO with no writer, read-only too, without waiting for "
       .. "one", function()
      local fifo = h.tmpname()
      assert(os.execute("mkfifo " .. fifo))
      assert.same({ nil, fifo .. ": not a regular file", 22 },
                  { fmap.open(fifo) })
      assert.same({ nil, fifo .. ": not a regular file", 22 },
                  { fmap.open(fifo, { readonly = true }) })
      os.remove(fifo)
      assert.same({ nil, "/tmp: not a regular file", 22 },
                  { fmap.open("/tmp", { readonly = true }) })
    end)

    it("refuses a file whose size is not a multiple of the block size",
       function()
      bf:allocate()
      bf:close()
      h.writefile(path, h.readfile(path) .. "x")
      local r, msg, en = fmap.open(path)
      assert.is_nil(r)
      assert.equal(path .. ": file size 8193 is not a multiple of the block "
                   .. "size 4096", msg)
      assert.equal(22, en)
    end)

    it("refuses a file truncated below its allocated area", function()
      bf:allocate_blocks(3)
      bf:close()
      h.writefile(path, h.readfile(path):sub(1, 2 * BS))
      local r, msg = fmap.open(path)
      assert.is_nil(r)
      assert.equal(path .. ": allocated area ends at 16384, outside the file "
                   .. "(size 8192) or not block-aligned", msg)
    end)

    it("survives damage to one copy of the header", function()
      bf:set_control_data("kept")
      local off = bf:allocate()
      bf:close()
      local s = h.readfile(path)
      for slot = 0, 1 do
        local damaged = s:sub(1, slot * 128 + 20) .. "\255\255"
                        .. s:sub(slot * 128 + 23)
        h.writefile(path, damaged)
        local b2 = assert(fmap.open(path))
        assert.equal("kept", b2:control_data())
        assert.is_true(b2:check())
        b2:close()
      end
      assert.is_number(off)
    end)

    it("refuses a file whose both header copies are damaged", function()
      bf:close()
      local s = h.readfile(path)
      s = s:sub(1, 20) .. "\1" .. s:sub(22, 148) .. "\1" .. s:sub(150)
      h.writefile(path, s)
      assert.same({ nil, path .. ": corrupt header (checksum mismatch in "
                    .. "both copies)", 22 }, { fmap.open(path) })
    end)

    it("refuses damaged control data", function()
      bf:set_control_data("hello")
      bf:close()
      local s = h.readfile(path)
      -- both control areas: the live one and the previous one
      local i = s:find("hello", 1, true)
      s = s:sub(1, i - 1) .. "jello" .. s:sub(i + 5)
      h.writefile(path, s)
      assert.same({ nil, path .. ": corrupt control data (checksum "
                    .. "mismatch)", 22 }, { fmap.open(path) })
    end)

    it("rejects an unknown option, and a value that is not a boolean",
       function()
      assert.equal("bad argument #2 to 'open' (unknown option read_only)",
                   h.errmsg(function()
                     fmap.open(path, { read_only = true })
                   end))
      for _, case in ipairs({ { "readonly", "yes", "string" },
                              { "repair", 1, "number" },
                              { "readonly", {}, "table" } }) do
        assert.equal("bad argument #2 to 'open' (option " .. case[1]
                     .. " must be true or false, not " .. case[3] .. ")",
                     h.errmsg(function()
                       fmap.open(path, { [case[1]] = case[2] })
                     end))
      end
      -- false is an option's default, said aloud
      bf:close()
      local f <close> = assert(fmap.open(path, { readonly = false,
                                                 repair = false }))
      assert.is_false(f:readonly())
    end)

    describe("read-only", function()
      local ro
      before_each(function()
        local off = bf:allocate()
        local v <close> = bf:get(off)
        v:write(0, "data")
        v:release()
        bf:close()
        ro = assert(fmap.open(path, { readonly = true }))
      end)
      after_each(function() if ro then ro:close() end end)

      it("reads, and refuses every change with an error", function()
        assert.is_true(ro:readonly())
        local v <close> = ro:get(BS)
        assert.equal("data", v:read(0, 4))
        assert.equal("attempt to write to a view of a read-only BlockFile",
                     h.errmsg(function() v:write(0, "x") end))
        assert.equal("attempt to write to a view of a read-only BlockFile",
                     h.errmsg(function() v:set_u8(0, 1) end))
        assert.equal("attempt to write to a view of a read-only BlockFile",
                     h.errmsg(function() v:fill(0) end))
        assert.equal("attempt to write to a view of a read-only BlockFile",
                     h.errmsg(function() fmap.memclr(v) end))
        for _, call in ipairs({
          function () v:insert(0, 4, "x") end,
          function () v:insert_key(8, 16, 8, 4, "12345678") end,
          function () v:remove_key(8, 16, 8, "1234") end,
        }) do
          assert.equal("attempt to write to a view of a read-only BlockFile",
                       h.errmsg(call))
        end
        assert.equal("data", v:read(0, 4))
        -- the fault is self's, whatever the arguments
        assert.equal("calling 'allocate' on bad self (the BlockFile is "
                     .. "read-only)", h.errmsg(function() ro:allocate() end))
        assert.equal("calling 'allocate_blocks' on bad self (the BlockFile "
                     .. "is read-only)",
                     h.errmsg(function() ro:allocate_blocks(2) end))
        assert.equal("calling 'free' on bad self (the BlockFile is "
                     .. "read-only)", h.errmsg(function() ro:free(BS) end))
        assert.equal("calling 'free' on bad self (the BlockFile is "
                     .. "read-only)", h.errmsg(function() ro:free(BS + 1) end))
        assert.equal("calling 'set_control_data' on bad self (the BlockFile "
                     .. "is read-only)",
                     h.errmsg(function() ro:set_control_data("x") end))
        assert.equal("calling 'set_control_data_nosync' on bad self (the "
                     .. "BlockFile is read-only)",
                     h.errmsg(function() ro:set_control_data_nosync("x") end))
        assert.equal("data", v:read(0, 4))
      end)

      it("shares the file with other readers, and with a writer", function()
        local ro2 = assert(fmap.open(path, { readonly = true }))
        ro2:close()
        local w = assert(fmap.open(path))   -- readers never keep it out
        assert.is_true(w:stats().readers)
        assert.is_true(ro:stats().writer)
        w:close()
        assert.is_false(ro:stats().writer)
      end)
    end)

    describe("with create", function()
      local p2
      before_each(function() p2 = h.tmpname() end)
      after_each(function() os.remove(p2) end)

      it("creates a missing file, of the block size asked", function()
        local f <close> = assert(fmap.open(p2, { create = true }))
        assert.equal(BS, f:size())
        assert.equal(BS, f:block_size())
        assert.equal(p2, f:path())
        f:close()
        local g <close> = assert(fmap.open(p2 .. "2", { create = true,
                                                      block_size = 16384 }))
        assert.equal(16384, g:block_size())
        assert.equal(16384, g:allocate())
        g:remove()
      end)

      it("opens an existing file as it is, never truncating it", function()
        local off = bf:allocate()
        bf:with(off, 1, function (v) v:write(0, "kept") end)
        bf:set_control_data("root=" .. off)
        bf:close()
        -- an existing file keeps its own block size
        bf = assert(fmap.open(path, { create = true, block_size = 16384 }))
        assert.equal(BS, bf:block_size())
        assert.equal("root=" .. off, bf:control_data())
        assert.equal("kept", bf:with(off, 1, function (v)
          return v:read(0, 4)
        end))
        assert.is_true(bf:check())
      end)

      it("refuses a file that is not fmap's, and leaves it alone", function()
        h.writefile(p2, "short")
        assert.same({ nil, p2 .. ": not an fmap file (shorter than one "
                      .. "block)", 22 }, { fmap.open(p2, { create = true }) })
        assert.equal("short", h.readfile(p2))
      end)

      it("makes an empty file one, as a creator that died leaves it",
         function()
        h.writefile(p2, "")
        local f <close> = assert(fmap.open(p2, { create = true }))
        assert.equal(BS, f:size())
        assert.is_true(f:check())
      end)

      it("returns nil, message, errno for a missing directory, or a file "
         .. "another BlockFile has open", function()
        assert.same({ nil, "/nonexistent-dir/x.fmap: No such file or "
                      .. "directory", 2 },
                    { fmap.open("/nonexistent-dir/x.fmap", { create = true }) })
        assert.same({ nil, path .. ": file is locked: another BlockFile has "
                      .. "it open", 11 }, { fmap.open(path, { create = true }) })
      end)

      it("rejects read-only, a block size without create, and bad values",
         function()
        assert.equal("bad argument #2 to 'open' (a read-only open cannot "
                     .. "create)", h.errmsg(function()
                       fmap.open(p2, { create = true, readonly = true })
                     end))
        assert.equal("bad argument #2 to 'open' (option block_size is for a "
                     .. "new file: add create = true)", h.errmsg(function()
                       fmap.open(p2, { block_size = 8192 })
                     end))
        assert.equal("bad argument #2 to 'open' (option create must be true "
                     .. "or false, not number)", h.errmsg(function()
                       fmap.open(p2, { create = 1 })
                     end))
        assert.equal("bad argument #2 to 'open' (option block_size must be "
                     .. "an integer, not string)", h.errmsg(function()
                       fmap.open(p2, { create = true, block_size = "8192" })
                     end))
        assert.equal("bad argument #2 to 'open' (block size 5000 is not a "
                     .. "multiple of 4096 up to 2^30)", h.errmsg(function()
                       fmap.open(p2, { create = true, block_size = 5000 })
                     end))
        assert.equal("bad argument #2 to 'open' (unknown option creat)",
                     h.errmsg(function() fmap.open(p2, { creat = true }) end))
        assert.is_nil(io.open(p2))      -- none of them made the file
      end)

      it("lets processes that race to create one file agree on it",
         function()
        -- Two processes open with create the same 100 new paths, each
        -- writing into it and closing. Each open either gets the file or
        -- finds the other process holds it; no path is ever refused as
        -- "not an fmap file", and every file ends whole.
        local base = h.tmpname("")
        local code = [[
          local fmap = require "fmap"
          local base, who = arg[1], arg[2]
          local locked = 0
          for i = 1, 100 do
            local bf, msg, en = fmap.open(base .. i, { create = true })
            if bf then
              local off = bf:allocate()
              bf:with(off, 1, function (v) v:write(0, who) end)
              assert(bf:close())
            elseif en == 11 then
              locked = locked + 1
            else
              error(msg)
            end
          end
          print("ok " .. locked)
        ]]
        local script = h.tmpname(".lua")
        h.writefile(script, code)
        local cmd = string.format("%s %s %s", h.bin(), script, base)
        local out = h.run("(" .. cmd .. " a & " .. cmd .. " b & wait) 2>&1")
        os.remove(script)
        local done = 0
        for locked in out:gmatch("ok (%d+)") do
          done = done + 1
          assert.is_true(tonumber(locked) <= 100)
        end
        assert.equal(2, done, out)
        for i = 1, 100 do
          local f = assert(fmap.open(base .. i, { readonly = true }))
          assert.is_true(f:check())
          local n = f:stats().used_blocks
          assert.is_true(n == 1 or n == 2)
          f:close()
          os.remove(base .. i)
        end
      end)
    end)
  end)

  describe(".anonymous()", function()
    it("gives a BlockFile with no file behind it", function()
      local a <close> = assert(fmap.anonymous())
      assert.is_nil(a:path())
      assert.equal(BS, a:block_size())
      local off = a:allocate()
      local v <close> = a:get(off)
      v:write(0, "anon")
      assert.equal("anon", v:read(0, 4))
      v:release()
      for _ = 1, 100 do a:allocate() end
      assert.is_true(a:flush())
      assert.is_true(a:check())
      assert.matches("^BlockFile %(anonymous,", tostring(a))
    end)

    it("takes a block size", function()
      local a <close> = assert(fmap.anonymous(8192))
      assert.equal(8192, a:block_size())
      assert.equal(8192, a:allocate())
    end)

    it("cannot be removed", function()
      local a = assert(fmap.anonymous())
      assert.equal("cannot remove an anonymous BlockFile",
                   h.errmsg(function() a:remove() end))
      a:close()
    end)
  end)

  describe(":allocate()", function()
    it("returns distinct block-aligned offsets of zeroed blocks", function()
      local seen = {}
      for _ = 1, 200 do
        local off = bf:allocate()
        assert.equal(0, off % BS)
        assert.is_true(off >= BS)
        assert.is_nil(seen[off])
        seen[off] = true
        bf:with(off, 1, function(v)
          assert.equal(string.rep("\0", BS), v:read())
          v:fill(0xAB)
        end)
      end
    end)

    it("reuses freed blocks, zeroed again", function()
      local a = bf:allocate()
      bf:with(a, 1, function(v) v:fill(7) end)
      bf:free(a)
      assert.equal(a, bf:allocate())
      bf:with(a, 1, function(v)
        assert.equal(string.rep("\0", BS), v:read())
      end)
    end)

    it("grows the file geometrically", function()
      for _ = 1, 20000 do bf:allocate() end
      local st = bf:stats()
      assert.equal(20000, st.used_blocks)
      assert.is_true(st.remaps < 40, "remaps: " .. st.remaps)
      assert.is_true(st.size <= 20001 * BS * 1.3)
    end)

    it("trims the unused tail when the file closes", function()
      for _ = 1, 10 do bf:allocate() end
      assert.is_true(bf:size() > 11 * BS)
      bf:close()
      assert.equal(11 * BS, #h.readfile(path))
    end)
  end)

  describe(":allocate_blocks()", function()
    it("returns n contiguous blocks", function()
      local off = bf:allocate_blocks(5)
      local v <close> = bf:get(off, 5)
      assert.equal(5 * BS, #v)
      assert.equal(string.rep("\0", 5 * BS), v:read())
    end)

    it("reuses a freed run that fits", function()
      local off = bf:allocate_blocks(8)
      bf:allocate()
      bf:free(off, 8)
      assert.equal(off + 5 * BS, bf:allocate_blocks(3))
      assert.same({ { offset = off, blocks = 5 } }, bf:free_list())
      assert.equal(off, bf:allocate_blocks(5))
      assert.same({}, bf:free_list())
    end)

    it("rejects a count below 1", function()
      assert.equal("bad argument #1 to 'allocate_blocks' (block count 0 is "
                   .. "not positive)",
                   h.errmsg(function() bf:allocate_blocks(0) end))
      assert.equal("bad argument #1 to 'allocate_blocks' (number has no "
                   .. "integer representation)",
                   h.errmsg(function() bf:allocate_blocks(1.5) end))
    end)

    it("rejects a count too large to address", function()
      assert.equal("bad argument #1 to 'allocate_blocks' (cannot allocate "
                   .. "9223372036854775807 blocks)",
                   h.errmsg(function()
                     bf:allocate_blocks(math.maxinteger)
                   end))
    end)
  end)

  describe(":free()", function()
    it("rejects an offset that is not block-aligned", function()
      assert.equal("bad argument #1 to 'free' (offset 4097 is not "
                   .. "block-aligned)", h.errmsg(function() bf:free(4097) end))
    end)

    it("rejects the control block", function()
      assert.equal("bad argument #1 to 'free' (offset 0 is the control "
                   .. "block)", h.errmsg(function() bf:free(0) end))
    end)

    it("rejects a negative offset", function()
      assert.equal("bad argument #1 to 'free' (offset -4096 is negative)",
                   h.errmsg(function() bf:free(-4096) end))
      assert.equal("bad argument #1 to 'free' (offset "
                   .. math.mininteger .. " is negative)",
                   h.errmsg(function() bf:free(math.mininteger) end))
    end)

    it("rejects blocks past the allocated area", function()
      bf:allocate()
      assert.equal("bad argument #1 to 'free' (1 block at offset 8192 passes "
                   .. "the allocated area (which ends at 8192))",
                   h.errmsg(function() bf:free(8192) end))
      -- the offset is a block of the file: the count is at fault
      assert.equal("bad argument #2 to 'free' (2 blocks at offset 4096 "
                   .. "pass the allocated area (which ends at 8192))",
                   h.errmsg(function() bf:free(4096, 2) end))
      assert.is_false(bf:is_free(4096))
    end)

    it("catches a double free, and loses nothing", function()
      local a = bf:allocate()
      local b = bf:allocate()
      bf:free(a)
      assert.equal("bad argument #1 to 'free' (double free: block at offset "
                   .. a .. " is already free)",
                   h.errmsg(function() bf:free(a) end))
      assert.equal(1, bf:stats().free_blocks)
      bf:free(b)
      assert.is_true(bf:check())
      -- in a run, the block named is the one that is free
      local r = bf:allocate_blocks(3)
      bf:free(r + BS)
      assert.equal("bad argument #1 to 'free' (double free: block at offset "
                   .. r + BS .. " is already free)",
                   h.errmsg(function() bf:free(r, 3) end))
      assert.is_false(bf:is_free(r))
    end)

    it("catches a free of a block inside a freed run", function()
      local off = bf:allocate_blocks(4)
      bf:free(off, 4)
      assert.matches("double free", h.errmsg(function()
        bf:free(off + 2 * BS)
      end))
      local other = bf:allocate_blocks(2)
      assert.matches("double free", h.errmsg(function()
        bf:free(off + BS, 2)
      end))
      assert.is_number(other)
    end)

    it("rejects a count below 1", function()
      local a = bf:allocate()
      assert.equal("bad argument #2 to 'free' (block count 0 is not "
                   .. "positive)", h.errmsg(function() bf:free(a, 0) end))
    end)

    it("retires the views of the freed blocks", function()
      local a = bf:allocate()
      local b = bf:allocate()
      local va, vb, at = bf:get(a), bf:get(b), h.line()
      bf:free(a)
      assert.equal("attempt to use a view of freed blocks (offset " .. a
                   .. ", 4096 bytes, acquired at spec/blockfile_spec.lua:"
                   .. at .. ")", h.errmsg(function() va:read(0, 1) end))
      assert.equal("view (offset " .. a .. ", 4096 bytes, blocks freed)",
                   tostring(va))
      assert.is_false(va:live())
      assert.equal(0, vb:u8(0))
      vb:release()
    end)

    it("merges runs freed next to the head of the list", function()
      local off = bf:allocate_blocks(6)
      for i = 0, 5 do bf:free(off + i * BS) end
      assert.same({ { offset = off, blocks = 6 } }, bf:free_list())
      assert.equal(off, bf:allocate_blocks(6))
      for i = 5, 0, -1 do bf:free(off + i * BS) end
      assert.same({ { offset = off, blocks = 6 } }, bf:free_list())
      assert.is_true(bf:check())
    end)
  end)

  describe(":get()", function()
    it("returns a view of the blocks", function()
      local off = bf:allocate_blocks(2)
      local v <close> = bf:get(off, 2)
      assert.equal(2 * BS, #v)
      assert.equal(off, v:offset())
      assert.equal(2, v:blocks())
      assert.equal(bf, v:blockfile())
    end)

    it("rejects a free block", function()
      local a = bf:allocate()
      bf:free(a)
      assert.equal("bad argument #1 to 'get' (block at offset " .. a
                   .. " is free)", h.errmsg(function() bf:get(a) end))
    end)

    it("rejects blocks outside the allocated area", function()
      assert.equal("bad argument #1 to 'get' (1 block at offset 4096 passes "
                   .. "the allocated area (which ends at 4096))",
                   h.errmsg(function() bf:get(BS) end))
      bf:allocate()
      assert.equal("bad argument #1 to 'get' (9223372036854775807 blocks at "
                   .. "offset 4096 pass the allocated area (which ends at "
                   .. "8192))",
                   h.errmsg(function() bf:get(BS, math.maxinteger) end))
      assert.equal("bad argument #2 to 'get' (block count -1 is not "
                   .. "positive)", h.errmsg(function() bf:get(BS, -1) end))
      assert.equal("bad argument #1 to 'get' (offset 0 is the control "
                   .. "block)", h.errmsg(function() bf:get(0) end))
      assert.equal("bad argument #1 to 'get' (number has no integer "
                   .. "representation)", h.errmsg(function() bf:get(0 / 0) end))
      assert.equal("bad argument #1 to 'get' (number expected, got string)",
                   h.errmsg(function() bf:get("x") end))
    end)

    it("keeps views valid while the file grows", function()
      local a = bf:allocate()
      local v = bf:get(a)
      v:write(0, "still here")
      local addr = bf:address()
      for _ = 1, 5000 do bf:allocate() end
      assert.equal(5000 + 1, bf:stats().used_blocks)
      assert.equal("still here", v:read(0, 10))
      v:write(10, "!")
      assert.equal("still here!", v:read(0, 11))
      v:release()
      assert.is_true(bf:valid(bf:address()))
      assert.is_boolean(bf:valid(addr))
    end)

    it("is released by the garbage collector", function()
      local a = bf:allocate()
      for _ = 1, 10 do bf:get(a) end
      collectgarbage()
      collectgarbage()
      assert.same({}, bf:live_views())
    end)
  end)

  describe(":release()", function()
    it("releases a view", function()
      local v, at = bf:get(bf:allocate()), h.line()
      bf:release(v)
      assert.same({}, bf:live_views())
      assert.equal("attempt to use a released view (offset 4096, 4096 "
                   .. "bytes, acquired at spec/blockfile_spec.lua:" .. at
                   .. ")", h.errmsg(function() return #v end))
    end)

    it("rejects a view released already", function()
      local v, at = bf:get(bf:allocate()), h.line()
      v:release()
      local which = "offset 4096, 4096 bytes, acquired at "
                    .. "spec/blockfile_spec.lua:" .. at
      assert.equal("bad argument #1 to 'release' (attempt to release a "
                   .. "released view: " .. which .. ")",
                   h.errmsg(function() bf:release(v) end))
      assert.equal("attempt to release a released view (" .. which .. ")",
                   h.errmsg(function() v:release() end))
    end)

    it("lets a view that a free ended be released, once or more",
       function()
      local off = bf:allocate()
      local v, w = bf:get(off), bf:get(off)
      bf:free(off)
      assert.matches("^attempt to use a view of freed blocks %(offset "
                     .. off .. ", 4096 bytes, acquired at ",
                     h.errmsg(function() return v:read(0, 1) end))
      v:release()
      v:release()
      bf:release(w)
      assert.equal("view (offset " .. off .. ", 4096 bytes, blocks freed)",
                   tostring(v))
      assert.same({}, bf:live_views())
    end)

    it("lets a view that a close ended be released", function()
      local w
      assert.is_false(pcall(function()
        local a <close> = assert(fmap.anonymous())
        w = a:get(a:allocate())
        error("leaving the scope by an error closes a with w live")
      end))
      w:release()
      assert.matches("^attempt to use a view of a closed BlockFile %(offset "
                     .. "4096, 4096 bytes, acquired at ",
                     h.errmsg(function() return #w end))
    end)

    it("rejects a view of another BlockFile", function()
      local a <close> = fmap.anonymous()
      local v <close> = a:get(a:allocate())
      assert.equal("bad argument #1 to 'release' (view belongs to another "
                   .. "BlockFile)", h.errmsg(function() bf:release(v) end))
    end)

    it("rejects what is not a view", function()
      assert.equal("bad argument #1 to 'release' (view expected, got "
                   .. "string)", h.errmsg(function() bf:release("x") end))
    end)
  end)

  describe(":with()", function()
    it("passes a view and returns the function's results", function()
      local off = bf:allocate()
      local a, b = bf:with(off, 1, function(v)
        v:write(0, "xy")
        return v:read(0, 2), #v
      end)
      assert.equal("xy", a)
      assert.equal(BS, b)
      assert.same({}, bf:live_views())
    end)

    it("releases the view when the function raises", function()
      local off = bf:allocate()
      local kept
      local ok, err = pcall(bf.with, bf, off, 1, function(v)
        kept = v
        error("boom")
      end)
      assert.is_false(ok)
      assert.matches("boom", err)
      assert.same({}, bf:live_views())
      assert.is_false(kept:live())
    end)

    it("rejects what is not a function", function()
      local off = bf:allocate()
      assert.equal("bad argument #3 to 'with' (function expected, got no value)",
                   h.errmsg(function() bf:with(off, 1) end))
      assert.equal("bad argument #2 to 'with' (function expected, got no value)",
                   h.errmsg(function() bf:with(off) end))
    end)

    it("takes one block when the count is left out, as get does", function()
      local off = bf:allocate()
      assert.equal(BS, bf:with(off, function (v) return #v end))
      assert.same({}, bf:live_views())
    end)

    it("lets the function yield, and releases the view when the call "
       .. "returns, raises or its coroutine is closed", function()
      local off = bf:allocate()
      local walk = coroutine.wrap(function ()
        return bf:with(off, 1, function (v)
          for i = 1, 3 do coroutine.yield(i, #bf:live_views()) end
          return "done"
        end)
      end)
      assert.same({ 1, 1 }, { walk() })
      assert.same({ 2, 1 }, { walk() })
      assert.same({ 3, 1 }, { walk() })
      assert.equal("done", walk())
      assert.same({}, bf:live_views())
      local co = coroutine.create(function ()
        bf:with(off, function () coroutine.yield() end)
      end)
      assert.is_true(coroutine.resume(co))
      assert.equal(1, #bf:live_views())
      assert.is_true(coroutine.close(co))
      assert.same({}, bf:live_views())
      co = coroutine.create(function ()
        bf:with(off, function () coroutine.yield(); error("after a yield") end)
      end)
      coroutine.resume(co)
      local ok, err = coroutine.resume(co)
      assert.is_false(ok)
      assert.matches("after a yield", err)
      -- a coroutine that raised keeps its to-be-closed variables for a
      -- traceback, until coroutine.close (or the collector) ends them
      assert.equal(1, #bf:live_views())
      coroutine.close(co)
      assert.same({}, bf:live_views())
    end)
  end)

  describe(":control_data()", function()
    it("is empty in a new file and keeps any bytes", function()
      assert.equal("", bf:control_data())
      local s = "\0\1\2binary\255" .. string.rep("z", 100)
      assert.is_true(bf:set_control_data(s))
      assert.equal(s, bf:control_data())
      assert.is_true(bf:set_control_data_nosync("second"))
      assert.equal("second", bf:control_data())
      bf:close()
      bf = assert(fmap.open(path))
      assert.equal("second", bf:control_data())
    end)

    it("rejects data longer than the control block holds", function()
      local max = bf:stats().max_control_data
      assert.is_true(bf:set_control_data(string.rep("m", max)))
      assert.equal("bad argument #1 to 'set_control_data' (control data of "
                   .. (max + 1) .. " bytes is longer than the " .. max
                   .. " bytes it may have)",
                   h.errmsg(function()
                     bf:set_control_data(string.rep("m", max + 1))
                   end))
      assert.equal(string.rep("m", max), bf:control_data())
    end)
  end)

  describe(":sync() and :flush()", function()
    it("return true", function()
      bf:allocate()
      assert.is_true(bf:sync())
      assert.is_true(bf:flush())
    end)
  end)

  describe(":close()", function()
    it("closes once; every later use raises", function()
      assert.is_true(bf:close())
      assert.equal("attempt to use a closed BlockFile",
                   h.errmsg(function() bf:close() end))
      assert.equal("attempt to use a closed BlockFile",
                   h.errmsg(function() bf:allocate() end))
      assert.equal("BlockFile (closed)", tostring(bf))
    end)

    it("is_open says whether it is open, closed or not", function()
      assert.is_true(bf:is_open())
      local anon = assert(fmap.anonymous())
      assert.is_true(bf:close())
      assert.is_false(bf:is_open())
      assert.is_true(anon:is_open())
      anon:close()
      assert.is_false(anon:is_open())
      assert.equal("bad argument #1 to 'is_open' (BlockFile expected, got "
                   .. "table; call it with ':')",
                   h.errmsg(function() bf.is_open({}) end))
      assert.equal("bad argument #1 to 'is_open' (BlockFile expected, got "
                   .. "no value; call it with ':')",
                   h.errmsg(function() bf.is_open() end))
    end)

    it("refuses while views are live, naming where they came from",
       function()
      local off = bf:allocate()
      local v, at = bf:get(off), h.line()
      local ok, msg = pcall(function() bf:close() end)
      local line = h.line() - 1
      assert.is_false(ok)
      -- the position is the line that called close, as luaL_error's
      assert.equal("spec/blockfile_spec.lua:" .. line .. ": cannot close "
                   .. "a BlockFile with 1 live view: offset " .. off
                   .. " (4096 bytes) acquired at spec/blockfile_spec.lua:"
                   .. at, msg)
      assert.equal(1, #bf:live_views())
      assert.matches("blockfile_spec.lua:%d+$", bf:live_views()[1].where)
      v:release()
      assert.is_true(bf:close())
    end)

    it("collects garbage first, so forgotten views do not block it",
       function()
      local off = bf:allocate()
      do local _ = bf:get(off) end
      assert.is_true(bf:close())
    end)

    it("happens when a <close> variable goes out of scope", function()
      local p2 = h.tmpname()
      local kept
      do
        local b <close> = assert(fmap.create(p2))
        kept = b
      end
      assert.equal("BlockFile (closed)", tostring(kept))
      os.remove(p2)
    end)

    -- A <close> cannot refuse: it runs while the collector still marks
    -- the dead registers of the function that declared it.
    it("by a <close> variable ends the views still live", function()
      local p2 = h.tmpname()
      local kept, view, at
      do
        local b <close> = assert(fmap.create(p2))
        kept = b
        view, at = b:get(b:allocate()), h.line()
      end
      assert.equal("BlockFile (closed)", tostring(kept))
      local ok, err = pcall(view.read, view, 0, 1)
      assert.is_false(ok)
      assert.matches("attempt to use a view of a closed BlockFile %(offset "
                     .. "4096, 4096 bytes, acquired at [^)]*blockfile_spec"
                     .. "%.lua:" .. at .. "%)$", err)
      local b2 = assert(fmap.open(p2))
      assert.equal(2, b2:stats().blocks)
      b2:close()
      os.remove(p2)
    end)

    it("on an error exit of a <close> scope, closes and keeps the error",
       function()
      local p2 = h.tmpname()
      local kept, view
      local ok, err = pcall(function()
        local b <close> = assert(fmap.create(p2))
        kept = b
        view = b:get(b:allocate())
        error("the real error")
      end)
      assert.is_false(ok)
      assert.matches("the real error", err)
      assert.equal("BlockFile (closed)", tostring(kept))
      assert.matches("^attempt to use a view of a closed BlockFile %(",
                     h.errmsg(function() view:read(0, 1) end))
      os.remove(p2)
    end)

    -- A module that says it is a structure (fmap.guard) has its errors
    -- about a closed file named at its caller's line; another module's,
    -- and a call straight from the script, at their own line.
    it("names the line that called a structure's operation", function()
      -- A module whose get takes a view at line 4 (3 when it is not a
      -- structure); its path.
      local function module (structure)
        local p = h.tmpname(".lua")
        local f = assert(io.open(p, "w"))
        f:write(structure and 'require("fmap.guard").structure("mine")\n'
                or "", "local M = {}\n", "function M.get (bf, off)\n",
                "  local v = bf:get(off)\n", "  return v\n", "end\n",
                "return M\n")
        f:close()
        local m = dofile(p)
        os.remove(p)
        return m, p
      end
      local function where (f)
        local ok, err = pcall(f)
        assert.is_false(ok)
        local file, line = tostring(err):match("^(.-):(%d+): attempt to "
                                               .. "use a closed BlockFile$")
        return file, tonumber(line)
      end
      local s = module(true)
      local o, op = module(false)
      local off = bf:allocate()
      s.get(bf, off):release()
      o.get(bf, off):release()
      assert.is_true(bf:close())
      local file, line = where(function() s.get(bf, off) end)
      assert.equal(h.line() - 1, line)
      assert.matches("blockfile_spec%.lua$", file)
      file, line = where(function() o.get(bf, off) end)
      assert.equal(3, line)
      assert.equal(op:match("[^/]*$"), file:match("[^/]*$"))
      file, line = where(function() bf:allocate() end)
      assert.equal(h.line() - 1, line)
      assert.matches("blockfile_spec%.lua$", file)
      -- a script that is a structure itself has no caller to name: its
      -- own line
      local out = h.run_lua([[
local fmap = require "fmap"
require("fmap.guard").structure("script")
local bf = fmap.anonymous()
bf:close()
print(select(2, pcall(function () local x = bf:allocate() return x end)))
]])
      assert.matches("^[^\n]*%.lua:5: attempt to use a closed BlockFile\n$",
                     out)
    end)
  end)

  describe(":remove()", function()
    it("closes and deletes the file", function()
      bf:allocate()
      assert.is_true(bf:remove())
      assert.is_nil(io.open(path))
      assert.equal("BlockFile (closed)", tostring(bf))
    end)

    it("deletes the file of a closed BlockFile", function()
      bf:close()
      assert.is_true(bf:remove())
      assert.is_nil(io.open(path))
      assert.same({ nil, path .. ": No such file or directory", 2 },
                  { bf:remove() })
    end)

    it("refuses on a read-only BlockFile, open or closed, and deletes "
       .. "nothing", function()
      bf:close()
      local ro = assert(fmap.open(path, { readonly = true }))
      assert.equal("calling 'remove' on bad self (the BlockFile is "
                   .. "read-only)", h.errmsg(function() ro:remove() end))
      ro:close()
      assert.equal("calling 'remove' on bad self (the BlockFile is "
                   .. "read-only)", h.errmsg(function() ro:remove() end))
      bf = assert(fmap.open(path))
    end)
  end)

  describe(":stats()", function()
    it("counts blocks by state", function()
      local a = bf:allocate_blocks(3)
      bf:allocate()
      bf:free(a, 2)
      bf:set_control_data("abc")
      local st = bf:stats()
      assert.equal(2, st.used_blocks)
      assert.equal(2, st.free_blocks)
      assert.equal(1, st.free_runs)
      assert.equal(3, st.control_data)
      assert.equal(st.blocks, 1 + st.used_blocks + st.free_blocks
                   + st.tail_blocks)
      assert.equal(st.size, st.blocks * BS)
      assert.equal(0, st.live_views)
      assert.equal(path, st.path)
      assert.is_false(st.readonly)
      assert.is_false(st.anonymous)
      assert.equal(3, st.version)
    end)
  end)

  describe(":check()", function()
    it("passes on a sound file", function()
      local offs = {}
      for i = 1, 50 do offs[i] = bf:allocate() end
      for i = 1, 50, 3 do bf:free(offs[i]) end
      assert.is_true(bf:check())
    end)

    it("reports a free block overwritten on disk", function()
      local a = bf:allocate()
      local b = bf:allocate()
      bf:free(a)
      bf:free(b)
      bf:close()
      local s = h.readfile(path)
      s = s:sub(1, a) .. "X" .. s:sub(a + 2)   -- damage a's mark
      h.writefile(path, s)
      bf = assert(fmap.open(path))
      local ok, problems = bf:check()
      assert.is_nil(ok)
      assert.same({
        "free list is corrupt: block " .. a .. " is not marked as a free run",
        "free list: header counts 2 blocks in 1 runs, the list holds 0 in 0",
        "block " .. b .. " is marked free but is not on the free list "
          .. "(leaked)",
      }, problems)
      -- and allocation refuses to hand out a damaged list's blocks
      assert.equal("free list is corrupt: block " .. a .. " is not marked as "
                   .. "a free run", h.errmsg(function() bf:allocate() end))
      assert.equal(2, bf:stats().free_blocks)
    end)
  end)

  describe(":tostring()", function()
    it("summarises the file", function()
      local a, b = bf:allocate(), bf:allocate()
      bf:allocate()
      bf:free(a)
      bf:free(b)
      local v <close> = bf:get(bf:allocate())
      -- 1 header + 2 used + 1 free, and the tail grown but never used
      assert.equal("BlockFile (" .. path .. ", " .. bf:size() .. " bytes, "
                   .. bf:size() // BS .. " blocks of 4096: the header, 2 "
                   .. "used, 1 free, " .. bf:size() // BS - 4
                   .. " never used; 1 live view)", tostring(bf))
      assert.equal(bf:size() // BS - 4, bf:stats().tail_blocks)
      local a1 <close> = fmap.anonymous()
      assert.equal("BlockFile (anonymous, 4096 bytes, 1 block of 4096: the "
                   .. "header, 0 used, 0 free, 0 never used; 0 live views)",
                   tostring(a1))
    end)
  end)

  describe("misuse", function()
    it("names the type expected for self", function()
      assert.matches("BlockFile expected, got string",
                     h.errmsg(function() bf.allocate("x") end))
      assert.matches("BlockFile expected, got no value",
                     h.errmsg(function() bf.size() end))
    end)
  end)

  describe("randomized against a model", function()
    it("agrees with a Lua table through allocate, free, write and reopen",
       function()
      local model = {}          -- offset -> { blocks, byte }
      local count = 0
      local seed = h.SEED   -- the test's draws (spec/helpers.lua)
      for step = 1, 4000 do
        local r = math.random()
        if r < 0.45 or count == 0 then
          local n = math.random() < 0.8 and 1 or math.random(2, 6)
          local off = n == 1 and bf:allocate() or bf:allocate_blocks(n)
          assert.is_nil(model[off], "seed " .. seed)
          local byte = math.random(1, 255)
          bf:with(off, n, function(v)
            assert.equal(0, v:u64(0), "seed " .. seed)
            v:fill(byte)
          end)
          model[off] = { n, byte }
          count = count + 1
        elseif r < 0.85 then
          local keys = {}
          for k in pairs(model) do keys[#keys + 1] = k end
          table.sort(keys)
          local off = keys[math.random(#keys)]
          local n, byte = model[off][1], model[off][2]
          bf:with(off, n, function(v)
            assert.equal(string.rep(string.char(byte), n * BS), v:read(),
                         "seed " .. seed)
          end)
          bf:free(off, n)
          model[off] = nil
          count = count - 1
        elseif r < 0.99 then
          local used = 0
          for _, e in pairs(model) do used = used + e[1] end
          assert.equal(used, bf:stats().used_blocks, "seed " .. seed)
        else
          bf:close()
          bf = assert(fmap.open(path))
          assert.is_true(bf:check())
        end
        if step % 1000 == 0 then assert.is_true(bf:check()) end
      end
      for off, e in pairs(model) do
        bf:with(off, e[1], function(v)
          assert.equal(string.rep(string.char(e[2]), e[1] * BS), v:read())
        end)
      end
      assert.is_true(bf:check())
    end)
  end)
end)

describe("fmap.BlockFile after a crash", function()
  -- A kill is simulated by splicing two images of the file: block 0 (the
  -- header) from one instant and the other blocks from another, which is
  -- what a SIGKILL between the header write and the block writes leaves.
  local path, bf
  before_each(function() path = h.tmpname() end)
  after_each(function()
    if bf and not tostring(bf):match("closed") then bf:close() end
    os.remove(path)
  end)
  local function image () return h.readfile(path) end
  local function splice (header_from, blocks_from)
    h.writefile(path, header_from:sub(1, BS) .. blocks_from:sub(BS + 1))
  end

  it("redoes at open the mark a kill cut off after the header", function()
    bf = assert(fmap.create(path))
    local a = bf:allocate_blocks(4)
    bf:allocate()
    bf:free(a, 4)
    bf:close()
    local before = image()
    bf = assert(fmap.open(path))
    assert.equal(a + 3 * BS, bf:allocate())   -- the run's count: 4 -> 3
    bf:close()
    splice(image(), before)   -- the header says 3, the mark still says 4
    bf = assert(fmap.open(path))
    assert.same({ { offset = a, blocks = 3 } }, bf:free_list())
    assert.same({ nil, { "block " .. (a + 3 * BS) .. " is marked free but "
                         .. "is not on the free list (leaked)" } },
                { bf:check() })
    assert.equal(a + 2 * BS, bf:allocate())   -- never a + 3 * BS again
    bf:close()
    bf = assert(fmap.open(path, { repair = true }))
    assert.same({ { offset = a, blocks = 2 }, { offset = a + 3 * BS,
                  blocks = 1 } }, bf:free_list())
    assert.is_true(bf:check())
  end)

  it("reads a pending mark from the header in a read-only open", function()
    bf = assert(fmap.create(path))
    local a = bf:allocate_blocks(4)
    bf:allocate()
    bf:free(a, 4)
    bf:close()
    local before = image()
    bf = assert(fmap.open(path))
    bf:allocate()
    bf:close()
    splice(image(), before)
    bf = assert(fmap.open(path, { readonly = true }))
    assert.same({ { offset = a, blocks = 3 } }, bf:free_list())
    assert.equal(3, bf:stats().free_blocks)
  end)

  it("leaves the blocks of an interrupted free leaked; repair lists them",
     function()
    bf = assert(fmap.create(path))
    local a = bf:allocate_blocks(3)
    local b = bf:allocate()
    bf:close()
    local before = image()
    bf = assert(fmap.open(path))
    bf:free(a, 3)
    bf:close()
    splice(before, image())   -- the marks are written, the header is not
    bf = assert(fmap.open(path))
    assert.same({}, bf:free_list())
    local ok, problems = bf:check()
    assert.is_nil(ok)
    assert.equal(3, #problems)
    assert.matches("^block " .. a .. " is marked free but is not on the free "
                   .. "list %(leaked%)$", problems[1])
    assert.equal("bad argument #1 to 'get' (block at offset " .. a
                 .. " is free)", h.errmsg(function() bf:get(a) end))
    assert.equal(b + BS, bf:allocate())   -- a leaked block is not reused
    bf:close()
    bf = assert(fmap.open(path, { repair = true }))
    assert.same({ { offset = a, blocks = 3 } }, bf:free_list())
    assert.equal(3, bf:stats().free_blocks)
    assert.is_true(bf:check())
  end)

  it("repairs a free list whose head mark is torn", function()
    bf = assert(fmap.create(path))
    local a = bf:allocate_blocks(3)
    bf:allocate()
    bf:free(a, 3)
    bf:close()
    local s = image()
    s = s:sub(1, a + 32) .. "\0\0\0\0" .. s:sub(a + 37)   -- its checksum
    h.writefile(path, s)
    bf = assert(fmap.open(path))
    assert.same({ nil, {
      "free list is corrupt: block " .. a .. " is not marked as a free run",
      "free list: header counts 3 blocks in 1 runs, the list holds 0 in 0",
      "block " .. a .. " carries a torn free mark (leaked)",
      "block " .. (a + BS) .. " is marked free but is not on the free list "
        .. "(leaked)",
      "block " .. (a + 2 * BS) .. " is marked free but is not on the free "
        .. "list (leaked)",
    } }, { bf:check() })
    assert.equal("free list is corrupt: block " .. a .. " is not marked as "
                 .. "a free run", h.errmsg(function() bf:allocate() end))
    assert.equal("free list is corrupt: block " .. a .. " is not marked as "
                 .. "a free run", h.errmsg(function() bf:free(a + 3 * BS) end))
    assert.is_false(bf:is_free(a + 3 * BS))   -- the failed free freed nothing
    bf:close()
    bf = assert(fmap.open(path, { repair = true }))
    assert.same({ { offset = a, blocks = 3 } }, bf:free_list())
    assert.is_true(bf:check())
    assert.equal(a + 2 * BS, bf:allocate())
  end)

  it("refuses to repair in a read-only open", function()
    bf = assert(fmap.create(path))
    bf:close()
    assert.equal("bad argument #2 to 'open' (a read-only open cannot "
                 .. "repair)", h.errmsg(function()
                   fmap.open(path, { readonly = true, repair = true })
                 end))
  end)
end)

describe("fmap.open with repair, after a power loss", function()
  local path
  before_each(function() path = h.tmpname() end)
  after_each(function() os.remove(path) end)

  -- Makes path a 2-block file whose newest header slot has fields set,
  -- resealed with a valid checksum.
  local function with_header (fields)
    local bf = assert(fmap.create(path))
    bf:allocate()
    bf:close()
    local F = require "fmfile"
    local s = h.readfile(path)
    local _, slot = F.newest(s)
    h.writefile(path, F.set_slot(s, slot, fields))
  end

  it("extends a file whose growth was lost, keeping what it holds",
     function()
    local bf = assert(fmap.create(path))
    local a = bf:allocate()
    bf:with(a, 1, function(v) v:write(0, "flushed") end)
    local b = bf:allocate_blocks(3)
    bf:close()
    -- the header reached the disk, the file's new size did not
    h.writefile(path, h.readfile(path):sub(1, 2 * BS))
    assert.same({ nil, path .. ": allocated area ends at 20480, outside the "
                  .. "file (size 8192) or not block-aligned", 22 },
                { fmap.open(path) })
    bf = assert(fmap.open(path, { repair = true }))
    assert.equal(5 * BS, bf:size())
    assert.is_true(bf:check())
    assert.equal("flushed", bf:with(a, 1, function(v) return v:read(0, 7) end))
    assert.equal(string.rep("\0", 3 * BS), bf:with(b, 3, function(v)
      return v:read()
    end))
    bf:close()
    assert.is_true(fmap.open(path):check())
  end)

  it("does not extend a file to whatever a damaged header claims",
     function()
    with_header({ top = 4096 * 100000 })
    assert.same({ nil, path .. ": allocated area ends at 409600000, outside "
                  .. "the file (size 8192) or not block-aligned", 22 },
                { fmap.open(path, { repair = true }) })
    assert.equal(2 * BS, #h.readfile(path))
  end)

  it("restores at most one growth: four times the file and 256 blocks",
     function()
    local F = require "fmfile"
    with_header({ top = 264 * BS })  -- 2 blocks, 4 times that and 256
    local bf = assert(fmap.open(path, { repair = true }))
    assert.equal(264 * BS, bf:size())
    assert.is_true(bf:check())
    bf:close()
    with_header({ top = 265 * BS })  -- one block more
    assert.same({ nil, path .. ": allocated area ends at 1085440, outside "
                  .. "the file (size 8192) or not block-aligned", 22 },
                { fmap.open(path, { repair = true }) })
    assert.equal(2 * BS, #h.readfile(path))
    -- an allocation of many blocks in a small file, its growth lost
    bf = assert(fmap.create(path))
    local a = bf:allocate_blocks(32)
    bf:close()
    h.writefile(path, h.readfile(path):sub(1, BS))
    bf = assert(fmap.open(path, { repair = true }))
    assert.equal(a + 32 * BS, bf:size())
    assert.is_true(bf:check())
    bf:close()
    -- a larger file may have grown by up to three times itself at once
    bf = assert(fmap.create(path))
    bf:allocate_blocks(40)
    bf:close()
    local s = h.readfile(path):sub(1, 32 * BS)
    local _, slot = F.newest(s)
    h.writefile(path, F.set_slot(s, slot, { top = 128 * BS }))
    bf = assert(fmap.open(path, { repair = true }))
    assert.equal(128 * BS, bf:size())
    bf:close()
  end)

  it("caps the 256 blocks of slack at 1 GiB for large blocks", function()
    -- one 8 MiB block; 256 of them would be 2 GiB
    local bf = assert(fmap.create(path, 8 << 20))
    bf:close()
    local F = require "fmfile"
    local s = h.readfile(path)
    local _, slot = F.newest(s)
    h.writefile(path, F.set_slot(s, slot, { top = (4 << 23) + (1 << 30)
                                                  + (8 << 20) }))
    local ok, msg, e = fmap.open(path, { repair = true })
    assert.is_nil(ok)
    assert.equal(22, e)
    assert.matches("outside the file %(size 8388608%)", msg)
    assert.equal(8 << 20, #h.readfile(path))
  end)

  it("gives the growth back when the open fails after it", function()
    local bf = assert(fmap.create(path))
    bf:set_control_data("precious")
    bf:allocate_blocks(3)
    bf:close()
    local s = h.readfile(path):sub(1, 2 * BS)
    local at = s:find("precious", 1, true)
    h.writefile(path, s:sub(1, at - 1) .. "P" .. s:sub(at + 1))
    assert.same({ nil, path .. ": corrupt control data (checksum mismatch)",
                  22 }, { fmap.open(path, { repair = true }) })
    assert.equal(2 * BS, #h.readfile(path))
  end)

  it("does not extend a file shorter than one of the blocks its header "
     .. "claims", function()
    -- an intact header of 1 GiB blocks, in a file of two 4 KiB blocks:
    -- before, repair reserved up to 260 GiB of disk for it
    with_header({ block_size = 1 << 30, top = 4 << 30 })
    local ok, msg, e = fmap.open(path, { repair = true })
    assert.is_nil(ok)
    assert.equal(22, e)
    assert.matches("^" .. path:gsub("%p", "%%%0") .. ": ", msg)
    assert.equal(2 * BS, #h.readfile(path))
  end)
end)

describe("fmap module", function()
  it("reaches the structures written in Lua as its fields", function()
    assert.equal(require "fmap.bptree", fmap.bptree)
    assert.equal(require "fmap.audit", fmap.audit)
    assert.equal(require "fmap.varchar", fmap.varchar)
    assert.is_nil(fmap.no_such_module)
    assert.is_nil(fmap[1])
  end)

  it("tells monotonic time in seconds with fmap.clock()", function()
    local a = fmap.clock()
    assert.equal("float", math.type(a))
    local t0 = os.time()
    while os.time() == t0 do end          -- a whole second turns over
    local b = fmap.clock()
    assert.is_true(b > a and b - a < 60, "clock moved " .. (b - a))
  end)

  it("tells whether a file is a terminal with fmap.isatty()", function()
    local path = h.tmpname()
    local f = assert(io.open(path, "w"))
    assert.is_false(fmap.isatty(f))
    f:close()
    os.remove(path)
    -- named 'fmap.isatty' or 'isatty', as Lua finds it in package.loaded
    assert.matches("^bad argument #1 to '[%w.]*isatty' %(attempt to use a "
                   .. "closed file%)$", h.errmsg(function() fmap.isatty(f) end))
    assert.matches("^bad argument #1 to '[%w.]*isatty' %(FILE%* expected, "
                   .. "got number%)$", h.errmsg(function() fmap.isatty(2) end))
  end)

  it("syncs a folder with fmap.sync_dir(), or says why not", function()
    local path = h.tmpname()
    assert.is_true(fmap.sync_dir(path:match("^(.*)/")))
    assert.same({ nil, path .. ": No such file or directory", 2 },
                { fmap.sync_dir(path) })
    local f = assert(io.open(path, "w"))
    f:close()
    assert.same({ nil, path .. ": Not a directory", 20 },
                { fmap.sync_dir(path) })
    os.remove(path)
  end)

  describe("fmap.batch_iterator()", function()
    -- fill hands out the numbers 1..total, batch at a time
    local function counter (total, batch)
      local next_, fills = 1, 0
      return function (buf)
        fills = fills + 1
        local n = 0
        while n < batch and next_ <= total do
          n = n + 1
          buf[n] = next_
          next_ = next_ + 1
        end
        return n
      end, function () return fills end
    end

    it("steps through what fill puts in its buffer", function()
      local fill, fills = counter(7, 3)
      local got = {}
      for x in fmap.batch_iterator(fill, 1) do got[#got + 1] = x end
      assert.same({ 1, 2, 3, 4, 5, 6, 7 }, got)
      assert.equal(4, fills())         -- three batches and the empty one
      fill = counter(6, 4)
      got = {}
      for a, b in fmap.batch_iterator(fill, 2) do got[#got + 1] = a .. ":" .. b end
      assert.same({ "1:2", "3:4", "5:6" }, got)
      -- a negative width walks each batch from its end
      fill = counter(6, 4)
      got = {}
      for a, b in fmap.batch_iterator(fill, -2) do got[#got + 1] = a .. ":" .. b end
      assert.same({ "3:4", "1:2", "5:6" }, got)
      fill = counter(5, 3)
      got = {}
      for x in fmap.batch_iterator(fill, -1) do got[#got + 1] = x end
      assert.same({ 3, 2, 1, 5, 4 }, got)
      -- nil ends it as 0 does, and it stays ended
      local it = fmap.batch_iterator(function () return nil end, 1)
      assert.is_nil(it())
      assert.is_nil(it())
    end)

    it("raises when what it watches changes", function()
      local t = { mods = 1 }
      local it = fmap.batch_iterator(counter(10, 5), 1, t, "mods", "it moved")
      assert.equal(1, it())
      t.mods = 2
      local ok, err = pcall(it)
      assert.is_false(ok)
      assert.matches("it moved$", err)
      t.mods = 1
      assert.equal(2, it())
      -- a watched key that was nil may stay nil
      it = fmap.batch_iterator(counter(1, 5), 1, t, "absent")
      assert.equal(1, it())
      t.absent = true
      assert.matches("changed during iteration", select(2, pcall(it)))
    end)

    it("refuses misuse", function()
      assert.equal("bad argument #1 to 'batch_iterator' (function expected, "
                   .. "got nil)", h.errmsg(function()
                     fmap.batch_iterator(nil, 1)
                   end))
      assert.equal("bad argument #2 to 'batch_iterator' (width must be 1 to "
                   .. "16, or -16 to -1)", h.errmsg(function()
                     fmap.batch_iterator(print, 0)
                   end))
      assert.matches("width must be", h.errmsg(function()
        fmap.batch_iterator(print, -17)
      end))
      assert.equal("bad argument #3 to 'batch_iterator' (table expected, "
                   .. "got string)", h.errmsg(function()
                     fmap.batch_iterator(print, 1, "x", "y")
                   end))
      assert.equal("bad argument #4 to 'batch_iterator' (key expected)",
                   h.errmsg(function() fmap.batch_iterator(print, 1, {}) end))
      local it = fmap.batch_iterator(function () return "many" end, 1)
      assert.equal("batch fill returned string, not a count",
                   h.errmsg(function() it() end))
      it = fmap.batch_iterator(function () return -1 end, 1)
      assert.equal("batch fill returned -1, a negative count",
                   h.errmsg(function() it() end))
      it = fmap.batch_iterator(function () error("fill failed", 0) end, 1)
      assert.equal("fill failed", h.errmsg(function() it() end))
      -- three values cannot make steps of two (nor of two backward)
      for _, w in ipairs({ 2, -2 }) do
        it = fmap.batch_iterator(counter(3, 3), w)
        assert.equal("batch fill returned 3 values, not a multiple of the "
                     .. "width 2", h.errmsg(function() it() end))
      end
    end)
  end)

  describe("bf:entry_iterator()", function()
    -- a block of 8 entries of 8 bytes: "k0v00000", "k1v00001", ...
    local bf, off
    before_each(function()
      bf = assert(fmap.anonymous())
      off = bf:allocate()
      bf:with(off, 1, function (v)
        for i = 0, 7 do v:write(i * 8, ("k%dv%05d"):format(i, i)) end
      end)
    end)
    after_each(function()
      if not tostring(bf):match("closed") then bf:close() end
    end)
    -- a fill that hands out the given runs, then nil
    local function runs (...)
      local list, i = { ... }, 0
      return function ()
        i = i + 1
        if list[i] then return table.unpack(list[i], 1, 5) end
      end
    end
    local function all (it)
      local got = {}
      for a, b in it do got[#got + 1] = b and a .. ":" .. b or a end
      return got
    end

    it("reads each entry from the file as its step returns it", function()
      assert.same({ "k0:v00000", "k1:v00001", "k2:v00002" },
                  all(bf:entry_iterator(runs({ off, 3, 8, 2, 6 }))))
      -- without a second length, one string a step
      assert.same({ "k5", "k6", "k7" },
                  all(bf:entry_iterator(runs({ off + 40, 3, 8, 2 }))))
      -- a negative stride walks down; runs follow each other; a run of 0
      -- entries asks fill again
      assert.same({ "v00007", "v00006", "k0", "k2" },
                  all(bf:entry_iterator(runs({ off + 58, 2, -8, 6 },
                                             { off, 0, 8, 2 },
                                             { off, 2, 16, 2 }))))
      -- a stride of 0 repeats an entry; a length of 0 reads ""
      assert.same({ "k3", "k3", ":" }, all(bf:entry_iterator(runs(
        { off + 24, 2, 0, 2 }, { off, 1, 8, 0, 0 }))))
      -- nil ends it, and it stays ended without calling fill again
      local calls = 0
      local it = bf:entry_iterator(function () calls = calls + 1 end)
      assert.is_nil(it())
      assert.is_nil(it())
      assert.equal(1, calls)
      -- a read-only BlockFile reads too
      local path = h.tmpname()
      local w = assert(fmap.create(path))
      local b = w:allocate()
      w:with(b, 1, function (v) v:write(100, "abc") end)
      w:close()
      local r = assert(fmap.open(path, { readonly = true }))
      assert.same({ "abc" }, all(r:entry_iterator(runs({ b + 100, 1, 0, 3 }))))
      r:close()
      os.remove(path)
    end)

    it("walks a chain of nodes, as the README's example does", function()
      local function node (entries, nxt)
        local at = bf:allocate()
        bf:with(at, 1, function (v)
          v:set_u32(0, #entries)
          v:set_u64(8, nxt)
          for i, e in ipairs(entries) do v:write(16 + (i - 1) * 12, e) end
        end)
        return at
      end
      local second = node({ "ddddv4v4v4v4", "eeeev5v5v5v5" }, 0)
      local empty = node({}, second)
      local first = node({ "aaaav1v1v1v1", "bbbbv2v2v2v2" }, empty)
      local function entries (head)
        local o = head
        return bf:entry_iterator(function ()
          if o == 0 then return nil end
          local at, n = o, nil
          n, o = bf:with(at, 1, function (v) return v:u32(0), v:u64(8) end)
          return at + 16, n, 12, 4, 8
        end)
      end
      assert.same({ "aaaa:v1v1v1v1", "bbbb:v2v2v2v2", "dddd:v4v4v4v4",
                    "eeee:v5v5v5v5" }, all(entries(first)))
    end)

    it("reads the file as it is at each step, while it grows", function()
      local it = bf:entry_iterator(runs({ off, 8, 8, 2, 6 }))
      local size = bf:size()
      local got = {}
      for k, v in it do
        got[#got + 1] = k .. v
        -- the map moves; the next entry changes before its step
        for _ = 1, 30 do bf:allocate() end
        bf:with(off, 1, function (w) w:write(#got * 8 + 2, "CHANGE") end)
      end
      assert.is_true(bf:size() > size)
      assert.equal("k0v00000", got[1])
      for i = 2, 8 do assert.equal(("k%dCHANGE"):format(i - 1), got[i]) end
    end)

    it("raises when what it watches changes, or the file closes", function()
      local t = { mods = 1 }
      local it = bf:entry_iterator(runs({ off, 8, 8, 2 }), t, "mods",
                                   "it moved")
      assert.equal("k0", it())
      t.mods = 2
      assert.matches("it moved$", h.errmsg(it))
      t.mods = 1
      assert.equal("k1", it())
      bf:close()
      assert.equal("attempt to use a closed BlockFile", h.errmsg(it))
      -- a fill that closes the file
      bf = assert(fmap.anonymous())
      off = bf:allocate()
      it = bf:entry_iterator(function () bf:close(); return off, 1, 8, 2 end)
      assert.equal("attempt to use a closed BlockFile", h.errmsg(it))
    end)

    it("raises, rather than trusting them, when debug.setupvalue replaces "
       .. "a step's state or BlockFile", function()
      local other = assert(fmap.anonymous())
      local v <close> = other:get(other:allocate())
      for _, replace in ipairs({ { 1, v }, { 1, io.stdout }, { 1, {} },
                                 { 2, other }, { 2, false } }) do
        local it = bf:entry_iterator(runs({ off, 8, 8, 2 }))
        assert.equal("k0", it())
        debug.setupvalue(it, replace[1], replace[2])
        assert.matches(replace[1] == 1 and "the iterator's state is gone"
                       or "the iterator's BlockFile is gone", h.errmsg(it))
      end
      local it = fmap.batch_iterator(function (buf) buf[1] = 1; return 1 end, 1)
      assert.equal(1, it())
      debug.setupvalue(it, 1, v)
      assert.matches("the iterator's state is gone", h.errmsg(it))
      -- the buffer (2) and the watched table (4) of either iterator
      local function fill (buf) buf[1] = 1; return 1 end
      it = fmap.batch_iterator(fill, 1)
      debug.setupvalue(it, 2, 7)
      assert.matches("the iterator's state is gone", h.errmsg(it))
      it = fmap.batch_iterator(fill, 1, {}, "k")
      debug.setupvalue(it, 4, 7)
      assert.matches("the iterator's state is gone", h.errmsg(it))
      it = bf:entry_iterator(runs({ off, 8, 8, 2 }), {}, "k")
      debug.setupvalue(it, 4, 7)
      assert.matches("the iterator's state is gone", h.errmsg(it))
      -- the metatables every function of the module closes over
      local get = getmetatable(bf).__index.get
      for i, call in ipairs { function (f) return f(bf, off) end,
                              function (f) return f() end } do
        local f = i == 1 and get or fmap.anonymous
        local name, mt = debug.getupvalue(f, i)
        debug.setupvalue(f, i, 12345)
        local msg = h.errmsg(call, f)
        debug.setupvalue(f, i, mt)
        assert.equal("the engine's metatable is gone (an upvalue was "
                     .. "replaced)", msg, name)
      end
      v:release()
      other:close()
    end)

    it("raises when its file was replaced by a new one, even at the "
       .. "same address", function()
      -- as for bf:searcher: a run checked against a file of 2,000 blocks
      -- must not be read from a new file of one
      for _ = 1, 20 do
        local big = assert(fmap.anonymous())
        for _ = 1, 2000 do big:allocate() end
        local it = big:entry_iterator(function ()
          return 4096, 7, 1 << 20, 8
        end)
        it()
        debug.setupvalue(it, 2, nil)
        big:close()
        big = nil                                -- luacheck: ignore
        collectgarbage()
        collectgarbage()
        local small = assert(fmap.anonymous())
        small:allocate()
        debug.setupvalue(it, 2, small)
        assert.equal("the iterator's BlockFile is gone (an upvalue was "
                     .. "replaced)", h.errmsg(it))
        small:close()
      end
    end)

    it("refuses misuse, and runs outside the allocated blocks", function()
      assert.equal("bad argument #1 to 'entry_iterator' (BlockFile expected, "
                   .. "got nil; call it with ':')", h.errmsg(function()
                     bf.entry_iterator(nil, print)
                   end))
      assert.equal("bad argument #1 to 'entry_iterator' (function "
                   .. "expected, got no value)", h.errmsg(function()
                     bf:entry_iterator()
                   end))
      assert.equal("bad argument #2 to 'entry_iterator' (table expected, "
                   .. "got string)", h.errmsg(function()
                     bf:entry_iterator(print, "x", "y")
                   end))
      assert.equal("bad argument #3 to 'entry_iterator' (key expected)",
                   h.errmsg(function() bf:entry_iterator(print, {}) end))
      local closed = assert(fmap.anonymous())
      closed:close()
      assert.equal("attempt to use a closed BlockFile",
                   h.errmsg(function() closed:entry_iterator(print) end))
      local function fails (run)
        return h.errmsg(bf:entry_iterator(runs(run)))
      end
      assert.equal("entry_iterator's fill returned a string value as the "
                   .. "length, not an integer", fails({ off, 1, 8, "two" }))
      assert.equal("entry_iterator's fill returned a boolean value as the "
                   .. "position, not an integer", h.errmsg(
                     bf:entry_iterator(function () return false end)))
      assert.equal("entry_iterator's fill returned a number value as the "
                   .. "stride, not an integer", fails({ off, 1, 0.5, 2 }))
      assert.equal("entry_iterator's fill returned a negative count (-1)",
                   fails({ off, -1, 8, 2 }))
      assert.equal("entry_iterator's fill returned a negative second "
                   .. "length (-6)", fails({ off, 1, 8, 2, -6 }))
      local outside = "^entry_iterator's fill returned a run outside the "
                      .. "allocated blocks %(offsets 4096 to 8192%): "
      assert.matches(outside .. "offset 0, count 1, stride 8, lengths 2 "
                     .. "and 0$", fails({ 0, 1, 8, 2 }))
      assert.matches(outside .. "offset 4096, count 9,",
                     fails({ off, 9, 512, 2 }))
      assert.matches(outside, fails({ off + 4095, 1, 8, 2 }))
      assert.matches(outside, fails({ off + 8, 2, -16, 2 }))
      for _, run in ipairs({
        { off, math.maxinteger, 8, 2 }, { off, 2, math.maxinteger, 2 },
        { off, 2, math.mininteger, 2 }, { off, 1, 8, math.maxinteger },
        { off, 1, 8, 2, math.maxinteger }, { math.maxinteger, 1, 8, 0 },
        { off + 4088, 1, 8, 4, 5 },
      }) do
        assert.matches(outside, fails(run))
      end
      -- a run in a free block
      local spare = bf:allocate()
      bf:free(spare)
      assert.equal("entry_iterator's fill returned a run in a free block: "
                   .. "block at offset " .. spare .. " is free",
                   fails({ spare, 1, 8, 2 }))
      -- fill's own error goes through
      assert.equal("fill failed", h.errmsg(bf:entry_iterator(function ()
        error("fill failed", 0)
      end)))
      -- a run of 0 entries is not checked: there is nothing to read
      assert.same({}, all(bf:entry_iterator(runs({ 0, 0, 8, 2 }))))
    end)

    it("refuses a step into a block freed during the loop", function()
      local a = bf:allocate()
      bf:allocate()
      local b = bf:allocate()           -- not beside a: no run merges them
      bf:with(a, 1, function (v) v:write(0, ("abcd"):rep(8)) end)
      -- a free elsewhere leaves the run's steps alone
      local it = bf:entry_iterator(runs({ a, 8, 4, 4 }))
      assert.equal("abcd", it())
      bf:free(b)
      assert.equal("abcd", it())
      -- a free of the run's block stops the next step
      bf:free(a)
      assert.equal("entry_iterator: a block of its run was freed during the "
                   .. "loop: block at offset " .. a .. " is free",
                   h.errmsg(it))
      -- allocated again, the block is the file's to read (zeroes now)
      assert.equal(a, bf:allocate())
      assert.equal(b, bf:allocate())
      it = bf:entry_iterator(runs({ a, 2, 4, 4 }))
      assert.equal(("\0"):rep(4), it())
      bf:free(a)
      assert.equal(a, bf:allocate())
      assert.equal(("\0"):rep(4), it())
    end)
  end)

  describe("v:descend_insert(), v:descend_remove() and v:descend_put()",
           function()
    -- A two-level tree by hand. Internal: u32 count at 4, C0 at 8, then
    -- entries of a 4-byte key and the u64 child to its right, 12 bytes
    -- apart from 16. Leaves: u32 count at 4, entries of a 4-byte key and
    -- a 4-byte value, 8 bytes apart from 16, 4 at most. The entry count
    -- is the u64 at 0 of a third block.
    local bf, root, a, b, meta, child, v, mv
    local function key (k) return string.pack(">I4", k) end
    local function val (k) return ("v%03d"):format(k) end
    local function keys (o)
      return bf:with(o, 1, function (w)
        local r = {}
        for i = 0, w:u32(4) - 1 do
          r[#r + 1] = (string.unpack(">I4", w:read(16 + 8 * i, 4)))
        end
        return r
      end)
    end
    before_each(function()
      bf = assert(fmap.anonymous())
      root, a, b, meta = bf:allocate(), bf:allocate(), bf:allocate(),
                         bf:allocate()
      bf:with(root, 1, function (w)
        w:set_u32(4, 1)
        w:set_u64(8, a)
        w:pack(16, "c4<I8", key(20), b)
      end)
      child = bf:searcher(4, 16, 12, 8)
      v = bf:get(root)
      mv = bf:get(meta)
    end)
    after_each(function()
      v:release()
      mv:release()
      if not tostring(bf):match("closed") then bf:close() end
    end)
    local function ins (k, vv)
      return v:descend_insert(child, root, 1, 4, 4, 16, 8, 4, k, vv, mv, 0)
    end

    it("inserts into the leaf the descent reaches, and counts", function()
      assert.same({ 0, 1, true, a }, { ins(key(15), val(15)) })
      assert.same({ 0, 1, true, b }, { ins(key(25), val(25)) })
      assert.same({ 0, 2, true, a }, { ins(key(5), val(5)) })
      -- an equal key goes after its equals, on the right of the separator
      assert.same({ 0, 2, true, b }, { ins(key(20), val(20)) })
      assert.same({ 5, 15 }, keys(a))
      assert.same({ 20, 25 }, keys(b))
      assert.equal(4, mv:u64(0))
      assert.equal(b, v:offset())      -- the view is on the last leaf
      -- a full leaf is left as it is, and not counted
      assert.same({ 2, 3, true, a }, { ins(key(17), val(17)) })
      assert.same({ 2, 4, true, a }, { ins(key(16), val(16)) })
      assert.same({ 4, 4, false, a }, { ins(key(18), val(18)) })
      assert.same({ 5, 15, 16, 17 }, keys(a))
      assert.equal(6, mv:u64(0))
      -- without a counter, nothing is counted; depth 0 is the root itself
      local w = bf:get(a)
      assert.same({ 3, 5, true, a }, { w:descend_insert(child, a, 0, 4, 4,
        16, 8, 5, key(16), val(16)) })
      assert.equal(6, mv:u64(0))
      w:release()
    end)

    it("removes a key's entries from the leaf reached, and counts", function()
      for _, k in ipairs({ 5, 15, 15, 25, 30 }) do ins(key(k), val(k)) end
      assert.equal(5, mv:u64(0))
      local function rem (k)
        return v:descend_remove(child, root, 1, 4, 4, 16, 8, k, mv, 0)
      end
      assert.same({ 1, 2, 1, a }, { rem(key(15)) })
      assert.same({ 0, 0, 2, b }, { rem(key(21)) })
      assert.same({ 0, 1, 1, b }, { rem(key(25)) })
      assert.same({ 5 }, keys(a))
      assert.same({ 30 }, keys(b))
      assert.equal(2, mv:u64(0))
    end)

    it("puts into the leaf the lower descent reaches, and counts",
       function()
      local function put (k, vv, link)
        return v:descend_put(child, root, 1, 4, 4, 16, 8, 4, k, vv,
                             link or 8, mv, 0)
      end
      local function link (to)
        bf:with(a, 1, function (w) w:set_u64(8, to) end)
      end
      assert.same({ 0, 1, 0, a }, { put(key(15), val(15)) })  -- inserted
      assert.same({ 0, 1, 0, b }, { put(key(25), val(25)) })
      assert.same({ 0, 1, 1, a, val(15) }, { put(key(15), "new!") })
      assert.equal("new!", bf:with(a, 1, function (w)
        return w:read(20, 4)
      end))
      assert.equal(2, mv:u64(0))        -- a replace is not counted
      -- a leaf with a next one: at its end, the next leaf decides
      link(b)
      assert.same({ 1, 1, 5, a }, { put(key(18), val(18)) })  -- edge, new
      assert.same({ 0, 1, 4, a }, { put(key(15), "xxxx") })   -- edge, found
      assert.equal("new!", bf:with(a, 1, function (w)
        return w:read(20, 4)
      end))
      link(0)
      assert.same({ 1, 2, 0, a }, { put(key(18), val(18)) })
      -- a key of two entries, and a full leaf, are left as they are
      ins(key(18), val(18))
      assert.same({ 1, 3, 3, a }, { put(key(18), "yyyy") })   -- several
      ins(key(1), val(1))
      assert.same({ 2, 4, 2, a }, { put(key(16), val(16)) })  -- full
      assert.same({ 1, 15, 18, 18 }, keys(a))
      assert.equal(5, mv:u64(0))
      assert.equal(a, v:offset())
      -- arguments
      assert.equal(0, select("#", put("abc", val(1))))
      assert.equal(0, select("#", put(key(1), "too long")))
      assert.matches("link position 4096 leaves no u64", h.errmsg(function()
        put(key(2), val(2), 4096)
      end))
      assert.equal(5, mv:u64(0))
    end)

    it("returns nil for a key or value not of the sizes, and changes "
       .. "nothing", function()
      for _, bad in ipairs({ { 1234, val(1) }, { "abc", val(1) },
                             { key(1) .. "x", val(1) }, { key(1), "vv" },
                             { key(1), nil }, { {}, val(1) } }) do
        assert.equal(0, select("#", ins(bad[1], bad[2])))
      end
      assert.equal(0, select("#", v:descend_remove(child, root, 1, 4, 4, 16,
                                                    8, 15, mv, 0)))
      assert.same({}, keys(a))
      assert.same({}, keys(b))
      assert.equal(0, mv:u64(0))
      assert.equal(root, v:offset())
    end)

    it("raises on misuse and on a damaged tree", function()
      assert.matches("bad argument #1 to 'descend_insert' %(searcher "
                     .. "expected", h.errmsg(function()
        v:descend_insert(print, root, 1, 4, 4, 16, 8, 4, key(1), val(1))
      end))
      local other = assert(fmap.anonymous())
      local theirs = other:searcher(4, 16, 12, 8)
      assert.matches("a searcher of another BlockFile", h.errmsg(function()
        v:descend_insert(theirs, root, 1, 4, 4, 16, 8, 4, key(1), val(1))
      end))
      other:close()
      assert.matches("depth %-1 is not 0 to", h.errmsg(function()
        v:descend_insert(child, root, -1, 4, 4, 16, 8, 4, key(1), val(1))
      end))
      assert.matches("has no u64 there", h.errmsg(function()
        v:descend_insert(bf:searcher(4, 16, 12), root, 1, 4, 4, 16, 8, 4,
                         key(1), val(1))
      end))
      assert.matches("key size must be positive", h.errmsg(function()
        v:descend_remove(child, root, 1, 0, 4, 16, 8, key(1))
      end))
      -- a child that is free is named with its parent
      bf:free(b)
      assert.matches("the child beside entry 1 of the node at " .. root
                     .. ":", h.errmsg(function()
        v:descend_insert(child, root, 1, 4, 4, 16, 8, 4, key(30), val(30))
      end))
      assert.equal(root, v:offset())   -- the view did not move
      -- a read-only file's view refuses before anything is read
      local path = os.tmpname()
      local w = assert(fmap.create(path))
      local o = w:allocate()
      w:close()
      w = assert(fmap.open(path, { readonly = true }))
      local rv = w:get(o)
      assert.matches("read%-only", h.errmsg(function()
        rv:descend_insert(w:searcher(4, 16, 12, 8), o, 0, 4, 4, 16, 8, 4,
                          key(1), val(1))
      end))
      rv:release()
      w:close()
      os.remove(path)
    end)
  end)

  describe("bf:searcher()", function()
    -- a node's shape: a u32 count at 4, then entries of a 4-byte key and
    -- a 4-byte value, 8 bytes apart from 16
    local bf, off
    before_each(function()
      bf = assert(fmap.anonymous())
      off = bf:allocate()
    end)
    after_each(function()
      if not tostring(bf):match("closed") then bf:close() end
    end)
    local function key (k) return string.pack(">I4", k) end
    -- writes keys (with values "v<k>") into the node at o
    local function node (o, keys)
      bf:with(o, 1, function (v)
        v:set_u32(4, #keys)
        for i, k in ipairs(keys) do
          v:pack(16 + (i - 1) * 8, ">I4c4", k, ("v%03d"):format(k % 1000))
        end
      end)
    end

    it("searches the node in a block as a view's search would", function()
      node(off, { 10, 20, 30 })
      local search = bf:searcher(4, 16, 8)
      assert.same({ 1, true, nil, 3, off }, { search(off, key(20)) })
      assert.same({ 2, true, nil, 3, off },
                  { search(off, key(20), true) })
      assert.same({ 0, false, nil, 3, off }, { search(off, key(5)) })
      assert.same({ 3, false, nil, 3, off }, { search(off, key(40)) })
      local value = bf:searcher(4, 16, 8, 20, 4)
      assert.same({ 2, true, "v030", 3, off }, { value(off, key(30)) })
      -- past the count, the field is still read where the index points
      assert.same({ 3, false, "\0\0\0\0", 3, off },
                  { value(off, key(99)) })
      -- entries of 16 bytes: a key, 4 bytes of padding and a u64 child;
      -- at without len reads the u64
      local child = bf:searcher(4, 16, 16, 24)
      bf:with(off, 1, function (v)
        v:set_u32(4, 2)
        v:pack(16, "<c4I4I8c4I4I8", key(10), 0, 77, key(20), 0, 88)
      end)
      assert.same({ 1, true, 88, 2, off }, { child(off, key(20)) })
      assert.same({ 0, false, 77, 2, off }, { child(off, key(9)) })
      node(off, {})
      assert.same({ 0, false, nil, 0, off }, { search(off, key(20)) })
      -- a number key is a string of its digits, as for v:search
      node(off, { 0x31323334 })
      assert.same({ 0, true, nil, 1, off }, { search(off, 1234) })
    end)

    it("takes whole keys only with a key size", function()
      node(off, { 10, 20, 30 })
      local search = bf:searcher(4, 16, 8, 20, 4, 4)
      assert.same({ 1, true, "v020", 3, off }, { search(off, key(20)) })
      for _, bad in ipairs({ 1234, "abc", key(1) .. "x", {}, false }) do
        assert.equal(0, select("#", search(off, bad)))
      end
      assert.matches("bad argument #6 to 'searcher' %(key size 9 is not "
                     .. "1 to the stride %(8%)%)", h.errmsg(function()
        bf:searcher(4, 16, 8, 20, 4, 9)
      end))
      assert.matches("key size 0", h.errmsg(function()
        bf:searcher(4, 16, 8, nil, nil, 0)
      end))
    end)

    it("agrees with v:search over random nodes", function()
      local blocks = {}
      for i = 1, 8 do blocks[i] = bf:allocate() end
      local search = bf:searcher(4, 16, 8, 20, 4)
      for round = 1, 200 do
        local o = blocks[round % #blocks + 1]
        local keys, n = {}, math.random(0, 200)
        for i = 1, n do keys[i] = math.random(0, 500) end
        table.sort(keys)
        node(o, keys)
        bf:with(o, 1, function (v)
          for _ = 1, 20 do
            local k, upper = key(math.random(-1, 501) & 0xFFFFFFFF),
                             math.random() < 0.5
            local want = { v:search(4, 16, 8, k, upper, 20, 4) }
            want[5] = o
            assert.same(want, { search(o, k, upper) })
          end
        end)
      end
    end)

    it("reads the file as it is now, after growth moved the map", function()
      node(off, { 10, 20, 30 })
      local search = bf:searcher(4, 16, 8, 20, 4)
      local address = bf:address()
      local later = {}
      for i = 1, 2000 do later[i] = bf:allocate() end
      node(later[2000], { 7 })
      assert.is_false(bf:valid(address))
      assert.same({ 1, true, "v020", 3, off }, { search(off, key(20)) })
      assert.same({ 0, true, "v007", 1, later[2000] },
                  { search(later[2000], key(7)) })
    end)

    it("searches a read-only file", function()
      local path = h.tmpname()
      local w = assert(fmap.create(path))
      local o = w:allocate()
      w:with(o, 1, function (v)
        v:set_u32(4, 1)
        v:write(16, "abcdVVVV")
      end)
      w:close()
      local r = assert(fmap.open(path, { readonly = true }))
      assert.same({ 0, true, "VVVV", 1, o },
                  { r:searcher(4, 16, 8, 20, 4)(o, "abcd") })
      r:close()
      os.remove(path)
    end)

    it("refuses a layout that leaves no node in a block", function()
      local function err (...)
        local args = table.pack(...)
        return h.errmsg(function()
          bf:searcher(table.unpack(args, 1, args.n))
        end)
      end
      assert.equal("bad argument #1 to 'searcher' (BlockFile expected, got "
                   .. "nil; call it with ':')", h.errmsg(function()
                     bf.searcher(nil, 4, 16, 8)
                   end))
      assert.equal("bad argument #1 to 'searcher' (count position 4093 "
                   .. "leaves no 4-byte count in a block (4096 bytes))",
                   err(4093, 16, 8))
      assert.equal("bad argument #1 to 'searcher' (count position -1 "
                   .. "leaves no 4-byte count in a block (4096 bytes))",
                   err(-1, 16, 8))
      assert.equal("bad argument #2 to 'searcher' (position 4097 is "
                   .. "outside a block (4096 bytes))", err(4, 4097, 8))
      assert.equal("bad argument #2 to 'searcher' (position "
                   .. math.mininteger .. " is outside a block (4096 bytes))",
                   err(4, math.mininteger, 8))
      assert.equal("bad argument #3 to 'searcher' (stride must be "
                   .. "positive)", err(4, 16, 0))
      assert.equal("bad argument #3 to 'searcher' (number has no integer "
                   .. "representation)", err(4, 16, 1.5))
      assert.equal("bad argument #4 to 'searcher' (position -1 is "
                   .. "negative)", err(4, 16, 8, -1))
      assert.equal("bad argument #5 to 'searcher' (length -1 is "
                   .. "negative)", err(4, 16, 8, 20, -1))
      assert.equal("bad argument #4 to 'searcher' (a length wants a "
                   .. "position)", err(4, 16, 8, nil, 4))
      assert.equal("bad argument #1 to 'searcher' (number expected, got "
                   .. "string)", err("x", 16, 8))
      bf:close()
      assert.equal("attempt to use a closed BlockFile", err(4, 16, 8))
    end)

    it("refuses blocks that hold no node, and keys that are no string",
       function()
      local search = bf:searcher(4, 16, 8)
      node(off, { 10, 20, 30 })
      local function err (...)
        local args = table.pack(...)
        return h.errmsg(function()
          search(table.unpack(args, 1, args.n))
        end)
      end
      assert.matches("^bad argument #1 to '%S+' %(offset 0 is the control "
                     .. "block%)$", err(0, "abcd"))
      assert.matches("^bad argument #1 to '%S+' %(offset 4097 is not "
                     .. "block%-aligned%)$", err(off + 1, "abcd"))
      assert.matches("%(offset %-4096 is negative%)$", err(-4096, "abcd"))
      assert.matches("%(1 block at offset 8192 passes the allocated area "
                     .. "%(which ends at 8192%)%)$", err(off + 4096, "abcd"))
      assert.matches("%(1 block at offset " .. math.maxinteger // 4096 * 4096
                     .. " passes", err(math.maxinteger // 4096 * 4096, "k"))
      assert.matches("%(number expected, got string%)$", err("x", "abcd"))
      assert.matches("^bad argument #2 to '%S+' %(string expected, got "
                     .. "table%)$", err(off, {}))
      assert.matches("%(string expected, got no value%)$", err(off))
      local spare = bf:allocate()
      bf:free(spare)
      assert.matches("%(block at offset " .. spare .. " is free%)$",
                     err(spare, "abcd"))
      -- a count from the file that passes the block
      bf:with(off, 1, function (v) v:set_u32(4, 0xFFFFFFFF) end)
      assert.equal("the node at 4096 counts 4294967295 entries of 8 bytes "
                   .. "(keys of 4) from position 16, which pass its block "
                   .. "(4096 bytes)", err(off, "abcd"))
      bf:with(off, 1, function (v) v:set_u32(4, 510) end)   -- the last fits
      assert.same({ 510, false, nil, 510, off },
                  { search(off, "\255\255\255\255", true) })
      bf:with(off, 1, function (v) v:set_u32(4, 511) end)
      assert.matches("counts 511 entries", err(off, "abcd"))
      -- a key longer than the stride still reads inside the block
      bf:with(off, 1, function (v) v:set_u32(4, 510) end)
      assert.matches("counts 510 entries of 8 bytes %(keys of 9%)",
                     err(off, "abcdefghi"))
      bf:close()
      assert.equal("attempt to use a closed BlockFile", err(off, "abcd"))
    end)

    it("raises when its upvalues are replaced", function()
      node(off, { 10 })
      local search = bf:searcher(4, 16, 8)
      local other = assert(fmap.anonymous())
      local v = other:get(other:allocate())
      -- the file (1) or the state (2) replaced
      for _, swap in ipairs({ { 1, other }, { 2, v }, { 2, "x" }, { 1 } }) do
        local copy = bf:searcher(4, 16, 8)
        debug.setupvalue(copy, swap[1], swap[2])
        assert.equal("the searcher's state is gone (an upvalue was "
                     .. "replaced)", h.errmsg(function()
                       copy(off, key(10))
                     end))
      end
      -- another searcher's state for the same file is a searcher still
      local copy = bf:searcher(4, 16, 8, 20, 4)
      debug.setupvalue(copy, 2, select(2, debug.getupvalue(search, 2)))
      assert.same({ 0, true, nil, 1, off }, { copy(off, key(10)) })
      assert.same({ 0, true, nil, 1, off }, { search(off, key(10)) })
      v:release()
      other:close()
    end)

    -- Nodes for descents: internal ones hold a u32 count at 4, C[0] at 8,
    -- then entries of a 4-byte key and an 8-byte child from 16 (so C[j] is
    -- at 8 + 12 * j); leaves are node()'s.
    local function inner (o, keys, children)
      bf:with(o, 1, function (v)
        v:set_u32(4, #keys)
        v:set_u64(8, children[1])
        for i, k in ipairs(keys) do
          v:pack(16 + (i - 1) * 12, ">I4<I8", k, children[i + 1])
        end
      end)
    end

    it("descends: depth nodes through the u64 beside each hit, then one "
       .. "with the searcher below", function()
      local child = bf:searcher(4, 16, 12, 8)
      local value = bf:searcher(4, 16, 8, 20, 4)
      local blocks = {}
      for i = 1, 24 do blocks[i] = bf:allocate() end
      local function sorted (n, hi)
        local t = {}
        for i = 1, n do t[i] = math.random(0, hi) end
        table.sort(t)
        return t
      end
      for _ = 1, 100 do
        -- blocks[1] the root, 2..6 the next level, 7..24 leaves
        local function kids (n, from, to)
          local t = {}
          for i = 1, n + 1 do t[i] = blocks[math.random(from, to)] end
          return t
        end
        local n = math.random(0, 4)
        inner(blocks[1], sorted(n, 300), kids(n, 2, 6))
        for i = 2, 6 do
          n = math.random(0, 4)
          inner(blocks[i], sorted(n, 300), kids(n, 7, 24))
        end
        for i = 7, 24 do node(blocks[i], sorted(math.random(0, 6), 300)) end
        for _ = 1, 10 do
          local k, upper = key(math.random(0, 301)), math.random() < 0.5
          local r1 = { child(blocks[1], k, upper) }
          local r2 = { child(r1[3], k, upper) }
          local r3 = { value(r2[3], k, upper) }
          assert.same(r3, { child(blocks[1], k, upper, 2, value) })
          assert.same(r2, { child(blocks[1], k, upper, 2) })
          assert.same({ value(r1[3], k, upper) },
                      { child(blocks[1], k, upper, 1, value) })
          assert.same(r1, { child(blocks[1], k, upper, 1) })
          assert.same(r1, { child(blocks[1], k, upper, nil, nil) })
          assert.same({ value(r2[3], k, upper) },
                      { value(r2[3], k, upper, 0, value) })
          assert.same({ child(r2[3], k, upper) },
                      { value(r2[3], k, upper, 0, child) })
        end
      end
    end)

    it("refuses a descent it cannot make, naming the node", function()
      local child = bf:searcher(4, 16, 12, 8)
      local value = bf:searcher(4, 16, 8, 20, 4)
      local root, leaf = off, bf:allocate()
      inner(root, { 10 }, { leaf, leaf })
      node(leaf, { 10 })
      local function err (f, ...)
        local args = table.pack(...)
        return h.errmsg(function() f(table.unpack(args, 1, args.n)) end)
      end
      assert.matches("^bad argument #4 to '%S+' %(depth 0 searches no node "
                     .. "%(0 wants a searcher below%)%)$",
                     err(child, root, key(1), false, 0))
      assert.matches("%(depth %-1 searches no node%)$",
                     err(child, root, key(1), false, -1, value))
      assert.matches("%(depth %-1 searches no node%)$",
                     err(child, root, key(1), false, -1))
      local least = "%(depth %" .. math.mininteger .. " searches no node%)$"
      assert.matches(least, err(child, root, key(1), false, math.mininteger))
      assert.matches(least, err(child, root, key(1), false, math.mininteger,
                                value))
      assert.matches("%(depth 4 passes more nodes than the file has blocks "
                     .. "%(3%)%)$", err(child, root, key(1), false, 4))
      assert.matches("%(depth " .. math.maxinteger .. " passes more nodes",
                     err(child, root, key(1), false, math.maxinteger, value))
      assert.matches("%(number has no integer representation%)$",
                     err(child, root, key(1), false, 1.5))
      assert.matches("%(a descent follows the u64 beside each hit; this "
                     .. "searcher was made without its position, or with a "
                     .. "length%)$", err(value, leaf, key(1), false, 2))
      assert.matches("made without its position",
                     err(bf:searcher(4, 16, 12), root, key(1), false, 1,
                         value))
      assert.matches("^bad argument #5 to '%S+' %(searcher expected, got "
                     .. "function%)$", err(child, root, key(1), false, 1,
                                           print))
      assert.matches("%(searcher expected, got table%)$",
                     err(child, root, key(1), false, 1, {}))
      assert.matches("%(searcher expected, got boolean%)$",
                     err(child, root, key(1), false, 1, false))
      local other = assert(fmap.anonymous())
      other:allocate()
      assert.matches("^bad argument #5 to '%S+' %(a searcher of another "
                     .. "BlockFile%)$", err(child, root, key(1), false, 1,
                                            other:searcher(4, 16, 8)))
      local gone = bf:searcher(4, 16, 8)
      debug.setupvalue(gone, 2, "x")
      assert.matches("^bad argument #5 to '%S+' %(the searcher's state is "
                     .. "gone %(an upvalue was replaced%)%)$",
                     err(child, root, key(1), false, 1, gone))
      other:close()
      -- depth nil with a searcher below is depth 1
      assert.same({ value(leaf, key(10)) },
                  { child(root, key(10), false, nil, value) })
      -- children the file does not hold
      inner(root, { 10 }, { 0, leaf })
      assert.equal("the child beside entry 0 of the node at 4096: offset 0 "
                   .. "is the control block",
                   err(child, root, key(1), false, 1, value))
      local spare = bf:allocate()
      bf:free(spare)
      inner(root, { 10 }, { spare, leaf })
      assert.equal("the child beside entry 0 of the node at 4096: block at "
                   .. "offset " .. spare .. " is free",
                   err(child, root, key(1), false, 2))
      inner(root, { 10 }, { leaf, 1 << 40 })
      assert.matches("^the child beside entry 1 of the node at 4096: 1 "
                     .. "block at offset 1099511627776 passes",
                     err(child, root, key(11), false, 1, value))
      -- a field past the block, and a count from the file
      local far = bf:searcher(4, 16, 12, 4088)
      inner(root, { 10 }, { leaf, leaf })
      bf:with(root, 1, function (v) v:set_u64(4088, leaf) end)
      assert.same({ value(leaf, key(1)) }, { far(root, key(1), false, 1,
                                                value) })
      assert.equal("the node at 4096 has no child beside entry 1: it would "
                   .. "pass the block (4096 bytes)",
                   err(far, root, key(11), false, 1, value))
      -- a position that leaves no u64 in any block, found before a search
      for _, at in ipairs({ 4089, 4095, 4096, math.maxinteger }) do
        assert.matches("%(a descent follows the u64 beside each hit; this "
                       .. "searcher's position " .. at .. " leaves none in "
                       .. "a block %(4096 bytes%)%)$",
                       err(bf:searcher(4, 16, 12, at), root, key(1), false,
                           2))
      end
      bf:with(leaf, 1, function (v) v:set_u32(4, 511) end)
      assert.equal("the node at 8192 (the child beside entry 0 of the node "
                   .. "at 4096) counts 511 entries of 8 bytes (keys of 4) "
                   .. "from position 16, which pass its block (4096 bytes)",
                   err(child, root, key(1), false, 1, value))
      -- a node that is its own child: as deep as the file has blocks, and
      -- no deeper
      inner(root, { 10 }, { root, root })
      assert.same({ 0, false, root, 1, root },
                  { child(root, key(1), false, 4) })
      assert.matches("%(depth 5 passes more nodes than the file has blocks "
                     .. "%(4%)%)$", err(child, root, key(1), false, 5))
      bf:close()
      assert.equal("attempt to use a closed BlockFile",
                   err(child, root, key(1), false, 1, value))
    end)

    it("raises when its file was replaced by a new one, even at the same "
       .. "address", function()
      -- The searcher's file is collected once the upvalue that kept it
      -- is gone; a BlockFile made after may take its memory, with
      -- smaller blocks: a layout checked against 8192-byte blocks reads
      -- past a 4096-byte one. Each new file must be refused.
      for _ = 1, 20 do
        local big = assert(fmap.anonymous(8192))
        local search = big:searcher(8188, 8192, 1 << 24)
        debug.setupvalue(search, 1, nil)
        big:close()
        big = nil                                -- luacheck: ignore
        collectgarbage()
        collectgarbage()
        local small = assert(fmap.anonymous(4096))
        local o = small:allocate()
        small:with(o, 1, function (v) v:set_u32(4, 2) end)
        debug.setupvalue(search, 1, small)
        assert.equal("the searcher's state is gone (an upvalue was "
                     .. "replaced)", h.errmsg(function()
                       search(o, "k")
                     end))
        -- the old searcher as the one below a new file's searcher
        assert.matches("%(a searcher of another BlockFile%)$",
                       h.errmsg(function()
                         small:searcher(4, 16, 8)(o, "k", false, 0, search)
                       end))
        small:close()
      end
    end)
  end)

  it("audits a BlockFile as fmap.audit(bf)", function()
    local bf = assert(fmap.anonymous())
    local t = fmap.bptree.new(bf, 8, 8)
    t:add("aaaaaaaa", "bbbbbbbb")
    local report, summary = fmap.audit(bf)
    assert.is_table(report)
    assert.matches("no problem found", summary)
    bf:close()
  end)
end)

describe("fmap.BlockFile free runs", function()
  local bf
  before_each(function() bf = assert(fmap.anonymous()) end)
  after_each(function() h.no_live_views(bf); bf:close() end)

  it("merge a freed range into the free run just before it", function()
    local a = bf:allocate_blocks(4)
    local b = bf:allocate_blocks(4)
    local c = bf:allocate()
    local d = bf:allocate()
    bf:free(a, 4)
    bf:free(d)            -- now the head of the list, not next to a
    bf:free(b, 4)         -- follows a's run: merges into it
    local runs = bf:free_list()
    assert.same({ { offset = d, blocks = 1 }, { offset = a, blocks = 8 } },
                runs)
    assert.equal(a, bf:allocate_blocks(8))
    assert.is_true(bf:check())
    assert.is_number(c)
  end)

  it("keep the file bounded under churn of mixed-size runs", function()
    math.randomseed(7)
    local live = {}
    for i = 1, 100 do
      local n = math.random(16)
      live[i] = { bf:allocate_blocks(n), n }
    end
    local used = 0
    for _, e in ipairs(live) do used = used + e[2] end
    for _ = 1, 5000 do
      local i = math.random(100)
      bf:free(live[i][1], live[i][2])
      local n = math.random(16)
      live[i] = { bf:allocate_blocks(n), n }
    end
    -- about 800 blocks live; before runs merged, this grew to 22,000
    local st = bf:stats()
    assert.is_true(st.blocks < 5000, "blocks: " .. st.blocks)
    assert.is_true(bf:check())
    assert.is_number(used)
  end)
end)
