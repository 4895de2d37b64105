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
    const http_route *route;
    char param[132]; /* the {name} segment of the path, if the route has one */
    buf body;
    long long content_length; /* -1 when not given */
    int body_too_large;
    int status; /* of the response set */
    struct MHD_Response *resp;
    char run_id[40];    /* handler: for X-Run-ID and the access log */
    char workflow[132]; /* handler: for the access log */
    void *state;        /* handler: its own per-request state */
    void (*state_free)(void *state);
    pthread_mutex_t mu; /* guards ready/suspended between the handler and http_complete */
    int ready;
    int suspended;
    int logged;
    int close; /* the answer carries `Connection: close` and the connection ends after it */
};

typedef int (*http_handler)(kreq *r);

/* A route: one row of the table in router.c. prepare (may be NULL) runs before the body is read and
 * may answer (HTTP_DONE); handle runs when the body is complete. */
struct http_route {
    const char *method;
    const char *pattern; /* "/workflows/{name}/run": {name} matches one segment */
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
/* After a handler returned HTTP_PENDING: the response is set, resume the connection. Any thread. */
void http_complete(kreq *r);

/* A request header (case-insensitive) or query argument; NULL when absent. Borrowed. */
const char *http_header(kreq *r, const char *name);
const char *http_query(kreq *r, const char *name);

#endif
