/*
** profile.c: the counts behind fmap.profile (lua/fmap/profile.lua): for a
** BlockFile, the blocks each operation reads and writes, the bytes the
** calls read and store, allocations, frees, views and searcher descents,
** and the trace of blocks accessed that the miss-ratio curve is computed
** from (engine/core/mrc.c). Off by default: bf->prof is NULL, and each
** hot path of the binding tests it once (PROFILING in binding.h) before
** it calls profread, profwrite or profcount here.
**
** The model is the disk-access model's: an operation (marked by the
** structures, or by the user through fmap.profile; it lasts until the
** next begins or it is finished) reads and writes a set of blocks; the counts are of distinct blocks per operation, and
** the trace holds each operation's distinct blocks in the order it first
** touched them, reads and stores alike, so an LRU cache of any size sees
** an operation fetch each block it needs once. Accesses between two
** operations form a part of their own (a gap), counted apart.
**
** The state is a userdata of its own (FMAP_PROF), so that it outlives
** the BlockFile: profclosed detaches it when the file closes, and the
** report is made from it later. No block is read or written here; the
** map is never touched.
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "binding.h"
#include "mrc.h"

#define FMAP_PROF  "fmap.profile.state"   /* metatable name */

/* What an operation counts besides its blocks. */
typedef struct Counts {
  uint64_t rbytes, wbytes;   /* bytes read and stored through the API */
  uint64_t allocs, frees;    /* allocate/allocate_blocks and free calls */
  uint64_t views;            /* views acquired (get, with) or retargeted */
  uint64_t descents;         /* searcher calls */
} Counts;

#define NCOUNTS  (sizeof(Counts) / sizeof(uint64_t))

/* Parts (operations, or gaps) by how many distinct blocks they touched:
** n[k] parts touched k blocks. */
typedef struct Hist {
  uint64_t *n;
  uint64_t cap;
} Hist;

/* The figures of a group: one kind of operation in one phase, or one
** phase's gaps. Its number is the Lua side's. */
typedef struct Group {
  uint64_t parts;            /* operations (or gaps) */
  uint64_t reads, writes;    /* distinct blocks, summed over the parts */
  uint64_t ubytes;           /* the user's bytes, as the marks said */
  Counts c;
  Hist rh, wh;               /* parts by distinct blocks read, written */
} Group;

/* The end of a part in the trace, and its group: the trace's accesses
** from the previous part's end belong to it. */
typedef struct Seg {
  uint64_t end;
  uint32_t group;
} Seg;

struct Prof {
  BlockFile *bf;       /* profiled; NULL once it closed or was stopped */
  uint64_t bs;         /* its block size */
  uint64_t blocks;     /* its allocated blocks when it was detached */
  int inop;            /* an operation is open (else the part is a gap) */
  int failed;          /* out of memory, or a block past 2^32: counting
                       ** stopped, and report says so */
  uint32_t group;      /* the current part's group */
  uint32_t gapgroup;   /* the group of the gaps to come */
  uint32_t epoch;      /* the current part's number, from 1 */
  uint64_t nr, nw;     /* distinct blocks it read, wrote */
  uint64_t ubytes;     /* the user's bytes of the current operation */
  Counts c;            /* totals */
  Counts at;           /* the totals when the current part began */
  uint32_t *rmark, *wmark, *amark;   /* per block: the epoch of the last
                       ** part that read, wrote, accessed it; 0: none */
  uint64_t nmark;
  uint32_t *trace;     /* blocks, in each part's first-touch order */
  uint64_t ntrace, captrace;
  Seg *seg;
  uint64_t nseg, capseg;
  Group *groups;       /* by number */
  uint64_t ngroups;
};


/* ---------------------------------------------------------------------- */
/* Counting: plain C, called from the hot paths while bf->prof is set      */
/* ---------------------------------------------------------------------- */

/* Grows the array at *a of *cap elements of size sz to hold index i,
** zeroing the new ones. Returns 0, or -1 when out of memory. */
static int grow (void **a, uint64_t *cap, uint64_t i, size_t sz) {
  uint64_t n = *cap ? *cap : 64;
  void *p;
  while (n <= i) n *= 2;
  if (n > SIZE_MAX / sz) return -1;
  p = realloc(*a, (size_t)(n * sz));
  if (p == NULL) return -1;
  memset((char *)p + *cap * sz, 0, (size_t)((n - *cap) * sz));
  *a = p;
  *cap = n;
  return 0;
}

/* Makes room for block b in the three mark arrays. */
static int growmarks (Prof *p, uint64_t b) {
  uint64_t n = p->nmark, n2 = p->nmark, n3 = p->nmark;
  if (b >= UINT32_MAX) return -1;      /* the trace holds 32-bit blocks */
  if (grow((void **)&p->rmark, &n, b, sizeof(uint32_t)) != 0 ||
      grow((void **)&p->wmark, &n2, b, sizeof(uint32_t)) != 0 ||
      grow((void **)&p->amark, &n3, b, sizeof(uint32_t)) != 0) {
    /* the arrays that grew keep their size: use the smallest */
    p->nmark = n < n2 ? (n < n3 ? n : n3) : (n2 < n3 ? n2 : n3);
    return -1;
  }
  p->nmark = n;
  return 0;
}

/* Block b is accessed by the current part: the trace gets it once. */
static void access1 (Prof *p, uint64_t b) {
  if (p->amark[b] == p->epoch) return;
  p->amark[b] = p->epoch;
  if (p->ntrace == p->captrace &&
      grow((void **)&p->trace, &p->captrace, p->ntrace, sizeof(uint32_t))
      != 0) {
    p->failed = 1;
    return;
  }
  p->trace[p->ntrace++] = (uint32_t)b;
}

/* The blocks of [off, off + len), read (w 0) or written (w 1). */
static void blocks (Prof *p, uint64_t off, uint64_t len, int w) {
  uint64_t b, e;
  if (len == 0 || p->failed) return;
  b = off / p->bs;
  e = (off + (len - 1)) / p->bs;
  for (; b <= e; b++) {
    uint32_t *mark;
    if (b >= p->nmark && growmarks(p, b) != 0) {
      p->failed = 1;
      return;
    }
    mark = w ? p->wmark : p->rmark;
    if (mark[b] != p->epoch) {
      mark[b] = p->epoch;
      if (w) p->nw++;
      else p->nr++;
      access1(p, b);
    }
  }
}

void profread (BlockFile *bf, uint64_t off, uint64_t len, uint64_t bytes) {
  Prof *p = bf->prof;
  p->c.rbytes += bytes;
  blocks(p, off, len, 0);
}

void profwrite (BlockFile *bf, uint64_t off, uint64_t len, uint64_t bytes) {
  Prof *p = bf->prof;
  p->c.wbytes += bytes;
  blocks(p, off, len, 1);
}

void profcount (BlockFile *bf, int what) {
  Prof *p = bf->prof;
  switch (what) {
    case PROF_ALLOC: p->c.allocs++; break;
    case PROF_FREE: p->c.frees++; break;
    case PROF_VIEW: p->c.views++; break;
    default: p->c.descents++; break;
  }
}

/* Adds a part that touched k blocks to h. */
static int histadd (Hist *h, uint64_t k) {
  if (k >= h->cap && grow((void **)&h->n, &h->cap, k, sizeof(uint64_t)))
    return -1;
  h->n[k]++;
  return 0;
}

/* The group numbered g, made if need be; NULL when out of memory. */
static Group *groupof (Prof *p, uint32_t g) {
  if (g >= p->ngroups &&
      grow((void **)&p->groups, &p->ngroups, g, sizeof(Group)) != 0)
    return NULL;
  return &p->groups[g];
}

/* Ends the current part: its figures go to its group, its accesses to
** the trace's segments, and the next part starts with a new epoch. A
** part that touched nothing of this file (no access, no count: an
** operation on another file) leaves nothing: a file's figures are those
** of the operations that used it. */
static void endpart (Prof *p) {
  uint64_t *now = (uint64_t *)&p->c, *then = (uint64_t *)&p->at;
  size_t i;
  int moved = 0;
  for (i = 0; i < NCOUNTS; i++) moved |= now[i] != then[i];
  if (moved || p->nr > 0 || p->nw > 0) {
    Group *g = groupof(p, p->group);
    uint64_t start = p->nseg > 0 ? p->seg[p->nseg - 1].end : 0;
    if (g == NULL || histadd(&g->rh, p->nr) != 0 ||
        histadd(&g->wh, p->nw) != 0) {
      p->failed = 1;
      return;
    }
    g->parts++;
    g->reads += p->nr;
    g->writes += p->nw;
    g->ubytes += p->ubytes;
    for (i = 0; i < NCOUNTS; i++)
      ((uint64_t *)&g->c)[i] += now[i] - then[i];
    if (p->ntrace > start) {
      if (p->nseg == p->capseg &&
          grow((void **)&p->seg, &p->capseg, p->nseg, sizeof(Seg)) != 0) {
        p->failed = 1;
        return;
      }
      p->seg[p->nseg].end = p->ntrace;
      p->seg[p->nseg].group = p->group;
      p->nseg++;
    }
  }
  p->at = p->c;
  p->nr = p->nw = 0;
  p->ubytes = 0;
  if (p->epoch == UINT32_MAX) {   /* the numbers wrap: every mark is old */
    uint64_t b;
    for (b = 0; b < p->nmark; b++) {
      if (p->rmark[b]) p->rmark[b] = 1;
      if (p->wmark[b]) p->wmark[b] = 1;
      if (p->amark[b]) p->amark[b] = 1;
    }
    p->epoch = 1;
  }
  p->epoch++;
}

/* Detaches p from its BlockFile, noting the file's size. */
static void detach (Prof *p) {
  BlockFile *bf = p->bf;
  if (bf == NULL) return;
  p->blocks = bf->f.h.top / p->bs;
  bf->prof = NULL;
  p->bf = NULL;
}

void profclosed (BlockFile *bf) {
  detach(bf->prof);
}


/* ---------------------------------------------------------------------- */
/* The state, a userdata: fmap._profile.start(bf)                         */
/* ---------------------------------------------------------------------- */

static Prof *checkprof (lua_State *L) {
  return (Prof *)luaL_checkudata(L, 1, FMAP_PROF);
}

static int prof_gc (lua_State *L) {
  Prof *p = checkprof(L);
  size_t i;
  detach(p);
  free(p->rmark);
  free(p->wmark);
  free(p->amark);
  free(p->trace);
  free(p->seg);
  for (i = 0; i < p->ngroups; i++) {
    free(p->groups[i].rh.n);
    free(p->groups[i].wh.n);
  }
  free(p->groups);
  memset(p, 0, sizeof *p);
  return 0;
}

/* The group number at i: an integer 0 to 2^32 - 1. */
static uint32_t checkgroup (lua_State *L, int i) {
  lua_Integer g = luaL_checkinteger(L, i);
  luaL_argcheck(L, g >= 0 && g <= (lua_Integer)UINT32_MAX, i,
                "group out of range");
  return (uint32_t)g;
}

/* state:begin(group [, user_bytes]): an operation of group starts; the
** open operation, or the gap, ends. */
static int prof_begin (lua_State *L) {
  Prof *p = checkprof(L);
  uint32_t g = checkgroup(L, 2);
  lua_Integer ub = luaL_optinteger(L, 3, 0);
  endpart(p);
  p->inop = 1;
  p->group = g;
  p->ubytes = ub > 0 ? (uint64_t)ub : 0;
  return 0;
}

/* state:finish(): the open operation ends; a gap starts. Without one (a
** file profiled from the middle of an operation), nothing happens. */
static int prof_finish (lua_State *L) {
  Prof *p = checkprof(L);
  if (!p->inop) return 0;
  endpart(p);
  p->inop = 0;
  p->group = p->gapgroup;
  return 0;
}

/* state:stored(bytes): the open operation stored bytes more of the
** user's (no operation: nothing). */
static int prof_stored (lua_State *L) {
  Prof *p = checkprof(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  if (p->inop && n > 0) p->ubytes += (uint64_t)n;
  return 0;
}

/* state:gap(group): the gaps from now on are group's (a new phase). */
static int prof_gap (lua_State *L) {
  Prof *p = checkprof(L);
  uint32_t g = checkgroup(L, 2);
  if (!p->inop) {
    endpart(p);
    p->group = g;
  }
  p->gapgroup = g;
  return 0;
}

/* state:stop(): counting ends (the BlockFile is left alone from now). */
static int prof_stop (lua_State *L) {
  Prof *p = checkprof(L);
  if (p->inop) {
    endpart(p);
    p->inop = 0;
    p->group = p->gapgroup;
  }
  else endpart(p);
  detach(p);
  return 0;
}

static void setcounts (lua_State *L, const Counts *c) {
  setint(L, "bytes_read", c->rbytes);
  setint(L, "bytes_written", c->wbytes);
  setint(L, "allocations", c->allocs);
  setint(L, "frees", c->frees);
  setint(L, "views", c->views);
  setint(L, "descents", c->descents);
}

/* A histogram as a list: t[k + 1] parts touched k blocks. */
static void sethist (lua_State *L, const char *k, const Hist *h) {
  uint64_t i, n = h->cap;
  while (n > 0 && h->n[n - 1] == 0) n--;
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_pushinteger(L, (lua_Integer)h->n[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, k);
}

static uint64_t countmarks (const uint32_t *m, uint64_t n) {
  uint64_t i, k = 0;
  for (i = 0; i < n; i++) k += m[i] != 0;
  return k;
}

/* state:report() -> table: the figures so far (the current part is
** ended first), and for each group its stack distances. See
** lua/fmap/profile.lua for what each field means. Returns nil, message
** when counting stopped (out of memory) or the distances cannot be
** computed. */
static int prof_report (lua_State *L) {
  Prof *p = checkprof(L);
  uint32_t *dist = NULL;
  uint64_t **dh = NULL, *dcap = NULL, *cold = NULL, i, s;
  int rc;
  if (p->inop) {   /* the open operation counts as it is so far */
    endpart(p);
    p->inop = 0;
    p->group = p->gapgroup;
  }
  else endpart(p);
  if (p->failed) {
    luaL_pushfail(L);
    lua_pushliteral(L, "fmap.profile: out of memory for the counts, or a "
                    "block number past 2^32; counting stopped");
    return 2;
  }
  /* Per group: distances d = 1.. as counts dh[g][d], and the cold
  ** misses. Allocated as userdata, so that an error frees them. */
  dist = (uint32_t *)lua_newuserdatauv(L, (size_t)(p->ntrace ? p->ntrace
                                       : 1) * sizeof *dist, 0);
  rc = fm_stack_distances(p->trace, (size_t)p->ntrace, dist);
  if (rc != 0) {
    luaL_pushfail(L);
    lua_pushfstring(L, "fmap.profile: %s", rc == ENOMEM ? "out of memory "
                    "for the stack distances" : "trace too long");
    return 2;
  }
  dcap = (uint64_t *)lua_newuserdatauv(L, (size_t)(p->ngroups + 1) *
                                       3 * sizeof(uint64_t), 0);
  memset(dcap, 0, (size_t)(p->ngroups + 1) * 3 * sizeof(uint64_t));
  cold = dcap + p->ngroups + 1;
  dh = (uint64_t **)lua_newuserdatauv(L, (size_t)(p->ngroups + 1) *
                                      sizeof *dh, 0);
  memset(dh, 0, (size_t)(p->ngroups + 1) * sizeof *dh);
  for (s = 0, i = 0; s < p->nseg; s++) {
    uint32_t g = p->seg[s].group;
    for (; i < p->seg[s].end; i++) {
      uint32_t d = dist[i];
      if (d == 0) { cold[g]++; continue; }
      if (d >= dcap[g] && grow((void **)&dh[g], &dcap[g], d,
                               sizeof(uint64_t)) != 0) {
        uint64_t k;
        for (k = 0; k < p->ngroups; k++) free(dh[k]);
        luaL_pushfail(L);
        lua_pushliteral(L, "fmap.profile: out of memory for the curves");
        return 2;
      }
      dh[g][d]++;
    }
  }
  lua_createtable(L, 0, 16);
  setint(L, "block_size", p->bs);
  setint(L, "blocks", p->bf != NULL ? p->bf->f.h.top / p->bs : p->blocks);
  setint(L, "accesses", p->ntrace);
  setint(L, "distinct_read", countmarks(p->rmark, p->nmark));
  setint(L, "distinct_written", countmarks(p->wmark, p->nmark));
  setint(L, "distinct", countmarks(p->amark, p->nmark));
  setcounts(L, &p->c);
  lua_createtable(L, 0, 0);
  for (i = 0; i < p->ngroups; i++) {
    Group *g = &p->groups[i];
    uint64_t d, n;
    if (g->parts == 0 && cold[i] == 0 && dcap[i] == 0) continue;
    lua_createtable(L, 0, 16);
    setint(L, "parts", g->parts);
    setint(L, "reads", g->reads);
    setint(L, "writes", g->writes);
    setint(L, "user_bytes", g->ubytes);
    setcounts(L, &g->c);
    sethist(L, "read_hist", &g->rh);
    sethist(L, "write_hist", &g->wh);
    setint(L, "cold", cold[i]);
    n = dcap[i];
    while (n > 0 && dh[i][n - 1] == 0) n--;
    lua_createtable(L, (int)n, 0);   /* dist[d]: accesses at distance d */
    for (d = 1; d < n; d++) {
      lua_pushinteger(L, (lua_Integer)dh[i][d]);
      lua_rawseti(L, -2, (lua_Integer)d);
    }
    lua_setfield(L, -2, "dist");
    lua_rawseti(L, -2, (lua_Integer)i);
  }
  lua_setfield(L, -2, "groups");
  for (i = 0; i < p->ngroups; i++) free(dh[i]);
  return 1;
}

static int prof_tostring (lua_State *L) {
  Prof *p = checkprof(L);
  lua_pushfstring(L, "fmap.profile state (%s, %I accesses)",
                  p->bf ? "counting" : "stopped", (lua_Integer)p->ntrace);
  return 1;
}

static const luaL_Reg prof_methods[] = {
  {"begin", prof_begin}, {"finish", prof_finish}, {"gap", prof_gap},
  {"stored", prof_stored}, {"stop", prof_stop}, {"report", prof_report},
  {NULL, NULL}
};

/* fmap._profile.start(bf) -> state: counting starts on bf, in a gap of
** group 0. For fmap.profile only: fmap._profile, whose name the leading
** underscore keeps out of the reference, holds what it needs of the
** engine. Raises if bf is profiled already. The state does not keep bf
** alive: a BlockFile closed or collected detaches it (profclosed). */
static int prof_start (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  Prof *p;
  if (bf->prof != NULL)
    return luaL_argerror(L, 1, "the BlockFile is profiled already");
  p = (Prof *)lua_newuserdatauv(L, sizeof *p, 0);
  memset(p, 0, sizeof *p);
  if (luaL_newmetatable(L, FMAP_PROF)) {
    luaL_newlib(L, prof_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, prof_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, prof_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_setmetatable(L, -2);
  p->bs = bf->f.h.block_size;
  p->epoch = 1;
  p->bf = bf;
  bf->prof = p;
  return 1;
}

/* The registry field fmap.profile sets to a function while it profiles
** every BlockFile its function opens: create, open and anonymous pass
** each new one to it. */
#define PROF_ONOPEN  "fmap.profile.onopen"

void profopened (lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, PROF_ONOPEN) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, -2);
  lua_call(L, 1, 0);
}

/* fmap._profile.stack_distances(list) -> list: fm_stack_distances of a
** list of block numbers (0 to 2^32 - 2), 0 for a cold access. */
static int prof_stack_distances (lua_State *L) {
  lua_Integer n, i;
  uint32_t *trace, *dist;
  int rc;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = luaL_len(L, 1);
  trace = (uint32_t *)lua_newuserdatauv(L, (size_t)(n ? n : 1) *
                                        2 * sizeof *trace, 0);
  dist = trace + (n ? n : 1);
  for (i = 0; i < n; i++) {
    int isint;
    lua_Integer b;
    lua_rawgeti(L, 1, i + 1);
    b = lua_tointegerx(L, -1, &isint);
    if (!isint || b < 0 || b >= (lua_Integer)UINT32_MAX)
      return luaL_argerror(L, 1, lua_pushfstring(L, "item %I is not a "
                           "block number (0 to 4294967294)", i + 1));
    lua_pop(L, 1);
    trace[i] = (uint32_t)b;
  }
  rc = fm_stack_distances(trace, (size_t)n, dist);
  if (rc != 0) return luaL_error(L, "stack distances: out of memory");
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_pushinteger(L, (lua_Integer)dist[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* The functions of fmap._profile. */
LUAI_DDEF const luaL_Reg profile_mod_funcs[] = {
  {"start", prof_start}, {"stack_distances", prof_stack_distances},
  {NULL, NULL}
};
