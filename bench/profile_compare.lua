--- bench/profile_compare.lua: the worked comparison of doc/profiling.md.
-- fmap's B+tree (fmap.bptree) against the guide's hash table
-- (lua/fmap/examples/hashtable.lua) on the same keys, under fmap.profile:
-- N inserts, then N gets of keys drawn at random (uniformly, from a fixed
-- seed), each structure in a file of its own.
--   build/bin/fmap bench/profile_compare.lua [--n N] [-o CURVES.svg]
-- Prints each file's report, and with -o draws the four miss curves
-- (insert and get of each structure) in one picture. The keys and values
-- are the standard workload's (lua/fmap/workload.lua): 16 bytes each.
local fmap = require "fmap"
local profile = require "fmap.profile"
local W = require "fmap.workload"
local ht = require "fmap.examples.hashtable"
local cli = require "fmap.cli"

local cmd = cli.benchmark("profile_compare",
  "usage: fmap bench/profile_compare.lua [--n N] [-o CURVES.svg]",
  { "output", "n" })
local opts = cmd:parse(arg)
local N = opts.n or 100000

-- The hash table gets a bucket per 70 entries: a bucket block holds 102
-- entries of 40 bytes (16 + 16 and two 4-byte lengths), so chains stay
-- one block long.
local BUCKETS = math.min(65536, math.max(1, N // 70))

local tpath, hpath = cli.tmppath("-bptree.fmap"), cli.tmppath("-hash.fmap")
local tbf, hbf = assert(fmap.create(tpath)), assert(fmap.create(hpath))
local t = fmap.bptree.new(tbf, 16, 16)
local h = assert(ht.create(hbf, BUCKETS))

-- The get phase's keys: uniform, from a fixed seed, the same for both.
math.randomseed(20240601)
local order = {}
for j = 1, N do order[j] = math.random(0, N - 1) end

local op, stored = profile.op, profile.stored
local report = assert(profile.run({ tbf, hbf }, function ()
  profile.phase "insert"
  for i = 0, N - 1 do t:add(W.key(i), W.value(i)) end
  for i = 0, N - 1 do
    local k, v = W.key(i), W.value(i)
    local o <close> = op("hashtable.put")
    assert(h:put(k, v))
    stored(#k + #v)
  end
  profile.phase "get"
  for j = 1, N do t:get(W.key(order[j])) end
  for j = 1, N do op("hashtable.get", h.get, h, W.key(order[j])) end
end))
local tr, hr = report.files[1], report.files[2]
local st = t:stats()
tbf:close()
hbf:close()
os.remove(tpath)
os.remove(hpath)

print(string.format("N = %d keys of 16 bytes, values of 16; the B+tree: "
                    .. "height %d, %d internal nodes, %d leaves; the hash "
                    .. "table: %d buckets", N, st.height, st.internals,
                    st.leaves, BUCKETS))
local I = st.internals
local sizes, seen = {}, {}
for _, c in ipairs({ 1, I, I + 4, 2 * I + 4, 4 * I, 8 * I }) do
  if not seen[c] then sizes[#sizes + 1], seen[c] = c, true end
end
table.sort(sizes)
local row = { "misses per get, cache of" }
local bt, hs = { "  B+tree" }, { "  hash table" }
for _, c in ipairs(sizes) do
  row[#row + 1] = string.format("%6d", c)
  bt[#bt + 1] = string.format("%6.2f", tr:misses(c, "get"))
  hs[#hs + 1] = string.format("%6.2f", hr:misses(c, "get"))
end
print(table.concat(row, " ") .. " blocks")
print(string.format("%-24s", bt[1]) .. " " .. table.concat(bt, " ", 2))
print(string.format("%-24s", hs[1]) .. " " .. table.concat(hs, " ", 2))
print()
print("B+tree " .. tr:format_one())
print()
print("hash table " .. hr:format_one())
if opts.output then
  local text = profile.svg({
    { report = tr, phase = "insert", label = "B+tree add" },
    { report = tr, phase = "get", label = "B+tree get" },
    { report = hr, phase = "insert", label = "hash table put" },
    { report = hr, phase = "get", label = "hash table get" },
  }, { title = string.format("B+tree vs hash table, %d keys: LRU misses "
                             .. "per operation", N) })
  local f, msg = io.open(opts.output, "w")
  if not f then cmd:fail(msg) end
  f:write(text)
  f:close()
  print("wrote " .. opts.output)
end
