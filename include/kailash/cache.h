/* cache: the response cache (src/cache/; DESIGN.md, API.md `X-Cache`, `DELETE /cache/{name}`).
 *
 *   key.c     the key of a run: SHA-256 over the workflow's name, its definition's hash (editing a
 *             workflow changes it: no purge needed), the workflow's purge generation, the scope's
 *             part (a principal id or a tenant attribute, or nothing for global) and the canonical
 *             JSON of the inputs and the parameters;
 *   l1.c      the in-memory layer: sharded (a mutex per shard, no global lock on the hit path), LRU
 *             with a TTL per entry, within a byte budget; a hit copies the stored bytes out;
 *   (the L2 layer, Redis, single flight and the chain's use are src/cache/l2.c, flight.c and the
 *   run handler's: see their own comments)
 *
 * Thread-safe unless said otherwise. */
#ifndef KAILASH_CACHE_H
#define KAILASH_CACHE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "kailash/util.h"

struct ioloop;

/* ---- key.c ---- */

/* Canonical JSON of v appended to out: object keys sorted by their UTF-8 bytes, compact (no spaces),
 * strings escaped as jansson's compact dump does, integers as integers, and a real that holds an
 * integral value within 2^53 written as that integer (1.0 -> 1, -0.0 -> 0), any other real in its
 * shortest round-trip form (%.17g trimmed to the fewest digits that read back the same). So {"b":1,
 * "a":1.0} and {"a":1,"b":1} give the same bytes. NULL v writes "null". 0, or -1 when memory runs
 * out or the nesting is deeper than the writer takes (4096; jansson's parser stops at 2048). */
int cache_canonical_json(json_t *v, buf *out);

typedef struct cache_key {
    unsigned char d[32];
} cache_key;

/* SHA-256 over the fields, each length-prefixed (so no field can be shifted into the next): name,
 * def_hash, gen (decimal), scope (NULL: ""), canonical inputs, canonical params (NULL: null). 0, or
 * -1 as cache_canonical_json. */
int cache_key_make(const char *name, const char *def_hash, unsigned long long gen, const char *scope, json_t *inputs,
                   json_t *params, cache_key *out);
/* 64 lowercase hex digits and a NUL. */
void cache_key_hex(const cache_key *k, char out[65]);
/* A definition's hash for cache_key_make: the first 16 bytes of SHA-256 over its canonical JSON, as
 * 32 hex digits (out holds 33). 0 or -1. */
int cache_def_hash(json_t *normalized, char out[33]);

/* ---- l1.c ---- */

typedef struct cache_l1 cache_l1;

/* A cache of at most max_bytes (entries' bytes plus their bookkeeping, RAM counted honestly),
 * split over shards. NULL when out of memory. */
cache_l1 *cache_l1_new(size_t max_bytes);
void cache_l1_free(cache_l1 *c);

/* Stores a copy of bytes[0..len) under k until now_ms + ttl_ms (util_now_ms clock), tagged with tag
 * (the workflow, for purging); replaces what k held. Least recently used entries of the shard go to
 * make room. 0, or -1 when the entry alone is larger than a shard's share of the budget, or memory
 * runs out (nothing is stored then). */
int cache_l1_put(cache_l1 *c, const cache_key *k, const void *bytes, size_t len, double now_ms, double ttl_ms,
                 uint64_t tag);
/* A hit: appends the stored bytes to out, sets *stored_ms (when it was put), marks it recently used,
 * returns 1. A miss (absent or expired; an expired entry is dropped): 0. -1 when out cannot grow. */
int cache_l1_get(cache_l1 *c, const cache_key *k, double now_ms, buf *out, double *stored_ms);
/* Drops k if present: 1 if it was, else 0. */
int cache_l1_del(cache_l1 *c, const cache_key *k);
/* Drops every entry tagged tag; returns how many it dropped. Walks every shard: for purges, not for
 * requests. */
size_t cache_l1_purge(cache_l1 *c, uint64_t tag);

typedef struct cache_l1_stats {
    size_t entries, bytes;                  /* now (bytes as counted against the budget) */
    unsigned long long hits, misses, puts, evictions, expired;
} cache_l1_stats;
void cache_l1_get_stats(cache_l1 *c, cache_l1_stats *out);

/* ---- l2.c: Redis, on the calling loop's connection (redis.h) ----
 * Keys: "kailash:rc:<hex key>" (the stored bytes, SET PX), "kailash:rc:lock:<hex key>" (single flight
 * across instances, SET NX PX). Each returns -1 at once when Redis cannot be asked now (none
 * configured, the breaker open, not on a loop): the caller goes on with L1 alone. Loop thread only. */

/* GET: done(bytes, len, ud) with the stored bytes (borrowed for the call), or bytes NULL on a miss
 * or a failure. 0 or -1. */
typedef void (*cache_l2_fn)(const char *bytes, size_t len, void *ud);
int cache_l2_get(const cache_key *k, cache_l2_fn done, void *ud);
/* SET ... PX ttl_ms, not waited for (a failure only counts). 0 or -1. */
int cache_l2_put(const cache_key *k, const void *bytes, size_t len, long ttl_ms);
/* SET lock NX PX ms: done(1) when this instance got it, done(0) when another holds it, done(-1) when
 * Redis failed. 0 or -1. */
int cache_l2_lock(const cache_key *k, long ms, void (*done)(int got, void *ud), void *ud);
/* DEL lock, not waited for. */
void cache_l2_unlock(const cache_key *k);

/* ---- gens.c: purge generations ----
 * A workflow's generation joins its keys: a purge bumps it, so every entry made before is
 * unreachable at once, in L1 and in L2, without KEYS or SCAN. The bump is written to Redis (hash
 * "kailash:rc:gens", HINCRBY) and every instance reads that hash once a second, so a purge reaches
 * the other instances within about a second. */

/* The generation of workflow name (0 until purged). Thread-safe. */
unsigned long long cache_gen(const char *name);
/* Bumps it (and in Redis, when configured: from a loop thread only). Thread-safe. */
void cache_gen_bump(const char *name);
/* Starts the once-a-second read of the Redis hash on io (with redis_url). Any thread. */
void cache_gens_watch(struct ioloop *io);
void cache_gens_stop(void);

/* ---- counters (for /metrics): L2 hits, misses and stores, per process ---- */
typedef struct cache_l2_stats {
    unsigned long long hits, misses, stores, failures;
} cache_l2_stats;
void cache_l2_get_stats(cache_l2_stats *out);

#endif
