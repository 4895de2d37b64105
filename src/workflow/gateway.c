/* gateway: the workflow file's `gateway` block (what only a gateway needs) and the normalised views
 * served by GET /workflows and GET /workflows/{name}.
 *
 * Blocks for features this build does not have yet (trigger) are refused with a
 * message saying so; `access` is compiled by access.c. */
#include <stdlib.h>
#include <string.h>

#include "kailash/cache.h"

#include "kailash/log.h"
#include "loader_internal.h"

static int int_in(json_t *v, long long lo, long long hi)
{
    return json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi;
}

static void load_inputs(ld *l, json_t *def)
{
    char err[512];
    if (!json_is_object(def)) {
        ld_problem(l, NULL, "gateway.inputs: expected a JSON Schema object");
        return;
    }
    if (schema_compile(def, &l->wf->inputs_schema, err, sizeof err) != 0)
        ld_problem(l, NULL, "gateway.inputs: %s", err);
}

static void load_output(ld *l, wf_output *o, const char *name, json_t *ref)
{
    const char *s = json_string_value(ref);
    const char *dot = s ? strchr(s, '.') : NULL;
    if (!dot || dot == s || !dot[1]) {
        ld_problem(l, NULL, "gateway.outputs.%s: expected \"node.port[.path]\"", name);
        return;
    }
    char *node = strndup(s, (size_t)(dot - s));
    long idx = workflow_node_index(l->wf, node);
    const char *port = dot + 1, *rest = strchr(port, '.');
    o->name = strdup(name);
    o->port = rest ? strndup(port, (size_t)(rest - port)) : strdup(port);
    o->path = rest && rest[1] ? strdup(rest + 1) : NULL;
    if (idx < 0) {
        ld_problem(l, NULL, "gateway.outputs.%s: unknown node '%s'", name, node);
    } else {
        o->node = (size_t)idx;
        const wf_node *n = &l->wf->nodes[idx];
        if (!wf_node_has_output(n, o->port))
            ld_problem(l, NULL, "gateway.outputs.%s: %s '%s' has no output port '%s'", name, n->type->name, node,
                       o->port);
    }
    free(node);
}

static void load_outputs(ld *l, json_t *outs)
{
    if (!json_is_object(outs)) {
        ld_problem(l, NULL, "gateway.outputs: expected an object of name -> \"node.port[.path]\"");
        return;
    }
    l->wf->outputs = calloc(json_object_size(outs) + 1, sizeof *l->wf->outputs);
    const char *k;
    json_t *v;
    json_object_foreach(outs, k, v) load_output(l, &l->wf->outputs[l->wf->noutputs++], k, v);
}

static void load_executor(ld *l, json_t *ex)
{
    const char *k;
    json_t *v;
    if (!json_is_object(ex)) {
        ld_problem(l, NULL, "gateway.executor: expected an object");
        return;
    }
    json_object_foreach(ex, k, v)
    {
        if (strcmp(k, "max_concurrency") == 0 && int_in(v, 1, 100000))
            l->wf->max_concurrency = (int)json_integer_value(v);
        else if (strcmp(k, "max_queue") == 0 && int_in(v, 0, 1000000))
            l->wf->max_queue = (int)json_integer_value(v);
        else if (strcmp(k, "max_concurrency") == 0 || strcmp(k, "max_queue") == 0)
            ld_problem(l, NULL, "gateway.executor.%s: expected an integer %s", k,
                       k[4] == 'c' ? "1..100000" : "0..1000000");
        else
            ld_problem(l, NULL, "gateway.executor: unknown key '%s'", k);
    }
}

/* gateway.config_overrides: {node_id: {key: value}}, applied to the nodes' configs at compile
 * (loader.c); here only its shape and its node ids. */
static void load_overrides(ld *l, json_t *ov)
{
    const char *id;
    json_t *v;
    if (!json_is_object(ov)) {
        ld_problem(l, NULL, "gateway.config_overrides: expected an object {node_id: {key: value}}");
        return;
    }
    json_object_foreach(ov, id, v)
    {
        if (workflow_node_index(l->wf, id) < 0)
            ld_problem(l, NULL, "gateway.config_overrides.%s: no such node", id);
        else if (!json_is_object(v))
            ld_problem(l, NULL, "gateway.config_overrides.%s: expected an object {key: value}", id);
    }
}

/* gateway.cache: {"ttl_s": N, "scope": "global" | "principal" | "tenant", "tenant_attribute": NAME}
 * (false or null: not cached). ttl_s defaults to cache.default_ttl_s; scope to principal when
 * authentication is on (one caller's answer must never reach another), else global. */
static int cache_key_load(ld *l, const char *k, json_t *v, int *scope)
{
    const char *s = json_string_value(v);
    if (strcmp(k, "ttl_s") == 0 && int_in(v, 1, 31536000))
        l->wf->cache_ttl_s = (int)json_integer_value(v);
    else if (strcmp(k, "scope") == 0 && s && strcmp(s, "global") == 0)
        *scope = WF_CACHE_GLOBAL;
    else if (strcmp(k, "scope") == 0 && s && strcmp(s, "principal") == 0)
        *scope = WF_CACHE_PRINCIPAL;
    else if (strcmp(k, "scope") == 0 && s && strcmp(s, "tenant") == 0)
        *scope = WF_CACHE_TENANT;
    else if (strcmp(k, "tenant_attribute") == 0 && s && *s)
        return (l->wf->cache_tenant = strdup(s)) ? 0 : -1;
    else
        return -1;
    return 0;
}

static void load_cache(ld *l, json_t *v)
{
    const char *k;
    json_t *x;
    if (json_is_false(v) || json_is_null(v))
        return;
    if (!json_is_object(v)) {
        ld_problem(l, NULL, "gateway.cache: expected {\"ttl_s\": N, \"scope\": \"global\"|\"principal\"|\"tenant\"}, "
                            "or false");
        return;
    }
    int scope = l->env->cfg->enable_auth ? WF_CACHE_PRINCIPAL : WF_CACHE_GLOBAL;
    l->wf->cache_ttl_s = l->env->cfg->cache_default_ttl_s;
    json_object_foreach(v, k, x)
    {
        if (cache_key_load(l, k, x, &scope) != 0) {
            ld_problem(l, NULL, "gateway.cache.%s: expected ttl_s (an integer 1..31536000), scope (\"global\", "
                                "\"principal\" or \"tenant\") or tenant_attribute (a name)", k);
            return;
        }
    }
    l->wf->cache_scope = scope;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a of the name: L1 tags its entries with it */
    for (const char *p = l->wf->name; p && *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    l->wf->cache_tag = h;
    if (scope == WF_CACHE_TENANT && !l->wf->cache_tenant && !(l->wf->cache_tenant = strdup("tenant")))
        ld_problem(l, NULL, "out of memory");
}

/* gateway.rate_limit: {"requests_per_minute": N, "burst": B}, a second, narrower limit per principal
 * for this workflow (API.md "Rate limiting", policy "workflow"). */
static void load_rate_limit(ld *l, json_t *v)
{
    const char *k;
    json_t *x;
    if (!json_is_object(v) || !json_object_get(v, "requests_per_minute")) {
        ld_problem(l, NULL, "gateway.rate_limit: expected {\"requests_per_minute\": N, \"burst\": B}");
        return;
    }
    json_object_foreach(v, k, x)
    {
        int known = strcmp(k, "requests_per_minute") == 0 || strcmp(k, "burst") == 0;
        if (!known || !int_in(x, 1, 1000000000)) {
            ld_problem(l, NULL, "gateway.rate_limit.%s: expected requests_per_minute or burst, an integer "
                                "1..1000000000", k);
            return;
        }
        if (k[0] == 'r')
            l->wf->rate_per_minute = (int)json_integer_value(x);
        else
            l->wf->rate_burst = (int)json_integer_value(x);
    }
}

static void load_key(ld *l, const char *k, json_t *v)
{
    if (strcmp(k, "inputs") == 0)
        load_inputs(l, v);
    else if (strcmp(k, "outputs") == 0)
        load_outputs(l, v);
    else if (strcmp(k, "executor") == 0)
        load_executor(l, v);
    else if (strcmp(k, "access") == 0)
        ld_load_access(l, v);
    else if (strcmp(k, "overridable") == 0)
        ld_load_overridable(l, v);
    else if (strcmp(k, "config_overrides") == 0)
        load_overrides(l, v);
    else if (strcmp(k, "timeout_ms") == 0 && int_in(v, 1, 3600000))
        l->wf->timeout_ms = (int)json_integer_value(v);
    else if (strcmp(k, "timeout_ms") == 0)
        ld_problem(l, NULL, "gateway.timeout_ms: expected an integer 1..3600000");
    else if (strcmp(k, "cache") == 0)
        load_cache(l, v);
    else if (strcmp(k, "rate_limit") == 0)
        load_rate_limit(l, v);
    else if (strcmp(k, "trigger") == 0)
        ld_problem(l, NULL, "gateway.trigger: triggers are not implemented yet");
    else
        ld_problem(l, NULL, "gateway: unknown key '%s'", k);
}

void ld_load_gateway(ld *l, json_t *gw)
{
    const kconfig *cfg = l->env->cfg;
    l->wf->timeout_ms = cfg->request_timeout_ms;
    l->wf->max_concurrency = cfg->exec_max_concurrency;
    l->wf->max_queue = cfg->exec_max_queue;
    if (!gw || json_is_null(gw))
        return;
    if (!json_is_object(gw)) {
        ld_problem(l, NULL, "gateway: expected an object");
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(gw, k, v) load_key(l, k, v);
}

static json_t *gateway_view(const workflow *wf, json_t *gw)
{
    json_t *inputs = json_object_get(gw, "inputs");
    json_t *outputs = json_object_get(gw, "outputs");
    static const char *const scopes[] = {"global", "principal", "tenant"};
    json_t *cache = wf->cache_ttl_s ? json_pack("{s:i,s:s}", "ttl_s", wf->cache_ttl_s, "scope", scopes[wf->cache_scope])
                                    : json_false();
    if (cache && wf->cache_scope == WF_CACHE_TENANT)
        json_object_set_new(cache, "tenant_attribute", json_string(wf->cache_tenant));
    json_t *v = json_pack("{s:O,s:O,s:o,s:{s:i,s:i},s:i}", "inputs", inputs ? inputs : json_null(), "outputs",
                          outputs ? outputs : json_null(), "cache", cache, "executor", "max_concurrency",
                          wf->max_concurrency, "max_queue", wf->max_queue, "timeout_ms", wf->timeout_ms);
    json_t *acc = json_object_get(gw, "access"), *ov = json_object_get(gw, "overridable");
    json_t *co = json_object_get(gw, "config_overrides");
    if (v && wf->rate_per_minute)
        json_object_set_new(v, "rate_limit", json_pack("{s:i,s:i}", "requests_per_minute", wf->rate_per_minute, "burst",
                                                       wf->rate_burst ? wf->rate_burst : wf->rate_per_minute));
    if (v && acc)
        json_object_set(v, "access", acc);
    if (v && ov)
        json_object_set(v, "overridable", ov);
    if (v && co)
        json_object_set(v, "config_overrides", co);
    return v;
}

void ld_build_views(ld *l, json_t *nodes, json_t *conns, json_t *gw)
{
    workflow *wf = l->wf;
    json_t *inputs = json_object_get(gw, "inputs");
    wf->normalized = json_pack("{s:s,s:s,s:s,s:O,s:O,s:o}", "name", wf->name, "version", wf->version, "description",
                               wf->description, "nodes", nodes, "connections", conns, "gateway", gateway_view(wf, gw));
    json_t *in = inputs ? json_incref(inputs) : json_object();
    wf->summary = json_pack("{s:s,s:s,s:s,s:o,s:o,s:I}", "name", wf->name, "version", wf->version, "description",
                            wf->description, "inputs", in, "cache_ttl_s",
                            wf->cache_ttl_s ? json_integer(wf->cache_ttl_s) : json_null(), "nodes",
                            (json_int_t)wf->nnodes);
    if (!wf->normalized || !wf->summary || cache_def_hash(wf->normalized, wf->def_hash) != 0)
        ld_problem(l, NULL, "out of memory building the workflow's description");
}
