/* cache: DELETE /cache/{name} (admin; API.md). The workflow's purge generation goes up here and in
 * Redis, so every entry made before is unreachable at once in L1 and L2 (no KEYS or SCAN), and this
 * instance's L1 entries of the workflow are dropped now: {"purged": N} counts those. Other instances
 * read the new generation within about a second (src/cache/gens.c). */
#include <stdio.h>

#include "runs_internal.h"

int api_cache_purge(kreq *r)
{
    const workflow *wf = http_req_workflow_def(r);
    size_t n = runs_cache_purge(wf);
    http_reply_json(r, 200, json_pack("{s:I}", "purged", (json_int_t)n));
    return HTTP_DONE;
}
