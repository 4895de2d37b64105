/* gens: each workflow's purge generation, which joins its cache keys (key.c), so a purge makes every
 * earlier entry unreachable in one step, in L1 and in L2, with no KEYS or SCAN over Redis.
 *
 * Read on every cacheable request, so without a lock: the slots form a list that only grows (one
 * per workflow name that was ever purged or seen in Redis's hash; names are few), published with an
 * atomic head, each generation an atomic. Across instances the hash "kailash:rc:gens" in Redis holds
 * the generations: a purge HINCRBYs it, and every instance reads the whole hash once a second on a
 * loop timer, taking any generation higher than its own. Without Redis, generations are per
 * instance. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/cache.h"
#include "kailash/ioloop.h"
#include "kailash/redis.h"

#define GENS_KEY "kailash:rc:gens"
#define GENS_EVERY_MS 1000

typedef struct gen_slot {
    struct gen_slot *next;
    atomic_ullong gen;
    char name[];
} gen_slot;

static _Atomic(gen_slot *) g_head;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER; /* appends only */

static gen_slot *slot_find(const char *name)
{
    for (gen_slot *s = atomic_load_explicit(&g_head, memory_order_acquire); s; s = s->next)
        if (strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

static gen_slot *slot_get(const char *name)
{
    gen_slot *s = slot_find(name);
    if (s)
        return s;
    pthread_mutex_lock(&g_mu);
    if (!(s = slot_find(name)) && (s = calloc(1, sizeof *s + strlen(name) + 1))) {
        strcpy(s->name, name);
        s->next = atomic_load_explicit(&g_head, memory_order_relaxed);
        atomic_store_explicit(&g_head, s, memory_order_release);
    }
    pthread_mutex_unlock(&g_mu);
    return s;
}

/* Raises s to at least v. */
static void slot_raise(gen_slot *s, unsigned long long v)
{
    unsigned long long cur = atomic_load(&s->gen);
    while (cur < v && !atomic_compare_exchange_weak(&s->gen, &cur, v))
        ;
}

unsigned long long cache_gen(const char *name)
{
    gen_slot *s = slot_find(name);
    return s ? atomic_load_explicit(&s->gen, memory_order_acquire) : 0;
}

static void gens_on_incr(redisReply *rep, void *ud)
{
    gen_slot *s = ud;
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0)
        slot_raise(s, (unsigned long long)rep->integer);
}

void cache_gen_bump(const char *name)
{
    gen_slot *s = slot_get(name);
    if (!s)
        return;
    atomic_fetch_add(&s->gen, 1);
    const char *argv[] = {"HINCRBY", GENS_KEY, name, "1"};
    size_t lens[] = {7, strlen(GENS_KEY), strlen(name), 1};
    redis_command(4, argv, lens, gens_on_incr, s); /* -1 without Redis: this instance alone */
}

/* ---- the once-a-second read ---- */

static io_timer g_timer;
static ioloop *g_io;

static void gens_on_all(redisReply *rep, void *ud)
{
    (void)ud;
    if (!rep || rep->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        redisReply *k = rep->element[i], *v = rep->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || strlen(k->str) != k->len)
            continue;
        unsigned long long g = strtoull(v->str, NULL, 10);
        gen_slot *s = g ? slot_get(k->str) : NULL;
        if (s)
            slot_raise(s, g);
    }
}

static void gens_tick(io_timer *t)
{
    if (ioloop_current() != g_io) /* the loop is being destroyed: its timers fire early, elsewhere */
        return;
    const char *argv[] = {"HGETALL", GENS_KEY};
    size_t lens[] = {7, strlen(GENS_KEY)};
    redis_command(2, argv, lens, gens_on_all, NULL);
    ioloop_timer_start(g_io, t, GENS_EVERY_MS);
}

static void gens_start_on_loop(void *ud)
{
    g_io = ud;
    ioloop_timer_init(&g_timer, gens_tick, NULL);
    ioloop_timer_start(g_io, &g_timer, 0);
}

void cache_gens_watch(ioloop *io)
{
    ioloop_call(io, gens_start_on_loop, io);
}

static void gens_stop_on_loop(void *ud)
{
    (void)ud;
    ioloop_timer_stop(g_io, &g_timer);
}

void cache_gens_stop(void)
{
    if (g_io)
        ioloop_call(g_io, gens_stop_on_loop, NULL);
    g_io = NULL;
}
