--- scripts/dump.lua: the structures of an fmap file as portable text.
-- Run it as: fmap scripts/dump.lua FILE [-o OUT]   (--help says more)
-- The format is at the top of lua/fmap/dump.lua; scripts/load.lua reads
-- it back into a new file.
local dump = require "fmap.dump"
local cli = require "fmap.cli"

local HELP = [[
usage: fmap scripts/dump.lua FILE [--structure OFFSET | --all] [-o OUT]
                            [-r MODULE] [--raw-values]

Writes the structures of an fmap file as text that scripts/load.lua
makes a new file from, in any block size: B+tree records, blobs with
their reference counts, list items, and the hash table example's records,
with the block size and the control data. Every byte of a key or a value
survives: printable ones as they are, others as \xHH, or the whole string
in hex (x"...") when that is shorter. Offsets are not part of the text: a
number in the control data that names a structure is written as a
reference to it (#N), and a B+tree whose values are all offsets of blobs
of one store in the file has them written as references to the blobs
(@N); a load writes the new offsets there. FILE is opened read-only;
beside a writer (another BlockFile has it open) the dump is of the
writer's last commit as of the open, and says so in a comment line.
Blocks no structure owns are left out, with a warning on stderr. A
progress bar shows on stderr when it is a terminal and the dump runs
longer than a second.

Options:
  --structure OFFSET  only the structure whose meta block is at OFFSET
                      (decimal or 0x hex), with the blob store its values
                      name; scripts/inspect.lua --stats lists them
  --all               every structure the classifiers find (the default)
  -o, --output OUT    write to OUT, and print a summary (default: the
                      dump goes to standard output)
  -r, --require MOD   load MOD first: a module that registers the
                      classifier of a structure, fmap.examples.hashtable
                      for the hash table example (repeatable)
  --raw-values        write a tree's values as bytes even when they name
                      blobs
  -h, --help          print this help

Example:
  fmap scripts/dump.lua store.fmap -o store.dump
  fmap scripts/load.lua store.dump copy.fmap

Exit status: 0 when the dump is written, 1 when FILE cannot be opened, a
structure cannot be read (damaged) or OUT cannot be written, 2 on a usage
error.]]

local cmd = cli.new("dump", HELP, { "output", "modules",
  ["--structure"] = { key = "structure", kind = "offset",
                      value = "an OFFSET" },
  ["--all"] = { key = "all", kind = "flag" },
  ["--raw-values"] = { key = "raw_values", kind = "flag" },
})

local opts = cmd:parse(arg)
if opts.structure and opts.all then
  cmd:usage_error("--structure and --all: one or the other")
end
if opts.output and opts.output == opts.path then
  cmd:usage_error("OUT is FILE: the dump would overwrite the file")
end
cmd:require_all(opts.modules)
local bf = cmd:open(opts.path)
local note = cli.writer_note(bf)
local out = io.stdout
if opts.output then
  local err
  out, err = io.open(opts.output, "wb")
  if not out then bf:close(); cmd:fail(err) end
end
local r, err = dump.write(bf, out, { structure = opts.structure,
                                     raw_values = opts.raw_values,
                                     progress = "dump" })
bf:close()
if opts.output then
  local ok, cerr = out:close()
  if r and not ok then r, err = nil, cerr end
  if not r then os.remove(opts.output) end
else
  out:flush()
end
if not r then cmd:fail(err) end
for _, w in ipairs(r.warnings) do io.stderr:write("dump: ", w, "\n") end
if opts.output then
  print(string.format("wrote %s: %d structure%s, %d items, %d lines, %d "
                      .. "bytes", opts.output, r.structures,
                      r.structures == 1 and "" or "s", r.records, r.lines,
                      r.bytes))
  if note then print("writer: " .. note) end
end
