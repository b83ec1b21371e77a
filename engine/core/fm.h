/*
** fm.h: the fmap core. A memory-mapped file of fixed-size blocks with a
** persistent free list and a checksummed control block.
** Plain C: no Lua in this file or in fm.c.
*/
#ifndef FM_H
#define FM_H

#include <stddef.h>
#include <stdint.h>

#define FM_BLOCKSIZE      4096u        /* the default and the smallest */
#define FM_MAX_BLOCKSIZE  (1u << 30)   /* larger ones are refused */
#define FM_VERSION        3            /* on-disk format version */
#define FM_MIN_VERSION    1            /* the oldest one fm_open reads */

/* Flags of fm_open. */
#define FM_READONLY  1   /* map read-only, share the lock with readers */
#define FM_REPAIR    2   /* rebuild the free list from the blocks' marks */

/* Error codes beyond errno. Core functions return 0, an errno value, or
** one of these; f->msg then says what was wrong in a sentence. */
#define FM_EMISUSE   (-1)   /* the caller's mistake: bad offset, double free */
#define FM_ECORRUPT  (-2)   /* the file is damaged: bad mark, bad header */
#define FM_ELOST     (-3)   /* the file was cut short under the map, which
                            ** fm_fault has replaced: f->msg says how */

/* The in-memory header: what one header slot of block 0 holds. */
typedef struct fm_header {
  uint64_t seq;         /* bumped at each header write; newest slot wins */
  uint32_t block_size;  /* bytes per block, a multiple of 4096 */
  uint64_t top;         /* end of the allocated area; beyond it, the tail */
  uint64_t free_head;   /* first free run, 0 if none */
  uint64_t free_blocks; /* blocks on the free list */
  uint64_t free_runs;   /* runs on the free list */
  uint32_t ctl_len;     /* length of the user's control data */
  uint32_t ctl_area;    /* which of the two control areas holds it, 0 or 1 */
  uint64_t ctl_sum;     /* checksum of the control data */
  uint64_t pend_off;    /* a mark to write after this header, 0 if none */
  uint64_t pend_next;   /* what that mark is to say: next run */
  uint64_t pend_blocks; /* and block count */
} fm_header;

/* Per-block flags of the transaction layer (txn.c), one byte a block. */
#define FM_B_DIRTY  1   /* changed since the last commit */
#define FM_B_SAVED  2   /* its state at begin is kept for a rollback */
#define FM_B_INWAL  4   /* has a frame in the journal since its restart */

#define FM_UNDO_TAIL  UINT64_MAX
#define FM_UNDO_FILE  (UINT64_MAX - 1)
typedef struct fm_undo {
  uint64_t block;       /* block number */
  uint64_t copy;        /* index of its saved bytes in undo_buf, or
                        ** FM_UNDO_TAIL: it was tail, and rolls back to
                        ** 0s; FM_UNDO_FILE: the file holds its bytes */
  int was_dirty;        /* it had changes of its own before begin */
} fm_undo;

typedef struct fm_file {
  unsigned char *map;   /* the mapping, NULL when closed */
  uint64_t mapsize;     /* bytes mapped: the file's size */
  int fd;               /* -1 when anonymous or closed */
  int readonly;         /* mapped PROT_READ; every change is refused */
  char *path;           /* malloc'd copy, NULL when anonymous */
  fm_header h;          /* the live header, written to block 0 as it changes */
  int slot;             /* the header slot written last, 0 or 1 */
  uint64_t remaps;      /* how many times the map has moved or grown */
  uint64_t clean_from;  /* blocks from here on are zero: grown, never used */
  int faulted;          /* the map failed and fm_fault replaced it */
  uint64_t lost_size;   /* the file's size then, if fstat could tell */
  uint32_t version;     /* the format version the file had at open */
  /* Transactions and the journal: txn.c. */
  unsigned char *bflag; /* FM_B_* of each block of the map */
  uint64_t nbflag;      /* entries in bflag: mapsize / block size */
  unsigned char need;   /* flags a stored-to block must have already for
                        ** fm_touch to have nothing to do */
  int bshift;           /* log2 of the block size, 0 if not a power of 2 */
  uint64_t gen;         /* bumped by begin, commit and rollback */
  uint64_t *dirty;      /* blocks with FM_B_DIRTY, in the order touched */
  uint64_t ndirty, capdirty;
  int txn;              /* in an explicit transaction */
  int txn_discard;      /* its rollback may drop private pages (below) */
  fm_header txn_h;      /* the header, slot and clean_from at begin */
  int txn_slot;
  uint64_t txn_clean_from;
  fm_undo *undo;        /* blocks with FM_B_SAVED */
  uint64_t nundo, capundo;
  unsigned char *undo_buf;   /* their saved bytes, a block each */
  uint64_t nundo_buf, capundo_buf;   /* in blocks */
  uint64_t *inwal;      /* blocks with FM_B_INWAL */
  uint64_t ninwal, capinwal;
  int wal_fd;           /* the journal, -1 when there is none */
  uint64_t wal_end;     /* bytes of it in use: header and frames */
  uint64_t wal_synced;  /* bytes of it known to be on disk */
  uint64_t wal_salt;    /* this generation's salt, which its frames carry */
  uint64_t wal_sum;     /* the checksum chain's last link */
  uint64_t commits;     /* transactions committed since open */
  uint64_t checkpoints; /* journals copied into the file since open */
  int gate;             /* holds the readers' byte write-locked: no
                        ** reader is mapped while the file changes */
  uint64_t deferred;    /* checkpoints put off because readers were open */
  uint64_t ctop;        /* top as of the last commit: the file's committed
                        ** state allocates nothing from here on */
  uint64_t direct;      /* blocks commits wrote straight into the file */
  uint64_t spill;       /* bytes of changes held before new blocks are
                        ** written ahead of the commit; 0: never */
  uint64_t spill_next;  /* dirty blocks at which to look again */
  int spilled;          /* blocks were written ahead since the last commit,
                        ** not yet synced */
  uint64_t spill_hi;    /* the end of the highest block written ahead (or
                        ** by a failed commit) since the last commit */
  int nosync;           /* a sync failed after blocks were written ahead
                        ** and dropped from the map: no later commit may
                        ** count on them */
  uint64_t replayed;    /* frames a crashed writer's journal held at open:
                        ** copied into the file, or laid over the map */
  char msg[192];        /* what went wrong, for FM_EMISUSE and friends */
} fm_file;

typedef struct fm_stats {
  uint64_t size;          /* file size in bytes */
  uint64_t block_size;
  uint64_t blocks;        /* size / block_size, the control block included */
  uint64_t used_blocks;   /* allocated to the user */
  uint64_t free_blocks;   /* on the free list */
  uint64_t free_runs;
  uint64_t tail_blocks;   /* never allocated, past top */
  uint64_t control_data;  /* bytes of control data */
  uint64_t remaps;
  uint64_t dirty_blocks;  /* changed since the last commit */
  uint64_t journal_bytes; /* of the journal in use, 0 if none */
  uint64_t journal_blocks;/* distinct blocks with frames in the journal */
  uint64_t undo_copies;   /* blocks copied for the open transaction's
                          ** rollback */
  uint64_t commits;       /* since open */
  uint64_t checkpoints;   /* since open */
  uint64_t replayed;      /* journal frames recovered at open */
  uint64_t deferred;      /* checkpoints put off for readers */
  uint64_t direct_blocks; /* blocks commits wrote straight into the file,
                          ** past the last commit's top: not journaled */
  int in_transaction;
  int readers;            /* other BlockFiles have it open read-only */
  int writer;             /* another BlockFile has it open for writing */
} fm_stats;

/* Creates (truncating) a file of one control block; block_size must be a
** multiple of 4096. Returns 0 or an errno value; on failure f is closed. */
int fm_create (const char *path, uint32_t block_size, fm_file *f);

/* fm_create for a file that is not there: creates path, or takes it if it
** is empty (what a creator that died before its first write leaves), and
** returns EEXIST, with f closed and the file untouched, when it holds
** bytes. Two processes creating one path race safely: one creates it,
** the other gets EEXIST or "file is locked" (EWOULDBLOCK). The caller
** opens the file with fm_open on EEXIST. */
int fm_create_new (const char *path, uint32_t block_size, fm_file *f);

/* Opens an existing file, validating its header; flags is 0 or a mix of
** FM_READONLY and FM_REPAIR. Read-only opens share the advisory lock,
** read-write opens hold it alone. A read-write open redoes the header's
** pending mark, if any. FM_REPAIR (not with FM_READONLY) ignores the
** header's free list and rebuilds it from the blocks carrying a valid or
** torn free mark, in one crash-safe step; a file shorter than its header
** says (a growth a power loss lost) is first extended, up to four times
** its size. Returns 0, an errno value,
** FM_EMISUSE (bad flags) or FM_ECORRUPT (f->msg says why); on failure f
** is closed. */
int fm_open (const char *path, int flags, fm_file *f);

/* A BlockFile in anonymous memory, with no file behind it. */
int fm_anonymous (uint32_t block_size, fm_file *f);

/* Rolls back an open transaction, commits what changed since the last
** commit (durably), copies the journal into the file, trims the unused
** tail, unmaps, unlocks and closes. When that commit fails with an error
** a retry may clear (an errno value: disk full, an I/O error, no
** memory) and no transaction was open, f stays open with every change
** still uncommitted, nothing lost: f->map is not NULL then, and the
** caller closes again (or fm_discard). Any other error leaves f closed:
** a failed checkpoint or trim (the commit stands, in the journal), a
** commit after the rollback of an open transaction, or one that cannot
** succeed in this session (a failed sync after a spill wrote blocks
** ahead; FM_ELOST). A faulted f, or one whose file was cut short under
** the map (FM_ELOST), is only unmapped and closed: its file is left as
** whoever cut it left it, never extended again with zeros. */
int fm_close (fm_file *f);

/* Closes without committing: what changed since the last commit is
** dropped, as a crash would drop it (the file and its journal hold the
** last commit). For a close that failed and left f open, and for a file
** about to be removed. Nothing to do when f is closed. */
void fm_discard (fm_file *f);

/* fm_close for a caller that cannot try again (a finalizer, a tool):
** closes whatever happens, dropping what a failed commit kept open (and
** saying so in f->msg). Returns fm_close's result. */
int fm_close_final (fm_file *f);

/* Allocates n contiguous zeroed blocks; stores the first one's offset in
** *off. Returns 0, an errno value (growth failed), FM_ECORRUPT (the free
** list is damaged) or FM_ELOST (a growth found the file cut short under
** the map: it does not extend it with zeros); on failure the file is
** unchanged. */
int fm_allocate (fm_file *f, uint64_t n, uint64_t *off);

/* Frees n blocks starting at off. Returns 0 or FM_EMISUSE (not aligned, out
** of the allocated area, a block already free); nothing is freed then. */
int fm_free (fm_file *f, uint64_t off, uint64_t n);

/* Whether [off, off + n blocks) is an allocated run a caller may use:
** 0, or FM_EMISUSE with f->msg saying why. */
int fm_check_range (fm_file *f, uint64_t off, uint64_t n);

/* Whether the block at off carries a valid free mark. */
int fm_is_free (const fm_file *f, uint64_t off);

/* The control data, valid until the next change of it or of the map. */
const unsigned char *fm_control_data (const fm_file *f, size_t *len);
size_t fm_max_control_data (const fm_file *f);

/* Replaces the control data; with sync, also msyncs asynchronously.
** Returns 0, an errno value, or FM_EMISUSE (too long). */
int fm_set_control_data (fm_file *f, const void *data, size_t len, int sync);

/* Outside an explicit transaction, commit what changed: fm_sync without
** waiting for the disk, fm_flush durably. Inside one, fm_sync only checks
** the map and fm_flush is FM_EMISUSE (the commit is the caller's). Both
** return FM_ELOST for a file cut short under the map, whose cut pages no
** sync can write. */
int fm_sync (fm_file *f);
int fm_flush (fm_file *f);

void fm_get_stats (const fm_file *f, fm_stats *st);

/* Walks the header, the free list and every block's mark. Calls report for
** each problem found (at most max_reports of them); returns the count. */
typedef void (*fm_reporter) (void *ud, const char *problem);
uint64_t fm_check (fm_file *f, fm_reporter report, void *ud,
                   uint64_t max_reports);

/* Visits the free runs in list order, at most f->h.free_runs of them;
** stops when fn returns non-zero. Returns FM_ECORRUPT if a run is bad. */
typedef int (*fm_run_visitor) (void *ud, uint64_t off, uint64_t blocks);
int fm_free_runs (fm_file *f, fm_run_visitor fn, void *ud);

/* When a page of the map has no file behind it (the file was truncated
** under the map, a hole of a sparse file met a full disk, a read failed),
** an access raises SIGBUS. From that signal's handler: replaces the whole
** map, at the same address, with zeros of anonymous memory, so that the
** access completes and no later store reaches the file, and marks f
** faulted; fm_close then only unmaps and closes. Makes no allocation and
** no library call but fstat (the size, for fm_fault_reason) and mmap:
** safe in a handler. Returns 0 or an errno. */
int fm_fault (fm_file *f);

/* Why the map of a faulted f failed, in f->msg ("the file was truncated
** to N bytes under its map of M", or a failed page). Not for a handler. */
const char *fm_fault_reason (fm_file *f);

/* Transactions (txn.c). Every store into the map, by the core or by a
** caller, is announced first with fm_touch; a block's first store since
** the last commit puts it in the next commit, and its first store in an
** explicit transaction saves its bytes for a rollback. Outside an explicit
** transaction, changes are committed by fm_sync, fm_flush, fm_close and
** fm_set_control_data with sync. */

/* Announces a store into [off, off + len) of the map, which the caller
** has checked is inside it. Returns 0, or ENOMEM (nothing was stored
** yet, and the caller must not store). */
int fm_touch_slow (fm_file *f, uint64_t first, uint64_t last);
static inline int fm_touch (fm_file *f, uint64_t off, uint64_t len) {
  uint64_t b, e;
  if (len == 0) return 0;
  if (f->bshift) { b = off >> f->bshift; e = (off + len - 1) >> f->bshift; }
  else { b = off / f->h.block_size; e = (off + len - 1) / f->h.block_size; }
  for (; b <= e; b++)
    if ((f->bflag[b] & f->need) != f->need) return fm_touch_slow(f, b, e);
  return 0;
}

/* Starts an explicit transaction. FM_EMISUSE if one is open already or
** the file is read-only. Stores nothing. */
int fm_begin (fm_file *f);

/* Commits everything changed since the last commit, explicit transaction
** or not: appends the changed blocks to the journal and, with sync,
** waits until they are on disk. Returns 0, an errno value or FM_ELOST
** (also when the map faulted while the frames were made: frames of its
** zeros never commit); on failure the file on disk is as at the last
** commit, and the changes stay in memory, uncommitted (an explicit
** transaction stays open). */
int fm_commit (fm_file *f, int sync);

/* Ends an explicit transaction, restoring every block it changed, the
** header, the free list and the control data as they were at begin.
** FM_EMISUSE outside a transaction. Never fails otherwise. */
int fm_rollback (fm_file *f);

/* Copies the journal into the file and empties it. 0 or an errno value. */
int fm_checkpoint (fm_file *f);

/* Bytes of changed blocks a file holds in memory before it writes those
** allocated since the last commit into the file ahead of the commit (see
** txn.c); 0: never. FM_SPILL by default. */
#define FM_SPILL (64u << 20)
void fm_set_spill (fm_file *f, uint64_t bytes);

/* Writes the blocks allocated since the last commit, but for the newest
** changed, into the file ahead of the commit, if the changes held have
** passed the spill size. Called where no store is half done (fm_allocate's
** entry). Never fails: what it cannot write stays in memory. */
void fm__spill (fm_file *f);

/* The journal's path for a file's path: malloc'd, NULL when out of
** memory. */
char *fm_journal_path (const char *path);

/* Removes a file and its journal. 0 or an errno value. */
int fm_unlink (const char *path);

/* Reads the journal beside a file before fm_open maps it (fm_open calls
** it). FM_RECOVER_APPLY copies its committed frames into the file, syncs
** and removes it. FM_RECOVER_READ records them in *frames (malloc'd pairs
** of block offset and journal position, latest last) for the caller to
** lay over the map; FM_RECOVER_ADOPT too, and keeps the journal open for
** writing after its last commit: a writer beside readers, which must not
** change the file under them. *size is the file size the last commit
** had, 0 if none. A file shorter than the committed top its journal's
** generation began with was cut short: refused (FM_ECORRUPT) before
** anything is read or written, unless FM_RECOVER_REPAIR is or'ed in. */
typedef struct fm_frame { uint64_t off, pos; } fm_frame;
#define FM_RECOVER_READ   0
#define FM_RECOVER_APPLY  1
#define FM_RECOVER_ADOPT  2
#define FM_RECOVER_REPAIR 4   /* or'ed in: a file cut short is no error */
int fm__recover (fm_file *f, int mode, fm_frame **frames, uint64_t *n,
                 uint64_t *size);

/* Readers beside a writer. A writer holds flock(LOCK_EX) and a write
** lock on byte FM_LOCK_WRITER of the file; a reader a read lock on byte
** FM_LOCK_READERS (open file description locks: a process's own
** BlockFiles count as others). Whatever writes into the file itself (a
** checkpoint, the trim at close, create's truncation) first takes the
** readers' byte for writing, without waiting: with readers mapped, it is
** put off. fm__gate takes it (1) or gives it back (0); taking returns 1
** when held. */
#define FM_LOCK_WRITER   0
#define FM_LOCK_READERS  1
int fm__gate (fm_file *f, int take);

/* Releases the transaction layer's memory and the journal's descriptor. */
void fm__txn_free (fm_file *f);

/* Records that the journal holds block b (FM_B_INWAL). 0 or ENOMEM. */
int fm__txn_inwal (fm_file *f, uint64_t b);

/* Sizes the per-block flags to the map (after it grows). 0 or ENOMEM. */
int fm__txn_resize (fm_file *f);

/* Walks the journal for fm_check. */
void fm__check_journal (fm_file *f, void (*problem) (void *, const char *),
                        void *ud);

static inline unsigned char *fm_ptr (const fm_file *f, uint64_t off) {
  return f->map + off;
}

#endif
