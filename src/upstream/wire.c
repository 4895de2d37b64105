/* wire: when a request may go through the I/O loop's own HTTP/1.1 client (up_h1_start), and its
 * bytes on the wire (see upstream.h, "the plain path").
 *
 * The bytes are what libcurl would send for the same http_request: the request line with the
 * URL's path and query as they are, Host (with the port unless it is 80), Accept: * / * unless the
 * node sets Accept, the node's header lines with libcurl's conventions ("Name;" sends an empty
 * value, "Name:" only removes a default), then for a body (or any POST) Content-Length and, unless
 * set, libcurl's default Content-Type. Anything these rules do not cover goes through libcurl.
 *
 * KAILASH_UPSTREAM_CLIENT=libcurl in the environment sends every request through libcurl (a switch
 * for an operator who suspects the plain path; read once; config.c refuses values other than
 * "auto" and "libcurl" at start). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "upstream_internal.h"

/* The URL part, or NULL (CURLUE_NO_* included). Caller curl_frees. */
static char *http_wire_part(CURLU *u, CURLUPart what, unsigned flags)
{
    char *s = NULL;
    if (curl_url_get(u, what, &s, flags) != CURLUE_OK)
        return NULL;
    return s;
}

/* A numeric host: "1.2.3.4" or "[::1]" (no zone). */
static int http_wire_addr(const char *host, long port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof *v4;
        return 0;
    }
    size_t n = strlen(host);
    char inner[64];
    if (n < 3 || n - 2 >= sizeof inner || host[0] != '[' || host[n - 1] != ']')
        return -1;
    memcpy(inner, host + 1, n - 2);
    inner[n - 2] = '\0';
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, inner, &v6->sin6_addr) != 1)
        return -1;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    *len = sizeof *v6;
    return 0;
}

int http_wire_printable(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7F)
            return 0;
    return 1;
}

static int http_wire_has(const struct curl_slist *h, const char *name)
{
    size_t n = strlen(name);
    for (; h; h = h->next)
        if (strncasecmp(h->data, name, n) == 0 && (h->data[n] == ':' || h->data[n] == ';'))
            return 1;
    return 0;
}

/* The node's lines: "Name: value" as is, "Name;" as "Name:", "Name:" (a removal) not at all. */
static int http_wire_headers(buf *out, const struct curl_slist *h)
{
    for (; h; h = h->next) {
        const char *colon = strchr(h->data, ':');
        size_t n = strlen(h->data);
        if (!colon && n && h->data[n - 1] == ';') {
            if (buf_append(out, h->data, n - 1) != 0 || buf_append(out, ":\r\n", 3) != 0)
                return -1;
            continue;
        }
        if (!colon || colon[strspn(colon + 1, " \t") + 1] == '\0')
            continue;
        if (buf_append(out, h->data, n) != 0 || buf_append(out, "\r\n", 2) != 0)
            return -1;
    }
    return 0;
}

static int http_wire_head(buf *out, const http_request *r, const char *path, const char *query, const char *host,
                          long port, const char *host_line)
{
    int rc = buf_append(out, r->method, strlen(r->method));
    rc |= buf_append(out, " ", 1);
    rc |= buf_append(out, path, strlen(path));
    if (query) {
        rc |= buf_append(out, "?", 1);
        rc |= buf_append(out, query, strlen(query));
    }
    rc |= buf_append(out, " HTTP/1.1\r\n", 11);
    if (rc == 0 && !http_wire_has(r->headers, "Host"))
        rc = host_line   ? buf_append(out, host_line, strlen(host_line))
             : port == 80 ? buf_appendf(out, "Host: %s\r\n", host)
                          : buf_appendf(out, "Host: %s:%ld\r\n", host, port);
    if (rc == 0 && !http_wire_has(r->headers, "Accept"))
        rc = buf_append(out, "Accept: */*\r\n", 13);
    return rc == 0 ? http_wire_headers(out, r->headers) : -1;
}

/* Content-Length and the default Content-Type for a body (any POST has one, maybe empty), the blank
 * line, the body. HEAD sends none. */
static int http_wire_body(buf *out, const http_request *r)
{
    int has_body = strcmp(r->method, "HEAD") != 0 && (r->body || strcmp(r->method, "POST") == 0);
    int rc = 0;
    if (has_body) {
        rc = buf_appendf(out, "Content-Length: %zu\r\n", r->body ? r->body_len : 0);
        if (rc == 0 && !http_wire_has(r->headers, "Content-Type"))
            rc = buf_append(out, "Content-Type: application/x-www-form-urlencoded\r\n", 49);
    }
    if (rc == 0)
        rc = buf_append(out, "\r\n", 2);
    if (rc == 0 && has_body && r->body_len)
        rc = buf_append(out, r->body, r->body_len);
    return rc;
}

/* The URL's parts the plain path needs (NULL where absent). */
typedef struct http_wire_url {
    char *scheme, *user, *host, *port, *path, *query;
} http_wire_url;

static void http_wire_url_free(http_wire_url *w)
{
    curl_free(w->scheme);
    curl_free(w->user);
    curl_free(w->host);
    curl_free(w->port);
    curl_free(w->path);
    curl_free(w->query);
}

/* Where to connect: a numeric host's address into q (0), or the name for the resolver (1); -1 when
 * the plain path does not take the host. */
static int http_wire_where(const char *host, long port, up_h1_req *q, char *name, size_t namelen, long *name_port)
{
    q->altlen = 0;
    if (http_wire_addr(host, port, &q->addr, &q->addrlen) == 0)
        return 0;
    if (host[0] == '[' || strlen(host) >= namelen) /* an IPv6 literal we do not take (a zone): libcurl's */
        return -1;
    memcpy(name, host, strlen(host) + 1);
    *name_port = port;
    return 1;
}

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static atomic_int g_enabled = 1;

static void http_wire_read_env(void)
{
    const char *v = getenv("KAILASH_UPSTREAM_CLIENT");
    if (v && strcmp(v, "libcurl") == 0)
        atomic_store(&g_enabled, 0);
}

void http_wire_enable(int on)
{
    pthread_once(&g_once, http_wire_read_env);
    atomic_store(&g_enabled, on);
}

/* The same from the request's memo: its parts were worked out when the node compiled. */
static int http_wire_prepare_memo(const http_request *r, const http_url_memo *m, up_h1_req *q, buf *out, char *name,
                                  size_t namelen, long *port)
{
    out->len = 0;
    int where = m->plain ? http_wire_where(m->host, m->port, q, name, namelen, port) : -1;
    if (where < 0 || http_wire_head(out, r, m->path, m->query, m->host, m->port, m->host_line) != 0 ||
        http_wire_body(out, r) != 0)
        return -1;
    return where;
}

int http_wire_prepare(const http_request *r, up_h1_req *q, buf *out, char *name, size_t namelen, long *name_port)
{
    pthread_once(&g_once, http_wire_read_env);
    if (!atomic_load_explicit(&g_enabled, memory_order_relaxed))
        return -1;
    if (!r->url && r->memo)
        return http_wire_prepare_memo(r, r->memo, q, out, name, namelen, name_port);
    http_wire_url w = {
        .scheme = http_wire_part(r->url, CURLUPART_SCHEME, 0),
        .user = http_wire_part(r->url, CURLUPART_USER, 0),
        .host = http_wire_part(r->url, CURLUPART_HOST, 0),
        .port = http_wire_part(r->url, CURLUPART_PORT, CURLU_DEFAULT_PORT),
        .path = http_wire_part(r->url, CURLUPART_PATH, 0),
        .query = http_wire_part(r->url, CURLUPART_QUERY, 0),
    };
    long port = w.port ? strtol(w.port, NULL, 10) : 0;
    int where = -1;
    out->len = 0;
    if (w.scheme && strcmp(w.scheme, "http") == 0 && !w.user && w.host && port > 0 && port < 65536 && w.path &&
        http_wire_printable(w.path) && http_wire_printable(w.query))
        where = http_wire_where(w.host, port, q, name, namelen, name_port);
    if (where >= 0 && (http_wire_head(out, r, w.path, w.query, w.host, port, NULL) != 0 || http_wire_body(out, r) != 0))
        where = -1;
    http_wire_url_free(&w);
    return where;
}
