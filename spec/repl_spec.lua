--- spec/repl_spec.lua: how the REPL prints strings, cuts long results and
-- puts summaries first, pages help() and more(), completes fmap's modules
-- and an object's public methods, and describes a method by the kind of
-- its object (lua/fmap/repl.lua, lua/fmap/help.lua, and the host's pager
-- in engine/host/repl.c). The host's options, its other REPL behaviour and
-- the rest of help are in host_spec.lua.
local repl = require "fmap.repl"
local help = require "fmap.help"
local tmux = require "tmux"

local function q (s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function absolute (path)
  if path:sub(1, 1) == "/" then return path end
  return io.popen("pwd -P"):read("l") .. "/" .. path
end

local BIN = absolute(h.bin())

-- A fresh temporary path, unique among processes (the release and the
-- sanitize runs of the suite may run at once).
local function tmppath (suffix)
  local path = os.tmpname()
  os.remove(path)
  return path .. suffix
end

-- Every child starts without the caller's LUA_INIT, paths or pager.
local ENV = "env -u LUA_INIT -u LUA_INIT_5_4 -u LUA_PATH -u LUA_PATH_5_4 "
            .. "-u LUA_CPATH -u LUA_CPATH_5_4 -u PAGER -u LESS "

-- The REPL through a pipe, fmap -i < input: its stdout (each line echoed
-- after its prompt, so it reads as a transcript) and its stderr.
local function session (input)
  local inpath, errpath = tmppath(".in"), tmppath(".err")
  h.writefile(inpath, input)
  local out = h.run(ENV .. q(BIN) .. " -i <" .. q(inpath) .. " 2>"
                    .. q(errpath))
  local err = h.readfile(errpath)
  os.remove(inpath)
  os.remove(errpath)
  return out, err
end

-- The lines a table of the integers 1..n prints as, nested over lines.
local function column (n)
  local lines = { "{" }
  for i = 1, n do lines[#lines + 1] = "  " .. i .. "," end
  lines[#lines + 1] = "}"
  return lines
end

describe("fmap.repl", function()
  describe(".quote()", function()
    it("writes control bytes as %q does: decimal, three digits before a "
       .. "digit", function()
      assert.equal('"\\7\\0\\0\\0\\0\\0\\0\\0"',
                   repl.quote(string.pack("<I8", 7)))
      assert.equal('"\\0\\0\\0\\0\\0\\0\\0001"',
                   repl.quote(string.pack(">I8", 49)))
      assert.equal('"a\\"b\\\\c\\n\\r\\t\\27[0m\\127"',
                   repl.quote('a"b\\c\n\r\t\27[0m\127'))
    end)

    it("keeps UTF-8 text readable, and writes the high bytes of binary "
       .. "data as codes", function()
      assert.equal('"héllo\\1"', repl.quote("héllo\1"))
      assert.equal('"h\\195"', repl.quote("h\195"))           -- not UTF-8
      assert.equal('"\\195\\169\\0"', repl.quote("é\0"))      -- a zero byte
    end)

    it("reads back to the same bytes", function()
      local pieces = { "\0", "\1", "\7", "\n", "\r", "\t", "\\", '"', "'",
                       "0", "1", "9", "a", " ", "é", "\195", "\255", "\127",
                       "]]", "\27" }
      for _ = 1, 500 do
        local parts = {}
        for i = 1, math.random(0, 12) do
          parts[i] = math.random(2) == 1
                     and pieces[math.random(#pieces)]
                     or string.char(math.random(0, 255))
        end
        local s = table.concat(parts)
        local literal = repl.quote(s)
        assert.equal(s, assert(load("return " .. literal))(), literal)
      end
    end)

    it("cuts after limit bytes, between two characters of UTF-8 text",
       function()
      assert.equal('"a"..(2 more bytes)', repl.quote("aé", 2))
      assert.equal('"\\0"..(2 more bytes)', repl.quote("\0\0\0", 1))
    end)
  end)

  describe(".printable()", function()
    it("is true of UTF-8 text whose only control bytes are newlines and "
       .. "tabs", function()
      assert.is_true(repl.printable("two\nlines\tand é"))
      assert.is_true(repl.printable(""))
      assert.is_false(repl.printable("hello\1world"))
      assert.is_false(repl.printable("crlf\r\n"))
      assert.is_false(repl.printable("\0"))
      assert.is_false(repl.printable("h\195"))
    end)
  end)

  describe(".complete()", function()
    local bf
    before_each(function()
      bf = fmap.anonymous()
      _G.zz_t = fmap.bptree.new(bf, 8, 8)
      _G.zz_vc = fmap.varchar.new(bf)
      _G.zz_l = fmap.mmlist.new(bf)
    end)
    after_each(function()
      _G.zz_t, _G.zz_vc, _G.zz_l = nil, nil, nil
      bf:close()
    end)

    it("offers fmap's modules after 'fmap.', and their functions", function()
      local all = {}
      for _, w in ipairs(repl.complete("fmap.")) do all[w] = true end
      for name in pairs(require "fmap.modules") do
        assert.is_true(all["fmap." .. name], name)
      end
      assert.is_true(all["fmap.open"])
      assert.same({ "fmap.bptree" }, repl.complete("fmap.bp"))
      assert.same({ "fmap.codec.decode" }, repl.complete("fmap.codec.dec"))
    end)

    it("offers an object's public methods only, after '.' as after ':'",
       function()
      local colon = repl.complete("zz_t:")
      assert.is_true(#colon > 10)
      for _, w in ipairs(colon) do
        assert.matches("^zz_t:%l[%w_]*$", w)
        assert.is_function(zz_t[w:match(":(.*)")], w)
      end
      local dot = repl.complete("zz_t.")
      for i, w in ipairs(dot) do assert.equal(colon[i]:gsub(":", "."), w) end
      assert.equal(#colon, #dot)
      assert.same({}, repl.complete("zz_t.vie"))      -- its own fields
      assert.same({}, repl.complete("zz_t.spa"))
      assert.same({ "zz_vc:put" }, repl.complete("zz_vc:pu"))
      assert.same({ "zz_l.append" }, repl.complete("zz_l.app"))
    end)

    it("offers private names only when the word starts with '_'", function()
      assert.same({ "zz_vc:_put", "zz_vc:_put_checked" },
                  repl.complete("zz_vc:_pu"))
      local names = {}
      for _, w in ipairs(repl.complete("fmap.bptree.")) do names[w] = true end
      assert.is_nil(names["fmap.bptree._methods"])
      assert.same({ "fmap.bptree._methods" },
                  repl.complete("fmap.bptree._meth"))
    end)
  end)
end)

describe("fmap.help", function()
  local bf, v, tree, vc, l
  before_each(function()
    bf = fmap.anonymous()
    v = bf:get(bf:allocate())
    tree = fmap.bptree.new(bf, 8, 8)
    vc = fmap.varchar.new(bf)
    l = fmap.mmlist.new(bf)
  end)
  after_each(function()
    _G.zz_thing = nil
    v:release()
    bf:close()
  end)

  it("describes a method by the kind of its object, whatever its name",
     function()
    assert.equal(help.text("t:get"), help.text(tree, "get"))
    assert.equal(help.text("vc:get"), help.text(vc, "get"))
    assert.equal(help.text("l:get"), help.text(l, "get"))
    assert.equal(help.text("bf:get"), help.text(bf, "get"))
    assert.equal(help.text("v:read"), help.text(v, "read"))
    _G.zz_thing = vc                     -- a variable the REPL knows
    assert.equal(help.text("vc:put"), help.text("zz_thing:put"))
    _G.zz_thing = l
    assert.equal(help.text("l:get"), help.text("zz_thing:get"))
    _G.zz_thing = "text"
    assert.matches("^string%.upper: a built%-in function",
                   help.text("zz_thing:upper"))
  end)

  it("says that an object has no method of that name", function()
    assert.equal("a B+tree has no method 'ref'", help.text(tree, "ref"))
    assert.equal("a blob store has no method 'add'", help.text(vc, "add"))
    assert.equal("a blob store has no method '_put'", help.text(vc, "_put"))
    assert.equal("a list has no method 'put'", help.text(l, "put"))
    assert.equal("a BlockFile has no method 'nope'", help.text(bf, "nope"))
    assert.equal("a view has no method 'nope'", help.text(v, "nope"))
    assert.equal("a number has no method 'get'", help.text(5, "get"))
    _G.zz_thing = tree
    assert.equal("a B+tree has no method 'ref'; help(zz_thing) lists its "
                 .. "methods", help.text("zz_thing:ref"))
    _G.zz_thing = 5
    assert.equal("zz_thing is a number, with no method 'get'",
                 help.text("zz_thing:get"))
  end)

  it("rejects a method name that is not a string", function()
    assert.equal("bad argument #2 to 'text' (string expected, got number)",
                 h.errmsg(function() help.text(bf, 3) end))
    assert.equal("bad argument #2 to 'help' (string expected, got nil)",
                 h.errmsg(function() help.help(bf, nil) end))
  end)

  it("lists more() with the REPL's globals", function()
    assert.matches("\n  more%(%[%.%.%.%]%) +prints whole what the REPL cut\n",
                   help.text())
  end)
end)

describe("the REPL through a pipe (fmap -i < file)", function()
  it("prints a string that is not text as a literal that reads back",
     function()
    local out, err = session('string.pack("<I8", 7)\n"hello\\1world"\n'
      .. '"two\\nlines\\n"\n{ [string.pack(">I4", 3)] = "\\0" }\n')
    assert.equal("", err)
    assert.matches('\n> string.pack%("<I8", 7%)\n"\\7\\0\\0\\0\\0\\0\\0\\0"\n'
                   .. '> "hello\\1world"\n"hello\\1world"\n'
                   .. '> "two\\nlines\\n"\ntwo\nlines\n'
                   .. '> { %[string.pack%(">I4", 3%)%] = "\\0" }\n'
                   .. '{ %["\\0\\0\\0\\3"%] = "\\0" }\n> \n$', out)
  end)

  it("cuts a long result, says what it left out, and more() prints it "
     .. "whole", function()
    local out, err = session("t = {} for i = 1, 45 do t[i] = i end\nt\n"
                             .. "more()\n1\nmore()\n")
    assert.equal("", err)
    local lines = column(45)
    local cut = table.concat(lines, "\n", 1, repl.MAX_LINES)
    local whole = table.concat(lines, "\n")
    local expected = "\n> t\n" .. cut .. "\n-- " .. (#lines - repl.MAX_LINES)
                     .. " more lines: more() shows it all\n> more()\n"
                     .. whole .. "\n> 1\n1\n> more()\n1\n> \n"
    assert.equal(expected, out:sub(-#expected))
  end)

  it("cuts a string's literal before it fills the lines, and more() prints "
     .. "it whole", function()
    local out = session('s = ("\\0"):rep(1000)\ns\nmore()\n')
    local top = repl.MAX_LINES * (repl.WIDTH + 2) // 4
    local expected = "\n> s\n" .. repl.quote(("\0"):rep(1000), top) .. "\n-- "
                     .. (1000 - top) .. " more bytes: more() shows it all\n"
                     .. "> more()\n" .. repl.quote(("\0"):rep(1000))
                     .. "\n> \n"
    assert.equal(expected, out:sub(-#expected))
  end)

  it("prints a summary before the table it sums up", function()
    local out = session("bf = fmap.anonymous()\nfmap.audit(bf)\n"
      .. '{ summary = "3 things", list = { ("x"):rep(70), ("y"):rep(70) } }\n'
      .. '{ 1 }, "x", nil\n')
    assert.matches("\n> fmap%.audit%(bf%)\naudit of an anonymous BlockFile: "
                   .. "[^\n]*\n.-\nok: no problem found\n"
                   .. "{\n  bad_refs = {},\n", out)
    assert.matches('\n3 things\n{\n  list = {\n    "x+",\n    "y+",\n  },\n'
                   .. '  summary = "3 things",\n}\n', out)
    assert.matches('\n> { 1 }, "x", nil\n{ 1 }\tx\tnil\n', out)   -- in order
  end)

  it("describes a method by what the variable holds", function()
    local out = session("t = fmap.bptree.new(fmap.anonymous(), 8, 8)\n"
                        .. 'help "t:ref"\n'
                        .. "store = fmap.varchar.new(t:blockfile())\n"
                        .. 'help "store:put"\nhelp(t, "get")\nx = 5\n'
                        .. 'help "x:get"\n')
    assert.matches("\n> help \"t:ref\"\na B%+tree has no method 'ref'; "
                   .. "help%(t%) lists its methods\n", out)
    assert.matches('\n> help "store:put"\nvc:put%(data%) %-> [^\n]*  %-%- a '
                   .. "method of fmap%.varchar\n", out)
    assert.matches('\n> help%(t, "get"%)\nt:get%(key%) %-> ', out)
    assert.matches("\n> help \"x:get\"\nx is a number, with no method 'get'\n",
                   out)
  end)
end)

describe("the REPL in a terminal (tmux)", function()
  local home, term

  -- Starts the REPL in a terminal, with extra settings of the environment
  -- ("PAGER=..."), and waits for its prompt.
  local function start (extra)
    term = tmux.start(ENV .. "HOME=" .. q(home) .. " "
                      .. table.concat(extra or {}, " ") .. " " .. q(BIN))
    term:wait_for("\n>\n")
  end

  before_each(function()
    home = tmppath(".d")
    assert(os.execute("mkdir -p " .. q(home)))
  end)

  after_each(function()
    if term then term:close() end
    term = nil
    os.execute("rm -rf " .. q(home))
  end)

  local function tmux_it (name, f)
    it(name, function()
      if not tmux.available then
        pending("tmux is not installed")
        return
      end
      f()
    end)
  end

  tmux_it("completes fmap's modules and an object's public methods",
          function()
    start()
    term:type_text("fmap.bp")
    term:keys("Tab")
    term:wait_for("\n> fmap.bptree\n")
    term:keys("C-u")
    term:type_line("t = fmap.bptree.new(fmap.anonymous(), 8, 8)")
    term:wait_for("\n> t = fmap.bptree.new(fmap.anonymous(), 8, 8)\n>\n")
    term:type_text("t:")
    term:keys("Tab", "Tab")     -- nothing in common: the second one lists
    local s = term:wait_for("value_size")
    assert.matches("\nadd +", s)
    assert.not_matches("_search", s)
    assert.not_matches("views", s)
    term:keys("C-u")
    term:type_line("'after'")
    term:wait_for("\nafter\n>\n")
    term:keys("C-l")                   -- a clear screen for the next list
    term:wait_for("^>\n\n", true)
    term:type_text("t.")
    term:keys("Tab", "Tab")
    s = term:wait_for("value_size")
    assert.matches("\nadd +", s)
    assert.not_matches("spare", s)
    assert.not_matches("views", s)
  end)

  tmux_it("pages help and more() through $PAGER, and cuts a long result",
          function()
    local pager = home .. "/pager"
    h.writefile(pager, "#!/bin/sh\nexec sed 's/^/paged| /'\n")
    assert(os.execute("chmod +x " .. q(pager)))
    start({ "PAGER=" .. q(pager) })
    term:type_line('help "bf:get"')
    term:wait_for("\npaged| bf:get(offset [, blocks]) -> view\n")
    term:wait_for("\n>\n")
    term:type_line("t = {} for i = 1, 45 do t[i] = i end")
    term:wait_for("\n> t = {} for i = 1, 45 do t[i] = i end\n>\n")
    term:type_line("t")
    term:wait_for("\n  29,\n-- 17 more lines: more() shows it all\n>\n")
    term:type_line("more()")
    term:wait_for("\npaged|   45,\npaged| }\n>\n")
  end)

  tmux_it("pages help() through less -FRX when PAGER is not set", function()
    if not os.execute("command -v less >/dev/null 2>&1") then
      pending("less is not installed")
      return
    end
    start()
    term:type_line("help()")
    -- less's prompt on the last row: the text does not fit the screen
    term:wait_for("\n:\n$", true)
    term:keys("q")
    term:wait_for("\n>\n*$", true)
    term:type_line("6 * 7")
    term:wait_for("\n> 6 * 7\n42\n>\n")
  end)

  tmux_it("leaves Ctrl-C to the pager, and goes on when it ends", function()
    -- a pager that reads the text, says so, and ends after two Ctrl-C,
    -- saying when it gets each
    local pager = home .. "/pager"
    h.writefile(pager, table.concat({
      "#!/bin/sh", "cat >/dev/null", "n=0",
      "trap 'n=$((n + 1)); echo \"interrupt $n\"' INT", "echo ready",
      "while [ $n -lt 2 ]; do sleep 0.05; done", "" }, "\n"))
    assert(os.execute("chmod +x " .. q(pager)))
    start({ "PAGER=" .. q(pager) })
    term:type_line("help()")
    term:wait_for("\nready\n")
    -- one at a time, each once the pager got it (and so the host, which
    -- is in the same process group): if the host did not leave Ctrl-C to
    -- the pager, the first would arm its hook and the second kill it
    term:keys("C-c")
    term:wait_for("interrupt 1\n")
    term:keys("C-c")
    term:wait_for("interrupt 2\n")
    term:wait_for("\n>\n*$", true)
    term:type_line("6 * 7")
    term:wait_for("\n> 6 * 7\n42\n>\n")
  end)
end)
