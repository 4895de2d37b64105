/* LoadBalancerNode: HTTPRequestNode spread over a fixed list of upstreams. `url` is a path (default
 * "/") appended to the chosen upstream's base URL; the other keys are HTTPRequestNode's, plus
 * `upstreams` (literal http(s) base URLs), `strategy` (round_robin | least_inflight) and
 * `cooldown_s` (default 5). Outputs are HTTPRequestNode's.
 *
 * Shared state, kept by the compiled node for every run of it (lb_shared, atomics only, no lock):
 * a round-robin counter, the transfers in flight per upstream, and the time until which an upstream
 * that failed at the transport level is skipped. A pick prefers healthy upstreams not yet tried in
 * this round; when every untried one is cooling down, it takes the one whose cooldown ends first.
 *
 * Within one run, a transport error fails over at once to the next healthy untried upstream (so a
 * run tries each upstream at most once per round, bounded by the run's deadline); when none is
 * left, retry_count rounds follow with backoff, each starting afresh. A 502/503/504 answer is
 * retried the same way as in HTTPRequestNode. The shared state is read and updated racily on
 * purpose: two runs may both pick an upstream that is about to be marked down; that costs one
 * failed attempt, not correctness.
 *
 * upstreams, strategy, cooldown_s and verify_ssl are pinned: a run can't point the node elsewhere. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_common.h"
#include "kailash/template.h"
#include "kailash/util.h"

#define LB_MAX_UPSTREAMS 64 /* tried-set is a 64-bit mask */
#define LB_DEFAULT_COOLDOWN_MS 5000.0

static const char *const lb_strategies[] = {"round_robin", "least_inflight", NULL};

#define LB_KEYS(X)                                                                                                     \
    X("upstreams", HTTP_K_URLS, NULL, 1)                                                                               \
    X("strategy", HTTP_K_ENUM, lb_strategies, 1)                                                                       \
    X("cooldown_s", HTTP_K_SECONDS0, NULL, 1)                                                                          \
    HTTP_KEYS_REQUEST(X)

static const http_key lb_keys[] = {LB_KEYS(HTTP_KEY_ROW){NULL, 0, NULL, 0}};
static const char *const lb_key_names[] = {LB_KEYS(HTTP_KEY_NAME) NULL};
static const char *const lb_pinned[] = {"upstreams", "strategy", "url", HTTP_PINNED_COMMON, NULL};

typedef struct lb_upstream {
    char *base; /* owned: "http://host:port/prefix" without a trailing '/' */
    http_origin origin;
    atomic_int inflight;
    atomic_llong down_until_us; /* util_now_ms() * 1000 until which it is skipped; 0: healthy */
} lb_upstream;

/* Mutable state shared by every run of one compiled node. */
typedef struct lb_shared {
    atomic_uint rr;
    size_t n;
    lb_upstream ups[];
} lb_shared;

typedef struct lb_node {
    http_base base;
    lb_shared *shared; /* owned */
    int least_inflight;
    double cooldown_ms;
} lb_node;

/* One run's state, owned by its exchange. */
typedef struct lb_run {
    const lb_node *lb;
    char *path;     /* owned: the url input, a path (+ query) */
    json_t *params; /* owned reference, or NULL */
    uint64_t tried; /* upstreams tried this round */
    int current;    /* upstream of the attempt in flight, or -1 */
} lb_run;

/* ---- compile ---- */

static void lb_free(void *compiled)
{
    lb_node *n = compiled;
    if (!n)
        return;
    for (size_t i = 0; n->shared && i < n->shared->n; i++)
        free(n->shared->ups[i].base);
    free(n->shared);
    http_base_clear(&n->base);
    free(n);
}

static int lb_url_has(CURLU *url, CURLUPart part)
{
    char *text = NULL;
    int has = curl_url_get(url, part, &text, 0) == CURLUE_OK;
    curl_free(text);
    return has;
}

/* One upstream: a literal http(s) URL with a host and at most a path prefix. */
static int lb_upstream_init(lb_upstream *u, size_t i, json_t *v, char *err, size_t errlen)
{
    const char *s = json_string_value(v);
    if (!s || tmpl_string_has_expr(s))
        return util_err(err, errlen, "config.upstreams[%zu]: expected a literal URL", i);
    CURLU *url = NULL;
    node_error e;
    if (http_url_parse("upstreams", s, NULL, &url, &e) != 0)
        return util_err(err, errlen, "config.upstreams[%zu]: expected an http(s) URL with a host", i);
    int extra =
        lb_url_has(url, CURLUPART_QUERY) || lb_url_has(url, CURLUPART_FRAGMENT) || lb_url_has(url, CURLUPART_USER);
    int rc = http_url_origin(url, &u->origin);
    curl_url_cleanup(url);
    if (extra || rc != 0)
        return util_err(err, errlen, "config.upstreams[%zu]: only scheme, host, port and a path prefix", i);
    size_t len = strlen(s);
    while (len && s[len - 1] == '/')
        len--;
    u->base = strndup(s, len);
    return u->base ? 0 : util_err(err, errlen, "out of memory");
}

static int lb_upstreams_init(lb_node *n, json_t *list, char *err, size_t errlen)
{
    size_t count = json_array_size(list);
    if (count == 0 || count > LB_MAX_UPSTREAMS)
        return util_err(err, errlen, "config.upstreams: expected 1 to %d URLs", LB_MAX_UPSTREAMS);
    n->shared = calloc(1, sizeof *n->shared + count * sizeof n->shared->ups[0]);
    if (!n->shared)
        return util_err(err, errlen, "out of memory");
    atomic_init(&n->shared->rr, 0);
    for (size_t i = 0; i < count; i++) {
        atomic_init(&n->shared->ups[i].inflight, 0);
        atomic_init(&n->shared->ups[i].down_until_us, 0);
        n->shared->n = i; /* lb_free frees the bases built so far */
        if (lb_upstream_init(&n->shared->ups[i], i, json_array_get(list, i), err, errlen) != 0)
            return -1;
    }
    n->shared->n = count;
    return 0;
}

static int lb_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    if (http_keys_check(lb_keys, config, 1, err, errlen) != 0)
        return -1;
    json_t *upstreams = json_object_get(config, "upstreams"), *url = json_object_get(config, "url");
    if (!json_is_array(upstreams))
        return util_err(err, errlen, "config.upstreams: required, an array of URLs");
    if (json_is_string(url) && json_string_value(url)[0] != '/')
        return util_err(err, errlen, "config.url: a path starting with '/' (appended to the upstream)");
    lb_node *n = calloc(1, sizeof *n);
    if (!n)
        return util_err(err, errlen, "out of memory");
    json_t *strategy = json_object_get(config, "strategy"), *cooldown = json_object_get(config, "cooldown_s");
    n->least_inflight = json_is_string(strategy) && strcmp(json_string_value(strategy), "least_inflight") == 0;
    n->cooldown_ms = json_is_number(cooldown) ? json_number_value(cooldown) * 1000.0 : LB_DEFAULT_COOLDOWN_MS;
    if (lb_upstreams_init(n, upstreams, err, errlen) != 0 ||
        http_base_init(&n->base, lb_keys, env, config, err, errlen) != 0) {
        lb_free(n);
        return -1;
    }
    *compiled = n;
    return 0;
}

/* ---- picking an upstream ---- */

static long long lb_now_us(void)
{
    return (long long)(util_now_ms() * 1000.0);
}

/* Among untried upstreams: a healthy one by the strategy, else the one whose cooldown ends first;
 * -1 when every upstream was tried. */
static int lb_pick(const lb_node *lb, uint64_t tried)
{
    lb_shared *sh = lb->shared;
    size_t n = sh->n, start = atomic_fetch_add(&sh->rr, 1) % n;
    long long now = lb_now_us();
    int best = -1, soonest = -1;
    for (size_t k = 0; k < n; k++) {
        size_t i = (start + k) % n;
        if (tried & (UINT64_C(1) << i))
            continue;
        long long down = atomic_load(&sh->ups[i].down_until_us);
        if (down > now) {
            if (soonest < 0 || down < atomic_load(&sh->ups[soonest].down_until_us))
                soonest = (int)i;
            continue;
        }
        if (!lb->least_inflight)
            return (int)i;
        if (best < 0 || atomic_load(&sh->ups[i].inflight) < atomic_load(&sh->ups[best].inflight))
            best = (int)i;
    }
    return best >= 0 ? best : soonest;
}

/* The URL of one attempt on upstream i: its base, the run's path, the params. */
static int lb_url(const lb_run *run, size_t i, CURLU **out, node_error *err)
{
    const lb_upstream *u = &run->lb->shared->ups[i];
    buf text = {0};
    if (buf_appendf(&text, "%s%s", u->base, run->path) != 0) {
        buf_free(&text);
        return node_fail(err, "internal", "out of memory building the URL");
    }
    int rc = http_url_parse("url", text.data, &u->origin, out, err);
    buf_free(&text);
    if (rc == 0 && http_url_add_query(*out, "params", run->params, err) != 0) {
        curl_url_cleanup(*out);
        *out = NULL;
        rc = -1;
    }
    return rc;
}

static int lb_begin(http_exchange *ex, int new_round, node_error *err)
{
    lb_run *run = http_exchange_ud(ex);
    if (new_round)
        run->tried = 0;
    int i = lb_pick(run->lb, run->tried);
    if (i < 0)
        return node_fail(err, "upstream_error", "no upstream left to try");
    CURLU *url = NULL;
    if (lb_url(run, (size_t)i, &url, err) != 0)
        return -1;
    http_request *r = http_exchange_request(ex);
    curl_url_cleanup(r->url);
    r->url = url;
    r->memo = NULL;
    run->tried |= UINT64_C(1) << i;
    run->current = i;
    atomic_fetch_add(&run->lb->shared->ups[i].inflight, 1);
    return 0;
}

static void lb_end(http_exchange *ex, http_end how)
{
    lb_run *run = http_exchange_ud(ex);
    lb_upstream *u = &run->lb->shared->ups[run->current];
    atomic_fetch_sub(&u->inflight, 1);
    if (how == HTTP_END_TRANSPORT)
        atomic_store(&u->down_until_us, lb_now_us() + (long long)(run->lb->cooldown_ms * 1000.0));
    else if (how == HTTP_END_ANSWER)
        atomic_store(&u->down_until_us, 0);
    run->current = -1;
}

/* Fail over at once only to a healthy upstream this round has not tried. */
static int lb_failover(http_exchange *ex)
{
    lb_run *run = http_exchange_ud(ex);
    lb_shared *sh = run->lb->shared;
    long long now = lb_now_us();
    for (size_t i = 0; i < sh->n; i++)
        if (!(run->tried & (UINT64_C(1) << i)) && atomic_load(&sh->ups[i].down_until_us) <= now)
            return 1;
    return 0;
}

static void lb_run_free(void *ud)
{
    lb_run *run = ud;
    if (!run)
        return;
    free(run->path);
    json_decref(run->params);
    free(run);
}

static const http_hooks lb_hooks = {
    .begin = lb_begin,
    .end = lb_end,
    .failover = lb_failover,
    .outputs = http_outputs_response,
    .free_ud = lb_run_free,
};

/* ---- start ---- */

static lb_run *lb_run_new(const lb_node *lb, json_t *in, node_error *err)
{
    json_t *url = json_object_get(in, "url");
    const char *path = json_is_string(url) ? json_string_value(url) : "/";
    if (path[0] != '/') {
        node_fail(err, "bad_request", "url: a path starting with '/'");
        return NULL;
    }
    lb_run *run = calloc(1, sizeof *run);
    if (run)
        run->path = strdup(path);
    if (!run || !run->path) {
        lb_run_free(run);
        node_fail(err, "internal", "out of memory");
        return NULL;
    }
    json_t *params = json_object_get(in, "params");
    run->params = params && !json_is_null(params) ? json_incref(params) : NULL;
    run->lb = lb;
    run->current = -1;
    return run;
}

/* Everything but the URL, which lb_begin builds per attempt. */
static int lb_build(const void *compiled, json_t *in, http_request *r, node_error *err)
{
    (void)compiled;
    return http_request_fill(r, in, err);
}

static int lb_start(const void *compiled, node_call *call, node_error *err)
{
    const lb_node *lb = compiled;
    if (http_base_check_inputs(&lb->base, call->inputs, err) != 0)
        return -1;
    lb_run *run = lb_run_new(lb, call->inputs, err);
    if (!run)
        return -1;
    return http_exchange_run(call, &lb->base.lim, &lb_hooks, run, lb_build, lb, err);
}

const node_type node_load_balancer = {
    .name = "LoadBalancerNode",
    .config_keys = lb_key_names,
    .pinned_keys = lb_pinned,
    .input_ports = lb_key_names,
    .compile = lb_compile,
    .has_output = http_has_response_output,
    .run = NULL,
    .start = lb_start,
    .free = lb_free,
};
