/*
** mrc.h: LRU stack distances of a trace of block numbers, computed in one
** pass, from which the miss count of an LRU cache of every size follows
** (the miss-ratio curve). Plain C: no Lua in this file or in mrc.c.
*/
#ifndef FM_MRC_H
#define FM_MRC_H

#include <stddef.h>
#include <stdint.h>

/* Stores in dist[t] the LRU stack distance of access t of the n accesses
** trace[0..n-1] (block numbers): 0 for the first access of a block (a
** cold miss), else the number of distinct blocks accessed since that
** block's previous access, itself included (1 for a block accessed again
** at once). An LRU cache of c blocks, empty at the start, misses access t
** exactly when dist[t] is 0 or greater than c. Returns 0, or ENOMEM with
** dist unchanged; EINVAL if n does not fit in 32 bits. */
int fm_stack_distances (const uint32_t *trace, size_t n, uint32_t *dist);

#endif
