/* openapi: the document builder (src/api/openapi*.c) without a daemon: its components parse, every
 * operation lists its error responses through components/responses to the one Error schema, the
 * router's routes are there, each workflow of a registry gets its concrete paths with its inputs
 * schema as written, and security appears with authentication on only, for the credentials given.
 * (tests/integration/test_openapi.py validates the served document with swagger-parser.) */
#include <criterion/criterion.h>
#include <string.h>

#include "kailash/api.h"
#include "kailash/auth.h"
#include "kailash/engine.h"
#include "test_config_dir.h"

static kconfig *cfg;
static char dir[64];

static void setup(void)
{
    cfg = test_config_dir(dir, "/tmp/koapiXXXXXX");
}

static void teardown(void)
{
    config_free(cfg);
}

TestSuite(openapi, .init = setup, .fini = teardown, .timeout = 30);

static registry *load(void)
{
    static const node_env nenv = {"/tmp", 1 << 20, 1000, 1};
    registry *r = registry_load(cfg, &nenv, NULL);
    cr_assert_not_null(r);
    cr_assert_eq(json_array_size(registry_errors(r)), 0, "%s", json_dumps(registry_errors(r), 0));
    return r;
}

static json_t *op_of(json_t *doc, const char *path, const char *method)
{
    return json_object_get(json_object_get(json_object_get(doc, "paths"), path), method);
}

/* What a local "$ref" points at (followed until it is not a $ref); borrowed. */
static json_t *deref(json_t *doc, json_t *v)
{
    json_t *ref;
    while (v && (ref = json_object_get(v, "$ref"))) {
        const char *p = json_string_value(ref);
        cr_assert(p && strncmp(p, "#/", 2) == 0, "%s", p ? p : "(null)");
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s", p + 2);
        v = doc;
        for (char *save = NULL, *part = strtok_r(tmp, "/", &save); part; part = strtok_r(NULL, "/", &save))
            v = json_object_get(v, part);
        cr_assert_not_null(v, "dangling $ref %s", p);
    }
    return v;
}

static int routed(const char *method, const char *path)
{
    char param[132], allow[64];
    int status;
    return http_route_find(method, path, param, sizeof param, &status, allow, sizeof allow) != NULL;
}

/* The schema of op's answer status in content type (followed through $refs); borrowed. */
static json_t *answer_schema(json_t *doc, json_t *op, const char *status, const char *type)
{
    json_t *resp = deref(doc, json_object_get(json_object_get(op, "responses"), status));
    return deref(doc, json_object_get(json_object_get(json_object_get(resp, "content"), type), "schema"));
}

static json_t *prop(json_t *sch, const char *name)
{
    return json_object_get(json_object_get(sch, "properties"), name);
}

/* Whether the JSON array arr holds exactly the strings of want (NULL-terminated), in any order. */
static int same_strings(json_t *arr, const char *const *want)
{
    size_t n = 0;
    for (; want[n]; n++) {
        size_t i;
        json_t *v;
        int found = 0;
        json_array_foreach(arr, i, v) found |= json_is_string(v) && strcmp(json_string_value(v), want[n]) == 0;
        if (!found)
            return 0;
    }
    return json_array_size(arr) == n;
}

Test(openapi, without_workflows_every_route_and_error_is_described)
{
    json_t *doc = api_openapi_document(NULL, 0, NULL);
    cr_assert_not_null(doc, "a component's JSON text does not parse");
    cr_assert_str_eq(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(doc, "info"), "version")), KAILASH_VERSION);
    static const char *const routes[][2] = {
        {"/health", "get"},       {"/ready", "get"},          {"/workflows", "get"},
        {"/workflows/{name}", "get"}, {"/workflows/{name}/run", "post"}, {"/workflows/{name}/execute", "post"},
        {"/runs", "get"},         {"/runs/{run_id}", "get"},  {"/runs/{run_id}", "delete"},
        {"/cache/{name}", "delete"},
        {"/admin/reload", "post"}, {"/openapi.json", "get"}, {"/metrics", "get"},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        cr_assert_not_null(op_of(doc, routes[i][0], routes[i][1]), "%s %s", routes[i][1], routes[i][0]);
    /* the events route: described exactly when the router takes it (it is being built) */
    cr_assert_eq(op_of(doc, "/runs/{run_id}/events", "get") != NULL, routed("GET", "/runs/x/events"));
    json_t *error = json_pack("{s:s}", "$ref", "#/components/schemas/Error");
    const char *path, *method, *status;
    json_t *item, *op, *resp;
    json_object_foreach(json_object_get(doc, "paths"), path, item)
    {
        json_object_foreach(item, method, op)
        {
            cr_assert_not_null(json_object_get(op, "operationId"), "%s %s", method, path);
            cr_assert_null(json_object_get(op, "security"), "auth is off: %s %s", method, path);
            json_object_foreach(json_object_get(op, "responses"), status, resp)
            {
                if (atoi(status) < 400 || (strcmp(path, "/ready") == 0 && strcmp(status, "503") == 0))
                    continue;
                cr_assert_not_null(json_object_get(resp, "$ref"), "%s %s %s: not a components/responses", method,
                                   path, status);
                json_t *sch = json_object_get(
                    json_object_get(json_object_get(deref(doc, resp), "content"), "application/json"), "schema");
                cr_assert(json_equal(sch, error), "%s %s %s", method, path, status);
            }
        }
    }
    cr_assert_null(json_object_get(json_object_get(doc, "components"), "securitySchemes"));
    json_decref(error);
    json_decref(doc);
}

Test(openapi, each_workflow_gets_concrete_paths_with_its_inputs_schema)
{
    const char *inputs = "{\"type\":\"object\",\"required\":[\"id\"],\"properties\":{\"id\":{\"type\":\"integer\","
                         "\"minimum\":1},\"q\\\"\\u00e9\":{\"type\":\"string\",\"pattern\":\"^a\\\\d$\"}}}";
    char text[1024];
    snprintf(text, sizeof text,
             "{\"description\":\"d \\\"q\\\" \\u4e2d\",\"gateway\":{\"inputs\":%s},\"nodes\":{\"t\":{\"node_type\":"
             "\"TransformNode\",\"config\":{\"template\":{}}}}}",
             inputs);
    test_config_put(dir, "orders", text);
    test_config_put(dir, "plain.v-2", "{\"nodes\":{\"a\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":{}}},"
                                      "\"b\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":{}}}}}");
    registry *r = load();
    json_t *doc = api_openapi_document(r, 0, NULL);
    cr_assert_not_null(doc);
    json_t *want = json_loads(inputs, 0, NULL);
    static const char *const paths[] = {"/workflows/orders/run", "/workflows/orders/execute"};
    for (size_t i = 0; i < 2; i++) {
        json_t *op = op_of(doc, paths[i], "post");
        cr_assert_not_null(op, "%s", paths[i]);
        json_t *props = json_object_get(
            json_object_get(
                json_object_get(json_object_get(json_object_get(op, "requestBody"), "content"), "application/json"),
                "schema"),
            "properties");
        cr_assert(json_equal(json_object_get(props, "inputs"), want), "%s", paths[i]);
        cr_assert_str_eq(json_string_value(json_object_get(op, "description")), "d \"q\" \xe4\xb8\xad");
    }
    json_t *plain = op_of(doc, "/workflows/plain.v-2/run", "post");
    cr_assert_not_null(plain);
    json_t *ids = json_object_get(
        json_object_get(
            json_object_get(
                json_object_get(json_object_get(json_object_get(json_object_get(json_object_get(plain, "requestBody"),
                                                                                "content"),
                                                                "application/json"),
                                                "schema"),
                                "properties"),
                "parameters"),
            "propertyNames"),
        "enum");
    cr_assert_eq(json_array_size(ids), 2);
    json_decref(want);
    json_decref(doc);
    registry_release(r);
}

Test(openapi, security_only_with_auth_on_and_for_the_credentials_configured)
{
    test_config_put(dir, "open", "{\"gateway\":{\"access\":{\"public\":true}},\"nodes\":{\"t\":{\"node_type\":"
                                 "\"TransformNode\",\"config\":{\"template\":{}}}}}");
    registry *r = load();
    static const struct {
        int methods;
        size_t nschemes;
    } cases[] = {{AUTH_METHOD_KEY, 1}, {AUTH_METHOD_JWT, 1}, {AUTH_METHOD_KEY | AUTH_METHOD_JWT, 2}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *doc = api_openapi_document(r, cases[i].methods, NULL);
        cr_assert_not_null(doc);
        json_t *schemes = json_object_get(json_object_get(doc, "components"), "securitySchemes");
        cr_assert_eq(json_object_size(schemes), cases[i].nschemes);
        cr_assert_eq(json_object_get(schemes, "ApiKey") != NULL, (cases[i].methods & AUTH_METHOD_KEY) != 0);
        cr_assert_eq(json_object_get(schemes, "BearerAuth") != NULL, (cases[i].methods & AUTH_METHOD_JWT) != 0);
        cr_assert_eq(json_array_size(json_object_get(op_of(doc, "/workflows", "get"), "security")), cases[i].nschemes);
        cr_assert_not_null(json_object_get(json_object_get(op_of(doc, "/workflows", "get"), "responses"), "401"));
        cr_assert_null(json_object_get(op_of(doc, "/health", "get"), "security"));
        cr_assert_null(json_object_get(op_of(doc, "/openapi.json", "get"), "security"));
        /* a public workflow: credentials optional ({} first) */
        json_t *sec = json_object_get(op_of(doc, "/workflows/open/run", "post"), "security");
        cr_assert_eq(json_array_size(sec), cases[i].nschemes + 1);
        cr_assert_eq(json_object_size(json_array_get(sec, 0)), 0);
        json_decref(doc);
    }
    registry_release(r);
}

Test(openapi, metrics_follows_enable_monitoring_and_metrics_auth)
{
    json_t *doc = api_openapi_document(NULL, AUTH_METHOD_KEY, cfg); /* the defaults: open, answering */
    json_t *m = op_of(doc, "/metrics", "get");
    cr_assert_not_null(json_object_get(json_object_get(json_object_get(m, "responses"), "200"), "content"));
    cr_assert_null(json_object_get(m, "security"));
    cr_assert_null(json_object_get(json_object_get(m, "responses"), "404"));
    json_decref(doc);
    cfg->metrics_auth = 1;
    doc = api_openapi_document(NULL, AUTH_METHOD_KEY, cfg);
    m = op_of(doc, "/metrics", "get");
    cr_assert_eq(json_array_size(json_object_get(m, "security")), 1);
    cr_assert_not_null(json_object_get(json_object_get(m, "responses"), "401"));
    cr_assert_not_null(json_object_get(json_object_get(m, "responses"), "403"));
    cr_assert_null(json_object_get(json_object_get(m, "responses"), "429"), "/metrics is never rate-limited");
    json_decref(doc);
    cfg->enable_monitoring = 0;
    doc = api_openapi_document(NULL, AUTH_METHOD_KEY, cfg);
    m = op_of(doc, "/metrics", "get");
    cr_assert_null(json_object_get(m, "security"), "monitoring off: metrics_auth does not apply");
    cr_assert_not_null(json_object_get(json_object_get(m, "responses"), "404"));
    json_decref(doc);
}

/* The parameters of op by name (through $refs): the one named name; borrowed. */
static json_t *param_of(json_t *doc, json_t *op, const char *name)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(op, "parameters"), i, p)
    {
        json_t *d = deref(doc, p);
        if (strcmp(json_string_value(json_object_get(d, "name")), name) == 0)
            return d;
    }
    return NULL;
}

static void check_run_accepted(json_t *doc, json_t *op)
{
    json_t *acc = answer_schema(doc, op, "202", "application/json");
    cr_assert_not_null(acc, "no 202");
    cr_assert_str_eq(json_string_value(json_object_get(prop(acc, "status"), "const")), "queued");
    json_t *links = prop(acc, "links");
    cr_assert_not_null(prop(links, "self"));
    cr_assert_not_null(prop(links, "events"));
    static const char *const req[] = {"run_id", "status", "links", NULL};
    cr_assert(same_strings(json_object_get(acc, "required"), req));
    json_t *hdrs = json_object_get(json_object_get(json_object_get(op, "responses"), "202"), "headers");
    cr_assert_not_null(deref(doc, json_object_get(hdrs, "Location")));
    cr_assert_not_null(json_object_get(json_object_get(op, "responses"), "200"), "sync stays 200");
    cr_assert_not_null(json_object_get(json_object_get(op, "responses"), "503"), "overloaded / unavailable");
}

Test(openapi, async_run_modes_and_their_202_are_described)
{
    json_t *doc = api_openapi_document(NULL, 0, NULL);
    cr_assert_not_null(doc);
    json_t *rop = op_of(doc, "/workflows/{name}/run", "post");
    check_run_accepted(doc, rop);
    static const char *const modes[] = {"sync", "async", NULL};
    cr_assert(same_strings(json_object_get(json_object_get(param_of(doc, rop, "mode"), "schema"), "enum"), modes));
    json_t *prefer = param_of(doc, rop, "Prefer");
    cr_assert_not_null(prefer);
    cr_assert_str_eq(json_string_value(json_object_get(prefer, "in")), "header");
    json_t *body = deref(doc, json_object_get(
                                  json_object_get(json_object_get(json_object_get(rop, "requestBody"), "content"),
                                                  "application/json"),
                                  "schema"));
    cr_assert_str_eq(json_string_value(json_object_get(prop(body, "callback_url"), "format")), "uri");

    json_t *ex = op_of(doc, "/workflows/{name}/execute", "post");
    body = deref(doc, json_object_get(
                          json_object_get(json_object_get(json_object_get(ex, "requestBody"), "content"),
                                          "application/json"),
                          "schema"));
    static const char *const xmodes[] = {"sync", "async", "stream", NULL};
    cr_assert(same_strings(json_object_get(prop(body, "mode"), "enum"), xmodes));
    json_t *acc = answer_schema(doc, ex, "202", "application/json");
    cr_assert_str_eq(json_string_value(json_object_get(prop(acc, "status"), "const")), "pending");
    cr_assert_not_null(prop(acc, "execution_id"));
    cr_assert_not_null(answer_schema(doc, ex, "200", "application/json"), "sync");
    cr_assert_not_null(answer_schema(doc, ex, "200", "text/event-stream"), "stream");
    json_decref(doc);
}

Test(openapi, cancel_events_and_records_of_async_runs_are_described)
{
    json_t *doc = api_openapi_document(NULL, 0, NULL);
    cr_assert_not_null(doc);
    json_t *cancel = op_of(doc, "/runs/{run_id}", "delete");
    cr_assert_str_eq(json_string_value(json_object_get(cancel, "operationId")), "cancelRun");
    json_t *resp = json_object_get(cancel, "responses");
    cr_assert_null(json_object_get(resp, "200"), "a cancel answers 202 only");
    json_t *acc = answer_schema(doc, cancel, "202", "application/json");
    cr_assert_str_eq(json_string_value(json_object_get(prop(acc, "cancel"), "const")), "accepted");
    cr_assert_not_null(prop(prop(acc, "links"), "self"));
    for (const char *const *st = (const char *const[]){"404", "409", "503", NULL}; *st; st++)
        cr_assert_not_null(json_object_get(resp, *st), "DELETE /runs/{run_id}: %s", *st);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(resp, "409"), "$ref")),
                     "#/components/responses/Conflict");
    cr_assert_not_null(strstr(json_string_value(json_object_get(deref(doc, json_object_get(resp, "409")),
                                                                "description")),
                              "conflict"));
    json_t *events = op_of(doc, "/runs/{run_id}/events", "get");
    if (events) { /* once the router has the row */
        cr_assert_str_eq(json_string_value(json_object_get(events, "operationId")), "getRunEvents");
        cr_assert_not_null(answer_schema(doc, events, "200", "text/event-stream"));
        cr_assert_null(answer_schema(doc, events, "200", "application/json"));
        cr_assert_not_null(json_object_get(json_object_get(events, "responses"), "404"));
        cr_assert_not_null(json_object_get(json_object_get(events, "responses"), "503"));
    }
    json_t *rec = json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"), "RunRecord");
    static const char *const statuses[] = {"queued", "running", "completed", "failed", "timeout", "cancelled", NULL};
    cr_assert(same_strings(json_object_get(prop(rec, "status"), "enum"), statuses));
    static const char *const nullable[] = {"string", "null", NULL}, *const num[] = {"number", "null", NULL};
    cr_assert(same_strings(json_object_get(prop(rec, "started_at"), "type"), nullable));
    cr_assert(same_strings(json_object_get(prop(rec, "finished_at"), "type"), nullable));
    cr_assert(same_strings(json_object_get(prop(rec, "duration_ms"), "type"), num));
    json_decref(doc);
}

Test(openapi, a_workflow_concrete_paths_answer_async_too)
{
    test_config_put(dir, "orders", "{\"nodes\":{\"t\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":{}}}}}");
    registry *r = load();
    json_t *doc = api_openapi_document(r, 0, NULL);
    cr_assert_not_null(doc);
    json_t *rop = op_of(doc, "/workflows/orders/run", "post");
    check_run_accepted(doc, rop);
    cr_assert_not_null(param_of(doc, rop, "Prefer"));
    cr_assert_null(param_of(doc, rop, "name"), "a concrete path has no {name}");
    json_t *props = json_object_get(
        json_object_get(
            json_object_get(json_object_get(json_object_get(rop, "requestBody"), "content"), "application/json"),
            "schema"),
        "properties");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(props, "callback_url"), "format")), "uri");
    json_t *ex = op_of(doc, "/workflows/orders/execute", "post");
    props = json_object_get(
        json_object_get(
            json_object_get(json_object_get(json_object_get(ex, "requestBody"), "content"), "application/json"),
            "schema"),
        "properties");
    static const char *const xmodes[] = {"sync", "async", "stream", NULL};
    cr_assert(same_strings(json_object_get(json_object_get(props, "mode"), "enum"), xmodes));
    cr_assert_not_null(answer_schema(doc, ex, "202", "application/json"));
    cr_assert_not_null(answer_schema(doc, ex, "200", "text/event-stream"));
    json_decref(doc);
    registry_release(r);
}
