/* http_common: what HTTPRequestNode, RESTClientNode and LoadBalancerNode share as node types.
 * Private to src/nodes/ (not a module header: no other module may include it).
 *
 * Config checking, driven by a table of keys (http_key) that compile() runs on the raw config
 * (skipping values that are templates or {"$env"}) and start() runs again on the final inputs; the
 * compiled state every HTTP node keeps; and the glue from a node_call to an exchange of the
 * upstream module (include/kailash/upstream.h), which builds, sends, retries and classifies: its
 * cancel hook, and the node's outputs.
 *
 * Secrets: request header values and auth credentials live only in the curl_slist of a request;
 * no error message or output ever quotes them. */
#ifndef KAILASH_NODES_HTTP_COMMON_H
#define KAILASH_NODES_HTTP_COMMON_H

#include <jansson.h>
#include <stddef.h>

#include "kailash/node.h"
#include "kailash/upstream.h"
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

/* ---- glue to the upstream module ---- */

/* Builds a run's request into r from its inputs (borrowed); compiled is the node's. 0 or -1 with err. */
typedef int (*http_build_fn)(const void *compiled, json_t *inputs, http_request *r, node_error *err);

/* http_exchange_new, then build(compiled, call->inputs, ...), then http_exchange_start; ud is owned
 * as by http_exchange_new. Sets call->cancel (http_exchange_abort). Returns 0 and later calls
 * call->done once, or -1 with err. */
int http_exchange_run(node_call *call, const http_limits *lim, const http_hooks *hooks, void *ud, http_build_fn build,
                      const void *compiled, node_error *err);

/* start() of an http_origin_node (compiled): http_base_check_inputs, then http_exchange_run
 * without ud. */
int http_origin_node_start(const void *compiled, node_call *call, const http_hooks *hooks, http_build_fn build,
                           node_error *err);

/* HTTPRequestNode's outputs {"response": {...}, "status_code", "success"} (LoadBalancerNode too),
 * as an http_hooks.outputs. */
json_t *http_outputs_response(http_exchange *ex, const http_answer *a);

/* The SDK's recovery_suggestions for a status that is not 2xx (three strings). New array or NULL. */
json_t *http_recovery_suggestions(long status);

/* Output ports of HTTPRequestNode / LoadBalancerNode. */
int http_has_response_output(const void *compiled, const char *port);

#endif
