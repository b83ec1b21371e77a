--- spec/install_spec.lua: scripts/install.sh and rockspec/, used as a user
-- uses them: an installation into a temporary prefix, then a plain lua5.4
-- and the installed fmap working from it, from another directory.
-- install.sh runs with --no-build: it installs the release build that the
-- suite's run has made (build/bin/fmap, build/lib/fmap.so).

local function q (s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local ROOT = io.popen("pwd -P"):read("l")  -- busted runs from the top

local function tmpdir ()
  local path = os.tmpname()
  os.remove(path)
  assert(os.execute("mkdir -p " .. q(path)))
  return path
end

local exists = require("fmap.cli").exists

local function has (program)
  return os.execute("command -v " .. program .. " >/dev/null 2>&1") == true
end

--- Runs a shell command line with a clean environment (no LUA_* of the
-- caller's); returns stdout, stderr and the exit status.
local function sh (cmd)
  local errpath = os.tmpname()
  local out, status = h.run("env -u LUA_INIT -u LUA_INIT_5_4 -u LUA_PATH "
    .. "-u LUA_PATH_5_4 -u LUA_CPATH -u LUA_CPATH_5_4 sh -c " .. q(cmd)
    .. " 2>" .. q(errpath) .. " </dev/null")
  local err = h.readfile(errpath)
  os.remove(errpath)
  return out, err, status
end

local function install (args)
  return sh("bash " .. q(ROOT .. "/scripts/install.sh") .. " " .. args)
end

describe("scripts/install.sh", function()
  local prefix
  local has_lua = has("lua5.4")

  setup(function()
    assert(exists("build/bin/fmap") and exists("build/lib/fmap.so"),
           "the release build is missing")
    prefix = tmpdir() .. "/usr/local"
    local out, err, status = install("--no-build " .. q(prefix))
    assert(status == 0, err)
    assert(out:find("installed fmap in " .. prefix, 1, true), out)
  end)

  teardown(function()
    os.execute("rm -rf " .. q(prefix:match("^(.*)/usr/local$")))
  end)

  it("puts each part where Debian's lua5.4 looks under its prefix",
     function()
    for _, f in ipairs({ "bin/fmap", "lib/lua/5.4/fmap.so",
                         "share/lua/5.4/fmap/bptree.lua",
                         "share/lua/5.4/fmap/classify/bptree.lua",
                         "share/doc/fmap/blocks.md",
                         "share/doc/fmap/executable.md",
                         "share/man/man1/fmap.1" }) do
      assert.is_true(exists(prefix .. "/" .. f), f)
    end
    local _, _, status = sh("test -x " .. q(prefix .. "/bin/fmap"))
    assert.equal(0, status)
    -- every Lua module of the checkout is there
    local p = io.popen("cd lua && find fmap -name '*.lua'")
    for f in p:lines() do
      assert.is_true(exists(prefix .. "/share/lua/5.4/" .. f), f)
    end
    p:close()
    if not has_lua then return end
    -- lua5.4's default paths, with /usr/local as this prefix, reach them:
    -- installed under /usr/local, they need no LUA_PATH
    local out = sh("lua5.4 -E -e 'print(package.path) print(package.cpath)'")
    local path, cpath = out:match("^([^\n]*)\n([^\n]*)\n$")
    local function here (s) return (s:gsub("/usr/local/", prefix .. "/")) end
    assert.equal(prefix .. "/share/lua/5.4/fmap/bptree.lua",
                 package.searchpath("fmap.bptree", here(path)))
    assert.equal(prefix .. "/lib/lua/5.4/fmap.so",
                 package.searchpath("fmap", here(cpath)))
  end)

  it("lists what it installed in its MANIFEST", function()
    local listed = {}
    for line in io.lines(prefix .. "/share/doc/fmap/MANIFEST") do
      listed[#listed + 1] = line
      assert.is_true(exists(prefix .. "/" .. line), line)
    end
    local out = sh("cd " .. q(prefix) .. " && find . -type f ! -name MANIFEST"
                   .. " | sed 's|^\\./||' | sort")
    table.sort(listed)
    assert.equal(out, table.concat(listed, "\n") .. "\n")
  end)

  it("lets a plain lua5.4 require fmap and fmap.bptree and build a tree "
     .. "in a file", function()
    if not has_lua then
      pending("lua5.4 is not installed")
      return
    end
    local file = h.tmpname()
    local script = h.tmpname(".lua")
    h.writefile(script, string.format([[
      local fmap = require "fmap"
      local bptree = require "fmap.bptree"
      assert(fmap.bptree == bptree)
      local bf = assert(fmap.create(%q))
      local t = bptree.new(bf, 8, -1)
      for i = 1, 1000 do t:add(string.pack(">I8", i), "v" .. i) end
      assert(bf:close())
      bf = assert(fmap.open(%q))
      t = bptree.open(bf)
      print(t:size(), t:get(string.pack(">I8", 500)), assert(t:verify()))
      print(package.searchpath("fmap.bptree", package.path))
      assert(bf:close())
    ]], file, file))
    local out, err, status = sh("cd / && LUA_PATH=" .. q(prefix
      .. "/share/lua/5.4/?.lua;;") .. " LUA_CPATH=" .. q(prefix
      .. "/lib/lua/5.4/?.so;;") .. " lua5.4 " .. q(script))
    os.remove(script)
    os.remove(file)
    assert.equal("", err)
    assert.equal("1000\tv500\ttrue\n" .. prefix
                 .. "/share/lua/5.4/fmap/bptree.lua\n", out)
    assert.equal(0, status)
  end)

  it("runs the installed fmap from another directory, with its modules",
     function()
    local fmap_bin = q(prefix .. "/bin/fmap")
    local out, err, status = sh("cd / && " .. fmap_bin .. " -e 'print("
      .. "select(2, require \"fmap.bptree\"), fmap == nil, "
      .. "require(\"fmap\").BLOCKSIZE)'")
    assert.equal("", err)
    assert.equal(prefix .. "/share/lua/5.4/fmap/bptree.lua\ttrue\t4096\n",
                 out)
    assert.equal(0, status)
    -- a LUA_PATH that leads nowhere near the prefix: its searcher finds them
    out, err = sh("cd / && LUA_PATH='/nowhere/?.lua' " .. fmap_bin
                  .. " -e 'print(package.path, select(2, require "
                  .. "\"fmap.codec\"))'")
    assert.equal("", err)
    assert.equal("/nowhere/?.lua\t" .. prefix
                 .. "/share/lua/5.4/fmap/codec.lua\n", out)
    -- found through a symbolic link too, as from a PATH
    local link = prefix .. "/../fmap-link"
    assert(os.execute("ln -s " .. q(prefix .. "/bin/fmap") .. " " .. q(link)))
    out = sh("cd / && " .. q(link) .. " -e 'print(select(2, require "
             .. "\"fmap.mmlist\"))'")
    os.remove(link)
    assert.equal(prefix .. "/share/lua/5.4/fmap/mmlist.lua\n", out)
  end)

  it("has help() read the installed reference", function()
    local out, err, status = sh("cd / && echo 'help(fmap.create)' | "
      .. q(prefix .. "/bin/fmap") .. " -i")
    assert.equal("", err)
    assert.equal(0, status)
    assert.matches("\n> help%(fmap%.create%)\nfmap%.create%(path", out)
    out = sh("cd / && " .. q(prefix .. "/bin/fmap") .. " -e 'print(require"
             .. "(\"fmap.help\").doc_dir())'")
    assert.equal(prefix .. "/share/doc/fmap\n", out)
  end)

  it("installs a man page that renders", function()
    local page = prefix .. "/share/man/man1/fmap.1"
    local text = h.readfile(page)
    assert.matches('\n%.TH FMAP 1 "[^"]+" "fmap %d', text)
    for _, section in ipairs({ "NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS",
                               "ENVIRONMENT", "FILES", "EXIT STATUS",
                               "EXAMPLES", "SEE ALSO" }) do
      assert.matches("\n%.SH " .. section:gsub(" ", "%%s") .. "\n", text)
    end
    if not has("man") then
      pending("man is not installed: checked the troff only")
      return
    end
    local out, err, status = sh("MANWIDTH=80 man --warnings -l " .. q(page)
                                .. " | col -b")
    assert.equal("", err)
    assert.equal(0, status)
    assert.matches("^FMAP%(1%)", out)
    assert.matches("\nSYNOPSIS\n +fmap %[options%] %[script %[args%]%]\n", out)
    for _, word in ipairs({ "-E", "-W", "LUA_PATH_5_4", "FMAP_ALLOC",
                            "FMAP_STRINGS", "share/lua/5.4/fmap/",
                            "~/.fmap_history" }) do
      assert.is_truthy(out:find(word, 1, true), word)
    end
  end)

  it("installs again over itself, and --uninstall removes what it "
     .. "installed and nothing else", function()
    local other = tmpdir()
    local root = other .. "/usr/local"
    local _, err, status = install("--no-build " .. q(root))
    assert.equal(0, status, err)
    -- a file of someone else's, beside fmap's, and a stale module of an
    -- earlier fmap that the manifest lists
    h.writefile(root .. "/share/lua/5.4/other.lua", "return 1")
    h.writefile(root .. "/share/lua/5.4/fmap/stale.lua", "return 1")
    local manifest = root .. "/share/doc/fmap/MANIFEST"
    h.writefile(manifest, h.readfile(manifest)
                .. "share/lua/5.4/fmap/stale.lua\n")
    _, err, status = install("--no-build " .. q(root))
    assert.equal(0, status, err)
    assert.is_false(exists(root .. "/share/lua/5.4/fmap/stale.lua"))
    assert.is_true(exists(root .. "/share/lua/5.4/fmap/bptree.lua"))
    local out
    out, err, status = install("--uninstall " .. q(root))
    assert.same({ "removed fmap from " .. root .. "\n", "", 0 },
                { out, err, status })
    out = sh("cd " .. q(root) .. " && find . -type f")
    assert.equal("./share/lua/5.4/other.lua\n", out)
    for _, d in ipairs({ "share/lua/5.4/fmap", "share/doc/fmap" }) do
      assert.is_false(exists(root .. "/" .. d), d)
    end
    out, err, status = install("--uninstall " .. q(root))
    os.execute("rm -rf " .. q(other))
    assert.same({ "", "install.sh: " .. root .. ": no fmap installation here "
                  .. "(no share/doc/fmap/MANIFEST)\n", 1 },
                { out, err, status })
  end)

  it("installs under DESTDIR for a staged installation", function()
    local stage = tmpdir()
    local out, err, status = sh("DESTDIR=" .. q(stage) .. " bash "
      .. q(ROOT .. "/scripts/install.sh") .. " --no-build /opt/fmap")
    assert.equal(0, status, err)
    assert.matches("^installed fmap in " .. stage:gsub("%p", "%%%0")
                   .. "/opt/fmap:", out)
    -- the staged host already finds its modules: they go by its location
    out = sh(q(stage .. "/opt/fmap/bin/fmap") .. " -e 'print(select(2, "
             .. "require \"fmap.varchar\"))'")
    assert.equal(stage .. "/opt/fmap/share/lua/5.4/fmap/varchar.lua\n", out)
    os.execute("rm -rf " .. q(stage))
  end)

  it("takes a PREFIX relative to the directory it is run from", function()
    local dir = tmpdir()
    local out, err, status = sh("cd " .. q(dir) .. " && bash "
      .. q(ROOT .. "/scripts/install.sh") .. " --no-build here")
    local installed = exists(dir .. "/here/bin/fmap")
    os.execute("rm -rf " .. q(dir))
    assert.equal(0, status, err)
    assert.matches("^installed fmap in " .. dir:gsub("%p", "%%%0")
                   .. "/here:", out)
    assert.is_true(installed)
  end)

  it("refuses an unknown option with its usage, status 2", function()
    local out, err, status = install("--bogus")
    assert.equal("", out)
    assert.matches("^install.sh: unknown option '%-%-bogus'\nusage: bash "
                   .. "scripts/install.sh %[%-%-no%-build%] %[PREFIX%]\n", err)
    assert.equal(2, status)
  end)
end)

describe("rockspec/fmap-0.1-1.rockspec", function()
  local ROCKSPEC = "rockspec/fmap-0.1-1.rockspec"

  it("is a rockspec for fmap 0.1-1 built by rockspec/Makefile", function()
    local env = {}
    assert(loadfile(ROCKSPEC, "t", env))()
    assert.equal("fmap", env.package)
    assert.equal("0.1-1", env.version)
    assert.equal("make", env.build.type)
    assert.equal("rockspec/Makefile", env.build.makefile)
    assert.same({ "lua >= 5.4, < 5.5" }, env.dependencies)
  end)

  it("passes luarocks lint, and luarocks make installs a tree that a plain "
     .. "lua5.4 uses", function()
    if not (has("luarocks") and has("lua5.4")) then
      pending("luarocks or lua5.4 is not installed")
      return
    end
    local out, err, status = sh("luarocks lint " .. q(ROCKSPEC))
    assert.same({ "", "", 0 }, { out, err, status })
    -- luarocks make builds in the directory it runs from: a copy of the
    -- checkout's sources, so that two runs of the suite at once (CI runs
    -- the release and sanitizer builds side by side) never write the same
    -- files
    local tree, src = tmpdir(), tmpdir()
    assert.equal(0, select(3, sh("cp -r engine lua doc rockspec "
                                 .. q(src))))
    out, err, status = sh("cd " .. q(src) .. " && luarocks --lua-version=5.4"
                          .. " --tree=" .. q(tree) .. " make "
                          .. q(ROCKSPEC) .. " 2>&1")
    os.execute("rm -rf " .. q(src))
    assert.equal(0, status, out)
    local lua_dir = tree .. "/share/lua/5.4"
    out, err, status = sh("cd / && LUA_PATH=" .. q(lua_dir .. "/?.lua;;")
      .. " LUA_CPATH=" .. q(tree .. "/lib/lua/5.4/?.so;;") .. " lua5.4 -e '"
      .. "local fmap = require \"fmap\" "
      .. "local t = fmap.bptree.new(fmap.anonymous(), 4, 4) "
      .. "t:add(\"abcd\", \"efgh\") "
      .. "print(t:get(\"abcd\"), require(\"fmap.help\").doc_dir(), "
      .. "#require(\"fmap.help\").entries() > 100)'")
    os.execute("rm -rf " .. q(tree))
    assert.equal("", err)
    assert.equal("efgh\t" .. lua_dir .. "/fmap/doc\ttrue\n", out)
    assert.equal(0, status)
  end)
end)
