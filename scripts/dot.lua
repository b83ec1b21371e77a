--- scripts/dot.lua: a picture of a B+tree in an fmap file, through
-- Graphviz.
-- Run it as: fmap scripts/dot.lua FILE -o tree.svg   (.png, .pdf, ...;
--                                                     .dot for the text)
-- Options:
--   -o, --output PATH   the picture; its extension names the format
--                       (required)
--   --at OFFSET         the tree whose meta block is at OFFSET (default:
--                       the tree in the control data, else the first found)
--   --depth N           levels drawn below the root (default 3)
--   --children N        children drawn per node (default 8)
--   --keys N            keys shown per node (default 6)
-- Opens FILE read-only. Prints which tree it drew and the other trees in
-- the file. Exits 0 when the picture is written, 1 when FILE cannot be
-- opened, holds no tree, or Graphviz fails or is missing, 2 on a usage
-- error.
local classify = require "fmap.classify"
local dot = require "fmap.dot"
local cli = require "fmap.cli"

local HELP = [[
usage: fmap scripts/dot.lua FILE -o OUT.svg|OUT.dot [--at OFFSET]
                           [--depth N] [--children N] [--keys N]

Draws a B+tree of an fmap file through Graphviz: each node a box with its
offset, kind and first keys (printable keys as they are, others in hex),
edges to its children, dashed links from leaf to leaf. A large tree is
cut: what is not drawn is one box per node saying how many children it
stands for. Prints which tree it drew and the other trees in the file.
FILE is opened read-only; beside a writer (another BlockFile has it
open) the picture is of the writer's last commit as of the open, and it
says so. Graphviz's dot program draws the picture (apt-get install
graphviz; $FMAP_DOT names another); OUT.dot is the DOT text, with no
Graphviz needed.

Options:
  -o, --output OUT  the picture; its extension names the format (.svg,
                    .png, .pdf, any that dot -T knows, or .dot for the
                    text); required
  --at OFFSET       the tree whose meta block is at OFFSET (default: the
                    tree in the control data, else the first found)
  --depth N         levels drawn below the root (default 3)
  --children N      children drawn per node, at least 2 (default 8)
  --keys N          keys shown per node (default 6)
  -h, --help        print this help

Example:
  fmap scripts/dot.lua store.fmap -o tree.svg
  fmap scripts/dot.lua store.fmap --at 8192 --depth 1 -o tree.dot

Exit status: 0 when the picture is written, 1 when FILE cannot be opened,
holds no tree, or Graphviz fails or is missing, 2 on a usage error.]]

local cmd = cli.new("dot", HELP, { "output",
  ["--at"] = { key = "at", kind = "integer", min = 1 },
  ["--depth"] = { key = "depth", kind = "integer", min = 0 },
  ["--children"] = { key = "children", kind = "integer", min = 2 },
  ["--keys"] = { key = "keys", kind = "integer", min = 0 },
})

local function parse (args)
  local opts = cmd:parse(args)
  if not opts.output then cmd:usage_error("no -o OUT.svg") end
  if not opts.output:match("%.%w+$") then
    cmd:usage_error(string.format("%q: the output needs an extension naming "
                                  .. "the format (.svg, .png, .dot)",
                                  opts.output))
  end
  return opts
end

local opts = parse(arg)
local bf = cmd:open(opts.path)
local note = cli.writer_note(bf)

-- The trees in the file, as the bptree classifier detects them.
local r = classify.scan(bf, { only = { bptree = true } })
local trees = {}
for _, s in ipairs(r.structures) do trees[#trees + 1] = s.root end
local at = opts.at or trees[1]
if not at then
  bf:close()
  cmd:fail(opts.path .. ": no B+tree found")
end
local ok, text, info = pcall(dot.at, bf, at, { depth = opts.depth,
                             children = opts.children, keys = opts.keys })
bf:close()
if not ok then cmd:fail(tostring(text)) end
local done, err = dot.render(text, opts.output)
if not done then cmd:fail(err) end
print(string.format("wrote %s: the B+tree at offset %d, %d node%s drawn, %d "
                    .. "not drawn", opts.output, at, #info.nodes,
                    #info.nodes == 1 and "" or "s", info.summarised))
if note then print("writer: " .. note) end
local others = {}
for _, t in ipairs(trees) do
  if t ~= at then others[#others + 1] = tostring(t) end
end
if #others > 0 then
  print("other trees in the file (--at OFFSET): " .. table.concat(others, ", "))
end
