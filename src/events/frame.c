/* frame: what an engine event looks like to clients (API.md "Events (SSE)"): its name, and its data
 * object, compact JSON written straight into a buffer:
 *
 *   every event     run_id, workflow, ts (RFC 3339 UTC with milliseconds, as run records' times)
 *   node events     node, type (the node's type: "HTTPRequestNode")
 *   node_completed  outputs (left out, with "outputs_truncated": true, past EVENTS_OUTPUTS_MAX bytes)
 *   node_failed     error {code, message}
 *   run_completed   status, duration_ms, outputs (bounded as above)
 *   run_failed      status (failed, timeout or cancelled), duration_ms, error {code, message, node}
 *
 * Also Last-Event-ID, read strictly: anything but a plain decimal number starts from the first event. */
#include <string.h>

#include "events_internal.h"

const char *events_name_of(engine_event_kind k)
{
    static const char *const names[] = {"run_started",   "node_started", "node_completed", "node_skipped",
                                        "node_failed",   "run_completed", "run_failed"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "unknown";
}

int events_name_final(const char *name)
{
    return name && (strcmp(name, "run_completed") == 0 || strcmp(name, "run_failed") == 0);
}

/* ,"key":"value" */
static int put_str(buf *b, const char *key, const char *v)
{
    return buf_append(b, ",\"", 2) || buf_append(b, key, strlen(key)) || buf_append(b, "\":", 2) ||
                   buf_append_json_str(b, v ? v : "")
               ? -1
               : 0;
}

/* ,"outputs":{...}, or ,"outputs_truncated":true when that is larger than EVENTS_OUTPUTS_MAX. */
static int put_outputs(buf *b, json_t *outputs)
{
    if (!outputs)
        return 0;
    size_t mark = b->len;
    if (buf_append(b, ",\"outputs\":", 11) == 0 && buf_append_json(b, outputs) == 0 &&
        b->len - mark <= EVENTS_OUTPUTS_MAX)
        return 0;
    b->len = mark;
    return buf_append(b, ",\"outputs_truncated\":true", 25);
}

static int put_error(buf *b, const engine_event *e, int with_node)
{
    if (buf_append(b, ",\"error\":{\"code\":", 17) || buf_append_json_str(b, e->error_code ? e->error_code : "") ||
        put_str(b, "message", e->error_message))
        return -1;
    if (with_node) {
        const char *node = e->run ? run_error_node(e->run) : "";
        if (node && node[0] ? put_str(b, "node", node) : buf_append(b, ",\"node\":null", 12))
            return -1;
    }
    return buf_append(b, "}", 1);
}

static int put_end(buf *b, const engine_event *e)
{
    if (put_str(b, "status", run_status_name(e->status)))
        return -1;
    if (e->run && (buf_append(b, ",\"duration_ms\":", 15) ||
                   buf_append_json_real(b, (double)(long long)(run_duration_ms(e->run) * 1000.0 + 0.5) / 1000.0)))
        return -1;
    if (e->kind == EV_RUN_COMPLETED)
        return e->run ? put_outputs(b, run_outputs(e->run)) : 0;
    return put_error(b, e, 1);
}

int events_data_of(const engine_event *e, buf *b)
{
    char ts[40];
    util_rfc3339_now(ts, sizeof ts);
    if (buf_append(b, "{\"run_id\":", 10) || buf_append_json_str(b, e->run_id) || put_str(b, "workflow", e->workflow) ||
        put_str(b, "ts", ts))
        return -1;
    if (e->node && (put_str(b, "node", e->node) || put_str(b, "type", e->node_type)))
        return -1;
    int rc = 0;
    if (e->kind == EV_NODE_COMPLETED)
        rc = put_outputs(b, e->outputs);
    else if (e->kind == EV_NODE_FAILED)
        rc = put_error(b, e, 0);
    else if (e->kind == EV_RUN_COMPLETED || e->kind == EV_RUN_FAILED)
        rc = put_end(b, e);
    return rc || buf_append(b, "}", 1) || buf_terminate(b) ? -1 : 0;
}

uint64_t events_parse_last_id(const char *v)
{
    if (!v)
        return 0;
    size_t n = strlen(v);
    if (n == 0 || n > 19 || strspn(v, "0123456789") != n)
        return 0;
    uint64_t id = 0;
    for (size_t i = 0; i < n; i++)
        id = id * 10 + (uint64_t)(v[i] - '0'); /* 19 digits fit in 64 bits */
    return id;
}
