/* http: the libmicrohttpd front end (src/http/): server, router, responses, suspend/resume.
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
#include <pthread.h>

#include "kailash/config.h"
#include "kailash/util.h"

struct MHD_Connection;
struct MHD_Response;
typedef struct kreq kreq;
typedef struct http_route http_route;

/* Handler results. prepare steps return HTTP_CONTINUE to go on to the body. */
enum { HTTP_DONE = 0, HTTP_PENDING = 1, HTTP_CONTINUE = 1 };

/* Where a request is in its life. Moves forward only:
 *   CHAIN     the middleware's before() steps run; chain_pos is the next one
 *   PARKED    a step waits (on Redis, a timer...): the connection is suspended until the step calls
 *             mw_continue on this loop, which goes back to CHAIN (or to ANSWERED)
 *   BODY      the chain and the route's prepare passed: the body is being read
 *   HANDLER   the route's handler has it; a pending one's connection is suspended until
 *             http_complete (any thread)
 *   ANSWERED  an answer is set and waits to be queued on the loop thread
 *   SENT      queued to libmicrohttpd; after() steps have run */
typedef enum kreq_phase { KREQ_CHAIN, KREQ_PARKED, KREQ_BODY, KREQ_HANDLER, KREQ_ANSWERED, KREQ_SENT } kreq_phase;

struct workflow;

/* One request in flight. Owned by the server; handlers may read everything and set the fields marked
 * "handler". Freed after the response is sent (or the client went away). */
struct kreq {
    struct MHD_Connection *conn;
    void *srv;            /* the server's: which daemon and loop the connection belongs to */
    const char *method;   /* borrowed from MHD */
    const char *path;     /* without query string, borrowed from MHD */
    char request_id[132]; /* set by the request_id middleware */
    int hops;             /* X-Kailash-Hops (0 without one), set by the hops middleware */
    char client_ip[64];
    int client_loopback;
    double t0; /* util_now_ms() at arrival */
    /* Routing, done before the chain (the route step answers 404/405 from it): */
    const http_route *route; /* NULL: route_status says 404 or 405 (with allow) */
    int route_status;
    char allow[64];
    char param[132];                /* the {name} segment of the path, if the route has one */
    const struct workflow *wf;      /* the route's resolve found it (borrowed while state holds it) */
    int unresolved;                 /* the route's resolve found nothing: 404 */
    buf body;
    long long content_length; /* -1 when not given */
    int body_too_large;
    /* The answer, kept as it is until it is queued, so after() steps can read it: */
    int status;
    buf answer;         /* the body bytes */
    buf answer_headers; /* "Name\0Value\0" pairs added with http_reply_header */
    char run_id[40];    /* handler: for X-Run-ID and the access log */
    char workflow[132]; /* handler: for the access log */
    void *state;        /* handler: its own per-request state */
    void (*state_free)(void *state);
    pthread_mutex_t mu; /* guards phase and suspended between a handler's thread and the loop */
    kreq_phase phase;
    int chain_pos; /* the next middleware step */
    int suspended; /* the connection is suspended (PARKED, or a pending HANDLER) */
    int close; /* the answer carries `Connection: close` and the connection ends after it */
    int hup_seen;                 /* the client shut its side (loop thread) */
    int left;                     /* ... while its handler had it: it gets no answer */
    void (*on_leave)(kreq *r);    /* handler: told on the loop thread when its client leaves */
};

typedef int (*http_handler)(kreq *r);

/* A route: one row of the table in router.c. resolve (may be NULL) runs when the route is found,
 * before the middleware chain, and finds what the request is about (its workflow: r->wf, or
 * r->unresolved); it never answers. prepare (may be NULL) runs after the chain, before the body is
 * read, and may answer (HTTP_DONE); handle runs when the body is complete. */
struct http_route {
    const char *method;
    const char *pattern; /* "/workflows/{name}/run": {name} matches one segment */
    http_handler resolve;
    http_handler prepare;
    http_handler handle;
};

/* Finds the route for method + path. Returns the row, or NULL with *status 404, or 405 with the
 * methods the path takes in allow ("GET, POST"). param receives the {name} segment. */
const http_route *http_route_find(const char *method, const char *path, char *param, size_t paramlen, int *status,
                                  char *allow, size_t allowlen);

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
/* The config requests are checked against (borrowed; configs stay alive until exit). */
const kconfig *http_server_config(void);
/* Publishes a reloaded config (max_body_bytes, trusted_proxies take effect for new requests). The
 * caller keeps the old one alive: requests in flight may still read it. */
void http_server_set_config(const kconfig *cfg);

/* Responses. body is stolen. The Content-Type, X-Request-ID and Server-Timing headers are added. */
void http_reply_json(kreq *r, int status, json_t *body);
/* The same with the body already written (NUL-terminated), taken from body (left empty); NULL or
 * an empty buf answers 500 "out of memory". */
void http_reply_buf(kreq *r, int status, buf *body);
/* The one error shape of API.md; details is stolen and may be NULL. */
void http_reply_error(kreq *r, int status, const char *code, const char *message, json_t *details);
/* Adds a header to the response already set. */
void http_reply_header(kreq *r, const char *name, const char *value);
/* The answer set so far, for after() steps: a header's value (NULL when absent; not the ones the
 * server adds when it queues), the body (borrowed), the status (r->status). */
const char *http_answer_header(const kreq *r, const char *name);
/* After a handler returned HTTP_PENDING: the response is set, resume the connection. Any thread. */
void http_complete(kreq *r);
/* A handler that returns HTTP_PENDING may ask to be told, on r's loop thread, when the client goes
 * away before the answer (it shut its side): fn should stop the work (cancel the run) and still
 * call http_complete when it ends; the connection is then closed unanswered and logged as 499. */
void http_req_on_leave(kreq *r, void (*fn)(kreq *r));
/* After a middleware step parked r (MW_PARKED): go on with the chain at the next step, or, when
 * answered is set (the step answered with http_reply_*), send that answer. Call it on r's loop thread
 * (where before() ran), once, and only after before() has returned. */
void http_chain_continue(kreq *r, int answered);
/* Whether the request's framing is ambiguous (two Content-Lengths, or one with Transfer-Encoding):
 * such a request must be refused and its connection closed (r->close). */
int http_framing_ambiguous(kreq *r);

/* A request header (case-insensitive) or query argument; NULL when absent. Borrowed. */
const char *http_header(kreq *r, const char *name);
const char *http_query(kreq *r, const char *name);

#endif
