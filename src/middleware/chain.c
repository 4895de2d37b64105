/* chain: the middleware table. Order matters and is the design's: request_id -> logging -> metrics -> route ->
 * (hops) -> auth -> rate_limit -> cache. after() steps run in the same order, once the answer is
 * set: rate_limit's adds its headers to the answer; logging reads the request's notes, not headers. Only the steps this build has are listed; a new step is one
 * file and one row. route answers what routing found before the chain (404, 405, an unknown
 * workflow, an ambiguous framing), so the access steps after it see only real targets. */
#include "kailash/middleware.h"

static const mw_step chain[] = {
    {"request_id", mw_request_id_before, NULL},
    {"logging", NULL, mw_logging_after},
    {"metrics", NULL, mw_metrics_after},
    {"route", mw_route_before, NULL},
    {"hops", mw_hops_before, NULL},
    {"auth", mw_auth_before, NULL},
    {"rate_limit", mw_ratelimit_before, mw_ratelimit_after},
    {"test_wait", mw_test_wait_before, NULL},
};

#define NSTEPS (int)(sizeof chain / sizeof chain[0])

/* The position is the server's (a field of the private kreq, handed over as a pointer): the chain
 * only needs to read and advance it, and no step or handler may touch it, so it gets no accessor. */
int mw_before(kreq *r, int *pos)
{
    while (*pos < NSTEPS) {
        const mw_step *s = &chain[(*pos)++];
        int rc = s->before ? s->before(r) : MW_NEXT;
        if (rc != MW_NEXT)
            return rc;
    }
    return MW_NEXT;
}

void mw_after(kreq *r)
{
    for (int i = 0; i < NSTEPS; i++)
        if (chain[i].after)
            chain[i].after(r);
}
