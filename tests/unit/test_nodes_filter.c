/* Tests of FilterNode (src/nodes/filter.c) and the Python rules it shares with SwitchNode
 * (src/nodes/pycmp.c).
 *
 * Every expectation marked "SDK" was recorded by running kailash 2.63's FilterNode through
 * LocalRuntime on the same config and data. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/nodes/pycmp.h"
#include "kailash/node.h"
#include "kailash/workflow.h"

extern const node_type node_filter;

static const node_env test_env = {.data_dir = "/tmp", .max_response_bytes = 1 << 20};

#include "node_harness.h"

/* Runs the filter with config and data (JSON texts) and asserts filtered_data is expected. */
static void filter_expect(const char *config, const char *data, const char *expected)
{
    char extra[4096];
    snprintf(extra, sizeof extra, "{\"data\": %s}", data);
    call_result r = run_node(&node_filter, config, extra);
    cr_assert_eq(r.rc, 0, "%s on %s failed: %s", config, data, r.err.message);
    cr_assert_eq(json_object_size(r.out), 1, "only filtered_data comes out");
    assert_port(r.out, "filtered_data", expected);
    json_decref(r.out);
}

/* parse() for texts holding \\u0000: request bodies may carry NUL bytes inside strings. */
static json_t *parse_nul(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    cr_assert_not_null(v, "bad test JSON '%s': %s", text, je.text);
    return v;
}

/* filter_expect for config and data holding NUL bytes: compile, then run on config + data. */
static void filter_expect_nul(const char *config, const char *data, const char *expected)
{
    json_t *cfg = parse_nul(config), *want = parse_nul(expected), *out = NULL;
    void *compiled = NULL;
    char err[256] = "";
    cr_assert_eq(node_filter.compile(&test_env, cfg, &compiled, err, sizeof err), 0, "%s", err);
    json_t *inputs = json_deep_copy(cfg);
    json_object_set_new(inputs, "data", parse_nul(data));
    node_call call = {.node_id = "f", .inputs = inputs};
    node_error e;
    cr_assert_eq(node_filter.run(compiled, &call, &out, &e), 0, "%s", e.message);
    cr_assert(json_equal(json_object_get(out, "filtered_data"), want), "%s on %s", config, data);
    json_decref(out);
    json_decref(inputs);
    json_decref(want);
    json_decref(cfg);
}

/* Runs the filter expecting a failure with code and a message holding part. */
static void filter_fails(const char *config, const char *extra, const char *code, const char *part)
{
    call_result r = run_node(&node_filter, config, extra);
    cr_assert_eq(r.rc, -1, "%s with %s should fail", config, extra ? extra : "nothing");
    cr_assert_str_eq(r.err.code, code);
    cr_assert(strstr(r.err.message, part), "'%s' lacks '%s'", r.err.message, part);
}

static void compile_refuses(const char *config, const char *part)
{
    char err[256];
    cr_assert_eq(compile_only(&node_filter, config, err, sizeof err), -1, "accepted %s", config);
    cr_assert(strstr(err, part), "'%s' lacks '%s'", err, part);
}

#define PEOPLE                                                                                                 \
    "[{\"name\": \"ada\", \"age\": 36, \"region\": \"eu\"}, {\"name\": \"bob\", \"age\": 25, \"region\": \"us\"}," \
    " {\"name\": \"cy\", \"age\": 41, \"region\": \"eu\"}, {\"name\": \"di\", \"age\": 30, \"region\": \"apac\"}]"

Test(filter, corpus_operators_on_rows)
{
    filter_expect("{\"field\": \"age\", \"operator\": \">\", \"value\": 30}", PEOPLE,
                  "[{\"name\": \"ada\", \"age\": 36, \"region\": \"eu\"}, {\"name\": \"cy\", \"age\": 41, \"region\": \"eu\"}]");
    filter_expect("{\"field\": \"age\", \"operator\": \"<=\", \"value\": 30}", PEOPLE,
                  "[{\"name\": \"bob\", \"age\": 25, \"region\": \"us\"}, {\"name\": \"di\", \"age\": 30, \"region\": \"apac\"}]");
    filter_expect("{\"field\": \"region\", \"operator\": \"!=\", \"value\": \"eu\"}", PEOPLE,
                  "[{\"name\": \"bob\", \"age\": 25, \"region\": \"us\"}, {\"name\": \"di\", \"age\": 30, \"region\": \"apac\"}]");
    filter_expect("{\"field\": \"name\", \"operator\": \"contains\", \"value\": \"d\"}", PEOPLE,
                  "[{\"name\": \"ada\", \"age\": 36, \"region\": \"eu\"}, {\"name\": \"di\", \"age\": 30, \"region\": \"apac\"}]");
    filter_expect("{\"field\": \"age\", \"operator\": \">=\", \"value\": 41}", PEOPLE,
                  "[{\"name\": \"cy\", \"age\": 41, \"region\": \"eu\"}]");
    filter_expect("{\"field\": \"age\", \"operator\": \"<\", \"value\": 25}", PEOPLE, "[]");
}

Test(filter, operator_defaults_to_equal_and_null_means_default) /* SDK */
{
    filter_expect("{\"field\": \"x\", \"value\": 1}", "[{\"x\": 1}, {\"y\": 1}, {\"x\": 2}]", "[{\"x\": 1}]");
    filter_expect("{\"operator\": null, \"value\": 5}", "[5, 6]", "[5]");
    filter_expect("{\"operator\": \"==\"}", "[1, null, 0]", "[null]"); /* value absent is None */
}

Test(filter, equality_is_pythons) /* SDK */
{
    filter_expect("{\"value\": 1}", "[1, 1.0, true, \"1\", [1], null, {\"a\": 1}]", "[1, 1.0, true]");
    filter_expect("{\"value\": {\"a\": [1, 2.0]}}", "[{\"a\": [1, 2]}, {\"a\": [true, 2]}, {\"a\": [1, 3]}]",
                  "[{\"a\": [1, 2]}, {\"a\": [true, 2]}]");
    /* An int and a float compare exactly: 2**53 + 1 is not 2.0**53. */
    filter_expect("{\"value\": 9007199254740992.0}", "[9007199254740993, 9007199254740992]", "[9007199254740992]");
    filter_expect("{\"field\": \"a\", \"operator\": \"!=\", \"value\": 1}", "[{\"a\": 1}, {\"b\": 1}, {\"a\": true}, 3]",
                  "[{\"b\": 1}, 3]");
}

Test(filter, null_tested_values) /* SDK */
{
    filter_expect("{\"operator\": \"!=\", \"value\": null}", "[1, null, 0, false]", "[1, 0, false]");
    filter_expect("{\"operator\": \"==\", \"value\": null}", "[1, null, 0, false]", "[null]");
    filter_expect("{\"field\": \"v\", \"operator\": \">\", \"value\": 1}", "[{\"v\": 2}, {\"v\": \"3\"}, {\"v\": null}, {\"v\": 1.5}]",
                  "[{\"v\": 2}, {\"v\": \"3\"}, {\"v\": 1.5}]");
    filter_expect("{\"field\": \"v\", \"operator\": \"contains\", \"value\": \"None\"}", "[{\"v\": null}, {\"w\": 1}]", "[]");
}

Test(filter, field_reads_top_level_keys_of_objects_only) /* SDK */
{
    /* A non-object item is tested itself; a dotted field is one key, not a path. */
    filter_expect("{\"field\": \"a\", \"value\": 1}", "[1, {\"a\": 1}, {\"b\": 1}, \"x\", [1]]", "[1, {\"a\": 1}]");
    filter_expect("{\"field\": \"a.b\", \"value\": 1}", "[{\"a\": {\"b\": 1}}, {\"a.b\": 1}]", "[{\"a.b\": 1}]");
    filter_expect("{\"field\": \"\", \"value\": 1}", "[1, {\"a\": 1}]", "[1]");
    filter_expect("{\"field\": null, \"value\": 1}", "[1, {\"a\": 1}]", "[1]");
    /* A field holding a NUL byte is not cut there: no key matches it (keys never hold NUL). */
    filter_expect_nul("{\"field\": \"a\\u0000b\", \"value\": 1}", "[{\"a\": 1}, {\"a\": 1, \"b\": 1}]", "[]");
    filter_expect_nul("{\"field\": \"a\\u0000b\", \"value\": null}", "[{\"a\": 1}]", "[{\"a\": 1}]");
}

Test(filter, ordering_converts_strings_as_the_sdk_does) /* SDK */
{
    filter_expect("{\"operator\": \">\", \"value\": \"2\"}",
                  "[1, 3, \"3\", \"abc\", \" 3 \", \"1_0\", \"inf\", \"nan\", \"0x10\", true, null, [3]]",
                  "[3, \"3\", \"abc\", \" 3 \", \"1_0\", \"inf\"]");
    filter_expect("{\"operator\": \">\", \"value\": \"abc\"}", "[1, \"b\", \"abd\", \"aa\", \"5\", true]", "[\"b\", \"abd\"]");
    filter_expect("{\"operator\": \"<\", \"value\": 2}", "[1, true, false, 1.9, \"1.9\", \"x\"]",
                  "[1, true, false, 1.9, \"1.9\"]");
    filter_expect("{\"operator\": \">=\", \"value\": 10}",
                  "[\"1e1\", \"+10\", \"-1\", \"1__0\", \"_10\", \"10_\", \".5e2\", \"5.\", \"1e\", \"INFINITY\", \"-inf\", \"\","
                  " \"  \", \"\\u00a010\\u2003\"]",
                  "[\"1e1\", \"+10\", \".5e2\", \"INFINITY\", \"\\u00a010\\u2003\"]");
    filter_expect("{\"operator\": \"<\", \"value\": \"b\"}", "[\"a\", \"B\", \"\\u00e9\", \"ab\", \"b\"]", "[\"a\", \"B\", \"ab\"]");
    filter_expect("{\"operator\": \">\", \"value\": 9007199254740992.0}",
                  "[9007199254740993, 9007199254740992, \"9007199254740993\"]", "[9007199254740993]");
}

Test(filter, ordering_reads_unicode_decimal_digits_as_float_does) /* SDK */
{
    /* Python's float() reads every Unicode decimal digit (Arabic-Indic, fullwidth, mathematical). */
    filter_expect("{\"field\": \"n\", \"operator\": \">=\", \"value\": \"\\u0663\"}",
                  "[{\"n\": 2}, {\"n\": 3}, {\"n\": \"\\u0664\"}, {\"n\": \"\\uff11\\uff12\"}, {\"n\": \"x\"}]",
                  "[{\"n\": 3}, {\"n\": \"\\u0664\"}, {\"n\": \"\\uff11\\uff12\"}]");
    filter_expect("{\"operator\": \"<\", \"value\": 10}",
                  "[\"\\u0661.\\u0665\", \" \\u0669 \", \"\\u0663_\\u0663\", \"\\u00b2\", \"\\u2155\", \"\\u0663\\u00a0\","
                  " \"\\ud835\\udfce\\ud835\\udfd9\"]",
                  "[\"\\u0661.\\u0665\", \" \\u0669 \", \"\\u0663\\u00a0\", \"\\ud835\\udfce\\ud835\\udfd9\"]");
}

Test(filter, ordering_lists_lexicographically) /* SDK */
{
    filter_expect("{\"operator\": \">\", \"value\": [1, 2]}", "[[1, 3], [1], [1, 2], [0, \"x\"], [1, \"x\"], {\"a\": 1}]",
                  "[[1, 3]]");
    filter_expect("{\"operator\": \"<=\", \"value\": [1, 2]}", "[[1, 2], [1], [1, 2, 0], [[1]], [true, 2.0]]",
                  "[[1, 2], [1], [true, 2.0]]");
}

Test(filter, contains_searches_pythons_str) /* SDK */
{
    filter_expect("{\"operator\": \"contains\", \"value\": \"1\"}", "[1, 1.5, \"a1\", [1], {\"a\": 1}, true, null, \"x\"]",
                  "[1, 1.5, \"a1\", [1], {\"a\": 1}]");
    filter_expect("{\"operator\": \"contains\", \"value\": \"True\"}", "[true, [true], {\"x\": null}]", "[true, [true]]");
    filter_expect("{\"operator\": \"contains\", \"value\": \"None\"}", "[{\"x\": null}, [null]]", "[{\"x\": null}, [null]]");
    filter_expect("{\"operator\": \"contains\", \"value\": \"'\"}", "[[\"a\"], {\"k\": \"v\"}, [\"it's\"]]",
                  "[[\"a\"], {\"k\": \"v\"}, [\"it's\"]]");
    filter_expect("{\"operator\": \"contains\", \"value\": \"2.0\"}", "[2.0, 1e20, 1e16, 0.0001, [1.5e-7]]", "[2.0]");
    filter_expect("{\"operator\": \"contains\", \"value\": \"\\\\x\"}",
                  "[[\"\\u0001\"], [\"\\u00e9\"], [\"\\u00a0\"], [\"a\\\"b\"], [\"a'b\\\"c\"]]", "[[\"\\u0001\"], [\"\\u00a0\"]]");
    filter_expect("{\"field\": \"n\", \"operator\": \"contains\", \"value\": \"{'x'\"}",
                  "[{\"n\": {\"x\": [1, \"y\", null, 2.5]}}, {\"n\": \"{'x'\"}, {\"n\": \"x\"}]",
                  "[{\"n\": {\"x\": [1, \"y\", null, 2.5]}}, {\"n\": \"{'x'\"}]");
    filter_expect("{\"operator\": \"contains\", \"value\": \"\"}", "[\"\", 0, null]", "[\"\", 0]");
}

Test(filter, empty_data_and_passthrough_identity)
{
    filter_expect("{\"operator\": \">\", \"value\": 1}", "[]", "[]");
    /* The kept items are the input's own values, not copies. */
    json_t *cfg = parse("{\"value\": {\"k\": 1}}");
    void *compiled = NULL;
    char err[256];
    cr_assert_eq(node_filter.compile(&test_env, cfg, &compiled, err, sizeof err), 0);
    json_t *inputs = parse("{\"value\": {\"k\": 1}, \"data\": [{\"k\": 1}, {\"k\": 2}]}");
    node_call call = {.node_id = "f", .inputs = inputs};
    json_t *out = NULL;
    node_error e;
    cr_assert_eq(node_filter.run(compiled, &call, &out, &e), 0);
    json_t *kept = json_object_get(out, "filtered_data");
    cr_assert_eq(json_array_size(kept), 1);
    cr_assert_eq(json_array_get(kept, 0), json_array_get(json_object_get(inputs, "data"), 0));
    json_decref(out);
    json_decref(inputs);
    json_decref(cfg);
}

Test(filter, has_one_output_port)
{
    cr_assert(node_filter.has_output(NULL, "filtered_data"));
    cr_assert_not(node_filter.has_output(NULL, "data"));
    cr_assert_not(node_filter.has_output(NULL, "filtered_data.0"));
}

Test(filter, load_refusals)
{
    compile_refuses("{\"operator\": \"~~\"}", "config.operator: expected one of == != > < >= <= contains");
    compile_refuses("{\"operator\": \"in\"}", "config.operator"); /* SwitchNode has it; the SDK's filter not */
    compile_refuses("{\"operator\": 5}", "config.operator");
    json_t *nul = parse_nul("{\"operator\": \"==\\u0000x\"}");
    void *c = NULL;
    char e[256];
    cr_assert_eq(node_filter.compile(&test_env, nul, &c, e, sizeof e), -1, "an operator with a NUL byte is unknown");
    json_decref(nul);
    filter_expect_nul("{\"operator\": \">=\", \"value\": 10}", "[\"10\\u0000\", \"10\"]", "[\"10\"]"); /* SDK */
    compile_refuses("{\"field\": 5}", "config.field: expected a string");
    compile_refuses("{\"field\": [\"a\"]}", "config.field");
    compile_refuses("{\"data\": {\"a\": 1}}", "config.data: expected an array");
    compile_refuses("{\"data\": \"abc\"}", "config.data");
    compile_refuses("{\"operator\": \"contains\", \"value\": 1}", "config.value: expected a string for operator 'contains'");
    compile_refuses("{\"operator\": \"contains\", \"value\": [\"x\"]}", "config.value");
    compile_refuses("{\"operator\": \"<=\", \"value\": {\"a\": 1}}", "config.value");
    char err[256];
    /* The SDK's exports leave value to a connection or the request: {"operator": ">", "value": null}. */
    const char *later[] = {"{\"operator\": \">\"}", "{\"operator\": \">\", \"value\": null}",
                           "{\"field\": \"age\", \"operator\": \"contains\", \"value\": null, \"data\": null}"};
    for (size_t i = 0; i < sizeof later / sizeof later[0]; i++)
        cr_assert_eq(compile_only(&node_filter, later[i], err, sizeof err), 0, "%s: %s", later[i], err);
    /* Templates are checked at run, not load; the SDK's own keys and defaults load. */
    cr_assert_eq(compile_only(&node_filter, "{\"operator\": \"{{ inputs.op }}\", \"value\": 1}", err, sizeof err), 0, "%s", err);
    cr_assert_eq(compile_only(&node_filter, "{\"operator\": \"contains\", \"value\": \"{{ inputs.v }}\"}", err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(compile_only(&node_filter, "{\"operator\": \"==\"}", err, sizeof err), 0, "%s", err);
    cr_assert_eq(compile_only(&node_filter, "{\"data\": [1], \"field\": \"a\", \"operator\": \">=\", \"value\": [1]}", err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(compile_only(&node_filter, "{}", err, sizeof err), 0, "%s", err);
}

Test(filter, run_refusals_check_what_arrives)
{
    filter_fails("{\"value\": 1}", NULL, "bad_request", "input 'data' is missing");
    filter_fails("{\"value\": 1}", "{\"data\": null}", "bad_request", "input 'data' is missing");
    filter_fails("{\"value\": 1}", "{\"data\": \"abc\"}", "internal", "data: expected an array");
    filter_fails("{\"value\": 1}", "{\"data\": {\"a\": 1}}", "internal", "got an object");
    filter_fails("{\"value\": 1}", "{\"data\": 5}", "internal", "got a scalar");
    filter_fails("{\"value\": 1}", "{\"data\": [1], \"operator\": \"~\"}", "internal", "operator: expected one of");
    filter_fails("{\"value\": 1}", "{\"data\": [1], \"operator\": [\"==\"]}", "internal", "operator");
    filter_fails("{\"value\": 1}", "{\"data\": [1], \"field\": 3}", "internal", "field: expected a string");
    filter_fails("{\"operator\": \"contains\", \"value\": \"x\"}", "{\"data\": [1], \"value\": 3}", "internal",
                 "value: expected a string for operator 'contains'");
    filter_fails("{\"operator\": \">\", \"value\": 1}", "{\"data\": [1], \"value\": {}}", "internal", "value:");
    /* A value left to the request and not given: a 400 like a missing data (the SDK answers []). */
    filter_fails("{\"operator\": \">\", \"value\": null}", "{\"data\": [1]}", "bad_request",
                 "input 'value' is missing (operator '>'");
    filter_fails("{\"operator\": \"contains\"}", "{\"data\": [\"None\"]}", "bad_request", "operator 'contains'");
    filter_fails("{\"operator\": \"<=\", \"value\": 3}", "{\"data\": [1], \"value\": null}", "bad_request",
                 "input 'value' is missing");
}

Test(filter, value_left_to_the_request) /* SDK */
{
    /* The export's null value is filled by what the request (or a connection) gives. */
    const char *cases[][3] = {
        {"{\"field\": \"age\", \"operator\": \">\", \"value\": null}", "{\"value\": 30}", "[{\"age\": 40}]"},
        {"{\"field\": \"age\", \"operator\": \"contains\"}", "{\"value\": \"4\"}", "[{\"age\": 40}]"},
        {"{\"field\": \"age\", \"operator\": \"==\", \"value\": null}", "{}", "[{\"age\": null}, {}]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *extra = parse(cases[i][1]);
        json_object_set_new(extra, "data", parse("[{\"age\": 40}, {\"age\": 20}, {\"age\": null}, {}]"));
        char *text = json_dumps(extra, 0);
        call_result r = run_node(&node_filter, cases[i][0], text);
        cr_assert_eq(r.rc, 0, "%s: %s", cases[i][0], r.err.message);
        assert_port(r.out, "filtered_data", cases[i][2]);
        json_decref(r.out);
        free(text);
        json_decref(extra);
    }
}

Test(filter, hostile_sizes_are_linear_and_safe, .timeout = 20)
{
    /* 200000 rows, every one tested by contains (a str() each) and by an ordering: well under the timeout. */
    json_t *rows = json_array();
    for (int i = 0; i < 200000; i++)
        json_array_append_new(rows, json_pack("{s:i,s:s}", "n", i, "s", i % 2 ? "odd" : "even"));
    const char *configs[] = {"{\"field\": \"n\", \"operator\": \">=\", \"value\": \"100000\"}",
                             "{\"operator\": \"contains\", \"value\": \"'odd'\"}"};
    for (int c = 0; c < 2; c++) {
        json_t *inputs = parse(configs[c]);
        json_object_set(inputs, "data", rows);
        node_call call = {.node_id = "f", .inputs = inputs};
        json_t *out = NULL;
        node_error e;
        cr_assert_eq(node_filter.run(NULL, &call, &out, &e), 0, "%s", e.message);
        cr_assert_eq(json_array_size(json_object_get(out, "filtered_data")), 100000);
        json_decref(out);
        json_decref(inputs);
    }
    json_decref(rows);
    /* Nesting as deep as jansson parses (2048): equality, ordering and str() recurse that far. */
    buf deep = {0};
    for (int i = 0; i < 2000; i++)
        buf_append(&deep, "[", 1);
    buf_append(&deep, "\"x\"", 3);
    for (int i = 0; i < 2000; i++)
        buf_append(&deep, "]", 1);
    buf_terminate(&deep);
    json_t *v = parse(deep.data);
    json_t *inputs = json_pack("{s:s,s:s,s:[O,O]}", "operator", "contains", "value", "'x'", "data", v, v);
    node_call call = {.node_id = "f", .inputs = inputs};
    json_t *out = NULL;
    node_error e;
    cr_assert_eq(node_filter.run(NULL, &call, &out, &e), 0);
    cr_assert_eq(json_array_size(json_object_get(out, "filtered_data")), 2);
    json_decref(out);
    json_object_set_new(inputs, "operator", json_string(">="));
    json_object_set(inputs, "value", v);
    cr_assert_eq(node_filter.run(NULL, &call, &out, &e), 0);
    cr_assert_eq(json_array_size(json_object_get(out, "filtered_data")), 2);
    json_decref(out);
    json_decref(inputs);
    json_decref(v);
    buf_free(&deep);
}

Test(pycmp, float_parse_is_pythons_float)
{
    struct {
        const char *s;
        int ok;
        double d;
    } cases[] = {
        {"3", 1, 3},           {" 3 ", 1, 3},     {"1_000", 1, 1000},  {"+1.5e2", 1, 150},  {".5", 1, 0.5},
        {"5.", 1, 5},          {"1e400", 1, INFINITY}, {"-Infinity", 1, -INFINITY}, {"1__0", 0, 0}, {"_1", 0, 0},
        {"1_", 0, 0},          {"0x10", 0, 0},    {"1e", 0, 0},        {".", 0, 0},         {"", 0, 0},
        {"\t\n", 0, 0},        {"1 2", 0, 0},     {"infinit", 0, 0},   {"nan(1)", 0, 0},    {"e5", 0, 0},
        /* Unicode decimal digits read as ASCII ones; other non-ASCII characters do not. */
        {"\u0663", 1, 3},      {"\uff11\uff12", 1, 12}, {"\u0661.\u0665e\u0662", 1, 150}, {"\u0663_\u0663", 1, 33},
        {"\U0001fbf9", 1, 9},  {"\u0669\u00a0", 1, 9},  {"\u00b2", 0, 0},  {"\u2155", 0, 0},  {"\u0663\u00a0\u0663", 0, 0},
        {"\uff49\uff4e\uff46", 0, 0}, {"\u065f", 0, 0}, {"\u066a", 0, 0}, {"\u00e9", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double d = -1;
        int ok = pycmp_float_parse(cases[i].s, strlen(cases[i].s), &d);
        cr_assert_eq(ok, cases[i].ok, "float('%s')", cases[i].s);
        if (ok)
            cr_assert(d == cases[i].d, "float('%s') = %g", cases[i].s, d);
    }
    double d;
    cr_assert(pycmp_float_parse("nan", 3, &d) && isnan(d));
    cr_assert_not(pycmp_float_parse("1\0", 2, &d), "a NUL byte is never a number");
}

Test(pycmp, str_is_pythons)
{
    struct {
        const char *json, *str;
    } cases[] = {
        {"[1, 2.5, \"a\", null, true]", "[1, 2.5, 'a', None, True]"},
        {"{\"k\": {\"it's\": \"\\\"\"}}", "{'k': {\"it's\": '\"'}}"},
        {"[\"a'b\\\"c\\\\\"]", "['a\\'b\"c\\\\']"},
        {"[\"\\t\\n\\r\\u0001\\u007f\"]", "['\\t\\n\\r\\x01\\x7f']"},
        {"[\"\\u00e9\\u00a0\\u200b\\u4e2d\"]", "['\\u00e9\\xa0\\u200b\\u4e2d']"},
        {"[1e16, 1e-5, -0.0, 123456789.125]", "[1e+16, 1e-05, -0.0, 123456789.125]"},
        {"\"plain 'str'\"", "plain 'str'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *v = parse(cases[i].json);
        buf b = {0};
        cr_assert_eq(pycmp_str_append(&b, v), 0);
        buf_terminate(&b);
        /* é and 中 are printable: repr keeps them as they are (UTF-8 here). */
        const char *want = cases[i].str;
        char fixed[128];
        if (strstr(want, "\\u00e9")) {
            snprintf(fixed, sizeof fixed, "['\xc3\xa9\\xa0\\u200b\xe4\xb8\xad']");
            want = fixed;
        }
        cr_assert_str_eq(b.data, want, "str(%s)", cases[i].json);
        buf_free(&b);
        json_decref(v);
    }
}

/* Lists nested 2000 deep, each level [wide, next] with the same 1000-item wide list (shared, so
 * the test stays small), differing only at the bottom: Python's "first pair not ==, then order it"
 * done as two walks re-compared everything below at every level (2 billion item visits, about
 * 20 s); one pass visits each item once. Results stay Python's. */
Test(pycmp, ordering_nested_lists_is_one_pass)
{
    json_t *wide = json_array(), *zero = json_integer(0);
    for (int i = 0; i < 1000; i++)
        json_array_append(wide, zero);
    json_t *a = json_array(), *b = json_array(), *ca = a, *cb = b;
    for (int k = 0; k < 2000; k++) {
        json_t *na = json_array(), *nb = json_array();
        json_array_append(ca, wide);
        json_array_append(cb, wide);
        json_array_append_new(ca, na);
        json_array_append_new(cb, nb);
        ca = na;
        cb = nb;
    }
    json_array_append_new(ca, json_integer(1));
    json_array_append_new(cb, json_real(2.5));
    struct timespec t0, t1;
    int c = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(pycmp_order(a, b, &c), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert_eq(c, -1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    cr_assert(secs < 2.0, "ordering took %.2f s", secs);
    /* The same rules as before, nested: equal dicts and Nones are passed over, an unequal pair
     * without an order raises, a NaN makes every ordering False. */
    const char *cases[][3] = {
        {"[[{\"a\": 1}, null, 1]]", "[[{\"a\": 1.0}, null, 2]]", "lt"},
        {"[[{\"a\": 1}, 1]]", "[[{\"a\": 2}, 0]]", "type"},
        {"[[1, \"x\"]]", "[[1, 2]]", "type"},
        {"[[true, [3]]]", "[[1, [2, 9]]]", "gt"},
        {"[[null]]", "[[null]]", "eq"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *x = parse(cases[i][0]), *y = parse(cases[i][1]);
        int rc = pycmp_order(x, y, &c);
        const char *got = rc == PYCMP_TYPE_ERROR ? "type" : rc ? "unordered" : c < 0 ? "lt" : c > 0 ? "gt" : "eq";
        cr_assert_str_eq(got, cases[i][2], "%s vs %s", cases[i][0], cases[i][1]);
        json_decref(x);
        json_decref(y);
    }
    json_decref(a);
    json_decref(b);
    json_decref(wide);
    json_decref(zero);
}
