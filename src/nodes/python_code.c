/* PythonCodeNode and AsyncPythonCodeNode: the SDK's code nodes (kailash.nodes.code.python and
 * async_python), run in the Python worker pool (python.h), never in the daemon.
 *
 * The node's final inputs, its config values included, become the code's variables, as the SDK's
 * runtime passes config and inputs alike to run(); the outputs are {"result": result} when the code
 * set `result`, else every variable not starting with "_" that is not a module (the runner does the
 * SDK's part: python/kailash_runner.py). The code is compiled once per node and worker: each compiled
 * node has a code id, and a worker is sent the code with the first call of that id only.
 *
 * Config is the SDK's export: PythonCodeNode writes every parameter of its constructor, so `function`,
 * `class_type`, `process_method`, `input_types`, `output_type`, `input_schema` and `output_schema` are
 * accepted at their default (null) only, `sandbox_mode` as "restricted" only ("trusted" would lift
 * the import policy). `timeout` (seconds; the SDK's defaults: 300 for PythonCodeNode, its
 * SecurityConfig.execution_timeout, and 30 for AsyncPythonCodeNode) bounds the code's run time; a
 * worker over it is killed and replaced and the node fails with "timeout". The run's own deadline
 * bounds it too. The code may hold no template: it is compiled once, and `{{` is Python's own
 * escape in f-strings.
 *
 * Failures: the code raised, broke the import policy or made outputs that are not JSON: "internal"
 * with the Python error (its type, message and line); the worker died during the call (a crashing
 * extension, the memory limit's kill): "internal"; no worker can start: "internal". */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/ioloop.h"
#include "kailash/node.h"
#include "kailash/python.h"
#include "kailash/util.h"

#define PY_SYNC_TIMEOUT_S 300.0
#define PY_ASYNC_TIMEOUT_S 30.0
#define PY_MAX_TIMEOUT_S 86400.0

static const char *const py_sync_keys[] = {
    "code",         "name",          "description",       "max_code_lines", "timeout",
    "function",     "class_type",    "process_method",    "input_types",    "output_type",
    "input_schema", "output_schema", "validate_security", "sandbox_mode",   NULL};
static const char *const py_async_keys[] = {
    "code", "name", "description", "timeout", "max_concurrent_tasks", "max_memory_mb", "imports", "sandbox_mode", NULL};
/* Keys of SDK features kailashd does not have: accepted at null only. */
static const char *const py_null_keys[] = {"function",    "class_type",   "process_method", "input_types",
                                           "output_type", "input_schema", "output_schema",  NULL};

typedef struct py_node {
    uint64_t code_id;
    int asynchronous;
    char *code; /* the workflow file's: a request's inputs cannot change what runs */
} py_node;

/* One call in flight: the node's side (the pool's py_call is its handle). A start on another thread
 * than the run's loop is posted there; a cancel before the post ran leaves the post to free it. */
typedef struct py_pending {
    node_call *call;
    const py_node *pn;
    py_call *pc;
    int posted;
    int cancelled;
} py_pending;

static int py_check_plain(json_t *config, char *err, size_t errlen)
{
    for (const char *const *k = py_null_keys; *k; k++) {
        json_t *v = json_object_get(config, *k);
        if (v && !json_is_null(v))
            return util_err(err, errlen,
                            "config.%s: kailashd's PythonCodeNode runs `code` only; only the SDK's default (null) "
                            "is accepted",
                            *k);
    }
    json_t *mode = json_object_get(config, "sandbox_mode");
    if (mode && !(json_is_string(mode) && strcmp(json_string_value(mode), "restricted") == 0))
        return util_err(err, errlen,
                        "config.sandbox_mode: only \"restricted\" is accepted (the SDK's allowed "
                        "modules are the import policy)");
    json_t *t = json_object_get(config, "timeout");
    if (t && !json_is_string(t) &&
        !(json_is_number(t) && json_number_value(t) > 0 && json_number_value(t) <= PY_MAX_TIMEOUT_S))
        return util_err(err, errlen, "config.timeout: expected a number of seconds, more than 0 and at most %.0f",
                        PY_MAX_TIMEOUT_S);
    return 0;
}

static int py_compile_as(json_t *config, void **compiled, int asynchronous, char *err, size_t errlen)
{
    *compiled = NULL;
    json_t *code = json_object_get(config, "code");
    if (!json_is_string(code) || json_string_length(code) == 0)
        return util_err(err, errlen, "config.code: required, a non-empty string of Python code");
    if (tmpl_string_has_expr(json_string_value(code)))
        return util_err(err, errlen,
                        "config.code: a template is not allowed in code (the code is compiled once; "
                        "give values as inputs, they are the code's variables)");
    if (py_check_plain(config, err, errlen) != 0)
        return -1;
    py_node *pn = calloc(1, sizeof *pn);
    if (!pn)
        return util_err(err, errlen, "out of memory");
    pn->code_id = python_code_id();
    pn->asynchronous = asynchronous;
    if (!(pn->code = strdup(json_string_value(code)))) {
        free(pn);
        return util_err(err, errlen, "out of memory");
    }
    *compiled = pn;
    python_pool_warm();
    return 0;
}

static int py_compile_sync(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    (void)env;
    return py_compile_as(config, compiled, 0, err, errlen);
}

static int py_compile_async(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    (void)env;
    return py_compile_as(config, compiled, 1, err, errlen);
}

/* Outputs are dynamic (the code's variables when it sets no `result`): any port may be connected. */
static int py_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    (void)port;
    return 1;
}

static void py_finish(py_pending *pd, json_t *outputs, const node_error *err)
{
    node_call *call = pd->call;
    call->cancel = NULL;
    call->node_data = NULL;
    free(pd);
    call->done(call, outputs, err);
}

static void py_on_done(void *ud, json_t *reply, const char *code, const char *message)
{
    py_pending *pd = ud;
    node_error e;
    if (!reply) {
        node_fail(&e, code, "PythonCodeNode: %s", message);
        py_finish(pd, NULL, &e);
        return;
    }
    json_t *outputs = json_object_get(reply, "outputs");
    if (json_is_true(json_object_get(reply, "ok")) && json_is_object(outputs)) {
        py_finish(pd, json_incref(outputs), NULL);
        return;
    }
    const char *msg = json_string_value(json_object_get(reply, "error"));
    node_fail(&e, "internal", "PythonCodeNode: %s", msg ? msg : "the code failed");
    py_finish(pd, NULL, &e);
}

/* node_call.cancel: the call is withdrawn (a running one's answer dropped), done now. */
static void py_cancel(node_call *call)
{
    py_pending *pd = call->node_data;
    node_error e;
    node_fail(&e, "cancelled", "cancelled");
    if (pd->posted) { /* the post frees pd */
        pd->cancelled = 1;
        call->cancel = NULL;
        call->node_data = NULL;
        call->done(call, NULL, &e);
        return;
    }
    python_call_cancel(pd->pc);
    py_finish(pd, NULL, &e);
}

/* The code's time limit: the node's timeout, cut to what is left of the run's deadline. */
static double py_timeout_ms(const node_call *call, int asynchronous)
{
    json_t *t = json_object_get(call->inputs, "timeout");
    double s = json_is_number(t) && json_number_value(t) > 0 ? json_number_value(t)
               : asynchronous                                ? PY_ASYNC_TIMEOUT_S
                                                             : PY_SYNC_TIMEOUT_S;
    double ms = fmin(s, PY_MAX_TIMEOUT_S) * 1000.0;
    if (call->deadline_ms > 0) {
        double left = call->deadline_ms - util_now_ms();
        ms = fmin(ms, left > 1 ? left : 1);
    }
    return ms;
}

/* On the run's loop: queues the call. 0, or -1 with msg. */
static int py_submit(py_pending *pd, char *msg, size_t msglen)
{
    node_call *call = pd->call;
    py_request rq = {pd->pn->code_id, pd->pn->code, call->inputs, py_timeout_ms(call, pd->pn->asynchronous),
                     pd->pn->asynchronous};
    pd->pc = python_call(call->io, &rq, py_on_done, pd, msg, msglen);
    return pd->pc ? 0 : -1;
}

static void py_posted(void *ud)
{
    py_pending *pd = ud;
    char msg[200];
    node_error e;
    pd->posted = 0;
    if (pd->cancelled) {
        free(pd);
        return;
    }
    if (py_submit(pd, msg, sizeof msg) != 0) {
        node_fail(&e, "internal", "PythonCodeNode: %s", msg);
        py_finish(pd, NULL, &e);
    }
}

static int py_start(const void *compiled, node_call *call, node_error *err)
{
    if (!call->io)
        return node_fail(err, "internal", "PythonCodeNode needs an I/O loop");
    py_pending *pd = calloc(1, sizeof *pd);
    if (!pd)
        return node_fail(err, "internal", "out of memory");
    pd->call = call;
    pd->pn = compiled;
    char msg[200];
    call->node_data = pd;
    call->cancel = py_cancel;
    if (ioloop_current() == call->io) {
        if (py_submit(pd, msg, sizeof msg) == 0)
            return 0;
        node_fail(err, "internal", "PythonCodeNode: %s", msg);
    } else {
        pd->posted = 1; /* set before the post: the loop may run it at once */
        if (ioloop_post(call->io, py_posted, pd) == 0)
            return 0;
        node_fail(err, "internal", "PythonCodeNode: the I/O loop is stopping");
    }
    call->node_data = NULL;
    call->cancel = NULL;
    free(pd);
    return -1;
}

static void py_free(void *compiled)
{
    py_node *pn = compiled;
    if (pn)
        free(pn->code);
    free(pn);
}

/* Chosen by the workflow file only (node.h pinned_keys): a request cannot lengthen the time limit. */
static const char *const py_pinned[] = {"code", "timeout", "sandbox_mode", NULL};

const node_type node_python_code = {
    .name = "PythonCodeNode",
    .config_keys = py_sync_keys,
    .pinned_keys = py_pinned,
    .input_ports = NULL,
    .compile = py_compile_sync,
    .has_output = py_has_output,
    .start = py_start,
    .free = py_free,
};

const node_type node_python_code_async = {
    .name = "AsyncPythonCodeNode",
    .config_keys = py_async_keys,
    .pinned_keys = py_pinned,
    .input_ports = NULL,
    .compile = py_compile_async,
    .has_output = py_has_output,
    .start = py_start,
    .free = py_free,
};
