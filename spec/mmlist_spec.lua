-- spec/mmlist_spec.lua: fmap.mmlist, the persistent list.
local mmlist = require "fmap.mmlist"
local varchar = require "fmap.varchar"

local function ok_verify (l)
  local ok, msg = l:verify()
  assert(ok, msg)
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
      assert.equal("bad argument #2 to 'open' (offset 12 is not an "
                   .. "allocated block)",
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
      assert.equal("bad argument #1 to 'get' (offset " .. x2 + 1 .. " is "
                   .. "not a live blob (not the start of a blob))",
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
        local n = #model
        local op = math.random(100)
        if op <= 40 or n == 0 then
          local s = rstring()
          model[n + 1] = s
          assert.equal(n + 1, l:append(s))
        elseif op <= 52 then
          assert.equal(table.remove(model), l:pop())
        elseif op <= 62 then
          local i, s = math.random(n), rstring()
          model[i] = s
          assert.is_true(l:set(i, s))
        elseif op <= 70 then
          local i, j = math.random(n), math.random(n)
          model[i], model[j] = model[j], model[i]
          l:swap(i, j)
        elseif op <= 80 then
          local i = math.random(n)
          local s = model[i]
          model[i] = model[n]
          model[n] = nil
          assert.equal(s, l:swap_delete(i))
        else
          local i = math.random(n)
          assert.equal(model[i], l:get(i))
        end
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
end)
