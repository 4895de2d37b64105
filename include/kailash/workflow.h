/* workflow: a workflow file turned into an immutable, compiled definition (src/workflow/).
 *
 * loader.c reads every accepted shape of WORKFLOWS.md (the SDK's to_dict(), WorkflowBuilder lists,
 * both connection spellings) into one normalised form, compiles every node's config and templates,
 * and graph.c checks the graph and computes a topological order. Nothing is parsed at run time: the
 * engine only walks these structures. A workflow is immutable once loaded and may be read by any
 * number of threads; its owner (the engine's executor) frees it. */
#ifndef KAILASH_WORKFLOW_H
#define KAILASH_WORKFLOW_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "kailash/config.h"
#include "kailash/node.h"
#include "kailash/schema.h"
#include "kailash/template.h"

/* One connection: source node's port (plus an optional dotted path inside it) into a target input. */
typedef struct wf_conn {
    size_t src, dst; /* node indices */
    char *src_port;  /* first segment of source_output */
    char *src_path;  /* the rest ("content.items"), or NULL */
    char *dst_input;
} wf_conn;

/* One config key of a node: its compiled template (constant values compile to constants). */
typedef struct wf_param {
    char *key;
    tmpl *t;
    json_t *constant; /* the value when t holds no expression (shared, never modified), else NULL */
} wf_param;

typedef struct wf_node {
    char *id;
    const node_type *type;
    void *compiled;   /* owned; freed with type->free */
    wf_param *params; /* config keys except on_error */
    size_t nparams;
    int on_error_continue;
    size_t *in; /* indices of connections into this node */
    size_t nin;
    size_t *deps; /* distinct nodes this one waits for (connections and nodes.<id> references) */
    size_t ndeps;
    size_t *succ; /* nodes waiting for this one */
    size_t nsucc;
    int has_out;      /* some connection leaves this node */
    char **open_keys; /* gateway.overridable[id]: pinned keys a request may set; owned, NULL-terminated, or NULL */
} wf_node;

/* gateway.outputs entry: name -> node.port[.path] */
typedef struct wf_output {
    char *name;
    size_t node;
    char *port;
    char *path; /* or NULL */
} wf_output;

/* gateway.access (API.md "Authentication and authorization"), compiled; enforced by the auth module
 * only while enable_auth is on. */
typedef struct wf_condition {
    char *attribute; /* the principal attribute compared */
    char **path;     /* "equals": the segments after "inputs." (NULL-terminated), or NULL */
    json_t *value;   /* "value": the literal, or NULL */
} wf_condition;

typedef struct wf_access {
    int present;   /* the workflow has an access block */
    int is_public; /* callers without credentials may run it */
    char **roles;  /* any one suffices; NULL-terminated, or NULL: any authenticated caller */
    wf_condition *conds;
    size_t nconds;
} wf_access;

enum { WF_CACHE_GLOBAL = 0, WF_CACHE_PRINCIPAL, WF_CACHE_TENANT };

typedef struct workflow {
    char *name, *version, *description, *file;
    wf_node *nodes;
    size_t nnodes;
    size_t *order; /* topological order of node indices */
    wf_conn *conns;
    size_t nconns;
    schema *inputs_schema; /* NULL: any object */
    wf_output *outputs;    /* NULL with noutputs 0: sinks' whole outputs */
    size_t noutputs;
    int timeout_ms;
    int max_concurrency;
    int max_queue;
    wf_access access;
    int cache_ttl_s;     /* gateway.cache: seconds an answer is kept (0: not cached) */
    int cache_scope;     /* WF_CACHE_GLOBAL, _PRINCIPAL or _TENANT (after the auth-on default) */
    char *cache_tenant;  /* _TENANT: the principal attribute that joins the key (default "tenant") */
    char def_hash[33];   /* the normalised definition's hash: joins cache keys, so an edit misses */
    uint64_t cache_tag;  /* the name's hash: tags its L1 entries, for purging */
    int rate_per_minute; /* gateway.rate_limit: per principal for this workflow (0: none) */
    int rate_burst;      /* its bucket (0: one minute's worth) */
    int has_async;      /* some node runs on the I/O loop */
    int may_block;      /* some node may block (node_type.may_block): never run it on an I/O loop */
    json_t *normalized; /* GET /workflows/{name} */
    json_t *summary;    /* one entry of GET /workflows */
} workflow;

/* What loading needs besides the file. Borrowed. */
typedef struct wf_load_env {
    const kconfig *cfg;
    const node_env *nodes;
} wf_load_env;

/* Loads one file. Returns 0 with *out (caller frees with workflow_free), or -1 after appending each
 * problem as a string "FILE: node 'ID': config.KEY: expectation" to problems (an array). Warnings
 * (e.g. an access block while auth is off) are logged, not returned. */
int workflow_load_file(const char *path, const wf_load_env *env, workflow **out, json_t *problems);

/* Same from parsed JSON (borrowed); file names the source in messages, default_name is used when the
 * document has no "name". */
int workflow_load_json(json_t *doc, const char *file, const char *default_name, const wf_load_env *env, workflow **out,
                       json_t *problems);

void workflow_free(workflow *wf);

/* Non-zero when port is an output port of n (its type's ports; with on_error "continue" also the
 * "error" and "failed" ports a failure leaves). */
int wf_node_has_output(const wf_node *n, const char *port);

/* pinned.c: what a request may set (WORKFLOWS.md "Data flow": pinned keys and gateway.overridable).
 * Non-zero when n's type takes key (a config key or an input port). */
int wf_node_takes(const wf_node *n, const char *key);
/* The input that key fills on n: the target of n's type's alias for key, else key itself. */
const char *wf_node_input_name(const wf_node *n, const char *key);
/* Non-zero when a connection of wf fills n's input key. */
int wf_node_conn_fills(const workflow *wf, const wf_node *n, const char *key);
/* Non-zero when a request may set n's key: its type does not pin it, or gateway.overridable opens it. */
int wf_node_key_open(const wf_node *n, const char *key);
/* Checks a request's inputs (object) and parameters (object of node id -> object, or NULL), after
 * /execute's scoping: 0, or -1 with err naming the node and key a request tried to set. */
int workflow_check_request(const workflow *wf, json_t *inputs, json_t *parameters, char *err, size_t errlen);

/* Index of node id, or -1. */
long workflow_node_index(const workflow *wf, const char *id);

/* graph.c: fills succ and order from deps; appends "FILE: cycle through nodes a, b" on a cycle. */
int workflow_graph_build(workflow *wf, json_t *problems);

#endif
