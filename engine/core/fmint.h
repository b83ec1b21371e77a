/*
** fmint.h: what the core's files share and nobody else sees: the
** little-endian fields, the checksum and the error helpers. Plain C: no
** Lua here either. fm.c owns the file, its free list and header; txn.c
** owns transactions and the journal.
*/
#ifndef FMINT_H
#define FMINT_H

#include <string.h>
#include <sys/types.h>
#include "fm.h"

static inline uint64_t get64 (const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

static inline void put64 (unsigned char *p, uint64_t v) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  memcpy(p, &v, 8);
}

static inline uint32_t get32 (const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static inline void put32 (unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}

/* A 64-bit checksum: word-wise multiply-xorshift, tail bytes folded in.
** Not cryptographic; it catches torn writes and random damage. */
static inline uint64_t checksum (const unsigned char *p, size_t n,
                                  uint64_t seed) {
  uint64_t h = seed ^ (n * 0x9E3779B97F4A7C15ull);
  size_t i;
  for (i = 0; i + 8 <= n; i += 8) {
    h ^= get64(p + i);
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
  }
  for (; i < n; i++) {
    h ^= p[i];
    h *= 0x94D049BB133111EBull;
  }
  h ^= h >> 29; h *= 0xBF58476D1CE4E5B9ull; h ^= h >> 32;
  return h;
}

/* Sets f->msg and returns rc; sysfail clears f->msg and returns err (EIO
** for 0), for errors whose errno says it all. */
int fm__fail (fm_file *f, int rc, const char *fmt, ...);
int fm__sysfail (fm_file *f, int err);
#define fail fm__fail
#define sysfail fm__sysfail

/* fm.c's readers of the header and the free list, which check.c's walks
** share: 0 or FM_ECORRUPT with f->msg saying why; marked: whether a block
** carries a free mark, intact or torn. */
int fm__validate_header (fm_file *f, const fm_header *h, uint64_t size);
const unsigned char *fm__ctl_ptr (const fm_file *f, uint32_t area);
int fm__read_run (fm_file *f, uint64_t off, uint64_t *next,
                  uint64_t *blocks);
int fm__marked (const fm_file *f, uint64_t off);

/* lock.c: an open file description lock on one byte of fd (type F_RDLCK,
** F_WRLCK or F_UNLCK; with wait, waiting for it): 0 or an errno value;
** and whether another description holds one that conflicts with type. */
int fm__ofd_lock (int fd, short type, off_t byte, int wait);
int fm__ofd_held (int fd, short type, off_t byte);

#endif
