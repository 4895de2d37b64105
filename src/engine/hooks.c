/* hooks: what the engine tells the rest of the daemon while runs go, besides their ends (engine.c's
 * sinks): the one event listener (the events module, for SSE), the sinks' run starts, and the table
 * of this process's async runs that DELETE /runs/{id} cancels.
 *
 * The async table is a chained hash of run ids under striped locks: an entry is added when an async
 * run is created and removed when it ends, so a cancel finds a queued or running job of this process
 * without a scan. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine_internal.h"

static _Atomic(const engine_listener *) g_listener;

void engine_listener_set(const engine_listener *l)
{
    atomic_store(&g_listener, l);
}

void engine_emit(const engine_event *e)
{
    const engine_listener *l = atomic_load_explicit(&g_listener, memory_order_acquire);
    if (l && l->on_event)
        l->on_event(e);
}

/* ---- the async runs of this process ---------------------------------------------------------- */

#define ASYNC_STRIPES 64
#define ASYNC_BUCKETS 4096 /* per the whole table; a stripe guards every 64th bucket */

typedef struct async_ent {
    run *r; /* not a reference: the entry goes before the run's end lets its last reference go */
    struct async_ent *next;
} async_ent;

static async_ent *g_buckets[ASYNC_BUCKETS];
static pthread_mutex_t g_stripes[ASYNC_STRIPES] = {[0 ... ASYNC_STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER};

static size_t id_hash(const char *id)
{
    size_t h = 1469598103934665603ULL;
    for (; *id; id++) /* ids compare lowercased (store_is_uuid's rule) */
        h = (h ^ (unsigned char)(*id >= 'A' && *id <= 'Z' ? *id + 32 : *id)) * 1099511628211ULL;
    return h % ASYNC_BUCKETS;
}

void engine_async_add(run *r)
{
    async_ent *e = calloc(1, sizeof *e);
    if (!e)
        return; /* not cancellable by id; it runs to its end all the same */
    size_t b = id_hash(run_id(r));
    e->r = r;
    pthread_mutex_lock(&g_stripes[b % ASYNC_STRIPES]);
    e->next = g_buckets[b];
    g_buckets[b] = e;
    pthread_mutex_unlock(&g_stripes[b % ASYNC_STRIPES]);
}

void engine_async_remove(run *r)
{
    size_t b = id_hash(run_id(r));
    pthread_mutex_lock(&g_stripes[b % ASYNC_STRIPES]);
    for (async_ent **p = &g_buckets[b]; *p; p = &(*p)->next) {
        if ((*p)->r == r) {
            async_ent *e = *p;
            *p = e->next;
            free(e);
            break;
        }
    }
    pthread_mutex_unlock(&g_stripes[b % ASYNC_STRIPES]);
}

run *engine_async_find(const char *id)
{
    size_t b = id_hash(id);
    run *found = NULL;
    pthread_mutex_lock(&g_stripes[b % ASYNC_STRIPES]);
    for (async_ent *e = g_buckets[b]; e && !found; e = e->next)
        if (strcasecmp(run_id(e->r), id) == 0) {
            found = e->r;
            run_retain(found); /* under the stripe: the run cannot end and go meanwhile */
        }
    pthread_mutex_unlock(&g_stripes[b % ASYNC_STRIPES]);
    return found;
}
