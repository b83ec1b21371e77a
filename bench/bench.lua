--- bench/bench.lua: fmap's B+tree beside the stores people would pick
-- instead, on the standard workload, in one run.
--   build/bin/fmap bench/bench.lua [--n N] [--rounds R] [--only NAMES]
-- N records (default 1,000,000); R rounds (default 1): each peer runs R
-- times, interleaved with the others, and each phase keeps its best time,
-- which steadies the ratios on a busy machine; NAMES a comma-separated
-- subset of
--   fmap, fmap-tx, table, luasql, dbi, lmdb, tarantool, engine, blobs, list
-- ("engine" is the block-layer micro-benchmarks, bench/bench_engine.lua;
-- "fmap-tx" is fmap's B+tree with a transaction per write phase; "blobs"
-- and "list" are the sections of the blob store and the list beside
-- SQLite, bench/stores.lua, whose peers blobs-fmap, blobs-dbi,
-- blobs-luasql, list-fmap, list-dbi and list-luasql may be named alone).
--
-- The workload, exactly (figures compare across versions only if it stays so):
--   key i   = string.pack(">I8I8", i * 0x9E3779B97F4A7C15, i), i = 0..N-1
--             (the multiplication wraps mod 2^64); value i = "val:%012d"
--   insert  all N in order into an empty file-backed store, then one durable
--           flush (included in the time)
--   get     N lookups, i = (j * 7919) % N for j = 0..N-1, each value checked
--   scan    the whole store in key order, order and count checked
--   delete  every even i, then one durable flush (included), count checked
-- The Lua peers run it through lua/fmap/workload.lua (the keys, values and
-- phase drivers every benchmark script shares); LMDB and Tarantool run the
-- same in C and in Tarantool's Lua. fmap's flush commits durably what the
-- phase changed (the journal, then a checkpoint once it passes 4 MiB);
-- fmap-tx runs insert and delete each inside bf:begin() and ends them with
-- a durable bf:commit() instead, its get and scan outside any transaction
-- (they store nothing), and the table prints what the transactions cost.
-- Each phase is timed on a monotonic clock (fmap.clock). Every peer runs in
-- a process of its own, so that its peak RSS (VmHWM) is its own: the Lua
-- peers as `fmap bench/bench.lua --peer NAME --n N --dir DIR`, LMDB as
-- build/bin/fmap_bench_lmdb, Tarantool as `tarantool
-- bench/bench_tarantool.lua`. Each child prints one line
--   fmap-bench peer=NAME n=N insert=S get=S scan=S delete=S get_mismatches=M
--     scan_count=C scan_unsorted=U removed=R remaining=K file_bytes=B
--     rss_kb=KB
-- (the fmap peers add journal_bytes=J, the part of file_bytes that is the
-- journal PATH-wal, and checkpoints=C, how many the engine had made by
-- then), or "fmap-bench peer=NAME skipped: REASON", which this script
-- parses.
-- A peer that is not installed is reported as skipped, never faked. The exit
-- status is 0 when every peer that ran verified every phase.
-- `--fault get|scan|delete` makes the table peer wrong in that phase (one
-- record lost, two keys out of order, one delete ignored), `--fault
-- exit` makes its process die before the scan leaving a file behind, and
-- `--fault store-get` makes the fmap peers of the blob and list sections
-- read one record wrong, so that spec/bench_spec.lua can show the checks
-- and the clean-up work.
local fmap = require "fmap"
local W = require "fmap.workload"
-- What the bench scripts share, and the blob store's and the list's
-- sections, beside this script.
local HERE = arg[0]:match("^(.*)/[^/]*$") or "."
local C = dofile(HERE .. "/common.lua")
local STORES = dofile(HERE .. "/stores.lua")
local STORE_NAMES = STORES.names()

local sformat = string.format

-- The peers, in the order of the table. `lua` peers run in a child fmap.
local PEERS = {
  { name = "fmap", label = "fmap bptree", lua = true },
  { name = "fmap-tx", label = "fmap tx/phase", lua = true },
  { name = "table", label = "lua table", lua = true },
  { name = "luasql", label = "sqlite luasql", lua = true },
  { name = "dbi", label = "sqlite dbi", lua = true },
  { name = "lmdb", label = "lmdb (C)" },
  { name = "tarantool", label = "tarantool" },
}
local PHASES = { "insert", "get", "scan", "delete" }

-- Prints the usage: after msg on stderr, exiting 2; with no msg (-h,
-- --help) on stdout, exiting 0.
local function usage (msg)
  local out = msg and io.stderr or io.stdout
  if msg then out:write("bench.lua: ", msg, "\n") end
  out:write("usage: fmap bench/bench.lua [--n N] [--rounds R] "
            .. "[--only NAMES]\n",
            "  NAMES: comma-separated, of fmap fmap-tx table luasql ",
            "dbi lmdb tarantool engine blobs list\n")
  os.exit(msg and 2 or 0)
end

local opts = { n = 1000000, rounds = 1 }
do
  -- the value v of option flag, a positive integer
  local function positive (v, flag)
    local n = math.tointeger(tonumber(v or ""))
    if not n or n < 1 then usage(flag .. " wants a positive integer") end
    return n
  end
  local i = 1
  while arg[i] do
    local a, v = arg[i], arg[i + 1]
    if a == "--n" or a == "--rounds" then
      opts[a:sub(3)] = positive(v, a)
      i = i + 2
    elseif a == "--only" then
      if not v then usage("--only wants a list of names") end
      opts.only, opts.only_arg = {}, v
      for name in v:gmatch("[^,%s]+") do
        local known = name == "engine" or STORE_NAMES[name] ~= nil
        for _, p in ipairs(PEERS) do known = known or p.name == name end
        if not known then usage("unknown name '" .. name .. "' in --only") end
        opts.only[name] = true
      end
      i = i + 2
    elseif a == "--fault" then
      if v ~= "get" and v ~= "scan" and v ~= "delete" and v ~= "exit"
         and v ~= "store-get" then
        usage("--fault wants get, scan, delete, exit or store-get")
      end
      opts.fault = v
      i = i + 2
    elseif a == "-h" or a == "--help" then usage()
    elseif a == "--peer" then opts.peer = v; i = i + 2
    elseif a == "--dir" then opts.dir = v; i = i + 2
    else usage("unknown argument '" .. tostring(a) .. "'") end
  end
end
local N = opts.n
local DIR = opts.dir or os.getenv("TMPDIR") or "/tmp"

------------------------------------------------------------------------------
-- The Lua peers run fmap.workload's phases over a store adapter (see the top
-- of lua/fmap/workload.lua: insert, get, scan, delete, flush, count, and
-- begin, which fmap-tx uses). Here an adapter also has
--   before(phase), done(phase)  optional, around each phase, outside its
--                               time: SQLite opens its transaction (a
--                               deferred BEGIN, which takes no lock) and
--                               ends the read transactions of get and scan;
--                               the write phases commit inside flush, timed
--   file_bytes() -> n           bytes on disk (after the insert, untimed)
--   close()

local file_size = W.file_size

local function nothing () end

------------------------------------------------------------------------------
-- The Lua peers. Each opener returns a store, or nil and why it is skipped.

local open = {}

-- fmap's B+tree in a file-backed BlockFile. flush() commits durably: the
-- changed blocks to the journal PATH-wal, one fdatasync, and a checkpoint
-- into the file once the journal passes 4 MiB. Its size is the file's and
-- the journal's.
local function fmap_store (path, transactions)
  local ok, bptree = pcall(require, "fmap.bptree")
  if not ok or type(bptree) ~= "table" then
    return nil, "fmap.bptree not loadable: "
                .. tostring(bptree):match("^[^\n]*"):gsub(":$", "")
  end
  local bf = assert(fmap.create(path))
  local store = W.bptree_store(bptree.new(bf, 16, 16),
                               { transactions = transactions })
  store.journal_bytes = function () return file_size(path .. "-wal") end
  store.checkpoints = function () return bf:stats().checkpoints end
  store.file_bytes = function ()
    return file_size(path) + store.journal_bytes()
  end
  store.close = function () assert(bf:remove()) end
  return store
end

function open.fmap (path) return fmap_store(path, false) end

-- The same with a transaction per write phase: bf:begin() opens insert and
-- delete, a durable bf:commit() ends them (see fmap.workload).
open["fmap-tx"] = function (path) return fmap_store(path, true) end

-- A plain Lua table: the in-memory upper bound for Lua code. It has no
-- order, so its scan sorts the keys (inside the scan's time).
function open.table ()
  local store = W.table_store()
  store.file_bytes = function () return 0 end
  store.close = nothing
  -- The faults of --fault, each on the record of key 0.
  local k0 = W.key(0)
  if opts.fault == "get" then
    local get = store.get
    store.get = function (k) if k ~= k0 then return get(k) end end
  elseif opts.fault == "scan" then
    local scan = store.scan
    store.scan = function ()
      local it = scan()
      local first = it()
      local second = it()
      local j = 0
      return function ()
        j = j + 1
        if j == 1 then return second end
        if j == 2 then return first end
        return it()
      end
    end
  elseif opts.fault == "delete" then
    local delete = store.delete
    store.delete = function (k)
      if k ~= k0 then return delete(k) end
      return 0
    end
  elseif opts.fault == "exit" then
    store.scan = function ()
      -- die as a crashed peer does: its file left behind
      local f = assert(io.open(DIR .. "/table-left-behind", "w"))
      f:close()
      io.stderr:write("fault: exiting before the scan\n")
      os.exit(1)
    end
  end
  return store
end

local HEX16 = ("%02x"):rep(16)
local function hex16 (s) return sformat(HEX16, s:byte(1, 16)) end

local sqlite_remove = C.sqlite_remove

-- The durable flush of SQLite in WAL mode with synchronous=NORMAL: commits
-- are not synced; a checkpoint syncs the WAL, copies it into the database
-- and syncs that. TRUNCATE leaves an empty WAL, so the file size is the
-- database's.
local SQL_SETUP = {
  "PRAGMA journal_mode=WAL",
  "PRAGMA synchronous=NORMAL",
  "CREATE TABLE kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID",
}
local SQL_CHECKPOINT = C.SQL_CHECKPOINT

-- What the two SQLite stores share, added to store: the phases'
-- transactions (before: BEGIN; flush commits, then checkpoints the WAL into the
-- database), count and file_bytes. run(sql) executes a statement, row(sql)
-- returns its first row.
local function sqlite_store (store, path, run, row)
  store.before = function () run("BEGIN") end
  store.flush = function ()
    run("COMMIT")
    assert(tonumber(row(SQL_CHECKPOINT)[1]) == 0, "checkpoint was blocked")
  end
  store.count = function ()
    return math.tointeger(tonumber(row("SELECT count(*) FROM kv")[1]))
  end
  store.file_bytes = function ()
    return file_size(path) + file_size(path .. "-wal")
  end
  return store
end

-- SQLite through LuaSQL (lua-sql-sqlite3). LuaSQL 2.6 has no prepared
-- statements or parameter binding: each operation is an SQL text, the keys
-- and values written as blob literals x'...'. Rows come back as strings
-- with their length, so the scan sees the raw keys.
function open.luasql (path)
  local con, env, exec, row = C.luasql_open(path)
  if not con then return nil, env end
  for _, sql in ipairs(SQL_SETUP) do row(sql) end
  local cursor
  return sqlite_store({
    insert = function (k, v)
      exec(sformat("INSERT INTO kv VALUES (x'%s', x'%s')", hex16(k),
                   hex16(v)))
    end,
    get = function (k)
      local cur = exec(sformat("SELECT v FROM kv WHERE k = x'%s'", hex16(k)))
      local v = cur:fetch()
      cur:close()
      return v
    end,
    scan = function ()
      cursor = exec("SELECT k, v FROM kv ORDER BY k")
      return function () return cursor:fetch() end
    end,
    delete = function (k)
      return math.tointeger(exec(sformat("DELETE FROM kv WHERE k = x'%s'",
                                         hex16(k))))
    end,
    done = function (phase)
      if cursor then cursor:close(); cursor = nil end
      if phase == "get" or phase == "scan" then exec("COMMIT") end
    end,
    close = function ()
      con:close()
      env:close()
      sqlite_remove(path)
    end,
  }, path, exec, row)
end

-- SQLite through LuaDBI (lua-dbi-sqlite3): prepared statements, reused.
-- DBD.SQLite3 binds strings as text with their length, so the keys and
-- values are cast to blobs in the SQL; it returns columns as C strings
-- (cut at the first zero byte, and keys hold zero bytes), so the scan reads
-- hex(k), whose order is the keys' order.
function open.dbi (path)
  local db, DBI, prepare, row = C.dbi_open(path)
  if not db then return nil, DBI end
  for _, sql in ipairs(SQL_SETUP) do row(sql) end
  local ins = prepare("INSERT INTO kv VALUES (CAST(? AS BLOB), "
                      .. "CAST(? AS BLOB))")
  local sel = prepare("SELECT v FROM kv WHERE k = CAST(? AS BLOB)")
  local del = prepare("DELETE FROM kv WHERE k = CAST(? AS BLOB)")
  local all = prepare("SELECT hex(k), v FROM kv ORDER BY k")
  local stmts = { ins, sel, del, all }
  return sqlite_store({
    insert = function (k, v) assert(ins:execute(k, v)) end,
    get = function (k)
      assert(sel:execute(k))
      local r = sel:fetch(false)
      return r and r[1]
    end,
    scan = function ()
      assert(all:execute())
      return function ()
        local r = all:fetch(false)
        if r then return r[1], r[2] end
      end
    end,
    delete = function (k)
      assert(del:execute(k))
      return del:affected()
    end,
    done = function (phase)
      if phase == "get" or phase == "scan" then row("COMMIT") end
    end,
    close = function ()
      for _, st in ipairs(stmts) do st:close() end
      db:close()
      sqlite_remove(path)
    end,
  }, path, row, row)
end

local RESULT_FIELDS = { "insert", "get", "scan", "delete", "get_mismatches",
                        "scan_count", "scan_unsorted", "removed", "remaining",
                        "file_bytes", "rss_kb" }

-- Child mode: run one Lua peer and print its line.
if opts.peer and STORE_NAMES[opts.peer] then
  STORES.child(opts.peer, N, DIR, opts.fault)
  os.exit(0)
end
if opts.peer then
  local opener = open[opts.peer]
  if not opener then usage("no Lua peer named '" .. opts.peer .. "'") end
  local path = sformat("%s/fmap-bench-%s-%d-%d", DIR, opts.peer,
                       os.time(), math.random(1 << 30))
  local store, why = opener(path)
  if not store then
    print(sformat("fmap-bench peer=%s skipped: %s", opts.peer, why))
    os.exit(0)
  end
  local res, file_bytes, journal_bytes, checkpoints = {}, nil, nil, nil
  for _, phase in ipairs(W.PHASES) do
    if store.before then store.before(phase) end
    res[phase] = W[phase](store, N)
    if store.done then store.done(phase) end
    if phase == "insert" then
      file_bytes = store.file_bytes()
      journal_bytes = store.journal_bytes and store.journal_bytes()
      checkpoints = store.checkpoints and store.checkpoints()
    end
  end
  store.close()
  local r = {
    insert = res.insert.secs, get = res.get.secs, scan = res.scan.secs,
    delete = res.delete.secs, get_mismatches = res.get.mismatches,
    scan_count = res.scan.count, scan_unsorted = res.scan.unsorted,
    removed = res.delete.removed, remaining = res.delete.remaining,
    file_bytes = file_bytes, rss_kb = W.peak_rss_kb() or -1,
  }
  local out = { "fmap-bench", "peer=" .. opts.peer, "n=" .. N }
  for _, f in ipairs(RESULT_FIELDS) do
    local x = r[f]
    out[#out + 1] = f .. "=" .. (math.type(x) == "float"
                                 and sformat("%.9f", x) or tostring(x))
  end
  if journal_bytes then
    out[#out + 1] = "journal_bytes=" .. journal_bytes
    out[#out + 1] = "checkpoints=" .. checkpoints
  end
  print(table.concat(out, " "))
  os.exit(0)
end

------------------------------------------------------------------------------
-- Parent mode: one child per peer, one after the other, then the table.

local shell_quote, capture = C.shell_quote, C.capture
local HOST, BIN_DIR = C.HOST, C.BIN_DIR
local SCRIPT = arg[0]
local SCRIPT_DIR = HERE

local function have_command (name)
  return capture("command -v " .. name .. " 2>/dev/null"):match("%S") ~= nil
end

local function executable (path)
  local ok = os.execute("test -x " .. shell_quote(path))
  return ok == true
end

-- A private directory for this run: every child's files and captured
-- stderr go there, and it goes at the end even when a child died mid-run.
local RUN_DIR
do
  local p = io.popen("mktemp -d " .. shell_quote(DIR .. "/fmap-bench.XXXXXX")
                     .. " 2>/dev/null")
  RUN_DIR = p:read("l")
  p:close()
  if not RUN_DIR or RUN_DIR == "" then
    io.stderr:write("bench.lua: cannot make a directory in ", DIR, "\n")
    os.exit(1)
  end
end

-- The command line of a peer, or nil and why it is skipped.
local function command (peer)
  local tmp = RUN_DIR .. "/" .. peer.name
  if peer.lua then
    return sformat("%s %s --peer %s --n %d --dir %s%s", shell_quote(HOST),
                   shell_quote(SCRIPT), peer.name, N, shell_quote(RUN_DIR),
                   (opts.fault and peer.name == "table")
                   and (" --fault " .. opts.fault) or "")
  elseif peer.name == "lmdb" then
    local exe = BIN_DIR .. "/fmap_bench_lmdb"
    if not executable(exe) then
      return nil, exe .. " not built (needs liblmdb-dev: "
                  .. "bash bench/install_peers.sh)"
    end
    return sformat("%s %s %d", shell_quote(exe), shell_quote(tmp), N)
  elseif peer.name == "tarantool" then
    if not have_command("tarantool") then
      return nil, "tarantool not installed (bash bench/install_peers.sh)"
    end
    return sformat("tarantool %s %s %d",
                   shell_quote(SCRIPT_DIR .. "/bench_tarantool.lua"),
                   shell_quote(tmp), N)
  end
end

-- Runs a command, returns its stdout and the tail of its stderr.
local function run (cmd)
  local errpath = RUN_DIR .. "/stderr"
  local p = io.popen(cmd .. " 2>" .. shell_quote(errpath), "r")
  local out = p:read("a")
  local ok, how, code = p:close()
  local err = ""
  local f = io.open(errpath, "r")
  if f then err = f:read("a"); f:close() end
  os.remove(errpath)
  return out, err, ok, how, code
end

local function parse (peer, out) return C.parse(peer.name, out, RESULT_FIELDS) end

-- What went wrong in a result, or nil when every check passed.
local function problems (r)
  local p = {}
  if r.n ~= N then p[#p + 1] = sformat("ran n=%s", tostring(r.n)) end
  if r.get_mismatches ~= 0 then
    p[#p + 1] = sformat("get: %d mismatches", r.get_mismatches)
  end
  if r.scan_count ~= N then
    p[#p + 1] = sformat("scan: %d records, want %d", r.scan_count, N)
  end
  if r.scan_unsorted ~= 0 then
    p[#p + 1] = sformat("scan: %d out of order", r.scan_unsorted)
  end
  if r.removed ~= (N + 1) // 2 then
    p[#p + 1] = sformat("delete: removed %d, want %d", r.removed,
                        (N + 1) // 2)
  end
  if r.remaining ~= N // 2 then
    p[#p + 1] = sformat("delete: %d left, want %d", r.remaining, N // 2)
  end
  if #p > 0 then return table.concat(p, "; ") end
end

local function selected (name)
  return not opts.only or opts.only[name]
end

local function cpu_model ()
  local f = io.open("/proc/cpuinfo", "r")
  local s = f and f:read("a") or ""
  if f then f:close() end
  return s:match("model name%s*:%s*([^\n]+)") or "unknown CPU"
end

local function mem_total ()
  local f = io.open("/proc/meminfo", "r")
  local s = f and f:read("a") or ""
  if f then f:close() end
  local kb = tonumber(s:match("MemTotal:%s*(%d+) kB"))
  return kb and sformat("%.1f GiB", kb / 1048576) or "unknown memory"
end

local function nproc ()
  return capture("nproc 2>/dev/null"):match("%d+") or "?"
end

local thousands = C.thousands

local function mib (bytes) return sformat("%.1f", bytes / 1048576) end

print(sformat("fmap bench: the standard workload, N = %s (%s)", thousands(N),
              fmap.VERSION or "fmap"))
print(sformat("machine: %s cores, %s, %s", nproc(), cpu_model(), mem_total()))
print(sformat("command: %s %s --n %d%s%s", HOST, SCRIPT, N,
              opts.rounds > 1 and (" --rounds " .. opts.rounds) or "",
              (opts.only and (" --only " .. opts.only_arg) or "")
              .. (opts.fault and (" --fault " .. opts.fault) or "")))
print()

-- Runs one peer once: its parsed result, or a skipped or failed record.
local function run_peer (peer, round)
  local cmd, why = command(peer)
  if not cmd then return { skipped = why } end
  io.stderr:write(sformat("running %s%s ...\n", peer.label,
                          opts.rounds > 1 and (" (round " .. round .. ")")
                          or ""))
  local out, err, ok, how, code = run(cmd)
  local r = parse(peer, out)
  if not r then
    -- what the child said last, on stderr or else on stdout
    local last = err:match("([^\n]*%S[^\n]*)\n*$")
                 or out:match("([^\n]*%S[^\n]*)\n*$") or "no output"
    return { failed = sformat("%s (round %d, %s %s)", last, round,
                              tostring(how), tostring(code)) }
  end
  if not r.skipped then
    r.problems = problems(r)
    if not ok and not r.problems then
      r.problems = "exit status " .. tostring(code)
    end
  end
  return r
end

-- Rounds interleave the peers; each phase keeps its best time, RSS its
-- highest peak. A round that fails a check fails the peer.
local results, failed = {}, false
for round = 1, opts.rounds do
  for _, peer in ipairs(PEERS) do
    if selected(peer.name) and not C.stopped(results[peer.name]) then
      local r = run_peer(peer, round)
      C.keep_best(results, peer.name, r, PHASES)
      if r.failed or r.problems then failed = true end
    end
  end
end

local COLS = { label = 15, num = 12, size = 9 }
local function row (label, cells, tail)
  local s = { sformat("%-" .. COLS.label .. "s", label) }
  for i, c in ipairs(cells) do
    local w = i <= 4 and COLS.num or COLS.size
    s[#s + 1] = sformat("%" .. w .. "s", c)
  end
  if tail then s[#s + 1] = "  " .. tail end
  return table.concat(s, " ")
end

-- Operations per phase: the delete phase removes every even record.
local OPS = { insert = N, get = N, scan = N, delete = (N + 1) // 2 }

-- The table of peers, when --only selected any (not "engine" alone).
if next(results) then
  print(row("peer", { "insert/s", "get/s", "scan/s", "delete/s",
                      "file MiB", "RSS MiB" }, "checks"))
end
for _, peer in ipairs(PEERS) do
  local r = results[peer.name]
  if r then
    if r.skipped then
      print(sformat("%-" .. COLS.label .. "s skipped: %s", peer.label,
                    r.skipped))
    elseif r.failed then
      print(sformat("%-" .. COLS.label .. "s FAILED: %s", peer.label,
                    r.failed))
    else
      local cells = {}
      for i, ph in ipairs(PHASES) do cells[i] = thousands(OPS[ph] / r[ph]) end
      cells[5] = peer.name == "table" and "-" or mib(r.file_bytes)
      cells[6] = mib(r.rss_kb * 1024)
      print(row(peer.label, cells, r.problems and ("FAILED: " .. r.problems)
                                   or "ok"))
    end
  end
end

local function ran (name) return C.ran(results, name) end

local f = ran "fmap"
if f then
  local any = false
  for _, peer in ipairs(PEERS) do
    local r = peer.name ~= "fmap" and peer.name ~= "fmap-tx"
              and ran(peer.name)
    if r then
      if not any then print(row("fmap / peer", {})); any = true end
      local cells = {}
      for i, ph in ipairs(PHASES) do
        cells[i] = sformat("%.2fx", r[ph] / f[ph])
      end
      cells[5] = peer.name == "table" and "-"
                 or sformat("%.2fx", f.file_bytes / r.file_bytes)
      cells[6] = sformat("%.2fx", f.rss_kb / r.rss_kb)
      print(row("  " .. peer.label, cells))
    end
  end
end
if next(results) then
  print("(ops/s per phase; ratios are fmap's speed over the peer's, and "
        .. "fmap's file and RSS over the peer's; file size after insert, "
        .. "journal included)")
end

-- What a transaction per write phase costs: fmap-tx's time over fmap's,
-- phase by phase (1.00x: nothing; get and scan run outside transactions
-- in both, so theirs is the noise of the machine).
local ftx = ran "fmap-tx"
if ftx and f then
  print()
  local cells = {}
  for _, ph in ipairs(PHASES) do
    cells[#cells + 1] = sformat("%s %.2fx", ph, ftx[ph] / f[ph])
  end
  print("transactions cost: fmap-tx / fmap per phase (time)  "
        .. table.concat(cells, "  "))
  print("  (fmap tx/phase: insert and delete each in bf:begin() ... "
        .. "bf:commit(), durable; get and scan outside transactions)")
end

-- The figures fmap is held to, and where it stands against each.
local function line (what, measured, ok)
  print(sformat("  %-44s %-26s %s", what, measured,
                ok == nil and "n/a" or ok and "met" or "MISSED"))
end

-- The file after the insert phase, journal included, against 1.5x the
-- raw 32 bytes a record.
local function file_line (who, r)
  local raw = 32 * N
  line(sformat("%sfile after insert <= 1.5x raw (%s MiB)", who,
               mib(1.5 * raw)),
       sformat("%s MiB (%.2fx raw)", mib(r.file_bytes), r.file_bytes / raw),
       r.file_bytes <= 1.5 * raw)
  if r.journal_bytes then
    print(sformat("  %-44s %s MiB", sformat("  (of which the journal; "
                  .. "checkpoints: %d)", r.checkpoints),
                  mib(r.journal_bytes)))
  end
end
if f then
  print()
  print("targets")
  -- The faster binding, phase by phase; none when one of them failed (a
  -- binding that is merely not installed leaves the other to compare).
  local sq, sq_name, sq_broken = {}, {}, nil
  for _, name in ipairs { "luasql", "dbi" } do
    local r = results[name]
    if r and (r.failed or r.problems) then sq_broken = name end
  end
  for _, ph in ipairs(PHASES) do
    for _, name in ipairs { "luasql", "dbi" } do
      local r = ran(name)
      if r and not sq_broken and (not sq[ph] or r[ph] < sq[ph]) then
        sq[ph], sq_name[ph] = r[ph], name
      end
    end
  end
  for _, ph in ipairs(PHASES) do
    local want = ph == "scan" and 2 or 3
    local what = sformat("%s >= %dx the faster SQLite binding", ph, want)
    if sq[ph] then
      local x = sq[ph] / f[ph]
      line(what, sformat("%.2fx (%s)", x, sq_name[ph]), x >= want)
    elseif sq_broken then
      line(what, "sqlite " .. sq_broken .. " failed")
    else
      line(what, "no SQLite peer ran")
    end
  end
  local tt = ran "tarantool"
  for _, ph in ipairs(PHASES) do
    local what = ph == "scan" and "scan faster than tarantool"
                 or (ph .. " >= tarantool")
    if tt then
      local x = tt[ph] / f[ph]
      line(what, sformat("%.2fx", x), ph == "scan" and x > 1 or x >= 1)
    else
      line(what, "tarantool did not run")
    end
  end
  local scan_rate = N / f.scan
  line("scan > 5,000,000 records/s", thousands(scan_rate) .. "/s",
       scan_rate > 5e6)
  -- What the scan phase costs with no store at all: the workload's own loop
  -- over a sorted array of the keys, in this process. No Lua store can
  -- scan faster than this on this machine. The keys are made in key order
  -- (the indices sorted by the key's first word, i * MUL unsigned), so
  -- they lie in memory in the order the loop reads them, as a store's
  -- fresh strings do; keys made in index order and then sorted cost a
  -- cache miss each, which is no store's cost.
  do
    local idx = {}
    for i = 0, N - 1 do idx[i + 1] = i end
    local MUL, ult = W.MUL, math.ult
    table.sort(idx, function (a, b) return ult(a * MUL, b * MUL) end)
    local keys = {}
    for j = 1, N do keys[j] = W.key(idx[j]) end
    idx = nil
    local floor = W.scan({ scan = function ()
      local j = 0
      return function () j = j + 1; return keys[j] end
    end }, N)
    print(sformat("  %-44s %s%s", "  (floor: the scan loop over a sorted "
                  .. "array)", thousands(floor.ops_s) .. "/s",
                  floor.ok and "" or " FAILED"))
    local share = scan_rate / floor.ops_s
    line("scan >= 50% of the floor", sformat("%.0f%%", 100 * share),
         floor.ok and share >= 0.5)
  end
  file_line("", f)
  local rss = f.rss_kb * 1024
  line("peak RSS <= file + 64 MiB",
       sformat("%s MiB (file + %s MiB)", mib(rss), mib(rss - f.file_bytes)),
       rss <= f.file_bytes + 64 * 1048576)
end

-- fmap-tx: what a transaction per phase may cost, and what it must keep.
if ftx then
  print()
  print("targets (fmap tx/phase)")
  -- LMDB in C, one write transaction per phase as fmap-tx
  local lm = ran "lmdb"
  for _, ph in ipairs { "insert", "get", "delete" } do
    local what = sformat("%s >= lmdb (C)", ph)
    if lm then
      local x = lm[ph] / ftx[ph]
      line(what, sformat("%.2fx", x), x >= 1)
    else
      line(what, "lmdb did not run")
    end
  end
  for _, ph in ipairs { "insert", "delete" } do
    local what = sformat("%s: tx / fmap <= 1.15 (within 15%%)", ph)
    if f then
      local x = ftx[ph] / f[ph]
      line(what, sformat("%.2fx", x), x <= 1.15)
    else
      line(what, "fmap did not run")
    end
  end
  local sq, sq_name, broken = nil, nil, false
  for _, ph in ipairs { "insert", "delete" } do
    sq, sq_name, broken = nil, nil, false
    for _, name in ipairs { "luasql", "dbi" } do
      local r = results[name]
      if r and (r.failed or r.problems) then broken = name end
      r = ran(name)
      if r and (not sq or r[ph] < sq) then sq, sq_name = r[ph], name end
    end
    local what = sformat("%s >= 3x the faster SQLite binding", ph)
    if broken then
      line(what, "sqlite " .. broken .. " failed")
    elseif sq then
      local x = sq / ftx[ph]
      line(what, sformat("%.2fx (%s)", x, sq_name), x >= 3)
    else
      line(what, "no SQLite peer ran")
    end
  end
  file_line("", ftx)
end

-- The block layer: bench/bench_engine.lua, Lua beside the C loops.
if selected("engine") then
  print()
  local en = math.min(math.max(N, 10), 1000000)
  local cmd = sformat("%s %s --n %d --file %s", shell_quote(HOST),
                      shell_quote(SCRIPT_DIR .. "/bench_engine.lua"), en,
                      shell_quote(RUN_DIR .. "/engine.fmap"))
  io.stderr:write("running the block-layer benchmarks ...\n")
  local out, err, ok = run(cmd)
  io.write(out)
  if not ok then
    print("FAILED: bench/bench_engine.lua: "
          .. (err:match("([^\n]+)\n*$") or "no output"))
    failed = true
  else
    -- The targets: allocate + free from Lua within 3x of the C loop; get +
    -- release and a u64 write + read, each two calls into the engine,
    -- within 2x of a loop of two empty calls from Lua into C (type(v)
    -- twice, timed in the same run). The C loops of those two stay in the
    -- table above as information: a call from Lua costs more than they do
    -- before it does anything.
    local floor2 = tonumber(out:match("\nfloor: two empty calls, type%(v%) "
                                      .. "twice +%- +([%d.]+)"))
    print()
    print("targets (block layer)")
    local what = "allocate + free of one block"
    local x = out:match(what:gsub("%p", "%%%0")
                        .. " +[%d.]+ +[%d.]+ +([%d.]+)x")
    local ok
    if x then ok = tonumber(x) <= 3 end
    line(what .. " Lua <= 3x C", x and (x .. "x") or "not in the output", ok)
    for _, t in ipairs { { "get + release of a 1-block view",
                           "get + release" },
                         { "u64 write + read through a view",
                           "u64 write + read" } } do
      local lua_ns = tonumber(out:match(t[1]:gsub("%p", "%%%0")
                                        .. " +[%d.-]+ +([%d.]+)"))
      local label = t[2] .. " <= 2x two empty calls"
      if lua_ns and floor2 and floor2 > 0 then
        local fx = lua_ns / floor2
        line(label, sformat("%.1fx (%.1f ns / %.1f ns)", fx, lua_ns, floor2),
             fx <= 2)
      else
        line(label, "not in the output")
      end
    end
    if floor2 then
      print(sformat("  %-44s %.1f ns", "  (floor: two empty calls from "
                    .. "Lua, type(v))", floor2))
    end
  end
end

-- The blob store and the list beside SQLite: bench/stores.lua.
if STORES.report {
  n = N, rounds = opts.rounds, selected = selected, run = run,
  thousands = thousands, mib = mib, line = line,
  command = function (name)
    return sformat("%s %s --peer %s --n %d --dir %s%s", shell_quote(HOST),
                   shell_quote(SCRIPT), name, N, shell_quote(RUN_DIR),
                   opts.fault == "store-get" and " --fault store-get" or "")
  end,
} then
  failed = true
end

os.execute("rm -rf " .. shell_quote(RUN_DIR))
os.exit(failed and 1 or 0)
