/* exchange: one node's call out, from its first attempt to its outputs (see upstream.h).
 *
 * An attempt goes one of two ways, chosen by its URL alone: an http:// URL without credentials whose
 * path and query are printable goes through the loop's own HTTP/1.1 client (the plain path, wire.c:
 * its bytes are built here and sent as they are), at a numeric address at once, at a name once the
 * resolver has it (the first call waits for it; the same way every time); anything else goes through
 * libcurl. Both report into the same callbacks (http_on_header, http_on_body) and end in http_on_end
 * with an up_code, so every decision below is one code path. An attempt through libcurl takes a new
 * easy handle and cleans it up as soon as it ends, also before a retry or failover: a reused handle
 * is what libcurl 7.88.1's header-unfolding double free needs (easy.c). Connections are reused
 * through the multi handle all the same. Everything per attempt (response bytes, headers, the CURLU
 * of the load balancer) is reset in http_attempt.
 *
 * Everything runs on the exchange's loop: a start from another thread is posted there first.
 * Where an exchange waits is always one of: a plain transfer, a libcurl transfer, the resolver (with
 * the attempt's deadline on ex->timer), a backoff (ex->timer), or the posted start; http_exchange_abort
 * withdraws it from whichever. The resolver's answer and the posted start cannot be withdrawn once on
 * their way: an aborted exchange then waits for them as a zombie (done already called) and frees
 * itself when they arrive.
 *
 * Decisions an answer goes through (http_on_end):
 *   UP_OK                        -> an answer; 502/503/504 are retried while retries and time
 *                                   remain, any other status is final (404/500: success false);
 *   oversize, out of memory,
 *   loop shutdown, run deadline  -> fail at once (retrying cannot help);
 *   anything else (refused,
 *   reset, TLS, DNS, garbage,
 *   the node's own timeout)      -> transport error: fail over (load balancer) or retry with
 *                                   backoff, else fail with upstream_error.
 * Backoff is retry_backoff x 2^n, capped at HTTP_BACKOFF_CAP_MS, and a retry that would start
 * after the run's deadline is not scheduled: the last result stands.
 *
 * Response bodies and headers count against max_response_bytes together, checked in the write
 * callbacks, so a hostile upstream can make us hold at most that many bytes per transfer; header
 * lines alone stop at HTTP_MAX_HEADER_BYTES (each one stored costs a JSON string and a key), and the
 * plain path stops reading at twice max_response_bytes of answer, chunk framing included. */
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "upstream_internal.h"

/* Where an exchange waits (see the top of this file). */
typedef enum http_phase {
    PH_NEW,       /* not started */
    PH_POSTED,    /* its start is posted to its loop */
    PH_RESOLVING, /* the resolver has its host name; ex->timer is the attempt's deadline */
    PH_PLAIN,     /* a plain transfer (ex->h1) */
    PH_CURL,      /* a libcurl transfer (ex->cx) */
    PH_BACKOFF,   /* ex->timer until the next attempt */
    PH_FAILING,   /* an attempt that failed as it started: ex->timer hands its end back at once */
    PH_LATE,      /* the resolver's answer is on its way after the attempt's deadline fired */
} http_phase;

struct http_exchange {
    http_request req;
    http_limits lim;
    ioloop *io;
    double deadline_ms;
    const http_hooks *hooks;
    void *ud; /* owned, freed with hooks->free_ud */
    http_done_fn done;
    void *done_ud;
    http_phase phase;
    int zombie; /* aborted while a post was on its way to it: freed when it arrives */
    up_code failing; /* PH_FAILING's end */
    io_timer timer;
    up_resolve_wait *rw; /* made when a name must wait for the resolver; it keeps the name */
    up_h1_xfer *h1;
    up_curl_xfer *cx;
    CURL *easy; /* the libcurl attempt's handle; NULL otherwise */
    char errbuf[CURL_ERROR_SIZE];
    buf wire;      /* the plain path's request bytes */
    up_h1_req q;   /* the plain attempt (its address filled once known) */
    /* per attempt */
    double limit_ms;   /* the attempt's time limit */
    double started_ms; /* when it began (resolving counts) */
    long status;       /* of the answer */
    long line_status;  /* of the last status line the header callback saw (1xx included) */
    double total_ms;   /* the attempt's time */
    int connected;     /* it had a connection */
    buf body;
    json_t *rheaders; /* owned: names in the case first received */
    json_t *rnames;   /* owned: lower-cased name -> the name as rheaders holds it, or (repeated) its joins[] index */
    struct http_join *joins; /* owned: repeated headers' joined values, into rheaders at the answer */
    size_t njoins, joins_cap;
    size_t rx_bytes, header_bytes;
    int oversize, oom, header_oversize;
    int deadline_limited;
    /* across attempts */
    int retries_done;
};

typedef enum http_outcome { HTTP_ANSWER, HTTP_TRANSPORT, HTTP_FATAL } http_outcome;

static void http_on_timer(io_timer *t);

http_exchange *http_exchange_new(ioloop *io, double deadline_ms, const http_limits *lim, const http_hooks *hooks,
                                 void *ud)
{
    http_exchange *ex = calloc(1, sizeof *ex);
    if (ex) {
        ex->rheaders = json_object();
        ex->rnames = json_object();
    }
    if (!ex || !ex->rheaders || !ex->rnames) {
        if (ex) {
            json_decref(ex->rheaders);
            json_decref(ex->rnames);
        }
        free(ex);
        if (hooks->free_ud)
            hooks->free_ud(ud);
        return NULL;
    }
    ex->io = io;
    ex->deadline_ms = deadline_ms;
    ex->lim = *lim;
    ex->hooks = hooks;
    ex->ud = ud;
    ioloop_timer_init(&ex->timer, http_on_timer, ex);
    return ex;
}

http_request *http_exchange_request(http_exchange *ex)
{
    return &ex->req;
}
void *http_exchange_ud(http_exchange *ex)
{
    return ex->ud;
}

static void http_joins_clear(http_exchange *ex);

void http_exchange_free(http_exchange *ex)
{
    if (!ex)
        return;
    http_easy_put(ex->easy);
    http_request_clear(&ex->req);
    buf_free(&ex->wire);
    buf_free(&ex->body);
    json_decref(ex->rheaders);
    json_decref(ex->rnames);
    http_joins_clear(ex);
    free(ex->joins);
    free(ex->rw);
    if (ex->hooks->free_ud)
        ex->hooks->free_ud(ex->ud);
    free(ex);
}

/* Completes the exchange: frees ex (unless a post is still on its way to it), then calls done. The
 * caller's state is the caller's again the moment done runs. */
static void http_finish(http_exchange *ex, json_t *outputs, const node_error *err)
{
    http_done_fn done = ex->done;
    void *done_ud = ex->done_ud;
    node_error copy;
    if (err)
        copy = *err;
    if (ex->zombie)
        ex->done = NULL; /* freed when the post arrives */
    else
        http_exchange_free(ex);
    done(done_ud, outputs, err ? &copy : NULL);
}

/* ---- write callbacks (loop thread) ---- */

static int http_count(http_exchange *ex, size_t n)
{
    if (n > ex->lim.max_response_bytes - ex->rx_bytes) {
        ex->oversize = 1;
        return -1;
    }
    ex->rx_bytes += n;
    return 0;
}

static size_t http_on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    http_exchange *ex = ud;
    size_t n = size * nmemb;
    if (http_count(ex, n) != 0)
        return 0; /* curl aborts the transfer with CURLE_WRITE_ERROR */
    if (buf_append(&ex->body, p, n) != 0) {
        ex->oom = 1;
        return 0;
    }
    return n;
}

/* A header line's name: surrounding blanks off. Its value: leading blanks and the line end off,
 * trailing blanks kept, as the SDK's requests (http.client) keeps them. */
static void http_trim(const char **p, const char **end, int keep_trailing)
{
    while (*p < *end && (**p == ' ' || **p == '\t'))
        (*p)++;
    while (*end > *p && ((*end)[-1] == '\r' || (*end)[-1] == '\n' ||
                         (!keep_trailing && ((*end)[-1] == ' ' || (*end)[-1] == '\t'))))
        (*end)--;
}

json_t *http_header_get(json_t *headers, const char *name)
{
    json_t *v = json_object_get(headers, name);
    if (v)
        return v;
    const char *k;
    json_object_foreach(headers, k, v) if (strcasecmp(k, name) == 0) return v;
    return NULL;
}

/* Repeated headers are joined as text, and stored once the answer's headers are complete. */
struct http_join {
    char *key; /* the name as rheaders holds it */
    buf text;  /* the values so far, ", "-joined */
};

static void http_joins_clear(http_exchange *ex)
{
    for (size_t i = 0; i < ex->njoins; i++) {
        free(ex->joins[i].key);
        buf_free(&ex->joins[i].text);
    }
    ex->njoins = 0;
}

/* The joined values into rheaders (invalid UTF-8 as U+FFFD, as each value was). 0 or -1. */
static int http_joins_flush(http_exchange *ex)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < ex->njoins; i++) {
        struct http_join *j = &ex->joins[i];
        json_t *value = http_text_json(j->text.data ? j->text.data : "", j->text.len);
        rc = value && json_object_set_new(ex->rheaders, j->key, value) == 0 ? 0 : -1;
    }
    http_joins_clear(ex);
    return rc;
}

/* Adds "name: value" to rheaders, the name in the case it came in. A repeat, in any case, joins its
 * value to the first one's with ", " under the first one's name (requests' way, via urllib3). The
 * joined text grows in a joins[] buffer, not as a new JSON string per repeat (which copied the whole
 * value again each time: quadratic in a hostile answer's repeats); http_joins_flush stores it. */
static int http_store_header(http_exchange *ex, const char *p, const char *colon, const char *end)
{
    const char *ns = p, *ne = colon, *vs = colon + 1, *ve = end;
    http_trim(&ns, &ne, 0);
    http_trim(&vs, &ve, 1);
    char name[256], lower[256];
    size_t nl = (size_t)(ne - ns);
    if (nl == 0 || nl >= sizeof name)
        return 0; /* nameless or absurd: not worth keeping */
    memcpy(name, ns, nl);
    name[nl] = '\0';
    for (size_t i = 0; i <= nl; i++)
        lower[i] = (char)tolower((unsigned char)name[i]);
    if (!http_is_token(name))
        return 0; /* not a header name (libcurl passes any): it may not even be UTF-8, as a JSON key must */
    json_t *first = json_object_get(ex->rnames, lower);
    if (!first) { /* the usual case: a header seen once */
        json_t *value = http_text_json(vs, (size_t)(ve - vs));
        if (!value || json_object_set_new(ex->rheaders, name, value) != 0)
            return -1;
        return json_object_set_new(ex->rnames, lower, json_string(name)) == 0 ? 0 : -1;
    }
    struct http_join *j;
    if (json_is_integer(first)) {
        j = &ex->joins[json_integer_value(first)];
    } else { /* the first repeat: its join starts from the value stored */
        if (ex->njoins == ex->joins_cap) {
            size_t cap = ex->joins_cap ? 2 * ex->joins_cap : 4;
            struct http_join *grown = realloc(ex->joins, cap * sizeof *grown);
            if (!grown)
                return -1;
            ex->joins = grown;
            ex->joins_cap = cap;
        }
        j = &ex->joins[ex->njoins];
        *j = (struct http_join){.key = strdup(json_string_value(first))};
        json_t *old = j->key ? json_object_get(ex->rheaders, j->key) : NULL;
        const char *ov = json_string_value(old);
        if (!j->key || buf_append(&j->text, ov ? ov : "", json_string_length(old)) != 0) {
            free(j->key);
            buf_free(&j->text);
            return -1;
        }
        ex->njoins++;
        if (json_object_set_new(ex->rnames, lower, json_integer((json_int_t)(ex->njoins - 1))) != 0)
            return -1;
    }
    return buf_append(&j->text, ", ", 2) == 0 && buf_append(&j->text, vs, (size_t)(ve - vs)) == 0 ? 0 : -1;
}

/* The status of a status line ("HTTP/1.1 200 OK", "HTTP/2 200"), 0 when it shows none. */
static long http_line_status(const char *p, size_t n)
{
    const char *sp = memchr(p, ' ', n);
    if (!sp)
        return 0;
    size_t left = (size_t)(p + n - sp - 1);
    long st = 0;
    for (size_t i = 0; i < left && i < 3 && isdigit((unsigned char)sp[1 + i]); i++)
        st = st * 10 + (sp[1 + i] - '0');
    return st;
}

/* A Content-Length header announcing a body larger than what is left of max_response_bytes: the
 * answer fails at once rather than at the node's timeout (libcurl's CURLOPT_MAXFILESIZE does the
 * same; the plain path would read on). Not for answers without a body, whose length describes
 * another answer's: HEAD, 1xx, 204, 304. */
static int http_length_over(const http_exchange *ex, const char *p, const char *colon, const char *end)
{
    long st = ex->line_status;
    if (colon - p != 14 || strncasecmp(p, "content-length", 14) != 0 || strcmp(ex->req.method, "HEAD") == 0 ||
        st < 200 || st == 204 || st == 304)
        return 0;
    const char *v = colon + 1;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    uintmax_t len = 0;
    for (; v < end && isdigit((unsigned char)*v); v++) {
        if (len > (UINTMAX_MAX - 9) / 10)
            return 1;
        len = len * 10 + (uintmax_t)(*v - '0');
    }
    return len > ex->lim.max_response_bytes - ex->rx_bytes;
}

static size_t http_on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    http_exchange *ex = ud;
    size_t n = size * nmemb;
    if (http_count(ex, n) != 0)
        return 0;
    ex->header_bytes += n;
    if (ex->header_bytes > HTTP_MAX_HEADER_BYTES) { /* each stored header costs far more than its line */
        ex->header_oversize = 1;
        return 0;
    }
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) { /* a status line: a new response (1xx, then final) */
        json_object_clear(ex->rheaders);
        json_object_clear(ex->rnames);
        http_joins_clear(ex);
        ex->line_status = http_line_status(p, n);
        return n;
    }
    const char *colon = memchr(p, ':', n);
    if (!colon || p[0] == ' ' || p[0] == '\t') /* the blank line, or an obsolete folded line */
        return n;
    if (http_length_over(ex, p, colon, p + n)) {
        ex->oversize = 1;
        return 0;
    }
    if (http_store_header(ex, p, colon, p + n) != 0) {
        ex->oom = 1;
        return 0;
    }
    return n;
}

/* ---- setting up the easy handle (once per attempt) ---- */

static int http_easy_method(CURL *e, const http_request *r)
{
    CURLcode c = CURLE_OK;
    if (strcmp(r->method, "HEAD") == 0)
        return curl_easy_setopt(e, CURLOPT_NOBODY, 1L) == CURLE_OK ? 0 : -1;
    if (r->body || strcmp(r->method, "POST") == 0) {
        c |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(r->body ? r->body_len : 0));
        c |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
    }
    if (strcmp(r->method, "POST") != 0 && (r->body || strcmp(r->method, "GET") != 0))
        c |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    return c == CURLE_OK ? 0 : -1;
}

static int http_easy_setup(http_exchange *ex)
{
    CURL *e = ex->easy;
    long verify = ex->lim.verify_tls ? 1L : 0L;
    CURLcode c = CURLE_OK;
    c |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    c |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    c |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    c |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ex->lim.connect_timeout_ms);
    c |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, verify);
    c |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
    c |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)ex->lim.max_response_bytes);
    c |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_on_body);
    c |= curl_easy_setopt(e, CURLOPT_WRITEDATA, ex);
    c |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_on_header);
    c |= curl_easy_setopt(e, CURLOPT_HEADERDATA, ex);
    c |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, ex->errbuf);
    c |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, ex->req.headers);
    /* no proxy from the environment: the plain path cannot follow one (upstream.h, "Proxies") */
    c |= curl_easy_setopt(e, CURLOPT_PROXY, "");
    if (c != CURLE_OK)
        return -1;
    return http_easy_method(e, &ex->req);
}

/* ---- attempts ---- */

static void http_on_curl_done(CURL *easy, up_code code, CURLcode curl_code, void *ud);
static void http_on_h1_done(const up_h1_result *r, void *ud);
static void http_on_resolved(up_resolve_wait *w, const up_addrs *a);
static void http_on_end(http_exchange *ex, up_code rc);

static void http_hook_end(http_exchange *ex, http_end how)
{
    if (ex->hooks->end)
        ex->hooks->end(ex, how);
}

/* The attempt through libcurl, on a new easy handle (http_on_curl_done cleans it up). */
static int http_attempt_curl(http_exchange *ex)
{
    http_easy_put(ex->easy); /* none left from an attempt that never started */
    ex->easy = http_easy_get();
    if (!ex->easy || http_easy_setup(ex) != 0)
        return -1;
    CURLU *url = http_request_url(&ex->req);
    if (!url)
        return -1;
    CURLcode c = curl_easy_setopt(ex->easy, CURLOPT_CURLU, url);
    c |= curl_easy_setopt(ex->easy, CURLOPT_TIMEOUT_MS, (long)ceil(ex->limit_ms));
    if (c != CURLE_OK || !(ex->cx = up_curl_start(ex->easy, http_on_curl_done, ex)))
        return -1;
    ex->phase = PH_CURL;
    return 0;
}

static size_t http_h1_header(char *p, size_t n, void *ud)
{
    return http_on_header(p, 1, n, ud);
}
static size_t http_h1_body(char *p, size_t n, void *ud)
{
    return http_on_body(p, 1, n, ud);
}

/* The plain transfer, its address known; what is left of the attempt's time bounds it. */
static int http_attempt_send_plain(http_exchange *ex)
{
    double left = ex->limit_ms - (util_now_ms() - ex->started_ms);
    ex->q.timeout_ms = left > 1 ? left : 1;
    ex->q.connect_timeout_ms = fmin((double)ex->lim.connect_timeout_ms, ex->q.timeout_ms);
    ex->q.data = ex->wire.data;
    ex->q.len = ex->wire.len;
    if (!(ex->h1 = up_h1_start(&ex->q, http_on_h1_done, ex)))
        return -1;
    ex->phase = PH_PLAIN;
    return 0;
}

static void http_set_addrs(http_exchange *ex, const up_addrs *a)
{
    ex->q.addr = a->addr[0];
    ex->q.addrlen = a->len[0];
    ex->q.alt = a->addr[1];
    ex->q.altlen = a->n > 1 ? a->len[1] : 0;
}

/* The attempt through the loop's own client, when the URL and the request allow it; 1 when not. A
 * host name waits for the resolver first (bounded by the attempt's time on ex->timer). */
static int http_attempt_plain(http_exchange *ex)
{
    ex->q = (up_h1_req){
        .no_body = strcmp(ex->req.method, "HEAD") == 0,
        /* body and headers count in http_count; this bounds chunk framing too (0: no bound, for a
         * limit so large that doubling it would wrap) */
        .max_bytes =
            ex->lim.max_response_bytes < SIZE_MAX / 4 ? 2 * ex->lim.max_response_bytes + HTTP_MAX_HEADER_BYTES : 0,
        .on_header = http_h1_header,
        .on_body = http_h1_body,
    };
    char host[256];
    long port;
    int where = http_wire_prepare(&ex->req, &ex->q, &ex->wire, host, sizeof host, &port);
    if (where < 0)
        return 1;
    if (where == 0)
        return http_attempt_send_plain(ex);
    if (!ex->rw && !(ex->rw = calloc(1, sizeof *ex->rw)))
        return -1;
    ex->rw->ud = ex;
    up_addrs a;
    int rc = upstream_resolve(ex->io, host, port, ex->rw, http_on_resolved, &a);
    if (rc == 1) { /* known: on at once */
        if (a.n == 0) { /* known not to resolve: ended through the timer, never inside start */
            snprintf(ex->errbuf, sizeof ex->errbuf, "Could not resolve host: %.200s", host);
            ex->failing = UP_RESOLVE;
            ex->phase = PH_FAILING;
            return ioloop_timer_start(ex->io, &ex->timer, 0) == 0 ? 0 : -1;
        }
        http_set_addrs(ex, &a);
        return http_attempt_send_plain(ex);
    }
    if (rc < 0 || ioloop_timer_start(ex->io, &ex->timer, ex->limit_ms) != 0) {
        if (rc == 0)
            upstream_resolve_cancel(ex->rw);
        return rc < 0 ? 1 : -1;
    }
    ex->phase = PH_RESOLVING;
    return 0;
}

/* Starts one attempt (loop thread): the run's deadline caps the node's timeout. 0, or -1 with err. */
static int http_attempt(http_exchange *ex, int new_round, node_error *err)
{
    double limit = ex->req.timeout_ms, deadline = ex->deadline_ms;
    ex->deadline_limited = 0;
    if (deadline > 0) {
        double left = deadline - util_now_ms();
        if (left <= 0)
            return node_fail(err, "timeout", "the run's deadline passed before the request was sent");
        if (left < limit) {
            limit = left;
            ex->deadline_limited = 1;
        }
    }
    if (ex->hooks->begin && ex->hooks->begin(ex, new_round, err) != 0)
        return -1;
    ex->body.len = 0;
    ex->rx_bytes = ex->header_bytes = 0;
    ex->oversize = ex->oom = ex->header_oversize = 0;
    ex->status = ex->line_status = 0;
    ex->total_ms = 0;
    ex->connected = 0;
    ex->errbuf[0] = '\0';
    ex->limit_ms = limit;
    ex->started_ms = util_now_ms();
    json_object_clear(ex->rheaders);
    json_object_clear(ex->rnames);
    http_joins_clear(ex);
    int rc = http_attempt_plain(ex);
    if (rc == 1)
        rc = http_attempt_curl(ex);
    if (rc != 0) {
        http_hook_end(ex, HTTP_END_OTHER);
        return node_fail(err, "internal", "the I/O loop did not take the request");
    }
    return 0;
}

/* ex->timer: a backoff ended, or the resolver took longer than the attempt may (or said no). */
static void http_on_timer(io_timer *t)
{
    http_exchange *ex = t->ud;
    if (ex->phase == PH_RESOLVING) {
        if (!upstream_resolve_cancel(ex->rw)) { /* its answer is on its way: it ends the attempt */
            ex->phase = PH_LATE;
            return;
        }
        ex->phase = PH_NEW;
        snprintf(ex->errbuf, sizeof ex->errbuf, "resolving %.200s timed out", ex->rw->host);
        http_on_end(ex, UP_TIMEOUT);
        return;
    }
    if (ex->phase == PH_FAILING) {
        http_on_end(ex, ex->failing);
        return;
    }
    ex->phase = PH_NEW;
    node_error err;
    if (http_attempt(ex, 1, &err) != 0)
        http_finish(ex, NULL, &err);
}

static void http_on_resolved(up_resolve_wait *w, const up_addrs *a)
{
    http_exchange *ex = w->ud;
    if (ex->zombie) {
        http_exchange_free(ex);
        return;
    }
    int timed_out = ex->phase == PH_LATE; /* the deadline fired first */
    ioloop_timer_stop(ex->io, &ex->timer);
    ex->phase = PH_NEW;
    if (timed_out || a->n == 0) {
        if (timed_out)
            snprintf(ex->errbuf, sizeof ex->errbuf, "resolving %.200s timed out", ex->rw->host);
        else
            snprintf(ex->errbuf, sizeof ex->errbuf, "Could not resolve host: %.200s", ex->rw->host);
        http_on_end(ex, timed_out ? UP_TIMEOUT : UP_RESOLVE);
        return;
    }
    http_set_addrs(ex, a);
    if (http_attempt_send_plain(ex) != 0) {
        http_hook_end(ex, HTTP_END_OTHER);
        http_finish(ex, NULL, &(node_error){"internal", "the I/O loop did not take the request"});
    }
}

/* Schedules a retry when one is left and it can start before the run's deadline. */
static int http_retry(http_exchange *ex)
{
    if (ex->retries_done >= ex->req.retry_count)
        return 0;
    double delay = ex->req.backoff_ms * pow(2.0, ex->retries_done);
    if (delay > HTTP_BACKOFF_CAP_MS)
        delay = HTTP_BACKOFF_CAP_MS;
    if (ex->deadline_ms > 0 && util_now_ms() + delay >= ex->deadline_ms)
        return 0;
    ex->errbuf[0] = '\0';
    if (ioloop_timer_start(ex->io, &ex->timer, delay) != 0)
        return 0;
    ex->phase = PH_BACKOFF;
    ex->retries_done++;
    return 1;
}

static http_outcome http_timed_out(http_exchange *ex, const char *where, node_error *err)
{
    if (ex->deadline_limited && util_now_ms() >= ex->deadline_ms - 5.0) {
        node_fail(err, "timeout", "the run's deadline passed while waiting for %s", where);
        return HTTP_FATAL;
    }
    if (ex->connected)
        node_fail(err, "upstream_error", "%s: no answer within %.3g s", where, ex->req.timeout_ms / 1000.0);
    else
        node_fail(err, "upstream_error", "%s: no connection within %.3g s", where,
                  fmin(ex->req.timeout_ms, (double)ex->lim.connect_timeout_ms) / 1000.0);
    return HTTP_TRANSPORT;
}

static http_outcome http_classify(http_exchange *ex, up_code rc, node_error *err)
{
    if (rc == UP_OK)
        return HTTP_ANSWER;
    char where[300], origin[280];
    http_request_origin_text(&ex->req, origin, sizeof origin);
    snprintf(where, sizeof where, "%s %s", ex->req.method, origin);
    if (ex->oom) {
        node_fail(err, "internal", "%s: out of memory reading the answer", where);
        return HTTP_FATAL;
    }
    if (ex->header_oversize) {
        node_fail(err, "upstream_error", "%s: answer headers over %d KiB", where, HTTP_MAX_HEADER_BYTES / 1024);
        return HTTP_FATAL;
    }
    if (ex->oversize || rc == UP_TOO_LARGE) {
        node_fail(err, "upstream_error", "%s: answer over max_response_bytes (%zu)", where, ex->lim.max_response_bytes);
        return HTTP_FATAL;
    }
    if (rc == UP_STOPPING) {
        node_fail(err, "upstream_error", "%s: aborted, the I/O loop is stopping", where);
        return HTTP_FATAL;
    }
    if (rc == UP_TIMEOUT)
        return http_timed_out(ex, where, err);
    node_fail(err, "upstream_error", "%s: %s", where, ex->errbuf[0] ? ex->errbuf : up_strerror(rc));
    return HTTP_TRANSPORT;
}

/* ---- the answer ---- */

/* The body as the response_format says (content.c). *content is a new reference. */
static int http_content(http_exchange *ex, json_t **content, node_error *err)
{
    json_error_t jerr;
    json_t *ct = http_header_get(ex->rheaders, "Content-Type");
    int rc = http_content_make(ex->req.format, json_string_value(ct), ex->body.data ? ex->body.data : "",
                               ex->body.len, content, &jerr);
    if (rc == 1) {
        char origin[280];
        http_request_origin_text(&ex->req, origin, sizeof origin);
        return node_fail(err, "upstream_error", "%s %s: the answer is not valid JSON (line %d: %.80s)",
                         ex->req.method, origin, jerr.line, jerr.text);
    }
    return rc == 0 ? 0 : node_fail(err, "internal", "out of memory reading the answer");
}

static void http_finish_answer(http_exchange *ex)
{
    node_error err;
    json_t *content = NULL;
    if (http_joins_flush(ex) != 0) {
        http_finish(ex, NULL, &(node_error){"internal", "out of memory reading the answer's headers"});
        return;
    }
    if (http_content(ex, &content, &err) != 0) {
        http_finish(ex, NULL, &err);
        return;
    }
    const http_url_memo *memo = ex->req.url ? NULL : ex->req.memo;
    char *url = memo ? NULL : http_url_public(ex->req.url);
    http_answer a = {
        .status_code = ex->status,
        .headers = ex->rheaders,
        .content = content,
        .response_time_ms = ex->total_ms,
        .url = memo ? memo->public_text : url ? url : "",
        .method = ex->req.method,
    };
    json_t *out = ex->hooks->outputs(ex, &a);
    json_decref(content);
    free(url);
    if (!out) {
        http_finish(ex, NULL, &(node_error){"internal", "out of memory building the outputs"});
        return;
    }
    http_finish(ex, out, NULL);
}


/* An attempt ended (loop thread): answer, fail over, retry, or fail. */
static int http_retryable_status(long status)
{
    return status >= 502 && status <= 504;
}

/* An attempt ended (loop thread): answer, fail over, retry, or fail. */
static void http_on_end(http_exchange *ex, up_code rc)
{
    node_error err;
    ex->phase = PH_NEW;
    ex->h1 = NULL;
    ex->cx = NULL;
    http_outcome out = http_classify(ex, rc, &err);
    http_hook_end(ex, out == HTTP_ANSWER      ? HTTP_END_ANSWER
                      : out == HTTP_TRANSPORT ? HTTP_END_TRANSPORT
                                              : HTTP_END_OTHER);
    if (out == HTTP_ANSWER) {
        if (!(http_retryable_status(ex->status) && http_retry(ex)))
            http_finish_answer(ex);
        return;
    }
    if (out == HTTP_TRANSPORT && ex->hooks->failover && ex->hooks->failover(ex)) {
        node_error e2;
        if (http_attempt(ex, 0, &e2) != 0)
            http_finish(ex, NULL, &e2);
        return;
    }
    if (out == HTTP_TRANSPORT && http_retry(ex))
        return;
    http_finish(ex, NULL, &err);
}

static void http_on_curl_done(CURL *easy, up_code code, CURLcode curl_code, void *ud)
{
    http_exchange *ex = ud;
    curl_off_t us = 0, connected = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &ex->status);
    curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &us);
    curl_easy_getinfo(easy, CURLINFO_CONNECT_TIME_T, &connected);
    ex->total_ms = (double)us / 1000.0;
    ex->connected = connected != 0;
    if (code != UP_OK && !ex->errbuf[0])
        util_copy(ex->errbuf, sizeof ex->errbuf, curl_easy_strerror(curl_code));
    http_easy_put(easy); /* out of the multi handle already; never reused (easy.c) */
    ex->easy = NULL;
    http_on_end(ex, code);
}

static void http_on_h1_done(const up_h1_result *r, void *ud)
{
    http_exchange *ex = ud;
    ex->status = r->status;
    ex->total_ms = r->total_ms;
    ex->connected = r->connected;
    if (r->code != UP_OK)
        util_copy(ex->errbuf, sizeof ex->errbuf, r->error);
    http_on_end(ex, r->code);
}

/* The start, posted from another thread: on the loop now. */
static void http_start_posted(void *ud)
{
    http_exchange *ex = ud;
    if (ex->zombie) {
        http_exchange_free(ex);
        return;
    }
    ex->phase = PH_NEW;
    node_error err;
    if (http_attempt(ex, 1, &err) != 0)
        http_finish(ex, NULL, &err);
}

int http_exchange_start(http_exchange *ex, http_done_fn done, void *done_ud, node_error *err)
{
    ex->done = done;
    ex->done_ud = done_ud;
    if (ex->deadline_ms > 0 && ex->deadline_ms <= util_now_ms()) { /* refused at once, on any thread */
        http_exchange_free(ex);
        return node_fail(err, "timeout", "the run's deadline passed before the request was sent");
    }
    if (ioloop_current() != ex->io) {
        ex->phase = PH_POSTED;
        if (ioloop_post(ex->io, http_start_posted, ex) == 0)
            return 0;
        http_exchange_free(ex);
        return node_fail(err, "internal", "the I/O loop did not take the request");
    }
    if (http_attempt(ex, 1, err) != 0) {
        http_exchange_free(ex);
        return -1;
    }
    return 0;
}

/* Withdraws ex from where it waits. 1 when a post is still on its way to it (ex must then live on). */
static int http_withdraw(http_exchange *ex)
{
    switch (ex->phase) {
    case PH_PLAIN:
        up_h1_cancel(ex->h1);
        ex->h1 = NULL;
        http_hook_end(ex, HTTP_END_OTHER);
        return 0;
    case PH_CURL:
        up_curl_cancel(ex->cx); /* the handle is ours again: http_exchange_free cleans it up */
        ex->cx = NULL;
        http_hook_end(ex, HTTP_END_OTHER);
        return 0;
    case PH_RESOLVING:
        ioloop_timer_stop(ex->io, &ex->timer);
        http_hook_end(ex, HTTP_END_OTHER);
        return !upstream_resolve_cancel(ex->rw);
    case PH_FAILING:
        ioloop_timer_stop(ex->io, &ex->timer);
        http_hook_end(ex, HTTP_END_OTHER);
        return 0;
    case PH_BACKOFF:
        ioloop_timer_stop(ex->io, &ex->timer);
        return 0;
    case PH_LATE:
        http_hook_end(ex, HTTP_END_OTHER);
        return 1;
    case PH_POSTED: /* the start */
        return 1;
    default:
        return 0;
    }
}

void http_exchange_abort(http_exchange *ex)
{
    if (!ex || !ex->done)
        return;
    ex->zombie = http_withdraw(ex);
    ex->phase = PH_NEW;
    char origin[280];
    http_request_origin_text(&ex->req, origin, sizeof origin);
    node_error err;
    node_fail(&err, "cancelled", "%s %s: cancelled", ex->req.method, origin);
    http_finish(ex, NULL, &err);
}
