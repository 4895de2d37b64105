/* HTTPRequestNode: one HTTP call to `url`, with the SDK's parameters (method, headers, params,
 * json_data or data, response_format, timeout, retry_count, retry_backoff, auth_*), run on the
 * I/O loop. Outputs {"response": {status_code, headers, content_type, content, response_time_ms, url},
 * "status_code", "success"}, plus the SDK's "recovery_suggestions" on a status that is not 2xx.
 *
 * compile() fixes where the node may connect: the scheme, host and port of the config's url (or of
 * its literal text before the first template). start() builds the request from the final inputs,
 * and refuses a url whose origin differs, whichever way it was changed (template, connection or
 * request parameter). Everything else is http_common's. */
#include "http_common.h"

static const http_key http_request_keys[] = {HTTP_KEYS_REQUEST(HTTP_KEY_ROW){NULL, 0, NULL, 0}};
static const char *const http_request_key_names[] = {HTTP_KEYS_REQUEST(HTTP_KEY_NAME) NULL};
static const char *const http_request_pinned[] = {"url", HTTP_PINNED_COMMON, NULL};

static int http_request_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    if (http_origin_node_compile(http_request_keys, "url",
                                 "config.url: required, a string (templates may fill its path and query)", env, config,
                                 compiled, err, errlen) != 0)
        return -1;
    http_origin_node *n = *compiled;
    n->memo = http_url_memo_new(json_string_value(json_object_get(config, "url")), &n->origin); /* NULL: none */
    return 0;
}

static const http_hooks http_request_hooks = {.outputs = http_outputs_response};

/* The request from the final inputs: url with params, then the rest (json_data wins over data). */
static int http_request_build(const void *compiled, json_t *in, http_request *r, node_error *err)
{
    const http_origin_node *n = compiled;
    json_t *url = json_object_get(in, "url");
    if (!json_is_string(url))
        return node_fail(err, "internal", "url: expected a string");
    json_t *params = json_object_get(in, "params");
    int as_is = !params || json_is_null(params) || (json_is_object(params) && json_object_size(params) == 0);
    /* as_is: nothing to add, so the config's literal URL may stand (SDK exports often carry "params": {}) */
    if (!(as_is && http_request_use_memo(r, n->memo, json_string_value(url))) &&
        (http_url_parse("url", json_string_value(url), &n->origin, &r->url, err) != 0 ||
         http_url_add_query(r->url, "params", params, err) != 0))
        return -1;
    return http_request_fill(r, in, err);
}

static int http_request_start(const void *compiled, node_call *call, node_error *err)
{
    return http_origin_node_start(compiled, call, &http_request_hooks, http_request_build, err);
}

/* The SDK's HTTPRequestNode parameters kailashd has no feature for (a pause before each call, the
 * SDK's own request log). */
static const node_sdk_default http_request_sdk_defaults[] = {
    {"rate_limit_delay", "0"},
    {"log_requests", "false"},
    {NULL, NULL},
};

const node_type node_http_request = {
    .name = "HTTPRequestNode",
    .config_keys = http_request_key_names,
    .sdk_defaults = http_request_sdk_defaults,
    .input_ports = http_request_key_names,
    .pinned_keys = http_request_pinned,
    .compile = http_request_compile,
    .has_output = http_has_response_output,
    .run = NULL,
    .start = http_request_start,
    .free = http_origin_node_free,
};
