/* openapi_paths: the paths of the OpenAPI document. One row per operation of API.md that this
 * build may serve; a row is in the document only when the router's table takes its method and path
 * (http_route_find on a probe path), so the document never describes a route the build lacks, and
 * its auth column (never, yes, admin) comes from the router's row, not from a second copy here.
 *
 * Error answers: every operation lists the ones the middleware chain may give on any route (400 for
 * a malformed X-Kailash-Hops, 508 loop_detected, 500), the auth ones that follow from the route's
 * auth column and the config (401 and security with authentication on; 403 for admin routes, and
 * for a workflow's routes when its gateway.access may refuse), 429 where the rate limiter runs, and
 * the row's own. 405 belongs to no operation (it answers a method a path does not list), so it is
 * only in components/responses, named in info.description. Each refers to components/responses,
 * whose bodies refer to the one Error schema. */
#include <stdio.h>
#include <string.h>

#include "kailash/api.h"
#include "kailash/auth.h"
#include "openapi_internal.h"

enum {
    OA_RUN = 1,       /* a run route: X-Run-ID, X-Cache on its answer; a concrete path per workflow */
    OA_WF_ACCESS = 2, /* about one workflow: its gateway.access may refuse (403) with auth on */
    OA_METRICS = 4,   /* /metrics: text/plain, never rate-limited, 404 while enable_monitoring is off */
    OA_READY = 8,     /* 503 answers the Ready shape (degraded), not an Error */
    OA_SSE = 16,      /* the 200 is a text/event-stream (the run's events) */
    OA_STREAM = 32,   /* the 200 may also be a text/event-stream (/execute's stream mode) */
    OA_NO_OK = 64,    /* no 200: the answer is the 202 only */
};

typedef struct oa_op {
    const char *method, *path; /* the document's path template */
    const char *probe;         /* a path of this shape the router must take */
    const char *id, *tag, *summary;
    const char *ok;     /* components/schemas of the 200 answer; NULL: any JSON object (or text) */
    const char *params; /* components/parameters, space-separated */
    const char *body;   /* components/schemas of the request body, or NULL */
    const char *accepted; /* components/schemas of a 202 answer, or NULL */
    const char *errors; /* its own error statuses, space-separated (besides the chain's and auth's) */
    int flags;
} oa_op;

static const oa_op ops[] = {
    {"GET", "/health", "/health", "getHealth", "health", "Liveness", "Health", "", NULL, NULL, "", 0},
    {"GET", "/ready", "/ready", "getReady", "health", "Readiness: the dependencies' last known state", "Ready", "",
     NULL, NULL, "503", OA_READY},
    {"GET", "/metrics", "/metrics", "getMetrics", "health", "Prometheus text exposition format 0.0.4", NULL, "", NULL,
     NULL, "", OA_METRICS},
    {"GET", "/openapi.json", "/openapi.json", "getOpenAPI", "meta", "This document", NULL, "", NULL, NULL, "", 0},
    {"GET", "/workflows", "/workflows", "listWorkflows", "workflows",
     "The loaded workflows, sorted by name (with auth on, those the caller may reach)", "WorkflowList", "", NULL,
     NULL, "", 0},
    {"GET", "/workflows/{name}", "/workflows/x", "getWorkflow", "workflows", "One workflow, normalised",
     "WorkflowDefinition", "WorkflowName", NULL, NULL, "404", OA_WF_ACCESS},
    {"POST", "/workflows/{name}/run", "/workflows/x/run", "runWorkflow", "runs",
     "Run a workflow: synchronously (200), or asynchronously with ?mode=async or Prefer: respond-async (202)",
     "RunResult", "WorkflowName Include Mode Prefer", "RunRequest", "RunAccepted", "404 413 415 502 503 504",
     OA_RUN | OA_WF_ACCESS},
    {"POST", "/workflows/{name}/execute", "/workflows/x/execute", "executeWorkflow", "runs",
     "Run a workflow, answered as the Kailash SDK WorkflowAPI does (mode sync, async or stream)", "ExecuteResult",
     "WorkflowName", "ExecuteRequest", "ExecuteAccepted", "404 413 415 502 503 504",
     OA_RUN | OA_WF_ACCESS | OA_STREAM},
    {"GET", "/runs", "/runs", "listRuns", "runs", "Run records, newest first", "RunList",
     "RunsWorkflow RunsStatus RunsLimit RunsCursor", NULL, NULL, "503", 0},
    {"GET", "/runs/{run_id}", "/runs/x", "getRun", "runs", "One run record", "RunRecord", "RunId", NULL, NULL,
     "404 503", 0},
    {"DELETE", "/runs/{run_id}", "/runs/x", "cancelRun", "runs",
     "Cancel a queued or running asynchronous run (202); one that has already finished is a 409", NULL, "RunId", NULL,
     "CancelAccepted", "404 409 503", OA_NO_OK},
    {"GET", "/runs/{run_id}/events", "/runs/x/events", "getRunEvents", "runs",
     "The events of a run as Server-Sent Events (API.md Events)", "EventStream", "RunId LastEventId", NULL, NULL,
     "404 503", OA_SSE},
    {"DELETE", "/cache/{name}", "/cache/x", "purgeCache", "admin", "Drop the cached answers of one workflow",
     "Purged", "WorkflowName", NULL, NULL, "404", 0},
    {"POST", "/admin/reload", "/admin/reload", "reload", "admin", "Reload config and workflows, as SIGHUP does",
     "Reloaded", "", NULL, NULL, "422", 0},
};

/* Every error status an operation may list, in order, and its components/responses entry. */
static const struct {
    int status;
    const char *name;
} oa_errors[] = {
    {400, "BadRequest"},  {401, "Unauthorized"}, {403, "Forbidden"},   {404, "NotFound"},
    {409, "Conflict"},    {413, "PayloadTooLarge"}, {415, "UnsupportedMediaType"}, {422, "InvalidConfig"}, {429, "TooManyRequests"},
    {500, "Internal"},    {502, "UpstreamError"}, {503, "Unavailable"}, {504, "Timeout"},
    {508, "LoopDetected"},
};

static json_t *oa_ref(const char *section, const char *name)
{
    char ref[128];
    snprintf(ref, sizeof ref, "#/components/%s/%s", section, name);
    return json_pack("{s:s}", "$ref", ref);
}

/* Whether op on a route of this auth column answers status, for the workflow wf (NULL: any). */
static int oa_answers(const oa_op *op, int auth, const struct workflow *wf, const oa_ctx *c, int status)
{
    char code[8];
    snprintf(code, sizeof code, "%d", status);
    if (strstr(op->errors, code))
        return 1;
    switch (status) {
    case 400: case 500: case 508: /* the chain's, on every route */
        return 1;
    case 401:
        return auth != HTTP_AUTH_NONE && c->auth_methods != 0;
    case 403: /* admin routes (and /metrics with metrics_auth): a role, or loopback clients with auth off */
        if (auth == HTTP_AUTH_ADMIN)
            return 1;
        return auth == HTTP_AUTH_USER && c->auth_methods && (op->flags & OA_WF_ACCESS) && (!wf || wf->access.present);
    case 404:
        return (op->flags & OA_METRICS) && !c->monitoring;
    case 429:
        return auth != HTTP_AUTH_NONE && !(op->flags & OA_METRICS);
    default:
        return 0;
    }
}

/* The content type of the 200 answer. */
static const char *oa_ok_type(const oa_op *op)
{
    return op->flags & OA_METRICS ? "text/plain" : op->flags & OA_SSE ? "text/event-stream" : "application/json";
}

static json_t *oa_ok_response(const oa_op *op)
{
    json_t *sch = op->ok ? oa_ref("schemas", op->ok)
                         : json_pack("{s:s}", "type", op->flags & OA_METRICS ? "string" : "object");
    json_t *ok = json_pack("{s:s,s:{s:{s:o}}}", "description", op->summary, "content", oa_ok_type(op), "schema", sch);
    if (ok && (op->flags & OA_STREAM))
        json_object_set_new(json_object_get(ok, "content"), "text/event-stream",
                            json_pack("{s:o}", "schema", oa_ref("schemas", "EventStream")));
    if (ok && (op->flags & OA_RUN))
        json_object_set_new(ok, "headers", json_pack("{s:o,s:o,s:o,s:o}", "X-Request-ID",
                                                     oa_ref("headers", "X-Request-ID"), "X-Run-ID",
                                                     oa_ref("headers", "X-Run-ID"), "X-Cache",
                                                     oa_ref("headers", "X-Cache"), "Server-Timing",
                                                     oa_ref("headers", "Server-Timing")));
    return ok;
}

/* The 202 answer: an async run (with Location and the run's headers) or a cancel. */
static json_t *oa_accepted_response(const oa_op *op)
{
    json_t *acc = json_pack("{s:s,s:{s:{s:o}}}", "description",
                            op->flags & OA_RUN ? "accepted: the run is durable and queued" : "accepted", "content",
                            "application/json", "schema", oa_ref("schemas", op->accepted));
    if (acc && (op->flags & OA_RUN))
        json_object_set_new(acc, "headers",
                            json_pack("{s:o,s:o,s:o,s:o}", "Location", oa_ref("headers", "Location"), "X-Request-ID",
                                      oa_ref("headers", "X-Request-ID"), "X-Run-ID", oa_ref("headers", "X-Run-ID"),
                                      "Preference-Applied", oa_ref("headers", "Preference-Applied")));
    return acc;
}

static json_t *oa_responses(const oa_op *op, int auth, const struct workflow *wf, const oa_ctx *c)
{
    json_t *out = op->flags & OA_NO_OK ? json_object() : json_pack("{s:o}", "200", oa_ok_response(op));
    if (out && op->accepted)
        json_object_set_new(out, "202", oa_accepted_response(op));
    for (size_t i = 0; out && i < sizeof oa_errors / sizeof oa_errors[0]; i++) {
        int st = oa_errors[i].status;
        char key[8];
        if (!oa_answers(op, auth, wf, c, st))
            continue;
        snprintf(key, sizeof key, "%d", st);
        json_t *v = st == 503 && (op->flags & OA_READY)
                        ? json_pack("{s:s,s:{s:{s:o}}}", "description", "degraded: a configured dependency is down",
                                    "content", "application/json", "schema", oa_ref("schemas", "Ready"))
                        : oa_ref("responses", oa_errors[i].name);
        json_object_set_new(out, key, v);
    }
    return out;
}

/* [{"ApiKey": []}, {"BearerAuth": []}] for the credentials accepted; optional ({} first) when
 * public. */
static json_t *oa_security(const oa_ctx *c, int public)
{
    json_t *out = json_array();
    if (public)
        json_array_append_new(out, json_object());
    if (c->auth_methods & AUTH_METHOD_KEY)
        json_array_append_new(out, json_pack("{s:[]}", "ApiKey"));
    if (c->auth_methods & AUTH_METHOD_JWT)
        json_array_append_new(out, json_pack("{s:[]}", "BearerAuth"));
    return out;
}

json_t *openapi_security_schemes(const oa_ctx *c)
{
    json_t *out = json_object();
    if (c->auth_methods & AUTH_METHOD_KEY)
        json_object_set_new(out, "ApiKey",
                            json_pack("{s:s,s:s,s:s,s:s}", "type", "apiKey", "in", "header", "name", "X-API-Key",
                                      "description", "an API key whose SHA-256 digest is in auth.api_keys"));
    if (c->auth_methods & AUTH_METHOD_JWT)
        json_object_set_new(out, "BearerAuth",
                            json_pack("{s:s,s:s,s:s,s:s}", "type", "http", "scheme", "bearer", "bearerFormat", "JWT",
                                      "description", "a JWT (HS256, RS256 or ES256) as auth.jwt configures"));
    return out;
}

/* The concrete request body of a workflow's run route: its inputs schema as the file wrote it (the
 * same json_t, shared: the tree is only read, then dumped), parameters keyed by its node ids. */
static json_t *oa_workflow_body(const oa_op *op, const struct workflow *wf)
{
    json_t *inputs = json_object_get(wf->summary, "inputs");
    json_t *ids = json_array();
    for (size_t i = 0; i < wf->nnodes; i++)
        json_array_append_new(ids, json_string(wf->nodes[i].id));
    json_t *props = json_pack("{s:O,s:{s:s,s:s,s:{s:o},s:{s:s}}}", "inputs", inputs ? inputs : json_object(),
                              "parameters", "type", "object", "description", "per-node overrides keyed by node id",
                              "propertyNames", "enum", ids, "additionalProperties", "type", "object");
    if (props && strcmp(op->body, "ExecuteRequest") == 0)
        json_object_set_new(props, "mode",
                            json_pack("{s:[s,s,s],s:s,s:s}", "enum", "sync", "async", "stream", "default", "sync",
                                      "description", "sync: 200; async: 202 with execution_id; stream: 200 as SSE"));
    else if (props)
        json_object_set_new(props, "callback_url",
                            json_pack("{s:s,s:s,s:s}", "type", "string", "format", "uri", "description",
                                      "asynchronous runs only: POSTed the final run record"));
    return json_pack("{s:b,s:{s:{s:{s:s,s:b,s:o}}}}", "required", 0, "content", "application/json", "schema", "type",
                     "object", "additionalProperties", 0, "properties", props);
}

static json_t *oa_parameters(const oa_op *op, const struct workflow *wf)
{
    json_t *out = json_array();
    const char *p = op->params;
    while (out && *p) {
        char name[64];
        size_t n = strcspn(p, " ");
        snprintf(name, sizeof name, "%.*s", (int)n, p);
        p += n + (p[n] == ' ');
        if (!(wf && strcmp(name, "WorkflowName") == 0)) /* a concrete path has no {name} */
            json_array_append_new(out, oa_ref("parameters", name));
    }
    return out;
}

/* One operation of op on a route with this auth column, for the workflow wf (NULL: the template). */
static json_t *oa_operation(const oa_op *op, int auth, const struct workflow *wf, const oa_ctx *c)
{
    char id[192], summary[256];
    if (wf) {
        const char *verb = strrchr(op->path, '/') + 1; /* "run" or "execute" */
        snprintf(id, sizeof id, "%s_%s", verb, wf->name);
        snprintf(summary, sizeof summary, "%c%s %s (version %s)", verb[0] - 'a' + 'A', verb + 1, wf->name,
                 wf->version);
    } else {
        snprintf(id, sizeof id, "%s", op->id);
        snprintf(summary, sizeof summary, "%s", op->summary);
    }
    json_t *o = json_pack("{s:s,s:[s],s:s}", "operationId", id, "tags", op->tag, "summary", summary);
    if (!o)
        return NULL;
    if (wf && wf->description[0])
        json_object_set_new(o, "description", json_string(wf->description));
    json_t *params = oa_parameters(op, wf);
    if (json_array_size(params))
        json_object_set(o, "parameters", params);
    json_decref(params);
    if (op->body)
        json_object_set_new(o, "requestBody",
                            wf ? oa_workflow_body(op, wf)
                               : json_pack("{s:b,s:{s:{s:o}}}", "required", 0, "content", "application/json",
                                           "schema", oa_ref("schemas", op->body)));
    json_object_set_new(o, "responses", oa_responses(op, auth, wf, c));
    if (auth != HTTP_AUTH_NONE && c->auth_methods)
        json_object_set_new(o, "security", oa_security(c, wf && wf->access.is_public));
    return o;
}

/* The route of op in the router's table, or NULL when this build does not serve it. */
static const http_route *oa_route(const oa_op *op)
{
    char param[132], allow[64];
    int status;
    return http_route_find(op->method, op->probe, param, sizeof param, &status, allow, sizeof allow);
}

/* The route's auth column as the document tells it: never, yes or admin. /metrics' own column
 * (never, or with metrics_auth the admin or metrics role, loopback only with auth off) counts as
 * admin when metrics_auth is on, as the auth step does (src/middleware/auth.c). */
static int oa_auth(const http_route *rt, const oa_ctx *c)
{
    if (rt->auth == HTTP_AUTH_METRICS)
        return c->metrics_auth ? HTTP_AUTH_ADMIN : HTTP_AUTH_NONE;
    return rt->auth;
}

/* paths[path][method] = operation. */
static int oa_put(json_t *paths, const char *path, const char *method, json_t *operation)
{
    char m[8];
    size_t i = 0;
    for (; method[i] && i < sizeof m - 1; i++)
        m[i] = (char)(method[i] | 0x20); /* "get": OpenAPI's field names are lower case */
    m[i] = '\0';
    json_t *item = json_object_get(paths, path);
    if (!item && json_object_set_new(paths, path, item = json_object()) != 0)
        return json_decref(operation), -1;
    return operation && json_object_set_new(item, m, operation) == 0 ? 0 : -1;
}

json_t *openapi_paths(const registry *reg, const oa_ctx *c)
{
    json_t *paths = json_object();
    for (size_t i = 0; paths && i < sizeof ops / sizeof ops[0]; i++) {
        const http_route *rt = oa_route(&ops[i]);
        if (rt && oa_put(paths, ops[i].path, ops[i].method, oa_operation(&ops[i], oa_auth(rt, c), NULL, c)) != 0)
            goto err;
    }
    for (size_t w = 0; paths && reg && w < registry_count(reg); w++) {
        const struct workflow *wf = exec_workflow(registry_at(reg, w));
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
            const http_route *rt = (ops[i].flags & OA_RUN) ? oa_route(&ops[i]) : NULL;
            char path[192];
            if (!rt)
                continue;
            snprintf(path, sizeof path, "/workflows/%s/%s", wf->name, strrchr(ops[i].path, '/') + 1);
            if (oa_put(paths, path, ops[i].method, oa_operation(&ops[i], oa_auth(rt, c), wf, c)) != 0)
                goto err;
        }
    }
    return paths;
err:
    json_decref(paths);
    return NULL;
}
