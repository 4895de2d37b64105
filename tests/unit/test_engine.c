/* engine: data flow, switch skipping, on_error, outputs, parameters, timeouts and the bulkhead, with
 * the real worker pool and I/O loop. A "stuck" upstream is a listening socket nobody answers on. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "run_waiter.h"
#include "test_config_dir.h"
#include "kailash/engine.h"
#include "kailash/ioloop.h"
#include "kailash/upstream.h"
#include "kailash/util.h"

static kconfig *cfg;
static char dir[64];
static registry *reg;
static int stuck_port;
static int stuck_fd = -1;

static void put(const char *name, const char *text)
{
    test_config_put(dir, name, text);
}

static void open_stuck_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    stuck_fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(bind(stuck_fd, (struct sockaddr *)&a, sizeof a) == 0);
    cr_assert(listen(stuck_fd, 64) == 0);
    getsockname(stuck_fd, (struct sockaddr *)&a, &len);
    stuck_port = ntohs(a.sin_port);
}

/* An upstream that answers each connection after 200 ms, one at a time, then closes it. */
static int slow_fd = -1, slow_port;
static pthread_t slow_thread;

static void *slow_main(void *arg)
{
    (void)arg;
    static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    for (;;) {
        int c = accept(slow_fd, NULL, NULL);
        if (c < 0)
            return NULL;
        char req[4096];
        usleep(200 * 1000);
        if (recv(c, req, sizeof req, MSG_DONTWAIT) >= 0 && send(c, answer, sizeof answer - 1, MSG_NOSIGNAL) < 0)
            perror("slow upstream");
        close(c);
    }
}

static void open_slow_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    slow_fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(bind(slow_fd, (struct sockaddr *)&a, sizeof a) == 0);
    cr_assert(listen(slow_fd, 64) == 0);
    getsockname(slow_fd, (struct sockaddr *)&a, &len);
    slow_port = ntohs(a.sin_port);
    pthread_create(&slow_thread, NULL, slow_main, NULL);
}

static void setup(void)
{
    char err[256], slow[512];
    cfg = test_config_dir(dir, "/tmp/kengXXXXXX");
    cfg->workers = 2;
    open_stuck_port();
    put("route",
        "{\"nodes\":{\"src\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":{\"n\":\"{{inputs.n}}\"}}},"
        "\"sw\":{\"node_type\":\"SwitchNode\",\"config\":{\"condition_field\":\"n\",\"operator\":\">\",\"value\":10}},"
        "\"hi\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":{\"size\":\"big\",\"n\":\"{{params.data.n}}"
        "\"}}},"
        "\"lo\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":{\"size\":\"small\"}}},"
        "\"after_lo\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":\"{{params.data.size}}\"}},"
        "\"out\":{\"node_type\":\"MergeNode\",\"config\":{\"merge_type\":\"merge_dict\"}}},"
        "\"connections\":[{\"source_node\":\"src\",\"source_output\":\"result\",\"target_node\":\"sw\",\"target_"
        "input\":\"input_data\"},"
        "{\"source_node\":\"sw\",\"source_output\":\"true_output\",\"target_node\":\"hi\",\"target_input\":\"data\"},"
        "{\"source_node\":\"sw\",\"source_output\":\"false_output\",\"target_node\":\"lo\",\"target_input\":\"data\"},"
        "{\"source_node\":\"lo\",\"source_output\":\"result\",\"target_node\":\"after_lo\",\"target_input\":\"data\"},"
        "{\"source_node\":\"hi\",\"source_output\":\"result\",\"target_node\":\"out\",\"target_input\":\"data1\"},"
        "{\"source_node\":\"lo\",\"source_output\":\"result\",\"target_node\":\"out\",\"target_input\":\"data2\"}],"
        "\"gateway\":{\"outputs\":{\"decision\":\"out.merged_data\",\"size\":\"out.merged_data.size\"}}}");
    put("fails", "{\"nodes\":{\"read\":{\"node_type\":\"JSONReaderNode\",\"config\":{\"file_path\":\"missing.json\"}},"
                 "\"soft\":{\"node_type\":\"JSONReaderNode\",\"config\":{\"file_path\":\"missing.json\",\"on_error\":"
                 "\"continue\"}}}}");
    put("soft", "{\"nodes\":{\"soft\":{\"node_type\":\"JSONReaderNode\",\"config\":{\"file_path\":\"missing.json\","
                "\"on_error\":\"continue\"}},"
                "\"next\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":1}},"
                "\"ok\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":{\"v\":\"{{inputs.v}}\"}}}},"
                "\"connections\":[{\"source_node\":\"soft\",\"source_output\":\"data\",\"target_node\":\"next\","
                "\"target_input\":\"data\"}]}");
    put("params", "{\"nodes\":{\"w\":{\"node_type\":\"JSONWriterNode\",\"config\":{\"file_path\":\"p.json\",\"data\":{"
                  "\"from\":\"config\"}}},"
                  "\"t\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":\"{{params.extra}}\"}}}}");
    snprintf(slow, sizeof slow,
             "{\"nodes\":{\"call\":{\"node_type\":\"HTTPRequestNode\",\"config\":{\"url\":\"http://127.0.0.1:%d/x\","
             "\"timeout\":30}}},\"gateway\":{\"timeout_ms\":300,\"executor\":{\"max_concurrency\":1,\"max_queue\":1}}}",
             stuck_port);
    put("stuck", slow);
    snprintf(slow, sizeof slow,
             "{\"nodes\":{\"call\":{\"node_type\":\"HTTPRequestNode\",\"config\":{\"url\":\"http://127.0.0.1:%d/x\","
             "\"timeout\":30}}},\"gateway\":{\"timeout_ms\":20000,\"executor\":{\"max_concurrency\":1,"
             "\"max_queue\":2}}}",
             stuck_port);
    put("held", slow);
    /* a node that runs on the pool (it may block), then an I/O node: where does the call go? */
    snprintf(slow, sizeof slow,
             "{\"nodes\":{\"w\":{\"node_type\":\"JSONWriterNode\",\"config\":{\"file_path\":\"h.json\","
             "\"data\":{\"a\":1}}},\"call\":{\"node_type\":\"HTTPRequestNode\",\"config\":{\"url\":"
             "\"http://127.0.0.1:%d/x\",\"method\":\"POST\",\"timeout\":30}}},\"connections\":[{\"source_node\":"
             "\"w\",\"source_output\":\"file_path\",\"target_node\":\"call\",\"target_input\":\"json_data\"}],"
             "\"gateway\":{\"timeout_ms\":300}}",
             stuck_port);
    put("home", slow);
    /* one slot, one queue place, a long deadline: a queued run gets its slot long before it */
    open_slow_port();
    snprintf(slow, sizeof slow,
             "{\"nodes\":{\"call\":{\"node_type\":\"HTTPRequestNode\",\"config\":{\"url\":\"http://127.0.0.1:%d/x\","
             "\"timeout\":30}}},\"gateway\":{\"timeout_ms\":10000,\"executor\":{\"max_concurrency\":1,\"max_queue\":1}}}",
             slow_port);
    put("gate", slow);
    cr_assert_eq(engine_start(cfg, err, sizeof err), 0, "%s", err);
    reg = registry_load(cfg, engine_node_env(), NULL);
    cr_assert_eq(json_array_size(registry_problems(reg)), 0, "%s", json_dumps(registry_problems(reg), 0));
}

static void teardown(void)
{
    registry_release(reg);
    engine_stop();
    config_free(cfg);
    close(stuck_fd);
    shutdown(slow_fd, SHUT_RDWR); /* ends slow_main's accept */
    pthread_join(slow_thread, NULL);
    close(slow_fd);
}

TestSuite(engine, .init = setup, .fini = teardown, .timeout = 20);

static run *start(const char *name, const char *inputs, const char *params, waiter *w, int *rc)
{
    executor *ex = registry_find(reg, name);
    cr_assert_not_null(ex, "%s", name);
    json_t *in = json_loads(inputs, 0, NULL), *pa = params ? json_loads(params, 0, NULL) : NULL;
    waiter_init(w);
    run_opts o = {.request_id = "req-1", .inputs = in, .parameters = pa, .done = run_waiter_done, .ud = w};
    run *r = run_create(ex, &o);
    json_decref(in);
    json_decref(pa);
    run_retain(r);
    *rc = exec_submit(ex, r, 0);
    if (*rc != EXEC_OK)
        run_release(r);
    return r;
}

static run *run_sync(const char *name, const char *inputs, const char *params)
{
    waiter w;
    int rc;
    run *r = start(name, inputs, params, &w, &rc);
    cr_assert_eq(rc, EXEC_OK);
    wait_done(&w);
    return r;
}

typedef struct home_arg {
    waiter w;
    run *r;
} home_arg;

/* On a loop thread, as the front end does: create the run and let the executor start it. */
static void start_on_loop(void *ud)
{
    home_arg *a = ud;
    executor *ex = registry_find(reg, "home");
    waiter_init(&a->w);
    run_opts o = {.request_id = "req-home", .done = run_waiter_done, .ud = &a->w};
    a->r = run_create(ex, &o);
    run_retain(a->r);
    cr_assert_eq(exec_submit(ex, a->r, 1), EXEC_OK);
}

Test(engine, io_nodes_start_on_the_loop_the_run_came_from)
{
    int n;
    ioloop *const *loops = engine_loops(&n);
    cr_assert_eq(n, 2);
    for (int round = 0; round < 8; round++) {
        int home = (round / 2) % 2; /* not alternating: the pool hands tasks to its threads in turn */
        size_t before[2] = {upstream_inflight(loops[0]), upstream_inflight(loops[1])};
        home_arg a;
        cr_assert_eq(ioloop_call(loops[home], start_on_loop, &a), 0);
        /* the writer runs on a pool thread; the call it leads to must still go out on `home` */
        for (int i = 0; i < 400 && upstream_inflight(loops[0]) + upstream_inflight(loops[1]) == before[0] + before[1]; i++)
            usleep(5000);
        cr_assert_eq(upstream_inflight(loops[home]), before[home] + 1, "round %d: the call left its home loop", round);
        cr_assert_eq(upstream_inflight(loops[1 - home]), before[1 - home]);
        wait_done(&a.w);
        run_release(a.r);
    }
}

static int has(json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (strcmp(json_string_value(v), s) == 0) return 1;
    return 0;
}

Test(engine, switch_true_branch_skips_false_branch_and_its_dependants)
{
    run *r = run_sync("route", "{\"n\": 42}", NULL);
    cr_assert_eq(run_get_status(r), RUN_COMPLETED, "%s", run_error_message(r));
    json_t *out = run_outputs(r);
    cr_assert_str_eq(json_string_value(json_object_get(out, "size")), "big");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(out, "decision"), "n")), 42);
    json_t *sk = run_skipped(r);
    cr_assert(has(sk, "lo") && has(sk, "after_lo") && !has(sk, "hi"), "%s", json_dumps(sk, 0));
    json_decref(sk);
    cr_assert_null(json_object_get(run_results(r), "lo"));
    cr_assert_str_eq(run_id(r), run_id(r));
    cr_assert_eq(strlen(run_id(r)), 36);
    run_release(r);
}

Test(engine, switch_false_branch)
{
    run *r = run_sync("route", "{\"n\": 3}", NULL);
    cr_assert_eq(run_get_status(r), RUN_COMPLETED);
    cr_assert_str_eq(json_string_value(json_object_get(run_outputs(r), "size")), "small");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(run_results(r), "after_lo"), "result")),
                     "small");
    json_t *sk = run_skipped(r);
    cr_assert(has(sk, "hi") && !has(sk, "lo"));
    json_decref(sk);
    run_release(r);
}

Test(engine, failing_node_fails_the_run_with_its_id)
{
    run *r = run_sync("fails", "{}", NULL);
    cr_assert_eq(run_get_status(r), RUN_FAILED);
    cr_assert_str_eq(run_error_code(r), "internal");
    cr_assert_str_eq(run_error_node(r), "read");
    cr_assert_null(run_outputs(r));
    run_release(r);
}

Test(engine, on_error_continue_records_error_and_skips_dependants)
{
    run *r = run_sync("soft", "{\"v\": 7}", NULL);
    cr_assert_eq(run_get_status(r), RUN_COMPLETED, "%s", run_error_message(r));
    json_t *soft = json_object_get(run_results(r), "soft");
    cr_assert(json_is_true(json_object_get(soft, "failed")));
    cr_assert_not_null(json_object_get(json_object_get(soft, "error"), "message"));
    json_t *sk = run_skipped(r);
    cr_assert(has(sk, "next"));
    json_decref(sk);
    cr_assert_eq(
        json_integer_value(json_object_get(json_object_get(json_object_get(run_outputs(r), "ok"), "result"), "v")), 7);
    run_release(r);
}

Test(engine, inputs_and_parameters_layer_over_config)
{
    /* inputs.extra reaches no node (not a parameter of any); parameters.t.extra does. */
    run *r = run_sync("params", "{\"extra\": 1, \"data\": {\"from\": \"inputs\"}}", "{\"t\": {\"extra\": \"p\"}}");
    cr_assert_eq(run_get_status(r), RUN_COMPLETED, "%s", run_error_message(r));
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(run_results(r), "t"), "result")), "p");
    char path[128];
    snprintf(path, sizeof path, "%s/data/p.json", dir);
    json_t *written = json_load_file(path, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(written, "from")), "inputs", "workflow input overrides config");
    json_decref(written);
    run_release(r);
    r = run_sync("params", "{}", "{\"w\": {\"data\": {\"from\": \"parameters\"}}}");
    written = json_load_file(path, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(written, "from")), "parameters");
    json_decref(written);
    run_release(r);
}

Test(engine, run_past_its_timeout_ends_as_timeout)
{
    run *r = run_sync("stuck", "{}", NULL);
    cr_assert_eq(run_get_status(r), RUN_TIMEOUT);
    cr_assert_str_eq(run_error_code(r), "timeout");
    cr_assert_geq(run_duration_ms(r), 290.0);
    cr_assert_lt(run_duration_ms(r), 5000.0);
    run_release(r);
}

Test(engine, bulkhead_queues_then_refuses)
{
    waiter w1, w2, w3;
    int rc1, rc2, rc3;
    run *a = start("stuck", "{}", NULL, &w1, &rc1);
    run *b = start("stuck", "{}", NULL, &w2, &rc2);
    run *c = start("stuck", "{}", NULL, &w3, &rc3);
    cr_assert_eq(rc1, EXEC_OK);
    cr_assert_eq(rc2, EXEC_OK, "one may wait in the queue");
    cr_assert_eq(rc3, EXEC_OVERLOADED, "the queue holds one");
    cr_assert_eq(exec_queued(registry_find(reg, "stuck")), 1);
    /* Another workflow is not affected. */
    run *other = run_sync("route", "{\"n\": 1}", NULL);
    cr_assert_eq(run_get_status(other), RUN_COMPLETED);
    run_release(other);
    wait_done(&w1);
    wait_done(&w2);
    cr_assert_eq(run_get_status(a), RUN_TIMEOUT);
    cr_assert_eq(run_get_status(b), RUN_TIMEOUT, "the queued run's deadline counts its wait");
    run_release(a);
    run_release(b);
    run_release(c);
    /* done() is called just before the slot is handed back: give it a moment. */
    for (int i = 0; i < 200 && exec_running(registry_find(reg, "stuck")) != 0; i++)
        usleep(5000);
    cr_assert_eq(exec_running(registry_find(reg, "stuck")), 0);
}

/* A queued run that gets its slot lets go of its waiting record (and the deadline timer's reference
 * to it) at once, not at its deadline (10 s away here). */
Test(engine, a_dequeued_run_lets_go_of_its_deadline_timer_at_once)
{
    executor *ex = registry_find(reg, "gate");
    waiter w1, w2;
    int rc1, rc2;
    run *a = start("gate", "{}", NULL, &w1, &rc1);
    run *b = start("gate", "{}", NULL, &w2, &rc2);
    cr_assert_eq(rc1, EXEC_OK);
    cr_assert_eq(rc2, EXEC_OK);
    cr_assert_eq(exec_queued(ex), 1);
    cr_assert_eq(exec_held(ex), 1, "the queued run's record");
    wait_done(&w1);
    wait_done(&w2);
    cr_assert_eq(run_get_status(a), RUN_COMPLETED, "%s", run_error_message(a));
    cr_assert_eq(run_get_status(b), RUN_COMPLETED, "%s", run_error_message(b));
    double t0 = util_now_ms();
    while (exec_held(ex) != 0 && util_now_ms() - t0 < 2000)
        usleep(2000);
    cr_assert_eq(exec_held(ex), 0, "the record is still held %.0f ms after its run ended", util_now_ms() - t0);
    cr_assert_lt(run_duration_ms(b), 5000.0);
    run_release(a);
    run_release(b);
}

/* A sink the engine holds sees each run's end, before the run's own done callback, with no request
 * needed; flush reaches it too. */
static struct {
    int ends, flushes;
    char run_id[40], workflow[32], request_id[32], error_code[32];
    run_status status;
    int before_done;
} seen_by_sink;
static waiter *sink_waiter;

static void sink_run_end(const run_summary *s)
{
    seen_by_sink.ends++;
    snprintf(seen_by_sink.run_id, sizeof seen_by_sink.run_id, "%s", s->run_id);
    snprintf(seen_by_sink.workflow, sizeof seen_by_sink.workflow, "%s", s->workflow);
    snprintf(seen_by_sink.request_id, sizeof seen_by_sink.request_id, "%s", s->request_id);
    snprintf(seen_by_sink.error_code, sizeof seen_by_sink.error_code, "%s", s->error_code);
    seen_by_sink.status = s->status;
    seen_by_sink.before_done = sink_waiter && !sink_waiter->done;
}

static void sink_flush(void)
{
    seen_by_sink.flushes++;
}

static const engine_sink test_sink = {.name = "test", .on_run_end = sink_run_end, .flush = sink_flush};

Test(engine, sink_sees_each_run_end_and_flush)
{
    cr_assert_eq(engine_sink_add(&test_sink), 0);
    waiter w;
    int rc;
    sink_waiter = &w;
    run *r = start("fails", "{}", NULL, &w, &rc);
    cr_assert_eq(rc, EXEC_OK);
    wait_done(&w);
    cr_assert_eq(seen_by_sink.ends, 1);
    cr_assert(seen_by_sink.before_done, "the sink must hear of the end before the run's done callback");
    cr_assert_str_eq(seen_by_sink.run_id, run_id(r));
    cr_assert_str_eq(seen_by_sink.workflow, "fails");
    cr_assert_str_eq(seen_by_sink.request_id, "req-1");
    cr_assert_eq(seen_by_sink.status, RUN_FAILED);
    cr_assert_str_eq(seen_by_sink.error_code, "internal");
    run_release(r);
    sink_waiter = NULL;
    run_release(run_sync("route", "{\"n\": 1}", NULL));
    cr_assert_eq(seen_by_sink.ends, 2);
    cr_assert_eq(seen_by_sink.status, RUN_COMPLETED);
    cr_assert_str_eq(seen_by_sink.error_code, "");
    engine_sinks_flush();
    cr_assert_eq(seen_by_sink.flushes, 1);
}

static int wait_done_ms(waiter *w, int ms)
{
    for (int i = 0; i < ms / 5; i++) {
        pthread_mutex_lock(&w->mu);
        int d = w->done;
        pthread_mutex_unlock(&w->mu);
        if (d)
            return 1;
        usleep(5000);
    }
    return 0;
}

Test(engine, cancel_ends_a_running_run_and_a_queued_one_at_once)
{
    waiter w1, w2;
    int rc1, rc2;
    executor *ex = registry_find(reg, "held");
    run *a = start("held", "{}", NULL, &w1, &rc1); /* holds the one slot, waiting on a silent upstream */
    run *b = start("held", "{}", NULL, &w2, &rc2); /* waits in the queue */
    cr_assert_eq(rc1, EXEC_OK);
    cr_assert_eq(rc2, EXEC_OK);
    for (int i = 0; i < 200 && exec_queued(ex) != 1; i++)
        usleep(5000);
    cr_assert_eq(exec_queued(ex), 1);
    run_cancel(b);
    cr_assert(wait_done_ms(&w2, 1000), "a queued run was not ended by its cancel");
    cr_assert_eq(run_get_status(b), RUN_CANCELLED);
    cr_assert_str_eq(run_error_code(b), "cancelled");
    cr_assert_eq(exec_queued(ex), 0);
    cr_assert_not(wait_done_ms(&w1, 100));
    run_cancel(a);
    cr_assert(wait_done_ms(&w1, 1000), "a running run was not ended by its cancel");
    cr_assert_eq(run_get_status(a), RUN_CANCELLED);
    for (int i = 0; i < 200 && exec_running(ex) != 0; i++)
        usleep(5000);
    cr_assert_eq(exec_running(ex), 0, "the cancelled run kept its slot");
    run_cancel(a); /* a second cancel, after the end, changes nothing */
    cr_assert_eq(run_get_status(a), RUN_CANCELLED);
    run_release(a);
    run_release(b);
}

Test(engine, cancel_after_the_end_changes_nothing)
{
    run *r = run_sync("route", "{\"n\": 1}", NULL);
    cr_assert_eq(run_get_status(r), RUN_COMPLETED);
    run_cancel(r);
    usleep(20000);
    cr_assert_eq(run_get_status(r), RUN_COMPLETED);
    run_release(r);
}

Test(engine, cancel_all_ends_running_and_queued_runs)
{
    waiter w1, w2;
    int rc1, rc2;
    executor *ex = registry_find(reg, "held");
    run *a = start("held", "{}", NULL, &w1, &rc1);
    run *b = start("held", "{}", NULL, &w2, &rc2);
    for (int i = 0; i < 200 && exec_queued(ex) != 1; i++)
        usleep(5000);
    cr_assert_eq(exec_running(ex), 1);
    cr_assert_eq(exec_queued(ex), 1);
    cr_assert_eq(exec_cancel_all(ex), 2);
    cr_assert(wait_done_ms(&w1, 1000) && wait_done_ms(&w2, 1000));
    cr_assert_eq(run_get_status(a), RUN_CANCELLED);
    cr_assert_eq(run_get_status(b), RUN_CANCELLED);
    for (int i = 0; i < 200 && exec_running(ex) != 0; i++)
        usleep(5000);
    cr_assert_eq(exec_running(ex), 0);
    cr_assert_eq(exec_queued(ex), 0);
    cr_assert_eq(exec_cancel_all(ex), 0);
    run_release(a);
    run_release(b);
}

/* ---- async runs: reservations, ids, deadlines, the cancel table, events ---- */

Test(engine, reservations_hold_queue_places_that_sync_runs_cannot_take)
{
    executor *ex = registry_find(reg, "held"); /* one slot, two queue places */
    waiter w1, w2, w3;
    int rc1, rc2, rc3;
    run *a = start("held", "{}", NULL, &w1, &rc1);
    cr_assert_eq(rc1, EXEC_OK);
    cr_assert_eq(exec_reserve(ex), EXEC_OK);
    cr_assert_eq(exec_reserve(ex), EXEC_OK);
    cr_assert_eq(exec_reserve(ex), EXEC_OVERLOADED, "two places, both held");
    run *b = start("held", "{}", NULL, &w2, &rc2);
    cr_assert_eq(rc2, EXEC_OVERLOADED, "a sync run took a place an async job holds");
    exec_unreserve(ex);
    run *c = start("held", "{}", NULL, &w3, &rc3);
    cr_assert_eq(rc3, EXEC_OK, "a place given back is free again");
    exec_unreserve(ex);
    cr_assert_eq(exec_reserve(ex), EXEC_OK);
    exec_unreserve(ex);
    exec_cancel_all(ex);
    wait_done(&w1);
    wait_done(&w3);
    run_release(a);
    run_release(b);
    run_release(c);
}

static run *start_async(const char *name, const char *id, double created_ms, waiter *w)
{
    executor *ex = registry_find(reg, name);
    cr_assert_eq(exec_reserve(ex), EXEC_OK);
    waiter_init(w);
    run_opts o = {.run_id = id, .created_ms = created_ms, .async = 1, .events = 1, .done = run_waiter_done, .ud = w};
    run *r = run_create(ex, &o);
    cr_assert_not_null(r);
    run_retain(r);
    exec_submit_reserved(ex, r);
    return r;
}

Test(engine, an_async_run_keeps_its_id_and_its_timeout_counts_from_its_start)
{
    waiter w;
    double t0 = util_now_ms();
    run *r = start_async("stuck", "01a240b7-ab0b-7000-bc39-6fe9823e8672", t0 - 10000, &w);
    cr_assert_str_eq(run_id(r), "01a240b7-ab0b-7000-bc39-6fe9823e8672");
    cr_assert(run_is_async(r));
    wait_done(&w);
    cr_assert_eq(run_get_status(r), RUN_TIMEOUT);
    cr_assert_geq(util_now_ms() - t0, 280.0, "accepted 10 s ago, it still ran its 300 ms");
    cr_assert_geq(run_duration_ms(r), 10000.0, "its duration counts from its acceptance");
    cr_assert_geq(run_wait_ms(r), 9990.0);
    run_release(r);
}

Test(engine, the_cancel_table_finds_queued_and_running_async_runs_until_they_end)
{
    waiter w1, w2, w3;
    int rc;
    run *hold = start("held", "{}", NULL, &w1, &rc); /* takes the one slot */
    cr_assert_eq(rc, EXEC_OK);
    run *q = start_async("held", "01a240b7-0000-7000-8000-000000000001", 0, &w2);
    run *found = engine_async_find("01A240B7-0000-7000-8000-000000000001"); /* ids compare lowercased */
    cr_assert_eq(found, q);
    cr_assert_eq(run_get_status(found), RUN_QUEUED);
    run_release(found);
    cr_assert_null(engine_async_find("01a240b7-0000-7000-8000-000000000002"));
    cr_assert_null(engine_async_find(run_id(hold)), "a sync run is not in the table");
    run_cancel(q);
    wait_done(&w2);
    cr_assert_eq(run_get_status(q), RUN_CANCELLED);
    cr_assert_null(engine_async_find("01a240b7-0000-7000-8000-000000000001"), "an ended run left the table");
    run_cancel(hold);
    wait_done(&w1);
    run *running = start_async("held", "01a240b7-0000-7000-8000-000000000003", 0, &w3);
    for (int i = 0; i < 200 && run_get_status(running) != RUN_RUNNING; i++)
        usleep(5000);
    found = engine_async_find("01a240b7-0000-7000-8000-000000000003");
    cr_assert_eq(found, running);
    run_release(found);
    run_cancel(running);
    wait_done(&w3);
    cr_assert_eq(run_get_status(running), RUN_CANCELLED);
    run_release(hold);
    run_release(q);
    run_release(running);
}

static struct {
    pthread_mutex_t mu;
    char seen[64][48];
    int n;
} ev = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_event(const engine_event *e)
{
    static const char *const kinds[] = {"run_started", "node_started", "node_completed", "node_skipped",
                                        "node_failed", "run_completed", "run_failed"};
    pthread_mutex_lock(&ev.mu);
    if (ev.n < 64)
        snprintf(ev.seen[ev.n++], sizeof ev.seen[0], "%s%s%s", kinds[e->kind], e->node ? " " : "",
                 e->node ? e->node : "");
    pthread_mutex_unlock(&ev.mu);
}

static const engine_listener test_listener = {"test", on_event};

Test(engine, a_run_with_events_emits_them_in_order_and_others_emit_none)
{
    engine_listener_set(&test_listener);
    run *quiet = run_sync("route", "{\"n\": 1}", NULL);
    cr_assert_eq(ev.n, 0, "a run without events was heard");
    run_release(quiet);
    waiter w;
    run *r = start_async("route", "01a240b7-0000-7000-8000-0000000000aa", 0, &w);
    wait_done(&w);
    cr_assert_eq(run_get_status(r), RUN_COMPLETED);
    engine_listener_set(NULL);
    static const char *const want[] = {"run_started", "node_started src", "node_completed src", "node_started sw",
                                       "node_completed sw", "node_skipped hi", "node_started lo",
                                       "node_completed lo", "node_started after_lo", "node_completed after_lo",
                                       "node_started out", "node_completed out", "run_completed"};
    size_t nwant = sizeof want / sizeof want[0];
    cr_assert_eq((size_t)ev.n, nwant, "%d events", ev.n);
    for (size_t i = 0; i < nwant; i++)
        cr_assert_str_eq(ev.seen[i], want[i], "event %zu", i);
    run_release(r);
}
