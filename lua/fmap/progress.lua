--- fmap.progress: a progress bar on stderr for the tools that run long
-- (dump, load, compact, the checks of inspect), drawn only when stderr is
-- a terminal.
--
--   local progress = require "fmap.progress"
--   local p = progress.new("dump", total, { unit = "records" })
--   for i = 1, total do ...; p:set(i) end
--   p:done()                       -- clears the bar's line
--   progress.during("audit", fn)   -- no count known: a spinner while fn runs
--   p:during(fn)                   -- the same, on a bar of a longer run
--
-- Nothing is drawn before `delay` seconds (1) have passed, so a quick run
-- shows nothing, and then at most every `interval` seconds (0.1). The
-- line is rewritten in place ("\r", then "\27[K" to clear what is left)
-- and cleared by done(), so the tool's own output is never mixed with it.
-- When the stream is no terminal (a pipe, a file, a spec's capture), or
-- FMAP_PROGRESS=0 is in the environment, `new` returns one shared bar
-- whose methods do nothing: a tool pays a method call per step, nothing
-- more.
local fmap = require "fmap"

local M = {}

--- Seconds before a bar first shows.
M.DELAY = 1
--- Seconds between two redraws at least.
M.INTERVAL = 0.1
--- Instructions between two redraws' checks of a `during` spinner.
M.HOOK_COUNT = 1000000

local Bar = {}
Bar.__index = Bar

-- The bar of streams that are no terminal: every method does nothing.
local OFF = setmetatable({ enabled = false }, {
  __index = {
    set = function () end, add = function () end, tick = function () end,
    done = function () end, clear = function () end,
    label = function () end, total = function () end,
    during = function (_, fn, ...) return fn(...) end,
  },
})

--- Whether a bar on stream would be drawn: the stream is a terminal
-- (`fmap.isatty`) and FMAP_PROGRESS is not "0".
-- @param stream an io file (default io.stderr)
-- @param _getenv the environment's lookup (default os.getenv), for specs
-- @return boolean
function M.enabled (stream, _getenv)
  if (_getenv or os.getenv)("FMAP_PROGRESS") == "0" then return false end
  local ok, tty = pcall(fmap.isatty, stream or io.stderr)
  return ok and tty
end

-- 1234567 -> "1,234,567"
local function thousands (n)
  local s = tostring(math.tointeger(n) or math.floor(n))
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""):gsub("^%-,", "-"))
end

--- A new bar.
-- @param label what is running, the start of the line ("dump")
-- @param total the count of units when done, or nil when not known (the
--   bar is then a count and a spinner)
-- @param opts optional: `unit` (what is counted, "records"), `stream`
--   (io.stderr), `tty` (true or false: draw or not, whatever the stream
--   is), `clock` (a function returning seconds, `fmap.clock`), `delay`,
--   `interval` (`DELAY`, `INTERVAL`), `width` (columns; $COLUMNS, else 80)
-- @return the bar: `p:set(done)`, `p:add(n)`, `p:tick()`, `p:label(s)`,
--   `p:total(n)`, `p:during(fn, ...)`, `p:clear()`, `p:done()`
function M.new (label, total, opts)
  opts = opts or {}
  local stream = opts.stream or io.stderr
  local on = opts.tty
  if on == nil then on = M.enabled(stream) end
  if not on then return OFF end
  local clock = opts.clock or fmap.clock
  local now = clock()
  local p = setmetatable({
    enabled = true, text = tostring(label),
    unit = opts.unit or "records", stream = stream, clock = clock,
    start = now, next_draw = now + (opts.delay or M.DELAY),
    interval = opts.interval or M.INTERVAL,
    width = opts.width or math.tointeger(tonumber(os.getenv("COLUMNS")
                                                  or "")) or 80,
    count = 0, check_at = 0, step = 1, drawn = false, spin = 0,
  }, Bar)
  p:total(total)
  return p
end

--- Sets the count of units when done (nil: not known, a spinner).
function Bar:total (n)
  self.total_units = n
  -- the clock is read every `step` units, so that a read is rare
  self.step = n and math.max(1, n // 1000) or 64
end

local SPINNER = { "|", "/", "-", "\\" }

-- The line for the bar's state, at most width - 1 columns.
local function line (self, now)
  local secs = string.format("%.1f s", now - self.start)
  local total = self.total_units
  local text
  if total and total > 0 then
    local share = math.min(1, self.count / total)
    local counts = string.format("%s/%s %s", thousands(self.count),
                                 thousands(total), self.unit)
    local head = string.format("%s %3d%% ", self.text,
                               math.floor(share * 100))
    local tail = string.format(" %s  %s", counts, secs)
    local room = self.width - 1 - #head - #tail - 2
    if room >= 10 then
      local full = math.floor(share * room)
      text = head .. "[" .. string.rep("#", full)
             .. string.rep(".", room - full) .. "]" .. tail
    else
      text = head .. tail
    end
  else
    self.spin = self.spin % #SPINNER + 1
    text = string.format("%s %s %s%s", self.text, SPINNER[self.spin],
                         self.count > 0 and thousands(self.count) .. " "
                         .. self.unit .. "  " or "", secs)
  end
  return text:sub(1, self.width - 1)
end

local function draw (self)
  local now = self.clock()
  if now < self.next_draw then return end
  self.next_draw = now + self.interval
  self.stream:write("\r", line(self, now), "\27[K")
  self.stream:flush()
  self.drawn = true
end

--- Sets the units done; redraws when it is time.
-- @param done the units done so far
function Bar:set (done)
  self.count = done
  if done >= self.check_at then
    self.check_at = done + self.step
    draw(self)
  end
end

--- Adds n units done (1 by default); redraws when it is time.
function Bar:add (n)
  self:set(self.count + (n or 1))
end

--- Redraws when it is time, the count unchanged: for a spinner.
function Bar:tick ()
  draw(self)
end

--- Changes the label (a new phase of the same run).
function Bar:label (s)
  self.text = tostring(s)
end

--- Clears the bar's line, if it was drawn, for a line of output; the bar
-- draws again at its next redraw.
function Bar:clear ()
  if self.drawn then
    self.stream:write("\r\27[K")
    self.stream:flush()
  end
  self.drawn = false
end

--- Clears the bar's line, if it was drawn; the bar stays quiet after.
function Bar:done ()
  self:clear()
  self.next_draw = math.huge
end

--- Runs fn(...) with a spinner on stderr while it runs, for work whose
-- count is not known (an audit, a verify): a count hook redraws every
-- `HOOK_COUNT` instructions. A C function that runs long (`bf:check()`)
-- gets no redraw until it returns. The debug hook in place before is put
-- back after, and when stderr is no terminal fn simply runs.
-- @param label what is running
-- @param fn the function
-- @return fn's results; fn's error is raised again after the line is
--   cleared
function M.during (label, fn, ...)
  local p = M.new(label, nil)
  local r = table.pack(pcall(p.during, p, fn, ...))
  p:done()
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

--- Runs fn(...), redrawing the bar every `HOOK_COUNT` instructions while
-- it runs (through a count hook; the hook in place before is put back
-- after): for a phase of a longer run whose count is not known.
-- @return fn's results; raises fn's error
function Bar:during (fn, ...)
  local hook, mask, count = debug.gethook()
  debug.sethook(function () self:tick() end, "", M.HOOK_COUNT)
  local r = table.pack(pcall(fn, ...))
  if type(hook) == "function" then
    debug.sethook(hook, mask, count)
  else
    debug.sethook()
  end
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

return M
