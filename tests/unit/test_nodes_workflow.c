/* WorkflowNode (src/nodes/workflow_node.c): its config at compile, and the registry's check of the
 * calls between workflows at load (src/engine/registry.c check_calls): missing targets, loops, depth.
 * Runs through the engine are tested black-box in tests/integration/test_workflow_node.py. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kailash/engine.h"
#include "kailash/node.h"

extern const node_type node_workflow;

static const node_env test_env = {.data_dir = "/tmp", .max_response_bytes = 1 << 20};

#include "node_harness.h"

/* ---- compile ---- */

static void refused(const char *config, const char *expect)
{
    char err[256] = "";
    cr_assert_eq(compile_only(&node_workflow, config, err, sizeof err), -1, "%s", config);
    cr_assert(strstr(err, expect), "%s: got '%s'", config, err);
}

Test(workflow_node, config_refusals)
{
    refused("{}", "config.workflow_name: required, the literal name of a loaded workflow");
    refused("{\"workflow_name\": \"\"}", "config.workflow_name: required");
    refused("{\"workflow_name\": 7}", "config.workflow_name: required");
    refused("{\"workflow_name\": \"{{ inputs.w }}\"}", "config.workflow_name: required, the literal");
    refused("{\"workflow_dict\": {\"nodes\": {}}}", "config.workflow_dict: kailashd runs a loaded workflow by name");
    refused("{\"workflow_name\": \"a\", \"workflow_path\": \"x.json\"}", "config.workflow_path: kailashd runs");
    refused("{\"workflow_name\": \"a\", \"input_mapping\": []}", "config.input_mapping: expected an object");
    refused("{\"workflow_name\": \"a\", \"input_mapping\": {\"x\": {\"parameter\": \"p\"}}}",
            "config.input_mapping.x: expected {\"node\": \"id\", \"parameter\": \"name\"}");
    refused("{\"workflow_name\": \"a\", \"output_mapping\": {\"x\": {\"node\": \"n\", \"output\": 3}}}",
            "config.output_mapping.x: expected {\"node\": \"id\", \"output\": \"name\"}");
}

Test(workflow_node, names_its_target_and_takes_any_port)
{
    char err[256];
    json_t *cfg = parse("{\"workflow_name\": \"inner\", \"output_mapping\": {\"o\": {\"node\": \"m\"}}}");
    void *c = NULL;
    cr_assert_eq(node_workflow.compile(&test_env, cfg, &c, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(node_workflow.calls_workflow(c), "inner");
    cr_assert(node_workflow.has_output(c, "results"));
    cr_assert(node_workflow.has_output(c, "m_merged_data"));
    cr_assert_null(node_workflow.run);
    cr_assert_not_null(node_workflow.start);
    node_workflow.free(c);
    json_decref(cfg);
}

/* ---- the registry's check of calls ---- */

static kconfig *cfg;
static char dir[64];

static void reg_setup(void)
{
    char err[256], path[128];
    strcpy(dir, "/tmp/kwfnXXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/wf", dir);
    mkdir(path, 0700);
    cr_assert_eq(config_load(NULL, &cfg, err, sizeof err), 0);
    free(cfg->workflows_dir);
    cfg->workflows_dir = strdup(path);
}

static void reg_teardown(void)
{
    config_free(cfg);
}

/* Writes workflow name: one WorkflowNode calling target, or (target NULL) one TransformNode. */
static void write_wf(const char *name, const char *target)
{
    char path[256];
    snprintf(path, sizeof path, "%s/wf/%s.json", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    if (target)
        fprintf(f, "{\"nodes\":{\"call\":{\"node_type\":\"WorkflowNode\",\"config\":{\"workflow_name\":\"%s\"}}}}",
                target);
    else
        fputs("{\"nodes\":{\"t\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":{}}}}}", f);
    fclose(f);
}

static registry *load(void)
{
    static const node_env nenv = {"/tmp", 1 << 20, 1000, 1};
    registry *r = registry_load(cfg, &nenv, NULL);
    cr_assert_not_null(r);
    return r;
}

/* The error message registry r has for file NAME.json, or NULL. */
static const char *error_for(registry *r, const char *name)
{
    char file[256];
    snprintf(file, sizeof file, "%s/wf/%s.json", dir, name);
    json_t *e;
    size_t i;
    json_array_foreach(registry_errors(r), i, e) if (strcmp(json_string_value(json_object_get(e, "file")), file) == 0)
        return json_string_value(json_object_get(e, "message"));
    return NULL;
}

TestSuite(workflow_calls, .init = reg_setup, .fini = reg_teardown);

Test(workflow_calls, loops_and_missing_targets_are_left_out)
{
    write_wf("leaf", NULL);
    write_wf("ok", "leaf");
    write_wf("self", "self");
    write_wf("a", "b");
    write_wf("b", "a");
    write_wf("to_loop", "a");
    write_wf("dangling", "nowhere");
    registry *r = load();
    cr_assert_not_null(registry_find(r, "leaf"));
    cr_assert_not_null(registry_find(r, "ok"));
    cr_assert_eq(registry_count(r), 2);
    cr_assert(strstr(error_for(r, "self"), "node 'call': calling 'self' loops back"), "%s", error_for(r, "self"));
    cr_assert(strstr(error_for(r, "a"), "node 'call' calls 'b': node 'call': calling 'a' loops back"));
    cr_assert(strstr(error_for(r, "b"), "loops back"));
    cr_assert(strstr(error_for(r, "to_loop"), "node 'call' calls 'a': node 'call' calls 'b'"));
    cr_assert(strstr(error_for(r, "dangling"), "workflow_name 'nowhere' is not a loaded workflow"));
    registry_release(r);
}

Test(workflow_calls, eight_levels_of_calls_and_no_more)
{
    char name[16], next[16];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "w%d", i);
        snprintf(next, sizeof next, "w%d", i + 1);
        write_wf(name, i == 9 ? NULL : next); /* w0 -> w1 -> ... -> w9 (a leaf) */
    }
    registry *r = load();
    cr_assert_not_null(registry_find(r, "w1"), "w1 makes 8 levels of calls: allowed");
    cr_assert_null(registry_find(r, "w0"), "w0 makes 9");
    cr_assert(strstr(error_for(r, "w0"), "calls nest deeper than 8 levels"), "%s", error_for(r, "w0"));
    cr_assert_eq(registry_count(r), 9);
    registry_release(r);
}

Test(workflow_calls, a_diamond_is_not_a_loop)
{
    write_wf("leaf", NULL);
    write_wf("l", "leaf");
    write_wf("r", "leaf");
    char path[256];
    snprintf(path, sizeof path, "%s/wf/top.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"nodes\":{\"x\":{\"node_type\":\"WorkflowNode\",\"config\":{\"workflow_name\":\"l\"}},"
          "\"y\":{\"node_type\":\"WorkflowNode\",\"config\":{\"workflow_name\":\"r\"}},"
          "\"z\":{\"node_type\":\"WorkflowNode\",\"config\":{\"workflow_name\":\"leaf\"}}}}",
          f);
    fclose(f);
    registry *r = load();
    cr_assert_eq(registry_count(r), 4, "%s", json_dumps(registry_errors(r), 0));
    registry_release(r);
}
