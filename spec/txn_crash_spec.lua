-- Transactions under kill -9. Writer children run random transactions (1
-- to 50 operations) over a B+tree whose values name blobs of a varchar,
-- a list and the guide's hash table: durable commits mostly, some
-- commit{sync = false}, some rollbacks, some bf:transaction(fn), some of
-- whose fn raise. Each is killed with SIGKILL, at a random instant or at
-- a store chosen inside an operation (fail_after(n, "kill"), n at random
-- among the operation's stores, which the writer counts on a copy of the
-- file first; most of the time the operation is one that allocates or
-- frees, a split, a merge, a free, a pop, or one that compacts a slotted
-- leaf of the tree). The child prints "COMMIT c" once each commit
-- returns; a model (spec/txn_workload.lua: the same generator applied to
-- Lua tables) says what the file must hold after commit c, and after the
-- commit that follows it, which may have reached the journal before the
-- kill. After every kill the file must open (recovering its journal, or
-- read-only over it), pass check(), hold structures that verify and that
-- equal the model at c or at the next commit in every key, value, blob,
-- item and entry (nothing of a transaction that did not commit), and leak
-- no block: the audit finds an owner for every allocated block. The next
-- writer goes on with the same file, sometimes through a read-only open
-- first, which must see the last commit too. Several files (lanes) are
-- written at once, so that one is checked while another's writer runs.
-- A failure names the seed, the lane and the round, and keeps the file
-- and its journal as the kill left them in $TMPDIR (or /tmp).
-- FMAP_SEED=n reruns a failure (the transactions and the choices; the
-- instants of the timed kills vary); FMAP_FUZZ_SCALE=x multiplies the kills.

local W = require "txn_workload"
local audit = require "fmap.audit"
require "fmap.examples.hashtable"   -- registers its classifier

local SEED = tonumber(os.getenv("FMAP_SEED")) or os.time()
local SCALE = tonumber(os.getenv("FMAP_FUZZ_SCALE")) or 1
-- the sanitizer build runs several times slower: fewer kills there
local SANITIZE = h.bin():find("sanitize", 1, true) ~= nil
local KILLS = math.max(4, math.floor((SANITIZE and 300 or 1000) * SCALE))
local LANES = 3

local tally = { kills = 0, timed = 0, early = 0, stored = 0, tags = {},
                kinds = {}, journals = 0, wal = 0, checkpoints = 0,
                commits = 0, further = 0, ro_child = 0, ro_checker = 0,
                ro_refused = 0, txns = 0, started = 0 }

local exists = require("fmap.cli").exists

local function size_of (path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

-- Copies a file, if it exists.
local function copy (from, to)
  local f = io.open(from, "rb")
  if not f then return end
  local s = f:read("a")
  f:close()
  h.writefile(to, s)
end

describe("transactions under SIGKILL", function()
  local dir, writer, startup
  setup(function()
    local shm = io.open("/dev/shm/.fmap-probe", "w")
    if shm then shm:close(); os.remove("/dev/shm/.fmap-probe") end
    dir = (shm and "/dev/shm" or os.getenv("TMPDIR") or "/tmp")
          .. string.format("/fmap-txn-crash-%d-%d", math.random(1 << 30),
                           os.time() % 100000)
    assert(os.execute("mkdir -p " .. dir))
    -- the children run in this directory too: the module's relative path
    local module = assert(package.searchpath("txn_workload", package.path))
    writer = dir .. "/writer.lua"
    h.writefile(writer, string.format("package.path = %q .. package.path\n"
      .. "require('txn_workload').writer(arg)\n",
      module:gsub("txn_workload%.lua$", "?.lua;")))
    local t0 = fmap.clock()
    h.run(h.bin() .. " -e 'require \"fmap.bptree\"' 2>&1")
    startup = fmap.clock() - t0
  end)
  teardown(function()
    os.execute("rm -rf " .. dir)
    local function counts (t)
      local out = {}
      for k, n in pairs(t) do out[#out + 1] = n .. " " .. k end
      table.sort(out, function (a, b)
        return tonumber(a:match("%d+")) > tonumber(b:match("%d+"))
      end)
      return table.concat(out, ", ")
    end
    io.stderr:write(string.format("\ntxn_crash_spec (seed %d): %d writers "
      .. "killed with SIGKILL: %d at random instants (%d before they "
      .. "started), %d at a store chosen in an operation (%s; of %s); %d "
      .. "left a journal, up to %d KB; %d checkpoints in one writer; "
      .. "%d transactions, %d commits seen, %d found one further than "
      .. "printed\n", SEED, tally.kills, tally.timed, tally.early,
      tally.stored, counts(tally.tags), counts(tally.kinds), tally.journals,
      tally.wal // 1024, tally.checkpoints, tally.txns, tally.commits,
      tally.further))
    io.stderr:write(string.format("txn_crash_spec: read-only opens after a "
      .. "kill: %d by the next writer, %d by the checker, %d refused (a "
      .. "growth not yet in the file)\n", tally.ro_child, tally.ro_checker,
      tally.ro_refused))
  end)

  -- Starts the next writer of lane L in the background.
  local function start (L)
    L.round = L.round + 1
    tally.started = tally.started + 1
    local timed = tally.started % 2 == 1   -- as many of each kind
    local secs, kill_at = 60, -1
    if timed then
      -- some land before the writer is up, or in its recovery; a few
      -- let it run past a checkpoint of its journal. Slower hosts (the
      -- sanitizer build) get longer.
      local pace = math.max(1, startup / 0.015)
      secs = startup * 2 * math.random() + 0.002
             + (math.random() < 0.8 and 0.06 or 0.3) * math.random() * pace
    else
      kill_at = math.random(0, 12)
    end
    L.ro = math.random() < 0.25
    L.expect_ro = L.ro and W.serialize(L.state) or nil
    L.timed = timed
    L.ctx = string.format("seed %d, lane %d, round %d (%s, from commit "
                          .. "%d%s)", SEED, L.lane, L.round, timed
                          and string.format("killed after %.3f s", secs)
                          or "killed at a store of transaction +" .. kill_at,
                          L.state.counter,
                          L.ro and ", read-only open first" or "")
    L.log = L.path .. ".log"
    L.proc = assert(io.popen(string.format(
      "ASAN_OPTIONS=detect_leaks=0 timeout --foreground -s KILL %.3f %s %s "
      .. "%s %d %s %s %d %d > %s 2>&1; echo $?", secs, h.bin(), writer,
      L.path, L.seed, L.ro and "1" or "0", L.path .. ".ro", kill_at,
      math.random(1 << 30), L.log)))
  end

  local check

  -- Waits for the writer of lane L, then checks the file.
  local function finish (L, proc)
    local status = proc:read("a")
    proc:close()
    local out = h.readfile(L.log)
    local ctx = L.ctx
    assert(status:match("^137"), ctx .. ": the writer ended with status "
           .. status .. out)
    tally.kills = tally.kills + 1
    local c = L.state.counter
    local started, p = false, c
    for line in out:gmatch("[^\n]+") do
      local word, rest = line:match("^(%S+) ?(.*)$")
      if word == "START" then
        assert(tonumber(rest) == c, ctx .. ": the writer started at "
               .. rest .. ", the last commit is " .. c)
        started = true
      elseif word == "COMMIT" then
        local n, ck = rest:match("^(%d+) (%d+)")
        p = math.tointeger(tonumber(n))
        tally.commits = tally.commits + 1
        tally.checkpoints = math.max(tally.checkpoints, tonumber(ck))
      elseif word == "RO" then
        assert(tonumber(rest) == c and h.readfile(L.path .. ".ro")
               == L.expect_ro, ctx .. ": a read-only open saw another "
               .. "state than commit " .. c)
        tally.ro_child = tally.ro_child + 1
      elseif word == "RO-REFUSED" then
        assert(rest:find("growth the file lacks", 1, true), ctx .. ": "
               .. line)
        tally.ro_refused = tally.ro_refused + 1
      elseif word == "ARMED" then
        local kind, tag = rest:match("(%S+) (%S+)$")
        tally.kinds[kind] = (tally.kinds[kind] or 0) + 1
        tally.tags[tag] = (tally.tags[tag] or 0) + 1
      elseif line ~= "Killed" then   -- what timeout, killed too, left
        error(ctx .. ": the writer said " .. line)
      end
    end
    -- (a writer slowed down so much that its 60 s ran out first is
    -- killed all the same)
    if L.timed or not out:find("ARMED", 1, true) then
      tally.timed = tally.timed + 1
      if not started then tally.early = tally.early + 1 end
    else
      tally.stored = tally.stored + 1
    end
    os.remove(L.log)
    os.remove(L.path .. ".ro")
    local wal = size_of(L.path .. "-wal")
    if wal and wal > 32 then
      tally.journals = tally.journals + 1
      tally.wal = math.max(tally.wal, wal)
    end
    -- the file as the kill left it, kept if the check fails
    copy(L.path, L.path .. ".pre")
    copy(L.path .. "-wal", L.path .. ".pre-wal")
    local ok, err = pcall(check, L, ctx, c, p, started)
    if not ok then
      local kept = string.format("%s/txn-crash-%d-%d-%d.fmap",
                                 os.getenv("TMPDIR") or "/tmp", SEED, L.lane,
                                 L.round)
      copy(L.path .. ".pre", kept)
      copy(L.path .. ".pre-wal", kept .. "-wal")
      error(tostring(err) .. "\n(the file as the kill left it, and its "
            .. "journal if any: " .. kept .. ")", 0)
    end
  end

  -- Checks the file of lane L, which was at commit c before a writer that
  -- printed commit p (c if none) and started or not.
  function check (L, ctx, c, p, started)
    -- The model after commit p, and after the commit that follows it.
    local s, t = L.state, c
    while s.counter < p do
      assert(t < p, ctx .. ": the model never reaches commit " .. p)
      W.txn(s, L.seed, t)
      t = t + 1
    end
    local nxt
    repeat
      nxt = W.txn(s, L.seed, t)
      t = t + 1
    until W.commits(nxt)
    tally.txns = tally.txns + (t - c)

    -- The file, read-only or recovered.
    local ro = math.random() < 0.4
    local bf, msg = fmap.open(L.path, ro and { readonly = true } or nil)
    if not bf and ro and msg:find("growth the file lacks", 1, true) then
      tally.ro_refused = tally.ro_refused + 1
      ro = false
      bf, msg = fmap.open(L.path)
    end
    assert(bf, ctx .. ": the file does not open: " .. tostring(msg))
    if ro then tally.ro_checker = tally.ro_checker + 1 end
    ctx = ctx .. (ro and ", opened read-only" or ", recovered")
    local ok, problems = bf:check()
    assert(ok, ctx .. ": check: " .. table.concat(problems or {}, "; "))
    local okh, hs = pcall(W.handles, bf)
    assert(okh, ctx .. ": the structures do not open: " .. tostring(hs))
    for _, name in ipairs({ "tree", "vc", "list", "ht" }) do
      local good, why = hs[name]:verify()
      assert(good, ctx .. ": " .. name .. ": " .. tostring(why))
    end
    local got, bad = W.read_state(hs)
    assert(#bad == 0, ctx .. ": " .. table.concat(bad, "; "))
    if got.counter == p then
      W.undo(s, nxt)
    else
      assert(got.counter == nxt.t + 1, string.format("%s: the file is at "
             .. "commit %d; commit %d was printed, the next is %d", ctx,
             got.counter, p, nxt.t + 1))
      assert(started, ctx .. ": a commit, yet the writer never started")
      tally.further = tally.further + 1
    end
    local d = W.diff(s, got)
    assert(not d, ctx .. ", at commit " .. got.counter .. ": " .. tostring(d))
    local rep, summary = audit(bf)
    assert(rep.ok, ctx .. ": " .. summary)
    local owned = 0
    for _, st in ipairs(rep.structures) do owned = owned + st.blocks end
    assert(owned == bf:stats().used_blocks, string.format("%s: %d blocks "
           .. "in use, the structures own %d", ctx, bf:stats().used_blocks,
           owned))
    hs = nil
    assert(bf:close())
    if not ro then
      assert(not exists(L.path .. "-wal"), ctx .. ": the journal stayed")
    end
  end

  it("leaves the last commit printed, or the next, and nothing else, "
     .. "after each kill", function()
    math.randomseed(SEED)
    local lanes = {}
    for i = 1, LANES do
      local path = string.format("%s/txn-%d.fmap", dir, i)
      W.create(path)
      lanes[i] = { lane = i, path = path, seed = SEED * 8 + i, round = 0,
                   state = { counter = 0, tree = {}, ntree = 0, list = {},
                             hash = {}, nhash = 0 } }
      start(lanes[i])
    end
    local left = KILLS - LANES
    local ok, err = pcall(function ()
      while true do
        local busy = false
        for _, L in ipairs(lanes) do
          if L.proc then
            local running = L.proc
            L.proc = nil
            finish(L, running)
            if left > 0 then
              left = left - 1
              start(L)
            end
            busy = busy or L.proc ~= nil
          end
        end
        if not busy then break end
      end
    end)
    if not ok then   -- the other writers end before the files go
      for _, L in ipairs(lanes) do
        if L.proc then L.proc:read("a"); L.proc:close() end
      end
      error(err, 0)
    end
    assert.equal(KILLS, tally.kills)
    assert.is_true(tally.stored > 0 and tally.timed > 0)
  end)
end)
