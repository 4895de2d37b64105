/* logging: one JSON access-log line per request on stdout, written when the response is handed over:
 * time, request_id, method, path, status, duration_ms, workflow, run_id. The path is logged without
 * its query string (queries may carry tokens); nothing from headers or bodies is logged. */
#include <stdio.h>
#include <string.h>

#include "kailash/log.h"
#include "kailash/middleware.h"

void mw_logging_after(kreq *r)
{
    char ts[40];
    util_rfc3339_now(ts, sizeof ts);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:i,s:f,s:s?,s:s?,s:s}", "time", ts, "request_id", r->request_id,
                          "method", r->method, "path", r->path, "status", r->status, "duration_ms",
                          (double)(long long)((util_now_ms() - r->t0) * 1000) / 1000.0, "workflow",
                          r->workflow[0] ? r->workflow : NULL, "run_id", r->run_id[0] ? r->run_id : NULL,
                          "client", r->client_ip);
    if (!o)
        return;
    char line[4096];
    size_t n = json_dumpb(o, line, sizeof line - 1, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (n == 0 || n >= sizeof line - 1)
        return;
    line[n] = '\n';
    log_access_line(line, n + 1);
}
