/* chain: the middleware table. Order matters and is the design's: request_id -> logging -> auth ->
 * rate_limit -> cache. Only the steps this build has are listed; a new step is one file and one row. */
#include "kailash/middleware.h"

static const mw_step chain[] = {
    {"request_id", mw_request_id_before, NULL},
    {"logging", NULL, mw_logging_after},
    {"hops", mw_hops_before, NULL},
};

int mw_before(kreq *r)
{
    for (size_t i = 0; i < sizeof chain / sizeof chain[0]; i++)
        if (chain[i].before && chain[i].before(r))
            return 1;
    return 0;
}

void mw_after(kreq *r)
{
    for (size_t i = 0; i < sizeof chain / sizeof chain[0]; i++)
        if (chain[i].after)
            chain[i].after(r);
}
