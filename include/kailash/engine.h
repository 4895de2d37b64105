/* engine: runs workflows (src/engine/).
 *
 *   registry   the set of loaded workflows, one executor each; reload builds a new set and swaps one
 *              pointer, in-flight runs keep a reference to what they started with.
 *   executor   one per workflow: at most max_concurrency runs at once, at most max_queue waiting
 *              (a bulkhead: one slow workflow cannot take the others' capacity).
 *   run        one execution: walks the compiled graph, runs CPU nodes on the calling thread, starts
 *              I/O nodes on the I/O loop; their completions put the run back on the worker pool.
 *
 * Thread safety: every function here is thread-safe unless it says otherwise. */
#ifndef KAILASH_ENGINE_H
#define KAILASH_ENGINE_H

#include <jansson.h>
#include <stddef.h>

#include "kailash/config.h"
#include "kailash/workflow.h"

typedef struct executor executor;
typedef struct run run;
typedef struct registry registry;

/* ---- engine ---- */

/* Resolves data_dir (creating it if missing) and the template environment, without starting threads
 * (enough for loading workflows, as `kailashd --check` does). */
int engine_prepare(const kconfig *cfg, char *err, size_t errlen);
/* engine_prepare, then starts the worker pool and the I/O loops (cfg->workers threads each, at most 64
 * loops). Call once before anything else. */
int engine_start(const kconfig *cfg, char *err, size_t errlen);
/* Runs fn(arg) on the worker pool (work that must not hold up an I/O loop). 0, or -1 when the pool is
 * stopping or out of memory (fn not called). */
int engine_submit(void (*fn)(void *arg), void *arg);
/* The I/O loops engine_start made (*n of them), for the HTTP front end to run its daemons on. */
struct ioloop *const *engine_loops(int *n);
/* Stops them; call after every run has finished. */
void engine_stop(void);
/* The node_env handed to node compiles for cfg (data_dir resolved); valid until engine_stop. */
const node_env *engine_node_env(void);

/* ---- registry ---- */

/* Loads every *.json in cfg->workflows_dir. A file that fails keeps the version prev had from the same
 * file, if any. Never NULL unless out of memory; look at registry_errors for what failed. Does not
 * need engine_start (kailashd --check uses it alone, with an empty node_env data_dir resolved). */
registry *registry_load(const kconfig *cfg, const node_env *nenv, registry *prev);
/* [{"file": ..., "message": ...}] of files that failed (borrowed). */
json_t *registry_errors(const registry *r);
/* Every problem found, one string each ("FILE: node 'ID': config.KEY: ..."), for --check (borrowed). */
json_t *registry_problems(const registry *r);
size_t registry_count(const registry *r);
/* The i-th executor in name order, or NULL; borrowed while r is held. */
executor *registry_at(const registry *r, size_t i);
/* The executor of workflow name, or NULL; borrowed while r is held. */
executor *registry_find(const registry *r, const char *name);
/* The executor of the workflow loaded from the file called file_name (no directory) in workflows_dir,
 * or NULL; borrowed while r is held. */
executor *registry_find_file(const registry *r, const char *file_name);
/* Makes r the current registry (takes the caller's reference) and releases the previous one. */
void registry_publish(registry *r);
/* The current registry with one more reference (NULL before the first publish). */
registry *registry_acquire(void);
void registry_release(registry *r);

/* ---- executor ---- */

/* The workflow it runs (borrowed while the executor is held). */
const workflow *exec_workflow(const executor *ex);
/* Cancels every run of ex that is running or queued (run_cancel); returns how many. For shutdown. */
int exec_cancel_all(executor *ex);
/* exec_cancel_all over every workflow of the current registry; returns how many runs. */
int engine_cancel_all(void);
/* Runs queued or running right now (for tests and metrics). */
int exec_running(executor *ex);
int exec_queued(executor *ex);
/* Queued runs' waiting records not yet let go: a run that left the queue lets go of its record (and
 * its deadline timer of the run) within a loop round, not at its deadline. For tests. */
int exec_held(executor *ex);

enum { EXEC_OK = 0, EXEC_OVERLOADED = -1 };

/* Starts r now if a slot is free, else queues it. A started run begins on the calling thread when
 * may_inline and no node of the workflow may block (workflow.may_block): CPU nodes run here and, if
 * the workflow has no I/O node, the run completes before this returns; otherwise on the pool. Returns
 * EXEC_OVERLOADED, without taking r, when the queue is full. Takes the caller's reference to r
 * otherwise. The run's done callback is called exactly once. */
int exec_submit(executor *ex, run *r, int may_inline);

/* Async jobs take a place in their workflow's queue when accepted, before their run exists, so the
 * place is there when the job's record is durable: exec_reserve holds one (EXEC_OVERLOADED when the
 * queue, counting places held, is full), exec_submit_reserved uses it (starts r, or queues it; takes
 * the caller's reference to r; never refuses), exec_unreserve gives it back unused. */
int exec_reserve(executor *ex);
void exec_unreserve(executor *ex);
void exec_submit_reserved(executor *ex, run *r);

/* ---- run ---- */

/* How deep WorkflowNode runs may nest: a workflow, the one it calls, ... ENGINE_MAX_DEPTH levels of
 * calls below the run a request started. The registry refuses deeper chains at load. */
#define ENGINE_MAX_DEPTH 8

typedef enum run_status { RUN_QUEUED, RUN_RUNNING, RUN_COMPLETED, RUN_FAILED, RUN_TIMEOUT, RUN_CANCELLED } run_status;

/* Called once when r ends, on whatever thread ended it. r stays valid until run_release. */
typedef void (*run_done_fn)(run *r, void *ud);

/* Template scope values that come from the request. Copied. */
typedef struct run_opts {
    const char *request_id;
    json_t *inputs;     /* object (borrowed; kept with a reference) */
    json_t *parameters; /* object node_id -> object, or NULL (borrowed; kept with a reference) */
    const char *principal_id;     /* the caller ("key:ci"; copied), NULL: anonymous */
    json_t *principal_roles;      /* its roles (array) and attributes (object) for templates, or NULL */
    json_t *principal_attributes; /* (borrowed; kept with a reference) */
    int hops;           /* X-Kailash-Hops of the request (0 without one): upstream calls send hops + 1 */
    int depth;          /* 0, or a WorkflowNode's run: its caller's depth + 1 (at most ENGINE_MAX_DEPTH) */
    double deadline_ms; /* 0, or a util_now_ms() the run must end by even if its timeout_ms is longer */
    struct ioloop *home; /* NULL (the creating thread's loop), or the loop its I/O starts on: a WorkflowNode's
                          * run stays on its caller's loop, as one request's I/O does */
    const char *cache;   /* the run record's "cache": "MISS" (looked up, not found), else "BYPASS" */
    const char *run_id;  /* NULL: a new UUIDv7; else this one (an accepted job's, 36 characters) */
    double created_ms;   /* 0: now; else the util_now_ms() the run counts from (an async job's acceptance) */
    int async;           /* an async job: its timeout counts from its start, not from created_ms, and it
                          * is recorded as running when it starts */
    int events;          /* the engine's listener hears this run's events (engine_listener_set) */
    run_done_fn done;
    void *ud;
} run_opts;

/* A new run of ex's workflow, holding a reference to ex. The caller holds one reference. */
run *run_create(executor *ex, const run_opts *opts);
void run_retain(run *r);
void run_release(run *r);
/* Cancels r unless it has ended: no further node starts, nodes in flight are asked to stop (their
 * node_call.cancel hook, on the run's home loop), and the run ends with status cancelled (error code
 * "cancelled"); its done callback is called, once, on whichever thread ends it. A queued run leaves
 * its executor's queue at once. Thread-safe; the caller keeps its own reference. Every end (failed,
 * timeout, cancelled) also asks the nodes still in flight to stop. */
void run_cancel(run *r);

/* Accessors: valid after done was called. Borrowed unless said otherwise. */
const char *run_id(const run *r);
run_status run_get_status(const run *r);
const char *run_status_name(run_status s);
json_t *run_outputs(const run *r); /* the run's outputs object */
json_t *run_results(const run *r); /* node id -> output object, for nodes that ran */
json_t *run_skipped(const run *r); /* new reference: array of skipped node ids */
/* error fields when status is failed/timeout: code (API.md), message, node id ("" if none). */
const char *run_error_code(const run *r);
const char *run_error_message(const run *r);
const char *run_error_node(const run *r);
double run_duration_ms(const run *r);
const workflow *run_workflow(const run *r);
/* For the run record: the inputs object, the caller ("anonymous" without one), the WorkflowNode
 * depth (0: a run a request or job started), run_opts.cache, and how long it waited for a slot. */
json_t *run_inputs(const run *r);
const char *run_request_id(const run *r); /* "" without a request */
const char *run_principal(const run *r);
int run_depth(const run *r);
const char *run_cache_tag(const run *r);
double run_wait_ms(const run *r);
int run_is_async(const run *r);
/* run_opts.ud, for sinks of the module that created the run (it knows the type). */
void *run_user_data(const run *r);

/* ---- events ---- */

/* What a run emits as it goes (API.md "Events (SSE)"), for runs created with run_opts.events only:
 * a run nobody asked events of costs one branch per node. */
typedef enum engine_event_kind {
    EV_RUN_STARTED,
    EV_NODE_STARTED,
    EV_NODE_COMPLETED,
    EV_NODE_SKIPPED,
    EV_NODE_FAILED,
    EV_RUN_COMPLETED,
    EV_RUN_FAILED /* failed, timeout or cancelled: status says which */
} engine_event_kind;

/* Borrowed, valid during on_event only. Called on the thread advancing the run (a loop or a pool
 * worker), in the run's order; must not block. */
typedef struct engine_event {
    engine_event_kind kind;
    const run *run;
    const char *run_id;
    const char *workflow;
    double ts_ms;            /* util_now_ms() */
    const char *node;        /* node events: the node's id, its type ("HTTPRequestNode") */
    const char *node_type;
    json_t *outputs;         /* EV_NODE_COMPLETED: the node's outputs */
    run_status status;       /* run end events */
    const char *error_code;  /* EV_NODE_FAILED, EV_RUN_FAILED: code and message ("" otherwise) */
    const char *error_message;
} engine_event;

typedef struct engine_listener {
    const char *name;
    void (*on_event)(const engine_event *e);
} engine_listener;
/* Sets the one listener (borrowed for the process's life), before the first run. */
void engine_listener_set(const engine_listener *l);
/* Cancel requests for runs of this process: run_id -> run, for runs created with run_opts.async
 * while they are queued or running. A new reference, or NULL. */
run *engine_async_find(const char *run_id);

/* ---- sinks ---- */

/* A run's end as sinks see it. Everything is borrowed, valid during on_run_end only. */
typedef struct run_summary {
    const char *run_id;
    const char *workflow;
    const char *request_id; /* "" for a run without a request */
    run_status status;
    const char *error_code; /* "" unless failed or timed out */
    double duration_ms;
    const run *run; /* the run itself, for the accessors above (outputs, results) */
} run_summary;

/* Where the ends of runs go (run records, cache stores, events), whatever started the run: an HTTP
 * request, an async job, `kailashd run`. The engine holds the sinks; each is one static table. */
typedef struct engine_sink {
    const char *name;
    /* Once per run, on the thread that ended it, before the run's own done callback (so a record
     * exists before the answer). Must not block: hand the work to the sink's own thread. */
    void (*on_run_end)(const run_summary *s);
    /* Writes out everything buffered; called at stop, after every run has ended (or was cut). */
    void (*flush)(void);
    /* An async run begins (run_opts.async), on the thread that begins it; NULL: not told. Must not block. */
    void (*on_run_start)(const run *r);
} engine_sink;

/* Registers s (borrowed for the process's life), before the first run starts (at most 16). Not
 * thread-safe against runs ending: call it at start. 0, or -1 when full. */
int engine_sink_add(const engine_sink *s);
/* Calls every sink's flush, in the order they were added. */
void engine_sinks_flush(void);

#endif
