-- Specs of fmap.cli, the command line of fmap's scripts. It exits, so
-- each case runs in a child fmap.
local function run (args)
  local prog = [[
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
  ]]
  local script = os.tmpname()
  h.writefile(script, prog)
  local out, status = h.run(string.format("%s %s %s 2>&1", h.bin(), script,
                                          args))
  os.remove(script)
  return out, status
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
