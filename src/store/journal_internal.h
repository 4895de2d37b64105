/* The journal backend's parts (journal.c: the writer thread, segments, retention, reads;
 * journal_scan.c: the line scanner; journal_index.c: the in-memory index). Not a public surface:
 * the fuzz target and the unit tests include it to reach the scanner and the index. */
#ifndef KAILASH_JOURNAL_INTERNAL_H
#define KAILASH_JOURNAL_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "kailash/store.h"
#include "kailash/util.h"

/* The longest line the scanner accepts (a record's JSON without its '\n'). A longer line is skipped
 * without being held in memory, so a hostile segment cannot make start-up allocate without bound. */
#define JOURNAL_LINE_MAX ((size_t)16 << 20)

/* ---- journal_scan.c: segment bytes -> records ---------------------------------------------------- */

/* One record line as the scanner found it. The strings are borrowed for the callback only. */
typedef struct journal_line {
    uint64_t off; /* where the line starts in the segment */
    size_t len;   /* its length, without the '\n' */
    char run_id[37];
    const char *workflow, *status, *principal; /* NULL when the record has none (or not a string) */
} journal_line;

/* Called for each record line in file order; returns 0, or -1 to stop the scan (out of memory). */
typedef int (*journal_line_cb)(void *ud, const journal_line *l);

/* A streaming scanner: bytes are fed in pieces of any size (a read(2) at a time at start-up, one
 * buffer in the fuzz target) and the result does not depend on where the pieces break. A line is a
 * record when it is a JSON object whose run_id is a UUID text (lowercased for the index); anything
 * else (garbage, a blank line, a line over max_line, an unterminated last line) is counted as
 * skipped. Zero-initialise, then journal_scan_init. */
typedef struct journal_scan {
    journal_line_cb cb;
    void *ud;
    size_t max_line;
    uint64_t off;      /* segment offset of the next byte fed */
    uint64_t line_off; /* where the line being carried in part began */
    buf part;          /* a line begun in an earlier piece (never more than max_line bytes) */
    int overlong;      /* the current line passed max_line: its bytes are dropped up to its '\n' */
    size_t records, skipped;
} journal_scan;

void journal_scan_init(journal_scan *s, size_t max_line, journal_line_cb cb, void *ud);
/* Feeds len bytes; 0, or -1 when memory ran out or the callback stopped the scan. */
int journal_scan_feed(journal_scan *s, const char *data, size_t len);
/* The end of the segment: an unterminated last line is a torn write, counted as skipped. */
void journal_scan_finish(journal_scan *s);
void journal_scan_free(journal_scan *s);
/* Whether s holds exactly a 36-character UUID text (either case). */
int journal_is_uuid(const char *s, size_t n);

/* ---- journal_index.c: run_id -> where its newest line is --------------------------------------- */

/* Where a record's bytes are: segment id, offset, length. */
typedef struct jidx_loc {
    char run_id[37];
    uint64_t seg, off;
    size_t len;
} jidx_loc;

typedef struct jidx_entry jidx_entry;

/* A hash map (get) next to an array ordered by run_id (list), under one rwlock: lookups and pages
 * come from many loop threads, changes from the writer thread (and start-up). */
typedef struct jidx {
    pthread_rwlock_t lock;
    jidx_entry **buckets; /* nbuckets, a power of two; chained through the entries */
    size_t nbuckets;
    jidx_entry **sorted; /* n entries, run_id ascending */
    size_t n, cap;
} jidx;

/* The lock must already be initialised (PTHREAD_RWLOCK_INITIALIZER); clears the rest. */
void jidx_init(jidx *ix);
/* Frees every entry (takes the write lock); the index is empty and usable again afterwards. */
void jidx_clear(jidx *ix);

void jidx_wrlock(jidx *ix);
void jidx_unlock(jidx *ix);
/* Adds the record or replaces the run's older one (unless the one held has a higher seq: the
 * writer's batches are in queue order, which two racing puts may not have followed). Strings may
 * be NULL. 0, or -1 out of memory (the index unchanged). Needs the write lock. */
int jidx_put_locked(jidx *ix, const char *run_id, const char *workflow, const char *status, const char *principal,
                    uint64_t seg, uint64_t off, size_t len, uint64_t seq);
/* Drops every entry whose newest line is in segment seg (retention). Takes the write lock. */
void jidx_drop_segment(jidx *ix, uint64_t seg);
/* Fills loc and returns 1 when run_id is indexed, else 0. Takes the read lock. */
int jidx_find(jidx *ix, const char *run_id, jidx_loc *loc);
/* The newest (run_id descending) at most q->limit entries matching q into out (room for
 * q->limit); *more = whether another match lies beyond them. Returns how many. Read lock. */
size_t jidx_select(jidx *ix, const store_query *q, jidx_loc *out, int *more);
/* Entries held (tests). */
size_t jidx_count(jidx *ix);

/* ---- journal.c ----------------------------------------------------------------------------------- */

/* The segment file name for id: "runs-000000000001.jsonl" (names sort by age). out holds 32. */
void journal_seg_name(uint64_t id, char out[32]);
/* The id of a segment file name, or 0 when name is not one. */
uint64_t journal_seg_id(const char *name);

#endif
