/* server: the life of one request in libmicrohttpd's callbacks (the daemons themselves, one per I/O
 * loop, are daemons.c's).
 *
 * MHD calls http_on_request several times per request: first with the headers (we route, run the
 * middleware chain and the route's prepare step, which may answer before any body is read: 404,
 * 405, 413, 415), then once per body chunk, then a last time with no data (we call the handler).
 * A handler that hands the request to another thread returns HTTP_PENDING; the connection is then
 * suspended and http_complete resumes it, after which MHD calls http_on_request again and we queue the
 * response. The kreq lives until MHD's completion callback. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_internal.h"
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
        if (util_cidr_match(cfg->trusted_proxies[i], ip))
            return 1;
    return 0;
}

/* X-Forwarded-For from a trusted proxy: the client is the right-most address that is not itself a
 * trusted proxy (entries further left could be forged by the client). */
static void client_forwarded(kreq *r)
{
    const char *xff = http_header(r, "X-Forwarded-For");
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
        util_fmt_ipv4(r->client_ip, (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->client_ip, sizeof r->client_ip);
    if (http_server_config()->n_trusted_proxies)
        client_forwarded(r);
    r->client_loopback = util_ip_loopback(r->client_ip);
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
    http_daemon_busy(r->srv, c, 1);
    return r;
}

static void req_free(kreq *r)
{
    if (r->state_free)
        r->state_free(r->state);
    if (r->resp)
        MHD_destroy_response(r->resp);
    buf_free(&r->body);
    pthread_mutex_destroy(&r->mu);
    http_daemon_busy(r->srv, r->conn, 0);
    free(r);
    atomic_fetch_sub(&g_inflight, 1);
}

static enum MHD_Result queue(kreq *r)
{
    char timing[64] = "total;dur=";
    util_fmt_ms(timing + 10, util_now_ms() - r->t0);
    MHD_add_response_header(r->resp, "Server-Timing", timing);
    /* libmicrohttpd closes a connection after an answer with this header, without reading what else
     * the client sent on it: the end of a connection whose framing we refused, and of every
     * connection once the server drains (a kept-alive client would otherwise go on sending requests
     * through the whole grace period) */
    if (r->close || atomic_load_explicit(&g_draining, memory_order_relaxed))
        MHD_add_response_header(r->resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (!r->logged) {
        r->logged = 1;
        mw_after(r);
    }
    enum MHD_Result rc = MHD_queue_response(r->conn, (unsigned)r->status, r->resp);
    MHD_destroy_response(r->resp);
    r->resp = NULL;
    return rc;
}

typedef struct framing {
    int content_length, transfer_encoding;
} framing;

static enum MHD_Result framing_count(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    (void)value;
    framing *f = cls;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        f->content_length++;
    else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0)
        f->transfer_encoding++;
    return MHD_YES;
}

/* Whether the request's length is ambiguous: more than one Content-Length (even equal ones), or one
 * with Transfer-Encoding. libmicrohttpd takes the first Content-Length (or the chunked encoding) and
 * parses what follows as the next request, while a proxy in front of us may have framed it the other
 * way: the bytes it sent as a body would be answered as a request of their own (smuggling). So such
 * a request is refused and its connection closed, as nginx does. */
static int framing_ambiguous(struct MHD_Connection *c)
{
    framing f = {0, 0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, framing_count, &f);
    return f.content_length > 1 || (f.content_length && f.transfer_encoding);
}

/* First callback: route, middleware, prepare. Returns 1 when answered. */
static int req_first(kreq *r)
{
    int status = 0;
    char allow[64];
    r->route = http_route_find(r->method, r->path, r->param, sizeof r->param, &status, allow, sizeof allow);
    if (mw_before(r))
        return 1;
    if (framing_ambiguous(r->conn)) {
        r->close = 1;
        http_reply_error(r, 400, "bad_request", "the request has more than one Content-Length, or one with "
                         "Transfer-Encoding", NULL);
        return 1;
    }
    if (!r->route && status == 405) {
        http_reply_error(r, 405, "method_not_allowed", "this path does not take that method", NULL);
        http_reply_header(r, "Allow", allow);
        return 1;
    }
    if (!r->route) {
        http_reply_error(r, 404, "not_found", "no such route", NULL);
        return 1;
    }
    return r->route->prepare && r->route->prepare(r) == HTTP_DONE;
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
    if (r->route->handle(r) == HTTP_DONE)
        return queue(r);
    pthread_mutex_lock(&r->mu);
    if (r->ready) {
        pthread_mutex_unlock(&r->mu);
        return queue(r);
    }
    http_daemon_suspend(r->conn);
    r->suspended = 1;
    pthread_mutex_unlock(&r->mu);
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
        return req_first(r) ? queue(r) : MHD_YES;
    }
    if (r->logged) { /* answered before the body was read: drop the rest */
        *data_size = 0;
        return MHD_YES;
    }
    if (*data_size) {
        body_take(r, data, *data_size);
        *data_size = 0;
        return MHD_YES;
    }
    if (r->suspended) /* resumed: the response is ready */
        return queue(r);
    return req_dispatch(r);
}

void http_on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t)
{
    (void)cls;
    (void)c;
    (void)t;
    kreq *r = *con_cls;
    if (!r)
        return;
    if (!r->logged) { /* the client left before an answer: log it as nginx does, 499 */
        r->logged = 1;
        r->status = 499;
        mw_after(r);
    }
    req_free(r);
    *con_cls = NULL;
}

/* libmicrohttpd in external mode does not wake itself for a resumed connection: the daemon's loop
 * must run it again (http_daemon_kick). */
void http_complete(kreq *r)
{
    pthread_mutex_lock(&r->mu);
    r->ready = 1;
    int suspended = r->suspended;
    pthread_mutex_unlock(&r->mu);
    if (!suspended)
        return;
    void *srv = r->srv; /* r may be gone once resumed */
    MHD_resume_connection(r->conn);
    http_daemon_kick(srv);
}

const char *http_header(kreq *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *http_query(kreq *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
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
