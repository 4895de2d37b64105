/* middleware: the ordered chain every request passes (src/middleware/chain.c holds the table).
 * A step has before(r) and optionally after(r). before() returns
 *   MW_NEXT      go on with the next step;
 *   MW_ANSWERED  it answered (http_reply_*): the chain stops and that answer is sent;
 *   MW_PARKED    it waits on something on this loop (a Redis reply, a timer): the connection stays
 *                suspended, the body unread, until the step calls http_chain_continue(r, answered)
 *                on this loop; the chain then goes on at the next step.
 * The route and its workflow are resolved before the chain (http_req_route, http_req_workflow_def); the route step
 * answers 404/405 in API.md's order, before the access steps. after() runs once when the answer is
 * queued (it can read it: http_req_answer_status, _body, _header), for every request whose
 * chain started, including ones answered early. */
#ifndef KAILASH_MIDDLEWARE_H
#define KAILASH_MIDDLEWARE_H

#include "kailash/http.h"

enum { MW_NEXT = 0, MW_ANSWERED = 1, MW_PARKED = 2 };

typedef struct mw_step {
    const char *name;
    int (*before)(kreq *r);
    void (*after)(kreq *r);
} mw_step;

/* Runs before() steps from *pos on (the server keeps r's position); MW_NEXT when all went on, else
 * what the step said (*pos is then the step after it). */
int mw_before(kreq *r, int *pos);
/* Runs every after(). */
void mw_after(kreq *r);

/* The steps (one file each). */
int mw_request_id_before(kreq *r);
void mw_logging_after(kreq *r);
/* metrics.c: counts the answered request by route pattern, method and status (kailash/metrics.h). */
void mw_metrics_after(kreq *r);
int mw_route_before(kreq *r);
int mw_hops_before(kreq *r);
/* auth.c: authentication (401) and the route's and workflow's roles (403); sets the principal. */
int mw_auth_before(kreq *r);
/* ratelimit.c: GCRA per principal (or client IP) and per workflow, shared through Redis when it is
 * configured and answering, local otherwise; after() writes the rate-limit headers. */
int mw_ratelimit_before(kreq *r);
void mw_ratelimit_after(kreq *r);
/* test_wait.c: inert unless KAILASH_TEST_CHAIN_WAIT=1 was set at start (tests of parking). */
int mw_test_wait_before(kreq *r);

#endif
