--- bench/stores.lua: the blob store's and the list's sections of
-- bench/bench.lua: their workloads, their peers (fmap, and SQLite from Lua
-- through LuaDBI and LuaSQL), the child that runs one peer, and the
-- parent's tables and targets. bench.lua loads it with dofile and calls
--   S.child(peer_name, opts)   in a child: runs one peer, prints its line
--   S.report(ctx)              in the parent: runs the sections, prints them
--
-- The workloads, exactly (figures compare across versions only if they
-- stay so). N is bench.lua's --n (default 1,000,000).
--
-- blobs  Blob i (i = 0..N-1) is pool blob m = i % 4096. Pool blob m has
--        size(m) = floor(16 * 256^u + 0.5) bytes, where
--        u = ((m * 0x9E3779B97F4A7C15) >> 11) / 2^53 (the multiplication
--        wraps mod 2^64; >> is logical): 16 B to 4 KB, log-uniform, mean 736 B; its bytes are
--        size(m) bytes of a fixed pseudo-random string (an LCG seeded with
--        12345, bytes 1..255: no zero byte, which DBD.SQLite3 would cut at)
--        from position (m * 7) % 4096. The pool is made before any timing.
--   put  all N in order, in one transaction, ended by a durable commit
--        (timed); fmap keeps each blob's offset in a Lua array, SQLite
--        stores blob i as row id i + 1
--   get  N reads of i = (j * 7919) % N for j = 0..N-1, each compared with
--        the blob put; the bytes read are summed, and the blobs stored
--        counted after the put (untimed)
-- list   Item i (1-based) is "item%012d" of i % 1024, a set writes
--        "ITEM%012d" of i % 1024 (16 bytes each, made before any timing).
--   append  N items, in one transaction, ended by a durable commit (timed)
--   get     N reads of index i = (j * 7919) % N + 1, each checked
--   set     N writes at the same indices, in one transaction, durable
--   pop     N pops, each checked against the item set there, in one
--           transaction, durable; the items left are counted (untimed)
--
-- The peers, each in a process of its own:
--   fmap     fmap.varchar / fmap.mmlist in fmap.create(path); a write phase
--            runs inside bf:begin() and ends with bf:commit() (durable);
--            reads run outside any transaction
--   dbi      SQLite through LuaDBI: prepared statements, reused, blobs
--            bound as CAST(? AS BLOB); WAL, synchronous=NORMAL, one
--            transaction per phase; a write phase ends with COMMIT and
--            wal_checkpoint(TRUNCATE) (timed), as bench.lua's SQLite peers
--   luasql   the same through LuaSQL, which has no binding: blobs go in as
--            x'..' literals, their hex made with the pool (untimed)
-- Tables: blobs(id INTEGER PRIMARY KEY, b BLOB); list(id INTEGER PRIMARY
-- KEY, v BLOB) with append = INSERT (the rowid is the index), get and set
-- by rowid, pop = a DELETE of the largest rowid (DBI: one DELETE ...
-- RETURNING; LuaSQL, whose execute runs a RETURNING statement twice, a
-- SELECT of the last row and a DELETE of it).
local fmap = require "fmap"
local W = require "fmap.workload"
local C = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/common.lua")

local S = {}

local sformat = string.format
local clock = fmap.clock

S.SECTIONS = {
  { name = "blobs", title = "blob store: fmap.varchar beside SQLite's "
                            .. "blobs(id INTEGER PRIMARY KEY, b BLOB)",
    key = "blob store", ops = { "put", "get" },
    peers = { { name = "blobs-fmap", label = "fmap varchar" },
              { name = "blobs-dbi", label = "sqlite dbi" },
              { name = "blobs-luasql", label = "sqlite luasql" } } },
  { name = "list", title = "list: fmap.mmlist beside SQLite's list(id "
                           .. "INTEGER PRIMARY KEY, v BLOB)",
    key = "list", ops = { "append", "get", "set", "pop" },
    peers = { { name = "list-fmap", label = "fmap mmlist" },
              { name = "list-dbi", label = "sqlite dbi" },
              { name = "list-luasql", label = "sqlite luasql" } } },
}

--- The names --only and --peer know: the sections and their peers.
function S.names ()
  local t = {}
  for _, sec in ipairs(S.SECTIONS) do
    t[sec.name] = sec
    for _, p in ipairs(sec.peers) do t[p.name] = sec end
  end
  return t
end

------------------------------------------------------------------------------
-- The data, made before any timing.

local POOL = 4096          -- pool blobs
local MUL = 0x9E3779B97F4A7C15

--- The size of pool blob m: 16 B to 4 KB, log-uniform.
function S.blob_size (m)
  local u = ((m * MUL) >> 11) / (1 << 53)
  return math.floor(16 * 256 ^ u + 0.5)
end

-- The pool: blobs[0..POOL-1].
local function blob_pool ()
  local bytes, seed = {}, 12345
  for k = 1, 8192 do
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    bytes[k] = string.char(1 + (seed >> 16) % 255)
  end
  local src = table.concat(bytes)
  local blobs = {}
  for m = 0, POOL - 1 do
    local o = (m * 7) % 4096 + 1
    blobs[m] = src:sub(o, o + S.blob_size(m) - 1)
  end
  return blobs
end

--- The bytes the get phase reads back for n blobs.
function S.blob_bytes (n)
  local per, total = {}, 0
  for m = 0, POOL - 1 do per[m] = S.blob_size(m) end
  for m = 0, POOL - 1 do
    local copies = n // POOL + (m < n % POOL and 1 or 0)
    total = total + copies * per[m]
  end
  return total
end

local function item_pools ()
  local items, others = {}, {}
  for k = 0, 1023 do
    items[k] = sformat("item%012d", k)
    others[k] = sformat("ITEM%012d", k)
  end
  return items, others
end

local HEX = {}
for b = 0, 255 do HEX[string.char(b)] = sformat("%02x", b) end
local function hex (s) return (s:gsub(".", HEX)) end

------------------------------------------------------------------------------
-- Files and drivers.

local file_size = W.file_size
local remove_files = C.sqlite_remove

local SQL_SETUP = { "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL" }
local SQL_TABLE = {
  blobs = "CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB)",
  list = "CREATE TABLE list(id INTEGER PRIMARY KEY, v BLOB)",
}
local SQL_CHECKPOINT = C.SQL_CHECKPOINT

------------------------------------------------------------------------------
-- The peers. An opener(section, path, fault) returns an adapter, or nil and
-- why it is skipped. An adapter has the section's operations (blobs:
-- put(i, s), get(i) -> s; list: append(s), get(i) -> s, set(i, s),
-- pop() -> s), count() -> n (untimed), file_bytes(), close(), and
--   before(op)  untimed, before the phase (SQLite: BEGIN)
--   begin(op)   timed, at the phase's start (fmap: bf:begin() for writes)
--   finish(op)  timed, at its end (the write phases' durable commit)
--   done(op)    untimed, after it (SQLite: ends a read transaction)

local WRITES = { put = true, append = true, set = true, pop = true }
local function nothing () end

local open = {}

-- fmap: a varchar or an mmlist in a file-backed BlockFile; a write phase is
-- one transaction, committed durably.
function open.fmap (section, path, fault)
  local bf = assert(fmap.create(path))
  local a = {
    before = nothing, done = nothing,
    begin = function (op) if WRITES[op] then bf:begin() end end,
    finish = function (op) if WRITES[op] then assert(bf:commit()) end end,
    file_bytes = function () return file_size(path)
                                    + file_size(path .. "-wal") end,
    close = function () assert(bf:remove()) end,
  }
  if section == "blobs" then
    local vc = assert(fmap.varchar.new(bf))
    local offs = {}
    a.put = function (i, s) offs[i + 1] = vc:put(s) end
    a.get = function (i) return vc:get(offs[i + 1]) end
    a.count = function () return vc:count() end
  else
    local l = assert(fmap.mmlist.new(bf))
    a.append = function (s) l:append(s) end
    a.get = function (i) return l:get(i) end
    a.set = function (i, s) l:set(i, s) end
    a.pop = function () return l:pop() end
    a.count = function () return #l end
  end
  if fault == "store-get" then     -- one read comes back wrong: its
    local get = a.get                -- last byte changed
    a.get = function (i)
      local s = get(i)
      if i ~= 1 then return s end
      return s:sub(1, -2) .. (s:sub(-1) == "x" and "y" or "x")
    end
  end
  return a
end

-- What both SQLite peers share: the phases' transactions, the size.
-- exec(sql) runs a statement, row(sql) returns its first row.
local function sqlite_adapter (a, path, exec, row)
  a.before = function () exec("BEGIN") end
  a.begin = nothing
  a.finish = function (op)
    if WRITES[op] then
      exec("COMMIT")
      assert(tonumber(row(SQL_CHECKPOINT)[1]) == 0, "checkpoint was blocked")
    end
  end
  a.done = function (op) if not WRITES[op] then exec("COMMIT") end end
  a.file_bytes = function ()
    return file_size(path) + file_size(path .. "-wal")
  end
  return a
end

-- SQLite through LuaDBI: prepared statements, blobs bound as text with
-- their length and cast to blobs in the SQL.
function open.dbi (section, path)
  local db, DBI, prepare, row = C.dbi_open(path)
  if not db then return nil, DBI end
  for _, sql in ipairs(SQL_SETUP) do row(sql) end
  row(SQL_TABLE[section])
  local stmts, a = {}, {}
  local function stmt (sql)
    local st = prepare(sql)
    stmts[#stmts + 1] = st
    return st
  end
  local tbl = section
  if section == "blobs" then
    local ins = stmt("INSERT INTO blobs VALUES (?, CAST(? AS BLOB))")
    local sel = stmt("SELECT b FROM blobs WHERE id = ?")
    a.put = function (i, s) assert(ins:execute(i + 1, s)) end
    a.get = function (i)
      assert(sel:execute(i + 1))
      local r = sel:fetch(false)
      return r and r[1]
    end
  else
    local ins = stmt("INSERT INTO list(v) VALUES (CAST(? AS BLOB))")
    local sel = stmt("SELECT v FROM list WHERE id = ?")
    local upd = stmt("UPDATE list SET v = CAST(? AS BLOB) WHERE id = ?")
    local del = stmt("DELETE FROM list WHERE id = (SELECT max(id) FROM "
                     .. "list) RETURNING v")
    a.append = function (s) assert(ins:execute(s)) end
    a.get = function (i)
      assert(sel:execute(i))
      local r = sel:fetch(false)
      return r and r[1]
    end
    a.set = function (i, s) assert(upd:execute(s, i)) end
    a.pop = function ()
      assert(del:execute())
      local r = del:fetch(false)
      return r and r[1]
    end
  end
  a.count = function ()
    return math.tointeger(tonumber(row("SELECT count(*) FROM " .. tbl)[1]))
  end
  a.close = function ()
    for _, st in ipairs(stmts) do st:close() end
    db:close()
    remove_files(path)
  end
  return sqlite_adapter(a, path, row, row)
end

-- SQLite through LuaSQL: SQL text, blobs as x'..' literals (the pool's hex
-- made before any timing: hexes[s] is the literal of the string s).
function open.luasql (section, path, _, hexes)
  local con, env, exec, row = C.luasql_open(path)
  if not con then return nil, env end
  for _, sql in ipairs(SQL_SETUP) do row(sql) end
  exec(SQL_TABLE[section])
  local function one (sql)
    local cur = exec(sql)
    local v = cur:fetch()
    cur:close()
    return v
  end
  local a = {}
  if section == "blobs" then
    a.put = function (i, s)
      exec(sformat("INSERT INTO blobs VALUES (%d, x'%s')", i + 1, hexes[s]))
    end
    a.get = function (i)
      return one(sformat("SELECT b FROM blobs WHERE id = %d", i + 1))
    end
  else
    a.append = function (s)
      exec(sformat("INSERT INTO list(v) VALUES (x'%s')", hexes[s]))
    end
    a.get = function (i)
      return one(sformat("SELECT v FROM list WHERE id = %d", i))
    end
    a.set = function (i, s)
      exec(sformat("UPDATE list SET v = x'%s' WHERE id = %d", hexes[s], i))
    end
    a.pop = function ()
      local cur = exec("SELECT id, v FROM list ORDER BY id DESC LIMIT 1")
      local id, v = cur:fetch()
      cur:close()
      if id == nil then return nil end
      exec(sformat("DELETE FROM list WHERE id = %d", id))
      return v
    end
  end
  a.count = function ()
    return math.tointeger(tonumber(one("SELECT count(*) FROM " .. section)))
  end
  a.close = function ()
    con:close()
    env:close()
    remove_files(path)
  end
  return sqlite_adapter(a, path, exec, row)
end

------------------------------------------------------------------------------
-- The child: runs one peer's phases and prints its line.

-- Times one phase: f() runs the operations and returns the mismatches.
local function phase (a, op, f)
  a.before(op)
  collectgarbage()
  collectgarbage()
  local t = clock()
  a.begin(op)
  local bad, extra = f()
  a.finish(op)
  local secs = clock() - t
  a.done(op)
  return secs, bad, extra
end

local function run_blobs (a, n)
  local blobs = S.pool
  local r = {}
  r.put = phase(a, "put", function ()
    local put = a.put
    for i = 0, n - 1 do put(i, blobs[i % POOL]) end
    return 0
  end)
  r.count = a.count()
  r.file_bytes = a.file_bytes()
  r.get, r.bad, r.bytes = phase(a, "get", function ()
    local get = a.get
    local bad, bytes = 0, 0
    for j = 0, n - 1 do
      local i = (j * 7919) % n
      local s = get(i)
      if s ~= blobs[i % POOL] then bad = bad + 1 end
      if s then bytes = bytes + #s end
    end
    return bad, bytes
  end)
  return r, { "put", "get", "bad", "bytes", "count" }
end

local function run_list (a, n)
  local items, others = S.items, S.others
  local r = {}
  r.append = phase(a, "append", function ()
    local append = a.append
    for i = 1, n do append(items[i & 1023]) end
    return 0
  end)
  r.count = a.count()
  r.file_bytes = a.file_bytes()
  r.get, r.bad_get = phase(a, "get", function ()
    local get = a.get
    local bad = 0
    for j = 0, n - 1 do
      local i = (j * 7919) % n + 1
      if get(i) ~= items[i & 1023] then bad = bad + 1 end
    end
    return bad
  end)
  r.set = phase(a, "set", function ()
    local set = a.set
    for j = 0, n - 1 do
      local i = (j * 7919) % n + 1
      set(i, others[i & 1023])
    end
    return 0
  end)
  r.pop, r.bad_pop = phase(a, "pop", function ()
    local pop = a.pop
    local bad = 0
    for i = n, 1, -1 do
      if pop() ~= others[i & 1023] then bad = bad + 1 end
    end
    return bad
  end)
  r.left = a.count()
  return r, { "append", "get", "set", "pop", "bad_get", "bad_pop", "count",
              "left" }
end

--- Runs peer (a name of S.SECTIONS) on n records in a file under dir and
-- prints its line, "fmap-bench peer=NAME n=N OP=SECS ... rss_kb=KB", or
-- "fmap-bench peer=NAME skipped: REASON".
function S.child (name, n, dir, fault)
  local sec = S.names()[name]
  local kind = name:match("%-(%w+)$")
  local path = sformat("%s/fmap-bench-%s-%d-%d", dir, name, os.time(),
                       math.random(1 << 30))
  local hexes
  if sec.name == "blobs" then
    S.pool = blob_pool()
    if kind == "luasql" then
      hexes = {}
      for m = 0, POOL - 1 do hexes[S.pool[m]] = hex(S.pool[m]) end
    end
  else
    S.items, S.others = item_pools()
    if kind == "luasql" then
      hexes = {}
      for k = 0, 1023 do
        hexes[S.items[k]] = hex(S.items[k])
        hexes[S.others[k]] = hex(S.others[k])
      end
    end
  end
  local a, why = open[kind](sec.name, path, fault, hexes)
  if not a then
    print(sformat("fmap-bench peer=%s skipped: %s", name, why))
    return
  end
  local r, fields
  if sec.name == "blobs" then r, fields = run_blobs(a, n)
  else r, fields = run_list(a, n) end
  a.close()
  r.rss_kb = W.peak_rss_kb() or -1
  local out = { "fmap-bench", "peer=" .. name, "n=" .. n }
  fields[#fields + 1] = "file_bytes"
  fields[#fields + 1] = "rss_kb"
  for _, f in ipairs(fields) do
    local x = r[f]
    out[#out + 1] = f .. "=" .. (math.type(x) == "float"
                                 and sformat("%.9f", x) or tostring(x))
  end
  print(table.concat(out, " "))
end

------------------------------------------------------------------------------
-- The parent.

-- What went wrong in a result of section sec, or nil.
local function problems (sec, r, n)
  local p = {}
  if r.n ~= n then p[#p + 1] = sformat("ran n=%s", tostring(r.n)) end
  if sec.name == "blobs" then
    if r.count ~= n then
      p[#p + 1] = sformat("put: %s blobs stored, want %d", tostring(r.count),
                          n)
    end
    if r.bad ~= 0 then
      p[#p + 1] = sformat("get: %s mismatches", tostring(r.bad))
    end
    local want = S.blob_bytes(n)
    if r.bytes ~= want then
      p[#p + 1] = sformat("get: %s bytes, want %d", tostring(r.bytes), want)
    end
  else
    if r.count ~= n then
      p[#p + 1] = sformat("append: %s items, want %d", tostring(r.count), n)
    end
    if r.bad_get ~= 0 then
      p[#p + 1] = sformat("get: %s mismatches", tostring(r.bad_get))
    end
    if r.bad_pop ~= 0 then
      p[#p + 1] = sformat("pop: %s mismatches", tostring(r.bad_pop))
    end
    if r.left ~= 0 then
      p[#p + 1] = sformat("pop: %s items left", tostring(r.left))
    end
  end
  if #p > 0 then return table.concat(p, "; ") end
end

local parse = C.parse

--- Runs the selected sections and prints them. ctx has: n, rounds,
-- selected(name), run(cmd) -> out, err, ok, how, code (bench.lua's),
-- command(peer_name) -> the child's command line, thousands(x), mib(bytes),
-- line(what, measured, ok) (a target's line). Returns true when a peer
-- failed.
function S.report (ctx)
  local n, failed = ctx.n, false
  for _, sec in ipairs(S.SECTIONS) do
    local peers = {}
    for _, p in ipairs(sec.peers) do
      if ctx.selected(sec.name) or ctx.selected(p.name) then
        peers[#peers + 1] = p
      end
    end
    if #peers > 0 then
      local fields = { "file_bytes", "rss_kb" }
      for _, op in ipairs(sec.ops) do fields[#fields + 1] = op end
      -- rounds interleave the peers; each operation keeps its best time
      local results = {}
      for round = 1, ctx.rounds do
        for _, p in ipairs(peers) do
          if not C.stopped(results[p.name]) then
            io.stdout:flush()       -- the tables printed so far come first
            io.stderr:write(sformat("running %s %s%s ...\n", sec.key,
                                    p.label, ctx.rounds > 1
                                    and (" (round " .. round .. ")") or ""))
            local out, err, ok, how, code = ctx.run(ctx.command(p.name))
            local r = parse(p.name, out, fields)
            if not r then
              local last = err:match("([^\n]*%S[^\n]*)\n*$")
                           or out:match("([^\n]*%S[^\n]*)\n*$")
                           or "no output"
              r = { failed = sformat("%s (round %d, %s %s)", last, round,
                                     tostring(how), tostring(code)) }
            elseif not r.skipped then
              r.problems = problems(sec, r, n)
              if not ok and not r.problems then
                r.problems = "exit status " .. tostring(code)
              end
            end
            C.keep_best(results, p.name, r, sec.ops)
            if r.failed or r.problems then failed = true end
          end
        end
      end
      S.print_section(ctx, sec, peers, results)
    end
  end
  return failed
end

--- Prints a section's table, fmap's ratios and its targets.
function S.print_section (ctx, sec, peers, results)
  local n = ctx.n
  print()
  print(sformat("%s, N = %s", sec.title, ctx.thousands(n)))
  local head = { sformat("%-15s", "peer") }
  for _, op in ipairs(sec.ops) do
    head[#head + 1] = sformat("%12s", op .. "/s")
  end
  head[#head + 1] = sformat("%9s %9s  checks", "file MiB", "RSS MiB")
  print(table.concat(head, " "))
  for _, p in ipairs(peers) do
    local r = results[p.name]
    if r.skipped then
      print(sformat("%-15s skipped: %s", p.label, r.skipped))
    elseif r.failed then
      print(sformat("%-15s FAILED: %s", p.label, r.failed))
    else
      local cells = { sformat("%-15s", p.label) }
      for _, op in ipairs(sec.ops) do
        cells[#cells + 1] = sformat("%12s", ctx.thousands(n / r[op]))
      end
      cells[#cells + 1] = sformat("%9s %9s  %s", ctx.mib(r.file_bytes),
                                  ctx.mib(r.rss_kb * 1024),
                                  r.problems and ("FAILED: " .. r.problems)
                                  or "ok")
      print(table.concat(cells, " "))
    end
  end
  local function ran (name) return C.ran(results, name) end
  local f = ran(sec.peers[1].name)
  if not f then return end
  -- fmap's speed over each SQLite peer's, per operation; the faster
  -- binding's time per operation, for the targets
  local sq, sq_name, broken, head = {}, {}, nil, false
  for i = 2, #sec.peers do
    local p = sec.peers[i]
    local r = results[p.name]
    if r and (r.failed or r.problems) then broken = p.name:match("%w+$") end
    r = ran(p.name)
    if r then
      if not head then print("fmap / peer"); head = true end
      local cells = { sformat("%-15s", "  " .. p.label) }
      for _, op in ipairs(sec.ops) do
        cells[#cells + 1] = sformat("%12s", sformat("%.2fx", r[op] / f[op]))
        if not sq[op] or r[op] < sq[op] then
          sq[op], sq_name[op] = r[op], p.name:match("%w+$")
        end
      end
      cells[#cells + 1] = sformat("%9s %9s",
                                  sformat("%.2fx", f.file_bytes
                                                   / r.file_bytes),
                                  sformat("%.2fx", f.rss_kb / r.rss_kb))
      print(table.concat(cells, " "))
    end
  end
  print(sformat("(ops/s per operation; ratios are fmap's speed over the "
                .. "peer's, and fmap's file and RSS over the peer's; file "
                .. "size after the %s, journal or WAL included)",
                sec.ops[1]))
  print()
  print(sformat("targets (%s)", sec.key))
  for _, op in ipairs(sec.ops) do
    local what = sformat("%s: fmap >= 2x SQLite", op)
    if broken then
      ctx.line(what, "sqlite " .. broken .. " failed")
    elseif sq[op] then
      local x = sq[op] / f[op]
      ctx.line(what, sformat("%.2fx (%s)", x, sq_name[op]), x >= 2)
    else
      ctx.line(what, "no SQLite peer ran")
    end
  end
end

return S
