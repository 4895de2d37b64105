/* jobs: a job's payload (src/jobs/job.c) both ways, every field and its absence, and hostile payloads
 * refused with a message (run under ASan for the "no leak" half); the records an async job's runs
 * leave (src/store/record.c: queued, unrun, running) parse, with API.md's keys in order and the
 * payload first; store_job_prefix (src/store/store.c) finds the payload's end through strings and
 * nesting, and nothing in records without one or in truncated or garbage text. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/store/store_internal.h"
#include "kailash/engine.h"
#include "kailash/jobs.h"
#include "kailash/util.h"
#include "run_waiter.h"
#include "test_config_dir.h"

#define RUN_ID "0192f7c2-3a4b-7c5d-8e6f-0123456789ab"

/* ---- job_to_json / job_from_json -------------------------------------------------------------- */

static job *full_job(void)
{
    job *j = job_new("orders");
    cr_assert_not_null(j);
    util_copy(j->run_id, sizeof j->run_id, RUN_ID);
    free(j->request_id);
    j->request_id = strdup("req-\"1\"");
    j->principal = strdup("key:ci \xe4\xb8\xad");
    j->roles = json_pack("[s,s]", "admin", "orders:read");
    j->attributes = json_pack("{s:s,s:{s:i}}", "tenant", "acme", "deep", "n", 3);
    json_decref(j->inputs);
    j->inputs = json_pack("{s:i,s:[s,{s:n}]}", "user_id", 42, "list", "a}b", "x");
    j->parameters = json_pack("{s:{s:i}}", "fetch", "timeout_ms", 500);
    j->callback_url = strdup("https://hooks.example/done?a=1&b=2");
    j->hops = 255;
    j->execute = 1;
    return j;
}

static void assert_same_str(const char *a, const char *b, const char *what)
{
    if (!a || !b)
        cr_assert(a == b, "%s: %s vs %s", what, a ? a : "NULL", b ? b : "NULL");
    else
        cr_assert_str_eq(a, b, "%s", what);
}

static void assert_same_json(json_t *a, json_t *b, const char *what)
{
    cr_assert((!a && !b) || (a && b && json_equal(a, b)), "%s differs", what);
}

static void assert_same_job(const job *a, const job *b)
{
    cr_assert_str_eq(a->run_id, b->run_id);
    assert_same_str(a->workflow, b->workflow, "workflow");
    assert_same_str(a->request_id, b->request_id, "request_id");
    assert_same_str(a->principal, b->principal, "principal");
    assert_same_str(a->callback_url, b->callback_url, "callback_url");
    assert_same_json(a->roles, b->roles, "roles");
    assert_same_json(a->attributes, b->attributes, "attributes");
    assert_same_json(a->inputs, b->inputs, "inputs");
    assert_same_json(a->parameters, b->parameters, "parameters");
    cr_assert_eq(a->hops, b->hops);
    cr_assert_eq(a->execute, b->execute);
}

/* j through its payload's text and back (as a Redis entry or a journal line carries it). */
static job *through_text(const job *j)
{
    json_t *p = job_to_json(j);
    cr_assert_not_null(p);
    char *text = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    json_t *back = json_loads(text, JSON_ALLOW_NUL, NULL);
    free(text);
    cr_assert_not_null(back);
    char err[200] = "";
    job *out = job_from_json(back, err, sizeof err);
    json_decref(back);
    cr_assert_not_null(out, "%s", err);
    return out;
}

Test(job, every_field_goes_round)
{
    job *j = full_job();
    json_t *p = job_to_json(j);
    static const char *const keys[] = {"v",          "run_id", "workflow",   "request_id",   "principal", "roles",
                                       "attributes", "inputs", "parameters", "callback_url", "hops",      "execute"};
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v)
    {
        cr_assert_lt(n, sizeof keys / sizeof keys[0]);
        cr_assert_str_eq(k, keys[n++], "jobs.h's order");
    }
    cr_assert_eq(n, sizeof keys / sizeof keys[0]);
    cr_assert_eq(json_integer_value(json_object_get(p, "v")), 1);
    cr_assert(json_is_true(json_object_get(p, "execute")));
    json_decref(p);
    job *back = through_text(j);
    assert_same_job(j, back);
    job_free(back);
    j->execute = 0;
    j->hops = 0;
    back = through_text(j);
    assert_same_job(j, back);
    job_free(back);
    job_free(j);
}

Test(job, the_payload_holds_its_own_references)
{
    job *j = full_job();
    json_t *p = job_to_json(j);
    job_free(j); /* the payload outlives the job it came from */
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(p, "inputs"), "user_id")), 42);
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(p, "roles"), 1)), "orders:read");
    char err[200];
    job *back = job_from_json(p, err, sizeof err);
    json_decref(p); /* and the job outlives its payload */
    cr_assert_not_null(back, "%s", err);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(back->parameters, "fetch"), "timeout_ms")), 500);
    job_free(back);
}

Test(job, null_optional_fields_go_round_as_null)
{
    job *j = job_new("w");
    util_copy(j->run_id, sizeof j->run_id, RUN_ID);
    json_t *p = job_to_json(j);
    static const char *const nulls[] = {"principal", "roles", "attributes", "parameters", "callback_url"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        cr_assert(json_is_null(json_object_get(p, nulls[i])), "%s", nulls[i]);
    cr_assert_str_eq(json_string_value(json_object_get(p, "request_id")), "");
    cr_assert_eq(json_object_size(json_object_get(p, "inputs")), 0);
    json_decref(p);
    job *back = through_text(j);
    assert_same_job(j, back);
    job_free(back);
    job_free(j);
}

Test(job, absent_optional_fields_are_null)
{
    json_t *p = json_pack("{s:i,s:s,s:s,s:s,s:{},s:i}", "v", 1, "run_id", RUN_ID, "workflow", "w", "request_id", "",
                          "inputs", "hops", 3);
    char err[200];
    job *j = job_from_json(p, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    cr_assert_null(j->principal);
    cr_assert_null(j->roles);
    cr_assert_null(j->attributes);
    cr_assert_null(j->parameters);
    cr_assert_null(j->callback_url);
    cr_assert_eq(j->hops, 3);
    cr_assert_eq(j->execute, 0);
    job_free(j);
    json_decref(p);
}

/* A valid payload with key set to the JSON text value (NULL: key removed). */
static json_t *payload_with(const char *key, const char *value)
{
    job *j = full_job();
    json_t *p = job_to_json(j);
    job_free(j);
    if (!value) {
        json_object_del(p, key);
        return p;
    }
    json_t *v = json_loads(value, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    cr_assert_not_null(v, "%s", value);
    json_object_set_new(p, key, v);
    return p;
}

static void assert_refused(json_t *p, const char *field, const char *why)
{
    char err[200] = "";
    job *j = job_from_json(p, err, sizeof err);
    cr_assert_null(j, "%s accepted", why);
    cr_assert(err[0] && strncmp(err, "job: ", 5) == 0, "%s: no message (%s)", why, err);
    if (field)
        cr_assert_not_null(strstr(err, field), "%s: '%s' does not name %s", why, err, field);
}

Test(job, hostile_payloads_are_refused_with_a_message)
{
    static const struct {
        const char *key, *value; /* value NULL: the key removed */
        const char *named;       /* what the message names */
    } cases[] = {
        {"v", NULL, "version"},
        {"v", "2", "version"},
        {"v", "\"1\"", "version"},
        {"v", "1.0", "version"},
        {"run_id", "\"0192f7c2-3a4b-7c5d-8e6f-0123456789a\"", "run_id"},
        {"run_id", "\"0192f7c2-3a4b-7c5d-8e6f-0123456789abc\"", "run_id"},
        {"run_id", "\"0192f7c2x3a4b-7c5d-8e6f-0123456789ab\"", "run_id"},
        {"run_id", "\"../../etc/passwd\"", "run_id"},
        {"run_id", "7", "run_id"},
        {"run_id", NULL, "run_id"},
        {"workflow", "\"\"", "workflow"},
        {"workflow", NULL, "workflow"},
        {"workflow", "42", "workflow"},
        {"workflow", "[\"orders\"]", "workflow"},
        /* fuzz_job found these: a NUL cut the text short (the job ran another workflow, or kept
         * another id, than its payload said) */
        {"workflow", "\"admin\\u0000x\"", "workflow"},
        {"run_id", "\"0192f7c2-3a4b-7c5d-8e6f-0123456789ab\\u0000zz\"", "run_id"},
        {"request_id", NULL, "request_id"},
        {"request_id", "null", "request_id"},
        {"request_id", "1", "request_id"},
        {"principal", "\"key:a\\u0000admin\"", "principal"},
        {"principal", "true", "principal"},
        {"callback_url", "\"https://ok.example/\\u0000@evil.example\"", "callback_url"},
        {"callback_url", "{}", "callback_url"},
        {"roles", "\"admin\"", "roles"},
        {"roles", "{\"admin\":true}", "roles"},
        {"attributes", "[\"tenant\"]", "attributes"},
        {"attributes", "\"acme\"", "attributes"},
        {"inputs", NULL, "inputs"},
        {"inputs", "null", "inputs"},
        {"inputs", "[1,2]", "inputs"},
        {"parameters", "\"fetch\"", "parameters"},
        {"parameters", "[]", "parameters"},
        {"hops", "-1", "hops"},
        {"hops", "256", "hops"},
        {"hops", "\"3\"", "hops"},
        {"hops", "3.5", "hops"},
        {"hops", NULL, "hops"},
        {"execute", "\"true\"", "execute"},
        {"execute", "1", "execute"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char why[160];
        snprintf(why, sizeof why, "%s = %s", cases[i].key, cases[i].value ? cases[i].value : "(absent)");
        json_t *p = payload_with(cases[i].key, cases[i].value);
        assert_refused(p, cases[i].named, why);
        json_decref(p);
    }
}

/* A JSON string text of n bytes of 'a' (n < 2000), in a static buffer. */
static const char *quoted(size_t n)
{
    static char text[2003];
    text[0] = '"';
    memset(text + 1, 'a', n);
    text[n + 1] = '"';
    text[n + 2] = '\0';
    return text;
}

Test(job, long_strings_are_refused)
{
    static const struct {
        const char *key;
        size_t ok, over; /* the longest accepted, and one over */
    } cases[] = {
        {"request_id", 1024, 1025}, {"principal", 1024, 1025}, {"callback_url", 1024, 1025}, {"workflow", 128, 129}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *p = payload_with(cases[i].key, quoted(cases[i].over));
        char why[64];
        snprintf(why, sizeof why, "%s of %zu bytes", cases[i].key, cases[i].over);
        assert_refused(p, cases[i].key, why);
        json_decref(p);
        p = payload_with(cases[i].key, quoted(cases[i].ok));
        char err[200];
        job *j = job_from_json(p, err, sizeof err);
        cr_assert_not_null(j, "%s at %zu: %s", cases[i].key, cases[i].ok, err);
        json_t *back = job_to_json(j);
        cr_assert_eq(json_string_length(json_object_get(back, cases[i].key)), cases[i].ok);
        json_decref(back);
        job_free(j);
        json_decref(p);
    }
}

Test(job, what_is_not_an_object_is_refused)
{
    static const char *const texts[] = {"[]", "null", "\"job\"", "1", "[{\"v\":1}]", "{}", "{\"v\":1}"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        json_t *p = json_loads(texts[i], JSON_DECODE_ANY, NULL);
        cr_assert_not_null(p);
        assert_refused(p, NULL, texts[i]);
        json_decref(p);
    }
    char err[200] = "";
    cr_assert_null(job_from_json(NULL, err, sizeof err));
    cr_assert(err[0]);
}

/* ---- records of async runs -------------------------------------------------------------------- */

static const char *const record_keys[] = {"run_id",     "workflow",   "version",     "status",      "inputs",
                                          "outputs",    "error",      "cache",       "principal",   "request_id",
                                          "created_at", "started_at", "finished_at", "duration_ms", NULL};

/* text parses as one object whose keys are API.md's, in order, led by "job" when with_job. The parsed
 * record (a new reference). */
static json_t *assert_record(const char *text, size_t len, int with_job)
{
    json_error_t je;
    json_t *rec = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    cr_assert_not_null(rec, "%s: %.300s", je.text, text);
    const char *k;
    json_t *v;
    size_t n = 0;
    int first = 1;
    json_object_foreach(rec, k, v)
    {
        if (first && with_job) {
            cr_assert_str_eq(k, "job", "the payload first: %.300s", text);
            first = 0;
            continue;
        }
        first = 0;
        cr_assert_not_null(record_keys[n], "an extra key %s", k);
        cr_assert_str_eq(k, record_keys[n], "%.300s", text);
        n++;
    }
    cr_assert_null(record_keys[n], "keys missing: %.300s", text);
    return rec;
}

/* The payload text of j (compact, as jobs.c keeps it), malloc'd. */
static char *payload_text(const job *j)
{
    json_t *p = job_to_json(j);
    char *s = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    cr_assert_not_null(s);
    return s;
}

/* store_job_prefix on a record made with payload: it ends where the payload ends, and the record
 * without it is the record less its "job". */
static void assert_prefix(const char *rec, size_t len, const char *payload)
{
    size_t k = store_job_prefix(rec, len);
    cr_assert_eq(k, 7 + strlen(payload), "%.200s", rec);
    cr_assert_eq(rec[k], ',');
    cr_assert(memcmp(rec + 7, payload, strlen(payload)) == 0);
}

Test(records, queued_with_and_without_its_payload)
{
    job *j = full_job();
    char *payload = payload_text(j);
    store_queued q = {RUN_ID, "orders", "3", "key:ci", "req-1", j->inputs, NULL, 0};
    buf b = {0};
    cr_assert_eq(store_record_queued(&q, &b), 0);
    json_t *rec = assert_record(b.data, b.len, 0);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "status")), "queued");
    cr_assert_str_eq(json_string_value(json_object_get(rec, "cache")), "BYPASS");
    cr_assert(json_equal(json_object_get(rec, "inputs"), j->inputs));
    static const char *const nulls[] = {"outputs", "error", "started_at", "finished_at", "duration_ms"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        cr_assert(json_is_null(json_object_get(rec, nulls[i])), "%s", nulls[i]);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "created_at")), "2024-11-04T15:19:14.251Z");
    cr_assert_eq(store_job_prefix(b.data, b.len), 0, "no payload: nothing to strip");
    json_t *plain = rec;
    buf_free(&b);

    q.job_json = payload, q.job_len = strlen(payload);
    cr_assert_eq(store_record_queued(&q, &b), 0);
    rec = assert_record(b.data, b.len, 1);
    json_t *job_back = json_object_get(rec, "job");
    char err[200];
    job *back = job_from_json(job_back, err, sizeof err);
    cr_assert_not_null(back, "%s", err);
    assert_same_job(j, back);
    assert_prefix(b.data, b.len, payload);
    json_object_del(rec, "job");
    cr_assert(json_equal(rec, plain), "the same record besides its payload");
    job_free(back);
    json_decref(rec);
    json_decref(plain);
    buf_free(&b);
    free(payload);
    job_free(j);
}

Test(records, queued_without_inputs_or_request_id)
{
    store_queued q = {RUN_ID, "w", NULL, "anonymous", "", NULL, "{\"v\":1}", 7};
    buf b = {0};
    cr_assert_eq(store_record_queued(&q, &b), 0);
    json_t *rec = assert_record(b.data, b.len, 1);
    cr_assert_eq(json_object_size(json_object_get(rec, "inputs")), 0);
    cr_assert(json_is_null(json_object_get(rec, "version")));
    cr_assert(json_is_null(json_object_get(rec, "request_id")));
    cr_assert_eq(store_job_prefix(b.data, b.len), 14);
    json_decref(rec);
    buf_free(&b);
}

Test(records, unrun_has_its_error_and_never_started)
{
    json_t *in = json_pack("{s:s}", "q", "\"}],\\");
    store_unrun u = {RUN_ID, "orders",    "key:ci",    "req-2",
                     in,     "cancelled", "cancelled", "cancelled before it \"started\""};
    buf b = {0};
    cr_assert_eq(store_record_unrun(&u, &b), 0);
    json_t *rec = assert_record(b.data, b.len, 0);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "status")), "cancelled");
    json_t *e = json_object_get(rec, "error");
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "cancelled");
    cr_assert_str_eq(json_string_value(json_object_get(e, "message")), "cancelled before it \"started\"");
    cr_assert(json_is_null(json_object_get(e, "node")));
    cr_assert(json_is_null(json_object_get(rec, "started_at")));
    cr_assert(json_is_null(json_object_get(rec, "duration_ms")));
    cr_assert(json_equal(json_object_get(rec, "inputs"), in));
    cr_assert_eq(store_job_prefix(b.data, b.len), 0);
    json_decref(rec);
    json_decref(in);
    buf_free(&b);
}

/* ---- store_job_prefix on payloads with every awkward byte -------------------------------------- */

Test(job_prefix, ends_where_the_payload_ends)
{
    static const char *const strings[] = {"}",   "]",       ",",         "\"",     "\\",       "\\\"",
                                          "a\\", "\"}\",{", "{\"job\":", "]]]}}}", "\\\\\\\"", "\xe4\xb8\xad,}"};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        job *j = full_job();
        free(j->principal);
        j->principal = strdup(strings[i]);
        json_object_set_new(j->inputs, strings[i], json_pack("{s:[s,{s:s}]}", strings[i], strings[i], "k", strings[i]));
        char *payload = payload_text(j);
        store_queued q = {RUN_ID, "orders", "1", "p", "r", j->inputs, payload, strlen(payload)};
        buf b = {0};
        cr_assert_eq(store_record_queued(&q, &b), 0);
        assert_prefix(b.data, b.len, payload);
        json_decref(assert_record(b.data, b.len, 1));
        buf_free(&b);
        free(payload);
        job_free(j);
    }
}

Test(job_prefix, hand_written_values)
{
    static const struct {
        const char *text;
        size_t want;
    } cases[] = {
        {"{\"job\":{},\"run_id\":1}", 9},
        {"{\"job\":[],\"a\":1}", 9},
        {"{\"job\":\"\",\"a\":1}", 9},
        {"{\"job\":\"\\\\\",\"a\":1}", 11},      /* "\\" */
        {"{\"job\":\"\\\"\",\"a\":1}", 11},      /* "\"" */
        {"{\"job\":\"\\\\\\\"}\",\"a\":1}", 14}, /* "\\\"}" */
        {"{\"job\":{\"a\":{\"b\":[1,[2,{}]]}},\"x\":2}", 29},
        {"{\"job\":{\"s\":\"}}}]]],,,\"},\"x\":2}", 24},
        {"{\"job\":123,\"a\":1}", 10},
        {"{\"job\":null,\"a\":1}", 11},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t k = store_job_prefix(cases[i].text, strlen(cases[i].text));
        cr_assert_eq(k, cases[i].want, "%s: %zu", cases[i].text, k);
        cr_assert_eq(cases[i].text[k], ',');
    }
}

Test(job_prefix, nothing_in_records_without_it_or_truncated_or_garbage)
{
    static const char *const none[] = {
        "",
        "{",
        "{\"job\":",
        "{\"job\"",
        "{\"jobs\":{},\"a\":1}",
        "{\"run_id\":\"x\",\"job\":{},\"a\":1}",
        " {\"job\":{},\"a\":1}",
        "{\"job\":{}}",
        "{\"job\":{},", /* nothing after the comma is still a comma: see below */
        "{\"job\":}",
        "{\"job\":]",
        "{\"job\":}}}},",
        "{\"job\":\"abc",
        "{\"job\":\"abc\\",
        "{\"job\":\"abc\\\"",
        "{\"job\":{\"a\":\"}\"",
        "{\"job\":[[[[[[",
        "{\"job\":{}x",
        "{\"job\":\"\"\"",
    };
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        size_t n = strlen(none[i]);
        char *exact = malloc(n ? n : 1); /* exactly n bytes, no NUL after: ASan sees any read past */
        memcpy(exact, none[i], n);
        size_t k = store_job_prefix(exact, n);
        if (strcmp(none[i], "{\"job\":{},") == 0)
            cr_assert_eq(k, 9, "a record cut right after the comma still has its payload's end");
        else
            cr_assert_eq(k, 0, "%s: %zu", none[i], k);
        free(exact);
    }
    /* a real record cut anywhere before the comma */
    job *j = full_job();
    char *payload = payload_text(j);
    store_queued q = {RUN_ID, "orders", "1", "p", "r", j->inputs, payload, strlen(payload)};
    buf b = {0};
    cr_assert_eq(store_record_queued(&q, &b), 0);
    size_t end = 7 + strlen(payload);
    for (size_t n = 0; n <= b.len; n++) {
        char *exact = malloc(n ? n : 1);
        memcpy(exact, b.data, n);
        size_t k = store_job_prefix(exact, n);
        cr_assert_eq(k, n > end ? end : 0, "cut at %zu of %zu: %zu", n, b.len, k);
        free(exact);
    }
    buf_free(&b);
    free(payload);
    job_free(j);
}

/* ---- store_record_of_running: an async run's records, from the engine ------------------------- */

static kconfig *cfg;
static char dir[64];
static registry *reg;
static buf started; /* the running record the sink wrote as the run began */
static const char *sink_payload;

static void on_start(const run *r)
{
    buf_free(&started);
    cr_assert_eq(store_record_of_running(r, sink_payload, sink_payload ? strlen(sink_payload) : 0, &started), 0);
}

static const engine_sink test_sink = {.name = "test_jobs", .on_run_start = on_start};

static void engine_up(void)
{
    char err[256];
    cfg = test_config_dir(dir, "/tmp/kjobsXXXXXX");
    cfg->workers = 1;
    test_config_put(dir, "orders",
                    "{\"version\":\"7\",\"nodes\":{\"t\":{\"node_type\":\"TransformNode\",\"config\":"
                    "{\"template\":{\"got\":\"{{inputs.q}}\"}}}}}");
    cr_assert_eq(engine_start(cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(engine_sink_add(&test_sink), 0);
    reg = registry_load(cfg, engine_node_env(), NULL);
    cr_assert_not_null(registry_find(reg, "orders"));
}

static void engine_down(void)
{
    registry_release(reg);
    engine_stop();
    config_free(cfg);
    buf_free(&started);
}

/* Runs an async run of "orders" to its end; the run (a reference the caller releases). */
static run *run_async(json_t *in)
{
    executor *ex = registry_find(reg, "orders");
    waiter w;
    waiter_init(&w);
    run_opts o = {.request_id = "req-9",
                  .inputs = in,
                  .principal_id = "key:ci",
                  .run_id = RUN_ID,
                  .async = 1,
                  .done = run_waiter_done,
                  .ud = &w};
    run *r = run_create(ex, &o);
    cr_assert_not_null(r);
    run_retain(r);
    cr_assert_eq(exec_submit(ex, r, 0), EXEC_OK);
    wait_done(&w);
    return r;
}

TestSuite(running, .init = engine_up, .fini = engine_down, .timeout = 20);

Test(running, running_and_final_records_with_the_payload_first)
{
    job *j = full_job();
    char *payload = payload_text(j);
    sink_payload = payload;
    json_t *in = json_pack("{s:s}", "q", "}\",");
    run *r = run_async(in);
    cr_assert_gt(started.len, 0, "the sink heard the run begin");
    json_t *rec = assert_record(started.data, started.len, 1);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "status")), "running");
    cr_assert_str_eq(json_string_value(json_object_get(rec, "version")), "7");
    cr_assert_str_eq(json_string_value(json_object_get(rec, "run_id")), RUN_ID);
    cr_assert(json_is_string(json_object_get(rec, "started_at")));
    cr_assert(json_is_null(json_object_get(rec, "finished_at")));
    cr_assert(json_is_null(json_object_get(rec, "duration_ms")));
    cr_assert(json_is_null(json_object_get(rec, "outputs")));
    cr_assert(json_is_null(json_object_get(rec, "error")));
    assert_prefix(started.data, started.len, payload);
    json_decref(rec);

    buf b = {0}; /* the final record: with the payload, and without */
    cr_assert_eq(store_record_of_running(r, payload, strlen(payload), &b), 0);
    rec = assert_record(b.data, b.len, 1);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "status")), "completed");
    cr_assert(json_is_number(json_object_get(rec, "duration_ms")));
    assert_prefix(b.data, b.len, payload);
    json_decref(rec);
    buf_free(&b);
    cr_assert_eq(store_record_of_running(r, NULL, 0, &b), 0);
    rec = assert_record(b.data, b.len, 0);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "principal")), "key:ci");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(rec, "inputs"), "q")), "}\",");
    cr_assert_eq(store_job_prefix(b.data, b.len), 0);
    json_decref(rec);
    buf_free(&b);
    run_release(r);
    json_decref(in);
    free(payload);
    job_free(j);
}

Test(running, a_running_record_without_a_payload_starts_with_run_id)
{
    sink_payload = NULL;
    json_t *in = json_object();
    run *r = run_async(in);
    json_t *rec = assert_record(started.data, started.len, 0);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "status")), "running");
    cr_assert_eq(strncmp(started.data, "{\"run_id\":", 10), 0);
    json_decref(rec);
    run_release(r);
    json_decref(in);
}
