/* node_harness.h: calling a node type the way the engine does, for the node unit tests.
 * The including file defines `test_env` (the node_env given to compile) before including this. */
#ifndef KAILASH_TEST_NODE_HARNESS_H
#define KAILASH_TEST_NODE_HARNESS_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>

#include "kailash/node.h"

/* What one node call produced. */
typedef struct call_result {
    int rc;
    json_t *out; /* owned; NULL when rc != 0 */
    node_error err;
} call_result;

static inline json_t *parse(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    cr_assert_not_null(v, "bad test JSON '%s': %s", text, je.text);
    return v;
}

/* compile() of config (JSON text); returns -1 with the message in err. */
static inline int compile_only(const node_type *t, const char *config, char *err, size_t errlen)
{
    json_t *cfg = parse(config);
    void *compiled = NULL;
    err[0] = '\0';
    int rc = t->compile(&test_env, cfg, &compiled, err, errlen);
    if (rc == 0 && t->free)
        t->free(compiled);
    json_decref(cfg);
    return rc;
}

/* Runs an already compiled node on inputs = config overlaid with extra (JSON text or NULL). The
 * inputs must be unchanged afterwards: nodes share them with other threads. */
static inline call_result run_compiled(const node_type *t, const void *compiled, json_t *cfg, const char *extra)
{
    call_result r = {0};
    json_t *inputs = json_deep_copy(cfg);
    if (extra) {
        json_t *x = parse(extra);
        json_object_update(inputs, x);
        json_decref(x);
    }
    json_t *before = json_deep_copy(inputs);
    node_call call = {.node_id = "n", .inputs = inputs};
    r.rc = t->run(compiled, &call, &r.out, &r.err);
    cr_assert(json_equal(before, inputs), "run() changed its inputs");
    json_decref(before);
    json_decref(inputs);
    return r;
}

/* compile() then run() on config cfg (borrowed) overlaid with extra; the compile must succeed. */
static inline call_result run_json(const node_type *t, json_t *cfg, const char *extra)
{
    void *compiled = NULL;
    char err[256] = "";
    cr_assert_eq(t->compile(&test_env, cfg, &compiled, err, sizeof err), 0, "compile: %s", err);
    call_result r = run_compiled(t, compiled, cfg, extra);
    if (t->free)
        t->free(compiled);
    return r;
}

/* run_json on config given as JSON text. */
static inline call_result run_node(const node_type *t, const char *config, const char *extra)
{
    json_t *cfg = parse(config);
    call_result r = run_json(t, cfg, extra);
    json_decref(cfg);
    return r;
}

/* Asserts that port holds exactly the JSON expected (text). */
static inline void assert_port(json_t *out, const char *port, const char *expected)
{
    json_t *want = parse(expected);
    json_t *got = json_object_get(out, port);
    cr_assert_not_null(got, "port '%s' is absent", port);
    char *g = json_dumps(got, JSON_ENCODE_ANY | JSON_SORT_KEYS | JSON_COMPACT);
    cr_assert(json_equal(got, want), "port '%s': got %s, want %s", port, g, expected);
    free(g);
    json_decref(want);
}

#endif
