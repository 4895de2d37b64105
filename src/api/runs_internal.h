/* Shared by the run handler (runs.c) and its response cache (runs_cache.c); not a public surface. */
#ifndef KAILASH_RUNS_INTERNAL_H
#define KAILASH_RUNS_INTERNAL_H

#include "kailash/api.h"
#include "kailash/cache.h"
#include "kailash/engine.h"
#include "kailash/ioloop.h"

struct rc_flight;

typedef struct run_req {
    registry *reg;
    executor *ex;
    run *run;
    int execute; /* the /execute shape */
    int prefer_async; /* async because of Prefer: respond-async (the 202 says Preference-Applied) */
    int include_results;
    /* the response cache (runs_cache.c) */
    int cached;            /* looked up (or no-cache), and a completed run is stored */
    int lookup;            /* looked up (else Cache-Control: no-cache: X-Cache BYPASS) */
    cache_key key;
    struct ioloop *io;     /* the request's loop: Redis is asked there */
    json_t *inputs, *params; /* kept while the request waits on L2 or a flight before it runs */
    struct rc_flight *leads; /* the flight this request computes for, or NULL */
    struct rc_flight *joined; /* the flight it waits on, or NULL */
    int locked;            /* it holds the key's lock in Redis (dropped after the store) */
} run_req;

/* runs.c: creates and submits the run for r (inputs and params borrowed). HTTP_PENDING, or HTTP_DONE
 * with an answer set (out of memory, the executor full). */
int runs_start(kreq *r, json_t *inputs, json_t *params);
/* runs.c: a completed run's /run answer appended to b (NUL-terminated); 0, or -1 out of memory. */
int runs_body_completed(buf *b, run *rn, int include_results);
/* runs.c: the HTTP status of a run's error code (upstream_error 502, timeout 504, ...). */
int runs_status_for(const char *code);
/* runs.c: ms rounded to 3 decimals, as answers show durations. */
double runs_ms3(double ms);

/* runs_stream.c: /execute's "mode": "stream": creates r's run (inputs and params borrowed) with its
 * events on and answers at once with the SDK's event stream (start, the run's node events, then
 * complete or error). HTTP_DONE (the stream, or an error answer). */
int runs_start_stream(kreq *r, json_t *inputs, json_t *params);

/* runs_async.c: accepts r's async run (body checked; inputs and params borrowed, callback_url NULL
 * or checked): HTTP_PENDING (the 202 or 503 comes from jobs_accept's answer), or HTTP_DONE answered. */
int runs_accept_async(kreq *r, json_t *inputs, json_t *params, const char *callback_url);

/* runs_cache.c */
enum { RUNS_CACHE_RUN = 2 }; /* besides HTTP_DONE and HTTP_PENDING: not cached, run it now */
/* After the body was checked: a hit answers (HTTP_DONE), a wait on Redis or on another request's
 * run parks (HTTP_PENDING), else RUNS_CACHE_RUN. inputs and params are borrowed. */
int runs_cache_begin(kreq *r, json_t *inputs, json_t *params);
/* A run of r ended (any thread), its answer set, not yet completed: stores a completed run's
 * outputs, adds X-Cache, and answers the requests waiting on it. Then completes r. */
void runs_cache_end(kreq *r, run *rn);
/* Frees the request's cache state (from run_req_free). */
void runs_cache_release(run_req *s);
/* DELETE /cache/{name}: bumps wf's generation (here and in Redis) and drops its L1 entries; how many
 * it dropped. */
size_t runs_cache_purge(const workflow *wf);
/* The L1 layer's counters (zero before the first cacheable request). */
void runs_cache_stats(cache_l1_stats *out);

#endif
