/* WorkflowNode: runs another loaded workflow, by name, as one node (the SDK's WorkflowNode, which
 * wraps a Workflow object, a file or a dict; kailashd runs workflows it has loaded, so the inner one
 * is a file of workflows_dir like any other and `workflow_name` names it).
 *
 * Inputs, as the SDK maps them: `inputs` {node_id: {...}} goes to those inner nodes; any other input
 * named `<node>_<param>` (split at the first '_', the SDK's rule) goes to inner node <node>'s param;
 * with `input_mapping` {"param": {"node": id, "parameter": p}} only the mapped inputs go. They reach
 * the inner run as request parameters, so the inner workflow's pinned keys stay pinned (a caller
 * can't point an inner HTTP node elsewhere through the outer run) and are refused with 400.
 * Outputs: `results` (every inner node that ran), and per exit node (no outgoing connection) that ran
 * `<node>_<port>` for each of its ports; with `output_mapping` {"name": {"node": id, "output": port}}
 * the mapped ports instead.
 *
 * The inner workflow is looked up in the current registry at each run (a reload that changes it is
 * seen by the next run; one that removes it fails the node). Its run goes through its own executor,
 * so its max_concurrency and queue apply (a full queue fails the node with 503 overloaded), with its
 * own timeout_ms or the outer run's deadline, whichever comes first (then the node fails with 504
 * timeout); the outer run's cancellation cancels it. The registry refuses at load
 * a target that is not loaded, a chain of calls that loops back, or one deeper than
 * ENGINE_MAX_DEPTH (the run checks the depth too). The inner run ends on any thread; its result is
 * handed to the outer run on the node's loop, where cancel also runs, so exactly one of them calls
 * done. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/engine.h"
#include "kailash/ioloop.h"
#include "kailash/node.h"
#include "kailash/util.h"

/* workflow, workflow_path and workflow_dict are the SDK's, listed so that compile refuses them with
 * the way out rather than the loader with "unknown key". */
static const char *const wfn_keys[] = {"workflow_name", "input_mapping", "output_mapping", "name",         "description",
                                       "workflow",      "workflow_path", "workflow_dict",  NULL};
static const char *const wfn_pinned[] = {"workflow_name", "input_mapping", "output_mapping", NULL};

typedef struct wfn_conf {
    char *target;
    json_t *input_mapping;  /* object or NULL */
    json_t *output_mapping; /* object or NULL */
} wfn_conf;

static void wfn_free(void *compiled)
{
    wfn_conf *c = compiled;
    if (!c)
        return;
    free(c->target);
    json_decref(c->input_mapping);
    json_decref(c->output_mapping);
    free(c);
}

/* A mapping {name: {key: "string", ...}}: each entry an object whose `keys` values are strings. */
static int wfn_check_mapping(json_t *m, const char *what, const char *node_key, const char *port_key, char *err,
                             size_t errlen)
{
    const char *k;
    json_t *v;
    if (!json_is_object(m))
        return util_err(err, errlen, "config.%s: expected an object {\"name\": {\"node\": ..., \"%s\": ...}}", what,
                        port_key);
    json_object_foreach(m, k, v)
    {
        json_t *n = json_object_get(v, node_key), *p = json_object_get(v, port_key);
        if (!json_is_object(v) || !json_is_string(n) || (p && !json_is_string(p)))
            return util_err(err, errlen, "config.%s.%.64s: expected {\"node\": \"id\", \"%s\": \"name\"}", what, k,
                            port_key);
    }
    return 0;
}

/* The SDK's ways of carrying the inner workflow, which kailashd doesn't take. */
static int wfn_refuse_sdk_source(json_t *config, char *err, size_t errlen)
{
    static const char *const sources[] = {"workflow", "workflow_path", "workflow_dict"};
    for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++)
        if (json_object_get(config, sources[i]))
            return util_err(err, errlen,
                            "config.%s: kailashd runs a loaded workflow by name: save the inner workflow as a file "
                            "of workflows_dir and set workflow_name to its name",
                            sources[i]);
    return 0;
}

static int wfn_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    (void)env;
    *compiled = NULL;
    if (wfn_refuse_sdk_source(config, err, errlen) != 0)
        return -1;
    json_t *name = json_object_get(config, "workflow_name");
    if (!json_is_string(name) || !json_string_length(name) || tmpl_string_has_expr(json_string_value(name)))
        return util_err(err, errlen, "config.workflow_name: required, the literal name of a loaded workflow");
    json_t *in = json_object_get(config, "input_mapping"), *out = json_object_get(config, "output_mapping");
    if ((in && wfn_check_mapping(in, "input_mapping", "node", "parameter", err, errlen) != 0) ||
        (out && wfn_check_mapping(out, "output_mapping", "node", "output", err, errlen) != 0))
        return -1;
    wfn_conf *c = calloc(1, sizeof *c);
    if (!c || !(c->target = strdup(json_string_value(name)))) {
        free(c);
        return util_err(err, errlen, "out of memory");
    }
    c->input_mapping = in && json_object_size(in) ? json_deep_copy(in) : NULL;
    c->output_mapping = out && json_object_size(out) ? json_deep_copy(out) : NULL;
    *compiled = c;
    return 0;
}

static const char *wfn_calls(const void *compiled)
{
    return ((const wfn_conf *)compiled)->target;
}

static int wfn_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    (void)port;
    return 1; /* results and <node>_<port>: named by the inner workflow, which may change on reload */
}

/* ---- inputs -> the inner run's parameters ---------------------------------------------------- */

static void wfn_put(json_t *params, const char *node, const char *param, json_t *v)
{
    json_t *p = json_object_get(params, node);
    if (!p)
        json_object_set_new(params, node, p = json_object());
    json_object_set(p, param, v);
}

/* The SDK's auto-mapping: `<node>_<param>` for a node id of the inner workflow. */
static void wfn_auto_inputs(const workflow *wf, json_t *inputs, json_t *params)
{
    const char *k;
    json_t *v;
    json_object_foreach(inputs, k, v)
    {
        const char *us = strchr(k, '_');
        if (!us || !us[1] || strcmp(k, "inputs") == 0)
            continue;
        char node[128];
        if ((size_t)(us - k) >= sizeof node)
            continue;
        memcpy(node, k, (size_t)(us - k));
        node[us - k] = '\0';
        if (workflow_node_index(wf, node) >= 0)
            wfn_put(params, node, us + 1, v);
    }
}

static json_t *wfn_params(const wfn_conf *c, const workflow *wf, json_t *inputs)
{
    json_t *params = json_object();
    const char *k;
    json_t *v;
    if (c->input_mapping) {
        json_object_foreach(c->input_mapping, k, v)
        {
            json_t *given = json_object_get(inputs, k), *p = json_object_get(v, "parameter");
            if (given)
                wfn_put(params, json_string_value(json_object_get(v, "node")), p ? json_string_value(p) : k, given);
        }
    } else {
        wfn_auto_inputs(wf, inputs, params);
    }
    json_t *scoped = json_object_get(inputs, "inputs");
    json_object_foreach(scoped, k, v)
    {
        if (json_is_object(v) && workflow_node_index(wf, k) >= 0) {
            const char *pk;
            json_t *pv;
            json_object_foreach(v, pk, pv) wfn_put(params, k, pk, pv);
        }
    }
    return params;
}

/* ---- the inner run's answer -> this node's outputs ------------------------------------------- */

static json_t *wfn_outputs(const wfn_conf *c, run *inner)
{
    json_t *results = run_results(inner), *out = json_pack("{s:O}", "results", results);
    const workflow *wf = run_workflow(inner);
    const char *k;
    json_t *v;
    if (c->output_mapping) {
        json_object_foreach(c->output_mapping, k, v)
        {
            json_t *o = json_object_get(v, "output");
            json_t *port = json_object_get(json_object_get(results, json_string_value(json_object_get(v, "node"))),
                                           o ? json_string_value(o) : k);
            if (port)
                json_object_set(out, k, port);
        }
        return out;
    }
    for (size_t i = 0; i < wf->nnodes; i++) {
        json_t *node_out = json_object_get(results, wf->nodes[i].id);
        if (wf->nodes[i].has_out || !json_is_object(node_out))
            continue;
        json_object_foreach(node_out, k, v)
        {
            char name[512];
            snprintf(name, sizeof name, "%s_%s", wf->nodes[i].id, k);
            json_object_set(out, name, v);
        }
    }
    return out;
}

/* ---- running ---------------------------------------------------------------------------------- */

typedef struct wfn_call {
    const wfn_conf *conf;
    node_call *call;
    run *inner;
    atomic_int finished; /* call->done was called (by wfn_finish or wfn_cancel) */
} wfn_call;

/* On the node's loop: hands the inner run's end to the outer run, unless cancel already did. */
static void wfn_finish(void *ud)
{
    wfn_call *w = ud;
    if (atomic_exchange(&w->finished, 1) == 0) {
        node_call *call = w->call;
        run *inner = w->inner;
        if (run_get_status(inner) == RUN_COMPLETED) {
            call->done(call, wfn_outputs(w->conf, inner), NULL);
        } else {
            node_error e;
            const char *code = run_get_status(inner) == RUN_CANCELLED ? "internal" : run_error_code(inner);
            node_fail(&e, code, "workflow '%.64s' %s%s%.64s%s: %.120s", run_workflow(inner)->name,
                      run_status_name(run_get_status(inner)), *run_error_node(inner) ? " at node '" : "",
                      run_error_node(inner), *run_error_node(inner) ? "'" : "", run_error_message(inner));
            call->done(call, NULL, &e);
        }
    }
    run_release(w->inner);
    free(w);
}

static void wfn_inner_done(run *inner, void *ud)
{
    (void)inner;
    wfn_call *w = ud;
    if (ioloop_post(w->call->io, wfn_finish, w) != 0)
        wfn_finish(w); /* the loop is stopping: nothing else runs there any more */
}

static void wfn_cancel(node_call *call)
{
    wfn_call *w = call->node_data;
    if (atomic_exchange(&w->finished, 1) != 0)
        return;
    run_cancel(w->inner); /* its end still comes to wfn_finish, which frees w */
    node_error e;
    node_fail(&e, "cancelled", "cancelled");
    call->done(call, NULL, &e);
}

/* The inner run, created and submitted; fills err (and returns NULL) when it can't start. */
static run *wfn_submit(const wfn_conf *c, executor *ex, node_call *call, wfn_call *w, node_error *err)
{
    const workflow *wf = exec_workflow(ex);
    json_t *params = wfn_params(c, wf, call->inputs), *inputs = json_object();
    char msg[400];
    run *inner = NULL;
    if (workflow_check_request(wf, inputs, params, msg, sizeof msg) != 0) {
        node_fail(err, "bad_request", "workflow '%.64s': %s", wf->name, msg);
    } else {
        run_opts o = {.inputs = inputs, .parameters = params, .hops = call->hops, .depth = call->depth + 1,
                      .deadline_ms = call->deadline_ms, .done = wfn_inner_done, .ud = w};
        inner = run_create(ex, &o);
        if (!inner)
            node_fail(err, "internal", "out of memory");
    }
    json_decref(params);
    json_decref(inputs);
    if (!inner)
        return NULL;
    w->inner = inner;
    run_retain(inner); /* one for exec_submit, one held until wfn_finish */
    call->node_data = w; /* before the submit: the inner run may end (and finish) at once */
    call->cancel = wfn_cancel;
    if (exec_submit(ex, inner, 0) == EXEC_OVERLOADED) {
        call->node_data = NULL;
        call->cancel = NULL;
        run_release(inner);
        run_release(inner);
        node_fail(err, "overloaded", "workflow '%.64s' is at capacity; retry later", wf->name);
        return NULL;
    }
    return inner;
}

static int wfn_start(const void *compiled, node_call *call, node_error *err)
{
    const wfn_conf *c = compiled;
    if (call->depth >= ENGINE_MAX_DEPTH)
        return node_fail(err, "internal", "workflow calls nest deeper than %d levels", ENGINE_MAX_DEPTH);
    wfn_call *w = calloc(1, sizeof *w);
    if (!w)
        return node_fail(err, "internal", "out of memory");
    w->conf = c;
    w->call = call;
    atomic_init(&w->finished, 0);
    registry *reg = registry_acquire();
    executor *ex = reg ? registry_find(reg, c->target) : NULL;
    run *inner = ex ? wfn_submit(c, ex, call, w, err) : NULL;
    if (!ex)
        node_fail(err, "internal", "workflow '%.64s' is not loaded", c->target);
    registry_release(reg); /* the inner run holds its executor */
    if (!inner) {
        free(w);
        return -1;
    }
    return 0; /* w may be gone already: wfn_finish frees it */
}

const node_type node_workflow = {
    .name = "WorkflowNode",
    .config_keys = wfn_keys,
    .pinned_keys = wfn_pinned,
    .input_ports = NULL,
    .compile = wfn_compile,
    .has_output = wfn_has_output,
    .run = NULL,
    .start = wfn_start,
    .free = wfn_free,
    .calls_workflow = wfn_calls,
};
