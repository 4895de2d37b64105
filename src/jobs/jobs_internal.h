/* Shared inside src/jobs/ only: the contract between jobs.c (accept, dispatch, ends) and the Redis
 * Streams queue (jobs_redis.c). */
#ifndef KAILASH_JOBS_INTERNAL_H
#define KAILASH_JOBS_INTERNAL_H

#include "kailash/config.h"
#include "kailash/ioloop.h"
#include "kailash/jobs.h"

/* ---- jobs.c, for the queues ---- */

enum { JOBS_DISPATCH_OK = 0, JOBS_DISPATCH_FULL = 1, JOBS_DISPATCH_FAILED = 2 };
/* Starts j's run on this instance: JOBS_DISPATCH_OK (j taken: its run is queued in or running on
 * its workflow's executor; when it ends, jobs.c writes the final record and, once that is durable,
 * calls jobs_redis_ack for a Redis job), JOBS_DISPATCH_FULL (the executor has no room: j not taken,
 * try again later), JOBS_DISPATCH_FAILED (the job cannot start here: its workflow is not loaded,
 * the payload is bad; j not taken, why says it). */
int jobs_dispatch(job *j, char *why, size_t whylen);
/* Whether workflow name has room for one more job now (the consumer asks before it reads). */
int jobs_room(const char *workflow);
/* Writes the final record of a job that will never run (dead-lettered): status failed, error
 * {"code": "internal", "message": why}. Returns once the record is put (write-behind). */
void jobs_record_dead(const job *j, const char *why);
/* The final record of a job cancelled before it started (status cancelled). */
void jobs_record_cancelled(const job *j);

/* ---- jobs_redis.c ---- */

/* With redis_url: creates the consumer group of each workflow's stream and starts
 * jobs.consumers threads, each with its own blocking Redis connection (never a loop's). */
int jobs_redis_start(const kconfig *cfg, char *err, size_t errlen);
void jobs_redis_stop(void);
/* 1 while Redis takes jobs (the breaker closed), 0 when async accepts fall back in-process. */
int jobs_redis_up(void);
/* On an I/O loop: XADD of j's payload to its workflow's stream through the loop's async Redis
 * connection (one command). cb(ud, 1) once added, cb(ud, 0) when Redis refused or timed out. j is
 * borrowed for the call only. */
void jobs_redis_enqueue(const job *j, void (*cb)(void *ud, int ok), void *ud);
/* After j's final record is durable: XACK (and XDEL) of its entry. Any thread. */
void jobs_redis_ack(const job *j);
/* A cancel for run_id that is not running here: told to every instance (PUBLISH), and remembered
 * for a while (SET with an expiry) so a consumer that takes the job later drops it. */
void jobs_redis_cancel(const char *run_id);
/* What a consumer calls when a cancel for run_id arrives (jobs.c: cancels it if it runs here). */
void jobs_cancel_local(const char *run_id);

/* ---- callback.c and callback_send.c ---- */

/* What a callback takes from the configuration when it is sent (callback.c fills it). */
typedef struct jobs_cb_opts {
    int max_attempts;
    long timeout_ms;
    long connect_timeout_ms;
    double backoff_ms;  /* the first retry's bound */
    int verify_tls;
    int listed;         /* the URL's host is in the allow list: any address may be connected to */
    char signature[80]; /* "sha256=<hex>", "" when unsigned */
} jobs_cb_opts;

/* The URL checked against the current configuration and the body signed: 0 with *o, or -1. */
int jobs_cb_prepare(const char *url, const char *body, size_t len, jobs_cb_opts *o, char *err, size_t errlen);
/* Whether an address text is loopback, link-local or unspecified (IPv4-mapped forms too). */
int jobs_cb_ip_forbidden(const char *ip);
/* callback_send.c: sends are taken again (configure, after a stop in tests). */
void jobs_cb_started(void);

#endif
