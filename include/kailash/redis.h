/* redis: Redis on the I/O loops (src/redis/), the way every Redis user reaches it (rate limits now;
 * the L2 cache, Cache nodes and the job queue later). DESIGN.md "Waiting inside the loop".
 *
 *   url.c      redis_url: redis://[user:password@]host[:port][/db] and unix:/path[?db=N]; rediss://
 *              is refused ("TLS to Redis is not built"). The password is kept apart and never
 *              printed: redis_target_describe gives "redis://host:port/db" without it.
 *   conn.c     one hiredis redisAsyncContext per I/O loop, attached to the loop's epoll through
 *              hiredis's adapter hooks (addRead/delRead/addWrite/delWrite/cleanup) as an io_watch;
 *              connects to an address the upstream resolver already has (redisAsyncConnect would
 *              resolve a name synchronously), sends AUTH and SELECT first, reconnects with backoff
 *              when the connection drops. Commands of many requests pipeline on it.
 *   deadline   every command has a deadline (redis_timeout_ms) kept with one loop timer per
 *              connection, at the oldest pending command's deadline (replies come in order): a
 *              command past it is answered NULL (a failure) and the connection is dropped and
 *              reconnected, since a late reply would be matched with the wrong command.
 *   breaker.c  one circuit breaker per process: after REDIS_BREAKER_FAILURES consecutive failures it
 *              opens for REDIS_BREAKER_OPEN_MS, then lets one probe command through (half-open), and
 *              closes when that one is answered. While open, redis_command refuses at once (-1), so
 *              every user falls back to its local behaviour without waiting. Each transition is
 *              logged once.
 *   script.c   Lua scripts by EVALSHA (the SHA-1 computed here); a NOSCRIPT reply is answered by
 *              one EVAL of the script (which also loads it), transparently to the caller.
 *
 * Threads: redis_start, redis_stop and the redis_state / redis_describe readers are thread-safe;
 * redis_command and redis_script_call are for an I/O loop's thread (the connection is that loop's).
 * No hiredis call that blocks ever runs on a loop or worker thread. */
#ifndef KAILASH_REDIS_H
#define KAILASH_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>

struct ioloop;

/* ---- the URL (url.c) ---- */

typedef struct redis_target {
    char host[256];   /* a name or an address; "" for a unix socket */
    int port;         /* 6379 by default */
    char path[108];   /* unix: the socket's path, else "" */
    int db;           /* SELECT db (0 by default) */
    char user[128];   /* "" : none (AUTH password alone) */
    char password[256]; /* "" : none; never logged */
} redis_target;

/* Parses url into *t. 0, or -1 with err naming what is wrong (never the password). */
int redis_url_parse(const char *url, redis_target *t, char *err, size_t errlen);
/* "redis://host:port/db" or "unix:/path?db=N", without user or password. */
void redis_target_describe(const redis_target *t, char *out, size_t outlen);

/* ---- the connections (conn.c) ---- */

#define REDIS_BREAKER_FAILURES 5
#define REDIS_BREAKER_OPEN_MS 1000

/* Gives each of the n loops its connection to url (connecting asynchronously: a Redis that is down
 * at start is not an error, it is a breaker that opens). timeout_ms: every command's deadline.
 * Call once, after engine_start. 0, or -1 with err (a URL that does not parse). */
int redis_start(const char *url, int timeout_ms, struct ioloop *const *loops, int n, char *err, size_t errlen);
/* Closes every connection (pending commands are answered NULL on their loops). Before engine_stop. */
void redis_stop(void);

/* A reply, or NULL when the command failed (connection lost, deadline passed, loop stopping). The
 * reply is hiredis's and valid only during the call. Called once, on the loop that sent it, never
 * from inside redis_command. */
typedef void (*redis_reply_fn)(redisReply *reply, void *ud);

/* Sends one command on the calling loop's connection. 0: done will be called; -1: refused at once
 * (no redis_url, not connected, the breaker open, not a loop thread): done will not be called, fall
 * back now. A reply of type REDIS_REPLY_ERROR is a reply (the caller judges it), not a failure. */
int redis_command(int argc, const char **argv, const size_t *argvlen, redis_reply_fn done, void *ud);

/* ---- scripts (script.c) ---- */

typedef struct redis_script redis_script;
/* A script (text copied, its SHA-1 computed). Any thread; lives until redis_script_free. */
redis_script *redis_script_new(const char *lua);
void redis_script_free(redis_script *s);
/* EVALSHA sha nkeys args...: as redis_command (args[0..nargs), keys first); on NOSCRIPT the script
 * is sent with EVAL once and that reply is the one given to done. */
int redis_script_call(redis_script *s, int nkeys, int nargs, const char **args, const size_t *lens, redis_reply_fn done,
                      void *ud);

/* ---- state (breaker.c) ---- */

/* -1 no redis_url; 0 down (the breaker is open or half-open, or no connection ever made); 1 ok. */
int redis_state(void);
/* "redis://host:port/db" of the configured target ("" when none), for logs and /ready. */
const char *redis_describe(void);

/* Counters for tests and /metrics: commands sent, failed (deadline, connection), refused at once. */
typedef struct redis_stats {
    unsigned long long sent, failed, refused, reconnects;
} redis_stats;
void redis_get_stats(redis_stats *out);

#endif
