--- spec/hashtable_spec.lua: fmap.examples.hashtable, the worked example of
-- doc/writing-a-structure.md, and the guide itself: its quotes of the
-- example must be the example's code, and its blocks marked `-- run` must
-- run and print what their `-->` lines say.
local ht = require "fmap.examples.hashtable"
local classify = require "fmap.classify"
-- Loading the example registered its classifier; the other specs of this
-- run must not meet it, so it is registered only while these tests run.
classify.unregister("hashtable")

local BS = 4096
local GUIDE = "doc/writing-a-structure.md"
local EXAMPLE = "lua/fmap/examples/hashtable.lua"
-- Random draws: $FMAP_SEED, else a fixed seed, named in the tests' names.
local SEED = tonumber(os.getenv("FMAP_SEED")) or 20240611

-- How many directory, bucket and overflow blocks the audit finds in bf's
-- one table; then the audit's report.
local function blocks_of (bf)
  local rep = fmap.audit(bf)
  local s = assert(rep.structures[1], "no structure found")
  return s.kinds.hash_directory, s.kinds.hash_bucket,
         s.kinds.hash_overflow or 0, rep
end

-- A random key or value of 0 to max bytes, any byte.
local function random_string (max)
  local t = {}
  for i = 1, math.random(0, max) do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

describe("fmap.examples.hashtable", function()
  local path, bf
  setup(function() classify.register("hashtable", ht.classifier) end)
  teardown(function() classify.unregister("hashtable") end)
  before_each(function()
    path = h.tmpname()
    bf = assert(fmap.create(path))
  end)
  after_each(function()
    h.no_live_views(bf)
    if not tostring(bf):match("closed") then bf:close() end
    os.remove(path)
  end)

  describe(".create()", function()
    it("allocates a directory and its buckets, recorded in the control "
       .. "data", function()
      local t = assert(ht.create(bf, 8))
      assert.equal(BS, t:offset())
      assert.equal("hashtable@4096", bf:control_data())
      assert.equal(9, bf:stats().used_blocks)
      assert.equal(0, t:count())
      assert.is_true(t:verify())
    end)

    it("leaves control data in use alone; the offset opens the table",
       function()
      bf:set_control_data("mine")
      local t = assert(ht.create(bf, 2))
      t:put("a", "b")
      assert.equal("mine", bf:control_data())
      assert.same({ nil, "no hash table in the control data" },
                  { ht.open(bf) })
      assert.equal("b", assert(ht.open(bf, t:offset())):get("a"))
    end)

    it("rejects a number of buckets out of range", function()
      assert.equal("bad argument #2 to 'create' (number of buckets from 1 "
                   .. "to 65536 expected, got 0)",
                   h.errmsg(function() ht.create(bf, 0) end))
      assert.equal("bad argument #2 to 'create' (number of buckets from 1 "
                   .. "to 65536 expected, got 1.5)",
                   h.errmsg(function() ht.create(bf, 1.5) end))
    end)

    it("rejects what is not an open BlockFile", function()
      assert.equal("bad argument #1 to 'create' (open BlockFile expected, "
                   .. "got string)",
                   h.errmsg(function() ht.create("bf") end))
      local other = fmap.anonymous()
      other:close()
      assert.equal("bad argument #1 to 'create' (open BlockFile expected, "
                   .. "got BlockFile (closed))",
                   h.errmsg(function() ht.create(other) end))
    end)
  end)

  describe(".open()", function()
    it("reopens a table from its file, which verifies", function()
      local t = assert(ht.create(bf, 4))
      local model = {}
      for i = 1, 1000 do
        t:put("k" .. i, ("v"):rep(i % 50))
        model["k" .. i] = ("v"):rep(i % 50)
      end
      for i = 1, 1000, 3 do
        t:remove("k" .. i)
        model["k" .. i] = nil
      end
      bf:close()
      bf = assert(fmap.open(path))
      t = assert(ht.open(bf))
      assert.is_true(t:verify())
      local seen = {}
      for k, v in t:pairs() do seen[k] = v end
      assert.same(model, seen)
      assert.equal(666, t:count())
    end)

    it("returns nil and a message where there is no table", function()
      local t = assert(ht.create(bf, 2))
      assert.same({ nil, "no hash table at offset 8192 (no magic)" },
                  { ht.open(bf, t:offset() + BS) })
      assert.same({ nil, "no hash table at offset 4097 (offset 4097 is not "
                    .. "block-aligned)" }, { ht.open(bf, 4097) })
      bf:set_control_data("")
      assert.same({ nil, "no hash table in the control data" },
                  { ht.open(bf) })
    end)

    it("returns nil and a message for a damaged directory", function()
      local t = assert(ht.create(bf, 2))
      bf:with(t:offset(), 1, function(v) v:set_u32(12, 100000) end)
      assert.same({ nil, "hash table at offset 4096 is damaged (format "
                    .. "version 1, n = 100000)" }, { ht.open(bf) })
    end)

    it("rejects an offset that is not an integer", function()
      assert.equal("bad argument #2 to 'open' (integer expected, got "
                   .. "string)", h.errmsg(function() ht.open(bf, "4096") end))
    end)
  end)

  describe(":put(), :get(), :remove(), :count(), :pairs()", function()
    it("agree with a Lua table over 6000 random operations on few "
       .. "buckets (seed " .. SEED .. ")", function()
      math.randomseed(SEED)
      local t = assert(ht.create(bf, 3))
      local model, n = {}, 0
      local keys = {}
      for i = 1, 2500 do keys[i] = random_string(12) .. i end
      local most_overflow = 0
      for step = 1, 6000 do
        local k = keys[math.random(#keys)]
        local r = math.random()
        if r < 0.55 then
          -- mostly short values, sometimes large ones that fill a block
          local v = math.random() < 0.05 and random_string(2000)
                    or random_string(40)
          assert.is_true(t:put(k, v))
          if model[k] == nil then n = n + 1 end
          model[k] = v
        elseif r < 0.85 then
          assert.equal(model[k] ~= nil, t:remove(k))
          if model[k] ~= nil then n = n - 1 end
          model[k] = nil
        else
          assert.equal(model[k], t:get(k))
        end
        assert.equal(n, t:count())
        if step % 500 == 0 then
          assert.same({ true }, { t:verify() })
          local _, _, overflow = blocks_of(bf)
          most_overflow = math.max(most_overflow, overflow)
        end
      end
      assert.is_true(most_overflow >= 15, "overflow blocks: " .. most_overflow)
      for k, v in pairs(model) do assert.equal(v, t:get(k)) end
      local seen, m = {}, 0
      for k, v in t:pairs() do
        assert.is_nil(seen[k])
        seen[k], m = v, m + 1
      end
      assert.equal(n, m)
      assert.same(model, seen)
      -- every key removed: the chains' overflow blocks are all freed
      for k in pairs(model) do assert.is_true(t:remove(k)) end
      assert.equal(0, t:count())
      assert.equal(4, bf:stats().used_blocks)
      assert.is_true(t:verify())
    end)

    it("keeps keys and values of any bytes, the empty string included",
       function()
      local t = assert(ht.create(bf, 1))
      t:put("", "empty key")
      t:put("\0", "")
      t:put("a\0b", "\0\255")
      assert.equal("empty key", t:get(""))
      assert.equal("", t:get("\0"))
      assert.equal("\0\255", t:get("a\0b"))
      assert.is_nil(t:get("a"))
      assert.is_nil(t:get("a\0"))
      assert.equal(3, t:count())
    end)

    it("moves a value that no longer fits in its block", function()
      local t = assert(ht.create(bf, 1))
      local big = ("x"):rep(1000)
      for i = 1, 4 do t:put("k" .. i, big) end     -- 4040 of 4080 bytes
      t:put("k1", big .. big)                      -- goes to an overflow
      assert.equal(big .. big, t:get("k1"))
      assert.equal(4, t:count())
      local _, _, overflow = blocks_of(bf)
      assert.equal(1, overflow)
      assert.is_true(t:verify())
      t:put("k1", "small")     -- replaced in its block, the overflow
      assert.equal("small", t:get("k1"))
      assert.is_true(t:remove("k1"))   -- empties the overflow: freed
      assert.equal(0, (select(3, blocks_of(bf))))
      assert.equal(2, bf:stats().used_blocks)
      assert.is_true(t:verify())
    end)

    it("takes an entry that fills a block exactly, and no larger",
       function()
      local t = assert(ht.create(bf, 1))
      local room = BS - 16 - 8
      assert.is_true(t:put("k", ("v"):rep(room - 1)))
      assert.equal(room - 1, #t:get("k"))
      assert.equal("bad argument #2 to 'put' (an entry of 4081 bytes does "
                   .. "not fit in a block: at most 4080)",
                   h.errmsg(function() t:put("k", ("v"):rep(room)) end))
    end)

    it("pairs releases its view when a loop breaks", function()
      local t = assert(ht.create(bf, 2))
      for i = 1, 10 do t:put("k" .. i, "v") end
      for _ in t:pairs() do break end
      assert.same({}, bf:live_views())
      local empty = assert(ht.create(bf, 2))
      for _ in empty:pairs() do error("an empty table has no entry") end
    end)

    it("reject keys and values that are not strings", function()
      local t = assert(ht.create(bf, 2))
      assert.equal("bad argument #2 to 'put' (string expected, got number)",
                   h.errmsg(function() t:put("k", 42) end))
      assert.equal("bad argument #1 to 'get' (string expected, got nil)",
                   h.errmsg(function() t:get() end))
      assert.equal("bad argument #1 to 'remove' (string expected, got "
                   .. "table)", h.errmsg(function() t:remove({}) end))
    end)

    it("reject a call with '.' for ':'", function()
      local t = assert(ht.create(bf, 2))
      assert.equal("bad argument #0 to 'get' (hash table expected, got "
                   .. "string; call it with ':')",
                   h.errmsg(function() t.get("k") end))
      assert.equal("bad argument #0 to 'pairs' (hash table expected, got "
                   .. "nil; call it with ':')",
                   h.errmsg(function() t.pairs() end))
    end)

    it("raise at the caller's line", function()
      local t = assert(ht.create(bf, 2))
      local line = h.line(); local ok, err = pcall(t.put, t, "k", 1)
      assert.is_false(ok)
      assert.is_nil(err:match("hashtable%.lua"))
      ok, err = pcall(function() t:put("k", 1) end)
      assert.matches("^spec/hashtable_spec%.lua:" .. (line + 3) .. ":", err)
    end)
  end)

  describe(":verify()", function()
    -- Each case damages a table of one bucket with two blocks in its
    -- chain (a full bucket at 8192, an overflow at 12288), and names the
    -- message verify must give.
    local function table_with_overflow ()
      local t = assert(ht.create(bf, 1))
      for i = 1, 4 do t:put("k" .. i, ("x"):rep(1010)) end   -- full
      t:put("k5", "in the overflow")
      assert.equal(1, (select(3, blocks_of(bf))))
      return t
    end
    local cases = {
      { "a count that is not the entries'",
        function() bf:with(BS, 1, function(v) v:set_u64(24, 7) end) end,
        "the directory counts 7 entries, the buckets hold 5" },
      { "a chain that loops",
        function() bf:with(3 * BS, 1, function(v) v:set_u64(0, 2 * BS) end) end,
        "bucket 0, block at 8192: reached twice" },
      { "a chain through a free block",
        function()
          local off = bf:allocate()
          bf:free(off)
          bf:with(3 * BS, 1, function(v) v:set_u64(0, off) end)
        end,
        "bucket 0, block at 16384: not an allocated block" },
      { "used past the end of the block",
        function() bf:with(2 * BS, 1, function(v) v:set_u32(8, BS) end) end,
        "bucket 0, block at 8192: used passes its end" },
      { "an entry that passes used",
        function() bf:with(3 * BS, 1, function(v) v:set_u32(8, 10) end) end,
        "bucket 0, block at 12288: the entry at 16 passes used" },
      { "an empty overflow block",
        function() bf:with(3 * BS, 1, function(v) v:set_u32(8, 0) end) end,
        "bucket 0, block at 12288: an empty overflow block" },
      { "a key twice",
        function()
          bf:with(3 * BS, 1, function(v) v:write(20, "k1") end)
        end,
        'bucket 0, block at 12288: key "k1" is in the table twice' },
      { "a directory whose magic is gone",
        function() bf:with(BS, 1, function(v) v:write(0, "XXXX") end) end,
        "no hash table at offset 4096 (no magic)" },
    }
    for _, c in ipairs(cases) do
      it("finds " .. c[1], function()
        local t = table_with_overflow()
        assert.is_true(t:verify())
        c[2]()
        assert.same({ nil, c[3] }, { t:verify() })
      end)
    end

    it("finds a key in the wrong bucket", function()
      local t = assert(ht.create(bf, 2))
      local k = "a"
      t:put(k, "v")
      -- move the entry's bytes to the other bucket's block
      local from, to = 2 * BS, 3 * BS
      if bf:with(from, 1, function(v) return v:u32(8) end) == 0 then
        from, to = to, from
      end
      local bytes = bf:with(from, 1, function(v)
        local s = v:read(0, 16 + v:u32(8))
        v:fill(0)
        return s
      end)
      bf:with(to, 1, function(v) v:write(0, bytes) end)
      local i = (to - BS) // BS - 1
      assert.same({ nil, string.format('bucket %d, block at %d: key "a" '
                   .. "belongs in bucket %d", i, to, 1 - i) }, { t:verify() })
    end)
  end)

  describe(".classifier", function()
    it("names the table's blocks in the audit", function()
      local t = assert(ht.create(bf, 2))
      for i = 1, 1200 do t:put("key" .. i, "value " .. i) end
      local report, summary = fmap.audit(bf)
      assert.is_true(report.ok, summary)
      assert.matches("hashtable@4096: 9 blocks %(2 hash_bucket, 1 "
                     .. "hash_directory, 6 hash_overflow%)", summary)
      assert.same({ buckets = 2, entries = 1200, overflow_blocks = 6 },
                  report.structures[1].figures)
    end)

    it("lets the audit find an overflow block the table lost", function()
      local t = assert(ht.create(bf, 1))
      for i = 1, 5 do t:put("k" .. i, ("x"):rep(1000)) end
      bf:with(2 * BS, 1, function(v) v:set_u64(0, 0) end)  -- unlinked
      local report, summary = fmap.audit(bf)
      assert.same({ 3 * BS }, report.leaked)
      assert.matches("leaked: 1 block allocated, not free, owned by no "
                     .. "structure, at offsets 12288", summary)
    end)

    it("reports a directory too damaged to walk", function()
      local t = assert(ht.create(bf, 1))
      bf:with(t:offset(), 1, function(v) v:set_u32(8, 9) end)   -- version
      local report = fmap.audit(bf)
      assert.same({ { label = "hashtable@4096", message = "hash table at "
                      .. "offset 4096 is damaged (format version 9, n = 1)" } },
                  report.errors)
    end)

    it("colours the blocks in scripts/blockmap.lua with -r", function()
      local t = assert(ht.create(bf, 2))
      for i = 1, 1200 do t:put("key" .. i, "value " .. i) end
      bf:close()
      local png = h.tmpname(".png")
      local out, status = h.run(string.format(
        "%s scripts/blockmap.lua %s -r fmap.examples.hashtable -o %s 2>&1",
        h.bin(), path, png))
      os.remove(png)
      assert.equal(0, status, out)
      assert.matches("hash overflow +6\n", out)
      assert.matches("hash bucket +2\n", out)
      assert.matches("hash directory +1\n", out)
    end)
  end)
end)

-- The ```lua blocks of the guide, each {line = where it starts, code}.
local function lua_blocks (text)
  local blocks, n, open = {}, 0, nil
  for line in (text .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    if open then
      if line == "```" then
        open.code = table.concat(open, "\n") .. "\n"
        blocks[#blocks + 1] = open
        open = nil
      else
        open[#open + 1] = line
      end
    elseif line == "```lua" then
      open = { line = n }
    end
  end
  assert(not open, "a ```lua block is not closed")
  return blocks
end

-- Whitespace runs as one space, none at the ends: what print's tabs and
-- the guide's spaces have in common.
local function squeeze (s)
  return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""))
end

describe(GUIDE, function()
  local blocks = lua_blocks(h.readfile(GUIDE))
  local example = h.readfile(EXAMPLE)
  local tmp = h.tmpname()
  setup(function() classify.register("hashtable", ht.classifier) end)
  teardown(function()
    classify.unregister("hashtable")
    os.remove(tmp)
  end)

  it("has blocks to quote and blocks to run", function()
    local run = 0
    for _, b in ipairs(blocks) do
      if b[1] == "-- run" then run = run + 1 end
    end
    assert.is_true(run >= 4 and #blocks - run >= 8)
  end)

  for _, b in ipairs(blocks) do
    if b[1] ~= "-- run" then
      it("quotes the example verbatim at line " .. b.line, function()
        assert(example:find(b.code, 1, true),
               "not in " .. EXAMPLE .. ":\n" .. b.code)
      end)
    else
      it("runs the block at line " .. b.line .. " as it says", function()
        -- /tmp/ht.fmap, the guide's file, is a temporary file of the spec's
        local code = b.code:gsub("/tmp/ht%.fmap", tmp)
        local printed = {}
        local env = setmetatable({ print = function(...)
          local t = table.pack(...)
          for i = 1, t.n do t[i] = tostring(t[i]) end
          local s = table.concat(t, "\t", 1, t.n)
          printed[#printed + 1] = s:gsub(tmp:gsub("%p", "%%%0"), "/tmp/ht.fmap")
        end }, { __index = _G })
        local chunk = assert(load(code, "=" .. GUIDE .. ":" .. b.line, "t",
                                  env))
        chunk()
        local expected, got = {}, {}
        for _, line in ipairs(b) do
          local out = line:match("^%s*%-%->(.*)$")
          if out then expected[#expected + 1] = squeeze(out) end
        end
        for _, s in ipairs(printed) do
          for line in (s .. "\n"):gmatch("(.-)\n") do
            got[#got + 1] = squeeze(line)
          end
        end
        assert.same(expected, got)
      end)
    end
  end
end)
