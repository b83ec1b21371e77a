--- scripts/inspect.lua: what is in an fmap file, and is it sound.
-- Run it as: fmap scripts/inspect.lua [--free] [--block OFFSET] [--stats]
--                                     [--audit] [--verify] [-r MODULE] FILE
-- (--help says more.) Opens the file read-only.
local fmap = require "fmap"
local repl = require "fmap.repl"
local cli = require "fmap.cli"
local progress = require "fmap.progress"

local HELP = [[
usage: fmap scripts/inspect.lua [--free] [--block OFFSET] [--stats] [--audit]
                               [--verify] [-r MODULE] FILE

Prints the header of an fmap file (format version, block size, size,
blocks used, free and never allocated, the control data, the journal
beside it) and what bf:check() finds: the free list and the header
against the file. The options add more; the structures are found by
their classifiers (fmap's own, and those -r loads). FILE is opened
read-only: inspect changes neither it nor its journal. Beside a writer
(another BlockFile has FILE open) it shows the writer's last commit as
of its open, and says so on a line of its own. The audit and the verify
show a spinner on stderr while they run, when stderr is a terminal and
they take longer than a second.

Options:
  --free             list the free list, run by run
  --block OFFSET     hexdump the block at OFFSET (decimal or 0x hex),
                     headed by what it is (free, the control block, or the
                     structure that owns it); repeatable
  --stats            blocks by kind, the free list's figures
                     (fragmentation), each structure's figures (a tree's
                     height and fill, a store's blobs, a list's items)
  --audit            walk every structure: blocks leaked (owned by none
                     and not free), owned twice, free blocks still pointed
                     at, pointers outside the file
  --verify           run each structure's own verify() (every invariant
                     of a B+tree, a blob store, a list, a hash table)
  -r, --require MOD  load MOD first: a module that registers the
                     classifier of your own structure (repeatable)
  -h, --help         print this help

Example:
  fmap scripts/inspect.lua store.fmap
  fmap scripts/inspect.lua --stats --audit --verify store.fmap

Exit status: 0 when the file is sound, 1 when it cannot be opened or
check() (or --audit, or --verify) finds problems, which it prints, 2 on
a usage error (an OFFSET that is no block of the file is one, said
before anything is printed).]]

local cmd = cli.new("inspect", HELP, { "modules",
  ["--block"] = { key = "blocks", kind = "offset", many = true,
                  value = "an OFFSET" },
  ["--free"] = { key = "free", kind = "flag" },
  ["--stats"] = { key = "stats", kind = "flag" },
  ["--audit"] = { key = "audit", kind = "flag" },
  ["--verify"] = { key = "verify", kind = "flag" },
})

local function row (name, fmt, ...)
  print(string.format("  %-14s " .. fmt, name, ...))
end

local function plural (n, word)
  return string.format("%d %s%s", n, word, n == 1 and "" or "s")
end

-- What the journal beside the file says: a writer's in use, or one a
-- writer left (it crashed, or closed while a reader had the file open),
-- whose commits this open laid over the file.
local function journal (bf, st)
  local f = st.path and io.open(st.path .. "-wal", "rb")
  local size = f and f:seek("end")
  if f then f:close() end
  if st.writer and st.journal_replayed > 0 then
    return string.format("%s of the writer's commits since its last "
      .. "checkpoint, %s: shown as committed", plural(st.journal_replayed,
      "block"), plural(size or 0, "byte"))
  elseif st.writer and size then
    return string.format("%s, the writer's, no commit since its last "
                         .. "checkpoint", plural(size, "byte"))
  elseif st.journal_replayed > 0 then
    return string.format("%s of commits a writer left, %s: shown "
      .. "as committed (%s)", plural(st.journal_replayed, "block"),
      plural(size or 0, "byte"), st.readonly and "an open for writing "
      .. "copies them into the file" or "copied into the file at open")
  elseif size then
    return string.format("%s beside the file, no complete commit",
                         plural(size, "byte"))
  end
  return "none (every commit is in the file)"
end

local function header (bf)
  local st = bf:stats()
  print(st.path)
  row("format", "version %d", st.version)
  row("block size", "%d bytes", st.block_size)
  row("size", "%d bytes, %s", st.size, plural(st.blocks, "block"))
  row("blocks", "%d used, %d free in %s, %d never allocated (tail)",
      st.used_blocks, st.free_blocks, plural(st.free_runs, "run"),
      st.tail_blocks)
  local cd = bf:control_data()
  row("control data", "%d of %d bytes%s", #cd, st.max_control_data,
      #cd > 0 and (": " .. repl.quote(cd, 64)) or "")
  row("journal", "%s", journal(bf, st))
  local note = cli.writer_note(bf)
  if note then row("writer", "%s", note) end
end

local function free_list (bf)
  local ok, runs = pcall(bf.free_list, bf)
  if not ok then  -- a damaged list; check() has said where
    local msg = tostring(runs):gsub("^.-:%d+: ", "")
    print("free list: cannot be walked: " .. msg)
    return
  end
  if #runs == 0 then
    print("free list: empty")
    return
  end
  local total = 0
  for _, r in ipairs(runs) do total = total + r.blocks end
  print(string.format("free list: %s in %s, head first",
                      plural(total, "block"), plural(#runs, "run")))
  for _, r in ipairs(runs) do
    print(string.format("  offset %-12d %s", r.offset,
                        plural(r.blocks, "block")))
  end
end

-- The engine lends no view of the control block or of a free block, and
-- those are what one wants to see in a damaged file: read them from the
-- file, and dump them through a view of an anonymous BlockFile so the
-- dump looks like any other.
local function raw_hex (path, off, bs)
  local f, err = io.open(path, "rb")
  if not f then cmd:fail(err) end
  f:seek("set", off)
  local bytes = f:read(bs) or ""
  f:close()
  local scratch <close> = fmap.anonymous(bs)
  local v <close> = scratch:get(scratch:allocate())
  v:write(0, bytes)
  return v:hex(0, #bytes)
end

-- An --block OFFSET must name a block of the file: a usage error else.
local function check_block (bf, off)
  local bs, size = bf:block_size(), bf:size()
  if off % bs ~= 0 then
    cmd:usage_error(string.format("--block %d is not a multiple of the "
                                  .. "block size (%d)", off, bs))
  elseif off >= size then
    cmd:usage_error(string.format("--block %d is past the end of the file "
                                  .. "(%d bytes)", off, size))
  end
end

-- What a structure's classifier calls the allocated block at off: "leaf
-- of bptree@4096", or "allocated" where none claims it. One scan of the
-- file serves every --block.
local scanned
local function kind_of (bf, off)
  local classify = require "fmap.classify"
  if scanned == nil then
    local ok, r = pcall(classify.scan, bf)
    scanned = ok and r or false
  end
  local kind, owner = nil, nil
  if scanned then kind, owner = classify.kind_at(scanned, off) end
  if kind == nil or kind == "unknown" then
    return "allocated, no structure's"
  end
  return "allocated: " .. kind .. (owner and " of " .. owner or "")
end

local function block (bf, off)
  local bs = bf:block_size()
  local what, dump
  if off == 0 then
    what, dump = "the control block", raw_hex(bf:path(), off, bs)
  elseif bf:is_free(off) then
    what, dump = "free", raw_hex(bf:path(), off, bs)
  else
    local ok, v = pcall(bf.get, bf, off)
    if ok then
      dump = v:hex()
      v:release()
      what = kind_of(bf, off)
    else  -- past the allocated area: the never-used tail
      what, dump = "tail, never allocated", raw_hex(bf:path(), off, bs)
    end
  end
  print(string.format("block at offset %d (%s):", off, what))
  io.write(dump)
end

-- Runs the verify() of every structure the classifiers find: a line
-- each. Returns whether all passed.
local function verify (bf)
  local classify = require "fmap.classify"
  local dump = require "fmap.dump"
  local bar = progress.new("inspect --verify", nil)
  local r = bar:during(classify.scan, bf)
  local sound = true
  if #r.structures == 0 then print("verify: no structure found") end
  for i, s in ipairs(r.structures) do
    bar:label(string.format("inspect --verify %s (%d of %d)", s.label, i,
                            #r.structures))
    local obj, why = dump.open(bf, s.name, s.root)
    local result
    if obj then
      local good, msg = bar:during(obj.verify, obj)
      result = good and "ok" or "FAILED: " .. tostring(msg)
      sound = sound and good
    elseif why:match("^a dump holds no ") then
      result = "not verified (no verify known for " .. s.name .. ")"
    else
      result = "FAILED: " .. why
      sound = false
    end
    bar:clear()
    print(string.format("verify %s: %s", s.label, result))
  end
  bar:done()
  return sound
end

local opts = cmd:parse(arg)
cmd:require_all(opts.modules)
local bf <close> = cmd:open(opts.path)
for _, off in ipairs(opts.blocks) do check_block(bf, off) end
header(bf)
local ok, problems = bf:check()
if ok then
  row("check", "ok")
else
  row("check", "%s:", plural(#problems, "problem"))
  for _, p in ipairs(problems) do print("    " .. p) end
end
if opts.free then free_list(bf) end
for _, off in ipairs(opts.blocks) do block(bf, off) end
if opts.stats then
  io.write((progress.during("inspect --stats",
                            require("fmap.classify").stats, bf)))
end
if opts.audit then
  local report, summary = progress.during("inspect --audit",
                                          require("fmap.audit"), bf)
  print(summary)
  ok = ok and report.ok
end
if opts.verify then ok = verify(bf) and ok end
if not ok then
  bf:close()
  os.exit(1)
end
