/*
** check.c: fm_check and fm_free_runs, the walks that report what is wrong
** with a file rather than trust it: the header, the free list, every
** block's mark, and the journal (txn.c's part). Plain C: no Lua in this
** file; it reports through the caller's function and never prints.
** fm_get_stats, the counts the header and the journal keep, is here too.
*/
#define _GNU_SOURCE
#include "fm.h"
#include "fmint.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define validate_header fm__validate_header
#define ctl_ptr fm__ctl_ptr
#define marked fm__marked
#define read_run fm__read_run

/* ---------------------------------------------------------------------- */
/* Checking                                                                */
/* ---------------------------------------------------------------------- */

typedef struct Checker {
  fm_reporter report;
  void *ud;
  uint64_t count, max;
} Checker;

static void problem (Checker *c, const char *fmt, ...) {
  c->count++;
  if (c->count <= c->max && c->report != NULL) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    c->report(c->ud, buf);
  }
}

static void journal_problem (void *ud, const char *what) {
  problem((Checker *)ud, "%s", what);
}

uint64_t fm_check (fm_file *f, fm_reporter report, void *ud,
                   uint64_t max_reports) {
  Checker c = { report, ud, 0, max_reports };
  uint64_t bs = f->h.block_size;
  uint64_t nblocks, run, runs = 0, blocks = 0, b;
  unsigned char *seen;
  char saved[sizeof f->msg];
  memcpy(saved, f->msg, sizeof saved);
  if (validate_header(f, &f->h, f->mapsize) != 0) {
    problem(&c, "header: %s", f->msg);
    memcpy(f->msg, saved, sizeof saved);
    return c.count;   /* nothing below can be trusted */
  }
  if (checksum(ctl_ptr(f, f->h.ctl_area), f->h.ctl_len, 2) != f->h.ctl_sum)
    problem(&c, "control data: checksum mismatch");
  nblocks = f->h.top / bs;
  seen = calloc((size_t)(nblocks + 7) / 8, 1);
  if (seen == NULL) {
    problem(&c, "out of memory while checking");
    return c.count;
  }
  for (run = f->h.free_head; run != 0; ) {
    uint64_t next, n, i;
    int twice = 0;
    if (runs >= f->h.free_runs) {
      problem(&c, "free list: more runs than the %llu the header counts "
              "(a cycle?) at block %llu", (unsigned long long)f->h.free_runs,
              (unsigned long long)run);
      break;
    }
    if (read_run(f, run, &next, &n) != 0) {
      problem(&c, "%s", f->msg);
      break;
    }
    runs++;
    for (i = 0; i < n; i++) {
      uint64_t blk = run / bs + i;
      if (seen[blk / 8] & (1u << (blk % 8))) {
        /* Overlapping runs: stop here, or a hostile list of long runs
        ** that all overlap would take quadratic time. */
        problem(&c, "free list: block %llu is on the list twice",
                (unsigned long long)(blk * bs));
        twice = 1;
        break;
      }
      seen[blk / 8] |= (unsigned char)(1u << (blk % 8));
      blocks++;
      if (i > 0 && !fm_is_free(f, blk * bs))
        problem(&c, "free list: block %llu of the run at %llu is not "
                "marked free", (unsigned long long)(blk * bs),
                (unsigned long long)run);
    }
    if (twice) break;
    run = next;
  }
  if (runs != f->h.free_runs || blocks != f->h.free_blocks)
    problem(&c, "free list: header counts %llu blocks in %llu runs, the "
            "list holds %llu in %llu", (unsigned long long)f->h.free_blocks,
            (unsigned long long)f->h.free_runs, (unsigned long long)blocks,
            (unsigned long long)runs);
  for (b = 1; b < nblocks; b++) {
    if (seen[b / 8] & (1u << (b % 8))) continue;
    if (fm_is_free(f, b * bs))
      problem(&c, "block %llu is marked free but is not on the free list "
              "(leaked)", (unsigned long long)(b * bs));
    else if (marked(f, b * bs))
      problem(&c, "block %llu carries a torn free mark (leaked)",
              (unsigned long long)(b * bs));
  }
  free(seen);
  fm__check_journal(f, journal_problem, &c);
  memcpy(f->msg, saved, sizeof saved);
  return c.count;
}

int fm_free_runs (fm_file *f, fm_run_visitor fn, void *ud) {
  uint64_t run = f->h.free_head, i;
  for (i = 0; run != 0 && i < f->h.free_runs; i++) {
    uint64_t next, blocks;
    int rc = read_run(f, run, &next, &blocks);
    if (rc != 0) return rc;
    if (fn(ud, run, blocks) != 0) break;
    run = next;
  }
  return 0;
}


/* ---------------------------------------------------------------------- */
/* Stats: what the header and the transaction layer say, read as they are */
/* ---------------------------------------------------------------------- */

void fm_get_stats (const fm_file *f, fm_stats *st) {
  uint64_t bs = f->h.block_size;
  st->size = f->mapsize;
  st->block_size = bs;
  st->blocks = f->mapsize / bs;
  st->free_blocks = f->h.free_blocks;
  st->free_runs = f->h.free_runs;
  st->used_blocks = f->h.top / bs - 1 - f->h.free_blocks;
  st->tail_blocks = (f->mapsize - f->h.top) / bs;
  st->control_data = f->h.ctl_len;
  st->remaps = f->remaps;
  st->dirty_blocks = f->ndirty;
  st->journal_bytes = f->wal_fd >= 0 ? f->wal_end : 0;
  st->journal_blocks = f->ninwal;
  st->undo_copies = f->txn ? f->nundo_buf : 0;
  st->commits = f->commits;
  st->direct_blocks = f->direct;
  st->checkpoints = f->checkpoints;
  st->replayed = f->replayed;
  st->deferred = f->deferred;
  st->readers = f->fd >= 0 && !f->readonly &&
                fm__ofd_held(f->fd, F_WRLCK, FM_LOCK_READERS);
  st->writer = f->fd >= 0 && f->readonly &&
               fm__ofd_held(f->fd, F_RDLCK, FM_LOCK_WRITER);
  st->in_transaction = f->txn;
}
