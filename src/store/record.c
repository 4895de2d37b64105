/* record: a run's record (API.md "Run records") as the store keeps it, one compact JSON line written
 * straight into a buffer (no tree), and the engine sink that puts one for every run a request or a
 * job started (a WorkflowNode's inner run is part of its caller's, and has none of its own).
 *
 * The times come from the run id: a UUIDv7 carries its creation time in ms, the clock the API
 * orders runs by; started_at and finished_at add the run's own waits to it. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kailash/engine.h"
#include "kailash/log.h"
#include "kailash/util.h"
#include "store_internal.h"

int store_record_sink_add(void);

double store_uuid7_ms(const char *run_id)
{
    double ms = 0;
    for (int i = 0; i < 13; i++) {
        if (i == 8)
            continue;
        char c = run_id[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 0;
        ms = ms * 16 + v;
    }
    return ms;
}

/* ,"key":"2026-11-27T10:00:00.123Z" */
static int put_time(buf *b, const char *key, double unix_ms)
{
    long long ms = llround(unix_ms);
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    char t[40];
    gmtime_r(&s, &tm);
    size_t n = strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(t + n, sizeof t - n, ".%03dZ", (int)(ms % 1000));
    return buf_appendf(b, ",\"%s\":\"%s\"", key, t);
}

static int put_str(buf *b, const char *key, const char *v)
{
    if (buf_appendf(b, ",\"%s\":", key) != 0)
        return -1;
    return v && *v ? buf_append_json_str(b, v) : buf_append(b, "null", 4);
}

/* The fields every record has, after "run_id" and before "inputs". */
static int put_head(buf *b, const char *id, const char *wf_name, const char *version, const char *status)
{
    return buf_reserve(b, 512) != 0 || buf_append(b, "{\"run_id\":", 10) != 0 || buf_append_json_str(b, id) != 0 ||
                   put_str(b, "workflow", wf_name) != 0 || put_str(b, "version", version) != 0 ||
                   put_str(b, "status", status) != 0
               ? -1
               : 0;
}

static int put_tail(buf *b, const char *cache, const char *principal, const char *request_id, double created,
                    double wait_ms, double duration_ms)
{
    return put_str(b, "cache", cache) != 0 || put_str(b, "principal", principal) != 0 ||
                   put_str(b, "request_id", request_id) != 0 || put_time(b, "created_at", created) != 0 ||
                   put_time(b, "started_at", created + wait_ms) != 0 ||
                   put_time(b, "finished_at", created + duration_ms) != 0 ||
                   buf_append(b, ",\"duration_ms\":", 15) != 0 ||
                   buf_append_json_real(b, round(duration_ms * 1000.0) / 1000.0) != 0 || buf_append(b, "}", 1) != 0 ||
                   buf_terminate(b) != 0
               ? -1
               : 0;
}

static int put_error(buf *b, const run *r, run_status st)
{
    if (st == RUN_COMPLETED)
        return buf_append(b, ",\"error\":null", 13);
    const char *code = st == RUN_CANCELLED && !*run_error_code(r) ? "cancelled" : run_error_code(r);
    const char *node = run_error_node(r);
    if (buf_append(b, ",\"error\":{\"code\":", 17) != 0 || buf_append_json_str(b, code) != 0 ||
        buf_append(b, ",\"message\":", 11) != 0 || buf_append_json_str(b, run_error_message(r)) != 0)
        return -1;
    if (*node && (buf_append(b, ",\"node\":", 8) != 0 || buf_append_json_str(b, node) != 0))
        return -1;
    return buf_append(b, "}", 1);
}

int store_record_of_run(const run *r, buf *b)
{
    const workflow *wf = run_workflow(r);
    run_status st = run_get_status(r);
    json_t *outputs = st == RUN_COMPLETED ? run_outputs(r) : NULL;
    if (put_head(b, run_id(r), wf->name, wf->version, run_status_name(st)) != 0 ||
        buf_append(b, ",\"inputs\":", 10) != 0 || buf_append_json(b, run_inputs(r)) != 0 ||
        buf_append(b, ",\"outputs\":", 11) != 0 || (outputs ? buf_append_json(b, outputs) : buf_append(b, "null", 4)) != 0 ||
        put_error(b, r, st) != 0)
        return -1;
    return put_tail(b, run_cache_tag(r), run_principal(r), run_request_id(r), store_uuid7_ms(run_id(r)), run_wait_ms(r),
                    run_duration_ms(r));
}

static void put_built(const char *id, const char *wf_name, const char *status, const char *principal, buf *b)
{
    store_rec rec = {id, wf_name, status, principal, b->data, b->len};
    store_put(&rec);
}

static void on_run_end(const run_summary *s)
{
    const run *r = s->run;
    if (run_depth(r) > 0)
        return;
    buf b = {0};
    if (store_record_of_run(r, &b) == 0)
        put_built(s->run_id, s->workflow, run_status_name(s->status), run_principal(r), &b);
    else
        log_msg(LOG_ERROR, "run %s: out of memory writing its record", s->run_id);
    buf_free(&b);
}

void store_record_hit(const store_hit *h)
{
    if (!store_enabled())
        return;
    buf b = {0};
    double created = store_uuid7_ms(h->run_id);
    if (put_head(&b, h->run_id, h->workflow, h->version, "completed") != 0 || buf_append(&b, ",\"inputs\":", 10) != 0 ||
        (h->inputs ? buf_append_json(&b, h->inputs) : buf_append(&b, "{}", 2)) != 0 || buf_append(&b, ",\"outputs\":", 11) != 0 ||
        buf_append(&b, h->outputs, h->outputs_len) != 0 || buf_append(&b, ",\"error\":null", 13) != 0 ||
        put_tail(&b, h->cache, h->principal, h->request_id, created, 0, h->duration_ms) != 0)
        log_msg(LOG_ERROR, "run %s: out of memory writing its record", h->run_id);
    else
        put_built(h->run_id, h->workflow, "completed", h->principal, &b);
    buf_free(&b);
}

static const engine_sink record_sink = {"run records", on_run_end, NULL};

int store_record_sink_add(void)
{
    static int added;
    if (added)
        return 0;
    added = 1;
    return engine_sink_add(&record_sink);
}
