/*
** node.c: the primitives a structure's nodes are made of: searches of a
** sorted run (bsearch, search, bsearch_slots), an entry's insert and
** removal in one call (insert_key, remove_key), a node read at once
** (read_entries), searchers (a B+tree's descent in one call), and the
** descents that change the node they reach. (The iterators over nodes
** are iter.c's.) They work inside
** one view, or one block checked allocated, at the positions and strides
** the caller gives: no structure's format is known here, and no block is
** allocated or freed.
*/
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "binding.h"


/* ---------------------------------------------------------------------- */
/* Sorted runs                                                             */
/* ---------------------------------------------------------------------- */

/* A non-negative integer argument. */
static uint64_t checkcount (lua_State *L, int i, const char *what) {
  lua_Integer n = intarg(L, i);
  if (n < 0)
    luaL_argerror(L, i, lua_pushfstring(L, "%s %I is negative", what, n));
  return (uint64_t)n;
}

/* memcmp's sign for the short keys of a node search: whole 8-byte words
** compared as big-endian integers, then the tail. A B+tree probes a node
** a dozen times per lookup; a library call per probe cost more than the
** comparison (bench/bench.lua, perf). */
static inline int keycmp (const unsigned char *a, const unsigned char *b,
                          size_t n) {
  while (n >= 8) {
    uint64_t x, y;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    if (x != y) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
      x = __builtin_bswap64(x);
      y = __builtin_bswap64(y);
#endif
      return x < y ? -1 : 1;
    }
    a += 8; b += 8; n -= 8;
  }
  return n == 0 ? 0 : memcmp(a, b, n);
}

/* The key bytes a binary search of count entries compares, as
** fmap.profile counts them: a probe per halving, keys of kl bytes. */
static uint64_t probebytes (uint64_t count, size_t kl) {
  uint64_t probes = 0;
  for (; count > 0; count >>= 1) probes++;
  return probes * kl;
}

/* For fmap.profile: a search of count entries of stride bytes from pos
** of v (keys of kl bytes), whose count is the u32 at cpos (-1: none). */
static void profsearch (const View *v, lua_Integer cpos, lua_Integer pos,
                        uint64_t count, uint64_t stride, size_t kl) {
  if (cpos >= 0) profread(v->bf, v->off + (uint64_t)cpos, 4, 4);
  if (count > 0)
    profread(v->bf, v->off + (uint64_t)pos, (count - 1) * stride + kl,
             probebytes(count, kl));
}

/* Pushes the field beside a search's hit: the bytes at at + index *
** stride, a little-endian u64 when len is negative, else a string of len
** bytes; nil when the field passes the view. */
static void pushbeside (lua_State *L, const View *v, lua_Integer at,
                        uint64_t index, uint64_t stride, lua_Integer len) {
  uint64_t n = len < 0 ? 8 : (uint64_t)len;
  if (at >= 0 && (uint64_t)at <= v->len &&
      (stride == 0 || index <= (v->len - (uint64_t)at) / stride) &&
      n <= v->len - (uint64_t)at - index * stride) {
    const unsigned char *p = vptr(v) + (uint64_t)at + index * stride;
    PROFREAD(v, (uint64_t)at + index * stride, n);
    if (len < 0) lua_pushinteger(L, (lua_Integer)load_le(p, 8));
    else lua_pushlstring(L, (const char *)p, (size_t)n);
  }
  else lua_pushnil(L);
}

/* The entry count of a node: the little-endian u32 at cpos (argument
** arg). */
static uint64_t nodecount (lua_State *L, const View *v, lua_Integer cpos,
                           int arg) {
  if (cpos < 0 || (uint64_t)cpos > v->len || v->len - (uint64_t)cpos < 4)
    luaL_argerror(L, arg, lua_pushfstring(L, "count position %I is outside "
                  "the view (%I bytes)", cpos, (lua_Integer)v->len));
  return load_le(vptr(v) + cpos, 4);
}

/* The start of a sorted run of count entries, stride bytes apart from pos
** (argument arg), whose keys of kl bytes it is about to search; the last
** entry's first last bytes must lie in the view. Raises otherwise; NULL
** for an empty run. Asks for the run's cache lines. */
static unsigned char *searchrun (lua_State *L, const View *v, int arg,
                                 int sarg, lua_Integer pos, uint64_t count,
                                 uint64_t stride, size_t kl, uint64_t last) {
  unsigned char *base;
  if (count == 0) return NULL;
  if (stride == 0)   /* the stride is argument sarg */
    luaL_argerror(L, sarg, "stride 0: a sorted run's entries are at least a "
                  "byte apart");
  if (pos < 0 || (uint64_t)pos > v->len ||
      count - 1 > (v->len - (uint64_t)pos) / stride ||
      last > v->len - (uint64_t)pos - (count - 1) * stride)
    luaL_argerror(L, arg, lua_pushfstring(L, "%I entr%s of %I byte%s (keys "
                  "of %I) from position %I pass the view (%I bytes)",
                  (lua_Integer)count, count == 1 ? "y" : "ies",
                  (lua_Integer)stride, plural(stride), (lua_Integer)kl,
                  pos, (lua_Integer)v->len));
  base = vptr(v) + pos;
#ifndef FMAP_NO_PREFETCH
  prefetch_run(base, (count - 1) * stride + last);
#endif
  return base;
}

/* The index of the first of count entries >= key (> key with upper), and
** in *found whether one equals key. */
/* The first 8 bytes at p as a big-endian integer: a key's rank. */
static inline uint64_t rank8 (const unsigned char *p) {
  uint64_t x;
  memcpy(&x, p, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  x = __builtin_bswap64(x);
#endif
  return x;
}

/* The ranks the keys of a node lie between, as its parent's entries on
** either side of the child say (a descent passes them down); known says
** whether they are. */
typedef struct Bracket { uint64_t a, b; int known; } Bracket;

/* The index of the first of count entries (stride bytes apart, sorted)
** whose key is >= key, or > key with upper; *found says whether one
** equals it. A binary search, but where keys of 8 bytes or more spread
** over their first 8 (hashed, scattered or counted keys), the first probe
** goes where the key's rank falls between the ranks the entries lie
** between (br's, from the parent, whose lines were just read; else the
** first and last entries'), and probes 4, 8, 16... entries on bracket it:
** a node's search then waits for about 2 cache lines, not 7 one after the
** other. Whatever the keys, each probe keeps the binary search's
** invariant (entries before lo are below the key, or equal for upper;
** those from hi on are not), so the result is the same; a skewed node or
** a wrong bracket costs a few probes more. */
#define PROBE(i) (c = keycmp(base + (i) * stride, key, kl), \
                  c == 0 ? (*found = 1) : 0, c < 0 || (upper && c == 0))
static uint64_t lowerbound (const unsigned char *base, uint64_t count,
                            uint64_t stride, const unsigned char *key,
                            size_t kl, int upper, int *found,
                            const Bracket *br) {
  uint64_t lo = 0, hi = count;
  int c;
  *found = 0;
  if (kl >= 8 && count > 16) {
    uint64_t k = rank8(key), a, b;
    if (br != NULL && br->known && br->a < k && k < br->b) {
      a = br->a;
      b = br->b;
    }
    else {
      a = rank8(base);
      b = rank8(base + (count - 1) * stride);
    }
    if (a < k && k < b) {
      uint64_t p = (uint64_t)((double)(k - a) / (double)(b - a) *
                              (double)(count - 1)), gap = 4;
      if (p >= count) p = count - 1;
      if (PROBE(p)) {                   /* the key is past p */
        lo = p + 1;
        while (p + gap < hi) {
          if (!PROBE(p + gap)) { hi = p + gap; break; }
          lo = p + gap + 1;
          p += gap;
          gap *= 2;
        }
      }
      else {                            /* at p or before it */
        hi = p;
        while (p >= lo + gap) {
          if (PROBE(p - gap)) { lo = p - gap + 1; break; }
          hi = p - gap;
          p -= gap;
          gap *= 2;
        }
      }
    }
  }
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    if (PROBE(mid)) lo = mid + 1;
    else hi = mid;
  }
  if (!upper && lo < count)
    *found = keycmp(base + lo * stride, key, kl) == 0;
  return lo;
}
#undef PROBE

/* The optional field beside a search's hit: its position at argument a
** and its length at a + 1, neither negative. *at is -1 without a
** position (no field), *len -1 without a length (a u64). Returns whether
** a length was given. */
static int optfield (lua_State *L, int a, lua_Integer *at,
                     lua_Integer *len) {
  int sized = !lua_isnoneornil(L, a + 1);
  *at = luaL_optinteger(L, a, -1);
  *len = luaL_optinteger(L, a + 1, -1);
  if (!lua_isnoneornil(L, a) && *at < 0)
    luaL_argerror(L, a, lua_pushfstring(L, "position %I is negative", *at));
  if (sized && *len < 0)
    luaL_argerror(L, a + 1, lua_pushfstring(L, "length %I is negative",
                  *len));
  return sized;
}

/* The search of bsearch (counted: 0) and search (1); see them. */
static int dosearch (lua_State *L, int counted) {
  View *v = checkview(L, 1);
  lua_Integer pos = intarg(L, counted ? 3 : 2);
  lua_Integer cpos = counted ? intarg(L, 2) : 0;
  uint64_t count = counted ? 0 : checkcount(L, 3, "count");
  uint64_t stride = checkcount(L, 4, "stride");
  size_t kl;
  const unsigned char *key = (const unsigned char *)luaL_checklstring(L, 5,
                                                                      &kl);
  int upper = lua_toboolean(L, 6);
  lua_Integer at, len;
  const unsigned char *base;
  uint64_t lo;
  int found;
  optfield(L, 7, &at, &len);
  if (v->state != LIVE) checkview(L, 1);   /* the key's conversion ran a
                                           ** finalizer that retired it */
  if (counted) count = nodecount(L, v, cpos, 2);
  base = searchrun(L, v, counted ? 3 : 2, 4, pos, count, stride, kl, kl);
  lo = lowerbound(base, count, stride, key, kl, upper, &found, NULL);
  if (PROFILING(v->bf))
    profsearch(v, counted ? cpos : -1, pos, count, stride, kl);
  lua_pushinteger(L, (lua_Integer)lo);
  lua_pushboolean(L, found);
  if (at >= 0) pushbeside(L, v, at, lo, stride, len);
  else if (counted) lua_pushnil(L);
  CHECKLOST(L, v);   /* after the field beside the hit, read last */
  if (!counted) return at >= 0 ? 3 : 2;
  if (!counted) return 3;
  lua_pushinteger(L, (lua_Integer)count);
  return 4;
}

/* remove_key(countpos, pos, stride, key): removes from a node's sorted
** run (count entries, the count being the little-endian u32 at countpos)
** every entry whose first #key bytes equal key, moving the entries after
** them down and storing the new count. Returns the index where they were
** (or would be), how many it removed and the count left: a B+tree leaf's
** delete in one call. */
/* remove_key's work, its arguments (countpos, pos, stride, key) from a;
** the view at 1. */
static int doremove (lua_State *L, View *v, int a) {
  lua_Integer cpos = intarg(L, a);
  lua_Integer pos = intarg(L, a + 1);
  uint64_t stride = checkcount(L, a + 2, "stride");
  size_t kl;
  const unsigned char *key = (const unsigned char *)luaL_checklstring(L,
                                                              a + 3, &kl);
  unsigned char *base;
  uint64_t count, lo, e;
  int found;
  if (v->state != LIVE) checkwritable(L, 1);   /* the key's conversion ran
                                               ** a finalizer */
  luaL_argcheck(L, kl > 0, a + 3, "an empty key would remove every entry");
  count = nodecount(L, v, cpos, a);
  /* whole entries move, so the last one must fit, and hold a key */
  base = searchrun(L, v, a + 1, a + 2, pos, count, stride, kl,
                   kl > stride ? UINT64_MAX : stride);
  lo = lowerbound(base, count, stride, key, kl, 0, &found, NULL);
  if (PROFILING(v->bf)) profsearch(v, cpos, pos, count, stride, kl);
  e = lo;
  while (found && e < count && keycmp(base + e * stride, key, kl) == 0) e++;
  if (e > lo) {
    /* the whole view is announced; what moves is what the call stores */
    touchn(L, v, 0, v->len, (count - e) * stride + 4);
    memmove(base + lo * stride, base + e * stride,
            (size_t)((count - e) * stride));
    store_le(vptr(v) + cpos, count - (e - lo), 4);
  }
  CHECKLOST(L, v);
  lua_pushinteger(L, (lua_Integer)lo);
  lua_pushinteger(L, (lua_Integer)(e - lo));
  lua_pushinteger(L, (lua_Integer)(count - (e - lo)));
  return 3;
}

static int view_remove_key (lua_State *L) {
  return doremove(L, checkwritable(L, 1), 2);
}

/* bsearch(pos, count, stride, key [, upper [, at [, len]]]): binary
** search of a sorted run of count entries, stride bytes apart from pos,
** whose first #key bytes compare as memcmp. Returns the 0-based index of
** the first entry >= key (> key with upper) and whether an entry equals
** key; with at, also the field at at + index * stride (see pushbeside):
** the child beside a separator, or the value of an entry, in the same
** call. */
static int view_bsearch (lua_State *L) { return dosearch(L, 0); }

/* search(countpos, pos, stride, key [, upper [, at [, len]]]): bsearch
** of a node whose entry count is the little-endian u32 at countpos.
** Returns index, found, the field (nil without at) and the count. */
static int view_search (lua_State *L) { return dosearch(L, 1); }

/* Raises unless count entries of len + len2 bytes, stride bytes apart
** from pos, lie in the view. */
static void checkentries (lua_State *L, const View *v, lua_Integer pos,
                          uint64_t count, uint64_t stride, uint64_t len,
                          uint64_t len2, int parg, int sarg) {
  if (count > 1 && stride == 0)
    luaL_argerror(L, sarg, lua_pushfstring(L, "stride 0 puts %I entries at "
                  "one place", (lua_Integer)count));
  if (count > 0 &&
      (pos < 0 || (uint64_t)pos > v->len ||
       (count > 1 && count - 1 > (v->len - (uint64_t)pos) / stride) ||
       len > v->len || len2 > v->len - len ||
       len + len2 > v->len - (uint64_t)pos - (count - 1) * stride))
    luaL_argerror(L, parg, lua_pushfstring(L, "%I entr%s of %I byte%s, %I "
                  "apart from position %I, pass the view (%I bytes)",
                  (lua_Integer)count, count == 1 ? "y" : "ies",
                  (lua_Integer)(len + len2), plural(len + len2),
                  (lua_Integer)stride, pos, (lua_Integer)v->len));
}

/* An insert's run, as insert_key and put_key take it: arguments
** (countpos, pos, stride, capacity, key [, value]) from a. */
typedef struct Ins {
  lua_Integer cpos, pos;
  uint64_t stride, cap, count, lo;
  const unsigned char *key;
  const char *val;       /* NULL: no value */
  size_t kl, vl;
  unsigned char *base;   /* the run's start in the view */
  int found;
} Ins;

/* Reads and checks an insert's arguments from a (no node is read yet);
** val says whether the value is required. */
static void insargs (lua_State *L, int a, int val, Ins *r) {
  r->cpos = intarg(L, a);
  r->pos = intarg(L, a + 1);
  r->stride = checkcount(L, a + 2, "stride");
  r->cap = checkcount(L, a + 3, "capacity");
  r->key = (const unsigned char *)luaL_checklstring(L, a + 4, &r->kl);
  r->vl = 0;
  r->val = (val || !lua_isnoneornil(L, a + 5))
           ? luaL_checklstring(L, a + 5, &r->vl) : NULL;
  luaL_argcheck(L, r->stride > 0, a + 2, "stride must be positive");
  /* the count is a u32: a larger capacity would let it wrap */
  luaL_argcheck(L, r->cap >= 1 && r->cap <= UINT32_MAX, a + 3,
                "capacity must be 1 to 4294967295");
  if (r->kl + r->vl != r->stride)
    luaL_argerror(L, a + 4, lua_pushfstring(L, "a key of %I byte%s and a "
                  "value of %I make no entry of %I", (lua_Integer)r->kl,
                  plural(r->kl), (lua_Integer)r->vl,
                  (lua_Integer)r->stride));
}

/* Checks the node in the view (its count against the capacity, the room
** for capacity entries) and searches it for the key: past its equal
** entries with upper. */
static void inssearch (lua_State *L, View *v, int a, int upper, Ins *r) {
  r->count = nodecount(L, v, r->cpos, a);
  if (r->count > r->cap)
    luaL_argerror(L, a + 3, lua_pushfstring(L, "the node holds %I entries, "
                  "more than its capacity %I", (lua_Integer)r->count,
                  (lua_Integer)r->cap));
  checkentries(L, v, r->pos, r->cap, r->stride, r->stride, 0, a + 1, a + 2);
  r->base = vptr(v) + r->pos;
#ifndef FMAP_NO_PREFETCH
  prefetch_run(r->base, r->count * r->stride);
#endif
  r->lo = lowerbound(r->base, r->count, r->stride, r->key, r->kl, upper,
                     &r->found, NULL);
  if (PROFILING(v->bf))
    profsearch(v, r->cpos, r->pos, r->count, r->stride, r->kl);
}

/* Puts the entry at r->lo, moving the run's rest up, and counts it. */
static void insput (lua_State *L, View *v, Ins *r) {
  unsigned char *p = r->base + r->lo * r->stride;
  /* the whole view is announced; what moves is what the call stores */
  touchn(L, v, 0, v->len, (r->count - r->lo + 1) * r->stride + 4);
  memmove(p + r->stride, p, (size_t)((r->count - r->lo) * r->stride));
  memcpy(p, r->key, r->kl);
  if (r->vl > 0) memcpy(p + r->kl, r->val, r->vl);
  store_le(vptr(v) + r->cpos, ++r->count, 4);
}

/* insert_key(countpos, pos, stride, capacity, key [, value]): a B+tree
** leaf's insert in one call. In a node's sorted run of entries of stride
** bytes from pos (key, then value; the entry count is the little-endian
** u32 at countpos), puts key..value after the entries whose first #key
** bytes equal key, moving the entries after it up, and stores the count
** plus one. #key + #value must be stride, and capacity entries must fit
** in the view. A node that holds capacity entries already is left as it
** is. Returns the index where the entry went (or would go), the count
** after, and whether it went in. Its arguments from a; the view at 1. */
static int doinsert (lua_State *L, View *v, int a) {
  Ins r;
  int in;
  insargs(L, a, 0, &r);
  if (v->state != LIVE) checkwritable(L, 1);   /* a conversion ran a
                                               ** finalizer */
  inssearch(L, v, a, 1, &r);
  in = r.count < r.cap;
  if (in) insput(L, v, &r);
  CHECKLOST(L, v);
  lua_pushinteger(L, (lua_Integer)r.lo);
  lua_pushinteger(L, (lua_Integer)r.count);
  lua_pushboolean(L, in);
  return 3;
}

static int view_insert_key (lua_State *L) {
  return doinsert(L, checkwritable(L, 1), 2);
}

/* put_key(countpos, pos, stride, capacity, key, value [, linkpos]): a
** B+tree leaf's put in one call: one entry a key. In a node's sorted run
** as insert_key's, finds key's first entry. If there is one, its value is
** replaced, unless the entry after it has key too; if there is none, the
** entry goes in there, unless the node is full. With linkpos, the node is
** a leaf whose next leaf's offset is the u64 at linkpos: when key's entry
** is the run's last, or key would go at its end, and there is a next
** leaf, nothing is done, for the next leaf decides (it may hold key).
** Returns the index of key's entry (or where it would go), the count
** after, and a status: PK_INSERTED, PK_REPLACED (then the old value, a
** fourth result), PK_FULL, PK_SEVERAL, PK_EDGE_FOUND (the entry is the
** run's last) or PK_EDGE_NEW (key would go at the end); nothing is stored
** but with the first two. */
enum { PK_INSERTED, PK_REPLACED, PK_FULL, PK_SEVERAL, PK_EDGE_FOUND,
       PK_EDGE_NEW };

/* put_key's work on the node in the view at 1: its arguments (countpos,
** pos, stride, capacity, key, value [, linkpos]) from a, read into r by
** insargs; b and old the room for the old value, made before the node
** is read (a box for a large value is an allocation, which may run a
** finalizer that changes the node). Pushes the index, the count and the
** status, then the old value after a replace; returns how many. */
static int doput (lua_State *L, View *v, int a, Ins *r, luaL_Buffer *b,
                  char *old) {
  int linked = !lua_isnoneornil(L, a + 6), st;
  lua_Integer lpos = linked ? intarg(L, a + 6) : 0;
  unsigned char *p;
  luaL_argcheck(L, r->kl > 0, a + 4, "an empty key would match every entry");
  if (v->state != LIVE) checkwritable(L, 1);   /* a finalizer ran */
  if (linked && (lpos < 0 || (uint64_t)lpos > v->len ||
                 v->len - (uint64_t)lpos < 8))
    luaL_argerror(L, a + 6, lua_pushfstring(L, "link position %I leaves no "
                  "u64 in the view (%I bytes)", lpos, (lua_Integer)v->len));
  inssearch(L, v, a, 0, r);
  p = r->base + r->lo * r->stride;
  if (r->found) {
    if (r->lo + 1 < r->count && keycmp(p + r->stride, r->key, r->kl) == 0)
      st = PK_SEVERAL;
    else if (r->lo + 1 == r->count && linked &&
             load_le(vptr(v) + lpos, 8) != 0) st = PK_EDGE_FOUND;
    else {
      st = PK_REPLACED;
      touch(L, v, (uint64_t)r->pos + r->lo * r->stride + r->kl, r->vl);
      memcpy(old, p + r->kl, r->vl);
      memcpy(p + r->kl, r->val, r->vl);
    }
  }
  else if (r->lo == r->count && linked && load_le(vptr(v) + lpos, 8) != 0)
    st = PK_EDGE_NEW;
  else if (r->count == r->cap) st = PK_FULL;
  else {
    st = PK_INSERTED;
    insput(L, v, r);
  }
  CHECKLOST(L, v);
  /* the buffer's slot, on top, becomes the old value or stays below */
  if (st == PK_REPLACED) luaL_pushresultsize(b, r->vl);
  lua_pushinteger(L, (lua_Integer)r->lo);
  lua_pushinteger(L, (lua_Integer)r->count);
  lua_pushinteger(L, st);
  if (st != PK_REPLACED) return 3;
  lua_rotate(L, -4, -1);
  return 4;
}

static int view_put_key (lua_State *L) {
  View *v = checkwritable(L, 1);
  Ins r;
  luaL_Buffer b;
  char *old;
  insargs(L, 2, 1, &r);
  lua_settop(L, 8);               /* the buffer's slot above linkpos */
  old = luaL_buffinitsize(L, &b, r.vl);
  return doput(L, v, 2, &r, &b, old);
}

/* read_entries(t, pos, count, stride, len [, len2]): stores in t[1],
** t[2], ... the len bytes of each of count entries stride bytes apart
** from pos, as strings; with len2, each followed by the len2 bytes after
** them (a key, then its value). Returns how many strings it stored. One
** call reads a whole node for an iterator: no format to parse, and the
** table is the caller's to reuse. */
static int view_read_entries (lua_State *L) {
  View *v = checkview(L, 1);
  lua_Integer pos = intarg(L, 3);
  uint64_t count = checkcount(L, 4, "count");
  uint64_t stride = checkcount(L, 5, "stride");
  uint64_t len = checkcount(L, 6, "length");
  int two = !lua_isnoneornil(L, 7);
  uint64_t len2 = two ? checkcount(L, 7, "length") : 0, i;
  lua_Integer k = 0;
  const unsigned char *map = NULL;
  uint64_t off = 0, vlen = 0;
  luaL_checktype(L, 2, LUA_TTABLE);
  for (i = 0; i < 2 * count; i++) {
    /* Every string is an allocation, which may run a finalizer that
    ** retires, retargets or moves the view: check again when any of
    ** that changed. */
    const char *p;
    if (v->state != LIVE || v->bf->f.map != map || v->off != off ||
        v->len != vlen) {
      if (v->state != LIVE) checkview(L, 1);
      checkentries(L, v, pos, count, stride, len, len2, 3, 5);
      map = v->bf->f.map;
      off = v->off;
      vlen = v->len;
    }
    p = (const char *)map + off + (uint64_t)pos + (i / 2) * stride;
    if (i % 2 == 0) lua_pushlstring(L, p, (size_t)len);
    else if (two) lua_pushlstring(L, p + len, (size_t)len2);
    else continue;
    lua_rawseti(L, 2, ++k);
  }
  CHECKLOST(L, v);
  if (count > 0 && PROFILING(v->bf))
    profread(v->bf, v->off + (uint64_t)pos, (count - 1) * stride + len +
             len2, count * (len + len2));
  lua_pushinteger(L, k);
  return 1;
}

/* Compares the string of slot i (see bsearch_slots) with key: bytes, then
** length. Raises if the slot or its string pass the view. */
static int slotcmp (lua_State *L, const View *v, uint64_t slot, uint64_t i,
                    const unsigned char *key, size_t kl) {
  const unsigned char *p = vptr(v);
  uint64_t at = load_le(p + slot, 4), n = 0;
  int c;
  if (at <= v->len && v->len - at >= 4) n = load_le(p + at, 4);
  if (at > v->len || v->len - at < 4 || n > v->len - at - 4)
    luaL_argerror(L, 2, lua_pushfstring(L, "string of slot %I at position "
                  "%I passes the view (%I bytes)", (lua_Integer)i,
                  (lua_Integer)at, (lua_Integer)v->len));
  c = keycmp(p + at + 4, key, n < kl ? (size_t)n : kl);
  if (c != 0) return c;
  return n < kl ? -1 : (n > kl);
}

/* bsearch_slots(pos, count, stride, key [, upper]): binary search of
** count strings found through a table of slots: slot i is the
** little-endian u32 at pos + i * stride, the position in the view of a
** little-endian u32 length and then that many bytes (the cells of a
** slotted B+tree node). The strings sort as bytes, a proper prefix first.
** Returns the 0-based index of the first string >= key (> key with upper)
** and whether one equals key. */
static int view_bsearch_slots (lua_State *L) {
  View *v = checkview(L, 1);
  lua_Integer pos = intarg(L, 2);
  uint64_t count = checkcount(L, 3, "count");
  uint64_t stride = checkcount(L, 4, "stride");
  size_t kl;
  const unsigned char *key = (const unsigned char *)luaL_checklstring(L, 5,
                                                                      &kl);
  int upper = lua_toboolean(L, 6);
  uint64_t lo = 0, hi = count;
  int found = 0;
  if (v->state != LIVE) checkview(L, 1);   /* the key's conversion ran a
                                           ** finalizer that retired it */
  if (count > 0 && stride < 4)
    luaL_argerror(L, 4, lua_pushfstring(L, "stride %I is shorter than a "
                  "slot's 4-byte position", (lua_Integer)stride));
  if (count > 0 && (pos < 0 || (uint64_t)pos > v->len ||
                    count - 1 > (v->len - (uint64_t)pos) / stride ||
                    v->len - (uint64_t)pos - (count - 1) * stride < 4))
    luaL_argerror(L, 2, lua_pushfstring(L, "%I slot%s of %I bytes from "
                  "position %I pass the view (%I bytes)", (lua_Integer)count,
                  plural(count), (lua_Integer)stride, pos,
                  (lua_Integer)v->len));
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    int c = slotcmp(L, v, (uint64_t)pos + mid * stride, mid, key, kl);
    if (c == 0) found = 1;
    if (c < 0 || (upper && c == 0)) lo = mid + 1;
    else hi = mid;
  }
  if (!upper && lo < count)
    found = slotcmp(L, v, (uint64_t)pos + lo * stride, lo, key, kl) == 0;
  CHECKLOST(L, v);
  if (count > 0 && PROFILING(v->bf))   /* a probe: slot, length and key */
    profread(v->bf, v->off + (uint64_t)pos, (count - 1) * stride + 4,
             probebytes(count, kl + 8));
  lua_pushinteger(L, (lua_Integer)lo);
  lua_pushboolean(L, found);
  return 2;
}


/* ---------------------------------------------------------------------- */
/* Searchers                                                               */
/* ---------------------------------------------------------------------- */

/* searcher(countpos, pos, stride [, at [, len]]) → search(offset, key
** [, upper [, depth [, below]]]): a view's search with its node layout
** fixed once, over the node in the block at offset, with no view; it
** returns index, found, field, count and the node's offset. With depth it
** descends: depth nodes, each at the u64 beside the hit in the one before,
** then with below (a searcher of the same file) one more in below's
** layout; the last search's results are returned. A B+tree's lookup is
** then one call where it retargeted a view and passed seven arguments at
** each level (bench/instructions.lua: a get costs 29% fewer
** instructions). The layout is checked when the searcher is made: the
** count and the run's start lie in a block. Each node searched is checked:
** its block is allocated and not free, and the count's entries lie in it,
** for the count and the children come from the file; depth may not pass
** the file's block count, so that a cycle of children ends. */
typedef struct Searcher {
  const char *tag;      /* SEARCHER_TAG */
  BlockFile *bf;        /* kept alive by the upvalue SR_BF */
  uint64_t serial;      /* bf's */
  uint64_t cpos, pos, stride;
  lua_Integer at, len;  /* at < 0: no field beside; len < 0: a u64 */
  lua_Integer ks;       /* keys of ks bytes only, or any (-1) */
} Searcher;

static const char SEARCHER_TAG[] = "fmap searcher";
#define SR_BF     lua_upvalueindex(1)
#define SR_STATE  lua_upvalueindex(2)

static int searcher_call (lua_State *L);

/* For the few helpers of a hot call that the compiler would otherwise
** leave out of line. */
#if defined(__GNUC__)
#define HOT_INLINE inline __attribute__((always_inline))
#else
#define HOT_INLINE inline
#endif

/* The layout at index i, a searcher's state, if it searches bf; else
** NULL. */
static HOT_INLINE const Searcher *tosearcher (lua_State *L, int i,
                                              const BlockFile *bf) {
  const Searcher *s = (const Searcher *)lua_touserdata(L, i);
  if (s != NULL && (lua_rawlen(L, i) != sizeof *s || s->tag != SEARCHER_TAG
                    || s->bf != bf || s->serial != bf->serial))
    s = NULL;
  return s;
}

/* The layout of the searcher (a closure) at index i, which must search
** bf; raises otherwise. */
static const Searcher *checksearcher (lua_State *L, int i,
                                      const BlockFile *bf) {
  const Searcher *s;
  const char *why = NULL;
  if (lua_tocfunction(L, i) != searcher_call)
    luaL_typeerror(L, i, "searcher");
  lua_getupvalue(L, i, 2);       /* stays alive with the closure at i */
  s = (const Searcher *)lua_touserdata(L, -1);
  if (s == NULL || lua_rawlen(L, -1) != sizeof *s || s->tag != SEARCHER_TAG)
    why = "the searcher's state is gone (an upvalue was replaced)";
  else if (s->bf != bf || s->serial != bf->serial)
    why = "a searcher of another BlockFile";
  lua_pop(L, 1);
  if (why != NULL) luaL_argerror(L, i, why);
  return s;
}

/* Searches the node in the block at off with s's layout for key (kl
** bytes): sets *lo to the index, *found and *count. br holds the ranks
** the node's keys lie between, if known, and gets those of the child
** beside entry *lo: the entries on either side of it. With prefetch it
** asks for the entries' cache lines first: worth it for a node that is
** likely cold (a leaf), not for the few internal nodes above it, which
** stay in the cache and whose 64 requests would only cost. Returns 0, or
** 1 when the block is not allocated, 2 when the count's entries pass
** it. */
static HOT_INLINE int searchnode (BlockFile *bf, const Searcher *s,
                                  uint64_t off, const unsigned char *key,
                                  size_t kl, int upper, uint64_t *lo,
                                  int *found, uint64_t *count,
                                  Bracket *br, int prefetch) {
  uint64_t bs = bf->f.h.block_size, n;
  const unsigned char *node;
  if (fm_check_range(&bf->f, off, 1) != 0) return 1;
  node = bf->f.map + off;
  *count = n = load_le(node + s->cpos, 4);
  if (n > 0) {
    if (n - 1 > (bs - s->pos) / s->stride ||
        kl > bs - s->pos - (n - 1) * s->stride)
      return 2;
#ifndef FMAP_NO_PREFETCH
    if (prefetch) prefetch_run(node + s->pos, (n - 1) * s->stride + kl);
#endif
  }
  *lo = lowerbound(node + s->pos, n, s->stride, key, kl, upper, found, br);
  if (kl >= 8) {
    if (*lo > 0) br->a = rank8(node + s->pos + (*lo - 1) * s->stride);
    if (*lo < n) br->b = rank8(node + s->pos + *lo * s->stride);
    br->known = *lo > 0 && *lo < n ? 1 : br->known;
  }
  return 0;
}

/* Raises what searchnode's status st says of the node at off, reached
** through the field beside entry fromi of the node at from (0: off is
** argument 1). */
static int nodefail (lua_State *L, BlockFile *bf, const Searcher *s, int st,
                     uint64_t off, uint64_t count, size_t kl, uint64_t from,
                     uint64_t fromi) {
  if (LOSTMAP(bf)) notopen(L, bf);   /* the node read was zeros */
  if (st == 2) {
    if (from != 0)
      lua_pushfstring(L, " (the child beside entry %I of the node at %I)",
                      (lua_Integer)fromi, (lua_Integer)from);
    else lua_pushliteral(L, "");
    return luaL_error(L, "the node at %I%s counts %I entries of %I bytes "
                      "(keys of %I) from position %I, which pass its block "
                      "(%I bytes)", (lua_Integer)off, lua_tostring(L, -1),
                      (lua_Integer)count, (lua_Integer)s->stride,
                      (lua_Integer)kl, (lua_Integer)s->pos,
                      (lua_Integer)bf->f.h.block_size);
  }
  if (from == 0) return corefail(L, bf, 1);
  return luaL_error(L, "the child beside entry %I of the node at %I: %s",
                    (lua_Integer)fromi, (lua_Integer)from, bf->f.msg);
}

/* Whether the searcher at index i is one of keys of one size (made with
** keysize) and the key at k is not a string of that size: its caller
** then returns nil, for the structure to raise its own error. Read before
** the key, so no conversion has run. */
static HOT_INLINE int wrongkey (lua_State *L, int i, int k) {
  const Searcher *s = (const Searcher *)lua_touserdata(L, i);
  return s != NULL && lua_rawlen(L, i) == sizeof *s &&
         s->tag == SEARCHER_TAG && s->ks >= 0 &&
         (lua_type(L, k) != LUA_TSTRING ||
          lua_rawlen(L, k) != (size_t)s->ks);
}

static int searcher_call (lua_State *L) {
  lua_Integer off = intarg(L, 1);
  size_t kl;
  const unsigned char *key = wrongkey(L, SR_STATE, 2) ? NULL
    : (const unsigned char *)luaL_checklstring(L, 2, &kl);
  int upper = lua_toboolean(L, 3), found = 0, below = 0, st;
  lua_Integer depth = 1, follow;
  uint64_t count = 0, lo = 0, bs, at;
  BlockFile *bf;
  const Searcher *s, *cur;
  Bracket br = { 0, UINT64_MAX, 0 };
  View v;              /* only what pushbeside reads */
  if (key == NULL) return 0;
  if (lua_gettop(L) > 3) {
    depth = luaL_optinteger(L, 4, 1);
    below = !lua_isnoneornil(L, 5);
  }
  /* All after the key's conversion, which may have run a finalizer that
  ** closed the file or replaced an upvalue. */
  bf = tobf(L, SR_BF);
  if (bf == NULL || (s = tosearcher(L, SR_STATE, bf)) == NULL)
    luaL_error(L, "the searcher's state is gone (an upvalue was replaced)");
  if (bf->open != BF_OPEN) notopen(L, bf);
  if (off < 0)
    luaL_argerror(L, 1, lua_pushfstring(L, "offset %I is negative", off));
  bs = bf->f.h.block_size;
  cur = below ? checksearcher(L, 5, bf) : s;
  if (depth != !below) {
    if (depth < !below)
      luaL_argerror(L, 4, lua_pushfstring(L, "depth %I searches no node%s",
                    depth, depth == 0 ? " (0 wants a searcher below)" : ""));
    if ((uint64_t)depth > bf->f.h.top / bs)
      luaL_argerror(L, 4, lua_pushfstring(L, "depth %I passes more nodes "
                    "than the file has blocks (%I)", depth,
                    (lua_Integer)(bf->f.h.top / bs)));
    if (s->at < 0 || s->len >= 0)
      luaL_argerror(L, 4, "a descent follows the u64 beside each hit; this "
                    "searcher was made without its position, or with a "
                    "length");
    if ((uint64_t)s->at > bs - 8)
      luaL_argerror(L, 4, lua_pushfstring(L, "a descent follows the u64 "
                    "beside each hit; this searcher's position %I leaves "
                    "none in a block (%I bytes)", s->at, (lua_Integer)bs));
  }
  follow = below ? depth : depth - 1;        /* fields to follow */
  at = (uint64_t)off;
  st = searchnode(bf, follow > 0 ? s : cur, at, key, kl, upper, &lo, &found,
                  &count, &br, follow == 0);
  if (st != 0) nodefail(L, bf, follow > 0 ? s : cur, st, at, count, kl, 0, 0);
  if (PROFILING(bf)) {
    profcount(bf, PROF_DESCENT);
    profread(bf, at, 4, 4 + probebytes(count, kl));
  }
  for (; follow > 0; follow--) {   /* to the node beside the hit */
    uint64_t from = at, fromi = lo, f = (uint64_t)s->at + lo * s->stride;
    const Searcher *next = follow > 1 ? s : cur;
    /* at <= bs - 8 was checked; f, which may wrap, counts only once
    ** lo * stride <= bs - at */
    if (lo > (bs - (uint64_t)s->at) / s->stride || f > bs - 8)
      luaL_error(L, "the node at %I has no child beside entry %I: it would "
                 "pass the block (%I bytes)", (lua_Integer)at,
                 (lua_Integer)lo, (lua_Integer)bs);
    at = load_le(bf->f.map + at + f, 8);
    if (PROFILING(bf)) profread(bf, from + f, 8, 8);   /* the child */
    st = searchnode(bf, next, at, key, kl, upper, &lo, &found, &count, &br,
                    follow == 1);
    if (st != 0) nodefail(L, bf, next, st, at, count, kl, from, fromi);
    if (PROFILING(bf)) profread(bf, at, 4, 4 + probebytes(count, kl));
  }
  lua_pushinteger(L, (lua_Integer)lo);
  lua_pushboolean(L, found);
  v.bf = bf;
  v.off = at;
  v.len = bs;
  pushbeside(L, &v, cur->at, lo, cur->stride, cur->len);
  if (LOSTMAP(bf)) notopen(L, bf);   /* after the field, read last */
  lua_pushinteger(L, (lua_Integer)count);
  lua_pushinteger(L, (lua_Integer)at);
  return 5;
}

/* The descent of descend_insert and descend_remove, whose arguments are
** view, searcher, root, depth, keysize, then remove_key's or insert_key's
** (the stride at 8, the key at k, an insert's value after it). Returns 0
** when the key is not a string of keysize bytes, or an insert's value
** not one of stride - keysize: the caller then returns nil, for the
** structure to raise its own error. Else descends depth levels from the
** node at root with the searcher, as searcher(root, key, upper, depth)
** does, moves the view to the node reached (as retarget), and returns
** 1. */
static int descendview (lua_State *L, View *v, int upper, int k,
                        int insert) {
  BlockFile *bf = v->bf;
  const Searcher *s = checksearcher(L, 2, bf);
  uint64_t at = checkoffset(L, 3), bs = bf->f.h.block_size, from = 0;
  uint64_t fromi = 0;
  Bracket br = { 0, UINT64_MAX, 0 };
  lua_Integer depth = intarg(L, 4);
  lua_Integer ks = intarg(L, 5);
  size_t kl;
  const unsigned char *key;
  luaL_argcheck(L, ks >= 1, 5, "key size must be positive");
  if (lua_type(L, k) != LUA_TSTRING || lua_rawlen(L, k) != (size_t)ks)
    return 0;
  if (insert && (lua_type(L, k + 1) != LUA_TSTRING ||
                 (lua_Integer)lua_rawlen(L, k + 1) !=
                 intarg(L, 8) - ks))
    return 0;
  key = (const unsigned char *)lua_tolstring(L, k, &kl);
  if (depth < 0 || (uint64_t)depth > bf->f.h.top / bs)
    luaL_argerror(L, 4, lua_pushfstring(L, "depth %I is not 0 to the "
                  "file's blocks (%I)", depth,
                  (lua_Integer)(bf->f.h.top / bs)));
  if (depth > 0 && (s->at < 0 || s->len >= 0 || (uint64_t)s->at > bs - 8))
    luaL_argerror(L, 2, "a descent follows the u64 beside each hit; this "
                  "searcher has no u64 there");
  if (depth > 0 && PROFILING(bf)) profcount(bf, PROF_DESCENT);
  for (; depth > 0; depth--) {
    uint64_t lo = 0, count = 0, f;
    int found, st = searchnode(bf, s, at, key, kl, upper, &lo, &found,
                               &count, &br, 0);   /* the leaf: below */
    if (st == 1 && from == 0) corefail(L, bf, 3);
    if (st != 0) nodefail(L, bf, s, st, at, count, kl, from, fromi);
    if (PROFILING(bf)) profread(bf, at, 4, 4 + probebytes(count, kl));
    f = (uint64_t)s->at + lo * s->stride;
    if (lo > (bs - (uint64_t)s->at) / s->stride || f > bs - 8)
      luaL_error(L, "the node at %I has no child beside entry %I: it would "
                 "pass the block (%I bytes)", (lua_Integer)at,
                 (lua_Integer)lo, (lua_Integer)bs);
    from = at;
    fromi = lo;
    at = load_le(bf->f.map + at + f, 8);
    if (PROFILING(bf)) profread(bf, from + f, 8, 8);   /* the child */
  }
  if (at != v->off || v->len != bs) {
#ifndef FMAP_NO_PREFETCH
    if (at < bf->f.h.top && bf->f.h.top - at >= bs)
      prefetch_run(bf->f.map + at, bs);
#endif
    if (fm_check_range(&bf->f, at, 1) != 0) {
      if (from == 0) corefail(L, bf, 3);
      luaL_error(L, "the child beside entry %I of the node at %I: %s",
                 (lua_Integer)fromi, (lua_Integer)from, bf->f.msg);
    }
    v->off = at;
    v->len = bs;
    v->wgen = 0;   /* another block: the next store looks again */
    PROFCOUNT(bf, PROF_VIEW);
  }
  CHECKLOST(L, v);   /* the descent read the file */
  return 1;
}

/* The optional counter of descend_insert and descend_remove: a view at
** argument c and the position of a u64 in it at c + 1, checked before
** the node changes. Returns the view, or NULL without one. */
static View *checkcounter (lua_State *L, int c, lua_Integer *pos) {
  View *cv;
  if (lua_isnoneornil(L, c)) return NULL;
  cv = checkwritable(L, c);
  *pos = intarg(L, c + 1);
  checkspan(L, cv, c + 1, *pos, 8);
  return cv;
}

/* Adds d to the counter (a u64 that counts a structure's entries). */
static void addcount (lua_State *L, View *cv, int c, lua_Integer pos,
                      int64_t d) {
  unsigned char *p;
  if (cv == NULL || d == 0) return;
  if (cv->state != LIVE) cv = checkwritable(L, c);  /* the insert's store
                                                    ** ran a finalizer */
  touch(L, cv, (uint64_t)pos, 8);
  p = vptr(cv) + (uint64_t)pos;
  store_le(p, load_le(p, 8) + (uint64_t)d, 8);
  CHECKLOST(L, cv);
}

/* descend_insert(searcher, root, depth, keysize, countpos, pos, stride,
** capacity, key, value [, counter, cpos]): a B+tree's insert in one call.
** Descends depth levels from the node at root with searcher (past the
** entries equal to key), moves the view to the node reached, and does
** insert_key there; if the entry went in, adds 1 to the u64 at cpos of
** the view counter (the tree's entry count). Returns insert_key's results
** and the node's offset; nil, and nothing done, when key is not a string
** of keysize bytes or value one of stride - keysize. */
/* descend_insert (insert) and descend_remove: the counter follows the
** key (and an insert's value). */
static int descend_change (lua_State *L, int insert) {
  View *v = checkwritable(L, 1), *cv;
  int c = insert ? 12 : 10;
  lua_Integer cpos = 0;
  if (!descendview(L, v, insert, insert ? 10 : 9, insert)) return 0;
  cv = checkcounter(L, c, &cpos);
  if (insert) {
    doinsert(L, v, 6);
    addcount(L, cv, c, cpos, lua_toboolean(L, -1));
  }
  else {
    doremove(L, v, 6);
    addcount(L, cv, c, cpos, -(int64_t)lua_tointeger(L, -2));
  }
  lua_pushinteger(L, (lua_Integer)v->off);
  return 4;
}

static int view_descend_insert (lua_State *L) {
  return descend_change(L, 1);
}

/* descend_remove(searcher, root, depth, keysize, countpos, pos, stride,
** key [, counter, cpos]): a B+tree's removal in one call, as
** descend_insert (the descent to the first entry >= key), then
** remove_key; subtracts the entries removed from the counter. Returns
** remove_key's results and the node's offset; nil when key is not a
** string of keysize bytes. */
static int view_descend_remove (lua_State *L) {
  return descend_change(L, 0);
}

/* descend_put(searcher, root, depth, keysize, countpos, pos, stride,
** capacity, key, value, linkpos [, counter, cpos]): a B+tree's put in
** one call. Descends depth levels from the node at root with searcher to
** the leaf where key's first entry is or would be, moves the view there,
** and does put_key there (linkpos: the u64 that links the leaf to the
** next); if the entry went in, adds 1 to the u64 at cpos of the view
** counter. Returns put_key's index, count and status, the node's offset,
** and the old value after a replace; nil, and nothing done, when key is
** not a string of keysize bytes or value one of stride - keysize. */
static int view_descend_put (lua_State *L) {
  View *v, *cv;
  Ins r;
  luaL_Buffer b;
  lua_Integer cpos = 0;
  int k;
  /* the old value's room first: it may run a finalizer, which may move
  ** the view; nothing allocates after the descent */
  char *old;
  size_t vl = lua_type(L, 11) == LUA_TSTRING ? lua_rawlen(L, 11) : 0;
  int stopped = 0;
  lua_settop(L, 14);              /* the buffer's slot above cpos */
  /* A value larger than the buffer's own array is boxed: an allocation,
  ** whose collection step could run a finalizer that changes the tree
  ** after the caller read its root. The collector waits for it. */
  if (vl > LUAL_BUFFERSIZE && lua_gc(L, LUA_GCISRUNNING)) {
    lua_gc(L, LUA_GCSTOP);
    stopped = 1;
  }
  old = luaL_buffinitsize(L, &b, vl);
  if (stopped) lua_gc(L, LUA_GCRESTART);
  v = checkwritable(L, 1);
  if (!descendview(L, v, 0, 10, 1)) return 0;
  insargs(L, 6, 1, &r);
  cv = checkcounter(L, 13, &cpos);
  k = doput(L, v, 6, &r, &b, old);
  if (lua_tointeger(L, -k + 2) == PK_INSERTED) addcount(L, cv, 13, cpos, 1);
  lua_pushinteger(L, (lua_Integer)v->off);
  if (k == 4) lua_rotate(L, -2, 1);   /* the offset before the old value */
  return k + 1;
}

static int bf_searcher (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  lua_Integer cpos = intarg(L, 2);
  lua_Integer pos = intarg(L, 3);
  lua_Integer stride = intarg(L, 4);
  lua_Integer at, len;
  int sized = optfield(L, 5, &at, &len);
  lua_Integer ks = luaL_optinteger(L, 7, -1);
  lua_Integer bs = (lua_Integer)bf->f.h.block_size;
  Searcher *s;
  if (cpos < 0 || cpos > bs - 4)
    luaL_argerror(L, 2, lua_pushfstring(L, "count position %I leaves no "
                  "4-byte count in a block (%I bytes)", cpos, bs));
  if (pos < 0 || pos > bs)
    luaL_argerror(L, 3, lua_pushfstring(L, "position %I is outside a block "
                  "(%I bytes)", pos, bs));
  luaL_argcheck(L, stride > 0, 4, "stride must be positive");
  if (sized && at < 0) luaL_argerror(L, 5, "a length wants a position");
  if (!lua_isnoneornil(L, 7) && (ks < 1 || ks > stride))
    luaL_argerror(L, 7, lua_pushfstring(L, "key size %I is not 1 to the "
                  "stride (%I)", ks, stride));
  lua_settop(L, 1);                              /* the BlockFile */
  s = (Searcher *)lua_newuserdatauv(L, sizeof *s, 0);
  s->tag = SEARCHER_TAG;
  s->bf = bf;
  s->serial = bf->serial;
  s->cpos = (uint64_t)cpos;
  s->pos = (uint64_t)pos;
  s->stride = (uint64_t)stride;
  s->at = at;
  s->len = len;
  s->ks = ks;
  lua_pushcclosure(L, searcher_call, 2);
  return 1;
}


/* luaopen_fmap adds these to the views' methods, the BlockFiles' methods
** and the fmap table. */
LUAI_DDEF const luaL_Reg node_view_methods[] = {
  {"bsearch", view_bsearch}, {"bsearch_slots", view_bsearch_slots},
  {"read_entries", view_read_entries}, {"search", view_search},
  {"remove_key", view_remove_key}, {"insert_key", view_insert_key},
  {"put_key", view_put_key}, {"descend_insert", view_descend_insert},
  {"descend_remove", view_descend_remove},
  {"descend_put", view_descend_put},
  {NULL, NULL}
};

LUAI_DDEF const luaL_Reg node_bf_methods[] = {
  {"searcher", bf_searcher},
  {NULL, NULL}
};
