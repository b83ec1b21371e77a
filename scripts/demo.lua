--- scripts/demo.lua: a first tour of fmap: the block layer in brief, then
-- a B+tree of a few hundred thousand records in a file.
-- Run it as: build/bin/fmap scripts/demo.lua [FILE] [--n N]   (--help)
local fmap = require "fmap"
local bptree = require "fmap.bptree"
local codec = require "fmap.codec"
local cli = require "fmap.cli"

local HELP = [[
usage: fmap scripts/demo.lua [FILE] [--n N]

A first tour of fmap, printed as it goes: a block allocated, written
through a view and read back, a read past the view's end refused; then a
B+tree of N records of 8-byte keys and 16-byte values in a file, added in
a scattered order, looked up, walked forward and backward over a range,
scanned, three records in four removed, flushed, reopened and verified,
with the time each step took and the file's figures. The demo makes FILE
and removes it at the end, so FILE must not exist.

Options:
  --n N       records in the tree, at least 10 (default 300000)
  -h, --help  print this help

Example:
  fmap scripts/demo.lua
  fmap scripts/demo.lua /tmp/tour.fmap --n 1000000

Exit status: 0 when the tour ran, 1 when the file cannot be made, 2 on
a usage error or a FILE that exists.]]

local cmd = cli.new("demo", HELP, {
  ["--n"] = { key = "n", kind = "integer", min = 10 },
}, { required = 0 })
local opts = cmd:parse(arg or {})
local path, N = opts.path, opts.n or 300000
do
  -- the demo makes FILE and removes it at the end: never someone's file
  local f = path and io.open(path, "rb")
  if f then
    f:close()
    io.stderr:write("demo: " .. path .. " exists; the demo makes its file "
                    .. "and removes it after, so name one that does not\n")
    os.exit(2)
  end
end
if not path then
  path = os.tmpname()          -- a unique name; the file itself is not ours
  os.remove(path)
  path = path .. ".fmap"
end
local function say (fmt, ...) print(string.format(fmt, ...)) end
local clock = fmap.clock
local function rate (n, secs) return n / secs end

say("%s: a tour of the block layer and of a B+tree, in %s", fmap.VERSION,
    path)

-- 1. The block layer: a file of fixed-size blocks, mapped into memory.
say("\n-- the block layer")
do
  local bf <close> = assert(fmap.create(path))
  local off = bf:allocate()                  -- a zeroed block's offset
  local v <close> = bf:get(off)              -- a bounds-checked view of it
  local nextpos = v:pack(0, "<I8s2", 42, "hello")
  say("allocated block %d; packed an integer and a string in %d bytes: %s",
      off, nextpos, table.concat({ v:unpack("<I8s2", 0) }, ", "))
  v:set_u32(100, 0xC0FFEE)                   -- the fixed-width fast path
  say("u32 at 100: 0x%X", v:u32(100))
  io.write(v:hex(0, 32))
  local ok, err = pcall(function () return v:read(4090, 10) end)
  say("reading past the view's end raises: %s", err)
  v:release()
  bf:set_control_data("root=" .. off)        -- a small string in the header
  bf:free(off)
  say("%s", tostring(bf))
end

-- 2. A B+tree in a file: keys are codec-encoded integers (big-endian, so
-- they sort as numbers), values 16-byte strings.
say("\n-- a B+tree of %d records", N)
local function key (i) return codec.uint(i) end
local function value (i) return string.format("record %09d", i) end
local MB = 1024 * 1024

local bf = assert(fmap.create(path))         -- create truncates the file
local t = assert(bptree.new(bf, 8, 16))
say("new tree: %s; control data %q", tostring(t), bf:control_data())

-- Insert in a scattered order (i * P mod N visits every i once, P prime).
local P = N % 7919 == 0 and 7927 or 7919
local t0 = clock()
for j = 0, N - 1 do
  local i = j * P % N
  assert(t:add(key(i), value(i)))
end
local secs = clock() - t0
local st = assert(t:stats())
say("added %d records in scattered order in %.2f s (%.0f/s): height %d, "
    .. "%d leaves %.0f%% full, %d internal nodes", N, secs, rate(N, secs),
    st.height, st.leaves, st.leaf_fill * 100, st.internals)
say("file: %.1f MiB for %.1f MiB of keys and values", bf:size() / MB,
    N * 24 / MB)

-- Look up every third record and a few missing ones.
t0 = clock()
local found = 0
for i = 0, N - 1, 3 do
  if t:get(key(i)) == value(i) then found = found + 1 end
end
secs = clock() - t0
say("looked up %d records in %.2f s (%.0f/s), %d found; record %d is %q, "
    .. "record %d is %s", (N + 2) // 3, secs, rate((N + 2) // 3, secs),
    found, N // 2, t:get(key(N // 2)), N + 5, tostring(t:get(key(N + 5))))

-- Walk a range, forward and backward (range(from, to) with from > to).
local from, to = N // 2, N // 2 + 999
t0 = clock()
local n, first, last = 0, nil, nil
for k, v in t:range(key(from), key(to)) do
  n = n + 1
  first = first or v
  last = v
end
secs = clock() - t0
say("range [%d, %d]: %d records in %.4f s, %q .. %q", from, to, n, secs,
    first, last)
local back = {}
for k in t:range(key(to), key(from)) do
  back[#back + 1] = codec.decode("u8", k)
  if #back == 3 then break end
end
say("the same range backward starts %s", table.concat(back, ", "))

-- A full scan in key order.
t0 = clock()
n = 0
for _ in t:iterate() do n = n + 1 end
secs = clock() - t0
say("scanned all %d records in key order in %.2f s (%.0f/s)", n, secs,
    rate(n, secs))

-- Remove three records in four; nodes left under a quarter full merge
-- with a sibling and give their blocks back.
local used = bf:stats().used_blocks
t0 = clock()
local removed = 0
for i = 0, N - 1 do
  if i % 4 ~= 1 then removed = removed + t:remove(key(i)) end
end
secs = clock() - t0
st = assert(t:stats())
say("removed %d records in %.2f s (%.0f/s): %d left, %d leaves %.0f%% "
    .. "full, %d blocks back to the free list", removed, secs,
    rate(removed, secs), t:size(), st.leaves, st.leaf_fill * 100,
    used - bf:stats().used_blocks)

-- Durable, closed, reopened, verified.
t0 = clock()
assert(bf:flush())
say("flushed to disk in %.3f s", clock() - t0)
t = nil
bf:close()
bf = assert(fmap.open(path))
t = bptree.open(bf)
t0 = clock()
assert(t:verify())
secs = clock() - t0
say("reopened: %s; verify() passed in %.2f s", tostring(t), secs)
say("record 0 after the removal: %s; record 1: %q", tostring(t:get(key(0))),
    t:get(key(1)))
local fs = bf:stats()
say("file: %d bytes, %d blocks of %d: %d used, %d free in %d run(s); "
    .. "check: %s", fs.size, fs.blocks, fs.block_size, fs.used_blocks,
    fs.free_blocks, fs.free_runs, tostring(bf:check()))
t = nil
bf:close()
os.remove(path)
say("removed %s", path)
