/* pool: the shared worker pool (src/engine/pool.c) that runs CPU work of workflow runs.
 * A fixed set of threads and one FIFO of tasks. Thread-safe. */
#ifndef KAILASH_POOL_H
#define KAILASH_POOL_H

#include <stddef.h>

typedef struct pool pool;

/* Starts nthreads workers. NULL with err on failure. */
pool *pool_create(int nthreads, char *err, size_t errlen);

/* Queues fn(arg). Thread-safe. Returns 0, or -1 when out of memory or the pool is stopping. */
int pool_submit(pool *p, void (*fn)(void *arg), void *arg);

/* Runs what is queued, then joins the workers and frees the pool. */
void pool_destroy(pool *p);

#endif
