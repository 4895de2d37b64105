/* executor: one per workflow, the bulkhead. At most max_concurrency runs hold a slot; up to max_queue
 * more wait in a ring buffer; beyond that exec_submit says EXEC_OVERLOADED and the API answers 503.
 * Because every workflow has its own, a saturated workflow fills only its own queue.
 *
 * A free slot lets the caller run the workflow on its own thread (the front end's: an I/O loop),
 * which saves a hand-off for short CPU workflows, unless a node of the workflow may block (file
 * nodes: a 64 MiB read or an fsync would stall every client of that loop); a run taken from the
 * queue goes to the worker pool too. The
 * executor owns its workflow and is reference-counted: the registry and every run hold one.
 *
 * A queued run waits in a small record (exec_wait) that carries its deadline as a loop timer on the
 * run's home loop: at the deadline the run leaves the queue and ends as timed out (504 now, not when
 * a slot frees). When it gets a slot first, its timer is stopped on that loop (a post: the slot may
 * free on any thread) and the record lets go of the run at once, not at the deadline. The record
 * has two owners, the queue and the timer, and goes when both have let go. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "engine_internal.h"
#include "kailash/log.h"
#include "kailash/util.h"

/* A queued run. The queue's share moves to whoever takes it out of the queue; the timer's share
 * holds a reference to the run, dropped when the timer fires or is stopped. */
typedef struct exec_wait {
    atomic_int owners; /* the queue and the timer */
    run *r;
    executor *ex;
    io_timer deadline; /* on run_home(r), touched only on that loop's thread */
} exec_wait;

struct executor {
    atomic_int refs;
    workflow *wf;
    pthread_mutex_t mu;
    int running;
    run **active;      /* the runs holding a slot (running of them), for exec_cancel_all */
    exec_wait **queue; /* ring of max_queue */
    size_t qhead, qlen;
    size_t reserved; /* queue places async jobs hold until they are submitted (exec_reserve) */
    atomic_int held; /* queued runs' records not yet let go (exec_held) */
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
    atomic_init(&ex->held, 0);
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

/* One owner lets go of w; the last frees it. */
static void exec_wait_put(exec_wait *w)
{
    if (atomic_fetch_sub(&w->owners, 1) != 1)
        return;
    atomic_fetch_sub(&w->ex->held, 1);
    free(w);
}

/* Removes w from the queue if it is still there; 1 when it was (its queue share moves to the
 * caller). O(queue length), paid only when a queued run times out. */
static int exec_unqueue_locked(executor *ex, exec_wait *w)
{
    size_t cap = (size_t)ex->wf->max_queue;
    for (size_t i = 0; i < ex->qlen; i++) {
        if (ex->queue[(ex->qhead + i) % cap] != w)
            continue;
        for (size_t j = i; j + 1 < ex->qlen; j++)
            ex->queue[(ex->qhead + j) % cap] = ex->queue[(ex->qhead + j + 1) % cap];
        ex->qlen--;
        return 1;
    }
    return 0;
}

static void exec_wait_done(exec_wait *w);

/* Takes r's record out of the queue if it waits there; 1 when it did (the queue's run reference moves
 * to the caller; the record lets go on the home loop). */
int exec_unqueue(executor *ex, run *r)
{
    exec_wait *w = NULL;
    size_t cap = (size_t)ex->wf->max_queue;
    pthread_mutex_lock(&ex->mu);
    for (size_t i = 0; i < ex->qlen && !w; i++)
        if (ex->queue[(ex->qhead + i) % cap]->r == r)
            w = ex->queue[(ex->qhead + i) % cap];
    int was = w && exec_unqueue_locked(ex, w);
    pthread_mutex_unlock(&ex->mu);
    if (was)
        exec_wait_done(w);
    return was;
}

/* Loop timer at a queued run's deadline: answer 504 now rather than when a slot frees. */
static void exec_queue_deadline(io_timer *t)
{
    exec_wait *w = t->ud;
    executor *ex = w->ex;
    run *r = w->r;
    pthread_mutex_lock(&ex->mu);
    int waiting = exec_unqueue_locked(ex, w);
    pthread_mutex_unlock(&ex->mu);
    if (waiting) { /* the queue's share is ours: its run reference goes to the expiry */
        exec_wait_put(w);
        if (pool_submit(engine_pool(), exec_expire_task, r) != 0)
            exec_expire_task(r);
    }
    run_release(r); /* the timer's reference */
    exec_wait_put(w);
}

/* On the run's home loop, after the run left the queue for a slot: the timer lets go now. */
static void exec_wait_disarm(void *ud)
{
    exec_wait *w = ud;
    if (ioloop_timer_pending(&w->deadline)) {
        ioloop_timer_stop(run_home(w->r), &w->deadline);
        run_release(w->r);
        exec_wait_put(w);
    }
    exec_wait_put(w); /* the queue's share */
}

/* On the run's home loop: arms the deadline (posted from exec_submit's thread). */
static void exec_wait_arm(void *ud)
{
    exec_wait *w = ud;
    double left = run_deadline_ms(w->r) - util_now_ms();
    if (ioloop_timer_start(run_home(w->r), &w->deadline, left > 0 ? left : 0) != 0) {
        log_msg(LOG_WARN, "%s: cannot arm a queued run's deadline; it will time out when dequeued", w->ex->wf->name);
        run_release(w->r);
        exec_wait_put(w);
    }
}

/* A record for r, which goes into the queue, its timer armed on r's home loop. NULL when out of
 * memory (r is not queued then). */
static exec_wait *exec_wait_new(executor *ex, run *r)
{
    exec_wait *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->r = r;
    w->ex = ex;
    ioloop_timer_init(&w->deadline, exec_queue_deadline, w);
    atomic_fetch_add(&ex->held, 1);
    if (run_is_async(r)) { /* its timeout starts with the run: no deadline while it waits */
        atomic_init(&w->owners, 1);
        return w;
    }
    atomic_init(&w->owners, 2);
    run_retain(r); /* the timer's */
    if (ioloop_post(run_home(r), exec_wait_arm, w) != 0) {
        log_msg(LOG_WARN, "%s: cannot arm a queued run's deadline; it will time out when dequeued", ex->wf->name);
        run_release(r);
        exec_wait_put(w);
    }
    return w;
}

/* A run left the queue for a slot: its record lets go on the home loop (at once when that loop is
 * gone: then its timer fired already or never was armed). */
static void exec_wait_done(exec_wait *w)
{
    if (ioloop_post(run_home(w->r), exec_wait_disarm, w) != 0)
        exec_wait_put(w);
}

int exec_held(executor *ex)
{
    return atomic_load(&ex->held);
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
    exec_wait *w = ex->qlen + ex->reserved < (size_t)ex->wf->max_queue ? exec_wait_new(ex, r) : NULL;
    if (w) {
        ex->queue[(ex->qhead + ex->qlen++) % (size_t)ex->wf->max_queue] = w;
        pthread_mutex_unlock(&ex->mu);
        return EXEC_OK;
    }
    pthread_mutex_unlock(&ex->mu);
    return EXEC_OVERLOADED;
}

int exec_reserve(executor *ex)
{
    pthread_mutex_lock(&ex->mu);
    int ok = ex->qlen + ex->reserved < (size_t)ex->wf->max_queue;
    if (ok)
        ex->reserved++;
    pthread_mutex_unlock(&ex->mu);
    return ok ? EXEC_OK : EXEC_OVERLOADED;
}

void exec_unreserve(executor *ex)
{
    pthread_mutex_lock(&ex->mu);
    if (ex->reserved)
        ex->reserved--;
    pthread_mutex_unlock(&ex->mu);
}

/* The place is ours: queue length plus reservations never pass max_queue, so the ring has room. */
void exec_submit_reserved(executor *ex, run *r)
{
    pthread_mutex_lock(&ex->mu);
    ex->reserved--;
    if (ex->running < ex->wf->max_concurrency) {
        exec_active_add_locked(ex, r);
        pthread_mutex_unlock(&ex->mu);
        if (pool_submit(engine_pool(), exec_start_slot, r) != 0)
            exec_start_slot(r);
        return;
    }
    exec_wait *w = exec_wait_new(ex, r);
    if (w)
        ex->queue[(ex->qhead + ex->qlen++) % (size_t)ex->wf->max_queue] = w;
    pthread_mutex_unlock(&ex->mu);
    if (!w) { /* out of memory: the run ends (as timed out) rather than waiting nowhere */
        log_msg(LOG_ERROR, "%s: out of memory queueing an async run", ex->wf->name);
        run_end_timeout(r);
        run_release(r);
    }
}

/* The next queued run's record (the queue's share moves to the caller), or NULL. */
static exec_wait *exec_dequeue_locked(executor *ex)
{
    if (ex->qlen == 0)
        return NULL;
    exec_wait *next = ex->queue[ex->qhead];
    ex->qhead = (ex->qhead + 1) % (size_t)ex->wf->max_queue;
    ex->qlen--;
    return next;
}

void exec_slot_release(executor *ex, run *r)
{
    pthread_mutex_lock(&ex->mu);
    exec_active_remove_locked(ex, r);
    exec_wait *w = exec_dequeue_locked(ex);
    if (w)
        exec_active_add_locked(ex, w->r);
    pthread_mutex_unlock(&ex->mu);
    run *next = w ? w->r : NULL; /* the queue's run reference moves to the slot */
    if (w)
        exec_wait_done(w);
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
        all[k++] = ex->queue[(ex->qhead + i) % (size_t)ex->wf->max_queue]->r;
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
