/* rl_table: the local GCRA table (include/kailash/ratelimit.h): one tat and one deny_until per key,
 * for the local limiter and for what the shared limiter learnt.
 *
 * Sharded for the I/O threads: up to 64 shards (each its own mutex on its own cache line), a key's
 * shard and chain chosen by SipHash-1-3 with a random key drawn at rl_table_new. Keys come from
 * remote callers (client IPs, principals), and seeded murmur/xxhash-style hashes have
 * seed-independent multicollisions; SipHash is the usual answer (Python's, Rust's) and costs ~20 ns
 * on a key this short. A request touches at most RL_MAX_POLICIES shards, locked in index order.
 *
 * Memory is bounded and allocated once: each shard preallocates its slots (max_keys / shards of
 * them, sizeof(rl_entry) = RL_TABLE_KEY_BYTES each, plus 8 bytes of expiry and at most 8 of chain
 * head), touched only as they are first used; a check allocates nothing. Freed slots go on a free
 * list. An entry expires when its tat and its deny_until are both <= now: its bucket is full and
 * nothing is denied, so forgetting it changes no decision. Expired entries are swept incrementally:
 * every chain walk unlinks the expired entries it passes, every call examines RL_SWEEP_STEP more
 * slots of the shard it touched, and an insert into a full shard first sweeps that whole shard.
 *
 * Eviction, when a shard is full of live entries: the one that expires first (smallest
 * max(tat, deny_until)). Evicting a live key lets it start afresh with a full bucket; the entry that
 * expires first is the one closest to full already, so the requests it gains, (tat - now) / T, are
 * the fewest any choice could give; a key its policy keeps refused for long (tat far ahead) or that
 * Redis denied is the last to go. LRU would instead drop a refused key that an attacker simply stops
 * hammering for a moment while a flood of fresh keys arrives. The cost is one scan of the shard's
 * expiry array (8 bytes a slot) per insert into a full shard, i.e. only under a flood of live keys.
 * Entries an operation is working on are pinned (expiry +inf) so its own inserts never evict them.
 *
 * Keys longer than RL_KEY_MAX are folded: their first bytes plus a keyed 64-bit digest of the whole
 * key, marked as folded so they never equal a short key. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "kailash/ratelimit.h"

#define RL_KEY_MAX 128
#define RL_SHARDS_MAX 64
#define RL_SHARD_MIN_CAP 16 /* fewer shards for a small table, so each still holds a few keys */
#define RL_SWEEP_STEP 4     /* slots examined per call: sweeping keeps pace with inserting */
#define RL_FOLD_HEAD (RL_KEY_MAX - 8)

typedef struct rl_entry {
    double tat, deny_until;
    uint64_t hash;
    uint32_t next; /* 1-based slot of the next entry in the chain, or of the next free slot; 0: end */
    uint8_t keylen;
    uint8_t folded;
    char key[RL_KEY_MAX];
} rl_entry;

_Static_assert(sizeof(rl_entry) <= RL_TABLE_KEY_BYTES, "RL_TABLE_KEY_BYTES states an entry's size");

typedef struct rl_shard {
    _Alignas(64) pthread_mutex_t mu;
    uint32_t *heads; /* mask + 1 chains of 1-based slots */
    rl_entry *ents;  /* cap slots */
    double *exp;     /* per slot: max(tat, deny_until) in use, +inf pinned, NaN free */
    uint32_t mask, cap, used;
    uint32_t fresh;     /* slots [0, fresh) have been used at least once */
    uint32_t free_head; /* 1-based */
    uint32_t cursor;    /* the incremental sweep's next slot */
    double now_seen;    /* the latest now given to this shard: deny_until sweeps with it */
} rl_shard;

struct rl_table {
    uint64_t k0, k1, f0, f1; /* SipHash keys: chains, folding */
    uint32_t nshards;
    rl_shard *shards;
};

/* A key as the table stores it. */
typedef struct rl_key {
    const char *bytes;
    size_t len;
    uint8_t folded;
    uint64_t hash;
    uint32_t shard;
    char buf[RL_KEY_MAX];
} rl_key;

/* ---- SipHash-1-3 (Aumasson, Bernstein) ---- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                                       \
    do {                                                                                                               \
        v0 += v1, v1 = ROTL(v1, 13), v1 ^= v0, v0 = ROTL(v0, 32);                                                      \
        v2 += v3, v3 = ROTL(v3, 16), v3 ^= v2;                                                                         \
        v0 += v3, v3 = ROTL(v3, 21), v3 ^= v0;                                                                         \
        v2 += v1, v1 = ROTL(v1, 17), v1 ^= v2, v2 = ROTL(v2, 32);                                                      \
    } while (0)

static uint64_t rl_le64(const unsigned char *p, size_t n)
{
    uint64_t m = 0;
    for (size_t i = 0; i < n; i++)
        m |= (uint64_t)p[i] << (8 * i);
    return m;
}

static uint64_t rl_siphash(uint64_t k0, uint64_t k1, const void *data, size_t len)
{
    const unsigned char *in = data;
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = rl_le64(in + i, 8);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = ((uint64_t)len << 56) | rl_le64(in + whole, len % 8);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- a shard's slots and chains (caller holds the shard's lock) ---- */

static void rl_key_make(const rl_table *t, rl_key *k, const char *key, size_t keylen)
{
    k->folded = keylen > RL_KEY_MAX;
    if (k->folded) {
        uint64_t digest = rl_siphash(t->f0, t->f1, key, keylen);
        memcpy(k->buf, key, RL_FOLD_HEAD);
        for (int i = 0; i < 8; i++)
            k->buf[RL_FOLD_HEAD + i] = (char)(digest >> (8 * i));
        k->bytes = k->buf;
        k->len = RL_KEY_MAX;
    } else {
        k->bytes = key;
        k->len = keylen;
    }
    k->hash = rl_siphash(t->k0, t->k1, k->bytes, k->len);
    k->shard = (uint32_t)(k->hash >> 32) & (t->nshards - 1);
}

static int rl_key_is(const rl_entry *e, const rl_key *k)
{
    return e->hash == k->hash && e->keylen == k->len && e->folded == k->folded && !memcmp(e->key, k->bytes, k->len);
}

static void rl_slot_release(rl_shard *s, uint32_t slot)
{
    s->exp[slot - 1] = NAN;
    s->ents[slot - 1].next = s->free_head;
    s->free_head = slot;
    s->used--;
}

static void rl_slot_remove(rl_shard *s, uint32_t slot)
{
    uint32_t *link = &s->heads[s->ents[slot - 1].hash & s->mask];
    while (*link != slot)
        link = &s->ents[*link - 1].next;
    *link = s->ents[slot - 1].next;
    rl_slot_release(s, slot);
}

static int rl_slot_expired(const rl_shard *s, uint32_t slot, double now_ms)
{
    return s->exp[slot - 1] <= now_ms; /* false for free (NaN) and pinned (+inf) slots */
}

/* The key's slot or 0; unlinks the expired entries it walks past. */
static uint32_t rl_shard_find(rl_shard *s, const rl_key *k, double now_ms)
{
    uint32_t *link = &s->heads[k->hash & s->mask];
    while (*link) {
        uint32_t slot = *link;
        if (rl_key_is(&s->ents[slot - 1], k))
            return slot;
        if (rl_slot_expired(s, slot, now_ms)) {
            *link = s->ents[slot - 1].next;
            rl_slot_release(s, slot);
        } else {
            link = &s->ents[slot - 1].next;
        }
    }
    return 0;
}

static void rl_shard_sweep(rl_shard *s, double now_ms, uint32_t steps)
{
    for (uint32_t i = 0; i < steps && s->fresh; i++) {
        uint32_t slot = s->cursor + 1;
        s->cursor = slot == s->fresh ? 0 : slot;
        if (rl_slot_expired(s, slot, now_ms))
            rl_slot_remove(s, slot);
    }
}

static uint32_t rl_slot_take(rl_shard *s)
{
    uint32_t slot = s->free_head;
    if (slot)
        s->free_head = s->ents[slot - 1].next;
    else if (s->fresh < s->cap)
        slot = ++s->fresh;
    return slot;
}

/* A new entry for k, pinned (the caller sets its expiry); 0 only if every slot is pinned. */
static uint32_t rl_shard_insert(rl_shard *s, const rl_key *k, double now_ms)
{
    uint32_t slot = rl_slot_take(s);
    if (!slot) {
        rl_shard_sweep(s, now_ms, s->fresh); /* the whole shard, once per filling */
        slot = rl_slot_take(s);
    }
    if (!slot) {
        uint32_t victim = 0;
        double best = INFINITY;
        for (uint32_t i = 0; i < s->fresh; i++)
            if (s->exp[i] < best)
                best = s->exp[i], victim = i + 1;
        if (!victim)
            return 0;
        rl_slot_remove(s, victim);
        slot = rl_slot_take(s);
    }
    rl_entry *e = &s->ents[slot - 1];
    e->tat = 0;
    e->deny_until = -INFINITY;
    e->hash = k->hash;
    e->keylen = (uint8_t)k->len;
    e->folded = k->folded;
    memcpy(e->key, k->bytes, k->len);
    uint32_t *head = &s->heads[k->hash & s->mask];
    e->next = *head;
    *head = slot;
    s->exp[slot - 1] = INFINITY;
    s->used++;
    return slot;
}

static void rl_slot_settle(rl_shard *s, uint32_t slot)
{
    const rl_entry *e = &s->ents[slot - 1];
    s->exp[slot - 1] = e->tat > e->deny_until ? e->tat : e->deny_until;
}

static void rl_shard_saw(rl_shard *s, double now_ms)
{
    if (now_ms > s->now_seen)
        s->now_seen = now_ms;
}

/* ---- the table ---- */

static size_t rl_pow2_at_least(size_t n)
{
    size_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

rl_table *rl_table_new(size_t max_keys)
{
    if (max_keys < RL_MAX_POLICIES)
        max_keys = RL_MAX_POLICIES; /* one request's keys always fit */
    if (max_keys > ((size_t)1 << 31))
        max_keys = (size_t)1 << 31;
    uint32_t nshards = RL_SHARDS_MAX;
    while (nshards > 1 && max_keys / nshards < RL_SHARD_MIN_CAP)
        nshards /= 2;
    uint32_t cap = (uint32_t)(max_keys / nshards);

    rl_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    uint64_t seed[4];
    size_t got = 0;
    while (got < sizeof seed) {
        ssize_t r = getrandom((char *)seed + got, sizeof seed - got, 0);
        if (r <= 0)
            goto err; /* no kernel randomness: the chains would be predictable */
        got += (size_t)r;
    }
    t->k0 = seed[0], t->k1 = seed[1], t->f0 = seed[2], t->f1 = seed[3];
    t->shards = aligned_alloc(_Alignof(rl_shard), nshards * sizeof(rl_shard));
    if (!t->shards)
        goto err;
    memset(t->shards, 0, nshards * sizeof(rl_shard));
    for (uint32_t i = 0; i < nshards; i++) {
        rl_shard *s = &t->shards[i];
        size_t nb = rl_pow2_at_least(cap);
        pthread_mutex_init(&s->mu, NULL);
        t->nshards = i + 1; /* what rl_table_free must undo */
        s->cap = cap;
        s->mask = (uint32_t)(nb - 1);
        s->heads = calloc(nb, sizeof *s->heads);
        s->ents = malloc(cap * sizeof *s->ents); /* slots are initialised when first taken */
        s->exp = malloc(cap * sizeof *s->exp);
        s->now_seen = -INFINITY;
        if (!s->heads || !s->ents || !s->exp)
            goto err;
    }
    return t;
err:
    rl_table_free(t);
    return NULL;
}

void rl_table_free(rl_table *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; i < t->nshards; i++) {
        pthread_mutex_destroy(&t->shards[i].mu);
        free(t->shards[i].heads);
        free(t->shards[i].ents);
        free(t->shards[i].exp);
    }
    free(t->shards);
    free(t);
}

static void rl_table_refuse_all(const rl_policy *p, int n, rl_decision *d)
{
    for (int i = 0; i < n; i++) {
        rl_gcra(&p[i], 0, 0, &d[i]);
        d[i] = (rl_decision){.allowed = 0, .remaining = 0, .full_ms = 0, .retry_ms = d[i].full_ms};
    }
}

void rl_table_check(rl_table *t, const char *const *keys, const size_t *keylens, const rl_policy *p, int n,
                    double now_ms, rl_decision *d)
{
    if (n < 1)
        return;
    if (n > RL_MAX_POLICIES) { /* a caller's bug: decide nothing, let nothing through */
        rl_table_refuse_all(p, n, d);
        return;
    }
    rl_key k[RL_MAX_POLICIES];
    uint32_t slot[RL_MAX_POLICIES], order[RL_MAX_POLICIES];
    int alias[RL_MAX_POLICIES]; /* an earlier index holding the same key, or -1 */
    for (int i = 0; i < n; i++) {
        rl_key_make(t, &k[i], keys[i], keylens[i]);
        order[i] = k[i].shard;
        alias[i] = -1;
        for (int j = 0; j < i && alias[i] < 0; j++)
            if (k[j].shard == k[i].shard && k[j].hash == k[i].hash && k[j].folded == k[i].folded &&
                k[j].len == k[i].len && !memcmp(k[j].bytes, k[i].bytes, k[i].len))
                alias[i] = j;
    }
    /* lock the shards in index order, each once */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && order[j - 1] > order[j]; j--) {
            uint32_t x = order[j];
            order[j] = order[j - 1], order[j - 1] = x;
        }
    for (int i = 0; i < n; i++)
        if (i == 0 || order[i] != order[i - 1]) {
            pthread_mutex_lock(&t->shards[order[i]].mu);
            rl_shard_saw(&t->shards[order[i]], now_ms);
        }

    /* find and pin each key's entry, then decide every key against the tats as they stand (a key
     * listed twice is decided the second time against its first new tat) */
    double saved[RL_MAX_POLICIES], old_tat[RL_MAX_POLICIES], new_tat[RL_MAX_POLICIES];
    int allowed = 1;
    for (int i = 0; i < n; i++) {
        rl_shard *s = &t->shards[k[i].shard];
        double tat = 0;
        if (alias[i] >= 0) {
            slot[i] = 0;
            old_tat[i] = old_tat[alias[i]];
            tat = new_tat[alias[i]];
        } else if ((slot[i] = rl_shard_find(s, &k[i], now_ms))) {
            saved[i] = s->exp[slot[i] - 1];
            s->exp[slot[i] - 1] = INFINITY;
            tat = old_tat[i] = s->ents[slot[i] - 1].tat;
        } else {
            old_tat[i] = 0;
        }
        new_tat[i] = rl_gcra(&p[i], tat, now_ms, &d[i]);
        allowed &= d[i].allowed;
    }

    for (int i = 0; i < n; i++) {
        rl_shard *s = &t->shards[k[i].shard];
        d[i].allowed = allowed;
        if (!allowed) {
            /* nothing moved: a key that would have passed reports its bucket as it stands */
            d[i].full_ms = old_tat[i] > now_ms ? old_tat[i] - now_ms : 0;
            d[i].remaining = 0;
            continue;
        }
        uint32_t at = alias[i] >= 0 ? slot[alias[i]] : slot[i];
        if (!at && alias[i] < 0)
            at = slot[i] = rl_shard_insert(s, &k[i], now_ms);
        if (!at)
            continue; /* every slot pinned: cannot happen with cap >= RL_MAX_POLICIES */
        s->ents[at - 1].tat = new_tat[i];
    }
    for (int i = 0; i < n; i++) { /* unpin */
        rl_shard *s = &t->shards[k[i].shard];
        if (alias[i] >= 0 || !slot[i])
            continue;
        if (allowed)
            rl_slot_settle(s, slot[i]);
        else
            s->exp[slot[i] - 1] = saved[i];
    }

    for (int i = n - 1; i >= 0; i--)
        if (i == 0 || order[i] != order[i - 1]) {
            rl_shard_sweep(&t->shards[order[i]], now_ms, RL_SWEEP_STEP);
            pthread_mutex_unlock(&t->shards[order[i]].mu);
        }
}

void rl_table_deny_until(rl_table *t, const char *key, size_t keylen, double until_ms)
{
    if (!isfinite(until_ms))
        return; /* +inf would pin a key forever; NaN denies nothing */
    rl_key k;
    rl_key_make(t, &k, key, keylen);
    rl_shard *s = &t->shards[k.shard];
    pthread_mutex_lock(&s->mu);
    uint32_t slot = rl_shard_find(s, &k, s->now_seen);
    if (!slot && until_ms > s->now_seen)
        slot = rl_shard_insert(s, &k, s->now_seen);
    if (slot) {
        rl_entry *e = &s->ents[slot - 1];
        if (until_ms > e->deny_until)
            e->deny_until = until_ms;
        rl_slot_settle(s, slot);
    }
    rl_shard_sweep(s, s->now_seen, RL_SWEEP_STEP);
    pthread_mutex_unlock(&s->mu);
}

double rl_table_denied_for(rl_table *t, const char *key, size_t keylen, double now_ms)
{
    rl_key k;
    rl_key_make(t, &k, key, keylen);
    rl_shard *s = &t->shards[k.shard];
    double left = 0;
    pthread_mutex_lock(&s->mu);
    rl_shard_saw(s, now_ms);
    uint32_t slot = rl_shard_find(s, &k, now_ms);
    if (slot && s->ents[slot - 1].deny_until > now_ms)
        left = s->ents[slot - 1].deny_until - now_ms;
    rl_shard_sweep(s, now_ms, RL_SWEEP_STEP);
    pthread_mutex_unlock(&s->mu);
    return left;
}

size_t rl_table_count(rl_table *t)
{
    size_t n = 0;
    for (uint32_t i = 0; i < t->nshards; i++) {
        pthread_mutex_lock(&t->shards[i].mu);
        n += t->shards[i].used;
        pthread_mutex_unlock(&t->shards[i].mu);
    }
    return n;
}
