--- bench/bench_txn.lua: durable small transactions, fmap's B+tree beside
-- LMDB and SQLite, in one run.
--   build/bin/fmap bench/bench_txn.lua [--n N] [--per K,...] [--only NAMES]
--                                      [--rounds R] [--dir DIR]
-- N inserts (default 20,000), made once for each K of --per (default
-- 1,100): transactions of K inserts each, every one committed durably, in
-- a fresh store. Keys and values are the standard workload's
-- (lua/fmap/workload.lua's key(i) and value(i), i = 0..N-1, in order).
-- The peers (NAMES, comma-separated; "luasql" and "dbi" name both of
-- their journal modes):
--   fmap           bptree.new(bf, 16, 16); bf:begin(), K t:add(k, v),
--                  bf:commit() (durable: the journal, one fdatasync)
--   lmdb           build/bin/fmap_bench_lmdb --txn: mdb_txn_begin, K
--                  mdb_put, mdb_txn_commit, default flags (synced)
--   luasql-wal     SQLite through LuaSQL, synchronous=FULL,
--   luasql-delete  journal_mode=WAL or DELETE (the rollback journal):
--   dbi-wal        BEGIN, K INSERTs, COMMIT into kv(k BLOB PRIMARY KEY,
--   dbi-delete     v BLOB) WITHOUT ROWID; the same through LuaDBI
-- For each: commits per second (transactions over the loop's time) and
-- the p50 and p99 latency of a transaction, begin to commit returned
-- (keys and values made inside), nearest rank over the sorted times of
-- all of them. After the loop each peer closes its store, opens it again
-- and counts the records: a count other than N fails the run. With
-- --rounds R every peer runs R times for each K, interleaved with the
-- others, and the run with the most commits/s stands (the disk's latency
-- moves with whatever else the machine does).
-- Every peer runs in a process of its own, which prints one line
--   fmap-bench-txn peer=NAME n=N per=K commits=C secs=S p50=S p99=S count=M
-- (or "fmap-bench-txn peer=NAME skipped: REASON"). All files go in a
-- directory made for the run under DIR (default $TMPDIR, else /tmp),
-- removed at the end. Exit status: 0 when every peer that ran counted what
-- it wrote, 1 when one did not, 2 for a bad command line.
local fmap = require "fmap"
local W = require "fmap.workload"
local C = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/common.lua")

local sformat = string.format
local clock = fmap.clock

-- The peers, in the order of the table. `lua` peers run in a child fmap.
local PEERS = {
  { name = "fmap", label = "fmap bptree", lua = true },
  { name = "lmdb", label = "lmdb (C)" },
  { name = "luasql-wal", label = "sqlite luasql WAL", lua = true },
  { name = "luasql-delete", label = "sqlite luasql DELETE", lua = true },
  { name = "dbi-wal", label = "sqlite dbi WAL", lua = true },
  { name = "dbi-delete", label = "sqlite dbi DELETE", lua = true },
}
local GROUPS = { luasql = { "luasql-wal", "luasql-delete" },
                 dbi = { "dbi-wal", "dbi-delete" } }

local USAGE = [[
usage: fmap bench/bench_txn.lua [--n N] [--per K,...] [--only NAMES]
                                [--rounds R] [--dir DIR]
  --n N         inserts per batch size (default 20000)
  --per K,...   inserts a transaction, one run each (default 1,100)
  --only NAMES  comma-separated, of fmap lmdb luasql-wal luasql-delete
                dbi-wal dbi-delete (luasql, dbi: both of their modes)
  --rounds R    runs of each peer, interleaved; the fastest stands
                (default 1)
  --dir DIR     where the files go (default $TMPDIR, else /tmp)
  --help        this text
]]

local function usage (msg)
  io.stderr:write("bench_txn.lua: ", msg, "\n", USAGE)
  os.exit(2)
end

local function posint (v)
  local n = math.tointeger(tonumber(v or ""))
  return n and n >= 1 and n or nil
end

local opts = { n = 20000, per = { 1, 100 }, per_arg = "1,100", rounds = 1 }
do
  local i = 1
  while arg[i] do
    local a, v = arg[i], arg[i + 1]
    if a == "--help" or a == "-h" then
      io.write(USAGE)
      os.exit(0)
    elseif a == "--n" then
      opts.n = posint(v) or usage("--n wants a positive integer")
      i = i + 2
    elseif a == "--per" then
      opts.per, opts.per_arg = {}, v
      for k in (v or ""):gmatch("[^,]+") do
        opts.per[#opts.per + 1] = posint(k)
                                  or usage("--per wants positive integers")
      end
      if #opts.per == 0 then usage("--per wants positive integers") end
      i = i + 2
    elseif a == "--only" then
      if not v then usage("--only wants a list of names") end
      opts.only, opts.only_arg = {}, v
      for name in v:gmatch("[^,%s]+") do
        local known = GROUPS[name] ~= nil
        for _, p in ipairs(PEERS) do known = known or p.name == name end
        if not known then usage("unknown name '" .. name .. "' in --only") end
        for _, each in ipairs(GROUPS[name] or { name }) do
          opts.only[each] = true
        end
      end
      i = i + 2
    elseif a == "--rounds" then
      opts.rounds = posint(v) or usage("--rounds wants a positive integer")
      i = i + 2
    elseif a == "--dir" then
      opts.dir = v or usage("--dir wants a directory")
      i = i + 2
    elseif a == "--peer" then   -- child mode, see the end of this file
      opts.peer = v or usage("--peer wants a name")
      i = i + 2
    else
      usage("unknown argument '" .. tostring(a) .. "'")
    end
  end
end
local N = opts.n
local DIR = opts.dir or os.getenv("TMPDIR") or "/tmp"

------------------------------------------------------------------------------
-- The Lua peers. Each opener takes a path and returns a store, or nil and
-- why it is skipped. A store has
--   begin(), insert(k, v), commit()   one durable transaction
--   close()                           closes it (untimed)
--   count() -> n                      opens it again, counts the records,
--                                     closes it
--   remove()                          removes its files

local sqlite_remove = C.sqlite_remove

local open = {}

function open.fmap (path)
  local bptree = require "fmap.bptree"
  local bf = assert(fmap.create(path))
  local t = assert(bptree.new(bf, 16, 16))
  assert(bf:flush())   -- the empty tree, durable before the clock starts
  return {
    begin = function () bf:begin() end,
    insert = function (k, v) t:add(k, v) end,
    commit = function () assert(bf:commit()) end,
    close = function () assert(bf:close()) end,
    count = function ()
      local rbf = assert(fmap.open(path))
      local n = 0
      for _ in bptree.open(rbf):iterate() do n = n + 1 end
      assert(rbf:close())
      return n
    end,
    remove = function () os.remove(path); os.remove(path .. "-wal") end,
  }
end

-- The table and the settings of both bindings, made through row(sql) (a
-- binding's, of bench/common.lua); mode is "wal" or "delete", which the
-- journal_mode pragma answers.
local function sqlite_setup (row, mode)
  for _, sql in ipairs { "PRAGMA journal_mode=" .. mode:upper(),
                         "PRAGMA synchronous=FULL",
                         "CREATE TABLE kv(k BLOB PRIMARY KEY, v BLOB) "
                         .. "WITHOUT ROWID" } do
    local got = (row(sql) or {})[1]
    assert(got == nil or got == mode, sql .. " gave " .. tostring(got))
  end
end

-- The number of rows of kv, counted on a connection of its own.
local function sqlite_count (row)
  return math.tointeger(tonumber(row("SELECT count(*) FROM kv")[1]))
end

local HEX16 = ("%02x"):rep(16)
local function hex16 (s) return sformat(HEX16, s:byte(1, 16)) end

-- SQLite through LuaSQL: no parameter binding, so each insert is an SQL
-- text with the key and value as blob literals x'...'.
local function luasql_store (path, mode)
  local con, env, exec, row = C.luasql_open(path)
  if not con then return nil, env end
  sqlite_setup(row, mode)
  return {
    begin = function () exec("BEGIN") end,
    insert = function (k, v)
      exec(sformat("INSERT INTO kv VALUES (x'%s', x'%s')", hex16(k),
                   hex16(v)))
    end,
    commit = function () exec("COMMIT") end,
    close = function () con:close() end,
    count = function ()
      local c = assert(env:connect(path))
      local n = sqlite_count(select(2, C.luasql_runner(c)))
      c:close()
      env:close()
      return n
    end,
    remove = function () sqlite_remove(path) end,
  }
end

-- SQLite through LuaDBI: prepared statements, BEGIN and COMMIT too, each
-- reused; keys and values bound as CAST(? AS BLOB).
local function dbi_store (path, mode)
  local db, DBI, prepare, row = C.dbi_open(path)
  if not db then return nil, DBI end
  sqlite_setup(row, mode)
  local b = prepare("BEGIN")
  local ins = prepare("INSERT INTO kv VALUES (CAST(? AS BLOB), "
                      .. "CAST(? AS BLOB))")
  local c = prepare("COMMIT")
  return {
    begin = function () assert(b:execute()) end,
    insert = function (k, v) assert(ins:execute(k, v)) end,
    commit = function () assert(c:execute()) end,
    close = function ()
      b:close(); ins:close(); c:close()
      db:close()
    end,
    count = function ()
      local d = assert(DBI.Connect("SQLite3", path))
      local n = sqlite_count(select(2, C.dbi_runner(d)))
      d:close()
      return n
    end,
    remove = function () sqlite_remove(path) end,
  }
end

open["luasql-wal"] = function (path) return luasql_store(path, "wal") end
open["luasql-delete"] = function (path) return luasql_store(path, "delete") end
open["dbi-wal"] = function (path) return dbi_store(path, "wal") end
open["dbi-delete"] = function (path) return dbi_store(path, "delete") end

-- The nearest-rank pct-th percentile of a sorted array: rank
-- ceil(n * pct / 100), as bench_lmdb.c computes it.
local function percentile (sorted, pct)
  local r = (#sorted * pct + 99) // 100
  return sorted[r < 1 and 1 or r]
end

-- Child mode: one Lua peer, one batch size; prints its line.
if opts.peer then
  local opener = open[opts.peer]
  if not opener then usage("no Lua peer named '" .. opts.peer .. "'") end
  local K = opts.per[1]
  local path = sformat("%s/%s-%d", DIR, opts.peer, K)
  local store, why = opener(path)
  if not store then
    print(sformat("fmap-bench-txn peer=%s skipped: %s", opts.peer, why))
    os.exit(0)
  end
  local begin, insert, commit = store.begin, store.insert, store.commit
  local key, value = W.key, W.value
  local commits = (N + K - 1) // K
  local lat = {}
  for c = 1, commits do lat[c] = 0.0 end   -- the table made before the clock
  collectgarbage()
  local i = 0
  local t0 = clock()
  for c = 1, commits do
    local t = clock()
    begin()
    for _ = 1, math.min(K, N - i) do
      insert(key(i), value(i))
      i = i + 1
    end
    commit()
    lat[c] = clock() - t
  end
  local secs = clock() - t0
  store.close()
  local count = store.count()
  store.remove()
  table.sort(lat)
  print(sformat("fmap-bench-txn peer=%s n=%d per=%d commits=%d secs=%.9f "
                .. "p50=%.9f p99=%.9f count=%d", opts.peer, N, K, commits,
                secs, percentile(lat, 50), percentile(lat, 99), count))
  os.exit(0)
end

------------------------------------------------------------------------------
-- Parent mode: each peer in a child, for each batch size, then the tables.

local shell_quote, capture = C.shell_quote, C.capture
local HOST, BIN_DIR = C.HOST, C.BIN_DIR
local SCRIPT = arg[0]

local RUN_DIR = capture("mktemp -d " .. shell_quote(DIR .. "/fmap-bench-txn."
                        .. "XXXXXX") .. " 2>/dev/null"):match("[^\n]+")
if not RUN_DIR then
  io.stderr:write("bench_txn.lua: cannot make a directory in ", DIR, "\n")
  os.exit(1)
end

local function selected (name) return not opts.only or opts.only[name] end

-- The command of a peer for batch size k, or nil and why it is skipped.
local function command (peer, k)
  if peer.lua then
    return sformat("%s %s --peer %s --n %d --per %d --dir %s",
                   shell_quote(HOST), shell_quote(SCRIPT), peer.name, N, k,
                   shell_quote(RUN_DIR))
  end
  local exe = BIN_DIR .. "/fmap_bench_lmdb"
  if not select(2, capture("test -x " .. shell_quote(exe))) then
    return nil, exe .. " not built (needs liblmdb-dev: "
                .. "bash bench/install_peers.sh)"
  end
  return sformat("%s --txn %s %d %d", shell_quote(exe),
                 shell_quote(RUN_DIR .. "/lmdb-" .. k), N, k)
end

local FIELDS = { "n", "per", "commits", "secs", "p50", "p99", "count" }

-- Runs one peer for batch size k: its fields, or {skipped} or {failed}.
local function run_peer (peer, k, round)
  local cmd, why = command(peer, k)
  if not cmd then return { skipped = why } end
  io.stderr:write(sformat("running %s, %d a transaction%s ...\n",
                          peer.label, k, opts.rounds > 1
                          and (" (round " .. round .. ")") or ""))
  local errpath = RUN_DIR .. "/stderr"
  local out, ok = capture(cmd .. " 2>" .. shell_quote(errpath))
  local f = io.open(errpath, "r")
  local err = f and f:read("a") or ""
  if f then f:close() end
  os.remove(errpath)
  local name = peer.name:gsub("%p", "%%%0")
  why = out:match("fmap%-bench%-txn peer=" .. name .. " skipped: ([^\n]*)")
  if why then return { skipped = why } end
  local line = out:match("fmap%-bench%-txn peer=" .. name .. " ([^\n]*)")
  local r = {}
  for key, v in (line or ""):gmatch("(%S+)=(%S+)") do r[key] = tonumber(v) end
  for _, field in ipairs(FIELDS) do
    if not line or r[field] == nil then
      local last = err:match("([^\n]*%S[^\n]*)\n*$")
                   or out:match("([^\n]*%S[^\n]*)\n*$") or "no output"
      return { failed = last }
    end
  end
  if r.n ~= N or r.per ~= k or r.count ~= N then
    r.problem = sformat("counted %d records after a reopen, want %d",
                        r.count, N)
  elseif not ok then
    r.problem = "exit status not 0"
  end
  return r
end

local function first_line (cmd, default)
  local out = capture(cmd .. " 2>/dev/null")
  return out:match("[^\n]*%S[^\n]*") or default
end

local thousands = C.thousands

local cpuinfo = io.open("/proc/cpuinfo", "r")
local cpu = cpuinfo and cpuinfo:read("a"):match("model name%s*:%s*([^\n]+)")
if cpuinfo then cpuinfo:close() end
local fs = first_line("df -T " .. shell_quote(RUN_DIR)
                      .. " | awk 'NR == 2 { print $2 \" on \" $1 }'", "?")
print(sformat("fmap bench_txn: durable transactions, N = %s inserts per "
              .. "batch size (%s)", thousands(N), fmap.VERSION or "fmap"))
print(sformat("machine: %s cores, %s; temp dir %s (%s)",
              first_line("nproc", "?"), cpu or "unknown CPU", DIR, fs))
print(sformat("command: %s %s --n %d --per %s%s%s", HOST, SCRIPT, N,
              opts.per_arg, opts.only and (" --only " .. opts.only_arg)
              or "", opts.rounds > 1 and (" --rounds " .. opts.rounds)
              or ""))

local failed = false
local verdicts = {}
for _, k in ipairs(opts.per) do
  local res = {}
  for round = 1, opts.rounds do
    for _, peer in ipairs(PEERS) do
      local best = res[peer.name]
      if selected(peer.name) and not (best and (best.skipped or best.failed
                                                or best.problem)) then
        local r = run_peer(peer, k, round)
        if r.failed or r.problem then failed = true end
        if not best or r.skipped or r.failed or r.problem
           or r.secs < best.secs then
          res[peer.name] = r
        end
      end
    end
  end
  local commits = (N + k - 1) // k
  print()
  print(sformat("transactions of %d insert%s: %s commits, each durable", k,
                k == 1 and "" or "s", thousands(commits)))
  print(sformat("%-21s %11s %11s %9s %9s  %s", "peer", "commits/s",
                "inserts/s", "p50 ms", "p99 ms", "checks"))
  local best, best_name
  for _, peer in ipairs(PEERS) do
    local r = res[peer.name]
    if r and r.skipped then
      print(sformat("%-21s skipped: %s", peer.label, r.skipped))
    elseif r and r.failed then
      print(sformat("%-21s FAILED: %s", peer.label, r.failed))
    elseif r then
      r.rate = r.commits / r.secs
      print(sformat("%-21s %11s %11s %9.3f %9.3f  %s", peer.label,
                    thousands(r.rate), thousands(N / r.secs), r.p50 * 1e3,
                    r.p99 * 1e3, r.problem and ("FAILED: " .. r.problem)
                    or "ok"))
      if peer.name ~= "fmap" and not r.problem
         and (not best or r.rate > best) then
        best, best_name = r.rate, peer.label
      end
    end
  end
  local f = res.fmap
  if f and f.rate and not f.problem and best then
    local x = f.rate / best
    print(sformat("fmap / best peer: %.2fx commits/s (%s)", x, best_name))
    verdicts[#verdicts + 1] = { k = k, x = x, peer = best_name }
  end
end

if #verdicts > 0 then
  print()
  print("targets")
  for _, v in ipairs(verdicts) do
    print(sformat("  %-44s %-26s %s", sformat("commits/s at %d a transaction "
                  .. ">= best peer", v.k), sformat("%.2fx (%s)", v.x,
                  v.peer), v.x >= 1 and "met" or "MISSED"))
  end
end

os.execute("rm -rf " .. shell_quote(RUN_DIR))
os.exit(failed and 1 or 0)
