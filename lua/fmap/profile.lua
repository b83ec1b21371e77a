--- fmap.profile: what a structure costs in blocks, in the disk-access
-- model: the blocks each operation reads and writes, its write
-- amplification, and its LRU miss curve for every cache size.
--
--   local profile = require "fmap.profile"     -- or fmap.profile
--   local report = fmap.profile(bf, function ()
--     profile.phase "insert"
--     for i = 1, n do t:add(key(i), value(i)) end
--     profile.phase "get"
--     for i = 1, n do t:get(key(i)) end
--   end)
--   print(report)                   -- a table per phase and operation
--   report:misses(64, "get")        -- misses per get with 64 blocks cached
--   report:write_svg("curve.svg")   -- the miss curves
--
-- Operations. The structures mark theirs (fmap.opmark): one t:add, one
-- vc:put, one l:get is one operation, named "bptree.add", "varchar.put",
-- "mmlist.get"; each step of an iterator is one ("bptree.step"), and the
-- call that makes it one more (its descent). A structure's operation
-- lasts until the next operation starts, so what the caller does with
-- the file between two operations counts in the first. profile.op marks
-- the user's own operations, which enclose those of the structures they
-- call: `profile.op("scan", function () for k in t:iterate() do end end)`
-- counts a whole scan as one. Block accesses before the first operation,
-- and after one of profile.op's ends, are counted apart, as "(between
-- operations)".
--
-- Counting. While a profile runs, the engine counts, per operation, the
-- distinct blocks read and the distinct blocks written, and keeps the
-- trace of the blocks each operation touched, in the order it first
-- touched them. A block is read when a call returns or compares its bytes
-- (a getter, read, unpack, compare, a search of a node: the blocks of the
-- run it searched, a searcher: each node of its descent, an iterator's
-- step: its entry), written when a call stores into it. Header reads
-- and writes of the engine (allocation, free, control data) are not
-- block accesses; allocations and frees are counted apart.
--
-- The miss curve. For an LRU cache of c blocks, empty when the profile
-- starts, shared by every operation and kept across phases, the misses
-- of an operation are the blocks of its trace not in the cache: the
-- curve gives them for every c from 1 to the whole file, from one pass
-- over the trace (Mattson's stack distances, engine/core/mrc.c). An
-- operation's blocks stay in the cache while it runs, so a cache of c
-- blocks misses at most once per block per operation; at the file's size
-- only the first access of each block misses (the cold misses).
local fmap = require "fmap"
local opmark = require "fmap.opmark"
local svg = require "fmap.svg"
local argcheck = require "fmap.argcheck"
local cli = require "fmap.cli"

local argerror, typeerror = argcheck.argerror, argcheck.typeerror
local sformat, concat = string.format, table.concat
local type, pairs, ipairs = type, pairs, ipairs

local M = {}

local Report = {}
Report.__index = Report
Report.__name = "fmap.profile report"

-- What a report calls the accesses outside any operation.
M.GAP = "(between operations)"

-- The registry field the engine reads when it makes or opens a
-- BlockFile (PROF_ONOPEN in engine/binding/profile.c).
local ONOPEN = "fmap.profile.onopen"

-- The running profile, nil when none runs: files (each { state, path }),
-- info (by group number: { phase, op }, op nil for a phase's gaps),
-- groups (by phase: the group of each operation name, and of its gaps at
-- GAPS), order (the phases in order of first use) and phase (the current
-- one).
local S = nil
local GAPS = {}
-- The states of the files, for the mark's loop; the current phase's
-- groups; the depth of nested operations; the state methods.
local states, nstates, cur, depth = {}, 0, nil, 0
local BEGIN, FINISH

local function newgroup (op)
  local id = #S.info + 1
  S.info[id] = { phase = S.phase, op = op }
  cur[op or GAPS] = id
  return id
end

-- Ends the open operation: a gap starts.
local function finish_all ()
  for i = 1, nstates do FINISH(states[i]) end
end

-- The mark the structures call (fmap.opmark): starts an operation named
-- name, unless one of profile.op's is open; a and b, strings, are what
-- the user stores.
local function mark (name, a, b)
  if depth > 0 then return end
  local g = cur[name] or newgroup(name)
  local n = 0
  if type(a) == "string" then n = #a end
  if type(b) == "string" then n = n + #b end
  for i = 1, nstates do BEGIN(states[i], g, n) end
end

-- Starts one of profile.op's operations, named name; they nest.
local function op_begin (name)
  local d = depth + 1
  depth = d
  if d == 1 then
    local g = cur[name] or newgroup(name)
    for i = 1, nstates do BEGIN(states[i], g, 0) end
  end
end

-- Ends one of profile.op's operations (of the profile that is running).
local function op_end ()
  local d = depth
  if d > 0 then
    depth = d - 1
    if d == 1 then finish_all() end
  end
end

local OP_END = setmetatable({}, { __close = op_end,
                                  __name = "fmap.profile operation" })

local function is_bf (x)
  local mt = getmetatable(x)
  return type(x) == "userdata" and type(mt) == "table"
         and mt.__name == "fmap.BlockFile"
end

-- Counts bf from now on; given says whether run's caller named it.
local function attach (bf, given)
  local st = fmap._profile.start(bf)
  if BEGIN == nil then
    local m = getmetatable(st).__index
    BEGIN, FINISH = m.begin, m.finish
  end
  st:gap(cur[GAPS])
  S.files[#S.files + 1] = { state = st, path = bf:path(), given = given }
  nstates = nstates + 1
  states[nstates] = st
end

-- Stops the running profile: the marks, the watch on new files and the
-- counting end.
local function stop ()
  if S == nil then return end
  opmark._set(nil)
  debug.getregistry()[ONOPEN] = nil
  for i = 1, nstates do states[i]:stop() end
  S, states, nstates, cur, depth = nil, {}, 0, nil, 0
end

--- Starts phase name: the operations from now on are reported under it,
-- until the next phase. The first phase is "main" (or opts.phase of
-- `run`). Does nothing while no profile runs.
-- @param name a string
function M.phase (name)
  if type(name) ~= "string" then typeerror(1, "phase", "string", name) end
  if S == nil then return end
  if depth == 0 then finish_all() end
  S.phase = name
  cur = S.groups[name]
  if cur == nil then
    cur = {}
    S.groups[name] = cur
    S.order[#S.order + 1] = name
    newgroup(nil)
  end
  for i = 1, nstates do states[i]:gap(cur[GAPS]) end
end

-- A user's operation, begun by op(name): closing it, or done(), ends it.
local Handle = {}
Handle.__index = Handle
Handle.__name = "fmap.profile operation"

--- Ends the operation (once; a second call does nothing).
function Handle:done ()
  if self.live and S == self.session then op_end() end
  self.live = false
end
Handle.__close = Handle.done

--- Marks the user's own operations. `op([name,] fn, ...)` runs fn(...)
-- as one operation named name (default "op") and returns its results;
-- `op([name])` begins one and returns a handle that ends it when closed
-- (`local o <close> = profile.op("lookup")`) or by `o:done()`. While one
-- is open, the operations of the structures it calls are part of it;
-- one inside another is part of it too. Without a running profile, fn
-- just runs, and the handle does nothing.
-- @param name a string
-- @param fn a function, or nil
function M.op (name, fn, ...)
  if type(name) == "function" then
    if S == nil then return name(fn, ...) end
    op_begin("op")
    local _ <close> = OP_END
    return name(fn, ...)
  end
  if name ~= nil and type(name) ~= "string" then
    typeerror(1, "op", "string or function", name)
  end
  if fn ~= nil then
    if type(fn) ~= "function" then typeerror(2, "op", "function", fn) end
    if S == nil then return fn(...) end
    op_begin(name or "op")
    local _ <close> = OP_END
    return fn(...)
  end
  local h = setmetatable({ live = S ~= nil, session = S }, Handle)
  if S then op_begin(name or "op") end
  return h
end

--- Adds n bytes to what the open operation stored for the user (the
-- denominator of its write amplification): for an operation marked with
-- `op`, which cannot know. Does nothing outside an operation, or while no
-- profile runs.
-- @param n an integer
function M.stored (n)
  n = argcheck.checkinteger(n, 1, "stored")
  if S == nil then return end
  for i = 1, nstates do states[i]:stored(n) end
end

--- The LRU stack distance of each access of a trace, computed in one
-- pass (Mattson's algorithm, with a Fenwick tree: O(log n) an access):
-- 0 for a block's first access, else the number of distinct blocks
-- accessed since its previous one, itself included. A cache of c blocks
-- misses exactly the accesses whose distance is 0 or above c.
-- @param trace a list of block numbers (integers, 0 to 2^32 - 2)
-- @return a list of distances, as long as trace
function M.stack_distances (trace)
  if type(trace) ~= "table" then
    typeerror(1, "stack_distances", "table", trace)
  end
  local ok, d = pcall(fmap._profile.stack_distances, trace)
  if not ok then argerror(1, "stack_distances", argcheck.reason(d)) end
  return d
end


---------------------------------------------------------------------------
-- Reports
---------------------------------------------------------------------------

local COUNTS = { "user_bytes", "bytes_read", "bytes_written", "allocations",
                 "frees", "views", "descents" }

local function newrow (name)
  local r = { name = name, ops = 0, blocks_read = 0, blocks_written = 0,
              cold = 0, read_hist = {}, write_hist = {}, dist = {} }
  for _, k in ipairs(COUNTS) do r[k] = 0 end
  return r
end

local function addlist (into, from)
  for i = 1, #from do into[i] = (into[i] or 0) + from[i] end
  for i = #into + 1, #from do into[i] = from[i] end
end

-- Adds the engine's figures of a group to a row.
local function accumulate (row, g)
  row.ops = row.ops + g.parts
  row.blocks_read = row.blocks_read + g.reads
  row.blocks_written = row.blocks_written + g.writes
  for _, k in ipairs(COUNTS) do row[k] = row[k] + g[k] end
  addlist(row.read_hist, g.read_hist)
  addlist(row.write_hist, g.write_hist)
  -- dist may have holes where no access had that distance
  local dist = row.dist
  for d = #dist + 1, #g.dist do dist[d] = 0 end
  for d = 1, #g.dist do dist[d] = dist[d] + g.dist[d] end
  row.cold = row.cold + g.cold
end

-- mean, p99 and max of a histogram (h[k + 1] parts touched k blocks).
local function spread (h, n, sum)
  local s = { mean = n > 0 and sum / n or 0, p99 = 0, max = 0 }
  local want, seen = 0.99 * n, 0
  for i = 1, #h do
    if h[i] > 0 then s.max = i - 1 end
    if seen < want then
      seen = seen + h[i]
      s.p99 = i - 1
    end
  end
  return s
end

-- The derived figures of a row: reads and writes ({mean, p99, max}),
-- write_amp, accesses, and misses[c], the misses with an LRU cache of c
-- blocks, for c = 1 to the largest distance (beyond: the cold misses).
local function finish_row (row, bs)
  row.reads = spread(row.read_hist, row.ops, row.blocks_read)
  row.writes = spread(row.write_hist, row.ops, row.blocks_written)
  if row.user_bytes > 0 then
    row.write_amp = row.blocks_written * bs / row.user_bytes
  end
  local dist, misses, above = row.dist, {}, 0
  for c = #dist, 1, -1 do
    misses[c] = row.cold + above
    above = above + dist[c]
  end
  row.accesses = row.cold + above
  row.misses = misses
  row.dist = nil
  return row
end

-- The report of one file from the engine's figures (raw) and the info
-- of the groups.
local function build (file, raw, info, order)
  local bs = raw.block_size
  local r = setmetatable({
    path = file.path, block_size = bs, blocks = raw.blocks,
    accesses = raw.accesses, distinct = raw.distinct,
    distinct_read = raw.distinct_read,
    distinct_written = raw.distinct_written,
    phases = {}, phase = {},
  }, Report)
  for _, k in ipairs(COUNTS) do
    if k ~= "user_bytes" then r[k] = raw[k] end
  end
  local total = newrow("all")
  local gaps_total = newrow(M.GAP)
  for _, name in ipairs(order) do
    local p = newrow(name)
    p.operations, p.operation = {}, {}
    r.phase[name] = p
  end
  for id = 1, #info do
    local g, gi = raw.groups[id], info[id]
    local p = r.phase[gi.phase]
    if g ~= nil and gi.op == nil then
      p.gaps = p.gaps or newrow(M.GAP)
      accumulate(p.gaps, g)
      accumulate(gaps_total, g)
    elseif g ~= nil then
      local o = newrow(gi.op)
      accumulate(o, g)
      p.operations[#p.operations + 1] = finish_row(o, bs)
      p.operation[gi.op] = o
      accumulate(p, g)
      accumulate(total, g)
    end
  end
  -- gaps before the first phase began (group 0) count with the first
  local g0 = raw.groups[0]
  if g0 ~= nil and order[1] then
    local p = r.phase[order[1]]
    p.gaps = p.gaps or newrow(M.GAP)
    accumulate(p.gaps, g0)
    accumulate(gaps_total, g0)
  end
  for _, name in ipairs(order) do
    local p = r.phase[name]
    if p.ops > 0 or p.gaps then
      finish_row(p, bs)
      if p.gaps then finish_row(p.gaps, bs) end
      r.phases[#r.phases + 1] = p
    else
      r.phase[name] = nil
    end
  end
  r.total = finish_row(total, bs)
  r.total.gaps = gaps_total.ops > 0 and finish_row(gaps_total, bs) or nil
  r.ops = total.ops
  r.blocks_read, r.blocks_written = total.blocks_read, total.blocks_written
  return r
end

--- Runs fn with every block access of bf counted, and reports what each
-- operation cost. bf may be a list of BlockFiles, and nil to profile
-- only the BlockFiles fn makes or opens. A file closed during fn is
-- reported as it was when it closed. One profile runs at a time; an
-- error in fn ends it and is raised again.
-- @param bf a BlockFile, a list of them, or nil
-- @param fn the function whose operations are counted, called with no
--   argument
-- @param opts optional: `phase`, the first phase's name ("main"); `all`,
--   true to profile every BlockFile fn makes or opens too, or a function
--   that says which (given the BlockFile, returns true to profile it)
-- @return the report of bf (of the first file profiled, when there are
--   several; report.files lists them all), or nil, message when the
--   counts ran out of memory
function M.run (bf, fn, opts)
  local list
  if bf == nil then list = {}
  elseif is_bf(bf) then list = { bf }
  elseif type(bf) == "table" then
    list = bf
    for i = 1, #list do
      if not is_bf(list[i]) then
        argerror(1, "run", sformat("item %d is not a BlockFile", i))
      end
    end
  else
    typeerror(1, "run", "BlockFile, list or nil", bf)
  end
  if type(fn) ~= "function" then typeerror(2, "run", "function", fn) end
  if opts ~= nil and type(opts) ~= "table" then
    typeerror(3, "run", "table", opts)
  end
  opts = opts or {}
  local phase, all = opts.phase or "main", opts.all
  if type(phase) ~= "string" then
    argerror(3, "run", "opts.phase must be a string, not " .. type(phase))
  end
  if all ~= nil and type(all) ~= "boolean" and type(all) ~= "function" then
    argerror(3, "run", "opts.all must be a boolean or a function, not "
             .. type(all))
  end
  if S ~= nil then
    error("fmap.profile: a profile is running already (one at a time)", 2)
  end
  for i = 1, #list do
    for j = 1, i - 1 do
      if rawequal(list[i], list[j]) then
        argerror(1, "run", sformat("items %d and %d are the same BlockFile",
                                   j, i))
      end
    end
    if tostring(list[i]) == "BlockFile (closed)" then
      argerror(1, "run", "the BlockFile is closed")
    end
  end
  S = { files = {}, info = {}, groups = {}, order = {} }
  local _ <close> = setmetatable({}, { __close = stop })
  M.phase(phase)
  for _, b in ipairs(list) do attach(b, true) end
  if bf == nil or all then
    debug.getregistry()[ONOPEN] = function (b)
      if type(all) ~= "function" or all(b) then attach(b) end
    end
  end
  opmark._set(mark)
  fn()
  depth = 0           -- an operation of op([name]) may be left open
  finish_all()
  local reports = {}
  for _, f in ipairs(S.files) do
    local raw, msg = f.state:report()
    if raw == nil then return nil, msg end
    -- a file fn opened but never read or wrote (a module's scratch file)
    -- is left out
    if f.given or raw.accesses > 0 then
      reports[#reports + 1] = build(f, raw, S.info, S.order)
    end
  end
  local first = reports[1] or setmetatable({ phases = {}, phase = {},
                                             ops = 0 }, Report)
  first.files = reports
  return first
end

setmetatable(M, {
  --- fmap.profile(bf, fn [, opts]) is profile.run(bf, fn, opts).
  __call = function (_, bf, fn, opts) return M.run(bf, fn, opts) end,
})

-- The row of a phase (nil: every phase) and operation (nil: all of it).
local function row_of (r, phase, operation, fname)
  local row = r.total
  if phase ~= nil then
    row = r.phase[phase]
    if row == nil then
      argerror(2, fname, sformat("no phase %q in the report", tostring(phase)),
               3)
    end
  end
  if operation ~= nil then
    local o = operation == M.GAP and row.gaps
              or (row.operation and row.operation[operation])
    if o == nil then
      argerror(3, fname, sformat("no operation %q in %s", tostring(operation),
               phase and "phase " .. phase or "the report"), 3)
    end
    row = o
  end
  return row
end

-- Misses per operation of row with a cache of c blocks.
local function per_op (row, c)
  if row.ops == 0 then return 0 end
  return (row.misses[c] or row.cold) / row.ops
end

--- Misses per operation with an LRU cache of cache blocks: of every
-- operation, of a phase's, or of one operation of a phase (the name
-- `profile.GAP` selects the accesses between operations).
-- @param cache blocks, at least 1
-- @param phase a phase's name, or nil for all
-- @param operation an operation's name, or nil for all
function Report:misses (cache, phase, operation)
  if getmetatable(self) ~= Report or not self.total then
    error("bad argument #0 to 'misses' (profile report expected)", 2)
  end
  cache = argcheck.checkinteger(cache, 1, "misses")
  if cache < 1 then
    argerror(1, "misses", sformat("cache size %d: at least one block", cache))
  end
  return per_op(row_of(self, phase, operation, "misses"), cache)
end

--- The miss curve: a list whose item c is the misses per operation with
-- an LRU cache of c blocks, for c = 1 to the file's size in blocks.
function Report:curve (phase, operation)
  if getmetatable(self) ~= Report or not self.total then
    error("bad argument #0 to 'curve' (profile report expected)", 2)
  end
  local row = row_of(self, phase, operation, "curve")
  local out = {}
  for c = 1, math.max(self.blocks, 1) do out[c] = per_op(row, c) end
  return out
end

-- Numbers for the table: at most 4 significant digits, no trailing zeros.
local function fnum (x)
  if x == 0 then return "0" end
  if x >= 100 then return sformat("%.0f", x) end
  if x >= 10 then return sformat("%.1f", x) end
  return sformat("%.2f", x)
end

local function commas (n)
  local s = tostring(math.floor(n))
  local k
  repeat s, k = s:gsub("^(%d+)(%d%d%d)", "%1,%2") until k == 0
  return s
end

local function human (n)
  local units, i = { "B", "KiB", "MiB", "GiB", "TiB" }, 1
  while n >= 1024 and i < #units do
    n = n / 1024
    i = i + 1
  end
  return i == 1 and sformat("%d B", n) or sformat("%.1f %s", n, units[i])
end

-- The cache sizes the table shows: 1 block, 1%, 10%, 50% and all of the
-- file, without repeats.
local function columns (blocks)
  local out, seen = {}, {}
  for _, f in ipairs({ 0, 0.01, 0.1, 0.5, 1 }) do
    local c = math.max(1, math.floor(blocks * f + 0.5))
    if not seen[c] then
      seen[c] = true
      out[#out + 1] = c
    end
  end
  return out
end

--- The report as a table for people: per phase and operation, the
-- operations, the distinct blocks read and written per operation (mean
-- and p99), the write amplification, and the misses per operation with
-- an LRU cache of 1 block, 1%, 10%, 50% and all of the file; then the
-- totals.
-- @return a string
function Report:format ()
  if getmetatable(self) ~= Report then
    error("bad argument #0 to 'format' (profile report expected)", 2)
  end
  if self.files and #self.files > 1 and self.files[1] == self then
    local parts = {}
    for i, r in ipairs(self.files) do parts[i] = Report.format_one(r) end
    return concat(parts, "\n")
  end
  return Report.format_one(self)
end

--- The table of this file alone (format shows every file profiled).
function Report:format_one ()
  if not self.total then return "fmap.profile: no BlockFile was profiled" end
  local out = {}
  local function add (...) out[#out + 1] = sformat(...) end
  add("fmap.profile: %s, %s blocks of %d bytes; %s operations, %s block "
      .. "accesses", self.path or "anonymous", commas(self.blocks),
      self.block_size, commas(self.ops), commas(self.accesses))
  if self.ops == 0 then
    add("no operation was marked: the structures of fmap mark theirs, and "
        .. "profile.op marks yours")
  end
  local cols = columns(self.blocks)
  local head1, head2 = {}, {}
  for i, c in ipairs(cols) do
    head1[i] = sformat("%7s", i == 1 and "1 block" or commas(c))
    head2[i] = sformat("%7s", i == 1 and "" or sformat("%d%%",
                       math.floor(c * 100 / self.blocks + 0.5)))
  end
  add("%-26s %9s %14s %14s %7s  %s", "", "", "blocks read/op",
      "written/op", "write", "misses/op, LRU cache of")
  add("%-26s %9s %7s %6s %7s %6s %7s  %s", "phase / operation", "ops",
      "mean", "p99", "mean", "p99", "amp.", concat(head1, " "))
  add("%-26s %9s %7s %6s %7s %6s %7s  %s", "", "", "", "", "", "", "",
      concat(head2, " "))
  local function line (name, row)
    if row.ops == 0 then
      add("%-26s %9s %7s %6s %7s %6s %7s", name, "0", "-", "-", "-", "-", "-")
      return
    end
    local m = {}
    for i, c in ipairs(cols) do m[i] = sformat("%7s", fnum(per_op(row, c))) end
    add("%-26s %9s %7s %6d %7s %6d %7s  %s", name, commas(row.ops),
        fnum(row.reads.mean), row.reads.p99, fnum(row.writes.mean),
        row.writes.p99, row.write_amp and fnum(row.write_amp) .. "x" or "-",
        concat(m, " "))
  end
  for _, p in ipairs(self.phases) do
    line(p.name, p)
    for _, o in ipairs(p.operations) do line("  " .. o.name, o) end
    if p.gaps then line("  " .. M.GAP, p.gaps) end
  end
  if #self.phases > 1 then line("all", self.total) end
  add("totals: %s blocks read (%s distinct), %s written (%s distinct); %s "
      .. "read and %s stored through the API; %s allocations, %s frees, "
      .. "%s views, %s searcher descents", commas(self.blocks_read),
      commas(self.distinct_read), commas(self.blocks_written),
      commas(self.distinct_written), human(self.bytes_read),
      human(self.bytes_written), commas(self.allocations),
      commas(self.frees), commas(self.views), commas(self.descents))
  return concat(out, "\n")
end
Report.__tostring = Report.format


---------------------------------------------------------------------------
-- Pictures
---------------------------------------------------------------------------

local PALETTE = { "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                  "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22" }

-- 1, 2 or 5 times a power of ten, at least x.
local function nice (x)
  if x <= 0 then return 1 end
  local p = 10 ^ math.floor(math.log(x, 10))
  for _, m in ipairs({ 1, 2, 5, 10 }) do
    if m * p >= x * (1 - 1e-9) then return m * p end
  end
  return 10 * p
end

-- The y axis for values up to ymax: its top and the step of its ticks,
-- 4 to 8 of them.
local function y_axis (ymax)
  local step = nice(math.max(ymax, 1e-9) / 6)
  return math.max(step, math.ceil(ymax / step - 1e-9) * step), step
end

local function pct (x)
  local s = sformat("%.6f", x * 100):gsub("0+$", ""):gsub("%.$", "")
  return s .. "%"
end

-- The series a report draws by default: each phase with operations.
local function default_series (r)
  local list = {}
  for _, f in ipairs(r.files or { r }) do
    for _, p in ipairs(f.phases) do
      if p.ops > 0 then
        list[#list + 1] = {
          report = f, phase = p.name,
          label = (r.files and #r.files > 1)
                  and (f.path or "anonymous") .. ": " .. p.name or p.name,
        }
      end
    end
  end
  return list
end

--- An SVG picture of miss curves: misses per operation against the LRU
-- cache's size as a fraction of the file, on a log x axis, one line per
-- series. A series is `{report = r, phase = name, operation = name,
-- label = text}` (phase and operation optional, as in report:misses),
-- so that phases, operations or structures profiled apart can be
-- compared; a report alone draws each of its phases.
-- @param series a report, or a list of series
-- @param opts optional: title, width (720), height (440)
-- @return the SVG text
function M.svg (series, opts)
  if getmetatable(series) == Report then series = default_series(series)
  elseif type(series) ~= "table" then
    typeerror(1, "svg", "report or list of series", series)
  end
  if opts ~= nil and type(opts) ~= "table" then
    typeerror(2, "svg", "table", opts)
  end
  opts = opts or {}
  local W, H = opts.width or 720, opts.height or 440
  local L, R, T, B = 70, 24, 44, 64
  local lines, xmin, ymax = {}, 1, 0
  for i, s in ipairs(series) do
    local r = s.report
    if getmetatable(r) ~= Report or not r.total then
      argerror(1, "svg", sformat("series %d has no report", i))
    end
    local row = row_of(r, s.phase, s.operation, "svg")
    local n = math.max(r.blocks, 1)
    xmin = math.min(xmin, 1 / n)
    -- the curve at about 400 cache sizes spread evenly on the log axis,
    -- and at every size where it changes below 64 blocks
    local cs, seen, k = {}, {}, 400
    for j = 0, k do
      local c = math.floor(n ^ (j / k) + 0.5)
      if not seen[c] then
        seen[c] = true
        cs[#cs + 1] = c
      end
    end
    for c = 1, math.min(n, 64) do
      if not seen[c] then
        seen[c] = true
        cs[#cs + 1] = c
      end
    end
    table.sort(cs)
    local pts = {}
    for _, c in ipairs(cs) do
      local y = per_op(row, c)
      pts[#pts + 1] = { c / n, y }
      ymax = math.max(ymax, y)
    end
    lines[i] = { pts = pts, label = s.label or s.phase or "all",
                 n = n, ops = row.ops }
  end
  local ystep
  ymax, ystep = y_axis(ymax)
  local lo = math.floor(math.log(xmin, 10) + 1e-9)
  local d = svg.new(W, H)
  local pw, ph = W - L - R, H - T - B
  local function X (x) return L + (math.log(x, 10) - lo) / -lo * pw end
  if lo == 0 then X = function () return L end end
  local function Y (y) return T + ph - y / ymax * ph end
  d:text(L, 24, opts.title or "LRU misses per operation, by cache size",
         { size = 15, weight = "bold" })
  -- grid and ticks
  for e = lo, 0 do
    local x = X(10 ^ e)
    d:line(x, T, x, T + ph, { stroke = "#dddddd" })
    d:text(x, T + ph + 18, pct(10 ^ e), { size = 11, anchor = "middle" })
  end
  for j = 0, math.floor(ymax / ystep + 0.5) do
    local y = j * ystep
    d:line(L, Y(y), L + pw, Y(y), { stroke = "#dddddd" })
    d:text(L - 6, Y(y) + 4, fnum(y), { size = 11, anchor = "end" })
  end
  d:line(L, T + ph, L + pw, T + ph, { stroke = "#202020" })
  d:line(L, T, L, T + ph, { stroke = "#202020" })
  d:text(L + pw / 2, H - 18, "LRU cache size, as a fraction of the file "
         .. "(log scale)", { size = 12, anchor = "middle" })
  d:text(16, T + ph / 2, "misses per operation", { size = 12,
         anchor = "middle", transform = sformat("rotate(-90 16 %s)",
                                                T + ph / 2) })
  -- the curves, then the legend over them
  for i, l in ipairs(lines) do
    local xy = {}
    for _, p in ipairs(l.pts) do
      xy[#xy + 1] = X(p[1])
      xy[#xy + 1] = Y(p[2])
    end
    d:polyline(xy, { stroke = PALETTE[(i - 1) % #PALETTE + 1], width = 2 })
  end
  local legend, width = {}, 0
  for i, l in ipairs(lines) do
    legend[i] = sformat("%s (%s blocks)", l.label, commas(l.n))
    width = math.max(width, 6.5 * #legend[i] + 44)
  end
  local lx, ly = L + pw - width, T + 14
  d:rect(lx - 8, ly - 12, width + 4, 18 * #lines + 6, { fill = "#ffffff",
         stroke = "#cccccc", opacity = 0.9 })
  for i, l in ipairs(lines) do
    local y = ly + (i - 1) * 18
    d:line(lx, y - 4, lx + 22, y - 4, { stroke = PALETTE[(i - 1) % #PALETTE
           + 1], width = 3 })
    d:text(lx + 28, y, legend[i], { size = 11 })
  end
  return d:finish()
end

--- The report's curves as an SVG picture (`profile.svg`): each phase.
-- @param opts as profile.svg's
-- @return the SVG text
function Report:svg (opts)
  return M.svg(self, opts)
end

--- Writes report:svg(opts) to path.
-- @return true, or nil, message, errno when the file cannot be written
function Report:write_svg (path, opts)
  if type(path) ~= "string" then typeerror(1, "write_svg", "string", path) end
  return cli.writefile(path, M.svg(self, opts))
end

return M
