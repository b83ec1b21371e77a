--- spec/readers_workload.lua: the writer and the readers of
-- spec/readers_spec.lua, child processes of the spec.
--
-- The writer runs the transactions of spec/txn_workload.lua (a B+tree whose
-- values name blobs of a varchar, a list, the guide's hash table; the
-- control data counts the commits) and, before each commit, appends to a
-- history file what the commit changes. A reader opens the file read-only
-- again and again: it reads the commit counter C, replays the history up
-- to C on a model of plain Lua tables, and compares every entry of every
-- structure with the model, besides lookups at random and each
-- structure's verify(). The history is written before the commit, so a
-- reader always finds the commit it sees there.
local fmap = require "fmap"
local W = require "txn_workload"

local M = {}

local pack, unpack, sformat = string.pack, string.unpack, string.format

local function say (...)
  io.write(table.concat({ ... }, " "), "\n")
  io.flush()
end

local exists = require("fmap.cli").exists

-- A pause of a few milliseconds, while another process gets on.
local function nap ()
  os.execute("sleep 0.005")
end

-- Whether a writer has the file at path open.
local function writing (path)
  local bf = assert(fmap.open(path, { readonly = true }))
  local w = bf:stats().writer
  assert(bf:close())
  return w
end

---------------------------------------------------------------------------
-- The history: a record per commit, what it changed
---------------------------------------------------------------------------

-- Operation codes of a record.
local TADD, TDEL, TSET, LAPP, LPOP, LSET, LDEL, HPUT, HDEL =
  1, 2, 3, 4, 5, 6, 7, 8, 9

local function hid_of (k) return math.tointeger(tonumber(k:sub(2))) end

--- The record of committed transaction tx: its counter, then what each
-- operation changed (the new values, never the old).
function M.record (tx)
  local out = { pack("<I8I4", tx.t + 1, #tx.ops) }
  for _, op in ipairs(tx.ops) do
    local kind, s = op[1]
    if kind == "tadd" then s = pack("<BI4s4s4", TADD, op[2], op[3], op[4])
    elseif kind == "tdel" then s = pack("<BI4", TDEL, op[2])
    elseif kind == "tset" then s = pack("<BI4s4s4", TSET, op[2], op[5], op[6])
    elseif kind == "lapp" then s = pack("<Bs4", LAPP, op[2])
    elseif kind == "lpop" then s = pack("<B", LPOP)
    elseif kind == "lset" then s = pack("<BI4s4", LSET, op[2], op[4])
    elseif kind == "ldel" then s = pack("<BI4", LDEL, op[2])
    elseif kind == "hput" then s = pack("<BI4s4", HPUT, hid_of(op[2]), op[3])
    elseif kind == "hdel" then s = pack("<BI4", HDEL, hid_of(op[2]))
    else error("unknown operation " .. tostring(kind)) end
    out[#out + 1] = s
  end
  local body = table.concat(out)
  return pack("<s4", body)
end

--- An empty model, in the form of W.read_state.
function M.model ()
  return { counter = 0, tree = {}, ntree = 0, list = {}, hash = {},
           nhash = 0 }
end

-- Applies one record's body to the model s; raises on a record that does
-- not fit it (the history is then not the file's).
local function apply (s, body)
  local c, n, pos = unpack("<I8I4", body)
  assert(c > s.counter, "history: commit " .. c .. " after " .. s.counter)
  for _ = 1, n do
    local kind
    kind, pos = unpack("<B", body, pos)
    if kind == TADD or kind == TSET then
      local id, pad, blob
      id, pad, blob, pos = unpack("<I4s4s4", body, pos)
      assert((s.tree[id] == nil) == (kind == TADD), "history: tree key "
             .. id .. (kind == TADD and " added twice" or " set, absent"))
      if kind == TADD then s.ntree = s.ntree + 1 end
      s.tree[id] = { pad = pad, blob = blob }
    elseif kind == TDEL then
      local id
      id, pos = unpack("<I4", body, pos)
      assert(s.tree[id], "history: tree key " .. id .. " removed, absent")
      s.tree[id], s.ntree = nil, s.ntree - 1
    elseif kind == LAPP then
      local item
      item, pos = unpack("<s4", body, pos)
      s.list[#s.list + 1] = item
    elseif kind == LPOP then
      assert(#s.list > 0, "history: pop of an empty list")
      s.list[#s.list] = nil
    elseif kind == LSET then
      local k, item
      k, item, pos = unpack("<I4s4", body, pos)
      assert(s.list[k], "history: list item " .. k .. " set, absent")
      s.list[k] = item
    elseif kind == LDEL then
      local k, size
      k, pos = unpack("<I4", body, pos)
      size = #s.list
      assert(k <= size, "history: list item " .. k .. " deleted, absent")
      s.list[k] = s.list[size]
      s.list[size] = nil
    elseif kind == HPUT then
      local hid, v
      hid, v, pos = unpack("<I4s4", body, pos)
      if s.hash[hid] == nil then s.nhash = s.nhash + 1 end
      s.hash[hid] = v
    elseif kind == HDEL then
      local hid
      hid, pos = unpack("<I4", body, pos)
      assert(s.hash[hid], "history: hash key " .. hid .. " removed, absent")
      s.hash[hid], s.nhash = nil, s.nhash - 1
    else
      error("history: unknown operation " .. kind)
    end
  end
  assert(pos == #body + 1, "history: a record longer than its operations")
  s.counter = c
end

--- A reader of the history at path: advance(s, c) replays on the model s
-- every record up to commit c, reading what the writer has appended
-- since the last call. Raises when commit c is not in the history.
function M.history (path)
  local f = assert(io.open(path, "rb"))
  local at, buf = 0, ""   -- bytes of the file read; of them, not parsed
  local hist = {}
  function hist.advance (s, c)
    while s.counter < c do
      if #buf < 4 or #buf < 4 + unpack("<I4", buf) then
        f:seek("set", at)   -- past an end of file met before
        local more = f:read(1 << 20)
        assert(more, sformat("history: commit %d is not in it (it ends "
                             .. "at commit %d)", c, s.counter))
        at = at + #more
        buf = buf .. more
      else
        local body, pos = unpack("<s4", buf)
        buf = buf:sub(pos)
        apply(s, body)
        assert(s.counter <= c, sformat("history: commit %d is not in it "
                                       .. "(%d follows %d)", c, s.counter,
                                       c))
      end
    end
  end
  function hist.close () f:close() end
  return hist
end

---------------------------------------------------------------------------
-- The writer
---------------------------------------------------------------------------

--- The writer. arg: path, seed, history path, stop path, reopen (close
-- and open the file again every reopen transactions, 0 never), cap (a
-- journal past it waits for a checkpoint: see M.reader). Runs transactions until the stop file exists. Says "START c"
-- when it runs, and at the end "WRITER" and its figures: name=value pairs.
function M.writer (arg)
  local path, seed, hpath, stop = arg[1], math.tointeger(tonumber(arg[2])),
                                  arg[3], arg[4]
  local reopen = math.tointeger(tonumber(arg[5])) or 0
  local cap = math.tointeger(tonumber(arg[6]))
  local log = assert(io.open(hpath, "ab"))
  local bf = assert(fmap.open(path))
  local h = W.handles(bf)
  local state = W.read_state(h)
  local fig = { commits = 0, txns = 0, checkpoints = 0, deferred = 0,
                journal_max = 0, reopens = 0, adopted = 0, readers_seen = 0,
                waits = 0 }
  local function tally ()
    local st = bf:stats()
    fig.checkpoints = fig.checkpoints + st.checkpoints
    fig.deferred = fig.deferred + st.checkpoints_deferred
  end
  say("START", state.counter)
  local t = state.counter
  while not exists(stop) do
    local tx = W.txn(state, seed, t)
    if W.commits(tx) then
      assert(log:write(M.record(tx)))
      assert(log:flush())
    end
    if W.run(h, tx) then fig.commits = fig.commits + 1 end
    fig.txns = fig.txns + 1
    t = t + 1
    local st = bf:stats()
    fig.journal_max = math.max(fig.journal_max, st.journal_bytes)
    if t % 16 == 0 and st.readers then
      fig.readers_seen = fig.readers_seen + 1
    end
    if st.journal_bytes > cap then
      -- the readers stay away until a checkpoint gets through
      fig.waits = fig.waits + 1
      assert(io.open(path .. ".hold", "w")):close()
      repeat
        assert(bf:flush())
        local small = bf:stats().journal_bytes <= cap
        if not small then nap() end
      until small
      os.remove(path .. ".hold")
    end
    if reopen > 0 and t % reopen == 0 then
      -- beside readers, the journal stays at close and this open adopts
      -- it; with none, the close copies it in and removes it
      tally()
      h = nil
      collectgarbage()
      assert(bf:close())
      bf = assert(fmap.open(path))
      if bf:stats().journal_replayed > 0 then
        fig.adopted = fig.adopted + 1
      end
      h = W.handles(bf)
      assert(h.counter == state.counter, "reopened at commit " .. h.counter
             .. ", the last is " .. state.counter)
      fig.reopens = fig.reopens + 1
    end
  end
  tally()
  h = nil
  collectgarbage()
  assert(bf:close())
  log:close()
  local out = {}
  for k, v in pairs(fig) do out[#out + 1] = k .. "=" .. v end
  table.sort(out)
  say("WRITER", table.concat(out, " "))
end

---------------------------------------------------------------------------
-- A reader
---------------------------------------------------------------------------

-- Raises "INCONSISTENT: ..." with the reader's context.
local function inconsistent (ctx, fmt, ...)
  error("INCONSISTENT: " .. ctx .. ": " .. sformat(fmt, ...), 0)
end

-- Looks up n entries of each structure at random (present or not) in the
-- BlockFile of h, against the model s; returns how many it checked.
local function lookups (h, s, n, ctx)
  for _ = 1, n do
    local id = math.random(1, W.TKEYS)
    local v, e = h.tree:get(W.key(id)), s.tree[id]
    if (v == nil) ~= (e == nil) then
      inconsistent(ctx, "tree key %d is %s", id, v and "there" or "missing")
    elseif v and (v:sub(9) ~= e.pad
                  or h.vc:get(unpack("<I8", v)) ~= e.blob) then
      inconsistent(ctx, "tree key %d: its value or its blob differs", id)
    end
    local hid = math.random(1, W.HKEYS)
    if h.ht:get("h" .. hid) ~= s.hash[hid] then
      inconsistent(ctx, "hash key h%d differs", hid)
    end
    if #s.list > 0 then
      local k = math.random(1, #s.list)
      if h.list:get(k) ~= s.list[k] then
        inconsistent(ctx, "list item %d differs", k)
      end
    end
  end
  if #h.list ~= #s.list then
    inconsistent(ctx, "the list counts %d items, expected %d", #h.list,
                 #s.list)
  end
  return n * (#s.list > 0 and 3 or 2)
end

-- Reads the whole state of h and compares it with the model s; returns
-- how many entries it checked (a tree entry and its blob count two), and
-- the state read.
local function compare (h, s, ctx)
  local got, problems = W.read_state(h)
  if #problems > 0 then inconsistent(ctx, "%s", problems[1]) end
  local d = W.diff(s, got)
  if d then inconsistent(ctx, "%s", d) end
  return 2 * got.ntree + #got.list + got.nhash, got
end

-- Verifies every structure of h.
local function verify (h, ctx)
  for _, x in ipairs({ h.tree, h.vc, h.list, h.ht }) do
    local good, why = x:verify()
    if not good then inconsistent(ctx, "verify: %s", tostring(why)) end
  end
end

--- A reader. arg: path, history path, checks (how many to make at least),
-- its name, seed, commits (how many distinct ones to see at least).
-- Says at the end "READER" and its figures. Readers that overlap keep
-- every checkpoint off, and the journal grows without bound: once it
-- passes cap bytes, the writer makes a file path.hold, and a reader that
-- closes opens again only once the writer has removed it, after a
-- checkpoint: the writer finds a moment with no reader mapped.
function M.reader (arg)
  local path, hpath = arg[1], arg[2]
  local quota, name = math.tointeger(tonumber(arg[3])), arg[4]
  math.randomseed(math.tointeger(tonumber(arg[5])))
  local least = math.tointeger(tonumber(arg[6]))
  local hist = M.history(hpath)
  local s = M.model()
  local fig = { opens = 0, checks = 0, commits_seen = 0, writer = 0,
                held = 0, moved_on = 0, full = 0, first = -1, last = -1,
                waits = 0 }
  local last = -1
  local alone = 0   -- opens in a row that found no writer
  -- (one that ended early leaves fewer commits than least to see)
  while fig.checks < quota or (fig.commits_seen < least and alone < 20) do
    local bf = assert(fmap.open(path, { readonly = true }))
    fig.opens = fig.opens + 1
    local h = W.handles(bf)
    local c = h.counter
    local ctx = sformat("reader %s, open %d, at commit %d", name, fig.opens,
                        c)
    if c < last then inconsistent(ctx, "the last open saw commit %d", last) end
    if c ~= last then fig.commits_seen = fig.commits_seen + 1 end
    if fig.first < 0 then fig.first = c end
    last = c
    if bf:stats().writer then
      fig.writer, alone = fig.writer + 1, 0
    else
      alone = alone + 1
    end
    hist.advance(s, c)
    local ok, err = pcall(function ()
      verify(h, ctx)
      fig.checks = fig.checks + lookups(h, s, 50, ctx)
      if fig.opens % 3 ~= 0 then return end
      -- every third open reads every entry of every structure
      local n, got = compare(h, s, ctx)
      fig.checks = fig.checks + n
      fig.full = fig.full + 1
      if fig.opens % 6 == 0 then
        -- a second reader in this process, at the writer's last commit;
        -- then the first, held open meanwhile, must read as before
        local bf2 = assert(fmap.open(path, { readonly = true }))
        local h2 = W.handles(bf2)
        local c2 = h2.counter
        local ctx2 = sformat("reader %s, open %d, second reader at commit "
                             .. "%d", name, fig.opens, c2)
        if c2 < c then inconsistent(ctx2, "the first saw commit %d", c) end
        if c2 > c then fig.moved_on = fig.moved_on + 1 end
        local again = W.read_state(h)
        if W.serialize(again) ~= W.serialize(got) then
          inconsistent(ctx, "held open while commit %d came, it reads "
                       .. "otherwise: %s", c2, W.diff(got, again) or "?")
        end
        fig.held = fig.held + 1
        fig.checks = fig.checks + n
        last = c2
        hist.advance(s, c2)
        verify(h2, ctx2)
        fig.checks = fig.checks + compare(h2, s, ctx2)
        h2 = nil
        collectgarbage()
        assert(bf2:close())
      end
      if fig.opens % 9 == 0 then
        local good, problems = bf:check()
        if not good then
          inconsistent(ctx, "check: %s", tostring(problems[1]))
        end
      end
    end)
    if not ok then
      if tostring(err):find("^INCONSISTENT") then error(err, 0) end
      inconsistent(ctx, "a read raised: %s", tostring(err))
    end
    h = nil
    collectgarbage()
    assert(bf:close())
    if exists(path .. ".hold") then
      fig.waits = fig.waits + 1
      local naps = 0
      repeat
        nap()
        naps = naps + 1
      until not exists(path .. ".hold")
            or (naps % 100 == 0 and not writing(path))
    end
  end
  fig.last = last
  hist.close()
  local out = {}
  for k, v in pairs(fig) do out[#out + 1] = k .. "=" .. v end
  table.sort(out)
  say("READER", name, table.concat(out, " "))
end

return M
