/* node: the node-type interface and the registry of node types (src/nodes/).
 *
 * A node type is one file in src/nodes/ and one line in src/nodes/registry.c. It provides
 *   compile  check and precompile its config at load, with a precise error;
 *   run      synchronous, CPU-only, short (TransformNode, SwitchNode, ...), or
 *   start    asynchronous I/O (HTTPRequestNode, ...): begins the work and returns at once; the
 *            node later calls call->done exactly once, from any thread.
 *
 * The loader owns config handling that is the same for every node: it checks config keys against
 * config_keys, compiles `{{ }}` templates in every config value, and strips "on_error". At run time
 * the engine renders those templates and overlays workflow inputs, connection values and request
 * parameters (WORKFLOWS.md "Data flow"); the node sees only the final `inputs` object. compile() gets
 * the raw config, so it must type-check only values that hold no template (tmpl_string_has_expr),
 * and run()/start() must check the types of what it finally receives. */
#ifndef KAILASH_NODE_H
#define KAILASH_NODE_H

#include <jansson.h>
#include <stddef.h>

#include "kailash/template.h"

struct ioloop;

/* Load-time facts a node's compile may use. Borrowed, valid during compile only (copy what you keep). */
typedef struct node_env {
    const char *data_dir;      /* absolute, symlinks resolved, no trailing slash */
    size_t max_response_bytes; /* upstream.max_response_bytes */
    int connect_timeout_ms;    /* upstream.connect_timeout_ms */
    int verify_tls;            /* upstream.verify_tls */
} node_env;

/* A node failure. code is an API.md error code (or "cancelled": the engine aborted the node through
 * node_call.cancel): "upstream_error" (502: transport error, node timeout,
 * oversize or unparsable upstream answer), "timeout" (504: the run's deadline passed), "bad_request"
 * (400: a value that came from the request is refused, e.g. a file_path escaping data_dir or a URL
 * whose host was changed), or "internal" (500: the node could not do its work, e.g. a file is missing
 * or a value has the wrong type).
 * message is shown to the client: never put a secret (a token, a header value) in it. */
typedef struct node_error {
    char code[32];
    char message[256];
} node_error;

/* Fills err and returns -1, for `return node_fail(err, "upstream_error", "...")`. */
int node_fail(node_error *err, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

typedef struct node_call node_call;
/* Completion of start(): outputs is stolen (a new reference, or NULL when err is set). */
typedef void (*node_done_fn)(node_call *call, json_t *outputs, const node_error *err);

/* One execution of one node. Everything is borrowed and valid until run() returns or done() is called. */
struct node_call {
    const char *node_id;
    json_t *inputs;          /* final resolved inputs (an object) */
    const tmpl_scope *scope; /* the run's template scope */
    double deadline_ms;      /* util_now_ms() after which the run is out of time */
    int hops;                /* gateways the run's request passed (X-Kailash-Hops); calls out send hops + 1 */
    int depth;               /* WorkflowNode nesting: 0 for a run a request started, +1 per level */
    struct ioloop *io;       /* the I/O loop, for start() */
    node_done_fn done;       /* for start() */
    void *engine_data;       /* the engine's own; nodes don't touch it */
    double started_ms;       /* the engine's: metrics_clock() when the node started (0: not timed) */
    /* Set by start() when its work can be aborted (NULL otherwise, and again once done has run; the
     * engine sets it NULL before start). Call it only on call->io's thread, between start's return
     * of 0 and done: it aborts the work in flight (an HTTP node's transfer is taken out of the multi
     * handle or its connection closed, a retry's wait withdrawn), and done is called before it
     * returns, once, with err code "cancelled". */
    void (*cancel)(node_call *call);
    void *node_data; /* the node's own, for cancel; the engine doesn't touch it */
};

/* A config key the SDK's node declares for a feature kailashd does not have. SDK exports carry every
 * parameter's default, so the loader accepts (and drops) the key at that default, and refuses any
 * other value naming the key. */
typedef struct node_sdk_default {
    const char *key;
    const char *json; /* the SDK's default, as JSON text: "false", "0", "null" */
} node_sdk_default;

/* Another name the SDK's node takes an input by (its NodeParameter workflow_alias / auto_map_from):
 * a workflow input, connection or request parameter called `from` fills the input `to` when nothing
 * fills `to` by its own name. */
typedef struct node_alias {
    const char *from;
    const char *to;
} node_alias;

typedef struct node_type {
    const char *name;
    const char *const *config_keys; /* NULL-terminated: the config keys this type accepts */
    const node_sdk_default *sdk_defaults; /* {NULL, NULL}-terminated, or NULL */
    const char *const *input_ports; /* NULL-terminated connection targets; NULL means any name */
    const node_alias *input_aliases; /* {NULL, NULL}-terminated, in the SDK's order, or NULL */
    /* NULL-terminated keys that choose where and how the node reaches out (URL, method, headers,
     * credentials, TLS, file paths, upstream lists), or NULL. They come only from the workflow file:
     * a request's inputs or parameters may not set them unless the workflow's gateway.overridable
     * opens them (WORKFLOWS.md "Data flow"). The engine enforces this; the node need not. */
    const char *const *pinned_keys;
    /* Non-zero when run() may wait on something slow (the disk: reads up to 64 MiB, fsync). A
     * workflow with such a node never runs on an I/O loop thread, only on the worker pool, so it
     * can't stall that loop's other clients and upstream calls. */
    int may_block;
    /* Non-zero when a null on one of this node's ports means "branch not taken" (SwitchNode, whose
     * results hold the untaken ports as null, as the SDK's do): a connection from such a port is
     * absent, and a node whose connections are all absent is skipped (the SDK's skip_branches). */
    int null_port_absent;
    /* Checks config (borrowed, without "on_error") and builds *compiled (may stay NULL).
     * err reads like "config.operator: expected one of == != > < >= <= in contains is_null is_not_null". */
    int (*compile)(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen);
    /* Non-zero when port is an output port of this node (ports may depend on config, e.g. switch cases). */
    int (*has_output)(const void *compiled, const char *port);
    /* Synchronous run: returns 0 with *outputs (new reference, an object of ports) or -1 with err. */
    int (*run)(const void *compiled, node_call *call, json_t **outputs, node_error *err);
    /* Asynchronous start (NULL for CPU nodes): returns 0 and later calls call->done exactly once,
     * or returns -1 with err filled and never calls done. */
    int (*start)(const void *compiled, node_call *call, node_error *err);
    void (*free)(void *compiled); /* may be NULL */
    /* The loaded workflow this node runs (WorkflowNode), or NULL: its name, or with *by_file set the
     * file name (no directory) in workflows_dir it was loaded from. The registry refuses a workflow
     * whose chain of such calls is missing a workflow, loops, or nests too deep. May be NULL. */
    const char *(*calls_workflow)(const void *compiled, int *by_file);
} node_type;

/* Releases what node types keep between runs (e.g. idle HTTP handles); call once at shutdown, after
 * the last run. */
void node_registry_shutdown(void);

/* Gives loop io what node types keep per loop (outbound HTTP: its plain client and libcurl multi
 * handle, with max_connects kept-alive connections each); they go when the loop stops. Any thread.
 * 0, or -1 with err. */
int node_registry_loop_start(struct ioloop *io, long max_connects, char *err, size_t errlen);

/* The node type called name (the SDK's class name), or NULL. Thread-safe. */
const node_type *node_registry_find(const char *name);

#endif
