--- fmap.audit: finds the blocks a structure lost, shares or still uses
-- after freeing them.
--
--     local report, summary = require "fmap.audit"(bf)
--     print(summary)                 -- or look at report.leaked etc.
--
-- Walks every structure the registered classifiers (`fmap.classify`) find
-- in the file, and reports:
--   - leaked blocks: allocated (not free, not the tail, not the control
--     block) and owned by no structure: a prototype that forgot to free;
--   - blocks owned twice: claimed by two structures, or twice by one;
--   - free blocks still referenced: a structure points at a block on the
--     free list (freed too early, or a stale pointer);
--   - bad references: offsets that are not block-aligned or lie outside
--     the allocated area;
--   - errors raised by a classifier (a walk that hit damaged data);
--   - the problems `bf:check()` finds in the free list and the header.
-- A file with structures that have no classifier shows their blocks as
-- leaked: register one (see `fmap.classify`) before auditing.
local classify = require "fmap.classify"
local argcheck = require "fmap.argcheck"

local M = {}

local function plural (n, word)
  return string.format("%d %s%s", n, word, n == 1 and "" or "s")
end

-- "8192 (2 blocks), 20480" from {{offset, blocks}}.
local function runs_text (runs, limit)
  local parts = {}
  for i, run in ipairs(runs) do
    if i > limit then
      parts[#parts + 1] = string.format("... (%d more runs)", #runs - limit)
      break
    end
    parts[#parts + 1] = run[2] == 1 and tostring(run[1])
      or string.format("%d (%d blocks)", run[1], run[2])
  end
  return table.concat(parts, ", ")
end

--- Items listed in a summary before the rest is counted.
M.LIMIT = 20

--- The printable summary of a report.
-- @param rep what `audit` returned
-- @return a string of lines
function M.summary (rep)
  local out = {}
  local function add (...) out[#out + 1] = string.format(...) end
  local r = rep.scan
  add("audit of %s: %s of %d bytes, %s",
      r.path or "an anonymous BlockFile", plural(r.blocks, "block"),
      r.block_size, plural(#r.structures, "structure"))
  if rep.writer then
    add("  writer: another BlockFile has it open: this is its last commit "
        .. "as of this open")
  end
  if #r.structures == 0 then
    add("  no registered structure found (registered: %s); every "
        .. "allocated block counts as leaked",
        #rep.classifiers > 0 and table.concat(rep.classifiers, ", ")
        or "none")
  end
  for _, s in ipairs(r.structures) do
    local names, kinds = {}, {}
    for k in pairs(s.kinds) do names[#names + 1] = k end
    table.sort(names)
    for i, k in ipairs(names) do kinds[i] = s.kinds[k] .. " " .. k end
    add("  %s: %s%s%s", s.label, plural(s.blocks, "block"),
        #kinds > 0 and " (" .. table.concat(kinds, ", ") .. ")" or "",
        s.error and "; walk failed" or "")
  end
  add("  free: %s in %s; tail: %s", plural(r.free.blocks, "block"),
      plural(r.free.runs, "run"), plural(r.counts.tail or 0, "block"))
  if #rep.leaked > 0 then
    add("leaked: %s allocated, not free, owned by no structure, at "
        .. "offsets %s", plural(#rep.leaked, "block"),
        runs_text(rep.leaked_runs, M.LIMIT))
  end
  for i, d in ipairs(rep.doubles) do
    if i > M.LIMIT then
      add("  ... (%d more blocks owned twice)", #rep.doubles - M.LIMIT)
      break
    end
    add("owned twice: block at offset %d, by %s", d.offset,
        table.concat(d.owners, " and "))
  end
  local function refs (list, what)
    for i, f in ipairs(list) do
      if i > M.LIMIT then
        add("  ... (%d more)", #list - M.LIMIT)
        break
      end
      add("%s: block at offset %d, referenced by %s%s%s", what, f.offset,
          f.by, f.from and string.format(" from offset %d", f.from) or "",
          f.reason and " (" .. f.reason .. ")" or "")
    end
  end
  refs(rep.free_referenced, "free but referenced")
  refs(rep.bad_refs, "bad reference")
  for _, e in ipairs(rep.errors) do
    add("error in %s: %s", e.label, e.message)
  end
  for _, p in ipairs(rep.engine) do
    add("engine check: %s", p)
  end
  add(rep.ok and "ok: no problem found"
      or string.format("%s found", plural(rep.problems, "problem")))
  return table.concat(out, "\n")
end

--- Audits a file.
-- @param bf an open BlockFile (read-only is enough)
-- @param opts optional, passed to `classify.scan` (`roots`, `only`)
-- @return a report: `ok` (true when nothing is wrong), `problems` (how
--   many), `leaked` (sorted offsets), `leaked_runs` (`{{offset, blocks}}`),
--   `doubles` (`{{offset, owners}}`), `free_referenced` and `bad_refs`
--   (`{{offset, by, from, reason}}`), `errors` (`{{label, message}}`),
--   `engine` (the messages of `bf:check()`), `structures`, `counts`,
--   `figures` (`classify.figures`), `classifiers` (names registered),
--   `writer` (true when bf is read-only and another BlockFile has the file
--   open for writing: the audit is of its last commit as of bf's open),
--   `scan`; and the printable summary
function M.audit (bf, opts)
  local bs, why = classify._block_size_of(bf)
  if not bs then argcheck.argerror(1, "audit", why) end
  local r = classify.scan(bf, opts)
  local leaked = {}
  for b = 1, r.top - 1 do
    if r.kind[b] == "unknown" then leaked[#leaked + 1] = b * bs end
  end
  local engine = {}
  local good, problems = bf:check()
  if not good then
    for i, p in ipairs(problems or {}) do engine[i] = tostring(p) end
  end
  local rep = {
    leaked = leaked, leaked_runs = classify.runs(leaked, bs),
    doubles = r.doubles, free_referenced = r.free_referenced,
    bad_refs = r.bad_refs, errors = r.errors, engine = engine,
    structures = r.structures, counts = r.counts,
    figures = classify.figures(r), classifiers = classify.registered(),
    writer = bf:stats().writer, scan = r,
  }
  rep.problems = #leaked + #r.doubles + #r.free_referenced + #r.bad_refs
                 + #r.errors + #engine
  rep.ok = rep.problems == 0
  return rep, M.summary(rep)
end

return setmetatable(M, { __call = function (_, ...) return M.audit(...) end })
