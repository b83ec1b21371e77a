/*
** txn.c: transactions and the journal of the fmap core. Plain C: no Lua
** in this file; it returns codes and never prints or exits.
**
** Design: a private map and a redo journal of whole blocks.
**
** A writable file is mapped MAP_PRIVATE: a store through the map changes
** this process's copy of the page and never the file, so the kernel can
** write nothing back behind the engine's back. The file changes only by
** pwrite, in the order below. Every store is announced first (fm_touch):
** the block joins the dirty set, and inside an explicit transaction its
** bytes at the first store are saved in memory (the undo copies). Two
** kinds of block need none: one that was tail at begin rolls back to
** zeros, and one unchanged since the journal last restarted (neither
** dirty nor in the journal) has the same bytes in the file, which is not
** written during a transaction: its rollback drops the map's private page
** (MADV_DONTNEED), and the file's comes back. A transaction over a file
** just checkpointed copies nothing.
**
**   spill     when the changes held pass the spill size (fm_set_spill),
**             at an allocation: pwrites blocks allocated since the last
**             commit (past ctop, and inside a transaction past its begin's
**             top) into the file ahead of the commit (fm__spill).
**   commit    with sync, and DIRECT_MIN bytes or more of blocks allocated
**             since the last commit (past ctop): pwrites those into the
**             file; then, if any block went to the file ahead of the
**             journal, fdatasync(file) first (write_direct). Then appends
**             a frame per other dirty block to the journal, the last one
**             marked as the commit and carrying the file size; with sync,
**             fdatasync(journal). The transaction is durable when that
**             returns.
**   rollback  copies the undo copies back (or drops the private pages of
**             the blocks the file holds) and restores the header, the
**             slot and the clean mark of begin; nothing is written.
**   checkpoint  (when the journal passes JOURNAL_LIMIT, and at close)
**             fdatasync(journal) if needed; pwrite each block the journal
**             holds, from the map, into the file; fsync(file); then the
**             journal restarts: a new salt in its header, fdatasync, and
**             frames from the start again. The map's private copies of the
**             written blocks are dropped (MADV_DONTNEED): the file holds
**             the same bytes, and memory goes back to the page cache.
**   close     commits with sync, checkpoints and removes the journal.
**   open      finds a journal beside the file: a read-write open copies
**             its committed frames into the file, fsyncs, removes it
**             (recovery); a read-only open lays them over its private map.
**
** Why a crash at any instant leaves the last commit:
**   - Before a checkpoint, the file holds the state of the last
**     checkpoint, and the journal every commit since, each one valid only
**     if its frames and its commit frame are whole: frames carry the
**     generation's salt and a checksum chained from the previous frame's,
**     so a torn or missing frame ends the journal there, and a commit
**     whose commit frame is not reached is ignored, as are frames of an
**     older generation left past the end.
**   - A checkpoint writes the file only after the journal is on disk, so
**     a crash in the middle is repaired by replaying the journal: the
**     replay writes the same bytes the checkpoint was writing. It
**     restarts the journal only after the file is on disk, and writes new
**     frames only after the new header is, so no replay ever mixes old
**     frames with the newer file.
**   - Blocks written into the file ahead of the journal (a spill, or a
**     commit's direct write) lie past the top of the file's committed
**     state, which allocates nothing there, and have no frame in the
**     journal's generation to write over them: until the commit frame is
**     on disk they are tail, which open treats as unclean (zeroed before
**     allocation); the fdatasync before any frame puts them on disk
**     first. See write_ahead.
**   - Replay is idempotent: a crash during recovery is recovered again.
**   - Growth extends the file (ftruncate) outside any commit: the space is
**     zeros, past the committed top, and means nothing until a commit
**     says so. Recovery extends a file shorter than its last commit said.
**
** Journal format, little-endian, at PATH-wal:
**   OFFSET  SIZE  FIELD (header)
**        0     8  magic "fmapWAL1"
**        8     4  block size
**       12     4  the committed top, in blocks, when this generation
**                 began: the file holds those blocks for good (0 in
**                 older journals, or past 2^32 blocks: not recorded)
**       16     8  salt of this generation
**       24     8  checksum of bytes 0..23
**   then frames, each a 32-byte header and a block:
**        0     8  the block's offset in the file
**        8     8  salt
**       16     8  0, or for the last frame of a commit: the file size
**       24     8  checksum of the block's bytes and bytes 0..23, seeded
**                 with the previous frame's (the header's for the first)
** Invariants (fm_check verifies them):
**   - frames from the header to wal_end chain, and end with a commit
**   - a block that is not dirty holds the bytes of its latest frame
*/
#define _GNU_SOURCE
#include "fm.h"
#include "fmint.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define WAL_HDR       32
#define FRAME_HDR     32
#define JOURNAL_LIMIT (4u << 20)   /* a checkpoint once past it */
#define IOV_BATCH     512          /* frames a pwritev, two iovecs each */
#define JOURNAL_SLACK (1ull << 30) /* see fm__recover */
#define DIRECT_MIN    (1u << 20)   /* bytes a commit writes past the journal
                                   ** at least, or none: see write_direct */
#define SPILL_KEEP    1024         /* newest changed blocks a spill keeps, at
                                   ** most: a quarter of the spill size */

static const unsigned char WAL_MAGIC[8] =
  { 'f', 'm', 'a', 'p', 'W', 'A', 'L', '1' };


/* ---------------------------------------------------------------------- */
/* Growable arrays                                                         */
/* ---------------------------------------------------------------------- */

static void next_spill (fm_file *f);

/* Makes room for one more element of size sz in *a; 0 or ENOMEM. */
static int reserve (void **a, uint64_t n, uint64_t *cap, size_t sz) {
  void *p;
  uint64_t c;
  if (n < *cap) return 0;
  c = *cap ? *cap * 2 : 64;
  if (c > SIZE_MAX / sz) return ENOMEM;
  p = realloc(*a, (size_t)(c * sz));
  if (p == NULL) return ENOMEM;
  *a = p;
  *cap = c;
  return 0;
}

int fm__txn_resize (fm_file *f) {
  uint64_t n = f->mapsize / f->h.block_size;
  unsigned char *p;
  if (n <= f->nbflag) return 0;
  p = realloc(f->bflag, (size_t)n);
  if (p == NULL) return ENOMEM;
  memset(p + f->nbflag, 0, (size_t)(n - f->nbflag));
  f->bflag = p;
  f->nbflag = n;
  return 0;
}

void fm__txn_free (fm_file *f) {
  free(f->bflag); free(f->dirty); free(f->undo); free(f->undo_buf);
  free(f->inwal);
  f->bflag = NULL; f->dirty = NULL; f->undo = NULL; f->undo_buf = NULL;
  f->inwal = NULL;
  f->nbflag = f->ndirty = f->capdirty = f->nundo = f->capundo = 0;
  f->nundo_buf = f->capundo_buf = f->ninwal = f->capinwal = 0;
  f->txn = 0;
  if (f->wal_fd >= 0) close(f->wal_fd);
  f->wal_fd = -1;
}


/* ---------------------------------------------------------------------- */
/* Touching blocks                                                         */
/* ---------------------------------------------------------------------- */

/* Announces the first store since the last commit (or in this
** transaction) to each block of [first, last]. Everything that can fail
** is reserved before any flag changes, so a failure leaves no trace. */
int fm_touch_slow (fm_file *f, uint64_t first, uint64_t last) {
  uint64_t bs = f->h.block_size, b;
  for (b = first; b <= last; b++) {
    unsigned char fl = f->bflag[b];
    if ((fl & f->need) == f->need) continue;
    if (!(fl & FM_B_DIRTY) &&
        reserve((void **)&f->dirty, f->ndirty, &f->capdirty, 8) != 0)
      return fail(f, ENOMEM, "out of memory for the list of changed "
                  "blocks");
    if (f->txn && !(fl & FM_B_SAVED)) {
      int tail = b * bs >= f->txn_h.top;   /* zeros, as far as any
                                           ** structure can tell */
      /* Unchanged since the journal restarted: the file holds the same
      ** bytes, and a rollback takes them back from it. */
      int infile = !tail && f->txn_discard &&
                   !(fl & (FM_B_DIRTY | FM_B_INWAL));
      fm_undo *u;
      if (reserve((void **)&f->undo, f->nundo, &f->capundo,
                  sizeof *f->undo) != 0)
        return fail(f, ENOMEM, "out of memory for a transaction's undo "
                    "list");
      if (!tail && !infile && f->nundo_buf == f->capundo_buf) {
        uint64_t c = f->capundo_buf ? f->capundo_buf * 2 : 16;
        unsigned char *p = c <= SIZE_MAX / bs ?
                           realloc(f->undo_buf, (size_t)(c * bs)) : NULL;
        if (p == NULL)
          return fail(f, ENOMEM, "out of memory for a transaction's undo "
                      "copies (%llu blocks saved)",
                      (unsigned long long)f->nundo_buf);
        f->undo_buf = p;
        f->capundo_buf = c;
      }
      u = &f->undo[f->nundo++];
      u->block = b;
      u->was_dirty = (fl & FM_B_DIRTY) != 0;
      u->copy = tail ? FM_UNDO_TAIL : infile ? FM_UNDO_FILE : f->nundo_buf;
      if (!tail && !infile)
        memcpy(f->undo_buf + f->nundo_buf++ * bs, f->map + b * bs,
               (size_t)bs);
      fl |= FM_B_SAVED;
    }
    if (!(fl & FM_B_DIRTY)) {
      f->dirty[f->ndirty++] = b;
      fl |= FM_B_DIRTY;
    }
    f->bflag[b] = fl;
  }
  return 0;
}

/* The flags a store must find, so that fm_touch's fast path skips it:
** none for an anonymous file outside a transaction (nothing to commit). */
static void set_need (fm_file *f) {
  if (f->txn) f->need = FM_B_DIRTY | FM_B_SAVED;
  else f->need = f->fd >= 0 ? FM_B_DIRTY : 0;
}


/* ---------------------------------------------------------------------- */
/* Begin and rollback                                                      */
/* ---------------------------------------------------------------------- */

int fm_begin (fm_file *f) {
  if (f->readonly)
    return fail(f, FM_EMISUSE, "the BlockFile is read-only");
  if (f->txn)
    return fail(f, FM_EMISUSE, "a transaction is already open (they do "
                "not nest)");
  f->txn = 1;
  f->txn_h = f->h;
  f->txn_slot = f->slot;
  f->txn_clean_from = f->clean_from;
  f->nundo = f->nundo_buf = 0;
  /* A private map of a file, in whole pages: dropping a block's pages
  ** brings back the file's bytes. */
  f->txn_discard = f->fd >= 0 && !f->readonly &&
                   f->h.block_size % (uint64_t)sysconf(_SC_PAGESIZE) == 0;
  f->gen++;
  set_need(f);
  return 0;
}

/* Forgets the undo copies: the transaction ended. */
static void end_txn (fm_file *f) {
  uint64_t i;
  for (i = 0; i < f->nundo; i++)
    f->bflag[f->undo[i].block] &= (unsigned char)~FM_B_SAVED;
  f->nundo = f->nundo_buf = 0;
  f->txn = 0;
  f->gen++;
  set_need(f);
  /* A big transaction's copies are given back, a small one's kept. */
  if (f->capundo_buf > 256) {
    free(f->undo_buf);
    f->undo_buf = NULL;
    f->capundo_buf = 0;
  }
}

/* Brings back the file's bytes of block b into the map: drops the map's
** private page (the file has not changed since the transaction began: it
** is written only by a checkpoint), or reads them. 0 or an errno value. */
static int from_file (fm_file *f, uint64_t b) {
  uint64_t bs = f->h.block_size, done = 0;
  unsigned char *p = f->map + b * bs;
  if (madvise(p, (size_t)bs, MADV_DONTNEED) == 0) return 0;
  while (done < bs) {
    ssize_t r = pread(f->fd, p + done, (size_t)(bs - done),
                      (off_t)(b * bs + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return r < 0 ? errno : EIO;
    done += (uint64_t)r;
  }
  return 0;
}

int fm_rollback (fm_file *f) {
  uint64_t bs = f->h.block_size, i, k;
  int rc = 0;
  if (!f->txn)
    return fail(f, FM_EMISUSE, "no transaction is open");
  if (!f->faulted) {
    for (i = f->nundo; i-- > 0; ) {
      const fm_undo *u = &f->undo[i];
      unsigned char *p = f->map + u->block * bs;
      if (u->copy == FM_UNDO_TAIL) memset(p, 0, (size_t)bs);
      else if (u->copy == FM_UNDO_FILE) {
        int e = from_file(f, u->block);
        if (e != 0 && rc == 0) rc = e;
      }
      else memcpy(p, f->undo_buf + u->copy * bs, (size_t)bs);
      if (!u->was_dirty)
        f->bflag[u->block] &= (unsigned char)~FM_B_DIRTY;
    }
  }
  for (i = k = 0; i < f->ndirty; i++)   /* keep the still dirty, in order */
    if (f->bflag[f->dirty[i]] & FM_B_DIRTY) f->dirty[k++] = f->dirty[i];
  f->ndirty = k;
  f->h = f->txn_h;
  f->slot = f->txn_slot;
  f->clean_from = f->txn_clean_from;
  /* Blocks written ahead are past top again, their bytes in the file:
  ** allocation zeroes them before handing them out. */
  if (f->clean_from < f->spill_hi) f->clean_from = f->spill_hi;
  next_spill(f);
  end_txn(f);
  return rc == 0 ? 0 : sysfail(f, rc);
}


/* ---------------------------------------------------------------------- */
/* The journal                                                             */
/* ---------------------------------------------------------------------- */

char *fm_journal_path (const char *path) {
  size_t n = strlen(path);
  char *p = malloc(n + 5);
  if (p != NULL) {
    memcpy(p, path, n);
    memcpy(p + n, "-wal", 5);
  }
  return p;
}

int fm_unlink (const char *path) {
  char *j = fm_journal_path(path);
  int rc = 0;
  if (j == NULL) return ENOMEM;
  if (unlink(path) != 0) rc = errno;
  if (unlink(j) != 0 && errno != ENOENT && rc == 0) rc = errno;
  free(j);
  return rc;
}

/* fsyncs the folder holding path, so that a file created or removed in it
** stays so. Errors are ignored: some file systems refuse it, and the data
** itself is synced apart. */
static void sync_dir (const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir;
  int fd;
  if (slash == NULL) dir = strdup(".");
  else if (slash == path) dir = strdup("/");
  else dir = strndup(path, (size_t)(slash - path));
  if (dir == NULL) return;
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free(dir);
  if (fd < 0) return;
  if (fsync(fd) != 0) { /* see above */ }
  close(fd);
}

static uint64_t new_salt (fm_file *f) {
  struct timespec ts;
  uint64_t s;
  clock_gettime(CLOCK_REALTIME, &ts);
  s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
      ((uint64_t)getpid() << 48) ^ (f->wal_salt * 0x9E3779B97F4A7C15ull);
  return s ? s : 1;
}

/* Writes a new journal header (a new generation) and syncs it; frames
** start again after it. */
static int restart_journal (fm_file *f) {
  unsigned char h[WAL_HDR];
  uint64_t i;
  f->wal_salt = new_salt(f);
  /* The next generation writes over this one's bytes: an fdatasync of a
  ** write inside the file need not write its inode too, as one that grows
  ** it does (half a small commit's time). Only a journal a big commit
  ** grew past four times the limit gives its space back. */
  if (f->wal_end > 4 * (uint64_t)JOURNAL_LIMIT &&
      ftruncate(f->wal_fd, 0) != 0)
    return sysfail(f, errno);
  memset(h, 0, sizeof h);
  memcpy(h, WAL_MAGIC, 8);
  put32(h + 8, f->h.block_size);
  /* The file holds the last commit's blocks durably now: a checkpoint has
  ** just fsynced them, or open_journal has. */
  if (f->ctop / f->h.block_size <= UINT32_MAX)
    put32(h + 12, (uint32_t)(f->ctop / f->h.block_size));
  put64(h + 16, f->wal_salt);
  put64(h + 24, checksum(h, 24, 3));
  if (pwrite(f->wal_fd, h, sizeof h, 0) != (ssize_t)sizeof h)
    return sysfail(f, errno ? errno : EIO);
  if (fdatasync(f->wal_fd) != 0) return sysfail(f, errno);
  f->wal_end = f->wal_synced = WAL_HDR;
  f->wal_sum = get64(h + 24);
  for (i = 0; i < f->ninwal; i++)
    f->bflag[f->inwal[i]] &= (unsigned char)~FM_B_INWAL;
  f->ninwal = 0;
  return 0;
}

/* Creates the journal for the first commit that writes one. */
static int open_journal (fm_file *f) {
  char *j;
  int rc;
  /* The journal's header says the file holds the last commit's blocks
  ** for good: a file just made (whose creation syncs nothing), or
  ** extended by a repair, may not yet. One sync a session makes it so. */
  if (fsync(f->fd) != 0) {
    /* blocks spilled into the file before may be lost with the failed
    ** writeback, and a second fsync would not say so (write_ahead) */
    if (f->spilled) f->nosync = 1;
    return sysfail(f, errno);
  }
  if ((j = fm_journal_path(f->path)) == NULL) return sysfail(f, ENOMEM);
  f->wal_fd = open(j, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  rc = errno;
  if (f->wal_fd < 0) {
    fail(f, rc, "%s: %s", j, strerror(rc));
    free(j);
    return rc;
  }
  free(j);
  if ((rc = restart_journal(f)) != 0) {
    close(f->wal_fd);
    f->wal_fd = -1;
    return rc;
  }
  sync_dir(f->path);
  return 0;
}

/* pwritev that goes on after a short write; 0 or an errno value. */
static int writev_all (int fd, struct iovec *iov, int n, uint64_t pos) {
  while (n > 0) {
    ssize_t w = pwritev(fd, iov, n, (off_t)pos);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (w == 0) return EIO;
    pos += (uint64_t)w;
    while (n > 0 && (size_t)w >= iov->iov_len) {
      w -= (ssize_t)iov->iov_len;
      iov++;
      n--;
    }
    if (n > 0) {
      iov->iov_base = (char *)iov->iov_base + w;
      iov->iov_len -= (size_t)w;
    }
  }
  return 0;
}

static int cmp64 (const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Sorts the n blocks of b and pwrites each run of contiguous ones from the
** map into the file. 0 or an errno value. */
static int write_runs (fm_file *f, uint64_t *b, uint64_t n) {
  uint64_t bs = f->h.block_size, i, j;
  qsort(b, (size_t)n, 8, cmp64);
  for (i = 0; i < n; i = j) {
    uint64_t off, len, done = 0;
    for (j = i + 1; j < n && b[j] == b[j - 1] + 1; j++) {}
    off = b[i] * bs;
    len = (j - i) * bs;
    while (done < len) {
      ssize_t w = pwrite(f->fd, f->map + off + done, (size_t)(len - done),
                         (off_t)(off + done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return w < 0 ? errno : EIO;
      done += (uint64_t)w;
    }
  }
  return 0;
}

/* Drops the map's private pages of the n sorted blocks of b, which the
** file holds: memory goes back to the page cache. */
static void drop_runs (fm_file *f, const uint64_t *b, uint64_t n) {
  uint64_t bs = f->h.block_size, i, j;
  if (f->readonly || bs % (uint64_t)sysconf(_SC_PAGESIZE) != 0) return;
  for (i = 0; i < n; i = j) {
    for (j = i + 1; j < n && b[j] == b[j - 1] + 1; j++) {}
    madvise(f->map + b[i] * bs, (size_t)((j - i) * bs), MADV_DONTNEED);
  }
}

/* Blocks written into the file ahead of their commit lie past the top of
** the file's committed state, which allocates nothing there, and have no
** frame in the journal's generation to write over them: until the commit
** frame is on disk they are tail, which open treats as unclean (zeroed
** before allocation); one fdatasync of the file before any frame of the
** commit puts them on disk first. Readers never map a top above ctop:
** they see nothing of them either. Two paths write them:
**
**   write_direct  a durable commit's first step, when the blocks
**                 allocated since the last commit (inside a transaction,
**                 since its begin, as for a spill) come to DIRECT_MIN bytes
**                 or more: the journal then carries only the rest (the
**                 header among them) and no checkpoint copies them again:
**                 half the bytes written.
**   fm__spill     when the changes held pass the spill size, at the entry
**                 of an allocation (no store is half done there): the new
**                 blocks but the newest changed (a quarter of the spill
**                 size, SPILL_KEEP blocks at most) go to the file at once,
**                 and the map's copies of them back to the page cache, so
**                 that a bulk load holds the spill size (and the undo
**                 list's entry a new block, 24 bytes). Inside
**                 a transaction only blocks past its begin's top go, whose
**                 rollback is zeros: a rollback leaves their bytes in the
**                 file past top, and raises clean_from over them (spill_hi)
**                 so that allocation zeroes them again.
**
** Written blocks are clean (no frame follows for them); a later store
** makes them dirty again, as any other. A failed write leaves them dirty:
** the commit journals them, and its frames win at replay.
**
** AHEAD: a dirty block that may go ahead, from floor (ctop, or a
** transaction's begin top) to top, with no frame in the journal. */
#define AHEAD(f, b, floor) ((b) * (f)->h.block_size >= (floor) && \
                            (b) * (f)->h.block_size < (f)->h.top && \
                            !((f)->bflag[b] & FM_B_INWAL))

/* Writes the n blocks of b (malloc'd, or NULL when n is 0; freed here)
** into the file, then with sync fdatasyncs it, which puts every block
** written ahead since the last commit on disk. On success the n blocks
** are clean, their private pages dropped. 0 or an errno value. */
static int write_ahead (fm_file *f, uint64_t *b, uint64_t n, int sync) {
  uint64_t bs = f->h.block_size, i, k, hi = 0;
  int rc = 0, dropped = f->spilled;   /* blocks gone from the map before */
  for (i = 0; i < n; i++)
    if ((b[i] + 1) * bs > hi) hi = (b[i] + 1) * bs;
  if (hi > f->spill_hi) f->spill_hi = hi;   /* before: a failure too */
  if (n > 0) {
    f->spilled = 1;
    rc = write_runs(f, b, n);
  }
  if (rc == 0 && sync) {
    if (fdatasync(f->fd) == 0) f->spilled = 0;
    else {
      /* Blocks written ahead may be lost with the failed writeback, and
      ** a second fdatasync would not say so: no commit may count on
      ** them. Those of this call are still in the map, and dirty, so the
      ** next commit writes them again; blocks an earlier spill took out
      ** of the map are gone for good. The file stays as at the last
      ** commit. */
      rc = errno;
      if (dropped) f->nosync = 1;
    }
  }
  if (rc == 0 && n > 0) {
    for (i = 0; i < n; i++)
      f->bflag[b[i]] &= (unsigned char)~FM_B_DIRTY;
    for (i = k = 0; i < f->ndirty; i++)   /* keep the rest, in order */
      if (f->bflag[f->dirty[i]] & FM_B_DIRTY) f->dirty[k++] = f->dirty[i];
    f->ndirty = k;
    drop_runs(f, b, n);
    f->direct += n;
    f->gen++;   /* views that cached "touched" must announce stores again */
  }
  free(b);
  return rc;
}

/* The dirty blocks from floor on, but for the newest keep of the dirty
** list, in *out (malloc'd, or NULL when none). Returns how many. */
static uint64_t ahead_of (fm_file *f, uint64_t floor, uint64_t keep,
                          uint64_t **out) {
  uint64_t last = f->ndirty > keep ? f->ndirty - keep : 0, i, k, n = 0;
  *out = NULL;
  for (i = 0; i < last; i++)
    if (AHEAD(f, f->dirty[i], floor)) n++;
  if (n == 0 || (*out = malloc((size_t)(n * 8))) == NULL) return 0;
  for (i = k = 0; i < last; i++)
    if (AHEAD(f, f->dirty[i], floor)) (*out)[k++] = f->dirty[i];
  return n;
}

static void next_spill (fm_file *f) {
  uint64_t per = f->spill / f->h.block_size;
  f->spill_next = f->spill == 0 ? UINT64_MAX : f->ndirty + (per ? per : 1);
}

void fm_set_spill (fm_file *f, uint64_t bytes) {
  f->spill = bytes;
  next_spill(f);
}

void fm__spill (fm_file *f) {
  uint64_t floor = f->ctop, keep = f->spill / f->h.block_size / 4, *b, n;
  if (f->fd >= 0 && !f->readonly && !f->faulted && f->spill != 0) {
    if (f->txn && f->txn_h.top > floor) floor = f->txn_h.top;
    n = ahead_of(f, floor, keep < SPILL_KEEP ? keep : SPILL_KEEP, &b);
    if (n > 0 && write_ahead(f, b, n, 0) != 0) {
      /* they stay dirty: the commit journals them */
    }
  }
  next_spill(f);
}

/* A commit's first step: with sync, and DIRECT_MIN bytes or more of
** changed blocks allocated since the last commit (inside a transaction,
** since its begin), writes them into the file; if
** any block went ahead (here or spilled), fdatasyncs it. 0 or an errno
** value, the commit failing. */
static int write_direct (fm_file *f, int sync) {
  uint64_t *b = NULL, n = 0, floor = f->ctop;
  int rc;
  /* Inside a transaction only blocks past its begin's top, which roll
  ** back to zeros: a failed commit leaves a transaction to roll back, and
  ** the bytes of a block allocated before begin must stay the map's. */
  if (f->txn && f->txn_h.top > floor) floor = f->txn_h.top;
  if (sync && f->h.top > floor && (f->bflag[0] & FM_B_DIRTY)) {
    n = ahead_of(f, floor, 0, &b);
    if (n * f->h.block_size < DIRECT_MIN) {
      free(b);
      b = NULL;
      n = 0;
    }
  }
  if (n == 0 && !f->spilled) return 0;
  if ((rc = write_ahead(f, b, n, 1)) != 0) return sysfail(f, rc);
  return 0;
}

/* Appends a frame per dirty block under top; the last one commits. */
static int append_frames (fm_file *f) {
  uint64_t bs = f->h.block_size, i, n = 0, pos = f->wal_end;
  uint64_t sum = f->wal_sum;
  unsigned char (*hdr)[FRAME_HDR];
  struct iovec iov[2 * IOV_BATCH];
  int k = 0, rc = 0;
  for (i = 0; i < f->ndirty; i++)
    if (f->dirty[i] * bs < f->h.top) n++;
  if (n == 0) return 0;
  hdr = malloc(IOV_BATCH * FRAME_HDR);
  if (hdr == NULL) return sysfail(f, ENOMEM);
  for (i = 0; i < f->ndirty; i++) {
    uint64_t b = f->dirty[i];
    unsigned char *h = hdr[k];
    if (b * bs >= f->h.top) continue;
    n--;
    put64(h, b * bs);
    put64(h + 8, f->wal_salt);
    put64(h + 16, n == 0 ? f->mapsize : 0);
    sum = checksum(f->map + b * bs, (size_t)bs, sum);
    sum = checksum(h, 24, sum);
    put64(h + 24, sum);
    iov[2 * k].iov_base = h;
    iov[2 * k].iov_len = FRAME_HDR;
    iov[2 * k + 1].iov_base = f->map + b * bs;
    iov[2 * k + 1].iov_len = (size_t)bs;
    if (++k == IOV_BATCH || n == 0) {
      if ((rc = writev_all(f->wal_fd, iov, 2 * k, pos)) != 0) break;
      pos += (uint64_t)k * (FRAME_HDR + bs);
      k = 0;
    }
  }
  free(hdr);
  if (rc != 0) {   /* wal_end stays: the next commit writes over them */
    if (ftruncate(f->wal_fd, (off_t)f->wal_end) != 0) { /* rc stands */ }
    return sysfail(f, rc);
  }
  f->wal_end = pos;
  f->wal_sum = sum;
  return 0;
}

static int sync_journal (fm_file *f) {
  if (f->wal_fd < 0 || f->wal_synced == f->wal_end) return 0;
  if (fdatasync(f->wal_fd) != 0) return sysfail(f, errno);
  f->wal_synced = f->wal_end;
  return 0;
}

int fm_commit (fm_file *f, int sync) {
  uint64_t i, old_end = f->wal_end, old_sum = f->wal_sum;
  int rc;
  if (f->map == NULL) return fail(f, FM_EMISUSE, "the file is closed");
  if (f->readonly) {
    if (f->txn) end_txn(f);
    return 0;
  }
  if (f->faulted) return FM_ELOST;
  if (f->nosync)
    return fail(f, EIO, "cannot commit: a sync of the file failed after "
                "blocks were written into it ahead of the commit; the file "
                "holds the last commit (close it and open it again: a "
                "rollback does not end this)");
  if (f->fd >= 0 && f->ndirty > 0) {
    if (f->wal_fd < 0) {
      if ((rc = open_journal(f)) != 0) return rc;
      old_end = f->wal_end;
      old_sum = f->wal_sum;
    }
    if ((sync || f->spilled) && (rc = write_direct(f, sync)) != 0)
      return rc;
    for (i = 0; i < f->ndirty; i++) {   /* room to record them first */
      if (f->bflag[f->dirty[i]] & FM_B_INWAL) continue;
      if (fm__txn_inwal(f, f->dirty[i]) != 0) return sysfail(f, ENOMEM);
    }
    if ((rc = append_frames(f)) != 0) return rc;
  }
  /* A fault while the frames were made (the file cut short under the
  ** map, a page that could not be read) gave them the zeros that replaced
  ** the map: they must not commit. */
  rc = f->faulted ? FM_ELOST : sync ? sync_journal(f) : 0;
  if (rc != 0) {
    /* Frames the disk may not hold must not commit later either: a
    ** rollback after this failure must stay a rollback after a crash.
    ** Frames of earlier commits below old_end that no sync covered yet
    ** stay to be synced. */
    if (f->wal_fd >= 0 && ftruncate(f->wal_fd, (off_t)old_end) == 0) {
      f->wal_end = old_end;
      if (f->wal_synced > old_end) f->wal_synced = old_end;
      f->wal_sum = old_sum;
    }
    if (rc == FM_ELOST) fm_fault_reason(f);
    return rc;
  }
  for (i = 0; i < f->ndirty; i++)
    f->bflag[f->dirty[i]] &= (unsigned char)~FM_B_DIRTY;
  f->ndirty = 0;
  f->ctop = f->h.top;
  f->spill_hi = 0;
  next_spill(f);
  f->commits++;
  if (f->txn) end_txn(f);
  else f->gen++;
  /* The commit stands whatever the checkpoint does: one that fails is
  ** tried again at the next, and the journal keeps everything till then. */
  if (f->wal_end > JOURNAL_LIMIT && fm_checkpoint(f) != 0)
    f->msg[0] = '\0';
  return 0;
}

static int checkpoint (fm_file *f);

int fm__txn_inwal (fm_file *f, uint64_t b) {
  if (reserve((void **)&f->inwal, f->ninwal, &f->capinwal, 8) != 0)
    return ENOMEM;
  f->inwal[f->ninwal++] = b;
  f->bflag[b] |= FM_B_INWAL;
  return 0;
}

/* Writes what the journal holds into the file, from the map, which holds
** the same bytes: nothing is dirty at a checkpoint. */
int fm_checkpoint (fm_file *f) {
  int held = f->gate, rc;
  if (f->wal_fd < 0 || f->faulted) return 0;
  if (f->ndirty > 0)
    return fail(f, FM_EMISUSE, "a checkpoint with uncommitted changes");
  if (!fm__gate(f, 1)) {   /* readers are mapped: the journal grows */
    f->deferred++;
    return 0;
  }
  rc = checkpoint(f);
  if (!held) fm__gate(f, 0);
  return rc;
}

/* fm_checkpoint, the readers' byte held. */
static int checkpoint (fm_file *f) {
  int rc;
  if ((rc = sync_journal(f)) != 0) return rc;
  if ((rc = write_runs(f, f->inwal, f->ninwal)) != 0) return sysfail(f, rc);
  if (fsync(f->fd) != 0) return sysfail(f, errno);
  drop_runs(f, f->inwal, f->ninwal);   /* the file has them now */
  if ((rc = restart_journal(f)) != 0) return rc;
  f->checkpoints++;
  return 0;
}


/* ---------------------------------------------------------------------- */
/* Recovery                                                                */
/* ---------------------------------------------------------------------- */

/* Reads n bytes at pos; 0, or -1 when the journal ends before them. */
static int readat (int fd, void *p, size_t n, uint64_t pos) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(fd, (char *)p + got, n - got, (off_t)(pos + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

/* Walks the frames of the journal open on fd: *frames gets the committed
** ones (in order), *size the last commit's file size, *end where the
** valid frames end, *tail how many valid frames follow the last commit.
** Returns 0 or ENOMEM; a journal with no valid header has no frames. */
static int scan (int fd, uint32_t *bs, fm_frame **frames, uint64_t *n,
                 uint64_t *size, uint64_t *end, uint64_t *tail,
                 uint64_t *salt_out, uint64_t *sum_out, uint64_t *base) {
  unsigned char h[WAL_HDR], fh[FRAME_HDR];
  unsigned char *blk;
  uint64_t salt, sum, pos = WAL_HDR, cap = 0, total = 0;
  *frames = NULL;
  *n = *size = *tail = *base = 0;
  *end = 0;
  if (readat(fd, h, WAL_HDR, 0) != 0 || memcmp(h, WAL_MAGIC, 8) != 0 ||
      get64(h + 24) != checksum(h, 24, 3))
    return 0;
  *bs = get32(h + 8);
  if (*bs < FM_BLOCKSIZE || *bs % FM_BLOCKSIZE != 0 ||
      *bs > FM_MAX_BLOCKSIZE)
    return 0;
  salt = get64(h + 16);
  sum = get64(h + 24);
  *base = (uint64_t)get32(h + 12) * *bs;
  *end = WAL_HDR;
  *salt_out = salt;
  *sum_out = sum;
  if ((blk = malloc(*bs)) == NULL) return ENOMEM;
  for (;;) {
    uint64_t s;
    if (readat(fd, fh, FRAME_HDR, pos) != 0 ||
        readat(fd, blk, *bs, pos + FRAME_HDR) != 0)
      break;
    if (get64(fh + 8) != salt || get64(fh) % *bs != 0) break;
    s = checksum(blk, *bs, sum);
    s = checksum(fh, 24, s);
    if (get64(fh + 24) != s) break;
    sum = s;
    if (reserve((void **)frames, total, &cap, sizeof **frames) != 0) {
      free(blk);
      free(*frames);
      *frames = NULL;
      return ENOMEM;
    }
    (*frames)[total].off = get64(fh);
    (*frames)[total].pos = pos + FRAME_HDR;
    total++;
    pos += FRAME_HDR + *bs;
    if (get64(fh + 16) != 0) {
      *n = total;
      *size = get64(fh + 16);
      *end = pos;
      *sum_out = sum;
    }
  }
  *tail = total - *n;
  free(blk);
  return 0;
}

int fm__recover (fm_file *f, int mode, fm_frame **frames, uint64_t *n,
                 uint64_t *size) {
  char *j = fm_journal_path(f->path);
  fm_frame *fr = NULL;
  uint64_t nf = 0, sz = 0, end, tail, i, salt = 0, sum = 0, base = 0;
  uint32_t bs = 0;
  unsigned char *blk = NULL;
  int repair = (mode & FM_RECOVER_REPAIR) != 0, wfd, rc, apply;
  mode &= ~FM_RECOVER_REPAIR;
  apply = mode == FM_RECOVER_APPLY;
  *frames = NULL;
  *n = *size = 0;
  if (j == NULL) return sysfail(f, ENOMEM);
  wfd = open(j, (mode == FM_RECOVER_ADOPT ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (wfd < 0) {
    rc = errno;
    free(j);
    return rc == ENOENT ? 0 : fail(f, rc, "journal: %s", strerror(rc));
  }
  rc = scan(wfd, &bs, &fr, &nf, &sz, &end, &tail, &salt, &sum, &base);
  if (rc != 0) goto done;
  if (base != 0 && !repair) {
    /* The blocks the journal's commits build on are gone: laying its
    ** frames over the rest would leave zeros where they were. */
    struct stat st;
    if (fstat(f->fd, &st) != 0) { rc = errno; goto done; }
    if ((uint64_t)st.st_size < base) {
      rc = FM_ECORRUPT;
      fail(f, rc, "the file was cut short: it has %llu bytes, and its "
           "journal's commits build on its first %llu (repair = true "
           "opens it, with zeros for the rest)",
           (unsigned long long)st.st_size, (unsigned long long)base);
      goto refused;
    }
  }
  if (nf > 0) {
    /* Checksums catch damage, not a forged journal: its claims are held
    ** to what a real one can say before any of it is believed. A file
    ** grows by a quarter at a time, so its last commit's size is at most
    ** a few times what the file holds (a lost growth), never more. */
    struct stat st;
    if (fstat(f->fd, &st) != 0) { rc = errno; goto done; }
    if (sz % bs != 0 || sz < bs || sz / 4 > (uint64_t)st.st_size +
        JOURNAL_SLACK) {
      rc = FM_ECORRUPT;
      fail(f, rc, "corrupt journal %s: its last commit says the file has "
           "%llu bytes (it has %llu)", j, (unsigned long long)sz,
           (unsigned long long)st.st_size);
      goto refused;
    }
    for (i = 0; i < nf; i++) {
      if (fr[i].off > sz - bs) {
        rc = FM_ECORRUPT;
        fail(f, rc, "corrupt journal %s: a frame for offset %llu lies past "
             "the %llu bytes of its commit", j,
             (unsigned long long)fr[i].off, (unsigned long long)sz);
        goto refused;
      }
    }
  }
  f->replayed = nf;
  if (!apply) {
    /* Read-only: the caller lays the frames over its map, and keeps the
    ** descriptor to read them; with no whole commit, there is nothing to
    ** lay, and the journal is left for a writer to remove. */
    if (nf == 0) {
      if (mode == FM_RECOVER_ADOPT) {   /* no commit to keep: start anew */
        free(fr);
        close(wfd);
        free(j);
        return 0;
      }
      goto refused;   /* frees and closes; rc is 0 */
    }
    *frames = fr;
    *n = nf;
    *size = sz;
    f->wal_fd = wfd;
    /* A writer adopting the journal appends after its last commit. */
    f->wal_salt = salt;
    f->wal_sum = sum;
    f->wal_end = f->wal_synced = end;
    free(j);
    return 0;
  }
  if (nf > 0) {
    struct stat st;
    if ((blk = malloc(bs)) == NULL) { rc = ENOMEM; goto done; }
    for (i = 0; i < nf; i++) {
      if (readat(wfd, blk, bs, fr[i].pos) != 0) { rc = EIO; goto done; }
      if (pwrite(f->fd, blk, bs, (off_t)fr[i].off) != (ssize_t)bs) {
        rc = errno ? errno : EIO;
        goto done;
      }
    }
    if (fstat(f->fd, &st) != 0) { rc = errno; goto done; }
    if ((uint64_t)st.st_size < sz && ftruncate(f->fd, (off_t)sz) != 0) {
      rc = errno;
      goto done;
    }
    if (fsync(f->fd) != 0) { rc = errno; goto done; }
  }
  if (unlink(j) != 0) { rc = errno; goto done; }
  sync_dir(f->path);
done:
  if (rc != 0) fail(f, rc, "recovering from the journal %s: %s", j,
                    strerror(rc));
refused:
  free(blk);
  free(fr);
  close(wfd);
  free(j);
  return rc;
}


/* ---------------------------------------------------------------------- */
/* Checking                                                                */
/* ---------------------------------------------------------------------- */

void fm__check_journal (fm_file *f, void (*problem) (void *, const char *),
                        void *ud) {
  fm_frame *fr = NULL;
  uint64_t nf, sz, end, tail, i, bs = f->h.block_size, salt, sum, base;
  uint32_t wbs = 0;
  unsigned char *blk, *seen;
  char buf[200];
  uint64_t d, k = 0;
  for (d = 0; d < f->ndirty; d++) {
    if (!(f->bflag[f->dirty[d]] & FM_B_DIRTY)) k++;
  }
  if (k != 0) {
    snprintf(buf, sizeof buf, "journal: %llu blocks listed as changed are "
             "not marked so", (unsigned long long)k);
    problem(ud, buf);
  }
  if (f->wal_fd < 0 || f->readonly) return;
  if (scan(f->wal_fd, &wbs, &fr, &nf, &sz, &end, &tail, &salt, &sum,
           &base) != 0) {
    problem(ud, "journal: out of memory while checking");
    return;
  }
  if (end != f->wal_end || wbs != bs) {
    snprintf(buf, sizeof buf, "journal: its valid commits end at byte "
             "%llu, the engine wrote them up to %llu",
             (unsigned long long)end, (unsigned long long)f->wal_end);
    problem(ud, buf);
    free(fr);
    return;
  }
  /* Each block's latest frame, walking back: a bit per block seen. */
  blk = malloc(bs);
  seen = calloc((size_t)(f->nbflag + 7) / 8, 1);
  for (i = nf; blk != NULL && seen != NULL && i-- > 0; ) {
    uint64_t b = fr[i].off / bs;
    if (b >= f->nbflag || (seen[b / 8] & (1u << (b % 8)))) continue;
    seen[b / 8] |= (unsigned char)(1u << (b % 8));
    if (f->bflag[b] & FM_B_DIRTY) continue;
    if (readat(f->wal_fd, blk, bs, fr[i].pos) != 0 ||
        memcmp(blk, f->map + fr[i].off, bs) != 0) {
      snprintf(buf, sizeof buf, "journal: block %llu differs from its "
               "last committed frame", (unsigned long long)fr[i].off);
      problem(ud, buf);
    }
  }
  free(seen);
  free(blk);
  free(fr);
}
