--- scripts/demo.lua: a first tour of fmap's block layer.
-- Run it as: build/bin/fmap scripts/demo.lua [FILE]
local fmap = require "fmap"

local path = arg and arg[1]
if not path then
  path = os.tmpname()          -- a unique name; the file itself is not ours
  os.remove(path)
  path = path .. ".fmap"
end
local function say (fmt, ...) print(string.format(fmt, ...)) end

say("%s: a tour of the block layer, in %s", fmap.VERSION, path)

-- A BlockFile is a file of fixed-size blocks, mapped into memory.
do
  local bf <close> = assert(fmap.create(path))
  say("created: %s", tostring(bf))

  -- allocate() hands out a zeroed block: its 0-based byte offset.
  local root = bf:allocate()
  local run = bf:allocate_blocks(4)          -- four contiguous blocks
  say("allocated block %d and a run of 4 at %d", root, run)

  -- A view is a bounds-checked window on blocks, released by <close>.
  do
    local v <close> = bf:get(root)
    local nextpos = v:pack(0, "<I8s2", 42, "hello")
    say("packed an integer and a string in %d bytes: %s", nextpos,
        table.concat({ v:unpack("<I8s2", 0) }, ", "))
    v:set_u32(100, 0xC0FFEE)                  -- the fixed-width fast path
    say("u32 at 100: 0x%X", v:u32(100))
    io.write(v:hex(0, 32))
  end

  -- bf:with() lends a view to a function and releases it afterwards.
  bf:with(run, 4, function (v)
    v:fill(0x2A)
    say("filled %d bytes of the run with '*'", #v)
  end)

  -- Misuse raises a clear error instead of corrupting memory.
  local ok, err = pcall(function () bf:free(root + 1) end)
  say("freeing a misaligned offset: %s", err)
  do
    local v <close> = bf:get(root)
    ok, err = pcall(function () return v:read(4090, 10) end)
    say("reading past a view's end: %s", err)
  end

  -- The control data is a small string kept in the file's header.
  bf:set_control_data("root=" .. root)
  bf:free(run, 4)
  assert(bf:flush())                           -- durable: on disk now
  say("after free and flush: %s", tostring(bf))
end

-- Open it again: everything is where it was.
do
  local bf <close> = assert(fmap.open(path))
  local root = tonumber(bf:control_data():match("^root=(%d+)$"))
  local v <close> = bf:get(root)
  say("reopened: control data %q, block %d says %s", bf:control_data(),
      root, table.concat({ v:unpack("<I8s2", 0) }, ", "))
  local st = bf:stats()
  say("stats: %d bytes, %d blocks of %d, %d used, %d free in %d run(s)",
      st.size, st.blocks, st.block_size, st.used_blocks, st.free_blocks,
      st.free_runs)
  say("check: %s", tostring(bf:check()))
  v:release()
  -- The freed run is reused by the next allocation that fits.
  say("allocate_blocks(2) reuses the freed run: %d", bf:allocate_blocks(2))
end

os.remove(path)
say("removed %s", path)
