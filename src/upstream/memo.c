/* memo: what a node's fixed URL parses to, worked out once when the node compiles.
 *
 * Most HTTP nodes call one literal URL. Parsing it with libcurl's CURLU on every call (the parse,
 * the origin check, the public form for the outputs, the parts for the plain path's request line)
 * was about a twentieth of a proxied call's CPU and a dozen allocations. A request whose final URL
 * text is the memo's, with nothing added to it, borrows the memo instead (http_request.memo), and
 * gets its own CURLU only if it goes through libcurl (http_request_url).
 *
 * A memo is never changed after http_url_memo_new, so runs on any thread may read it at once; the
 * compiled node that owns it outlives every run that borrows it. */
#include <stdlib.h>
#include <string.h>

#include "upstream_internal.h"

void http_url_memo_free(http_url_memo *m)
{
    if (!m)
        return;
    curl_url_cleanup(m->url);
    free(m->text);
    free(m->public_text);
    free(m->host);
    free(m->path);
    free(m->query);
    free(m->host_line);
    free(m);
}

/* A copy of the part (NULL when the URL has none or on failure), in malloc'd memory. */
static char *memo_part(CURLU *u, CURLUPart what, unsigned flags)
{
    char *s = NULL, *copy = NULL;
    if (curl_url_get(u, what, &s, flags) == CURLUE_OK)
        copy = strdup(s);
    curl_free(s);
    return copy;
}

/* The parts the plain path sends, and whether it may take this URL at all (see wire.c). */
static int memo_wire(http_url_memo *m)
{
    char *scheme = memo_part(m->url, CURLUPART_SCHEME, 0), *user = memo_part(m->url, CURLUPART_USER, 0);
    char *port = memo_part(m->url, CURLUPART_PORT, CURLU_DEFAULT_PORT);
    m->host = memo_part(m->url, CURLUPART_HOST, 0);
    m->path = memo_part(m->url, CURLUPART_PATH, 0);
    m->query = memo_part(m->url, CURLUPART_QUERY, 0);
    m->port = port ? strtol(port, NULL, 10) : 0;
    m->plain = scheme && strcmp(scheme, "http") == 0 && !user && m->host && m->path && m->port > 0 &&
               m->port < 65536 && http_wire_printable(m->path) && http_wire_printable(m->query);
    buf b = {0};
    int rc = m->port == 80 ? buf_appendf(&b, "Host: %s\r\n", m->host ? m->host : "")
                           : buf_appendf(&b, "Host: %s:%ld\r\n", m->host ? m->host : "", m->port);
    m->host_line = rc == 0 ? b.data : NULL;
    if (rc != 0)
        buf_free(&b);
    free(scheme);
    free(user);
    free(port);
    return m->host_line ? 0 : -1;
}

http_url_memo *http_url_memo_new(const char *text, const http_origin *want)
{
    if (strstr(text, "{{"))
        return NULL;
    http_url_memo *m = calloc(1, sizeof *m);
    node_error err;
    if (!m || !(m->text = strdup(text)) || http_url_parse("url", text, want, &m->url, &err) != 0 ||
        http_url_origin(m->url, &m->origin) != 0 || !(m->public_text = http_url_public(m->url)) ||
        memo_wire(m) != 0) {
        http_url_memo_free(m);
        return NULL;
    }
    return m;
}

int http_request_use_memo(http_request *r, const http_url_memo *m, const char *text)
{
    if (!m || strcmp(text, m->text) != 0)
        return 0;
    curl_url_cleanup(r->url);
    r->url = NULL;
    r->memo = m;
    return 1;
}

CURLU *http_request_url(http_request *r)
{
    if (!r->url && r->memo)
        r->url = curl_url_dup(r->memo->url);
    return r->url;
}
