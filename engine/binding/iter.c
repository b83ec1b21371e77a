/*
** iter.c: the iterators a structure's loops are made of:
** fmap.batch_iterator (values a fill puts into a table a batch at a time)
** and bf:entry_iterator (fixed-size entries read straight from the file,
** a string at a time). Each step is a C call rather than a run of the
** interpreter, and can watch a field of the structure, raising when it
** changed. Like node.c, they know no structure's format.
*/
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "binding.h"


/* ---------------------------------------------------------------------- */
/* Iterators                                                               */
/* ---------------------------------------------------------------------- */

/* Whether the value at i is the BlockFile bf with that serial: a closure
** that keeps its BlockFile as an upvalue checks it so, since a script
** may replace the upvalue (debug.setupvalue) and let the file be
** collected, and a new BlockFile may then be made at the same address.
** bf is read only once the value at i is known to be it. */
static int isbf (lua_State *L, int i, const BlockFile *bf, uint64_t serial) {
  return tobf(L, i) == bf && bf->serial == serial;
}

/* fmap.batch_iterator(fill, width [, watch, key, message]): a generic-for
** iterator over values that fill(buffer) puts into a table a batch at a
** time (returning how many; 0 or nil at the end, a negative count
** raises). Each step returns the next width values (a count must be a
** multiple of the width); a negative width walks each batch from its
** end, -width values at a time in their stored order (a backward scan
** that reads each node forward). With watch, each step first checks that
** rawget(watch, key) still holds what it held at the start, and raises
** message otherwise. A structure's iterator may read a node per fill
** (with read_entries, say), and each step is a C call rather than a run
** of the interpreter. Over fixed-size entries, bf:entry_iterator below
** also saves the buffer. */
typedef struct Batch {
  const char *tag;    /* BATCH_TAG */
  lua_Integer i, n;   /* the next value's index; values in the buffer */
  int width, done;
  int reverse;        /* batches are walked from their end */
  int watch;          /* a watched field is checked at each step */
} Batch;

/* Upvalues of a step. */
#define BT_STATE    lua_upvalueindex(1)
#define BT_BUF      lua_upvalueindex(2)
#define BT_FILL     lua_upvalueindex(3)
#define BT_WATCH    lua_upvalueindex(4)
#define BT_KEY      lua_upvalueindex(5)
#define BT_INITIAL  lua_upvalueindex(6)
#define BT_MESSAGE  lua_upvalueindex(7)

/* A step's state, upvalue 1, checked by its size and tag as a view is:
** debug.setupvalue can put any value there. */
static const char BATCH_TAG[] = "fmap batch", ENTRIES_TAG[] = "fmap entries";

static int upvaluefail (lua_State *L) {
  return luaL_error(L, "the iterator's state is gone (an upvalue was "
                    "replaced)");
}

static void *stepstate (lua_State *L, size_t size, const char *tag) {
  const char **p = (const char **)lua_touserdata(L, BT_STATE);
  if (p == NULL || lua_rawlen(L, BT_STATE) != size || *p != tag)
    upvaluefail(L);
  return p;
}

/* A step's watch: raises the message (upvalue msg) unless rawget(watch,
** key) still holds what it held at the start (upvalue initial). The
** upvalues of both iterators' steps sit at the same indices. */
static void checkwatch (lua_State *L) {
  int same;
  if (lua_type(L, BT_WATCH) != LUA_TTABLE) upvaluefail(L);
  lua_pushvalue(L, BT_KEY);
  lua_rawget(L, BT_WATCH);
  same = lua_rawequal(L, -1, BT_INITIAL);
  lua_pop(L, 1);
  if (!same) {
    luaL_where(L, 1);
    lua_pushvalue(L, BT_MESSAGE);
    lua_concat(L, 2);
    lua_error(L);
  }
}

/* Checks the optional watch, key and message arguments at w, w+1, w+2 of
** an iterator's constructor and pushes the last four upvalues of its step:
** watch, key, the watched value now, message. Returns whether to watch. */
static int pushwatch (lua_State *L, int w) {
  int watch = !lua_isnoneornil(L, w);
  if (watch) {
    luaL_checktype(L, w, LUA_TTABLE);
    luaL_argcheck(L, !lua_isnoneornil(L, w + 1), w + 1, "key expected");
    luaL_optstring(L, w + 2, NULL);
  }
  lua_pushvalue(L, w);                           /* watch */
  lua_pushvalue(L, w + 1);                       /* key */
  if (watch) {
    lua_pushvalue(L, w + 1);
    lua_rawget(L, w);                            /* its value now */
  }
  else lua_pushnil(L);
  if (lua_isnoneornil(L, w + 2)) lua_pushliteral(L, "changed during iteration");
  else lua_pushvalue(L, w + 2);
  return watch;
}

static int batch_step (lua_State *L) {
  Batch *b = (Batch *)stepstate(L, sizeof(Batch), BATCH_TAG);
  int k;
  if (b->watch) checkwatch(L);
  if (b->done) return 0;
  if (lua_type(L, BT_BUF) != LUA_TTABLE) upvaluefail(L);
  if (b->reverse ? b->i < 1 : b->i > b->n) {
    int isint;
    lua_Integer n;
    lua_settop(L, 0);
    lua_pushvalue(L, BT_FILL);
    lua_pushvalue(L, BT_BUF);
    lua_call(L, 1, 1);
    n = lua_tointegerx(L, -1, &isint);
    if (!isint && !lua_isnil(L, -1))
      return luaL_error(L, "batch fill returned %s, not a count",
                        luaL_typename(L, -1));
    lua_pop(L, 1);
    if (isint && n < 0)
      return luaL_error(L, "batch fill returned %I, a negative count", n);
    if (!isint || n == 0) {
      b->done = 1;
      return 0;
    }
    /* a step takes width values: a partial last one would return values
    ** of an earlier batch, left in the buffer */
    if (n % b->width != 0)
      return luaL_error(L, "batch fill returned %I values, not a multiple "
                        "of the width %d", n, b->width);
    b->n = n;
    b->i = b->reverse ? n - b->width + 1 : 1;
  }
  luaL_checkstack(L, b->width, "batch too wide");
  if (lua_type(L, BT_BUF) != LUA_TTABLE) upvaluefail(L);   /* fill ran */
  for (k = 0; k < b->width; k++) lua_rawgeti(L, BT_BUF, b->i + k);
  b->i += b->reverse ? -b->width : b->width;
  return b->width;
}

static int mod_batch_iterator (lua_State *L) {
  lua_Integer w = intarg(L, 2);
  Batch *b;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_argcheck(L, w != 0 && w >= -16 && w <= 16, 2,
                "width must be 1 to 16, or -16 to -1");
  lua_settop(L, 5);
  b = (Batch *)lua_newuserdatauv(L, sizeof *b, 0);
  b->tag = BATCH_TAG;
  b->reverse = w < 0;
  b->width = (int)(w < 0 ? -w : w);
  b->i = b->reverse ? 0 : 1;
  b->n = 0;
  b->done = 0;
  lua_newtable(L);                               /* the buffer */
  lua_pushvalue(L, 1);                           /* fill */
  b->watch = pushwatch(L, 3);
  lua_pushcclosure(L, batch_step, 7);
  return 1;
}

/* bf:entry_iterator(fill [, watch, key, message]): a generic-for iterator
** that reads fixed-size entries straight from the file, a string at a
** time as each step returns it. fill() returns the next run as pos, count,
** stride, len [, len2]: count entries at file offsets pos, pos + stride,
** ... (a negative stride walks down); each step returns the len bytes of
** the next entry, and with len2 the len2 bytes after them. nil from fill
** ends the iteration; a run of 0 entries asks again. A run must lie in
** allocated blocks. watch, key and message are batch_iterator's. Nothing
** is copied ahead, and no view is held: a step reads through the
** BlockFile, so the file may grow between steps, and a step after close
** raises. A B+tree scan's step skips a table's store and load of each
** string that batch_iterator makes (bench/instructions.lua). */
typedef struct Entries {
  const char *tag;    /* ENTRIES_TAG */
  BlockFile *bf;      /* kept alive by the step's upvalue ET_BF */
  uint64_t serial;    /* bf's */
  uint64_t pos;       /* the next entry's file offset */
  uint64_t left;      /* entries left in the run */
  int64_t stride;
  size_t len, len2;
  uint64_t first, blocks;  /* the run's blocks, checked allocated ... */
  uint64_t seq;            /* ... when bf's header had this seq */
  int two;            /* a step returns two strings */
  int done;
  int watch;
} Entries;

/* The BlockFile takes the slot of batch_iterator's buffer; the other
** upvalues are batch_iterator's. */
#define ET_BF  lua_upvalueindex(2)

/* Result i of an entry_iterator's fill (1 pos, 2 count, 3 stride, 4 len,
** 5 len2): an integer, not negative unless it is the stride; len2 may be
** nil (0). */
static lua_Integer runint (lua_State *L, int i) {
  static const char *const what[] = {
    "position", "count", "stride", "length", "second length"
  };
  int isint;
  lua_Integer n = lua_tointegerx(L, i, &isint);
  if (!isint && !(i == 5 && lua_isnil(L, i)))
    luaL_error(L, "entry_iterator's fill returned a %s value as the %s, not an "
               "integer", luaL_typename(L, i), what[i - 1]);
  if (n < 0 && i != 3)
    luaL_error(L, "entry_iterator's fill returned a negative %s (%I)",
               what[i - 1], n);
  return n;
}

/* Checks the run that fill returned (slots 1 to 5) and stores it. */
static void setrun (lua_State *L, Entries *e, BlockFile *bf) {
  uint64_t bs = bf->f.h.block_size, top = bf->f.h.top;
  uint64_t pos = (uint64_t)runint(L, 1), n = (uint64_t)runint(L, 2);
  lua_Integer stride = runint(L, 3);
  uint64_t len = (uint64_t)runint(L, 4), len2 = (uint64_t)runint(L, 5);
  uint64_t step = stride < 0 ? -(uint64_t)stride : (uint64_t)stride;
  if (n > 0) {
    /* each bound is tested against top before it is added: no sum or
    ** product below overflows */
    uint64_t span = 0, lo = 0, hi = 0, first;
    int out = pos >= top || len > top || len2 > top - len ||
              (step != 0 && n - 1 > top / step);
    if (!out) {
      span = (n - 1) * step;
      out = stride < 0 && span > pos;
    }
    if (!out) {
      lo = stride < 0 ? pos - span : pos;
      hi = (stride < 0 ? pos : pos + span) + len + len2;
      out = lo < bs || hi > top;
    }
    if (out)
      luaL_error(L, "entry_iterator's fill returned a run outside the "
                 "allocated blocks (offsets %I to %I): offset %I, count %I, "
                 "stride %I, lengths %I and %I", (lua_Integer)bs,
                 (lua_Integer)top, (lua_Integer)pos, (lua_Integer)n, stride,
                 (lua_Integer)len, (lua_Integer)len2);
    first = lo - lo % bs;
    e->first = first;
    e->blocks = hi > first ? (hi - first + bs - 1) / bs : 1;
    e->seq = bf->f.h.seq;
    if (fm_check_range(&bf->f, e->first, e->blocks) != 0)
      luaL_error(L, "entry_iterator's fill returned a run in a free "
                 "block: %s", bf->f.msg);
  }
  e->pos = pos;
  e->left = n;
  e->stride = (int64_t)stride;
  e->len = (size_t)len;
  e->len2 = (size_t)len2;
  e->two = !lua_isnil(L, 5);
}

/* The BlockFile of a step, open. Upvalue ET_BF keeps it alive, unless
** debug.setupvalue replaced it: then e->bf may be freed, and is not read
** (isbf). */
static BlockFile *entriesbf (lua_State *L, const Entries *e) {
  if (!isbf(L, ET_BF, e->bf, e->serial))
    luaL_error(L, "the iterator's BlockFile is gone (an upvalue was "
               "replaced)");
  if (e->bf->open != BF_OPEN) notopen(L, e->bf);
  return e->bf;
}

static int entries_step (lua_State *L) {
  Entries *e = (Entries *)stepstate(L, sizeof(Entries), ENTRIES_TAG);
  BlockFile *bf;
  uint64_t at;
  size_t len, len2;
  int two;
  if (e->watch) checkwatch(L);
  if (e->done) return 0;
  bf = entriesbf(L, e);
  while (e->left == 0) {
    lua_settop(L, 0);
    lua_pushvalue(L, BT_FILL);
    lua_call(L, 0, 5);
    bf = entriesbf(L, e);                /* fill may have closed it */
    if (lua_isnil(L, 1)) {
      e->done = 1;
      return 0;
    }
    setrun(L, e, bf);
  }
  /* a free since the run was checked (any change of the header moves its
  ** seq, as newview knows) may have taken a block of it */
  if (bf->f.h.seq != e->seq) {
    e->seq = bf->f.h.seq;
    if (fm_check_range(&bf->f, e->first, e->blocks) != 0)
      luaL_error(L, "entry_iterator: a block of its run was freed during "
                 "the loop: %s", bf->f.msg);
  }
  /* this entry, all of it read before the first string: making it may
  ** run a finalizer that steps this iterator into another run */
  at = e->pos;
  len = e->len;
  len2 = e->len2;
  two = e->two;
  e->pos += (uint64_t)e->stride;         /* wraps harmlessly past the end */
  e->left--;
  if (PROFILING(bf)) profread(bf, at, len + len2, len + len2);
  lua_pushlstring(L, (const char *)bf->f.map + at, len);
  if (!two) {
    if (LOSTMAP(bf)) notopen(L, bf);
    return 1;
  }
  /* that finalizer may also have closed the file or moved the map: read
  ** the second string through the BlockFile again. (It cannot have freed
  ** it: the BlockFile was reachable when that collection began, and its
  ** own finalizer must run before its memory goes.) */
  if (bf->open != BF_OPEN) notopen(L, bf);
  lua_pushlstring(L, (const char *)bf->f.map + at + len, len2);
  if (LOSTMAP(bf)) notopen(L, bf);
  return 2;
}

static int bf_entry_iterator (lua_State *L) {
  Entries *e;
  BlockFile *bf = checkbf(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 5);
  e = (Entries *)lua_newuserdatauv(L, sizeof *e, 0);
  memset(e, 0, sizeof *e);
  e->tag = ENTRIES_TAG;
  e->bf = bf;
  e->serial = bf->serial;
  lua_pushvalue(L, 1);                           /* the BlockFile */
  lua_pushvalue(L, 2);                           /* fill */
  e->watch = pushwatch(L, 3);
  lua_pushcclosure(L, entries_step, 7);
  return 1;
}

/* luaopen_fmap adds these to the BlockFiles' methods and the fmap
** table. */
LUAI_DDEF const luaL_Reg iter_bf_methods[] = {
  {"entry_iterator", bf_entry_iterator},
  {NULL, NULL}
};

LUAI_DDEF const luaL_Reg iter_mod_funcs[] = {
  {"batch_iterator", mod_batch_iterator},
  {NULL, NULL}
};
