/* Tests of the Cache nodes (src/nodes/cache_node.c): compile refusals, each operation on the memory
 * backend, the SDK's output shapes, TTL, namespaces and tenants, compare-and-set, hostile sizes, and
 * the loader's handling of the SDK's other CacheNode parameters.
 *
 * Expectations marked "SDK" were recorded by running kailash's CacheNode (memory backend) on the
 * same parameters (operation_time left out: it is a measured time). The memory store is one per
 * process and Criterion runs each test in its own process, so tests start from an empty store. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kailash/config.h"
#include "kailash/node.h"
#include "kailash/workflow.h"

extern const node_type node_cache, node_cache_memory, node_cache_redis, node_cache_intelligent;

static const node_env test_env = {.data_dir = "/tmp", .max_response_bytes = 1 << 20};

#include "node_harness.h"

/* ------------------------------------------------------------------------ helpers */

typedef struct done_box {
    int calls;
    json_t *out;
    node_error err;
} done_box;

static done_box g_done;

static void on_done(node_call *call, json_t *outputs, const node_error *err)
{
    (void)call;
    g_done.calls++;
    g_done.out = outputs;
    if (err)
        g_done.err = *err;
}

/* Runs type t (run or start) on config + extra; the outputs without operation_time, or NULL with *e. */
static json_t *op(const node_type *t, const char *config, const char *extra, node_error *e)
{
    json_t *cfg = parse(config);
    void *compiled = NULL;
    char err[256] = "";
    cr_assert_eq(t->compile(&test_env, cfg, &compiled, err, sizeof err), 0, "compile %s: %s", config, err);
    json_t *inputs = json_deep_copy(cfg);
    if (extra) {
        json_t *x = parse(extra);
        json_object_update(inputs, x);
        json_decref(x);
    }
    json_t *before = json_deep_copy(inputs), *out = NULL;
    node_call call = {.node_id = "c", .inputs = inputs, .done = on_done};
    node_error local = {"", ""};
    if (t->run) {
        if (t->run(compiled, &call, &out, &local) != 0)
            out = NULL;
    } else {
        g_done = (done_box){0};
        if (t->start(compiled, &call, &local) == 0) {
            cr_assert_eq(g_done.calls, 1, "done called %d times", g_done.calls);
            out = g_done.out;
            local = g_done.err;
        }
    }
    cr_assert(json_equal(before, inputs), "the node changed its inputs");
    if (out) {
        json_t *ot = json_object_get(out, "operation_time");
        cr_assert(json_is_real(ot) && json_real_value(ot) >= 0, "operation_time is a time in seconds");
        json_object_del(out, "operation_time");
    }
    if (e)
        *e = local;
    json_decref(before);
    json_decref(inputs);
    json_decref(cfg);
    t->free(compiled);
    return out;
}

/* op() that must succeed with exactly the outputs want (JSON text), key order included. */
static void expect(const node_type *t, const char *config, const char *extra, const char *want)
{
    node_error e;
    json_t *out = op(t, config, extra, &e);
    cr_assert_not_null(out, "%s: failed: %s", config, e.message);
    json_t *w = parse(want);
    char *got = json_dumps(out, JSON_COMPACT);
    cr_assert(json_equal(out, w), "%s: got %s, want %s", config, got, want);
    /* the LocalRuntime's key order */
    char *ws = json_dumps(w, JSON_COMPACT);
    cr_assert_str_eq(got, ws, "key order");
    free(ws);
    free(got);
    json_decref(w);
    json_decref(out);
}

/* op() that must fail with code and a message containing part. */
static void expect_fail(const node_type *t, const char *config, const char *extra, const char *code, const char *part)
{
    node_error e;
    json_t *out = op(t, config, extra, &e);
    cr_assert_null(out, "%s: should fail", config);
    cr_assert_str_eq(e.code, code, "%s: %s", config, e.message);
    cr_assert(strstr(e.message, part), "'%s' lacks '%s'", e.message, part);
}

static void expect_refused(const node_type *t, const char *config, const char *part)
{
    char err[300];
    cr_assert_neq(compile_only(t, config, err, sizeof err), 0, "%s should be refused", config);
    cr_assert(strstr(err, part), "'%s' lacks '%s'", err, part);
}

/* ------------------------------------------------------------------------ SDK outputs */

Test(cache_node, get_miss_set_get_hit_as_the_sdk)
{
    /* SDK */
    expect(&node_cache, "{\"operation\": \"get\", \"key\": \"a\"}", NULL,
           "{\"success\": true, \"hit\": false, \"key\": \"a\", \"backend_used\": \"memory\", \"value\": null,"
           " \"version\": null}");
    expect(
        &node_cache, "{\"operation\": \"set\", \"key\": \"a\", \"value\": {\"x\": 1}}", NULL,
        "{\"success\": true, \"key\": \"a\", \"ttl_remaining\": 3600, \"backend_used\": \"memory\", \"version\": 1}");
    expect(&node_cache, "{\"operation\": \"get\", \"key\": \"a\"}", NULL,
           "{\"success\": true, \"value\": {\"x\": 1}, \"hit\": true, \"key\": \"a\", \"backend_used\": \"memory\","
           " \"version\": 1}");
    expect(
        &node_cache, "{\"operation\": \"set\", \"key\": \"a\", \"value\": [1, \"two\", null]}", NULL,
        "{\"success\": true, \"key\": \"a\", \"ttl_remaining\": 3600, \"backend_used\": \"memory\", \"version\": 2}");
    expect(&node_cache, "{\"operation\": \"get\", \"key\": \"a\"}", NULL,
           "{\"success\": true, \"value\": [1, \"two\", null], \"hit\": true, \"key\": \"a\", \"backend_used\": "
           "\"memory\", \"version\": 2}");
}

Test(cache_node, exists_and_delete_as_the_sdk)
{
    expect(
        &node_cache, "{\"operation\": \"set\", \"key\": \"a\", \"value\": 1}", NULL,
        "{\"success\": true, \"key\": \"a\", \"ttl_remaining\": 3600, \"backend_used\": \"memory\", \"version\": 1}");
    /* SDK */
    expect(&node_cache, "{\"operation\": \"exists\", \"key\": \"a\"}", NULL,
           "{\"success\": true, \"key\": \"a\", \"backend_used\": \"memory\", \"exists\": true}");
    expect(&node_cache, "{\"operation\": \"delete\", \"key\": \"a\"}", NULL,
           "{\"success\": true, \"key\": \"a\", \"backend_used\": \"memory\", \"deleted\": true}");
    expect(&node_cache, "{\"operation\": \"delete\", \"key\": \"a\"}", NULL,
           "{\"success\": true, \"key\": \"a\", \"backend_used\": \"memory\", \"deleted\": false}");
    expect(&node_cache, "{\"operation\": \"exists\", \"key\": \"a\"}", NULL,
           "{\"success\": true, \"key\": \"a\", \"backend_used\": \"memory\", \"exists\": false}");
    expect(&node_cache, "{\"operation\": \"get\", \"key\": \"a\"}", NULL,
           "{\"success\": true, \"hit\": false, \"key\": \"a\", \"backend_used\": \"memory\", \"value\": null,"
           " \"version\": null}");
}

Test(cache_node, ttl_none_and_negative_report_minus_one)
{
    /* SDK: ttl 0 and ttl -5 never expire, ttl_remaining -1 */
    expect(
        &node_cache, "{\"operation\": \"set\", \"key\": \"b\", \"value\": [1, 2], \"ttl\": 0, \"namespace\": \"ns\"}",
        NULL,
        "{\"success\": true, \"key\": \"ns:b\", \"ttl_remaining\": -1, \"backend_used\": \"memory\", \"version\": 1}");
    expect(&node_cache,
           "{\"operation\": \"set\", \"key\": \"b\", \"value\": [1, 2], \"ttl\": -5, \"namespace\": \"ns\", "
           "\"tenant_id\": \"t\"}",
           NULL,
           "{\"success\": true, \"key\": \"t:ns:b\", \"ttl_remaining\": -1, \"backend_used\": \"memory\", \"version\": "
           "1}");
    expect(&node_cache, "{\"operation\": \"get\", \"key\": \"b\", \"namespace\": \"ns\"}", NULL,
           "{\"success\": true, \"value\": [1, 2], \"hit\": true, \"key\": \"ns:b\", \"backend_used\": \"memory\", "
           "\"version\": 1}");
}

Test(cache_node, ttl_as_python_int)
{
    /* SDK: ttl "7" -> 7, 1.5 -> 1; key 5 -> "5"; operation is lowercased */
    expect(&node_cache, "{\"operation\": \"set\", \"key\": \"t\", \"value\": 1, \"ttl\": \"7\"}", NULL,
           "{\"success\": true, \"key\": \"t\", \"ttl_remaining\": 7, \"backend_used\": \"memory\", \"version\": 1}");
    expect(&node_cache, "{\"operation\": \"set\", \"key\": \"t\", \"value\": 1, \"ttl\": 1.5}", NULL,
           "{\"success\": true, \"key\": \"t\", \"ttl_remaining\": 1, \"backend_used\": \"memory\", \"version\": 2}");
    expect(
        &node_cache, "{\"operation\": \"GET\", \"key\": \"t\"}", NULL,
        "{\"success\": true, \"value\": 1, \"hit\": true, \"key\": \"t\", \"backend_used\": \"memory\", \"version\": "
        "2}");
    expect(&node_cache, "{\"operation\": \"get\", \"key\": 5}", NULL,
           "{\"success\": true, \"hit\": false, \"key\": \"5\", \"backend_used\": \"memory\", \"value\": null, "
           "\"version\": null}");
}

Test(cache_node, ttl_expiry)
{
    expect(&node_cache, "{\"operation\": \"set\", \"key\": \"x\", \"value\": \"v\", \"ttl\": 1}", NULL,
           "{\"success\": true, \"key\": \"x\", \"ttl_remaining\": 1, \"backend_used\": \"memory\", \"version\": 1}");
    expect(&node_cache, "{\"operation\": \"exists\", \"key\": \"x\"}", NULL,
           "{\"success\": true, \"key\": \"x\", \"backend_used\": \"memory\", \"exists\": true}");
    usleep(1100 * 1000);
    /* the SDK's exists still says true here until a get drops the entry; an expired entry is gone here */
    expect(&node_cache, "{\"operation\": \"exists\", \"key\": \"x\"}", NULL,
           "{\"success\": true, \"key\": \"x\", \"backend_used\": \"memory\", \"exists\": false}");
    expect(&node_cache, "{\"operation\": \"get\", \"key\": \"x\"}", NULL,
           "{\"success\": true, \"hit\": false, \"key\": \"x\", \"backend_used\": \"memory\", \"value\": null,"
           " \"version\": null}");
}

Test(cache_node, namespaces_and_tenants_are_apart)
{
    expect(&node_cache, "{\"operation\": \"set\", \"key\": \"k\", \"value\": \"A\", \"namespace\": \"a\"}", NULL,
           "{\"success\": true, \"key\": \"a:k\", \"ttl_remaining\": 3600, \"backend_used\": \"memory\", \"version\": "
           "1}");
    expect(&node_cache, "{\"operation\": \"set\", \"key\": \"k\", \"value\": \"B\", \"namespace\": \"b\"}", NULL,
           "{\"success\": true, \"key\": \"b:k\", \"ttl_remaining\": 3600, \"backend_used\": \"memory\", \"version\": "
           "1}");
    expect(&node_cache, "{\"operation\": \"get\", \"key\": \"k\", \"namespace\": \"a\"}", NULL,
           "{\"success\": true, \"value\": \"A\", \"hit\": true, \"key\": \"a:k\", \"backend_used\": \"memory\", "
           "\"version\": 1}");
    expect(&node_cache, "{\"operation\": \"get\", \"key\": \"k\", \"namespace\": \"b\"}", NULL,
           "{\"success\": true, \"value\": \"B\", \"hit\": true, \"key\": \"b:k\", \"backend_used\": \"memory\", "
           "\"version\": 1}");
    expect(&node_cache, "{\"operation\": \"exists\", \"key\": \"k\"}", NULL,
           "{\"success\": true, \"key\": \"k\", \"backend_used\": \"memory\", \"exists\": false}");
    expect(&node_cache, "{\"operation\": \"exists\", \"key\": \"k\", \"namespace\": \"a\", \"tenant_id\": \"t1\"}",
           NULL, "{\"success\": true, \"key\": \"t1:a:k\", \"backend_used\": \"memory\", \"exists\": false}");
    /* the SDK's key shape: tenant without namespace */
    expect(&node_cache, "{\"operation\": \"exists\", \"key\": \"k\", \"tenant_id\": \"t1\"}", NULL,
           "{\"success\": true, \"key\": \"t1:k\", \"backend_used\": \"memory\", \"exists\": false}");
}

Test(cache_node, one_store_for_every_node_type)
{
    expect(
        &node_cache_memory, "{\"operation\": \"set\", \"key\": \"s\", \"value\": true}", NULL,
        "{\"success\": true, \"key\": \"s\", \"ttl_remaining\": 3600, \"backend_used\": \"memory\", \"version\": 1}");
    expect(&node_cache_intelligent, "{\"operation\": \"get\", \"key\": \"s\"}", NULL,
           "{\"success\": true, \"value\": true, \"hit\": true, \"key\": \"s\", \"backend_used\": \"memory\", "
           "\"version\": 1}");
    expect(&node_cache, "{\"operation\": \"get\", \"key\": \"s\", \"backend\": \"memory\"}", NULL,
           "{\"success\": true, \"value\": true, \"hit\": true, \"key\": \"s\", \"backend_used\": \"memory\", "
           "\"version\": 1}");
}

Test(cache_node, compare_and_set)
{
    /* SDK: no entry, expected 5 */
    expect(&node_cache, "{\"operation\": \"set\", \"key\": \"d\", \"value\": 1, \"expected_version\": 5}", NULL,
           "{\"success\": false, \"key\": \"d\", \"backend_used\": \"memory\", \"cas_failed\": true, "
           "\"expected_version\": 5, \"actual_version\": null, \"error\": \"CAS conflict: expected version 5, actual "
           "None\"}");
    expect(
        &node_cache, "{\"operation\": \"set\", \"key\": \"d\", \"value\": 1, \"expected_version\": null}", NULL,
        "{\"success\": true, \"key\": \"d\", \"ttl_remaining\": 3600, \"backend_used\": \"memory\", \"version\": 1}");
    expect(
        &node_cache, "{\"operation\": \"set\", \"key\": \"d\", \"value\": 2, \"expected_version\": 1}", NULL,
        "{\"success\": true, \"key\": \"d\", \"ttl_remaining\": 3600, \"backend_used\": \"memory\", \"version\": 2}");
    expect(&node_cache, "{\"operation\": \"set\", \"key\": \"d\", \"value\": 3, \"expected_version\": 1}", NULL,
           "{\"success\": false, \"key\": \"d\", \"backend_used\": \"memory\", \"cas_failed\": true, "
           "\"expected_version\": 1, \"actual_version\": 2, \"error\": \"CAS conflict: expected version 1, actual "
           "2\"}");
    expect(&node_cache, "{\"operation\": \"get\", \"key\": \"d\"}", NULL,
           "{\"success\": true, \"value\": 2, \"hit\": true, \"key\": \"d\", \"backend_used\": \"memory\", "
           "\"version\": 2}");
}

/* Many threads bump one key through compare-and-set: every success moves the version by exactly one. */
static void *cas_worker(void *arg)
{
    int *wins = arg;
    for (int i = 0; i < 200; i++) {
        node_error e;
        json_t *g = op(&node_cache_memory, "{\"operation\": \"get\", \"key\": \"ctr\"}", NULL, &e);
        long long v = json_integer_value(json_object_get(g, "version"));
        json_decref(g);
        char extra[64];
        snprintf(extra, sizeof extra, "{\"expected_version\": %lld}", v);
        json_t *s = op(&node_cache_memory, "{\"operation\": \"set\", \"key\": \"ctr\", \"value\": 0}", extra, &e);
        if (json_is_true(json_object_get(s, "success")))
            (*wins)++;
        json_decref(s);
    }
    return NULL;
}

Test(cache_node, compare_and_set_is_atomic_across_threads)
{
    json_decref(op(&node_cache_memory, "{\"operation\": \"set\", \"key\": \"ctr\", \"value\": 0}", NULL, NULL));
    pthread_t th[4];
    int wins[4] = {0};
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, cas_worker, &wins[i]);
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += wins[i];
    }
    json_t *g = op(&node_cache_memory, "{\"operation\": \"get\", \"key\": \"ctr\"}", NULL, NULL);
    cr_assert_eq(json_integer_value(json_object_get(g, "version")), 1 + total, "version %lld, wins %d",
                 (long long)json_integer_value(json_object_get(g, "version")), total);
    cr_assert_gt(total, 0);
    json_decref(g);
}

/* ------------------------------------------------------------------------ templates and run-time values */

Test(cache_node, values_from_templates_are_checked_at_run)
{
    expect_fail(&node_cache, "{\"operation\": \"{{ inputs.op }}\", \"key\": \"k\"}", "{\"operation\": \"clear\"}",
                "internal", "'clear' is an SDK operation kailashd does not have");
    expect_fail(&node_cache, "{\"operation\": \"{{ inputs.op }}\", \"key\": \"k\"}", "{\"operation\": \"nope\"}",
                "internal", "'nope' is not an operation");
    expect_fail(&node_cache, "{\"operation\": \"get\", \"key\": \"{{ inputs.k }}\"}", "{\"key\": {\"a\": 1}}",
                "internal", "key: expected a string");
    expect_fail(&node_cache, "{\"operation\": \"get\"}", NULL, "internal", "key: required");
    expect_fail(&node_cache, "{\"operation\": \"set\", \"key\": \"k\"}", NULL, "internal", "value: required");
    expect_fail(&node_cache, "{\"operation\": \"set\", \"key\": \"k\", \"value\": null}", NULL, "internal",
                "value: required");
    expect_fail(&node_cache, "{\"operation\": \"set\", \"key\": \"k\", \"value\": 1, \"ttl\": \"{{ inputs.t }}\"}",
                "{\"ttl\": \"soon\"}", "internal", "ttl: expected an integer");
    expect_fail(&node_cache, "{\"operation\": \"get\", \"key\": \"k\"}", "{\"backend\": \"redis\"}", "bad_request",
                "backend: fixed by the workflow file");
    expect_fail(&node_cache, "{}", NULL, "internal", "operation: required");
}

/* ------------------------------------------------------------------------ hostile sizes */

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

Test(cache_node, key_length_is_bounded)
{
    char *k = repeat('k', 1024), *k2 = repeat('k', 1025), cfg[1200], extra[1200];
    snprintf(cfg, sizeof cfg, "{\"operation\": \"set\", \"key\": \"%s\", \"value\": 1}", k);
    json_t *out = op(&node_cache, cfg, NULL, NULL);
    cr_assert(json_is_true(json_object_get(out, "success")), "a 1 KiB key is taken");
    json_decref(out);
    snprintf(cfg, sizeof cfg, "{\"operation\": \"set\", \"key\": \"%s\", \"value\": 1}", k2);
    expect_refused(&node_cache, cfg, "key: longer than 1024 bytes");
    snprintf(extra, sizeof extra, "{\"key\": \"%s\"}", k2);
    expect_fail(&node_cache, "{\"operation\": \"get\", \"key\": \"{{ inputs.k }}\"}", extra, "internal",
                "longer than 1024");
    /* the parts together: namespace + ':' + a 1024-byte key is too long */
    snprintf(extra, sizeof extra, "{\"key\": \"%s\"}", k);
    expect_fail(&node_cache, "{\"operation\": \"get\", \"key\": \"{{ inputs.k }}\", \"namespace\": \"n\"}", extra,
                "internal", "tenant_id:namespace:key is longer than 1024 bytes");
    free(k);
    free(k2);
}

Test(cache_node, value_size_is_bounded)
{
    /* a JSON string of n bytes is n + 2 with its quotes */
    size_t n = (1u << 20) - 2;
    char *v = repeat('v', n + 1);
    json_t *in = json_object(),
           *cfg = parse("{\"operation\": \"set\", \"key\": \"big\", \"value\": \"{{ inputs.v }}\"}");
    void *compiled = NULL;
    char err[256];
    cr_assert_eq(node_cache_memory.compile(&test_env, cfg, &compiled, err, sizeof err), 0);
    json_object_update(in, cfg);
    json_object_set_new(in, "value", json_stringn(v, n));
    node_call call = {.node_id = "c", .inputs = in};
    json_t *out = NULL;
    node_error e;
    cr_assert_eq(node_cache_memory.run(compiled, &call, &out, &e), 0, "exactly 1 MiB of JSON is taken: %s", e.message);
    cr_assert(json_is_true(json_object_get(out, "success")));
    json_decref(out);
    json_t *g = op(&node_cache_memory, "{\"operation\": \"get\", \"key\": \"big\"}", NULL, NULL);
    cr_assert_eq(json_string_length(json_object_get(g, "value")), n);
    json_decref(g);
    json_object_set_new(in, "value", json_stringn(v, n + 1));
    out = NULL;
    cr_assert_neq(node_cache_memory.run(compiled, &call, &out, &e), 0, "one byte more is refused");
    cr_assert_str_eq(e.code, "bad_request");
    cr_assert(strstr(e.message, "value: 1048577 bytes of JSON"), "%s", e.message);
    node_cache_memory.free(compiled);
    json_decref(in);
    json_decref(cfg);
    free(v);
}

Test(cache_node, many_values_stay_within_the_store)
{
    /* 200 values of 512 KiB: 100 MiB through a 64 MiB store; the newest is there, the oldest went */
    char *v = repeat('x', 512 * 1024);
    json_t *cfg = parse("{\"operation\": \"set\", \"key\": \"{{ inputs.k }}\", \"value\": 1}");
    void *compiled = NULL;
    char err[256];
    cr_assert_eq(node_cache_memory.compile(&test_env, cfg, &compiled, err, sizeof err), 0);
    for (int i = 0; i < 200; i++) {
        json_t *in = json_deep_copy(cfg);
        json_object_set_new(in, "key", json_sprintf("k%d", i));
        json_object_set_new(in, "value", json_string(v));
        node_call call = {.node_id = "c", .inputs = in};
        json_t *out = NULL;
        node_error e;
        cr_assert_eq(node_cache_memory.run(compiled, &call, &out, &e), 0, "%s", e.message);
        cr_assert(json_is_true(json_object_get(out, "success")));
        json_decref(out);
        json_decref(in);
    }
    json_t *g = op(&node_cache_memory, "{\"operation\": \"exists\", \"key\": \"k199\"}", NULL, NULL);
    cr_assert(json_is_true(json_object_get(g, "exists")));
    json_decref(g);
    g = op(&node_cache_memory, "{\"operation\": \"exists\", \"key\": \"k0\"}", NULL, NULL);
    cr_assert(json_is_false(json_object_get(g, "exists")));
    json_decref(g);
    node_cache_memory.free(compiled);
    json_decref(cfg);
    free(v);
}

Test(cache_node, nul_bytes_and_unicode_round_trip)
{
    json_t *cfg = parse("{\"operation\": \"set\", \"key\": \"u\", \"value\": 1}");
    void *compiled = NULL;
    char err[256];
    cr_assert_eq(node_cache.compile(&test_env, cfg, &compiled, err, sizeof err), 0);
    json_t *in = json_deep_copy(cfg);
    json_t *val = json_pack("{s:s#,s:s}", "nul", "a\0b", (int)3, "u", "\xc3\xa9\xe2\x82\xac");
    json_object_set(in, "value", val);
    node_call call = {.node_id = "c", .inputs = in, .done = on_done};
    node_error e;
    g_done = (done_box){0};
    cr_assert_eq(node_cache.start(compiled, &call, &e), 0);
    cr_assert(json_is_true(json_object_get(g_done.out, "success")));
    json_decref(g_done.out);
    json_t *g = op(&node_cache, "{\"operation\": \"get\", \"key\": \"u\"}", NULL, NULL);
    cr_assert(json_equal(json_object_get(g, "value"), val));
    json_decref(g);
    json_decref(val);
    json_decref(in);
    json_decref(cfg);
    node_cache.free(compiled);
    /* a NUL byte in a key is refused (Redis and the SDK's key join would differ) */
    cfg = parse("{\"operation\": \"get\", \"key\": \"{{ inputs.k }}\"}");
    cr_assert_eq(node_cache.compile(&test_env, cfg, &compiled, err, sizeof err), 0);
    in = json_deep_copy(cfg);
    json_object_set_new(in, "key", json_stringn("a\0b", 3));
    call = (node_call){.node_id = "c", .inputs = in, .done = on_done};
    g_done = (done_box){0};
    cr_assert_neq(node_cache.start(compiled, &call, &e), 0);
    cr_assert_eq(g_done.calls, 0);
    cr_assert(strstr(e.message, "key: a NUL byte is not allowed"), "%s", e.message);
    json_decref(in);
    json_decref(cfg);
    node_cache.free(compiled);
}

/* ------------------------------------------------------------------------ compile */

Test(cache_node, compile_refusals)
{
    expect_refused(&node_cache, "{\"operation\": \"clear\"}", "operation: 'clear' is an SDK operation");
    expect_refused(&node_cache, "{\"operation\": \"get_pattern\", \"pattern\": \"a*\"}", "get_pattern");
    expect_refused(&node_cache, "{\"operation\": \"frobnicate\"}", "operation: 'frobnicate' is not an operation");
    expect_refused(&node_cache, "{\"operation\": 3}", "config.operation: expected one of get set delete exists");
    expect_refused(&node_cache, "{\"operation\": \"get\", \"key\": [1]}", "config.key: expected a string");
    expect_refused(&node_cache, "{\"operation\": \"get\", \"key\": \"k\", \"namespace\": {}}",
                   "config.namespace: expected a string");
    expect_refused(&node_cache, "{\"operation\": \"set\", \"key\": \"k\", \"value\": 1, \"ttl\": \"soon\"}",
                   "config.ttl: expected an integer");
    expect_refused(&node_cache, "{\"operation\": \"set\", \"key\": \"k\", \"value\": 1, \"ttl\": 1e12}",
                   "config.ttl: at most");
    expect_refused(&node_cache, "{\"operation\": \"set\", \"key\": \"k\", \"value\": 1, \"expected_version\": \"1\"}",
                   "config.expected_version");
    expect_refused(&node_cache, "{\"operation\": \"get\", \"backend\": \"hybrid\"}",
                   "config.backend: expected memory or redis (the SDK's file and hybrid backends");
    expect_refused(&node_cache, "{\"operation\": \"get\", \"backend\": \"{{ inputs.b }}\"}",
                   "config.backend: must be written out");
    expect_refused(&node_cache_memory, "{\"operation\": \"get\", \"backend\": \"redis\"}",
                   "config.backend: this node type's backend is memory");
    expect_refused(&node_cache_redis, "{\"operation\": \"get\", \"backend\": \"memory\"}",
                   "config.backend: this node type's backend is redis");
    expect_refused(&node_cache, "{\"operation\": \"get\", \"redis_url\": \"redis://other:6379\"}",
                   "config.redis_url: a Cache node's own Redis is not supported");
    expect_refused(&node_cache, "{\"operation\": \"get\", \"redis_url\": \"{{ env.R }}\"}", "config.redis_url");
    char err[300];
    cr_assert_eq(compile_only(&node_cache, "{\"operation\": \"get\", \"redis_url\": \"redis://localhost:6379\"}", err,
                              sizeof err),
                 0, "%s", err);
    cr_assert_eq(
        compile_only(&node_cache, "{\"operation\": \"{{ inputs.op }}\", \"key\": \"{{ inputs.k }}\"}", err, sizeof err),
        0, "%s", err);
    cr_assert_eq(compile_only(&node_cache_redis, "{\"operation\": \"get\", \"key\": \"k\"}", err, sizeof err), 0, "%s",
                 err);
}

Test(cache_node, ports)
{
    const char *ports[] = {"success",        "value",   "hit",     "key",    "ttl_remaining", "backend_used",
                           "operation_time", "version", "deleted", "exists", "cas_failed",    "error"};
    for (size_t i = 0; i < sizeof ports / sizeof *ports; i++)
        cr_assert(node_cache.has_output(NULL, ports[i]), "%s", ports[i]);
    cr_assert_not(node_cache.has_output(NULL, "result"));
}

/* ------------------------------------------------------------------------ redis without a loop */

Test(cache_node, redis_compare_and_set_fails_as_the_sdk)
{
    /* SDK: CAS is refused on redis before any connection, with the raw key */
    expect(&node_cache_redis,
           "{\"operation\": \"set\", \"key\": \"t\", \"value\": 1, \"namespace\": \"n\", \"expected_version\": 1}",
           NULL,
           "{\"success\": false, \"key\": \"t\", \"backend_used\": \"redis\", \"cas_failed\": true, \"error\": \"CAS "
           "(expected_version) is only supported with backend='memory'. Redis and hybrid backends require server-side "
           "CAS (e.g., Redis WATCH/MULTI).\"}");
}

Test(cache_node, redis_without_a_loop_fails)
{
    expect_fail(&node_cache, "{\"operation\": \"get\", \"key\": \"k\", \"backend\": \"redis\"}", NULL, "internal",
                "backend 'redis'");
}

/* ------------------------------------------------------------------------ through the loader */

static kconfig *g_cfg;
static node_env g_nenv = {"/tmp", 1 << 20, 1000, 1};

static int load_one(const char *type, const char *config, char *msg, size_t msglen)
{
    if (!g_cfg) {
        char err[256];
        cr_assert_eq(config_load(NULL, &g_cfg, err, sizeof err), 0, "%s", err);
    }
    char text[2048];
    snprintf(text, sizeof text, "{\"nodes\": {\"c\": {\"node_type\": \"%s\", \"config\": %s}}, \"connections\": []}",
             type, config);
    json_t *doc = json_loads(text, 0, NULL), *problems = json_array();
    cr_assert_not_null(doc, "%s", text);
    wf_load_env env = {g_cfg, &g_nenv};
    workflow *wf = NULL;
    int rc = workflow_load_json(doc, "wf.json", "wf", &env, &wf, problems);
    msg[0] = '\0';
    if (json_array_size(problems)) {
        char *d = json_dumps(problems, JSON_COMPACT);
        snprintf(msg, msglen, "%s", d);
        free(d);
    }
    int ok = rc == 0 && wf && json_array_size(problems) == 0;
    if (wf)
        workflow_free(wf);
    json_decref(problems);
    json_decref(doc);
    return ok ? 0 : -1;
}

Test(cache_node, sdk_exports_load_and_other_features_are_refused)
{
    char msg[1024];
    /* the SDK's to_dict() of CacheNode(operation="set", key="k", value={"a": 1}, namespace="ns") */
    const char *sdk =
        "{\"operation\": \"set\", \"key\": \"k\", \"value\": {\"a\": 1}, \"namespace\": \"ns\", \"ttl\": 3600, "
        "\"backend\": \"memory\", \"redis_url\": \"redis://localhost:6379\", \"serialization\": \"json\", "
        "\"compression\": false, \"compression_threshold\": 1024, \"eviction_policy\": \"lru\", \"max_memory_items\": "
        "10000, \"tenant_id\": \"\"}";
    cr_assert_eq(load_one("CacheNode", sdk, msg, sizeof msg), 0, "%s", msg);
    cr_assert_eq(load_one("IntelligentCacheNode", sdk, msg, sizeof msg), 0, "%s", msg);
    cr_assert_eq(load_one("InMemoryCacheNode", sdk, msg, sizeof msg), 0, "%s", msg);
    cr_assert_eq(load_one("RedisCacheNode", "{\"operation\": \"get\", \"key\": \"k\"}", msg, sizeof msg), 0, "%s", msg);
    const char *refused[][2] = {
        {"{\"operation\": \"set\", \"key\": \"k\", \"value\": 1, \"compression\": true}", "config.compression"},
        {"{\"operation\": \"get\", \"key\": \"k\", \"serialization\": \"pickle\"}", "config.serialization"},
        {"{\"operation\": \"get\", \"key\": \"k\", \"eviction_policy\": \"lfu\"}", "config.eviction_policy"},
        {"{\"operation\": \"get\", \"key\": \"k\", \"max_memory_items\": 5}", "config.max_memory_items"},
        {"{\"operation\": \"get\", \"key\": \"k\", \"compression_threshold\": 5}", "config.compression_threshold"},
        {"{\"operation\": \"get\", \"key\": \"k\", \"keys\": [\"a\"]}", "config.keys"},
        {"{\"operation\": \"get\", \"key\": \"k\", \"redis_url\": \"redis://10.0.0.1\"}", "config.redis_url"},
        {"{\"operation\": \"get\", \"key\": \"k\", \"colour\": \"blue\"}", "colour"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        cr_assert_neq(load_one("CacheNode", refused[i][0], msg, sizeof msg), 0, "%s loaded", refused[i][0]);
        cr_assert(strstr(msg, refused[i][1]), "'%s' lacks '%s'", msg, refused[i][1]);
    }
    config_free(g_cfg);
    g_cfg = NULL;
}
