/* upstream: outbound HTTP (src/upstream/), one module for both ways a call goes out.
 *
 *   - the plain HTTP/1.1 client (h1.c, h1_parse.c) for http:// URLs: one send and one read per call
 *     on a kept-alive connection in the loop's epoll set;
 *   - libcurl's multi-socket API (curl_multi.c) for everything else (https://, credentials in the
 *     URL, bytes outside printable ASCII), one multi handle per loop;
 *   - the request a node asks for (request.c, memo.c), its bytes on the plain path (wire.c);
 *   - the exchange (exchange.c): attempts on the loop, retries with backoff, the run's deadline,
 *     bounded answers, classification into API.md error codes, abort;
 *   - a general resolver (resolve.c): names resolved by a thread of their own, answered on a loop.
 *
 * Both clients are ordinary clients of the loop (ioloop.h): watches, embedded timers, a stop hook.
 * Each loop gets its own of both with upstream_loop_start; they share nothing across loops.
 *
 * Proxies: none, on both paths. libcurl would honour http_proxy/https_proxy/no_proxy from the
 * environment while the plain client cannot, so one host name would change route with the path
 * taken; every easy handle therefore sets CURLOPT_PROXY "" (README, "How a call goes out").
 *
 * Path choice: decided by the URL alone, the same on the first call to a name as on later ones. An
 * http:// URL at a host name is resolved first (the exchange waits on the resolver, bounded by the
 * attempt's time), then goes plain; it never falls back to libcurl for want of an address.
 *
 * Threads: unless a function says otherwise, call it on the loop's thread. */
#ifndef KAILASH_UPSTREAM_H
#define KAILASH_UPSTREAM_H

#include <curl/curl.h>
#include <jansson.h>
#include <stddef.h>
#include <sys/socket.h>

#include "kailash/ioloop.h"
#include "kailash/node.h"
#include "kailash/util.h"

/* ---- result codes of one transfer (either client) ---- */

typedef enum up_code {
    UP_OK = 0,
    UP_COULDNT_CONNECT, /* refused, unreachable */
    UP_RESOLVE,         /* the name did not resolve */
    UP_SEND_ERROR,
    UP_RECV_ERROR,
    UP_TIMEOUT,     /* the transfer's own time limit (connecting included) */
    UP_TOO_LARGE,   /* the answer passed its byte limit */
    UP_WRITE_ERROR, /* a header or body callback refused */
    UP_GOT_NOTHING, /* closed without a byte of answer */
    UP_PARTIAL,     /* closed inside the body */
    UP_BAD_ANSWER,  /* not HTTP, or HTTP read strictly refuses */
    UP_TLS,         /* TLS handshake or verification */
    UP_NO_MEMORY,
    UP_STOPPING,  /* the loop stopped first */
    UP_CANCELLED, /* aborted by its owner */
    UP_FAILED,    /* anything else */
} up_code;

/* A short English text for c (static). */
const char *up_strerror(up_code c);
/* libcurl's code as ours (curl_multi.c). */
up_code up_from_curl(CURLcode c);

/* ---- per loop ---- */

/* Gives io its plain client and multi handle (max_connects: each one's keep-alive pool). Any thread
 * (runs on io's thread through ioloop_call). Both go when the loop stops: transfers in flight end
 * with UP_STOPPING then. 0, or -1 with err. */
int upstream_loop_start(ioloop *io, long max_connects, char *err, size_t errlen);
/* Transfers in io's clients (started, done not yet called). Thread-safe; 0 for NULL. */
size_t upstream_inflight(ioloop *io);

/* ---- the plain HTTP/1.1 client (h1.c) ----
 * For an http:// upstream at a known address the loop speaks HTTP/1.1 itself: one send and one read
 * per call on a kept-alive connection, no per-transfer setup. Idle connections are kept per address
 * (up to max_connects), each watched for the upstream closing it. A request that finds a reused
 * connection dead before any byte of the answer arrived is sent once more on a new connection (as
 * libcurl does). */

typedef struct up_h1_req {
    struct sockaddr_storage addr; /* where to connect: AF_INET or AF_INET6 with its port */
    socklen_t addrlen;
    struct sockaddr_storage alt; /* altlen != 0: tried when connecting to addr fails (a name's */
    socklen_t altlen;            /* second address, as libcurl would try it) */
    const char *data;            /* the whole request as sent (line, headers, blank line, body); borrowed until done */
    size_t len;
    int no_body;               /* a HEAD request: the answer has no body */
    double timeout_ms;         /* the whole transfer, connecting included (> 0) */
    double connect_timeout_ms; /* connecting (> 0) */
    size_t max_bytes;          /* > 0: the answer's bytes as received (framing included) stop there */
    /* The answer, in libcurl's callback shape: return n to go on, anything else ends the transfer
     * with UP_WRITE_ERROR. on_header gets each line as received (status line, header lines, then the
     * blank line; those of 1xx answers too), on_body the decoded body. */
    size_t (*on_header)(char *line, size_t n, void *ud);
    size_t (*on_body)(char *p, size_t n, void *ud);
} up_h1_req;

typedef struct up_h1_result {
    up_code code;
    long status;     /* the final answer's status, 0 when none */
    int connected;   /* a connection was made or reused */
    double total_ms; /* from up_h1_start to the end */
    char error[192]; /* a message for code != UP_OK (names no header and no body) */
} up_h1_result;

typedef void (*up_h1_done_fn)(const up_h1_result *r, void *ud);
typedef struct up_h1_xfer up_h1_xfer;

/* Starts a transfer on the calling loop's client (req is copied; req->data stays borrowed). done is
 * called once, never from inside this call. Returns the transfer, or NULL (done will not be called:
 * bad arguments, no client on this thread, out of memory). */
up_h1_xfer *up_h1_start(const up_h1_req *req, up_h1_done_fn done, void *ud);
/* Aborts x before its done: its connection is closed, done is not called. */
void up_h1_cancel(up_h1_xfer *x);

/* ---- libcurl's multi handle (curl_multi.c) ---- */

typedef void (*up_curl_done_fn)(CURL *easy, up_code code, CURLcode curl_code, void *ud);
typedef struct up_curl_xfer up_curl_xfer;

/* Adds a configured easy handle to the calling loop's multi handle. done is called once, never from
 * inside this call; the handle is the caller's again then (already out of the multi handle). Its
 * CURLOPT_PRIVATE is borrowed meanwhile and restored. Returns the transfer or NULL (done will not
 * be called). */
up_curl_xfer *up_curl_start(CURL *easy, up_curl_done_fn done, void *ud);
/* Takes x's handle out of the multi handle before its done (done is not called); the easy handle
 * is the caller's again. */
void up_curl_cancel(up_curl_xfer *x);

/* ---- the resolver (resolve.c) ----
 * Names are resolved by a thread of their own (getaddrinfo blocks) and kept 60 s, libcurl's DNS
 * cache time; a name that does not resolve is remembered as such for as long. Up to two addresses
 * per name, in getaddrinfo's order: the second is tried when the first refuses. For any client
 * that must connect to a name without blocking its loop (HTTP, and Redis and Postgres hosts). */

typedef struct up_addrs {
    int n; /* 0: did not resolve */
    struct sockaddr_storage addr[2];
    socklen_t len[2];
} up_addrs;

typedef struct up_resolve_wait up_resolve_wait;
typedef void (*up_resolve_fn)(up_resolve_wait *w, const up_addrs *a);

/* A wait for a name, embedded in its owner. Its fields are the resolver's. */
struct up_resolve_wait {
    ioloop *io;
    long port;
    up_resolve_fn fn;
    void *ud;
    int state;
    struct up_resolve_wait *next;
    up_addrs result;
    char host[256];
};

/* From the cache only: 1 with *out (ports set) when the name is fresh there, 0 when it is not (its
 * resolution is started), -1 when it is known not to resolve. Thread-safe. */
int upstream_resolve_cached(const char *host, long port, up_addrs *out);
/* Answers host on io's thread: returns 1 with *out at once when cached (fn not called), -1 when the
 * name is too long, or 0 and later calls fn(w, addrs) on io's thread (addrs->n 0: did not resolve,
 * or the loop stopped). w->ud is the caller's. Thread-safe. */
int upstream_resolve(ioloop *io, const char *host, long port, up_resolve_wait *w, up_resolve_fn fn, up_addrs *out);
/* Withdraws a wait (io's thread): 1 when fn will not be called, 0 when its call is already on its
 * way (posted: w must stay valid until it runs). */
int upstream_resolve_cancel(up_resolve_wait *w);

/* ---- what a request is bound to ---- */

typedef struct http_origin {
    char scheme[8]; /* "http" or "https" */
    char host[256];
    long port; /* explicit or the scheme's default */
} http_origin;

typedef struct http_limits {
    size_t max_response_bytes;
    long connect_timeout_ms;
    int verify_tls; /* upstream.verify_tls and the node's verify_ssl */
} http_limits;

/* ---- one request (request.c, memo.c) ---- */

/* How an answer's body becomes content: auto (JSON when the Content-Type says so, else text), json
 * (not JSON fails the call), text, binary (base64), or json_or_text (JSON when it parses, else the
 * text: the SDK RESTClientNode's response_format "json", which falls back to the text). */
typedef enum http_format {
    HTTP_FMT_AUTO,
    HTTP_FMT_JSON,
    HTTP_FMT_TEXT,
    HTTP_FMT_BINARY,
    HTTP_FMT_JSON_OR_TEXT
} http_format;

/* What a node's literal URL parses to, worked out at compile time (memo.c). Read-only. */
typedef struct http_url_memo {
    char *text;        /* the URL as configured */
    CURLU *url;        /* its parse: never changed, dup'd for a request that needs its own */
    http_origin origin;
    char *public_text; /* for the outputs: without user and password */
    int plain;         /* the plain path may take it (wire.c's rules) */
    char *host, *path, *query; /* for the request line; query NULL when none */
    long port;
    char *host_line; /* "Host: host[:port]\r\n" as the plain path sends it */
} http_url_memo;

/* The memo of url (a config string) when it is a literal (no template) that parses and keeps to
 * want; NULL otherwise (or out of memory): the node then parses per call. */
http_url_memo *http_url_memo_new(const char *url, const http_origin *want);
void http_url_memo_free(http_url_memo *m);

/* Everything one request needs. Zero-initialise; http_request_clear frees the members. */
typedef struct http_request {
    CURLU *url; /* owned; NULL while memo stands for it; the load balancer replaces it per attempt */
    const http_url_memo *memo; /* borrowed from the compiled node: the URL is exactly the memo's */
    char method[8];
    struct curl_slist *headers; /* owned; holds secrets: never printed */
    char *body;                 /* owned, body_len bytes; NULL: no body */
    size_t body_len;
    const char *body_type; /* static Content-Type for the body, unless headers set one */
    http_format format;
    double timeout_ms;
    int retry_count;
    double backoff_ms;
} http_request;

void http_request_clear(http_request *r);

/* Every call out carries the hop count (API.md, 508 loop_detected): a node can't set it. */
#define HTTP_HOPS_HEADER "X-Kailash-Hops"
/* Adds "X-Kailash-Hops: hops + 1" to r's headers. 0, or -1 with err. */
int http_request_add_hops(http_request *r, int hops, node_error *err);

/* The request's URL is the text m was made from (and nothing will be added): borrow m instead of
 * parsing. Returns 1 if so, 0 (nothing changed) when m is NULL or the text differs. */
int http_request_use_memo(http_request *r, const http_url_memo *m, const char *text);
/* The request's own CURLU (made from its memo at the first call), NULL when out of memory. */
CURLU *http_request_url(http_request *r);
/* The URL for the outputs: without user and password. New string (caller frees) or NULL. */
char *http_url_public(CURLU *u);

/* Parses url (borrowed), requires http(s), and requires its scheme, host and port to equal want's.
 * Errors name `key` and are "bad_request" ("url: scheme, host and port may not change") or
 * "internal". *out is a new CURLU (caller frees). */
int http_url_parse(const char *key, const char *url, const http_origin *want, CURLU **out, node_error *err);

/* The origin of a parsed URL (scheme and host lower-cased, port explicit or default). 0 or -1. */
int http_url_origin(CURLU *u, http_origin *o);

/* Appends the URL-encoded fields of params (an object, or NULL) to u's query. */
int http_url_add_query(CURLU *u, const char *key, json_t *params, node_error *err);

/* A scalar as text for a URL or a header: strings as they are, integers without ".0", booleans as
 * true/false. Returns a new string (caller frees), or NULL when v is not a scalar. */
char *http_scalar_text(json_t *v);

/* method, timeout, retry_count, retry_backoff, response_format (default fmt) from inputs. */
int http_request_options(http_request *r, json_t *inputs, http_format fmt, node_error *err);

/* Body from a JSON value: compact JSON with Content-Type application/json. */
int http_request_body_json(http_request *r, json_t *v, node_error *err);
/* Body from the SDK's `data`: a string as is, an object form-urlencoded. */
int http_request_body_data(http_request *r, json_t *v, node_error *err);

/* Request headers: inputs.headers, then the auth header (auth_type, auth_token, auth_username,
 * auth_password, api_key_header), then Content-Type for the body and default_accept (may be NULL)
 * when headers don't set them. A body without a type (a raw string) goes without Content-Type, as
 * requests sends it: libcurl's default form type is removed. */
int http_request_headers(http_request *r, json_t *inputs, const char *default_accept, node_error *err);

/* HTTPRequestNode's request but its URL, from inputs: options (response_format default auto), the
 * body (json_data wins over data, as in the SDK), then headers without a default Accept. */
int http_request_fill(http_request *r, json_t *inputs, node_error *err);

extern const char *const http_methods[];    /* GET POST PUT PATCH DELETE HEAD OPTIONS */
extern const char *const http_formats[];    /* auto json text binary */
extern const char *const http_auth_types[]; /* bearer basic api_key oauth2 */
/* A string, number or boolean. */
int http_is_scalar(json_t *v);
/* The index of s in the NULL-terminated choices (case-insensitive), or -1. */
int http_choice_index(const char *const *choices, const char *s);

/* The origin rule of WORKFLOWS.md for a config URL (borrowed string): a literal must be an
 * http(s) URL with a host; a template's literal text before the first `{{` must hold
 * scheme://host[:port] followed by '/', '?' or '#'. Fills o. 0, or -1 with err ("config.<key>: ..."). */
int http_origin_from_config(const char *key, const char *url, http_origin *o, char *err, size_t errlen);
/* "scheme://host:port" of r's URL, for messages (never the path or query: they may carry keys). */
void http_request_origin_text(const http_request *r, char *out, size_t outlen);

/* ---- the exchange (exchange.c): attempts, retries, classification, the answer ---- */

/* One answer as a node sees it. Everything is borrowed for the outputs callback's duration. */
typedef struct http_answer {
    long status_code;
    json_t *headers; /* object, names in the case received (a repeat joins the first one's) */
    json_t *content; /* parsed per response_format */
    double response_time_ms;
    const char *url; /* the URL asked, without credentials */
    const char *method;
} http_answer;

typedef struct http_exchange http_exchange;

/* headers[name], the name matched regardless of case (answer headers keep the upstream's case):
 * the exact name first, then the first case-insensitive match. Borrowed, or NULL. */
json_t *http_header_get(json_t *headers, const char *name);

typedef enum http_end {
    HTTP_END_ANSWER,    /* the upstream answered (any status) */
    HTTP_END_TRANSPORT, /* refused, reset, TLS, DNS, garbage, the node's own timeout */
    HTTP_END_OTHER,     /* oversize answer, the run's deadline, loop shutdown, out of memory */
} http_end;

/* What a node plugs into an exchange. outputs is required; the rest may be NULL. */
typedef struct http_hooks {
    /* Before every attempt, on the loop thread: may replace the request's url. new_round: first
     * attempt, or the first after a backoff. */
    int (*begin)(http_exchange *ex, int new_round, node_error *err);
    /* After every attempt whose begin succeeded, with how it ended (an abort ends it as
     * HTTP_END_OTHER). */
    void (*end)(http_exchange *ex, http_end how);
    /* After a transport error: non-zero when another attempt may start at once, without backoff. */
    int (*failover)(http_exchange *ex);
    /* The node's outputs for an answer: a new reference, or NULL when out of memory. */
    json_t *(*outputs)(http_exchange *ex, const http_answer *a);
    void (*free_ud)(void *ud);
} http_hooks;

/* A new exchange on loop io, bounded by the run's deadline (util_now_ms clock, <= 0: none), taking
 * ownership of ud. NULL when out of memory (ud is then freed with hooks->free_ud). */
http_exchange *http_exchange_new(ioloop *io, double deadline_ms, const http_limits *lim, const http_hooks *hooks,
                                 void *ud);
http_request *http_exchange_request(http_exchange *ex);
void *http_exchange_ud(http_exchange *ex);

/* The end of an exchange: outputs (a new reference) or err. Called exactly once, on the loop thread. */
typedef void (*http_done_fn)(void *done_ud, json_t *outputs, const node_error *err);

/* Starts the first attempt (any thread: from another than io's, the start is posted to io). Consumes
 * ex: returns 0 and later calls done(done_ud, ...) exactly once, never from inside this call; or
 * returns -1 with err, ex freed and done never called. */
int http_exchange_start(http_exchange *ex, http_done_fn done, void *done_ud, node_error *err);
/* Frees an exchange that was never started. */
void http_exchange_free(http_exchange *ex);

/* Aborts a started exchange whose done has not run yet (on io's thread): the transfer in flight is
 * taken out of the multi handle or its plain connection closed, a retry's backoff or a resolver wait
 * withdrawn; then done is called, before this returns, with err code "cancelled". ex is gone after. */
void http_exchange_abort(http_exchange *ex);

/* ---- the plain path (wire.c) ---- */

/* When the plain path can take r: the request's bytes into out (reset first), as libcurl would send
 * them, and where to connect: a numeric host's address into q (returns 0), or the name and port
 * into host/port for the resolver (returns 1). -1: use libcurl. */
int http_wire_prepare(const http_request *r, up_h1_req *q, buf *out, char *host, size_t hostlen, long *port);
/* Turns the plain path on or off for the whole process (tests; KAILASH_UPSTREAM_CLIENT=libcurl in
 * the environment turns it off at start). */
void http_wire_enable(int on);
/* Printable ASCII without space (NULL counts): what libcurl sends in a request line unchanged. */
int http_wire_printable(const char *s);

/* ---- easy handles (easy.c) ----
 * One per attempt, never reused (libcurl 7.88.1's curl issue 11101). get: a new handle (NULL when
 * out of memory); put: cleans it up (NULL is fine). Thread-safe. */
CURL *http_easy_get(void);
void http_easy_put(CURL *e);

#endif
