/* DataValidationNode: checks a value against a JSON Schema (WORKFLOWS.md's subset) and says whether
 * it passed, so a SwitchNode can route on the answer or the run can stop.
 *
 * The schema is the one gateway.inputs uses (src/workflow/schema.c), compiled here at load: a bad
 * schema or an unknown keyword is refused with the compiler's pointer ("config.schema: /properties/
 * age: unknown keyword 'minimun'"), patterns are compiled once and the costly ones (back-references,
 * repeats that multiply past the compiler's budget) are refused then, never met at run. The schema
 * holds no templates: it is fixed when the workflow loads.
 *
 * `data` is an ordinary input: config, a workflow input, a connection or the request's parameters
 * fill it, the last winning (WORKFLOWS.md "Data flow"). Outputs: `valid` (bool), `errors` (the
 * violations, the invalid_inputs shape of API.md: [{"path": JSON Pointer, "message"}], [] when valid)
 * and `data` (the value itself, shared by reference, not copied). `errors` lists at most
 * VALIDATION_MAX_ERRORS violations, in the validator's order (a 10^6-item array of wrong types must
 * not become 10^6 objects); `valid` still reflects them all. With `fail_on_invalid: true` an invalid
 * value fails the node instead (400 bad_request, naming the first violations).
 *
 * `schema` and `fail_on_invalid` are pinned (node_type.pinned_keys): they decide what the gate lets
 * through, so only the workflow file sets them; a request may not swap the schema (which the compiled
 * one would silently ignore) or switch the failure off. Validation costs one pass over the value,
 * descending no deeper than the schema does; messages never quote the value (it may be a secret). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/node.h"
#include "kailash/schema.h"
#include "kailash/util.h"

#define VALIDATION_MAX_ERRORS 100
/* How many violations a fail_on_invalid message names (it must fit node_error.message). */
#define VALIDATION_MESSAGE_ERRORS 3

static const char *const validation_keys[] = {"data", "schema", "fail_on_invalid", NULL};
static const char *const validation_ports[] = {"data", NULL};
static const char *const validation_pinned[] = {"schema", "fail_on_invalid", NULL};

typedef struct validation {
    schema *compiled; /* owned */
    json_t *def;      /* owned deep copy of config.schema, to recognise it in the inputs */
} validation;

static void validation_free(void *p)
{
    validation *v = p;
    if (!v)
        return;
    schema_free(v->compiled);
    json_decref(v->def);
    free(v);
}

/* 0 with *on (absent or null: false), or -1 when v is something else than a boolean. */
static int validation_flag(json_t *v, bool *on)
{
    *on = false;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return -1;
    *on = json_is_true(v);
    return 0;
}

/* True when a string anywhere in v holds a {{ }} expression (the loader would render it every run).
 * Called on a schema that compiled, so its nesting is bounded by the workflow file's parser. */
static bool validation_has_template(json_t *v)
{
    const char *key;
    size_t i;
    json_t *child;
    if (json_is_object(v)) {
        json_object_foreach(v, key, child) if (validation_has_template(child)) return true;
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, child) if (validation_has_template(child)) return true;
    }
    return tmpl_value_has_expr(v);
}

static int validation_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    (void)env;
    *compiled = NULL;
    json_t *def = json_object_get(config, "schema"), *flag = json_object_get(config, "fail_on_invalid");
    bool on;
    if (!def)
        return util_err(err, errlen, "config.schema: required (the JSON Schema the data must match)");
    if (!json_is_object(def))
        return util_err(err, errlen, "config.schema: expected an object (a JSON Schema)");
    if (flag && !tmpl_value_has_expr(flag) && validation_flag(flag, &on) != 0)
        return util_err(err, errlen, "config.fail_on_invalid: expected a boolean");
    validation *v = calloc(1, sizeof *v);
    if (!v)
        return util_err(err, errlen, "out of memory");
    char why[256];
    if (schema_compile(def, &v->compiled, why, sizeof why) != 0) {
        validation_free(v);
        return util_err(err, errlen, "config.schema: %s", why);
    }
    if (validation_has_template(def)) {
        validation_free(v);
        return util_err(err, errlen, "config.schema: may not hold {{ }} templates (it is compiled at load)");
    }
    if (!(v->def = json_deep_copy(def))) {
        validation_free(v);
        return util_err(err, errlen, "out of memory");
    }
    *compiled = v;
    return 0;
}

static int validation_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    return strcmp(port, "valid") == 0 || strcmp(port, "errors") == 0 || strcmp(port, "data") == 0;
}

/* Fails the node with "data is invalid (N violations): /a: ...; /b: ...", as much as fits. */
static int validation_fail(json_t *errors, int count, node_error *err)
{
    char msg[sizeof err->message];
    int n = snprintf(msg, sizeof msg, "data is invalid (%d violation%s)", count, count == 1 ? "" : "s");
    for (size_t i = 0; i < json_array_size(errors) && i < VALIDATION_MESSAGE_ERRORS && n > 0 && (size_t)n < sizeof msg;
         i++) {
        json_t *e = json_array_get(errors, i);
        const char *path = json_string_value(json_object_get(e, "path"));
        n += snprintf(msg + n, sizeof msg - (size_t)n, "%s %s: %s", i ? ";" : ":", path && *path ? path : "(root)",
                      json_string_value(json_object_get(e, "message")));
    }
    /* a cut may fall inside a UTF-8 sequence (a pattern's text); the message must stay valid JSON text */
    size_t len = strlen(msg), lead = len;
    while (lead > 0 && ((unsigned char)msg[lead - 1] & 0xC0) == 0x80)
        lead--;
    if (lead > 0 && ((unsigned char)msg[lead - 1] & 0xC0) == 0xC0) {
        unsigned char c = (unsigned char)msg[lead - 1];
        size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (len - (lead - 1) < want)
            msg[lead - 1] = '\0';
    }
    return node_fail(err, "bad_request", "%s", msg);
}

static int validation_run(const void *compiled, node_call *call, json_t **outputs, node_error *err)
{
    const validation *v = compiled;
    json_t *data = json_object_get(call->inputs, "data"); /* borrowed */
    json_t *def = json_object_get(call->inputs, "schema");
    bool fail_on_invalid;
    if (!data)
        return node_fail(err, "bad_request",
                         "input 'data' is missing (connect the value to check to it, or give it in inputs or "
                         "parameters)");
    /* Only gateway.overridable can let a request reach a pinned key; the schema was compiled at load,
     * so a different one is refused rather than ignored. */
    if (def && !json_equal(def, v->def))
        return node_fail(err, "bad_request", "schema: fixed by the workflow file (compiled at load), not settable");
    if (validation_flag(json_object_get(call->inputs, "fail_on_invalid"), &fail_on_invalid) != 0)
        return node_fail(err, "internal", "fail_on_invalid: expected a boolean");
    json_t *errors = json_array(); /* owned until handed to *outputs */
    if (!errors)
        return node_fail(err, "internal", "out of memory");
    int count = schema_validate_max(v->compiled, data, errors, VALIDATION_MAX_ERRORS);
    if (count > 0 && fail_on_invalid) {
        validation_fail(errors, count, err);
        json_decref(errors);
        return -1;
    }
    /* "o" steals errors, "O" takes a new reference on data: the inputs keep theirs. */
    *outputs = json_pack("{sbsosO}", "valid", count == 0, "errors", errors, "data", data);
    if (!*outputs)
        return node_fail(err, "internal", "out of memory");
    return 0;
}

const node_type node_data_validation = {
    .name = "DataValidationNode",
    .config_keys = validation_keys,
    .sdk_defaults = NULL,
    .input_ports = validation_ports,
    .input_aliases = NULL,
    .pinned_keys = validation_pinned,
    .compile = validation_compile,
    .has_output = validation_has_output,
    .run = validation_run,
    .start = NULL,
    .free = validation_free,
};
