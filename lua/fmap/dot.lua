--- fmap.dot: pictures of trees of blocks, as Graphviz DOT text.
--
--     local dot = require "fmap.dot"
--     print(dot(t))                       -- DOT text of a B+tree t
--     dot.render(dot(t), "tree.svg")      -- through Graphviz's `dot`
--     dot.show(t)                         -- a temporary SVG's path (REPL: show)
--
-- `graph` draws any tree given a function that reads a node; `tree`
-- (also `dot(t)`) does it for a B+tree through the reader of
-- `fmap.classify.bptree`. Each node is a record: its offset and kind over
-- its keys. Edges go from a node to its children; dashed edges link each
-- leaf to the next. A large tree is summarised: below `depth` levels, and
-- past `children` children of one node, what is not drawn is one box
-- saying how many nodes it stands for.
local argcheck = require "fmap.argcheck"
local argerror, typeerror = argcheck.argerror, argcheck.typeerror

local M = {}

--- Levels drawn below the root before the rest is summarised.
M.DEPTH = 3
--- Children drawn per node; the rest are summarised.
M.CHILDREN = 8
--- Keys shown per node; the rest are counted.
M.KEYS = 6
--- Characters shown of one key.
M.KEY_WIDTH = 18
--- Nodes drawn at most, whatever the options (a damaged tree may be huge).
M.MAX_NODES = 5000
--- The Graphviz program: $FMAP_DOT, else `dot` on the PATH.
M.DOT = os.getenv("FMAP_DOT") or "dot"

local COLORS = { internal = "#cfe2f3", leaf = "#d9ead3", more = "#eeeeee" }

--- A key as short readable text: printable ASCII as it is, anything else
-- as hex; cut to `KEY_WIDTH` characters.
-- @param k a string
function M.key_text (k)
  local s
  if k:match("^[\32-\126]*$") then
    s = k
  else
    s = "0x" .. k:gsub(".", function (c)
      return string.format("%02x", c:byte())
    end)
  end
  if #s > M.KEY_WIDTH then s = s:sub(1, M.KEY_WIDTH - 2) .. ".." end
  return s
end

-- Escapes text for an HTML-like label.
local ENTITIES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                   ['"'] = "&quot;" }
local function html (s)
  return (s:gsub('[&<>"]', ENTITIES))
end

-- Escapes text for a quoted DOT string.
local function quoted (s)
  return '"' .. s:gsub('[\\"]', "\\%0"):gsub("\n", "\\n") .. '"'
end

local OPTIONS = { depth = true, children = true, keys = true,
                  key_text = true }

-- Checks the options of a drawing (argument n of the caller's fname),
-- raising at the caller's caller (level lvl of the caller).
local function check_opts (opts, fname, n, lvl)
  if opts == nil then return {} end
  if type(opts) ~= "table" then typeerror(n, fname, "table", opts, lvl + 1) end
  for k in pairs(opts) do
    if not OPTIONS[k] then
      argerror(n, fname, "unknown option " .. tostring(k) .. "; there are "
               .. "depth, children, keys and key_text", lvl + 1)
    end
  end
  for _, what in ipairs({ "depth", "children", "keys" }) do
    local v = opts[what]
    if v ~= nil and (math.type(v) ~= "integer" or v < 0) then
      argerror(n, fname, what .. " must be a non-negative integer, got "
               .. tostring(v), lvl + 1)
    end
  end
  return opts
end

--- DOT text of a tree of blocks.
-- @param spec `{root = offset, node = function (offset) -> {leaf =
--   boolean, keys = {string, ...}, children = {offset, ...}, next =
--   offset or nil}, name = "graph title", key_text = function (k) ->
--   string}`; `node` is called once per node drawn (and may raise on a
--   damaged node: the error says which)
-- @param opts optional: `depth`, `children`, `keys` (see `DEPTH`,
--   `CHILDREN`, `KEYS`), `key_text` (a function formatting a key,
--   `key_text` by default)
-- @return the DOT text, and `{nodes = {offset, ...} drawn, leaves,
--   summarised = nodes not drawn (known without reading them)}`
function M.graph (spec, opts)
  if type(spec) ~= "table" or type(spec.node) ~= "function"
     or math.type(spec.root) ~= "integer" then
    argerror(1, "graph", "table with integer 'root' and function 'node' "
             .. "expected")
  end
  opts = check_opts(opts, "graph", 2, 2)
  local max_depth = opts.depth or M.DEPTH
  local max_children = math.max(opts.children or M.CHILDREN, 2)
  local max_keys = opts.keys or M.KEYS
  local user_text = opts.key_text or spec.key_text
  -- A key_text of the caller's: what it returns, as a string; where it
  -- raises (a decoder meets a separator the tree shortened, which is no
  -- whole key), the key as M.key_text writes it.
  local function key_text (k)
    if not user_text then return M.key_text(k) end
    local ok, s = pcall(user_text, k)
    if not ok then return M.key_text(k) end
    return tostring(s)
  end

  local out = {}
  local function add (...) out[#out + 1] = string.format(...) end
  add("digraph %s {\n", quoted(spec.name or "tree"))
  add('  graph [fontname="monospace", fontsize=10, nodesep=0.15, '
      .. 'ranksep=0.4, label=%s, labelloc=t];\n', quoted(spec.name or "tree"))
  add('  node [shape=plain, fontname="monospace", fontsize=9];\n')
  add("  edge [arrowsize=0.5];\n")

  local drawn, order, leaves = {}, {}, {}
  local info = { nodes = order, leaves = leaves, summarised = 0 }
  local nmore = 0
  local function more (from, text)
    nmore = nmore + 1
    add('  m%d [label=%s, shape=box, style="filled,dashed", fillcolor="%s"'
        .. "];\n  n%d -> m%d [style=dashed];\n", nmore, quoted(text),
        COLORS.more, from, nmore)
  end

  local function visit (off, depth)
    if #order >= M.MAX_NODES then return false end
    local ok, node = pcall(spec.node, off)
    if not ok then
      error(string.format("cannot read the node at offset %d: %s", off,
                          tostring(node)), 0)
    end
    drawn[off] = node
    order[#order + 1] = off
    local keys = node.keys or {}
    local parts = {}
    for i = 1, math.min(#keys, max_keys) do
      parts[i] = "<td>" .. html(key_text(keys[i])) .. "</td>"
    end
    if #keys > max_keys then
      parts[#parts + 1] = string.format("<td>+%d</td>", #keys - max_keys)
    end
    if #parts == 0 then parts[1] = "<td>(empty)</td>" end
    local kind = node.leaf and "leaf" or "internal"
    add('  n%d [label=<<table border="0" cellborder="1" cellspacing="0" '
        .. 'bgcolor="%s"><tr><td colspan="%d"><b>%s @%d</b>, %d keys</td>'
        .. "</tr><tr>%s</tr></table>>];\n", off, COLORS[kind], #parts, kind,
        off, #keys, table.concat(parts))
    if node.leaf then leaves[#leaves + 1] = off end
    local children = node.children or {}
    if #children == 0 then return true end
    if depth >= max_depth then
      info.summarised = info.summarised + #children
      more(off, string.format("%d children not drawn", #children))
      return true
    end
    -- the first max_children - 1 children and the last
    local shown = {}
    if #children <= max_children then
      for i = 1, #children do shown[#shown + 1] = i end
    else
      for i = 1, max_children - 1 do shown[#shown + 1] = i end
      shown[#shown + 1] = #children
    end
    for j, i in ipairs(shown) do
      if j == #shown and i ~= j then
        info.summarised = info.summarised + #children - #shown
        more(off, string.format("%d children not drawn",
                                #children - #shown))
      end
      local c = children[i]
      if drawn[c] ~= nil then
        add("  n%d -> n%d [color=red, label=\"again\"];\n", off, c)
      elseif #order < M.MAX_NODES then
        add("  n%d -> n%d;\n", off, c)
        if not visit(c, depth + 1) then return false end
      end
    end
    return true
  end
  visit(spec.root, 0)

  -- Leaf links, between leaves that are both drawn.
  for _, off in ipairs(leaves) do
    local nxt = drawn[off].next
    if nxt and nxt ~= 0 and drawn[nxt] then
      add("  n%d -> n%d [style=dashed, color=gray40, constraint=false];\n",
          off, nxt)
    end
  end
  if #order >= M.MAX_NODES then
    add("  limit [shape=plaintext, label=%s];\n", quoted(string.format(
        "stopped after %d nodes", M.MAX_NODES)))
  end
  add("}\n")
  return table.concat(out), info
end

-- Whether x is a B+tree of fmap.bptree (a view or a blob store has a
-- blockfile and an offset too).
local function is_tree (x)
  local bptree = package.loaded["fmap.bptree"]
  return type(bptree) == "table" and getmetatable(x) == bptree._methods
end

-- What x is, for an error: a view or a structure says, by its tostring.
local function what (x)
  local mt = debug.getmetatable(x)
  if type(mt) == "table" and rawget(mt, "__tostring") then
    local ok, s = pcall(tostring, x)
    if ok and type(s) == "string" then return s:sub(1, 60) end
  end
  return type(x)
end

--- DOT text of a B+tree (`fmap.bptree`), read through
-- `fmap.classify.bptree`. Also `require "fmap.dot"(t [, opts])`.
-- @param t a B+tree
-- @param opts optional, as for `graph`
-- @return the DOT text, and what `graph` returns second
function M.tree (t, opts)
  if not is_tree(t) then
    argerror(1, "tree", "B+tree expected, got " .. what(t))
  end
  local bf, meta = t:blockfile(), t:offset()
  check_opts(opts, "tree", 2, 2)
  return M.at(bf, meta, opts)
end

-- t:dot(opts): M.tree, its options named as dot's; called by the method
-- (not as a tail call), so an error blames the method's caller.
function M._dot (t, opts)
  check_opts(opts, "dot", 1, 3)
  return M.tree(t, opts)
end

--- DOT text of the B+tree whose meta block is at offset, for a file
-- opened without the tree's module (read-only is enough).
-- @param bf the BlockFile
-- @param offset the tree's meta block
-- @param opts optional, as for `graph`
-- @return as `graph`; raises if no sound tree is there
function M.at (bf, offset, opts)
  check_opts(opts, "at", 3, 2)
  local reader = require "fmap.classify.bptree"
  return M.graph(reader.dot_spec(bf, offset), opts)
end

--- Whether Graphviz's `dot` can be run.
function M.available ()
  local ok = os.execute(M.DOT .. " -V >/dev/null 2>&1")
  return ok == true
end

local function shell_quote (s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- Renders DOT text to a file through Graphviz, in the format its
-- extension names (`.svg`, `.png`, `.pdf`, ...); `.dot` writes the text.
-- @param text DOT text
-- @param path the output file
-- @return true, or nil and a message (Graphviz missing, or its error)
function M.render (text, path)
  argcheck.checktype(text, 1, "render", "string")
  argcheck.checktype(path, 2, "render", "string")
  local ext = path:match("%.(%w+)$")
  if not ext then
    argerror(2, "render", "path needs an extension naming the format, got '"
             .. path .. "'")
  end
  ext = ext:lower()
  if ext == "dot" or ext == "gv" then
    local f, msg = io.open(path, "wb")
    if not f then return nil, msg end
    f:write(text)
    f:close()
    return true
  end
  if not M.available() then
    return nil, "Graphviz's dot is not installed (apt-get install graphviz)"
  end
  local src, err = os.tmpname(), os.tmpname()
  local f = assert(io.open(src, "wb"))
  f:write(text)
  f:close()
  local ok = os.execute(string.format("%s -T%s -o %s %s 2>%s", M.DOT,
                                      shell_quote(ext), shell_quote(path),
                                      shell_quote(src), shell_quote(err)))
  local ef = io.open(err, "rb")
  local msg = ef and ef:read("a") or ""
  if ef then ef:close() end
  os.remove(src)
  os.remove(err)
  if ok ~= true then
    local lines = {}
    for line in msg:gmatch("[^\n]+") do
      if #lines == 5 then lines[#lines + 1] = "..." break end
      lines[#lines + 1] = line
    end
    return nil, "dot failed: " .. table.concat(lines, "\n")
  end
  return true
end

--- A picture of x in a temporary file, for the REPL's `show(x)`: a
-- B+tree as an SVG through Graphviz (its DOT text when Graphviz is
-- missing), a BlockFile as its block map (PNG).
-- @param x a B+tree or a BlockFile
-- @param opts optional, as for `graph` (a tree) or `blockmap.png` (a BlockFile)
-- @return the file's path (the REPL prints it), or nil and a message
function M.show (x, opts)
  local base = os.tmpname()
  os.remove(base)
  local is_bf = pcall(function () return x:block_size() end)
  if is_bf then
    local path = base .. ".png"
    local r, msg = require("fmap.blockmap").write(x, path, opts)
    if not r then return nil, msg end
    return path
  end
  if not is_tree(x) then
    argerror(1, "show", "B+tree or BlockFile expected, got " .. what(x))
  end
  local text = M.tree(x, opts)
  local path = base .. (M.available() and ".svg" or ".dot")
  local done, msg = M.render(text, path)
  if not done then return nil, msg end
  return path
end

return setmetatable(M, { __call = function (_, ...) return M.tree(...) end })
