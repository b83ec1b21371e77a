--- spec/host_spec.lua: the fmap executable (engine/host/), its REPL
-- (lua/fmap/repl.lua, lua/fmap/help.lua) and scripts/inspect.lua.
-- The host under test is $FMAP_BIN, else build/bin/fmap; it runs as a
-- child process, in batch, through a pipe, and in a terminal (tmux).
local repl = require "fmap.repl"
local help = require "fmap.help"

-- Absolute, so that commands may run from another directory.
local function absolute (path)
  if path:sub(1, 1) == "/" then return path end
  local pwd = io.popen("pwd -P"):read("l")
  return pwd .. "/" .. path
end

local BIN = absolute(h.bin())
local BINDIR = BIN:match("^(.*)/[^/]*$")
local ROOT = io.popen("pwd -P"):read("l")  -- busted runs from the top

-- A fresh temporary path. os.tmpname (mkstemp) rather than h.tmpname:
-- unique even among processes started in the same second, as the release
-- and sanitize runs of the suite may be.
local function tmppath (suffix)
  local path = os.tmpname()
  os.remove(path)
  return path .. suffix
end

local function q (s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The environment every child starts from: no LUA_INIT of the caller's.
local CLEAN_ENV = "env -u LUA_INIT -u LUA_INIT_5_4 -u LUA_PATH -u LUA_PATH_5_4 "
                  .. "-u LUA_CPATH -u LUA_CPATH_5_4 "

-- The host as a user runs it, by the name fmap on the PATH: its messages
-- then begin "fmap:", as they begin with whatever name it was run by.
local AS_FMAP = "PATH=" .. q(BINDIR) .. ':"$PATH" fmap'

--- Runs the host, as fmap (see AS_FMAP). opts: args (list), stdin
-- (string), env (table), cwd, bin (another executable, run by that
-- path). Returns stdout, stderr, exit status.
local function run (opts)
  local parts = {}
  for _, a in ipairs(opts.args or {}) do parts[#parts + 1] = q(a) end
  local env = {}
  for k, v in pairs(opts.env or {}) do env[#env + 1] = k .. "=" .. q(v) end
  local errpath, inpath = tmppath(".err"), nil
  local cmd = CLEAN_ENV .. table.concat(env, " ") .. " "
              .. (opts.bin and q(opts.bin) or AS_FMAP) .. " "
              .. table.concat(parts, " ")
              .. " 2>" .. q(errpath)
  if opts.stdin then
    inpath = tmppath(".in")
    h.writefile(inpath, opts.stdin)
    cmd = cmd .. " <" .. q(inpath)
  else
    cmd = cmd .. " </dev/null"
  end
  if opts.cwd then cmd = "cd " .. q(opts.cwd) .. " && " .. cmd end
  local out, status = h.run(cmd)
  local err = h.readfile(errpath)
  os.remove(errpath)
  if inpath then os.remove(inpath) end
  return out, err, status
end

local function tmpfile (contents, suffix)
  local path = tmppath(suffix or ".lua")
  h.writefile(path, contents)
  return path
end

local function tmpdir ()
  local path = tmppath(".d")
  assert(os.execute("mkdir -p " .. q(path)))
  return path
end

local function rmdir (path)
  os.execute("rm -rf " .. q(path))
end

local USAGE = [==[
usage: fmap [options] [script [args]]
Available options are:
  -e stat   execute string 'stat'
  -i        enter interactive mode after executing 'script'
  -l mod    require library 'mod' into global 'mod'
  -l g=mod  require library 'mod' into global 'g'
  -v        show version information
  -E        ignore environment variables
  -W        turn warnings on
  --        stop handling options
  -         stop handling options and execute stdin
]==]

describe("fmap (batch)", function()
  local files = {}
  local function script (src)
    local path = tmpfile(src)
    files[#files + 1] = path
    return path
  end
  after_each(function()
    for _, f in ipairs(files) do os.remove(f) end
    files = {}
  end)

  describe("-v", function()
    it("prints the fmap and Lua versions and exits 0", function()
      local out, err, status = run{ args = { "-v" } }
      assert.equal(0, status)
      assert.equal("", err)
      assert.matches("^" .. fmap.VERSION:gsub("%p", "%%%0") .. " on Lua "
                     .. "5%.4%.%d+  Copyright %(C%) 1994%-%d+ Lua%.org, "
                     .. "PUC%-Rio\n$", out)
    end)
  end)

  describe("a script", function()
    it("gets its arguments in arg and in ...", function()
      local s = script('print(arg[-1], arg[0], arg[1], arg[2], #arg, ...)')
      local out, err, status = run{ args = { "-W", s, "a", "b c" } }
      assert.equal("", err)
      assert.equal(0, status)
      assert.equal(table.concat({ "-W", s, "a", "b c", "2", "a", "b c" },
                                "\t") .. "\n", out)
    end)

    it("has the interpreter and its options at negative indices",
       function()
      local s = script('print(arg[-3], arg[-2], arg[-1], arg[-4])')
      local out = run{ args = { "-e", "x=1", s } }
      assert.equal("fmap\t-e\tx=1\tnil\n", out)
      out = run{ args = { s } }
      assert.equal("nil\tnil\tfmap\tnil\n", out)
      out = run{ bin = BIN, args = { s } }
      assert.equal("nil\tnil\t" .. BIN .. "\tnil\n", out)
    end)

    it("with no script, has the interpreter at arg[0]", function()
      local out = run{ args = { "-e", "print(arg[0], arg[1], arg[2], #arg)" } }
      assert.equal("fmap\t-e\tprint(arg[0], arg[1], arg[2], #arg)\t2\n",
                   out)
    end)

    it("skips a #! first line", function()
      local s = script('#!/usr/bin/env lua\nprint("ran", ...)\n')
      local out, err, status = run{ args = { s, "x" } }
      assert.equal("ran\tx\n", out)
      assert.equal("", err)
      assert.equal(0, status)
    end)

    it("returns os.exit's status", function()
      local _, _, status = run{ args = { script("os.exit(7)") } }
      assert.equal(7, status)
      _, _, status = run{ args = { script("os.exit(false)") } }
      assert.equal(1, status)
      _, _, status = run{ args = { script("os.exit(true)") } }
      assert.equal(0, status)
    end)

    it("after --, is the script even when named like an option", function()
      local s = script('print("dash", ...)')
      local out, _, status = run{ args = { "--", s, "-v" } }
      assert.equal("dash\t-v\n", out)
      assert.equal(0, status)
    end)
  end)

  describe("-e and -l", function()
    it("-e runs statements in order, joined or separate", function()
      local out, _, status = run{ args = { "-ex=1", "-e", "print(x + 1)" } }
      assert.equal("2\n", out)
      assert.equal(0, status)
    end)

    it("-l mod sets the global mod, -l g=mod the global g", function()
      local dir = tmpdir()
      h.writefile(dir .. "/probe.lua", 'return { name = "probe" }')
      local out, err, status = run{
        args = { "-l", "probe", "-lp2=probe",
                 "-e", "print(probe.name, p2 == probe)" },
        env = { LUA_PATH = dir .. "/?.lua;;" } }
      rmdir(dir)
      assert.equal("", err)
      assert.equal("probe\ttrue\n", out)
      assert.equal(0, status)
    end)

    it("-l of a missing module reports require's message, status 1",
       function()
      local out, err, status = run{ args = { "-l", "no_such_mod" } }
      assert.equal("", out)
      assert.equal(1, status)
      assert.matches("^fmap: module 'no_such_mod' not found:", err)
      assert.matches("stack traceback:", err, 1, true)
    end)

    it("stops at the first -e that fails", function()
      local out, err, status = run{
        args = { "-e", "print(1)", "-e", "error('no')", "-e", "print(3)" } }
      assert.equal("1\n", out)
      assert.matches("^fmap: %(command line%):1: no\nstack traceback:", err)
      assert.equal(1, status)
    end)
  end)

  describe("stdin", function()
    it("- runs stdin as the script, with arguments", function()
      local out, _, status = run{ args = { "-", "a", "b" },
                                  stdin = 'print(arg[0], ...)' }
      assert.equal("-\ta\tb\n", out)
      assert.equal(0, status)
    end)

    it("with no script and no terminal, runs stdin", function()
      local out, _, status = run{ stdin = 'print("from stdin")' }
      assert.equal("from stdin\n", out)
      assert.equal(0, status)
    end)

    it("a script from stdin that fails is reported, status 0 as in lua",
       function()
      local _, err, status = run{ stdin = 'error("bad")' }
      assert.matches("^fmap: stdin:1: bad\nstack traceback:", err)
      assert.equal(0, status)
      -- with '-' it is the script, whose error is the run's
      _, err, status = run{ args = { "-" }, stdin = 'error("bad")' }
      assert.matches("^fmap: stdin:1: bad\nstack traceback:", err)
      assert.equal(1, status)
    end)
  end)

  describe("the environment", function()
    it("runs LUA_INIT_5_4, else LUA_INIT, before anything else",
       function()
      local out = run{ args = { "-e", "print(2)" },
                       env = { LUA_INIT = "print('init')" } }
      assert.equal("init\n2\n", out)
      out = run{ args = { "-e", "print(2)" },
                 env = { LUA_INIT = "print('init')",
                         LUA_INIT_5_4 = "print('init54')" } }
      assert.equal("init54\n2\n", out)
    end)

    it("runs LUA_INIT=@file as a file", function()
      local s = script('print("init file")')
      local out = run{ args = { "-e", "print(2)" },
                       env = { LUA_INIT = "@" .. s } }
      assert.equal("init file\n2\n", out)
    end)

    it("stops with status 1 when LUA_INIT fails", function()
      local out, err, status = run{ args = { "-e", "print(2)" },
                                    env = { LUA_INIT = "error('x')" } }
      assert.equal("", out)
      assert.matches("^fmap: LUA_INIT:1: x", err)
      assert.equal(1, status)
    end)

    it("-E ignores LUA_INIT and LUA_PATH", function()
      local out = run{ args = { "-E", "-e", "print(package.path:find("
                                .. "'/nowhere', 1, true))" },
                       env = { LUA_INIT = "print('init')",
                               LUA_PATH = "/nowhere/?.lua" } }
      assert.equal("nil\n", out)
    end)

    it("-W turns warnings on", function()
      local _, err = run{ args = { "-W", "-e", "warn('careful')" } }
      assert.equal("Lua warning: careful\n", err)
      _, err = run{ args = { "-e", "warn('careful')" } }
      assert.equal("", err)
    end)
  end)

  describe("memory (engine/host/alloc.c)", function()
    -- Objects of every size class and across the pool's edge (256 bytes):
    -- strings of 0..600 bytes, arrays grown by reallocation, hash parts
    -- that grow past the edge and shrink back, coroutine stacks; some
    -- kept, most dropped, the survivors checked after every collection.
    local STRESS = [[
      local seed = 12345
      local function rand (n)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n
      end
      local keep, made = {}, 0
      for round = 1, 12 do
        for i = 1, 1500 do
          local len = rand(600)
          local e = { len = len, i = i,
                      s = string.rep(string.char(65 + i % 26), len) .. i,
                      a = {}, h = {} }
          for j = 1, rand(80) do e.a[j] = j * i end
          for j = 1, rand(40) do e.h["k" .. j] = j end
          for j = 1, rand(40) do e.h["k" .. j] = nil end
          keep[rand(400) + 1] = e
          made = made + 1
        end
        local co = coroutine.wrap(function (depth)
          local function down (d) if d > 0 then return down(d - 1) + 1 end
                                  return coroutine.yield(0) end
          return down(depth)
        end)
        co(rand(3000))
        collectgarbage()
        for _, e in pairs(keep) do
          local want = string.rep(string.char(65 + e.i % 26), e.len) .. e.i
          assert(e.s == want, "a string changed")
          for j = 1, #e.a do assert(e.a[j] == j * e.i, "an array changed") end
          for k, v in pairs(e.h) do
            assert(k == "k" .. v, "a hash part changed")
          end
        end
      end
      print("made " .. made)
    ]]

    it("keeps objects of every size intact, pooled or from malloc",
       function()
      local path = tmpfile(STRESS)
      for _, alloc in ipairs({ "pool", "system" }) do
        local out, err, status = run{ args = { path },
                                      env = { FMAP_ALLOC = alloc } }
        assert.equal("", err)
        assert.equal("made 18000\n", out)
        assert.equal(0, status)
      end
      os.remove(path)
    end)

    it("FMAP_ALLOC names the allocator; a wrong name is reported once, "
       .. "and the pool used", function()
      local out, err, status = run{ args = { "-e", "print(1)" },
                                    env = { FMAP_ALLOC = "system" } }
      assert.same({ "1\n", "", 0 }, { out, err, status })
      out, err, status = run{ args = { "-e", "print(1)" },
                              env = { FMAP_ALLOC = "jemalloc" } }
      assert.same({ "1\n", "fmap: FMAP_ALLOC='jemalloc' is not 'pool' or "
                    .. "'system'; using 'pool'\n", 0 }, { out, err, status })
    end)

    it("anchors FMAP_STRINGS short strings, 4096 unless told; a wrong "
       .. "count is reported once, and 4096 anchored", function()
      -- the anchored strings: how many, all distinct and short (a string
      -- over 40 bytes would not be interned, and would set no floor)
      local probe = "local t = debug.getregistry()['fmap.strings'] "
                    .. "local seen, short = {}, 0 "
                    .. "for _, s in ipairs(t) do seen[s] = true "
                    .. "short = short + (#s <= 40 and 1 or 0) end "
                    .. "local n = 0 for _ in pairs(seen) do n = n + 1 end "
                    .. "print(#t, n, short)"
      for _, case in ipairs({ { nil, "4096\t4096\t4096\n" },
                              { "", "4096\t4096\t4096\n" },
                              { "0", "0\t0\t0\n" },
                              { "70000", "70000\t70000\t70000\n" } }) do
        for _, alloc in ipairs({ "pool", "system" }) do
          local out, err, status = run{ args = { "-e", probe },
                                        env = { FMAP_STRINGS = case[1],
                                                FMAP_ALLOC = alloc } }
          assert.same({ case[2], "", 0 }, { out, err, status })
        end
      end
      for _, bad in ipairs({ "x", "-1", "1000001", "12abc", "1e3",
                             "99999999999999999999" }) do
        local out, err, status = run{ args = { "-e", probe },
                                      env = { FMAP_STRINGS = bad } }
        assert.same({ "4096\t4096\t4096\n", "fmap: FMAP_STRINGS='" .. bad
                      .. "' is not a count from 0 to 1000000; using 4096\n",
                      0 }, { out, err, status })
      end
    end)

    it("keeps lua's warnings: pieces, @off and @on, with either allocator",
       function()
      for _, alloc in ipairs({ "pool", "system" }) do
        local _, err = run{ args = { "-W", "-e", "warn('a', 'b', 'c') "
                                     .. "warn('@off') warn('hidden') "
                                     .. "warn('@on') warn('@x') "
                                     .. "warn('shown')" },
                            env = { FMAP_ALLOC = alloc } }
        assert.equal("Lua warning: abc\nLua warning: shown\n", err)
      end
    end)
  end)

  describe("modules", function()
    it("has the engine preloaded", function()
      local out = run{ args = { "-e", "print(package.preload.fmap ~= nil, "
                                .. "require('fmap').BLOCKSIZE)" } }
      assert.equal("true\t4096\n", out)
    end)

    it("finds the project's lua/ by a searcher after lua's", function()
      local out = run{ args = { "-e", "local s = package.searchers print("
                                .. "#s, select(2, s[#s]('fmap.repl')))" } }
      assert.equal("5\t" .. ROOT .. "/lua/fmap/repl.lua\n", out)
      out = run{ args = { "-e", "print(package.searchers[5]('fmap.none'))" } }
      assert.equal("no file '" .. ROOT .. "/lua/fmap/none.lua'\n\tno file '"
                   .. ROOT .. "/lua/fmap/none/init.lua'\n", out)
      out = run{ args = { "-e", "print(package.searchers[5]('string'))" } }
      assert.equal("\n", out)
    end)

    it("finds lua/ from its own location, whatever the directory",
       function()
      local out, err = run{ args = { "-e", "print(require('fmap.repl') "
                                     .. "~= nil)" }, cwd = "/" }
      assert.equal("", err)
      assert.equal("true\n", out)
    end)

    it("finds PREFIX/share/lua/5.4 when installed as PREFIX/bin/fmap",
       function()
      local prefix = tmpdir()
      assert(os.execute("mkdir -p " .. q(prefix .. "/bin") .. " "
                        .. q(prefix .. "/share/lua/5.4/fmap") .. " && cp "
                        .. q(BIN) .. " " .. q(prefix .. "/bin/fmap")
                        .. " && ln -s bin/fmap " .. q(prefix .. "/link")))
      h.writefile(prefix .. "/share/lua/5.4/fmap/probe.lua",
                  'return "installed"')
      local out, err = run{ bin = prefix .. "/bin/fmap",
                            args = { "-e", "print((require 'fmap.probe'))" } }
      local out2 = run{ bin = prefix .. "/link",
                        args = { "-e", "print((require 'fmap.probe'))" } }
      rmdir(prefix)
      assert.equal("", err)
      assert.equal("installed\n", out)
      assert.equal("installed\n", out2)
    end)

    it("loads Debian's Lua C modules as lua5.4 does", function()
      local out, err = run{ args = { "-e", "print(type(require 'lfs'.dir), "
        .. "type(require 'system'.gettime), type(require 'term'.isatty))" } }
      assert.equal("", err)
      assert.equal("function\tfunction\tfunction\n", out)
    end)
  end)

  describe("errors", function()
    it("reports a runtime error with a traceback, status 1", function()
      local s = script('local function f() error("boom") end\nf()\n')
      local out, err, status = run{ args = { s } }
      assert.equal("", out)
      assert.equal(1, status)
      assert.matches("^fmap: " .. s:gsub("%p", "%%%0") .. ":1: boom\n"
                     .. "stack traceback:\n", err)
      assert.matches("in local 'f'", err, 1, true)
    end)

    it("refuses an arg whose __len gives no count of arguments", function()
      local s = script("print('ran')\n")
      for _, len in ipairs { "2^31", "-1", "math.maxinteger" } do
        local out, err, status = run{ args = { "-e",
          "setmetatable(arg, {__len = function() return " .. len
          .. " end})", s } }
        assert.equal("", out)
        assert.matches("^fmap: 'arg' has a length of %-?%d+: no count of "
                       .. "arguments\n", err)
        assert.equal(1, status)
      end
    end)

    it("turns a growth past the file-size limit into allocate's error",
       function()
      local path = tmppath(".fmap")
      local s = script(([[
        local bf = assert(require("fmap").create(%q))
        local n, off, msg, en = 0
        repeat
          off, msg, en = bf:allocate()
          n = n + 1
        until not off
        print(msg, en, n > 100, bf:check())
        bf:close()
      ]]):format(path))
      local out, status = h.run("ulimit -f 1000 && " .. CLEAN_ENV
                                .. q(BIN) .. " " .. q(s) .. " 2>&1")
      os.remove(path)
      assert.equal(path .. ": File too large\t27\ttrue\ttrue\n", out)
      assert.equal(0, status)
    end)

    it("prints an error object through its __tostring", function()
      local _, err, status = run{ args = { "-e",
        "error(setmetatable({}, {__tostring = function() return 'obj!' "
        .. "end}))" } }
      assert.equal("fmap: obj!\n", err)
      assert.equal(1, status)
    end)

    it("names the type of an error object without __tostring", function()
      local _, err, status = run{ args = { "-e", "error({})" } }
      assert.matches("^fmap: %(error object is a table value%)\n", err)
      assert.equal(1, status)
      _, err = run{ args = { "-e", "error()" } }
      assert.matches("^fmap: %(error object is a nil value%)\n", err)
    end)

    it("reports a missing script, status 1", function()
      local out, err, status = run{ args = { "/no/such/script.lua" } }
      assert.equal("", out)
      assert.equal("fmap: cannot open /no/such/script.lua\n",
                   err:gsub(":[^:]*\n$", "\n"))
      assert.equal(1, status)
    end)

    it("reports a script that cannot be read, status 1", function()
      local _, err, status = run{ args = { "/" } }
      assert.equal("fmap: cannot read /: Is a directory\n", err)
      assert.equal(1, status)
    end)

    it("reports a script that does not parse, status 1", function()
      local s = script('x = = 1\n')
      local out, err, status = run{ args = { s } }
      assert.equal("", out)
      assert.equal("fmap: " .. s .. ":1: unexpected symbol near '='\n", err)
      assert.equal(1, status)
    end)

    it("prints lua's usage for an unknown option, status 1", function()
      for _, bad in ipairs({ "-x", "-ix", "-vv", "--x", "-Ex", "-Wx", "-h",
                             "--help", "-hx" }) do
        local out, err, status = run{ args = { bad, "-e", "print(1)" } }
        assert.equal("", out)
        assert.equal("fmap: unrecognized option '" .. bad .. "'\n" .. USAGE,
                     err)
        assert.equal(1, status)
      end
    end)

    it("refuses -h and --help as lua does, running nothing; after the "
       .. "script, they are the script's", function()
      for _, case in ipairs({ { "-h" }, { "--help" },
                              { "-e", "print(1)", "-h" },
                              { "-v", "--help", "-e", "x()" } }) do
        local out, err, status = run{ args = case }
        local bad = case[1] == "-v" and "--help" or case[#case]
        assert.equal("", out)
        assert.equal("fmap: unrecognized option '" .. bad .. "'\n" .. USAGE,
                     err)
        assert.equal(1, status)
      end
      local s = tmpfile("print(...)\n")
      local out, _, status = run{ args = { s, "-h" } }
      os.remove(s)
      assert.equal("-h\n", out)
      assert.equal(0, status)
    end)

    it("says that -e and -l need an argument", function()
      for _, args in ipairs({ { "-e" }, { "-l" }, { "-e", "-v" } }) do
        local _, err, status = run{ args = args }
        assert.equal("fmap: '" .. args[1] .. "' needs argument\n" .. USAGE,
                     err)
        assert.equal(1, status)
      end
    end)

    it("stops a running script on SIGINT with 'interrupted!'", function()
      local ready, errpath = tmppath(".ready"), tmppath(".err")
      local code = string.format(
        "io.open(%q, 'w'):close() while true do end", ready)
      local out = h.run(CLEAN_ENV .. "sh -c " .. q(
        AS_FMAP .. " -e " .. q(code) .. " 2>" .. q(errpath) .. " & pid=$!; "
        .. "n=0; until [ -e " .. q(ready) .. " ] || [ $n -gt 200 ]; do "
        .. "sleep 0.05; n=$((n+1)); done; kill -INT $pid; wait $pid; "
        .. "echo $?"))
      local err = h.readfile(errpath)
      os.remove(ready)
      os.remove(errpath)
      assert.equal("1\n", out)
      assert.matches("^fmap: interrupted!\nstack traceback:", err)
    end)

    -- Runs code (which creates the file ready when its loop starts) in a
    -- child host, sends it SIGINT delay seconds after, and returns the
    -- child's exit status and its stderr.
    local function interrupt (code, ready, delay)
      local errpath = tmppath(".err")
      local out = h.run(CLEAN_ENV .. "sh -c " .. q(
        AS_FMAP .. " -e " .. q(code) .. " 2>" .. q(errpath) .. " & pid=$!; "
        .. "n=0; until [ -e " .. q(ready) .. " ] || [ $n -gt 400 ]; do "
        .. "sleep 0.05; n=$((n+1)); done; sleep " .. delay .. "; "
        .. "kill -INT $pid; wait $pid; echo $?"))
      local err = h.readfile(errpath)
      os.remove(errpath)
      os.remove(ready)
      return tonumber(out:match("^(%d+)")), err
    end

    it("lets the structures' operation under way end before it stops: "
       .. "each verifies after", function()
      -- Stopped at any instruction, about 1 run in 3 of this loop left a
      -- structure half-changed (cells that overlap, a list naming a freed
      -- blob); five runs at different moments.
      for run = 1, 5 do
        local path, ready = tmppath(".fmap"), tmppath(".ready")
        local status, err = interrupt(string.format([[
          local fmap = require "fmap"
          local bf = assert(fmap.create(%q))
          local t = fmap.bptree.new(bf, -1, -1)
          local vc, l = fmap.varchar.new(bf), fmap.mmlist.new(bf)
          bf:set_control_data(t:offset() .. " " .. vc:offset() .. " "
                              .. l:offset())
          for i = 1, 2000 do t:add("k" .. i, ("v"):rep(i %% 50)) end
          io.open(%q, "w"):close()
          local i = 0
          while true do
            i = i + 1
            t:remove("k" .. i %% 2000)
            t:add("k" .. i %% 2000, ("w"):rep(i %% 70))
            vc:free(vc:put(("x"):rep(i %% 300)))
            l:append(("y"):rep(100))
            l:pop()
          end]], path, ready), ready, 0.05 + run * 0.07)
        assert.equal(1, status, err)
        -- stopped in the script's loop, not in a structure's file
        assert.matches("^fmap: [^\n]*interrupted!\n", err)
        assert.is_nil(err:match("^fmap: [^\n]*fmap/%a+%.lua:%d+: "
                                .. "interrupted"), err)
        local out = h.run(CLEAN_ENV .. q(BIN) .. " -e " .. q(string.format([[
          local fmap = require "fmap"
          local bf = assert(fmap.open(%q))
          local a, b, c = bf:control_data():match("(%%d+) (%%d+) (%%d+)")
          print(fmap.bptree.open_at(bf, tonumber(a)):verify(),
                fmap.varchar.open(bf, tonumber(b)):verify(),
                fmap.mmlist.open(bf, tonumber(c)):verify())]], path)))
        os.remove(path)
        assert.equal("true\ttrue\ttrue\n", out, "run " .. run)
      end
    end)

    it("stops an operation that does not end, after the grace, and says "
       .. "where", function()
      local ready = tmppath(".ready")
      local status, err = interrupt(string.format([[
        local fmap = require "fmap"
        local t = fmap.bptree.new(fmap.anonymous(), -1, -1)
        t:add("k", "v")
        t:remove("k", function ()   -- ready once inside the tree's remove
          io.open(%q, "w"):close()
          while true do end
        end)]], ready), ready, 0.1)
      assert.equal(1, status, err)
      assert.matches("^fmap: [^\n]*bptree.lua:%d+: interrupted! %(after 2.0 s "
                     .. "inside fmap/bptree.lua, which may have left a "
                     .. "structure half%-changed: verify it%)\n", err)
    end)

    it("waits as well for a module that declares itself a structure",
       function()
      -- the host names no structure: fmap.guard's list is what it reads
      local dir, ready = tmpdir(), tmppath(".ready")
      -- spin says it is ready from inside the module, where the signal
      -- must find it
      h.writefile(dir .. "/spinner.lua", 'require("fmap.guard").structure('
                  .. '"the spinner")\nreturn { spin = function (ready) '
                  .. 'io.open(ready, "w"):close() while true do end end }\n')
      local status, err = interrupt(string.format([[
        package.path = %q .. "/?.lua;" .. package.path
        local spinner = require "spinner"
        spinner.spin(%q)]], dir, ready), ready, 0.1)
      rmdir(dir)
      assert.equal(1, status, err)
      assert.matches("^fmap: [^\n]*interrupted! %(after 2.0 s inside the "
                     .. "spinner, which may have left a structure "
                     .. "half%-changed: verify it%)\n", err)
    end)
  end)

  describe("beside lua5.4", function()
    local has_lua = os.execute("command -v lua5.4 >/dev/null 2>&1")

    it("prints the same output and exits with the same status", function()
      if not has_lua then
        pending("lua5.4 is not installed")
        return
      end
      local s = script('print(#arg, ...) io.stderr:write("to stderr\\n")')
      local e = script('error("boom")')
      local cases = {
        { s, "a" }, { "--", s }, { "-e", "print(1)", s, "b" },
        { "-e" }, { "-l" }, { "-x" }, { "-i", "-x" }, { e },
        { "-e", "error({})" }, { "-e", "x = = 1" }, { "/" },
        { "-W", "-e", "warn('w')" }, { "-", "q" }, { "-e", "os.exit(3)" },
        { "-h" }, { "--help" }, { "-E", "-e", "print(package.path, "
                                  .. "package.cpath)" }, {},
      }
      for _, args in ipairs(cases) do
        local out, err, status = run{ args = args, stdin = "print('in')" }
        local lout, lerr, lstatus = run{ bin = "lua5.4", args = args,
                                         stdin = "print('in')" }
        local label = table.concat(args, " ")
        assert.equal(lstatus, status, label)
        assert.equal(lout, out, label)
        assert.equal((lerr:gsub("lua5%.4", "fmap")), err, label)
      end
    end)
  end)
end)

describe("the REPL through a pipe (fmap -i < file)", function()
  local function session (input, opts)
    opts = opts or {}
    local args = opts.args or { "-i" }
    return run{ args = args, stdin = input, env = opts.env, bin = opts.bin }
  end

  it("shows the banner, then echoes each line after its prompt",
     function()
    local out, err, status = session("1 + 1\n")
    assert.equal("", err)
    assert.equal(0, status)
    local banner, hint, rest = out:match("^([^\n]*)\n([^\n]*)\n(.*)$")
    assert.equal(fmap.VERSION .. " on " .. _VERSION,
                 banner:match("^(fmap %S+ on Lua 5%.4)"))
    assert.matches("help%(%)", hint)
    assert.equal("> 1 + 1\n2\n> \n", rest)
  end)

  it("prints expressions without '=' or return, and '=x' too", function()
    local out = session("x = 6 * 7\nx\n=x\nreturn x, 'y'\n")
    assert.matches("\n> x = 6 %* 7\n> x\n42\n> =x\n42\n"
                   .. "> return x, 'y'\n42\ty\n> \n$", out)
  end)

  it("goes on when fmap.repl's table is given an __index that raises",
     function()
    local out, err, status = session('r = require "fmap.repl"; r.show = nil; '
      .. 'setmetatable(r, {__index = function() error("boom") end})\n'
      .. '1 + 1\nprint("still here")\n')
    assert.equal("", err)
    assert.equal(0, status)
    assert.matches("\n> 1 %+ 1\n2\n> print%(\"still here\"%)\nstill here\n> \n$",
                   out)
  end)

  it("continues an incomplete chunk on '>>'", function()
    local out = session("for i = 1, 2 do\nprint(i)\nend\n")
    assert.matches("> for i = 1, 2 do\n>> print%(i%)\n>> end\n1\n2\n> \n$",
                   out)
  end)

  it("reports an unfinished chunk at the end of input", function()
    local _, err, status = session("for i = 1, 2 do\n")
    assert.equal("stdin:1: 'end' expected near <eof>\n", err)
    assert.equal(0, status)
  end)

  it("prints an error and its traceback, then goes on", function()
    local out, err = session("error('oops')\n'after'\n")
    assert.equal("stdin:1: oops\nstack traceback:\n\t[C]: in function "
                 .. "'error'\n\tstdin:1: in main chunk\n\t[C]: in ?\n", err)
    assert.matches("> 'after'\nafter\n", out)
  end)

  it("prints a syntax error and goes on", function()
    local out, err = session("x = = 1\n2\n")
    assert.equal("stdin:1: unexpected symbol near '='\n", err)
    assert.matches("> 2\n2\n", out)
  end)

  it("prints tables nested, keys sorted", function()
    local out = session("{ 3, 4, z = 1, a = { b = true }, [10] = 'x' }\n")
    assert.matches('\n{ 3, 4, %[10%] = "x", a = { b = true }, z = 1 }\n',
                   out)
  end)

  it("prints BlockFiles and views as one-line summaries", function()
    local out = session("bf = fmap.anonymous()\nbf\n"
                        .. "v = bf:get(bf:allocate())\nv\n")
    assert.matches("\n> bf\nBlockFile %(anonymous, [^\n]*%)\n", out)
    assert.matches("\n> v\nview %(offset 4096, 4096 bytes, live%)\n", out)
  end)

  it("prints v:hex() as a hexdump", function()
    local out = session("bf = fmap.anonymous() v = bf:get(bf:allocate())\n"
                        .. "v:write(0, 'hello')\nv:hex(0, 16)\n")
    assert.matches("\n> v:hex%(0, 16%)\n00000000  68 65 6c 6c 6f 00 00 00  "
                   .. "00 00 00 00 00 00 00 00  |hello%.%.%.%.%.%.%.%.%.%.%.|"
                   .. "\n> ", out)
  end)

  it("has help() listing the API and help(x) describing x", function()
    local out = session("help()\nhelp(fmap.open)\n")
    assert.matches("\n  bf:allocate%(%) %-> offset +allocates one", out)
    assert.matches("\nfmap%.open%(path %[, opts%]%) %-> bf | nil, msg, "
                   .. "errno\n  opens an existing block file, or with create "
                   .. "makes it if it is missing\n", out)
  end)

  it("runs a script first with -i, then keeps its globals", function()
    local s = tmpfile("answer = 42\nprint('script ran')\n")
    local out = session("answer\n", { args = { "-i", s } })
    os.remove(s)
    assert.matches("\nscript ran\n", out)
    assert.matches("> answer\n42\n", out)
  end)

  it("prints results through the global print once a script replaces it",
     function()
    local out, err = session("print = function (...) io.write('P', "
                             .. "select('#', ...), '\\n') end\n1, {}\n"
                             .. "print = nil\n2\n")
    assert.matches("\n> 1, {}\nP2\n> print = nil\n> 2\n> \n$", out)
    assert.equal("error calling 'print' (attempt to call a nil value)\n", err)
  end)

  it("uses _PROMPT and _PROMPT2", function()
    local out = session("_PROMPT = 'P: ' _PROMPT2 = 'P2: '\nif true then\n"
                        .. "end\n")
    assert.matches("\nP: if true then\nP2: end\nP: \n$", out)
  end)

  it("survives a broken _PROMPT, too many results and a hostile _G",
     function()
    local out, err, status = session(
      "_PROMPT = setmetatable({}, { __tostring = error })\n1\n"
      .. "table.unpack({}, 1, 999980)\n2\n"
      .. "_PROMPT = nil setmetatable(_G, { __index = error })\n3\n")
    assert.equal(0, status)
    assert.equal("too many results to print\n", err)
    assert.matches("\n> 1\n1\n", out)
    assert.matches("\n> 2\n2\n", out)
    assert.matches("\n> 3\n3\n> \n$", out)
  end)

  it("stops at os.exit with its status", function()
    local out, _, status = session("os.exit(5)\nprint('not here')\n")
    assert.equal(5, status)
    assert.not_matches("not here\n", out)
  end)

  it("works with plain print when lua/fmap is not found", function()
    local dir = tmpdir()
    assert(os.execute("cp " .. q(BIN) .. " " .. q(dir .. "/fmap")))
    local out, err, status = session("{1}\n1 + 1\n", { bin = dir .. "/fmap" })
    rmdir(dir)
    assert.equal(0, status)
    assert.equal(dir .. "/fmap: the REPL's helpers did not load; printing "
                 .. "with print\n", err:match("^[^\n]*\n"))
    assert.matches("> {1}\ntable: 0x%x+\n> 1 %+ 1\n2\n", out)
  end)
end)

describe("fmap.repl", function()
  describe(".format()", function()
    it("prints scalars as Lua reads them", function()
      assert.equal("42", repl.format(42))
      assert.equal("1.5", repl.format(1.5))
      assert.equal("2.0", repl.format(2.0))
      assert.equal("nil", repl.format(nil))
      assert.equal("true", repl.format(true))
      assert.equal('"a\\"b\\n\\0001"', repl.format('a"b\n\0' .. '1'))
    end)

    it("escapes bytes that are not UTF-8, keeps UTF-8 text", function()
      assert.equal('"\\255\\0"', repl.format("\255\0"))
      assert.equal('"h\\195"', repl.format("h\195"))
      assert.equal('"héllo"', repl.format("héllo"))
    end)

    it("nests tables, sequence first, other keys sorted", function()
      assert.equal('{ 1, 2, [2.5] = 0, ["a b"] = 1, x = { y = {} }, '
                   .. '[true] = 1 }',
                   repl.format({ 1, 2, x = { y = {} }, ["a b"] = 1,
                                 [2.5] = 0, [true] = 1 }))
    end)

    it("breaks a table that does not fit over lines", function()
      local t = { alpha = string.rep("a", 40), beta = string.rep("b", 40) }
      assert.equal('{\n  alpha = "' .. t.alpha .. '",\n  beta = "'
                   .. t.beta .. '",\n}', repl.format(t))
    end)

    it("marks a cycle and stops at the depth limit", function()
      local t = { name = "t" }
      t.self = t
      assert.equal('{ name = "t", self = <cycle> }', repl.format(t))
      local deep = { a = { b = { c = { d = { e = {} } } } } }
      assert.equal("{ a = { b = { c = { d = {...} } } } }",
                   repl.format(deep))
    end)

    it("prints a table met twice, not in a cycle, twice", function()
      local shared = { 1 }
      assert.equal("{ { 1 }, { 1 } }", repl.format({ shared, shared }))
    end)

    it("cuts long tables and long strings", function()
      local t = {}
      for i = 1, repl.MAX_ITEMS + 5 do t[i] = i end
      local s = repl.format(t)
      assert.equal("\n  50,\n  ...(5 more),\n}", s:sub(-23))
      local long = repl.format({ string.rep("x", repl.MAX_STRING + 10) })
      assert.equal('{\n  "' .. string.rep("x", repl.MAX_STRING)
                   .. '"..(10 more bytes),\n}', long)
    end)

    it("prints through __tostring, and survives one that fails",
       function()
      local ok = setmetatable({}, { __tostring = function() return "OK" end })
      local bad = setmetatable({}, { __tostring = function() error("no") end })
      assert.equal("{ OK }", repl.format({ ok }))
      assert.matches("^<table: __tostring failed: .*no>$", repl.format(bad))
    end)

    it("reads without calling __index or __pairs", function()
      local t = setmetatable({ a = 1 }, {
        __index = function() error("__index called") end,
        __pairs = function() error("__pairs called") end })
      assert.equal("{ a = 1 }", repl.format(t))
    end)

    it("summarises BlockFiles and views", function()
      local bf = fmap.anonymous()
      local v = bf:get(bf:allocate())
      assert.equal("{\n  " .. tostring(bf) .. ",\n  " .. tostring(v)
                   .. ",\n}", repl.format({ bf, v }))
      v:release()
      bf:close()
    end)
  end)

  describe(".complete()", function()
    before_each(function()
      _G.zz_spec = { alpha = 1, alps = 2, fn = function() end,
                     sub = { deep = true } }
      _G.zz_spec_bf = fmap.anonymous()
    end)
    after_each(function()
      _G.zz_spec_bf:close()
      _G.zz_spec, _G.zz_spec_bf = nil, nil
    end)

    it("completes globals and keywords", function()
      assert.same({ "zz_spec", "zz_spec_bf" }, repl.complete("zz_"))
      assert.same({ "function" }, repl.complete("functio"))
      assert.same({ "while" }, repl.complete("whil"))
    end)

    it("completes fields after '.', nested", function()
      assert.same({ "zz_spec.alpha", "zz_spec.alps" },
                  repl.complete("zz_spec.al"))
      assert.same({ "zz_spec.sub.deep" }, repl.complete("zz_spec.sub."))
      assert.same({ "string.format" }, repl.complete("string.form"))
    end)

    it("completes only methods after ':'", function()
      assert.same({ "zz_spec:fn" }, repl.complete("zz_spec:"))
    end)

    it("completes BlockFile methods through the metatable's __index",
       function()
      assert.same({ "zz_spec_bf:allocate", "zz_spec_bf:allocate_blocks" },
                  repl.complete("zz_spec_bf:alloc"))
      local v = zz_spec_bf:get(zz_spec_bf:allocate())
      _G.zz_spec_v = v
      assert.same({ "zz_spec_v:u16", "zz_spec_v:u32", "zz_spec_v:u64",
                    "zz_spec_v:u8", "zz_spec_v:unpack" },
                  repl.complete("zz_spec_v:u"))
      _G.zz_spec_v = nil
      v:release()
    end)

    it("leaves metamethods out unless asked for", function()
      local Class = { __tostring = function() return "obj" end }
      Class.__index = Class
      Class.method = function() end
      _G.zz_spec_obj = setmetatable({}, Class)
      assert.same({ "zz_spec_obj:method" }, repl.complete("zz_spec_obj:"))
      assert.same({ "zz_spec_obj:__tostring" },
                  repl.complete("zz_spec_obj:__"))
      assert.same({ "zz_spec_obj.__index", "zz_spec_obj.__tostring" },
                  repl.complete("zz_spec_obj.__"))
      _G.zz_spec_obj = nil
    end)

    it("completes string methods", function()
      _G.zz_spec_s = "text"
      assert.same({ "zz_spec_s:upper" }, repl.complete("zz_spec_s:upp"))
      _G.zz_spec_s = nil
    end)

    it("finds nothing behind an unknown name, and calls no __index",
       function()
      assert.same({}, repl.complete("no_such_global.x"))
      assert.same({}, repl.complete("zz_spec.alpha.x"))
      assert.same({}, repl.complete("1.5"))
      _G.zz_spec_trap = setmetatable({}, {
        __index = function() error("__index called") end })
      assert.same({}, repl.complete("zz_spec_trap.x"))
      _G.zz_spec_trap = nil
    end)
  end)
end)

describe("fmap.help", function()
  it("describes every method the binding registers", function()
    local reg = debug.getregistry()
    for _, spec in ipairs({ { "fmap.BlockFile", "bf:" },
                            { "fmap.View", "v:" } }) do
      for name in pairs(rawget(reg[spec[1]], "__index")) do
        assert.not_matches("not described",
                           help.text(spec[2] .. name), spec[2] .. name)
        assert.not_matches("no help for",
                           help.text(spec[2] .. name), spec[2] .. name)
      end
    end
    for name, f in pairs(fmap) do
      if type(f) == "function" then
        assert.matches("^fmap%." .. name .. "%(", help.text(f))
      end
    end
  end)

  it("lists the API with help()", function()
    local text = help.text()
    assert.matches("\n  fmap%.anonymous%(%[block_size%]%) %-> bf +", text)
    assert.matches("\n  v:hex%(%[pos %[, len%]%]%) %-> string +", text)
  end)

  it("describes a function by value or by name", function()
    local bf = fmap.anonymous()
    assert.equal(help.text("bf:get"), help.text(bf.get))
    assert.equal(help.text("bf:get"), help.text("get"))
    assert.matches("^bf:get%(offset %[, blocks%]%) %-> view\n", help.text(bf.get))
    bf:close()
  end)

  it("describes the REPL's show by value as by name", function()
    local wrapper = function (...) return ... end   -- as the REPL sets it
    local saved = rawget(_G, "show")
    _G.show = wrapper
    local text = help.text(wrapper)
    _G.show = saved
    assert.equal(help.text("show"), text)
    assert.matches("^show%(tree_or_bf%) %-> path\n", text)
  end)

  it("describes a BlockFile and a view with their methods", function()
    local bf = fmap.anonymous()
    local v = bf:get(bf:allocate())
    local text = help.text(bf)
    assert.equal(tostring(bf), text:match("^[^\n]*"))
    assert.matches("\n  bf:free_list%(%) %-> list", text)
    text = help.text(v)
    assert.equal(tostring(v), text:match("^[^\n]*"))
    assert.matches("\n  v:u32%(pos%) %-> n +reads a little%-endian unsigned "
                   .. "integer", text)
    v:release()
    bf:close()
  end)

  it("describes a Lua function by the LDoc comment above it", function()
    local text = help.text(repl.format)
    assert.matches("^fmap%.repl%.format%(v%)\n  Formats a value for reading",
                   text)
  end)

  it("describes a module's functions", function()
    local text = help.text(repl)
    assert.matches("\n  fmap%.repl%.complete%(text%) +Completes the word", text)
  end)

  it("points a standard function to the Lua manual", function()
    assert.equal("print: a built-in function; see https://www.lua.org/"
                 .. "manual/5.4/manual.html#pdf-print", help.text(print))
  end)

  it("describes a structure's methods by name, with its object's name",
     function()
    assert.matches("^t:add%(key, value%) %-> [^\n]*  %-%- a method of "
                   .. "fmap%.bptree\n  adds an entry", help.text("t:add"))
    assert.equal(help.text("t:add"), help.text("add"))
    assert.equal(help.text("t:add"), help.text("tree:add"))
    assert.matches("^t:remove%(key %[, where%]%)", help.text("tree:remove"))
    assert.matches("^l:get%(i%) %-> s  %-%- a method of fmap%.mmlist\n",
                   help.text("l:get"))
    assert.matches("^vc:put%(data%) %-> [^\n]*  %-%- a method of "
                   .. "fmap%.varchar\n", help.text("s:put"))
    assert.equal(help.text("vc:put"), help.text("s:put"))
    -- the engine's own names come first, and private methods stay private
    assert.matches("^bf:get%(", help.text("get"))
    assert.matches("^no help for", help.text("t:_put"))
    assert.matches("^no help for", help.text("t:nothing"))
    -- optional parameters in brackets; internal ones ("_up") left out
    assert.matches("\n  fmap%.blockmap%.png%(src %[, opts%]%) ",
                   help.text(require("fmap.blockmap")))
    assert.matches("^t:dot%(%[opts%]%)", help.text("t:dot"))
  end)

  it("has an LDoc comment for every public function of the Lua modules",
     function()
    -- help(f) shows the comment above f: a helper put between the two
    -- would leave f without one
    local missing = {}
    local function check (t, where)
      for k, f in pairs(t) do
        if type(k) == "string" and type(f) == "function"
           and k:sub(1, 1) ~= "_" and not help.ldoc(f) then
          missing[#missing + 1] = where .. k
        end
      end
    end
    for _, m in ipairs({ "fmap.bptree", "fmap.varchar", "fmap.mmlist",
                         "fmap.codec", "fmap.dot", "fmap.blockmap",
                         "fmap.classify", "fmap.audit", "fmap.repl",
                         "fmap.guard", "fmap.cli", "fmap.workload",
                         "fmap.png", "fmap.help", "fmap.argcheck",
                         "fmap.kit", "fmap.dump", "fmap.progress" }) do
      local mod = require(m)
      check(mod, m .. ".")
      if type(rawget(mod, "_methods")) == "table" then
        check(mod._methods, m .. ":")
      end
    end
    table.sort(missing)
    assert.same({}, missing)
  end)

  it("lists a structure's public API only", function()
    local bptree = require "fmap.bptree"
    local text = help.text(bptree)
    assert.matches("\n  fmap%.bptree%.open_at%(bf, offset%) ", text)
    local bf <close> = fmap.anonymous()
    local t = bptree.new(bf, 8, 8)
    text = help.text(t)
    assert.matches("\nMethods:\n  t:add%(key, value%) ", text)
    assert.not_matches("search", text)       -- its searchers are private
    text = help.text(require("fmap.mmlist").new(bf))
    assert.matches("\nMethods:\n  l:append%(s%) ", text)
    text = help.text(require("fmap.varchar").new(bf))
    assert.matches("\nMethods:\n  vc:alloc%(length%) ", text)
    assert.not_matches("_put", text)
  end)

  it("says when it has nothing", function()
    assert.equal('no help for "zzz"; help() lists what there is',
                 help.text("zzz"))
    assert.equal("3: a number value", help.text(3))
  end)
end)

describe("scripts/inspect.lua", function()
  local path
  local INSPECT = ROOT .. "/scripts/inspect.lua"
  before_each(function()
    path = tmppath(".fmap")
    local bf = assert(fmap.create(path))
    local a = bf:allocate()
    local run_ = bf:allocate_blocks(3)
    bf:with(a, 1, function (v) v:write(0, "hello") end)
    bf:free(run_, 2)
    bf:set_control_data("root=" .. a .. "\0")
    bf:close()
  end)
  after_each(function() os.remove(path) end)

  it("prints the header and 'check ok', status 0", function()
    local out, err, status = run{ args = { INSPECT, path } }
    assert.equal("", err)
    assert.equal(0, status)
    assert.equal(path .. "\n"
      .. "  format         version " .. fmap.FORMAT_VERSION .. "\n"
      .. "  block size     4096 bytes\n"
      .. "  size           20480 bytes, 5 blocks\n"
      .. "  blocks         2 used, 2 free in 1 run, 0 never allocated (tail)\n"
      .. '  control data   10 of 1920 bytes: "root=4096\\0"\n'
      .. "  journal        none (every commit is in the file)\n"
      .. "  check          ok\n", out)
  end)

  it("lists the free list with --free", function()
    local out = run{ args = { INSPECT, "--free", path } }
    assert.matches("\nfree list: 2 blocks in 1 run, head first\n"
                   .. "  offset 8192 +2 blocks\n$", out)
  end)

  it("hexdumps a block with --block, in decimal or hex", function()
    local out, err, status = run{ args = { INSPECT, path, "--block",
                                           "0x1000", "--block=8192" } }
    assert.equal("", err)
    assert.equal(0, status)
    assert.matches("\nblock at offset 4096 %(allocated, no structure's%):"
                   .. "\n00000000  68 65 6c 6c 6f 00", out)
    assert.matches("\nblock at offset 8192 %(free%):\n00000000  ", out)
  end)

  it("says what a structure's block is with --block", function()
    local p2 = tmppath(".fmap")
    local bf = assert(fmap.create(p2))
    local t = fmap.bptree.new(bf, 8, 8)
    for i = 1, 2000 do t:add(string.pack(">I8", i), "12345678") end
    local meta, leaf = t:offset(), t.root
    bf:close()
    local out, err, status = run{ args = { INSPECT, p2, "--block", meta,
                                           "--block", leaf } }
    os.remove(p2)
    assert.equal("", err)
    assert.equal(0, status)
    assert.matches("\nblock at offset " .. meta .. " %(allocated: meta of "
                   .. "bptree@" .. meta .. "%):\n", out)
    assert.matches("\nblock at offset " .. leaf .. " %(allocated: internal "
                   .. "of bptree@" .. meta .. "%):\n", out)
  end)

  it("exits 1 listing the problems of a damaged file", function()
    local f = assert(io.open(path, "r+b"))
    f:seek("set", 8192)
    f:write("XXXXXXXX")  -- the free run's mark
    f:close()
    local out, _, status = run{ args = { INSPECT, "--free", path } }
    assert.equal(1, status)
    assert.matches("\n  check          %d+ problems?:\n    ", out)
    assert.matches("\nfree list: cannot be walked: ", out)
  end)

  it("exits 1 when the file cannot be opened", function()
    local _, err, status = run{ args = { INSPECT, "/no/such.fmap" } }
    assert.equal("inspect: /no/such.fmap: No such file or directory\n", err)
    assert.equal(1, status)
    h.writefile(path, string.rep("x", 8192))
    _, err, status = run{ args = { INSPECT, path } }
    assert.matches("^inspect: " .. path:gsub("%p", "%%%0") .. ": ", err)
    assert.equal(1, status)
  end)

  it("exits 2 with its usage on bad arguments", function()
    for _, args in ipairs({ {}, { "--bogus", path }, { "--block", path },
                            { "--block", "x", path }, { path, path } }) do
      local _, err, status = run{ args = { INSPECT, table.unpack(args) } }
      assert.equal(2, status)
      assert.matches("\nusage: fmap scripts/inspect.lua ", err)
    end
  end)

  it("refuses a --block that is not a block of the file, before it prints",
     function()
    for _, off in ipairs({ "100", "4096000" }) do
      local out, err, status = run{ args = { INSPECT, "--block", off, path } }
      assert.equal(2, status)
      assert.equal("", out)
      assert.matches("^inspect: %-%-block " .. off, err)
      assert.matches("\nusage: fmap scripts/inspect.lua ", err)
    end
  end)
end)

describe("the REPL in a terminal (tmux)", function()
  -- capture-pane prints every row of the pane, trailing spaces trimmed:
  -- an empty prompt reads "\n>\n".
  local has_tmux = os.execute("command -v tmux >/dev/null 2>&1")
  local sock, home

  local function tmux (args)
    return (h.run("tmux -S " .. q(sock) .. " " .. args .. " 2>&1"))
  end

  local function screen ()
    return tmux("capture-pane -p -t fmap")
  end

  -- Waits until the screen shows text; fails with the screen if it does
  -- not within 10 seconds (the sanitizer build starts slowly).
  local function wait_for (text)
    local s
    for _ = 1, 200 do
      s = screen()
      if s:find(text, 1, true) then return s end
      os.execute("sleep 0.05")
    end
    error("the screen never showed " .. string.format("%q", text) .. ":\n"
          .. s, 2)
  end

  local function keys (...)
    tmux("send-keys -t fmap " .. table.concat({ ... }, " "))
  end

  local function type_text (text)
    tmux("send-keys -t fmap -l " .. q(text))
  end

  local function type_line (text)
    type_text(text)
    keys("Enter")
  end

  -- The pane's process has ended: its exit status.
  local function wait_exit ()
    local dead
    for _ = 1, 200 do
      dead = tmux("display-message -p -t fmap "
                  .. q("#{pane_dead} #{pane_dead_status} "
                       .. "#{pane_dead_signal}"))
      -- dead as soon as the terminal closes; the status comes after
      local status = dead:match("^1 (%d+)")
      if status then return tonumber(status) end
      if dead:match("^1") then
        -- tmux 3.3 can miss the SIGCHLD of a pane that exits while it
        -- updates utmp (tmux issue #311): remind its server, which this
        -- spec started, to reap it
        local pid = tmux("display-message -p " .. q("#{pid}")):match("%d+")
        if pid then os.execute("kill -CHLD " .. pid) end
      end
      os.execute("sleep 0.05")
    end
    error("the REPL did not leave: " .. dead .. "\n" .. screen(), 2)
  end

  local function start ()
    local env = { "HOME=" .. q(home) }
    for _, k in ipairs({ "ASAN_OPTIONS", "UBSAN_OPTIONS" }) do
      if os.getenv(k) then env[#env + 1] = k .. "=" .. q(os.getenv(k)) end
    end
    tmux("new-session -d -s fmap -x 100 -y 40 "
         .. q(CLEAN_ENV .. table.concat(env, " ") .. " " .. q(BIN)))
    tmux("set-option -t fmap remain-on-exit on")
    wait_for("\n>\n")
  end

  before_each(function()
    if not has_tmux then return end
    sock = tmppath(".sock")
    home = tmpdir()
    start()
  end)

  after_each(function()
    if not has_tmux then return end
    tmux("kill-server")
    os.remove(sock)
    rmdir(home)
  end)

  local function tmux_it (name, f)
    it(name, function()
      if not has_tmux then
        pending("tmux is not installed")
        return
      end
      f()
    end)
  end

  tmux_it("shows the banner and a prompt", function()
    local s = screen()
    assert.matches("^fmap %S+ on Lua 5%.4", s)
    assert.matches("\n[^\n]*help%(%)[^\n]*\n>\n", s)
  end)

  tmux_it("continues a multi-line chunk on '>>' and runs it", function()
    type_line("for i = 1, 3 do")
    wait_for("\n>>\n")
    type_line("io.write(i * 11, ' ')")
    type_line("end")
    wait_for("> for i = 1, 3 do\n>> io.write(i * 11, ' ')\n>> end\n"
             .. "11 22 33 >\n")
  end)

  tmux_it("prints results, nested tables and view summaries", function()
    type_line("t = { 1, 2, { a = 'b' } }")
    type_line("t")
    wait_for('\n{ 1, 2, { a = "b" } }\n>\n')
    type_line("bf = fmap.anonymous()")
    type_line("bf:get(bf:allocate())")
    wait_for("\nview (offset 4096, 4096 bytes, live)\n>\n")
  end)

  tmux_it("prints an error with its traceback, and goes on", function()
    type_line("error('oops')")
    wait_for("\nstdin:1: oops\nstack traceback:\n")
    type_line("6 * 7")
    wait_for("\n42\n>\n")
  end)

  tmux_it("completes globals, fields and methods with Tab", function()
    type_text("string.for")
    keys("Tab")
    wait_for("\n> string.format\n")
    keys("C-u")
    type_line("bf = fmap.anonymous()")
    type_text("bf:allocate_b")
    keys("Tab")
    wait_for("\n> bf:allocate_blocks\n")
    keys("C-u")
    type_text("bf:set")
    keys("Tab")  -- the common part; then readline's second Tab lists
    wait_for("\n> bf:set_control_data\n")
    keys("Tab", "Tab")
    local s = wait_for("set_control_data_nosync")
    assert.matches("set_control_data +set_control_data_nosync", s)
  end)

  tmux_it("stops an endless loop on Ctrl-C and goes on", function()
    -- Ctrl-C is a signal, sent at once, not a key queued behind the typed
    -- ones: it goes only once the screen shows the loop running
    type_line("print('looping') while true do end")
    wait_for("\nlooping\n")
    keys("C-c")
    wait_for("\n^Cinterrupted!\nstack traceback:\n")
    type_line("'still here'")
    wait_for("\nstill here\n>\n")
  end)

  tmux_it("drops the line on Ctrl-C at the prompt", function()
    type_text("half typed")
    wait_for("\n> half typed\n")   -- read by readline, before the signal
    keys("C-c")
    wait_for("\n> half typed^C\n>\n")
    type_line("1 + 1")
    wait_for("\n2\n>\n")
  end)

  tmux_it("keeps multi-line history across sessions", function()
    type_line("for i = 1, 2 do")
    type_line("end")
    type_line("x = 1")
    wait_for("\n> x = 1\n>\n")
    keys("C-d")
    assert.equal(0, wait_exit())
    tmux("kill-server")
    os.remove(sock)
    sock = tmppath(".sock")  -- the old server may still be going away
    local hist = h.readfile(home .. "/.fmap_history")
    assert.matches("^#%d+\nfor i = 1, 2 do\nend\n#%d+\nx = 1\n$", hist)
    start()
    keys("Up", "Up")
    wait_for("\n> for i = 1, 2 do\nend\n")
  end)

  tmux_it("leaves on Ctrl-D with status 0", function()
    keys("C-d")
    assert.equal(0, wait_exit())
  end)
end)
