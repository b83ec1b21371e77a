--- scripts/blockmap.lua: a picture of every block of an fmap file.
-- Run it as: fmap scripts/blockmap.lua FILE -o map.png   (or map.svg)
-- Options:
--   -o, --output PATH   the picture, .png or .svg (required)
--   -r, --require MOD   load MOD first: a module that registers a
--                       classifier for your own structure (repeatable;
--                       `fmap -l MOD scripts/blockmap.lua ...` works too)
--   --cols N            blocks per row of the grid (default: by size)
--   --cell N            pixels per block (default: by the number of columns)
-- Opens FILE read-only and prints the file's figures and the blocks of
-- each kind. Exits 0 when the picture is written, 1 when FILE cannot be
-- opened or the picture cannot be written, 2 on a usage error.
local blockmap = require "fmap.blockmap"
local classify = require "fmap.classify"
local cli = require "fmap.cli"

local HELP = [[
usage: fmap scripts/blockmap.lua FILE -o OUT.png|OUT.svg [-r MODULE]
                                [--cols N] [--cell N]

Draws every block of an fmap file, one cell each in file order, coloured
by kind: the control block, free blocks, the never-allocated tail, each
structure's header, B+tree internal nodes and leaves, overflow runs, blob
store runs and reserve, list index, and the blocks no structure owns.
Prints the file's figures and the blocks of each kind. FILE is opened
read-only; the structures are found by their classifiers (fmap's own,
and those -r loads); beside a writer (another BlockFile has FILE open)
it draws the writer's last commit as of its open, and says so. Files of
more than 512K blocks get a cell per several blocks, showing the kind
most of them have.

Options:
  -o, --output OUT   the picture, OUT.png or OUT.svg (required); an SVG
                     cell's tooltip names its blocks, kind and owner
  -r, --require MOD  load MOD first: a module that registers the
                     classifier of your own structure (repeatable;
                     fmap -l MOD scripts/blockmap.lua ... works too)
  --cols N           blocks per row of the grid, up to 4096 (default: by
                     the file's size)
  --cell N           pixels per cell, up to 64 (default: by the columns)
  -h, --help         print this help

Example:
  fmap scripts/blockmap.lua store.fmap -o map.png
  fmap scripts/blockmap.lua proto.fmap -r myproto --cols 64 -o map.svg

Exit status: 0 when the picture is written, 1 when FILE cannot be opened
or the picture cannot be written, 2 on a usage error.]]

local cmd = cli.new("blockmap", HELP, { "output", "modules",
  ["--cols"] = { key = "cols", kind = "integer", min = 1 },
  ["--cell"] = { key = "cell", kind = "integer", min = 1 },
})

local function parse (args)
  local opts = cmd:parse(args)
  if not opts.output then cmd:usage_error("no -o OUT.png or OUT.svg") end
  local ext = opts.output:lower():match("%.(%w+)$")
  if ext ~= "png" and ext ~= "svg" then
    cmd:usage_error(string.format("%q: the output must end in .png or .svg",
                                  opts.output))
  end
  if opts.cell and opts.cell > 64 then
    cmd:usage_error("--cell: at most 64 pixels")
  end
  if opts.cols and opts.cols > 4096 then
    cmd:usage_error("--cols: at most 4096 blocks per row")
  end
  return opts
end

local opts = parse(arg)
cmd:require_all(opts.modules)
local bf = cmd:open(opts.path)
local note = cli.writer_note(bf)
local t0 = os.clock()
local r, werr = blockmap.write(bf, opts.output,
                               { cols = opts.cols, cell = opts.cell })
local elapsed = os.clock() - t0
bf:close()
if not r then cmd:fail(werr) end

local f = classify.figures(r)
print(string.format("%s: %d blocks of %d bytes, %.1f%% free in %d runs, "
                    .. "fragmentation %.2f", opts.path, f.blocks,
                    f.block_size, 100 * f.free_share, f.free_runs,
                    f.fragmentation))
if note then print("  writer: " .. note) end
local kinds = {}
for k, n in pairs(r.counts) do kinds[#kinds + 1] = { k, n } end
table.sort(kinds, function (a, b) return a[2] > b[2] end)
for _, e in ipairs(kinds) do
  print(string.format("  %-24s %d", classify.KINDS[e[1]].label, e[2]))
end
for _, e in ipairs(r.errors) do
  print(string.format("  error in %s: %s", e.label, e.message))
end
print(string.format("wrote %s in %.2f s", opts.output, elapsed))
