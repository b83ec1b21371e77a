/*
** bench_core.c: the block-layer micro-benchmarks as plain C loops against
** the core, the physical limit the Lua binding is measured against.
** bench/bench_engine.lua runs it and the same loops in Lua, in one run.
** Prints one line per benchmark: "name ops seconds". No Lua in this file.
*/
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fm.h"

static double now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die (const char *what, fm_file *f, int rc) {
  fprintf(stderr, "bench_core: %s failed (%d): %s\n", what, rc, f->msg);
  exit(1);
}

/* Keeps the compiler from dropping loops whose results are unused. */
static volatile uint64_t sink;

int main (int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "/tmp/fmap-bench-core.fmap";
  long n = argc > 2 ? atol(argv[2]) : 1000000;
  fm_file f;
  uint64_t *offs = malloc(sizeof(uint64_t) * (size_t)n), off, acc = 0;
  double t;
  long i;
  int rc;
  if (offs == NULL || n <= 0) return 1;
  if ((rc = fm_create(path, FM_BLOCKSIZE, &f)) != 0) die("create", &f, rc);

  /* allocate a block and free it again, n times: the engine's own cost */
  t = now();
  for (i = 0; i < n; i++) {
    if ((rc = fm_allocate(&f, 1, &off)) != 0) die("allocate", &f, rc);
    if ((rc = fm_free(&f, off, 1)) != 0) die("free", &f, rc);
  }
  printf("alloc_free %ld %.9f\n", n, now() - t);

  /* allocate n/10 blocks, then free them all: growth and page faults */
  t = now();
  for (i = 0; i < n / 10; i++)
    if ((rc = fm_allocate(&f, 1, &offs[i])) != 0) die("allocate", &f, rc);
  for (i = 0; i < n / 10; i++)
    if ((rc = fm_free(&f, offs[i], 1)) != 0) die("free", &f, rc);
  printf("alloc_bulk %ld %.9f\n", n / 10, now() - t);

  if ((rc = fm_allocate(&f, 1, &off)) != 0) die("allocate", &f, rc);

  /* get + release: what the binding does for a view, without Lua */
  t = now();
  for (i = 0; i < n; i++) {
    if ((rc = fm_check_range(&f, off, 1)) != 0) die("check_range", &f, rc);
    acc += (uint64_t)(uintptr_t)fm_ptr(&f, off);
  }
  printf("get_release %ld %.9f\n", n, now() - t);

  /* a u64 write then read at a bounds-checked position */
  t = now();
  for (i = 0; i < n; i++) {
    uint64_t pos = (uint64_t)(i & 511) * 8, x;
    unsigned char *p = fm_ptr(&f, off);
    if (pos + 8 > f.h.block_size) die("bounds", &f, 0);
    x = (uint64_t)i;
    memcpy(p + pos, &x, 8);
    memcpy(&x, p + pos, 8);
    acc += x;
  }
  printf("u64_rw %ld %.9f\n", n, now() - t);

  /* memcmp of a 16-byte key against a position in the block */
  {
    unsigned char key[16];
    memset(key, 0, sizeof key);
    key[15] = 1;
    t = now();
    for (i = 0; i < n; i++) {
      uint64_t pos = (uint64_t)(i & 255) * 16;
      unsigned char *p = fm_ptr(&f, off);
      if (pos + 16 > f.h.block_size) die("bounds", &f, 0);
      acc += (uint64_t)memcmp(p + pos, key, 16);
    }
    printf("compare16 %ld %.9f\n", n, now() - t);
  }
  sink = acc;
  fm_close_final(&f);
  unlink(path);
  free(offs);
  return 0;
}
