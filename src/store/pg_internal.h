/* The Postgres backend's parts (store_postgres, src/store/pg*.c):
 *
 *   pg.c          the backend table: start, stop, health; the state the parts share
 *   pg_conn.c     the URL (checked, described without its password), connecting and running one
 *                 statement with a deadline (libpq's asynchronous calls and poll, so a server that
 *                 stops answering costs a timeout, never a hung thread)
 *   pg_migrate.c  the embedded db/migrations files, applied under an advisory lock
 *   pg_write.c    the writer thread: the queue, batches, and the spool while Postgres is down
 *   pg_batch.c    one batch as one upsert statement
 *   pg_spool.c    the spool file: append (fdatasync) and replay
 *   pg_read.c     the reader pool serving get and list
 *
 * Every connection belongs to one thread: the writer's, or one reader's. */
#ifndef KAILASH_PG_INTERNAL_H
#define KAILASH_PG_INTERNAL_H

#include <libpq-fe.h>
#include <stdatomic.h>

#include "kailash/util.h"
#include "store_internal.h"

#define PG_CONNECT_TIMEOUT_MS 3000.0   /* one connection attempt */
#define PG_WRITE_TIMEOUT_MS 30000.0    /* one batch (the server's own statement_timeout aside) */
#define PG_READ_TIMEOUT_MS 5000.0      /* one read (also the readers' statement_timeout) */
#define PG_MIGRATE_TIMEOUT_MS 120000.0 /* the migrations, lock wait included */
#define PG_RETRY_MIN_MS 250.0          /* the writer's reconnect backoff, doubling up to */
#define PG_RETRY_MAX_MS 1500.0
#define PG_READ_RETRY_MS 1000.0 /* readers try a down server at most this often */

/* ---- pg.c: shared state -------------------------------------------------------------------------- */

typedef struct pg_state {
    char *url;          /* the configured database_url (holds the password: never log it) */
    char *password;     /* the URL's password, or NULL: scrubbed out of every message */
    char describe[300]; /* "host:port/dbname", for logs */
    char data_dir[4096];
    char spool[4200]; /* <data_dir>/pg-spool.jsonl */
    int batch_max;
    atomic_int stopping;   /* set by stop: readers answer what is queued and leave */
    _Atomic double cut_ms; /* stop's deadline less a margin: every wait on the server ends there */
} pg_state;

extern pg_state pg_g;

/* Health as the writer sees it: up, or down with why (already scrubbed). Thread-safe; logs each
 * transition once. */
void pg_health_set(int up, const char *why);

/* ---- pg_conn.c ----------------------------------------------------------------------------------- */

/* Checks url parses as a libpq URI or conninfo string; fills describe (host:port/dbname, never the
 * password) and *password (a new string, or NULL). 0, or -1 with err (never quoting the URL). */
int pg_url_check(const char *url, char *describe, size_t dlen, char **password, char *err, size_t errlen);
/* Connects by deadline_ms (util_now_ms clock), giving up early when *abort becomes non-zero (abort
 * may be NULL) or at pg_g.cut_ms. The connection, or NULL with err. */
PGconn *pg_connect(double deadline_ms, const atomic_int *abort, char *err, size_t errlen);
/* Runs one statement (params: n text values, NULL for SQL NULL; n 0 and params NULL: the simple
 * protocol, which allows several statements) and waits by deadline_ms. The last result (caller
 * PQclears), or NULL on a timeout, abort or lost connection (then the connection is unusable: close
 * it), with err. */
PGresult *pg_exec(PGconn *c, const char *sql, int n, const char *const *params, double deadline_ms,
                  const atomic_int *abort, char *err, size_t errlen);
/* 1 when r succeeded (a command or rows). */
int pg_ok(const PGresult *r);
/* r's error as one line without the password (SQLSTATE first when there is one) into err. */
void pg_result_err(const PGresult *r, char *err, size_t errlen);
/* Copies msg into out without newlines and with the URL's password masked. */
void pg_scrub(const char *msg, char *out, size_t outlen);

/* ---- pg_migrate.c -------------------------------------------------------------------------------- */

/* Applies the missing migrations in order, each in its own transaction, holding a session advisory
 * lock around the whole check so concurrent starters serialise. 0, or -1 with err: *fatal 1 when a
 * migration itself failed (SQL refused), 0 when the connection failed (down, try later). */
int pg_migrate(PGconn *c, int *fatal, char *err, size_t errlen);

/* ---- pg_write.c ---------------------------------------------------------------------------------- */

/* Starts the writer thread; c (may be NULL: down) is its connection from now on, migrated already
 * when not NULL. 0 or -1. */
int pg_writer_start(PGconn *c, char *err, size_t errlen);
void pg_writer_enqueue(store_item *it);
/* Flushes the queue (to Postgres, else to the spool) by deadline_ms, then joins the thread. */
void pg_writer_stop(double deadline_ms);

/* One record of a batch: its run_id (36 characters) and its JSON text. */
typedef struct pg_rec {
    const char *run_id;
    const char *json;
    size_t len;
} pg_rec;
/* Upserts recs (oldest first: of two records of one run the later wins) in one statement. A record
 * Postgres refuses as data (SQLSTATE class 22 or 23) is logged and skipped after a one-by-one retry.
 * 0, or -1 with err when the connection or the server failed. */
int pg_write_batch(PGconn *c, const pg_rec *recs, size_t n, char *err, size_t errlen);

/* ---- pg_spool.c ---------------------------------------------------------------------------------- */

/* Appends recs, one line each, and fdatasyncs. 0, or -1 with err (the file as it was). */
int pg_spool_append(const pg_rec *recs, size_t n, char *err, size_t errlen);
/* Bytes in the spool (0: empty or none). */
long long pg_spool_size(void);
/* Writes the spool to Postgres in batches of batch_max, then truncates it. 0, or -1 with err (the
 * spool kept whole: a later replay writes it again, which the upsert makes harmless). */
int pg_spool_replay(PGconn *c, char *err, size_t errlen);

/* ---- pg_read.c ----------------------------------------------------------------------------------- */

int pg_reader_start(char *err, size_t errlen);
void pg_reader_get(const char *run_id, store_get_cb cb, void *ud);
void pg_reader_list(const store_query *q, store_list_cb cb, void *ud);
/* Answers queued jobs STORE_UNAVAILABLE and joins the readers. */
void pg_reader_stop(void);

#endif
