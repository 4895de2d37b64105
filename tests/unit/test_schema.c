/* Unit tests for src/workflow/schema.c: every keyword passing and failing, every compile refusal,
 * violation paths and messages, formats, and concurrent validation of one compiled schema. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "kailash/schema.h"

/* Parses text (any JSON value); the test owns the result. */
static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    cr_assert_not_null(v, "bad test JSON '%s': %s", text, jerr.text);
    return v;
}

static schema *compile_ok(const char *def_text)
{
    json_t *def = parse(def_text);
    schema *s = NULL;
    char err[256] = "";
    int rc = schema_compile(def, &s, err, sizeof err);
    json_decref(def);
    cr_assert_eq(rc, 0, "compile of %s failed: %s", def_text, err);
    cr_assert_not_null(s);
    return s;
}

static void compile_fails(const char *def_text, const char *want)
{
    json_t *def = parse(def_text);
    schema *s = (schema *)1;
    char err[256] = "";
    int rc = schema_compile(def, &s, err, sizeof err);
    json_decref(def);
    cr_assert_eq(rc, -1, "compile of %s should fail", def_text);
    cr_assert_null(s);
    cr_assert_str_eq(err, want);
}

/* Validates instance text; returns the violations array (caller decrefs) and checks the count. */
static json_t *check(const schema *s, const char *instance_text, int want_count)
{
    json_t *inst = parse(instance_text);
    json_t *out = json_array();
    int n = schema_validate(s, inst, out);
    cr_assert_eq(n, want_count, "%s: %d violations, want %d: %s", instance_text, n, want_count, json_dumps(out, 0));
    cr_assert_eq(json_array_size(out), (size_t)n);
    cr_assert_eq(schema_validate(s, inst, NULL), n, "count-only mode must agree");
    json_decref(inst);
    return out;
}

static void expect_at(json_t *violations, size_t i, const char *path, const char *message)
{
    json_t *v = json_array_get(violations, i);
    cr_assert(json_is_object(v), "no violation %zu", i);
    cr_assert_eq(json_object_size(v), 2);
    cr_assert_str_eq(json_string_value(json_object_get(v, "path")), path);
    cr_assert_str_eq(json_string_value(json_object_get(v, "message")), message);
}

/* One instance, exactly one violation at path with message. */
static void fails_once(const schema *s, const char *inst, const char *path, const char *message)
{
    json_t *out = check(s, inst, 1);
    expect_at(out, 0, path, message);
    json_decref(out);
}

static void passes(const schema *s, const char *inst)
{
    json_decref(check(s, inst, 0));
}

/* ---- type ---- */

Test(schema_type, each_name_accepts_and_refuses)
{
    struct {
        const char *type, *good, *bad, *msg;
    } cases[] = {
        {"object", "{}", "[]", "expected object, got array"},
        {"array", "[1]", "{}", "expected array, got object"},
        {"string", "\"x\"", "1", "expected string, got integer"},
        {"number", "1.5", "\"1\"", "expected number, got string"},
        {"integer", "7", "7.5", "expected integer, got number"},
        {"boolean", "false", "null", "expected boolean, got null"},
        {"null", "null", "true", "expected null, got boolean"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char def[64];
        snprintf(def, sizeof def, "{\"type\": \"%s\"}", cases[i].type);
        schema *s = compile_ok(def);
        passes(s, cases[i].good);
        fails_once(s, cases[i].bad, "", cases[i].msg);
        schema_free(s);
    }
}

Test(schema_type, integer_accepts_integral_real_and_number_accepts_integer)
{
    schema *s = compile_ok("{\"type\": \"integer\"}");
    passes(s, "2.0");
    passes(s, "-9007199254740993");
    passes(s, "1e300");
    fails_once(s, "2.5", "", "expected integer, got number");
    schema_free(s);
    s = compile_ok("{\"type\": \"number\"}");
    passes(s, "3");
    fails_once(s, "true", "", "expected number, got boolean");
    schema_free(s);
}

Test(schema_type, array_of_types)
{
    schema *s = compile_ok("{\"type\": [\"null\", \"string\"]}");
    passes(s, "null");
    passes(s, "\"a\"");
    fails_once(s, "3", "", "expected string or null, got integer");
    schema_free(s);
    s = compile_ok("{\"type\": [\"boolean\", \"integer\", \"array\"]}");
    fails_once(s, "{}", "", "expected array, integer or boolean, got object");
    schema_free(s);
}

Test(schema_type, absent_type_accepts_anything)
{
    schema *s = compile_ok("{\"minLength\": 2}");
    passes(s, "5");
    passes(s, "{}");
    passes(s, "\"ab\"");
    fails_once(s, "\"a\"", "", "must be at least 2 characters long");
    schema_free(s);
}

Test(schema_type, wrong_type_stops_other_checks_of_that_value)
{
    schema *s = compile_ok("{\"type\": \"string\", \"enum\": [\"a\"], \"minLength\": 3}");
    fails_once(s, "4", "", "expected string, got integer");
    schema_free(s);
}

/* ---- objects ---- */

Test(schema_object, properties_nested_paths)
{
    schema *s = compile_ok("{\"type\": \"object\", \"properties\": {"
                           "  \"user\": {\"type\": \"object\", \"properties\": {"
                           "    \"age\": {\"type\": \"integer\", \"minimum\": 0}}}}}");
    passes(s, "{\"user\": {\"age\": 3}, \"other\": 1}");
    passes(s, "{}");
    fails_once(s, "{\"user\": {\"age\": -1}}", "/user/age", "must be >= 0");
    fails_once(s, "{\"user\": {\"age\": \"x\"}}", "/user/age", "expected integer, got string");
    fails_once(s, "{\"user\": []}", "/user", "expected object, got array");
    schema_free(s);
}

Test(schema_object, required_points_at_missing_property)
{
    schema *s = compile_ok("{\"type\": \"object\", \"required\": [\"user_id\", \"name\"]}");
    passes(s, "{\"user_id\": 1, \"name\": null}");
    fails_once(s, "{\"name\": \"n\"}", "/user_id", "required property missing");
    json_t *out = check(s, "{}", 2);
    expect_at(out, 0, "/user_id", "required property missing");
    expect_at(out, 1, "/name", "required property missing");
    json_decref(out);
    schema_free(s);
}

Test(schema_object, required_does_not_apply_to_non_objects)
{
    schema *s = compile_ok("{\"required\": [\"a\"]}");
    passes(s, "[1]");
    passes(s, "\"a\"");
    schema_free(s);
}

Test(schema_object, additional_properties_false)
{
    schema *s = compile_ok("{\"properties\": {\"a\": {}, \"b\": {}}, \"additionalProperties\": false}");
    passes(s, "{\"a\": 1, \"b\": 2}");
    json_t *out = check(s, "{\"a\": 1, \"zz\": 2, \"c\": 3}", 2);
    expect_at(out, 0, "/zz", "additional property not allowed");
    expect_at(out, 1, "/c", "additional property not allowed");
    json_decref(out);
    schema_free(s);
}

Test(schema_object, additional_properties_true_and_empty_closed)
{
    schema *s = compile_ok("{\"properties\": {\"a\": {}}, \"additionalProperties\": true}");
    passes(s, "{\"a\": 1, \"zz\": 2}");
    schema_free(s);
    s = compile_ok("{\"type\": \"object\", \"additionalProperties\": false}");
    passes(s, "{}");
    fails_once(s, "{\"x\": 1}", "/x", "additional property not allowed");
    schema_free(s);
}

Test(schema_object, many_properties_lookup)
{
    /* properties are looked up by binary search; check every one is found, in any order */
    schema *s = compile_ok("{\"additionalProperties\": false, \"properties\": {"
                           "\"m\": {\"type\": \"integer\"}, \"b\": {\"type\": \"integer\"},"
                           "\"z\": {\"type\": \"integer\"}, \"a\": {\"type\": \"integer\"},"
                           "\"ab\": {\"type\": \"integer\"}, \"\": {\"type\": \"integer\"}}}");
    passes(s, "{\"z\": 1, \"a\": 2, \"m\": 3, \"b\": 4, \"ab\": 5, \"\": 6}");
    fails_once(s, "{\"ab\": \"x\"}", "/ab", "expected integer, got string");
    fails_once(s, "{\"\": \"x\"}", "/", "expected integer, got string");
    fails_once(s, "{\"abc\": 1}", "/abc", "additional property not allowed");
    schema_free(s);
}

/* ---- arrays ---- */

Test(schema_array, items_paths)
{
    schema *s = compile_ok("{\"type\": \"object\", \"properties\": {\"items\": {\"type\": \"array\","
                           " \"items\": {\"type\": \"object\", \"required\": [\"name\"],"
                           " \"properties\": {\"name\": {\"type\": \"string\"}}}}}}");
    passes(s, "{\"items\": [{\"name\": \"a\"}, {\"name\": \"b\"}]}");
    fails_once(s, "{\"items\": [{\"name\": \"a\"}, {\"name\": \"b\"}, {\"name\": 5}]}", "/items/2/name",
               "expected string, got integer");
    fails_once(s, "{\"items\": [{}, {\"name\": \"b\"}]}", "/items/0/name", "required property missing");
    fails_once(s, "{\"items\": [{\"name\": \"a\"}, 7]}", "/items/1", "expected object, got integer");
    schema_free(s);
}

Test(schema_array, min_and_max_items)
{
    schema *s = compile_ok("{\"type\": \"array\", \"minItems\": 1, \"maxItems\": 2}");
    passes(s, "[1]");
    passes(s, "[1, 2]");
    fails_once(s, "[]", "", "must have at least 1 item");
    fails_once(s, "[1, 2, 3]", "", "must have at most 2 items");
    schema_free(s);
}

Test(schema_array, items_without_type_applies_to_each)
{
    schema *s = compile_ok("{\"items\": {\"maximum\": 10}}");
    passes(s, "[1, 10, \"not a number\"]");
    json_t *out = check(s, "[11, 5, 12]", 2);
    expect_at(out, 0, "/0", "must be <= 10");
    expect_at(out, 1, "/2", "must be <= 10");
    json_decref(out);
    schema_free(s);
}

/* ---- enum / const ---- */

Test(schema_enum, members_and_non_members)
{
    schema *s = compile_ok("{\"enum\": [\"red\", 2, null, [1, {\"a\": true}], {\"k\": 1}]}");
    passes(s, "\"red\"");
    passes(s, "2");
    passes(s, "2.0");
    passes(s, "null");
    passes(s, "[1.0, {\"a\": true}]");
    passes(s, "{\"k\": 1}");
    fails_once(s, "\"blue\"", "", "must be one of the allowed values");
    fails_once(s, "3", "", "must be one of the allowed values");
    fails_once(s, "[1, {\"a\": false}]", "", "must be one of the allowed values");
    fails_once(s, "{\"k\": 1, \"j\": 2}", "", "must be one of the allowed values");
    schema_free(s);
}

Test(schema_enum, const_value)
{
    schema *s = compile_ok("{\"const\": {\"v\": [1, \"x\"]}}");
    passes(s, "{\"v\": [1, \"x\"]}");
    fails_once(s, "{\"v\": [1, \"y\"]}", "", "must equal the constant value");
    fails_once(s, "{\"v\": [1]}", "", "must equal the constant value");
    schema_free(s);
    s = compile_ok("{\"const\": null}");
    passes(s, "null");
    fails_once(s, "false", "", "must equal the constant value");
    schema_free(s);
    s = compile_ok("{\"const\": 5}");
    passes(s, "5.0");
    fails_once(s, "5.5", "", "must equal the constant value");
    schema_free(s);
}

Test(schema_enum, definition_is_copied_not_borrowed)
{
    json_t *def = parse("{\"enum\": [\"a\"], \"const\": \"a\"}");
    schema *s = NULL;
    char err[128];
    cr_assert_eq(schema_compile(def, &s, err, sizeof err), 0);
    json_array_clear(json_object_get(def, "enum"));
    json_object_set_new(def, "const", json_string("b"));
    json_decref(def);
    passes(s, "\"a\"");
    json_t *out = check(s, "\"b\"", 2);
    expect_at(out, 0, "", "must equal the constant value");
    expect_at(out, 1, "", "must be one of the allowed values");
    json_decref(out);
    schema_free(s);
}

/* ---- numbers ---- */

Test(schema_number, minimum_maximum_inclusive)
{
    schema *s = compile_ok("{\"minimum\": 1, \"maximum\": 2.5}");
    passes(s, "1");
    passes(s, "2.5");
    passes(s, "\"strings are not numbers\"");
    fails_once(s, "0.999", "", "must be >= 1");
    fails_once(s, "3", "", "must be <= 2.5");
    schema_free(s);
}

Test(schema_number, exclusive_bounds)
{
    schema *s = compile_ok("{\"exclusiveMinimum\": 0, \"exclusiveMaximum\": 0.1}");
    passes(s, "0.05");
    fails_once(s, "0", "", "must be > 0");
    fails_once(s, "-1", "", "must be > 0");
    fails_once(s, "0.1", "", "must be < 0.1");
    schema_free(s);
}

Test(schema_number, large_integers_compare_exactly)
{
    schema *s = compile_ok("{\"maximum\": 9007199254740992}");
    passes(s, "9007199254740992");
    fails_once(s, "9007199254740993", "", "must be <= 9007199254740992");
    schema_free(s);
    s = compile_ok("{\"minimum\": -1.5}");
    passes(s, "-1");
    fails_once(s, "-2", "", "must be >= -1.5");
    schema_free(s);
}

/* ---- strings ---- */

Test(schema_string, length_counts_code_points)
{
    schema *s = compile_ok("{\"type\": \"string\", \"minLength\": 2, \"maxLength\": 4}");
    passes(s, "\"ab\"");
    passes(s, "\"h\\u00e9\\u00e9\\u00e9\"");       /* 4 code points, 7 bytes */
    passes(s, "\"\\ud83d\\ude00\\ud83d\\ude00\""); /* 2 emoji, 8 bytes */
    fails_once(s, "\"\\u00e9\"", "", "must be at least 2 characters long");
    fails_once(s, "\"abcde\"", "", "must be at most 4 characters long");
    schema_free(s);
}

Test(schema_string, pattern_is_unanchored_search)
{
    schema *s = compile_ok("{\"pattern\": \"[0-9]{3}\"}");
    passes(s, "\"abc123def\"");
    passes(s, "42"); /* pattern applies to strings only */
    fails_once(s, "\"ab12\"", "", "must match pattern '[0-9]{3}'");
    schema_free(s);
}

Test(schema_string, pattern_anchored)
{
    schema *s = compile_ok("{\"pattern\": \"^[a-z]+(-[a-z]+)*$\"}");
    passes(s, "\"kebab-case\"");
    fails_once(s, "\"Kebab\"", "", "must match pattern '^[a-z]+(-[a-z]+)*$'");
    fails_once(s, "\"abc\\u0000def\"", "", "must match pattern '^[a-z]+(-[a-z]+)*$'");
    schema_free(s);
}

Test(schema_string, messages_never_contain_the_value)
{
    schema *s = compile_ok("{\"properties\": {\"secret\": {\"type\": \"string\", \"maxLength\": 3,"
                           " \"pattern\": \"^x\", \"format\": \"uuid\", \"enum\": [\"xyz\"]}}}");
    json_t *out = check(s, "{\"secret\": \"hunter2-topsecret\"}", 4);
    for (size_t i = 0; i < 4; i++) {
        json_t *v = json_array_get(out, i);
        cr_assert_str_eq(json_string_value(json_object_get(v, "path")), "/secret");
        cr_assert_null(strstr(json_string_value(json_object_get(v, "message")), "hunter2"));
    }
    expect_at(out, 0, "/secret", "must be one of the allowed values");
    expect_at(out, 1, "/secret", "must be at most 3 characters long");
    expect_at(out, 2, "/secret", "must match pattern '^x'");
    expect_at(out, 3, "/secret", "must be a valid UUID");
    json_decref(out);
    schema_free(s);
}

Test(schema_string, long_pattern_message_is_cut_on_a_character_boundary)
{
    /* 300 bytes of two-byte characters: the message is truncated, but must stay valid UTF-8 */
    char def[700];
    size_t n = (size_t)snprintf(def, sizeof def, "{\"pattern\": \"^a");
    for (int i = 0; i < 150; i++)
        n += (size_t)snprintf(def + n, sizeof def - n, "\u00e9");
    snprintf(def + n, sizeof def - n, "$\"}");
    schema *s = compile_ok(def);
    json_t *out = check(s, "\"x\"", 1);
    const char *msg = json_string_value(json_object_get(json_array_get(out, 0), "message"));
    cr_assert_not_null(msg);
    cr_assert_eq(strncmp(msg, "must match pattern '^a\u00e9", 24), 0, "%s", msg);
    cr_assert_lt(strlen(msg), 256);
    json_decref(out);
    schema_free(s);
}

/* ---- formats ---- */

Test(schema_format, email)
{
    schema *s = compile_ok("{\"format\": \"email\"}");
    const char *good[] = {"\"a@example.com\"", "\"first.last+tag@sub.example.co.uk\"",
                          "\"x_y-z!#$%&'*/=?^`{|}~@a-b.io\"", "\"A1@B2.C3\""};
    const char *bad[] = {"\"\"",
                         "\"plain\"",
                         "\"@example.com\"",
                         "\"a@\"",
                         "\"a@b@c.com\"",
                         "\".a@example.com\"",
                         "\"a.@example.com\"",
                         "\"a..b@example.com\"",
                         "\"a@localhost\"",
                         "\"a@-x.com\"",
                         "\"a@x-.com\"",
                         "\"a@x..com\"",
                         "\"a b@example.com\"",
                         "\"\\u00e9@example.com\"",
                         "\"a@exa_mple.com\"",
                         "\"a@example.com.\""};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        passes(s, good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        fails_once(s, bad[i], "", "must be a valid email address");
    passes(s, "17"); /* formats apply to strings only */
    schema_free(s);
}

Test(schema_format, email_length_limits)
{
    schema *s = compile_ok("{\"format\": \"email\"}");
    char inst[400];
    snprintf(inst, sizeof inst, "\"%064d@example.com\"", 0);
    passes(s, inst);
    snprintf(inst, sizeof inst, "\"%065d@example.com\"", 0);
    fails_once(s, inst, "", "must be a valid email address");
    snprintf(inst, sizeof inst, "\"a@%063d.com\"", 0);
    passes(s, inst);
    snprintf(inst, sizeof inst, "\"a@%064d.com\"", 0);
    fails_once(s, inst, "", "must be a valid email address");
    schema_free(s);
}

Test(schema_format, uuid)
{
    schema *s = compile_ok("{\"format\": \"uuid\"}");
    passes(s, "\"123e4567-e89b-12d3-a456-426614174000\"");
    passes(s, "\"00000000-0000-0000-0000-000000000000\"");
    passes(s, "\"ABCDEF01-2345-6789-ABCD-EF0123456789\"");
    const char *bad[] = {"\"123e4567e89b12d3a456426614174000\"",      "\"123e4567-e89b-12d3-a456-42661417400\"",
                         "\"123e4567-e89b-12d3-a456-4266141740000\"", "\"g23e4567-e89b-12d3-a456-426614174000\"",
                         "\"123e4567-e89b-12d3a-456-426614174000\"",  "\"{123e4567-e89b-12d3-a456-42661417400}\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        fails_once(s, bad[i], "", "must be a valid UUID");
    schema_free(s);
}

Test(schema_format, date_time)
{
    schema *s = compile_ok("{\"format\": \"date-time\"}");
    const char *good[] = {"\"2026-11-27T10:00:00Z\"",          "\"2026-11-27T10:00:00.123Z\"",
                          "\"2026-11-27t10:00:00z\"",          "\"2026-11-27T10:00:00+05:30\"",
                          "\"2026-11-27T10:00:00.5-08:00\"",   "\"2024-02-29T00:00:00Z\"",
                          "\"2000-02-29T23:59:59Z\"",          "\"1998-12-31T23:59:60Z\"",
                          "\"1998-12-31T15:59:60.123-08:00\"", "\"1999-01-01T00:29:60+00:30\""};
    const char *bad[] = {"\"2026-11-27\"",
                         "\"2026-11-27T10:00:00\"",
                         "\"2026-11-27 10:00:00Z\"",
                         "\"2026-13-01T10:00:00Z\"",
                         "\"2026-00-01T10:00:00Z\"",
                         "\"2026-04-31T10:00:00Z\"",
                         "\"2023-02-29T10:00:00Z\"",
                         "\"1900-02-29T10:00:00Z\"",
                         "\"2026-11-27T24:00:00Z\"",
                         "\"2026-11-27T10:60:00Z\"",
                         "\"2026-11-27T10:00:61Z\"",
                         "\"2026-11-27T10:00:60Z\"",
                         "\"2026-11-27T10:00:00.Z\"",
                         "\"2026-11-27T10:00:00+0530\"",
                         "\"2026-11-27T10:00:00+24:00\"",
                         "\"2026-11-27T10:00:00Z \"",
                         "\"26-11-27T10:00:00Z\"",
                         "\"2026-1-27T10:00:00Z\"",
                         "\"2026-11-27T1:00:00Z\"",
                         "\"2026-11-27T10:00:00+05:60\""};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        passes(s, good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        fails_once(s, bad[i], "", "must be a valid RFC 3339 date-time");
    schema_free(s);
}

/* ---- reporting ---- */

Test(schema_report, every_violation_is_reported)
{
    schema *s = compile_ok("{\"type\": \"object\", \"required\": [\"id\", \"email\"],"
                           " \"additionalProperties\": false, \"properties\": {"
                           "  \"id\": {\"type\": \"string\", \"format\": \"uuid\"},"
                           "  \"email\": {\"type\": \"string\", \"format\": \"email\"},"
                           "  \"age\": {\"type\": \"integer\", \"minimum\": 18, \"maximum\": 150},"
                           "  \"tags\": {\"type\": \"array\", \"maxItems\": 2, \"items\": {\"minLength\": 1}}}}");
    json_t *out = check(s, "{\"id\": \"nope\", \"age\": 12.5, \"tags\": [\"a\", \"\", \"c\"], \"x\": 1}", 6);
    expect_at(out, 0, "/email", "required property missing");
    expect_at(out, 1, "/id", "must be a valid UUID");
    expect_at(out, 2, "/age", "expected integer, got number");
    expect_at(out, 3, "/tags", "must have at most 2 items");
    expect_at(out, 4, "/tags/1", "must be at least 1 character long");
    expect_at(out, 5, "/x", "additional property not allowed");
    json_decref(out);
    schema_free(s);
}

Test(schema_report, same_value_several_keywords)
{
    schema *s = compile_ok("{\"type\": \"integer\", \"minimum\": 10, \"exclusiveMinimum\": 20,"
                           " \"enum\": [30]}");
    json_t *out = check(s, "5", 3);
    expect_at(out, 0, "", "must be one of the allowed values");
    expect_at(out, 1, "", "must be >= 10");
    expect_at(out, 2, "", "must be > 20");
    json_decref(out);
    schema_free(s);
}

Test(schema_report, pointer_escaping)
{
    schema *s = compile_ok("{\"properties\": {\"a/b\": {\"properties\": {\"m~n\": {\"type\": \"null\"}}},"
                           " \"~/\": {\"items\": {\"required\": [\"x/~y\"]}}}}");
    fails_once(s, "{\"a/b\": {\"m~n\": 1}}", "/a~1b/m~0n", "expected null, got integer");
    fails_once(s, "{\"~/\": [{}]}", "/~0~1/0/x~1~0y", "required property missing");
    schema_free(s);
}

Test(schema_report, nul_in_property_name)
{
    /* the parser refuses NUL in keys, but callers may build such objects with json_object_setn */
    json_t *def = parse("{\"additionalProperties\": false, \"properties\": {}}");
    json_object_setn_new(json_object_get(def, "properties"), "a\0b", 3, parse("{\"type\": \"string\"}"));
    schema *s = NULL;
    char err[128];
    cr_assert_eq(schema_compile(def, &s, err, sizeof err), 0, "%s", err);
    json_decref(def);

    json_t *inst = json_object();
    json_object_setn_new(inst, "a\0b", 3, json_string("ok"));
    cr_assert_eq(schema_validate(s, inst, NULL), 0);
    json_object_setn_new(inst, "a\0b", 3, json_integer(1));
    json_object_set_new(inst, "a", json_integer(2));
    json_t *out = json_array();
    cr_assert_eq(schema_validate(s, inst, out), 2);
    json_t *path = json_object_get(json_array_get(out, 0), "path");
    cr_assert_eq(json_string_length(path), 4);
    cr_assert_eq(memcmp(json_string_value(path), "/a\0b", 4), 0);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(out, 0), "message")),
                     "expected string, got integer");
    expect_at(out, 1, "/a", "additional property not allowed");
    json_decref(out);
    json_decref(inst);
    schema_free(s);
}

Test(schema_report, count_only_and_appends_to_existing)
{
    schema *s = compile_ok("{\"type\": \"string\"}");
    json_t *inst = parse("1");
    cr_assert_eq(schema_validate(s, inst, NULL), 1);
    json_t *out = parse("[\"kept\"]");
    cr_assert_eq(schema_validate(s, inst, out), 1);
    cr_assert_eq(json_array_size(out), 2);
    cr_assert_str_eq(json_string_value(json_array_get(out, 0)), "kept");
    expect_at(out, 1, "", "expected string, got integer");
    json_decref(out);
    json_decref(inst);
    schema_free(s);
}

Test(schema_report, instance_deeper_than_schema_is_not_descended)
{
    schema *s = compile_ok("{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"array\"}}}");
    /* 1000 levels below /a: never visited, so no recursion cost */
    char text[4100];
    size_t n = 0;
    n += (size_t)snprintf(text, sizeof text, "{\"a\": ");
    for (int i = 0; i < 1000; i++)
        text[n++] = '[';
    for (int i = 0; i < 1000; i++)
        text[n++] = ']';
    text[n++] = '}';
    text[n] = '\0';
    passes(s, text);
    schema_free(s);
}

/* ---- compile refusals ---- */

Test(schema_compile, accepts_full_vocabulary_and_annotations)
{
    schema *s =
        compile_ok("{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\", \"$id\": \"x\","
                   " \"$comment\": \"c\", \"title\": \"t\", \"description\": \"d\", \"default\": {},"
                   " \"examples\": [{}], \"type\": \"object\", \"required\": [], \"additionalProperties\": true,"
                   " \"properties\": {\"s\": {\"type\": \"string\", \"minLength\": 0, \"maxLength\": 10.0,"
                   " \"pattern\": \"^a\", \"format\": \"email\", \"default\": \"junk is fine\"},"
                   " \"n\": {\"type\": [\"number\", \"null\"], \"minimum\": 0, \"maximum\": 1,"
                   " \"exclusiveMinimum\": -1, \"exclusiveMaximum\": 2, \"enum\": [0, 1, null], \"const\": 1},"
                   " \"l\": {\"type\": \"array\", \"items\": {}, \"minItems\": 0, \"maxItems\": 3}}}");
    passes(s, "{\"s\": \"a@b.co\", \"n\": 1, \"l\": []}");
    schema_free(s);
}

Test(schema_compile, unknown_keywords_with_pointer)
{
    compile_fails("{\"minimun\": 1}", "(root): unknown keyword 'minimun'");
    compile_fails("{\"properties\": {\"age\": {\"type\": \"integer\", \"minimun\": 1}}}",
                  "/properties/age: unknown keyword 'minimun'");
    compile_fails("{\"items\": {\"items\": {\"oneOf\": []}}}", "/items/items: unknown keyword 'oneOf'");
    compile_fails("{\"properties\": {\"a/b~\": {\"$ref\": \"#\"}}}", "/properties/a~1b~0: unknown keyword '$ref'");
    compile_fails("{\"patternProperties\": {}}", "(root): unknown keyword 'patternProperties'");
}

Test(schema_compile, root_and_subschemas_must_be_objects)
{
    compile_fails("true", "(root): expected a schema object");
    compile_fails("[]", "(root): expected a schema object");
    compile_fails("{\"properties\": {\"a\": true}}", "/properties/a: expected a schema object");
    compile_fails("{\"items\": [{}]}", "/items: expected a schema object");
    compile_fails("{\"items\": false}", "/items: expected a schema object");
}

Test(schema_compile, type_values)
{
    compile_fails("{\"type\": 1}", "/type: expected a type name or a non-empty array of type names");
    compile_fails("{\"type\": []}", "/type: expected a type name or a non-empty array of type names");
    compile_fails("{\"type\": [\"string\", 1]}", "/type: expected a type name or a non-empty array of type names");
    compile_fails("{\"type\": \"strin\"}", "/type: unknown type 'strin'");
    compile_fails("{\"type\": [\"null\", \"float\"]}", "/type: unknown type 'float'");
    compile_fails("{\"type\": [\"null\", \"null\"]}", "/type: duplicate type 'null'");
}

Test(schema_compile, object_keyword_values)
{
    compile_fails("{\"properties\": []}", "/properties: expected an object mapping property names to schemas");
    compile_fails("{\"required\": \"a\"}", "/required: expected an array of unique property names");
    compile_fails("{\"required\": [\"a\", 1]}", "/required: expected an array of unique property names");
    compile_fails("{\"required\": [\"a\", \"a\"]}", "/required: duplicate property name 'a'");
    compile_fails("{\"additionalProperties\": {}}",
                  "/additionalProperties: expected a boolean (schemas are not supported here)");
    compile_fails("{\"additionalProperties\": \"false\"}",
                  "/additionalProperties: expected a boolean (schemas are not supported here)");
}

Test(schema_compile, enum_values)
{
    compile_fails("{\"enum\": []}", "/enum: expected a non-empty array");
    compile_fails("{\"enum\": \"a\"}", "/enum: expected a non-empty array");
}

Test(schema_compile, numeric_keyword_values)
{
    compile_fails("{\"minimum\": \"1\"}", "/minimum: expected a number");
    compile_fails("{\"maximum\": null}", "/maximum: expected a number");
    compile_fails("{\"exclusiveMinimum\": true}", "/exclusiveMinimum: expected a number");
    compile_fails("{\"exclusiveMaximum\": [1]}", "/exclusiveMaximum: expected a number");
    compile_fails("{\"minLength\": -1}", "/minLength: expected a non-negative integer");
    compile_fails("{\"maxLength\": 1.5}", "/maxLength: expected a non-negative integer");
    compile_fails("{\"minItems\": \"2\"}", "/minItems: expected a non-negative integer");
    compile_fails("{\"maxItems\": -0.5}", "/maxItems: expected a non-negative integer");
    compile_fails("{\"properties\": {\"a\": {\"minLength\": true}}}",
                  "/properties/a/minLength: expected a non-negative integer");
}

Test(schema_compile, contradictory_bounds)
{
    compile_fails("{\"minLength\": 3, \"maxLength\": 2}", "(root): minLength is greater than maxLength");
    compile_fails("{\"items\": {\"minItems\": 3, \"maxItems\": 2}}", "/items: minItems is greater than maxItems");
    compile_fails("{\"minimum\": 2.5, \"maximum\": 2}", "(root): minimum is greater than maximum");
    schema *s = compile_ok("{\"minimum\": 2, \"maximum\": 2, \"minLength\": 1, \"maxLength\": 1}");
    passes(s, "2");
    schema_free(s);
}

Test(schema_compile, pattern_values)
{
    compile_fails("{\"pattern\": 5}", "/pattern: expected a string");
    json_t *def = parse("{\"properties\": {\"p\": {\"pattern\": \"(unclosed\"}}}");
    schema *s = NULL;
    char err[256];
    cr_assert_eq(schema_compile(def, &s, err, sizeof err), -1);
    cr_assert_eq(strncmp(err, "/properties/p/pattern: invalid regular expression (", 51), 0, "%s", err);
    json_decref(def);
    compile_fails("{\"pattern\": \"(a+)\\\\1\"}",
                  "/pattern: invalid regular expression (back-references are not supported)");
    compile_fails("{\"pattern\": \"a\\u0000b\"}", "/pattern: invalid regular expression (contains a NUL character)");
}

Test(schema_compile, pattern_backslash_digit_inside_brackets_is_literal)
{
    schema *s = compile_ok("{\"pattern\": \"^[\\\\1[:digit:]]+$\"}");
    passes(s, "\"1\\\\19\"");
    fails_once(s, "\"a\"", "", "must match pattern '^[\\1[:digit:]]+$'");
    schema_free(s);
    s = compile_ok("{\"pattern\": \"\\\\\\\\1\"}"); /* pattern \\1: escaped backslash, then 1 */
    passes(s, "\"x\\\\1\"");
    fails_once(s, "\"x1\"", "", "must match pattern '\\\\1'");
    schema_free(s);
}

Test(schema_compile, format_values)
{
    compile_fails("{\"format\": \"ipv4\"}", "/format: unsupported format 'ipv4' (supported: email, uuid, date-time)");
    compile_fails("{\"format\": 1}", "/format: expected a string");
}

/* Builds {"items": {"items": ... {} ...}} with levels nested item schemas below the root. */
static char *nested_items(int levels)
{
    size_t cap = (size_t)levels * 12 + 8, n = 0;
    char *t = malloc(cap);
    cr_assert_not_null(t);
    for (int i = 0; i < levels; i++)
        n += (size_t)snprintf(t + n, cap - n, "{\"items\": ");
    n += (size_t)snprintf(t + n, cap - n, "{}");
    for (int i = 0; i < levels; i++)
        t[n++] = '}';
    t[n] = '\0';
    return t;
}

Test(schema_compile, depth_limit)
{
    char *ok = nested_items(64);
    schema *s = compile_ok(ok);
    free(ok);
    schema_free(s);

    char *deep = nested_items(65);
    json_t *def = parse(deep);
    free(deep);
    char err[1024];
    s = NULL;
    cr_assert_eq(schema_compile(def, &s, err, sizeof err), -1);
    cr_assert_null(s);
    cr_assert_not_null(strstr(err, ": schema nested deeper than 64 levels"), "%s", err);
    cr_assert_eq(strncmp(err, "/items/items/", 13), 0, "%s", err);
    json_decref(def);
}

Test(schema_compile, error_buffer_may_be_absent_or_short)
{
    json_t *def = parse("{\"properties\": {\"a\": {\"nope\": 1}}}");
    schema *s = NULL;
    cr_assert_eq(schema_compile(def, &s, NULL, 0), -1);
    char err[8];
    cr_assert_eq(schema_compile(def, &s, err, sizeof err), -1);
    cr_assert_str_eq(err, "/proper");
    json_decref(def);
}

/* ---- threads ---- */

typedef struct {
    const schema *s;
    json_t *good, *bad;
    int errors;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    for (int i = 0; i < 2000; i++) {
        json_t *out = json_array();
        if (schema_validate(a->s, a->good, NULL) != 0 || schema_validate(a->s, a->bad, out) != 3 ||
            json_array_size(out) != 3)
            a->errors++;
        json_decref(out);
    }
    return NULL;
}

Test(schema_threads, concurrent_validation_of_one_schema)
{
    schema *s = compile_ok("{\"type\": \"object\", \"required\": [\"id\"], \"properties\": {"
                           " \"id\": {\"type\": \"string\", \"pattern\": \"^[a-f0-9-]+$\", \"format\": \"uuid\"},"
                           " \"n\": {\"enum\": [1, 2, 3]}}}");
    enum { NT = 8 };
    pthread_t th[NT];
    worker_arg args[NT];
    for (int i = 0; i < NT; i++) {
        /* per-thread instances: jansson reference counts are not shared between threads */
        args[i] = (worker_arg){.s = s,
                               .good = parse("{\"id\": \"123e4567-e89b-12d3-a456-426614174000\", \"n\": 2}"),
                               .bad = parse("{\"id\": \"XYZ\", \"n\": 4}")};
        cr_assert_eq(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(args[i].errors, 0);
        json_decref(args[i].good);
        json_decref(args[i].bad);
    }
    schema_free(s);
}

/* Found by fuzzing (tests/fuzz/fuzz_schema.c): glibc's regcomp copies a repeated subtree once per
 * repeat, so stacked or nested repeats took gigabytes (28 stacked '+': over 2 GiB) and seconds at
 * load. Such patterns are refused before regcomp; the timeout turns a blow-up into a failure. */
Test(schema_string, pattern_whose_repeats_multiply_is_refused, .timeout = 20)
{
    const char *why = "/pattern: regular expression too costly to compile (its repeats multiply past 10000 copies; "
                      "at most 64 nested groups)";
    compile_fails("{\"pattern\": \"^[a-z]++++++++++++++++++++++++++++$\"}", why);
    compile_fails(
        "{\"pattern\": \"(((((((((((((((((((((((((((((a+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+\"}",
        why);
    compile_fails("{\"pattern\": \"(a{0,1000}){0,1000}\"}", why);
    compile_fails("{\"pattern\": \"x{0,32767}\"}", why);
    compile_fails("{\"properties\": {\"p\": {\"pattern\": \"(a|b{2,200}){1,100}\"}}}",
                  "/properties/p/pattern: regular expression too costly to compile (its repeats multiply past 10000 "
                  "copies; at most 64 nested groups)");
}

/* Found by fuzzing: copies of a subtree that can match the empty string cost regcomp the square of
 * the copies (epsilon closures over every copy): "a????????++++++" took 10 s, the fuzzer's own input
 * over 15 s, nested "(a?)+" 0.4 s at ten levels and 16 times more per two levels. */
Test(schema_string, pattern_repeating_an_empty_match_is_refused, .timeout = 20)
{
    const char *why = "/pattern: regular expression too costly to compile (its repeats multiply past 10000 copies; "
                      "at most 64 nested groups)";
    compile_fails("{\"pattern\": \"[^ a-z]}}}}}}????????????????+++++++++++]}}}}}}}}}}}}}}}}}}}}}}}}}+$\"}", why);
    compile_fails("{\"pattern\": \"a????????++++++\"}", why);
    compile_fails("{\"pattern\": \"a??++++\"}", why);
    compile_fails("{\"pattern\": \"[^ a-z]}}}}???????????????????????????????????+++}}}}}}}}+$\"}", why);
    compile_fails("{\"pattern\": \"((((((((((a?)+)+)+)+)+)+)+)+)+)+\"}", why);
    compile_fails("{\"pattern\": \"((((((x|)+)+)+)+)+)+\"}", why);   /* an empty alternative */
    compile_fails("{\"pattern\": \"((((((b{0,3})+)+)+)+)+)+\"}", why); /* {0,n} */
    compile_fails("{\"pattern\": \"((((((a?b*)+)+)+)+)+)+\"}", why);   /* every item optional */
    compile_fails("{\"pattern\": \"((((((^)+)+)+)+)+)+\"}", why);      /* zero width */
}

/* Found by fuzzing in CI: inside a group the estimate overflowed to inf, inf - inf gave NaN, and the
 * group's "c > 1 ? c : 1" turned NaN into 1, so "(b}}}}}}????????????????+++++++++)+" passed as cheap
 * and regcomp ran for minutes. The estimate now stops as soon as it passes the bound. */
Test(schema_string, pattern_whose_estimate_overflows_inside_a_group_is_refused, .timeout = 20)
{
    const char *why = "/pattern: regular expression too costly to compile (its repeats multiply past 10000 copies; "
                      "at most 64 nested groups)";
    compile_fails("{\"pattern\": \"(b}}}}}}????????????????+++++++++)+\"}", why);
    compile_fails("{\"pattern\": \"[^ a-z]}}}}}}?bbbbbbbbbbbb}}y}}}}}}}-z]}}}}bb}}}}bbbbbbb(b}}}}}}????????????????"
                  "+++++++++)+]}\"}",
                  why);
}

/* Ordinary patterns, bounded repeats included, still compile. */
Test(schema_string, pattern_with_reasonable_repeats_compiles)
{
    const char *ok[] = {"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
                        "^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,255}\\\\.[A-Za-z]{2,63}$",
                        "^(\\\\+|00)?[0-9]{6,15}$",
                        "^[a-z]+(-[a-z]+)*$",
                        "((a{1,100}){1,100})",
                        "a+b+c+d+",
                        "(a?b?c?){100}",
                        "^(\\\\s*,\\\\s*[a-z]+)+$",
                        "((((((ab?)+)+)+)+)+)+",
                        "(a*)+",
                        "[[:alpha:]{}+*]{3}\\\\{x"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char def[512];
        snprintf(def, sizeof def, "{\"pattern\": \"%s\"}", ok[i]);
        schema_free(compile_ok(def));
    }
}

/* schema_validate_max describes only the first max violations and still counts them all. */
Test(schema_validate, max_caps_the_described_violations)
{
    schema *s = compile_ok("{\"type\": \"array\", \"items\": {\"type\": \"string\"}, \"maxItems\": 2}");
    json_t *inst = parse("[1, 2, 3, 4, 5]");
    json_t *out = json_array();
    cr_assert_eq(schema_validate_max(s, inst, out, 3), 6);
    cr_assert_eq(json_array_size(out), 3);
    expect_at(out, 0, "", "must have at most 2 items");
    expect_at(out, 2, "/1", "expected string, got integer");
    json_array_clear(out);
    cr_assert_eq(schema_validate_max(s, inst, out, 0), 6);
    cr_assert_eq(json_array_size(out), 0);
    cr_assert_eq(schema_validate_max(s, inst, NULL, 1), 6);
    json_decref(out);
    json_decref(inst);
    schema_free(s);
}
