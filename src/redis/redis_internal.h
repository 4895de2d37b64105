/* redis_internal.h: what the files of src/redis/ share: the breaker's transitions (breaker.c), the
 * calling loop's connection (conn.c) for scripts (script.c). Not a public surface: kailash/redis.h
 * is the module's contract. */
#ifndef KAILASH_REDIS_INTERNAL_H
#define KAILASH_REDIS_INTERNAL_H

#include "kailash/redis.h"

/* ---- breaker.c ---- */

/* What redis_breaker_allow answers for one command. */
enum { RB_REFUSE = 0, RB_GO = 1, RB_PROBE = 2 };

/* A new configuration: closed, no failure counted, never connected. configured 0: no redis_url. */
void redis_breaker_reset(int configured, const char *describe);
/* RB_GO (closed: one atomic load), RB_PROBE (half-open: this command is the one probe; its answer
 * must be given to redis_breaker_success/failure with probe 1, or redis_breaker_release if it was
 * not sent), or RB_REFUSE (open, or a probe already out). Thread-safe. */
int redis_breaker_allow(void);
void redis_breaker_release(void);
/* A command answered (probe 1: the probe; closes the breaker). Non-probe answers reset the count of
 * failures in a row while closed. */
void redis_breaker_success(int probe);
/* A failure: the probe's (re-opens), or one more in a row (opens at REDIS_BREAKER_FAILURES). why is
 * logged with the opening: it must not hold a secret. */
void redis_breaker_failure(int probe, const char *why);
/* A connection finished its handshake: redis_state may now say 1. The count of failures in a row
 * does not restart: a server that takes connections and PING but lets commands pass their deadline
 * must still open the breaker. */
void redis_breaker_connected(void);
/* Non-zero while closed. */
int redis_breaker_closed(void);
/* When an open breaker lets its probe through (util_now_ms clock); 0 when closed. */
double redis_breaker_reopen_ms(void);

/* ---- conn.c ---- */

/* Sends a command on the calling loop's connection past the breaker (the EVAL that follows a
 * NOSCRIPT, part of a call the breaker already let through). As redis_command otherwise. */
int redis_conn_resend(int argc, const char **argv, const size_t *argvlen, redis_reply_fn done, void *ud);

#endif
