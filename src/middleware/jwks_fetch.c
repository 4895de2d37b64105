/* jwks_fetch: auth.jwt.jwks_url, the one remote key set of the process (auth.h).
 *
 * The document is fetched on the first I/O loop (engine_loops()[0]) through the upstream module's
 * libcurl path, never on a request's path: a request only reads the key set held (a reference under
 * a mutex) and may poke the fetcher when a token names a kid no key has. Everything else happens on
 * the loop thread, driven by one loop timer:
 *
 *   configure  (any thread, through ioloop_call) attaches to the loop and fetches at once;
 *   success    swaps the new key set in and arms the timer for the answer's Cache-Control max-age,
 *              clamped to [min_refresh_s, 86400] s (300 s when the answer gives none);
 *   failure    keeps the keys held, is logged once per streak of failures, and retries after 1 s,
 *              2 s, 4 s ... up to 60 s;
 *   poke       (any thread, never waits) posts a fetch to the loop when none is in flight and the
 *              last one began at least min_refresh_s ago: an unknown kid cannot make us hammer the
 *              key server.
 *
 * The state is split by who may touch it: what other threads read (the key set, the state text,
 * the loop pointer and what poke decides on) is under g.mu; the transfer, the timer and the
 * configuration the fetch uses belong to the loop thread.
 *
 * The loop may stop before we do (engine_stop): its stop hooks run on its thread, the upstream
 * module's first (it attached first), which ends our transfer with UP_STOPPING, then ours, which
 * stops the timer and detaches (g.io NULL). Posts still queued then run on the destroying thread,
 * and find g.io NULL or not theirs: nothing touches the freed loop. The keys stay held until
 * jwks_remote_stop (or a later configure on a new loop, which fetches again).
 *
 * configure and stop wait on the loop (ioloop_call): they are for start-up, reload and exit, and
 * must not race engine_stop (the loop pointer they use would go under them). */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kailash/auth.h"
#include "kailash/engine.h"
#include "kailash/ioloop.h"
#include "kailash/log.h"
#include "kailash/upstream.h"
#include "kailash/util.h"

#define JWKS_KEY "auth.jwt.jwks_url"
#define JWKS_MAX_BYTES (1024 * 1024)
#define JWKS_TIMEOUT_MS 10000L
#define JWKS_DEFAULT_MIN_REFRESH_S 60
#define JWKS_DEFAULT_REFRESH_S 300L
#define JWKS_MAX_REFRESH_S 86400L
#define JWKS_BACKOFF_CAP_MS 60000.0
#define JWKS_NOT_FETCHED "not fetched yet"

typedef struct jwks_fetcher {
    /* ---- read by any thread, under mu ---- */
    pthread_mutex_t mu;
    int configured;
    jwt_keyset *keys;     /* NULL until a fetch succeeded */
    char why[256];        /* the last failure ("" when none since the URL was set) */
    ioloop *io;           /* the loop fetches run on; NULL when detached */
    double last_begin_ms; /* util_now_ms() when the last fetch began; < 0: none yet */
    int inflight;         /* a transfer is in the multi handle */
    int poke_posted;      /* a poke's post is queued on io */
    int min_refresh_s;
    /* ---- the loop thread's (anyone's while io is NULL) ---- */
    char *url;
    int verify_tls;
    long connect_timeout_ms;
    io_timer timer;
    io_hook stop_hook;
    up_curl_xfer *xfer; /* the transfer in flight, NULL when none */
    CURL *easy;         /* its handle, ours again when the transfer is cancelled */
    buf body;
    int too_large;
    long max_age; /* the answer's Cache-Control max-age, -1 when none */
    char errbuf[CURL_ERROR_SIZE];
    unsigned failures; /* the current streak */
} jwks_fetcher;

static jwks_fetcher g = {.mu = PTHREAD_MUTEX_INITIALIZER, .last_begin_ms = -1.0};

/* ---- the URL ---- */

/* "localhost", or an address in 127.0.0.0/8 or ::1 (curl gives IPv6 hosts in brackets). */
static int jwks_host_loopback(const char *host)
{
    if (strcasecmp(host, "localhost") == 0)
        return 1;
    size_t n = strlen(host);
    char ip[64];
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof ip) {
        memcpy(ip, host + 1, n - 2);
        ip[n - 2] = '\0';
        return util_net_ip_loopback(ip);
    }
    return util_net_ip_loopback(host);
}

#define JWKS_URL_KIND JWKS_KEY ": expected an https:// URL, or http:// on a loopback address"

/* 0 when url is https://, or http:// at a loopback host, without user or password; else -1 with
 * err. The URL goes into logs, which is why credentials in it are refused. */
static int jwks_url_check(const char *url, char *err, size_t errlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *user = NULL, *password = NULL, *options = NULL;
    int rc = -1;
    if (!u) {
        util_err(err, errlen, JWKS_KEY ": out of memory");
        goto out;
    }
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        util_err(err, errlen, JWKS_URL_KIND " (%s)", curl_url_strerror(uc));
        goto out;
    }
    curl_url_get(u, CURLUPART_USER, &user, 0);
    curl_url_get(u, CURLUPART_PASSWORD, &password, 0);
    curl_url_get(u, CURLUPART_OPTIONS, &options, 0);
    if (user || password || options) {
        util_err(err, errlen, JWKS_KEY ": a user name or password in the URL is not allowed");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        !(strcmp(scheme, "https") == 0 || (strcmp(scheme, "http") == 0 && jwks_host_loopback(host)))) {
        util_err(err, errlen, JWKS_URL_KIND);
        goto out;
    }
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_free(password);
    curl_free(options);
    curl_url_cleanup(u);
    return rc;
}

/* ---- the answer (loop thread, from inside libcurl) ---- */

/* The max-age of one Cache-Control value (p..end), -1 when it has none. Other directives (no-cache
 * among them) are ignored: the key set is refreshed on our schedule whatever the cache says. */
static long jwks_max_age(const char *p, const char *end)
{
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *item = p;
        while (p < end && *p != ',')
            p++;
        if (p - item < 8 || strncasecmp(item, "max-age", 7) != 0)
            continue;
        const char *v = item + 7;
        while (v < p && (*v == ' ' || *v == '\t'))
            v++;
        if (v >= p || *v++ != '=')
            continue;
        v += v < p && *v == '"'; /* the quoted form, which senders should not use but may */
        long n = -1;
        for (; v < p && *v >= '0' && *v <= '9'; v++)
            n = n < 0 ? *v - '0' : n > JWKS_MAX_REFRESH_S ? n : n * 10 + (*v - '0'); /* saturates */
        if (n >= 0)
            return n;
    }
    return -1;
}

static size_t jwks_on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    (void)ud;
    size_t n = size * nmemb;
    static const char name[] = "cache-control:";
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) { /* a new answer (after a 1xx): its headers count */
        g.max_age = -1;
    } else if (n > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
        long v = jwks_max_age(p + sizeof name - 1, p + n);
        if (v >= 0 && (g.max_age < 0 || v < g.max_age)) /* several: the shortest wins */
            g.max_age = v;
    }
    return n;
}

static size_t jwks_on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    (void)ud;
    size_t n = size * nmemb;
    if (n > JWKS_MAX_BYTES - g.body.len) {
        g.too_large = 1;
        return 0; /* ends the transfer with CURLE_WRITE_ERROR */
    }
    return buf_append(&g.body, p, n) == 0 ? n : 0;
}

/* A fresh easy handle (one per transfer, as easy.c explains) set up for g.url. NULL on failure. */
static CURL *jwks_easy_new(void)
{
    CURL *e = http_easy_get();
    if (!e)
        return NULL;
    long verify = g.verify_tls ? 1L : 0L;
    long connect_ms = g.connect_timeout_ms > 0 ? g.connect_timeout_ms : JWKS_TIMEOUT_MS;
    CURLcode c = CURLE_OK;
    c |= curl_easy_setopt(e, CURLOPT_URL, g.url);
    /* no proxy from the environment, as everywhere in the upstream module (upstream.h, "Proxies") */
    c |= curl_easy_setopt(e, CURLOPT_PROXY, "");
    c |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    c |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    c |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    c |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, JWKS_TIMEOUT_MS);
    c |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    c |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, verify);
    c |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
    /* an announced length over the limit fails before the body comes; the body callback holds the
     * limit for answers without one */
    c |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)JWKS_MAX_BYTES);
    c |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, jwks_on_body);
    c |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, jwks_on_header);
    c |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, g.errbuf);
    if (c != CURLE_OK) {
        http_easy_put(e);
        return NULL;
    }
    return e;
}

/* ---- outcomes (loop thread) ---- */

static void jwks_schedule(double delay_ms)
{
    if (ioloop_timer_start(g.io, &g.timer, delay_ms) != 0)
        log_msg(LOG_ERROR, JWKS_KEY ": out of memory arming the refresh timer; no more refreshes");
}

/* Keeps the keys held and retries after 1 s, 2 s, 4 s ... 60 s. Logged once per streak. */
static void jwks_fail(const char *reason)
{
    size_t held;
    pthread_mutex_lock(&g.mu);
    snprintf(g.why, sizeof g.why, "fetch failed: %s", reason);
    held = g.keys ? jwt_keyset_count(g.keys) : 0;
    int any = g.keys != NULL;
    pthread_mutex_unlock(&g.mu);
    if (g.failures == 0) {
        if (any)
            log_msg(LOG_WARN, JWKS_KEY ": fetch failed: %s; keeping %zu key%s (%s)", reason, held, held == 1 ? "" : "s",
                    g.url);
        else
            log_msg(LOG_WARN, JWKS_KEY ": fetch failed: %s; no keys yet (%s)", reason, g.url);
    }
    unsigned shift = g.failures < 6 ? g.failures : 6;
    g.failures++;
    double delay = 1000.0 * (double)(1u << shift);
    jwks_schedule(delay < JWKS_BACKOFF_CAP_MS ? delay : JWKS_BACKOFF_CAP_MS);
}

/* Swaps ks in and arms the next refresh after the answer's max-age (bounded). */
static void jwks_succeed(jwt_keyset *ks)
{
    size_t n = jwt_keyset_count(ks);
    pthread_mutex_lock(&g.mu);
    if (!g.configured) { /* stopped meanwhile (jwks_remote_stop racing the loop's end) */
        pthread_mutex_unlock(&g.mu);
        jwt_keyset_release(ks);
        return;
    }
    jwt_keyset *old = g.keys;
    g.keys = ks;
    g.why[0] = '\0';
    long min_s = g.min_refresh_s;
    pthread_mutex_unlock(&g.mu);
    jwt_keyset_release(old); /* requests that acquired it hold their own references */
    if (g.failures || !old)
        log_msg(LOG_INFO, JWKS_KEY ": %zu key%s fetched (%s)", n, n == 1 ? "" : "s", g.url);
    g.failures = 0;
    long s = g.max_age >= 0 ? g.max_age : JWKS_DEFAULT_REFRESH_S;
    s = s < min_s ? min_s : s > JWKS_MAX_REFRESH_S ? JWKS_MAX_REFRESH_S : s;
    jwks_schedule(1000.0 * (double)s);
}

/* Why a body was refused, in words of our own: the key parser's message may quote the answer
 * (jansson's "near '...'", a kid), which is not ours to log. Only on failure, so the body is parsed
 * twice only then. */
static void jwks_refuse_body(const char *doc, size_t len)
{
    json_error_t jerr;
    json_t *v = json_loadb(doc, len, 0, &jerr);
    char reason[96];
    if (v)
        util_copy(reason, sizeof reason, "the answer is not a usable JWKS document");
    else
        snprintf(reason, sizeof reason, "the answer is not JSON (line %d)", jerr.line);
    json_decref(v);
    jwks_fail(reason);
}

static void jwks_take_body(void)
{
    char jerr[256];
    jwt_keyset *ks = jwt_keyset_new();
    const char *doc = g.body.data ? g.body.data : "";
    if (!ks) {
        jwks_fail("out of memory");
    } else if (jwt_keyset_add_jwks(ks, doc, g.body.len, JWKS_KEY, jerr, sizeof jerr) != 0) {
        jwt_keyset_release(ks);
        jwks_refuse_body(doc, g.body.len);
    } else
        jwks_succeed(ks);
}

static void jwks_set_inflight(int on)
{
    pthread_mutex_lock(&g.mu);
    g.inflight = on;
    if (on)
        g.last_begin_ms = util_now_ms();
    pthread_mutex_unlock(&g.mu);
}

static void jwks_on_done(CURL *easy, up_code code, CURLcode curl_code, void *ud)
{
    (void)ud;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    http_easy_put(easy);
    g.xfer = NULL;
    g.easy = NULL;
    jwks_set_inflight(0);
    char reason[CURL_ERROR_SIZE + 64];
    if (code == UP_STOPPING) { /* the loop is going: our stop hook, next, detaches */
        buf_free(&g.body);
        return;
    }
    if (g.too_large || code == UP_TOO_LARGE)
        jwks_fail("the answer is larger than 1 MiB");
    else if (code != UP_OK) {
        snprintf(reason, sizeof reason, "%s (%s)", up_strerror(code),
                 g.errbuf[0] ? g.errbuf : curl_easy_strerror(curl_code));
        jwks_fail(reason);
    } else if (status != 200) {
        snprintf(reason, sizeof reason, "the server answered HTTP %ld", status);
        jwks_fail(reason);
    } else
        jwks_take_body();
    buf_free(&g.body);
}

/* Starts a fetch unless one is in flight. The timer is stopped: the outcome arms it again. */
static void jwks_fetch_begin(void)
{
    if (g.xfer)
        return;
    ioloop_timer_stop(g.io, &g.timer);
    buf_free(&g.body);
    g.too_large = 0;
    g.max_age = -1;
    g.errbuf[0] = '\0';
    CURL *e = jwks_easy_new();
    jwks_set_inflight(1);
    if (!e || !(g.xfer = up_curl_start(e, jwks_on_done, NULL))) {
        http_easy_put(e);
        jwks_set_inflight(0);
        jwks_fail("the transfer could not be started");
        return;
    }
    g.easy = e;
}

/* Drops the transfer in flight, if any (its done is not called). */
static void jwks_abort_transfer(void)
{
    if (!g.xfer)
        return;
    up_curl_cancel(g.xfer);
    http_easy_put(g.easy);
    g.xfer = NULL;
    g.easy = NULL;
    buf_free(&g.body);
    jwks_set_inflight(0);
}

/* ---- on the loop: timer, poke, attach and detach ---- */

/* Non-zero on g.io's own thread. Timers and posts of a stopping loop run on the thread that
 * destroys it, after our stop hook detached: they must not fetch. */
static int jwks_on_own_loop(void)
{
    pthread_mutex_lock(&g.mu);
    int mine = g.io && g.io == ioloop_current();
    pthread_mutex_unlock(&g.mu);
    return mine;
}

static void jwks_on_timer(io_timer *t)
{
    (void)t;
    if (jwks_on_own_loop())
        jwks_fetch_begin();
}

static void jwks_on_poke(void *ud)
{
    (void)ud;
    pthread_mutex_lock(&g.mu);
    g.poke_posted = 0;
    int mine = g.io && g.io == ioloop_current();
    /* a timer's fetch may have begun since the poke looked */
    int due = g.last_begin_ms < 0 || util_now_ms() - g.last_begin_ms >= 1000.0 * g.min_refresh_s;
    pthread_mutex_unlock(&g.mu);
    if (mine && due)
        jwks_fetch_begin();
}

/* Forgets the loop: no transfer, no timer. Keys and configuration stay. */
static void jwks_detach(void)
{
    jwks_abort_transfer();
    ioloop_timer_stop(g.io, &g.timer);
    pthread_mutex_lock(&g.mu);
    g.io = NULL;
    pthread_mutex_unlock(&g.mu);
}

/* The loop's stop hook, after the upstream module's (which ended our transfer with UP_STOPPING).
 * The hook stays linked: the list goes with the loop, and walking it now would touch hooks their
 * owners already freed (the upstream module frees its own in its hook). */
static int jwks_on_loop_stop(io_hook *h)
{
    (void)h;
    jwks_detach();
    return 0;
}

static void jwks_attach(ioloop *io)
{
    ioloop_timer_init(&g.timer, jwks_on_timer, NULL);
    ioloop_at_stop(io, &g.stop_hook, jwks_on_loop_stop, NULL);
    pthread_mutex_lock(&g.mu);
    g.io = io;
    pthread_mutex_unlock(&g.mu);
}

typedef struct jwks_apply_arg {
    ioloop *io;
    const jwks_remote_opts *o;
    char *url; /* taken when the URL changes */
    int rc;
} jwks_apply_arg;

/* configure's work on the loop thread. A changed URL drops the keys and fetches at once; the same
 * URL keeps everything (a fresh loop, after a restart of the engine, fetches at once too). */
static void jwks_apply(void *ud)
{
    jwks_apply_arg *a = ud;
    if (ioloop_current() != a->io) /* run by a loop being destroyed: never attach to it */
        return;
    int fresh = g.io == NULL;
    if (fresh)
        jwks_attach(a->io);
    int same = g.url && strcmp(g.url, a->url) == 0;
    g.verify_tls = a->o->verify_tls;
    g.connect_timeout_ms = a->o->connect_timeout_ms;
    if (!same) {
        jwks_abort_transfer();
        free(g.url);
        g.url = a->url;
        a->url = NULL;
        g.failures = 0;
    }
    pthread_mutex_lock(&g.mu);
    g.configured = 1;
    g.min_refresh_s = a->o->min_refresh_s > 0 ? a->o->min_refresh_s : JWKS_DEFAULT_MIN_REFRESH_S;
    jwt_keyset *old = same ? NULL : g.keys;
    if (!same) {
        g.keys = NULL;
        g.why[0] = '\0';
        g.last_begin_ms = -1.0;
    }
    pthread_mutex_unlock(&g.mu);
    jwt_keyset_release(old);
    if (!same || fresh)
        jwks_fetch_begin();
    a->rc = 0;
}

/* jwks_remote_stop's work on a running loop: detached, and the stop hook unlinked. */
static void jwks_detach_on_loop(void *ud)
{
    (void)ud;
    if (!g.io || g.io != ioloop_current())
        return;
    ioloop_hook_remove(g.io, &g.stop_hook);
    jwks_detach();
}

/* ---- the public surface ---- */

void jwks_remote_stop(void)
{
    pthread_mutex_lock(&g.mu);
    ioloop *io = g.io;
    pthread_mutex_unlock(&g.mu);
    if (io)
        ioloop_call(io, jwks_detach_on_loop, NULL); /* refused: the loop is stopping, its hook detaches */
    pthread_mutex_lock(&g.mu);
    jwt_keyset *old = g.keys;
    g.keys = NULL;
    g.configured = 0;
    g.why[0] = '\0';
    g.last_begin_ms = -1.0;
    int detached = g.io == NULL;
    pthread_mutex_unlock(&g.mu);
    jwt_keyset_release(old);
    if (detached) { /* else the loop may still read them: they go at the next configure */
        free(g.url);
        g.url = NULL;
        g.failures = 0;
    }
}

int jwks_remote_configure(const jwks_remote_opts *o, char *err, size_t errlen)
{
    if (!o || !o->url) {
        jwks_remote_stop();
        return 0;
    }
    if (jwks_url_check(o->url, err, errlen) != 0)
        return -1;
    pthread_mutex_lock(&g.mu);
    ioloop *io = g.io;
    pthread_mutex_unlock(&g.mu);
    int n = 0;
    ioloop *const *loops = io ? NULL : engine_loops(&n);
    if (!io && n > 0)
        io = loops[0];
    if (!io)
        return util_err(err, errlen, JWKS_KEY ": the I/O loops are not running");
    jwks_apply_arg a = {.io = io, .o = o, .url = strdup(o->url), .rc = -1};
    if (!a.url)
        return util_err(err, errlen, JWKS_KEY ": out of memory");
    if (ioloop_call(io, jwks_apply, &a) != 0)
        a.rc = util_err(err, errlen, JWKS_KEY ": the I/O loop is stopping");
    else if (a.rc != 0)
        util_err(err, errlen, JWKS_KEY ": the I/O loop is stopping");
    free(a.url);
    return a.rc;
}

jwt_keyset *jwks_remote_acquire(void)
{
    pthread_mutex_lock(&g.mu);
    jwt_keyset *ks = g.keys;
    if (ks)
        jwt_keyset_retain(ks);
    pthread_mutex_unlock(&g.mu);
    return ks;
}

void jwks_remote_poke(void)
{
    pthread_mutex_lock(&g.mu);
    /* the post is made under the lock: our stop hook takes it before the loop goes, so g.io is
     * still a live loop here (ioloop_post only queues; it refuses once the loop is stopping) */
    if (g.io && g.configured && !g.inflight && !g.poke_posted &&
        (g.last_begin_ms < 0 || util_now_ms() - g.last_begin_ms >= 1000.0 * g.min_refresh_s) &&
        ioloop_post(g.io, jwks_on_poke, NULL) == 0)
        g.poke_posted = 1;
    pthread_mutex_unlock(&g.mu);
}

int jwks_remote_state(char *why, size_t whylen)
{
    pthread_mutex_lock(&g.mu);
    int st = !g.configured ? -1 : g.keys ? 1 : 0;
    if (why && whylen)
        util_copy(why, whylen, st != 0 ? "" : g.why[0] ? g.why : JWKS_NOT_FETCHED);
    pthread_mutex_unlock(&g.mu);
    return st;
}
