/* SwitchNode: routes its input_data to one output port (the SDK's Switch).
 *
 * The tested value is input_data[condition_field] (a dotted path; a missing path reads as null), or
 * input_data itself without condition_field. Two modes:
 *   boolean  `tested <operator> value` picks `true_output` or `false_output`;
 *   cases    the first case c of the literal `cases` list with `tested <operator> c` (operator
 *            defaults to ==) picks `<case_prefix><c>`; `<default_field>` always carries the input
 *            too, matched or not (the SDK's rule: "default case always gets the input data").
 * Over a list of rows (condition_field set, the first element an object) the rows are grouped per
 * case instead, in either mode, as the SDK does: every case port gets its rows ([] for none),
 * `<default_field>` all of them, condition_result the cases that had rows (see switch_run_groups);
 * in boolean mode there are no cases, so only the default port and [] come out.
 * Every port of the mode is in the output, as in the SDK's results: the ports not taken hold null.
 * A null port of a switch counts as absent (node_type.null_port_absent), so the engine skips the
 * branches behind it; `condition_result` (the boolean, or the matched case or null) is always
 * present.
 *
 * Case ports are named at load, so `cases`, `case_prefix` and `default_field` must be literal and
 * run() reads them from the compiled form, not from the inputs. A case value is named like the SDK
 * names it: Python's str() (True, None, 1.5) with ' ', '-', '.', ':', '/' replaced by '_', which also
 * keeps '.' out of port names (a connection reads "port.path"). Everything else (operator, value,
 * condition_field) may be a template and is read from the inputs at each run.
 *
 * Comparison is Python's (pycmp.c, shared with FilterNode): == is deep equality in which 1, 1.0 and
 * true are equal (a bool is a number in Python); > < >= <= compare two numbers (booleans as 0 and 1)
 * numerically or two strings bytewise (UTF-8 order) and are false for any other pair (Python would
 * raise; the SDK's switch turns that into false), so a missing field routes to false_output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/node.h"
#include "kailash/util.h"
#include "pycmp.h"

enum switch_op {
    SWITCH_EQ,
    SWITCH_NE,
    SWITCH_GT,
    SWITCH_LT,
    SWITCH_GE,
    SWITCH_LE,
    SWITCH_IN,
    SWITCH_CONTAINS,
    SWITCH_IS_NULL,
    SWITCH_IS_NOT_NULL,
};

static const char *const switch_op_names[] = {
    "==", "!=", ">", "<", ">=", "<=", "in", "contains", "is_null", "is_not_null"};
#define SWITCH_OP_COUNT (sizeof switch_op_names / sizeof switch_op_names[0])
#define SWITCH_OP_EXPECTED "expected one of == != > < >= <= in contains is_null is_not_null"

static const char *const switch_keys[] = {"input_data", "condition_field", "operator",      "value",
                                          "cases",      "case_prefix",     "default_field", NULL};
static const char *const switch_ports[] = {"input_data", NULL};
/* The SDK's input_data: workflow_alias "data", auto_map_from data, input, items. */
static const node_alias switch_aliases[] = {{"data", "input_data"}, {"input", "input_data"}, {"items", "input_data"},
                                            {NULL, NULL}};

typedef struct switch_conf {
    json_t *cases;     /* owned deep copy of the literal cases, or NULL in boolean mode */
    char **case_ports; /* owned: case_ports[i] names the port of case i */
    size_t n_cases;
    char *default_port; /* owned; NULL in boolean mode */
} switch_conf;

/* The operator called name, or -1. */
static int switch_op_parse(const char *name)
{
    for (size_t i = 0; i < SWITCH_OP_COUNT; i++)
        if (strcmp(switch_op_names[i], name) == 0)
            return (int)i;
    return -1;
}

/* NULL when v may be the right-hand side of op, else what op expects. */
static const char *switch_value_problem(int op, json_t *v)
{
    switch (op) {
    case SWITCH_GT:
    case SWITCH_LT:
    case SWITCH_GE:
    case SWITCH_LE:
        return json_is_number(v) || json_is_string(v) ? NULL : "expected a number or a string";
    case SWITCH_IN:
        return json_is_array(v) || json_is_string(v) ? NULL : "expected an array or a string";
    default:
        return NULL;
    }
}

/* 1 when string s contains string part (both JSON strings, may hold NUL bytes). */
static int switch_substring(json_t *s, json_t *part)
{
    return memmem(json_string_value(s), json_string_length(s), json_string_value(part), json_string_length(part)) !=
           NULL;
}

/* 1 when array arr holds an element equal to v. */
static int switch_array_has(json_t *arr, json_t *v)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        if (pycmp_equal(e, v))
            return 1;
    }
    return 0;
}

/* Evaluates `tested <op> v` (both borrowed, never NULL). */
static int switch_test(int op, json_t *tested, json_t *v)
{
    int c;
    switch (op) {
    case SWITCH_EQ:
        return pycmp_equal(tested, v);
    case SWITCH_NE:
        return !pycmp_equal(tested, v);
    case SWITCH_GT:
        return pycmp_order(tested, v, &c) == 0 && c > 0;
    case SWITCH_LT:
        return pycmp_order(tested, v, &c) == 0 && c < 0;
    case SWITCH_GE:
        return pycmp_order(tested, v, &c) == 0 && c >= 0;
    case SWITCH_LE:
        return pycmp_order(tested, v, &c) == 0 && c <= 0;
    case SWITCH_IN:
        if (json_is_array(v))
            return switch_array_has(v, tested);
        return json_is_string(v) && json_is_string(tested) && switch_substring(v, tested);
    case SWITCH_CONTAINS:
        if (json_is_array(tested))
            return switch_array_has(tested, v);
        return json_is_string(tested) && json_is_string(v) && switch_substring(tested, v);
    case SWITCH_IS_NULL:
        return json_is_null(tested);
    default:
        return !json_is_null(tested);
    }
}

/* The SDK's name for case value v (a scalar): str(v) with ' ', '-', '.', ':', '/' as '_'. */
static void switch_case_name(json_t *v, char *out, size_t outlen)
{
    if (json_is_string(v))
        snprintf(out, outlen, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, outlen, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        pycmp_real_repr(json_real_value(v), out, outlen);
    else if (json_is_boolean(v))
        snprintf(out, outlen, "%s", json_is_true(v) ? "True" : "False");
    else
        snprintf(out, outlen, "None");
    for (char *c = out; *c; c++)
        if (strchr(" -.:/", *c))
            *c = '_';
}

static void switch_conf_free(void *compiled)
{
    switch_conf *sc = compiled;
    if (!sc)
        return;
    for (size_t i = 0; i < sc->n_cases; i++)
        free(sc->case_ports[i]);
    free(sc->case_ports);
    free(sc->default_port);
    json_decref(sc->cases);
    free(sc);
}

/* Reads an optional literal string key holding a port name part; *out borrows from config. */
static int switch_literal_name(json_t *config, const char *key, const char *dflt, const char **out, char *err,
                               size_t errlen)
{
    json_t *v = json_object_get(config, key);
    *out = dflt;
    if (!v)
        return 0;
    if (!json_is_string(v) || tmpl_string_has_expr(json_string_value(v)))
        return util_err(err, errlen, "config.%s: expected a literal string (ports are named at load)", key);
    if (strchr(json_string_value(v), '.') || json_string_length(v) != strlen(json_string_value(v)))
        return util_err(err, errlen, "config.%s: must not contain '.' or NUL", key);
    *out = json_string_value(v);
    return 0;
}

/* Checks one literal case value and names its port into sc->case_ports[i]. */
static int switch_compile_case(switch_conf *sc, size_t i, const char *prefix, int op, char *err, size_t errlen)
{
    json_t *c = json_array_get(sc->cases, i);
    if (json_is_object(c) || json_is_array(c))
        return util_err(err, errlen, "config.cases[%zu]: expected a string, number, boolean or null", i);
    if (tmpl_value_has_expr(c))
        return util_err(err, errlen, "config.cases[%zu]: must be literal (ports are named at load)", i);
    if (json_is_string(c) && json_string_length(c) != strlen(json_string_value(c)))
        return util_err(err, errlen, "config.cases[%zu]: must not contain NUL", i);
    const char *problem = op >= 0 ? switch_value_problem(op, c) : NULL;
    if (problem)
        return util_err(err, errlen, "config.cases[%zu]: %s for operator '%s'", i, problem, switch_op_names[op]);
    char name[512];
    switch_case_name(c, name, sizeof name);
    size_t len = strlen(prefix) + strlen(name) + 1;
    if (!(sc->case_ports[i] = malloc(len)))
        return util_err(err, errlen, "out of memory");
    snprintf(sc->case_ports[i], len, "%s%s", prefix, name);
    if (!*sc->case_ports[i])
        return util_err(err, errlen, "config.cases[%zu]: gives an empty port name", i);
    return 0;
}

/* Refuses two cases (or a case and default/condition_result) that share a port name. */
static int switch_check_unique(const switch_conf *sc, char *err, size_t errlen)
{
    for (size_t i = 0; i < sc->n_cases; i++) {
        const char *p = sc->case_ports[i];
        if (strcmp(p, sc->default_port) == 0 || strcmp(p, "condition_result") == 0)
            return util_err(err, errlen, "config.cases[%zu]: port '%s' is already taken", i, p);
        for (size_t j = 0; j < i; j++)
            if (strcmp(p, sc->case_ports[j]) == 0)
                return util_err(err, errlen, "config.cases[%zu]: port '%s' is also the port of cases[%zu]", i, p, j);
    }
    if (strcmp(sc->default_port, "condition_result") == 0)
        return util_err(err, errlen, "config.default_field: 'condition_result' is already a port");
    return 0;
}

/* Cases mode: copies the literal cases and names every port. */
static int switch_compile_cases(switch_conf *sc, json_t *config, int op, char *err, size_t errlen)
{
    json_t *cases = json_object_get(config, "cases");
    const char *prefix, *dflt;
    if (!json_is_array(cases))
        return util_err(err, errlen, "config.cases: expected an array of literal values");
    if (switch_literal_name(config, "case_prefix", "case_", &prefix, err, errlen) != 0 ||
        switch_literal_name(config, "default_field", "default", &dflt, err, errlen) != 0)
        return -1;
    if (!*dflt)
        return util_err(err, errlen, "config.default_field: must not be empty");
    sc->cases = json_deep_copy(cases);
    sc->case_ports = calloc(json_array_size(cases), sizeof *sc->case_ports);
    sc->default_port = strdup(dflt);
    if (!sc->cases || !sc->case_ports || !sc->default_port)
        return util_err(err, errlen, "out of memory");
    sc->n_cases = json_array_size(cases);
    for (size_t i = 0; i < sc->n_cases; i++)
        if (switch_compile_case(sc, i, prefix, op, err, errlen) != 0)
            return -1;
    return switch_check_unique(sc, err, errlen);
}

/* Cases mode is on when `cases` holds something: like the SDK, null and [] mean boolean mode. */
static int switch_has_cases(json_t *config)
{
    json_t *cases = json_object_get(config, "cases");
    return cases && !json_is_null(cases) && !(json_is_array(cases) && json_array_size(cases) == 0);
}

/* Boolean mode: a literal value must suit a literal operator. */
static int switch_compile_value(json_t *config, int op, char *err, size_t errlen)
{
    json_t *value = json_object_get(config, "value");
    if (!value || op < 0 || tmpl_value_has_expr(value))
        return 0;
    const char *problem = switch_value_problem(op, value);
    if (problem)
        return util_err(err, errlen, "config.value: %s for operator '%s'", problem, switch_op_names[op]);
    return 0;
}

/* Boolean mode: the literal value, and the default port a list of rows goes to (switch_run_groups). */
static int switch_compile_bool(switch_conf *sc, json_t *config, int op, char *err, size_t errlen)
{
    const char *dflt;
    if (switch_compile_value(config, op, err, errlen) != 0 ||
        switch_literal_name(config, "default_field", "default", &dflt, err, errlen) != 0)
        return -1;
    if (!*dflt || strcmp(dflt, "condition_result") == 0 || strcmp(dflt, "true_output") == 0 ||
        strcmp(dflt, "false_output") == 0)
        return util_err(err, errlen, "config.default_field: '%s' is not a free port name", dflt);
    return (sc->default_port = strdup(dflt)) ? 0 : util_err(err, errlen, "out of memory");
}

/* The literal operator (default ==) into *op; -2 when it is a template (known only at run). */
static int switch_compile_op(json_t *config, int *op, char *err, size_t errlen)
{
    json_t *v = json_object_get(config, "operator");
    *op = SWITCH_EQ;
    if (!v)
        return 0;
    if (tmpl_value_has_expr(v)) {
        *op = -2;
        return 0;
    }
    if (!json_is_string(v) || (*op = switch_op_parse(json_string_value(v))) < 0)
        return util_err(err, errlen, "config.operator: " SWITCH_OP_EXPECTED);
    return 0;
}

static int switch_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    (void)env;
    *compiled = NULL;
    int op;
    if (switch_compile_op(config, &op, err, errlen) != 0)
        return -1;
    json_t *field = json_object_get(config, "condition_field");
    if (field && !json_is_string(field) && !json_is_null(field))
        return util_err(err, errlen, "config.condition_field: expected a string");
    switch_conf *sc = calloc(1, sizeof *sc);
    if (!sc)
        return util_err(err, errlen, "out of memory");
    int rc = switch_has_cases(config) ? switch_compile_cases(sc, config, op, err, errlen)
                                      : switch_compile_bool(sc, config, op, err, errlen);
    if (rc != 0) {
        switch_conf_free(sc);
        return -1;
    }
    *compiled = sc;
    return 0;
}

static int switch_has_output(const void *compiled, const char *port)
{
    const switch_conf *sc = compiled;
    if (strcmp(port, "condition_result") == 0)
        return 1;
    if (sc && strcmp(port, sc->default_port) == 0)
        return 1;
    if (!sc || !sc->cases)
        return strcmp(port, "true_output") == 0 || strcmp(port, "false_output") == 0;
    for (size_t i = 0; i < sc->n_cases; i++)
        if (strcmp(port, sc->case_ports[i]) == 0)
            return 1;
    return 0;
}

/* The run's operator from the inputs (default ==), or -1 with err filled. */
static int switch_run_op(json_t *inputs, node_error *err)
{
    json_t *v = json_object_get(inputs, "operator");
    int op = SWITCH_EQ;
    if (v && (!json_is_string(v) || (op = switch_op_parse(json_string_value(v))) < 0))
        return node_fail(err, "internal", "operator: " SWITCH_OP_EXPECTED);
    return op;
}

/* The tested value (borrowed; json null when the path is missing), or NULL with err filled. */
static json_t *switch_run_tested(json_t *inputs, json_t *data, node_error *err)
{
    json_t *field = json_object_get(inputs, "condition_field");
    if (!field || json_is_null(field) || (json_is_string(field) && json_string_length(field) == 0))
        return data;
    if (!json_is_string(field)) {
        node_fail(err, "internal", "condition_field: expected a string");
        return NULL;
    }
    json_t *v = util_json_path(data, json_string_value(field));
    return v ? v : json_null();
}

/* Boolean mode: fills out with the taken port and condition_result. */
static int switch_run_bool(int op, json_t *inputs, json_t *data, json_t *tested, json_t *out, node_error *err)
{
    json_t *value = json_object_get(inputs, "value");
    if (!value)
        value = json_null();
    const char *problem = switch_value_problem(op, value);
    if (problem)
        return node_fail(err, "internal", "value: %s for operator '%s'", problem, switch_op_names[op]);
    int r = switch_test(op, tested, value);
    if (json_object_set(out, "true_output", r ? data : json_null()) != 0 ||
        json_object_set(out, "false_output", r ? json_null() : data) != 0 ||
        json_object_set_new(out, "condition_result", json_boolean(r)) != 0)
        return node_fail(err, "internal", "out of memory");
    return 0;
}

/* Cases mode: fills out with the first matching case's port (the others null), the default port and
 * condition_result. */
static int switch_run_cases(const switch_conf *sc, int op, json_t *data, json_t *tested, json_t *out, node_error *err)
{
    const char *port = sc->default_port;
    json_t *matched = json_null();
    for (size_t i = 0; i < sc->n_cases; i++)
        if (json_object_set(out, sc->case_ports[i], json_null()) != 0)
            return node_fail(err, "internal", "out of memory");
    for (size_t i = 0; i < sc->n_cases; i++) {
        json_t *c = json_array_get(sc->cases, i);
        const char *problem = switch_value_problem(op, c);
        if (problem)
            return node_fail(err, "internal", "cases[%zu]: %s for operator '%s'", i, problem, switch_op_names[op]);
        if (switch_test(op, tested, c)) {
            port = sc->case_ports[i];
            matched = c;
            break;
        }
    }
    /* json_object_set takes its own references; the compiled cases stay untouched. The default port
     * always carries the input, as in the SDK ("always present"). */
    if (json_object_set(out, sc->default_port, data) != 0 || json_object_set(out, port, data) != 0 ||
        json_object_set(out, "condition_result", matched) != 0)
        return node_fail(err, "internal", "out of memory");
    return 0;
}

/* Appends rows's elements grouped by the value at field (Python's ==: 1, 1.0 and true alike; a
 * missing value, or a row that is not an object, reads as null) to groups: key string -> array,
 * first-seen order. 0, or -1 when memory runs out. */
static int switch_group(json_t *rows, const char *field, json_t *groups)
{
    buf ks = {0};
    int rc = 0;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        json_t *v = json_is_object(row) ? util_json_path(row, field) : NULL;
        ks.len = 0;
        if ((rc = util_json_py_key(v ? v : json_null(), &ks)) != 0)
            break;
        json_t *g = json_object_getn(groups, ks.data, ks.len);
        if (!g && (!(g = json_array()) || json_object_setn_new(groups, ks.data, ks.len, g) != 0)) {
            rc = -1; /* setn_new consumed g */
            break;
        }
        if ((rc = json_array_append(g, row)) != 0)
            break;
    }
    buf_free(&ks);
    return rc;
}

/* A list of rows, as the SDK's list grouping: each case port gets the rows whose
 * condition_field equals the case ([] when none), default every row in group order, and
 * condition_result the cases that had rows (in cases order). The operator plays no part there. */
static int switch_run_groups(const switch_conf *sc, const char *field, json_t *rows, json_t *out, node_error *err)
{
    json_t *groups = json_object(), *all = json_array(), *matched = json_array();
    int rc = groups && all && matched ? switch_group(rows, field, groups) : -1;
    const char *k;
    json_t *g;
    json_object_foreach(groups, k, g)
    {
        if (rc == 0)
            rc = json_array_extend(all, g); /* jansson keeps insertion order: first-seen groups first */
    }
    buf ks = {0};
    for (size_t i = 0; rc == 0 && i < sc->n_cases; i++) {
        json_t *c = json_array_get(sc->cases, i);
        ks.len = 0;
        if ((rc = util_json_py_key(c, &ks)) != 0)
            break;
        g = json_object_getn(groups, ks.data, ks.len);
        rc = g ? json_object_set(out, sc->case_ports[i], g) : json_object_set_new(out, sc->case_ports[i], json_array());
        if (rc == 0 && g)
            rc = json_array_append(matched, c);
    }
    buf_free(&ks);
    if (rc == 0)
        rc = json_object_set(out, sc->default_port, all) || json_object_set(out, "condition_result", matched);
    json_decref(groups);
    json_decref(all);
    json_decref(matched);
    return rc == 0 ? 0 : node_fail(err, "internal", "out of memory");
}

/* The SDK groups a list by condition_field when its first element is an object. */
static const char *switch_rows_field(json_t *inputs, json_t *data)
{
    json_t *field = json_object_get(inputs, "condition_field");
    if (!json_is_string(field) || json_string_length(field) == 0 || !json_is_object(json_array_get(data, 0)))
        return NULL;
    return json_string_value(field);
}

static int switch_run(const void *compiled, node_call *call, json_t **outputs, node_error *err)
{
    const switch_conf *sc = compiled;
    json_t *data = json_object_get(call->inputs, "input_data"); /* borrowed */
    if (!data)
        return node_fail(err, "bad_request", /* what the caller sent (or left out) decides it */
                         "input 'input_data' is missing (give it in inputs, or in parameters for this node)");
    int op = switch_run_op(call->inputs, err);
    if (op < 0)
        return -1;
    json_t *tested = switch_run_tested(call->inputs, data, err); /* borrowed */
    if (!tested)
        return -1;
    json_t *out = json_object(); /* owned until handed to *outputs */
    if (!out)
        return node_fail(err, "internal", "out of memory");
    const char *rows_field = sc ? switch_rows_field(call->inputs, data) : NULL;
    int rc = rows_field     ? switch_run_groups(sc, rows_field, data, out, err)
             : sc && sc->cases ? switch_run_cases(sc, op, data, tested, out, err)
                               : switch_run_bool(op, call->inputs, data, tested, out, err);
    if (rc != 0) {
        json_decref(out);
        return -1;
    }
    *outputs = out;
    return 0;
}

/* The SDK's SwitchNode parameters for what kailashd's always does: the matched case in
 * condition_result, the first match only. */
static const node_sdk_default switch_sdk_defaults[] = {
    {"pass_condition_result", "true"},
    {"break_after_first_match", "true"},
    {"__test_multi_case_no_match", "false"},
    {NULL, NULL},
};

const node_type node_switch = {
    .name = "SwitchNode",
    .config_keys = switch_keys,
    .sdk_defaults = switch_sdk_defaults,
    .input_ports = switch_ports,
    .input_aliases = switch_aliases,
    .null_port_absent = 1,
    .compile = switch_compile,
    .has_output = switch_has_output,
    .run = switch_run,
    .start = NULL,
    .free = switch_conf_free,
};
