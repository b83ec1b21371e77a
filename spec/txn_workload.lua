--- spec/txn_workload.lua: the writer of spec/txn_crash_spec.lua and the
-- model it is checked against.
--
-- One file holds four structures: a slotted B+tree whose values name
-- blobs of a varchar (key -> 8-byte blob offset, then padding), a list
-- and the guide's hash table. The control data says where they are and
-- how many transactions the file has seen:
--     bptree@T txn C vc V list L ht H
-- C is 1 + the number of the last committed transaction (0 at first).
--
-- Transaction t (0, 1, 2, ...) is a function of the seed, t and the state
-- before it, never of the history: its choices come from a generator
-- seeded with (seed, t), and the keys it removes are found from the state
-- (`txn`). So a writer that opens a file at C runs transactions C, C+1,
-- ... exactly as the model does, whatever killed the writer before it,
-- and a transaction rolled back (or killed) is the same when run again.
-- The model is plain Lua tables; `txn` applies a transaction to it (or
-- leaves it as it was, for one that rolls back), `run` applies it to the
-- file.
local fmap = require "fmap"
local bptree = require "fmap.bptree"
local varchar = require "fmap.varchar"
local mmlist = require "fmap.mmlist"
local hashtable = require "fmap.examples.hashtable"

local M = {}

local pack, unpack, sformat, srep = string.pack, string.unpack,
  string.format, string.rep

--- Tree keys are ids 1..TKEYS, hash keys "h" .. 1..HKEYS.
M.TKEYS, M.HKEYS = 2000, 1000
--- Buckets of the hash table: few, so that chains overflow.
M.BUCKETS = 8

---------------------------------------------------------------------------
-- The generator: splitmix64, so that nothing else drawing from
-- math.random can shift it.
---------------------------------------------------------------------------

local function mix (z)
  z = (z ~ (z >> 30)) * 0xbf58476d1ce4e5b9
  z = (z ~ (z >> 27)) * 0x94d049bb133111eb
  return z ~ (z >> 31)
end

local Rng = {}
Rng.__index = Rng

--- The generator of transaction t under seed.
function M.rng (seed, t)
  return setmetatable({ s = mix(mix(seed) + t) }, Rng)
end

function Rng:next ()
  self.s = self.s + 0x9e3779b97f4a7c15
  return mix(self.s)
end

--- An integer in [lo, hi].
function Rng:int (lo, hi)
  return lo + (self:next() >> 1) % (hi - lo + 1)
end

--- A float in [0, 1).
function Rng:float ()
  return (self:next() >> 11) * 2.0^-53
end

---------------------------------------------------------------------------
-- Keys and contents
---------------------------------------------------------------------------

--- The tree key of id: groups of 40 ids share a prefix of 0, 90, 180 or
-- 270 bytes, so that separators are long in some parts of the tree (and
-- internal nodes split and merge) and short in others.
function M.key (id)
  local g = id // 40
  return srep(string.char(97 + g % 26), (g % 4) * 90) .. sformat("%05d", id)
end

-- A string of about len bytes that names where it was made. (The
-- generator is drawn from in separate statements: Lua leaves the order in
-- which arguments and constructors are evaluated unspecified.)
local function content (r, t, i, len)
  local lower = r:int(97, 122)
  local upper = r:int(65, 90)
  return sformat("%d.%d|", t, i) .. srep(string.char(lower, upper), len // 2)
end

-- A length from a mix: mostly small, some medium, a few large.
local function length (r, small, medium, large)
  local u = r:float()
  if u < 0.85 then return r:int(0, small)
  elseif u < 0.97 then return r:int(small + 1, medium) end
  return r:int(medium + 1, large)
end

--- The control data for a file at counter c with the structures of h.
function M.ctl (h, c)
  return sformat("bptree@%d txn %d vc %d list %d ht %d", h.tree:offset(), c,
                 h.vc:offset(), h.list:offset(), h.ht:offset())
end

--- Parses control data: counter, and the offsets of the tree, the blob
-- store, the list and the hash table; nil if it is not ours.
function M.parse_ctl (cd)
  local t, c, v, l, ht = cd:match("^bptree@(%d+) txn (%d+) vc (%d+) list "
                                  .. "(%d+) ht (%d+)$")
  if not t then return nil end
  return math.tointeger(c), math.tointeger(t), math.tointeger(v),
         math.tointeger(l), math.tointeger(ht)
end

---------------------------------------------------------------------------
-- The file
---------------------------------------------------------------------------

--- Creates path with empty structures, at counter 0.
function M.create (path)
  local bf = assert(fmap.create(path))
  local h = { bf = bf }
  h.tree = assert(bptree.new(bf, -1, -1))
  h.vc = assert(varchar.new(bf))
  h.list = assert(mmlist.new(bf))
  h.ht = assert(hashtable.create(bf, M.BUCKETS))
  assert(bf:set_control_data(M.ctl(h, 0)))
  assert(bf:close())
end

--- The structures of an open BlockFile: {bf, tree, vc, list, ht, counter}.
-- Raises when the control data or a structure is not sound.
function M.handles (bf)
  local cd = bf:control_data()
  local c, _, v, l, ht = M.parse_ctl(cd)
  assert(c, "control data not the workload's: " .. string.format("%q", cd))
  local h = { bf = bf, counter = c }
  h.tree = bptree.open(bf)
  h.vc = assert(varchar.open(bf, v))
  h.list = assert(mmlist.open(bf, l))
  h.ht = assert(hashtable.open(bf, ht))
  return h
end

--- The state the file holds, in the model's form: {counter, tree = {[id]
-- = {pad, blob}}, ntree, list = {items}, hash = {[hid] = value}, nhash}.
-- Also a list of problems seen while reading (keys not of the form, blobs
-- with more than one reference, blobs no entry names), empty if none.
function M.read_state (h)
  local s = { counter = h.counter, tree = {}, ntree = 0, list = {},
              hash = {}, nhash = 0 }
  local problems = {}
  for k, v in h.tree:iterate() do
    local id = math.tointeger(tonumber(k:sub(-5)))
    if not id or M.key(id) ~= k or #v < 8 then
      problems[#problems + 1] = sformat("tree entry %q -> %q is not the "
                                        .. "workload's", k:sub(-40),
                                        v:sub(1, 40))
    elseif s.tree[id] then
      problems[#problems + 1] = "tree key " .. id .. " is there twice"
    else
      local ref = unpack("<I8", v)
      local ok, blob = pcall(h.vc.get, h.vc, ref)
      if not ok then
        problems[#problems + 1] = sformat("tree key %d names blob %d: %s",
                                          id, ref, blob)
      else
        if h.vc:refs(ref) ~= 1 then
          problems[#problems + 1] = sformat("blob %d of tree key %d has %d "
                                            .. "references", ref, id,
                                            h.vc:refs(ref))
        end
        s.tree[id] = { pad = v:sub(9), blob = blob }
        s.ntree = s.ntree + 1
      end
    end
  end
  if h.vc:count() ~= s.ntree then
    problems[#problems + 1] = sformat("the blob store holds %d blobs, the "
                                      .. "tree names %d", h.vc:count(),
                                      s.ntree)
  end
  for i, item in h.list:iterate() do s.list[i] = item end
  for k, v in h.ht:pairs() do
    local hid = math.tointeger(tonumber(k:sub(2)))
    if not hid or "h" .. hid ~= k or s.hash[hid] then
      problems[#problems + 1] = sformat("hash key %q is not the workload's "
                                        .. "or twice there", k)
    else
      s.hash[hid] = v
      s.nhash = s.nhash + 1
    end
  end
  return s, problems
end

--- The first difference between two states (model, file), or nil.
function M.diff (a, b)
  if a.counter ~= b.counter then
    return sformat("counter %d, expected %d", b.counter, a.counter)
  end
  for id = 1, M.TKEYS do
    local x, y = a.tree[id], b.tree[id]
    if (x == nil) ~= (y == nil) then
      return sformat("tree key %d is %s, expected %s", id,
                     y and "there" or "missing", x and "there" or "none")
    elseif x and x.pad ~= y.pad then
      return sformat("tree key %d: padding of %d bytes, expected %d", id,
                     #y.pad, #x.pad)
    elseif x and x.blob ~= y.blob then
      return sformat("tree key %d: blob %q (%d bytes), expected %q (%d)",
                     id, y.blob:sub(1, 20), #y.blob, x.blob:sub(1, 20),
                     #x.blob)
    end
  end
  if a.ntree ~= b.ntree then
    return sformat("%d tree entries, expected %d", b.ntree, a.ntree)
  end
  if #a.list ~= #b.list then
    return sformat("%d list items, expected %d", #b.list, #a.list)
  end
  for i = 1, #a.list do
    if a.list[i] ~= b.list[i] then
      return sformat("list item %d is %q (%d bytes), expected %q (%d)", i,
                     b.list[i]:sub(1, 20), #b.list[i], a.list[i]:sub(1, 20),
                     #a.list[i])
    end
  end
  for hid = 1, M.HKEYS do
    if a.hash[hid] ~= b.hash[hid] then
      return sformat("hash key h%d is %s, expected %s", hid,
                     b.hash[hid] and sformat("%q", b.hash[hid]:sub(1, 20))
                     or "missing", a.hash[hid]
                     and sformat("%q", a.hash[hid]:sub(1, 20)) or "none")
    end
  end
  if a.nhash ~= b.nhash then
    return sformat("%d hash entries, expected %d", b.nhash, a.nhash)
  end
  return nil
end

--- The state as one string, the same for equal states.
function M.serialize (s)
  local out = { pack("<i8", s.counter) }
  for id = 1, M.TKEYS do
    local e = s.tree[id]
    if e then out[#out + 1] = pack("<i4s4s4", id, e.pad, e.blob) end
  end
  out[#out + 1] = pack("<i4", #s.list)
  for _, item in ipairs(s.list) do out[#out + 1] = pack("<s4", item) end
  for hid = 1, M.HKEYS do
    local v = s.hash[hid]
    if v then out[#out + 1] = pack("<i4s4", hid, v) end
  end
  return table.concat(out)
end

---------------------------------------------------------------------------
-- Transactions
---------------------------------------------------------------------------

-- Sizes the structures tend to, by phase of 200 transactions: the tree
-- grows (splits) and shrinks (merges), the list crosses its first leaf
-- boundary (512 items) and empties (every leaf freed), chains of the hash
-- table overflow and shrink.
local TREE_T = { 700, 60, 450, 20 }
local LIST_T = { 560, 0, 650, 150 }
local HASH_T = { 400, 30, 250, 5 }

-- The first id from a random one up (wrapping) for which present(id) is
-- want: the choice depends on the state only.
local function pick (r, set, n, want)
  local id = r:int(1, n)
  for _ = 1, n do
    if (set[id] ~= nil) == want then return id end
    id = id % n + 1
  end
  error("no id to pick")
end

--- Generates transaction t on state s and applies it to s, or leaves s as
-- it was if the transaction rolls back. Returns {t, mode, ops, undo}:
-- mode is "commit", "nosync" (commit{sync = false}), "rollback", "fn"
-- (bf:transaction) or "fn_error" (bf:transaction whose fn raises); ops are
-- what `run` does, each with what it must find (the file's own reads
-- checked on the way).
function M.txn (s, seed, t)
  local r = M.rng(seed, t)
  local u = r:float()
  local mode = u < 0.66 and "commit" or u < 0.80 and "nosync"
               or u < 0.88 and "rollback" or u < 0.95 and "fn" or "fn_error"
  local n = r:float() < 0.3 and r:int(1, 4) or r:int(1, 50)
  local phase = (t // 200) % 4 + 1
  local ops, undo = {}, {}
  for i = 1, n do
    local w = r:float()
    local op
    if w < 0.4 then                          -- the tree and its blobs
      local grow = s.ntree < TREE_T[phase]
      local x = r:float()
      if s.ntree == 0 or (x < (grow and 0.65 or 0.25)) then
        local id = pick(r, s.tree, M.TKEYS, false)
        local pad = srep("p", length(r, 60, 400, 2500))
        local e = { pad = pad,
                    blob = content(r, t, i, length(r, 250, 1800, 13000)) }
        op = { "tadd", id, e.pad, e.blob }
        s.tree[id], s.ntree = e, s.ntree + 1
        undo[#undo + 1] = function ()
          s.tree[id], s.ntree = nil, s.ntree - 1
        end
      else
        local id = pick(r, s.tree, M.TKEYS, true)
        local old = s.tree[id]
        if x < 0.85 then
          op = { "tdel", id, old.pad, old.blob }
          s.tree[id], s.ntree = nil, s.ntree - 1
          undo[#undo + 1] = function ()
            s.tree[id], s.ntree = old, s.ntree + 1
          end
        else
          local pad = srep("q", length(r, 60, 400, 2500))
          local e = { pad = pad,
                      blob = content(r, t, i, length(r, 250, 1800, 13000)) }
          op = { "tset", id, old.pad, old.blob, e.pad, e.blob }
          s.tree[id] = e
          undo[#undo + 1] = function () s.tree[id] = old end
        end
      end
    elseif w < 0.75 then                     -- the list
      local l = s.list
      local size = #l
      local x = r:float()
      local grow = size < LIST_T[phase]
      if size == 0 or x < (grow and 0.75 or 0.2) then
        local item = content(r, t, i, length(r, 200, 2000, 9000))
        op = { "lapp", item, size + 1 }
        l[size + 1] = item
        undo[#undo + 1] = function () l[#l] = nil end
      elseif x < (grow and 0.85 or 0.8) then
        local old = l[size]
        op = { "lpop", old }
        l[size] = nil
        undo[#undo + 1] = function () l[#l + 1] = old end
      elseif x < (grow and 0.95 or 0.9) then
        local k = r:int(1, size)
        local old, item = l[k], content(r, t, i, length(r, 200, 2000, 9000))
        op = { "lset", k, old, item }
        l[k] = item
        undo[#undo + 1] = function () l[k] = old end
      else
        local k = r:int(1, size)
        local old, last = l[k], l[size]
        op = { "ldel", k, old }
        l[k] = last                          -- in this order: k may
        l[size] = nil                        -- be the last index
        undo[#undo + 1] = function ()
          l[size] = last
          l[k] = old
        end
      end
    else                                     -- the hash table
      local grow = s.nhash < HASH_T[phase]
      local x = r:float()
      if s.nhash == 0 or x < (grow and 0.7 or 0.4) then
        local new = x < (grow and 0.5 or 0.15) or s.nhash == 0
        local hid = pick(r, s.hash, M.HKEYS, not new)
        local old = s.hash[hid]
        local v = content(r, t, i, length(r, 150, 1200, 3000))
        op = { "hput", "h" .. hid, v, old }
        s.hash[hid] = v
        if not old then s.nhash = s.nhash + 1 end
        undo[#undo + 1] = function ()
          s.hash[hid] = old
          if not old then s.nhash = s.nhash - 1 end
        end
      else
        local hid = pick(r, s.hash, M.HKEYS, true)
        local old = s.hash[hid]
        op = { "hdel", "h" .. hid, old }
        s.hash[hid], s.nhash = nil, s.nhash - 1
        undo[#undo + 1] = function ()
          s.hash[hid], s.nhash = old, s.nhash + 1
        end
      end
    end
    ops[i] = op
  end
  local tx = { t = t, mode = mode, ops = ops, undo = undo,
               counter = s.counter }
  if mode == "rollback" or mode == "fn_error" then
    M.undo(s, tx)
  else
    s.counter = t + 1
  end
  return tx
end

--- Undoes on s the transaction tx that `txn` applied.
function M.undo (s, tx)
  for i = #tx.undo, 1, -1 do tx.undo[i]() end
  s.counter = tx.counter
end

--- Whether tx commits.
function M.commits (tx)
  return tx.mode ~= "rollback" and tx.mode ~= "fn_error"
end

-- Raises "MISMATCH: ..." unless ok: the file read back something else than
-- the model says, inside a transaction.
local function expect (ok, fmt, ...)
  if not ok then error("MISMATCH: " .. sformat(fmt, ...), 0) end
end
M.expect = expect

local function tree_remove (h, id, pad, blob)
  local k = M.key(id)
  local v = h.tree:get(k)
  expect(v and v:sub(9) == pad, "tree key %d holds %s", id,
         v and #v - 8 .. " bytes of padding, not " .. #pad or "nothing")
  local ref = unpack("<I8", v)
  expect(h.vc:get(ref) == blob, "tree key %d: its blob differs", id)
  expect(h.tree:remove(k) == 1, "tree key %d was not removed once", id)
  h.vc:free(ref)
end

local function tree_add (h, id, pad, blob)
  local ref = assert(h.vc:put(blob))
  assert(h.tree:add(M.key(id), pack("<I8", ref) .. pad))
end

--- Applies one operation to the structures of h.
function M.exec (h, op)
  local kind = op[1]
  if kind == "tadd" then
    expect(not h.tree:has(M.key(op[2])), "tree key %d is there", op[2])
    tree_add(h, op[2], op[3], op[4])
  elseif kind == "tdel" then
    tree_remove(h, op[2], op[3], op[4])
  elseif kind == "tset" then
    tree_remove(h, op[2], op[3], op[4])
    tree_add(h, op[2], op[5], op[6])
  elseif kind == "lapp" then
    local n = h.list:append(op[2])
    expect(n == op[3], "append gave index %s, expected %d", n, op[3])
  elseif kind == "lpop" then
    expect(h.list:pop() == op[2], "pop gave another item")
  elseif kind == "lset" then
    expect(h.list:get(op[2]) == op[3], "list item %d differs", op[2])
    assert(h.list:set(op[2], op[4]))
  elseif kind == "ldel" then
    expect(h.list:swap_delete(op[2]) == op[3], "swap_delete(%d) gave "
           .. "another item", op[2])
  elseif kind == "hput" then
    expect(h.ht:get(op[2]) == op[4], "hash key %s differs", op[2])
    assert(h.ht:put(op[2], op[3]))
  elseif kind == "hdel" then
    expect(h.ht:get(op[2]) == op[3], "hash key %s differs", op[2])
    expect(h.ht:remove(op[2]) == true, "hash key %s not removed", op[2])
  else
    error("unknown operation " .. tostring(kind))
  end
end

local ABANDON = setmetatable({}, { __tostring = function ()
  return "abandoned on purpose"
end })

--- Runs tx on the file of h in its mode. arm = {op = i, n = n, how =
-- how}: fail_after(n, how) right before operation i. Returns whether it
-- committed. After a rollback, checks that the file is as before.
function M.run (h, tx, arm)
  local bf = h.bf
  local function body ()
    for i, op in ipairs(tx.ops) do
      if arm and arm.op == i then bf:fail_after(arm.n, arm.how) end
      M.exec(h, op)
    end
    assert(bf:set_control_data(M.ctl(h, tx.t + 1)))
    return true
  end
  local mode = tx.mode
  if mode == "fn" then
    assert(bf:transaction(body))
  elseif mode == "fn_error" then
    local ok, err = pcall(bf.transaction, bf, function ()
      body()
      error(ABANDON)
    end)
    if err ~= ABANDON then error(err, 0) end
    assert(not ok)
  else
    bf:begin()
    body()
    if mode == "commit" then assert(bf:commit())
    elseif mode == "nosync" then assert(bf:commit({ sync = false }))
    else bf:rollback() end
  end
  assert(not bf:in_transaction(), "a transaction is still open")
  if M.commits(tx) then
    h.counter = tx.t + 1
    return true
  end
  -- no trace: the control data, and the sizes the structures count
  expect(bf:control_data() == M.ctl(h, h.counter), "the control data of "
         .. "a rolled-back transaction stayed")
  return false
end

---------------------------------------------------------------------------
-- The writer (a child process of the spec)
---------------------------------------------------------------------------

-- Copies a file, if it exists.
local function copy (from, to)
  local f = io.open(from, "rb")
  if not f then return end
  local s = f:read("a")
  f:close()
  f = assert(io.open(to, "wb"))
  f:write(s)
  f:close()
end

local function say (...)
  io.write(table.concat({ ... }, " "), "\n")
  io.flush()
end

-- The dead bytes of each leaf of the slotted tree whose meta block is
-- at meta, by offset (bptree.layout: read as the classifier does).
local function leaves_dead (bf, meta)
  local L = bptree.layout
  local off, height = bf:with(meta, 1, function (v)
    return v:u64(L.M_ROOT), v:u64(L.M_HEIGHT)
  end)
  for _ = 2, height do
    off = bf:with(off, 1, function (v) return v:u64(L.SI_C0) end)
  end
  local dead = {}
  while off ~= 0 do
    local d, nxt = bf:with(off, 1, function (v)
      return v:u32(L.SL_DEAD), v:u64(L.L_NEXT)
    end)
    dead[off], off = d, nxt
  end
  return dead
end

-- Runs operations 1..i-1 of tx on a fresh open of path in a transaction,
-- then operation i with fail_after(n) (error) armed; or, with n nil, all
-- of them, noting what each did. Rolls back and closes. Returns whether
-- the trap fired (n), or for each operation index "alloc" (it allocated
-- or freed blocks: a split, a merge, a free...), "compact" (a leaf of the
-- tree lost dead bytes, and no block changed hands) or nil. The file is
-- opened afresh each time: a structure's handle is not trusted after an
-- error in the middle of an operation (fmap.bptree's keeps the blocks it
-- reserved for a split, which the rollback gave back).
local function attempt (path, tx, i, n)
  local bf = assert(fmap.open(path))
  local h = M.handles(bf)
  local fired, tags = false, {}
  bf:begin()
  if n then
    for j = 1, i - 1 do M.exec(h, tx.ops[j]) end
    bf:fail_after(n)
    local ok, err = pcall(M.exec, h, tx.ops[i])
    bf:fail_after(nil)
    if not ok and tostring(err):find("MISMATCH", 1, true) then
      error(err, 0)
    end
    fired = not ok
  else
    local meta = h.tree:offset()
    for j, op in ipairs(tx.ops) do
      local tree = op[1]:sub(1, 1) == "t"
      local a, da = bf:stats(), tree and leaves_dead(bf, meta)
      M.exec(h, op)
      local b, db = bf:stats(), tree and leaves_dead(bf, meta)
      if a.used_blocks ~= b.used_blocks or a.free_blocks ~= b.free_blocks
         or a.size ~= b.size then
        tags[j] = "alloc"
      elseif tree then
        for off, d in pairs(da) do
          if db[off] and db[off] < d then tags[j] = "compact" end
        end
      end
    end
  end
  bf:rollback()
  h = nil
  collectgarbage()
  assert(bf:close())
  if n then return fired end
  return tags
end

-- The number of stores operation i of tx makes (at least 1), found with
-- the error trap: doubling, then bisection.
local function stores (path, tx, i)
  local lo, hi = 0, 1
  while attempt(path, tx, i, hi) do lo, hi = hi, hi * 2 end
  while hi - lo > 1 do
    local mid = (lo + hi) // 2
    if attempt(path, tx, i, mid) then lo = mid else hi = mid end
  end
  return math.max(lo, 1)
end

--- The writer. arg: path, seed, ro ("1": a read-only open first, its
-- state written to dump), dump, kill_at (-1, or j: kill at a store of
-- transaction start + j), kill_seed. Writes "RO c" (or "RO-REFUSED
-- msg"), "START c", "COMMIT c checkpoints journal_bytes" after each
-- commit returns, and "ARMED t i n stores kind tag" before the run that
-- a store kills: operation i of transaction t, a `kind` of operation
-- ("tadd", "lpop"...) tagged "alloc", "compact" or "plain" (`attempt`),
-- killed at its n-th store of `stores`.
function M.writer (arg)
  local path, seed = arg[1], math.tointeger(tonumber(arg[2]))
  local ro, dump = arg[3] == "1", arg[4]
  local kill_at, kill_seed = math.tointeger(tonumber(arg[5])),
                             math.tointeger(tonumber(arg[6]))
  if ro then
    local r, msg = fmap.open(path, { readonly = true })
    if r then
      local hr = M.handles(r)
      local s = M.read_state(hr)
      local f = assert(io.open(dump, "wb"))
      f:write(M.serialize(s))
      f:close()
      hr = nil
      collectgarbage()
      r:close()
      say("RO", s.counter)
    else
      say("RO-REFUSED", msg)
    end
  end
  local bf = assert(fmap.open(path))
  local h = M.handles(bf)
  local state = M.read_state(h)
  say("START", state.counter)
  local t = state.counter
  local target = kill_at >= 0 and t + kill_at or nil
  local target_end = target and target + 3
  while true do
    local tx = M.txn(state, seed, t)
    local arm
    if t == target then
      -- the attempts run on a copy of the file and its journal: what a
      -- crash now would leave, the last commit, which their first open
      -- recovers; this writer goes on with its journal as it is
      local probe = path .. ".probe"
      os.remove(probe .. "-wal")
      copy(path, probe)
      copy(path .. "-wal", probe .. "-wal")
      local r = M.rng(kill_seed, t)
      local tags = attempt(probe, tx)
      local tagged = {}
      for j = 1, #tx.ops do
        if tags[j] then tagged[#tagged + 1] = j end
      end
      if #tagged == 0 and t < target_end then
        target = t + 1   -- none splits, merges, frees...: the next one
      else
        local i
        if #tagged > 0 and r:float() < 0.8 then
          i = tagged[r:int(1, #tagged)]
        else
          i = r:int(1, #tx.ops)
        end
        local s = stores(probe, tx, i)
        arm = { op = i, n = r:int(1, s), how = "kill" }
        say("ARMED", t, i, arm.n, s, tx.ops[i][1], tags[i] or "plain")
      end
      os.remove(probe)
    end
    if M.run(h, tx, arm) then
      local st = bf:stats()
      say("COMMIT", t + 1, st.checkpoints, st.journal_bytes)
    elseif t % 8 == 0 then
      -- what the file shows after a rollback is the model's state
      local d = M.diff(state, (M.read_state(h)))
      expect(not d, "after the rollback of transaction %d: %s", t, d)
    end
    t = t + 1
  end
end

return M
