/* hooks: the families kailashd counts as things happen, and the one call each place makes.
 *
 * Every label value is from a bounded set: a route's pattern (never the path: /runs/<id> is one
 * series), a standard method or "other", a status number, a loaded workflow's name and its node ids,
 * a node type's name, fixed words. The gauges read at scrape time (executors, dependencies, the
 * store, the process) are src/api/metrics.c's. */
#include <stdatomic.h>
#include <string.h>

#include "kailash/metrics.h"

static const metrics_family f_http_requests = {
    "kailash_http_requests_total",
    "HTTP requests answered, by route pattern (\"unmatched\": no route), method and status.",
    METRICS_COUNTER,
    3,
    {"route", "method", "status"}};
static const metrics_family f_http_duration = {"kailash_http_request_duration_seconds",
                                               "Time from a request's arrival to its answer, by route pattern.",
                                               METRICS_HISTOGRAM,
                                               1,
                                               {"route"}};
static const metrics_family f_runs = {
    "kailash_workflow_runs_total",
    "Workflow runs ended, by workflow and status (cache hits run nothing and are not counted).",
    METRICS_COUNTER,
    2,
    {"workflow", "status"}};
static const metrics_family f_run_duration = {"kailash_workflow_run_duration_seconds",
                                              "Duration of ended workflow runs, queue wait included.",
                                              METRICS_HISTOGRAM,
                                              1,
                                              {"workflow"}};
static const metrics_family f_node_duration = {"kailash_node_duration_seconds",
                                               "Time from a node's start to its result, by workflow and node type.",
                                               METRICS_HISTOGRAM,
                                               2,
                                               {"workflow", "node_type"}};
static const metrics_family f_upstream = {
    "kailash_upstream_requests_total",
    "Results of nodes that call out (HTTP, REST, load balancer, cache), by workflow, node "
    "and outcome (\"ok\" or the error code).",
    METRICS_COUNTER,
    3,
    {"workflow", "node", "outcome"}};
static const metrics_family f_cache = {
    "kailash_cache_requests_total",
    "Answers of the run routes by X-Cache: layer l1 or l2 with result hit; layer none with "
    "result miss (looked up, computed) or bypass (not looked up).",
    METRICS_COUNTER,
    2,
    {"layer", "result"}};
static const metrics_family f_ratelimit = {"kailash_ratelimit_decisions_total",
                                           "Rate-limit decisions, by the caller's tier and the decision.",
                                           METRICS_COUNTER,
                                           2,
                                           {"tier", "decision"}};

static const metrics_family f_llm_tokens = {
    "kailash_llm_tokens_total",
    "Tokens LLMAgentNode calls used, by provider (openai, ollama, mock) and kind (prompt, completion).",
    METRICS_COUNTER,
    2,
    {"provider", "kind"}};

static const metrics_family *const counted[] = {&f_http_requests, &f_http_duration, &f_runs,  &f_run_duration,
                                                &f_node_duration, &f_upstream,      &f_cache, &f_ratelimit,
                                                &f_llm_tokens};

static atomic_int g_on;

void metrics_set_enabled(int on)
{
    atomic_store_explicit(&g_on, on != 0, memory_order_relaxed);
}

int metrics_enabled(void)
{
    return atomic_load_explicit(&g_on, memory_order_relaxed);
}

double metrics_clock(void)
{
    return metrics_enabled() ? util_now_ms() : 0;
}

/* A client may send any method: only the standard ones become label values. */
static const char *method_label(const char *m)
{
    static const char *const known[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"};
    for (size_t i = 0; m && i < sizeof known / sizeof known[0]; i++)
        if (strcmp(m, known[i]) == 0)
            return known[i];
    return "other";
}

void metrics_http_request(const char *route, const char *method, int status, double seconds)
{
    if (!metrics_enabled())
        return;
    char code[16];
    util_fmt_uint(code, (unsigned)(status > 0 && status < 1000 ? status : 0));
    const char *r = route ? route : "unmatched";
    metrics_count(metrics_series(&f_http_requests, (const char *const[]){r, method_label(method), code}), 1);
    metrics_observe(metrics_series(&f_http_duration, (const char *const[]){r}), seconds);
}

void metrics_run_end(const char *workflow, const char *status, double seconds)
{
    if (!metrics_enabled())
        return;
    metrics_count(metrics_series(&f_runs, (const char *const[]){workflow, status}), 1);
    metrics_observe(metrics_series(&f_run_duration, (const char *const[]){workflow}), seconds);
}

void metrics_node_end(const char *workflow, const char *node_type, const char *node_id, int upstream,
                      const char *outcome, double started_ms)
{
    if (!metrics_enabled())
        return;
    if (started_ms > 0)
        metrics_observe(metrics_series(&f_node_duration, (const char *const[]){workflow, node_type}),
                        (util_now_ms() - started_ms) / 1000.0);
    if (upstream)
        metrics_count(metrics_series(&f_upstream, (const char *const[]){workflow, node_id, outcome}), 1);
}

void metrics_cache_answer(const char *x_cache)
{
    if (!metrics_enabled() || !x_cache)
        return;
    const char *layer = "none", *result = "bypass";
    if (strcmp(x_cache, "HIT-L1") == 0)
        layer = "l1", result = "hit";
    else if (strcmp(x_cache, "HIT-L2") == 0)
        layer = "l2", result = "hit";
    else if (strcmp(x_cache, "MISS") == 0)
        result = "miss";
    metrics_count(metrics_series(&f_cache, (const char *const[]){layer, result}), 1);
}

void metrics_ratelimit(const char *tier, int refused)
{
    if (!metrics_enabled())
        return;
    metrics_count(metrics_series(&f_ratelimit, (const char *const[]){tier, refused ? "refused" : "allowed"}), 1);
}

void metrics_llm_tokens(const char *provider, uint64_t prompt, uint64_t completion)
{
    if (!metrics_enabled())
        return;
    metrics_count(metrics_series(&f_llm_tokens, (const char *const[]){provider, "prompt"}), prompt);
    metrics_count(metrics_series(&f_llm_tokens, (const char *const[]){provider, "completion"}), completion);
}

int metrics_write_counted(buf *out)
{
    for (size_t i = 0; i < sizeof counted / sizeof counted[0]; i++)
        if (metrics_write_family(out, counted[i]) != 0)
            return -1;
    return 0;
}
