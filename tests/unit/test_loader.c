/* loader + gateway: every accepted shape normalises to one form; every refusal names file, node, key. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kailash/workflow.h"

static kconfig *cfg;
static node_env nenv = {"/tmp", 1 << 20, 1000, 1};

static void setup(void)
{
    char err[256];
    cr_assert_eq(config_load(NULL, &cfg, err, sizeof err), 0);
    cfg->template_env = calloc(2, sizeof(char *));
    cfg->template_env[0] = strdup("ALLOWED_VAR");
    cfg->n_template_env = 1;
}

static void teardown(void)
{
    config_free(cfg);
}

TestSuite(loader, .init = setup, .fini = teardown);

static workflow *load(const char *text, json_t **problems)
{
    json_error_t je;
    json_t *doc = json_loads(text, 0, &je);
    cr_assert(doc, "test JSON invalid: %s: %s", je.text, text);
    wf_load_env env = {cfg, &nenv};
    workflow *wf = NULL;
    *problems = json_array();
    workflow_load_json(doc, "wf.json", "wf", &env, &wf, *problems);
    json_decref(doc);
    return wf;
}

static void refused(const char *text, const char *expect)
{
    json_t *problems;
    workflow *wf = load(text, &problems);
    cr_assert_null(wf, "accepted: %s", text);
    char *all = json_dumps(problems, 0);
    cr_assert(strstr(all, expect), "problems %s lack '%s'", all, expect);
    cr_assert(strstr(all, "wf.json"), "problems %s lack the file", all);
    free(all);
    json_decref(problems);
}

#define T1(type, cfgjson) "{\"nodes\":{\"a\":{\"node_type\":\"" type "\",\"config\":" cfgjson "}}}"

Test(loader, sdk_to_dict_shape)
{
    json_t *p;
    workflow *wf =
        load("{\"workflow_id\":\"x1\",\"name\":\"orders\",\"version\":3,\"author\":\"me\",\"metadata\":{},"
             "\"nodes\":{\"a\":{\"node_id\":\"a\",\"node_type\":\"TransformNode\",\"config\":{\"template\":"
             "{\"v\":\"{{inputs.x}}\"}},\"position\":[1,2]},\"b\":{\"node_type\":\"MergeNode\",\"config\":{}}},"
             "\"connections\":[{\"source_node\":\"a\",\"source_output\":\"result\",\"target_node\":\"b\","
             "\"target_input\":\"data1\"}]}",
             &p);
    cr_assert_not_null(wf, "%s", json_dumps(p, 0));
    cr_assert_str_eq(wf->name, "orders");
    cr_assert_str_eq(wf->version, "3");
    cr_assert_eq(wf->nnodes, 2);
    cr_assert_eq(wf->nconns, 1);
    cr_assert_eq(wf->order[0], 0);
    cr_assert_eq(wf->order[1], 1);
    cr_assert_eq(wf->nodes[1].ndeps, 1);
    cr_assert_eq(wf->timeout_ms, 30000);
    cr_assert_eq(wf->max_concurrency, 64);
    json_t *g = json_object_get(wf->normalized, "gateway");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(g, "executor"), "max_queue")), 1024);
    cr_assert_eq(json_array_size(json_object_get(wf->normalized, "nodes")), 2);
    cr_assert_eq(json_integer_value(json_object_get(wf->summary, "nodes")), 2);
    workflow_free(wf);
    json_decref(p);
}

Test(loader, builder_list_shape_and_from_to_connections)
{
    json_t *p;
    workflow *wf = load("{\"nodes\":[{\"id\":\"b\",\"type\":\"MergeNode\",\"parameters\":{}},{\"id\":\"a\",\"type\":"
                        "\"TransformNode\",\"config\":{\"template\":1}}],\"connections\":[{\"from_node\":\"a\","
                        "\"from_output\":\"result.x\",\"to_node\":\"b\",\"to_input\":\"data2\"}]}",
                        &p);
    cr_assert_not_null(wf, "%s", json_dumps(p, 0));
    cr_assert_str_eq(wf->name, "wf", "name defaults to the file name");
    cr_assert_str_eq(wf->conns[0].src_port, "result");
    cr_assert_str_eq(wf->conns[0].src_path, "x");
    cr_assert_eq(wf->order[0], 1, "a runs before b");
    json_t *c = json_array_get(json_object_get(wf->normalized, "connections"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(c, "source_node")), "a");
    cr_assert_str_eq(json_string_value(json_object_get(c, "target_input")), "data2");
    workflow_free(wf);
    json_decref(p);
}

Test(loader, env_secret_substituted_but_shown_as_env)
{
    setenv("KAILASH_TEST_SECRET", "s3cr3t", 1);
    json_t *p;
    workflow *wf = load(T1("TransformNode", "{\"template\":{\"$env\":\"KAILASH_TEST_SECRET\"}}"), &p);
    cr_assert_not_null(wf, "%s", json_dumps(p, 0));
    cr_assert_str_eq(json_string_value(wf->nodes[0].params[0].constant), "s3cr3t");
    char *shown = json_dumps(wf->normalized, 0);
    cr_assert(strstr(shown, "$env") && !strstr(shown, "s3cr3t"), "%s", shown);
    free(shown);
    workflow_free(wf);
    json_decref(p);
}

Test(loader, gateway_fields)
{
    json_t *p;
    workflow *wf = load("{\"nodes\":{\"a\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":{}}}},\"gateway\":"
                        "{\"inputs\":{\"type\":\"object\",\"required\":[\"x\"]},\"outputs\":{\"o\":\"a.result.k\"},"
                        "\"executor\":{\"max_concurrency\":2,\"max_queue\":3},\"timeout_ms\":500,\"cache\":false,"
                        "\"access\":{\"roles\":[\"r\"]}}}",
                        &p);
    cr_assert_not_null(wf, "%s", json_dumps(p, 0));
    cr_assert_not_null(wf->inputs_schema);
    cr_assert_eq(wf->noutputs, 1);
    cr_assert_str_eq(wf->outputs[0].port, "result");
    cr_assert_str_eq(wf->outputs[0].path, "k");
    cr_assert_eq(wf->max_concurrency, 2);
    cr_assert_eq(wf->max_queue, 3);
    cr_assert_eq(wf->timeout_ms, 500);
    workflow_free(wf);
    json_decref(p);
}

Test(loader, refusals_nodes)
{
    refused(T1("SharePointGraphReader", "{}"), "node 'a': unknown node type 'SharePointGraphReader'");
    refused(T1("TransformNode", "{\"template\":1,\"colour\":2}"), "node 'a': config.colour: unknown key");
    refused(T1("SwitchNode", "{\"operator\":\"~~\"}"), "node 'a': config.operator");
    refused(T1("TransformNode", "{\"template\":\"{{ inputs.x | nosuch }}\"}"), "node 'a': config.template");
    refused(T1("TransformNode", "{\"template\":\"{{ nowhere.x }}\"}"), "config.template");
    refused(T1("TransformNode", "{\"template\":\"{{ env.SECRET }}\"}"), "template_env");
    refused(T1("TransformNode", "{\"template\":\"***REDACTED***\"}"), "\\\"$env\\\"");
    refused(T1("TransformNode", "{\"template\":{\"$env\":\"KAILASH_SURELY_UNSET_VAR\"}}"),
            "KAILASH_SURELY_UNSET_VAR is not set");
    refused(T1("TransformNode", "{\"template\":1,\"on_error\":\"ignore\"}"), "config.on_error");
    refused(T1("JSONReaderNode", "{\"file_path\":\"../etc/passwd\"}"), "node 'a': config.file_path");
    refused(T1("JSONReaderNode", "{\"file_path\":\"/etc/passwd\"}"), "config.file_path");
    refused("{\"nodes\":[{\"id\":\"a\",\"type\":\"MergeNode\"},{\"id\":\"a\",\"type\":\"MergeNode\"}]}",
            "node 'a': duplicate node id");
    refused("{\"nodes\":{}}", "nodes: expected 1..");
    refused("{\"nodes\":5}", "nodes: expected");
    refused("{\"nodes\":{\"bad id\":{\"node_type\":\"MergeNode\"}}}", "node ids must match");
    refused("{\"name\":\"no spaces\",\"nodes\":{\"a\":{\"node_type\":\"MergeNode\"}}}", "name 'no spaces'");
    refused("{\"nodes\":{\"a\":{\"config\":{}}}}", "node 'a': node_type");
}

Test(loader, refusals_connections_and_graph)
{
    const char *two = "{\"nodes\":{\"a\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":1}},"
                      "\"b\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":1}}},\"connections\":[%s]}";
    char buf[1024];
    snprintf(buf, sizeof buf, two,
             "{\"source_node\":\"a\",\"source_output\":\"result\",\"target_node\":\"zz\",\"target_input\":\"x\"}");
    refused(buf, "unknown node 'zz'");
    snprintf(buf, sizeof buf, two,
             "{\"source_node\":\"a\",\"source_output\":\"nope\",\"target_node\":\"b\",\"target_input\":\"x\"}");
    refused(buf, "node 'a': connection to 'b': TransformNode has no output port 'nope'");
    snprintf(buf, sizeof buf, two,
             "{\"source_node\":\"a\",\"source_output\":\"result\",\"target_node\":\"b\",\"target_input\":\"x\"},"
             "{\"source_node\":\"b\",\"source_output\":\"result\",\"target_node\":\"a\",\"target_input\":\"y\"}");
    refused(buf, "cycle through nodes 'a', 'b'");
    snprintf(buf, sizeof buf, two, "{\"source_node\":\"a\",\"target_node\":\"b\"}");
    refused(buf, "connections[0].source_output: expected a string");
    refused(
        "{\"nodes\":{\"s\":{\"node_type\":\"SwitchNode\",\"config\":{\"operator\":\"is_null\"}},\"m\":{\"node_type\":"
        "\"MergeNode\"}},\"connections\":[{\"source_node\":\"s\",\"source_output\":\"true_output\",\"target_node\":"
        "\"m\",\"target_input\":\"data9\"}]}",
        "node 'm': connection from 's': MergeNode has no input 'data9'");
}

Test(loader, refusals_gateway)
{
    const char *base =
        "{\"nodes\":{\"a\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":1}}},\"gateway\":%s}";
    char buf[512];
    snprintf(buf, sizeof buf, base, "{\"cache\":{\"ttl_s\":0}}");
    refused(buf, "gateway.cache.ttl_s");
    snprintf(buf, sizeof buf, base, "{\"cache\":{\"scope\":\"all\"}}");
    refused(buf, "gateway.cache.scope");
    snprintf(buf, sizeof buf, base, "{\"cache\":true}");
    refused(buf, "gateway.cache: expected");
    snprintf(buf, sizeof buf, base, "{\"rate_limit\":{\"per_minute\":5}}");
    refused(buf, "gateway.rate_limit");
    snprintf(buf, sizeof buf, base, "{\"rate_limit\":{\"requests_per_minute\":0}}");
    refused(buf, "gateway.rate_limit.requests_per_minute");
    snprintf(buf, sizeof buf, base, "{\"rate_limit\":{\"requests_per_minute\":5,\"burst\":\"x\"}}");
    refused(buf, "gateway.rate_limit.burst");
    snprintf(buf, sizeof buf, base, "{\"trigger\":{\"stream\":\"x\"}}");
    refused(buf, "gateway.trigger: triggers are not implemented yet");
    snprintf(buf, sizeof buf, base, "{\"colour\":1}");
    refused(buf, "gateway: unknown key 'colour'");
    snprintf(buf, sizeof buf, base, "{\"inputs\":{\"type\":\"object\",\"minProps\":1}}");
    refused(buf, "gateway.inputs");
    snprintf(buf, sizeof buf, base, "{\"outputs\":{\"o\":\"zz.result\"}}");
    refused(buf, "gateway.outputs.o: unknown node 'zz'");
    snprintf(buf, sizeof buf, base, "{\"outputs\":{\"o\":\"a.nope\"}}");
    refused(buf, "gateway.outputs.o");
    snprintf(buf, sizeof buf, base, "{\"outputs\":{\"o\":\"a\"}}");
    refused(buf, "gateway.outputs.o: expected");
    snprintf(buf, sizeof buf, base, "{\"executor\":{\"max_concurrency\":0}}");
    refused(buf, "gateway.executor.max_concurrency");
    snprintf(buf, sizeof buf, base, "{\"timeout_ms\":\"5\"}");
    refused(buf, "gateway.timeout_ms");
    snprintf(buf, sizeof buf, base, "{\"access\":{\"roles\":\"admin\"}}");
    refused(buf, "gateway.access.roles");
    snprintf(buf, sizeof buf, base, "{\"access\":{\"roles\":[]}}");
    refused(buf, "gateway.access.roles: expected 1..");
    snprintf(buf, sizeof buf, base, "{\"access\":{\"conditions\":[{\"attribute\":\"t\",\"equals\":\"params.t\"}]}}");
    refused(buf, "gateway.access.conditions[0].equals");
    snprintf(buf, sizeof buf, base, "{\"access\":{\"conditions\":[{\"attribute\":\"t\",\"equals\":\"inputs..t\"}]}}");
    refused(buf, "gateway.access.conditions[0].equals");
    snprintf(buf, sizeof buf, base, "{\"access\":{\"conditions\":[{\"attribute\":\"t\"}]}}");
    refused(buf, "gateway.access.conditions[0]");
    snprintf(buf, sizeof buf, base,
             "{\"access\":{\"conditions\":[{\"attribute\":\"t\",\"value\":1,\"equals\":\"inputs.t\"}]}}");
    refused(buf, "gateway.access.conditions[0]");
    snprintf(buf, sizeof buf, base, "{\"access\":{\"public\":\"yes\"}}");
    refused(buf, "gateway.access");
    snprintf(buf, sizeof buf, base, "{\"access\":{\"owner\":1}}");
    refused(buf, "gateway.access: unknown key");
}

Test(loader, access_compiled)
{
    json_t *p;
    workflow *wf = load("{\"nodes\":{\"a\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":1}}},"
                        "\"gateway\":{\"access\":{\"roles\":[\"r1\",\"r2\"],\"public\":true,\"conditions\":["
                        "{\"attribute\":\"tenant\",\"equals\":\"inputs.org.tenant\"},{\"attribute\":\"tier\","
                        "\"value\":\"gold\"}]}}}",
                        &p);
    cr_assert_not_null(wf, "%s", json_dumps(p, 0));
    cr_assert(wf->access.present && wf->access.is_public);
    cr_assert_str_eq(wf->access.roles[1], "r2");
    cr_assert_null(wf->access.roles[2]);
    cr_assert_eq(wf->access.nconds, 2);
    cr_assert_str_eq(wf->access.conds[0].path[0], "org");
    cr_assert_str_eq(wf->access.conds[0].path[1], "tenant");
    cr_assert_null(wf->access.conds[0].path[2]);
    cr_assert_str_eq(json_string_value(wf->access.conds[1].value), "gold");
    workflow_free(wf);
    json_decref(p);
}

Test(loader, every_problem_reported)
{
    json_t *p;
    workflow *wf = load("{\"nodes\":{\"a\":{\"node_type\":\"Nope\"},\"b\":{\"node_type\":\"TransformNode\",\"config\":"
                        "{\"template\":1,\"x\":1}}}}",
                        &p);
    cr_assert_null(wf);
    cr_assert_eq(json_array_size(p), 2, "both nodes' problems are listed");
    json_decref(p);
}

Test(loader, file_errors)
{
    char path[] = "/tmp/kwfXXXXXX";
    int fd = mkstemp(path);
    cr_assert(write(fd, "{\"nodes\":{\"a\":1,\"a\":2}}", 24) == 24);
    close(fd);
    wf_load_env env = {cfg, &nenv};
    workflow *wf = NULL;
    json_t *p = json_array();
    cr_assert_eq(workflow_load_file(path, &env, &wf, p), -1);
    cr_assert(strstr(json_string_value(json_array_get(p, 0)), "duplicate"), "%s",
              json_string_value(json_array_get(p, 0)));
    unlink(path);
    cr_assert_eq(workflow_load_file("/tmp/definitely/missing.json", &env, &wf, p), -1);
    cr_assert_eq(json_array_size(p), 2);
    json_decref(p);
}

/* A FIFO among the workflow files is a problem of that file, reported at once: opening it used to
 * wait for a writer forever (the timeout turns that hang into a failure). */
Test(loader, fifo_is_refused_without_blocking, .timeout = 10)
{
    char dir[] = "/tmp/kwfdXXXXXX", fifo[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(fifo, sizeof fifo, "%s/pipe.json", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    wf_load_env env = {cfg, &nenv};
    workflow *wf = NULL;
    json_t *p = json_array();
    cr_assert_eq(workflow_load_file(fifo, &env, &wf, p), -1);
    cr_assert_null(wf);
    const char *msg = json_string_value(json_array_get(p, 0));
    cr_assert(msg && strstr(msg, "pipe.json: not a regular file (a FIFO)"), "%s", msg ? msg : "(none)");
    json_decref(p);
    unlink(fifo);
    rmdir(dir);
}

Test(loader, template_node_reference_orders_nodes)
{
    json_t *p;
    workflow *wf = load("{\"nodes\":{\"late\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":"
                        "\"{{ nodes.early.result }}\"}},\"early\":{\"node_type\":\"TransformNode\",\"config\":"
                        "{\"template\":1}}}}",
                        &p);
    cr_assert_not_null(wf, "%s", json_dumps(p, 0));
    cr_assert_eq(wf->order[0], 1, "early first");
    cr_assert_eq(wf->order[1], 0);
    workflow_free(wf);
    json_decref(p);
    refused(
        "{\"nodes\":{\"a\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":\"{{ nodes.ghost.result }}\"}}}}",
        "unknown node");
}

/* ---- SDK exports: every declared parameter at its default, redacted values from the gateway ---- */

static void accepted(const char *text)
{
    json_t *p;
    workflow *wf = load(text, &p);
    char *all = json_dumps(p, 0);
    cr_assert_not_null(wf, "refused: %s: %s", text, all);
    free(all);
    workflow_free(wf);
    json_decref(p);
}

#define REST_URL "\"resource\":\"items\",\"method\":\"GET\""

Test(loader, sdk_defaults_accepted)
{
    accepted(T1("SwitchNode", "{\"condition_field\":\"x\",\"operator\":\"==\",\"value\":1,\"pass_condition_result\":"
                              "true,\"break_after_first_match\":true,\"__test_multi_case_no_match\":false}"));
    accepted(T1("HTTPRequestNode", "{\"url\":\"http://127.0.0.1:9/x\",\"rate_limit_delay\":0,\"log_requests\":false}"));
    accepted(T1("HTTPRequestNode", "{\"url\":\"http://127.0.0.1:9/x\",\"rate_limit_delay\":0.0}"));
    accepted(T1("RESTClientNode",
                "{\"base_url\":\"http://127.0.0.1:9\"," REST_URL ",\"paginate\":false,\"pagination_params\":null}"));
    accepted(T1("CSVReaderNode", "{\"file_path\":\"a.csv\",\"index_column\":null}"));
}

Test(loader, sdk_defaults_are_dropped_before_compile)
{
    json_t *p;
    workflow *wf = load(T1("HTTPRequestNode", "{\"url\":\"http://127.0.0.1:9/x\",\"log_requests\":false}"), &p);
    cr_assert_not_null(wf);
    cr_assert_eq(wf->nodes[0].nparams, 1, "only url is a parameter of the node");
    cr_assert_str_eq(wf->nodes[0].params[0].key, "url");
    workflow_free(wf);
    json_decref(p);
}

Test(loader, sdk_non_defaults_refused_naming_the_key)
{
    refused(T1("SwitchNode", "{\"break_after_first_match\":false}"),
            "node 'a': config.break_after_first_match: kailashd's SwitchNode does not have this SDK feature; "
            "only the SDK's default (true) is accepted");
    refused(T1("SwitchNode", "{\"pass_condition_result\":1}"), "config.pass_condition_result");
    refused(T1("SwitchNode", "{\"__test_multi_case_no_match\":null}"), "config.__test_multi_case_no_match");
    refused(T1("HTTPRequestNode", "{\"url\":\"http://127.0.0.1:9/x\",\"rate_limit_delay\":0.5}"),
            "config.rate_limit_delay");
    refused(T1("HTTPRequestNode", "{\"url\":\"http://127.0.0.1:9/x\",\"rate_limit_delay\":\"0\"}"),
            "config.rate_limit_delay");
    refused(T1("HTTPRequestNode", "{\"url\":\"http://127.0.0.1:9/x\",\"log_requests\":true}"), "config.log_requests");
    refused(T1("RESTClientNode", "{\"base_url\":\"http://127.0.0.1:9\"," REST_URL ",\"paginate\":true}"),
            "config.paginate");
    refused(T1("RESTClientNode", "{\"base_url\":\"http://127.0.0.1:9\"," REST_URL ",\"pagination_params\":{}}"),
            "config.pagination_params");
    refused(T1("CSVReaderNode", "{\"file_path\":\"a.csv\",\"index_column\":\"id\"}"), "config.index_column");
    /* another type's SDK key is still unknown */
    refused(T1("MergeNode", "{\"log_requests\":false}"), "config.log_requests: unknown key for MergeNode");
}

/* One RESTClientNode "api" with base_url BASE (a JSON string) and the gateway block GW. */
#define REST_WF(base, gw)                                                                                      \
    "{\"nodes\":{\"api\":{\"node_type\":\"RESTClientNode\",\"config\":{\"base_url\":" base "," REST_URL        \
    "}}},\"gateway\":" gw "}"
#define REDACTED_REST(gw) REST_WF("\"***REDACTED***\"", gw)
#define PLAIN_REST(gw) REST_WF("\"http://127.0.0.1:7\"", gw)

Test(loader, redacted_value_filled_from_config_overrides)
{
    setenv("KAILASH_TEST_BASE", "http://127.0.0.1:7", 1);
    const char *texts[] = {REDACTED_REST("{\"config_overrides\":{\"api\":{\"base_url\":\"http://127.0.0.1:7\"}}}"),
                           REDACTED_REST("{\"config_overrides\":{\"api\":{\"base_url\":{\"$env\":"
                                         "\"KAILASH_TEST_BASE\"}}}}")};
    for (size_t i = 0; i < 2; i++) {
        json_t *p;
        workflow *wf = load(texts[i], &p);
        cr_assert_not_null(wf, "%s", json_dumps(p, 0));
        const wf_param *base = NULL;
        for (size_t k = 0; k < wf->nodes[0].nparams; k++)
            if (strcmp(wf->nodes[0].params[k].key, "base_url") == 0)
                base = &wf->nodes[0].params[k];
        cr_assert_not_null(base);
        cr_assert_str_eq(json_string_value(base->constant), "http://127.0.0.1:7");
        char *shown = json_dumps(wf->normalized, 0);
        cr_assert(strstr(shown, "config_overrides"), "%s", shown);
        free(shown);
        workflow_free(wf);
        json_decref(p);
    }
}

Test(loader, redacted_without_override_refused_naming_the_way)
{
    refused(REDACTED_REST("{}"), "node 'api': config.base_url: the value is \\\"***REDACTED***\\\"");
    refused(REDACTED_REST("{}"), "gateway.config_overrides: {\\\"api\\\": {\\\"base_url\\\"");
    refused(PLAIN_REST("{\"config_overrides\":{\"other\":{\"base_url\":\"http://x\"}}}"),
            "gateway.config_overrides.other: no such node");
    refused(PLAIN_REST("{\"config_overrides\":{\"api\":\"http://x\"}}"),
            "gateway.config_overrides.api: expected an object");
    refused(PLAIN_REST("{\"config_overrides\":[1]}"), "gateway.config_overrides: expected an object");
    /* an override is checked like the key it replaces */
    refused(REDACTED_REST("{\"config_overrides\":{\"api\":{\"base_url\":\"***REDACTED***\"}}}"), "REDACTED");
    refused(REDACTED_REST("{\"config_overrides\":{\"api\":{\"base_url\":\"http://127.0.0.1:7\",\"colour\":1}}}"),
            "config.colour: unknown key");
    refused(REDACTED_REST("{\"config_overrides\":{\"api\":{\"base_url\":{\"$env\":\"KAILASH_SURELY_UNSET\"}}}}"),
            "KAILASH_SURELY_UNSET is not set");
}

Test(loader, sdk_async_names_are_the_same_nodes)
{
    json_t *p;
    workflow *wf = load("{\"nodes\":{\"s\":{\"node_type\":\"AsyncSwitchNode\",\"config\":{\"condition_field\":\"x\","
                        "\"value\":1,\"break_after_first_match\":true}},\"m\":{\"node_type\":\"AsyncMergeNode\","
                        "\"config\":{\"chunk_size\":1000}},\"h\":{\"node_type\":\"AsyncHTTPRequestNode\",\"config\":"
                        "{\"url\":\"http://127.0.0.1:9/x\",\"log_requests\":false}},\"r\":{\"node_type\":"
                        "\"AsyncRESTClientNode\",\"config\":{\"base_url\":\"http://127.0.0.1:9\"," REST_URL "}}}}",
                        &p);
    cr_assert_not_null(wf, "%s", json_dumps(p, 0));
    const char *want[] = {"SwitchNode", "MergeNode", "HTTPRequestNode", "RESTClientNode"};
    for (size_t i = 0; i < 4; i++)
        cr_assert_str_eq(wf->nodes[i].type->name, want[i]);
    cr_assert(wf->has_async, "the HTTP nodes wait on the loop");
    workflow_free(wf);
    json_decref(p);
    refused(T1("AsyncMergeNode", "{\"chunk_size\":10}"), "config.chunk_size");
    refused(T1("AsyncSharePointGraphReader", "{}"), "unknown node type 'AsyncSharePointGraphReader'");
    refused(T1("asyncswitchnode", "{}"), "unknown node type");
}
