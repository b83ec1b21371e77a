-- Every misuse error of the structures written in Lua names the line of the
-- script that made the mistake, as the engine's own errors do: not a line
-- of the library. (The other specs strip the position to compare the
-- message; this one compares only the position.)
local bptree = require "fmap.bptree"
local varchar = require "fmap.varchar"
local mmlist = require "fmap.mmlist"
local codec = require "fmap.codec"
local dot = require "fmap.dot"

local HERE = debug.getinfo(1, "S").short_src

-- Asserts that each call raises, at a line of this file.
local function raised_here (calls)
  for name, f in pairs(calls) do
    local ok, err = pcall(f)
    assert(not ok, name .. ": expected an error, but the call succeeded")
    err = tostring(err)
    assert(err:sub(1, #HERE + 1) == HERE .. ":",
           name .. ": the error names another place: " .. err)
  end
end

describe("errors of misuse", function()
  local path, bf
  h.fixture(function (p, b) if p then path, bf = p, b end return bf end)

  it("of the B+tree name the caller's line", function()
    local t = bptree.new(bf, 4, 2)
    local v = bptree.new_at(bf, nil, -1, -1)
    raised_here {
      new_sizes = function () bptree.new_at(bf, nil, 0, 2) end,
      new_bf = function () bptree.new("x", 4, 2) end,
      new_used = function () bptree.new(bf, 4, 2) end,
      new_at_offset = function () bptree.new_at(bf, 5, 4, 2) end,
      open_at_offset = function () bptree.open_at(bf, 4096 * 99) end,
      open_at_type = function () bptree.open_at(bf, "x") end,
      open_bf = function () bptree.open(5) end,
      open_magic = function ()             -- the control data names no tree
        local f <close> = fmap.anonymous()
        f:set_control_data("bptree@" .. f:allocate())
        bptree.open(f)
      end,
      open_at_magic = function () bptree.open_at(bf, bf:allocate()) end,
      add_key = function () t:add("abc", "ab") end,
      add_type = function () t:add(1234, "ab") end,
      add_value = function () t:add("abcd", "abc") end,
      add_nil = function () v:add("k") end,
      get_key = function () t:get("abcde") end,
      has_key = function () t:has({}) end,
      count_key = function () t:count() end,
      find_key = function () t:find(true) end,
      range_from = function () t:range(1, "abcd") end,
      range_to = function () t:range("abcd", "a") end,
      put_key = function () t:put("abc", "ab") end,
      put_value = function () t:put("abcd", 5) end,
      put_several = function ()           -- a key with two entries
        t:add("dupe", "ab")
        t:add("dupe", "ab")
        t:put("dupe", "cd")
      end,
      put_several_slotted = function ()
        v:add("dupe", "ab")
        v:add("dupe", "ab")
        v:put("dupe", "cd")
      end,
      range_backward = function () t:range("abcd", "abce", true) end,
      seek_key = function () t:seek("a") end,
      seek_backward = function () t:seek("abcd", 1) end,
      prefix_type = function () t:prefix(5) end,
      prefix_long = function () t:prefix("abcde") end,
      self_first = function () t.first() end,
      remove_key = function () t:remove(5) end,
      remove_where = function () t:remove("abcd", 5) end,
      dot_opts = function () t:dot({ depth = -1 }) end,
      self_get = function () t.get("abcd") end,   -- '.' for ':'
      self_add = function () t.add("abcd", "ab") end,
      discarded = function ()
        local u = bptree.new_at(bf, nil, 4, 2)
        local meta = u:offset()
        bptree.new_at(bf, meta, 4, 2)   -- retires u
        u:get("abcd")
      end,
    }
    -- a read-only file refuses changes
    local off = t:offset()
    bf:set_control_data("")
    collectgarbage()
    bf:close()
    bf = assert(fmap.open(path, { readonly = true }))
    local ro = bptree.open_at(bf, off)
    raised_here {
      add_ro = function () ro:add("abcd", "ab") end,
      put_ro = function () ro:put("abcd", "ab") end,
      remove_ro = function () ro:remove("abcd") end,
      new_ro = function () bptree.new_at(bf, nil, 4, 2) end,
    }
  end)

  it("of the blob store name the caller's line", function()
    local s = varchar.new(bf)
    local x = s:put("hello")
    raised_here {
      new_bf = function () varchar.new({}) end,
      open_offset = function () varchar.open(bf, 5) end,
      open_type = function () varchar.open(bf, "x") end,
      put_type = function () s:put(5) end,
      alloc_len = function () s:alloc(-1) end,
      get_offset = function () s:get(-5) end,
      get_type = function () s:get("x") end,
      size_offset = function () s:size(x + 1) end,
      refs_offset = function () s:refs(x + 1) end,
      with_fn = function () s:with(x, 5) end,
      free_offset = function () s:free(x + 3) end,
      ref_offset = function () s:ref(x + 1) end,
      deref_offset = function () s:deref(x + 1) end,
      replace_type = function () s:replace(x, 5) end,
      self_get = function () s.get(x) end,        -- '.' for ':'
      self_put = function () s.put("x") end,
      self_verify = function () s.verify() end,
    }
  end)

  it("of the list name the caller's line", function()
    local l = mmlist.new(bf)
    l:append("a")
    raised_here {
      new_bf = function () mmlist.new(5) end,
      open_offset = function () mmlist.open(bf, 5) end,
      append_type = function () l:append(5) end,
      get_index = function () l:get(5) end,
      get_type = function () l:get("x") end,
      set_index = function () l:set(0, "x") end,
      set_type = function () l:set(1, 5) end,
      swap_index = function () l:swap(1, 9) end,
      swap_delete_index = function () l:swap_delete(2) end,
      self_get = function () l.get(1) end,        -- '.' for ':'
      self_append = function () l.append("x") end,
      self_pop = function () l.pop() end,
      self_iterate = function () l.iterate() end,
    }
  end)

  it("of the codecs and the pictures name the caller's line", function()
    local t = bptree.new(bf, 4, 2)
    raised_here {
      encode_count = function () codec.encode("u4 s", 1) end,
      encode_type = function () codec.encode("u4", "x") end,
      encode_format = function () codec.encode("q", 1) end,
      decode_short = function () codec.decode("u4", "ab") end,
      decode_type = function () codec.decode("u4", 5) end,
      uint_size = function () codec.uint(1, 9) end,
      int_type = function () codec.int("x") end,
      double_nan = function () codec.double(0 / 0) end,
      size_format = function () codec.size("u9") end,
      graph_spec = function () dot.graph { root = 1 } end,
      graph_opts = function () dot.graph({ root = 1, node = print }, 5) end,
      tree_self = function () dot.tree(5) end,
      tree_opts = function () dot.tree(t, { keys = 1.5 }) end,
      at_opts = function () dot.at(bf, t:offset(), { children = -1 }) end,
      render_text = function () dot.render(5, "x.svg") end,
      scan_bf = function () require("fmap.classify").scan("x") end,
      stats_bf = function () require("fmap.classify").stats("x") end,
      audit_bf = function () require("fmap.audit")("x") end,
      svg_bf = function () require("fmap.blockmap").svg("x") end,
      png_bf = function () require("fmap.blockmap").png(5) end,
      png_opts = function ()
        require("fmap.blockmap").png(bf, { cols = 0 })
      end,
      svg_opts = function ()
        require("fmap.blockmap").svg(bf, { cell = 99 })
      end,
      write_opts = function ()
        require("fmap.blockmap").write(bf, "/nonexistent/x.png", { cols = -1 })
      end,
      write_bf = function ()
        require("fmap.blockmap").write(5, "/nonexistent/x.png")
      end,
      layout_opts = function ()
        local m = require("fmap.blockmap")
        m.layout(require("fmap.classify").scan(bf), { cols = 1.5 })
      end,
    }
  end)
end)

describe("errors after the BlockFile closed", function()
  it("name the caller's line, for the blob store and the list", function()
    local bf = fmap.anonymous()
    local s = varchar.new(bf)
    local l = mmlist.new(bf)
    local x = s:put("hello")
    l:append("a")
    local y = s:put("gone")
    s:free(y)
    raised_here { replace_freed = function () s:replace(y, "zz") end }
    collectgarbage()
    bf:close()
    raised_here {
      get = function () s:get(x) end,
      put = function () s:put("x") end,
      with = function () s:with(x, print) end,
      list_get = function () l:get(1) end,
      list_len = function () return #l end,
      list_iterate = function () for _ in l:iterate() do end end,
      audit = function () require("fmap.audit")(bf) end,
      svg = function () require("fmap.blockmap").svg(bf) end,
    }
    -- the tools say the file is closed, not that it is no BlockFile
    assert.equal("bad argument #1 to 'audit' (the BlockFile is closed)",
                 h.errmsg(function () require("fmap.audit")(bf) end))
    assert.equal("bad argument #1 to 'svg' (the BlockFile is closed)",
                 h.errmsg(function () require("fmap.blockmap").svg(bf) end))
    assert.equal("bad argument #1 to 'scan' (the BlockFile is closed)",
                 h.errmsg(function () require("fmap.classify").scan(bf) end))
  end)
end)

describe("a method called with '.' for ':'", function()
  it("says so, for each structure", function()
    local bf <close> = fmap.anonymous()
    local s = varchar.new(bf)
    local l = mmlist.new(bf)
    local t = bptree.new(bf, 4, 2)
    assert.equal("bad argument #0 to 'get' (varchar expected, got number; "
                 .. "call it with ':')", h.errmsg(function() s.get(4096) end))
    assert.equal("bad argument #0 to 'put' (varchar expected, got string; "
                 .. "call it with ':')", h.errmsg(function() s.put("x") end))
    assert.equal("bad argument #0 to 'append' (mmlist expected, got string; "
                 .. "call it with ':')", h.errmsg(function() l.append("x") end))
    assert.equal("bad argument #0 to 'pop' (mmlist expected, got nil; call "
                 .. "it with ':')", h.errmsg(function() l.pop() end))
    assert.equal("bad argument #0 to 'get' (B+tree expected, got string; "
                 .. "call it with ':')", h.errmsg(function() t.get("abcd") end))
    for _, m in ipairs({ "size", "verify", "stats", "iterate", "keys",
                         "dot", "offset", "blockfile" }) do
      assert.equal("bad argument #0 to '" .. m .. "' (B+tree expected, got "
                   .. "nil; call it with ':')", h.errmsg(t[m]))
      raised_here { [m] = function () t[m]() end }
    end
    -- a varchar is no list, nor the other way round
    assert.equal("bad argument #0 to 'get' (mmlist expected, got table; call "
                 .. "it with ':')", h.errmsg(function() l.get(s, 1) end))
  end)
end)
