/* http_common: the config checks and compiled state shared by the HTTP-type node types, and their
 * glue to the upstream module (see http_common.h for the surface). Building, sending, retrying and
 * classifying a call is the upstream module's (src/upstream/exchange.c); what is here is what makes
 * those three files node types: keys, pinned values, origins fixed at load, the cancel hook, and the
 * outputs. */
#include "http_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kailash/util.h"

#define HTTP_MAX_SECONDS 3600.0
#define HTTP_MAX_RETRIES 10
#define HTTP_DEFAULT_MAX_RESPONSE (10u * 1024u * 1024u)
#define HTTP_DEFAULT_CONNECT_MS 2000L

/* ======================================================================== 1. config checks */

int http_value_deferred(json_t *v)
{
    if (json_is_string(v))
        return tmpl_value_has_expr(v);
    return json_is_object(v) && json_object_size(v) == 1 && json_object_get(v, "$env") != NULL;
}

static int http_check_enum(const http_key *k, json_t *v, const char *pfx, char *err, size_t errlen)
{
    if (json_is_string(v) && http_choice_index(k->choices, json_string_value(v)) >= 0)
        return 0;
    buf b = {0};
    for (int i = 0; k->choices[i]; i++)
        buf_appendf(&b, "%s%s", i ? " " : "", k->choices[i]);
    util_err(err, errlen, "%s%s: expected one of %s", pfx, k->name, b.data ? b.data : "");
    buf_free(&b);
    return -1;
}

/* A member of a headers/params object; at load, a template member is checked when it arrives. */
static int http_field_ok(json_t *f, int query, int at_load)
{
    if (http_is_scalar(f) || (at_load && http_value_deferred(f)) || (query && json_is_null(f)))
        return 1;
    if (!query || !json_is_array(f))
        return 0;
    size_t i;
    json_t *e;
    json_array_foreach(f, i, e) if (!http_is_scalar(e) && !(at_load && http_value_deferred(e))) return 0;
    return 1;
}

static int http_check_fields(const http_key *k, json_t *v, int at_load, const char *pfx, char *err, size_t errlen)
{
    if (!json_is_object(v))
        return util_err(err, errlen, "%s%s: expected an object", pfx, k->name);
    const char *name;
    json_t *f;
    json_object_foreach(v, name, f)
    {
        if (!http_field_ok(f, k->kind == HTTP_K_QUERY, at_load))
            return util_err(err, errlen, "%s%s.%s: expected a string, number or boolean", pfx, k->name, name);
    }
    return 0;
}

static int http_check_seconds(const http_key *k, json_t *v, int allow_zero, const char *pfx, char *err, size_t errlen)
{
    double s = json_number_value(v);
    if (json_is_number(v) && (allow_zero ? s >= 0 : s > 0) && s <= HTTP_MAX_SECONDS)
        return 0;
    return util_err(err, errlen, "%s%s: expected a number of seconds %s 0 and at most %.0f", pfx, k->name,
                    allow_zero ? ">=" : ">", HTTP_MAX_SECONDS);
}

static int http_check_value(const http_key *k, json_t *v, int at_load, const char *pfx, char *err, size_t errlen)
{
    switch (k->kind) {
    case HTTP_K_STRING:
        return json_is_string(v) ? 0 : util_err(err, errlen, "%s%s: expected a string", pfx, k->name);
    case HTTP_K_ENUM:
        return http_check_enum(k, v, pfx, err, errlen);
    case HTTP_K_FIELDS:
    case HTTP_K_QUERY:
        return http_check_fields(k, v, at_load, pfx, err, errlen);
    case HTTP_K_ANY:
        return 0;
    case HTTP_K_BODY:
        return json_is_string(v) || json_is_object(v)
                   ? 0
                   : util_err(err, errlen, "%s%s: expected a string or an object", pfx, k->name);
    case HTTP_K_SECONDS:
        return http_check_seconds(k, v, 0, pfx, err, errlen);
    case HTTP_K_SECONDS0:
        return http_check_seconds(k, v, 1, pfx, err, errlen);
    case HTTP_K_RETRIES:
        if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= HTTP_MAX_RETRIES)
            return 0;
        return util_err(err, errlen, "%s%s: expected an integer from 0 to %d", pfx, k->name, HTTP_MAX_RETRIES);
    case HTTP_K_BOOL:
        return json_is_boolean(v) ? 0 : util_err(err, errlen, "%s%s: expected true or false", pfx, k->name);
    case HTTP_K_URLS:
        if (json_is_array(v) && json_array_size(v) > 0)
            return 0;
        return util_err(err, errlen, "%s%s: expected a non-empty array of URLs", pfx, k->name);
    }
    return util_err(err, errlen, "%s%s: unknown kind", pfx, k->name);
}

int http_keys_check(const http_key *keys, json_t *obj, int at_load, char *err, size_t errlen)
{
    const char *pfx = at_load ? "config." : "";
    for (const http_key *k = keys; k->name; k++) {
        json_t *v = json_object_get(obj, k->name);
        if (!v || json_is_null(v)) /* null is "not set", as the SDK writes unset parameters */
            continue;
        if (at_load && http_value_deferred(v)) {
            if (k->pinned)
                return util_err(err, errlen, "%s%s: must be a literal value, not a template", pfx, k->name);
            continue;
        }
        if (http_check_value(k, v, at_load, pfx, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* ======================================================================== compiled base */

int http_base_init(http_base *base, const http_key *keys, const node_env *env, json_t *config, char *err, size_t errlen)
{
    base->lim.max_response_bytes = env->max_response_bytes ? env->max_response_bytes : HTTP_DEFAULT_MAX_RESPONSE;
    base->lim.connect_timeout_ms = env->connect_timeout_ms > 0 ? env->connect_timeout_ms : HTTP_DEFAULT_CONNECT_MS;
    json_t *verify = json_object_get(config, "verify_ssl");
    base->lim.verify_tls = env->verify_tls && !json_is_false(verify);
    base->pinned = json_object();
    if (!base->pinned)
        return util_err(err, errlen, "out of memory");
    for (const http_key *k = keys; k->name; k++) {
        json_t *v = json_object_get(config, k->name);
        if (k->pinned && v && !json_is_null(v) && json_object_set_new(base->pinned, k->name, json_deep_copy(v)) != 0) {
            http_base_clear(base);
            return util_err(err, errlen, "out of memory");
        }
    }
    base->keys = keys;
    return 0;
}

void http_base_clear(http_base *base)
{
    json_decref(base->pinned);
    base->pinned = NULL;
}

int http_origin_node_compile(const http_key *keys, const char *url_key, const char *missing, const node_env *env,
                             json_t *config, void **compiled, char *err, size_t errlen)
{
    if (http_keys_check(keys, config, 1, err, errlen) != 0)
        return -1;
    json_t *url = json_object_get(config, url_key);
    if (!json_is_string(url))
        return util_err(err, errlen, "%s", missing);
    http_origin_node *n = calloc(1, sizeof *n);
    if (!n)
        return util_err(err, errlen, "out of memory");
    if (http_origin_from_config(url_key, json_string_value(url), &n->origin, err, errlen) != 0 ||
        http_base_init(&n->base, keys, env, config, err, errlen) != 0) {
        free(n);
        return -1;
    }
    *compiled = n;
    return 0;
}

void http_origin_node_free(void *compiled)
{
    http_origin_node *n = compiled;
    if (!n)
        return;
    http_base_clear(&n->base);
    http_url_memo_free(n->memo);
    free(n);
}

int http_base_check_inputs(const http_base *base, json_t *inputs, node_error *err)
{
    char msg[sizeof err->message];
    if (http_keys_check(base->keys, inputs, 0, msg, sizeof msg) != 0)
        return node_fail(err, "bad_request", "%s", msg);
    for (const http_key *k = base->keys; k->name; k++) {
        if (!k->pinned)
            continue;
        json_t *want = json_object_get(base->pinned, k->name);
        json_t *got = json_object_get(inputs, k->name);
        if (got && json_is_null(got))
            got = NULL;
        if ((want || got) && !(want && got && json_equal(want, got)))
            return node_fail(err, "bad_request", "%s: may not change at run time", k->name);
    }
    return 0;
}


/* ======================================================================== glue to the exchange */

/* The exchange ended: the call is the engine's again. */
static void http_call_done(void *ud, json_t *outputs, const node_error *err)
{
    node_call *call = ud;
    call->cancel = NULL;
    call->node_data = NULL;
    call->done(call, outputs, err);
}

/* node_call.cancel of every HTTP node: the exchange ends now, done with "cancelled". */
static void http_call_cancel(node_call *call)
{
    http_exchange *ex = call->node_data;
    if (ex)
        http_exchange_abort(ex); /* calls http_call_done */
}

int http_exchange_run(node_call *call, const http_limits *lim, const http_hooks *hooks, void *ud, http_build_fn build,
                      const void *compiled, node_error *err)
{
    http_exchange *ex = http_exchange_new(call->io, call->deadline_ms, lim, hooks, ud);
    if (!ex)
        return node_fail(err, "internal", "out of memory");
    if (build(compiled, call->inputs, http_exchange_request(ex), err) != 0 ||
        http_request_add_hops(http_exchange_request(ex), call->hops, err) != 0) {
        http_exchange_free(ex);
        return -1;
    }
    /* set first: done never runs inside http_exchange_start, and the engine may cancel from then on */
    call->node_data = ex;
    call->cancel = http_call_cancel;
    if (http_exchange_start(ex, http_call_done, call, err) != 0) {
        call->node_data = NULL;
        call->cancel = NULL;
        return -1;
    }
    return 0;
}

int http_origin_node_start(const void *compiled, node_call *call, const http_hooks *hooks, http_build_fn build,
                           node_error *err)
{
    const http_origin_node *n = compiled;
    if (http_base_check_inputs(&n->base, call->inputs, err) != 0)
        return -1;
    return http_exchange_run(call, &n->base.lim, hooks, NULL, build, n, err);
}

/* ======================================================================== outputs */

/* Sets o[key] = v (taken); -1 when v is NULL or the set fails. Built by hand rather than by
 * json_pack: this runs once per call, and the format parser was a tenth of the outputs' cost. */
static int http_put(json_t *o, const char *key, json_t *v)
{
    return v && json_object_set_new(o, key, v) == 0 ? 0 : -1;
}

/* The SDK's recovery_suggestions for a status that is not 2xx, word for word. */
json_t *http_recovery_suggestions(long status)
{
    static const char *const by_status[][4] = {
        {"401", "Check authentication credentials", "Verify API key or token is valid",
         "Ensure authentication method matches API requirements"},
        {"403", "Verify you have permission to access this resource", "Check API key permissions/scopes",
         "Ensure IP address is whitelisted if required"},
        {"404", "Verify the URL path is correct", "Check if resource ID exists",
         "Ensure API version in URL is correct"},
        {"429", "API rate limit exceeded - wait before retrying", "Implement rate limiting in your requests",
         "Check rate limit headers for reset time"},
        {"5xx", "Server error - retry after a delay", "Check API service status page",
         "Contact API support if issue persists"},
        {"", "Check API documentation for this status code", "Verify request format and parameters",
         "Review response body for error details"},
    };
    char code[8];
    snprintf(code, sizeof code, "%ld", status);
    size_t i = 0;
    while (by_status[i][0][0] && strcmp(by_status[i][0], status >= 500 ? "5xx" : code) != 0)
        i++;
    json_t *list = json_array();
    for (int k = 1; list && k < 4; k++)
        if (json_array_append_new(list, json_string(by_status[i][k])) != 0) {
            json_decref(list);
            list = NULL;
        }
    return list;
}

json_t *http_outputs_response(http_exchange *ex, const http_answer *a)
{
    (void)ex;
    json_t *response = json_object(), *out = json_object();
    json_t *ctype = http_header_get(a->headers, "Content-Type"); /* the SDK's headers.get("Content-Type", "") */
    int success = a->status_code >= 200 && a->status_code < 300;
    if (!response || !out || http_put(response, "status_code", json_integer(a->status_code)) != 0 ||
        http_put(response, "headers", json_incref(a->headers)) != 0 ||
        http_put(response, "content_type", json_is_string(ctype) ? json_incref(ctype) : json_string("")) != 0 ||
        http_put(response, "content", json_incref(a->content)) != 0 ||
        http_put(response, "response_time_ms", json_real(a->response_time_ms)) != 0 ||
        http_put(response, "url", json_string(a->url)) != 0 || http_put(out, "response", json_incref(response)) != 0 ||
        http_put(out, "status_code", json_integer(a->status_code)) != 0 ||
        http_put(out, "success", json_boolean(success)) != 0 ||
        (!success && http_put(out, "recovery_suggestions", http_recovery_suggestions(a->status_code)) != 0)) {
        json_decref(response);
        json_decref(out);
        return NULL;
    }
    json_decref(response);
    return out;
}

int http_has_response_output(const void *compiled, const char *port)
{
    (void)compiled;
    return strcmp(port, "response") == 0 || strcmp(port, "status_code") == 0 || strcmp(port, "success") == 0 ||
           strcmp(port, "recovery_suggestions") == 0;
}
