--- spec/transaction_spec.lua: transactions of the block layer (begin,
-- commit, rollback, transaction, fail_after, on_rollback) and the journal
-- beside the file: atomic, durable, and restored exactly on a rollback.

local fmap = require "fmap"
local F = require "fmfile"

local BS = fmap.BLOCKSIZE

local function read_all (path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local exists = require("fmap.cli").exists

-- The block at off, as a string.
local function block (bf, off)
  return bf:with(off, function (v) return v:read(0, #v) end)
end

-- What a rollback must restore: every allocated block's bytes, the free
-- list, the control data and the size the structures see.
local function snapshot (bf)
  local st = bf:stats()
  local s = { ctl = bf:control_data(), used = st.used_blocks,
              free = st.free_blocks, runs = st.free_runs,
              top = st.blocks - st.tail_blocks, list = bf:free_list() }
  for b = 1, s.top - 1 do
    local off = b * bf:block_size()
    s[off] = bf:is_free(off) and "free" or block(bf, off)
  end
  return s
end

describe("transactions", function()
  local path, bf
  before_each(function()
    path = h.tmpname()
    bf = assert(fmap.create(path))
  end)
  after_each(function()
    if bf then
      h.no_live_views(bf)
      bf:close()
    end
    os.remove(path)
    os.remove(path .. "-wal")
  end)

  describe(":begin(), :commit(), :rollback()", function()
    it("commit keeps what the transaction wrote, rollback what was there",
       function()
      local a = bf:allocate()
      bf:with(a, function (v) v:write(0, "before") end)
      assert(bf:flush())
      bf:begin()
      assert.is_true(bf:in_transaction())
      bf:with(a, function (v) v:write(0, "during") end)
      assert.equal("during", bf:with(a, function (v) return v:read(0, 6) end))
      bf:rollback()
      assert.is_false(bf:in_transaction())
      assert.equal("before", bf:with(a, function (v) return v:read(0, 6) end))
      bf:begin()
      bf:with(a, function (v) v:write(0, "after!") end)
      assert.is_true(bf:commit())
      assert.is_false(bf:in_transaction())
      bf:close()
      bf = assert(fmap.open(path))
      assert.equal("after!", bf:with(a, function (v) return v:read(0, 6) end))
    end)

    it("copies for a rollback only what the file does not hold", function()
      local offs = {}
      for i = 1, 8 do
        offs[i] = bf:allocate()
        bf:with(offs[i], function (v) v:write(0, ("block %d"):format(i)) end)
      end
      -- reopened: checkpointed, so the file holds every block
      bf:close()
      bf = assert(fmap.open(path))
      local function text (i)
        return bf:with(offs[i], function (v) return v:read(0, 7) end)
      end
      bf:begin()
      for i = 1, 8 do
        bf:with(offs[i], function (v) v:write(0, ("BLOCK %d"):format(i)) end)
      end
      assert.equal(0, bf:stats().undo_copies)
      bf:rollback()
      for i = 1, 8 do assert.equal(("block %d"):format(i), text(i)) end
      -- a commit puts block 1 in the journal: the file's bytes are older,
      -- so the next transaction copies it, and rolls back to the commit
      bf:begin()
      bf:with(offs[1], function (v) v:write(0, "commit1") end)
      assert.is_true(bf:commit())
      bf:begin()
      bf:with(offs[1], function (v) v:write(0, "rolled1") end)
      bf:with(offs[2], function (v) v:write(0, "rolled2") end)
      assert.equal(1, bf:stats().undo_copies)
      bf:rollback()
      assert.equal("commit1", text(1))
      assert.equal("block 2", text(2))
      -- a change made before begin (not committed) is copied too
      bf:with(offs[3], function (v) v:write(0, "implied") end)
      bf:begin()
      bf:with(offs[3], function (v) v:write(0, "rolled3") end)
      assert.equal(1, bf:stats().undo_copies)
      bf:rollback()
      assert.equal("implied", text(3))
      assert.equal(0, bf:stats().undo_copies)
      -- and what the rollbacks left is what a reopen finds
      bf:close()
      bf = assert(fmap.open(path))
      assert.equal("commit1", text(1))
      assert.equal("implied", text(3))
      for i = 4, 8 do assert.equal(("block %d"):format(i), text(i)) end
    end)

    it("rollback restores bytes, allocations, frees, control data and size",
       function()
      local offs = {}
      for i = 1, 12 do
        offs[i] = bf:allocate()
        bf:with(offs[i], function (v) v:fill(i) end)
      end
      bf:free(offs[3]); bf:free(offs[4]); bf:free(offs[9])
      bf:set_control_data("root=1")
      assert(bf:flush())
      local before = snapshot(bf)
      bf:begin()
      bf:set_control_data("root=2")
      bf:free(offs[1])
      bf:free(offs[2])
      local big = bf:allocate_blocks(40)        -- grows the file
      bf:with(big, 40, function (v) v:fill(0xEE) end)
      local reuse = bf:allocate()                -- a free block, reused
      bf:with(reuse, function (v) v:write(0, "reused") end)
      bf:with(offs[5], function (v) v:set_u64(8, 12345) end)
      bf:rollback()
      assert.same(before, snapshot(bf))
      assert.is_true(bf:check())
    end)

    it("leaves the file byte for byte as before, once closed", function()
      for i = 1, 6 do
        bf:with(bf:allocate(), function (v) v:fill(i) end)
      end
      bf:close()
      local before = read_all(path)
      bf = assert(fmap.open(path))
      bf:begin()
      bf:free(2 * BS)
      local n = bf:allocate_blocks(100)
      bf:with(n, 100, function (v) v:fill(7) end)
      bf:with(3 * BS, function (v) v:write(100, "x") end)
      bf:set_control_data("changed")
      bf:rollback()
      bf:close()
      bf = nil
      assert.equal(before, read_all(path))
      assert.is_false(exists(path .. "-wal"))
    end)

    it("kills the views over blocks the transaction allocated; others read "
       .. "the restored bytes", function()
      local a = bf:allocate()
      local old = bf:get(a)
      old:write(0, "kept")
      bf:begin()
      local b = bf:allocate()
      local new = bf:get(b)
      new:write(0, "gone")
      old:write(0, "lost")
      bf:rollback()
      assert.equal("kept", old:read(0, 4))
      assert.equal("attempt to use a view of blocks a rollback gave back "
                   .. "(offset " .. b .. ", 4096 bytes, acquired at "
                   .. "spec/transaction_spec.lua:" .. (h.line() - 7) .. ")",
                   h.errmsg(function () return new:read(0, 4) end))
      assert.equal("view (offset " .. b .. ", 4096 bytes, blocks a rollback "
                   .. "gave back)", tostring(new))
      new:release()   -- ended already: nothing to do
      old:release()
    end)

    it("commits a block whose first store in a view wrote no byte",
       function()
      -- a zero-length copy, write or fill touches nothing; the view must
      -- not take its block as touched for the stores that follow
      local a = bf:allocate()
      assert(bf:flush())
      local v = bf:get(a)
      v:copy(0, v, 10, 0)
      v:write(5, "")
      v:fill(1, 7, 0)
      v:write(0, "kept")
      v:release()
      assert(bf:flush())
      local copy = h.tmpname()
      h.writefile(copy, read_all(path))
      h.writefile(copy .. "-wal", read_all(path .. "-wal"))
      local c = assert(fmap.open(copy, { readonly = true }))
      assert.equal("kept", c:with(a, function (w) return w:read(0, 4) end))
      c:close()
      os.remove(copy)
      os.remove(copy .. "-wal")
    end)

    it("works on an anonymous BlockFile", function()
      local a = fmap.anonymous()
      local off = a:allocate()
      a:with(off, function (v) v:write(0, "one") end)
      a:begin()
      a:with(off, function (v) v:write(0, "two") end)
      a:allocate_blocks(3)
      a:rollback()
      assert.equal("one", a:with(off, function (v) return v:read(0, 3) end))
      assert.equal(1, a:stats().used_blocks)
      a:begin()
      a:with(off, function (v) v:write(0, "six") end)
      a:commit()
      assert.equal("six", a:with(off, function (v) return v:read(0, 3) end))
      a:close()
    end)

    it("commit with sync = false commits atomically, durable at the next "
       .. "flush", function()
      local a = bf:allocate()
      bf:begin()
      bf:with(a, function (v) v:write(0, "nosync") end)
      assert.is_true(bf:commit({ sync = false }))
      assert.is_true(bf:stats().journal_bytes > 0)
      assert(bf:flush())
      bf:close()
      bf = assert(fmap.open(path))
      assert.equal("nosync", bf:with(a, function (v) return v:read(0, 6) end))
    end)

    it("raises on a begin inside a transaction: they do not nest", function()
      bf:begin()
      assert.equal("begin: a transaction is already open (they do not nest)",
                   h.errmsg(function () bf:begin() end))
      assert.is_true(bf:in_transaction())
      bf:rollback()
    end)

    it("raises on a commit or a rollback outside a transaction", function()
      assert.equal("commit: no transaction is open (bf:begin() starts one; "
                   .. "flush and sync commit outside one)",
                   h.errmsg(function () bf:commit() end))
      assert.equal("rollback: no transaction is open",
                   h.errmsg(function () bf:rollback() end))
    end)

    it("raises on a bad commit option", function()
      bf:begin()
      assert.equal("bad argument #1 to 'commit' (opts.sync must be a "
                   .. "boolean)", h.errmsg(function ()
                     bf:commit({ sync = 1 })
                   end))
      assert.equal("bad argument #1 to 'commit' (table expected, got "
                   .. "string)", h.errmsg(function () bf:commit("x") end))
      assert.is_true(bf:in_transaction())
      bf:rollback()
    end)

    it("raises on flush inside a transaction; sync there commits nothing",
       function()
      local a = bf:allocate()
      assert(bf:flush())
      local j = bf:stats().journal_bytes
      bf:begin()
      bf:with(a, function (v) v:write(0, "x") end)
      assert.equal("flush: inside a transaction, commit it instead (commit "
                   .. "waits for the disk)", h.errmsg(function ()
                     bf:flush()
                   end))
      assert.is_true(bf:sync())
      assert.equal(j, bf:stats().journal_bytes)
      bf:rollback()
    end)

    it("refuses a transaction on a read-only BlockFile", function()
      bf:close()
      bf = assert(fmap.open(path, { readonly = true }))
      assert.equal("begin: the BlockFile is read-only",
                   h.errmsg(function () bf:begin() end))
      assert.equal("transaction: the BlockFile is read-only",
                   h.errmsg(function () bf:transaction(print) end))
    end)

    it("rolls back a transaction still open at close", function()
      local a = bf:allocate()
      bf:with(a, function (v) v:write(0, "kept") end)
      bf:begin()
      bf:with(a, function (v) v:write(0, "lost") end)
      bf:close()
      bf = assert(fmap.open(path))
      assert.equal("kept", bf:with(a, function (v) return v:read(0, 4) end))
    end)
  end)

  describe(":transaction()", function()
    it("returns fn's results and commits", function()
      local a = bf:allocate()
      assert.same({ 1, nil, "three", n = 3 },
                  table.pack(bf:transaction(function (x, y)
                    bf:with(a, function (v) v:write(0, "tx") end)
                    return x, nil, y
                  end, 1, "three")))
      assert.is_false(bf:in_transaction())
      assert.equal(0, bf:stats().dirty_blocks)
    end)

    it("rolls back and raises fn's error again, whatever its value",
       function()
      local a = bf:allocate()
      bf:with(a, function (v) v:write(0, "kept") end)
      local e = {}
      local ok, got = pcall(bf.transaction, bf, function ()
        bf:with(a, function (v) v:write(0, "lost") end)
        bf:allocate_blocks(5)
        error(e)
      end)
      assert.is_false(ok)
      assert.equal(e, got)
      assert.is_false(bf:in_transaction())
      assert.equal("kept", bf:with(a, function (v) return v:read(0, 4) end))
      assert.equal(1, bf:stats().used_blocks)
    end)

    it("raises when fn ends the transaction itself", function()
      assert.equal("transaction: the function ended the transaction itself "
                   .. "(commit or rollback inside transaction)",
                   h.errmsg(function ()
                     bf:transaction(function () bf:commit() end)
                   end))
      -- and when it ends it and begins another, which is rolled back: the
      -- transaction that returns is not the one that began
      local a = bf:allocate()
      assert.equal("transaction: the function ended the transaction itself "
                   .. "(commit or rollback inside transaction)",
                   h.errmsg(function ()
                     bf:transaction(function ()
                       bf:with(a, function (v) v:write(0, "X") end)
                       bf:rollback()
                       bf:begin()
                       bf:with(a, function (v) v:write(1, "Y") end)
                     end)
                   end))
      assert.is_false(bf:in_transaction())
      assert.equal("\0\0", bf:with(a, function (v) return v:read(0, 2) end))
      -- the next one runs as usual
      assert.equal(7, bf:transaction(function () return 7 end))
    end)

    it("lets fn yield", function()
      local a = bf:allocate()
      local co = coroutine.wrap(function ()
        return bf:transaction(function ()
          bf:with(a, function (v) v:write(0, "A") end)
          coroutine.yield("paused")
          return "done"
        end)
      end)
      assert.equal("paused", co())
      assert.is_true(bf:in_transaction())
      assert.equal("done", co())
      assert.is_false(bf:in_transaction())
    end)
  end)

  describe(":fail_after()", function()
    it("refuses the n-th store from now, and only that one", function()
      local a = bf:allocate()
      bf:fail_after(3)
      bf:with(a, function (v) v:write(0, "1") end)
      bf:allocate()
      assert.equal("store refused by fail_after (a test of recovery code)",
                   h.errmsg(function () bf:free(a) end))
      bf:free(a)   -- disarmed once it fired
    end)

    it("raises on a count that is not positive, or a bad way", function()
      assert.equal("bad argument #1 to 'fail_after' (store count 0 is not "
                   .. "positive)", h.errmsg(function () bf:fail_after(0) end))
      assert.equal("bad argument #2 to 'fail_after' (invalid option 'x')",
                   h.errmsg(function () bf:fail_after(1, "x") end))
      bf:fail_after(1)
      bf:fail_after(nil)   -- disarmed
      bf:allocate()
    end)
  end)

  describe(":on_rollback()", function()
    it("calls the hooks of live keys after a rollback, not after a commit",
       function()
      local seen = {}
      local key = {}
      bf:on_rollback(key, function (k) seen[#seen + 1] = k end)
      bf:begin(); bf:commit()
      assert.same({}, seen)
      bf:begin(); bf:rollback()
      assert.same({ key }, seen)
      assert.is_false(pcall(bf.transaction, bf, error))
      assert.same({ key, key }, seen)
      bf:on_rollback(key, nil)
      bf:begin(); bf:rollback()
      assert.equal(2, #seen)
    end)

    -- A hook that raises runs after the rollback is whole, and keeps no
    -- other hook from running; transaction re-raises fn's error, not the
    -- hook's.
    it("runs every hook when one raises, and keeps transaction's error",
       function()
      local seen = {}
      local bad, good = {}, {}
      bf:on_rollback(bad, function () seen[#seen + 1] = "bad"
        error({ "hook" }) end)
      bf:on_rollback(good, function () seen[#seen + 1] = "good" end)
      local off = bf:allocate()
      bf:begin()
      bf:with(off, function (v) v:write(0, "changed") end)
      local ok, err = pcall(bf.rollback, bf)
      assert.is_false(ok)
      assert.same({ "hook" }, err)
      table.sort(seen)
      assert.same({ "bad", "good" }, seen)
      assert.is_false(bf:in_transaction())
      assert.equal("\0", bf:with(off, function (v) return v:read(0, 1) end))
      seen = {}
      local fnerr = {}
      ok, err = pcall(bf.transaction, bf, function ()
        bf:with(off, function (v) v:write(0, "changed") end)
        error(fnerr)
      end)
      assert.is_false(ok)
      assert.equal(fnerr, err)
      assert.equal(2, #seen)
      assert.equal("\0", bf:with(off, function (v) return v:read(0, 1) end))
      bf:on_rollback(bad, nil)
      bf:on_rollback(good, nil)
    end)

    it("raises without a key", function()
      assert.equal("bad argument #1 to 'on_rollback' (a key is needed (the "
                   .. "hook's owner, held weakly))", h.errmsg(function ()
                     bf:on_rollback(nil, print)
                   end))
    end)
  end)

  -- Allocates n blocks, each holding its tag and offset; returns them.
  local function fill (n, tag)
    local offs = {}
    for i = 1, n do
      offs[i] = bf:allocate()
      bf:with(offs[i], function (v) v:write(0, tag .. offs[i]) end)
    end
    return offs
  end

  -- Asserts that the blocks at offs of the BlockFile f hold what fill
  -- wrote there with tag.
  local function holds (f, offs, tag)
    for _, o in ipairs(offs) do
      local want = tag .. o
      assert.equal(want, f:with(o, function (v) return v:read(0, #want) end))
    end
  end

  describe("a durable commit of 1 MiB or more of new blocks", function()
    local N = 300   -- blocks: past the 1 MiB a commit writes straight in

    -- fill in a transaction, left open
    local function bulk (n, tag)
      bf:begin()
      return fill(n, tag)
    end

    it("writes them straight into the file, past the journal", function()
      local offs = bulk(N, "bulk")
      assert(bf:commit())
      local st = bf:stats()
      assert.equal(N, st.direct_blocks)
      assert.is_true(st.journal_blocks < 4, st.journal_blocks)
      holds(bf, offs, "bulk")
      assert.is_true(bf:check())
      -- the file alone holds them: a copy of it without its journal
      -- misses only the header's commit, which the journal holds
      bf:close()
      bf = assert(fmap.open(path))
      holds(bf, offs, "bulk")
      assert.equal(N, bf:stats().used_blocks)
      assert.is_true(bf:check())
    end)

    it("journals fewer, and a commit that does not wait for the disk",
       function()
      bulk(200, "few")
      assert(bf:commit())
      assert.equal(0, bf:stats().direct_blocks)
      local offs = bulk(N, "nosync")
      assert(bf:commit({ sync = false }))
      assert.equal(0, bf:stats().direct_blocks)
      holds(bf, offs, "nosync")
    end)

    it("journals later changes to them, and a rollback keeps the commit",
       function()
      local offs = bulk(N, "bulk")
      assert(bf:commit())
      bf:begin()
      for i = 1, N, 7 do
        bf:with(offs[i], function (v) v:write(0, "next" .. offs[i]) end)
      end
      assert(bf:commit())
      assert.equal(N, bf:stats().direct_blocks)
      bf:begin()
      for i = 2, N, 7 do
        bf:with(offs[i], function (v) v:write(0, "undo" .. offs[i]) end)
      end
      bf:rollback()
      for i, o in ipairs(offs) do
        local want = ((i - 1) % 7 == 0 and "next" or "bulk") .. o
        assert.equal(want, bf:with(o, function (v)
          return v:read(0, #want) end))
      end
      bf:close()
      bf = assert(fmap.open(path))
      for i, o in ipairs(offs) do
        local want = ((i - 1) % 7 == 0 and "next" or "bulk") .. o
        assert.equal(want, bf:with(o, function (v)
          return v:read(0, #want) end))
      end
      assert.is_true(bf:check())
    end)

    it("survives a kill after the commit, and loses all of one before it",
       function()
      bf:close()
      bf = nil
      local out = h.run_lua([[
local fmap = require "fmap"
local bf = assert(fmap.open(arg[1]))
bf:begin()
local offs = {}
for i = 1, 300 do
  offs[i] = bf:allocate()
  bf:with(offs[i], function (v) v:write(0, "kept" .. offs[i]) end)
end
local nums = {}
for i, o in ipairs(offs) do nums[i] = string.pack("<I4", o // fmap.BLOCKSIZE) end
bf:set_control_data(table.concat(nums))
assert(bf:commit())
print("DIRECT " .. bf:stats().direct_blocks)
bf:begin()
for i = 1, 300 do
  bf:with(bf:allocate(), function (v) v:write(0, "lost") end)
end
bf:fail_after(1, "kill")
bf:allocate()
print("not reached")
]], path)
      assert.matches("DIRECT 300", out)
      assert.is_nil(out:find("not reached", 1, true), out)
      bf = assert(fmap.open(path))
      local offs = {}
      local cd = bf:control_data()
      for i = 1, #cd, 4 do offs[#offs + 1] = string.unpack("<I4", cd, i) * BS end
      assert.equal(N, #offs)
      holds(bf, offs, "kept")
      assert.equal(N, bf:stats().used_blocks)
      assert.is_true(bf:check())
      -- the killed transaction's blocks are tail again, handed out zeroed
      local o = bf:allocate()
      assert.equal(("\0"):rep(BS), bf:with(o, function (v)
        return v:read(0, BS) end))
    end)

    it("leaves a reader opened before it on its snapshot", function()
      local a = bf:allocate()
      bf:with(a, function (v) v:write(0, "old") end)
      assert(bf:flush())
      local r = assert(fmap.open(path, { readonly = true }))
      local offs = bulk(N, "bulk")
      bf:with(a, function (v) v:write(0, "new") end)
      assert(bf:commit())
      assert.equal(N, bf:stats().direct_blocks)
      assert.equal("old", r:with(a, function (v) return v:read(0, 3) end))
      assert.equal(1, r:stats().used_blocks)
      assert.is_true(r:check())
      r:close()
      r = assert(fmap.open(path, { readonly = true }))
      holds(r, offs, "bulk")
      r:close()
    end)
  end)

  describe(":spill()", function()
    it("is 64 MiB until set, and 0 never spills", function()
      assert.equal(64 * 1024 * 1024, bf:spill())
      assert.equal(4 * BS, bf:spill(4 * BS))
      assert.equal(4 * BS, bf:spill())
      assert.equal(0, bf:spill(0))
      bf:begin()
      fill(100, "none")
      assert.equal(0, bf:stats().direct_blocks)
      assert.equal(101, bf:stats().dirty_blocks)   -- and the header
      assert(bf:commit({ sync = false }))
      local anon = fmap.anonymous()
      assert.equal(BS, anon:spill(BS))
      for _ = 1, 50 do anon:allocate() end
      assert.equal(0, anon:stats().direct_blocks)
      anon:close()
    end)

    it("refuses a size that is no integer of 0 or more", function()
      assert.equal("bad argument #1 to 'spill' (spill size -1 is negative)",
                   h.errmsg(function () bf:spill(-1) end))
      assert.equal("bad argument #1 to 'spill' (number has no integer "
                   .. "representation)",
                   h.errmsg(function () bf:spill(1.5) end))
      assert.equal("bad argument #1 to 'spill' (number expected, got "
                   .. "string)", h.errmsg(function () bf:spill("x") end))
      assert.equal(64 * 1024 * 1024, bf:spill())
      local c = assert(fmap.create(h.tmpname()))
      c:remove()
      assert.equal("attempt to use a closed BlockFile",
                   h.errmsg(function () c:spill(BS) end))
    end)

    it("writes new blocks ahead of the commit, and keeps the newest",
       function()
      bf:spill(64 * BS)
      bf:begin()
      local offs = fill(200, "ahead")
      local st = bf:stats()
      assert.is_true(st.direct_blocks >= 100, st.direct_blocks)
      assert.is_true(st.dirty_blocks < 100, st.dirty_blocks)
      holds(bf, offs, "ahead")              -- read back from the file
      bf:with(offs[1], function (v) v:write(0, "again" .. offs[1]) end)
      assert(bf:commit())
      bf:close()
      bf = assert(fmap.open(path))
      holds(bf, { offs[1] }, "again")
      holds(bf, { table.unpack(offs, 2) }, "ahead")
      assert.equal(200, bf:stats().used_blocks)
      assert.is_true(bf:check())
    end)

    it("commits a later store through a view that wrote its block before "
       .. "it was spilled", function()
      bf:spill(8 * BS)
      local a = bf:allocate()
      bf:with(a, function (v)
        v:write(0, "first")
        fill(40, "spill")      -- allocations: a is written ahead, clean
        assert.is_true(bf:stats().direct_blocks > 0)
        v:write(0, "SECOND")   -- the view touched a before: it must look again
      end)
      assert(bf:flush())
      bf:close()
      bf = assert(fmap.open(path))
      assert.equal("SECOND", bf:with(a, function (v) return v:read(0, 6) end))
    end)

    it("leaves nothing of a rolled back transaction", function()
      bf:spill(64 * BS)
      local keep = fill(3, "kept")
      assert(bf:flush())
      bf:begin()
      fill(300, "gone")
      assert.is_true(bf:stats().direct_blocks > 0)
      bf:rollback()
      assert.equal(3, bf:stats().used_blocks)
      -- blocks handed out again read zeros, in memory and after reopen,
      -- though the file held the rolled back bytes
      bf:begin()
      local again = {}
      for i = 1, 300 do again[i] = bf:allocate() end
      assert(bf:commit())
      local zero = ("\0"):rep(BS)
      for _, o in ipairs(again) do
        assert.equal(zero, bf:with(o, function (v) return v:read(0, BS) end))
      end
      bf:close()
      bf = assert(fmap.open(path))
      holds(bf, keep, "kept")
      for _, o in ipairs(again) do
        assert.equal(zero, bf:with(o, function (v) return v:read(0, BS) end))
      end
      assert.is_true(bf:check())
    end)

    it("spills outside a transaction too, and sync commits them",
       function()
      bf:spill(64 * BS)
      local offs = fill(300, "loose")
      assert.is_true(bf:stats().direct_blocks > 0)
      assert(bf:sync())   -- commits without waiting for the disk
      -- a crash now: the process dies without closing
      local copy = h.tmpname()
      h.writefile(copy, read_all(path))
      h.writefile(copy .. "-wal", read_all(path .. "-wal"))
      local c = assert(fmap.open(copy))
      holds(c, offs, "loose")
      assert.is_true(c:check())
      c:remove()
    end)
  end)

  describe("the journal", function()
    it("is removed at close and replayed at open after a crash", function()
      local a = bf:allocate()
      bf:with(a, function (v) v:write(0, "first") end)
      assert(bf:flush())
      assert.is_true(exists(path .. "-wal"))
      bf:close()
      assert.is_false(exists(path .. "-wal"))
      bf = nil
      -- a child commits twice, writes a third time and is killed
      local script = h.tmpname(".lua")
      h.writefile(script, [[
local fmap = require "fmap"
local bf = assert(fmap.open(arg[1]))
local a = tonumber(arg[2])
bf:transaction(function () bf:with(a, function (v) v:write(0, "second") end) end)
bf:begin()
bf:with(a, function (v) v:write(0, "third!") end)
local b = bf:allocate()
bf:set_control_data("third")
assert(bf:commit())
bf:with(a, function (v) v:write(0, "fourth") end)
bf:fail_after(1, "kill")
bf:allocate()
print("not reached")
]])
      local out = h.run(string.format("%s %s %s %d 2>&1", h.bin(), script,
                                      path, a))
      os.remove(script)
      assert.is_nil(out:find("not reached", 1, true), out)
      assert.is_true(exists(path .. "-wal"))
      -- a reader sees the last commit and leaves the journal alone
      local r = assert(fmap.open(path, { readonly = true }))
      assert.equal("third!", r:with(a, function (v) return v:read(0, 6) end))
      assert.equal("third", r:control_data())
      assert.is_true(r:check())
      r:close()
      assert.is_true(exists(path .. "-wal"))
      -- a writer recovers
      bf = assert(fmap.open(path))
      assert.is_false(exists(path .. "-wal"))
      assert.equal("third!", bf:with(a, function (v) return v:read(0, 6) end))
      assert.equal("third", bf:control_data())
      assert.equal(2, bf:stats().used_blocks)
      assert.is_true(bf:check())
    end)

    -- Another program cuts the file short while its journal holds commits
    -- that build on what was cut: the journal cannot bring those blocks
    -- back, and laying it over the rest would read zeros in their place.
    it("refuses a file cut short under its journal; repair keeps the rest",
       function()
      local offs = {}
      for i = 1, 32 do
        offs[i] = bf:allocate()
        bf:with(offs[i], function (v) v:set_u64(0, 1000 + i) end)
      end
      bf:close()
      bf = assert(fmap.open(path))
      bf:with(offs[1], function (v) v:set_u64(8, 7) end)
      assert(bf:flush())                        -- a commit in the journal
      local whole = read_all(path)
      local copy = h.tmpname()
      h.writefile(copy, whole:sub(1, 8 * 4096))
      h.writefile(copy .. "-wal", read_all(path .. "-wal"))
      for _, ro in ipairs { false, true } do
        local b, msg, errno = fmap.open(copy, { readonly = ro })
        assert.is_nil(b)
        assert.equal(copy .. ": the file was cut short: it has 32768 bytes, "
                     .. "and its journal's commits build on its first "
                     .. #whole .. " (repair = true opens it, with zeros for "
                     .. "the rest)", msg)
        assert.equal("number", math.type(errno) and "number")
        assert.is_true(exists(copy .. "-wal"))
        assert.equal(8 * 4096, #read_all(copy))  -- nothing written
      end
      local r = assert(fmap.open(copy, { repair = true }))
      assert.is_true(r:check())
      assert.same({ 1001, 7 }, { r:with(offs[1], function (v)
        return v:u64(0), v:u64(8) end) })
      assert.equal(1007, r:with(offs[7], function (v) return v:u64(0) end))
      assert.equal(0, r:with(offs[20], function (v) return v:u64(0) end))
      r:close()
      os.remove(copy)
      -- the file itself is whole, and its own journal replays
      assert.equal(7, bf:with(offs[1], function (v) return v:u64(8) end))
    end)

    it("ignores a torn last commit", function()
      local a = bf:allocate()
      bf:with(a, function (v) v:write(0, "good") end)
      assert(bf:flush())
      bf:with(a, function (v) v:write(0, "torn") end)
      assert(bf:flush())
      -- copy the file and its journal as a crash would leave them, with
      -- the last commit's frame cut in the middle
      local wal = read_all(path .. "-wal")
      local copy = h.tmpname()
      h.writefile(copy, read_all(path))
      h.writefile(copy .. "-wal", wal:sub(1, #wal - 100))
      local c = assert(fmap.open(copy))
      assert.equal("good", c:with(a, function (v) return v:read(0, 4) end))
      assert.is_true(c:check())
      c:close()
      os.remove(copy)
    end)

    it("that claims more than a journal can is refused, and the file left "
       .. "as it is", function()
      local a = bf:allocate()
      bf:with(a, function (v) v:write(0, "safe") end)
      bf:close()
      bf = nil
      local file = read_all(path)
      -- a journal whose checksums hold but whose commit claims a huge
      -- file, or whose frame lies past the commit's size
      local function journal (frame_off, size)
        local hdr = "fmapWAL1" .. string.pack("<I4I4I8", BS, 0, 77)
        hdr = hdr .. string.pack("<I8", F.checksum(hdr, 3))
        local data = string.rep("X", BS)
        local fh = string.pack("<I8I8I8", frame_off, 77, size)
        local sum = F.checksum(data, string.unpack("<I8", hdr, 25))
        sum = F.checksum(fh, sum)
        return hdr .. fh .. string.pack("<I8", sum) .. data
      end
      for _, c in ipairs({
        { BS, 1 << 50, "its last commit says the file has " .. (1 << 50)
          .. " bytes %(it has " .. #file .. "%)" },
        { 1 << 40, 2 * BS, "a frame for offset " .. (1 << 40) .. " lies past "
          .. "the 8192 bytes of its commit" } }) do
        h.writefile(path .. "-wal", journal(c[1], c[2]))
        for _, ro in ipairs({ false, true }) do
          local r, msg, e = fmap.open(path, { readonly = ro })
          assert.is_nil(r)
          assert.matches("corrupt journal .*: " .. c[3], msg)
          assert.equal(22, e)
        end
        assert.equal(file, read_all(path))
      end
      os.remove(path .. "-wal")
      bf = assert(fmap.open(path))
      assert.equal("safe", bf:with(a, function (v) return v:read(0, 4) end))
    end)

    it("with frames but no whole commit is left alone by a reader",
       function()
      local a, b = bf:allocate(), bf:allocate()
      bf:with(a, function (v) v:write(0, "base") end)
      bf:close()
      bf = assert(fmap.open(path))
      bf:begin()
      bf:with(a, function (v) v:write(0, "torn") end)
      bf:with(b, function (v) v:write(0, "torn") end)
      assert(bf:commit())
      -- the journal as a kill inside that commit leaves it: one frame
      local copy = h.tmpname()
      local wal = read_all(path .. "-wal"):sub(1, 32 + 32 + BS)
      h.writefile(copy, read_all(path))
      h.writefile(copy .. "-wal", wal)
      local r = assert(fmap.open(copy, { readonly = true }))
      assert.equal("base", r:with(a, function (v) return v:read(0, 4) end))
      assert.equal(0, r:stats().journal_replayed)
      assert.is_true(r:check())
      r:close()
      assert.equal(wal, read_all(copy .. "-wal"))   -- a reader's hands off
      r = assert(fmap.open(copy))                    -- a writer drops it
      assert.equal("base", r:with(a, function (v) return v:read(0, 4) end))
      r:close()
      assert.is_false(exists(copy .. "-wal"))
      os.remove(copy)
    end)

    it("is checked by check()", function()
      local a = bf:allocate()
      bf:with(a, function (v) v:write(0, "x") end)
      assert(bf:flush())
      assert.is_true(bf:check())
      -- damage the journal's copy of the block on disk
      local f = assert(io.open(path .. "-wal", "r+b"))
      f:seek("set", 32 + 32 + a + 1)   -- past block 0's frame
      f:write("Z")
      f:close()
      local ok, problems = bf:check()
      assert.is_nil(ok)
      assert.matches("^journal: ", problems[1])
    end)

    it("grows and is copied into the file once past its limit", function()
      local st
      local offs = {}
      for i = 1, 300 do offs[i] = bf:allocate() end
      for round = 1, 6 do
        bf:begin()
        for i = 1, 300 do
          bf:with(offs[i], function (v) v:set_u32(0, round) end)
        end
        bf:commit()
      end
      st = bf:stats()
      assert.is_true(st.checkpoints >= 1)
      assert.is_true(st.journal_bytes < 5 * 1024 * 1024)
      bf:close()
      bf = assert(fmap.open(path))
      for i = 1, 300 do
        assert.equal(6, bf:with(offs[i], function (v) return v:u32(0) end))
      end
    end)

    -- An older fmap ignores a journal: a file must say version 3 in the
    -- file itself before any journal stands beside it.
    it("upgrades a file of format version 2 as a writer opens it",
       function()
      local a = bf:allocate()
      bf:close()
      local s = read_all(path)
      s = F.set_slot(F.set_slot(s, 0, { version = 2 }), 1, { version = 2 })
      h.writefile(path, s)
      bf = assert(fmap.open(path, { readonly = true }))
      assert.is_true(bf:check())
      bf:close()
      assert.equal(2, F.newest(read_all(path)).version)
      bf = assert(fmap.open(path))
      assert.equal(3, F.newest(read_all(path)).version)   -- in the file
      assert.equal(3, bf:stats().version)
      bf:with(a, function (v) v:write(0, "j") end)
      assert(bf:flush())                  -- a journal now, a version 3 file
      assert.is_true(exists(path .. "-wal"))
      assert.equal(3, F.newest(read_all(path)).version)
      bf:close()
      assert.equal(3, F.newest(read_all(path)).version)
      bf = assert(fmap.open(path))
      assert.equal("j", bf:with(a, function (v) return v:read(0, 1) end))
    end)

    it("is shown by scripts/inspect.lua, and by stats()", function()
      local a = bf:allocate()
      bf:with(a, function (v) v:write(0, "x") end)
      assert(bf:flush())
      local st = bf:stats()
      assert.equal(0, st.dirty_blocks)
      assert.equal(2, st.journal_blocks)        -- block 0 and a
      assert.equal(32 + 2 * (32 + BS), st.journal_bytes)
      assert.equal(1, st.commits)
      -- a writer that dies leaves the journal; inspect reads through it
      local script = h.tmpname(".lua")
      h.writefile(script, [[
local fmap = require "fmap"
local bf = assert(fmap.open(arg[1]))
bf:with(tonumber(arg[2]), function (v) v:write(0, "y") end)
assert(bf:flush())
bf:fail_after(1, "kill")
bf:allocate()
]])
      bf:close()
      bf = nil
      h.run(string.format("%s %s %s %d 2>&1", h.bin(), script, path, a))
      os.remove(script)
      local out = h.run(string.format("%s scripts/inspect.lua %s 2>&1",
                                      h.bin(), path))
      assert.matches("\n  journal +1 block of commits a writer left, "
                     .. "4160 bytes: shown as committed %(an open for "
                     .. "writing copies them into the file%)\n", out)
      bf = assert(fmap.open(path))
      assert.equal(1, bf:stats().journal_replayed)
      assert.equal("y", bf:with(a, function (v) return v:read(0, 1) end))
      bf:close()
      out = h.run(string.format("%s scripts/inspect.lua %s 2>&1", h.bin(),
                                path))
      assert.matches("\n  journal +none %(every commit is in the file%)\n",
                     out)
      bf = assert(fmap.open(path))
    end)

    it("is removed with the file by remove()", function()
      bf:allocate()
      assert(bf:flush())
      assert.is_true(exists(path .. "-wal"))
      assert.is_true(bf:remove())
      assert.is_false(exists(path .. "-wal"))
      bf = nil
    end)

    it("of an older file is dropped by create", function()
      bf:allocate()
      assert(bf:flush())
      local wal = read_all(path .. "-wal")
      bf:close()
      h.writefile(path .. "-wal", wal)   -- as a crash would have left it
      bf = assert(fmap.create(path))
      assert.is_false(exists(path .. "-wal"))
      bf:close()
      bf = assert(fmap.open(path))
      assert.equal(0, bf:stats().used_blocks)
    end)
  end)
end)

-- Every store of an operation, in turn, raises (fail_after) inside a
-- transaction: after each, the file must be as before it, to the byte.
describe("an error at every store of an operation", function()
  local bptree = require "fmap.bptree"
  local varchar = require "fmap.varchar"
  local mmlist = require "fmap.mmlist"
  local hashtable = require "fmap.examples.hashtable"
  local path, bf

  before_each(function()
    path = h.tmpname()
    bf = assert(fmap.create(path))
  end)
  after_each(function()
    if bf then bf:close() end
    os.remove(path)
  end)

  -- Runs op in a transaction with the n-th store refused, for n = 1, 2,
  -- ... until op stores fewer than n times; each time, the file must be
  -- as before (snapshot, then verify). Every attempt is rolled back, the
  -- last one too; then the closed file must equal the one before, byte for
  -- byte. Returns how many stores op made. check(): the structures verify.
  local function every_store (op, check)
    assert(bf:flush())
    bf:close()
    local file = read_all(path)
    bf = assert(fmap.open(path))
    local handles = check(bf)
    local before = snapshot(bf)
    local n = 0
    while true do
      n = n + 1
      bf:begin()
      bf:fail_after(n)
      local ok, err = pcall(op, handles)
      bf:fail_after(nil)
      bf:rollback()
      assert.same(before, snapshot(bf))
      check(bf, handles)
      if ok then break end
      -- the trap's error, or what the structure made of it: a list that
      -- finds its blob half taken calls itself corrupt, which the
      -- rollback has undone
      assert.is_string(err)
    end
    bf:close()
    assert.equal(file, read_all(path))
    bf = assert(fmap.open(path))
    return n - 1
  end

  local function key (i) return string.pack(">I8", i) end

  it("a B+tree's adds that split leaves and internal nodes", function()
    local t = assert(bptree.new(bf, 8, 8))
    for i = 1, 2000, 2 do t:add(key(i), key(i)) end
    local stores = every_store(function (t)
      for i = 2, 1200, 2 do t:add(key(i), key(i)) end
    end, function (bf, t)
      t = t or assert(bptree.open(bf))
      assert.is_true(t:verify())
      assert.equal(1000, t:size())
      return t
    end)
    assert.is_true(stores > 600)
  end)

  it("a B+tree's removes that merge nodes", function()
    local t = assert(bptree.new(bf, 8, 8))
    for i = 1, 1500 do t:add(key(i), key(i)) end
    every_store(function (t)
      for i = 1, 1500, 3 do t:remove(key(i)) end
      for i = 700, 1200 do t:remove(key(i)) end
    end, function (bf, t)
      t = t or assert(bptree.open(bf))
      assert.is_true(t:verify())
      assert.equal(1500, t:size())
      return t
    end)
  end)

  it("a slotted B+tree's adds, compactions and removes", function()
    local t = assert(bptree.new(bf, -1, -1))
    for i = 1, 300 do t:add(key(i), string.rep("v", i % 97)) end
    every_store(function (t)
      for i = 1, 300, 2 do t:remove(key(i)) end
      for i = 301, 420 do t:add(key(i), string.rep("w", 200 + i)) end
    end, function (bf, t)
      t = t or assert(bptree.open(bf))
      assert.is_true(t:verify())
      assert.equal(300, t:size())
      return t
    end)
  end)

  it("a blob store's puts and frees", function()
    local vc = assert(varchar.new(bf))
    local refs = {}
    for i = 1, 40 do refs[i] = vc:put(string.rep("b", i * 37)) end
    bf:set_control_data(tostring(vc:offset()))
    every_store(function (vc)
      for i = 1, 40, 3 do vc:free(refs[i]) end
      for i = 1, 25 do vc:put(string.rep("n", i * 301)) end
    end, function (bf, vc)
      vc = vc or assert(varchar.open(bf, tonumber(bf:control_data())))
      assert.is_true(vc:verify())
      assert.equal(40, vc:count())
      return vc
    end)
  end)

  it("a list's appends, sets and pops", function()
    local l = assert(mmlist.new(bf))
    for i = 1, 600 do l:append("item" .. i) end
    bf:set_control_data(tostring(l:offset()))
    every_store(function (l)
      for i = 1, 300 do l:append(string.rep("x", i)) end
      for i = 1, 100 do l:set(i, "set" .. i) end
      for _ = 1, 450 do l:pop() end
    end, function (bf, l)
      l = l or assert(mmlist.open(bf, tonumber(bf:control_data())))
      assert.is_true(l:verify())
      assert.equal(600, l:size())
      assert.equal("item600", l:get(600))
      return l
    end)
  end)

  it("a B+tree's split that fails leaves no reserved block behind",
     function()
    -- the blocks a split reserves first are given back by the rollback;
    -- the tree must not keep them for its next split
    local t = assert(bptree.new(bf, -1, -1))
    local function k (i) return key(i) .. string.rep("k", 300) end
    for i = 1, 600, 2 do t:add(k(i), "v") end
    for n = 1, 100000 do
      bf:begin()
      bf:fail_after(n)
      local ok = pcall(function ()
        for i = 2, 600, 2 do t:add(k(i), "w") end
      end)
      bf:fail_after(nil)
      bf:rollback()
      assert.equal(0, #t.spare)
      if ok then break end
    end
    -- blocks the rollback freed go to someone else; the tree's next
    -- splits must leave them alone
    local mine = {}
    for i = 1, 20 do
      mine[i] = bf:allocate()
      bf:with(mine[i], function (v) v:write(0, "MINE") end)
    end
    bf:transaction(function () for i = 2, 600, 2 do t:add(k(i), "w") end end)
    for i = 1, 20 do
      assert.equal("MINE", bf:with(mine[i], function (v)
        return v:read(0, 4)
      end))
    end
    assert.is_true(t:verify())
    assert.equal(600, t:size())
  end)

  it("the guide's hash table: puts with overflow chains, removes",
     function()
    local ht = assert(hashtable.create(bf, 3))
    for i = 1, 150 do ht:put("k" .. i, string.rep("v", i)) end
    bf:set_control_data(tostring(ht:offset()))
    every_store(function (ht)
      for i = 1, 150, 2 do ht:remove("k" .. i) end
      for i = 151, 260 do ht:put("k" .. i, string.rep("w", i)) end
    end, function (bf, ht)
      ht = ht or assert(hashtable.open(bf, tonumber(bf:control_data())))
      assert.is_true(ht:verify())
      assert.equal(150, ht:count())
      return ht
    end)
  end)
end)
