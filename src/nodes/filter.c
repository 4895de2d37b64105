/* FilterNode: keeps the items of a list that pass one comparison (the SDK's FilterNode, in
 * kailash/nodes/transform/processors.py).
 *
 * Config and inputs are the SDK's: `data` (the list), `field`, `operator` (default ==: one of
 * == != > < >= <= contains) and `value`; the one output port is `filtered_data`, the passing items
 * in their order (the same values, not copies). Each item is tested as the SDK tests it:
 *   tested   item[field] when field is a non-empty string and the item an object (a missing key is
 *            null: a top-level key, no dotted path), else the item itself;
 *   null     a null tested value passes == only against a null value and != only against a
 *            non-null one; every other operator fails it;
 *   == !=    Python's deep equality (pycmp_equal: 1 == 1.0 == true, "1" != 1);
 *   > < >= <= a string side that reads as a Python float() ("3", " 3 ", "1_000", "inf") is that
 *            number, then Python's ordering (pycmp_order); a pair Python cannot order (a string
 *            and a number, an object, null) fails, as the SDK's try/except turns the TypeError into
 *            "filter out". The SDK converts the tested string first: "5" > "abc" compares 5.0 with
 *            "abc" and fails, "abc" > "5" compares two strings;
 *   contains value (a string) is a substring of Python's str() of the tested value ("1" is in 1.5,
 *            in [1] and in {'a': 1}).
 *
 * Where the SDK quietly returns [] or reshapes its input, kailashd refuses instead (the README lists
 * these): an unknown operator, a non-string field (the SDK's str() would look up "5"), and a value
 * that can never pass (contains with a non-string, an ordering against an object) are load errors
 * when literal; data that is not a list is a run error (the SDK's list() would filter a string's
 * characters or an object's keys), and so is a missing or null value for an operator other than
 * == and != (a 400, like a missing data: the SDK's exports write "value": null and leave it to the
 * request or a connection). Literal config is checked at load; templated values, and what arrives
 * through connections and request parameters, at run. One pass over the list: linear in its size
 * (a contains item costs its str(), an equality its size). */
#include <math.h>
#include <string.h>

#include "kailash/node.h"
#include "kailash/util.h"
#include "pycmp.h"

enum filter_op { FILTER_EQ, FILTER_NE, FILTER_GT, FILTER_LT, FILTER_GE, FILTER_LE, FILTER_CONTAINS };

static const char *const filter_op_names[] = {"==", "!=", ">", "<", ">=", "<=", "contains"};
#define FILTER_OP_COUNT (sizeof filter_op_names / sizeof filter_op_names[0])
#define FILTER_OP_EXPECTED "expected one of == != > < >= <= contains"

static const char *const filter_keys[] = {"data", "field", "operator", "value", NULL};
/* The SDK's node takes every parameter through a connection. */
static const char *const filter_ports[] = {"data", "field", "operator", "value", NULL};

/* The operator called v (a JSON value; null or absent is the SDK's default ==), or -1. */
static int filter_op_parse(json_t *v)
{
    if (!v || json_is_null(v))
        return FILTER_EQ;
    if (!json_is_string(v))
        return -1;
    for (size_t i = 0; i < FILTER_OP_COUNT; i++)
        if (strcmp(filter_op_names[i], json_string_value(v)) == 0 && strlen(filter_op_names[i]) == json_string_length(v))
            return (int)i;
    return -1;
}

/* NULL when a non-null value may be the right-hand side of op, else why it never passes. */
static const char *filter_value_problem(int op, json_t *value)
{
    if (op == FILTER_CONTAINS && !json_is_string(value))
        return "expected a string for operator 'contains' (it looks for a substring)";
    if (op >= FILTER_GT && op <= FILTER_LE && json_is_object(value))
        return "expected a number, a string, a boolean or an array (objects have no order)";
    return NULL;
}

/* NULL when field (may be NULL) is absent, null or a string, else what it expects. */
static const char *filter_field_problem(json_t *field)
{
    return !field || json_is_null(field) || json_is_string(field) ? NULL : "expected a string";
}

static int filter_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    (void)env;
    *compiled = NULL;
    json_t *opv = json_object_get(config, "operator"), *field = json_object_get(config, "field");
    json_t *value = json_object_get(config, "value"), *data = json_object_get(config, "data");
    int op = FILTER_EQ;
    if (opv && !tmpl_value_has_expr(opv) && (op = filter_op_parse(opv)) < 0)
        return util_err(err, errlen, "config.operator: " FILTER_OP_EXPECTED);
    if (field && !tmpl_value_has_expr(field) && filter_field_problem(field))
        return util_err(err, errlen, "config.field: expected a string (a top-level key of each item)");
    if (data && !tmpl_value_has_expr(data) && !json_is_array(data) && !json_is_null(data))
        return util_err(err, errlen, "config.data: expected an array (the list to filter)");
    /* A templated operator or value is known only at run; so is an absent or null value, which the
     * SDK's exports leave for a connection or the request to fill ({"operator": ">", "value": null}). */
    if ((opv && tmpl_value_has_expr(opv)) || !value || json_is_null(value) || tmpl_value_has_expr(value))
        return 0;
    const char *problem = filter_value_problem(op, value);
    if (problem)
        return util_err(err, errlen, "config.value: %s", problem);
    return 0;
}

static int filter_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    return strcmp(port, "filtered_data") == 0;
}

/* The comparison's right-hand side, prepared once per run. */
typedef struct filter_rhs {
    int op;
    json_t *value;  /* borrowed; json null when absent */
    int value_num;  /* value is a string that reads as a float: num holds it */
    pycmp_num num;
} filter_rhs;

/* Orders tested against the value as the SDK's ordering branch does (see the top comment): 0 with
 * *cmp, or nonzero where the SDK's comparison raises or involves a NaN. */
static int filter_order(const filter_rhs *r, json_t *tested, int *cmp)
{
    pycmp_num a, b;
    int a_num = 0;
    if (json_is_string(tested)) {
        a.is_int = 0;
        a_num = pycmp_float_parse(json_string_value(tested), json_string_length(tested), &a.d);
        if (!a_num) /* the SDK's conversion stopped there: the value stays as it is */
            return pycmp_order(tested, r->value, cmp);
    }
    if (!a_num && !r->value_num)
        return pycmp_order(tested, r->value, cmp);
    if (!a_num && !pycmp_num_of(tested, &a))
        return PYCMP_TYPE_ERROR;
    if (r->value_num)
        b = r->num;
    else if (!pycmp_num_of(r->value, &b))
        return PYCMP_TYPE_ERROR; /* a float against a string that is no number */
    return pycmp_num_order(&a, &b, cmp);
}

/* 1 when the item's tested value passes; -1 when memory runs out. scratch is reused for contains. */
static int filter_test(const filter_rhs *r, json_t *tested, buf *scratch)
{
    int c;
    if (json_is_null(tested)) {
        if (r->op == FILTER_EQ)
            return json_is_null(r->value);
        return r->op == FILTER_NE && !json_is_null(r->value);
    }
    switch (r->op) {
    case FILTER_EQ:
        return pycmp_equal(tested, r->value);
    case FILTER_NE:
        return !pycmp_equal(tested, r->value);
    case FILTER_GT:
        return filter_order(r, tested, &c) == 0 && c > 0;
    case FILTER_LT:
        return filter_order(r, tested, &c) == 0 && c < 0;
    case FILTER_GE:
        return filter_order(r, tested, &c) == 0 && c >= 0;
    case FILTER_LE:
        return filter_order(r, tested, &c) == 0 && c <= 0;
    default: /* contains: value is a string (filter_value_problem) */
        scratch->len = 0;
        if (pycmp_str_append(scratch, tested) != 0)
            return -1;
        if (json_string_length(r->value) == 0)
            return 1;
        return scratch->len > 0 &&
               memmem(scratch->data, scratch->len, json_string_value(r->value), json_string_length(r->value)) != NULL;
    }
}

/* The tested value of item (borrowed; json null for a missing key). */
static json_t *filter_tested(json_t *item, json_t *field)
{
    if (!json_is_string(field) || json_string_length(field) == 0 || !json_is_object(item))
        return item;
    json_t *v = json_object_getn(item, json_string_value(field), json_string_length(field));
    return v ? v : json_null();
}

/* Reads and checks operator and value from the inputs into *r; -1 with err filled. */
static int filter_rhs_read(json_t *inputs, filter_rhs *r, node_error *err)
{
    r->op = filter_op_parse(json_object_get(inputs, "operator"));
    if (r->op < 0)
        return node_fail(err, "internal", "operator: " FILTER_OP_EXPECTED);
    r->value = json_object_get(inputs, "value");
    if (!r->value)
        r->value = json_null();
    if (json_is_null(r->value) && r->op >= FILTER_GT) /* only == and != compare with None */
        return node_fail(err, "bad_request", /* as for data: the caller's inputs leave it out */
                         "input 'value' is missing (operator '%s' compares each item with it; connect it, "
                         "or give it in inputs or parameters)", filter_op_names[r->op]);
    const char *problem = filter_value_problem(r->op, r->value);
    if (problem)
        return node_fail(err, "internal", "value: %s", problem);
    r->num.is_int = 0;
    r->value_num = json_is_string(r->value) &&
                   pycmp_float_parse(json_string_value(r->value), json_string_length(r->value), &r->num.d);
    return 0;
}

static int filter_run(const void *compiled, node_call *call, json_t **outputs, node_error *err)
{
    (void)compiled;
    json_t *data = json_object_get(call->inputs, "data"); /* borrowed */
    json_t *field = json_object_get(call->inputs, "field");
    filter_rhs r;
    if (!data || json_is_null(data))
        return node_fail(err, "bad_request", /* what the caller sent (or left out) decides it */
                         "input 'data' is missing (connect a list to it, or give it in inputs or parameters)");
    if (!json_is_array(data))
        return node_fail(err, "internal", "data: expected an array (the list to filter), got %s",
                         json_is_object(data) ? "an object" : json_is_string(data) ? "a string" : "a scalar");
    if (filter_field_problem(field))
        return node_fail(err, "internal", "field: expected a string (a top-level key of each item)");
    if (filter_rhs_read(call->inputs, &r, err) != 0)
        return -1;
    json_t *kept = json_array(); /* owned until handed to *outputs */
    buf scratch = {0};
    int rc = kept ? 0 : -1;
    size_t i;
    json_t *item;
    json_array_foreach(data, i, item)
    {
        int pass = rc == 0 ? filter_test(&r, filter_tested(item, field), &scratch) : 0;
        if (pass < 0 || (pass > 0 && json_array_append(kept, item) != 0))
            rc = -1;
        if (rc != 0)
            break;
    }
    buf_free(&scratch);
    json_t *out = rc == 0 ? json_object() : NULL;
    if (!out || json_object_set_new(out, "filtered_data", kept) != 0) {
        json_decref(out);
        if (!out)
            json_decref(kept);
        return node_fail(err, "internal", "out of memory");
    }
    *outputs = out;
    return 0;
}

const node_type node_filter = {
    .name = "FilterNode",
    .config_keys = filter_keys,
    .sdk_defaults = NULL,
    .input_ports = filter_ports,
    .input_aliases = NULL,
    .compile = filter_compile,
    .has_output = filter_has_output,
    .run = filter_run,
    .start = NULL,
    .free = NULL,
};
