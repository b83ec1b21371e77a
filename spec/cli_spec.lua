-- Specs of fmap.cli, the command line of fmap's scripts. It exits, so
-- each case runs in a child fmap.
local function run (args)
  return h.run_lua([[
    local cli = require "fmap.cli"
    local cmd = cli.new("demo", "usage: demo FILE", {
      ["-o"] = "output",
      ["--n"] = { key = "n", kind = "integer", min = 1 },
      ["--at"] = { key = "at", kind = "offset", many = true,
                   value = "an OFFSET" },
      ["--free"] = { key = "free", kind = "flag" },
    })
    local o = cmd:parse(arg)
    print(o.path, o.output, o.n, table.concat(o.at, ","), o.free)
  ]], args)
end

describe("fmap.cli", function()
  it("parses options before and after FILE, and --name=value", function()
    local out, status = run("--free F -o x.png --n 3 --at=0x1000 --at 8192")
    assert.equal(0, status)
    assert.equal("F\tx.png\t3\t4096,8192\ttrue\n", out)
  end)

  it("takes - as FILE", function()
    assert.equal("-\tnil\tnil\t\tnil\n", (run("-")))
  end)

  it("exits 2 with the usage on a usage error", function()
    local cases = {
      { "", "demo: no FILE" },
      { "A B", "demo: one FILE only" },
      { "A --what", 'demo: unknown option "--what"' },
      { "A -o", "demo: -o needs a value" },
      { "A --at", "demo: --at needs an OFFSET" },
      { "A --at -5", 'demo: --at: "-5" is not an offset' },
      { "A --n 0", 'demo: --n: "0" is not a positive integer' },
      { "A --n x", 'demo: --n: "x" is not a positive integer' },
    }
    for _, c in ipairs(cases) do
      local out, status = run(c[1])
      assert.equal(2, status, c[1])
      assert.equal(c[2] .. "\nusage: demo FILE\n", out, c[1])
    end
  end)

  it("prints the usage and exits 0 for --help", function()
    local out, status = run("--help")
    assert.equal(0, status)
    assert.equal("usage: demo FILE\n", out)
  end)
end)

describe("fmap.cli without FILE", function()
  local function run (args)
    return h.run_lua([[
      local cmd = require("fmap.cli").new("b", "usage: b [--n N]", {
        ["--n"] = { key = "n", kind = "integer", min = 1 },
      }, { file = false })
      local o = cmd:parse(arg)
      print(o.n, o.path)
    ]], args)
  end

  it("takes options alone and refuses an argument", function()
    assert.same({ "5\tnil\n", 0 }, { run("--n 5") })
    assert.same({ "nil\tnil\n", 0 }, { run("") })
    assert.same({ 'b: unexpected argument "x"\nusage: b [--n N]\n', 2 },
                { run("x") })
  end)
end)

describe("fmap.cli with operands and a help text", function()
  local function run (args)
    return h.run_lua([[
      local cmd = require("fmap.cli").new("g",
        "usage: g FILE KEY [-v]\n\nGets KEY.", {
          ["-v"] = { key = "verbose", kind = "flag" },
        }, { operands = { "FILE", "KEY", "MORE" }, required = 2 })
      local o = cmd:parse(arg)
      print(o.path, table.concat(o.args, ","), o.verbose)
    ]], args)
  end

  it("takes its operands in order, options anywhere", function()
    assert.same({ "F\tF,K\ttrue\n", 0 }, { run("F -v K") })
    assert.same({ "F\tF,K,M\tnil\n", 0 }, { run("F K M") })
  end)

  it("takes anything after -- as an operand", function()
    assert.same({ "F\tF,-v,--x\tnil\n", 0 }, { run("F -- -v --x") })
  end)

  it("names the operand missing, and refuses one too many", function()
    assert.same({ "g: no KEY\nusage: g FILE KEY [-v]\n", 2 }, { run("F") })
    assert.same({ "g: no FILE\nusage: g FILE KEY [-v]\n", 2 }, { run("") })
    assert.same({ 'g: unexpected argument "N"\nusage: g FILE KEY [-v]\n',
                  2 }, { run("F K M N") })
  end)

  it("prints its help text for -h and --help", function()
    assert.same({ "usage: g FILE KEY [-v]\n\nGets KEY.\n", 0 },
                { run("-h") })
    assert.same({ "usage: g FILE KEY [-v]\n\nGets KEY.\n", 0 },
                { run("F --help") })
  end)
end)

describe("fmap.cli's shared options and :open()", function()
  local function run (args)
    return h.run_lua([[
      local cmd = require("fmap.cli").new("s", "usage: s FILE", {
        "output", "modules", ["--n"] = { key = "n", kind = "integer" },
      })
      local o = cmd:parse(arg)
      print(o.output, table.concat(o.modules, ","), o.n)
      cmd:require_all(o.modules)
      local bf = cmd:open(o.path)
      print(bf:readonly())
    ]], args)
  end

  it("names -o, --output, -r and --require by their keys", function()
    local path = h.tmpname()
    assert(fmap.create(path)):close()
    assert.same({ "x.png\tstring,table\t3\ntrue\n", 0 },
                { run("-o x.png -r string --require=table --n 3 " .. path) })
    assert.same({ "x.svg\t\tnil\ntrue\n", 0 }, { run("--output x.svg "
                                                     .. path) })
    os.remove(path)
  end)

  it("says what -r needs, and fails to open a missing FILE", function()
    assert.same({ "s: -r needs a MODULE\nusage: s FILE\n", 2 },
                { run("F -r") })
    local path = h.tmpname()
    local out, status = run(path)
    assert.equal(1, status)
    assert.equal("nil\t\tnil\ns: " .. path .. ": No such file or "
                 .. "directory\n", out)
  end)
end)

describe("fmap.cli.tmppath()", function()
  it("gives fresh paths with the suffix and leaves no file", function()
    local cli = require "fmap.cli"
    local a, b = cli.tmppath(".x"), cli.tmppath(".x")
    assert.are_not.equal(a, b)
    assert.matches("%.x$", a)
    assert.is_nil(io.open(a))
    assert.is_nil(io.open((a:gsub("%.x$", ""))))
  end)
end)

describe("the block-layer and list benchmarks", function()
  -- They run at a small n; what is checked is that each measures every
  -- row it names and cleans up, never how fast.
  it("bench_engine prints every row beside the C loop", function()
    local out, status = h.run(h.bin() .. " bench/bench_engine.lua --n 2000"
                              .. " 2>&1")
    assert.equal(0, status, out)
    for _, row in ipairs({ "allocate %+ free of one block",
                           "get %+ release of a 1%-block view",
                           "u64 write %+ read through a view",
                           "compare of a 16%-byte key" }) do
      assert.matches(row .. "%s+[%d.]+%s+[%d.]+%s+[%d.]+x", out)
    end
  end)

  it("bench_mmlist measures each operation beside a table", function()
    local path = h.tmpname()
    local out, status = h.run(string.format(
      "%s bench/bench_mmlist.lua --n 3000 --file %s 2>&1", h.bin(), path))
    assert.equal(0, status, out)
    for _, op in ipairs({ "append", "get", "set", "pop" }) do
      assert.matches(op, out)
    end
    assert.is_nil(io.open(path))
  end)

  it("instructions counts each phase's instructions with callgrind",
     function()
    -- valgrind cannot run a sanitizer build: this runs the release host,
    -- which the sanitize run of scripts/build.sh builds too
    local out, status = h.run("build/bin/fmap bench/instructions.lua "
                              .. "--n 200 2>&1")
    assert.equal(0, status, out)
    for _, row in ipairs({ "insert", "get", "scanned record", "delete",
                           "get: workload", "list append", "list get",
                           "list pop", "call: type%(x%)",
                           "call: v:u32%(4%)" }) do
      local n = tonumber(out:match("\n" .. row .. "%s+(%-?%d+)\n"))
      assert.is_true(n and n > 0, row .. " in:\n" .. out)
    end
    out, status = h.run("build/bin/fmap bench/instructions.lua --n 5 2>&1")
    assert.equal(2, status)
    assert.matches('^instructions: %-%-n: "5" is not an integer >= 100\n',
                   out)
  end)

  it("both refuse a bad --n with the usage", function()
    local out, status = h.run(h.bin() .. " bench/bench_mmlist.lua --n 0"
                              .. " 2>&1")
    assert.equal(2, status)
    assert.matches('^bench_mmlist: %-%-n: "0" is not a positive integer\n'
                   .. "usage: ", out)
    out, status = h.run(h.bin() .. " bench/bench_engine.lua --n 5 2>&1")
    assert.equal(2, status)
    assert.matches('^bench_engine: %-%-n: "5" is not an integer >= 10\n', out)
  end)
end)
