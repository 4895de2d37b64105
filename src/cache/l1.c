/* l1: the response cache's in-memory layer (cache.h): sharded, LRU, a TTL per entry, a byte budget.
 *
 * Shards: a put or a get takes one shard's mutex, never a global lock. The key is a SHA-256, so its
 * first byte picks the shard and its bytes 8..15 the bucket, both uniform. There are up to 16 shards,
 * fewer when the budget is small, so that each shard's share (max_bytes / shards, the largest entry it
 * can hold) is at least 1 MiB where the budget allows: a 1 MiB cache is one shard, 16 MiB is 16.
 *
 * Each shard holds a chained hash table of its entries and an LRU list through them (head the most
 * recently used). An entry is one allocation, its header then its bytes, so a hit is a lookup and
 * one memcpy. An entry is charged malloc_usable_size() plus the allocator's chunk header, and the
 * bucket array is charged too, so the shard's count is the heap it holds and the process's RSS stays
 * within the budget plus the allocator's slack.
 *
 * A put copies the bytes into the new entry before taking the lock, then drops the entry the key
 * held, the expired entries at the tail, and least recently used ones until the new one fits. A hit
 * takes a reference on the entry and copies it out after unlocking (out may need to grow, and a large
 * copy should not hold the shard): an entry evicted meanwhile is freed by its last reader, so during
 * such a copy the heap may hold it beyond the budget. Expired
 * entries are dropped when a get meets them or when they reach the tail; they are not swept.
 *
 * A put with ttl_ms <= 0 only drops what the key held. Counters are per shard, under its lock, and
 * summed by cache_l1_get_stats. */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/cache.h"

#define L1_MAX_SHARDS 16
#define L1_MIN_SHARE (1u << 20) /* shards are halved until each holds at least this much */
#define L1_MIN_BUCKETS 64

typedef struct l1_entry {
    struct l1_entry *hnext;       /* bucket chain */
    struct l1_entry *prev, *next; /* LRU list, head most recent */
    atomic_uint refs;             /* the table's one, plus one per reader copying it out */
    cache_key key;
    uint64_t tag;
    double stored_ms, expires_ms;
    size_t charge; /* counted against the shard's share */
    size_t len;
    unsigned char bytes[];
} l1_entry;

typedef struct l1_shard {
    _Alignas(64) pthread_mutex_t mu; /* a cache line of its own: shards are locked from many threads */
    l1_entry **buckets;              /* nbuckets, a power of two */
    size_t nbuckets, entries;
    size_t bytes, share; /* bytes counted (entries and the bucket array) and the most it may be */
    size_t table_charge; /* the bucket array's part of bytes */
    l1_entry *head, *tail;
    unsigned long long hits, misses, puts, evictions, expired;
} l1_shard;

struct cache_l1 {
    unsigned nshards;
    l1_shard shards[L1_MAX_SHARDS];
};

/* The heap an allocation of usable size n takes: glibc puts a size word before each chunk. */
static size_t l1_heap_size(size_t usable)
{
    return usable + sizeof(size_t);
}

static l1_shard *l1_shard_of(cache_l1 *c, const cache_key *k)
{
    return &c->shards[k->d[0] & (c->nshards - 1)];
}

static size_t l1_bucket_of(const l1_shard *s, const cache_key *k)
{
    uint64_t h;
    memcpy(&h, k->d + 8, sizeof h);
    return (size_t)h & (s->nbuckets - 1);
}

static void l1_unref(l1_entry *e)
{
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        free(e);
}

static l1_entry *l1_find_locked(l1_shard *s, const cache_key *k)
{
    for (l1_entry *e = s->buckets[l1_bucket_of(s, k)]; e; e = e->hnext)
        if (memcmp(e->key.d, k->d, sizeof k->d) == 0)
            return e;
    return NULL;
}

static void l1_lru_unlink_locked(l1_shard *s, l1_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void l1_lru_push_locked(l1_shard *s, l1_entry *e)
{
    e->prev = NULL;
    e->next = s->head;
    if (s->head)
        s->head->prev = e;
    else
        s->tail = e;
    s->head = e;
}

/* Takes e out of the table and the list and drops the table's reference. */
static void l1_drop_locked(l1_shard *s, l1_entry *e)
{
    l1_entry **p = &s->buckets[l1_bucket_of(s, &e->key)];
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    l1_lru_unlink_locked(s, e);
    s->entries--;
    s->bytes -= e->charge;
    l1_unref(e);
}

/* Doubles the bucket array before an insert would make the entries outnumber the buckets, unless
 * the array would take more than a quarter of the share (then chains only get longer). On failure
 * the table stays as it was. The array is charged to the shard. */
static void l1_grow_locked(l1_shard *s)
{
    if (s->entries + 1 <= s->nbuckets || (s->nbuckets * 2 * sizeof *s->buckets) > s->share / 4)
        return;
    size_t n = s->nbuckets * 2;
    l1_entry **nb = calloc(n, sizeof *nb);
    if (!nb)
        return;
    for (size_t i = 0; i < s->nbuckets; i++)
        for (l1_entry *e = s->buckets[i], *next; e; e = next) {
            next = e->hnext;
            uint64_t h;
            memcpy(&h, e->key.d + 8, sizeof h);
            e->hnext = nb[h & (n - 1)];
            nb[h & (n - 1)] = e;
        }
    free(s->buckets);
    s->buckets = nb;
    s->nbuckets = n;
    s->bytes -= s->table_charge;
    s->table_charge = l1_heap_size(malloc_usable_size(nb));
    s->bytes += s->table_charge;
}

cache_l1 *cache_l1_new(size_t max_bytes)
{
    cache_l1 *c = aligned_alloc(_Alignof(cache_l1), sizeof *c); /* the shards' 64-byte alignment */
    if (!c)
        return NULL;
    memset(c, 0, sizeof *c);
    c->nshards = L1_MAX_SHARDS;
    while (c->nshards > 1 && max_bytes / c->nshards < L1_MIN_SHARE)
        c->nshards /= 2;
    for (unsigned i = 0; i < c->nshards; i++) {
        l1_shard *s = &c->shards[i];
        s->nbuckets = L1_MIN_BUCKETS;
        s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
        if (!s->buckets || pthread_mutex_init(&s->mu, NULL) != 0) {
            free(s->buckets);
            c->nshards = i;
            cache_l1_free(c);
            return NULL;
        }
        s->share = max_bytes / c->nshards;
        s->table_charge = l1_heap_size(malloc_usable_size(s->buckets));
        s->bytes = s->table_charge;
    }
    return c;
}

void cache_l1_free(cache_l1 *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->nshards; i++) {
        l1_shard *s = &c->shards[i];
        for (l1_entry *e = s->head, *next; e; e = next) {
            next = e->next;
            l1_unref(e);
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
    free(c);
}

int cache_l1_put(cache_l1 *c, const cache_key *k, const void *bytes, size_t len, double now_ms, double ttl_ms,
                 uint64_t tag)
{
    l1_shard *s = l1_shard_of(c, k);
    l1_entry *e = NULL;
    if (ttl_ms > 0) {
        if (len > s->share || !(e = malloc(sizeof *e + len)))
            return -1;
        *e = (l1_entry){.key = *k, .tag = tag, .stored_ms = now_ms, .expires_ms = now_ms + ttl_ms, .len = len};
        atomic_init(&e->refs, 1);
        e->charge = l1_heap_size(malloc_usable_size(e));
        if (len)
            memcpy(e->bytes, bytes, len);
    }
    pthread_mutex_lock(&s->mu);
    l1_entry *old = l1_find_locked(s, k);
    if (!e) {
        if (old)
            l1_drop_locked(s, old);
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    l1_grow_locked(s);
    if (s->table_charge + e->charge > s->share) { /* too large even in an empty shard: keep old */
        pthread_mutex_unlock(&s->mu);
        free(e);
        return -1;
    }
    if (old)
        l1_drop_locked(s, old);
    /* make room: expired entries at the tail first, then the least recently used */
    while (s->tail && s->tail->expires_ms <= now_ms) {
        s->expired++;
        l1_drop_locked(s, s->tail);
    }
    while (s->tail && s->bytes + e->charge > s->share) {
        s->evictions++;
        l1_drop_locked(s, s->tail);
    }
    size_t at = l1_bucket_of(s, k);
    e->hnext = s->buckets[at];
    s->buckets[at] = e;
    l1_lru_push_locked(s, e);
    s->entries++;
    s->bytes += e->charge;
    s->puts++;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int cache_l1_get(cache_l1 *c, const cache_key *k, double now_ms, buf *out, double *stored_ms)
{
    l1_shard *s = l1_shard_of(c, k);
    pthread_mutex_lock(&s->mu);
    l1_entry *e = l1_find_locked(s, k);
    if (e && e->expires_ms <= now_ms) {
        s->expired++;
        l1_drop_locked(s, e);
        e = NULL;
    }
    if (!e) {
        s->misses++;
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    s->hits++;
    if (s->head != e) {
        l1_lru_unlink_locked(s, e);
        l1_lru_push_locked(s, e);
    }
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&s->mu);
    /* e's bytes never change once stored, and our reference keeps them */
    int rc = buf_append(out, e->bytes, e->len) == 0 ? 1 : -1;
    if (rc == 1 && stored_ms)
        *stored_ms = e->stored_ms;
    l1_unref(e);
    return rc;
}

int cache_l1_del(cache_l1 *c, const cache_key *k)
{
    l1_shard *s = l1_shard_of(c, k);
    pthread_mutex_lock(&s->mu);
    l1_entry *e = l1_find_locked(s, k);
    if (e)
        l1_drop_locked(s, e);
    pthread_mutex_unlock(&s->mu);
    return e != NULL;
}

size_t cache_l1_purge(cache_l1 *c, uint64_t tag)
{
    size_t n = 0;
    for (unsigned i = 0; i < c->nshards; i++) {
        l1_shard *s = &c->shards[i];
        pthread_mutex_lock(&s->mu);
        for (l1_entry *e = s->head, *next; e; e = next) {
            next = e->next;
            if (e->tag == tag) {
                l1_drop_locked(s, e);
                n++;
            }
        }
        pthread_mutex_unlock(&s->mu);
    }
    return n;
}

void cache_l1_get_stats(cache_l1 *c, cache_l1_stats *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < c->nshards; i++) {
        l1_shard *s = &c->shards[i];
        pthread_mutex_lock(&s->mu);
        out->entries += s->entries;
        out->bytes += s->bytes;
        out->hits += s->hits;
        out->misses += s->misses;
        out->puts += s->puts;
        out->evictions += s->evictions;
        out->expired += s->expired;
        pthread_mutex_unlock(&s->mu);
    }
}
