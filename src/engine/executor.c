/* executor: one per workflow, the bulkhead. At most max_concurrency runs hold a slot; up to max_queue
 * more wait in a ring buffer; beyond that exec_submit says EXEC_OVERLOADED and the API answers 503.
 * Because every workflow has its own, a saturated workflow fills only its own queue.
 *
 * A free slot lets the caller run the workflow on its own thread (the MHD thread), which saves a
 * hand-off for short CPU workflows; a run taken from the queue goes to the worker pool instead. The
 * executor owns its workflow and is reference-counted: the registry and every run hold one. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "engine_internal.h"
#include "kailash/log.h"

struct executor {
    atomic_int refs;
    workflow *wf;
    pthread_mutex_t mu;
    int running;
    run **queue; /* ring of max_queue */
    size_t qhead, qlen;
};

executor *exec_create(workflow *wf)
{
    executor *ex = calloc(1, sizeof *ex);
    if (!ex)
        return NULL;
    ex->queue = calloc((size_t)wf->max_queue + 1, sizeof *ex->queue);
    if (!ex->queue) {
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

/* Pool task: a run that waited in the queue got a slot. */
static void exec_start_queued(void *arg)
{
    run *r = arg;
    if (run_expired(r))
        run_end_timeout(r);
    else
        run_begin(r);
    run_release(r);
}

int exec_submit(executor *ex, run *r, int may_inline)
{
    pthread_mutex_lock(&ex->mu);
    if (ex->running < ex->wf->max_concurrency) {
        ex->running++;
        pthread_mutex_unlock(&ex->mu);
        if (may_inline) {
            run_begin(r);
            run_release(r);
        } else if (pool_submit(engine_pool(), exec_start_queued, r) != 0) {
            exec_start_queued(r);
        }
        return EXEC_OK;
    }
    if (ex->qlen < (size_t)ex->wf->max_queue) {
        ex->queue[(ex->qhead + ex->qlen++) % (size_t)ex->wf->max_queue] = r;
        pthread_mutex_unlock(&ex->mu);
        return EXEC_OK;
    }
    pthread_mutex_unlock(&ex->mu);
    return EXEC_OVERLOADED;
}

void exec_slot_release(executor *ex)
{
    pthread_mutex_lock(&ex->mu);
    if (ex->qlen == 0) {
        ex->running--;
        pthread_mutex_unlock(&ex->mu);
        return;
    }
    run *next = ex->queue[ex->qhead];
    ex->qhead = (ex->qhead + 1) % (size_t)ex->wf->max_queue;
    ex->qlen--;
    pthread_mutex_unlock(&ex->mu);
    if (pool_submit(engine_pool(), exec_start_queued, next) != 0) {
        log_msg(LOG_ERROR, "worker pool refused a queued run of %s; running it here", ex->wf->name);
        exec_start_queued(next);
    }
}
