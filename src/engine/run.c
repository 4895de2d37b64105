/* run: one execution of a compiled workflow.
 *
 * A run is a small actor. Exactly one thread at a time advances it (the `scheduled` token): the
 * thread that begins it, or a pool worker picked up after an I/O node completes. Completions from the
 * I/O loop go into a locked mailbox; whoever holds the token drains it and advances again, so node
 * bookkeeping needs no lock and no worker ever waits for another.
 *
 * Advancing pops ready nodes in topological order: a node whose every incoming connection is absent
 * (its source was skipped, or left that port empty, as a switch does) is skipped; otherwise its
 * inputs are built (config, then matching workflow inputs, connections, request parameters; config
 * templates rendered against that), and a CPU node runs right here while an I/O node is started and
 * counted in flight, always on the run's home loop (the loop of the request that created it), even
 * when the node before it ran on a pool thread: a request, its upstream calls and their completions
 * stay on one loop (DESIGN.md "A run has a home loop"). The run ends when nothing is ready and nothing is in flight, or at the first
 * failure of a node without on_error "continue". References: the creator holds one, each node in
 * flight holds one, so a late completion after a failure never touches freed memory. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "kailash/metrics.h"
#include "kailash/util.h"

enum { N_PENDING, N_RUNNING, N_DONE, N_SKIPPED };

#define MAIL_CANCEL ((size_t)-1) /* a mail that cancels the run rather than completing a node */

typedef struct mail {
    size_t node;
    json_t *outputs;
    node_error err;
    int failed;
    struct mail *next;
} mail;

struct run {
    atomic_int refs;
    executor *ex;
    const workflow *wf;
    char id[37];
    char request_id[132];
    char *principal_id;         /* NULL: "anonymous" */
    json_t *principal_roles;    /* a reference, or NULL */
    json_t *principal_attributes;
    json_t *inputs, *parameters;
    int hops;        /* X-Kailash-Hops of the request that started the run */
    const char *cache_tag; /* run_opts.cache: "MISS" or "BYPASS" (static) */
    int depth;       /* WorkflowNode nesting (run_opts.depth) */
    ioloop *home;    /* the loop of the thread that created the run: its I/O starts there */
    json_t *results; /* node id -> outputs: also the template scope's `nodes` */
    json_t *outputs;
    unsigned char *state;
    size_t *waiting; /* dependencies not yet finished, per node */
    size_t *ready;   /* FIFO of node indices */
    size_t rhead, rtail;
    node_call *calls; /* per node, for I/O nodes in flight */
    tmpl_scope scope;
    int inflight;
    int ended;
    run_status status;
    char err_code[32], err_msg[256], err_node[132];
    double t_created, t_started, t_ended, deadline;
    pthread_mutex_t mu;
    mail *mail_head, *mail_tail;
    int scheduled;
    run_done_fn done;
    void *ud;
    int has_slot;      /* it holds one of its executor's max_concurrency slots */
    size_t slot_index; /* its place in the executor's active array (the executor's, under its lock) */
    int async;          /* run_opts.async */
    int events;         /* run_opts.events */
    int begun;          /* run_begin took it (under mu) */
    int cancel_pending; /* run_cancel was called (under mu) */
};

static void run_drain(run *r);
static void run_cancel_inflight(run *r);

/* Tells the listener of an event of r (only runs created with run_opts.events). */
static void emit(run *r, engine_event_kind kind, size_t node, json_t *outputs, const char *code, const char *msg)
{
    if (!r->events)
        return;
    const wf_node *n = node == (size_t)-1 ? NULL : &r->wf->nodes[node];
    engine_event e = {.kind = kind,
                      .run = r,
                      .run_id = r->id,
                      .workflow = r->wf->name,
                      .ts_ms = util_now_ms(),
                      .node = n ? n->id : NULL,
                      .node_type = n ? n->type->name : NULL,
                      .outputs = outputs,
                      .status = r->status,
                      .error_code = code ? code : "",
                      .error_message = msg ? msg : ""};
    engine_emit(&e);
}

run *run_create(executor *ex, const run_opts *o)
{
    const workflow *wf = exec_workflow(ex);
    run *r = calloc(1, sizeof *r);
    size_t n = wf->nnodes;
    if (!r)
        return NULL;
    atomic_init(&r->refs, 1);
    pthread_mutex_init(&r->mu, NULL); /* before any failure: run_release destroys it */
    r->state = calloc(n, 1);
    r->waiting = calloc(n, sizeof *r->waiting);
    r->ready = calloc(n, sizeof *r->ready);
    r->calls = calloc(n, sizeof *r->calls);
    r->results = json_object();
    if (!r->state || !r->waiting || !r->ready || !r->calls || !r->results) {
        run_release(r); /* r->ex is still NULL: nothing to give back to the executor */
        return NULL;
    }
    exec_retain(ex);
    r->ex = ex;
    r->wf = wf;
    if (o->run_id)
        util_copy(r->id, sizeof r->id, o->run_id);
    else
        util_uuid7(r->id);
    util_copy(r->request_id, sizeof r->request_id, o->request_id ? o->request_id : "");
    r->inputs = o->inputs ? json_incref(o->inputs) : json_object();
    r->parameters = o->parameters ? json_incref(o->parameters) : NULL;
    r->hops = o->hops;
    r->depth = o->depth;
    r->cache_tag = o->cache && strcmp(o->cache, "MISS") == 0 ? "MISS" : "BYPASS";
    r->principal_id = o->principal_id ? strdup(o->principal_id) : NULL;
    r->principal_roles = o->principal_roles ? json_incref(o->principal_roles) : NULL;
    r->principal_attributes = o->principal_attributes ? json_incref(o->principal_attributes) : NULL;
    /* the request's loop when created on one (the front end's), the caller's for a WorkflowNode, else a fixed one */
    r->home = o->home ? o->home : engine_io();
    r->done = o->done;
    r->ud = o->ud;
    r->status = RUN_QUEUED;
    r->t_created = o->created_ms > 0 ? o->created_ms : util_now_ms();
    r->async = o->async;
    r->events = o->events;
    /* an async job's timeout counts from its start (run_begin); until then only its queue bounds it */
    r->deadline = o->async ? 1e300 : r->t_created + wf->timeout_ms;
    if (o->deadline_ms > 0 && o->deadline_ms < r->deadline)
        r->deadline = o->deadline_ms; /* a WorkflowNode's run ends by its caller's deadline */
    for (size_t i = 0; i < n; i++)
        r->waiting[i] = wf->nodes[i].ndeps;
    for (size_t i = 0; i < n; i++)
        if (wf->nodes[wf->order[i]].ndeps == 0)
            r->ready[r->rtail++] = wf->order[i];
    if (r->async)
        engine_async_add(r);
    r->scope = (tmpl_scope){.inputs = r->inputs,
                            .nodes = r->results,
                            .run_id = r->id,
                            .request_id = r->request_id,
                            .principal_id = r->principal_id ? r->principal_id : "anonymous",
                            .principal_roles = r->principal_roles,
                            .principal_attributes = r->principal_attributes,
                            .env = engine_template_env()};
    return r;
}

void run_retain(run *r)
{
    atomic_fetch_add(&r->refs, 1);
}

void run_release(run *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    if (r->async && !r->ended) /* never submitted: it ends here, unknown to the cancel table */
        engine_async_remove(r);
    for (mail *m = r->mail_head, *next; m; m = next) {
        next = m->next;
        json_decref(m->outputs);
        free(m);
    }
    json_decref(r->inputs);
    json_decref(r->parameters);
    free(r->principal_id);
    json_decref(r->principal_roles);
    json_decref(r->principal_attributes);
    json_decref(r->results);
    json_decref(r->outputs);
    free(r->state);
    free(r->waiting);
    free(r->ready);
    free(r->calls);
    pthread_mutex_destroy(&r->mu);
    if (r->ex)
        exec_release(r->ex);
    free(r);
}

/* ---- ending ---------------------------------------------------------------------------------- */

static json_t *outputs_mapped(run *r)
{
    const workflow *wf = r->wf;
    json_t *out = json_object();
    for (size_t i = 0; i < wf->noutputs; i++) {
        const wf_output *o = &wf->outputs[i];
        json_t *port = json_object_get(json_object_get(r->results, wf->nodes[o->node].id), o->port);
        json_t *v = port && o->path ? util_json_path(port, o->path) : port;
        json_object_set(out, o->name, v ? v : json_null());
    }
    return out;
}

static json_t *outputs_sinks(run *r)
{
    json_t *out = json_object();
    for (size_t i = 0; i < r->wf->nnodes; i++) {
        const wf_node *n = &r->wf->nodes[i];
        json_t *v = json_object_get(r->results, n->id);
        if (!n->has_out && v && r->state[i] == N_DONE)
            json_object_set(out, n->id, v);
    }
    return out;
}

static void run_end(run *r, run_status st)
{
    if (r->ended)
        return;
    r->ended = 1;
    r->status = st;
    r->t_ended = util_now_ms();
    if (!r->t_started)
        r->t_started = r->t_ended;
    if (st == RUN_COMPLETED)
        r->outputs = r->wf->noutputs ? outputs_mapped(r) : outputs_sinks(r);
    executor *ex = r->ex;
    exec_retain(ex);
    if (r->async)
        engine_async_remove(r);
    emit(r, st == RUN_COMPLETED ? EV_RUN_COMPLETED : EV_RUN_FAILED, (size_t)-1, NULL, st == RUN_COMPLETED ? NULL : r->err_code,
         st == RUN_COMPLETED ? NULL : r->err_msg);
    engine_sinks_run_end(r);
    if (r->done)
        r->done(r, r->ud);
    if (r->has_slot)
        exec_slot_release(ex, r);
    r->has_slot = 0;
    exec_release(ex);
    run_cancel_inflight(r);
}

/* On the home loop, after the run ended: asks every node still in flight to stop (its cancel hook),
 * so nothing the run started goes on holding an upstream connection or a retry timer. Only the loop
 * clears a hook (node_async_done, before the run learns of the completion), so reading the hooks
 * here cannot race with a completion. */
static void run_cancel_inflight_task(void *arg)
{
    run *r = arg;
    for (size_t i = 0; i < r->wf->nnodes; i++) {
        node_call *call = &r->calls[i];
        void (*cancel)(node_call *) = call->cancel;
        if (cancel) {
            call->cancel = NULL;
            cancel(call);
        }
    }
    run_release(r);
}

static void run_cancel_inflight(run *r)
{
    if (r->inflight == 0 || !r->home)
        return;
    run_retain(r);
    if (ioloop_post(r->home, run_cancel_inflight_task, r) != 0)
        run_release(r); /* the loop is stopping: it aborts every transfer itself */
}

static void run_fail(run *r, size_t node, const node_error *e)
{
    util_copy(r->err_code, sizeof r->err_code, e->code[0] ? e->code : "internal");
    util_copy(r->err_msg, sizeof r->err_msg, e->message);
    util_copy(r->err_node, sizeof r->err_node, node == (size_t)-1 ? "" : r->wf->nodes[node].id);
    run_end(r, strcmp(r->err_code, "timeout") == 0 ? RUN_TIMEOUT : RUN_FAILED);
}

double run_deadline_ms(const run *r)
{
    return r->deadline;
}

int run_expired(const run *r)
{
    return util_now_ms() > r->deadline;
}

void run_end_timeout(run *r)
{
    node_error e;
    node_fail(&e, "timeout", "the run did not finish within %d ms", r->wf->timeout_ms);
    run_fail(r, (size_t)-1, &e);
}

/* ---- inputs ------------------------------------------------------------------------------------ */

/* The value a connection carries, or NULL when it is absent. Borrowed. */
static json_t *conn_value(run *r, const wf_conn *c)
{
    if (r->state[c->src] != N_DONE)
        return NULL;
    const wf_node *src = &r->wf->nodes[c->src];
    json_t *port = json_object_get(json_object_get(r->results, src->id), c->src_port);
    if (port && json_is_null(port) && src->type->null_port_absent)
        return NULL;
    if (!port || !c->src_path)
        return port;
    json_t *v = util_json_path(port, c->src_path);
    return v ? v : json_null();
}

/* Non-zero when key of obj is an alias of n's (the SDK's auto_map_from) that yields: obj also holds
 * the input by its own name, or by an alias the SDK tries first. */
static int alias_yields(const wf_node *n, json_t *obj, const char *key)
{
    const char *name = wf_node_input_name(n, key);
    if (name == key)
        return 0;
    if (json_object_get(obj, name))
        return 1;
    for (const node_alias *a = n->type->input_aliases; strcmp(a->from, key) != 0; a++)
        if (strcmp(a->to, name) == 0 && json_object_get(obj, a->from))
            return 1;
    return 0;
}

/* Layers 2-4 of WORKFLOWS.md's data flow on top of the constant config (layer 1). Inputs given by
 * an alias land on the input's own name. */
static json_t *inputs_layered(run *r, const wf_node *n)
{
    json_t *p = json_object();
    for (size_t i = 0; i < n->nparams; i++)
        if (n->params[i].constant)
            json_object_set(p, n->params[i].key, n->params[i].constant);
    const char *k;
    json_t *v;
    json_object_foreach(r->inputs, k, v)
    {
        if (wf_node_takes(n, k) && !wf_node_conn_fills(r->wf, n, k) && wf_node_key_open(n, k) &&
            !alias_yields(n, r->inputs, k))
            json_object_set(p, wf_node_input_name(n, k), v);
    }
    for (size_t c = 0; c < n->nin; c++) {
        const wf_conn *cn = &r->wf->conns[n->in[c]];
        json_t *cv = conn_value(r, cn);
        if (cv)
            json_object_set(p, cn->dst_input, cv);
    }
    json_t *over = r->parameters ? json_object_get(r->parameters, n->id) : NULL;
    json_object_foreach(over, k, v)
    {
        if (wf_node_key_open(n, k) && !alias_yields(n, over, k))
            json_object_set(p, wf_node_input_name(n, k), v);
    }
    return p;
}

/* Renders the templated config keys that no later layer replaced. */
static json_t *inputs_build(run *r, const wf_node *n, node_error *e)
{
    json_t *layered = inputs_layered(r, n);
    json_t *final = NULL;
    for (size_t i = 0; i < n->nparams; i++) {
        const wf_param *pa = &n->params[i];
        if (pa->constant || json_object_get(layered, pa->key))
            continue;
        if (!final)
            final = json_copy(layered);
        tmpl_scope sc = r->scope;
        sc.params = layered;
        char err[200];
        json_t *v = tmpl_render(pa->t, &sc, err, sizeof err);
        if (!v) {
            node_fail(e, "internal", "config.%s: %s", pa->key, err);
            json_decref(final);
            json_decref(layered);
            return NULL;
        }
        json_object_set_new(final, pa->key, v);
    }
    if (!final)
        return layered;
    json_decref(layered);
    return final;
}

/* ---- advancing -------------------------------------------------------------------------------- */

static int node_absent(run *r, const wf_node *n)
{
    if (n->nin == 0)
        return 0;
    for (size_t c = 0; c < n->nin; c++)
        if (conn_value(r, &r->wf->conns[n->in[c]]))
            return 0;
    return 1;
}

static void node_finished(run *r, size_t i, int state)
{
    const wf_node *n = &r->wf->nodes[i];
    r->state[i] = (unsigned char)state;
    for (size_t s = 0; s < n->nsucc; s++)
        if (--r->waiting[n->succ[s]] == 0)
            r->ready[r->rtail++] = n->succ[s];
}

/* Records a node's result; 0 to go on, -1 when the run failed. outputs is stolen. */
static int node_result(run *r, size_t i, json_t *outputs, const node_error *e)
{
    const wf_node *n = &r->wf->nodes[i];
    metrics_node_end(r->wf->name, n->type->name, n->id, n->type->start && !n->type->calls_workflow, e ? e->code : "ok",
                     r->calls[i].started_ms);
    if (e) {
        emit(r, EV_NODE_FAILED, i, NULL, e->code, e->message);
        if (!n->on_error_continue || strcmp(e->code, "timeout") == 0) {
            run_fail(r, i, e);
            return -1;
        }
        outputs = json_pack("{s:{s:s,s:s},s:b}", "error", "code", e->code, "message", e->message, "failed", 1);
    }
    json_object_set_new(r->results, n->id, outputs ? outputs : json_object());
    emit(r, EV_NODE_COMPLETED, i, json_object_get(r->results, n->id), NULL, NULL);
    node_finished(r, i, N_DONE);
    return 0;
}

static void run_drain_task(void *arg)
{
    run_drain(arg);
}

/* True when completing node leaves nothing to run but the answer: no node waits for it, none is
 * ready, no other is in flight. Such a completion is finished on the thread that delivers it (the
 * I/O loop): building the answer costs less than waking a worker to build it. Anything that would
 * run a node still goes to the pool. */
static int only_answer_left(const run *r, size_t node)
{
    return r->wf->nodes[node].nsucc == 0 && r->inflight == 1 && r->rhead == r->rtail;
}

/* Queues m for whoever holds the token, taking the token (and draining) when nobody does. */
static void mail_post(run *r, mail *m, int answer_here_ok)
{
    pthread_mutex_lock(&r->mu);
    if (r->mail_tail)
        r->mail_tail->next = m;
    else
        r->mail_head = m;
    r->mail_tail = m;
    int start = !r->scheduled;
    r->scheduled = 1;
    /* With the token comes a stable view of the run (its last holder released r->mu). */
    int here = start && answer_here_ok && only_answer_left(r, m->node);
    pthread_mutex_unlock(&r->mu);
    if (here || (start && pool_submit(engine_pool(), run_drain_task, r) != 0))
        run_drain(r);
}

static void run_end_cancelled(run *r)
{
    if (r->ended)
        return;
    util_copy(r->err_code, sizeof r->err_code, "cancelled");
    util_copy(r->err_msg, sizeof r->err_msg, "the run was cancelled");
    run_end(r, RUN_CANCELLED);
}

/* A run that has begun gets a cancel mail, applied by the token's holder like a completion. One that
 * has not is marked, and taken out of its executor's queue if it is still there (ended here: nobody
 * else can begin it then); a run already on its way to a slot sees the mark in run_begin. */
void run_cancel(run *r)
{
    pthread_mutex_lock(&r->mu);
    int begun = r->begun;
    r->cancel_pending = 1;
    pthread_mutex_unlock(&r->mu);
    if (!begun) {
        if (exec_unqueue(r->ex, r)) {
            run_end_cancelled(r);
            run_release(r); /* the queue's reference */
        }
        return;
    }
    mail *m = calloc(1, sizeof *m);
    if (!m)
        return; /* the run goes on to its own end; nothing is lost but the early stop */
    m->node = MAIL_CANCEL;
    run_retain(r); /* held by the mail, as a node in flight holds one */
    mail_post(r, m, 0);
}

static void node_async_done(node_call *call, json_t *outputs, const node_error *err)
{
    run *r = call->engine_data;
    call->cancel = NULL; /* on the loop thread: run_cancel_inflight_task must not call it now */
    mail *m = calloc(1, sizeof *m);
    if (!m)
        abort(); /* losing a completion would hang the run forever; nothing sane remains */
    m->node = (size_t)(call - r->calls);
    m->outputs = outputs;
    if (err) {
        m->failed = 1;
        m->err = *err;
    }
    mail_post(r, m, 1);
}

static int node_exec(run *r, size_t i)
{
    const wf_node *n = &r->wf->nodes[i];
    node_error e = {"", ""};
    json_t *in = inputs_build(r, n, &e);
    if (!in)
        return node_result(r, i, NULL, &e);
    node_call *call = &r->calls[i];
    emit(r, EV_NODE_STARTED, i, NULL, NULL, NULL);
    *call = (node_call){.node_id = n->id,
                        .inputs = in,
                        .scope = &r->scope,
                        .deadline_ms = r->deadline,
                        .hops = r->hops,
                        .depth = r->depth,
                        .io = n->type->start ? r->home : NULL,
                        .done = node_async_done,
                        .engine_data = r,
                        .started_ms = metrics_clock()};
    if (n->type->start) {
        r->state[i] = N_RUNNING;
        r->inflight++;
        run_retain(r);
        if (n->type->start(n->compiled, call, &e) == 0)
            return 0;
        r->inflight--;
        atomic_fetch_sub(&r->refs, 1);
        json_decref(in);
        call->inputs = NULL;
        return node_result(r, i, NULL, &e);
    }
    json_t *out = NULL;
    int rc = n->type->run(n->compiled, call, &out, &e);
    json_decref(in);
    call->inputs = NULL;
    return node_result(r, i, rc == 0 ? out : NULL, rc == 0 ? NULL : &e);
}

static void run_advance(run *r)
{
    while (!r->ended && r->rhead < r->rtail) {
        size_t i = r->ready[r->rhead++];
        if (util_now_ms() > r->deadline) {
            run_end_timeout(r);
            return;
        }
        if (node_absent(r, &r->wf->nodes[i])) {
            emit(r, EV_NODE_SKIPPED, i, NULL, NULL, NULL);
            node_finished(r, i, N_SKIPPED);
        }
        else if (node_exec(r, i) != 0)
            return;
    }
    if (!r->ended && r->inflight == 0)
        run_end(r, RUN_COMPLETED);
}

static void mail_apply(run *r, mail *m)
{
    if (m->node == MAIL_CANCEL) {
        run_end_cancelled(r);
        return;
    }
    node_call *call = &r->calls[m->node];
    json_decref(call->inputs);
    call->inputs = NULL;
    r->inflight--;
    if (r->ended)
        json_decref(m->outputs);
    else
        node_result(r, m->node, m->failed ? NULL : m->outputs, m->failed ? &m->err : NULL);
}

/* Holds the token: apply completions and advance until the mailbox stays empty. */
static void run_drain(run *r)
{
    int applied = 0;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        mail *m = r->mail_head;
        r->mail_head = r->mail_tail = NULL;
        if (!m)
            r->scheduled = 0;
        pthread_mutex_unlock(&r->mu);
        if (!m)
            break;
        while (m) {
            mail *next = m->next;
            mail_apply(r, m);
            free(m);
            applied++;
            m = next;
        }
        run_advance(r);
    }
    /* Each applied completion held one reference; dropping them may free r, so do it last. */
    while (applied-- > 0)
        run_release(r);
}

executor *run_executor(const run *r)
{
    return r->ex;
}

ioloop *run_home(const run *r)
{
    return r->home;
}

size_t run_slot_index(const run *r)
{
    return r->slot_index;
}

void run_set_slot_index(run *r, size_t i)
{
    r->slot_index = i;
}

void run_take_slot(run *r)
{
    r->has_slot = 1;
}

void run_begin(run *r)
{
    pthread_mutex_lock(&r->mu);
    r->begun = 1;
    r->scheduled = 1;
    int cancelled = r->cancel_pending;
    pthread_mutex_unlock(&r->mu);
    run_retain(r);
    if (cancelled) { /* cancelled on its way to a slot: end it, which gives the slot back */
        run_end_cancelled(r);
    } else {
        r->status = RUN_RUNNING;
        r->t_started = util_now_ms();
        if (r->async) {
            r->deadline = r->t_started + r->wf->timeout_ms;
            engine_sinks_run_start(r);
        }
        emit(r, EV_RUN_STARTED, (size_t)-1, NULL, NULL, NULL);
        run_advance(r);
    }
    run_drain(r);
    run_release(r);
}

/* ---- accessors -------------------------------------------------------------------------------- */

const char *run_request_id(const run *r)
{
    return r->request_id;
}

const char *run_id(const run *r)
{
    return r->id;
}
run_status run_get_status(const run *r)
{
    return r->status;
}
json_t *run_outputs(const run *r)
{
    return r->outputs;
}
json_t *run_results(const run *r)
{
    return r->results;
}
const char *run_error_code(const run *r)
{
    return r->err_code;
}
const char *run_error_message(const run *r)
{
    return r->err_msg;
}
const char *run_error_node(const run *r)
{
    return r->err_node;
}
const workflow *run_workflow(const run *r)
{
    return r->wf;
}
json_t *run_inputs(const run *r)
{
    return r->inputs;
}
const char *run_principal(const run *r)
{
    return r->principal_id ? r->principal_id : "anonymous";
}
int run_depth(const run *r)
{
    return r->depth;
}
const char *run_cache_tag(const run *r)
{
    return r->cache_tag;
}
double run_wait_ms(const run *r)
{
    return (r->t_started ? r->t_started : r->t_created) - r->t_created;
}

void *run_user_data(const run *r)
{
    return r->ud;
}

int run_is_async(const run *r)
{
    return r->async;
}

double run_duration_ms(const run *r)
{
    return (r->t_ended ? r->t_ended : util_now_ms()) - r->t_created;
}

json_t *run_skipped(const run *r)
{
    json_t *a = json_array();
    for (size_t i = 0; i < r->wf->nnodes; i++)
        if (r->state[i] == N_SKIPPED || (r->ended && r->state[i] == N_PENDING && r->status == RUN_COMPLETED))
            json_array_append_new(a, json_string(r->wf->nodes[i].id));
    return a;
}

const char *run_status_name(run_status s)
{
    static const char *const names[] = {"queued", "running", "completed", "failed", "timeout", "cancelled"};
    return (unsigned)s < 6 ? names[s] : "unknown";
}
