/* events: rid buffers (append, resume after an id, expiry, caps), subscribers (formats, the end,
 * dropping a client that falls behind), event data, Last-Event-ID. Subscribers here have no loop
 * (io NULL): their bytes are read with events_sub_read, as the stream's producer does. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/events/events_internal.h"
#include "kailash/events.h"

static char g_id[37];

static const char *new_run(void)
{
    util_uuid7(g_id);
    return g_id;
}

static uint64_t feed(const char *rid, const char *name, const char *data, int final)
{
    return events_feed(rid, "key:alice", name, data, strlen(data), final);
}

/* Everything s has queued, NUL-terminated in out (caller frees); *end: what the read after it said. */
static char *drain(events_sub *s, long *end)
{
    buf b = {0};
    char chunk[300];
    long n;
    while ((n = events_sub_read(s, chunk, sizeof chunk)) > 0)
        buf_append(&b, chunk, (size_t)n);
    buf_append(&b, "", 1);
    *end = n;
    return b.data;
}

static events_sub *subscribe(const char *rid, uint64_t after, const char *who, int *rc)
{
    events_sub *s = NULL;
    events_sub_opts o = {.run_id = rid, .after_id = after, .visible_to = who};
    *rc = events_subscribe(&o, &s);
    return s;
}

Test(events, append_and_resume_after_an_id)
{
    const char *rid = new_run();
    cr_assert_eq(feed(rid, "run_started", "{\"a\":1}", 0), 1);
    cr_assert_eq(feed(rid, "node_started", "{\"a\":2}", 0), 2);
    cr_assert_eq(feed(rid, "node_completed", "{\"a\":3}", 0), 3);
    int rc;
    events_sub *s = subscribe(rid, 1, NULL, &rc);
    cr_assert_eq(rc, EVENTS_OK);
    long end;
    char *got = drain(s, &end);
    cr_assert_str_eq(got, "id: 2\nevent: node_started\ndata: {\"a\":2}\n\nid: 3\nevent: node_completed\ndata: {\"a\":3}\n\n");
    cr_assert_eq(end, 0); /* nothing more yet: the stream waits */
    free(got);
    cr_assert_eq(feed(rid, "node_skipped", "{\"a\":4}", 0), 4);
    got = drain(s, &end);
    cr_assert_str_eq(got, "id: 4\nevent: node_skipped\ndata: {\"a\":4}\n\n");
    free(got);
    cr_assert_eq(feed(rid, "run_completed", "{\"a\":5}", 1), 5);
    got = drain(s, &end);
    cr_assert_str_eq(got, "id: 5\nevent: run_completed\ndata: {\"a\":5}\n\n");
    cr_assert_eq(end, HTTP_STREAM_END);
    free(got);
    /* events after the end reach nobody (and still get ids) */
    feed(rid, "node_started", "{}", 0);
    cr_assert_eq(events_sub_read(s, (char[8]){0}, 8), HTTP_STREAM_END);
    events_sub_release(s);
    /* a late client: from the start, or after its id; past the end: the end at once */
    s = subscribe(rid, 0, NULL, &rc);
    got = drain(s, &end);
    cr_assert(strncmp(got, "id: 1\nevent: run_started\n", 25) == 0, "%s", got);
    cr_assert_eq(end, HTTP_STREAM_END);
    free(got);
    events_sub_release(s);
    s = subscribe(rid, 99, NULL, &rc);
    got = drain(s, &end);
    cr_assert_str_eq(got, "");
    cr_assert_eq(end, HTTP_STREAM_END);
    free(got);
    events_sub_release(s);
}

Test(events, who_may_subscribe)
{
    int rc;
    events_sub *s = subscribe(new_run(), 0, NULL, &rc);
    cr_assert_eq(rc, EVENTS_NO_BUFFER);
    cr_assert_null(s);
    const char *rid = new_run();
    feed(rid, "run_started", "{}", 0);
    s = subscribe(rid, 0, "key:bob", &rc);
    cr_assert_eq(rc, EVENTS_NOT_VISIBLE);
    cr_assert_null(s);
    s = subscribe(rid, 0, "key:alice", &rc);
    cr_assert_eq(rc, EVENTS_OK);
    events_sub_release(s);
    /* create_for: a rid about to start gets its buffer, owned by that principal */
    char id[37];
    util_uuid7(id);
    events_sub_opts o = {.run_id = id, .create_for = "jwt:carol", .visible_to = "jwt:carol"};
    cr_assert_eq(events_subscribe(&o, &s), EVENTS_OK);
    events_feed(id, "ignored: the buffer has its owner", "run_started", "{}", 2, 0);
    long end;
    char *got = drain(s, &end);
    cr_assert_str_eq(got, "id: 1\nevent: run_started\ndata: {}\n\n");
    free(got);
    events_sub *other = subscribe(id, 0, "key:alice", &rc);
    cr_assert_eq(rc, EVENTS_NOT_VISIBLE);
    cr_assert_null(other);
    feed(id, "run_failed", "{}", 1);
    events_sub_release(s);
}

Test(events, buffers_expire_after_their_runs_last_event)
{
    size_t base = events_runs();
    const char *rid = new_run();
    char ended[37];
    memcpy(ended, rid, sizeof ended);
    feed(ended, "run_started", "{}", 0);
    feed(ended, "run_completed", "{}", 1);
    const char *live = new_run();
    feed(live, "run_started", "{}", 0);
    cr_assert_eq(events_runs(), base + 2);
    double now = util_now_ms(), keep = 1000;
    cr_assert_eq(events_sweep(now + keep - 100, keep), 0);
    cr_assert_eq(events_sweep(now + keep + 100, keep), 1); /* the ended rid's buffer goes */
    int rc;
    cr_assert_null(subscribe(ended, 0, NULL, &rc));
    cr_assert_eq(rc, EVENTS_NO_BUFFER);
    /* a rid still going keeps its buffer much longer, and one a client follows stays */
    cr_assert_eq(events_sweep(now + 5 * keep, keep), 0);
    events_sub *s = subscribe(live, 0, NULL, &rc);
    cr_assert_eq(events_sweep(now + 7 * keep, keep), 0);
    feed(live, "run_completed", "{}", 1); /* the end lets the subscriber go from the list */
    events_sub_release(s);
    cr_assert_eq(events_sweep(util_now_ms() + keep + 100, keep), 1);
    cr_assert_eq(events_runs(), base);
}

Test(events, caps_bound_a_run_and_keep_its_end)
{
    size_t bytes0 = events_bytes();
    const char *rid = new_run();
    for (int i = 0; i < EVENTS_RUN_MAX_EVENTS + 50; i++)
        feed(rid, "node_started", "{}", 0);
    uint64_t last = feed(rid, "run_completed", "{\"end\":1}", 1);
    cr_assert_eq(last, EVENTS_RUN_MAX_EVENTS + 51);
    cr_assert_eq(events_bytes() - bytes0, (size_t)EVENTS_RUN_MAX_EVENTS * 2 + 9);
    int rc;
    events_sub *s = subscribe(rid, EVENTS_RUN_MAX_EVENTS - 1, NULL, &rc);
    long end;
    char *got = drain(s, &end);
    char want[300];
    snprintf(want, sizeof want,
             ": some events of this run were not kept (too many or too large)\n\nid: %d\nevent: node_started\ndata: "
             "{}\n\nid: %llu\nevent: run_completed\ndata: {\"end\":1}\n\n",
             EVENTS_RUN_MAX_EVENTS, (unsigned long long)last);
    cr_assert_str_eq(got, want);
    cr_assert_eq(end, HTTP_STREAM_END);
    free(got);
    events_sub_release(s);
    /* bytes: a rid's data past EVENTS_RUN_MAX_BYTES is not kept */
    const char *big = new_run();
    size_t n = EVENTS_RUN_MAX_BYTES / 2 + 1;
    char *data = malloc(n + 1);
    memset(data, 'x', n);
    data[n] = '\0';
    size_t before = events_bytes();
    events_feed(big, "p", "node_completed", data, n, 0);
    events_feed(big, "p", "node_completed", data, n, 0);
    cr_assert_eq(events_bytes() - before, n);
    free(data);
    events_sweep(1e300, -1);
    cr_assert_eq(events_bytes(), 0);
}

Test(events, a_subscriber_that_falls_behind_is_dropped)
{
    const char *rid = new_run();
    char data[200];
    memset(data, 'y', sizeof data - 1);
    data[sizeof data - 1] = '\0';
    for (int i = 0; i < 20; i++) /* a backlog past max_bytes is still queued whole */
        feed(rid, "node_started", data, 0);
    events_sub *s = NULL;
    events_sub_opts o = {.run_id = rid, .max_bytes = 1000};
    cr_assert_eq(events_subscribe(&o, &s), EVENTS_OK);
    cr_assert_not(events_sub_closed(s));
    char out[64];
    cr_assert_gt(events_sub_read(s, out, sizeof out), 0);
    /* live events while the client does not read: past 1000 bytes waiting it is dropped */
    for (int i = 0; i < 30; i++)
        feed(rid, "node_started", data, 0);
    cr_assert(events_sub_closed(s));
    cr_assert_eq(events_sub_read(s, out, sizeof out), HTTP_STREAM_ABORT);
    feed(rid, "run_completed", "{}", 1); /* the rid goes on, unaffected */
    events_sub_release(s);
    /* a client that keeps up is never dropped */
    const char *run2 = new_run();
    feed(run2, "run_started", "{}", 0);
    o.run_id = run2;
    cr_assert_eq(events_subscribe(&o, &s), EVENTS_OK);
    long end;
    for (int i = 0; i < 100; i++) {
        feed(run2, "node_started", data, 0);
        free(drain(s, &end));
    }
    cr_assert_not(events_sub_closed(s));
    feed(run2, "run_completed", "{}", 1);
    free(drain(s, &end));
    cr_assert_eq(end, HTTP_STREAM_END);
    events_sub_release(s);
}

Test(events, sdk_format_numbers_node_events_and_leaves_the_end_to_its_owner)
{
    const char *rid = new_run();
    events_sub *s = NULL;
    events_sub_opts o = {.run_id = rid, .create_for = "anonymous", .format = EVENTS_FMT_SDK};
    cr_assert_eq(events_subscribe(&o, &s), EVENTS_OK);
    events_sub_push(s, 0, "start", "{\"s\":1}", 7, 0);
    feed(rid, "run_started", "{}", 0);
    feed(rid, "node_started", "{\"n\":1}", 0);
    feed(rid, "run_completed", "{}", 1);
    events_sub_push(s, 0, "complete", "{\"c\":1}", 7, 0);
    events_sub_push(s, 0, NULL, "keepalive", 9, 0);
    events_sub_finish(s);
    long end;
    char *got = drain(s, &end);
    cr_assert_str_eq(got, "id: 1\nevent: start\ndata: {\"s\":1}\n\nid: 2\nevent: node_started\ndata: {\"n\":1}\n\n"
                          "id: 3\nevent: complete\ndata: {\"c\":1}\n\n: keepalive\n\n");
    cr_assert_eq(end, HTTP_STREAM_END);
    free(got);
    events_sub_release(s);
}

Test(events, event_data)
{
    json_t *outputs = json_pack("{s:i}", "v", 7);
    engine_event e = {.kind = EV_NODE_COMPLETED, .run_id = "r1", .workflow = "w\"f", .node = "n1",
                      .node_type = "TransformNode", .outputs = outputs};
    buf b = {0};
    cr_assert_eq(events_data_of(&e, &b), 0);
    json_t *d = json_loads(b.data, 0, NULL);
    cr_assert_not_null(d, "%s", b.data);
    cr_assert_str_eq(json_string_value(json_object_get(d, "workflow")), "w\"f");
    cr_assert_str_eq(json_string_value(json_object_get(d, "type")), "TransformNode");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(d, "outputs"), "v")), 7);
    const char *ts = json_string_value(json_object_get(d, "ts"));
    cr_assert(ts && strlen(ts) == 24 && ts[10] == 'T' && ts[23] == 'Z', "%s", ts);
    cr_assert_null(strchr(b.data, '\n'));
    json_decref(d);
    buf_free(&b);
    /* outputs too large are left out, said so */
    char *big = malloc(EVENTS_OUTPUTS_MAX + 2);
    memset(big, 'z', EVENTS_OUTPUTS_MAX + 1);
    big[EVENTS_OUTPUTS_MAX + 1] = '\0';
    json_object_set_new(outputs, "big", json_string(big));
    free(big);
    cr_assert_eq(events_data_of(&e, &b), 0);
    d = json_loads(b.data, 0, NULL);
    cr_assert_null(json_object_get(d, "outputs"));
    cr_assert(json_is_true(json_object_get(d, "outputs_truncated")));
    json_decref(d);
    buf_free(&b);
    json_decref(outputs);
    /* a failed node: its error; text with line breaks stays on one line */
    engine_event f = {.kind = EV_NODE_FAILED, .run_id = "r1", .workflow = "w", .node = "n", .node_type = "T",
                      .error_code = "upstream_error", .error_message = "line1\nline2\r\n"};
    cr_assert_eq(events_data_of(&f, &b), 0);
    cr_assert_null(strchr(b.data, '\n'));
    d = json_loads(b.data, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(d, "error"), "code")), "upstream_error");
    json_decref(d);
    buf_free(&b);
    cr_assert_str_eq(events_name_of(EV_RUN_FAILED), "run_failed");
    cr_assert(events_name_final("run_completed") && events_name_final("run_failed"));
    cr_assert_not(events_name_final("node_failed") || events_name_final(NULL));
}

Test(events, last_event_id_is_a_plain_number_or_nothing)
{
    cr_assert_eq(events_parse_last_id("42"), 42);
    cr_assert_eq(events_parse_last_id("0"), 0);
    cr_assert_eq(events_parse_last_id("9999999999999999999"), 9999999999999999999ull);
    const char *hostile[] = {NULL, "", "-1", "+1", " 1", "1 ", "1a", "0x10", "1e3", "1.0", "99999999999999999999",
                             "18446744073709551616", "\xd9\xa3", "1\n2"};
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++)
        cr_assert_eq(events_parse_last_id(hostile[i]), 0, "%s", hostile[i] ? hostile[i] : "(null)");
}
