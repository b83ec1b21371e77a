-- spec/bench_spec.lua: bench/bench.lua runs the standard workload on
-- every peer, verifies every phase and prints every row. Small N; timings
-- are never asserted, only that the work was done and checked.
local N = 2001   -- odd, so the counts of the delete phase differ

local PEERS = { fmap = "fmap bptree", ["fmap-tx"] = "fmap tx/phase",
                table = "lua table", luasql = "sqlite luasql",
                dbi = "sqlite dbi", lmdb = "lmdb (C)",
                tarantool = "tarantool" }
local ORDER = { "fmap", "fmap-tx", "table", "luasql", "dbi", "lmdb",
                "tarantool" }

local function bench (args)
  return h.run(h.bin() .. " bench/bench.lua " .. args .. " 2>&1")
end

-- The line of the table for a peer's label.
local function row_of (out, label)
  for line in out:gmatch("[^\n]+") do
    if line:sub(1, #label + 1) == label .. " " then return line end
  end
end

-- The machine-readable line of one Lua peer run as a child.
local function child (name, extra)
  local out, status = h.run(string.format(
    "%s bench/bench.lua --peer %s --n %d%s 2>&1", h.bin(), name, N,
    extra or ""))
  assert.equal(0, status, out)
  local pat = name:gsub("%p", "%%%0")
  local why = out:match("fmap%-bench peer=" .. pat .. " skipped: ([^\n]*)")
  if why then return nil, why end
  local line = assert(out:match("fmap%-bench peer=" .. pat .. " ([^\n]*)"),
                      out)
  local r = {}
  for k, v in line:gmatch("(%S+)=(%S+)") do r[k] = tonumber(v) end
  return r
end

local function assert_verified (r)
  assert.equal(N, r.n)
  assert.equal(0, r.get_mismatches)
  assert.equal(N, r.scan_count)
  assert.equal(0, r.scan_unsorted)
  assert.equal((N + 1) // 2, r.removed)
  assert.equal(N // 2, r.remaining)
  for _, phase in ipairs { "insert", "get", "scan", "delete" } do
    assert.is_true(r[phase] > 0, phase .. " took no time")
  end
  assert.is_true(r.rss_kb > 0)
end

describe("bench/bench.lua", function()
  describe("the whole run", function()
    local out, status
    setup(function() out, status = bench("--n " .. N) end)

    it("exits 0 with every peer verified or skipped", function()
      assert.equal(0, status, out)
      assert.is_nil(out:find("FAILED"), out)
    end)

    it("prints the workload, the machine and the command", function()
      assert.truthy(out:find("N = 2,001", 1, true), out)
      assert.truthy(out:find("machine: %d+ cores"), out)
      assert.truthy(out:find("command: .*bench/bench.lua %-%-n 2001"), out)
    end)

    it("prints a row for every peer: ops/s per phase and ok, or why it "
       .. "was skipped", function()
      for _, name in ipairs(ORDER) do
        local line = assert(row_of(out, PEERS[name]),
                            "no row for " .. name .. ":\n" .. out)
        if not line:find("skipped: ", 1, true) then
          local cells = {}
          for c in line:sub(#PEERS[name] + 1):gmatch("%S+") do
            cells[#cells + 1] = c
          end
          assert.equal("ok", cells[#cells], line)
          for i = 1, 4 do
            assert.truthy(cells[i]:match("^[%d,]+$"), line)
          end
        else
          assert.truthy(line:match("skipped: %S"), line)
        end
      end
    end)

    it("runs fmap's B+tree, the table and the ratios of fmap to each peer",
       function()
      assert.equal("ok", row_of(out, "fmap bptree"):match("(%S+)$"), out)
      assert.equal("ok", row_of(out, "lua table"):match("(%S+)$"), out)
      assert.truthy(out:find("\nfmap / peer"), out)
      assert.truthy(out:find("\n  lua table +[%d.]+x +[%d.]+x +[%d.]+x "
                             .. "+[%d.]+x"), out)
      assert.truthy(out:find("\ntargets\n"), out)
      assert.truthy(out:find("scan > 5,000,000 records/s", 1, true), out)
      for _, ph in ipairs { "insert", "get", "scan", "delete" } do
        local line = assert(out:match("\n  (" .. ph .. " >= %dx the faster "
                                      .. "SQLite binding[^\n]*)"), out)
        assert.truthy(line:match(" [%d.]+x %((%a+)%) ")
                      or line:match("no SQLite peer ran"), line)
      end
      assert.truthy(out:find("%(floor: the scan loop over a sorted array%) *"
                             .. "[%d,]+/s\n"), out)
    end)

    it("prints what a transaction per phase costs, and its targets",
       function()
      assert.equal("ok", row_of(out, "fmap tx/phase"):match("(%S+)$"), out)
      assert.truthy(out:find("\ntransactions cost: fmap%-tx / fmap per phase "
                             .. "%(time%)  insert [%d.]+x  get [%d.]+x  "
                             .. "scan [%d.]+x  delete [%d.]+x\n"), out)
      local tx = assert(out:match("\ntargets %(fmap tx/phase%)\n(.*)$"), out)
      for _, ph in ipairs { "insert", "delete" } do
        assert.truthy(tx:find("  " .. ph .. ": tx / fmap <= 1.15 %(within "
                              .. "15%%%) +[%d.]+x +%a+\n"), tx)
        local line = assert(tx:match("\n  (" .. ph .. " >= 3x the faster "
                                     .. "SQLite binding[^\n]*)"), tx)
        assert.truthy(line:match(" [%d.]+x %((%a+)%) ")
                      or line:match("no SQLite peer ran"), line)
      end
      assert.truthy(tx:find("\n  file after insert <= 1.5x raw %([%d.]+ MiB%)"
                            .. " +[%d.]+ MiB %([%d.]+x raw%) +%a+\n"
                            .. "    %(of which the journal; checkpoints: "
                            .. "%d+%) +[%d.]+ MiB\n"), tx)
    end)

    it("prints the block-layer micro-benchmarks with their targets",
       function()
      for _, what in ipairs { "allocate + free of one block",
                              "get + release of a 1-block view",
                              "u64 write + read through a view",
                              "compare of a 16-byte key" } do
        assert.truthy(out:find("\n" .. what:gsub("%p", "%%%0")
                               .. " +[%d.]+ +[%d.]+ +[%d.]+x"), out)
      end
      assert.truthy(out:find("targets (block layer)", 1, true), out)
      assert.is_nil(out:find("not in the output", 1, true), out)
    end)

    it("holds get + release and a u64 write + read to the floor of two "
       .. "empty calls from Lua, timed in the same run", function()
      assert.truthy(out:find("\nfloor: one call of v:offset%(%) +%- +[%d.]+\n"),
                    out)
      local floor = tonumber(out:match("\nfloor: two empty calls, type%(v%) "
                                       .. "twice +%- +([%d.]+)\n"))
      assert.is_true(floor and floor > 0, out)
      local t = assert(out:match("\ntargets %(block layer%)\n(.-)\n\n")
                       or out:match("\ntargets %(block layer%)\n(.*)$"), out)
      assert.truthy(t:find("^  allocate %+ free of one block Lua <= 3x C +"
                           .. "[%d.]+x +%a+\n"), t)
      for _, what in ipairs { "get + release", "u64 write + read" } do
        local x, ns, f = t:match("\n  " .. what:gsub("%p", "%%%0")
                                 .. " <= 2x two empty calls +([%d.]+)x "
                                 .. "%(([%d.]+) ns / ([%d.]+) ns%) +%a+\n")
        assert.truthy(x, t)
        assert.equal(floor, tonumber(f))
        -- the multiple is the row's Lua time over the floor, to a tenth
        assert.is_true(math.abs(tonumber(ns) / floor - tonumber(x)) < 0.06,
                       t)
      end
      assert.truthy(t:find("\n    %(floor: two empty calls from Lua, "
                           .. "type%(v%)%) +[%d.]+ ns"), t)
      -- the C loops stay in the table, but are no target
      assert.is_nil(t:find("Lua <= 3x C", 40, true), t)
    end)

    it("prints the blob store's and the list's sections, each peer's row, "
       .. "fmap's ratios and a target per operation", function()
      local labels = { blobs = { "fmap varchar", "sqlite dbi",
                                 "sqlite luasql" },
                       list = { "fmap mmlist", "sqlite dbi",
                                "sqlite luasql" } }
      for _, sec in ipairs {
        { "blobs", "blob store: fmap.varchar beside SQLite's blobs", "put",
          { "put", "get" } },
        { "list", "list: fmap.mmlist beside SQLite's list", "append",
          { "append", "get", "set", "pop" } } } do
        local name, title, first, ops = sec[1], sec[2], sec[3], sec[4]
        local body = assert(out:match("\n" .. title:gsub("%p", "%%%0")
                                      .. "[^\n]*, N = 2,001\n(.-)\n\n"),
                            out)
        local head = "^peer"
        for _, op in ipairs(ops) do head = head .. " +" .. op .. "/s" end
        assert.truthy(body:find(head .. " +file MiB +RSS MiB  checks\n"),
                      body)
        for k, label in ipairs(labels[name]) do
          local line = assert(body:match("\n" .. label:gsub("%p", "%%%0")
                                         .. " ([^\n]*)"), body)
          if line:find("skipped: ", 1, true) then
            assert.is_true(k > 1, line)      -- fmap itself always runs
            assert.truthy(line:find("install_peers.sh", 1, true), line)
          else
            local cells = {}
            for c in line:gmatch("%S+") do cells[#cells + 1] = c end
            assert.equal("ok", cells[#cells], line)
            for i = 1, #ops do
              assert.truthy(cells[i]:match("^[%d,]+$"), line)
            end
          end
        end
        assert.truthy(body:find("(ops/s per operation; ratios are fmap's "
                                .. "speed over the peer's, and fmap's file "
                                .. "and RSS over the peer's; file size after "
                                .. "the " .. first, 1, true), body)
        local t = assert(out:match("\ntargets %(" .. (name == "blobs"
                                   and "blob store" or "list")
                                   .. "%)\n(.-)\n\n")
                         or out:match("\ntargets %(" .. (name == "blobs"
                                      and "blob store" or "list")
                                      .. "%)\n(.*)$"), out)
        for _, op in ipairs(ops) do
          local line = assert(t:match("  (" .. op .. ": fmap >= 2x SQLite"
                                      .. "[^\n]*)"), t)
          assert.truthy(line:match(" [%d.]+x %((%a+)%) +%a+$")
                        or line:match("no SQLite peer ran"), line)
        end
      end
    end)

    it("prints no table of peers when only the block layer runs", function()
      local only = bench(string.format("--n %d --only engine", N))
      assert.is_nil(only:find("insert/s", 1, true), only)
      assert.truthy(only:find("targets (block layer)", 1, true), only)
    end)
  end)

  describe("--peer", function()
    -- A store peer's line: the time of each operation, what it checked.
    for _, name in ipairs { "blobs-fmap", "blobs-dbi", "blobs-luasql",
                            "list-fmap", "list-dbi", "list-luasql" } do
      it("runs and checks " .. name, function()
        local r, why = child(name)
        if not r then
          assert.is_nil(name:find("fmap", 1, true), why)
          assert.truthy(why:find("install_peers.sh", 1, true), why)
          return
        end
        assert.equal(N, r.n)
        assert.is_true(r.file_bytes > 0 and r.rss_kb > 0)
        if name:match("^blobs") then
          assert.equal(0, r.bad)
          assert.equal(N, r.count)
          -- sizes 16 B to 4 KB, 736 B on average: the bytes read back
          assert.is_true(r.bytes >= 16 * N and r.bytes <= 4096 * N)
          assert.is_true(r.put > 0 and r.get > 0)
        else
          assert.equal(0, r.bad_get)
          assert.equal(0, r.bad_pop)
          assert.equal(N, r.count)
          assert.equal(0, r.left)
          for _, op in ipairs { "append", "get", "set", "pop" } do
            assert.is_true(r[op] > 0, op)
          end
        end
      end)
    end

    for _, name in ipairs { "fmap", "fmap-tx", "table", "luasql", "dbi" } do
      it("verifies every phase of " .. name, function()
        local r, why = child(name)
        if not r then
          -- only a peer outside the project may be missing
          assert.is_true(name ~= "fmap" and name ~= "fmap-tx"
                         and name ~= "table", why)
          assert.truthy(why:find("install_peers.sh", 1, true), why)
          return
        end
        assert_verified(r)
        if name == "table" then
          assert.equal(0, r.file_bytes)
        else
          -- 32 bytes of data per record at the very least
          assert.is_true(r.file_bytes >= 32 * N, tostring(r.file_bytes))
        end
        if name:match("^fmap") then
          -- the journal is counted in the file, and said apart
          assert.is_true(r.journal_bytes >= 0
                         and r.journal_bytes < r.file_bytes)
          assert.is_true(r.checkpoints >= 0)
        end
      end)
    end

    it("leaves no file behind, even when a peer dies", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert.equal(0, select(2, h.run("mkdir " .. dir)))
      local out, status = h.run(string.format(
        "TMPDIR=%s %s bench/bench.lua --n %d --only fmap,table,engine "
        .. "--fault exit 2>&1", dir, h.bin(), N))
      local left = h.run("ls -A " .. dir)
      h.run("rm -rf " .. dir)
      assert.equal(1, status, out)
      assert.equal("", left)
    end)

    it("leaves no file behind as a child", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert.equal(0, select(2, h.run("mkdir " .. dir)))
      for _, name in ipairs { "fmap", "fmap-tx", "luasql", "dbi",
                              "blobs-fmap", "blobs-dbi", "blobs-luasql",
                              "list-fmap", "list-dbi", "list-luasql" } do
        child(name, " --dir " .. dir)
      end
      local out = h.run("ls -A " .. dir)
      h.run("rm -rf " .. dir)
      assert.equal("", out)
    end)
  end)

  describe("the checks", function()
    local cases = {
      get = "FAILED: get: 1 mismatches",
      scan = "FAILED: scan: 1 out of order",
      delete = "FAILED: delete: removed 1000, want 1001; "
               .. "delete: 1001 left, want 1000",
    }
    it("report a peer that dies, with the last thing it said", function()
      local out, status = bench(string.format(
        "--n %d --only fmap,table --fault exit", N))
      assert.equal(1, status, out)
      assert.equal("FAILED: fault: exiting before the scan (round 1, exit 1)",
                   row_of(out, "lua table"):match("FAILED: .*$"))
      assert.equal("ok", row_of(out, "fmap bptree"):match("(%S+)$"), out)
    end)

    it("catch a blob store or a list that reads one record wrong",
       function()
      local out, status = bench(string.format(
        "--n %d --only blobs-fmap,list-fmap --fault store-get", N))
      assert.equal(1, status, out)
      assert.equal("FAILED: get: 1 mismatches",
                   row_of(out, "fmap varchar"):match("FAILED: .*$"))
      assert.equal("FAILED: get: 1 mismatches",
                   row_of(out, "fmap mmlist"):match("FAILED: .*$"))
    end)

    for fault, want in pairs(cases) do
      it("catch a store that is wrong in " .. fault, function()
        local out, status = bench(string.format(
          "--n %d --only table --fault %s", N, fault))
        assert.equal(1, status, out)
        assert.equal(want, row_of(out, "lua table"):match("FAILED: .*$"))
      end)
    end
  end)

  describe("--rounds", function()
    it("runs every peer each round and keeps the verified best", function()
      local out, status = bench(string.format(
        "--n %d --rounds 2 --only fmap,table", N))
      assert.equal(0, status, out)
      for _, label in ipairs { "fmap bptree", "lua table" } do
        local _, runs = out:gsub("running " .. label:gsub("%p", "%%%0")
                                 .. " %(round %d%)", "")
        assert.equal(2, runs, out)
        assert.equal("ok", row_of(out, label):match("(%S+)$"), out)
      end
      assert.truthy(out:find("--rounds 2 --only fmap,table", 1, true), out)
    end)

    it("fails a peer when any round fails its checks", function()
      local out, status = bench(string.format(
        "--n %d --rounds 2 --only table --fault scan", N))
      assert.equal(1, status, out)
      assert.equal("FAILED: scan: 1 out of order",
                   row_of(out, "lua table"):match("FAILED: .*$"))
    end)
  end)

  describe("the external peers", function()
    it("lmdb and tarantool verify every phase, or are skipped with the "
       .. "reason", function()
      local out, status = bench(string.format("--n %d --only lmdb,tarantool",
                                              N))
      assert.equal(0, status, out)
      for _, name in ipairs { "lmdb", "tarantool" } do
        local line = assert(row_of(out, PEERS[name]), out)
        assert.truthy(line:match(" ok$")
                      or line:find("install_peers.sh", 1, true), line)
      end
    end)
  end)

  describe("bench/bench_pair.sh", function()
    local function pair (args)
      return h.run("bash bench/bench_pair.sh " .. args .. " 2>&1")
    end

    it("runs two builds side by side and prints their rates and ratios",
       function()
      -- this checkout against itself: the ratios are there, whatever
      -- they are
      local out, status = pair(". 2 fmap,table " .. N)
      assert.equal(0, status, out)
      assert.truthy(out:find("bench.lua --n " .. N .. " --only fmap,table, "
                             .. "2 pair(s)", 1, true), out)
      for p = 1, 2 do
        assert.truthy(out:find("pair " .. p .. " (this build on core", 1,
                               true), out)
      end
      for _, label in ipairs({ "fmap bptree", "lua table" }) do
        local n = 0
        for _ in out:gmatch(label:gsub("%p", "%%%0") .. " +this/other  "
                            .. "insert [%d.]+  get [%d.]+  scan [%d.]+  "
                            .. "delete [%d.]+\n") do
          n = n + 1
        end
        assert.equal(2, n, out)
        n = 0
        for who in out:gmatch("  (%a+) +" .. label:gsub("%p", "%%%0")
                              .. " +insert %d+  get %d+  scan %d+  "
                              .. "delete %d+\n") do
          n = n + 1
          assert.truthy(who == "this" or who == "other")
        end
        assert.equal(4, n, out)
      end
    end)

    it("fails when a run fails, with what it printed", function()
      local dir = h.tmpname(".d")
      assert(os.execute("mkdir -p " .. dir .. "/build/bin"))
      h.writefile(dir .. "/build/bin/fmap", "#!/bin/sh\necho boom\nexit 1\n")
      assert(os.execute("chmod +x " .. dir .. "/build/bin/fmap"))
      local out, status = pair(dir .. " 1 table 100")
      os.execute("rm -rf " .. dir)
      assert.equal(1, status, out)
      assert.truthy(out:find("the other build's run failed:\nboom\n", 1,
                             true), out)
    end)

    it("refuses a missing or unbuilt checkout and bad counts", function()
      local dir = h.tmpname(".d")
      assert(os.execute("mkdir -p " .. dir))
      for args, msg in pairs({
        [""] = "OTHER, a built checkout to compare with, is missing",
        [dir .. "/none"] = "no folder " .. dir .. "/none",
        [dir] = dir .. "/build/bin/fmap is missing: build it",
        [". 0"] = "PAIRS wants a positive integer",
        [". 1 fmap x"] = "N wants a positive integer",
      }) do
        local out, status = pair(args)
        assert.equal(2, status, out)
        assert.equal("bench_pair.sh: " .. msg .. "\nusage: bash "
                     .. "bench/bench_pair.sh OTHER [PAIRS] [ONLY] [N]\n",
                     out)
      end
      os.execute("rm -rf " .. dir)
    end)

    it("prints its usage and what it does with -h or --help, and exits 0",
       function()
      for _, flag in ipairs { "-h", "--help" } do
        local out, status = pair(flag)
        assert.equal(0, status, out)
        assert.truthy(out:find("^usage: bash bench/bench_pair.sh OTHER "
                               .. "%[PAIRS%] %[ONLY%] %[N%]\n\n"), out)
        assert.truthy(out:find("\n  PAIRS  how many pairs", 1, true), out)
      end
    end)
  end)

  describe("misuse", function()
    it("prints its usage on stdout with -h or --help and exits 0",
       function()
      for _, flag in ipairs { "-h", "--help" } do
        local out, status = h.run(h.bin() .. " bench/bench.lua " .. flag
                                  .. " 2>/dev/null")
        assert.equal(0, status, out)
        assert.truthy(out:find("^usage: fmap bench/bench.lua %[%-%-n N%]"),
                      out)
      end
    end)

    it("rejects a bad --n", function()
      local out, status = bench("--n 0")
      assert.equal(2, status)
      assert.truthy(out:find("bench.lua: --n wants a positive integer\n"
                             .. "usage: fmap bench/bench.lua", 1, true), out)
    end)

    it("rejects a bad --rounds", function()
      local out, status = bench("--rounds 0")
      assert.equal(2, status)
      assert.truthy(out:find("bench.lua: --rounds wants a positive integer",
                             1, true), out)
    end)

    it("rejects an unknown name in --only", function()
      local out, status = bench("--only fmap,bogus")
      assert.equal(2, status)
      assert.truthy(out:find("bench.lua: unknown name 'bogus' in --only",
                             1, true), out)
    end)

    it("rejects an unknown --fault", function()
      local out, status = bench("--fault insert")
      assert.equal(2, status)
      assert.truthy(out:find("bench.lua: --fault wants get, scan, delete, "
                             .. "exit or store-get", 1, true), out)
    end)

    it("rejects an unknown argument", function()
      local out, status = bench("--fast")
      assert.equal(2, status)
      assert.truthy(out:find("bench.lua: unknown argument '--fast'", 1,
                             true), out)
    end)
  end)
end)

describe("bench/bench_txn.lua", function()
  local TN = 200
  local LABELS = { "fmap bptree", "lmdb (C)", "sqlite luasql WAL",
                   "sqlite luasql DELETE", "sqlite dbi WAL",
                   "sqlite dbi DELETE" }

  -- Runs it; stderr (a "running ..." line for each peer) goes with
  -- stdout, unless quiet.
  local function txn (args, quiet)
    return h.run(h.bin() .. " bench/bench_txn.lua " .. args
                 .. (quiet and " 2>/dev/null" or " 2>&1"))
  end

  describe("the whole run", function()
    local out, status, dir, left
    setup(function()
      dir = h.tmpname(".d")
      assert(os.execute("mkdir -p " .. dir))
      out, status = txn(string.format("--n %d --dir %s", TN, dir), true)
      left = h.run("ls -A " .. dir)
      os.execute("rm -rf " .. dir)
    end)

    it("exits 0 with every peer verified or skipped, and leaves no file",
       function()
      assert.equal(0, status, out)
      assert.is_nil(out:find("FAILED"), out)
      assert.equal("", left)
    end)

    it("prints the workload, the machine, its temp dir and the command",
       function()
      assert.truthy(out:find("N = 200 inserts per batch size", 1, true), out)
      assert.truthy(out:find("machine: %d+ cores, [^\n]*; temp dir "
                             .. "[^\n]* %(%S+ on [^\n]*%)\n"), out)
      assert.truthy(out:find("command: .*bench/bench_txn.lua %-%-n 200 "
                             .. "%-%-per 1,100\n"), out)
    end)

    it("prints a table for each batch size: a row for every peer with "
       .. "its rates and latencies, or why it was skipped", function()
      for k, head in pairs {
        [1] = "transactions of 1 insert: 200 commits, each durable",
        [100] = "transactions of 100 inserts: 2 commits, each durable" } do
        -- the table ends at a blank line, or at the end when no peer
        -- ran (no ratio, no targets follow)
        local tbl = assert((out .. "\n"):match("\n" .. head:gsub("%p", "%%%0")
                                              .. "\n(.-)\n\n"), out)
        assert.truthy(tbl:find("^peer +commits/s +inserts/s +p50 ms +p99 ms"
                               .. " +checks\n"), tbl)
        for _, label in ipairs(LABELS) do
          local row = assert(tbl:match("\n" .. label:gsub("%p", "%%%0")
                                       .. "( [^\n]*)"), label .. ":\n" .. tbl)
          if row:find("skipped: ", 1, true) then
            assert.truthy(row:find("install_peers.sh", 1, true), row)
            assert.is_true(label ~= "fmap bptree", row)
          else
            assert.truthy(row:match("^ +[%d,]+ +[%d,]+ +[%d.]+ +[%d.]+  ok$"),
                          row)
          end
        end
        local ran_peer = tbl:find("\nlmdb %(C%) +[%d,]")
                         or tbl:find("\nsqlite [^\n]* +[%d,]+ ")
        if ran_peer then
          assert.truthy(tbl:find("\nfmap / best peer: [%d.]+x commits/s "
                                 .. "%(.+%)$"), tbl)
          assert.truthy(out:find("\n  commits/s at " .. k .. " a transaction "
                                 .. ">= best peer +[%d.]+x %(.+%) +"
                                 .. "%a+\n"), out)
        end
      end
    end)
  end)

  describe("--peer", function()
    it("prints one line for fmap with the count it read back", function()
      local dir = h.tmpname(".d")
      assert(os.execute("mkdir -p " .. dir))
      local out, status = txn(string.format("--peer fmap --n %d --per 7 "
                                            .. "--dir %s", TN, dir))
      local left = h.run("ls -A " .. dir)
      os.execute("rm -rf " .. dir)
      assert.equal(0, status, out)
      assert.truthy(out:match("^fmap%-bench%-txn peer=fmap n=200 per=7 "
                              .. "commits=29 secs=[%d.]+ p50=[%d.]+ "
                              .. "p99=[%d.]+ count=200\n$"), out)
      assert.equal("", left)
    end)
  end)

  describe("misuse", function()
    it("prints its usage with --help and exits 0", function()
      local out, status = txn("--help")
      assert.equal(0, status, out)
      assert.truthy(out:find("^usage: fmap bench/bench_txn.lua %[%-%-n N%]"),
                    out)
      assert.truthy(out:find("\n  --per K,...", 1, true), out)
    end)

    for args, msg in pairs {
      ["--fast"] = "unknown argument '--fast'",
      ["--n 0"] = "--n wants a positive integer",
      ["--per 1,x"] = "--per wants positive integers",
      ["--rounds 0"] = "--rounds wants a positive integer",
      ["--only fmap,bogus"] = "unknown name 'bogus' in --only",
    } do
      it("rejects " .. args .. " with its usage and exits 2", function()
        local out, status = txn(args)
        assert.equal(2, status, out)
        assert.truthy(out:find("^bench_txn.lua: " .. msg:gsub("%p", "%%%0")
                               .. "\nusage: fmap bench/bench_txn.lua"), out)
      end)
    end
  end)
end)
