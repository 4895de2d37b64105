/* pinned (src/workflow/pinned.c): which keys a request may set, and gateway.overridable. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/workflow.h"

static kconfig *cfg;
static node_env nenv = {"/tmp", 1 << 20, 1000, 1};

static void setup(void)
{
    char err[256];
    cr_assert_eq(config_load(NULL, &cfg, err, sizeof err), 0);
}

static void teardown(void)
{
    config_free(cfg);
}

TestSuite(pinned, .init = setup, .fini = teardown);

/* fetch: HTTPRequestNode, shape: TransformNode fed by fetch, read: CSVReaderNode; extra gateway text. */
static workflow *load(const char *gateway, json_t **problems)
{
    char text[2048];
    snprintf(text, sizeof text,
             "{\"nodes\": {\"fetch\": {\"node_type\": \"HTTPRequestNode\", \"config\": {\"url\": "
             "\"http://127.0.0.1:9/x\"}},"
             " \"shape\": {\"node_type\": \"TransformNode\", \"config\": {\"template\": 1}},"
             " \"read\": {\"node_type\": \"CSVReaderNode\", \"config\": {\"file_path\": \"a.csv\"}}},"
             " \"connections\": [{\"source_node\": \"fetch\", \"source_output\": \"response\","
             " \"target_node\": \"shape\", \"target_input\": \"data\"}]%s}",
             gateway);
    json_error_t je;
    json_t *doc = json_loads(text, 0, &je);
    cr_assert(doc, "%s: %s", je.text, text);
    wf_load_env env = {cfg, &nenv};
    workflow *wf = NULL;
    *problems = json_array();
    workflow_load_json(doc, "wf.json", "wf", &env, &wf, *problems);
    json_decref(doc);
    return wf;
}

static int check(const workflow *wf, const char *inputs, const char *params, char *err, size_t errlen)
{
    json_t *in = json_loads(inputs, 0, NULL), *pa = params ? json_loads(params, 0, NULL) : NULL;
    int rc = workflow_check_request(wf, in, pa, err, errlen);
    json_decref(in);
    json_decref(pa);
    return rc;
}

Test(pinned, node_types_name_their_pinned_keys)
{
    json_t *p;
    workflow *wf = load("", &p);
    cr_assert_not_null(wf);
    const wf_node *fetch = &wf->nodes[workflow_node_index(wf, "fetch")];
    const wf_node *read = &wf->nodes[workflow_node_index(wf, "read")];
    const char *http_pinned[] = {"url", "method", "headers", "auth_token", "auth_type", "verify_ssl", "api_key_header"};
    for (size_t i = 0; i < sizeof http_pinned / sizeof *http_pinned; i++)
        cr_assert_not(wf_node_key_open(fetch, http_pinned[i]), "%s is open", http_pinned[i]);
    cr_assert(wf_node_key_open(fetch, "timeout"));
    cr_assert(wf_node_key_open(fetch, "params"));
    cr_assert(wf_node_key_open(fetch, "json_data"));
    cr_assert_not(wf_node_key_open(read, "file_path"));
    cr_assert(wf_node_key_open(read, "delimiter"));
    workflow_free(wf);
    json_decref(p);
}

Test(pinned, requests_are_checked_by_parameters_and_inputs)
{
    json_t *p;
    char err[400];
    workflow *wf = load("", &p);
    cr_assert_eq(check(wf, "{}", "{\"fetch\": {\"timeout\": 1}}", err, sizeof err), 0);
    cr_assert_eq(check(wf, "{}", "{\"fetch\": {\"method\": \"DELETE\"}}", err, sizeof err), -1);
    cr_assert(strstr(err, "parameters.fetch.method") && strstr(err, "node 'fetch'"), "%s", err);
    cr_assert_eq(check(wf, "{\"url\": \"http://127.0.0.1:9/y\"}", NULL, err, sizeof err), -1);
    cr_assert(strstr(err, "inputs.url") && strstr(err, "node 'fetch'"), "%s", err);
    cr_assert_eq(check(wf, "{\"file_path\": \"b.csv\"}", NULL, err, sizeof err), -1);
    cr_assert(strstr(err, "node 'read'"), "%s", err);
    /* an input no node takes as a pinned key passes: "data" is filled by a connection into shape */
    cr_assert_eq(check(wf, "{\"data\": 1, \"name\": \"x\"}", NULL, err, sizeof err), 0, "%s", err);
    workflow_free(wf);
    json_decref(p);
}

Test(pinned, overridable_opens_named_keys_only)
{
    json_t *p;
    char err[400];
    workflow *wf = load(", \"gateway\": {\"overridable\": {\"fetch\": [\"headers\", \"method\"]}}", &p);
    cr_assert_not_null(wf);
    cr_assert_eq(check(wf, "{}", "{\"fetch\": {\"method\": \"POST\", \"headers\": {}}}", err, sizeof err), 0);
    cr_assert_eq(check(wf, "{\"method\": \"POST\"}", NULL, err, sizeof err), 0);
    cr_assert_eq(check(wf, "{}", "{\"fetch\": {\"url\": \"http://127.0.0.1:9/z\"}}", err, sizeof err), -1);
    workflow_free(wf);
    json_decref(p);
}

static void refused(const char *gateway, const char *expect)
{
    json_t *p;
    workflow *wf = load(gateway, &p);
    cr_assert_null(wf);
    char *all = json_dumps(p, 0);
    cr_assert(strstr(all, expect), "%s lacks %s", all, expect);
    free(all);
    json_decref(p);
}

Test(pinned, bad_overridable_blocks_are_refused)
{
    refused(", \"gateway\": {\"overridable\": [\"fetch\"]}", "gateway.overridable: expected an object");
    refused(", \"gateway\": {\"overridable\": {\"nope\": [\"url\"]}}", "unknown node 'nope'");
    refused(", \"gateway\": {\"overridable\": {\"fetch\": \"url\"}}", "expected an array of key names");
    refused(", \"gateway\": {\"overridable\": {\"fetch\": [1]}}", "expected an array of key names");
    refused(", \"gateway\": {\"overridable\": {\"fetch\": [\"colour\"]}}", "'colour' is not a config key of HTTPRequestNode");
}
