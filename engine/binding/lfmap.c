/*
** lfmap.c: the Lua binding of the fmap core. BlockFile and View userdata,
** argument checks, the error conventions, finalizers and <close>. It only
** translates: file formats and allocation live in fm.c.
**
** Errors: a failure of the environment returns nil, "path: reason", errno
** (as luaL_fileresult does); misuse raises, naming the function and values.
**
** Views: a View holds its BlockFile as a user value (so the BlockFile lives
** as long as any view of it) and stores an offset and a length, never a
** pointer into the map, so growth that moves the map cannot strand it. The
** BlockFile links its live views in a list, so that close can refuse while
** views live, free can retire the views of freed blocks, and live_views
** can say where each was acquired.
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <float.h>
#include <pthread.h>
#include <signal.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

#include "fm.h"
#include "lfmap.h"

typedef struct View View;

/* The first field of each of the module's userdata: the address of one of
** these. A method checks it, with the userdata's size, instead of fetching
** and comparing the metatable, which cost a third of a u32 call (perf).
** Only C code writes a userdata's bytes, and no C code but this stores
** these addresses, so a Lua script cannot forge a view. */
static const char VIEW_TAG[] = "fmap view", BF_TAG[] = "fmap BlockFile";

typedef struct BlockFile BlockFile;
struct BlockFile {
  const char *tag;   /* BF_TAG */
  fm_file f;
  int open;          /* BF_OPEN, BF_CLOSED, BF_LOST (written by onbus) or
                     ** BF_OPENING */
  View *views;       /* live views, newest first */
  lua_Integer nviews;
  uint64_t serial;   /* its number among the BlockFiles made, from 1 */
  uint64_t trap;     /* stores left before fail_after's trap, 0: none */
  int trap_kill;     /* the trap kills the process, rather than raise */
  BlockFile *mprev, *mnext;   /* in the list of open BlockFiles (maps) */
};

/* A BlockFile's state. BF_LOST: its map failed (SIGBUS; see onbus) or
** its file was found cut short under it (FM_ELOST), and the map was
** replaced by zeros; every use raises until it is closed. BF_OPENING:
** create or open is under way, and a fault in it is onbus's to catch. */
enum { BF_CLOSED, BF_OPEN, BF_LOST, BF_OPENING };

/* A view's state: why it can no longer be used, or LIVE. */
enum { LIVE, RELEASED, FREED, CLOSED, LOST, UNDONE };

struct View {
  const char *tag;   /* VIEW_TAG */
  BlockFile *bf;     /* owner; kept alive by the view's user value */
  uint64_t off;      /* file offset of the first byte */
  uint64_t len;      /* bytes */
  uint64_t wgen;     /* bf->f.gen when a store last found every block of
                     ** it touched (fm_touch): stores skip the call */
  View *prev, *next; /* in bf->views, while LIVE */
  int state;
  int line;          /* where it was acquired, for live_views */
  char src[LUA_IDSIZE];
};

/* Upvalues shared by every function of the module. */
#define UV_VIEWMT  lua_upvalueindex(1)
#define UV_BFMT    lua_upvalueindex(2)

/* Only debug.setupvalue can put anything but the metatables there; what
** it does with a table is outside the engine's promise, but nothing it
** puts there may reach lua_setmetatable as a non-table. */
static int mtfail (lua_State *L) {
  return luaL_error(L, "the engine's metatable is gone (an upvalue was "
                    "replaced)");
}


/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */
/* ---------------------------------------------------------------------- */

/* nil, "path: reason", errno; the reason is the core's sentence when it
** has one, else strerror. */
static int pushfail (lua_State *L, BlockFile *bf, int rc, const char *path) {
  int en = rc > 0 ? rc : rc == FM_ELOST ? EIO : EINVAL;
  const char *why = bf->f.msg[0] ? bf->f.msg : strerror(en);
  luaL_pushfail(L);
  if (path != NULL) lua_pushfstring(L, "%s: %s", path, why);
  else lua_pushstring(L, why);
  lua_pushinteger(L, en);
  return 3;
}

/* The size test comes first: a light userdata's length is 0, and a
** smaller userdata has no tag field to read. */
static BlockFile *tobf (lua_State *L, int i) {
  BlockFile *bf = (BlockFile *)lua_touserdata(L, i);
  if (bf != NULL && lua_rawlen(L, i) == sizeof(BlockFile) &&
      bf->tag == BF_TAG)
    return bf;
  return NULL;
}

/* The value at i is no tname: luaL_typeerror's message, with a hint when
** the running function is a method of mtname's called with '.' for ':'
** ("bf.get(off)" passes off as self). Only misuse comes here, so the
** lookup costs a correct call nothing. */
static int typefail (lua_State *L, int i, const char *tname,
                     const char *mtname) {
  lua_Debug ar;
  int top = lua_gettop(L);
  if (i == 1 && lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) &&
      ar.name != NULL && strcmp(ar.namewhat, "method") != 0) {
    int method = 0;
    const char *got = luaL_typename(L, 1);   /* before the stack grows */
    if (luaL_getmetafield(L, 1, "__name") == LUA_TSTRING)
      got = lua_tostring(L, -1);
    luaL_getmetatable(L, mtname);
    if (lua_getfield(L, -1, "__index") == LUA_TTABLE)
      method = lua_getfield(L, -1, ar.name) == LUA_TFUNCTION;
    if (method)
      return luaL_argerror(L, 1, lua_pushfstring(L, "%s expected, got %s; "
                           "call it with ':'", tname, got));
    lua_settop(L, top);   /* typeerror reads the argument at i again */
  }
  return luaL_typeerror(L, i, tname);
}

/* Raises for a BlockFile that is not BF_OPEN. */
static int notopen (lua_State *L, BlockFile *bf) {
  if (bf->open == BF_LOST)
    return luaL_error(L, "attempt to use a BlockFile that lost its map "
                      "(%s): close it", fm_fault_reason(&bf->f));
  return luaL_error(L, "attempt to use a closed BlockFile");
}

/* Whether the map failed under the accesses just made. The SIGBUS handler
** runs between two instructions of its caller: the barrier keeps the
** compiler from moving an access of the map after the test, and the
** volatile read from using a state loaded before it. */
static inline int lost (const volatile int *state, int lostvalue) {
#if defined(__GNUC__)
  __asm__ __volatile__("" ::: "memory");
#endif
  return luai_unlikely(*state == lostvalue);
}
/* The core's faulted flag, not bf->open: it stays set after a close (a
** finalizer may close the file between the access and the test). */
#define LOSTMAP(bf)  lost(&(bf)->f.faulted, 1)

/* The same for a view, which the handler retires with its BlockFile: the
** call raises rather than return what it read from the zeros. (Only the
** handler: a finalizer that released or freed the view after its bytes
** were read changes nothing the call returns.) */
#define CHECKLOST(L, v)  if (lost(&(v)->state, LOST)) deadview(L, v, "use")

static BlockFile *checkbf (lua_State *L, int i) {
  BlockFile *bf = tobf(L, i);
  if (bf == NULL) typefail(L, i, "BlockFile", FMAP_BF);
  if (bf->open != BF_OPEN) notopen(L, bf);
  return bf;
}

/* Whether the value at i is the BlockFile bf with that serial: a closure
** that keeps its BlockFile as an upvalue checks it so, since a script
** may replace the upvalue (debug.setupvalue) and let the file be
** collected, and a new BlockFile may then be made at the same address.
** bf is read only once the value at i is known to be it. */
static int isbf (lua_State *L, int i, const BlockFile *bf, uint64_t serial) {
  return tobf(L, i) == bf && bf->serial == serial;
}

static View *toview (lua_State *L, int i) {
  View *v = (View *)lua_touserdata(L, i);
  if (v != NULL && lua_rawlen(L, i) == sizeof(View) && v->tag == VIEW_TAG)
    return v;
  return NULL;
}

static const char *const deadwhy[] = {
  "", "a released view", "a view of freed blocks",
  "a view of a closed BlockFile", "a view of a BlockFile that lost its map",
  "a view of blocks a rollback gave back"
};


/* Pushes what a message says of a view besides its state: "offset 4096,
** 8192 bytes, acquired at demo.lua:12". */
static const char *pushviewinfo (lua_State *L, const View *v) {
  if (v->line >= 0)
    return lua_pushfstring(L, "offset %I, %I bytes, acquired at %s:%d",
                           (lua_Integer)v->off, (lua_Integer)v->len, v->src,
                           v->line);
  return lua_pushfstring(L, "offset %I, %I bytes", (lua_Integer)v->off,
                         (lua_Integer)v->len);
}

/* Raises "attempt to VERB a released view (offset ..., acquired at ...)":
** which of the script's views it was, and where the script took it. */
static int deadview (lua_State *L, const View *v, const char *verb) {
  return luaL_error(L, "attempt to %s %s (%s)", verb, deadwhy[v->state],
                    pushviewinfo(L, v));
}

static View *checkview (lua_State *L, int i) {
  View *v = toview(L, i);
  if (v == NULL) typefail(L, i, "view", FMAP_VIEW);
  if (v->state != LIVE) deadview(L, v, "use");
  return v;
}

static View *checkwritable (lua_State *L, int i) {
  View *v = checkview(L, i);
  if (v->bf->f.readonly)
    luaL_error(L, "attempt to write to a view of a read-only BlockFile");
  return v;
}

static unsigned char *vptr (const View *v) {
  return v->bf->f.map + v->off;
}

/* "s" unless n is 1: "1 byte", "2 bytes". */
static const char *plural (uint64_t n) { return n == 1 ? "" : "s"; }

/* A non-negative integer argument. */
static uint64_t checkcount (lua_State *L, int i, const char *what) {
  lua_Integer n = luaL_checkinteger(L, i);
  if (n < 0)
    luaL_argerror(L, i, lua_pushfstring(L, "%s %I is negative", what, n));
  return (uint64_t)n;
}

/* Checks that [pos, pos + len) lies in the view; both are arguments. */
static void checkspan (lua_State *L, const View *v, int arg, lua_Integer pos,
                       lua_Integer len) {
  if (pos < 0 || (uint64_t)pos > v->len)
    luaL_argerror(L, arg, lua_pushfstring(L, "position %I is outside the "
                  "view (%I bytes)", pos, (lua_Integer)v->len));
  if (len < 0 || (uint64_t)len > v->len - (uint64_t)pos)
    luaL_argerror(L, arg, lua_pushfstring(L, "position %I + length %I is "
                  "outside the view (%I bytes)", pos, len,
                  (lua_Integer)v->len));
}

/* Raises the core's misuse or corruption message against argument arg
** (0: no argument, a plain error). */
static int corefail (lua_State *L, BlockFile *bf, int arg) {
  if (LOSTMAP(bf)) notopen(L, bf);   /* the core read zeros, not the file */
  if (arg > 0) return luaL_argerror(L, arg, bf->f.msg);
  return luaL_error(L, "%s", bf->f.msg);
}

/* The misuse of a call that writes: on a read-only BlockFile the core
** refuses before it looks at the arguments, so the fault is self's
** ("calling 'free' on bad self (the BlockFile is read-only)"). */
static int writefail (lua_State *L, BlockFile *bf, int arg) {
  return corefail(L, bf, bf->f.readonly ? 1 : arg);
}

/* fail_after's trap: the store it counted down to. */
static void trapped (lua_State *L, BlockFile *bf) {
  bf->trap = 0;
  if (bf->trap_kill) {
    fflush(NULL);
    raise(SIGKILL);
  }
  luaL_error(L, "store refused by fail_after (a test of recovery code)");
}

/* Counts a store for fail_after, when it is armed. */
#define COUNTSTORE(L, bf) \
  if ((bf)->trap != 0 && --(bf)->trap == 0) trapped(L, bf)

static void touchslow (lua_State *L, View *v, uint64_t pos, uint64_t len) {
  BlockFile *bf = v->bf;
  COUNTSTORE(L, bf);
  if (fm_touch(&bf->f, v->off + pos, len) != 0)
    luaL_error(L, "%s", bf->f.msg);
  if (v->len <= bf->f.h.block_size) v->wgen = bf->f.gen;
}

/* Before a store into [pos, pos + len) of v, checked to lie in it: the
** transaction layer learns of it (fm_touch). A view whose blocks are all
** known to be touched since the last commit or begin skips the call. */
static inline void touch (lua_State *L, View *v, uint64_t pos,
                          uint64_t len) {
  if (v->wgen != v->bf->f.gen || v->bf->trap != 0)
    touchslow(L, v, pos, len);
}

/* The file offset argument: a non-negative integer. */
static uint64_t checkoffset (lua_State *L, int i) {
  lua_Integer off = luaL_checkinteger(L, i);
  if (off < 0)
    luaL_argerror(L, i, lua_pushfstring(L, "offset %I is negative", off));
  return (uint64_t)off;
}


/* ---------------------------------------------------------------------- */
/* Views                                                                   */
/* ---------------------------------------------------------------------- */

static void unlink_view (View *v, int state) {
  BlockFile *bf = v->bf;
  if (v->state != LIVE) return;
  if (v->prev) v->prev->next = v->next;
  else bf->views = v->next;
  if (v->next) v->next->prev = v->prev;
  v->prev = v->next = NULL;
  bf->nviews--;
  v->state = state;
}

/* Retires a BlockFile whose map is lost: its views die (LOST), and every
** use raises until it is closed. Plain stores only: onbus calls it. */
static void retire (BlockFile *bf) {
  while (bf->views != NULL) unlink_view(bf->views, LOST);
  bf->open = BF_LOST;
}

/* A core call returned FM_ELOST: the file was cut short under the map. */
static int lostfail (lua_State *L, BlockFile *bf) {
  retire(bf);
  return notopen(L, bf);
}

/* Pushes a new live view of [off, off + len) of the BlockFile at bfi. */
static View *newview (lua_State *L, int bfi, BlockFile *bf, uint64_t off,
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

/* Asks for the cache lines of a node about to be searched, all at once.
** A binary search's probes depend on each other, so in a node that is
** not in the cache each one waited for memory in turn: in a 4 KiB leaf,
** about seven misses one after another. Fetched together, they overlap. */
static void prefetch_run (const unsigned char *p, uint64_t n) {
  const unsigned char *end = p + n;
  if (n <= 256) return;
  for (p = (const unsigned char *)((uintptr_t)p & ~(uintptr_t)63); p < end;
       p += 64)
    __builtin_prefetch(p);
}

/* retarget(offset [, blocks]): points this live view at another run of
** allocated blocks and returns it. A structure walking many nodes reuses
** one view instead of acquiring one per node; where it was acquired
** stays as it was. */
static int view_retarget (lua_State *L) {
  View *v = checkview(L, 1);
  BlockFile *bf = v->bf;
  uint64_t off = checkoffset(L, 2);
  lua_Integer n = luaL_optinteger(L, 3, 1);
  luaL_argcheck(L, n >= 1, 3,
                lua_pushfstring(L, "block count %I is not positive", n));
#ifndef FMAP_NO_PREFETCH
  /* A walk retargets to the node it reads next: its lines are fetched
  ** while the check below waits for the first. */
  if (off < bf->f.h.top && bf->f.h.top - off >= bf->f.h.block_size)
    prefetch_run(bf->f.map + off, bf->f.h.block_size);
#endif
  if (fm_check_range(&bf->f, off, (uint64_t)n) != 0)
    return corefail(L, bf, 2);
  CHECKLOST(L, v);   /* the check read the block's mark */
  v->off = off;
  v->len = (uint64_t)n * bf->f.h.block_size;
  v->wgen = 0;   /* other blocks: the next store looks again */
  lua_settop(L, 1);
  return 1;
}

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
                    "map lost" : "file closed");
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
  if (lua_type(L, 3) != LUA_TSTRING) {   /* the other view's map too */
    View *ov = toview(L, 3);
    CHECKLOST(L, ov);
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

/* Little-endian loads and stores of n bytes; the compiler turns the fixed
** sizes into single moves. */
static inline uint64_t load_le (const unsigned char *p, int n) {
  uint64_t v = 0;
  switch (n) {
    case 1: return p[0];
    case 2: { uint16_t x; memcpy(&x, p, 2); v = x; break; }
    case 4: { uint32_t x; memcpy(&x, p, 4); v = x; break; }
    default: memcpy(&v, p, 8); break;
  }
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v) >> (64 - 8 * n);
#endif
  return v;
}

static inline void store_le (unsigned char *p, uint64_t v, int n) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v << (64 - 8 * n));
#endif
  switch (n) {
    case 1: p[0] = (unsigned char)v; break;
    case 2: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
    case 4: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
    default: memcpy(p, &v, 8); break;
  }
}

static inline const unsigned char *intspan (lua_State *L, View **vp,
                                            int n, int write) {
  View *v = write ? checkwritable(L, 1) : checkview(L, 1);
  lua_Integer pos = luaL_checkinteger(L, 2);
  if (luai_unlikely(pos < 0 || v->len < (uint64_t)n ||
                 (uint64_t)pos > v->len - (uint64_t)n))
    luaL_argerror(L, 2, lua_pushfstring(L, "position %I + %d bytes is "
                  "outside the view (%I bytes)", pos, n,
                  (lua_Integer)v->len));
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
                                 lua_Integer pos, uint64_t count,
                                 uint64_t stride, size_t kl, uint64_t last) {
  unsigned char *base;
  if (count == 0) return NULL;
  if (stride == 0)   /* the stride is argument 4 of each caller */
    luaL_argerror(L, 4, "stride 0: a sorted run's entries are at least a "
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
static uint64_t lowerbound (const unsigned char *base, uint64_t count,
                            uint64_t stride, const unsigned char *key,
                            size_t kl, int upper, int *found) {
  uint64_t lo = 0, hi = count;
  *found = 0;
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    int c = keycmp(base + mid * stride, key, kl);
    if (c == 0) *found = 1;
    if (c < 0 || (upper && c == 0)) lo = mid + 1;
    else hi = mid;
  }
  if (!upper && lo < count)
    *found = keycmp(base + lo * stride, key, kl) == 0;
  return lo;
}

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
  lua_Integer pos = luaL_checkinteger(L, counted ? 3 : 2);
  lua_Integer cpos = counted ? luaL_checkinteger(L, 2) : 0;
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
  base = searchrun(L, v, counted ? 3 : 2, pos, count, stride, kl, kl);
  lo = lowerbound(base, count, stride, key, kl, upper, &found);
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
static int view_remove_key (lua_State *L) {
  View *v = checkwritable(L, 1);
  lua_Integer cpos = luaL_checkinteger(L, 2);
  lua_Integer pos = luaL_checkinteger(L, 3);
  uint64_t stride = checkcount(L, 4, "stride");
  size_t kl;
  const unsigned char *key = (const unsigned char *)luaL_checklstring(L, 5,
                                                                      &kl);
  unsigned char *base;
  uint64_t count, lo, e;
  int found;
  if (v->state != LIVE) checkwritable(L, 1);   /* the key's conversion ran
                                               ** a finalizer */
  luaL_argcheck(L, kl > 0, 5, "an empty key would remove every entry");
  count = nodecount(L, v, cpos, 2);
  /* whole entries move, so the last one must fit, and hold a key */
  base = searchrun(L, v, 3, pos, count, stride, kl, kl > stride ? UINT64_MAX
                                                                : stride);
  lo = lowerbound(base, count, stride, key, kl, 0, &found);
  e = lo;
  while (found && e < count && keycmp(base + e * stride, key, kl) == 0) e++;
  if (e > lo) {
    touch(L, v, 0, v->len);
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
** bytes): sets *lo to the index, *found and *count. Returns 0, or 1 when
** the block is not allocated, 2 when the count's entries pass it. */
static HOT_INLINE int searchnode (BlockFile *bf, const Searcher *s,
                                  uint64_t off, const unsigned char *key,
                                  size_t kl, int upper, uint64_t *lo,
                                  int *found, uint64_t *count) {
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
    prefetch_run(node + s->pos, (n - 1) * s->stride + kl);
#endif
  }
  *lo = lowerbound(node + s->pos, n, s->stride, key, kl, upper, found);
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

static int searcher_call (lua_State *L) {
  lua_Integer off = luaL_checkinteger(L, 1);
  size_t kl;
  const unsigned char *key = (const unsigned char *)luaL_checklstring(L, 2,
                                                                      &kl);
  int upper = lua_toboolean(L, 3), found = 0, below = 0, st;
  lua_Integer depth = 1, follow;
  uint64_t count = 0, lo = 0, bs, at;
  BlockFile *bf;
  const Searcher *s, *cur;
  View v;              /* only what pushbeside reads */
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
                  &count);
  if (st != 0) nodefail(L, bf, follow > 0 ? s : cur, st, at, count, kl, 0, 0);
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
    st = searchnode(bf, next, at, key, kl, upper, &lo, &found, &count);
    if (st != 0) nodefail(L, bf, next, st, at, count, kl, from, fromi);
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

static int bf_searcher (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  lua_Integer cpos = luaL_checkinteger(L, 2);
  lua_Integer pos = luaL_checkinteger(L, 3);
  lua_Integer stride = luaL_checkinteger(L, 4);
  lua_Integer at, len;
  int sized = optfield(L, 5, &at, &len);
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
  lua_pushcclosure(L, searcher_call, 2);
  return 1;
}

/* Raises unless count entries of len + len2 bytes, stride bytes apart
** from pos, lie in the view. */
static void checkentries (lua_State *L, const View *v, lua_Integer pos,
                          uint64_t count, uint64_t stride, uint64_t len,
                          uint64_t len2, int sarg) {
  if (count > 1 && stride == 0)
    luaL_argerror(L, sarg, lua_pushfstring(L, "stride 0 puts %I entries at "
                  "one place", (lua_Integer)count));
  if (count > 0 &&
      (pos < 0 || (uint64_t)pos > v->len ||
       (count > 1 && count - 1 > (v->len - (uint64_t)pos) / stride) ||
       len > v->len || len2 > v->len - len ||
       len + len2 > v->len - (uint64_t)pos - (count - 1) * stride))
    luaL_argerror(L, 3, lua_pushfstring(L, "%I entr%s of %I byte%s, %I "
                  "apart from position %I, pass the view (%I bytes)",
                  (lua_Integer)count, count == 1 ? "y" : "ies",
                  (lua_Integer)(len + len2), plural(len + len2),
                  (lua_Integer)stride, pos, (lua_Integer)v->len));
}

/* insert_key(countpos, pos, stride, capacity, key [, value]): a B+tree
** leaf's insert in one call. In a node's sorted run of entries of stride
** bytes from pos (key, then value; the entry count is the little-endian
** u32 at countpos), puts key..value after the entries whose first #key
** bytes equal key, moving the entries after it up, and stores the count
** plus one. #key + #value must be stride, and capacity entries must fit
** in the view. A node that holds capacity entries already is left as it
** is. Returns the index where the entry went (or would go), the count
** after, and whether it went in. */
static int view_insert_key (lua_State *L) {
  View *v = checkwritable(L, 1);
  lua_Integer cpos = luaL_checkinteger(L, 2);
  lua_Integer pos = luaL_checkinteger(L, 3);
  uint64_t stride = checkcount(L, 4, "stride");
  uint64_t cap = checkcount(L, 5, "capacity");
  size_t kl, vl = 0;
  const unsigned char *key = (const unsigned char *)luaL_checklstring(L, 6,
                                                                      &kl);
  const char *val = lua_isnoneornil(L, 7) ? NULL : luaL_checklstring(L, 7,
                                                                     &vl);
  unsigned char *base;
  uint64_t count, lo;
  int found, in;
  luaL_argcheck(L, stride > 0, 4, "stride must be positive");
  /* the count is a u32: a larger capacity would let it wrap */
  luaL_argcheck(L, cap >= 1 && cap <= UINT32_MAX, 5,
                "capacity must be 1 to 4294967295");
  if (kl + vl != stride)
    luaL_argerror(L, 6, lua_pushfstring(L, "a key of %I byte%s and a value "
                  "of %I make no entry of %I", (lua_Integer)kl, plural(kl),
                  (lua_Integer)vl, (lua_Integer)stride));
  if (v->state != LIVE) checkwritable(L, 1);   /* a conversion ran a
                                               ** finalizer */
  count = nodecount(L, v, cpos, 2);
  if (count > cap)
    luaL_argerror(L, 5, lua_pushfstring(L, "the node holds %I entries, more "
                  "than its capacity %I", (lua_Integer)count,
                  (lua_Integer)cap));
  checkentries(L, v, pos, cap, stride, stride, 0, 4);
  base = vptr(v) + pos;
#ifndef FMAP_NO_PREFETCH
  prefetch_run(base, count * stride);
#endif
  lo = lowerbound(base, count, stride, key, kl, 1, &found);
  in = count < cap;
  if (in) {
    unsigned char *p = base + lo * stride;
    touch(L, v, 0, v->len);
    memmove(p + stride, p, (size_t)((count - lo) * stride));
    memcpy(p, key, kl);
    if (vl > 0) memcpy(p + kl, val, vl);
    store_le(vptr(v) + cpos, count + 1, 4);
  }
  CHECKLOST(L, v);
  lua_pushinteger(L, (lua_Integer)lo);
  lua_pushinteger(L, (lua_Integer)(count + (uint64_t)in));
  lua_pushboolean(L, in);
  return 3;
}

/* read_entries(t, pos, count, stride, len [, len2]): stores in t[1],
** t[2], ... the len bytes of each of count entries stride bytes apart
** from pos, as strings; with len2, each followed by the len2 bytes after
** them (a key, then its value). Returns how many strings it stored. One
** call reads a whole node for an iterator: no format to parse, and the
** table is the caller's to reuse. */
static int view_read_entries (lua_State *L) {
  View *v = checkview(L, 1);
  lua_Integer pos = luaL_checkinteger(L, 3);
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
      checkentries(L, v, pos, count, stride, len, len2, 5);
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
  lua_Integer pos = luaL_checkinteger(L, 2);
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
  lua_pushinteger(L, (lua_Integer)lo);
  lua_pushboolean(L, found);
  return 2;
}


/* ---------------------------------------------------------------------- */
/* pack and unpack: the string.pack format language over a view            */
/* ---------------------------------------------------------------------- */

typedef enum {
  Oint, Ouint, Ofloat, Odouble, Onumber, Ochar, Ostring, Ozstr,
  Opad, Oalign, Onop
} Opt;

typedef struct Fmt {
  lua_State *L;
  int arg;          /* the format's argument index, for errors */
  const char *s;    /* the rest of the format */
  int little;
  int maxalign;
} Fmt;

struct cD { char c; union { LUAI_MAXALIGN; } u; };
#define NATIVE_ALIGN  ((int)offsetof(struct cD, u))
#define MAXINTSIZE    16

static int digit (int c) { return '0' <= c && c <= '9'; }

static int readsize (Fmt *h, int dflt) {
  if (!digit(*h->s)) return dflt;
  {
    int a = 0;
    do {
      a = a * 10 + (*h->s++ - '0');
    } while (digit(*h->s) && a <= (INT_MAX - 9) / 10);
    return a;
  }
}

static int intsize (Fmt *h, int dflt) {
  int n = readsize(h, dflt);
  if (n < 1 || n > MAXINTSIZE)
    luaL_error(h->L, "integral size (%d) out of limits [1,%d]", n,
               MAXINTSIZE);
  return n;
}

/* The next option and its size. */
static Opt nextopt (Fmt *h, int *size) {
  int c = *h->s++;
  *size = 0;
  switch (c) {
    case 'b': *size = 1; return Oint;
    case 'B': *size = 1; return Ouint;
    case 'h': *size = sizeof(short); return Oint;
    case 'H': *size = sizeof(short); return Ouint;
    case 'l': *size = sizeof(long); return Oint;
    case 'L': *size = sizeof(long); return Ouint;
    case 'j': *size = sizeof(lua_Integer); return Oint;
    case 'J': *size = sizeof(lua_Integer); return Ouint;
    case 'T': *size = sizeof(size_t); return Ouint;
    case 'f': *size = sizeof(float); return Ofloat;
    case 'n': *size = sizeof(lua_Number); return Onumber;
    case 'd': *size = sizeof(double); return Odouble;
    case 'i': *size = intsize(h, sizeof(int)); return Oint;
    case 'I': *size = intsize(h, sizeof(int)); return Ouint;
    case 's': *size = intsize(h, sizeof(size_t)); return Ostring;
    case 'c':
      *size = readsize(h, -1);
      if (*size == -1) luaL_error(h->L, "missing size for format option 'c'");
      return Ochar;
    case 'z': return Ozstr;
    case 'x': *size = 1; return Opad;
    case 'X': return Oalign;
    case ' ': return Onop;
    case '<': h->little = 1; return Onop;
    case '>': h->little = 0; return Onop;
    case '=': h->little = (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__);
              return Onop;
    case '!': h->maxalign = intsize(h, NATIVE_ALIGN); return Onop;
    default: luaL_error(h->L, "invalid format option '%c'", c);
  }
  return Onop;
}

/* The next option, with the padding that alignment asks for at pos. */
static Opt nextdetail (Fmt *h, uint64_t pos, int *size, int *pad) {
  Opt o = nextopt(h, size);
  int align = *size;
  *pad = 0;
  if (o == Oalign) {
    if (*h->s == '\0' || nextopt(h, &align) == Ochar || align == 0)
      luaL_argerror(h->L, h->arg, "invalid next option for option 'X'");
  }
  if (align > 1 && o != Ochar) {
    if (align > h->maxalign) align = h->maxalign;
    if ((align & (align - 1)) != 0)
      luaL_argerror(h->L, h->arg, "format asks for alignment not power "
                    "of 2");
    *pad = (int)((uint64_t)(align - (int)(pos & (uint64_t)(align - 1))) &
                 (uint64_t)(align - 1));
  }
  return o;
}

static void putint (unsigned char *p, uint64_t x, int little, int size,
                    int neg) {
  int i;
  for (i = 0; i < size; i++) {
    unsigned char byte = i < 8 ? (unsigned char)(x >> (8 * i))
                               : (neg ? 0xff : 0);
    p[little ? i : size - 1 - i] = byte;
  }
}

static void putbytes (unsigned char *p, const void *src, int size,
                      int little) {
  const unsigned char *s = (const unsigned char *)src;
  int i, native = (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__);
  for (i = 0; i < size; i++)
    p[i] = s[(little == native) ? i : size - 1 - i];
}

/* One pass of pack: with out NULL it only checks the arguments and
** measures; else it writes at out. Returns the bytes taken. */
static uint64_t dopack (lua_State *L, int fmtarg, uint64_t start,
                        unsigned char *out) {
  Fmt h;
  uint64_t pos = start;
  int arg = fmtarg;
  h.L = L; h.arg = fmtarg; h.s = luaL_checkstring(L, fmtarg);
  h.little = (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__); h.maxalign = 1;
  while (*h.s != '\0') {
    int size, pad;
    Opt o = nextdetail(&h, pos, &size, &pad);
    if (out) memset(out + (pos - start), 0, (size_t)pad);
    pos += (uint64_t)pad;
    switch (o) {
      case Oint: case Ouint: {
        lua_Integer n = luaL_checkinteger(L, ++arg);
        if (size < (int)sizeof(lua_Integer)) {
          lua_Integer lim = (lua_Integer)1 << ((size * 8) - 1);
          if (o == Oint)
            luaL_argcheck(L, -lim <= n && n < lim, arg, "integer overflow");
          else
            luaL_argcheck(L, (lua_Unsigned)n < ((lua_Unsigned)1 << (size * 8)),
                          arg, "unsigned overflow");
        }
        if (out) putint(out + (pos - start), (uint64_t)n, h.little, size,
                        n < 0);
        break;
      }
      case Ofloat: {
        float f = (float)luaL_checknumber(L, ++arg);
        if (out) putbytes(out + (pos - start), &f, size, h.little);
        break;
      }
      case Odouble: case Onumber: {
        double d = (double)luaL_checknumber(L, ++arg);
        if (out) putbytes(out + (pos - start), &d, size, h.little);
        break;
      }
      case Ochar: {
        size_t len;
        const char *s = luaL_checklstring(L, ++arg, &len);
        luaL_argcheck(L, len <= (size_t)size, arg,
                      "string longer than given size");
        if (out) {
          memcpy(out + (pos - start), s, len);
          memset(out + (pos - start) + len, 0, (size_t)size - len);
        }
        break;
      }
      case Ostring: {
        size_t len;
        const char *s = luaL_checklstring(L, ++arg, &len);
        luaL_argcheck(L, size >= (int)sizeof(size_t) ||
                      len < ((size_t)1 << (size * 8)), arg,
                      "string length does not fit in given size");
        if (out) {
          putint(out + (pos - start), (uint64_t)len, h.little, size, 0);
          memcpy(out + (pos - start) + size, s, len);
        }
        pos += len;
        break;
      }
      case Ozstr: {
        size_t len;
        const char *s = luaL_checklstring(L, ++arg, &len);
        luaL_argcheck(L, strlen(s) == len, arg, "string contains zeros");
        if (out) memcpy(out + (pos - start), s, len + 1);
        pos += len + 1;
        break;
      }
      case Opad:
        if (out) out[pos - start] = 0;
        break;
      case Oalign: case Onop:
        break;
    }
    pos += (uint64_t)size;
  }
  return pos - start;
}

/* pack(pos, fmt, ...): writes the values at pos as string.pack would lay
** them out; returns the next position. Nothing is written if a value is
** wrong or the result would not fit. */
static int view_pack (lua_State *L) {
  View *v = checkwritable(L, 1);
  lua_Integer pos;
  if (lua_type(L, 2) == LUA_TSTRING && lua_type(L, 3) == LUA_TNUMBER)
    luaL_argerror(L, 2, "position expected, got string; pack takes the "
                  "position first: v:pack(pos, fmt, ...)");
  pos = luaL_checkinteger(L, 2);
  uint64_t n;
  checkspan(L, v, 2, pos, 0);
  n = dopack(L, 3, (uint64_t)pos, NULL);
  /* Converting numbers to strings in that pass may have run a finalizer
  ** that retired or retargeted the view: look again before writing. */
  if (v->state != LIVE) checkview(L, 1);
  checkspan(L, v, 2, pos, 0);
  if (n > v->len - (uint64_t)pos)
    luaL_argerror(L, 2, lua_pushfstring(L, "position %I + %I packed bytes "
                  "is outside the view (%I bytes)", pos, (lua_Integer)n,
                  (lua_Integer)v->len));
  touch(L, v, (uint64_t)pos, n);
  dopack(L, 3, (uint64_t)pos, vptr(v) + pos);
  CHECKLOST(L, v);
  lua_pushinteger(L, pos + (lua_Integer)n);
  return 1;
}

static lua_Integer getint (lua_State *L, const unsigned char *p, int little,
                           int size, int issigned) {
  uint64_t r = 0;
  int i, limit = size <= 8 ? size : 8;
  for (i = limit - 1; i >= 0; i--) {
    r <<= 8;
    r |= p[little ? i : size - 1 - i];
  }
  if (size < 8) {
    if (issigned) {
      uint64_t mask = (uint64_t)1 << (size * 8 - 1);
      r = (r ^ mask) - mask;
    }
  } else if (size > 8) {
    int mask = (!issigned || (int64_t)r >= 0) ? 0 : 0xff;
    for (i = limit; i < size; i++) {
      if (p[little ? i : size - 1 - i] != mask)
        luaL_error(L, "%d-byte integer does not fit into Lua Integer", size);
    }
  }
  return (lua_Integer)r;
}

/* unpack(fmt [, pos]): the values at pos (default 0), then the position
** after them, as string.unpack does with 0-based positions. */
static int view_unpack (lua_State *L) {
  View *v = checkview(L, 1);
  lua_Integer ipos;
  if (lua_type(L, 2) == LUA_TNUMBER)
    luaL_argerror(L, 2, "format expected, got number; unpack takes the "
                  "format first: v:unpack(fmt [, pos])");
  ipos = luaL_optinteger(L, 3, 0);
  const unsigned char *data = NULL;
  uint64_t pos, len = 0;
  int n = 0, stale = 0;
  Fmt h;
  h.L = L; h.arg = 2; h.s = luaL_checkstring(L, 2);
  h.little = (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__); h.maxalign = 1;
  if (v->state != LIVE) checkview(L, 1);   /* the format's conversion ran
                                           ** a finalizer (see below) */
  checkspan(L, v, 3, ipos, 0);
  pos = (uint64_t)ipos;
  data = vptr(v);
  len = v->len;
  while (*h.s != '\0') {
    int size, pad;
    Opt o;
    if (stale) {
      /* After an allocation, which may run a finalizer that moves the
      ** map, retires or retargets the view: look again. */
      if (v->state != LIVE) checkview(L, 1);
      checkspan(L, v, 3, (lua_Integer)pos, 0);
      data = vptr(v);
      len = v->len;
      stale = 0;
    }
    o = nextdetail(&h, pos, &size, &pad);
    if ((uint64_t)pad + (uint64_t)size > len - pos)
      luaL_argerror(L, 3, lua_pushfstring(L, "format reads past the end of "
                    "the view (%I bytes) at position %I", (lua_Integer)len,
                    (lua_Integer)pos));
    pos += (uint64_t)pad;
    luaL_checkstack(L, 2, "too many results");
    n++;
    switch (o) {
      case Oint: case Ouint:
        lua_pushinteger(L, getint(L, data + pos, h.little, size, o == Oint));
        break;
      case Ofloat: {
        float f;
        putbytes((unsigned char *)&f, data + pos, size, h.little);
        lua_pushnumber(L, (lua_Number)f);
        break;
      }
      case Odouble: case Onumber: {
        double d;
        putbytes((unsigned char *)&d, data + pos, size, h.little);
        lua_pushnumber(L, (lua_Number)d);
        break;
      }
      case Ochar:
        lua_pushlstring(L, (const char *)data + pos, (size_t)size);
        stale = 1;
        break;
      case Ostring: {
        uint64_t l = (uint64_t)getint(L, data + pos, h.little, size, 0);
        if (l > len - pos - (uint64_t)size)
          luaL_argerror(L, 3, lua_pushfstring(L, "string length %I at "
                        "position %I passes the end of the view",
                        (lua_Integer)l, (lua_Integer)pos));
        lua_pushlstring(L, (const char *)data + pos + size, (size_t)l);
        stale = 1;
        pos += l;
        break;
      }
      case Ozstr: {
        const unsigned char *z = memchr(data + pos, 0, (size_t)(len - pos));
        if (z == NULL)
          luaL_argerror(L, 3, "unfinished string for format 'z'");
        lua_pushlstring(L, (const char *)data + pos,
                        (size_t)(z - (data + pos)));
        stale = 1;
        pos += (uint64_t)(z - (data + pos)) + 1;
        break;
      }
      case Oalign: case Opad: case Onop:
        n--;
        break;
    }
    pos += (uint64_t)size;
  }
  CHECKLOST(L, v);
  lua_pushinteger(L, (lua_Integer)pos);
  return n + 1;
}


/* ---------------------------------------------------------------------- */
/* BlockFile                                                               */
/* ---------------------------------------------------------------------- */

/* Numbers the BlockFiles a process makes, for isbf. */
static uint64_t bfserials;

/* The userdata first, closed, so a failure leaves nothing to clean up. */
/* ---------------------------------------------------------------------- */
/* Faults of the map (SIGBUS)                                              */
/* ---------------------------------------------------------------------- */

/* A page of a file's map with no file behind it raises SIGBUS when it is
** touched: the file was truncated under the map (by another process, or
** by this one: io.open(path, "w")), a hole of a sparse file met a full
** disk, a read failed. The default action kills the process. onbus, the
** handler, finds the BlockFile whose map holds the faulting address and
** has the core replace its whole map with zeros (fm_fault): the access
** that faulted then completes, on zeros, and no later store reaches the
** file. It retires the BlockFile (BF_LOST) and its views (LOST): the call
** that met the fault raises where it checks (LOSTMAP), every later use
** raises, and close only unmaps. A fault anywhere else goes to the
** handler that was there before, or to the default action.
**
** This is the module's one process-wide state besides its serials: a
** signal's handler has no other way to reach the BlockFiles. The list of
** open BlockFiles is the process's (Lua states in several threads, or
** one state moved between threads, all add to it), changed under a lock
** that the handler does not take: it reads the list in the thread that
** faulted, stopped in an access of a map, where no change of the list is
** under way; a change in another thread at that instant could show it a
** torn list, which only a SIGBUS fmap was about to handle could meet. */
static BlockFile *maps;
static pthread_mutex_t mapslock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction prevbus;
static pthread_once_t busonce = PTHREAD_ONCE_INIT;

static void mapped (BlockFile *bf, int state) {
  pthread_mutex_lock(&mapslock);
  bf->open = state;
  bf->mprev = NULL;
  bf->mnext = maps;
  if (maps != NULL) maps->mprev = bf;
  maps = bf;
  pthread_mutex_unlock(&mapslock);
}

static void unmapped (BlockFile *bf) {
  if (bf->open == BF_CLOSED) return;
  pthread_mutex_lock(&mapslock);
  if (bf->mprev != NULL) bf->mprev->mnext = bf->mnext;
  else maps = bf->mnext;
  if (bf->mnext != NULL) bf->mnext->mprev = bf->mprev;
  bf->mprev = bf->mnext = NULL;
  pthread_mutex_unlock(&mapslock);
}

/* After fm_create, fm_open or fm_anonymous returned rc for bf, which was
** BF_OPENING: BF_OPEN, or off the list and closed with an error code (a
** fault while the file was read makes the open fail, FM_ELOST). */
static int opened (BlockFile *bf, int rc) {
  if (bf->f.faulted) {   /* whatever the core made of the zeros it read */
    char why[sizeof bf->f.msg];
    memcpy(why, fm_fault_reason(&bf->f), sizeof why);
    fm_close(&bf->f);    /* (a failed open has closed it already) */
    memcpy(bf->f.msg, why, sizeof why);
    rc = FM_ELOST;
  }
  unmapped(bf);
  if (rc != 0) {
    bf->open = BF_CLOSED;
    return rc;
  }
  mapped(bf, BF_OPEN);
  return 0;
}

static void onbus (int sig, siginfo_t *si, void *ctx) {
  const unsigned char *at = (const unsigned char *)si->si_addr;
  BlockFile *bf;
  if (si->si_code > 0) {   /* raised by the kernel, not by kill() */
    for (bf = maps; bf != NULL; bf = bf->mnext) {
      fm_file *f = &bf->f;
      if ((bf->open == BF_OPEN || bf->open == BF_OPENING) &&
          f->map != NULL && at >= f->map && at < f->map + f->mapsize) {
        if (fm_fault(f) != 0) break;
        retire(bf);
        return;
      }
    }
  }
  if (prevbus.sa_flags & SA_SIGINFO) {
    if (prevbus.sa_sigaction != NULL) prevbus.sa_sigaction(sig, si, ctx);
  }
  else if (prevbus.sa_handler != SIG_DFL && prevbus.sa_handler != SIG_IGN)
    prevbus.sa_handler(sig);
  else if (si->si_code <= 0) {
    /* sent by kill(): ignored, or raised again with the default action
    ** once this handler returns, as if no handler were there */
    if (prevbus.sa_handler == SIG_DFL) {
      signal(SIGBUS, SIG_DFL);
      raise(SIGBUS);
    }
  }
  else {
    /* a fault outside every map: the access faults again on return and
    ** the kernel takes the default action, ignored or not */
    signal(SIGBUS, SIG_DFL);
  }
}

static void installbus (void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = onbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &prevbus);
}

static BlockFile *newbf (lua_State *L) {
  /* user values: the path (nil when anonymous), on_rollback's hooks */
  BlockFile *bf = (BlockFile *)lua_newuserdatauv(L, sizeof(BlockFile), 2);
  memset(bf, 0, sizeof *bf);
  bf->tag = BF_TAG;
  bf->serial = ++bfserials;
  bf->f.fd = -1;
  if (lua_type(L, UV_BFMT) != LUA_TTABLE) mtfail(L);
  lua_pushvalue(L, UV_BFMT);
  lua_setmetatable(L, -2);
  return bf;
}

/* Retires every live view: the file is going away. */
static void kill_views (BlockFile *bf) {
  while (bf->views != NULL) unlink_view(bf->views, CLOSED);
}

/* What live_views and close's message say of a view. They copy the list
** first: building Lua values may run finalizers that release views, and
** a view unlinked (and collected) under the walk would be a dangling
** pointer. */
typedef struct ViewInfo {
  uint64_t off, len;
  int line;
  char src[LUA_IDSIZE];
} ViewInfo;

/* Copies at most max of bf's live views into a new userdata, left on the
** stack; *n says how many. */
static ViewInfo *snapviews (lua_State *L, BlockFile *bf, lua_Integer max,
                            lua_Integer *n) {
  lua_Integer want = bf->nviews < max ? bf->nviews : max, k = 0;
  ViewInfo *vi = (ViewInfo *)lua_newuserdatauv(L, (size_t)want * sizeof *vi,
                                               0);
  View *v;
  for (v = bf->views; v != NULL && k < want; v = v->next, k++) {
    vi[k].off = v->off;
    vi[k].len = v->len;
    vi[k].line = v->line;
    memcpy(vi[k].src, v->src, sizeof vi[k].src);
  }
  *n = k;
  return vi;
}

static int listviews (lua_State *L, BlockFile *bf) {
  lua_Integer n, i;
  ViewInfo *vi = snapviews(L, bf, bf->nviews, &n);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)vi[i].off);
    lua_setfield(L, -2, "offset");
    lua_pushinteger(L, (lua_Integer)(vi[i].len / bf->f.h.block_size));
    lua_setfield(L, -2, "blocks");
    lua_pushinteger(L, (lua_Integer)vi[i].len);
    lua_setfield(L, -2, "bytes");
    if (vi[i].line >= 0) lua_pushfstring(L, "%s:%d", vi[i].src, vi[i].line);
    else lua_pushstring(L, vi[i].src[0] ? vi[i].src : "?");
    lua_setfield(L, -2, "where");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* Closes for good; strict refuses while views are live after a GC. */
static int doclose (lua_State *L, BlockFile *bf, int strict) {
  int rc;
  if (strict && bf->nviews > 0) {
    lua_gc(L, LUA_GCCOLLECT);   /* views only unreachable are released */
    if (bf->nviews > 0) {
      lua_Integer n, k, total;
      ViewInfo *vi = snapviews(L, bf, 10, &n);
      total = bf->nviews;
      if (n > 0) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_where(L, 1);   /* the script's line, as luaL_error gives */
        luaL_addvalue(&b);
        lua_pushfstring(L, "cannot close a BlockFile with %I live view%s:",
                        total, total == 1 ? "" : "s");
        luaL_addvalue(&b);
        for (k = 0; k < n; k++) {
          lua_pushfstring(L, "%s offset %I (%I bytes) acquired at %s:%d",
                          k ? ";" : "", (lua_Integer)vi[k].off,
                          (lua_Integer)vi[k].len, vi[k].src, vi[k].line);
          luaL_addvalue(&b);
        }
        if (total > n) luaL_addstring(&b, "; ...");
        luaL_pushresult(&b);
        return lua_error(L);
      }
    }
  }
  kill_views(bf);
  unmapped(bf);
  bf->open = BF_CLOSED;
  if (bf->f.path != NULL) lua_pushstring(L, bf->f.path);   /* close frees it */
  else lua_pushnil(L);
  rc = fm_close(&bf->f);
  if (rc != 0) return pushfail(L, bf, rc, lua_tostring(L, -1));
  lua_pushboolean(L, 1);
  return 1;
}

static int bf_gc (lua_State *L) {
  BlockFile *bf = tobf(L, 1);
  if (bf != NULL && bf->open != BF_CLOSED) {
    kill_views(bf);
    unmapped(bf);
    bf->open = BF_CLOSED;
    fm_close(&bf->f);
  }
  return 0;
}

/* __close: strict on a normal exit; on an error exit, close anyway so the
** original error is the one reported. */
static int bf_tbclose (lua_State *L) {
  BlockFile *bf = tobf(L, 1);
  if (bf == NULL || bf->open == BF_CLOSED) return 0;
  doclose(L, bf, lua_isnoneornil(L, 2));
  return 0;
}

/* close(): a BlockFile that lost its map closes too (that is what the
** error of every other use asks for). */
static int bf_close (lua_State *L) {
  BlockFile *bf = tobf(L, 1);
  if (bf == NULL || bf->open != BF_LOST) bf = checkbf(L, 1);
  return doclose(L, bf, 1);
}

static int bf_tostring (lua_State *L) {
  BlockFile *bf = tobf(L, 1);
  fm_stats st;
  if (bf == NULL) return luaL_typeerror(L, 1, "BlockFile");
  if (bf->open == BF_CLOSED) {
    lua_pushstring(L, "BlockFile (closed)");
    return 1;
  }
  if (bf->open == BF_LOST) {
    lua_pushfstring(L, "BlockFile (%s, lost its map: %s; close it)",
                    bf->f.path ? bf->f.path : "anonymous",
                    fm_fault_reason(&bf->f));
    return 1;
  }
  fm_get_stats(&bf->f, &st);
  lua_pushfstring(L, "BlockFile (%s%s, %I bytes, %I block%s of %I: the "
                  "header, %I used, %I free, %I never used; %I live view%s)",
                  bf->f.path ? bf->f.path : "anonymous",
                  bf->f.readonly ? ", read-only" : "", (lua_Integer)st.size,
                  (lua_Integer)st.blocks, plural(st.blocks),
                  (lua_Integer)st.block_size, (lua_Integer)st.used_blocks,
                  (lua_Integer)st.free_blocks, (lua_Integer)st.tail_blocks,
                  bf->nviews, bf->nviews == 1 ? "" : "s");
  return 1;
}

static uint32_t checkblocksize (lua_State *L, int i) {
  lua_Integer bs = luaL_optinteger(L, i, FM_BLOCKSIZE);
  luaL_argcheck(L, bs >= FM_BLOCKSIZE && bs % FM_BLOCKSIZE == 0 &&
                bs <= FM_MAX_BLOCKSIZE, i,
                lua_pushfstring(L, "block size %I is not a multiple of 4096 "
                                "up to 2^30", bs));
  return (uint32_t)bs;
}

/* fmap.create(path [, block_size]) */
static int mod_create (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  uint32_t bs = checkblocksize(L, 2);
  BlockFile *bf = newbf(L);
  int rc;
  mapped(bf, BF_OPENING);    /* a fault while it is made is onbus's */
  rc = fm_create(path, bs, &bf->f);
  if ((rc = opened(bf, rc)) != 0) return pushfail(L, bf, rc, path);
  lua_pushvalue(L, 1);       /* the path outlives close, for remove */
  lua_setiuservalue(L, -2, 1);
  return 1;
}

/* fmap.open(path [, {readonly = true} or {repair = true}]) */
static int mod_open (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int flags = 0, rc;
  BlockFile *bf;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ?
                      lua_tostring(L, -2) : NULL;
      int flag = k == NULL ? 0 : strcmp(k, "readonly") == 0 ? FM_READONLY
                 : strcmp(k, "repair") == 0 ? FM_REPAIR : 0;
      if (flag == 0)
        return luaL_argerror(L, 2, lua_pushfstring(L, "unknown option %s",
                             k ? k : luaL_typename(L, -2)));
      if (!lua_isboolean(L, -1))
        return luaL_argerror(L, 2, lua_pushfstring(L, "option %s must be "
                             "true or false, not %s", k,
                             luaL_typename(L, -1)));
      if (lua_toboolean(L, -1)) flags |= flag;
      lua_pop(L, 1);
    }
    luaL_argcheck(L, flags != (FM_READONLY | FM_REPAIR), 2,
                  "a read-only open cannot repair");
  }
  bf = newbf(L);
  mapped(bf, BF_OPENING);    /* a fault while it is read is onbus's */
  rc = fm_open(path, flags, &bf->f);
  if ((rc = opened(bf, rc)) != 0) return pushfail(L, bf, rc, path);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

/* fmap.anonymous([block_size]) */
static int mod_anonymous (lua_State *L) {
  uint32_t bs = checkblocksize(L, 1);
  BlockFile *bf = newbf(L);
  int rc;
  mapped(bf, BF_OPENING);
  rc = fm_anonymous(bs, &bf->f);
  if ((rc = opened(bf, rc)) != 0) return pushfail(L, bf, rc, NULL);
  return 1;
}

/* fmap.memclr(view): zeroes the view's bytes. */
static int mod_memclr (lua_State *L) {
  View *v = checkwritable(L, 1);
  touch(L, v, 0, v->len);
  memset(vptr(v), 0, (size_t)v->len);
  CHECKLOST(L, v);
  return 0;
}

/* fmap.clock(): seconds on a monotonic clock, for timing benchmarks
** (os.clock counts CPU time, os.time whole seconds). */
static int mod_clock (lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  return 1;
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
  lua_Integer w = luaL_checkinteger(L, 2);
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

static int doallocate (lua_State *L, BlockFile *bf, uint64_t n) {
  uint64_t off;
  int rc;
  COUNTSTORE(L, bf);
  rc = fm_allocate(&bf->f, n, &off);
  if (rc == FM_ELOST) return lostfail(L, bf);
  if (rc == FM_EMISUSE) return writefail(L, bf, lua_gettop(L) >= 2 ? 2 : 0);
  if (rc == FM_ECORRUPT) return corefail(L, bf, 0);
  if (rc != 0) return pushfail(L, bf, rc, bf->f.path);
  if (LOSTMAP(bf)) notopen(L, bf);
  lua_pushinteger(L, (lua_Integer)off);
  return 1;
}

static int bf_allocate (lua_State *L) {
  return doallocate(L, checkbf(L, 1), 1);
}

static int bf_allocate_blocks (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 1, 2,
                lua_pushfstring(L, "block count %I is not positive", n));
  return doallocate(L, bf, (uint64_t)n);
}

/* free(offset [, n]): n blocks from offset go back to the free list; the
** views over them die with them. */
static int bf_free (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  uint64_t off = checkoffset(L, 2);
  lua_Integer n = luaL_optinteger(L, 3, 1);
  uint64_t end, bs = bf->f.h.block_size;
  View *v, *next;
  int rc;
  luaL_argcheck(L, n >= 1, 3,
                lua_pushfstring(L, "block count %I is not positive", n));
  COUNTSTORE(L, bf);
  rc = fm_free(&bf->f, off, (uint64_t)n);
  /* a count that runs past the allocated area from a block of the file
  ** is the count's fault */
  if (rc == FM_EMISUSE)
    return writefail(L, bf, off % bs == 0 && off < bf->f.h.top &&
                            (uint64_t)n > (bf->f.h.top - off) / bs ? 3 : 2);
  if (rc == FM_ECORRUPT) return corefail(L, bf, 0);
  if (rc != 0) return pushfail(L, bf, rc, bf->f.path);
  if (LOSTMAP(bf)) notopen(L, bf);
  end = off + (uint64_t)n * bs;
  for (v = bf->views; v != NULL; v = next) {
    next = v->next;
    if (v->off < end && off < v->off + v->len) unlink_view(v, FREED);
  }
  return 0;
}

/* get(offset [, blocks]) → a live view */
static int bf_get (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  uint64_t off = checkoffset(L, 2);
  lua_Integer n = luaL_optinteger(L, 3, 1);
  luaL_argcheck(L, n >= 1, 3,
                lua_pushfstring(L, "block count %I is not positive", n));
  if (fm_check_range(&bf->f, off, (uint64_t)n) != 0)
    return corefail(L, bf, 2);
  newview(L, 1, bf, off, (uint64_t)n * bf->f.h.block_size);
  return 1;
}

/* release(view): the view must be one of this BlockFile's, and live. */
static int bf_release (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  View *v = toview(L, 2);
  if (v == NULL) return luaL_typeerror(L, 2, "view");
  luaL_argcheck(L, v->bf == bf, 2, "view belongs to another BlockFile");
  if (v->state == RELEASED)
    return luaL_argerror(L, 2, lua_pushfstring(L, "attempt to release a "
                         "released view: %s", pushviewinfo(L, v)));
  unlink_view(v, RELEASED);   /* as view_release: an ended view passes */
  return 0;
}

/* with(offset, [blocks,] fn): fn(view)'s results; the view is
** to-be-closed in this C frame, so it is released however fn ends, and
** fn may yield (a coroutine that walks a structure): with_done finishes
** the call once it resumes and returns. */
static int with_done (lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L) - 5;   /* the view at 5 closes on the return */
}

static int bf_with (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  uint64_t off = checkoffset(L, 2);
  lua_Integer n;
  if (lua_isnone(L, 3)) luaL_checktype(L, 3, LUA_TFUNCTION);
  if (lua_type(L, 3) == LUA_TFUNCTION && lua_isnone(L, 4)) {
    lua_pushinteger(L, 1);   /* with(offset, fn): one block, as get */
    lua_insert(L, 3);
  }
  n = luaL_checkinteger(L, 3);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  luaL_argcheck(L, n >= 1, 3,
                lua_pushfstring(L, "block count %I is not positive", n));
  if (fm_check_range(&bf->f, off, (uint64_t)n) != 0)
    return corefail(L, bf, 2);
  lua_settop(L, 4);
  newview(L, 1, bf, off, (uint64_t)n * bf->f.h.block_size);   /* 5 */
  lua_toclose(L, 5);
  lua_pushvalue(L, 4);
  lua_pushvalue(L, 5);
  lua_callk(L, 1, LUA_MULTRET, 0, with_done);
  return with_done(L, LUA_OK, 0);
}

static int bf_control_data (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  size_t len;
  const unsigned char *p = fm_control_data(&bf->f, &len);
  lua_pushlstring(L, (const char *)p, len);
  if (LOSTMAP(bf)) notopen(L, bf);
  return 1;
}

static int setctl (lua_State *L, int sync) {
  BlockFile *bf = checkbf(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  int rc;
  if (bf->open != BF_OPEN) checkbf(L, 1);   /* a finalizer ran in the
                                           ** conversion */
  COUNTSTORE(L, bf);
  rc = fm_set_control_data(&bf->f, s, len, sync);
  if (rc == FM_ELOST) return lostfail(L, bf);
  if (rc == FM_EMISUSE) return writefail(L, bf, 2);
  if (rc != 0) return pushfail(L, bf, rc, bf->f.path);
  if (LOSTMAP(bf)) notopen(L, bf);
  lua_pushboolean(L, 1);
  return 1;
}

static int bf_set_control_data (lua_State *L) { return setctl(L, 1); }
static int bf_set_control_data_nosync (lua_State *L) { return setctl(L, 0); }

static int bf_block_size (lua_State *L) {
  lua_pushinteger(L, (lua_Integer)checkbf(L, 1)->f.h.block_size);
  return 1;
}

static int bf_size (lua_State *L) {
  lua_pushinteger(L, (lua_Integer)checkbf(L, 1)->f.mapsize);
  return 1;
}

static int bf_path (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  if (bf->f.path) lua_pushstring(L, bf->f.path);
  else lua_pushnil(L);
  return 1;
}

static int bf_readonly (lua_State *L) {
  lua_pushboolean(L, checkbf(L, 1)->f.readonly);
  return 1;
}

static int bf_address (lua_State *L) {
  lua_pushinteger(L, (lua_Integer)(uintptr_t)checkbf(L, 1)->f.map);
  return 1;
}

static int bf_valid (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  lua_Integer addr = luaL_checkinteger(L, 2);
  lua_pushboolean(L, (uintptr_t)addr == (uintptr_t)bf->f.map);
  return 1;
}

/* sync() and flush(): true, or nil, message, errno. */
static int dosync (lua_State *L, int (*fn) (fm_file *)) {
  BlockFile *bf = checkbf(L, 1);
  int rc = fn(&bf->f);
  if (rc == FM_ELOST) return lostfail(L, bf);
  if (rc == FM_EMISUSE) return luaL_error(L, "%s", bf->f.msg);
  if (rc != 0) return pushfail(L, bf, rc, bf->f.path);
  lua_pushboolean(L, 1);
  return 1;
}

static int bf_sync (lua_State *L) { return dosync(L, fm_sync); }
static int bf_flush (lua_State *L) { return dosync(L, fm_flush); }


/* ---------------------------------------------------------------------- */
/* Transactions                                                            */
/* ---------------------------------------------------------------------- */

/* Raises "not in a transaction" and the like, or returns the failure of
** the environment as nil, message, errno. */
static int txnfail (lua_State *L, BlockFile *bf, int rc,
                    const char *fname) {
  if (rc == FM_ELOST) return lostfail(L, bf);
  if (rc == FM_EMISUSE) return luaL_error(L, "%s: %s", fname, bf->f.msg);
  return pushfail(L, bf, rc, bf->f.path);
}

static int bf_begin (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  int rc = fm_begin(&bf->f);
  if (rc != 0) return txnfail(L, bf, rc, "begin");
  return 0;
}

/* The sync option of commit([opts]): true unless opts.sync is false. */
static int optsync (lua_State *L, int i) {
  int sync = 1;
  if (lua_isnoneornil(L, i)) return 1;
  luaL_checktype(L, i, LUA_TTABLE);
  if (lua_getfield(L, i, "sync") != LUA_TNIL) {
    luaL_argcheck(L, lua_isboolean(L, -1), i, "opts.sync must be a boolean");
    sync = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return sync;
}

static int bf_commit (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  int sync = optsync(L, 2), rc;
  if (bf->open != BF_OPEN) checkbf(L, 1);   /* a finalizer in getfield */
  if (!bf->f.txn)
    return luaL_error(L, "commit: no transaction is open (bf:begin() "
                      "starts one; flush and sync commit outside one)");
  rc = fm_commit(&bf->f, sync);
  if (rc != 0) return txnfail(L, bf, rc, "commit");
  lua_pushboolean(L, 1);
  return 1;
}

/* After a rollback, views over blocks the transaction allocated die. */
static void undoviews (BlockFile *bf) {
  uint64_t bs = bf->f.h.block_size;
  View *v, *next;
  for (v = bf->views; v != NULL; v = next) {
    next = v->next;
    if (fm_check_range(&bf->f, v->off, v->len / bs) != 0)
      unlink_view(v, UNDONE);
  }
  bf->f.msg[0] = '\0';
}

/* Calls the on_rollback hooks of the BlockFile at bfi: fn(key) for each.
** They are gathered first, since a hook may change the table. */
static void runhooks (lua_State *L, int bfi) {
  int t, list, n = 0, i;
  if (lua_getiuservalue(L, bfi, 2) != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  t = lua_gettop(L);
  lua_newtable(L);
  list = t + 1;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    lua_pushvalue(L, -2);
    lua_rawseti(L, list, ++n);   /* the key */
    lua_rawseti(L, list, ++n);   /* its function */
  }
  for (i = 1; i < n; i += 2) {
    lua_rawgeti(L, list, i + 1);
    lua_rawgeti(L, list, i);
    lua_call(L, 1, 0);
  }
  lua_pop(L, 2);
}

/* A rollback's aftermath: views that died, and the hooks. */
static void rolledback (lua_State *L, BlockFile *bf, int bfi) {
  undoviews(bf);
  runhooks(L, bfi);
}

static int bf_rollback (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  int rc = fm_rollback(&bf->f);
  if (rc != 0) return txnfail(L, bf, rc, "rollback");
  rolledback(L, bf, 1);
  return 0;
}

/* on_rollback(key, fn): after every rollback of this BlockFile, fn(key)
** runs, while key lives (it is held weakly): a structure that keeps
** state in Lua (a root, a count, cached views) reloads it there. A nil
** fn removes the hook. */
static int bf_on_rollback (lua_State *L) {
  checkbf(L, 1);
  luaL_checkany(L, 2);
  luaL_argcheck(L, !lua_isnil(L, 2), 2, "a key is needed (the hook's "
                "owner, held weakly)");
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  if (lua_getiuservalue(L, 1, 2) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_newtable(L);                   /* its metatable: weak keys */
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 2);
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, -3);
  return 0;
}

static int bf_in_transaction (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  lua_pushboolean(L, bf->f.txn);
  return 1;
}

/* transaction(fn, ...): fn(...) in a transaction; commits (durably) when
** it returns and returns its results, or returns nil, message, errno if
** the commit fails (rolled back); rolls back and raises fn's error again
** when it raises. fn may yield: transaction_done ends the call once it
** returns. Slot 1 holds the BlockFile, slot 2 the error handler's
** result; fn's results follow. */
static int transaction_done (lua_State *L, int status, lua_KContext ctx) {
  BlockFile *bf = (BlockFile *)ctx;
  int rc;
  if (status != LUA_OK && status != LUA_YIELD) {
    if (bf->open == BF_OPEN && bf->f.txn) {
      fm_rollback(&bf->f);
      rolledback(L, bf, 1);
    }
    return lua_error(L);   /* the error object is on top */
  }
  if (bf->open != BF_OPEN) checkbf(L, 1);
  if (!bf->f.txn)
    return luaL_error(L, "transaction: the function ended the transaction "
                      "itself (commit or rollback inside transaction)");
  rc = fm_commit(&bf->f, 1);
  if (rc != 0) {
    int n;
    fm_rollback(&bf->f);
    rolledback(L, bf, 1);
    n = txnfail(L, bf, rc, "transaction");
    return n;
  }
  return lua_gettop(L) - 1;
}

static int bf_transaction (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  int rc;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if ((rc = fm_begin(&bf->f)) != 0)
    return txnfail(L, bf, rc, "transaction");
  return transaction_done(L, lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET,
                                        0, (lua_KContext)bf,
                                        transaction_done), (lua_KContext)bf);
}

/* fail_after(n [, how]): the n-th store from now (a write through a view,
** an allocate, a free, a change of the control data) raises an error
** instead, or with how "kill" kills the process (SIGKILL) right before
** it: a test of recovery code. fail_after(nil) disarms it. */
static int bf_fail_after (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  static const char *const hows[] = { "error", "kill", NULL };
  lua_Integer n;
  if (lua_isnoneornil(L, 2)) {
    bf->trap = 0;
    return 0;
  }
  n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 1, 2,
                lua_pushfstring(L, "store count %I is not positive", n));
  bf->trap_kill = luaL_checkoption(L, 3, "error", hows);
  bf->trap = (uint64_t)n;
  return 0;
}

/* remove(): deletes the file, closing the BlockFile first if it is open
** (which, as close does, refuses while views are live). */
static int bf_remove (lua_State *L) {
  BlockFile *bf = tobf(L, 1);
  const char *path;
  if (bf == NULL) return typefail(L, 1, "BlockFile", FMAP_BF);
  lua_settop(L, 1);
  if (lua_getiuservalue(L, 1, 1) != LUA_TSTRING)
    return luaL_error(L, "cannot remove an anonymous BlockFile");
  /* read-only refuses every change, this one too (closed or not) */
  if (bf->f.readonly) return luaL_argerror(L, 1, "the BlockFile is read-only");
  path = lua_tostring(L, 2);
  if (bf->open != BF_CLOSED && doclose(L, bf, 1) != 1) return 3;
  if ((errno = fm_unlink(path)) != 0) {   /* the file and its journal */
    int en = errno;
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", path, strerror(en));
    lua_pushinteger(L, en);
    return 3;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static void setint (lua_State *L, const char *k, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

static int bf_stats (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  fm_stats st;
  fm_get_stats(&bf->f, &st);
  lua_createtable(L, 0, 14);
  setint(L, "size", st.size);
  setint(L, "block_size", st.block_size);
  setint(L, "blocks", st.blocks);
  setint(L, "used_blocks", st.used_blocks);
  setint(L, "free_blocks", st.free_blocks);
  setint(L, "free_runs", st.free_runs);
  setint(L, "tail_blocks", st.tail_blocks);
  setint(L, "control_data", st.control_data);
  setint(L, "max_control_data", fm_max_control_data(&bf->f));
  setint(L, "live_views", (uint64_t)bf->nviews);
  setint(L, "remaps", st.remaps);
  setint(L, "version", FM_VERSION);
  setint(L, "dirty_blocks", st.dirty_blocks);
  setint(L, "journal_bytes", st.journal_bytes);
  setint(L, "journal_blocks", st.journal_blocks);
  setint(L, "commits", st.commits);
  setint(L, "checkpoints", st.checkpoints);
  lua_pushboolean(L, st.in_transaction);
  lua_setfield(L, -2, "in_transaction");
  lua_pushboolean(L, bf->f.readonly);
  lua_setfield(L, -2, "readonly");
  lua_pushboolean(L, bf->f.path == NULL);
  lua_setfield(L, -2, "anonymous");
  if (bf->f.path) {
    lua_pushstring(L, bf->f.path);
    lua_setfield(L, -2, "path");
  }
  return 1;
}

/* fm_check's problems, gathered in C while it walks the map: building
** Lua strings there could run a finalizer that closes or changes the
** file under the walk. */
#define MAXPROBLEMS 100
typedef struct Problems {
  int n;
  char line[MAXPROBLEMS][256];
} Problems;

static void addproblem (void *ud, const char *problem) {
  Problems *p = (Problems *)ud;
  if (p->n < MAXPROBLEMS)
    snprintf(p->line[p->n++], sizeof p->line[0], "%s", problem);
}

/* check() → true, or nil and a list of problems */
static int bf_check (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  Problems *p = (Problems *)lua_newuserdatauv(L, sizeof(Problems), 0);
  uint64_t n;
  int i;
  checkbf(L, 1);   /* again, after the allocation */
  p->n = 0;
  n = fm_check(&bf->f, addproblem, p, MAXPROBLEMS);
  if (LOSTMAP(bf)) notopen(L, bf);
  if (n == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_createtable(L, p->n + 1, 0);
  for (i = 0; i < p->n; i++) {
    lua_pushstring(L, p->line[i]);
    lua_rawseti(L, -2, i + 1);
  }
  if (n > MAXPROBLEMS) {
    lua_pushfstring(L, "... and %I more", (lua_Integer)(n - MAXPROBLEMS));
    lua_rawseti(L, -2, MAXPROBLEMS + 1);
  }
  luaL_pushfail(L);
  lua_insert(L, -2);
  return 2;
}

static int bf_live_views (lua_State *L) {
  return listviews(L, checkbf(L, 1));
}

/* The free runs, gathered in C while the list is walked (as for check). */
typedef struct Runs {
  uint64_t n, max;
  uint64_t *r;     /* offset, blocks, offset, blocks, ... */
} Runs;

static int addrun (void *ud, uint64_t off, uint64_t blocks) {
  Runs *rs = (Runs *)ud;
  if (rs->n >= rs->max) return 1;
  rs->r[2 * rs->n] = off;
  rs->r[2 * rs->n + 1] = blocks;
  rs->n++;
  return 0;
}

/* free_list() → { {offset=, blocks=}, ... } in list order */
static int bf_free_list (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  Runs rs;
  uint64_t i;
  int rc;
  do {   /* room for every run; again if a finalizer added some */
    lua_settop(L, 1);
    rs.max = bf->f.h.free_runs;
    rs.r = (uint64_t *)lua_newuserdatauv(L, (size_t)rs.max * 16, 0);
    checkbf(L, 1);
  } while (bf->f.h.free_runs > rs.max);
  rs.n = 0;
  rc = fm_free_runs(&bf->f, addrun, &rs);
  if (rc != 0) return corefail(L, bf, 0);
  if (LOSTMAP(bf)) notopen(L, bf);
  lua_createtable(L, (int)rs.n, 0);
  for (i = 0; i < rs.n; i++) {
    lua_createtable(L, 0, 2);
    setint(L, "offset", rs.r[2 * i]);
    setint(L, "blocks", rs.r[2 * i + 1]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* is_free(offset): whether the block there is on the free list's marks */
static int bf_is_free (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  uint64_t off = checkoffset(L, 2), bs = bf->f.h.block_size;
  luaL_argcheck(L, off % bs == 0, 2,
                lua_pushfstring(L, "offset %I is not block-aligned",
                                (lua_Integer)off));
  lua_pushboolean(L, off >= bs && off < bf->f.h.top &&
                     fm_is_free(&bf->f, off));
  if (LOSTMAP(bf)) notopen(L, bf);
  return 1;
}


/* ---------------------------------------------------------------------- */
/* The module                                                              */
/* ---------------------------------------------------------------------- */

static const luaL_Reg view_methods[] = {
  {"release", view_release}, {"retarget", view_retarget},
  {"offset", view_offset},
  {"blocks", view_blocks}, {"live", view_live},
  {"blockfile", view_blockfile},
  {"read", view_read}, {"write", view_write}, {"fill", view_fill},
  {"compare", view_compare}, {"copy", view_copy}, {"hex", view_hex},
  {"pack", view_pack}, {"unpack", view_unpack}, {"bsearch", view_bsearch},
  {"bsearch_slots", view_bsearch_slots},
  {"read_entries", view_read_entries}, {"search", view_search},
  {"remove_key", view_remove_key},
  {"insert_key", view_insert_key},
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

static const luaL_Reg view_meta[] = {
  {"__len", view_len}, {"__tostring", view_tostring},
  {"__gc", view_gc}, {"__close", view_gc},
  {NULL, NULL}
};

static const luaL_Reg bf_methods[] = {
  {"allocate", bf_allocate}, {"allocate_blocks", bf_allocate_blocks},
  {"free", bf_free}, {"get", bf_get}, {"release", bf_release},
  {"with", bf_with}, {"control_data", bf_control_data},
  {"set_control_data", bf_set_control_data},
  {"set_control_data_nosync", bf_set_control_data_nosync},
  {"block_size", bf_block_size}, {"size", bf_size}, {"path", bf_path},
  {"readonly", bf_readonly},
  {"address", bf_address}, {"valid", bf_valid}, {"sync", bf_sync},
  {"flush", bf_flush}, {"close", bf_close}, {"remove", bf_remove},
  {"stats", bf_stats}, {"check", bf_check}, {"live_views", bf_live_views},
  {"free_list", bf_free_list}, {"is_free", bf_is_free},
  {"entry_iterator", bf_entry_iterator}, {"searcher", bf_searcher},
  {"begin", bf_begin}, {"commit", bf_commit}, {"rollback", bf_rollback},
  {"in_transaction", bf_in_transaction}, {"transaction", bf_transaction},
  {"fail_after", bf_fail_after}, {"on_rollback", bf_on_rollback},
  {NULL, NULL}
};

static const luaL_Reg bf_meta[] = {
  {"__tostring", bf_tostring}, {"__gc", bf_gc}, {"__close", bf_tbclose},
  {NULL, NULL}
};

static const luaL_Reg mod_funcs[] = {
  {"create", mod_create}, {"open", mod_open}, {"anonymous", mod_anonymous},
  {"memclr", mod_memclr}, {"clock", mod_clock},
  {"batch_iterator", mod_batch_iterator},
  {NULL, NULL}
};

/* Registers funcs into the table at the top, each closing over the two
** metatables, which sit at mt_view and mt_bf. */
static void setfuncs (lua_State *L, const luaL_Reg *funcs, int mt_view,
                      int mt_bf) {
  lua_pushvalue(L, mt_view);
  lua_pushvalue(L, mt_bf);
  luaL_setfuncs(L, funcs, 2);
}

/* The structures written in Lua, reachable as fields of the module so
** that fmap.audit(bf) and fmap.bptree.new(...) work: each is required on
** first use ("fmap.NAME", found on package.path) and then kept. */
static const char *const submodules[] = {
  "audit", "blockmap", "bptree", "classify", "codec", "dot", "mmlist",
  "varchar", "workload", NULL
};

static int mod_index (lua_State *L) {
  const char *k = lua_tostring(L, 2);
  int i;
  luaL_checktype(L, 1, LUA_TTABLE);   /* it may be called by hand */
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  for (i = 0; submodules[i] != NULL; i++) {
    if (strcmp(k, submodules[i]) == 0) {
      lua_getglobal(L, "require");
      lua_pushfstring(L, "fmap.%s", k);
      lua_call(L, 1, 1);
      lua_pushvalue(L, 2);
      lua_pushvalue(L, -2);
      lua_rawset(L, 1);
      return 1;
    }
  }
  return 0;
}

/* The metatables are the engine's own: a view whose metatable lost its
** __gc would be freed while the BlockFile still lists it. getmetatable
** answers a proxy instead (the metatable's __metatable), which reads
** through to the metatable, iterates it, and refuses writes; the proxy's
** own metatable is hidden likewise. The method table stays reachable as
** getmetatable(v).__index, for scripts that add methods of their own. */
static int proxy_newindex (lua_State *L) {
  return luaL_error(L, "the metatable of %s is read-only",
                    lua_tostring(L, lua_upvalueindex(1)));
}

static int proxy_pairs (lua_State *L) {
  lua_getglobal(L, "next");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushnil(L);
  return 3;
}

static void protect (lua_State *L, int mt, const char *name) {
  lua_newtable(L);                             /* the proxy */
  lua_createtable(L, 0, 4);                    /* its metatable */
  lua_pushvalue(L, mt);
  lua_setfield(L, -2, "__index");
  lua_pushstring(L, name);
  lua_pushcclosure(L, proxy_newindex, 1);
  lua_setfield(L, -2, "__newindex");
  lua_pushvalue(L, mt);
  lua_pushcclosure(L, proxy_pairs, 1);
  lua_setfield(L, -2, "__pairs");
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_setfield(L, mt, "__metatable");
}

LUAMOD_API int luaopen_fmap (lua_State *L) {
  int vmt, bmt;
  pthread_once(&busonce, installbus);
  luaL_newmetatable(L, FMAP_VIEW);
  vmt = lua_gettop(L);
  luaL_newmetatable(L, FMAP_BF);
  bmt = lua_gettop(L);
  lua_pushvalue(L, vmt);
  setfuncs(L, view_meta, vmt, bmt);
  lua_newtable(L);
  setfuncs(L, view_methods, vmt, bmt);
  lua_setfield(L, vmt, "__index");
  lua_pop(L, 1);
  lua_pushvalue(L, bmt);
  setfuncs(L, bf_meta, vmt, bmt);
  lua_newtable(L);
  setfuncs(L, bf_methods, vmt, bmt);
  lua_setfield(L, bmt, "__index");
  lua_pop(L, 1);
  protect(L, vmt, FMAP_VIEW);
  protect(L, bmt, FMAP_BF);
  lua_newtable(L);
  setfuncs(L, mod_funcs, vmt, bmt);
  lua_pushinteger(L, FM_BLOCKSIZE);
  lua_setfield(L, -2, "BLOCKSIZE");
  lua_pushliteral(L, FMAP_VERSION);
  lua_setfield(L, -2, "VERSION");
  lua_pushinteger(L, FM_VERSION);
  lua_setfield(L, -2, "FORMAT_VERSION");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, mod_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  return 1;
}
