local dot = require "fmap.dot"

local has_dot = dot.available()

-- A synthetic tree held in a table: a root with `fanout` internal
-- children, each with `leaves` leaves linked in order.
local function synthetic (fanout, leaves)
  local nodes, chain, id = {}, {}, 100
  nodes[1] = { leaf = false, keys = {}, children = {} }
  for i = 1, fanout do
    local c = 10 + i
    nodes[1].children[i], nodes[1].keys[i] = c, "k" .. i
    nodes[c] = { leaf = false, keys = {}, children = {} }
    for j = 1, leaves do
      id = id + 1
      nodes[c].children[j], nodes[c].keys[j] = id, i .. "." .. j
      nodes[id] = { leaf = true, keys = { i .. "." .. j, "<&>" } }
      chain[#chain + 1] = id
    end
  end
  for i = 1, #chain - 1 do nodes[chain[i]].next = chain[i + 1] end
  return { root = 1, name = "synthetic", node = function (off)
    return assert(nodes[off], "no node")
  end }, nodes
end

-- Runs dot -Tsvg on text; returns the SVG.
local function svg_of (text)
  local file = h.tmpname(".svg")
  assert(dot.render(text, file))
  local s = h.readfile(file)
  os.remove(file)
  return s
end

describe("fmap.dot", function()
  describe(".graph()", function()
    it("draws every node with its keys, edges and leaf links", function()
      local spec = synthetic(3, 2)
      local text, info = dot.graph(spec)
      assert.equal(1 + 3 + 6, #info.nodes)
      assert.equal(0, info.summarised)
      for _, off in ipairs(info.nodes) do
        assert.matches("\n  n" .. off .. " %[label=<", text)
      end
      assert.matches("n1 -> n11;", text, 1, true)
      assert.matches("n11 -> n101;", text, 1, true)
      assert.matches("n101 -> n102 [style=dashed", text, 1, true)
      assert.matches("n102 -> n103 [style=dashed", text, 1, true)  -- across
      assert.matches("<td>1.2</td>", text, 1, true)
      assert.matches("<td>&lt;&amp;&gt;</td>", text, 1, true)
      assert.same({ 101, 102, 103, 104, 105, 106 }, info.leaves)
    end)

    it("summarises below the depth and past the children asked for",
       function()
      local spec = synthetic(20, 5)
      local text, info = dot.graph(spec, { depth = 1, children = 4 })
      -- the root, its first 3 children and its last; their leaves not drawn
      assert.same({ 1, 11, 12, 13, 30 }, info.nodes)
      assert.equal(16 + 4 * 5, info.summarised)
      assert.matches("16 children not drawn", text, 1, true)
      assert.matches("5 children not drawn", text, 1, true)
    end)

    it("shows at most KEYS keys of a node and counts the rest", function()
      local spec = synthetic(10, 1)
      local text = dot.graph(spec, { keys = 3, depth = 0 })
      assert.matches("<td>k3</td><td>+7</td>", text, 1, true)
    end)

    it("formats keys with the function given", function()
      local text = dot.graph(synthetic(2, 1), {
        key_text = function (k) return "<" .. #k .. ">" end })
      assert.matches("<td>&lt;2&gt;</td>", text, 1, true)
    end)

    it("draws a key the function raises for, or returns no string for, "
       .. "as it can", function()
      local text = dot.graph(synthetic(2, 1), {
        key_text = function (k)
          if k == "k1" then error("no whole key: a shortened separator") end
          if k == "k2" then return 42 end
          return "[" .. k .. "]"
        end })
      assert.matches("<td>k1</td>", text, 1, true)    -- as without it
      assert.matches("<td>42</td>", text, 1, true)
      assert.matches("<td>[1.1]</td>", text, 1, true)
    end)

    it("writes binary keys as hex and cuts long ones", function()
      assert.equal("0x00ff41", dot.key_text("\0\255A"))
      assert.equal("abcdefghijklmnop..",
                   dot.key_text(string.rep("abcdefghijklmnopq", 2)))
    end)

    it("marks a node reached twice instead of looping", function()
      local nodes = {
        [1] = { leaf = false, keys = { "a" }, children = { 2, 1 } },
        [2] = { leaf = true, keys = { "b" } },
      }
      local text, info = dot.graph { root = 1,
                                     node = function (o) return nodes[o] end }
      assert.same({ 1, 2 }, info.nodes)
      assert.matches('n1 -> n1 [color=red, label="again"]', text, 1, true)
    end)

    it("says which node could not be read", function()
      assert.equal("cannot read the node at offset 12: no node",
                   h.errmsg(function()
                     dot.graph { root = 12,
                                 node = function () error("no node", 0) end }
                   end))
    end)

    it("rejects a spec without root or node", function()
      assert.equal("bad argument #1 to 'graph' (table with integer 'root' "
                   .. "and function 'node' expected)",
                   h.errmsg(function() dot.graph { root = 1 } end))
    end)

    it("rejects an unknown option", function()
      assert.equal("bad argument #2 to 'graph' (unknown option deep; there "
                   .. "are depth, children, keys and key_text)",
                   h.errmsg(function()
                     dot.graph(synthetic(1, 1), { deep = 3 })
                   end))
    end)

    it("rejects a negative depth", function()
      assert.equal("bad argument #2 to 'graph' (depth must be a "
                   .. "non-negative integer, got -1)",
                   h.errmsg(function()
                     dot.graph(synthetic(1, 1), { depth = -1 })
                   end))
    end)

    it("parses with Graphviz, which names every node", function()
      if not has_dot then
        pending("Graphviz's dot is not installed")
        return
      end
      local text, info = dot.graph(synthetic(12, 4), { depth = 2 })
      local svg = svg_of(text)
      for _, off in ipairs(info.nodes) do
        assert.matches("<title>n" .. off .. "</title>", svg, 1, true)
      end
      assert.matches("&lt;&amp;&gt;", svg, 1, true)
    end)
  end)

  describe(".render()", function()
    it("writes DOT text as it is for a .dot path", function()
      local file = h.tmpname(".dot")
      assert.is_true(dot.render("digraph { a }\n", file))
      assert.equal("digraph { a }\n", h.readfile(file))
      os.remove(file)
    end)

    it("returns nil and Graphviz's message for bad DOT", function()
      if not has_dot then
        pending("Graphviz's dot is not installed")
        return
      end
      local ok, msg = dot.render("digraph {", h.tmpname(".svg"))
      assert.is_nil(ok)
      assert.matches("^dot failed: .*syntax error", msg)
    end)

    it("says when Graphviz is missing", function()
      local saved = dot.DOT
      dot.DOT = "/nonexistent/dot"
      local ok, msg = dot.render("digraph { a }", h.tmpname(".svg"))
      dot.DOT = saved
      assert.same({ nil, "Graphviz's dot is not installed (apt-get install "
                    .. "graphviz)" }, { ok, msg })
    end)

    it("rejects a path without an extension", function()
      assert.equal("bad argument #2 to 'render' (path needs an extension "
                   .. "naming the format, got 'tree')",
                   h.errmsg(function() dot.render("digraph {}", "tree") end))
    end)
  end)

  describe(".tree() of a B+tree", function()
    local bptree = require "fmap.bptree"
    local classify = require "fmap.classify"
    local path, bf
    h.fixture(function (p, b) if p then path, bf = p, b end return bf end)

    -- The offsets of the tree's nodes, as the classifier finds them.
    local function nodes (t)
      local r = classify.scan(bf)
      local t_nodes = {}
      for b = 0, r.blocks - 1 do
        if r.kind[b] == "leaf" or r.kind[b] == "internal" then
          t_nodes[#t_nodes + 1] = b * bf:block_size()
        end
      end
      assert.is_true(#t_nodes > 0 and r.owner[t.offset and
                     t:offset() // bf:block_size()] ~= nil)
      return t_nodes
    end

    it("names every node, and Graphviz parses it", function()
      local t = bptree.new(bf, 8, 8)
      for i = 1, 3000 do t:add(string.pack(">I8", i), string.pack("<I8", i)) end
      local text, info = require "fmap.dot"(t, { depth = 10,
                                                 children = 1000 })
      local want = nodes(t)
      table.sort(info.nodes)
      assert.same(want, info.nodes)
      assert.equal(0, info.summarised)
      assert.matches("3000 entries, height 2", text, 1, true)
      assert.matches("<td>0x0000000000000001</td>", text, 1, true)
      if has_dot then
        local svg = svg_of(text)
        for _, off in ipairs(want) do
          assert.matches("<title>n" .. off .. "</title>", svg, 1, true)
        end
      end
    end)

    it("draws a slotted tree's keys, overflowing ones included", function()
      local t = bptree.new(bf, -1, -1)
      t:add("hello", "world")
      t:add(string.rep("K", 6000), "v")
      local text, info = dot.tree(t)
      assert.equal(1, #info.nodes)
      assert.matches("<td>KKKKKKKKKKKKKKKK..</td><td>hello</td>", text, 1,
                     true)
    end)

    it("summarises a large tree to a depth", function()
      local t = bptree.new(bf, 8, 0)
      for i = 1, 60000 do t:add(string.pack(">I8", i), "") end
      local _, info = dot.tree(t, { depth = 1, children = 4 })
      assert.equal(5, #info.nodes)
      assert.is_true(info.summarised > 0)
    end)

    it("draws a tree from its meta block alone, read-only", function()
      local t = bptree.new(bf, 8, 8)
      t:add(string.pack(">I8", 7), string.pack(">I8", 8))
      local off = t:offset()
      bf:close()
      bf = assert(fmap.open(path, { readonly = true }))
      local text = dot.at(bf, off)
      assert.matches("B+tree @" .. off .. ": 1 entries", text, 1, true)
      assert.equal("no B+tree at offset 0 (offset 0 is the control block)",
                   h.errmsg(function() dot.at(bf, 0) end))
    end)

    it("is the tree's t:dot() method", function()
      local t = bptree.new(bf, 8, 8)
      for i = 1, 600 do t:add(string.pack(">I8", i), string.pack("<I8", i)) end
      local text = t:dot { depth = 1, children = 2 }
      assert.equal(dot.tree(t, { depth = 1, children = 2 }), text)
      assert.matches("children not drawn", text, 1, true)
      -- the text alone, so that f:write(t:dot()) writes it
      assert.equal(1, select("#", t:dot()))
      local out = h.tmpname(".dot")
      local f = assert(io.open(out, "w"))
      assert(f:write(t:dot()))
      f:close()
      assert.equal(t:dot(), h.readfile(out))
      os.remove(out)
    end)

    it("rejects what is not a tree", function()
      assert.equal("bad argument #1 to 'tree' (B+tree expected, got "
                   .. "table)", h.errmsg(function() dot.tree({}) end))
    end)

    it("is what the REPL's show(t) draws", function()
      local t = bptree.new(bf, 8, 8)
      t:add(string.pack(">I8", 1), string.pack(">I8", 1))
      local p = dot.show(t)
      assert.matches(has_dot and "%.svg$" or "%.dot$", p)
      assert.matches("n" .. nodes(t)[1], h.readfile(p), 1, true)
      os.remove(p)
    end)
  end)

  describe("scripts/dot.lua", function()
    local bptree = require "fmap.bptree"
    local path
    before_each(function() path = h.tmpname() end)
    after_each(function() os.remove(path) end)
    local function run (args)
      return h.run(h.bin() .. " scripts/dot.lua " .. args .. " 2>&1")
    end

    it("writes a file's tree as DOT text or through Graphviz", function()
      local bf = assert(fmap.create(path))
      local a = bptree.new(bf, 8, 8)
      for i = 1, 100 do a:add(string.pack(">I8", i), string.pack(">I8", i)) end
      local b = bptree.new_at(bf, nil, 8, 8)
      b:add(string.pack(">I8", 5), string.pack(">I8", 5))
      local ao, bo = a:offset(), b:offset()
      bf:close()
      local out = h.tmpname(".dot")
      local text, status = run(path .. " -o " .. out)
      assert.equal(0, status, text)
      assert.equal("wrote " .. out .. ": the B+tree at offset " .. ao
                   .. ", 1 node drawn, 0 not drawn\nother trees in the "
                   .. "file (--at OFFSET): " .. bo .. "\n", text)
      assert.matches("^digraph ", h.readfile(out))
      text, status = run(path .. " --at " .. bo .. " -o " .. out)
      assert.equal(0, status, text)
      assert.matches("B+tree @" .. bo, h.readfile(out), 1, true)
      os.remove(out)
      if has_dot then
        local svg = h.tmpname(".svg")
        text, status = run(path .. " -o " .. svg)
        assert.equal(0, status, text)
        assert.matches("<svg", h.readfile(svg), 1, true)
        os.remove(svg)
      end
    end)

    it("fails when the file holds no tree", function()
      local bf = assert(fmap.create(path))
      bf:close()
      local text, status = run(path .. " -o /tmp/x.dot")
      assert.equal(1, status)
      assert.equal("dot: " .. path .. ": no B+tree found\n", text)
    end)

    it("refuses an output without an extension", function()
      local text, status = run(path .. " -o tree")
      assert.equal(2, status)
      assert.matches('^dot: "tree": the output needs an extension', text)
    end)
  end)

  describe(".show() and the REPL's show()", function()
    it("draws a BlockFile's block map to a temporary PNG", function()
      local bf = fmap.anonymous()
      bf:allocate()
      local path = dot.show(bf)
      assert.matches("%.png$", path)
      assert.equal("\137PNG", h.readfile(path):sub(1, 4))
      os.remove(path)
      bf:close()
    end)

    it("rejects what is neither a tree nor a BlockFile", function()
      assert.equal("bad argument #1 to 'show' (B+tree or BlockFile "
                   .. "expected, got number)",
                   h.errmsg(function() dot.show(42) end))
      -- a view and a blob store have a blockfile and an offset, and are
      -- named for what they are, not searched for a tree
      local bf <close> = fmap.anonymous()
      local v <close> = bf:get(bf:allocate())
      assert.equal("bad argument #1 to 'show' (B+tree or BlockFile "
                   .. "expected, got view (offset 4096, 4096 bytes, live))",
                   h.errmsg(function() dot.show(v) end))
      local s = require("fmap.varchar").new(bf)
      assert.equal("bad argument #1 to 'show' (B+tree or BlockFile "
                   .. "expected, got varchar (meta at " .. s:offset() .. "))",
                   h.errmsg(function() dot.show(s) end))
      assert.equal("bad argument #1 to 'tree' (B+tree expected, got varchar "
                   .. "(meta at " .. s:offset() .. "))",
                   h.errmsg(function() dot.tree(s) end))
    end)

    it("is the REPL's show(), which prints the picture's path", function()
      local out = h.run("printf 'bf = fmap.anonymous(); bf:allocate()\\n"
                        .. "show(bf)\\n' | " .. h.bin() .. " -i 2>&1")
      local path = out:match("> show%(bf%)\n(/[^\n]+%.png)\n")
      assert.is_string(path, out)
      assert.equal("\137PNG", h.readfile(path):sub(1, 4))
      os.remove(path)
    end)
  end)
end)
