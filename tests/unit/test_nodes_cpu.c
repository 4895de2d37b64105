/* Tests of the CPU node types: TransformNode, SwitchNode, MergeNode.
 *
 * Each test calls a node the way the engine does: compile() on the raw config, then run() with the
 * final inputs, which are the (already rendered) config values overlaid with connection values. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "kailash/node.h"

extern const node_type node_transform, node_switch, node_merge;

static const node_env test_env = {.data_dir = "/tmp", .max_response_bytes = 1 << 20};

#include "node_harness.h"

static void assert_absent(json_t *out, const char *port)
{
    cr_assert_null(json_object_get(out, port), "port '%s' should be absent", port);
}

/* A switch port not taken: present and null, as in the SDK's results (the engine skips behind it). */
static void assert_untaken(json_t *out, const char *port)
{
    json_t *v = json_object_get(out, port);
    cr_assert(v && json_is_null(v), "port '%s' should be null", port);
}

/* ---- TransformNode ---- */

Test(transform, result_is_the_rendered_template)
{
    call_result r = run_node(&node_transform, "{\"template\": {\"id\": \"{{params.data.id}}\"}}",
                             "{\"template\": {\"id\": 42, \"tags\": [\"a\"]}, \"data\": {\"id\": 42}}");
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "result", "{\"id\": 42, \"tags\": [\"a\"]}");
    cr_assert_eq(json_object_size(r.out), 1);
    json_decref(r.out);
}

Test(transform, literal_template_and_ports)
{
    call_result r = run_node(&node_transform, "{\"template\": \"not found\"}", NULL);
    cr_assert_eq(r.rc, 0);
    assert_port(r.out, "result", "\"not found\"");
    json_decref(r.out);
    cr_assert(node_transform.has_output(NULL, "result"));
    cr_assert_not(node_transform.has_output(NULL, "data"));
    cr_assert_null(node_transform.input_ports);
}

Test(transform, template_is_required)
{
    char err[256];
    cr_assert_eq(compile_only(&node_transform, "{}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.template: required");
}

/* ---- SwitchNode, boolean mode ---- */

/* Runs a boolean switch on input_data and asserts which port fired. */
static void switch_expect(const char *config, const char *input_data, int expect)
{
    char extra[512];
    snprintf(extra, sizeof extra, "{\"input_data\": %s}", input_data);
    call_result r = run_node(&node_switch, config, extra);
    cr_assert_eq(r.rc, 0, "%s: %s", config, r.err.message);
    assert_port(r.out, expect ? "true_output" : "false_output", input_data);
    assert_untaken(r.out, expect ? "false_output" : "true_output");
    assert_port(r.out, "condition_result", expect ? "true" : "false");
    cr_assert_eq(json_object_size(r.out), 3);
    json_decref(r.out);
}

Test(switch_bool, equal_numbers_integer_and_real)
{
    switch_expect("{\"condition_field\": \"status_code\", \"operator\": \"==\", \"value\": 200}",
                  "{\"status_code\": 200.0, \"body\": \"ok\"}", 1);
    switch_expect("{\"condition_field\": \"status_code\", \"operator\": \"==\", \"value\": 200}",
                  "{\"status_code\": 404}", 0);
}

Test(switch_bool, equal_is_the_default_operator_and_deep)
{
    switch_expect("{\"condition_field\": \"a\", \"value\": {\"x\": [1, 2.0]}}", "{\"a\": {\"x\": [1.0, 2]}}", 1);
    switch_expect("{\"condition_field\": \"a\", \"value\": \"1\"}", "{\"a\": 1}", 0);
    /* Python: True == 1 == 1.0, False == 0; a bool orders as a number */
    switch_expect("{\"condition_field\": \"a\", \"value\": 1}", "{\"a\": true}", 1);
    switch_expect("{\"condition_field\": \"a\", \"value\": 0.0}", "{\"a\": false}", 1);
    switch_expect("{\"condition_field\": \"a\", \"value\": [1]}", "{\"a\": [true]}", 1);
    switch_expect("{\"condition_field\": \"a\", \"value\": 2}", "{\"a\": true}", 0);
    switch_expect("{\"condition_field\": \"a\", \"operator\": \">\", \"value\": 0}", "{\"a\": true}", 1);
    switch_expect("{\"condition_field\": \"a\", \"value\": \"true\"}", "{\"a\": true}", 0);
}

Test(switch_bool, not_equal)
{
    switch_expect("{\"condition_field\": \"s\", \"operator\": \"!=\", \"value\": \"ok\"}", "{\"s\": \"bad\"}", 1);
    switch_expect("{\"condition_field\": \"s\", \"operator\": \"!=\", \"value\": \"ok\"}", "{\"s\": \"ok\"}", 0);
}

Test(switch_bool, ordering_numbers)
{
    const char *in = "{\"n\": 10}";
    switch_expect("{\"condition_field\": \"n\", \"operator\": \">\", \"value\": 9.5}", in, 1);
    switch_expect("{\"condition_field\": \"n\", \"operator\": \">\", \"value\": 10}", in, 0);
    switch_expect("{\"condition_field\": \"n\", \"operator\": \"<\", \"value\": 11}", in, 1);
    switch_expect("{\"condition_field\": \"n\", \"operator\": \"<\", \"value\": 10}", in, 0);
    switch_expect("{\"condition_field\": \"n\", \"operator\": \">=\", \"value\": 10.0}", in, 1);
    switch_expect("{\"condition_field\": \"n\", \"operator\": \">=\", \"value\": 11}", in, 0);
    switch_expect("{\"condition_field\": \"n\", \"operator\": \"<=\", \"value\": 10}", in, 1);
    switch_expect("{\"condition_field\": \"n\", \"operator\": \"<=\", \"value\": 9}", in, 0);
}

Test(switch_bool, ordering_strings_is_bytewise)
{
    switch_expect("{\"condition_field\": \"s\", \"operator\": \"<\", \"value\": \"b\"}", "{\"s\": \"abc\"}", 1);
    switch_expect("{\"condition_field\": \"s\", \"operator\": \">\", \"value\": \"ab\"}", "{\"s\": \"abc\"}", 1);
    switch_expect("{\"condition_field\": \"s\", \"operator\": \">\", \"value\": \"a\"}", "{\"s\": \"B\"}", 0);
    switch_expect("{\"condition_field\": \"s\", \"operator\": \"<=\", \"value\": \"abc\"}", "{\"s\": \"abc\"}", 1);
}

Test(switch_bool, ordering_mixed_types_is_false)
{
    switch_expect("{\"condition_field\": \"n\", \"operator\": \">\", \"value\": 1}", "{\"n\": \"5\"}", 0);
    switch_expect("{\"condition_field\": \"n\", \"operator\": \"<\", \"value\": 1}", "{}", 0);
    switch_expect("{\"condition_field\": \"n\", \"operator\": \">=\", \"value\": \"a\"}", "{\"n\": null}", 0);
}

Test(switch_bool, in_array_and_string)
{
    switch_expect("{\"condition_field\": \"r\", \"operator\": \"in\", \"value\": [\"admin\", 2]}", "{\"r\": \"admin\"}",
                  1);
    switch_expect("{\"condition_field\": \"r\", \"operator\": \"in\", \"value\": [\"admin\", 2]}", "{\"r\": 2.0}", 1);
    switch_expect("{\"condition_field\": \"r\", \"operator\": \"in\", \"value\": [\"admin\"]}", "{\"r\": \"user\"}", 0);
    switch_expect("{\"condition_field\": \"r\", \"operator\": \"in\", \"value\": \"read,write\"}", "{\"r\": \"write\"}",
                  1);
    switch_expect("{\"condition_field\": \"r\", \"operator\": \"in\", \"value\": \"read\"}", "{\"r\": 1}", 0);
}

Test(switch_bool, contains_array_and_string)
{
    switch_expect("{\"condition_field\": \"tags\", \"operator\": \"contains\", \"value\": \"vip\"}",
                  "{\"tags\": [\"new\", \"vip\"]}", 1);
    switch_expect("{\"condition_field\": \"tags\", \"operator\": \"contains\", \"value\": \"vip\"}",
                  "{\"tags\": [\"new\"]}", 0);
    switch_expect("{\"condition_field\": \"msg\", \"operator\": \"contains\", \"value\": \"err\"}",
                  "{\"msg\": \"an error\"}", 1);
    switch_expect("{\"condition_field\": \"msg\", \"operator\": \"contains\", \"value\": \"err\"}", "{\"msg\": 5}", 0);
}

Test(switch_bool, null_tests)
{
    switch_expect("{\"condition_field\": \"x\", \"operator\": \"is_null\"}", "{}", 1);
    switch_expect("{\"condition_field\": \"x\", \"operator\": \"is_null\"}", "{\"x\": null}", 1);
    switch_expect("{\"condition_field\": \"x\", \"operator\": \"is_null\"}", "{\"x\": 0}", 0);
    switch_expect("{\"condition_field\": \"x\", \"operator\": \"is_not_null\"}", "{\"x\": false}", 1);
    switch_expect("{\"condition_field\": \"x\", \"operator\": \"is_not_null\"}", "{}", 0);
}

Test(switch_bool, dotted_path_and_whole_input)
{
    switch_expect("{\"condition_field\": \"content.items.1.id\", \"value\": 7}",
                  "{\"content\": {\"items\": [{\"id\": 1}, {\"id\": 7}]}}", 1);
    switch_expect("{\"operator\": \">\", \"value\": 3}", "5", 1);
    switch_expect("{\"condition_field\": \"\", \"value\": \"x\"}", "\"x\"", 1);
}

Test(switch_bool, templated_operator_and_value_read_at_run)
{
    call_result r = run_node(
        &node_switch, "{\"condition_field\": \"n\", \"operator\": \"{{inputs.op}}\", \"value\": \"{{inputs.v}}\"}",
        "{\"operator\": \">\", \"value\": 3, \"input_data\": {\"n\": 4}}");
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "true_output", "{\"n\": 4}");
    json_decref(r.out);

    r = run_node(&node_switch, "{\"operator\": \"{{inputs.op}}\"}", "{\"operator\": \"~=\", \"input_data\": 1}");
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "internal");
    cr_assert_str_eq(r.err.message, "operator: expected one of == != > < >= <= in contains is_null is_not_null");

    r = run_node(&node_switch, "{\"operator\": \"in\", \"value\": \"{{inputs.v}}\"}",
                 "{\"value\": 5, \"input_data\": 1}");
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.message, "value: expected an array or a string for operator 'in'");
}

Test(switch_bool, ports_and_missing_input)
{
    char err[256] = "";
    json_t *cfg = parse("{\"condition_field\": \"a\", \"value\": 1}");
    void *c = NULL;
    cr_assert_eq(node_switch.compile(&test_env, cfg, &c, err, sizeof err), 0);
    cr_assert(node_switch.has_output(c, "true_output"));
    cr_assert(node_switch.has_output(c, "false_output"));
    cr_assert(node_switch.has_output(c, "condition_result"));
    cr_assert(node_switch.has_output(c, "default")); /* where a list of rows goes */
    cr_assert_not(node_switch.has_output(c, "case_1"));
    call_result r = run_compiled(&node_switch, c, cfg, NULL);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "bad_request");
    cr_assert_str_eq(r.err.message, "input 'input_data' is missing (give it in inputs, or in parameters for this node)");
    node_switch.free(c);
    json_decref(cfg);
    cr_assert_str_eq(node_switch.input_ports[0], "input_data");
    cr_assert_null(node_switch.input_ports[1]);
}

Test(switch_bool, compile_errors)
{
    char err[256];
    cr_assert_eq(compile_only(&node_switch, "{\"operator\": \"=~\"}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.operator: expected one of == != > < >= <= in contains is_null is_not_null");
    cr_assert_eq(compile_only(&node_switch, "{\"operator\": 3}", err, sizeof err), -1);
    cr_assert_eq(compile_only(&node_switch, "{\"operator\": \">\", \"value\": [1]}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.value: expected a number or a string for operator '>'");
    cr_assert_eq(compile_only(&node_switch, "{\"operator\": \"in\", \"value\": 4}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.value: expected an array or a string for operator 'in'");
    cr_assert_eq(compile_only(&node_switch, "{\"condition_field\": 1}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.condition_field: expected a string");
    cr_assert_eq(compile_only(&node_switch, "{\"operator\": \">\", \"value\": \"{{inputs.v}}\"}", err, sizeof err), 0);
}

/* The SDK (SwitchNode.run, kailash 2.63): a list of rows is grouped in boolean mode too, with no
 * cases: every row on the default port, condition_result [], no true/false port. */
Test(switch_bool, list_of_rows_goes_to_default)
{
    call_result r = run_node(&node_switch, "{\"condition_field\": \"n\", \"operator\": \">\", \"value\": 1}",
                             "{\"input_data\": [{\"n\": 1}, {\"n\": 2}]}");
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "default", "[{\"n\": 1}, {\"n\": 2}]");
    assert_port(r.out, "condition_result", "[]");
    assert_absent(r.out, "true_output");
    cr_assert_eq(json_object_size(r.out), 2);
    json_decref(r.out);
    char err[256];
    cr_assert_eq(compile_only(&node_switch, "{\"value\": 1, \"default_field\": \"true_output\"}", err, sizeof err),
                 -1);
    cr_assert_str_eq(err, "config.default_field: 'true_output' is not a free port name");
}

/* ---- SwitchNode, cases mode ---- */

/* The SDK: the first matching case fires, and "default case always gets the input data". */
Test(switch_cases, first_match_fires_its_port_and_default)
{
    const char *cfg = "{\"condition_field\": \"status\", \"cases\": [\"success\", \"warning\", \"error\"]}";
    call_result r = run_node(&node_switch, cfg, "{\"input_data\": {\"status\": \"warning\"}}");
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "case_warning", "{\"status\": \"warning\"}");
    assert_port(r.out, "condition_result", "\"warning\"");
    assert_untaken(r.out, "case_success");
    assert_untaken(r.out, "case_error");
    assert_port(r.out, "default", "{\"status\": \"warning\"}");
    cr_assert_eq(json_object_size(r.out), 5);
    json_decref(r.out);
}

/* Expectations from the SDK's SwitchNode.run on the same inputs: a list of rows is grouped per case. */
Test(switch_cases, list_of_rows_grouped_per_case)
{
    const char *cfg = "{\"condition_field\": \"t\", \"cases\": [\"A\", \"B\", \"C\"]}";
    call_result r = run_node(&node_switch, cfg,
                             "{\"input_data\": [{\"t\": \"B\", \"v\": 1}, {\"t\": \"A\", \"v\": 2}, {\"t\": \"B\", \"v\": 3},"
                             " {\"v\": 4}]}");
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "default",
                "[{\"t\": \"B\", \"v\": 1}, {\"t\": \"B\", \"v\": 3}, {\"t\": \"A\", \"v\": 2}, {\"v\": 4}]");
    assert_port(r.out, "case_A", "[{\"t\": \"A\", \"v\": 2}]");
    assert_port(r.out, "case_B", "[{\"t\": \"B\", \"v\": 1}, {\"t\": \"B\", \"v\": 3}]");
    assert_port(r.out, "case_C", "[]");
    assert_port(r.out, "condition_result", "[\"A\", \"B\"]");
    json_decref(r.out);
    /* Python's grouping: true, 1 and 1.0 are one key */
    r = run_node(&node_switch, "{\"condition_field\": \"n\", \"cases\": [1, 2]}",
                 "{\"input_data\": [{\"n\": true}, {\"n\": 1.0}, {\"n\": 2}, {\"n\": 0}]}");
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "case_1", "[{\"n\": true}, {\"n\": 1.0}]");
    assert_port(r.out, "case_2", "[{\"n\": 2}]");
    assert_port(r.out, "default", "[{\"n\": true}, {\"n\": 1.0}, {\"n\": 2}, {\"n\": 0}]");
    assert_port(r.out, "condition_result", "[1, 2]");
    json_decref(r.out);
    /* hostile: a row that is not an object groups under null (the SDK would fail the node) */
    r = run_node(&node_switch, "{\"condition_field\": \"t\", \"cases\": [\"A\"]}",
                 "{\"input_data\": [{\"t\": \"A\"}, 5, null, [1]]}");
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "case_A", "[{\"t\": \"A\"}]");
    assert_port(r.out, "default", "[{\"t\": \"A\"}, 5, null, [1]]");
    json_decref(r.out);
    /* an empty list, or one whose first element is not an object, is tested as one value */
    r = run_node(&node_switch, "{\"condition_field\": \"t\", \"cases\": [\"A\"]}", "{\"input_data\": []}");
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "default", "[]");
    assert_untaken(r.out, "case_A");
    json_decref(r.out);
}

Test(switch_cases, no_match_fires_default)
{
    const char *cfg = "{\"condition_field\": \"status\", \"cases\": [\"success\", \"error\"]}";
    call_result r = run_node(&node_switch, cfg, "{\"input_data\": {\"status\": \"unknown\"}}");
    cr_assert_eq(r.rc, 0);
    assert_port(r.out, "default", "{\"status\": \"unknown\"}");
    assert_port(r.out, "condition_result", "null");
    assert_untaken(r.out, "case_success");
    assert_untaken(r.out, "case_error");
    cr_assert_eq(json_object_size(r.out), 4);
    json_decref(r.out);
}

Test(switch_cases, custom_prefix_and_default_field)
{
    const char *cfg = "{\"cases\": [1, 2], \"case_prefix\": \"code_\", \"default_field\": \"other\"}";
    call_result r = run_node(&node_switch, cfg, "{\"input_data\": 2.0}");
    cr_assert_eq(r.rc, 0);
    assert_port(r.out, "code_2", "2.0");
    assert_port(r.out, "condition_result", "2");
    json_decref(r.out);
    r = run_node(&node_switch, cfg, "{\"input_data\": 3}");
    assert_port(r.out, "other", "3");
    assert_absent(r.out, "default");
    json_decref(r.out);
}

Test(switch_cases, operator_applies_to_each_case)
{
    const char *cfg = "{\"condition_field\": \"score\", \"operator\": \">=\", \"cases\": [90, 75, 50]}";
    call_result r = run_node(&node_switch, cfg, "{\"input_data\": {\"score\": 80}}");
    cr_assert_eq(r.rc, 0);
    assert_port(r.out, "case_75", "{\"score\": 80}");
    assert_untaken(r.out, "case_50");
    assert_untaken(r.out, "case_90");
    assert_port(r.out, "condition_result", "75");
    json_decref(r.out);
}

Test(switch_cases, port_names_follow_the_sdk)
{
    char err[256] = "";
    json_t *cfg = parse("{\"cases\": [\"in-progress\", \"a.b c:d/e\", 1.5, 2.0, true, null, -7, 1e20, 0.0001]}");
    void *c = NULL;
    cr_assert_eq(node_switch.compile(&test_env, cfg, &c, err, sizeof err), 0, "%s", err);
    const char *ports[] = {"case_in_progress", "case_a_b_c_d_e", "case_1_5",        "case_2_0",
                           "case_True",        "case_None",      "case__7",         "case_1e+20",
                           "case_0_0001",      "default",        "condition_result"};
    for (size_t i = 0; i < sizeof ports / sizeof ports[0]; i++)
        cr_assert(node_switch.has_output(c, ports[i]), "missing port %s", ports[i]);
    cr_assert_not(node_switch.has_output(c, "true_output"));
    cr_assert_not(node_switch.has_output(c, "case_in-progress"));
    call_result r = run_compiled(&node_switch, c, cfg, "{\"input_data\": null}");
    cr_assert_eq(r.rc, 0);
    assert_port(r.out, "case_None", "null");
    json_decref(r.out);
    r = run_compiled(&node_switch, c, cfg, "{\"input_data\": true}");
    assert_port(r.out, "case_True", "true");
    json_decref(r.out);
    node_switch.free(c);
    json_decref(cfg);
}

Test(switch_cases, cases_are_fixed_at_load)
{
    const char *cfg = "{\"cases\": [\"a\"]}";
    call_result r = run_node(&node_switch, cfg, "{\"cases\": [\"b\"], \"input_data\": \"b\"}");
    cr_assert_eq(r.rc, 0);
    assert_port(r.out, "default", "\"b\"");
    json_decref(r.out);
}

Test(switch_cases, empty_or_null_cases_mean_boolean_mode)
{
    call_result r = run_node(&node_switch, "{\"cases\": [], \"value\": 1}", "{\"input_data\": 1}");
    cr_assert_eq(r.rc, 0);
    assert_port(r.out, "true_output", "1");
    json_decref(r.out);
    r = run_node(&node_switch, "{\"cases\": null, \"value\": 1}", "{\"input_data\": 2}");
    assert_port(r.out, "false_output", "2");
    json_decref(r.out);
}

Test(switch_cases, compile_errors)
{
    char err[256];
    cr_assert_eq(compile_only(&node_switch, "{\"cases\": \"{{inputs.cases}}\"}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.cases: expected an array of literal values");
    cr_assert_eq(compile_only(&node_switch, "{\"cases\": [\"{{inputs.a}}\"]}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.cases[0]: must be literal (ports are named at load)");
    cr_assert_eq(compile_only(&node_switch, "{\"cases\": [1, {\"a\": 1}]}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.cases[1]: expected a string, number, boolean or null");
    cr_assert_eq(compile_only(&node_switch, "{\"cases\": [1, \"1\"]}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.cases[1]: port 'case_1' is also the port of cases[0]");
    cr_assert_eq(compile_only(&node_switch, "{\"cases\": [\"x\"], \"case_prefix\": \"\", \"default_field\": \"x\"}",
                              err, sizeof err),
                 -1);
    cr_assert_str_eq(err, "config.cases[0]: port 'x' is already taken");
    cr_assert_eq(compile_only(&node_switch, "{\"cases\": [1], \"case_prefix\": \"{{inputs.p}}\"}", err, sizeof err),
                 -1);
    cr_assert_str_eq(err, "config.case_prefix: expected a literal string (ports are named at load)");
    cr_assert_eq(compile_only(&node_switch, "{\"cases\": [1], \"default_field\": \"a.b\"}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.default_field: must not contain '.' or NUL");
    cr_assert_eq(compile_only(&node_switch, "{\"cases\": [3], \"operator\": \"in\"}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.cases[0]: expected an array or a string for operator 'in'");
}

/* ---- MergeNode ---- */

static void merge_expect(const char *config, const char *inputs, const char *expected)
{
    call_result r = run_node(&node_merge, config, inputs);
    cr_assert_eq(r.rc, 0, "%s: %s", inputs, r.err.message);
    assert_port(r.out, "merged_data", expected);
    cr_assert_eq(json_object_size(r.out), 1);
    json_decref(r.out);
}

/* Expectations from the SDK's MergeNode.run (kailash 2.63), run on the same inputs. */
Test(merge, concat_arrays_and_scalars)
{
    merge_expect("{}", "{\"data1\": [1, 2], \"data2\": [3], \"data3\": \"x\", \"data5\": {\"k\": 1}}",
                 "[[1, 2], [3], \"x\", {\"k\": 1}]");
    merge_expect("{}", "{\"data1\": [1, 2], \"data2\": [3], \"data4\": []}", "[1, 2, 3]");
    merge_expect("{\"merge_type\": \"concat\"}", "{\"data1\": [1], \"data2\": 5}", "[[1], 5]");
    merge_expect("{\"merge_type\": \"concat\"}", "{\"data2\": [[1]], \"data4\": []}", "[[1]]");
}

Test(merge, single_input_passes_through_and_none_is_null)
{
    merge_expect("{\"merge_type\": \"merge_dict\"}", "{\"data2\": {\"error\": \"not found\"}}",
                 "{\"error\": \"not found\"}");
    merge_expect("{\"merge_type\": \"zip\"}", "{\"data1\": \"x\", \"data2\": null}", "\"x\"");
    merge_expect("{}", "{\"data1\": null, \"data2\": null}", "null");
    merge_expect("{}", "{}", "null");
}

Test(merge, null_inputs_are_dropped_whatever_skip_none_says)
{
    merge_expect("{\"skip_none\": false}", "{\"data1\": [1], \"data2\": null, \"data3\": [2]}", "[1, 2]");
    merge_expect("{\"skip_none\": true}", "{\"data1\": [1], \"data2\": null, \"data3\": [2]}", "[1, 2]");
    merge_expect("{\"skip_none\": false}", "{\"data3\": null}", "null");
}

Test(merge, zip_to_the_shortest)
{
    merge_expect("{\"merge_type\": \"zip\"}", "{\"data1\": [1, 2, 3], \"data2\": [\"a\", \"b\"]}",
                 "[[1, \"a\"], [2, \"b\"]]");
    merge_expect("{\"merge_type\": \"zip\"}", "{\"data1\": [1, 2], \"data2\": \"s\", \"data3\": [true, false]}",
                 "[[1, \"s\", true]]");
    merge_expect("{\"merge_type\": \"zip\"}", "{\"data1\": [1], \"data2\": []}", "[]");
}

Test(merge, merge_dict_later_wins_shallow)
{
    merge_expect(
        "{\"merge_type\": \"merge_dict\"}",
        "{\"data1\": {\"a\": 1, \"n\": {\"x\": 1}}, \"data2\": {\"b\": 2}, \"data3\": {\"a\": 3, \"n\": {\"y\": 2}}}",
        "{\"a\": 3, \"b\": 2, \"n\": {\"y\": 2}}");
}

Test(merge, merge_dict_key_join)
{
    merge_expect("{\"merge_type\": \"merge_dict\", \"key\": \"id\"}",
                 "{\"data1\": [{\"id\": 1, \"name\": \"a\"}, {\"id\": 2, \"name\": \"b\"}, \"raw\"],"
                 " \"data2\": [{\"id\": 2.0, \"total\": 5}, {\"id\": 3, \"total\": 9}, {\"no_id\": true}]}",
                 "[{\"id\": 1, \"name\": \"a\"}, {\"id\": 2.0, \"name\": \"b\", \"total\": 5}, \"raw\","
                 " {\"id\": 3, \"total\": 9}]");
    merge_expect("{\"merge_type\": \"merge_dict\", \"key\": \"k\"}",
                 "{\"data1\": [{\"k\": \"x\", \"a\": 1}], \"data3\": [{\"k\": \"x\", \"a\": 2, \"b\": 1}],"
                 " \"data4\": [{\"k\": \"x\", \"c\": 0}]}",
                 "[{\"k\": \"x\", \"a\": 2, \"b\": 1, \"c\": 0}]");
    /* data1 as it is (duplicates, items without the key); later duplicates appended, keyless dropped */
    merge_expect("{\"merge_type\": \"merge_dict\", \"key\": \"id\"}",
                 "{\"data1\": [{\"id\": 1, \"a\": 1}, {\"id\": 1, \"a\": 2}, {\"x\": 0}],"
                 " \"data2\": [{\"id\": 1, \"b\": 1}, {\"id\": 4}, {\"id\": 4, \"c\": 1}, {\"y\": 1}]}",
                 "[{\"id\": 1, \"a\": 1, \"b\": 1}, {\"id\": 1, \"a\": 2, \"b\": 1}, {\"x\": 0}, {\"id\": 4},"
                 " {\"id\": 4, \"c\": 1}]");
    /* Python's True == 1; a missing key reads as None, matching an explicit null */
    merge_expect("{\"merge_type\": \"merge_dict\", \"key\": \"id\"}",
                 "{\"data1\": [{\"id\": true, \"a\": 1}, {\"id\": null}], \"data2\": [{\"id\": 1, \"b\": 1}, {\"z\": 1}]}",
                 "[{\"id\": 1, \"a\": 1, \"b\": 1}, {\"id\": null, \"z\": 1}]");
}

/* Hostile key values: objects and arrays (Python would raise "unhashable") join by their canonical
 * JSON, whatever their member order; a long string key joins like a short one. */
Test(merge, merge_dict_key_values_that_python_cannot_hash)
{
    merge_expect("{\"merge_type\": \"merge_dict\", \"key\": \"id\"}",
                 "{\"data1\": [{\"id\": {\"a\": 1, \"b\": [2]}, \"x\": 1}, {\"id\": [1, 2]}],"
                 " \"data2\": [{\"id\": {\"b\": [2], \"a\": 1}, \"y\": 2}, {\"id\": [2, 1], \"z\": 3}]}",
                 "[{\"id\": {\"a\": 1, \"b\": [2]}, \"x\": 1, \"y\": 2}, {\"id\": [1, 2]}, {\"id\": [2, 1], \"z\": 3}]");
    size_t n = 20000;
    char *big = malloc(n + 1), *in = malloc(2 * n + 256), *want = malloc(n + 128);
    cr_assert(big && in && want);
    memset(big, 'k', n);
    big[n] = '\0';
    snprintf(in, 2 * n + 256, "{\"data1\": [{\"id\": \"%s\"}], \"data2\": [{\"id\": \"%s\", \"v\": 1}]}", big, big);
    snprintf(want, n + 128, "[{\"id\": \"%s\", \"v\": 1}]", big);
    merge_expect("{\"merge_type\": \"merge_dict\", \"key\": \"id\"}", in, want);
    free(big);
    free(in);
    free(want);
}

Test(merge, merge_dict_wrong_inputs_fail)
{
    call_result r =
        run_node(&node_merge, "{\"merge_type\": \"merge_dict\"}", "{\"data1\": {\"a\": 1}, \"data2\": [1]}");
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "internal");
    cr_assert_str_eq(r.err.message, "merge_dict: expected objects, or arrays of objects with a key");
    r = run_node(&node_merge, "{\"merge_type\": \"merge_dict\"}", "{\"data1\": [{\"a\": 1}], \"data2\": [1]}");
    cr_assert_eq(r.rc, -1);
}

Test(merge, options_checked_at_load_and_run)
{
    char err[256];
    cr_assert_eq(compile_only(&node_merge, "{\"merge_type\": \"union\"}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.merge_type: expected one of concat zip merge_dict");
    cr_assert_eq(compile_only(&node_merge, "{\"skip_none\": \"yes\"}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.skip_none: expected a boolean");
    cr_assert_eq(compile_only(&node_merge, "{\"key\": 5}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.key: expected a string");
    call_result r = run_node(&node_merge, "{\"merge_type\": \"{{inputs.t}}\"}",
                             "{\"merge_type\": \"union\", \"data1\": 1, \"data2\": 2}");
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.message, "merge_type: expected one of concat zip merge_dict");
    r = run_node(&node_merge, "{\"merge_type\": \"{{inputs.t}}\"}",
                 "{\"merge_type\": \"zip\", \"data1\": [1], \"data2\": [2]}");
    cr_assert_eq(r.rc, 0);
    assert_port(r.out, "merged_data", "[[1, 2]]");
    json_decref(r.out);
}

Test(merge, ports)
{
    cr_assert(node_merge.has_output(NULL, "merged_data"));
    cr_assert_not(node_merge.has_output(NULL, "data1"));
    const char *const *p = node_merge.input_ports;
    cr_assert_str_eq(p[0], "data1");
    cr_assert_str_eq(p[4], "data5");
    cr_assert_null(p[5]);
}

/* ---- many threads on one compiled node and shared inputs ---- */

typedef struct shared_run {
    const void *compiled;
    json_t *inputs;
    int failures;
} shared_run;

static void *merge_thread(void *arg)
{
    shared_run *s = arg;
    for (int i = 0; i < 2000; i++) {
        node_call call = {.node_id = "n", .inputs = s->inputs};
        json_t *out = NULL;
        node_error e;
        if (node_merge.run(s->compiled, &call, &out, &e) != 0 ||
            json_array_size(json_object_get(out, "merged_data")) != 2)
            s->failures++;
        json_decref(out);
    }
    return NULL;
}

Test(merge, concurrent_runs_share_inputs)
{
    json_t *inputs = parse("{\"merge_type\": \"merge_dict\", \"key\": \"id\","
                           " \"data1\": [{\"id\": 1, \"a\": 1}, {\"id\": 2}], \"data2\": [{\"id\": 1, \"b\": 2}]}");
    json_t *before = json_deep_copy(inputs);
    shared_run runs[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        runs[i] = (shared_run){.compiled = NULL, .inputs = inputs, .failures = 0};
        pthread_create(&th[i], NULL, merge_thread, &runs[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(runs[i].failures, 0);
    }
    cr_assert(json_equal(before, inputs));
    json_decref(before);
    json_decref(inputs);
}
