-- Hostile files: thousands of damaged control blocks and free lists. Each
-- open either gives a BlockFile that check() judges, or nil, message; a
-- session of calls on what opened either works or raises a clear error,
-- never hands out a block twice, outside the file, or over a block that
-- holds data; and the process survives all of it.
-- FMAP_SEED=n reruns a failure; the seed is in every failure message.
-- FMAP_FUZZ_SCALE=x multiplies the number of cases (default 1).
local F = require "fmfile"

local BS = 4096
local SEED = h.SEED   -- the run's (spec/helpers.lua)
local SCALE = tonumber(os.getenv("FMAP_FUZZ_SCALE")) or 1
local function times (n) return math.max(1, math.floor(n * SCALE)) end
local SIG = "USER"   -- user blocks start with SIG and their own offset

local tally = { files = 0, opened = 0, refused = 0, calls = 0, raised = 0 }

describe("hostile files", function()
  local path
  before_each(function() path = h.shm_tmpname() end)   -- thousands of files
  after_each(function()
    collectgarbage()
    os.remove(path)
  end)
  teardown(function()
    io.stderr:write(string.format("\nhostile_spec (seed %d): %d files, %d "
      .. "opened, %d refused; %d calls on them, %d raised\n", SEED,
      tally.files, tally.opened, tally.refused, tally.calls, tally.raised))
  end)

  local function ensure (cond, ctx, fmt, ...)
    if not cond then
      error(string.format("seed %d, %s: " .. fmt, SEED, ctx, ...), 2)
    end
  end

  -- A file with user blocks (signed) and free runs of several shapes.
  -- Returns its image and the set of user blocks: offset -> blocks.
  local function base_file (bs)
    bs = bs or BS
    local bf = assert(fmap.create(path, bs))
    local user, all = {}, {}
    for _ = 1, math.random(6, 24) do
      local n = math.random() < 0.7 and 1 or math.random(2, 4)
      local off = bf:allocate_blocks(n)
      bf:with(off, n, function(v) v:pack(0, "<c4i8", SIG, off) end)
      user[off] = n
      all[#all + 1] = off
    end
    -- free about half, sometimes neighbours in a row so runs merge
    for i = 1, #all do
      local off = all[i]
      if math.random() < 0.5 then
        bf:free(off, user[off])
        user[off] = nil
      end
    end
    bf:set_control_data(string.rep("c", math.random(0, 64)))
    bf:close()
    return h.readfile(path), user
  end

  -- One of a few base files made once per test (making one per case
  -- would be most of the time spent); the user set is a fresh copy.
  local pool
  local function some_base (bs)
    bs = bs or BS
    pool = pool or {}
    pool[bs] = pool[bs] or {}
    local p = pool[bs]
    if #p < 12 then
      local img, user = base_file(bs)
      p[#p + 1] = { img, user }
    end
    local pick = p[math.random(#p)]
    local copy = {}
    for k, v in pairs(pick[2]) do copy[k] = v end
    return pick[1], copy
  end
  before_each(function() pool = nil end)

  -- The top and block size each slot of s claims, to tell whether damage
  -- changed what is allocated (then data is no longer promised: the
  -- header's word is all the engine has).
  local function geometry (s)
    if #s < 256 then return "short" end
    local a, b = F.slot(s, 0), F.slot(s, 1)
    return table.concat({ a.top, a.block_size, b.top, b.block_size }, ",")
  end

  local function user_blocks_intact (bf, user, ctx)
    for off, n in pairs(user) do
      local sig, self = bf:with(off, n, function(v)
        return v:unpack("<c4i8")
      end)
      ensure(sig == SIG and self == off, ctx, "user block %d was handed "
             .. "out or overwritten", off)
    end
  end

  -- A session of random calls on a BlockFile opened from a hostile file.
  -- user: blocks that hold data (nil when unknown: any block may be in use
  -- under the file's own header, as after a power loss).
  local function session (bf, user, ctx)
    local bs = bf:block_size()
    local live = {}          -- blocks this session allocated: off -> n
    local ok, problems = bf:check()
    ensure(ok == true or (ok == nil and type(problems) == "table"
                          and type(problems[1]) == "string"), ctx,
           "check() gave %s", tostring(ok))
    local function try (f)
      tally.calls = tally.calls + 1
      local r = table.pack(pcall(f))
      if not r[1] then
        tally.raised = tally.raised + 1
        ensure(type(r[2]) == "string", ctx, "non-string error")
      end
      return table.unpack(r, 1, r.n)
    end
    local function clean_error (msg)
      -- environment failures return; what raises here is misuse of a
      -- damaged file, which must say so, or ordinary misuse
      msg = msg:gsub("^[^:\n]+:%d+: ", "")
      return msg:match("^free list is corrupt: ")
          or msg:match("^bad argument #%d to '[%w_]+' %(.+%)$")
          or msg:match("^the BlockFile is read%-only$")
    end
    for _ = 1, math.random(5, 25) do
      local r = math.random()
      if r < 0.35 then
        local n = math.random() < 0.7 and 1 or math.random(2, 6)
        local okc, off, msg = try(function() return bf:allocate_blocks(n) end)
        if okc and off then
          ensure(off % bs == 0 and off >= bs and off + n * bs <= bf:size(),
                 ctx, "allocate gave %d blocks at %d, outside the file "
                 .. "(%d bytes)", n, off, bf:size())
          for o, m in pairs(live) do
            ensure(off + n * bs <= o or o + m * bs <= off, ctx,
                   "allocate gave %d at %d twice (live %d+%d)", n, off, o, m)
          end
          if user then
            for o, m in pairs(user) do
              ensure(off + n * bs <= o or o + m * bs <= off, ctx,
                     "allocate gave a user block: %d+%d over %d+%d", off,
                     n, o, m)
            end
          end
          bf:with(off, n, function(v)
            ensure(v:read() == string.rep("\0", n * bs), ctx,
                   "allocated blocks at %d are not zeroed", off)
            v:pack(0, "<c4i8", SIG, off)
          end)
          live[off] = n
        elseif okc then
          ensure(type(msg) == "string", ctx, "allocate failed without "
                 .. "a message")
        else
          ensure(clean_error(off), ctx, "allocate raised %q", off)
        end
      elseif r < 0.55 then
        local pool = {}
        for o, m in pairs(live) do pool[#pool + 1] = { o, m, live } end
        for o, m in pairs(user or {}) do pool[#pool + 1] = { o, m, user } end
        table.sort(pool, function(a, b) return a[1] < b[1] end)
        local pick = pool[math.random(math.max(#pool, 1))]
        local off, n = bs * math.random(0, bf:size() // bs), 1
        if pick and math.random() < 0.8 then off, n = pick[1], pick[2] end
        local okc, err = try(function() return bf:free(off, n) end)
        if okc then
          if pick and off == pick[1] then pick[3][off] = nil end
          for o, m in pairs(live) do   -- a free of unknown blocks
            if o < off + n * bs and off < o + m * bs then live[o] = nil end
          end
          if user then
            for o, m in pairs(user) do
              if o < off + n * bs and off < o + m * bs then user[o] = nil end
            end
          end
        else
          ensure(clean_error(err), ctx, "free raised %q", err)
        end
      elseif r < 0.65 then
        local okc, list = try(function() return bf:free_list() end)
        if okc then
          for _, run in ipairs(list) do
            ensure(run.offset % bs == 0 and run.offset >= bs and
                   run.offset + run.blocks * bs <= bf:size(), ctx,
                   "free_list gave a run outside the file")
          end
        else
          ensure(clean_error(list), ctx, "free_list raised %q", list)
        end
      elseif r < 0.8 then
        local off = bs * math.random(0, bf:size() // bs + 1)
        local n = math.random(1, 3)
        local okc, v = try(function() return bf:get(off, n) end)
        if okc then
          ensure(#v:read() == #v, ctx, "a view reads its length")
          v:release()
        else
          ensure(clean_error(v), ctx, "get raised %q", v)
        end
      elseif r < 0.85 then
        local d = string.rep("d", math.random(0, 40))
        local okc, err = try(function() return bf:set_control_data(d) end)
        ensure(okc or clean_error(err), ctx, "set_control_data raised %q",
               tostring(err))
      elseif r < 0.9 then
        local st = bf:stats()
        ensure(st.blocks * bs == st.size, ctx, "stats: size")
        ensure(math.type(st.free_blocks) == "integer", ctx, "stats")
      elseif r < 0.95 then
        local off = bs * math.random(0, bf:size() // bs)
        local okc, yes = try(function() return bf:is_free(off) end)
        ensure(not okc or type(yes) == "boolean", ctx, "is_free")
      else
        local okc, res, probs = try(function() return bf:check() end)
        ensure(okc and (res == true or type(probs) == "table"), ctx,
               "check raised or gave %s", tostring(res))
      end
    end
    for off, n in pairs(live) do
      local sig, self = bf:with(off, n, function(v)
        return v:unpack("<c4i8")
      end)
      ensure(sig == SIG and self == off, ctx, "session block %d was "
             .. "overwritten", off)
    end
    if user then user_blocks_intact(bf, user, ctx) end
  end

  -- Opens the image s as path; runs a session if it opens, then reopens
  -- what the session left. user as in session.
  local function attempt (s, user, ctx, readonly, base)
    tally.files = tally.files + 1
    if user and base and geometry(base) ~= geometry(s) then user = nil end
    h.writefile(path, s)
    local okc, bf, msg, en = pcall(fmap.open, path,
                                   readonly and { readonly = true } or nil)
    ensure(okc, ctx, "open raised %s", tostring(bf))
    if not bf then
      tally.refused = tally.refused + 1
      ensure(type(msg) == "string" and msg:sub(1, #path + 2) == path .. ": "
             and math.type(en) == "integer", ctx, "open failed with %s, %s",
             tostring(msg), tostring(en))
      return false
    end
    tally.opened = tally.opened + 1
    local copy
    if user then
      copy = {}
      for k, v in pairs(user) do copy[k] = v end
    end
    if readonly then
      local ok = bf:check()
      ensure(ok == true or ok == nil, ctx, "check")
      local okc2, list = pcall(bf.free_list, bf)
      ensure(okc2 or list:match("free list is corrupt: "), ctx,
             "free_list raised %s", tostring(list))
      if copy then user_blocks_intact(bf, copy, ctx) end
    else
      session(bf, copy, ctx)
    end
    ensure(#bf:live_views() == 0, ctx, "a view was left live")
    local closed, cmsg = bf:close()
    ensure(closed or type(cmsg) == "string", ctx, "close")
    local b2 = fmap.open(path)
    if b2 then
      local ok, probs = b2:check()
      ensure(ok or type(probs) == "table", ctx, "check after reopen")
      if copy then user_blocks_intact(b2, copy, ctx) end
      b2:close()
    end
    return true
  end

  -- Hostile values for a 64-bit field of a file of size bytes.
  local function hostile_value (size, bs)
    local c = math.random(12)
    if c == 1 then return 0
    elseif c == 2 then return -1
    elseif c == 3 then return math.maxinteger
    elseif c == 4 then return math.mininteger
    elseif c == 5 then return size
    elseif c == 6 then return size - bs
    elseif c == 7 then return bs * math.random(0, size // bs)
    elseif c == 8 then return bs * math.random(0, size // bs) + 1
    elseif c == 9 then return math.random(0, 100)
    elseif c == 10 then return 1 << math.random(0, 63)
    elseif c == 11 then return math.random(math.mininteger, math.maxinteger)
    else return bs * math.random(1, 4) end
  end

  it("opens or refuses any header field value, resealed", function()
    math.randomseed(SEED)
    for i = 1, times(1500) do
      local bs = math.random() < 0.85 and BS or 8192
      local base, user = some_base(bs)
      local s = base:sub(1, 256)   -- the slots; the rest is put back after
      local _, slot = F.newest(s)
      local fields = {}
      for _ = 1, math.random(1, 3) do
        local f = F.FIELDS[math.random(#F.FIELDS)]
        local v = hostile_value(#s, bs)
        if f[3] == "<I4" then v = v & 0xffffffff end
        fields[f[1]] = v
      end
      -- seq stays the newest most of the time, so this slot is read
      if fields.seq and math.random() < 0.7 then fields.seq = nil end
      s = F.set_slot(s, slot, fields) .. base:sub(257)
      local ctx = "field case " .. i
      for k, v in pairs(fields) do ctx = ctx .. " " .. k .. "=" .. v end
      -- the free list's fields may point anywhere, user blocks included:
      -- still, no data may be handed out unless a mark says it is free
      attempt(s, user, ctx, i % 5 == 0, base)
    end
  end)

  it("opens or refuses a control block with random bytes", function()
    math.randomseed(SEED + 1)
    for i = 1, times(1500) do
      local base, user = some_base()
      local s = base:sub(1, BS)   -- block 0; the rest is put back after
      local n = math.random(1, 8)
      for _ = 1, n do
        local at = math.random(0, BS - 1)
        s = F.splice(s, at, string.char(math.random(0, 255)))
      end
      if math.random() < 0.3 then   -- and reseal a slot, damage and all
        s = F.seal_slot(s, math.random(0, 1))
      end
      s = s .. base:sub(BS + 1)
      attempt(s, user, "byte case " .. i, i % 7 == 0, base)
    end
  end)

  it("never hands out data through forged free marks", function()
    math.randomseed(SEED + 2)
    for i = 1, times(1200) do
      local s, user = some_base()
      local top = F.newest(s).top
      -- rewrite marks of free blocks with valid checksums and hostile
      -- links and counts; marks of user blocks are left alone
      local frees = {}
      for off = BS, top - BS, BS do
        if F.mark(s, off).ok then frees[#frees + 1] = off end
      end
      local ctx = "mark case " .. i
      for _ = 1, math.random(1, 3) do
        if #frees == 0 then break end
        local off = frees[math.random(#frees)]
        local m = F.mark(s, off)
        local nxt, blocks = m.next, m.blocks
        if math.random() < 0.5 then nxt = hostile_value(#s, BS)
        else blocks = math.random() < 0.5 and hostile_value(#s, BS)
                      or math.random(0, 2 * top // BS) end
        s = F.put_mark(s, off, nxt, blocks)
        ctx = ctx .. string.format(" %d:next=%d,blocks=%d", off, nxt, blocks)
      end
      attempt(s, user, ctx, i % 6 == 0)
    end
  end)

  it("opens or refuses free blocks with random bytes", function()
    math.randomseed(SEED + 3)
    for i = 1, times(600) do
      local s, user = some_base()
      local top = F.newest(s).top
      for _ = 1, math.random(1, 6) do
        local off = BS * math.random(1, top // BS - 1)
        if not user[off] then
          s = F.splice(s, off + math.random(0, 39),
                       string.char(math.random(0, 255)))
        end
      end
      attempt(s, user, "free-block case " .. i)
    end
  end)

  it("opens or refuses a file cut or grown to any size", function()
    math.randomseed(SEED + 4)
    for i = 1, times(300) do
      local s, user = some_base()
      local whole = #s
      local c = math.random(4)
      if c == 1 then s = s:sub(1, math.random(0, #s))
      elseif c == 2 then s = s:sub(1, BS * math.random(0, #s // BS))
      elseif c == 3 then
        local extra = {}
        for k = 1, math.random(1, 4) * BS do
          extra[k] = string.char(math.random(0, 255))
        end
        s = s .. table.concat(extra)
      else s = s .. string.rep("\0", math.random(1, 3 * BS)) end
      -- a cut may take user blocks away: data is not promised then
      local cut = #s < whole
      attempt(s, not cut and user or nil, "size case " .. i)
    end
  end)

  it("opens or refuses any mix of blocks from two states of a file",
     function()
    -- what a power loss without flush may leave: each block as of one
    -- instant or the other (page writeback has no order)
    math.randomseed(SEED + 5)
    for i = 1, times(400) do
      local a = some_base()
      h.writefile(path, a)
      local bf = assert(fmap.open(path))
      for _ = 1, math.random(5, 30) do
        if math.random() < 0.5 then
          local n = math.random(1, 3)
          local off = bf:allocate_blocks(n)
          bf:with(off, n, function(v) v:fill(0x55) end)
        else
          local list = bf:free_list()
          local st = bf:stats()
          local off = BS * math.random(1, st.blocks - st.tail_blocks - 1)
          if not bf:is_free(off) then bf:free(off) end
          assert.is_table(list)
        end
      end
      bf:close()
      local b = h.readfile(path)
      local parts, n = {}, math.max(#a, #b) // BS
      for k = 0, n - 1 do
        local src = math.random() < 0.5 and a or b
        if k * BS >= #src then src = (src == a) and b or a end
        parts[#parts + 1] = src:sub(k * BS + 1, (k + 1) * BS)
      end
      local s = table.concat(parts)
      if math.random() < 0.5 then s = s:sub(1, #(math.random() < 0.5
                                                  and a or b)) end
      attempt(s, nil, "mix case " .. i)
    end
  end)

  describe("directed cases", function()
    local function forge (s, slot_fields)
      local _, slot = F.newest(s)
      return F.set_slot(s, slot, slot_fields)
    end

    it("opens a version 1 file", function()
      local bf = assert(fmap.create(path))
      local off = bf:allocate()
      bf:with(off, 1, function(v) v:write(0, "v1 data") end)
      bf:close()
      h.writefile(path, forge(h.readfile(path), { version = 1 }))
      bf = assert(fmap.open(path))
      assert.equal("v1 data", bf:with(off, 1, function(v)
        return v:read(0, 7)
      end))
      assert.is_true(bf:check())
      bf:close()
    end)

    it("refuses a version it does not know", function()
      local bf = assert(fmap.create(path))
      bf:close()
      local s = h.readfile(path)
      s = F.set_slot(F.set_slot(s, 0, { version = 4 }), 1, { version = 4 })
      h.writefile(path, s)
      assert.same({ nil, path .. ": unsupported format version 4 (this fmap "
                    .. "reads versions 1 to 3)", 22 }, { fmap.open(path) })
    end)

    it("refuses a pending mark outside the allocated area", function()
      local bf = assert(fmap.create(path))
      bf:allocate()
      bf:close()
      h.writefile(path, forge(h.readfile(path), { pend_off = 3 * BS }))
      assert.same({ nil, path .. ": pending mark at 12288 (next 0, 0 blocks) "
                    .. "is out of range", 22 }, { fmap.open(path) })
    end)

    it("never writes a pending mark over a block that is not free",
       function()
      local bf = assert(fmap.create(path))
      local off = bf:allocate()
      bf:with(off, 1, function(v) v:write(0, "precious") end)
      bf:close()
      h.writefile(path, forge(h.readfile(path),
                              { pend_off = off, pend_blocks = 1 }))
      bf = assert(fmap.open(path))
      assert.equal("precious", bf:with(off, 1, function(v)
        return v:read(0, 8)
      end))
      assert.is_false(bf:is_free(off))
      assert.is_true(bf:check())
      bf:close()
    end)

    it("refuses to hand out blocks a forged run count claims", function()
      local bf = assert(fmap.create(path))
      local a = bf:allocate_blocks(2)
      local u = bf:allocate()
      bf:with(u, 1, function(v) v:write(0, "data") end)
      bf:free(a, 2)
      bf:close()
      -- the run at a now claims 3 blocks: a, a + BS and the user's block
      h.writefile(path, F.put_mark(h.readfile(path), a, 0, 3))
      bf = assert(fmap.open(path))
      assert.same({ nil, { "free list: block " .. u .. " of the run at " .. a
                           .. " is not marked free",
                           "free list: header counts 2 blocks in 1 runs, "
                           .. "the list holds 3 in 1" } }, { bf:check() })
      assert.equal("free list is corrupt: block " .. u .. " of the run at "
                   .. a .. " is not marked free",
                   h.errmsg(function() bf:allocate() end))
      assert.equal("data", bf:with(u, 1, function(v) return v:read(0, 4) end))
      bf:close()
      bf = assert(fmap.open(path, { repair = true }))
      assert.same({ { offset = a, blocks = 2 } }, bf:free_list())
      assert.is_true(bf:check())
      bf:close()
    end)

    it("refuses a change that would write a header that does not open",
       function()
      local bf = assert(fmap.create(path))
      local a = bf:allocate_blocks(3)
      bf:allocate()
      bf:free(a, 3)
      bf:close()
      -- the header counts 1 free block; the run holds 3
      h.writefile(path, forge(h.readfile(path), { free_blocks = 1 }))
      bf = assert(fmap.open(path))
      assert.equal("free list is corrupt: free-list counts are inconsistent "
                   .. "(18446744073709551614 blocks in 0 runs, head 0)",
                   h.errmsg(function() bf:allocate_blocks(3) end))
      bf:close()
      bf = assert(fmap.open(path))   -- still opens
      bf:close()
    end)

    it("reports a cycle in the free list and hands out nothing twice",
       function()
      local bf = assert(fmap.create(path))
      local a = bf:allocate()
      bf:allocate()
      local b = bf:allocate()
      bf:allocate()
      bf:free(a)
      bf:free(b)   -- list: b -> a
      bf:close()
      h.writefile(path, F.put_mark(h.readfile(path), a, b, 1))  -- a -> b
      bf = assert(fmap.open(path))
      assert.same({ nil, { "free list: more runs than the 2 the header "
                           .. "counts (a cycle?) at block " .. b } },
                  { bf:check() })
      assert.equal(b, bf:allocate())
      assert.equal("free list is corrupt: free-list counts are inconsistent "
                   .. "(0 blocks in 0 runs, head " .. b .. ")",
                   h.errmsg(function() bf:allocate() end))
      assert.is_true(bf:is_free(a))
      bf:close()
    end)

    it("stops checking at the first block listed twice", function()
      local bf = assert(fmap.create(path))
      local n = 2000
      local first = bf:allocate_blocks(n)
      bf:allocate()
      bf:free(first, n)
      bf:close()
      local s = h.readfile(path)
      -- every block the head of a run reaching the end, each linked to
      -- the next: n runs of n/2 blocks on average
      local parts = { s:sub(1, first) }
      for k = 0, n - 1 do
        local off = first + k * BS
        local blk = s:sub(off + 1, off + BS)
        local body = F.FREE_MAGIC .. string.pack("<i8i8i8", off,
                       k < n - 1 and off + BS or 0, n - k)
        parts[#parts + 1] = body .. string.pack("<i8", F.checksum(body, 1))
                        .. blk:sub(41)
      end
      parts[#parts + 1] = s:sub(first + n * BS + 1)
      s = table.concat(parts)
      h.writefile(path, forge(s, { free_runs = n, free_blocks = n }))
      bf = assert(fmap.open(path))
      local ok, problems = bf:check()
      assert.is_nil(ok)
      assert.equal("free list: block " .. (first + BS) .. " is on the list "
                   .. "twice", problems[1])
      bf:close()
    end)
  end)
end)
