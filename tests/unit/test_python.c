/* test_python: the Python worker pool (src/python/) with real worker processes: the frame codec, a
 * pool's start and stop on a loop, a call, a timeout that kills and replaces the worker, a cancelled
 * call, and the node type's compile. */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kailash/config.h"
#include "kailash/ioloop.h"
#include "kailash/node.h"
#include "kailash/python.h"
#include "kailash/util.h"
#include "wait_count.h"

/* ---- frames ---- */

static json_t *frame_roundtrip(json_t *msg, size_t step)
{
    char *out = NULL, err[160];
    size_t len = 0, cap = 0;
    cr_assert_eq(py_frame_encode(msg, &out, &len, &cap), 0);
    py_reader r;
    py_reader_init(&r);
    json_t *got = NULL;
    for (size_t i = 0; i < len && !got; i += step) {
        cr_assert_eq(py_reader_feed(&r, out + i, i + step <= len ? step : len - i), 0);
        int rc = py_reader_next(&r, &got, err, sizeof err);
        cr_assert(rc == 1 || (rc == 0 && i + step < len), "rc %d at %zu: %s", rc, i, err);
    }
    py_reader_free(&r);
    free(out);
    return got;
}

Test(python_frame, encodes_a_length_then_compact_json)
{
    json_t *m = json_pack("{s:i,s:s}", "id", 7, "s", "é");
    char *out = NULL;
    size_t len = 0, cap = 0;
    cr_assert_eq(py_frame_encode(m, &out, &len, &cap), 0);
    const char *want = "{\"id\":7,\"s\":\"\xc3\xa9\"}";
    cr_assert_eq(len, 4 + strlen(want), "%zu: %.*s", len, (int)len - 4, out + 4);
    cr_assert_eq(memcmp(out, "\0\0\0\x11", 4), 0);
    cr_assert_eq(memcmp(out + 4, want, len - 4), 0);
    free(out);
    json_decref(m);
}

Test(python_frame, decodes_whole_and_byte_by_byte)
{
    json_t *m = json_pack("{s:i,s:[i,s,n],s:{s:b}}", "id", 1, "a", 2, "x", "o", "k", "t", 1);
    for (size_t step = 1; step <= 64; step *= 4) {
        json_t *got = frame_roundtrip(m, step);
        cr_assert(got && json_equal(got, m), "step %zu", step);
        json_decref(got);
    }
    json_decref(m);
}

Test(python_frame, two_frames_in_one_read)
{
    json_t *a = json_pack("{s:i}", "id", 1), *b = json_pack("{s:i}", "id", 2), *got;
    char *out = NULL, err[160];
    size_t len = 0, cap = 0;
    cr_assert_eq(py_frame_encode(a, &out, &len, &cap), 0);
    cr_assert_eq(py_frame_encode(b, &out, &len, &cap), 0);
    py_reader r;
    py_reader_init(&r);
    py_reader_feed(&r, out, len);
    cr_assert_eq(py_reader_next(&r, &got, err, sizeof err), 1);
    cr_assert(json_equal(got, a));
    json_decref(got);
    cr_assert_eq(py_reader_next(&r, &got, err, sizeof err), 1);
    cr_assert(json_equal(got, b));
    json_decref(got);
    cr_assert_eq(py_reader_next(&r, &got, err, sizeof err), 0);
    py_reader_free(&r);
    free(out);
    json_decref(a);
    json_decref(b);
}

static int decode_raw(const char *bytes, size_t n, char *err, size_t errlen)
{
    py_reader r;
    json_t *got = NULL;
    py_reader_init(&r);
    py_reader_feed(&r, bytes, n);
    int rc = py_reader_next(&r, &got, err, errlen);
    json_decref(got);
    py_reader_free(&r);
    return rc;
}

Test(python_frame, refuses_broken_streams)
{
    char err[160];
    cr_assert_eq(decode_raw("\0\0\0\0", 4, err, sizeof err), -1, "length 0");
    cr_assert_eq(decode_raw("\x7f\0\0\0", 4, err, sizeof err), -1, "over PY_FRAME_MAX: refused before any read");
    cr_assert(strstr(err, "bytes"));
    cr_assert_eq(decode_raw("\0\0\0\3{x}", 7, err, sizeof err), -1, "not JSON");
    cr_assert_eq(decode_raw("\0\0\0\0021]", 6, err, sizeof err), -1, "not JSON");
    cr_assert_eq(decode_raw("\0\0\0\002[]", 6, err, sizeof err), -1, "JSON, not an object");
    cr_assert(strstr(err, "not a JSON object"), "%s", err);
    cr_assert_eq(decode_raw("\0\0\0\5{}", 6, err, sizeof err), 0, "partial: waits");
    cr_assert_eq(decode_raw("\0\0", 2, err, sizeof err), 0, "partial length");
}

/* ---- the pool on a loop ---- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_done;
static json_t *g_reply;
static char g_code[32], g_msg[256];

static void on_done(void *ud, json_t *reply, const char *code, const char *message)
{
    (void)ud;
    pthread_mutex_lock(&g_mu);
    g_reply = reply ? json_incref(reply) : NULL;
    snprintf(g_code, sizeof g_code, "%s", code ? code : "");
    snprintf(g_msg, sizeof g_msg, "%s", message ? message : "");
    g_done++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static ioloop *g_io;

static void pool_setup(void)
{
    char err[256], here[PATH_MAX], runner[PATH_MAX + 64];
    kconfig *cfg;
    cr_assert_eq(config_load(NULL, &cfg, err, sizeof err), 0, "%s", err);
    cr_assert(realpath("python/kailash_runner.py", here), "run from the repository's root");
    snprintf(runner, sizeof runner, "%s", here);
    cfg->python_runner = strdup(runner);
    cfg->python_workers = 1;
    g_io = ioloop_create(err, sizeof err);
    cr_assert(g_io, "%s", err);
    python_pool_configure(cfg, &g_io, 1);
    config_free(cfg);
}

typedef struct call_args {
    const char *code;
    uint64_t code_id;
    const char *inputs;
    double timeout_ms;
    py_call *pc;
} call_args;

static void do_call(void *ud)
{
    call_args *a = ud;
    json_t *in = json_loads(a->inputs, 0, NULL);
    py_request rq = {a->code_id, a->code, in, a->timeout_ms, 0};
    char msg[200];
    a->pc = python_call(g_io, &rq, on_done, NULL, msg, sizeof msg);
    cr_assert(a->pc, "%s", msg);
    json_decref(in);
}

/* Runs one call and waits for its end; the reply is in g_reply (caller decrefs) or g_code. */
static void call_and_wait(const char *code, uint64_t id, const char *inputs, double timeout_ms)
{
    call_args a = {code, id, inputs, timeout_ms, NULL};
    int before = g_done;
    ioloop_call(g_io, do_call, &a);
    cr_assert_eq(wait_count_on(&g_mu, &g_cv, &g_done, before + 1, 20000), before + 1, "no answer");
}

typedef struct pids_args {
    int pids[4];
    int n;
} pids_args;

static void get_pids(void *ud)
{
    pids_args *p = ud;
    p->n = python_pool_pids(g_io, p->pids, 4);
}

static int pool_pid(void)
{
    for (int i = 0; i < 1000; i++) {
        pids_args p = {{0}, 0};
        ioloop_call(g_io, get_pids, &p);
        if (p.n == 1)
            return p.pids[0];
        usleep(10000);
    }
    return 0;
}

Test(python_pool, starts_a_worker_and_stops_it_with_the_loop, .init = pool_setup)
{
    python_pool_warm();
    int pid = pool_pid();
    cr_assert(pid > 0, "no worker started");
    cr_assert_eq(kill(pid, 0), 0);
    char why[200];
    cr_assert_eq(python_pool_state(why, sizeof why), 1);
    ioloop_destroy(g_io);
    cr_assert_eq(kill(pid, 0), -1, "the worker outlived its loop");
    cr_assert_eq(errno, ESRCH, "the worker was not reaped");
}

Test(python_pool, a_call_and_the_compile_cache, .init = pool_setup)
{
    call_and_wait("result = {'n': n + 1}", 1, "{\"n\": 41}", 5000);
    cr_assert(g_reply, "%s: %s", g_code, g_msg);
    json_t *want = json_loads("{\"ok\": true, \"outputs\": {\"result\": {\"n\": 42}}}", 0, NULL);
    json_object_del(g_reply, "id");
    cr_assert(json_equal(g_reply, want));
    json_decref(g_reply);
    /* The same code id again: the worker uses what it compiled (the code text is not looked at). */
    call_and_wait("this is not even Python", 1, "{\"n\": 1}", 5000);
    cr_assert(g_reply && json_is_true(json_object_get(g_reply, "ok")), "%s", g_msg);
    json_decref(g_reply);
    call_and_wait("raise ValueError('no')", 2, "{}", 5000);
    cr_assert(g_reply && json_is_false(json_object_get(g_reply, "ok")));
    cr_assert(strstr(json_string_value(json_object_get(g_reply, "error")), "ValueError: no"));
    json_decref(g_reply);
    json_decref(want);
    ioloop_destroy(g_io);
}

Test(python_pool, a_timeout_kills_and_replaces_the_worker, .init = pool_setup)
{
    python_pool_warm();
    int first = pool_pid();
    cr_assert(first > 0);
    double t0 = util_now_ms();
    call_and_wait("while True:\n    pass", 3, "{}", 300);
    cr_assert_null(g_reply);
    cr_assert_str_eq(g_code, "timeout");
    cr_assert(strstr(g_msg, "killed and replaced"), "%s", g_msg);
    cr_assert(util_now_ms() - t0 < 3000);
    int second = pool_pid();
    cr_assert(second > 0 && second != first, "not replaced (%d, %d)", first, second);
    cr_assert_eq(kill(first, 0), -1, "the old worker still runs");
    call_and_wait("result = 5", 4, "{}", 5000);
    cr_assert(g_reply && json_is_true(json_object_get(g_reply, "ok")), "%s", g_msg);
    json_decref(g_reply);
    ioloop_destroy(g_io);
}

typedef struct cancel_args {
    call_args slow, queued;
} cancel_args;

static void do_two_and_cancel(void *ud)
{
    cancel_args *c = ud;
    do_call(&c->slow);
    do_call(&c->queued);
    python_call_cancel(c->queued.pc); /* queued behind the slow one: withdrawn, never answered */
}

Test(python_pool, a_cancelled_call_is_never_answered, .init = pool_setup)
{
    cancel_args c = {{"import time\ntime.sleep(0.2)\nresult = 1", 5, "{}", 5000, NULL},
                     {"result = 2", 6, "{}", 5000, NULL}};
    int before = g_done;
    ioloop_call(g_io, do_two_and_cancel, &c);
    cr_assert_eq(wait_count_on(&g_mu, &g_cv, &g_done, before + 1, 5000), before + 1);
    usleep(300000);
    cr_assert_eq(g_done, before + 1, "the cancelled call was answered");
    json_decref(g_reply);
    ioloop_destroy(g_io);
}

/* ---- the node type's compile ---- */

extern const node_type node_python_code, node_python_code_async;
static const node_env test_env = {"/tmp", 1 << 20, 1000, 1};

static int compile_text(const node_type *t, const char *config, char *err, size_t errlen)
{
    json_t *cfg = json_loads(config, 0, NULL);
    void *compiled = NULL;
    int rc = t->compile(&test_env, cfg, &compiled, err, errlen);
    if (rc == 0)
        t->free(compiled);
    json_decref(cfg);
    return rc;
}

Test(python_node, compile_checks_the_sdk_config)
{
    char err[256];
    cr_assert_eq(compile_text(&node_python_code,
                              "{\"code\": \"result = 1\", \"function\": null, "
                              "\"sandbox_mode\": \"restricted\", \"timeout\": 5}",
                              err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(compile_text(&node_python_code, "{}", err, sizeof err), -1);
    cr_assert(strstr(err, "config.code: required"));
    cr_assert_eq(compile_text(&node_python_code, "{\"code\": \"x\", \"class_type\": \"C\"}", err, sizeof err), -1);
    cr_assert(strstr(err, "config.class_type"));
    cr_assert_eq(compile_text(&node_python_code, "{\"code\": \"x\", \"sandbox_mode\": \"trusted\"}", err, sizeof err),
                 -1);
    cr_assert_eq(compile_text(&node_python_code, "{\"code\": \"x\", \"timeout\": 0}", err, sizeof err), -1);
    cr_assert(strstr(err, "config.timeout"));
    cr_assert_eq(compile_text(&node_python_code_async, "{\"code\": \"x = '{{ inputs.a }}'\"}", err, sizeof err), -1);
    cr_assert(strstr(err, "template"));
    cr_assert_eq(compile_text(&node_python_code_async, "{\"code\": \"await f()\", \"max_concurrent_tasks\": 10}", err,
                              sizeof err),
                 0, "%s", err);
}
