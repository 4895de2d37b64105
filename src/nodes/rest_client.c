/* RESTClientNode: a REST call built from base_url + version + resource, where `{name}` slots of the
 * resource are filled from path_params (each value percent-encoded as one path segment), plus
 * query_params and a JSON `data` body. Outputs as the SDK's node (kailash/nodes/api/rest.py):
 *   2xx:  {"data", "status_code", "success": true, "metadata": {url (as built, before query_params),
 *         method, response_time_ms, headers, and rate_limit / pagination / links when found
 *         (rest_meta.c)}}
 *   else: {"data": null, "status_code", "success": false, "metadata": {}, "error": "<the body's
 *         message> (status: N)", "error_type": "APIError", "recovery_suggestions"}
 *
 * base_url follows HTTPRequestNode's origin rule. A path parameter can't climb out of its segment:
 * '/' is encoded, and "", "." and ".." are refused (curl would otherwise resolve dot segments).
 * The answer is read as the SDK's node reads it (response_format "json", whose failure falls back
 * to the text): JSON when it parses, whatever its Content-Type, else text; a non-JSON error page
 * from a proxy is then still an answer (success false) rather than a failed node. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "http_common.h"
#include "kailash/util.h"
#include "rest_meta.h"

#define REST_KEYS(X)                                                                                                   \
    X("base_url", HTTP_K_STRING, NULL, 0)                                                                              \
    X("resource", HTTP_K_STRING, NULL, 0)                                                                              \
    X("version", HTTP_K_STRING, NULL, 0)                                                                               \
    X("path_params", HTTP_K_FIELDS, NULL, 0)                                                                           \
    X("query_params", HTTP_K_QUERY, NULL, 0)                                                                           \
    X("data", HTTP_K_ANY, NULL, 0)                                                                                     \
    HTTP_KEYS_COMMON(X)

static const http_key rest_keys[] = {REST_KEYS(HTTP_KEY_ROW){NULL, 0, NULL, 0}};
static const char *const rest_key_names[] = {REST_KEYS(HTTP_KEY_NAME) NULL};
static const char *const rest_pinned[] = {"base_url", "resource", "version", HTTP_PINNED_COMMON, NULL};

static int rest_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    return http_origin_node_compile(rest_keys, "base_url", "config.base_url: required, a string", env, config, compiled,
                                    err, errlen);
}

/* Appends one path parameter, percent-encoded, as the text of a `{name}` slot. */
static int rest_path_param(buf *b, json_t *path_params, const char *name, node_error *err)
{
    json_t *v = json_object_get(path_params, name);
    if (!v || json_is_null(v))
        return node_fail(err, "bad_request", "path_params.%s: missing for the resource", name);
    char *text = http_scalar_text(v);
    if (!text)
        return node_fail(err, "bad_request", "path_params.%s: expected a string, number or boolean", name);
    int dots = !*text || strcmp(text, ".") == 0 || strcmp(text, "..") == 0;
    char *esc = dots ? NULL : curl_easy_escape(NULL, text, (int)strlen(text));
    free(text);
    if (dots)
        return node_fail(err, "bad_request", "path_params.%s: may not be empty, '.' or '..'", name);
    int rc = esc ? buf_appendf(b, "%s", esc) : -1;
    curl_free(esc);
    return rc == 0 ? 0 : node_fail(err, "internal", "out of memory building the URL");
}

/* The resource with its `{name}` slots filled. Braces around anything but a name stay as they are. */
static int rest_resource(buf *b, const char *res, json_t *path_params, node_error *err)
{
    while (*res) {
        size_t len = 0;
        if (*res == '{')
            while (isalnum((unsigned char)res[1 + len]) || res[1 + len] == '_' || res[1 + len] == '-')
                len++;
        if (len && len < 128 && res[1 + len] == '}') {
            char name[128];
            memcpy(name, res + 1, len);
            name[len] = '\0';
            if (rest_path_param(b, path_params, name, err) != 0)
                return -1;
            res += len + 2;
            continue;
        }
        if (buf_append(b, res++, 1) != 0)
            return node_fail(err, "internal", "out of memory building the URL");
    }
    return 0;
}

static const char *rest_str(json_t *in, const char *key)
{
    json_t *v = json_object_get(in, key);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* base_url without trailing '/', then /version, then /resource. */
static int rest_url_text(json_t *in, buf *b, node_error *err)
{
    json_t *base = json_object_get(in, "base_url");
    if (!json_is_string(base))
        return node_fail(err, "internal", "base_url: expected a string");
    const char *s = json_string_value(base), *version = rest_str(in, "version"), *res = rest_str(in, "resource");
    size_t n = strlen(s), vn;
    while (n && s[n - 1] == '/')
        n--;
    while (*version == '/')
        version++;
    for (vn = strlen(version); vn && version[vn - 1] == '/';)
        vn--;
    while (*res == '/')
        res++;
    int rc = buf_append(b, s, n);
    if (rc == 0 && vn)
        rc = buf_appendf(b, "/%.*s", (int)vn, version);
    if (rc == 0)
        rc = buf_append(b, "/", 1);
    if (rc != 0)
        return node_fail(err, "internal", "out of memory building the URL");
    if (rest_resource(b, res, json_object_get(in, "path_params"), err) != 0)
        return -1;
    return buf_terminate(b) == 0 ? 0 : node_fail(err, "internal", "out of memory building the URL");
}

/* `data`: a string is sent as it is, anything else as JSON; both are labelled JSON (the SDK's way). */
static int rest_body(http_request *r, json_t *data, node_error *err)
{
    if (!json_is_string(data))
        return http_request_body_json(r, data, err);
    if (http_request_body_data(r, data, err) != 0)
        return -1;
    r->body_type = "application/json";
    return 0;
}

/* One call's own state (the exchange's ud): the URL the SDK reports as metadata.url. */
typedef struct rest_call {
    char *meta_url; /* owned: base_url/version/resource without query_params or credentials */
} rest_call;

static void rest_call_free(void *ud)
{
    rest_call *c = ud;
    free(c->meta_url);
    free(c);
}

/* What rest_build gets as its `compiled`: the node's, and the call's state to fill. */
typedef struct rest_build_ctx {
    const http_origin_node *node;
    rest_call *call;
} rest_build_ctx;

/* The request from the final inputs; the call's metadata.url on the way. */
static int rest_build(const void *ctx_, json_t *in, http_request *r, node_error *err)
{
    const rest_build_ctx *ctx = ctx_;
    buf url = {0};
    int rc = rest_url_text(in, &url, err);
    if (rc == 0)
        rc = http_url_parse("base_url", url.data, &ctx->node->origin, &r->url, err);
    buf_free(&url);
    if (rc != 0)
        return -1;
    /* the SDK's metadata.url is the URL it built, before requests adds query_params */
    if (!(ctx->call->meta_url = http_url_public(r->url)))
        return node_fail(err, "internal", "out of memory building the URL");
    if (http_url_add_query(r->url, "query_params", json_object_get(in, "query_params"), err) != 0 ||
        http_request_options(r, in, HTTP_FMT_JSON_OR_TEXT, err) != 0 ||
        rest_body(r, json_object_get(in, "data"), err) != 0)
        return -1;
    return http_request_headers(r, in, "application/json", err);
}

/* Sets o[key] = v (taken); -1 when v is NULL or the set fails. */
static int rest_put(json_t *o, const char *key, json_t *v)
{
    return v && json_object_set_new(o, key, v) == 0 ? 0 : -1;
}

/* The SDK's answer to a status that is not 2xx: no data, no metadata, the error text it draws from
 * the body, and HTTPRequestNode's recovery_suggestions. */
static json_t *rest_error_outputs(const http_answer *a)
{
    /* in the SDK's order: its output schema's ports (data, status_code, success, metadata) first */
    json_t *out = json_object();
    if (!out || rest_put(out, "data", json_null()) != 0 ||
        rest_put(out, "status_code", json_integer(a->status_code)) != 0 ||
        rest_put(out, "success", json_false()) != 0 || rest_put(out, "metadata", json_object()) != 0 ||
        rest_put(out, "error", rest_meta_error(a->content, a->status_code)) != 0 ||
        rest_put(out, "error_type", json_string("APIError")) != 0 ||
        rest_put(out, "recovery_suggestions", http_recovery_suggestions(a->status_code)) != 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* metadata of a 2xx answer: url, method, response_time_ms, headers, then what rest_meta finds. */
static json_t *rest_metadata(const rest_call *c, const http_answer *a)
{
    json_t *meta = json_object();
    if (!meta || rest_put(meta, "url", json_string(c->meta_url ? c->meta_url : a->url)) != 0 ||
        rest_put(meta, "method", json_string(a->method)) != 0 ||
        rest_put(meta, "response_time_ms", json_real(a->response_time_ms)) != 0 ||
        rest_put(meta, "headers", json_incref(a->headers)) != 0 ||
        rest_meta_extract(meta, a->headers, a->content) != 0) {
        json_decref(meta);
        return NULL;
    }
    return meta;
}

static json_t *rest_outputs(http_exchange *ex, const http_answer *a)
{
    if (a->status_code < 200 || a->status_code >= 300)
        return rest_error_outputs(a);
    json_t *out = json_object();
    if (!out || rest_put(out, "data", json_incref(a->content)) != 0 ||
        rest_put(out, "status_code", json_integer(a->status_code)) != 0 || rest_put(out, "success", json_true()) != 0 ||
        rest_put(out, "metadata", rest_metadata(http_exchange_ud(ex), a)) != 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

static const http_hooks rest_hooks = {.outputs = rest_outputs, .free_ud = rest_call_free};

static int rest_start(const void *compiled, node_call *call, node_error *err)
{
    const http_origin_node *n = compiled;
    if (http_base_check_inputs(&n->base, call->inputs, err) != 0)
        return -1;
    rest_call *c = calloc(1, sizeof *c);
    if (!c)
        return node_fail(err, "internal", "out of memory");
    rest_build_ctx ctx = {n, c};
    return http_exchange_run(call, &n->base.lim, &rest_hooks, c, rest_build, &ctx, err);
}

static int rest_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    return strcmp(port, "data") == 0 || strcmp(port, "status_code") == 0 || strcmp(port, "success") == 0 ||
           strcmp(port, "metadata") == 0 || strcmp(port, "error") == 0 || strcmp(port, "error_type") == 0 ||
           strcmp(port, "recovery_suggestions") == 0;
}

/* The SDK's RESTClientNode pagination, which kailashd does not have. */
static const node_sdk_default rest_sdk_defaults[] = {
    {"paginate", "false"},
    {"pagination_params", "null"},
    {NULL, NULL},
};

const node_type node_rest_client = {
    .name = "RESTClientNode",
    .config_keys = rest_key_names,
    .sdk_defaults = rest_sdk_defaults,
    .pinned_keys = rest_pinned,
    .input_ports = rest_key_names,
    .compile = rest_compile,
    .has_output = rest_has_output,
    .run = NULL,
    .start = rest_start,
    .free = http_origin_node_free,
};
