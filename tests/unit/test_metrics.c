/* metrics: the exposition text (HELP/TYPE, labels, escaping, numbers), histogram buckets (bounds
 * inclusive, cumulative, +Inf, exact sums), the series table (same labels same slot, the bound), the
 * per-thread blocks (sums from many threads, blocks taken over after their threads end), and the
 * hooks (off means nothing counted, methods and routes bounded). Each test runs in its own process,
 * so each starts with an empty table. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/metrics.h"

static const metrics_family f_req = {"t_requests_total", "Requests.", METRICS_COUNTER, 2, {"route", "code"}};
static const metrics_family f_plain = {"t_plain_total", "No labels.", METRICS_COUNTER, 0, {0}};
static const metrics_family f_lat = {"t_latency_seconds", "Latency.", METRICS_HISTOGRAM, 1, {"route"}};
static const metrics_family f_gauge = {
    "t_gauge", "A gauge with a \\ and a\nnewline in its help.", METRICS_GAUGE, 1, {"name"}};

/* out's text as a NUL-terminated string (out keeps owning it). */
static const char *text(buf *out)
{
    cr_assert_eq(buf_terminate(out), 0);
    return out->data;
}

#define VALUES(...) ((const char *const[]){__VA_ARGS__})

Test(metrics, escape_label_values)
{
    buf b = {0};
    cr_assert_eq(metrics_escape(&b, "a\\b\"c\nd plain"), 0);
    cr_assert_str_eq(text(&b), "a\\\\b\\\"c\\nd plain");
    b.len = 0;
    cr_assert_eq(metrics_escape(&b, ""), 0);
    cr_assert_str_eq(text(&b), "");
    buf_free(&b);
}

Test(metrics, counter_family_text)
{
    int a = metrics_series(&f_req, VALUES("/runs/{name}", "200"));
    int c = metrics_series(&f_req, VALUES("odd\"route\\\n", "404"));
    cr_assert(a >= 0 && c >= 0 && a != c);
    metrics_count(a, 3);
    metrics_count(c, 1);
    metrics_count(a, 2);
    buf b = {0};
    cr_assert_eq(metrics_write_family(&b, &f_req), 0);
    cr_assert_str_eq(text(&b), "# HELP t_requests_total Requests.\n"
                               "# TYPE t_requests_total counter\n"
                               "t_requests_total{route=\"/runs/{name}\",code=\"200\"} 5\n"
                               "t_requests_total{route=\"odd\\\"route\\\\\\n\",code=\"404\"} 1\n");
    buf_free(&b);
}

Test(metrics, family_without_labels_and_without_series)
{
    buf b = {0};
    cr_assert_eq(metrics_write_family(&b, &f_plain), 0);
    cr_assert_str_eq(text(&b), "# HELP t_plain_total No labels.\n# TYPE t_plain_total counter\n");
    metrics_count(metrics_series(&f_plain, NULL), 7);
    b.len = 0;
    cr_assert_eq(metrics_write_family(&b, &f_plain), 0);
    cr_assert_str_eq(text(&b), "# HELP t_plain_total No labels.\n# TYPE t_plain_total counter\nt_plain_total 7\n");
    buf_free(&b);
}

Test(metrics, gauge_head_escapes_help_and_values)
{
    buf b = {0};
    cr_assert_eq(metrics_write_head(&b, &f_gauge), 0);
    cr_assert_eq(metrics_write_value(&b, &f_gauge, VALUES("redis"), 1), 0);
    cr_assert_eq(metrics_write_value(&b, &f_gauge, VALUES("x"), 0.25), 0);
    cr_assert_eq(metrics_write_value(&b, &f_gauge, VALUES("big"), 1796374898.5), 0);
    cr_assert_str_eq(text(&b), "# HELP t_gauge A gauge with a \\\\ and a\\nnewline in its help.\n"
                               "# TYPE t_gauge gauge\n"
                               "t_gauge{name=\"redis\"} 1\n"
                               "t_gauge{name=\"x\"} 0.25\n"
                               "t_gauge{name=\"big\"} 1796374898.5\n");
    buf_free(&b);
}

Test(metrics, same_labels_same_slot)
{
    int a = metrics_series(&f_req, VALUES("a", "bc"));
    int b = metrics_series(&f_req, VALUES("ab", "c"));
    cr_assert(a >= 0 && b >= 0 && a != b, "label boundaries are part of the key");
    char route[8] = "a", code[8] = "bc"; /* equal text at other addresses */
    cr_assert_eq(metrics_series(&f_req, VALUES(route, code)), a);
    cr_assert_neq(metrics_series(&f_lat, VALUES("a")), -1);
}

Test(metrics, histogram_buckets_cumulative_with_inf_sum_count)
{
    int s = metrics_series(&f_lat, VALUES("/x"));
    metrics_observe(s, 0.0001); /* on a bound: in that bucket (le is <=) */
    metrics_observe(s, 0.0003);
    metrics_observe(s, 0.003);
    metrics_observe(s, 2.0);
    metrics_observe(s, 60.0); /* above the last bound: +Inf only */
    metrics_observe(s, -1.0); /* a clock step back: counted as 0 */
    uint64_t bk[METRICS_NBUCKETS + 1], sum_ns;
    metrics_histogram_value(s, bk, &sum_ns);
    cr_assert_eq(bk[0], 2); /* 0.0001 and the 0 */
    cr_assert_eq(bk[2], 1); /* 0.0005 */
    cr_assert_eq(bk[METRICS_NBUCKETS], 1);
    cr_assert_eq(sum_ns, 100000ull + 300000ull + 3000000ull + 2000000000ull + 60000000000ull);
    buf b = {0};
    cr_assert_eq(metrics_write_family(&b, &f_lat), 0);
    const char *t = text(&b);
    cr_assert(strstr(t, "# TYPE t_latency_seconds histogram\n"));
    cr_assert(strstr(t, "t_latency_seconds_bucket{route=\"/x\",le=\"0.0001\"} 2\n"), "%s", t);
    cr_assert(strstr(t, "t_latency_seconds_bucket{route=\"/x\",le=\"0.00025\"} 2\n"), "%s", t);
    cr_assert(strstr(t, "t_latency_seconds_bucket{route=\"/x\",le=\"0.0005\"} 3\n"), "%s", t);
    cr_assert(strstr(t, "t_latency_seconds_bucket{route=\"/x\",le=\"0.005\"} 4\n"), "%s", t);
    cr_assert(strstr(t, "t_latency_seconds_bucket{route=\"/x\",le=\"2.5\"} 5\n"), "%s", t);
    cr_assert(strstr(t, "t_latency_seconds_bucket{route=\"/x\",le=\"10\"} 5\n"), "%s", t);
    cr_assert(strstr(t, "t_latency_seconds_bucket{route=\"/x\",le=\"+Inf\"} 6\n"), "%s", t);
    cr_assert(strstr(t, "t_latency_seconds_sum{route=\"/x\"} 62.003400000\n"), "%s", t);
    cr_assert(strstr(t, "t_latency_seconds_count{route=\"/x\"} 6\n"), "%s", t);
    /* every finite bucket, in order, with the bounds the header declares */
    const char *p = t;
    for (int i = 0; i < METRICS_NBUCKETS; i++) {
        p = strstr(p, "le=\"");
        cr_assert_not_null(p);
        cr_assert_float_eq(strtod(p + 4, NULL), metrics_bucket_le[i], 1e-12);
        p += 4;
    }
    cr_assert_eq(strncmp(strstr(p, "le=\""), "le=\"+Inf\"", 9), 0);
    buf_free(&b);
}

/* ---- threads ---- */

#define NTHREADS 8
#define PER_THREAD 100000

static pthread_barrier_t g_bar;

static void *counting_thread(void *arg)
{
    int slot = *(int *)arg;
    pthread_barrier_wait(&g_bar); /* all alive at once: each needs its own block */
    for (int i = 0; i < PER_THREAD; i++)
        metrics_count(slot, 1);
    metrics_observe(slot, 0.001);
    pthread_barrier_wait(&g_bar);
    return NULL;
}

static void run_threads(int *slot)
{
    pthread_t t[NTHREADS];
    pthread_barrier_init(&g_bar, NULL, NTHREADS);
    for (int i = 0; i < NTHREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, counting_thread, slot), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&g_bar);
}

Test(metrics, per_thread_blocks_sum_and_are_taken_over)
{
    int slot = metrics_series(&f_plain, NULL);
    run_threads(&slot);
    cr_assert_eq(metrics_counter_value(slot), (uint64_t)NTHREADS * PER_THREAD);
    int blocks = metrics_blocks();
    cr_assert_eq(blocks, NTHREADS, "one block per thread alive at once");
    run_threads(&slot); /* the ended threads' blocks are taken over, their counts kept */
    cr_assert_eq(metrics_counter_value(slot), 2ull * NTHREADS * PER_THREAD);
    cr_assert_eq(metrics_blocks(), blocks);
    metrics_count(slot, 1); /* this thread too */
    cr_assert_eq(metrics_counter_value(slot), 2ull * NTHREADS * PER_THREAD + 1);
}

Test(metrics, the_table_is_bounded)
{
    char name[32];
    int last = 0;
    for (int i = 0; i < METRICS_MAX_HISTOGRAMS + 10; i++) {
        snprintf(name, sizeof name, "r%d", i);
        last = metrics_series(&f_lat, VALUES(name));
        if (i < METRICS_MAX_HISTOGRAMS)
            cr_assert_eq(last, i);
    }
    cr_assert_eq(last, -1, "past the bound a series is refused");
    metrics_observe(-1, 1.0); /* and counting into it is harmless */
    metrics_count(-1, 1);
    cr_assert_geq(metrics_series(&f_req, VALUES("counters", "have their own room")), 0);
}

/* ---- the daemon's hooks ---- */

static char *counted_text(void)
{
    buf b = {0};
    cr_assert_eq(metrics_write_counted(&b), 0);
    cr_assert_eq(buf_terminate(&b), 0);
    return b.data;
}

Test(metrics, hooks_count_nothing_while_off)
{
    metrics_set_enabled(0);
    cr_assert_eq(metrics_clock(), 0);
    metrics_http_request("/health", "GET", 200, 0.001);
    metrics_run_end("wf", "completed", 0.01);
    metrics_cache_answer("HIT-L1");
    metrics_ratelimit("anonymous", 1);
    char *t = counted_text();
    cr_assert_null(strstr(t, "} "), "no sample while off:\n%s", t);
    cr_assert(strstr(t, "# TYPE kailash_http_requests_total counter\n"));
    free(t);
}

Test(metrics, hooks_bound_their_labels)
{
    metrics_set_enabled(1);
    cr_assert_gt(metrics_clock(), 0);
    metrics_http_request(NULL, "BREW", 404, 0.0001);
    metrics_http_request(NULL, "GET", 404, 0.0001);
    metrics_http_request("/runs/{name}", "GET", 200, 0.002);
    metrics_cache_answer("HIT-L2");
    metrics_cache_answer("MISS");
    metrics_cache_answer("BYPASS");
    metrics_ratelimit("authenticated", 1);
    metrics_node_end("wf", "HTTPRequestNode", "fetch", 1, "upstream_error", metrics_clock());
    metrics_node_end("wf", "TransformNode", "t", 0, "ok", 0);
    char *t = counted_text();
    cr_assert(strstr(t, "kailash_http_requests_total{route=\"unmatched\",method=\"other\",status=\"404\"} 1\n"), "%s",
              t);
    cr_assert(strstr(t, "kailash_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1\n"), "%s", t);
    cr_assert(strstr(t, "kailash_http_requests_total{route=\"/runs/{name}\",method=\"GET\",status=\"200\"} 1\n"));
    cr_assert(strstr(t, "kailash_cache_requests_total{layer=\"l2\",result=\"hit\"} 1\n"));
    cr_assert(strstr(t, "kailash_cache_requests_total{layer=\"none\",result=\"miss\"} 1\n"));
    cr_assert(strstr(t, "kailash_cache_requests_total{layer=\"none\",result=\"bypass\"} 1\n"));
    cr_assert(strstr(t, "kailash_ratelimit_decisions_total{tier=\"authenticated\",decision=\"refused\"} 1\n"));
    cr_assert(
        strstr(t, "kailash_upstream_requests_total{workflow=\"wf\",node=\"fetch\",outcome=\"upstream_error\"} 1\n"));
    cr_assert(strstr(t, "kailash_node_duration_seconds_count{workflow=\"wf\",node_type=\"HTTPRequestNode\"} 1\n"));
    cr_assert_null(strstr(t, "node=\"t\""), "a CPU node is not an upstream call");
    cr_assert_null(strstr(t, "node_type=\"TransformNode\""), "a node without a start time is not timed");
    free(t);
}
