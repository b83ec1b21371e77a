/*
** binding.h: what the files of the Lua binding share, and internal to it:
** the BlockFile and View userdata, their states, and the checks every
** method starts with. Neither the host nor a user of the module includes
** it; lfmap.h is the binding's interface.
**
** The files: lfmap.c (the module, the metatables, the BlockFile methods),
** view.c (views and their byte methods), node.c (node primitives and
** searchers), iter.c (iterators), pack.c (view:pack and view:unpack),
** fault.c (map faults: the SIGBUS handler and the list of open
** BlockFiles), txn.c
** (transactions, and what every store does first), profile.c (the
** counts of fmap.profile, which the hot paths call only when it is on).
**
** The helpers of the hot paths are static inline here, so that a fixed-
** width getter or a searcher compiles into one unit with all it calls;
** the rest is declared here, defined once, and kept out of fmap.so's
** exports (LUAI_FUNC, as Lua marks its own internal functions), where
** luaopen_fmap is the only name. No Lua-callable function is declared
** here: each file hands its methods to luaopen_fmap in a luaL_Reg array.
*/
#ifndef FMAP_BINDING_H
#define FMAP_BINDING_H

#include <stdint.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "fm.h"
#include "lfmap.h"

typedef struct View View;
typedef struct BlockFile BlockFile;
typedef struct Prof Prof;

/* The first field of each of the module's userdata: the address of one of
** these. A method checks it, with the userdata's size, instead of fetching
** and comparing the metatable, which cost a third of a u32 call (perf).
** Only C code writes a userdata's bytes, and no C code but the binding's
** stores these addresses, so a Lua script cannot forge a view. Defined
** once (lfmap.c): a tag is known by its address. */
LUAI_DDEC(const char VIEW_TAG[]);
LUAI_DDEC(const char BF_TAG[]);

struct BlockFile {
  const char *tag;   /* BF_TAG */
  Prof *prof;        /* fmap.profile's counts (profile.c), NULL when off:
                     ** beside the tag, in the cache line every method
                     ** reads */
  fm_file f;
  int open;          /* BF_OPEN, BF_CLOSED, BF_LOST (written by onbus) or
                     ** BF_OPENING */
  View *views;       /* live views, newest first */
  lua_Integer nviews;
  uint64_t serial;   /* its number among the BlockFiles made, from 1 */
  uint64_t trap;     /* stores left before fail_after's trap, 0: none */
  int trap_kill;     /* the trap kills the process, rather than raise */
  struct Rec *rec;   /* bf:record's recording (txn.c), NULL when off */
  uint64_t begins;   /* transactions begun (txn.c) */
  uint64_t txbegun;  /* begins when bf:transaction began its own */
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

/* Upvalues shared by every function of the module: the metatables. */
#define UV_VIEWMT  lua_upvalueindex(1)
#define UV_BFMT    lua_upvalueindex(2)


/* ---------------------------------------------------------------------- */
/* Failures: each raises (or pushes nil, message, errno) and is cold       */
/* ---------------------------------------------------------------------- */

/* lfmap.c */
LUAI_FUNC int mtfail (lua_State *L);
LUAI_FUNC int typefail (lua_State *L, int i, const char *tname,
                        const char *mtname);
LUAI_FUNC int notopen (lua_State *L, BlockFile *bf);
LUAI_FUNC void pushcallerwhere (lua_State *L);
LUAI_FUNC int corefail (lua_State *L, BlockFile *bf, int arg);
LUAI_FUNC int pushfail (lua_State *L, BlockFile *bf, int rc,
                        const char *path);

/* view.c */
LUAI_DDEC(const char *const deadwhy[]);
LUAI_FUNC const char *pushviewinfo (lua_State *L, const View *v);
LUAI_FUNC int deadview (lua_State *L, const View *v, const char *verb);

/* fault.c */
LUAI_FUNC int lostfail (lua_State *L, BlockFile *bf);


/* ---------------------------------------------------------------------- */
/* Results as tables                                                       */
/* ---------------------------------------------------------------------- */

/* lfmap.c: t[k] = v, an integer, for the table t on top of the stack. */
LUAI_FUNC void setint (lua_State *L, const char *k, uint64_t v);


/* ---------------------------------------------------------------------- */
/* Views and BlockFiles across files                                       */
/* ---------------------------------------------------------------------- */

/* view.c: a live view leaves bf->views with the state given; a new live
** view of [off, off + len) of the BlockFile at bfi is pushed. */
LUAI_FUNC void unlink_view (View *v, int state);
LUAI_FUNC View *newview (lua_State *L, int bfi, BlockFile *bf, uint64_t off,
                         uint64_t len);

/* fault.c: the list of open BlockFiles the SIGBUS handler searches, and
** the handler itself, installed once per process by installbus. */
LUAI_FUNC void mapped (BlockFile *bf, int state);
LUAI_FUNC void unmapped (BlockFile *bf);
LUAI_FUNC int opened (BlockFile *bf, int rc);
LUAI_FUNC void retire (BlockFile *bf);
LUAI_FUNC void installbus (void);

/* txn.c: a store's bookkeeping (see touch, below) and fail_after's trap,
** for the stores that are not through a view (allocate, free, control
** data). */
LUAI_FUNC void touchslow (lua_State *L, View *v, uint64_t pos,
                          uint64_t len, uint64_t bytes);
LUAI_FUNC void trapped (lua_State *L, BlockFile *bf);
/* bf:record's hook, while bf->rec is set: before each store (kind
** "write"; off and len in the file), each allocate, free or change of
** the control data (kind NULL) and each event that ends or starts a
** transaction ("begin", "flush"...). It never raises but on a store made
** by the recorder itself. */
LUAI_FUNC void recorded (lua_State *L, BlockFile *bf, const char *kind,
                         uint64_t off, uint64_t len);
#define COUNTSTORE(L, bf) do { \
    if ((bf)->trap != 0 && --(bf)->trap == 0) trapped(L, bf); \
    if ((bf)->rec != NULL) recorded(L, bf, NULL, 0, 0); \
  } while (0)

/* profile.c: the counts of fmap.profile, kept while bf->prof is set.
** The hot paths test that pointer and call these only when it is: a read
** or a store of len bytes from file offset off, counted as bytes (what
** the call returned, compared or stored); the blocks of [off, off + len)
** are the ones it touched. */
LUAI_FUNC void profread (BlockFile *bf, uint64_t off, uint64_t len,
                         uint64_t bytes);
LUAI_FUNC void profwrite (BlockFile *bf, uint64_t off, uint64_t len,
                          uint64_t bytes);
enum { PROF_ALLOC, PROF_FREE, PROF_VIEW, PROF_DESCENT };
LUAI_FUNC void profcount (BlockFile *bf, int what);
LUAI_FUNC void profclosed (BlockFile *bf);      /* before bf closes */
LUAI_FUNC void profopened (lua_State *L);       /* a new BlockFile on top */
LUAI_DDEC(const luaL_Reg profile_mod_funcs[]);   /* fmap._profile */
#define PROFILING(bf)  luai_unlikely((bf)->prof != NULL)
/* A read of len bytes at pos of the view v. */
#define PROFREAD(v, pos, len) do { \
    if (PROFILING((v)->bf)) \
      profread((v)->bf, (v)->off + (uint64_t)(pos), (uint64_t)(len), \
               (uint64_t)(len)); \
  } while (0)
#define PROFCOUNT(bf, what) do { \
    if (PROFILING(bf)) profcount(bf, what); \
  } while (0)

/* The methods each file registers, closed over the two metatables. */
LUAI_DDEC(const luaL_Reg view_methods[]);       /* view.c */
LUAI_DDEC(const luaL_Reg view_meta[]);
LUAI_DDEC(const luaL_Reg node_view_methods[]);  /* node.c */
LUAI_DDEC(const luaL_Reg node_bf_methods[]);
LUAI_DDEC(const luaL_Reg iter_bf_methods[]);  /* iter.c */
LUAI_DDEC(const luaL_Reg iter_mod_funcs[]);
LUAI_DDEC(const luaL_Reg pack_view_methods[]);  /* pack.c */
LUAI_DDEC(const luaL_Reg txn_bf_methods[]);     /* txn.c */


/* ---------------------------------------------------------------------- */
/* The checks of every method: inline, they are the hot path               */
/* ---------------------------------------------------------------------- */

/* The size test comes first: a light userdata's length is 0, and a
** smaller userdata has no tag field to read. */
static inline BlockFile *tobf (lua_State *L, int i) {
  BlockFile *bf = (BlockFile *)lua_touserdata(L, i);
  if (bf != NULL && lua_rawlen(L, i) == sizeof(BlockFile) &&
      bf->tag == BF_TAG)
    return bf;
  return NULL;
}

static inline View *toview (lua_State *L, int i) {
  View *v = (View *)lua_touserdata(L, i);
  if (v != NULL && lua_rawlen(L, i) == sizeof(View) && v->tag == VIEW_TAG)
    return v;
  return NULL;
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

static inline BlockFile *checkbf (lua_State *L, int i) {
  BlockFile *bf = tobf(L, i);
  if (bf == NULL) typefail(L, i, "BlockFile", FMAP_BF);
  if (bf->open != BF_OPEN) notopen(L, bf);
  return bf;
}

static inline View *checkview (lua_State *L, int i) {
  View *v = toview(L, i);
  if (v == NULL) typefail(L, i, "view", FMAP_VIEW);
  if (v->state != LIVE) deadview(L, v, "use");
  return v;
}

/* Every store into the map goes through here: the one place to add what
** each write must do. */
static inline View *checkwritable (lua_State *L, int i) {
  View *v = checkview(L, i);
  if (v->bf->f.readonly)
    luaL_error(L, "attempt to write to a view of a read-only BlockFile");
  return v;
}

/* Before a store into [pos, pos + len) of v, checked to lie in it: the
** transaction layer learns of it (fm_touch), fail_after counts it, and so
** does fmap.profile, as bytes stored (the store's own, when it announces
** more than it changes). A view whose blocks are all known to be touched
** since the last commit, begin or rollback skips the call: one compare on
** the hot path. */
static inline void touchn (lua_State *L, View *v, uint64_t pos,
                           uint64_t len, uint64_t bytes) {
  BlockFile *bf = v->bf;
  if (v->wgen != bf->f.gen || bf->trap != 0 || PROFILING(bf))
    touchslow(L, v, pos, len, bytes);
}

static inline void touch (lua_State *L, View *v, uint64_t pos,
                          uint64_t len) {
  touchn(L, v, pos, len, len);
}

static inline unsigned char *vptr (const View *v) {
  return v->bf->f.map + v->off;
}

/* "s" unless n is 1: "1 byte", "2 bytes". */
static inline const char *plural (uint64_t n) { return n == 1 ? "" : "s"; }

/* Checks that [pos, pos + len) lies in the view; both are arguments. */
static inline void checkspan (lua_State *L, const View *v, int arg,
                              lua_Integer pos, lua_Integer len) {
  if (pos < 0 || (uint64_t)pos > v->len)
    luaL_argerror(L, arg, lua_pushfstring(L, "position %I is outside the "
                  "view (%I bytes)", pos, (lua_Integer)v->len));
  if (len < 0 || (uint64_t)len > v->len - (uint64_t)pos)
    luaL_argerror(L, arg, lua_pushfstring(L, "position %I + length %I is "
                  "outside the view (%I bytes)", pos, len,
                  (lua_Integer)v->len));
}

/* luaL_checkinteger with its common case inline: an integer argument
** costs one API call (the hot primitives take a dozen). Anything else goes
** to luaL_checkinteger, which converts or raises as ever. */
static inline lua_Integer intarg (lua_State *L, int i) {
  int isint;
  lua_Integer n = lua_tointegerx(L, i, &isint);
  return isint ? n : luaL_checkinteger(L, i);
}

/* The file offset argument: a non-negative integer. */
static inline uint64_t checkoffset (lua_State *L, int i) {
  lua_Integer off = intarg(L, i);
  if (off < 0)
    luaL_argerror(L, i, lua_pushfstring(L, "offset %I is negative", off));
  return (uint64_t)off;
}


/* ---------------------------------------------------------------------- */
/* Bytes of the map                                                        */
/* ---------------------------------------------------------------------- */

/* Asks for the cache lines of a node about to be searched, all at once.
** A binary search's probes depend on each other, so in a node that is
** not in the cache each one waited for memory in turn: in a 4 KiB leaf,
** about seven misses one after another. Fetched together, they overlap. */
static inline void prefetch_run (const unsigned char *p, uint64_t n) {
  const unsigned char *end = p + n;
  if (n <= 256) return;
  for (p = (const unsigned char *)((uintptr_t)p & ~(uintptr_t)63); p < end;
       p += 64)
    __builtin_prefetch(p);
}

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

#endif
