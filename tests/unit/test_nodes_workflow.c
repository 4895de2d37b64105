/* WorkflowNode (src/nodes/workflow_node.c, workflow_map.c) and the registry's check of the calls
 * between workflows (src/engine/calls.c, registry.c):
 *   workflow_node   its config at compile (hostile values included), ports, pinned keys;
 *   workflow_map    the SDK's mapping of inputs into the inner run and of its results out;
 *   workflow_calls  missing targets, loops, depth, by file name, and reloads that put back a version;
 *   workflow_run    nested runs through the real engine: outputs, the caller's home loop, cancel,
 *                   deadline, a full inner executor, the run-time depth check, a removed target.
 * The SDK's own exports and outputs are replayed black-box in tests/integration/test_workflow_node.py. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/nodes/workflow_node.h"
#include "run_waiter.h"
#include "test_config_dir.h"
#include "kailash/engine.h"
#include "kailash/ioloop.h"
#include "kailash/node.h"
#include "kailash/upstream.h"
#include "kailash/util.h"

extern const node_type node_workflow;

static const node_env test_env = {.data_dir = "/tmp", .max_response_bytes = 1 << 20};

#include "node_harness.h"

/* ---- compile ---------------------------------------------------------------------------------- */

static void refused(const char *config, const char *expect)
{
    char err[512] = "";
    cr_assert_eq(compile_only(&node_workflow, config, err, sizeof err), -1, "%s", config);
    cr_assert(strstr(err, expect), "%s: got '%s'", config, err);
}

Test(workflow_node, config_refusals)
{
    refused("{}", "config: set one of workflow_name (a loaded workflow's name) and workflow_path");
    refused("{\"workflow_name\": null, \"workflow_path\": null}", "config: set one of workflow_name");
    refused("{\"workflow_name\": \"a\", \"workflow_path\": \"a.json\"}", "config: set one of workflow_name");
    refused("{\"workflow_name\": \"\"}", "config.workflow_name: expected the literal name of a loaded workflow");
    refused("{\"workflow_name\": 7}", "config.workflow_name: expected the literal name");
    refused("{\"workflow_name\": [\"a\"]}", "config.workflow_name: expected the literal name");
    refused("{\"workflow_name\": \"{{ inputs.w }}\"}", "config.workflow_name: expected the literal name");
    refused("{\"workflow_path\": \"{{ env.P }}.json\"}", "config.workflow_path: expected the literal path");
    refused("{\"workflow_path\": \"\"}", "config.workflow_path: expected the literal path");
    refused("{\"workflow_path\": \"flows/inner.yaml\"}",
            "config.workflow_path: 'flows/inner.yaml': kailashd loads workflows from .json files of workflows_dir");
    refused("{\"workflow_path\": \"flows/\"}", "config.workflow_path: 'flows/': kailashd loads workflows from .json");
    refused("{\"workflow_path\": \"/x/.json\"}", "kailashd loads workflows from .json files");
    refused("{\"workflow_path\": \"inner.json/\"}", "kailashd loads workflows from .json files");
    refused("{\"workflow_dict\": {\"nodes\": {}}}",
            "config.workflow_dict: kailashd runs only workflows it loaded: save the inner workflow as a file of "
            "workflows_dir and set workflow_path to that file (or workflow_name to its name)");
    refused("{\"workflow_name\": \"a\", \"workflow\": {\"nodes\": {}}}",
            "config.workflow: kailashd runs only workflows it loaded: set workflow_name");
    refused("{\"workflow_name\": \"a\", \"workflow\": \"a\"}", "config.workflow: kailashd runs only workflows");
    refused("{\"workflow_name\": \"a\", \"input_mapping\": []}", "config.input_mapping: expected an object");
    refused("{\"workflow_name\": \"a\", \"input_mapping\": {\"x\": \"sw\"}}",
            "config.input_mapping.x: expected {\"node\": \"id\", \"parameter\": \"name\"} (literal names)");
    refused("{\"workflow_name\": \"a\", \"input_mapping\": {\"x\": {\"parameter\": \"p\"}}}",
            "config.input_mapping.x: expected {\"node\": \"id\"");
    refused("{\"workflow_name\": \"a\", \"input_mapping\": {\"x\": {\"node\": \"{{ inputs.n }}\"}}}",
            "config.input_mapping.x: expected");
    refused("{\"workflow_name\": \"a\", \"input_mapping\": {\"x\": {\"node\": \"n\", \"parameter\": 1}}}",
            "config.input_mapping.x: expected");
    refused("{\"workflow_name\": \"a\", \"input_mapping\": {\"x\": {\"node\": \"n\", \"required\": \"no\"}}}",
            "config.input_mapping.x.required: expected true or false");
    refused("{\"workflow_name\": \"a\", \"output_mapping\": {\"x\": {\"node\": \"n\", \"output\": 3}}}",
            "config.output_mapping.x: expected {\"node\": \"id\", \"output\": \"name\"}");
    refused("{\"workflow_name\": \"a\", \"output_mapping\": 5}", "config.output_mapping: expected an object");
}

static wfn_conf *compiled(const char *config)
{
    char err[512] = "";
    json_t *cfg = parse(config);
    void *c = NULL;
    cr_assert_eq(node_workflow.compile(&test_env, cfg, &c, err, sizeof err), 0, "%s: %s", config, err);
    json_decref(cfg);
    return c;
}

/* What the SDK exports: workflow_path as its author's machine had it, and "workflow": null. */
Test(workflow_node, an_sdk_export_names_its_file)
{
    wfn_conf *c = compiled("{\"workflow_path\": \"/home/someone/flows/inner.json\", \"workflow\": null, "
                           "\"input_mapping\": {\"x\": {\"node\": \"sw\", \"parameter\": \"input_data\"}}, "
                           "\"output_mapping\": {\"out\": {\"node\": \"m\", \"output\": \"merged_data\"}}}");
    int by_file = -1;
    cr_assert_str_eq(node_workflow.calls_workflow(c, &by_file), "inner.json");
    cr_assert_eq(by_file, 1);
    node_workflow.free(c);
    c = compiled("{\"workflow_path\": \"inner.json\", \"workflow_dict\": null, \"input_mapping\": {}}");
    cr_assert_str_eq(node_workflow.calls_workflow(c, &by_file), "inner.json");
    cr_assert_null(c->input_mapping, "an empty mapping is none, as the SDK's {} is falsy");
    node_workflow.free(c);
    c = compiled("{\"workflow_name\": \"inner.json\", \"workflow_path\": null}");
    cr_assert_str_eq(node_workflow.calls_workflow(c, &by_file), "inner.json");
    cr_assert_eq(by_file, 0, "a name is a name, even one that ends in .json");
    node_workflow.free(c);
}

Test(workflow_node, ports_and_pinned_keys)
{
    wfn_conf *c = compiled("{\"workflow_name\": \"inner\"}");
    cr_assert(node_workflow.has_output(c, "results"));
    cr_assert(node_workflow.has_output(c, "m_merged_data"));
    cr_assert(node_workflow.has_output(c, "a_b_c"));
    cr_assert_not(node_workflow.has_output(c, "merged"), "no exit port lacks the <node>_ prefix");
    cr_assert_not(node_workflow.has_output(c, "_x"));
    cr_assert_not(node_workflow.has_output(c, "m_"));
    node_workflow.free(c);
    c = compiled("{\"workflow_name\": \"inner\", \"output_mapping\": {\"out\": {\"node\": \"m\"}}}");
    cr_assert(node_workflow.has_output(c, "results"));
    cr_assert(node_workflow.has_output(c, "out"));
    cr_assert_not(node_workflow.has_output(c, "m_merged_data"), "a mapping names the ports");
    node_workflow.free(c);
    static const char *const must[] = {"workflow_name", "workflow_path", "workflow", "workflow_dict",
                                       "input_mapping", "output_mapping"};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++) {
        int found = 0;
        for (const char *const *k = node_workflow.pinned_keys; *k; k++)
            found |= strcmp(*k, must[i]) == 0;
        cr_assert(found, "%s is not pinned", must[i]);
    }
    cr_assert_null(node_workflow.run);
    cr_assert_not_null(node_workflow.start);
}

/* ---- the SDK's mapping ------------------------------------------------------------------------- */

static kconfig *cfg;
static char dir[64];

static void cfg_setup(void)
{
    cfg = test_config_dir(dir, "/tmp/kwfnXXXXXX");
}

static void cfg_teardown(void)
{
    config_free(cfg);
}

/* The mapping tests' inner workflow: sw (an entry node) -> m; my_node (an entry node whose id has a
 * '_'); t (an entry TransformNode, which takes any input name). */
static workflow *inner_wf(void)
{
    static const node_env nenv = {"/tmp", 1 << 20, 1000, 1};
    wf_load_env env = {cfg, &nenv};
    json_t *doc = parse("{\"nodes\": {"
                        "\"sw\": {\"node_type\": \"SwitchNode\", \"config\": {\"condition_field\": \"n\", "
                        "\"operator\": \">\", \"value\": 1}},"
                        "\"m\": {\"node_type\": \"MergeNode\", \"config\": {\"merge_type\": \"concat\"}},"
                        "\"my_node\": {\"node_type\": \"MergeNode\", \"config\": {}},"
                        "\"t\": {\"node_type\": \"TransformNode\", \"config\": {\"template\": 1}}},"
                        "\"connections\": [{\"source_node\": \"sw\", \"source_output\": \"true_output\", "
                        "\"target_node\": \"m\", \"target_input\": \"data1\"}]}");
    json_t *problems = json_array();
    workflow *wf = NULL;
    cr_assert_eq(workflow_load_json(doc, "inner.json", "inner", &env, &wf, problems), 0, "%s",
                 json_dumps(problems, 0));
    json_decref(problems);
    json_decref(doc);
    return wf;
}

/* wfn_map_inputs for config and the node's inputs (JSON texts): the parameters as compact sorted
 * JSON, or "ERR <code>: <message>". Caller frees. */
static char *mapped(const char *config, const char *inputs)
{
    workflow *wf = inner_wf();
    wfn_conf *c = compiled(config);
    json_t *in = parse(inputs), *before = json_deep_copy(in);
    node_call call = {.node_id = "sub", .inputs = in};
    node_error e = {"", ""};
    json_t *p = wfn_map_inputs(c, wf, &call, &e);
    cr_assert(json_equal(in, before), "the mapping changed its inputs");
    char *out = NULL;
    if (p) {
        out = json_dumps(p, JSON_SORT_KEYS | JSON_COMPACT);
    } else {
        cr_assert_neq(e.code[0], '\0');
        cr_assert_eq(asprintf(&out, "ERR %s: %s", e.code, e.message) > 0, 1);
    }
    json_decref(p);
    json_decref(in);
    json_decref(before);
    node_workflow.free(c);
    workflow_free(wf);
    return out;
}

static void assert_mapped(const char *config, const char *inputs, const char *want)
{
    char *got = mapped(config, inputs);
    cr_assert_str_eq(got, want, "%s with %s", config, inputs);
    free(got);
}

TestSuite(workflow_map, .init = cfg_setup, .fini = cfg_teardown);

Test(workflow_map, auto_mapping_as_the_sdk_declares_it)
{
    const char *by_name = "{\"workflow_name\": \"inner\"}";
    assert_mapped(by_name, "{\"sw_input_data\": {\"n\": 3}}", "{\"sw\":{\"input_data\":{\"n\":3}}}");
    /* m has a connection in (not an entry node); bogus is no param of a SwitchNode; my_node_data1
     * splits at the first '_' into node "my", as the SDK splits; nobody is no node */
    assert_mapped(by_name, "{\"m_data2\": [7], \"sw_bogus\": 1, \"my_node_data1\": 1, \"nobody_x\": 1, \"_x\": 1, "
                           "\"sw_\": 1, \"sw\": 1}",
                  "{}");
    /* a type that takes any input name takes it; the node's own config keys never map */
    assert_mapped(by_name, "{\"t_anything\": 1, \"workflow_name\": \"inner\", \"input_mapping\": {}}",
                  "{\"t\":{\"anything\":1}}");
    /* inputs reaches any node by id and wins; ids the workflow lacks are dropped */
    assert_mapped(by_name,
                  "{\"sw_input_data\": 1, \"inputs\": {\"sw\": {\"input_data\": 2}, \"m\": {\"data2\": [7]}, "
                  "\"zz\": {\"a\": 1}, \"my_node\": {\"data1\": 3}}}",
                  "{\"m\":{\"data2\":[7]},\"my_node\":{\"data1\":3},\"sw\":{\"input_data\":2}}");
    assert_mapped(by_name, "{\"inputs\": null}", "{}");
}

Test(workflow_map, inputs_of_the_wrong_shape_are_the_callers_mistake)
{
    const char *by_name = "{\"workflow_name\": \"inner\"}";
    assert_mapped(by_name, "{\"inputs\": [1]}",
                  "ERR bad_request: input 'inputs': expected an object {\"node_id\": {\"param\": value}}");
    assert_mapped(by_name, "{\"inputs\": \"sw\"}",
                  "ERR bad_request: input 'inputs': expected an object {\"node_id\": {\"param\": value}}");
    assert_mapped(by_name, "{\"inputs\": {\"sw\": 5}}",
                  "ERR bad_request: input 'inputs.sw': expected an object {\"param\": value}");
    assert_mapped(by_name, "{\"inputs\": {\"zz\": 5}}", "{}"); /* not a node: dropped before its shape counts */
}

Test(workflow_map, input_mapping_required_default_and_parameter)
{
    const char *m = "{\"workflow_name\": \"inner\", \"input_mapping\": {"
                    "\"x\": {\"node\": \"sw\", \"parameter\": \"input_data\"},"
                    "\"y\": {\"node\": \"m\", \"parameter\": \"data2\", \"default\": [9]},"
                    "\"z\": {\"node\": \"t\", \"required\": false},"
                    "\"w\": {\"node\": \"t\", \"default\": null, \"required\": false}}}";
    assert_mapped(m, "{\"x\": 1, \"sw_input_data\": 5}", "{\"m\":{\"data2\":[9]},\"sw\":{\"input_data\":1}}");
    assert_mapped(m, "{\"x\": null, \"y\": 2, \"z\": 3}",
                  "{\"m\":{\"data2\":2},\"sw\":{\"input_data\":null},\"t\":{\"z\":3}}");
    assert_mapped(m, "{\"y\": 2}",
                  "ERR bad_request: input 'x' is missing: input_mapping makes it required (give it by a connection "
                  "or as parameters.sub.x, or give the mapping a \"default\" or \"required\": false)");
    assert_mapped("{\"workflow_name\": \"i\", \"input_mapping\": {\"x\": {\"node\": \"sw\", \"default\": null}}}",
                  "{}",
                  "ERR bad_request: input 'x' is missing: input_mapping makes it required (give it by a connection "
                  "or as parameters.sub.x, or give the mapping a \"default\" or \"required\": false)");
    assert_mapped(m, "{\"x\": 1, \"inputs\": {\"sw\": {\"input_data\": 4}}}",
                  "{\"m\":{\"data2\":[9]},\"sw\":{\"input_data\":4}}");
}

/* wfn_map_outputs for config over results (JSON texts), as compact sorted JSON. */
static void assert_outputs(const char *config, const char *results, const char *want)
{
    workflow *wf = inner_wf();
    wfn_conf *c = compiled(config);
    json_t *res = parse(results), *before = json_deep_copy(res);
    json_t *out = wfn_map_outputs(c, wf, res);
    char *got = json_dumps(out, JSON_SORT_KEYS | JSON_COMPACT);
    cr_assert_str_eq(got, want, "%s over %s", config, results);
    cr_assert(json_equal(res, before));
    free(got);
    json_decref(out);
    json_decref(res);
    json_decref(before);
    node_workflow.free(c);
    workflow_free(wf);
}

Test(workflow_map, outputs_are_results_and_exit_ports)
{
    /* exit nodes: m, my_node, t (sw has a connection out); those that did not run give nothing */
    assert_outputs("{\"workflow_name\": \"i\"}", "{\"sw\": {\"true_output\": 1}, \"m\": {\"merged_data\": [1]}}",
                   "{\"m_merged_data\":[1],\"results\":{\"m\":{\"merged_data\":[1]},\"sw\":{\"true_output\":1}}}");
    assert_outputs("{\"workflow_name\": \"i\"}", "{\"t\": {\"result\": null, \"x\": 2}, \"my_node\": 5}",
                   "{\"results\":{\"my_node\":5,\"t\":{\"result\":null,\"x\":2}},\"t_result\":null,\"t_x\":2}");
    /* a long port name (nested WorkflowNodes stack prefixes) is kept whole */
    char port[700], results[800], key[710];
    memset(port, 'p', sizeof port - 1);
    port[sizeof port - 1] = '\0';
    snprintf(results, sizeof results, "{\"t\": {\"%s\": 1}}", port);
    snprintf(key, sizeof key, "t_%s", port);
    workflow *wf = inner_wf();
    wfn_conf *c = compiled("{\"workflow_name\": \"i\"}");
    json_t *res = parse(results), *out = wfn_map_outputs(c, wf, res);
    cr_assert_eq(json_integer_value(json_object_get(out, key)), 1);
    cr_assert_eq(json_object_size(out), 2);
    json_decref(out);
    json_decref(res);
    node_workflow.free(c);
    workflow_free(wf);
    assert_outputs("{\"workflow_name\": \"i\", \"output_mapping\": {\"out\": {\"node\": \"m\", \"output\": "
                   "\"merged_data\"}, \"merged_data\": {\"node\": \"m\"}, \"gone\": {\"node\": \"zz\"}, \"nope\": "
                   "{\"node\": \"m\", \"output\": \"nope\"}}}",
                   "{\"m\": {\"merged_data\": null}}",
                   "{\"merged_data\":null,\"out\":null,\"results\":{\"m\":{\"merged_data\":null}}}");
}

/* ---- the registry's check of calls ------------------------------------------------------------- */

/* Writes workflow file NAME.json: one WorkflowNode calling target (by workflow_name, or with by_file
 * by workflow_path), or (target NULL) one TransformNode giving v. */
static void write_wf(const char *name, const char *target, int by_file, int v)
{
    char path[256];
    snprintf(path, sizeof path, "%s/wf/%s.json", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    if (target)
        fprintf(f, "{\"nodes\":{\"call\":{\"node_type\":\"WorkflowNode\",\"config\":{\"%s\":\"%s\"}}}}",
                by_file ? "workflow_path" : "workflow_name", target);
    else
        fprintf(f, "{\"nodes\":{\"t\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":%d}}}}", v);
    fclose(f);
}

static void call(const char *name, const char *target)
{
    write_wf(name, target, 0, 0);
}

static registry *load(registry *prev)
{
    static const node_env nenv = {"/tmp", 1 << 20, 1000, 1};
    registry *r = registry_load(cfg, &nenv, prev);
    cr_assert_not_null(r);
    return r;
}

/* The error message registry r has for file NAME.json, or "" (never NULL, for strstr). */
static const char *error_for(registry *r, const char *name)
{
    char file[256];
    snprintf(file, sizeof file, "%s/wf/%s.json", dir, name);
    json_t *e;
    size_t i;
    json_array_foreach(registry_errors(r), i, e) if (strcmp(json_string_value(json_object_get(e, "file")), file) == 0)
        return json_string_value(json_object_get(e, "message"));
    return "";
}

static void assert_error_has(registry *r, const char *name, const char *want)
{
    const char *got = error_for(r, name);
    cr_assert(strstr(got, want), "%s.json: want '%s', got '%s'", name, want, got);
}

/* The value the TransformNode of loaded workflow name gives (its template). */
static int leaf_value(registry *r, const char *name)
{
    executor *ex = registry_find(r, name);
    cr_assert_not_null(ex, "%s is not loaded", name);
    const workflow *wf = exec_workflow(ex);
    return (int)json_integer_value(wf->nodes[0].params[0].constant);
}

TestSuite(workflow_calls, .init = cfg_setup, .fini = cfg_teardown);

Test(workflow_calls, loops_and_missing_targets_are_left_out_naming_the_chain)
{
    write_wf("leaf", NULL, 0, 1);
    call("ok", "leaf");
    call("self", "self");
    call("a", "b");
    call("b", "a");
    call("to_loop", "a");
    call("dangling", "nowhere");
    call("via_dangling", "dangling");
    registry *r = load(NULL);
    cr_assert_not_null(registry_find(r, "leaf"));
    cr_assert_not_null(registry_find(r, "ok"));
    cr_assert_eq(registry_count(r), 2, "%s", json_dumps(registry_errors(r), 0));
    assert_error_has(r, "self", "WorkflowNode calls loop back: self (node 'call') -> self (a workflow may not call "
                                "itself, directly or through others)");
    assert_error_has(r, "a", "loop back: a (node 'call') -> b (node 'call') -> a (");
    assert_error_has(r, "b", "loop back: b (node 'call') -> a (node 'call') -> b (");
    assert_error_has(r, "to_loop", "loop back: to_loop (node 'call') -> a (node 'call') -> b (node 'call') -> a (");
    assert_error_has(r, "dangling", "WorkflowNode calls a workflow that is not loaded: dangling (node 'call') -> "
                                    "workflow_name 'nowhere': no loaded workflow has that name");
    assert_error_has(r, "via_dangling", "via_dangling (node 'call') -> dangling (node 'call') -> workflow_name "
                                        "'nowhere'");
    cr_assert_eq(json_array_size(registry_errors(r)), 6);
    cr_assert_eq(json_array_size(registry_problems(r)), 6);
    registry_release(r);
}

Test(workflow_calls, a_file_name_finds_the_workflow_whatever_its_name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/wf/file_of_x.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"name\": \"x\", \"nodes\":{\"t\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":1}}}}", f);
    fclose(f);
    write_wf("by_path", "/home/someone/elsewhere/file_of_x.json", 1, 0);
    write_wf("by_bad_path", "x.json", 1, 0);
    write_wf("by_name_of_file", "file_of_x", 0, 0);
    registry *r = load(NULL);
    cr_assert_not_null(registry_find(r, "by_path"), "%s", error_for(r, "by_path"));
    cr_assert_eq(registry_find_file(r, "file_of_x.json"), registry_find(r, "x"));
    cr_assert_null(registry_find_file(r, "x.json"));
    cr_assert_null(registry_find_file(r, "file_of_x"));
    assert_error_has(r, "by_bad_path", "by_bad_path (node 'call') -> workflow_path 'x.json': no workflow was loaded "
                                       "from a file of workflows_dir called 'x.json'");
    assert_error_has(r, "by_name_of_file", "workflow_name 'file_of_x': no loaded workflow has that name");
    registry_release(r);
}

Test(workflow_calls, eight_levels_of_calls_and_no_more)
{
    char name[16], next[16];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "w%d", i);
        snprintf(next, sizeof next, "w%d", i + 1);
        write_wf(name, i == 9 ? NULL : next, 0, 9); /* w0 -> w1 -> ... -> w9 (a leaf) */
    }
    registry *r = load(NULL);
    cr_assert_not_null(registry_find(r, "w1"), "w1 makes 8 levels of calls: allowed");
    cr_assert_null(registry_find(r, "w0"), "w0 makes 9");
    assert_error_has(r, "w0", "WorkflowNode calls nest deeper than 8 levels: w0 (node 'call') -> w1 (node 'call') -> "
                              "w2 (node 'call') -> w3 (node 'call') -> w4 (node 'call') -> w5 (node 'call') -> "
                              "w6 (node 'call') -> w7 (node 'call') -> w8 (node 'call') -> w9");
    cr_assert_eq(registry_count(r), 9);
    registry_release(r);
}

/* A diamond is not a loop; its depth counts its deepest side, also when that side was walked first
 * from a shallower caller. */
Test(workflow_calls, diamonds_and_shared_deep_chains)
{
    write_wf("leaf", NULL, 0, 1);
    call("l", "leaf");
    call("r", "leaf");
    char path[256];
    snprintf(path, sizeof path, "%s/wf/top.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"nodes\":{\"x\":{\"node_type\":\"WorkflowNode\",\"config\":{\"workflow_name\":\"l\"}},"
          "\"y\":{\"node_type\":\"WorkflowNode\",\"config\":{\"workflow_name\":\"r\"}},"
          "\"z\":{\"node_type\":\"WorkflowNode\",\"config\":{\"workflow_name\":\"leaf\"}}}}",
          f);
    fclose(f);
    /* d0 calls d7 directly and d1 -> d2 -> ... -> d7 -> leaf: 8 levels below d0's node "b" */
    snprintf(path, sizeof path, "%s/wf/d0.json", dir);
    f = fopen(path, "w");
    fputs("{\"nodes\":{\"a\":{\"node_type\":\"WorkflowNode\",\"config\":{\"workflow_name\":\"d7\"}},"
          "\"b\":{\"node_type\":\"WorkflowNode\",\"config\":{\"workflow_name\":\"d1\"}}}}",
          f);
    fclose(f);
    char name[16], next[16];
    for (int i = 1; i < 8; i++) {
        snprintf(name, sizeof name, "d%d", i);
        snprintf(next, sizeof next, "d%d", i + 1);
        call(name, i == 7 ? "leaf" : next);
    }
    call("e", "d0"); /* 9 levels */
    registry *r = load(NULL);
    cr_assert_not_null(registry_find(r, "top"), "%s", error_for(r, "top"));
    cr_assert_not_null(registry_find(r, "d0"), "%s", error_for(r, "d0"));
    cr_assert_null(registry_find(r, "e"));
    assert_error_has(r, "e", "nest deeper than 8 levels: e (node 'call') -> d0 (node 'b') -> d1 (node 'call') -> ");
    cr_assert_eq(registry_count(r), 12, "%s", json_dumps(registry_errors(r), 0));
    registry_release(r);
}

/* A long chain is refused without walking (or recursing) down all of it. */
Test(workflow_calls, a_long_chain_costs_no_deep_walk, .timeout = 20)
{
    char name[16], next[16];
    enum { N = 1500 };
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "c%04d", i);
        snprintf(next, sizeof next, "c%04d", i + 1);
        write_wf(name, i == N - 1 ? NULL : next, 0, 1);
    }
    registry *r = load(NULL);
    cr_assert_eq(registry_count(r), 9, "the leaf and the 8 above it");
    cr_assert_not_null(registry_find(r, "c1491"));
    cr_assert_null(registry_find(r, "c1490"));
    registry_release(r);
}

/* gateway.overridable can't open what chooses the inner workflow (the call is compiled: it would be
 * ignored); a caller of such a workflow is left out with it. Opening another key is fine. */
Test(workflow_calls, overridable_may_not_open_the_call)
{
    write_wf("leaf", NULL, 0, 1);
    char path[256];
    snprintf(path, sizeof path, "%s/wf/opened.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"nodes\":{\"call\":{\"node_type\":\"WorkflowNode\",\"config\":{\"workflow_name\":\"leaf\"}}},"
          "\"gateway\":{\"overridable\":{\"call\":[\"description\",\"workflow_name\"]}}}",
          f);
    fclose(f);
    snprintf(path, sizeof path, "%s/wf/fine.json", dir);
    f = fopen(path, "w");
    fputs("{\"nodes\":{\"call\":{\"node_type\":\"WorkflowNode\",\"config\":{\"workflow_name\":\"leaf\"}}},"
          "\"gateway\":{\"overridable\":{\"call\":[\"description\"]}}}",
          f);
    fclose(f);
    call("caller", "opened");
    registry *r = load(NULL);
    assert_error_has(r, "opened", "gateway.overridable may not open a WorkflowNode's 'workflow_name' (the workflow "
                                  "file chooses the workflow it runs, never a request): opened (node 'call')");
    assert_error_has(r, "caller", "never a request): caller (node 'call') -> opened (node 'call')");
    cr_assert_not_null(registry_find(r, "fine"));
    cr_assert_eq(registry_count(r), 2);
    registry_release(r);
}

/* On reload a workflow whose calls fail keeps its previous version, as one that fails to compile
 * does; the one whose own node makes the failing call is put back first, so an unchanged caller keeps
 * its (new) version. */
Test(workflow_calls, a_reload_puts_back_the_version_that_worked)
{
    write_wf("leaf", NULL, 0, 1);
    call("top", "leaf");
    call("other", "leaf");
    registry *r1 = load(NULL);
    cr_assert_eq(registry_count(r1), 3);
    call("leaf", "nowhere"); /* a bad edit */
    call("new", "missing");  /* a new file that fails: nothing to put back */
    registry *r2 = load(r1);
    cr_assert_eq(registry_count(r2), 3, "%s", json_dumps(registry_errors(r2), 0));
    cr_assert_eq(leaf_value(r2, "leaf"), 1, "the previous leaf serves");
    cr_assert_eq(registry_find(r2, "leaf"), registry_find(r1, "leaf"));
    cr_assert_neq(registry_find(r2, "top"), registry_find(r1, "top"), "top itself loaded fine: its new version");
    assert_error_has(r2, "leaf", "leaf (node 'call') -> workflow_name 'nowhere'");
    assert_error_has(r2, "new", "new (node 'call') -> workflow_name 'missing'");
    cr_assert_eq(json_array_size(registry_errors(r2)), 2, "%s", json_dumps(registry_errors(r2), 0));
    /* top edited into a loop: its previous version (calling leaf) serves */
    write_wf("leaf", NULL, 0, 2);
    call("top", "top");
    registry *r3 = load(r2);
    cr_assert_eq(leaf_value(r3, "leaf"), 2);
    cr_assert_eq(registry_find(r3, "top"), registry_find(r2, "top"));
    assert_error_has(r3, "top", "loop back: top (node 'call') -> top");
    /* leaf removed: nothing can serve top or other (their previous versions call leaf too) */
    char path[256];
    snprintf(path, sizeof path, "%s/wf/leaf.json", dir);
    unlink(path);
    registry *r4 = load(r3);
    cr_assert_eq(registry_count(r4), 0, "%s", json_dumps(registry_errors(r4), 0));
    assert_error_has(r4, "other", "other (node 'call') -> workflow_name 'leaf'");
    cr_assert_eq(json_array_size(registry_errors(r4)), 3, "one error per file: %s", json_dumps(registry_errors(r4), 0));
    registry_release(r1);
    registry_release(r2);
    registry_release(r3);
    registry_release(r4);
}

/* ---- running through the engine ------------------------------------------------------------------ */

static int stuck_fd = -1, stuck_port;

static void open_stuck_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    stuck_fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(bind(stuck_fd, (struct sockaddr *)&a, sizeof a) == 0);
    cr_assert(listen(stuck_fd, 64) == 0);
    getsockname(stuck_fd, (struct sockaddr *)&a, &len);
    stuck_port = ntohs(a.sin_port);
}

static void put(const char *name, const char *text)
{
    test_config_put(dir, name, text);
}

#define WFN(id, target) "\"" id "\":{\"node_type\":\"WorkflowNode\",\"config\":{\"workflow_name\":\"" target "\"}}"

static void run_setup(void)
{
    char err[256], text[1024];
    cfg_setup();
    cfg->workers = 2;
    open_stuck_port();
    put("inner", "{\"nodes\":{\"sw\":{\"node_type\":\"SwitchNode\",\"config\":{\"condition_field\":\"n\","
                 "\"operator\":\">\",\"value\":1}},\"m\":{\"node_type\":\"MergeNode\",\"config\":{\"merge_type\":"
                 "\"concat\"}}},\"connections\":[{\"source_node\":\"sw\",\"source_output\":\"true_output\","
                 "\"target_node\":\"m\",\"target_input\":\"data1\"}]}");
    put("outer", "{\"nodes\":{" WFN("sub", "inner") "}}");
    /* the call never gets an answer; one run at a time, none waiting */
    snprintf(text, sizeof text,
             "{\"nodes\":{\"call\":{\"node_type\":\"HTTPRequestNode\",\"config\":{\"url\":\"http://127.0.0.1:%d/x\","
             "\"timeout\":30}}},\"gateway\":{\"timeout_ms\":20000,\"executor\":{\"max_concurrency\":1,"
             "\"max_queue\":0}}}",
             stuck_port);
    put("stuck", text);
    put("outer_stuck", "{\"nodes\":{" WFN("sub", "stuck") "},\"gateway\":{\"timeout_ms\":20000}}");
    snprintf(text, sizeof text,
             "{\"nodes\":{\"call\":{\"node_type\":\"HTTPRequestNode\",\"config\":{\"url\":\"http://127.0.0.1:%d/x\","
             "\"timeout\":30}}},\"gateway\":{\"timeout_ms\":20000,\"executor\":{\"max_concurrency\":1,"
             "\"max_queue\":1}}}",
             stuck_port);
    put("stuck_q", text);
    put("outer_stuck_q", "{\"nodes\":{" WFN("sub", "stuck_q") "},\"gateway\":{\"timeout_ms\":20000}}");
    /* the file gives the inner run's inputs, rendered against the outer run */
    put("outer_cfg", "{\"nodes\":{\"sub\":{\"node_type\":\"WorkflowNode\",\"config\":{\"workflow_name\":"
                     "\"inner\",\"inputs\":{\"sw\":{\"input_data\":\"{{ inputs.x }}\"}}}}}}");
    put("outer_short", "{\"nodes\":{" WFN("sub", "stuck") "},\"gateway\":{\"timeout_ms\":300}}");
    /* a node that may block puts the outer run on the pool: the WorkflowNode starts there */
    put("outer_pool", "{\"nodes\":{\"w\":{\"node_type\":\"JSONWriterNode\",\"config\":{\"file_path\":\"h.json\","
                      "\"data\":{\"a\":1}}}," WFN("sub", "stuck") "},\"connections\":[{\"source_node\":\"w\","
                      "\"source_output\":\"file_path\",\"target_node\":\"sub\",\"target_input\":\"w_ignored\"}]}");
    cr_assert_eq(engine_start(cfg, err, sizeof err), 0, "%s", err);
    registry *r = registry_load(cfg, engine_node_env(), NULL);
    cr_assert_eq(json_array_size(registry_problems(r)), 0, "%s", json_dumps(registry_problems(r), 0));
    registry_publish(r);
}

static void run_teardown(void)
{
    engine_cancel_all();
    registry_publish(NULL);
    engine_stop();
    cfg_teardown();
    close(stuck_fd);
}

/* Creates and submits a run of name on the calling thread (may_inline as the front end does). */
static run *start_run(const char *name, const char *params, waiter *w, int *rc)
{
    registry *reg = registry_acquire();
    executor *ex = registry_find(reg, name);
    cr_assert_not_null(ex, "%s", name);
    json_t *pa = params ? parse(params) : NULL;
    waiter_init(w);
    run_opts o = {.request_id = "req-wfn", .parameters = pa, .done = run_waiter_done, .ud = w};
    run *r = run_create(ex, &o);
    json_decref(pa);
    run_retain(r);
    *rc = exec_submit(ex, r, 1);
    if (*rc != EXEC_OK)
        run_release(r);
    registry_release(reg);
    w->r = r;
    return r;
}

static executor *find(const char *name)
{
    registry *reg = registry_acquire();
    executor *ex = registry_find(reg, name);
    registry_release(reg); /* the published registry keeps it */
    return ex;
}

/* Waits up to 2 s for the running count of workflow name to reach n. */
static int running_reaches(const char *name, int n)
{
    for (int i = 0; i < 400 && exec_running(find(name)) != n; i++)
        usleep(5000);
    return exec_running(find(name)) == n;
}

/* Upstream calls in flight on every loop. */
static size_t inflight(void)
{
    int n;
    ioloop *const *loops = engine_loops(&n);
    size_t sum = 0;
    for (int i = 0; i < n; i++)
        sum += upstream_inflight(loops[i]);
    return sum;
}

TestSuite(workflow_run, .init = run_setup, .fini = run_teardown, .timeout = 20);

Test(workflow_run, a_nested_run_answers_the_sdks_outputs)
{
    waiter w;
    int rc;
    run *r = start_run("outer", "{\"sub\": {\"sw_input_data\": {\"n\": 2}}}", &w, &rc);
    cr_assert_eq(rc, EXEC_OK);
    wait_done(&w);
    cr_assert_eq(run_get_status(r), RUN_COMPLETED, "%s", run_error_message(r));
    char *got = json_dumps(json_object_get(run_results(r), "sub"), JSON_SORT_KEYS | JSON_COMPACT);
    cr_assert_str_eq(got, "{\"m_merged_data\":{\"n\":2},\"results\":{\"m\":{\"merged_data\":{\"n\":2}},\"sw\":"
                          "{\"condition_result\":true,\"false_output\":null,\"true_output\":{\"n\":2}}}}");
    free(got);
    run_release(r);
    cr_assert(running_reaches("inner", 0));
}

Test(workflow_run, the_file_may_give_the_inner_inputs_from_the_outer_run)
{
    registry *reg = registry_acquire();
    executor *ex = registry_find(reg, "outer_cfg");
    json_t *in = parse("{\"x\": {\"n\": 7}}");
    waiter w;
    waiter_init(&w);
    run_opts o = {.inputs = in, .done = run_waiter_done, .ud = &w};
    run *r = run_create(ex, &o);
    run_retain(r);
    cr_assert_eq(exec_submit(ex, r, 0), EXEC_OK);
    wait_done(&w);
    cr_assert_eq(run_get_status(r), RUN_COMPLETED, "%s", run_error_message(r));
    json_t *got = json_object_get(json_object_get(run_results(r), "sub"), "m_merged_data");
    cr_assert_eq(json_integer_value(json_object_get(got, "n")), 7);
    run_release(r);
    json_decref(in);
    registry_release(reg);
}

Test(workflow_run, a_pinned_inner_key_from_the_caller_fails_the_node_with_400)
{
    waiter w;
    int rc;
    run *r = start_run("outer_stuck", "{\"sub\": {\"inputs\": {\"call\": {\"url\": \"http://127.0.0.1:1/\"}}}}", &w, &rc);
    wait_done(&w);
    cr_assert_eq(run_get_status(r), RUN_FAILED);
    cr_assert_str_eq(run_error_code(r), "bad_request");
    cr_assert_str_eq(run_error_node(r), "sub");
    cr_assert(strstr(run_error_message(r), "workflow 'stuck': parameters.call.url: node 'call' key 'url' is set only "
                                           "by the workflow file"),
              "%s", run_error_message(r));
    run_release(r);
    cr_assert_eq(exec_running(find("stuck")), 0, "no inner run was started");
}

Test(workflow_run, cancelling_the_outer_run_cancels_the_inner_one)
{
    waiter w;
    int rc;
    run *r = start_run("outer_stuck", NULL, &w, &rc);
    cr_assert(running_reaches("stuck", 1));
    for (int i = 0; i < 400 && inflight() == 0; i++)
        usleep(5000);
    cr_assert_eq(inflight(), 1, "the inner call is in flight");
    run_cancel(r);
    wait_done(&w);
    cr_assert_eq(run_get_status(r), RUN_CANCELLED);
    cr_assert(running_reaches("stuck", 0), "the inner run still holds its slot");
    for (int i = 0; i < 400 && inflight() != 0; i++)
        usleep(5000);
    cr_assert_eq(inflight(), 0, "the inner call was not aborted");
    run_release(r);
}

Test(workflow_run, the_outer_deadline_ends_the_inner_run)
{
    waiter w;
    int rc;
    run *r = start_run("outer_short", NULL, &w, &rc);
    wait_done(&w);
    cr_assert_eq(run_get_status(r), RUN_TIMEOUT, "%s", run_error_message(r));
    cr_assert_str_eq(run_error_code(r), "timeout");
    cr_assert_str_eq(run_error_node(r), "sub");
    cr_assert(strstr(run_error_message(r), "workflow 'stuck' timeout at node 'call'"), "%s", run_error_message(r));
    cr_assert_lt(run_duration_ms(r), 2000.0);
    cr_assert(running_reaches("stuck", 0));
    run_release(r);
}

Test(workflow_run, a_full_inner_executor_fails_the_node_overloaded)
{
    waiter w1, w2;
    int rc;
    run *a = start_run("outer_stuck", NULL, &w1, &rc);
    cr_assert(running_reaches("stuck", 1));
    run *b = start_run("outer_stuck", NULL, &w2, &rc);
    wait_done(&w2);
    cr_assert_eq(run_get_status(b), RUN_FAILED);
    cr_assert_str_eq(run_error_code(b), "overloaded");
    cr_assert_str_eq(run_error_node(b), "sub");
    run_cancel(a);
    wait_done(&w1);
    run_release(a);
    run_release(b);
}

/* A queued inner run leaves its executor's queue when the outer run is cancelled. */
Test(workflow_run, cancelling_while_the_inner_run_waits_in_its_queue)
{
    waiter w1, w2;
    int rc;
    run *a = start_run("outer_stuck_q", NULL, &w1, &rc);
    cr_assert(running_reaches("stuck_q", 1));
    run *b = start_run("outer_stuck_q", NULL, &w2, &rc);
    for (int i = 0; i < 400 && exec_queued(find("stuck_q")) != 1; i++)
        usleep(5000);
    cr_assert_eq(exec_queued(find("stuck_q")), 1, "the second inner run waits");
    run_cancel(b);
    wait_done(&w2);
    cr_assert_eq(run_get_status(b), RUN_CANCELLED);
    /* the outer run's end asks its nodes in flight to stop on its loop, just after its done */
    for (int i = 0; i < 400 && exec_queued(find("stuck_q")) != 0; i++)
        usleep(5000);
    cr_assert_eq(exec_queued(find("stuck_q")), 0);
    cr_assert_eq(exec_running(find("stuck_q")), 1, "the first goes on");
    run_cancel(a);
    wait_done(&w1);
    cr_assert(running_reaches("stuck_q", 0));
    for (int i = 0; i < 400 && exec_held(find("stuck_q")) != 0; i++)
        usleep(5000);
    cr_assert_eq(exec_held(find("stuck_q")), 0, "the queued run's record was let go");
    run_release(a);
    run_release(b);
}

/* The WorkflowNode starts on a pool thread here (the writer before it may block): the inner run's
 * call must still go out on the loop of the outer run, not on that thread's own. */
typedef struct home_arg {
    waiter w;
    int rc;
} home_arg;

static void start_on_loop(void *ud)
{
    home_arg *a = ud;
    start_run("outer_pool", NULL, &a->w, &a->rc);
}

Test(workflow_run, the_inner_io_stays_on_the_callers_loop)
{
    int n;
    ioloop *const *loops = engine_loops(&n);
    cr_assert_eq(n, 2);
    for (int round = 0; round < 8; round++) {
        int home = (round / 2) % 2;
        size_t before[2] = {upstream_inflight(loops[0]), upstream_inflight(loops[1])};
        home_arg a;
        cr_assert_eq(ioloop_call(loops[home], start_on_loop, &a), 0);
        cr_assert_eq(a.rc, EXEC_OK);
        for (int i = 0; i < 400 && upstream_inflight(loops[0]) + upstream_inflight(loops[1]) == before[0] + before[1];
             i++)
            usleep(5000);
        cr_assert_eq(upstream_inflight(loops[home]), before[home] + 1, "round %d: the call left its home loop", round);
        cr_assert_eq(upstream_inflight(loops[1 - home]), before[1 - home]);
        run_cancel(a.w.r);
        wait_done(&a.w);
        run_release(a.w.r);
        cr_assert(running_reaches("stuck", 0));
        /* the aborted call leaves its loop's count a moment later: the next round must not see it */
        for (int i = 0; i < 400 && inflight() != 0; i++)
            usleep(5000);
        cr_assert_eq(inflight(), 0);
    }
}

static void never_done(node_call *c, json_t *outputs, const node_error *e)
{
    (void)c;
    (void)outputs;
    (void)e;
    cr_assert_fail("done called after a failed start");
}

/* Checks made at each start: the depth (a run of the old registry may call into a new one) and a
 * target a reload removed. */
Test(workflow_run, start_checks_depth_and_target)
{
    int n;
    ioloop *const *loops = engine_loops(&n);
    wfn_conf *c = compiled("{\"workflow_name\": \"inner\"}");
    json_t *in = parse("{}");
    node_call call = {.node_id = "sub", .inputs = in, .depth = ENGINE_MAX_DEPTH, .io = loops[0], .done = never_done};
    node_error e = {"", ""};
    cr_assert_eq(node_workflow.start(c, &call, &e), -1);
    cr_assert_str_eq(e.code, "internal");
    cr_assert_str_eq(e.message, "WorkflowNode calls nest deeper than 8 levels");
    cr_assert_null(call.cancel);
    node_workflow.free(c);
    c = compiled("{\"workflow_path\": \"/x/gone.json\"}");
    call.depth = 0;
    cr_assert_eq(node_workflow.start(c, &call, &e), -1);
    cr_assert_str_eq(e.message, "workflow file 'gone.json' is not loaded (a reload removed it)");
    node_workflow.free(c);
    json_decref(in);
}
