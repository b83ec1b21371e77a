--- fmap.workload: the standard benchmark workload, over any store, so
-- that every benchmark script runs exactly the same work.
--
--   key i   = string.pack(">I8I8", i * 0x9E3779B97F4A7C15, i), i = 0..N-1
--             (the multiplication wraps mod 2^64); value i = "val:%012d"
--   insert  all N in order into an empty store, then one flush (timed)
--   get     N lookups of i = (j * 7919) % N for j = 0..N-1, values checked
--   scan    every record in key order, order and count checked
--   delete  every even i, then one flush (timed), removals counted
--
-- A store is a table of functions (an adapter):
--   insert(k, v)        adds a record
--   get(k) -> v | nil   the value of k
--   scan() -> iterator  a generic-for iterator of k, v in key order
--   delete(k) -> n      removes k, returning how many records went
--   flush()             makes the store durable (nil: nothing to do)
--   begin()             optional: opens a transaction at the start of the
--                       insert and the delete phase (timed), which their
--                       flush commits; nil: no transaction
--   count() -> n        records in the store (optional; checked after
--                       delete, untimed)
--
--   local W = require "fmap.workload"
--   local r = W.run(store, 1000000)     -- r.insert.secs, r.get.ops_s, ...
local fmap = require "fmap"

local M = {}

local spack, sformat = string.pack, string.format
local clock = fmap.clock

--- The multiplier that scatters the keys: 2^64 / golden ratio.
M.MUL = 0x9E3779B97F4A7C15
local MUL = M.MUL

--- Key i: 16 bytes.
function M.key (i) return spack(">I8I8", i * MUL, i) end

--- Value i: 16 bytes.
function M.value (i) return sformat("val:%012d", i) end

--- The phases, in order.
M.PHASES = { "insert", "get", "scan", "delete" }

local function result (ops, secs, extra)
  extra = extra or {}
  extra.ops, extra.secs = ops, secs
  extra.ops_s = secs > 0 and ops / secs or math.huge
  extra.ok = extra.ok == nil and true or extra.ok
  return extra
end

--- Inserts records 0..n-1, then flushes; in one transaction if the store
-- has begin.
-- @return {ops, secs, ops_s, ok}
function M.insert (store, n)
  local insert, key, value = store.insert, M.key, M.value
  collectgarbage()
  local t = clock()
  if store.begin then store.begin() end
  for i = 0, n - 1 do insert(key(i), value(i)) end
  if store.flush then store.flush() end
  return result(n, clock() - t)
end

--- Looks up n keys in a scattered order, checking each value.
-- @return {ops, secs, ops_s, mismatches, ok}
function M.get (store, n)
  local get, key, value = store.get, M.key, M.value
  local bad = 0
  collectgarbage()
  local t = clock()
  for j = 0, n - 1 do
    local i = (j * 7919) % n
    if get(key(i)) ~= value(i) then bad = bad + 1 end
  end
  return result(n, clock() - t, { mismatches = bad, ok = bad == 0 })
end

--- Walks the store in key order, checking order and count (n expected).
-- Keys compare with Lua's <, which is byte order in the C locale that
-- fmap and lua run in.
-- @return {ops, secs, ops_s, count, unsorted, ok}
function M.scan (store, n)
  local count, unsorted, prev = 0, 0, nil
  collectgarbage()
  local t = clock()
  for k in store.scan() do
    if prev and not (prev < k) then unsorted = unsorted + 1 end
    prev = k
    count = count + 1
  end
  local secs = clock() - t
  return result(count, secs, { count = count, unsorted = unsorted,
                               ok = count == n and unsorted == 0 })
end

--- Deletes every even record, then flushes, in one transaction if the
-- store has begin; checks the removals and, if the store can count, what
-- is left.
-- @return {ops, secs, ops_s, removed, remaining, ok}
function M.delete (store, n)
  local delete, key = store.delete, M.key
  local removed = 0
  collectgarbage()
  local t = clock()
  if store.begin then store.begin() end
  for i = 0, n - 1, 2 do removed = removed + delete(key(i)) end
  if store.flush then store.flush() end
  local secs = clock() - t
  local want = (n + 1) // 2
  local remaining = store.count and store.count() or nil
  return result(want, secs, {
    removed = removed, remaining = remaining,
    ok = removed == want and (remaining == nil or remaining == n - want) })
end

--- Runs the four phases in order.
-- @param store an adapter (see the top of this file)
-- @param n records
-- @param after optional function(phase, result) called after each phase,
-- outside its time (to take the file size after insert, say)
-- @return {insert = r, get = r, scan = r, delete = r, ok = all verified}
function M.run (store, n, after)
  local r, ok = {}, true
  for _, phase in ipairs(M.PHASES) do
    r[phase] = M[phase](store, n)
    ok = ok and r[phase].ok
    if after then after(phase, r[phase]) end
  end
  r.ok = ok
  return r
end

--- The size in bytes of the file at path, 0 when there is none (a
-- store's file, measured after a phase).
function M.file_size (path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local size = f:seek("end")
  f:close()
  return size
end

--- The process's peak resident set (VmHWM) in KiB, or nil.
function M.peak_rss_kb ()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return math.tointeger(tonumber(s:match("VmHWM:%s*(%d+) kB")))
end

--- A store over a plain Lua table: the in-memory upper bound for Lua
-- code. Its scan sorts a key array (inside the scan's time).
function M.table_store ()
  local map, size = {}, 0
  return {
    insert = function (k, v)
      if map[k] == nil then size = size + 1 end
      map[k] = v
    end,
    get = function (k) return map[k] end,
    scan = function ()
      local keys, n = {}, 0
      for k in pairs(map) do n = n + 1; keys[n] = k end
      table.sort(keys)
      local j = 0
      return function ()
        j = j + 1
        local k = keys[j]
        if k ~= nil then return k, map[k] end
      end
    end,
    delete = function (k)
      if map[k] == nil then return 0 end
      map[k] = nil
      size = size - 1
      return 1
    end,
    count = function () return size end,
  }
end

--- A store over an fmap.bptree of 16-byte keys and values.
-- Its flush is bf:flush(), which commits durably what the phase changed;
-- with opts.transactions, each write phase runs inside bf:begin() and its
-- flush is bf:commit() (durable). The reads run outside any transaction.
-- @param t the tree
-- @param opts optional: {transactions = true}
function M.bptree_store (t, opts)
  local bf = t:blockfile()
  local store = {
    insert = function (k, v) t:add(k, v) end,
    get = function (k) return t:get(k) end,
    scan = function () return t:iterate() end,
    delete = function (k) return t:remove(k) end,
    flush = function () assert(bf:flush()) end,
    count = function () return t:size() end,
  }
  if opts and opts.transactions then
    store.begin = function () bf:begin() end
    store.flush = function () assert(bf:commit()) end
  end
  return store
end

return M
