/* pool: a fixed set of worker threads and one FIFO of tasks behind a mutex and a condition variable.
 * Tasks are short (a run's CPU nodes between two I/O waits), so one shared queue is enough; a
 * work-stealing design would only pay off with many more cores than this daemon targets. */
#include "kailash/pool.h"

#include <pthread.h>
#include <stdlib.h>

#include "kailash/util.h"

typedef struct task {
    void (*fn)(void *);
    void *arg;
    struct task *next;
} task;

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    task *head, *tail;
    int stopping;
    int nthreads;
    pthread_t *threads;
};

static void *pool_main(void *arg)
{
    pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        task *t = p->head;
        if (!t) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        p->head = t->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        t->fn(t->arg);
        free(t);
    }
}

pool *pool_create(int nthreads, char *err, size_t errlen)
{
    pool *p = calloc(1, sizeof *p);
    if (!p || !(p->threads = calloc((size_t)nthreads, sizeof *p->threads))) {
        free(p);
        util_err(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_main, p) != 0) {
            util_err(err, errlen, "cannot start worker thread %d", i);
            p->nthreads = i;
            pool_destroy(p);
            return NULL;
        }
    }
    p->nthreads = nthreads;
    return p;
}

int pool_submit(pool *p, void (*fn)(void *), void *arg)
{
    task *t = malloc(sizeof *t);
    if (!t)
        return -1;
    t->fn = fn;
    t->arg = arg;
    t->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->stopping) {
        pthread_mutex_unlock(&p->mu);
        free(t);
        return -1;
    }
    if (p->tail)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void pool_destroy(pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}
