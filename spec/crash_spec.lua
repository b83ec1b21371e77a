-- Crashes and two processes. A writer child allocates, fills, frees and
-- flushes in a loop, keeping a directory of its live blocks in the file
-- itself, and is SIGKILLed at a random moment; then the file is opened
-- and must hold every block the directory lists, intact and not free,
-- every generation flushed before the kill, and a free list that check()
-- passes or faults only for leaked blocks (those a free or an allocation
-- was marking when the kill came). The next writer picks up the same
-- file, sometimes opening it with repair, which must list the leaked
-- blocks again without touching a live one. Locks: a second writer gets a
-- clear error; readers share; a killed writer leaves no stale lock.
-- FMAP_SEED=n reruns a failure; FMAP_FUZZ_SCALE=x multiplies the kills.

local F = require "fmfile"
local SEED = h.SEED   -- the run's (spec/helpers.lua)
local SCALE = tonumber(os.getenv("FMAP_FUZZ_SCALE")) or 1

local tally = { kills = 0, leaky = 0, reclaimed = 0, repairs = 0,
                redone = 0, size = 0 }

-- The writer. arg: path, seed, block size, repair ("1" or "0"). Writes
-- "START gen" and, at each successful flush, "FLUSHED gen" to stdout.
-- Control data: root offset and generation. The root block: a count
-- (u64) then one u64 per live run: block index (32 bits), blocks (8),
-- a byte (8), generation (16). Each block of a run starts with its entry,
-- its index in the run and the byte (8 bytes each); the rest stays zero,
-- so that the writer's time goes to the engine rather than to filling.
local WRITER = [[
local fmap = require "fmap"
local path, seed, bs = arg[1], tonumber(arg[2]), tonumber(arg[3])
math.randomseed(seed)
local function say (...) io.write(table.concat({ ... }, " "), "\n") io.flush() end
local bf = fmap.open(path, { repair = arg[4] == "1" })
if not bf then bf = assert(fmap.create(path, bs)) end
if not bf:check() then   -- leaked blocks, as an application would see
  bf:close()             -- them after a crash: list them again
  bf = assert(fmap.open(path, { repair = true }))
end
bs = bf:block_size()
local root, gen = 0, 0
local ctl = bf:control_data()
if #ctl == 16 then root, gen = string.unpack("<I8I8", ctl) end
if root == 0 then
  root = bf:allocate()
  bf:set_control_data(string.pack("<I8I8", root, gen))
end
local dir = bf:get(root)
-- load the directory, dropping an entry a kill left twice
local entries, seen = {}, {}
for i = 0, dir:u64(0) - 1 do
  local e = dir:u64(8 + 8 * i)
  if not seen[e] then seen[e] = true; entries[#entries + 1] = e end
end
for i, e in ipairs(entries) do dir:set_u64(8 + 8 * i - 8, e) end
dir:set_u64(0, #entries)
-- free the blocks a kill leaked between allocate and the directory, or
-- between the directory and free: in use, yet listed nowhere
local owned = { [root // bs] = true }
for _, e in ipairs(entries) do
  for b = 0, ((e >> 32) & 0xff) - 1 do owned[(e & 0xffffffff) + b] = true end
end
local st = bf:stats()
for b = 1, st.blocks - st.tail_blocks - 1 do
  if not owned[b] and not bf:is_free(b * bs) then bf:free(b * bs) end
end
say("START", gen)
for _ = 1, 5000000 do
  gen = gen + 1
  local count = dir:u64(0)
  if count < 120 and (count == 0 or math.random() < 0.55) then
    local n = math.random() < 0.7 and math.random(1, 4) or math.random(5, 64)
    if bf:size() > (24 << 20) then n = 1 end   -- reuse, rather than grow
    local byte = math.random(1, 255)
    local off = bf:allocate_blocks(n)
    local e = (off // bs) | n << 32 | byte << 40 | (gen & 0xffff) << 48
    bf:with(off, n, function(v)
      for k = 0, n - 1 do
        v:set_u64(k * bs, e)
        v:set_u64(k * bs + 8, k)
        v:set_u64(k * bs + 16, byte)
      end
    end)
    dir:set_u64(8 + 8 * count, e)   -- the entry, then the count: one
    dir:set_u64(0, count + 1)       -- 8-byte store each
  elseif count > 0 then
    local i = math.random(0, count - 1)
    local e = dir:u64(8 + 8 * i)
    dir:set_u64(8 + 8 * i, dir:u64(8 + 8 * (count - 1)))
    dir:set_u64(0, count - 1)
    bf:free((e & 0xffffffff) * bs, (e >> 32) & 0xff)
  end
  bf:set_control_data_nosync(string.pack("<I8I8", root, gen))
  if gen % 40 == 0 then
    assert(bf:flush())
    say("FLUSHED", gen)
  end
end
]]

describe("crashes", function()
  local dir, writer, startup
  setup(function()
    dir = h.shm_tmpname(".d")
    assert(os.execute("mkdir -p " .. dir))
    writer = dir .. "/writer.lua"
    h.writefile(writer, WRITER)
    -- how long the host takes to start, so that kills land after it
    local t0 = fmap.clock()
    h.run(h.bin() .. " -e '' 2>&1")
    startup = fmap.clock() - t0
  end)
  teardown(function()
    os.execute("rm -rf " .. dir)
    io.stderr:write(string.format("\ncrash_spec (seed %d): %d writers killed "
      .. "with SIGKILL; %d left leaked blocks, %d between a header and its "
      .. "pending mark (redone at open); %d repairs reclaimed %d blocks\n",
      SEED, tally.kills, tally.leaky, tally.redone, tally.repairs,
      tally.reclaimed))
    io.stderr:write(string.format("crash_spec: files up to %d KB\n",
                                  tally.size // 1024))
  end)

  -- Runs the writer on path and kills it after secs; returns the last
  -- generation it said was flushed (0 if none), and its log.
  local function kill_writer (path, seed, bs, repair, secs)
    local log = path .. ".log"
    local status = h.run(string.format(
      "ASAN_OPTIONS=detect_leaks=0 timeout --foreground -s KILL %.3f %s %s "
      .. "%s %d %d %d "
      .. "> %s 2>&1; echo $?", secs, h.bin(), writer, path, seed, bs,
      repair and 1 or 0, log))
    local out = h.readfile(log)
    os.remove(log)
    local flushed = 0
    for g in out:gmatch("FLUSHED (%d+)") do flushed = tonumber(g) end
    return flushed, out, status
  end

  -- Whether the kill came between a header write and its pending mark:
  -- the mark on disk does not say yet what the header says it will.
  local function pending_unwritten (path)
    local f = io.open(path, "rb")
    if not f then return false end
    local head = f:read(256) or ""
    local ok, hd = pcall(F.newest, head)
    local r = false
    if ok and hd.valid and hd.pend_off > 0 then
      f:seek("set", hd.pend_off)
      local m = f:read(40)
      if m and #m == 40 then
        local magic, self, nxt, blocks, sum = string.unpack("<c8i8i8i8i8", m)
        r = not (magic == F.FREE_MAGIC and self == hd.pend_off
                 and sum == F.checksum(m:sub(1, 32), 1)
                 and nxt == hd.pend_next and blocks == hd.pend_blocks)
      end
    end
    f:close()
    return r
  end

  -- Opens path and checks what a kill may leave: returns the number of
  -- leaked blocks check() reported.
  local function verify (path, flushed, ctx)
    if pending_unwritten(path) then tally.redone = tally.redone + 1 end
    local bf, msg = fmap.open(path)
    assert(bf, ctx .. ": the file does not open: " .. tostring(msg))
    local ok, problems = bf:check()
    local leaked = 0
    if not ok then
      for i, p in ipairs(problems) do
        assert(p:match("%(leaked%)$") or (i == 101 and p:match("^%.%.%. and "
               .. "%d+ more$")), ctx .. ": " .. p)
        leaked = leaked + (tonumber(p:match("^%.%.%. and (%d+)")) or 1)
      end
    end
    local bs = bf:block_size()
    local ctl = bf:control_data()
    tally.size = math.max(tally.size, bf:size())
    if #ctl == 16 then
      local root, gen = string.unpack("<I8I8", ctl)
      assert(gen >= flushed, string.format("%s: generation %d in the file, "
             .. "%d flushed", ctx, gen, flushed))
      bf:with(root, 1, function(d)
        for i = 0, d:u64(0) - 1 do
          local e = d:u64(8 + 8 * i)
          local off, n = (e & 0xffffffff) * bs, (e >> 32) & 0xff
          local byte = (e >> 40) & 0xff
          local okv, v = pcall(bf.get, bf, off, n)
          assert(okv, ctx .. ": a live run is not there: " .. tostring(v))
          for k = 0, n - 1 do
            assert(v:u64(k * bs) == e and v:u64(k * bs + 8) == k
                   and v:u64(k * bs + 16) == byte and v:u64(k * bs + 24) == 0,
                   string.format("%s: block %d of the run at %d lost its "
                                 .. "bytes", ctx, k, off))
          end
          v:release()
        end
      end)
    else
      assert(flushed == 0, ctx .. ": flushed, but no control data")
    end
    bf:close()
    return leaked
  end

  local function rounds (bs, kills, seed)
    math.randomseed(seed)
    local path = string.format("%s/crash-%d-%d.fmap", dir, bs, seed)
    local flushed = 0
    for k = 1, kills do
      local repair = math.random() < 0.3
      local secs = 3 * startup + 0.01 + math.random() * 0.2
      local ctx = string.format("seed %d, bs %d, kill %d after %.3f s%s",
                                seed, bs, k, secs, repair and ", repair" or "")
      local before = 0
      do   -- what a repair will find to reclaim
        local b = fmap.open(path)
        if b then
          local ok, problems = b:check()
          for _, p in ipairs(ok and {} or problems) do
            before = before + (tonumber(p:match("^%.%.%. and (%d+)")) or 1)
          end
          b:close()
        end
      end
      repair = repair or before > 0   -- the writer repairs leaks anyway
      local f, out, status = kill_writer(path, seed * 100 + k, bs, repair,
                                         secs)
      assert(status:match("137") or status:match("^0"), ctx .. ": " .. out)
      assert(not out:match("fmap:"), ctx .. ": the writer failed: " .. out)
      if out:match("START") then
        tally.kills = tally.kills + 1
        if repair then
          tally.repairs = tally.repairs + 1
          tally.reclaimed = tally.reclaimed + before
        end
      end
      flushed = math.max(flushed, f)
      local leaked = verify(path, flushed, ctx)
      if leaked > 0 then tally.leaky = tally.leaky + 1 end
    end
    -- in the end, a repair leaves a clean file with every live run
    local bf = assert(fmap.open(path, { repair = true }))
    assert.is_true(bf:check())
    bf:close()
    assert.equal(0, verify(path, flushed, "after the last repair"))
    os.remove(path)
  end

  it("leaves a file that opens with everything, after SIGKILL at random "
     .. "points", function()
    rounds(4096, math.max(1, math.floor(36 * SCALE)), SEED)
  end)

  it("does so with a larger block size", function()
    rounds(16384, math.max(1, math.floor(12 * SCALE)), SEED + 1)
  end)
end)

describe("two processes", function()
  local path, bf
  before_each(function()
    path = h.tmpname()
    bf = assert(fmap.create(path))
    bf:with(bf:allocate(), 1, function(v) v:write(0, "shared") end)
    assert(bf:flush())
  end)
  after_each(function()
    if not tostring(bf):match("closed") then bf:close() end
    os.remove(path)
  end)

  -- Runs code in a child fmap process (path is arg[1]); its output.
  local function other (code)
    local script = path .. ".lua"
    h.writefile(script, "local fmap = require 'fmap'\nlocal path = arg[1]\n"
                .. code)
    local out = h.run(string.format("ASAN_OPTIONS=detect_leaks=0 %s %s %s "
                                    .. "2>&1", h.bin(), script, path))
    os.remove(script)
    return out
  end

  it("refuses a second writer with a clear error", function()
    local size = #h.readfile(path)
    local out = other([[
print(fmap.open(path))
print(fmap.create(path))
print(fmap.open(path, { readonly = true }))
]])
    assert.equal(table.concat({
      "nil\t" .. path .. ": file is locked: another BlockFile has it open"
        .. "\t11",
      "nil\t" .. path .. ": file is locked: another BlockFile has it open"
        .. "\t11", "" }, "\n"), out:match("^[^\n]*\n[^\n]*\n"))
    -- a reader, though, comes in beside the writer
    assert.matches("\nBlockFile %(.*, read%-only, ", out)
    assert.equal(size, #h.readfile(path))   -- create did not empty it
    assert.equal("shared", bf:with(4096, 1, function(v)
      return v:read(0, 6)
    end))
  end)

  it("lets readers share, and a writer in beside them", function()
    bf:close()
    bf = assert(fmap.open(path, { readonly = true }))
    assert.equal(table.concat({ "shared\ttrue", "true\ttrue", "" }, "\n"),
                 other([[
local ro = assert(fmap.open(path, { readonly = true }))
print(ro:with(4096, 1, function(v) return v:read(0, 6) end), ro:check())
local w = fmap.open(path)
print(w ~= nil, w:stats().readers)
]]))
  end)

  it("takes the file once the other closed it", function()
    bf:close()
    assert.equal("true\tshared\n", other([[
local w = assert(fmap.open(path))
print(w:check(), w:with(4096, 1, function(v) return v:read(0, 6) end))
]]))
  end)

  it("leaves no lock behind a writer killed with SIGKILL", function()
    bf:close()
    local script = path .. ".lua"
    h.writefile(script, "local w = assert(require('fmap').open(arg[1]))\n"
                .. "print('holding') io.flush()\nwhile true do end\n")
    local out = h.run(string.format("timeout --foreground -s KILL 0.5 %s %s "
                                    .. "%s 2>&1; "
                                    .. "echo $?", h.bin(), script, path))
    os.remove(script)
    assert.equal("holding\n137\n", out)
    bf = assert(fmap.open(path))
    assert.is_true(bf:check())
  end)
end)
