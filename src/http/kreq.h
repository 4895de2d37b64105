/* kreq: one request in flight, private to src/http. Everything outside src/http reads and sets a
 * request through the http_req_* accessors of kailash/http.h (src/http/req.c), so the server may
 * change this struct without touching a handler or a middleware step. */
#ifndef KAILASH_HTTP_KREQ_H
#define KAILASH_HTTP_KREQ_H

#include <pthread.h>

#include "kailash/http.h"

/* Where a request is in its life. Moves forward only:
 *   CHAIN     the middleware's before() steps run; chain_pos is the next one
 *   PARKED    a step waits (on Redis, a timer...): the connection is suspended until the step calls
 *             http_chain_continue on this loop, which goes back to CHAIN (or to ANSWERED)
 *   BODY      the chain and the route's prepare passed: the body is being read
 *   HANDLER   the route's handler has it; a pending one's connection is suspended until
 *             http_complete (any thread)
 *   ANSWERED  an answer is set and waits to be queued on the loop thread
 *   SENT      queued to libmicrohttpd; after() steps have run */
typedef enum kreq_phase { KREQ_CHAIN, KREQ_PARKED, KREQ_BODY, KREQ_HANDLER, KREQ_ANSWERED, KREQ_SENT } kreq_phase;

/* Owned by the server (server.c: req_new, req_free), or by a test (http_req_new_detached). Freed
 * after the response is sent (or the client went away). */
struct kreq {
    struct MHD_Connection *conn; /* NULL for a detached request */
    void *srv;                   /* the server's: which daemon and loop the connection belongs to */
    const char *method;          /* borrowed from MHD */
    const char *path;            /* without query string, borrowed from MHD */
    char request_id[132];        /* set by the request_id middleware */
    int hops;                    /* X-Kailash-Hops (0 without one), set by the hops middleware */
    char client_ip[64];
    int client_loopback;
    double t0; /* util_now_ms() at arrival */
    /* Routing, done before the chain (the route step answers 404/405 from it): */
    const http_route *route; /* NULL: route_status says 404 or 405 (with allow) */
    int route_status;
    char allow[64];
    char param[132];           /* the {name} segment of the path, if the route has one */
    const struct workflow *wf; /* the route's resolve found it (borrowed while state holds it) */
    int unresolved;            /* the route's resolve found nothing: 404 */
    buf body;
    long long content_length; /* -1 when not given */
    int body_too_large;
    /* The answer, kept as it is until it is queued, so after() steps can read it: */
    int status;
    buf answer;         /* the body bytes */
    buf answer_headers; /* "Name\0Value\0" pairs added with http_reply_header */
    char run_id[40];    /* handler: for X-Run-ID and the access log */
    char workflow[132]; /* handler: for the access log */
    void *principal;    /* the auth step: the caller (auth.h's auth_principal), released with principal_free */
    void (*principal_free)(void *principal);
    int auth_kind;      /* the auth step: auth_kind (0: anonymous) */
    http_limit_note limit; /* the rate_limit step's decision */
    void *state;        /* handler: its own per-request state */
    void (*state_free)(void *state);
    pthread_mutex_t mu; /* guards phase and suspended between a handler's thread and the loop */
    kreq_phase phase;
    int chain_pos; /* the next middleware step: server.c hands &chain_pos to mw_before */
    int suspended; /* the connection is suspended (PARKED, or a pending HANDLER) */
    int close;     /* the answer carries `Connection: close` and the connection ends after it */
    int hup_seen;               /* the client shut its side (loop thread) */
    int left;                   /* ... while its handler had it: it gets no answer */
    void (*on_leave)(kreq *r);  /* handler: told on the loop thread when its client leaves */
    struct http_stream *stream; /* a streamed answer not yet queued (stream.c), with a reference, or NULL */
    struct http_stream *stream_live; /* the streamed answer queued (borrowed: its response outlives r) */
};

/* stream.c: a streamed answer (r->stream) as libmicrohttpd's response, its body from the producer
 * (loop thread, when r is queued; draining: the stream ends after what is ready). NULL out of
 * memory. */
struct MHD_Response *http_stream_response(kreq *r, int draining);
/* stream.c: r ends (completed, or freed unanswered): its stream lets go of r, or, never started, is
 * closed. Loop thread (or a test's). */
void http_stream_req_end(kreq *r);
/* stream.c: the client of r's connection left (loop thread): a streamed answer is aborted. */
void http_stream_client_left(kreq *r);
/* stream.c: the server drains (loop thread): r's streamed answer ends after what is ready. */
void http_stream_quiesce(kreq *r);
/* stream.c: a new answer replaces r's stream before it started: it is closed. */
void http_stream_replaced(kreq *r);

/* req.c: frees what r owns (its state, answer, body) and its lock, not r itself. */
void http_req_release(kreq *r);

#endif
