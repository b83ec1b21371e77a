--- fmap.crashtest: proves a structure crash-safe, or finds the store that
-- breaks it.
--
--   local report = fmap.crashtest{
--     setup = function (bf) ... end,     -- the state before: a new file
--     run = function (bf) ... end,       -- the operations under test
--     check = function (bf) return t:verify() end,
--   }
--   print(report)                        -- its summary
--
-- setup runs on a new file, which is then closed: its bytes are the base
-- state. run runs on the file opened again, under bf:record, which hands
-- back each change made to it (a store through a view, an allocate, a
-- free, the control data) with the bytes before and after and the Lua
-- traceback of the call, and each begin, commit, rollback, flush and
-- sync. Then each state a crash could leave is built on one working copy
-- of the file, by writing those changes' bytes forward (and back, for a
-- power loss's subsets of pages), opened read-only (fmap's recovery
-- included) and handed to check:
--   "process"  (the default) after every change in program order, as if
--              each reached the file at once, as on a plain file; but a
--              transaction's changes land together, at its commit
--   "power"    at each durability point (a flush, a commit, a sync, a
--              set_control_data, the end of run), every subset of the
--              4 KiB pages written since the previous one that a power
--              loss could keep: all of them up to `limit`, a sample
--              beyond; a committed transaction's pages count as one.
-- doc/crashtest.md is the reference.
local fmap = require "fmap"
local argcheck = require "fmap.argcheck"

local M = {}

local PAGE <const> = 4096
local POWER_LIMIT <const> = 256     -- states per durability point
local KEPT <const> = 10             -- failures a report describes

local format, concat, sort = string.format, table.concat, table.sort
local type, pcall, tostring = type, pcall, tostring

local Report = {}
Report.__index = Report
Report.__name = "fmap.crashtest report"

---------------------------------------------------------------------------
-- Arguments
---------------------------------------------------------------------------

local FIELDS = { setup = "function", run = "function", check = "function",
                 mode = "string", limit = "integer", seed = "integer",
                 block_size = "integer" }

local function bad (msg, level)
  argcheck.argerror(1, "crashtest", msg, level + 1)
end

-- The test table, checked: raises on misuse at the caller's level.
local function check_test (t, level)
  level = level + 1
  argcheck.checktype(t, 1, "crashtest", "table", level)
  for k, v in pairs(t) do
    local want = FIELDS[k]
    if want == nil then
      bad(format("unknown field %s; the fields are block_size, check, "
                 .. "limit, mode, run, seed and setup",
                 type(k) == "string" and format("'%s'", k) or tostring(k)),
          level)
    end
    if (want == "integer" and math.type(v) ~= "integer")
       or (want ~= "integer" and type(v) ~= want) then
      bad(format("field '%s' must be %s, got %s", k,
                 want == "integer" and "an integer" or "a " .. want,
                 math.type(v) == "float" and "a float" or type(v)), level)
    end
  end
  for _, k in ipairs({ "run", "check" }) do
    if t[k] == nil then
      bad(format("field '%s' must be a function, got nil", k), level)
    end
  end
  if t.mode ~= nil and t.mode ~= "process" and t.mode ~= "power" then
    bad(format("field 'mode' must be \"process\" or \"power\", got %q",
               t.mode), level)
  end
  if t.limit ~= nil and t.limit < 1 then
    bad(format("field 'limit' must be positive, got %d", t.limit), level)
  end
  local bs = t.block_size
  if bs ~= nil and (bs < 4096 or bs % 4096 ~= 0 or bs > 1 << 30) then
    bad(format("field 'block_size' must be a multiple of 4096 up to 2^30, "
               .. "got %d", bs), level)
  end
end

---------------------------------------------------------------------------
-- Randomness: a generator of its own (splitmix64), so that the caller's
-- math.random is left alone and a seed replays on any machine
---------------------------------------------------------------------------

local function generator (seed)
  local x = seed
  return function (n)                     -- an integer in [1, n]
    x = x + 0x9e3779b97f4a7c15
    local z = x
    z = (z ~ (z >> 30)) * 0xbf58476d1ce4e5b9
    z = (z ~ (z >> 27)) * 0x94d049bb133111eb
    z = z ~ (z >> 31)
    return (z >> 1) % n + 1
  end
end

local function fresh_seed ()
  local f = io.open("/dev/urandom", "rb")
  local b = f and f:read(4)
  if f then f:close() end
  if b and #b == 4 then return (string.unpack("<I4", b) & 0x7fffffff) end
  return os.time()
end

---------------------------------------------------------------------------
-- Files
---------------------------------------------------------------------------

-- Two fresh paths (the file run writes, the working copy) and the
-- placeholder that keeps their name unique until the end. In memory
-- (/dev/shm) when the machine has it: run's flushes cost nothing there.
local function paths ()
  local base = os.tmpname()
  local dir = base:match("^(.*)/[^/]*$") or "."
  local f = io.open("/dev/shm/" .. base:match("[^/]*$") .. "-probe", "wb")
  if f then
    f:close()
    os.remove("/dev/shm/" .. base:match("[^/]*$") .. "-probe")
    dir = "/dev/shm"
  end
  local name = dir .. "/" .. base:match("[^/]*$")
  return name .. "-crashtest.fmap", name .. "-state.fmap", base
end

local function read_all (path)
  local f, err, errno = io.open(path, "rb")
  if not f then return nil, err, errno end
  local s = f:read("a")
  f:close()
  return s
end

-- An environment failure inside the exploration: caught at the top and
-- returned as nil, message, errno.
local EnvFail = {}

local function envfail (msg, errno)
  error(setmetatable({ msg = msg, errno = errno }, EnvFail), 0)
end

local function put (w, off, s)
  w:seek("set", off)
  local ok, err, errno = w:write(s)
  if not ok then envfail(err, errno) end
end

-- n bytes at off of the working copy, zeros past its end.
local function get (w, off, n)
  w:seek("set", off)
  local s = w:read(n) or ""
  if #s < n then s = s .. ("\0"):rep(n - #s) end
  return s
end

-- Redoes event ev on the file w, whose size is sizes[w]: the file grows
-- with the map (zeros), then takes the bytes the event changed.
local function apply (w, ev, sizes)
  if ev.size > sizes[w] then
    put(w, ev.size - 1, "\0")
    sizes[w] = ev.size
  end
  local ch = ev.changes
  for j = 1, #ch, 3 do put(w, ch[j], ch[j + 2]) end
end

---------------------------------------------------------------------------
-- Recording
---------------------------------------------------------------------------

-- A traceback from bf:record, cut before crashtest's own frames: the
-- lines from the method that made the change to run.
local function where (tb)
  local lines = {}
  for line in tb:gmatch("\n\t([^\n]*)") do
    if line:find("fmap/crashtest%.lua:") then break end
    lines[#lines + 1] = line
  end
  if lines[#lines] and lines[#lines]:match("^%[C%]: in %a+ 'x?pcall'$") then
    lines[#lines] = nil
  end
  return concat(lines, "\n")
end

-- Closes bf as a <close> variable is closed on an error: at once, ending
-- any view still live (close() refuses while one is, after collecting
-- garbage).
local close_now
do
  local scratch = fmap.anonymous()
  local tbclose = debug.getmetatable(scratch).__close
  scratch:close()
  close_now = function (bf) tbclose(bf, true) end
end

local function errtext (e)
  return type(e) == "string" and e or tostring(e)
end

local function is_closed (bf)
  return tostring(bf) == "BlockFile (closed)"
end

-- Runs setup on a new file and closes it: the base state's bytes, and the
-- block size; or nil, message, errno.
local function make_base (t, rpath, level)
  local bf, err, errno = fmap.create(rpath, t.block_size)
  if not bf then return nil, err, errno end
  if t.setup then
    local ok, e = pcall(t.setup, bf)
    if not ok then
      if not is_closed(bf) then close_now(bf) end
      error(format("crashtest: setup raised an error: %s", errtext(e)),
            level + 1)
    end
    if is_closed(bf) then
      error("crashtest: setup closed the BlockFile (leave it open: "
            .. "crashtest closes it)", level + 1)
    end
    if bf:in_transaction() then
      close_now(bf)
      error("crashtest: setup left a transaction open", level + 1)
    end
  end
  local bs = bf:block_size()
  local ok, e = pcall(bf.close, bf)
  if not ok then
    close_now(bf)
    error(format("crashtest: setup left a view live: %s", errtext(e)),
          level + 1)
  end
  local base
  base, err, errno = read_all(rpath)
  if not base then return nil, err, errno end
  return base, bs
end

-- Runs run on the base state under bf:record: the list of events, or
-- nil, message, errno.
local function record (t, rpath, level)
  local bf, err, errno = fmap.open(rpath)
  if not bf then return nil, err, errno end
  -- The tracebacks of a loop's stores repeat: one string each is kept.
  local events, tracebacks = {}, {}
  bf:record(function (ev)
    local tb = ev.traceback
    local same = tracebacks[tb]
    if same then ev.traceback = same else tracebacks[tb] = tb end
    events[#events + 1] = ev
  end)
  local ok, e = pcall(t.run, bf)
  if is_closed(bf) then
    bf:record()
    error("crashtest: run closed the BlockFile (leave it open: crashtest "
          .. "closes it)", level + 1)
  end
  local stopped, serr = pcall(bf.record, bf)
  if bf:in_transaction() then bf:rollback() end
  local closed, cerr = pcall(bf.close, bf)
  if not closed then close_now(bf) end
  if not ok then
    error(format("crashtest: run raised an error: %s", errtext(e)),
          level + 1)
  elseif not stopped then
    error(format("crashtest: %s", errtext(serr)), level + 1)
  elseif not closed then
    error(format("crashtest: run left a view live: %s", errtext(cerr)),
          level + 1)
  end
  local wheres = {}
  for i, ev in ipairs(events) do
    local tb = ev.traceback
    ev.index = i
    ev.where = wheres[tb] or where(tb)
    wheres[tb] = ev.where
  end
  return events
end

---------------------------------------------------------------------------
-- Trying a state
---------------------------------------------------------------------------


-- Opens the working copy, as it is, read-only, and checks it; describe()
-- says what the state is, and is called for the failures a report keeps.
local function try (ctx, describe)
  local ok, err, errno = ctx.w:flush()
  if not ok then envfail(err, errno) end
  ctx.states = ctx.states + 1
  local bf, msg = fmap.open(ctx.wpath, { readonly = true })
  local kind, why
  if not bf then
    kind, why = "open", msg
  else
    local res, m
    ok, res, m = pcall(ctx.check, bf)
    if not ok then
      kind, why = "check", errtext(res)
    elseif not res then
      kind, why = "check", m ~= nil and tostring(m)
                           or "check returned " .. tostring(res)
    end
    -- Closed as a <close> variable is on an error: at once, ending the
    -- views check left to the collector (a structure's handle keeps
    -- some), where close() would first collect garbage: a full cycle a
    -- state, over every recorded event.
    close_now(bf)
  end
  if kind then
    if kind == "open" then ctx.unopenable = ctx.unopenable + 1
    else ctx.failed = ctx.failed + 1 end
    if #ctx.failures < KEPT then
      local f = describe()
      f.state, f.kind, f.message = ctx.states, kind, why
      ctx.failures[#ctx.failures + 1] = f
    end
  end
end

---------------------------------------------------------------------------
-- Process crashes
---------------------------------------------------------------------------

-- k of the list's items, chosen at random, in their order.
local function sample (list, k, random)
  local idx = {}
  for i = 1, #list do idx[i] = i end
  for i = 1, k do
    local j = i - 1 + random(#idx - i + 1)
    idx[i], idx[j] = idx[j], idx[i]
  end
  local chosen = {}
  for i = 1, k do chosen[i] = idx[i] end
  sort(chosen)
  for i = 1, k do chosen[i] = list[chosen[i]] end
  return chosen
end

local function explore_process (ctx)
  local evs = ctx.events
  -- The crash points: after event i (0: the base state). Inside a
  -- transaction a crash leaves the state before it; a rollback, the same.
  local points, intx = { 0 }, false
  for i, ev in ipairs(evs) do
    local was = intx
    intx = ev.transaction
    if not intx and ((was and ev.commit) or (not was and #ev.changes > 0))
    then
      points[#points + 1] = i
    end
  end
  ctx.possible = #points
  if ctx.limit and #points > ctx.limit then
    points = sample(points, ctx.limit, ctx.random)
  end
  local done = 0
  for _, p in ipairs(points) do
    for i = done + 1, p do apply(ctx.w, evs[i], ctx.sizes) end
    done = p
    try(ctx, function () return { after = p, event = evs[p] } end)
  end
end

---------------------------------------------------------------------------
-- Power losses
---------------------------------------------------------------------------

-- The subsets of n items to try, as lists of booleans: the whole set
-- first; every subset when there are at most limit; else each item alone,
-- all but each item, then random ones, up to limit.
local function subsets (n, limit, random)
  local all = {}
  for k = 1, n do all[k] = true end
  local list = { all }
  if n < 30 and (1 << n) - 1 <= limit then
    for i = 1, (1 << n) - 1 do
      local g = i ~ (i >> 1)              -- Gray code: one flip a step
      if g ~= (1 << n) - 1 then
        local m = {}
        for k = 1, n do m[k] = (g >> (k - 1)) & 1 == 1 end
        list[#list + 1] = m
      end
    end
    return list
  end
  local seen = { [("1"):rep(n)] = true }
  local function add (m)
    local key = {}
    for k = 1, n do key[k] = m[k] and "1" or "0" end
    key = concat(key)
    if not seen[key] and #list < limit then
      seen[key] = true
      list[#list + 1] = m
    end
  end
  for k = 1, n do
    local only, but = {}, {}
    for j = 1, n do only[j], but[j] = j == k, j ~= k end
    add(only)
    add(but)
  end
  for _ = 1, 4 * limit do
    if #list >= limit then break end
    local m = {}
    for k = 1, n do m[k] = random(2) == 1 end
    add(m)
  end
  return list
end

-- The states of the epoch of events a..b, which ends at the durability
-- point event point (nil: the end of run); the transaction that commits
-- at b started at event atomic (nil: none). The working copy holds the
-- state after event a - 1, and holds the one after b on return.
local function epoch (ctx, a, b, point, atomic)
  local evs, w = ctx.events, ctx.w
  local pages, order = {}, {}
  for i = a, b do
    local ch, inside = evs[i].changes, atomic ~= nil and i >= atomic
    for j = 1, #ch, 3 do
      for p = ch[j] // PAGE, (ch[j] + #ch[j + 2] - 1) // PAGE do
        local pg = pages[p]
        if not pg then
          pg = { offset = p * PAGE }
          pages[p] = pg
          order[#order + 1] = pg
        end
        pg.last = i
        pg.atomic = pg.atomic or inside
      end
    end
  end
  sort(order, function (x, y) return x.offset < y.offset end)
  for _, pg in ipairs(order) do pg.before = get(w, pg.offset, PAGE) end
  for i = a, b do apply(w, evs[i], ctx.sizes) end
  local items, unit = {}, nil
  for _, pg in ipairs(order) do
    pg.after = get(w, pg.offset, PAGE)
    if pg.after ~= pg.before then
      if pg.atomic then
        if not unit then unit = { pages = {} } end
        unit.pages[#unit.pages + 1] = pg
      else
        items[#items + 1] = { pages = { pg } }
      end
    end
  end
  if unit then items[#items + 1] = unit end
  if #items == 0 then return end
  ctx.points = ctx.points + 1
  local cur = {}
  for k = 1, #items do cur[k] = true end
  for _, m in ipairs(subsets(#items, ctx.limit, ctx.random)) do
    for k = 1, #items do
      if m[k] ~= cur[k] then
        for _, pg in ipairs(items[k].pages) do
          put(w, pg.offset, m[k] and pg.after or pg.before)
        end
        cur[k] = m[k]
      end
    end
    try(ctx, function ()
      local kept, lost = {}, {}
      for k = 1, #items do
        for _, pg in ipairs(items[k].pages) do
          if m[k] then
            kept[#kept + 1] = { offset = pg.offset, bytes = pg.after }
          else
            lost[#lost + 1] = { offset = pg.offset, event = evs[pg.last] }
          end
        end
      end
      sort(kept, function (x, y) return x.offset < y.offset end)
      sort(lost, function (x, y) return x.offset < y.offset end)
      return { after = a - 1, point = point, upto = b, kept = kept,
               lost = lost }
    end)
  end
  for k = 1, #items do
    if not cur[k] then
      for _, pg in ipairs(items[k].pages) do put(w, pg.offset, pg.after) end
    end
  end
end

local function explore_power (ctx)
  local evs = ctx.events
  -- A transaction still open at the end never reached the file.
  local n = #evs
  while n > 0 and evs[n].transaction do n = n - 1 end
  try(ctx, function () return { after = 0 } end)
  local a, intx, began, atomic = 1, false, nil, nil
  for i = 1, n do
    local ev = evs[i]
    local was = intx
    intx = ev.transaction
    if intx and not was then began = i end
    if was and not intx then
      if ev.commit then atomic = began end
      began = nil
    end
    if ev.commit or i == n then
      epoch(ctx, a, i, ev.commit and ev or nil, atomic)
      a, atomic = i + 1, nil
    end
  end
end

---------------------------------------------------------------------------
-- The report
---------------------------------------------------------------------------

local function plural (n, word)
  return format("%d %s%s", n, word, n == 1 and "" or "s")
end

local function indent (s, by)
  return by .. s:gsub("\n", "\n" .. by)
end

-- What an event did, in a line: "write to offset 12296 (block 12288 + 8),
-- 3 bytes changed", "free (bytes changed in blocks 0, 8192)".
local function event_line (rep, ev)
  local ch, bs = ev.changes, rep.block_size
  if ev.kind == "write" and #ch > 0 then
    return format("write to offset %d (block %d + %d), %s changed",
                  ch[1], ch[1] - ch[1] % bs, ch[1] % bs,
                  plural(#ch[3], "byte"))
  end
  if #ch == 0 then return ev.kind end
  local blocks, seen = {}, {}
  for j = 1, #ch, 3 do
    local b = ch[j] - ch[j] % bs
    if not seen[b] then
      seen[b] = true
      blocks[#blocks + 1] = tostring(b)
    end
  end
  return format("%s (bytes changed in block%s %s)", ev.kind,
                #blocks == 1 and "" or "s", concat(blocks, ", "))
end

--- The printable summary of a report.
-- @param report what `run` returned
-- @return a string of lines
function M.summary (report)
  local r = report
  local out = {}
  local function add (...) out[#out + 1] = format(...) end
  local head = r.mode == "power"
    and format("power-loss crash test (seed %d, at most %d states a "
               .. "durability point): ", r.seed, r.limit)
    or r.sampled and format("process crash test (%d of %d crash points, "
                            .. "seed %d): ", r.states, r.possible, r.seed)
    or "process crash test: "
  add("%s%s tried, %d failed the check, %d failed to open", head,
      plural(r.states, "state"), r.failed, r.unopenable)
  add("  %s recorded in run (%s)", plural(r.changes, "change"),
      r.mode == "power" and plural(r.points, "durability point")
      or plural(r.events, "event"))
  local f = r.failures[1]
  if f == nil then
    add("  every state passed")
    return concat(out, "\n")
  end
  if f.point ~= nil or f.lost then
    local at = f.point and format("the %s after event %d", f.point.kind,
                                  f.point.index)
               or "the end of run"
    add("first failure: state %d, a power loss at %s, keeping %s and "
        .. "losing %s:", f.state, at, plural(#f.kept, "page"),
        plural(#f.lost, "page"))
    if f.point then add("%s", indent(f.point.where, "    ")) end
    for i, l in ipairs(f.lost) do
      if i > 5 then
        add("  ... and %d more lost", #f.lost - 5)
        break
      end
      add("  lost page at offset %d, last written by event %d, %s:",
          l.offset, l.event.index, event_line(r, l.event))
      add("%s", indent(l.event.where, "    "))
    end
  elseif f.event == nil then
    add("first failure: state %d, the state setup left, before run", f.state)
  else
    add("first failure: state %d, a crash right after event %d, %s:",
        f.state, f.event.index, event_line(r, f.event))
    add("%s", indent(f.event.where, "    "))
  end
  add("  %s: %s", f.kind == "open" and "open failed" or "check failed",
      f.message)
  add("  report:replay(path) writes that state to a file")
  return concat(out, "\n")
end

--- Writes the state of one of a report's failures to a file, to look at
-- with the other tools (scripts/inspect.lua, scripts/blockmap.lua).
-- @param report what `run` returned
-- @param path the file to write (replaced)
-- @param n which failure, 1 (the first) by default
-- @return true, or nil, message, errno
function M.replay (report, path, n)
  -- called as report:replay(path), the arguments count from path
  local info = debug.getinfo(1, "n")
  local shift = info and info.namewhat == "method" and 1 or 0
  if getmetatable(report) ~= Report then
    argcheck.typeerror(1 - shift, "replay", "crash test report", report)
  end
  argcheck.checktype(path, 2 - shift, "replay", "string")
  if n == nil then n = 1 end
  local f = report.failures[n]
  if math.type(n) ~= "integer" or f == nil then
    argcheck.argerror(3 - shift, "replay", format("the report has no "
                      .. "failure %s (it keeps %d)", tostring(n),
                      #report.failures))
  end
  local w, err, errno = io.open(path, "w+b")
  if not w then return nil, err, errno end
  local ok, e = pcall(function ()
    local sizes = { [w] = #report._base }
    put(w, 0, report._base)
    for i = 1, f.upto or f.after do
      if i <= f.after then apply(w, report._events[i], sizes)
      elseif report._events[i].size > sizes[w] then   -- grown, as tried
        put(w, report._events[i].size - 1, "\0")
        sizes[w] = report._events[i].size
      end
    end
    for _, pg in ipairs(f.kept or {}) do put(w, pg.offset, pg.bytes) end
    local done, ferr, ferrno = w:close()
    if not done then envfail(ferr, ferrno) end
  end)
  if not ok then
    pcall(w.close, w)
    if getmetatable(e) == EnvFail then return nil, e.msg, e.errno end
    error(e, 0)
  end
  return true
end

Report.summary = M.summary
Report.replay = M.replay
Report.__tostring = M.summary

---------------------------------------------------------------------------
-- The test
---------------------------------------------------------------------------

--- Runs a crash test (calling the module is the same).
-- @param test a table: `setup(bf)` (optional) builds the base state on a
--   new file; `run(bf)` makes the changes under test; `check(bf)` returns
--   true for a sound state, false or nil and a message, or raises; `mode`
--   "process" (the default) or "power"; `limit` the most states to try
--   in all ("process", default: every one) or at each durability point
--   ("power", default 256); `seed` the random draws' (default: a fresh
--   one, in the report); `block_size` the new file's
-- @return the report, or nil, message, errno when a file cannot be made
function M.run (test)
  check_test(test, 2)
  local mode = test.mode or "process"
  local rpath, wpath, hold = paths()
  local w
  local cleanup <close> = setmetatable({}, { __close = function ()
    if w then pcall(w.close, w) end
    os.remove(rpath)
    os.remove(rpath .. "-wal")
    os.remove(wpath)
    os.remove(hold)
  end })
  local base, bs, errno = make_base(test, rpath, 2)
  if not base then return nil, bs, errno end
  local events, err
  events, err, errno = record(test, rpath, 2)
  if not events then return nil, err, errno end
  w, err, errno = io.open(wpath, "w+b")
  if not w then return nil, err, errno end
  w:setvbuf("full", 1 << 16)
  local seed = test.seed or fresh_seed()
  local ctx = {
    events = events, check = test.check, w = w, wpath = wpath,
    limit = test.limit or (mode == "power" and POWER_LIMIT or nil),
    random = generator(seed), states = 0, failed = 0, unopenable = 0,
    points = 0, failures = {}, sizes = { [w] = #base },
  }
  local ok, e = pcall(function ()
    put(w, 0, base)
    if mode == "power" then explore_power(ctx) else explore_process(ctx) end
  end)
  if not ok then
    if getmetatable(e) == EnvFail then return nil, e.msg, e.errno end
    error(e, 0)
  end
  local changes = 0
  for _, ev in ipairs(events) do
    if #ev.changes > 0 then changes = changes + 1 end
  end
  return setmetatable({
    mode = mode, seed = seed, limit = ctx.limit, block_size = bs,
    states = ctx.states, failed = ctx.failed, unopenable = ctx.unopenable,
    ok = ctx.failed + ctx.unopenable == 0, failures = ctx.failures,
    events = #events, changes = changes,
    points = mode == "power" and ctx.points or nil,
    possible = mode == "process" and ctx.possible or nil,
    sampled = mode == "process" and ctx.possible > ctx.states or nil,
    _base = base, _events = events,
  }, Report)
end

return setmetatable(M, { __call = function (_, test)
  return M.run(test)
end })
