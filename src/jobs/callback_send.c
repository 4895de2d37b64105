/* callback_send: delivering a callback (jobs.h; what is sent and allowed: callback.c).
 *
 * jobs_callback_send copies the URL, the run id and the body, judges the URL again against the
 * configuration of the moment (a job recovered after a restart or a reload may meet other rules
 * than at accept), signs the body, and posts the callback to an I/O loop picked round-robin. All
 * else happens on that loop, through the upstream module's libcurl path (upstream.h):
 *
 *   attempt   a fresh easy handle POSTs the body (no redirects, no proxy, the answer dropped after
 *             64 KiB); CURLOPT_PREREQFUNCTION sees the address actually connected to and refuses a
 *             loopback, link-local or unspecified one unless the host is listed (DNS rebinding).
 *             That refusal is final: another try would only ask the same name again.
 *   done      2xx: delivered. Else the next try after a loop timer of a random delay in
 *             [0, min(60 s, base * 2^(tries-1))] ("full jitter"), or, after max attempts, one
 *             warning naming the run, the tries and the last status or error (never the body, the
 *             signature or the URL's path and query, which may carry a token).
 *
 * Each loop keeps its callbacks in a list of its own (loop-local data, loop thread only), with a
 * stop hook. jobs_callback_stop cancels them on their loops (ioloop_call) before the engine stops
 * the loops; should a loop stop first, the upstream module's stop hook ends the transfer in flight
 * (UP_STOPPING) and ours, after it, drops the timers and the rest. A post still queued when a loop
 * stops runs on the destroying thread: it sees it is not on its loop and only frees.
 *
 * g_mu orders sends against stop: a send posts under it only while not stopped, so every post is
 * queued before stop's own call to that loop runs. */
#include <curl/curl.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/engine.h"
#include "kailash/ioloop.h"
#include "kailash/jobs.h"
#include "kailash/log.h"
#include "kailash/upstream.h"
#include "kailash/util.h"
#include "jobs_internal.h"

#define CB_BACKOFF_CAP_MS 60000.0
#define CB_MAX_ANSWER 65536

typedef struct cb_loop cb_loop;

typedef struct cb {
    struct cb *prev, *next; /* in loop->head */
    ioloop *io;
    cb_loop *loop; /* NULL until linked on the loop */
    char *url, *body;
    size_t len;
    char run_id[64];
    char origin[320]; /* scheme://host:port, for the log */
    struct curl_slist *headers;
    jobs_cb_opts o;
    int attempts;
    io_timer timer;
    up_curl_xfer *xfer;
    CURL *easy;
    size_t answered; /* answer bytes read in this try */
    int capped;      /* the answer passed CB_MAX_ANSWER: the rest was not read */
    int refused;     /* this try's address was refused */
    char last[CURL_ERROR_SIZE + 64];
    char errbuf[CURL_ERROR_SIZE];
} cb;

struct cb_loop {
    ioloop *io;
    io_hook stop_hook;
    cb *head;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_stopped;         /* under g_mu */
static atomic_int g_inflight; /* callbacks sent and not yet delivered or given up */
static atomic_uint g_next;    /* round-robin over the loops */
static int g_key = -1;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

static void cb_key_init(void)
{
    g_key = ioloop_key_new();
}

/* ---- one callback ---- */

static void cb_free(cb *c)
{
    curl_slist_free_all(c->headers);
    free(c->url);
    free(c->body);
    free(c);
    atomic_fetch_sub(&g_inflight, 1);
}

static void cb_unlink(cb *c)
{
    if (!c->loop)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->loop->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->loop = NULL;
}

/* The end without delivery: one warning, then the callback goes. */
static void cb_give_up(cb *c, const char *why)
{
    log_msg(LOG_WARN, "callback for run %s to %s not delivered after %d attempt%s: %s", c->run_id, c->origin,
            c->attempts, c->attempts == 1 ? "" : "s", why);
    cb_unlink(c);
    cb_free(c);
}

static void cb_attempt(cb *c);

static void cb_on_timer(io_timer *t)
{
    cb *c = t->ud;
    if (c->loop && ioloop_current() == c->io)
        cb_attempt(c);
}

/* A uniformly random delay in [0, min(cap, base * 2^(tries-1))]. */
static double cb_backoff_ms(const cb *c)
{
    double bound = c->o.backoff_ms;
    for (int i = 1; i < c->attempts && bound < CB_BACKOFF_CAP_MS; i++)
        bound *= 2;
    if (bound > CB_BACKOFF_CAP_MS)
        bound = CB_BACKOFF_CAP_MS;
    unsigned r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
        r = (unsigned)util_now_ms();
    return bound * ((double)r / 4294967295.0);
}

/* After a failed try (c->last says why): the next one after the backoff, or the end. */
static void cb_retry(cb *c)
{
    if (c->attempts >= c->o.max_attempts) {
        cb_give_up(c, c->last);
        return;
    }
    if (ioloop_timer_start(c->io, &c->timer, cb_backoff_ms(c)) != 0)
        cb_give_up(c, "out of memory arming the retry timer");
}

/* ---- one try, from inside libcurl ---- */

static size_t cb_on_answer(char *p, size_t size, size_t nmemb, void *ud)
{
    (void)p;
    cb *c = ud;
    size_t n = size * nmemb;
    if (n > CB_MAX_ANSWER - c->answered) {
        c->capped = 1;
        return 0; /* enough: the status is what counts */
    }
    c->answered += n;
    return n;
}

/* CURLOPT_PREREQFUNCTION: connected (TLS included), nothing sent yet. */
static int cb_on_connected(void *ud, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    (void)local_ip, (void)primary_port, (void)local_port;
    cb *c = ud;
    if (c->o.listed || jobs_cb_ip_forbidden(primary_ip) == 0)
        return CURL_PREREQFUNC_OK;
    c->refused = 1;
    return CURL_PREREQFUNC_ABORT;
}

static CURL *cb_easy_new(cb *c)
{
    CURL *e = http_easy_get();
    if (!e)
        return NULL;
    long verify = c->o.verify_tls ? 1L : 0L;
    long connect_ms = c->o.connect_timeout_ms < c->o.timeout_ms ? c->o.connect_timeout_ms : c->o.timeout_ms;
    CURLcode r = CURLE_OK;
    r |= curl_easy_setopt(e, CURLOPT_URL, c->url);
    r |= curl_easy_setopt(e, CURLOPT_PROXY, ""); /* upstream.h, "Proxies" */
    r |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    r |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    r |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    r |= curl_easy_setopt(e, CURLOPT_POST, 1L);
    r |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
    r |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->len);
    r |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    r |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->o.timeout_ms);
    r |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    r |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, verify);
    r |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
    r |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, cb_on_answer);
    r |= curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    r |= curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, cb_on_connected);
    r |= curl_easy_setopt(e, CURLOPT_PREREQDATA, c);
    r |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    if (r != CURLE_OK) {
        http_easy_put(e);
        return NULL;
    }
    return e;
}

static void cb_on_done(CURL *easy, up_code code, CURLcode curl_code, void *ud)
{
    cb *c = ud;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    http_easy_put(easy);
    c->xfer = NULL;
    c->easy = NULL;
    int answered = code == UP_OK || (code == UP_WRITE_ERROR && c->capped && status > 0);
    if (answered && status >= 200 && status <= 299) {
        cb_unlink(c);
        cb_free(c);
    } else if (c->refused) { /* before UP_STOPPING: libcurl's code for it is the loop's abort too */
        cb_give_up(c, "the host's address is a loopback, link-local or unspecified one");
    } else if (code == UP_STOPPING) {
        cb_give_up(c, "the I/O loop stopped");
    } else {
        if (answered)
            snprintf(c->last, sizeof c->last, "HTTP %ld", status);
        else
            snprintf(c->last, sizeof c->last, "%s (%s)", up_strerror(code),
                     c->errbuf[0] ? c->errbuf : curl_easy_strerror(curl_code));
        cb_retry(c);
    }
}

static void cb_attempt(cb *c)
{
    c->answered = 0;
    c->capped = 0;
    c->refused = 0;
    c->errbuf[0] = '\0';
    c->attempts++;
    CURL *e = cb_easy_new(c);
    if (!e || !(c->xfer = up_curl_start(e, cb_on_done, c))) {
        http_easy_put(e);
        util_copy(c->last, sizeof c->last, "the transfer could not be started");
        cb_retry(c);
        return;
    }
    c->easy = e;
}

/* ---- the loop's list ---- */

/* Ends every callback of l (its loop's thread) and l itself. */
static void cb_loop_end(cb_loop *l, const char *why)
{
    while (l->head) {
        cb *c = l->head;
        if (c->xfer) {
            up_curl_cancel(c->xfer);
            http_easy_put(c->easy);
            c->xfer = NULL;
        }
        ioloop_timer_stop(l->io, &c->timer);
        cb_give_up(c, why);
    }
    ioloop_set_local(l->io, g_key, NULL);
    free(l);
}

/* After the upstream module's own hook (it attached first), which ended the transfers in flight.
 * Freeing our hook here is fine: the loop read the next one before calling us. */
static int cb_on_loop_stop(io_hook *h)
{
    cb_loop_end(h->ud, "the I/O loop stopped");
    return 0;
}

static cb_loop *cb_loop_get(ioloop *io)
{
    cb_loop *l = ioloop_get_local(io, g_key);
    if (l || !(l = calloc(1, sizeof *l)))
        return l;
    l->io = io;
    ioloop_set_local(io, g_key, l);
    ioloop_at_stop(io, &l->stop_hook, cb_on_loop_stop, l);
    return l;
}

static void cb_on_post(void *ud)
{
    cb *c = ud;
    pthread_mutex_lock(&g_mu);
    int stopped = g_stopped;
    pthread_mutex_unlock(&g_mu);
    cb_loop *l = NULL;
    if (ioloop_current() != c->io || stopped) { /* a stopping loop drains its posts elsewhere */
        cb_give_up(c, "shutting down");
        return;
    }
    if (!(l = cb_loop_get(c->io))) {
        cb_give_up(c, "out of memory");
        return;
    }
    c->loop = l;
    c->next = l->head;
    if (l->head)
        l->head->prev = c;
    l->head = c;
    cb_attempt(c);
}

static void cb_stop_on_loop(void *ud)
{
    (void)ud;
    ioloop *io = ioloop_current();
    cb_loop *l = io ? ioloop_get_local(io, g_key) : NULL;
    if (!l)
        return;
    ioloop_hook_remove(io, &l->stop_hook);
    cb_loop_end(l, "shutting down");
}

/* ---- sending ---- */

static int cb_headers(cb *c)
{
    char line[160];
    struct curl_slist *h = NULL, *t;
    const char *fixed[] = {"Content-Type: application/json", ("User-Agent: kailashd/" KAILASH_VERSION), "Expect:"};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        if (!(t = curl_slist_append(h, fixed[i])))
            goto err;
        h = t;
    }
    snprintf(line, sizeof line, "X-Kailash-Run-ID: %s", c->run_id);
    if (!(t = curl_slist_append(h, line)))
        goto err;
    h = t;
    if (c->o.signature[0]) {
        snprintf(line, sizeof line, "X-Kailash-Signature: %s", c->o.signature);
        if (!(t = curl_slist_append(h, line)))
            goto err;
        h = t;
    }
    c->headers = h;
    return 0;
err:
    curl_slist_free_all(h);
    return -1;
}

/* "scheme://host:port" of url (never its path or query), or "?" */
static void cb_origin(const char *url, char *out, size_t cap)
{
    CURLU *u = curl_url();
    char *s = NULL, *h = NULL, *p = NULL;
    util_copy(out, cap, "?");
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK && curl_url_get(u, CURLUPART_SCHEME, &s, 0) == 0 &&
        curl_url_get(u, CURLUPART_HOST, &h, 0) == 0 && curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) == 0)
        snprintf(out, cap, "%s://%.200s:%s", s, h, p);
    curl_free(s);
    curl_free(h);
    curl_free(p);
    curl_url_cleanup(u);
}

/* The run id as a header may carry it: printable ASCII without spaces, at most 63 bytes. */
static void cb_run_id(const char *run_id, char out[64])
{
    size_t n = 0;
    for (; run_id && run_id[n] && n < 63; n++)
        out[n] = run_id[n] > 0x20 && run_id[n] < 0x7f ? run_id[n] : '_';
    out[n] = '\0';
}

/* A callback ready to go (not yet counted), or NULL with why (logged by the caller). */
static cb *cb_new(const char *url, const char *run_id, const char *body, size_t len, char *why, size_t whylen)
{
    cb *c = calloc(1, sizeof *c);
    if (!c || !(c->url = strdup(url)) || !(c->body = malloc(len + 1))) {
        util_copy(why, whylen, "out of memory");
        goto err;
    }
    if (len)
        memcpy(c->body, body, len);
    c->body[len] = '\0';
    c->len = len;
    cb_run_id(run_id, c->run_id);
    cb_origin(url, c->origin, sizeof c->origin);
    if (jobs_cb_prepare(url, c->body, len, &c->o, why, whylen) != 0)
        goto err;
    if (cb_headers(c) != 0) {
        util_copy(why, whylen, "out of memory");
        goto err;
    }
    ioloop_timer_init(&c->timer, cb_on_timer, c);
    return c;
err:
    if (c) {
        free(c->url);
        free(c->body);
    }
    free(c);
    return NULL;
}

/* Posts c to the next loop under g_mu. 0, or -1 with why (c still the caller's). */
static int cb_post(cb *c, char *why, size_t whylen)
{
    int n = 0;
    ioloop *const *loops = engine_loops(&n);
    int rc = -1;
    pthread_mutex_lock(&g_mu);
    if (g_stopped)
        util_copy(why, whylen, "shutting down");
    else if (n <= 0)
        util_copy(why, whylen, "the I/O loops are not running");
    else {
        c->io = loops[atomic_fetch_add(&g_next, 1) % (unsigned)n];
        atomic_fetch_add(&g_inflight, 1);
        if ((rc = ioloop_post(c->io, cb_on_post, c)) != 0) {
            atomic_fetch_sub(&g_inflight, 1);
            util_copy(why, whylen, "the I/O loop is stopping");
        }
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

void jobs_callback_send(const char *url, const char *run_id, const char *body, size_t len)
{
    char why[256];
    char rid[64];
    pthread_once(&g_key_once, cb_key_init);
    cb *c = g_key >= 0 ? cb_new(url ? url : "", run_id, body, body ? len : 0, why, sizeof why) : NULL;
    if (g_key < 0)
        util_copy(why, sizeof why, "no loop-local key left");
    if (c && cb_post(c, why, sizeof why) == 0)
        return;
    cb_run_id(run_id, rid);
    log_msg(LOG_WARN, "callback for run %s not sent: %s", rid, why);
    if (c) {
        atomic_fetch_add(&g_inflight, 1); /* cb_free counts it off */
        cb_free(c);
    }
}

int jobs_callback_inflight(void)
{
    return atomic_load(&g_inflight);
}

/* configure: sends are taken again (after a stop, in tests). */
void jobs_cb_started(void)
{
    pthread_mutex_lock(&g_mu);
    g_stopped = 0;
    pthread_mutex_unlock(&g_mu);
}

void jobs_callback_stop(void)
{
    pthread_mutex_lock(&g_mu);
    g_stopped = 1;
    pthread_mutex_unlock(&g_mu);
    pthread_once(&g_key_once, cb_key_init);
    if (g_key < 0)
        return;
    int n = 0;
    ioloop *const *loops = engine_loops(&n);
    for (int i = 0; i < n; i++)
        ioloop_call(loops[i], cb_stop_on_loop, NULL); /* refused: the loop is stopping; its hook ends them */
}
