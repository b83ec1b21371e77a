--- bench/bench_mmlist.lua: fmap.mmlist beside a plain Lua table doing the
-- same work, in one run: append, get, set and pop of N 16-byte items.
--   build/bin/fmap bench/bench_mmlist.lua [--n N] [--file PATH]
-- Prints operations per second for each and the table's lead as a ratio.
-- The table is native and in memory; the list keeps every item in a file
-- through bounds-checked views, so the ratio is the price of that.
local fmap = require "fmap"
local mmlist = require "fmap.mmlist"

local cli = require "fmap.cli"
local opts = cli.benchmark("bench_mmlist",
  "usage: fmap bench/bench_mmlist.lua [--n N] [--file PATH]",
  { "n", "file" }):parse(arg)
local n = opts.n or 1000000
local path = opts.file or cli.tmppath("-bench-mmlist.fmap")

-- 1024 distinct 16-byte items, made once, so that neither side pays for
-- building strings inside the timed loops.
local items, others = {}, {}
for k = 0, 1023 do
  items[k] = string.format("item%012d", k)
  others[k] = string.format("ITEM%012d", k)
end

local clock = fmap.clock or os.clock
local function timed (f)
  collectgarbage()
  collectgarbage()
  local t = clock()
  f()
  return n / (clock() - t)
end

-- The table: the same operations, written as a Lua program would.
local tab, mm = {}, {}
do
  local t, tn = {}, 0
  tab.append = timed(function ()
    for k = 1, n do tn = tn + 1; t[tn] = items[k & 1023] end
  end)
  tab.get = timed(function ()
    for k = 1, n do
      if t[k] ~= items[k & 1023] then error("get " .. k) end
    end
  end)
  tab.set = timed(function ()
    for k = 1, n do t[k] = others[k & 1023] end
  end)
  tab.pop = timed(function ()
    for k = n, 1, -1 do
      local s = t[tn]
      t[tn] = nil
      tn = tn - 1
      if s ~= others[k & 1023] then error("pop " .. k) end
    end
  end)
end

local bf = assert(fmap.create(path))
local l = assert(mmlist.new(bf))
mm.append = timed(function ()
  for k = 1, n do l:append(items[k & 1023]) end
end)
local peak = bf:size()
mm.get = timed(function ()
  for k = 1, n do
    if l:get(k) ~= items[k & 1023] then error("get " .. k) end
  end
end)
mm.set = timed(function ()
  for k = 1, n do l:set(k, others[k & 1023]) end
end)
mm.pop = timed(function ()
  for k = n, 1, -1 do
    if l:pop() ~= others[k & 1023] then error("pop " .. k) end
  end
end)
assert(#l == 0 and l:verify())
bf:remove()

print(string.format("fmap.mmlist vs a Lua table, %d items of 16 bytes "
                    .. "(file at its largest: %.1f MB)", n, peak / 2^20))
print(string.format("%-8s %14s %14s %10s", "op", "mmlist op/s", "table op/s",
                    "table/mmlist"))
for _, op in ipairs({ "append", "get", "set", "pop" }) do
  print(string.format("%-8s %14.0f %14.0f %9.1fx", op, mm[op], tab[op],
                      tab[op] / mm[op]))
end
