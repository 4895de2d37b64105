/* http: the libmicrohttpd front end (src/http/): server, router, requests, replies, suspend/resume.
 *
 * One MHD daemon runs on each I/O loop's thread (external epoll mode; server.c says why). A
 * request's life: the first callback routes it and runs the checks that need no body (404, 405, 413
 * from Content-Length, 415); the body is then collected; the last callback calls the route's
 * handler. A handler either answers at once (it computed the answer on the daemon's thread) or
 * returns HTTP_PENDING after handing work elsewhere;
 * then the connection is suspended, and whoever finishes sets the response with http_reply_* and
 * calls http_complete, which resumes it. */
#ifndef KAILASH_HTTP_H
#define KAILASH_HTTP_H

#include <jansson.h>

#include "kailash/config.h"
#include "kailash/util.h"

struct MHD_Connection;
struct MHD_Response;
typedef struct kreq kreq;
typedef struct http_route http_route;

/* Handler results. prepare steps return HTTP_CONTINUE to go on to the body. */
enum { HTTP_DONE = 0, HTTP_PENDING = 1, HTTP_CONTINUE = 1 };

struct workflow;

/* ---- the request (src/http/req.c) --------------------------------------------------------------
 * A kreq is opaque: the server owns it (from the first callback until the answer is sent or the
 * client left) and everything else reads and sets it through these accessors. Each is a plain field
 * read or write, no allocation: the hot path calls several per request. Strings returned are
 * borrowed and valid for the request's life; setters copy. Call them on the request's loop thread,
 * or from a handler's own thread between HTTP_PENDING and http_complete. */

/* The method and the path (without query string); borrowed from libmicrohttpd. */
const char *http_req_method(const kreq *r);
const char *http_req_path(const kreq *r);
/* The {name} segment of the path, "" when the route has none; borrowed. */
const char *http_req_param(const kreq *r);
/* util_now_ms() when the request arrived. */
double http_req_start_ms(const kreq *r);
/* The client's address ("" if unknown; X-Forwarded-For's from trusted proxies), and whether it is
 * loopback; borrowed. */
const char *http_req_client_ip(const kreq *r);
int http_req_client_loopback(const kreq *r);
/* Content-Length as sent, -1 when absent or not a number. */
long long http_req_content_length(const kreq *r);
/* The body read so far (complete when the route's handle runs); borrowed, owned by the request. */
const buf *http_req_body(const kreq *r);
/* A request header (case-insensitive) or query argument, NULL when absent; borrowed from
 * libmicrohttpd. */
const char *http_req_header(const kreq *r, const char *name);
const char *http_req_query(const kreq *r, const char *name);
/* Whether the request's framing is ambiguous (two Content-Lengths, or one with Transfer-Encoding):
 * such a request must be refused and its connection closed (http_req_set_close). */
int http_req_framing_ambiguous(const kreq *r);

/* The X-Request-ID of the request ("" until the request_id step ran); borrowed. The setter copies
 * id, truncated to 131 bytes (the request_id step sets at most 128). */
const char *http_req_request_id(const kreq *r);
void http_req_set_request_id(kreq *r, const char *id);
/* The X-Kailash-Hops count (0 without one), set by the hops step. */
int http_req_hops(const kreq *r);
void http_req_set_hops(kreq *r, int hops);
/* The answer carries `Connection: close` and the connection ends after it. */
void http_req_set_close(kreq *r);

/* Routing, done before the chain: the route (borrowed from the router's table), or NULL with
 * route_status 404 or 405 and allow ("GET, POST", borrowed) the methods the path takes. */
const http_route *http_req_route(const kreq *r);
int http_req_route_status(const kreq *r);
const char *http_req_allow(const kreq *r);
/* What the route's resolve found: the workflow (borrowed; the resolve keeps it alive in its state),
 * or that there is nothing by that name (unresolved set: the route step answers 404). */
const struct workflow *http_req_workflow_def(const kreq *r);
void http_req_set_workflow_def(kreq *r, const struct workflow *wf);
int http_req_unresolved(const kreq *r);
void http_req_set_unresolved(kreq *r, int unresolved);
/* The workflow's name and the run's id, for the access log and X-Run-ID; the setters copy (a name
 * is truncated to 131 bytes, an id to 39; "" clears). Borrowed, "" when not set. */
const char *http_req_workflow_name(const kreq *r);
void http_req_set_workflow_name(kreq *r, const char *name);
const char *http_req_run_id(const kreq *r);
void http_req_set_run_id(kreq *r, const char *id);
/* The handler's own per-request state (NULL until set). The request owns it from set_state on and
 * frees it with free_fn (may be NULL) when it ends; a second set_state frees the earlier state first. */
void *http_req_state(const kreq *r);
void http_req_set_state(kreq *r, void *state, void (*free_fn)(void *state));
/* The caller, set by the auth step: principal is an auth_principal (kailash/auth.h; NULL for an
 * anonymous caller), owned by the request from here on and released with free_fn when it ends; kind
 * is its auth_kind (how it authenticated, AUTH_FAILED when refused). */
void http_req_set_principal(kreq *r, void *principal, int kind, void (*free_fn)(void *principal));
void *http_req_principal(const kreq *r);
int http_req_auth_kind(const kreq *r);
/* What the rate_limit step decided, kept in the request for its after() (the answer's headers) and
 * the access log. Zeroed when the request begins; checked stays 0 on routes that are never limited
 * and for requests answered before the limiter. */
typedef struct http_limit_note {
    int checked; /* the request passed through the limiter: its answer carries the headers */
    int refused; /* answered 429 */
    int via;     /* HTTP_LIMIT_LOCAL, _REDIS, or _KNOWN (refused locally: Redis said so before) */
    int n;       /* policies in pol */
    struct http_limit_policy {
        const char *name; /* "default" or "workflow" (static) */
        long q, w_s;      /* the limit per window, the window in seconds */
        long r, t;        /* what may be sent now, whole seconds until full again (or until a retry) */
    } pol[2];
} http_limit_note;
enum { HTTP_LIMIT_LOCAL = 0, HTTP_LIMIT_REDIS, HTTP_LIMIT_KNOWN };
/* The request's note (never NULL; the request owns it). */
http_limit_note *http_req_limit_note(kreq *r);
const http_limit_note *http_req_limit_note_get(const kreq *r);
/* A handler that returns HTTP_PENDING may ask to be told, on r's loop thread, when the client goes
 * away before the answer (it shut its side): fn should stop the work (cancel the run) and still
 * call http_complete when it ends; the connection is then closed unanswered and logged as 499. */
void http_req_on_leave(kreq *r, void (*fn)(kreq *r));

/* The answer set so far, for after() steps (kept as set until it is queued): its status (0: none
 * yet; 499 when the client left first), its body bytes (borrowed), and a header's value added with
 * http_reply_header (NULL when absent; not the ones the server adds when it queues). */
int http_req_answer_status(const kreq *r);
const buf *http_req_answer_body(const kreq *r);
const char *http_req_answer_header(const kreq *r, const char *name);

/* For tests and fuzzing: a request with no connection (method "POST", path "/", no route, header
 * and query lookups find nothing) whose body is a copy of body[0..len), Content-Length len. NULL
 * when out of memory. Free it with http_req_free_detached (which frees its state and answer too). */
kreq *http_req_new_detached(const void *body, size_t len);
void http_req_free_detached(kreq *r);

/* ---- routes (src/http/router.c) --------------------------------------------------------------- */

typedef int (*http_handler)(kreq *r);

/* A route: one row of the table in router.c. resolve (may be NULL) runs when the route is found,
 * before the middleware chain, and finds what the request is about (its workflow:
 * http_req_set_workflow_def, or http_req_set_unresolved); it never answers. prepare (may be NULL)
 * runs after the chain, before the body is read, and may answer (HTTP_DONE); handle runs when the
 * body is complete. */
enum { HTTP_AUTH_NONE = 0, HTTP_AUTH_USER, HTTP_AUTH_ADMIN, HTTP_AUTH_METRICS };

struct http_route {
    const char *method;
    const char *pattern; /* "/workflows/{name}/run": {name} matches one segment */
    int auth;            /* HTTP_AUTH_*: API.md's auth column (never, yes, admin; METRICS: never, or with
                          * metrics_auth the admin or metrics role) */
    int runs;            /* it runs the workflow: the workflow's gateway.rate_limit applies */
    http_handler resolve;
    http_handler prepare;
    http_handler handle;
};

/* Finds the route for method + path. Returns the row, or NULL with *status 404, or 405 with the
 * methods the path takes in allow ("GET, POST"). param receives the {name} segment. */
const http_route *http_route_find(const char *method, const char *path, char *param, size_t paramlen, int *status,
                                  char *allow, size_t allowlen);

/* ---- the server: the daemons on the loops (src/http/daemons.c: start, quiesce, loops, loop_stats,
 * sync, stop) and the requests' side (src/http/server.c: inflight, config, set_config) ----------- */

/* Starts listening, with one libmicrohttpd daemon on each of the nloops I/O loops (cfg is kept
 * borrowed for the server's life). Returns 0 or -1 with err. */
struct ioloop;
int http_server_start(const kconfig *cfg, struct ioloop *const *loops, int nloops, char *err, size_t errlen);
/* Drains: stops accepting new connections and closes idle ones; requests in flight go on, and their
 * answers (every answer from now on) carry `Connection: close`. */
void http_server_quiesce(void);
/* One loop's front-end counters, for /metrics. */
typedef struct http_loop_stats {
    size_t accepted; /* connections its daemon took from its listening socket */
    int park_on;     /* src/http/mhd_park.c is on for its daemon */
    size_t park_kept, park_hidden, park_spared, park_quiet_skips; /* what parking saved (mhd_park.c) */
} http_loop_stats;
/* The number of loops (daemons), and loop i's counters (read on its thread, so it may wait for the
 * loop's current turn). 0, or -1 when i is out of range or the loop is stopping. */
int http_server_loops(void);
int http_server_loop_stats(int i, http_loop_stats *out);
/* Returns once every loop has finished the turn it was in: a config replaced before the call is no
 * longer read by any request callback (they read http_server_config() within one turn). */
void http_server_sync(void);
/* Requests accepted and not yet finished. */
int http_server_inflight(void);
/* Closes everything. Call when http_server_inflight() is 0 (or the grace time is over). */
void http_server_stop(void);
/* TLS (src/http/tls.c): loads cfg's tls.cert_file and tls.key_file (nothing without them) for the
 * daemons' handshakes. http_server_start calls it; a reload calls it again, and new handshakes get the
 * renewed certificate (connections already open keep theirs). 0, or -1 with err naming the file and
 * the problem, never the key's bytes; on -1 the certificate serving so far stays. */
int http_tls_load(const kconfig *cfg, char *err, size_t errlen);
/* Frees every certificate loaded (after http_server_stop, or after a load only to check it). */
void http_tls_free(void);
/* The config requests are checked against (borrowed; configs stay alive until exit). */
const kconfig *http_server_config(void);
/* Publishes a reloaded config (max_body_bytes, trusted_proxies take effect for new requests). The
 * caller keeps the old one alive: requests in flight may still read it. */
void http_server_set_config(const kconfig *cfg);

/* ---- answers (src/http/reply.c) ---------------------------------------------------------------
 * An answer is kept in the request as set until the server queues it (after the after() steps have
 * read it); a new one replaces what was set before, headers included. */

/* Sets the answer; body is stolen. The Content-Type (JSON, unless a Content-Type was added with
 * http_reply_header), X-Request-ID and Server-Timing headers are added when it is queued. */
void http_reply_json(kreq *r, int status, json_t *body);
/* The same with the body already written (NUL-terminated), taken from body (left empty); NULL or
 * an empty buf answers 500 "out of memory". */
void http_reply_buf(kreq *r, int status, buf *body);
/* The one error shape of API.md; details is stolen and may be NULL. */
void http_reply_error(kreq *r, int status, const char *code, const char *message, json_t *details);
/* Adds a header to the answer already set (copied; dropped when none is set yet). */
void http_reply_header(kreq *r, const char *name, const char *value);

/* ---- streamed answers (src/http/stream.c) -----------------------------------------------------
 * An answer whose body is produced as it goes (Server-Sent Events): chunked transfer encoding
 * through libmicrohttpd's content reader. The daemon asks the producer's read for bytes whenever the
 * socket can take them; a read with nothing ready suspends the connection (mhd_park keeps its
 * place) until http_stream_wake. The after() steps (the access log) run when the stream starts, as
 * for any answer; X-Request-ID and Server-Timing are sent with its headers. A stream ends when read
 * says so, when the client leaves, when http_stream_abort is called, and at http_server_quiesce
 * (the server drains: what read has ready is sent, then the end). */

typedef struct http_stream http_stream;
enum { HTTP_STREAM_END = -1, HTTP_STREAM_ABORT = -2 };

typedef struct http_stream_ops {
    /* Copies up to max bytes that are ready into out and returns how many (> 0); 0: nothing now (the
     * connection waits for http_stream_wake); HTTP_STREAM_END: the body is complete;
     * HTTP_STREAM_ABORT: close the connection without a proper end. On the request's loop thread. */
    long (*read)(void *ud, char *out, size_t max);
    /* The stream is over (ended, aborted, the client left, the answer replaced or never sent): the
     * producer lets go of ud. Called once, on the request's loop thread (at a stop that tears the
     * daemons down, on the stopping thread). */
    void (*close)(void *ud);
} http_stream_ops;

/* Sets a streamed answer (it replaces what was set before): status, Content-Type content_type, the
 * body from ops (ud is the stream's from here on: ops->close gives it back). Headers may be added
 * with http_reply_header afterwards. Returns a handle holding one reference for the caller
 * (http_stream_release), or NULL out of memory with a 500 set (ud stays the caller's). Where
 * http_reply_* may be called. */
http_stream *http_reply_stream(kreq *r, int status, const char *content_type, const http_stream_ops *ops, void *ud);
/* New bytes are ready: a connection waiting in read is resumed (read is called again soon). Any
 * thread; nothing once the stream is over. */
void http_stream_wake(http_stream *s);
/* Ends the stream by closing its connection (a client too slow to keep up): read is not called
 * again and ops->close follows. Any thread; nothing once the stream is over. */
void http_stream_abort(http_stream *s);
/* Drops the caller's reference. Any thread. */
void http_stream_release(http_stream *s);

/* ---- resuming a waiting request (src/http/server.c, whose phases they move on) ----------------- */

/* After a handler returned HTTP_PENDING: the response is set, resume the connection. Any thread. */
void http_complete(kreq *r);
/* After a middleware step parked r (MW_PARKED): go on with the chain at the next step, or, when
 * answered is set (the step answered with http_reply_*), send that answer. Call it on r's loop thread
 * (where before() ran), once, and only after before() has returned. */
void http_chain_continue(kreq *r, int answered);

#endif
