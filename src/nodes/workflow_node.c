/* WorkflowNode: runs another loaded workflow as one node (the SDK's WorkflowNode, which wraps a
 * Workflow object, a file or a dict; kailashd runs only workflows it loaded, so the inner workflow is a
 * file of workflows_dir like any other). `workflow_name` names it (kailashd's key), or the SDK's
 * `workflow_path` names its file: only the file name counts, since the directories of the machine the
 * SDK ran on mean nothing here, and the file must be one the daemon loaded from workflows_dir. The
 * SDK's `workflow` (null in every export: a Workflow object can't be exported) and `workflow_dict`
 * are refused unless null. Both keys are pinned: what the file's author wrote chooses the inner
 * workflow, never a request. Inputs and outputs follow the SDK (workflow_map.c).
 *
 * The inner run is an ordinary run of the inner workflow's executor: its max_concurrency and queue
 * apply (a full queue fails this node with 503 overloaded), and it shows in that workflow's counts.
 * It is created with this run's request id, hops and depth + 1, on this run's home loop (its I/O
 * stays on the request's loop), with this run's deadline when that comes before its own timeout_ms;
 * its nodes run as any run's do, so this node never blocks a thread while it waits. Its parameters
 * pass the same pinned-key check as a request's (a caller can't point an inner HTTP node elsewhere
 * through the outer run: 400). The inner workflow is looked up in the current registry at each
 * start: a reload that changes it is seen by the next run, one that removes it fails the node (500).
 * The registry refuses at load a target that is not loaded, a loop of calls and a chain deeper than
 * ENGINE_MAX_DEPTH (src/engine/calls.c); start checks the depth again, since an in-flight run of the
 * old registry may call into the new one.
 *
 * Ending: the inner run's done callback comes on whatever thread ended it; it posts the end to this
 * node's loop, where cancel also runs, so exactly one of them calls done, and done is never called
 * from inside start (an inner run may end before exec_submit returns). cancel (the outer run was
 * cancelled, failed elsewhere or ran out of time) cancels the inner run and answers at once; the
 * inner run's later end only frees the call's state. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/engine.h"
#include "kailash/ioloop.h"
#include "kailash/util.h"
#include "workflow_node.h"

/* workflow and workflow_dict are the SDK's: listed so that compile can accept its null and refuse
 * anything else with the way out, rather than the loader with "unknown key". `inputs` is the SDK's
 * declared input: as a config key the file may give it (templates render against the outer run) and
 * a workflow-wide input of that name reaches the node, as the SDK routes it. */
const char *const wfn_keys[] = {"workflow_name", "workflow_path", "inputs",   "input_mapping", "output_mapping",
                                "name",          "description",   "workflow", "workflow_dict", NULL};
static const char *const wfn_pinned[] = {"workflow_name",  "workflow_path",  "workflow", "workflow_dict",
                                         "input_mapping", "output_mapping", NULL};

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

/* ---- compile ---------------------------------------------------------------------------------- */

static int wfn_literal(json_t *v)
{
    return json_is_string(v) && json_string_length(v) > 0 && !tmpl_string_has_expr(json_string_value(v));
}

/* A mapping {name: {node_key: "id", name_key: "name", ...}}; input mappings may also say "required". */
static int wfn_check_mapping(json_t *m, const char *what, const char *name_key, char *err, size_t errlen)
{
    const char *k;
    json_t *v;
    if (!json_is_object(m))
        return util_err(err, errlen, "config.%s: expected an object {\"name\": {\"node\": \"id\", \"%s\": \"name\"}}",
                        what, name_key);
    json_object_foreach(m, k, v)
    {
        json_t *p = json_object_get(v, name_key), *req = json_object_get(v, "required");
        if (!json_is_object(v) || !wfn_literal(json_object_get(v, "node")) || (p && !wfn_literal(p)))
            return util_err(err, errlen, "config.%s.%.64s: expected {\"node\": \"id\", \"%s\": \"name\"} (literal names)",
                            what, k, name_key);
        if (req && !json_is_boolean(req))
            return util_err(err, errlen, "config.%s.%.64s.required: expected true or false", what, k);
    }
    return 0;
}

/* The SDK's ways of carrying the inner workflow itself, which kailashd doesn't take. */
static int wfn_refuse_sdk_source(json_t *config, char *err, size_t errlen)
{
    json_t *obj = json_object_get(config, "workflow"), *dict = json_object_get(config, "workflow_dict");
    if (obj && !json_is_null(obj))
        return util_err(err, errlen, "config.workflow: kailashd runs only workflows it loaded: set workflow_name to the "
                                     "inner workflow's name, or workflow_path to its file in workflows_dir");
    if (dict && !json_is_null(dict))
        return util_err(err, errlen,
                        "config.workflow_dict: kailashd runs only workflows it loaded: save the inner workflow as a "
                        "file of workflows_dir and set workflow_path to that file (or workflow_name to its name)");
    return 0;
}

/* workflow_name or workflow_path, exactly one, into c->target. */
static int wfn_target(json_t *config, wfn_conf *c, char *err, size_t errlen)
{
    json_t *name = json_object_get(config, "workflow_name"), *path = json_object_get(config, "workflow_path");
    name = json_is_null(name) ? NULL : name;
    path = json_is_null(path) ? NULL : path;
    if ((name == NULL) == (path == NULL))
        return util_err(err, errlen, "config: set one of workflow_name (a loaded workflow's name) and workflow_path "
                                     "(the file in workflows_dir it was loaded from)");
    if (name && !wfn_literal(name))
        return util_err(err, errlen, "config.workflow_name: expected the literal name of a loaded workflow");
    if (path && !wfn_literal(path))
        return util_err(err, errlen, "config.workflow_path: expected the literal path of a workflow file");
    const char *t = json_string_value(name ? name : path), *slash = strrchr(t, '/');
    if (path && slash)
        t = slash + 1;
    size_t len = strlen(t);
    if (path && (len <= 5 || strcmp(t + len - 5, ".json") != 0))
        return util_err(err, errlen, "config.workflow_path: '%.200s': kailashd loads workflows from .json files of "
                                     "workflows_dir only", json_string_value(path));
    c->by_file = path != NULL;
    c->target = strdup(t);
    return c->target ? 0 : util_err(err, errlen, "out of memory");
}

static int wfn_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    (void)env;
    *compiled = NULL;
    json_t *in = json_object_get(config, "input_mapping"), *out = json_object_get(config, "output_mapping");
    in = json_is_null(in) ? NULL : in;
    out = json_is_null(out) ? NULL : out;
    if (wfn_refuse_sdk_source(config, err, errlen) != 0 ||
        (in && wfn_check_mapping(in, "input_mapping", "parameter", err, errlen) != 0) ||
        (out && wfn_check_mapping(out, "output_mapping", "output", err, errlen) != 0))
        return -1;
    wfn_conf *c = calloc(1, sizeof *c);
    if (!c)
        return util_err(err, errlen, "out of memory");
    if (wfn_target(config, c, err, errlen) != 0) {
        wfn_free(c);
        return -1;
    }
    /* the SDK treats an empty mapping as none ({} is falsy) */
    c->input_mapping = in && json_object_size(in) ? json_deep_copy(in) : NULL;
    c->output_mapping = out && json_object_size(out) ? json_deep_copy(out) : NULL;
    *compiled = c;
    return 0;
}

static const char *wfn_calls(const void *compiled, int *by_file)
{
    const wfn_conf *c = compiled;
    *by_file = c->by_file;
    return c->target;
}

/* results, and the output_mapping names; without a mapping any <exit node>_<port>, which only the
 * inner workflow knows (and a reload may change it), so any name with a '_' inside. */
static int wfn_has_output(const void *compiled, const char *port)
{
    const wfn_conf *c = compiled;
    if (strcmp(port, "results") == 0)
        return 1;
    if (c->output_mapping)
        return json_object_get(c->output_mapping, port) != NULL;
    const char *us = strchr(port, '_');
    return us && us != port && us[1];
}

/* ---- running ---------------------------------------------------------------------------------- */

typedef struct wfn_call {
    const wfn_conf *conf;
    node_call *call; /* valid until done is called */
    ioloop *io;      /* call->io, kept: the inner run may end after call is gone */
    run *inner;
    atomic_int finished; /* done was called (by wfn_finish or wfn_cancel: on io, but for a stopping loop) */
} wfn_call;

static void wfn_fail_from(node_call *call, run *inner)
{
    node_error e;
    run_status st = run_get_status(inner);
    const char *at = run_error_node(inner);
    node_fail(&e, st == RUN_CANCELLED ? "internal" : run_error_code(inner), "workflow '%.64s' %s%s%.64s%s: %.150s",
              run_workflow(inner)->name, run_status_name(st), *at ? " at node '" : "", at, *at ? "'" : "",
              run_error_message(inner));
    call->done(call, NULL, &e);
}

/* On io: hands the inner run's end to the outer run, unless cancel answered already. */
static void wfn_finish(void *ud)
{
    wfn_call *w = ud;
    if (atomic_exchange(&w->finished, 1) == 0) {
        if (run_get_status(w->inner) == RUN_COMPLETED)
            w->call->done(w->call, wfn_map_outputs(w->conf, run_workflow(w->inner), run_results(w->inner)), NULL);
        else
            wfn_fail_from(w->call, w->inner);
    }
    run_release(w->inner);
    free(w);
}

static void wfn_inner_done(run *inner, void *ud)
{
    (void)inner;
    wfn_call *w = ud;
    if (!w->io || ioloop_post(w->io, wfn_finish, w) != 0)
        wfn_finish(w); /* the loop is stopping: nothing else runs there any more */
}

/* On io (node_call.cancel): the inner run stops; its end still comes to wfn_finish, which frees w. */
static void wfn_cancel(node_call *call)
{
    wfn_call *w = call->node_data;
    if (atomic_exchange(&w->finished, 1) != 0)
        return;
    run_cancel(w->inner);
    node_error e;
    node_fail(&e, "cancelled", "cancelled");
    call->done(call, NULL, &e);
}

/* Creates and submits the inner run of ex; 0, or -1 with err (w is then untouched by the engine). */
static int wfn_submit(const wfn_conf *c, executor *ex, node_call *call, wfn_call *w, node_error *err)
{
    const workflow *wf = exec_workflow(ex);
    json_t *params = wfn_map_inputs(c, wf, call, err), *inputs = json_object();
    char msg[400];
    if (params && workflow_check_request(wf, inputs, params, msg, sizeof msg) != 0)
        node_fail(err, "bad_request", "workflow '%.64s': %.300s", wf->name, msg);
    else if (params) {
        const tmpl_scope *sc = call->scope;
        run_opts o = {.request_id = sc ? sc->request_id : NULL, .inputs = inputs,
                      .principal_id = sc ? sc->principal_id : NULL, /* the inner run acts for the same caller */
                      .principal_roles = sc ? sc->principal_roles : NULL,
                      .principal_attributes = sc ? sc->principal_attributes : NULL,
                      .parameters = params, .hops = call->hops, .depth = call->depth + 1,
                      .deadline_ms = call->deadline_ms, .home = call->io, .done = wfn_inner_done, .ud = w};
        if (!(w->inner = run_create(ex, &o)))
            node_fail(err, "internal", "out of memory");
    }
    json_decref(params);
    json_decref(inputs);
    if (!w->inner)
        return -1;
    run_retain(w->inner); /* one for exec_submit to take, one held until wfn_finish */
    call->node_data = w;  /* before the submit: the inner run may end (and post its end) at once */
    call->cancel = wfn_cancel;
    /* may_inline: a free slot begins the inner run on this thread, as a request's run begins on its
     * loop (CPU nodes here, a may_block workflow still goes to the pool); its end is posted, not run
     * here, so this start returns before done. */
    if (exec_submit(ex, w->inner, 1) == EXEC_OK)
        return 0;
    call->node_data = NULL;
    call->cancel = NULL;
    run_release(w->inner);
    run_release(w->inner);
    return node_fail(err, "overloaded", "workflow '%.64s' is at capacity; retry later", wf->name);
}

static int wfn_start(const void *compiled, node_call *call, node_error *err)
{
    const wfn_conf *c = compiled;
    if (call->depth >= ENGINE_MAX_DEPTH)
        return node_fail(err, "internal", "WorkflowNode calls nest deeper than %d levels", ENGINE_MAX_DEPTH);
    wfn_call *w = calloc(1, sizeof *w);
    if (!w)
        return node_fail(err, "internal", "out of memory");
    w->conf = c;
    w->call = call;
    w->io = call->io;
    atomic_init(&w->finished, 0);
    registry *reg = registry_acquire();
    executor *ex = !reg ? NULL : c->by_file ? registry_find_file(reg, c->target) : registry_find(reg, c->target);
    int rc = ex ? wfn_submit(c, ex, call, w, err)
                : node_fail(err, "internal", "workflow %s'%.64s' is not loaded (a reload removed it)",
                            c->by_file ? "file " : "", c->target);
    registry_release(reg); /* the inner run holds its executor */
    if (rc != 0)
        free(w);
    return rc; /* on 0, w may be gone already: wfn_finish frees it */
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
