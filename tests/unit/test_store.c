/* store: the interface over a backend of the test's own (which writes nothing until told): the
 * pending set (reads before a write, supersede, the queue bound and its drop count), pages merged
 * from pending and durable records, and the cursor and id checks. The journal and Postgres backends
 * have their own test files. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/store/store_internal.h"
#include "kailash/util.h"

/* ---- a backend that keeps what it is given, and answers reads from a fixed durable list ---- */

static store_item *queued[64];
static size_t nqueued;
static const char *durable_ids[8];
static const char *durable_json[8];
static size_t ndurable;

static int tb_start(const kconfig *cfg, char *err, size_t errlen)
{
    (void)cfg, (void)err, (void)errlen;
    return 0;
}
static void tb_enqueue(store_item *it)
{
    cr_assert_lt(nqueued, 64);
    queued[nqueued++] = it;
}
static void tb_get(const char *run_id, store_get_cb cb, void *ud)
{
    for (size_t i = 0; i < ndurable; i++)
        if (strcmp(durable_ids[i], run_id) == 0) {
            cb(ud, STORE_OK, durable_json[i], strlen(durable_json[i]));
            return;
        }
    cb(ud, STORE_NOT_FOUND, NULL, 0);
}
static void tb_list(const store_query *q, store_list_cb cb, void *ud)
{
    const char *json[8], *ids[8];
    size_t len[8], n = 0;
    int more = 0;
    for (size_t i = 0; i < ndurable; i++) { /* durable_ids are newest first */
        if (q->before && strcmp(durable_ids[i], q->before) >= 0)
            continue;
        if ((int)n == q->limit) {
            more = 1;
            break;
        }
        json[n] = durable_json[i], len[n] = strlen(durable_json[i]), ids[n++] = durable_ids[i];
    }
    store_page p = {n, json, len, ids, more};
    cb(ud, STORE_OK, &p);
}
static void tb_stop(double deadline_ms)
{
    (void)deadline_ms;
}
static void tb_health(store_health *h)
{
    h->check = "test";
    h->up = 1;
}
static const store_backend test_backend = {"test", tb_start, tb_enqueue, tb_get, tb_list, tb_stop, tb_health};

static kconfig cfg;

static void start(int queue_max)
{
    cfg.store_queue_max = queue_max;
    char err[200];
    cr_assert_eq(store_start_backend(&test_backend, &cfg, err, sizeof err), 0, "%s", err);
}

static void put(const char *id, const char *wf, const char *status, const char *who)
{
    char json[200];
    int n = snprintf(json, sizeof json, "{\"run_id\":\"%s\",\"status\":\"%s\"}", id, status);
    store_rec r = {id, wf, status, who, json, (size_t)n};
    cr_assert_eq(store_put(&r), 0);
}

/* ---- reading one ---- */

typedef struct got {
    int status;
    char json[256];
} got;

static void on_got(void *ud, int status, const char *json, size_t len)
{
    got *g = ud;
    g->status = status;
    snprintf(g->json, sizeof g->json, "%.*s", (int)len, json ? json : "");
}

#define ID(n) "0192f7c2-0000-7000-8000-00000000000" #n

Test(store, a_pending_record_is_read_before_it_is_written_then_from_the_backend)
{
    start(10);
    got g = {0};
    put(ID(1), "wf", "completed", "anonymous");
    store_get(ID(1), on_got, &g);
    cr_assert_eq(g.status, STORE_OK);
    cr_assert(strstr(g.json, "completed"));
    store_get("0192F7C2-0000-7000-8000-000000000001", on_got, &g); /* ids are compared lowercased */
    cr_assert_eq(g.status, STORE_OK);
    store_written(queued, nqueued);
    store_get(ID(1), on_got, &g);
    cr_assert_eq(g.status, STORE_NOT_FOUND, "written: the backend answers, and it has nothing");
    store_counts c;
    store_counts_get(&c);
    cr_assert_eq(c.put, 1);
    cr_assert_eq(c.written, 1);
    cr_assert_eq(c.pending, 0);
}

Test(store, a_later_put_of_a_run_supersedes_the_earlier)
{
    start(10);
    got g = {0};
    put(ID(1), "wf", "running", "anonymous");
    put(ID(1), "wf", "completed", "anonymous");
    store_get(ID(1), on_got, &g);
    cr_assert(strstr(g.json, "completed"), "%s", g.json);
    store_written(queued, 1); /* the older one is written first: the newer stays readable */
    store_get(ID(1), on_got, &g);
    cr_assert(strstr(g.json, "completed"), "%s", g.json);
    store_written(queued + 1, 1);
    store_counts c;
    store_counts_get(&c);
    cr_assert_eq(c.pending, 0);
}

Test(store, the_pending_set_is_bounded_and_drops_are_counted)
{
    start(3);
    for (int i = 0; i < 3; i++)
        put(i == 0 ? ID(1) : i == 1 ? ID(2) : ID(3), "wf", "completed", "anonymous");
    store_rec r = {ID(4), "wf", "completed", "anonymous", "{}", 2};
    cr_assert_eq(store_put(&r), -1);
    store_counts c;
    store_counts_get(&c);
    cr_assert_eq(c.dropped, 1);
    cr_assert_eq(c.pending, 3);
    store_written(queued, 1);
    cr_assert_eq(store_put(&r), 0, "room again once one is written");
}

Test(store, off_answers_unavailable)
{
    got g = {0};
    cr_assert_eq(store_enabled(), 0);
    store_get(ID(1), on_got, &g);
    cr_assert_eq(g.status, STORE_UNAVAILABLE);
    store_rec r = {ID(1), "wf", "completed", "anonymous", "{}", 2};
    cr_assert_eq(store_put(&r), -1);
}

/* ---- pages ---- */

typedef struct page_got {
    int status, more;
    size_t n;
    char ids[8][37];
    char json[8][128];
} page_got;

static void on_page(void *ud, int status, const store_page *p)
{
    page_got *g = ud;
    g->status = status;
    if (status != STORE_OK)
        return;
    g->n = p->n;
    g->more = p->more;
    for (size_t i = 0; i < p->n; i++) {
        snprintf(g->ids[i], 37, "%s", p->run_id[i]);
        snprintf(g->json[i], 128, "%.*s", (int)p->len[i], p->json[i]);
    }
}

static void durable(void)
{
    static const char *ids[] = {ID(5), ID(3), ID(1)};
    static const char *json[] = {"{\"d\":5}", "{\"d\":3}", "{\"d\":1}"};
    for (int i = 0; i < 3; i++)
        durable_ids[i] = ids[i], durable_json[i] = json[i];
    ndurable = 3;
}

Test(store, a_page_merges_pending_and_durable_newest_first)
{
    start(10);
    durable();
    put(ID(4), "wf", "completed", "anonymous");
    put(ID(2), "wf", "completed", "anonymous");
    page_got g = {0};
    store_query q = {.limit = 3};
    store_list(&q, on_page, &g);
    cr_assert_eq(g.status, STORE_OK);
    cr_assert_eq(g.n, 3);
    cr_assert_str_eq(g.ids[0], ID(5));
    cr_assert_str_eq(g.ids[1], ID(4));
    cr_assert_str_eq(g.ids[2], ID(3));
    cr_assert_eq(g.more, 1);
    q.before = ID(3);
    store_list(&q, on_page, &g);
    cr_assert_eq(g.n, 2);
    cr_assert_str_eq(g.ids[0], ID(2));
    cr_assert_str_eq(g.ids[1], ID(1));
    cr_assert_eq(g.more, 0);
}

Test(store, a_run_both_pending_and_durable_is_listed_once_as_pending)
{
    start(10);
    durable();
    put(ID(3), "wf", "cancelled", "anonymous");
    page_got g = {0};
    store_query q = {.limit = 10};
    store_list(&q, on_page, &g);
    cr_assert_eq(g.n, 3);
    cr_assert_str_eq(g.ids[1], ID(3));
    cr_assert(strstr(g.json[1], "cancelled"), "%s", g.json[1]);
}

Test(store, pending_records_are_filtered_like_durable_ones)
{
    start(10);
    put(ID(1), "a", "completed", "key:x");
    put(ID(2), "b", "completed", "key:x");
    put(ID(3), "a", "failed", "key:y");
    page_got g = {0};
    store_query q = {.limit = 10, .workflow = "a"};
    store_list(&q, on_page, &g);
    cr_assert_eq(g.n, 2);
    q = (store_query){.limit = 10, .status = "failed"};
    store_list(&q, on_page, &g);
    cr_assert_eq(g.n, 1);
    cr_assert_str_eq(g.ids[0], ID(3));
    q = (store_query){.limit = 10, .principal = "key:x"};
    store_list(&q, on_page, &g);
    cr_assert_eq(g.n, 2);
    cr_assert_str_eq(g.ids[0], ID(2));
}

/* ---- ids and cursors ---- */

Test(store, cursors_round_trip_and_refuse_what_they_did_not_make)
{
    for (int i = 0; i < 200; i++) {
        char id[37], cur[33], back[37];
        util_uuid7(id);
        store_cursor_encode(id, cur);
        cr_assert_eq(strlen(cur), 22);
        cr_assert_eq(store_cursor_decode(cur, back), 0, "%s", cur);
        cr_assert_str_eq(back, id);
    }
    char out[37];
    const char *bad[] = {"", "abc", "AAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAA==",
                         "AAAAAAAAAAAAAAAAAAAA+/", "AAAAAAAAAAAAAAAAAAAAAB", "' OR 1=1; --AAAAAAAAAA",
                         "AAAAAAAAAA\xc3\xa9" "AAAAAAAAA"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(store_cursor_decode(bad[i], out), -1, "accepted '%s'", bad[i]);
}

Test(store, uuid_text_is_checked)
{
    cr_assert(store_is_uuid("0192f7c2-0000-7000-8000-000000000001"));
    cr_assert(store_is_uuid("0192F7C2-ABCD-7000-8000-00000000000F"));
    cr_assert_not(store_is_uuid("0192f7c2-0000-7000-8000-00000000001"));
    cr_assert_not(store_is_uuid("0192f7c2-0000-7000-8000-0000000000011"));
    cr_assert_not(store_is_uuid("0192f7c20000-7000-8000-0000000000011"));
    cr_assert_not(store_is_uuid("0192f7c2-0000-7000-8000-00000000000g"));
    cr_assert_not(store_is_uuid("../../../../etc/passwd-0000-000000000"));
    cr_assert_not(store_is_uuid(""));
}

Test(store, a_uuid7_carries_its_creation_time)
{
    char id[37];
    util_uuid7(id);
    double ms = store_uuid7_ms(id), now = util_now_unix_s() * 1000.0;
    cr_assert(ms > now - 5000 && ms <= now + 5000, "%f vs %f", ms, now);
    cr_assert_float_eq(store_uuid7_ms("0192f7c2-0000-7000-8000-000000000001"), (double)0x0192f7c20000ULL, 0.5);
}

/* The record's timestamps are written without strftime: the same text as gmtime gives, over leap
 * years, century rules and the epoch, with milliseconds. */
static void timestamp_is_gmtimes(double ms)
{
    char text[25] = {0}, want[40];
    store_rfc3339_ms(ms, text);
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(want + n, sizeof want - n, ".%03dZ", (int)((long long)ms % 1000));
    cr_assert_str_eq(text, want);
}

Test(store, timestamps_match_gmtime)
{
    const double cases[] = {0, 951782400000.0 /* 2000-02-29 */, 4107542400000.0 /* 2100-03-01 */,
                            1764237600123.0, 1709251199999.0 /* 2024-02-29T23:59:59.999 */, 253402300799999.0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        timestamp_is_gmtimes(cases[i]);
    for (int i = 0; i < 100000; i++) /* and a spread of days */
        timestamp_is_gmtimes((double)i * 86400000.0 * 3.7 + i);
}
