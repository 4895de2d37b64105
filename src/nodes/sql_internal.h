/* sql_internal.h: what the SQL node's files share (sql.c, sql_pool.c, sql_target.c, sql_value.c). */
#ifndef KAILASH_SQL_INTERNAL_H
#define KAILASH_SQL_INTERNAL_H

#include <jansson.h>
#include <libpq-fe.h>

#include "kailash/sql_pool.h"

struct sql_target {
    char *url;     /* the connection string, driver suffix dropped: holds the password */
    char *options; /* the string's own options, then kailashd's session settings */
    char *key;     /* "<timeout_ms>\n<url>": one pool per loop and key */
    char *password; /* for sql_target_scrub; NULL when none */
    char host[256]; /* "" for libpq's default (the local socket) */
    long port;
    int resolve; /* host is a name: resolve it off the loop first */
    int timeout_ms;
    int connect_timeout_ms;
    char describe[300]; /* host:port/dbname */
};

/* A copy of t (the pool keeps its own: a reload frees the node's). NULL when out of memory. */
sql_target *sql_target_dup(const sql_target *t);

/* How values of types with several JSON renderings come out: the SDK's two nodes read Postgres
 * through different drivers (psycopg2 parses json/jsonb, asyncpg leaves them text). */
enum sql_json_mode { SQL_JSON_PARSED, SQL_JSON_TEXT };

/* One value in Postgres's text form (DateStyle ISO, IntervalStyle postgres) as the SDK's
 * _serialize_value gives it: numbers, booleans, numeric as a float, timestamps in Python's
 * isoformat, bytea as base64, interval as total seconds, json per mode; anything else as its text.
 * A new reference, or NULL when out of memory. */
json_t *sql_value_json(Oid type, const char *text, int len, int json_mode);

/* Rewrites the SDK's named placeholders (:name, with parameters a dict) to $1..$n, numbering the
 * names in order of first use; quoted strings, quoted identifiers, comments, dollar-quoted bodies
 * and :: casts are left alone. names receives the used names in $-order (borrowed from params' keys
 * through json_object_iter_key; at most max). Returns the new statement (caller frees) or NULL with
 * err: a name the dict lacks, too many names, out of memory. */
char *sql_named_to_positional(const char *sql, json_t *params, const char **names, int max, int *n, char *err,
                              size_t errlen);

#endif
