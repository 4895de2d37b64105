/* loader: one workflow file -> one compiled `workflow`.
 *
 * Every accepted shape (WORKFLOWS.md) is first normalised: nodes become an ordered list of
 * {id, type, config}, connections {source_node, source_output, target_node, target_input}. Then each
 * node's config is checked and compiled (secrets from {"$env": NAME}, templates, the node type's own
 * compile), connections are resolved to indices and ports, the gateway block is read, and graph.c
 * orders the nodes. Problems are collected rather than stopping at the first, so `kailashd --check`
 * can list every one with file, node and key. */
#include "kailash/workflow.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/log.h"
#include "kailash/util.h"
#include "loader_internal.h"

#define WF_MAX_FILE (4u << 20)

void ld_problem(ld *l, const char *node, const char *fmt, ...)
{
    char msg[768], line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (node)
        snprintf(line, sizeof line, "%s: node '%s': %s", l->file, node, msg);
    else
        snprintf(line, sizeof line, "%s: %s", l->file, msg);
    json_array_append_new(l->problems, json_string(line));
    l->failed = 1;
}

int ld_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-'))
            return 0;
    }
    return 1;
}

/* ---- normalisation ---------------------------------------------------------------------------- */

static const char *str_of(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);
    if (!v && b)
        v = json_object_get(o, b);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* One node entry (from either shape) -> {"id","type","config"} appended to list. */
static void norm_node(ld *l, const char *id, json_t *e, json_t *list)
{
    if (!json_is_object(e)) {
        ld_problem(l, id, "expected an object with node_type and config");
        return;
    }
    const char *type = str_of(e, "node_type", "type");
    json_t *cfg = json_object_get(e, "config");
    if (!cfg)
        cfg = json_object_get(e, "parameters");
    if (!type) {
        ld_problem(l, id, "node_type: expected a string");
        return;
    }
    if (cfg && !json_is_object(cfg)) {
        ld_problem(l, id, "config: expected an object");
        return;
    }
    const char *nid = str_of(e, "node_id", NULL);
    if (nid && strcmp(nid, id) != 0)
        ld_problem(l, id, "node_id '%s' differs from its key", nid);
    json_t *c = cfg ? json_incref(cfg) : json_object();
    json_array_append_new(list, json_pack("{s:s,s:s,s:o}", "id", id, "type", type, "config", c));
}

static json_t *norm_nodes(ld *l, json_t *nodes)
{
    json_t *list = json_array();
    if (json_is_object(nodes)) {
        const char *id;
        json_t *e;
        json_object_foreach(nodes, id, e) norm_node(l, id, e, list);
    } else if (json_is_array(nodes)) {
        size_t i;
        json_t *e;
        json_array_foreach(nodes, i, e)
        {
            const char *id = json_is_object(e) ? str_of(e, "id", "node_id") : NULL;
            if (!id) {
                ld_problem(l, NULL, "nodes[%zu]: expected an object with a string \"id\"", i);
                continue;
            }
            norm_node(l, id, e, list);
        }
    } else {
        ld_problem(l, NULL, "nodes: expected an object keyed by node id, or a list");
    }
    return list;
}

static json_t *norm_conn(ld *l, size_t i, json_t *c)
{
    static const char *const sdk[] = {"source_node", "source_output", "target_node", "target_input"};
    static const char *const alt[] = {"from_node", "from_output", "to_node", "to_input"};
    const char *v[4];
    for (int k = 0; k < 4; k++) {
        v[k] = json_is_object(c) ? str_of(c, sdk[k], alt[k]) : NULL;
        if (!v[k]) {
            ld_problem(l, NULL, "connections[%zu].%s: expected a string", i, sdk[k]);
            return NULL;
        }
    }
    return json_pack("{s:s,s:s,s:s,s:s}", sdk[0], v[0], sdk[1], v[1], sdk[2], v[2], sdk[3], v[3]);
}

/* ---- config values ------------------------------------------------------------------------- */

/* Copies v, replacing {"$env": NAME} by that variable's value; refuses "***REDACTED***". */
static json_t *subst_env(ld *l, const char *node, const char *key, json_t *v)
{
    if (json_is_string(v) && strcmp(json_string_value(v), "***REDACTED***") == 0) {
        ld_problem(l, node,
                   "config.%s: the value is \"***REDACTED***\" (as the SDK exports secrets and some URLs); "
                   "supply it in gateway.config_overrides: {\"%s\": {\"%s\": value or {\"$env\": \"NAME\"}}}",
                   key, node, key);
        return NULL;
    }
    if (json_is_object(v) && json_object_size(v) == 1 && json_object_get(v, "$env")) {
        json_t *n = json_object_get(v, "$env");
        const char *val = json_is_string(n) ? getenv(json_string_value(n)) : NULL;
        if (!json_is_string(n))
            ld_problem(l, node, "config.%s: $env: expected a variable name", key);
        else if (!val)
            ld_problem(l, node, "config.%s: environment variable %s is not set", key, json_string_value(n));
        return val ? json_string(val) : NULL;
    }
    if (json_is_object(v) || json_is_array(v)) {
        json_t *out = json_is_object(v) ? json_object() : json_array();
        const char *k;
        json_t *e;
        size_t i;
        if (json_is_object(v)) {
            json_object_foreach(v, k, e)
            {
                json_t *s = subst_env(l, node, key, e);
                if (!s) {
                    json_decref(out);
                    return NULL;
                }
                json_object_set_new(out, k, s);
            }
        } else {
            json_array_foreach(v, i, e)
            {
                json_t *s = subst_env(l, node, key, e);
                if (!s) {
                    json_decref(out);
                    return NULL;
                }
                json_array_append_new(out, s);
            }
        }
        return out;
    }
    return json_incref(v);
}

static int key_allowed(const node_type *t, const char *key)
{
    for (const char *const *k = t->config_keys; k && *k; k++)
        if (strcmp(*k, key) == 0)
            return 1;
    return 0;
}

/* Two config values alike: numbers by value (the SDK writes 0 and 0.0 alike), the rest exactly. */
static int same_value(json_t *a, json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    return json_equal(a, b);
}

/* A key the SDK's node declares for a feature kailashd lacks (node_type.sdk_defaults): 1 when it is
 * known there (accepted and dropped at the SDK's default, refused naming it otherwise), 0 when not. */
static int sdk_default(ld *l, const wf_node *n, const char *key, json_t *v)
{
    for (const node_sdk_default *d = n->type->sdk_defaults; d && d->key; d++) {
        if (strcmp(d->key, key) != 0)
            continue;
        json_t *def = json_loads(d->json, JSON_DECODE_ANY, NULL);
        if (!def || !same_value(def, v))
            ld_problem(l, n->id,
                       "config.%s: kailashd's %s does not have this SDK feature; only the SDK's default (%s) "
                       "is accepted",
                       key, n->type->name, d->json);
        json_decref(def);
        return 1;
    }
    return 0;
}

static int input_allowed(const node_type *t, const char *in)
{
    if (!t->input_ports)
        return 1;
    for (const char *const *k = t->input_ports; *k; k++)
        if (strcmp(*k, in) == 0)
            return 1;
    return key_allowed(t, in);
}

static void dep_add(wf_node *n, size_t d)
{
    for (size_t i = 0; i < n->ndeps; i++)
        if (n->deps[i] == d)
            return;
    size_t *nd = realloc(n->deps, (n->ndeps + 1) * sizeof *nd);
    if (!nd)
        return;
    n->deps = nd;
    n->deps[n->ndeps++] = d;
}

static int on_node_ref(void *ud, const char *id)
{
    ld *l = ud;
    long i = workflow_node_index(l->wf, id);
    if (i < 0 || (size_t)i == l->cur)
        return -1;
    dep_add(&l->wf->nodes[l->cur], (size_t)i);
    return 0;
}

static void compile_param(ld *l, wf_node *n, wf_param *p, json_t *value)
{
    const kconfig *cfg = l->env->cfg;
    tmpl_ctx ctx = {(const char *const *)cfg->template_env, cfg->n_template_env, on_node_ref, l};
    char err[512];
    if (tmpl_compile(value, &ctx, &p->t, err, sizeof err) != 0) {
        ld_problem(l, n->id, "config.%s: %s", p->key, err);
        return;
    }
    if (tmpl_is_constant(p->t)) {
        p->constant = tmpl_render(p->t, NULL, err, sizeof err);
    }
}

/* Checks keys, substitutes secrets, compiles templates and the type's own compile. */
static void compile_node(ld *l, size_t idx, json_t *cfg)
{
    wf_node *n = &l->wf->nodes[idx];
    json_t *plain = json_object();
    const char *k;
    json_t *v;
    size_t before = json_array_size(l->problems);
    l->cur = idx;
    cfg = json_is_object(cfg) ? json_copy(cfg) : json_object(); /* shallow: values stay borrowed */
    json_t *ov = json_object_get(l->overrides, n->id);
    if (json_is_object(ov))
        json_object_update(cfg, ov);
    n->params = calloc(json_object_size(cfg) + 1, sizeof *n->params);
    json_object_foreach(cfg, k, v)
    {
        if (strcmp(k, "on_error") == 0) {
            const char *s = json_is_string(v) ? json_string_value(v) : "";
            if (strcmp(s, "continue") != 0 && strcmp(s, "fail") != 0)
                ld_problem(l, n->id, "config.on_error: expected \"continue\" or \"fail\"");
            n->on_error_continue = strcmp(s, "continue") == 0;
            continue;
        }
        if (!key_allowed(n->type, k)) {
            if (!sdk_default(l, n, k, v))
                ld_problem(l, n->id, "config.%s: unknown key for %s", k, n->type->name);
            continue;
        }
        json_t *s = subst_env(l, n->id, k, v);
        if (!s)
            continue;
        wf_param *p = &n->params[n->nparams++];
        p->key = strdup(k);
        compile_param(l, n, p, s);
        json_object_set_new(plain, k, s);
    }
    char err[512] = "";
    if (json_array_size(l->problems) == before &&
        n->type->compile(l->env->nodes, plain, &n->compiled, err, sizeof err) != 0)
        ld_problem(l, n->id, "%s", err);
    json_decref(plain);
    json_decref(cfg);
}

static void load_nodes(ld *l, json_t *list)
{
    workflow *wf = l->wf;
    size_t nn = json_array_size(list);
    if (nn == 0 || nn > WF_MAX_NODES) {
        ld_problem(l, NULL, "nodes: expected 1..%d nodes", WF_MAX_NODES);
        return;
    }
    wf->nodes = calloc(nn, sizeof *wf->nodes);
    for (size_t i = 0; i < nn; i++) {
        json_t *e = json_array_get(list, i);
        const char *id = json_string_value(json_object_get(e, "id"));
        if (!ld_name_valid(id))
            ld_problem(l, id, "node ids must match [A-Za-z0-9_.-]{1,128}");
        if (workflow_node_index(wf, id) >= 0)
            ld_problem(l, id, "duplicate node id");
        wf->nodes[i].id = strdup(id);
        wf->nnodes = i + 1;
    }
    for (size_t i = 0; i < nn; i++) {
        json_t *e = json_array_get(list, i);
        const char *type = json_string_value(json_object_get(e, "type"));
        wf->nodes[i].type = node_registry_find(type);
        if (!wf->nodes[i].type) {
            ld_problem(l, wf->nodes[i].id, "unknown node type '%s'", type);
            continue;
        }
        if (wf->nodes[i].type->start)
            wf->has_async = 1;
        if (wf->nodes[i].type->may_block)
            wf->may_block = 1;
        compile_node(l, i, json_object_get(e, "config"));
    }
}

/* ---- connections --------------------------------------------------------------------------- */

static void load_conn(ld *l, json_t *c, wf_conn *out)
{
    workflow *wf = l->wf;
    const char *sn = json_string_value(json_object_get(c, "source_node"));
    const char *so = json_string_value(json_object_get(c, "source_output"));
    const char *tn = json_string_value(json_object_get(c, "target_node"));
    const char *ti = json_string_value(json_object_get(c, "target_input"));
    long s = workflow_node_index(wf, sn), t = workflow_node_index(wf, tn);
    if (s < 0 || t < 0) {
        ld_problem(l, NULL, "connection %s -> %s: unknown node '%s'", sn, tn, s < 0 ? sn : tn);
        return;
    }
    const char *dot = strchr(so, '.');
    size_t plen = dot ? (size_t)(dot - so) : strlen(so);
    out->src = (size_t)s;
    out->dst = (size_t)t;
    out->src_port = strndup(so, plen);
    out->src_path = dot && dot[1] ? strdup(dot + 1) : NULL;
    wf_node *src = &wf->nodes[s], *dst = &wf->nodes[t];
    ti = dst->type ? wf_node_input_name(dst, ti) : ti; /* SwitchNode's "data" is its input_data */
    out->dst_input = strdup(ti);
    if (src->type && !wf_node_has_output(src, out->src_port))
        ld_problem(l, sn, "connection to '%s': %s has no output port '%s'", tn, src->type->name, out->src_port);
    if (dst->type && !input_allowed(dst->type, ti))
        ld_problem(l, tn, "connection from '%s': %s has no input '%s'", sn, dst->type->name, ti);
    src->has_out = 1;
    dep_add(dst, (size_t)s);
}

static void index_in(workflow *wf)
{
    for (size_t c = 0; c < wf->nconns; c++) {
        wf_node *d = &wf->nodes[wf->conns[c].dst];
        size_t *ni = realloc(d->in, (d->nin + 1) * sizeof *ni);
        if (!ni)
            continue;
        d->in = ni;
        d->in[d->nin++] = c;
    }
}

static json_t *load_conns(ld *l, json_t *conns)
{
    json_t *norm = json_array();
    if (conns && !json_is_array(conns)) {
        ld_problem(l, NULL, "connections: expected a list");
        return norm;
    }
    size_t i;
    json_t *c;
    json_array_foreach(conns, i, c)
    {
        json_t *n = norm_conn(l, i, c);
        if (n)
            json_array_append_new(norm, n);
    }
    l->wf->conns = calloc(json_array_size(norm) + 1, sizeof *l->wf->conns);
    json_array_foreach(norm, i, c)
    {
        load_conn(l, c, &l->wf->conns[l->wf->nconns]);
        if (l->wf->conns[l->wf->nconns].dst_input)
            l->wf->nconns++;
    }
    index_in(l->wf);
    return norm;
}

/* ---- top level ------------------------------------------------------------------------------ */

static const char *const known_top[] = {"name",       "version",     "description", "nodes",    "connections",
                                        "gateway",    "workflow_id", "author",      "metadata", "position",
                                        "created_at", "updated_at",  "tags",        "id",       NULL};

static void warn_unknown_top(ld *l, json_t *doc)
{
    const char *k;
    json_t *v;
    json_object_foreach(doc, k, v)
    {
        int known = 0;
        for (const char *const *t = known_top; *t; t++)
            known |= strcmp(*t, k) == 0;
        if (!known)
            log_msg(LOG_WARN, "%s: top-level key '%s' is not used by kailashd (ignored)", l->file, k);
    }
}

static void load_header(ld *l, json_t *doc, const char *default_name)
{
    workflow *wf = l->wf;
    json_t *name = json_object_get(doc, "name"), *ver = json_object_get(doc, "version");
    json_t *desc = json_object_get(doc, "description");
    if (name && !json_is_string(name))
        ld_problem(l, NULL, "name: expected a string");
    wf->name = strdup(json_is_string(name) ? json_string_value(name) : default_name);
    if (!ld_name_valid(wf->name))
        ld_problem(l, NULL, "name '%.128s': expected [A-Za-z0-9_.-]{1,128}", wf->name);
    char vbuf[64] = "1.0.0";
    if (json_is_string(ver))
        snprintf(vbuf, sizeof vbuf, "%s", json_string_value(ver));
    else if (json_is_number(ver))
        snprintf(vbuf, sizeof vbuf, "%g", json_number_value(ver));
    else if (ver && !json_is_null(ver))
        ld_problem(l, NULL, "version: expected a string");
    wf->version = strdup(vbuf);
    if (desc && !json_is_string(desc) && !json_is_null(desc))
        ld_problem(l, NULL, "description: expected a string");
    wf->description = strdup(json_is_string(desc) ? json_string_value(desc) : "");
}

int workflow_load_json(json_t *doc, const char *file, const char *default_name, const wf_load_env *env, workflow **out,
                       json_t *problems)
{
    ld l = {.file = file, .env = env, .problems = problems, .wf = calloc(1, sizeof(workflow))};
    if (!l.wf)
        return -1;
    l.wf->file = strdup(file);
    json_t *nodes = NULL, *conns = NULL;
    if (!json_is_object(doc)) {
        ld_problem(&l, NULL, "expected a JSON object");
        goto done;
    }
    warn_unknown_top(&l, doc);
    load_header(&l, doc, default_name);
    l.overrides = json_object_get(json_object_get(doc, "gateway"), "config_overrides");
    nodes = norm_nodes(&l, json_object_get(doc, "nodes"));
    if (l.failed)
        goto done;
    load_nodes(&l, nodes);
    if (l.failed)
        goto done;
    conns = load_conns(&l, json_object_get(doc, "connections"));
    if (l.failed)
        goto done;
    ld_load_gateway(&l, json_object_get(doc, "gateway"));
    if (!l.failed && workflow_graph_build(l.wf, problems) != 0)
        l.failed = 1;
    if (!l.failed)
        ld_build_views(&l, nodes, conns, json_object_get(doc, "gateway"));
done:
    json_decref(nodes);
    json_decref(conns);
    if (l.failed) {
        workflow_free(l.wf);
        return -1;
    }
    *out = l.wf;
    return 0;
}

int workflow_load_file(const char *path, const wf_load_env *env, workflow **out, json_t *problems)
{
    char err[512];
    char *text = util_read_file(path, WF_MAX_FILE, NULL, err, sizeof err);
    if (!text) {
        json_array_append_new(problems, json_string(err));
        return -1;
    }
    json_error_t je;
    json_t *doc = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!doc) {
        json_array_append_new(problems, json_sprintf("%s: line %d: %s", path, je.line, je.text));
        return -1;
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char name[256];
    snprintf(name, sizeof name, "%s", base);
    char *dot = strrchr(name, '.');
    if (dot && strcmp(dot, ".json") == 0)
        *dot = '\0';
    int rc = workflow_load_json(doc, path, name, env, out, problems);
    json_decref(doc);
    return rc;
}

int wf_node_has_output(const wf_node *n, const char *port)
{
    if (n->on_error_continue && (strcmp(port, "error") == 0 || strcmp(port, "failed") == 0))
        return 1;
    return !n->type->has_output || n->type->has_output(n->compiled, port);
}

long workflow_node_index(const workflow *wf, const char *id)
{
    for (size_t i = 0; i < wf->nnodes; i++)
        if (wf->nodes[i].id && strcmp(wf->nodes[i].id, id) == 0)
            return (long)i;
    return -1;
}

static void node_free(wf_node *n)
{
    if (n->type && n->type->free && n->compiled)
        n->type->free(n->compiled);
    for (size_t i = 0; i < n->nparams; i++) {
        free(n->params[i].key);
        tmpl_free(n->params[i].t);
        json_decref(n->params[i].constant);
    }
    free(n->params);
    free(n->in);
    free(n->deps);
    free(n->succ);
    wf_node_open_keys_free(n);
    free(n->id);
}

void workflow_free(workflow *wf)
{
    if (!wf)
        return;
    for (size_t i = 0; i < wf->nnodes; i++)
        node_free(&wf->nodes[i]);
    free(wf->nodes);
    for (size_t i = 0; i < wf->nconns; i++) {
        free(wf->conns[i].src_port);
        free(wf->conns[i].src_path);
        free(wf->conns[i].dst_input);
    }
    free(wf->conns);
    for (size_t i = 0; i < wf->noutputs; i++) {
        free(wf->outputs[i].name);
        free(wf->outputs[i].port);
        free(wf->outputs[i].path);
    }
    free(wf->outputs);
    free(wf->order);
    schema_free(wf->inputs_schema);
    wf_access_free(&wf->access);
    free(wf->cache_tenant);
    json_decref(wf->normalized);
    json_decref(wf->summary);
    free(wf->name);
    free(wf->version);
    free(wf->description);
    free(wf->file);
    free(wf);
}
