/* store: run records (src/store/), API.md "Run records".
 *
 * Every run that got a run_id has a record. The engine's store sink (record.c) writes each top-level
 * run's record when it ends; a cache hit writes its own. Writing is write-behind: store_put copies
 * the record into the pending set and returns at once; the backend's own thread makes it durable in
 * batches (the embedded journal under data_dir, or Postgres with a spool file while it is down) and
 * only then lets it go from the pending set. Reads see the pending set first, so the instance that
 * answered a run can read its record at once.
 *
 *   store.c      the interface: pending set (bounded: store.queue_max, overflow counted as
 *                dropped), reads that merge the pending set with the backend's answer, cursors.
 *   journal.c    the embedded backend: JSON-lines segments, one fdatasync per batch, an index.
 *   pg*.c        the Postgres backend: migrations, batched upserts, spool and replay, reads.
 *   record.c     the engine sink and the record's JSON.
 *
 * Ordering: run ids are UUIDv7 (their first 48 bits are the creation time in ms), so "newest first"
 * is run_id descending, and a cursor is the last run_id of a page.
 *
 * Thread safety: every function is thread-safe. Read callbacks may run on any thread (on the
 * calling one, before store_get or store_list returns, when the answer is at hand). */
#ifndef KAILASH_STORE_H
#define KAILASH_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "kailash/config.h"

/* One record to write. Borrowed by store_put (it copies what it keeps). */
typedef struct store_rec {
    const char *run_id;    /* 36-character lowercase UUIDv7 */
    const char *workflow;
    const char *status;    /* queued, running, completed, failed, timeout, cancelled */
    const char *principal; /* "anonymous", "key:ci", "jwt:alice" */
    const char *json;      /* the whole record, compact JSON, one line */
    size_t len;
} store_rec;

/* What GET /runs asks for. */
#define STORE_LIST_MAX 200
typedef struct store_query {
    const char *workflow;  /* NULL: any */
    const char *status;    /* NULL: any */
    const char *principal; /* NULL: any; else only that principal's runs */
    const char *before;    /* NULL, or a run_id: only runs older than it (run_id < before) */
    int limit;             /* 1..STORE_LIST_MAX */
} store_query;

enum { STORE_OK = 0, STORE_NOT_FOUND = 1, STORE_UNAVAILABLE = 2 };

/* status STORE_OK: json (the record, len bytes, not NUL-terminated) borrowed for the call only. */
typedef void (*store_get_cb)(void *ud, int status, const char *json, size_t len);
/* status STORE_OK: n records newest first (each borrowed for the call), and more: whether older
 * matching runs exist beyond them. */
typedef struct store_page {
    size_t n;
    const char *const *json;
    const size_t *len;
    const char *const *run_id;
    int more;
} store_page;
typedef void (*store_list_cb)(void *ud, int status, const store_page *page);

/* Starts the backend cfg names: Postgres with database_url, else the journal under data_dir, or
 * none with store.enabled false. A journal directory that cannot be written is not an error (the
 * daemon serves, /ready says why); a database_url that does not parse, or migrations that fail, are.
 * Registers the engine sink. 0, or -1 with err. */
int store_start(const kconfig *cfg, char *err, size_t errlen);
/* The settings store_start would refuse without touching the network or the disk (a database_url
 * that does not parse), for `kailashd --check`. 0, or -1 with err (never the URL's password). */
int store_check_config(const kconfig *cfg, char *err, size_t errlen);
/* Writes out everything pending (Postgres down: to the spool) within deadline_ms of util_now_ms(),
 * then stops the backend's threads. Records still pending after the deadline are logged as lost. */
void store_stop(double deadline_ms);
/* 1 when records are kept, 0 with store.enabled false (GET /runs answers 503). */
int store_enabled(void);

/* Adds a record to the pending set and the backend's queue; never blocks on I/O. A later put of the
 * same run_id supersedes the earlier one. -1 (counted and logged as dropped) when the pending set is
 * full or the store is off. */
int store_put(const store_rec *rec);

/* store_put, and cb(ud, 1) on the backend's thread once the record is durable (synced to the
 * journal, committed to Postgres, or synced to its spool), or cb(ud, 0) when it cannot be kept (the
 * pending set is full, the store is off or stopping): an async accept's 202 waits for this. Many
 * such puts share one batch's sync. */
typedef void (*store_durable_fn)(void *ud, int ok);
void store_put_durable(const store_rec *rec, store_durable_fn cb, void *ud);

/* The queued and running records the backend holds (an earlier process's unfinished async jobs),
 * each passed to cb as written (with its "job" member), on the calling thread, before this returns.
 * For the in-process queue's recovery at start. 0, or -1 when the backend cannot say. */
typedef void (*store_each_fn)(void *ud, const char *json, size_t len);
int store_unfinished(store_each_fn cb, void *ud);

void store_get(const char *run_id, store_get_cb cb, void *ud);
void store_list(const store_query *q, store_list_cb cb, void *ud);

/* ---- records (record.c) ---- */

/* The record of a cache hit: a completed run that ran nothing, its outputs the stored bytes. */
typedef struct store_hit {
    const char *run_id, *workflow, *version;
    const char *cache;      /* "HIT-L1" or "HIT-L2" */
    const char *principal;  /* "anonymous" without one */
    const char *request_id;
    json_t *inputs;         /* NULL: {} */
    const char *outputs;    /* JSON text, outputs_len bytes */
    size_t outputs_len;
    double duration_ms;
} store_hit;
void store_record_hit(const store_hit *h);

struct run;
struct buf;
/* The record of an accepted async job, durable before its 202: {"job": payload, "run_id": ...,
 * "status": "queued", ...}. The "job" member carries what the run needs to start after a restart;
 * reads (store_get, store_list) never show it. */
typedef struct store_queued {
    const char *run_id, *workflow, *version, *principal, *request_id;
    json_t *inputs;
    const char *job_json; /* the job's payload, compact JSON, job_len bytes; NULL: none (a Redis job) */
    size_t job_len;
} store_queued;
int store_record_queued(const store_queued *q, struct buf *b);
/* The final record of an async job that never ran (cancelled before it started, dead-lettered):
 * status and error {code, message, node: null} as given, never started. */
typedef struct store_unrun {
    const char *run_id, *workflow, *principal, *request_id;
    json_t *inputs;
    const char *status, *code, *message;
} store_unrun;
int store_record_unrun(const store_unrun *u, struct buf *b);
/* The record of an ended run, appended to b (NUL-terminated). 0, or -1 out of memory. */
int store_record_of_run(const struct run *r, struct buf *b);
/* The same for a run at any stage, led by {"job": payload} when job_json is not NULL (an async
 * job's running record: what a restart needs to run it again). */
int store_record_of_running(const struct run *r, const char *job_json, size_t job_len, struct buf *b);
/* The creation time (Unix ms) a UUIDv7 text carries. */
double store_uuid7_ms(const char *run_id);

/* For /ready: "ok", "down" or "disabled" per check the backend has ("journal" or "postgres"), and a
 * reason when down (why, may be empty). */
typedef struct store_health {
    const char *check; /* "journal", "postgres", or NULL when the store is off */
    int up;
    char why[200];
} store_health;
void store_health_get(store_health *h);

/* Counters, for /metrics and tests. */
typedef struct store_counts {
    uint64_t put, written, dropped;
    size_t pending;
} store_counts;
void store_counts_get(store_counts *c);

/* Cursors: the opaque text of a run_id and back. cursor_encode writes at most 32 characters and a
 * NUL; cursor_decode fills run_id (37 bytes) and returns 0, or -1 for anything it did not make. */
void store_cursor_encode(const char *run_id, char out[33]);
int store_cursor_decode(const char *cursor, char run_id[37]);
/* Whether s is a lowercase or uppercase UUID text (8-4-4-4-12 hex); ids are compared lowercased. */
int store_is_uuid(const char *s);

#endif
