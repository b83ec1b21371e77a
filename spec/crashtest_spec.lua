--- spec/crashtest_spec.lua: fmap.crashtest, bf:record and
-- scripts/crashtest.lua. fmap's structures used without transactions are
-- found unsafe, at the store that breaks them (the B+tree's leaf split,
-- the list's pop, the guide's hash table); with each operation in a
-- transaction, every state of more than 10,000 passes.
local crashtest = require "fmap.crashtest"
local bptree = require "fmap.bptree"
local mmlist = require "fmap.mmlist"
local ht = require "fmap.examples.hashtable"
local classify = require "fmap.classify"
-- Loading the example registered its classifier; other spec files must
-- not meet it.
classify.unregister("hashtable")

local function key (i) return string.pack(">I8", i) end

-- The first and last lines of the function of file whose first line
-- matches pattern: to its first "end" at the start of a line.
local function lines_of (file, pattern)
  local n, first = 0, nil
  for line in io.lines(file) do
    n = n + 1
    if not first and line:match(pattern) then first = n
    elseif first and line == "end" then return first, n end
  end
  error("no " .. pattern .. " in " .. file)
end

-- The frame of where (a traceback) just below the method that stored:
-- its file, line and function's name.
local function store_frame (where)
  local second = where:match("^[^\n]*\n([^\n]*)")
  local file, line, name = second:match("^(.-):(%d+): in %a+ '(.-)'$")
  return file, tonumber(line), name
end

-- How many keys fill one leaf of a tree of 8-byte keys and values.
local function leaf_capacity ()
  local bf <close> = fmap.anonymous()
  local t = bptree.new(bf, 8, 8)
  local used = bf:stats().used_blocks
  for i = 1, 10000 do
    t:add(key(i), key(i))
    if bf:stats().used_blocks ~= used then return i - 1 end
  end
end

local function verify_tree (bf)
  local t, why = bptree.open(bf)
  if not t then return nil, why end
  return t:verify()
end

local function verify_list (bf)
  local off = bf:control_data():match("^list@(%d+)$")
  local l, why = mmlist.open(bf, tonumber(off))
  if not l then return nil, why end
  return l:verify()
end

local function verify_table (bf)
  local h, why = ht.open(bf)
  if not h then return nil, why end
  return h:verify()
end

-- A list of n items, its offset in the control data.
local function new_list (bf, n)
  local l = assert(mmlist.new(bf))
  bf:set_control_data("list@" .. l:offset())
  for i = 1, n do l:append(("item %d "):format(i):rep(i % 7 + 1)) end
end

local function open_list (bf)
  return assert(mmlist.open(bf, tonumber(
    bf:control_data():match("^list@(%d+)$"))))
end

local function new_table (bf)
  local h = assert(ht.create(bf, 4))
  for i = 1, 40 do h:put("k" .. i, ("v"):rep(100)) end
end

describe("fmap.crashtest", function()
  setup(function() classify.register("hashtable", ht.classifier) end)
  teardown(function() classify.unregister("hashtable") end)

  describe("without transactions", function()
    it("finds the B+tree unsafe in its leaf split, at the store that "
       .. "breaks it", function()
      local cap = leaf_capacity()
      local report = crashtest.run{
        setup = function (bf)              -- one full leaf
          local t = assert(bptree.new(bf, 8, 8))
          for i = 1, cap do t:add(key(2 * i), key(i)) end
        end,
        run = function (bf)                -- one add that splits it
          assert(bptree.open(bf)):add(key(7), key(7))
        end,
        check = verify_tree,
      }
      assert.is_false(report.ok)
      assert.is_true(report.failed > 0)
      assert.equal(0, report.unopenable)
      local f = report.failures[1]
      local file, line, name = store_frame(f.event.where)
      local first, last = lines_of("lua/fmap/bptree.lua",
                                   "^local function split_leaf ")
      assert.matches("bptree%.lua$", file)
      assert.equal("split_leaf", name)
      assert.is_true(line > first and line < last, f.event.where)
      assert.matches("in method 'add'", f.event.where)
      assert.matches("a crash right after event %d+, write to offset %d+",
                     report:summary())
      assert.matches("bptree%.lua:" .. line .. ": in upvalue 'split_leaf'",
                     report:summary())
    end)

    it("finds the list's pop unsafe where it clears the entry before "
       .. "the count", function()
      local report = crashtest.run{
        setup = function (bf) new_list(bf, 5) end,
        run = function (bf) assert(open_list(bf):pop()) end,
        check = verify_list,
      }
      assert.is_false(report.ok)
      local f = report.failures[1]
      local file, line, name = store_frame(f.event.where)
      local first, last = lines_of("lua/fmap/mmlist.lua",
                                   "^function List:pop ")
      assert.matches("mmlist%.lua$", file)
      assert.equal("pop", name)
      assert.is_true(line > first and line < last, f.event.where)
      assert.matches("^%[C%]: in %a+ 'set_u64'\n", f.event.where)
      -- the state before run passes, and so does the one after pop
      assert.equal(1, f.event.index)
      assert.equal(2, f.state)
    end)

    it("finds the guide's hash table unsafe: a put counted after its "
       .. "entry", function()
      local report = crashtest.run{
        setup = new_table,
        run = function (bf)
          local h = assert(ht.open(bf))
          for i = 1, 30 do h:put("n" .. i, ("w"):rep(100)) end
          h:remove("k1")
        end,
        check = verify_table,
      }
      assert.is_false(report.ok)
      local f = report.failures[1]
      assert.equal("the directory counts 40 entries, the buckets hold 41",
                   f.message)
      local _, _, name = store_frame(f.event.where)
      assert.equal("append", name)
      assert.matches("in method 'put'", f.event.where)
    end)
  end)

  describe("with each operation in a transaction", function()
    local total = 0

    it("finds every state of B+tree adds and removes sound", function()
      local keys, n = {}, 0
      local report = crashtest.run{
        setup = function (bf)
          local t = assert(bptree.new(bf, 8, 8))
          for i = 1, 400 do
            t:add(key(i * 7), key(i))
            keys[i * 7] = true
          end
        end,
        run = function (bf)
          local t = assert(bptree.open(bf))
          for _ = 1, 3600 do
            local k = math.random(1, 4000)
            bf:transaction(function ()
              if keys[k] then t:remove(key(k)) else t:add(key(k), key(k)) end
            end)
            keys[k] = not keys[k] or nil
            n = n + 1
          end
        end,
        check = verify_tree,
      }
      assert.equal(0, report.failed + report.unopenable, report:summary())
      assert.is_true(report.ok)
      assert.equal(n + 1, report.states)
      total = total + report.states
    end)

    it("finds every state of list appends, pops, sets and swaps sound",
       function()
      local report = crashtest.run{
        setup = function (bf) new_list(bf, 20) end,
        run = function (bf)
          local l = open_list(bf)
          for i = 1, 3300 do
            bf:transaction(function ()
              local r, size = math.random(4), l:size()
              if r == 1 or size < 2 then l:append(("x"):rep(i % 300))
              elseif r == 2 then l:pop()
              elseif r == 3 then l:set(math.random(size), ("y"):rep(i % 90))
              else l:swap_delete(math.random(size)) end
            end)
          end
        end,
        check = verify_list,
      }
      assert.is_true(report.ok, report:summary())
      assert.equal(3301, report.states)
      total = total + report.states
    end)

    it("finds every state of hash table puts and removes sound",
       function()
      local report = crashtest.run{
        setup = new_table,
        run = function (bf)
          local h = assert(ht.open(bf))
          for i = 1, 3300 do
            local k = "k" .. math.random(1, 80)
            bf:transaction(function ()
              if math.random(3) == 1 then h:remove(k)
              else h:put(k, ("w"):rep(math.random(0, 400))) end
            end)
          end
        end,
        check = verify_table,
      }
      assert.is_true(report.ok, report:summary())
      assert.is_true(report.states > 3000)
      total = total + report.states
    end)

    it("has tried more than 10,000 states in all", function()
      assert.is_true(total > 10000, total .. " states")
    end)

    it("finds the guide's hash table sound: its exported test", function()
      local report = crashtest(ht.crashtest)
      assert.is_true(report.ok, report:summary())
      assert.equal(61, report.states)
      assert.matches("every state passed", report:summary())
    end)
  end)

  describe("in power mode", function()
    -- Puts with a flush after each fifth, in transactions or not.
    local function test (transactions, seed, limit)
      return {
        mode = "power", seed = seed, limit = limit, setup = new_table,
        run = function (bf)
          local h = assert(ht.open(bf))
          for i = 1, 30 do
            local function put () h:put("n" .. i, ("w"):rep(100)) end
            if transactions then bf:transaction(put)
            else
              put()
              if i % 5 == 0 then bf:flush() end
            end
          end
        end,
        check = verify_table,
      }
    end

    it("finds the pages a power loss keeps that break the table",
       function()
      local report = crashtest.run(test(false, 11))
      assert.is_false(report.ok)
      assert.equal(6, report.points)
      assert.equal(11, report.seed)
      local f = report.failures[1]
      assert.is_true(#f.kept > 0 and #f.lost > 0)
      assert.equal("flush", f.point.kind)
      for _, l in ipairs(f.lost) do
        assert.equal(0, l.offset % 4096)
        assert.equal("write", l.event.kind)
      end
      assert.matches("^power%-loss crash test %(seed 11, at most 256 states "
                     .. "a durability point%)", report:summary())
      assert.matches("a power loss at the flush after event %d+, keeping "
                     .. "%d+ pages? and losing %d+ pages?", report:summary())
      assert.matches("lost page at offset %d+, last written by event %d+",
                     report:summary())
    end)

    it("draws the same states from the same seed", function()
      local a = crashtest.run(test(false, 5, 6))
      local b = crashtest.run(test(false, 5, 6))
      assert.equal(a.states, b.states)
      assert.equal(a.failed, b.failed)
      assert.same(a.failures[1].kept[1].offset, b.failures[1].kept[1].offset)
      assert.is_true(a.states <= 1 + 6 * a.points)
    end)

    it("finds every state sound when each put is a transaction", function()
      local report = crashtest.run(test(true, 1))
      assert.is_true(report.ok, report:summary())
      assert.equal(30, report.points)
      assert.equal(31, report.states)
    end)
  end)

  describe("states", function()
    it("tries the state setup left, and every commit of a transaction",
       function()
      local seen = {}
      local report = crashtest.run{
        setup = function (bf) bf:allocate() end,
        run = function (bf)
          bf:with(4096, function (v)
            v:set_u32(0, 1)                           -- a state
            bf:transaction(function ()                -- one state
              v:set_u32(0, 2)
              v:set_u32(4, 2)
            end)
            pcall(bf.transaction, bf, function ()     -- none: rolled back
              v:set_u32(0, 3)
              error("no")
            end)
            v:set_u32(8, 4)                           -- a state
            bf:flush()                                -- none: no change
          end)
        end,
        check = function (bf)
          seen[#seen + 1] = bf:with(4096, function (v)
            return string.format("%d %d %d", v:u32(0), v:u32(4), v:u32(8))
          end)
          return true
        end,
      }
      assert.same({ "0 0 0", "1 0 0", "2 2 0", "2 2 4" }, seen)
      assert.equal(4, report.states)
      assert.is_true(report.ok)
    end)

    it("opens each state read-only, with the file's size", function()
      local sizes = {}
      crashtest.run{
        run = function (bf)
          for _ = 1, 40 do bf:allocate() end
        end,
        check = function (bf)
          assert(bf:stats().readonly)
          sizes[#sizes + 1] = bf:size() >= bf:stats().used_blocks * 4096
          return true
        end,
      }
      assert.equal(41, #sizes)
      for _, ok in ipairs(sizes) do assert.is_true(ok) end
    end)

    it("samples limit crash points from the seed", function()
      local report = crashtest.run{
        seed = 3, limit = 10,
        run = function (bf)
          local off = bf:allocate()
          bf:with(off, function (v)
            for i = 0, 99 do v:set_u8(i, 1) end
          end)
        end,
        check = function () return true end,
      }
      assert.equal(10, report.states)
      assert.equal(102, report.possible)
      assert.matches("^process crash test %(10 of 102 crash points, seed 3%)",
                     report:summary())
    end)
  end)

  describe("checks", function()
    local function one_store (check)
      return crashtest.run{
        setup = function (bf) bf:allocate() end,
        run = function (bf)
          bf:with(4096, function (v) v:set_u8(0, 1) end)
        end,
        check = check,
      }
    end

    it("count a check that raises as a failure, with its message",
       function()
      local report = one_store(function (bf)
        return bf:with(4096, function (v)
          if v:u8(0) == 1 then error("one is too many", 0) end
          return true
        end)
      end)
      assert.equal(1, report.failed)
      assert.equal("one is too many", report.failures[1].message)
      assert.equal("check", report.failures[1].kind)
      assert.matches("check failed: one is too many", report:summary())
    end)

    it("take false or nil and a message as a failure", function()
      local report = one_store(function () return false end)
      assert.equal(2, report.failed)
      assert.equal("check returned false", report.failures[1].message)
      assert.matches("before run", report:summary())
      report = one_store(function () return nil, "not sound" end)
      assert.equal("not sound", report.failures[2].message)
    end)
  end)

  describe(".replay()", function()
    local path
    before_each(function() path = h.tmpname() end)
    after_each(function() os.remove(path) end)

    local function unsafe ()
      return crashtest.run{
        setup = new_table,
        run = function (bf)
          local h = assert(ht.open(bf))
          for i = 1, 5 do h:put("n" .. i, "w") end
        end,
        check = verify_table,
      }
    end

    it("writes a failure's state, which fails its check again and the "
       .. "tools read", function()
      local report = unsafe()
      assert.is_true(report:replay(path))
      local bf <close> = assert(fmap.open(path, { readonly = true }))
      assert.same({ nil, report.failures[1].message },
                  { verify_table(bf) })
      local out, status = h.run(string.format(
        "%s scripts/inspect.lua --verify -r fmap.examples.hashtable %s 2>&1",
        h.bin(), path))
      assert.equal(1, status, out)
      assert.matches("verify hashtable@4096: FAILED: "
                     .. report.failures[1].message, out, 1, true)
      assert.is_true(crashtest.replay(report, path, 2))
    end)

    it("writes the state of a power loss", function()
      local report = crashtest.run{
        mode = "power", seed = 1, setup = new_table,
        run = function (bf)
          local h = assert(ht.open(bf))
          for i = 1, 5 do h:put("n" .. i, "w") end
        end,
        check = verify_table,
      }
      assert.is_true(report:replay(path))
      local bf <close> = assert(fmap.open(path, { readonly = true }))
      assert.same({ nil, report.failures[1].message },
                  { verify_table(bf) })
    end)

    it("rejects a failure the report does not have", function()
      local report = unsafe()
      local n = #report.failures
      assert.equal("bad argument #2 to 'replay' (the report has no failure "
                   .. (n + 1) .. " (it keeps " .. n .. "))",
                   h.errmsg(function() report:replay(path, n + 1) end))
      assert.equal("bad argument #3 to 'replay' (the report has no failure "
                   .. "0 (it keeps " .. n .. "))",
                   h.errmsg(function() crashtest.replay(report, path, 0) end))
      assert.equal("bad argument #1 to 'replay' (string expected, got nil)",
                   h.errmsg(function() report:replay() end))
      assert.equal("bad argument #1 to 'replay' (crash test report "
                   .. "expected, got table)",
                   h.errmsg(function() crashtest.replay({}, path) end))
    end)

    it("returns nil, message, errno when the file cannot be made",
       function()
      local report = unsafe()
      assert.same({ nil, "/nonexistent/state.fmap: No such file or "
                    .. "directory", 2 },
                  { report:replay("/nonexistent/state.fmap") })
    end)
  end)

  describe("misuse", function()
    local function ok () return true end

    it("rejects what is not a test", function()
      assert.equal("bad argument #1 to 'crashtest' (table expected, got nil)",
                   h.errmsg(function() crashtest.run() end))
      assert.equal("bad argument #1 to 'crashtest' (field 'run' must be a "
                   .. "function, got nil)",
                   h.errmsg(function() crashtest{ check = ok } end))
      assert.equal("bad argument #1 to 'crashtest' (field 'check' must be a "
                   .. "function, got string)",
                   h.errmsg(function()
                     crashtest{ run = ok, check = "verify" }
                   end))
      assert.equal("bad argument #1 to 'crashtest' (unknown field 'chek'; "
                   .. "the fields are block_size, check, limit, mode, run, "
                   .. "seed and setup)",
                   h.errmsg(function()
                     crashtest{ run = ok, chek = ok }
                   end))
    end)

    it("rejects a bad mode, limit, seed or block size", function()
      assert.equal("bad argument #1 to 'crashtest' (field 'mode' must be "
                   .. "\"process\" or \"power\", got \"disk\")",
                   h.errmsg(function()
                     crashtest{ run = ok, check = ok, mode = "disk" }
                   end))
      assert.equal("bad argument #1 to 'crashtest' (field 'limit' must be "
                   .. "positive, got 0)",
                   h.errmsg(function()
                     crashtest{ run = ok, check = ok, limit = 0 }
                   end))
      assert.equal("bad argument #1 to 'crashtest' (field 'limit' must be "
                   .. "an integer, got a float)",
                   h.errmsg(function()
                     crashtest{ run = ok, check = ok, limit = 2.5 }
                   end))
      assert.equal("bad argument #1 to 'crashtest' (field 'seed' must be "
                   .. "an integer, got string)",
                   h.errmsg(function()
                     crashtest{ run = ok, check = ok, seed = "7" }
                   end))
      for _, bs in ipairs { 1000, 0, -4096, 4096 + 512, (1 << 30) + 4096 } do
        assert.equal("bad argument #1 to 'crashtest' (field 'block_size' "
                     .. "must be a multiple of 4096 up to 2^30, got " .. bs
                     .. ")", h.errmsg(function()
                       crashtest{ run = ok, check = ok, block_size = bs }
                     end))
      end
    end)

    it("names the caller's line", function()
      local line
      local ok2, err = pcall(function ()
        line = h.line() + 1
        crashtest{ run = ok }
      end)
      assert.is_false(ok2)
      assert.matches("^spec/crashtest_spec%.lua:" .. line .. ": ", err)
    end)

    it("raises when setup or run raises, or run closes the file",
       function()
      assert.equal("crashtest: setup raised an error: no setup",
                   h.errmsg(function()
                     crashtest{ setup = function () error("no setup", 0) end,
                                run = ok, check = ok }
                   end))
      assert.equal("crashtest: run raised an error: no run",
                   h.errmsg(function()
                     crashtest{ run = function () error("no run", 0) end,
                                check = ok }
                   end))
      assert.equal("crashtest: run closed the BlockFile (leave it open: "
                   .. "crashtest closes it)",
                   h.errmsg(function()
                     crashtest{ run = function (bf) bf:close() end,
                                check = ok }
                   end))
    end)

    it("raises when setup or run leave the file in a state to refuse",
       function()
      assert.equal("crashtest: setup closed the BlockFile (leave it open: "
                   .. "crashtest closes it)",
                   h.errmsg(function()
                     crashtest{ setup = function (bf) bf:close() end,
                                run = ok, check = ok }
                   end))
      assert.equal("crashtest: setup left a transaction open",
                   h.errmsg(function()
                     crashtest{ setup = function (bf) bf:begin() end,
                                run = ok, check = ok }
                   end))
      local kept
      assert.matches("^crashtest: setup left a view live: cannot close a "
                     .. "BlockFile with 1 live view: offset 4096",
                     h.errmsg(function()
                       crashtest{
                         setup = function (bf)
                           kept = bf:get(bf:allocate())
                         end,
                         run = ok, check = ok,
                       }
                     end))
      assert.matches("^crashtest: run left a view live: cannot close a "
                     .. "BlockFile with 1 live view: offset 4096",
                     h.errmsg(function()
                       crashtest{
                         setup = function (bf) bf:allocate() end,
                         run = function (bf) kept = bf:get(4096) end,
                         check = ok,
                       }
                     end))
      kept = nil
    end)

    it("ends the views check keeps, with the state", function()
      local kept
      local report = crashtest{
        setup = function (bf) bf:allocate() end, run = ok,
        check = function (bf) kept = bf:get(4096) return true end,
      }
      assert.is_true(report.ok)
      assert.matches("closed", h.errmsg(function() kept:u8(0) end))
    end)
  end)
end)

describe("bf:record()", function()
  local path, bf
  h.fixture(function (p, b) if p then path, bf = p, b end return bf end)

  it("hands over each change once complete: its bytes, commits and "
     .. "transactions", function()
    local off = bf:allocate()
    bf:flush()
    local evs = {}
    bf:record(function (ev) evs[#evs + 1] = ev end)
    local v <close> = bf:get(off)
    v:set_u32(8, 0x0102)                    -- 1
    bf:allocate()                           -- 2
    bf:flush()                              -- 3
    bf:transaction(function ()              -- 4 begin
      v:write(100, "hey")                   -- 5
    end)                                    -- 6 commit
    bf:begin()                              -- 7
    v:set_u8(0, 9)                          -- 8
    bf:rollback()                           -- 9
    bf:record()
    local kinds = {}
    for i, ev in ipairs(evs) do kinds[i] = ev.kind end
    assert.same({ "write", "allocate", "flush", "begin", "write", "commit",
                  "begin", "write", "rollback" }, kinds)
    assert.same({ off + 8, "\0\0", "\2\1" }, evs[1].changes)
    assert.equal(off + 8, evs[1].offset)
    assert.equal(4, evs[1].length)
    assert.matches("^stack traceback:\n\t%[C%]: in method 'set_u32'\n\t"
                   .. "spec/crashtest_spec%.lua:%d+: in ", evs[1].traceback)
    assert.is_true(#evs[2].changes > 0)     -- the header, in block 0
    assert.equal(0, evs[2].changes[1] // 4096)
    assert.is_true(evs[3].commit)
    assert.same({}, evs[3].changes)
    assert.is_true(evs[4].transaction and evs[5].transaction)
    assert.is_true(evs[6].commit)
    assert.is_false(evs[6].transaction)
    assert.same({ off + 100, "\0\0\0", "hey" }, evs[5].changes)
    assert.same({ off, "\0", "\9" }, evs[8].changes)
    assert.same({ off, "\9", "\0" }, evs[9].changes)   -- undone
    assert.is_false(evs[9].transaction or evs[9].commit)
    assert.equal(bf:size(), evs[9].size)
  end)

  it("sees the stores of views that stored before it started", function()
    local v <close> = bf:get(bf:allocate())
    v:set_u32(0, 1)
    v:set_u32(0, 2)                          -- the fast path, before
    local n = 0
    bf:record(function () n = n + 1 end)
    v:set_u32(0, 3)
    v:set_u32(0, 4)
    bf:record()
    assert.equal(2, n)
  end)

  it("rejects a second recording and a non-function", function()
    bf:record(function () end)
    assert.equal("record: the BlockFile is being recorded already "
                 .. "(bf:record() stops it)",
                 h.errmsg(function() bf:record(print) end))
    bf:record()
    assert.equal("bad argument #1 to 'record' (function expected, got "
                 .. "number)", h.errmsg(function() bf:record(42) end))
    bf:record()                              -- none: nothing to stop
  end)

  it("ends when the recorder raises or stores, and says so at the stop",
     function()
    local v <close> = bf:get(bf:allocate())
    bf:record(function () error("recorder broke", 0) end)
    v:set_u8(0, 1)
    v:set_u8(1, 1)                           -- the first one's delivery
    v:set_u8(2, 1)                           -- not recorded
    assert.equal(1, v:u8(2))
    assert.equal("record: the recorder failed: recorder broke",
                 h.errmsg(function() bf:record() end))
    bf:record(function () v:set_u8(3, 7) end)
    v:set_u8(0, 2)
    v:set_u8(0, 3)
    assert.equal(0, v:u8(3))                 -- the recorder's store: refused
    assert.equal(3, v:u8(0))
    assert.equal("record: the recorder changed the BlockFile it records",
                 h.errmsg(function() bf:record() end))
  end)

  it("refuses the change under way when the recorder closes the file",
     function()
    local v = bf:get(bf:allocate())
    -- close() refuses while v lives; as a <close> variable on an error,
    -- a BlockFile closes anyway
    local close = debug.getmetatable(bf).__close
    bf:record(function () close(bf, "an error") end)
    v:set_u8(0, 1)
    assert.equal("record: the recorder closed the BlockFile it records",
                 h.errmsg(function() v:set_u8(0, 2) end))
    assert.equal("attempt to use a closed BlockFile",
                 h.errmsg(function() bf:allocate() end))
    bf:record()
  end)

  it("stops on a BlockFile closed while recording", function()
    bf:record(function () end)
    bf:allocate()
    bf:close()
    bf:record()
    assert.equal("attempt to use a closed BlockFile",
                 h.errmsg(function() bf:record(print) end))
  end)
end)

describe("scripts/crashtest.lua", function()
  local module
  before_each(function()
    module = h.tmpname(".lua")
    h.writefile(module, [[
local ht = require "fmap.examples.hashtable"
return { crashtest = {
  setup = ht.crashtest.setup, check = ht.crashtest.check,
  run = function (bf)
    local h = assert(ht.open(bf))
    for i = 1, 10 do h:put("n" .. i, "w") end
  end,
} }
]])
  end)
  after_each(function() os.remove(module) end)

  local function crashtest_sh (args)
    return h.run(string.format("%s scripts/crashtest.lua %s 2>&1", h.bin(),
                               args))
  end

  it("runs a module's test and exits 0 when every state passes",
     function()
    local out, status = crashtest_sh("fmap.examples.hashtable")
    assert.equal(0, status, out)
    assert.equal("process crash test: 61 states tried, 0 failed the check, "
                 .. "0 failed to open\n", out:match("^[^\n]*\n"))
    assert.matches("every state passed", out)
  end)

  it("exits 1 and names the failing store; --replay writes its state",
     function()
    local state = h.tmpname()
    local out, status = crashtest_sh("--mode power --seed 4 --limit 20 "
                                     .. "--replay " .. state .. " " .. module)
    assert.equal(1, status, out)
    assert.matches("^power%-loss crash test %(seed 4, at most 20 states a "
                   .. "durability point%)", out)
    assert.matches("in upvalue 'append'", out)
    assert.matches("the state of the first failure is in " .. state, out,
                   1, true)
    local bf <close> = assert(fmap.open(state, { readonly = true }))
    assert.is_nil((verify_table(bf)))
    os.remove(state)
  end)

  it("says what is wrong with its arguments", function()
    local out, status = crashtest_sh("--help")
    assert.equal(0, status)
    assert.matches("^usage: fmap scripts/crashtest%.lua", out)
    assert.matches("Exit status:", out)
    out, status = crashtest_sh("--mode disk " .. module)
    assert.equal(2, status)
    assert.matches("^crashtest: %-%-mode: \"disk\" is not process or power\n",
                   out)
    out, status = crashtest_sh("")
    assert.equal(2, status)
    assert.matches("^crashtest: no MODULE\n", out)
    out, status = crashtest_sh("fmap.codec")
    assert.equal(1, status)
    assert.matches("^crashtest: fmap.codec gives no crash test", out)
  end)
end)

describe("bench/bench_crashtest.lua", function()
  it("times the states of a small run", function()
    local out, status = h.run(h.bin() .. " bench/bench_crashtest.lua "
                              .. "--adds 100 --rounds 1 2>&1")
    assert.equal(0, status, out)
    assert.matches("^fmap%.crashtest on a B%+tree of 40000 entries %(%d+ "
                   .. "blocks%), 100 adds, best of 1 rounds\n", out)
    assert.matches("\nprocess    201 states: %d+ states/s %(check: true%)",
                   out)
    assert.matches("\npower      %d+ states at 1 flushes: ", out)
  end)

  it("says what is wrong with its arguments", function()
    local out, status = h.run(h.bin() .. " bench/bench_crashtest.lua "
                              .. "--adds 0 2>&1")
    assert.equal(2, status)
    assert.matches("^bench_crashtest: %-%-adds: \"0\" is not a positive "
                   .. "integer\n", out)
  end)
end)
