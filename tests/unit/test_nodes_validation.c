/* Tests of DataValidationNode (src/nodes/data_validation.c): each keyword of WORKFLOWS.md's schema
 * subset through the node, the violations' JSON Pointers, data passed on unchanged, load refusals,
 * the cap on `errors`, fail_on_invalid and hostile values. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kailash/node.h"
#include "kailash/util.h"

extern const node_type node_data_validation;

static const node_env test_env = {.data_dir = "/tmp", .max_response_bytes = 1 << 20};

#include "node_harness.h"

/* Runs the node with schema (JSON text) on data (JSON text); asserts success, valid, and that errors
 * equals errors_json (NULL: []) and data came out as it went in. */
static void check(const char *schema, const char *data, const char *errors_json)
{
    char config[4096], extra[4096];
    snprintf(config, sizeof config, "{\"schema\": %s}", schema);
    snprintf(extra, sizeof extra, "{\"data\": %s}", data);
    call_result r = run_node(&node_data_validation, config, extra);
    cr_assert_eq(r.rc, 0, "%s on %s failed: %s", schema, data, r.err.message);
    cr_assert_eq(json_object_size(r.out), 3, "valid, errors and data come out");
    assert_port(r.out, "valid", errors_json ? "false" : "true");
    assert_port(r.out, "errors", errors_json ? errors_json : "[]");
    assert_port(r.out, "data", data);
    json_decref(r.out);
}

static void valid(const char *schema, const char *data)
{
    check(schema, data, NULL);
}

/* One violation at path with message. */
static void invalid(const char *schema, const char *data, const char *path, const char *message)
{
    char want[1024];
    snprintf(want, sizeof want, "[{\"path\": \"%s\", \"message\": \"%s\"}]", path, message);
    check(schema, data, want);
}

/* compile refused with a message holding part. */
static void refused(const char *config, const char *part)
{
    char err[256];
    cr_assert_eq(compile_only(&node_data_validation, config, err, sizeof err), -1, "accepted %s", config);
    cr_assert(strstr(err, part), "%s: message '%s' lacks '%s'", config, err, part);
}

Test(validation, type_and_type_arrays)
{
    valid("{\"type\": \"object\"}", "{}");
    valid("{\"type\": \"integer\"}", "3");
    valid("{\"type\": \"integer\"}", "3.0");
    valid("{\"type\": \"number\"}", "3.5");
    valid("{\"type\": [\"string\", \"null\"]}", "null");
    valid("{}", "[1, {\"a\": null}]");
    invalid("{\"type\": \"integer\"}", "3.5", "", "expected integer, got number");
    invalid("{\"type\": \"string\"}", "true", "", "expected string, got boolean");
    invalid("{\"type\": [\"string\", \"null\"]}", "[]", "", "expected string or null, got array");
    invalid("{\"type\": \"boolean\"}", "null", "", "expected boolean, got null");
}

Test(validation, properties_required_additional)
{
    const char *s = "{\"type\": \"object\", \"properties\": {\"user_id\": {\"type\": \"integer\"}, "
                    "\"name\": {\"type\": \"string\"}}, \"required\": [\"user_id\"], "
                    "\"additionalProperties\": false}";
    valid(s, "{\"user_id\": 7, \"name\": \"ada\"}");
    valid(s, "{\"user_id\": 7}");
    invalid(s, "{\"name\": \"ada\"}", "/user_id", "required property missing");
    invalid(s, "{\"user_id\": \"7\"}", "/user_id", "expected integer, got string");
    invalid(s, "{\"user_id\": 7, \"extra\": 1}", "/extra", "additional property not allowed");
    check(s, "{\"name\": 5, \"x\": 1}",
          "[{\"path\": \"/user_id\", \"message\": \"required property missing\"},"
          " {\"path\": \"/name\", \"message\": \"expected string, got integer\"},"
          " {\"path\": \"/x\", \"message\": \"additional property not allowed\"}]");
}

Test(validation, items_and_counts)
{
    const char *s = "{\"type\": \"array\", \"items\": {\"type\": \"integer\", \"minimum\": 0}, "
                    "\"minItems\": 1, \"maxItems\": 3}";
    valid(s, "[0, 5]");
    invalid(s, "[]", "", "must have at least 1 item");
    invalid(s, "[1, 2, 3, 4]", "", "must have at most 3 items");
    invalid(s, "[1, -1]", "/1", "must be >= 0");
    invalid(s, "[1, \"a\"]", "/1", "expected integer, got string");
}

Test(validation, enum_and_const)
{
    valid("{\"enum\": [\"a\", 1, null, {\"k\": [1]}]}", "{\"k\": [1]}");
    valid("{\"enum\": [\"a\", 1, null]}", "1.0");
    invalid("{\"enum\": [\"a\", 1]}", "\"b\"", "", "must be one of the allowed values");
    valid("{\"const\": {\"v\": 2}}", "{\"v\": 2}");
    invalid("{\"const\": {\"v\": 2}}", "{\"v\": 3}", "", "must equal the constant value");
    valid("{\"const\": null}", "null");
    invalid("{\"const\": null}", "0", "", "must equal the constant value");
}

Test(validation, numeric_limits)
{
    valid("{\"minimum\": 1, \"maximum\": 10}", "1");
    valid("{\"minimum\": 1, \"maximum\": 10}", "10");
    invalid("{\"minimum\": 1}", "0.5", "", "must be >= 1");
    invalid("{\"maximum\": 10}", "10.5", "", "must be <= 10");
    invalid("{\"exclusiveMinimum\": 1}", "1", "", "must be > 1");
    invalid("{\"exclusiveMaximum\": 2.5}", "2.5", "", "must be < 2.5");
    valid("{\"exclusiveMinimum\": 1, \"exclusiveMaximum\": 2}", "1.5");
    valid("{\"maximum\": 9007199254740993}", "9007199254740993");
    invalid("{\"maximum\": 9007199254740992}", "9007199254740993", "", "must be <= 9007199254740992");
    valid("{\"minimum\": 5}", "\"not a number: limits apply to numbers only\"");
}

Test(validation, strings_pattern_format)
{
    valid("{\"minLength\": 2, \"maxLength\": 3}", "\"\u00e9\u00e9\u00e9\"");
    invalid("{\"minLength\": 2}", "\"a\"", "", "must be at least 2 characters long");
    invalid("{\"maxLength\": 1}", "\"ab\"", "", "must be at most 1 character long");
    valid("{\"pattern\": \"^[a-z]+-[0-9]{2}$\"}", "\"ab-12\"");
    invalid("{\"pattern\": \"^[a-z]+$\"}", "\"AB\"", "", "must match pattern '^[a-z]+$'");
    valid("{\"format\": \"email\"}", "\"ada@example.com\"");
    invalid("{\"format\": \"email\"}", "\"ada\"", "", "must be a valid email address");
    valid("{\"format\": \"uuid\"}", "\"123e4567-e89b-12d3-a456-426614174000\"");
    invalid("{\"format\": \"uuid\"}", "\"123e4567\"", "", "must be a valid UUID");
    valid("{\"format\": \"date-time\"}", "\"2026-12-04T09:21:05Z\"");
    invalid("{\"format\": \"date-time\"}", "\"2026-02-30T00:00:00Z\"", "", "must be a valid RFC 3339 date-time");
}

Test(validation, pointers_escape_tilde_and_slash)
{
    const char *s = "{\"properties\": {\"a/b\": {\"type\": \"integer\"}, \"m~n\": {\"properties\": "
                    "{\"\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}}}}}}";
    invalid(s, "{\"a/b\": \"x\"}", "/a~1b", "expected integer, got string");
    invalid(s, "{\"m~n\": {\"\": [\"ok\", 2]}}", "/m~0n//1", "expected string, got integer");
    invalid("{\"required\": [\"~/\"]}", "{}", "/~0~1", "required property missing");
}

Test(validation, data_passes_through_unchanged)
{
    /* run_compiled asserts the inputs are unchanged; here the port is the very same value. */
    json_t *cfg =
        parse("{\"schema\": {\"type\": \"object\"}, \"data\": {\"big\": [1, 2, {\"x\": \"y\"}], \"n\": null}}");
    call_result r = run_json(&node_data_validation, cfg, NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    cr_assert(json_equal(json_object_get(r.out, "data"), json_object_get(cfg, "data")));
    json_decref(r.out);
    /* a request's data overrides config's, and an invalid one is passed on as well */
    r = run_json(&node_data_validation, cfg, "{\"data\": [3]}");
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "valid", "false");
    assert_port(r.out, "data", "[3]");
    json_decref(r.out);
    json_decref(cfg);
    /* null is a value like any other */
    valid("{\"type\": \"null\"}", "null");
}

Test(validation, missing_data_is_a_bad_request)
{
    call_result r = run_node(&node_data_validation, "{\"schema\": {}}", NULL);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "bad_request");
    cr_assert(strstr(r.err.message, "input 'data' is missing"), "%s", r.err.message);
}

Test(validation, schema_refused_at_load)
{
    refused("{}", "config.schema: required");
    refused("{\"schema\": true}", "config.schema: expected an object");
    refused("{\"schema\": \"{\\\"type\\\": \\\"string\\\"}\"}", "config.schema: expected an object");
    refused("{\"schema\": {\"properties\": {\"age\": {\"minimun\": 1}}}}",
            "config.schema: /properties/age: unknown keyword 'minimun'");
    refused("{\"schema\": {\"type\": \"text\"}}", "config.schema: /type:");
    refused("{\"schema\": {\"pattern\": \"(a\"}}", "config.schema: /pattern: invalid regular expression");
    refused("{\"schema\": {\"pattern\": \"(a)\\\\1\"}}", "back-references are not supported");
    refused("{\"schema\": {\"pattern\": \"(a{0,1000}){0,1000}\"}}", "too costly");
    refused("{\"schema\": {\"minLength\": -1}}", "config.schema: /minLength:");
    refused("{\"schema\": {\"properties\": {\"q\": {\"const\": \"{{ inputs.q }}\"}}}}", "may not hold {{ }} templates");
    refused("{\"schema\": {}, \"fail_on_invalid\": \"yes\"}", "config.fail_on_invalid: expected a boolean");
    char err[256];
    cr_assert_eq(compile_only(&node_data_validation, "{\"schema\": {}, \"fail_on_invalid\": \"{{ inputs.strict }}\"}",
                              err, sizeof err),
                 0, "%s", err);
}

Test(validation, ports)
{
    cr_assert(node_data_validation.has_output(NULL, "valid"));
    cr_assert(node_data_validation.has_output(NULL, "errors"));
    cr_assert(node_data_validation.has_output(NULL, "data"));
    cr_assert_not(node_data_validation.has_output(NULL, "result"));
    cr_assert_str_eq(node_data_validation.name, "DataValidationNode");
}

/* A 100000-item array of wrong types: errors holds the first 100, in order, valid is false. */
Test(validation, errors_capped_at_100)
{
    json_t *cfg = parse("{\"schema\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}}}");
    json_t *data = json_array();
    for (int i = 0; i < 100000; i++)
        json_array_append_new(data, json_integer(i));
    json_object_set_new(cfg, "data", data);
    call_result r = run_json(&node_data_validation, cfg, NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "valid", "false");
    json_t *errors = json_object_get(r.out, "errors");
    cr_assert_eq(json_array_size(errors), 100);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(errors, 0), "path")), "/0");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(errors, 99), "path")), "/99");
    json_decref(r.out);
    /* fail_on_invalid counts them all */
    json_object_set_new(cfg, "fail_on_invalid", json_true());
    r = run_json(&node_data_validation, cfg, NULL);
    cr_assert_eq(r.rc, -1);
    cr_assert(strstr(r.err.message, "(100000 violations)"), "%s", r.err.message);
    json_decref(cfg);
}

Test(validation, fail_on_invalid)
{
    const char *cfg = "{\"schema\": {\"type\": \"object\", \"properties\": {\"user_id\": {\"type\": \"integer\"}, "
                      "\"email\": {\"format\": \"email\"}}, \"required\": [\"user_id\", \"name\"]}, "
                      "\"fail_on_invalid\": true}";
    call_result r = run_node(&node_data_validation, cfg, "{\"data\": {\"user_id\": \"x\", \"email\": \"no\"}}");
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "bad_request");
    cr_assert_str_eq(r.err.message, "data is invalid (3 violations): /name: required property missing; "
                                    "/user_id: expected integer, got string; /email: must be a valid email address");
    r = run_node(&node_data_validation, cfg, "{\"data\": {\"user_id\": 1, \"name\": \"ada\"}}");
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "valid", "true");
    assert_port(r.out, "errors", "[]");
    json_decref(r.out);
    r = run_node(&node_data_validation, "{\"schema\": {\"type\": \"string\"}, \"fail_on_invalid\": true}",
                 "{\"data\": 1}");
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.message, "data is invalid (1 violation): (root): expected string, got integer");
    /* false and null are the default: report, don't fail */
    r = run_node(&node_data_validation, "{\"schema\": {\"type\": \"string\"}, \"fail_on_invalid\": null}",
                 "{\"data\": 1}");
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    json_decref(r.out);
    /* a templated flag that renders to a non-boolean */
    r = run_node(&node_data_validation, "{\"schema\": {}}", "{\"data\": 1, \"fail_on_invalid\": \"yes\"}");
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "internal");
}

Test(validation, long_messages_are_cut_in_the_node_error)
{
    char cfg[2048];
    char pat[700];
    memset(pat, 'a', sizeof pat - 1);
    pat[sizeof pat - 1] = '\0';
    snprintf(cfg, sizeof cfg, "{\"schema\": {\"items\": {\"pattern\": \"^%s$\"}}, \"fail_on_invalid\": true}", pat);
    call_result r = run_node(&node_data_validation, cfg, "{\"data\": [\"b\", \"c\", \"d\", \"e\"]}");
    cr_assert_eq(r.rc, -1);
    cr_assert(strncmp(r.err.message, "data is invalid (4 violations): /0: must match pattern '^aaa", 60) == 0, "%s",
              r.err.message);
    cr_assert_lt(strlen(r.err.message), sizeof r.err.message);
}

Test(validation, request_may_not_swap_the_schema)
{
    call_result r =
        run_node(&node_data_validation, "{\"schema\": {\"type\": \"string\"}}", "{\"data\": 1, \"schema\": {}}");
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "bad_request");
    cr_assert(strstr(r.err.message, "schema: fixed by the workflow file"), "%s", r.err.message);
    const char *const *p = node_data_validation.pinned_keys;
    cr_assert_str_eq(p[0], "schema");
    cr_assert_str_eq(p[1], "fail_on_invalid");
    cr_assert_null(p[2]);
}

/* Deep nesting, long strings and a pattern near the compiler's budget: quick, no crash. */
Test(validation, hostile_values)
{
    /* 2000 levels of arrays (jansson's parser refuses deeper request bodies): the schema is two
     * levels deep, so the validator stops there */
    json_t *deep = json_array(), *cur = deep;
    for (int i = 0; i < 2000; i++) {
        json_t *next = json_array();
        json_array_append_new(cur, next);
        cur = next;
    }
    json_t *cfg = parse("{\"schema\": {\"type\": \"array\", \"items\": {\"type\": \"array\", \"maxItems\": 0}}}");
    json_object_set_new(cfg, "data", deep);
    call_result r = run_json(&node_data_validation, cfg, NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "errors", "[{\"path\": \"/0\", \"message\": \"must have at most 0 items\"}]");
    json_decref(r.out);
    json_decref(cfg);

    /* a 4 MiB string against a pattern of stacked optional groups */
    size_t n = 4u << 20;
    char *s = malloc(n + 1);
    memset(s, 'a', n);
    s[n] = '\0';
    cfg = parse("{\"schema\": {\"pattern\": \"^(a|aa)*(b?)+$\", \"maxLength\": 10}}");
    json_object_set_new(cfg, "data", json_stringn(s, n));
    free(s);
    double t0 = util_now_ms();
    r = run_json(&node_data_validation, cfg, NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "errors", "[{\"path\": \"\", \"message\": \"must be at most 10 characters long\"}]");
    cr_assert_lt(util_now_ms() - t0, 20000.0, "a long string took %.0f ms", util_now_ms() - t0);
    json_decref(r.out);
    json_decref(cfg);

    /* a string with an embedded NUL does not match on its prefix */
    cfg = parse("{\"schema\": {\"pattern\": \"^a+$\"}}");
    json_object_set_new(cfg, "data", json_stringn("aa\0b", 4));
    r = run_json(&node_data_validation, cfg, NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "valid", "false");
    json_decref(r.out);
    json_decref(cfg);
}

/* A message cut inside a multi-byte character drops the partial character ("1 violation" and
 * "2 violations" shift the cut by one byte, so both parities of the cut are met). */
Test(validation, cut_message_stays_utf8)
{
    char pat[1200] = "^";
    for (int i = 0; i < 390; i++)
        strcat(pat, "\u00e9"); /* é, two bytes each */
    char cfg2[4096];
    snprintf(cfg2, sizeof cfg2, "{\"schema\": {\"items\": {\"pattern\": \"%s\"}}, \"fail_on_invalid\": true}", pat);
    for (int k = 1; k < 4; k++) {
        char extra[64] = "{\"data\": [";
        for (int j = 0; j < k; j++)
            strcat(extra, j ? ", \"x\"" : "\"x\"");
        strcat(extra, "]}");
        call_result r = run_node(&node_data_validation, cfg2, extra);
        cr_assert_eq(r.rc, -1);
        json_t *m = json_string(r.err.message);
        cr_assert_not_null(m, "not UTF-8: %s", r.err.message);
        json_decref(m);
    }
}
