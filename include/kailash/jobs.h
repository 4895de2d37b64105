/* jobs: asynchronous runs (src/jobs/), API.md "Running a workflow" (?mode=async, Prefer:
 * respond-async, /execute "mode": "async"), DELETE /runs/{id} and callback_url.
 *
 *   job.c        a job: everything needed to start its run later, on any instance, and its JSON.
 *   jobs.c       accepting (the job durable before the 202), dispatching jobs to their workflow's
 *                executor, what happens when a job's run ends (record, callback, ack), cancel, and
 *                the in-process queue's recovery at start (queued/running records picked up again).
 *   jobs_redis.c the Redis Streams queue: one stream per workflow, a consumer group, consumer
 *                threads of their own, XAUTOCLAIM of a dead instance's jobs, dead letters.
 *   callback.c   callback_url: checked at accept, POSTed the final record on an I/O loop with
 *                backoff and an HMAC-SHA256 signature.
 *
 * Thread safety: every function is thread-safe. */
#ifndef KAILASH_JOBS_H
#define KAILASH_JOBS_H

#include <jansson.h>
#include <stddef.h>

#include "kailash/config.h"

struct ioloop;

typedef struct job {
    char run_id[37];        /* the run's id, made at accept (UUIDv7: its time is the acceptance) */
    char *workflow;
    char *request_id;       /* "" for none */
    char *principal;        /* NULL: anonymous */
    json_t *roles;          /* the caller's roles (array) and attributes (object), or NULL */
    json_t *attributes;
    json_t *inputs;         /* object */
    json_t *parameters;     /* object, or NULL */
    char *callback_url;     /* NULL: none */
    int hops;               /* X-Kailash-Hops of the accepting request */
    int execute;            /* accepted through /execute (only the answer's shape differs) */
    /* the queue's own, not part of the payload: */
    char entry_id[48];      /* Redis: the stream entry's id ("" in-process) */
    int deliveries;         /* Redis: how often the entry was delivered (from XPENDING / XAUTOCLAIM) */
} job;

job *job_new(const char *workflow);
void job_free(job *j);
/* The payload, as queued and as kept in the durable queued record: {"v":1, "run_id", "workflow",
 * "request_id", "principal", "roles", "attributes", "inputs", "parameters", "callback_url", "hops",
 * "execute"}. A new reference, or NULL out of memory. */
json_t *job_to_json(const job *j);
/* Back from a payload someone else wrote (a Redis entry, a journal line): every field checked. NULL
 * with err when it is not a job. */
job *job_from_json(json_t *payload, char *err, size_t errlen);

/* Starts the queue cfg asks for (Redis Streams with redis_url, else in-process) after the store,
 * the engine and Redis are started; recovers the in-process jobs a previous process left. */
int jobs_start(const kconfig *cfg, struct ioloop *const *loops, int nloops, char *err, size_t errlen);
/* Stops taking jobs; runs in flight end (the engine's cancel_all at shutdown); in-process jobs not
 * yet started stay queued in the store for the next start. */
void jobs_stop(double deadline_ms);
/* Whether async runs can be accepted now (the store keeps records); 0 with a reason. */
int jobs_available(char *why, size_t whylen);

enum { JOBS_ACCEPTED = 0, JOBS_OVERLOADED = 1, JOBS_UNAVAILABLE = 2 };
/* Called exactly once, on any thread: JOBS_ACCEPTED once j is durable (its queued record synced to
 * the journal or Postgres, or its entry added to the Redis stream), else why not. */
typedef void (*jobs_accept_fn)(void *ud, int status, const char *why);
/* Accepts j (takes it, whatever happens). */
void jobs_accept(job *j, jobs_accept_fn cb, void *ud);

enum { JOBS_CANCELLED = 0, JOBS_NOT_FOUND = 1, JOBS_FINISHED = 2 };
/* DELETE /runs/{id} for a run whose record says queued or running: cancels it where it is (here, or
 * on another instance through Redis). JOBS_CANCELLED, or JOBS_FINISHED when it ended meanwhile. */
int jobs_cancel(const char *run_id);

/* ---- callbacks (callback.c) ---- */

/* Loads jobs.callback_* (the secret from the environment variable jobs.callback_secret_env). */
int jobs_callback_configure(const kconfig *cfg, char *err, size_t errlen);
/* At accept: whether url may be called back (http or https, a host jobs.callback_allow_hosts
 * allows, not a loopback, link-local or unspecified address unless listed). 0, or -1 with a message
 * for the 400. */
int jobs_callback_check(const char *url, char *err, size_t errlen);
/* POSTs body (copied) to url on an I/O loop, retrying with backoff and jitter up to
 * jobs.callback_max_attempts, then gives up with a log line. Never blocks. */
void jobs_callback_send(const char *url, const char *run_id, const char *body, size_t len);
/* Callbacks still trying (for tests and shutdown). */
int jobs_callback_inflight(void);
void jobs_callback_stop(void);

#endif
