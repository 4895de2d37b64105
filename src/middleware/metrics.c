/* metrics: the chain's step that counts every answered request (kailash_http_requests_total and
 * kailash_http_request_duration_seconds) once its answer is set, by the route's pattern, never the
 * path: /runs/<id> is one series, a path no route matched is route="unmatched". It has only after(),
 * which runs for every request whose chain started, early answers (404, 401, 429) included. */
#include "kailash/metrics.h"
#include "kailash/middleware.h"

void mw_metrics_after(kreq *r)
{
    const http_route *route = http_req_route(r);
    metrics_http_request(route ? route->pattern : NULL, http_req_method(r), http_req_answer_status(r),
                         (util_now_ms() - http_req_start_ms(r)) / 1000.0);
}
