/* sql_pool: PostgreSQL statements on the I/O loop (src/nodes/sql_pool.c), for the SQL nodes.
 *
 * A target is a compiled connection string: its libpq parameters, the statement timeout, and how
 * to name the server in messages (host:port/dbname, never the password). Each loop keeps, per
 * target, a small pool of non-blocking libpq connections (at most SQL_POOL_MAX); statements beyond
 * that wait in a FIFO. A connection is opened on demand (a host name goes through the project's
 * resolver first: PQconnectStart would call getaddrinfo and block the loop), driven by the loop's
 * watch on its socket, kept while healthy, and dropped when it breaks, times out or is cancelled;
 * the next statement opens another, so a restarted server is simply reconnected to.
 *
 * Values travel as text parameters of PQsendQueryParams ($1..$n), never inside the statement.
 *
 * Threads: sql_target_* are thread-safe on a target nobody frees meanwhile; sql_pool_query and
 * sql_pool_cancel are for the loop's own thread only, and the callback runs there. */
#ifndef KAILASH_SQL_POOL_H
#define KAILASH_SQL_POOL_H

#include <libpq-fe.h>
#include <stddef.h>

struct ioloop;

#define SQL_POOL_MAX 4 /* connections per loop and target */

typedef struct sql_target sql_target;

/* Compiles a connection string (postgresql:// URL or key=value conninfo; the SDK's
 * "postgresql+asyncpg://" style driver suffix is accepted). timeout_ms: the server's
 * statement_timeout on its connections (0: none); connect_timeout_ms bounds resolving plus
 * connecting. NULL with err (which never quotes the string: it may hold a password). Caller frees. */
sql_target *sql_target_new(const char *url, int timeout_ms, int connect_timeout_ms, char *err, size_t errlen);
void sql_target_free(sql_target *t);
/* host:port/dbname, for messages. Borrowed, valid while t is. */
const char *sql_target_describe(const sql_target *t);
/* msg made fit for a client or a log: one line, the password masked. */
void sql_target_scrub(const sql_target *t, const char *msg, char *out, size_t outlen);

/* Why a statement has no result. */
enum sql_fail_kind {
    SQL_FAIL_QUERY = 1, /* the server refused or failed the statement: sqlstate and message */
    SQL_FAIL_DOWN,      /* no connection: unreachable, refused, authentication, lost mid-statement */
    SQL_FAIL_STOP,      /* the loop is stopping */
};

typedef struct sql_failure {
    int kind;
    char sqlstate[8];   /* SQL_FAIL_QUERY: the SQLSTATE ("" when the server gave none) */
    char message[240];  /* scrubbed */
} sql_failure;

typedef struct sql_query sql_query;
/* res: the statement's last result (PGRES_TUPLES_OK or PGRES_COMMAND_OK), the callee's to PQclear;
 * NULL with f set otherwise. */
typedef void (*sql_query_fn)(void *ud, PGresult *res, const sql_failure *f);

/* Runs sql with nparams text values (NULL entries are SQL NULL) on io's pool for t; fn is called
 * exactly once, on io's thread and never from inside this call, unless sql_pool_cancel comes first.
 * sql and values are borrowed until then. NULL when out of memory. */
sql_query *sql_pool_query(struct ioloop *io, const sql_target *t, const char *sql, int nparams,
                          const char *const *values, sql_query_fn fn, void *ud);
/* Withdraws q (fn will not be called): a waiting q leaves the FIFO, a running one's connection is
 * closed, which ends the statement on the server too. */
void sql_pool_cancel(sql_query *q);

/* kailashd's database_url, the SQL nodes' connection string when theirs is absent (copied; NULL
 * or "" for none). Call it before loading workflows (engine_prepare); thread-safe. */
void sql_pool_set_database_url(const char *url);

/* Connections this loop holds for t right now (tests). */
int sql_pool_open_count(struct ioloop *io, const sql_target *t);

#endif
