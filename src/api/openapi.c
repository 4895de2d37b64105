/* openapi: GET /openapi.json, an OpenAPI 3.1.0 document of the API this build serves (API.md): every
 * route of the router's table (openapi_paths.c), one concrete /workflows/<name>/run and /execute path
 * per loaded workflow whose request body carries that workflow's inputs schema as its file wrote it
 * (JSON Schema 2020-12, the dialect OpenAPI 3.1 uses), the one Error schema on every error response
 * (openapi_components.c), and the security schemes of the credentials configured, only while
 * authentication is on.
 *
 * It is not a hot path: the document is built as a jansson tree and dumped once, then kept as bytes
 * with the key it was built for (the auth methods, /metrics' config, and every workflow's definition
 * hash, which covers its name, description, inputs and access). A request compares the key, which costs a walk of the
 * registry and no allocation of the tree, and copies the bytes; a reload that changes a workflow or
 * the auth config changes the key, and the next request rebuilds. The key holds no pointer, so a new
 * registry that happens to reuse a freed one's address still rebuilds. Building happens under a
 * mutex on the loop thread that asked (a few milliseconds for hundreds of workflows, once per
 * change), so concurrent first requests build it once. */
#include <pthread.h>
#include <string.h>

#include "kailash/api.h"
#include "kailash/auth.h"
#include "kailash/engine.h"
#include "openapi_internal.h"

#define OA_DESCRIPTION                                                                                              \
    "kailashd, an HTTP API gateway for Kailash SDK workflows. Every error answer has the Error shape. A "          \
    "method a path does not list answers 405 method_not_allowed with Allow (components/responses/"                \
    "MethodNotAllowed), an unknown path 404. Checks run in this order: route (404, 405), authentication and "     \
    "authorization (401, 403), rate limit (429), size and media type (413, 415), then the body (400). Each "      \
    "loaded workflow has its own /workflows/<name>/run and /execute paths with its inputs schema."

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static buf g_key_locked, g_doc_locked; /* the last document built and what it was built for */

static oa_ctx oa_ctx_of(int auth_methods, const kconfig *cfg)
{
    int monitoring = cfg ? cfg->enable_monitoring : 1;
    return (oa_ctx){.auth_methods = auth_methods,
                    .monitoring = monitoring,
                    .metrics_auth = monitoring && cfg && cfg->metrics_auth};
}

json_t *api_openapi_document(const registry *reg, int auth_methods, const kconfig *cfg)
{
    oa_ctx c = oa_ctx_of(auth_methods, cfg);
    json_t *components = openapi_components(), *paths = openapi_paths(reg, &c);
    json_t *schemes = openapi_security_schemes(&c), *doc = NULL;
    if (!components || !paths || !schemes)
        goto out;
    if (json_object_size(schemes) && json_object_set(components, "securitySchemes", schemes) != 0)
        goto out;
    doc = json_pack("{s:s,s:{s:s,s:s,s:s},s:O,s:O}", "openapi", "3.1.0", "info", "title", "kailashd", "version",
                    KAILASH_VERSION, "description", OA_DESCRIPTION, "paths", paths, "components", components);
out:
    json_decref(components);
    json_decref(paths);
    json_decref(schemes);
    return doc;
}

/* What the document depends on: the auth methods, /metrics' config, then each workflow's definition
 * hash in name order. */
static int oa_key(buf *key, const registry *reg, int auth_methods, const kconfig *cfg)
{
    oa_ctx c = oa_ctx_of(auth_methods, cfg);
    if (buf_appendf(key, "%d;%d;%d;", c.auth_methods, c.monitoring, c.metrics_auth) != 0)
        return -1;
    for (size_t i = 0; reg && i < registry_count(reg); i++)
        if (buf_append(key, exec_workflow(registry_at(reg, i))->def_hash, 32) != 0)
            return -1;
    return 0;
}

/* Rebuilds the cached document for key (taken) unless it is the one held; 0, or -1 out of memory
 * (the old one stays). Under g_lock. */
static int oa_refresh_locked(buf *key, const registry *reg, int auth_methods, const kconfig *cfg)
{
    if (g_doc_locked.len && key->len == g_key_locked.len && memcmp(key->data, g_key_locked.data, key->len) == 0)
        return 0;
    json_t *doc = api_openapi_document(reg, auth_methods, cfg);
    buf text = {0};
    int rc = doc && buf_append_json(&text, doc) == 0 && buf_terminate(&text) == 0 ? 0 : -1;
    json_decref(doc);
    if (rc != 0) {
        buf_free(&text);
        return -1;
    }
    buf_free(&g_doc_locked);
    buf_free(&g_key_locked);
    g_doc_locked = text;
    g_key_locked = *key;
    *key = (buf){0};
    return 0;
}

int api_openapi(kreq *r)
{
    registry *reg = registry_acquire();
    int methods = auth_ctx_methods(auth_ctx_current());
    const kconfig *cfg = http_server_config();
    buf key = {0}, out = {0};
    int rc = oa_key(&key, reg, methods, cfg);
    pthread_mutex_lock(&g_lock);
    if (rc == 0)
        rc = oa_refresh_locked(&key, reg, methods, cfg);
    if (rc == 0 && (buf_append(&out, g_doc_locked.data, g_doc_locked.len) != 0 || buf_terminate(&out) != 0))
        buf_free(&out);
    pthread_mutex_unlock(&g_lock);
    registry_release(reg);
    buf_free(&key);
    http_reply_buf(r, 200, &out); /* an empty out answers 500 "out of memory" */
    buf_free(&out);
    return HTTP_DONE;
}
