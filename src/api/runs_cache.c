/* runs_cache: the response cache on the run routes (API.md `X-Cache`; DESIGN.md's cache step).
 *
 * Where: the key is made of the inputs and parameters (cache.h), so the lookup happens once the body
 * is parsed and checked (access conditions, schema), in the run handler, not in the chain before
 * the body is read. A workflow is cached only with a gateway.cache block; ?include=results is never
 * served from the cache (the store holds outputs only).
 *
 * The path of a cacheable request:
 *   L1 hit            the stored bytes are copied into a new answer: HIT-L1, Age, a new run_id.
 *   no-cache          Cache-Control: no-cache: not looked up, run, stored: BYPASS.
 *   L1 miss           one request per key computes (single flight): a request finding a flight for
 *                     its key waits for it and is answered with its bytes (HIT-L1, Age 0), or runs
 *                     itself when that run did not complete. The first asks L2 (Redis GET) on its
 *                     loop; a hit refills L1 (HIT-L2). On an L2 miss it takes the key's lock in
 *                     Redis (SET NX PX): got it, it runs; another instance has it, it polls L2 every
 *                     RC_POLL_MS for up to RC_POLL_MAX_MS (never past its own timeout) and runs if
 *                     nothing came. Redis down or slow: L1 alone, no error, no wait beyond the
 *                     command's deadline (the breaker refuses at once when open).
 *   the run ends      a completed run's stored bytes (its outputs, or the /execute results) go to L1
 *                     at once; the answer is sent (MISS); then L2 gets SET ... PX ttl and the lock
 *                     is dropped. Failed, timed-out and cancelled runs are never stored.
 * Stored in L2 as "<stored unix ms>\n<bytes>"; a value that is not that, or whose bytes are not JSON,
 * is a miss (Redis is trusted infrastructure, but a hit is spliced into the answer unchanged). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kailash/auth.h"
#include "kailash/metrics.h"
#include "kailash/store.h"
#include "runs_internal.h"

#define RC_POLL_MS 25
#define RC_POLL_MAX_MS 2000
#define RC_FLIGHT_SLOTS 256

/* ---- the L1 instance --------------------------------------------------------------------------- */

static cache_l1 *g_l1;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void rc_init(void)
{
    g_l1 = cache_l1_new(http_server_config()->cache_l1_max_bytes);
}

/* ---- single flight -------------------------------------------------------------------------------
 * The table is a few buckets under one mutex: only misses touch it (a hit never does). */

typedef struct rc_flight {
    cache_key key;
    kreq **waiters;
    size_t nwait, cap;
    struct rc_flight *next;
} rc_flight;

static rc_flight *g_flights[RC_FLIGHT_SLOTS];
static pthread_mutex_t g_flight_mu = PTHREAD_MUTEX_INITIALIZER;

static rc_flight **flight_slot(const cache_key *k)
{
    return &g_flights[k->d[0]];
}

/* Room for one more waiter: 0, or -1 (the flight as it was) when memory runs out. */
static int flight_grow(rc_flight *f)
{
    if (f->nwait < f->cap)
        return 0;
    size_t cap = f->cap * 2 + 4;
    kreq **w = realloc(f->waiters, cap * sizeof *w);
    if (!w)
        return -1;
    f->waiters = w;
    f->cap = cap;
    return 0;
}

/* Joins the flight for k (returns 1), or starts one led by r (returns 0), or -1 out of memory (r
 * then runs on its own). */
static int flight_join_or_lead(kreq *r, run_req *s)
{
    pthread_mutex_lock(&g_flight_mu);
    rc_flight **head = flight_slot(&s->key), *f = *head;
    while (f && memcmp(f->key.d, s->key.d, sizeof f->key.d) != 0)
        f = f->next;
    int rc = -1;
    if (f && flight_grow(f) == 0) {
        f->waiters[f->nwait++] = r;
        s->joined = f;
        rc = 1;
    } else if (!f && (f = calloc(1, sizeof *f))) {
        f->key = s->key;
        f->next = *head;
        *head = f;
        s->leads = f;
        rc = 0;
    }
    pthread_mutex_unlock(&g_flight_mu);
    return rc;
}

static void flight_unlink(rc_flight *f)
{
    pthread_mutex_lock(&g_flight_mu);
    for (rc_flight **p = flight_slot(&f->key); *p; p = &(*p)->next)
        if (*p == f) {
            *p = f->next;
            break;
        }
    pthread_mutex_unlock(&g_flight_mu);
}

/* ---- answers ------------------------------------------------------------------------------------- */

/* A hit's answer: the stored bytes spliced in unchanged, a new run_id. */
/* The answer's X-Cache, counted as it is said (kailash_cache_requests_total). */
static void rc_tag(kreq *r, const char *xcache)
{
    http_reply_header(r, "X-Cache", xcache);
    metrics_cache_answer(xcache);
}

static void rc_reply_hit(kreq *r, const char *bytes, size_t len, const char *xcache, long age_s)
{
    run_req *s = http_req_state(r);
    const workflow *wf = exec_workflow(s->ex);
    double dur = util_now_ms() - http_req_start_ms(r);
    char id[40], age[24];
    util_uuid7(id);
    buf b = {0};
    int bad = buf_reserve(&b, len + 200) != 0;
    if (s->execute)
        bad = bad || buf_append(&b, "{\"outputs\":", 11) || buf_append(&b, bytes, len) ||
              buf_append(&b, ",\"execution_time\":", 18) || buf_append_json_real(&b, dur / 1000.0) ||
              buf_append(&b, ",\"workflow_id\":", 15) || buf_append_json_str(&b, wf->name) ||
              buf_append(&b, ",\"version\":", 11) || buf_append_json_str(&b, wf->version) ||
              buf_append(&b, ",\"run_id\":", 10) || buf_append_json_str(&b, id) || buf_append(&b, "}", 1);
    else
        bad = bad || buf_append(&b, "{\"run_id\":", 10) || buf_append_json_str(&b, id) ||
              buf_append(&b, ",\"workflow\":", 12) || buf_append_json_str(&b, wf->name) ||
              buf_append(&b, ",\"status\":\"completed\",\"outputs\":", 32) || buf_append(&b, bytes, len) ||
              buf_append(&b, ",\"duration_ms\":", 15) || buf_append_json_real(&b, runs_ms3(dur)) ||
              buf_append(&b, "}", 1);
    if (bad || buf_terminate(&b) != 0)
        buf_free(&b);
    http_reply_buf(r, 200, &b); /* empty: 500 "out of memory" */
    snprintf(age, sizeof age, "%ld", age_s > 0 ? age_s : 0);
    http_req_set_run_id(r, id);
    http_reply_header(r, "X-Run-ID", id);
    rc_tag(r, xcache);
    const auth_principal *who = http_req_principal(r);
    store_hit h = {id, wf->name, wf->version, xcache, who ? auth_principal_id(who) : "anonymous",
                   http_req_request_id(r), s->inputs, bytes, len, dur};
    store_record_hit(&h);
    http_reply_header(r, "Age", age);
}

/* ---- running --------------------------------------------------------------------------------------- */

static void flight_finish(rc_flight *f, const char *bytes, size_t len);

/* Runs r now (its cache lookups are over). A run that cannot start (the executor full) fails the
 * flight it leads: those waiting run themselves. HTTP_PENDING or HTTP_DONE. */
static int rc_run(kreq *r)
{
    run_req *s = http_req_state(r);
    int rc = runs_start(r, s->inputs, s->params);
    if (rc == HTTP_DONE && s->leads) {
        rc_flight *f = s->leads;
        s->leads = NULL;
        flight_finish(f, NULL, 0);
    }
    return rc;
}

/* rc_run from a callback: the answer, if it is one already, is completed here. */
static void rc_run_async(kreq *r)
{
    if (rc_run(r) == HTTP_DONE)
        http_complete(r);
}

static void rc_waiter_run(void *ud)
{
    rc_run_async(ud);
}

static void flight_finish(rc_flight *f, const char *bytes, size_t len)
{
    flight_unlink(f);
    for (size_t i = 0; i < f->nwait; i++) {
        kreq *w = f->waiters[i];
        run_req *ws = http_req_state(w);
        ws->joined = NULL;
        if (bytes) {
            rc_reply_hit(w, bytes, len, "HIT-L1", 0);
            http_complete(w);
        } else if (ioloop_post(ws->io, rc_waiter_run, w) != 0) { /* the run that led failed: each its own */
            http_reply_error(w, 503, "unavailable", "the server is shutting down", NULL);
            http_complete(w);
        }
    }
    free(f->waiters);
    free(f);
}

/* ---- L2 ------------------------------------------------------------------------------------------ */

typedef struct rc_poll {
    io_timer t;
    kreq *r;
    double until;
} rc_poll;

/* "<ms>\n<json>": the bytes and their age, or -1 when the value is not that. */
static int l2_value(const char *v, size_t n, const char **bytes, size_t *len, long *age_s)
{
    const char *nl = memchr(v, '\n', n < 24 ? n : 24);
    if (!nl)
        return -1;
    double stored = strtod(v, NULL);
    *bytes = nl + 1;
    *len = n - (size_t)(nl + 1 - v);
    json_t *j = *len ? json_loadb(*bytes, *len, JSON_DECODE_ANY, NULL) : NULL;
    if (!j)
        return -1;
    json_decref(j);
    double age = util_now_unix_s() * 1000.0 - stored;
    *age_s = age > 0 ? (long)(age / 1000.0) : 0;
    return 0;
}

/* An L2 hit for r: refill L1 for what is left of the TTL, answer, and answer those waiting. */
static int rc_l2_hit(kreq *r, const char *v, size_t n)
{
    run_req *s = http_req_state(r);
    const workflow *wf = exec_workflow(s->ex);
    const char *bytes;
    size_t len;
    long age_s;
    if (l2_value(v, n, &bytes, &len, &age_s) != 0 || age_s >= wf->cache_ttl_s)
        return -1;
    double now = util_now_ms();
    /* put as of when it was stored: Age goes on from there, and it expires when the L2 entry does */
    cache_l1_put(g_l1, &s->key, bytes, len, now - age_s * 1000.0, wf->cache_ttl_s * 1000.0, wf->cache_tag);
    rc_reply_hit(r, bytes, len, "HIT-L2", age_s);
    rc_flight *f = s->leads;
    s->leads = NULL;
    if (f)
        flight_finish(f, bytes, len);
    http_complete(r);
    return 0;
}

static void rc_on_poll(const char *v, size_t n, void *ud);

static void rc_poll_tick(io_timer *t)
{
    rc_poll *p = t->ud;
    if (cache_l2_get(&((run_req *)http_req_state(p->r))->key, rc_on_poll, p) != 0) {
        kreq *r = p->r;
        free(p);
        rc_run_async(r);
    }
}

static void rc_on_poll(const char *v, size_t n, void *ud)
{
    rc_poll *p = ud;
    kreq *r = p->r;
    if (v && rc_l2_hit(r, v, n) == 0) {
        free(p);
        return;
    }
    run_req *s = http_req_state(r);
    if (util_now_ms() + RC_POLL_MS < p->until && ioloop_timer_start(s->io, &p->t, RC_POLL_MS) == 0)
        return;
    free(p); /* nothing came in time: compute it here too */
    rc_run_async(r);
}

/* Another instance holds the key's lock: poll L2 for what it computes. */
static void rc_poll_start(kreq *r)
{
    run_req *s = http_req_state(r);
    const workflow *wf = exec_workflow(s->ex);
    rc_poll *p = calloc(1, sizeof *p);
    double span = wf->timeout_ms < RC_POLL_MAX_MS ? wf->timeout_ms : RC_POLL_MAX_MS;
    if (p) {
        p->r = r;
        p->until = util_now_ms() + span;
        ioloop_timer_init(&p->t, rc_poll_tick, p);
    }
    if (!p || ioloop_timer_start(s->io, &p->t, RC_POLL_MS) != 0) {
        free(p);
        rc_run_async(r);
    }
}

static void rc_on_lock(int got, void *ud)
{
    kreq *r = ud;
    ((run_req *)http_req_state(r))->locked = got == 1;
    if (got == 0)
        rc_poll_start(r);
    else
        rc_run_async(r); /* ours, or Redis failed: compute */
}

static void rc_on_l2(const char *v, size_t n, void *ud)
{
    kreq *r = ud;
    run_req *s = http_req_state(r);
    const workflow *wf = exec_workflow(s->ex);
    if (v && rc_l2_hit(r, v, n) == 0)
        return;
    if (cache_l2_lock(&s->key, (long)wf->timeout_ms, rc_on_lock, r) != 0)
        rc_run_async(r);
}

/* ---- the lookup --------------------------------------------------------------------------------- */

/* The key's scope part: the route's shape, and who may share the answer. -1: not cacheable for this
 * caller (a tenant scope and a caller without that attribute). */
static int rc_scope(kreq *r, const workflow *wf, int execute, buf *out)
{
    const auth_principal *who = http_req_principal(r);
    if (buf_append(out, execute ? "execute|" : "run|", execute ? 8 : 4) != 0)
        return -1;
    if (wf->cache_scope == WF_CACHE_GLOBAL)
        return buf_append(out, "global", 6);
    if (wf->cache_scope == WF_CACHE_PRINCIPAL) {
        const char *id = auth_principal_id(who);
        return buf_append(out, "p:", 2) != 0 || buf_append(out, id, strlen(id)) != 0 ? -1 : 0;
    }
    json_t *t = who ? json_object_get(auth_principal_attributes(who), wf->cache_tenant) : NULL;
    if (!t || json_is_null(t))
        return -1;
    return buf_append(out, "t:", 2) != 0 || cache_canonical_json(t, out) != 0 ? -1 : 0;
}

static int no_cache(kreq *r)
{
    const char *cc = http_req_header(r, "Cache-Control");
    return cc && (strcasestr(cc, "no-cache") || strcasestr(cc, "no-store"));
}

static int rc_key(kreq *r, run_req *s, const workflow *wf, json_t *inputs, json_t *params)
{
    buf scope = {0};
    int rc = rc_scope(r, wf, s->execute, &scope) != 0 || buf_terminate(&scope) != 0 ||
                     cache_key_make(wf->name, wf->def_hash, cache_gen(wf->name), scope.data, inputs, params, &s->key) != 0
                 ? -1
                 : 0;
    buf_free(&scope);
    return rc;
}

int runs_cache_begin(kreq *r, json_t *inputs, json_t *params)
{
    run_req *s = http_req_state(r);
    const workflow *wf = exec_workflow(s->ex);
    s->io = ioloop_current();
    pthread_once(&g_once, rc_init);
    if (!wf->cache_ttl_s || s->include_results || !g_l1 || !s->io || rc_key(r, s, wf, inputs, params) != 0)
        return RUNS_CACHE_RUN; /* X-Cache: BYPASS */
    s->cached = 1;
    s->inputs = json_incref(inputs);
    s->params = params ? json_incref(params) : NULL;
    if (no_cache(r))
        return RUNS_CACHE_RUN; /* not looked up; the fresh result is still stored */
    s->lookup = 1;
    buf b = {0};
    double stored;
    if (cache_l1_get(g_l1, &s->key, util_now_ms(), &b, &stored) == 1) {
        rc_reply_hit(r, b.data, b.len, "HIT-L1", (long)((util_now_ms() - stored) / 1000.0));
        buf_free(&b);
        return HTTP_DONE;
    }
    buf_free(&b);
    int joined = flight_join_or_lead(r, s);
    if (joined == 1)
        return HTTP_PENDING; /* answered when the run in flight ends */
    if (joined == 0 && cache_l2_get(&s->key, rc_on_l2, r) == 0)
        return HTTP_PENDING;
    return rc_run(r);
}

/* ---- the end of a run ---------------------------------------------------------------------------- */

typedef struct rc_store {
    cache_key key;
    long ttl_ms;
    int unlock;
    size_t len;
    char bytes[];
} rc_store;

/* On the request's loop, after its answer was queued: L2 gets the bytes, the lock goes. */
static void rc_store_l2(void *ud)
{
    rc_store *st = ud;
    cache_l2_put(&st->key, st->bytes, st->len, st->ttl_ms);
    if (st->unlock)
        cache_l2_unlock(&st->key);
    free(st);
}

/* The stored bytes of a completed run: its outputs (/run) or its results (/execute). */
static rc_store *rc_stored(run_req *s, run *rn)
{
    buf b = {0};
    char head[32];
    int n = snprintf(head, sizeof head, "%.0f\n", util_now_unix_s() * 1000.0);
    if (buf_append(&b, head, (size_t)n) != 0 || buf_append_json(&b, s->execute ? run_results(rn) : run_outputs(rn)) != 0) {
        buf_free(&b);
        return NULL;
    }
    rc_store *st = malloc(sizeof *st + b.len);
    if (st) {
        st->key = s->key;
        st->len = b.len;
        memcpy(st->bytes, b.data, b.len);
    }
    buf_free(&b);
    return st;
}

void runs_cache_end(kreq *r, run *rn)
{
    run_req *s = http_req_state(r);
    if (!s->cached) {
        rc_tag(r, "BYPASS");
        http_complete(r);
        return;
    }
    const workflow *wf = exec_workflow(s->ex);
    rc_tag(r, s->lookup ? "MISS" : "BYPASS");
    rc_store *st = run_get_status(rn) == RUN_COMPLETED ? rc_stored(s, rn) : NULL;
    size_t skip = st ? (size_t)((char *)memchr(st->bytes, '\n', st->len) + 1 - st->bytes) : 0;
    if (st) {
        cache_l1_put(g_l1, &s->key, st->bytes + skip, st->len - skip, util_now_ms(), wf->cache_ttl_s * 1000.0,
                     wf->cache_tag);
        st->ttl_ms = (long)wf->cache_ttl_s * 1000;
        st->unlock = s->locked;
    }
    rc_flight *f = s->leads;
    s->leads = NULL;
    struct ioloop *io = s->io;
    http_complete(r); /* r may be gone from here on */
    if (f)
        flight_finish(f, st ? st->bytes + skip : NULL, st ? st->len - skip : 0);
    if (st && ioloop_post(io, rc_store_l2, st) != 0)
        free(st);
}

void runs_cache_release(run_req *s)
{
    json_decref(s->inputs);
    json_decref(s->params);
    if (s->leads) /* a request that led a flight and ended without a run (it cannot: defensive) */
        flight_finish(s->leads, NULL, 0);
}

/* ---- purge and counters ---------------------------------------------------------------------------- */

size_t runs_cache_purge(const workflow *wf)
{
    pthread_once(&g_once, rc_init);
    cache_gen_bump(wf->name);
    return g_l1 ? cache_l1_purge(g_l1, wf->cache_tag) : 0;
}

void runs_cache_stats(cache_l1_stats *out)
{
    memset(out, 0, sizeof *out);
    if (g_l1)
        cache_l1_get_stats(g_l1, out);
}
