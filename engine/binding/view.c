/*
** view.c: views, and their byte methods: read, write, fill, compare,
** copy, insert, hex and the fixed-width integer getters and setters, the
** hot path of every structure. A view stores its BlockFile, an offset and
** a length, never a pointer into the map: each method finds its bytes
** through the BlockFile (vptr) after its arguments are converted, since a
** conversion may run a finalizer that moves the map or retires the view.
** No blocks are allocated or freed here (lfmap.c asks the core), and no
** store skips checkwritable.
*/
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "binding.h"

/* ---------------------------------------------------------------------- */
/* Views                                                                   */
/* ---------------------------------------------------------------------- */

/* Why a view can no longer be used, by its state. */
LUAI_DDEF const char *const deadwhy[] = {
  "", "a released view", "a view of freed blocks",
  "a view of a closed BlockFile", "a view of a BlockFile that lost its map",
  "a view of blocks a rollback gave back"
};


/* Pushes what a message says of a view besides its state: "offset 4096,
** 8192 bytes, acquired at demo.lua:12". */
const char *pushviewinfo (lua_State *L, const View *v) {
  if (v->line >= 0)
    return lua_pushfstring(L, "offset %I, %I bytes, acquired at %s:%d",
                           (lua_Integer)v->off, (lua_Integer)v->len, v->src,
                           v->line);
  return lua_pushfstring(L, "offset %I, %I bytes", (lua_Integer)v->off,
                         (lua_Integer)v->len);
}

/* Raises "attempt to VERB a released view (offset ..., acquired at ...)":
** which of the script's views it was, and where the script took it. A
** view its file's close or lost map retired is named at the script's line
** even when a structure's own view met it (pushcallerwhere). */
int deadview (lua_State *L, const View *v, const char *verb) {
  if (v->state == CLOSED || v->state == LOST) pushcallerwhere(L);
  else luaL_where(L, 1);
  lua_pushfstring(L, "attempt to %s %s (%s)", verb, deadwhy[v->state],
                  pushviewinfo(L, v));
  lua_remove(L, -2);   /* pushviewinfo's string */
  lua_concat(L, 2);
  return lua_error(L);
}

/* Takes a live view off its BlockFile's list, with the state that says
** why. Plain stores only: onbus calls it, through retire. */
void unlink_view (View *v, int state) {
  BlockFile *bf = v->bf;
  if (v->state != LIVE) return;
  if (v->prev) v->prev->next = v->next;
  else bf->views = v->next;
  if (v->next) v->next->prev = v->prev;
  v->prev = v->next = NULL;
  bf->nviews--;
  v->state = state;
}

/* Pushes a new live view of [off, off + len) of the BlockFile at bfi. */
View *newview (lua_State *L, int bfi, BlockFile *bf, uint64_t off,
               uint64_t len) {
  lua_Debug ar;
  uint64_t seq = bf->f.h.seq;
  View *v = (View *)lua_newuserdatauv(L, sizeof(View), 1);
  v->tag = VIEW_TAG;
  v->bf = bf;
  v->off = off;
  v->len = len;
  v->wgen = 0;           /* no generation is 0 */
  v->state = RELEASED;   /* until linked */
  v->line = -1;
  v->src[0] = '\0';
  if (lua_type(L, UV_VIEWMT) != LUA_TTABLE) mtfail(L);
  lua_pushvalue(L, UV_VIEWMT);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, bfi);
  lua_setiuservalue(L, -2, 1);
  if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar)) {
    memcpy(v->src, ar.short_src, sizeof v->src);
    v->line = ar.currentline;
  }
  /* The allocation may have run a finalizer that closed the BlockFile or
  ** freed the blocks (any change bumps the header's seq): look again. */
  if (bf->open != BF_OPEN) notopen(L, bf);
  if (bf->f.h.seq != seq &&
      fm_check_range(&bf->f, off, len / bf->f.h.block_size) != 0)
    corefail(L, bf, 2);
  if (LOSTMAP(bf)) notopen(L, bf);   /* that check read the block */
  v->prev = NULL;
  v->next = bf->views;
  if (bf->views) bf->views->prev = v;
  bf->views = v;
  bf->nviews++;
  v->state = LIVE;
  return v;
}

/* __gc and __close: also reachable by hand (getmetatable(v).__gc(x)), so
** the argument's type is checked like any other. */
static int view_gc (lua_State *L) {
  View *v = toview(L, 1);
  if (v != NULL && v->state == LIVE) unlink_view(v, RELEASED);
  return 0;
}

/* release: a view a free or a close ended is no longer tracked, and the
** cleanup that releases it after them is right, so it passes; a second
** release of the same view is a bug in the caller's bookkeeping. */
static int view_release (lua_State *L) {
  View *v = toview(L, 1);
  if (v == NULL) return typefail(L, 1, "view", FMAP_VIEW);
  if (v->state == RELEASED) return deadview(L, v, "release");
  unlink_view(v, RELEASED);
  return 0;
}

/* retarget(offset [, blocks [, at]]): points the live view at another run
** of allocated blocks and returns it. A structure walking many nodes
** reuses one view instead of acquiring one per node; where it was
** acquired stays as it was. at says which cache lines to ask for while
** the check reads the block's mark: by default all of the first block's
** (a node about to be searched), false none (a block already in the
** cache), a position the line there (the word read next). */
/* retarget, and try_retarget (quiet): a run that the file does not hold
** (a negative or unaligned offset, past the allocated area, a free block)
** returns nil and why, where retarget raises. */
static int doretarget (lua_State *L, int quiet) {
  View *v = checkview(L, 1);
  BlockFile *bf = v->bf;
  lua_Integer o = quiet ? intarg(L, 2) : (lua_Integer)checkoffset(L, 2);
  uint64_t off = (uint64_t)o;
  lua_Integer n = luaL_optinteger(L, 3, 1);
  int at = lua_type(L, 4);
  lua_Integer pos = 0;
  luaL_argcheck(L, n >= 1, 3,
                lua_pushfstring(L, "block count %I is not positive", n));
  if (at == LUA_TNUMBER) pos = luaL_checkinteger(L, 4);
  else if (at > LUA_TNIL && at != LUA_TBOOLEAN)
    luaL_typeerror(L, 4, "boolean or integer");
  if (o < 0) {                                    /* quiet: a nil */
    lua_pushnil(L);
    lua_pushfstring(L, "offset %I is negative", o);
    return 2;
  }
#ifndef FMAP_NO_PREFETCH
  /* A walk retargets to the node it reads next: its lines are fetched
  ** while the check below waits for the first. */
  if (at <= LUA_TNIL || (at == LUA_TBOOLEAN && lua_toboolean(L, 4))) {
    if (off < bf->f.h.top && bf->f.h.top - off >= bf->f.h.block_size)
      prefetch_run(bf->f.map + off, bf->f.h.block_size);
  } else if (at == LUA_TNUMBER && pos >= 0 && off < bf->f.h.top &&
             (uint64_t)pos < bf->f.h.top - off &&
             (uint64_t)pos < (uint64_t)n * bf->f.h.block_size) {
    __builtin_prefetch(bf->f.map + off + (uint64_t)pos);
  }
#endif
  if (fm_check_range(&bf->f, off, (uint64_t)n) != 0) {
    if (!quiet || LOSTMAP(bf)) return corefail(L, bf, 2);
    lua_pushnil(L);
    lua_pushstring(L, bf->f.msg);
    return 2;
  }
  CHECKLOST(L, v);   /* the check read the block's mark */
  v->off = off;
  v->len = (uint64_t)n * bf->f.h.block_size;
  v->wgen = 0;   /* other blocks: the next store looks again */
  PROFCOUNT(bf, PROF_VIEW);
  lua_settop(L, 1);
  return 1;
}

static int view_retarget (lua_State *L) { return doretarget(L, 0); }

/* try_retarget(off [, blocks [, at]]): retarget, or nil and why when the
** file holds no such run: for an offset read from the file, which a
** damaged file may make anything, with no pcall. */
static int view_try_retarget (lua_State *L) { return doretarget(L, 1); }

static int view_len (lua_State *L) {
  View *v = checkview(L, 1);
  lua_pushinteger(L, (lua_Integer)v->len);
  return 1;
}

static int view_offset (lua_State *L) {
  View *v = checkview(L, 1);
  lua_pushinteger(L, (lua_Integer)v->off);
  return 1;
}

static int view_blocks (lua_State *L) {
  View *v = checkview(L, 1);
  lua_pushinteger(L, (lua_Integer)(v->len / v->bf->f.h.block_size));
  return 1;
}

static int view_live (lua_State *L) {
  View *v = toview(L, 1);
  if (v == NULL) return typefail(L, 1, "view", FMAP_VIEW);
  lua_pushboolean(L, v->state == LIVE);
  return 1;
}

static int view_blockfile (lua_State *L) {
  View *v = toview(L, 1);
  if (v == NULL) return typefail(L, 1, "view", FMAP_VIEW);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int view_tostring (lua_State *L) {
  View *v = toview(L, 1);
  if (v == NULL) return typefail(L, 1, "view", FMAP_VIEW);
  if (v->state == LIVE)
    lua_pushfstring(L, "view (offset %I, %I bytes, live)",
                    (lua_Integer)v->off, (lua_Integer)v->len);
  else
    lua_pushfstring(L, "view (offset %I, %I bytes, %s)", (lua_Integer)v->off,
                    (lua_Integer)v->len, v->state == RELEASED ? "released"
                    : v->state == FREED ? "blocks freed" : v->state == LOST ?
                    "map lost" : v->state == UNDONE ? "blocks a rollback "
                    "gave back" : "file closed");
  return 1;
}

/* read([pos [, len]]): the bytes as a string; len defaults to the rest. */
static int view_read (lua_State *L) {
  View *v = checkview(L, 1);
  lua_Integer pos = luaL_optinteger(L, 2, 0);
  lua_Integer len = luaL_optinteger(L, 3, 0);
  if (lua_isnoneornil(L, 3) && pos >= 0 && (uint64_t)pos <= v->len)
    len = (lua_Integer)(v->len - (uint64_t)pos);
  checkspan(L, v, 2, pos, len);
  PROFREAD(v, pos, len);
  lua_pushlstring(L, (const char *)vptr(v) + pos, (size_t)len);
  CHECKLOST(L, v);
  return 1;
}

/* write(pos, s): writes s at pos; returns the position after it. */
static int view_write (lua_State *L) {
  View *v = checkwritable(L, 1);
  lua_Integer pos = luaL_checkinteger(L, 2);
  size_t sl;
  const char *s = luaL_checklstring(L, 3, &sl);
  if (v->state != LIVE) checkview(L, 1);   /* converting a number may run
                                           ** a finalizer that retires it */
  checkspan(L, v, 2, pos, (lua_Integer)sl);
  touch(L, v, (uint64_t)pos, sl);
  memcpy(vptr(v) + pos, s, sl);
  CHECKLOST(L, v);
  lua_pushinteger(L, pos + (lua_Integer)sl);
  return 1;
}

/* fill(byte [, pos [, len]]) */
static int view_fill (lua_State *L) {
  View *v = checkwritable(L, 1);
  lua_Integer byte = luaL_checkinteger(L, 2);
  lua_Integer pos = luaL_optinteger(L, 3, 0);
  lua_Integer len;
  luaL_argcheck(L, byte >= 0 && byte <= 255, 2,
                lua_pushfstring(L, "byte %I is not in 0..255", byte));
  if (!lua_isnoneornil(L, 4)) len = luaL_checkinteger(L, 4);
  else if (pos >= 0 && (uint64_t)pos <= v->len)
    len = (lua_Integer)(v->len - (uint64_t)pos);
  else len = 0;   /* checkspan reports the position */
  checkspan(L, v, 3, pos, len);
  touch(L, v, (uint64_t)pos, (uint64_t)len);
  memset(vptr(v) + pos, (int)byte, (size_t)len);
  CHECKLOST(L, v);
  return 0;
}

/* The bytes of a string or view argument: other[opos, opos + len). */
static const unsigned char *otherbytes (lua_State *L, int i, uint64_t *olen) {
  if (lua_type(L, i) == LUA_TSTRING) {
    size_t l;
    const char *s = lua_tolstring(L, i, &l);
    *olen = l;
    return (const unsigned char *)s;
  } else {
    View *o = toview(L, i);
    if (o == NULL) luaL_typeerror(L, i, "string or view");
    if (o->state != LIVE)
      luaL_argerror(L, i, lua_pushfstring(L, "%s: %s", deadwhy[o->state],
                                          pushviewinfo(L, o)));
    *olen = o->len;
    return vptr(o);
  }
}

/* compare(pos, s_or_view [, other_pos [, len]]): memcmp of len bytes, as
** -1, 0 or 1; len defaults to the rest of the other. */
static int view_compare (lua_State *L) {
  View *v = checkview(L, 1);
  lua_Integer pos = luaL_checkinteger(L, 2);
  uint64_t olen;
  const unsigned char *o = otherbytes(L, 3, &olen);
  lua_Integer opos = luaL_optinteger(L, 4, 0);
  lua_Integer len;
  int c;
  if (opos < 0 || (uint64_t)opos > olen)
    luaL_argerror(L, 4, lua_pushfstring(L, "position %I is outside the "
                  "other (%I bytes)", opos, (lua_Integer)olen));
  len = luaL_optinteger(L, 5, (lua_Integer)(olen - (uint64_t)opos));
  if (len < 0 || (uint64_t)len > olen - (uint64_t)opos)
    luaL_argerror(L, 5, lua_pushfstring(L, "position %I + length %I is "
                  "outside the other (%I bytes)", opos, len,
                  (lua_Integer)olen));
  checkspan(L, v, 2, pos, len);
  c = memcmp(vptr(v) + pos, o + opos, (size_t)len);
  CHECKLOST(L, v);
  PROFREAD(v, pos, len);
  if (lua_type(L, 3) != LUA_TSTRING) {   /* the other view's map too */
    View *ov = toview(L, 3);
    CHECKLOST(L, ov);
    PROFREAD(ov, opos, len);
  }
  lua_pushinteger(L, (c > 0) - (c < 0));
  return 1;
}

/* copy(pos, src, src_pos, len): memmove from a view (this one too). */
static int view_copy (lua_State *L) {
  View *v = checkwritable(L, 1);
  lua_Integer pos = luaL_checkinteger(L, 2);
  View *src = checkview(L, 3);
  lua_Integer spos = luaL_checkinteger(L, 4);
  lua_Integer len = luaL_checkinteger(L, 5);
  checkspan(L, src, 4, spos, len);
  checkspan(L, v, 2, pos, len);
  PROFREAD(src, spos, len);
  touch(L, v, (uint64_t)pos, (uint64_t)len);
  memmove(vptr(v) + pos, vptr(src) + spos, (size_t)len);
  CHECKLOST(L, src);
  CHECKLOST(L, v);
  return 0;
}

/* insert(pos, len, s [, s2]): opens a gap at pos by moving the len bytes
** there up by #s + #s2, and writes s (then s2) into it: an entry put into
** a sorted run in one call. Returns the position after the strings. */
static int view_insert (lua_State *L) {
  View *v = checkwritable(L, 1);
  lua_Integer pos = luaL_checkinteger(L, 2);
  lua_Integer len = luaL_checkinteger(L, 3);
  size_t l1, l2 = 0;
  const char *s1 = luaL_checklstring(L, 4, &l1);
  const char *s2 = lua_isnoneornil(L, 5) ? NULL : luaL_checklstring(L, 5,
                                                                    &l2);
  unsigned char *p;
  if (v->state != LIVE) checkwritable(L, 1);   /* a conversion ran a
                                               ** finalizer */
  if (len < 0)
    luaL_argerror(L, 3, lua_pushfstring(L, "length %I is negative", len));
  checkspan(L, v, 2, pos, len);
  if (l1 > v->len || l2 > v->len ||
      l1 + l2 > v->len - (uint64_t)pos - (uint64_t)len)
    luaL_argerror(L, 2, lua_pushfstring(L, "a gap of %I byte%s at position "
                  "%I before %I byte%s passes the view (%I bytes)",
                  (lua_Integer)(l1 + l2), plural(l1 + l2), pos, len,
                  plural((uint64_t)len), (lua_Integer)v->len));
  touch(L, v, (uint64_t)pos, (uint64_t)len + l1 + l2);
  p = vptr(v) + pos;
  if (len > 0) memmove(p + l1 + l2, p, (size_t)len);
  memcpy(p, s1, l1);
  if (l2 > 0) memcpy(p + l1, s2, l2);
  CHECKLOST(L, v);
  lua_pushinteger(L, pos + (lua_Integer)(l1 + l2));
  return 1;
}

/* hex([pos [, len]]): a hexdump like hexdump -C, positions relative to
** the view, runs of identical lines folded into "*". */
static int view_hex (lua_State *L) {
  View *v = checkview(L, 1);
  lua_Integer pos = luaL_optinteger(L, 2, 0);
  lua_Integer len;
  const unsigned char *p;
  luaL_Buffer b;
  lua_Integer i;
  int folded = 0;
  char *out;
  size_t used = 0;
  if (!lua_isnoneornil(L, 3)) len = luaL_checkinteger(L, 3);
  else if (pos >= 0 && (uint64_t)pos <= v->len)
    len = (lua_Integer)(v->len - (uint64_t)pos);
  else len = 0;
  checkspan(L, v, 2, pos, len);
  /* All of the output at once (a line is under 96 bytes): the loop below
  ** reads the map and must not allocate, since an allocation may run a
  ** finalizer that moves the map or retires the view. After this one,
  ** the view is looked at again. */
  out = luaL_buffinitsize(L, &b, ((size_t)len / 16 + 2) * 96);
  if (v->state != LIVE) checkview(L, 1);
  checkspan(L, v, 2, pos, len);
  PROFREAD(v, pos, len);
  p = vptr(v) + pos;
  for (i = 0; i < len; i += 16) {
    char line[96];
    int n = (int)(len - i < 16 ? len - i : 16), k, at;
    if (i > 0 && n == 16 && memcmp(p + i, p + i - 16, 16) == 0 &&
        i + 16 < len) {
      if (!folded) { memcpy(out + used, "*\n", 2); used += 2; }
      folded = 1;
      continue;
    }
    folded = 0;
    at = snprintf(line, sizeof line, "%08llx ",
                  (unsigned long long)(pos + i));
    for (k = 0; k < 16; k++) {
      if (k == 8) line[at++] = ' ';
      if (k < n) at += snprintf(line + at, sizeof line - (size_t)at,
                                " %02x", p[i + k]);
      else { memcpy(line + at, "   ", 3); at += 3; }
    }
    line[at++] = ' '; line[at++] = ' '; line[at++] = '|';
    for (k = 0; k < n; k++) {
      unsigned char c = p[i + k];
      line[at++] = (c >= 32 && c < 127) ? (char)c : '.';
    }
    line[at++] = '|'; line[at++] = '\n';
    memcpy(out + used, line, (size_t)at);
    used += (size_t)at;
  }
  luaL_pushresultsize(&b, used);
  CHECKLOST(L, v);
  return 1;
}


/* ---------------------------------------------------------------------- */
/* Fixed-width integers: the hot path of every structure                   */
/* ---------------------------------------------------------------------- */

/* The bytes at argument 2 of n-byte integer, in the view at 1. */
static inline const unsigned char *intspan (lua_State *L, View **vp,
                                            int n, int write) {
  View *v = write ? checkwritable(L, 1) : checkview(L, 1);
  lua_Integer pos = luaL_checkinteger(L, 2);
  if (luai_unlikely(pos < 0 || v->len < (uint64_t)n ||
                 (uint64_t)pos > v->len - (uint64_t)n))
    luaL_argerror(L, 2, lua_pushfstring(L, "position %I + %d bytes is "
                  "outside the view (%I bytes)", pos, n,
                  (lua_Integer)v->len));
  if (!write) PROFREAD(v, pos, n);   /* a store counts in touch */
  *vp = v;
  return vptr(v) + pos;
}

/* Sign-extends the low n bytes of x. */
static inline uint64_t sext (uint64_t x, int n) {
  uint64_t m;
  if (n >= 8) return x;
  m = (uint64_t)1 << (8 * n - 1);
  return (x ^ m) - m;
}

/* Whether x fits in n bytes, signed or unsigned. */
static inline int fitsin (lua_Integer x, int n) {
  if (n >= 8) return 1;
  return x >= -((lua_Integer)1 << (8 * n - 1)) &&
         x < ((lua_Integer)1 << (8 * n));
}

#define GETTER(name, n, signedness)                                    \
  static int view_##name (lua_State *L) {                              \
    View *v;                                                           \
    uint64_t x = load_le(intspan(L, &v, n, 0), n);                     \
    CHECKLOST(L, v);                                                   \
    lua_pushinteger(L, (lua_Integer)(signedness ? sext(x, n) : x));    \
    return 1;                                                          \
  }

GETTER(u8, 1, 0)
GETTER(u16, 2, 0)
GETTER(u32, 4, 0)
GETTER(u64, 8, 0)
GETTER(i8, 1, 1)
GETTER(i16, 2, 1)
GETTER(i32, 4, 1)
GETTER(i64, 8, 1)

/* set_uN(pos, x) and set_iN(pos, x) accept x in the signed or the unsigned
** range of N bytes, so one store serves both. */
#define SETTER(name, n)                                                  \
  static int view_set_##name (lua_State *L) {                            \
    View *v;                                                             \
    unsigned char *p = (unsigned char *)intspan(L, &v, n, 1);            \
    lua_Integer x = luaL_checkinteger(L, 3);                             \
    if (!fitsin(x, n))                                                   \
      luaL_argerror(L, 3, lua_pushfstring(L, "%I does not fit in %d "    \
                    "byte%s", x, n, plural(n)));                         \
    touch(L, v, (uint64_t)(p - vptr(v)), n);                             \
    store_le(p, (uint64_t)x, n);                                         \
    CHECKLOST(L, v);                                                     \
    return 0;                                                            \
  }

SETTER(u8, 1)
SETTER(u16, 2)
SETTER(u32, 4)
SETTER(u64, 8)


/* luaopen_fmap puts these in the views' method table and metatable; the
** node primitives (node.c) and pack (pack.c) join the methods. */
LUAI_DDEF const luaL_Reg view_methods[] = {
  {"release", view_release}, {"retarget", view_retarget},
  {"try_retarget", view_try_retarget},
  {"offset", view_offset},
  {"blocks", view_blocks}, {"live", view_live},
  {"blockfile", view_blockfile},
  {"read", view_read}, {"write", view_write}, {"fill", view_fill},
  {"compare", view_compare}, {"copy", view_copy}, {"hex", view_hex},
  {"insert", view_insert},
  {"u8", view_u8}, {"u16", view_u16}, {"u32", view_u32},
  {"u64", view_u64}, {"i8", view_i8}, {"i16", view_i16},
  {"i32", view_i32}, {"i64", view_i64},
  {"set_u8", view_set_u8}, {"set_u16", view_set_u16},
  {"set_u32", view_set_u32}, {"set_u64", view_set_u64},
  {"set_i8", view_set_u8}, {"set_i16", view_set_u16},
  {"set_i32", view_set_u32}, {"set_i64", view_set_u64},
  {NULL, NULL}
};

LUAI_DDEF const luaL_Reg view_meta[] = {
  {"__len", view_len}, {"__tostring", view_tostring},
  {"__gc", view_gc}, {"__close", view_gc},
  {NULL, NULL}
};
