--- fmap.classify: what each block of a file is, and who owns it.
--
-- A structure says what its blocks are through a *classifier* that it
-- registers here; the block map (`fmap.blockmap`), the audit
-- (`fmap.audit`) and `scripts/inspect.lua --stats` all read a file through
-- the classifiers. A classifier is two functions:
--
--     local classify = require "fmap.classify"
--     classify.register("chain", {
--       -- the roots of every chain in bf, or nil if there is none
--       detect = function (bf)
--         local head = tonumber(bf:control_data():match("^chain=(%d+)"))
--         return head and { head }
--       end,
--       -- every block a chain owns: emit(offset, blocks, kind [, label])
--       walk = function (bf, root, emit)
--         local off = root
--         while off ~= 0 and emit(off, 1, "chain link") do
--           off = bf:with(off, 1, function (v) return v:u64(0) end)
--         end
--       end,
--     })
--
-- `emit(offset, blocks, kind [, label [, from]])` claims `blocks` blocks
-- from `offset` for the structure, as `kind` (a string: one of `KINDS`,
-- or a new one, which `kind()` can give a label and a colour). It returns
-- true when the walker may read those blocks and follow what they point
-- to; false when it must not: the offset is not a block of the allocated
-- area, a block is free (a structure pointing at a free block: the audit
-- reports it), or this walk has claimed it already (two pointers to one
-- block, or a cycle). Following only what emit accepts keeps a walker
-- safe on a damaged file and ends it on a cyclic one. A block claimed
-- twice is reported as owned twice, naming both owners; when the claims
-- come from two different walks, the second may still descend.
--
-- `walk(bf, root, emit, ref)` gets a fourth function, `ref(offset [,
-- from])`, for blocks the structure points to but does not own (a blob
-- store's blocks referenced from a tree's values): a reference to a free
-- block is reported like an emit of one. `walk` may return a table of
-- figures (`{height = 3, fill = 0.68, entries = 1000}`) that `scan`
-- keeps with the structure for `inspect --stats`. An error raised by
-- `detect` or `walk` is caught and reported as a problem of the file.
--
-- `detect(bf, ctx)` gets a second argument for structures that keep no
-- pointer in the control data: `ctx.find(magic, pos, self_pos)` lists
-- the allocated blocks (free ones skipped) holding the string `magic` at
-- `pos` and, if `self_pos` is given, their own offset as a little-endian
-- u64 at `self_pos`. A detected root whose block an earlier walk already
-- owns is not walked again: a structure that embeds another (a list over
-- a blob store) walks it itself with `classify.walk(name, ...)`, and the
-- embedded one is not reported twice. Classifiers run in registration
-- order, the built-in ones first.
--
-- `scan(bf)` runs every registered classifier over bf and returns what
-- every block is. Blocks no classifier claims are `unknown`: in a file
-- whose structures all have classifiers, those are leaked blocks.
local argcheck = require "fmap.argcheck"
local argerror, typeerror = argcheck.argerror, argcheck.typeerror

local M = {}

--- The kinds of block every map knows, in legend order: `label` is what
-- the legend says, `color` an SVG/PNG colour `#rrggbb`. Structures may add
-- their own with `kind()`.
M.KINDS = {
  control  = { label = "control block", color = "#37474f" },
  free     = { label = "free", color = "#d9d9d9" },
  tail     = { label = "tail (never allocated)", color = "#f4f4f4" },
  meta     = { label = "structure header", color = "#8c564b" },
  internal = { label = "B+tree internal", color = "#1f77b4" },
  leaf     = { label = "B+tree leaf", color = "#2ca02c" },
  overflow = { label = "overflow", color = "#9467bd" },
  varchar  = { label = "varchar run", color = "#ff7f0e" },
  list     = { label = "list index", color = "#17becf" },
  unknown  = { label = "unknown (no owner)", color = "#d62728" },
}
--- Kind names in legend order.
M.ORDER = { "control", "free", "tail", "meta", "internal", "leaf",
            "overflow", "varchar", "list", "unknown" }

-- Colours for kinds added without one, taken in turn.
local SPARE_COLORS = { "#e377c2", "#7f7f7f", "#aec7e8", "#ffbb78",
                       "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
                       "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79" }
local spare = 0

-- The classifiers in registration order: { name = , detect = , walk = }.
local registry = {}
-- Modules of the structures shipped with fmap; loaded by `scan` (not at
-- require time: they require this module).
-- Order matters: a structure that embeds a varchar comes before it.
M.BUILTIN = { "fmap.classify.bptree", "fmap.classify.mmlist",
              "fmap.classify.varchar" }
local builtins_loaded = false

--- Internal: a `detect` for structures whose meta blocks say what they
-- are and where they are (fmap.varchar's, fmap.mmlist's): the allocated
-- blocks with magic at 0 and their own offset at self_pos (`ctx.find`).
-- @param magic the meta block's magic string
-- @param self_pos where a meta block holds its own offset (a u64)
-- @return the detect function
function M._stamped (magic, self_pos)
  return function (_, ctx)
    local found = ctx.find(magic, 0, self_pos)
    return #found > 0 and found or nil
  end
end

--- Adds a kind of block, or changes the label or colour of one.
-- @param name the kind's name, what walkers pass to `emit`
-- @param spec `{label = "text for the legend", color = "#rrggbb"}`, both
--   optional (the label defaults to the name, the colour to a spare one)
-- @return the kind's table
function M.kind (name, spec)
  if type(name) ~= "string" or name == "" then
    argerror(1, "kind", "non-empty string expected, got "
             .. (type(name) == "string" and "empty string" or type(name)))
  end
  if spec ~= nil and type(spec) ~= "table" then
    typeerror(2, "kind", "table", spec)
  end
  spec = spec or {}
  if spec.color ~= nil and (type(spec.color) ~= "string"
                            or not spec.color:match("^#%x%x%x%x%x%x$")) then
    argerror(2, "kind", "color must be a string '#rrggbb', got "
             .. tostring(spec.color))
  end
  local k = M.KINDS[name]
  if not k then
    k = {}
    M.KINDS[name] = k
    M.ORDER[#M.ORDER + 1] = name
  end
  k.label = spec.label and tostring(spec.label) or k.label or name
  if spec.color then
    k.color = spec.color
  elseif not k.color then
    spare = spare % #SPARE_COLORS + 1
    k.color = SPARE_COLORS[spare]
  end
  return k
end

--- Registers a classifier; replaces one of the same name.
-- @param name the structure's name (`"bptree"`, `"chain"`), used in labels
-- @param c `{detect = function (bf) -> {roots} or nil, walk = function
--   (bf, root, emit, ref) -> figures or nil, kinds = {name = {label, color}}}`;
--   `kinds` is optional and passed to `kind()`
-- @return c
function M.register (name, c)
  if type(name) ~= "string" or name == "" then
    argerror(1, "register", "non-empty string expected, got "
             .. (type(name) == "string" and "empty string" or type(name)))
  end
  if type(c) ~= "table" then
    typeerror(2, "register", "table", c)
  end
  if type(c.detect) ~= "function" then
    argerror(2, "register", "field 'detect' must be a function, got "
             .. type(c.detect))
  end
  if type(c.walk) ~= "function" then
    argerror(2, "register", "field 'walk' must be a function, got "
             .. type(c.walk))
  end
  if c.kinds ~= nil and type(c.kinds) ~= "table" then
    argerror(2, "register", "field 'kinds' must be a table, got "
             .. type(c.kinds))
  end
  for kname, spec in pairs(c.kinds or {}) do M.kind(kname, spec) end
  local entry = { name = name, detect = c.detect, walk = c.walk }
  for i, e in ipairs(registry) do
    if e.name == name then
      registry[i] = entry
      return c
    end
  end
  registry[#registry + 1] = entry
  return c
end

--- Removes a classifier.
-- @param name its name
-- @return true if it was registered
function M.unregister (name)
  for i, e in ipairs(registry) do
    if e.name == name then
      table.remove(registry, i)
      return true
    end
  end
  return false
end

--- The names of the registered classifiers, in registration order (the
-- built-in ones loaded first).
function M.registered ()
  M.load_builtins()
  local t = {}
  for i, e in ipairs(registry) do t[i] = e.name end
  return t
end

--- Loads the classifiers of the structures shipped with fmap (`BUILTIN`).
-- A module that is missing is skipped; one that fails to load raises.
function M.load_builtins ()
  if builtins_loaded then return end
  builtins_loaded = true
  for _, modname in ipairs(M.BUILTIN) do
    local ok, c = pcall(require, modname)
    if ok then
      if type(c) == "table" and c.detect and c.walk and c.name then
        local present = false
        for _, e in ipairs(registry) do
          if e.name == c.name then present = true end
        end
        if not present then M.register(c.name, c) end
      end
    elseif not tostring(c):find("module '" .. modname .. "' not found",
                                1, true) then
      error(c, 0)
    end
  end
end

--- Internal: the block size of x, an open BlockFile; or nil and why x
-- is none, as an argument error says it ("the BlockFile is closed",
-- "BlockFile expected, got table"), expected naming what is wanted
-- ("BlockFile" by default). For the tools that take a BlockFile.
function M._block_size_of (x, expected)
  local ok, bs = pcall(function () return x:block_size() end)
  if ok and math.type(bs) == "integer" then return bs end
  local got = type(x) == "userdata" and tostring(x) or type(x)
  if got == "BlockFile (closed)" then return nil, "the BlockFile is closed" end
  return nil, (expected or "BlockFile") .. " expected, got " .. got
end

local function check_bf (bf, fname)
  local bs, why = M._block_size_of(bf)
  if not bs then argerror(1, fname, why, 3) end
  return bs
end

--- Classifies every block of a file.
-- @param bf an open BlockFile (read-only is enough)
-- @param opts optional: `roots = {{name, offset}, ...}`, structures to walk
--   besides those the classifiers detect (a tree made with `new_at`);
--   `only = {name = true}`, run only these classifiers
-- @return a table:
--   `block_size`, `blocks` (the file's blocks, the control block
--   included), `top` (index of the first tail block),
--   `kind[b]`, `owner[b]` (label of the structure owning it, if any) for
--   each block index `b = offset // block_size`, 0-based;
--   `counts[kind]`; `free = {blocks, runs, largest}` (runs as the free
--   list holds them); `structures = {{name, root, label, blocks, kinds,
--   figures, error}}`; `doubles = {{offset, owners = {label, ...}}}`;
--   `free_referenced = {{offset, by, from}}` (free blocks a structure
--   points to); `bad_refs = {{offset, by, from, reason}}` (offsets outside
--   the allocated area or not block-aligned); `errors = {{label,
--   message}}` (a detect or walk that raised)
function M.scan (bf, opts)
  local bs = check_bf(bf, "scan")
  if opts ~= nil and type(opts) ~= "table" then
    typeerror(2, "scan", "table", opts)
  end
  opts = opts or {}
  M.load_builtins()
  local st = bf:stats()
  local nblocks = st.size // bs
  local top = nblocks - st.tail_blocks
  local kind, owner = { [0] = "control" }, {}
  local r = {
    path = st.path, block_size = bs, blocks = nblocks, top = top,
    size = st.size, kind = kind, owner = owner, counts = {},
    free = { blocks = 0, runs = 0, largest = 0 },
    structures = {}, doubles = {}, free_referenced = {}, bad_refs = {},
    errors = {},
  }
  for b = top, nblocks - 1 do kind[b] = "tail" end
  local ok, runs = pcall(bf.free_list, bf)
  if not ok then
    r.errors[#r.errors + 1] = { label = "free list", message = tostring(runs) }
    runs = {}
  end
  for _, run in ipairs(runs) do
    local b0 = run.offset // bs
    for b = b0, b0 + run.blocks - 1 do kind[b] = "free" end
    r.free.blocks = r.free.blocks + run.blocks
    r.free.runs = r.free.runs + 1
    if run.blocks > r.free.largest then r.free.largest = run.blocks end
  end

  -- What detect gets: find() scans the allocated blocks for a magic.
  local ctx = {}
  function ctx.find (magic, pos, self_pos)
    if type(magic) ~= "string" or magic == "" then
      argerror(1, "find", "non-empty string expected, got " .. type(magic))
    end
    pos = pos or 0
    if math.type(pos) ~= "integer" or pos < 0 or pos + #magic > bs then
      argerror(2, "find", "position inside a block expected, got "
               .. tostring(pos))
    end
    if self_pos ~= nil and (math.type(self_pos) ~= "integer" or self_pos < 0
                            or self_pos + 8 > bs) then
      argerror(3, "find", "position inside a block expected, got "
               .. tostring(self_pos))
    end
    local found = {}
    local v
    for b = 1, top - 1 do
      if kind[b] ~= "free" then
        local off = b * bs
        -- a block the engine refuses to show (marked free but not on a
        -- damaged free list) is skipped; bf:check() reports it
        local ok = true
        if v then ok = pcall(v.retarget, v, off) else
          ok, v = pcall(bf.get, bf, off)
          if not ok then v = nil end
        end
        if ok and v:compare(pos, magic, 0, #magic) == 0
           and (not self_pos or v:u64(self_pos) == off) then
          found[#found + 1] = off
        end
      end
    end
    if v then v:release() end
    return found
  end

  local is_free = bf.is_free
  local doubled = {}  -- block index -> entry of r.doubles
  local function bad (list, off, by, from, reason)
    list[#list + 1] = { offset = off, by = by, from = from, reason = reason }
  end

  -- Checks one offset a structure points to; returns its block index, or
  -- nil after recording why it cannot be followed.
  local function target (off, n, label, from, fname)
    if math.type(off) ~= "integer" then
      argerror(1, fname, "integer offset expected, got "
               .. (math.type(off) or type(off)))
    end
    if math.type(n) ~= "integer" or n < 1 then
      argerror(2, fname, "positive integer block count expected, got "
               .. tostring(n))
    end
    if off % bs ~= 0 then
      bad(r.bad_refs, off, label, from, "not block-aligned")
      return nil
    end
    local b = off // bs
    if b < 1 or b + n > top then
      bad(r.bad_refs, off, label, from, b == 0 and "the control block"
          or "outside the allocated area")
      return nil
    end
    for i = b, b + n - 1 do
      -- free: on the free list, or marked free off it (bf:check says so)
      if kind[i] == "free" or is_free(bf, i * bs) then
        bad(r.free_referenced, i * bs, label, from)
        return nil
      end
    end
    return b
  end

  local function walk_one (name, walkfn, root, label)
    local s = { name = name, root = root, label = label, blocks = 0,
                kinds = {} }
    r.structures[#r.structures + 1] = s
    local mine = {}  -- blocks this walk has claimed
    local function emit (off, n, k, l, from)
      n = n or 1
      if type(k) ~= "string" then
        argerror(3, "emit", "kind must be a string, got " .. type(k))
      end
      l = l ~= nil and tostring(l) or label
      local b = target(off, n, l, from, "emit")
      if not b then return false end
      if not M.KINDS[k] then M.kind(k) end
      local again = false
      for i = b, b + n - 1 do
        if mine[i] then again = true end
        mine[i] = true
        local prev = owner[i]
        if prev then
          local d = doubled[i]
          if not d then
            d = { offset = i * bs, owners = { prev } }
            doubled[i] = d
            r.doubles[#r.doubles + 1] = d
          end
          d.owners[#d.owners + 1] = l
        else
          owner[i] = l
          kind[i] = k
        end
      end
      if again then return false end
      s.blocks = s.blocks + n
      s.kinds[k] = (s.kinds[k] or 0) + n
      return true
    end
    local function ref (off, from)
      return target(off, 1, label, from, "ref") ~= nil
    end
    local ok, figures = pcall(walkfn, bf, root, emit, ref)
    if not ok then
      s.error = tostring(figures)
      r.errors[#r.errors + 1] = { label = label, message = s.error }
    elseif type(figures) == "table" then
      s.figures = figures
    end
  end

  local function label_of (name, root)
    return string.format("%s@%s", name, tostring(root))
  end

  for _, c in ipairs(registry) do
    if not opts.only or opts.only[c.name] then
      local ok, roots = pcall(c.detect, bf, ctx)
      if not ok then
        r.errors[#r.errors + 1] = { label = c.name .. " (detect)",
                                    message = tostring(roots) }
      elseif type(roots) == "table" then
        for _, root in ipairs(roots) do
          local b = math.type(root) == "integer" and root % bs == 0
                    and root // bs
          if not (b and owner[b]) then
            walk_one(c.name, c.walk, root, label_of(c.name, root))
          end
        end
      end
    end
  end
  for i, spec in ipairs(opts.roots or {}) do
    local name, root = spec[1] or spec.name, spec[2] or spec.root
    local c
    for _, e in ipairs(registry) do
      if e.name == name then c = e end
    end
    if not c then
      argerror(2, "scan", string.format(
        "roots[%d] names no registered classifier: %s", i, tostring(name)))
    end
    walk_one(name, c.walk, root, label_of(name, root))
  end

  local counts = r.counts
  for b = 0, nblocks - 1 do
    local k = kind[b]
    if not k then
      k = "unknown"
      kind[b] = k
    end
    counts[k] = (counts[k] or 0) + 1
  end
  return r
end

--- Runs a registered classifier's walk from inside another walk, for a
-- structure that embeds another: `classify.walk("varchar", bf, off, emit,
-- ref)` claims the embedded store's blocks for the caller's structure.
-- @param name the classifier's name
-- @return what its walk returns
function M.walk (name, bf, root, emit, ref)
  M.load_builtins()
  for _, e in ipairs(registry) do
    if e.name == name then return e.walk(bf, root, emit, ref) end
  end
  argerror(1, "walk", "no classifier named " .. tostring(name))
end

--- The kind of the block at a file offset in a scan's result.
-- @param r what `scan` returned
-- @param offset a file offset (any byte of the block)
-- @return the kind, and the owner's label if any
function M.kind_at (r, offset)
  local b = offset // r.block_size
  return r.kind[b], r.owner[b]
end

--- Groups sorted block offsets into runs: `{{first_offset, blocks}, ...}`.
-- @param offsets a sorted array of offsets
-- @param bs the block size
function M.runs (offsets, bs)
  local out = {}
  for _, off in ipairs(offsets) do
    local last = out[#out]
    if last and last[1] + last[2] * bs == off then
      last[2] = last[2] + 1
    else
      out[#out + 1] = { off, 1 }
    end
  end
  return out
end

-- Figures of a structure printed first, in this order; the rest sorted.
local FIGURE_ORDER = { "height", "entries", "items", "blobs", "leaves",
                       "internal_nodes", "leaf_fill", "internal_fill" }

local function figure_text (k, v)
  if math.type(v) == "float" then
    if k:match("fill$") or k:match("share$") then
      return string.format("%s %.1f%%", k, 100 * v)
    end
    return string.format("%s %.3g", k, v)
  end
  return k .. " " .. tostring(v)
end

--- Internal: the kinds of block a scan counted, in legend order: those
-- of `ORDER` first, then the others by name.
-- @param r what `scan` returned
-- @return a list of kind names
function M._counted_kinds (r)
  local listed, order = {}, {}
  for _, k in ipairs(M.ORDER) do
    if r.counts[k] then order[#order + 1] = k; listed[k] = true end
  end
  local extra = {}
  for k in pairs(r.counts) do
    if not listed[k] then extra[#extra + 1] = k end
  end
  table.sort(extra)
  for _, k in ipairs(extra) do order[#order + 1] = k end
  return order
end

--- The numbers behind the block map, as text (`inspect --stats`): blocks
-- by kind, the free list (length, runs, largest, fragmentation), and each
-- structure's figures (a B+tree's height and fill factors, a store's
-- blobs and slot fill, a list's items...).
-- @param src a BlockFile, or what `scan` returned
-- @return the text, lines ending in newlines; and the scan
function M.stats (src)
  local r = src
  if not (type(src) == "table" and src.kind and src.block_size) then
    check_bf(src, "stats")
    r = M.scan(src)
  end
  local out = {}
  local function add (...) out[#out + 1] = string.format(...) end
  local f = M.figures(r)
  add("blocks by kind (%d blocks of %d bytes):\n", r.blocks, r.block_size)
  for _, k in ipairs(M._counted_kinds(r)) do
    add("  %-26s %10d  %5.1f%%\n", M.KINDS[k] and M.KINDS[k].label or k,
        r.counts[k], 100 * r.counts[k] / r.blocks)
  end
  add("free list: %d blocks in %d runs, largest %d; free share %.1f%%, "
      .. "fragmentation %.2f\n", f.free_blocks, f.free_runs,
      f.largest_free_run, 100 * f.free_share, f.fragmentation)
  if #r.structures == 0 then add("structures: none found\n") end
  for i, s in ipairs(r.structures) do
    if i == 1 then add("structures:\n") end
    local parts, seen = {}, {}
    for _, k in ipairs(FIGURE_ORDER) do
      if s.figures and s.figures[k] ~= nil then
        parts[#parts + 1] = figure_text(k, s.figures[k])
        seen[k] = true
      end
    end
    local rest = {}
    for k in pairs(s.figures or {}) do
      if not seen[k] then rest[#rest + 1] = k end
    end
    table.sort(rest)
    for _, k in ipairs(rest) do
      parts[#parts + 1] = figure_text(k, s.figures[k])
    end
    add("  %s: %d blocks%s%s\n", s.label, s.blocks,
        #parts > 0 and ", " .. table.concat(parts, ", ") or "",
        s.error and "; walk failed: " .. s.error or "")
  end
  return table.concat(out), r
end

--- The figures of a scan: what the block map prints and `inspect --stats`
-- reports.
-- @param r what `scan` returned
-- @return `{size, block_size, blocks, free_blocks, free_runs,
--   largest_free_run, free_share, fragmentation}`: `free_share` is free
--   blocks / blocks (0..1); `fragmentation` is 1 - largest free run /
--   free blocks: 0 when the free space is one run (or there is none), near
--   1 when it is scattered in single blocks, so allocate_blocks(n) fails
--   to reuse it
function M.figures (r)
  local f = r.free
  return {
    size = r.size, block_size = r.block_size, blocks = r.blocks,
    free_blocks = f.blocks, free_runs = f.runs, largest_free_run = f.largest,
    free_share = r.blocks > 0 and f.blocks / r.blocks or 0,
    fragmentation = f.blocks > 0 and 1 - f.largest / f.blocks or 0,
  }
end

return M
