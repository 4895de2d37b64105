/* runs: POST /workflows/{name}/run and the Kailash-compatible POST /workflows/{name}/execute.
 *
 * prepare (before the body is read): the workflow exists (404), Content-Length is within
 * max_body_bytes (413), a body is JSON (415). handle: parse and check the body (400), the workflow's
 * access conditions against the inputs (403, with authentication on), the inputs against the
 * workflow's schema (400 invalid_inputs), then hand the run to the workflow's executor, which runs
 * it as the caller the auth step found (templates' principal.*).
 * The run's done callback builds the answer on whatever thread ended the run and resumes the
 * connection; a short CPU-only workflow ends before exec_submit returns and is answered without a
 * suspend. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kailash/auth.h"
#include "kailash/jobs.h"
#include "runs_internal.h"

static void run_req_free(void *p)
{
    run_req *s = p;
    if (s->run)
        run_release(s->run);
    runs_cache_release(s);
    registry_release(s->reg);
    free(s);
}

static int is_json_type(const char *ct)
{
    while (ct && isspace((unsigned char)*ct))
        ct++;
    if (!ct || strncasecmp(ct, "application/json", 16) != 0)
        return 0;
    return ct[16] == '\0' || ct[16] == ';' || ct[16] == ' ';
}

static int reply_errorf(kreq *r, int status, const char *code, json_t *details, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int reply_errorf(kreq *r, int status, const char *code, json_t *details, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    http_reply_error(r, status, code, msg, details);
    return HTTP_DONE;
}

int api_run_resolve(kreq *r)
{
    run_req *s = calloc(1, sizeof *s);
    http_req_set_unresolved(r, 1);
    if (!s)
        return HTTP_CONTINUE; /* answered 404 by the route step; memory is short anyway */
    http_req_set_state(r, s, run_req_free);
    s->reg = registry_acquire();
    s->ex = s->reg ? registry_find(s->reg, http_req_param(r)) : NULL;
    if (!s->ex)
        return HTTP_CONTINUE;
    http_req_set_unresolved(r, 0);
    http_req_set_workflow_def(r, exec_workflow(s->ex));
    http_req_set_workflow_name(r, http_req_param(r));
    return HTTP_CONTINUE;
}

int api_run_prepare(kreq *r)
{
    size_t max = http_server_config()->max_body_bytes;
    long long cl = http_req_content_length(r);
    if (cl > 0 && (unsigned long long)cl > max)
        return reply_errorf(r, 413, "payload_too_large", NULL, "the body is larger than max_body_bytes (%zu)", max);
    int has_body = cl > 0 || (cl < 0 && http_req_header(r, "Transfer-Encoding"));
    if (has_body && !is_json_type(http_req_header(r, "Content-Type")))
        return reply_errorf(r, 415, "unsupported_media_type", NULL, "the body must be application/json");
    return HTTP_CONTINUE;
}

/* ---- the body -------------------------------------------------------------------------------- */

static int check_keys(kreq *r, json_t *body, int execute)
{
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        int known = strcmp(k, "inputs") == 0 || strcmp(k, "parameters") == 0 ||
                    strcmp(k, execute ? "mode" : "callback_url") == 0;
        if (!known) {
            reply_errorf(r, 400, "bad_request", NULL, "unknown top-level key '%.64s' (expected inputs, parameters%s)",
                         k, execute ? ", mode" : ", callback_url");
            return -1;
        }
    }
    return 0;
}

static int check_parameters(kreq *r, const workflow *wf, json_t *params)
{
    const char *k;
    json_t *v;
    if (!params)
        return 0;
    if (!json_is_object(params)) {
        reply_errorf(r, 400, "bad_request", NULL, "parameters: expected an object keyed by node id");
        return -1;
    }
    json_object_foreach(params, k, v)
    {
        if (workflow_node_index(wf, k) < 0) {
            reply_errorf(r, 400, "bad_request", NULL, "parameters: '%.64s' is not a node of workflow '%s'", k,
                         wf->name);
            return -1;
        }
        if (!json_is_object(v)) {
            reply_errorf(r, 400, "bad_request", NULL, "parameters.%.64s: expected an object", k);
            return -1;
        }
    }
    return 0;
}

enum { MODE_SYNC, MODE_ASYNC, MODE_STREAM };

/* Prefer: respond-async among the header's preferences (RFC 7240: comma-separated, case-insensitive). */
static int prefers_async(const char *prefer)
{
    for (const char *p = prefer; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, ",; \t");
        if (n == 13 && strncasecmp(p, "respond-async", 13) == 0)
            return 1;
        p += strcspn(p, ",");
    }
    return 0;
}

/* The run's mode: /run takes ?mode= or Prefer: respond-async, /execute its body's "mode". -1 answered. */
static int check_mode(kreq *r, json_t *body, int execute)
{
    json_t *mode = json_object_get(body, "mode");
    if (execute && mode && !json_is_string(mode))
        return reply_errorf(r, 400, "bad_request", NULL, "mode: expected \"sync\", \"async\" or \"stream\""), -1;
    const char *m = execute ? (mode ? json_string_value(mode) : NULL) : http_req_query(r, "mode");
    int md = !m || strcmp(m, "sync") == 0 ? MODE_SYNC : strcmp(m, "async") == 0 ? MODE_ASYNC
             : execute && strcmp(m, "stream") == 0 ? MODE_STREAM : -1;
    if (md < 0)
        return reply_errorf(r, 400, "bad_request", NULL, "mode '%.16s': expected %s", m,
                            execute ? "sync, async or stream" : "sync or async"),
               -1;
    if (!execute && !m && prefers_async(http_req_header(r, "Prefer"))) {
        md = MODE_ASYNC;
        ((run_req *)http_req_state(r))->prefer_async = 1;
    }
    json_t *cb = json_object_get(body, "callback_url");
    if (cb && md != MODE_ASYNC)
        return reply_errorf(r, 400, "bad_request", NULL, "callback_url is only for asynchronous runs"), -1;
    char err[200];
    if (cb && !json_is_string(cb))
        return reply_errorf(r, 400, "bad_request", NULL, "callback_url: expected a string"), -1;
    if (cb && jobs_callback_check(json_string_value(cb), err, sizeof err) != 0)
        return reply_errorf(r, 400, "bad_request", NULL, "callback_url: %s", err), -1;
    return md;
}

/* /execute: an input key equal to a node id is scoped to that node (the SDK's rule). */
static void scope_inputs(const workflow *wf, json_t *inputs, json_t **params)
{
    for (size_t i = 0; i < wf->nnodes; i++) {
        json_t *v = json_object_get(inputs, wf->nodes[i].id);
        if (!json_is_object(v))
            continue;
        if (!*params)
            *params = json_object();
        json_t *cur = json_object_get(*params, wf->nodes[i].id);
        json_t *merged = json_copy(v);
        if (cur)
            json_object_update(merged, cur);
        json_object_set_new(*params, wf->nodes[i].id, merged);
        json_object_del(inputs, wf->nodes[i].id);
    }
}

/* Parses and checks the body; returns 0 with new references in *inputs and *params (and the mode,
 * and the callback URL for an async run, a copy), or answers. */
static int body_parse(kreq *r, const workflow *wf, int execute, json_t **inputs, json_t **params, int *md,
                      char **callback_url)
{
    json_error_t je;
    const buf *raw = http_req_body(r);
    json_t *body = raw->len ? json_loadb(raw->data, raw->len, JSON_REJECT_DUPLICATES, &je) : json_object();
    if (!body)
        return reply_errorf(r, 400, "bad_request", NULL, "body is not valid JSON: %s (line %d, column %d)", je.text,
                            je.line, je.column),
               -1;
    int rc = -1;
    if (!json_is_object(body)) {
        reply_errorf(r, 400, "bad_request", NULL, "body: expected a JSON object");
        goto out;
    }
    json_t *in = json_object_get(body, "inputs"), *pa = json_object_get(body, "parameters");
    if (check_keys(r, body, execute) || (*md = check_mode(r, body, execute)) < 0 || check_parameters(r, wf, pa))
        goto out;
    json_t *cb = json_object_get(body, "callback_url");
    if (cb && !(*callback_url = strdup(json_string_value(cb)))) {
        reply_errorf(r, 500, "internal", NULL, "out of memory");
        goto out;
    }
    if (in && !json_is_object(in)) {
        reply_errorf(r, 400, "bad_request", NULL, "inputs: expected an object");
        goto out;
    }
    *inputs = in ? json_copy(in) : json_object();
    *params = pa ? json_copy(pa) : NULL;
    if (execute)
        scope_inputs(wf, *inputs, params);
    char msg[400];
    if (workflow_check_request(wf, *inputs, *params, msg, sizeof msg) != 0) {
        reply_errorf(r, 400, "bad_request", NULL, "%s", msg);
        json_decref(*inputs);
        json_decref(*params);
        *inputs = *params = NULL;
        goto out;
    }
    rc = 0;
out:
    json_decref(body);
    return rc;
}

/* ---- answering --------------------------------------------------------------------------------- */

int runs_status_for(const char *code)
{
    if (strcmp(code, "bad_request") == 0)
        return 400;
    if (strcmp(code, "upstream_error") == 0)
        return 502;
    if (strcmp(code, "overloaded") == 0) /* a workflow a WorkflowNode calls has a full queue */
        return 503;
    if (strcmp(code, "timeout") == 0)
        return 504;
    return 500;
}

double runs_ms3(double ms)
{
    return round(ms * 1000.0) / 1000.0;
}

/* Appends ,"key":v when v is not NULL (as json_object_set would have left the key out). */
static int put_optional(buf *b, const char *key, json_t *v)
{
    if (!v)
        return 0;
    return buf_append(b, ",", 1) != 0 || buf_append_json_str(b, key) != 0 || buf_append(b, ":", 1) != 0 ||
                   buf_append_json(b, v) != 0
               ? -1
               : 0;
}

/* The answer of a completed run, written straight into b: the bytes json_pack's object would dump
 * to, keys in the same order, without building it (a dozen allocations per run). */
int runs_body_completed(buf *b, run *rn, int include_results)
{
    json_t *outputs = run_outputs(rn);
    if (!outputs || buf_reserve(b, 500) != 0 || buf_append(b, "{\"run_id\":", 10) != 0 ||
        buf_append_json_str(b, run_id(rn)) != 0 || buf_append(b, ",\"workflow\":", 12) != 0 ||
        buf_append_json_str(b, run_workflow(rn)->name) != 0 || buf_append(b, ",\"status\":", 10) != 0 ||
        buf_append_json_str(b, run_status_name(run_get_status(rn))) != 0 ||
        buf_append(b, ",\"outputs\":", 11) != 0 || buf_append_json(b, outputs) != 0 ||
        buf_append(b, ",\"duration_ms\":", 15) != 0 || buf_append_json_real(b, runs_ms3(run_duration_ms(rn))) != 0)
        return -1;
    if (include_results) {
        json_t *skipped = run_skipped(rn);
        int rc = put_optional(b, "results", run_results(rn)) != 0 || put_optional(b, "skipped", skipped) != 0;
        json_decref(skipped);
        if (rc)
            return -1;
    }
    return buf_append(b, "}", 1) != 0 || buf_terminate(b) != 0 ? -1 : 0;
}

static json_t *body_execute(run *rn)
{
    const workflow *wf = run_workflow(rn);
    return json_pack("{s:O,s:f,s:s,s:s,s:s}", "outputs", run_results(rn), "execution_time",
                     run_duration_ms(rn) / 1000.0, "workflow_id", wf->name, "version", wf->version, "run_id",
                     run_id(rn));
}

static void reply_failed(kreq *r, run *rn)
{
    if (run_get_status(rn) == RUN_CANCELLED) { /* the daemon is stopping (a client that left gets nothing) */
        http_reply_error(r, 503, "unavailable", "the run was cancelled: the server is shutting down",
                         json_pack("{s:s,s:s}", "run_id", run_id(rn), "status", "cancelled"));
        return;
    }
    const char *code = run_error_code(rn), *node = run_error_node(rn);
    char msg[400];
    if (node[0])
        snprintf(msg, sizeof msg, "node '%s': %s", node, run_error_message(rn));
    else
        util_copy(msg, sizeof msg, run_error_message(rn));
    json_t *details = json_pack("{s:s,s:s}", "run_id", run_id(rn), "status", run_status_name(run_get_status(rn)));
    if (node[0])
        json_object_set_new(details, "node", json_string(node));
    http_reply_error(r, runs_status_for(code), code, msg, details);
    if (strcmp(code, "overloaded") == 0) /* as the executor's own 503 (after the answer, as there) */
        http_reply_header(r, "Retry-After", "1");
}

/* The client left before its answer: the run stops (its transfers are aborted, no node starts). */
static void run_req_left(kreq *r)
{
    run_req *s = http_req_state(r);
    if (s && s->run)
        run_cancel(s->run);
}

static void on_run_done(run *rn, void *ud)
{
    kreq *r = ud;
    run_req *s = http_req_state(r);
    buf b = {0};
    if (run_get_status(rn) == RUN_COMPLETED && s->execute)
        http_reply_json(r, 200, body_execute(rn));
    else if (run_get_status(rn) == RUN_COMPLETED) {
        if (runs_body_completed(&b, rn, s->include_results) != 0)
            buf_free(&b);
        http_reply_buf(r, 200, &b); /* empty: 500 "out of memory" */
    } else
        reply_failed(r, rn);
    http_reply_header(r, "X-Run-ID", run_id(rn));
    runs_cache_end(r, rn); /* X-Cache, the store, the requests waiting on this run; then completes r */
}

static int run_handle(kreq *r, int execute)
{
    run_req *s = http_req_state(r);
    const workflow *wf = exec_workflow(s->ex);
    json_t *inputs = NULL, *params = NULL;
    int md = MODE_SYNC;
    char *callback_url = NULL;
    s->execute = execute;
    const char *inc = http_req_query(r, "include");
    s->include_results = inc && strstr(inc, "results") != NULL;
    if (body_parse(r, wf, execute, &inputs, &params, &md, &callback_url) != 0) {
        free(callback_url);
        return HTTP_DONE;
    }
    const auth_principal *who = http_req_principal(r);
    char msg[300];
    /* before the schema: a caller the conditions refuse learns nothing about the inputs it expects */
    int rc = HTTP_DONE;
    json_t *violations = NULL;
    if (auth_ctx_enabled(auth_ctx_current()) && auth_access_conditions(wf, who, inputs, msg, sizeof msg) != 0) {
        reply_errorf(r, 403, "forbidden", NULL, "%s", msg);
        goto out;
    }
    violations = json_array();
    if (wf->inputs_schema && schema_validate(wf->inputs_schema, inputs, violations) > 0) {
        reply_errorf(r, 400, "invalid_inputs", json_pack("{s:O}", "violations", violations),
                     "inputs do not match the workflow's schema");
        goto out;
    }
    if (md == MODE_ASYNC) { /* not cached: the job runs later, maybe elsewhere */
        rc = runs_accept_async(r, inputs, params, callback_url);
        goto out;
    }
    if (md == MODE_STREAM) { /* not cached either: the client asked to watch it run */
        rc = runs_start_stream(r, inputs, params);
        goto out;
    }
    rc = runs_cache_begin(r, inputs, params);
    if (rc == RUNS_CACHE_RUN)
        rc = runs_start(r, inputs, params);
out:
    json_decref(violations);
    json_decref(inputs);
    json_decref(params);
    free(callback_url);
    return rc;
}

int runs_start(kreq *r, json_t *inputs, json_t *params)
{
    run_req *s = http_req_state(r);
    const workflow *wf = exec_workflow(s->ex);
    const auth_principal *who = http_req_principal(r);
    run_opts o = {.request_id = http_req_request_id(r),
                  .principal_id = who ? auth_principal_id(who) : NULL,
                  .principal_roles = auth_principal_roles(who),
                  .principal_attributes = auth_principal_attributes(who),
                  .inputs = inputs,
                  .parameters = params,
                  .hops = http_req_hops(r),
                  .cache = s->cached && s->lookup ? "MISS" : "BYPASS",
                  .done = on_run_done,
                  .ud = r};
    s->run = run_create(s->ex, &o);
    if (!s->run)
        return reply_errorf(r, 500, "internal", NULL, "out of memory");
    http_req_set_run_id(r, run_id(s->run));
    run_retain(s->run); /* one for exec_submit to take, one kept for the answer */
    http_req_on_leave(r, run_req_left);
    if (exec_submit(s->ex, s->run, 1) == EXEC_OVERLOADED) {
        run_release(s->run);
        http_req_set_run_id(r, "");
        reply_errorf(r, 503, "overloaded", NULL, "workflow '%s' is at capacity; retry later", wf->name);
        http_reply_header(r, "Retry-After", "1");
        return HTTP_DONE;
    }
    return HTTP_PENDING;
}

int api_run(kreq *r)
{
    return run_handle(r, 0);
}

int api_execute(kreq *r)
{
    return run_handle(r, 1);
}
