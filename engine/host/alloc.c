/*
** alloc.c: the host's allocator for its Lua state (see alloc.h). Plain
** C: no Lua here.
**
** Why: a Lua program makes and drops small objects at a high rate (a
** scanned record is two 16-byte strings, about 48 bytes each), and the
** collector frees them in batches of thousands, which empties and
** overflows malloc's per-thread caches: with glibc, an allocation and its
** free cost about 250 instructions together (callgrind, a B+tree scan),
** from the lists here about 80.
**
** How: a block of at most FM_POOL_MAXSMALL bytes belongs to the class of
** its size rounded up to FM_POOL_GRAIN. Free blocks of a class form a
** singly linked list threaded through their first bytes. A class with no
** free block takes one from the current chunk's unused tail; a new chunk
** of FM_POOL_CHUNK bytes comes from malloc when the tail is too short (the
** old tail is kept as one free block of its own class first, so no byte
** is lost). Chunks go back to malloc only with the pool: a program's
** small-object memory is reused, not returned, as with most mallocs.
** Blocks larger than FM_POOL_MAXSMALL are malloc's.
**
** Under AddressSanitizer every byte of the pool that no block owns is
** poisoned, and a block owns exactly the bytes asked for: a read past a
** userdata's end or of a freed object is reported as it would be with
** malloc (until the block is reused: the lists are LIFO).
*/

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

#if defined(__SANITIZE_ADDRESS__)
#define POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_ASAN 1
#endif
#endif

#ifdef POOL_ASAN
#include <sanitizer/asan_interface.h>
#define poison(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define poison(p, n)   ((void)(p), (void)(n))
#define unpoison(p, n) ((void)(p), (void)(n))
#endif

#define NCLASS (FM_POOL_MAXSMALL / FM_POOL_GRAIN)
/* A chunk starts with its link to the previous one, padded to a grain so
** that blocks stay aligned. */
#define CHUNK_HEAD FM_POOL_GRAIN

typedef struct block { struct block *next; } block;

struct fm_pool {
  block *free[NCLASS];   /* free[c]: blocks of (c + 1) * GRAIN bytes */
  char *tail, *end;      /* the current chunk's unused bytes */
  void *chunks;          /* the newest chunk; each links the one before */
};

static int small (size_t n) { return n - 1 < FM_POOL_MAXSMALL; }  /* 1..MAX */
static size_t classof (size_t n) { return (n - 1) / FM_POOL_GRAIN; }
static size_t classbytes (size_t c) { return (c + 1) * FM_POOL_GRAIN; }

fm_pool *fm_pool_new (void) {
  fm_pool *p = malloc(sizeof *p);
  if (p != NULL)
    memset(p, 0, sizeof *p);
  return p;
}

void fm_pool_delete (fm_pool *p) {
  if (p == NULL)
    return;
  while (p->chunks != NULL) {
    void *prev;
    unpoison(p->chunks, CHUNK_HEAD);
    memcpy(&prev, p->chunks, sizeof prev);
    free(p->chunks);
    p->chunks = prev;
  }
  free(p);
}

/* Puts a block of class c on its list; it owns no byte after this. */
static void push (fm_pool *p, void *ptr, size_t c) {
  block *b = ptr;
  unpoison(b, sizeof *b);
  b->next = p->free[c];
  p->free[c] = b;
  poison(b, classbytes(c));
}

/* A new chunk as the current one; the old tail goes to its class. */
static int newchunk (fm_pool *p) {
  char *chunk = malloc(FM_POOL_CHUNK);
  size_t left = p->chunks ? (size_t)(p->end - p->tail) : 0;
  if (chunk == NULL)
    return 0;
  if (left > 0)   /* a multiple of GRAIN, less than one block of MAXSMALL */
    push(p, p->tail, classof(left));
  memcpy(chunk, &p->chunks, sizeof p->chunks);
  p->chunks = chunk;
  p->tail = chunk + CHUNK_HEAD;
  p->end = chunk + FM_POOL_CHUNK;
  poison(p->tail, (size_t)(p->end - p->tail));
  return 1;
}

/* A block of n bytes (1..MAXSMALL), or NULL without memory. */
static void *take (fm_pool *p, size_t n) {
  size_t c = classof(n);
  block *b = p->free[c];
  if (b != NULL) {
    unpoison(b, sizeof *b);
    p->free[c] = b->next;
    poison(b, sizeof *b);
  }
  else {
    size_t bytes = classbytes(c);
    if ((p->chunks == NULL || (size_t)(p->end - p->tail) < bytes) &&
        !newchunk(p))
      return NULL;
    b = (block *)p->tail;
    p->tail += bytes;
  }
  unpoison(b, n);
  return b;
}

void *fm_pool_alloc (void *ud, void *ptr, size_t osize, size_t nsize) {
  fm_pool *p = ud;
  void *q;
  if (ptr == NULL)   /* then osize tells the kind of object, not a size */
    return (nsize == 0) ? NULL : small(nsize) ? take(p, nsize) : malloc(nsize);
  if (nsize == 0) {
    if (small(osize))
      push(p, ptr, classof(osize));
    else
      free(ptr);
    return NULL;
  }
  if (!small(osize) && !small(nsize))
    return realloc(ptr, nsize);
  if (small(osize) && small(nsize) && classof(osize) == classof(nsize)) {
    poison(ptr, classbytes(classof(osize)));
    unpoison(ptr, nsize);
    return ptr;
  }
  /* Across the pool's edge or between classes: move the block. */
  q = small(nsize) ? take(p, nsize) : malloc(nsize);
  if (q == NULL)
    return NULL;
  memcpy(q, ptr, osize < nsize ? osize : nsize);
  if (small(osize))
    push(p, ptr, classof(osize));
  else
    free(ptr);
  return q;
}
