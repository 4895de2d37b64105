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

/* Writes n digits of v into p. */
static void digits(char *p, long long v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
}

/* "2026-11-27T10:00:00.123Z" (24 characters) for unix_ms, without strftime and printf: three a
 * record, and a record a request. The date is the civil-from-days conversion (H. Hinnant's). */
void store_rfc3339_ms(double unix_ms, char out[24])
{
    long long ms = llround(unix_ms), s = ms / 1000, days = s / 86400, sod = s % 86400;
    long long z = days + 719468, era = z / 146097, doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
    long long y = yoe + era * 400 + (m <= 2);
    memcpy(out, "0000-00-00T00:00:00.000Z", 24);
    digits(out, y, 4);
    digits(out + 5, m, 2);
    digits(out + 8, d, 2);
    digits(out + 11, sod / 3600, 2);
    digits(out + 14, sod / 60 % 60, 2);
    digits(out + 17, sod % 60, 2);
    digits(out + 20, ms % 1000, 3);
}

/* ,"key":"2026-11-27T10:00:00.123Z" (key a literal) */
#define put_time(b, key, unix_ms) put_time_(b, ",\"" key "\":\"", sizeof key + 4, unix_ms)
static int put_time_(buf *b, const char *head, size_t hlen, double unix_ms)
{
    char t[24];
    store_rfc3339_ms(unix_ms, t);
    return buf_append(b, head, hlen) != 0 || buf_append(b, t, 24) != 0 ? -1 : buf_append(b, "\"", 1);
}

/* ,"key":"value" or ,"key":null for NULL or "" (key a literal) */
#define put_str(b, key, v) put_str_(b, ",\"" key "\":", sizeof key + 3, v)
static int put_str_(buf *b, const char *head, size_t hlen, const char *v)
{
    if (buf_append(b, head, hlen) != 0)
        return -1;
    return v && *v ? buf_append_json_str(b, v) : buf_append(b, "null", 4);
}

/* The fields every record has, up to "inputs": {"run_id", "workflow", "version", "status", led by
 * {"job": payload} when job_json is not NULL (an async job's queued or running record). */
static int put_head_job(buf *b, const char *job_json, size_t job_len, const char *id, const char *wf_name,
                        const char *version, const char *status)
{
    if (buf_reserve(b, 512 + job_len) != 0)
        return -1;
    if (job_json && (buf_append(b, "{\"job\":", 7) != 0 || buf_append(b, job_json, job_len) != 0 ||
                     buf_append(b, ",\"run_id\":", 10) != 0))
        return -1;
    if (!job_json && buf_append(b, "{\"run_id\":", 10) != 0)
        return -1;
    return buf_append_json_str(b, id) != 0 || put_str(b, "workflow", wf_name) != 0 || put_str(b, "version", version) != 0 ||
                   put_str(b, "status", status) != 0
               ? -1
               : 0;
}

static int put_head(buf *b, const char *id, const char *wf_name, const char *version, const char *status)
{
    return put_head_job(b, NULL, 0, id, wf_name, version, status);
}

/* wait_ms < 0: not started (queued); duration_ms < 0: not finished (queued or running): null. */
static int put_tail(buf *b, const char *cache, const char *principal, const char *request_id, double created,
                    double wait_ms, double duration_ms)
{
    if (put_str(b, "cache", cache) != 0 || put_str(b, "principal", principal) != 0 ||
        put_str(b, "request_id", request_id) != 0 || put_time(b, "created_at", created) != 0 ||
        (wait_ms < 0 ? put_str(b, "started_at", NULL) : put_time(b, "started_at", created + wait_ms)) != 0)
        return -1;
    if (duration_ms < 0)
        return put_str(b, "finished_at", NULL) != 0 || buf_append(b, ",\"duration_ms\":null}", 20) != 0 ||
                       buf_terminate(b) != 0
                   ? -1
                   : 0;
    return put_time(b, "finished_at", created + duration_ms) != 0 || buf_append(b, ",\"duration_ms\":", 15) != 0 ||
                   buf_append_json_real(b, round(duration_ms * 1000.0) / 1000.0) != 0 || buf_append(b, "}", 1) != 0 ||
                   buf_terminate(b) != 0
               ? -1
               : 0;
}

static int put_error(buf *b, const run *r, run_status st)
{
    if (st == RUN_COMPLETED || st == RUN_RUNNING || st == RUN_QUEUED)
        return buf_append(b, ",\"error\":null", 13);
    const char *code = st == RUN_CANCELLED && !*run_error_code(r) ? "cancelled" : run_error_code(r);
    const char *node = run_error_node(r);
    if (buf_append(b, ",\"error\":{\"code\":", 17) != 0 || buf_append_json_str(b, code) != 0 ||
        buf_append(b, ",\"message\":", 11) != 0 || buf_append_json_str(b, run_error_message(r)) != 0)
        return -1;
    /* "node" always: null when the run failed outside any node (its timeout, a cancel) */
    if (buf_append(b, ",\"node\":", 8) != 0 || (*node ? buf_append_json_str(b, node) : buf_append(b, "null", 4)) != 0)
        return -1;
    return buf_append(b, "}", 1);
}

int store_record_of_running(const run *r, const char *job_json, size_t job_len, buf *b)
{
    const workflow *wf = run_workflow(r);
    run_status st = run_get_status(r);
    json_t *outputs = st == RUN_COMPLETED ? run_outputs(r) : NULL;
    if (put_head_job(b, job_json, job_len, run_id(r), wf->name, wf->version, run_status_name(st)) != 0 ||
        buf_append(b, ",\"inputs\":", 10) != 0 || buf_append_json(b, run_inputs(r)) != 0 ||
        buf_append(b, ",\"outputs\":", 11) != 0 || (outputs ? buf_append_json(b, outputs) : buf_append(b, "null", 4)) != 0 ||
        put_error(b, r, st) != 0)
        return -1;
    double created = store_uuid7_ms(run_id(r));
    if (st == RUN_RUNNING) /* started_at: the run's own clock, from its creation (an accepted job's) */
        return put_tail(b, run_cache_tag(r), run_principal(r), run_request_id(r), created, run_wait_ms(r), -1);
    return put_tail(b, run_cache_tag(r), run_principal(r), run_request_id(r), created, run_wait_ms(r),
                    run_duration_ms(r));
}

int store_record_of_run(const run *r, buf *b)
{
    return store_record_of_running(r, NULL, 0, b);
}

int store_record_queued(const store_queued *q, buf *b)
{
    if (put_head_job(b, q->job_json, q->job_len, q->run_id, q->workflow, q->version, "queued") != 0 ||
        buf_append(b, ",\"inputs\":", 10) != 0 || (q->inputs ? buf_append_json(b, q->inputs) : buf_append(b, "{}", 2)) != 0 ||
        buf_append(b, ",\"outputs\":null,\"error\":null", 28) != 0)
        return -1;
    return put_tail(b, "BYPASS", q->principal, q->request_id, store_uuid7_ms(q->run_id), -1, -1);
}

static void put_built(const char *id, const char *wf_name, const char *status, const char *principal, buf *b)
{
    store_rec rec = {id, wf_name, status, principal, b->data, b->len};
    store_put(&rec);
}

static void on_run_end(const run_summary *s)
{
    const run *r = s->run;
    if (run_depth(r) > 0 || run_is_async(r)) /* an async job's own module writes its record, durably */
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

int store_record_unrun(const store_unrun *u, buf *b)
{
    if (put_head(b, u->run_id, u->workflow, NULL, u->status) != 0 || buf_append(b, ",\"inputs\":", 10) != 0 ||
        (u->inputs ? buf_append_json(b, u->inputs) : buf_append(b, "{}", 2)) != 0 ||
        buf_append(b, ",\"outputs\":null,\"error\":{\"code\":", 32) != 0 || buf_append_json_str(b, u->code) != 0 ||
        buf_append(b, ",\"message\":", 11) != 0 || buf_append_json_str(b, u->message) != 0 ||
        buf_append(b, ",\"node\":null}", 13) != 0)
        return -1;
    return put_tail(b, "BYPASS", u->principal, u->request_id, store_uuid7_ms(u->run_id), -1, -1);
}

static const engine_sink record_sink = {.name = "run records", .on_run_end = on_run_end};

int store_record_sink_add(void)
{
    static int added;
    if (added)
        return 0;
    added = 1;
    return engine_sink_add(&record_sink);
}
