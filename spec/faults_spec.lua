-- Failing system calls. Child fmap processes run with the LD_PRELOAD shim
-- testing/faultinject.c (build/lib/libfaultinject.so, or $FMAP_FAULTINJECT)
-- making one call fail (ftruncate, fallocate, posix_fallocate, mmap,
-- mremap, msync, fsync, open, flock, fstatvfs) with a chosen errno after
-- K calls, or fstatvfs report a nearly full disk, or the file be cut
-- short just after the engine's Kth look at its size.
-- Each failing Lua call returns nil, message, errno; the BlockFile stays
-- usable (check() true, nothing half-done: a failed growth leaves the
-- free list and the sizes as they were) or is cleanly closed; and the
-- file opens afterwards with everything the child had written.
-- FMAP_FUZZ_SCALE=x multiplies the number of random fault runs.

local SCALE = tonumber(os.getenv("FMAP_FUZZ_SCALE")) or 1
local SEED = h.SEED   -- the run's (spec/helpers.lua)
local BS = 4096
local SHIM = os.getenv("FMAP_FAULTINJECT") or "build/lib/libfaultinject.so"

local tally = { runs = 0, injected = 0 }

-- The start of a child script: fmap, the file's path (arg[1]), and
-- out(...), which prints its arguments on a line, sep between them.
local function child_prelude (sep)
  return ([[
local fmap = require "fmap"
local path = arg[1]
local function out (...)
  local t = table.pack(...)
  for i = 1, t.n do t[i] = tostring(t[i]) end
  io.write(table.concat(t, %q), "\n")
  io.flush()
end
]]):format(sep)
end

-- Runs a Lua chunk in a child fmap process under the shim, with the
-- fault given as { call, after, errno, times }; returns its output lines
-- (stdout and stderr), its exit status and the faults it injected.
local function child (dir, code, fault, ...)
  tally.runs = tally.runs + 1
  local script = string.format("%s/child-%d.lua", dir, tally.runs)
  h.writefile(script, code)
  local env = { "LD_PRELOAD=" .. SHIM,
                "ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0" }
  if fault then
    env[#env + 1] = "FMAP_FAULT=" .. fault[1]
    env[#env + 1] = "FMAP_FAULT_AFTER=" .. (fault[2] or 0)
    env[#env + 1] = "FMAP_FAULT_ERRNO=" .. (fault[3] or "EIO")
    env[#env + 1] = "FMAP_FAULT_TIMES=" .. (fault[4] or 1)
    if fault.report then env[#env + 1] = "FMAP_FAULT_REPORT=1" end
    if fault.free then env[#env + 1] = "FMAP_FAULT_FREE=" .. fault.free end
    if fault.cut then
      env[#env + 1] = "FMAP_CUT_AFTER=" .. fault.cut[1]
      env[#env + 1] = "FMAP_CUT_SIZE=" .. fault.cut[2]
    end
  end
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = string.format("%q", tostring(a)) end
  local out, status = h.run(string.format("env %s %s %s %s 2>&1",
    table.concat(env, " "), h.bin(), script, table.concat(args, " ")))
  os.remove(script)
  local lines, injected = {}, 0
  for line in out:gmatch("[^\n]+") do
    lines[#lines + 1] = line
    if line:match("^faultinject: %S+ call %d+ fails") then
      injected = injected + 1
    end
  end
  tally.injected = tally.injected + injected
  return lines, status, injected, out
end

-- The lines of out that start with tag, split on spaces.
local function tagged (lines, tag)
  local r = {}
  for _, l in ipairs(lines) do
    if l:sub(1, #tag + 1) == tag .. " " then
      local t = {}
      for w in l:sub(#tag + 2):gmatch("%S+") do t[#t + 1] = w end
      r[#r + 1] = t
    end
  end
  return r
end

describe("failing system calls", function()
  local dir, path
  setup(function()
    local f = io.open(SHIM, "rb")
    assert(f, SHIM .. " is missing: build it (make -C build config=release "
           .. "faultinject) or set FMAP_FAULTINJECT")
    f:close()
    dir = h.shm_tmpname(".d")   -- the workloads flush: in memory
    assert(os.execute("mkdir -p " .. dir))
  end)
  teardown(function()
    os.execute("rm -rf " .. dir)
    io.stderr:write(string.format("\nfaults_spec (seed %d): %d child runs, "
      .. "%d faults injected\n", SEED, tally.runs, tally.injected))
  end)
  local files = 0
  before_each(function()
    files = files + 1
    path = string.format("%s/f%d.fmap", dir, files)
  end)
  after_each(function() os.remove(path) end)

  -- A prelude for child scripts: out(...) prints a tagged line; stats(bf)
  -- is the part of the stats a failed call must leave alone.
  local PRELUDE = child_prelude(" ") .. [[
local function stats (bf)
  local s = bf:stats()
  local fl = {}
  for _, r in ipairs(bf:free_list()) do fl[#fl + 1] = r.offset .. "+" .. r.blocks end
  return table.concat({ s.size, s.blocks, s.used_blocks, s.free_blocks,
    s.free_runs, s.tail_blocks, s.control_data, table.concat(fl, ",") }, "/")
end
local function fill (bf, off, n, byte)
  bf:with(off, n, function(v) v:fill(byte) end)
end
local function holds (bf, off, n, byte)
  return bf:with(off, n, function(v)
    return v:compare(0, string.rep(string.char(byte), n * 4096)) == 0
  end)
end
]]

  describe("growth", function()
    -- the file: 17 blocks after the first growth; the second growth is
    -- the one that fails
    local GROW = PRELUDE .. [[
local bf = assert(fmap.create(path))
local offs = {}
for i = 1, 12 do offs[i] = bf:allocate(); fill(bf, offs[i], 1, i) end
bf:free(offs[3]); bf:free(offs[7], 1)
assert(bf:flush())
local before = stats(bf)
local off, msg, en = bf:allocate_blocks(40)   -- needs the file to grow
out("FAILED", off, en, msg)
out("SAME", stats(bf) == before, bf:check())
out("FREE", bf:allocate() == offs[7], bf:allocate() == offs[3])
off = bf:allocate_blocks(40)                   -- the fault was one call
fill(bf, off, 40, 99)
out("GREW", math.type(off), bf:check())
assert(bf:close())
bf = assert(fmap.open(path))
local ok = bf:check() and holds(bf, off, 40, 99)
for i, o in ipairs(offs) do
  if i ~= 3 and i ~= 7 then ok = ok and holds(bf, o, 1, i) end
end
out("REOPENED", ok)
]]
    local cases = {
      { "fallocate", 1, "ENOSPC", 28 }, { "fallocate", 1, "EDQUOT", 122 },
      { "ftruncate", 2, "EFBIG", 27 }, { "ftruncate", 2, "EIO", 5 },
      { "mremap", 1, "ENOMEM", 12 },
    }
    for _, c in ipairs(cases) do
      it("returns nil, message, errno when " .. c[1] .. " fails with "
         .. c[3] .. ", and changes nothing", function()
        local lines, status, injected, raw = child(dir, GROW,
                                                   { c[1], c[2], c[3] }, path)
        assert.equal(1, injected, raw)
        assert.is_true(status == 0, raw)
        local failed = tagged(lines, "FAILED")[1]
        assert.same({ "nil", tostring(c[4]), path .. ":" }, { failed[1],
                    failed[2], failed[3] })
        assert.same({ { "true", "true" } }, tagged(lines, "SAME"))
        assert.same({ { "true", "true" } }, tagged(lines, "FREE"))
        assert.same({ { "integer", "true" } }, tagged(lines, "GREW"))
        assert.same({ { "true" } }, tagged(lines, "REOPENED"))
      end)
    end

    it("undoes the size on disk when the map cannot grow", function()
      local lines, status, injected, raw = child(dir, PRELUDE .. [[
local bf = assert(fmap.create(path))
for i = 1, 16 do bf:allocate() end      -- fills the first 17 blocks
local size = bf:size()
local off, msg, en = bf:allocate()
local f = io.open(path, "rb")
out("RESULT", off, en, bf:size() == size, f:seek("end") == size, bf:check())
]], { "mremap", 1, "ENOMEM" }, path)
      assert.equal(1, injected, raw)
      assert.equal(0, status)
      assert.same({ { "nil", "12", "true", "true", "true" } },
                  tagged(lines, "RESULT"))
    end)
  end)

  describe("flush, sync and control data", function()
    it("flush returns nil, message, errno when the journal's write or "
       .. "fdatasync fails, then succeeds", function()
      for _, call in ipairs({ "pwritev", "fdatasync" }) do
        local lines, status, injected, raw = child(dir, PRELUDE .. [[
local bf = assert(fmap.create(path))
fill(bf, bf:allocate(), 1, 7)
out("FLUSH", bf:flush())
out("AGAIN", bf:flush(), bf:check())
]], { call, 0, "EIO" }, path)
        assert.equal(1, injected, raw)
        assert.equal(0, status)
        assert.same({ { "nil", path .. ":", "Input/output", "error", "5" } },
                    tagged(lines, "FLUSH"))
        assert.same({ { "true", "true" } }, tagged(lines, "AGAIN"))
      end
    end)

    it("a durable commit that writes its new blocks straight in and then "
       .. "fails rolls back exactly", function()
      -- 300 blocks written before begin (a) and 300 allocated before it
      -- (b), all uncommitted; the transaction writes both and allocates
      -- 300 more (c), past the 1 MiB a commit writes straight in; the
      -- journal's write fails
      local lines, status, injected, raw = child(dir, PRELUDE .. [[
local bf = assert(fmap.create(path))
assert(bf:flush())
local a, b, c = {}, {}, {}
for i = 1, 300 do a[i] = bf:allocate(); fill(bf, a[i], 1, 1) end
for i = 1, 300 do b[i] = bf:allocate() end
bf:begin()
for i = 1, 300 do fill(bf, a[i], 1, 2); fill(bf, b[i], 1, 2) end
for i = 1, 300 do c[i] = bf:allocate(); fill(bf, c[i], 1, 2) end
out("COMMIT", bf:commit())
bf:rollback()
local function ok (set, byte)
  for _, o in ipairs(set) do if not holds(bf, o, 1, byte) then return false end end
  return true
end
out("ROLLEDBACK", ok(a, 1), ok(b, 0), bf:stats().used_blocks, bf:check())
out("FLUSH", bf:flush())
bf:close()
bf = assert(fmap.open(path))
out("REOPENED", ok(a, 1), ok(b, 0), bf:stats().used_blocks, bf:check())
]], { "pwritev", 1, "ENOSPC" }, path)
      assert.equal(1, injected, raw)
      assert.equal(0, status, raw)
      assert.same({ { "nil", path .. ":", "No", "space", "left", "on",
                      "device", "28" } }, tagged(lines, "COMMIT"))
      assert.same({ { "true", "true", "600", "true" } },
                  tagged(lines, "ROLLEDBACK"))
      assert.same({ { "true" } }, tagged(lines, "FLUSH"))
      assert.same({ { "true", "true", "600", "true" } },
                  tagged(lines, "REOPENED"))
    end)

    it("refuses every commit after the file's sync fails with blocks "
       .. "written ahead; the file keeps the last commit", function()
      local _, st0, _, raw0 = child(dir, PRELUDE .. [[
local bf = assert(fmap.create(path))
fill(bf, bf:allocate(), 1, 7)
assert(bf:close())
]], nil, path)
      assert.equal(0, st0, raw0)
      -- the commit's first fdatasync starts the journal, its second is
      -- the file's, for the blocks spilled
      local lines, status, injected, raw = child(dir, PRELUDE .. [[
local bf = assert(fmap.open(path))
bf:spill(16 * 4096)
bf:begin()
for i = 1, 100 do fill(bf, bf:allocate(), 1, 9) end
out("AHEAD", bf:stats().direct_blocks > 0)
local ok, msg, en = bf:commit()
out("COMMIT", ok, en)
ok, msg, en = bf:commit()
out("AGAIN", ok, en)
out("MESSAGE", (msg:gsub(" ", "_")))
bf:rollback()
-- transaction's failed commit gives the same message, through its rollback
local hooked = 0
bf:on_rollback(bf, function () hooked = hooked + 1; error("hook") end)
ok, msg, en = bf:transaction(function () fill(bf, 4096, 1, 8) end)
out("TXN", ok, en, hooked, bf:in_transaction())
out("TXNMESSAGE", (msg:gsub(" ", "_")))
out("CLOSE", (bf:close()))
bf = assert(fmap.open(path))
out("REOPENED", bf:stats().used_blocks, holds(bf, 4096, 1, 7), bf:check())
]], { "fdatasync", 1, "EIO" }, path)
      assert.equal(1, injected, raw)
      assert.equal(0, status, raw)
      assert.same({ { "true" } }, tagged(lines, "AHEAD"))
      assert.same({ { "nil", "5" } }, tagged(lines, "COMMIT"))
      assert.same({ { "nil", "5" } }, tagged(lines, "AGAIN"))
      assert.matches("cannot_commit:_a_sync_of_the_file_failed_after_blocks_"
                     .. "were_written_into_it_ahead_of_the_commit;_the_file_"
                     .. "holds_the_last_commit_%(close_it_and_open_it_again:_"
                     .. "a_rollback_does_not_end_this%)$",
                     tagged(lines, "MESSAGE")[1][1])
      -- the hook that raised is a warning; the failure is what returns
      assert.same({ { "nil", "5", "1", "false" } }, tagged(lines, "TXN"))
      assert.equal(tagged(lines, "MESSAGE")[1][1],
                   tagged(lines, "TXNMESSAGE")[1][1])
      assert.same({ { "nil" } }, tagged(lines, "CLOSE"))
      assert.same({ { "1", "true", "true" } }, tagged(lines, "REOPENED"))
    end)

    it("sync and set_control_data return nil, message, errno when the "
       .. "journal's write fails; the control data is set", function()
      local lines, _, injected, raw = child(dir, PRELUDE .. [[
local bf = assert(fmap.create(path))
fill(bf, bf:allocate(), 1, 7)
out("SYNC", bf:sync())
local ok, msg, en = bf:set_control_data("root=1")
out("CTL", ok, en, bf:control_data())
out("NOSYNC", bf:set_control_data_nosync("root=2"), bf:control_data())
bf:close()
out("REOPENED", fmap.open(path):control_data())
]], { "pwritev", 0, "ENOMEM", 2 }, path)
      assert.equal(2, injected, raw)
      assert.same({ { "nil", path .. ":", "Cannot", "allocate", "memory",
                      "12" } }, tagged(lines, "SYNC"))
      assert.same({ { "nil", "12", "root=1" } }, tagged(lines, "CTL"))
      assert.same({ { "true", "root=2" } }, tagged(lines, "NOSYNC"))
      assert.same({ { "root=2" } }, tagged(lines, "REOPENED"))
    end)
  end)

  describe("open, create and close", function()
    local OPEN = PRELUDE .. [[
local base = path:gsub("%.fmap$", ".base")     -- not counted by open,
local bf = assert(fmap.create(base))            -- which counts ".fmap"
fill(bf, bf:allocate(), 1, 5)
bf:close()
assert(os.rename(base, path))
local r, msg, en = fmap.open(path, { readonly = arg[2] == "ro" })
out("OPEN", r, en, msg)
r = fmap.open(path)                               -- nothing stayed locked
out("AGAIN", r ~= nil, r and r:check(), r and holds(r, 4096, 1, 5))
]]
    for _, c in ipairs({ { "open", "EACCES", 13 }, { "open", "EMFILE", 24 },
                         { "flock", "EINTR", 4 }, { "mmap", "ENOMEM", 12 } })
    do
      it("open returns nil, message, errno when " .. c[1] .. " fails with "
         .. c[2] .. "; nothing stays open", function()
        -- a reader takes no flock (a lock on a byte, beside a writer)
        for _, mode in ipairs(c[1] == "flock" and { "rw" } or { "rw", "ro" })
        do
          local fault = { c[1], 0, c[2] }
          if c[1] ~= "open" then fault[2] = 1 end   -- past the create's
          local lines, status, injected, raw = child(dir, OPEN, fault,
                                                     path, mode)
          assert.equal(1, injected, raw)
          assert.equal(0, status, raw)
          local o = tagged(lines, "OPEN")[1]
          assert.same({ "nil", tostring(c[3]), path .. ":" },
                      { o[1], o[2], o[3] })
          assert.same({ { "true", "true", "true" } }, tagged(lines, "AGAIN"))
        end
      end)
    end

    for _, c in ipairs({ { "ftruncate", "EIO", 5 },
                         { "posix_fallocate", "ENOSPC", 28 },
                         { "mmap", "ENOMEM", 12 }, { "open", "EACCES", 13 } })
    do
      it("create returns nil, message, errno when " .. c[1] .. " fails; "
         .. "nothing stays locked", function()
        local lines, status, injected, raw = child(dir, PRELUDE .. [[
local r, msg, en = fmap.create(path)
out("CREATE", r, en, msg)
r = assert(fmap.create(path))
out("AGAIN", r:check(), r:size())
]], { c[1], 0, c[2] }, path)
        assert.equal(1, injected, raw)
        assert.equal(0, status, raw)
        local o = tagged(lines, "CREATE")[1]
        assert.same({ "nil", tostring(c[3]), path .. ":" }, { o[1], o[2], o[3] })
        assert.same({ { "true", "4096" } }, tagged(lines, "AGAIN"))
      end)
    end

    it("close returns nil, message, errno when the trim fails; the file "
       .. "is closed and opens with everything", function()
      local lines, status, injected, raw = child(dir, PRELUDE .. [[
local bf = assert(fmap.create(path))
local off = bf:allocate_blocks(3)
fill(bf, off, 3, 42)
bf:set_control_data("kept")
local ok, msg, en = bf:close()
out("CLOSE", ok, en, tostring(bf))
bf = assert(fmap.open(path))
out("REOPENED", bf:check(), holds(bf, off, 3, 42), bf:control_data(),
    bf:size() // 4096)
]], { "ftruncate", 2, "EIO" }, path)   -- create's, growth's, then close's
      assert.equal(1, injected, raw)
      assert.equal(0, status)
      assert.same({ { "nil", "5", "BlockFile", "(closed)" } },
                  tagged(lines, "CLOSE"))
      assert.same({ { "true", "true", "kept", "17" } },
                  tagged(lines, "REOPENED"))
    end)
  end)

  describe("a close whose commit fails", function()
    -- the whole line of out that starts with tag
    local function line_of (lines, tag)
      for _, l in ipairs(lines) do
        if l:sub(1, #tag + 1) == tag .. " " then return l end
      end
    end

    -- The file: a block of 5s committed by a flush, then changed to 6s
    -- and a second block of 7s, uncommitted. The fault fails the third
    -- fdatasync: create's and the flush's pass, close's commit fails.
    local SETUP = PRELUDE .. [[
local bf = assert(fmap.create(path))
local a = bf:allocate()
fill(bf, a, 1, 5)
assert(bf:flush())
fill(bf, a, 1, 6)
local b = bf:allocate()
fill(bf, b, 1, 7)
local function reopened ()
  local r = assert(fmap.open(path))
  local function has (off, byte)   -- false past the allocated area
    local ok, yes = pcall(holds, r, off, 1, byte)
    return ok and yes
  end
  out("REOPENED", r:check(), has(a, 5), has(a, 6), has(b, 7), has(b, 8))
  r:close()
end
]]
    local FAULT = { "fdatasync", 2, "ENOSPC" }

    -- Runs SETUP then code in a child with fault (FAULT by default), which
    -- must exit 0 having injected injected faults (1 by default); returns
    -- its lines and its whole output.
    local function closing (code, fault, injected)
      local lines, status, n, raw = child(dir, SETUP .. code, fault or FAULT,
                                          path)
      assert.equal(injected or 1, n, raw)
      assert.equal(0, status, raw)
      return lines, raw
    end

    it("keeps the BlockFile open with every change, and a second close "
       .. "commits them", function()
      local lines, raw = closing([[
local ok, msg, en = bf:close()
out("CLOSE", ok, en, bf:is_open())
out("MSG", msg)
out("KEPT", bf:check(), holds(bf, a, 1, 6), holds(bf, b, 1, 7))
fill(bf, b, 1, 8)                                -- still usable
out("AGAIN", bf:close(), bf:is_open())
reopened()
]])
      assert.same({ { "nil", "28", "true" } }, tagged(lines, "CLOSE"))
      assert.equal("MSG " .. path .. ": No space left on device (the "
                   .. "BlockFile stays open, nothing lost: close it again to "
                   .. "retry)", line_of(lines, "MSG"), raw)
      assert.same({ { "true", "true", "true" } }, tagged(lines, "KEPT"))
      assert.same({ { "true", "false" } }, tagged(lines, "AGAIN"))
      assert.same({ { "true", "false", "true", "false", "true" } },
                  tagged(lines, "REOPENED"))
    end)

    it("closes when a transaction was open: its rollback is done, and "
       .. "the file holds the last commit", function()
      local lines = closing([[
bf:begin()
fill(bf, a, 1, 9)
local ok, msg, en = bf:close()
out("CLOSE", ok, en, bf:is_open())
reopened()
]])
      assert.same({ { "nil", "28", "false" } }, tagged(lines, "CLOSE"))
      -- the block of 7s was never committed: past the committed end
      assert.same({ { "true", "true", "false", "false", "false" } },
                  tagged(lines, "REOPENED"))
    end)

    it("of a <close> variable raises at the line that ended the scope, "
       .. "closed, the changes lost", function()
      local lines, raw = closing([[
local ok, e = pcall(function ()
  local c <close> = bf
  fill(bf, b, 1, 8)
end)
out("SCOPE", ok, bf:is_open())
out("ERR", e)
reopened()
]])
      assert.same({ { "false", "false" } }, tagged(lines, "SCOPE"))
      assert.matches("^ERR [^ ]*child%-%d+%.lua:%d+: the close of a <close> "
                     .. "BlockFile failed: " .. path:gsub("%p", "%%%0")
                     .. ": No space left on device %(what changed since the "
                     .. "last commit is lost; bf:close%(%) before the scope "
                     .. "ends keeps the file open on such a failure, to "
                     .. "retry%)$", line_of(lines, "ERR"), raw)
      assert.same({ { "true", "true", "false", "false", "false" } },
                  tagged(lines, "REOPENED"))
    end)

    it("of a <close> variable on an error exit reports that error, and "
       .. "warns of its own", function()
      local lines, raw = closing([[
warn("@on")
local ok, e = pcall(function ()
  local c <close> = bf
  error("the script's own", 0)
end)
out("SCOPE", ok, e, bf:is_open())
reopened()
]])
      assert.same({ { "false", "the", "script's", "own", "false" } },
                  tagged(lines, "SCOPE"))
      assert.matches("\nLua warning: fmap: the close of a <close> "
                     .. "BlockFile failed: [^\n]*No space left on device %(what "
                     .. "changed since the last commit is lost", raw)
      assert.same({ { "true", "true", "false", "false", "false" } },
                  tagged(lines, "REOPENED"))
    end)

    it("of a collected BlockFile drops the changes and lets the file go",
       function()
      local lines = closing([[
bf = nil
collectgarbage()
collectgarbage()
reopened()                           -- not locked any more
]])
      assert.same({ { "true", "true", "false", "false", "false" } },
                  tagged(lines, "REOPENED"))
    end)

    it("is none in remove, which commits nothing: a full disk does not "
       .. "keep a file from going", function()
      local lines = closing([[
out("REMOVE", bf:remove(), bf:is_open(), io.open(path) == nil,
    io.open(path .. "-wal") == nil)
]], { "fdatasync", 2, "ENOSPC", 0 }, 0)   -- every later one fails
      assert.same({ { "true", "false", "true", "true" } },
                  tagged(lines, "REMOVE"))
    end)
  end)

  describe("a close whose commit fails, after a flush", function()
    -- then: a commit of the control data (not yet synced); or 1.6 MB of
    -- new blocks, which the close writes into the file ahead of its
    -- commit; or a change, then a transaction left open. The fdatasync
    -- that follows fails.
    local M = PRELUDE .. [[
local bf = assert(fmap.create(path))
local a = bf:allocate()
fill(bf, a, 1, 5)
assert(bf:flush())
local big
if arg[2] == "ctl" then
  assert(bf:set_control_data("ctl"))
  local ok, e = pcall(function () local c <close> = bf end)
  out("ERR", e)
elseif arg[2] == "big" then
  big = bf:allocate_blocks(400)
  fill(bf, big, 400, 3)
  out("CLOSE", bf:close())
  if bf:is_open() then out("AGAIN", bf:close()) end
else
  fill(bf, a, 1, 6)
  bf:begin()
  fill(bf, a, 1, 9)
  out("CLOSE", bf:close())
end
out("OPEN", bf:is_open())
bf = assert(fmap.open(path))
out("REOPENED", bf:check(), holds(bf, a, 1, 5), big ~= nil and holds(bf, big, 400, 3))
]]

    -- M for variant, its fdatasync after the flush's failing once; the
    -- child must exit 0. Returns its lines and its whole output.
    local function run (variant)
      local lines, status, injected, raw = child(dir, M,
        { "fdatasync", 2, "EIO" }, path, variant)
      assert.equal(1, injected, raw)
      assert.equal(0, status, raw)
      return lines, raw
    end

    it("of a bulk load, whose blocks went into the file ahead, stays open "
       .. "and writes them again when retried", function()
      local lines, raw = run("big")
      assert.truthy(raw:find("\nCLOSE nil " .. path .. ": Input/output "
                             .. "error (the BlockFile stays open, nothing "
                             .. "lost: close it again to retry) 5\n", 1, true),
                    raw)
      assert.same({ { "true" } }, tagged(lines, "AGAIN"))
      assert.same({ { "false" } }, tagged(lines, "OPEN"))
      assert.same({ { "true", "true", "true" } }, tagged(lines, "REOPENED"))
    end)

    it("closes after the rollback of an open transaction, saying that what "
       .. "changed before it is lost", function()
      local lines, raw = run("txn")
      assert.truthy(raw:find("\nCLOSE nil " .. path .. ": Input/output "
                             .. "error; what changed since the last commit "
                             .. "is lost 5\n", 1, true), raw)
      assert.same({ { "false" } }, tagged(lines, "OPEN"))
      assert.same({ { "true", "true", "false" } }, tagged(lines, "REOPENED"))
    end)

    it("of a <close> variable with nothing left to commit says nothing is "
       .. "lost", function()
      local lines, raw = run("ctl")
      assert.truthy(raw:find("the close of a <close> BlockFile failed: "
                             .. path .. ": Input/output error\n", 1, true),
                    raw)
      assert.same({ { "false" } }, tagged(lines, "OPEN"))
      assert.same({ { "true", "true", "false" } }, tagged(lines, "REOPENED"))
      local bf = assert(fmap.open(path))
      assert.equal("ctl", bf:control_data())
      bf:close()
    end)
  end)

  describe("a flush whose sync fails", function()
    it("syncs again when retried, the commits before it included",
       function()
      -- sync commits without waiting for the disk; the flush's fdatasync
      -- then fails twice: a retry that skipped it would say true for
      -- frames no sync has covered
      local lines, status, injected, raw = child(dir, PRELUDE .. [[
local bf = assert(fmap.create(path))
fill(bf, bf:allocate(), 1, 7)
assert(bf:sync())
local r1, r2, r3 = { bf:flush() }, { bf:flush() }, { bf:flush() }
out("FLUSH", r1[1], r1[3], r2[1], r2[3], r3[1])
bf:close()
]], { "fdatasync", 1, "EIO", 2 }, path)
      assert.equal(2, injected, raw)
      assert.equal(0, status, raw)
      assert.same({ { "nil", "5", "nil", "5", "true" } },
                  tagged(lines, "FLUSH"))
    end)
  end)

  describe("a first commit whose sync of the file fails", function()
    it("after blocks were spilled into the file, no later commit counts "
       .. "on them", function()
      -- a new file's first commit fsyncs it before its journal starts;
      -- blocks spilled before may be lost with that failed writeback
      local lines, status, injected, raw = child(dir, PRELUDE .. [[
local bf = assert(fmap.create(path))
bf:spill(8192)
bf:begin()
for i = 1, 64 do fill(bf, bf:allocate(), 1, i) end
out("DIRECT", bf:stats().direct_blocks > 0)
local r1, r2 = { bf:commit() }, { bf:commit() }
out("COMMIT", r1[1], r1[3], r2[1], r2[3])
out("MSG", r2[2])
]], { "fsync", 0, "EIO" }, path)
      assert.equal(1, injected, raw)
      assert.equal(0, status, raw)
      assert.same({ { "true" } }, tagged(lines, "DIRECT"))
      assert.same({ { "nil", "5", "nil", "5" } }, tagged(lines, "COMMIT"))
      assert.truthy(raw:find("cannot commit: a sync of the file failed after "
                             .. "blocks were written into it ahead", 1, true),
                    raw)
    end)
  end)

  describe("a file cut short while a commit reads its map", function()
    -- Another process cuts the file (to 2 blocks of 64 KiB) just after
    -- the commit's look at its size: the map then faults under the
    -- commit, whose frames would hold the zeros that replace it. The
    -- commit fails instead, and the journal keeps the last one.
    local CUT = PRELUDE .. [[
local bf = assert(fmap.create(path, 65536))
local a = bf:allocate(); bf:with(a, 1, function(v) v:fill(0x41) end)
local b = bf:allocate(); bf:with(b, 1, function(v) v:fill(0x42) end)
assert(bf:flush())
bf:with(b, 1, function(v) v:write(0, "x") end)
local ok, msg, en
if arg[2] == "close" then ok, msg, en = bf:close()
else      -- the call that meets the fault raises, as every later use
  ok, msg = pcall(bf.flush, bf)
  en = 5
end
out("COMMIT", ok and true or nil, en, bf:is_open())
out("MSG", msg)
if bf:is_open() then bf:close() end
]]
    for _, how in ipairs { "close", "flush" } do
      it("fails a " .. how .. " rather than commit zeros; the journal "
         .. "keeps the last commit", function()
        local lines, status, _, raw = child(dir, CUT, { "none",
          cut = { 5, 131072 } }, path, how)
        assert.equal(0, status, raw)
        assert.truthy(raw:find("faultinject: cut " .. path, 1, true), raw)
        assert.same({ { "nil", "5", how == "flush" and "true" or "false" } },
                    tagged(lines, "COMMIT"), raw)
        local msg
        for _, l in ipairs(lines) do
          if l:sub(1, 4) == "MSG " then msg = l end
        end
        assert.truthy(msg:find("the file was truncated to 131072 bytes "
                               .. "under its map", 1, true), raw)
        local bf = assert(fmap.open(path))
        assert.is_true(bf:check())
        assert.equal(0x41, bf:with(65536, 1, function(v) return v:u8(0) end))
        assert.equal(0x42, bf:with(131072, 1, function(v) return v:u8(0) end))
        assert.equal(0x42, bf:with(131072, 1, function(v) return v:u8(100) end))
        bf:close()
      end)
    end
  end)

  describe("repairing a lost growth", function()
    -- A file whose header says 5 blocks while the file holds 2: the
    -- growth's new size did not reach the disk. Repair extends it by 3
    -- blocks, 12288 bytes, or fails having changed and reserved nothing.
    local function lost_growth ()
      local bf = assert(fmap.create(path))
      local a = bf:allocate()
      bf:with(a, 1, function(v) v:write(0, "flushed") end)
      bf:allocate_blocks(3)
      bf:close()
      h.writefile(path, h.readfile(path):sub(1, 2 * BS))
    end
    local function disk_blocks ()   -- what the file takes on disk
      return tonumber((h.run("stat -c %b " .. path)))
    end
    local REPAIR = PRELUDE .. [[
local bf, msg, en = fmap.open(path, { repair = true })
if bf then out("REPAIR", "ok", bf:size(), bf:check()) bf:close()
else out("REPAIR", "nil", en, msg) end
]]

    it("refuses when the disk has less free than the growth, reserving "
       .. "nothing", function()
      lost_growth()
      local before = disk_blocks()
      local lines, status, _, raw = child(dir, REPAIR,
                                          { "none", free = 8192 }, path)
      assert.equal(0, status, raw)
      assert.same({ { "nil", "28", path .. ":", "restoring", "a", "lost",
                      "growth", "needs", "12288", "bytes", "(the", "header",
                      "says", "the", "file", "is", "20480),", "the", "disk",
                      "has", "8192", "free" } }, tagged(lines, "REPAIR"))
      assert.equal(2 * BS, #h.readfile(path))
      assert.equal(before, disk_blocks())
      lines = child(dir, REPAIR, { "none", free = 12288 }, path)
      assert.same({ { "ok", "20480", "true" } }, tagged(lines, "REPAIR"))
    end)

    it("goes on when the disk cannot tell its free space", function()
      lost_growth()
      local lines, _, injected, raw = child(dir, REPAIR,
                                            { "fstatvfs", 0, "ENOSYS" }, path)
      assert.equal(1, injected, raw)
      assert.same({ { "ok", "20480", "true" } }, tagged(lines, "REPAIR"))
    end)

    for _, c in ipairs({ { "fallocate", "ENOSPC", 28 },
                         { "ftruncate", "EIO", 5 } }) do
      it("returns nil, message, errno when " .. c[1] .. " fails, and gives "
         .. "back what was reserved", function()
        lost_growth()
        local before = disk_blocks()
        local lines, status, injected, raw = child(dir, REPAIR,
                                                   { c[1], 0, c[2] }, path)
        assert.equal(1, injected, raw)
        assert.equal(0, status, raw)
        local o = tagged(lines, "REPAIR")[1]
        assert.same({ "nil", tostring(c[3]), path .. ":" },
                    { o[1], o[2], o[3] })
        assert.equal(2 * BS, #h.readfile(path))
        -- after a failed ftruncate, the 12 KiB fallocate took are back
        assert.equal(before, disk_blocks())
        lines = child(dir, REPAIR, nil, path)
        assert.same({ { "ok", "20480", "true" } }, tagged(lines, "REPAIR"))
      end)
    end
  end)

  describe("at random points of a workload", function()
    -- Allocates (growing the file), frees, writes, sets control data,
    -- syncs and flushes, with a fault somewhere; after every step the
    -- BlockFile checks, and a failed call changed nothing. Prints the
    -- model at the end, which the parent finds again in the file.
    local WORKLOAD = PRELUDE .. [[
math.randomseed(tonumber(arg[2]))
local bf, msg, en = fmap.create(path)
if not bf then out("CREATEFAIL", en, msg) return end
local model, ctl, count = {}, "", 0
-- what the last commit holds: a close that fails leaves the file so
local committed, cctl = {}, ""
local function commit_point ()
  committed, cctl = {}, ctl
  for off, e in pairs(model) do committed[off] = e end
end
for step = 1, 80 do
  local r = math.random()
  local before = stats(bf)
  if r < 0.45 then
    local n = math.random() < 0.6 and 1 or math.random(2, 24)
    local off, m, e = bf:allocate_blocks(n)
    if off then
      local byte = math.random(1, 255)
      fill(bf, off, n, byte)
      model[off] = { n, byte }
      count = count + 1
    else
      assert(type(m) == "string" and math.type(e) == "integer", m)
      assert(stats(bf) == before, "a failed allocate changed the file")
      out("FAIL allocate", e)
    end
  elseif r < 0.65 and count > 0 then
    local offs = {}
    for o in pairs(model) do offs[#offs + 1] = o end
    table.sort(offs)
    local o = offs[math.random(#offs)]
    bf:free(o, model[o][1])
    model[o] = nil
    count = count - 1
  elseif r < 0.75 then
    local s = "ctl" .. step
    local ok, m, e = bf:set_control_data(s)
    if not ok then out("FAIL set_control_data", e) end
    assert(bf:control_data() == s)
    ctl = s
    if ok then commit_point() end
  elseif r < 0.9 then
    local ok, m, e = bf:flush()
    if not ok then
      assert(math.type(e) == "integer", m)
      assert(stats(bf) == before, "a failed flush changed the file")
      out("FAIL flush", e)
    else
      commit_point()
    end
  else
    local ok, m, e = bf:sync()
    if not ok then out("FAIL sync", e) else commit_point() end
  end
  assert(bf:check())
end
for off, e in pairs(model) do assert(holds(bf, off, e[1], e[2])) end
local function show (tag, m, c)
  local parts = {}
  for off, e in pairs(m) do parts[#parts + 1] = off .. ":" .. e[1] .. ":" .. e[2] end
  out(tag, c == "" and "-" or c, table.concat(parts, ","))
end
show("MODEL", model, ctl)
show("COMMITTED", committed, cctl)
local ok, m, e = bf:close()
-- a commit that failed kept the BlockFile open with everything: the
-- fault fails one call, so closing again commits it
if not ok and bf:is_open() then ok, m, e = bf:close() end
out("CLOSE", ok or e)
]]

    -- whether bf holds a model the child printed
    local function holds_model (bf, model)
      if (model[1] == "-" and "" or model[1]) ~= bf:control_data() then
        return false
      end
      for entry in (model[2] or ""):gmatch("[^,]+") do
        local off, n, byte = entry:match("(%d+):(%d+):(%d+)")
        off, n, byte = tonumber(off), tonumber(n), tonumber(byte)
        local ok, c = pcall(bf.with, bf, off, n, function(v)
          return v:compare(0, string.rep(string.char(byte), n * BS))
        end)
        if not ok or c ~= 0 then return false end
      end
      return true
    end

    -- what the parent finds in the file after the child is gone: all of
    -- the model, or, when the close failed, what the last commit held
    local function verify (lines, raw)
      local model = tagged(lines, "MODEL")[1]
      if tagged(lines, "CREATEFAIL")[1] then return end
      assert(model, "the child did not finish:\n" .. raw)
      local bf, msg = fmap.open(path)
      assert(bf, msg)
      assert.is_true(bf:check())
      local closed = tagged(lines, "CLOSE")[1][1] == "true"
      assert(holds_model(bf, model) or not closed and
             holds_model(bf, tagged(lines, "COMMITTED")[1]), raw)
      bf:close()
    end

    it("keeps every file consistent and complete, whichever call fails",
       function()
      math.randomseed(SEED)
      local calls = { "ftruncate", "fallocate", "posix_fallocate", "mmap",
                      "mremap", "pwrite", "pwritev", "fdatasync", "fsync",
                      "open", "flock" }
      local errnos = { ftruncate = { "EIO", "EFBIG", "ENOSPC" },
                       fallocate = { "ENOSPC", "EDQUOT", "EIO" },
                       posix_fallocate = { "ENOSPC", "EIO" },
                       mmap = { "ENOMEM", "EAGAIN" },
                       mremap = { "ENOMEM", "EAGAIN" },
                       pwrite = { "EIO", "ENOSPC" },
                       pwritev = { "EIO", "ENOSPC" },
                       fdatasync = { "EIO", "ENOSPC" },
                       fsync = { "EIO", "ENOSPC" },
                       open = { "EACCES", "EMFILE" }, flock = { "EINTR" } }
      local budget = math.max(1, math.floor(200 * SCALE))
      local done = 0
      while done < budget do
        for _, call in ipairs(calls) do
          if done >= budget then break end
          local seed = math.random(1 << 30)
          -- how many calls this workload makes, then a fault at one
          local lines = child(dir, WORKLOAD, { call, 1 << 30, "EIO", 1,
                                               report = true }, path, seed)
          local n = 0
          for _, l in ipairs(lines) do
            n = tonumber(l:match("^faultinject: %S+: (%d+) calls")) or n
          end
          verify(lines, table.concat(lines, "\n"))
          os.remove(path)
          if n > 0 then
            local after = math.random(0, n - 1)
            local errno = errnos[call][math.random(#errnos[call])]
            local times = math.random() < 0.8 and 1 or 0   -- 0: for good
            local raw
            lines, _, _, raw = child(dir, WORKLOAD,
                                     { call, after, errno, times }, path, seed)
            for _, l in ipairs(lines) do
              -- the host's messages begin with the name it was run by
              assert(l:sub(1, #h.bin() + 1) ~= h.bin() .. ":"
                     and not l:match("ERROR"),
                     string.format("seed %d, %s after %d (%s): %s", seed, call,
                                   after, errno, raw))
            end
            verify(lines, string.format("seed %d, %s after %d (%s):\n%s",
                                        seed, call, after, errno, raw))
            os.remove(path)
            done = done + 1
          end
        end
      end
    end)
  end)
end)

-- A file cut short under its map (SIGBUS): the engine's handler replaces
-- the map with zeros and retires the BlockFile (fault.c, onbus). Each case
-- runs in a child fmap, so that a handler that failed would kill the child
-- and not the suite; the child prints what each call did.
describe("a map that loses its file (SIGBUS)", function()
  local path
  before_each(function() path = h.tmpname() end)
  after_each(function() os.remove(path) end)

  local PRELUDE = child_prelude("|") .. [[
-- the message of what f raises, without its position
local function err (f, ...)
  local ok, e = pcall(f, ...)
  if ok then return "no error" end
  return (tostring(e):gsub("^[^:]*:%d+: ", ""))
end
local function size ()
  local f = assert(io.open(path, "rb"))
  local n = f:seek("end")
  f:close()
  return n
end
]]

  -- Runs code after the prelude in a child; returns its output lines,
  -- its whole output and its exit status.
  local function child (code)
    local script = h.tmpname(".lua")
    h.writefile(script, PRELUDE .. code)
    local out, status = h.run(string.format("%s %s %s 2>&1", h.bin(), script,
                                            path))
    os.remove(script)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    return lines, out, status
  end

  local LOST = "attempt to use a BlockFile that lost its map (the file was "
               .. "truncated to %d bytes under its map of %d): close it"

  it("raises at the access that meets a truncation by the script itself, "
     .. "and at every use after", function()
    local lines, out, status = child [[
local bf = assert(fmap.create(path))
local off = bf:allocate()
local v = bf:get(off)
v:set_u64(0, 42)
out(v:u64(0), bf:size())
io.open(path, "w"):close()       -- the script empties its own file
out(err(v.u64, v, 0))
out(err(v.read, v, 0, 4))
out(err(bf.allocate, bf))
out(err(bf.get, bf, off))
out(tostring(v))
out(tostring(bf))
v:release()                      -- as after a free: nothing to do
out(bf:close(), size())
out(err(bf.allocate, bf))
]]
    assert.equal(0, status, out)
    local bytes = tonumber(lines[1]:match("|(%d+)$"))
    assert.equal("42|" .. bytes, lines[1])
    local view = "attempt to use a view of a BlockFile that lost its map "
                 .. "(offset 4096, 4096 bytes, acquired at "
    assert.equal(view, lines[2]:sub(1, #view), out)
    assert.equal(view, lines[3]:sub(1, #view), out)
    assert.equal(LOST:format(0, bytes), lines[4])
    assert.equal(LOST:format(0, bytes), lines[5])
    assert.equal("view (offset 4096, 4096 bytes, map lost)", lines[6])
    assert.equal("BlockFile (" .. path .. ", lost its map: the file was "
                 .. "truncated to 0 bytes under its map of " .. bytes
                 .. "; close it)", lines[7])
    -- close unmaps and leaves the file as the truncation left it
    assert.equal("true|0", lines[8])
    assert.equal("attempt to use a closed BlockFile", lines[9])
  end)

  it("retires a B+tree's file cut to half by another process; what was "
     .. "flushed before stays in the half that is left", function()
    local lines, out, status = child [[
local bf = assert(fmap.create(path))
local t = fmap.bptree.new(bf, 8, 8)
for i = 1, 20000 do t:add(string.pack(">I8", i), string.pack("<I8", i)) end
bf:flush()
local before = size()
local f = assert(io.open(path, "rb"))
local head = f:read(before // 2)
f:close()
assert(os.execute(("truncate -s %d %q"):format(before // 2, path)))
out(before, err(function () for _ in t:iterate() do end end))
out(err(t.get, t, string.pack(">I8", 7)))
out(err(t.add, t, string.pack(">I8", 0), "12345678"))
out(err(bf.with, bf, 4096, 1, function (v) return v:u32(0) end))
out(bf:close(), size() == before // 2)
f = assert(io.open(path, "rb"))
out(f:read("a") == head)
f:close()
]]
    assert.equal(0, status, out)
    local before = tonumber(lines[1]:match("^(%d+)|"))
    local lost = LOST:format(before // 2, before)
    assert.truthy(lines[1]:find("lost its map", 1, true), out)
    assert.equal(lost, lines[2])
    assert.equal(lost, lines[3])
    -- a block still inside the file: the whole BlockFile is retired
    assert.equal(lost, lines[4])
    assert.equal("true|true", lines[5])
    assert.equal("true", lines[6])
  end)

  it("raises from each kind of access that meets it", function()
    local lines, out, status = child [[
local calls = {
  u64 = function (v) return v:u64(8) end,
  set_u32 = function (v) v:set_u32(8, 1) end,
  read = function (v) return v:read(0, 16) end,
  write = function (v) v:write(0, "x") end,
  fill = function (v) v:fill(1) end,
  compare = function (v) return v:compare(0, "abc") end,
  copy = function (v) v:copy(0, v, 8, 8) end,
  unpack = function (v) return v:unpack("<I4I4", 0) end,
  pack = function (v) v:pack(0, "<I4", 7) end,
  hex = function (v) return v:hex(0, 16) end,
  search = function (v) return v:search(4, 8, 16, "key") end,
  insert_key = function (v)
    return v:insert_key(4, 8, 16, 10, "12345678", "abcdefgh")
  end,
  searcher = function (_, bf, off) return bf:searcher(4, 8, 16)(off, "k") end,
  entries = function (_, bf, off)
    local done = false
    local it = bf:entry_iterator(function ()
      if done then return nil end
      done = true
      return off, 8, 0, 16, 1
    end)
    return it()
  end,
  control_data = function (_, bf) return bf:control_data() end,
  set_control_data = function (_, bf) bf:set_control_data("abc") end,
}
local names = {}
for name in pairs(calls) do names[#names + 1] = name end
table.sort(names)
for _, name in ipairs(names) do
  local bf = assert(fmap.create(path))
  local off = bf:allocate()
  local v = bf:get(off)
  v:set_u32(4, 0)
  bf:set_control_data("some control data")
  io.open(path, "w"):close()
  local e = err(calls[name], v, bf, off)
  out(name, e:match("lost its map") and "raised" or e)
  v:release()
  out(name, bf:close())
  os.remove(path)
end
]]
    assert.equal(0, status, out)
    for _, line in ipairs(lines) do
      assert.truthy(line:match("|raised$") or line:match("|true$"), out)
    end
    assert.equal(32, #lines, out)
  end)

  it("finds a cut before a growth, a flush or a close, and never extends "
     .. "the file back with zeros", function()
    local lines, out, status = child [[
local bf = assert(fmap.create(path))
for i = 1, 8 do bf:allocate() end         -- the map full: the next grows
local before = bf:size()
io.open(path, "w"):close()
out(err(bf.allocate_blocks, bf, 64))      -- the growth would hide the cut
out(size())
out(bf:close())
bf = assert(fmap.create(path))
bf:allocate()
assert(os.execute(("truncate -s 4096 %q"):format(path)))
out(err(bf.flush, bf))
out(bf:close())
bf = assert(fmap.create(path))
for i = 1, 20 do bf:allocate() end
local cut = bf:size() // 2
assert(os.execute(("truncate -s %d %q"):format(cut, path)))
out(bf:close())                           -- would trim, that is extend
out(size() == cut, fmap.open(path) == nil)
]]
    assert.equal(0, status, out)
    assert.truthy(lines[1]:find("^attempt to use a BlockFile that lost its "
                                .. "map %(the file was truncated to 0 bytes"),
                  out)
    assert.equal("0", lines[2])
    assert.equal("true", lines[3])
    assert.truthy(lines[4]:find("lost its map (the file was truncated to "
                                .. "4096 bytes", 1, true), out)
    assert.equal("true", lines[5])
    assert.truthy(lines[6]:find("^nil|" .. path:gsub("%p", "%%%0")
                                .. ": the file was truncated to %d+ bytes "
                                .. "under its map of %d+|5$"), out)
    assert.equal("true|true", lines[7])
  end)

  it("raises for the field beside a search's hit, read last", function()
    local lines, out, status = child [[
local bf = assert(fmap.create(path, 8192))   -- a block is two pages
local off = bf:allocate()
local v = bf:get(off)
v:write(0, "key00001")                      -- the key on the first page
v:set_u64(4096, 42)                         -- its field on the second
out(v:bsearch(0, 1, 16, "key00001", false, 4096))
assert(os.execute(("truncate -s %d %q"):format(off + 4096, path)))
out(err(v.bsearch, v, 0, 1, 16, "key00001", false, 4096))
v:release()
out(bf:close())
]]
    assert.equal(0, status, out)
    assert.equal("0|true|42", lines[1])
    assert.truthy(lines[2]:find("^attempt to use a view of a BlockFile that "
                                .. "lost its map"), out)
    assert.equal("true", lines[3])
  end)

  it("raises for a compare with a view whose file was cut, and for a "
     .. "list's item, which it does not call damage", function()
    local lines, out, status = child [[
local a = assert(fmap.anonymous())
local va = a:get(a:allocate())
local bf = assert(fmap.create(path))
local vb = bf:get(bf:allocate())
io.open(path, "w"):close()
out(err(va.compare, va, 0, vb))
vb:release()
bf:close()
bf = assert(fmap.create(path))
local l = fmap.mmlist.new(bf)
for i = 1, 5000 do l:append(("x"):rep(10)) end
assert(os.execute(("truncate -s %d %q"):format(bf:size() // 2, path)))
out(err(function () for _ in l:iterate() do end end))
out(bf:close())
va:release()
a:close()
]]
    assert.equal(0, status, out)
    assert.truthy(lines[1]:find("^attempt to use a view of a BlockFile that "
                                .. "lost its map"), out)
    assert.truthy(lines[2]:find("lost its map", 1, true), out)
    assert.is_nil(lines[2]:find("corrupt", 1, true), out)
    assert.equal("true", lines[3])
  end)

  it("retires a read-only BlockFile too", function()
    local lines, out, status = child [[
local bf = assert(fmap.create(path))
bf:allocate()
bf:close()
local ro = assert(fmap.open(path, { readonly = true }))
local v = ro:get(4096)
assert(os.execute(("truncate -s 4096 %q"):format(path)))
out(err(v.read, v, 0, 8))
out(err(ro.free_list, ro))
out(ro:close())
]]
    assert.equal(0, status, out)
    assert.truthy(lines[1]:find("^attempt to use a view of a BlockFile that "
                                .. "lost its map"), out)
    assert.truthy(lines[2]:find("lost its map (the file was truncated to "
                                .. "4096 bytes", 1, true), out)
    assert.equal("true", lines[3])
  end)

  it("leaves any other SIGBUS its default action", function()
    local _, out, status = child [[
local pid = assert(io.open("/proc/self/stat")):read("n")
local bf <close> = assert(fmap.create(path))
os.execute("kill -BUS " .. pid)
out("survived")
]]
    assert.is_nil(out:find("survived", 1, true), out)
    -- killed by SIGBUS (128 + 7, as sh says), or under the sanitizer build
    -- by the handler that was there before fmap's: AddressSanitizer's
    if not out:find("AddressSanitizer: BUS", 1, true) then
      assert.equal(128 + 7, status, out)
    end
  end)

  it("refuses a sparse file a full disk cannot fill, and retires a "
     .. "read-only one at the hole it cannot read", function()
    local mnt = h.tmpname(".mnt")
    if not (os.execute("mkdir -p " .. mnt) and
            os.execute("mount -t tmpfs -o size=1m tmpfs " .. mnt
                       .. " 2>/dev/null")) then
      os.execute("rmdir " .. mnt)
      pending("needs a small tmpfs: mount -t tmpfs (root)")
      return
    end
    local lines, out, status = child(([[
local bf = assert(fmap.create(path))
for _ = 1, 63 do bf:allocate() end
bf:close()
local sparse = %q .. "/t.fmap"
assert(os.execute("cp --sparse=always " .. path .. " " .. sparse))
os.execute("dd if=/dev/zero of=%s/filler bs=4096 2>/dev/null")
out(fmap.open(sparse))
local ro = assert(fmap.open(sparse, { readonly = true }))
out(err(ro.get, ro, 8 * 4096))
out(ro:close())
]]):format(mnt, mnt))
    os.execute("umount " .. mnt .. " && rmdir " .. mnt)
    assert.equal(0, status, out)
    assert.truthy(lines[1]:find("^nil|.*/t%.fmap: No space left on device|28$"),
                  out)
    assert.equal("attempt to use a BlockFile that lost its map (a page of "
                 .. "its map could not be read or written: an I/O error, or "
                 .. "no disk space for a hole): close it", lines[2])
    assert.equal("true", lines[3])
  end)
end)
