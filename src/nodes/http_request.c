/* HTTPRequestNode: one HTTP call to `url`, with the SDK's parameters (method, headers, params,
 * json_data or data, response_format, timeout, retry_count, retry_backoff, auth_*), run on the
 * I/O loop. Outputs {"response": {status_code, headers, content, response_time_ms, url},
 * "status_code", "success"}.
 *
 * compile() fixes where the node may connect: the scheme, host and port of the config's url (or of
 * its literal text before the first template). start() builds the request from the final inputs,
 * and refuses a url whose origin differs, whichever way it was changed (template, connection or
 * request parameter). Everything else is http_common's. */
#include <stdlib.h>
#include <string.h>

#include "http_common.h"
#include "kailash/util.h"

typedef struct http_request_node {
    http_base base;
    http_origin origin; /* where url must point */
} http_request_node;

static const http_key http_request_keys[] = {HTTP_KEYS_REQUEST(HTTP_KEY_ROW){NULL, 0, NULL, 0}};
static const char *const http_request_key_names[] = {HTTP_KEYS_REQUEST(HTTP_KEY_NAME) NULL};

static void http_request_free(void *compiled)
{
    http_request_node *n = compiled;
    if (!n)
        return;
    http_base_clear(&n->base);
    free(n);
}

static int http_request_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    if (http_keys_check(http_request_keys, config, 1, err, errlen) != 0)
        return -1;
    json_t *url = json_object_get(config, "url");
    if (!json_is_string(url))
        return util_err(err, errlen, "config.url: required, a string (templates may fill its path and query)");
    http_request_node *n = calloc(1, sizeof *n);
    if (!n)
        return util_err(err, errlen, "out of memory");
    if (http_origin_from_config("url", json_string_value(url), &n->origin, err, errlen) != 0 ||
        http_base_init(&n->base, http_request_keys, env, config, err, errlen) != 0) {
        free(n);
        return -1;
    }
    *compiled = n;
    return 0;
}

static json_t *http_request_outputs(http_exchange *ex, const http_answer *a)
{
    (void)ex;
    return http_outputs_response(a);
}

static const http_hooks http_request_hooks = {.outputs = http_request_outputs};

/* The request from the final inputs: json_data wins over data, as in the SDK. */
static int http_request_build(const http_request_node *n, json_t *in, http_request *r, node_error *err)
{
    json_t *url = json_object_get(in, "url");
    if (!json_is_string(url))
        return node_fail(err, "internal", "url: expected a string");
    if (http_url_parse("url", json_string_value(url), &n->origin, &r->url, err) != 0 ||
        http_url_add_query(r->url, "params", json_object_get(in, "params"), err) != 0 ||
        http_request_options(r, in, HTTP_FMT_AUTO, err) != 0)
        return -1;
    json_t *json_data = json_object_get(in, "json_data");
    int rc = json_data && !json_is_null(json_data) ? http_request_body_json(r, json_data, err)
                                                   : http_request_body_data(r, json_object_get(in, "data"), err);
    if (rc != 0)
        return -1;
    return http_request_headers(r, in, NULL, err);
}

static int http_request_start(const void *compiled, node_call *call, node_error *err)
{
    const http_request_node *n = compiled;
    if (http_base_check_inputs(&n->base, call->inputs, err) != 0)
        return -1;
    http_exchange *ex = http_exchange_new(call, &n->base.lim, &http_request_hooks, NULL);
    if (!ex)
        return node_fail(err, "internal", "out of memory");
    if (http_request_build(n, call->inputs, http_exchange_request(ex), err) != 0) {
        http_exchange_free(ex);
        return -1;
    }
    return http_exchange_start(ex, err);
}

const node_type node_http_request = {
    .name = "HTTPRequestNode",
    .config_keys = http_request_key_names,
    .input_ports = http_request_key_names,
    .compile = http_request_compile,
    .has_output = http_has_response_output,
    .run = NULL,
    .start = http_request_start,
    .free = http_request_free,
};
