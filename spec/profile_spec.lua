--- spec/profile_spec.lua: fmap.profile, the counts behind it in the
-- engine, and what it finds in the structures: the B+tree's, the list's
-- and the LRU curve's figures as the theory gives them.
local h = require "helpers"
local fmap = require "fmap"
local profile = require "fmap.profile"
local W = require "fmap.workload"

local function q (s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- n blocks of bf, allocated.
local function blocks (bf, n)
  local offs = {}
  for i = 1, n do offs[i] = bf:allocate() end
  return offs
end

-- An operation that reads the u32 at 0 of the block at off.
local function touch (bf, off)
  profile.op("touch", bf.with, bf, off, function (v) return v:u32(0) end)
end

describe("fmap.profile", function()
  local path, bf
  h.fixture(function (p, b) if p then path, bf = p, b end return bf end)

  describe(".stack_distances()", function()
    it("gives the LRU stack distances of a trace worked by hand", function()
      -- A B C A B B D A: A, B, C, D are cold; the second A has B and C
      -- since (3), the second B has C and A (3), the third B itself (1),
      -- the last A has B and D (3)
      assert.same({ 0, 0, 0, 3, 3, 1, 0, 3 },
                  profile.stack_distances({ 1, 2, 3, 1, 2, 2, 4, 1 }))
      assert.same({}, profile.stack_distances({}))
      assert.same({ 0, 1, 1, 0, 2, 2 },
                  profile.stack_distances({ 7, 7, 7, 0, 7, 0 }))
    end)

    it("agrees with an LRU stack simulated by hand on a random trace",
       function()
      local trace = {}
      for i = 1, 3000 do trace[i] = math.random(0, 60) end
      local got = profile.stack_distances(trace)
      local stack = {}            -- most recent first
      for i, b in ipairs(trace) do
        local d = 0
        for j, x in ipairs(stack) do
          if x == b then
            d = j
            table.remove(stack, j)
            break
          end
        end
        table.insert(stack, 1, b)
        assert.equal(d, got[i])
      end
    end)

    it("rejects what is not a list of block numbers", function()
      assert.equal("bad argument #1 to 'stack_distances' (table expected, "
                   .. "got number)",
                   h.errmsg(function () profile.stack_distances(3) end))
      assert.equal("bad argument #1 to 'stack_distances' (item 2 is not a "
                   .. "block number (0 to 4294967294))",
                   h.errmsg(function () profile.stack_distances({ 1, -1 }) end))
      assert.equal("bad argument #1 to 'stack_distances' (item 1 is not a "
                   .. "block number (0 to 4294967294))",
                   h.errmsg(function () profile.stack_distances({ "x" }) end))
    end)
  end)

  describe(".run()", function()
    it("counts the trace a workload makes: the misses are Mattson's",
       function()
      local offs = blocks(bf, 4)
      local r = profile.run(bf, function ()
        for _, i in ipairs({ 1, 2, 3, 1, 2, 2, 4, 1 }) do touch(bf, offs[i]) end
      end)
      assert.equal(8, r.ops)
      assert.equal(8, r.accesses)
      assert.equal(4, r.distinct)
      -- distances 0 0 0 3 3 1 0 3: a cache of 1 or 2 blocks misses all but
      -- the third B, one of 3 or more only the 4 cold accesses
      local want = { 7, 7, 4, 4, 4 }
      for c = 1, 5 do assert.equal(want[c] / 8, r:misses(c)) end
      assert.equal(4 / 8, r:misses(1000))
      local curve = r:curve()
      assert.equal(r.blocks, #curve)
      assert.equal(7 / 8, curve[1])
      assert.equal(4 / 8, curve[#curve])
      assert.same({ 0, 8 }, r.phase.main.read_hist)   -- 8 ops of 1 block
      assert.equal(1, r.phase.main.operation.touch.reads.mean)
    end)

    it("counts distinct blocks per operation, reads and writes apart",
       function()
      local offs = blocks(bf, 3)
      local run = bf:allocate_blocks(2)
      local r = profile.run(bf, function ()
        profile.op("mixed", function ()
          local v <close> = bf:get(offs[1])
          for i = 0, 9 do v:u32(4 * i) end            -- one block, 10 reads
          v:retarget(offs[2])
          v:set_u32(0, 1)
          v:set_u64(8, 2)                             -- one block written
          v:retarget(offs[1])
          v:write(0, "x")                             -- read and written
        end)
        profile.op("span", bf.with, bf, run, 2, function (v)
          return v:read(4090, 10)                     -- two blocks
        end)
      end)
      local m = r.phase.main.operation
      assert.same({ mean = 1, p99 = 1, max = 1 }, m.mixed.reads)
      assert.same({ mean = 2, p99 = 2, max = 2 }, m.mixed.writes)
      assert.equal(2, m.span.reads.mean)
      assert.equal(0, m.span.writes.mean)
      -- bytes as the calls read and stored them: 10 u32 and 10 bytes
      assert.equal(40 + 10, r.bytes_read)
      assert.equal(4 + 8 + 1, r.bytes_written)
      assert.equal(4, r.views)   -- get, retarget twice, with
      assert.equal(3, r.blocks_read)
      assert.equal(2, r.blocks_written)
      assert.equal(3, r.distinct_read)
      assert.equal(2, r.distinct_written)
    end)

    it("counts allocations, frees, views and searcher descents", function()
      local t = fmap.bptree.new(bf, 8, 8)
      for i = 1, 50 do t:add(string.pack(">I8", i), string.pack("<I8", i)) end
      local off = bf:allocate()
      local r = profile.run(bf, function ()
        profile.op("space", function ()
          bf:free(bf:allocate())
          bf:free(off)
        end)
        for i = 1, 10 do t:get(string.pack(">I8", i)) end
      end)
      local ops = r.phase.main.operation
      assert.equal(1, ops.space.allocations)
      assert.equal(2, ops.space.frees)
      assert.equal(10, ops["bptree.get"].descents)
      assert.equal(10, r.descents)
      assert.equal(1, r.allocations)
    end)

    it("counts the accesses between operations apart", function()
      local offs = blocks(bf, 2)
      local r = profile.run(bf, function ()
        bf:with(offs[1], function (v) v:set_u8(0, 1) end)   -- no operation
        touch(bf, offs[2])
        bf:with(offs[1], function (v) return v:u8(0) end)
      end)
      local p = r.phase.main
      assert.equal(1, p.ops)
      assert.equal(2, p.gaps.ops)
      assert.equal(0.5, p.gaps.reads.mean)
      assert.equal(0.5, p.gaps.writes.mean)
      -- the second gap's block was used by the operation since: a miss
      assert.equal(1, r:misses(1, "main", profile.GAP))
      -- the operations' curve leaves them out; the cache holds them
      assert.equal(1, r:misses(1, "main"))
      assert.equal(3, r.accesses)
    end)

    it("names phases in order and reports each", function()
      local offs = blocks(bf, 3)
      local r = profile.run(bf, function ()
        profile.phase "one"
        touch(bf, offs[1])
        profile.phase "two"
        touch(bf, offs[1])
        touch(bf, offs[2])
        profile.phase "one"
        touch(bf, offs[3])
      end, { phase = "first" })
      assert.equal(2, #r.phases)       -- "first" had nothing
      assert.equal("one", r.phases[1].name)
      assert.equal("two", r.phases[2].name)
      assert.equal(2, r.phase.one.ops)
      assert.equal(2, r.phase.two.ops)
      -- the cache is one across phases: two's first touch is a hit
      assert.equal(0.5, r:misses(3, "two"))
      assert.equal(1, r:misses(3, "one"))
      assert.equal(4, r.total.ops)
    end)

    it("runs profile.op's function and returns its results; nested "
       .. "operations count once", function()
      local offs = blocks(bf, 2)
      local r = profile.run(bf, function ()
        local a, b = profile.op("outer", function (x)
          touch(bf, offs[1])            -- an op inside: part of outer
          local o <close> = profile.op("inner")
          touch(bf, offs[2])
          return x, x + 1
        end, 41)
        assert.equal(41, a)
        assert.equal(42, b)
        local o = profile.op("handle")
        touch(bf, offs[1])
        o:done()
        o:done()                        -- a second done does nothing
        assert.equal(7, profile.op(function () return 7 end))
      end)
      local ops = r.phase.main.operation
      assert.equal(1, ops.outer.ops)
      assert.equal(2, ops.outer.reads.mean)
      assert.is_nil(ops.inner)
      assert.is_nil(ops.touch)
      assert.equal(1, ops.handle.ops)
      assert.is_nil(ops.op)             -- it touched nothing
    end)

    it("ends a structure's operation where the next one starts", function()
      local t = fmap.bptree.new(bf, 8, 8)
      t:add(string.pack(">I8", 1), "abcdefgh")
      local off = bf:allocate()
      local r = profile.run(bf, function ()
        t:get(string.pack(">I8", 1))
        bf:with(off, function (v) return v:u8(0) end)   -- the get's
        t:has(string.pack(">I8", 1))
      end)
      local ops = r.phase.main.operation
      assert.equal(2, ops["bptree.get"].reads.mean)      -- leaf and off
      assert.equal(1, ops["bptree.has"].reads.mean)
      assert.is_nil(r.phase.main.gaps)
    end)

    it("computes the write amplification from the bytes stored", function()
      local l = fmap.mmlist.new(bf)
      local off = bf:allocate()
      local r = profile.run(bf, function ()
        for i = 1, 100 do l:append(string.rep("x", 16)) end
        profile.op("mine", function ()
          bf:with(off, function (v) v:write(0, "12345678") end)
          profile.stored(8)
        end)
      end)
      local ops = r.phase.main.operation
      local a = ops["mmlist.append"]
      assert.equal(1600, a.user_bytes)
      assert.equal(a.blocks_written * 4096 / 1600, a.write_amp)
      assert.equal(4096 / 8, ops.mine.write_amp)
      assert.is_nil(profile.stored(5))     -- no profile: nothing
    end)

    it("reports a file closed in fn as it was when it closed", function()
      local other = h.tmpname()
      local r = profile.run(nil, function ()
        local b = assert(fmap.create(other))
        local offs = blocks(b, 5)
        for _, o in ipairs(offs) do touch(b, o) end
        b:close()
      end)
      os.remove(other)
      assert.equal(1, #r.files)
      assert.equal(other, r.path)
      assert.equal(6, r.blocks)
      assert.equal(5, r.ops)
      assert.equal(1, r:misses(1))
    end)

    it("profiles the files fn opens with all, or those it chooses",
       function()
      local a, b = h.tmpname(), h.tmpname()
      local r = profile.run(bf, function ()
        for _, p in ipairs({ a, b }) do
          local f = assert(fmap.create(p))
          touch(f, f:allocate())
          f:close()
        end
        touch(bf, bf:allocate())
      end, { all = function (f) return f:path() == b end })
      os.remove(a)
      os.remove(b)
      assert.equal(2, #r.files)
      assert.equal(r, r.files[1])
      assert.equal(path, r.path)
      assert.equal(b, r.files[2].path)
      assert.equal(1, r.files[2].ops)     -- a file counts its own ops
      assert.equal(1, r.ops)
      assert.matches("fmap.profile: " .. b:gsub("%p", "%%%0"), tostring(r))
    end)

    it("stops counting when it returns, and after an error in fn", function()
      local off = bf:allocate()
      local r = profile.run(bf, function () touch(bf, off) end)
      assert.equal(1, r.ops)
      touch(bf, off)                      -- not profiled: nothing counts
      assert.equal("boom", h.errmsg(function ()
        profile.run(bf, function () error("boom") end)
      end))
      r = profile.run(bf, function () touch(bf, off) touch(bf, off) end)
      assert.equal(2, r.ops)
      assert.equal(1 / 2, r:misses(1))
      assert.is_nil(profile.phase("nothing"))
      assert.equal(5, profile.op(function () return 5 end))
    end)

    it("runs the structures unchanged", function()
      local t = fmap.bptree.new(bf, -1, -1)
      local l = fmap.mmlist.new(bf)
      local vc = fmap.varchar.new(bf)
      local r = profile.run(bf, function ()
        for i = 1, 300 do
          t:add(string.format("k%05d", i), string.rep("v", i % 50))
          l:append("item" .. i)
        end
        local x = vc:put("blob")
        assert.equal("blob", vc:get(x))
        vc:free(x)
        local n = 0
        for _ in t:range("k00010", "k00019") do n = n + 1 end
        assert.equal(10, n)
        for _ in l:iterate() do n = n + 1 end
        assert.equal(310, n)
        assert.equal("item7", l:get(7))
        assert.truthy(t:remove("k00005"))
      end)
      assert.is_true(t:verify())
      assert.is_true(l:verify())
      local ops = r.phase.main.operation
      assert.equal(300, ops["bptree.add"].ops)
      assert.equal(300, ops["mmlist.append"].ops)
      assert.equal(1, ops["bptree.range"].ops)
      -- a step per entry or item; the last, which ends the loop, reads
      -- nothing and is not counted (an operation that used no block of
      -- the file)
      assert.equal(10, ops["bptree.step"].ops)
      assert.equal(300, ops["mmlist.step"].ops)
      assert.equal(1, ops["varchar.put"].ops)
      assert.equal(1, ops["varchar.get"].ops)
      assert.equal(1, ops["varchar.free"].ops)
      assert.equal(1, ops["bptree.remove"].ops)
    end)

    it("rejects misuse", function()
      assert.equal("bad argument #1 to 'run' (BlockFile, list or nil "
                   .. "expected, got number)",
                   h.errmsg(function () profile.run(3, print) end))
      assert.equal("bad argument #1 to 'run' (item 2 is not a BlockFile)",
                   h.errmsg(function () profile.run({ bf, 3 }, print) end))
      assert.equal("bad argument #1 to 'run' (items 1 and 2 are the same "
                   .. "BlockFile)",
                   h.errmsg(function () profile.run({ bf, bf }, print) end))
      assert.equal("bad argument #2 to 'run' (function expected, got nil)",
                   h.errmsg(function () profile.run(bf) end))
      assert.equal("bad argument #3 to 'run' (table expected, got string)",
                   h.errmsg(function () profile.run(bf, print, "x") end))
      assert.equal("bad argument #3 to 'run' (opts.phase must be a string, "
                   .. "not number)", h.errmsg(function ()
                     profile.run(bf, print, { phase = 1 })
                   end))
      assert.equal("bad argument #3 to 'run' (opts.all must be a boolean or "
                   .. "a function, not string)", h.errmsg(function ()
                     profile.run(bf, print, { all = "yes" })
                   end))
      assert.equal("fmap.profile: a profile is running already (one at a "
                   .. "time)", h.errmsg(function ()
                     profile.run(bf, function () profile.run(bf, print) end)
                   end))
      local closed = fmap.anonymous()
      closed:close()
      assert.equal("bad argument #1 to 'run' (the BlockFile is closed)",
                   h.errmsg(function () profile.run(closed, print) end))
      assert.equal("bad argument #1 to 'phase' (string expected, got nil)",
                   h.errmsg(function () profile.phase() end))
      assert.equal("bad argument #1 to 'op' (string or function expected, "
                   .. "got number)", h.errmsg(function () profile.op(1) end))
      assert.equal("bad argument #2 to 'op' (function expected, got number)",
                   h.errmsg(function () profile.op("x", 1) end))
      assert.equal("bad argument #1 to 'stored' (integer expected, got "
                   .. "string)", h.errmsg(function () profile.stored("x") end))
      assert.equal("bad argument #1 to 'start' (the BlockFile is profiled "
                   .. "already)", h.errmsg(function ()
                     profile.run(bf, function () fmap._profile.start(bf) end)
                   end))
    end)

    it("is callable as fmap.profile", function()
      local off = bf:allocate()
      local r = fmap.profile(bf, function () touch(bf, off) end)
      assert.equal(1, r.ops)
    end)
  end)

  describe("report", function()
    local r
    before_each(function()
      local offs = blocks(bf, 3)
      r = profile.run(bf, function ()
        profile.phase "p"
        for _, i in ipairs({ 1, 2, 1, 3 }) do touch(bf, offs[i]) end
      end)
    end)

    it(":misses() rejects what the report does not hold", function()
      assert.equal("bad argument #1 to 'misses' (cache size 0: at least one "
                   .. "block)", h.errmsg(function () r:misses(0) end))
      assert.equal("bad argument #2 to 'misses' (no phase \"q\" in the "
                   .. "report)", h.errmsg(function () r:misses(1, "q") end))
      assert.equal("bad argument #3 to 'misses' (no operation \"x\" in phase "
                   .. "p)", h.errmsg(function () r:misses(1, "p", "x") end))
      assert.equal("bad argument #1 to 'misses' (number has no integer "
                   .. "representation)", h.errmsg(function () r:misses(1.5) end))
      assert.equal("bad argument #0 to 'misses' (profile report expected)",
                   h.errmsg(function () r.misses({}, 1) end))
    end)

    it(":format() prints a line per phase and operation", function()
      local text = r:format()
      assert.equal(text, tostring(r))
      assert.matches("^fmap%.profile: " .. path:gsub("%p", "%%%0")
                     .. ", 4 blocks of 4096 bytes; 4 operations, 4 block "
                     .. "accesses\n", text)
      -- caches of 1, 2 (50%) and 4 blocks (100%)
      assert.matches("\np +4 +1%.00 +1 +0 +0 +%- +1%.00 +0%.75 +0%.75\n", text)
      assert.matches("\n  touch +4 ", text)
      assert.matches("\ntotals: 4 blocks read %(3 distinct%), 0 written %(0 "
                     .. "distinct%)", text)
    end)

    it(":svg() draws a line per phase; write_svg writes it", function()
      local s = r:svg({ title = "a <title>" })
      assert.matches("^<svg xmlns=\"http://www%.w3%.org/2000/svg\"", s)
      assert.matches("a &lt;title&gt;", s)
      local _, lines = s:gsub("<polyline ", "")
      assert.equal(1, lines)
      assert.matches(">p %(4 blocks%)</text>", s)
      local out = h.tmpname(".svg")
      assert.is_true(r:write_svg(out))
      assert.equal(r:svg(), h.readfile(out))
      os.remove(out)
      local ok, msg, errno = r:write_svg("/nonexistent/x.svg")
      assert.is_nil(ok)
      assert.equal("/nonexistent/x.svg: No such file or directory", msg)
      assert.equal(2, errno)
    end)

    it("compares reports in one picture with profile.svg", function()
      local s = profile.svg({
        { report = r, phase = "p", label = "one" },
        { report = r, phase = "p", operation = "touch", label = "two" },
      })
      local _, lines = s:gsub("<polyline ", "")
      assert.equal(2, lines)
      assert.equal("bad argument #1 to 'svg' (series 1 has no report)",
                   h.errmsg(function () profile.svg({ {} }) end))
      assert.equal("bad argument #1 to 'svg' (report or list of series "
                   .. "expected, got nil)", h.errmsg(function ()
                     profile.svg()
                   end))
    end)
  end)

  describe("the B+tree", function()
    -- A fixed-layout tree of n records, the workload's keys and values.
    local function tree (n)
      local t = fmap.bptree.new(bf, 16, 16)
      for i = 0, n - 1 do t:add(W.key(i), W.value(i)) end
      return t, t:stats()
    end

    it("reads h blocks a get, h + 1 for a key that opens its leaf; the "
       .. "meta block is not read", function()
      local n = 20000
      local t, st = tree(n)
      assert.equal(3, st.height)
      assert.equal("fixed", st.layout)
      local r = profile.run(bf, function ()
        for j = 0, n - 1 do t:get(W.key((j * 7919) % n)) end  -- each once
      end)
      local g = r.phase.main.operation["bptree.get"]
      assert.equal(n, g.ops)
      -- every get reads its path, root to leaf: h blocks. A separator is a
      -- copy of the first key of the leaf on its right, and a get descends
      -- left of an equal separator (duplicates may end the leaf before):
      -- so the first key of each leaf but the first reads the leaf on its
      -- left too, h + 1
      assert.same({ 0, 0, 0, n - (st.leaves - 1), st.leaves - 1 },
                  g.read_hist)
      assert.equal(0, g.writes.max)
      assert.equal(n, g.descents)
      -- the meta block is never touched: the tree keeps its root in memory
      assert.equal(st.internals + st.leaves, r.distinct)
    end)

    it("writes its leaf and the meta block an add, more when it splits",
       function()
      local t = tree(1000)
      local r = profile.run(bf, function ()
        for i = 1000, 1999 do t:add(W.key(i), W.value(i)) end
      end)
      local a = r.phase.main.operation["bptree.add"]
      assert.equal(1000, a.ops)
      -- no add writes fewer than 2 blocks, most exactly 2
      assert.equal(0, (a.write_hist[1] or 0) + (a.write_hist[2] or 0))
      assert.is_true(a.write_hist[3] > 900, a.write_hist[3])
      assert.equal(a.blocks_written * 4096 / 32000, a.write_amp)
    end)

    it("misses about once a get with its internal nodes cached", function()
      local n = 20000
      local t, st = tree(n)
      local r = profile.run(bf, function ()
        profile.phase "warm"
        for _ = 1, n do t:get(W.key(math.random(0, n - 1))) end
        profile.phase "get"
        for _ = 1, n do t:get(W.key(math.random(0, n - 1))) end
      end)
      local m = r:misses(st.internals + 4, "get")
      assert.is_true(m >= 0.9 and m <= 1.1, "misses per get: " .. m)
      -- with one block, every block of the path misses
      assert.is_true(r:misses(1, "get") >= st.height)
    end)

    it("has a miss curve that never rises, down to the cold misses",
       function()
      local n = 5000
      local t = tree(n)
      local r = profile.run(bf, function ()
        for _ = 1, n do t:get(W.key(math.random(0, n - 1))) end
        for i = n, n + 999 do t:add(W.key(i), W.value(i)) end
      end)
      for _, row in ipairs({ r.total, r.phase.main.operation["bptree.add"] })
      do
        local prev = math.huge
        for c = 1, r.blocks do
          local m = row.misses[c] or row.cold
          assert.is_true(m <= prev, "rises at " .. c)
          prev = m
        end
        assert.equal(row.cold, prev)       -- at the file's size
      end
      -- from an empty cache, each block misses once: the cold misses
      assert.equal(r.distinct, r.total.cold)
      assert.equal(r.distinct / r.ops, r:misses(r.blocks))
    end)
  end)

  describe("the list", function()
    it("reads the same number of blocks a get at any size", function()
      local per = {}
      for _, n in ipairs({ 1000, 50000 }) do
        local l = fmap.mmlist.new(bf)
        for i = 1, n do l:append(string.format("item%012d", i)) end
        local r = profile.run(bf, function ()
          for _ = 1, 2000 do l:get(math.random(1, n)) end
        end)
        local g = r.phase.main.operation["mmlist.get"]
        per[#per + 1] = { g.reads.mean, g.reads.max, g.writes.max }
      end
      -- the meta block, the leaf that holds the entry, the blob's block
      assert.same({ 3, 3, 0 }, per[1])
      assert.same(per[1], per[2])
    end)
  end)

  describe("the benchmarks", function()
    it("bench_profile.lua prints the ratio of on to off and the curve's "
       .. "time", function()
      local out, status = h.run(h.bin() .. " bench/bench_profile.lua --n "
                                .. "2000 --ops 5000 --rounds 1 2>&1")
      assert.equal(0, status, out)
      assert.matches("\non / off +%d+%.%d+x %(target: at most 3x%)\n", out)
      assert.matches("\nmiss curve of 5000 gets +%d+%.%d+ s  %(target: at "
                     .. "most 2 s%)\n", out)
    end)

    it("profile_compare.lua prints both structures' reports and draws "
       .. "four curves", function()
      local svg = h.tmpname(".svg")
      local out, status = h.run(string.format("%s bench/profile_compare.lua "
        .. "--n 3000 -o %s 2>&1", h.bin(), q(svg)))
      assert.equal(0, status, out)
      assert.matches("\n  bptree%.get +3,000 +2%.", out)     -- height 2
      assert.matches("\n  hashtable%.get +3,000 +1%.00 +1 ", out)
      local _, lines = h.readfile(svg):gsub("<polyline ", "")
      os.remove(svg)
      assert.equal(4, lines)
    end)
  end)

  describe("scripts/profile.lua", function()
    local script, svg
    before_each(function()
      script, svg = h.tmpname(".lua"), h.tmpname(".svg")
      h.writefile(script, string.format([[
local fmap = require "fmap"
local profile = require "fmap.profile"
local bf = assert(fmap.create(%q))
local t = fmap.bptree.new(bf, 8, 8)
profile.phase "insert"
for i = 1, tonumber(arg[1]) do t:add(string.pack(">I8", i), "12345678") end
profile.phase "get"
for i = 1, tonumber(arg[1]) do t:get(string.pack(">I8", i)) end
bf:close()
print("args", arg[0] == %q, arg[1], arg[2])
os.exit(tonumber(arg[2]) or 0)
]], path .. "2", script))
    end)
    after_each(function()
      os.remove(script)
      os.remove(svg)
      os.remove(path .. "2")
    end)

    it("prints the table per phase, draws the curves, and exits as the "
       .. "script", function()
      local out, status = h.run(string.format("%s scripts/profile.lua -o %s "
        .. "%s 300 3 2>&1", h.bin(), q(svg), q(script)))
      assert.equal(3, status)
      assert.matches("args\ttrue\t300\t3\n", out, 1, true)
      assert.matches("\ninsert +300 ", out)
      assert.matches("\n  bptree%.add +300 ", out)
      assert.matches("\nget +300 ", out)
      assert.matches("\nwrote " .. svg:gsub("%p", "%%%0") .. "\n", out)
      local s = h.readfile(svg)
      local _, lines = s:gsub("<polyline ", "")
      assert.equal(2, lines)
    end)

    it("reports, then fails, when the script raises", function()
      h.writefile(script, "local b = require('fmap').anonymous()\n"
                  .. "b:get(b:allocate()):u8(0)\nerror('boom')\n")
      local out, status = h.run(string.format("%s scripts/profile.lua %s "
        .. "2>&1", h.bin(), q(script)))
      assert.equal(1, status)
      assert.matches("fmap.profile: anonymous", out, 1, true)
      assert.matches("fmap: " .. script:gsub("%p", "%%%0") .. ":3: boom", out)
    end)

    it("profiles only the file --file names", function()
      local out, status = h.run(string.format("%s scripts/profile.lua --file "
        .. "/nowhere %s 10 2>&1", h.bin(), q(script)))
      assert.equal(0, status)
      assert.matches("the script opened no BlockFile at /nowhere", out, 1,
                     true)
    end)

    it("has a real --help, and usage errors exit 2", function()
      local out, status = h.run(h.bin() .. " scripts/profile.lua --help")
      assert.equal(0, status)
      assert.matches("^usage: fmap scripts/profile%.lua", out)
      assert.matches("Exits with the script's status", out, 1, true)
      out, status = h.run(h.bin() .. " scripts/profile.lua 2>&1")
      assert.equal(2, status)
      assert.matches("^profile: no SCRIPT\nusage:", out)
      out, status = h.run(h.bin() .. " scripts/profile.lua --bogus x 2>&1")
      assert.equal(2, status)
      assert.matches("^profile: unknown option \"%-%-bogus\"", out)
      out, status = h.run(h.bin() .. " scripts/profile.lua /nonexistent.lua "
                          .. "2>&1")
      assert.equal(1, status)
      assert.matches("cannot open /nonexistent.lua", out, 1, true)
    end)
  end)
end)
