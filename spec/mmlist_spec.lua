-- spec/mmlist_spec.lua: fmap.mmlist, the persistent list.
local mmlist = require "fmap.mmlist"
local varchar = require "fmap.varchar"

local function ok_verify (l)
  local ok, msg = l:verify()
  assert(ok, msg)
end

-- One random operation on the list l and on model, the table of its
-- items, checked against each other: append (also while l has fewer than
-- min items), pop, set, swap, swap_delete or get, as a percentage falls
-- under the five rising cuts c. value(op) makes an item for op, "append"
-- or "set".
local function random_op (l, model, c, min, value)
  local n, op = #model, math.random(100)
  if op <= c[1] or n < min then
    local s = value("append")
    model[n + 1] = s
    assert.equal(n + 1, l:append(s))
  elseif op <= c[2] then
    assert.equal(table.remove(model), l:pop())
  elseif op <= c[3] then
    local i, s = math.random(n), value("set")
    model[i] = s
    assert.is_true(l:set(i, s))
  elseif op <= c[4] then
    local i, j = math.random(n), math.random(n)
    model[i], model[j] = model[j], model[i]
    l:swap(i, j)
  elseif op <= c[5] then
    local i = math.random(n)
    local s = model[i]
    model[i] = model[n]
    model[n] = nil
    assert.equal(s, l:swap_delete(i))
  else
    local i = math.random(n)
    assert.equal(model[i], l:get(i))
  end
end

describe("fmap.mmlist", function()
  local path, bf, l
  before_each(function()
    path = h.tmpname()
    bf = assert(fmap.create(path))
    l = assert(mmlist.new(bf))
  end)
  after_each(function()
    if bf and not tostring(bf):match("closed") then
      h.no_live_views(bf)
      bf:close()
    end
    os.remove(path)
  end)

  local function reopen (opts)
    local off = l:offset()
    h.no_live_views(bf)
    bf:close()
    bf = assert(fmap.open(path, opts))
    l = assert(mmlist.open(bf, off))
  end

  local function fill (n, fmt)
    for i = 1, n do assert.equal(i, l:append((fmt or "item %d"):format(i)))
    end
  end

  describe(".new()", function()
    it("makes an empty list that verifies", function()
      assert.equal(0, l:size())
      assert.equal(0, #l)
      assert.is_nil(l:pop())
      assert.equal(0, l:offset() % bf:block_size())
      assert.equal(bf, l:blockfile())
      assert.matches("^mmlist %(meta at %d+, 0 items%)$", tostring(l))
      ok_verify(l)
    end)

    it("rejects what is not a BlockFile, or a read-only one", function()
      assert.equal("bad argument #1 to 'new' (BlockFile expected, got "
                   .. "string)", h.errmsg(function() mmlist.new("x") end))
      reopen({ readonly = true })
      assert.equal("bad argument #1 to 'new' (the BlockFile is read-only)",
                   h.errmsg(function() mmlist.new(bf) end))
    end)
  end)

  describe(".open()", function()
    it("finds every item after the file is closed and reopened", function()
      fill(1000)
      reopen()
      assert.equal(1000, #l)
      for i = 1, 1000 do assert.equal("item " .. i, l:get(i)) end
      ok_verify(l)
    end)

    it("returns nil and a message where no list is", function()
      local off = bf:allocate()
      assert.same({ nil, "offset " .. off .. " does not hold an mmlist (no "
                         .. "magic)" }, { mmlist.open(bf, off) })
      local vc = assert(varchar.new(bf))
      assert.same({ nil, "offset " .. vc:offset() .. " does not hold an "
                         .. "mmlist (no magic)" },
                  { mmlist.open(bf, vc:offset()) })
    end)

    it("returns nil and a message for a damaged meta block", function()
      local off = l:offset()
      bf:with(off, 1, function(v) v:set_u64(32, 10) end)  -- 10 items, no leaf
      assert.same({ nil, "the mmlist at " .. off .. " is corrupt (its meta "
                         .. "block disagrees with the file)" },
                  { mmlist.open(bf, off) })
      bf:with(off, 1, function(v) v:set_u64(32, 0); v:set_u64(40, off) end)
      assert.same({ nil, "the mmlist at " .. off .. " is corrupt (its "
                         .. "varchar: offset " .. off .. " does not hold a "
                         .. "varchar (no magic))" }, { mmlist.open(bf, off) })
      bf:with(off, 1, function(v) v:set_u32(8, 7) end)
      assert.same({ nil, "the mmlist at " .. off .. " has format version 7, "
                         .. "not 1" }, { mmlist.open(bf, off) })
    end)

    it("rejects an offset that is not an allocated block", function()
      assert.equal("bad argument #2 to 'open' (offset 12 is not "
                   .. "block-aligned)",
                   h.errmsg(function() mmlist.open(bf, 12) end))
      assert.equal("bad argument #2 to 'open' (integer expected, got nil)",
                   h.errmsg(function() mmlist.open(bf) end))
    end)
  end)

  describe(":append() and :get()", function()
    it("keep items of any size, empty ones too", function()
      local bs = bf:block_size()
      local items = { "", "a", string.rep("\0", 17), string.rep("m", 2000),
                      string.rep("L", bs), string.rep("H", 50 * bs), "" }
      for i, s in ipairs(items) do assert.equal(i, l:append(s)) end
      for i, s in ipairs(items) do assert.equal(s, l:get(i)) end
      assert.equal(#items, #l)
      ok_verify(l)
    end)

    it("grow the index across leaves and keep order", function()
      fill(512 * 7 + 3)   -- leaves of 1, 2 and 4 blocks, and a fourth
      assert.equal(512 * 7 + 3, #l)
      for _, i in ipairs({ 1, 512, 513, 1536, 1537, 3584, 3585, 3587 }) do
        assert.equal("item " .. i, l:get(i))
      end
      ok_verify(l)
    end)

    it("reject an index out of range, naming the range", function()
      fill(4)
      assert.equal("bad argument #1 to 'get' (index 5 out of range 1..4)",
                   h.errmsg(function() l:get(5) end))
      assert.equal("bad argument #1 to 'get' (index 0 out of range 1..4)",
                   h.errmsg(function() l:get(0) end))
      assert.equal("bad argument #1 to 'get' (index -1 out of range 1..4)",
                   h.errmsg(function() l:get(-1) end))
      assert.equal("bad argument #1 to 'get' (integer expected, got "
                   .. "string)", h.errmsg(function() l:get("1") end))
      assert.equal("bad argument #1 to 'get' (number has no integer "
                   .. "representation)", h.errmsg(function() l:get(1.5) end))
      while l:pop() do end
      assert.equal("bad argument #1 to 'get' (index 1 out of range: the "
                   .. "list is empty)", h.errmsg(function() l:get(1) end))
    end)

    it("reject what is not a string", function()
      assert.equal("bad argument #1 to 'append' (string expected, got "
                   .. "number)", h.errmsg(function() l:append(1) end))
      assert.equal(0, #l)
    end)
  end)

  describe(":set()", function()
    it("replaces items, growing and shrinking them", function()
      fill(3)
      assert.is_true(l:set(2, "two"))
      assert.is_true(l:set(1, string.rep("x", 30000)))
      assert.is_true(l:set(3, ""))
      assert.same({ string.rep("x", 30000), "two", "" },
                  { l:get(1), l:get(2), l:get(3) })
      assert.is_true(l:set(1, "small again"))
      assert.equal("small again", l:get(1))
      assert.equal(3, varchar.open(bf, l.vc:offset()):count())
      ok_verify(l)
    end)

    it("rejects a bad index or value", function()
      fill(2)
      assert.equal("bad argument #1 to 'set' (index 3 out of range 1..2)",
                   h.errmsg(function() l:set(3, "x") end))
      assert.equal("bad argument #2 to 'set' (string expected, got nil)",
                   h.errmsg(function() l:set(1) end))
      assert.equal("item 1", l:get(1))
    end)
  end)

  describe(":swap()", function()
    it("exchanges two items, across leaves", function()
      fill(600)
      l:swap(1, 600)
      l:swap(7, 7)
      assert.equal("item 600", l:get(1))
      assert.equal("item 1", l:get(600))
      assert.equal("item 7", l:get(7))
      ok_verify(l)
    end)

    it("rejects an index out of range, naming which", function()
      fill(3)
      assert.equal("bad argument #1 to 'swap' (index 4 out of range 1..3)",
                   h.errmsg(function() l:swap(4, 1) end))
      assert.equal("bad argument #2 to 'swap' (index 0 out of range 1..3)",
                   h.errmsg(function() l:swap(1, 0) end))
      assert.equal("item 1", l:get(1))
    end)
  end)

  describe(":pop() and :swap_delete()", function()
    it("pop returns the last item, nil when empty", function()
      fill(3)
      assert.equal("item 3", l:pop())
      assert.equal("item 2", l:pop())
      assert.equal("item 1", l:pop())
      assert.is_nil(l:pop())
      assert.equal(0, #l)
      ok_verify(l)
    end)

    it("swap_delete moves the last item into the hole", function()
      fill(5)
      assert.equal("item 2", l:swap_delete(2))
      assert.same({ "item 1", "item 5", "item 3", "item 4" },
                  { l:get(1), l:get(2), l:get(3), l:get(4) })
      assert.equal("item 4", l:swap_delete(4))
      assert.equal(3, #l)
      ok_verify(l)
      assert.equal("bad argument #1 to 'swap_delete' (index 4 out of range "
                   .. "1..3)", h.errmsg(function() l:swap_delete(4) end))
    end)

    it("free the index when the list empties, and keep one spare leaf",
       function()
      local base = bf:stats().used_blocks
      fill(512)
      local one_leaf = bf:stats().used_blocks
      l:append("over")          -- a second leaf, of 2 blocks
      local two_leaves = bf:stats().used_blocks
      assert.equal(one_leaf + 2, two_leaves)
      for _ = 1, 50 do          -- at the boundary: nothing allocated
        l:pop()
        l:append("again")
        assert.equal(two_leaves, bf:stats().used_blocks)
      end
      ok_verify(l)
      while l:pop() do end
      ok_verify(l)
      -- meta blocks and the varchar's small reserve are all that remain
      assert.is_true(bf:stats().used_blocks - base <= varchar.RESERVE_MIN)
    end)
  end)

  describe("l[i]", function()
    it("refuses l[i] = s, which would only set a field of the handle, and "
       .. "writes nothing", function()
      fill(3)
      assert.equal("l[1] = ... does not write the list: l:set(i, s) "
                   .. "replaces an item, l:append(s) adds one (and l:get(i) "
                   .. "reads one)", h.errmsg(function() l[1] = "changed" end))
      assert.matches("^l%[4%] = %.%.%. does not write the list",
                     h.errmsg(function() l[#l + 1] = "more" end))
      assert.matches("^l%[1%.0%] = %.%.%. does not write the list",
                     h.errmsg(function() l[1.0] = "changed" end))
      assert.equal("item 1", l:get(1))
      assert.equal(3, #l)
      assert.is_nil(rawget(l, 1))
      l.note = "a field of the handle"   -- other keys are the table's
      assert.equal("a field of the handle", l.note)
      assert.is_true(l:verify())
    end)

    it("pairs(l) walks the items, as l:iterate() does", function()
      fill(5)
      local got = {}
      for i, s in pairs(l) do got[i] = s end
      assert.same({ "item 1", "item 2", "item 3", "item 4", "item 5" }, got)
    end)
  end)

  describe(":iterate()", function()
    it("walks the items in order, and may be left early", function()
      fill(1100)
      local n = 0
      for i, s in l:iterate() do
        n = n + 1
        assert.equal(n, i)
        assert.equal("item " .. i, s)
      end
      assert.equal(1100, n)
      for i in l:iterate() do if i == 10 then break end end
      h.no_live_views(bf)
      local empty = assert(mmlist.new(bf))
      for _ in empty:iterate() do error("an empty list has no items") end
    end)

    it("visits the items there were when it began", function()
      fill(3)
      local seen = {}
      for i, s in l:iterate() do          -- a loop that appends ends
        seen[#seen + 1] = s
        assert(l:append("more " .. i))
      end
      assert.same({ "item 1", "item 2", "item 3" }, seen)
      assert.equal(6, l:size())
      seen = {}
      for i, s in l:iterate() do          -- one that pops ends early
        seen[#seen + 1] = i .. ":" .. s
        l:pop()
        l:pop()
      end
      assert.same({ "1:item 1", "2:item 2" }, seen)
      assert.equal(2, l:size())
      for i, s in l:iterate() do          -- set changes what comes next
        if i == 1 then l:set(2, "changed") end
        if i == 2 then assert.equal("changed", s) end
      end
      ok_verify(l)
    end)
  end)

  describe("on a read-only BlockFile", function()
    it("reads, and refuses every change", function()
      fill(3)
      reopen({ readonly = true })
      assert.equal("item 2", l:get(2))
      ok_verify(l)
      for name, f in pairs({
        append = function() l:append("x") end,
        set = function() l:set(1, "x") end,
        swap = function() l:swap(1, 2) end,
        pop = function() l:pop() end,
        swap_delete = function() l:swap_delete(1) end }) do
        assert.equal("cannot " .. name .. ": the BlockFile is read-only",
                     h.errmsg(f))
      end
      assert.equal(3, #l)
    end)
  end)

  describe(":verify()", function()
    it("reports an entry that names no live blob, and a shared one",
       function()
      fill(3)
      ok_verify(l)
      local leaf = bf:with(l:offset(), 1, function(v) return v:u64(64) end)
      local x2 = bf:with(leaf, 1, function(v) return v:u64(8) end)
      bf:with(leaf, 1, function(v) v:set_u64(8, x2 + 1) end)
      local ok, msg = l:verify()
      assert.is_nil(ok)
      assert.matches("item 2: bad argument #1 to 'refs' %(offset %d+ is not "
                     .. "a live blob %(not the start of a blob%)%)", msg)
      assert.equal("mmlist at " .. l:offset() .. " is corrupt: item 2 "
                   .. "names offset " .. x2 + 1 .. ", which is not a live "
                   .. "blob of its varchar (not the start of a blob)",
                   h.errmsg(function() l:get(2) end))
      bf:with(leaf, 1, function(v) v:set_u64(8, v:u64(0)) end)
      ok, msg = l:verify()
      assert.matches("items 1 and 2 share the blob", msg)
    end)
  end)

  describe("against a model", function()
    it("agrees with a Lua table over thousands of random operations",
       function()
      math.randomseed(2024)
      local model = {}
      local function rstring ()
        local r = math.random()
        local n = r < 0.7 and math.random(0, 40)
                  or r < 0.95 and math.random(41, 3000)
                  or math.random(3001, 30000)
        return string.rep(string.char(math.random(32, 126)), n)
      end
      for step = 1, 12000 do
        random_op(l, model, { 40, 52, 62, 70, 80 }, 1, rstring)
        assert.equal(#model, #l)
        if step % 2000 == 0 then
          ok_verify(l)
          reopen()
        end
      end
      ok_verify(l)
      local i = 0
      for k, s in l:iterate() do
        i = i + 1
        assert.equal(i, k)
        assert.equal(model[k], s)
      end
      assert.equal(#model, i)
      while #model > 0 do assert.equal(table.remove(model), l:pop()) end
      assert.is_nil(l:pop())
      ok_verify(l)
    end)
  end)

  describe("space", function()
    it("does not grow the file under churn at a steady size", function()
      math.randomseed(99)
      local function rstring ()
        local n = math.random() < 0.9 and math.random(0, 300)
                  or math.random(300, 12000)
        return string.rep("c", n)
      end
      for _ = 1, 1500 do l:append(rstring()) end
      local first
      for cycle = 1, 20 do
        for _ = 1, 400 do l:swap_delete(math.random(#l)) end
        for _ = 1, 400 do l:append(rstring()) end
        for _ = 1, 200 do l:set(math.random(#l), rstring()) end
        if cycle == 1 then first = bf:size() end
      end
      ok_verify(l)
      assert.is_true(bf:size() <= 1.5 * first,
                     ("grew from %d to %d"):format(first, bf:size()))
    end)
  end)

  -- The meta block's fields (the layout at the top of lua/fmap/mmlist.lua).
  local COUNT, LEAVES, LEAF = 32, 48, 64

  local function get_meta (pos, list)
    return bf:with((list or l):offset(), 1, function(v) return v:u64(pos) end)
  end

  local function set_meta (pos, x, list)
    bf:with((list or l):offset(), 1, function(v) v:set_u64(pos, x) end)
  end

  local function corrupt (msg, list)
    return "mmlist at " .. (list or l):offset() .. " is corrupt: " .. msg
  end

  local function notblob (i, x, why)
    return corrupt(("item %d names offset %d, which is not a live blob of "
                    .. "its varchar (%s)"):format(i, x, why))
  end

  describe("a damaged directory of leaves", function()
    it("open refuses a leaf of another list, an open handle checks it "
       .. "before writing, and the other list keeps its items", function()
      local other = assert(mmlist.new(bf))
      for i = 1, 3 do other:append("b" .. i) end
      l:append("a1")
      local mine, theirs = get_meta(LEAF), get_meta(LEAF, other)
      local x = bf:with(theirs, 1, function(v) return v:u64(0) end)
      local used = bf:stats().used_blocks
      set_meta(LEAF, theirs)          -- l's leaf 0 := the other's leaf 0
      local msg = corrupt("leaf 0 (1 block at " .. theirs .. ") is not the "
                          .. "list's: its first entry, item 1, names offset "
                          .. x .. ", which is not a live blob of its varchar")
      assert.same({ nil, msg }, { mmlist.open(bf, l:offset()) })
      assert.equal(msg, h.errmsg(function() l:append("evil") end))
      assert.equal(msg, h.errmsg(function() l:get(1) end))
      assert.equal(used, bf:stats().used_blocks)
      assert.same({ "b1", "b2", "b3" },
                  { other:get(1), other:get(2), other:get(3) })
      ok_verify(other)
      set_meta(LEAF, mine)
      assert.equal(1, l.vc:count())   -- no blob stored for "evil"
      assert.equal(2, l:append("a2"))
      ok_verify(l)
    end)

    it("open refuses a leaf on a meta block, free, misaligned or at 0, "
       .. "overlapping leaves, a leaf count the items do not need, and a "
       .. "leaf past the count", function()
      fill(513)                       -- leaves 0 and 1
      local off, vco = l:offset(), l.vc:offset()
      local leaf0, leaf1 = get_meta(LEAF), get_meta(LEAF + 8)
      local free = bf:allocate()
      bf:free(free)
      local function refused (pos, x, msg)
        local was = get_meta(pos)
        set_meta(pos, x)
        assert.same({ nil, corrupt(msg) }, { mmlist.open(bf, off) })
        set_meta(pos, was)
      end
      refused(LEAF, off, "leaf 0 (1 block at " .. off .. ") holds the "
              .. "list's meta block")
      refused(LEAF, vco, "leaf 0 (1 block at " .. vco .. ") holds its "
              .. "varchar's meta block")
      refused(LEAF, free, "leaf 0 (1 block at " .. free .. ") is not an "
              .. "allocated run")
      refused(LEAF, leaf0 + 8, "leaf 0 (1 block at " .. leaf0 + 8 .. ") is "
              .. "not an allocated run")
      refused(LEAF + 8, 0, "leaf 1 (2 blocks at 0) is not an allocated run")
      refused(LEAF + 8, leaf0, "leaf 0 (1 block at " .. leaf0 .. ") "
              .. "overlaps leaf 1 (at " .. leaf0 .. ")")
      refused(LEAVES, 5, "513 items need 2 leaves, but it has 5")
      refused(LEAF + 16, leaf1, "leaf 2, past the 2 allocated, is at "
              .. leaf1 .. ", not 0")
      set_meta(LEAF, off)
      local ok, msg = l:verify()
      assert.is_nil(ok)
      assert.matches("leaf 0 %(at " .. off .. "%) overlaps the meta block",
                     msg)
      set_meta(LEAF, leaf0)
      assert(mmlist.open(bf, off))
      ok_verify(l)
    end)

    it("pop and swap_delete check the leaf count and the leaves they free "
       .. "before they take the item", function()
      l:append("only copy")
      set_meta(LEAVES, 5)             -- leaves 1..4 stay 0
      local msg = corrupt("1 item needs 1 leaf, but it has 5")
      assert.same({ nil, msg }, { mmlist.open(bf, l:offset()) })
      assert.equal(msg, h.errmsg(function() l:pop() end))
      assert.equal(msg, h.errmsg(function() l:swap_delete(1) end))
      set_meta(LEAVES, 1)
      assert.equal(1, #l)
      assert.equal("only copy", l:get(1))
      -- a spare leaf, which pop frees when the list empties
      for i = 2, 513 do assert.equal(i, l:append("more")) end
      for _ = 1, 512 do l:pop() end
      assert.equal(2, get_meta(LEAVES))
      local spare = get_meta(LEAF + 8)
      set_meta(LEAF + 8, 0)
      assert.equal(corrupt("leaf 1 (2 blocks at 0) is not an allocated run"),
                   h.errmsg(function() l:pop() end))
      assert.equal("only copy", l:get(1))
      set_meta(LEAF + 8, spare)
      assert.equal("only copy", l:pop())
      assert.equal(0, get_meta(LEAVES))
      ok_verify(l)
    end)
  end)

  describe("a damaged entry or count", function()
    it("a count past the items: pop, get, set, swap_delete and iterate "
       .. "name the item, and change nothing", function()
      fill(2)
      set_meta(COUNT, 3)
      local msg = notblob(3, 0, "in the control block")
      assert.equal(msg, h.errmsg(function() l:pop() end))
      assert.equal(msg, h.errmsg(function() l:get(3) end))
      assert.equal(msg, h.errmsg(function() l:set(3, "x") end))
      assert.equal(msg, h.errmsg(function() l:swap_delete(3) end))
      assert.equal(msg, h.errmsg(function() for _ in l:iterate() do end end))
      set_meta(COUNT, 2)
      assert.same({ "item 1", "item 2" }, { l:get(1), l:get(2) })
      assert.equal(2, l.vc:count())
      ok_verify(l)
    end)

    it("pop and swap_delete write 0 into the entry they vacate, so a count "
       .. "grown by damage cannot free another item's blob", function()
      fill(3)
      assert.equal("item 1", l:swap_delete(1))  -- item 3 moves to index 1
      set_meta(COUNT, 3)
      assert.equal(notblob(3, 0, "in the control block"),
                   h.errmsg(function() l:pop() end))
      set_meta(COUNT, 2)
      assert.equal("item 2", l:pop())
      set_meta(COUNT, 2)
      assert.equal(notblob(2, 0, "in the control block"),
                   h.errmsg(function() l:get(2) end))
      set_meta(COUNT, 1)
      assert.equal("item 3", l:get(1))
      ok_verify(l)
    end)

    it("a count past 2^63 raises from every operation", function()
      fill(2)
      set_meta(COUNT, -1)
      local msg = corrupt("it counts -1 items")
      for _, f in ipairs({ function() return #l end,
                           function() return l:get(1) end,
                           function() return l:append("x") end,
                           function() return l:pop() end,
                           function() return l:swap(1, 2) end,
                           function() return l:swap_delete(1) end,
                           function() for _ in l:iterate() do end end }) do
        assert.equal(msg, h.errmsg(f))
      end
      set_meta(COUNT, 2)
      ok_verify(l)
    end)
  end)

  describe("when the file cannot grow (fault injection)", function()
    local SHIM = os.getenv("FMAP_FAULTINJECT") or "build/lib/libfaultinject.so"

    -- Leaves bf full but for a free run of k blocks amid it, which a close
    -- keeps (it sheds free blocks at the end of the file only).
    local function leave_free (k)
      local run = k == 1 and bf:allocate() or bf:allocate_blocks(k)
      while bf:stats().tail_blocks + bf:stats().free_blocks > 0 do
        bf:allocate()
      end
      bf:free(run, k)
      h.no_live_views(bf)
      bf:close()
    end

    -- Runs code in a child fmap on the file (bf, and off: the list's
    -- offset) under the shim spec/faults_spec.lua uses, with the file's
    -- next growth failing once (mremap, EIO); returns its output. The file
    -- was closed: the child's map grows from its own open.
    local function child (code, off)
      local script = h.tmpname(".lua")
      h.writefile(script, string.format([[
package.path = %q
local fmap = require "fmap"
local mmlist = require "fmap.mmlist"
local bf = assert(fmap.open(arg[1]))
local off = tonumber(arg[2])
]], package.path) .. code .. "\nassert(bf:close())\n")
      local out = h.run(string.format("env LD_PRELOAD=%s ASAN_OPTIONS="
        .. "verify_asan_link_order=0:detect_leaks=0 FMAP_FAULT=mremap "
        .. "FMAP_FAULT_AFTER=0 FMAP_FAULT_ERRNO=EIO %s %s %s %d 2>&1", SHIM,
        h.bin(), script, path, off or 0))
      os.remove(script)
      assert.matches("faultinject: mremap call 1 fails with 5", out)
      return out
    end

    -- With free blocks for the new leaf only (leave_free(k)), an append
    -- of item (Lua source) to a list of n items fails: it returns nil and
    -- EIO, holds no more blocks, keeps n items and verifies; the next
    -- append of "x" works. Returns the list's offset.
    local function append_undone (n, k, item)
      fill(n)
      local off = l:offset()
      leave_free(k)
      local out = child(string.format([[
local l = assert(mmlist.open(bf, off))
local used = bf:stats().used_blocks
local r = table.pack(l:append(%s))
print("FAILED", r[1], r[3], bf:stats().used_blocks - used, l:size(),
      l:verify())
print("AGAIN", l:append("x"), l:verify())
]], item), off)
      assert.matches("\nFAILED\tnil\t5\t0\t" .. n .. "\ttrue\n", out)
      assert.matches("\nAGAIN\t" .. n + 1 .. "\ttrue\n", out)
      bf = assert(fmap.open(path))
      l = assert(mmlist.open(bf, off))
      ok_verify(l)
    end

    it("append undoes the leaf it took when the item cannot be stored",
       function()
      -- free blocks for leaf 0 only; the item's slab block needs more
      append_undone(0, 1, '"x"')
      assert.equal("x", l:get(1))
    end)

    it("append undoes a new leaf of 2 blocks when a large item cannot be "
       .. "stored", function()
      append_undone(512, 2, 'string.rep("L", 5000)')
    end)

    it("new frees the varchar's meta block when its own cannot be "
       .. "allocated", function()
      leave_free(1)
      local out = child([[
local used = bf:stats().used_blocks
local r = table.pack(mmlist.new(bf))
print("FAILED", r[1], r[3], bf:stats().used_blocks - used, bf:check())
local l = assert(mmlist.new(bf))
print("AGAIN", l:append("x"), l:verify())
]])
      assert.matches("\nFAILED\tnil\t5\t0\ttrue\n", out)
      assert.matches("\nAGAIN\t1\ttrue\n", out)
      bf = assert(fmap.open(path))
    end)
  end)

  describe("one operation at a time (fmap.guard)", function()
    local GUARD = "^mmlist at %%d+: %s called while its %s runs"

    -- A finalizer made in a frame of its own, so that nothing holds it.
    local function arm (fin)
      setmetatable({}, { __gc = fin })
    end

    -- Calls f with fin armed as a finalizer that runs when the list calls
    -- the varchar's primitive prim (a hook collects there); returns f's
    -- results.
    local function during (prim, fin, f)
      local target = l.vc[prim]
      collectgarbage("stop")    -- fin runs there, not before
      arm(fin)
      debug.sethook(function ()
        if debug.getinfo(2, "f").func == target then
          debug.sethook()
          collectgarbage()
        end
      end, "c")
      local r = table.pack(pcall(f))
      debug.sethook()
      collectgarbage("restart")
      assert(r[1], r[2])
      return table.unpack(r, 2, r.n)
    end

    -- A finalizer's errors are warnings: it records them instead.
    local function recorder (msgs, f, ...)
      local ok, err = pcall(f, ...)
      msgs[#msgs + 1] = ok and "no error" or err
    end

    it("a finalizer that calls the list during an append gets the guard's "
       .. "error, and the append completes", function()
      fill(3)
      local msgs = {}
      assert.equal(4, during("_put", function ()
        recorder(msgs, l.get, l, 1)
        recorder(msgs, l.append, l, "from a finalizer")
      end, function () return l:append("four") end))
      assert.equal(2, #msgs)
      assert.matches(GUARD:format("get", "append"), msgs[1])
      assert.matches(GUARD:format("append", "append"), msgs[2])
      assert.equal(4, #l)
      assert.equal("four", l:get(4))
      ok_verify(l)
    end)

    it("so does one that calls another handle of the list or opens it, "
       .. "during a pop, a set or a step of iterate", function()
      fill(3)
      local other = assert(mmlist.open(bf, l:offset()))
      local msgs = {}
      assert.equal("item 3", during("_take", function ()
        recorder(msgs, other.set, other, 1, "x")
        recorder(msgs, mmlist.open, bf, l:offset())
      end, function () return l:pop() end))
      assert.is_true(during("_replace", function ()
        recorder(msgs, other.swap_delete, other, 1)
      end, function () return l:set(2, "two") end))
      during("_get", function ()
        recorder(msgs, l.verify, l)
      end, function () for _ in l:iterate() do end end)
      assert.equal(4, #msgs)
      assert.matches(GUARD:format("set", "pop"), msgs[1])
      assert.matches(GUARD:format("open", "pop"), msgs[2])
      assert.matches(GUARD:format("swap_delete", "set"), msgs[3])
      assert.matches(GUARD:format("verify", "iterate"), msgs[4])
      assert.same({ "item 1", "two" }, { other:get(1), other:get(2) })
      ok_verify(l)
    end)

    it("an operation that raises leaves the guard: the next call works",
       function()
      fill(2)
      h.errmsg(function() l:get(3) end)          -- out of range
      assert.is_false(l.guard.busy)
      assert.equal("item 1", l:get(1))
      set_meta(COUNT, 3)
      h.errmsg(function() l:pop() end)           -- a damaged entry
      set_meta(COUNT, 2)
      assert.is_false(l.guard.busy)
      assert.equal("item 2", l:pop())
      h.errmsg(function() l:append(false) end)
      assert.is_true(l:set(1, "one"))
      assert.is_false(l.guard.busy)
      ok_verify(l)
    end)

    it("iterate holds the guard only while a step reads: the loop's body "
       .. "may change the list", function()
      fill(3)
      for i, s in l:iterate() do assert.is_true(l:set(i, s .. "!")) end
      assert.same({ "item 1!", "item 2!", "item 3!" },
                  { l:get(1), l:get(2), l:get(3) })
    end)

    it("a hook that rewrites a random item every few instructions leaves "
       .. "the list whole", function()
      math.randomseed(77)
      local model, refused, done, other = {}, 0, 0, {}
      for i = 1, 300 do
        model[i] = "item " .. i
        l:append(model[i])
      end
      -- rewrites an item with its own bytes, so the model still holds; a
      -- hook, like a finalizer, runs in the middle of whatever runs
      local function rewrite ()
        local n = #l
        if n == 0 then return end
        local i = math.random(n)
        local ok, s = pcall(l.get, l, i)
        if ok then ok, s = pcall(l.set, l, i, s) end
        if ok then done = done + 1
        elseif tostring(s):match("called while its") then
          refused = refused + 1
        else other[#other + 1] = s end
      end
      debug.sethook(rewrite, "", 97)
      local ok, err = pcall(function ()
        for _ = 1, 3000 do
          random_op(l, model, { 35, 50, 70, 80, 90 }, 2, function (op)
            return (op == "append" and "v" or "w"):rep(math.random(0, 600))
          end)
        end
      end)
      debug.sethook()
      assert(ok, err)
      assert.same({}, other)
      assert.is_true(refused > 0, "the hook never ran during an operation")
      assert.is_true(done > 0, "the hook never ran between operations")
      assert.equal(#model, #l)
      for i, s in l:iterate() do assert.equal(model[i], s) end
      ok_verify(l)
    end)
  end)

  describe("indices and printing", function()
    it("take floats of integral value for indices and offsets, and refuse "
       .. "1.5, NaN and infinities", function()
      fill(3)
      assert.equal("item 1", l:get(1.0))
      assert.is_true(l:set(2.0, "two"))
      l:swap(1.0, 3.0)
      assert.same({ "item 3", "two", "item 1" },
                  { l:get(1), l:get(2), l:get(3) })
      assert.equal("two", l:swap_delete(2.0))
      local again = assert(mmlist.open(bf, l:offset() + 0.0))
      assert.equal("integer", math.type(again:offset()))
      assert.equal(l:offset(), again:offset())
      for _, x in ipairs({ 1.5, 0 / 0, math.huge, -math.huge, 2.0 ^ 63 }) do
        assert.equal("bad argument #1 to 'get' (number has no integer "
                     .. "representation)", h.errmsg(function() l:get(x) end))
      end
      assert.equal("bad argument #2 to 'swap' (number has no integer "
                   .. "representation)", h.errmsg(function() l:swap(1, 0.5) end))
      assert.equal("bad argument #2 to 'open' (number has no integer "
                   .. "representation)",
                   h.errmsg(function() mmlist.open(bf, l:offset() + 0.5) end))
      ok_verify(l)
    end)

    it("print without reading a closed BlockFile", function()
      fill(2)
      local off = l:offset()
      assert.equal("mmlist (meta at " .. off .. ", 2 items)", tostring(l))
      h.no_live_views(bf)
      bf:close()
      assert.equal("mmlist (meta at " .. off .. ", closed BlockFile)",
                   tostring(l))
    end)
  end)

  describe(".layout", function()
    it("gives the format at the top of mmlist.lua, for readers", function()
      -- fmap.classify.mmlist reads lists with these; a format change
      -- updates the comment, VERSION and this list
      assert.same({
        MAGIC = "fmapMLST", VERSION = 1, MAXLEAF = 48, M_VERSION = 8,
        M_BS = 16, M_SELF = 24, M_COUNT = 32, M_VC = 40, M_LEAVES = 48,
        M_LEAF = 64,
      }, mmlist.layout)
    end)
  end)
end)
