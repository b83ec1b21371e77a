--- bench/bench_tarantool.lua: the Tarantool peer of bench/bench.lua, the
-- standard workload on a memtx space with a TREE index, run by the
-- `tarantool` binary (Debian's tarantool 2.6, LuaJIT):
--   tarantool bench/bench_tarantool.lua DIR N
-- DIR is a fresh directory for the WAL and snapshots (created, emptied and
-- removed here). Prints the one machine-readable line every peer prints:
--   fmap-bench peer=tarantool n=N insert=SECS get=SECS scan=SECS
--     delete=SECS get_mismatches=M scan_count=C scan_unsorted=U removed=R
--     remaining=K file_bytes=B rss_kb=KB
-- The workload, kept exactly as the other peers run it:
--   key i   = 16 bytes, big-endian i * 0x9E3779B97F4A7C15 (mod 2^64), then i
--   value i = "val:%012d"
--   insert  i = 0..N-1 in one transaction; wal_mode = "fsync" makes its
--           commit the one durable flush of the phase
--   get     i = (j * 7919) % N for j = 0..N-1, each value checked
--   scan    the whole index in key order, order and count checked
--   delete  every even i in one transaction, committed durably
-- file_bytes is the size of DIR's WAL and snapshot files after the insert;
-- rss_kb is the process's peak resident set (VmHWM).
local ffi = require "ffi"
local bit = require "bit"
local fio = require "fio"
local clock = require "clock"

local dir, n = arg[1], tonumber(arg[2])
if not dir or not n or n < 1 or n ~= math.floor(n) then
  io.stderr:write("usage: tarantool bench/bench_tarantool.lua DIR N\n")
  os.exit(2)
end

local function rmdir (path)
  if not fio.path.is_dir(path) then return end
  for _, name in ipairs(fio.listdir(path) or {}) do
    fio.unlink(fio.pathjoin(path, name))
  end
  fio.rmdir(path)
end

rmdir(dir)
assert(fio.mkdir(dir), "cannot create " .. dir)

box.cfg {
  work_dir = dir,
  wal_mode = "fsync",          -- a commit returns once its WAL is on disk
  checkpoint_interval = 0,     -- no snapshot in the middle of a phase
  memtx_memory = math.max(256 * 1024 * 1024, n * 256),
  log = fio.pathjoin(dir, "tarantool.log"),
  log_level = 2,
}
local space = box.schema.space.create("kv", { engine = "memtx" })
space:create_index("primary", { type = "TREE", parts = { 1, "string" } })

-- Key i as the Lua peers build it with string.pack(">I8I8", i * M, i).
local MUL = 0x9E3779B97F4A7C15ULL
local buf = ffi.new("uint64_t[2]")
local function key (i)
  local u = ffi.cast("uint64_t", i)
  buf[0] = bit.bswap(u * MUL)
  buf[1] = bit.bswap(u)
  return ffi.string(buf, 16)
end

local function value (i)
  return string.format("val:%012d", i)
end

local function dir_bytes ()
  local total = 0
  for _, name in ipairs(fio.listdir(dir) or {}) do
    if name:match("%.xlog$") or name:match("%.snap$") then
      total = total + fio.stat(fio.pathjoin(dir, name)).size
    end
  end
  return total
end

local function peak_rss_kb ()
  local f = io.open("/proc/self/status", "r")
  if not f then return -1 end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+) kB")) or -1
end

local r = {}

-- insert
local t = clock.monotonic()
box.begin()
for i = 0, n - 1 do
  space:insert { key(i), value(i) }
end
box.commit()
r.insert = clock.monotonic() - t
r.file_bytes = dir_bytes()

-- get
local mismatches = 0
t = clock.monotonic()
for j = 0, n - 1 do
  local i = (j * 7919) % n
  local tuple = space:get(key(i))
  if tuple == nil or tuple[2] ~= value(i) then mismatches = mismatches + 1 end
end
r.get = clock.monotonic() - t

-- scan
local count, unsorted, prev = 0, 0, nil
t = clock.monotonic()
for _, tuple in space.index.primary:pairs(nil, { iterator = "ALL" }) do
  local k = tuple[1]
  if prev and not (prev < k) then unsorted = unsorted + 1 end
  prev = k
  count = count + 1
end
r.scan = clock.monotonic() - t

-- delete
local removed = 0
t = clock.monotonic()
box.begin()
for i = 0, n - 1, 2 do
  if space:delete(key(i)) ~= nil then removed = removed + 1 end
end
box.commit()
r.delete = clock.monotonic() - t

print(string.format(
  "fmap-bench peer=tarantool n=%d insert=%.9f get=%.9f scan=%.9f "
  .. "delete=%.9f get_mismatches=%d scan_count=%d scan_unsorted=%d "
  .. "removed=%d remaining=%d file_bytes=%d rss_kb=%d",
  n, r.insert, r.get, r.scan, r.delete, mismatches, count, unsorted,
  removed, space:len(), r.file_bytes, peak_rss_kb()))
io.stdout:flush()
rmdir(dir)
os.exit(0)
