/* req: the accessors of a request (kailash/http.h's http_req_*), the one door through which
 * handlers (src/api) and middleware steps read and set a kreq, whose layout stays private to
 * src/http (kreq.h). Each is a field read or a bounded copy: no allocation, nothing that would make
 * the hot path slower than touching the field was. Also what libmicrohttpd knows of the request
 * (headers, query, framing), and the detached request of tests and fuzz targets, which has no
 * libmicrohttpd connection. */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kreq.h"

const char *http_req_method(const kreq *r)
{
    return r->method;
}

const char *http_req_path(const kreq *r)
{
    return r->path;
}

const char *http_req_param(const kreq *r)
{
    return r->param;
}

double http_req_start_ms(const kreq *r)
{
    return r->t0;
}

const char *http_req_client_ip(const kreq *r)
{
    return r->client_ip;
}

int http_req_client_loopback(const kreq *r)
{
    return r->client_loopback;
}

long long http_req_content_length(const kreq *r)
{
    return r->content_length;
}

const buf *http_req_body(const kreq *r)
{
    return &r->body;
}

/* A detached request has no connection: nothing to look up (libmicrohttpd would say the same for a
 * NULL connection, but not as a documented promise). */
const char *http_req_header(const kreq *r, const char *name)
{
    return r->conn ? MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name) : NULL;
}

const char *http_req_query(const kreq *r, const char *name)
{
    return r->conn ? MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name) : NULL;
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
int http_req_framing_ambiguous(const kreq *r)
{
    framing f = {0, 0};
    if (r->conn)
        MHD_get_connection_values(r->conn, MHD_HEADER_KIND, framing_count, &f);
    return f.content_length > 1 || (f.content_length && f.transfer_encoding);
}

const char *http_req_request_id(const kreq *r)
{
    return r->request_id;
}

void http_req_set_request_id(kreq *r, const char *id)
{
    util_copy(r->request_id, sizeof r->request_id, id);
}

int http_req_hops(const kreq *r)
{
    return r->hops;
}

void http_req_set_hops(kreq *r, int hops)
{
    r->hops = hops;
}

void http_req_set_close(kreq *r)
{
    r->close = 1;
}

const http_route *http_req_route(const kreq *r)
{
    return r->route;
}

int http_req_route_status(const kreq *r)
{
    return r->route_status;
}

const char *http_req_allow(const kreq *r)
{
    return r->allow;
}

const struct workflow *http_req_workflow_def(const kreq *r)
{
    return r->wf;
}

void http_req_set_workflow_def(kreq *r, const struct workflow *wf)
{
    r->wf = wf;
}

int http_req_unresolved(const kreq *r)
{
    return r->unresolved;
}

void http_req_set_unresolved(kreq *r, int unresolved)
{
    r->unresolved = unresolved;
}

const char *http_req_workflow_name(const kreq *r)
{
    return r->workflow;
}

void http_req_set_workflow_name(kreq *r, const char *name)
{
    util_copy(r->workflow, sizeof r->workflow, name);
}

const char *http_req_run_id(const kreq *r)
{
    return r->run_id;
}

void http_req_set_run_id(kreq *r, const char *id)
{
    util_copy(r->run_id, sizeof r->run_id, id);
}

void *http_req_state(const kreq *r)
{
    return r->state;
}

void http_req_set_state(kreq *r, void *state, void (*free_fn)(void *state))
{
    if (r->state_free && r->state != state)
        r->state_free(r->state);
    r->state = state;
    r->state_free = free_fn;
}

void http_req_set_principal(kreq *r, void *principal, int kind, void (*free_fn)(void *principal))
{
    if (r->principal_free && r->principal != principal)
        r->principal_free(r->principal);
    r->principal = principal;
    r->principal_free = free_fn;
    r->auth_kind = kind;
}

http_limit_note *http_req_limit_note(kreq *r)
{
    return &r->limit;
}

const http_limit_note *http_req_limit_note_get(const kreq *r)
{
    return &r->limit;
}

void *http_req_principal(const kreq *r)
{
    return r->principal;
}

int http_req_auth_kind(const kreq *r)
{
    return r->auth_kind;
}

int http_req_answer_status(const kreq *r)
{
    return r->status;
}

const buf *http_req_answer_body(const kreq *r)
{
    return &r->answer;
}

const char *http_req_answer_header(const kreq *r, const char *name)
{
    const char *p = r->answer_headers.data, *end = p + r->answer_headers.len;
    while (p && p < end) {
        const char *v = p + strlen(p) + 1;
        if (strcasecmp(p, name) == 0)
            return v;
        p = v + strlen(v) + 1;
    }
    return NULL;
}

/* Mirrors server.c's req_new and req_free without the connection, its daemon and the in-flight
 * count: a field the server frees must be freed here too. */
kreq *http_req_new_detached(const void *body, size_t len)
{
    kreq *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->method = "POST";
    r->path = "/";
    r->t0 = util_now_ms();
    r->content_length = (long long)len;
    /* exactly len bytes, so a sanitizer sees a read past the body as the fuzz target's own buffer
     * would show it */
    if (len && !(r->body.data = malloc(len))) {
        free(r);
        return NULL;
    }
    if (len)
        memcpy(r->body.data, body, len);
    r->body.len = r->body.cap = len;
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

void http_req_release(kreq *r)
{
    http_stream_req_end(r); /* a streamed answer lets go of r (or, never sent, is closed) */
    if (r->state_free)
        r->state_free(r->state);
    if (r->principal_free)
        r->principal_free(r->principal);
    buf_free(&r->answer);
    buf_free(&r->answer_headers);
    buf_free(&r->body);
    pthread_mutex_destroy(&r->mu);
}

void http_req_free_detached(kreq *r)
{
    if (!r)
        return;
    http_req_release(r);
    free(r);
}

void http_req_on_leave(kreq *r, void (*fn)(kreq *r))
{
    r->on_leave = fn;
}
