/* l2: the response cache's Redis layer. Every call is one command on the calling loop's own Redis
 * connection (redis.h), pipelined with the other requests' commands and bounded by its deadline;
 * when Redis cannot be asked (the breaker open, no redis_url) the call says so at once and the cache
 * goes on with L1 alone. Stored values are the answer's outputs bytes as they were sent. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/cache.h"
#include "kailash/redis.h"

#define L2_PREFIX "kailash:rc:"
#define L2_LOCK_PREFIX "kailash:rc:lock:"

static atomic_ullong g_hits, g_misses, g_stores, g_failures;

static size_t l2_name(char *out, const char *prefix, const cache_key *k)
{
    char hex[65];
    cache_key_hex(k, hex);
    return (size_t)snprintf(out, 96, "%s%s", prefix, hex);
}

typedef struct l2_get {
    cache_l2_fn done;
    void *ud;
} l2_get;

static void l2_on_get(redisReply *rep, void *ud)
{
    l2_get g = *(l2_get *)ud;
    free(ud);
    if (rep && rep->type == REDIS_REPLY_STRING) {
        atomic_fetch_add_explicit(&g_hits, 1, memory_order_relaxed);
        g.done(rep->str, rep->len, g.ud);
        return;
    }
    atomic_fetch_add_explicit(rep ? &g_misses : &g_failures, 1, memory_order_relaxed);
    g.done(NULL, 0, g.ud);
}

int cache_l2_get(const cache_key *k, cache_l2_fn done, void *ud)
{
    char name[96];
    size_t n = l2_name(name, L2_PREFIX, k);
    l2_get *g = malloc(sizeof *g);
    if (!g)
        return -1;
    *g = (l2_get){done, ud};
    const char *argv[] = {"GET", name};
    size_t lens[] = {3, n};
    if (redis_command(2, argv, lens, l2_on_get, g) != 0) {
        free(g);
        return -1;
    }
    return 0;
}

static void l2_on_put(redisReply *rep, void *ud)
{
    (void)ud;
    atomic_fetch_add_explicit(rep && rep->type == REDIS_REPLY_STATUS ? &g_stores : &g_failures, 1,
                              memory_order_relaxed);
}

int cache_l2_put(const cache_key *k, const void *bytes, size_t len, long ttl_ms)
{
    char name[96], ttl[24];
    size_t n = l2_name(name, L2_PREFIX, k);
    snprintf(ttl, sizeof ttl, "%ld", ttl_ms > 0 ? ttl_ms : 1);
    const char *argv[] = {"SET", name, bytes, "PX", ttl};
    size_t lens[] = {3, n, len, 2, strlen(ttl)};
    return redis_command(5, argv, lens, l2_on_put, NULL);
}

typedef struct l2_lock {
    void (*done)(int got, void *ud);
    void *ud;
} l2_lock;

static void l2_on_lock(redisReply *rep, void *ud)
{
    l2_lock l = *(l2_lock *)ud;
    free(ud);
    if (!rep || rep->type == REDIS_REPLY_ERROR)
        l.done(-1, l.ud);
    else
        l.done(rep->type == REDIS_REPLY_STATUS, l.ud); /* OK, or nil: another instance holds it */
}

int cache_l2_lock(const cache_key *k, long ms, void (*done)(int got, void *ud), void *ud)
{
    char name[96], ttl[24];
    size_t n = l2_name(name, L2_LOCK_PREFIX, k);
    snprintf(ttl, sizeof ttl, "%ld", ms > 0 ? ms : 1);
    l2_lock *l = malloc(sizeof *l);
    if (!l)
        return -1;
    *l = (l2_lock){done, ud};
    const char *argv[] = {"SET", name, "1", "NX", "PX", ttl};
    size_t lens[] = {3, n, 1, 2, 2, strlen(ttl)};
    if (redis_command(6, argv, lens, l2_on_lock, l) != 0) {
        free(l);
        return -1;
    }
    return 0;
}

static void l2_on_unlock(redisReply *rep, void *ud)
{
    (void)rep;
    (void)ud;
}

void cache_l2_unlock(const cache_key *k)
{
    char name[96];
    size_t n = l2_name(name, L2_LOCK_PREFIX, k);
    const char *argv[] = {"DEL", name};
    size_t lens[] = {3, n};
    redis_command(2, argv, lens, l2_on_unlock, NULL);
}

void cache_l2_get_stats(cache_l2_stats *out)
{
    out->hits = atomic_load(&g_hits);
    out->misses = atomic_load(&g_misses);
    out->stores = atomic_load(&g_stores);
    out->failures = atomic_load(&g_failures);
}
