/*
** mrc.c: LRU stack distances in one pass (Mattson, Gecsei, Slutz and
** Traiger, 1970), with a Fenwick tree over access times (Bennett and
** Kruskal, 1975): O(log n) per access, whatever the cache sizes asked
** later. Plain C: no Lua in this file; it returns codes and never prints.
**
** LRU has the inclusion property: a cache of c blocks holds the c blocks
** most recently used, so an access hits exactly when fewer than c other
** distinct blocks were used since the block's previous access. That count
** plus one is the access's stack distance. Mark, in a bit array over
** access times, the time of each block's latest access: the distance of
** an access to a block last used at time p is the number of marks after
** p, plus one. The Fenwick tree answers "marks up to p" in O(log n).
*/
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "mrc.h"

/* Adds d to position i (1-based) of the Fenwick tree f of n positions. */
static void fen_add (uint32_t *f, size_t n, size_t i, uint32_t d) {
  for (; i <= n; i += i & (~i + 1)) f[i] += d;
}

/* The sum of positions 1..i. */
static uint32_t fen_sum (const uint32_t *f, size_t i) {
  uint32_t s = 0;
  for (; i > 0; i &= i - 1) s += f[i];
  return s;
}

int fm_stack_distances (const uint32_t *trace, size_t n, uint32_t *dist) {
  uint32_t *last, *fen, maxb = 0, distinct = 0;
  size_t t;
  if (n >= UINT32_MAX) return EINVAL;
  for (t = 0; t < n; t++) if (trace[t] > maxb) maxb = trace[t];
  /* last[b]: the position (time + 1) of b's latest access, 0 if none */
  last = n > 0 ? calloc((size_t)maxb + 1, sizeof *last) : NULL;
  fen = n > 0 ? calloc(n + 1, sizeof *fen) : NULL;
  if (n > 0 && (last == NULL || fen == NULL)) {
    free(last);
    free(fen);
    return ENOMEM;
  }
  for (t = 0; t < n; t++) {
    uint32_t b = trace[t], p = last[b];
    if (p == 0) {
      dist[t] = 0;
      distinct++;
    }
    else {
      /* Every mark is at a time before t, one per distinct block seen:
      ** the marks after p are the distinct blocks less those up to p. */
      dist[t] = distinct - fen_sum(fen, p) + 1;
      fen_add(fen, n, p, UINT32_MAX);   /* -1, modulo 2^32 */
    }
    fen_add(fen, n, t + 1, 1);
    last[b] = (uint32_t)(t + 1);
  }
  free(last);
  free(fen);
  return 0;
}
