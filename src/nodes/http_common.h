/* http_common: what HTTPRequestNode, RESTClientNode and LoadBalancerNode share. Private to
 * src/nodes/ (not a module header: no other module may include it).
 *
 * Three parts:
 *   1. config checking, driven by a table of keys (http_key) that compile() runs on the raw config
 *      (skipping values that are templates or {"$env"}) and start() runs again on the final inputs;
 *   2. building one request (http_request) from those inputs: URL with the origin rule, query,
 *      headers with auth, body;
 *   3. running it (http_exchange): attempts on the I/O loop, retries with backoff, the run's
 *      deadline, bounded answers, then the node's outputs through call->done exactly once.
 *
 * Secrets: request header values and auth credentials live only in the curl_slist of a request;
 * no error message or output ever quotes them. */
#ifndef KAILASH_NODES_HTTP_COMMON_H
#define KAILASH_NODES_HTTP_COMMON_H

#include <curl/curl.h>
#include <jansson.h>
#include <stddef.h>
#include <sys/socket.h>

#include "kailash/ioloop.h"
#include "kailash/node.h"
#include "kailash/util.h"

/* ---- 1. config keys ---- */

typedef enum http_kind {
    HTTP_K_STRING,   /* a string */
    HTTP_K_ENUM,     /* one of choices (case-insensitive) */
    HTTP_K_FIELDS,   /* object of scalars: strings, numbers, booleans (headers, path_params) */
    HTTP_K_QUERY,    /* object of scalars, nulls (skipped) and arrays of scalars (repeated) */
    HTTP_K_ANY,      /* any JSON value */
    HTTP_K_BODY,     /* a string (sent as is) or an object */
    HTTP_K_SECONDS,  /* a number > 0, at most one hour */
    HTTP_K_SECONDS0, /* a number >= 0, at most one hour */
    HTTP_K_RETRIES,  /* an integer 0..10 */
    HTTP_K_BOOL,
    HTTP_K_URLS, /* a non-empty array of strings */
} http_kind;

typedef struct http_key {
    const char *name;
    http_kind kind;
    const char *const *choices; /* HTTP_K_ENUM: NULL-terminated */
    int pinned;                 /* fixed at load: no template, and a run may not change it */
} http_key;

extern const char *const http_methods[];    /* GET POST PUT PATCH DELETE HEAD OPTIONS */
extern const char *const http_formats[];    /* auto json text binary */
extern const char *const http_auth_types[]; /* bearer basic api_key oauth2 */

/* The keys every HTTP-type node takes, as X-macro rows X(name, kind, choices, pinned), so one list
 * gives both the node's config_keys and its http_key table. */
#define HTTP_KEYS_COMMON(X)                                                                                            \
    X("method", HTTP_K_ENUM, http_methods, 0)                                                                          \
    X("headers", HTTP_K_FIELDS, NULL, 0)                                                                               \
    X("timeout", HTTP_K_SECONDS, NULL, 0)                                                                              \
    X("retry_count", HTTP_K_RETRIES, NULL, 0)                                                                          \
    X("retry_backoff", HTTP_K_SECONDS0, NULL, 0)                                                                       \
    X("auth_type", HTTP_K_ENUM, http_auth_types, 0)                                                                    \
    X("auth_token", HTTP_K_STRING, NULL, 0)                                                                            \
    X("auth_username", HTTP_K_STRING, NULL, 0)                                                                         \
    X("auth_password", HTTP_K_STRING, NULL, 0)                                                                         \
    X("api_key_header", HTTP_K_STRING, NULL, 0)                                                                        \
    X("verify_ssl", HTTP_K_BOOL, NULL, 1)

/* HTTPRequestNode's own keys (LoadBalancerNode takes them too, `url` being a path there). */
#define HTTP_KEYS_REQUEST(X)                                                                                           \
    X("url", HTTP_K_STRING, NULL, 0)                                                                                   \
    X("params", HTTP_K_QUERY, NULL, 0)                                                                                 \
    X("json_data", HTTP_K_ANY, NULL, 0)                                                                                \
    X("data", HTTP_K_BODY, NULL, 0)                                                                                    \
    X("response_format", HTTP_K_ENUM, http_formats, 0)                                                                 \
    HTTP_KEYS_COMMON(X)

/* The keys of HTTP_KEYS_COMMON that choose how a node reaches out: node_type.pinned_keys entries
 * (only the workflow file sets them, see node.h). */
#define HTTP_PINNED_COMMON                                                                                             \
    "method", "headers", "auth_type", "auth_token", "auth_username", "auth_password", "api_key_header", "verify_ssl"

#define HTTP_KEY_ROW(name, kind, choices, pinned) {name, kind, choices, pinned},
#define HTTP_KEY_NAME(name, kind, choices, pinned) name,

/* True when v is filled in later (a template string, or {"$env": NAME} not yet resolved): load-time
 * checks skip it, run-time checks see the final value. */
int http_value_deferred(json_t *v);

/* Checks every key of keys present in obj (borrowed). at_load: messages say "config.<key>" and
 * deferred values are skipped (pinned keys may not be deferred); at run they say "<key>".
 * Returns 0, or -1 with err. */
int http_keys_check(const http_key *keys, json_t *obj, int at_load, char *err, size_t errlen);

/* ---- what compile() keeps ---- */

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

/* The part of every HTTP node's compiled state that http_common reads. */
typedef struct http_base {
    http_limits lim;
    const http_key *keys; /* the node's static key table */
    json_t *pinned;       /* owned: object of the pinned keys' config values */
} http_base;

/* Fills base from env and config: limits, verify_ssl, the pinned values. 0 or -1 with err. */
int http_base_init(http_base *base, const http_key *keys, const node_env *env, json_t *config, char *err,
                   size_t errlen);
void http_base_clear(http_base *base);

/* Checks a run's final inputs: every key's type ("internal" on a mismatch), and that no pinned key
 * changed ("bad_request"). 0, or -1 with err. */
int http_base_check_inputs(const http_base *base, json_t *inputs, node_error *err);

/* The origin rule of WORKFLOWS.md for a config URL (borrowed string): a literal must be an
 * http(s) URL with a host; a template's literal text before the first `{{` must hold
 * scheme://host[:port] followed by '/', '?' or '#'. Fills o. 0, or -1 with err ("config.<key>: ..."). */
int http_origin_from_config(const char *key, const char *url, http_origin *o, char *err, size_t errlen);

/* Compiled state of a node bound to the origin of one config URL (HTTPRequestNode's url,
 * RESTClientNode's base_url). */
typedef struct http_origin_node {
    http_base base;
    http_origin origin;  /* where the run's URL must point */
    struct http_url_memo *memo; /* HTTPRequestNode: its literal url's parse; NULL otherwise */
} http_origin_node;

/* compile() of such a node: checks config against keys, requires config.<url_key> to be a string
 * (else err is `missing`, a static message), fixes its origin and fills the base. *compiled is a
 * new http_origin_node, freed with http_origin_node_free. 0, or -1 with err. */
int http_origin_node_compile(const http_key *keys, const char *url_key, const char *missing, const node_env *env,
                             json_t *config, void **compiled, char *err, size_t errlen);
void http_origin_node_free(void *compiled);

/* ---- 2. one request ---- */

typedef enum http_format { HTTP_FMT_AUTO, HTTP_FMT_JSON, HTTP_FMT_TEXT, HTTP_FMT_BINARY } http_format;

/* Everything one request needs. Zero-initialise; http_request_clear frees the members. */
/* What a node's literal URL parses to, worked out at compile time (http_memo.c). Read-only. */
typedef struct http_url_memo {
    char *text;        /* the URL as configured */
    CURLU *url;        /* its parse: never changed, dup'd for a request that needs its own */
    http_origin origin;
    char *public_text; /* for the outputs: without user and password */
    int plain;         /* the plain path may take it (http_wire.c's rules) */
    char *host, *path, *query; /* for the request line; query NULL when none */
    long port;
    char *host_line; /* "Host: host[:port]\r\n" as the plain path sends it */
} http_url_memo;

/* The memo of url (a config string) when it is a literal (no template) that parses and keeps to
 * want; NULL otherwise (or out of memory): the node then parses per call. */
http_url_memo *http_url_memo_new(const char *url, const http_origin *want);
void http_url_memo_free(http_url_memo *m);

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
/* Printable ASCII without space (NULL counts): what libcurl sends in a request line unchanged. */
int http_wire_printable(const char *s);

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
 * when headers don't set them. */
int http_request_headers(http_request *r, json_t *inputs, const char *default_accept, node_error *err);

/* HTTPRequestNode's request but its URL, from inputs: options (response_format default auto), the
 * body (json_data wins over data, as in the SDK), then headers without a default Accept. */
int http_request_fill(http_request *r, json_t *inputs, node_error *err);

/* ---- 3. the exchange ---- */

/* One answer as a node sees it. Everything is borrowed for the outputs callback's duration. */
typedef struct http_answer {
    long status_code;
    json_t *headers; /* object, lower-case names */
    json_t *content; /* parsed per response_format */
    double response_time_ms;
    const char *url; /* the URL asked, without credentials */
    const char *method;
} http_answer;

typedef struct http_exchange http_exchange;

typedef enum http_end {
    HTTP_END_ANSWER,    /* the upstream answered (any status) */
    HTTP_END_TRANSPORT, /* refused, reset, TLS, DNS, garbage, the node's own timeout */
    HTTP_END_OTHER,     /* oversize answer, the run's deadline, loop shutdown, out of memory */
} http_end;

/* What a node plugs into an exchange. outputs is required; the rest may be NULL. */
typedef struct http_hooks {
    /* Before every attempt, on the caller's thread for the first one and on the loop thread after:
     * may replace the request's url. new_round: first attempt, or the first after a backoff. */
    int (*begin)(http_exchange *ex, int new_round, node_error *err);
    /* After every attempt whose begin succeeded, with how it ended. */
    void (*end)(http_exchange *ex, http_end how);
    /* After a transport error: non-zero when another attempt may start at once, without backoff. */
    int (*failover)(http_exchange *ex);
    /* The node's outputs for an answer: a new reference, or NULL when out of memory. */
    json_t *(*outputs)(http_exchange *ex, const http_answer *a);
    void (*free_ud)(void *ud);
} http_hooks;

/* A new exchange for call (borrowed until done), taking ownership of ud. NULL when out of memory
 * (ud is then freed with hooks->free_ud). */
http_exchange *http_exchange_new(node_call *call, const http_limits *lim, const http_hooks *hooks, void *ud);
http_request *http_exchange_request(http_exchange *ex);
void *http_exchange_ud(http_exchange *ex);

/* Starts the first attempt. Consumes ex: returns 0 and later calls call->done exactly once (on the
 * loop thread), or returns -1 with err, ex freed and done never called. */
int http_exchange_start(http_exchange *ex, node_error *err);
/* Frees an exchange that was never started. */
void http_exchange_free(http_exchange *ex);

/* Builds a run's request into r from its inputs (borrowed); compiled is the node's. 0 or -1 with err. */
typedef int (*http_build_fn)(const void *compiled, json_t *inputs, http_request *r, node_error *err);

/* http_exchange_new, then build(compiled, call->inputs, ...), then http_exchange_start; ud is owned
 * as by http_exchange_new. Returns 0 and later calls call->done once, or -1 with err. */
int http_exchange_run(node_call *call, const http_limits *lim, const http_hooks *hooks, void *ud, http_build_fn build,
                      const void *compiled, node_error *err);

/* start() of an http_origin_node (compiled): http_base_check_inputs, then http_exchange_run
 * without ud. */
int http_origin_node_start(const void *compiled, node_call *call, const http_hooks *hooks, http_build_fn build,
                           node_error *err);

/* HTTPRequestNode's outputs {"response": {...}, "status_code", "success"} (LoadBalancerNode too),
 * as an http_hooks.outputs. */
json_t *http_outputs_response(http_exchange *ex, const http_answer *a);

/* Output ports of HTTPRequestNode / LoadBalancerNode. */
int http_has_response_output(const void *compiled, const char *port);

/* ---- the plain path (http_wire.c, http_resolve.c) ----
 * An attempt at an http:// URL without credentials in it goes through the I/O loop's own HTTP/1.1
 * client (ioloop_h1_add) instead of libcurl when its host is a numeric address or a name the
 * resolver's cache holds; everything else through libcurl. */

/* When the plain path can take r: where to connect into q (addr, alt) and the request's bytes into
 * out (reset first), as libcurl would send them. 0, or -1 (use libcurl). */
int http_wire_prepare(const http_request *r, ioloop_h1_req *q, buf *out);
/* Turns the plain path on or off for the whole process (tests; KAILASH_UPSTREAM_CLIENT=libcurl in
 * the environment turns it off at start). */
void http_wire_enable(int on);

/* Up to two addresses of the name host, with port set, from the cache (resolved by a thread of
 * its own, kept 60 s). Returns how many, or 0 when the name is not resolved yet (its resolution is
 * started) or did not resolve. */
int http_resolve(const char *host, long port, struct sockaddr_storage *a, socklen_t *alen, struct sockaddr_storage *b,
                 socklen_t *blen);

/* http_easy.c: one easy handle per attempt, never reused (libcurl 7.88.1's curl issue 11101). get: a
 * new handle (NULL when out of memory); put: cleans it up (NULL is fine). Thread-safe. */
CURL *http_easy_get(void);
void http_easy_put(CURL *e);

#endif
