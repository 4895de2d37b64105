/* logging: one JSON access-log line per request on stdout, written when the response is handed over:
 * time, request_id, method, path, status, duration_ms, workflow, run_id, client. The path is logged
 * without its query string (queries may carry tokens); nothing from headers or bodies is logged.
 * The line is formatted directly (this runs once per request, so no JSON tree is built). */
#include <stdio.h>
#include <string.h>

#include "kailash/log.h"
#include "kailash/middleware.h"

static void field_str(buf *b, const char *name, const char *v)
{
    buf_appendf(b, ",\"%s\":", name);
    if (v && *v)
        buf_append_json_str(b, v);
    else
        buf_append(b, "null", 4);
}

void mw_logging_after(kreq *r)
{
    char ts[40];
    util_rfc3339_now(ts, sizeof ts);
    buf b = {0};
    buf_appendf(&b, "{\"time\":\"%s\",\"request_id\":", ts);
    buf_append_json_str(&b, r->request_id);
    field_str(&b, "method", r->method);
    field_str(&b, "path", r->path);
    buf_appendf(&b, ",\"status\":%d,\"duration_ms\":%.3f", r->status, util_now_ms() - r->t0);
    field_str(&b, "workflow", r->workflow);
    field_str(&b, "run_id", r->run_id);
    field_str(&b, "client", r->client_ip);
    buf_append(&b, "}\n", 2);
    if (b.data)
        log_access_line(b.data, b.len);
    buf_free(&b);
}
