-- A randomized API fuzzer: thousands of random calls on BlockFiles, views
-- and the module, with random and hostile arguments (negative, huge,
-- math.mininteger, math.maxinteger, NaN, inf, wrong types, released views,
-- closed files, freed blocks), metamethods called by hand, and finalizers
-- that close, grow, free and retarget in the middle of other calls. Each
-- call either works or raises a string error; the process survives;
-- check() stays true on every open BlockFile; blocks no successful call
-- reached keep their bytes; a bystander BlockFile is never touched.
-- FMAP_SEED=n reruns a failure (the seed and the last calls are in every
-- failure message); FMAP_FUZZ_SCALE=x multiplies the number of sequences.

local SEED = h.SEED   -- the run's (spec/helpers.lua)
local SCALE = tonumber(os.getenv("FMAP_FUZZ_SCALE")) or 1
local SEQUENCES = math.max(1, math.floor(24 * SCALE))
local CALLS = 800

local tally = { sequences = 0, calls = 0, raised = 0, failed = 0,
                finalizers = 0 }

local BF_METHODS = {
  allocate = {}, allocate_blocks = { "count" }, free = { "off", "count" },
  get = { "off", "count" }, release = { "view" },
  with = { "off", "count", "fn" }, control_data = {},
  set_control_data = { "str" }, set_control_data_nosync = { "str" },
  block_size = {}, size = {}, path = {}, readonly = {}, address = {},
  valid = { "int" }, sync = {}, flush = {}, close = {}, remove = {},
  stats = {}, check = {}, live_views = {}, free_list = {},
  is_free = { "off" }, entry_iterator = { "fill" },
  searcher = { "pos", "pos", "stride", "pos", "len", "stride" },
}
local VIEW_METHODS = {
  release = {}, retarget = { "off", "count" },
  try_retarget = { "off", "count" }, offset = {}, blocks = {},
  live = {}, blockfile = {}, read = { "pos", "len" },
  write = { "pos", "str" }, fill = { "byte", "pos", "len" },
  compare = { "pos", "other", "pos", "len" },
  copy = { "pos", "view", "pos", "len" }, hex = { "pos", "len" },
  pack = { "pos", "fmt", "val", "val", "val", "val" },
  unpack = { "fmt", "pos" },
  bsearch = { "pos", "count", "stride", "str", "bool", "pos", "len" },
  bsearch_slots = { "pos", "count", "stride", "str", "bool" },
  read_entries = { "table", "pos", "count", "stride", "len", "len" },
  search = { "pos", "pos", "stride", "str", "bool", "pos", "len" },
  insert = { "pos", "len", "str", "str" },
  remove_key = { "pos", "pos", "stride", "str" },
  insert_key = { "pos", "pos", "stride", "count", "str", "str" },
  put_key = { "pos", "pos", "stride", "count", "str", "str", "pos" },
  descend_insert = { "searcher", "off", "int", "stride", "pos", "pos",
                     "stride", "count", "str", "str", "view", "pos" },
  descend_remove = { "searcher", "off", "int", "stride", "pos", "pos",
                     "stride", "str", "view", "pos" },
  descend_put = { "searcher", "off", "int", "stride", "pos", "pos",
                  "stride", "count", "str", "str", "pos", "view", "pos" },
}
for _, n in ipairs({ 8, 16, 32, 64 }) do
  VIEW_METHODS["u" .. n] = { "pos" }
  VIEW_METHODS["i" .. n] = { "pos" }
  VIEW_METHODS["set_u" .. n] = { "pos", "int" }
  VIEW_METHODS["set_i" .. n] = { "pos", "int" }
end
local MOD_FUNCS = {
  create = { "path", "bs" }, open = { "path", "opts" },
  anonymous = { "bs" }, memclr = { "view" }, clock = {},
  batch_iterator = { "fn", "count" },
}
local META = { "__gc", "__close", "__len", "__tostring", "__index" }

local function keys (t)
  local r = {}
  for k in pairs(t) do r[#r + 1] = k end
  table.sort(r)
  return r
end
local BF_NAMES, VIEW_NAMES, MOD_NAMES =
  keys(BF_METHODS), keys(VIEW_METHODS), keys(MOD_FUNCS)

local HOSTILE_INTS = {
  0, 1, -1, 2, 7, 8, 15, 16, 255, 256, -4096, 4095, 4096, 4097, 8192,
  65536, math.maxinteger, math.mininteger, math.maxinteger - 1,
  math.mininteger + 1, 1 << 31, 1 << 32, (1 << 32) - 1, 1 << 53, 1 << 62,
  -(1 << 62), math.maxinteger // 4096 * 4096, 1 << 51, 1 << 52, 1 << 40,
}
local HOSTILE_FLOATS = {
  0.5, -0.0, 1e308, -1e308, 0 / 0, math.huge, -math.huge, 4096.0, 2.0 ^ 63,
  -2.0 ^ 63, 1e-300, 3.9999,
}
-- counts of blocks that may reach growth: never a size the disk could
-- start filling (between ~1 GB and the file system's size limit)
local SAFE_COUNTS = {
  0, -1, 1, 2, 3, 17, math.maxinteger, math.mininteger, 1 << 32,
  1 << 40, 1 << 51, 1 << 52, 1 << 62, -(1 << 40),
}

describe("API fuzzer", function()
  local dir
  setup(function()
    -- said first, so that even a crash of the process leaves the seed
    io.stderr:write(string.format("fuzz_api_spec: FMAP_SEED=%d\n", SEED))
    if os.getenv("FMAP_FUZZ_TRACE") then
      io.stderr:setvbuf("no")
    end
    dir = h.tmpname(".d")
    assert(os.execute("mkdir -p " .. dir))
  end)
  teardown(function()
    collectgarbage("incremental", 200, 100, 13)
    os.execute("rm -rf " .. dir)
    io.stderr:write(string.format("\nfuzz_api_spec (seed %d): %d sequences, "
      .. "%d calls, %d raised, %d returned nil; %d finalizer actions\n",
      SEED, tally.sequences, tally.calls, tally.raised, tally.failed,
      tally.finalizers))
  end)

  -- One sequence of random calls, from its own seed.
  local function sequence (seed)
    math.randomseed(seed)
    if os.getenv("FMAP_FUZZ_TRACE") then
      io.stderr:write("sequence ", seed, "\n")
    end
    local trace, tn = {}, 0
    local function note (s)
      tn = tn + 1
      trace[(tn - 1) % 12 + 1] = s
    end
    local function fail (fmt, ...)
      local last = {}
      for k = math.max(1, tn - 11), tn do last[#last + 1] = trace[(k - 1) % 12 + 1] end
      error(string.format("seed %d: " .. fmt .. "\nlast calls:\n  %s", seed,
                          ...) .. table.concat(last, "\n  "), 0)
    end

    -- the world: BlockFiles, views, and what each BlockFile allocated
    local W = { bfs = {}, views = {}, offs = {}, paths = {}, searchers = {},
                sentinels = {}, tainted = {} }
    for k = 1, 3 do W.paths[k] = dir .. "/f" .. seed .. "-" .. k .. ".fmap" end
    local function add_bf (bf, force)
      if bf and (force or #W.bfs < 8) then
        W.bfs[#W.bfs + 1] = bf
        W.offs[bf] = {}
      end
    end
    local main = assert(fmap.create(W.paths[1]))
    add_bf(main)
    add_bf(assert(fmap.anonymous()))
    add_bf(assert(fmap.anonymous(8192)))
    do   -- a read-only BlockFile, and sentinel blocks in the main one
      local b = assert(fmap.create(W.paths[2]))
      for _ = 1, 3 do
        local off = b:allocate()
        b:with(off, 1, function(v) v:fill(0x5A) end)
      end
      b:close()
      add_bf(assert(fmap.open(W.paths[2], { readonly = true })))
      for i = 1, 4 do
        local off = main:allocate()
        local s = string.format("sentinel %d at %d", i, off)
        main:with(off, 1, function(v) v:write(0, s) end)
        W.sentinels[off] = s
      end
    end
    -- a bystander no call may touch
    local by = assert(fmap.anonymous())
    local by_off = by:allocate_blocks(3)
    by:with(by_off, 3, function(v) v:fill(0xC3) end)

    local function pick (t) return t[math.random(#t)] end
    local function some_bf () return pick(W.bfs) end
    local function some_view ()
      if #W.views == 0 then return nil end
      return pick(W.views)
    end
    local function live_bf (bf)
      return not tostring(bf):match("closed")
    end

    local function rand_string (max)
      local n = math.random(0, max or 40)
      local t = {}
      for k = 1, n do t[k] = string.char(math.random(0, 255)) end
      return table.concat(t)
    end
    local FMT_OPTS = { "b", "B", "h", "H", "l", "L", "j", "J", "T", "f",
      "d", "n", "z", "x", "<", ">", "=", " ", "i", "I", "s", "c", "X", "!" }
    local function rand_fmt ()
      local t = {}
      for k = 1, math.random(1, 5) do
        local o = pick(FMT_OPTS)
        if (o == "i" or o == "I" or o == "s" or o == "!")
           and math.random() < 0.7 then
          o = o .. math.random(0, 20)
        elseif o == "c" then
          o = o .. (math.random() < 0.9 and math.random(0, 40)
                    or math.random(0, 1 << 31))
        elseif o == "X" then o = o .. pick({ "i4", "i8", "c2", "", "b" }) end
        t[k] = o
      end
      return table.concat(t)
    end

    local function hostile ()
      local c = math.random(16)
      if c <= 4 then return pick(HOSTILE_INTS)
      elseif c <= 6 then return pick(HOSTILE_FLOATS)
      elseif c == 7 then return rand_string(8)
      elseif c == 8 then return tostring(pick(HOSTILE_INTS))
      elseif c == 9 then return nil
      elseif c == 10 then return math.random() < 0.5
      elseif c == 11 then return { readonly = true }
      elseif c == 12 then return some_view() or {}
      elseif c == 13 then return some_bf()
      elseif c == 14 then return tostring
      elseif c == 15 then return coroutine.create(tostring)
      else return math.random(math.mininteger, math.maxinteger) end
    end

    local FNS = {
      function (v) return v end,                  -- escapes the with scope
      function () error("from fn") end,
      function (v) pcall(v.blockfile(v).close, v:blockfile()) end,
      function (v) v:blockfile():free(v:offset(), v:blocks()) end,
      function (v) return v:read(0, 8), #v end,
      function (v)   -- closes it from inside, by the finalizer's door
        getmetatable(v:blockfile()).__gc(v:blockfile())
      end,
      function () coroutine.yield() end,
    }

    -- an argument of a kind, for target t (a BlockFile or a view)
    local function arg (kind, t)
      if kind == "path" then
        -- never a number or a random string: it would name a file in
        -- the current directory, and create() would make it
        local r = math.random()
        if r < 0.7 then return pick(W.paths)
        elseif r < 0.8 then return dir .. "/missing/x.fmap"
        elseif r < 0.85 then return dir
        elseif r < 0.9 then return ""
        end
        return pick({ nil, true, {}, some_bf() or false })
      end
      if math.random() < 0.12 then return hostile() end
      local bf = t
      if type(t) == "userdata" and t.blockfile and not t.allocate then
        bf = t:blockfile()
      end
      local bs = 4096
      if bf and live_bf(bf) then bs = bf:block_size() end
      if kind == "off" then
        local offs = bf and W.offs[bf]
        if offs and #offs > 0 and math.random() < 0.7 then
          return pick(offs)
        end
        local size = (bf and live_bf(bf)) and bf:size() or 65536
        return bs * math.random(0, size // bs + 2)
      elseif kind == "count" then
        if math.random() < 0.85 then return math.random(1, 4) end
        return pick(SAFE_COUNTS)
      elseif kind == "pos" or kind == "len" then
        local n = bs           -- a BlockFile's layouts are within a block
        if type(t) == "userdata" and t.live and t:live() then n = #t end
        local r = math.random()
        if r < 0.4 then return math.random(0, 16)
        elseif r < 0.7 then return math.random(0, n)
        elseif r < 0.85 then return n - math.random(0, 16)
        else return n + math.random(0, 16) end
      elseif kind == "str" then return rand_string(math.random() < 0.9
                                                   and 40 or 5000)
      elseif kind == "fmt" then return rand_fmt()
      elseif kind == "val" then
        local r = math.random()
        if r < 0.5 then return math.random(-300, 300)
        elseif r < 0.8 then return rand_string(10) end
        return pick(HOSTILE_INTS)
      elseif kind == "byte" then return math.random(0, 255)
      elseif kind == "int" then
        return math.random() < 0.5 and math.random(-1000, 1000)
               or pick(HOSTILE_INTS)
      elseif kind == "bool" then return math.random() < 0.5
      elseif kind == "table" then return {}
      elseif kind == "stride" then
        if math.random() < 0.7 then return math.random(0, 64) end
        return hostile()
      elseif kind == "view" then return some_view() or {}
      elseif kind == "searcher" then   -- one made so far, or anything
        if #W.searchers > 0 and math.random() < 0.8 then
          return W.searchers[math.random(#W.searchers)]
        end
        return pick(FNS)
      elseif kind == "other" then
        return math.random() < 0.5 and rand_string(20) or some_view()
      elseif kind == "fn" then return pick(FNS)
      elseif kind == "fill" then
        -- an entry_iterator's fill: runs near allocated blocks, of any
        -- length and direction, hostile values now and then, nil to end
        if math.random() < 0.1 then return pick(FNS) end
        return function ()
          local r = math.random()
          if r < 0.1 then return nil end
          if r < 0.2 then return hostile(), hostile(), hostile(), hostile(),
                                 hostile() end
          if r < 0.6 then             -- inside one block, mostly
            return arg("off", t) + math.random(1024, 2048),
                   math.random(0, 16), math.random(-32, 32),
                   math.random(0, 16),
                   math.random() < 0.5 and math.random(0, 16) or nil
          end
          local pos = arg("off", t) + math.random(-8, 4100)
          local stride = math.random() < 0.8 and math.random(-64, 64)
                         or hostile()
          return pos, math.random(0, 300), stride, math.random(0, 40),
                 math.random() < 0.5 and math.random(0, 40) or nil
        end
      elseif kind == "bs" then
        -- not 2^30 itself: valid, but a gigabyte per file is slow
        return pick({ nil, 4096, 8192, 16384, 4097, 0, -4096, 1 << 31,
                      (1 << 30) + 4096, 4096.5, "4096", 1 << 16 })
      elseif kind == "opts" then
        return pick({ nil, { readonly = true }, { repair = true },
                      { readonly = false }, { bogus = 1 }, { [1] = true },
                      { readonly = true, repair = true }, "x" })
      end
      return hostile()
    end

    -- what a successful call reached, for the sentinels
    local function int (x)
      return math.tointeger(type(x) == "string" and tonumber(x) or x)
    end
    local function taint (bf, off, n)
      off, n = int(off), int(n) or 1
      if bf ~= main or not off then return end
      for s in pairs(W.sentinels) do
        if s < off + n * 4096 and off < s + 4096 then W.tainted[s] = true end
      end
    end

    -- finalizers that change the world in the middle of other calls
    local function chaos ()
      tally.finalizers = tally.finalizers + 1
      local r = math.random()
      local bf = some_bf()
      if r < 0.08 then
        pcall(function() bf:close() end)
      elseif r < 0.45 then
        pcall(function() for _ = 1, 40 do bf:allocate() end end)
      elseif r < 0.6 then
        local v = some_view()
        if v then pcall(v.release, v) end
      elseif r < 0.75 then
        local v = some_view()
        if v then pcall(function()
          local o = pick(W.offs[v:blockfile()] or {})
          taint(v:blockfile(), o, 1)
          v:retarget(o)
        end) end
      elseif r < 0.9 then
        local o = pick(W.offs[bf] or { 0 })
        pcall(function() bf:free(o) end)
        taint(bf, o, 1)
      elseif r < 0.95 then
        pcall(function() bf:set_control_data(math.random(1000)) end)
      else
        pcall(function() getmetatable(bf).__gc(bf) end)
      end
    end
    local function arm ()
      setmetatable({}, { __gc = function() chaos() end })
    end

    -- keeps the world worth calling into: some open BlockFiles (closed
    -- ones stay around too, for misuse) and some live views
    local fresh = 3
    local function replenish ()
      local open = 0
      for k = #W.bfs, 1, -1 do
        if live_bf(W.bfs[k]) then open = open + 1
        elseif #W.bfs >= 6 then table.remove(W.bfs, k) end
      end
      while open < 3 do
        local bf
        if math.random() < 0.5 then
          bf = assert(fmap.anonymous(math.random() < 0.8 and 4096 or 8192))
        else
          fresh = fresh + 1
          W.paths[#W.paths + 1] = dir .. "/f" .. seed .. "-" .. fresh
                                  .. ".fmap"
          bf = assert(fmap.create(W.paths[#W.paths]))
        end
        add_bf(bf, true)
        for _ = 1, 3 do
          W.offs[bf][#W.offs[bf] + 1] = bf:allocate_blocks(math.random(3))
        end
        open = open + 1
      end
      local liveviews = 0
      for k = #W.views, 1, -1 do
        if W.views[k]:live() then liveviews = liveviews + 1
        elseif #W.views > 20 then table.remove(W.views, k) end
      end
      for _ = liveviews, 4 do
        local bf = some_bf()
        local offs = W.offs[bf]
        if live_bf(bf) and offs and #offs > 0 then
          local off = pick(offs)
          local ok, v = pcall(bf.get, bf, off)
          if ok then
            taint(bf, off, 1)
            W.views[#W.views + 1] = v
          end
        end
      end
    end

    local gcmode = math.random(3)
    if gcmode == 1 then collectgarbage("generational", math.random(5, 40))
    elseif gcmode == 2 then
      collectgarbage("incremental", math.random(0, 100), math.random(100, 1000),
                     math.random(0, 13))
    end

    collectgarbage("stop")
    for step = 1, CALLS do
      tally.calls = tally.calls + 1
      replenish()
      if math.random() < 0.3 then arm() end
      local r = math.random()
      local target, name, fn, kinds
      if r < 0.45 then
        target = some_bf()
        name = pick(BF_NAMES)
        kinds = BF_METHODS[name]
      elseif r < 0.9 then
        target = some_view() or some_bf()
        if tostring(target):match("^view") then
          name = pick(VIEW_NAMES)
          kinds = VIEW_METHODS[name]
        else
          name = pick(BF_NAMES)
          kinds = BF_METHODS[name]
        end
      elseif r < 0.96 then
        name = pick(MOD_NAMES)
        kinds = MOD_FUNCS[name]
        fn = fmap[name]
      else
        target = math.random() < 0.5 and some_view() or some_bf()
        target = target or some_bf()
        name = pick(META)
        fn = getmetatable(target)[name]
        kinds = { "any", "any" }
      end
      local args = {}
      local nargs = #kinds
      if math.random() < 0.1 then nargs = math.random(0, #kinds + 2) end
      for k = 1, nargs do
        args[k] = arg(kinds[k] or "any", target)
      end
      if fn == nil then   -- a method: target first, sometimes not
        fn = target[name]
        if fn == nil then fn = function() end end
        table.insert(args, 1, math.random() < 0.97 and target or hostile())
        nargs = nargs + 1
      elseif target ~= nil and name:sub(1, 2) == "__" then
        table.insert(args, 1, math.random() < 0.8 and target or hostile())
        nargs = nargs + 1
      end
      local shown = {}
      for k = 1, nargs do
        local a = args[k]
        shown[k] = type(a) == "string" and string.format("%q", a:sub(1, 20))
                   or tostring(a)
      end
      note(string.format("%d: %s(%s)", step, name, table.concat(shown, ", ")))

      local callee = fn   -- in a coroutine: a yield inside with is an error
      local co = coroutine.create(function(...) return callee(...) end)
      -- the collector (and so the chaos of finalizers) runs only during
      -- the call, not in this harness
      collectgarbage("restart")
      local res = table.pack(coroutine.resume(co, table.unpack(args, 1,
                                                               nargs)))
      collectgarbage("stop")
      if not res[1] then
        tally.raised = tally.raised + 1
        if type(res[2]) ~= "string" then
          fail("%s raised a %s", name, type(res[2]))
        end
      else
        if res[2] == nil and res.n >= 3 and type(res[3]) == "string" then
          tally.failed = tally.failed + 1
        end
        -- keep what the world gained
        for k = 2, res.n do
          local v = res[k]
          if type(v) == "userdata" then
            local s = tostring(v)
            if s:match("^view") and #W.views < 40 then
              W.views[#W.views + 1] = v
            elseif s:match("^BlockFile") and not s:match("closed") then
              local known = false
              for _, b in ipairs(W.bfs) do known = known or b == v end
              if not known then add_bf(v) end
            end
          end
        end
        local bf = target
        if (name == "allocate" or name == "allocate_blocks")
           and math.type(res[2]) == "integer" then
          local offs = W.offs[bf]
          if offs and #offs < 200 then offs[#offs + 1] = res[2] end
        end
        if name == "get" or name == "with" or name == "free" or name == "retarget" then
          local tbf = bf
          if name == "retarget" and type(bf) == "userdata" then
            local ok, b = pcall(bf.blockfile, bf)
            tbf = ok and b or nil
          end
          taint(tbf, args[2], args[3])
        end
      end
      if coroutine.status(co) == "suspended" then
        coroutine.close(co)   -- a yield from a function outside with
      end
      -- an iterator made is also stepped, and a searcher called over
      -- blocks of its file (hostile offsets now and then), the collector
      -- running
      local made = res[1] and type(res[2]) == "function" and res[2]
      local use
      if made and name:match("iterator$") then
        use = function ()
          for _ = 1, math.random(1, 40) do
            if made() == nil then break end
          end
        end
      elseif made and name == "searcher" then
        -- descents too: a depth, and a searcher below (this one, one made
        -- before, maybe of another file, or anything)
        local made_before = W.searchers
        if #made_before < 10 then made_before[#made_before + 1] = made end
        use = function ()
          for _ = 1, math.random(1, 20) do
            local depth, below
            if math.random() < 0.5 then
              local depths = { math.mininteger, -1, math.maxinteger }
              depth = math.random() < 0.8 and math.random(-1, 4)
                      or depths[math.random(#depths)]
              local pick = math.random(1, 4)
              below = pick == 1 and made
                      or pick == 2 and made_before[math.random(#made_before)]
                      or pick == 3 and arg("off", target) or nil
            end
            made(arg("off", target), arg("str", target), arg("bool", target),
                 depth, below)
          end
        end
      end
      if use then
        local user = coroutine.create(use)
        collectgarbage("restart")
        local ok, err = coroutine.resume(user)
        collectgarbage("stop")
        if not ok and type(err) ~= "string" then
          fail("what %s made raised a %s", name, type(err))
        end
        if coroutine.status(user) == "suspended" then
          coroutine.close(user)
        end
      end

      if step % 100 == 0 or step == CALLS then
        -- the invariants
        for _, bf in ipairs(W.bfs) do
          if live_bf(bf) then
            local ok, problems = bf:check()
            if ok ~= true then
              fail("check() failed on %s: %s", tostring(bf),
                   table.concat(problems or {}, "; "))
            end
          end
        end
        if live_bf(main) then
          for off, s in pairs(W.sentinels) do
            if not W.tainted[off] then
              local got = main:with(off, 1, function(v)
                return v:read(0, #s)
              end)
              if got ~= s then
                fail("sentinel at %d changed: %q", off, got)
              end
            end
          end
        end
        local ok = by:with(by_off, 3, function(v)
          return v:compare(0, string.rep("\xC3", 3 * 4096)) == 0
        end)
        if not ok or not by:check() then fail("the bystander changed") end
        -- drop dead views and closed files now and then
        if #W.views > 30 then
          local keep = {}
          for _, v in ipairs(W.views) do
            if v:live() and #keep < 15 then keep[#keep + 1] = v end
          end
          W.views = keep
        end
        for k = #W.bfs, 1, -1 do
          if not live_bf(W.bfs[k]) and math.random() < 0.5 then
            table.remove(W.bfs, k)
          end
        end
        if #W.bfs == 0 then add_bf(assert(fmap.anonymous())) end
      end
    end
    collectgarbage("restart")
    collectgarbage("incremental", 200, 100, 13)
    -- tidy: close what is open
    W.views = {}
    collectgarbage()
    for _, bf in ipairs(W.bfs) do
      if live_bf(bf) then pcall(bf.close, bf) end
    end
    by:close()
    tally.sequences = tally.sequences + 1
  end

  it("survives random calls with hostile arguments", function()
    for k = 1, SEQUENCES do
      local ok, err = pcall(sequence, SEED + k)
      -- the collector as it was, whatever happened: the specs after this
      -- one count on it
      collectgarbage("restart")
      collectgarbage("incremental", 200, 100, 13)
      if not ok then
        error(string.format("sequence FMAP_SEED=%d: %s", SEED + k, err), 0)
      end
    end
  end)
end)
