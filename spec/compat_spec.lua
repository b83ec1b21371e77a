--- spec/compat_spec.lua: the fmap host beside lua5.4, on what Lua's own
-- test of its stand-alone interpreter checks (testes/main.lua of Lua
-- 5.4.4), in this project's words. Each case is a shell command line in
-- which LUA stands for the interpreter run by name (fmap, found on the
-- PATH in the build under test, or lua5.4): fmap must give the output,
-- errors and status the case expects and, where lua5.4 is installed,
-- those lua5.4 gives (its name read as fmap's). The REPL's first lines,
-- the version banner, are fmap's own and are left out of the comparison.

local function q (s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function absolute (path)
  if path:sub(1, 1) == "/" then return path end
  return io.popen("pwd -P"):read("l") .. "/" .. path
end

local BIN = absolute(h.bin())
local BINDIR = BIN:match("^(.*)/[^/]*$")
local HAS_LUA = os.execute("command -v lua5.4 >/dev/null 2>&1") == true

-- Runs line with LUA as interp ("fmap" or "lua5.4"), and LUABIN as its
-- absolute path, in an environment without the caller's LUA_* variables.
local function run1 (line, interp)
  local errpath = os.tmpname()
  local abs = interp == "fmap" and BIN
              or io.popen("command -v lua5.4"):read("l")
  line = line:gsub("%f[%w_]LUABIN%f[^%w_]", abs)
              :gsub("%f[%w_]LUA%f[^%w_]", interp)
  local out, status = h.run("env -u LUA_INIT -u LUA_INIT_5_4 -u LUA_PATH "
    .. "-u LUA_PATH_5_4 -u LUA_CPATH -u LUA_CPATH_5_4 -u FMAP_ALLOC "
    .. "-u FMAP_STRINGS sh -c " .. q("PATH=" .. q(BINDIR) .. ':"$PATH"; '
    .. "export PATH; exec </dev/null; " .. line) .. " 2>" .. q(errpath))
  local err = h.readfile(errpath)
  os.remove(errpath)
  return out, err, status
end

-- Drops the version banner that opens a REPL: lua's line, or fmap's two.
local function no_banner (s)
  s = s:gsub("^Lua 5%.4%.%d+  Copyright[^\n]*\n", "")
  s = s:gsub("^fmap %S+ on Lua 5%.4%.%d+  Copyright[^\n]*\n[^\n]*\n", "")
  return s
end

--- Runs line under fmap and, if it is there, under lua5.4, and asserts
-- they agree. Returns fmap's stdout, stderr and status.
local function both (line, opts)
  opts = opts or {}
  local out, err, status = run1(line, "fmap")
  if HAS_LUA then
    local lout, lerr, lstatus = run1(line, "lua5.4")
    if opts.repl then out, lout = no_banner(out), no_banner(lout) end
    assert.equal(lstatus, status, line)
    assert.equal((lout:gsub("lua5%.4", "fmap")), out, line)
    if not opts.own_stderr then
      assert.equal((lerr:gsub("lua5%.4", "fmap")), err, line)
    end
  end
  return out, err, status
end

describe("fmap beside lua5.4, on what testes/main.lua checks", function()
  local prog, other, files

  before_each(function()
    prog, other = os.tmpname(), os.tmpname()
    files = { prog, other }
  end)

  after_each(function()
    for _, f in ipairs(files) do os.remove(f) end
  end)

  local function tmp ()
    local path = os.tmpname()
    files[#files + 1] = path
    return path
  end

  describe("stdin", function()
    it("is the script with '-', or with no script when it is not a "
       .. "terminal", function()
      h.writefile(prog, "")
      assert.same({ "", "", 0 }, { both("LUA - < " .. q(prog)) })
      h.writefile(prog, "  print(\n1, a\n)\n")
      assert.same({ "1\tnil\n", "", 0 }, { both("LUA - < " .. q(prog)) })
      assert.same({ "10\n2\n", "", 0 },
                  { both("printf 'print(10)\\nprint(2)\\n' | LUA") })
    end)

    it("passes what follows '-' to the script, options included", function()
      assert.equal("-h\n", both("echo 'print(arg[1])' | LUA - -h"))
    end)
  end)

  describe("the environment", function()
    it("sets package.path and package.cpath from LUA_PATH and LUA_CPATH, "
       .. "the _5_4 ones first", function()
      h.writefile(prog, "print(package.path, package.cpath)")
      local p = q(prog)
      assert.matches("^x\t", both("env LUA_INIT= LUA_PATH=x LUA " .. p))
      assert.matches("^y\t", both("env LUA_PATH_5_4=y LUA_PATH=x LUA " .. p))
      assert.matches("\txuxu\n$", both("env LUA_CPATH=xuxu LUA " .. p))
      assert.matches("\tyacc\n$",
                     both("env LUA_CPATH_5_4=yacc LUA_CPATH=x LUA " .. p))
    end)

    it("runs LUA_INIT, with arg set, LUA_INIT_5_4 instead if set, and "
       .. "'@file' as a file", function()
      h.writefile(prog, "print(X)")
      assert.equal("3.2\n", both("env LUA_INIT='X=tonumber(arg[1])' LUA "
                                 .. q(prog) .. " 3.2"))
      assert.equal("10\n", both("env LUA_INIT_5_4='X=10' LUA_INIT='X=3' LUA "
                                .. q(prog)))
      h.writefile(prog, "x = x or 10; print(x); x = x + 1")
      assert.equal("10\n11\n", both("env LUA_INIT=" .. q("@" .. prog)
                                    .. " LUA " .. q(prog)))
    end)

    it("stops with LUA_INIT's error", function()
      local out, err, status = both("env LUA_INIT=\"error('msg')\" LUA")
      assert.equal("", out)
      assert.matches("^fmap: LUA_INIT:1: msg\nstack traceback:\n", err)
      assert.equal(1, status)
    end)

    it("-E ignores LUA_INIT, LUA_PATH and LUA_CPATH: the default paths, "
       .. "as with an empty environment", function()
      h.writefile(prog, "print(package.path, package.cpath)")
      local out = both("env LUA_INIT='error(10)' LUA_PATH=xxx LUA_CPATH=xxx "
                       .. "LUA -E " .. q(prog))
      local path, cpath = out:match("^(.-)\t(.-)\n$")
      assert.is_nil(path:find("xxx", 1, true))
      assert.is_nil(cpath:find("xxx", 1, true))
      assert.is_truthy(path:find("lua", 1, true))
      assert.is_truthy(cpath:find("lua", 1, true))
      assert.equal(out, (run1("env -i LUABIN " .. q(prog), "fmap")))
    end)

    it("reads ';;' in LUA_PATH as the default path", function()
      h.writefile(prog, "print(package.path)")
      local default = both("LUA -E " .. q(prog)):sub(1, -2)
      for _, p in ipairs({ ";", ";;", "a;;b", ";;b", "a;;", "a;b;;c" }) do
        local want = p
        if p:find(";;", 1, true) then
          want = p:gsub(";;", ";" .. default .. ";"):gsub("^;", "")
                  :gsub(";$", "")
        end
        assert.equal(want .. "\n", both("env LUA_PATH=" .. q(p) .. " LUA "
                                        .. q(prog)), p)
      end
    end)
  end)

  describe("-l and -e", function()
    it("-l requires modules in order, files found on LUA_PATH among them",
       function()
      h.writefile(prog, "print(1); a=2; return {x=15}")
      h.writefile(other, ("print(a); print(_G['%s'].x)"):format(prog))
      assert.equal("1\n2\n15\n2\n15\n", both(
        ("env LUA_PATH='?;;' LUA -l %s -l%s -lstring -l io %s"):format(
          q(prog), q(other), q(other))))
    end)

    it("-l g=mod sets the global g, and options run in their order",
       function()
      h.writefile(prog, "print(str.upper'alo alo', m.max(10, 20))")
      assert.equal("0.0\nALO ALO\t20\n", both(
        "LUA -l 'str=string' '-lm=math' -e 'print(m.sin(0))' " .. q(prog)))
      assert.equal("1\n3\n", both([[LUA "-eprint(1)" -ea=3 -e "print(a)"]]))
    end)

    it("gives the libraries of -l the arg table", function()
      h.writefile(prog, "assert(arg)")
      h.writefile(other, "assert(arg)")
      assert.same({ "", "", 0 }, { both("env LUA_PATH='?;;' LUA -l"
                                        .. q(prog) .. " - < " .. q(other)) })
    end)
  end)

  describe("arg", function()
    it("holds the script's arguments, and the interpreter and options "
       .. "below 0; '...' holds the arguments too", function()
      h.writefile(prog, [[
        assert(#arg == 3 and arg[1] == 'a' and arg[2] == 'b'
               and arg[3] == 'c')
        assert(arg[-1] == '--' and arg[-2] == "-e "
               and (arg[-3] == 'fmap' or arg[-3] == 'lua5.4'))
        assert(arg[4] == nil and arg[-4] == nil)
        local a, b, c = ...
        assert(... == 'a' and a == 'a' and b == 'b' and c == 'c')
        print(arg[-3])
      ]])
      assert.equal("fmap\n", both('LUA "-e " -- ' .. q(prog) .. " a b c"))
      h.writefile(prog, ("print(({...})[30])"))
      assert.equal("a\n", both("LUA " .. q(prog) .. string.rep(" a", 30)))
    end)

    it("is read when the script starts, after -e changed it", function()
      assert.equal("100\n",
                   both('echo "print(...)" | LUA -e "arg[1] = 100" -'))
      local out, err, status = both('echo "" | LUA -e "arg = 1" -')
      assert.equal("", out)
      assert.matches("^fmap: 'arg' is not a table\n", err)
      assert.equal(1, status)
    end)
  end)

  describe("the REPL without a terminal", function()
    it("reports an error calling a print set to nil, and goes on",
       function()
      local _, err, status = both('echo 10 | LUA -e "print=nil" -i '
                                  .. '>/dev/null', { repl = true })
      assert.equal("error calling 'print' (attempt to call a nil value)\n",
                   err)
      assert.equal(0, status)
    end)

    it("prints values and continues chunks over lines, with the prompts "
       .. "given", function()
      local quiet = [[LUA -e"_PROMPT='' _PROMPT2=''" -i < ]]
      h.writefile(prog, "(6*2-6) -- ===\na =\n10\nprint(a)\na")
      assert.equal("(6*2-6) -- ===\n6\na =\n10\nprint(a)\n10\na\n10\n\n",
                   both(quiet .. q(prog), { repl = true }))
      h.writefile(prog, "a = [[b\nc\nd\ne]]\n=a")
      assert.equal("a = [[b\nc\nd\ne]]\n=a\nb\nc\nd\ne\n\n",
                   both(quiet .. q(prog), { repl = true }))
      h.writefile(prog, " --\na = 2\n")
      assert.equal("alo --\naloa = 2\nalo\n", both([[LUA "-e_PROMPT='alo'" ]]
                   .. "-i < " .. q(prog), { repl = true }))
      assert.equal(">  --\n> a = 2\n> \n",
                   both("LUA -i < " .. q(prog), { repl = true }))
    end)

    it("shows a prompt that is not a string through __tostring, once per "
       .. "line", function()
      h.writefile(prog, " --\na = 2\n")
      local out = both([[LUA -e "local C = 0; _PROMPT=setmetatable({}, ]]
        .. [[{__tostring = function () C = C + 1; return C end})" -i < ]]
        .. q(prog), { repl = true })
      assert.equal("1 --\n2a = 2\n3\n", out)
    end)

    it("reads a chunk broken over many lines, empty ones included",
       function()
      local s = [=[ --
function f ( x )
  local a = [[
xuxu
]]
  local b = "\
xuxu\n"
  if x == 11 then return 1 + 12 , 2 + 20 end  --[[ test multiple returns ]]
  return x + 1
  --\\
end
return( f( 100 ) )
assert( a == b )
do return f( 11 ) end  ]=]
      h.writefile(prog, (s:gsub(" ", "\n\n")))
      local out = both([[LUA -e"_PROMPT='' _PROMPT2=''" -i < ]] .. q(prog),
                       { repl = true })
      assert.matches("\n101\n", out)
      assert.matches("\n13\t22\n\n$", out)
    end)
  end)

  describe("errors", function()
    it("prints an error object through its __tostring, at the error's "
       .. "level", function()
      h.writefile(prog, [[
        debug = require "debug"
        m = {x=0}
        setmetatable(m, {__tostring = function(x)
          return tostring(debug.getinfo(4).currentline + x.x)
        end})
        error(m)
      ]])
      assert.same({ "", "fmap: 6\n", 1 }, { both("LUA " .. q(prog)) })
      h.writefile(prog, "error{}")
      local _, err, status = both("LUA " .. q(prog))
      assert.matches("^fmap: %(error object is a table value%)\n", err)
      assert.equal(1, status)
    end)

    it("refuses bad options with lua's message and usage, -h included",
       function()
      for _, case in ipairs({ { "-h", "unrecognized option '-h'" },
                              { "---", "unrecognized option '---'" },
                              { "-Ex", "unrecognized option '-Ex'" },
                              { "-vv", "unrecognized option '-vv'" },
                              { "-iv", "unrecognized option '-iv'" },
                              { "-e", "'-e' needs argument" },
                              { "-l", "'-l' needs argument" } }) do
        local out, err, status = both("LUA " .. case[1])
        assert.equal("", out)
        local want = "fmap: " .. case[2] .. "\nusage: fmap [options] "
        assert.equal(want, err:sub(1, #want), case[1])
        assert.equal(1, status)
      end
      local _, err, status = both("LUA -e a")
      assert.matches("syntax error", err)
      assert.equal(1, status)
    end)
  end)

  describe("warnings", function()
    it("are off unless -W; '@on' and '@off' alone control them", function()
      local _, err = both('echo "io.stderr:write(1); warn[[XXX]]" | LUA')
      assert.equal("1", err)
      h.writefile(prog, [[
        warn("@allow")
        warn("@off", "XXX", "@off")
        warn("@off")
        warn("@on", "YYY", "@on")
        warn("@off")
        warn("@on")
        warn("", "@on")
        warn("@on")
        warn("Z", "Z", "Z")
      ]])
      _, err = both("LUA -W " .. q(prog))
      assert.equal("Lua warning: @offXXX@off\nLua warning: @on\n"
                   .. "Lua warning: ZZZ\n", err)
    end)

    it("report errors in finalizers run when the state closes", function()
      h.writefile(prog, [[
        warn("@allow")
        u1 = setmetatable({}, {__gc = function () error("XYZ") end})
        u2 = setmetatable({}, {__gc = function () error("ZYX") end})
      ]])
      local _, err = both("LUA -W " .. q(prog))
      assert.matches("ZYX%)\n.*XYZ%)\n", err)
    end)

    it("need a string, and a failed warn leaves nothing half-written",
       function()
      local _, err = both([[LUA -W -e '
        local ok, msg = pcall(warn)
        assert(not ok and msg:find("string expected"))
        ok, msg = pcall(warn, "SHOULD NOT APPEAR", {})
        assert(not ok and msg:find("string expected"))
        warn("shown")']])
      assert.equal("Lua warning: shown\n", err)
    end)
  end)

  describe("closing", function()
    it("runs the finalizers in order at os.exit(0, true), none made during "
       .. "the close", function()
      h.writefile(prog, [[
        print("creating 1")
        setmetatable({}, {__gc = function () print(1) end})
        print("creating 2")
        setmetatable({}, {__gc = function ()
          print("2")
          print("creating 3")
          setmetatable({}, {__gc = function () print(3) end})
          print(collectgarbage())
          os.exit(0, true)
        end})
      ]])
      assert.equal("creating 1\ncreating 2\n2\ncreating 3\nnil\n1\n",
                   both("LUA -W " .. q(prog)))
    end)

    it("flushes a file left open", function()
      local out = tmp()
      h.writefile(prog, ("io.output(%q); io.write('alo')"):format(out))
      both("LUA " .. q(prog))
      assert.equal("alo", h.readfile(out))
    end)

    it("exits with os.exit's status, closing the state, without a message",
       function()
      for _, case in ipairs({ { "nil", 0 }, { "0", 0 }, { "true", 0 },
                              { "1", 1 }, { "false", 1 } }) do
        h.writefile(prog, "os.exit(" .. case[1] .. ", true)")
        assert.same({ "", "", case[2] }, { both("LUA " .. q(prog)) })
      end
    end)

    it("closes the main chunk's to-be-closed variables at os.exit(true, "
       .. "true)", function()
      h.writefile(prog, [[
        local x <close> = setmetatable({}, {__close = function (self, err)
          assert(err == nil)
          print("Ok")
        end})
        local e1 <close> = setmetatable({}, {__close = function ()
          print(120)
        end})
        os.exit(true, true)
      ]])
      assert.equal("120\nOk\n", both("LUA " .. q(prog)))
    end)
  end)

  describe("scripts", function()
    it("may start with a # line, with or without a newline, and count it",
       function()
      h.writefile(prog, "#comment in 1st line without \\n at the end")
      assert.same({ "", "", 0 }, { both("LUA " .. q(prog)) })
      h.writefile(prog, "#test line number\nprint(debug.getinfo(1)"
                  .. ".currentline)\n")
      assert.equal("2\n", both("LUA " .. q(prog)))
    end)

    it("runs debug.debug on stdin", function()
      local _, err = both([[printf 'io.stderr:write(1000)\ncont\n' | ]]
                          .. [[LUA -e "require'debug'.debug()"]])
      assert.equal("lua_debug> 1000lua_debug> ", err)
    end)

    it("-v prints the version line, then runs -e", function()
      local out = run1([[LUA -v -e"print'hello'"]], "fmap")
      assert.matches("PUC%-Rio\nhello\n$", out)
      assert.matches("^fmap %S+ on Lua 5%.4%.%d+  Copyright", out)
    end)
  end)

  describe("Ctrl-C", function()
    it("raises 'interrupted!' in the running code, which a pcall catches",
       function()
      local p = io.popen("env -u LUA_INIT -u LUA_INIT_5_4 " .. q(BIN)
        .. [[ -e "pcall(function () print('looping') while true do end end)]]
        .. [[ print(42)" & echo $!]], "r")
      local pid, seen
      for _ = 1, 2 do   -- the pid and 'looping', in either order
        local line = p:read("l")
        if line == "looping" then seen = true else pid = line end
      end
      assert.is_true(seen)
      assert.matches("^%d+$", pid)
      assert(os.execute("kill -INT " .. pid))
      assert.equal("42", p:read("l"))
      assert.is_true(p:close())
    end)
  end)
end)
