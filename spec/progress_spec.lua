-- Specs of fmap.progress, the tools' progress bar. The bar is drawn on a
-- stream that stands for a terminal, with a clock the spec moves by hand:
-- nothing here depends on time.
local progress = require "fmap.progress"

-- A stream that keeps what is written, and a clock set by hand.
local function fake ()
  local s = { out = {} }
  function s:write (...)
    for _, x in ipairs({ ... }) do self.out[#self.out + 1] = x end
    return self
  end
  function s:flush () return self end
  function s:text () return table.concat(self.out) end
  local now = 100
  local clock = setmetatable({}, {
    __call = function () return now end,
  })
  local function set (t) now = t end
  return s, clock, set
end

describe("fmap.progress", function()
  describe(".enabled()", function()
    it("is false for a stream that is no terminal", function()
      local path = h.tmpname()
      local f = assert(io.open(path, "w"))
      assert.is_false(progress.enabled(f))
      f:close()
      os.remove(path)
    end)

    it("is false with FMAP_PROGRESS=0, whatever the stream", function()
      local env = function (k) return k == "FMAP_PROGRESS" and "0" or nil end
      assert.is_false(progress.enabled(io.stderr, env))
    end)

    it("is false, not an error, for a closed stream", function()
      local path = h.tmpname()
      local f = assert(io.open(path, "w"))
      f:close()
      os.remove(path)
      assert.is_false(progress.enabled(f))
    end)
  end)

  describe(".new()", function()
    it("returns a bar that draws nothing when the stream is no terminal",
       function()
      local s = fake()
      local p = progress.new("dump", 10, { stream = s })
      assert.is_false(p.enabled)
      for i = 1, 10 do p:set(i) end
      p:add(); p:tick(); p:label("x"); p:total(5); p:clear(); p:done()
      assert.equal(3, p:during(function (a, b) return a + b end, 1, 2))
      assert.equal("", s:text())
    end)

    it("draws nothing before its delay, then the share, the counts and "
       .. "the time", function()
      local s, clock, set = fake()
      local p = progress.new("dump", 200, { stream = s, tty = true,
                                            clock = clock, width = 60 })
      p:set(50)
      set(100.5)
      p:set(60)
      assert.equal("", s:text())         -- not a second yet
      set(101.25)
      p:set(100)
      assert.equal("\rdump  50% [############............] 100/200 records  "
                   .. "1.2 s\27[K", s:text())
    end)

    it("redraws at most once an interval", function()
      local s, clock, set = fake()
      local p = progress.new("load", 1000, { stream = s, tty = true,
                                             clock = clock, delay = 0,
                                             unit = "bytes" })
      for i = 1, 1000 do p:set(i) end    -- the clock stands still
      local draws = select(2, s:text():gsub("\r", ""))
      assert.equal(1, draws)
      set(100.2)
      p:tick()
      assert.equal(2, select(2, s:text():gsub("\r", "")))
      assert.matches("1,000/1,000 bytes", s:text(), 1, true)
    end)

    it("is a count and a spinner when the total is not known", function()
      local s, clock, set = fake()
      local p = progress.new("scan", nil, { stream = s, tty = true,
                                            clock = clock, delay = 0 })
      p:set(1234567)
      set(102)
      p:tick()
      assert.equal("\rscan | 1,234,567 records  0.0 s\27[K"
                   .. "\rscan / 1,234,567 records  2.0 s\27[K", s:text())
    end)

    it("keeps to the width, and drops the bar when it is narrow", function()
      local s, clock = fake()
      local p = progress.new("compact", 10, { stream = s, tty = true,
                                              clock = clock, delay = 0,
                                              width = 30 })
      p:set(5)
      local line = s:text():match("^\r(.-)\27%[K$")
      assert.is_true(#line <= 29, line)
      assert.equal("compact  50%  5/10 records  0", line)
    end)
  end)

  describe(":done() and :clear()", function()
    it("clear the bar's line; done keeps the bar quiet after", function()
      local s, clock, set = fake()
      local p = progress.new("x", 10, { stream = s, tty = true,
                                        clock = clock, delay = 0,
                                        interval = 0 })
      p:set(1)
      p:clear()
      assert.matches("\r\27%[K$", s:text())
      p:set(2)
      assert.matches("2/10", s:text(), 1, true)
      p:done()
      local was = s:text()
      set(200)
      p:set(9)
      p:done()                       -- nothing drawn: nothing to clear
      assert.equal(was, s:text())
    end)
  end)

  describe(".during()", function()
    it("runs fn, returns its results and puts the hook back", function()
      local calls = 0
      local function hook () calls = calls + 1 end
      debug.sethook(hook, "", 1000000)
      local a, b = progress.during("x", function (n) return n, n + 1 end, 4)
      local now = debug.gethook()
      debug.sethook()
      assert.equal(4, a)
      assert.equal(5, b)
      assert.equal(hook, now)
    end)

    it("redraws a terminal's bar from a count hook while fn runs",
       function()
      local s, clock, set = fake()
      local p = progress.new("audit", nil, { stream = s, tty = true,
                                             clock = clock, delay = 0,
                                             interval = 0 })
      local saved = progress.HOOK_COUNT
      progress.HOOK_COUNT = 1000
      local ok, err = pcall(p.during, p, function ()
        local x = 0
        for i = 1, 20000 do x = x + i end
        set(101)
        for i = 1, 20000 do x = x + i end
        error("stop here", 0)
      end)
      progress.HOOK_COUNT = saved
      assert.is_false(ok)
      assert.equal("stop here", err)
      assert.is_nil(debug.gethook())
      assert.matches("\raudit | 0.0 s\27[K", s:text(), 1, true)
      assert.matches("1.0 s\27[K", s:text(), 1, true)
    end)
  end)
end)
