/* server: the life of one request in libmicrohttpd's callbacks (the daemons themselves, one per I/O
 * loop, are daemons.c's), as the phases of kreq.h's kreq_phase.
 *
 * MHD calls http_on_request several times per request: first with the headers (we route and
 * resolve the route's workflow, then run the middleware chain and the route's prepare step, which
 * may answer before any body is read: 404, 405, 413, 415), then once per body chunk, then a last time
 * with no data (we call the handler). Two kinds of waiting suspend the connection: a chain step that
 * parks (it continues the chain with http_chain_continue on this loop; MHD then repeats its first
 * call and the chain goes on at the next step, the body still unread), and a handler that returns
 * HTTP_PENDING (whoever finishes calls http_complete, from any thread). After a resume MHD calls
 * http_on_request again and the request's phase says what comes next. An answer is kept as set
 * (status, headers, body) until it is queued, so after() steps read it; the kreq lives until MHD's
 * completion callback. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_internal.h"
#include "kreq.h"
#include "kailash/api.h"
#include "kailash/log.h"
#include "kailash/middleware.h"

static _Atomic(const kconfig *) g_cfg;
static atomic_int g_inflight;
static atomic_int g_draining; /* SIGTERM came: answers close their connections */

const kconfig *http_server_config(void)
{
    return atomic_load(&g_cfg);
}

void http_server_set_config(const kconfig *cfg)
{
    atomic_store(&g_cfg, cfg);
    api_metrics_configure(cfg); /* counting follows enable_monitoring */
}
int http_server_inflight(void)
{
    return atomic_load(&g_inflight);
}

void http_server_drain(void)
{
    atomic_store(&g_draining, 1);
}

static int proxy_trusted(const char *ip)
{
    const kconfig *cfg = http_server_config();
    for (size_t i = 0; i < cfg->n_trusted_proxies; i++)
        if (util_net_cidr_match(cfg->trusted_proxies[i], ip))
            return 1;
    return 0;
}

/* X-Forwarded-For from a trusted proxy: the client is the right-most address that is not itself a
 * trusted proxy (entries further left could be forged by the client). */
static void client_forwarded(kreq *r)
{
    const char *xff = http_req_header(r, "X-Forwarded-For");
    if (!xff || !proxy_trusted(r->client_ip))
        return;
    char list[1024];
    snprintf(list, sizeof list, "%s", xff);
    for (char *end = list + strlen(list); end > list;) {
        char *start = end;
        while (start > list && start[-1] != ',')
            start--;
        char *a = start, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        *b = '\0';
        unsigned char tmp[16];
        if (inet_pton(AF_INET, a, tmp) != 1 && inet_pton(AF_INET6, a, tmp) != 1)
            return;              /* garbage: keep the socket address */
        size_t alen = strlen(a); /* an address inet_pton accepted: at most 45 characters */
        if (alen >= sizeof r->client_ip)
            return;
        memcpy(r->client_ip, a, alen + 1);
        if (!proxy_trusted(a))
            return;
        end = start > list ? start - 1 : list;
    }
}

static void client_addr(kreq *r)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET)
        util_net_fmt_ipv4(r->client_ip, (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->client_ip, sizeof r->client_ip);
    if (http_server_config()->n_trusted_proxies)
        client_forwarded(r);
    r->client_loopback = util_net_ip_loopback(r->client_ip);
}

static kreq *req_new(struct MHD_Connection *c, const char *url, const char *method)
{
    kreq *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->conn = c;
    r->srv = http_daemon_current();
    r->method = method;
    r->path = url;
    r->t0 = util_now_ms();
    r->content_length = -1;
    pthread_mutex_init(&r->mu, NULL);
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        long long n = strtoll(cl, &end, 10);
        r->content_length = (*end || n < 0) ? -1 : n;
    }
    client_addr(r);
    atomic_fetch_add(&g_inflight, 1);
    http_daemon_busy(r->srv, c, r);
    return r;
}

static void req_free(kreq *r)
{
    http_req_release(r);
    http_daemon_busy(r->srv, r->conn, NULL);
    free(r);
    atomic_fetch_sub(&g_inflight, 1);
}

/* The answer's libmicrohttpd response: its body is handed over (MHD frees it), or a streamed
 * answer's producer (stream.c); its headers added. */
static struct MHD_Response *answer_response(kreq *r)
{
    struct MHD_Response *resp;
    if (r->stream) {
        resp = http_stream_response(r, atomic_load_explicit(&g_draining, memory_order_relaxed));
    } else {
        resp = MHD_create_response_from_buffer(r->answer.len, r->answer.data, MHD_RESPMEM_MUST_FREE);
        if (resp)
            r->answer = (buf){0};
    }
    if (!resp)
        return NULL;
    MHD_add_response_header(resp, "X-Request-ID", r->request_id);
    for (const char *p = r->answer_headers.data, *end = p + r->answer_headers.len; p && p < end;) {
        const char *v = p + strlen(p) + 1;
        MHD_add_response_header(resp, p, v);
        p = v + strlen(v) + 1;
    }
    if (!MHD_get_response_header(resp, "Content-Type")) /* JSON unless the answer said otherwise (/metrics) */
        MHD_add_response_header(resp, "Content-Type", "application/json; charset=utf-8");
    return resp;
}

static enum MHD_Result queue(kreq *r)
{
    char timing[64] = "total;dur=";
    util_fmt_ms(timing + 10, util_now_ms() - r->t0);
    if (!r->status) /* a path that forgot to answer is a bug, not a hang */
        http_reply_error(r, 500, "internal", "no answer was set", NULL);
    r->phase = KREQ_SENT;
    mw_after(r); /* reads the answer as it was set */
    struct MHD_Response *resp = answer_response(r);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Server-Timing", timing);
    /* libmicrohttpd closes a connection after an answer with this header, without reading what else
     * the client sent on it: the end of a connection whose framing we refused, and of every
     * connection once the server drains (a kept-alive client would otherwise go on sending requests
     * through the whole grace period) */
    if (r->close || atomic_load_explicit(&g_draining, memory_order_relaxed))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result rc = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* Before the chain: the route, and what it is about (its workflow), so every step can see them.
 * Nothing is answered here: the route step of the chain answers 404/405 in API.md's order. */
static void req_route(kreq *r)
{
    r->route = http_route_find(r->method, r->path, r->param, sizeof r->param, &r->route_status, r->allow,
                               sizeof r->allow);
    if (r->route && r->route->resolve)
        r->route->resolve(r);
}

/* Runs the chain from where it stands, then the route's prepare. A step that parks leaves the
 * connection suspended; its mw_continue brings the request back here (through http_on_request). */
static enum MHD_Result req_advance(kreq *r)
{
    int rc = mw_before(r, &r->chain_pos);
    if (rc == MW_ANSWERED)
        return queue(r);
    if (rc == MW_PARKED) {
        r->phase = KREQ_PARKED;
        http_daemon_suspend(r->conn);
        r->suspended = 1;
        return MHD_YES;
    }
    r->phase = KREQ_BODY;
    if (!r->route) { /* a chain without its route step; never in this build */
        http_reply_error(r, 404, "not_found", "no such route", NULL);
        return queue(r);
    }
    if (r->route->prepare && r->route->prepare(r) == HTTP_DONE)
        return queue(r);
    return MHD_YES;
}

static void body_take(kreq *r, const char *data, size_t n)
{
    if (r->body_too_large || r->body.len + n > http_server_config()->max_body_bytes) {
        r->body_too_large = 1;
        return;
    }
    if (buf_append(&r->body, data, n) != 0)
        r->body_too_large = 1;
}

static enum MHD_Result req_dispatch(kreq *r)
{
    if (r->body_too_large) {
        http_reply_error(r, 413, "payload_too_large", "the body is larger than max_body_bytes", NULL);
        return queue(r);
    }
    r->phase = KREQ_HANDLER;
    if (r->route->handle(r) == HTTP_DONE)
        return queue(r);
    pthread_mutex_lock(&r->mu);
    if (r->phase == KREQ_ANSWERED) { /* http_complete came first, from another thread */
        pthread_mutex_unlock(&r->mu);
        return queue(r);
    }
    http_daemon_suspend(r->conn);
    r->suspended = 1;
    pthread_mutex_unlock(&r->mu);
    if (r->hup_seen) /* the client left while the handler ran: tell it now */
        http_server_client_left(r);
    return MHD_YES;
}

void http_server_client_left(kreq *r)
{
    r->hup_seen = 1;
    if (r->stream_live) { /* a streamed answer going on: it ends here (stream.c) */
        http_stream_client_left(r);
        return;
    }
    pthread_mutex_lock(&r->mu); /* a handler's thread may be answering right now */
    int waiting = r->phase == KREQ_HANDLER && r->suspended;
    pthread_mutex_unlock(&r->mu);
    if (!waiting || r->left)
        return; /* not waiting on a handler: libmicrohttpd reads the end itself */
    r->left = 1;
    if (r->on_leave)
        r->on_leave(r);
}

/* A call after a resume: where the request stands says what to do next. */
static enum MHD_Result req_resumed(kreq *r)
{
    pthread_mutex_lock(&r->mu);
    kreq_phase phase = r->phase;
    pthread_mutex_unlock(&r->mu);
    if (r->left) /* nobody to answer: close; the completion logs 499 */
        return MHD_NO;
    if (phase == KREQ_ANSWERED)
        return queue(r);
    if (phase == KREQ_CHAIN) /* a parked step let it go on */
        return req_advance(r);
    if (phase == KREQ_BODY) /* the body is complete */
        return req_dispatch(r);
    return MHD_YES;
}

enum MHD_Result http_on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                const char *version, const char *data, size_t *data_size, void **con_cls)
{
    (void)cls;
    (void)version;
    kreq *r = *con_cls;
    if (!r) {
        r = req_new(c, url, method);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        req_route(r);
        return req_advance(r);
    }
    if (r->phase == KREQ_SENT) { /* answered before the body was read: drop the rest */
        *data_size = 0;
        return MHD_YES;
    }
    if (*data_size) {
        body_take(r, data, *data_size);
        *data_size = 0;
        return MHD_YES;
    }
    return req_resumed(r);
}

void http_on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t)
{
    (void)cls;
    (void)c;
    (void)t;
    kreq *r = *con_cls;
    if (!r)
        return;
    if (r->phase != KREQ_SENT) { /* the client left before an answer: log it as nginx does, 499 */
        r->phase = KREQ_SENT;
        r->status = 499;
        mw_after(r);
    }
    req_free(r);
    *con_cls = NULL;
}

/* libmicrohttpd in external mode does not wake itself for a resumed connection: the daemon's loop
 * must run it again (http_daemon_kick). */
static void req_wake(kreq *r, kreq_phase next)
{
    pthread_mutex_lock(&r->mu);
    r->phase = next;
    int suspended = r->suspended;
    r->suspended = 0;
    pthread_mutex_unlock(&r->mu);
    if (!suspended)
        return;
    void *srv = r->srv; /* r may be gone once resumed */
    MHD_resume_connection(r->conn);
    http_daemon_kick(srv);
}

void http_complete(kreq *r)
{
    req_wake(r, KREQ_ANSWERED);
}

void http_chain_continue(kreq *r, int answered)
{
    req_wake(r, answered ? KREQ_ANSWERED : KREQ_CHAIN);
}

void http_on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    log_msg(LOG_DEBUG, "libmicrohttpd: %s", msg);
}
