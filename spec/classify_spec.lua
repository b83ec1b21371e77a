local classify = require "fmap.classify"
local toy = require "toychain"

local BS = 4096

-- The kinds of the allocated blocks 0 .. r.top-1 as an array (1-based:
-- [b + 1]), after checking that the rest of the file is tail.
local function kinds (r)
  local t = {}
  for b = 0, r.top - 1 do t[b + 1] = r.kind[b] end
  for b = r.top, r.blocks - 1 do assert.equal("tail", r.kind[b]) end
  return t
end

describe("fmap.classify", function()
  local path, bf
  h.fixture(function (p, b) if p then path, bf = p, b end return bf end)
  toy.each_test()
  after_each(function() classify.unregister("bad") end)

  describe(".register()", function()
    it("rejects a name that is not a string", function()
      assert.equal("bad argument #1 to 'register' (non-empty string "
                   .. "expected, got number)",
                   h.errmsg(function() classify.register(1, {}) end))
    end)

    it("rejects an empty name", function()
      assert.equal("bad argument #1 to 'register' (non-empty string "
                   .. "expected, got empty string)",
                   h.errmsg(function() classify.register("", {}) end))
    end)

    it("rejects a classifier without detect", function()
      assert.equal("bad argument #2 to 'register' (field 'detect' must be "
                   .. "a function, got nil)",
                   h.errmsg(function()
                     classify.register("bad", { walk = print })
                   end))
    end)

    it("rejects a classifier without walk", function()
      assert.equal("bad argument #2 to 'register' (field 'walk' must be "
                   .. "a function, got string)",
                   h.errmsg(function()
                     classify.register("bad", { detect = print, walk = "x" })
                   end))
    end)

    it("rejects a classifier that is not a table", function()
      assert.equal("bad argument #2 to 'register' (table expected, got "
                   .. "nil)", h.errmsg(function()
                     classify.register("bad")
                   end))
    end)

    it("lists the classifier and replaces one of the same name", function()
      local names = classify.registered()
      local n = 0
      for _, name in ipairs(names) do
        if name == "toy" then n = n + 1 end
      end
      assert.equal(1, n)
      toy.register()
      n = 0
      for _, name in ipairs(classify.registered()) do
        if name == "toy" then n = n + 1 end
      end
      assert.equal(1, n)
      assert.is_true(classify.unregister("toy"))
      assert.is_false(classify.unregister("toy"))
    end)

    it("adds the classifier's kinds with their labels and colours",
       function()
      assert.same({ label = "toy node", color = "#aa5500" },
                  classify.KINDS.toy_node)
      local found = false
      for _, k in ipairs(classify.ORDER) do
        if k == "toy_payload" then found = true end
      end
      assert.is_true(found)
    end)
  end)

  describe(".kind()", function()
    it("rejects a colour that is not #rrggbb", function()
      assert.equal("bad argument #2 to 'kind' (color must be a string "
                   .. "'#rrggbb', got red)",
                   h.errmsg(function()
                     classify.kind("spec_kind", { color = "red" })
                   end))
    end)

    it("gives a kind without a colour a spare one", function()
      local k = classify.kind("spec_plain_kind")
      assert.matches("^#%x%x%x%x%x%x$", k.color)
      assert.equal("spec_plain_kind", k.label)
    end)
  end)

  describe(".scan()", function()
    it("rejects what is not a BlockFile", function()
      assert.equal("bad argument #1 to 'scan' (BlockFile expected, got "
                   .. "table)", h.errmsg(function() classify.scan({}) end))
    end)

    it("rejects roots naming no classifier", function()
      assert.equal("bad argument #2 to 'scan' (roots[1] names no "
                   .. "registered classifier: nope)",
                   h.errmsg(function()
                     classify.scan(bf, { roots = { { "nope", 4096 } } })
                   end))
    end)

    it("sees only the control block in an empty file", function()
      local r = classify.scan(bf)
      assert.equal(1, r.blocks)
      assert.same({ "control" }, kinds(r))
      assert.same({ control = 1 }, r.counts)
      assert.same({}, r.structures)
    end)

    it("classifies every block of a file with known contents", function()
      local n1, p1 = toy.push(bf, 2)      -- blocks 1, 2-3
      local n2 = toy.push(bf, 0)          -- 4
      local stray = bf:allocate()         -- 5, no owner
      local gone = bf:allocate_blocks(2)  -- 6-7, then freed
      local n3, p3 = toy.push(bf, 1)      -- 8, 9
      bf:free(gone, 2)
      assert.same({ BS, 2 * BS, 4 * BS, 5 * BS, 8 * BS, 9 * BS },
                  { n1, p1, n2, stray, n3, p3 })
      local st = bf:stats()
      local r = classify.scan(bf)
      local want = { "control", "toy_node", "toy_payload", "toy_payload",
                     "toy_node", "unknown", "free", "free", "toy_node",
                     "toy_payload" }
      assert.equal(st.blocks, r.blocks)
      assert.equal(st.blocks - st.tail_blocks, r.top)
      assert.same(want, kinds(r))
      assert.equal(st.tail_blocks, r.counts.tail)
      assert.equal("toy@" .. n3, r.owner[1])
      assert.equal("toy@" .. n3, r.owner[9])
      assert.is_nil(r.owner[5])
      assert.same({ "toy_payload", "toy@" .. n3 },
                  { classify.kind_at(r, p1 + 4095) })
      assert.equal(3, r.counts.toy_node)
      assert.equal(1, r.counts.unknown)
      assert.equal(2, r.counts.free)
      assert.equal(1, #r.structures)
      assert.equal(6, r.structures[1].blocks)
      assert.same({ toy_node = 3, toy_payload = 3 }, r.structures[1].kinds)
      assert.same({ nodes = 3 }, r.structures[1].figures)
      assert.same({ blocks = 2, runs = 1, largest = 2 }, r.free)
    end)

    it("walks a root given by the caller", function()
      local node = toy.push(bf, 1)
      bf:set_control_data("")
      local r = classify.scan(bf)
      assert.equal("unknown", r.kind[1])
      r = classify.scan(bf, { roots = { { "toy", node } } })
      assert.same({ "control", "toy_node", "toy_payload" }, kinds(r))
    end)

    it("ends a walk on a cycle and reports the block met twice", function()
      local a = toy.push(bf)
      local b = toy.push(bf)
      toy.set(bf, a, 0, b)  -- b -> a -> b
      local r = classify.scan(bf)
      assert.same({ "control", "toy_node", "toy_node" }, kinds(r))
      assert.same({ { offset = b, owners = { "toy@" .. b, "toy@" .. b } } },
                  r.doubles)
      assert.same({ nodes = 2 }, r.structures[1].figures)
      assert.equal(2, r.structures[1].blocks)
    end)

    it("reports a block owned by two structures, naming both", function()
      local shared = toy.push(bf, 1)
      local other = toy.push(bf)
      toy.set(bf, other, 0, 0)
      toy.set(bf, other, 8, shared + BS)  -- other's payload: shared's too
      toy.set(bf, other, 16, 1)
      local r = classify.scan(bf, { roots = { { "toy", shared } } })
      assert.equal(1, #r.doubles)
      assert.equal(shared + BS, r.doubles[1].offset)
      assert.same({ "toy@" .. other, "toy@" .. shared }, r.doubles[1].owners)
    end)

    it("refuses to follow a pointer to a free block and reports it",
       function()
      local node = toy.push(bf, 1)
      local nxt = toy.push(bf)
      bf:set_control_data("toy=" .. nxt)
      bf:free(node + BS)  -- node's payload, still pointed at
      local walked = 0
      classify.register("toy", {
        detect = toy.classifier.detect,
        walk = function (b, root, emit)
          local ok = toy.classifier.walk(b, root, function (...)
            walked = walked + 1
            return emit(...)
          end)
          return ok
        end,
      })
      local r = classify.scan(bf)
      assert.equal(3, walked)
      assert.same({ { offset = node + BS, by = "toy@" .. nxt, from = node } },
                  r.free_referenced)
      assert.equal("free", r.kind[2])
    end)

    it("reports offsets outside the file or not block-aligned", function()
      local a = toy.push(bf)
      local b = toy.push(bf)
      toy.set(bf, a, 8, 10 * BS)
      toy.set(bf, a, 16, 1)
      toy.set(bf, b, 8, BS + 7)
      toy.set(bf, b, 16, 1)
      local r = classify.scan(bf)
      table.sort(r.bad_refs, function (x, y) return x.offset < y.offset end)
      assert.same({
        { offset = BS + 7, by = "toy@" .. b, from = b,
          reason = "not block-aligned" },
        { offset = 10 * BS, by = "toy@" .. b, from = a,
          reason = "outside the allocated area" },
      }, r.bad_refs)
    end)

    it("catches an error in a classifier and goes on", function()
      toy.push(bf, 1)
      classify.register("bad", {
        detect = function () return { 1 } end,
        walk = function () error("boom") end,
      })
      local r = classify.scan(bf)
      assert.equal(1, #r.errors)
      assert.equal("bad@1", r.errors[1].label)
      assert.matches("boom$", r.errors[1].message)
      assert.equal("toy_node", r.kind[1])
    end)

    it("reports a walker's misuse of emit as an error", function()
      toy.push(bf)
      local stray = bf:allocate()
      classify.register("bad", {
        detect = function () return { stray } end,
        walk = function (_, root, emit) emit(root, 1, 7) end,
      })
      local r = classify.scan(bf)
      assert.equal(1, #r.errors)
      assert.matches("bad argument #3 to 'emit' %(kind must be a string, "
                     .. "got number%)", r.errors[1].message)
    end)

    it("lets detect find blocks by a magic and their own offset",
       function()
      local a, b, c = bf:allocate(), bf:allocate(), bf:allocate()
      local d = bf:allocate()
      for _, off in ipairs { a, b, c, d } do
        bf:with(off, 1, function (v)
          v:write(16, "MAGIC!")
          v:set_u64(8, off == c and a or off)  -- c: a copy of a's header
        end)
      end
      bf:free(d)
      local got
      classify.register("bad", {
        detect = function (_, ctx)
          got = { ctx.find("MAGIC!", 16, 8), ctx.find("MAGIC!", 16),
                  ctx.find("nope") }
        end,
        walk = function () end,
      })
      classify.scan(bf)
      assert.same({ { a, b }, { a, b, c }, {} }, got)
    end)

    it("skips in find a block the engine will not show", function()
      local a, b = bf:allocate(), bf:allocate()
      for _, off in ipairs { a, b } do
        bf:with(off, 1, function (v) v:write(16, "MAGIC!") end)
      end
      -- a's bytes become a free mark (as a crash mid-free leaves one) that
      -- the free list does not hold: the engine refuses views of it
      local function checksum (words)
        local x = 1 ~ (32 * 0x9E3779B97F4A7C15)
        for _, w in ipairs(words) do
          x = x ~ w
          x = x * 0xBF58476D1CE4E5B9
          x = x ~ (x >> 31)
        end
        x = x ~ (x >> 29)
        x = x * 0xBF58476D1CE4E5B9
        return x ~ (x >> 32)
      end
      bf:with(a, 1, function (v)
        local magic = string.unpack("<i8", "fmapFREE")
        v:pack(0, "<c8i8i8i8i8", "fmapFREE", a, 0, 0,
               checksum { magic, a, 0, 0 })
      end)
      assert.is_true(bf:is_free(a))
      local got, accepted
      classify.register("bad", {
        detect = function (_, ctx)
          got = ctx.find("MAGIC!", 16)
          return { b }
        end,
        walk = function (_, root, emit)
          emit(root, 1, "meta")
          accepted = emit(a, 1, "meta", nil, root)
        end,
      })
      local r = classify.scan(bf)
      assert.same({ b }, got)
      assert.same({}, r.errors)
      assert.is_false(accepted)
      assert.same({ { offset = a, by = "bad@" .. b, from = b } },
                  r.free_referenced)
      classify.unregister("bad")
      local rep = require "fmap.audit"(bf)
      assert.same({ a, b }, rep.leaked)
      assert.equal(1, #rep.engine)
    end)

    it("rejects a bad magic or position in find", function()
      local msgs = {}
      classify.register("bad", {
        detect = function (_, ctx)
          msgs[1] = h.errmsg(function() ctx.find("") end)
          msgs[2] = h.errmsg(function() ctx.find("x", 4096) end)
          msgs[3] = h.errmsg(function() ctx.find("x", 0, 4090) end)
        end,
        walk = function () end,
      })
      classify.scan(bf)
      assert.same({
        "bad argument #1 to 'find' (non-empty string expected, got string)",
        "bad argument #2 to 'find' (position inside a block expected, got "
          .. "4096)",
        "bad argument #3 to 'find' (position inside a block expected, got "
          .. "4090)",
      }, msgs)
    end)

    it("does not walk a detected root another walk owns", function()
      local node = toy.push(bf, 1)
      local walks = 0
      classify.register("bad", {
        detect = function () return { node } end,
        walk = function () walks = walks + 1 end,
      })
      local r = classify.scan(bf)
      assert.equal(0, walks)
      assert.same({}, r.doubles)
      assert.equal(1, #r.structures)
    end)

    it("lets a walker walk an embedded structure with .walk()", function()
      local inner = toy.push(bf, 1)
      local outer = bf:allocate()
      bf:with(outer, 1, function (v) v:set_u64(0, inner) end)
      bf:set_control_data("")
      classify.register("bad", {
        detect = function () return { outer } end,
        walk = function (b, root, emit, ref)
          emit(root, 1, "meta")
          local p = b:with(root, 1, function (v) return v:u64(0) end)
          return classify.walk("toy", b, p, emit, ref)
        end,
      })
      local r = classify.scan(bf)
      assert.same({ "control", "toy_node", "toy_payload", "meta" }, kinds(r))
      assert.equal("bad@" .. outer, r.owner[1])
      assert.same({ nodes = 1 }, r.structures[1].figures)
      assert.equal("bad argument #1 to 'walk' (no classifier named nope)",
                   h.errmsg(function() classify.walk("nope", bf, 0) end))
    end)

    it("runs only the classifiers asked for", function()
      toy.push(bf)
      local r = classify.scan(bf, { only = { nothing = true } })
      assert.equal("unknown", r.kind[1])
    end)
  end)

  describe(".figures()", function()
    it("gives the free share and the fragmentation", function()
      local a = bf:allocate_blocks(8)
      bf:free(a, 2)           -- run of 2
      bf:free(a + 3 * BS)     -- run of 1
      bf:free(a + 5 * BS, 3)  -- run of 3
      local f = classify.figures(classify.scan(bf))
      assert.equal(6, f.free_blocks)
      assert.equal(3, f.free_runs)
      assert.equal(3, f.largest_free_run)
      assert.equal(6 / bf:stats().blocks, f.free_share)
      assert.equal(0.5, f.fragmentation)
    end)

    it("is 0 for a file without free blocks", function()
      local f = classify.figures(classify.scan(bf))
      assert.equal(0, f.fragmentation)
      assert.equal(0, f.free_share)
    end)
  end)

  describe(".runs()", function()
    it("groups offsets into runs", function()
      assert.same({ { 4096, 2 }, { 20480, 1 } },
                  classify.runs({ 4096, 8192, 20480 }, 4096))
    end)
  end)
end)

describe("fmap.classify.varchar", function()
  local varchar = require "fmap.varchar"
  local path, bf
  h.fixture(function (p, b) if p then path, bf = p, b end return bf end)

  it("classifies the meta block, slabs, large runs and the reserve",
     function()
    local vc = varchar.new(bf)
    local small, large = {}, {}
    for i = 1, 400 do
      local len = (i * 97) % 3000
      local x = vc:put(string.rep("v", len))
      if len > 2000 then large[#large + 1] = { x, len } else
        small[#small + 1] = x end
    end
    for i = 1, #large, 2 do vc:free(large[i][1]); large[i] = false end
    assert.is_true(vc:verify())
    local r = classify.scan(bf)
    assert.equal("meta", r.kind[vc:offset() // BS])
    assert.equal("varchar@" .. vc:offset(), r.owner[vc:offset() // BS])
    local want = { [0] = "control", [vc:offset() // BS] = "meta" }
    for _, x in ipairs(small) do want[x // BS] = "varchar" end
    for _, l in ipairs(large) do
      if l then
        local n = (64 + l[2] + BS - 1) // BS
        for b = (l[1] - 64) // BS, (l[1] - 64) // BS + n - 1 do
          want[b] = "varchar"
        end
      end
    end
    local st = vc:stats()
    local reserve = 0
    for b = 0, r.top - 1 do
      if r.kind[b] == "reserve" then
        reserve = reserve + 1
      elseif r.kind[b] ~= "free" then
        assert.equal(want[b], r.kind[b], "block " .. b)
      end
    end
    assert.equal(st.reserve_blocks, reserve)
    assert.is_nil(r.counts.unknown)
    local f = r.structures[1].figures
    assert.equal(st.blobs, f.blobs)
    assert.equal(st.slab_blocks, f.slab_blocks)
    assert.equal(st.large_blocks, f.large_blocks)
    assert.is_true(f.slot_fill > 0 and f.slot_fill <= 1)
  end)

  it("finds every store in the file", function()
    local a, b = varchar.new(bf), varchar.new(bf)
    a:put("x")
    b:put(string.rep("y", 10000))
    local r = classify.scan(bf)
    local labels = {}
    for i, s in ipairs(r.structures) do labels[i] = s.label end
    assert.same({ "varchar@" .. a:offset(), "varchar@" .. b:offset() },
                labels)
  end)

  it("lets the audit catch slab blocks lost from their list", function()
    local vc = varchar.new(bf)
    local x = vc:put("lost")
    -- forget the class list that holds x's slab block
    bf:with(vc:offset(), 1, function (v)
      for pos = 128, 128 + 16 * v:u32(12) - 8, 8 do  -- the list heads
        if v:u64(pos) == x // BS * BS then v:set_u64(pos, 0) end
      end
    end)
    local rep = require "fmap.audit"(bf)
    assert.same({ x // BS * BS }, rep.leaked)
  end)
end)

describe("fmap.classify.mmlist", function()
  local mmlist = require "fmap.mmlist"
  local path, bf
  h.fixture(function (p, b) if p then path, bf = p, b end return bf end)

  it("classifies the meta block, the index leaves and the items' store",
     function()
    local l = mmlist.new(bf)
    for i = 1, 1500 do l:append(string.rep("x", i % 50)) end
    assert.is_true(l:verify())
    local r = classify.scan(bf)
    -- one structure: the list's varchar is walked as part of it
    assert.equal(1, #r.structures)
    local s = r.structures[1]
    assert.equal("mmlist@" .. l:offset(), s.label)
    local leaves = bf:with(l:offset(), 1, function (v)
      local t = {}
      for k = 0, v:u64(48) - 1 do t[k] = v:u64(64 + 8 * k) end
      return t
    end)
    assert.equal(1, leaves[1] and 1 or 0)  -- 1500 items need two leaves
    for k, off in pairs(leaves) do
      for b = off // BS, off // BS + (1 << k) - 1 do
        assert.equal("list", r.kind[b], "leaf " .. k .. " block " .. b)
      end
    end
    assert.equal("meta", r.kind[l:offset() // BS])
    for i = 1, 1500, 37 do
      local x = bf:with(leaves[i > 512 and 1 or 0], i > 512 and 2 or 1,
                        function (v)
        return v:u64(8 * (i > 512 and i - 513 or i - 1))
      end)
      assert.equal("varchar", r.kind[x // BS])
      assert.equal(s.label, r.owner[x // BS])
    end
    assert.is_nil(r.counts.unknown)
    assert.equal(1500, s.figures.items)
    assert.equal(2, s.figures.leaves)
    assert.equal(1500, s.figures.blobs)
    assert.equal(1500 / (512 * 3), s.figures.index_fill)
    assert.is_true(require "fmap.audit"(bf).ok)
  end)

  it("reports an entry pointing at a freed block", function()
    local l = mmlist.new(bf)
    l:append("a")
    l:append("b")
    local gone = bf:allocate()
    bf:free(gone)
    local leaf = bf:with(l:offset(), 1, function (v) return v:u64(64) end)
    bf:with(leaf, 1, function (v) v:set_u64(8, gone + 64) end)  -- item 2
    local r = classify.scan(bf)
    assert.same({ { offset = gone, by = "mmlist@" .. l:offset(),
                    from = leaf } }, r.free_referenced)
  end)
end)

describe("fmap.classify.bptree", function()
  local bptree = require "fmap.bptree"
  local path, bf
  h.fixture(function (p, b) if p then path, bf = p, b end return bf end)

  local function key (i) return string.pack(">I8", i * 7919 % 100003) end

  -- Checks a scan against the tree's own figures: every allocated block
  -- is the tree's (meta, nodes, runs) or free, and the counts agree.
  local function check (t, r, s)
    local st = assert(t:stats())
    assert.equal("bptree@" .. t:offset(), s.label)
    assert.equal("meta", r.kind[t:offset() // BS])
    assert.is_nil(r.counts.unknown)
    assert.equal(st.leaves, s.kinds.leaf)
    assert.equal(st.internals, s.kinds.internal or 0)
    assert.equal(st.overflow_blocks, s.kinds.overflow or 0)
    assert.equal(st.blocks, s.blocks)
    local f = s.figures
    assert.same({ t:size(), st.height, st.leaves, st.internals,
                  st.overflow_blocks, st.layout },
                { f.entries, f.height, f.leaves, f.internal_nodes,
                  f.overflow_blocks, f.layout })
    assert.near(st.leaf_fill, f.leaf_fill, 1e-9)
    if st.internals > 0 then
      assert.near(st.internal_fill, f.internal_fill, 1e-9)
    end
  end

  it("classifies a one-leaf tree: control, meta, root leaf", function()
    local t = bptree.new(bf, 8, 8)
    t:add(key(1), key(2))
    local r = classify.scan(bf)
    assert.same({ "control", "meta", "leaf" }, kinds(r))
    check(t, r, r.structures[1])
  end)

  it("classifies every block of a fixed-layout tree", function()
    local t = bptree.new(bf, 8, 8)
    for i = 1, 30000 do t:add(key(i), key(i + 1)) end
    for i = 1, 30000, 2 do t:remove(key(i)) end
    assert.is_true(t:verify())
    local r = classify.scan(bf)
    check(t, r, r.structures[1])
    assert.is_true(r.structures[1].figures.height >= 2)
    assert.is_true(require "fmap.audit"(bf).ok)
  end)

  it("classifies a slotted tree's overflow runs", function()
    local t = bptree.new(bf, -1, -1)
    for i = 1, 2000 do
      t:add("key" .. i, string.rep("v", i % 100 == 0 and 9000 or 20))
    end
    t:add(string.rep("K", 6000), "a long key")
    local r = classify.scan(bf)
    local s = r.structures[1]
    check(t, r, s)
    assert.is_true(s.kinds.overflow >= 20 * 3 + 2)
    assert.equal("slotted", s.figures.layout)
  end)

  it("finds trees made with new_at by their meta block", function()
    local a = bptree.new(bf, 4, 4)
    local b = bptree.new_at(bf, nil, -1, 0)
    a:add("aaaa", "bbbb")
    b:add("x", "")
    local r = classify.scan(bf)
    assert.equal(2, #r.structures)
    assert.equal("bptree@" .. a:offset(), r.structures[1].label)
    assert.equal("bptree@" .. b:offset(), r.structures[2].label)
    assert.is_nil(r.counts.unknown)
  end)

  it("reports a leaf link to a freed block", function()
    local t = bptree.new(bf, 8, 8)
    t:add(key(1), key(1))
    local gone = bf:allocate()
    bf:free(gone)
    local root = bf:with(t:offset(), 1, function (v) return v:u64(32) end)
    bf:with(root, 1, function (v) v:set_u64(16, gone) end)  -- next leaf
    local r = classify.scan(bf)
    assert.same({ { offset = gone, by = "bptree@" .. t:offset(),
                    from = root } }, r.free_referenced)
  end)

  it("reports a damaged meta block named by the control data", function()
    local t = bptree.new(bf, 8, 8)
    bf:with(t:offset(), 1, function (v) v:write(0, "garbage!") end)
    local r = classify.scan(bf)
    assert.equal(1, #r.errors)
    assert.equal("no B+tree at offset " .. t:offset() .. " (bad magic)",
                 r.errors[1].message)
  end)
end)
