/* executor: one per workflow, the bulkhead. At most max_concurrency runs hold a slot; up to max_queue
 * more wait in a ring buffer; beyond that exec_submit says EXEC_OVERLOADED and the API answers 503.
 * Because every workflow has its own, a saturated workflow fills only its own queue.
 *
 * A free slot lets the caller run the workflow on its own thread (the front end's: an I/O loop),
 * which saves a hand-off for short CPU workflows, unless a node of the workflow may block (file
 * nodes: a 64 MiB read or an fsync would stall every client of that loop); a run taken from the
 * queue goes to the worker pool too. The
 * executor owns its workflow and is reference-counted: the registry and every run hold one. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "engine_internal.h"
#include "kailash/log.h"
#include "kailash/util.h"

struct executor {
    atomic_int refs;
    workflow *wf;
    pthread_mutex_t mu;
    int running;
    run **active; /* the runs holding a slot (running of them), for exec_cancel_all */
    run **queue;  /* ring of max_queue */
    size_t qhead, qlen;
};

executor *exec_create(workflow *wf)
{
    executor *ex = calloc(1, sizeof *ex);
    if (!ex)
        return NULL;
    ex->queue = calloc((size_t)wf->max_queue + 1, sizeof *ex->queue);
    ex->active = calloc((size_t)wf->max_concurrency, sizeof *ex->active);
    if (!ex->queue || !ex->active) {
        free(ex->queue);
        free(ex->active);
        free(ex);
        return NULL;
    }
    atomic_init(&ex->refs, 1);
    ex->wf = wf;
    pthread_mutex_init(&ex->mu, NULL);
    return ex;
}

void exec_retain(executor *ex)
{
    atomic_fetch_add(&ex->refs, 1);
}

void exec_release(executor *ex)
{
    if (!ex || atomic_fetch_sub(&ex->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&ex->mu);
    free(ex->active);
    free(ex->queue);
    workflow_free(ex->wf);
    free(ex);
}

const workflow *exec_workflow(const executor *ex)
{
    return ex->wf;
}

int exec_running(executor *ex)
{
    pthread_mutex_lock(&ex->mu);
    int n = ex->running;
    pthread_mutex_unlock(&ex->mu);
    return n;
}

int exec_queued(executor *ex)
{
    pthread_mutex_lock(&ex->mu);
    int n = (int)ex->qlen;
    pthread_mutex_unlock(&ex->mu);
    return n;
}

/* Pool task: r got a slot (straight away, or after waiting in the queue). */
static void exec_start_slot(void *arg)
{
    run *r = arg;
    run_take_slot(r);
    if (run_expired(r))
        run_end_timeout(r);
    else
        run_begin(r);
    run_release(r);
}

/* Pool task: r's deadline passed while it waited; it never got a slot. */
static void exec_expire_task(void *arg)
{
    run *r = arg;
    run_end_timeout(r);
    run_release(r);
}

/* Removes r from the queue if it is still there; 1 when it was (its queue reference moves to the
 * caller). O(queue length), paid only when a queued run times out. */
static int exec_unqueue_locked(executor *ex, run *r)
{
    size_t cap = (size_t)ex->wf->max_queue;
    for (size_t i = 0; i < ex->qlen; i++) {
        if (ex->queue[(ex->qhead + i) % cap] != r)
            continue;
        for (size_t j = i; j + 1 < ex->qlen; j++)
            ex->queue[(ex->qhead + j) % cap] = ex->queue[(ex->qhead + j + 1) % cap];
        ex->qlen--;
        return 1;
    }
    return 0;
}

int exec_unqueue(executor *ex, run *r)
{
    pthread_mutex_lock(&ex->mu);
    int was = exec_unqueue_locked(ex, r);
    pthread_mutex_unlock(&ex->mu);
    return was;
}

/* I/O loop timer at a queued run's deadline: answer 504 now rather than when a slot frees. */
static void exec_queue_deadline(void *arg)
{
    run *r = arg;
    executor *ex = run_executor(r);
    pthread_mutex_lock(&ex->mu);
    int waiting = exec_unqueue_locked(ex, r);
    pthread_mutex_unlock(&ex->mu);
    run_release(r); /* the timer's reference */
    if (waiting && pool_submit(engine_pool(), exec_expire_task, r) != 0)
        exec_expire_task(r);
}

static void exec_arm_deadline(executor *ex, run *r)
{
    double wait = run_deadline_ms(r) - util_now_ms();
    run_retain(r);
    if (ioloop_after(run_home(r), wait > 0 ? wait : 0, exec_queue_deadline, r) != 0) {
        log_msg(LOG_WARN, "%s: cannot arm a queued run's deadline; it will time out when dequeued", ex->wf->name);
        run_release(r);
    }
}

/* The active array stays dense: a run's index in it is kept in the run (run_slot_index). */
static void exec_active_add_locked(executor *ex, run *r)
{
    ex->active[ex->running] = r;
    run_set_slot_index(r, (size_t)ex->running++);
}

static void exec_active_remove_locked(executor *ex, run *r)
{
    size_t i = run_slot_index(r), last = (size_t)--ex->running;
    ex->active[i] = ex->active[last];
    run_set_slot_index(ex->active[i], i);
}

int exec_submit(executor *ex, run *r, int may_inline)
{
    pthread_mutex_lock(&ex->mu);
    if (ex->running < ex->wf->max_concurrency) {
        exec_active_add_locked(ex, r);
        pthread_mutex_unlock(&ex->mu);
        if (!may_inline || ex->wf->may_block) {
            if (pool_submit(engine_pool(), exec_start_slot, r) != 0)
                exec_start_slot(r);
            return EXEC_OK;
        }
        run_take_slot(r);
        run_begin(r);
        run_release(r);
        return EXEC_OK;
    }
    if (ex->qlen < (size_t)ex->wf->max_queue) {
        ex->queue[(ex->qhead + ex->qlen++) % (size_t)ex->wf->max_queue] = r;
        exec_arm_deadline(ex, r);
        pthread_mutex_unlock(&ex->mu);
        return EXEC_OK;
    }
    pthread_mutex_unlock(&ex->mu);
    return EXEC_OVERLOADED;
}

/* The next queued run (its reference moves to the caller), or NULL. */
static run *exec_dequeue_locked(executor *ex)
{
    if (ex->qlen == 0)
        return NULL;
    run *next = ex->queue[ex->qhead];
    ex->qhead = (ex->qhead + 1) % (size_t)ex->wf->max_queue;
    ex->qlen--;
    return next;
}

void exec_slot_release(executor *ex, run *r)
{
    pthread_mutex_lock(&ex->mu);
    exec_active_remove_locked(ex, r);
    run *next = exec_dequeue_locked(ex);
    if (next)
        exec_active_add_locked(ex, next);
    pthread_mutex_unlock(&ex->mu);
    if (next && pool_submit(engine_pool(), exec_start_slot, next) != 0) {
        log_msg(LOG_ERROR, "worker pool refused a queued run of %s; running it here", ex->wf->name);
        exec_start_slot(next);
    }
}

int exec_cancel_all(executor *ex)
{
    pthread_mutex_lock(&ex->mu);
    size_t n = (size_t)ex->running + ex->qlen, k = 0;
    run **all = calloc(n ? n : 1, sizeof *all);
    for (int i = 0; all && i < ex->running; i++)
        all[k++] = ex->active[i];
    for (size_t i = 0; all && i < ex->qlen; i++)
        all[k++] = ex->queue[(ex->qhead + i) % (size_t)ex->wf->max_queue];
    for (size_t i = 0; i < k; i++)
        run_retain(all[i]);
    pthread_mutex_unlock(&ex->mu);
    for (size_t i = 0; i < k; i++) { /* outside the lock: a queued run's cancel takes it */
        run_cancel(all[i]);
        run_release(all[i]);
    }
    free(all);
    return (int)k;
}
