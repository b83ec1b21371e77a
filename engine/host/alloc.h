/*
** alloc.h: the host's memory allocator for its Lua state, a pool of
** small blocks in size classes over malloc. Plain C: no Lua here; the
** allocation function follows the lua_Alloc contract only by its shape.
*/

#ifndef FMAP_ALLOC_H
#define FMAP_ALLOC_H

#include <stddef.h>

/* Blocks of at most FM_POOL_MAXSMALL bytes come from the pool, in classes
** FM_POOL_GRAIN bytes apart; larger ones go to malloc and realloc. */
#define FM_POOL_GRAIN    16
#define FM_POOL_MAXSMALL 256
#define FM_POOL_CHUNK    (64 * 1024)   /* what it takes from malloc at once */

typedef struct fm_pool fm_pool;

/* A new, empty pool, or NULL if there is no memory for it. */
fm_pool *fm_pool_new (void);

/* Frees the pool and every chunk it holds. Blocks still allocated from it
** become invalid: call after the last user (lua_close) is done. */
void fm_pool_delete (fm_pool *p);

/* An allocation function with lua_Alloc's contract, ud being the pool:
** ptr NULL allocates nsize bytes (osize is then not a size, and is
** ignored); nsize 0 frees ptr, whose size is osize, and returns NULL;
** otherwise it resizes ptr from osize to nsize bytes. It returns NULL only
** when it cannot fulfil the request, and then ptr is unchanged. The sizes
** given for a block must be the ones it was allocated or last resized to:
** the pool keeps no header, and a block's size is how it finds its class.
** Blocks are aligned as malloc's are (16 bytes with glibc on 64-bit
** machines). Not thread-safe: one pool per thread. */
void *fm_pool_alloc (void *ud, void *ptr, size_t osize, size_t nsize);

#endif
