/* run_waiter.h: for unit tests that start runs through the engine (test_engine.c,
 * test_nodes_workflow.c): a waiter is a run's done callback's target; waiter_init before the run is
 * created, run_waiter_done as run_opts.done with the waiter as ud, wait_done to block until it ran. */
#ifndef KAILASH_TEST_RUN_WAITER_H
#define KAILASH_TEST_RUN_WAITER_H

#include <pthread.h>

#include "kailash/engine.h"

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    run *r; /* for tests that keep the run with its waiter */
} waiter;

static inline void waiter_init(waiter *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->done = 0;
    w->r = NULL;
}

static inline void run_waiter_done(run *r, void *ud)
{
    (void)r;
    waiter *w = ud;
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static inline void wait_done(waiter *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

#endif
