--- bench/common.lua: what bench.lua, stores.lua and bench_txn.lua share:
-- the host and its directory, shell quoting and a popen wrapper, the
-- drivers of the SQLite peers and their files. A script loads it with
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

--- A fresh SQLite database at path through LuaDBI (its old files
-- removed), in autocommit mode: the connection and the DBI module, or nil
-- and why not.
function C.dbi_open (path)
  local DBI, why = C.driver("DBI", "lua-dbi-sqlite3")
  if not DBI then return nil, why end
  C.sqlite_remove(path)
  local db, err = DBI.Connect("SQLite3", path)
  if not db then
    return nil, "DBD.SQLite3 not available: " .. tostring(err)
  end
  db:autocommit(true)       -- transactions are the callers' own BEGINs
  return db, DBI
end

--- A fresh SQLite database at path through LuaSQL (its old files
-- removed): the connection and its environment, or nil and why not.
function C.luasql_open (path)
  local luasql, why = C.driver("luasql.sqlite3", "lua-sql-sqlite3")
  if not luasql then return nil, why end
  C.sqlite_remove(path)
  local env = assert(luasql.sqlite3())
  local con = assert(env:connect(path))
  return con, env
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
