-- Read-only opens beside a writer. A writer child runs random transactions
-- over a B+tree whose values name blobs of a varchar, a list and the
-- guide's hash table (spec/txn_workload.lua), closing and opening the
-- file again now and then, and logs what each commit changes to a history
-- file before it commits; reader children open the file read-only again
-- and again, read the commit counter in the control data, verify every
-- structure and compare what they read (every entry, blob and item, and
-- lookups at random) with the history replayed up to that commit
-- (spec/readers_workload.lua). A reader holds some opens while a second
-- reader of its own opens at a later commit, and must read the same
-- again. Then, each in its own process or not: a reader killed with
-- SIGKILL holds no checkpoint up; a writer opening beside readers adopts
-- the journal the last writer left; two readers, or a reader and a
-- writer, in one process; and the tools, run beside a writer, say that
-- they read a snapshot. Children wait on a fifo, never on a timer.
-- FMAP_SEED=n replays the transactions and the readers' draws;
-- FMAP_FUZZ_SCALE=x multiplies the readers' checks.
local W = require "txn_workload"
local bptree = require "fmap.bptree"
local mmlist = require "fmap.mmlist"

local SCALE = tonumber(os.getenv("FMAP_FUZZ_SCALE")) or 1
-- the sanitizer build runs several times slower: fewer checks there
local SANITIZE = h.bin():find("sanitize", 1, true) ~= nil
local READERS = 3
local CHECKS = math.max(READERS * 1000,
                        math.floor((SANITIZE and 60000 or 300000) * SCALE))
-- distinct commits each reader sees at least
local COMMITS = 5
-- past this, the readers let the writer checkpoint (readers_workload.lua)
local CAP = 8 << 20
local LIMIT = 4 << 20   -- a checkpoint once the journal passes it

local exists = require("fmap.cli").exists

local function size_of (path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

local function key (i) return string.pack(">I8", i) end

-- Removes a file and its journal.
local function remove (path)
  os.remove(path)
  os.remove(path .. "-wal")
end

-- A folder for the children's scripts and files, in memory if it can.
local dir
local function folder ()
  if dir then return dir end
  local probe = io.open("/dev/shm/.fmap-probe", "w")
  if probe then probe:close(); os.remove("/dev/shm/.fmap-probe") end
  dir = (probe and "/dev/shm" or os.getenv("TMPDIR") or "/tmp")
        .. string.format("/fmap-readers-%d-%d", math.random(1 << 30),
                         os.time() % 100000)
  assert(os.execute("mkdir -p " .. dir))
  local module = assert(package.searchpath("txn_workload", package.path))
  local pre = string.format("package.path = %q .. package.path\n",
                            (module:gsub("txn_workload%.lua$", "?.lua;")))
  h.writefile(dir .. "/writer.lua", pre
              .. "require('readers_workload').writer(arg)\n")
  h.writefile(dir .. "/reader.lua", pre
              .. "require('readers_workload').reader(arg)\n")
  return dir
end

-- The children spawn started that finish has not seen end: a test that
-- fails leaves them to the after_each, which kills them (closing the
-- pipe of one still waiting on its fifo would wait for ever).
local live = {}

-- Starts a child fmap running the Lua chunk code with args; returns
-- {p = its output, pid}. Its stdout and stderr come through p.
local function spawn (code, args)
  local script = h.tmpname(".lua")
  h.writefile(script, code)
  local p = assert(io.popen(string.format("echo $$; exec %s %s %s 2>&1",
                                          h.bin(), script, args or "")))
  local pid = assert(math.tointeger(tonumber(p:read("l"))))
  local c = { p = p, pid = pid, script = script }
  live[c] = true
  return c
end

-- Waits for child c to end: its output, and how it ended (as
-- io.popen's close says: "exit" or "signal", and the number).
local function finish (c)
  local out = c.p:read("a")
  local _, how, n = c.p:close()
  live[c] = nil
  os.remove(c.script)
  return out, how, n
end

local function kill_leftovers ()
  for c in pairs(live) do
    os.execute("kill -9 " .. c.pid .. " 2>/dev/null")
    finish(c)
  end
end

-- A fifo to let a child go: the child opens it to read once it is
-- ready, and goes on when the spec opens it to write and closes it.
local function fifo ()
  local path = h.tmpname(".fifo")
  assert(os.execute("mkfifo " .. path))
  return path
end

local function release (path)
  local f = assert(io.open(path, "w"))
  f:close()
end

-- A child that opens path read-only, says "ready N" (N the size of the
-- tree in the control data), waits on fifo, then says "still N ok" of
-- the tree it has held open, and closes.
local HOLD_READER = [[
local fmap = require "fmap"
local bptree = require "fmap.bptree"
local path, fifo = arg[1], arg[2]
local bf = assert(fmap.open(path, { readonly = true }))
local t = bptree.open(bf)
print("ready " .. t:size())
io.stdout:flush()
local f = assert(io.open(fifo, "r"))
f:read("a")
f:close()
print("still " .. t:size() .. " " .. tostring(t:verify() and bf:check()))
t = nil
collectgarbage()
assert(bf:close())
]]

-- A child that opens path for writing, adds a record with key
-- "from the writer" to the tree in the control data, commits it (into
-- the journal: no checkpoint), says "ready", waits on fifo and closes.
local HOLD_WRITER = [[
local fmap = require "fmap"
local bptree = require "fmap.bptree"
local path, fifo = arg[1], arg[2]
local bf = assert(fmap.open(path))
local t = bptree.open(bf)
assert(t:add("from the writer", "a commit in its journal"))
assert(bf:flush())
assert(bf:stats().checkpoints == 0)
print("ready")
io.stdout:flush()
local f = assert(io.open(fifo, "r"))
f:read("a")
f:close()
t = nil
collectgarbage()
assert(bf:close())
print("closed")
]]

describe("readers beside a writer", function()
  after_each(kill_leftovers)
  teardown(function()
    if dir then os.execute("rm -rf " .. dir) end
  end)

  describe("in processes of their own", function()
    it("each read sees a commit of the history, every entry, blob and "
       .. "item of it, while the writer commits, checkpoints, closes and "
       .. "opens again", function()
      local d = folder()
      local path, hist, stop = d .. "/fuzz.fmap", d .. "/history",
                               d .. "/stop"
      W.create(path)
      h.writefile(hist, "")
      local seed = math.random(1 << 30)
      local writer = io.popen(string.format(
        "%s %s/writer.lua %s %d %s %s %d %d 2>&1", h.bin(), d, path, seed,
        hist, stop, 150, CAP))
      local first = writer:read("l")
      if first ~= "START 0" then
        error("the writer said: " .. tostring(first) .. "\n"
              .. writer:read("a"))
      end
      local quota = (CHECKS + READERS - 1) // READERS
      local readers = {}
      for i = 1, READERS do
        readers[i] = io.popen(string.format(
          "%s %s/reader.lua %s %s %d r%d %d %d 2>&1", h.bin(), d, path,
          hist, quota, i, math.random(1 << 30), COMMITS))
      end
      local figs, outs = {}, {}
      for i = 1, READERS do
        outs[i] = readers[i]:read("a")
        readers[i]:close()
      end
      h.writefile(stop, "")
      local wout = writer:read("a")
      local wok = writer:close()
      local ctx = string.format("seed %d (FMAP_SEED=%d)", seed, h.SEED)
      for i = 1, READERS do
        local line = outs[i]:match("READER r%d ([^\n]*)")
        assert(line, ctx .. ": reader " .. i .. " said:\n" .. outs[i])
        local f = {}
        for k, v in line:gmatch("(%S+)=(%S+)") do f[k] = tonumber(v) end
        figs[i] = f
      end
      assert(wok, ctx .. ": the writer said:\n" .. wout)
      local wline = assert(wout:match("WRITER ([^\n]*)"), wout)
      local wf = {}
      for k, v in wline:gmatch("(%S+)=(%S+)") do wf[k] = tonumber(v) end
      local total = { checks = 0, opens = 0, full = 0, held = 0,
                      moved_on = 0, commits_seen = 0, writer = 0,
                      waits = 0 }
      for _, f in ipairs(figs) do
        for k in pairs(total) do total[k] = total[k] + f[k] end
      end
      io.stderr:write(string.format("\nreaders_spec (%s): %d readers, %d "
        .. "checks in %d opens (%d read every entry; %d held while a "
        .. "second reader opened, %d of which at a later commit), %d "
        .. "distinct commits seen, %d with the writer open; the writer: "
        .. "%d transactions, %d commits, %d checkpoints, %d put off, "
        .. "journal up to %.1f MiB, %d reopens (%d adopting the journal), "
        .. "%d waits for the readers to let a checkpoint through\n", ctx,
        READERS, total.checks, total.opens, total.full, total.held,
        total.moved_on, total.commits_seen, total.writer, wf.txns,
        wf.commits, wf.checkpoints, wf.deferred, wf.journal_max / 2^20,
        wf.reopens, wf.adopted, wf.waits))
      assert.is_true(total.checks >= CHECKS, ctx)
      assert.is_true(total.commits_seen >= READERS * COMMITS, ctx)
      assert.is_true(total.writer > 0, ctx)
      -- the file the writer left: the history's last commit, whole
      local bf = assert(fmap.open(path, { readonly = true }))
      local hw = W.handles(bf)
      local s = require("readers_workload").model()
      local rd = require("readers_workload").history(hist)
      rd.advance(s, hw.counter)
      rd.close()
      assert.is_nil(W.diff(s, (W.read_state(hw))), ctx)
      hw = nil
      collectgarbage()
      assert(bf:close())
    end)
  end)

  describe("a reader killed with SIGKILL", function()
    local path
    before_each(function() path = h.shm_tmpname() end)
    after_each(function() remove(path) end)

    it("holds nothing up: the writer's next checkpoint runs once it is "
       .. "gone, and the writer's close removes the journal", function()
      local bf = assert(fmap.create(path))
      local t = assert(bptree.new(bf, 8, -1))
      for i = 1, 100 do t:add(key(i), "first") end
      assert(bf:flush())
      local gate = fifo()
      local r = spawn(HOLD_READER, path .. " " .. gate)
      assert.equal("ready 100", r.p:read("l"))
      assert.is_true(bf:stats().readers)
      -- past the journal's limit, every commit tries a checkpoint: put off
      local n, st = 100, bf:stats()
      while st.checkpoints_deferred < 3 do
        assert(bf:transaction(function ()
          for _ = 1, 500 do n = n + 1; t:add(key(n), ("v"):rep(300)) end
          return true
        end))
        st = bf:stats()
      end
      assert.equal(0, st.checkpoints)
      assert.is_true(st.journal_bytes > LIMIT)
      local deferred, journal = st.checkpoints_deferred, st.journal_bytes
      assert(os.execute("kill -9 " .. r.pid))
      local _, how, sig = finish(r)
      assert.same({ "signal", 9 }, { how, sig })
      os.remove(gate)
      assert.is_false(bf:stats().readers)
      assert(bf:transaction(function ()
        n = n + 1
        return t:add(key(n), "last")
      end))
      st = bf:stats()
      assert.equal(1, st.checkpoints)
      assert.equal(deferred, st.checkpoints_deferred)
      assert.is_true(st.journal_bytes < LIMIT and st.journal_bytes < journal)
      assert(bf:transaction(function ()
        n = n + 1
        return t:add(key(n), "last")
      end))
      assert.equal(deferred, bf:stats().checkpoints_deferred)
      t = nil
      assert(bf:close())
      assert.is_false(exists(path .. "-wal"))
      local ro = assert(fmap.open(path, { readonly = true }))
      local rt = bptree.open(ro)
      assert.equal(n, rt:size())
      assert.is_true(rt:verify())
      assert.is_true(ro:check())
      rt = nil
      assert(ro:close())
    end)
  end)

  describe("a writer that opens beside readers", function()
    local path
    before_each(function() path = h.shm_tmpname() end)
    after_each(function() remove(path) end)

    it("adopts the journal the last writer left: its commits are there, "
       .. "and no reader's view changes", function()
      local w1 = assert(fmap.create(path))
      local t1 = assert(bptree.new(w1, 8, 8))
      for i = 1, 100 do t1:add(key(i), key(i)) end
      assert(w1:flush())
      local gate = fifo()
      local r = spawn(HOLD_READER, path .. " " .. gate)
      assert.equal("ready 100", r.p:read("l"))
      assert(w1:transaction(function ()
        for i = 101, 3000 do t1:add(key(i), key(i)) end
        return true
      end))
      t1 = nil
      assert(w1:close())
      -- the reader's map holds the file as it was: the journal stays
      local journal = size_of(path .. "-wal")
      assert.is_true(journal > 32)
      local r2 = assert(fmap.open(path, { readonly = true }))
      assert.is_false(r2:stats().writer)
      assert.equal(3000, bptree.open(r2):size())
      local w2 = assert(fmap.open(path))
      local st = w2:stats()
      assert.is_true(st.journal_replayed > 0)
      assert.is_true(st.journal_bytes > 32)   -- kept, not copied in
      assert.is_true(st.readers)
      assert.is_true(r2:stats().writer)
      local t2 = bptree.open(w2)
      assert.equal(3000, t2:size())
      assert.is_true(t2:verify())
      assert.is_true(w2:check())
      assert(w2:transaction(function ()
        for i = 3001, 4000 do t2:add(key(i), key(i)) end
        return true
      end))
      assert.is_true(w2:stats().journal_bytes > st.journal_bytes)
      assert.equal(3000, bptree.open(r2):size())
      release(gate)
      local out, how, code = finish(r)
      assert.same({ "exit", 0 }, { how, code }, out)
      assert.equal("still 100 true\n", out)
      os.remove(gate)
      local r3 = assert(fmap.open(path, { readonly = true }))
      local rt3 = bptree.open(r3)
      assert.equal(4000, rt3:size())
      assert.equal(key(3999), rt3:get(key(3999)))
      assert.is_true(rt3:verify())
      assert.is_true(r3:check())
      rt3 = nil
      assert(r3:close())
      assert(r2:close())
      assert.is_false(w2:stats().readers)
      t2 = nil
      assert(w2:close())
      assert.is_false(exists(path .. "-wal"))
      local w3 = assert(fmap.open(path))
      assert.equal(0, w3:stats().journal_replayed)
      assert.equal(4000, bptree.open(w3):size())
      assert(w3:close())
    end)
  end)

  describe("in one process", function()
    local path
    before_each(function() path = h.shm_tmpname() end)
    after_each(function()
      collectgarbage()
      remove(path)
    end)

    it("two readers each see the last commit as of their open", function()
      local w = assert(fmap.create(path))
      local t = assert(bptree.new(w, 8, 8))
      for i = 1, 10 do t:add(key(i), key(i)) end
      assert(w:flush())
      local r1 = assert(fmap.open(path, { readonly = true }))
      for i = 11, 20 do t:add(key(i), key(i)) end
      assert(w:flush())
      local r2 = assert(fmap.open(path, { readonly = true }))
      local t1, t2 = bptree.open(r1), bptree.open(r2)
      assert.same({ 10, 20 }, { t1:size(), t2:size() })
      assert.is_nil(t1:get(key(15)))
      assert.equal(key(15), t2:get(key(15)))
      assert.same({ true, true }, { r1:stats().writer, r2:stats().writer })
      assert.is_true(w:stats().readers)
      assert.same({ true, true }, { r1:check(), r2:check() })
      t1 = nil
      collectgarbage()
      assert(r1:close())
      assert.is_true(w:stats().readers)    -- r2 still
      t2 = nil
      collectgarbage()
      assert(r2:close())
      assert.is_false(w:stats().readers)
      t = nil
      assert(w:close())
      -- no writer: two readers side by side, and no writer for either
      local a = assert(fmap.open(path, { readonly = true }))
      local b = assert(fmap.open(path, { readonly = true }))
      assert.same({ false, false }, { a:stats().writer, b:stats().writer })
      assert.same({ 20, 20 }, { bptree.open(a):size(),
                                bptree.open(b):size() })
      collectgarbage()
      assert(a:close())
      assert(b:close())
    end)

    it("a reader beside its writer sees neither the writer's open "
       .. "transaction nor its later commits, and holds its checkpoints "
       .. "off until it closes", function()
      local w = assert(fmap.create(path))
      local t = assert(bptree.new(w, 8, -1))
      local l = assert(mmlist.new(w))
      for i = 1, 50 do t:add(key(i), "old"); l:append("old") end
      assert(w:flush())
      w:begin()
      t:add(key(1000), "uncommitted")
      l:set(1, "uncommitted")
      local r = assert(fmap.open(path, { readonly = true }))
      assert(w:commit())
      local rt = bptree.open(r)
      local rl = mmlist.open(r, l:offset())
      assert.same({ 50, 50 }, { rt:size(), #rl })
      assert.is_nil(rt:get(key(1000)))
      assert.equal("old", rl:get(1))
      assert.is_false(r:stats().readers)   -- a reader has no readers
      local n = 1000
      local st = w:stats()
      while st.checkpoints_deferred < 2 do
        assert(w:transaction(function ()
          for _ = 1, 500 do
            n = n + 1
            t:add(key(n), ("w"):rep(300))
            l:set(1, "new " .. n)
          end
          return true
        end))
        st = w:stats()
      end
      assert.equal(0, st.checkpoints)
      assert.same({ 50, 50 }, { rt:size(), #rl })
      assert.equal("old", rl:get(1))
      assert.is_true(rt:verify() and rl:verify() and r:check())
      rt, rl = nil, nil
      collectgarbage()
      assert(r:close())
      assert(w:flush())
      st = w:stats()
      assert.equal(1, st.checkpoints)
      assert.is_true(st.journal_bytes < LIMIT)
      local r2 = assert(fmap.open(path, { readonly = true }))
      assert.equal(n - 1000 + 51, bptree.open(r2):size())
      assert.equal("new " .. n, mmlist.open(r2, l:offset()):get(1))
      collectgarbage()
      assert(r2:close())
      t, l = nil, nil
      assert(w:close())
    end)
  end)

  describe("the tools beside a writer", function()
    local path, gate, writer
    local NOTE = "another BlockFile has it open: this is its last commit "
                 .. "as of this open"
    before_each(function()
      path = h.shm_tmpname()
      local bf = assert(fmap.create(path))
      local t = assert(bptree.new(bf, -1, -1))
      for i = 1, 40 do t:add(string.format("key %02d", i), "value") end
      local l = assert(mmlist.new(bf))
      for i = 1, 10 do l:append("item " .. i) end
      t, l = nil, nil
      assert(bf:close())
      gate = fifo()
      writer = spawn(HOLD_WRITER, path .. " " .. gate)
      assert.equal("ready", writer.p:read("l"))
    end)
    after_each(function()
      if writer then
        release(gate)
        local out, how, code = finish(writer)
        assert.same({ "exit", 0 }, { how, code }, out)
        assert.equal("closed\n", out)
      end
      os.remove(gate)
      remove(path)
    end)
    local function stop_writer ()
      release(gate)
      local out = finish(writer)
      writer = nil
      assert.equal("closed\n", out)
    end
    local function tool (name, args)
      return h.run(string.format("%s scripts/%s.lua %s 2>&1", h.bin(), name,
                                 args))
    end

    it("inspect shows the writer's last commit and says so; with no "
       .. "writer, it says nothing of one", function()
      local out, status = tool("inspect", path .. " --verify")
      assert.equal(0, status, out)
      assert.truthy(out:find("\n  writer         " .. NOTE .. "\n", 1,
                             true), out)
      assert.matches("\n  journal +%d+ blocks? of the writer's commits "
                     .. "since its last checkpoint, %d+ bytes: shown as "
                     .. "committed\n", out)
      assert.matches("\n  check +ok\n", out)
      assert.matches("\nverify bptree@%d+: ok\n", out)
      stop_writer()
      out, status = tool("inspect", path)
      assert.equal(0, status, out)
      assert.falsy(out:find("writer", 1, true), out)
      assert.matches("\n  journal +none %(every commit is in the file%)\n",
                     out)
    end)

    it("blockmap says so", function()
      local svg = h.tmpname(".svg")
      local out, status = tool("blockmap", path .. " -o " .. svg)
      os.remove(svg)
      assert.equal(0, status, out)
      assert.truthy(out:find("\n  writer: " .. NOTE .. "\n", 1, true), out)
    end)

    it("dot draws the writer's last commit and says so", function()
      local dotf = h.tmpname(".dot")
      local out, status = tool("dot", path .. " -o " .. dotf)
      local text = h.readfile(dotf)
      os.remove(dotf)
      assert.equal(0, status, out)
      assert.truthy(out:find("\nwriter: " .. NOTE .. "\n", 1, true), out)
      assert.truthy(text:find("from the writer", 1, true), text)
    end)

    it("dump says so in a comment line, which a load skips", function()
      local out, status = tool("dump", path)
      assert.equal(0, status, out)
      local lines = {}
      for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.equal("fmap-dump 1", lines[1])
      assert.equal("# writer: another BlockFile had it open: this dump is "
                   .. "its last commit as of the dump's open", lines[2])
      assert.equal("block-size 4096", lines[3])
      assert.truthy(out:find('\nrecord "from the writer" "a commit in its '
                             .. 'journal"\n', 1, true), out)
      local dumpf, copy = h.tmpname(".dump"), h.tmpname()
      out, status = tool("dump", path .. " -o " .. dumpf)
      assert.equal(0, status, out)
      assert.truthy(out:find("\nwriter: " .. NOTE .. "\n", 1, true), out)
      out, status = h.run(string.format("%s scripts/load.lua %s %s 2>&1",
                                        h.bin(), dumpf, copy))
      os.remove(dumpf)
      assert.equal(0, status, out)
      local bf = assert(fmap.open(copy, { readonly = true }))
      local t = bptree.open(bf)
      assert.equal(41, t:size())
      assert.equal("a commit in its journal", t:get("from the writer"))
      t = nil
      collectgarbage()
      assert(bf:close())
      os.remove(copy)
    end)

    it("fmap.audit says so in its summary and its report", function()
      local bf = assert(fmap.open(path, { readonly = true }))
      local report, summary = fmap.audit(bf)
      collectgarbage()
      assert(bf:close())
      assert.is_true(report.ok, summary)
      assert.is_true(report.writer)
      assert.truthy(summary:find("\n  writer: " .. NOTE .. "\n", 1, true),
                    summary)
      stop_writer()
      bf = assert(fmap.open(path, { readonly = true }))
      report, summary = fmap.audit(bf)
      collectgarbage()
      assert(bf:close())
      assert.is_false(report.writer)
      assert.falsy(summary:find("writer", 1, true), summary)
    end)
  end)

  describe("bench/bench_readers.lua", function()
    it("measures a reader's get and the writer's commits, each alone and "
       .. "beside the other, and finds every value", function()
      local out, status = h.run(string.format(
        "%s bench/bench_readers.lua --n 2000 --rounds 1 --commits 20 "
        .. "--readers 2 --dir %s 2>&1", h.bin(),
        (h.shm_tmpname():gsub("/[^/]*$", ""))))
      assert.equal(0, status, out)
      for _, row in ipairs({ "reader get/s, alone",
                             "reader get/s, beside a writer of the file",
                             "reader get/s, beside a writer of another",
                             "writer commits/s, alone",
                             "writer commits/s, 2 readers of the file",
                             "writer commits/s, 2 readers of another" }) do
        assert.matches("\n" .. row:gsub("[%-%.]", "%%%0") .. " +[%d,]+ ",
                       out)
      end
      assert.matches("alone / beside a writer: [%d.]+x", out)
      assert.matches("alone / with readers: [%d.]+x", out)
      assert.matches("\nchecks: 0 mismatches\n", out)
    end)

    it("says what it does with --help", function()
      local out, status = h.run(h.bin() .. " bench/bench_readers.lua --help")
      assert.equal(0, status)
      assert.matches("^usage: fmap bench/bench_readers.lua ", out)
      assert.truthy(out:find("Exit status:", 1, true), out)
    end)
  end)
end)
