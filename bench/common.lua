--- bench/common.lua: what bench.lua, stores.lua and bench_txn.lua share:
-- the host and its directory, shell quoting and a popen wrapper, the
-- drivers of the SQLite peers, their connections, statements and files,
-- and the best of a peer's rounds. A script loads it with
--   dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/common.lua")
local C = {}

--- The fmap binary running the script, and its directory (where the C
-- peers are built).
C.HOST = arg[-1] or "build/bin/fmap"
C.BIN_DIR = C.HOST:match("^(.*)/[^/]*$") or "."

--- s as one word of sh, in single quotes.
function C.shell_quote (s) return "'" .. s:gsub("'", "'\\''") .. "'" end

--- Runs a shell command; its stdout, and its exit status (true on 0).
function C.capture (cmd)
  local p = io.popen(cmd, "r")
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end

--- The Lua module of a peer's driver, or nil and why not: not installed,
-- naming the Debian package that has it.
function C.driver (name, package)
  local ok, mod = pcall(require, name)
  if not ok then
    return nil, string.format(
      "%s not installed (%s; bash bench/install_peers.sh)", name, package)
  end
  return mod
end

--- f(sql), raising where f returns nil and a message, with the statement
-- and the message, at the caller's line.
function C.or_raise (f)
  return function (sql)
    local r, err = f(sql)
    if not r then error(sql .. ": " .. tostring(err), 2) end
    return r
  end
end

--- The files of an SQLite database at path, and their removal.
function C.sqlite_files (path)
  return { path, path .. "-wal", path .. "-shm", path .. "-journal" }
end

function C.sqlite_remove (path)
  for _, p in ipairs(C.sqlite_files(path)) do os.remove(p) end
end

--- The statements of a connection: start(sql), f(sql) raising where it
-- fails, and row(sql), read(start(sql)): the statement's first row, the
-- statement closed.
local function runner (f, read)
  local start = C.or_raise(f)
  return start, function (sql) return read(start(sql)) end
end

--- The statements of a LuaDBI connection: prepare(sql), and row(sql),
-- which prepares and runs a statement and returns its first row (an
-- array, or nil where it has none).
function C.dbi_runner (db)
  return runner(function (sql) return db:prepare(sql) end, function (st)
    assert(st:execute())
    local r = st:fetch(false)
    st:close()
    return r
  end)
end

--- The statements of a LuaSQL connection: exec(sql), returning what
-- con:execute does (a cursor, or a count of rows), and row(sql), which runs
-- a statement and returns its first row as an array ({} where it has
-- none).
function C.luasql_runner (con)
  return runner(function (sql) return con:execute(sql) end, function (cur)
    if type(cur) ~= "userdata" then return {} end
    local r = { cur:fetch() }
    cur:close()
    return r
  end)
end

--- A fresh SQLite database at path through the driver module name, from
-- the Debian package: its old files removed, connect(module) -> the
-- connection and a handle, or nil and why not; then the connection, the
-- handle and the statements of the connection by runner(connection).
local function sqlite_open (path, name, package, connect, runner_of)
  local mod, why = C.driver(name, package)
  if not mod then return nil, why end
  C.sqlite_remove(path)
  local con, handle = connect(mod)
  if not con then return nil, handle end
  return con, handle, runner_of(con)
end

--- A fresh SQLite database at path through LuaDBI (its old files
-- removed), in autocommit mode: the connection, the DBI module and the
-- connection's prepare and row (C.dbi_runner), or nil and why not.
function C.dbi_open (path)
  return sqlite_open(path, "DBI", "lua-dbi-sqlite3", function (DBI)
    local db, err = DBI.Connect("SQLite3", path)
    if not db then
      return nil, "DBD.SQLite3 not available: " .. tostring(err)
    end
    db:autocommit(true)     -- transactions are the callers' own BEGINs
    return db, DBI
  end, C.dbi_runner)
end

--- A fresh SQLite database at path through LuaSQL (its old files
-- removed): the connection, its environment and the connection's exec and
-- row (C.luasql_runner), or nil and why not.
function C.luasql_open (path)
  return sqlite_open(path, "luasql.sqlite3", "lua-sql-sqlite3",
                     function (luasql)
    local env = assert(luasql.sqlite3())
    return assert(env:connect(path)), env
  end, C.luasql_runner)
end

--- The fields of a child's line "fmap-bench peer=NAME k=v ...", numbers;
-- { skipped = why } for a skipped peer; nil when the line is missing or
-- lacks one of fields.
function C.parse (name, out, fields)
  local pat = name:gsub("%p", "%%%0")
  local why = out:match("fmap%-bench peer=" .. pat .. " skipped: ([^\n]*)")
  if why then return { skipped = why } end
  local line = out:match("fmap%-bench peer=" .. pat .. " ([^\n]*)")
  if not line then return nil end
  local r = {}
  for k, v in line:gmatch("(%S+)=(%S+)") do r[k] = tonumber(v) end
  for _, f in ipairs(fields) do
    if r[f] == nil then return nil end
  end
  return r
end

--- Whether a peer's result r (nil before its first round) stops its
-- rounds: skipped, failed, or with problems.
function C.stopped (r)
  return r and (r.skipped or r.failed or r.problems)
end

--- A peer's result in results, where it ran clean (not stopped); else
-- nil or false.
function C.ran (results, name)
  local r = results[name]
  return r and not C.stopped(r) and r
end

--- Adds a round's result r of a peer to results[name]: the first, or one
-- that stops the peer, stands whole; otherwise each of ops keeps its best
-- (lowest) time and rss_kb its highest peak.
function C.keep_best (results, name, r, ops)
  local best = results[name]
  if best and not C.stopped(r) then
    for _, op in ipairs(ops) do best[op] = math.min(best[op], r[op]) end
    best.rss_kb = math.max(best.rss_kb, r.rss_kb)
  else
    results[name] = r
  end
end

--- 1234567.8 -> "1,234,568"
function C.thousands (x)
  local s = string.format("%d", math.floor(x + 0.5))
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""))
end

--- The durable end of a write phase in WAL mode: copies the WAL into the
-- database, syncs it and leaves the WAL empty.
C.SQL_CHECKPOINT = "PRAGMA wal_checkpoint(TRUNCATE)"

return C
