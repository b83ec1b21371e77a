--- scripts/load.lua: a new fmap file from a dump (scripts/dump.lua).
-- Run it as: fmap scripts/load.lua DUMP NEWFILE   (--help says more)
local dump = require "fmap.dump"
local fmap = require "fmap"
local cli = require "fmap.cli"

local HELP = [[
usage: fmap scripts/load.lua DUMP NEWFILE [--block-size N] [--force]
                            [--ignore-checksum]

Makes NEWFILE from a dump that scripts/dump.lua wrote: each structure is
made anew through its own module (a blob store, a list, a B+tree, the
hash table example) and filled in the dump's order, blob references in
tree values and structure offsets in the control data rewritten to where
things are in the new file. Everything happens in one transaction, in a
file named NEWFILE.load-tmp that takes the name NEWFILE only once whole:
a dump that is cut short, damaged, or fails its checksum leaves no file
behind. DUMP may be - for standard input. A progress bar shows on stderr
when it is a terminal and the load runs longer than a second.

Options:
  --block-size N     the new file's block size, a multiple of 4096 up to
                     2^30 (default: the dump's)
  --force            replace NEWFILE if it exists (an fmap file there is
                     held open for writing until the new one takes its
                     place, so no writer is cut off half-way)
  --ignore-checksum  load a dump whose checksum does not match its lines
                     (one edited by hand); it must still parse
  -h, --help         print this help

Example:
  fmap scripts/load.lua store.dump copy.fmap --block-size 8192
  fmap scripts/dump.lua old.fmap | fmap scripts/load.lua - new.fmap

Exit status: 0 when NEWFILE is made, 1 when DUMP cannot be read or is no
sound dump (the message names its line), NEWFILE exists, or the new file
cannot be written, 2 on a usage error.]]

local cmd = cli.new("load", HELP, {
  ["--block-size"] = { key = "block_size", kind = "integer", min = 1 },
  ["--force"] = { key = "force", kind = "flag" },
  ["--ignore-checksum"] = { key = "ignore_checksum", kind = "flag" },
}, { operands = { "DUMP", "NEWFILE" } })

local opts = cmd:parse(arg)
local input, newfile = opts.args[1], opts.args[2]
local bs = opts.block_size
if bs and (bs % 4096 ~= 0 or bs > 1 << 30) then
  cmd:usage_error(string.format("--block-size: %d is not a multiple of 4096 "
                                .. "up to 2^30", bs))
end
if input == newfile then
  cmd:usage_error("NEWFILE is DUMP: the load would overwrite its dump")
end
local r, err = dump.load(input == "-" and io.stdin or input, newfile, {
  block_size = bs, force = opts.force, progress = "load",
  ignore_checksum = opts.ignore_checksum,
  name = input == "-" and "stdin" or input,
})
if not r then cmd:fail(err) end
local bf <close> = assert(fmap.open(newfile, { readonly = true }))
local st = bf:stats()
print(string.format("loaded %s into %s: %d bytes, %d blocks of %d bytes, "
                    .. "%d structure%s", input == "-" and "stdin" or input,
                    newfile, st.size, st.blocks, st.block_size,
                    #r.structures, #r.structures == 1 and "" or "s"))
local UNIT = { varchar = "blobs", mmlist = "items", bptree = "records",
               hashtable = "records" }
for _, s in ipairs(r.structures) do
  print(string.format("  %s@%d: %d %s", s.kind, s.offset, s.count,
                      UNIT[s.kind]))
end
