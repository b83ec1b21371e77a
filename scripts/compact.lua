--- scripts/compact.lua: rewrites an fmap file with its structures laid
-- out anew and no free blocks, and puts it in the file's place.
-- Run it as: fmap scripts/compact.lua FILE [--out NEWFILE]   (--help)
local dump = require "fmap.dump"
local fmap = require "fmap"
local cli = require "fmap.cli"

local HELP = [[
usage: fmap scripts/compact.lua FILE [--out NEWFILE] [--force]
                               [--drop-unknown] [-r MODULE] [--raw-values]

Copies every structure of FILE into a new file, as scripts/dump.lua and
scripts/load.lua would but without the text: each structure made anew
through its own module, its blocks contiguous, no free block and no
unused tail, blob references in tree values and structure offsets in the
control data rewritten. Each structure of the copy is verified, then the
copy, written as FILE.compact-tmp in one transaction and flushed, is
renamed over FILE and the folder synced: a crash at any point leaves
either the old file or the new one. FILE is opened for writing first,
which copies a journal a crashed writer left into it and keeps other
writers out until the end; readers go on reading the old file, but a
journal they keep out of the file makes compact refuse until they close
it. Prints the sizes before and after. A progress bar shows on stderr when it
is a terminal and the copy runs longer than a second.

Compact refuses a file holding blocks no structure owns (a structure of
your own with no classifier, or blocks a prototype leaked), which the copy
would drop: load its classifier with -r, or drop them with
--drop-unknown.

Options:
  --out NEWFILE      write the copy to NEWFILE and leave FILE as it is
  --force            with --out: replace NEWFILE if it exists
  --drop-unknown     compact even though blocks no structure owns are
                     dropped
  -r, --require MOD  load MOD first: a module that registers the
                     classifier of a structure, fmap.examples.hashtable
                     for the hash table example (repeatable)
  --raw-values       copy a tree's values as bytes even when they name
                     blobs (they are rewritten otherwise)
  -h, --help         print this help

Example:
  fmap scripts/compact.lua store.fmap
  fmap scripts/compact.lua store.fmap --out /tmp/store-compact.fmap

Exit status: 0 when the compacted file is in place, 1 when FILE cannot be
opened (another process has it open for writing, say) or its journal is
kept by readers, a structure cannot be read or does not verify in the
copy, blocks no structure owns would be dropped, or the copy cannot be
written (FILE is then unchanged), 2 on a usage error.]]

local cmd = cli.new("compact", HELP, { "modules",
  ["--out"] = { key = "out", value = "a NEWFILE" },
  ["--force"] = { key = "force", kind = "flag" },
  ["--drop-unknown"] = { key = "drop_unknown", kind = "flag" },
  ["--raw-values"] = { key = "raw_values", kind = "flag" },
})

local opts = cmd:parse(arg)
if opts.force and not opts.out then
  cmd:usage_error("--force replaces a NEWFILE: it goes with --out")
end
if opts.out == opts.path then opts.out = nil end
cmd:require_all(opts.modules)

local function figures (st)
  return string.format("%d bytes (%d blocks: %d used, %d free, %d tail)",
                       st.size, st.blocks, st.used_blocks, st.free_blocks,
                       st.tail_blocks)
end

local bf, err = fmap.open(opts.path, { readonly = opts.out ~= nil })
if not bf then cmd:fail(err) end
local before = bf:stats()
local target = opts.out or bf:path()
local r
r, err = dump.copy(bf, target, { force = opts.force, progress = "compact",
                                 strict = not opts.drop_unknown,
                                 raw_values = opts.raw_values })
bf:close()
if not r then
  if err:find("no structure owns", 1, true) then
    err = err .. "; --drop-unknown drops them"
  end
  cmd:fail(err)
end
for _, w in ipairs(r.warnings) do io.stderr:write("compact: ", w, "\n") end
local nbf <close> = assert(fmap.open(target, { readonly = true }))
local after = nbf:stats()
print(string.format("compacted %s%s: %d structure%s, %d items", opts.path,
                    opts.out and " into " .. opts.out or "",
                    #r.structures, #r.structures == 1 and "" or "s",
                    r.records))
print("  before  " .. figures(before))
print("  after   " .. figures(after))
